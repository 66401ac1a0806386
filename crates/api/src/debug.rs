//! `/debug/pprof/profile` (a CPU profile in pprof's format) and `/debug/vars`
//! (runtime statistics), when ENABLE_PPROF is on: for administrators of the default
//! tenant on the API, and without sign-in on ADMIN_LISTEN only.

use std::io::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guard_proto::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::extract::AppQuery;
use crate::tenancy::PlatformAdmin;
use crate::{ApiError, AppState};

/// Longest profile one request may ask for.
const MAX_PROFILE: Duration = Duration::from_secs(60);
/// Samples per second: pprof's usual rate.
const FREQUENCY: i32 = 100;

/// The debug routes behind administrator sign-in. Unless ENABLE_PPROF is on they
/// answer 404 to everyone, before sign-in is looked at, like a route that is not there.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/debug/pprof/profile",
            get(|_: Enabled, _: PlatformAdmin, s: State<AppState>, q: AppQuery<ProfileQuery>| profile(s, q)),
        )
        .route("/debug/vars", get(|_: Enabled, _: PlatformAdmin, s: State<AppState>| vars(s)))
}

/// Extracted first, so that a disabled endpoint answers 404 before sign-in is checked.
struct Enabled;

impl axum::extract::FromRequestParts<AppState> for Enabled {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.debug.enable_pprof { Ok(Enabled) } else { Err(turned_off()) }
    }
}

/// The same routes without sign-in, for the administrators' listen address, with
/// /metrics beside them.
pub fn admin_listener_routes() -> Router<AppState> {
    Router::new()
        .route("/debug/pprof/profile", get(profile))
        .route("/debug/vars", get(vars))
        .route("/metrics", get(crate::metrics::render))
        .fallback(crate::error::not_found)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProfileQuery {
    seconds: Option<u64>,
}

/// The answer of every debug route while ENABLE_PPROF is off.
fn turned_off() -> ApiError {
    ApiError::new(ErrorCode::NotFound).detail("debugging endpoints are off (ENABLE_PPROF=false)")
}

async fn profile(State(state): State<AppState>, AppQuery(query): AppQuery<ProfileQuery>) -> Result<Response, ApiError> {
    if !state.config.debug.enable_pprof {
        return Err(turned_off());
    }
    let seconds = query.seconds.unwrap_or(10);
    // The request must finish before the request timeout cuts it.
    let limit = MAX_PROFILE.min(state.config.server.request_timeout.saturating_sub(Duration::from_secs(1)));
    if seconds == 0 || Duration::from_secs(seconds) > limit {
        return Err(ApiError::new(ErrorCode::InvalidParameter).detail(format!(
            "seconds must be from 1 to {} (GUARD_REQUEST_TIMEOUT minus one, at most 60)",
            limit.as_secs()
        )));
    }
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|_| {
            ApiError::new(ErrorCode::Conflict).detail("a profile is already being taken; try again after it")
        })?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        use pprof::protos::Message as _;
        let report = guard.report().build().map_err(|e| e.to_string())?;
        let profile = report.pprof().map_err(|e| e.to_string())?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&profile.encode_to_vec()).map_err(|e| e.to_string())?;
        gz.finish().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(format!("profile task: {e}")))?
    .map_err(|e| ApiError::internal(format!("cannot build the profile: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"profile.pb.gz\""),
        ],
        encoded,
    )
        .into_response())
}

async fn vars(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.config.debug.enable_pprof {
        return Err(turned_off());
    }
    let pool = state.db.pool.stats();
    let runtime = tokio::runtime::Handle::current().metrics();
    let process = process_stats();
    Ok(axum::Json(json!({
        "version": state.build.version,
        "commit": state.build.commit,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "backend": state.db.pool.backend().as_str(),
        "process": process,
        "runtime": {
            "workers": runtime.num_workers(),
            "alive_tasks": runtime.num_alive_tasks(),
            "global_queue_depth": runtime.global_queue_depth(),
        },
        "database_pool": {
            "open": pool.open, "idle": pool.idle, "in_use": pool.in_use,
            "max_open": pool.max_open, "max_idle": pool.max_idle,
        },
        "lifecycle": { "draining": state.lifecycle.is_draining() },
    }))
    .into_response())
}

/// Memory, threads and file descriptors from /proc (Linux); empty elsewhere.
fn process_stats() -> serde_json::Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse::<u64>().ok());
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok();
    json!({
        "pid": std::process::id(),
        "resident_bytes": field("VmRSS:").map(|kib| kib * 1024),
        "peak_resident_bytes": field("VmHWM:").map(|kib| kib * 1024),
        "virtual_bytes": field("VmSize:").map(|kib| kib * 1024),
        "threads": field("Threads:"),
        "open_fds": open_fds,
    })
}
