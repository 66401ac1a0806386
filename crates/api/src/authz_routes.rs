//! The authorization API: decisions for applications (/v1/authorize), the tenant's
//! Cedar policies and schema with their versions (/v1/policies), stored entities
//! (/v1/entities), groups and roles, and the operators' overview under /admin.
//! Every route acts in the caller's own tenant.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use guard_core::authz::{AuthzError, Group, PolicySnapshot, PolicyVersion};
use guard_core::users::UserId;
use guard_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::admin_routes::actor;
use crate::extract::{AppJson, AppPath, AppQuery, PageLimit};
use crate::tenancy::{Caller, PlatformAdmin, TenantAdmin};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/authorize", post(authorize))
        .route("/v1/authorize/batch", post(authorize_batch))
        .route("/v1/policies", get(list_policies).post(create_policy).put(replace_policies))
        .route("/v1/policies/schema", get(get_schema).put(put_schema).delete(delete_schema))
        .route("/v1/policies/versions", get(list_versions))
        .route("/v1/policies/versions/{version}", get(get_version))
        .route("/v1/policies/rollback", post(rollback))
        .route("/v1/policies/validate", post(validate))
        .route("/v1/policies/{id}", get(get_policy).put(put_policy).delete(delete_policy))
        .route("/v1/entities", get(list_entities).put(upsert_entities).post(upsert_entities))
        .route("/v1/entities/{entity_type}/{entity_id}", get(get_entity).delete(delete_entity))
        .route("/v1/groups", get(list_groups).post(create_group))
        .route("/v1/groups/{name}", get(get_group).delete(delete_group))
        .route("/v1/groups/{name}/members/{user}", put(add_member).delete(remove_member))
        .route("/v1/roles", get(list_roles).post(create_role))
        .route("/v1/roles/{name}", axum::routing::delete(delete_role))
        .route("/admin/policies", get(admin_policies))
        .route("/admin/policy-stats", get(admin_stats))
}

/// The problem for an authorization error; 422s carry Cedar's issues in `errors`.
pub(crate) fn authz_error(e: AuthzError) -> ApiError {
    match e {
        AuthzError::Invalid { summary, issues } => {
            let code = match issues.first().map(|i| i.source) {
                Some("entity") => ErrorCode::InvalidEntity,
                Some("request") => ErrorCode::InvalidAuthorizationRequest,
                _ => ErrorCode::InvalidPolicy,
            };
            let first = issues.first().map(|i| format!(": {}", i.message)).unwrap_or_default();
            ApiError::new(code).detail(format!("{summary}{first}")).extension("errors", json!(issues))
        }
        AuthzError::BadRequest(detail) => ApiError::new(ErrorCode::BadRequest).detail(detail),
        AuthzError::NotFound(detail) => ApiError::new(ErrorCode::NotFound).detail(detail),
        AuthzError::Conflict(detail) => ApiError::new(ErrorCode::Conflict).detail(detail),
        AuthzError::Store(e) => ApiError::from(e),
    }
}

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn version_json(v: &PolicyVersion, with_snapshot: bool) -> Value {
    let mut out = json!({
        "version": v.version, "created_at": time_text(v.created_at), "actor": v.actor, "change": v.change,
        "policy_count": v.snapshot.policies.len(), "has_schema": v.snapshot.schema.is_some(),
    });
    if with_snapshot {
        out["policies"] = policies_json(&v.snapshot);
        out["schema"] = json!(v.snapshot.schema);
    }
    out
}

fn policies_json(snapshot: &PolicySnapshot) -> Value {
    Value::Array(snapshot.policies.iter().map(|(id, text)| json!({ "id": id, "text": text })).collect())
}

// ---- decisions ----

/// Asking about someone other than oneself needs `authorize.any`.
async fn check_principals(state: &AppState, caller: &Caller, requests: &[Value]) -> Result<(), ApiError> {
    let own = format!("{}", caller.who.user.id.0);
    let about_others = requests.iter().any(|r| match r.get("principal") {
        None | Some(Value::Null) => false,
        Some(p) => {
            let (kind, id) = match p {
                Value::String(s) => (
                    s.split_once("::\"").map(|(t, _)| t.to_owned()),
                    s.rsplit("::\"").next().map(|i| i.trim_end_matches('"').to_owned()),
                ),
                other => (other["type"].as_str().map(str::to_owned), other["id"].as_str().map(str::to_owned)),
            };
            !(kind.as_deref() == Some("Guard::User") && id.as_deref() == Some(own.as_str()))
        }
    });
    let action = if about_others { "authorize.any" } else { "authorize.self" };
    crate::tenancy::require(state, caller, action).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    requests: Vec<Value>,
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    requests: &[Value],
) -> Result<Vec<guard_core::authz::Decision>, ApiError> {
    check_principals(state, caller, requests).await?;
    state
        .authz
        .authorize(caller.tenant.id, Some(caller.who.user.id.0), actor(caller), requests)
        .await
        .map_err(authz_error)
}

async fn authorize(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(request): AppJson<Value>,
) -> Result<AppJson<Value>, ApiError> {
    let mut decisions = decide(&state, &caller, std::slice::from_ref(&request)).await?;
    Ok(AppJson(json!(decisions.pop())))
}

async fn authorize_batch(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(batch): AppJson<Batch>,
) -> Result<AppJson<Value>, ApiError> {
    if batch.requests.is_empty() || batch.requests.len() > guard_core::authz::service::MAX_BATCH {
        return Err(ApiError::new(ErrorCode::BadRequest)
            .detail(format!("requests: send 1 to {} requests", guard_core::authz::service::MAX_BATCH)));
    }
    let decisions = decide(&state, &caller, &batch.requests).await?;
    Ok(AppJson(json!({ "results": decisions })))
}

// ---- policies ----

async fn list_policies(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
) -> Result<AppJson<Value>, ApiError> {
    let (version, snapshot) = state.authz.current(caller.tenant.id).await.map_err(authz_error)?;
    Ok(AppJson(
        json!({ "version": version, "policies": policies_json(&snapshot), "has_schema": snapshot.schema.is_some() }),
    ))
}

async fn get_policy(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let (version, snapshot) = state.authz.current(caller.tenant.id).await.map_err(authz_error)?;
    let text = snapshot
        .policies
        .get(&id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).detail(format!("no policy {id:?}")))?;
    Ok(AppJson(json!({ "id": id, "text": text, "version": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[serde(default)]
    id: Option<String>,
    text: String,
}

fn changed(v: &PolicyVersion, status: StatusCode) -> Response {
    (status, AppJson(version_json(v, false))).into_response()
}

async fn create_policy(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<PolicyBody>,
) -> Result<Response, ApiError> {
    let Some(id) = body.id else {
        return Err(ApiError::new(ErrorCode::BadRequest).detail("id: name the policy"));
    };
    let v = state.authz.create_policy(caller.tenant.id, actor(&caller), &id, &body.text).await.map_err(authz_error)?;
    Ok(changed(&v, StatusCode::CREATED))
}

async fn put_policy(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<PolicyBody>,
) -> Result<Response, ApiError> {
    if body.id.as_ref().is_some_and(|b| *b != id) {
        return Err(ApiError::new(ErrorCode::BadRequest).detail("id: differs from the id in the path"));
    }
    let v = state.authz.put_policy(caller.tenant.id, actor(&caller), &id, &body.text).await.map_err(authz_error)?;
    Ok(changed(&v, StatusCode::OK))
}

async fn delete_policy(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let v = state.authz.delete_policy(caller.tenant.id, actor(&caller), &id).await.map_err(authz_error)?;
    Ok(changed(&v, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    policies: Vec<PolicyBody>,
    /// Missing keeps the current schema; null removes it.
    #[serde(default)]
    schema: Option<Value>,
    /// Refuses the change unless the current version is this one.
    #[serde(default)]
    expected_version: Option<i64>,
}

async fn snapshot_of(
    state: &AppState,
    caller: &Caller,
    body: SetBody,
) -> Result<(PolicySnapshot, Option<Option<String>>, Option<i64>), ApiError> {
    let given = match body.schema {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text)),
        Some(_) => return Err(ApiError::new(ErrorCode::BadRequest).detail("schema: a string, or null to remove it")),
    };
    let schema = match &given {
        Some(schema) => schema.clone(),
        None => state.authz.current(caller.tenant.id).await.map_err(authz_error)?.1.schema,
    };
    let mut snapshot = PolicySnapshot { schema, ..PolicySnapshot::default() };
    for (n, p) in body.policies.into_iter().enumerate() {
        let id =
            p.id.ok_or_else(|| ApiError::new(ErrorCode::BadRequest).detail(format!("policies[{n}].id: missing")))?;
        if snapshot.policies.insert(id.clone(), p.text.trim_end().to_owned()).is_some() {
            return Err(ApiError::new(ErrorCode::BadRequest).detail(format!("policies[{n}].id: {id:?} appears twice")));
        }
    }
    Ok((snapshot, given, body.expected_version))
}

async fn replace_policies(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<SetBody>,
) -> Result<Response, ApiError> {
    let (snapshot, schema, expected) = snapshot_of(&state, &caller, body).await?;
    let v = state
        .authz
        .replace_keeping(caller.tenant.id, actor(&caller), snapshot.policies, schema, expected, "replace all")
        .await
        .map_err(authz_error)?;
    Ok(changed(&v, StatusCode::OK))
}

async fn validate(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<SetBody>,
) -> Result<AppJson<Value>, ApiError> {
    let (snapshot, _, _) = snapshot_of(&state, &caller, body).await?;
    state.authz.validate(caller.tenant.id, &snapshot).await.map_err(authz_error)?;
    Ok(AppJson(json!({ "valid": true, "policy_count": snapshot.policies.len() })))
}

async fn get_schema(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
) -> Result<AppJson<Value>, ApiError> {
    let (version, snapshot) = state.authz.current(caller.tenant.id).await.map_err(authz_error)?;
    Ok(AppJson(
        json!({ "version": version, "schema": snapshot.schema, "guard_schema": guard_core::authz::builtin::schema_text() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaBody {
    schema: String,
}

async fn put_schema(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<SchemaBody>,
) -> Result<Response, ApiError> {
    let v = state.authz.put_schema(caller.tenant.id, actor(&caller), Some(body.schema)).await.map_err(authz_error)?;
    Ok(changed(&v, StatusCode::OK))
}

async fn delete_schema(State(state): State<AppState>, TenantAdmin(caller): TenantAdmin) -> Result<Response, ApiError> {
    let v = state.authz.put_schema(caller.tenant.id, actor(&caller), None).await.map_err(authz_error)?;
    Ok(changed(&v, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionPage {
    before: Option<i64>,
    #[serde(default)]
    limit: PageLimit<50, 1000>,
}

async fn list_versions(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppQuery(page): AppQuery<VersionPage>,
) -> Result<AppJson<Value>, ApiError> {
    let versions = state.authz.versions(caller.tenant.id, page.before, page.limit.get()).await.map_err(authz_error)?;
    Ok(AppJson(json!({ "versions": versions.iter().map(|v| version_json(v, false)).collect::<Vec<_>>() })))
}

async fn get_version(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(version): AppPath<i64>,
) -> Result<AppJson<Value>, ApiError> {
    let v = state.authz.version(caller.tenant.id, version).await.map_err(authz_error)?;
    Ok(AppJson(version_json(&v, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: i64,
}

async fn rollback(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<RollbackBody>,
) -> Result<Response, ApiError> {
    let v = state.authz.rollback(caller.tenant.id, actor(&caller), body.version).await.map_err(authz_error)?;
    Ok(changed(&v, StatusCode::OK))
}

// ---- entities ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityFilter {
    #[serde(rename = "type")]
    entity_type: Option<String>,
    cursor: Option<EntityCursor>,
    #[serde(default)]
    limit: PageLimit<100, 1000>,
}

/// Where a page of entities ends: the last entity's type and id, as hex (opaque to
/// clients, safe in a query string).
struct EntityCursor {
    entity_type: String,
    entity_id: String,
}

impl EntityCursor {
    fn encode(entity_type: &str, entity_id: &str) -> String {
        // A type name never holds NUL, so the first one ends it.
        format!("{entity_type}\0{entity_id}").bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(text: &str) -> Option<EntityCursor> {
        if !text.len().is_multiple_of(2) || !text.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
        let text = String::from_utf8(bytes?).ok()?;
        let (entity_type, entity_id) = text.split_once('\0')?;
        (!entity_type.is_empty())
            .then(|| EntityCursor { entity_type: entity_type.to_owned(), entity_id: entity_id.to_owned() })
    }
}

impl<'de> Deserialize<'de> for EntityCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        EntityCursor::decode(&text)
            .ok_or_else(|| serde::de::Error::custom("not a cursor this list returned (use its next_cursor)"))
    }
}

async fn list_entities(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppQuery(filter): AppQuery<EntityFilter>,
) -> Result<AppJson<Value>, ApiError> {
    let limit = filter.limit.get();
    let after = filter.cursor.as_ref().map(|c| (c.entity_type.as_str(), c.entity_id.as_str()));
    // One more than asked says whether another page follows.
    let mut page =
        state.authz.store().entities_page(caller.tenant.id, filter.entity_type.as_deref(), after, limit + 1).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = match page.last() {
        Some(last) if more => Some(EntityCursor::encode(&last.entity_type, &last.entity_id)),
        _ => None,
    };
    let entities: Vec<Value> = page.into_iter().filter_map(|e| serde_json::from_str(&e.body).ok()).collect();
    Ok(AppJson(json!({ "entities": entities, "next_cursor": next_cursor })))
}

async fn upsert_entities(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<Value>,
) -> Result<AppJson<Value>, ApiError> {
    // Either a bare array of Cedar entities or {"entities": [...]}.
    let entities = match &body {
        Value::Object(map) if map.contains_key("entities") => &map["entities"],
        other => other,
    };
    let count = state.authz.upsert_entities(caller.tenant.id, actor(&caller), entities).await.map_err(authz_error)?;
    Ok(AppJson(json!({ "upserted": count })))
}

async fn get_entity(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath((entity_type, entity_id)): AppPath<(String, String)>,
) -> Result<AppJson<Value>, ApiError> {
    let entity =
        state.authz.store().entity(caller.tenant.id, &entity_type, &entity_id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound).detail(format!("no entity {entity_type}::{entity_id:?}"))
        })?;
    Ok(AppJson(serde_json::from_str(&entity.body).unwrap_or(Value::Null)))
}

async fn delete_entity(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath((entity_type, entity_id)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.authz.delete_entity(caller.tenant.id, actor(&caller), &entity_type, &entity_id).await.map_err(authz_error)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- groups and roles ----

async fn list_groups(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
) -> Result<AppJson<Value>, ApiError> {
    let groups = state.authz.store().groups(caller.tenant.id).await?;
    Ok(AppJson(json!({ "groups": groups })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

async fn create_group(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<NamedBody>,
) -> Result<Response, ApiError> {
    let group: Group = state
        .authz
        .create_group(caller.tenant.id, actor(&caller), &body.name, body.description)
        .await
        .map_err(authz_error)?;
    Ok((StatusCode::CREATED, AppJson(json!(group))).into_response())
}

async fn get_group(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let group = state.authz.group(caller.tenant.id, &name).await.map_err(authz_error)?;
    let members = state.authz.store().group_members(group.id).await?;
    let mut out = json!(group);
    out["member_ids"] = json!(members);
    Ok(AppJson(out))
}

async fn delete_group(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(name): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    state.authz.delete_group(caller.tenant.id, actor(&caller), &name).await.map_err(authz_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member(
    state: &AppState,
    caller: &Caller,
    name: &str,
    user: &str,
    add: bool,
) -> Result<AppJson<Value>, ApiError> {
    let found = state.users.find(caller.tenant.slug.as_str(), user).await.map_err(crate::admin_routes::user_error)?;
    let UserId(id) = found.id;
    let changed = state.authz.set_member(caller.tenant.id, actor(caller), name, id, add).await.map_err(authz_error)?;
    Ok(AppJson(json!({ "group": name, "user": id, "changed": changed })))
}

async fn add_member(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath((name, user)): AppPath<(String, String)>,
) -> Result<AppJson<Value>, ApiError> {
    member(&state, &caller, &name, &user, true).await
}

async fn remove_member(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath((name, user)): AppPath<(String, String)>,
) -> Result<AppJson<Value>, ApiError> {
    member(&state, &caller, &name, &user, false).await
}

async fn list_roles(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
) -> Result<AppJson<Value>, ApiError> {
    let roles = state.authz.roles(caller.tenant.id).await.map_err(authz_error)?;
    Ok(AppJson(json!({ "roles": roles })))
}

async fn create_role(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<NamedBody>,
) -> Result<Response, ApiError> {
    let role = state
        .authz
        .create_role(caller.tenant.id, actor(&caller), &body.name, body.description)
        .await
        .map_err(authz_error)?;
    Ok((StatusCode::CREATED, AppJson(json!(role))).into_response())
}

async fn delete_role(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(name): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    state.authz.delete_role(caller.tenant.id, actor(&caller), &name).await.map_err(authz_error)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- operators ----

async fn admin_policies(
    State(state): State<AppState>,
    PlatformAdmin(_): PlatformAdmin,
) -> Result<AppJson<Value>, ApiError> {
    let heads = state.authz.heads().await.map_err(authz_error)?;
    let tenants: Vec<Value> = heads
        .iter()
        .map(|h| {
            json!({
                "tenant": h.tenant.0, "version": h.version, "updated_at": time_text(h.created_at),
                "policy_count": h.policy_count, "has_schema": h.has_schema,
            })
        })
        .collect();
    Ok(AppJson(json!({ "tenants": tenants })))
}

async fn admin_stats(
    State(state): State<AppState>,
    PlatformAdmin(_): PlatformAdmin,
) -> Result<AppJson<Value>, ApiError> {
    let heads = state.authz.heads().await.map_err(authz_error)?;
    let mut by_tenant: std::collections::BTreeMap<uuid::Uuid, Value> = std::collections::BTreeMap::new();
    for h in &heads {
        by_tenant.insert(
            h.tenant.0,
            json!({ "tenant": h.tenant.0, "policy_version": h.version, "policy_count": h.policy_count }),
        );
    }
    for (tenant, report) in state.authz.stats() {
        let entry = by_tenant
            .entry(tenant.0)
            .or_insert_with(|| json!({ "tenant": tenant.0, "policy_version": 0, "policy_count": 0 }));
        entry["decisions"] = json!(report);
    }
    Ok(AppJson(json!({
        "scope": "this process",
        "cache_hit_rate": state.authz.cache_hit_ratio(),
        "tenants": by_tenant.into_values().collect::<Vec<_>>(),
    })))
}
