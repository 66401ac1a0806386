//! The request context middleware: request id, tracing span, request timeout, panic
//! recovery, problem documents for bare error statuses, metrics and the access log.
//! It is one middleware rather than a stack of layers because every step needs the
//! same request id, route and start time.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::FutureExt;
use guard_proto::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
use tracing::Instrument;

use crate::AppState;
use crate::error::{REQUEST_ID, code_for_status, problem_response};

/// The request id header, read from clients and set on every response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the audit events of a request record about where it came from.
fn audit_context(state: &AppState, request: &Request, request_id: &str) -> guard_core::audit::RequestContext {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let ip = peer.map(|peer| crate::limits::client_ip(state, peer, request.headers()).to_string());
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    guard_core::audit::RequestContext { request_id: Some(request_id.to_owned()), ip, user_agent }
}

/// Route label for requests no route matched, so raw paths never become labels.
const UNMATCHED_ROUTE: &str = "unmatched";

pub(crate) async fn request_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = client_request_id(request.headers()).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method,
        route = %route,
        tenant = tracing::field::Empty,
        user = tracing::field::Empty,
    );

    let in_flight = InFlight::enter();
    let timeout = state.config.server.request_timeout;
    let audit_context = std::sync::Arc::new(audit_context(&state, &request, &request_id));
    let failure_context = audit_context.clone();
    let handled = REQUEST_ID.scope(
        request_id.clone(),
        guard_core::audit::REQUEST
            .scope(audit_context, AssertUnwindSafe(tokio::time::timeout(timeout, next.run(request))).catch_unwind()),
    );
    let outcome = handled.instrument(span.clone()).await;
    drop(in_flight);

    let mut response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(_elapsed)) => {
            let detail = format!("the request did not complete within {}s", timeout.as_secs_f64());
            problem_response(Problem::new(ErrorCode::RequestTimeout).with_detail(detail), Some(request_id.clone()))
        }
        Err(panic) => {
            span.in_scope(|| tracing::error!(panic = panic_message(panic.as_ref()), "handler panicked"));
            problem_response(Problem::new(ErrorCode::InternalError), Some(request_id.clone()))
        }
    };
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_problem(response.headers()) {
        // A bare error from outside guard's handlers (axum's 405, a body limit):
        // re-send it as a problem, keeping headers such as Allow.
        let headers = std::mem::take(response.headers_mut());
        response = problem_response(Problem::new(code_for_status(status)), Some(request_id.clone()));
        for (name, value) in &headers {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }

    if response.status().is_server_error() {
        // A failed operation is reviewed daily: on record with the request's context.
        let event = guard_core::events::Event::success("api.request.failed", guard_core::events::Actor::System)
            .outcome(guard_core::events::Outcome::Error)
            .target(format!("{} {}", method, route))
            .details(serde_json::json!({ "status": response.status().as_u16() }));
        // In the background: when the database is what failed, the answer must not
        // wait for the event's write to time out too.
        let audit = state.audit.clone();
        tokio::spawn(
            guard_core::audit::REQUEST
                .scope(failure_context, async move { guard_core::events::EventSink::emit(&audit, event).await }),
        );
    }
    let elapsed = started.elapsed();
    let status_label = status_label(response.status().as_u16());
    metrics::counter!("guard_http_requests_total", "method" => method, "route" => route.clone(), "status" => status_label)
        .increment(1);
    metrics::histogram!("guard_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    let latency_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    span.in_scope(
        || tracing::info!(target: "guard::http", status = response.status().as_u16(), latency_ms, "request completed"),
    );
    response
}

/// Keeps the client's id when it is a sane token (so ids can be followed across
/// services); otherwise guard makes its own, so a hostile header never reaches a log.
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| value.to_owned())
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()))
}

/// Method label with bounded cardinality.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

/// Counts a request in guard_http_requests_in_flight for as long as it lives, also
/// when the client goes away and the request future is dropped.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        metrics::gauge!("guard_http_requests_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("guard_http_requests_in_flight").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_they_are_sane_tokens() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(client_request_id(&h).as_deref(), Some("abc-123_x.y:z"));
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(client_request_id(&h), None);
        h.insert(&X_REQUEST_ID, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(client_request_id(&h), None);
        h.insert(&X_REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(client_request_id(&h), None);
    }

    #[test]
    fn status_labels_match_the_status_or_its_class() {
        for s in [200u16, 404, 503] {
            assert_eq!(status_label(s), s.to_string());
        }
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(207), "2xx");
    }
}
