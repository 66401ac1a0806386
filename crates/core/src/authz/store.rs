//! Storage of policies, entities, groups and roles.

use async_trait::async_trait;
use uuid::Uuid;

use super::model::{AuthzState, Group, PolicyVersion, Role, UserFacts};
use crate::audit::AuditRecord;
use crate::store::StoreError;
use crate::tenants::TenantId;

/// One stored entity: its type, id and Cedar entity JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    pub entity_type: String,
    pub entity_id: String,
    pub body: String,
}

/// A tenant's policy head, for the operators' overview.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyHead {
    pub tenant: TenantId,
    pub version: i64,
    pub created_at: time::OffsetDateTime,
    pub policy_count: usize,
    pub has_schema: bool,
}

#[async_trait]
pub trait AuthzStore: Send + Sync {
    /// The tenant's current versions (zeros before any change).
    async fn authz_state(&self, tenant: TenantId) -> Result<AuthzState, StoreError>;
    /// Tenants whose state changed at or after `since_us` (µs since the epoch).
    async fn authz_changes(&self, since_us: i64) -> Result<Vec<(TenantId, AuthzState)>, StoreError>;

    async fn policy_head(&self, tenant: TenantId) -> Result<Option<PolicyVersion>, StoreError>;
    async fn policy_version(&self, tenant: TenantId, version: i64) -> Result<Option<PolicyVersion>, StoreError>;
    /// Versions newest first, older than `before` when given.
    async fn policy_versions(
        &self,
        tenant: TenantId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PolicyVersion>, StoreError>;
    /// Writes `version` and makes it current; `false` (nothing written) when that
    /// version number was taken meanwhile.
    async fn write_policy_version(&self, version: &PolicyVersion, audit: &AuditRecord) -> Result<bool, StoreError>;
    /// Every tenant's current version.
    async fn policy_heads(&self) -> Result<Vec<PolicyHead>, StoreError>;

    /// A page of the tenant's entities in (type, id) order, of one type when given,
    /// after the (type, id) `after` when given.
    async fn entities_page(
        &self,
        tenant: TenantId,
        entity_type: Option<&str>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<StoredEntity>, StoreError>;
    /// The entities among `uids` ((type, id) pairs) that are stored, in any order.
    async fn entities_by_uid(
        &self,
        tenant: TenantId,
        uids: &[(String, String)],
    ) -> Result<Vec<StoredEntity>, StoreError>;
    async fn entity(
        &self,
        tenant: TenantId,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Option<StoredEntity>, StoreError>;
    /// Creates or replaces entities in one transaction (a uid given twice: the last).
    async fn upsert_entities(
        &self,
        tenant: TenantId,
        entities: &[StoredEntity],
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    async fn delete_entity(
        &self,
        tenant: TenantId,
        entity_type: &str,
        entity_id: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;

    /// A user of the tenant with their roles and the names of their groups.
    async fn user_facts(&self, tenant: TenantId, user: Uuid) -> Result<Option<UserFacts>, StoreError>;

    async fn groups(&self, tenant: TenantId) -> Result<Vec<Group>, StoreError>;
    async fn group(&self, tenant: TenantId, name: &str) -> Result<Option<Group>, StoreError>;
    /// Creates a group; `Conflict` when the name is taken.
    async fn create_group(&self, group: &Group, audit: &AuditRecord) -> Result<(), StoreError>;
    async fn delete_group(&self, tenant: TenantId, name: &str, audit: &AuditRecord) -> Result<bool, StoreError>;
    async fn group_members(&self, group: Uuid) -> Result<Vec<Uuid>, StoreError>;
    /// Adds a user of the group's tenant; `false` when already a member.
    async fn add_member(&self, group: Uuid, user: Uuid, audit: &AuditRecord) -> Result<bool, StoreError>;
    async fn remove_member(&self, group: Uuid, user: Uuid, audit: &AuditRecord) -> Result<bool, StoreError>;

    /// The tenant's own roles (the built-in ones are not stored).
    async fn roles(&self, tenant: TenantId) -> Result<Vec<Role>, StoreError>;
    async fn create_role(&self, tenant: TenantId, role: &Role, audit: &AuditRecord) -> Result<(), StoreError>;
    /// Deletes a role no user holds; `Conflict` when someone does.
    async fn delete_role(&self, tenant: TenantId, name: &str, audit: &AuditRecord) -> Result<bool, StoreError>;
}
