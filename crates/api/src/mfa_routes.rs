//! Second factors: the second step of a sign-in, the caller's own TOTP enrolment and
//! recovery codes, and the administrator's reset.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use guard_core::mfa::{MfaError, SecondStep, TotpEnrollment};
use guard_core::ratelimit::Action;
use guard_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth_routes::{auth_error, no_store, signed_in, time};
use crate::extract::{AppJson, AppPath};
use crate::limits::{ClientIp, enforce, with_limit_headers};
use crate::tenancy::{Caller, CurrentTenant, TenantAdmin};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/mfa/verify", post(verify))
        .route("/v1/auth/mfa/totp", post(enroll_during_login))
        .route("/v1/me/mfa", get(status))
        .route("/v1/me/mfa/totp", post(start_totp).delete(remove_totp))
        .route("/v1/me/mfa/totp/confirm", post(confirm_totp))
        .route("/v1/me/mfa/recovery-codes", post(regenerate_recovery_codes))
        .route("/v1/users/{user}/mfa", delete(reset))
}

pub(crate) fn mfa_error(e: MfaError) -> ApiError {
    let detail = e.to_string();
    match e {
        MfaError::InvalidChallenge => ApiError::new(ErrorCode::InvalidMfaChallenge).detail(detail),
        MfaError::InvalidCode => ApiError::new(ErrorCode::InvalidMfaCode).detail(detail),
        MfaError::NotEnrolled | MfaError::NoPendingEnrollment => {
            ApiError::new(ErrorCode::MfaNotEnrolled).detail(detail)
        }
        MfaError::AlreadyEnrolled => ApiError::new(ErrorCode::MfaAlreadyEnrolled).detail(detail),
        MfaError::Required => ApiError::new(ErrorCode::MfaRequired).detail(detail),
        MfaError::Invalid(_) => ApiError::new(ErrorCode::BadRequest).detail(detail),
        MfaError::MalformedCredential(_) => ApiError::new(ErrorCode::InvalidWebauthnResponse).detail(detail),
        MfaError::WebauthnRejected(_) => ApiError::new(ErrorCode::WebauthnFailed).detail(detail),
        MfaError::InvalidCeremony => ApiError::new(ErrorCode::InvalidWebauthnCeremony).detail(detail),
        MfaError::WebauthnNotConfigured(_) => ApiError::new(ErrorCode::WebauthnNotConfigured).detail(detail),
        MfaError::CredentialRegistered => ApiError::new(ErrorCode::Conflict).detail(detail),
        MfaError::NoSuchPasskey => ApiError::new(ErrorCode::NotFound).detail(detail),
        MfaError::Auth(e) => auth_error(e),
        MfaError::Store(e) => ApiError::from(e),
        MfaError::Internal(e) => ApiError::internal(e),
    }
}

fn enrollment_json(e: &TotpEnrollment) -> Response {
    no_store(
        (
            StatusCode::CREATED,
            AppJson(json!({ "secret": e.secret, "otpauth_uri": e.uri, "qr_svg": e.qr_svg, "digits": 6, "period": 30 })),
        )
            .into_response(),
    )
}

fn codes_json(codes: &[String]) -> Response {
    no_store(AppJson(json!({ "recovery_codes": codes })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    challenge_id: String,
    code: String,
}

/// POST /v1/auth/mfa/verify `{"challenge_id","code"}`: completes a sign-in.
async fn verify(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let limit = enforce(&state, Action::MfaVerify, &tenant, ip, None).await?;
    let done = match state.mfa.verify(&tenant, &body.challenge_id, &body.code).await.map_err(mfa_error)? {
        SecondStep::Done(done) => done,
        SecondStep::Enrol(pending) => {
            let body = crate::auth_routes::pending_json(&pending);
            return Ok(with_limit_headers(no_store((StatusCode::ACCEPTED, AppJson(body)).into_response()), limit));
        }
    };
    let extra = match &done.recovery_codes {
        Some(codes) => json!({ "recovery_codes": codes }),
        None => json!({}),
    };
    Ok(with_limit_headers(signed_in(&state, &done.login, extra), limit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeBody {
    challenge_id: String,
}

/// POST /v1/auth/mfa/totp `{"challenge_id"}`: starts the enrolment a sign-in requires.
async fn enroll_during_login(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    AppJson(body): AppJson<ChallengeBody>,
) -> Result<Response, ApiError> {
    let enrollment = state.mfa.start_totp_for_challenge(&tenant, &body.challenge_id).await.map_err(mfa_error)?;
    Ok(enrollment_json(&enrollment))
}

/// GET /v1/me/mfa
async fn status(State(state): State<AppState>, caller: Caller) -> Result<AppJson<Value>, ApiError> {
    let s = state.mfa.status(&caller.tenant, &caller.who.user).await.map_err(mfa_error)?;
    Ok(AppJson(json!({
        "required": s.required,
        "totp": { "active": s.totp_active, "pending": s.totp_pending, "confirmed_at": s.totp_confirmed_at.as_ref().map(time) },
        "webauthn": { "credentials": s.webauthn_credentials },
        "recovery_codes_left": s.recovery_codes_left,
    })))
}

/// POST /v1/me/mfa/totp: starts an enrolment (secret, otpauth URI, QR code).
async fn start_totp(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let enrollment = state.mfa.start_totp(&caller.tenant, &caller.who.user).await.map_err(mfa_error)?;
    Ok(enrollment_json(&enrollment))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

/// POST /v1/me/mfa/totp/confirm `{"code"}`: activates it; the recovery codes.
async fn confirm_totp(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<CodeBody>,
) -> Result<Response, ApiError> {
    let codes = state.mfa.confirm_totp(&caller.tenant, &caller.who.user, &body.code).await.map_err(mfa_error)?;
    Ok(codes_json(&codes))
}

/// DELETE /v1/me/mfa/totp `{"code"}`: removes it, proven with a current code.
async fn remove_totp(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<CodeBody>,
) -> Result<StatusCode, ApiError> {
    state.mfa.remove_totp(&caller.tenant, &caller.who.user, &body.code).await.map_err(mfa_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /v1/me/mfa/recovery-codes: a new set; the old one stops working.
async fn regenerate_recovery_codes(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let codes = state.mfa.regenerate_recovery_codes(&caller.tenant, &caller.who.user).await.map_err(mfa_error)?;
    Ok(codes_json(&codes))
}

/// DELETE /v1/users/{user}/mfa (id or email): removes every factor of the user.
async fn reset(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<Value>, ApiError> {
    let user = state.users.find(&caller.tenant.id.to_string(), &user).await.map_err(crate::admin_routes::user_error)?;
    crate::tenancy::require_control(&state, &caller, &user).await?;
    let removed =
        state.mfa.reset(crate::admin_routes::actor(&caller), &caller.tenant, user.id).await.map_err(mfa_error)?;
    Ok(AppJson(json!({ "reset": true, "factors_removed": removed })))
}
