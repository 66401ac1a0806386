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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// SHA-256 (hex) of the device cookie the sign-in came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The sign-in's risk, as assessed at its password (or passkey) step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::risk::LoginRisk>,
}

impl ClientInfo {
    /// The risk's reasons as stored: comma-separated.
    pub fn risk_reasons_text(&self) -> Option<String> {
        self.risk.as_ref().map(|r| r.reasons.join(","))
    }

    /// The risk from its stored columns.
    pub fn risk_from_columns(score: Option<i64>, reasons: Option<String>) -> Option<crate::risk::LoginRisk> {
        let score = u8::try_from(score?).ok()?;
        let reasons = reasons.unwrap_or_default();
        let reasons = reasons.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect();
        Some(crate::risk::LoginRisk { score, reasons, abuse_score: 0 })
    }
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub tenant: TenantId,
    pub user: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The session ends then, whatever its use.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The session ends then unless used before.
    #[serde(with = "time::serde::rfc3339")]
    pub idle_expires_at: OffsetDateTime,
    pub client: ClientInfo,
    /// How the session was authenticated, as RFC 8176 method references (`pwd`,
    /// `otp`, `hwk`, `user`, `mfa`); empty for a session opened before guard kept them.
    #[serde(default)]
    pub amr: Vec<String>,
}

impl Session {
    /// The RFC 8176 method references of a sign-in proved by guard's `methods`
    /// (`pwd`, `totp`, `email_code`, `recovery_code`, `hwk`, `user`): one-time codes
    /// of every kind are `otp`, and two kinds of factor (or a passkey verifying its
    /// user) add `mfa`.
    pub fn amr_of(methods: &[&str]) -> Vec<String> {
        let mut amr: Vec<String> = Vec::new();
        for method in methods {
            let value = match *method {
                "totp" | "email_code" | "recovery_code" | "otp" => "otp",
                other => other,
            };
            if !amr.iter().any(|v| v == value) {
                amr.push(value.to_owned());
            }
        }
        let factors = amr.iter().filter(|v| matches!(v.as_str(), "pwd" | "otp" | "hwk" | "swk" | "user")).count();
        if factors >= 2 {
            amr.push("mfa".to_owned());
        }
        amr
    }

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
    /// The first refresh token of the session's family.
    pub refresh_hash: TokenHash,
}

/// A session that has just been revoked: what caches must forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedSession {
    pub id: SessionId,
    pub token_hash: TokenHash,
}

/// Which live sessions a bulk revocation ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionScope {
    /// Only this tenant's; `None`: every tenant's.
    pub tenant: Option<TenantId>,
    /// Only this user's.
    pub user: Option<UserId>,
    /// All but this one (the caller's own, on a password change).
    pub except: Option<SessionId>,
}

/// One refresh token to spend, and the hash of its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRotation {
    pub tenant: TenantId,
    pub presented: TokenHash,
    pub next: TokenHash,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// It was live: it is now spent and the next token of its family is stored.
    Rotated(SessionId),
    /// It was already spent: someone replayed it.
    Reused(SessionId),
    Unknown,
}
