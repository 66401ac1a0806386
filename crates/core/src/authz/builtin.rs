//! What guard brings to every tenant's Cedar world: the `Guard` namespace (users,
//! groups, roles and the actions of guard's own API) and the built-in policies that
//! decide who may administer a tenant.

/// Policy ids with this prefix belong to guard.
pub const RESERVED_ID_PREFIX: &str = "guard.";

/// The namespace of guard's own entity types and actions.
pub const NAMESPACE: &str = "Guard";

/// Roles every tenant has.
pub const BUILTIN_ROLES: &[(&str, &str)] = &[
    ("admin", "Administers the tenant: users, groups, roles, policies, entities, audit data and security."),
    ("auditor", "Reads users, groups, roles, policies, entities, security state and the audit log; changes nothing."),
    ("authorizer", "An application: asks for decisions about any principal and maintains the stored entities."),
];

/// The actions of guard's administrative API, with what each allows.
pub const ADMIN_ACTIONS: &[(&str, &str)] = &[
    ("tenants.read", "list and read tenants (default tenant only)"),
    ("tenants.write", "create, change and disable tenants (default tenant only)"),
    ("users.read", "list and read users"),
    ("users.write", "create, change, disable and delete users, reset passwords"),
    ("users.roles", "give users roles and take them away (on top of users.write)"),
    ("users.mfa.reset", "remove a user's second factors"),
    ("groups.read", "list groups and their members"),
    ("groups.write", "create and delete groups"),
    ("groups.members", "add users to groups and remove them"),
    ("roles.read", "list roles"),
    ("roles.write", "create and delete roles"),
    ("policies.read", "read policies, the schema and their versions"),
    ("policies.write", "change policies and the schema, roll back"),
    ("entities.read", "read stored entities"),
    ("entities.write", "create, replace and delete stored entities"),
    ("authorize.self", "ask for decisions about oneself"),
    ("authorize.any", "ask for decisions about any principal"),
    ("audit.read", "query the audit log"),
    ("audit.export", "export the audit log"),
    ("audit.verify", "verify the audit chain"),
    ("security.read", "list blocked addresses"),
    ("security.write", "block and unblock addresses, unlock accounts"),
    ("platform.read", "read every tenant's authorization overview under /admin (default tenant only)"),
    ("platform.debug", "CPU profiles and runtime statistics under /debug (default tenant only)"),
];

/// guard's entity types, merged with every tenant's schema so that tenant policies
/// can name guard's users, groups and roles.
pub fn entity_schema_text() -> String {
    format!(
        "namespace {NAMESPACE} {{\n\
         \x20 entity Role;\n\
         \x20 entity Group;\n\
         \x20 entity Tenant;\n\
         \x20 entity User in [Group, Role] {{ email: String, username?: String, status: String }};\n\
         }}\n"
    )
}

/// The whole `Guard` namespace, with the actions of guard's API: tenant policies on
/// those actions are validated against it.
pub fn schema_text() -> String {
    let actions: Vec<String> = ADMIN_ACTIONS.iter().map(|(name, _)| format!("{name:?}")).collect();
    format!(
        "namespace {NAMESPACE} {{\n\
         \x20 entity Role;\n\
         \x20 entity Group;\n\
         \x20 entity Tenant;\n\
         \x20 entity User in [Group, Role] {{ email: String, username?: String, status: String }};\n\
         \x20 action {} appliesTo {{ principal: [User], resource: [Tenant] }};\n\
         }}\n",
        actions.join(", ")
    )
}

fn action_list(names: &[&str]) -> String {
    let uids: Vec<String> = names.iter().map(|n| format!("{NAMESPACE}::Action::{n:?}")).collect();
    format!("[{}]", uids.join(", "))
}

/// The built-in policies deciding guard's administrative API (id, Cedar text). A
/// tenant's own policies that name only `Guard::Action`s are added to them: a
/// `permit` grants more, a `forbid` takes away, even from administrators.
pub fn admin_policies() -> Vec<(String, String)> {
    let auditor = action_list(&[
        "users.read",
        "groups.read",
        "roles.read",
        "policies.read",
        "entities.read",
        "audit.read",
        "audit.export",
        "audit.verify",
        "security.read",
    ]);
    let authorizer = action_list(&["authorize.any", "entities.read", "entities.write", "policies.read"]);
    vec![
        ("guard.admin".into(), format!("permit (principal in {NAMESPACE}::Role::\"admin\", action, resource);")),
        (
            "guard.auditor".into(),
            format!("permit (principal in {NAMESPACE}::Role::\"auditor\", action in {auditor}, resource);"),
        ),
        (
            "guard.authorizer".into(),
            format!("permit (principal in {NAMESPACE}::Role::\"authorizer\", action in {authorizer}, resource);"),
        ),
        (
            "guard.self".into(),
            format!("permit (principal, action == {NAMESPACE}::Action::\"authorize.self\", resource);"),
        ),
        (
            "guard.active-only".into(),
            "forbid (principal, action, resource) unless { principal.status == \"active\" };".into(),
        ),
    ]
}
