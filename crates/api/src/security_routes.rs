//! Brute-force protection for administrators: addresses blocked after failed
//! sign-ins (administrators of the default tenant, for every tenant), and unlocking
//! an account of the caller's tenant (its administrators).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use guard_core::security::IpBlock;
use guard_proto::ErrorCode;
use serde_json::{Value, json};

use crate::admin_routes::{actor, user_error};
use crate::auth_routes::time;
use crate::extract::{AppJson, AppPath};
use crate::tenancy::{PlatformAdmin, TenantAdmin};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/security/blocked-ips", get(list_blocked))
        .route("/v1/security/blocked-ips/{ip}", axum::routing::delete(unblock))
        .route("/v1/users/{user}/unlock", post(unlock))
}

/// `{"blocked_ips": […]}`, as the API and `guard security blocked-ips list` show it.
pub fn blocked_ips_json(blocks: &[IpBlock]) -> Value {
    let list: Vec<Value> = blocks
        .iter()
        .map(|b| {
            json!({
                "ip": b.ip, "tenant": b.tenant, "failures": b.failures,
                "blocked_at": time(&b.blocked_at), "blocked_until": time(&b.blocked_until),
            })
        })
        .collect();
    json!({ "blocked_ips": list })
}

/// GET /v1/security/blocked-ips
async fn list_blocked(State(state): State<AppState>, _: PlatformAdmin) -> Result<AppJson<Value>, ApiError> {
    let blocks = state.auth.brute_force().blocks().await?;
    Ok(AppJson(blocked_ips_json(&blocks)))
}

/// DELETE /v1/security/blocked-ips/{ip}
async fn unblock(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    AppPath(ip): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return Err(ApiError::new(ErrorCode::BadRequest).detail(format!("{ip:?} is not an IP address")));
    };
    if state.auth.brute_force().unblock(actor(&caller), &ip.to_string()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(ErrorCode::NotFound).detail(format!("{ip} is not blocked")))
    }
}

/// POST /v1/users/{user}/unlock (id or email): forgets the account's failed sign-ins.
async fn unlock(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let user = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(user_error)?;
    crate::tenancy::require_control(&state, &caller, &user).await?;
    let had = state.auth.brute_force().unlock(actor(&caller), caller.tenant.id, user.email.as_str()).await?;
    Ok(AppJson(json!({ "unlocked": true, "had_failures": had })))
}
