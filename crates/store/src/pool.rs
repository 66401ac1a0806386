//! Pool settings shared by both backends.

use std::time::{Duration, Instant};

use guard_core::config::DatabaseConfig;
use guard_core::store::{PoolStats, StoreError};
use sqlx::pool::PoolOptions;
use sqlx::{ConnectOptions, Connection, Database, Executor, Pool};
use tokio::sync::Semaphore;

use crate::error::unavailable_reason;

/// Pool options from DB_MAX_OPEN_CONNS, DB_CONN_MAX_LIFETIME, DB_CONN_MAX_IDLE_TIME
/// and DB_ACQUIRE_TIMEOUT. DB_MAX_IDLE_CONNS has no sqlx equivalent and is enforced by
/// [`trim_idle`].
///
/// A connection is pinged before it is handed out only when it sat idle for
/// [`PING_IDLE_AFTER`]: one that was just in use is as good as its last answer, and a
/// ping per query would double the round trips to the database.
pub(crate) fn options<DB: Database>(config: &DatabaseConfig) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(config.max_open_conns)
        .min_connections(0)
        .max_lifetime(config.conn_max_lifetime)
        .idle_timeout(config.conn_max_idle_time)
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How long a pooled connection may sit idle before it is pinged on its next use.
pub(crate) const PING_IDLE_AFTER: Duration = Duration::from_secs(5);

/// Figures for one pool.
pub(crate) fn stats<DB: Database>(pool: &Pool<DB>, max_idle: u32) -> PoolStats {
    let open = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
    PoolStats { open, idle, in_use: open - idle, max_open: pool.options().get_max_connections(), max_idle }
}

/// Closes idle connections beyond `max_idle`, checking once a second, until the pool
/// is closed. This is how DB_MAX_IDLE_CONNS behaves as operators know it from other
/// runtimes: connections above the limit are closed when they are returned idle.
pub(crate) fn trim_idle<DB: Database>(pool: Pool<DB>, max_idle: u32) {
    if max_idle >= pool.options().get_max_connections() {
        return;
    }
    tokio::spawn(async move {
        let closed = pool.close_event();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            while pool.num_idle() > max_idle as usize {
                match pool.try_acquire() {
                    Some(conn) => {
                        let _ = conn.close().await;
                    }
                    None => break,
                }
            }
        }
    });
}

/// Runs `SELECT 1` through the pool within `limit`. When no pooled connection comes in
/// time, one direct connection attempt tells an unreachable database (and why) from a
/// pool whose connections are all busy; `probe` keeps those attempts to one at a time,
/// so health checks cannot pile connections onto a database that is struggling.
pub(crate) async fn ping<DB: Database>(pool: &Pool<DB>, probe: &Semaphore, limit: Duration) -> Result<(), StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let started = Instant::now();
    let remaining = || limit.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
    let within = |what: &str| StoreError::Unavailable(format!("{what} within {}s", limit.as_secs_f64()));
    match tokio::time::timeout(limit / 2, pool.acquire()).await {
        Ok(Ok(mut conn)) => {
            match tokio::time::timeout(remaining(), sqlx::raw_sql("SELECT 1").execute(&mut *conn)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Unavailable(unavailable_reason(&e))),
                Err(_) => Err(within("no answer to a ping")),
            }
        }
        Ok(Err(e)) if !matches!(e, sqlx::Error::PoolTimedOut) => Err(StoreError::Unavailable(unavailable_reason(&e))),
        _ => {
            let Ok(_one_probe) = probe.try_acquire() else {
                return Err(within("no pooled connection"));
            };
            let options = pool.connect_options();
            match tokio::time::timeout(remaining(), options.connect()).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Err(StoreError::Unavailable(format!(
                        "all {} pooled connections are busy (pool exhausted)",
                        pool.size()
                    )))
                }
                Ok(Err(e)) => Err(StoreError::Unavailable(unavailable_reason(&e))),
                Err(_) => Err(within("no connection")),
            }
        }
    }
}
