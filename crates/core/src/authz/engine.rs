//! One tenant's compiled authorization state and the decisions made with it. A
//! `TenantEngine` never changes after it is built; a change anywhere builds a new one.

// A refused request is the rare path and its issue goes straight into the answer.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicySet, PrincipalConstraint, Request, ResourceConstraint, RestrictedExpression, Schema,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::builtin::NAMESPACE;
use super::compile::{Compiled, issue_from};
use super::model::{AuthzError, AuthzState, Issue, UserFacts};
use super::slice::{LoadedEntity, Reach, SliceBuilder, entity_refs};
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

/// A request checked against the schema, with the entities it sent and the ones its
/// context names.
pub struct Prepared {
    request: Request,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    sent: Vec<Arc<LoadedEntity>>,
    context_refs: Vec<EntityUid>,
}

/// A scope constraint on the principal or the resource, for slicing.
enum Scope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl Scope {
    fn of_principal(c: PrincipalConstraint) -> Scope {
        match c {
            PrincipalConstraint::Any => Scope::Any,
            PrincipalConstraint::Eq(u) => Scope::Eq(u),
            PrincipalConstraint::In(u) => Scope::In(u),
            PrincipalConstraint::Is(t) => Scope::Is(t),
            PrincipalConstraint::IsIn(t, u) => Scope::IsIn(t, u),
        }
    }

    fn of_resource(c: ResourceConstraint) -> Scope {
        match c {
            ResourceConstraint::Any => Scope::Any,
            ResourceConstraint::Eq(u) => Scope::Eq(u),
            ResourceConstraint::In(u) => Scope::In(u),
            ResourceConstraint::Is(t) => Scope::Is(t),
            ResourceConstraint::IsIn(t, u) => Scope::IsIn(t, u),
        }
    }

    /// Whether the scope can hold for `uid`, whose ancestors are `ancestors`; the
    /// same test Cedar makes (`in` is equality or ancestry).
    fn admits(&self, uid: &EntityUid, ancestors: &[&EntityUid]) -> bool {
        let within = |x: &EntityUid| x == uid || ancestors.contains(&x);
        match self {
            Scope::Any => true,
            Scope::Eq(x) => x == uid,
            Scope::In(x) => within(x),
            Scope::Is(t) => uid.type_name() == t,
            Scope::IsIn(t, x) => uid.type_name() == t && within(x),
        }
    }
}

/// A policy's scope, kept beside it so that a request evaluates only the policies
/// whose scope can hold for it. A policy whose scope is false is neither satisfied
/// nor in error, so leaving it out changes neither the decision nor its reasons.
struct Sliced {
    principal: Scope,
    action: ActionConstraint,
    resource: Scope,
    policy: Policy,
}

impl Sliced {
    fn new(policy: &Policy) -> Sliced {
        Sliced {
            principal: Scope::of_principal(policy.principal_constraint()),
            action: policy.action_constraint(),
            resource: Scope::of_resource(policy.resource_constraint()),
            policy: policy.clone(),
        }
    }

    fn admits_action(&self, action: &EntityUid, ancestors: &[&EntityUid]) -> bool {
        let within = |x: &EntityUid| x == action || ancestors.contains(&x);
        match &self.action {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(x) => x == action,
            ActionConstraint::In(xs) => xs.iter().any(within),
        }
    }
}

impl Prepared {
    /// The principal, as Cedar prints it (`App::User::"alice"`).
    pub fn principal(&self) -> &EntityUid {
        &self.principal
    }
}

/// A user of guard as Cedar sees them: alone (for guard's own decisions), and as
/// one entity of an application's decision.
pub struct UserEntry {
    alone: Entities,
    loaded: Arc<LoadedEntity>,
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
    // The common form, {"type": T, "id": I}, without Cedar's general JSON parser
    // (which tries each form it knows in turn).
    if let Value::Object(map) = value
        && map.len() == 2
        && let (Some(Value::String(kind)), Some(Value::String(id))) = (map.get("type"), map.get("id"))
        && let Ok(type_name) = EntityTypeName::from_str(kind)
    {
        return Ok(EntityUid::from_type_name_and_id(type_name, EntityId::new(id)));
    }
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

/// A context value read without Cedar's JSON parser: a boolean or an integer.
/// Anything else (strings, which a schema may read as IP addresses or decimals,
/// records, sets, entities) goes through the parser.
fn plain_value(value: &Value) -> Option<RestrictedExpression> {
    match value {
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        _ => None,
    }
}

fn plain_context(map: &serde_json::Map<String, Value>) -> bool {
    map.values().all(|v| plain_value(v).is_some())
}

/// An entity reference as Cedar prints it (`App::User::"alice"`), or the JSON as
/// sent when it is not one.
pub fn uid_text(value: &Value) -> String {
    parse_uid("", value).map_or_else(|_| value.to_string(), |uid| uid.to_string())
}

fn in_guard_namespace(uid: &EntityUid) -> bool {
    uid.type_name().namespace() == NAMESPACE
}

/// A tenant's compiled policies and schema, ready to decide; the entities each
/// decision needs are loaded for it (see [`super::slice`]).
pub struct TenantEngine {
    pub tenant: TenantId,
    /// The policy version this engine was built from.
    pub policy_version: i64,
    /// The newest entity version this process knows of; entity changes move it
    /// without rebuilding the engine.
    entity_version: AtomicI64,
    pub policies: PolicySet,
    pub admin: PolicySet,
    pub schema: Option<Schema>,
    /// The schema's actions with their groups (empty without a schema).
    pub actions: Entities,
    pub policy_count: usize,
    reach: Reach,
    users: quick_cache::sync::Cache<(i64, Uuid), Arc<UserEntry>>,
    sliced: Vec<Sliced>,
    /// Policy sets by the policies they hold (indexes into `sliced`).
    slices: quick_cache::sync::Cache<Vec<u32>, Arc<PolicySet>>,
}

impl TenantEngine {
    /// Builds the engine from a compiled snapshot at `state`.
    pub fn new(
        tenant: TenantId,
        state: AuthzState,
        compiled: Compiled,
        user_cache_size: usize,
    ) -> Result<TenantEngine, AuthzError> {
        let actions = match &compiled.schema {
            Some(schema) => schema.action_entities().unwrap_or_else(|error| {
                tracing::error!(tenant = %tenant.0, %error, "the schema's actions do not load; deciding without them");
                Entities::empty()
            }),
            None => Entities::empty(),
        };
        let sliced = compiled.policies.policies().map(Sliced::new).collect();
        Ok(TenantEngine {
            tenant,
            policy_version: state.policy_version,
            entity_version: AtomicI64::new(state.entity_version),
            sliced,
            slices: quick_cache::sync::Cache::new(4096),
            policy_count: compiled.policies.policies().count(),
            reach: Reach::of(&compiled.policies),
            policies: compiled.policies,
            admin: compiled.admin,
            schema: compiled.schema,
            actions,
            users: quick_cache::sync::Cache::new(user_cache_size.max(16)),
        })
    }

    /// The versions this engine decides at.
    pub fn state(&self) -> AuthzState {
        AuthzState { policy_version: self.policy_version, entity_version: self.entity_version.load(Ordering::Acquire) }
    }

    /// Moves the entity version forward (never back): what was loaded at an older
    /// one is no longer used.
    pub fn entities_at(&self, version: i64) {
        self.entity_version.fetch_max(version, Ordering::AcqRel);
    }

    /// How deep conditions look into entities (see [`super::slice`]).
    pub fn depth(&self) -> usize {
        self.reach.depth
    }

    /// The user `id` if already loaded into this engine.
    pub fn cached_user(&self, id: Uuid) -> Option<Arc<UserEntry>> {
        self.users.get(&(self.state().entity_version, id))
    }

    /// Brings a user into this engine: `Guard::User` with its roles and groups as
    /// parents.
    pub fn add_user(&self, facts: &UserFacts) -> Result<Arc<UserEntry>, AuthzError> {
        let entry = Arc::new(self.user_entry(facts)?);
        self.users.insert((self.state().entity_version, facts.id), entry.clone());
        Ok(entry)
    }

    /// A user as Cedar would see it, without keeping it in this engine.
    pub fn user_entry(&self, facts: &UserFacts) -> Result<UserEntry, AuthzError> {
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
        let loaded =
            Arc::new(LoadedEntity::new(entity).map_err(|i| AuthzError::invalid("the user does not load", vec![i]))?);
        Ok(UserEntry { alone, loaded })
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
        let context_issue = |e: &dyn miette::Diagnostic| {
            let mut issue = issue_from("request", e, None);
            issue.message = format!("context: {}", issue.message);
            issue
        };
        let context = match &input.context {
            None | Some(Value::Null) => Context::empty(),
            // Request::new checks these against the schema like any other context.
            Some(Value::Object(map)) if plain_context(map) => {
                Context::from_pairs(map.iter().filter_map(|(k, v)| Some((k.clone(), plain_value(v)?))))
                    .map_err(|e| context_issue(&e))?
            }
            Some(value) => Context::from_json_value(value.clone(), self.schema.as_ref().map(|s| (s, &action)))
                .map_err(|e| context_issue(&e))?,
        };
        let mut context_refs = Vec::new();
        if let Some(context) = &input.context {
            entity_refs(context, true, &mut context_refs);
        }
        let sent = match &input.entities {
            None | Some(Value::Null) => Vec::new(),
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
                let actions = &self.actions;
                let mut sent = Vec::new();
                for entity in entities.iter().filter(|e| actions.get(&e.uid()).is_none()) {
                    sent.push(Arc::new(LoadedEntity::new(entity.clone())?));
                }
                sent
            }
        };
        let request = Request::new(principal.clone(), action.clone(), resource.clone(), context, self.schema.as_ref())
            .map_err(|e| issue_from("request", &e, None))?;
        Ok(Prepared { request, principal, action, resource, sent, context_refs })
    }

    /// Starts gathering the entities `prepared` needs; `user` is the loaded principal
    /// when it is one of guard's users.
    pub fn slice_builder(&self, prepared: &Prepared, user: Option<&UserEntry>) -> SliceBuilder<'_> {
        let roots = [prepared.principal.clone(), prepared.action.clone(), prepared.resource.clone()]
            .into_iter()
            .chain(prepared.context_refs.iter().cloned())
            .chain(self.reach.literals.iter().cloned());
        SliceBuilder::new(self.reach.depth, &self.actions, user.map(|u| u.loaded.clone()), prepared.sent.clone(), roots)
    }

    /// The entities `prepared` needs, read through `lookup` (a stored entity, or
    /// `None`): for tests and in-process measurements; the service reads the store.
    pub fn slice_with(
        &self,
        prepared: &Prepared,
        user: Option<&UserEntry>,
        mut lookup: impl FnMut(&EntityUid) -> Option<Arc<LoadedEntity>>,
    ) -> Result<Entities, Issue> {
        let mut builder = self.slice_builder(prepared, user);
        loop {
            let wanted = builder.wanted();
            if wanted.is_empty() {
                return builder.finish();
            }
            for uid in wanted {
                let found = lookup(&uid);
                builder.supply(uid, found);
            }
        }
    }

    /// Decides a prepared request with the tenant's policies over `entities` (its
    /// slice). Cedar's evaluation cannot be interrupted, so the time limit is applied
    /// to its result: a decision that took longer than `limit` is a deny with an
    /// error saying so.
    pub fn decide(&self, prepared: &Prepared, entities: &Entities, limit: Duration) -> Decision {
        let started = Instant::now();
        let policies = self.slice(prepared, entities);
        let response = Authorizer::new().is_authorized(&prepared.request, &policies, entities);
        answer(response, started.elapsed(), limit)
    }

    /// The policies whose scope can hold for this request.
    fn slice(&self, prepared: &Prepared, entities: &Entities) -> Arc<PolicySet> {
        let ancestors =
            |uid: &EntityUid| -> Vec<&EntityUid> { entities.ancestors(uid).map(Iterator::collect).unwrap_or_default() };
        let (p, a, r) = (ancestors(&prepared.principal), ancestors(&prepared.action), ancestors(&prepared.resource));
        let chosen: Vec<u32> = self
            .sliced
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.admits_action(&prepared.action, &a)
                    && s.principal.admits(&prepared.principal, &p)
                    && s.resource.admits(&prepared.resource, &r)
            })
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        if let Some(set) = self.slices.get(&chosen) {
            return set;
        }
        let policies = chosen.iter().filter_map(|&i| self.sliced.get(i as usize)).map(|s| s.policy.clone());
        // Ids are unique in the tenant's set, so building a part of it cannot fail.
        let set = Arc::new(PolicySet::from_policies(policies).unwrap_or_else(|_| self.policies.clone()));
        self.slices.insert(chosen, set.clone());
        set
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authz::compile::compile;
    use crate::authz::model::PolicySnapshot;

    const SCHEMA: &str = r#"namespace T {
      entity Team;
      entity User in [Team] { level: Long };
      entity Folder in [Folder];
      entity Doc in [Folder] { owner: User, level: Long };
      action read, edit appliesTo { principal: [User], resource: [Doc], context: { mfa: Bool } };
      action all appliesTo { principal: [User], resource: [Doc], context: { mfa: Bool } };
    }"#;

    type Stored = HashMap<EntityUid, Arc<LoadedEntity>>;

    fn engine() -> Option<(TenantEngine, Entities, Stored)> {
        let mut snapshot = PolicySnapshot { schema: Some(SCHEMA.into()), ..Default::default() };
        let policies = [
            "permit(principal in T::Team::\"a\", action == T::Action::\"read\", resource in T::Folder::\"root\");",
            "permit(principal == T::User::\"u1\", action, resource);",
            "permit(principal, action in [T::Action::\"read\", T::Action::\"edit\"], resource) when { resource.owner == principal };",
            "forbid(principal, action == T::Action::\"edit\", resource in T::Folder::\"locked\") unless { context.mfa };",
            "permit(principal is T::User in T::Team::\"b\", action, resource is T::Doc in T::Folder::\"sub\");",
            "permit(principal, action, resource) when { principal.level > resource.level };",
            "forbid(principal, action == T::Action::\"read\", resource == T::Doc::\"d3\");",
            // Looks into the owner, an entity named by an attribute, and its team.
            "permit(principal, action == T::Action::\"edit\", resource) when { resource.owner.level > principal.level };",
            "forbid(principal, action == T::Action::\"all\", resource) when { resource.owner in T::Team::\"b\" && principal.level < 2 };",
        ];
        for (n, text) in policies.iter().enumerate() {
            snapshot.policies.insert(format!("p{n}"), (*text).to_owned());
        }
        let mut entities = vec![
            json!({"uid": {"type": "T::Team", "id": "a"}, "attrs": {}, "parents": []}),
            json!({"uid": {"type": "T::Team", "id": "b"}, "attrs": {}, "parents": []}),
            json!({"uid": {"type": "T::Folder", "id": "root"}, "attrs": {}, "parents": []}),
            json!({"uid": {"type": "T::Folder", "id": "sub"}, "attrs": {}, "parents": [{"type": "T::Folder", "id": "root"}]}),
            json!({"uid": {"type": "T::Folder", "id": "locked"}, "attrs": {}, "parents": []}),
        ];
        for u in 0..6 {
            let team = if u % 2 == 0 { "a" } else { "b" };
            entities.push(json!({"uid": {"type": "T::User", "id": format!("u{u}")}, "attrs": {"level": u},
                "parents": [{"type": "T::Team", "id": team}]}));
        }
        for d in 0..8 {
            let folder = ["sub", "root", "locked"][d % 3];
            let owner = format!("u{}", d % 6);
            entities.push(json!({"uid": {"type": "T::Doc", "id": format!("d{d}")},
                "attrs": {"owner": {"__entity": {"type": "T::User", "id": owner}}, "level": d % 5},
                "parents": [{"type": "T::Folder", "id": folder}]}));
        }
        let compiled = compile(&snapshot).map_err(|e| eprintln!("{e:?}")).ok()?;
        let whole = Entities::from_json_value(Value::Array(entities.clone()), compiled.schema.as_ref()).ok()?;
        let stored: Stored = entities
            .into_iter()
            .filter_map(|e| LoadedEntity::parse(e, compiled.schema.as_ref()).ok())
            .map(|e| (e.uid(), Arc::new(e)))
            .collect();
        let engine = TenantEngine::new(TenantId(Uuid::nil()), AuthzState::default(), compiled, 16).ok()?;
        Some((engine, whole, stored))
    }

    #[test]
    fn slicing_by_scope_and_entities_decides_as_the_whole_set_does() {
        let Some((engine, whole_set, stored)) = engine() else {
            return assert!(engine().is_some(), "the test tenant compiles");
        };
        assert_eq!(engine.depth(), 2);
        let mut allowed = 0;
        for n in 0..6 * 3 * 8 * 2 {
            let action = ["read", "edit", "all"][(n / 6) % 3];
            let input: DecisionInput = serde_json::from_value(json!({
                "principal": {"type": "T::User", "id": format!("u{}", n % 6)},
                "action": {"type": "T::Action", "id": action},
                "resource": {"type": "T::Doc", "id": format!("d{}", (n / 18) % 8)},
                "context": {"mfa": n % 2 == 0},
            }))
            .unwrap_or_else(|_| unreachable!());
            let prepared = engine.prepare(&input, None).map_err(|i| i.message);
            assert!(prepared.is_ok(), "{prepared:?}", prepared = prepared.as_ref().err());
            let Ok(prepared) = prepared else { return };
            let slice = engine.slice_with(&prepared, None, |uid| stored.get(uid).cloned());
            assert!(slice.is_ok(), "request {n}: {:?}", slice.as_ref().err());
            let Ok(slice) = slice else { return };
            assert!(slice.iter().count() < whole_set.iter().count(), "request {n}: only a part is loaded");
            let sliced = engine.decide(&prepared, &slice, Duration::from_secs(1));
            let whole = Authorizer::new().is_authorized(&prepared.request, &engine.policies, &whole_set);
            let whole = answer(whole, Duration::ZERO, Duration::MAX);
            assert_eq!(sliced, whole, "request {n}");
            allowed += usize::from(whole.allowed());
        }
        // Both outcomes occur, so the comparison means something.
        assert!(allowed > 10 && allowed < 6 * 3 * 8 * 2 - 10, "{allowed}");
    }

    #[test]
    fn plain_contexts_are_still_checked_against_the_schema() {
        let Some((engine, _, _)) = engine() else { return assert!(engine().is_some(), "the test tenant compiles") };
        let input = |context: Value| -> DecisionInput {
            serde_json::from_value(json!({
                "principal": {"type": "T::User", "id": "u1"},
                "action": {"type": "T::Action", "id": "read"},
                "resource": {"type": "T::Doc", "id": "d1"},
                "context": context,
            }))
            .unwrap_or_else(|_| unreachable!())
        };
        assert!(engine.prepare(&input(json!({"mfa": true})), None).is_ok());
        assert!(engine.prepare(&input(json!({"mfa": 1})), None).is_err(), "a number where the schema says Bool");
        assert!(engine.prepare(&input(json!({})), None).is_err(), "a missing attribute");
        assert!(engine.prepare(&input(json!({"mfa": true, "extra": 2})), None).is_err(), "an undeclared attribute");
    }
}
