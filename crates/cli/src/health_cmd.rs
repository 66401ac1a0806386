//! `guard health check`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use guard_client::Client;
use guard_proto::health::ComponentStatus;

use crate::{Failure, load_config};

#[derive(Debug, Subcommand)]
pub(crate) enum HealthAction {
    /// Read /health/detailed from a running guard, print a table, and exit 1 when any
    /// component is down or guard cannot be reached.
    Check {
        /// Base URL of guard; defaults to the configured listen address on loopback.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this long (for example 5s).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    guard_core::config::parse::duration(text).ok_or_else(|| format!("expected a duration such as 5s, got {text:?}"))
}

pub(crate) async fn run(file: Option<PathBuf>, action: HealthAction) -> Result<(), Failure> {
    let HealthAction::Check { url, timeout } = action;
    let url = match url {
        Some(url) => url,
        None => {
            let listen = load_config(file, |l| l)?.config.server.listen;
            let host = if listen.ip().is_unspecified() {
                if listen.is_ipv4() { "127.0.0.1".to_owned() } else { "[::1]".to_owned() }
            } else if listen.is_ipv6() {
                format!("[{}]", listen.ip())
            } else {
                listen.ip().to_string()
            };
            format!("http://{host}:{}", listen.port())
        }
    };
    let client = Client::new(&url, timeout).map_err(|e| Failure::Config(format!("--url = {url:?}: {e}")))?;
    let report = client.health_detailed().await.map_err(|e| Failure::Runtime(e.to_string()))?;

    say!("guard {} at {url}, up {}s", report.version, report.uptime_seconds);
    say!();
    say!("{:<10}  {:<8}  {:>11}  DETAIL", "COMPONENT", "STATUS", "LATENCY");
    for (name, c) in &report.components {
        let latency = c.latency_ms.map(|ms| format!("{ms:.2} ms")).unwrap_or_else(|| "-".into());
        let mut detail = c.reason.clone().unwrap_or_default();
        if let Some(pool) = c.details.as_ref().and_then(|d| d.get("pool")) {
            let n = |k: &str| pool.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let pool =
                format!("pool {} open ({} in use, {} idle), max {}", n("open"), n("in_use"), n("idle"), n("max_open"));
            detail = if detail.is_empty() { pool } else { format!("{detail}; {pool}") };
        }
        say!("{:<10}  {:<8}  {:>11}  {}", name, c.status.as_str(), latency, detail);
    }
    let down: Vec<&str> =
        report.components.iter().filter(|(_, c)| c.status == ComponentStatus::Down).map(|(n, _)| n.as_str()).collect();
    if report.healthy() && down.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(format!("unhealthy: {}", report.detail.unwrap_or_else(|| down.join(", ")))))
    }
}
