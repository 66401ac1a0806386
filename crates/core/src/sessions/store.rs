//! Storage of sessions.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::model::{NewSession, Session, SessionId};
use super::token::TokenHash;
use crate::store::StoreError;
use crate::tenants::TenantId;
use crate::users::UserId;

/// Sessions in the database.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session.
    async fn create(&self, session: &NewSession) -> Result<(), StoreError>;
    /// The unrevoked session whose token has this hash.
    async fn find(&self, token: &TokenHash) -> Result<Option<Session>, StoreError>;
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
    /// Revokes one of the user's sessions; false when it is not theirs or not live.
    async fn revoke(&self, tenant: TenantId, user: UserId, id: SessionId) -> Result<bool, StoreError>;
}
