//! `guard serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use guard_api::metrics::Metrics;
use guard_api::tls::CertificateStore;
use guard_api::{AppState, ServeOptions, router};
use guard_core::email::SmtpMailer;
use guard_store::redis::Redis;

use crate::database::{Migrations, prepare};
use crate::{Failure, load_config, logging};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (overrides GUARD_LISTEN and server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Do not apply pending migrations at start; refuse to start if any are pending.
    #[arg(long)]
    no_migrate: bool,
}

/// Longest wait for the database pool to close at exit.
const POOL_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn run(file: Option<PathBuf>, args: ServeArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let loaded = load_config(file, |loader| match args.listen {
        Some(listen) => loader.flag("server.listen", "--listen", listen),
        None => loader,
    })?;
    let config = loaded.config;
    let _log = logging::init(&config.log, true)?;
    logging::log_panics();
    let metrics = Metrics::install().map_err(|e| Failure::Runtime(format!("cannot install metrics: {e}")))?;
    // Before anything else starts: a certificate guard cannot serve is a configuration
    // error. After the metrics recorder, which records its expiry.
    let certificates =
        config.tls.files.as_ref().map(CertificateStore::open).transpose().map_err(Failure::Config)?.map(Arc::new);
    let tls = certificates
        .as_ref()
        .map(|store| guard_api::tls::server_config(store.clone(), config.tls.min_version))
        .transpose()
        .map_err(Failure::Config)?;
    let options = ServeOptions::new(&config.server, tls);

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let admin_listener = match config.debug.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Failure::Runtime(format!("cannot listen on ADMIN_LISTEN {addr}: {e}")))?,
        ),
        None => None,
    };

    let redis = Redis::open(&config.redis).map_err(|e| {
        let url = config.redis.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
        Failure::Config(format!("REDIS_URL = {url:?}: expected a Redis URL the driver accepts ({e})"))
    })?;
    let migrations = if args.no_migrate { Migrations::Require } else { Migrations::Apply };
    let db = prepare(&config, migrations).await?;

    let drain_timeout = config.server.shutdown_timeout;
    let state = AppState::new(config, db.clone(), redis, metrics, started).map_err(Failure::Config)?;
    let default_tenant = state
        .tenants
        .find(guard_core::tenants::TenantSlug::DEFAULT)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot read the default tenant: {e}")))?;
    state.keys.check_master_key(&[default_tenant.id]).await.map_err(|e| Failure::Config(e.to_string()))?;
    crate::bootstrap::first_admin(&state.config, &state.users).await?;
    // From here until it stops, this process says it uses the database: `guard
    // restore` refuses to replace it meanwhile. (Taken after the checks above, so that
    // a start that fails them leaves no lease behind.)
    let serving = ServeLease::take(&db).await?;
    let (stop_background, background_stop) = tokio::sync::watch::channel(false);
    let mut background = match start_background(&state, background_stop.clone()).await {
        Ok(tasks) => tasks,
        Err(e) => {
            serving.release().await;
            return Err(e);
        }
    };
    background.push(tokio::spawn(serving.clone().renew(background_stop.clone())));
    if let (Some(store), Some(files)) = (certificates, state.config.tls.files.clone()) {
        let interval = state.config.tls.reload_interval;
        background.push(tokio::spawn(guard_api::tls::watch(store, files, interval, background_stop.clone())));
    } else {
        // SIGHUP's default action ends the process; without TLS it reloads nothing.
        background.push(tokio::spawn(ignore_hangups(background_stop.clone())));
    }
    if let Some(admin) = admin_listener {
        // Plain HTTP, no sign-in: bind ADMIN_LISTEN to an address only operators reach.
        let admin_addr = admin.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
        tracing::info!(listen = %admin_addr, pprof = state.config.debug.enable_pprof, "administrators' listener is ready");
        let ip = admin_addr.ip();
        let private = ip.is_loopback()
            || match ip {
                std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
                std::net::IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
            };
        if !private {
            tracing::warn!(
                listen = %admin_addr,
                "ADMIN_LISTEN is not a loopback or private address: /metrics and /debug answer there without sign-in"
            );
        }
        let app = guard_api::with_middleware(guard_api::admin_listener_routes(), state.clone());
        let admin_options = ServeOptions::new(&state.config.server, None);
        let mut stop = background_stop.clone();
        let stopped = async move {
            let _ = stop.changed().await;
        };
        let lifecycle = guard_api::Lifecycle::default();
        background.push(tokio::spawn(async move {
            if let Err(e) = guard_api::serve(admin, app, stopped, POOL_CLOSE_TIMEOUT, lifecycle, admin_options).await {
                tracing::warn!(error = %e, "the administrators' listener stopped");
            }
        }));
    }
    let lifecycle = state.lifecycle.clone();
    let listen = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
    tracing::info!(
        listen = %listen,
        scheme = options.scheme(),
        backend = db.pool.backend().as_str(),
        version = state.build.version,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "guard is ready"
    );
    let served = guard_api::serve(listener, router(state), shutdown_signal(), drain_timeout, lifecycle, options).await;
    let _ = stop_background.send(true);
    for task in background {
        let _ = tokio::time::timeout(POOL_CLOSE_TIMEOUT, task).await;
    }
    // A restore may go on at once, rather than when the lease runs out.
    let _ = tokio::time::timeout(POOL_CLOSE_TIMEOUT, serving.release()).await;
    // Connections still checked out by requests cut at the drain timeout are not waited
    // for beyond this.
    if tokio::time::timeout(POOL_CLOSE_TIMEOUT, db.pool.close()).await.is_err() {
        tracing::warn!("database connections still in use at exit; closing them");
    }
    tracing::info!("guard stopped");
    served.map_err(|e| Failure::Runtime(format!("server error: {e}")))
}

/// How often guard_active_sessions, guard_users, guard_mfa_enrolled_users and
/// guard_blocked_ips are recounted, and expired sign-in state is deleted.
const SESSION_GAUGE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// How often the audit sealer looks for records other processes wrote.
const AUDIT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often audit retention runs.
const AUDIT_RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The outbox sender (when SMTP_URL is set) and the session gauge, stopping when
/// `stop` turns true.
async fn start_background(
    state: &AppState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Failure> {
    let mut tasks = Vec::new();
    let outbox = state.accounts.outbox().clone();
    match &state.config.smtp.url {
        Some(url) => {
            let mailer = SmtpMailer::new(url.expose(), &state.config.smtp.from).map_err(Failure::Config)?;
            tasks.push(tokio::spawn(outbox.run(mailer, stop.clone())));
        }
        None => {
            let pending = outbox.pending().await.unwrap_or(0);
            tracing::warn!(pending, "SMTP_URL is not set: emails wait in the outbox until it is");
        }
    }
    // Records other replicas write are sealed within AUDIT_POLL; this process's at once.
    tasks.push(tokio::spawn(state.audit.clone().run_sealer(AUDIT_POLL, stop.clone())));
    tasks.push(tokio::spawn(state.authz.clone().run_refresher(state.config.authz.refresh_interval, stop.clone())));
    if let Some(sink) = &state.config.audit.delivery {
        let deliverer =
            guard_core::audit::Deliverer::new(state.audit.clone(), sink.clone(), state.config.audit.delivery_start)
                .map_err(Failure::Config)?;
        tracing::info!(sink = %sink.name(), "audit events are delivered to a sink");
        tasks.push(tokio::spawn(deliverer.run(stop.clone())));
    }
    let (tenants, audit, audit_config) = (state.tenants.clone(), state.audit.clone(), state.config.audit.clone());
    let (keys, key_max_age) = (state.keys.clone(), state.config.security.signing_key_max_age);
    let mut retention_stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            match crate::cert_cmd::signing_keys(&tenants, &keys, key_max_age).await {
                Ok(found) => crate::cert_cmd::export_key_expiry(&found),
                Err(e) => tracing::warn!(error = %e, "cannot list signing keys for their expiry"),
            }
            match guard_api::apply_audit_retention(&tenants, &audit, &audit_config).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "audit events past their retention deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot apply audit retention"),
            }
            tokio::select! {
                _ = tokio::time::sleep(AUDIT_RETENTION_EVERY) => {}
                _ = retention_stop.changed() => return,
            }
        }
    }));
    if let Some(every) = state.config.maintenance.interval {
        tasks.push(tokio::spawn(scheduled_maintenance(state.clone(), every, stop.clone())));
    }
    let db = state.db.clone();
    let auth = state.auth.clone();
    let mfa = state.mfa.clone();
    let authz = state.authz.clone();
    let mut stop = stop;
    tasks.push(tokio::spawn(async move {
        loop {
            match auth.count_live().await {
                Ok(live) => metrics::gauge!("guard_active_sessions").set(live as f64),
                Err(e) => tracing::debug!(error = %e, "cannot count sessions"),
            }
            match mfa.enrollment_counts().await {
                Ok(counts) => {
                    for count in counts {
                        let tenant = count.tenant_slug;
                        metrics::gauge!("guard_users", "tenant" => tenant.clone()).set(count.users as f64);
                        metrics::gauge!("guard_mfa_enrolled_users", "tenant" => tenant).set(count.enrolled as f64);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot count MFA enrolment"),
            }
            match auth.brute_force().blocks().await {
                Ok(blocks) => metrics::gauge!("guard_blocked_ips").set(blocks.len() as f64),
                Err(e) => tracing::debug!(error = %e, "cannot count blocked addresses"),
            }
            metrics::gauge!("guard_authorization_cache_hit_ratio").set(authz.cache_hit_ratio().unwrap_or(0.0));
            crate::ops_cmd::export_size_gauges(&db).await;
            // Expired challenges, ceremonies, blocks and old sign-in attempts: small
            // deletes every 15 s keep the tables to what can still matter.
            if let Err(e) = auth.brute_force().prune().await {
                tracing::debug!(error = %e, "cannot prune expired sign-in state");
            }
            tokio::select! {
                _ = tokio::time::sleep(SESSION_GAUGE_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }));
    Ok(tasks)
}

/// Name of the lease that lets one replica at a time run scheduled maintenance.
const MAINTENANCE_LEASE: &str = "maintenance";

/// Runs maintenance every `every`, on whichever replica holds the lease; the first run
/// comes one interval after start, so a restarting fleet does not run it at once.
async fn scheduled_maintenance(
    state: AppState,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let holder = uuid::Uuid::now_v7().to_string();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        // The lease outlasts the run (VACUUM of a large SQLite file takes minutes) and
        // lapses by itself if this replica dies mid-run.
        let ttl = every.max(std::time::Duration::from_secs(3600));
        match state.db.audit.take_lease(MAINTENANCE_LEASE, &holder, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("maintenance: another replica holds the lease");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "maintenance: cannot take the lease");
                continue;
            }
        }
        match crate::ops_cmd::run_maintenance(&state.config, &state.db, &state.tenants, &state.audit, false).await {
            Ok(report) => tracing::info!(deleted = report.deleted, steps = ?report.lines, "maintenance done"),
            Err(crate::Failure::Runtime(e) | crate::Failure::Config(e)) => {
                tracing::warn!(error = %e, "maintenance failed")
            }
        }
        let _ = state.db.audit.release_lease(MAINTENANCE_LEASE, &holder).await;
    }
}

/// How long a `guard serve` process's lease runs unrenewed: the longest a process that
/// died keeps `guard restore` refusing (documented in docs/operations.md).
pub(crate) const SERVE_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a running process renews its lease: two renewals can fail before it lapses.
const SERVE_LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);

/// This process's lease `serve:<process id>` in `job_leases`, which tells `guard
/// restore` that a server uses the database.
#[derive(Clone)]
struct ServeLease {
    audit: Arc<dyn guard_core::audit::AuditStore>,
    name: String,
    holder: String,
}

impl ServeLease {
    async fn take(db: &guard_store::Database) -> Result<ServeLease, Failure> {
        let holder = uuid::Uuid::now_v7().to_string();
        let name = format!("{}{holder}", guard_core::store::SERVE_LEASE_PREFIX);
        let lease = ServeLease { audit: db.audit.clone(), name, holder };
        match lease.audit.take_lease(&lease.name, &lease.holder, SERVE_LEASE_TTL).await {
            Ok(true) => Ok(lease),
            Ok(false) => Err(Failure::Runtime(format!("the lease {} is held by another process", lease.name))),
            Err(e) => Err(Failure::Runtime(format!("cannot record in the database that this process serves it: {e}"))),
        }
    }

    /// Renews the lease every SERVE_LEASE_RENEW until `stop`.
    async fn renew(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SERVE_LEASE_RENEW) => {}
                _ = stop.changed() => return,
            }
            // Taken again when a forced restore replaced the table under this process.
            match self.audit.take_lease(&self.name, &self.holder, SERVE_LEASE_TTL).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(lease = %self.name, "cannot renew this process's lease: another holder has it")
                }
                Err(e) => tracing::warn!(error = %e, lease = %self.name, "cannot renew this process's lease"),
            }
        }
    }

    async fn release(&self) {
        if let Err(e) = self.audit.release_lease(&self.name, &self.holder).await {
            tracing::warn!(error = %e, lease = %self.name, "cannot release this process's lease: it runs out by itself");
        }
    }
}

/// Logs SIGHUP (there is nothing to reload) until `stop`.
async fn ignore_hangups(mut stop: tokio::sync::watch::Receiver<bool>) {
    #[cfg(unix)]
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        loop {
            tokio::select! {
                _ = hangup.recv() => tracing::info!("SIGHUP: nothing to reload (TLS_CERT_FILE is not set)"),
                _ = stop.changed() => return,
            }
        }
    }
    let _ = stop.changed().await;
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}
