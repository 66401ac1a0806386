//! The shared rate limiter in Redis: the GCRA step as one Lua script, so a check is
//! one atomic round trip, and Redis's own clock, so replicas whose clocks disagree
//! still count against one limit.

use async_trait::async_trait;
use guard_core::ratelimit::{Outcome, Rule, SharedLimiter};
use redis::Script;

use crate::redis::Redis;

/// KEYS[1]: the key. ARGV: the interval and the tolerance, in microseconds.
/// Returns {allowed, retry_after_us, ahead_us}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now + tolerance < tat then
  return {0, tat - tolerance - now, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, new_tat - now}
";

/// Limits kept in Redis under `{prefix}{key}`.
pub struct RedisLimiter {
    redis: Redis,
    script: Script,
}

impl RedisLimiter {
    pub fn new(redis: Redis) -> RedisLimiter {
        RedisLimiter { redis, script: Script::new(GCRA) }
    }
}

#[async_trait]
impl SharedLimiter for RedisLimiter {
    async fn check(&self, key: &str, rule: &Rule) -> Result<Outcome, String> {
        let mut conn = self.redis.connection();
        let (allowed, retry_after_us, ahead_us): (i64, i64, i64) = self
            .script
            .key(self.redis.key(key))
            .arg(rule.interval_us())
            .arg(rule.tolerance_us())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let micros = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Outcome { allowed: allowed == 1, retry_after_us: micros(retry_after_us), ahead_us: micros(ahead_us) })
    }
}
