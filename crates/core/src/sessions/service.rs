//! Password sign-in, session authentication (session token or access token), token
//! refresh and sign-out. A failed sign-in looks the same whatever the reason
//! (unknown email, wrong password, disabled or locked account) and takes the same
//! time: a password is always verified, against a decoy hash when there is no account.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::cache::SessionCache;
use super::model::{
    ClientInfo, NewSession, RefreshOutcome, RefreshRotation, RevokedSession, Session, SessionId, SessionScope,
};
use super::rotation::RotationQueue;
use super::store::SessionStore;
use super::token::{SessionToken, TokenHash};
use crate::email::{OutboxSender, Template};
use crate::events::{Actor, Event, EventSink, Outcome};
use crate::keys::{KeyError, TokenService};
use crate::mfa::{CHALLENGE_LIFETIME, ChallengePurpose, MfaStore, NewChallenge};
use crate::passwords::PasswordHasher;
use crate::risk::{self, RiskDecision, RiskService};
use crate::security::{Admission, BruteForce, Refusal};
use crate::store::StoreError;
use crate::tenants::{Tenant, TenantId, TenantStatus};
use crate::users::{Email, User, UserChange, UserId, UserStatus, UserStore};

/// Why a sign-in or an authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Sign-in refused. Deliberately says nothing about which part was wrong.
    #[error("the email or password is not correct")]
    InvalidCredentials,
    /// No live session for the presented token in this tenant.
    #[error("no valid session")]
    Unauthenticated,
    /// The refresh token is unknown, spent or its session has ended.
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    /// The sign-in's risk reached the tenant's refusal threshold.
    #[error("this sign-in was refused as too risky")]
    Denied,
    /// The account failed to sign in recently: the next try must wait.
    #[error("too many failed sign-ins for this account; wait before the next try")]
    Delayed(std::time::Duration),
    /// The account is locked after too many failed sign-ins.
    #[error("this account is locked after too many failed sign-ins")]
    AccountLocked(std::time::Duration),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<KeyError> for AuthError {
    fn from(e: KeyError) -> AuthError {
        match e {
            KeyError::InvalidToken => AuthError::Unauthenticated,
            KeyError::Store(e) => AuthError::Store(e),
            KeyError::Internal(e) => AuthError::Internal(e),
        }
    }
}

/// Tokens handed out on sign-in and refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// Signed JWT access token.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The next refresh token of the session's family (shown once).
    pub refresh_token: SessionToken,
}

/// A successful sign-in: the session, its token (shown once), tokens and the user.
#[derive(Debug, Clone)]
pub struct LoginSuccess {
    pub session: Session,
    pub token: SessionToken,
    pub tokens: IssuedTokens,
    pub user: User,
    /// The tenant requires MFA and this user has no factor yet: enrol before this.
    pub mfa_enrollment_due_at: Option<OffsetDateTime>,
}

/// A correct password that needs a second step: the challenge to complete it with
/// (shown once), what it accepts and until when.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub challenge: SessionToken,
    pub purpose: ChallengePurpose,
    pub methods: &'static [&'static str],
    pub expires_at: OffsetDateTime,
}

/// What a correct password leads to.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    Complete(Box<LoginSuccess>),
    SecondFactor(PendingLogin),
}

/// The caller behind a valid session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authenticated {
    pub session: Session,
    pub user: User,
}

/// What [`AuthService`] is built from.
pub struct AuthParts {
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub cache: Arc<dyn SessionCache>,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub events: crate::audit::AuditLog,
    pub mfa: Arc<dyn MfaStore>,
    pub risk: Arc<RiskService>,
    /// Sends the one-time codes of stepped-up sign-ins.
    pub outbox: OutboxSender,
    pub brute_force: BruteForce,
}

/// Sign-in and sessions.
#[derive(Clone)]
pub struct AuthService {
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
    cache: Arc<dyn SessionCache>,
    tokens: TokenService,
    hasher: PasswordHasher,
    events: crate::audit::AuditLog,
    rotations: Arc<RotationQueue>,
    mfa: Arc<dyn MfaStore>,
    risk: Arc<RiskService>,
    outbox: OutboxSender,
    brute_force: BruteForce,
}

/// Use of a session is written back at most this often, so authenticated reads do
/// not each cost a database write.
const TOUCH_EVERY: time::Duration = time::Duration::seconds(60);

fn seconds(n: u64) -> time::Duration {
    time::Duration::try_from(Duration::from_secs(n)).unwrap_or(time::Duration::MAX)
}

pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

fn new_token() -> Result<SessionToken, AuthError> {
    SessionToken::generate().map_err(|e| AuthError::Internal(format!("no randomness: {e}")))
}

/// True when `user` may use a session of `tenant`.
pub(crate) fn may_use_session(tenant: &Tenant, user: &User) -> bool {
    let status_ok = match user.status {
        UserStatus::Active => true,
        UserStatus::PendingVerification => !tenant.settings.email_verification_required,
        UserStatus::Disabled | UserStatus::Locked => false,
    };
    status_ok && tenant.status == TenantStatus::Active
}

impl AuthService {
    /// A service over the given stores.
    pub fn new(parts: AuthParts) -> AuthService {
        let AuthParts { users, sessions, cache, tokens, hasher, events, mfa, risk, outbox, brute_force } = parts;
        let rotations = Arc::new(RotationQueue::new(sessions.clone()));
        AuthService { users, sessions, cache, tokens, hasher, events, rotations, mfa, risk, outbox, brute_force }
    }

    /// Address blocks and account lockouts.
    pub fn brute_force(&self) -> &BruteForce {
        &self.brute_force
    }

    /// The access token service.
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    async fn failed(
        &self,
        tenant: &Tenant,
        reason: &'static str,
        target: Option<String>,
        client: &ClientInfo,
    ) -> AuthError {
        metrics::counter!("guard_auth_failures_total", "reason" => reason).increment(1);
        let mut event = Event::success("auth.login.failure", Actor::System).tenant(tenant.id.0);
        event.outcome = Outcome::Failure;
        event.target = target;
        self.events.emit(event.details(json!({ "reason": reason, "risk": client.risk }))).await;
        AuthError::InvalidCredentials
    }

    /// Scores a sign-in attempt on `account` (of `user`, when it exists), keeps the
    /// risk with `client`, and refuses it when the tenant's deny threshold is reached.
    pub(crate) async fn assess(
        &self,
        tenant: &Tenant,
        account: &[u8; 32],
        user: Option<UserId>,
        client: &mut ClientInfo,
    ) -> Result<RiskDecision, AuthError> {
        let ip = client.ip.as_deref();
        let signals = self
            .risk
            .signals(tenant.id, account, user, ip, client.device.as_deref())
            .await
            .map_err(AuthError::Store)?;
        let assessed = signals.assess();
        let decision = RiskDecision::of(&assessed, &tenant.settings);
        client.risk = Some(assessed);
        if decision == RiskDecision::Deny {
            // Not recorded as an attempt: refusals cost no password check, and a
            // flood of them must not also cost a write each.
            metrics::counter!("guard_auth_failures_total", "reason" => "risk_denied").increment(1);
            let mut event = Event::success("auth.login.denied", Actor::System).tenant(tenant.id.0);
            event.outcome = Outcome::Denied;
            event.target = user.map(|u| u.to_string());
            let details = json!({ "risk": client.risk, "signals": format!("{signals:?}"), "ip": client.ip });
            self.events.emit(event.details(details)).await;
            return Err(AuthError::Denied);
        }
        Ok(decision)
    }

    /// Signs in with email and password in `tenant` (which the caller has checked is
    /// active): a session, or, when the user has a second factor, must enrol one, or
    /// the sign-in's risk asks for one, a challenge for the second step. A sign-in
    /// the risk refuses is refused before the password is looked at, so the refusal
    /// says nothing about it.
    pub async fn login(
        &self,
        tenant: &Tenant,
        email: &str,
        password: String,
        mut client: ClientInfo,
    ) -> Result<LoginOutcome, AuthError> {
        metrics::counter!("guard_auth_attempts_total", "method" => "password").increment(1);
        let internal = |e: crate::passwords::HashError| AuthError::Internal(e.to_string());
        let store = AuthError::Store;
        let found = match Email::parse(email) {
            Ok(email) => self.users.credentials(tenant.id, &email).await.map_err(store)?,
            Err(_) => None,
        };
        let account = risk::account_hash(email);
        let admitted = match self.brute_force.admit(tenant.id, &account).await.map_err(store)? {
            Admission::Admitted { failures } => failures,
            Admission::Refused(refusal) => {
                return Err(match refusal {
                    Refusal::Delayed { retry_after } => {
                        metrics::counter!("guard_auth_failures_total", "reason" => "account_delayed").increment(1);
                        AuthError::Delayed(retry_after)
                    }
                    Refusal::Locked { retry_after } => {
                        metrics::counter!("guard_auth_failures_total", "reason" => "account_locked").increment(1);
                        AuthError::AccountLocked(retry_after)
                    }
                });
            }
        };
        let decision = self.assess(tenant, &account, found.as_ref().map(|(u, _)| u.id), &mut client).await?;
        let ip = client.ip.clone();
        // The try is counted against the account already (admitted): what is left
        // is the risk signals and the address.
        let failed_attempt = || async {
            self.risk.record_attempt(tenant.id, &account, ip.as_deref(), false).await?;
            self.brute_force.admitted_failed(tenant.id, admitted, ip.as_deref()).await
        };
        let Some((user, Some(stored))) = found else {
            self.hasher.verify_decoy(password).await.map_err(internal)?;
            failed_attempt().await.map_err(store)?;
            return Err(self.failed(tenant, "unknown_user", None, &client).await);
        };
        let verification = self.hasher.verify(password.clone(), stored).await.map_err(internal)?;
        if !verification.valid {
            failed_attempt().await.map_err(store)?;
            return Err(self.failed(tenant, "wrong_password", Some(user.id.to_string()), &client).await);
        }
        if !may_use_session(tenant, &user) {
            failed_attempt().await.map_err(store)?;
            return Err(self.failed(tenant, user.status.as_str(), Some(user.id.to_string()), &client).await);
        }
        self.risk.record_attempt(tenant.id, &account, ip.as_deref(), true).await.map_err(store)?;
        let rehash =
            if verification.needs_rehash { Some(self.hasher.hash(password).await.map_err(internal)?) } else { None };
        let at = now();
        let has_totp =
            self.mfa.totp(tenant.id, user.id).await.map_err(store)?.is_some_and(|f| f.confirmed_at.is_some());
        let has_webauthn = !self.mfa.passkeys(tenant.id, user.id).await.map_err(store)?.is_empty();
        let has_factor = has_totp || has_webauthn;
        let mut enrollment_due = None;
        if !has_factor && tenant.settings.mfa_required {
            let due = at + seconds(tenant.settings.mfa_enrollment_grace_seconds);
            let due = self.mfa.enrollment_deadline(tenant.id, user.id, due).await.map_err(store)?;
            enrollment_due = Some(due).filter(|due| at < *due);
        }
        let must_enrol = !has_factor && tenant.settings.mfa_required && enrollment_due.is_none();
        let step_up = decision == RiskDecision::RequireMfa;
        if !(has_factor || must_enrol || step_up) {
            let mut success = self.open_session(tenant, user, client, rehash, &["pwd"]).await?;
            success.mfa_enrollment_due_at = enrollment_due;
            return Ok(LoginOutcome::Complete(Box::new(success)));
        }
        // The password was right: only the second step can count against the account.
        self.brute_force.admitted_right(tenant.id, &account).await.map_err(store)?;
        if let Some(hash) = rehash {
            let change = UserChange { password_hash: Some(hash), ..UserChange::default() };
            let event =
                Event::success("user.password_rehashed", Actor::System).tenant(tenant.id.0).target(user.id.to_string());
            let record = self.events.record(&event);
            self.users.update(tenant.id, user.id, &change, &record).await.map_err(store)?;
            self.events.committed(&record);
        }
        let (purpose, methods): (_, &'static [&'static str]) = match (has_totp, has_webauthn) {
            (true, true) => (ChallengePurpose::Verify, &["totp", "webauthn", "recovery_code"]),
            (true, false) => (ChallengePurpose::Verify, &["totp", "recovery_code"]),
            (false, true) => (ChallengePurpose::Verify, &["webauthn", "recovery_code"]),
            // A sign-in the risk signals flag proves the account by an emailed code
            // first, even when a factor must be enrolled: a new factor is not to be
            // set up on the strength of a password alone (the enrolment follows).
            (false, false) if must_enrol && !step_up => (ChallengePurpose::Enroll, &["totp", "webauthn"]),
            (false, false) => (ChallengePurpose::Verify, &["email_code"]),
        };
        let email_code =
            if methods == ["email_code"] { Some(self.send_login_code(tenant, &user, &client).await?) } else { None };
        let pending = self.new_challenge(tenant, &user, purpose, methods, &client, email_code).await?;
        self.events
            .emit(Event::success("auth.login.mfa_required", Actor::User(user.id.0)).tenant(tenant.id.0).details(
                json!({ "purpose": purpose.as_str(), "methods": methods, "risk": client.risk, "step_up": step_up }),
            ))
            .await;
        Ok(LoginOutcome::SecondFactor(pending))
    }

    /// Stores a sign-in challenge for `user`'s next step.
    pub(crate) async fn new_challenge(
        &self,
        tenant: &Tenant,
        user: &User,
        purpose: ChallengePurpose,
        methods: &'static [&'static str],
        client: &ClientInfo,
        email_code_hash: Option<TokenHash>,
    ) -> Result<PendingLogin, AuthError> {
        let challenge = new_token()?;
        let at = now();
        let expires_at = at + CHALLENGE_LIFETIME;
        let new = NewChallenge {
            id_hash: challenge.hash(),
            tenant: tenant.id,
            user: user.id,
            purpose,
            created_at: at,
            expires_at,
            client: client.clone(),
            email_code_hash,
        };
        self.mfa.create_challenge(&new).await.map_err(AuthError::Store)?;
        Ok(PendingLogin { challenge, purpose, methods, expires_at })
    }

    /// Whether `user` must enrol a factor before signing in: the tenant requires one,
    /// the user has none, and the enrolment grace period is over.
    pub(crate) async fn must_enrol(&self, tenant: &Tenant, user: &User) -> Result<bool, StoreError> {
        if !tenant.settings.mfa_required {
            return Ok(false);
        }
        let has_totp = self.mfa.totp(tenant.id, user.id).await?.is_some_and(|f| f.confirmed_at.is_some());
        if has_totp || !self.mfa.passkeys(tenant.id, user.id).await?.is_empty() {
            return Ok(false);
        }
        let at = now();
        let due = at + seconds(tenant.settings.mfa_enrollment_grace_seconds);
        Ok(self.mfa.enrollment_deadline(tenant.id, user.id, due).await? <= at)
    }

    /// Counts a failed sign-in from `ip` in the risk signals and against the address,
    /// and against `account` (delays, lock) when the attempt named one.
    pub(crate) async fn count_failure(
        &self,
        tenant: TenantId,
        account: Option<&[u8; 32]>,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        // The risk signals count attempts by account; one that named none counts
        // under the address alone.
        let anonymous = risk::account_hash(&format!("address:{}", ip.unwrap_or_default()));
        self.risk.record_attempt(tenant, account.unwrap_or(&anonymous), ip, false).await?;
        match account {
            Some(account) => self.brute_force.failed(tenant, account, ip).await,
            None => self.brute_force.address_failed(tenant, ip).await,
        }
    }

    /// Emails `user` a one-time code for the second step of a risky sign-in; its hash.
    async fn send_login_code(&self, tenant: &Tenant, user: &User, client: &ClientInfo) -> Result<TokenHash, AuthError> {
        let code = crate::mfa::new_email_code().map_err(AuthError::Internal)?;
        let time = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
        let values = [
            ("email", user.email.as_str()),
            ("tenant", tenant.name.as_str()),
            ("code", code.as_str()),
            ("ip", client.ip.as_deref().unwrap_or("unknown")),
            ("time", time.as_str()),
        ];
        self.outbox
            .queue(Some(tenant.id), Template::LoginCode, user.email.as_str(), &values)
            .await
            .map_err(AuthError::Store)?;
        Ok(crate::mfa::email_code_hash(&code))
    }

    /// Opens a session for `user`, who proved who they are with `methods` (recorded
    /// with the sign-in), storing `rehash` as their new password hash when given.
    pub(crate) async fn open_session(
        &self,
        tenant: &Tenant,
        user: User,
        client: ClientInfo,
        rehash: Option<String>,
        methods: &[&str],
    ) -> Result<LoginSuccess, AuthError> {
        let at = now();
        let token = new_token()?;
        let refresh = new_token()?;
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
            amr: Session::amr_of(methods),
        };
        let rehashed = rehash.is_some();
        let record = self.events.record(
            &Event::success("auth.login.success", Actor::User(user.id.0))
                .tenant(tenant.id.0)
                .target(session.id.to_string())
                .details(json!({ "amr": methods, "rehashed": rehashed, "risk": session.client.risk, "ip": session.client.ip })),
        );
        let new = NewSession { session: session.clone(), token_hash: token.hash(), refresh_hash: refresh.hash() };
        self.sessions.create(&new, &record).await.map_err(AuthError::Store)?;
        self.events.committed(&record);
        self.users.record_login(tenant.id, user.id, at, rehash).await.map_err(AuthError::Store)?;
        let client = &session.client;
        if let Err(e) = self.risk.remember(tenant, user.id, client.ip.as_deref(), client.device.as_deref(), at).await {
            tracing::warn!(error = %e, user = %user.id, "cannot remember the sign-in's device and address");
        }
        // Failures are forgotten only now: a right password whose second step fails
        // still counts towards the account's lock.
        let account = risk::account_hash(user.email.as_str());
        self.brute_force.succeeded(tenant.id, &account).await.map_err(AuthError::Store)?;
        let (access_token, expires_in) = self.tokens.issue(tenant, &session).await?;
        let tokens = IssuedTokens { access_token, expires_in, refresh_token: refresh };
        Ok(LoginSuccess { session, token, tokens, user, mfa_enrollment_due_at: None })
    }

    /// Checks a session found in the cache or the database, and pushes back its idle
    /// expiry when due.
    async fn live(&self, tenant: &Tenant, mut who: Authenticated) -> Result<Authenticated, AuthError> {
        let at = now();
        if who.session.tenant != tenant.id || who.session.expired(at) || !may_use_session(tenant, &who.user) {
            return Err(AuthError::Unauthenticated);
        }
        if at - who.session.last_seen_at >= TOUCH_EVERY {
            let idle = seconds(tenant.settings.session_idle_timeout_seconds);
            who.session.idle_expires_at = (at + idle).min(who.session.expires_at);
            who.session.last_seen_at = at;
            self.sessions.touch(who.session.id, at, who.session.idle_expires_at).await.map_err(AuthError::Store)?;
        }
        Ok(who)
    }

    async fn with_user(&self, tenant: &Tenant, session: Option<Session>) -> Result<Authenticated, AuthError> {
        let session = session.ok_or(AuthError::Unauthenticated)?;
        if session.tenant != tenant.id {
            return Err(AuthError::Unauthenticated);
        }
        let user = self.users.get(tenant.id, session.user).await.map_err(AuthError::Store)?;
        Ok(Authenticated { session, user: user.ok_or(AuthError::Unauthenticated)? })
    }

    /// The live session for `token` in `tenant` and its user. A session of another
    /// tenant, an expired or revoked one, or a user who may no longer sign in, is
    /// `Unauthenticated`.
    pub async fn authenticate(&self, tenant: &Tenant, token: &SessionToken) -> Result<Authenticated, AuthError> {
        let hash = token.hash();
        let (who, cached) = match self.cache.by_token(&hash).await {
            Some(who) => (who, true),
            None => {
                let session = self.sessions.find(&hash).await.map_err(AuthError::Store)?;
                (self.with_user(tenant, session).await?, false)
            }
        };
        let seen = who.session.last_seen_at;
        let who = self.live(tenant, who).await?;
        if !cached || who.session.last_seen_at != seen {
            self.cache.put(Some(&hash), &who).await;
        }
        Ok(who)
    }

    /// The live session behind an access token of `tenant`: the token must verify and
    /// its session still be live, so signing out ends its access tokens too.
    pub async fn authenticate_access(&self, tenant: &Tenant, token: &str) -> Result<Authenticated, AuthError> {
        let claims = self.tokens.verify(tenant, token).await?;
        self.live_by_id(tenant, claims.sid, Some(claims.sub)).await
    }

    /// The live session `id` of `tenant` and its user (who must be `user` when given),
    /// read through the cache and cached again when read from the store.
    async fn live_by_id(
        &self,
        tenant: &Tenant,
        id: SessionId,
        user: Option<UserId>,
    ) -> Result<Authenticated, AuthError> {
        let (who, cached) = match self.cache.by_id(id).await {
            Some(who) => (who, true),
            None => {
                let session = self.sessions.get(tenant.id, id).await.map_err(AuthError::Store)?;
                (self.with_user(tenant, session).await?, false)
            }
        };
        if user.is_some_and(|user| who.user.id != user) {
            return Err(AuthError::Unauthenticated);
        }
        let seen = who.session.last_seen_at;
        let who = self.live(tenant, who).await?;
        if !cached || who.session.last_seen_at != seen {
            self.cache.put(None, &who).await;
        }
        Ok(who)
    }

    /// Spends a refresh token for a new access token and the next refresh token. A
    /// refresh token presented twice revokes its session: whoever replayed it, the
    /// family is no longer trusted.
    pub async fn refresh(&self, tenant: &Tenant, presented: &str) -> Result<IssuedTokens, AuthError> {
        metrics::counter!("guard_auth_attempts_total", "method" => "refresh_token").increment(1);
        let invalid = |reason: &'static str| {
            metrics::counter!("guard_auth_failures_total", "reason" => reason).increment(1);
            AuthError::InvalidRefreshToken
        };
        let Some(presented) = SessionToken::parse(presented) else {
            return Err(invalid("invalid_refresh_token"));
        };
        let next = new_token()?;
        let rotation = RefreshRotation { tenant: tenant.id, presented: presented.hash(), next: next.hash() };
        let outcome = self.rotations.rotate(rotation).await.map_err(AuthError::Store)?;
        let session_id = match outcome {
            RefreshOutcome::Rotated(id) => id,
            RefreshOutcome::Unknown => return Err(invalid("invalid_refresh_token")),
            RefreshOutcome::Reused(id) => {
                let event = Event::success("auth.refresh.reuse_detected", Actor::System)
                    .tenant(tenant.id.0)
                    .outcome(Outcome::Denied)
                    .target(id.to_string());
                let record = self.events.record(&event.clone().details(json!({ "action": "session_revoked" })));
                match self.sessions.revoke(tenant.id, None, id, &record).await.map_err(AuthError::Store)? {
                    Some(revoked) => {
                        self.events.committed(&record);
                        self.cache.forget(&[revoked.id]).await;
                    }
                    // The session had already ended: the reuse is still worth recording.
                    None => self.events.emit(event.details(json!({ "action": "none" }))).await,
                }
                return Err(invalid("refresh_token_reused"));
            }
        };
        // A revoked session is not in the cache (revocation removes it), so a cached
        // one is live as far as revocation goes; expiry is checked either way.
        let who = self.live_by_id(tenant, session_id, None).await.map_err(|e| match e {
            AuthError::Unauthenticated => invalid("session_ended"),
            other => other,
        })?;
        let (access_token, expires_in) = self.tokens.issue(tenant, &who.session).await?;
        Ok(IssuedTokens { access_token, expires_in, refresh_token: next })
    }

    /// The user's live sessions, newest first.
    pub async fn sessions(&self, who: &Authenticated) -> Result<Vec<Session>, AuthError> {
        self.sessions.list_for_user(who.session.tenant, who.user.id, now()).await.map_err(AuthError::Store)
    }

    /// Ends one of the caller's sessions; false when `id` is not one of theirs.
    pub async fn revoke(&self, who: &Authenticated, id: SessionId) -> Result<bool, AuthError> {
        let record = self.events.record(
            &Event::success("auth.session.revoked", Actor::User(who.user.id.0))
                .tenant(who.session.tenant.0)
                .target(id.to_string()),
        );
        let revoked =
            self.sessions.revoke(who.session.tenant, Some(who.user.id), id, &record).await.map_err(AuthError::Store)?;
        let Some(revoked) = revoked else { return Ok(false) };
        self.events.committed(&record);
        self.cache.forget(&[revoked.id]).await;
        Ok(true)
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, who: &Authenticated) -> Result<(), AuthError> {
        let record = self.events.record(
            &Event::success("auth.logout", Actor::User(who.user.id.0))
                .tenant(who.session.tenant.0)
                .target(who.session.id.to_string()),
        );
        let revoked = self
            .sessions
            .revoke(who.session.tenant, Some(who.user.id), who.session.id, &record)
            .await
            .map_err(AuthError::Store)?;
        self.cache.forget(&[who.session.id]).await;
        if revoked.is_some() {
            self.events.committed(&record);
        }
        Ok(())
    }

    /// Ends every live session in `scope` (with their refresh and access tokens).
    pub async fn revoke_all(&self, actor: Actor, scope: SessionScope) -> Result<Vec<RevokedSession>, StoreError> {
        let mut event = Event::success("auth.session.revoked_all", actor);
        if let Some(tenant) = scope.tenant {
            event = event.tenant(tenant.0);
        }
        if let Some(user) = scope.user {
            event = event.target(user.to_string());
        }
        let record = self.events.record(&event.details(json!({ "except": scope.except })));
        let revoked = self.sessions.revoke_all(scope, &record).await?;
        self.events.committed(&record);
        let ids: Vec<SessionId> = revoked.iter().map(|r| r.id).collect();
        for chunk in ids.chunks(1000) {
            self.cache.forget(chunk).await;
        }
        Ok(revoked)
    }

    /// Forgets cached copies of the user's sessions after their account changed.
    pub async fn forget_user(&self, who: &User) -> Result<(), StoreError> {
        let sessions = self.sessions.list_for_user(who.tenant, who.id, now()).await?;
        let ids: Vec<SessionId> = sessions.iter().map(|s| s.id).collect();
        self.cache.forget(&ids).await;
        Ok(())
    }

    /// How many sessions are live now.
    pub async fn count_live(&self) -> Result<u64, StoreError> {
        self.sessions.count_live(now()).await
    }
}
