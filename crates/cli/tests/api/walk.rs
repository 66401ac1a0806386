//! The README walk-through, with real `guard` processes: two replicas sharing one
//! database (SQLite file, or PostgreSQL with Redis), mail through a real SMTP
//! server, the bootstrap administrator, the CLI for keys, resets and revocation.

use std::time::{Duration, Instant};

use guard_testkit::{GuardCommand, GuardProcess, SmtpSink, backend_test, first_link};
use serde_json::{Value, json};

use crate::support::GUARD;

const ADMIN_PASSWORD: &str = "an administrator's passphrase";
const PASSWORD: &str = "correct horse battery staple";

struct Replica {
    process: GuardProcess,
    http: reqwest::Client,
}

impl Replica {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        tenant: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request =
            self.http.request(method, format!("{}{path}", self.process.base)).header("x-tenant-id", tenant);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, tenant: &str, token: Option<&str>, body: Value) -> Value {
        let response = self.call(reqwest::Method::POST, path, tenant, token, Some(body)).await;
        assert!(response.status().is_success(), "POST {path}: {}", response.status());
        response.json().await.unwrap_or(Value::Null)
    }

    async fn me_status(&self, tenant: &str, token: &str) -> u16 {
        self.call(reqwest::Method::GET, "/v1/me", tenant, Some(token), None).await.status().as_u16()
    }
}

/// Polls until `replica` answers /v1/me with `status`, for at most `limit`.
async fn eventually(replica: &Replica, tenant: &str, token: &str, status: u16, limit: Duration) {
    let started = Instant::now();
    while replica.me_status(tenant, token).await != status {
        assert!(started.elapsed() < limit, "/v1/me never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_test!(two_replicas_walk_the_readme, |backend| {
    let Some(sink) = SmtpSink::start() else { return };
    let shared = tempfile::tempdir().unwrap();
    let (database_url, _pg) = match backend {
        guard_testkit::Backend::Sqlite => (format!("sqlite://{}/guard.db", shared.path().display()), None),
        guard_testkit::Backend::Postgres => {
            let Some(db) = guard_testkit::PostgresDatabase::create().await else { return };
            (db.url.clone(), Some(db))
        }
    };
    let redis = match backend {
        guard_testkit::Backend::Postgres => match guard_testkit::redis_url() {
            Some(url) => Some(url),
            None => return,
        },
        guard_testkit::Backend::Sqlite => None,
    };
    // One key prefix for both replicas: they share the session cache.
    let prefix = format!("walk-{}:", uuid::Uuid::now_v7());
    let command = || {
        let mut cmd = GuardCommand::new(GUARD)
            .env("LOG_LEVEL", "warn")
            .env("DATABASE_URL", database_url.clone())
            .env("GUARD_MASTER_KEY_PATH", shared.path().join("master.key").display().to_string())
            .env("SMTP_URL", sink.url())
            .env("GUARD_PUBLIC_URL", "http://guard.test")
            .env("GUARD_BOOTSTRAP_ADMIN_EMAIL", "admin@example.com")
            .env("GUARD_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CACHE_TTL_SESSIONS", "1s");
        if database_url.starts_with("postgres") {
            // Replicas on PostgreSQL share a master key given to each; SQLite keeps a key file.
            cmd = cmd.env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY);
        }
        if let Some(url) = &redis {
            cmd = cmd.env("REDIS_URL", url.clone()).env("REDIS_KEY_PREFIX", prefix.clone());
        }
        cmd
    };
    let (cmd_a, cmd_b) = (command(), command());
    // The first start migrates and bootstraps; the second finds both done.
    let a = Replica { process: cmd_a.serve(&[]).await, http: reqwest::Client::new() };
    let b = Replica { process: cmd_b.serve(&[]).await, http: reqwest::Client::new() };

    // The bootstrap administrator creates a tenant that requires verified emails.
    let admin = a
        .post(
            "/v1/auth/password/login",
            "default",
            None,
            json!({ "email": "admin@example.com", "password": ADMIN_PASSWORD }),
        )
        .await;
    let admin_token = admin["session_token"].as_str().unwrap();
    assert_eq!(admin["user"]["roles"], json!(["admin"]));
    b.post("/v1/tenants", "default", Some(admin_token), json!({ "name": "Acme", "slug": "acme" })).await;
    let settings = json!({ "settings": { "email_verification_required": true } });
    let patched =
        a.call(reqwest::Method::PATCH, "/v1/tenants/acme", "default", Some(admin_token), Some(settings)).await;
    assert_eq!(patched.status(), 200);

    // Sign up on one replica, verify through the emailed link on the other.
    b.post("/v1/auth/password/signup", "acme", None, json!({ "email": "ada@example.com", "password": PASSWORD })).await;
    let mail = sink.wait_for("ada@example.com", "Confirm your email", Duration::from_secs(30)).await;
    let link = first_link(mail["text"].as_str().unwrap()).unwrap();
    let path = link.strip_prefix("http://guard.test").expect("links use GUARD_PUBLIC_URL");
    let verified = a.http.get(format!("{}{path}", a.process.base)).send().await.unwrap();
    assert_eq!(verified.status(), 200);

    // Sign in on B, use the session and the access token on A.
    let session = b
        .post("/v1/auth/password/login", "acme", None, json!({ "email": "ada@example.com", "password": PASSWORD }))
        .await;
    let token = session["session_token"].as_str().unwrap();
    let access = session["access_token"].as_str().unwrap();
    assert_eq!(a.me_status("acme", token).await, 200);
    assert_eq!(a.me_status("acme", access).await, 200);
    let refreshed =
        a.post("/v1/auth/token/refresh", "acme", None, json!({ "refresh_token": session["refresh_token"] })).await;
    assert_eq!(b.me_status("acme", refreshed["access_token"].as_str().unwrap()).await, 200);

    // Sign out on A: B refuses at once with Redis, within the cache TTL without.
    let out = a.call(reqwest::Method::POST, "/v1/auth/logout", "acme", Some(token), None).await;
    assert_eq!(out.status(), 204);
    if redis.is_some() {
        assert_eq!(b.me_status("acme", token).await, 401);
        assert_eq!(b.me_status("acme", access).await, 401);
    } else {
        eventually(&b, "acme", token, 401, Duration::from_secs(5)).await;
    }

    // The CLI acts on the same data: key rotation, a printed reset link, mass revocation.
    let rotated = cmd_a.run(&["keys", "rotate", "--tenant", "acme"]);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let listed = String::from_utf8_lossy(&cmd_a.run(&["keys", "list", "--tenant", "acme"]).stdout).into_owned();
    assert!(listed.contains("active") && listed.contains("retired (verifying)"), "{listed}");
    let reset = cmd_b.run(&["user", "reset-password", "ada@example.com", "--tenant", "acme", "--print"]);
    let printed = String::from_utf8_lossy(&reset.stdout).into_owned();
    assert!(printed.contains("http://guard.test/v1/auth/password/reset?tenant=acme&token="), "{printed}");

    let again = a
        .post("/v1/auth/password/login", "acme", None, json!({ "email": "ada@example.com", "password": PASSWORD }))
        .await;
    let again_token = again["session_token"].as_str().unwrap();
    assert_eq!(b.me_status("acme", again_token).await, 200);
    let revoked = cmd_b.run(&["sessions", "revoke", "--all", "--tenant", "acme"]);
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("revoked 1 sessions in tenant acme"));
    eventually(
        &a,
        "acme",
        again_token,
        401,
        Duration::from_secs(if redis.is_some() { 0 } else { 5 }) + Duration::from_millis(100),
    )
    .await;
    // The administrator's own session in the default tenant is untouched.
    assert_eq!(a.me_status("default", admin_token).await, 200);
    let forced = cmd_a.run(&["user", "force-password-reset", "--all", "--tenant", "acme"]);
    assert!(
        String::from_utf8_lossy(&forced.stdout).contains("1 users of tenant acme"),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_admin_a_one_time_password_is_printed_once() {
    let cmd = GuardCommand::new(GUARD).env("LOG_LEVEL", "warn");
    let mut process = cmd.serve(&[]).await;
    let stderr = process.stderr();
    let password = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("password:"))
        .map(|p| p.trim().to_owned())
        .unwrap_or_else(|| panic!("no one-time password in {stderr}"));
    assert!(!process.stdout().contains(&password), "the password is not in the logs");
    let key = std::fs::metadata(cmd.dir().join("data/master.key")).expect("master key file created");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{}/v1/auth/password/login", process.base))
        .header("x-tenant-id", "default")
        .json(&json!({ "email": "admin@guard.localhost", "password": password }))
        .send()
        .await
        .unwrap();
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["user"]["password_change_required"], true);
    process.terminate();
    // A restart finds an administrator and prints nothing.
    let process = cmd.serve(&[]).await;
    assert!(!process.stderr().contains("password:"), "{}", process.stderr());
}
