//! A cache of authenticated sessions, so that a request presenting a session costs no
//! database query. Keyed by session id; a token maps to its session id, which never
//! changes, so forgetting a session by id is enough to end every way to reach it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::model::SessionId;
use super::service::Authenticated;
use super::token::TokenHash;

/// Where authenticated sessions are kept between requests.
#[async_trait]
pub trait SessionCache: Send + Sync {
    /// The cached session the token leads to.
    async fn by_token(&self, token: &TokenHash) -> Option<Authenticated>;
    /// The cached session with this id.
    async fn by_id(&self, id: SessionId) -> Option<Authenticated>;
    /// Caches `who`, reachable by id and, when given, by token.
    async fn put(&self, token: Option<&TokenHash>, who: &Authenticated);
    /// Drops these sessions (revoked, or their user changed).
    async fn forget(&self, ids: &[SessionId]);
}

/// Most entries the in-memory cache holds before it sweeps out stale ones.
const MEMORY_CACHE_LIMIT: usize = 100_000;

#[derive(Default)]
struct Entries {
    tokens: HashMap<TokenHash, (Instant, SessionId)>,
    sessions: HashMap<SessionId, (Instant, Authenticated)>,
    /// Recently forgotten sessions: a request that read one before its revocation
    /// must not cache it again.
    gone: HashMap<SessionId, Instant>,
}

/// The per-process cache: entries live for a TTL, so a revocation made by another
/// process is honoured within it.
pub struct MemorySessionCache {
    ttl: Duration,
    entries: Mutex<Entries>,
}

impl MemorySessionCache {
    /// A cache keeping entries for `ttl` (zero: nothing is cached).
    pub fn new(ttl: Duration) -> MemorySessionCache {
        MemorySessionCache { ttl, entries: Mutex::default() }
    }

    fn fresh<T: Clone>(&self, entry: Option<&(Instant, T)>) -> Option<T> {
        entry.filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }
}

#[async_trait]
impl SessionCache for MemorySessionCache {
    async fn by_token(&self, token: &TokenHash) -> Option<Authenticated> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let id = self.fresh(entries.tokens.get(token))?;
        self.fresh(entries.sessions.get(&id))
    }

    async fn by_id(&self, id: SessionId) -> Option<Authenticated> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.fresh(entries.sessions.get(&id))
    }

    async fn put(&self, token: Option<&TokenHash>, who: &Authenticated) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.sessions.len() >= MEMORY_CACHE_LIMIT || entries.tokens.len() >= MEMORY_CACHE_LIMIT {
            let ttl = self.ttl;
            entries.sessions.retain(|_, (at, _)| at.elapsed() < ttl);
            entries.tokens.retain(|_, (at, _)| at.elapsed() < ttl);
            entries.gone.retain(|_, at| at.elapsed() < ttl);
        }
        if entries.gone.get(&who.session.id).is_some_and(|at| at.elapsed() < self.ttl) {
            return;
        }
        let now = Instant::now();
        if let Some(token) = token {
            entries.tokens.insert(*token, (now, who.session.id));
        }
        entries.sessions.insert(who.session.id, (now, who.clone()));
    }

    async fn forget(&self, ids: &[SessionId]) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        for id in ids {
            entries.sessions.remove(id);
            if !self.ttl.is_zero() {
                entries.gone.insert(*id, now);
            }
        }
    }
}
