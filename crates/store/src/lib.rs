//! SQLite and PostgreSQL implementations of guard's storage traits, the embedded
//! migrations for both, and the optional Redis connection.
//!
//! [`open`] picks the backend from the database URL and returns [`Database`], the
//! bundle of `Arc<dyn …>` stores the rest of guard is written against.

mod audit;
mod authz;
pub mod backup;
mod backup_sqlite;
mod email;
mod error;
mod keys;
mod mfa;
mod migrate;
mod ops;
mod pool;
mod postgres;
mod rate_limit;
pub mod redis;
mod risk;
mod security;
mod session_cache;
mod sessions;
mod sql_store;
mod sqlite;
mod tenants;
mod users;

use std::sync::Arc;

use guard_core::audit::AuditStore;
use guard_core::authz::AuthzStore;
use guard_core::config::{DatabaseConfig, DatabaseKind};
use guard_core::email::EmailStore;
use guard_core::keys::KeyStore;
use guard_core::mfa::MfaStore;
use guard_core::risk::RiskStore;
use guard_core::security::SecurityStore;
use guard_core::sessions::SessionStore;
use guard_core::store::{MigrationStore, OpsStore, PoolStore, StoreError};
use guard_core::tenants::TenantStore;
use guard_core::users::UserStore;

pub use migrate::{EmbeddedMigration, embedded_migrations};
pub use rate_limit::RedisLimiter;
pub use session_cache::RedisSessionCache;

/// Every store of one database, behind the traits the application uses.
#[derive(Clone)]
pub struct Database {
    pub pool: Arc<dyn PoolStore>,
    pub migrations: Arc<dyn MigrationStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub keys: Arc<dyn KeyStore>,
    pub email: Arc<dyn EmailStore>,
    pub mfa: Arc<dyn MfaStore>,
    pub risk: Arc<dyn RiskStore>,
    pub security: Arc<dyn SecurityStore>,
    pub audit: Arc<dyn AuditStore>,
    pub authz: Arc<dyn AuthzStore>,
    pub ops: Arc<dyn OpsStore>,
}

/// Opens the database the configuration names. The pool connects lazily, so this
/// succeeds while the database is down; the first query reports why it is.
pub async fn open(config: &DatabaseConfig) -> Result<Database, StoreError> {
    if cfg!(feature = "bench-unaudited") {
        tracing::error!("this guard is a benchmark build that writes NO audit records: never deploy it");
    }
    match config.kind() {
        DatabaseKind::Sqlite => Ok(bundle(Arc::new(sqlite::open(config).await?))),
        DatabaseKind::Postgres => Ok(bundle(Arc::new(postgres::open(config)?))),
    }
}

/// One backend's store behind every trait.
fn bundle<S>(store: Arc<S>) -> Database
where
    S: PoolStore
        + MigrationStore
        + TenantStore
        + UserStore
        + SessionStore
        + KeyStore
        + EmailStore
        + MfaStore
        + RiskStore
        + SecurityStore
        + AuditStore
        + AuthzStore
        + OpsStore
        + 'static,
{
    Database {
        pool: store.clone(),
        migrations: store.clone(),
        tenants: store.clone(),
        users: store.clone(),
        sessions: store.clone(),
        keys: store.clone(),
        email: store.clone(),
        mfa: store.clone(),
        risk: store.clone(),
        security: store.clone(),
        audit: store.clone(),
        authz: store.clone(),
        ops: store,
    }
}
