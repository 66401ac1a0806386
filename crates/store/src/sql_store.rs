//! The store type both backends share: a sqlx pool and the embedded migrations.

use std::time::Duration;

use async_trait::async_trait;
use guard_core::store::{Backend, PoolStats, PoolStore, StoreError};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
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
    /// Where the configured durability is weaker than a flush per commit (SQLite at
    /// synchronous=NORMAL): how the writer makes one commit flush, and goes back.
    pub(crate) relaxed: Option<RelaxedCommits>,
}

/// The statements that raise a writer connection to a flush per commit, and lower it
/// back to the configured level.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelaxedCommits {
    pub(crate) flush: &'static str,
    pub(crate) configured: &'static str,
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
            relaxed: None,
        }
    }

    /// Commits are not flushed one by one unless asked: see [`SqlStore::flushing_writer`].
    pub(crate) fn with_relaxed_commits(mut self, relaxed: RelaxedCommits) -> SqlStore<DB> {
        self.relaxed = Some(relaxed);
        self
    }
}

impl<DB: Database> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// The writer's connection, set so that its next commits reach the disk before they
    /// return whatever the configured level, for what the audit log signs or delivers
    /// (sealed records, checkpoints). A flush of SQLite's write-ahead log covers every
    /// commit before it as well. Give it back with [`SqlStore::release_writer`].
    pub(crate) async fn flushing_writer(&self) -> Result<PoolConnection<DB>, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(crate::error::from_sqlx)?;
        if let Some(relaxed) = self.relaxed {
            sqlx::raw_sql(relaxed.flush).execute(&mut *conn).await.map_err(crate::error::from_sqlx)?;
        }
        Ok(conn)
    }

    /// Puts a connection from [`SqlStore::flushing_writer`] back at the configured level.
    pub(crate) async fn release_writer(&self, mut conn: PoolConnection<DB>) {
        if let Some(relaxed) = self.relaxed
            && let Err(e) = sqlx::raw_sql(relaxed.configured).execute(&mut *conn).await
        {
            // Left flushing every commit: slower, never less durable; and not for long.
            tracing::warn!(error = %e, "cannot return the writer to the configured SQLITE_SYNCHRONOUS; closing it");
            conn.close_on_drop();
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
