//! First start: an administrator in the default tenant, so the first sign-in needs
//! nothing else. Runs when the default tenant has no users at all.

use guard_core::Config;
use guard_core::events::Actor;
use guard_core::tenants::TenantSlug;
use guard_core::users::{ADMIN_ROLE, NewAccount, UserError, UserService};

use crate::Failure;

/// Email of the first administrator when GUARD_BOOTSTRAP_ADMIN_EMAIL is unset.
pub(crate) const DEFAULT_ADMIN_EMAIL: &str = "admin@guard.localhost";

/// Creates the first administrator when the default tenant is empty. A generated
/// one-time password is printed once to standard error (never logged).
pub(crate) async fn first_admin(config: &Config, users: &UserService) -> Result<(), Failure> {
    let tenant = TenantSlug::DEFAULT;
    let existing = users
        .list(tenant, None, None, None, 1)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot look for users: {e}")))?;
    if !existing.users.is_empty() {
        return Ok(());
    }
    let email = config.bootstrap.admin_email.as_deref().unwrap_or(DEFAULT_ADMIN_EMAIL);
    let password = config.bootstrap.admin_password.as_ref().map(|p| p.expose().to_owned());
    let account = NewAccount { email, password, roles: vec![ADMIN_ROLE.to_owned()], ..NewAccount::default() };
    let created = users.create(Actor::System, tenant, account).await;
    match created {
        Ok(created) => {
            tracing::info!(
                email,
                generated_password = created.generated_password.is_some(),
                "created the first administrator"
            );
            if let Some(password) = created.generated_password {
                eprintln!(
                    "\n  guard: first administrator created in the default tenant\n    email:    {email}\n    password: {password}\n  This one-time password is shown only now; it must be changed at first sign-in.\n"
                );
            }
            Ok(())
        }
        // Another replica starting at the same moment created it.
        Err(UserError::Taken) => Ok(()),
        Err(UserError::Invalid(reason) | UserError::WeakPassword(reason)) => {
            Err(Failure::Config(format!("GUARD_BOOTSTRAP_ADMIN_PASSWORD / _EMAIL: {reason}")))
        }
        Err(e) => Err(Failure::Runtime(format!("cannot create the first administrator: {e}"))),
    }
}
