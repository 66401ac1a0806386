//! The optional Redis connection: one managed, multiplexed connection that reconnects
//! by itself after Redis restarts or the network drops.

use std::time::{Duration, Instant};

use guard_core::config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A handle to Redis, cheap to clone. Commands go through one multiplexed connection;
/// when it breaks, the next command reconnects.
#[derive(Clone)]
pub struct Redis {
    manager: ConnectionManager,
    key_prefix: String,
}

/// Why Redis did not answer, in words safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RedisUnavailable(pub String);

impl Redis {
    /// Prepares the connection without opening it, so guard starts while Redis is
    /// down; the first command connects.
    pub fn open(config: &RedisConfig) -> Result<Option<Redis>, RedisUnavailable> {
        let Some(url) = &config.url else { return Ok(None) };
        let client = redis::Client::open(url.expose()).map_err(|_| RedisUnavailable("invalid Redis URL".into()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| RedisUnavailable(describe(&e)))?;
        Ok(Some(Redis { manager, key_prefix: config.key_prefix.clone() }))
    }

    /// Sends PING and returns how long the answer took.
    pub async fn ping(&self) -> Result<Duration, RedisUnavailable> {
        let started = Instant::now();
        let mut conn = self.manager.clone();
        let reply: String =
            redis::cmd("PING").query_async(&mut conn).await.map_err(|e| RedisUnavailable(describe(&e)))?;
        if reply != "PONG" {
            return Err(RedisUnavailable("unexpected reply to PING".into()));
        }
        Ok(started.elapsed())
    }

    /// `name` with this deployment's key prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    /// A connection for commands; clones share the one multiplexed connection.
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }
}

fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "Redis did not answer in time".into()
    } else if e.is_connection_refusal() {
        "connection to Redis refused".into()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection to Redis lost".into()
    } else {
        format!("Redis error ({:?})", e.kind())
    }
}
