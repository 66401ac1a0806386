//! Password sign-in, sign-out, and the caller's own account and sessions.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use guard_core::sessions::{AuthError, ClientInfo, Session, SessionId};
use guard_core::users::User;
use guard_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::extract::{AppJson, AppPath};
use crate::tenancy::{Caller, CurrentTenant, SESSION_COOKIE};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/password/login", post(login))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/me/sessions", get(sessions))
        .route("/v1/me/sessions/{id}", delete(revoke_session))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

fn time(t: &time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id, "email": u.email, "username": u.username, "display_name": u.display_name,
        "status": u.status, "password_change_required": u.password_change_required,
        "created_at": time(&u.created_at), "last_login_at": u.last_login_at.as_ref().map(time),
    })
}

fn session_json(s: &Session, current: Option<SessionId>) -> Value {
    json!({
        "id": s.id, "created_at": time(&s.created_at), "last_seen_at": time(&s.last_seen_at),
        "expires_at": time(&s.expires_at), "idle_expires_at": time(&s.idle_expires_at),
        "ip": s.client.ip, "user_agent": s.client.user_agent, "current": Some(s.id) == current,
    })
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::InvalidCredentials => {
            ApiError::new(ErrorCode::InvalidCredentials).detail("the email or password is not correct")
        }
        AuthError::Unauthenticated => ApiError::new(ErrorCode::Unauthenticated),
        AuthError::Store(e) => ApiError::from(e),
        AuthError::Internal(e) => ApiError::internal(e),
    }
}

/// POST /v1/auth/password/login
async fn login(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    let client = ClientInfo { ip: Some(peer.ip().to_string()), user_agent };
    let done = state.auth.login(&tenant, &body.email, body.password, client).await.map_err(auth_error)?;
    let max_age = done.session.expires_at - done.session.created_at;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        done.token.expose(),
        max_age.whole_seconds()
    );
    let body = json!({
        "token_type": "session",
        "token": done.token.expose(),
        "session": session_json(&done.session, Some(done.session.id)),
        "user": user_json(&done.user),
    });
    let mut response = AppJson(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// POST /v1/auth/logout
async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    state.auth.logout(&caller.who).await.map_err(auth_error)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// GET /v1/me
async fn me(caller: Caller) -> AppJson<Value> {
    let mut body = user_json(&caller.who.user);
    body["tenant"] = json!(caller.tenant.slug);
    AppJson(body)
}

/// GET /v1/me/sessions
async fn sessions(State(state): State<AppState>, caller: Caller) -> Result<AppJson<Value>, ApiError> {
    let list = state.auth.sessions(&caller.who).await.map_err(auth_error)?;
    let current = Some(caller.who.session.id);
    Ok(AppJson(json!({ "sessions": list.iter().map(|s| session_json(s, current)).collect::<Vec<_>>() })))
}

/// DELETE /v1/me/sessions/{id}
async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    if state.auth.revoke(&caller.who, SessionId(id)).await.map_err(auth_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(ErrorCode::NotFound).detail("no such session of yours"))
    }
}
