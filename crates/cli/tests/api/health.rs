use guard_testkit::{Backend, GuardCommand, TestApp, backend_test, redis_url};
use serde_json::Value;

use crate::support::{GUARD, expect_problem};

backend_test!(health_answers_ok_with_version_and_uptime, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64(), "{body}");
});

backend_test!(health_db_runs_a_query_and_names_the_backend, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let response = app.get("/health/db").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let expected = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    assert_eq!(body["backend"], expected);
    assert!(body["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{body}");
});

backend_test!(live_and_ready_answer_200_when_the_database_is_up, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    for path in ["/health/live", "/health/ready"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
});

backend_test!(health_detailed_lists_every_component_with_latency_and_pool_statistics, |backend| {
    let Some(app) = TestApp::builder(backend).env("DB_MAX_OPEN_CONNS", "3").env("DB_MAX_IDLE_CONNS", "2").spawn().await
    else {
        return;
    };
    let response = app.get("/health/detailed").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let db = &body["components"]["database"];
    assert_eq!(db["status"], "up", "{body}");
    assert!(db["latency_ms"].is_f64(), "{body}");
    assert_eq!(db["details"]["pool"]["max_open"], 3, "{body}");
    assert_eq!(db["details"]["pool"]["max_idle"], 2, "{body}");
    assert!(db["details"]["pool"]["open"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(body["components"]["redis"]["status"], "disabled");
});

#[tokio::test]
async fn health_redis_is_disabled_when_redis_is_not_configured() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let response = app.get("/health/redis").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "disabled" }));
}

#[tokio::test]
async fn health_redis_answers_ok_when_redis_is_reachable() {
    let Some(redis) = redis_url() else { return };
    let Some(app) = TestApp::builder(Backend::Sqlite).env("REDIS_URL", redis).spawn().await else { return };
    let response = app.get("/health/redis").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body["latency_ms"].is_f64(), "{body}");
    let detailed: Value = app.get("/health/detailed").await.json().await.unwrap();
    assert_eq!(detailed["components"]["redis"]["status"], "up", "{detailed}");
}

#[tokio::test]
async fn health_redis_is_503_when_configured_but_unreachable_and_health_stays_200() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let Some(app) = TestApp::builder(Backend::Sqlite)
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .env("REDIS_CONNECT_TIMEOUT", "500ms")
        .spawn()
        .await
    else {
        return;
    };
    let body = expect_problem(app.get("/health/redis").await, 503, "redis_unavailable").await;
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert_eq!(app.get("/health").await.status(), 200);

    let detailed = expect_problem(app.get("/health/detailed").await, 503, "unhealthy").await;
    assert_eq!(detailed["components"]["redis"]["status"], "down", "{detailed}");
    assert_eq!(detailed["components"]["database"]["status"], "up", "{detailed}");
    assert!(detailed["detail"].as_str().unwrap().starts_with("redis:"), "{detailed}");
}

backend_test!(health_check_command_prints_a_table_and_exits_zero_when_healthy, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let output = GuardCommand::new(GUARD).run(&["health", "check", "--url", &app.base]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("COMPONENT"), "{stdout}");
    let db_line = stdout.lines().find(|l| l.starts_with("database")).expect("database row");
    assert!(db_line.contains(" up "), "{db_line}");
    assert!(db_line.contains("pool"), "{db_line}");
    assert!(stdout.lines().any(|l| l.starts_with("redis") && l.contains("disabled")), "{stdout}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_command_exits_non_zero_when_a_component_is_down() {
    let Some(app) = TestApp::builder(Backend::Sqlite)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("REDIS_CONNECT_TIMEOUT", "300ms")
        .spawn()
        .await
    else {
        return;
    };
    let output = GuardCommand::new(GUARD).run(&["health", "check", "--url", &app.base]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stdout: {stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("redis") && l.contains("down")), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unhealthy"));
}

#[tokio::test]
async fn health_check_command_exits_non_zero_when_guard_is_unreachable() {
    let output = GuardCommand::new(GUARD).run(&["health", "check", "--url", "http://127.0.0.1:1", "--timeout", "2s"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach guard"), "{output:?}");
}
