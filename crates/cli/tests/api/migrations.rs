//! `guard migrate` and the schema checks `guard serve` makes at start.

use std::time::Duration;

use guard_testkit::{Backend, GuardCommand, backend_test};
use sqlx::Connection;

use crate::support::{GUARD, guard_with_database};

pub(crate) async fn execute(backend: Backend, url: &str, sql: &'static str) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            sqlx::query(sql).execute(&mut conn).await.map(|_| ())
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query(sql).execute(&mut conn).await.map(|_| ())
        }
    }
}

/// Runs `script` (several statements) on the database at `url`.
pub(crate) async fn execute_script(backend: Backend, url: &str, script: &'static str) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            sqlx::raw_sql(script).execute(&mut conn).await.map(|_| ())
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(script).execute(&mut conn).await.map(|_| ())
        }
    }
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn state_of(status: &str, version: &str) -> String {
    let line = status.lines().find(|l| l.starts_with(version)).unwrap_or_else(|| panic!("no {version} in {status}"));
    let states = ["applied", "pending", "modified", "unknown"];
    line.split_whitespace().find(|w| states.contains(w)).unwrap_or_else(|| panic!("no state in {line}")).to_owned()
}

backend_test!(migrate_status_up_and_down_round_trip, |backend| {
    let Some((guard, url, _db)) = guard_with_database(backend).await else { return };
    let shipped = guard_store::embedded_migrations(match backend {
        Backend::Sqlite => guard_core::store::Backend::Sqlite,
        Backend::Postgres => guard_core::store::Backend::Postgres,
    });
    assert!(shipped.len() >= 2);
    let version = |i: usize| format!("{:04}", shipped[i].version);
    let (first, latest, before_latest) = (version(0), version(shipped.len() - 1), version(shipped.len() - 2));

    let status = stdout(&guard.run(&["migrate", "status"]));
    for m in shipped {
        assert_eq!(state_of(&status, &format!("{:04}", m.version)), "pending", "{status}");
    }

    let up = stdout(&guard.run(&["migrate", "up"]));
    for m in shipped {
        assert!(up.contains(&format!("applied {:04} {}", m.version, m.name)), "{up}");
    }
    execute(backend, &url, "SELECT value FROM guard_meta WHERE key = 'schema_created_at'").await.unwrap();
    assert!(stdout(&guard.run(&["migrate", "up"])).contains("schema is up to date"));

    let down = stdout(&guard.run(&["migrate", "down"]));
    assert!(
        down.contains(&format!("reverted {latest}")) && !down.contains(&format!("reverted {before_latest}")),
        "{down}"
    );
    let status = stdout(&guard.run(&["migrate", "status"]));
    assert_eq!(state_of(&status, &before_latest), "applied", "{status}");
    assert_eq!(state_of(&status, &latest), "pending", "{status}");

    let all = stdout(&guard.run(&["migrate", "down", "99"]));
    assert!(all.contains(&format!("reverted {first} guard_meta")), "{all}");
    assert!(stdout(&guard.run(&["migrate", "down"])).contains("nothing to revert"));
    assert!(execute(backend, &url, "SELECT key FROM guard_meta").await.is_err(), "table dropped");

    let zero = guard.run(&["migrate", "down", "0"]);
    assert_eq!(zero.status.code(), Some(2), "N must be at least 1");

    stdout(&guard.run(&["migrate", "up"]));
    execute(backend, &url, "SELECT name FROM job_leases").await.unwrap();
});

backend_test!(serve_applies_pending_migrations_at_start_and_no_migrate_then_starts, |backend| {
    let Some((guard, url, _db)) = guard_with_database(backend).await else { return };
    let mut server = guard.serve(&[]).await;
    execute(backend, &url, "SELECT name FROM job_leases").await.unwrap();
    assert!(server.terminate().success());
    let status = stdout(&guard.run(&["migrate", "status"]));
    assert!(status.contains("0 pending"), "{status}");

    let mut again = guard.serve(&["--no-migrate"]).await;
    assert!(again.terminate().success(), "an up-to-date schema serves without migrating");
});

backend_test!(serve_refuses_a_schema_newer_than_it_knows, |backend| {
    let Some((guard, url, _db)) = guard_with_database(backend).await else { return };
    stdout(&guard.run(&["migrate", "up"]));
    let future = match backend {
        Backend::Sqlite => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from a newer guard', 1, x'00', 0)"
        }
        Backend::Postgres => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from a newer guard', true, '\\x00'::bytea, 0)"
        }
    };
    execute(backend, &url, future).await.unwrap();

    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["serve", "--listen", "127.0.0.1:0", "--no-migrate"],
        &["migrate", "up"],
    ] {
        let output = guard.run_for(args, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("newer than the latest this guard knows"), "{args:?}: {stderr}");
        assert!(stderr.contains("99999"), "{stderr}");
    }
    let status = stdout(&guard.run(&["migrate", "status"]));
    assert_eq!(state_of(&status, "99999"), "unknown", "{status}");
});

backend_test!(serve_with_no_migrate_refuses_pending_migrations, |backend| {
    let Some((guard, _url, _db)) = guard_with_database(backend).await else { return };
    let output = guard.run_for(&["serve", "--listen", "127.0.0.1:0", "--no-migrate"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("guard migrate up"), "{stderr}");
});

#[tokio::test]
async fn migrate_reports_an_unreachable_database_without_its_password() {
    let guard = GuardCommand::new(GUARD).env("DATABASE_URL", "postgres://guard:hunter2@127.0.0.1:1/guard");
    let output = guard.run_for(&["migrate", "status"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
    assert!(!stderr.contains("hunter2") && stderr.contains("guard:***@"), "{stderr}");
}

/// Rows a query returns as (token hash, number) pairs, ordered as the query says.
async fn hashes_with_numbers(backend: Backend, url: &str, sql: &'static str) -> Vec<(Vec<u8>, Option<String>)> {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        }
    }
}

backend_test!(refresh_token_chains_survive_migration_0010_both_ways, |backend| {
    let Some((guard, url, _db)) = guard_with_database(backend).await else { return };
    let shipped = guard_store::embedded_migrations(match backend {
        Backend::Sqlite => guard_core::store::Backend::Sqlite,
        Backend::Postgres => guard_core::store::Backend::Postgres,
    });
    let after_0009 = shipped.iter().filter(|m| m.version > 9).count().to_string();
    stdout(&guard.run(&["migrate", "up"]));
    stdout(&guard.run(&["migrate", "down", &after_0009]));
    // A family of three tokens as 0007 stored them: two spent (used_at), one live.
    let (parents, family) = match backend {
        Backend::Sqlite => (
            [
                "INSERT INTO tenants (id, slug, name, status, settings, created_at, updated_at) \
             VALUES (x'01', 't', 't', 'active', '{}', '2026', '2026')",
                "INSERT INTO users (id, tenant_id, email, status, password_change_required, created_at, updated_at) \
             VALUES (x'02', x'01', 'a@example.com', 'active', 0, '2026', '2026')",
                "INSERT INTO sessions VALUES (x'03', x'01', x'02', x'aa', 'c', 'c', 'e', 'e', NULL, NULL, NULL)",
            ],
            "INSERT INTO refresh_tokens VALUES (x'12', x'01', x'03', x'a3', '2026-01-03', NULL), \
             (x'10', x'01', x'03', x'a1', '2026-01-01', '2026-01-02'), \
             (x'11', x'01', x'03', x'a2', '2026-01-02', '2026-01-03')",
        ),
        Backend::Postgres => (
            [
                "INSERT INTO tenants (id, slug, name, status, settings, created_at, updated_at) \
             VALUES ('00000000-0000-0000-0000-000000000001', 't', 't', 'active', '{}', now(), now())",
                "INSERT INTO users (id, tenant_id, email, status, password_change_required, created_at, updated_at) \
             VALUES ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', \
             'a@example.com', 'active', false, now(), now())",
                "INSERT INTO sessions VALUES ('00000000-0000-0000-0000-000000000003', \
             '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002', '\\xaa', \
             now(), now(), now(), now(), NULL, NULL, NULL)",
            ],
            "INSERT INTO refresh_tokens SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', \
             '00000000-0000-0000-0000-000000000003', t.hash, t.created, t.used FROM (VALUES \
             ('\\xa3'::bytea, '2026-01-03'::timestamptz, NULL::timestamptz), \
             ('\\xa1', '2026-01-01', '2026-01-02'), ('\\xa2', '2026-01-02', '2026-01-03')) AS t (hash, created, used)",
        ),
    };
    for sql in parents.into_iter().chain([family]) {
        execute(backend, &url, sql).await.unwrap();
    }

    stdout(&guard.run(&["migrate", "up"]));
    let chain = hashes_with_numbers(
        backend,
        &url,
        "SELECT token_hash, CAST(generation AS TEXT) FROM refresh_tokens ORDER BY generation",
    )
    .await;
    let numbered =
        |pairs: &[(u8, Option<&str>)]| pairs.iter().map(|(h, n)| (vec![*h], n.map(str::to_owned))).collect::<Vec<_>>();
    assert_eq!(chain, numbered(&[(0xa1, Some("0")), (0xa2, Some("1")), (0xa3, Some("2"))]));

    stdout(&guard.run(&["migrate", "down", &after_0009]));
    let spent = hashes_with_numbers(
        backend,
        &url,
        "SELECT token_hash, CAST(used_at IS NOT NULL AS TEXT) FROM refresh_tokens ORDER BY created_at",
    )
    .await;
    let (yes, no) = match backend {
        Backend::Sqlite => ("1", "0"),
        Backend::Postgres => ("true", "false"),
    };
    assert_eq!(spent, numbered(&[(0xa1, Some(yes)), (0xa2, Some(yes)), (0xa3, Some(no))]));
});
