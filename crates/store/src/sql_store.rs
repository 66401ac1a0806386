//! The store type both backends share: a sqlx pool and the embedded migrations.

use std::time::Duration;

use async_trait::async_trait;
use guard_core::store::{Backend, PoolStats, PoolStore, StoreError};
use sqlx::migrate::Migrator;
use sqlx::{Database, Executor, Pool};
use tokio::sync::Semaphore;

/// guard's stores on one SQL database. The SQLite and PostgreSQL modules only differ
/// in how they open the pool and in the SQL of their queries.
pub(crate) struct SqlStore<DB: Database> {
    pub(crate) pool: Pool<DB>,
    /// Where writes go. On a SQLite file this is a pool of one connection, so writers
    /// queue in the process instead of meeting SQLite's busy lock and sleeping in its
    /// busy handler; elsewhere it is `pool`.
    pub(crate) writer: Pool<DB>,
    pub(crate) migrator: Migrator,
    pub(crate) max_idle: u32,
    pub(crate) backend: Backend,
    /// At most one connection outside the pool at a time, for diagnosing a ping.
    pub(crate) probe: Semaphore,
}

impl<DB: Database> SqlStore<DB> {
    /// Wraps `pool`, enforcing `max_idle` idle connections; writes go to `writer` when
    /// given, else to `pool`.
    pub(crate) fn new(pool: Pool<DB>, writer: Option<Pool<DB>>, max_idle: u32, backend: Backend) -> SqlStore<DB> {
        crate::pool::trim_idle(pool.clone(), max_idle);
        let writer = writer.unwrap_or_else(|| pool.clone());
        SqlStore {
            pool,
            writer,
            migrator: crate::migrate::migrator(backend),
            max_idle,
            backend,
            probe: Semaphore::new(1),
        }
    }
}

#[async_trait]
impl<DB: Database> PoolStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self, limit: Duration) -> Result<(), StoreError> {
        crate::pool::ping(&self.pool, &self.probe, limit).await
    }

    fn stats(&self) -> PoolStats {
        crate::pool::stats(&self.pool, self.max_idle)
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
