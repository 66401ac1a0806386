//! Hostile and malformed input, on both backends: control characters in every text
//! input, JSON of the wrong shape, request heads the HTTP layer refuses, and list
//! limits out of range. Each is a 4xx problem document with a stable code (never a
//! 500), and a refused request changes nothing.

use std::net::SocketAddr;
use std::time::Duration;

use guard_testkit::{TestApp, backend_test};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::limits::admin_session;
use crate::mfa::send;
use crate::support::{expect_problem, test_routes};

const TENANT: &str = "default";

/// Control characters from both C0 and C1 and DEL, and the escape.
const CONTROLS: [char; 5] = ['\u{0}', '\u{1}', '\u{1b}', '\u{7f}', '\u{85}'];

/// Every byte but unreserved ones percent-encoded, for path segments and queries.
fn pct(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> reqwest::Response {
    send(app, method, TENANT, path, Some(token), body).await
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts a 400 `control_character` problem, and that nothing in it leaks a type name.
async fn expect_control(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    assert!(status != 500, "{what}: 500 {}", response.text().await.unwrap());
    let body = expect_problem(response, 400, "control_character").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("control character")), "{what}: {body}");
}

/// What a refused request must leave as it was.
async fn everything(app: &TestApp, token: &str) -> Value {
    let mut out = json!({});
    for path in ["/v1/groups", "/v1/roles", "/v1/entities", "/v1/policies", "/v1/users", "/v1/tenants"] {
        out[path] = ok_json(call(app, token, "GET", path, json!(null)).await).await;
    }
    out
}

backend_test!(control_characters_in_any_text_input_are_a_400_problem_that_changes_nothing, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    // Something to name in paths, so a refusal is not just "not found".
    ok_json(call(&app, &token, "POST", "/v1/groups", json!({ "name": "ops", "description": "on call" })).await).await;
    let entity = json!([{ "uid": { "type": "App::User", "id": "ann" }, "attrs": { "team": "ops" }, "parents": [] }]);
    ok_json(call(&app, &token, "POST", "/v1/entities", entity).await).await;
    let before = everything(&app, &token).await;

    for c in CONTROLS {
        let bad = format!("a{c}b");
        let named = |name: &str| json!({ "name": name });
        let bodies = [
            ("POST", "/v1/groups", named(&bad)),
            ("POST", "/v1/groups", json!({ "name": "g2", "description": bad })),
            ("POST", "/v1/roles", named(&bad)),
            ("POST", "/v1/roles", json!({ "name": "r2", "description": bad })),
            (
                "POST",
                "/v1/entities",
                json!([{ "uid": { "type": "App::User", "id": bad }, "attrs": {}, "parents": [] }]),
            ),
            (
                "PUT",
                "/v1/entities",
                json!([{ "uid": { "type": "App::User", "id": "bob" }, "attrs": { "team": bad }, "parents": [] }]),
            ),
            (
                "POST",
                "/v1/entities",
                json!({ "entities": [{ "uid": { "type": "App::User", "id": "cy" }, "attrs": { bad.clone(): 1 }, "parents": [] }] }),
            ),
            (
                "PUT",
                "/v1/policies/p1",
                json!({ "text": format!("permit(principal, action, resource) when {{ \"{bad}\" == \"x\" }};") }),
            ),
            ("POST", "/v1/policies", json!({ "id": bad, "text": "permit(principal, action, resource);" })),
            ("PUT", "/v1/policies/schema", json!({ "schema": format!("namespace App {{ entity User; }} // {bad}") })),
            ("POST", "/v1/tenants", named(&bad)),
            ("POST", "/v1/users", json!({ "email": format!("x{c}@example.com"), "password": crate::mfa::PASSWORD })),
            ("POST", "/v1/users", json!({ "email": "y@example.com", "display_name": bad })),
            (
                "POST",
                "/v1/authorize",
                json!({ "principal": { "type": "App::User", "id": bad }, "action": { "type": "Action", "id": "view" }, "resource": { "type": "App::User", "id": "ann" } }),
            ),
        ];
        for (method, path, body) in bodies {
            let what = format!("{method} {path} {body}");
            expect_control(call(&app, &token, method, path, body).await, &what).await;
        }
        let enc = pct(&bad);
        let paths = [
            ("GET", format!("/v1/users?email_prefix={enc}")),
            ("GET", format!("/v1/audit?actor={enc}")),
            ("GET", format!("/v1/audit?target={enc}")),
            ("GET", format!("/v1/audit/export?actor={enc}")),
            ("GET", format!("/v1/entities?type={enc}")),
            ("GET", format!("/v1/entities/App::User/{enc}")),
            ("DELETE", format!("/v1/entities/App::User/{enc}")),
            ("DELETE", format!("/v1/entities/{enc}/ann")),
            ("GET", format!("/v1/groups/{enc}")),
            ("DELETE", format!("/v1/groups/{enc}")),
            ("PUT", format!("/v1/groups/ops/members/{enc}")),
            ("PUT", format!("/v1/groups/{enc}/members/root@example.com")),
            ("DELETE", format!("/v1/roles/{enc}")),
            ("GET", format!("/v1/policies/{enc}")),
            ("DELETE", format!("/v1/policies/{enc}")),
            ("GET", format!("/v1/users/{enc}")),
            ("GET", format!("/v1/tenants/{enc}")),
        ];
        for (method, path) in paths {
            let what = format!("{method} {path}");
            expect_control(call(&app, &token, method, &path, json!(null)).await, &what).await;
        }
        // Signing in or up with one: refused before anything is looked up.
        let login = json!({ "email": format!("root{c}@example.com"), "password": crate::mfa::PASSWORD });
        expect_control(send(&app, "POST", TENANT, "/v1/auth/password/login", None, login).await, "login").await;
        let signup = json!({ "email": format!("new{c}@example.com"), "password": crate::mfa::PASSWORD });
        expect_control(send(&app, "POST", TENANT, "/v1/auth/password/signup", None, signup).await, "signup").await;
    }
    // A line break is text in a description or a policy, not in a name.
    expect_control(call(&app, &token, "POST", "/v1/groups", json!({ "name": "a\nb" })).await, "newline name").await;
    // A tab inside the tenant header.
    let tabbed = app.http.get(app.url("/v1/users")).header("x-tenant-id", "def\tault").bearer_auth(&token);
    expect_control(tabbed.send().await.unwrap(), "tab in X-Tenant-ID").await;
    assert_eq!(everything(&app, &token).await, before, "refused requests changed nothing");

    let multi = json!({ "name": "multi", "description": "first line\nsecond line\tindented\r\n" });
    let created = ok_json(call(&app, &token, "POST", "/v1/groups", multi).await).await;
    assert_eq!(created["description"], "first line\nsecond line\tindented\r\n");
    let policy = json!({ "text": "// who may\npermit(\n\tprincipal,\n\taction,\n\tresource\n);\n" });
    ok_json(call(&app, &token, "PUT", "/v1/policies/multi", policy).await).await;
    // An escaped backslash followed by "u0000" is six printable characters.
    let literal = json!({ "name": "lit", "description": "C:\\u0000" });
    ok_json(call(&app, &token, "POST", "/v1/groups", literal).await).await;
});

/// Asserts `response` is a 400 `invalid_json` problem whose text names no Rust type,
/// and returns its detail.
async fn expect_plain(response: reqwest::Response) -> String {
    let body = expect_problem(response, 400, "invalid_json").await;
    let text = body.to_string();
    for rust in ["struct ", "enum ", "Body", "u32", "i64", "Option", "Vec<", "String", "serde", "map,"] {
        assert!(!text.contains(rust), "{rust:?} in {text}");
    }
    body["detail"].as_str().unwrap().to_owned()
}

async fn post_raw(app: &TestApp, token: &str, path: &str, body: &str) -> reqwest::Response {
    let request = app.http.post(app.url(path)).header("x-tenant-id", TENANT).bearer_auth(token);
    request.header("content-type", "application/json").body(body.to_owned()).send().await.unwrap()
}

backend_test!(json_of_the_wrong_shape_is_explained_in_plain_words_without_type_names, |backend| {
    let Some(app) = TestApp::builder(backend).routes(test_routes()).spawn().await else { return };
    let token = admin_session(&app).await;
    let before = everything(&app, &token).await;

    let detail = expect_plain(post_raw(&app, &token, "/v1/tenants", "[]").await).await;
    assert!(detail.contains("an object"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/v1/tenants", r#""acme""#).await).await;
    assert!(detail.contains("an object"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/v1/tenants", r#"{"name": 5}"#).await).await;
    assert!(detail.starts_with("name: ") && detail.contains("a string"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/v1/tenants", "{}").await).await;
    assert!(detail.contains("missing field `name`"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/v1/tenants", r#"{"name": "x", "colour": 1}"#).await).await;
    assert!(detail.contains("unknown field `colour`") && detail.contains("`slug`"), "{detail}");
    let body = r#"{"policies": [{"id": "a", "text": 7}]}"#;
    let detail = expect_plain(post_raw(&app, &token, "/v1/policies/validate", body).await).await;
    assert!(detail.starts_with("policies[0].text: ") && detail.contains("a string"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/v1/policies/rollback", r#"{"version": "two"}"#).await).await;
    assert!(detail.starts_with("version: ") && detail.contains("a whole number"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/test/echo", r#"{"name": "ada", "count": -1}"#).await).await;
    assert!(detail.starts_with("count: ") && detail.contains("a whole number"), "{detail}");
    let detail = expect_plain(post_raw(&app, &token, "/test/echo", r#"{"name": ["ada"], "count": 1}"#).await).await;
    assert!(detail.contains("an array") && detail.contains("a string"), "{detail}");
    let detail =
        expect_plain(post_raw(&app, &token, "/v1/groups", r#"{"name": "g", "description": true}"#).await).await;
    assert!(detail.starts_with("description: ") && detail.contains("true"), "{detail}");
    // Syntax errors still say where.
    let detail = expect_plain(post_raw(&app, &token, "/v1/groups", r#"{"name": "g""#).await).await;
    assert!(detail.contains("line 1"), "{detail}");

    // Path and query parameters of the wrong kind name no Rust type either.
    let version = call(&app, &token, "GET", "/v1/policies/versions/latest", json!(null)).await;
    let body = expect_problem(version, 400, "bad_request").await;
    assert!(!body.to_string().contains("i64"), "{body}");
    let cursor = call(&app, &token, "GET", "/v1/users?cursor=nope", json!(null)).await;
    let body = expect_problem(cursor, 400, "invalid_parameter").await;
    assert_eq!(body["parameter"], "cursor");
    assert!(!body.to_string().contains("Uuid"), "{body}");
    assert_eq!(everything(&app, &token).await, before, "refused requests changed nothing");
});

/// Sends `head` (and nothing else) on a fresh connection and returns the status code,
/// the headers (lower-cased) and the body guard answered.
async fn raw(addr: SocketAddr, head: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(head).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.as_bytes().to_vec())
}

fn expect_raw_problem(answer: &(u16, String, Vec<u8>), status: u16, code: &str) {
    let (got, head, body) = answer;
    assert_eq!(*got, status, "{head}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let length = body.len().to_string();
    assert!(head.contains(&format!("content-length: {length}")), "{head} / {}", String::from_utf8_lossy(body));
    let problem: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status, "{problem}");
    assert_eq!(problem["type"], format!("urn:guard:problem:{code}"), "{problem}");
}

backend_test!(heads_the_http_layer_refuses_are_answered_as_problem_documents, |backend| {
    let Some(app) = TestApp::builder(backend).env("GUARD_HEADER_LIMIT", "4KiB").spawn().await else { return };
    // A control byte in X-Tenant-ID: the HTTP parser refuses the head.
    let control = b"GET /v1/users HTTP/1.1\r\nHost: guard\r\nX-Tenant-ID: def\x01ault\r\nConnection: close\r\n\r\n";
    expect_raw_problem(&raw(app.addr, control).await, 400, "malformed_request");
    let nul = b"GET /v1/users HTTP/1.1\r\nHost: guard\r\nX-Tenant-ID: \x00\r\nConnection: close\r\n\r\n";
    expect_raw_problem(&raw(app.addr, nul).await, 400, "malformed_request");
    // Just over guard's limit, and far over hyper's read buffer.
    for size in [5_000, 40_000] {
        let head = format!(
            "GET /health/live HTTP/1.1\r\nHost: guard\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        );
        expect_raw_problem(&raw(app.addr, head.as_bytes()).await, 431, "headers_too_large");
    }
    let url = format!("GET /health/live?{} HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n", "q".repeat(6000));
    expect_raw_problem(&raw(app.addr, url.as_bytes()).await, 431, "headers_too_large");
    // An ordinary request on the same server still gets an ordinary answer.
    let fine = raw(app.addr, b"GET /health/live HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n").await;
    assert_eq!(fine.0, 200);
    assert!(fine.1.contains("content-type: application/json"), "{}", fine.1);
});

backend_test!(every_list_refuses_a_limit_out_of_range_and_names_the_range, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = admin_session(&app).await;
    for (path, max) in [("/v1/users", 500), ("/v1/tenants", 500), ("/v1/policies/versions", 1000), ("/v1/audit", 1000)]
    {
        for limit in ["0".to_owned(), (max + 1).to_string(), "999999999".into(), "-1".into(), "ten".into(), "".into()] {
            let response = call(&app, &token, "GET", &format!("{path}?limit={limit}"), json!(null)).await;
            assert_ne!(response.status(), 200, "{path}?limit={limit}");
            let problem = expect_problem(response, 400, "invalid_parameter").await;
            assert_eq!(problem["parameter"], "limit", "{path}?limit={limit}: {problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.starts_with("limit") && detail.contains(&format!("1 to {max}")), "{path}: {detail}");
        }
        for limit in ["1".to_owned(), max.to_string()] {
            ok_json(call(&app, &token, "GET", &format!("{path}?limit={limit}"), json!(null)).await).await;
        }
        ok_json(call(&app, &token, "GET", path, json!(null)).await).await;
    }
    let one = ok_json(call(&app, &token, "GET", "/v1/tenants?limit=1", json!(null)).await).await;
    assert_eq!(one["tenants"].as_array().unwrap().len(), 1);
});

backend_test!(text_the_database_refuses_is_invalid_data_not_an_internal_error, |backend| {
    use guard_core::authz::AuthzError;
    use guard_core::events::Actor;
    use guard_core::store::StoreError;

    let Some(app) = TestApp::spawn(backend).await else { return };
    let tenant = app.state.tenants.find(TENANT).await.unwrap();
    // Behind the API's own check: the service stores a description as it comes, and
    // PostgreSQL refuses NUL in text (SQLSTATE 22021).
    let result = app.state.authz.create_group(tenant.id, Actor::Operator, "nul", Some("a\0b".into())).await;
    match backend {
        guard_testkit::Backend::Postgres => {
            assert!(matches!(result, Err(AuthzError::Store(StoreError::InvalidData(_)))), "{result:?}");
        }
        guard_testkit::Backend::Sqlite => assert!(result.is_ok(), "{result:?}"),
    }
    let answer = guard_api::ApiError::from(StoreError::InvalidData("invalid byte sequence".into()));
    assert_eq!((answer.problem().status, answer.problem().code.as_str()), (400, "bad_request"));
    assert!(!answer.problem().detail.as_deref().unwrap_or_default().contains("byte sequence"));
});
