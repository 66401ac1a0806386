//! Rate limits: one combined limit for two replicas sharing Redis, the in-process
//! limiter without Redis, per-account limits across addresses, Redis going away
//! mid-test (fall back to local limits, or refuse with 503: never a 500), and the
//! client address behind trusted proxies only.

use guard_testkit::{Backend, TcpProxy, TestApp, backend_test};
use serde_json::{Value, json};

use crate::mfa::{PASSWORD, new_user};
use crate::support::{expect_problem, sign_in_from};

async fn login_from(app: &TestApp, source: &str, email: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let headers: Vec<(&str, String)> = forwarded_for.map(|f| ("x-forwarded-for", f.to_owned())).into_iter().collect();
    sign_in_from(app, "default", source, email, PASSWORD, &headers).await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// Checks a 429: its problem and every header a client needs to back off.
async fn expect_limited(response: reqwest::Response) {
    let retry: u64 = header(&response, "retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1, "retry after {retry}");
    assert_eq!(header(&response, "ratelimit-remaining").as_deref(), Some("0"));
    assert!(header(&response, "ratelimit-limit").is_some() && header(&response, "ratelimit-reset").is_some());
    expect_problem(response, 429, "rate_limited").await;
}

fn redis_prefix() -> String {
    format!("guard-test-{}:", uuid::Uuid::now_v7())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_enforce_one_combined_limit() {
    let Some(redis) = guard_testkit::redis_url() else { return };
    let prefix = redis_prefix();
    let replica = |builder: guard_testkit::TestAppBuilder| {
        builder
            .env("REDIS_URL", redis.clone())
            .env("REDIS_KEY_PREFIX", prefix.clone())
            .env("RATE_LIMIT_ENABLED", "true")
            .env("RATE_LIMIT_LOGIN", "4/1h,burst=4")
    };
    let Some(a) = replica(TestApp::builder(Backend::Postgres)).spawn().await else { return };
    let b = replica(TestApp::builder(Backend::Postgres).share_database_of(&a)).spawn().await.unwrap();
    new_user(&a, "default", "al@example.com", &[]).await;
    new_user(&a, "default", "bo@example.com", &[]).await;

    // One client alternating between the replicas: exactly 4 sign-ins, not 4 each.
    let mut remaining = vec![];
    let mut limited = 0;
    for n in 0..10 {
        let app = if n % 2 == 0 { &a } else { &b };
        let response = login_from(app, "127.0.0.3", "al@example.com", None).await;
        if response.status() == 200 {
            remaining.push(header(&response, "ratelimit-remaining").unwrap());
            assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("4"));
        } else {
            expect_limited(response).await;
            limited += 1;
        }
    }
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    assert_eq!(limited, 6);
    // Another client, signing in to another account, is not affected.
    assert_eq!(login_from(&b, "127.0.0.4", "bo@example.com", None).await.status(), 200);
    // The account itself is limited too, whatever the address.
    expect_limited(login_from(&a, "127.0.0.5", "al@example.com", None).await).await;
}

backend_test!(without_redis_each_process_limits_sign_ins_per_address_and_account, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("RATE_LIMIT_ENABLED", "true")
        .env("RATE_LIMIT_LOGIN", "3/1h,burst=3")
        .env("RATE_LIMIT_SIGNUP", "1/1h")
        .spawn()
        .await
    else {
        return;
    };
    new_user(&app, "default", "cy@example.com", &[]).await;
    for _ in 0..3 {
        assert_eq!(login_from(&app, "127.0.0.6", "nobody@example.com", None).await.status(), 401);
    }
    expect_limited(login_from(&app, "127.0.0.6", "cy@example.com", None).await).await;
    // Three addresses, one account: the account's limit holds.
    for source in ["127.0.0.7", "127.0.0.8", "127.0.0.9"] {
        assert_eq!(login_from(&app, source, "cy@example.com", None).await.status(), 200);
    }
    expect_limited(login_from(&app, "127.0.0.10", "cy@example.com", None).await).await;
    // Sign-up has its own limit.
    let signup = |email: &'static str| {
        app.http
            .post(app.url("/v1/auth/password/signup"))
            .header("x-tenant-id", "default")
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
    };
    let first = signup("dee@example.com").await.unwrap();
    assert_eq!(first.status(), 202);
    assert_eq!(header(&first, "ratelimit-remaining").as_deref(), Some("0"));
    expect_limited(signup("eli@example.com").await.unwrap()).await;
    // A tenant's own limit replaces the installation's.
    app.state.tenants.create(guard_core::events::Actor::Operator, "Roomy", Some("roomy")).await.unwrap();
    let roomy = json!({ "rate_limits": { "signup": "2/1h" } });
    app.state.tenants.update_settings(guard_core::events::Actor::Operator, "roomy", &roomy).await.unwrap();
    let roomy_signup = app
        .http
        .post(app.url("/v1/auth/password/signup"))
        .header("x-tenant-id", "roomy")
        .json(&json!({ "email": "fay@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(roomy_signup.status(), 202);
    assert_eq!(header(&roomy_signup, "ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header(&roomy_signup, "ratelimit-remaining").as_deref(), Some("1"));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for series in [
        r#"guard_rate_limit_hits_total{action="login",scope="ip"}"#,
        r#"guard_rate_limit_hits_total{action="login",scope="account"}"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    // Health probes are never limited.
    for _ in 0..5 {
        assert_eq!(app.get("/health").await.status(), 200);
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_falls_back_to_local_limits_or_refuses_as_configured() {
    let Some(redis) = guard_testkit::redis_url() else { return };
    let target = url::Url::parse(&redis).unwrap();
    let addr = format!("{}:{}", target.host_str().unwrap(), target.port().unwrap_or(6379));
    let proxy = TcpProxy::start(tokio::net::lookup_host(addr).await.unwrap().next().unwrap()).await;
    let prefix = redis_prefix();
    let replica = |builder: guard_testkit::TestAppBuilder, on_failure: &str| {
        builder
            .env("REDIS_URL", format!("redis://{}", proxy.addr))
            .env("REDIS_KEY_PREFIX", prefix.clone())
            .env("REDIS_RESPONSE_TIMEOUT", "300ms")
            .env("REDIS_CONNECT_TIMEOUT", "300ms")
            .env("RATE_LIMIT_ENABLED", "true")
            .env("RATE_LIMIT_LOGIN", "2/1h,burst=2")
            .env("RATE_LIMIT_REDIS_FAILURE", on_failure)
    };
    let Some(local) = replica(TestApp::builder(Backend::Sqlite), "local").spawn().await else { return };
    let strict = replica(TestApp::builder(Backend::Sqlite).share_database_of(&local), "refuse").spawn().await.unwrap();
    new_user(&local, "default", "fi@example.com", &[]).await;
    assert_eq!(login_from(&local, "127.0.0.11", "fi@example.com", None).await.status(), 200);

    proxy.down();
    // Falling back to this process's memory: limited, never a 500.
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(login_from(&local, "127.0.0.12", "fi@example.com", None).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    // Refusing: 503 with a problem that says why.
    let refused = login_from(&strict, "127.0.0.13", "fi@example.com", None).await;
    expect_problem(refused, 503, "rate_limiter_unavailable").await;

    // Back up: the shared count resumes where Redis left it (one sign-in used).
    proxy.up();
    let mut back = None;
    for _ in 0..20 {
        let response = login_from(&strict, "127.0.0.14", "fi@example.com", None).await;
        if response.status() != 503 {
            back = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let back = back.expect("Redis answers again");
    assert_eq!(back.status(), 200);
    assert_eq!(header(&back, "ratelimit-remaining").as_deref(), Some("0"), "the account's second shared sign-in");
}

backend_test!(forwarded_addresses_count_only_from_trusted_proxies, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("RATE_LIMIT_ENABLED", "true")
        .env("RATE_LIMIT_LOGIN", "1/1h")
        .env("GUARD_TRUSTED_PROXIES", "127.0.0.20")
        .spawn()
        .await
    else {
        return;
    };
    for n in 0..3 {
        new_user(&app, "default", &format!("u{n}@example.com"), &[]).await;
    }
    // Through the trusted proxy: each forwarded client has its own limit, and is the
    // session's address.
    let first = login_from(&app, "127.0.0.20", "u0@example.com", Some("203.0.113.1")).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["session"]["ip"], "203.0.113.1");
    assert_eq!(login_from(&app, "127.0.0.20", "u1@example.com", Some("203.0.113.2")).await.status(), 200);
    // From anyone else the header is ignored: the peer's own address counts.
    assert_eq!(login_from(&app, "127.0.0.21", "u2@example.com", Some("203.0.113.3")).await.status(), 200);
    let spoofed = login_from(&app, "127.0.0.21", "u2@example.com", Some("203.0.113.4")).await;
    expect_limited(spoofed).await;
});

/// A platform administrator's session (an administrator of the default tenant).
pub(crate) async fn admin_session(app: &TestApp) -> String {
    new_user(app, "default", "root@example.com", &[guard_core::users::ADMIN_ROLE]).await;
    let response = login_from(app, "127.0.0.1", "root@example.com", None).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["session_token"].as_str().unwrap().to_owned()
}

pub(crate) fn guard_on(app: &TestApp) -> guard_testkit::GuardCommand {
    guard_testkit::GuardCommand::new(crate::support::GUARD)
        .env("DATABASE_URL", app.database_url.clone())
        .env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY)
        .env("LOG_LEVEL", "warn")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

backend_test!(failed_sign_ins_block_an_address_on_every_replica_until_it_is_unblocked, |backend| {
    let protected = |builder: guard_testkit::TestAppBuilder| {
        builder.env("BRUTE_FORCE_PROTECTION", "true").env("IP_BLOCK_THRESHOLD", "3").env("LOCKOUT_THRESHOLD", "100")
    };
    let Some(a) = protected(TestApp::builder(backend)).spawn().await else { return };
    let b = protected(TestApp::builder(backend).share_database_of(&a)).spawn().await.unwrap();
    let admin = admin_session(&a).await;
    new_user(&a, "default", "gil@example.com", &[]).await;

    // Four failures in a minute (more than 3) from one address, on either replica.
    for n in 0..4 {
        let app = if n % 2 == 0 { &a } else { &b };
        assert_eq!(login_from(app, "127.0.0.30", &format!("guess{n}@example.com"), None).await.status(), 401);
    }
    // Now even the right password is refused there, on both replicas …
    for app in [&a, &b] {
        let blocked = login_from(app, "127.0.0.30", "gil@example.com", None).await;
        assert!(header(&blocked, "retry-after").unwrap().parse::<u64>().unwrap() > 800);
        expect_problem(blocked, 403, "ip_blocked").await;
    }
    // … and others sign in as usual.
    assert_eq!(login_from(&b, "127.0.0.31", "gil@example.com", None).await.status(), 200);

    // The operator sees the block, through the API and the command line.
    let listed: Value = a
        .http
        .get(a.url("/v1/security/blocked-ips"))
        .header("x-tenant-id", "default")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["blocked_ips"][0]["ip"], "127.0.0.30", "{listed}");
    assert_eq!(listed["blocked_ips"][0]["failures"], 4);
    let guard = guard_on(&a);
    let table = stdout(&guard.run(&["security", "blocked-ips", "list"]));
    assert!(table.contains("127.0.0.30"), "{table}");
    let bad = guard.run(&["security", "unblock", "not-an-address"]);
    assert_eq!(bad.status.code(), Some(2));
    // An unblock takes effect at once, on every replica.
    assert!(stdout(&guard.run(&["security", "unblock", "127.0.0.30"])).contains("unblocked"));
    for app in [&a, &b] {
        assert_eq!(login_from(app, "127.0.0.30", "gil@example.com", None).await.status(), 200);
    }
    let json = stdout(&guard.run(&["security", "blocked-ips", "list", "--format", "json"]));
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap()["blocked_ips"], json!([]));
    // Through the API, too; a non-administrator may not.
    for n in 0..4 {
        login_from(&a, "127.0.0.32", &format!("guess{n}@example.com"), None).await;
    }
    let user = login_from(&a, "127.0.0.33", "gil@example.com", None).await.json::<Value>().await.unwrap();
    let unblock = |token: String| {
        a.http
            .delete(a.url("/v1/security/blocked-ips/127.0.0.32"))
            .header("x-tenant-id", "default")
            .bearer_auth(token)
            .send()
    };
    expect_problem(unblock(user["session_token"].as_str().unwrap().to_owned()).await.unwrap(), 403, "forbidden").await;
    assert_eq!(unblock(admin.clone()).await.unwrap().status(), 204);
    assert_eq!(login_from(&b, "127.0.0.32", "gil@example.com", None).await.status(), 200);
});

backend_test!(an_account_slows_down_then_locks_until_an_administrator_the_cli_or_a_reset_unlocks_it, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("BRUTE_FORCE_PROTECTION", "true")
        .env("LOCKOUT_DELAY_AFTER", "1")
        .env("LOCKOUT_THRESHOLD", "3")
        .env("IP_BLOCK_THRESHOLD", "1000")
        .spawn()
        .await
    else {
        return;
    };
    let admin = admin_session(&app).await;
    new_user(&app, "default", "hal@example.com", &[]).await;
    let wrong =
        |source: &'static str| sign_in_from(&app, "default", source, "hal@example.com", "not the password", &[]);
    let pause = |seconds: f64| tokio::time::sleep(std::time::Duration::from_secs_f64(seconds));
    assert_eq!(wrong("127.0.0.40").await.status(), 401);
    pause(1.1).await;
    assert_eq!(wrong("127.0.0.41").await.status(), 401);
    // Two failures: the next try must wait 2 s from the last, whatever the address and
    // the password (1 left when the machine took over a second to get here).
    let early = login_from(&app, "127.0.0.42", "hal@example.com", None).await;
    let wait = header(&early, "retry-after").and_then(|s| s.parse::<u64>().ok());
    assert!(matches!(wait, Some(1 | 2)), "retry-after {wait:?}");
    expect_problem(early, 429, "rate_limited").await;
    pause(2.1).await;
    assert_eq!(wrong("127.0.0.43").await.status(), 401);
    // Three: locked, even with the right password.
    let locked = login_from(&app, "127.0.0.44", "hal@example.com", None).await;
    assert!(header(&locked, "retry-after").unwrap().parse::<u64>().unwrap() > 800);
    expect_problem(locked, 423, "account_locked").await;

    // An administrator unlocks it.
    let unlock = app
        .http
        .post(app.url("/v1/users/hal@example.com/unlock"))
        .header("x-tenant-id", "default")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(unlock.json::<Value>().await.unwrap()["had_failures"], true);
    assert_eq!(login_from(&app, "127.0.0.45", "hal@example.com", None).await.status(), 200);

    // Locked again, the command line unlocks it too.
    for _ in 0..3 {
        wrong("127.0.0.46").await;
        pause(2.1).await;
    }
    expect_problem(login_from(&app, "127.0.0.47", "hal@example.com", None).await, 423, "account_locked").await;
    let out = stdout(&guard_on(&app).run(&["user", "unlock", "hal@example.com"]));
    assert!(out.contains("unlocked"), "{out}");
    assert_eq!(login_from(&app, "127.0.0.48", "hal@example.com", None).await.status(), 200);

    // Locked once more, a password reset (which proves the owner) unlocks it.
    for _ in 0..3 {
        wrong("127.0.0.49").await;
        pause(2.1).await;
    }
    let link = app
        .http
        .post(app.url("/v1/users/hal@example.com/password-reset?return_link=true"))
        .header("x-tenant-id", "default")
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let link = url::Url::parse(link["link"].as_str().unwrap()).unwrap();
    let token = link.query_pairs().find(|(k, _)| k == "token").unwrap().1.into_owned();
    let confirm = app
        .http
        .post(app.url("/v1/auth/password/reset/confirm"))
        .header("x-tenant-id", "default")
        .json(&json!({ "token": token, "password": "a brand new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let fresh = app
        .http
        .post(app.url("/v1/auth/password/login"))
        .header("x-tenant-id", "default")
        .json(&json!({ "email": "hal@example.com", "password": "a brand new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guard_processes_sharing_redis_enforce_one_limit_and_one_block() {
    let Some(redis) = guard_testkit::redis_url() else { return };
    let Some(db) = guard_testkit::PostgresDatabase::create().await else { return };
    let prefix = redis_prefix();
    let command = || {
        guard_testkit::GuardCommand::new(crate::support::GUARD)
            .env("LOG_LEVEL", "warn")
            .env("DATABASE_URL", db.url.clone())
            .env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY)
            .env("REDIS_URL", redis.clone())
            .env("REDIS_KEY_PREFIX", prefix.clone())
            .env("RATE_LIMIT_ENABLED", "true")
            .env("RATE_LIMIT_SIGNUP", "3/1h,burst=3")
            .env("BRUTE_FORCE_PROTECTION", "true")
            .env("IP_BLOCK_THRESHOLD", "2")
            .env("LOCKOUT_DELAY_AFTER", "100")
    };
    let (one, two) = (command(), command());
    let processes = [one.serve(&[]).await, two.serve(&[]).await];
    let post = |n: usize, path: &str, body: Value| {
        reqwest::Client::new()
            .post(format!("{}{path}", processes[n % 2].base))
            .header("x-tenant-id", "default")
            .json(&body)
            .send()
    };
    // Sign-ups alternating between the processes: three in all, not three each.
    let mut created = 0;
    for n in 0..8 {
        let response =
            post(n, "/v1/auth/password/signup", json!({ "email": format!("p{n}@example.com"), "password": PASSWORD }));
        let response = response.await.unwrap();
        if response.status() == 202 {
            created += 1;
        } else {
            expect_limited(response).await;
        }
    }
    assert_eq!(created, 3);
    // Three failed sign-ins (more than 2) through either process block the address on both.
    for n in 0..3 {
        let wrong = json!({ "email": "p0@example.com", "password": "wrong" });
        assert_eq!(post(n, "/v1/auth/password/login", wrong).await.unwrap().status(), 401);
    }
    for n in 0..2 {
        let right = json!({ "email": "p0@example.com", "password": PASSWORD });
        expect_problem(post(n, "/v1/auth/password/login", right).await.unwrap(), 403, "ip_blocked").await;
    }
    assert!(stdout(&one.run(&["security", "unblock", "127.0.0.1"])).contains("unblocked"));
    for n in 0..2 {
        let right = json!({ "email": "p0@example.com", "password": PASSWORD });
        assert_eq!(post(n, "/v1/auth/password/login", right).await.unwrap().status(), 200);
    }
}

backend_test!(guessing_the_second_step_locks_the_account_even_with_the_right_password, |backend| {
    let Some(app) = TestApp::builder(backend)
        .env("BRUTE_FORCE_PROTECTION", "true")
        .env("LOCKOUT_DELAY_AFTER", "100")
        .env("LOCKOUT_THRESHOLD", "3")
        .spawn()
        .await
    else {
        return;
    };
    new_user(&app, "default", "ivy@example.com", &[]).await;
    let first: Value = crate::mfa::password_step(&app, "default", "ivy@example.com").await.json().await.unwrap();
    let (secret, _, _) = crate::mfa::enrol(&app, first["session_token"].as_str().unwrap()).await;
    let right = crate::mfa::pyotp(&secret, 30);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    // The password is right each time; the codes are not. Three wrong codes lock the account.
    let pending = crate::mfa::challenge(&app, "default", "ivy@example.com").await;
    for _ in 0..2 {
        expect_problem(crate::mfa::verify(&app, "default", &pending, &wrong).await, 401, "invalid_mfa_code").await;
    }
    let again = crate::mfa::challenge(&app, "default", "ivy@example.com").await;
    expect_problem(crate::mfa::verify(&app, "default", &again, &wrong).await, 401, "invalid_mfa_code").await;
    expect_problem(crate::mfa::verify(&app, "default", &again, &right).await, 423, "account_locked").await;
    expect_problem(crate::mfa::password_step(&app, "default", "ivy@example.com").await, 423, "account_locked").await;
});
