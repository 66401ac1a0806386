//! Brute-force protection: an address with too many failed sign-ins in a minute is
//! blocked from every sign-in route for a while; an account (the email as typed, so
//! unknown accounts look the same) gets growing delays after a few failures and a
//! temporary lock after more. Both live in the database, so every replica and the
//! `guard` command see the same blocks, and an unblock or unlock acts at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use time::OffsetDateTime;

use crate::events::{Actor, Event, EventSink, Outcome};
use crate::store::StoreError;
use crate::tenants::TenantId;

/// Thresholds, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BruteForceConfig {
    pub enabled: bool,
    /// More failed sign-ins than this from one address within a minute block it.
    pub ip_block_threshold: u32,
    pub ip_block_duration: Duration,
    /// After this many consecutive failures an account waits 1 s, 2 s, 4 s … (at most
    /// a minute) between tries.
    pub lockout_delay_after: u32,
    /// This many consecutive failures lock the account for `lockout_duration`.
    pub lockout_threshold: u32,
    pub lockout_duration: Duration,
}

/// A blocked address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub ip: String,
    /// The tenant whose sign-ins tripped the block.
    pub tenant: Option<TenantId>,
    pub failures: u64,
    pub blocked_at: OffsetDateTime,
    pub blocked_until: OffsetDateTime,
}

/// An account's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFailures {
    pub failures: u64,
    pub last_failure_unix: i64,
    pub locked_until_unix: Option<i64>,
}

/// Why a sign-in may not even be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account failed recently: wait before the next try.
    Delayed { retry_after: Duration },
    /// The account is locked.
    Locked { retry_after: Duration },
}

/// Blocks and account failures in the database.
#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// The block of `ip` in force at `now_unix`.
    async fn ip_block(&self, ip: &str, now_unix: i64) -> Result<Option<IpBlock>, StoreError>;
    /// Blocks (or extends the block of) an address.
    async fn block_ip(&self, block: &IpBlock, audit: &crate::audit::AuditRecord) -> Result<(), StoreError>;
    /// Lifts a block; false when the address was not blocked.
    async fn unblock_ip(&self, ip: &str, audit: &crate::audit::AuditRecord) -> Result<bool, StoreError>;
    /// Blocks in force at `now_unix`, newest first.
    async fn ip_blocks(&self, now_unix: i64) -> Result<Vec<IpBlock>, StoreError>;
    /// Failed sign-ins from `ip`, in any tenant, since `since_unix`.
    async fn ip_failures_since(&self, ip: &str, since_unix: i64) -> Result<u64, StoreError>;
    async fn account_failures(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
    ) -> Result<Option<AccountFailures>, StoreError>;
    /// Counts one more failure of the account at `now_unix`, locking it until
    /// `lock_until_unix` when the count reaches `lock_at`; the new state.
    async fn add_account_failure(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
        now_unix: i64,
        lock_at: u64,
        lock_until_unix: i64,
    ) -> Result<AccountFailures, StoreError>;
    /// Admits one try of the account at `now_unix`, in one atomic step: refused
    /// (`None`) while the account is locked or, after `delay_after` failures, within
    /// its delay; otherwise counted as a failure at once (the new state), locking the
    /// account until `lock_until_unix` when the count reaches `lock_at`. A lock that
    /// has run out starts the count afresh.
    async fn admit_attempt(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
        now_unix: i64,
        delay_after: u64,
        lock_at: u64,
        lock_until_unix: i64,
    ) -> Result<Option<AccountFailures>, StoreError>;
    /// Takes back one try counted by [`Self::admit_attempt`] that turned out right,
    /// lifting the lock it set when the count falls below `lock_at`.
    async fn release_attempt(&self, tenant: TenantId, account: &[u8; 32], lock_at: u64) -> Result<(), StoreError>;
    /// Forgets the account's failures (a success, a reset, an unlock); false when
    /// there were none.
    async fn clear_account(&self, tenant: TenantId, account: &[u8; 32]) -> Result<bool, StoreError>;
    /// Deletes what can no longer matter: blocks and locks that ran out, failures and
    /// sign-in attempts older than `stale_before_unix`, and sign-in challenges and
    /// WebAuthn ceremonies that expired before `expired_before`. The rows deleted.
    async fn prune(
        &self,
        now_unix: i64,
        stale_before_unix: i64,
        expired_before: OffsetDateTime,
    ) -> Result<u64, StoreError>;
}

/// Brute-force protection over a [`SecurityStore`].
#[derive(Clone)]
pub struct BruteForce {
    config: BruteForceConfig,
    store: Arc<dyn SecurityStore>,
    events: crate::audit::AuditLog,
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The wait after `over` failures beyond the delay threshold: 1 s, 2 s, 4 s … at
/// most a minute. The stores compute the same ladder in SQL.
pub fn delay_seconds(over: u64) -> i64 {
    (1i64 << over.min(6)).min(60)
}

/// What [`BruteForce::admit`] decided about a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The try may go ahead; it is counted, and the account's count is now `failures`.
    Admitted {
        failures: u64,
    },
    Refused(Refusal),
}

fn seconds(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

impl BruteForce {
    pub fn new(config: BruteForceConfig, store: Arc<dyn SecurityStore>, events: crate::audit::AuditLog) -> BruteForce {
        BruteForce { config, store, events }
    }

    /// The block in force for `ip`, when protection is on.
    pub async fn blocked(&self, ip: &str) -> Result<Option<IpBlock>, StoreError> {
        if !self.config.enabled {
            return Ok(None);
        }
        self.store.ip_block(ip, unix_now()).await
    }

    /// Whether the account named `account` may try a password now.
    pub async fn check_account(&self, tenant: TenantId, account: &[u8; 32]) -> Result<Option<Refusal>, StoreError> {
        if !self.config.enabled {
            return Ok(None);
        }
        let Some(state) = self.store.account_failures(tenant, account).await? else { return Ok(None) };
        Ok(self.refusal(&state, unix_now()))
    }

    /// Lets one password try of `account` go ahead, or refuses it, in one atomic step
    /// with counting it: the try counts as a failure from the start, and a success
    /// forgets it ([`Self::succeeded`]). So concurrent wrong tries cannot slip past
    /// the lock together: the account locks at exactly the threshold. A try let
    /// through that fails is reported with [`Self::admitted_failed`].
    pub async fn admit(&self, tenant: TenantId, account: &[u8; 32]) -> Result<Admission, StoreError> {
        if !self.config.enabled {
            return Ok(Admission::Admitted { failures: 0 });
        }
        let now = unix_now();
        let lock_until = now + i64::try_from(self.config.lockout_duration.as_secs()).unwrap_or(i64::MAX / 2);
        let admitted = self
            .store
            .admit_attempt(
                tenant,
                account,
                now,
                u64::from(self.config.lockout_delay_after),
                u64::from(self.config.lockout_threshold),
                lock_until,
            )
            .await?;
        if let Some(state) = admitted {
            return Ok(Admission::Admitted { failures: state.failures });
        }
        let state = self.store.account_failures(tenant, account).await?;
        // Refused a moment ago: whatever has changed since, the caller waits a little.
        let refusal = state.and_then(|state| self.refusal(&state, now));
        Ok(Admission::Refused(refusal.unwrap_or(Refusal::Delayed { retry_after: Duration::from_secs(1) })))
    }

    /// A try that [`Self::admit`] let through proved the password, but the sign-in
    /// waits for a second step: the password no longer counts as a failure (the
    /// second step is counted on its own).
    pub async fn admitted_right(&self, tenant: TenantId, account: &[u8; 32]) -> Result<(), StoreError> {
        if !self.config.enabled {
            return Ok(());
        }
        self.store.release_attempt(tenant, account, u64::from(self.config.lockout_threshold)).await
    }

    /// A try that [`Self::admit`] let through failed (it is already counted): the
    /// lock it may have reached is recorded, and the address's failures are weighed.
    pub async fn admitted_failed(&self, tenant: TenantId, failures: u64, ip: Option<&str>) -> Result<(), StoreError> {
        if !self.config.enabled {
            return Ok(());
        }
        if failures == u64::from(self.config.lockout_threshold) {
            self.locked_event(tenant, failures).await;
        }
        self.address_failed(tenant, ip).await
    }

    async fn locked_event(&self, tenant: TenantId, failures: u64) {
        let lock_until = unix_now() + i64::try_from(self.config.lockout_duration.as_secs()).unwrap_or(i64::MAX / 2);
        let mut event = Event::success("security.account.locked", Actor::System).tenant(tenant.0);
        event.outcome = Outcome::Denied;
        self.events.emit(event.details(json!({ "failures": failures, "locked_until_unix": lock_until }))).await;
    }

    fn refusal(&self, state: &AccountFailures, now: i64) -> Option<Refusal> {
        if let Some(until) = state.locked_until_unix.filter(|until| *until > now) {
            return Some(Refusal::Locked { retry_after: seconds(until - now) });
        }
        if state.locked_until_unix.is_some() {
            // A lock that has run out: the next try starts the count afresh.
            return None;
        }
        let delay_after = u64::from(self.config.lockout_delay_after);
        if state.failures >= delay_after {
            let ready = state.last_failure_unix + delay_seconds(state.failures - delay_after);
            if ready > now {
                return Some(Refusal::Delayed { retry_after: seconds(ready - now) });
            }
        }
        None
    }

    /// Counts a failed sign-in of `account` from `ip`: may lock the account and block
    /// the address.
    pub async fn failed(&self, tenant: TenantId, account: &[u8; 32], ip: Option<&str>) -> Result<(), StoreError> {
        if !self.config.enabled {
            return Ok(());
        }
        let now = unix_now();
        let lock_until = now + i64::try_from(self.config.lockout_duration.as_secs()).unwrap_or(i64::MAX / 2);
        let threshold = u64::from(self.config.lockout_threshold);
        let state = self.store.add_account_failure(tenant, account, now, threshold, lock_until).await?;
        if state.failures == threshold {
            self.locked_event(tenant, state.failures).await;
        }
        self.address_failed(tenant, ip).await
    }

    /// Blocks `ip` when its failed sign-ins of the last minute (as recorded by the risk
    /// signals) are over the threshold: for failures that name no account, such as an
    /// unknown passkey.
    pub async fn address_failed(&self, tenant: TenantId, ip: Option<&str>) -> Result<(), StoreError> {
        let Some(ip) = ip.filter(|_| self.config.enabled) else { return Ok(()) };
        let now = unix_now();
        let failures = self.store.ip_failures_since(ip, now - 60).await?;
        if failures > u64::from(self.config.ip_block_threshold) && self.store.ip_block(ip, now).await?.is_none() {
            let at = crate::stored_now();
            let block = IpBlock {
                ip: ip.to_owned(),
                tenant: Some(tenant),
                failures,
                blocked_at: at,
                blocked_until: at + self.config.ip_block_duration,
            };
            let event = Event::success("security.ip.blocked", Actor::System)
                .tenant(tenant.0)
                .target(ip.to_owned())
                .outcome(Outcome::Denied)
                .details(json!({
                    "failures_last_minute": failures,
                    "duration_seconds": self.config.ip_block_duration.as_secs(),
                }));
            let record = self.events.record(&event);
            self.store.block_ip(&block, &record).await?;
            self.events.committed(&record);
        }
        Ok(())
    }

    /// A sign-in of `account` succeeded: its failures are forgotten.
    pub async fn succeeded(&self, tenant: TenantId, account: &[u8; 32]) -> Result<(), StoreError> {
        if self.config.enabled {
            self.store.clear_account(tenant, account).await?;
        }
        Ok(())
    }

    /// Deletes expired blocks, locks, old failures and attempts, and expired sign-in
    /// challenges and WebAuthn ceremonies (run every few seconds by `guard serve`).
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let now = OffsetDateTime::now_utc();
        // A minute's margin: expiry is decided exactly in Rust, this only tidies up.
        self.store.prune(now.unix_timestamp(), now.unix_timestamp() - 24 * 3600, now - time::Duration::minutes(1)).await
    }

    /// Blocks in force now.
    pub async fn blocks(&self) -> Result<Vec<IpBlock>, StoreError> {
        self.store.ip_blocks(unix_now()).await
    }

    /// Lifts the block of `ip`, recorded as done by `actor`.
    pub async fn unblock(&self, actor: Actor, ip: &str) -> Result<bool, StoreError> {
        let record = self.events.record(&Event::success("security.ip.unblocked", actor).target(ip.to_owned()));
        let lifted = self.store.unblock_ip(ip, &record).await?;
        if lifted {
            self.events.committed(&record);
        }
        Ok(lifted)
    }

    /// Unlocks an account (by its email): its failures are forgotten.
    pub async fn unlock(&self, actor: Actor, tenant: TenantId, email: &str) -> Result<bool, StoreError> {
        let cleared = self.store.clear_account(tenant, &crate::risk::account_hash(email)).await?;
        self.events
            .emit(
                Event::success("security.account.unlocked", actor)
                    .tenant(tenant.0)
                    .details(json!({ "had_failures": cleared })),
            )
            .await;
        Ok(cleared)
    }
}
