//! The identity walk end to end: sign-up, email verification through a real SMTP
//! server, sign-in, access tokens checked by an independent JWT library against the
//! JWKS, refresh-token rotation and reuse detection, password reset and change, key
//! rotation, the admin API and tenant isolation; on both backends.

use std::time::Duration;

use guard_core::events::Actor;
use guard_core::users::{ADMIN_ROLE, NewAccount};
use guard_testkit::{SmtpSink, TestApp, backend_test, first_link};
use serde_json::{Value, json};

use crate::support::expect_problem;

const PASSWORD: &str = "correct horse battery staple";
const MAIL_WAIT: Duration = Duration::from_secs(20);

async fn post(app: &TestApp, tenant: &str, path: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url(path)).header("x-tenant-id", tenant).json(&body).send().await.unwrap()
}

async fn login(app: &TestApp, tenant: &str, email: &str, password: &str) -> Value {
    let response = post(app, tenant, "/v1/auth/password/login", json!({ "email": email, "password": password })).await;
    assert_eq!(response.status(), 200, "login of {email}");
    response.json().await.unwrap()
}

async fn get_as(app: &TestApp, tenant: &str, path: &str, token: &str) -> reqwest::Response {
    app.http.get(app.url(path)).header("x-tenant-id", tenant).bearer_auth(token).send().await.unwrap()
}

async fn user(app: &TestApp, tenant: &str, email: &str, roles: &[&str]) {
    let roles = roles.iter().map(|r| (*r).to_owned()).collect();
    let account = NewAccount { email, password: Some(PASSWORD.into()), roles, ..NewAccount::default() };
    app.state.users.create(Actor::Operator, tenant, account).await.unwrap();
}

/// Verifies `token` with PyJWT against the JWKS at `jwks_url`; the claims, or the error.
fn pyjwt_verify(jwks_url: &str, token: &str, issuer: &str) -> Result<Value, String> {
    const SCRIPT: &str = r#"
import json, sys, jwt
url, token, issuer = sys.argv[1:4]
key = jwt.PyJWKClient(url, headers={"X-Tenant-ID": "ignored"}).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key, algorithms=["EdDSA", "ES256"], audience="guard", issuer=issuer)
print(json.dumps(claims))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", SCRIPT, jwks_url, token, issuer])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

async fn mail_app(backend: guard_testkit::Backend, sink: &SmtpSink, verification_required: bool) -> Option<TestApp> {
    let app = TestApp::builder(backend).env("SMTP_URL", sink.url()).spawn().await?;
    let tenant = app.state.tenants.create(Actor::Operator, "Acme", Some("acme")).await.unwrap();
    let settings = json!({ "email_verification_required": verification_required });
    app.state.tenants.update_settings(Actor::Operator, tenant.slug.as_str(), &settings).await.unwrap();
    Some(app)
}

backend_test!(sign_up_verify_sign_in_tokens_refresh_and_sign_out, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let Some(app) = mail_app(backend, &sink, true).await else { return };

    let signup =
        post(&app, "acme", "/v1/auth/password/signup", json!({ "email": "Ada@Example.com", "password": PASSWORD }))
            .await;
    assert_eq!(signup.status(), 202);
    let signed_up: Value = signup.json().await.unwrap();
    assert_eq!(signed_up["verification_required"], true);
    assert!(signed_up.get("user").is_none(), "sign-up says nothing of the account: {signed_up}");

    // Verification is required: no sign-in before it.
    let early =
        post(&app, "acme", "/v1/auth/password/login", json!({ "email": "ada@example.com", "password": PASSWORD }))
            .await;
    expect_problem(early, 401, "invalid_credentials").await;

    let mail = sink.wait_for("ada@example.com", "Confirm your email", MAIL_WAIT).await;
    let link = first_link(mail["text"].as_str().unwrap()).expect("a link in the email");
    assert!(link.starts_with("http://localhost:8080/v1/auth/email/verify?tenant=acme&token="), "{link}");
    assert!(mail["html"].as_str().unwrap().contains("Confirm my email address"));
    let path = link.trim_start_matches("http://localhost:8080");
    let verified = app.get(path).await;
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.json::<Value>().await.unwrap()["user"]["status"], "active");
    expect_problem(app.get(path).await, 400, "invalid_token").await;

    let session = login(&app, "acme", "ada@example.com", PASSWORD).await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    let by_session = get_as(&app, "acme", "/v1/me", session["session_token"].as_str().unwrap()).await;
    assert_eq!(by_session.json::<Value>().await.unwrap()["email"], "ada@example.com");
    let by_access = get_as(&app, "acme", "/v1/me", &access).await;
    assert_eq!(by_access.status(), 200);
    let me: Value = by_access.json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["amr"], json!(["pwd"]), "a password sign-in: {me}");
    assert_eq!(me["auth_time"], session["session"]["created_at"]);
    // An access token of one tenant is nothing in another.
    expect_problem(get_as(&app, "default", "/v1/me", &access).await, 401, "unauthenticated").await;

    // An independent JWT implementation verifies the token against the JWKS.
    let issuer = "http://localhost:8080/t/acme";
    let claims = pyjwt_verify(&app.url("/t/acme/.well-known/jwks.json"), &access, issuer).expect("PyJWT verifies");
    assert_eq!(claims["sub"], session["user"]["id"]);
    assert_eq!(claims["sid"], session["session"]["id"]);
    assert_eq!(claims["amr"], json!(["pwd"]), "RFC 8176 methods: {claims}");
    let auth_time = claims["auth_time"].as_i64().expect("auth_time");
    assert!(auth_time <= claims["iat"].as_i64().unwrap() && auth_time > 1_700_000_000, "{claims}");
    let mut forged = access.clone();
    forged.pop();
    forged.push(if access.ends_with('A') { 'B' } else { 'A' });
    assert!(pyjwt_verify(&app.url("/t/acme/.well-known/jwks.json"), &forged, issuer).is_err());
    expect_problem(get_as(&app, "acme", "/v1/me", &forged).await, 401, "unauthenticated").await;
    let jwks: Value = get_as(&app, "acme", "/.well-known/jwks.json", "").await.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part in the JWKS");

    // Refresh rotates; a spent refresh token revokes the whole family.
    let first = session["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = post(&app, "acme", "/v1/auth/token/refresh", json!({ "refresh_token": first })).await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let second = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let new_access = refreshed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get_as(&app, "acme", "/v1/me", &new_access).await.status(), 200);
    // A refreshed access token states the same authentication.
    let again = jwt_part(&new_access, 1);
    assert_eq!((&again["amr"], &again["auth_time"]), (&claims["amr"], &claims["auth_time"]));
    let replay = post(&app, "acme", "/v1/auth/token/refresh", json!({ "refresh_token": first })).await;
    expect_problem(replay, 401, "invalid_refresh_token").await;
    let after_replay = post(&app, "acme", "/v1/auth/token/refresh", json!({ "refresh_token": second })).await;
    expect_problem(after_replay, 401, "invalid_refresh_token").await;
    expect_problem(get_as(&app, "acme", "/v1/me", &new_access).await, 401, "unauthenticated").await;

    // Sign-out ends the session and its access tokens.
    let again = login(&app, "acme", "ada@example.com", PASSWORD).await;
    let access = again["access_token"].as_str().unwrap();
    let logout = app
        .http
        .post(app.url("/v1/auth/logout"))
        .header("x-tenant-id", "acme")
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    expect_problem(get_as(&app, "acme", "/v1/me", access).await, 401, "unauthenticated").await;
    let stale = post(&app, "acme", "/v1/auth/token/refresh", json!({ "refresh_token": again["refresh_token"] })).await;
    expect_problem(stale, 401, "invalid_refresh_token").await;
});

backend_test!(racing_refreshes_with_one_token_spend_it_once_and_end_the_family, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    user(&app, "default", "race@example.com", &[]).await;
    let session = login(&app, "default", "race@example.com", PASSWORD).await;
    let token = session["refresh_token"].clone();
    let racers = (0..6).map(|_| post(&app, "default", "/v1/auth/token/refresh", json!({ "refresh_token": token })));
    let answers = futures_util::future::join_all(racers).await;
    let mut winners = Vec::new();
    for answer in answers {
        if answer.status() == 200 {
            winners.push(answer.json::<Value>().await.unwrap());
        } else {
            expect_problem(answer, 401, "invalid_refresh_token").await;
        }
    }
    // At most one request spends the token. The others presented a spent token, so
    // the family (the session) is revoked; that may even reach the winner before it
    // signs its answer, leaving no winner at all.
    assert!(winners.len() <= 1, "one token spent twice: {winners:?}");
    for winner in winners {
        let next = post(&app, "default", "/v1/auth/token/refresh", json!({ "refresh_token": winner["refresh_token"] }));
        expect_problem(next.await, 401, "invalid_refresh_token").await;
    }
    let session_token = session["session_token"].as_str().unwrap();
    expect_problem(get_as(&app, "default", "/v1/me", session_token).await, 401, "unauthenticated").await;
});

/// Part `n` of a JWT (0: header, 1: claims), decoded without verifying anything.
fn jwt_part(token: &str, n: usize) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(n).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

// Concurrent refreshes are written together; each must get its own family's
// successor, and an unknown or foreign token among them must change nothing.
backend_test!(concurrent_refreshes_of_many_families_each_rotate_their_own, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.state.tenants.create(Actor::Operator, "Other", Some("other")).await.unwrap();
    user(&app, "other", "elsewhere@example.com", &[]).await;
    let foreign = login(&app, "other", "elsewhere@example.com", PASSWORD).await;
    let mut families = Vec::new();
    for n in 0..8 {
        let email = format!("family{n}@example.com");
        user(&app, "default", &email, &[]).await;
        families.push(login(&app, "default", &email, PASSWORD).await);
    }
    for _round in 0..3 {
        let mut requests = Vec::new();
        for family in &families {
            requests.push(post(
                &app,
                "default",
                "/v1/auth/token/refresh",
                json!({ "refresh_token": family["refresh_token"] }),
            ));
        }
        let strays = [json!("x".repeat(43)), foreign["refresh_token"].clone()];
        for stray in &strays {
            requests.push(post(&app, "default", "/v1/auth/token/refresh", json!({ "refresh_token": stray })));
        }
        let mut answers = futures_util::future::join_all(requests).await;
        for stray in answers.split_off(families.len()) {
            expect_problem(stray, 401, "invalid_refresh_token").await;
        }
        for (family, answer) in families.iter_mut().zip(answers) {
            assert_eq!(answer.status(), 200);
            let next: Value = answer.json().await.unwrap();
            let claims = jwt_part(next["access_token"].as_str().unwrap(), 1);
            assert_eq!(claims["sid"], family["session"]["id"], "the successor belongs to the family presented");
            family["refresh_token"] = next["refresh_token"].clone();
        }
    }
    // The foreign token, shown to the wrong tenant, neither rotated nor ended its family.
    let home = post(&app, "other", "/v1/auth/token/refresh", json!({ "refresh_token": foreign["refresh_token"] }));
    assert_eq!(home.await.status(), 200);
});

backend_test!(sign_up_rejects_bad_input_and_answers_a_taken_email_like_a_new_one, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let Some(app) = TestApp::builder(backend).env("SMTP_URL", sink.url()).spawn().await else { return };
    let weak =
        post(&app, "default", "/v1/auth/password/signup", json!({ "email": "bo@example.com", "password": "password" }))
            .await;
    let body = expect_problem(weak, 400, "weak_password").await;
    assert!(body["detail"].as_str().unwrap().contains("common"), "{body}");
    let bad = post(&app, "default", "/v1/auth/password/signup", json!({ "email": "nope", "password": PASSWORD })).await;
    expect_problem(bad, 400, "bad_request").await;
    let ok =
        post(&app, "default", "/v1/auth/password/signup", json!({ "email": "bo@example.com", "password": PASSWORD }))
            .await;
    assert_eq!(ok.status(), 202);
    let fresh: Value = ok.json().await.unwrap();
    sink.wait_for("bo@example.com", "Confirm your email", MAIL_WAIT).await;
    // The same email in another letter case, and then once the account is disabled:
    // the answer is the new account's, and the owner is told by email.
    let again = json!({ "email": "BO@example.com", "password": "another fine passphrase" });
    let taken = post(&app, "default", "/v1/auth/password/signup", again.clone()).await;
    assert_eq!(taken.status(), 202);
    assert_eq!(taken.json::<Value>().await.unwrap(), fresh, "a taken email answers as a new one");
    sink.wait_for("bo@example.com", "tried to sign up", MAIL_WAIT).await;
    let carol = json!({ "email": "carol@example.com", "password": PASSWORD });
    assert_eq!(post(&app, "default", "/v1/auth/password/signup", carol).await.status(), 202);
    app.state.users.disable(Actor::Operator, "default", "carol@example.com").await.unwrap();
    let disabled = json!({ "email": "Carol@Example.com", "password": PASSWORD });
    let taken = post(&app, "default", "/v1/auth/password/signup", disabled).await;
    assert_eq!(taken.status(), 202);
    assert_eq!(taken.json::<Value>().await.unwrap(), fresh, "a disabled account's email answers as a new one");
    let page = app.state.users.list("default", None, None, None, 10).await.unwrap();
    assert_eq!(page.users.len(), 2, "no account was created for a taken email");
    // The password given with a taken email changed nothing.
    let refused = post(&app, "default", "/v1/auth/password/login", again).await;
    expect_problem(refused, 401, "invalid_credentials").await;
    // Verification is optional by default: the pending account may sign in.
    let session = login(&app, "default", "bo@example.com", PASSWORD).await;
    assert_eq!(session["user"]["status"], "pending_verification");
});

backend_test!(password_reset_by_email_and_password_change, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let Some(app) = mail_app(backend, &sink, false).await else { return };
    user(&app, "acme", "cy@example.com", &[]).await;
    let old = login(&app, "acme", "cy@example.com", PASSWORD).await;

    // Unknown and known emails get the same answer.
    for email in ["nobody@example.com", "cy@example.com"] {
        let asked = post(&app, "acme", "/v1/auth/password/reset/request", json!({ "email": email })).await;
        assert_eq!(asked.status(), 202);
    }
    let mail = sink.wait_for("cy@example.com", "Reset your password", MAIL_WAIT).await;
    assert!(!sink.messages().iter().any(|m| m["to"][0] == "nobody@example.com"));
    let link = first_link(mail["text"].as_str().unwrap()).unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let shown = app.get(link.trim_start_matches("http://localhost:8080")).await;
    assert_eq!(shown.status(), 200, "opening the link does not spend it");

    let weak =
        post(&app, "acme", "/v1/auth/password/reset/confirm", json!({ "token": token, "password": "123456789" })).await;
    expect_problem(weak, 400, "weak_password").await;
    let new_password = "a brand new passphrase";
    let reset =
        post(&app, "acme", "/v1/auth/password/reset/confirm", json!({ "token": token, "password": new_password }))
            .await;
    assert_eq!(reset.status(), 200);
    let reused =
        post(&app, "acme", "/v1/auth/password/reset/confirm", json!({ "token": token, "password": new_password }))
            .await;
    expect_problem(reused, 400, "invalid_token").await;
    // Every session ended; the old password is gone, the new one works.
    expect_problem(
        get_as(&app, "acme", "/v1/me", old["session_token"].as_str().unwrap()).await,
        401,
        "unauthenticated",
    )
    .await;
    let wrong =
        post(&app, "acme", "/v1/auth/password/login", json!({ "email": "cy@example.com", "password": PASSWORD })).await;
    expect_problem(wrong, 401, "invalid_credentials").await;
    sink.wait_for("cy@example.com", "was changed", MAIL_WAIT).await;

    // A change needs the current password and ends the other sessions only.
    let here = login(&app, "acme", "cy@example.com", new_password).await;
    let elsewhere = login(&app, "acme", "cy@example.com", new_password).await;
    let here_token = here["session_token"].as_str().unwrap();
    let change = |current: &str, new: &str| {
        app.http
            .put(app.url("/v1/me/password"))
            .header("x-tenant-id", "acme")
            .bearer_auth(here_token)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
    };
    expect_problem(change("not it", "another fine passphrase").await.unwrap(), 401, "invalid_credentials").await;
    assert_eq!(change(new_password, "another fine passphrase").await.unwrap().status(), 204);
    assert_eq!(get_as(&app, "acme", "/v1/me", here_token).await.status(), 200);
    let other = get_as(&app, "acme", "/v1/me", elsewhere["session_token"].as_str().unwrap()).await;
    expect_problem(other, 401, "unauthenticated").await;
    login(&app, "acme", "cy@example.com", "another fine passphrase").await;
});

backend_test!(a_required_password_change_blocks_everything_else_until_done, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let account = NewAccount { email: "di@example.com", ..NewAccount::default() };
    let created = app.state.users.create(Actor::Operator, "default", account).await.unwrap();
    let one_time = created.generated_password.unwrap();
    let session = login(&app, "default", "di@example.com", &one_time).await;
    let token = session["session_token"].as_str().unwrap();
    assert_eq!(get_as(&app, "default", "/v1/me", token).await.status(), 200);
    expect_problem(get_as(&app, "default", "/v1/me/sessions", token).await, 403, "password_change_required").await;
    let changed = app
        .http
        .put(app.url("/v1/me/password"))
        .header("x-tenant-id", "default")
        .bearer_auth(token)
        .json(&json!({ "current_password": one_time, "new_password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert_eq!(get_as(&app, "default", "/v1/me/sessions", token).await.status(), 200);
});

backend_test!(rotated_keys_keep_old_tokens_valid_and_sign_new_ones, |backend| {
    let Some(app) = TestApp::builder(backend).env("CACHE_TTL_SETTINGS", "0").spawn().await else { return };
    user(&app, "default", "ed@example.com", &[]).await;
    let before = login(&app, "default", "ed@example.com", PASSWORD).await;
    let old_access = before["access_token"].as_str().unwrap().to_owned();
    let tenant = app.state.tenants.find("default").await.unwrap();
    let old_kid = app.state.keys.list(tenant.id).await.unwrap()[0].id.clone();
    let new_key = app.state.keys.rotate(tenant.id).await.unwrap();
    assert_ne!(new_key.id, old_kid);

    let after = login(&app, "default", "ed@example.com", PASSWORD).await;
    let new_access = after["access_token"].as_str().unwrap();
    let header = jwt_part(new_access, 0);
    assert_eq!(header["kid"], new_key.id.0.as_str());
    assert_eq!(get_as(&app, "default", "/v1/me", &old_access).await.status(), 200, "old key still verifies");
    assert_eq!(get_as(&app, "default", "/v1/me", new_access).await.status(), 200);
    let jwks: Value = app.get("/t/default/.well-known/jwks.json").await.json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![new_key.id.0.as_str(), old_kid.0.as_str()]);
    let issuer = "http://localhost:8080/t/default";
    pyjwt_verify(&app.url("/t/default/.well-known/jwks.json"), &old_access, issuer).expect("old token verifies");
    pyjwt_verify(&app.url("/t/default/.well-known/jwks.json"), new_access, issuer).expect("new token verifies");
});

backend_test!(es256_keys_sign_tokens_others_verify, |backend| {
    let Some(app) = TestApp::builder(backend).env("GUARD_SIGNING_ALGORITHM", "ES256").spawn().await else { return };
    user(&app, "default", "fa@example.com", &[]).await;
    let session = login(&app, "default", "fa@example.com", PASSWORD).await;
    let access = session["access_token"].as_str().unwrap();
    let claims = pyjwt_verify(&app.url("/t/default/.well-known/jwks.json"), access, "http://localhost:8080/t/default")
        .expect("PyJWT verifies ES256");
    assert_eq!(claims["aud"], "guard");
    assert_eq!(get_as(&app, "default", "/v1/me", access).await.status(), 200);
});

backend_test!(the_admin_api_needs_the_admin_role_and_stays_in_its_tenant, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    user(&app, "default", "root@example.com", &[ADMIN_ROLE]).await;
    user(&app, "default", "plain@example.com", &[]).await;
    let root = login(&app, "default", "root@example.com", PASSWORD).await["session_token"].as_str().unwrap().to_owned();
    let plain =
        login(&app, "default", "plain@example.com", PASSWORD).await["session_token"].as_str().unwrap().to_owned();
    let admin_post = |token: &str, tenant: &str, path: &str, body: Value| {
        app.http.post(app.url(path)).header("x-tenant-id", tenant).bearer_auth(token.to_owned()).json(&body).send()
    };

    expect_problem(get_as(&app, "default", "/v1/users", &plain).await, 403, "forbidden").await;
    expect_problem(app.get("/v1/tenants").await, 400, "tenant_required").await;
    expect_problem(get_as(&app, "default", "/v1/tenants", "").await, 401, "unauthenticated").await;

    let created =
        admin_post(&root, "default", "/v1/tenants", json!({ "name": "Globex", "slug": "globex" })).await.unwrap();
    assert_eq!(created.status(), 201);
    let patched = app
        .http
        .patch(app.url("/v1/tenants/globex"))
        .header("x-tenant-id", "default")
        .bearer_auth(&root)
        .json(&json!({ "settings": { "password_min_length": 4 } }))
        .send()
        .await
        .unwrap();
    let body = expect_problem(patched, 400, "bad_request").await;
    assert!(body["detail"].as_str().unwrap().contains("password_min_length"), "{body}");

    // An administrator of globex manages globex's users only.
    user(&app, "globex", "boss@globex.example", &[ADMIN_ROLE]).await;
    user(&app, "globex", "staff@globex.example", &[]).await;
    let boss =
        login(&app, "globex", "boss@globex.example", PASSWORD).await["session_token"].as_str().unwrap().to_owned();
    expect_problem(get_as(&app, "globex", "/v1/tenants", &boss).await, 403, "forbidden").await;
    expect_problem(get_as(&app, "default", "/v1/users", &boss).await, 401, "unauthenticated").await;
    let listed: Value = get_as(&app, "globex", "/v1/users", &boss).await.json().await.unwrap();
    let emails: Vec<&str> = listed["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, vec!["boss@globex.example", "staff@globex.example"]);
    let default_user = app.state.users.find("default", "plain@example.com").await.unwrap();
    for path in [format!("/v1/users/{}", default_user.id), "/v1/users/plain@example.com".to_owned()] {
        expect_problem(get_as(&app, "globex", &path, &boss).await, 404, "not_found").await;
        let disable = admin_post(&boss, "globex", &format!("{path}/disable"), json!({})).await.unwrap();
        expect_problem(disable, 404, "not_found").await;
    }
    assert_eq!(app.state.users.find("default", "plain@example.com").await.unwrap().status.as_str(), "active");

    let made = admin_post(&boss, "globex", "/v1/users", json!({ "email": "new@globex.example" })).await.unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert!(made["generated_password"].as_str().is_some_and(|p| p.len() == 20));
    assert_eq!(made["password_change_required"], true);
    let bad_role = admin_post(&boss, "globex", "/v1/users", json!({ "email": "x@globex.example", "roles": ["god"] }))
        .await
        .unwrap();
    expect_problem(bad_role, 400, "bad_request").await;
    let weak =
        admin_post(&boss, "globex", "/v1/users", json!({ "email": "w@globex.example", "password": "password1" }))
            .await
            .unwrap();
    expect_problem(weak, 400, "weak_password").await;
    assert!(app.state.users.find("globex", "w@globex.example").await.is_err(), "nothing was created");

    // Disabling through the API ends the user's sessions at once.
    let staff =
        login(&app, "globex", "staff@globex.example", PASSWORD).await["session_token"].as_str().unwrap().to_owned();
    let disabled = admin_post(&boss, "globex", "/v1/users/staff@globex.example/disable", json!({})).await.unwrap();
    assert_eq!(disabled.json::<Value>().await.unwrap()["status"], "disabled");
    expect_problem(get_as(&app, "globex", "/v1/me", &staff).await, 401, "unauthenticated").await;
    let link = admin_post(&boss, "globex", "/v1/users/new@globex.example/password-reset?return_link=true", json!({}))
        .await
        .unwrap();
    let link: Value = link.json().await.unwrap();
    assert!(link["link"].as_str().unwrap().contains("/v1/auth/password/reset?tenant=globex&token="), "{link}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_honour_a_revocation_at_once() {
    let Some(redis) = guard_testkit::redis_url() else { return };
    let prefix = format!("guard-test-{}:", uuid::Uuid::now_v7());
    let Some(a) = TestApp::builder(guard_testkit::Backend::Postgres)
        .env("REDIS_URL", redis.clone())
        .env("REDIS_KEY_PREFIX", prefix.clone())
        .spawn()
        .await
    else {
        return;
    };
    let b = TestApp::builder(guard_testkit::Backend::Postgres)
        .share_database_of(&a)
        .env("REDIS_URL", redis)
        .env("REDIS_KEY_PREFIX", prefix)
        .spawn()
        .await
        .unwrap();
    user(&a, "default", "gu@example.com", &[]).await;
    let session = login(&a, "default", "gu@example.com", PASSWORD).await;
    let token = session["session_token"].as_str().unwrap();
    let access = session["access_token"].as_str().unwrap();
    // Both replicas accept the session and have it cached.
    for app in [&a, &b] {
        assert_eq!(get_as(app, "default", "/v1/me", token).await.status(), 200);
        assert_eq!(get_as(app, "default", "/v1/me", access).await.status(), 200);
    }
    // Refresh tokens rotate across replicas.
    let refreshed =
        post(&b, "default", "/v1/auth/token/refresh", json!({ "refresh_token": session["refresh_token"] })).await;
    let refreshed: Value = refreshed.json().await.unwrap();
    let again =
        post(&a, "default", "/v1/auth/token/refresh", json!({ "refresh_token": refreshed["refresh_token"] })).await;
    assert_eq!(again.status(), 200);

    let logout = a.http.post(a.url("/v1/auth/logout")).header("x-tenant-id", "default").bearer_auth(token).send();
    assert_eq!(logout.await.unwrap().status(), 204);
    expect_problem(get_as(&b, "default", "/v1/me", token).await, 401, "unauthenticated").await;
    expect_problem(get_as(&b, "default", "/v1/me", access).await, 401, "unauthenticated").await;
}

backend_test!(replicas_sharing_redis_end_a_deleted_users_sessions_at_once, |backend| {
    let Some(redis) = guard_testkit::redis_url() else { return };
    let prefix = format!("guard-test-{}:", uuid::Uuid::now_v7());
    let Some(a) = TestApp::builder(backend)
        .env("REDIS_URL", redis.clone())
        .env("REDIS_KEY_PREFIX", prefix.clone())
        .env("CACHE_TTL_SESSIONS", "300s")
        .spawn()
        .await
    else {
        return;
    };
    let b = TestApp::builder(backend)
        .share_database_of(&a)
        .env("REDIS_URL", redis)
        .env("REDIS_KEY_PREFIX", prefix)
        .env("CACHE_TTL_SESSIONS", "300s")
        .spawn()
        .await
        .unwrap();
    user(&a, "default", "gone@example.com", &[]).await;
    let session = login(&a, "default", "gone@example.com", PASSWORD).await;
    let token = session["session_token"].as_str().unwrap();
    let access = session["access_token"].as_str().unwrap();
    for app in [&a, &b] {
        assert_eq!(get_as(app, "default", "/v1/me", token).await.status(), 200);
        assert_eq!(get_as(app, "default", "/v1/me", access).await.status(), 200);
    }
    a.state.users.delete(Actor::Operator, "default", "gone@example.com").await.unwrap();
    for app in [&b, &a] {
        expect_problem(get_as(app, "default", "/v1/me", token).await, 401, "unauthenticated").await;
        expect_problem(get_as(app, "default", "/v1/me", access).await, 401, "unauthenticated").await;
    }
});
