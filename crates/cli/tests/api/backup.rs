//! Backups and restores: under write load, across backends, damaged files, schema
//! versions, retention; maintenance, integrity and sizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use guard_core::backup::{ArchiveReader, ArchiveWriter, Manifest, Value};
use guard_testkit::{Backend, GuardCommand, PostgresDatabase, TestApp, backend_test};
use serde_json::json;

use crate::limits::{admin_session, guard_on};
use crate::mfa::{PASSWORD, send};

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "guard failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "guard succeeded: {}", String::from_utf8_lossy(&output.stdout));
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// An empty database of `backend` to restore into: its URL and what keeps it alive.
struct Target {
    url: String,
    _dir: tempfile::TempDir,
    _pg: Option<PostgresDatabase>,
}

async fn target(backend: Backend) -> Option<Target> {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            Some(Target { url: format!("sqlite://{}/restored/guard.db", dir.path().display()), _dir: dir, _pg: None })
        }
        Backend::Postgres => {
            let pg = PostgresDatabase::create().await?;
            Some(Target { url: pg.url.clone(), _dir: dir, _pg: Some(pg) })
        }
    }
}

/// `guard` on the database at `url`, writing backups to `backups`.
fn guard_at(url: &str, backups: &Path) -> GuardCommand {
    GuardCommand::new(crate::support::GUARD)
        .env("DATABASE_URL", url)
        .env("GUARD_MASTER_KEY", guard_testkit::TEST_MASTER_KEY)
        .env("LOG_LEVEL", "warn")
        .env("BACKUP_DIR", backups.display().to_string())
}

fn only_backup(dir: &Path, prefix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "one backup named {prefix}* in {}: {found:?}", dir.display());
    found[0].clone()
}

/// Every table's rows, sorted, with JSON text compared as JSON and times as instants
/// (PostgreSQL spells the same document and the same time differently).
fn tables_of(path: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let reader = ArchiveReader::open(path).unwrap();
    let mut tables = BTreeMap::new();
    for entry in &reader.manifest.tables {
        let mut rows = reader.rows(entry).unwrap();
        let mut row = Vec::new();
        let mut all = Vec::new();
        while rows.next_row(&mut row).unwrap() {
            all.push(row.iter().map(canonical).collect::<Vec<_>>());
        }
        all.sort();
        tables.insert(entry.name.clone(), all);
    }
    tables
}

/// JSON text with every object's keys in order: documents that differ only in key
/// order compare equal.
fn sorted_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let fields: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, sorted_json(v))).collect();
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", body.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(sorted_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn canonical(value: &Value) -> String {
    match value {
        Value::Text(t) if t.starts_with('{') || t.starts_with('[') => {
            match serde_json::from_str::<serde_json::Value>(t) {
                Ok(v) => format!("json:{}", sorted_json(&v)),
                Err(_) => format!("text:{t}"),
            }
        }
        // An instant compares as an instant: SQLite's strftime() writes "….710Z" where
        // the value read back from PostgreSQL is spelled "….71Z".
        Value::Text(t) if time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok() => {
            let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
            format!("time:{}", at.unix_timestamp_nanos())
        }
        other => format!("{other:?}"),
    }
}

/// Runs one statement built at run time (test data only) on the database at `url`.
async fn execute(backend: Backend, url: &str, sql: String) {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        }
    }
}

async fn count(backend: Backend, url: &str, sql: &'static str) -> i64 {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

fn counts(manifest: &Manifest) -> BTreeMap<String, u64> {
    manifest.tables.iter().map(|t| (t.name.clone(), t.rows)).collect()
}

/// The value of `column` in each row of `table`.
fn column(path: &Path, table: &str, column: &str) -> Vec<Value> {
    let reader = ArchiveReader::open(path).unwrap();
    let entry = reader.manifest.table(table).unwrap().clone();
    let at = entry.columns.iter().position(|c| c == column).unwrap();
    let mut rows = reader.rows(&entry).unwrap();
    let mut row = Vec::new();
    let mut values = Vec::new();
    while rows.next_row(&mut row).unwrap() {
        values.push(row[at].clone());
    }
    values
}

fn events_of_type(path: &Path, event_type: &str) -> usize {
    ["audit_events", "audit_queue"]
        .iter()
        .map(|t| column(path, t, "event_type").iter().filter(|v| **v == Value::Text(event_type.into())).count())
        .sum()
}

backend_test!(a_backup_taken_under_write_load_restores_to_a_consistent_state, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let backups = tempfile::tempdir().unwrap();
    // Writers create users (each with its user.created event, in one transaction)
    // while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let app = Arc::new(app);
    let mut writers = Vec::new();
    for w in 0..3 {
        let (app, token, stop, created) = (app.clone(), token.clone(), stop.clone(), created.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({ "email": format!("load-{w}-{i}@example.com"), "password": PASSWORD });
                let response = send(&app, "POST", "default", "/v1/users", Some(&token), body).await;
                assert_eq!(response.status(), 201);
                created.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    while created.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A backup of this small database can finish between two writes: the one that
    // overlapped a write is the one checked.
    let mut overlapped = None;
    for attempt in 0..10 {
        let cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
        let name = format!("under-load-{attempt}");
        let before = created.load(Ordering::Relaxed);
        let out = tokio::task::spawn_blocking({
            let name = name.clone();
            move || ok(&cli.run(&["backup", "create", "--name", &name]))
        })
        .await
        .unwrap();
        assert!(out.contains(&format!("{name}.guardbak written")), "{out}");
        if created.load(Ordering::Relaxed) > before {
            overlapped = Some(name);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let name = overlapped.expect("users were created while one of 10 backups ran");
    let file = backups.path().join(format!("{name}.guardbak"));
    let manifest = ArchiveReader::open(&file).unwrap().manifest;
    // One snapshot: every user in it has its creation event in it, and no more.
    let users = manifest.table("users").unwrap().rows as usize;
    assert!(users > 20 && users < 1 + created.load(Ordering::Relaxed) as usize + 1, "{users} users");
    assert_eq!(events_of_type(&file, "user.created"), users, "a user.created event per user in the snapshot");
    assert!(!manifest.includes_secrets);
    assert_eq!(manifest.excluded_tables, vec!["signing_keys".to_owned()]);
    assert!(manifest.table("signing_keys").is_none());

    // Restored into an empty database of the same backend: the same rows, a verified chain.
    let Some(restored) = target(backend).await else { return };
    let restore_dir = tempfile::tempdir().unwrap();
    let cli = guard_at(&restored.url, restore_dir.path());
    let out = ok(&cli.run(&["restore", file.to_str().unwrap(), "--yes"]));
    assert!(out.contains(&format!("{} rows", manifest.rows())), "{out}");
    assert!(ok(&cli.run(&["audit", "verify"])).contains("records verified"));
    let check = ok(&cli.run(&["db", "verify-integrity"]));
    assert!(check.contains("integrity verified"), "{check}");
    ok(&cli.run(&["backup", "create", "--name", "after-restore"]));
    let again = ArchiveReader::open(&restore_dir.path().join("after-restore.guardbak")).unwrap().manifest;
    let mut expected = counts(&manifest);
    let mut got = counts(&again);
    // The audit verification and the integrity check above are themselves audited, and
    // the verification records its outcome (job_runs), as does the first backup after
    // its snapshot.
    for c in [&mut expected, &mut got] {
        c.remove("job_runs");
        c.remove("audit_queue");
        c.remove("audit_events");
        c.remove("audit_chains");
        c.remove("audit_checkpoints");
    }
    assert_eq!(got, expected);
});

backend_test!(a_flipped_byte_is_caught_and_a_damaged_backup_is_not_restored, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    crate::mfa::new_user(&app, "default", "someone@example.com", &[]).await;
    let backups = tempfile::tempdir().unwrap();
    let cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
    ok(&cli.run(&["backup", "create", "--name", "good"]));
    let good = backups.path().join("good.guardbak");
    let verified = ok(&cli.run(&["backup", "verify", good.to_str().unwrap()]));
    assert!(verified.contains(": OK:"), "{verified}");
    assert!(ok(&cli.run(&["backup", "verify", "--latest"])).contains("good.guardbak: OK"));

    let bytes = std::fs::read(&good).unwrap();
    for at in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 40, 20] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        let path = backups.path().join(format!("damaged-{at}.guardbak"));
        std::fs::write(&path, &damaged).unwrap();
        let out = failed(&cli.run(&["backup", "verify", path.to_str().unwrap()]));
        assert!(out.contains("FAILED"), "a flipped byte at {at}: {out}");
        let Some(restored) = target(backend).await else { return };
        let out = failed(&guard_at(&restored.url, backups.path()).run(&["restore", path.to_str().unwrap(), "--yes"]));
        assert!(!out.contains("restored"), "{out}");
        std::fs::remove_file(&path).unwrap();
    }
    // Without --yes and without a terminal, nothing is replaced.
    let out = failed(&cli.run(&["restore", good.to_str().unwrap()]));
    assert!(out.contains("--yes"), "{out}");
});

backend_test!(restore_refuses_a_newer_schema_and_migrates_an_older_one, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let backups = tempfile::tempdir().unwrap();
    // A backup from a schema this guard does not know.
    let newer = backups.path().join("newer.guardbak");
    let writer = ArchiveWriter::create(&newer).unwrap();
    writer
        .finish(Manifest {
            format_version: guard_core::backup::FORMAT_VERSION,
            name: "newer".into(),
            created_at: "2026-11-30T00:00:00Z".into(),
            guard_version: "9.0.0".into(),
            schema_version: 9999,
            source_backend: "sqlite".into(),
            includes_secrets: false,
            excluded_tables: vec![],
            tables: vec![],
        })
        .unwrap();
    let cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
    let out = failed(&cli.run(&["restore", newer.to_str().unwrap(), "--yes"]));
    assert!(out.contains("schema version 9999, newer than this guard knows"), "{out}");

    // A database one migration behind, backed up, restores and is migrated forward.
    let Some(old) = target(backend).await else { return };
    let old_cli = guard_at(&old.url, backups.path());
    ok(&old_cli.run(&["migrate", "up", "--no-backup"]));
    ok(&old_cli.run(&["migrate", "down", "1"]));
    ok(&old_cli.run(&["backup", "create", "--name", "older"]));
    let older = backups.path().join("older.guardbak");
    let latest = guard_store::embedded_migrations(match backend {
        Backend::Sqlite => guard_core::store::Backend::Sqlite,
        Backend::Postgres => guard_core::store::Backend::Postgres,
    })
    .last()
    .unwrap()
    .version;
    assert_eq!(ArchiveReader::open(&older).unwrap().manifest.schema_version, latest - 1);
    // Restoring over the running app's database keeps a safety backup of it first.
    crate::mfa::new_user(&app, "default", "kept@example.com", &[]).await;
    let out = ok(&cli.run(&["restore", older.to_str().unwrap(), "--yes"]));
    assert!(out.contains(&format!("then migrated to {latest}")), "{out}");
    assert!(out.contains("safety backup"), "{out}");
    let safety = only_backup(backups.path(), "pre-restore-");
    let emails = column(&safety, "users", "email");
    assert!(emails.contains(&Value::Text("kept@example.com".into())), "the safety backup holds what was replaced");
    assert!(ArchiveReader::open(&safety).unwrap().manifest.includes_secrets, "a safety backup keeps the signing keys");
    let version = ok(&cli.run(&["version"]));
    assert!(version.contains(&format!("schema version applied: {latest} (0 pending)")), "{version}");
    assert!(version.contains(&format!("guard {}", env!("CARGO_PKG_VERSION"))), "{version}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_to_sqlite_leaves_every_table_equal() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let Some(pg) = PostgresDatabase::create().await else { return };
    // Data in most tables: users with roles, sessions, refresh tokens, audit events
    // sealed into chains with checkpoints, a policy, a group.
    let token = admin_session(&app).await;
    for i in 0..5 {
        let body = json!({ "email": format!("u{i}@example.com"), "password": PASSWORD, "roles": ["auditor"] });
        assert_eq!(send(&app, "POST", "default", "/v1/users", Some(&token), body).await.status(), 201);
    }
    let group = send(&app, "POST", "default", "/v1/groups", Some(&token), json!({ "name": "ops" })).await;
    assert_eq!(group.status(), 201, "{}", group.text().await.unwrap());
    app.state.audit.seal(true).await.unwrap();
    let backups = tempfile::tempdir().unwrap();
    let sqlite_cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
    ok(&sqlite_cli.run(&["backup", "create", "--name", "a-sqlite", "--include-secrets"]));
    let a = backups.path().join("a-sqlite.guardbak");

    let pg_cli = guard_at(&pg.url, backups.path());
    ok(&pg_cli.run(&["restore", a.to_str().unwrap(), "--yes"]));
    ok(&pg_cli.run(&["backup", "create", "--name", "b-postgres", "--include-secrets"]));
    let b = backups.path().join("b-postgres.guardbak");

    let Some(back) = target(Backend::Sqlite).await else { return };
    let back_cli = guard_at(&back.url, backups.path());
    ok(&back_cli.run(&["restore", b.to_str().unwrap(), "--yes"]));
    ok(&back_cli.run(&["backup", "create", "--name", "c-sqlite", "--include-secrets"]));
    let c = backups.path().join("c-sqlite.guardbak");

    let (ta, tb, tc) = (tables_of(&a), tables_of(&b), tables_of(&c));
    assert!(ta["users"].len() >= 6 && !ta["audit_events"].is_empty() && !ta["signing_keys"].is_empty());
    assert!(!ta["sessions"].is_empty() && !ta["audit_checkpoints"].is_empty() && !ta["groups"].is_empty());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tc.keys().collect::<Vec<_>>());
    for (name, rows) in &ta {
        assert_eq!(&tb[name], rows, "table {name} after SQLite -> PostgreSQL");
        assert_eq!(&tc[name], rows, "table {name} after SQLite -> PostgreSQL -> SQLite");
    }
    // Each copy is a working guard: the chains verify, and a user signs in on PostgreSQL.
    assert!(ok(&pg_cli.run(&["audit", "verify"])).contains("records verified"));
    assert!(ok(&back_cli.run(&["audit", "verify"])).contains("records verified"));
    let pg_url = pg.url.clone();
    let Some(on_pg) = TestApp::builder(Backend::Postgres).database_url(move |_| pg_url).spawn().await else { return };
    let login = crate::mfa::password_step(&on_pg, "default", "u3@example.com").await;
    assert_eq!(login.status(), 200, "{}", login.text().await.unwrap());
}

backend_test!(prune_keeps_the_newest_of_each_day_week_and_month, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let backups = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    // Ten daily backups, newest first, written as guard writes them; and two safety
    // backups, one taken after today's, one 20 days old.
    let backups_to_write = (0..10).map(|day| (format!("daily-{day:02}"), now - time::Duration::days(day))).chain([
        ("pre-restore-new".to_owned(), now + time::Duration::minutes(1)),
        ("pre-restore-old".to_owned(), now - time::Duration::days(20)),
    ]);
    for (name, at) in backups_to_write {
        let writer = ArchiveWriter::create(&backups.path().join(format!("{name}.guardbak"))).unwrap();
        writer
            .finish(Manifest {
                format_version: guard_core::backup::FORMAT_VERSION,
                name,
                created_at: at.format(&time::format_description::well_known::Rfc3339).unwrap(),
                guard_version: "0.1.0".into(),
                schema_version: 16,
                source_backend: "sqlite".into(),
                includes_secrets: false,
                excluded_tables: vec![],
                tables: vec![],
            })
            .unwrap();
    }
    std::fs::write(backups.path().join("broken.guardbak"), b"not a backup").unwrap();
    let cli = guard_on(&app)
        .env("BACKUP_DIR", backups.path().display().to_string())
        .env("BACKUP_KEEP_DAILY", "3")
        .env("BACKUP_KEEP_WEEKLY", "0")
        .env("BACKUP_KEEP_MONTHLY", "0");
    let listed = ok(&cli.run(&["backup", "list"]));
    assert!(listed.contains("daily-00.guardbak") && listed.contains("UNREADABLE"), "{listed}");
    let dry = ok(&cli.run(&["backup", "prune", "--dry-run"]));
    // The newer safety backup does not push today's backup out of its day.
    assert!(dry.contains("4 kept, 8 would be deleted"), "{dry}");
    assert_eq!(std::fs::read_dir(backups.path()).unwrap().count(), 13, "a dry run deletes nothing");
    let done = ok(&cli.run(&["backup", "prune"]));
    assert!(done.contains("4 kept, 8 deleted"), "{done}");
    let mut left: Vec<String> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["broken.guardbak", "daily-00.guardbak", "daily-01.guardbak", "daily-02.guardbak", "pre-restore-new.guardbak"]
    );
    // --latest passes over the safety backup, though it is the newest.
    let verified = ok(&cli.run(&["backup", "verify", "--latest"]));
    assert!(verified.contains("daily-00.guardbak: OK"), "{verified}");
});

backend_test!(maintenance_deletes_what_expired_and_reports_sizes, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    // A session expired long ago and one still valid.
    let expired = crate::mfa::password_step(&app, "default", "root@example.com").await;
    assert_eq!(expired.status(), 200);
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let sql = format!(
        "UPDATE sessions SET expires_at = '{old}', idle_expires_at = '{old}' WHERE id = (SELECT id FROM sessions ORDER BY created_at DESC LIMIT 1)"
    );
    let sql = match backend {
        Backend::Sqlite => sql,
        Backend::Postgres => sql.replace(&format!("'{old}'"), &format!("'{old}'::timestamptz")),
    };
    execute(backend, &app.database_url, sql).await;
    let backups = tempfile::tempdir().unwrap();
    let cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
    let dry = ok(&cli.run(&["maintenance", "run", "--dry-run"]));
    assert!(dry.contains("would delete         1  sessions expired or revoked before the cutoff"), "{dry}");
    let done = ok(&cli.run(&["maintenance", "run"]));
    assert!(done.contains("deleted         1  sessions expired or revoked before the cutoff"), "{done}");
    assert!(done.contains("VACUUM"), "{done}");
    let again = ok(&cli.run(&["maintenance", "run", "--dry-run"]));
    assert!(again.contains("would delete         0  sessions expired"), "{again}");
    // The valid session still works.
    let me = app.http.get(app.url("/v1/me")).header("x-tenant-id", "default").bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);

    let size = ok(&cli.run(&["metrics", "database-size"]));
    let bytes: u64 = size.trim().strip_prefix("guard_database_size_bytes ").unwrap().parse().unwrap();
    assert!(bytes > 10_000, "{size}");
    app.state.audit.seal(true).await.unwrap();
    let audit = ok(&cli.run(&["metrics", "audit-size"]));
    let stored: u64 = audit.trim().strip_prefix("guard_audit_events_stored ").unwrap().parse().unwrap();
    let counted = count(
        backend,
        &app.database_url,
        "SELECT (SELECT count(*) FROM audit_events) + (SELECT count(*) FROM audit_queue)",
    )
    .await;
    assert_eq!(stored as i64, counted, "{audit}");
    let check = ok(&cli.run(&["db", "verify-integrity"]));
    assert!(check.contains("every foreign key holds") && check.contains("intact"), "{check}");
});

/// Writes a copy of the backup `from` to `to`, each table's rows passed through `edit`
/// first: the copy's checksums are valid whatever its rows hold.
fn rewrite_backup(from: &Path, to: &Path, mut edit: impl FnMut(&str, &mut Vec<Vec<Value>>)) {
    let reader = ArchiveReader::open(from).unwrap();
    let mut writer = ArchiveWriter::create(to).unwrap();
    for entry in &reader.manifest.tables {
        let mut source = reader.rows(entry).unwrap();
        let (mut rows, mut row) = (Vec::new(), Vec::new());
        while source.next_row(&mut row).unwrap() {
            rows.push(std::mem::take(&mut row));
        }
        edit(&entry.name, &mut rows);
        let mut encoded = Vec::new();
        for value in rows.iter().flatten() {
            value.encode(&mut encoded);
        }
        let mut table = writer.table(&entry.name, entry.columns.clone()).unwrap();
        table.write_rows(&encoded, rows.len() as u64).unwrap();
        table.finish().unwrap();
    }
    let mut manifest = reader.manifest.clone();
    manifest.name = to.file_stem().unwrap().to_string_lossy().into_owned();
    writer.finish(manifest).unwrap();
}

/// A `serve:` lease valid until `until`, as a `guard serve` that died would leave it.
async fn insert_serve_lease(backend: Backend, url: &str, holder: &str, until: time::OffsetDateTime) {
    use sqlx::Connection;
    let sql = "INSERT INTO job_leases (name, holder, expires_at, acquired_at) VALUES ($1, $2, $3, $4)";
    let (name, now) = (format!("serve:{holder}"), time::OffsetDateTime::now_utc());
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query(sql).bind(&name).bind(holder).bind(until).bind(now).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sql).bind(&name).bind(holder).bind(until).bind(now).execute(&mut conn).await.unwrap();
        }
    }
}

fn safety_backups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("pre-restore-"))
        .count()
}

backend_test!(restore_refuses_a_database_a_guard_serve_is_using_unless_forced, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let backups = tempfile::tempdir().unwrap();
    let cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
    ok(&cli.run(&["backup", "create", "--name", "before"]));
    let before = backups.path().join("before.guardbak");
    let before = before.to_str().unwrap();
    crate::mfa::new_user(&app, "default", "after@example.com", &[]).await;
    let after = "SELECT count(*) FROM users WHERE email = 'after@example.com'";

    // A `guard serve` on the database: the restore is refused before anything is
    // written, the safety backup included.
    let mut server = cli.serve(&[]).await;
    let refused = cli.run(&["restore", before, "--yes"]);
    let out = failed(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(out.contains("1 guard serve process"), "{out}");
    assert!(out.contains("stop every guard serve using this database first"), "{out}");
    assert!(out.contains("--force"), "{out}");
    assert!(!out.contains(&format!("restored {before} into")), "{out}");
    assert_eq!(count(backend, &app.database_url, after).await, 1, "the database is unchanged");
    assert_eq!(safety_backups(backups.path()), 0, "no safety backup is taken");
    ok(&cli.run(&["backup", "create", "--name", "during"]));
    let during = backups.path().join("during.guardbak");
    let during = during.to_str().unwrap();
    let help = String::from_utf8(cli.run(&["restore", "--help"]).stdout).unwrap();
    assert!(help.contains("--force"), "{help}");

    // PostgreSQL: --force restores under the running server. (A SQLite file is not
    // replaced under a running server here; its --force is checked below.)
    if backend == Backend::Postgres {
        let forced = ok(&cli.run(&["restore", before, "--yes", "--force"]));
        assert!(forced.contains("restored"), "{forced}");
        assert_eq!(count(backend, &app.database_url, after).await, 0);
        crate::mfa::new_user(&app, "default", "after@example.com", &[]).await;
    }

    // Stopped cleanly, the server gives its lease back: the same restore goes on at once.
    // (No more safety backups: their names, to the second, would collide.)
    assert!(server.terminate().success(), "{}", server.stderr());
    let done = ok(&cli.run(&["restore", before, "--yes", "--no-safety-backup"]));
    assert!(done.contains("restored"), "{done}");
    assert_eq!(count(backend, &app.database_url, after).await, 0, "the backup replaced the database");
    // A backup taken while the server ran holds its lease; restored, the lease is gone.
    let serve_leases = "SELECT count(*) FROM job_leases WHERE name LIKE 'serve:%'";
    assert_eq!(
        column(Path::new(during), "job_leases", "name")
            .iter()
            .filter(|n| matches!(n, Value::Text(t) if t.starts_with("serve:")))
            .count(),
        1
    );
    ok(&cli.run(&["restore", during, "--yes", "--no-safety-backup"]));
    assert_eq!(count(backend, &app.database_url, serve_leases).await, 0);
    ok(&cli.run(&["restore", during, "--yes", "--no-safety-backup"]));

    // A lease still running with no process behind it (a server that died) refuses the
    // restore until it runs out; --force restores anyway.
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    insert_serve_lease(backend, &app.database_url, "a-process-that-died", until).await;
    let out = failed(&cli.run(&["restore", before, "--yes", "--no-safety-backup"]));
    assert!(out.contains("1 guard serve process"), "{out}");
    let forced = ok(&cli.run(&["restore", before, "--yes", "--force", "--no-safety-backup"]));
    assert!(forced.contains("restored"), "{forced}");
    // An expired lease does not stand in the way.
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    insert_serve_lease(backend, &app.database_url, "long-gone", past).await;
    ok(&cli.run(&["restore", before, "--yes", "--no-safety-backup"]));
});

backend_test!(a_restore_that_fails_part_way_leaves_the_database_as_it_was, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    crate::mfa::new_user(&app, "default", "in-backup@example.com", &[]).await;
    let backups = tempfile::tempdir().unwrap();
    let cli = guard_on(&app).env("BACKUP_DIR", backups.path().display().to_string());
    ok(&cli.run(&["backup", "create", "--name", "good", "--include-secrets"]));
    let good = backups.path().join("good.guardbak");
    // A copy whose users table holds its first row twice: its checksums hold and every
    // row reads, but the second copy breaks the primary key once the tables before
    // users (tenants among them) are loaded.
    let broken = backups.path().join("broken.guardbak");
    rewrite_backup(&good, &broken, |table, rows| {
        if table == "users" {
            let first = rows[0].clone();
            rows.push(first);
        }
    });
    let verified = ok(&cli.run(&["backup", "verify", broken.to_str().unwrap()]));
    assert!(verified.contains(": OK:"), "{verified}");

    crate::mfa::new_user(&app, "default", "only-current@example.com", &[]).await;
    let queries = [
        "SELECT count(*) FROM tenants",
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM signing_keys",
        "SELECT count(*) FROM roles",
        "SELECT count(*) FROM users WHERE email = 'only-current@example.com'",
    ];
    let mut before = Vec::new();
    for q in queries {
        before.push(count(backend, &app.database_url, q).await);
    }
    assert_eq!(before[4], 1);

    let failure = cli.run(&["restore", broken.to_str().unwrap(), "--yes"]);
    let out = failed(&failure);
    assert_eq!(failure.status.code(), Some(1), "{out}");
    assert!(!out.contains("restored"), "{out}");
    assert!(out.to_lowercase().contains("unique") || out.contains("duplicate key"), "a clear error: {out}");
    assert!(out.contains("table users: ") && out.contains("the database is unchanged"), "{out}");
    let mut after = Vec::new();
    for q in queries {
        after.push(count(backend, &app.database_url, q).await);
    }
    assert_eq!(after, before, "the database is as it was ({queries:?})");
    let check = ok(&cli.run(&["db", "verify-integrity"]));
    assert!(check.contains("integrity verified"), "{check}");
    let version = ok(&cli.run(&["version"]));
    assert!(version.contains("(0 pending)"), "{version}");
});
