//! Browser-facing hardening: security header fields on every response, and CORS for
//! the origins the operator allowed (none by default).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use guard_core::Config;
use guard_core::config::{CorsConfig, CorsOrigins, HttpSecurityConfig};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

static CROSS_ORIGIN_OPENER_POLICY: HeaderName = HeaderName::from_static("cross-origin-opener-policy");

/// Response headers a browser app may read: the request id and the rate-limit fields.
static EXPOSED: [HeaderName; 6] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("retry-after"),
    HeaderName::from_static("ratelimit-limit"),
    HeaderName::from_static("ratelimit-remaining"),
    HeaderName::from_static("ratelimit-reset"),
    HeaderName::from_static("ratelimit-policy"),
];

/// Wraps `routes` (already carrying guard's other middleware) in CORS and then in the
/// security headers. Both sit outside everything else: a preflight is answered before
/// rate limiting, authentication or the 404 fallback run, and every response, the
/// preflight answer included, carries the security headers.
pub(crate) fn layers(routes: Router<AppState>, config: &Config) -> Router<AppState> {
    let routes = match cors(&config.cors) {
        Some(cors) => routes.layer(cors).layer(axum::middleware::from_fn(only_for_allowed_origins)),
        None => routes,
    };
    security_headers(routes, &config.http)
}

/// Each header is set only when the handler did not set its own.
fn security_headers(routes: Router<AppState>, config: &HttpSecurityConfig) -> Router<AppState> {
    let hsts = (config.hsts_max_age > 0)
        .then(|| format!("max-age={}; includeSubDomains", config.hsts_max_age))
        .and_then(|value| HeaderValue::from_str(&value).ok());
    let nosniff = config.content_type_nosniff.then_some(HeaderValue::from_static("nosniff"));
    let frame = config.frame_deny.then_some(HeaderValue::from_static("DENY"));
    // The configuration accepts visible ASCII only, so this always parses; were it not
    // to, HTML would get the strictest policy rather than none.
    let html_policy = HeaderValue::from_str(&config.content_security_policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    // JSON and other non-HTML responses are never rendered: only framing needs refusing.
    let other_policy = config.frame_deny.then_some(HeaderValue::from_static("frame-ancestors 'none'"));
    let policy = move |response: &Response| -> Option<HeaderValue> {
        if is_html(response) { Some(html_policy.clone()) } else { other_policy.clone() }
    };
    routes
        .layer(SetResponseHeaderLayer::if_not_present(header::STRICT_TRANSPORT_SECURITY, hsts))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, nosniff))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, frame))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(
            CROSS_ORIGIN_OPENER_POLICY.clone(),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, policy))
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..9))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"text/html"))
}

/// The CORS layer, or `None` when no origin is allowed: then no response ever carries
/// an Access-Control-* header, and OPTIONS is answered like any other unknown method.
fn cors(config: &CorsConfig) -> Option<CorsLayer> {
    let (origin, credentials) = match &config.origins {
        CorsOrigins::Exact(origins) if origins.is_empty() => return None,
        // Browsers send scheme and host in lower case; exact, whole-value matches only,
        // so https://app.example.com.evil.net never passes for https://app.example.com.
        CorsOrigins::Exact(origins) => (
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(&o.to_ascii_lowercase()).ok())),
            config.allow_credentials,
        ),
        // The configuration refuses * with credentials; never send both regardless
        // (tower-http would refuse the combination at startup too).
        CorsOrigins::Any => (AllowOrigin::any(), false),
    };
    let methods: Vec<Method> = config.methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect();
    let headers: Vec<HeaderName> =
        config.headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(methods)
            .allow_headers(headers)
            .allow_credentials(credentials)
            .expose_headers(EXPOSED.clone())
            .max_age(config.max_age),
    )
}

/// tower-http sends Access-Control-Allow-Methods, -Allow-Headers, -Max-Age,
/// -Expose-Headers and -Allow-Credentials whatever the Origin; a caller whose origin
/// is not allowed (or who sent none) gets none of them, only the absent
/// Access-Control-Allow-Origin it would have to ignore anyway.
async fn only_for_allowed_origins(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let cors: Vec<HeaderName> =
            headers.keys().filter(|name| name.as_str().starts_with("access-control-")).cloned().collect();
        for name in &cors {
            headers.remove(name);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_recognised_by_its_content_type_whatever_the_case_or_parameters() {
        let with = |ct: &'static str| {
            let mut r = Response::new(axum::body::Body::empty());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            is_html(&r)
        };
        assert!(with("text/html; charset=utf-8"));
        assert!(with("TEXT/HTML"));
        assert!(!with("application/json"));
        assert!(!with("text/plain"));
        assert!(!is_html(&Response::new(axum::body::Body::empty())));
    }
}
