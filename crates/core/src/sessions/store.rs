//! Storage of sessions and their refresh tokens.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::model::{NewSession, RefreshOutcome, RefreshRotation, RevokedSession, Session, SessionId, SessionScope};
use super::token::TokenHash;
use crate::store::StoreError;
use crate::tenants::TenantId;
use crate::users::UserId;

/// Sessions in the database.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session with the first refresh token of its family.
    async fn create(&self, session: &NewSession, audit: &crate::audit::AuditRecord) -> Result<(), StoreError>;
    /// The unrevoked session whose token has this hash.
    async fn find(&self, token: &TokenHash) -> Result<Option<Session>, StoreError>;
    /// The unrevoked session with this id in this tenant.
    async fn get(&self, tenant: TenantId, id: SessionId) -> Result<Option<Session>, StoreError>;
    /// Records use of the session, pushing back its idle expiry.
    async fn touch(&self, id: SessionId, at: OffsetDateTime, idle_expires_at: OffsetDateTime)
    -> Result<(), StoreError>;
    /// The user's unrevoked, unexpired sessions, newest first.
    async fn list_for_user(
        &self,
        tenant: TenantId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, StoreError>;
    /// Revokes one session of the tenant (of `user` when given); `None` when there is
    /// no such live session.
    async fn revoke(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
        id: SessionId,
        audit: &crate::audit::AuditRecord,
    ) -> Result<Option<RevokedSession>, StoreError>;
    /// Revokes every live session in `scope`.
    async fn revoke_all(
        &self,
        scope: SessionScope,
        audit: &crate::audit::AuditRecord,
    ) -> Result<Vec<RevokedSession>, StoreError>;
    /// Spends each rotation's presented refresh token and, when it was live, stores
    /// its successor in the same family; one outcome per rotation, in order. All
    /// rotations are one statement: a token named twice is spent once, the other
    /// rotation seeing it `Reused`.
    async fn rotate_refresh(
        &self,
        rotations: &[RefreshRotation],
        at: OffsetDateTime,
    ) -> Result<Vec<RefreshOutcome>, StoreError>;
    /// How many unrevoked sessions have not expired at `now`.
    async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}
