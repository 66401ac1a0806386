//! The in-process limiter: keys in sharded maps, each entry only as long as its key
//! is ahead of now, so memory follows the keys in use, not every key ever seen.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::rule::{Outcome, Rule};

const SHARDS: usize = 32;
/// A shard drops its expired entries every this many checks.
const SWEEP_EVERY: u64 = 1024;

/// Theoretical arrival times by key, on one process.
pub struct MemoryLimiter {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    hasher: std::collections::hash_map::RandomState,
    checks: AtomicU64,
    epoch: Instant,
}

impl Default for MemoryLimiter {
    fn default() -> MemoryLimiter {
        MemoryLimiter::new()
    }
}

impl MemoryLimiter {
    pub fn new() -> MemoryLimiter {
        MemoryLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            checks: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        // Offset by a day so "now" never starts at zero (a fresh key's time is now).
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX) + 86_400_000_000
    }

    /// Applies `rule` to `key`.
    pub fn check(&self, key: &str, rule: &Rule) -> Outcome {
        let shard = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let now = self.now_us();
        let sweep = self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY);
        // A poisoned lock only means another check panicked mid-update of one number.
        let mut map = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sweep {
            map.retain(|_, tat| *tat > now);
        }
        let (outcome, next) = rule.apply(map.get(key).copied(), now);
        if let Some(next) = next {
            match map.get_mut(key) {
                Some(tat) => *tat = next,
                None => {
                    map.insert(key.to_owned(), next);
                }
            }
        }
        outcome
    }

    /// Keys held now (expired ones may linger until their shard's next sweep).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry now.
    pub fn sweep(&self) {
        let now = self.now_us();
        for shard in &self.shards {
            shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, tat| *tat > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_limited_separately_and_expired_entries_go() {
        let limiter = MemoryLimiter::new();
        let rule = Rule::parse("2/1s").unwrap();
        assert!(limiter.check("a", &rule).allowed);
        assert!(limiter.check("a", &rule).allowed);
        assert!(!limiter.check("a", &rule).allowed);
        assert!(limiter.check("b", &rule).allowed);
        assert_eq!(limiter.len(), 2);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        limiter.sweep();
        assert!(limiter.is_empty());
        assert!(limiter.check("a", &rule).allowed);
    }
}
