//! Audit log benchmark, against a real database (SQLite file or PostgreSQL):
//!
//!   audit_bench URL ingest SECONDS CONCURRENCY [RATE]
//!                                                # events emitted by CONCURRENCY tasks
//!                                                # (at RATE a second in all, or flat out)
//!                                                # while the sealer runs; then how long
//!                                                # sealing trails
//!   audit_bench URL verify COUNT                 # COUNT events appended, sealed, verified
//!   audit_bench URL query COUNT                  # COUNT events stored (made in SQL when
//!                                                # missing), then the first page of a
//!                                                # one-day window, timed
//!
//! Every section uses guard's own code paths (the store, the sealer, the verifier,
//! the query); only the bulk load of the query section is plain SQL.
//!
//! With `BENCH_RECORDS` set (bench/report.sh), the key figures are also appended to
//! the records: audit.ingest.paced or audit.ingest.flat (events/s) and its
//! `.emit_p99` (ms); audit.verify.rate (records/s); audit.query.<case>.p50 and .p95
//! (ms) for each case, and audit.query.events.

use std::error::Error;
use std::time::{Duration, Instant};

use guard_core::audit::{AuditFilter, AuditLog, AuditRecord, Cursor, Order, ResultFilter};
use guard_core::events::{Actor, Event, EventSink, Outcome};
use guard_store::Database;
use sqlx::Connection;
use uuid::Uuid;

#[path = "common/record.rs"]
mod record;

type Res<T> = Result<T, Box<dyn Error>>;

/// base64 of "bench-master-key-32-bytes-long!!": a benchmark's key, never a real one.
const BENCH_MASTER_KEY: &str = "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE=";

/// Latency percentiles of a set of samples, in ms.
struct Percentiles {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| ms(samples[((samples.len() as f64 - 1.0) * q).round() as usize]);
        Some(Self {
            n: samples.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: samples.last().map_or(0.0, |d| ms(*d)),
        })
    }
}

fn summary(p: Option<&Percentiles>) -> String {
    match p {
        None => "n=0".into(),
        Some(p) => format!("n={} p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms", p.n, p.p50, p.p95, p.p99, p.max),
    }
}

async fn open(url: &str) -> Res<(guard_core::Config, Database, AuditLog)> {
    let env = [
        ("DATABASE_URL".to_owned(), url.to_owned()),
        ("GUARD_MASTER_KEY".to_owned(), BENCH_MASTER_KEY.to_owned()),
        ("LOG_LEVEL".to_owned(), "warn".to_owned()),
    ];
    let config = guard_core::config::ConfigLoader::isolated(env.into_iter().collect()).load()?.config;
    let db = guard_store::open(&config.database).await?;
    db.migrations.up().await?;
    let audit = guard_api::audit_log(&config, &db)?;
    Ok((config, db, audit))
}

fn tenant(n: u64) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0000 | (u128::from(n) + 1))
}

async fn ingest(url: &str, seconds: u64, concurrency: usize, rate: u64) -> Res<()> {
    let (_, db, audit) = open(url).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sealer = tokio::spawn(audit.clone().run_sealer(Duration::from_secs(1), stopped));
    let before: i64 = db.audit.chains(None).await?.iter().map(|c| c.last_seq).sum();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let writers: Vec<_> = (0..concurrency)
        .map(|w| {
            let audit = audit.clone();
            tokio::spawn(async move {
                // At `rate` events a second in all (0: as fast as they go).
                let mut pace = (rate > 0).then(|| {
                    let mut every = tokio::time::interval(Duration::from_secs_f64(concurrency as f64 / rate as f64));
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    every
                });
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if let Some(pace) = pace.as_mut() {
                        pace.tick().await;
                    }
                    let event = Event::success("auth.login.success", Actor::User(Uuid::now_v7()))
                        .tenant(tenant(w as u64 % 4))
                        .target(format!("session-{w}-{n}"))
                        .details(serde_json::json!({ "amr": ["pwd"], "risk": { "score": 0 } }));
                    let at = Instant::now();
                    audit.emit(event).await;
                    latencies.push(at.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for writer in writers {
        latencies.extend(writer.await?);
    }
    let elapsed = started.elapsed();
    let emitted = latencies.len() as u64;
    let per_second = emitted as f64 / elapsed.as_secs_f64();
    let pacing = if rate > 0 { format!("paced at {rate}/s") } else { "unpaced".to_owned() };
    let emits = Percentiles::of(latencies);
    println!(
        "ingest: {emitted} events in {:.1}s = {per_second:.0} events/s ({concurrency} emitters, {pacing}), each emit waiting for its commit: {}",
        elapsed.as_secs_f64(),
        summary(emits.as_ref())
    );
    let drain = Instant::now();
    while !db.audit.unsealed_chains().await?.is_empty() {
        if drain.elapsed() > Duration::from_secs(300) {
            return Err("sealing did not finish within 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sealed = db.audit.chains(None).await?.iter().map(|c| c.last_seq).sum::<i64>() - before;
    println!(
        "sealing: {sealed} sealed, all of them {:.2}s after the emitters stopped ({:.0} events/s stored and sealed over the whole run)",
        drain.elapsed().as_secs_f64(),
        sealed as f64 / started.elapsed().as_secs_f64()
    );
    if sealed != emitted as i64 {
        return Err(format!("{emitted} emitted but {sealed} sealed").into());
    }
    let _ = stop.send(true);
    sealer.await?;
    let id = if rate > 0 { "audit.ingest.paced" } else { "audit.ingest.flat" };
    let how = format!(
        "audit_bench ingest: {emitted} events through AuditLog::emit in {:.1} s, {concurrency} emitters, {pacing}, the sealer running; all sealed",
        elapsed.as_secs_f64()
    );
    record::value(id, per_second, "events/s", &how);
    if let Some(emits) = &emits {
        record::value(
            &format!("{id}.emit_p99"),
            emits.p99,
            "ms",
            &format!("{how}; p99 of one emit waiting for its commit"),
        );
    }
    Ok(())
}

async fn verify(url: &str, count: usize) -> Res<()> {
    let (_, db, audit) = open(url).await?;
    let chain = Uuid::now_v7();
    let started = Instant::now();
    for start in (0..count).step_by(1000) {
        let batch: Vec<AuditRecord> = (start..(start + 1000).min(count))
            .map(|i| {
                let event =
                    Event::success("user.updated", Actor::Operator).tenant(chain).target(format!("user-{i}")).details(
                        serde_json::json!({ "status": null, "roles": ["admin"], "password_change_required": null }),
                    );
                audit.record(&event)
            })
            .collect();
        db.audit.append(&batch).await?;
    }
    println!(
        "append: {count} events in batches of 1000: {:.1}s = {:.0} events/s",
        started.elapsed().as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let sealed = audit.seal(true).await?;
    println!(
        "seal: {sealed} events in {:.1}s = {:.0} events/s",
        started.elapsed().as_secs_f64(),
        sealed as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut after = 0;
    loop {
        let page = db.audit.sealed_after(chain, after, 5000).await?;
        match page.last().and_then(|r| r.seq) {
            Some(last) => after = last,
            None => break,
        }
    }
    println!(
        "read alone: {after} records in {:.2}s = {:.0} records/s (one reader, pages of 5000)",
        started.elapsed().as_secs_f64(),
        after as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = audit.verify(Some(chain)).await?;
    let elapsed = started.elapsed();
    if !report.intact {
        return Err(format!("verification failed: {report:?}").into());
    }
    let per_second = report.records as f64 / elapsed.as_secs_f64();
    println!(
        "verify: {} records in {:.2}s = {per_second:.0} records/s (MAC, hash link and position of each; checkpoints)",
        report.records,
        elapsed.as_secs_f64(),
    );
    record::value(
        "audit.verify.rate",
        per_second,
        "records/s",
        &format!(
            "audit_bench verify: one chain of {} records, AuditLog::verify (MAC, hash link and position of each; checkpoints)",
            report.records
        ),
    );
    Ok(())
}

/// Event types of the generated load, and the tenants it is spread over.
const TYPES: [&str; 8] = [
    "auth.login.success",
    "auth.login.failure",
    "auth.logout",
    "user.updated",
    "auth.session.revoked",
    "mfa.verify.failure",
    "audit.events.read",
    "tenant.settings_updated",
];
const TENANTS: u64 = 10;
const SPAN_DAYS: i64 = 100;

/// Adds events `from..to` straight in SQL: `TENANTS` tenants, one event every
/// `step_us` back from `now_us`, every fifth a failure and every twentieth an error.
async fn generate(url: &str, from: i64, to: i64, now_us: i64, step_us: i64) -> Res<()> {
    let types = TYPES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    if url.starts_with("sqlite:") {
        let cases: String = TYPES.iter().enumerate().map(|(n, t)| format!(" WHEN {n} THEN '{t}'")).collect();
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to} - 1) \
             INSERT INTO audit_events (id, tenant_id, seq, at_us, event_type, actor, target, result, ip, \
             user_agent, request_id, details, mac, hash) \
             SELECT unhex(printf('%016x%016x', {now_us} - i * {step_us}, i)), \
             unhex(printf('00000000000070008000%012x', i % {TENANTS} + 1)), i / {TENANTS} + 1, {now_us} - i * {step_us}, \
             CASE (i / {TENANTS}) % 8{cases} END, 'user:' || (i % 5000), 'target-' || i, \
             CASE WHEN (i / {TENANTS}) % 20 = 0 THEN 'error' WHEN (i / {TENANTS}) % 5 = 1 THEN 'failure' ELSE 'success' END, \
             '10.0.' || (i % 250) || '.' || (i % 199), 'Mozilla/5.0 (bench)', 'req-' || i, \
             '{{\"amr\":[\"pwd\"],\"n\":' || i || '}}', zeroblob(32), zeroblob(32) FROM n"
        );
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
    } else {
        let sql = format!(
            "INSERT INTO audit_events (id, tenant_id, seq, at_us, event_type, actor, target, result, ip, \
             user_agent, request_id, details, mac, hash) \
             SELECT (lpad(to_hex(at), 16, '0') || lpad(to_hex(i), 16, '0'))::uuid, \
             ('00000000-0000-7000-8000-' || lpad(to_hex(i % {TENANTS} + 1), 12, '0'))::uuid, i / {TENANTS} + 1, at, \
             (ARRAY[{types}])[(i / {TENANTS}) % 8 + 1], 'user:' || (i % 5000), 'target-' || i, \
             CASE WHEN (i / {TENANTS}) % 20 = 0 THEN 'error' WHEN (i / {TENANTS}) % 5 = 1 THEN 'failure' ELSE 'success' END, \
             '10.0.' || (i % 250) || '.' || (i % 199), 'Mozilla/5.0 (bench)', 'req-' || i, \
             '{{\"amr\":[\"pwd\"],\"n\":' || i || '}}', '\\x00'::bytea, '\\x00'::bytea \
             FROM (SELECT i, {now_us} - i * {step_us} AS at FROM generate_series({from}::bigint, {to}::bigint - 1) i) s"
        );
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    Ok(())
}

async fn query(url: &str, count: i64) -> Res<()> {
    let (_, db, audit) = open(url).await?;
    let stored: i64 = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&mut conn).await?
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&mut conn).await?
    };
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
    let step_us = SPAN_DAYS * 86_400_000_000 / count.max(1);
    if stored < count {
        let started = Instant::now();
        let chunk = 1_000_000;
        let mut from = stored;
        while from < count {
            let to = (from + chunk).min(count);
            generate(url, from, to, now_us, step_us).await?;
            eprintln!("  stored {to} of {count} ({:.0}s)", started.elapsed().as_secs_f64());
            from = to;
        }
        let analyze = "ANALYZE";
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            sqlx::raw_sql(analyze).execute(&mut conn).await?;
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(analyze).execute(&mut conn).await?;
        }
        println!(
            "load: {} events in {:.0}s ({} tenants, {SPAN_DAYS} days, every index in place)",
            count - stored,
            started.elapsed().as_secs_f64(),
            TENANTS
        );
    }
    let since_us = Some(time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000 - 86_400_000_000);
    let day = AuditFilter { tenant: Some(tenant(3)), since_us, limit: 100, ..AuditFilter::default() };
    let first = audit.query(&day).await?;
    let cursor: Option<Cursor> = first.next;
    // (id in the records, label, filter)
    let cases: Vec<(&str, &str, AuditFilter)> = vec![
        ("one-tenant-newest", "one tenant, one day, newest first", day.clone()),
        (
            "one-tenant-second-page",
            "one tenant, one day, second page (cursor)",
            AuditFilter { after: cursor, ..day.clone() },
        ),
        (
            "one-tenant-type-glob",
            "one tenant, one day, type auth.*",
            AuditFilter { kind_like: Some("auth.%".into()), ..day.clone() },
        ),
        (
            "one-tenant-result-error",
            "one tenant, one day, result=error",
            AuditFilter { result: Some(ResultFilter(Outcome::Error)), ..day.clone() },
        ),
        ("every-tenant", "every tenant (operator), one day", AuditFilter { tenant: None, ..day.clone() }),
        (
            "one-tenant-oldest",
            "one tenant, one day, oldest first (export)",
            AuditFilter { order: Order::OldestFirst, ..day.clone() },
        ),
    ];
    let events = stored.max(count);
    println!("stored: {events} events; each case 50 times, 100 a page");
    record::value(
        "audit.query.events",
        events as f64,
        "events",
        &format!("audit_bench query: events stored, {TENANTS} tenants over {SPAN_DAYS} days"),
    );
    for (id, label, filter) in cases {
        let mut samples = Vec::with_capacity(50);
        let mut returned = 0;
        for _ in 0..50 {
            let at = Instant::now();
            returned = audit.query(&filter).await?.records.len();
            samples.push(at.elapsed());
        }
        let times = Percentiles::of(samples);
        println!("  {label:<46} {returned:>3} records  {}", summary(times.as_ref()));
        if let Some(times) = &times {
            let how = format!(
                "audit_bench query: {label}, first page of 100 ({returned} returned), 50 times, {events} events stored"
            );
            record::value(&format!("audit.query.{id}.p50"), times.p50, "ms", &how);
            record::value(&format!("audit.query.{id}.p95"), times.p95, "ms", &how);
        }
    }
    db.pool.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |n: usize| args.get(n).cloned().ok_or("usage: audit_bench URL ingest|verify|query …");
    let url = arg(0)?;
    match arg(1)?.as_str() {
        "ingest" => ingest(&url, arg(2)?.parse()?, arg(3)?.parse()?, args.get(4).map_or(Ok(0), |r| r.parse())?).await,
        "verify" => verify(&url, arg(2)?.parse()?).await,
        "query" => query(&url, arg(2)?.parse()?).await,
        other => Err(format!("unknown section {other}").into()),
    }
}
