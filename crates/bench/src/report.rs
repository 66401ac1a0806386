//! BENCHMARKS.md from a results folder: the machine, how the figures were made, every
//! target the issues set with the figure measured for it on each backend, and every
//! figure of the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

const BACKENDS: [(&str, &str); 2] = [("sqlite", "SQLite"), ("postgres", "PostgreSQL + Redis")];

/// The run's records, the latest per (backend, id).
pub struct Records {
    by_key: BTreeMap<(String, String), Value>,
}

impl Records {
    pub fn parse(text: &str) -> Result<Records, String> {
        let mut by_key = BTreeMap::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).map_err(|e| format!("records.jsonl line {}: {e}", n + 1))?;
            let field = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_owned);
            let (Some(backend), Some(id)) = (field("backend"), field("id")) else {
                return Err(format!("records.jsonl line {}: no backend or id", n + 1));
            };
            by_key.insert((backend, id), record);
        }
        Ok(Records { by_key })
    }

    fn get(&self, backend: &str, id: &str) -> Option<&Value> {
        self.by_key.get(&(backend.to_owned(), id.to_owned()))
    }

    fn value(&self, backend: &str, id: &str) -> Option<f64> {
        self.get(backend, id)?.get("value")?.as_f64()
    }

    fn load(&self, backend: &str, id: &str) -> Option<Load> {
        let r = self.get(backend, id)?;
        let l = r.get("latency_ms")?;
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        let statuses: BTreeMap<String, u64> = r
            .get("statuses")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
            .unwrap_or_default();
        Some(Load {
            throughput: num(r, "throughput")?,
            p50: num(l, "p50")?,
            p95: num(l, "p95")?,
            p99: num(l, "p99")?,
            max: num(l, "max")?,
            requests: r.get("requests").and_then(Value::as_u64).unwrap_or(0),
            errors: r.get("errors").and_then(Value::as_u64).unwrap_or(0),
            statuses,
            connections: r.get("connections").and_then(Value::as_u64).unwrap_or(0),
            rate: num(r, "rate"),
        })
    }
}

struct Load {
    throughput: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    requests: u64,
    errors: u64,
    statuses: BTreeMap<String, u64>,
    connections: u64,
    rate: Option<f64>,
}

impl Load {
    /// Answers other than 2xx, and requests without an answer.
    fn failed(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| !s.starts_with('2')).map(|(_, n)| n).sum::<u64>() + self.errors
    }

    fn mode(&self) -> String {
        match self.rate {
            Some(rate) => format!("{} req/s, ≤ {} conn.", thousands(rate), self.connections),
            None => format!("{} conn.", self.connections),
        }
    }
}

/// One figure against its target: what to print and whether the target holds.
struct Cell {
    text: String,
    met: Option<bool>,
}

impl Cell {
    fn missing() -> Cell {
        Cell { text: "not measured in this run".into(), met: None }
    }

    fn render(&self) -> String {
        match self.met {
            Some(true) => format!("**met**: {}", self.text),
            Some(false) => format!("**not met**: {}", self.text),
            None => self.text.clone(),
        }
    }
}

/// Groups digits by thousands, with one decimal below 100.
fn thousands(x: f64) -> String {
    if x.abs() < 100.0 {
        return format!("{x:.1}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn ms(x: f64) -> String {
    if x < 10.0 { format!("{x:.2} ms") } else { format!("{x:.0} ms") }
}

/// A load's throughput as a multiple of the baseline's.
fn against_baseline(r: &Records, backend: &str, id: &str, baseline: &str) -> Option<String> {
    let load = r.load(backend, id)?;
    let base = r.load(backend, baseline)?;
    Some(format!("{:.2} × the baseline's {} req/s", load.throughput / base.throughput, thousands(base.throughput)))
}

type Figure = fn(&Records, &str) -> Cell;

struct Target {
    issue: &'static str,
    measure: &'static str,
    target: &'static str,
    figure: Figure,
}

fn throughput_p99(r: &Records, backend: &str, id: &str, at_least: f64, p99_at_most: f64) -> Cell {
    let Some(load) = r.load(backend, id) else { return Cell::missing() };
    let mut text = format!("{} req/s, p99 {}", thousands(load.throughput), ms(load.p99));
    if let Some(base) = against_baseline(r, backend, id, "baseline.health") {
        let _ = write!(text, " ({base})");
    }
    if load.failed() > 0 {
        let _ = write!(text, "; {} failed", load.failed());
    }
    Cell { text, met: Some(load.throughput >= at_least && load.p99 <= p99_at_most && load.failed() == 0) }
}

fn p50_at_most(r: &Records, backend: &str, id: &str, limit_ms: f64) -> Cell {
    let Some(load) = r.load(backend, id) else { return Cell::missing() };
    let mut text = format!("p50 {}, p99 {}", ms(load.p50), ms(load.p99));
    if load.failed() > 0 {
        let _ = write!(text, "; {} failed", load.failed());
    }
    Cell { text, met: Some(load.p50 <= limit_ms && load.failed() == 0) }
}

fn value_at_most(r: &Records, backend: &str, id: &str, limit: f64, unit: &str) -> Cell {
    match r.value(backend, id) {
        Some(v) => Cell { text: format!("{} {unit}", thousands(v)), met: Some(v <= limit) },
        None => Cell::missing(),
    }
}

fn value_at_least(r: &Records, backend: &str, id: &str, limit: f64, unit: &str) -> Cell {
    match r.value(backend, id) {
        Some(v) => Cell { text: format!("{} {unit}", thousands(v)), met: Some(v >= limit) },
        None => Cell::missing(),
    }
}

const AUDIT_QUERIES: [&str; 6] = [
    "one-tenant-newest",
    "one-tenant-second-page",
    "one-tenant-type-glob",
    "one-tenant-result-error",
    "every-tenant",
    "one-tenant-oldest",
];

fn targets() -> Vec<Target> {
    vec![
        Target {
            issue: "2",
            measure: "`GET /health`, 32 connections",
            target: "≥ 30,000 req/s, p99 ≤ 5 ms",
            figure: |r, b| throughput_p99(r, b, "health", 30_000.0, 5.0),
        },
        Target {
            issue: "2",
            measure: "Resident memory, idle after start",
            target: "≤ 20 MiB",
            figure: |r, b| value_at_most(r, b, "memory.idle", 20.0, "MiB"),
        },
        Target {
            issue: "2",
            measure: "Start to ready on an existing database (median of 20)",
            target: "≤ 200 ms",
            figure: |r, b| value_at_most(r, b, "startup.median", 200.0, "ms"),
        },
        Target {
            issue: "3",
            measure: "Password sign-in at saturation, 8 connections",
            target: "≥ 85 % of the Argon2id ceiling",
            figure: |r, b| {
                let (Some(load), Some(ceiling)) = (r.load(b, "login.saturation"), r.value(b, "argon2.ceiling")) else {
                    return Cell::missing();
                };
                let share = load.throughput / ceiling;
                Cell {
                    text: format!(
                        "{} req/s = {:.0} % of {} logins/s; p50 {}, p95 {}, p99 {}",
                        thousands(load.throughput),
                        share * 100.0,
                        thousands(ceiling),
                        ms(load.p50),
                        ms(load.p95),
                        ms(load.p99)
                    ),
                    met: Some(share >= 0.85 && load.failed() == 0),
                }
            },
        },
        Target {
            issue: "3",
            measure: "Password sign-in at a fixed 80 % of the ceiling",
            target: "p95 ≤ 250 ms",
            figure: |r, b| {
                let Some(load) = r.load(b, "login.fixed-rate") else { return Cell::missing() };
                Cell {
                    text: format!(
                        "{} req/s; p50 {}, p95 {}, p99 {}",
                        thousands(load.throughput),
                        ms(load.p50),
                        ms(load.p95),
                        ms(load.p99)
                    ),
                    met: Some(load.p95 <= 250.0 && load.failed() == 0),
                }
            },
        },
        Target {
            issue: "3",
            measure: "`GET /v1/me` with a session token, 32 connections",
            target: "≥ 20,000 req/s, p99 ≤ 5 ms",
            figure: |r, b| throughput_p99(r, b, "me", 20_000.0, 5.0),
        },
        Target {
            issue: "3",
            measure: "Token refresh, 16 connections (a token family each)",
            target: "≥ 5,000 req/s",
            figure: |r, b| throughput_p99(r, b, "refresh", 5_000.0, f64::INFINITY),
        },
        Target {
            issue: "5",
            measure: "Limiter check in memory (p99)",
            target: "≤ 50 µs",
            figure: |r, b| value_at_most(r, b, "limiter.memory.p99", 50.0, "µs"),
        },
        Target {
            issue: "5",
            measure: "Limiter check through Redis (p50), beside a bare `PING`",
            target: "one round trip",
            figure: |r, b| {
                let (Some(check), Some(ping)) = (r.value(b, "limiter.redis.p50"), r.value(b, "limiter.redis_ping.p50"))
                else {
                    return Cell::missing();
                };
                // One round trip plus the script: well under two round trips.
                Cell { text: format!("{check:.0} µs; `PING` {ping:.0} µs"), met: Some(check < 2.0 * ping) }
            },
        },
        Target {
            issue: "5",
            measure: "10,000 new limiter keys a second (RSS at the end)",
            target: "memory bounded",
            figure: |r, b| {
                let (Some(rss), Some(held)) = (r.value(b, "limiter.keys.rss"), r.value(b, "limiter.keys.held")) else {
                    return Cell::missing();
                };
                let seconds = r.value(b, "limiter.keys.seconds").unwrap_or(0.0);
                // Bounded: the keys held are those of the last seconds, not all seen.
                let met = held <= 10_000.0 * 20.0;
                Cell {
                    text: format!("{rss:.1} MiB, {} keys held after {seconds:.0} s", thousands(held)),
                    met: Some(met),
                }
            },
        },
        Target {
            issue: "5",
            measure: "Login flood (100 connections, 60 s): no errors; other users still sign in",
            target: "no 5xx; every legitimate sign-in",
            figure: |r, b| {
                let (Some(errors), Some(ok), Some(tried)) =
                    (r.value(b, "flood.5xx"), r.value(b, "flood.legit.signed_in"), r.value(b, "flood.legit.attempts"))
                else {
                    return Cell::missing();
                };
                Cell {
                    text: format!("{errors:.0} × 5xx; {ok:.0} of {tried:.0} legitimate sign-ins"),
                    met: Some(errors == 0.0 && ok == tried && tried > 0.0),
                }
            },
        },
        Target {
            issue: "6",
            measure: "Audit ingest, flat out",
            target: "≥ 5,000 events/s",
            figure: |r, b| value_at_least(r, b, "audit.ingest.flat", 5_000.0, "events/s"),
        },
        Target {
            issue: "6",
            measure: "Cost of the audit event on `PATCH /v1/users/{id}`",
            target: "≤ 10 % slower",
            figure: |r, b| match r.value(b, "audit.http.cost") {
                Some(cost) => Cell { text: format!("{cost:+.0} %"), met: Some(cost >= -10.0) },
                None => Cell::missing(),
            },
        },
        Target {
            issue: "6",
            measure: "First page of a one-day window, 10 million events (worst p95 of six queries)",
            target: "≤ 50 ms",
            figure: |r, b| {
                // Every query must have been measured: the worst of a partial run says little.
                let p95s: Option<Vec<f64>> =
                    AUDIT_QUERIES.iter().map(|q| r.value(b, &format!("audit.query.{q}.p95"))).collect();
                let Some(worst) = p95s.and_then(|all| all.into_iter().reduce(f64::max)) else {
                    return Cell::missing();
                };
                let events = r.value(b, "audit.query.events").unwrap_or(0.0);
                Cell { text: format!("{} over {} events", ms(worst), thousands(events)), met: Some(worst <= 50.0) }
            },
        },
        Target {
            issue: "6",
            measure: "Audit verification",
            target: "≥ 200,000 records/s",
            figure: |r, b| value_at_least(r, b, "audit.verify.rate", 200_000.0, "records/s"),
        },
        Target {
            issue: "7",
            measure: "One decision in process, 100 policies (p50)",
            target: "≤ 20 µs",
            figure: |r, b| {
                let mut cell = value_at_most(r, b, "authz.decision.p50", 20.0, "µs");
                if let Some(base) = r.value(b, "authz.baseline.p50") {
                    let _ = write!(cell.text, " (permit-all baseline {base:.1} µs)");
                }
                cell
            },
        },
        Target {
            issue: "7",
            measure: "`POST /v1/authorize` without the decision cache, 16 connections",
            target: "≥ 15,000 decisions/s, p99 ≤ 5 ms",
            figure: |r, b| throughput_p99(r, b, "authorize.uncached", 15_000.0, 5.0),
        },
        Target {
            issue: "7",
            measure: "`POST /v1/authorize` with the cache, 16 connections",
            target: "≥ 15,000 decisions/s, p99 ≤ 5 ms",
            figure: |r, b| throughput_p99(r, b, "authorize.cached", 15_000.0, 5.0),
        },
        Target {
            issue: "7",
            measure: "A batch of 100 decisions in process (p50)",
            target: "≤ 2 ms",
            figure: |r, b| value_at_most(r, b, "authz.batch.p50", 2.0, "ms"),
        },
        Target {
            issue: "7",
            measure: "A batch of 100 over HTTP without the cache, one connection (p50)",
            target: "≤ 2 ms",
            figure: |r, b| p50_at_most(r, b, "authorize.batch.uncached", 2.0),
        },
        Target {
            issue: "7",
            measure: "A batch of 100 over HTTP with the cache, one connection (p50)",
            target: "≤ 2 ms",
            figure: |r, b| p50_at_most(r, b, "authorize.batch.cached", 2.0),
        },
        Target {
            issue: "8",
            measure: "`guard backup create`, 1M users with sessions and 10M audit events",
            target: "≤ 60 s (SQLite)",
            figure: |r, b| backup_figure(r, b, "backup.create", 60.0),
        },
        Target {
            issue: "8",
            measure: "`guard restore` of that backup into an empty database",
            target: "≤ 120 s (SQLite)",
            figure: |r, b| backup_figure(r, b, "backup.restore", 120.0),
        },
    ]
}

fn backup_figure(r: &Records, backend: &str, id: &str, limit: f64) -> Cell {
    let Some(seconds) = r.value(backend, id) else { return Cell::missing() };
    let users = r.value(backend, "backup.users").unwrap_or(0.0);
    let events = r.value(backend, "backup.events").unwrap_or(0.0);
    let mut text = format!("{seconds:.1} s");
    if users < 1_000_000.0 || events < 10_000_000.0 {
        let _ = write!(text, " (only {} users, {} events)", thousands(users), thousands(events));
    }
    // The target is set for SQLite; PostgreSQL's figure is reported beside it.
    let met = (backend == "sqlite" && users >= 1_000_000.0 && events >= 10_000_000.0).then_some(seconds <= limit);
    Cell { text, met }
}

/// SQLITE_SYNCHRONOUS levels bench/sqlite_sync.sh measures, with what a power cut can
/// take at each.
const SQLITE_LEVELS: [(&str, &str); 3] = [
    (
        "normal",
        "writes acknowledged since the last fsync, which each audit sealing pass forces (about every 200 ms \
         while writes arrive): sign-ups, password and MFA changes, revocations; never a sealed audit record \
         or a signed checkpoint",
    ),
    ("full", "nothing acknowledged (the default)"),
    ("extra", "nothing acknowledged; in WAL mode the same fsyncs as full"),
];

/// The "SQLite durability" table: token refresh (a write a request) at each
/// SQLITE_SYNCHRONOUS level, beside the baseline of the same run; `None` when
/// bench/sqlite_sync.sh did not run.
fn durability_table(r: &Records) -> Option<String> {
    if !SQLITE_LEVELS.iter().any(|(level, _)| r.load("sqlite", &format!("durability.refresh.{level}")).is_some()) {
        return None;
    }
    let mut out = String::from(
        "\n## SQLite durability\n\n\
         `bash bench/sqlite_sync.sh`: guard on a fresh SQLite file for each `SQLITE_SYNCHRONOUS`\n\
         level, driven with `POST /v1/auth/token/refresh` (each request commits a write: the new\n\
         token, the old one revoked, the audit record), with 16 connections and with one.\n\n\
         | SQLITE_SYNCHRONOUS | A power cut can lose | Refresh, 16 conn. | Refresh, 1 conn. |\n\
         |---|---|---|---|\n",
    );
    for (level, loses) in SQLITE_LEVELS {
        let cell = |id: String| match r.load("sqlite", &id) {
            Some(l) => {
                let mut text = format!("{} req/s, p50 {}, p99 {}", thousands(l.throughput), ms(l.p50), ms(l.p99));
                if let Some(base) = against_baseline(r, "sqlite", &id, "durability.baseline.health") {
                    let _ = write!(text, " ({base})");
                }
                if l.failed() > 0 {
                    let _ = write!(text, "; {} failed", l.failed());
                }
                text
            }
            None => "not measured in this run".into(),
        };
        let _ = writeln!(
            out,
            "| `{level}` | {loses} | {} | {} |",
            cell(format!("durability.refresh.{level}")),
            cell(format!("durability.refresh-one.{level}"))
        );
    }
    Some(out)
}

fn machine_lines(machine: &Value) -> String {
    let field = |k: &str| machine.get(k).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let mut out = String::new();
    for (label, key) in [
        ("CPU", "cpu"),
        ("Cores", "cores"),
        ("Memory", "memory"),
        ("Kernel", "kernel"),
        ("Rust", "rustc"),
        ("PostgreSQL", "postgres"),
        ("Redis", "redis"),
        ("guard commit", "commit"),
        ("Run started", "started"),
        ("Run finished", "finished"),
    ] {
        let _ = writeln!(out, "- {label}: {}", field(key));
    }
    out
}

/// Renders the report.
pub fn render(records: &Records, machine: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "# Benchmarks\n\n\
         Generated by `bash bench/report.sh` from the figures of one run; do not edit by hand.\n\
         Notes on how figures moved between versions, and what was tried, are in\n\
         [docs/benchmark-notes.md](docs/benchmark-notes.md).\n\n",
    );
    if machine.get("quick").and_then(Value::as_bool) == Some(true) {
        out.push_str(
            "**A quick run (`QUICK=1`): short loads and small data sets, to try the harness.\n\
             These figures are not the record and do not measure the targets.**\n\n",
        );
    }
    out.push_str("## Machine\n\n");
    out.push_str(&machine_lines(machine));
    out.push_str(
        "\nguard, PostgreSQL, Redis and the load generator share the machine's cores, on\n\
         loopback. Throughput on a shared machine moves between runs, so HTTP figures stand\n\
         beside a baseline measured in the same run with the same load generator: an axum\n\
         server with one empty handler and no middleware (`guard-bench baseline`). Compare\n\
         the ratio across machines, not the raw numbers.\n\n",
    );
    out.push_str(HOW);
    out.push_str("\n## Targets\n\n");
    out.push_str("| Issue | Measure | Target | SQLite | PostgreSQL + Redis |\n|---|---|---|---|---|\n");
    let mut met = 0;
    let mut missed = Vec::new();
    let mut unmeasured = 0;
    for t in targets() {
        let cells: Vec<Cell> = BACKENDS.iter().map(|(b, _)| (t.figure)(records, b)).collect();
        for (cell, (_, name)) in cells.iter().zip(BACKENDS) {
            match cell.met {
                Some(true) => met += 1,
                Some(false) => missed.push(format!("{} ({name})", t.measure)),
                None => unmeasured += 1,
            }
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            t.issue,
            t.measure,
            t.target,
            cells[0].render(),
            cells[1].render()
        );
    }
    let _ = writeln!(
        out,
        "\n{met} figures meet their target, {} do not, {unmeasured} have no target on that backend or were not measured.",
        missed.len()
    );
    if !missed.is_empty() {
        out.push_str("Not met:\n\n");
        for m in &missed {
            let _ = writeln!(out, "- {m}");
        }
    }
    if let Some(table) = durability_table(records) {
        out.push_str(&table);
    }
    out.push_str("\n## Every figure of the run\n");
    for (backend, name) in BACKENDS {
        let _ = writeln!(out, "\n### {name}\n");
        let loads: Vec<(&str, Load, &Value)> = records
            .by_key
            .iter()
            .filter(|((b, _), r)| b == backend && r.get("kind").and_then(Value::as_str) == Some("load"))
            .filter_map(|((_, id), r)| Some((id.as_str(), records.load(backend, id)?, r)))
            .collect();
        if !loads.is_empty() {
            out.push_str(
                "| Load (guard-bench) | Request | Load | Throughput | p50 | p95 | p99 | max | Answers |\n\
                 |---|---|---|---|---|---|---|---|---|\n",
            );
            for (id, l, r) in loads {
                let answers =
                    l.statuses.iter().map(|(s, n)| format!("{s} × {}", thousands(*n as f64))).collect::<Vec<_>>();
                let mut answers = answers.join(", ");
                if l.errors > 0 {
                    let _ = write!(answers, ", {} without an answer", l.errors);
                }
                let _ = writeln!(
                    out,
                    "| {id} | `{}` | {} | {} req/s | {} | {} | {} | {} | {} in all: {answers} |",
                    r.get("request").and_then(Value::as_str).unwrap_or(""),
                    l.mode(),
                    thousands(l.throughput),
                    ms(l.p50),
                    ms(l.p95),
                    ms(l.p99),
                    ms(l.max),
                    thousands(l.requests as f64)
                );
            }
        }
        let values: Vec<&Value> = records
            .by_key
            .iter()
            .filter(|((b, _), r)| b == backend && r.get("kind").and_then(Value::as_str) == Some("value"))
            .map(|(_, r)| r)
            .collect();
        if !values.is_empty() {
            out.push_str("\n| Measure | Figure | How |\n|---|---|---|\n");
            for r in values {
                let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                let value = r.get("value").and_then(Value::as_f64).unwrap_or(f64::NAN);
                let figure =
                    if value.abs() < 10.0 && value.fract() != 0.0 { format!("{value:.2}") } else { thousands(value) };
                let _ = writeln!(out, "| {} | {figure} {} | {} |", s("id"), s("unit"), s("how").replace('|', "\\|"));
            }
        }
    }
    out
}

const HOW: &str = "## How the figures are made\n\n\
One command runs everything and writes this file: `bash bench/report.sh` (about an hour;\n\
`QUICK=1` shortens every load and the data sets, for trying the harness, not for the\n\
record). For each backend it:\n\n\
1. builds guard, guard-bench and the benchmark examples in release mode;\n\
2. measures the Argon2id ceiling (`guard-bench ceiling`: password verifications a second\n\
   with every core busy) and loads the baseline with `guard-bench load --scenario health`;\n\
3. starts `guard serve` on a fresh database (PostgreSQL with Redis for the second\n\
   backend; rate limits and brute-force protection off, as these runs measure\n\
   throughput), reads its resident memory after 2 s idle (and, later, after a restart\n\
   on the same database), times 20 starts to ready\n\
   (`bench/startup.py`), then drives each scenario with `guard-bench load` (2 s\n\
   warm-up, 10 s measured): `/health`, `/health/db`, `/v1/me`, sign-in at saturation\n\
   and at a fixed 80 % of the ceiling, token refresh, `/v1/audit`, and authorization\n\
   decisions one by one and in batches of 100, with the decision cache on and then off\n\
   (`CACHE_SIZE=0`, a second guard) for a tenant of 100 policies and 570 entities;\n\
4. runs the in-process benchmarks: `authz_bench` (decisions), `limiter latency` and\n\
   `limiter keys` (rate limiter), `audit_bench ingest|verify|query` (10 million events);\n\
5. runs `bench/audit.sh` (the audit log's cost on requests, against a build without audit\n\
   writes), `bench/login_flood.sh` (the operations guide's login flood) and\n\
   `bench/backup.sh` (1 million users with sessions and 10 million audit events), and on\n\
   SQLite `bench/sqlite_sync.sh` (token refresh at each `SQLITE_SYNCHRONOUS` level);\n\
6. renders this file with `guard-bench report`.\n\n\
Each step appends its figures to `records.jsonl` in the results folder (one JSON object\n\
a line, with the backend), which `guard-bench report --results DIR` reads.\n\
`guard-bench load --json FILE` writes one run's figures on their own.\n";

/// Reads `DIR/records.jsonl` and `DIR/machine.json` and writes the report.
pub fn write(results: &Path, out: &Path) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read_to_string(results.join(name))
            .map_err(|e| format!("cannot read {}: {e}", results.join(name).display()))
    };
    let records = Records::parse(&read("records.jsonl")?)?;
    let machine: Value = serde_json::from_str(&read("machine.json")?).map_err(|e| format!("machine.json: {e}"))?;
    std::fs::write(out, render(&records, &machine)).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_line(backend: &str, id: &str, throughput: f64, p99: f64, statuses: &str) -> String {
        format!(
            r#"{{"kind":"load","backend":"{backend}","id":"{id}","request":"GET /x","connections":32,"rate":null,"throughput":{throughput},"requests":100,"errors":0,"statuses":{statuses},"latency_ms":{{"p50":0.5,"p95":1.0,"p99":{p99},"max":9.0,"mean":0.6}}}}"#
        )
    }

    #[test]
    fn a_target_is_met_only_when_throughput_latency_and_answers_all_hold() {
        let text = [
            load_line("sqlite", "baseline.health", 100_000.0, 1.0, r#"{"200":100}"#),
            load_line("sqlite", "health", 40_000.0, 2.0, r#"{"200":100}"#),
            load_line("postgres", "health", 40_000.0, 6.0, r#"{"200":100}"#),
            load_line("sqlite", "me", 40_000.0, 2.0, r#"{"200":90,"500":10}"#),
        ]
        .join("\n");
        let records = Records::parse(&text).unwrap_or_else(|e| unreachable!("{e}"));
        let health = throughput_p99(&records, "sqlite", "health", 30_000.0, 5.0);
        assert_eq!(health.met, Some(true));
        assert!(health.text.contains("0.40 × the baseline's 100,000 req/s"), "{}", health.text);
        assert_eq!(throughput_p99(&records, "postgres", "health", 30_000.0, 5.0).met, Some(false));
        let me = throughput_p99(&records, "sqlite", "me", 30_000.0, 5.0);
        assert_eq!(me.met, Some(false), "500s must fail the target");
        assert!(throughput_p99(&records, "postgres", "me", 1.0, 5.0).met.is_none());
    }

    #[test]
    fn the_report_lists_every_target_and_counts_the_misses() {
        let text = [
            r#"{"kind":"value","backend":"sqlite","id":"memory.idle","value":52.9,"unit":"MiB","how":"ps"}"#.to_owned(),
            r#"{"kind":"value","backend":"postgres","id":"memory.idle","value":12.0,"unit":"MiB","how":"ps"}"#
                .to_owned(),
        ]
        .join("\n");
        let records = Records::parse(&text).unwrap_or_else(|e| unreachable!("{e}"));
        let report = render(&records, &serde_json::json!({ "cpu": "test" }));
        assert!(report.contains("**not met**: 52.9 MiB"), "{report}");
        assert!(report.contains("**met**: 12.0 MiB"), "{report}");
        assert!(report.contains("- Resident memory, idle after start (SQLite)"), "{report}");
        assert_eq!(report.matches("\n| 2 |").count(), 3);
    }

    #[test]
    fn the_durability_table_shows_each_level_beside_the_baseline_only_when_measured() {
        let none = Records::parse(&load_line("sqlite", "health", 1.0, 1.0, r#"{"200":1}"#))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(durability_table(&none).is_none());
        let text = [
            load_line("sqlite", "durability.baseline.health", 10_000.0, 1.0, r#"{"200":100}"#),
            load_line("sqlite", "durability.refresh.normal", 2_000.0, 9.0, r#"{"200":100}"#),
            load_line("sqlite", "durability.refresh.full", 1_000.0, 19.0, r#"{"200":100}"#),
        ]
        .join("\n");
        let records = Records::parse(&text).unwrap_or_else(|e| unreachable!("{e}"));
        let table = durability_table(&records).unwrap_or_default();
        assert!(table.contains("| `full` | nothing acknowledged (the default) | 1,000 req/s"), "{table}");
        assert!(table.contains("0.20 × the baseline's 10,000 req/s"), "{table}");
        assert!(table.contains("| `extra` |") && table.contains("not measured in this run"), "{table}");
        let report = render(&records, &serde_json::json!({}));
        assert!(report.contains("## SQLite durability"), "{report}");
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Records::parse("{}\n").err().unwrap_or_default();
        assert!(err.contains("line 1"), "{err}");
        assert!(Records::parse("not json").is_err());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12.34), "12.3");
        assert_eq!(thousands(-12_000.0), "-12,000");
    }
}
