//! The rules around users: valid identifiers, the tenant's password policy, hashed
//! passwords only, and an event for every change.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::model::{DisplayName, Email, NewUser, User, UserId, UserStatus, Username};
use super::store::{UserChange, UserFilter, UserPage, UserStore};
use crate::events::{Actor, Event};
use crate::passwords::{PasswordContext, PasswordHasher, PasswordPolicy};
use crate::sessions::{AuthService, SessionScope};
use crate::store::StoreError;
use crate::tenants::{Tenant, TenantError, TenantService, TenantStatus};

/// Why a user operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The input is not valid; the text says what would be.
    #[error("{0}")]
    Invalid(String),
    /// The password breaks the tenant's policy; the text says how.
    #[error("{0}")]
    WeakPassword(String),
    #[error("a user with this email or user name already exists in the tenant")]
    Taken,
    #[error("no user {0:?} in this tenant")]
    NotFound(String),
    #[error("tenant {0:?} is disabled")]
    TenantDisabled(String),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(StoreError),
}

/// What an operator or administrator gives to create a user.
#[derive(Debug, Clone, Default)]
pub struct NewAccount<'a> {
    pub email: &'a str,
    pub username: Option<&'a str>,
    pub display_name: Option<&'a str>,
    /// `None`: guard generates a one-time password.
    pub password: Option<String>,
    pub roles: Vec<String>,
}

/// A new user and, when guard chose it, the one-time password to hand over.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    pub user: User,
    pub generated_password: Option<String>,
}

/// User operations.
#[derive(Clone)]
pub struct UserService {
    users: Arc<dyn UserStore>,
    tenants: TenantService,
    hasher: PasswordHasher,
    auth: AuthService,
    events: crate::audit::AuditLog,
    roles: Option<Arc<dyn crate::authz::AuthzStore>>,
}

/// What an administrator may change about a user; `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub username: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    pub status: Option<UserStatus>,
    pub roles: Option<Vec<String>>,
    pub password_change_required: Option<bool>,
}

/// Length of passwords guard generates: about 115 bits.
const GENERATED_PASSWORD_LENGTH: usize = 20;

impl UserService {
    /// A service over `users`, finding tenants through `tenants`.
    pub fn new(
        users: Arc<dyn UserStore>,
        tenants: TenantService,
        hasher: PasswordHasher,
        auth: AuthService,
        events: crate::audit::AuditLog,
    ) -> UserService {
        UserService { users, tenants, hasher, auth, events, roles: None }
    }

    /// Accepts the tenants' own roles (from `roles`) besides the built-in ones.
    pub fn with_tenant_roles(mut self, roles: Arc<dyn crate::authz::AuthzStore>) -> UserService {
        self.roles = Some(roles);
        self
    }

    /// Refuses roles that are neither built in nor defined by the tenant, so that a
    /// typo cannot silently grant nothing.
    async fn check_roles(&self, tenant: &Tenant, roles: &[String]) -> Result<(), UserError> {
        let builtin = |r: &str| crate::authz::builtin::BUILTIN_ROLES.iter().any(|(name, _)| *name == r);
        let mut known: Vec<String> =
            crate::authz::builtin::BUILTIN_ROLES.iter().map(|(n, _)| (*n).to_owned()).collect();
        if roles.iter().all(|r| builtin(r)) {
            return Ok(());
        }
        if let Some(store) = &self.roles {
            known.extend(store.roles(tenant.id).await.map_err(UserError::Store)?.into_iter().map(|r| r.name));
        }
        match roles.iter().find(|r| !known.contains(r)) {
            Some(unknown) => Err(UserError::Invalid(format!(
                "{unknown:?} is not a role of this tenant; roles: {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    async fn active_tenant(&self, reference: &str) -> Result<Tenant, UserError> {
        let tenant = self.tenants.find(reference).await?;
        if tenant.status == TenantStatus::Disabled {
            return Err(UserError::TenantDisabled(tenant.slug.to_string()));
        }
        Ok(tenant)
    }

    /// Creates a user in the tenant named by `tenant`. Without a password, guard
    /// generates one, returns it once, and the user must replace it at first sign-in.
    pub async fn create(&self, actor: Actor, tenant: &str, account: NewAccount<'_>) -> Result<CreatedUser, UserError> {
        let NewAccount { email, username, display_name, password, roles } = account;
        let tenant = self.active_tenant(tenant).await?;
        self.check_roles(&tenant, &roles).await?;
        let email = Email::parse(email).map_err(UserError::Invalid)?;
        let username = username.map(Username::parse).transpose().map_err(UserError::Invalid)?;
        let display_name = display_name.map(DisplayName::parse).transpose().map_err(UserError::Invalid)?;
        let (password, generated) = match password {
            Some(p) => {
                let context =
                    PasswordContext { email: Some(email.as_str()), username: username.as_ref().map(Username::as_str) };
                PasswordPolicy::of(&tenant.settings)
                    .check(&p, context)
                    .map_err(|e| UserError::WeakPassword(e.to_string()))?;
                (p, false)
            }
            None => {
                let p = crate::secret_gen::readable_secret(GENERATED_PASSWORD_LENGTH)
                    .map_err(|e| UserError::Internal(format!("no randomness: {e}")))?;
                (p, true)
            }
        };
        let password_hash = self.hasher.hash(password.clone()).await.map_err(|e| UserError::Internal(e.to_string()))?;
        let new = NewUser {
            id: UserId::generate(),
            tenant: tenant.id,
            email,
            username,
            display_name,
            status: UserStatus::Active,
            password_hash: Some(password_hash),
            password_change_required: generated,
            roles,
        };
        let record = self.events.record(
            &Event::success("user.created", actor)
                .tenant(tenant.id.0)
                .target(new.id.to_string())
                .details(json!({ "generated_password": generated })),
        );
        let user = match self.users.create(&new, &record).await {
            Ok(user) => user,
            Err(StoreError::Conflict(_)) => return Err(UserError::Taken),
            Err(e) => return Err(UserError::Store(e)),
        };
        self.events.committed(&record);
        Ok(CreatedUser { user, generated_password: generated.then_some(password) })
    }

    /// The user named by `reference` (email or id) in the tenant.
    pub async fn find(&self, tenant: &str, reference: &str) -> Result<User, UserError> {
        let tenant = self.tenants.find(tenant).await?;
        let found = match Uuid::parse_str(reference) {
            Ok(id) => self.users.get(tenant.id, UserId(id)).await,
            Err(_) => match Email::parse(reference) {
                Ok(email) => self.users.get_by_email(tenant.id, &email).await,
                Err(_) => Ok(None),
            },
        };
        found.map_err(UserError::Store)?.ok_or_else(|| UserError::NotFound(reference.to_owned()))
    }

    /// Up to `limit` (1 to 500) users of the tenant after the cursor.
    pub async fn list(
        &self,
        tenant: &str,
        email_prefix: Option<&str>,
        status: Option<UserStatus>,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<UserPage, UserError> {
        let tenant = self.tenants.find(tenant).await?;
        let filter = UserFilter { email_prefix: email_prefix.map(|p| p.trim().to_lowercase()), status };
        self.users.list(tenant.id, &filter, after, limit.clamp(1, 500)).await.map_err(UserError::Store)
    }

    /// Disables the user: no more sign-ins, and their sessions end.
    pub async fn disable(&self, actor: Actor, tenant: &str, reference: &str) -> Result<User, UserError> {
        let update = UserUpdate { status: Some(UserStatus::Disabled), ..UserUpdate::default() };
        self.update(actor, tenant, reference, update).await
    }

    /// Applies an administrator's change. A status other than active or pending, or
    /// a required password change, ends the user's sessions.
    pub async fn update(
        &self,
        actor: Actor,
        tenant: &str,
        reference: &str,
        update: UserUpdate,
    ) -> Result<User, UserError> {
        let user = self.find(tenant, reference).await?;
        if let Some(roles) = &update.roles {
            let tenant = self.tenants.find(tenant).await?;
            self.check_roles(&tenant, roles).await?;
        }
        let change = UserChange {
            status: update.status,
            username: parse_optional(update.username, Username::parse)?,
            display_name: parse_optional(update.display_name, DisplayName::parse)?,
            roles: update.roles,
            password_hash: None,
            password_change_required: update.password_change_required,
        };
        let kind = if change.status == Some(UserStatus::Disabled) { "user.disabled" } else { "user.updated" };
        let record = self.events.record(
            &Event::success(kind, actor.clone()).tenant(user.tenant.0).target(user.id.to_string()).details(json!({
                "status": change.status.map(UserStatus::as_str),
                "roles": change.roles,
                "password_change_required": change.password_change_required,
            })),
        );
        let updated = match self.users.update(user.tenant, user.id, &change, &record).await {
            Ok(u) => u,
            Err(StoreError::Conflict(_)) => return Err(UserError::Taken),
            Err(StoreError::NotFound) => return Err(UserError::NotFound(reference.to_owned())),
            Err(e) => return Err(UserError::Store(e)),
        };
        self.events.committed(&record);
        let ends_sessions = matches!(change.status, Some(UserStatus::Disabled | UserStatus::Locked))
            || change.password_change_required == Some(true);
        if ends_sessions {
            let scope = SessionScope { tenant: Some(user.tenant), user: Some(user.id), except: None };
            self.auth.revoke_all(actor, scope).await.map_err(UserError::Store)?;
        } else {
            self.auth.forget_user(&updated).await.map_err(UserError::Store)?;
        }
        Ok(updated)
    }

    /// Makes every user of the tenant choose a new password at their next sign-in,
    /// ending all their sessions now; returns how many users.
    pub async fn force_password_change_all(&self, actor: Actor, tenant: &str) -> Result<u64, UserError> {
        let tenant = self.tenants.find(tenant).await?;
        let record = self.events.record(
            &Event::success("user.password_change_required", actor.clone())
                .tenant(tenant.id.0)
                .details(json!({ "all": true })),
        );
        let count = self.users.require_password_change_all(tenant.id, &record).await.map_err(UserError::Store)?;
        self.events.committed(&record);
        let scope = SessionScope { tenant: Some(tenant.id), user: None, except: None };
        self.auth.revoke_all(actor, scope).await.map_err(UserError::Store)?;
        Ok(count)
    }

    /// The user store, for the account flows built on it.
    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.users
    }

    /// Deletes the user for good.
    pub async fn delete(&self, actor: Actor, tenant: &str, reference: &str) -> Result<User, UserError> {
        let user = self.find(tenant, reference).await?;
        // Cached sessions would outlive the rows the deletion cascades to.
        self.auth.forget_user(&user).await.map_err(UserError::Store)?;
        let record = self
            .events
            .record(&Event::success("user.deleted", actor).tenant(user.tenant.0).target(user.id.to_string()));
        if !self.users.delete(user.tenant, user.id, &record).await.map_err(UserError::Store)? {
            return Err(UserError::NotFound(reference.to_owned()));
        }
        self.events.committed(&record);
        Ok(user)
    }
}

/// A field an update may set, clear (`Some(None)`) or leave (`None`).
fn parse_optional<T>(
    value: Option<Option<String>>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<Option<T>>, UserError> {
    value.map(|v| v.as_deref().map(parse).transpose()).transpose().map_err(UserError::Invalid)
}
