//! Extractors whose rejections are problem documents like every other error, and
//! which refuse control characters in every string they hand on (see `input`).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guard_proto::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use crate::ApiError;
use crate::input::{control_character, control_in, control_in_json, expected_words, plain};

/// `Json<T>` whose rejections name what was wrong with the body, as problems:
/// 400 `invalid_json`, 400 `control_character`, 413 `payload_too_large` or 415
/// `unsupported_media_type`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(ErrorCode::UnsupportedMediaType)
                .detail("the request body must be sent with Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge).detail("the request body is larger than the server accepts")
            } else {
                ApiError::new(ErrorCode::BadRequest).detail("the request body could not be read")
            }
        })?;
        // Before parsing, so the refusal is the same whatever the body's shape.
        if let Some((path, c)) = control_in_json(&bytes) {
            return Err(control_character("body", &path, c));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
        deserializer.end().map_err(|e| json_syntax_error(&e))?;
        Ok(AppJson(value))
    }
}

/// `application/json`, or any `application/…+json`, with or without parameters.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

fn json_syntax_error(e: &serde_json::Error) -> ApiError {
    ApiError::new(ErrorCode::InvalidJson).detail(format!("the body is not valid JSON: {e}"))
}

/// A body that does not fit: the field's path and what was expected, in plain words.
fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return json_syntax_error(inner);
    }
    // serde_json appends the position; the path says more, so it is dropped.
    let text = inner.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let path = e.path().to_string();
    let detail = if path == "." { plain(message) } else { format!("{path}: {}", plain(message)) };
    ApiError::new(ErrorCode::InvalidJson).detail(detail)
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path<T>` whose rejection is a 400 `bad_request` problem naming the bad segment in
/// plain words, and a 400 `control_character` for a segment holding one.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            for (name, value) in &raw {
                if let Some(c) = control_in(value) {
                    return Err(control_character("path", name, c));
                }
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(AppPath(value)),
            Err(rejection) => Err(ApiError::new(ErrorCode::BadRequest).detail(path_rejection(&rejection))),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> String {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        return "the path does not fit this route".into();
    };
    match e.kind() {
        ErrorKind::ParseErrorAtKey { key, value, expected_type } => {
            format!("{key}: expected {}, found {value:?}", expected_words(expected_type))
        }
        ErrorKind::ParseErrorAtIndex { value, expected_type, .. } | ErrorKind::ParseError { value, expected_type } => {
            format!("expected {}, found {value:?}", expected_words(expected_type))
        }
        ErrorKind::InvalidUtf8InPathParam { key } => format!("{key}: not valid UTF-8"),
        ErrorKind::DeserializeError { key, message, .. } => format!("{key}: {}", plain(message)),
        _ => "the path does not fit this route".into(),
    }
}

/// `Query<T>` whose rejections are 400 problems: `invalid_parameter` naming the
/// parameter whose value is wrong, `control_character`, or `bad_request` (an unknown
/// parameter, for example).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default().as_bytes();
        for (name, value) in form_urlencoded::parse(query) {
            if let Some(c) = control_in(&name).or_else(|| control_in(&value)) {
                return Err(control_character("query", &name.replace(|c: char| c.is_control(), "?"), c));
            }
        }
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query));
        serde_path_to_error::deserialize(deserializer).map(AppQuery).map_err(|e| {
            let message = plain(&e.inner().to_string());
            let parameter = e.path().to_string();
            if let Some(rest) = message.strip_prefix("unknown field ") {
                ApiError::new(ErrorCode::BadRequest).detail(format!("unknown query parameter {rest}"))
            } else if parameter == "." {
                ApiError::new(ErrorCode::BadRequest).detail(format!("query string: {message}"))
            } else {
                ApiError::new(ErrorCode::InvalidParameter)
                    .detail(format!("{parameter}: {message}"))
                    .extension("parameter", json!(parameter))
            }
        })
    }
}

/// The text of header `name`: `None` when absent or not visible ASCII, an error (a
/// 400 `control_character` problem) when it holds a control character. hyper has
/// already refused all but tab in the raw bytes; UTF-8 C1 controls are caught here.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ControlInHeader> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    if let Some(c) = std::str::from_utf8(value.as_bytes()).ok().and_then(control_in) {
        return Err(ControlInHeader { header: name.clone(), c });
    }
    Ok(value.to_str().ok())
}

/// A control character in a header guard reads as text.
#[derive(Debug)]
pub(crate) struct ControlInHeader {
    header: HeaderName,
    c: char,
}

impl From<ControlInHeader> for ApiError {
    fn from(e: ControlInHeader) -> ApiError {
        control_character("header", e.header.as_str(), e.c)
    }
}

/// A list's `limit` parameter: absent means `DEFAULT`, otherwise a whole number from
/// 1 to `MAX`. Every list takes it the same way; anything else is a 400
/// `invalid_parameter` naming the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit<const DEFAULT: u32, const MAX: u32>(pub u32);

impl<const DEFAULT: u32, const MAX: u32> Default for PageLimit<DEFAULT, MAX> {
    fn default() -> Self {
        PageLimit(DEFAULT)
    }
}

impl<const DEFAULT: u32, const MAX: u32> PageLimit<DEFAULT, MAX> {
    /// The number of items a page holds.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The limit written as `text`, when it is a whole number in range.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<u32>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(PageLimit(n)),
            _ => Err(format!("{text:?} is not a whole number from 1 to {MAX}")),
        }
    }
}

impl<'de, const DEFAULT: u32, const MAX: u32> Deserialize<'de> for PageLimit<DEFAULT, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Query strings carry text; read it as such so every wrong value gets one message.
        let text = String::deserialize(deserializer)?;
        PageLimit::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_limit_is_a_whole_number_in_range_and_says_so_otherwise() {
        type Users = PageLimit<100, 500>;
        assert_eq!(Users::default().get(), 100);
        assert_eq!(Users::parse("1").unwrap().get(), 1);
        assert_eq!(Users::parse("500").unwrap().get(), 500);
        for bad in ["0", "501", "999999999", "99999999999999", "-1", "ten", "", "1.5"] {
            let e = Users::parse(bad).unwrap_err();
            assert!(e.contains("from 1 to 500"), "{bad}: {e}");
        }
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        let with = |ct: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(ct));
            json_content_type(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON;charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/json"));
        assert!(!with("application/jsonx"));
        assert!(!json_content_type(&HeaderMap::new()));
    }
}
