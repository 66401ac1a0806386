//! The SQLite backend: one file, WAL journal flushed at each commit unless
//! SQLITE_SYNCHRONOUS=normal, busy timeout, foreign keys enforced.

use std::str::FromStr;

use guard_core::config::{DatabaseConfig, SqliteSynchronous as SqliteSync};
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
use crate::sql_store::{RelaxedCommits, SqlStore};
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
        .synchronous(match config.sqlite_synchronous {
            SqliteSync::Normal => SqliteSynchronous::Normal,
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Extra => SqliteSynchronous::Extra,
        })
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
    let store =
        SqlStore::new(pool_options.connect_lazy_with(options), Some(writer), config.max_idle_conns, Backend::Sqlite);
    Ok(match config.sqlite_synchronous {
        // What the audit log signs or delivers must not be taken back by a power cut.
        SqliteSync::Normal => store.with_relaxed_commits(RelaxedCommits {
            flush: "PRAGMA synchronous = FULL",
            configured: "PRAGMA synchronous = NORMAL",
        }),
        SqliteSync::Full | SqliteSync::Extra => store,
    })
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

    /// The level (0 off, 1 normal, 2 full, 3 extra) of a connection from the read pool
    /// and of the writer's connection.
    async fn levels(store: &SqliteStore) -> (i64, i64) {
        let mut read = store.pool.acquire().await.unwrap();
        let mut write = store.writer.acquire().await.unwrap();
        let read: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *read).await.unwrap();
        let write: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *write).await.unwrap();
        (read, write)
    }

    fn config_with(url: &str, synchronous: Option<&str>) -> DatabaseConfig {
        let mut env = vec![("DATABASE_URL".to_owned(), url.to_owned())];
        if let Some(level) = synchronous {
            env.push(("SQLITE_SYNCHRONOUS".to_owned(), level.to_owned()));
        }
        ConfigLoader::with_env(None, env.into_iter().collect()).load().unwrap().config.database
    }

    #[tokio::test]
    async fn every_connection_commits_with_full_sync_by_default() {
        let dir = std::env::temp_dir().join(format!("guard-sqlite-{}", uuid_like()));
        let store = open(&config_with(&format!("sqlite://{}/guard.db", dir.display()), None)).await.unwrap();
        assert_eq!(levels(&store).await, (2, 2), "synchronous=FULL: every acknowledged commit is on disk");
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn sqlite_synchronous_normal_and_extra_reach_every_connection() {
        for (value, level) in [("normal", 1), ("NORMAL", 1), ("full", 2), ("extra", 3)] {
            let dir = std::env::temp_dir().join(format!("guard-sqlite-{}", uuid_like()));
            let url = format!("sqlite://{}/guard.db", dir.display());
            let store = open(&config_with(&url, Some(value))).await.unwrap();
            assert_eq!(levels(&store).await, (level, level), "SQLITE_SYNCHRONOUS={value}");
            store.close().await;
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Under synchronous=NORMAL, what the audit log signs and delivers (sealed records,
    /// checkpoints) still commits with an fsync, which makes every earlier commit
    /// durable too; other writes keep the operator's level, which the writer gets back.
    #[tokio::test]
    async fn under_normal_sealing_and_checkpoints_still_commit_with_full_sync() {
        use guard_core::audit::{AuditKeys, AuditRecord, AuditStore};
        use guard_core::store::MigrationStore;

        let dir = std::env::temp_dir().join(format!("guard-sqlite-{}", uuid_like()));
        let store = open(&config_with(&format!("sqlite://{}/guard.db", dir.display()), Some("normal"))).await.unwrap();
        store.up().await.unwrap();
        {
            // The writer pool holds one connection: the temporary triggers, on it, see
            // each of the store's writes with the level it committed at.
            let mut writer = store.writer.acquire().await.unwrap();
            for sql in [
                "CREATE TEMP TABLE seen (what TEXT NOT NULL, level INTEGER NOT NULL)",
                "CREATE TEMP TRIGGER queued AFTER INSERT ON main.audit_queue \
                 BEGIN INSERT INTO seen SELECT 'queued', synchronous FROM pragma_synchronous; END",
                "CREATE TEMP TRIGGER sealed AFTER INSERT ON main.audit_events \
                 BEGIN INSERT INTO seen SELECT 'sealed', synchronous FROM pragma_synchronous; END",
                "CREATE TEMP TRIGGER signed AFTER INSERT ON main.audit_checkpoints \
                 BEGIN INSERT INTO seen SELECT 'checkpoint', synchronous FROM pragma_synchronous; END",
            ] {
                sqlx::query(sql).execute(&mut *writer).await.unwrap();
            }
        }
        let keys = AuditKeys::derive(&guard_core::keys::MasterKey::generate().unwrap()).unwrap();
        let record = AuditRecord {
            id: uuid::Uuid::now_v7(),
            tenant: uuid::Uuid::nil(),
            seq: None,
            at_us: 1,
            kind: "user.updated".into(),
            actor: "operator".into(),
            target: None,
            result: "success".into(),
            ip: None,
            user_agent: None,
            request_id: None,
            details: "{}".into(),
            mac: vec![0; 32],
            hash: None,
        };
        store.append(std::slice::from_ref(&record)).await.unwrap();
        let heads = store.seal(100, &keys).await.unwrap();
        let head = &heads[0].0;
        store.add_checkpoint(&keys.sign(head.tenant, head.last_seq, &head.last_hash, 2)).await.unwrap();

        let mut writer = store.writer.acquire().await.unwrap();
        let seen: Vec<(String, i64)> =
            sqlx::query_as("SELECT what, level FROM seen ORDER BY rowid").fetch_all(&mut *writer).await.unwrap();
        let seen: Vec<(&str, i64)> = seen.iter().map(|(w, l)| (w.as_str(), *l)).collect();
        assert_eq!(seen, vec![("queued", 1), ("sealed", 2), ("checkpoint", 2)]);
        let after: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *writer).await.unwrap();
        assert_eq!(after, 1, "the writer is back at the configured level");
        drop(writer);
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
