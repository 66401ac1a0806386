//! The rules around users: valid identifiers, the tenant's password policy, hashed
//! passwords only, and an event for every change.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::model::{DisplayName, Email, NewUser, User, UserId, UserStatus, Username};
use super::store::{UserFilter, UserPage, UserStore};
use crate::events::{Actor, Event, EventSink};
use crate::passwords::{PasswordContext, PasswordHasher, PasswordPolicy};
use crate::store::StoreError;
use crate::tenants::{Tenant, TenantError, TenantService, TenantStatus};

/// Why a user operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The input is not valid; the text says what would be.
    #[error("{0}")]
    Invalid(String),
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
    events: Arc<dyn EventSink>,
}

/// Length of passwords guard generates: about 115 bits.
const GENERATED_PASSWORD_LENGTH: usize = 20;

impl UserService {
    /// A service over `users`, finding tenants through `tenants`.
    pub fn new(
        users: Arc<dyn UserStore>,
        tenants: TenantService,
        hasher: PasswordHasher,
        events: Arc<dyn EventSink>,
    ) -> UserService {
        UserService { users, tenants, hasher, events }
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
    pub async fn create(
        &self,
        actor: Actor,
        tenant: &str,
        email: &str,
        username: Option<&str>,
        display_name: Option<&str>,
        password: Option<String>,
    ) -> Result<CreatedUser, UserError> {
        let tenant = self.active_tenant(tenant).await?;
        let email = Email::parse(email).map_err(UserError::Invalid)?;
        let username = username.map(Username::parse).transpose().map_err(UserError::Invalid)?;
        let display_name = display_name.map(DisplayName::parse).transpose().map_err(UserError::Invalid)?;
        let (password, generated) = match password {
            Some(p) => {
                let context =
                    PasswordContext { email: Some(email.as_str()), username: username.as_ref().map(Username::as_str) };
                PasswordPolicy::of(&tenant.settings)
                    .check(&p, context)
                    .map_err(|e| UserError::Invalid(e.to_string()))?;
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
        };
        let user = match self.users.create(&new).await {
            Ok(user) => user,
            Err(StoreError::Conflict(_)) => return Err(UserError::Taken),
            Err(e) => return Err(UserError::Store(e)),
        };
        self.events.emit(
            Event::success("user.created", actor)
                .tenant(tenant.id.0)
                .target(user.id.to_string())
                .details(json!({ "generated_password": generated })),
        );
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

    /// Disables the user: no more sign-ins.
    pub async fn disable(&self, actor: Actor, tenant: &str, reference: &str) -> Result<User, UserError> {
        let user = self.find(tenant, reference).await?;
        let user = self.users.set_status(user.tenant, user.id, UserStatus::Disabled).await.map_err(UserError::Store)?;
        self.events.emit(Event::success("user.disabled", actor).tenant(user.tenant.0).target(user.id.to_string()));
        Ok(user)
    }

    /// Deletes the user for good.
    pub async fn delete(&self, actor: Actor, tenant: &str, reference: &str) -> Result<User, UserError> {
        let user = self.find(tenant, reference).await?;
        if !self.users.delete(user.tenant, user.id).await.map_err(UserError::Store)? {
            return Err(UserError::NotFound(reference.to_owned()));
        }
        self.events.emit(Event::success("user.deleted", actor).tenant(user.tenant.0).target(user.id.to_string()));
        Ok(user)
    }
}
