//! Authorization with Cedar through the API, on both backends: Cedar's photo-sharing
//! example decided end to end, precise 422s that change nothing, versions and
//! rollback, a change reaching another process, guard's own administrative API
//! decided by Cedar, the caller as principal, and denials in the audit log and the
//! operators' statistics.

use std::time::{Duration, Instant};

use guard_testkit::{TestApp, backend_test};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::limits::admin_session;
use crate::mfa::{PASSWORD, new_user, send};
use crate::support::expect_problem;

const TENANT: &str = "default";

// ---- helpers ----

pub(crate) async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> reqwest::Response {
    send(app, method, TENANT, path, Some(token), body).await
}

/// Asserts `status` and returns the JSON body (null when there is none).
pub(crate) async fn expect(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

/// Asserts a 403 naming guard's `action`.
async fn expect_forbidden(response: reqwest::Response, action: &str) {
    let problem = expect_problem(response, 403, "forbidden").await;
    assert_eq!(problem["action"], action, "{problem}");
}

/// Asserts a 422 with `code` and returns its first issue.
async fn expect_invalid(response: reqwest::Response, code: &str) -> Value {
    let problem = expect_problem(response, 422, code).await;
    let errors = problem["errors"].as_array().unwrap_or_else(|| panic!("no errors: {problem}"));
    assert!(!errors.is_empty(), "{problem}");
    errors[0].clone()
}

async fn put_policy(app: &TestApp, token: &str, id: &str, text: &str) -> reqwest::Response {
    call(app, token, "PUT", &format!("/v1/policies/{id}"), json!({ "text": text })).await
}

async fn create_policy(app: &TestApp, token: &str, id: &str, text: &str) -> reqwest::Response {
    call(app, token, "POST", "/v1/policies", json!({ "id": id, "text": text })).await
}

async fn policies(app: &TestApp, token: &str) -> Value {
    expect(call(app, token, "GET", "/v1/policies", json!(null)).await, 200).await
}

async fn policy_version(app: &TestApp, token: &str) -> i64 {
    policies(app, token).await["version"].as_i64().unwrap()
}

async fn authorize(app: &TestApp, token: &str, request: Value) -> Value {
    expect(call(app, token, "POST", "/v1/authorize", request).await, 200).await
}

/// Asks until the decision is `decision` (changes elsewhere arrive by polling).
async fn authorize_until(app: &TestApp, token: &str, request: &Value, decision: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = authorize(app, token, request.clone()).await;
        if answer["decision"] == decision {
            return answer;
        }
        assert!(Instant::now() < deadline, "still {answer} after 10 s; expected {decision} for {request}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a GET until it answers `status`.
async fn get_until(app: &TestApp, token: &str, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = call(app, token, "GET", path, json!(null)).await.status().as_u16();
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "GET {path} still answers {got} after 10 s; expected {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(app: &TestApp, email: &str) -> String {
    let body = json!({ "email": email, "password": PASSWORD });
    let answer = expect(send(app, "POST", TENANT, "/v1/auth/password/login", None, body).await, 200).await;
    answer["session_token"].as_str().unwrap().to_owned()
}

async fn user_id(app: &TestApp, email: &str) -> Uuid {
    app.state.users.find(TENANT, email).await.unwrap().id.0
}

/// A user of the default tenant holding `roles`, signed in: (id, session token).
async fn user(app: &TestApp, email: &str, roles: &[&str]) -> (Uuid, String) {
    new_user(app, TENANT, email, roles).await;
    (user_id(app, email).await, sign_in(app, email).await)
}

/// Whether any of a 422's issues says `text` (Cedar may report more than one).
fn mentions(problem: &Value, text: &str) -> bool {
    problem["errors"].as_array().unwrap().iter().any(|e| e["message"].as_str().unwrap().contains(text))
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array().unwrap().iter().map(|p| p[field].as_str().unwrap().to_owned()).collect()
}

// ---- Cedar's photo-sharing example ----

/// The PhotoApp schema of Cedar's documentation, cut down to what the policies use.
const PHOTO_SCHEMA: &str = r#"namespace PhotoApp {
  entity UserGroup;
  entity User in [UserGroup] { department: String };
  entity Account { owner: User };
  entity Album in [Account];
  entity Photo in [Album] { owner: User, private: Bool };
  action viewPhoto, editPhoto, deletePhoto appliesTo { principal: [User], resource: [Photo] };
}"#;

// Action scopes are named: guard merges its own actions (resource Guard::Tenant) into
// every schema, so an open scope reading `resource.owner` would not validate.
const PHOTO_POLICIES: &[(&str, &str)] = &[
    (
        "alice-vacation",
        r#"permit(principal == PhotoApp::User::"alice", action == PhotoApp::Action::"viewPhoto", resource in PhotoApp::Album::"vacation");"#,
    ),
    (
        "family-vacation",
        r#"permit(principal in PhotoApp::UserGroup::"family", action == PhotoApp::Action::"viewPhoto", resource in PhotoApp::Album::"vacation");"#,
    ),
    (
        "owners",
        r#"permit(principal, action in [PhotoApp::Action::"viewPhoto", PhotoApp::Action::"editPhoto", PhotoApp::Action::"deletePhoto"], resource)
when { resource.owner == principal };"#,
    ),
    (
        "private-photos",
        r#"forbid(principal, action in [PhotoApp::Action::"viewPhoto", PhotoApp::Action::"editPhoto", PhotoApp::Action::"deletePhoto"], resource)
when { resource.private }
unless { resource.owner == principal };"#,
    ),
];

fn entity(kind: &str, id: &str, attrs: Value, parents: &[(&str, &str)]) -> Value {
    let parents: Vec<Value> = parents.iter().map(|(t, i)| json!({ "type": t, "id": i })).collect();
    json!({ "uid": { "type": kind, "id": id }, "attrs": attrs, "parents": parents })
}

fn photo_user_ref(id: &str) -> Value {
    json!({ "__entity": { "type": "PhotoApp::User", "id": id } })
}

fn photo_user(id: &str, department: &str, groups: &[&str]) -> Value {
    let parents: Vec<(&str, &str)> = groups.iter().map(|g| ("PhotoApp::UserGroup", *g)).collect();
    entity("PhotoApp::User", id, json!({ "department": department }), &parents)
}

fn photo(id: &str, album: &str, owner: &str, private: bool) -> Value {
    let attrs = json!({ "owner": photo_user_ref(owner), "private": private });
    entity("PhotoApp::Photo", id, attrs, &[("PhotoApp::Album", album)])
}

/// Carol owns the vacation album (a public and a private photo); Bob, in the family
/// group, owns a photo elsewhere; Alice owns nothing.
fn photo_entities() -> Value {
    json!([
        entity("PhotoApp::UserGroup", "family", json!({}), &[]),
        photo_user("alice", "eng", &[]),
        photo_user("bob", "ops", &["family"]),
        photo_user("carol", "eng", &[]),
        entity("PhotoApp::Account", "carol-account", json!({ "owner": photo_user_ref("carol") }), &[]),
        entity("PhotoApp::Album", "vacation", json!({}), &[("PhotoApp::Account", "carol-account")]),
        entity("PhotoApp::Album", "misc", json!({}), &[]),
        photo("beach.jpg", "vacation", "carol", false),
        photo("diary.jpg", "vacation", "carol", true),
        photo("selfie.jpg", "misc", "bob", false),
    ])
}

fn photo_request(user: &str, action: &str, resource: &str) -> Value {
    json!({
        "principal": { "type": "PhotoApp::User", "id": user },
        "action": format!("PhotoApp::Action::\"{action}\""),
        "resource": { "type": "PhotoApp::Photo", "id": resource },
    })
}

/// Loads the schema and the policies in one version (version 1).
async fn load_photo_policies(app: &TestApp, token: &str) {
    let policies: Vec<Value> = PHOTO_POLICIES.iter().map(|(id, text)| json!({ "id": id, "text": text })).collect();
    let body = json!({ "policies": policies, "schema": PHOTO_SCHEMA, "expected_version": 0 });
    let set = expect(call(app, token, "PUT", "/v1/policies", body).await, 200).await;
    assert_eq!((set["version"].as_i64(), set["policy_count"].as_u64()), (Some(1), Some(4)), "{set}");
    assert_eq!(set["has_schema"], true, "{set}");
}

backend_test!(cedar_photo_sharing_example_is_decided_as_documented, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    // Schema first, then each policy: one version per change.
    let schema = call(&app, &token, "PUT", "/v1/policies/schema", json!({ "schema": PHOTO_SCHEMA })).await;
    let schema = expect(schema, 200).await;
    assert_eq!((schema["version"].as_i64(), schema["has_schema"].as_bool()), (Some(1), Some(true)), "{schema}");
    for (n, (id, text)) in PHOTO_POLICIES.iter().enumerate() {
        let created = expect(create_policy(&app, &token, id, text).await, 201).await;
        assert_eq!(created["version"].as_i64(), Some(n as i64 + 2), "{created}");
        assert_eq!(created["change"], format!("create policy {id}"), "{created}");
    }
    let current = policies(&app, &token).await;
    assert_eq!((current["version"].as_i64(), current["has_schema"].as_bool()), (Some(5), Some(true)), "{current}");
    assert_eq!(ids(&current["policies"], "id"), ["alice-vacation", "family-vacation", "owners", "private-photos"]);
    let one = expect(call(&app, &token, "GET", "/v1/policies/owners", json!(null)).await, 200).await;
    assert_eq!(one["text"], PHOTO_POLICIES[2].1, "{one}");

    // Entities, checked against the schema: exactly the ten sent are stored.
    let upserted = expect(call(&app, &token, "PUT", "/v1/entities", photo_entities()).await, 200).await;
    assert_eq!(upserted, json!({ "upserted": 10 }));
    let photos = expect(call(&app, &token, "GET", "/v1/entities?type=PhotoApp::Photo", json!(null)).await, 200).await;
    let mut photo_ids: Vec<String> =
        photos["entities"].as_array().unwrap().iter().map(|e| e["uid"]["id"].as_str().unwrap().to_owned()).collect();
    photo_ids.sort();
    assert_eq!(photo_ids, ["beach.jpg", "diary.jpg", "selfie.jpg"], "{photos}");
    let all = expect(call(&app, &token, "GET", "/v1/entities", json!(null)).await, 200).await;
    assert_eq!(all["entities"].as_array().unwrap().len(), 10, "no action entities or others stored: {all}");
    let bob = expect(call(&app, &token, "GET", "/v1/entities/PhotoApp::User/bob", json!(null)).await, 200).await;
    assert_eq!(bob["parents"][0]["id"], "family", "{bob}");

    // (user, action, photo, decision, the policies that decided)
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        ("alice", "viewPhoto", "beach.jpg", "allow", &["alice-vacation"]),
        ("alice", "viewPhoto", "diary.jpg", "deny", &["private-photos"]),
        ("alice", "editPhoto", "beach.jpg", "deny", &[]),
        ("alice", "viewPhoto", "selfie.jpg", "deny", &[]),
        ("bob", "viewPhoto", "beach.jpg", "allow", &["family-vacation"]),
        ("bob", "viewPhoto", "diary.jpg", "deny", &["private-photos"]),
        ("bob", "editPhoto", "selfie.jpg", "allow", &["owners"]),
        ("carol", "deletePhoto", "diary.jpg", "allow", &["owners"]),
    ];
    for (who, action, resource, decision, reasons) in cases {
        let answer = authorize(&app, &token, photo_request(who, action, resource)).await;
        assert_eq!(answer["decision"], *decision, "{who} {action} {resource}: {answer}");
        assert_eq!(answer["reasons"], json!(reasons), "{who} {action} {resource}: {answer}");
        assert_eq!(answer["errors"], json!([]), "{answer}");
    }
    // Cedar's text form of entity references means the same.
    let text_form = json!({
        "principal": "PhotoApp::User::\"alice\"",
        "action": "PhotoApp::Action::\"viewPhoto\"",
        "resource": "PhotoApp::Photo::\"beach.jpg\"",
    });
    assert_eq!(authorize(&app, &token, text_form).await["reasons"], json!(["alice-vacation"]));

    // A batch answers the same, in order.
    let requests: Vec<Value> = cases.iter().map(|(w, a, r, _, _)| photo_request(w, a, r)).collect();
    let batch = call(&app, &token, "POST", "/v1/authorize/batch", json!({ "requests": requests })).await;
    let batch = expect(batch, 200).await;
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len(), "{batch}");
    for ((who, action, resource, decision, reasons), result) in cases.iter().zip(results) {
        let expected = (&json!(decision), &json!(reasons));
        assert_eq!((&result["decision"], &result["reasons"]), expected, "{who} {action} {resource}");
    }
    let too_many: Vec<Value> = (0..101).map(|_| photo_request("alice", "viewPhoto", "beach.jpg")).collect();
    let refused = call(&app, &token, "POST", "/v1/authorize/batch", json!({ "requests": too_many })).await;
    expect_problem(refused, 400, "bad_request").await;

    // Replacing Bob without his group takes the family's view away; a deleted photo
    // leaves the owners' policy nothing to read (an evaluation error, and a deny).
    let alone = json!({ "entities": [photo_user("bob", "ops", &[])] });
    assert_eq!(expect(call(&app, &token, "POST", "/v1/entities", alone).await, 200).await["upserted"], 1);
    let answer = authorize(&app, &token, photo_request("bob", "viewPhoto", "beach.jpg")).await;
    assert_eq!((&answer["decision"], &answer["reasons"]), (&json!("deny"), &json!([])), "{answer}");
    let deleted = call(&app, &token, "DELETE", "/v1/entities/PhotoApp::Photo/selfie.jpg", json!(null)).await;
    expect(deleted, 204).await;
    let gone = call(&app, &token, "GET", "/v1/entities/PhotoApp::Photo/selfie.jpg", json!(null)).await;
    expect_problem(gone, 404, "not_found").await;
    let answer = authorize(&app, &token, photo_request("bob", "editPhoto", "selfie.jpg")).await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(answer["errors"].as_array().unwrap().iter().any(|e| e["policy"] == "owners"), "{answer}");
    // Entities never change the policy version.
    assert_eq!(policy_version(&app, &token).await, 5);
});

// ---- precise refusals ----

backend_test!(invalid_policies_schemas_entities_and_requests_are_placed_and_change_nothing, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    load_photo_policies(&app, &token).await;

    // A syntax error, placed within the policy's own text: `}` where an operand belongs.
    let broken = "permit(principal, action, resource)\nwhen { principal.x == };";
    let issue = expect_invalid(put_policy(&app, &token, "broken", broken).await, "invalid_policy").await;
    assert_eq!((issue["source"].as_str(), issue["policy"].as_str()), (Some("policy"), Some("broken")), "{issue}");
    assert_eq!((issue["line"].as_u64(), issue["column"].as_u64()), (Some(2), Some(23)), "{issue}");
    assert_eq!(issue["snippet"], "}", "{issue}");
    assert!(issue["message"].as_str().is_some_and(|m| !m.is_empty()), "{issue}");

    // Validation against the schema: an attribute Photo does not have.
    let colour =
        "permit(principal, action == PhotoApp::Action::\"viewPhoto\", resource)\nwhen { resource.colour == \"red\" };";
    let issue = expect_invalid(put_policy(&app, &token, "colour", colour).await, "invalid_policy").await;
    assert_eq!(issue["policy"], "colour", "{issue}");
    assert!(issue["message"].as_str().unwrap().contains("colour"), "{issue}");
    assert_eq!(issue["line"].as_u64(), Some(2), "{issue}");

    // An entity type the schema does not declare, and an undeclared action.
    let robots = "permit(principal == PhotoApp::Robot::\"r2\", action == PhotoApp::Action::\"viewPhoto\", resource);";
    let issue = expect_invalid(create_policy(&app, &token, "robots", robots).await, "invalid_policy").await;
    assert_eq!(issue["policy"], "robots", "{issue}");
    let problem = expect_problem(create_policy(&app, &token, "robots", robots).await, 422, "invalid_policy").await;
    assert!(mentions(&problem, "PhotoApp::Robot"), "{problem}");
    let selling = "permit(principal, action == PhotoApp::Action::\"sellPhoto\", resource);";
    let problem = expect_problem(put_policy(&app, &token, "selling", selling).await, 422, "invalid_policy").await;
    assert_eq!(problem["errors"][0]["policy"], "selling", "{problem}");
    assert!(mentions(&problem, "sellPhoto"), "{problem}");

    // A whole set is refused for its one bad policy; validation alone says the same.
    let both = json!([{ "id": "fine", "text": PHOTO_POLICIES[0].1 }, { "id": "colour", "text": colour }]);
    let set = json!({ "policies": both });
    let issue = expect_invalid(call(&app, &token, "PUT", "/v1/policies", set).await, "invalid_policy").await;
    assert_eq!(issue["policy"], "colour", "{issue}");
    let trial = json!({ "policies": both, "schema": PHOTO_SCHEMA });
    let validated = call(&app, &token, "POST", "/v1/policies/validate", trial).await;
    assert_eq!(expect_invalid(validated, "invalid_policy").await["policy"], "colour");
    let good = json!({ "policies": [{ "id": "fine", "text": PHOTO_POLICIES[0].1 }], "schema": PHOTO_SCHEMA });
    let validated = expect(call(&app, &token, "POST", "/v1/policies/validate", good).await, 200).await;
    assert_eq!(validated["valid"], true, "{validated}");

    // Schemas: a parent type that does not exist; guard's own namespace.
    let dangling = json!({ "schema": "namespace PhotoApp { entity User in [Nowhere]; }" });
    let refused = call(&app, &token, "PUT", "/v1/policies/schema", dangling).await;
    let issue = expect_invalid(refused, "invalid_policy").await;
    assert_eq!(issue["source"], "schema", "{issue}");
    let guards = json!({ "schema": "namespace Guard { entity Thing; }" });
    let issue = expect_invalid(call(&app, &token, "PUT", "/v1/policies/schema", guards).await, "invalid_policy").await;
    assert_eq!(issue["source"], "schema", "{issue}");

    // Entities: an undeclared type, an attribute of the wrong type, guard's own types.
    let robot = json!([entity("PhotoApp::Robot", "r2", json!({}), &[])]);
    let issue = expect_invalid(call(&app, &token, "PUT", "/v1/entities", robot).await, "invalid_entity").await;
    assert_eq!(issue["source"], "entity", "{issue}");
    assert!(issue["message"].as_str().unwrap().contains("PhotoApp::Robot"), "{issue}");
    let numeric = json!([entity("PhotoApp::User", "alice", json!({ "department": 7 }), &[])]);
    expect_invalid(call(&app, &token, "PUT", "/v1/entities", numeric).await, "invalid_entity").await;
    let role = json!([entity("Guard::Role", "admin", json!({}), &[])]);
    let problem = expect_problem(call(&app, &token, "PUT", "/v1/entities", role).await, 422, "invalid_entity").await;
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "only the Guard entity is named: {problem}");
    assert_eq!(errors[0]["entity"], "Guard::Role::\"admin\"", "{problem}");
    let stored = expect(call(&app, &token, "GET", "/v1/entities", json!(null)).await, 200).await;
    assert_eq!(stored["entities"], json!([]), "nothing of a refused upsert is stored");

    // Requests: a principal type the schema does not allow, a malformed reference.
    let robot = json!({
        "principal": "PhotoApp::Robot::\"r2\"",
        "action": "PhotoApp::Action::\"viewPhoto\"",
        "resource": { "type": "PhotoApp::Photo", "id": "beach.jpg" },
    });
    let issue =
        expect_invalid(call(&app, &token, "POST", "/v1/authorize", robot).await, "invalid_authorization_request").await;
    assert_eq!(issue["source"], "request", "{issue}");
    let malformed = json!({
        "principal": "alice",
        "action": "PhotoApp::Action::\"viewPhoto\"",
        "resource": "PhotoApp::Photo::\"beach.jpg\"",
    });
    let refused = call(&app, &token, "POST", "/v1/authorize", malformed).await;
    let issue = expect_invalid(refused, "invalid_authorization_request").await;
    assert!(issue["message"].as_str().unwrap().starts_with("principal"), "{issue}");

    // None of it changed anything.
    let current = policies(&app, &token).await;
    assert_eq!(current["version"], 1, "{current}");
    assert_eq!(ids(&current["policies"], "id"), ["alice-vacation", "family-vacation", "owners", "private-photos"]);
    let versions = expect(call(&app, &token, "GET", "/v1/policies/versions", json!(null)).await, 200).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1, "{versions}");
});

// ---- versions ----

const ANN_READS: &str = r#"permit(principal == App::User::"ann", action == App::Action::"read", resource);"#;
const BEA_READS: &str = r#"permit(principal == App::User::"bea", action == App::Action::"read", resource);"#;
const NO_SECRETS: &str = r#"forbid(principal, action == App::Action::"read", resource == App::Doc::"secret");"#;

fn reads(who: &str) -> Value {
    json!({
        "principal": format!("App::User::\"{who}\""),
        "action": "App::Action::\"read\"",
        "resource": "App::Doc::\"plan\"",
    })
}

backend_test!(every_change_is_a_version_and_a_rollback_restores_an_old_one, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let admin = user_id(&app, "root@example.com").await;
    assert_eq!(policy_version(&app, &token).await, 0, "no version before the first change");

    assert_eq!(expect(create_policy(&app, &token, "docs", ANN_READS).await, 201).await["version"], 1);
    assert_eq!(expect(put_policy(&app, &token, "docs", BEA_READS).await, 200).await["version"], 2);
    assert_eq!(expect(create_policy(&app, &token, "extra", NO_SECRETS).await, 201).await["version"], 3);
    // POST does not replace; an unchanged PUT writes no version.
    expect_problem(create_policy(&app, &token, "docs", ANN_READS).await, 409, "conflict").await;
    assert_eq!(expect(put_policy(&app, &token, "docs", BEA_READS).await, 200).await["version"], 3);

    let listed = expect(call(&app, &token, "GET", "/v1/policies/versions", json!(null)).await, 200).await;
    let versions = listed["versions"].as_array().unwrap();
    let summary: Vec<(i64, &str, u64)> = versions
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["change"].as_str().unwrap(), v["policy_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, [(3, "create policy extra", 2), (2, "put policy docs", 1), (1, "create policy docs", 1)]);
    for v in versions {
        assert_eq!((&v["actor"], &v["has_schema"]), (&json!(format!("user:{admin}")), &json!(false)), "{v}");
        assert!(v["created_at"].as_str().is_some_and(|t| t.len() >= 20), "{v}");
    }
    let older = call(&app, &token, "GET", "/v1/policies/versions?before=3&limit=1", json!(null)).await;
    assert_eq!(expect(older, 200).await["versions"][0]["version"], 2);
    let first = expect(call(&app, &token, "GET", "/v1/policies/versions/1", json!(null)).await, 200).await;
    assert_eq!(first["policies"], json!([{ "id": "docs", "text": ANN_READS }]), "{first}");
    assert_eq!(first["schema"], Value::Null, "{first}");

    assert_eq!(authorize(&app, &token, reads("ann")).await["decision"], "deny");
    assert_eq!(authorize(&app, &token, reads("bea")).await["reasons"], json!(["docs"]));

    // Rollback writes a new version holding version 1's content; decisions follow.
    let rolled = expect(call(&app, &token, "POST", "/v1/policies/rollback", json!({ "version": 1 })).await, 200).await;
    assert_eq!((rolled["version"].as_i64(), rolled["change"].as_str()), (Some(4), Some("rollback to version 1")));
    let current = policies(&app, &token).await;
    assert_eq!((&current["version"], &current["policies"]), (&json!(4), &first["policies"]), "{current}");
    let fourth = expect(call(&app, &token, "GET", "/v1/policies/versions/4", json!(null)).await, 200).await;
    assert_eq!(fourth["policies"], first["policies"]);
    let ann = authorize(&app, &token, reads("ann")).await;
    assert_eq!((&ann["decision"], &ann["reasons"]), (&json!("allow"), &json!(["docs"])), "{ann}");
    assert_eq!(authorize(&app, &token, reads("bea")).await["decision"], "deny");
    let missing = call(&app, &token, "POST", "/v1/policies/rollback", json!({ "version": 99 })).await;
    expect_problem(missing, 404, "not_found").await;

    // Optimistic concurrency: a stale expected_version is refused and changes nothing.
    let stale = json!({ "policies": [{ "id": "docs", "text": BEA_READS }], "expected_version": 3 });
    let conflict = expect_problem(call(&app, &token, "PUT", "/v1/policies", stale).await, 409, "conflict").await;
    assert!(conflict["detail"].as_str().unwrap().contains('4'), "names the current version: {conflict}");
    assert_eq!(policy_version(&app, &token).await, 4);
    let fresh = json!({ "policies": [{ "id": "docs", "text": BEA_READS }], "expected_version": 4 });
    let replaced = expect(call(&app, &token, "PUT", "/v1/policies", fresh).await, 200).await;
    assert_eq!((replaced["version"].as_i64(), replaced["change"].as_str()), (Some(5), Some("replace all")));
    assert_eq!(authorize(&app, &token, reads("bea")).await["decision"], "allow");

    let deleted = expect(call(&app, &token, "DELETE", "/v1/policies/docs", json!(null)).await, 200).await;
    assert_eq!(deleted["version"], 6, "{deleted}");
    expect_problem(call(&app, &token, "GET", "/v1/policies/docs", json!(null)).await, 404, "not_found").await;
    assert_eq!(authorize(&app, &token, reads("bea")).await["decision"], "deny");
});

// ---- another process ----

backend_test!(changes_on_one_process_are_applied_by_another_sharing_the_database, |backend| {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let b =
        TestApp::builder(backend).share_database_of(&a).env("AUTHZ_REFRESH_INTERVAL", "200ms").spawn().await.unwrap();
    let token = admin_session(&a).await;
    // B builds its engine and caches the decision before the change.
    for _ in 0..2 {
        assert_eq!(authorize(&b, &token, reads("ann")).await["decision"], "deny");
    }
    expect(put_policy(&a, &token, "docs", ANN_READS).await, 200).await;
    let allowed = authorize_until(&b, &token, &reads("ann"), "allow").await;
    assert_eq!(allowed["reasons"], json!(["docs"]), "{allowed}");

    // And the other way round, with A polling at the default interval.
    assert_eq!(authorize(&a, &token, reads("ann")).await["decision"], "allow");
    let forbid = r#"forbid(principal == App::User::"ann", action, resource);"#;
    expect(put_policy(&b, &token, "ban-ann", forbid).await, 200).await;
    let denied = authorize_until(&a, &token, &reads("ann"), "deny").await;
    assert_eq!(denied["reasons"], json!(["ban-ann"]), "{denied}");
    expect(call(&a, &token, "POST", "/v1/policies/rollback", json!({ "version": 1 })).await, 200).await;
    authorize_until(&b, &token, &reads("ann"), "allow").await;

    // What Cedar knows of users travels too: a role given on A opens reads on B.
    let (_, pat) = user(&a, "pat@example.com", &[]).await;
    expect_forbidden(call(&b, &pat, "GET", "/v1/users", json!(null)).await, "users.read").await;
    let promote = call(&a, &token, "PATCH", "/v1/users/pat@example.com", json!({ "roles": ["auditor"] })).await;
    expect(promote, 200).await;
    get_until(&b, &pat, "/v1/users", 200).await;
});

// ---- guard's own API ----

backend_test!(guards_admin_api_is_decided_by_builtin_and_tenant_policies, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;

    // The auditor reads and changes nothing.
    let (_, auditor) = user(&app, "audrey@example.com", &["auditor"]).await;
    for path in ["/v1/users", "/v1/audit", "/v1/policies", "/v1/roles"] {
        expect(call(&app, &auditor, "GET", path, json!(null)).await, 200).await;
    }
    let new = json!({ "email": "new@example.com", "password": PASSWORD });
    expect_forbidden(call(&app, &auditor, "POST", "/v1/users", new.clone()).await, "users.write").await;
    expect_forbidden(put_policy(&app, &auditor, "mine", ANN_READS).await, "policies.write").await;
    assert!(app.state.users.find(TENANT, "new@example.com").await.is_err(), "the refused user was not created");
    let roles = expect(call(&app, &token, "GET", "/v1/roles", json!(null)).await, 200).await;
    let builtin: Vec<(String, bool)> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["builtin"].as_bool().unwrap()))
        .collect();
    assert_eq!(builtin, [("admin".to_owned(), true), ("auditor".to_owned(), true), ("authorizer".to_owned(), true)]);

    // A group-based permit gives a plain user reading users, and nothing more.
    let (pat_id, pat) = user(&app, "pat@example.com", &[]).await;
    expect_forbidden(call(&app, &pat, "GET", "/v1/users", json!(null)).await, "users.read").await;
    let group = json!({ "name": "helpdesk", "description": "first line" });
    let created = expect(call(&app, &token, "POST", "/v1/groups", group).await, 201).await;
    assert_eq!((&created["name"], &created["members"]), (&json!("helpdesk"), &json!(0)), "{created}");
    let path = "/v1/groups/helpdesk/members/pat@example.com";
    assert_eq!(expect(call(&app, &token, "PUT", path, json!(null)).await, 200).await["changed"], true);
    assert_eq!(expect(call(&app, &token, "PUT", path, json!(null)).await, 200).await["changed"], false);
    let helpdesk = expect(call(&app, &token, "GET", "/v1/groups/helpdesk", json!(null)).await, 200).await;
    assert_eq!(helpdesk["member_ids"], json!([pat_id]), "{helpdesk}");
    expect_forbidden(call(&app, &pat, "GET", "/v1/users", json!(null)).await, "users.read").await;
    let helpdesk_reads =
        r#"permit(principal in Guard::Group::"helpdesk", action == Guard::Action::"users.read", resource);"#;
    expect(put_policy(&app, &token, "helpdesk-reads", helpdesk_reads).await, 200).await;
    expect(call(&app, &pat, "GET", "/v1/users", json!(null)).await, 200).await;
    expect(call(&app, &pat, "GET", &format!("/v1/users/{pat_id}"), json!(null)).await, 200).await;
    expect_forbidden(call(&app, &pat, "POST", "/v1/users", new.clone()).await, "users.write").await;
    expect_forbidden(call(&app, &pat, "GET", "/v1/audit", json!(null)).await, "audit.read").await;

    // A forbid takes users.read away even from an administrator, while in the group.
    let (_, boss) = user(&app, "boss@example.com", &["admin"]).await;
    expect(call(&app, &token, "POST", "/v1/groups", json!({ "name": "frozen" })).await, 201).await;
    expect(call(&app, &token, "PUT", "/v1/groups/frozen/members/boss@example.com", json!(null)).await, 200).await;
    expect(call(&app, &boss, "GET", "/v1/users", json!(null)).await, 200).await;
    let freeze = r#"forbid(principal in Guard::Group::"frozen", action == Guard::Action::"users.read", resource);"#;
    expect(put_policy(&app, &token, "freeze", freeze).await, 200).await;
    expect_forbidden(call(&app, &boss, "GET", "/v1/users", json!(null)).await, "users.read").await;
    expect(call(&app, &boss, "GET", "/v1/groups", json!(null)).await, 200).await;
    expect(call(&app, &token, "GET", "/v1/users", json!(null)).await, 200).await;
    expect(call(&app, &token, "DELETE", "/v1/groups/frozen/members/boss@example.com", json!(null)).await, 200).await;
    expect(call(&app, &boss, "GET", "/v1/users", json!(null)).await, 200).await;

    // Open or mixed action scopes are the applications' business and grant nothing here.
    expect(put_policy(&app, &token, "open", "permit(principal, action, resource);").await, 200).await;
    let mixed = r#"permit(principal, action in [Guard::Action::"audit.read", App::Action::"read"], resource);"#;
    expect(put_policy(&app, &token, "mixed", mixed).await, 200).await;
    expect_forbidden(call(&app, &pat, "GET", "/v1/audit", json!(null)).await, "audit.read").await;
    expect_forbidden(call(&app, &pat, "POST", "/v1/users", new).await, "users.write").await;
    expect_forbidden(call(&app, &pat, "GET", "/v1/policies", json!(null)).await, "policies.read").await;
    expect_forbidden(call(&app, &pat, "GET", "/admin/policy-stats", json!(null)).await, "platform.read").await;
    let anyone =
        json!({ "principal": "App::User::\"z\"", "action": "App::Action::\"write\"", "resource": "App::Doc::\"d\"" });
    let answer = authorize(&app, &token, anyone).await;
    assert_eq!(answer["reasons"], json!(["open"]), "the policy is live for applications: {answer}");
});

// ---- the caller as principal ----

backend_test!(a_user_asks_about_themself_through_roles_and_not_about_others, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let role = expect(call(&app, &token, "POST", "/v1/roles", json!({ "name": "editor" })).await, 201).await;
    assert_eq!((&role["name"], &role["builtin"]), (&json!("editor"), &json!(false)), "{role}");
    expect_problem(call(&app, &token, "POST", "/v1/roles", json!({ "name": "admin" })).await, 409, "conflict").await;
    let editors = r#"permit(principal in Guard::Role::"editor", action == App::Action::"edit", resource);"#;
    expect(put_policy(&app, &token, "editors", editors).await, 200).await;

    let (eve_id, eve) = user(&app, "eve@example.com", &[]).await;
    let own = json!({ "action": "App::Action::\"edit\"", "resource": { "type": "App::Doc", "id": "d1" } });
    let answer = authorize(&app, &eve, own.clone()).await;
    assert_eq!((&answer["decision"], &answer["reasons"]), (&json!("deny"), &json!([])), "{answer}");

    let given = call(&app, &token, "PATCH", "/v1/users/eve@example.com", json!({ "roles": ["editor"] })).await;
    assert_eq!(expect(given, 200).await["roles"], json!(["editor"]));
    let answer = authorize_until(&app, &eve, &own, "allow").await;
    assert_eq!(answer["reasons"], json!(["editors"]), "{answer}");
    // Naming oneself is still asking about oneself.
    let named = json!({
        "principal": { "type": "Guard::User", "id": eve_id.to_string() },
        "action": "App::Action::\"edit\"",
        "resource": "App::Doc::\"d1\"",
    });
    assert_eq!(authorize(&app, &eve, named.clone()).await["decision"], "allow");

    // Anyone else needs authorize.any: refused alone and inside a batch.
    let admin_id = user_id(&app, "root@example.com").await;
    let about_admin = json!({
        "principal": format!("Guard::User::\"{admin_id}\""),
        "action": "App::Action::\"edit\"",
        "resource": "App::Doc::\"d1\"",
    });
    expect_forbidden(call(&app, &eve, "POST", "/v1/authorize", about_admin.clone()).await, "authorize.any").await;
    let batch = json!({ "requests": [own.clone(), about_admin] });
    expect_forbidden(call(&app, &eve, "POST", "/v1/authorize/batch", batch).await, "authorize.any").await;
    let (_, auditor) = user(&app, "audrey@example.com", &["auditor"]).await;
    expect_forbidden(call(&app, &auditor, "POST", "/v1/authorize", named.clone()).await, "authorize.any").await;
    // An application with the authorizer role may ask about Eve, and sees her roles.
    let (_, application) = user(&app, "app@example.com", &["authorizer"]).await;
    let answer = authorize(&app, &application, named.clone()).await;
    assert_eq!((&answer["decision"], &answer["reasons"]), (&json!("allow"), &json!(["editors"])), "{answer}");

    // A role someone holds stays; taken away, the decisions flip.
    expect_problem(call(&app, &token, "DELETE", "/v1/roles/editor", json!(null)).await, 409, "conflict").await;
    let taken = call(&app, &token, "PATCH", "/v1/users/eve@example.com", json!({ "roles": [] })).await;
    assert_eq!(expect(taken, 200).await["roles"], json!([]));
    let answer = authorize_until(&app, &eve, &own, "deny").await;
    assert_eq!(answer["reasons"], json!([]), "{answer}");
    authorize_until(&app, &application, &named, "deny").await;
    expect(call(&app, &token, "DELETE", "/v1/roles/editor", json!(null)).await, 204).await;
    let roles = expect(call(&app, &token, "GET", "/v1/roles", json!(null)).await, 200).await;
    assert!(!ids(&roles["roles"], "name").contains(&"editor".to_owned()), "{roles}");
});

// ---- audit and statistics ----

/// The tenant's authz.permission.denied events, once one with `target` arrived.
async fn denied_event(app: &TestApp, token: &str, target: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = call(app, token, "GET", "/v1/audit?type=authz.*&limit=1000", json!(null)).await;
        let page = expect(page, 200).await;
        let found = page["events"].as_array().unwrap().iter().find(|e| e["target"] == target).cloned();
        if let Some(event) = found {
            return event;
        }
        assert!(Instant::now() < deadline, "no authz event with target {target}: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

backend_test!(denied_decisions_are_audited_and_decisions_are_counted, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let admin_id = user_id(&app, "root@example.com").await;
    let tenant = app.state.tenants.find(TENANT).await.unwrap().id.0;
    expect(put_policy(&app, &token, "docs", ANN_READS).await, 200).await;

    // Two identical denials (the second from the cache) and one allow.
    let mallory = json!({
        "principal": { "type": "App::User", "id": "mallory" },
        "action": { "type": "App::Action", "id": "delete" },
        "resource": { "type": "App::Doc", "id": "d1" },
    });
    for _ in 0..2 {
        assert_eq!(authorize(&app, &token, mallory.clone()).await["decision"], "deny");
    }
    assert_eq!(authorize(&app, &token, reads("ann")).await["decision"], "allow");

    // The application's denial: the target names the request's principal, action and resource.
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let page = call(&app, &token, "GET", "/v1/audit?type=authz.permission.denied&limit=1000", json!(null)).await;
        let page = expect(page, 200).await;
        let found = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["target"].as_str().is_some_and(|t| t.contains("mallory") && t.contains("delete")))
            .cloned();
        if let Some(event) = found {
            break event;
        }
        assert!(Instant::now() < deadline, "no denial for mallory: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((&event["type"], &event["result"]), (&json!("authz.permission.denied"), &json!("denied")), "{event}");
    assert_eq!(event["actor"], format!("user:{admin_id}"), "{event}");
    assert_eq!(event["details"]["reasons"], json!([]), "{event}");
    assert_eq!(event["tenant"], json!(tenant), "{event}");

    // A refused administrative action is audited with guard's own names.
    let (pat_id, pat) = user(&app, "pat@example.com", &[]).await;
    expect_forbidden(call(&app, &pat, "GET", "/v1/users", json!(null)).await, "users.read").await;
    let event = denied_event(&app, &token, &format!("Guard::User::\"{pat_id}\" users.read")).await;
    assert_eq!(event["type"], "authz.permission.denied", "{event}");
    assert_eq!(event["actor"], format!("user:{pat_id}"), "{event}");
    assert_eq!(event["details"]["action"], "users.read", "{event}");

    // This process's figures: three evaluations, one from the cache.
    let stats = expect(call(&app, &token, "GET", "/admin/policy-stats", json!(null)).await, 200).await;
    let mine = stats["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == json!(tenant)).cloned();
    let mine = mine.unwrap_or_else(|| panic!("no default tenant: {stats}"));
    assert_eq!((mine["policy_version"].as_i64(), mine["policy_count"].as_u64()), (Some(1), Some(1)), "{mine}");
    let decisions = &mine["decisions"];
    let counts: Vec<Option<u64>> = ["evaluations", "allowed", "denied", "cache_hits", "cache_misses"]
        .iter()
        .map(|k| decisions[*k].as_u64())
        .collect();
    assert_eq!(counts, [Some(3), Some(1), Some(2), Some(1), Some(2)], "{mine}");
    let p50 = decisions["latency_p50_us"].as_f64().unwrap();
    let p95 = decisions["latency_p95_us"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p95, "{decisions}");
    let rate = stats["cache_hit_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 3.0).abs() < 1e-9, "{stats}");

    let heads = expect(call(&app, &token, "GET", "/admin/policies", json!(null)).await, 200).await;
    let head = heads["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == json!(tenant)).cloned();
    let head = head.unwrap_or_else(|| panic!("no default tenant: {heads}"));
    assert_eq!((head["version"].as_i64(), head["policy_count"].as_u64()), (Some(1), Some(1)), "{head}");
    assert_eq!(head["has_schema"], false, "{head}");
});

backend_test!(delegated_user_management_cannot_hand_out_roles_or_memberships, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    // A helpdesk may manage users (reset passwords, disable) but not give roles.
    expect(call(&app, &token, "POST", "/v1/groups", json!({ "name": "helpdesk" })).await, 201).await;
    let (kim_id, kim) = user(&app, "kim@example.com", &[]).await;
    let member = "/v1/groups/helpdesk/members/kim@example.com";
    expect(call(&app, &token, "PUT", member, json!(null)).await, 200).await;
    let grant = r#"permit(principal in Guard::Group::"helpdesk", action in [Guard::Action::"users.read", Guard::Action::"users.write"], resource);"#;
    expect(put_policy(&app, &token, "helpdesk", grant).await, 200).await;
    let promote = json!({ "roles": ["admin"] });
    let path = format!("/v1/users/{kim_id}");
    expect_forbidden(call(&app, &kim, "PATCH", &path, promote).await, "users.roles").await;
    let born_admin = json!({ "email": "mole@example.com", "password": PASSWORD, "roles": ["admin"] });
    expect_forbidden(call(&app, &kim, "POST", "/v1/users", born_admin).await, "users.roles").await;
    assert!(app.state.users.find(TENANT, "mole@example.com").await.is_err());
    let renamed = expect(call(&app, &kim, "PATCH", &path, json!({ "display_name": "Kim" })).await, 200).await;
    assert_eq!(renamed["roles"], json!([]), "{renamed}");
    let plain = json!({ "email": "plain@example.com", "password": PASSWORD });
    expect(call(&app, &kim, "POST", "/v1/users", plain).await, 201).await;
    // Nor may it put itself in another group.
    expect(call(&app, &token, "POST", "/v1/groups", json!({ "name": "ops" })).await, 201).await;
    let join = "/v1/groups/ops/members/kim@example.com";
    expect_forbidden(call(&app, &kim, "PUT", join, json!(null)).await, "groups.members").await;
});

backend_test!(entity_loops_and_other_spellings_of_a_user_are_refused, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let schema = json!({ "schema": "namespace Docs { entity Folder in [Folder]; entity Doc in [Folder]; action read appliesTo { principal: [Guard::User], resource: [Doc] }; }" });
    expect(call(&app, &token, "PUT", "/v1/policies/schema", schema).await, 200).await;
    let folder = |id: &str, parent: &str| json!({ "uid": { "type": "Docs::Folder", "id": id }, "attrs": {}, "parents": [{ "type": "Docs::Folder", "id": parent }] });
    expect(call(&app, &token, "PUT", "/v1/entities", json!([folder("a", "b")])).await, 200).await;
    // b under a closes a loop with what is stored: refused, and the tenant still works.
    let issue =
        expect_invalid(call(&app, &token, "PUT", "/v1/entities", json!([folder("b", "a")])).await, "invalid_entity")
            .await;
    assert!(
        issue["message"].as_str().unwrap().to_lowercase().contains("cycle")
            || issue["message"].as_str().unwrap().contains("Folder"),
        "{issue}"
    );
    expect(call(&app, &token, "GET", "/v1/users", json!(null)).await, 200).await;
    // A user's id in capitals would be another entity to Cedar, without the user's groups.
    let reader = r#"permit(principal in Guard::Group::"readers", action == Docs::Action::"read", resource);"#;
    expect(put_policy(&app, &token, "readers", reader).await, 200).await;
    let (id, _) = user(&app, "rae@example.com", &[]).await;
    let request = |who: String| json!({ "principal": { "type": "Guard::User", "id": who }, "action": { "type": "Docs::Action", "id": "read" }, "resource": { "type": "Docs::Doc", "id": "d" } });
    let upper = id.to_string().to_uppercase();
    expect_invalid(call(&app, &token, "POST", "/v1/authorize", request(upper)).await, "invalid_authorization_request")
        .await;
    assert_eq!(authorize(&app, &token, request(id.to_string())).await["decision"], "deny");
    expect(call(&app, &token, "POST", "/v1/groups", json!({ "name": "readers" })).await, 201).await;
    expect(call(&app, &token, "PUT", "/v1/groups/readers/members/rae@example.com", json!(null)).await, 200).await;
    assert_eq!(authorize(&app, &token, request(id.to_string())).await["decision"], "allow");
    // Creating an id that exists is a conflict, decided inside the change.
    expect_problem(create_policy(&app, &token, "readers", reader).await, 409, "conflict").await;
});

backend_test!(a_username_change_reaches_decisions_on_every_process, |backend| {
    let Some(first) = TestApp::spawn(backend).await else { return };
    let Some(second) =
        TestApp::builder(backend).share_database_of(&first).env("AUTHZ_REFRESH_INTERVAL", "200ms").spawn().await
    else {
        return;
    };
    let token = admin_session(&first).await;
    let named = r#"permit(principal, action == App::Action::"read", resource) when { principal has username && principal.username == "zed" };"#;
    expect(put_policy(&first, &token, "named", named).await, 200).await;
    let (id, _) = user(&first, "zoe@example.com", &[]).await;
    let request = json!({ "principal": { "type": "Guard::User", "id": id.to_string() }, "action": { "type": "App::Action", "id": "read" }, "resource": { "type": "App::Doc", "id": "d" } });
    // The session works on both: they share the database.
    let second_token = token.clone();
    assert_eq!(authorize_until(&second, &second_token, &request, "deny").await["decision"], "deny");
    expect(call(&first, &token, "PATCH", &format!("/v1/users/{id}"), json!({ "username": "zed" })).await, 200).await;
    assert_eq!(
        authorize(&first, &token, request.clone()).await["decision"],
        "allow",
        "at once on the process that changed it"
    );
    assert_eq!(authorize_until(&second, &second_token, &request, "allow").await["decision"], "allow");
});

const APP_SCHEMA: &str = "namespace App {\n  entity User;\n  entity Doc;\n  action read appliesTo { principal: [User], resource: [Doc] };\n}\n";

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &std::process::Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

backend_test!(operators_keep_policies_in_git_and_validate_diff_and_roll_back_from_the_cli, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    let cli = crate::limits::guard_on(&app);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("policies");
    std::fs::create_dir(&folder).unwrap();
    let folder_arg = folder.to_str().unwrap();
    std::fs::write(folder.join("schema.cedarschema"), APP_SCHEMA).unwrap();
    std::fs::write(folder.join("ann.cedar"), format!("{ANN_READS}\n")).unwrap();
    std::fs::write(folder.join("secrets.cedar"), format!("{NO_SECRETS}\n")).unwrap();

    // A dry run shows the difference and changes nothing.
    let shown = stdout(&cli.run(&["policy", "import", "--dir", folder_arg, "--dry-run"]));
    assert!(shown.contains("+++ b/ann.cedar") && shown.contains(&format!("+{ANN_READS}")), "{shown}");
    assert!(shown.contains("nothing changed"), "{shown}");
    assert_eq!(policy_version(&app, &token).await, 0);
    let imported = stdout(&cli.run(&["policy", "import", "--dir", folder_arg]));
    assert!(imported.contains("version 1"), "{imported}");
    let listed = policies(&app, &token).await;
    assert_eq!(ids(&listed["policies"], "id"), ["ann", "secrets"]);
    assert_eq!(listed["has_schema"], true);
    assert_eq!(authorize_until(&app, &token, &reads("ann"), "allow").await["reasons"], json!(["ann"]));

    // A broken file is refused with its place, by validate and by import alike.
    std::fs::write(folder.join("ann.cedar"), "permit(principal, action, resource)\nwhen { principal. };\n").unwrap();
    let why = refused(&cli.run(&["policy", "validate", "--dir", folder_arg]));
    assert!(why.contains("ann.cedar") && why.contains("line 2"), "{why}");
    refused(&cli.run(&["policy", "import", "--dir", folder_arg]));
    // So is one that does not fit the schema.
    std::fs::write(folder.join("ann.cedar"), "permit(principal == App::Robot::\"r\", action, resource);\n").unwrap();
    let why = refused(&cli.run(&["policy", "validate", "--dir", folder_arg]));
    assert!(why.contains("policy ann") && why.contains("App::Robot"), "{why}");
    assert_eq!(policy_version(&app, &token).await, 1, "nothing changed");

    // A reviewed change: diff against what runs, import, then look back.
    std::fs::write(folder.join("ann.cedar"), format!("{BEA_READS}\n")).unwrap();
    let diff = stdout(&cli.run(&["policy", "diff", "--dir", folder_arg]));
    assert!(diff.contains(&format!("-{ANN_READS}")) && diff.contains(&format!("+{BEA_READS}")), "{diff}");
    stdout(&cli.run(&["policy", "import", "--dir", folder_arg]));
    assert_eq!(authorize_until(&app, &token, &reads("ann"), "deny").await["reasons"], json!([]));
    let versions = stdout(&cli.run(&["policy", "versions"]));
    let lines: Vec<&str> = versions.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{versions}");
    assert!(lines[0].trim_start().starts_with('2') && lines[1].trim_start().starts_with('1'), "{versions}");
    let between = stdout(&cli.run(&["policy", "diff", "1", "2"]));
    assert!(between.contains(&format!("-{ANN_READS}")) && between.contains(&format!("+{BEA_READS}")), "{between}");

    // Roll back: version 1's policies again, as version 3, applied by the server.
    let rolled = stdout(&cli.run(&["policy", "rollback", "1"]));
    assert!(rolled.contains("version 3"), "{rolled}");
    assert_eq!(authorize_until(&app, &token, &reads("ann"), "allow").await["reasons"], json!(["ann"]));
    assert_eq!(stdout(&cli.run(&["policy", "diff", "1", "3"])).trim(), "no differences");

    // Export gives back the files that were imported.
    let out = dir.path().join("exported");
    stdout(&cli.run(&["policy", "export", "--dir", out.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(out.join("ann.cedar")).unwrap(), format!("{ANN_READS}\n"));
    assert_eq!(std::fs::read_to_string(out.join("secrets.cedar")).unwrap(), format!("{NO_SECRETS}\n"));
    assert_eq!(std::fs::read_to_string(out.join("schema.cedarschema")).unwrap(), APP_SCHEMA);
    assert_eq!(stdout(&cli.run(&["policy", "get", "ann"])).trim(), ANN_READS);

    // One policy from standard input; a bad one is placed and changes nothing.
    let bad = "permit(principal, action == App::Action::\"write\", resource);";
    let why = refused(&cli.run_with_input(&["policy", "put", "w", "--file", "-"], bad));
    assert!(why.contains("policy w") && why.contains("line 1, column"), "{why}");
    let good = stdout(&cli.run_with_input(&["policy", "put", "bea", "--file", "-"], BEA_READS));
    assert!(good.contains("version 4"), "{good}");
    let all = stdout(&cli.run(&["policy", "validate", "--all"]));
    assert!(all.contains("default: version 4 valid (3 policies)") && all.contains("0 invalid"), "{all}");
});
