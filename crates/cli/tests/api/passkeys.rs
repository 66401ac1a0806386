//! Passkeys and security keys on both backends, driven by an authenticator from
//! outside guard (Python's soft-webauthn): registration, passwordless sign-in, the
//! security-key step of a password sign-in, listing, renaming and removal, and what
//! must change nothing — malformed credentials, replayed ceremonies and assertions, a
//! wrong origin, another tenant's ceremony, another user's passkey.

use guard_core::events::Actor;
use guard_core::users::ADMIN_ROLE;
use guard_testkit::{SoftAuthenticator, TestApp, backend_test};
use serde_json::{Value, json};

use crate::mfa::{challenge, new_user, password_step, send};
use crate::support::expect_problem;

const ORIGIN: &str = "https://login.example.com";

/// Binds passkeys of `tenant` to example.com, used from the page at [`ORIGIN`].
async fn relying_party(app: &TestApp, tenant: &str) {
    let settings = json!({ "webauthn_rp_id": "example.com", "webauthn_origins": [ORIGIN] });
    app.state.tenants.update_settings(Actor::Operator, tenant, &settings).await.unwrap();
}

async fn sign_in(app: &TestApp, tenant: &str, email: &str) -> String {
    let response = password_step(app, tenant, email).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["session_token"].as_str().unwrap().to_owned()
}

async fn ok_json(response: reqwest::Response, status: u16) -> Value {
    let got = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

/// Registers a credential named `name` on `device` for the holder of `session`.
async fn register(app: &TestApp, tenant: &str, session: &str, device: &SoftAuthenticator, name: &str) -> Value {
    let path = "/v1/me/mfa/webauthn/start";
    let started = ok_json(send(app, "POST", tenant, path, Some(session), json!({ "name": name })).await, 200).await;
    let credential = device.create(&started["options"], ORIGIN);
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": credential });
    ok_json(send(app, "POST", tenant, "/v1/me/mfa/webauthn/finish", Some(session), body).await, 201).await
}

/// Signs in with `device`'s passkey alone.
async fn passkey_sign_in(app: &TestApp, tenant: &str, device: &SoftAuthenticator) -> reqwest::Response {
    let started = ok_json(send(app, "POST", tenant, "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    let credential = device.get(&started["options"], ORIGIN);
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": credential });
    send(app, "POST", tenant, "/v1/auth/passkey/finish", None, body).await
}

async fn credentials(app: &TestApp, session: &str) -> Vec<Value> {
    let list = ok_json(send(app, "GET", "default", "/v1/me/mfa/webauthn", Some(session), json!(null)).await, 200);
    list.await["credentials"].as_array().unwrap().clone()
}

backend_test!(a_passkey_registers_then_signs_in_with_and_without_a_password, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    relying_party(&app, "default").await;
    new_user(&app, "default", "pk@example.com", &[]).await;
    let session = sign_in(&app, "default", "pk@example.com").await;
    assert!(credentials(&app, &session).await.is_empty());

    // Registration: the options name the relying party and the user.
    let path = "/v1/me/mfa/webauthn/start";
    let started = send(&app, "POST", "default", path, Some(&session), json!({ "name": "YubiKey" })).await;
    let started = ok_json(started, 200).await;
    assert_eq!(started["options"]["publicKey"]["rp"]["id"], "example.com");
    assert_eq!(started["options"]["publicKey"]["user"]["name"], "pk@example.com");
    assert_eq!(started["options"]["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    // A malformed credential is refused and the ceremony stays usable.
    let finish = "/v1/me/mfa/webauthn/finish";
    let malformed = json!({ "ceremony_id": started["ceremony_id"], "credential": { "id": 7, "type": "public-key" } });
    expect_problem(
        send(&app, "POST", "default", finish, Some(&session), malformed).await,
        400,
        "invalid_webauthn_response",
    )
    .await;
    let key = SoftAuthenticator::new();
    let credential = key.create(&started["options"], ORIGIN);
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": credential });
    let mail_before = app.state.accounts.outbox().pending().await.unwrap();
    let done = ok_json(send(&app, "POST", "default", finish, Some(&session), body.clone()).await, 201).await;
    assert_eq!(done["credential"]["name"], "YubiKey");
    assert_eq!(app.state.accounts.outbox().pending().await.unwrap(), mail_before + 1, "the owner is told");
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10, "first factor: recovery codes");
    // A ceremony is finished once.
    expect_problem(send(&app, "POST", "default", finish, Some(&session), body).await, 401, "invalid_webauthn_ceremony")
        .await;
    // A page of another origin cannot register a passkey for this tenant.
    let other_page = SoftAuthenticator::new();
    let started = ok_json(send(&app, "POST", "default", path, Some(&session), json!({ "name": "Phone" })).await, 200);
    let started = started.await;
    let body = json!({ "ceremony_id": started["ceremony_id"],
                       "credential": other_page.create(&started["options"], "https://login.example.net") });
    expect_problem(send(&app, "POST", "default", finish, Some(&session), body).await, 401, "webauthn_failed").await;
    let list = credentials(&app, &session).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let item = format!("/v1/me/mfa/webauthn/{}", list[0]["id"].as_str().unwrap());
    let rename = send(&app, "PATCH", "default", &item, Some(&session), json!({ "name": "Desk key" }));
    assert_eq!(rename.await.status(), 204);
    assert_eq!(credentials(&app, &session).await[0]["name"], "Desk key");
    let bad_name = send(&app, "PATCH", "default", &item, Some(&session), json!({ "name": "" }));
    expect_problem(bad_name.await, 400, "bad_request").await;

    // The password alone no longer signs in: the security key completes the step.
    let pending = challenge(&app, "default", "pk@example.com").await;
    assert_eq!(pending["methods"], json!(["webauthn", "recovery_code"]));
    let step = json!({ "challenge_id": pending["challenge_id"] });
    let not_started = json!({ "challenge_id": pending["challenge_id"], "credential": key.get(&json!({ "publicKey": {
        "challenge": "AAAA", "rpId": "example.com" } }), ORIGIN) });
    expect_problem(
        send(&app, "POST", "default", "/v1/auth/mfa/webauthn/finish", None, not_started).await,
        401,
        "webauthn_failed",
    )
    .await;
    let options = ok_json(send(&app, "POST", "default", "/v1/auth/mfa/webauthn/start", None, step).await, 200).await;
    let allowed = &options["options"]["publicKey"]["allowCredentials"];
    assert_eq!(allowed.as_array().unwrap().len(), 1, "{options}");
    let assertion = key.get(&options["options"], ORIGIN);
    let body = json!({ "challenge_id": pending["challenge_id"], "credential": assertion });
    let done =
        ok_json(send(&app, "POST", "default", "/v1/auth/mfa/webauthn/finish", None, body.clone()).await, 200).await;
    let me = send(&app, "GET", "default", "/v1/me", done["session_token"].as_str(), json!(null)).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["amr"], json!(["pwd", "hwk", "mfa"]));
    expect_problem(
        send(&app, "POST", "default", "/v1/auth/mfa/webauthn/finish", None, body).await,
        401,
        "invalid_mfa_challenge",
    )
    .await;

    // Passwordless: the passkey names its user.
    let done = ok_json(passkey_sign_in(&app, "default", &key).await, 200).await;
    assert_eq!(done["user"]["email"], "pk@example.com");
    let me = send(&app, "GET", "default", "/v1/me", done["access_token"].as_str(), json!(null)).await;
    assert_eq!(me.json::<Value>().await.unwrap()["amr"], json!(["hwk", "user", "mfa"]), "a verified passkey");
    assert!(done["access_token"].is_string());
    let started = ok_json(send(&app, "POST", "default", "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    let assertion = key.get(&started["options"], ORIGIN);
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": assertion });
    assert_eq!(send(&app, "POST", "default", "/v1/auth/passkey/finish", None, body.clone()).await.status(), 200);
    // Replayed: the ceremony is spent; in a new ceremony the old assertion answers the wrong challenge.
    expect_problem(
        send(&app, "POST", "default", "/v1/auth/passkey/finish", None, body).await,
        401,
        "invalid_webauthn_ceremony",
    )
    .await;
    let fresh = ok_json(send(&app, "POST", "default", "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    let replay = json!({ "ceremony_id": fresh["ceremony_id"], "credential": assertion });
    expect_problem(
        send(&app, "POST", "default", "/v1/auth/passkey/finish", None, replay).await,
        401,
        "webauthn_failed",
    )
    .await;
    // Another tenant knows neither the ceremony nor the passkey.
    app.state.tenants.create(Actor::Operator, "Other", Some("other")).await.unwrap();
    relying_party(&app, "other").await;
    let started = ok_json(send(&app, "POST", "default", "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": key.get(&started["options"], ORIGIN) });
    expect_problem(
        send(&app, "POST", "other", "/v1/auth/passkey/finish", None, body).await,
        401,
        "invalid_webauthn_ceremony",
    )
    .await;
    expect_problem(passkey_sign_in(&app, "other", &key).await, 401, "webauthn_failed").await;

    // Removed: the password alone signs in again, and the passkey no longer does.
    let status = ok_json(send(&app, "GET", "default", "/v1/me/mfa", Some(&session), json!(null)).await, 200).await;
    assert_eq!(status["webauthn"]["credentials"], 1);
    let remove = send(&app, "DELETE", "default", &item, Some(&session), json!(null));
    assert_eq!(remove.await.status(), 204);
    let again = send(&app, "DELETE", "default", &item, Some(&session), json!(null));
    expect_problem(again.await, 404, "not_found").await;
    assert_eq!(password_step(&app, "default", "pk@example.com").await.status(), 200);
    expect_problem(passkey_sign_in(&app, "default", &key).await, 401, "webauthn_failed").await;
});

backend_test!(a_passkey_answers_only_for_its_own_user_and_an_administrator_reset_removes_it, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    relying_party(&app, "default").await;
    new_user(&app, "default", "ann@example.com", &[]).await;
    new_user(&app, "default", "bob@example.com", &[]).await;
    new_user(&app, "default", "boss@example.com", &[ADMIN_ROLE]).await;
    let (ann_key, bob_key) = (SoftAuthenticator::new(), SoftAuthenticator::new());
    let ann = sign_in(&app, "default", "ann@example.com").await;
    register(&app, "default", &ann, &ann_key, "ann's key").await;
    let bob = sign_in(&app, "default", "bob@example.com").await;
    register(&app, "default", &bob, &bob_key, "bob's key").await;

    // Ann's passkey cannot complete Bob's password step.
    let pending = challenge(&app, "default", "bob@example.com").await;
    let step = json!({ "challenge_id": pending["challenge_id"] });
    let options = ok_json(send(&app, "POST", "default", "/v1/auth/mfa/webauthn/start", None, step).await, 200).await;
    let wrong =
        json!({ "challenge_id": pending["challenge_id"], "credential": ann_key.get(&options["options"], ORIGIN) });
    expect_problem(
        send(&app, "POST", "default", "/v1/auth/mfa/webauthn/finish", None, wrong).await,
        401,
        "webauthn_failed",
    )
    .await;
    let right =
        json!({ "challenge_id": pending["challenge_id"], "credential": bob_key.get(&options["options"], ORIGIN) });
    assert_eq!(send(&app, "POST", "default", "/v1/auth/mfa/webauthn/finish", None, right).await.status(), 200);
    // Nor is Ann's credential Bob's to rename or remove.
    let ann_id = credentials(&app, &ann).await[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/me/mfa/webauthn/{ann_id}");
    let bob = ok_json(passkey_sign_in(&app, "default", &bob_key).await, 200).await["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    expect_problem(send(&app, "DELETE", "default", &path, Some(&bob), json!(null)).await, 404, "not_found").await;
    assert_eq!(credentials(&app, &ann).await.len(), 1);

    // An administrator's reset removes passkeys with every other factor.
    let boss = sign_in(&app, "default", "boss@example.com").await;
    let reset = send(&app, "DELETE", "default", "/v1/users/ann@example.com/mfa", Some(&boss), json!(null)).await;
    assert_eq!(ok_json(reset, 200).await["factors_removed"], true);
    expect_problem(passkey_sign_in(&app, "default", &ann_key).await, 401, "webauthn_failed").await;
    assert_eq!(password_step(&app, "default", "ann@example.com").await.status(), 200);
});

backend_test!(a_sign_in_that_must_enrol_registers_a_passkey_and_expired_steps_change_nothing, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.state.tenants.create(Actor::Operator, "Strict", Some("strict")).await.unwrap();
    relying_party(&app, "strict").await;
    let settings = json!({ "mfa_required": true, "mfa_enrollment_grace_seconds": 0 });
    app.state.tenants.update_settings(Actor::Operator, "strict", &settings).await.unwrap();
    new_user(&app, "strict", "jo@example.com", &[]).await;

    // The grace period is over: the sign-in enrols a passkey, and signs in with it.
    let pending = challenge(&app, "strict", "jo@example.com").await;
    assert_eq!(pending["enrollment_required"], true);
    assert_eq!(pending["methods"], json!(["totp", "webauthn"]));
    let step = json!({ "challenge_id": pending["challenge_id"], "name": "phone" });
    let options = ok_json(send(&app, "POST", "strict", "/v1/auth/mfa/webauthn/start", None, step).await, 200).await;
    assert_eq!(options["options"]["publicKey"]["user"]["name"], "jo@example.com");
    let phone = SoftAuthenticator::new();
    let body =
        json!({ "challenge_id": pending["challenge_id"], "credential": phone.create(&options["options"], ORIGIN) });
    let done = ok_json(send(&app, "POST", "strict", "/v1/auth/mfa/webauthn/finish", None, body).await, 200).await;
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    let codes: Vec<String> =
        done["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    let session = done["session_token"].as_str().unwrap().to_owned();
    let list = send(&app, "GET", "strict", "/v1/me/mfa/webauthn", Some(&session), json!(null)).await;
    assert_eq!(ok_json(list, 200).await["credentials"][0]["name"], "phone");
    // The last factor stays while the tenant requires one.
    let id = ok_json(send(&app, "GET", "strict", "/v1/me/mfa/webauthn", Some(&session), json!(null)).await, 200).await
        ["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let item = format!("/v1/me/mfa/webauthn/{id}");
    let remove = send(&app, "DELETE", "strict", &item, Some(&session), json!(null));
    expect_problem(remove.await, 409, "mfa_required").await;

    // An expired challenge refuses both kinds of second step, and spends nothing.
    let pending = challenge(&app, "strict", "jo@example.com").await;
    assert_eq!(pending["methods"], json!(["webauthn", "recovery_code"]));
    crate::migrations::execute(
        backend,
        &app.database_url,
        "UPDATE mfa_challenges SET expires_at = '2000-01-01T00:00:00Z'",
    )
    .await
    .unwrap();
    let step = json!({ "challenge_id": pending["challenge_id"] });
    let start = send(&app, "POST", "strict", "/v1/auth/mfa/webauthn/start", None, step).await;
    expect_problem(start, 401, "invalid_mfa_challenge").await;
    let late = json!({ "challenge_id": pending["challenge_id"], "code": codes[0] });
    expect_problem(send(&app, "POST", "strict", "/v1/auth/mfa/verify", None, late).await, 401, "invalid_mfa_challenge")
        .await;
    let pending = challenge(&app, "strict", "jo@example.com").await;
    let fresh = json!({ "challenge_id": pending["challenge_id"], "code": codes[0] });
    assert_eq!(send(&app, "POST", "strict", "/v1/auth/mfa/verify", None, fresh).await.status(), 200, "code unspent");

    // A passkey sign-in started on one replica finishes on another; an expired one nowhere.
    let Some(other) = TestApp::builder(backend).share_database_of(&app).spawn().await else { return };
    let started = ok_json(send(&app, "POST", "strict", "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": phone.get(&started["options"], ORIGIN) });
    let done = ok_json(send(&other, "POST", "strict", "/v1/auth/passkey/finish", None, body).await, 200).await;
    assert_eq!(done["user"]["email"], "jo@example.com");
    let started = ok_json(send(&app, "POST", "strict", "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    crate::migrations::execute(
        backend,
        &app.database_url,
        "UPDATE webauthn_ceremonies SET expires_at = '2000-01-01T00:00:00Z'",
    )
    .await
    .unwrap();
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": phone.get(&started["options"], ORIGIN) });
    expect_problem(
        send(&other, "POST", "strict", "/v1/auth/passkey/finish", None, body).await,
        401,
        "invalid_webauthn_ceremony",
    )
    .await;

    // The periodic prune deletes a ceremony that expired unfinished, then finds nothing.
    let abandoned = ok_json(send(&app, "POST", "strict", "/v1/auth/passkey/start", None, json!(null)).await, 200).await;
    let expire = "UPDATE webauthn_ceremonies SET expires_at = '2000-01-01T00:00:00Z'";
    crate::migrations::execute(backend, &app.database_url, expire).await.unwrap();
    assert!(app.state.auth.brute_force().prune().await.unwrap() >= 1);
    assert_eq!(app.state.auth.brute_force().prune().await.unwrap(), 0);
    let body =
        json!({ "ceremony_id": abandoned["ceremony_id"], "credential": phone.get(&abandoned["options"], ORIGIN) });
    let late = send(&app, "POST", "strict", "/v1/auth/passkey/finish", None, body).await;
    expect_problem(late, 401, "invalid_webauthn_ceremony").await;

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"guard_mfa_verifications_total{method="webauthn",result="success"}"#), "{metrics}");
    assert!(metrics.contains(r#"guard_auth_attempts_total{method="passkey"}"#), "{metrics}");
});

backend_test!(failed_passkey_sign_ins_count_towards_blocking_the_address, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("BRUTE_FORCE_PROTECTION", "true")
        .env("IP_BLOCK_THRESHOLD", "3")
        .env("LOCKOUT_THRESHOLD", "100")
        .spawn()
        .await
    else {
        return;
    };
    relying_party(&app, "default").await;
    new_user(&app, "default", "ann@example.com", &[]).await;
    new_user(&app, "default", "boss@example.com", &[ADMIN_ROLE]).await;
    let ann_key = SoftAuthenticator::new();
    let ann = sign_in(&app, "default", "ann@example.com").await;
    register(&app, "default", &ann, &ann_key, "ann's key").await;
    // The passkey no longer belongs to anyone: each try is a failed sign-in.
    let boss = sign_in(&app, "default", "boss@example.com").await;
    let reset = send(&app, "DELETE", "default", "/v1/users/ann@example.com/mfa", Some(&boss), json!(null)).await;
    assert_eq!(reset.status(), 200);
    for _ in 0..4 {
        expect_problem(passkey_sign_in(&app, "default", &ann_key).await, 401, "webauthn_failed").await;
    }
    // More than three failures in a minute block the address for every sign-in route.
    expect_problem(password_step(&app, "default", "ann@example.com").await, 403, "ip_blocked").await;
});
