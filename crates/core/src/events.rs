//! Security-relevant events: what happened, to what, by whom. The audit log
//! ([`crate::audit`]) stores them.

use serde_json::Value;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// guard itself (bootstrap, scheduled jobs).
    System,
    /// An operator at the command line of the machine.
    Operator,
    /// A user, by id.
    User(uuid::Uuid),
}

impl Actor {
    /// `system`, `operator` or `user:<id>`.
    pub fn label(&self) -> String {
        match self {
            Actor::System => "system".into(),
            Actor::Operator => "operator".into(),
            Actor::User(id) => format!("user:{id}"),
        }
    }
}

/// How the action the event records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
    Error,
}

impl Outcome {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// One event: `kind` is dotted, `area.object.verb` (`tenant.created`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub tenant: Option<uuid::Uuid>,
    pub actor: Actor,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub details: Value,
}

impl Event {
    /// A successful `kind` by `actor`.
    pub fn success(kind: &'static str, actor: Actor) -> Event {
        Event { kind, tenant: None, actor, target: None, outcome: Outcome::Success, details: Value::Null }
    }

    /// Sets the tenant the event belongs to.
    pub fn tenant(mut self, tenant: uuid::Uuid) -> Event {
        self.tenant = Some(tenant);
        self
    }

    /// Sets what the event acted on.
    pub fn target(mut self, target: impl Into<String>) -> Event {
        self.target = Some(target.into());
        self
    }

    /// Sets how the action ended.
    pub fn outcome(mut self, outcome: Outcome) -> Event {
        self.outcome = outcome;
        self
    }

    /// Adds structured details.
    pub fn details(mut self, details: Value) -> Event {
        self.details = details;
        self
    }
}

/// Receives events that record no change of their own (a change's event is handed to
/// the store with the change, see [`crate::audit::AuditLog::record`]).
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Records `event`; never fails the action that caused it.
    async fn emit(&self, event: Event);
}
