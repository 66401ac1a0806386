//! `guard migrate up | down [N] | status`.

use std::path::PathBuf;

use clap::Subcommand;
use guard_core::store::{MigrationState, StoreError};

use crate::{Failure, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateAction {
    /// Apply every pending migration, after a backup of the database as it is.
    Up {
        /// Skip the backup taken before migrating.
        #[arg(long)]
        no_backup: bool,
    },
    /// Revert the latest N applied migrations (default 1).
    Down {
        #[arg(default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        steps: u32,
    },
    /// List every migration and whether it is applied.
    Status,
}

pub(crate) async fn run(file: Option<PathBuf>, action: MigrateAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let database = &loaded.config.database;
    let db = guard_store::open(database).await.map_err(|e| store_failure(&e, database))?;
    db.pool.ping(database.acquire_timeout).await.map_err(|e| store_failure(&e, database))?;
    let result = match action {
        MigrateAction::Up { no_backup } => {
            let before = db.migrations.status().await.map_err(|e| store_failure(&e, database))?;
            if before.pending() > 0 && before.latest_applied > 0 && !no_backup {
                let name = crate::backup_cmd::default_name(
                    time::OffsetDateTime::now_utc(),
                    &format!("pre-migrate-{}", before.latest_applied),
                );
                let taken =
                    crate::backup_cmd::create(&loaded.config, &loaded.config.backup.dir, Some(name), true).await?;
                say!("backup before migrating: {}", taken.path.display());
            }
            up(&db).await
        }
        MigrateAction::Down { steps } => down(&db, steps).await,
        MigrateAction::Status => status(&db).await,
    };
    db.pool.close().await;
    result.map_err(|e| store_failure(&e, database))
}

pub(crate) fn store_failure(e: &StoreError, database: &guard_core::config::DatabaseConfig) -> Failure {
    match e {
        StoreError::InvalidConfig(message) => Failure::Config(message.clone()),
        StoreError::Unavailable(reason) => {
            Failure::Runtime(format!("{reason} (DATABASE_URL = {})", database.url.redacted()))
        }
        other => Failure::Runtime(other.to_string()),
    }
}

async fn up(db: &guard_store::Database) -> Result<(), StoreError> {
    let applied = db.migrations.up().await?;
    if applied.is_empty() {
        say!("schema is up to date");
    }
    let status = db.migrations.status().await?;
    for version in applied {
        let name = status.migrations.iter().find(|m| m.version == version).map_or("", |m| m.description.as_str());
        say!("applied {version:04} {name}");
    }
    say!("schema version {}", status.latest_applied);
    Ok(())
}

async fn down(db: &guard_store::Database, steps: u32) -> Result<(), StoreError> {
    let before = db.migrations.status().await?;
    let reverted = db.migrations.down(steps).await?;
    if reverted.is_empty() {
        say!("nothing to revert: no migration is applied");
    }
    for version in &reverted {
        let name = before.migrations.iter().find(|m| m.version == *version).map_or("", |m| m.description.as_str());
        say!("reverted {version:04} {name}");
    }
    say!("schema version {}", db.migrations.status().await?.latest_applied);
    Ok(())
}

async fn status(db: &guard_store::Database) -> Result<(), StoreError> {
    let status = db.migrations.status().await?;
    say!("{:<8}  {:<24}  {:<9}  APPLIED AT", "VERSION", "NAME", "STATE");
    for m in &status.migrations {
        let (state, at) = match &m.state {
            MigrationState::Applied { at } => ("applied", at.as_str()),
            MigrationState::Pending => ("pending", "-"),
            MigrationState::Modified { at } => ("modified", at.as_str()),
            MigrationState::Unknown { at } => ("unknown", at.as_str()),
        };
        say!("{:<8}  {:<24}  {:<9}  {}", format!("{:04}", m.version), m.description, state, at);
    }
    say!();
    say!(
        "schema version {} (this guard knows up to {}); {} pending",
        status.latest_applied,
        status.latest_known,
        status.pending()
    );
    if let Err(e) = status.check_serveable() {
        say!("warning: {e}");
    }
    Ok(())
}
