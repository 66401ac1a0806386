//! Health report shapes, as served under `/health` and read by `guard health check`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
}

/// State of one component in a health report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Up,
    Down,
    /// Not configured, so nothing to check (for example Redis without REDIS_URL).
    Disabled,
}

impl ComponentStatus {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Up => "up",
            ComponentStatus::Down => "down",
            ComponentStatus::Disabled => "disabled",
        }
    }
}

/// One component's entry in `GET /health/detailed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub status: ComponentStatus,
    /// How long the check took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why the component is down, in words safe to show to any caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Component-specific facts, such as connection pool statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// The components of `GET /health/detailed`, by name. The same member appears in the
/// 200 report and in the 503 problem document, so readers handle both alike.
pub type Components = BTreeMap<String, ComponentHealth>;

/// Body of `GET /health/detailed` when every component is up or disabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetailedHealth {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub components: Components,
}
