//! The session cache in Redis, shared by every guard process: a revocation on one
//! process deletes the entry all of them read, so it is honoured everywhere at once.
//! Redis trouble is never an error for the caller: the session is read from the
//! database instead.

use std::time::Duration;

use async_trait::async_trait;
use guard_core::sessions::{Authenticated, SessionCache, SessionId, TokenHash};
use redis::Script;

use crate::redis::Redis;

/// Sessions in Redis under `{prefix}sess:{id}`, tokens under `{prefix}tok:{sha256}`
/// pointing at their session id, and `{prefix}gone:{id}` marking a revoked session
/// for one TTL so that a request racing the revocation cannot cache it again.
pub struct RedisSessionCache {
    redis: Redis,
    ttl_seconds: u64,
    by_token: Script,
    put: Script,
}

const BY_TOKEN: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then return false end
return redis.call('GET', ARGV[1] .. id)
";

const PUT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if KEYS[1] ~= KEYS[2] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3]) end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisSessionCache {
    /// A cache keeping entries for `ttl` (at least a second).
    pub fn new(redis: Redis, ttl: Duration) -> RedisSessionCache {
        RedisSessionCache {
            redis,
            ttl_seconds: ttl.as_secs().max(1),
            by_token: Script::new(BY_TOKEN),
            put: Script::new(PUT),
        }
    }

    fn warn(what: &str, e: &redis::RedisError) {
        tracing::warn!(error = %e, "session cache: {what} failed; using the database");
    }

    fn decode(json: Option<String>) -> Option<Authenticated> {
        serde_json::from_str(&json?).ok()
    }
}

#[async_trait]
impl SessionCache for RedisSessionCache {
    async fn by_token(&self, token: &TokenHash) -> Option<Authenticated> {
        let mut conn = self.redis.connection();
        let found: Result<Option<String>, _> = self
            .by_token
            .key(self.redis.key(&format!("tok:{}", hex(&token.0))))
            .arg(self.redis.key("sess:"))
            .invoke_async(&mut conn)
            .await;
        found.map_err(|e| Self::warn("lookup", &e)).ok().and_then(Self::decode)
    }

    async fn by_id(&self, id: SessionId) -> Option<Authenticated> {
        let mut conn = self.redis.connection();
        let found: Result<Option<String>, _> =
            redis::cmd("GET").arg(self.redis.key(&format!("sess:{id}"))).query_async(&mut conn).await;
        found.map_err(|e| Self::warn("lookup", &e)).ok().and_then(Self::decode)
    }

    async fn put(&self, token: Option<&TokenHash>, who: &Authenticated) {
        let Ok(json) = serde_json::to_string(who) else { return };
        let id = who.session.id;
        let session_key = self.redis.key(&format!("sess:{id}"));
        // Without a token, the first key repeats the second and the script skips it.
        let token_key = token.map_or_else(|| session_key.clone(), |t| self.redis.key(&format!("tok:{}", hex(&t.0))));
        let mut conn = self.redis.connection();
        let stored: Result<i64, _> = self
            .put
            .key(token_key)
            .key(session_key)
            .key(self.redis.key(&format!("gone:{id}")))
            .arg(id.to_string())
            .arg(json)
            .arg(self.ttl_seconds)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = stored {
            Self::warn("store", &e);
        }
    }

    async fn forget(&self, ids: &[SessionId]) {
        if ids.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.del(self.redis.key(&format!("sess:{id}"))).ignore();
            pipe.set_ex(self.redis.key(&format!("gone:{id}")), 1, self.ttl_seconds).ignore();
        }
        let mut conn = self.redis.connection();
        let done: Result<(), _> = pipe.query_async(&mut conn).await;
        if let Err(e) = done {
            // The entries expire within the TTL on their own.
            tracing::error!(error = %e, sessions = ids.len(), "session cache: revocation not propagated to Redis");
        }
    }
}
