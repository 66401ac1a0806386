//! Users through `guard user …`, on both backends, and kept apart by tenant.

use guard_testkit::{Backend, GuardCommand, backend_test};
use serde_json::Value;
use sqlx::Connection;

use crate::support::guard_with_database;

fn users(guard: &GuardCommand, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["user", "list", "--format", "json"];
    args.extend_from_slice(extra);
    let output = guard.run(&args);
    assert!(output.status.success(), "{output:?}");
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    doc["users"].as_array().unwrap().clone()
}

fn emails(list: &[Value]) -> Vec<&str> {
    list.iter().map(|u| u["email"].as_str().unwrap()).collect()
}

async fn stored_hash(backend: Backend, url: &str, email: &str) -> String {
    let sql = "SELECT password_hash FROM users WHERE email = $1";
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).bind(email).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).bind(email).fetch_one(&mut conn).await.unwrap()
        }
    }
}

backend_test!(users_are_created_listed_disabled_and_deleted_from_the_command_line, |backend| {
    let Some((guard, url, _db)) = guard_with_database(backend).await else { return };

    let created = guard.run_with_input(
        &["user", "create", " Ada@Example.COM ", "--name", "Ada Lovelace", "--password-stdin"],
        "correct horse battery staple\n",
    );
    assert!(created.status.success(), "{created:?}");
    assert!(String::from_utf8_lossy(&created.stdout).starts_with("created user ada@example.com (id "));
    let hash = stored_hash(backend, &url, "ada@example.com").await;
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "OWASP Argon2id by default: {hash}");
    assert!(!hash.contains("correct horse"));

    let again =
        guard.run_with_input(&["user", "create", "ada@example.com", "--password-stdin"], "another good passphrase\n");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "{again:?}");

    let common = guard.run_with_input(&["user", "create", "carol@example.com", "--password-stdin"], "password123\n");
    assert_eq!(common.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&common.stderr).contains("most commonly used"), "{common:?}");
    let short = guard.run_with_input(&["user", "create", "carol@example.com", "--password-stdin"], "x7#kQ2v\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8 characters"), "{short:?}");
    let bad_email = guard.run(&["user", "create", "not-an-email"]);
    assert_eq!(bad_email.status.code(), Some(2));
    assert_eq!(emails(&users(&guard, &[])), ["ada@example.com"], "refused creates change nothing");

    let generated = guard.run(&["user", "create", "bob@example.com", "--username", "Bob"]);
    let stdout = String::from_utf8_lossy(&generated.stdout);
    assert!(generated.status.success(), "{generated:?}");
    let one_time = stdout.lines().find_map(|l| l.strip_prefix("one-time password: ")).expect("printed once");
    assert_eq!(one_time.len(), 20);
    let list = users(&guard, &[]);
    assert_eq!(emails(&list), ["ada@example.com", "bob@example.com"]);
    assert_eq!(list[0]["display_name"], "Ada Lovelace");
    assert_eq!(list[0]["password_change_required"], false);
    assert_eq!(list[1]["password_change_required"], true);
    assert_eq!(list[1]["username"], "bob");

    assert_eq!(emails(&users(&guard, &["--email-prefix", "AD"])), ["ada@example.com"]);
    assert_eq!(emails(&users(&guard, &["--email-prefix", "a%"])), Vec::<&str>::new(), "% is literal");
    assert!(guard.run(&["user", "disable", "bob@example.com"]).status.success());
    assert_eq!(emails(&users(&guard, &["--status", "disabled"])), ["bob@example.com"]);
    assert_eq!(emails(&users(&guard, &["--status", "active"])), ["ada@example.com"]);
    assert_eq!(emails(&users(&guard, &["--limit", "1"])), ["ada@example.com"]);

    let ada_id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(guard.run(&["user", "delete", &ada_id]).status.success(), "by id");
    assert_eq!(emails(&users(&guard, &[])), ["bob@example.com"]);
    let gone = guard.run(&["user", "delete", "ada@example.com"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no user"), "{gone:?}");
});

backend_test!(users_of_one_tenant_are_invisible_to_another, |backend| {
    let Some((guard, _url, _db)) = guard_with_database(backend).await else { return };
    assert!(guard.run(&["tenant", "create", "Acme"]).status.success());
    assert!(guard.run(&["user", "create", "ada@example.com"]).status.success());
    assert!(
        guard.run(&["user", "create", "ada@example.com", "--tenant", "acme"]).status.success(),
        "unique per tenant only"
    );
    assert!(guard.run(&["user", "create", "eve@example.com", "--tenant", "acme"]).status.success());

    let default_ada = users(&guard, &[])[0]["id"].as_str().unwrap().to_owned();
    for action in ["disable", "delete"] {
        let cross = guard.run(&["user", action, &default_ada, "--tenant", "acme"]);
        assert_eq!(cross.status.code(), Some(1), "{action} across tenants must fail: {cross:?}");
    }
    assert!(guard.run(&["user", "disable", "ada@example.com", "--tenant", "acme"]).status.success());
    assert_eq!(users(&guard, &[])[0]["status"], "active", "the default tenant's ada is untouched");
    assert_eq!(emails(&users(&guard, &["--tenant", "acme"])), ["ada@example.com", "eve@example.com"]);
    assert_eq!(emails(&users(&guard, &[])), ["ada@example.com"]);

    assert!(guard.run(&["tenant", "disable", "acme"]).status.success());
    let refused = guard.run(&["user", "create", "new@example.com", "--tenant", "acme"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("disabled"), "{refused:?}");
});
