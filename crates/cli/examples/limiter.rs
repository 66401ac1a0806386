//! Rate-limiter benchmark: the latency of one check in memory and in Redis (beside
//! the latency of a bare Redis PING in the same run), and the memory of the
//! in-process limiter under a stream of distinct keys.
//!
//!   limiter latency [REDIS_URL]            # p50/p99/max of single checks
//!   limiter keys RATE SECONDS              # RATE distinct keys a second for SECONDS
//!
//! The keys run gives every key the login rule (10/1m, burst 5): an entry lives as
//! long as its key is ahead of now (here 6 s after its one request), so the number
//! held stays near RATE × 6 however long the run, and memory with it.
//!
//! With `BENCH_RECORDS` set (bench/report.sh), the figures are also appended to the
//! records: limiter.memory.p50/p99, limiter.redis.p50/p99 and limiter.redis_ping.p50/p99
//! (µs), and for a keys run limiter.keys.rss (MiB) and limiter.keys.held at its end.

use std::time::{Duration, Instant};

use guard_core::ratelimit::{MemoryLimiter, Rule, SharedLimiter};

#[path = "common/record.rs"]
mod record;

/// The summary printed for `samples`, and their p50 and p99 in µs.
fn percentiles(mut samples: Vec<Duration>) -> (String, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    let (p50, p99) = (at(0.50), at(0.99));
    let text = format!(
        "n={} p50={p50:.1}µs p99={p99:.1}µs max={:.1}µs",
        samples.len(),
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e6)
    );
    (text, p50, p99)
}

/// Prints `samples` after `label` and records their p50 and p99 as `{id}.p50`, `{id}.p99`.
fn report(label: &str, id: &str, samples: Vec<Duration>, how: &str) {
    let (text, p50, p99) = percentiles(samples);
    println!("{label}{text}");
    record::value(&format!("{id}.p50"), p50, "µs", how);
    record::value(&format!("{id}.p99"), p99, "µs", how);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

async fn latency(redis_url: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let rule = Rule::parse("10/1m,burst=5").ok_or("rule")?;
    let memory = MemoryLimiter::new();
    // 10,000 keys, each checked a hundred times, most refused: the steady state of a flood.
    let mut samples = Vec::with_capacity(1_000_000);
    for round in 0..100u32 {
        for key in 0..10_000u32 {
            let key = format!("rl:login:ip:-:10.{}.{}.{}", key >> 16, (key >> 8) & 255, (key ^ round) & 255);
            let started = Instant::now();
            std::hint::black_box(memory.check(&key, &rule));
            samples.push(started.elapsed());
        }
    }
    report(
        "memory check: ",
        "limiter.memory",
        samples,
        "limiter latency: 1,000,000 in-memory checks of the login rule (10/1m, burst 5), 10,000 keys, most refused",
    );
    let Some(url) = redis_url else { return Ok(()) };
    let config = guard_core::config::RedisConfig {
        url: Some(guard_core::secret::Secret::new(&url)),
        key_prefix: format!("guard-bench-{}:", uuid::Uuid::now_v7()),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(1),
    };
    let redis = guard_store::redis::Redis::open(&config)?.ok_or("no Redis URL")?;
    let shared = guard_store::RedisLimiter::new(redis.clone());
    let mut checks = Vec::with_capacity(20_000);
    let mut pings = Vec::with_capacity(20_000);
    for n in 0..20_000u32 {
        let key = format!("rl:login:ip:-:bench-{}", n % 1000);
        let started = Instant::now();
        shared.check(&key, &rule).await?;
        checks.push(started.elapsed());
        pings.push(redis.ping().await?);
    }
    report(
        "redis check:  ",
        "limiter.redis",
        checks,
        "limiter latency: 20,000 checks of the login rule through Redis, 1,000 keys, one at a time",
    );
    report(
        "redis PING:   ",
        "limiter.redis_ping",
        pings,
        "limiter latency: a bare PING after each Redis check, same run",
    );
    Ok(())
}

fn keys(rate: u64, seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let rule = Rule::parse("10/1m,burst=5").ok_or("rule")?;
    let memory = MemoryLimiter::new();
    let started = Instant::now();
    let mut n = 0u64;
    let (mut held, mut rss) = (0, 0);
    println!("{:>6}  {:>10}  {:>10}  {:>9}", "second", "keys_seen", "keys_held", "rss_kib");
    for second in 1..=seconds {
        for _ in 0..rate {
            memory.check(&format!("rl:login:ip:-:key-{n}"), &rule);
            n += 1;
        }
        let due = started + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if second % 10 == 0 || second == seconds {
            (held, rss) = (memory.len(), rss_kib());
            println!("{second:>6}  {n:>10}  {held:>10}  {rss:>9}");
        }
    }
    let how = format!("limiter keys {rate} {seconds}: {n} distinct keys, login rule (10/1m, burst 5), at the end");
    record::value("limiter.keys.rss", rss as f64 / 1024.0, "MiB", &how);
    record::value("limiter.keys.held", held as f64, "keys", &how);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("latency") => latency(args.get(1).cloned()).await,
        Some("keys") => {
            let rate = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
            let seconds = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(600);
            keys(rate, seconds)
        }
        _ => Err("usage: limiter latency [REDIS_URL] | limiter keys RATE SECONDS".into()),
    }
}
