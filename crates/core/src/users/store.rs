//! Storage of users. Every method takes the tenant: no query can reach another
//! tenant's users.

use async_trait::async_trait;

use super::model::{DisplayName, Email, NewUser, User, UserId, UserStatus, Username};
use crate::store::StoreError;
use crate::tenants::TenantId;

/// Which users a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Only emails starting with this (already lower case).
    pub email_prefix: Option<String>,
    pub status: Option<UserStatus>,
}

/// Columns to change; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserChange {
    pub status: Option<UserStatus>,
    pub username: Option<Option<Username>>,
    pub display_name: Option<Option<DisplayName>>,
    pub roles: Option<Vec<String>>,
    /// A new PHC password hash.
    pub password_hash: Option<String>,
    pub password_change_required: Option<bool>,
}

impl UserChange {
    /// A change of status only.
    pub fn status(status: UserStatus) -> UserChange {
        UserChange { status: Some(status), ..UserChange::default() }
    }

    /// Whether the change ends the user's outstanding emailed links (reset and
    /// verification): a new password, or a disabled account.
    pub fn ends_email_tokens(&self) -> bool {
        self.password_hash.is_some() || self.status == Some(UserStatus::Disabled)
    }
}

/// One page of users, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPage {
    pub users: Vec<User>,
    pub next_cursor: Option<UserId>,
}

/// Users in the database.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user; `Conflict` when the email or user name is taken in the tenant.
    async fn create(&self, user: &NewUser, audit: &crate::audit::AuditRecord) -> Result<User, StoreError>;
    /// The user with this id in this tenant.
    async fn get(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError>;
    /// The user with this email in this tenant.
    async fn get_by_email(&self, tenant: TenantId, email: &Email) -> Result<Option<User>, StoreError>;
    /// Up to `limit` users after `after` matching `filter`, oldest first.
    async fn list(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<UserPage, StoreError>;
    /// Applies `change`; `NotFound` when the user is not in this tenant, `Conflict`
    /// when a new user name is taken.
    async fn update(
        &self,
        tenant: TenantId,
        id: UserId,
        change: &UserChange,
        audit: &crate::audit::AuditRecord,
    ) -> Result<User, StoreError>;
    /// The user's password hash, if any.
    async fn password_hash(&self, tenant: TenantId, id: UserId) -> Result<Option<String>, StoreError>;
    /// Makes every user of the tenant choose a new password at next sign-in.
    async fn require_password_change_all(
        &self,
        tenant: TenantId,
        audit: &crate::audit::AuditRecord,
    ) -> Result<u64, StoreError>;
    /// Removes the user; false when the user is not in this tenant.
    async fn delete(&self, tenant: TenantId, id: UserId, audit: &crate::audit::AuditRecord)
    -> Result<bool, StoreError>;
    /// The user with this email and their password hash, for sign-in.
    async fn credentials(&self, tenant: TenantId, email: &Email) -> Result<Option<(User, Option<String>)>, StoreError>;
    /// Records a successful sign-in at `at`, replacing the password hash when given
    /// (made with today's parameters).
    async fn record_login(
        &self,
        tenant: TenantId,
        id: UserId,
        at: time::OffsetDateTime,
        new_hash: Option<String>,
    ) -> Result<(), StoreError>;
}
