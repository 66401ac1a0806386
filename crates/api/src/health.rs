//! Health endpoints: liveness, readiness for Kubernetes, and per-component checks.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use guard_proto::ErrorCode;
use guard_proto::health::{ComponentHealth, ComponentStatus, Components, DetailedHealth, Liveness};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/db", get(database))
        .route("/health/redis", get(redis))
        .route("/health/detailed", get(detailed))
}

/// GET /health: the process is up. Touches no dependency, so it stays fast and 200
/// while the database is down.
async fn health(State(state): State<AppState>) -> Json<Liveness> {
    Json(Liveness { status: "ok".into(), version: state.build.version.into(), uptime_seconds: state.uptime_seconds() })
}

/// GET /health/live: for the liveness probe; restarting would not help with anything
/// a dependency check could find, so none is made.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// GET /health/ready: for the readiness probe; 503 while draining or while the
/// database does not answer.
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::new(ErrorCode::NotReady).detail("shutting down"));
    }
    let db = check_database(&state).await;
    if db.status == ComponentStatus::Down {
        let reason = db.reason.unwrap_or_default();
        return Err(ApiError::new(ErrorCode::NotReady).detail(format!("database: {reason}")));
    }
    Ok(Json(json!({ "status": "ready" })))
}

/// GET /health/db
async fn database(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let db = check_database(&state).await;
    let backend = state.db.pool.backend().as_str();
    match db.status {
        ComponentStatus::Down => Err(ApiError::new(ErrorCode::DatabaseUnavailable)
            .detail(db.reason.unwrap_or_default())
            .extension("component", json!("database"))
            .extension("backend", json!(backend))
            .extension("latency_ms", json!(db.latency_ms))),
        _ => Ok(Json(json!({ "status": "ok", "backend": backend, "latency_ms": db.latency_ms }))),
    }
}

/// GET /health/redis
async fn redis(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let redis = check_redis(&state).await;
    match redis.status {
        ComponentStatus::Disabled => Ok(Json(json!({ "status": "disabled" }))),
        ComponentStatus::Up => Ok(Json(json!({ "status": "ok", "latency_ms": redis.latency_ms }))),
        ComponentStatus::Down => Err(ApiError::new(ErrorCode::RedisUnavailable)
            .detail(redis.reason.unwrap_or_default())
            .extension("component", json!("redis"))
            .extension("latency_ms", json!(redis.latency_ms))),
    }
}

/// GET /health/detailed: every component with its latency; 503 (a problem document
/// carrying the same `components`) when any is down.
async fn detailed(State(state): State<AppState>) -> Result<Json<DetailedHealth>, ApiError> {
    let (db, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let mut components = Components::new();
    components.insert("database".into(), db);
    components.insert("redis".into(), redis);
    let down: Vec<String> = components
        .iter()
        .filter(|(_, c)| c.status == ComponentStatus::Down)
        .map(|(name, c)| format!("{name}: {}", c.reason.as_deref().unwrap_or("down")))
        .collect();
    if down.is_empty() {
        return Ok(Json(DetailedHealth {
            status: "ok".into(),
            version: state.build.version.into(),
            uptime_seconds: state.uptime_seconds(),
            components,
        }));
    }
    Err(ApiError::new(ErrorCode::Unhealthy)
        .detail(down.join("; "))
        .extension("version", json!(state.build.version))
        .extension("uptime_seconds", json!(state.uptime_seconds()))
        .extension("components", serde_json::to_value(&components).unwrap_or(Value::Null)))
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

async fn check_database(state: &AppState) -> ComponentHealth {
    let limit = state.config.server.health_check_timeout;
    let started = Instant::now();
    // The store keeps to `limit` itself; the outer bound only guards against a driver
    // that does not.
    let result = tokio::time::timeout(limit + Duration::from_millis(500), state.db.pool.ping(limit)).await;
    let latency_ms = Some(millis(started.elapsed()));
    let stats = state.db.pool.stats();
    let details = json!({
        "backend": state.db.pool.backend().as_str(),
        "pool": {
            "open": stats.open,
            "idle": stats.idle,
            "in_use": stats.in_use,
            "max_open": stats.max_open,
            "max_idle": stats.max_idle,
        },
    });
    let (status, reason) = match result {
        Ok(Ok(())) => (ComponentStatus::Up, None),
        Ok(Err(e)) => (ComponentStatus::Down, Some(safe_reason(&e))),
        Err(_) => (ComponentStatus::Down, Some(format!("no answer within {}s", limit.as_secs_f64()))),
    };
    ComponentHealth { status, latency_ms, reason, details: Some(details) }
}

fn safe_reason(e: &guard_core::store::StoreError) -> String {
    match e {
        guard_core::store::StoreError::Unavailable(reason) => reason.clone(),
        _ => "the health query failed".into(),
    }
}

async fn check_redis(state: &AppState) -> ComponentHealth {
    let Some(redis) = &state.redis else {
        return ComponentHealth { status: ComponentStatus::Disabled, latency_ms: None, reason: None, details: None };
    };
    let limit = state.config.server.health_check_timeout;
    let started = Instant::now();
    let result = tokio::time::timeout(limit, redis.ping()).await;
    let latency_ms = Some(millis(started.elapsed()));
    let (status, reason) = match result {
        Ok(Ok(_)) => (ComponentStatus::Up, None),
        Ok(Err(e)) => (ComponentStatus::Down, Some(e.0)),
        Err(_) => (ComponentStatus::Down, Some(format!("no answer within {}s", limit.as_secs_f64()))),
    };
    ComponentHealth { status, latency_ms, reason, details: None }
}
