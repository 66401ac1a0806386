//! `ApiError`: the one error type handlers return, rendered as an RFC 9457 problem
//! document with a stable `code` and the request id. Internal detail is logged under
//! the request id and never sent.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use guard_core::store::StoreError;
use guard_proto::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
use serde_json::Value;

tokio::task_local! {
    /// The id of the request being served, so errors built deep in a handler can name
    /// it without threading it through every call.
    pub(crate) static REQUEST_ID: String;
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    problem: Problem,
    /// Logged, never sent.
    internal: Option<String>,
    /// Sent with the problem (Retry-After, RateLimit-*).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with `code` and no detail.
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError { problem: Problem::new(code), internal: None, headers: Vec::new() }
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Sets the explanation sent to the client; it must not contain internal detail.
    pub fn detail(mut self, detail: impl Into<String>) -> ApiError {
        self.problem = self.problem.with_detail(detail);
        self
    }

    /// Adds an extension member to the problem document.
    pub fn extension(mut self, key: &str, value: Value) -> ApiError {
        self.problem = self.problem.with_extension(key, value);
        self
    }

    /// A 500 whose cause is logged with the request id and not sent.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError {
            problem: Problem::new(ErrorCode::InternalError),
            internal: Some(cause.to_string()),
            headers: Vec::new(),
        }
    }

    /// The problem document this error renders.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(reason) => ApiError::new(ErrorCode::DatabaseUnavailable).detail(reason),
            StoreError::Conflict(_) => ApiError::new(ErrorCode::Conflict),
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound),
            StoreError::InvalidData(reason) => {
                // The database's words name no secret, but they are its words: logged, not sent.
                tracing::info!(reason = %reason, "the database refused a value in the request");
                ApiError::new(ErrorCode::BadRequest)
                    .detail("a value in the request is not valid data (a control character in text, for example)")
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(error = %cause, "internal error");
        }
        let mut response = problem_response(self.problem, current_request_id());
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// The id of the request being served, when called inside one.
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Renders `problem` with its status and media type.
pub(crate) fn problem_response(mut problem: Problem, request_id: Option<String>) -> Response {
    problem.request_id = request_id;
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    response
}

/// The fallback for paths no route matches.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    let mut path = uri.path().to_owned();
    if path.len() > 200 {
        let mut cut = 200;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push('…');
    }
    ApiError::new(ErrorCode::NotFound).detail(format!("no route matches {path}"))
}

/// The code for a bare error status produced outside guard's handlers (axum's 405,
/// for example), so it can be re-sent as a problem.
pub(crate) fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::NotReady,
        s if s.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::InternalError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_stable_codes() {
        let cases = [
            (StoreError::Unavailable("down".into()), "database_unavailable", 503),
            (StoreError::Conflict("dup".into()), "conflict", 409),
            (StoreError::NotFound, "not_found", 404),
            (StoreError::InvalidData("secret detail".into()), "bad_request", 400),
            (StoreError::Internal("secret detail".into()), "internal_error", 500),
            (StoreError::SchemaTooNew { applied: 9, known: 2 }, "internal_error", 500),
        ];
        for (err, code, status) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.problem().code, code);
            assert_eq!(api.problem().status, status);
            assert!(api.problem().detail.as_deref().is_none_or(|d| !d.contains("secret")));
        }
    }

    #[test]
    fn bare_statuses_map_to_codes_with_the_same_status() {
        for status in [404, 405, 413, 415, 503, 500] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_for_status(status).status(), status.as_u16());
        }
        assert_eq!(code_for_status(StatusCode::IM_A_TEAPOT), ErrorCode::BadRequest);
    }
}
