//! Second factors on both backends, with TOTP codes made by an independent
//! implementation (Python's pyotp): enrolment, sign-in with a code, replay, recovery
//! codes, challenges of another tenant, exhausted tries, a tenant that requires MFA,
//! and the administrator's reset.

use guard_core::events::Actor;
use guard_core::users::{ADMIN_ROLE, NewAccount};
use guard_testkit::{TestApp, backend_test};
use serde_json::{Value, json};

use crate::support::expect_problem;

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The pyotp code of `secret` at `offset` seconds from now.
pub(crate) fn pyotp(secret: &str, offset: i64) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + int(sys.argv[2])))"])
        .args([secret, &offset.to_string()])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "pyotp: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A six-digit code that is not `code`.
fn other_than(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

pub(crate) async fn send(
    app: &TestApp,
    method: &str,
    tenant: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request =
        app.http.request(method.parse().unwrap(), app.url(path)).header("x-tenant-id", tenant).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

pub(crate) async fn new_user(app: &TestApp, tenant: &str, email: &str, roles: &[&str]) {
    let roles = roles.iter().map(|r| (*r).to_owned()).collect();
    let account = NewAccount { email, password: Some(PASSWORD.into()), roles, ..NewAccount::default() };
    app.state.users.create(Actor::Operator, tenant, account).await.unwrap();
}

pub(crate) async fn password_step(app: &TestApp, tenant: &str, email: &str) -> reqwest::Response {
    send(app, "POST", tenant, "/v1/auth/password/login", None, json!({ "email": email, "password": PASSWORD })).await
}

pub(crate) async fn challenge(app: &TestApp, tenant: &str, email: &str) -> Value {
    let response = password_step(app, tenant, email).await;
    assert_eq!(response.status(), 202, "a second step is asked for");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["mfa_required"], true);
    body
}

pub(crate) async fn verify(app: &TestApp, tenant: &str, challenge: &Value, code: &str) -> reqwest::Response {
    let body = json!({ "challenge_id": challenge["challenge_id"], "code": code });
    send(app, "POST", tenant, "/v1/auth/mfa/verify", None, body).await
}

/// Enrols TOTP for the holder of `session`: the secret, the code that confirmed it
/// and the recovery codes.
pub(crate) async fn enrol(app: &TestApp, session: &str) -> (String, String, Vec<String>) {
    let started = send(app, "POST", "default", "/v1/me/mfa/totp", Some(session), json!(null)).await;
    assert_eq!(started.status(), 201);
    let started: Value = started.json().await.unwrap();
    let secret = started["secret"].as_str().unwrap().to_owned();
    assert!(started["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"), "{started}");
    assert!(started["otpauth_uri"].as_str().unwrap().contains(&format!("secret={secret}")));
    assert!(started["qr_svg"].as_str().unwrap().contains("<svg"));
    let code = pyotp(&secret, 0);
    let wrong =
        send(app, "POST", "default", "/v1/me/mfa/totp/confirm", Some(session), json!({ "code": other_than(&code) }));
    expect_problem(wrong.await, 401, "invalid_mfa_code").await;
    let confirmed =
        send(app, "POST", "default", "/v1/me/mfa/totp/confirm", Some(session), json!({ "code": code })).await;
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    let codes: Vec<String> =
        confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    (secret, code, codes)
}

backend_test!(totp_enrolment_sign_in_replay_and_recovery_codes, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    new_user(&app, "default", "mo@example.com", &[]).await;
    let first = password_step(&app, "default", "mo@example.com").await;
    assert_eq!(first.status(), 200, "no factor yet: the password is enough");
    let first: Value = first.json().await.unwrap();
    let session = first["session_token"].as_str().unwrap();
    let (secret, confirming_code, codes) = enrol(&app, session).await;
    let again = send(&app, "POST", "default", "/v1/me/mfa/totp", Some(session), json!(null)).await;
    expect_problem(again, 409, "mfa_already_enrolled").await;
    let status: Value =
        send(&app, "GET", "default", "/v1/me/mfa", Some(session), json!(null)).await.json().await.unwrap();
    assert_eq!(status["totp"]["active"], true);
    assert_eq!(status["recovery_codes_left"], 10);

    // The password alone no longer signs in.
    let pending = challenge(&app, "default", "mo@example.com").await;
    assert_eq!(pending["methods"], json!(["totp", "recovery_code"]));
    assert_eq!(pending["enrollment_required"], false);
    assert!(pending.get("session_token").is_none());
    // The code that confirmed the enrolment is spent: its replay is refused.
    expect_problem(verify(&app, "default", &pending, &confirming_code).await, 401, "invalid_mfa_code").await;
    // A challenge belongs to its tenant.
    app.state.tenants.create(Actor::Operator, "Other", Some("other")).await.unwrap();
    expect_problem(verify(&app, "other", &pending, &pyotp(&secret, 30)).await, 401, "invalid_mfa_challenge").await;
    // Malformed input changes nothing.
    let malformed = send(&app, "POST", "default", "/v1/auth/mfa/verify", None, json!({ "challenge_id": 7 })).await;
    expect_problem(malformed, 400, "invalid_json").await;
    // The next step's code (inside the accepted clock skew) completes the sign-in.
    let done = verify(&app, "default", &pending, &pyotp(&secret, 30)).await;
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    let me = send(&app, "GET", "default", "/v1/me", Some(done["session_token"].as_str().unwrap()), json!(null)).await;
    assert_eq!(me.status(), 200);
    // The session and its access tokens say a second factor was used (RFC 8176).
    assert_eq!(me.json::<Value>().await.unwrap()["amr"], json!(["pwd", "otp", "mfa"]));
    let access = done["access_token"].as_str().unwrap();
    let claims = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]), "{claims}");
    assert!(claims["auth_time"].is_i64(), "{claims}");
    // The challenge is spent with its sign-in.
    expect_problem(verify(&app, "default", &pending, &pyotp(&secret, 30)).await, 401, "invalid_mfa_challenge").await;

    // Lost device: a recovery code gets in once, and the user is told by email.
    let outbox = app.state.accounts.outbox().pending().await.unwrap();
    let pending = challenge(&app, "default", "mo@example.com").await;
    let recovered = verify(&app, "default", &pending, &codes[3].to_uppercase()).await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(app.state.accounts.outbox().pending().await.unwrap(), outbox + 1, "recovery code notice queued");
    let pending = challenge(&app, "default", "mo@example.com").await;
    expect_problem(verify(&app, "default", &pending, &codes[3]).await, 401, "invalid_mfa_code").await;
    let status: Value =
        send(&app, "GET", "default", "/v1/me/mfa", Some(session), json!(null)).await.json().await.unwrap();
    assert_eq!(status["recovery_codes_left"], 9);

    // New codes replace the old set.
    let fresh = send(&app, "POST", "default", "/v1/me/mfa/recovery-codes", Some(session), json!(null)).await;
    let fresh: Value = fresh.json().await.unwrap();
    expect_problem(verify(&app, "default", &pending, &codes[4]).await, 401, "invalid_mfa_code").await;
    let done = verify(&app, "default", &pending, fresh["recovery_codes"][0].as_str().unwrap()).await;
    assert_eq!(done.status(), 200);
});

backend_test!(a_challenge_allows_five_tries, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    new_user(&app, "default", "tries@example.com", &[]).await;
    let first: Value = password_step(&app, "default", "tries@example.com").await.json().await.unwrap();
    let (secret, _, _) = enrol(&app, first["session_token"].as_str().unwrap()).await;
    let pending = challenge(&app, "default", "tries@example.com").await;
    let good = pyotp(&secret, 30);
    for _ in 0..5 {
        expect_problem(verify(&app, "default", &pending, &other_than(&good)).await, 401, "invalid_mfa_code").await;
    }
    expect_problem(verify(&app, "default", &pending, &good).await, 401, "invalid_mfa_challenge").await;
    let unknown = json!({ "challenge_id": "x".repeat(43) });
    expect_problem(verify(&app, "default", &unknown, &good).await, 401, "invalid_mfa_challenge").await;
});

backend_test!(a_tenant_requiring_mfa_forces_enrolment_after_the_grace_period, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    for (slug, grace) in [("strict", 0), ("lenient", 3600)] {
        app.state.tenants.create(Actor::Operator, slug, Some(slug)).await.unwrap();
        let settings = json!({ "mfa_required": true, "mfa_enrollment_grace_seconds": grace });
        app.state.tenants.update_settings(Actor::Operator, slug, &settings).await.unwrap();
        new_user(&app, slug, "jo@example.com", &[]).await;
    }
    // Within the grace period: signed in, and told by when to enrol.
    let lenient = password_step(&app, "lenient", "jo@example.com").await;
    assert_eq!(lenient.status(), 200);
    let lenient: Value = lenient.json().await.unwrap();
    assert!(lenient["mfa_enrollment_due_at"].is_string(), "{lenient}");

    // After it: the sign-in goes through enrolment.
    let pending = challenge(&app, "strict", "jo@example.com").await;
    assert_eq!(pending["enrollment_required"], true);
    assert_eq!(pending["methods"], json!(["totp", "webauthn"]));
    let not_yet = verify(&app, "strict", &pending, "123456").await;
    expect_problem(not_yet, 409, "mfa_not_enrolled").await;
    let started =
        send(&app, "POST", "strict", "/v1/auth/mfa/totp", None, json!({ "challenge_id": pending["challenge_id"] }))
            .await;
    assert_eq!(started.status(), 201);
    let secret = started.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let done = verify(&app, "strict", &pending, &pyotp(&secret, 0)).await;
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    assert!(done["session_token"].is_string());
    // Required by the tenant: the factor cannot be removed by its user.
    let session = done["session_token"].as_str().unwrap();
    let remove =
        send(&app, "DELETE", "strict", "/v1/me/mfa/totp", Some(session), json!({ "code": pyotp(&secret, 30) }));
    expect_problem(remove.await, 409, "mfa_required").await;
});

backend_test!(an_administrator_resets_a_users_factors_and_ends_their_sessions, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    new_user(&app, "default", "boss@example.com", &[ADMIN_ROLE]).await;
    new_user(&app, "default", "lost@example.com", &[]).await;
    let first: Value = password_step(&app, "default", "lost@example.com").await.json().await.unwrap();
    let user_session = first["session_token"].as_str().unwrap().to_owned();
    enrol(&app, &user_session).await;
    assert_eq!(password_step(&app, "default", "lost@example.com").await.status(), 202);

    let denied = send(&app, "DELETE", "default", "/v1/users/lost@example.com/mfa", Some(&user_session), json!(null));
    expect_problem(denied.await, 403, "forbidden").await;
    let boss: Value = password_step(&app, "default", "boss@example.com").await.json().await.unwrap();
    let boss = boss["session_token"].as_str().unwrap();
    let reset = send(&app, "DELETE", "default", "/v1/users/lost@example.com/mfa", Some(boss), json!(null)).await;
    assert_eq!(reset.status(), 200);
    assert_eq!(reset.json::<Value>().await.unwrap()["factors_removed"], true);
    // Whoever held the account's sessions and tokens must sign in again.
    for token in [&user_session, first["access_token"].as_str().unwrap()] {
        let me = send(&app, "GET", "default", "/v1/me", Some(token), json!(null)).await;
        expect_problem(me, 401, "unauthenticated").await;
    }
    let refresh = json!({ "refresh_token": first["refresh_token"] });
    let refreshed = send(&app, "POST", "default", "/v1/auth/token/refresh", None, refresh).await;
    expect_problem(refreshed, 401, "invalid_refresh_token").await;
    assert_eq!(password_step(&app, "default", "lost@example.com").await.status(), 200, "the password alone again");
    let missing = send(&app, "DELETE", "default", "/v1/users/nobody@example.com/mfa", Some(boss), json!(null));
    expect_problem(missing.await, 404, "not_found").await;
});
