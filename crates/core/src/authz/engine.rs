//! One tenant's compiled authorization state and the decisions made with it. A
//! `TenantEngine` never changes after it is built; a change anywhere builds a new one.

// A refused request is the rare path and its issue goes straight into the answer.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request, RestrictedExpression, Schema,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::builtin::NAMESPACE;
use super::compile::{Compiled, issue_from};
use super::model::{AuthzError, AuthzState, Issue, UserFacts};
use crate::tenants::TenantId;

/// One question: may `principal` do `action` on `resource`? Entity references are
/// Cedar's JSON form (`{"type": "App::User", "id": "alice"}`) or its text form
/// (`App::User::"alice"`). Without a principal, the caller asks about themself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    #[serde(default)]
    pub principal: Option<Value>,
    pub action: Value,
    pub resource: Value,
    #[serde(default)]
    pub context: Option<Value>,
    /// Entities for this request only, in Cedar's entity JSON format.
    #[serde(default)]
    pub entities: Option<Value>,
}

/// An evaluation error of one policy (the policy is then ignored, as Cedar does).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationError {
    pub policy: String,
    pub message: String,
}

/// The answer, and why: the policies that decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub decision: &'static str,
    pub reasons: Vec<String>,
    pub errors: Vec<EvaluationError>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }
}

/// A request checked against the schema, with the entities it needs.
pub struct Prepared {
    request: Request,
    principal: EntityUid,
    extra: Option<Entities>,
}

impl Prepared {
    /// The principal, as Cedar prints it (`App::User::"alice"`).
    pub fn principal(&self) -> &EntityUid {
        &self.principal
    }
}

/// A user of guard as Cedar sees them, alone (for guard's own decisions) and joined
/// with the tenant's stored entities (for applications' decisions).
pub struct UserEntry {
    alone: Entities,
    with_stored: Entities,
}

/// The type of guard's users in Cedar.
pub fn user_type() -> String {
    format!("{NAMESPACE}::User")
}

/// `Guard::User::"<id>"`.
pub fn user_uid(id: Uuid) -> Result<EntityUid, AuthzError> {
    let type_name = EntityTypeName::from_str(&user_type()).map_err(|e| AuthzError::BadRequest(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(type_name, EntityId::new(id.to_string())))
}

fn guard_uid(kind: &str, id: &str) -> Result<EntityUid, AuthzError> {
    let type_name =
        EntityTypeName::from_str(&format!("{NAMESPACE}::{kind}")).map_err(|e| AuthzError::BadRequest(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(type_name, EntityId::new(id)))
}

/// Reads an entity reference in either of Cedar's forms.
pub fn parse_uid(field: &str, value: &Value) -> Result<EntityUid, Issue> {
    let parsed = match value {
        Value::String(text) => EntityUid::from_str(text).map_err(|e| issue_from("request", &e, Some(text))),
        other => EntityUid::from_json(other.clone()).map_err(|e| issue_from("request", &e, None)),
    };
    parsed.map_err(|mut issue| {
        issue.message = format!("{field}: {}", issue.message);
        issue.help.get_or_insert_with(|| {
            "write an entity as {\"type\": \"App::User\", \"id\": \"alice\"} or App::User::\"alice\"".to_owned()
        });
        issue
    })
}

/// An entity reference as Cedar prints it (`App::User::"alice"`), or the JSON as
/// sent when it is not one.
pub fn uid_text(value: &Value) -> String {
    parse_uid("", value).map_or_else(|_| value.to_string(), |uid| uid.to_string())
}

fn in_guard_namespace(uid: &EntityUid) -> bool {
    uid.type_name().namespace() == NAMESPACE
}

/// A tenant's policies, schema and stored entities, ready to decide.
pub struct TenantEngine {
    pub tenant: TenantId,
    pub state: AuthzState,
    pub policies: PolicySet,
    pub admin: PolicySet,
    pub schema: Option<Schema>,
    pub entities: Entities,
    pub policy_count: usize,
    pub entity_count: usize,
    users: quick_cache::sync::Cache<Uuid, Arc<UserEntry>>,
}

impl TenantEngine {
    /// Builds the engine from a compiled snapshot and the stored entities (Cedar
    /// entity JSON). Entities that no longer fit the schema are loaded without it and
    /// reported, so a schema change cannot stop a tenant's decisions.
    pub fn new(
        tenant: TenantId,
        state: AuthzState,
        compiled: Compiled,
        stored: Vec<Value>,
        user_cache_size: usize,
    ) -> Result<TenantEngine, AuthzError> {
        let entity_count = stored.len();
        let json = Value::Array(stored);
        let entities = match Entities::from_json_value(json.clone(), compiled.schema.as_ref()) {
            Ok(entities) => entities,
            Err(error) => {
                tracing::warn!(tenant = %tenant.0, %error, "stored entities do not fit the schema; loaded without it");
                Entities::from_json_value(json, None).map_err(|e| {
                    AuthzError::invalid("the stored entities do not load", vec![issue_from("entity", &e, None)])
                })?
            }
        };
        Ok(TenantEngine {
            tenant,
            state,
            policy_count: compiled.policies.policies().count(),
            policies: compiled.policies,
            admin: compiled.admin,
            schema: compiled.schema,
            entities,
            entity_count,
            users: quick_cache::sync::Cache::new(user_cache_size.max(16)),
        })
    }

    /// The user `id` if already loaded into this engine.
    pub fn cached_user(&self, id: Uuid) -> Option<Arc<UserEntry>> {
        self.users.get(&id)
    }

    /// Brings a user into this engine: `Guard::User` with its roles and groups as
    /// parents.
    pub fn add_user(&self, facts: &UserFacts) -> Result<Arc<UserEntry>, AuthzError> {
        let mut attrs = HashMap::new();
        attrs.insert("email".to_owned(), RestrictedExpression::new_string(facts.email.clone()));
        if let Some(username) = &facts.username {
            attrs.insert("username".to_owned(), RestrictedExpression::new_string(username.clone()));
        }
        attrs.insert("status".to_owned(), RestrictedExpression::new_string(facts.status.clone()));
        let mut parents = HashSet::new();
        for role in &facts.roles {
            parents.insert(guard_uid("Role", role)?);
        }
        for group in &facts.groups {
            parents.insert(guard_uid("Group", group)?);
        }
        let entity = Entity::new(user_uid(facts.id)?, attrs, parents)
            .map_err(|e| AuthzError::BadRequest(format!("user {}: {e}", facts.id)))?;
        let invalid = |e: cedar_policy::entities_errors::EntitiesError| {
            AuthzError::invalid("the user does not load", vec![issue_from("entity", &e, None)])
        };
        let alone = Entities::from_entities([entity.clone()], None).map_err(invalid)?;
        let with_stored = self.entities.clone().add_entities([entity], None).map_err(invalid)?;
        let entry = Arc::new(UserEntry { alone, with_stored });
        self.users.insert(facts.id, entry.clone());
        Ok(entry)
    }

    /// Checks a request against the schema (when there is one) and reads its context
    /// and entities. `caller` stands in for a missing principal.
    pub fn prepare(&self, input: &DecisionInput, caller: Option<Uuid>) -> Result<Prepared, Issue> {
        let principal = match (&input.principal, caller) {
            (Some(value), _) => parse_uid("principal", value)?,
            (None, Some(id)) => user_uid(id).map_err(|e| Issue::new("request", e.to_string()))?,
            (None, None) => return Err(Issue::new("request", "principal: missing, and there is no signed-in caller")),
        };
        let action = parse_uid("action", &input.action)?;
        let resource = parse_uid("resource", &input.resource)?;
        let context = match &input.context {
            None | Some(Value::Null) => Context::empty(),
            Some(value) => Context::from_json_value(value.clone(), self.schema.as_ref().map(|s| (s, &action)))
                .map_err(|e| {
                    let mut issue = issue_from("request", &e, None);
                    issue.message = format!("context: {}", issue.message);
                    issue
                })?,
        };
        let extra = match &input.entities {
            None | Some(Value::Null) => None,
            Some(value) => {
                let entities = Entities::from_json_value(value.clone(), self.schema.as_ref())
                    .map_err(|e| issue_from("entity", &e, None))?;
                if let Some(guard) =
                    entities.iter().find(|e| in_guard_namespace(&e.uid()) && e.uid().type_name().basename() != "Action")
                {
                    return Err(Issue::new(
                        "entity",
                        format!(
                            "{} belongs to guard; its users, groups and roles are added by guard itself",
                            guard.uid()
                        ),
                    )
                    .entity(guard.uid().to_string()));
                }
                Some(entities)
            }
        };
        let request = Request::new(principal.clone(), action, resource, context, self.schema.as_ref())
            .map_err(|e| issue_from("request", &e, None))?;
        Ok(Prepared { request, principal, extra })
    }

    /// Decides a prepared request with the tenant's policies. `user` is the loaded
    /// principal when it is one of guard's users. Cedar's evaluation cannot be
    /// interrupted, so the time limit is applied to its result: a decision that took
    /// longer than `limit` is a deny with an error saying so.
    pub fn decide(&self, prepared: &Prepared, user: Option<&UserEntry>, limit: Duration) -> Result<Decision, Issue> {
        let base = user.map_or(&self.entities, |u| &u.with_stored);
        let started = Instant::now();
        let merged;
        let entities = match &prepared.extra {
            None => base,
            Some(extra) => {
                merged = base
                    .clone()
                    .add_entities(extra.iter().cloned(), None)
                    .map_err(|e| issue_from("entity", &e, None))?;
                &merged
            }
        };
        let response = Authorizer::new().is_authorized(&prepared.request, &self.policies, entities);
        Ok(answer(response, started.elapsed(), limit))
    }

    /// Decides one of guard's own actions for a user, with the built-in policies and
    /// the tenant's policies on guard's actions.
    pub fn decide_admin(&self, user: &UserEntry, user_id: Uuid, action: &str) -> Result<Decision, AuthzError> {
        let principal = user_uid(user_id)?;
        let action = guard_uid("Action", action)?;
        let resource = guard_uid("Tenant", &self.tenant.0.to_string())?;
        let request = Request::new(principal, action, resource, Context::empty(), None)
            .map_err(|e| AuthzError::BadRequest(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.admin, &user.alone);
        Ok(answer(response, Duration::ZERO, Duration::MAX))
    }
}

fn answer(response: cedar_policy::Response, elapsed: Duration, limit: Duration) -> Decision {
    let mut errors: Vec<EvaluationError> = response
        .diagnostics()
        .errors()
        .map(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                EvaluationError { policy: e.policy_id().to_string(), message: e.inner().to_string() }
            }
        })
        .collect();
    let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    reasons.sort();
    let mut allowed = response.decision() == CedarDecision::Allow;
    if elapsed > limit {
        allowed = false;
        errors.push(EvaluationError {
            policy: String::new(),
            message: format!(
                "evaluation took {} µs, more than the limit of {} µs; denied",
                elapsed.as_micros(),
                limit.as_micros()
            ),
        });
    }
    Decision { decision: if allowed { "allow" } else { "deny" }, reasons, errors }
}
