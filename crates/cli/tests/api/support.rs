//! Routes and assertions shared by the tests.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use guard_api::ApiError;
use guard_api::AppState;
use guard_api::extract::{AppJson, AppPath, AppQuery};
use serde::Deserialize;
use serde_json::{Value, json};

pub const GUARD: &str = env!("CARGO_BIN_EXE_guard");

/// A `guard` command against a fresh database, and that database's URL: SQLite at the
/// default `sqlite://./data/guard.db` in the command's own directory, or a new
/// PostgreSQL database (dropped with the returned handle). `None`: backend unavailable.
pub async fn guard_with_database(
    backend: guard_testkit::Backend,
) -> Option<(guard_testkit::GuardCommand, String, Option<guard_testkit::PostgresDatabase>)> {
    let cmd = guard_testkit::GuardCommand::new(GUARD).env("LOG_LEVEL", "warn");
    match backend {
        guard_testkit::Backend::Sqlite => {
            let url = format!("sqlite://{}/data/guard.db", cmd.dir().display());
            Some((cmd, url, None))
        }
        guard_testkit::Backend::Postgres => {
            let db = guard_testkit::PostgresDatabase::create().await?;
            let url = db.url.clone();
            let cmd = cmd.env("DATABASE_URL", url.clone()).env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY);
            Some((cmd, url, Some(db)))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Greeting {
    pub name: String,
    #[allow(dead_code)]
    pub count: u32,
}

#[derive(Debug, Deserialize)]
pub struct Delay {
    pub ms: u64,
}

/// Handlers guard does not have, mounted behind guard's own middleware: a JSON
/// endpoint, a path template, a slow one, one that panics, one that fails inside.
pub fn test_routes() -> Router<AppState> {
    Router::new()
        .route("/test/echo", post(|AppJson(g): AppJson<Greeting>| async move { AppJson(json!({ "hello": g.name })) }))
        .route("/test/items/{id}", get(|AppPath(id): AppPath<String>| async move { AppJson(json!({ "id": id })) }))
        .route(
            "/test/slow",
            get(|AppQuery(d): AppQuery<Delay>| async move {
                tokio::time::sleep(Duration::from_millis(d.ms)).await;
                "done"
            }),
        )
        .route("/test/panic", get(|| async { panicking_handler() }))
        .route(
            "/test/internal",
            get(|| async {
                Err::<(), _>(ApiError::internal("connection to db-7.internal failed: password authentication failed"))
            }),
        )
}

fn panicking_handler() -> &'static str {
    let items: Vec<&str> = Vec::new();
    items[3]
}

/// Asserts `response` is a problem document with `status` and `code`, and returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let header_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("urn:guard:problem:{code}"), "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert_eq!(body["request_id"].as_str(), header_id.as_deref(), "problem names the request id of its response");
    body
}

/// A password sign-in to `tenant` sent from the loopback address `source` (any of
/// 127.0.0.0/8), with `headers` added: how tests play clients at several addresses.
pub async fn sign_in_from(
    app: &guard_testkit::TestApp,
    tenant: &str,
    source: &str,
    email: &str,
    password: &str,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let source: std::net::IpAddr = source.parse().expect("a loopback address");
    let client = reqwest::Client::builder().local_address(source).build().expect("client");
    let mut request = client
        .post(app.url("/v1/auth/password/login"))
        .header("x-tenant-id", tenant)
        .json(&json!({ "email": email, "password": password }));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("guard answers")
}
