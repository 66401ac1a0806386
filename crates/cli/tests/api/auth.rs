//! Password sign-in, sessions and sign-out over HTTP, on both backends.

use guard_core::events::Actor;
use guard_core::passwords::{HashParams, PasswordHasher};
use guard_core::users::{NewAccount, UserService};
use guard_testkit::{TestApp, backend_test};
use serde_json::{Value, json};

use crate::support::expect_problem;

const PASSWORD: &str = "correct horse battery staple";

async fn user(app: &TestApp, tenant: &str, email: &str) {
    let account = NewAccount { email, password: Some(PASSWORD.into()), ..NewAccount::default() };
    app.state.users.create(Actor::Operator, tenant, account).await.unwrap();
}

async fn login(app: &TestApp, tenant: &str, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/auth/password/login"))
        .header("x-tenant-id", tenant)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn token(app: &TestApp, tenant: &str, email: &str) -> String {
    let response = login(app, tenant, email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["session_token"].as_str().unwrap().to_owned()
}

async fn me(app: &TestApp, tenant: &str, token: &str) -> reqwest::Response {
    app.http.get(app.url("/v1/me")).header("x-tenant-id", tenant).bearer_auth(token).send().await.unwrap()
}

backend_test!(login_opens_a_session_usable_as_bearer_token_and_as_cookie, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    user(&app, "default", "ada@example.com").await;

    let response = login(&app, "default", " ADA@example.com ", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let token = body["session_token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "256 random bits, base64url");
    assert!(cookie.starts_with(&format!("guard_session={token};")), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=36000"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["session"]["current"], true);

    let by_bearer = me(&app, "default", token).await;
    assert_eq!(by_bearer.status(), 200);
    let profile: Value = by_bearer.json().await.unwrap();
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["tenant"], "default");
    assert!(profile["last_login_at"].is_string(), "{profile}");

    let by_cookie = app
        .http
        .get(app.url("/v1/me"))
        .header("x-tenant-id", "default")
        .header("cookie", format!("theme=dark; guard_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
});

backend_test!(a_failed_login_says_the_same_whatever_was_wrong, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    user(&app, "default", "ada@example.com").await;
    user(&app, "default", "mallory@example.com").await;
    app.state.users.disable(Actor::Operator, "default", "mallory@example.com").await.unwrap();

    let mut bodies = Vec::new();
    for (email, password) in [
        ("nobody@example.com", PASSWORD),
        ("ada@example.com", "not the password at all"),
        ("mallory@example.com", PASSWORD),
        ("not an email", PASSWORD),
    ] {
        let mut body = expect_problem(login(&app, "default", email, password).await, 401, "invalid_credentials").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "identical answers: {bodies:?}");
});

backend_test!(tenant_scoped_requests_need_a_known_active_tenant, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    user(&app, "default", "ada@example.com").await;
    let no_header = app
        .http
        .post(app.url("/v1/auth/password/login"))
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    expect_problem(no_header, 400, "tenant_required").await;
    expect_problem(login(&app, "nope", "ada@example.com", PASSWORD).await, 404, "tenant_not_found").await;
    app.state.tenants.create(Actor::Operator, "Closed", None).await.unwrap();
    app.state.tenants.disable(Actor::Operator, "closed").await.unwrap();
    expect_problem(login(&app, "closed", "ada@example.com", PASSWORD).await, 403, "tenant_disabled").await;
    let default_id = app.state.tenants.find("default").await.unwrap().id.to_string();
    assert_eq!(
        login(&app, &default_id, "ada@example.com", PASSWORD).await.status(),
        200,
        "the id works as well as the slug"
    );
});

backend_test!(a_session_of_one_tenant_is_refused_by_another, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.state.tenants.create(Actor::Operator, "Acme", None).await.unwrap();
    user(&app, "default", "ada@example.com").await;
    user(&app, "acme", "ada@example.com").await;
    let default_token = token(&app, "default", "ada@example.com").await;
    expect_problem(me(&app, "acme", &default_token).await, 401, "unauthenticated").await;
    assert_eq!(me(&app, "default", &default_token).await.status(), 200);

    let acme_token = token(&app, "acme", "ada@example.com").await;
    let acme_session: Value = app
        .http
        .get(app.url("/v1/me/sessions"))
        .header("x-tenant-id", "acme")
        .bearer_auth(&acme_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acme_session_id = acme_session["sessions"][0]["id"].as_str().unwrap().to_owned();
    let cross = app
        .http
        .delete(app.url(&format!("/v1/me/sessions/{acme_session_id}")))
        .header("x-tenant-id", "default")
        .bearer_auth(&default_token)
        .send()
        .await
        .unwrap();
    expect_problem(cross, 404, "not_found").await;
    assert_eq!(me(&app, "acme", &acme_token).await.status(), 200, "the other tenant's session lives on");
});

backend_test!(sessions_are_listed_and_revoked_and_logout_ends_the_current_one, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    user(&app, "default", "ada@example.com").await;
    user(&app, "default", "bob@example.com").await;
    let laptop = token(&app, "default", "ada@example.com").await;
    let phone = token(&app, "default", "ada@example.com").await;
    let bob = token(&app, "default", "bob@example.com").await;

    let list = |token: String| {
        let app = &app;
        async move {
            let response = app
                .http
                .get(app.url("/v1/me/sessions"))
                .header("x-tenant-id", "default")
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()["sessions"].as_array().unwrap().clone()
        }
    };
    let sessions = list(laptop.clone()).await;
    assert_eq!(sessions.len(), 2, "ada's two sessions, not bob's");
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let phone_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    assert!(sessions[0]["ip"].as_str().unwrap().starts_with("127.0.0.1"));

    let bobs_id = list(bob.clone()).await[0]["id"].as_str().unwrap().to_owned();
    let not_hers = app
        .http
        .delete(app.url(&format!("/v1/me/sessions/{bobs_id}")))
        .header("x-tenant-id", "default")
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap();
    expect_problem(not_hers, 404, "not_found").await;
    assert_eq!(me(&app, "default", &bob).await.status(), 200);

    let revoked = app
        .http
        .delete(app.url(&format!("/v1/me/sessions/{phone_id}")))
        .header("x-tenant-id", "default")
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    expect_problem(me(&app, "default", &phone).await, 401, "unauthenticated").await;

    let logout = app
        .http
        .post(app.url("/v1/auth/logout"))
        .header("x-tenant-id", "default")
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    expect_problem(me(&app, "default", &laptop).await, 401, "unauthenticated").await;
});

backend_test!(requests_without_a_usable_token_are_401_not_500, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let no_token = app.http.get(app.url("/v1/me")).header("x-tenant-id", "default").send().await.unwrap();
    expect_problem(no_token, 401, "unauthenticated").await;
    for bad in ["garbage", "", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        expect_problem(me(&app, "default", bad).await, 401, "unauthenticated").await;
    }
    let basic = app
        .http
        .get(app.url("/v1/me"))
        .header("x-tenant-id", "default")
        .header("authorization", "Basic YWRhOnB3")
        .send()
        .await
        .unwrap();
    expect_problem(basic, 401, "unauthenticated").await;
    let bad_json = app
        .http
        .post(app.url("/v1/auth/password/login"))
        .header("x-tenant-id", "default")
        .json(&json!({ "email": "ada@example.com" }))
        .send()
        .await
        .unwrap();
    let body = expect_problem(bad_json, 400, "invalid_json").await;
    assert!(body["detail"].as_str().unwrap().contains("password"), "{body}");
});

backend_test!(a_hash_with_old_parameters_is_replaced_at_the_next_login, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let weak = PasswordHasher::new(HashParams { memory_kib: 1024, iterations: 1, parallelism: 1 }, 1).unwrap();
    let old_users = UserService::new(
        app.state.db.users.clone(),
        app.state.tenants.clone(),
        weak,
        app.state.auth.clone(),
        app.state.audit.clone(),
    );
    let account = NewAccount { email: "ada@example.com", password: Some(PASSWORD.into()), ..NewAccount::default() };
    old_users.create(Actor::Operator, "default", account).await.unwrap();
    let tenant = app.state.tenants.find("default").await.unwrap();
    let email = guard_core::users::Email::parse("ada@example.com").unwrap();
    let before = app.state.db.users.credentials(tenant.id, &email).await.unwrap().unwrap().1.unwrap();
    assert!(before.contains("m=1024,t=1,p=1"), "{before}");

    assert_eq!(login(&app, "default", "ada@example.com", PASSWORD).await.status(), 200);
    let after = app.state.db.users.credentials(tenant.id, &email).await.unwrap().unwrap().1.unwrap();
    assert!(after.contains("m=19456,t=2,p=1"), "re-hashed with today's parameters: {after}");
    assert_eq!(login(&app, "default", "ada@example.com", PASSWORD).await.status(), 200, "and the new hash verifies");
});
