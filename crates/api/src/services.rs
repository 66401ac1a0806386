//! Every service of guard, built once from the configuration and the database, for
//! the server and for the commands that act on the same data.

use std::sync::Arc;

use guard_core::Config;
use guard_core::accounts::AccountService;
use guard_core::audit::{AuditKeys, AuditLog};
use guard_core::config::DatabaseKind;
use guard_core::email::{OutboxSender, Templates};
use guard_core::keys::{KeyService, MasterKey, TokenService};
use guard_core::mfa::MfaService;
use guard_core::passwords::PasswordHasher;
use guard_core::risk::RiskService;
use guard_core::security::BruteForce;
use guard_core::sessions::{AuthParts, AuthService, MemorySessionCache, SessionCache};
use guard_core::tenants::TenantService;
use guard_core::users::UserService;
use guard_store::redis::Redis;
use guard_store::{Database, RedisSessionCache};

/// guard's services over one database (and Redis, when configured).
#[derive(Clone)]
pub struct Services {
    pub tenants: TenantService,
    pub users: UserService,
    pub auth: AuthService,
    pub accounts: AccountService,
    pub keys: KeyService,
    pub outbox: OutboxSender,
    pub mfa: MfaService,
    pub audit: AuditLog,
    pub authz: guard_core::authz::Authz,
}

/// The master key the configuration names: GUARD_MASTER_KEY, or the key file (made on
/// first start when the database is SQLite, a single machine's deployment).
pub fn master_key(config: &Config) -> Result<MasterKey, String> {
    match &config.security.master_key {
        Some(key) => MasterKey::from_base64(key.expose()).map_err(|e| format!("GUARD_MASTER_KEY: {e}")),
        None => {
            let create = config.database.kind() == DatabaseKind::Sqlite;
            MasterKey::load_or_create(&config.security.master_key_path, create).map_err(|e| e.to_string())
        }
    }
}

/// The audit log of `db`, with keys derived from the configuration's master key.
pub fn audit_log(config: &Config, db: &Database) -> Result<AuditLog, String> {
    let keys = AuditKeys::derive(&master_key(config)?).map_err(|e| e.to_string())?;
    Ok(AuditLog::new(db.audit.clone(), keys, config.audit.checkpoint_interval))
}

/// The decision engine's settings from the configuration.
pub fn authz_settings(config: &Config) -> guard_core::authz::AuthzSettings {
    guard_core::authz::AuthzSettings {
        eval_timeout: config.authz.eval_timeout,
        cache_size: config.authz.cache_size,
        audit_allowed_sample: config.authz.audit_allowed_sample,
        audit_denied_window: config.authz.audit_denied_window,
        entity_cache_size: config.authz.entity_cache_size,
        max_policies: config.authz.max_policies,
        max_policy_bytes: config.authz.max_policy_bytes,
        ..Default::default()
    }
}

impl Services {
    /// Builds every service; fails when the password hashing parameters, the master
    /// key or the email templates are unusable.
    pub fn new(config: &Config, db: &Database, redis: Option<&Redis>) -> Result<Services, String> {
        let audit = audit_log(config, db)?;
        let events = audit.clone();
        let hasher = PasswordHasher::per_cpu(config.password.hash).map_err(|e| e.to_string())?;
        let master = master_key(config)?;
        let keys = KeyService::new(
            db.keys.clone(),
            master.clone(),
            config.security.signing_algorithm,
            config.cache.settings_ttl,
        );
        let tokens = TokenService::new(keys.clone(), &config.server.public_url);
        let ttl = config.cache.sessions_ttl;
        let cache: Arc<dyn SessionCache> = match redis {
            Some(redis) if !ttl.is_zero() => Arc::new(RedisSessionCache::new(redis.clone(), ttl)),
            _ => Arc::new(MemorySessionCache::new(ttl)),
        };
        let tenants = TenantService::new(db.tenants.clone(), events.clone());
        let templates = Templates::load(config.smtp.templates_dir.as_deref())?;
        let outbox = OutboxSender::new(db.email.clone(), templates, audit.clone());
        let auth = AuthService::new(AuthParts {
            users: db.users.clone(),
            sessions: db.sessions.clone(),
            cache,
            tokens,
            hasher: hasher.clone(),
            events: events.clone(),
            mfa: db.mfa.clone(),
            risk: Arc::new(RiskService::new(db.risk.clone())),
            outbox: outbox.clone(),
            brute_force: BruteForce::new(config.brute_force, db.security.clone(), events.clone()),
        });
        let users = UserService::new(db.users.clone(), tenants.clone(), hasher.clone(), auth.clone(), events.clone())
            .with_tenant_roles(db.authz.clone());
        let authz = guard_core::authz::Authz::new(db.authz.clone(), audit.clone(), authz_settings(config));
        let accounts = AccountService::new(
            db.users.clone(),
            db.email.clone(),
            outbox.clone(),
            auth.clone(),
            hasher,
            events.clone(),
            &config.server.public_url,
        );
        let mfa = MfaService::new(
            db.mfa.clone(),
            db.users.clone(),
            auth.clone(),
            master,
            outbox.clone(),
            events,
            &config.server.public_url,
        );
        Ok(Services { tenants, users, auth, accounts, keys, outbox, mfa, audit, authz })
    }
}

/// Retention: prunes every chain of the audit log to its tenant's
/// `audit_retention_days`, or the configured retention, keeping what the configured
/// sink has not received yet; returns how many records went.
pub async fn apply_audit_retention(
    tenants: &TenantService,
    audit: &AuditLog,
    config: &guard_core::config::AuditConfig,
) -> Result<u64, String> {
    let default = config.retention;
    let held_for: Vec<String> = config.delivery.iter().map(guard_core::audit::Sink::name).collect();
    let mut retention = std::collections::HashMap::new();
    let mut cursor = None;
    loop {
        let page = tenants.list(cursor, 500).await.map_err(|e| e.to_string())?;
        for tenant in &page.tenants {
            if let Some(days) = tenant.settings.audit_retention_days {
                retention.insert(tenant.id.0, std::time::Duration::from_secs(u64::from(days) * 86_400));
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    audit.prune(|tenant| retention.get(&tenant).copied().unwrap_or(default), &held_for).await.map_err(|e| e.to_string())
}
