//! Every error is a problem document with a stable code, and bad input changes nothing.

use guard_testkit::{Backend, TestApp, backend_test};
use serde_json::Value;

use crate::support::{expect_problem, test_routes};

async fn app(backend: Backend) -> Option<TestApp> {
    TestApp::builder(backend).routes(test_routes()).spawn().await
}

async fn post_json(app: &TestApp, body: impl Into<String>) -> reqwest::Response {
    let request = app.http.post(app.url("/test/echo")).header("content-type", "application/json");
    request.body(body.into()).send().await.unwrap()
}

backend_test!(an_unknown_route_is_a_404_problem, |backend| {
    let Some(app) = app(backend).await else { return };
    let body = expect_problem(app.get("/no/such/route").await, 404, "not_found").await;
    assert!(body["detail"].as_str().unwrap().contains("/no/such/route"), "{body}");
});

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_that_keeps_the_allow_header() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let response = app.http.delete(app.url("/health")).send().await.unwrap();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
    expect_problem(response, 405, "method_not_allowed").await;
    assert!(allow.is_some_and(|a| a.contains("GET")));
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_that_names_the_syntax_error() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let response = post_json(&app, r#"{"name": "ada", "count": 1"#).await;
    let body = expect_problem(response, 400, "invalid_json").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("EOF") || detail.contains("line 1"), "{detail}");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_400_problem_that_names_the_field() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let response = post_json(&app, r#"{"name": "ada", "count": "many"}"#).await;
    let body = expect_problem(response, 400, "invalid_json").await;
    assert!(body["detail"].as_str().unwrap().contains("count"), "{body}");

    let ok = post_json(&app, r#"{"name": "ada", "count": 2}"#).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["hello"], "ada");
}

#[tokio::test]
async fn json_without_its_content_type_is_a_415_problem() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let response = app.http.post(app.url("/test/echo")).body(r#"{"name":"ada","count":1}"#).send().await.unwrap();
    expect_problem(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let Some(app) =
        TestApp::builder(Backend::Sqlite).env("GUARD_BODY_LIMIT", "1KiB").routes(test_routes()).spawn().await
    else {
        return;
    };
    let big = format!(r#"{{"name": "{}", "count": 1}}"#, "a".repeat(4096));
    let response = post_json(&app, big).await;
    expect_problem(response, 413, "payload_too_large").await;
    let small = post_json(&app, r#"{"name":"ada","count":1}"#).await;
    assert_eq!(small.status(), 200, "the limit only refuses what is over it");
}

backend_test!(a_panicking_handler_is_a_500_problem_and_the_server_keeps_serving, |backend| {
    let Some(app) = app(backend).await else { return };
    let body = expect_problem(app.get("/test/panic").await, 500, "internal_error").await;
    assert!(body.get("detail").is_none(), "no panic text in the answer: {body}");
    assert!(!body.to_string().contains("index out of bounds"));
    for _ in 0..3 {
        assert_eq!(app.get("/health").await.status(), 200);
    }
});

#[tokio::test]
async fn an_internal_error_sends_no_internal_text() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let body = expect_problem(app.get("/test/internal").await, 500, "internal_error").await;
    let text = body.to_string();
    assert!(!text.contains("db-7") && !text.contains("password"), "{text}");
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_a_503_problem() {
    let Some(app) =
        TestApp::builder(Backend::Sqlite).env("GUARD_REQUEST_TIMEOUT", "300ms").routes(test_routes()).spawn().await
    else {
        return;
    };
    let body = expect_problem(app.get("/test/slow?ms=5000").await, 503, "request_timeout").await;
    assert!(body["detail"].as_str().unwrap().contains("0.3"), "{body}");
    assert_eq!(app.get("/test/slow?ms=10").await.status(), 200);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_clients_own_is_kept() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let generated = app.get("/health").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7, "generated ids are UUIDv7: {id}");
    let other = app.get("/health").await.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, other);

    let kept = app.http.get(app.url("/no/such")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc-123");
    let body = expect_problem(kept, 404, "not_found").await;
    assert_eq!(body["request_id"], "trace-abc-123");
}

#[tokio::test]
async fn an_unsafe_client_request_id_is_replaced() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let response = app.http.get(app.url("/health")).header("x-request-id", "evil\" id {}").send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "evil\" id {}");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn a_bad_query_parameter_is_a_400_problem_that_names_it() {
    let Some(app) = app(Backend::Sqlite).await else { return };
    let body = expect_problem(app.get("/test/slow?ms=soon").await, 400, "invalid_parameter").await;
    assert!(body["detail"].as_str().unwrap().contains("ms"), "{body}");
    assert_eq!(body["parameter"], "ms", "{body}");
}
