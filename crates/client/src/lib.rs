//! A typed HTTP client for guard's API, used by the CLI and by the tests, so both
//! exercise the same wire types the server sends.

use std::time::Duration;

use guard_proto::health::{Components, DetailedHealth};
use guard_proto::{PROBLEM_CONTENT_TYPE, Problem};
use serde_json::Value;

/// Errors from talking to guard.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid base URL {0}")]
    BaseUrl(String),
    #[error("cannot reach guard at {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("guard answered {status} with a body that is not what was expected: {detail}")]
    Unexpected { status: u16, detail: String },
    #[error("guard answered {}: {}", .0.status, .0.detail.as_deref().unwrap_or(&.0.title))]
    Problem(Box<Problem>),
}

/// A client bound to one guard base URL.
#[derive(Debug, Clone)]
pub struct Client {
    base: url::Url,
    http: reqwest::Client,
}

/// `GET /health/detailed`, whether guard answered 200 or 503.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// HTTP status: 200 when everything is up, 503 when something is down.
    pub http_status: u16,
    pub version: String,
    pub uptime_seconds: u64,
    pub components: Components,
    /// Why guard is unhealthy, when it is.
    pub detail: Option<String>,
}

impl HealthReport {
    /// True when guard reported every component up or disabled.
    pub fn healthy(&self) -> bool {
        self.http_status == 200
    }
}

impl Client {
    /// A client for the guard at `base` (for example `http://127.0.0.1:8080`).
    pub fn new(base: &str, timeout: Duration) -> Result<Client, ClientError> {
        let base = url::Url::parse(base).map_err(|_| ClientError::BaseUrl(base.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::BaseUrl(base.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("guard-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport { url: base.to_string(), source: e })?;
        Ok(Client { base, http })
    }

    fn url(&self, path: &str) -> Result<url::Url, ClientError> {
        self.base.join(path).map_err(|_| ClientError::BaseUrl(format!("{}{path}", self.base)))
    }

    /// Reads the detailed health report.
    pub async fn health_detailed(&self) -> Result<HealthReport, ClientError> {
        let url = self.url("/health/detailed")?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.to_string(), source: e })?;
        let status = response.status().as_u16();
        let is_problem = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
        let body: Value =
            response.json().await.map_err(|e| ClientError::Unexpected { status, detail: e.to_string() })?;
        let unexpected = |detail: String| ClientError::Unexpected { status, detail };
        if status == 200 {
            let report: DetailedHealth = serde_json::from_value(body).map_err(|e| unexpected(e.to_string()))?;
            return Ok(HealthReport {
                http_status: status,
                version: report.version,
                uptime_seconds: report.uptime_seconds,
                components: report.components,
                detail: None,
            });
        }
        if !is_problem {
            return Err(unexpected("not a problem document".into()));
        }
        let mut problem: Problem = serde_json::from_value(body).map_err(|e| unexpected(e.to_string()))?;
        let Some(components) = problem.extensions.remove("components") else {
            return Err(ClientError::Problem(Box::new(problem)));
        };
        let components: Components = serde_json::from_value(components).map_err(|e| unexpected(e.to_string()))?;
        let text = |key: &str| problem.extensions.get(key).cloned();
        Ok(HealthReport {
            http_status: status,
            version: text("version").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            uptime_seconds: text("uptime_seconds").and_then(|v| v.as_u64()).unwrap_or_default(),
            components,
            detail: problem.detail,
        })
    }
}
