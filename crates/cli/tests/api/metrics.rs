//! /metrics: Prometheus text that promtool accepts, with the families operators need.

use std::io::Write;
use std::process::{Command, Stdio};

use guard_testkit::{Backend, TestApp, backend_test, services_required};

use crate::support::test_routes;

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// The value of the sample whose name-and-labels text is exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

backend_test!(metrics_expose_http_database_build_and_process_families, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    assert_eq!(app.get("/health").await.status(), 200);
    let text = scrape(&app).await;
    for family in [
        "# TYPE guard_http_requests_total counter",
        "# TYPE guard_http_request_duration_seconds histogram",
        "# TYPE guard_http_requests_in_flight gauge",
        "# TYPE guard_database_connections gauge",
        "# TYPE guard_build_info gauge",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_open_fds gauge",
    ] {
        assert!(text.contains(family), "missing {family:?} in:\n{text}");
    }
    assert!(sample(&text, r#"guard_http_requests_total{method="GET",route="/health",status="200"}"#).unwrap() >= 1.0);
    assert!(
        text.contains(r#"guard_http_request_duration_seconds_bucket{method="GET",route="/health",le="0.005"}"#),
        "{text}"
    );
    assert!(sample(&text, r#"guard_database_connections{state="idle"}"#).is_some(), "{text}");
    assert!(sample(&text, r#"guard_database_connections{state="in_use"}"#).is_some(), "{text}");
    let build = format!(r#"guard_build_info{{version="{}","#, env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l.starts_with(&build) && l.contains("commit=")), "{text}");
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1_000_000.0);
});

#[tokio::test]
async fn the_route_label_is_the_matched_template_never_the_raw_path() {
    let Some(app) = TestApp::builder(Backend::Sqlite).routes(test_routes()).spawn().await else { return };
    let series = r#"guard_http_requests_total{method="GET",route="/test/items/{id}",status="200"}"#;
    let before = sample(&scrape(&app).await, series).unwrap_or(0.0);
    for id in ["user-4711", "user-4712"] {
        assert_eq!(app.get(&format!("/test/items/{id}")).await.status(), 200);
    }
    assert_eq!(app.get("/definitely/not/a/route-4713").await.status(), 404);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, series).unwrap() - before, 2.0, "{text}");
    assert!(!text.contains("user-47") && !text.contains("route-4713"), "raw path in labels:\n{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Some(app) = TestApp::builder(Backend::Sqlite).routes(test_routes()).spawn().await else { return };
    app.get("/health").await;
    app.get("/nope").await;
    app.get("/test/slow?ms=1").await; // a templated route of its own: /test/items is another test's
    let text = scrape(&app).await;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(!services_required(), "promtool is required here but cannot run: {e}");
            eprintln!("SKIP: promtool not installed (apt-get install prometheus)");
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
