//! The store type both backends share: a sqlx pool and the embedded migrations.

use std::time::Duration;

use async_trait::async_trait;
use guard_core::store::{Backend, PoolStats, PoolStore, StoreError};
use sqlx::migrate::Migrator;
use sqlx::{Database, Pool};

/// guard's stores on one SQL database. The SQLite and PostgreSQL modules only differ
/// in how they open the pool and in the SQL of their queries.
pub(crate) struct SqlStore<DB: Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) migrator: Migrator,
    pub(crate) max_idle: u32,
    pub(crate) backend: Backend,
}

impl<DB: Database> SqlStore<DB> {
    /// Wraps `pool`, enforcing `max_idle` idle connections.
    pub(crate) fn new(pool: Pool<DB>, max_idle: u32, backend: Backend) -> SqlStore<DB> {
        crate::pool::trim_idle(pool.clone(), max_idle);
        SqlStore { pool, migrator: crate::migrate::migrator(backend), max_idle, backend }
    }
}

#[async_trait]
impl<DB: Database> PoolStore for SqlStore<DB> {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self, limit: Duration) -> Result<(), StoreError> {
        crate::pool::ping(&self.pool, limit).await
    }

    fn stats(&self) -> PoolStats {
        crate::pool::stats(&self.pool, self.max_idle)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
