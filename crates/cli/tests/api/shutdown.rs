//! Graceful shutdown: in-flight requests finish; the wait is bounded.

use std::time::{Duration, Instant};

use guard_testkit::{Backend, TestApp};

use crate::support::test_routes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let Some(mut app) = TestApp::builder(Backend::Sqlite).routes(test_routes()).spawn().await else { return };
    let slow = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/test/slow?ms=1500"));
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(app.state.lifecycle.is_draining(), "readiness reports draining");
    let fresh = reqwest::Client::new().get(app.url("/health")).timeout(Duration::from_secs(2)).send().await;
    assert!(fresh.is_err(), "no new connections once shutdown began");

    let response = slow.await.unwrap().expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    app.wait_stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_the_shutdown_timeout() {
    let Some(mut app) = TestApp::builder(Backend::Sqlite)
        .env("GUARD_SHUTDOWN_TIMEOUT", "1s")
        .env("GUARD_REQUEST_TIMEOUT", "60s")
        .routes(test_routes())
        .spawn()
        .await
    else {
        return;
    };
    let _stuck = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/test/slow?ms=30000"));
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    app.begin_shutdown();
    app.wait_stopped().await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "waited for the in-flight request: {waited:?}");
    assert!(waited < Duration::from_secs(10), "but not for its 30 s: {waited:?}");
}
