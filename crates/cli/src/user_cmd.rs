//! `guard user create | list | disable | delete`.

use clap::Subcommand;
use guard_core::events::Actor;
use guard_core::users::{ADMIN_ROLE, NewAccount, User, UserError, UserId, UserStatus, UserUpdate};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use time::format_description::well_known::Rfc3339;

use crate::database::services;
use crate::{Failure, Format, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum UserAction {
    /// Create a user. Without --password-stdin guard generates a one-time password,
    /// prints it once, and the user must choose a new one at first sign-in.
    Create {
        email: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        username: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Give the user the admin role (administers the tenant; in the default
        /// tenant, every tenant).
        #[arg(long)]
        admin: bool,
    },
    /// Send a user (by email or id) a password reset email, or print the link.
    ResetPassword {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Print a one-time reset link instead of emailing it.
        #[arg(long)]
        print: bool,
    },
    /// Remove every second factor of a user (by email or id): lost authenticator.
    /// Recorded as an event; the user signs in with the password alone, or enrols
    /// again when the tenant requires MFA.
    ResetMfa {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Unlock an account locked after failed sign-ins (by email or id): its failures
    /// are forgotten. Recorded as an event.
    Unlock {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Make users choose a new password at their next sign-in; their sessions end now.
    ForcePasswordReset {
        /// One user, by email or id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        /// Every user of the tenant.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// List a tenant's users, oldest first.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        email_prefix: Option<String>,
        #[arg(long, value_parser = parse_status)]
        status: Option<UserStatus>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        cursor: Option<uuid::Uuid>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Disable a user (by email or id): no more sign-ins.
    Disable {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a user (by email or id) for good.
    Delete {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

fn parse_status(text: &str) -> Result<UserStatus, String> {
    UserStatus::parse(text).ok_or_else(|| "expected active, disabled, locked or pending_verification".into())
}

fn failure(e: UserError) -> Failure {
    match e {
        UserError::Invalid(message) | UserError::WeakPassword(message) => Failure::Config(message),
        other => Failure::Runtime(other.to_string()),
    }
}

fn read_password() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Failure::Config(format!("--password-stdin: cannot read standard input ({e})")))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

fn user_json(u: &User) -> serde_json::Value {
    let time = |t: &time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    json!({
        "id": u.id, "email": u.email, "username": u.username, "display_name": u.display_name,
        "status": u.status, "roles": u.roles, "password_change_required": u.password_change_required,
        "created_at": time(&u.created_at), "updated_at": time(&u.updated_at),
        "last_login_at": u.last_login_at.as_ref().map(time),
    })
}

pub(crate) async fn run(file: Option<PathBuf>, action: UserAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let password = match &action {
        UserAction::Create { password_stdin: true, .. } => Some(read_password()?),
        _ => None,
    };
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let service = &all.users;
    let result = match action {
        UserAction::Create { email, tenant, username, name, admin, .. } => service
            .create(
                Actor::Operator,
                &tenant,
                NewAccount {
                    email: &email,
                    username: username.as_deref(),
                    display_name: name.as_deref(),
                    password,
                    roles: if admin { vec![ADMIN_ROLE.to_owned()] } else { Vec::new() },
                },
            )
            .await
            .map(|created| {
                say!("created user {} (id {}) in tenant {}", created.user.email, created.user.id, tenant);
                if let Some(p) = created.generated_password {
                    say!("one-time password: {p}");
                    say!("(shown once; a new password must be chosen at the first sign-in)");
                }
            }),
        UserAction::List { tenant, email_prefix, status, limit, cursor, format } => service
            .list(&tenant, email_prefix.as_deref(), status, cursor.map(UserId), limit)
            .await
            .map(|page| match format {
                Format::Json => {
                    let users: Vec<_> = page.users.iter().map(user_json).collect();
                    let doc = json!({ "users": users, "next_cursor": page.next_cursor });
                    say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                }
                Format::Table => {
                    say!("{:<36}  {:<20}  {:<36}  NAME", "EMAIL", "STATUS", "ID");
                    for u in &page.users {
                        let name = u.display_name.as_ref().map_or("", |d| d.as_str());
                        say!("{:<36}  {:<20}  {:<36}  {}", u.email, u.status.as_str(), u.id, name);
                    }
                    if let Some(next) = page.next_cursor {
                        say!("\nmore: guard user list --tenant {tenant} --cursor {next}");
                    }
                }
            }),
        UserAction::Disable { user, tenant } => {
            service.disable(Actor::Operator, &tenant, &user).await.map(|u| say!("user {} is disabled", u.email))
        }
        UserAction::Delete { user, tenant } => {
            service.delete(Actor::Operator, &tenant, &user).await.map(|u| say!("user {} is deleted", u.email))
        }
        UserAction::ResetPassword { user, tenant, print } => reset_password(&all, &tenant, &user, print).await,
        UserAction::ResetMfa { user, tenant } => reset_mfa(&all, &tenant, &user).await,
        UserAction::Unlock { user, tenant } => unlock(&all, &tenant, &user).await,
        UserAction::ForcePasswordReset { user: Some(user), tenant, .. } => {
            let update = UserUpdate { password_change_required: Some(true), ..UserUpdate::default() };
            service.update(Actor::Operator, &tenant, &user, update).await.map(|u| {
                say!("{} must choose a new password at the next sign-in; their sessions have ended", u.email)
            })
        }
        UserAction::ForcePasswordReset { user: None, tenant, .. } => {
            service.force_password_change_all(Actor::Operator, &tenant).await.map(|n| {
                say!("{n} users of tenant {tenant} must choose a new password at the next sign-in; their sessions have ended")
            })
        }
    };
    db.pool.close().await;
    result.map_err(failure)
}

async fn unlock(all: &guard_api::Services, tenant: &str, user: &str) -> Result<(), UserError> {
    let tenant = all.tenants.find(tenant).await?;
    let user = all.users.find(tenant.id.to_string().as_str(), user).await?;
    let brute_force = all.auth.brute_force();
    let had = brute_force
        .unlock(Actor::Operator, tenant.id, user.email.as_str())
        .await
        .map_err(|e| UserError::Internal(e.to_string()))?;
    if had {
        say!("{} is unlocked; its failed sign-ins are forgotten", user.email);
    } else {
        say!("{} had no failed sign-ins; nothing to unlock", user.email);
    }
    Ok(())
}

async fn reset_mfa(all: &guard_api::Services, tenant: &str, user: &str) -> Result<(), UserError> {
    let tenant = all.tenants.find(tenant).await?;
    let user = all.users.find(tenant.id.to_string().as_str(), user).await?;
    let removed =
        all.mfa.reset(Actor::Operator, &tenant, user.id).await.map_err(|e| UserError::Internal(e.to_string()))?;
    if removed {
        say!("the second factors of {} are removed", user.email);
    } else {
        say!("{} had no second factor; nothing to remove", user.email);
    }
    Ok(())
}

async fn reset_password(all: &guard_api::Services, tenant: &str, user: &str, print: bool) -> Result<(), UserError> {
    let tenant = all.tenants.find(tenant).await?;
    let user = all.users.find(tenant.id.to_string().as_str(), user).await?;
    let internal = |e: guard_core::accounts::AccountError| UserError::Internal(e.to_string());
    if print {
        let link = all.accounts.reset_link(&tenant, &user).await.map_err(internal)?;
        say!("one-time password reset link for {} (valid for 1 hour):\n{link}", user.email);
    } else {
        all.accounts.send_reset(&tenant, &user).await.map_err(internal)?;
        say!("a password reset email to {} is in the outbox; a running guard sends it", user.email);
    }
    Ok(())
}
