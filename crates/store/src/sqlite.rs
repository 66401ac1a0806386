//! The SQLite backend: one file, WAL journal, busy timeout, foreign keys enforced.

use std::str::FromStr;

use guard_core::config::DatabaseConfig;
use guard_core::store::{Backend, StoreError};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::audit::impl_audit_store;
use crate::authz::impl_authz_store;
use crate::email::impl_email_store;
use crate::keys::impl_key_store;
use crate::mfa::impl_mfa_store;
use crate::migrate::impl_migration_store;
use crate::risk::impl_risk_store;
use crate::security::impl_security_store;
use crate::sessions::impl_session_store;
use crate::sql_store::SqlStore;
use crate::tenants::impl_tenant_store;
use crate::users::impl_user_store;

/// guard's stores on SQLite.
pub(crate) type SqliteStore = SqlStore<Sqlite>;

/// Opens (creating when missing, with its directory) the database file.
pub(crate) async fn open(config: &DatabaseConfig) -> Result<SqliteStore, StoreError> {
    let url = config.url.expose();
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidConfig(format!("DATABASE_URL: not a SQLite URL the driver accepts ({e})")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(config.sqlite_busy_timeout)
        .foreign_keys(true);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory && let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot create the database directory {}: {}", dir.display(), e.kind()))
        })?;
    }
    let pool_options = crate::pool::options(config);
    if in_memory {
        // Each connection to an in-memory database is a database of its own: keep
        // exactly one, forever, for reads and writes alike.
        let pool_options = pool_options.max_connections(1).min_connections(1).max_lifetime(None).idle_timeout(None);
        return Ok(SqlStore::new(pool_options.connect_lazy_with(options), None, 1, Backend::Sqlite));
    }
    // SQLite admits one writer at a time; one connection for writes makes the others
    // wait in the pool's queue, in order, rather than in SQLite's sleeping busy
    // handler. Reads run on the other pool beside it (WAL).
    let writer = pool_options.clone().max_connections(1).connect_lazy_with(options.clone());
    Ok(SqlStore::new(pool_options.connect_lazy_with(options), Some(writer), config.max_idle_conns, Backend::Sqlite))
}

impl SqliteStore {
    /// A chain's sealed records after `after_seq`, in order (one JSON page).
    pub(crate) async fn sealed_page(
        &self,
        tenant: uuid::Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<guard_core::audit::AuditRecord>, StoreError> {
        let page: String = sqlx::query_scalar(crate::audit::SEALED_PAGE_JSON)
            .bind(tenant)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(crate::error::from_sqlx)?;
        crate::audit::from_json_page(&page)
    }
}

impl_tenant_store!(SqliteStore);
crate::ops::impl_ops_store!(SqliteStore, size: crate::ops::sqlite_size, optimize: crate::ops::sqlite_optimize, integrity: crate::ops::sqlite_integrity);
impl_user_store!(SqliteStore);
impl_session_store!(SqliteStore);
impl_key_store!(SqliteStore);
impl_risk_store!(SqliteStore);
impl_security_store!(SqliteStore);
impl_authz_store!(SqliteStore);
impl_mfa_store!(SqliteStore, sqlx::Sqlite);
impl_audit_store!(SqliteStore, sqlx::Sqlite);
impl_email_store!(SqliteStore, "");

impl_migration_store!(
    SqliteStore,
    exists: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    applied: "SELECT version, description, checksum, CAST(installed_on AS TEXT) FROM _sqlx_migrations WHERE success ORDER BY version"
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use guard_core::config::ConfigLoader;
    use guard_core::store::PoolStore;
    use sqlx::SqlitePool;

    use super::*;

    fn config(url: &str) -> DatabaseConfig {
        let env = [("DATABASE_URL".to_owned(), url.to_owned()), ("DB_SQLITE_BUSY_TIMEOUT".to_owned(), "7s".to_owned())];
        ConfigLoader::with_env(None, env.into_iter().collect()).load().unwrap().config.database
    }

    #[tokio::test]
    async fn first_open_creates_the_file_and_its_directory_with_wal_foreign_keys_and_busy_timeout() {
        let dir = std::env::temp_dir().join(format!("guard-sqlite-{}", uuid_like()));
        let path = dir.join("nested/guard.db");
        let store = open(&config(&format!("sqlite://{}", path.display()))).await.unwrap();
        store.ping(Duration::from_secs(5)).await.unwrap();
        assert!(path.exists());
        let mut conn = store.pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(busy, 7000);
        drop(conn);
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn idle_connections_above_the_limit_are_closed() {
        let dir = std::env::temp_dir().join(format!("guard-sqlite-{}", uuid_like()));
        let mut cfg = config(&format!("sqlite://{}/guard.db", dir.display()));
        cfg.max_open_conns = 4;
        cfg.max_idle_conns = 1;
        let store = open(&cfg).await.unwrap();
        let held: Vec<_> = futures_join(&store.pool, 4).await;
        assert_eq!(store.stats().open, 4);
        drop(held);
        let mut waited = Duration::ZERO;
        while store.stats().open > 1 && waited < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += Duration::from_millis(100);
        }
        let stats = store.stats();
        assert_eq!(stats.open, 1, "{stats:?}");
        assert_eq!(stats.max_open, 4);
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn pool_settings_reach_the_pool() {
        let dir = std::env::temp_dir().join(format!("guard-sqlite-{}", uuid_like()));
        let mut cfg = config(&format!("sqlite://{}/guard.db", dir.display()));
        cfg.max_open_conns = 7;
        cfg.conn_max_lifetime = Some(Duration::from_secs(123));
        cfg.conn_max_idle_time = None;
        cfg.acquire_timeout = Duration::from_secs(9);
        let store = open(&cfg).await.unwrap();
        let options = store.pool.options();
        assert_eq!(options.get_max_connections(), 7);
        assert_eq!(options.get_max_lifetime(), Some(Duration::from_secs(123)));
        assert_eq!(options.get_idle_timeout(), None);
        assert_eq!(options.get_acquire_timeout(), Duration::from_secs(9));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn futures_join(pool: &SqlitePool, n: usize) -> Vec<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(pool.acquire().await.unwrap());
        }
        held
    }

    fn uuid_like() -> String {
        format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        )
    }
}
