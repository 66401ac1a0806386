//! Application state shared by every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use guard_core::Config;
use guard_core::accounts::AccountService;
use guard_core::keys::KeyService;
use guard_core::sessions::AuthService;
use guard_core::tenants::TenantService;
use guard_core::users::UserService;
use guard_store::Database;
use guard_store::redis::Redis;

use crate::metrics::Metrics;
use crate::services::Services;
use crate::tenancy::TenantCache;

/// Version facts reported by /health and guard_build_info.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
}

impl BuildInfo {
    /// This build.
    pub fn current() -> BuildInfo {
        BuildInfo { version: env!("CARGO_PKG_VERSION"), commit: env!("GUARD_BUILD_COMMIT") }
    }
}

/// Whether the process is taking traffic or draining it before exit.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    draining: Arc<AtomicBool>,
}

impl Lifecycle {
    /// Marks the start of a graceful shutdown: readiness turns 503 so load balancers
    /// stop sending new requests while in-flight ones finish.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Everything a handler may need. Cloned for every request (by the middleware and the
/// `State` extractor), so it is one reference count, not one per member.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The members of [`AppState`].
pub struct AppStateInner {
    pub config: Arc<Config>,
    pub db: Database,
    pub redis: Option<Redis>,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
    pub build: BuildInfo,
    pub started: Instant,
    pub tenants: TenantService,
    pub tenant_cache: TenantCache,
    pub users: UserService,
    pub auth: AuthService,
    pub accounts: AccountService,
    pub keys: KeyService,
    pub mfa: guard_core::mfa::MfaService,
    pub audit: guard_core::audit::AuditLog,
    pub authz: guard_core::authz::Authz,
    pub limiter: Arc<guard_core::ratelimit::RateLimiter>,
}

impl AppState {
    /// State for a process that started at `started`; fails when a service cannot be
    /// built (see [`Services::new`]).
    pub fn new(
        config: Config,
        db: Database,
        redis: Option<Redis>,
        metrics: Metrics,
        started: Instant,
    ) -> Result<AppState, String> {
        let Services { tenants, users, auth, accounts, keys, outbox: _, mfa, audit, authz } =
            Services::new(&config, &db, redis.as_ref())?;
        let tenant_cache = TenantCache::new(config.cache.settings_ttl);
        let shared = redis
            .clone()
            .map(|r| Arc::new(guard_store::RedisLimiter::new(r)) as Arc<dyn guard_core::ratelimit::SharedLimiter>);
        let limiter = Arc::new(guard_core::ratelimit::RateLimiter::new(config.rate_limit.clone(), shared));
        Ok(AppState(Arc::new(AppStateInner {
            config: Arc::new(config),
            db,
            redis,
            metrics,
            lifecycle: Lifecycle::default(),
            build: BuildInfo::current(),
            started,
            tenants,
            tenant_cache,
            users,
            auth,
            accounts,
            keys,
            mfa,
            audit,
            authz,
            limiter,
        })))
    }

    /// Whole seconds since the process started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
