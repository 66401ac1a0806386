//! Authorization at scale, on both backends: a decision loads only the entities it
//! needs (the principal, action and resource with their ancestors, and what their
//! attributes lead to that policies dereference), so a broken entity elsewhere
//! spoils nothing; one tenant's engine being built holds up no other tenant; an
//! entity change keeps the compiled policies; the entity list is paged; and a
//! tenant's policies are capped in count and size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use guard_core::audit::AuditRecord;
use guard_core::authz::store::{PolicyHead, StoredEntity};
use guard_core::authz::{Authz, AuthzSettings, AuthzState, AuthzStore, Group, PolicyVersion, Role, UserFacts};
use guard_core::events::Actor;
use guard_core::store::StoreError;
use guard_core::tenants::TenantId;
use guard_testkit::{Backend, TestApp, backend_test};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

use crate::authz::{call, expect};
use crate::limits::admin_session;
use crate::support::expect_problem;

const TENANT: &str = "default";

fn entity(kind: &str, id: &str, attrs: Value, parents: &[(&str, &str)]) -> Value {
    let parents: Vec<Value> = parents.iter().map(|(t, i)| json!({ "type": t, "id": i })).collect();
    json!({ "uid": { "type": kind, "id": id }, "attrs": attrs, "parents": parents })
}

fn reference(kind: &str, id: &str) -> Value {
    json!({ "__entity": { "type": kind, "id": id } })
}

fn request(principal: (&str, &str), action: &str, resource: (&str, &str)) -> Value {
    json!({
        "principal": { "type": principal.0, "id": principal.1 },
        "action": { "type": "App::Action", "id": action },
        "resource": { "type": resource.0, "id": resource.1 },
    })
}

/// Runs `sql` on the app's database, as another program writing to it would.
async fn execute(backend: Backend, url: &str, sql: String) {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut conn).await.unwrap();
        }
    }
}

backend_test!(a_decision_loads_its_ancestors_and_dereferenced_entities_and_nothing_else, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    // Needs: the principal's ancestors two levels up, the resource's folder, the
    // resource's owner (an attribute, dereferenced) and the owner's team (`in`).
    let deep = r#"permit(principal in App::Dept::"eng", action == App::Action::"read", resource in App::Folder::"f")
when { resource.owner.level > principal.level && resource.owner.boss == principal };"#;
    let team =
        r#"permit(principal, action == App::Action::"edit", resource) when { resource.owner in App::Team::"t2" };"#;
    for (id, text) in [("deep", deep), ("team", team)] {
        expect(call(&app, &token, "PUT", &format!("/v1/policies/{id}"), json!({ "text": text })).await, 200).await;
    }
    let entities = json!([
        entity("App::Dept", "eng", json!({}), &[]),
        entity("App::Team", "t", json!({}), &[("App::Dept", "eng")]),
        entity("App::Team", "t2", json!({}), &[]),
        entity("App::User", "alice", json!({ "level": 3 }), &[("App::Team", "t")]),
        entity(
            "App::User",
            "olga",
            json!({ "level": 5, "boss": reference("App::User", "alice") }),
            &[("App::Team", "t2")]
        ),
        entity("App::Folder", "f", json!({}), &[]),
        entity("App::Doc", "d", json!({ "owner": reference("App::User", "olga") }), &[("App::Folder", "f")]),
    ]);
    expect(call(&app, &token, "PUT", "/v1/entities", entities).await, 200).await;
    // Another program writes a loop of parents the API would refuse: with every
    // stored entity loaded, nothing the tenant decides would see its entities.
    let junk = |id: &str, parent: &str| {
        format!(
            "INSERT INTO authz_entities (tenant_id, entity_type, entity_id, body, updated_at) \
             SELECT id, 'App::Junk', '{id}', '{{\"uid\":{{\"type\":\"App::Junk\",\"id\":\"{id}\"}},\"attrs\":{{}},\"parents\":[{{\"type\":\"App::Junk\",\"id\":\"{parent}\"}}]}}', \
             '2026-01-01T00:00:00Z' FROM tenants WHERE slug = 'default'; \
             UPDATE authz_state SET entity_version = entity_version + 1 \
             WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'default');"
        )
    };
    execute(backend, &app.database_url, format!("{}{}", junk("j1", "j2"), junk("j2", "j1"))).await;
    app.state.authz.invalidate(app.state.tenants.find(TENANT).await.unwrap().id);

    let decide = |request: Value| {
        let (app, token) = (&app, &token);
        async move { expect(call(app, token, "POST", "/v1/authorize", request).await, 200).await }
    };
    let read = decide(request(("App::User", "alice"), "read", ("App::Doc", "d"))).await;
    assert_eq!((read["decision"].as_str(), &read["reasons"]), (Some("allow"), &json!(["deep"])), "{read}");
    assert_eq!(read["errors"], json!([]), "the owner was loaded for `resource.owner.level`: {read}");
    let edit = decide(request(("App::User", "alice"), "edit", ("App::Doc", "d"))).await;
    assert_eq!(edit["reasons"], json!(["team"]), "the owner's team was loaded for `in`: {edit}");
    // A resource sent with the request brings in the stored owner and its team.
    let mut sent = request(("App::User", "alice"), "edit", ("App::Doc", "x"));
    sent["entities"] = json!([entity("App::Doc", "x", json!({ "owner": reference("App::User", "olga") }), &[])]);
    assert_eq!(decide(sent).await["decision"], "allow");
    // Someone else's level is too low: denied, with no error.
    let other = decide(request(("App::User", "olga"), "read", ("App::Doc", "d"))).await;
    assert_eq!((other["decision"].as_str(), &other["errors"]), (Some("deny"), &json!([])), "{other}");
    // A decision that does need the broken entities is still answered (denied).
    let broken = decide(request(("App::Junk", "j1"), "edit", ("App::Doc", "d"))).await;
    assert_eq!(broken["decision"], "deny", "{broken}");
    // The listing still reads the stored entities, the broken ones too.
    let listed = expect(call(&app, &token, "GET", "/v1/entities?type=App::Junk", json!(null)).await, 200).await;
    assert_eq!(listed["entities"].as_array().map(Vec::len), Some(2), "{listed}");
});

backend_test!(entities_are_listed_a_page_at_a_time_by_cursor_and_limit, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let mut all = Vec::new();
    for d in ["d1", "d2", "d3"] {
        all.push(entity("App::Doc", d, json!({}), &[]));
    }
    for f in ["f1", "f2"] {
        all.push(entity("App::Folder", f, json!({}), &[]));
    }
    expect(call(&app, &token, "PUT", "/v1/entities", Value::Array(all)).await, 200).await;
    let uid = |e: &Value| format!("{}/{}", e["uid"]["type"].as_str().unwrap(), e["uid"]["id"].as_str().unwrap());

    // Pages of two, in (type, id) order, each naming the next.
    let mut seen = Vec::new();
    let mut path = "/v1/entities?limit=2".to_owned();
    for _ in 0..10 {
        let page = expect(call(&app, &token, "GET", &path, json!(null)).await, 200).await;
        let entities = page["entities"].as_array().unwrap();
        assert!(entities.len() <= 2, "{page}");
        seen.extend(entities.iter().map(uid));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/entities?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["App::Doc/d1", "App::Doc/d2", "App::Doc/d3", "App::Folder/f1", "App::Folder/f2"]);

    // The type filter pages too; a page that ends the list names no next one.
    let first = expect(call(&app, &token, "GET", "/v1/entities?type=App::Doc&limit=2", json!(null)).await, 200).await;
    assert_eq!(
        first["entities"].as_array().unwrap().iter().map(uid).collect::<Vec<_>>(),
        ["App::Doc/d1", "App::Doc/d2"]
    );
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let path = format!("/v1/entities?type=App::Doc&limit=2&cursor={cursor}");
    let second = expect(call(&app, &token, "GET", &path, json!(null)).await, 200).await;
    assert_eq!(second["entities"].as_array().unwrap().iter().map(uid).collect::<Vec<_>>(), ["App::Doc/d3"]);
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    let whole = expect(call(&app, &token, "GET", "/v1/entities", json!(null)).await, 200).await;
    assert_eq!(whole["entities"].as_array().map(Vec::len), Some(5), "100 a page by default: {whole}");
    assert_eq!(whole["next_cursor"], Value::Null, "{whole}");

    // Out of range, or not a cursor: 400 naming the parameter.
    for (query, parameter) in
        [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=many", "limit"), ("cursor=not-a-cursor", "cursor")]
    {
        let problem = expect_problem(
            call(&app, &token, "GET", &format!("/v1/entities?{query}"), json!(null)).await,
            400,
            "invalid_parameter",
        )
        .await;
        assert_eq!(problem["parameter"], parameter, "{query}: {problem}");
    }
    assert_eq!(
        expect(call(&app, &token, "GET", "/v1/entities?limit=1000", json!(null)).await, 200).await["entities"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
});

async fn current_version(app: &TestApp, token: &str) -> Value {
    expect(call(app, token, "GET", "/v1/policies", json!(null)).await, 200).await["version"].clone()
}

backend_test!(a_tenants_policies_are_capped_in_count_and_size, |backend| {
    let Some(app) =
        TestApp::builder(backend).env("AUTHZ_MAX_POLICIES", "3").env("AUTHZ_MAX_POLICY_BYTES", "300").spawn().await
    else {
        return;
    };
    let token = admin_session(&app).await;
    let policy = |n: usize| format!("permit(principal == App::User::\"u{n}\", action, resource);");
    for n in 0..3 {
        let path = format!("/v1/policies/p{n}");
        expect(call(&app, &token, "PUT", &path, json!({ "text": policy(n) })).await, 200).await;
    }
    let before = current_version(&app, &token).await;
    // A fourth policy is one too many: refused with 422, and nothing changes.
    let problem = expect_problem(
        call(&app, &token, "PUT", "/v1/policies/p3", json!({ "text": policy(3) })).await,
        422,
        "invalid_policy",
    )
    .await;
    assert!(problem.to_string().contains("AUTHZ_MAX_POLICIES"), "{problem}");
    // Replacing one by a longer one is fine while the set stays within 300 bytes ...
    let longer = format!("{} // {}", policy(2), "x".repeat(60));
    expect(call(&app, &token, "PUT", "/v1/policies/p2", json!({ "text": longer })).await, 200).await;
    // ... and refused past it, whole-set replacements too.
    let long = format!("{} // {}", policy(2), "x".repeat(200));
    let problem = expect_problem(
        call(&app, &token, "PUT", "/v1/policies/p2", json!({ "text": long })).await,
        422,
        "invalid_policy",
    )
    .await;
    assert!(problem.to_string().contains("AUTHZ_MAX_POLICY_BYTES"), "{problem}");
    let five: Vec<Value> = (0..5).map(|n| json!({ "id": format!("q{n}"), "text": policy(n) })).collect();
    expect_problem(call(&app, &token, "PUT", "/v1/policies", json!({ "policies": five })).await, 422, "invalid_policy")
        .await;
    assert_eq!(
        current_version(&app, &token).await.as_i64(),
        before.as_i64().map(|v| v + 1),
        "only the allowed change was written"
    );
    // Fewer policies are always allowed.
    expect(call(&app, &token, "DELETE", "/v1/policies/p0", json!(null)).await, 200).await;
});

/// A store that holds up reading the policies of one tenant until let go, and counts
/// how often any tenant's policies are read (once per engine built).
struct Gated {
    inner: Arc<dyn AuthzStore>,
    slow: TenantId,
    open: tokio::sync::watch::Receiver<bool>,
    policy_reads: AtomicUsize,
}

#[async_trait::async_trait]
impl AuthzStore for Gated {
    async fn authz_state(&self, tenant: TenantId) -> Result<AuthzState, StoreError> {
        self.inner.authz_state(tenant).await
    }
    async fn authz_changes(&self, since_us: i64) -> Result<Vec<(TenantId, AuthzState)>, StoreError> {
        self.inner.authz_changes(since_us).await
    }
    async fn policy_head(&self, tenant: TenantId) -> Result<Option<PolicyVersion>, StoreError> {
        self.policy_reads.fetch_add(1, Ordering::SeqCst);
        if tenant == self.slow {
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
        }
        self.inner.policy_head(tenant).await
    }
    async fn policy_version(&self, tenant: TenantId, version: i64) -> Result<Option<PolicyVersion>, StoreError> {
        self.inner.policy_version(tenant, version).await
    }
    async fn policy_versions(
        &self,
        tenant: TenantId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PolicyVersion>, StoreError> {
        self.inner.policy_versions(tenant, before, limit).await
    }
    async fn write_policy_version(&self, version: &PolicyVersion, audit: &AuditRecord) -> Result<bool, StoreError> {
        self.inner.write_policy_version(version, audit).await
    }
    async fn policy_heads(&self) -> Result<Vec<PolicyHead>, StoreError> {
        self.inner.policy_heads().await
    }
    async fn entities_page(
        &self,
        tenant: TenantId,
        entity_type: Option<&str>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        self.inner.entities_page(tenant, entity_type, after, limit).await
    }
    async fn entities_by_uid(
        &self,
        tenant: TenantId,
        uids: &[(String, String)],
    ) -> Result<Vec<StoredEntity>, StoreError> {
        self.inner.entities_by_uid(tenant, uids).await
    }
    async fn entity(&self, tenant: TenantId, kind: &str, id: &str) -> Result<Option<StoredEntity>, StoreError> {
        self.inner.entity(tenant, kind, id).await
    }
    async fn upsert_entities(
        &self,
        tenant: TenantId,
        entities: &[StoredEntity],
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.upsert_entities(tenant, entities, audit).await
    }
    async fn delete_entity(
        &self,
        tenant: TenantId,
        kind: &str,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        self.inner.delete_entity(tenant, kind, id, audit).await
    }
    async fn user_facts(&self, tenant: TenantId, user: Uuid) -> Result<Option<UserFacts>, StoreError> {
        self.inner.user_facts(tenant, user).await
    }
    async fn groups(&self, tenant: TenantId) -> Result<Vec<Group>, StoreError> {
        self.inner.groups(tenant).await
    }
    async fn group(&self, tenant: TenantId, name: &str) -> Result<Option<Group>, StoreError> {
        self.inner.group(tenant, name).await
    }
    async fn create_group(&self, group: &Group, audit: &AuditRecord) -> Result<(), StoreError> {
        self.inner.create_group(group, audit).await
    }
    async fn delete_group(&self, tenant: TenantId, name: &str, audit: &AuditRecord) -> Result<bool, StoreError> {
        self.inner.delete_group(tenant, name, audit).await
    }
    async fn group_members(&self, group: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.inner.group_members(group).await
    }
    async fn add_member(&self, group: Uuid, user: Uuid, audit: &AuditRecord) -> Result<bool, StoreError> {
        self.inner.add_member(group, user, audit).await
    }
    async fn remove_member(&self, group: Uuid, user: Uuid, audit: &AuditRecord) -> Result<bool, StoreError> {
        self.inner.remove_member(group, user, audit).await
    }
    async fn roles(&self, tenant: TenantId) -> Result<Vec<Role>, StoreError> {
        self.inner.roles(tenant).await
    }
    async fn create_role(&self, tenant: TenantId, role: &Role, audit: &AuditRecord) -> Result<(), StoreError> {
        self.inner.create_role(tenant, role, audit).await
    }
    async fn delete_role(&self, tenant: TenantId, name: &str, audit: &AuditRecord) -> Result<bool, StoreError> {
        self.inner.delete_role(tenant, name, audit).await
    }
}

/// An Authz over the app's database whose reads of `slow`'s policies wait until
/// the returned sender says `true`.
async fn gated(app: &TestApp, slow: TenantId) -> (Authz, Arc<Gated>, tokio::sync::watch::Sender<bool>) {
    let (open, wait) = tokio::sync::watch::channel(false);
    let store =
        Arc::new(Gated { inner: app.state.authz.store().clone(), slow, open: wait, policy_reads: AtomicUsize::new(0) });
    let authz = Authz::new(store.clone(), app.state.audit.clone(), AuthzSettings::default());
    (authz, store, open)
}

fn team_request() -> Value {
    request(("App::User", "ann"), "read", ("App::Doc", "d"))
}

backend_test!(building_one_tenants_engine_holds_up_no_other_tenant, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let fast = app.state.tenants.find(TENANT).await.unwrap().id;
    let slow = app.state.tenants.create(Actor::Operator, "Slow", Some("slow")).await.unwrap().id;
    let (authz, store, open) = gated(&app, slow).await;
    let held = {
        let authz = authz.clone();
        tokio::spawn(async move { authz.authorize(slow, None, Actor::Operator, &[team_request()]).await })
    };
    // The slow tenant's engine is being built ...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.policy_reads.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the slow tenant's build never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and another tenant's first decision does not wait for it.
    let other =
        tokio::time::timeout(Duration::from_secs(5), authz.authorize(fast, None, Actor::Operator, &[team_request()]))
            .await;
    assert!(matches!(other, Ok(Ok(_))), "the other tenant waited for the slow one's build");
    assert!(!held.is_finished(), "the slow tenant's build is still held");
    open.send(true).unwrap();
    let decided = tokio::time::timeout(Duration::from_secs(10), held).await.unwrap().unwrap().unwrap();
    assert_eq!(decided[0].decision, "deny");
});

backend_test!(an_entity_change_reaches_decisions_without_rebuilding_the_engine, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let tenant = app.state.tenants.find(TENANT).await.unwrap().id;
    let (authz, store, _open) = gated(&app, TenantId(Uuid::nil())).await;
    let team = r#"permit(principal in App::Team::"t", action == App::Action::"read", resource);"#;
    authz.put_policy(tenant, Actor::Operator, "team", team).await.unwrap();
    let requests = [team_request()];
    let decide = || authz.authorize(tenant, None, Actor::Operator, &requests);
    assert_eq!(decide().await.unwrap()[0].decision, "deny");
    let builds = store.policy_reads.load(Ordering::SeqCst);
    // Ann joins the team: the next decision sees it, with the same compiled policies.
    let ann =
        json!([entity("App::Team", "t", json!({}), &[]), entity("App::User", "ann", json!({}), &[("App::Team", "t")])]);
    authz.upsert_entities(tenant, Actor::Operator, &ann).await.unwrap();
    assert_eq!(decide().await.unwrap()[0].decision, "allow");
    authz.delete_entity(tenant, Actor::Operator, "App::User", "ann").await.unwrap();
    assert_eq!(decide().await.unwrap()[0].decision, "deny");
    assert_eq!(store.policy_reads.load(Ordering::SeqCst), builds, "the engine was rebuilt for an entity change");
});
