//! `guard maintenance run`, `guard db verify-integrity`, `guard metrics
//! database-size | audit-size` and `guard version`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use guard_core::Config;
use guard_core::events::{Actor, Event, EventSink};
use guard_core::store::{Job, JobOutcome, JobRun};
use guard_store::Database;

use crate::database::services;
use crate::migrate_cmd::store_failure;
use crate::{Failure, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum MaintenanceAction {
    /// Delete what has expired, apply audit retention, then VACUUM/ANALYZE.
    Run {
        /// Count what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbAction {
    /// The database's own integrity check, every foreign key, and the audit chains.
    VerifyIntegrity,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MetricsAction {
    /// Bytes the database takes (also guard_database_size_bytes).
    DatabaseSize,
    /// Audit events stored (also guard_audit_events_stored).
    AuditSize,
}

fn runtime(e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(e.to_string())
}

pub(crate) async fn maintenance(file: Option<PathBuf>, action: MaintenanceAction) -> Result<(), Failure> {
    let MaintenanceAction::Run { dry_run } = action;
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let report = run_maintenance(&loaded.config, &db, &all.tenants, &all.audit, dry_run).await;
    db.pool.close().await;
    for line in report?.lines {
        say!("{line}");
    }
    Ok(())
}

/// What one maintenance run did, line by line.
pub(crate) struct MaintenanceReport {
    pub lines: Vec<String>,
    pub deleted: u64,
}

/// One maintenance run: expired rows, audit retention, then VACUUM/ANALYZE. A real
/// run's outcome is recorded for monitoring.
pub(crate) async fn run_maintenance(
    config: &Config,
    db: &Database,
    tenants: &guard_core::tenants::TenantService,
    audit: &guard_core::audit::AuditLog,
    dry_run: bool,
) -> Result<MaintenanceReport, Failure> {
    let report = maintain(config, db, tenants, audit, dry_run).await;
    if !dry_run {
        let outcome = if report.is_ok() { JobOutcome::Ok } else { JobOutcome::Failed };
        record_job(db, Job::Maintenance, outcome).await;
    }
    report
}

/// Records a job's outcome for monitoring. Not being able to is only logged: the
/// job's own result is what its command reports.
pub(crate) async fn record_job(db: &Database, job: Job, outcome: JobOutcome) {
    if let Err(e) = db.ops.record_job(job, outcome).await {
        tracing::warn!(error = %e, job = job.as_str(), "cannot record the job's outcome");
    }
}

/// [`record_job`] for commands that have no database open. A SQLite file that does
/// not exist is left alone: opening it would create an empty database.
pub(crate) async fn record_job_in(config: &guard_core::config::DatabaseConfig, job: Job, outcome: JobOutcome) {
    if guard_store::backup::sqlite_path(config.url.expose()).is_some_and(|path| !path.exists()) {
        return;
    }
    match guard_store::open(config).await {
        Ok(db) => {
            record_job(&db, job, outcome).await;
            db.pool.close().await;
        }
        Err(e) => tracing::warn!(error = %e, job = job.as_str(), "cannot record the job's outcome"),
    }
}

async fn maintain(
    config: &Config,
    db: &Database,
    tenants: &guard_core::tenants::TenantService,
    audit: &guard_core::audit::AuditLog,
    dry_run: bool,
) -> Result<MaintenanceReport, Failure> {
    let started = Instant::now();
    let fail = |e: guard_core::store::StoreError| store_failure(&e, &config.database);
    let now = time::OffsetDateTime::now_utc();
    let grace = config.maintenance.expired_grace;
    let cutoff = now
        .checked_sub(time::Duration::try_from(grace).unwrap_or(time::Duration::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut lines = Vec::new();
    let verb = if dry_run { "would delete" } else { "deleted" };
    let steps = db.ops.delete_expired(cutoff, now, dry_run).await.map_err(fail)?;
    let mut deleted = 0;
    for step in &steps {
        lines.push(format!("{verb} {:>9}  {}", step.rows, step.what));
        deleted += step.rows;
    }
    if dry_run {
        lines.push("audit retention and VACUUM/ANALYZE are not run in a dry run".to_owned());
    } else {
        let pruned = guard_api::apply_audit_retention(tenants, audit, &config.audit).await.map_err(Failure::Runtime)?;
        lines.push(format!("{verb} {pruned:>9}  audit events past their retention"));
        deleted += pruned;
        let before = db.ops.database_size().await.map_err(fail)?;
        let ran = db.ops.optimize().await.map_err(fail)?;
        let after = db.ops.database_size().await.map_err(fail)?;
        lines.push(format!("ran {ran}: database {before} -> {after} bytes"));
        let event = Event::success("maintenance.completed", Actor::Operator)
            .details(serde_json::json!({ "deleted": deleted, "database_bytes": after }));
        audit.emit(event).await;
    }
    lines.push(format!(
        "maintenance {} in {:.1}s (expired means before {}, {} ago)",
        if dry_run { "dry run done" } else { "done" },
        started.elapsed().as_secs_f64(),
        cutoff.date(),
        humantime_duration(grace)
    ));
    Ok(MaintenanceReport { lines, deleted })
}

pub(crate) fn humantime_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(86_400) { format!("{}d", secs / 86_400) } else { format!("{secs}s") }
}

pub(crate) async fn db(file: Option<PathBuf>, action: DbAction) -> Result<(), Failure> {
    let DbAction::VerifyIntegrity = action;
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let started = Instant::now();
    let mut problems = db.ops.check_integrity().await.map_err(|e| store_failure(&e, &loaded.config.database))?;
    say!(
        "database: {} ({} backend)",
        if problems.is_empty() { "integrity check passed, every foreign key holds" } else { "PROBLEMS" },
        db.pool.backend().as_str()
    );
    let report = all.audit.verify(None).await.map_err(runtime)?;
    for chain in &report.chains {
        if let Some(b) = &chain.broken {
            let name = chain.tenant.map_or_else(|| "platform".to_owned(), |t| t.to_string());
            problems.push(format!(
                "audit chain {name} broken at seq {}: {}",
                b.seq.map_or_else(|| "-".into(), |s| s.to_string()),
                b.reason
            ));
        }
    }
    say!(
        "audit: {} chains, {} records, {}",
        report.chains.len(),
        report.records,
        if report.intact { "intact" } else { "BROKEN" }
    );
    db.pool.close().await;
    for p in &problems {
        say!("problem: {p}");
    }
    if problems.is_empty() {
        say!("integrity verified in {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    } else {
        Err(Failure::Runtime(format!("{} integrity problems found", problems.len())))
    }
}

pub(crate) async fn metrics(file: Option<PathBuf>, action: MetricsAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let db = crate::database::prepare(&loaded.config, crate::database::Migrations::Require).await?;
    let fail = |e: guard_core::store::StoreError| store_failure(&e, &loaded.config.database);
    let result = match action {
        MetricsAction::DatabaseSize => {
            let bytes = db.ops.database_size().await.map_err(fail)?;
            say!("guard_database_size_bytes {bytes}");
            Ok(())
        }
        MetricsAction::AuditSize => {
            let events = db.ops.audit_events_stored().await.map_err(fail)?;
            say!("guard_audit_events_stored {events}");
            Ok(())
        }
    };
    db.pool.close().await;
    result
}

/// Sets the size gauges (serve, every 15 s).
pub(crate) async fn export_size_gauges(db: &Database) {
    match db.ops.database_size().await {
        Ok(bytes) => metrics::gauge!("guard_database_size_bytes").set(bytes as f64),
        Err(e) => tracing::debug!(error = %e, "cannot read the database size"),
    }
    match db.ops.audit_events_stored().await {
        Ok(events) => metrics::gauge!("guard_audit_events_stored").set(events as f64),
        Err(e) => tracing::debug!(error = %e, "cannot count audit events"),
    }
    match db.ops.job_runs().await {
        Ok(runs) => export_job_gauges(&runs),
        Err(e) => tracing::debug!(error = %e, "cannot read the jobs' outcomes"),
    }
}

/// `guard version`: the binary, and the schema of the configured database when it
/// answers.
pub(crate) async fn version(file: Option<PathBuf>) -> Result<(), Failure> {
    say!("guard {}", env!("CARGO_PKG_VERSION"));
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let database = &loaded.config.database;
    let known = guard_store::embedded_migrations(match database.kind() {
        guard_core::config::DatabaseKind::Sqlite => guard_core::store::Backend::Sqlite,
        guard_core::config::DatabaseKind::Postgres => guard_core::store::Backend::Postgres,
    })
    .last()
    .map_or(0, |m| m.version);
    say!("schema version known: {known}");
    let db = guard_store::open(database).await.map_err(|e| store_failure(&e, database))?;
    let status = match db.pool.ping(database.acquire_timeout).await {
        Ok(()) => db.migrations.status().await.map_err(|e| store_failure(&e, database)),
        Err(e) => Err(store_failure(&e, database)),
    };
    db.pool.close().await;
    match status {
        Ok(status) => {
            say!(
                "schema version applied: {} ({} pending) in {} ({})",
                status.latest_applied,
                status.pending(),
                database.url.redacted(),
                if database.kind() == guard_core::config::DatabaseKind::Sqlite { "sqlite" } else { "postgres" }
            );
            Ok(())
        }
        Err(Failure::Runtime(reason) | Failure::Config(reason)) => {
            say!("schema version applied: unknown ({reason})");
            Ok(())
        }
    }
}

/// Each job's last success and failure times, and whether the last audit
/// verification found every chain intact.
fn export_job_gauges(runs: &[JobRun]) {
    let unix = |t: time::OffsetDateTime| t.unix_timestamp() as f64;
    for run in runs {
        let job = run.job.as_str();
        if let Some(at) = run.last_success_at {
            metrics::gauge!("guard_job_last_success_timestamp_seconds", "name" => job).set(unix(at));
        }
        if let Some(at) = run.last_failure_at {
            metrics::gauge!("guard_job_last_failure_timestamp_seconds", "name" => job).set(unix(at));
        }
        if run.job == Job::AuditVerify {
            match run.last_outcome {
                JobOutcome::Ok => metrics::gauge!("guard_audit_chain_intact").set(1.0),
                JobOutcome::Broken => metrics::gauge!("guard_audit_chain_intact").set(0.0),
                // A verification that could not finish says nothing about the chains.
                JobOutcome::Failed => {}
            }
        }
    }
}
