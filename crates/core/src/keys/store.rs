//! Storage of signing keys.

use async_trait::async_trait;

use super::model::SigningKey;
use crate::store::StoreError;
use crate::tenants::TenantId;

/// Signing keys in the database.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores `key` as the tenant's active key; `Conflict` when it already has one
    /// (another process got there first).
    async fn insert_active(&self, key: &SigningKey) -> Result<(), StoreError>;
    /// Retires the tenant's active key (if any) at `key.created_at` and makes `key`
    /// the active one, in one transaction.
    async fn rotate(&self, key: &SigningKey) -> Result<(), StoreError>;
    /// Every key of the tenant, newest first.
    async fn list(&self, tenant: TenantId) -> Result<Vec<SigningKey>, StoreError>;
}
