//! Storage of sign-in attempts and of the sources users signed in from.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::tenants::TenantId;
use crate::users::UserId;

/// Recent attempts, counted for one sign-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    pub account_failures: u64,
    pub ip_failures: u64,
    pub ip_accounts: u64,
}

/// Which of a sign-in's sources the user has completed a sign-in from before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownSources {
    /// Any source at all: the user has a history.
    pub any: bool,
    pub device: bool,
    pub ip: bool,
    pub network: bool,
}

/// A kind of sign-in source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Device,
    Ip,
    Network,
}

impl SourceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::Device => "device",
            SourceKind::Ip => "ip",
            SourceKind::Network => "network",
        }
    }
}

/// Attempts and known sources in the database.
#[async_trait]
pub trait RiskStore: Send + Sync {
    async fn record_attempt(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
        ip: &str,
        succeeded: bool,
        at_unix: i64,
    ) -> Result<(), StoreError>;
    /// Failures of `account` and from `ip` since `failures_since`, and distinct
    /// accounts tried from `ip` since `accounts_since` (Unix seconds).
    async fn attempt_counts(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
        ip: &str,
        failures_since: i64,
        accounts_since: i64,
    ) -> Result<AttemptCounts, StoreError>;
    async fn known_sources(
        &self,
        tenant: TenantId,
        user: UserId,
        device: Option<&str>,
        ip: &str,
        network: Option<&str>,
    ) -> Result<KnownSources, StoreError>;
    /// Records that `user` completed a sign-in from this source at `at`.
    async fn remember_source(
        &self,
        tenant: TenantId,
        user: UserId,
        kind: SourceKind,
        value: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
}
