//! A dependency going away under a running guard, and coming back.

use std::time::{Duration, Instant};

use guard_testkit::{Backend, TcpProxy, TestApp, redis_url};
use serde_json::Value;

use crate::support::expect_problem;

/// Polls `path` until it answers `status`, for at most `limit`.
async fn eventually_status(app: &TestApp, path: &str, status: u16, limit: Duration) -> reqwest::Response {
    let started = Instant::now();
    loop {
        let response = app.get(path).await;
        if response.status().as_u16() == status || started.elapsed() > limit {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn host_port(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = url::Url::parse(url).unwrap();
    (url.host_str().unwrap(), url.port_or_known_default().unwrap_or(5432)).to_socket_addrs().unwrap().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_postgres_turns_health_db_503_while_health_stays_200_and_it_recovers_without_restart() {
    let admin = guard_testkit::postgres_admin_url();
    // The proxy stands between guard and PostgreSQL; switching it off is, to guard,
    // the database stopping, without stopping it for the other tests.
    let proxy = TcpProxy::start(host_port(&admin)).await;
    let proxy_addr = proxy.addr;
    let Some(app) = TestApp::builder(Backend::Postgres)
        .env("GUARD_HEALTH_CHECK_TIMEOUT", "1s")
        .env("DB_ACQUIRE_TIMEOUT", "1s")
        .database_url(move |url| {
            let mut url = url::Url::parse(url).unwrap();
            url.set_host(Some(&proxy_addr.ip().to_string())).unwrap();
            url.set_port(Some(proxy_addr.port())).unwrap();
            url.to_string()
        })
        .spawn()
        .await
    else {
        return;
    };
    assert_eq!(app.get("/health/db").await.status(), 200);

    proxy.down();
    let down = eventually_status(&app, "/health/db", 503, Duration::from_secs(10)).await;
    let body = expect_problem(down, 503, "database_unavailable").await;
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert!(!body.to_string().contains("postgres://"), "no connection string in answers: {body}");
    assert_eq!(app.get("/health").await.status(), 200, "liveness does not depend on the database");
    assert_eq!(app.get("/health/live").await.status(), 200);
    expect_problem(app.get("/health/ready").await, 503, "not_ready").await;
    let detailed = expect_problem(app.get("/health/detailed").await, 503, "unhealthy").await;
    assert_eq!(detailed["components"]["database"]["status"], "down");

    proxy.up();
    let back = eventually_status(&app, "/health/db", 200, Duration::from_secs(15)).await;
    assert_eq!(back.status(), 200, "guard reconnects by itself");
    let body: Value = back.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(app.get("/health/ready").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_or_later_turns_health_redis_503_and_it_recovers_without_restart() {
    let Some(redis) = redis_url() else { return };
    let proxy = TcpProxy::start(host_port(&redis)).await;
    proxy.down(); // Redis is down when guard starts: guard starts all the same.
    let Some(app) = TestApp::builder(Backend::Sqlite)
        .env("REDIS_URL", format!("redis://{}", proxy.addr))
        .env("REDIS_CONNECT_TIMEOUT", "500ms")
        .env("REDIS_RESPONSE_TIMEOUT", "500ms")
        .spawn()
        .await
    else {
        return;
    };
    expect_problem(app.get("/health/redis").await, 503, "redis_unavailable").await;
    proxy.up();
    let first = eventually_status(&app, "/health/redis", 200, Duration::from_secs(15)).await;
    assert_eq!(first.status(), 200, "connects once Redis is there");

    proxy.down();
    let down = eventually_status(&app, "/health/redis", 503, Duration::from_secs(10)).await;
    expect_problem(down, 503, "redis_unavailable").await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/health/ready").await.status(), 200, "Redis is optional: readiness follows the database");

    proxy.up();
    let back = eventually_status(&app, "/health/redis", 200, Duration::from_secs(15)).await;
    assert_eq!(back.status(), 200, "the connection manager reconnects by itself");
}
