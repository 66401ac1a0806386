//! RFC 9457 problem documents and the stable `code` values guard puts in them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Media type of every error response guard sends.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Stable, machine-readable error codes. Clients match on these, so a code is never
/// renamed once released; new situations get new codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request was malformed in a way no more specific code covers.
    BadRequest,
    /// The request body was not valid JSON, or did not match the expected shape.
    InvalidJson,
    /// A query parameter is malformed or out of range; `parameter` names it.
    InvalidParameter,
    /// Text in the request (a body field, query parameter, path segment or header)
    /// holds a control character (U+0000 to U+001F, U+007F to U+009F); `source` and
    /// `name` say where. Nothing changed.
    ControlCharacter,
    /// The HTTP layer could not parse the request head (a control byte in a header
    /// field, for example); the request reached no handler.
    MalformedRequest,
    /// The request head (request line and header fields) is larger than the server
    /// accepts; the request reached no handler.
    HeadersTooLarge,
    /// The request target is longer than the HTTP layer accepts.
    UriTooLong,
    /// The request body was not sent as `application/json`.
    UnsupportedMediaType,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// No route matches the request path.
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// Handling the request took longer than the configured request timeout (sent as
    /// 503, not 408: 408 tells clients to resend, which must not happen to a request
    /// that may have had effects).
    RequestTimeout,
    /// The request conflicts with existing data (for example a duplicate key).
    Conflict,
    /// Something failed inside guard; details are in the server log under the request id.
    InternalError,
    /// The database did not answer a health query.
    DatabaseUnavailable,
    /// Redis is configured but did not answer a health query.
    RedisUnavailable,
    /// At least one component guard depends on is down.
    Unhealthy,
    /// guard cannot take traffic yet, or no longer (starting, draining, database down).
    NotReady,
    /// Sign-in refused; never says whether the email or the password was wrong.
    InvalidCredentials,
    /// No valid session or token was presented.
    Unauthenticated,
    /// A tenant-scoped request without an X-Tenant-ID header.
    TenantRequired,
    /// X-Tenant-ID names no tenant.
    TenantNotFound,
    /// X-Tenant-ID names a disabled tenant.
    TenantDisabled,
    /// The caller is signed in but may not do this (for example: not an administrator).
    Forbidden,
    /// The account must set a new password (PUT /v1/me/password) before anything else.
    PasswordChangeRequired,
    /// The new password breaks the tenant's password policy; the detail says how.
    WeakPassword,
    /// An emailed link's token is unknown, used or expired.
    InvalidToken,
    /// The refresh token is unknown, already used, or its session has ended.
    InvalidRefreshToken,
    /// The MFA challenge is unknown, expired, spent or out of tries.
    InvalidMfaChallenge,
    /// The MFA code is wrong, expired or used already.
    InvalidMfaCode,
    /// The operation needs an active second factor, or a started enrolment.
    MfaNotEnrolled,
    /// An authenticator is already active.
    MfaAlreadyEnrolled,
    /// The tenant requires MFA, so the factor cannot be removed.
    MfaRequired,
    /// The WebAuthn credential in the request is not a public key credential in JSON.
    InvalidWebauthnResponse,
    /// The WebAuthn answer did not verify (challenge, origin, signature or credential).
    WebauthnFailed,
    /// The WebAuthn ceremony is unknown, expired or finished already.
    InvalidWebauthnCeremony,
    /// The tenant's WebAuthn relying party is not configured (see its settings).
    WebauthnNotConfigured,
    /// The sign-in was refused because its risk score reached the tenant's limit.
    LoginDenied,
    /// Too many requests: the Retry-After header says when to try again.
    RateLimited,
    /// The shared rate limiter (Redis) is down and guard is set to refuse meanwhile.
    RateLimiterUnavailable,
    /// The client's address is blocked after too many failed sign-ins.
    IpBlocked,
    /// The account is locked after too many failed sign-ins, for a while.
    AccountLocked,
    /// A Cedar policy or schema was refused (syntax, or validation against the
    /// schema); `errors` lists each issue with its policy and position. Nothing changed.
    InvalidPolicy,
    /// An entity was refused (shape, or the schema); `errors` names each. Nothing changed.
    InvalidEntity,
    /// An authorization request was refused (entity reference, context, or the
    /// schema); `errors` says why. Nothing was decided.
    InvalidAuthorizationRequest,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 45] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidParameter,
        ErrorCode::ControlCharacter,
        ErrorCode::MalformedRequest,
        ErrorCode::HeadersTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::InternalError,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::RedisUnavailable,
        ErrorCode::Unhealthy,
        ErrorCode::NotReady,
        ErrorCode::InvalidCredentials,
        ErrorCode::Unauthenticated,
        ErrorCode::TenantRequired,
        ErrorCode::TenantNotFound,
        ErrorCode::TenantDisabled,
        ErrorCode::Forbidden,
        ErrorCode::PasswordChangeRequired,
        ErrorCode::WeakPassword,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidRefreshToken,
        ErrorCode::InvalidMfaChallenge,
        ErrorCode::InvalidMfaCode,
        ErrorCode::MfaNotEnrolled,
        ErrorCode::MfaAlreadyEnrolled,
        ErrorCode::MfaRequired,
        ErrorCode::InvalidWebauthnResponse,
        ErrorCode::WebauthnFailed,
        ErrorCode::InvalidWebauthnCeremony,
        ErrorCode::WebauthnNotConfigured,
        ErrorCode::LoginDenied,
        ErrorCode::RateLimited,
        ErrorCode::RateLimiterUnavailable,
        ErrorCode::IpBlocked,
        ErrorCode::AccountLocked,
        ErrorCode::InvalidPolicy,
        ErrorCode::InvalidEntity,
        ErrorCode::InvalidAuthorizationRequest,
    ];

    /// The wire form of the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::ControlCharacter => "control_character",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::RedisUnavailable => "redis_unavailable",
            ErrorCode::Unhealthy => "unhealthy",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::TenantRequired => "tenant_required",
            ErrorCode::TenantNotFound => "tenant_not_found",
            ErrorCode::TenantDisabled => "tenant_disabled",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PasswordChangeRequired => "password_change_required",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidRefreshToken => "invalid_refresh_token",
            ErrorCode::InvalidMfaChallenge => "invalid_mfa_challenge",
            ErrorCode::InvalidMfaCode => "invalid_mfa_code",
            ErrorCode::MfaNotEnrolled => "mfa_not_enrolled",
            ErrorCode::MfaAlreadyEnrolled => "mfa_already_enrolled",
            ErrorCode::MfaRequired => "mfa_required",
            ErrorCode::InvalidWebauthnResponse => "invalid_webauthn_response",
            ErrorCode::WebauthnFailed => "webauthn_failed",
            ErrorCode::InvalidWebauthnCeremony => "invalid_webauthn_ceremony",
            ErrorCode::WebauthnNotConfigured => "webauthn_not_configured",
            ErrorCode::LoginDenied => "login_denied",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RateLimiterUnavailable => "rate_limiter_unavailable",
            ErrorCode::IpBlocked => "ip_blocked",
            ErrorCode::AccountLocked => "account_locked",
            ErrorCode::InvalidPolicy => "invalid_policy",
            ErrorCode::InvalidEntity => "invalid_entity",
            ErrorCode::InvalidAuthorizationRequest => "invalid_authorization_request",
        }
    }

    /// The HTTP status the code is always sent with.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidParameter
            | ErrorCode::ControlCharacter
            | ErrorCode::MalformedRequest
            | ErrorCode::TenantRequired
            | ErrorCode::WeakPassword
            | ErrorCode::InvalidToken
            | ErrorCode::InvalidWebauthnResponse => 400,
            ErrorCode::InvalidCredentials
            | ErrorCode::Unauthenticated
            | ErrorCode::InvalidRefreshToken
            | ErrorCode::InvalidMfaChallenge
            | ErrorCode::InvalidMfaCode
            | ErrorCode::WebauthnFailed
            | ErrorCode::InvalidWebauthnCeremony => 401,
            ErrorCode::MfaNotEnrolled
            | ErrorCode::MfaAlreadyEnrolled
            | ErrorCode::MfaRequired
            | ErrorCode::WebauthnNotConfigured => 409,
            ErrorCode::TenantDisabled
            | ErrorCode::Forbidden
            | ErrorCode::PasswordChangeRequired
            | ErrorCode::LoginDenied
            | ErrorCode::IpBlocked => 403,
            ErrorCode::AccountLocked => 423,
            ErrorCode::InvalidPolicy | ErrorCode::InvalidEntity | ErrorCode::InvalidAuthorizationRequest => 422,
            ErrorCode::NotFound | ErrorCode::TenantNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::RateLimited => 429,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InternalError => 500,
            ErrorCode::RequestTimeout
            | ErrorCode::DatabaseUnavailable
            | ErrorCode::RedisUnavailable
            | ErrorCode::Unhealthy
            | ErrorCode::NotReady
            | ErrorCode::RateLimiterUnavailable => 503,
        }
    }

    /// A short, human-readable summary that does not change between occurrences.
    pub const fn title(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::InvalidJson => "Invalid JSON body",
            ErrorCode::InvalidParameter => "Invalid query parameter",
            ErrorCode::ControlCharacter => "Control character in text",
            ErrorCode::MalformedRequest => "Malformed request",
            ErrorCode::HeadersTooLarge => "Request head too large",
            ErrorCode::UriTooLong => "URI too long",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::PayloadTooLarge => "Request body too large",
            ErrorCode::NotFound => "Not found",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::RequestTimeout => "Request timed out",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::InternalError => "Internal server error",
            ErrorCode::DatabaseUnavailable => "Database unavailable",
            ErrorCode::RedisUnavailable => "Redis unavailable",
            ErrorCode::Unhealthy => "Service unhealthy",
            ErrorCode::NotReady => "Not ready",
            ErrorCode::InvalidCredentials => "Invalid credentials",
            ErrorCode::Unauthenticated => "Authentication required",
            ErrorCode::TenantRequired => "Tenant required",
            ErrorCode::TenantNotFound => "Tenant not found",
            ErrorCode::TenantDisabled => "Tenant disabled",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::PasswordChangeRequired => "Password change required",
            ErrorCode::WeakPassword => "Password not accepted",
            ErrorCode::InvalidToken => "Invalid or expired link",
            ErrorCode::InvalidRefreshToken => "Invalid refresh token",
            ErrorCode::InvalidMfaChallenge => "Invalid MFA challenge",
            ErrorCode::InvalidMfaCode => "Invalid MFA code",
            ErrorCode::MfaNotEnrolled => "No second factor",
            ErrorCode::MfaAlreadyEnrolled => "Second factor already active",
            ErrorCode::MfaRequired => "MFA required by the tenant",
            ErrorCode::InvalidWebauthnResponse => "Invalid WebAuthn response",
            ErrorCode::WebauthnFailed => "WebAuthn verification failed",
            ErrorCode::InvalidWebauthnCeremony => "Invalid WebAuthn ceremony",
            ErrorCode::WebauthnNotConfigured => "Passkeys not configured",
            ErrorCode::LoginDenied => "Sign-in refused",
            ErrorCode::RateLimited => "Too many requests",
            ErrorCode::RateLimiterUnavailable => "Rate limiter unavailable",
            ErrorCode::IpBlocked => "Address blocked",
            ErrorCode::AccountLocked => "Account locked",
            ErrorCode::InvalidPolicy => "Invalid policy",
            ErrorCode::InvalidEntity => "Invalid entity",
            ErrorCode::InvalidAuthorizationRequest => "Invalid authorization request",
        }
    }

    /// The problem `type` URI: a URN, so it names the problem without pretending to be
    /// a page someone can fetch.
    pub fn type_uri(self) -> String {
        format!("urn:guard:problem:{}", self.as_str())
    }

    /// The code whose wire form is `s`.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem document with guard's `code` and `request_id` members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Extension members specific to the problem (for example `components` on
    /// `unhealthy`).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem for `code` with no detail.
    pub fn new(code: ErrorCode) -> Problem {
        Problem {
            type_uri: code.type_uri(),
            title: code.title().to_owned(),
            status: code.status(),
            code: code.as_str().to_owned(),
            detail: None,
            request_id: None,
            extensions: Map::new(),
        }
    }

    /// Sets the occurrence-specific explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    pub fn with_extension(mut self, key: &str, value: Value) -> Problem {
        self.extensions.insert(key.to_owned(), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_unique_wire_form_that_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn status_mapping_is_pinned() {
        let expected = [
            ("bad_request", 400),
            ("invalid_json", 400),
            ("invalid_parameter", 400),
            ("control_character", 400),
            ("malformed_request", 400),
            ("headers_too_large", 431),
            ("uri_too_long", 414),
            ("unsupported_media_type", 415),
            ("payload_too_large", 413),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("request_timeout", 503),
            ("conflict", 409),
            ("internal_error", 500),
            ("database_unavailable", 503),
            ("redis_unavailable", 503),
            ("unhealthy", 503),
            ("not_ready", 503),
            ("invalid_credentials", 401),
            ("unauthenticated", 401),
            ("tenant_required", 400),
            ("tenant_not_found", 404),
            ("tenant_disabled", 403),
            ("forbidden", 403),
            ("password_change_required", 403),
            ("weak_password", 400),
            ("invalid_token", 400),
            ("invalid_refresh_token", 401),
            ("invalid_mfa_challenge", 401),
            ("invalid_mfa_code", 401),
            ("mfa_not_enrolled", 409),
            ("mfa_already_enrolled", 409),
            ("mfa_required", 409),
            ("invalid_webauthn_response", 400),
            ("webauthn_failed", 401),
            ("invalid_webauthn_ceremony", 401),
            ("webauthn_not_configured", 409),
            ("login_denied", 403),
            ("rate_limited", 429),
            ("rate_limiter_unavailable", 503),
            ("ip_blocked", 403),
            ("account_locked", 423),
            ("invalid_policy", 422),
            ("invalid_entity", 422),
            ("invalid_authorization_request", 422),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (wire, status) in expected {
            let code = ErrorCode::parse(wire).unwrap();
            assert_eq!(code.status(), status, "{wire}");
        }
    }

    #[test]
    fn problem_serialises_rfc9457_members_and_extensions_at_top_level() {
        let p = Problem::new(ErrorCode::NotFound)
            .with_detail("no route for GET /nope")
            .with_extension("path", Value::from("/nope"));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:guard:problem:not_found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["path"], "/nope");
        assert!(v.get("request_id").is_none());
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
