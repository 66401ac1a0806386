//! Security header fields and CORS: the defaults on every response, Content-Security-
//! Policy by content type, exact-origin CORS (a wrong or look-alike origin gets no
//! Access-Control-* field at all), preflights answered before authentication, `*`
//! without credentials, and the CORS configurations guard refuses. Pure HTTP, so
//! SQLite only.

use axum::Router;
use axum::http::header::X_FRAME_OPTIONS;
use axum::response::Html;
use axum::routing::get;
use guard_api::AppState;
use guard_testkit::{Backend, GuardCommand, TestApp};

use crate::support::{GUARD, expect_problem};

const APP: &str = "https://app.example.com";
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// Every value of `name`, joined, lower case (Vary may come as several fields).
fn all_values(response: &reqwest::Response, name: &str) -> String {
    let values: Vec<&str> = response.headers().get_all(name).iter().map(|v| v.to_str().unwrap()).collect();
    values.join(", ").to_ascii_lowercase()
}

/// The names of the Access-Control-* fields of `response`.
fn cors_fields(response: &reqwest::Response) -> Vec<String> {
    response.headers().keys().map(|k| k.as_str().to_owned()).filter(|k| k.starts_with("access-control-")).collect()
}

/// An HTML page, and a handler that chooses its own X-Frame-Options, behind guard's
/// middleware (guard itself serves no HTML).
fn page_routes() -> Router<AppState> {
    Router::new()
        .route("/test/page", get(|| async { Html("<p>hello</p>") }))
        .route("/test/framed", get(|| async { ([(X_FRAME_OPTIONS, "SAMEORIGIN")], "framed") }))
}

async fn app_with(env: &[(&str, &str)]) -> Option<TestApp> {
    let mut builder = TestApp::builder(Backend::Sqlite).routes(page_routes());
    for (key, value) in env {
        builder = builder.env(key, *value);
    }
    builder.spawn().await
}

async fn get_from(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.http.get(app.url(path)).header("origin", origin).send().await.unwrap()
}

/// A browser's preflight for a POST with a bearer token and a JSON body.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_response_carries_the_security_headers_by_default_and_no_cors_fields() {
    let Some(app) = app_with(&[]).await else { return };
    let live = get_from(&app, "/health/live", APP).await;
    assert_eq!(live.status(), 200);
    assert_eq!(header(&live, "x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header(&live, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(header(&live, "strict-transport-security").as_deref(), Some("max-age=31536000; includeSubDomains"));
    assert_eq!(header(&live, "referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(header(&live, "cross-origin-opener-policy").as_deref(), Some("same-origin"));
    // JSON is never rendered: it gets no default-src, only framing refused.
    assert_eq!(header(&live, "content-type").as_deref(), Some("application/json"));
    assert_eq!(header(&live, "content-security-policy").as_deref(), Some("frame-ancestors 'none'"));
    // No origin is allowed by default, so an Origin-bearing request gets nothing.
    assert_eq!(cors_fields(&live), Vec::<String>::new());

    // Errors from outside the handlers (404 fallback) carry them too.
    let missing = get_from(&app, "/no/such/route", APP).await;
    assert_eq!(header(&missing, "x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header(&missing, "content-security-policy").as_deref(), Some("frame-ancestors 'none'"));
    assert_eq!(cors_fields(&missing), Vec::<String>::new());
    expect_problem(missing, 404, "not_found").await;

    // HTML gets the configured policy in full.
    let page = app.get("/test/page").await;
    assert!(header(&page, "content-type").unwrap().starts_with("text/html"));
    assert_eq!(header(&page, "content-security-policy").as_deref(), Some(DEFAULT_CSP));

    // A handler's own choice is kept, not overwritten.
    let framed = app.get("/test/framed").await;
    assert_eq!(header(&framed, "x-frame-options").as_deref(), Some("SAMEORIGIN"));
    assert_eq!(header(&framed, "x-content-type-options").as_deref(), Some("nosniff"));

    // Without CORS an OPTIONS is not a preflight guard answers: a plain 405.
    let options = preflight(&app, "/v1/authorize", APP).await;
    assert_eq!(cors_fields(&options), Vec::<String>::new());
    expect_problem(options, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn the_security_headers_follow_their_settings() {
    let Some(app) = app_with(&[
        ("SECURITY_HSTS_MAX_AGE", "0"),
        ("SECURITY_FRAME_DENY", "false"),
        ("SECURITY_CONTENT_TYPE_NOSNIFF", "false"),
        ("SECURITY_CONTENT_SECURITY_POLICY", "default-src 'self'"),
    ])
    .await
    else {
        return;
    };
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    assert_eq!(header(&live, "strict-transport-security"), None);
    assert_eq!(header(&live, "x-frame-options"), None);
    assert_eq!(header(&live, "x-content-type-options"), None);
    // Without frame denial JSON needs no policy at all.
    assert_eq!(header(&live, "content-security-policy"), None);
    // Those two have no setting: always sent.
    assert_eq!(header(&live, "referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(header(&live, "cross-origin-opener-policy").as_deref(), Some("same-origin"));
    let page = app.get("/test/page").await;
    assert_eq!(header(&page, "content-security-policy").as_deref(), Some("default-src 'self'"));

    let Some(longer) = app_with(&[("SECURITY_HSTS_MAX_AGE", "600")]).await else { return };
    let live = longer.get("/health/live").await;
    assert_eq!(header(&live, "strict-transport-security").as_deref(), Some("max-age=600; includeSubDomains"));
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_and_any_other_origin_gets_no_access_control_field() {
    let Some(app) = app_with(&[("CORS_ALLOWED_ORIGINS", APP)]).await else { return };

    let allowed = get_from(&app, "/health/live", APP).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some(APP));
    assert!(all_values(&allowed, "vary").contains("origin"), "{}", all_values(&allowed, "vary"));
    let exposed = all_values(&allowed, "access-control-expose-headers");
    for name in ["x-request-id", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    // Credentials are off by default.
    assert_eq!(header(&allowed, "access-control-allow-credentials"), None);
    // The security headers still apply.
    assert_eq!(header(&allowed, "x-frame-options").as_deref(), Some("DENY"));

    // Wrong, look-alike, other-scheme, opaque, or no origin: not a single field.
    for origin in ["https://evil.example.com", "https://app.example.com.evil.net", "http://app.example.com", "null"] {
        let refused = get_from(&app, "/health/live", origin).await;
        assert_eq!(refused.status(), 200, "{origin}");
        assert_eq!(cors_fields(&refused), Vec::<String>::new(), "{origin}");
    }
    assert_eq!(cors_fields(&app.get("/health/live").await), Vec::<String>::new());

    // A cross-origin call refused by authentication is still readable by the app.
    let unauthenticated = app
        .http
        .post(app.url("/v1/authorize"))
        .header("origin", APP)
        .header("x-tenant-id", "default")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&unauthenticated, "access-control-allow-origin").as_deref(), Some(APP));
    expect_problem(unauthenticated, 401, "unauthenticated").await;
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_before_authentication() {
    let Some(app) = app_with(&[("CORS_ALLOWED_ORIGINS", APP)]).await else { return };
    let answer = preflight(&app, "/v1/authorize", APP).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some(APP));
    let methods = all_values(&answer, "access-control-allow-methods");
    assert!(methods.contains("post"), "{methods}");
    let headers = all_values(&answer, "access-control-allow-headers");
    assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");
    assert_eq!(header(&answer, "access-control-max-age").as_deref(), Some("600"));
    assert_eq!(header(&answer, "access-control-allow-credentials"), None);
    assert_eq!(header(&answer, "x-content-type-options").as_deref(), Some("nosniff"));
    // An unknown path too: the preflight never reaches the 404 fallback.
    assert_eq!(preflight(&app, "/no/such/route", APP).await.status(), 200);

    for origin in ["https://evil.example.com", "https://app.example.com.evil.net"] {
        let refused = preflight(&app, "/v1/authorize", origin).await;
        assert_eq!(cors_fields(&refused), Vec::<String>::new(), "{origin}");
    }
}

#[tokio::test]
async fn credentials_are_allowed_only_for_the_listed_origins_when_asked_for() {
    let origins = format!("{APP}, https://admin.example.com");
    let Some(app) = app_with(&[("CORS_ALLOWED_ORIGINS", origins.as_str()), ("CORS_ALLOW_CREDENTIALS", "true")]).await
    else {
        return;
    };
    for origin in [APP, "https://admin.example.com"] {
        let allowed = get_from(&app, "/health/live", origin).await;
        assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some(origin));
        assert_eq!(header(&allowed, "access-control-allow-credentials").as_deref(), Some("true"));
        let answer = preflight(&app, "/v1/authorize", origin).await;
        assert_eq!(header(&answer, "access-control-allow-credentials").as_deref(), Some("true"));
    }
    let refused = get_from(&app, "/health/live", "https://evil.example.com").await;
    assert_eq!(cors_fields(&refused), Vec::<String>::new());
    let refused = preflight(&app, "/v1/authorize", "https://evil.example.com").await;
    assert_eq!(cors_fields(&refused), Vec::<String>::new());
}

#[tokio::test]
async fn the_any_origin_gets_a_star_and_never_credentials() {
    let Some(app) = app_with(&[("CORS_ALLOWED_ORIGINS", "*")]).await else { return };
    for origin in [APP, "https://anyone.example.net"] {
        let response = get_from(&app, "/health/live", origin).await;
        assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some("*"), "{origin}");
        assert_eq!(header(&response, "access-control-allow-credentials"), None, "{origin}");
        let answer = preflight(&app, "/v1/authorize", origin).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some("*"), "{origin}");
        assert_eq!(header(&answer, "access-control-allow-credentials"), None, "{origin}");
    }
}

#[test]
fn the_any_origin_with_credentials_is_refused() {
    let guard = GuardCommand::new(GUARD).env("CORS_ALLOWED_ORIGINS", "*").env("CORS_ALLOW_CREDENTIALS", "true");
    let output = guard.run(&["config", "check"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CORS_ALLOW_CREDENTIALS"), "{stderr}");

    // Either alone is fine.
    for (key, value) in [("CORS_ALLOWED_ORIGINS", "*"), ("CORS_ALLOW_CREDENTIALS", "true")] {
        let output = GuardCommand::new(GUARD).env(key, value).run(&["config", "check"]);
        assert!(output.status.success(), "{key}={value}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn an_origin_that_is_not_just_scheme_host_and_port_is_refused() {
    for origin in [
        "https://app.example.com/path",
        "https://app.example.com/",
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com,*",
    ] {
        let output = GuardCommand::new(GUARD).env("CORS_ALLOWED_ORIGINS", origin).run(&["config", "check"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{origin}: {stderr}");
        assert!(stderr.contains("CORS_ALLOWED_ORIGINS"), "{origin}: {stderr}");
    }
    let fine = GuardCommand::new(GUARD)
        .env("CORS_ALLOWED_ORIGINS", "https://app.example.com, http://localhost:3000")
        .run(&["config", "check"]);
    assert!(fine.status.success(), "{}", String::from_utf8_lossy(&fine.stderr));
}
