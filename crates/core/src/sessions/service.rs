//! Password sign-in, session authentication and sign-out. A failed sign-in looks the
//! same whatever the reason (unknown email, wrong password, disabled or locked
//! account) and takes the same time: a password is always verified, against a decoy
//! hash when there is no account.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{ClientInfo, NewSession, Session, SessionId};
use super::store::SessionStore;
use super::token::SessionToken;
use crate::events::{Actor, Event, EventSink, Outcome};
use crate::passwords::PasswordHasher;
use crate::store::StoreError;
use crate::tenants::{Tenant, TenantStatus};
use crate::users::{Email, User, UserStatus, UserStore};

/// Why a sign-in or an authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Sign-in refused. Deliberately says nothing about which part was wrong.
    #[error("the email or password is not correct")]
    InvalidCredentials,
    /// No live session for the presented token in this tenant.
    #[error("no valid session")]
    Unauthenticated,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(StoreError),
}

/// A successful sign-in: the session, its token (shown once) and the user.
#[derive(Debug, Clone)]
pub struct LoginSuccess {
    pub session: Session,
    pub token: SessionToken,
    pub user: User,
}

/// The caller behind a valid session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: Session,
    pub user: User,
}

/// Sign-in and sessions.
#[derive(Clone)]
pub struct AuthService {
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
    hasher: PasswordHasher,
    events: Arc<dyn EventSink>,
}

/// Use of a session is written back at most this often, so authenticated reads do
/// not each cost a database write.
const TOUCH_EVERY: time::Duration = time::Duration::seconds(60);

fn seconds(n: u64) -> time::Duration {
    time::Duration::try_from(Duration::from_secs(n)).unwrap_or(time::Duration::MAX)
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

impl AuthService {
    /// A service over the given stores.
    pub fn new(
        users: Arc<dyn UserStore>,
        sessions: Arc<dyn SessionStore>,
        hasher: PasswordHasher,
        events: Arc<dyn EventSink>,
    ) -> AuthService {
        AuthService { users, sessions, hasher, events }
    }

    fn failed(&self, tenant: &Tenant, reason: &'static str, target: Option<String>) -> AuthError {
        let mut event = Event::success("auth.login.failure", Actor::System).tenant(tenant.id.0);
        event.outcome = Outcome::Failure;
        event.target = target;
        self.events.emit(event.details(json!({ "reason": reason })));
        AuthError::InvalidCredentials
    }

    /// Signs in with email and password, opening a session in `tenant` (which the
    /// caller has checked is active).
    pub async fn login(
        &self,
        tenant: &Tenant,
        email: &str,
        password: String,
        client: ClientInfo,
    ) -> Result<LoginSuccess, AuthError> {
        let internal = |e: crate::passwords::HashError| AuthError::Internal(e.to_string());
        let found = match Email::parse(email) {
            Ok(email) => self.users.credentials(tenant.id, &email).await.map_err(AuthError::Store)?,
            Err(_) => None,
        };
        let Some((user, Some(stored))) = found else {
            self.hasher.verify_decoy(password).await.map_err(internal)?;
            return Err(self.failed(tenant, "unknown_user", None));
        };
        let verification = self.hasher.verify(password.clone(), stored).await.map_err(internal)?;
        if !verification.valid {
            return Err(self.failed(tenant, "wrong_password", Some(user.id.to_string())));
        }
        let may_sign_in = match user.status {
            UserStatus::Active => true,
            UserStatus::PendingVerification => !tenant.settings.email_verification_required,
            UserStatus::Disabled | UserStatus::Locked => false,
        };
        if !may_sign_in || tenant.status != TenantStatus::Active {
            return Err(self.failed(tenant, user.status.as_str(), Some(user.id.to_string())));
        }
        let rehash =
            if verification.needs_rehash { Some(self.hasher.hash(password).await.map_err(internal)?) } else { None };

        let at = now();
        let token = SessionToken::generate().map_err(|e| AuthError::Internal(format!("no randomness: {e}")))?;
        let expires_at = at + seconds(tenant.settings.session_absolute_lifetime_seconds);
        let idle_expires_at = (at + seconds(tenant.settings.session_idle_timeout_seconds)).min(expires_at);
        let session = Session {
            id: SessionId(Uuid::now_v7()),
            tenant: tenant.id,
            user: user.id,
            created_at: at,
            last_seen_at: at,
            expires_at,
            idle_expires_at,
            client,
        };
        self.sessions
            .create(&NewSession { session: session.clone(), token_hash: token.hash() })
            .await
            .map_err(AuthError::Store)?;
        self.users.record_login(tenant.id, user.id, at, rehash).await.map_err(AuthError::Store)?;
        self.events.emit(
            Event::success("auth.login.success", Actor::User(user.id.0))
                .tenant(tenant.id.0)
                .target(session.id.to_string())
                .details(json!({ "method": "password", "rehashed": verification.needs_rehash })),
        );
        Ok(LoginSuccess { session, token, user })
    }

    /// The live session for `token` in `tenant` and its user. A session of another
    /// tenant, an expired or revoked one, or a user who may no longer sign in, is
    /// `Unauthenticated`.
    pub async fn authenticate(&self, tenant: &Tenant, token: &SessionToken) -> Result<Authenticated, AuthError> {
        let Some(mut session) = self.sessions.find(&token.hash()).await.map_err(AuthError::Store)? else {
            return Err(AuthError::Unauthenticated);
        };
        let at = now();
        if session.tenant != tenant.id || session.expired(at) || tenant.status != TenantStatus::Active {
            return Err(AuthError::Unauthenticated);
        }
        let user = self.users.get(tenant.id, session.user).await.map_err(AuthError::Store)?;
        let Some(user) = user.filter(|u| matches!(u.status, UserStatus::Active | UserStatus::PendingVerification))
        else {
            return Err(AuthError::Unauthenticated);
        };
        if at - session.last_seen_at >= TOUCH_EVERY {
            let idle = seconds(tenant.settings.session_idle_timeout_seconds);
            session.idle_expires_at = (at + idle).min(session.expires_at);
            session.last_seen_at = at;
            self.sessions.touch(session.id, at, session.idle_expires_at).await.map_err(AuthError::Store)?;
        }
        Ok(Authenticated { session, user })
    }

    /// The user's live sessions, newest first.
    pub async fn sessions(&self, who: &Authenticated) -> Result<Vec<Session>, AuthError> {
        self.sessions.list_for_user(who.session.tenant, who.user.id, now()).await.map_err(AuthError::Store)
    }

    /// Ends one of the caller's sessions; false when `id` is not one of theirs.
    pub async fn revoke(&self, who: &Authenticated, id: SessionId) -> Result<bool, AuthError> {
        let revoked = self.sessions.revoke(who.session.tenant, who.user.id, id).await.map_err(AuthError::Store)?;
        if revoked {
            self.events.emit(
                Event::success("auth.session.revoked", Actor::User(who.user.id.0))
                    .tenant(who.session.tenant.0)
                    .target(id.to_string()),
            );
        }
        Ok(revoked)
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, who: &Authenticated) -> Result<(), AuthError> {
        self.sessions.revoke(who.session.tenant, who.user.id, who.session.id).await.map_err(AuthError::Store)?;
        self.events.emit(
            Event::success("auth.logout", Actor::User(who.user.id.0))
                .tenant(who.session.tenant.0)
                .target(who.session.id.to_string()),
        );
        Ok(())
    }
}
