//! `guard cert list`, and the debugging endpoints: a CPU profile in pprof's format and
//! runtime statistics, for platform administrators or on ADMIN_LISTEN.

use std::io::Read as _;

use guard_testkit::{Backend, TestApp, backend_test};
use pprof::protos::Message as _;
use serde_json::Value;

use crate::limits::{admin_session, guard_on};
use crate::mfa::{new_user, password_step};
use crate::tls::TestCert;

backend_test!(cert_list_shows_the_tls_chain_and_the_signing_keys_with_their_expiry, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    // A sign-in creates the default tenant's signing key.
    new_user(&app, "default", "someone@example.com", &[]).await;
    assert_eq!(password_step(&app, "default", "someone@example.com").await.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::create(dir.path(), "served", "auth.example.test");
    let cli = guard_on(&app)
        .env("TLS_CERT_FILE", cert.cert.display().to_string())
        .env("TLS_KEY_FILE", cert.key.display().to_string())
        .env("SIGNING_KEY_MAX_AGE", "90d");
    let out = cli.run(&["cert", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    // Soonest first: the 30-day certificate, then the key due at 90 days.
    assert_eq!(items[0]["kind"], "tls");
    assert_eq!(items[0]["name"], "auth.example.test");
    let days = items[0]["days_left"].as_f64().unwrap();
    assert!((29.0..=30.1).contains(&days), "{days}");
    assert_eq!(items[1]["kind"], "signing_key");
    assert_eq!(items[1]["tenant"], "default");
    assert_eq!(items[1]["meaning"], "signing key due for rotation");
    let days = items[1]["days_left"].as_f64().unwrap();
    assert!((89.0..=90.1).contains(&days), "{days}");

    // --expiring: only what falls within, and exit 1 when anything does.
    let soon = cli.run(&["cert", "list", "--expiring", "31d"]);
    assert_eq!(soon.status.code(), Some(1));
    let text = String::from_utf8_lossy(&soon.stdout);
    assert!(text.contains("auth.example.test") && !text.contains("signing_key"), "{text}");
    let stderr = String::from_utf8_lossy(&soon.stderr);
    assert!(stderr.contains("1 certificates or keys expire within 31d"), "{stderr}");
    let none = cli.run(&["cert", "list", "--expiring", "1d"]);
    assert!(none.status.success(), "{}", String::from_utf8_lossy(&none.stderr));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_administrator_gets_a_cpu_profile_and_runtime_statistics() {
    let Some(app) = TestApp::builder(Backend::Sqlite).env("ENABLE_PPROF", "true").spawn().await else { return };
    let token = admin_session(&app).await;
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.http.get(app.url(path)).header("x-tenant-id", "default");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let response = get("/debug/pprof/profile?seconds=1", Some(&token)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut raw).unwrap();
    let profile = pprof::protos::Profile::decode(raw.as_slice()).unwrap();
    let strings = &profile.string_table;
    let sample_types: Vec<&str> = profile.sample_type.iter().map(|t| strings[t.ty as usize].as_str()).collect();
    assert!(sample_types.contains(&"cpu"), "{sample_types:?}");
    assert!(profile.duration_nanos >= 900_000_000, "{}", profile.duration_nanos);

    let vars: Value = get("/debug/vars", Some(&token)).await.unwrap().json().await.unwrap();
    assert!(vars["process"]["resident_bytes"].as_u64().unwrap() > 1 << 20, "{vars}");
    assert!(vars["runtime"]["workers"].as_u64().unwrap() >= 1);
    assert_eq!(vars["backend"], "sqlite");

    // Not for other users, nor for anyone without a session, nor out of range.
    new_user(&app, "default", "user@example.com", &[]).await;
    let login: Value = password_step(&app, "default", "user@example.com").await.json().await.unwrap();
    let user = login["session_token"].as_str().unwrap();
    let refused = get("/debug/vars", Some(user)).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["action"], "platform.debug");
    assert_eq!(get("/debug/vars", None).await.unwrap().status(), 401);
    let too_long = get("/debug/pprof/profile?seconds=600", Some(&token)).await.unwrap();
    assert_eq!(too_long.status(), 400);

    // Off by default.
    let Some(off) = TestApp::spawn(Backend::Sqlite).await else { return };
    let token = admin_session(&off).await;
    let response =
        off.http.get(off.url("/debug/vars")).header("x-tenant-id", "default").bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // Before sign-in: a disabled endpoint does not reveal itself with a 401.
    let anonymous = off.http.get(off.url("/debug/vars")).header("x-tenant-id", "default").send().await.unwrap();
    assert_eq!(anonymous.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_serves_metrics_and_debugging_without_sign_in_and_nothing_else() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cmd = guard_testkit::GuardCommand::new(crate::support::GUARD)
        .env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY)
        .env("ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("ENABLE_PPROF", "true");
    let mut guard = cmd.serve(&[]).await;
    let admin = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let vars = client.get(format!("{admin}/debug/vars")).send().await.unwrap();
    assert_eq!(vars.status(), 200);
    assert!(vars.json::<Value>().await.unwrap()["process"]["threads"].as_u64().unwrap() >= 2);
    let metrics = client.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("guard_http_requests_total") || metrics.contains("# TYPE"), "{metrics}");
    assert_eq!(client.get(format!("{admin}/v1/me")).send().await.unwrap().status(), 404);
    // The public listener still asks for a session.
    let public =
        client.get(format!("{}/debug/vars", guard.base)).header("x-tenant-id", "default").send().await.unwrap();
    assert_eq!(public.status(), 401);
    assert!(guard.terminate().success());
}
