//! The administration API: tenants (administrators of the default tenant) and the
//! users of the caller's own tenant (administrators of that tenant). A tenant's
//! administrator never reaches another tenant's users: every user route acts in the
//! tenant of the caller's session.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guard_core::events::Actor;
use guard_core::tenants::{Tenant, TenantError, TenantId};
use guard_core::users::{NewAccount, UserError, UserId, UserStatus, UserUpdate};
use guard_proto::ErrorCode;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::auth_routes::{account_error, user_json};
use crate::extract::{AppJson, AppPath, AppQuery, PageLimit};
use crate::tenancy::{Caller, PlatformAdmin, TenantAdmin, require_control};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{tenant}", get(get_tenant).patch(update_tenant))
        .route("/v1/tenants/{tenant}/disable", post(disable_tenant))
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/{user}", get(get_user).patch(update_user).delete(delete_user))
        .route("/v1/users/{user}/disable", post(disable_user))
        .route("/v1/users/{user}/password-reset", post(reset_user_password))
}

pub(crate) fn actor(caller: &Caller) -> Actor {
    Actor::User(caller.who.user.id.0)
}

fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id, "slug": t.slug, "name": t.name, "status": t.status, "settings": t.settings,
        "created_at": t.created_at.format(&Rfc3339).unwrap_or_default(),
        "updated_at": t.updated_at.format(&Rfc3339).unwrap_or_default(),
    })
}

fn tenant_error(e: TenantError) -> ApiError {
    match e {
        TenantError::Invalid(detail) => ApiError::new(ErrorCode::BadRequest).detail(detail),
        TenantError::SlugTaken(slug) => {
            ApiError::new(ErrorCode::Conflict).detail(format!("a tenant with the slug {slug:?} already exists"))
        }
        TenantError::NotFound(_) => ApiError::new(ErrorCode::TenantNotFound).detail("no such tenant"),
        TenantError::DefaultProtected => {
            ApiError::new(ErrorCode::BadRequest).detail("the default tenant cannot be disabled")
        }
        TenantError::Store(e) => ApiError::from(e),
    }
}

pub(crate) fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::Invalid(detail) => ApiError::new(ErrorCode::BadRequest).detail(detail),
        UserError::WeakPassword(detail) => ApiError::new(ErrorCode::WeakPassword).detail(detail),
        UserError::Taken => {
            ApiError::new(ErrorCode::Conflict).detail("a user with this email or user name already exists")
        }
        UserError::NotFound(_) => ApiError::new(ErrorCode::NotFound).detail("no such user in this tenant"),
        UserError::TenantDisabled(_) => ApiError::new(ErrorCode::TenantDisabled),
        UserError::Tenant(e) => tenant_error(e),
        UserError::Store(e) => ApiError::from(e),
        UserError::Internal(e) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    cursor: Option<uuid::Uuid>,
    #[serde(default)]
    limit: PageLimit<100, 500>,
}

/// GET /v1/tenants
async fn list_tenants(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    AppQuery(page): AppQuery<Page>,
) -> Result<AppJson<Value>, ApiError> {
    let found = state.tenants.list(page.cursor.map(TenantId), page.limit.get()).await.map_err(tenant_error)?;
    Ok(AppJson(json!({
        "tenants": found.tenants.iter().map(tenant_json).collect::<Vec<_>>(),
        "next_cursor": found.next_cursor,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenantBody {
    name: String,
    slug: Option<String>,
}

/// POST /v1/tenants
async fn create_tenant(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    AppJson(body): AppJson<NewTenantBody>,
) -> Result<Response, ApiError> {
    let tenant = state.tenants.create(actor(&caller), &body.name, body.slug.as_deref()).await.map_err(tenant_error)?;
    Ok((StatusCode::CREATED, AppJson(tenant_json(&tenant))).into_response())
}

/// GET /v1/tenants/{tenant}
async fn get_tenant(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    AppPath(tenant): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let tenant = state.tenants.find(&tenant).await.map_err(tenant_error)?;
    Ok(AppJson(tenant_json(&tenant)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    settings: Value,
}

/// PATCH /v1/tenants/{tenant} `{"settings": {…the settings to change…}}`
async fn update_tenant(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    AppPath(tenant): AppPath<String>,
    AppJson(body): AppJson<TenantChange>,
) -> Result<AppJson<Value>, ApiError> {
    let tenant = state.tenants.update_settings(actor(&caller), &tenant, &body.settings).await.map_err(tenant_error)?;
    state.tenant_cache.clear();
    Ok(AppJson(tenant_json(&tenant)))
}

/// POST /v1/tenants/{tenant}/disable
async fn disable_tenant(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    AppPath(tenant): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let tenant = state.tenants.disable(actor(&caller), &tenant).await.map_err(tenant_error)?;
    state.tenant_cache.clear();
    Ok(AppJson(tenant_json(&tenant)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    email_prefix: Option<String>,
    status: Option<UserStatus>,
    cursor: Option<uuid::Uuid>,
    #[serde(default)]
    limit: PageLimit<100, 500>,
}

/// GET /v1/users
async fn list_users(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppQuery(query): AppQuery<UserQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let page = state
        .users
        .list(
            &caller.tenant.id.to_string(),
            query.email_prefix.as_deref(),
            query.status,
            query.cursor.map(UserId),
            query.limit.get(),
        )
        .await
        .map_err(user_error)?;
    Ok(AppJson(json!({
        "users": page.users.iter().map(user_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    password: Option<String>,
    username: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// POST /v1/users: without a password, guard generates a one-time one, returned once.
async fn create_user(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppJson(body): AppJson<NewUserBody>,
) -> Result<Response, ApiError> {
    // Roles carry permissions: handing them out is an action of its own, so that
    // users.write alone cannot make an administrator.
    if !body.roles.is_empty() {
        crate::tenancy::require(&state, &caller, "users.roles").await?;
    }
    let created = state
        .users
        .create(
            actor(&caller),
            &caller.tenant.id.to_string(),
            NewAccount {
                email: &body.email,
                username: body.username.as_deref(),
                display_name: body.display_name.as_deref(),
                password: body.password,
                roles: body.roles,
            },
        )
        .await
        .map_err(user_error)?;
    let mut out = user_json(&created.user);
    if let Some(password) = created.generated_password {
        out["generated_password"] = json!(password);
    }
    Ok((StatusCode::CREATED, AppJson(out)).into_response())
}

/// GET /v1/users/{user} (id or email)
async fn get_user(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let user = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(user_error)?;
    Ok(AppJson(user_json(&user)))
}

/// Present-and-null is `Some(None)` (clear), absent is `None` (leave).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChangeBody {
    #[serde(default, deserialize_with = "present")]
    username: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    status: Option<UserStatus>,
    roles: Option<Vec<String>>,
    password_change_required: Option<bool>,
}

/// PATCH /v1/users/{user}
async fn update_user(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
    AppJson(body): AppJson<UserChangeBody>,
) -> Result<AppJson<Value>, ApiError> {
    if body.roles.is_some() {
        crate::tenancy::require(&state, &caller, "users.roles").await?;
    }
    let target = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(user_error)?;
    require_control(&state, &caller, &target).await?;
    let update = UserUpdate {
        username: body.username,
        display_name: body.display_name,
        status: body.status,
        roles: body.roles,
        password_change_required: body.password_change_required,
    };
    let user = state
        .users
        .update(actor(&caller), &caller.tenant.id.to_string(), &target.id.to_string(), update)
        .await
        .map_err(user_error)?;
    // Roles and status are what Cedar sees of a user: decide with the new ones now.
    state.authz.invalidate(caller.tenant.id);
    Ok(AppJson(user_json(&user)))
}

/// POST /v1/users/{user}/disable
async fn disable_user(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let target = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(user_error)?;
    require_control(&state, &caller, &target).await?;
    let user = state
        .users
        .disable(actor(&caller), &caller.tenant.id.to_string(), &target.id.to_string())
        .await
        .map_err(user_error)?;
    // Roles and status are what Cedar sees of a user: decide with the new ones now.
    state.authz.invalidate(caller.tenant.id);
    Ok(AppJson(user_json(&user)))
}

/// DELETE /v1/users/{user}
async fn delete_user(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let target = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(user_error)?;
    require_control(&state, &caller, &target).await?;
    state
        .users
        .delete(actor(&caller), &caller.tenant.id.to_string(), &target.id.to_string())
        .await
        .map_err(user_error)?;
    // Roles and status are what Cedar sees of a user: decide with the new ones now.
    state.authz.invalidate(caller.tenant.id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    /// Return the link instead of emailing it.
    #[serde(default)]
    return_link: bool,
}

/// POST /v1/users/{user}/password-reset[?return_link=true]: emails the user a reset
/// link, or returns it.
async fn reset_user_password(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
    AppQuery(body): AppQuery<ResetBody>,
) -> Result<Response, ApiError> {
    let user = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(user_error)?;
    require_control(&state, &caller, &user).await?;
    if body.return_link {
        let link = state.accounts.reset_link(&caller.tenant, &user).await.map_err(account_error)?;
        return Ok(AppJson(json!({ "link": link })).into_response());
    }
    state.accounts.send_reset(&caller.tenant, &user).await.map_err(account_error)?;
    Ok((StatusCode::ACCEPTED, AppJson(json!({ "sent": true }))).into_response())
}
