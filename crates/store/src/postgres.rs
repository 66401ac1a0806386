//! The PostgreSQL backend.

use std::str::FromStr;

use async_trait::async_trait;
use guard_core::config::DatabaseConfig;
use guard_core::store::{Backend, PoolStats, PoolStore, StoreError};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;

use crate::migrate::{impl_migration_store, migrator};

/// guard's stores on PostgreSQL.
pub(crate) struct PgStore {
    pool: PgPool,
    migrator: Migrator,
    max_idle: u32,
}

impl PgStore {
    /// Prepares the pool; connections open on first use, so a database that is down
    /// now is picked up when it comes back.
    pub(crate) fn open(config: &DatabaseConfig) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(config.url.expose())
            .map_err(|_| StoreError::Unavailable("invalid PostgreSQL URL".into()))?
            .application_name("guard");
        let pool = crate::pool::options(config).connect_lazy_with(options);
        crate::pool::trim_idle(pool.clone(), config.max_idle_conns);
        Ok(PgStore { pool, migrator: migrator(Backend::Postgres), max_idle: config.max_idle_conns })
    }
}

#[async_trait]
impl PoolStore for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self, limit: std::time::Duration) -> Result<(), StoreError> {
        crate::pool::ping(&self.pool, limit).await
    }

    fn stats(&self) -> PoolStats {
        crate::pool::stats(&self.pool, self.max_idle)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl_migration_store!(
    PgStore,
    exists: "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
    applied: "SELECT version, description, checksum, to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
     FROM _sqlx_migrations WHERE success ORDER BY version"
);
