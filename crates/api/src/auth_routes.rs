//! Sign-up, sign-in, tokens, sign-out, email verification, password reset and
//! change, the caller's own account and sessions, and the tenant's JWKS.

use std::net::IpAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use guard_core::accounts::AccountError;
use guard_core::keys::KeyError;
use guard_core::mfa::ChallengePurpose;
use guard_core::ratelimit::{Action, account_key};
use guard_core::sessions::{
    AuthError, ClientInfo, IssuedTokens, LoginOutcome, LoginSuccess, PendingLogin, Session, SessionId, SessionToken,
};
use guard_core::tenants::TenantStatus;
use guard_core::users::User;
use guard_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::extract::{AppJson, AppPath, AppQuery};
use crate::limits::{ClientIp, enforce, with_limit_headers};
use crate::tenancy::{Caller, CurrentTenant, SESSION_COOKIE, active_tenant};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/password/signup", post(signup))
        .route("/v1/auth/password/login", post(login))
        .route("/v1/auth/token/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/email/verify", get(verify_email_link).post(verify_email))
        .route("/v1/auth/password/reset", get(reset_link))
        .route("/v1/auth/password/reset/request", post(request_reset))
        .route("/v1/auth/password/reset/confirm", post(confirm_reset))
        .route("/v1/me", get(me))
        .route("/v1/me/password", put(change_password))
        .route("/v1/me/email/verification", post(resend_verification))
        .route("/v1/me/sessions", get(sessions))
        .route("/v1/me/sessions/{id}", delete(revoke_session))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/t/{tenant}/.well-known/jwks.json", get(jwks_by_path))
}

pub(crate) fn time(t: &time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn user_json(u: &User) -> Value {
    json!({
        "id": u.id, "email": u.email, "username": u.username, "display_name": u.display_name,
        "status": u.status, "roles": u.roles, "password_change_required": u.password_change_required,
        "created_at": time(&u.created_at), "updated_at": time(&u.updated_at),
        "last_login_at": u.last_login_at.as_ref().map(time),
    })
}

fn session_json(s: &Session, current: Option<SessionId>) -> Value {
    json!({
        "id": s.id, "created_at": time(&s.created_at), "last_seen_at": time(&s.last_seen_at),
        "expires_at": time(&s.expires_at), "idle_expires_at": time(&s.idle_expires_at),
        "ip": s.client.ip, "user_agent": s.client.user_agent, "current": Some(s.id) == current,
        "risk": s.client.risk,
    })
}

fn tokens_json(tokens: &IssuedTokens) -> Value {
    json!({
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "refresh_token": tokens.refresh_token.expose(),
    })
}

pub(crate) fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::InvalidCredentials => {
            ApiError::new(ErrorCode::InvalidCredentials).detail("the email or password is not correct")
        }
        AuthError::Unauthenticated => ApiError::new(ErrorCode::Unauthenticated),
        AuthError::InvalidRefreshToken => ApiError::new(ErrorCode::InvalidRefreshToken)
            .detail("the refresh token is unknown, already used, or its session has ended; sign in again"),
        AuthError::Denied => ApiError::new(ErrorCode::LoginDenied)
            .detail("this sign-in was refused as too risky; try again later, or contact your administrator"),
        AuthError::Delayed(wait) => ApiError::new(ErrorCode::RateLimited)
            .detail(format!("too many failed sign-ins for this account; retry in {} s", wait.as_secs().max(1)))
            .header(header::RETRY_AFTER, retry_after(wait)),
        AuthError::AccountLocked(wait) => ApiError::new(ErrorCode::AccountLocked)
            .detail(format!(
                "too many failed sign-ins: this account is locked for {} s; a password reset or an administrator unlocks it",
                wait.as_secs().max(1)
            ))
            .header(header::RETRY_AFTER, retry_after(wait)),
        AuthError::Store(e) => ApiError::from(e),
        AuthError::Internal(e) => ApiError::internal(e),
    }
}

/// A Retry-After value: whole seconds, at least one.
pub(crate) fn retry_after(wait: std::time::Duration) -> HeaderValue {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    HeaderValue::from(seconds)
}

pub(crate) fn account_error(e: AccountError) -> ApiError {
    match e {
        AccountError::Invalid(detail) => ApiError::new(ErrorCode::BadRequest).detail(detail),
        AccountError::WeakPassword(detail) => ApiError::new(ErrorCode::WeakPassword).detail(detail),
        AccountError::Taken => {
            ApiError::new(ErrorCode::Conflict).detail("an account with this email or user name already exists")
        }
        AccountError::InvalidToken => ApiError::new(ErrorCode::InvalidToken)
            .detail("the link is not valid: it may have expired or been used already"),
        AccountError::WrongPassword => {
            ApiError::new(ErrorCode::InvalidCredentials).detail("the current password is not correct")
        }
        AccountError::Delayed(wait) => auth_error(AuthError::Delayed(wait)),
        AccountError::Locked(wait) => auth_error(AuthError::AccountLocked(wait)),
        AccountError::Store(e) => ApiError::from(e),
        AccountError::Internal(e) => ApiError::internal(e),
    }
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::Store(e) => ApiError::from(e),
        other => ApiError::internal(other),
    }
}

pub(crate) fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    email: String,
    password: String,
    username: Option<String>,
    display_name: Option<String>,
}

/// POST /v1/auth/password/signup
async fn signup(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<SignupRequest>,
) -> Result<Response, ApiError> {
    let limit = enforce(&state, Action::Signup, &tenant, ip, None).await?;
    // A new and an already registered email get the same answer (the owner of the
    // existing account is mailed instead), so sign-up does not tell who has one.
    state
        .accounts
        .signup(&tenant, &body.email, body.password, body.username.as_deref(), body.display_name.as_deref())
        .await
        .map_err(account_error)?;
    let body = json!({
        "status": "check your email to continue",
        "verification_required": tenant.settings.email_verification_required,
    });
    Ok(with_limit_headers((StatusCode::ACCEPTED, AppJson(body)).into_response(), limit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// The cookie naming the browser a sign-in comes from, for the risk signal "a device
/// never seen for this user".
pub(crate) const DEVICE_COOKIE: &str = "guard_device";
/// About 400 days, the longest lifetime browsers keep a cookie for.
const DEVICE_COOKIE_MAX_AGE: i64 = 400 * 24 * 3600;

fn named_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    // Served over TLS (GUARD_PUBLIC_URL is https): the cookie never travels in clear.
    let secure = if state.config.server.public_url.starts_with("https://") { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).ok()
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    named_cookie(state, SESSION_COOKIE, value, max_age)
}

/// Where a sign-in comes from: the peer's address, the user agent and the device
/// cookie (a new one, to set on the answer, when the request has none).
pub(crate) fn client_info(state: &AppState, ip: IpAddr, headers: &HeaderMap) -> (ClientInfo, Option<HeaderValue>) {
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    let presented = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(DEVICE_COOKIE)?.strip_prefix('='))
        .and_then(SessionToken::parse);
    let (device, set_cookie) = match presented {
        Some(token) => (Some(token), None),
        None => match SessionToken::generate() {
            Ok(token) => {
                let cookie = named_cookie(state, DEVICE_COOKIE, token.expose(), DEVICE_COOKIE_MAX_AGE);
                (Some(token), cookie)
            }
            Err(_) => (None, None),
        },
    };
    let device = device.map(|t| t.hash().0.iter().map(|b| format!("{b:02x}")).collect());
    (ClientInfo { ip: Some(ip.to_string()), user_agent, device, risk: None }, set_cookie)
}

/// Adds the new device cookie, when there is one, to a sign-in's answer.
pub(crate) fn with_device_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// POST /v1/auth/password/login
async fn login(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let limit = enforce(&state, Action::Login, &tenant, ip, Some(&account_key(&body.email))).await?;
    let (client, device_cookie) = client_info(&state, ip, &headers);
    let outcome = state.auth.login(&tenant, &body.email, body.password, client).await.map_err(auth_error)?;
    let response = match outcome {
        LoginOutcome::Complete(done) => signed_in(&state, &done, json!({})),
        LoginOutcome::SecondFactor(pending) => {
            no_store((StatusCode::ACCEPTED, AppJson(pending_json(&pending))).into_response())
        }
    };
    Ok(with_limit_headers(with_device_cookie(response, device_cookie), limit))
}

/// The answer to a sign-in that waits for a second step (or an enrolment).
pub(crate) fn pending_json(pending: &PendingLogin) -> Value {
    json!({
        "mfa_required": true,
        "challenge_id": pending.challenge.expose(),
        "methods": pending.methods,
        "enrollment_required": pending.purpose == ChallengePurpose::Enroll,
        "expires_at": time(&pending.expires_at),
    })
}

/// The answer to a completed sign-in: `extra` fields, tokens, the session (also as a
/// cookie) and the user.
pub(crate) fn signed_in(state: &AppState, done: &LoginSuccess, mut body: Value) -> Response {
    let max_age = (done.session.expires_at - done.session.created_at).whole_seconds();
    if let (Value::Object(fields), Value::Object(tokens)) = (&mut body, tokens_json(&done.tokens)) {
        fields.extend(tokens);
    }
    body["session_token"] = json!(done.token.expose());
    body["session"] = session_json(&done.session, Some(done.session.id));
    body["user"] = user_json(&done.user);
    if let Some(due) = &done.mfa_enrollment_due_at {
        body["mfa_enrollment_due_at"] = json!(time(due));
    }
    let mut response = AppJson(body).into_response();
    if let Some(value) = cookie(state, done.token.expose(), max_age) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    no_store(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// POST /v1/auth/token/refresh
async fn refresh(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    AppJson(body): AppJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let tokens = state.auth.refresh(&tenant, &body.refresh_token).await.map_err(auth_error)?;
    Ok(no_store(AppJson(tokens_json(&tokens)).into_response()))
}

/// POST /v1/auth/logout
async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    state.auth.logout(&caller.who).await.map_err(auth_error)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(value) = cookie(&state, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkQuery {
    tenant: String,
    token: String,
}

/// GET /v1/auth/email/verify?tenant=…&token=… (the link in the email)
async fn verify_email_link(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<LinkQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let tenant = active_tenant(&state, &query.tenant).await?;
    verify(&state, &tenant, &query.token).await
}

async fn verify(
    state: &AppState,
    tenant: &guard_core::tenants::Tenant,
    token: &str,
) -> Result<AppJson<Value>, ApiError> {
    let user = state.accounts.verify_email(tenant, token).await.map_err(account_error)?;
    Ok(AppJson(json!({ "verified": true, "user": user_json(&user) })))
}

/// POST /v1/auth/email/verify `{"token"}`
async fn verify_email(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    AppJson(body): AppJson<TokenBody>,
) -> Result<AppJson<Value>, ApiError> {
    verify(&state, &tenant, &body.token).await
}

/// POST /v1/me/email/verification: sends the verification link again.
async fn resend_verification(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    if caller.who.user.status != guard_core::users::UserStatus::PendingVerification {
        return Err(ApiError::new(ErrorCode::Conflict).detail("this email address is already verified"));
    }
    state.accounts.send_verification(&caller.tenant, &caller.who.user).await.map_err(account_error)?;
    Ok(StatusCode::ACCEPTED)
}

/// GET /v1/auth/password/reset?tenant=…&token=… (the link in the email): says how to
/// finish, without spending the token, so link scanners cannot use it up.
async fn reset_link(AppQuery(query): AppQuery<LinkQuery>) -> Response {
    let body = json!({
        "next": "POST /v1/auth/password/reset/confirm",
        "headers": { "X-Tenant-ID": query.tenant },
        "body": { "token": query.token, "password": "<the new password>" },
    });
    no_store(AppJson(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

/// POST /v1/auth/password/reset/request: the same answer whether or not the account exists.
async fn request_reset(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<ResetRequest>,
) -> Result<Response, ApiError> {
    let limit = enforce(&state, Action::PasswordReset, &tenant, ip, Some(&account_key(&body.email))).await?;
    state.accounts.request_reset_later((*tenant).clone(), body.email);
    let body = json!({ "status": "if an account uses this email, a reset link is on its way" });
    Ok(with_limit_headers((StatusCode::ACCEPTED, AppJson(body)).into_response(), limit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetConfirm {
    token: String,
    password: String,
}

/// POST /v1/auth/password/reset/confirm
async fn confirm_reset(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    AppJson(body): AppJson<ResetConfirm>,
) -> Result<AppJson<Value>, ApiError> {
    let user = state.accounts.confirm_reset(&tenant, &body.token, body.password).await.map_err(account_error)?;
    Ok(AppJson(json!({ "reset": true, "user": user_json(&user) })))
}

/// GET /v1/me
async fn me(caller: Caller) -> AppJson<Value> {
    let mut body = user_json(&caller.who.user);
    body["tenant"] = json!(caller.tenant.slug);
    // How this session was authenticated, as its access tokens state it.
    body["amr"] = json!(caller.who.session.amr);
    body["auth_time"] = json!(time(&caller.who.session.created_at));
    AppJson(body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// PUT /v1/me/password
async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let ip = ip.to_string();
    state
        .accounts
        .change_password(&caller.tenant, &caller.who, body.current_password, body.new_password, Some(&ip))
        .await
        .map_err(account_error)?;
    Ok(StatusCode::NO_CONTENT)
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

async fn jwks_response(state: &AppState, tenant: &guard_core::tenants::Tenant) -> Result<Response, ApiError> {
    if tenant.status != TenantStatus::Active {
        return Err(ApiError::new(ErrorCode::TenantDisabled));
    }
    let jwks = state.keys.jwks(tenant.id).await.map_err(key_error)?;
    let mut response = AppJson(jwks).into_response();
    // Verifiers refetch on an unknown kid (as PyJWT and most libraries do), so a
    // rotated-in key is found even before this expires.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(response)
}

/// GET /.well-known/jwks.json with X-Tenant-ID
async fn jwks(State(state): State<AppState>, CurrentTenant(tenant): CurrentTenant) -> Result<Response, ApiError> {
    jwks_response(&state, &tenant).await
}

/// GET /t/{tenant}/.well-known/jwks.json: the same, for verifiers that cannot send headers.
async fn jwks_by_path(State(state): State<AppState>, AppPath(tenant): AppPath<String>) -> Result<Response, ApiError> {
    let tenant = active_tenant(&state, &tenant).await?;
    jwks_response(&state, &tenant).await
}
