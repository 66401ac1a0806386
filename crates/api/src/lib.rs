//! guard's HTTP API on axum: the router, the request middleware (request id, logs,
//! metrics, panics, timeouts), problem+json errors, health and metrics endpoints, and
//! a server loop (HTTP or HTTPS with reloadable certificates) with bounded graceful
//! shutdown.
//!
//! [`router`] is a plain function of [`AppState`] so tests can mount it on a random
//! port or call it without a socket.

mod admin_routes;
mod audit_routes;
mod auth_routes;
mod authz_routes;
mod context;
mod debug;
pub mod error;
pub mod extract;
mod hardening;
mod health;
mod input;
mod limits;
pub mod metrics;
mod mfa_routes;
mod passkey_routes;
mod raw_problem;
mod security_routes;
mod serve;
mod services;
mod state;
pub mod tenancy;
pub mod tls;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use debug::admin_listener_routes;
pub use error::ApiError;
pub use limits::ClientIp;
pub use security_routes::blocked_ips_json;
pub use serve::{ServeOptions, serve};
pub use services::{Services, apply_audit_retention, audit_log, master_key};
pub use state::{AppState, AppStateInner, BuildInfo, Lifecycle};

/// The complete API. Every route, including the 404 fallback, runs through the request
/// context middleware, so every response carries X-Request-ID, is counted and logged;
/// CORS preflights alone are answered before it (see [`with_middleware`]).
pub fn router(state: AppState) -> Router {
    with_middleware(routes(), state)
}

/// guard's routes without middleware or state, for [`with_middleware`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(auth_routes::routes())
        .merge(admin_routes::routes())
        .merge(mfa_routes::routes())
        .merge(passkey_routes::routes())
        .merge(security_routes::routes())
        .merge(audit_routes::routes())
        .merge(authz_routes::routes())
        .merge(debug::routes())
        .route("/metrics", get(metrics::render))
        .fallback(error::not_found)
}

/// Applies guard's middleware to `routes`. Exposed so tests can add routes of their own
/// (a slow handler, a panicking one) that behave exactly like guard's.
///
/// Outermost first: security headers, CORS (a preflight is answered here, before rate
/// limits, authentication or the 404 fallback), body limit, request context, API rate
/// limit.
pub fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.server.body_limit;
    let routes = routes
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::api_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), context::request_context))
        .layer(DefaultBodyLimit::max(body_limit));
    hardening::layers(routes, &state.config).with_state(state)
}
