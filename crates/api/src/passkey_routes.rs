//! WebAuthn: the caller's own credentials (register, list, rename, remove), the
//! security-key second step of a password sign-in, and passwordless sign-in with a
//! passkey. Options and credentials travel as the JSON forms of the browser's
//! `PublicKeyCredentialCreationOptions` / `RequestOptions` and `PublicKeyCredential`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use guard_core::mfa::{PasskeyInfo, StartedCeremony};
use guard_core::ratelimit::Action;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth_routes::{client_info, no_store, signed_in, time, with_device_cookie};
use crate::extract::{AppJson, AppPath};
use crate::limits::{ClientIp, enforce, with_limit_headers};
use crate::mfa_routes::mfa_error;
use crate::tenancy::{Caller, CurrentTenant};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/mfa/webauthn/start", post(start_second_step))
        .route("/v1/auth/mfa/webauthn/finish", post(finish_second_step))
        .route("/v1/auth/passkey/start", post(start_sign_in))
        .route("/v1/auth/passkey/finish", post(finish_sign_in))
        .route("/v1/me/mfa/webauthn", get(list))
        .route("/v1/me/mfa/webauthn/start", post(start_registration))
        .route("/v1/me/mfa/webauthn/finish", post(finish_registration))
        .route("/v1/me/mfa/webauthn/{id}", patch(rename).delete(remove))
}

fn passkey_json(p: &PasskeyInfo) -> Value {
    json!({
        "id": p.id, "name": p.name, "created_at": time(&p.created_at),
        "last_used_at": p.last_used_at.as_ref().map(time),
    })
}

fn ceremony_json(status: StatusCode, c: &StartedCeremony) -> Response {
    let body = json!({ "ceremony_id": c.id.expose(), "expires_at": time(&c.expires_at), "options": c.options });
    no_store((status, AppJson(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeBody {
    challenge_id: String,
    /// The name of a passkey registered by an enrolment challenge.
    name: Option<String>,
}

/// POST /v1/auth/mfa/webauthn/start `{"challenge_id","name"?}`: the options for the
/// security key (to use one, or to register one when the sign-in must enrol).
async fn start_second_step(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    AppJson(body): AppJson<ChallengeBody>,
) -> Result<Response, ApiError> {
    let options = state
        .mfa
        .start_webauthn_for_challenge(&tenant, &body.challenge_id, body.name.as_deref())
        .await
        .map_err(mfa_error)?;
    Ok(no_store(AppJson(json!({ "options": options })).into_response()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssertionBody {
    challenge_id: String,
    credential: Value,
}

/// POST /v1/auth/mfa/webauthn/finish `{"challenge_id","credential"}`: completes a sign-in.
async fn finish_second_step(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<AssertionBody>,
) -> Result<Response, ApiError> {
    let limit = enforce(&state, Action::MfaVerify, &tenant, ip, None).await?;
    let done = state.mfa.verify_webauthn(&tenant, &body.challenge_id, body.credential).await.map_err(mfa_error)?;
    let extra = match &done.recovery_codes {
        Some(codes) => json!({ "recovery_codes": codes }),
        None => json!({}),
    };
    Ok(with_limit_headers(signed_in(&state, &done.login, extra), limit))
}

/// POST /v1/auth/passkey/start: options for a passwordless sign-in. The sign-in limit
/// counts here: each start stores a ceremony, and each finish needs one.
async fn start_sign_in(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
) -> Result<Response, ApiError> {
    let limit = enforce(&state, Action::Login, &tenant, ip, None).await?;
    let ceremony = state.mfa.start_passkey_sign_in(&tenant).await.map_err(mfa_error)?;
    Ok(with_limit_headers(ceremony_json(StatusCode::OK, &ceremony), limit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CeremonyCredential {
    ceremony_id: String,
    credential: Value,
}

/// POST /v1/auth/passkey/finish `{"ceremony_id","credential"}`: signs in with the passkey.
async fn finish_sign_in(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AppJson(body): AppJson<CeremonyCredential>,
) -> Result<Response, ApiError> {
    if let Some(block) = state.auth.brute_force().blocked(&ip.to_string()).await? {
        return Err(crate::limits::blocked(&block));
    }
    let (client, device_cookie) = client_info(&state, ip, &headers);
    let done = state
        .mfa
        .finish_passkey_sign_in(&tenant, &body.ceremony_id, body.credential, client)
        .await
        .map_err(mfa_error)?;
    Ok(with_device_cookie(signed_in(&state, &done, json!({})), device_cookie))
}

/// GET /v1/me/mfa/webauthn: the caller's credentials.
async fn list(State(state): State<AppState>, caller: Caller) -> Result<AppJson<Value>, ApiError> {
    let list = state.mfa.passkeys(&caller.tenant, caller.who.user.id).await.map_err(mfa_error)?;
    Ok(AppJson(json!({ "credentials": list.iter().map(passkey_json).collect::<Vec<_>>() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

/// POST /v1/me/mfa/webauthn/start `{"name"}`: options for registering a credential.
async fn start_registration(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<NameBody>,
) -> Result<Response, ApiError> {
    let ceremony =
        state.mfa.start_passkey_registration(&caller.tenant, &caller.who.user, &body.name).await.map_err(mfa_error)?;
    Ok(ceremony_json(StatusCode::OK, &ceremony))
}

/// POST /v1/me/mfa/webauthn/finish `{"ceremony_id","credential"}`: stores the credential.
async fn finish_registration(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<CeremonyCredential>,
) -> Result<Response, ApiError> {
    let done = state
        .mfa
        .finish_passkey_registration(&caller.tenant, &caller.who.user, &body.ceremony_id, body.credential)
        .await
        .map_err(mfa_error)?;
    let mut body = json!({ "credential": passkey_json(&done.passkey) });
    if let Some(codes) = &done.recovery_codes {
        body["recovery_codes"] = json!(codes);
    }
    Ok(no_store((StatusCode::CREATED, AppJson(body)).into_response()))
}

/// PATCH /v1/me/mfa/webauthn/{id} `{"name"}`
async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<uuid::Uuid>,
    AppJson(body): AppJson<NameBody>,
) -> Result<StatusCode, ApiError> {
    state.mfa.rename_passkey(&caller.tenant, &caller.who.user, id, &body.name).await.map_err(mfa_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v1/me/mfa/webauthn/{id}
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    state.mfa.remove_passkey(&caller.tenant, &caller.who.user, id).await.map_err(mfa_error)?;
    Ok(StatusCode::NO_CONTENT)
}
