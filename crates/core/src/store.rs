//! Storage traits, split by capability. Each backend (SQLite, PostgreSQL) implements
//! them in the `store` crate; the application holds them as `Arc<dyn …>`.

use async_trait::async_trait;
use thiserror::Error;

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Lower-case name, as used in metrics and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Errors from a store. Messages are safe to log; only `Unavailable` reasons are meant
/// to be shown to callers (on health endpoints), and they never carry credentials.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The configuration names a database the driver cannot use.
    #[error("{0}")]
    InvalidConfig(String),
    #[error(
        "database schema is at version {applied}, newer than the latest this guard knows ({known}); upgrade guard, or run `guard migrate down` with the newer binary"
    )]
    SchemaTooNew { applied: i64, known: i64 },
    #[error(
        "database schema is at version {applied} but this guard needs {known}; run `guard migrate up` or start `guard serve` without --no-migrate"
    )]
    SchemaTooOld { applied: i64, known: i64 },
    #[error(
        "migration {version} applied to the database differs from the one this guard ships (edited after release?)"
    )]
    MigrationModified { version: i64 },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// The database refused a value as invalid data (PostgreSQL's SQLSTATE class 22,
    /// for example a NUL character in text): the caller's input, not a fault.
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("database error: {0}")]
    Internal(String),
}

/// Connection pool figures at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Open connections, idle or in use.
    pub open: u32,
    pub idle: u32,
    pub in_use: u32,
    pub max_open: u32,
    pub max_idle: u32,
}

/// The database connection pool: liveness, figures and shutdown.
#[async_trait]
pub trait PoolStore: Send + Sync {
    /// Which engine this is.
    fn backend(&self) -> Backend;
    /// Checks the database answers within `limit`. Errors are `Unavailable`, saying
    /// why in words safe to show: unreachable, refused, or every connection busy.
    async fn ping(&self, limit: std::time::Duration) -> Result<(), StoreError>;
    /// Current pool figures.
    fn stats(&self) -> PoolStats;
    /// Closes every connection, waiting for those in use to be returned.
    async fn close(&self);
}

/// Whether a migration is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    Applied {
        at: String,
    },
    Pending,
    /// Applied, but the SQL this guard ships has changed since.
    Modified {
        at: String,
    },
    /// Applied by a newer guard; this one does not know it.
    Unknown {
        at: String,
    },
}

/// One row of `guard migrate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
}

/// The schema as the database has it, compared with what this guard ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub migrations: Vec<MigrationInfo>,
    /// Latest version this guard ships.
    pub latest_known: i64,
    /// Latest version applied to the database, 0 when none.
    pub latest_applied: i64,
}

impl SchemaStatus {
    /// Migrations this guard ships that the database lacks.
    pub fn pending(&self) -> usize {
        self.migrations.iter().filter(|m| m.state == MigrationState::Pending).count()
    }

    /// An error when this guard must not serve this database: a newer schema, or a
    /// shipped migration that was applied in a different form.
    pub fn check_serveable(&self) -> Result<(), StoreError> {
        if self.migrations.iter().any(|m| matches!(m.state, MigrationState::Unknown { .. })) {
            return Err(StoreError::SchemaTooNew { applied: self.latest_applied, known: self.latest_known });
        }
        if let Some(m) = self.migrations.iter().find(|m| matches!(m.state, MigrationState::Modified { .. })) {
            return Err(StoreError::MigrationModified { version: m.version });
        }
        Ok(())
    }
}

/// Schema migrations.
#[async_trait]
pub trait MigrationStore: Send + Sync {
    /// Every known and applied migration with its state.
    async fn status(&self) -> Result<SchemaStatus, StoreError>;
    /// Applies every pending migration; returns the versions applied. Refuses a
    /// database whose schema is newer than this guard.
    async fn up(&self) -> Result<Vec<i64>, StoreError>;
    /// Reverts the latest `steps` applied migrations; returns the versions reverted.
    async fn down(&self, steps: u32) -> Result<Vec<i64>, StoreError>;
}

/// One step of maintenance and how many rows it removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceStep {
    pub what: &'static str,
    pub rows: u64,
}

/// Operator jobs whose outcomes are recorded for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Backup,
    AuditVerify,
    Maintenance,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::Backup, Job::AuditVerify, Job::Maintenance];

    pub fn as_str(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::AuditVerify => "audit_verify",
            Job::Maintenance => "maintenance",
        }
    }

    pub fn parse(text: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.as_str() == text)
    }
}

/// How a job run ended: `Broken` is an audit verification that found a break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Ok,
    Failed,
    Broken,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Ok => "ok",
            JobOutcome::Failed => "failed",
            JobOutcome::Broken => "broken",
        }
    }

    pub fn parse(text: &str) -> Option<JobOutcome> {
        [JobOutcome::Ok, JobOutcome::Failed, JobOutcome::Broken].into_iter().find(|o| o.as_str() == text)
    }
}

/// A job's latest outcome and when it last succeeded and failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    pub job: Job,
    pub last_outcome: JobOutcome,
    pub last_run_at: time::OffsetDateTime,
    pub last_success_at: Option<time::OffsetDateTime>,
    pub last_failure_at: Option<time::OffsetDateTime>,
}

/// A row of `job_leases`: `holder` has `name` until `expires_at` (a job one replica
/// at a time runs, or a `guard serve` process saying it uses the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub expires_at: time::OffsetDateTime,
}

/// Name prefix of the lease each `guard serve` process holds while it runs
/// (`serve:<process id>`), which `guard restore` looks for.
pub const SERVE_LEASE_PREFIX: &str = "serve:";

/// Operators' view of the database: sizes, clean-up, integrity.
#[async_trait]
pub trait OpsStore: Send + Sync {
    /// Bytes the database takes (SQLite: its pages, free ones included, not the WAL).
    async fn database_size(&self) -> Result<u64, StoreError>;
    /// Audit events stored: sealed (per the chains' heads and anchors) plus queued.
    async fn audit_events_stored(&self) -> Result<u64, StoreError>;
    /// Deletes what has expired: sessions and tokens expired (or revoked, or used)
    /// before `cutoff`, challenges and ceremonies expired before `now`, mail sent
    /// before `cutoff`, and sign-in records and blocks that no longer count. With
    /// `dry_run`, counts instead.
    async fn delete_expired(
        &self,
        cutoff: time::OffsetDateTime,
        now: time::OffsetDateTime,
        dry_run: bool,
    ) -> Result<Vec<MaintenanceStep>, StoreError>;
    /// The backend's VACUUM and ANALYZE; returns what was run.
    async fn optimize(&self) -> Result<String, StoreError>;
    /// The backend's own integrity check and every foreign key; returns the problems
    /// found (none: healthy).
    async fn check_integrity(&self) -> Result<Vec<String>, StoreError>;
    /// Records the outcome of an operator job run now.
    async fn record_job(&self, job: Job, outcome: JobOutcome) -> Result<(), StoreError>;
    /// Each job's latest outcome, for jobs that have run.
    async fn job_runs(&self) -> Result<Vec<JobRun>, StoreError>;
    /// The leases whose names start with `prefix`, expired ones included (the caller
    /// compares `expires_at` with its clock).
    async fn leases(&self, prefix: &str) -> Result<Vec<Lease>, StoreError>;
}
