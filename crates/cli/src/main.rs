//! The `guard` binary: `serve`, `migrate`, `config check` and `health check`.
//!
//! Exit status: 0 on success, 1 when the work failed (database down, something
//! unhealthy), 2 when the command line or the configuration is wrong.

// Requests allocate many small, short-lived objects (JSON values, Cedar's
// evaluation); mimalloc serves them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prints a line to stdout. A closed pipe (`guard config check | head`) ends the output
/// quietly instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod audit_cmd;
mod backup_cmd;
mod bootstrap;
mod cert_cmd;
mod config_cmd;
mod database;
mod health_cmd;
mod keys_cmd;
mod logging;
mod migrate_cmd;
mod ops_cmd;
mod policy_cmd;
mod progress;
mod security_cmd;
mod serve_cmd;
mod sessions_cmd;
mod tenant_cmd;
mod user_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use guard_core::config::{ConfigError, ConfigLoader, Loaded};

#[derive(Debug, Parser)]
#[command(name = "guard", version, about = "guard: identity and access, in one small binary")]
struct Cli {
    /// Configuration file (TOML). Defaults to ./guard.toml when it exists.
    #[arg(long, global = true, env = "GUARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(serve_cmd::ServeArgs),
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: migrate_cmd::MigrateAction,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: config_cmd::ConfigAction,
    },
    /// Ask a running guard how it is.
    Health {
        #[command(subcommand)]
        action: health_cmd::HealthAction,
    },
    /// Create, list and disable tenants.
    Tenant {
        #[command(subcommand)]
        action: tenant_cmd::TenantAction,
    },
    /// Create, list, disable and delete users; password resets.
    User {
        #[command(subcommand)]
        action: user_cmd::UserAction,
    },
    /// List and rotate token signing keys.
    Keys {
        #[command(subcommand)]
        action: keys_cmd::KeysAction,
    },
    /// Revoke sessions.
    Sessions {
        #[command(subcommand)]
        action: sessions_cmd::SessionsAction,
    },
    /// Brute-force protection: blocked addresses.
    Security {
        #[command(subcommand)]
        action: security_cmd::SecurityAction,
    },
    /// The audit log: query, export, verify, prune.
    Audit {
        #[command(subcommand)]
        action: audit_cmd::AuditAction,
    },
    /// Cedar policies: validate, list, get, put, delete, versions, diff, rollback,
    /// import and export of a folder.
    Policy {
        #[command(subcommand)]
        action: policy_cmd::PolicyAction,
    },
    /// Backups: create, list, verify, prune.
    Backup {
        #[command(subcommand)]
        action: backup_cmd::BackupAction,
    },
    /// Replace the database with a backup (from either backend).
    Restore(backup_cmd::RestoreArgs),
    /// TLS certificates and token-signing keys, with their expiry.
    Cert {
        #[command(subcommand)]
        action: cert_cmd::CertAction,
    },
    /// Delete expired data, apply audit retention, VACUUM/ANALYZE.
    Maintenance {
        #[command(subcommand)]
        action: ops_cmd::MaintenanceAction,
    },
    /// Database checks.
    Db {
        #[command(subcommand)]
        action: ops_cmd::DbAction,
    },
    /// Figures for capacity planning, as exported on /metrics.
    Metrics {
        #[command(subcommand)]
        action: ops_cmd::MetricsAction,
    },
    /// Print the binary's version and the database's schema version.
    Version,
    /// Groups of users, as Cedar sees them (Guard::Group).
    Group {
        #[command(subcommand)]
        action: policy_cmd::GroupAction,
    },
    /// Roles users can hold, as Cedar sees them (Guard::Role).
    Role {
        #[command(subcommand)]
        action: policy_cmd::RoleAction,
    },
}

/// How listing commands print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// What ended a command, and so the exit status.
pub(crate) enum Failure {
    /// Wrong configuration or usage: exit 2.
    Config(String),
    /// The work itself failed: exit 1.
    Runtime(String),
}

impl Failure {
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Config(m) | Failure::Runtime(m) => m,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::Config(e.to_string())
    }
}

pub(crate) fn load_config(
    file: Option<PathBuf>,
    loader: impl FnOnce(ConfigLoader) -> ConfigLoader,
) -> Result<Loaded, Failure> {
    Ok(loader(ConfigLoader::from_process(file)).load()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("guard: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve_cmd::run(cli.config, args).await,
            Command::Migrate { action } => migrate_cmd::run(cli.config, action).await,
            Command::Config { action } => config_cmd::run(cli.config, action),
            Command::Health { action } => health_cmd::run(cli.config, action).await,
            Command::Tenant { action } => tenant_cmd::run(cli.config, action).await,
            Command::User { action } => user_cmd::run(cli.config, action).await,
            Command::Keys { action } => keys_cmd::run(cli.config, action).await,
            Command::Sessions { action } => sessions_cmd::run(cli.config, action).await,
            Command::Security { action } => security_cmd::run(cli.config, action).await,
            Command::Audit { action } => audit_cmd::run(cli.config, action).await,
            Command::Policy { action } => policy_cmd::run(cli.config, action).await,
            Command::Backup { action } => backup_cmd::run(cli.config, action).await,
            Command::Restore(args) => backup_cmd::restore(cli.config, args).await,
            Command::Cert { action } => cert_cmd::run(cli.config, action).await,
            Command::Maintenance { action } => ops_cmd::maintenance(cli.config, action).await,
            Command::Db { action } => ops_cmd::db(cli.config, action).await,
            Command::Metrics { action } => ops_cmd::metrics(cli.config, action).await,
            Command::Version => ops_cmd::version(cli.config).await,
            Command::Group { action } => policy_cmd::run_group(cli.config, action).await,
            Command::Role { action } => policy_cmd::run_role(cli.config, action).await,
        }
    });
    // Tasks still running (connections cut at the drain timeout) are dropped, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            eprintln!("guard: {}", message.trim_end());
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("guard: {}", message.trim_end());
            ExitCode::from(1)
        }
    }
}
