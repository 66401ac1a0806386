//! The audit log on both backends: records altered, inserted, deleted or cut off in
//! the database are named by `guard audit verify` and GET /v1/audit/verify; many
//! concurrent writers on two replicas keep one valid chain; query filters and exports
//! agree over 100,000 events; bad query parameters are refused by name; a change and
//! its event commit together; retention keeps what remains verifiable; the daily
//! review from the operations guide works from the command line.

use std::collections::HashSet;
use std::io::Read as _;

use guard_core::audit::{AuditRecord, content_bytes};
use guard_core::events::{Actor, Event, EventSink, Outcome};
use guard_core::users::ADMIN_ROLE;
use guard_testkit::{Backend, TestApp, backend_test};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

use crate::limits::{admin_session, guard_on};
use crate::mfa::{PASSWORD, new_user, send};
use crate::support::expect_problem;

/// A value bound to a tampering statement.
enum Bind {
    Id(Uuid),
    Bytes(Vec<u8>),
}

/// Runs `sql` with `binds` as `$1`, `$2`… on the app's database, behind guard's back;
/// returns the rows it touched.
async fn tamper(app: &TestApp, backend: Backend, sql: &str, binds: Vec<Bind>) -> u64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    macro_rules! run {
        ($conn:ty) => {{
            let mut conn = <$conn>::connect(&app.database_url).await.unwrap();
            let mut query = sqlx::query(sql);
            for bind in binds {
                query = match bind {
                    Bind::Id(id) => query.bind(id),
                    Bind::Bytes(bytes) => query.bind(bytes),
                };
            }
            query.execute(&mut conn).await.unwrap().rows_affected()
        }};
    }
    match backend {
        Backend::Sqlite => run!(sqlx::SqliteConnection),
        Backend::Postgres => run!(sqlx::PgConnection),
    }
}

/// A tenant with six events in its chain (created, then five users), sealed.
async fn tenant_with_events(app: &TestApp, slug: &str) -> Uuid {
    let tenant = app.state.tenants.create(Actor::Operator, slug, Some(slug)).await.unwrap();
    for n in 0..5 {
        new_user(app, slug, &format!("user{n}@{slug}.example.com"), &[]).await;
    }
    app.state.audit.seal(false).await.unwrap();
    tenant.id.0
}

async fn chain(app: &TestApp, tenant: Uuid) -> Vec<AuditRecord> {
    app.state.db.audit.sealed_after(tenant, 0, 1000).await.unwrap()
}

/// The first break verification finds in `tenant`'s chain.
async fn broken(app: &TestApp, tenant: Uuid) -> guard_core::audit::Broken {
    let report = app.state.audit.verify(Some(tenant)).await.unwrap();
    assert!(!report.intact, "{report:?}");
    report.chains[0].broken.clone().expect("a break")
}

fn failed_stderr(output: &std::process::Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

backend_test!(altered_inserted_deleted_and_truncated_records_are_named_by_verify, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let altered = tenant_with_events(&app, "altered").await;
    let inserted = tenant_with_events(&app, "inserted").await;
    let deleted = tenant_with_events(&app, "deleted").await;
    let truncated = tenant_with_events(&app, "truncated").await;
    // Checkpoints of every head, as the interval would have made by now.
    app.state.audit.seal(true).await.unwrap();
    let report = app.state.audit.verify(None).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert!(report.records >= 24, "{report:?}");
    let cli = guard_on(&app);
    let out = cli.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Altered: one field of one record.
    let third = chain(&app, altered).await[2].clone();
    assert_eq!(third.seq, Some(3));
    let changed = "UPDATE audit_events SET result = 'failure' WHERE tenant_id = $1 AND seq = 3";
    assert_eq!(tamper(&app, backend, changed, vec![Bind::Id(altered)]).await, 1);
    let at = broken(&app, altered).await;
    assert_eq!((at.seq, at.id), (Some(3), Some(third.id)), "{at:?}");
    assert!(at.reason.contains("MAC"), "{at:?}");
    let stderr = failed_stderr(&cli.run(&["audit", "verify", "--tenant", "altered"]));
    assert!(stderr.contains(&third.id.to_string()), "{stderr}");
    // The tenant's administrator sees the same through the API.
    new_user(&app, "altered", "boss@altered.example.com", &[ADMIN_ROLE]).await;
    let body = json!({ "email": "boss@altered.example.com", "password": PASSWORD });
    let signed_in = send(&app, "POST", "altered", "/v1/auth/password/login", None, body).await;
    let token = signed_in.json::<Value>().await.unwrap()["session_token"].as_str().unwrap().to_owned();
    let answer = send(&app, "GET", "altered", "/v1/audit/verify", Some(&token), json!(null)).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["intact"], false, "{answer}");
    assert_eq!(answer["chains"][0]["broken"]["id"], json!(third.id), "{answer}");
    let restored = "UPDATE audit_events SET result = 'success' WHERE tenant_id = $1 AND seq = 3";
    tamper(&app, backend, restored, vec![Bind::Id(altered)]).await;
    assert!(app.state.audit.verify(Some(altered)).await.unwrap().intact, "restoring the field restores the chain");
    // A made-up record put straight into the log, past the chain's head.
    let beyond = Uuid::now_v7();
    let insert = "INSERT INTO audit_events (id, tenant_id, seq, at_us, event_type, actor, result, details, mac, hash) \
                  SELECT $1, tenant_id, last_seq + 1, 1, 'user.deleted', 'operator', 'success', '{}', $2, $2 \
                  FROM audit_chains WHERE tenant_id = $3";
    let binds = vec![Bind::Id(beyond), Bind::Bytes(vec![9u8; 32]), Bind::Id(altered)];
    assert_eq!(tamper(&app, backend, insert, binds).await, 1);
    let at = broken(&app, altered).await;
    assert_eq!(at.id, Some(beyond), "{at:?}");
    assert!(at.reason.contains("beyond the chain head"), "{at:?}");
    tamper(&app, backend, "DELETE FROM audit_events WHERE id = $1", vec![Bind::Id(beyond)]).await;
    assert!(app.state.audit.verify(Some(altered)).await.unwrap().intact);

    // Inserted: a made-up event, queued for guard to seal as if it were its own.
    let forged = Uuid::now_v7();
    let insert = "INSERT INTO audit_queue (id, tenant_id, at_us, event_type, actor, result, details, mac) \
                  VALUES ($1, $2, 1, 'user.deleted', 'operator', 'success', '{}', $3)";
    let binds = vec![Bind::Id(forged), Bind::Id(inserted), Bind::Bytes(vec![7u8; 32])];
    assert_eq!(tamper(&app, backend, insert, binds).await, 1);
    let at = broken(&app, inserted).await;
    assert_eq!(at.id, Some(forged), "{at:?}");
    let stderr = failed_stderr(&cli.run(&["audit", "verify"]));
    assert!(stderr.contains(&forged.to_string()), "{stderr}");

    // Deleted: a record from the middle.
    let records = chain(&app, deleted).await;
    let gone = "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 3";
    assert_eq!(tamper(&app, backend, gone, vec![Bind::Id(deleted)]).await, 1);
    let at = broken(&app, deleted).await;
    assert_eq!((at.seq, at.id), (Some(4), Some(records[3].id)), "{at:?}");
    assert!(at.reason.contains("missing"), "{at:?}");

    // Truncated: the last two records, and the chain head rewritten to match; the
    // signed checkpoint still names the lost end.
    let records = chain(&app, truncated).await;
    let last = records.len() as i64;
    let cut = format!("DELETE FROM audit_events WHERE tenant_id = $1 AND seq > {}", last - 2);
    assert_eq!(tamper(&app, backend, &cut, vec![Bind::Id(truncated)]).await, 2);
    let head = records[records.len() - 3].hash.clone().unwrap();
    let rewrite = format!("UPDATE audit_chains SET last_seq = {}, last_hash = $2 WHERE tenant_id = $1", last - 2);
    assert_eq!(tamper(&app, backend, &rewrite, vec![Bind::Id(truncated), Bind::Bytes(head)]).await, 1);
    let at = broken(&app, truncated).await;
    assert!(at.reason.contains("removed from the end"), "{at:?}");
    assert!(at.seq.is_some_and(|s| s > last - 2), "names a lost position: {at:?}");
});

backend_test!(events_from_many_concurrent_requests_on_two_replicas_keep_one_valid_chain, |backend| {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let b = TestApp::builder(backend).share_database_of(&a).spawn().await.unwrap();
    let token = admin_session(&a).await;
    let reads: Vec<_> = (0..200)
        .map(|n| {
            let app = if n % 2 == 0 { &a } else { &b };
            let request =
                app.http.get(app.url("/v1/audit?limit=1")).header("x-tenant-id", "default").bearer_auth(&token);
            async move { request.send().await.unwrap().status() }
        })
        .collect();
    // Verification runs while the chain grows under it, and must not mistake that
    // for tampering.
    let audit = b.state.audit.clone();
    let verifying = tokio::spawn(async move {
        let mut reports = Vec::new();
        for _ in 0..5 {
            reports.push(audit.verify(None).await.unwrap());
        }
        reports
    });
    for status in futures_util::future::join_all(reads).await {
        assert_eq!(status, 200);
    }
    for report in verifying.await.unwrap() {
        assert!(report.intact, "{report:?}");
    }
    let report = a.state.audit.verify(None).await.unwrap();
    assert!(report.intact, "{report:?}");
    let tenant = a.state.tenants.find("default").await.unwrap().id.0;
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/audit?type=audit.events.read&limit=1000".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = send(&b, "GET", "default", &path, Some(&token), json!(null)).await.json().await.unwrap();
        seen += page["events"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(seen >= 200, "every read is recorded: {seen}");
    let chain = a.state.db.audit.sealed_after(tenant, 0, 10_000).await.unwrap();
    let seqs: Vec<i64> = chain.iter().map(|r| r.seq.unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "one gapless sequence");
});

/// Appends `count` events, newest first from now, one every 8.64 s (10,000 a day):
/// every tenth an error, the rest cycling through four types.
async fn many_events(app: &TestApp, tenant: Uuid, count: usize) -> Vec<AuditRecord> {
    let kinds = [
        ("auth.login.success", Outcome::Success),
        ("auth.login.failure", Outcome::Failure),
        ("user.updated", Outcome::Success),
        ("authz.permission.denied", Outcome::Denied),
    ];
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
    let mut all = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<AuditRecord> = chunk
            .iter()
            .map(|&i| {
                let (kind, outcome) = if i % 10 == 9 { ("auth.token.issue", Outcome::Error) } else { kinds[i % 4] };
                let event = Event::success(kind, Actor::System).tenant(tenant).outcome(outcome).target(format!("t{i}"));
                let mut record = app.state.audit.record(&event);
                record.at_us = now_us - i as i64 * 8_640_000;
                record.mac = app.state.audit.keys().mac(&content_bytes(&record));
                record
            })
            .collect();
        app.state.db.audit.append(&batch).await.unwrap();
        all.extend(batch);
    }
    all
}

async fn page_through(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?{query}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let response = send(app, "GET", "default", &path, Some(token), json!(null)).await;
        assert_eq!(response.status(), 200, "{path}");
        let page: Value = response.json().await.unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return events,
        }
    }
}

backend_test!(query_filters_and_exports_agree_over_100000_events, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let tenant = app.state.tenants.find("default").await.unwrap().id.0;
    let records = many_events(&app, tenant, 100_000).await;
    app.state.audit.seal(false).await.unwrap();
    assert!(app.state.db.audit.unsealed_chains().await.unwrap().is_empty());
    let day_us = 86_400_000_000;
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
    let generated = |r: &&AuditRecord| r.target.as_deref().is_some_and(|t| t.starts_with('t'));

    // A day: newest first, no duplicates, exactly the generated events of that day
    // (and the sign-in of the administrator reading them).
    let day = page_through(&app, &token, "since=24%20hours%20ago").await;
    let day_ids: HashSet<&str> = day.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(day_ids.len(), day.len());
    let expected: HashSet<String> =
        records.iter().filter(|r| r.at_us > now_us - day_us + 60_000_000).map(|r| r.id.to_string()).collect();
    assert!(expected.iter().all(|id| day_ids.contains(id.as_str())));
    assert!(day.len() - expected.len() <= 12, "{} vs {}", day.len(), expected.len());
    let times: Vec<&str> = day.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Type glob and result together, over three days.
    let failures = page_through(&app, &token, "since=3d&type=auth.*&result=failure").await;
    let expected = records
        .iter()
        .filter(generated)
        .filter(|r| r.at_us >= now_us - 3 * day_us && r.kind.starts_with("auth.") && r.result == "failure")
        .count();
    assert!(failures.len().abs_diff(expected) <= 3, "{} vs {expected}", failures.len());
    assert!(failures.iter().all(|e| e["type"] == "auth.login.failure" && e["result"] == "failure"));

    // The command-line export of a week, gzip-compressed, holds exactly that week.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("week.jsonl.gz");
    let out = guard_on(&app).run(&["audit", "export", "--since", "7d", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()).read_to_string(&mut text).unwrap();
    let exported: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let week: HashSet<String> =
        records.iter().filter(|r| r.at_us >= now_us - 7 * day_us + 60_000_000).map(|r| r.id.to_string()).collect();
    let exported_ids: HashSet<String> = exported.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(week.is_subset(&exported_ids), "every event of the week is exported");
    let generated_exported =
        exported.iter().filter(|e| e["target"].as_str().is_some_and(|t| t.starts_with('t'))).count();
    assert!(generated_exported - week.len() <= 8, "{generated_exported} vs {}", week.len());
    // In chain order: each tenant's records together, by sequence.
    let chain: Vec<(String, i64)> =
        exported.iter().map(|e| (e["tenant"].to_string(), e["seq"].as_i64().unwrap())).collect();
    assert!(chain.windows(2).all(|w| w[0].0 != w[1].0 || w[0].1 < w[1].1), "chain order");

    // The streaming endpoint, all 100,000 errors and denials of the whole range.
    let response = send(&app, "GET", "default", "/v1/audit/export?type=auth.token.*", Some(&token), json!(null)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let streamed = response.text().await.unwrap();
    assert_eq!(streamed.lines().count(), 10_000);
    assert!(streamed.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["result"] == "error"));
});

backend_test!(bad_query_parameters_get_a_400_naming_the_parameter_and_record_nothing, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let reads = |app: &TestApp| {
        let filter = guard_core::audit::AuditFilter {
            kind_like: Some("audit.events.read".into()),
            limit: 1000,
            ..Default::default()
        };
        let audit = app.state.audit.clone();
        async move { audit.query(&filter).await.unwrap().records.len() }
    };
    let before = reads(&app).await;
    for (query, parameter) in [
        ("result=maybe", "result"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("since=1d&until=2d", "until"),
        ("limit=5000", "limit"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("type=Auth.%25", "type"),
        ("actor=", "actor"),
    ] {
        let response = send(&app, "GET", "default", &format!("/v1/audit?{query}"), Some(&token), json!(null)).await;
        let problem = expect_problem(response, 400, "invalid_parameter").await;
        assert_eq!(problem["parameter"], parameter, "{query}: {problem}");
        assert!(problem["detail"].as_str().unwrap().starts_with(parameter), "{query}: {problem}");
    }
    let unknown = send(&app, "GET", "default", "/v1/audit?colour=red", Some(&token), json!(null)).await;
    let problem = expect_problem(unknown, 400, "bad_request").await;
    assert!(problem["detail"].as_str().unwrap().contains("colour"), "{problem}");
    let export = send(&app, "GET", "default", "/v1/audit/export?limit=5", Some(&token), json!(null)).await;
    expect_problem(export, 400, "invalid_parameter").await;
    // An ordinary user may not read the log at all.
    new_user(&app, "default", "pat@example.com", &[]).await;
    let body = json!({ "email": "pat@example.com", "password": PASSWORD });
    let signed_in = send(&app, "POST", "default", "/v1/auth/password/login", None, body).await;
    let user_token = signed_in.json::<Value>().await.unwrap()["session_token"].as_str().unwrap().to_owned();
    let refused = send(&app, "GET", "default", "/v1/audit", Some(&user_token), json!(null)).await;
    expect_problem(refused, 403, "forbidden").await;
    assert_eq!(reads(&app).await, before, "a refused query is not a read");
    let fine = send(&app, "GET", "default", "/v1/audit?since=1h", Some(&token), json!(null)).await;
    assert_eq!(fine.status(), 200);
    assert_eq!(reads(&app).await, before + 1, "a read is recorded");
});

// Creating a user when the audit log refuses every insert: the user is not created.
backend_test!(a_change_and_its_event_commit_together_or_not_at_all, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let refuse = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_queue BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$ \
             LANGUAGE plpgsql; CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_queue FOR EACH ROW \
             EXECUTE FUNCTION refuse_audit()"
        }
    };
    crate::migrations::execute_script(backend, &app.database_url, refuse).await.unwrap();
    let body = json!({ "email": "new@example.com", "password": PASSWORD });
    let created = send(&app, "POST", "default", "/v1/users", Some(&token), body.clone()).await;
    assert_eq!(created.status(), 500, "{}", created.text().await.unwrap());
    let tenant = app.state.tenants.find("default").await.unwrap();
    let email = guard_core::users::Email::parse("new@example.com").unwrap();
    assert!(app.state.db.users.get_by_email(tenant.id, &email).await.unwrap().is_none(), "no change without its event");
    let allow = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_audit",
        Backend::Postgres => "DROP TRIGGER refuse_audit ON audit_queue",
    };
    crate::migrations::execute_script(backend, &app.database_url, allow).await.unwrap();
    assert_eq!(send(&app, "POST", "default", "/v1/users", Some(&token), body.clone()).await.status(), 201);
    // A refused change leaves no event behind: one user.created for one user.
    assert_eq!(send(&app, "POST", "default", "/v1/users", Some(&token), body).await.status(), 409);
    let filter =
        guard_core::audit::AuditFilter { kind_like: Some("user.created".into()), limit: 100, ..Default::default() };
    let created = app.state.audit.query(&filter).await.unwrap().records;
    let user = app.state.db.users.get_by_email(tenant.id, &email).await.unwrap().unwrap();
    assert_eq!(created.iter().filter(|r| r.target.as_deref() == Some(&user.id.to_string())).count(), 1);
    assert!(app.state.audit.verify(None).await.unwrap().intact);
});

/// A tenant `kept` keeping its events two days, whose chain of ten events ends at a
/// checkpoint signed with a time three days ago: retention may cut all of it.
async fn chain_signed_three_days_ago(app: &TestApp) -> (guard_core::tenants::Tenant, guard_core::audit::ChainState) {
    let tenant = app.state.tenants.create(Actor::Operator, "Kept", Some("kept")).await.unwrap();
    app.state.tenants.update_settings(Actor::Operator, "kept", &json!({ "audit_retention_days": 2 })).await.unwrap();
    // The chain's first checkpoint now, so that the interval keeps the sealer from
    // signing the head this test signs with an older time.
    app.state.audit.seal(true).await.unwrap();
    many_events(app, tenant.id.0, 10).await;
    app.state.audit.seal(false).await.unwrap();
    let head = app.state.db.audit.chains(Some(tenant.id.0)).await.unwrap().remove(0);
    let three_days_ago = (time::OffsetDateTime::now_utc().unix_timestamp() - 3 * 86_400) * 1_000_000;
    let checkpoint = app.state.audit.keys().sign(tenant.id.0, head.last_seq, &head.last_hash, three_days_ago);
    app.state.db.audit.add_checkpoint(&checkpoint).await.unwrap();
    (tenant, head)
}

backend_test!(retention_prunes_to_a_signed_checkpoint_and_the_rest_still_verifies, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let (tenant, head) = chain_signed_three_days_ago(&app).await;
    new_user(&app, "kept", "recent@kept.example.com", &[]).await;
    app.state.audit.seal(false).await.unwrap();

    let pruned =
        guard_api::apply_audit_retention(&app.state.tenants, &app.state.audit, &app.state.config.audit).await.unwrap();
    assert_eq!(pruned, head.last_seq as u64, "everything the old checkpoint covers");
    let report = app.state.audit.verify(Some(tenant.id.0)).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.chains[0].first_seq, head.last_seq + 1);
    assert_eq!(report.chains[0].records, 1, "the recent user.created remains");
    // The default tenant keeps 90 days: nothing of it went.
    let default = app.state.tenants.find("default").await.unwrap().id.0;
    assert!(app.state.db.audit.sealed_after(default, 0, 10).await.unwrap().first().is_some_and(|r| r.seq == Some(1)));

    // Deleting the checkpoint that vouches for the pruned start is caught.
    let drop = format!("DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq = {}", head.last_seq);
    assert_eq!(tamper(&app, backend, &drop, vec![Bind::Id(tenant.id.0)]).await, 1);
    let at = broken(&app, tenant.id.0).await;
    assert!(at.reason.contains("retention"), "{at:?}");
});

backend_test!(the_daily_review_lists_errors_and_auth_events_from_the_command_line, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    new_user(&app, "default", "ann@example.com", &[]).await;
    let body = json!({ "email": "ann@example.com", "password": "wrong password, twice over" });
    let failed = app
        .http
        .post(app.url("/v1/auth/password/login"))
        .header("x-tenant-id", "default")
        .header("user-agent", "review-test/1.0")
        .header("x-request-id", "review-req-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let body = json!({ "email": "ann@example.com", "password": PASSWORD });
    assert_eq!(send(&app, "POST", "default", "/v1/auth/password/login", None, body).await.status(), 200);
    let tenant = app.state.tenants.find("default").await.unwrap().id.0;
    let error = Event::success("email.delivery.failed", Actor::System).tenant(tenant).outcome(Outcome::Error);
    app.state.audit.emit(error.target("ann@example.com")).await;

    let cli = guard_on(&app);
    let out = cli.run(&["audit", "query", "--since", "24 hours ago", "--result", "error"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("email.delivery.failed"), "{table}");
    assert!(!table.contains("auth.login"), "only errors: {table}");

    let out = cli.run(&["audit", "query", "--since", "24 hours ago", "--event-type", "auth.*", "--format", "jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.iter().all(|t| t.starts_with("auth.")), "{types:?}");
    assert!(types.contains(&"auth.login.failure") && types.contains(&"auth.login.success"), "{types:?}");
    let failure = events.iter().find(|e| e["type"] == "auth.login.failure").unwrap();
    assert_eq!(failure["result"], "failure");
    assert_eq!(failure["ip"], "127.0.0.1", "{failure}");
    assert_eq!(failure["user_agent"], "review-test/1.0", "{failure}");
    assert_eq!(failure["request_id"], "review-req-1", "{failure}");

    for bad in [["--result", "oops"], ["--since", "last tuesday"]] {
        let out = cli.run(&["audit", "query", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(bad[0]), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The operator's queries were recorded too, and the counter saw the events.
    let filter =
        guard_core::audit::AuditFilter { kind_like: Some("audit.events.read".into()), limit: 10, ..Default::default() };
    let reads = app.state.audit.query(&filter).await.unwrap().records;
    assert!(reads.len() >= 2 && reads.iter().all(|r| r.actor == "operator"), "{reads:?}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("guard_audit_events_total{") && l.contains("type=\"auth.login.failure\"")),
        "{metrics}"
    );
});

async fn user_created_ids(app: &TestApp) -> HashSet<String> {
    let filter =
        guard_core::audit::AuditFilter { kind_like: Some("user.created".into()), limit: 1000, ..Default::default() };
    app.state.audit.query(&filter).await.unwrap().records.iter().map(|r| r.id.to_string()).collect()
}

backend_test!(events_reach_a_syslog_collector_and_delivery_resumes_after_a_restart, |backend| {
    let Some(collector) = guard_testkit::SyslogSink::start() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    let delivering = || {
        TestApp::builder(backend)
            .share_database_of(&app)
            .env("AUDIT_DELIVERY_URL", collector.url())
            .env("AUDIT_DELIVERY_START", "beginning")
    };
    let first = delivering().spawn().await.unwrap();
    for n in 0..5 {
        new_user(&app, "default", &format!("s{n}@example.com"), &[]).await;
    }
    let created = |messages: &[Value]| -> Vec<String> {
        messages
            .iter()
            .filter(|m| m["msgid"] == "user.created")
            .map(|m| {
                serde_json::from_str::<Value>(m["msg"].as_str().unwrap()).unwrap()["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while created(&collector.messages()).len() < 5 {
        assert!(std::time::Instant::now() < deadline, "{:?}", collector.messages());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for message in collector.messages() {
        assert!(message.get("error").is_none(), "the RFC 5424 parser refused one: {message}");
        assert_eq!(
            (&message["appname"], &message["facility"], message["bom"].as_bool()),
            (&json!("guard"), &json!("audit"), Some(true))
        );
        let body: Value = serde_json::from_str(message["msg"].as_str().unwrap()).unwrap();
        assert_eq!(body["type"], message["msgid"]);
        assert_eq!(message["severity"], if body["result"] == "success" { "info" } else { "notice" }, "{message}");
    }
    let lag = first.get("/metrics").await.text().await.unwrap();
    assert!(lag.lines().any(|l| l.starts_with("guard_audit_delivery_lag_seconds")), "{lag}");

    // Stopped, the sink hears nothing of new events; started again, delivery resumes
    // from where it stopped rather than from the start.
    drop(first);
    for n in 5..8 {
        new_user(&app, "default", &format!("s{n}@example.com"), &[]).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(created(&collector.messages()).len(), 5);
    let _second = delivering().spawn().await.unwrap();
    let expected = user_created_ids(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got: HashSet<String> = created(&collector.messages()).into_iter().collect();
        if got == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?} vs {expected:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(created(&collector.messages()).len() < 13, "the first five were not all sent again");
});

backend_test!(events_are_posted_to_a_webhook_and_retried_until_it_accepts, |backend| {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<(u32, Vec<Value>)>> = Arc::default();
    let hook = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let received = received.clone();
                async move {
                    let mut state = received.lock().unwrap();
                    state.0 += 1;
                    let authorised = headers.get("authorization").is_some_and(|v| v == "Bearer hook-secret");
                    if state.0 <= 2 || !authorised {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    state.1.extend(body["events"].as_array().unwrap().iter().cloned());
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let Some(app) = TestApp::builder(backend)
        .env("AUDIT_DELIVERY_URL", url)
        .env("AUDIT_DELIVERY_TOKEN", "hook-secret")
        .env("AUDIT_DELIVERY_START", "beginning")
        .spawn()
        .await
    else {
        return;
    };
    for n in 0..3 {
        new_user(&app, "default", &format!("w{n}@example.com"), &[]).await;
    }
    let expected = user_created_ids(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = received.lock().unwrap().1.clone();
        let got: HashSet<String> = events
            .iter()
            .filter(|e| e["type"] == "user.created")
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        if got == expected {
            // In each chain, in order.
            let default: Vec<i64> =
                events.iter().filter(|e| e["tenant"].is_string()).map(|e| e["seq"].as_i64().unwrap()).collect();
            assert!(default.windows(2).all(|w| w[0] < w[1]), "{default:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?} vs {expected:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(received.lock().unwrap().0 >= 3, "refused twice, then accepted");
});

backend_test!(an_internal_error_is_recorded_for_the_daily_review_without_its_internal_text, |backend| {
    let Some(app) = TestApp::builder(backend).routes(crate::support::test_routes()).spawn().await else { return };
    let response = app.http.get(app.url("/test/internal")).header("x-request-id", "failing-1").send().await.unwrap();
    assert_eq!(response.status(), 500);
    let filter = guard_core::audit::AuditFilter {
        kind_like: Some("api.request.failed".into()),
        limit: 10,
        ..Default::default()
    };
    // Written in the background, so that the answer never waits for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let event = loop {
        if let Some(event) = app.state.audit.query(&filter).await.unwrap().records.pop() {
            break event;
        }
        assert!(std::time::Instant::now() < deadline, "no api.request.failed event");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((event.result.as_str(), event.request_id.as_deref()), ("error", Some("failing-1")));
    assert_eq!(event.target.as_deref(), Some("GET /test/internal"));
    assert!(!event.details.contains("db-7") && !event.details.contains("password"), "{}", event.details);
});

/// Pages through `tenant`'s records two at a time in `order`, while a change that
/// started before four others (so its event has the earliest time) commits only once
/// the first page was read. The ids read, and the late record's.
async fn export_with_a_late_commit(app: &TestApp, tenant: Uuid, order: guard_core::audit::Order) -> (Vec<Uuid>, Uuid) {
    use guard_core::audit::{AuditFilter, Order};
    let late = app.state.audit.record(&Event::success("test.late", Actor::System).tenant(tenant));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for _ in 0..4 {
        let early = app.state.audit.record(&Event::success("test.early", Actor::System).tenant(tenant));
        app.state.db.audit.append(&[early]).await.unwrap();
    }
    let mut filter = AuditFilter { tenant: Some(tenant), order, limit: 2, ..Default::default() };
    let mut ids = Vec::new();
    let mut pending = Some(late.clone());
    loop {
        let page = app.state.audit.query(&filter).await.unwrap();
        ids.extend(page.records.iter().map(|r| r.id));
        if let Some(record) = pending.take() {
            app.state.db.audit.append(&[record]).await.unwrap();
        }
        match (order, page.next, page.next_position) {
            (Order::Chain, _, Some(position)) => filter.after_position = Some(position),
            (Order::OldestFirst, Some(cursor), _) => filter.after = Some(cursor),
            _ => break,
        }
    }
    (ids, late.id)
}

backend_test!(an_export_pages_by_the_chain_so_a_late_commit_with_an_earlier_time_is_not_skipped, |backend| {
    use guard_core::audit::Order;
    let Some(app) = TestApp::spawn(backend).await else { return };
    // Paging by time passes over the late commit: the defect exports had.
    let by_time = app.state.tenants.create(Actor::Operator, "Time", Some("time")).await.unwrap().id.0;
    let (ids, late) = export_with_a_late_commit(&app, by_time, Order::OldestFirst).await;
    assert!(!ids.contains(&late), "paging by time skips a late commit");
    // Paging by the chain finds it: the export is the chain, gap-free and in order.
    let by_chain = app.state.tenants.create(Actor::Operator, "Chain", Some("chain")).await.unwrap().id.0;
    let (ids, late) = export_with_a_late_commit(&app, by_chain, Order::Chain).await;
    assert!(ids.contains(&late), "paging by the chain reads the late commit");
    let chain: Vec<Uuid> =
        app.state.db.audit.sealed_after(by_chain, 0, 100).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, chain);
    // The HTTP export reads in this order too.
    let token = admin_session(&app).await;
    let export = app
        .http
        .get(app.url("/v1/audit/export"))
        .header("x-tenant-id", "default")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let text = export.text().await.unwrap();
    let seqs: Vec<i64> =
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().unwrap()).collect();
    assert!(!seqs.is_empty() && seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
});

backend_test!(retention_keeps_what_the_audit_sink_has_not_received, |backend| {
    // A sink that is down: nothing reaches it.
    let Some(app) = TestApp::builder(backend)
        .env("AUDIT_DELIVERY_URL", "syslog+tcp://127.0.0.1:1")
        .env("AUDIT_DELIVERY_START", "beginning")
        .spawn()
        .await
    else {
        return;
    };
    let (tenant, head) = chain_signed_three_days_ago(&app).await;

    let retention = || guard_api::apply_audit_retention(&app.state.tenants, &app.state.audit, &app.state.config.audit);
    assert_eq!(retention().await.unwrap(), 0, "nothing old enough goes while the sink has not received it");
    assert!(
        app.state.db.audit.sealed_after(tenant.id.0, 0, 1).await.unwrap().first().is_some_and(|r| r.seq == Some(1))
    );
    // Once the sink has the chain up to seq 4, retention may cut up to there only:
    // the old checkpoint at the head is past it, so still nothing goes.
    let sink = app.state.config.audit.delivery.as_ref().unwrap().name();
    app.state.db.audit.set_delivered(&sink, tenant.id.0, 4).await.unwrap();
    assert_eq!(retention().await.unwrap(), 0);
    // Delivered through the head: the old part goes.
    app.state.db.audit.set_delivered(&sink, tenant.id.0, head.last_seq).await.unwrap();
    assert_eq!(retention().await.unwrap(), head.last_seq as u64);
    assert!(app.state.audit.verify(Some(tenant.id.0)).await.unwrap().intact);
});

backend_test!(a_new_audit_sink_starts_with_events_from_now_not_the_whole_log, |backend| {
    let Some(collector) = guard_testkit::SyslogSink::start() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    for n in 0..3 {
        new_user(&app, "default", &format!("old{n}@example.com"), &[]).await;
    }
    app.state.audit.seal(false).await.unwrap();
    let old = user_created_ids(&app).await;
    assert_eq!(old.len(), 3);
    let delivering = TestApp::builder(backend)
        .share_database_of(&app)
        .env("AUDIT_DELIVERY_URL", collector.url())
        .spawn()
        .await
        .unwrap();
    // Wait until the new sink has been set up (its first pass).
    let sink = delivering.state.config.audit.delivery.as_ref().unwrap().name();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while delivering.state.db.audit.delivered(&sink).await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the sink was never set up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for n in 0..2 {
        new_user(&app, "default", &format!("new{n}@example.com"), &[]).await;
    }
    let fresh: HashSet<String> = user_created_ids(&app).await.difference(&old).cloned().collect();
    let received = || -> HashSet<String> {
        collector
            .messages()
            .iter()
            .filter(|m| m["msgid"] == "user.created")
            .map(|m| {
                serde_json::from_str::<Value>(m["msg"].as_str().unwrap()).unwrap()["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    while received() != fresh {
        assert!(std::time::Instant::now() < deadline, "{:?} vs {fresh:?}", received());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A few more passes: the old events never follow.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(received(), fresh, "the events kept from before the sink existed were not sent");
});
