//! Session types.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::token::TokenHash;
use crate::tenants::TenantId;
use crate::users::UserId;

/// A session's id (UUIDv7); safe to show, unlike its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a sign-in came from, as the session list shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A live session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub tenant: TenantId,
    pub user: UserId,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// The session ends then, whatever its use.
    pub expires_at: OffsetDateTime,
    /// The session ends then unless used before.
    pub idle_expires_at: OffsetDateTime,
    pub client: ClientInfo,
}

impl Session {
    /// True when the session can no longer be used at `now`.
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at || now >= self.idle_expires_at
    }
}

/// What creating a session stores.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub session: Session,
    pub token_hash: TokenHash,
}
