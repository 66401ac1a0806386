//! Typed, layered configuration: built-in defaults, then guard.toml, then the
//! environment, then command-line flags. Unknown keys are rejected, every value is
//! checked, and an error names the setting, the value given and what is expected.

mod load;
pub mod parse;
pub mod spec;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{ConfigError, ConfigLoader, ConfigProblem, EffectiveSetting, Loaded, Source};

use crate::Secret;

/// The whole effective configuration of one guard process.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub password: PasswordConfig,
    pub cache: CacheConfig,
    pub security: SecurityConfig,
    pub smtp: SmtpConfig,
    pub bootstrap: BootstrapConfig,
    pub log: LogConfig,
    pub rate_limit: crate::ratelimit::RateLimitConfig,
    pub brute_force: crate::security::BruteForceConfig,
    pub audit: AuditConfig,
    pub authz: AuthzConfig,
    pub tls: TlsConfig,
    pub http: HttpSecurityConfig,
    pub cors: CorsConfig,
    pub backup: BackupConfig,
    pub maintenance: MaintenanceConfig,
    pub debug: DebugConfig,
}

/// HTTPS served by guard itself.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Both files, or neither (plain HTTP).
    pub files: Option<TlsFiles>,
    pub min_version: TlsVersion,
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// Security header fields of every response.
#[derive(Debug, Clone)]
pub struct HttpSecurityConfig {
    /// 0: no Strict-Transport-Security.
    pub hsts_max_age: u64,
    pub content_type_nosniff: bool,
    pub frame_deny: bool,
    pub content_security_policy: String,
}

/// Which origins browsers may call guard from.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    pub origins: CorsOrigins,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Exact origins (scheme://host[:port]); empty means no cross-origin access.
    Exact(Vec<String>),
    /// `*`, only when asked for, and never with credentials.
    Any,
}

/// Backups.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub dir: PathBuf,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

/// Scheduled maintenance.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// None: `serve` never runs maintenance by itself.
    pub interval: Option<Duration>,
    pub expired_grace: Duration,
}

/// Debugging endpoints.
#[derive(Debug, Clone)]
pub struct DebugConfig {
    pub enable_pprof: bool,
    pub admin_listen: Option<SocketAddr>,
}

/// Authorization decisions.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    pub eval_timeout: Duration,
    pub cache_size: usize,
    /// Stored entities kept in memory, over all tenants.
    pub entity_cache_size: usize,
    /// Most policies per tenant.
    pub max_policies: usize,
    /// Most bytes of policy text per tenant.
    pub max_policy_bytes: usize,
    pub refresh_interval: Duration,
    pub audit_allowed_sample: f64,
    pub audit_denied_window: Duration,
}

/// The audit log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// How long events are kept unless a tenant says otherwise (at least a day).
    pub retention: Duration,
    /// Longest time between checkpoints of a growing chain.
    pub checkpoint_interval: Duration,
    /// Where sealed events are delivered, if anywhere.
    pub delivery: Option<crate::audit::Sink>,
    /// Where delivery to a new sink starts.
    pub delivery_start: crate::audit::DeliveryStart,
}

/// Secrets at rest and token signing.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// The master key given directly (base64 of 32 bytes, already checked).
    pub master_key: Option<Secret>,
    /// Where the master key lives when not given directly.
    pub master_key_path: PathBuf,
    /// Algorithm of newly created signing keys.
    pub signing_algorithm: crate::keys::SigningAlgorithm,
    /// When an active signing key is due for rotation.
    pub signing_key_max_age: Duration,
}

/// Outgoing email.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub url: Option<Secret>,
    pub from: String,
    pub templates_dir: Option<PathBuf>,
}

/// The first administrator, created on first start.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
}

/// Per-process caches.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// How long a tenant (with its settings) is reused before it is read again.
    pub settings_ttl: Duration,
    /// How long a session (with its user) is reused before it is read again.
    pub sessions_ttl: Duration,
}

/// Password hashing.
#[derive(Debug, Clone)]
pub struct PasswordConfig {
    pub hash: crate::passwords::HashParams,
}

/// The HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL clients use, without a trailing slash.
    pub public_url: String,
    pub shutdown_timeout: Duration,
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub health_check_timeout: Duration,
    /// Proxies whose forwarding headers name the client.
    pub trusted_proxies: Vec<crate::net::IpNet>,
    pub trusted_proxy_header: crate::net::ForwardedHeader,
    pub header_limit: usize,
    pub header_timeout: Duration,
}

/// The database and its connection pool.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_open_conns: u32,
    pub max_idle_conns: u32,
    pub conn_max_lifetime: Option<Duration>,
    pub conn_max_idle_time: Option<Duration>,
    pub acquire_timeout: Duration,
    pub sqlite_busy_timeout: Duration,
    /// SQLite only: when a commit reaches the disk.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// SQLite's `PRAGMA synchronous` in WAL mode (`SQLITE_SYNCHRONOUS`). `off` is not
/// offered: with it a power cut can corrupt the database, not only lose writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// The write-ahead log is flushed at each WAL checkpoint, not at each commit: a
    /// power cut can lose the writes acknowledged since the last flush. guard still
    /// commits audit sealing and checkpoints with a flush (which covers every earlier
    /// commit), so nothing is signed or delivered that a power cut can take back.
    Normal,
    /// Each commit flushes the log before it is acknowledged (the default): no
    /// acknowledged write is lost.
    Full,
    /// As `Full`; SQLite's extra directory flush applies to rollback journals only, so
    /// in WAL mode it costs the same as `Full`.
    Extra,
}

impl SqliteSynchronous {
    /// `normal`, `full` or `extra`, in any case.
    pub fn parse(text: &str) -> Option<SqliteSynchronous> {
        match text.trim().to_ascii_lowercase().as_str() {
            "normal" => Some(SqliteSynchronous::Normal),
            "full" => Some(SqliteSynchronous::Full),
            "extra" => Some(SqliteSynchronous::Extra),
            _ => None,
        }
    }

    /// The level's name, as `SQLITE_SYNCHRONOUS` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "normal",
            SqliteSynchronous::Full => "full",
            SqliteSynchronous::Extra => "extra",
        }
    }

    /// Whether each commit flushes the log (`full`, `extra`).
    pub fn flushes_every_commit(self) -> bool {
        self != SqliteSynchronous::Normal
    }
}

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseConfig {
    /// The engine named by the URL's scheme.
    pub fn kind(&self) -> DatabaseKind {
        database_kind(self.url.expose()).unwrap_or(DatabaseKind::Sqlite)
    }
}

fn database_kind(url: &str) -> Option<DatabaseKind> {
    if url.starts_with("sqlite:") {
        Some(DatabaseKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(DatabaseKind::Postgres)
    } else {
        None
    }
}

/// Optional Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Option<Secret>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `EnvFilter` directive, already checked to parse.
    pub level: String,
    pub format: LogFormat,
    pub output: LogOutput,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[cfg(test)]
mod tests;
