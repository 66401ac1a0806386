//! Self-service account flows: sign-up, email verification, password reset by email
//! and password change. Every flow that proves or changes a password ends the
//! sessions it should, and tells the user by email.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;

use crate::email::{EmailStore, EmailTokenPurpose, NewEmailToken, OutboxSender, Template};
use crate::events::{Actor, Event, EventSink, Outcome};
use crate::passwords::{PasswordContext, PasswordHasher, PasswordPolicy};
use crate::security::{Admission, Refusal};
use crate::sessions::{AuthService, Authenticated, SessionScope, SessionToken};
use crate::store::StoreError;
use crate::tenants::Tenant;
use crate::users::{DisplayName, Email, NewUser, User, UserChange, UserId, UserStatus, UserStore, Username};

/// How long a verification link works.
pub const VERIFY_EMAIL_LIFETIME: time::Duration = time::Duration::hours(24);
/// How long a password reset link works.
pub const PASSWORD_RESET_LIFETIME: time::Duration = time::Duration::hours(1);

/// Why an account flow was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The input is not valid; the text says what would be.
    #[error("{0}")]
    Invalid(String),
    /// The new password breaks the tenant's policy.
    #[error("{0}")]
    WeakPassword(String),
    #[error("an account with this email or user name already exists")]
    Taken,
    /// The emailed token is unknown, used or expired.
    #[error("the link is not valid: it may have expired or been used already")]
    InvalidToken,
    /// The current password given for a change is wrong.
    #[error("the current password is not correct")]
    WrongPassword,
    /// The account failed recently: wait this long before the next try.
    #[error("too many wrong passwords for this account")]
    Delayed(std::time::Duration),
    /// The account is locked for this long.
    #[error("the account is locked")]
    Locked(std::time::Duration),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Self-service account flows.
#[derive(Clone)]
pub struct AccountService {
    users: Arc<dyn UserStore>,
    email: Arc<dyn EmailStore>,
    outbox: OutboxSender,
    auth: AuthService,
    hasher: PasswordHasher,
    events: crate::audit::AuditLog,
    public_url: Arc<str>,
}

/// What [`AccountService::signup`] did. Both answer the caller the same way, so
/// that sign-up does not tell who has an account.
#[derive(Debug, Clone)]
pub enum SignedUp {
    /// A new account, pending verification; the verification link was mailed.
    Created(User),
    /// The email already had an account: its owner was mailed a notice instead.
    Existing,
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

fn human(duration: time::Duration) -> String {
    match duration.whole_hours() {
        1 => "1 hour".to_owned(),
        h => format!("{h} hours"),
    }
}

impl AccountService {
    /// Flows over these stores; links in emails start with `public_url`.
    pub fn new(
        users: Arc<dyn UserStore>,
        email: Arc<dyn EmailStore>,
        outbox: OutboxSender,
        auth: AuthService,
        hasher: PasswordHasher,
        events: crate::audit::AuditLog,
        public_url: &str,
    ) -> AccountService {
        AccountService {
            users,
            email,
            outbox,
            auth,
            hasher,
            events,
            public_url: public_url.trim_end_matches('/').into(),
        }
    }

    /// The outbox emails go through.
    pub fn outbox(&self) -> &OutboxSender {
        &self.outbox
    }

    fn check_password(
        &self,
        tenant: &Tenant,
        password: &str,
        email: &Email,
        username: Option<&Username>,
    ) -> Result<(), AccountError> {
        let context = PasswordContext { email: Some(email.as_str()), username: username.map(Username::as_str) };
        PasswordPolicy::of(&tenant.settings)
            .check(password, context)
            .map_err(|e| AccountError::WeakPassword(e.to_string()))
    }

    async fn hash(&self, password: String) -> Result<String, AccountError> {
        self.hasher.hash(password).await.map_err(|e| AccountError::Internal(e.to_string()))
    }

    /// Creates an account pending email verification and sends the verification
    /// link. Whether the account may sign in before verifying is the tenant's choice.
    pub async fn signup(
        &self,
        tenant: &Tenant,
        email: &str,
        password: String,
        username: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<SignedUp, AccountError> {
        let email = Email::parse(email).map_err(AccountError::Invalid)?;
        let username = username.map(Username::parse).transpose().map_err(AccountError::Invalid)?;
        let display_name = display_name.map(DisplayName::parse).transpose().map_err(AccountError::Invalid)?;
        self.check_password(tenant, &password, &email, username.as_ref())?;
        let password_hash = self.hash(password).await?;
        let new = NewUser {
            id: UserId::generate(),
            tenant: tenant.id,
            email,
            username,
            display_name,
            status: UserStatus::PendingVerification,
            password_hash: Some(password_hash),
            password_change_required: false,
            roles: Vec::new(),
        };
        let record = self.events.record(
            &Event::success("user.created", Actor::User(new.id.0))
                .tenant(tenant.id.0)
                .target(new.id.to_string())
                .details(json!({ "via": "signup" })),
        );
        let email = new.email.clone();
        let user = match self.users.create(&new, &record).await {
            Ok(user) => user,
            Err(StoreError::Conflict(_)) => {
                let Some(existing) = self.users.get_by_email(tenant.id, &email).await? else {
                    // The user name, not the email, is taken: names are shown to
                    // others anyway, and the person signing up must pick another.
                    return Err(AccountError::Taken);
                };
                self.notify_existing(tenant, &existing).await?;
                return Ok(SignedUp::Existing);
            }
            Err(e) => return Err(e.into()),
        };
        self.events.committed(&record);
        self.send_verification(tenant, &user).await?;
        Ok(SignedUp::Created(user))
    }

    /// Tells the owner of `user` that someone tried to sign up with their address.
    async fn notify_existing(&self, tenant: &Tenant, user: &User) -> Result<(), AccountError> {
        let values = [("email", user.email.as_str()), ("tenant", tenant.name.as_str())];
        self.outbox.queue(Some(tenant.id), Template::AccountExists, user.email.as_str(), &values).await?;
        self.events
            .emit(
                Event::success("user.signup.existing", Actor::System)
                    .tenant(tenant.id.0)
                    .target(user.id.to_string())
                    .outcome(Outcome::Denied),
            )
            .await;
        Ok(())
    }

    async fn new_token(
        &self,
        tenant: &Tenant,
        user: &User,
        purpose: EmailTokenPurpose,
        lifetime: time::Duration,
    ) -> Result<SessionToken, AccountError> {
        let token = SessionToken::generate().map_err(|e| AccountError::Internal(format!("no randomness: {e}")))?;
        let at = now();
        self.email
            .insert_token(&NewEmailToken {
                tenant: tenant.id,
                user: user.id,
                purpose,
                token_hash: token.hash(),
                created_at: at,
                expires_at: at + lifetime,
            })
            .await?;
        Ok(token)
    }

    fn link(&self, path: &str, tenant: &Tenant, token: &SessionToken) -> String {
        format!("{}{path}?tenant={}&token={}", self.public_url, tenant.slug, token.expose())
    }

    /// Sends (again) the link proving the user owns their email address.
    pub async fn send_verification(&self, tenant: &Tenant, user: &User) -> Result<(), AccountError> {
        let token = self.new_token(tenant, user, EmailTokenPurpose::VerifyEmail, VERIFY_EMAIL_LIFETIME).await?;
        let link = self.link("/v1/auth/email/verify", tenant, &token);
        self.mail_link(tenant, user, Template::VerifyEmail, &link, VERIFY_EMAIL_LIFETIME).await
    }

    /// Queues the `template` mail carrying `link`, valid for `lifetime`, to `user`.
    async fn mail_link(
        &self,
        tenant: &Tenant,
        user: &User,
        template: Template,
        link: &str,
        lifetime: time::Duration,
    ) -> Result<(), AccountError> {
        let values = [
            ("email", user.email.as_str()),
            ("tenant", tenant.name.as_str()),
            ("link", link),
            ("expires_in", &human(lifetime)),
        ];
        self.outbox.queue(Some(tenant.id), template, user.email.as_str(), &values).await?;
        Ok(())
    }

    /// Marks the email behind `token` as verified; a pending account becomes active.
    pub async fn verify_email(&self, tenant: &Tenant, token: &str) -> Result<User, AccountError> {
        let user = self.consume(tenant, EmailTokenPurpose::VerifyEmail, token).await?;
        let event = Event::success("user.email_verified", Actor::User(user.id.0))
            .tenant(tenant.id.0)
            .target(user.id.to_string());
        let user = if user.status == UserStatus::PendingVerification {
            let record = self.events.record(&event);
            let change = UserChange::status(UserStatus::Active);
            let user = self.users.update(tenant.id, user.id, &change, &record).await?;
            self.events.committed(&record);
            user
        } else {
            self.events.emit(event).await;
            user
        };
        self.auth.forget_user(&user).await?;
        Ok(user)
    }

    async fn consume(&self, tenant: &Tenant, purpose: EmailTokenPurpose, token: &str) -> Result<User, AccountError> {
        let token = SessionToken::parse(token.trim()).ok_or(AccountError::InvalidToken)?;
        let user = self.email.consume_token(tenant.id, purpose, &token.hash(), now()).await?;
        let user = match user {
            Some(id) => self.users.get(tenant.id, id).await?,
            None => None,
        };
        user.ok_or(AccountError::InvalidToken)
    }

    /// A password reset link for `user` (for an administrator to hand over).
    pub async fn reset_link(&self, tenant: &Tenant, user: &User) -> Result<String, AccountError> {
        let token = self.new_token(tenant, user, EmailTokenPurpose::PasswordReset, PASSWORD_RESET_LIFETIME).await?;
        Ok(self.link("/v1/auth/password/reset", tenant, &token))
    }

    /// Emails `user` a password reset link.
    pub async fn send_reset(&self, tenant: &Tenant, user: &User) -> Result<(), AccountError> {
        let link = self.reset_link(tenant, user).await?;
        self.mail_link(tenant, user, Template::PasswordReset, &link, PASSWORD_RESET_LIFETIME).await?;
        self.events
            .emit(
                Event::success("auth.password.reset_requested", Actor::System)
                    .tenant(tenant.id.0)
                    .target(user.id.to_string()),
            )
            .await;
        Ok(())
    }

    /// Handles "I forgot my password" for `email`: sends a link when the account
    /// exists and may use one, and answers the same either way.
    pub async fn request_reset(&self, tenant: &Tenant, email: &str) -> Result<(), AccountError> {
        let Ok(email) = Email::parse(email) else { return Ok(()) };
        match self.users.get_by_email(tenant.id, &email).await? {
            Some(user) if user.status != UserStatus::Disabled => self.send_reset(tenant, &user).await,
            _ => Ok(()),
        }
    }

    /// [`Self::request_reset`] after the caller has had its answer: the work (a token
    /// and a mail for an existing account, nothing otherwise) would make the answer
    /// slower for an account that exists. A failure is logged.
    pub fn request_reset_later(&self, tenant: Tenant, email: String) {
        let accounts = self.clone();
        tokio::spawn(async move {
            if let Err(error) = accounts.request_reset(&tenant, &email).await {
                tracing::error!(%error, tenant = %tenant.slug, "a password reset request failed");
            }
        });
    }

    /// Sets a new password with a reset token: every session of the user ends, a
    /// locked or unverified account becomes active (the email proved ownership).
    pub async fn confirm_reset(&self, tenant: &Tenant, token: &str, password: String) -> Result<User, AccountError> {
        // Refuse a short or common password before spending the token, so the user can
        // retry; the check against their email and user name needs the account.
        PasswordPolicy::of(&tenant.settings)
            .check(&password, PasswordContext { email: None, username: None })
            .map_err(|e| AccountError::WeakPassword(e.to_string()))?;
        let user = self.consume(tenant, EmailTokenPurpose::PasswordReset, token).await?;
        if user.status == UserStatus::Disabled {
            return Err(AccountError::InvalidToken);
        }
        self.check_password(tenant, &password, &user.email, user.username.as_ref())?;
        let change = UserChange {
            status: matches!(user.status, UserStatus::Locked | UserStatus::PendingVerification)
                .then_some(UserStatus::Active),
            password_hash: Some(self.hash(password).await?),
            password_change_required: Some(false),
            ..UserChange::default()
        };
        let record = self.events.record(
            &Event::success("auth.password.reset", Actor::User(user.id.0))
                .tenant(tenant.id.0)
                .target(user.id.to_string()),
        );
        let user = self.users.update(tenant.id, user.id, &change, &record).await?;
        self.events.committed(&record);
        let scope = SessionScope { tenant: Some(tenant.id), user: Some(user.id), except: None };
        self.auth.revoke_all(Actor::User(user.id.0), scope).await?;
        // A reset proves the owner: the account's failed sign-ins (and lock) end.
        self.auth.brute_force().unlock(Actor::User(user.id.0), tenant.id, user.email.as_str()).await?;
        self.notify_changed(tenant, &user).await?;
        Ok(user)
    }

    /// Changes the caller's password after checking the current one; their other
    /// sessions end. A wrong current password counts against the account as a failed
    /// sign-in from `ip` does (delays, lock, address block), so a stolen session
    /// cannot be used to guess it.
    pub async fn change_password(
        &self,
        tenant: &Tenant,
        who: &Authenticated,
        current: String,
        new: String,
        ip: Option<&str>,
    ) -> Result<User, AccountError> {
        let user = &who.user;
        let account = crate::risk::account_hash(user.email.as_str());
        let brute_force = self.auth.brute_force();
        let admitted = match brute_force.admit(tenant.id, &account).await? {
            Admission::Admitted { failures } => failures,
            Admission::Refused(Refusal::Delayed { retry_after }) => return Err(AccountError::Delayed(retry_after)),
            Admission::Refused(Refusal::Locked { retry_after }) => return Err(AccountError::Locked(retry_after)),
        };
        let stored = self.users.password_hash(tenant.id, user.id).await?;
        let valid = match stored {
            Some(stored) => self.hasher.verify(current, stored).await.map(|v| v.valid),
            None => self.hasher.verify_decoy(current).await.map(|()| false),
        }
        .map_err(|e| AccountError::Internal(e.to_string()))?;
        if !valid {
            brute_force.admitted_failed(tenant.id, admitted, ip).await?;
            let mut event = Event::success("auth.password.change", Actor::User(user.id.0)).tenant(tenant.id.0);
            event.outcome = Outcome::Failure;
            self.events.emit(event.target(user.id.to_string()).details(json!({ "reason": "wrong_password" }))).await;
            return Err(AccountError::WrongPassword);
        }
        // The right password proves the owner, as a sign-in does.
        brute_force.succeeded(tenant.id, &account).await?;
        self.check_password(tenant, &new, &user.email, user.username.as_ref())?;
        let change = UserChange {
            password_hash: Some(self.hash(new).await?),
            password_change_required: Some(false),
            ..UserChange::default()
        };
        let record = self.events.record(
            &Event::success("auth.password.change", Actor::User(user.id.0))
                .tenant(tenant.id.0)
                .target(user.id.to_string()),
        );
        let updated = self.users.update(tenant.id, user.id, &change, &record).await?;
        self.events.committed(&record);
        let scope = SessionScope { tenant: Some(tenant.id), user: Some(user.id), except: Some(who.session.id) };
        self.auth.revoke_all(Actor::User(user.id.0), scope).await?;
        self.auth.forget_user(&updated).await?;
        self.notify_changed(tenant, &updated).await?;
        Ok(updated)
    }

    async fn notify_changed(&self, tenant: &Tenant, user: &User) -> Result<(), AccountError> {
        let time = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
        let values = [("email", user.email.as_str()), ("tenant", tenant.name.as_str()), ("time", time.as_str())];
        self.outbox.queue(Some(tenant.id), Template::PasswordChanged, user.email.as_str(), &values).await?;
        Ok(())
    }
}
