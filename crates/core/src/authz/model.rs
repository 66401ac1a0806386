//! What the policy store keeps and the errors its operations report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::StoreError;
use crate::tenants::TenantId;

/// A tenant's policies (id → Cedar text) and optional schema (Cedar schema syntax or
/// JSON), as one version holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    pub policies: BTreeMap<String, String>,
    #[serde(default)]
    pub schema: Option<String>,
}

/// One version of a tenant's policy set.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    pub tenant: TenantId,
    pub version: i64,
    pub created_at: OffsetDateTime,
    /// Who made the change (`user:<id>`, `operator`).
    pub actor: String,
    /// What the change was, in a few words (`put policy "x"`, `rollback to 3`).
    pub change: String,
    pub snapshot: PolicySnapshot,
}

/// A tenant's current policy and entity versions. Any change to either replaces the
/// compiled state processes hold for the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthzState {
    pub policy_version: i64,
    pub entity_version: i64,
}

/// One thing wrong with a policy, the schema or an entity, placed as precisely as
/// Cedar places it. Lines and columns count from 1 within the named policy's text
/// (or the schema's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// `policy`, `schema`, `entity` or `request`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The source text the position points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Issue {
    pub fn new(source: &'static str, message: impl Into<String>) -> Issue {
        Issue {
            source,
            policy: None,
            entity: None,
            message: message.into(),
            line: None,
            column: None,
            snippet: None,
            help: None,
        }
    }

    pub fn policy(mut self, id: impl Into<String>) -> Issue {
        self.policy = Some(id.into());
        self
    }

    pub fn entity(mut self, uid: impl Into<String>) -> Issue {
        self.entity = Some(uid.into());
        self
    }
}

/// What a user brings into Cedar as a `Guard::User` entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub id: Uuid,
    pub email: String,
    pub username: Option<String>,
    pub status: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

/// A named set of users of one tenant; Cedar sees it as `Guard::Group::"<name>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant: TenantId,
    pub name: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub members: u64,
}

/// A role users can hold; Cedar sees it as `Guard::Role::"<name>"`. Built-in roles
/// exist in every tenant; a tenant defines more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub builtin: bool,
}

/// Errors of the policy store and the decision engine.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// Policies, schema, entities or a request that Cedar refuses; nothing changed.
    #[error("{summary}")]
    Invalid { summary: String, issues: Vec<Issue> },
    /// Malformed input that is not Cedar's to judge (an id, a limit).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthzError {
    pub fn invalid(summary: impl Into<String>, issues: Vec<Issue>) -> AuthzError {
        AuthzError::Invalid { summary: summary.into(), issues }
    }
}

/// Policy ids are names people choose and keep in file names: letters, digits and
/// `._-`, up to 128 characters. `guard.` is reserved for built-in policies.
pub fn check_policy_id(id: &str) -> Result<(), AuthzError> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !id.starts_with('.');
    if !valid {
        return Err(AuthzError::BadRequest(format!(
            "{id:?} is not a policy id: use 1 to 128 letters, digits, '.', '_' or '-'"
        )));
    }
    if id.starts_with(crate::authz::builtin::RESERVED_ID_PREFIX) {
        return Err(AuthzError::BadRequest(format!(
            "policy ids starting with {:?} are reserved for guard's built-in policies",
            crate::authz::builtin::RESERVED_ID_PREFIX
        )));
    }
    Ok(())
}

/// Group and role names: lower-case letters, digits, `_` and `-`, 1 to 64 characters.
pub fn check_name(kind: &str, name: &str) -> Result<(), AuthzError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(AuthzError::BadRequest(format!(
            "{name:?} is not a {kind} name: use 1 to 64 lower-case letters, digits, '_' or '-'"
        )))
    }
}
