//! Enrolment of TOTP, recovery codes, the second step of a sign-in, and the
//! administrator's reset. Every outcome is counted in
//! guard_mfa_verifications_total{method,result} and emitted as an event.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;

use super::store::{ChallengePurpose, MfaStore};
use super::{CHALLENGE_MAX_ATTEMPTS, totp};
use crate::email::{OutboxSender, Template};
use crate::events::{Actor, Event, EventSink, Outcome};
use crate::keys::MasterKey;
use crate::security::Refusal;
use crate::sessions::service::{may_use_session, now};
use crate::sessions::{AuthError, AuthService, LoginSuccess, SessionToken};
use crate::store::StoreError;
use crate::tenants::Tenant;
use crate::users::{User, UserId, UserStore};

/// Why an MFA operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The challenge is unknown in this tenant, expired, used up or spent.
    #[error("the MFA challenge is not valid: it may have expired, been used, or run out of tries; sign in again")]
    InvalidChallenge,
    /// The code is wrong, expired, or was used already.
    #[error("the code is not correct, has expired, or was used already")]
    InvalidCode,
    /// The operation needs an active factor.
    #[error("no active authenticator: enrol one first (POST /v1/me/mfa/totp)")]
    NotEnrolled,
    /// A second TOTP enrolment while one is active.
    #[error("an authenticator is already active; remove it first (DELETE /v1/me/mfa/totp)")]
    AlreadyEnrolled,
    /// Confirmation without a started enrolment.
    #[error("no authenticator enrolment in progress: start one first (POST /v1/me/mfa/totp)")]
    NoPendingEnrollment,
    /// The tenant requires a factor, so the last one cannot be removed.
    #[error("this tenant requires MFA: the authenticator cannot be removed, only replaced by an administrator reset")]
    Required,
    /// A value in the request is not acceptable; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The WebAuthn answer is not a public key credential in JSON.
    #[error("{0}")]
    MalformedCredential(String),
    /// The WebAuthn answer did not verify (challenge, origin, signature, credential).
    #[error("{0}")]
    WebauthnRejected(String),
    /// The WebAuthn ceremony is unknown in this tenant, expired, or finished already.
    #[error("the WebAuthn ceremony is not valid: it may have expired or been finished already; start again")]
    InvalidCeremony,
    /// The tenant's relying party cannot be built from its settings.
    #[error("passkeys are not configured for this tenant: {0}")]
    WebauthnNotConfigured(String),
    /// No credential with this id belongs to the user.
    #[error("no such passkey of yours")]
    NoSuchPasskey,
    /// The authenticator's credential is registered already in this tenant.
    #[error("this passkey is registered already")]
    CredentialRegistered,
    #[error(transparent)]
    Auth(AuthError),
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for MfaError {
    fn from(e: StoreError) -> MfaError {
        MfaError::Store(e)
    }
}

/// A started TOTP enrolment: what an authenticator app needs (shown once).
#[derive(Debug, Clone)]
pub struct TotpEnrollment {
    /// The secret in base32, for typing in.
    pub secret: String,
    /// The otpauth:// URI the QR code carries.
    pub uri: String,
    /// The QR code as an SVG document.
    pub qr_svg: String,
}

/// A user's factors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaStatus {
    pub totp_active: bool,
    pub totp_pending: bool,
    pub totp_confirmed_at: Option<OffsetDateTime>,
    pub recovery_codes_left: u64,
    pub webauthn_credentials: u64,
    pub required: bool,
}

impl MfaStatus {
    /// True when the user has a factor to sign in with.
    pub fn active(&self) -> bool {
        self.totp_active || self.webauthn_credentials > 0
    }
}

/// A completed second step: the session, and recovery codes when the step enrolled
/// the user's first factor (shown once).
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub login: LoginSuccess,
    pub recovery_codes: Option<Vec<String>>,
}

/// Where a verified second step leads.
#[derive(Debug, Clone)]
pub enum SecondStep {
    /// The sign-in is complete.
    Done(Box<VerifiedLogin>),
    /// The emailed code proved a flagged sign-in of an account that must enrol a
    /// factor: the enrolment comes next, under this challenge.
    Enrol(crate::sessions::PendingLogin),
}

/// Second factors.
#[derive(Clone)]
pub struct MfaService {
    pub(super) store: Arc<dyn MfaStore>,
    pub(super) users: Arc<dyn UserStore>,
    pub(super) auth: AuthService,
    master: MasterKey,
    pub(super) outbox: OutboxSender,
    pub(super) events: crate::audit::AuditLog,
    /// GUARD_PUBLIC_URL: the default WebAuthn relying party.
    pub(super) public_url: Arc<str>,
}

pub(super) fn counted(method: &'static str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    metrics::counter!("guard_mfa_verifications_total", "method" => method, "result" => result).increment(1);
}

fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// The authentication methods (RFC 8176) a sign-in by password and `method` proved.
fn amr(method: &str) -> &'static [&'static str] {
    match method {
        "totp" => &["pwd", "otp"],
        "email_code" => &["pwd", "email_code"],
        _ => &["pwd", "recovery_code"],
    }
}

fn secret_context(user: UserId) -> String {
    format!("totp:{user}")
}

impl MfaService {
    pub fn new(
        store: Arc<dyn MfaStore>,
        users: Arc<dyn UserStore>,
        auth: AuthService,
        master: MasterKey,
        outbox: OutboxSender,
        events: crate::audit::AuditLog,
        public_url: &str,
    ) -> MfaService {
        MfaService { store, users, auth, master, outbox, events, public_url: public_url.into() }
    }

    pub(super) fn event(&self, kind: &'static str, actor: Actor, tenant: &Tenant, user: UserId) -> Event {
        Event::success(kind, actor).tenant(tenant.id.0).target(user.to_string())
    }

    /// The user's factors.
    pub async fn status(&self, tenant: &Tenant, user: &User) -> Result<MfaStatus, MfaError> {
        let factor = self.store.totp(tenant.id, user.id).await?;
        let confirmed_at = factor.as_ref().and_then(|f| f.confirmed_at);
        Ok(MfaStatus {
            totp_active: confirmed_at.is_some(),
            totp_pending: factor.is_some() && confirmed_at.is_none(),
            totp_confirmed_at: confirmed_at,
            recovery_codes_left: self.store.recovery_codes_left(tenant.id, user.id).await?,
            webauthn_credentials: u64::try_from(self.store.passkeys(tenant.id, user.id).await?.len()).unwrap_or(0),
            required: tenant.settings.mfa_required,
        })
    }

    /// Starts a TOTP enrolment, replacing one not yet confirmed.
    pub async fn start_totp(&self, tenant: &Tenant, user: &User) -> Result<TotpEnrollment, MfaError> {
        let secret = totp::new_secret().map_err(MfaError::Internal)?;
        let sealed =
            self.master.encrypt(&secret, &secret_context(user.id)).map_err(|e| MfaError::Internal(e.to_string()))?;
        match self.store.put_pending_totp(tenant.id, user.id, &sealed, now()).await {
            Err(StoreError::Conflict(_)) => return Err(MfaError::AlreadyEnrolled),
            other => other?,
        }
        let totp = totp::totp(&secret, tenant.settings.totp_skew_steps, tenant.name.as_str(), user.email.as_str())
            .map_err(MfaError::Internal)?;
        let uri = totp.to_url().map_err(|e| MfaError::Internal(format!("otpauth URI: {e}")))?;
        let qr_svg = totp::qr_svg(&uri).map_err(MfaError::Internal)?;
        Ok(TotpEnrollment { secret: totp::secret_base32(&secret), uri, qr_svg })
    }

    /// The time step `code` is valid for under the user's factor, when it is.
    fn check_code(&self, tenant: &Tenant, user: UserId, sealed: &[u8], code: &str) -> Result<Option<i64>, MfaError> {
        let secret =
            self.master.decrypt(sealed, &secret_context(user)).map_err(|e| MfaError::Internal(e.to_string()))?;
        let totp = totp::totp(&secret, tenant.settings.totp_skew_steps, "guard", "user").map_err(MfaError::Internal)?;
        Ok(totp::check(&totp, code, unix_now()))
    }

    /// Activates the started enrolment with a first valid code; the user's new
    /// recovery codes (shown once).
    pub async fn confirm_totp(&self, tenant: &Tenant, user: &User, code: &str) -> Result<Vec<String>, MfaError> {
        let factor = self.store.totp(tenant.id, user.id).await?;
        let Some(factor) = factor.filter(|f| f.confirmed_at.is_none()) else {
            return Err(MfaError::NoPendingEnrollment);
        };
        let (codes, hashes) = totp::new_recovery_codes().map_err(MfaError::Internal)?;
        let record = self.events.record(&self.event("mfa.totp.enrolled", Actor::User(user.id.0), tenant, user.id));
        let confirmed = match self.check_code(tenant, user.id, &factor.sealed_secret, code)? {
            Some(step) => self.store.confirm_totp(tenant.id, user.id, step, now(), &hashes, &record).await?,
            None => false,
        };
        counted("totp", confirmed);
        if !confirmed {
            return Err(MfaError::InvalidCode);
        }
        self.events.committed(&record);
        Ok(codes)
    }

    /// Checks `code` (TOTP or recovery code) against the user's active factor,
    /// spending it; the method it proved, or `InvalidCode`.
    async fn prove(&self, tenant: &Tenant, user: &User, code: &str) -> Result<&'static str, MfaError> {
        let factor = self.store.totp(tenant.id, user.id).await?.filter(|f| f.confirmed_at.is_some());
        let (method, ok) = if totp::looks_like_recovery_code(code) {
            if factor.is_none() && self.store.passkeys(tenant.id, user.id).await?.is_empty() {
                return Err(MfaError::NotEnrolled);
            }
            let hash = totp::recovery_code_hash(code);
            ("recovery_code", self.store.use_recovery_code(tenant.id, user.id, &hash, now()).await?)
        } else {
            let Some(factor) = factor else { return Err(MfaError::NotEnrolled) };
            let ok = match self.check_code(tenant, user.id, &factor.sealed_secret, code)? {
                Some(step) => self.store.use_totp_step(tenant.id, user.id, step).await?,
                None => false,
            };
            ("totp", ok)
        };
        counted(method, ok);
        if !ok {
            let mut event = self.event("mfa.verify.failure", Actor::User(user.id.0), tenant, user.id);
            event.outcome = Outcome::Failure;
            self.events.emit(event.details(json!({ "method": method }))).await;
            return Err(MfaError::InvalidCode);
        }
        if method == "recovery_code" {
            // The code is spent either way: a notice that cannot be queued must not
            // also cost the user their sign-in.
            if let Err(e) = self.recovery_code_used(tenant, user).await {
                tracing::warn!(error = %e, user = %user.id, "cannot queue the recovery code notice");
            }
        }
        Ok(method)
    }

    /// Checks the code emailed for a stepped-up sign-in, in constant time.
    async fn prove_email_code(
        &self,
        tenant: &Tenant,
        user: &User,
        expected: &crate::sessions::TokenHash,
        code: &str,
    ) -> Result<&'static str, MfaError> {
        let presented = totp::email_code_hash(code);
        let ok = aws_lc_rs::constant_time::verify_slices_are_equal(&presented.0, &expected.0).is_ok();
        counted("email_code", ok);
        if !ok {
            let mut event = self.event("mfa.verify.failure", Actor::User(user.id.0), tenant, user.id);
            event.outcome = Outcome::Failure;
            self.events.emit(event.details(json!({ "method": "email_code" }))).await;
            return Err(MfaError::InvalidCode);
        }
        Ok("email_code")
    }

    async fn recovery_code_used(&self, tenant: &Tenant, user: &User) -> Result<(), MfaError> {
        let left = self.store.recovery_codes_left(tenant.id, user.id).await?.to_string();
        self.events
            .emit(
                self.event("mfa.recovery_code.used", Actor::User(user.id.0), tenant, user.id)
                    .details(json!({ "remaining": left })),
            )
            .await;
        let time = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
        let values = [
            ("email", user.email.as_str()),
            ("tenant", tenant.name.as_str()),
            ("time", time.as_str()),
            ("remaining", left.as_str()),
        ];
        self.outbox.queue(Some(tenant.id), Template::RecoveryCodeUsed, user.email.as_str(), &values).await?;
        Ok(())
    }

    /// Removes the user's authenticator, proven with a current code (and the recovery
    /// codes with it when no security key remains).
    pub async fn remove_totp(&self, tenant: &Tenant, user: &User, code: &str) -> Result<(), MfaError> {
        if tenant.settings.mfa_required && self.status(tenant, user).await?.webauthn_credentials == 0 {
            return Err(MfaError::Required);
        }
        self.prove(tenant, user, code).await?;
        let record = self.events.record(&self.event("mfa.totp.removed", Actor::User(user.id.0), tenant, user.id));
        self.store.remove_totp(tenant.id, user.id, &record).await?;
        self.events.committed(&record);
        Ok(())
    }

    /// New recovery codes for a user with an active factor; the old ones stop working.
    pub async fn regenerate_recovery_codes(&self, tenant: &Tenant, user: &User) -> Result<Vec<String>, MfaError> {
        if !self.status(tenant, user).await?.active() {
            return Err(MfaError::NotEnrolled);
        }
        let (codes, hashes) = totp::new_recovery_codes().map_err(MfaError::Internal)?;
        let kind = "mfa.recovery_codes.regenerated";
        let record = self.events.record(&self.event(kind, Actor::User(user.id.0), tenant, user.id));
        self.store.replace_recovery_codes(tenant.id, user.id, &hashes, &record).await?;
        self.events.committed(&record);
        Ok(codes)
    }

    /// The challenge `presented` of `tenant` with one more try counted, and its user,
    /// who must still be allowed to sign in.
    pub(super) async fn challenge(
        &self,
        tenant: &Tenant,
        presented: &str,
    ) -> Result<(super::Challenge, User, SessionToken), MfaError> {
        let token = SessionToken::parse(presented).ok_or(MfaError::InvalidChallenge)?;
        let challenge = self
            .store
            .take_attempt(tenant.id, &token.hash(), CHALLENGE_MAX_ATTEMPTS)
            .await?
            .ok_or(MfaError::InvalidChallenge)?;
        if now() >= challenge.expires_at {
            self.store.delete_challenge(tenant.id, &token.hash()).await?;
            return Err(MfaError::InvalidChallenge);
        }
        let user = self.users.get(tenant.id, challenge.user).await?.ok_or(MfaError::InvalidChallenge)?;
        if !may_use_session(tenant, &user) {
            return Err(MfaError::InvalidChallenge);
        }
        // Second steps count against the account like passwords: guessing codes
        // slows down, then locks, the account.
        let account = crate::risk::account_hash(user.email.as_str());
        if let Some(refusal) = self.auth.brute_force().check_account(tenant.id, &account).await? {
            return Err(MfaError::Auth(match refusal {
                Refusal::Delayed { retry_after } => AuthError::Delayed(retry_after),
                Refusal::Locked { retry_after } => AuthError::AccountLocked(retry_after),
            }));
        }
        Ok((challenge, user, token))
    }

    /// `proved` as it is, after counting a wrong code or key against the account.
    pub(super) async fn counted_against_account<T>(
        &self,
        tenant: &Tenant,
        user: &User,
        proved: Result<T, MfaError>,
    ) -> Result<T, MfaError> {
        if matches!(proved, Err(MfaError::InvalidCode | MfaError::WebauthnRejected(_))) {
            let account = crate::risk::account_hash(user.email.as_str());
            self.auth.brute_force().failed(tenant.id, &account, None).await?;
        }
        proved
    }

    /// Starts the TOTP enrolment a sign-in challenge of purpose `enroll` asks for.
    pub async fn start_totp_for_challenge(&self, tenant: &Tenant, presented: &str) -> Result<TotpEnrollment, MfaError> {
        let (challenge, user, _) = self.challenge(tenant, presented).await?;
        if challenge.purpose != ChallengePurpose::Enroll {
            return Err(MfaError::AlreadyEnrolled);
        }
        self.start_totp(tenant, &user).await
    }

    /// Completes a sign-in with the challenge and a code: TOTP or a recovery code for
    /// a `verify` challenge, the first TOTP code for an `enroll` one.
    pub async fn verify(&self, tenant: &Tenant, presented: &str, code: &str) -> Result<SecondStep, MfaError> {
        let (challenge, user, token) = self.challenge(tenant, presented).await?;
        let proved = match challenge.purpose {
            ChallengePurpose::Verify => match &challenge.email_code_hash {
                Some(expected) => self.prove_email_code(tenant, &user, expected, code).await.map(|m| (m, None)),
                None => self.prove(tenant, &user, code).await.map(|m| (m, None)),
            },
            ChallengePurpose::Enroll => self.confirm_totp(tenant, &user, code).await.map(|c| ("totp", Some(c))),
        };
        let (method, recovery_codes) = self.counted_against_account(tenant, &user, proved).await?;
        if method == "email_code" && self.auth.must_enrol(tenant, &user).await? {
            // The emailed code proved the account; the factor the tenant requires is
            // enrolled next, under a new challenge (this one is spent).
            if !self.store.delete_challenge(tenant.id, &token.hash()).await? {
                return Err(MfaError::InvalidChallenge);
            }
            let methods: &'static [&'static str] = &["totp", "webauthn"];
            let pending = self
                .auth
                .new_challenge(tenant, &user, ChallengePurpose::Enroll, methods, &challenge.client, None)
                .await
                .map_err(MfaError::Auth)?;
            return Ok(SecondStep::Enrol(pending));
        }
        let login = self.complete(tenant, &token, user, challenge.client, amr(method)).await?;
        Ok(SecondStep::Done(Box::new(VerifiedLogin { recovery_codes, ..login })))
    }

    /// Spends the challenge and opens the session its second step earned.
    pub(super) async fn complete(
        &self,
        tenant: &Tenant,
        token: &SessionToken,
        user: User,
        client: crate::sessions::ClientInfo,
        amr: &[&str],
    ) -> Result<VerifiedLogin, MfaError> {
        // Racing requests may both prove a factor (two recovery codes, say): only the
        // one that removes the challenge gets a session.
        if !self.store.delete_challenge(tenant.id, &token.hash()).await? {
            return Err(MfaError::InvalidChallenge);
        }
        let login = self.auth.open_session(tenant, user, client, None, amr).await.map_err(MfaError::Auth)?;
        Ok(VerifiedLogin { login, recovery_codes: None })
    }

    /// Per tenant: users, and users with an active factor (the enrolment ratio).
    pub async fn enrollment_counts(&self) -> Result<Vec<super::EnrollmentCount>, StoreError> {
        self.store.enrollment_counts().await
    }

    /// Removes every factor of `user` (an administrator's reset), always recorded, and
    /// ends every session of the user with its refresh and access tokens.
    pub async fn reset(&self, actor: Actor, tenant: &Tenant, user: UserId) -> Result<bool, MfaError> {
        if self.users.get(tenant.id, user).await?.is_none() {
            return Err(MfaError::Store(StoreError::NotFound));
        }
        // Recorded whether or not there was anything to remove.
        let record = self.events.record(&self.event("mfa.reset", actor.clone(), tenant, user));
        let removed = self.store.remove_factors(tenant.id, user, &record).await?;
        self.events.committed(&record);
        // A reset is for a lost authenticator or a stolen account: whoever holds a
        // session now must prove the account again, as after a password reset.
        let scope = crate::sessions::SessionScope { tenant: Some(tenant.id), user: Some(user), except: None };
        self.auth.revoke_all(actor, scope).await?;
        Ok(removed)
    }
}
