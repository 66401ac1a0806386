//! Graceful shutdown: in-flight requests finish; the wait is bounded; the audit
//! log's end is signed before the process exits, even under write load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guard_testkit::{Backend, TestApp, backend_test};
use sqlx::Connection;

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

/// Each chain's head, its latest checkpoint's seq, and the records still unsealed.
async fn audit_ends(backend: Backend, url: &str) -> (Vec<(i64, Option<i64>)>, i64) {
    let heads = "SELECT c.last_seq, (SELECT MAX(k.seq) FROM audit_checkpoints k WHERE k.tenant_id = c.tenant_id) \
                 FROM audit_chains c ORDER BY c.tenant_id";
    let queued = "SELECT COUNT(*) FROM audit_queue";
    macro_rules! read {
        ($conn:ty) => {{
            let mut conn = <$conn>::connect(url).await.unwrap();
            let heads: Vec<(i64, Option<i64>)> = sqlx::query_as(heads).fetch_all(&mut conn).await.unwrap();
            let queued: i64 = sqlx::query_scalar(queued).fetch_one(&mut conn).await.unwrap();
            (heads, queued)
        }};
    }
    match backend {
        Backend::Sqlite => read!(sqlx::SqliteConnection),
        Backend::Postgres => read!(sqlx::PgConnection),
    }
}

backend_test!(sigterm_under_write_load_signs_a_checkpoint_of_every_chain_end, |backend| {
    let Some((cmd, url, _db)) = crate::support::guard_with_database(backend).await else { return };
    let cmd = cmd
        .env("DATABASE_URL", url.clone())
        .env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY)
        .env("GUARD_BOOTSTRAP_ADMIN_EMAIL", "admin@example.com")
        .env("GUARD_BOOTSTRAP_ADMIN_PASSWORD", crate::mfa::PASSWORD);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // A few rounds, each stopped after a different stretch of load, so that SIGTERM
    // meets the sealer at different points of its loop (in a pass, in the wait after
    // a write).
    for (round, load_ms) in [700u64, 1100, 1600].into_iter().enumerate() {
        let mut guard = cmd.serve(&[]).await;
        let base = guard.base.clone();
        let signed_in: serde_json::Value = http
            .post(format!("{base}/v1/auth/password/login"))
            .header("X-Tenant-ID", "default")
            .json(&serde_json::json!({ "email": "admin@example.com", "password": crate::mfa::PASSWORD }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = signed_in["session_token"].as_str().unwrap().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for n in 0..6 {
            let (http, base, token, stop, writes) =
                (http.clone(), base.clone(), token.clone(), stop.clone(), writes.clone());
            writers.push(tokio::spawn(async move {
                let email = format!("load{round}-{n}@example.com");
                let created = http
                    .post(format!("{base}/v1/users"))
                    .header("X-Tenant-ID", "default")
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "email": email }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
                let mut i = 0u64;
                // Until the server stops answering: a refused connection ends the load.
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let changed = http
                        .patch(format!("{base}/v1/users/{email}"))
                        .header("X-Tenant-ID", "default")
                        .bearer_auth(&token)
                        .json(&serde_json::json!({ "display_name": format!("Load {n} {i}") }))
                        .send()
                        .await;
                    match changed {
                        Ok(r) if r.status().is_success() => {
                            writes.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        let before = writes.load(Ordering::Relaxed);
        assert!(before > 0, "round {round}: no write went through before SIGTERM");
        let status = tokio::task::spawn_blocking(move || {
            let status = guard.terminate();
            (status, guard.stderr())
        });
        // The writers keep going while guard drains, until it refuses them.
        let (status, stderr) = status.await.unwrap();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(status.success(), "round {round}: SIGTERM is a clean exit: {stderr}");

        let (heads, queued) = audit_ends(backend, &url).await;
        assert_eq!(queued, 0, "round {round}: every record is sealed at exit");
        assert!(!heads.is_empty());
        for (last_seq, checkpoint) in heads {
            assert_eq!(
                checkpoint,
                Some(last_seq),
                "round {round}: the chain ends at seq {last_seq} but its last signed checkpoint is at {checkpoint:?} \
                 ({before}+ writes under load)"
            );
        }
    }
    let verified = cmd.run(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
});
