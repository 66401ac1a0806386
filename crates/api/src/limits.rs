//! Rate limits at the edge: the client address (behind trusted proxies), the
//! per-address limit on every request, the per-action limits of the sign-in routes,
//! and their answers — 429 problems with Retry-After, and the RateLimit-Limit /
//! RateLimit-Remaining / RateLimit-Reset / RateLimit-Policy header fields.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guard_core::ratelimit::{Action, Decision, LimiterUnavailable, Scope};
use guard_core::tenants::Tenant;
use guard_proto::ErrorCode;

use crate::{ApiError, AppState};

/// The client's address: the TCP peer, or, from a trusted proxy, the client its
/// forwarding headers name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address of a request from `peer`.
pub(crate) fn client_ip(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let server = &state.config.server;
    if server.trusted_proxies.is_empty() {
        return peer;
    }
    let header = server.trusted_proxy_header;
    // Every line of the header, in order: a proxy may add a line rather than append.
    let lines: Vec<&str> = headers.get_all(header.name()).iter().filter_map(|v| v.to_str().ok()).collect();
    let value = (!lines.is_empty()).then(|| lines.join(","));
    guard_core::net::client_ip(peer, &server.trusted_proxies, header, value.as_deref())
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("no peer address on the request"))?;
        Ok(ClientIp(client_ip(state, peer, &parts.headers)))
    }
}

fn value(n: impl ToString) -> Option<HeaderValue> {
    HeaderValue::from_str(&n.to_string()).ok()
}

/// The RateLimit header fields of a decision (and Retry-After when it refuses).
fn headers(decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let reset = decision.reset_after.as_secs() + u64::from(decision.reset_after.subsec_nanos() > 0);
    let policy = format!("{};w={};burst={}", decision.limit, decision.window.as_secs(), decision.burst);
    let mut fields = vec![
        (HeaderName::from_static("ratelimit-limit"), value(decision.limit)),
        (HeaderName::from_static("ratelimit-remaining"), value(decision.remaining)),
        (HeaderName::from_static("ratelimit-reset"), value(reset)),
        (HeaderName::from_static("ratelimit-policy"), value(policy)),
    ];
    if !decision.allowed {
        let retry = decision.retry_after.as_secs() + u64::from(decision.retry_after.subsec_nanos() > 0);
        fields.push((header::RETRY_AFTER, value(retry.max(1))));
    }
    fields.into_iter().filter_map(|(name, value)| Some((name, value?))).collect()
}

/// The answer to a request from a blocked address.
pub(crate) fn blocked(block: &guard_core::security::IpBlock) -> ApiError {
    let wait = (block.blocked_until - time::OffsetDateTime::now_utc()).unsigned_abs();
    ApiError::new(ErrorCode::IpBlocked)
        .detail(format!("this address is blocked after too many failed sign-ins, for {} s more", wait.as_secs().max(1)))
        .header(header::RETRY_AFTER, crate::auth_routes::retry_after(wait))
}

fn unavailable(_: LimiterUnavailable) -> ApiError {
    ApiError::new(ErrorCode::RateLimiterUnavailable)
        .detail("the shared rate limiter is not answering and guard is set to refuse meanwhile; try again shortly")
}

fn refused(action: Action, scope: Scope, decision: &Decision) -> ApiError {
    let whose = match scope {
        Scope::Ip => "from this address",
        Scope::Account => "for this account",
    };
    let mut error = ApiError::new(ErrorCode::RateLimited).detail(format!(
        "too many {} requests {whose}: at most {} per {} s ({} at once); retry in {} s",
        action.as_str(),
        decision.limit,
        decision.window.as_secs(),
        decision.burst,
        decision.retry_after.as_secs().max(1)
    ));
    for (name, value) in headers(decision) {
        error = error.header(name, value);
    }
    error
}

/// The limits of one request from `ip`: refuses a blocked address (403), counts the
/// request under `action` for the address (its /64 for IPv6) and, when given, the
/// account it names, and refuses it (429) when one of them is exhausted. The decision
/// with the least room, for the answer's headers; `None` when limits are off.
pub(crate) async fn enforce(
    state: &AppState,
    action: Action,
    tenant: &Tenant,
    ip: IpAddr,
    account: Option<&str>,
) -> Result<Option<Decision>, ApiError> {
    if let Some(block) = state.auth.brute_force().blocked(&ip.to_string()).await? {
        return Err(blocked(&block));
    }
    let address = guard_core::net::limit_key(ip);
    let keys = std::iter::once((Scope::Ip, address.as_str())).chain(account.map(|a| (Scope::Account, a)));
    let mut tightest: Option<Decision> = None;
    for (scope, key) in keys {
        let Some(decision) = state.limiter.check(action, scope, Some(tenant), key).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if !decision.allowed {
            return Err(refused(action, scope, &decision));
        }
        if tightest.is_none_or(|t| decision.remaining < t.remaining) {
            tightest = Some(decision);
        }
    }
    Ok(tightest)
}

/// Adds the RateLimit header fields of `decision` to an answer.
pub(crate) fn with_limit_headers(mut response: Response, decision: Option<Decision>) -> Response {
    if let Some(decision) = decision {
        for (name, value) in headers(&decision) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The per-address limit on every request but health probes and metrics scrapes.
/// Counted in each process's memory: a flood guard that costs no round trip; the
/// per-action limits are the ones shared through Redis.
pub(crate) async fn api_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.starts_with("/health") || path == "/metrics" || !state.limiter.enabled() {
        return next.run(request).await;
    }
    let Some(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
        return next.run(request).await;
    };
    let ip = guard_core::net::limit_key(client_ip(&state, peer, request.headers()));
    let decision = state.limiter.check_local(Action::Api, Scope::Ip, &ip);
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        return refused(Action::Api, Scope::Ip, &decision).into_response();
    }
    next.run(request).await
}
