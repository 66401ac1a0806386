//! Turning a stored snapshot into what the engine evaluates, and reporting what is
//! wrong with it as precisely as Cedar can place it.

use std::str::FromStr;

use cedar_policy::{ActionConstraint, Policy, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode, Validator};
use miette::Diagnostic;

use super::builtin;
use super::model::{AuthzError, Issue, PolicySnapshot};

/// A snapshot, compiled: the tenant's policies for applications' decisions, the
/// policies deciding guard's own API (built-ins plus the tenant's policies that name
/// only `Guard::Action`s), and the schema merged with guard's namespace.
pub struct Compiled {
    pub policies: PolicySet,
    pub admin: PolicySet,
    /// The tenant's schema with guard's entity types: applications' requests,
    /// entities and policies are checked against it.
    pub schema: Option<Schema>,
    /// The same with guard's actions too, for tenant policies on guard's API.
    pub admin_schema: Option<Schema>,
}

/// Line and column (from 1) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// One issue per diagnostic, placed by its first label within `text`.
pub fn issue_from(source: &'static str, diagnostic: &dyn Diagnostic, text: Option<&str>) -> Issue {
    // Cedar's outer messages can be generic ("error during entity deserialization");
    // the causes say what was wrong.
    let mut message = diagnostic.to_string();
    let mut cause = diagnostic.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = inner.source();
    }
    let mut issue = Issue::new(source, message);
    issue.help = diagnostic.help().map(|h| h.to_string());
    if let (Some(text), Some(mut labels)) = (text, diagnostic.labels())
        && let Some(label) = labels.next()
    {
        let (line, column) = position(text, label.offset());
        issue.line = Some(line);
        issue.column = Some(column);
        let end = (label.offset() + label.len()).min(text.len());
        issue.snippet = text.get(label.offset()..end).map(|s| s.chars().take(200).collect());
    }
    issue
}

/// Parses the schema (Cedar schema syntax, or JSON when it starts with `{`) and
/// merges it with guard's entity types (and, with `guard_actions`, its actions).
pub fn parse_schema(text: &str, guard_actions: bool) -> Result<Schema, Vec<Issue>> {
    let guard_text = if guard_actions { builtin::schema_text() } else { builtin::entity_schema_text() };
    let (guard, _) = SchemaFragment::from_cedarschema_str(&guard_text)
        .map_err(|e| vec![issue_from("schema", &e, Some(&guard_text))])?;
    let tenant = if text.trim_start().starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let mut issue = Issue::new("schema", format!("the schema is not valid JSON: {e}"));
            issue.line = Some(e.line());
            issue.column = Some(e.column());
            vec![issue]
        })?;
        SchemaFragment::from_json_value(json).map_err(|e| vec![issue_from("schema", &e, None)])?
    } else {
        SchemaFragment::from_cedarschema_str(text).map_err(|e| vec![issue_from("schema", &e, Some(text))])?.0
    };
    if tenant.namespaces().any(|ns| ns.is_some_and(|ns| ns.to_string() == builtin::NAMESPACE)) {
        let mut issue = Issue::new("schema", format!("the namespace {} is guard's own", builtin::NAMESPACE));
        issue.help = Some(format!(
            "guard adds {} (User, Group, Role, Tenant and its actions) to every schema; use another namespace",
            builtin::NAMESPACE
        ));
        return Err(vec![issue]);
    }
    Schema::from_schema_fragments([guard, tenant]).map_err(|e| vec![issue_from("schema", &e, None)])
}

/// Parses each policy under its id; every policy with a syntax error is reported.
pub fn parse_policies(snapshot: &PolicySnapshot) -> Result<PolicySet, Vec<Issue>> {
    let mut set = PolicySet::new();
    let mut issues = Vec::new();
    for (id, text) in &snapshot.policies {
        match Policy::parse(Some(PolicyId::new(id)), text) {
            Ok(policy) => {
                if let Err(e) = set.add(policy) {
                    issues.push(issue_from("policy", &e, None).policy(id));
                }
            }
            Err(errors) => {
                for error in errors.iter() {
                    issues.push(issue_from("policy", error, Some(text)).policy(id));
                }
            }
        }
    }
    if issues.is_empty() { Ok(set) } else { Err(issues) }
}

/// Strict validation of `policies` against `schema`: unknown entity types, actions
/// and attributes, type errors, each with its policy and position.
pub fn validate(snapshot: &PolicySnapshot, policies: &PolicySet, schema: &Schema) -> Vec<Issue> {
    let result = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    result
        .validation_errors()
        .map(|e| {
            let id = e.policy_id().to_string();
            issue_from("policy", e, snapshot.policies.get(&id).map(String::as_str)).policy(id)
        })
        .collect()
}

/// Whether a tenant policy speaks about guard's own API: its action scope names
/// actions, and all of them are `Guard::Action`s. Such policies join the built-ins;
/// a policy with an open action scope never does, so an application's
/// `permit(principal, action, resource)` grants nothing in guard.
fn governs_guard(policy: &Policy) -> bool {
    let is_guard =
        |uid: &cedar_policy::EntityUid| uid.type_name().to_string() == format!("{}::Action", builtin::NAMESPACE);
    match policy.action_constraint() {
        ActionConstraint::Any => false,
        ActionConstraint::Eq(uid) => is_guard(&uid),
        ActionConstraint::In(uids) => !uids.is_empty() && uids.iter().all(is_guard),
    }
}

/// The built-in administrative policies.
pub fn builtin_policies() -> Result<PolicySet, AuthzError> {
    let mut set = PolicySet::new();
    for (id, text) in builtin::admin_policies() {
        let policy = Policy::parse(Some(PolicyId::new(&id)), &text)
            .map_err(|e| AuthzError::BadRequest(format!("built-in policy {id}: {e}")))?;
        set.add(policy).map_err(|e| AuthzError::BadRequest(format!("built-in policy {id}: {e}")))?;
    }
    Ok(set)
}

/// Compiles and validates a snapshot; nothing of an invalid one is used.
pub fn compile(snapshot: &PolicySnapshot) -> Result<Compiled, AuthzError> {
    let invalid_schema = |issues| AuthzError::invalid("the schema is not valid", issues);
    let (schema, admin_schema) = match &snapshot.schema {
        Some(text) => (
            Some(parse_schema(text, false).map_err(invalid_schema)?),
            Some(parse_schema(text, true).map_err(invalid_schema)?),
        ),
        None => (None, None),
    };
    let policies = parse_policies(snapshot).map_err(|issues| AuthzError::invalid("a policy does not parse", issues))?;
    // Policies on guard's API are checked against guard's actions, the others
    // against the tenant's schema alone, so that an open action scope is not
    // type-checked against guard's actions too.
    let (mut on_guard, mut on_app) = (PolicySet::new(), PolicySet::new());
    for policy in policies.policies() {
        let set = if governs_guard(policy) { &mut on_guard } else { &mut on_app };
        set.add(policy.clone()).map_err(|e| AuthzError::Conflict(e.to_string()))?;
    }
    if let (Some(schema), Some(admin_schema)) = (&schema, &admin_schema) {
        let mut issues = validate(snapshot, &on_app, schema);
        issues.extend(validate(snapshot, &on_guard, admin_schema));
        if !issues.is_empty() {
            return Err(AuthzError::invalid("a policy does not validate against the schema", issues));
        }
    }
    let mut admin = builtin_policies()?;
    for policy in on_guard.policies() {
        admin.add(policy.clone()).map_err(|e| AuthzError::Conflict(e.to_string()))?;
    }
    Ok(Compiled { policies, admin, schema, admin_schema })
}

/// Splits a file of Cedar policies into (id, text) pairs: each policy's `@id`
/// annotation names it; otherwise a file holding one policy takes the file's stem,
/// and the n-th of several policies `stem.n`.
pub fn split_policy_file(stem: &str, text: &str) -> Result<Vec<(String, String)>, Vec<Issue>> {
    let set = PolicySet::from_str(text).map_err(|errors| {
        errors.iter().map(|e| issue_from("policy", e, Some(text)).policy(stem)).collect::<Vec<_>>()
    })?;
    if let Some(template) = set.templates().next() {
        return Err(vec![
            Issue::new("policy", format!("{}: templates are not supported; write static policies", template.id()))
                .policy(stem),
        ]);
    }
    let mut policies: Vec<&Policy> = set.policies().collect();
    // PolicySet numbers policies in file order (policy0, policy1, ...).
    policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    let single = policies.len() == 1;
    Ok(policies
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let id = match p.annotation("id") {
                Some(id) => id.to_owned(),
                None if single => stem.to_owned(),
                None => format!("{stem}.{}", n + 1),
            };
            (id, p.to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_schema_and_builtins_parse() {
        assert!(
            parse_schema(
                "namespace App { entity Doc; action read appliesTo { principal: [Guard::User], resource: [Doc] }; }",
                true
            )
            .is_ok()
        );
        assert_eq!(builtin_policies().map(|s| s.policies().count()).ok(), Some(builtin::admin_policies().len()));
    }

    #[test]
    fn syntax_errors_are_placed() {
        let mut snapshot = PolicySnapshot::default();
        snapshot.policies.insert("p".into(), "permit(principal, action, resource)\nwhen { principal.x == };".into());
        let issues = parse_policies(&snapshot).err().unwrap_or_default();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].policy.as_deref(), Some("p"));
        assert_eq!(issues[0].line, Some(2));
    }

    #[test]
    fn only_guard_action_policies_join_the_admin_set() {
        let mut snapshot = PolicySnapshot::default();
        snapshot.policies.insert("open".into(), "permit(principal, action, resource);".into());
        snapshot.policies.insert(
            "helpdesk".into(),
            "permit(principal in Guard::Group::\"helpdesk\", action == Guard::Action::\"users.read\", resource);"
                .into(),
        );
        let compiled = compile(&snapshot).ok();
        let admin_ids: Vec<String> =
            compiled.iter().flat_map(|c| c.admin.policies().map(|p| p.id().to_string())).collect();
        assert!(admin_ids.contains(&"helpdesk".to_owned()));
        assert!(!admin_ids.contains(&"open".to_owned()));
    }

    #[test]
    fn files_split_by_annotation_or_stem() {
        let two = "@id(\"a\") permit(principal, action, resource);\nforbid(principal, action, resource);";
        let split = split_policy_file("f", two).unwrap_or_default();
        let ids: Vec<&str> = split.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "f.2"]);
        let one = split_policy_file("only", "permit(principal, action, resource);").unwrap_or_default();
        assert_eq!(one[0].0, "only");
    }
}
