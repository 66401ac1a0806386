//! Storage of tenants.

use async_trait::async_trait;

use super::model::{NewTenant, Tenant, TenantId, TenantSettings, TenantSlug, TenantStatus};
use crate::store::StoreError;

/// One page of tenants, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    /// Pass back to get the next page; `None` on the last one.
    pub next_cursor: Option<TenantId>,
}

/// Tenants in the database.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Stores a new tenant; `Conflict` when the slug is taken.
    async fn create(
        &self,
        id: TenantId,
        tenant: &NewTenant,
        audit: &crate::audit::AuditRecord,
    ) -> Result<Tenant, StoreError>;
    /// Creates the tenant unless one with its slug exists; returns whether it did.
    async fn create_if_absent(
        &self,
        id: TenantId,
        tenant: &NewTenant,
        audit: &crate::audit::AuditRecord,
    ) -> Result<bool, StoreError>;
    /// The tenant with this id.
    async fn get(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    /// The tenant with this slug.
    async fn get_by_slug(&self, slug: &TenantSlug) -> Result<Option<Tenant>, StoreError>;
    /// Up to `limit` tenants created after `after`, oldest first.
    async fn list(&self, after: Option<TenantId>, limit: u32) -> Result<TenantPage, StoreError>;
    /// Sets the status; `NotFound` when there is no such tenant.
    async fn set_status(
        &self,
        id: TenantId,
        status: TenantStatus,
        audit: &crate::audit::AuditRecord,
    ) -> Result<Tenant, StoreError>;
    /// Replaces the tenant's settings.
    async fn set_settings(
        &self,
        id: TenantId,
        settings: &TenantSettings,
        audit: &crate::audit::AuditRecord,
    ) -> Result<Tenant, StoreError>;
}
