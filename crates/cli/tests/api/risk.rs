//! Risk-based step-up on both backends, with sign-ins from several loopback
//! addresses (127.0.0.1, 127.0.1.5, 127.0.2.9: three /24 networks) and the device
//! cookie kept or dropped: scores and reasons in the session list, a risky sign-in of
//! a user without a factor stepped up with a code sent to a real SMTP server, and an
//! address that tried many accounts refused without a word about the password, while
//! the user's known device keeps signing in.

use std::time::Duration;

use guard_core::events::Actor;
use guard_testkit::{SmtpSink, TestApp, backend_test};
use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};

use crate::mfa::{PASSWORD, new_user};
use crate::support::expect_problem;

/// Posts a sign-in to the risky tenant from `source` with `device` (the guard_device
/// cookie) when given.
async fn sign_in_from(
    app: &TestApp,
    source: &str,
    device: Option<&str>,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let cookie: Vec<(&str, String)> = device.map(|d| ("cookie", format!("guard_device={d}"))).into_iter().collect();
    crate::support::sign_in_from(app, "risky", source, email, password, &cookie).await
}

/// The device cookie an answer sets, when it sets one.
fn device_cookie(response: &reqwest::Response) -> Option<String> {
    response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        let value = c.strip_prefix("guard_device=")?;
        Some(value.split(';').next()?.to_owned())
    })
}

async fn session_risk(app: &TestApp, session: &str) -> Value {
    let list: Value = app
        .http
        .get(app.url("/v1/me/sessions"))
        .header("x-tenant-id", "risky")
        .bearer_auth(session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current = list["sessions"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap();
    current["risk"].clone()
}

backend_test!(risky_sign_ins_are_scored_stepped_up_by_email_and_refused, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let Some(app) = TestApp::builder(backend).env("SMTP_URL", sink.url()).spawn().await else { return };
    app.state.tenants.create(Actor::Operator, "Risky", Some("risky")).await.unwrap();
    let settings = json!({ "risk_mfa_threshold": 50, "risk_deny_threshold": 90 });
    app.state.tenants.update_settings(Actor::Operator, "risky", &settings).await.unwrap();
    new_user(&app, "risky", "eve@example.com", &[]).await;

    // The first sign-in has no history to compare with; it hands out a device cookie.
    let first = sign_in_from(&app, "127.0.0.1", None, "eve@example.com", PASSWORD).await;
    assert_eq!(first.status(), 200);
    let device = device_cookie(&first).expect("a device cookie");
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        session_risk(&app, first["session_token"].as_str().unwrap()).await,
        json!({ "score": 0, "reasons": [] })
    );
    // The same device from a new address in a known network.
    let known = sign_in_from(&app, "127.0.0.2", Some(&device), "eve@example.com", PASSWORD).await;
    assert!(device_cookie(&known).is_none(), "a known device cookie is kept");
    let known: Value = known.json().await.unwrap();
    assert_eq!(
        session_risk(&app, known["session_token"].as_str().unwrap()).await,
        json!({ "score": 10, "reasons": ["new_ip"] })
    );

    // A new device on a new network: 55, over the step-up threshold. Eve has no
    // factor, so a one-time code goes to her email.
    let risky = sign_in_from(&app, "127.0.1.5", None, "eve@example.com", PASSWORD).await;
    assert_eq!(risky.status(), 202);
    let pending: Value = risky.json().await.unwrap();
    assert_eq!(pending["methods"], json!(["email_code"]));
    let mail = sink.wait_for("eve@example.com", "sign-in code", Duration::from_secs(10)).await;
    let text = mail["text"].as_str().unwrap();
    let code: String =
        text.lines().map(str::trim).find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit())).unwrap().to_owned();
    assert!(text.contains("127.0.1.5"), "{text}");
    let verify = |code: String| {
        app.http
            .post(app.url("/v1/auth/mfa/verify"))
            .header("x-tenant-id", "risky")
            .json(&json!({ "challenge_id": pending["challenge_id"], "code": code }))
            .send()
    };
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    expect_problem(verify(wrong).await.unwrap(), 401, "invalid_mfa_code").await;
    let done = verify(code.clone()).await.unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    let risk = session_risk(&app, done["session_token"].as_str().unwrap()).await;
    assert_eq!(risk, json!({ "score": 55, "reasons": ["new_device", "new_network"] }));
    expect_problem(verify(code).await.unwrap(), 401, "invalid_mfa_challenge").await;

    // Credential stuffing from one address: 20 accounts tried and failed.
    for n in 0..20 {
        let attempt = sign_in_from(&app, "127.0.2.9", None, &format!("victim{n}@example.com"), "guess").await;
        expect_problem(attempt, 401, "invalid_credentials").await;
    }
    // From there even the right password is refused, exactly like a wrong one.
    let denied = sign_in_from(&app, "127.0.2.9", Some(&device), "eve@example.com", PASSWORD).await;
    expect_problem(denied, 403, "login_denied").await;
    let denied = sign_in_from(&app, "127.0.2.9", Some(&device), "eve@example.com", "wrong password").await;
    expect_problem(denied, 403, "login_denied").await;
    // Eve's own device and address are not affected.
    assert_eq!(sign_in_from(&app, "127.0.0.1", Some(&device), "eve@example.com", PASSWORD).await.status(), 200);
});

backend_test!(a_risky_sign_in_that_must_enrol_proves_the_account_by_email_before_enrolling, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let Some(app) = TestApp::builder(backend).env("SMTP_URL", sink.url()).spawn().await else { return };
    app.state.tenants.create(Actor::Operator, "Risky", Some("risky")).await.unwrap();
    let settings = json!({
        "risk_mfa_threshold": 50, "risk_deny_threshold": 90,
        "mfa_required": true, "mfa_enrollment_grace_seconds": 1,
    });
    app.state.tenants.update_settings(Actor::Operator, "risky", &settings).await.unwrap();
    new_user(&app, "risky", "eve@example.com", &[]).await;
    // A first sign-in inside the grace period gives guard a device and address to
    // compare with; then the grace period runs out.
    let first = sign_in_from(&app, "127.0.0.1", None, "eve@example.com", PASSWORD).await;
    assert_eq!(first.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // A new device on a new network: flagged. The password alone does not open an
    // enrolment; an emailed code must prove the account first.
    let risky = sign_in_from(&app, "127.0.1.5", None, "eve@example.com", PASSWORD).await;
    assert_eq!(risky.status(), 202);
    let pending: Value = risky.json().await.unwrap();
    assert_eq!(pending["methods"], json!(["email_code"]), "{pending}");
    assert_eq!(pending["enrollment_required"], false, "{pending}");
    let post = |path: &'static str, body: Value| {
        app.http.post(app.url(path)).header("x-tenant-id", "risky").json(&body).send()
    };
    let early = post("/v1/auth/mfa/totp", json!({ "challenge_id": pending["challenge_id"] })).await.unwrap();
    assert!(early.status().is_client_error(), "no enrolment before the emailed code: {}", early.status());
    let early = post("/v1/auth/mfa/webauthn/start", json!({ "challenge_id": pending["challenge_id"] })).await.unwrap();
    assert!(early.status().is_client_error(), "no passkey enrolment before the emailed code: {}", early.status());

    let mail = sink.wait_for("eve@example.com", "sign-in code", Duration::from_secs(10)).await;
    let text = mail["text"].as_str().unwrap();
    let code: String =
        text.lines().map(str::trim).find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit())).unwrap().to_owned();
    let proved = post("/v1/auth/mfa/verify", json!({ "challenge_id": pending["challenge_id"], "code": code }));
    let proved = proved.await.unwrap();
    assert_eq!(proved.status(), 202, "the code leads to the enrolment, not a session");
    let enrol: Value = proved.json().await.unwrap();
    assert_eq!(enrol["enrollment_required"], true, "{enrol}");
    assert_eq!(enrol["methods"], json!(["totp", "webauthn"]), "{enrol}");
    assert!(enrol.get("session_token").is_none(), "{enrol}");
    assert_ne!(enrol["challenge_id"], pending["challenge_id"], "a new challenge for the enrolment");
    // The spent challenge is gone; the new one enrols TOTP and signs in.
    let again = post("/v1/auth/mfa/verify", json!({ "challenge_id": pending["challenge_id"], "code": "000000" }));
    expect_problem(again.await.unwrap(), 401, "invalid_mfa_challenge").await;
    let started = post("/v1/auth/mfa/totp", json!({ "challenge_id": enrol["challenge_id"] })).await.unwrap();
    assert_eq!(started.status(), 201);
    let secret = started.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let body = json!({ "challenge_id": enrol["challenge_id"], "code": crate::mfa::pyotp(&secret, 0) });
    let done = post("/v1/auth/mfa/verify", body).await.unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["recovery_codes"].as_array().map(Vec::len), Some(10), "{done}");
});
