//! guard-bench: drives a running guard (or the empty baseline server) with a fixed
//! concurrency or a fixed arrival rate, prints throughput and latency percentiles,
//! writes them as JSON, and renders BENCHMARKS.md from the results of a run.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

mod load;
mod report;
mod scenario;

use scenario::{Prepared, Scenario, Target};

#[derive(Parser)]
#[command(name = "guard-bench", version, about = "Load generator and benchmark report for guard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive one scenario against a running guard.
    Load(LoadArgs),
    /// Serve an empty axum handler on GET /health: the baseline the figures are read against.
    Baseline {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: SocketAddr,
    },
    /// Measure the Argon2id ceiling: password verifications a second on every core.
    Ceiling(CeilingArgs),
    /// Append one measured value to a results file (for the benchmark scripts).
    Record {
        #[command(flatten)]
        out: Output,
        /// What was measured, e.g. memory.idle.
        #[arg(long)]
        id: String,
        #[arg(long)]
        value: f64,
        #[arg(long)]
        unit: String,
        /// How it was measured.
        #[arg(long, default_value = "")]
        how: String,
    },
    /// Write BENCHMARKS.md from a results folder.
    Report {
        /// The folder bench/report.sh wrote (records.jsonl).
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct Output {
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    append: Option<PathBuf>,
    /// The backend guard ran on, recorded with the result.
    #[arg(long, default_value = "sqlite")]
    backend: String,
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// guard's address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests a second in all (a fixed arrival rate); without it, back to back.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// An account without MFA (the scenarios that need a session sign in as it; the
    /// authorization ones need `authorize.any`, as an administrator has).
    #[arg(long, default_value = "bench@example.com")]
    email: String,
    #[arg(long, default_value = "bench passphrase 42", env = "GUARD_BENCH_PASSWORD")]
    password: String,
    /// Policies, entities and requests for the authorization scenarios.
    #[arg(long)]
    tenant_dir: Option<PathBuf>,
    /// The result's name in the results file (default: the scenario's).
    #[arg(long)]
    id: Option<String>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    out: Output,
}

#[derive(Args)]
struct CeilingArgs {
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 19456)]
    memory_kib: u32,
    #[arg(long, default_value_t = 2)]
    iterations: u32,
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    #[command(flatten)]
    out: Output,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guard-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Load(args) => load(args).await,
        Command::Baseline { listen } => baseline(listen).await,
        Command::Ceiling(args) => ceiling(args).await,
        Command::Record { out, id, value, unit, how } => {
            append(&out, json!({ "kind": "value", "id": id, "value": value, "unit": unit, "how": how }))
        }
        Command::Report { results, out } => report::write(&results, &out),
    }
}

/// Appends `record` (with the backend and the time) as one line of the results file.
fn append(out: &Output, mut record: Value) -> Result<(), String> {
    let Some(path) = &out.append else { return Ok(()) };
    if let Some(fields) = record.as_object_mut() {
        fields.insert("backend".into(), json!(out.backend));
        let now = time::OffsetDateTime::now_utc();
        fields
            .insert("at".into(), json!(now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    writeln!(file, "{record}").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url}: expected http://HOST:PORT (guard-bench speaks plain HTTP/1.1)"))?;
    let host = rest.trim_end_matches('/');
    if host.contains('/') {
        return Err(format!("--url {url}: expected no path"));
    }
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|e| format!("--url {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url {url}: no address"))?;
    Ok((addr, host.to_owned()))
}

async fn load(args: LoadArgs) -> Result<(), String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be a positive number of requests a second".into());
    }
    if args.duration.is_zero() {
        return Err("--duration must be longer than zero".into());
    }
    let (addr, host) = parse_url(&args.url)?;
    let target = Target {
        addr,
        host,
        tenant: args.tenant,
        email: args.email,
        password: args.password,
        tenant_dir: args.tenant_dir,
    };
    let prepared = Arc::new(Prepared::new(args.scenario, target).await?);
    let plan =
        load::Plan { connections: args.connections, rate: args.rate, warmup: args.warmup, duration: args.duration };
    let outcome = load::run(addr, prepared, plan).await?;
    let id = args.id.unwrap_or_else(|| {
        serde_json::to_value(args.scenario).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    });
    let mode = match args.rate {
        Some(rate) => format!("{rate:.1} req/s over up to {} connections", args.connections),
        None => format!("{} connections", args.connections),
    };
    let l = &outcome.latency_ms;
    println!(
        "{:<44} {:>10.1} req/s  p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({mode}; statuses {}; errors {})",
        format!("{id}: {}", args.scenario.describe()),
        outcome.throughput,
        l.p50,
        l.p95,
        l.p99,
        l.max,
        outcome.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect::<Vec<_>>().join(" "),
        outcome.errors
    );
    let record = json!({
        "kind": "load",
        "id": id,
        "scenario": args.scenario,
        "request": args.scenario.describe(),
        "url": args.url,
        "connections": args.connections,
        "rate": args.rate,
        "warmup_s": args.warmup.as_secs_f64(),
        "duration_s": args.duration.as_secs_f64(),
        "generator": "guard-bench",
        "requests": outcome.requests,
        "throughput": outcome.throughput,
        "latency_ms": outcome.latency_ms,
        "statuses": outcome.statuses,
        "errors": outcome.errors,
    });
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    append(&args.out, record)
}

async fn baseline(listen: SocketAddr) -> Result<(), String> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let app = axum::Router::new().route("/health", axum::routing::get(|| async {}));
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// Verifications a second with every core busy: the most password sign-ins this
/// machine can answer, whatever else the server does.
async fn ceiling(args: CeilingArgs) -> Result<(), String> {
    use guard_core::passwords::{HashParams, PasswordHasher};
    let params = HashParams { memory_kib: args.memory_kib, iterations: args.iterations, parallelism: args.parallelism };
    let hasher = PasswordHasher::per_cpu(params).map_err(|e| e.to_string())?;
    let password = "correct horse battery staple";
    let hash = hasher.hash(password.into()).await.map_err(|e| e.to_string())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Twice as many as cores: the hasher's own queue keeps every core busy.
    for _ in 0..cores * 2 {
        let hasher = hasher.clone();
        let hash = hash.clone();
        let duration = args.duration;
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < duration {
                if hasher.verify(password.into(), hash.clone()).await.is_ok_and(|v| v.valid) {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut verified = 0;
    for task in tasks {
        verified += task.await.map_err(|e| e.to_string())?;
    }
    let per_second = verified as f64 / started.elapsed().as_secs_f64();
    println!(
        "argon2id m={} t={} p={}: {:.1} ms per verification; ceiling {per_second:.1} logins/s on {cores} cores",
        args.memory_kib,
        args.iterations,
        args.parallelism,
        cores as f64 / per_second * 1000.0
    );
    append(
        &args.out,
        json!({
            "kind": "value",
            "id": "argon2.ceiling",
            "value": per_second,
            "unit": "logins/s",
            "how": format!("{verified} verifications on {cores} cores in {:.1} s, m={} t={} p={}",
                started.elapsed().as_secs_f64(), args.memory_kib, args.iterations, args.parallelism),
        }),
    )
}
