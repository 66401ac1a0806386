//! Per-tenant decision statistics of this process, for /admin/policy-stats: counts,
//! cache hits and a latency histogram with 20 % wide buckets (quantiles are read as a
//! bucket's upper bound, so within 20 % of the true value).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::tenants::TenantId;

const BUCKETS: usize = 90;
const FIRST_BOUND_NS: f64 = 250.0;
const RATIO: f64 = 1.2;

fn bound_ns(bucket: usize) -> f64 {
    FIRST_BOUND_NS * RATIO.powi(i32::try_from(bucket).unwrap_or(i32::MAX))
}

fn bucket_of(elapsed: Duration) -> usize {
    let ns = elapsed.as_nanos() as f64;
    if ns <= FIRST_BOUND_NS {
        return 0;
    }
    let index = ((ns / FIRST_BOUND_NS).ln() / RATIO.ln()).ceil();
    if index >= (BUCKETS - 1) as f64 { BUCKETS - 1 } else { index as usize }
}

/// One tenant's counters.
pub struct DecisionStats {
    allowed: AtomicU64,
    denied: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for DecisionStats {
    fn default() -> Self {
        DecisionStats {
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl DecisionStats {
    /// Counts one decision that took `elapsed` (cached ones too).
    pub fn decided(&self, allowed: bool, cached: bool, elapsed: Duration) {
        if allowed { &self.allowed } else { &self.denied }.fetch_add(1, Ordering::Relaxed);
        if cached { &self.cache_hits } else { &self.cache_misses }.fetch_add(1, Ordering::Relaxed);
        self.latency[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
    }

    fn quantile_us(&self, counts: &[u64], q: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((bound_ns(bucket) / 1000.0 * 100.0).round() / 100.0);
            }
        }
        None
    }

    /// A report of the counters so far.
    pub fn report(&self) -> StatsReport {
        let counts: Vec<u64> = self.latency.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let hits = self.cache_hits.load(Ordering::Relaxed);
        let misses = self.cache_misses.load(Ordering::Relaxed);
        let allowed = self.allowed.load(Ordering::Relaxed);
        let denied = self.denied.load(Ordering::Relaxed);
        StatsReport {
            evaluations: allowed + denied,
            allowed,
            denied,
            cache_hits: hits,
            cache_misses: misses,
            cache_hit_rate: if hits + misses == 0 { None } else { Some(hits as f64 / (hits + misses) as f64) },
            latency_p50_us: self.quantile_us(&counts, 0.50),
            latency_p95_us: self.quantile_us(&counts, 0.95),
        }
    }
}

/// Decision figures of one tenant in this process.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub evaluations: u64,
    pub allowed: u64,
    pub denied: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_hit_rate: Option<f64>,
    pub latency_p50_us: Option<f64>,
    pub latency_p95_us: Option<f64>,
}

/// Every tenant's counters.
#[derive(Default)]
pub struct StatsRegistry {
    tenants: RwLock<HashMap<TenantId, Arc<DecisionStats>>>,
}

impl StatsRegistry {
    /// The counters of `tenant`, created on first use.
    pub fn of(&self, tenant: TenantId) -> Arc<DecisionStats> {
        if let Some(stats) = self.tenants.read().unwrap_or_else(PoisonError::into_inner).get(&tenant) {
            return stats.clone();
        }
        self.tenants.write().unwrap_or_else(PoisonError::into_inner).entry(tenant).or_default().clone()
    }

    /// Reports by tenant.
    pub fn reports(&self) -> Vec<(TenantId, StatsReport)> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        tenants.iter().map(|(t, s)| (*t, s.report())).collect()
    }

    /// Hits and lookups over every tenant, for the cache hit ratio gauge.
    pub fn cache_totals(&self) -> (u64, u64) {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        tenants.values().fold((0, 0), |(h, n), s| {
            let hits = s.cache_hits.load(Ordering::Relaxed);
            (h + hits, n + hits + s.cache_misses.load(Ordering::Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let stats = DecisionStats::default();
        for _ in 0..90 {
            stats.decided(true, false, Duration::from_micros(10));
        }
        for _ in 0..10 {
            stats.decided(false, true, Duration::from_millis(2));
        }
        let report = stats.report();
        assert_eq!(report.evaluations, 100);
        let p50 = report.latency_p50_us.unwrap_or_default();
        assert!((10.0..=12.0).contains(&p50), "{p50}");
        let p95 = report.latency_p95_us.unwrap_or_default();
        assert!((2000.0..=2400.0).contains(&p95), "{p95}");
        assert_eq!(report.cache_hit_rate, Some(0.1));
    }
}
