//! Who may take control of an account, and what ends a password's old ways in: a
//! helpdesk holding `users.write` cannot take over anyone holding more rights than it
//! does; links mailed before a password change stop working; the current password
//! cannot be guessed through a password change; a reset request answers before it
//! does any work for the account. On both backends.

use std::time::Duration;

use guard_testkit::{Backend, SmtpSink, TestApp, backend_test, first_link};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::authz::call;
use crate::limits::admin_session;
use crate::mfa::{PASSWORD, new_user, send};
use crate::support::expect_problem;

const TENANT: &str = "default";
const NEW_PASSWORD: &str = "a brand new passphrase";

async fn sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    send(app, "POST", TENANT, "/v1/auth/password/login", None, json!({ "email": email, "password": password })).await
}

async fn session(app: &TestApp, email: &str) -> String {
    let answer = sign_in(app, email, PASSWORD).await;
    assert_eq!(answer.status(), 200, "{email} signs in");
    answer.json::<Value>().await.unwrap()["session_token"].as_str().unwrap().to_owned()
}

async fn status_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

/// The token of a reset link handed out by `admin` for `email`.
async fn reset_token(app: &TestApp, admin: &str, email: &str) -> String {
    let path = format!("/v1/users/{email}/password-reset?return_link=true");
    let (status, body) = status_of(call(app, admin, "POST", &path, json!(null)).await).await;
    assert_eq!(status, 200, "{body}");
    token_of(body["link"].as_str().unwrap())
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).expect("a token in the link").to_owned()
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    let body = json!({ "token": token, "password": password });
    send(app, "POST", TENANT, "/v1/auth/password/reset/confirm", None, body).await
}

/// Every administrative action on another account that could hand it over or shut its
/// owner out: (method, path after /v1/users/{user}, body).
const CONTROL_ACTIONS: [(&str, &str, &str); 9] = [
    ("POST", "/password-reset?return_link=true", "null"),
    ("POST", "/password-reset", "null"),
    ("PATCH", "", r#"{"display_name": "Taken Over"}"#),
    ("PATCH", "", r#"{"password_change_required": true}"#),
    ("PATCH", "", r#"{"status": "disabled"}"#),
    ("POST", "/disable", "null"),
    ("DELETE", "/mfa", "null"),
    ("POST", "/unlock", "null"),
    ("DELETE", "", "null"),
];

backend_test!(a_helpdesk_holding_users_write_cannot_take_over_an_account_with_more_rights, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let root = admin_session(&app).await;

    // The helpdesk may read and change users, reset second factors and unlock
    // accounts, but not give roles.
    let (status, body) = status_of(call(&app, &root, "POST", "/v1/roles", json!({ "name": "helpdesk" })).await).await;
    assert_eq!(status, 201, "{body}");
    let helpdesk_policy = r#"permit(principal in Guard::Role::"helpdesk", action in [Guard::Action::"users.read",
        Guard::Action::"users.write", Guard::Action::"users.mfa.reset", Guard::Action::"security.write"], resource);"#;
    let put = call(&app, &root, "PUT", "/v1/policies/helpdesk", json!({ "text": helpdesk_policy })).await;
    assert_eq!(put.status(), 200);
    new_user(&app, TENANT, "hal@example.com", &["helpdesk"]).await;
    let hal = session(&app, "hal@example.com").await;

    // Accounts with more rights than the helpdesk: another administrator (of the
    // default tenant, so a platform administrator), an auditor, a user whose rights
    // come through a group rather than a role, and a disabled administrator (whose
    // rights come back once someone makes the account active).
    new_user(&app, TENANT, "ada@example.com", &["admin"]).await;
    new_user(&app, TENANT, "audrey@example.com", &["auditor"]).await;
    new_user(&app, TENANT, "gus@example.com", &[]).await;
    assert_eq!(call(&app, &root, "POST", "/v1/groups", json!({ "name": "ops" })).await.status(), 201);
    let joined = call(&app, &root, "PUT", "/v1/groups/ops/members/gus@example.com", json!(null)).await;
    assert_eq!(joined.status(), 200);
    let ops_policy = r#"permit(principal in Guard::Group::"ops", action == Guard::Action::"audit.read", resource);"#;
    assert_eq!(call(&app, &root, "PUT", "/v1/policies/ops", json!({ "text": ops_policy })).await.status(), 200);
    new_user(&app, TENANT, "dormant@example.com", &["admin"]).await;
    let disabled = call(&app, &root, "POST", "/v1/users/dormant@example.com/disable", json!(null)).await;
    assert_eq!(disabled.status(), 200);

    for target in
        ["root@example.com", "ada@example.com", "audrey@example.com", "gus@example.com", "dormant@example.com"]
    {
        let before = app.state.users.find(TENANT, target).await.unwrap();
        for (method, suffix, body) in CONTROL_ACTIONS {
            let path = format!("/v1/users/{target}{suffix}");
            let body: Value = serde_json::from_str(body).unwrap();
            let refused = call(&app, &hal, method, &path, body).await;
            let problem = expect_problem(refused, 403, "forbidden").await;
            let missing = problem["missing_actions"].as_array().unwrap_or_else(|| panic!("{problem}"));
            assert!(!missing.is_empty(), "{method} {path}: {problem}");
            assert_eq!(problem["action"], missing[0], "{problem}");
        }
        let after = app.state.users.find(TENANT, target).await.unwrap();
        assert_eq!(before, after, "refused actions changed nothing of {target}");
    }
    // What is missing is named: the auditor's reads, the group's audit.read, and
    // users.roles for anyone holding a role.
    let refused = call(&app, &hal, "POST", "/v1/users/gus@example.com/disable", json!(null)).await;
    assert_eq!(expect_problem(refused, 403, "forbidden").await["missing_actions"], json!(["audit.read"]));
    let refused = call(&app, &hal, "POST", "/v1/users/audrey@example.com/disable", json!(null)).await;
    let missing = expect_problem(refused, 403, "forbidden").await["missing_actions"].clone();
    for action in ["audit.read", "audit.export", "users.roles"] {
        assert!(missing.as_array().unwrap().contains(&json!(action)), "{action} in {missing}");
    }
    // The administrators still sign in with their own passwords.
    assert_eq!(sign_in(&app, "ada@example.com", PASSWORD).await.status(), 200);
    assert_eq!(sign_in(&app, "root@example.com", PASSWORD).await.status(), 200);

    // An account with no more rights than the helpdesk is the helpdesk's to manage.
    new_user(&app, TENANT, "pat@example.com", &[]).await;
    for (method, suffix, body) in CONTROL_ACTIONS {
        let path = format!("/v1/users/pat@example.com{suffix}");
        let (status, answer) =
            status_of(call(&app, &hal, method, &path, serde_json::from_str(body).unwrap()).await).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    }
    assert!(app.state.users.find(TENANT, "pat@example.com").await.is_err(), "the last action deleted pat");

    // The administrator controls everyone, and the helpdesk itself.
    let token = reset_token(&app, &root, "ada@example.com").await;
    assert!(!token.is_empty());
    let (status, body) =
        status_of(call(&app, &root, "POST", "/v1/users/hal@example.com/disable", json!(null)).await).await;
    assert_eq!(status, 200, "{body}");
});

backend_test!(links_mailed_before_a_password_change_or_a_disabling_stop_working, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let Some(app) = TestApp::builder(backend).env("SMTP_URL", sink.url()).spawn().await else { return };
    let root = admin_session(&app).await;
    new_user(&app, TENANT, "cy@example.com", &[]).await;

    // A reset link handed out, then the owner changes the password.
    let before_change = reset_token(&app, &root, "cy@example.com").await;
    let cy = session(&app, "cy@example.com").await;
    let change = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });
    assert_eq!(call(&app, &cy, "PUT", "/v1/me/password", change).await.status(), 204);
    expect_problem(confirm_reset(&app, &before_change, "a third passphrase here").await, 400, "invalid_token").await;
    assert_eq!(sign_in(&app, "cy@example.com", NEW_PASSWORD).await.status(), 200);

    // A reset link handed out, then the account is disabled and enabled again.
    let before_disable = reset_token(&app, &root, "cy@example.com").await;
    assert_eq!(call(&app, &root, "POST", "/v1/users/cy@example.com/disable", json!(null)).await.status(), 200);
    let enabled = call(&app, &root, "PATCH", "/v1/users/cy@example.com", json!({ "status": "active" })).await;
    assert_eq!(enabled.status(), 200);
    expect_problem(confirm_reset(&app, &before_disable, "a third passphrase here").await, 400, "invalid_token").await;
    assert_eq!(sign_in(&app, "cy@example.com", NEW_PASSWORD).await.status(), 200);

    // A verification link mailed at sign-up, then a reset through another link.
    let signup = json!({ "email": "dee@example.com", "password": PASSWORD });
    assert_eq!(send(&app, "POST", TENANT, "/v1/auth/password/signup", None, signup).await.status(), 202);
    let mail = sink.wait_for("dee@example.com", "Confirm your email", Duration::from_secs(20)).await;
    let verify_link = first_link(mail["text"].as_str().unwrap()).unwrap();
    let reset = reset_token(&app, &root, "dee@example.com").await;
    assert_eq!(confirm_reset(&app, &reset, NEW_PASSWORD).await.status(), 200);
    let verify_path = verify_link.trim_start_matches("http://localhost:8080");
    expect_problem(app.get(verify_path).await, 400, "invalid_token").await;

    // A link handed out after the change works.
    let fresh = reset_token(&app, &root, "cy@example.com").await;
    assert_eq!(confirm_reset(&app, &fresh, "a third passphrase here").await.status(), 200);
});

backend_test!(a_stolen_session_cannot_guess_the_current_password_through_a_password_change, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("BRUTE_FORCE_PROTECTION", "true")
        .env("LOCKOUT_DELAY_AFTER", "100")
        .env("LOCKOUT_THRESHOLD", "3")
        .spawn()
        .await
    else {
        return;
    };
    new_user(&app, TENANT, "cy@example.com", &[]).await;
    let stolen = session(&app, "cy@example.com").await;
    for guess in ["guess number one", "guess number two", "guess number three"] {
        let change = json!({ "current_password": guess, "new_password": NEW_PASSWORD });
        expect_problem(call(&app, &stolen, "PUT", "/v1/me/password", change).await, 401, "invalid_credentials").await;
    }
    // Three wrong tries lock the account as three failed sign-ins would: the right
    // password no longer helps, here or at sign-in.
    let change = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });
    let locked = call(&app, &stolen, "PUT", "/v1/me/password", change).await;
    assert!(locked.headers().get("retry-after").is_some());
    expect_problem(locked, 423, "account_locked").await;
    expect_problem(sign_in(&app, "cy@example.com", PASSWORD).await, 423, "account_locked").await;
    expect_problem(sign_in(&app, "cy@example.com", NEW_PASSWORD).await, 423, "account_locked").await;
    let filter = guard_core::audit::AuditFilter {
        kind_like: Some(guard_core::audit::type_pattern("security.account.locked").unwrap()),
        limit: 10,
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.state.audit.query(&filter).await.unwrap().records.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the lock is in the audit log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
});

backend_test!(a_reset_request_answers_before_it_does_any_work_for_the_account, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    new_user(&app, TENANT, "cy@example.com", &[]).await;
    // Hold the lock a reset link's write needs: a request that writes before it
    // answers waits for it, one that answers first does not.
    let url = app.database_url.clone();
    let request = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap()
            .post(app.url("/v1/auth/password/reset/request"))
            .header("x-tenant-id", TENANT)
            .json(&json!({ "email": "cy@example.com" }))
            .send()
    };
    let answered = match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            let answered = request().await;
            sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            answered
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE email_tokens IN EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
            let answered = request().await;
            sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            answered
        }
    };
    let answered = answered.expect("answered while the account's work was waiting");
    assert_eq!(answered.status(), 202);
    // The work still happens once the lock is gone.
    let count = "SELECT count(*) FROM email_tokens";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tokens: i64 = match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_scalar(count).fetch_one(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query_scalar(count).fetch_one(&mut conn).await.unwrap()
            }
        };
        if tokens == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reset link was never made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
});

backend_test!(fifty_concurrent_wrong_sign_ins_lock_the_account_at_exactly_the_threshold, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("BRUTE_FORCE_PROTECTION", "true")
        .env("IP_BLOCK_THRESHOLD", "1000")
        .env("LOCKOUT_DELAY_AFTER", "100")
        .env("LOCKOUT_THRESHOLD", "5")
        .spawn()
        .await
    else {
        return;
    };
    new_user(&app, TENANT, "cy@example.com", &[]).await;
    let tries = (0..50).map(|n| sign_in(&app, "cy@example.com", if n % 2 == 0 { "wrong one" } else { "wrong two" }));
    let answers = futures_util::future::join_all(tries).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    statuses.sort_unstable();
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 423).count();
    assert_eq!((wrong, locked), (5, 45), "only the threshold's worth of tries were weighed: {statuses:?}");
    let count = "SELECT failures FROM account_lockouts";
    let failures: i64 = match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(count).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(count).fetch_one(&mut conn).await.unwrap()
        }
    };
    assert_eq!(failures, 5, "the account locked at exactly the threshold");
    expect_problem(sign_in(&app, "cy@example.com", PASSWORD).await, 423, "account_locked").await;
});
