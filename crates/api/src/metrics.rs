//! Prometheus metrics: the recorder, metric descriptions, and the /metrics handler.
//!
//! The `metrics` facade has one recorder per process; [`Metrics::install`] installs it
//! once and later calls share it, so several apps in one test process still work.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::state::BuildInfo;

/// Latency buckets in seconds: fine-grained below 10 ms, where health and cached
/// answers live, and up to 10 s for slow password hashing under load.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Decisions take microseconds; the request buckets would put all of them in one.
const AUTHORIZATION_BUCKETS: &[f64] =
    &[0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1];

/// Handle to the process's metrics.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

impl Metrics {
    /// Installs the recorder (first call) and returns the process's metrics handle.
    /// Also starts the thread that keeps histogram memory bounded between scrapes.
    pub fn install() -> Result<Metrics, BuildError> {
        if let Some(m) = INSTALLED.get() {
            return Ok(m.clone());
        }
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = INSTALLED.get() {
            return Ok(m.clone());
        }
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("guard_authorization_duration_seconds".into()),
                AUTHORIZATION_BUCKETS,
            )?
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)?
            .install_recorder()?;
        let process = Arc::new(metrics_process::Collector::default());
        process.describe();
        describe();
        start_counters_at_zero();
        let build = BuildInfo::current();
        metrics::gauge!("guard_build_info", "version" => build.version, "commit" => build.commit).set(1.0);
        let upkeep = handle.clone();
        // A thread rather than a task: it must outlive whichever runtime installed it.
        let _ = std::thread::Builder::new().name("guard-metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        Ok(INSTALLED.get_or_init(|| Metrics { handle, process }).clone())
    }

    /// The Prometheus text exposition of every metric, with pool and process figures
    /// read now.
    pub fn render(&self, state: &AppState) -> String {
        let pool = state.db.pool.stats();
        metrics::gauge!("guard_database_connections", "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!("guard_database_connections", "state" => "in_use").set(f64::from(pool.in_use));
        metrics::gauge!("guard_database_connections_max").set(f64::from(pool.max_open));
        self.process.collect();
        self.handle.render()
    }
}

fn describe() {
    metrics::describe_counter!(
        "guard_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    metrics::describe_histogram!(
        "guard_http_request_duration_seconds",
        Unit::Seconds,
        "Time from receiving a request to sending its response headers, by method and route template."
    );
    metrics::describe_gauge!("guard_http_requests_in_flight", "HTTP requests being handled now.");
    metrics::describe_gauge!("guard_database_connections", "Database pool connections, by state (idle, in_use).");
    metrics::describe_gauge!("guard_database_connections_max", "Most connections the database pool may open.");
    metrics::describe_counter!(
        "guard_mfa_verifications_total",
        "Second factors checked, by method (totp, recovery_code, webauthn, email_code) and result (success, failure)."
    );
    metrics::describe_counter!(
        "guard_rate_limit_hits_total",
        "Requests refused by a rate limit, by action (login, signup, mfa_verify, password_reset, api) and scope (ip, account)."
    );
    metrics::describe_counter!(
        "guard_rate_limit_backend_errors_total",
        "Rate-limit checks the shared limiter (Redis) did not answer."
    );
    metrics::describe_gauge!("guard_blocked_ips", "Addresses blocked after failed sign-ins, now.");
    metrics::describe_gauge!("guard_users", "Users, by tenant.");
    metrics::describe_gauge!("guard_mfa_enrolled_users", "Users with an active second factor, by tenant.");
    metrics::describe_counter!("guard_audit_events_total", "Audit events stored, by type and result.");
    metrics::describe_counter!(
        "guard_audit_write_failures_total",
        "Audit events that could not be stored (events that record no change of their own)."
    );
    metrics::describe_counter!("guard_audit_verify_failures_total", "Audit verifications that found a break.");
    metrics::describe_counter!("guard_audit_pruned_total", "Audit events deleted past their retention.");
    metrics::describe_counter!("guard_audit_delivered_total", "Audit events sent to the delivery sink.");
    metrics::describe_counter!("guard_audit_delivery_failures_total", "Failed attempts to deliver audit events.");
    metrics::describe_gauge!(
        "guard_audit_delivery_lag_seconds",
        "Age of the oldest sealed audit event not yet delivered; 0 when delivery is caught up."
    );
    metrics::describe_counter!(
        "guard_policy_evaluations_total",
        "Authorization decisions answered for applications, by decision (allow, deny)."
    );
    metrics::describe_histogram!(
        "guard_authorization_duration_seconds",
        "Time to answer one authorization decision (cached ones included)."
    );
    metrics::describe_counter!(
        "guard_authorization_cache_hits_total",
        "Authorization decisions answered from the cache."
    );
    metrics::describe_counter!(
        "guard_authorization_cache_misses_total",
        "Authorization decisions evaluated because the cache did not have them."
    );
    metrics::describe_gauge!(
        "guard_authorization_cache_hit_ratio",
        "Share of authorization decisions answered from the cache since the process started."
    );
    metrics::describe_counter!(
        "guard_auth_attempts_total",
        "Sign-in attempts, by method (password, passkey, refresh_token)."
    );
    metrics::describe_counter!("guard_auth_failures_total", "Refused sign-ins and token refreshes, by reason.");
    metrics::describe_counter!("guard_email_sends_total", "Emails handed to the SMTP server, by template and result.");
    metrics::describe_gauge!("guard_active_sessions", "Unrevoked, unexpired sessions in the database (every tenant).");
    metrics::describe_gauge!("guard_database_size_bytes", Unit::Bytes, "Bytes the database takes.");
    metrics::describe_gauge!("guard_audit_events_stored", "Audit events stored, sealed and queued.");
    metrics::describe_gauge!(
        "guard_job_last_success_timestamp_seconds",
        Unit::Seconds,
        "When an operator job (label name: backup, audit_verify, maintenance) last succeeded, as Unix time; recorded in the database by whichever process ran it."
    );
    metrics::describe_gauge!(
        "guard_job_last_failure_timestamp_seconds",
        Unit::Seconds,
        "When an operator job (label name: backup, audit_verify, maintenance) last failed, as Unix time."
    );
    metrics::describe_gauge!(
        "guard_audit_chain_intact",
        "1 when the latest verification of the audit log found every chain intact, 0 when it found a break."
    );
    metrics::describe_gauge!("guard_build_info", "Always 1; labelled with the running guard's version and commit.");
}

/// Registers the counters whose label values are known in advance, at 0: a series
/// that first appears at 1 shows no increase to `rate()` or `increase()`, so the first
/// rate-limit refusal or audit verification failure would not raise an alert.
fn start_counters_at_zero() {
    use guard_core::ratelimit::{Action, Scope};
    for name in [
        "guard_rate_limit_backend_errors_total",
        "guard_audit_write_failures_total",
        "guard_audit_verify_failures_total",
        "guard_audit_pruned_total",
        "guard_audit_delivered_total",
        "guard_audit_delivery_failures_total",
        "guard_authorization_cache_hits_total",
        "guard_authorization_cache_misses_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for action in Action::ALL {
        for scope in [Scope::Ip, Scope::Account] {
            metrics::counter!("guard_rate_limit_hits_total", "action" => action.as_str(), "scope" => scope.as_str())
                .increment(0);
        }
    }
    for method in ["totp", "recovery_code", "webauthn", "email_code"] {
        for result in ["success", "failure"] {
            metrics::counter!("guard_mfa_verifications_total", "method" => method, "result" => result).increment(0);
        }
    }
    for decision in ["allow", "deny"] {
        metrics::counter!("guard_policy_evaluations_total", "decision" => decision).increment(0);
    }
    for method in ["password", "passkey", "refresh_token"] {
        metrics::counter!("guard_auth_attempts_total", "method" => method).increment(0);
    }
    for reason in [
        "unknown_user",
        "wrong_password",
        "disabled",
        "locked",
        "pending_verification",
        "risk_denied",
        "account_delayed",
        "account_locked",
        "unknown_passkey",
        "invalid_refresh_token",
        "refresh_token_reused",
        "session_ended",
    ] {
        metrics::counter!("guard_auth_failures_total", "reason" => reason).increment(0);
    }
}

/// GET /metrics
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state);
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
