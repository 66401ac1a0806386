//! The table of every setting: its key in guard.toml, its environment variable, its
//! default and what a valid value looks like. `config check` and the README's
//! configuration reference are both generated from the same facts.

/// One configuration setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `section.name`, as written in guard.toml.
    pub key: &'static str,
    /// The environment variable that overrides the file.
    pub env: &'static str,
    /// Built-in default; `None` means unset unless configured.
    pub default: Option<&'static str>,
    /// What a valid value looks like, used in error messages.
    pub expected: &'static str,
    /// Secrets are redacted when printed and may be read from a file
    /// (`<key>_file` in guard.toml, `<ENV>_FILE` in the environment).
    pub secret: bool,
    /// One line for the configuration reference.
    pub help: &'static str,
}

const fn s(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    expected: &'static str,
    help: &'static str,
) -> Setting {
    Setting { key, env, default, expected, secret: false, help }
}

const fn secret(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    expected: &'static str,
    help: &'static str,
) -> Setting {
    Setting { key, env, default, expected, secret: true, help }
}

const DURATION: &str = "a duration such as 30s, 5m or 1h, or a number of seconds";
const RULE: &str = "LIMIT/WINDOW[,burst=N], such as 10/1m,burst=5";
const OPTIONAL_DURATION: &str = "a duration such as 30s, 5m or 1h, a number of seconds, or 0 for no limit";

/// Every setting guard knows. A key not listed here is an error in guard.toml.
pub const SETTINGS: &[Setting] = &[
    s(
        "server.listen",
        "GUARD_LISTEN",
        Some("0.0.0.0:8080"),
        "a socket address such as 0.0.0.0:8080 or [::]:8080",
        "Address the HTTP server listens on.",
    ),
    s(
        "server.shutdown_timeout",
        "GUARD_SHUTDOWN_TIMEOUT",
        Some("30s"),
        DURATION,
        "How long a graceful shutdown waits for in-flight requests before closing them.",
    ),
    s(
        "server.request_timeout",
        "GUARD_REQUEST_TIMEOUT",
        Some("30s"),
        DURATION,
        "A request still running after this long is answered 408.",
    ),
    s(
        "server.body_limit",
        "GUARD_BODY_LIMIT",
        Some("1MiB"),
        "a size such as 1048576, 512KiB or 1MiB (at least 1KiB, at most 64MiB)",
        "Largest request body accepted; larger bodies get 413.",
    ),
    s(
        "server.health_check_timeout",
        "GUARD_HEALTH_CHECK_TIMEOUT",
        Some("2s"),
        DURATION,
        "Time limit for each dependency check behind /health/*.",
    ),
    s(
        "server.trusted_proxies",
        "GUARD_TRUSTED_PROXIES",
        Some(""),
        "addresses or ranges, comma-separated, such as 10.0.0.0/8, 192.0.2.1",
        "Proxies whose X-Forwarded-For / Forwarded headers name the client. Empty: the TCP peer is the client.",
    ),
    s(
        "server.trusted_proxy_header",
        "GUARD_TRUSTED_PROXY_HEADER",
        Some("x-forwarded-for"),
        "x-forwarded-for or forwarded",
        "The header the trusted proxies write the client's address to; the other is never read.",
    ),
    s(
        "server.public_url",
        "GUARD_PUBLIC_URL",
        Some("http://localhost:8080"),
        "an http:// or https:// URL without query or fragment",
        "Where clients reach guard: the base of token issuers and of links in emails.",
    ),
    secret(
        "database.url",
        "DATABASE_URL",
        Some("sqlite://./data/guard.db"),
        "a sqlite:// URL, or a postgres:// URL with a host",
        "Database to use: SQLite (created on first start) or PostgreSQL.",
    ),
    s(
        "database.max_open_conns",
        "DB_MAX_OPEN_CONNS",
        Some("10"),
        "an integer from 1 to 1000",
        "Most connections the pool opens.",
    ),
    s(
        "database.max_idle_conns",
        "DB_MAX_IDLE_CONNS",
        None,
        "an integer from 0 to 1000, at most max_open_conns",
        "Most idle connections the pool keeps; the rest are closed. Unset: the same as max_open_conns.",
    ),
    s(
        "database.conn_max_lifetime",
        "DB_CONN_MAX_LIFETIME",
        Some("30m"),
        OPTIONAL_DURATION,
        "Connections older than this are closed and replaced.",
    ),
    s(
        "database.conn_max_idle_time",
        "DB_CONN_MAX_IDLE_TIME",
        Some("10m"),
        OPTIONAL_DURATION,
        "Connections idle for longer than this are closed.",
    ),
    s(
        "database.acquire_timeout",
        "DB_ACQUIRE_TIMEOUT",
        Some("5s"),
        DURATION,
        "How long a request waits for a free connection before failing.",
    ),
    s(
        "database.sqlite_busy_timeout",
        "DB_SQLITE_BUSY_TIMEOUT",
        Some("5s"),
        DURATION,
        "SQLite only: how long a write waits for a lock held by another connection.",
    ),
    secret(
        "redis.url",
        "REDIS_URL",
        None,
        "a redis://, rediss:// or unix:// URL",
        "Redis for state shared between replicas; optional.",
    ),
    s(
        "redis.key_prefix",
        "REDIS_KEY_PREFIX",
        Some("guard:"),
        "1 to 64 printable characters without spaces",
        "Prefix of every key guard writes to Redis.",
    ),
    s(
        "redis.connect_timeout",
        "REDIS_CONNECT_TIMEOUT",
        Some("2s"),
        DURATION,
        "Time limit for opening a Redis connection.",
    ),
    s("redis.response_timeout", "REDIS_RESPONSE_TIMEOUT", Some("1s"), DURATION, "Time limit for one Redis command."),
    s(
        "cache.settings_ttl",
        "CACHE_TTL_SETTINGS",
        Some("30s"),
        DURATION,
        "How long a tenant and its settings are cached per process; 0 disables the cache.",
    ),
    s(
        "cache.sessions_ttl",
        "CACHE_TTL_SESSIONS",
        Some("30s"),
        DURATION,
        "How long a session is cached (in memory, or in Redis when configured); 0 disables the cache.",
    ),
    secret(
        "security.master_key",
        "GUARD_MASTER_KEY",
        None,
        "32 random bytes, base64-encoded (openssl rand -base64 32)",
        "Key encrypting secrets at rest (signing keys). Unset: read from master_key_path.",
    ),
    s(
        "security.master_key_path",
        "GUARD_MASTER_KEY_PATH",
        Some("./data/master.key"),
        "a file path",
        "File holding the master key when GUARD_MASTER_KEY is unset; created (0600) on first start with SQLite.",
    ),
    s(
        "security.signing_algorithm",
        "GUARD_SIGNING_ALGORITHM",
        Some("EdDSA"),
        "EdDSA or ES256",
        "Algorithm of new token signing keys.",
    ),
    secret(
        "smtp.url",
        "SMTP_URL",
        None,
        "an smtp:// or smtps:// URL (smtp://user:pass@host:587?tls=required)",
        "SMTP server sending guard's emails. Unset: emails wait in the outbox.",
    ),
    s(
        "smtp.from",
        "SMTP_FROM",
        Some("guard <no-reply@localhost>"),
        "a mailbox such as guard <no-reply@example.com>",
        "Sender of guard's emails.",
    ),
    s(
        "smtp.templates_dir",
        "GUARD_EMAIL_TEMPLATES_DIR",
        None,
        "a directory path",
        "Directory of email templates overriding the built-in ones (NAME.subject, NAME.txt, NAME.html).",
    ),
    s(
        "bootstrap.admin_email",
        "GUARD_BOOTSTRAP_ADMIN_EMAIL",
        None,
        "an email address",
        "First administrator, created in the default tenant when it has no users yet.",
    ),
    secret(
        "bootstrap.admin_password",
        "GUARD_BOOTSTRAP_ADMIN_PASSWORD",
        None,
        "a password meeting the default tenant's policy",
        "Password of the first administrator. Unset: a one-time password is printed once.",
    ),
    s(
        "password.argon2_memory_kib",
        "GUARD_ARGON2_MEMORY_KIB",
        Some("19456"),
        "an integer from 1024 to 1048576",
        "Argon2id memory cost of new password hashes, in KiB (OWASP: 19456).",
    ),
    s(
        "password.argon2_iterations",
        "GUARD_ARGON2_ITERATIONS",
        Some("2"),
        "an integer from 1 to 10",
        "Argon2id time cost of new password hashes (OWASP: 2).",
    ),
    s(
        "password.argon2_parallelism",
        "GUARD_ARGON2_PARALLELISM",
        Some("1"),
        "an integer from 1 to 16",
        "Argon2id lanes of new password hashes (OWASP: 1). Older hashes are re-made at the next sign-in.",
    ),
    s(
        "log.level",
        "LOG_LEVEL",
        Some("info"),
        "a level (error, warn, info, debug, trace) or a filter such as info,guard=debug",
        "Which log lines are written.",
    ),
    s(
        "log.format",
        "LOG_FORMAT",
        Some("json"),
        "json or pretty",
        "json writes one object per line; pretty is for people.",
    ),
    s("log.output", "LOG_OUTPUT", Some("stdout"), "stdout, stderr or a file path", "Where log lines go."),
    s(
        "security.brute_force_protection",
        "BRUTE_FORCE_PROTECTION",
        Some("true"),
        "true or false",
        "Whether failed sign-ins block addresses and lock accounts.",
    ),
    s(
        "security.ip_block_threshold",
        "IP_BLOCK_THRESHOLD",
        Some("10"),
        "an integer from 1 to 100000",
        "More failed sign-ins than this from one address within a minute block the address.",
    ),
    s(
        "security.ip_block_duration",
        "IP_BLOCK_DURATION",
        Some("15m"),
        DURATION,
        "How long a blocked address stays blocked (unless unblocked).",
    ),
    s(
        "security.lockout_delay_after",
        "LOCKOUT_DELAY_AFTER",
        Some("3"),
        "an integer from 1 to 1000",
        "After this many consecutive failed sign-ins an account waits 1 s, 2 s, 4 s … (at most 60 s) between tries.",
    ),
    s(
        "security.lockout_threshold",
        "LOCKOUT_THRESHOLD",
        Some("10"),
        "an integer from 1 to 1000",
        "This many consecutive failed sign-ins lock the account (until the lockout ends, a password reset or an unlock).",
    ),
    s(
        "security.lockout_duration",
        "LOCKOUT_DURATION",
        Some("15m"),
        DURATION,
        "How long a locked account stays locked.",
    ),
    s(
        "audit.retention",
        "AUDIT_RETENTION",
        Some("90d"),
        "a duration of at least one day, such as 90d or 365d",
        "How long audit events are kept; a tenant's audit_retention_days setting overrides it.",
    ),
    s(
        "audit.checkpoint_interval",
        "AUDIT_CHECKPOINT_INTERVAL",
        Some("1m"),
        "a duration of at least 1s, such as 1m",
        "At most this long between signed checkpoints of a growing audit chain.",
    ),
    secret(
        "audit.delivery_url",
        "AUDIT_DELIVERY_URL",
        None,
        "syslog+tcp://HOST:PORT, or an https:// URL (http:// only to a loopback address)",
        "Sends every sealed audit event there, at least once (RFC 5424 syslog over TCP, or JSON POSTed to a webhook).",
    ),
    secret("audit.delivery_token", "AUDIT_DELIVERY_TOKEN", None, "any text", "Bearer token for the audit webhook."),
    s(
        "authz.eval_timeout_ms",
        "EVAL_TIMEOUT_MS",
        Some("100"),
        "milliseconds, 1 to 10000",
        "Time limit for one authorization decision (a batch shares one limit); a decision over it is a deny.",
    ),
    s(
        "authz.cache_size",
        "CACHE_SIZE",
        Some("10000"),
        "a number of entries, 0 to 10000000 (0 disables the cache)",
        "Authorization decisions cached per process; any policy or entity change invalidates them.",
    ),
    s(
        "authz.refresh_interval",
        "AUTHZ_REFRESH_INTERVAL",
        Some("1s"),
        "a duration of at least 100ms, such as 1s",
        "How often each process looks for policy and entity changes made by other processes.",
    ),
    s(
        "authz.audit_allowed_sample",
        "AUTHZ_AUDIT_ALLOWED_SAMPLE",
        Some("0"),
        "a number from 0 to 1",
        "Share of allowed decisions recorded in the audit log (denied ones always are).",
    ),
    s(
        "authz.audit_denied_window",
        "AUTHZ_AUDIT_DENIED_WINDOW",
        Some("10s"),
        OPTIONAL_DURATION,
        "Repeats of one denial (same principal, action, resource and caller) within this window are counted into its next audit event instead of each being recorded; 0 records every one.",
    ),
    s("rate_limit.enabled", "RATE_LIMIT_ENABLED", Some("true"), "true or false", "Whether rate limits are enforced."),
    s(
        "rate_limit.login",
        "RATE_LIMIT_LOGIN",
        Some("10/1m,burst=5"),
        RULE,
        "Sign-ins (password, passkey), per client address and per account.",
    ),
    s("rate_limit.signup", "RATE_LIMIT_SIGNUP", Some("5/1h,burst=2"), RULE, "Sign-ups, per client address."),
    s(
        "rate_limit.mfa_verify",
        "RATE_LIMIT_MFA_VERIFY",
        Some("10/1m,burst=3"),
        RULE,
        "Second steps of sign-ins (codes, security keys), per client address.",
    ),
    s(
        "rate_limit.password_reset",
        "RATE_LIMIT_PASSWORD_RESET",
        Some("3/1h,burst=1"),
        RULE,
        "Password reset requests, per client address and per account.",
    ),
    s("rate_limit.api", "RATE_LIMIT_API", Some("6000/1m,burst=1000"), RULE, "Every request, per client address."),
    s(
        "rate_limit.redis_failure",
        "RATE_LIMIT_REDIS_FAILURE",
        Some("local"),
        "local or refuse",
        "When Redis does not answer: limit in this process alone (local) or refuse requests with 503 (refuse).",
    ),
];

/// The setting with this guard.toml key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}
