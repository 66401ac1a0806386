//! Resolving each setting through the layers and turning the result into [`Config`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::spec::{SETTINGS, Setting, by_key};
use super::{Config, DatabaseConfig, LogConfig, LogFormat, LogOutput, RedisConfig, ServerConfig, database_kind, parse};
use crate::Secret;

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting as the operator wrote it: an environment variable, a file key or
    /// a flag.
    pub key: String,
    /// The value given, redacted when the setting is secret; empty when not relevant.
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: expected {}", self.key, self.value, self.expected)
    }
}

/// The configuration could not be loaded; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A setting's effective value, for `guard config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSetting {
    pub key: &'static str,
    pub env: &'static str,
    /// Redacted when the setting is secret; `None` when unset.
    pub value: Option<String>,
    pub source: Source,
}

/// A loaded configuration with the provenance of each value.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub settings: Vec<EffectiveSetting>,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
}

/// Gathers the layers and resolves them. The environment is passed in rather than read
/// from the process inside, so tests can give each case its own.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    file: Option<PathBuf>,
    env: HashMap<String, String>,
    flags: Vec<(&'static str, &'static str, String)>,
    /// Ignore ./guard.toml (tests and embedded uses that configure everything).
    skip_default_file: bool,
}

/// Where guard looks for its file when neither `--config` nor GUARD_CONFIG names one.
pub const DEFAULT_FILE: &str = "guard.toml";

impl ConfigLoader {
    /// A loader over the process environment and the file named by `explicit_file`
    /// (`--config`), GUARD_CONFIG, or `./guard.toml` when that exists.
    pub fn from_process(explicit_file: Option<PathBuf>) -> ConfigLoader {
        ConfigLoader::with_env(explicit_file, std::env::vars().collect())
    }

    /// A loader over the given environment.
    pub fn with_env(explicit_file: Option<PathBuf>, env: HashMap<String, String>) -> ConfigLoader {
        let file = explicit_file.or_else(|| env.get("GUARD_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from));
        ConfigLoader { file, env, flags: Vec::new(), skip_default_file: false }
    }

    /// A loader over the given environment only: no ./guard.toml, no GUARD_CONFIG.
    pub fn isolated(env: HashMap<String, String>) -> ConfigLoader {
        ConfigLoader { file: None, env, flags: Vec::new(), skip_default_file: true }
    }

    /// Overrides `key` with a command-line flag's value (the highest layer).
    pub fn flag(mut self, key: &'static str, flag: &'static str, value: String) -> ConfigLoader {
        self.flags.push((key, flag, value));
        self
    }

    /// Resolves every setting and builds the typed configuration.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut problems = Vec::new();
        let (file_values, file) = self.read_file(&mut problems);
        let mut resolved: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
        for setting in SETTINGS {
            if let Some(d) = setting.default {
                resolved.insert(setting.key, (d.to_owned(), Source::Default));
            }
            if let Some(v) = file_values.get(setting.key) {
                resolved.insert(setting.key, v.clone());
            }
            if let Some(v) = self.env_value(setting, &mut problems) {
                resolved.insert(setting.key, v);
            }
        }
        for (key, flag, value) in &self.flags {
            resolved.insert(key, (value.clone(), Source::Flag((*flag).to_owned())));
        }
        let config = Builder { resolved: &resolved, problems: &mut problems }.build();
        match config {
            Some(config) if problems.is_empty() => {
                let settings = SETTINGS
                    .iter()
                    .map(|s| {
                        let (value, source) = match resolved.get(s.key) {
                            Some((v, src)) => (Some(display_value(s, v)), src.clone()),
                            None => (None, Source::Default),
                        };
                        EffectiveSetting { key: s.key, env: s.env, value, source }
                    })
                    .collect();
                Ok(Loaded { config, settings, file })
            }
            _ => Err(ConfigError { problems }),
        }
    }

    fn read_file(
        &self,
        problems: &mut Vec<ConfigProblem>,
    ) -> (HashMap<&'static str, (String, Source)>, Option<PathBuf>) {
        let (path, required) = match &self.file {
            Some(p) => (p.clone(), true),
            None if self.skip_default_file => return (HashMap::new(), None),
            None => (PathBuf::from(DEFAULT_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return (HashMap::new(), None),
            Err(e) => {
                problems.push(ConfigProblem {
                    key: "--config / GUARD_CONFIG".into(),
                    value: path.display().to_string(),
                    expected: format!("a readable TOML file ({e})"),
                });
                return (HashMap::new(), None);
            }
        };
        let values = parse_file(&path, &text, problems);
        (values, Some(path))
    }

    fn env_value(&self, setting: &'static Setting, problems: &mut Vec<ConfigProblem>) -> Option<(String, Source)> {
        let direct = self.env.get(setting.env).filter(|v| !v.is_empty());
        if !setting.secret {
            return direct.map(|v| (v.clone(), Source::Env(setting.env.to_owned())));
        }
        let file_var = file_env_name(setting);
        let from_file = self.env.get(file_var.as_str()).filter(|v| !v.is_empty());
        match (direct, from_file) {
            (Some(_), Some(_)) => {
                problems.push(ConfigProblem {
                    key: format!("{} and {file_var}", setting.env),
                    value: String::new(),
                    expected: "only one of the two to be set".into(),
                });
                None
            }
            (Some(v), None) => Some((v.clone(), Source::Env(setting.env.to_owned()))),
            (None, Some(path)) => {
                read_secret_file(&file_var, Path::new(path), problems).map(|v| (v, Source::Env(file_var.clone())))
            }
            (None, None) => None,
        }
    }
}

/// `DATABASE_URL` -> `DATABASE_URL_FILE`.
fn file_env_name(setting: &Setting) -> String {
    format!("{}_FILE", setting.env)
}

fn read_secret_file(key: &str, path: &Path, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                value: path.display().to_string(),
                expected: format!("a readable file holding the secret ({e})"),
            });
            None
        }
    }
}

fn parse_file(path: &Path, text: &str, problems: &mut Vec<ConfigProblem>) -> HashMap<&'static str, (String, Source)> {
    let mut values = HashMap::new();
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(ConfigProblem {
                key: path.display().to_string(),
                value: String::new(),
                expected: format!("valid TOML: {}", e.message()),
            });
            return values;
        }
    };
    let source = Source::File(path.to_owned());
    for (section, inner) in &table {
        let Some(inner) = inner.as_table() else {
            problems.push(ConfigProblem {
                key: section.clone(),
                value: Secret::new(inner.to_string()).redacted(),
                expected: "a table such as [server], [database], [redis], [cache], [password], [security], [smtp], [bootstrap] or [log]".into(),
            });
            continue;
        };
        for (name, value) in inner {
            let full = format!("{section}.{name}");
            let (setting, from_file) = match by_key(&full) {
                Some(s) => (s, false),
                None => match full.strip_suffix("_file").and_then(by_key).filter(|s| s.secret) {
                    Some(s) => (s, true),
                    None => {
                        // The value of a mistyped key may well be a secret: never echo it.
                        problems.push(ConfigProblem {
                            key: format!("{full} in {}", path.display()),
                            value: Secret::new(value.to_string()).redacted(),
                            expected: format!("a known key; valid keys are: {}", known_keys()),
                        });
                        continue;
                    }
                },
            };
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    problems.push(ConfigProblem {
                        key: format!("{full} in {}", path.display()),
                        value: display_value(setting, &other.to_string()),
                        expected: setting.expected.to_owned(),
                    });
                    continue;
                }
            };
            let text = if from_file {
                match read_secret_file(&full, Path::new(&text), problems) {
                    Some(t) => t,
                    None => continue,
                }
            } else {
                text
            };
            if values.insert(setting.key, (text, source.clone())).is_some() {
                problems.push(ConfigProblem {
                    key: format!("{} and {}_file in {}", setting.key, setting.key, path.display()),
                    value: String::new(),
                    expected: "only one of the two to be set".into(),
                });
            }
        }
    }
    values
}

fn known_keys() -> String {
    SETTINGS.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
}

fn display_value(setting: &Setting, value: &str) -> String {
    if setting.secret { Secret::new(value).redacted() } else { value.to_owned() }
}

/// Turns resolved text values into typed ones, recording a problem per bad value.
struct Builder<'a> {
    resolved: &'a BTreeMap<&'static str, (String, Source)>,
    problems: &'a mut Vec<ConfigProblem>,
}

impl Builder<'_> {
    fn get<T>(&mut self, key: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let setting = by_key(key)?;
        let (text, source) = self.resolved.get(key)?;
        match parse(text) {
            Some(v) => Some(v),
            None => {
                self.problems.push(ConfigProblem {
                    key: describe_key(setting, source),
                    value: display_value(setting, text),
                    expected: setting.expected.to_owned(),
                });
                None
            }
        }
    }

    fn optional<T>(&mut self, key: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ()> {
        if !self.resolved.contains_key(key) {
            return Ok(None);
        }
        self.get(key, parse).map(Some).ok_or(())
    }

    /// TLS_CERT_FILE and TLS_KEY_FILE: both or neither.
    fn tls_files(&mut self) -> Option<Option<super::TlsFiles>> {
        let path = |t: &str| (!t.trim().is_empty()).then(|| PathBuf::from(t.trim()));
        let cert = self.optional("tls.cert_file", path).ok()?;
        let key = self.optional("tls.key_file", path).ok()?;
        match (cert, key) {
            (Some(cert), Some(key)) => Some(Some(super::TlsFiles { cert, key })),
            (None, None) => Some(None),
            (cert, _) => {
                let (given, missing) =
                    if cert.is_some() { ("TLS_CERT_FILE", "TLS_KEY_FILE") } else { ("TLS_KEY_FILE", "TLS_CERT_FILE") };
                self.problems.push(ConfigProblem {
                    key: format!(
                        "{missing} (tls.{})",
                        if missing == "TLS_KEY_FILE" { "key_file" } else { "cert_file" }
                    ),
                    value: String::new(),
                    expected: format!("set, because {given} is set"),
                });
                None
            }
        }
    }

    fn cors(&mut self) -> Option<super::CorsConfig> {
        let origins = self.get("cors.allowed_origins", |t| {
            let items = list(t);
            if items.iter().any(|o| o == "*") {
                return (items.len() == 1).then_some(super::CorsOrigins::Any);
            }
            // As browsers send them: lowercase host, no default port.
            let normalized: Option<Vec<String>> = items
                .iter()
                .map(|o| {
                    valid_origin(o).then(|| url::Url::parse(o).ok().map(|u| u.origin().ascii_serialization())).flatten()
                })
                .collect();
            normalized.map(super::CorsOrigins::Exact)
        });
        let methods = self.get("cors.allowed_methods", |t| {
            let items: Vec<String> = list(t).into_iter().map(|m| m.to_ascii_uppercase()).collect();
            items.iter().all(|m| m.bytes().all(|b| b.is_ascii_alphabetic())).then_some(items)
        });
        let headers = self.get("cors.allowed_headers", |t| {
            let items: Vec<String> = list(t).into_iter().map(|h| h.to_ascii_lowercase()).collect();
            items
                .iter()
                .all(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .then_some(items)
        });
        let allow_credentials = self.get("cors.allow_credentials", parse_bool);
        let max_age = self.get("cors.max_age", parse::duration);
        if origins.as_ref() == Some(&super::CorsOrigins::Any) && allow_credentials == Some(true) {
            self.problems.push(ConfigProblem {
                key: "CORS_ALLOW_CREDENTIALS (cors.allow_credentials)".into(),
                value: "true".into(),
                expected: "false while CORS_ALLOWED_ORIGINS is * (credentials need exact origins)".into(),
            });
            return None;
        }
        Some(super::CorsConfig {
            origins: origins?,
            methods: methods?,
            headers: headers?,
            allow_credentials: allow_credentials?,
            max_age: max_age?,
        })
    }

    fn build(mut self) -> Option<Config> {
        let listen = self.get("server.listen", parse::listen_addr);
        let shutdown_timeout = self.get("server.shutdown_timeout", parse::duration);
        let request_timeout = self.get("server.request_timeout", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let body_limit = self.get("server.body_limit", |t| {
            parse::byte_size(t).filter(|n| (1 << 10..=64 << 20).contains(n)).and_then(|n| usize::try_from(n).ok())
        });
        let public_url = self.get("server.public_url", public_url);
        let trusted_proxies = self.get("server.trusted_proxies", |t| {
            t.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(crate::net::IpNet::parse)
                .collect::<Option<Vec<_>>>()
        });
        let trusted_proxy_header = self.get("server.trusted_proxy_header", crate::net::ForwardedHeader::parse);
        let rule = |t: &str| crate::ratelimit::Rule::parse(t);
        let limits_enabled = self.get("rate_limit.enabled", parse_bool);
        let brute_enabled = self.get("security.brute_force_protection", parse_bool);
        let ip_block_threshold = self.get("security.ip_block_threshold", |t| parse::integer_in(t, 1, 100_000));
        let ip_block_duration = self.get("security.ip_block_duration", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let lockout_delay_after = self.get("security.lockout_delay_after", |t| parse::integer_in(t, 1, 1000));
        let lockout_threshold = self.get("security.lockout_threshold", |t| parse::integer_in(t, 1, 1000));
        let lockout_duration = self.get("security.lockout_duration", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let login_rule = self.get("rate_limit.login", rule);
        let signup_rule = self.get("rate_limit.signup", rule);
        let mfa_rule = self.get("rate_limit.mfa_verify", rule);
        let reset_rule = self.get("rate_limit.password_reset", rule);
        let api_rule = self.get("rate_limit.api", rule);
        let on_shared_failure = self.get("rate_limit.redis_failure", |t| match t.trim() {
            "local" => Some(crate::ratelimit::SharedFailure::Local),
            "refuse" => Some(crate::ratelimit::SharedFailure::Refuse),
            _ => None,
        });
        let audit_retention = self.get("audit.retention", |t| parse::duration(t).filter(|d| d.as_secs() >= 86_400));
        let checkpoint_interval =
            self.get("audit.checkpoint_interval", |t| parse::duration(t).filter(|d| d.as_secs() >= 1));
        let delivery_token = self.optional("audit.delivery_token", |t| (!t.is_empty()).then(|| Secret::new(t)));
        let delivery = match delivery_token {
            Ok(token) => self.optional("audit.delivery_url", |t| crate::audit::Sink::parse(t, token.clone()).ok()),
            Err(()) => Err(()),
        };
        let delivery_start = self.get("audit.delivery_start", crate::audit::DeliveryStart::parse);
        let eval_timeout = self.get("authz.eval_timeout_ms", |t| parse::integer_in(t, 1, 10_000));
        let cache_size = self.get("authz.cache_size", |t| parse::integer_in(t, 0, 10_000_000));
        let entity_cache_size = self.get("authz.entity_cache_size", |t| parse::integer_in(t, 0, 10_000_000));
        let max_policies = self.get("authz.max_policies", |t| parse::integer_in(t, 1, 100_000));
        let max_policy_bytes = self.get("authz.max_policy_bytes", |t| parse::integer_in(t, 1, 104_857_600));
        let refresh_interval =
            self.get("authz.refresh_interval", |t| parse::duration(t).filter(|d| d.as_millis() >= 100));
        let allowed_sample = self
            .get("authz.audit_allowed_sample", |t| t.trim().parse::<f64>().ok().filter(|v| (0.0..=1.0).contains(v)));
        let denied_window = self.get("authz.audit_denied_window", parse::optional_duration);
        let health_check_timeout =
            self.get("server.health_check_timeout", |t| parse::duration(t).filter(|d| !d.is_zero()));

        let header_limit = self.get("server.header_limit", |t| {
            parse::byte_size(t).filter(|n| (1 << 10..=1 << 20).contains(n)).and_then(|n| usize::try_from(n).ok())
        });
        let header_timeout = self.get("server.header_timeout", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let admin_listen = self.optional("server.admin_listen", parse::listen_addr);
        let enable_pprof = self.get("debug.enable_pprof", parse_bool);
        let tls_files = self.tls_files();
        let tls_min_version = self.get("tls.min_version", |t| match t.trim() {
            "1.2" => Some(super::TlsVersion::V1_2),
            "1.3" => Some(super::TlsVersion::V1_3),
            _ => None,
        });
        let tls_reload = self.get("tls.reload_interval", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let hsts_max_age = self.get("http.hsts_max_age", |t| t.trim().parse::<u64>().ok());
        let nosniff = self.get("http.content_type_nosniff", parse_bool);
        let frame_deny = self.get("http.frame_deny", parse_bool);
        let csp = self.get("http.content_security_policy", |t| axum_free_header_value(t).then(|| t.trim().to_owned()));
        let cors = self.cors();
        let backup_dir = self.get("backup.dir", |t| (!t.trim().is_empty()).then(|| PathBuf::from(t.trim())));
        let keep = |t: &str| parse::integer_in(t, 0, 1000);
        let keep_daily = self.get("backup.keep_daily", keep);
        let keep_weekly = self.get("backup.keep_weekly", keep);
        let keep_monthly = self.get("backup.keep_monthly", keep);
        let maintenance_interval = self.get("maintenance.interval", parse::optional_duration);
        let expired_grace = self.get("maintenance.expired_grace", parse::duration);

        let url = self.get("database.url", |t| valid_database_url(t).then(|| Secret::new(t)));
        let max_open_conns = self.get("database.max_open_conns", |t| parse::integer_in(t, 1, 1000));
        let max_idle_conns = self.optional("database.max_idle_conns", |t| parse::integer_in(t, 0, 1000)).ok();
        let conn_max_lifetime = self.get("database.conn_max_lifetime", parse::optional_duration);
        let conn_max_idle_time = self.get("database.conn_max_idle_time", parse::optional_duration);
        let acquire_timeout = self.get("database.acquire_timeout", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let sqlite_busy_timeout = self.get("database.sqlite_busy_timeout", parse::duration);
        let sqlite_synchronous = self.get("database.sqlite_synchronous", super::SqliteSynchronous::parse);
        if let (Some(open), Some(Some(idle))) = (max_open_conns, max_idle_conns)
            && idle > open
        {
            self.problems.push(ConfigProblem {
                key: "DB_MAX_IDLE_CONNS (database.max_idle_conns)".into(),
                value: idle.to_string(),
                expected: format!("at most DB_MAX_OPEN_CONNS ({open})"),
            });
        }

        let redis_url = self.optional("redis.url", |t| valid_redis_url(t).then(|| Secret::new(t)));
        let key_prefix = self.get("redis.key_prefix", |t| {
            (!t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_graphic())).then(|| t.to_owned())
        });
        let connect_timeout = self.get("redis.connect_timeout", |t| parse::duration(t).filter(|d| !d.is_zero()));
        let response_timeout = self.get("redis.response_timeout", |t| parse::duration(t).filter(|d| !d.is_zero()));

        let settings_ttl = self.get("cache.settings_ttl", parse::duration);
        let sessions_ttl = self.get("cache.sessions_ttl", parse::duration);
        let master_key = self.optional("security.master_key", |t| {
            crate::keys::MasterKey::from_base64(t).is_ok().then(|| Secret::new(t.trim()))
        });
        let master_key_path = self.get("security.master_key_path", |t| (!t.is_empty()).then(|| PathBuf::from(t)));
        let signing_algorithm = self.get("security.signing_algorithm", |t| t.parse().ok());
        let signing_key_max_age =
            self.get("security.signing_key_max_age", |t| parse::duration(t).filter(|d| d.as_secs() >= 3600));
        let smtp_url = self.optional("smtp.url", |t| valid_smtp_url(t).then(|| Secret::new(t)));
        let smtp_from = self.get("smtp.from", |t| t.parse::<lettre::message::Mailbox>().is_ok().then(|| t.to_owned()));
        let templates_dir = self.optional("smtp.templates_dir", |t| (!t.is_empty()).then(|| PathBuf::from(t)));
        let admin_email = self
            .optional("bootstrap.admin_email", |t| crate::users::Email::parse(t).ok().map(|e| e.as_str().to_owned()));
        let admin_password = self.optional("bootstrap.admin_password", |t| (!t.is_empty()).then(|| Secret::new(t)));
        let memory_kib = self.get("password.argon2_memory_kib", |t| parse::integer_in(t, 1024, 1 << 20));
        let iterations = self.get("password.argon2_iterations", |t| parse::integer_in(t, 1, 10));
        let parallelism = self.get("password.argon2_parallelism", |t| parse::integer_in(t, 1, 16));

        let level = self.get("log.level", |t| tracing_subscriber::EnvFilter::try_new(t).ok().map(|_| t.to_owned()));
        let format = self.get("log.format", |t| match t.to_ascii_lowercase().as_str() {
            "json" => Some(LogFormat::Json),
            "pretty" | "text" => Some(LogFormat::Pretty),
            _ => None,
        });
        let output = self.get("log.output", |t| match t {
            "" => None,
            "stdout" => Some(LogOutput::Stdout),
            "stderr" => Some(LogOutput::Stderr),
            path => Some(LogOutput::File(PathBuf::from(path))),
        });

        Some(Config {
            server: ServerConfig {
                listen: listen?,
                public_url: public_url?,
                shutdown_timeout: shutdown_timeout?,
                request_timeout: request_timeout?,
                body_limit: body_limit?,
                health_check_timeout: health_check_timeout?,
                trusted_proxies: trusted_proxies?,
                trusted_proxy_header: trusted_proxy_header?,
                header_limit: header_limit?,
                header_timeout: header_timeout?,
            },
            tls: super::TlsConfig { files: tls_files?, min_version: tls_min_version?, reload_interval: tls_reload? },
            http: super::HttpSecurityConfig {
                hsts_max_age: hsts_max_age?,
                content_type_nosniff: nosniff?,
                frame_deny: frame_deny?,
                content_security_policy: csp?,
            },
            cors: cors?,
            backup: super::BackupConfig {
                dir: backup_dir?,
                keep_daily: keep_daily?,
                keep_weekly: keep_weekly?,
                keep_monthly: keep_monthly?,
            },
            maintenance: super::MaintenanceConfig { interval: maintenance_interval?, expired_grace: expired_grace? },
            debug: super::DebugConfig { enable_pprof: enable_pprof?, admin_listen: admin_listen.ok()? },
            database: DatabaseConfig {
                url: url?,
                max_open_conns: max_open_conns?,
                // Unset: keep every open connection when it goes idle.
                max_idle_conns: max_idle_conns?.or(max_open_conns)?,
                conn_max_lifetime: conn_max_lifetime?,
                conn_max_idle_time: conn_max_idle_time?,
                acquire_timeout: acquire_timeout?,
                sqlite_busy_timeout: sqlite_busy_timeout?,
                sqlite_synchronous: sqlite_synchronous?,
            },
            redis: RedisConfig {
                url: redis_url.ok()?,
                key_prefix: key_prefix?,
                connect_timeout: connect_timeout?,
                response_timeout: response_timeout?,
            },
            password: super::PasswordConfig {
                hash: crate::passwords::HashParams {
                    memory_kib: memory_kib?,
                    iterations: iterations?,
                    parallelism: parallelism?,
                },
            },
            cache: super::CacheConfig { settings_ttl: settings_ttl?, sessions_ttl: sessions_ttl? },
            security: super::SecurityConfig {
                master_key: master_key.ok()?,
                master_key_path: master_key_path?,
                signing_algorithm: signing_algorithm?,
                signing_key_max_age: signing_key_max_age?,
            },
            smtp: super::SmtpConfig { url: smtp_url.ok()?, from: smtp_from?, templates_dir: templates_dir.ok()? },
            bootstrap: super::BootstrapConfig { admin_email: admin_email.ok()?, admin_password: admin_password.ok()? },
            log: LogConfig { level: level?, format: format?, output: output? },
            rate_limit: crate::ratelimit::RateLimitConfig {
                enabled: limits_enabled?,
                login: login_rule?,
                signup: signup_rule?,
                mfa_verify: mfa_rule?,
                password_reset: reset_rule?,
                api: api_rule?,
                on_shared_failure: on_shared_failure?,
            },
            audit: super::AuditConfig {
                retention: audit_retention?,
                checkpoint_interval: checkpoint_interval?,
                delivery: delivery.ok()?,
                delivery_start: delivery_start?,
            },
            authz: super::AuthzConfig {
                eval_timeout: std::time::Duration::from_millis(u64::from(eval_timeout?)),
                cache_size: usize::try_from(cache_size?).unwrap_or(usize::MAX),
                entity_cache_size: usize::try_from(entity_cache_size?).unwrap_or(usize::MAX),
                max_policies: usize::try_from(max_policies?).unwrap_or(usize::MAX),
                max_policy_bytes: usize::try_from(max_policy_bytes?).unwrap_or(usize::MAX),
                refresh_interval: refresh_interval?,
                audit_allowed_sample: allowed_sample?,
                audit_denied_window: denied_window?.unwrap_or_default(),
            },
            brute_force: crate::security::BruteForceConfig {
                enabled: brute_enabled?,
                ip_block_threshold: ip_block_threshold?,
                ip_block_duration: ip_block_duration?,
                lockout_delay_after: lockout_delay_after?,
                lockout_threshold: lockout_threshold?,
                lockout_duration: lockout_duration?,
            },
        })
    }
}

/// Visible ASCII and spaces only, as a header field value must be.
fn axum_free_header_value(text: &str) -> bool {
    !text.trim().is_empty() && text.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// A comma-separated list, trimmed, without empty items.
fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `scheme://host[:port]` and nothing more, as browsers send in Origin.
fn valid_origin(origin: &str) -> bool {
    match url::Url::parse(origin) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && !origin.ends_with('/')
        }
        Err(_) => false,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn valid_database_url(text: &str) -> bool {
    match database_kind(text) {
        Some(super::DatabaseKind::Sqlite) => true,
        Some(super::DatabaseKind::Postgres) => url::Url::parse(text).is_ok_and(|u| u.has_host()),
        None => false,
    }
}

fn public_url(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    let ok =
        matches!(url.scheme(), "http" | "https") && url.has_host() && url.query().is_none() && url.fragment().is_none();
    ok.then(|| text.trim_end_matches('/').to_owned())
}

fn valid_smtp_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "smtp" | "smtps") && u.has_host())
}

fn valid_redis_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| match u.scheme() {
        "redis" | "rediss" => u.has_host(),
        "unix" | "redis+unix" => !u.path().is_empty(),
        _ => false,
    })
}

fn describe_key(setting: &Setting, source: &Source) -> String {
    match source {
        Source::Env(name) => format!("{name} (environment)"),
        Source::File(path) => format!("{} in {}", setting.key, path.display()),
        Source::Flag(flag) => flag.clone(),
        Source::Default => format!("{} (default)", setting.key),
    }
}
