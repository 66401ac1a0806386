//! `guard audit`: the daily review (query), exports for archives and SIEMs, chain
//! verification, retention, and the checkpoint key. Each read is itself recorded.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use guard_core::audit::{AuditFilter, AuditLog, AuditRecord, MAX_PAGE, Order, PLATFORM, QueryParams};
use guard_core::events::{Actor, Event, EventSink};
use guard_core::store::{Job, JobOutcome};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::database::services;
use crate::{Failure, load_config, logging};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ListFormat {
    Table,
    Json,
    Jsonl,
}

/// What selects events, shared by query and export.
#[derive(Debug, clap::Args)]
pub(crate) struct Selection {
    /// A tenant's slug or id, or `platform` for events of no tenant. Default: every tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// From this time: RFC 3339, or a span before now ("24 hours ago", "7d").
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Event types, a glob such as 'auth.*'.
    #[arg(long = "event-type")]
    event_type: Option<String>,
    /// success, failure, denied or error.
    #[arg(long)]
    result: Option<String>,
    /// Who acted: `user:<id>`, `operator` or `system`.
    #[arg(long)]
    actor: Option<String>,
    /// What was acted on.
    #[arg(long)]
    target: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditAction {
    /// Events, newest first.
    Query {
        #[command(flatten)]
        selection: Selection,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Events, oldest first, as JSON lines; gzip-compressed when FILE ends in .gz.
    Export {
        #[command(flatten)]
        selection: Selection,
        /// Where to write (`-`: standard output).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check the hash chains, MACs and signed checkpoints; exits 1 naming the first
    /// broken record.
    Verify {
        /// One tenant (slug, id or `platform`). Default: every chain.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t = crate::Format::Table)]
        format: crate::Format,
    },
    /// Apply retention now (serve does it every hour).
    Prune,
    /// The checkpoint signing key: its id and raw Ed25519 public key (base64).
    Key,
}

pub(crate) async fn run(file: Option<PathBuf>, action: AuditAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let result = match action {
        AuditAction::Query { selection, limit, format } => query(&all, &selection, limit, format).await,
        AuditAction::Export { selection, out } => export(&all, &selection, &out).await,
        AuditAction::Verify { tenant, format } => verify(&db, &all, tenant.as_deref(), format).await,
        AuditAction::Prune => guard_api::apply_audit_retention(&all.tenants, &all.audit, &loaded.config.audit)
            .await
            .map(|n| say!("pruned {n} audit events past their retention"))
            .map_err(Failure::Runtime),
        AuditAction::Key => {
            use base64::Engine as _;
            let keys = all.audit.keys();
            say!("key_id     {}", keys.key_id());
            say!("public_key {}", base64::engine::general_purpose::STANDARD.encode(keys.public_key()));
            Ok(())
        }
    };
    db.pool.close().await;
    result
}

async fn tenant_id(all: &guard_api::Services, tenant: Option<&str>) -> Result<Option<Uuid>, Failure> {
    match tenant {
        None => Ok(None),
        Some("platform") => Ok(Some(PLATFORM)),
        Some(reference) => {
            all.tenants.find(reference).await.map(|t| Some(t.id.0)).map_err(|e| Failure::Runtime(e.to_string()))
        }
    }
}

async fn filter(all: &guard_api::Services, selection: &Selection, order: Order) -> Result<AuditFilter, Failure> {
    let tenant = tenant_id(all, selection.tenant.as_deref()).await?;
    let params = QueryParams {
        since: selection.since.clone(),
        until: selection.until.clone(),
        kind: selection.event_type.clone(),
        result: selection.result.clone(),
        actor: selection.actor.clone(),
        target: selection.target.clone(),
        cursor: None,
        limit: None,
    };
    params.filter(tenant, order, MAX_PAGE, MAX_PAGE, OffsetDateTime::now_utc()).map_err(|e| {
        let flag = match e.name {
            "type" => "event-type",
            other => other,
        };
        Failure::Config(format!("--{flag}: {}", e.reason))
    })
}

async fn record_access(audit: &AuditLog, kind: &'static str, tenant: Option<Uuid>, selection: &Selection) {
    let mut event = Event::success(kind, Actor::Operator).details(json!({
        "since": selection.since, "until": selection.until, "type": selection.event_type,
        "result": selection.result, "actor": selection.actor, "target": selection.target,
    }));
    if let Some(tenant) = tenant.filter(|t| *t != PLATFORM) {
        event = event.tenant(tenant);
    }
    audit.emit(event).await;
}

/// Most events `guard audit query` prints; more belong in `guard audit export`.
const QUERY_MAX: u32 = 100_000;

async fn query(
    all: &guard_api::Services,
    selection: &Selection,
    limit: u32,
    format: ListFormat,
) -> Result<(), Failure> {
    if !(1..=QUERY_MAX).contains(&limit) {
        return Err(Failure::Config(format!(
            "--limit: {limit} is not from 1 to {QUERY_MAX} (guard audit export writes any number)"
        )));
    }
    let mut filter = filter(all, selection, Order::NewestFirst).await?;
    let mut records: Vec<AuditRecord> = Vec::new();
    while records.len() < limit as usize {
        filter.limit = (limit - records.len() as u32).min(MAX_PAGE);
        let page = all.audit.query(&filter).await.map_err(|e| Failure::Runtime(e.to_string()))?;
        records.extend(page.records);
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    record_access(&all.audit, "audit.events.read", filter.tenant, selection).await;
    match format {
        ListFormat::Json => {
            let list: Vec<_> = records.iter().map(AuditRecord::to_json).collect();
            say!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        }
        ListFormat::Jsonl => {
            for record in &records {
                say!("{}", record.to_json());
            }
        }
        ListFormat::Table => {
            say!("{:<20}  {:<34}  {:<7}  {:<42}  {:<38}  IP", "TIME (UTC)", "TYPE", "RESULT", "ACTOR", "TARGET");
            for r in &records {
                // To the second, for a terminal: 2026-11-30 08:00:00.
                let time = r.time_text().get(..19).unwrap_or_default().replacen('T', " ", 1);
                say!(
                    "{:<20}  {:<34}  {:<7}  {:<42}  {:<38}  {}",
                    time,
                    r.kind,
                    r.result,
                    r.actor,
                    r.target.as_deref().unwrap_or("-"),
                    r.ip.as_deref().unwrap_or("-")
                );
            }
            if records.is_empty() {
                say!("(no events match)");
            }
        }
    }
    Ok(())
}

async fn export(all: &guard_api::Services, selection: &Selection, out: &std::path::Path) -> Result<(), Failure> {
    let mut filter = filter(all, selection, Order::Chain).await?;
    let io = |e: std::io::Error| Failure::Runtime(format!("{}: {e}", out.display()));
    let sink: Box<dyn std::io::Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).map_err(io)?)
    };
    let gzip = out.extension().is_some_and(|e| e == "gz");
    let mut writer: Box<dyn std::io::Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(sink, flate2::Compression::default()))
    } else {
        Box::new(std::io::BufWriter::with_capacity(1 << 16, sink))
    };
    record_access(&all.audit, "audit.events.exported", filter.tenant, selection).await;
    let mut count = 0u64;
    loop {
        let page = all.audit.query(&filter).await.map_err(|e| Failure::Runtime(e.to_string()))?;
        for record in &page.records {
            serde_json::to_writer(&mut writer, &record.to_json()).map_err(|e| io(e.into()))?;
            writer.write_all(b"\n").map_err(io)?;
        }
        count += page.records.len() as u64;
        match page.next_position {
            Some(next) => filter.after_position = Some(next),
            None => break,
        }
    }
    writer.flush().map_err(io)?;
    drop(writer);
    if out.as_os_str() != "-" {
        say!("exported {count} audit events to {}", out.display());
    }
    Ok(())
}

async fn verify(
    db: &guard_store::Database,
    all: &guard_api::Services,
    tenant: Option<&str>,
    format: crate::Format,
) -> Result<(), Failure> {
    let tenant = tenant_id(all, tenant).await?;
    let verified = all.audit.verify(tenant).await;
    // Only a verification of every chain can say the log is intact; a break found in
    // one tenant's chain is worth recording either way.
    let outcome = match &verified {
        Ok(report) if !report.intact => Some(JobOutcome::Broken),
        Ok(_) if tenant.is_none() => Some(JobOutcome::Ok),
        Err(_) if tenant.is_none() => Some(JobOutcome::Failed),
        _ => None,
    };
    if let Some(outcome) = outcome {
        crate::ops_cmd::record_job(db, Job::AuditVerify, outcome).await;
    }
    let report = verified.map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut event = Event::success("audit.chain.verified", Actor::Operator)
        .details(json!({ "intact": report.intact, "records": report.records }));
    if let Some(tenant) = tenant.filter(|t| *t != PLATFORM) {
        event = event.tenant(tenant);
    }
    all.audit.emit(event).await;
    match format {
        crate::Format::Json => say!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
        crate::Format::Table => {
            say!("{:<36}  {:>10}  {:>11}  {:>8}  STATUS", "CHAIN", "RECORDS", "CHECKPOINTS", "UNSEALED");
            for chain in &report.chains {
                let name = chain.tenant.map_or_else(|| "platform".to_owned(), |t| t.to_string());
                let status = match &chain.broken {
                    None => "intact".to_owned(),
                    Some(b) => format!(
                        "BROKEN at seq {} (record {}): {}",
                        b.seq.map_or_else(|| "-".into(), |s| s.to_string()),
                        b.id.map_or_else(|| "-".into(), |i| i.to_string()),
                        b.reason
                    ),
                };
                say!(
                    "{:<36}  {:>10}  {:>11}  {:>8}  {}",
                    name,
                    chain.records,
                    chain.checkpoints,
                    chain.unsealed,
                    status
                );
            }
            say!("checkpoint key {}; {} records verified", report.key_id, report.records);
        }
    }
    if report.intact {
        Ok(())
    } else {
        let first = report.chains.iter().find_map(|c| c.broken.as_ref().map(|b| (c.tenant, b)));
        let detail = first.map_or_else(String::new, |(tenant, b)| {
            format!(
                ": chain {} broken at seq {} (record {}): {}",
                tenant.map_or_else(|| "platform".to_owned(), |t| t.to_string()),
                b.seq.map_or_else(|| "-".into(), |s| s.to_string()),
                b.id.map_or_else(|| "-".into(), |i| i.to_string()),
                b.reason
            )
        });
        Err(Failure::Runtime(format!("the audit log failed verification{detail}")))
    }
}
