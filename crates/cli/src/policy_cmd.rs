//! `guard policy …`, `guard group …` and `guard role …`: a tenant's Cedar policies
//! (validate, list, get, put, delete, versions, diff, rollback, import and export of a
//! folder of .cedar files for keeping them in git), its groups and its roles.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use guard_core::authz::{Authz, AuthzError, Issue, PolicySnapshot};
use guard_core::events::Actor;
use guard_core::tenants::TenantId;
use serde_json::json;

use crate::database::services;
use crate::{Failure, Format, load_config, logging};

/// File names a folder of policies uses for the schema (Cedar syntax, then JSON).
const SCHEMA_FILES: [&str; 2] = ["schema.cedarschema", "schema.cedarschema.json"];

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyAction {
    /// Validate policies: a folder (against its schema and the tenant's entities), or
    /// the current version of one tenant or (--all) of every tenant. Exits 1 if any
    /// is invalid.
    Validate {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, conflicts_with_all = ["tenant", "dir"])]
        all: bool,
        /// A folder of .cedar files (and schema.cedarschema) to check instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the tenant's current policies.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print one policy's text.
    Get {
        id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create or replace a policy from a file (`-` reads standard input).
    Put {
        id: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a policy.
    Delete {
        id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Print the schema, set it from a file, or remove it.
    Schema {
        #[arg(long, conflicts_with = "remove")]
        file: Option<PathBuf>,
        #[arg(long)]
        remove: bool,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// List versions, newest first.
    Versions {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Show what changed: between two versions (default: the previous and the
    /// current one), or between a folder and the current version.
    Diff {
        from: Option<i64>,
        to: Option<i64>,
        #[arg(long, conflicts_with_all = ["from", "to"])]
        dir: Option<PathBuf>,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Make a version current again (as a new version).
    Rollback {
        version: i64,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Write the current policies to a folder: one <id>.cedar per policy and the
    /// schema. Existing .cedar and schema files in the folder are replaced.
    Export {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Replace the tenant's policies and schema with a folder's, at once.
    Import {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Show the difference and validate, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupAction {
    /// List groups with their member counts.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create a group (Cedar sees it as Guard::Group::"<name>").
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a group.
    Delete {
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Add a user (email or id) to a group.
    Add {
        name: String,
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Remove a user (email or id) from a group.
    Remove {
        name: String,
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RoleAction {
    /// List the built-in roles and the tenant's own.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Define a role users can then be given (Cedar sees it as Guard::Role::"<name>").
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a role no user holds.
    Delete {
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

/// One line per issue: where, what, and Cedar's help.
fn describe(issue: &Issue) -> String {
    let mut place = Vec::new();
    if let Some(policy) = &issue.policy {
        place.push(format!("policy {policy}"));
    }
    if let Some(entity) = &issue.entity {
        place.push(format!("entity {entity}"));
    }
    if let (Some(line), Some(column)) = (issue.line, issue.column) {
        place.push(format!("line {line}, column {column}"));
    }
    let place = if place.is_empty() { issue.source.to_owned() } else { place.join(", ") };
    let mut text = format!("{place}: {}", issue.message);
    if let Some(snippet) = &issue.snippet {
        text.push_str(&format!("\n    at: {snippet}"));
    }
    if let Some(help) = &issue.help {
        text.push_str(&format!("\n    help: {help}"));
    }
    text
}

fn failure(e: AuthzError) -> Failure {
    match e {
        AuthzError::Invalid { summary, issues } => {
            let lines: Vec<String> = issues.iter().map(describe).collect();
            Failure::Runtime(format!("{summary}\n  {}", lines.join("\n  ")))
        }
        AuthzError::Store(e) => Failure::Runtime(e.to_string()),
        other => Failure::Runtime(other.to_string()),
    }
}

async fn tenant_id(services: &guard_api::Services, reference: &str) -> Result<TenantId, Failure> {
    services.tenants.find(reference).await.map(|t| t.id).map_err(|e| Failure::Runtime(e.to_string()))
}

fn read_text(file: &Path) -> Result<String, Failure> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::Runtime(format!("standard input: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| Failure::Runtime(format!("{}: {e}", file.display())))
}

/// Reads a folder: every *.cedar file (split into policies) and the schema file.
pub(crate) fn read_folder(dir: &Path) -> Result<PolicySnapshot, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| Failure::Runtime(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut snapshot = PolicySnapshot::default();
    let mut issues = Vec::new();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "cedar")) {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text = read_text(path)?;
        match guard_core::authz::compile::split_policy_file(&stem, &text) {
            Ok(policies) => {
                for (id, text) in policies {
                    if let Err(e) = guard_core::authz::model::check_policy_id(&id) {
                        issues.push(format!("{}: {e}", path.display()));
                    }
                    if snapshot.policies.insert(id.clone(), text).is_some() {
                        issues.push(format!("{}: the policy id {id:?} is used twice in the folder", path.display()));
                    }
                }
            }
            Err(found) => issues.extend(found.iter().map(|i| format!("{}: {}", path.display(), describe(i)))),
        }
    }
    if !issues.is_empty() {
        return Err(Failure::Runtime(format!("the folder does not parse:\n  {}", issues.join("\n  "))));
    }
    for name in SCHEMA_FILES {
        let path = dir.join(name);
        if path.exists() {
            snapshot.schema = Some(read_text(&path)?);
            break;
        }
    }
    Ok(snapshot)
}

/// A unified diff of two snapshots, policy by policy, then the schema.
pub(crate) fn diff(from: &PolicySnapshot, to: &PolicySnapshot) -> String {
    let mut out = String::new();
    let ids: std::collections::BTreeSet<&String> = from.policies.keys().chain(to.policies.keys()).collect();
    let mut section = |name: &str, old: Option<&str>, new: Option<&str>| {
        if old == new {
            return;
        }
        let old_name = if old.is_some() { format!("a/{name}") } else { "/dev/null".into() };
        let new_name = if new.is_some() { format!("b/{name}") } else { "/dev/null".into() };
        let old_text = old.map(|t| format!("{}\n", t.trim_end())).unwrap_or_default();
        let new_text = new.map(|t| format!("{}\n", t.trim_end())).unwrap_or_default();
        let text_diff = similar::TextDiff::from_lines(&old_text, &new_text);
        out.push_str(&text_diff.unified_diff().context_radius(3).header(&old_name, &new_name).to_string());
    };
    for id in ids {
        section(
            &format!("{id}.cedar"),
            from.policies.get(id).map(String::as_str),
            to.policies.get(id).map(String::as_str),
        );
    }
    section(SCHEMA_FILES[0], from.schema.as_deref(), to.schema.as_deref());
    out
}

fn schema_file(schema: &str) -> &'static str {
    if schema.trim_start().starts_with('{') { SCHEMA_FILES[1] } else { SCHEMA_FILES[0] }
}

fn export(dir: &Path, snapshot: &PolicySnapshot) -> Result<usize, Failure> {
    let io = |e: std::io::Error| Failure::Runtime(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    for entry in std::fs::read_dir(dir).map_err(io)?.filter_map(Result::ok) {
        let path = entry.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "cedar") || SCHEMA_FILES.contains(&name.as_str()) {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    for (id, text) in &snapshot.policies {
        std::fs::write(dir.join(format!("{id}.cedar")), format!("{}\n", text.trim_end())).map_err(io)?;
    }
    if let Some(schema) = &snapshot.schema {
        std::fs::write(dir.join(schema_file(schema)), schema).map_err(io)?;
    }
    Ok(snapshot.policies.len())
}

async fn validate_all(authz: &Authz, services: &guard_api::Services) -> Result<(), Failure> {
    let heads = authz.heads().await.map_err(failure)?;
    let mut bad = 0;
    for head in &heads {
        let (_, snapshot) = authz.current(head.tenant).await.map_err(failure)?;
        let name =
            services.tenants.find(&head.tenant.0.to_string()).await.map(|t| t.slug.to_string()).unwrap_or_default();
        match authz.validate(head.tenant, &snapshot).await {
            Ok(()) => say!("{name}: version {} valid ({} policies)", head.version, snapshot.policies.len()),
            Err(e) => {
                bad += 1;
                let (Failure::Runtime(text) | Failure::Config(text)) = failure(e);
                say!("{name}: version {} INVALID: {text}", head.version);
            }
        }
    }
    say!("{} tenants with policies, {bad} invalid", heads.len());
    if bad > 0 { Err(Failure::Runtime(format!("{bad} tenants have invalid policies"))) } else { Ok(()) }
}

pub(crate) async fn run(file: Option<PathBuf>, action: PolicyAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (_db, services) = services(&loaded.config).await?;
    let authz = services.authz.clone();
    let op = Actor::Operator;
    match action {
        PolicyAction::Validate { all: true, .. } => validate_all(&authz, &services).await,
        PolicyAction::Validate { tenant, dir, .. } => {
            let tenant = tenant_id(&services, tenant.as_deref().unwrap_or("default")).await?;
            let snapshot = match &dir {
                Some(dir) => read_folder(dir)?,
                None => authz.current(tenant).await.map_err(failure)?.1,
            };
            authz.validate(tenant, &snapshot).await.map_err(failure)?;
            say!(
                "valid: {} policies{}",
                snapshot.policies.len(),
                if snapshot.schema.is_some() { " and the schema" } else { "" }
            );
            Ok(())
        }
        PolicyAction::List { tenant, format } => {
            let (version, snapshot) = authz.current(tenant_id(&services, &tenant).await?).await.map_err(failure)?;
            match format {
                Format::Json => {
                    let policies: Vec<_> =
                        snapshot.policies.iter().map(|(id, text)| json!({ "id": id, "text": text })).collect();
                    say!(
                        "{}",
                        serde_json::to_string_pretty(
                            &json!({ "version": version, "policies": policies, "schema": snapshot.schema })
                        )
                        .unwrap_or_default()
                    );
                }
                Format::Table => {
                    say!(
                        "version {version}, {} policies{}",
                        snapshot.policies.len(),
                        if snapshot.schema.is_some() { ", with a schema" } else { "" }
                    );
                    for (id, text) in &snapshot.policies {
                        let first = text
                            .lines()
                            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
                            .unwrap_or_default();
                        say!("{id:<32}  {}", first.trim());
                    }
                }
            }
            Ok(())
        }
        PolicyAction::Get { id, tenant } => {
            let (_, snapshot) = authz.current(tenant_id(&services, &tenant).await?).await.map_err(failure)?;
            let text = snapshot.policies.get(&id).ok_or_else(|| Failure::Runtime(format!("no policy {id:?}")))?;
            say!("{}", text.trim_end());
            Ok(())
        }
        PolicyAction::Put { id, file, tenant } => {
            let text = read_text(&file)?;
            let v = authz.put_policy(tenant_id(&services, &tenant).await?, op, &id, &text).await.map_err(failure)?;
            say!("policy {id} stored; the policies are at version {}", v.version);
            Ok(())
        }
        PolicyAction::Delete { id, tenant } => {
            let v = authz.delete_policy(tenant_id(&services, &tenant).await?, op, &id).await.map_err(failure)?;
            say!("policy {id} deleted; the policies are at version {}", v.version);
            Ok(())
        }
        PolicyAction::Schema { file, remove, tenant } => {
            let tenant = tenant_id(&services, &tenant).await?;
            if file.is_none() && !remove {
                let (_, snapshot) = authz.current(tenant).await.map_err(failure)?;
                say!("{}", snapshot.schema.unwrap_or_else(|| "(no schema)".into()));
                return Ok(());
            }
            let schema = file.as_deref().map(read_text).transpose()?;
            let v = authz.put_schema(tenant, op, schema).await.map_err(failure)?;
            say!("schema {}; the policies are at version {}", if remove { "removed" } else { "stored" }, v.version);
            Ok(())
        }
        PolicyAction::Versions { limit, tenant } => {
            let versions = authz.versions(tenant_id(&services, &tenant).await?, None, limit).await.map_err(failure)?;
            say!("{:>7}  {:<20}  {:<44}  {:>8}  CHANGE", "VERSION", "AT", "ACTOR", "POLICIES");
            for v in versions {
                let at = v.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                say!(
                    "{:>7}  {:<20}  {:<44}  {:>8}  {}",
                    v.version,
                    at.get(..19).unwrap_or(&at),
                    v.actor,
                    v.snapshot.policies.len(),
                    v.change
                );
            }
            Ok(())
        }
        PolicyAction::Diff { from, to, dir, tenant } => {
            let tenant = tenant_id(&services, &tenant).await?;
            let (current_version, current) = authz.current(tenant).await.map_err(failure)?;
            let (old, new) = match dir {
                Some(dir) => (current, read_folder(&dir)?),
                None => {
                    let to_version = to.unwrap_or(current_version);
                    let from_version = from.unwrap_or(to_version - 1);
                    let load = |v: i64| {
                        let authz = authz.clone();
                        async move {
                            if v <= 0 {
                                Ok(PolicySnapshot::default())
                            } else {
                                authz.version(tenant, v).await.map(|v| v.snapshot)
                            }
                        }
                    };
                    (load(from_version).await.map_err(failure)?, load(to_version).await.map_err(failure)?)
                }
            };
            let text = diff(&old, &new);
            if text.is_empty() {
                say!("no differences")
            } else {
                say!("{}", text.trim_end())
            }
            Ok(())
        }
        PolicyAction::Rollback { version, tenant } => {
            let v = authz.rollback(tenant_id(&services, &tenant).await?, op, version).await.map_err(failure)?;
            say!("rolled back to version {version}; the policies are at version {}", v.version);
            Ok(())
        }
        PolicyAction::Export { dir, tenant } => {
            let (version, snapshot) = authz.current(tenant_id(&services, &tenant).await?).await.map_err(failure)?;
            let n = export(&dir, &snapshot)?;
            say!(
                "wrote {n} policies{} of version {version} to {}",
                if snapshot.schema.is_some() { " and the schema" } else { "" },
                dir.display()
            );
            Ok(())
        }
        PolicyAction::Import { dir, tenant, dry_run } => {
            let tenant = tenant_id(&services, &tenant).await?;
            let snapshot = read_folder(&dir)?;
            let (version, current) = authz.current(tenant).await.map_err(failure)?;
            let text = diff(&current, &snapshot);
            if text.is_empty() {
                say!("no differences; the policies stay at version {version}");
                return Ok(());
            }
            say!("{}", text.trim_end());
            if dry_run {
                authz.validate(tenant, &snapshot).await.map_err(failure)?;
                say!("valid; nothing changed (dry run)");
                return Ok(());
            }
            let v = authz
                .replace(tenant, op, snapshot, Some(version), &format!("import {}", dir.display()))
                .await
                .map_err(failure)?;
            say!("imported; the policies are at version {}", v.version);
            Ok(())
        }
    }
}

async fn user_id(services: &guard_api::Services, tenant: &str, user: &str) -> Result<uuid::Uuid, Failure> {
    services.users.find(tenant, user).await.map(|u| u.id.0).map_err(|e| Failure::Runtime(e.to_string()))
}

pub(crate) async fn run_group(file: Option<PathBuf>, action: GroupAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (_db, services) = services(&loaded.config).await?;
    let authz = services.authz.clone();
    match action {
        GroupAction::List { tenant } => {
            let groups = authz
                .store()
                .groups(tenant_id(&services, &tenant).await?)
                .await
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            say!("{:<32}  {:>7}  DESCRIPTION", "NAME", "MEMBERS");
            for g in groups {
                say!("{:<32}  {:>7}  {}", g.name, g.members, g.description.unwrap_or_default());
            }
        }
        GroupAction::Create { name, description, tenant } => {
            authz
                .create_group(tenant_id(&services, &tenant).await?, Actor::Operator, &name, description)
                .await
                .map_err(failure)?;
            say!("created group {name}");
        }
        GroupAction::Delete { name, tenant } => {
            authz.delete_group(tenant_id(&services, &tenant).await?, Actor::Operator, &name).await.map_err(failure)?;
            say!("deleted group {name}");
        }
        GroupAction::Add { name, user, tenant } => {
            let id = user_id(&services, &tenant, &user).await?;
            let changed = authz
                .set_member(tenant_id(&services, &tenant).await?, Actor::Operator, &name, id, true)
                .await
                .map_err(failure)?;
            say!("{user} {} group {name}", if changed { "added to" } else { "was already in" });
        }
        GroupAction::Remove { name, user, tenant } => {
            let id = user_id(&services, &tenant, &user).await?;
            let changed = authz
                .set_member(tenant_id(&services, &tenant).await?, Actor::Operator, &name, id, false)
                .await
                .map_err(failure)?;
            say!("{user} {} group {name}", if changed { "removed from" } else { "was not in" });
        }
    }
    Ok(())
}

pub(crate) async fn run_role(file: Option<PathBuf>, action: RoleAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (_db, services) = services(&loaded.config).await?;
    let authz = services.authz.clone();
    match action {
        RoleAction::List { tenant } => {
            let roles = authz.roles(tenant_id(&services, &tenant).await?).await.map_err(failure)?;
            say!("{:<32}  {:<8}  DESCRIPTION", "NAME", "BUILT-IN");
            for r in roles {
                say!(
                    "{:<32}  {:<8}  {}",
                    r.name,
                    if r.builtin { "yes" } else { "no" },
                    r.description.unwrap_or_default()
                );
            }
        }
        RoleAction::Create { name, description, tenant } => {
            authz
                .create_role(tenant_id(&services, &tenant).await?, Actor::Operator, &name, description)
                .await
                .map_err(failure)?;
            say!("created role {name}");
        }
        RoleAction::Delete { name, tenant } => {
            authz.delete_role(tenant_id(&services, &tenant).await?, Actor::Operator, &name).await.map_err(failure)?;
            say!("deleted role {name}");
        }
    }
    Ok(())
}
