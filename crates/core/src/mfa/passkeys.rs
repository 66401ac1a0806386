//! WebAuthn credentials through webauthn-rs: registration of passkeys and security
//! keys (several per user, each named), their use as the second step of a password
//! sign-in, and passwordless sign-in with a discoverable passkey. Every ceremony
//! requires user verification, so a passkey alone is two factors (possession and a
//! PIN or biometric). The server's half of a ceremony is stored, so any replica can
//! finish what another started.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use super::service::{MfaError, MfaService, VerifiedLogin, counted};
use super::store::{Ceremony, CeremonyPurpose, ChallengePurpose, StoredPasskey};
use super::{CHALLENGE_LIFETIME, CHALLENGE_MAX_ATTEMPTS, totp};
use crate::email::Template;
use crate::events::{Actor, Event, EventSink, Outcome};
use crate::sessions::service::{may_use_session, now};
use crate::sessions::{ClientInfo, LoginSuccess, SessionToken};
use crate::store::StoreError;
use crate::tenants::Tenant;
use crate::users::{User, UserId};

/// Credentials one user may register.
pub const MAX_PASSKEYS: usize = 20;

/// A registered credential as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<&StoredPasskey> for PasskeyInfo {
    fn from(p: &StoredPasskey) -> PasskeyInfo {
        PasskeyInfo { id: p.id, name: p.name.clone(), created_at: p.created_at, last_used_at: p.last_used_at }
    }
}

/// A started ceremony: its id (shown once) and the options for the browser's
/// `navigator.credentials.create()` or `.get()`.
#[derive(Debug, Clone)]
pub struct StartedCeremony {
    pub id: SessionToken,
    pub options: Value,
    pub expires_at: OffsetDateTime,
}

/// A finished registration: the credential, and recovery codes when it is the
/// user's first factor (shown once).
#[derive(Debug, Clone)]
pub struct RegisteredPasskey {
    pub passkey: PasskeyInfo,
    pub recovery_codes: Option<Vec<String>>,
}

/// The WebAuthn half of a sign-in challenge's second step, kept with the challenge.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum ChallengeStep {
    Authenticate { state: PasskeyAuthentication },
    Register { name: String, state: PasskeyRegistration },
}

/// A browser's answer, parsed for the step it answers.
enum Answer {
    Assertion(PublicKeyCredential),
    Registration(RegisterPublicKeyCredential),
}

/// A credential name: 1 to 64 characters without control characters, trimmed.
fn passkey_name(text: &str) -> Result<String, MfaError> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(MfaError::Invalid("name must be 1 to 64 characters without control characters".into()));
    }
    Ok(name.to_owned())
}

fn parse_passkey(stored: &StoredPasskey) -> Result<Passkey, MfaError> {
    serde_json::from_str(&stored.passkey).map_err(|e| MfaError::Internal(format!("stored passkey {}: {e}", stored.id)))
}

fn state_json<T: serde::Serialize>(state: &T) -> Result<String, MfaError> {
    serde_json::to_string(state).map_err(|e| MfaError::Internal(format!("WebAuthn state: {e}")))
}

fn options_json<T: serde::Serialize>(options: &T) -> Result<Value, MfaError> {
    serde_json::to_value(options).map_err(|e| MfaError::Internal(format!("WebAuthn options: {e}")))
}

fn malformed(e: serde_json::Error) -> MfaError {
    MfaError::MalformedCredential(format!("credential is not a WebAuthn public key credential: {e}"))
}

/// The relying party a tenant's settings describe: `webauthn_rp_id` (default: the
/// host of GUARD_PUBLIC_URL) and `webauthn_origins` (default: GUARD_PUBLIC_URL).
pub(crate) fn relying_party(tenant: &Tenant, public_url: &str) -> Result<Webauthn, MfaError> {
    let not_configured = |why: String| MfaError::WebauthnNotConfigured(why);
    let public = Url::parse(public_url).map_err(|e| not_configured(format!("GUARD_PUBLIC_URL: {e}")))?;
    let settings = &tenant.settings;
    let origins: Vec<Url> = if settings.webauthn_origins.is_empty() {
        vec![public.clone()]
    } else {
        settings.webauthn_origins.iter().filter_map(|o| Url::parse(o).ok()).collect()
    };
    let rp_id = match (&settings.webauthn_rp_id, public.domain()) {
        (Some(rp_id), _) => rp_id.clone(),
        (None, Some(domain)) => domain.to_owned(),
        (None, None) => {
            return Err(not_configured(
                "GUARD_PUBLIC_URL has no domain name (passkeys cannot be bound to an IP address): set the \
                 tenant's webauthn_rp_id and webauthn_origins"
                    .into(),
            ));
        }
    };
    let first = origins.first().ok_or_else(|| not_configured("no webauthn_origins".into()))?;
    let mut builder = WebauthnBuilder::new(&rp_id, first)
        .map_err(|_| not_configured(format!("origin {first} is not within the relying party id {rp_id:?}")))?
        .rp_name(tenant.name.as_str());
    for origin in &origins[1..] {
        builder = builder.append_allowed_origin(origin);
    }
    builder.build().map_err(|e| not_configured(e.to_string()))
}

impl MfaService {
    fn webauthn(&self, tenant: &Tenant) -> Result<Webauthn, MfaError> {
        relying_party(tenant, &self.public_url)
    }

    /// The user's credentials, oldest first.
    pub async fn passkeys(&self, tenant: &Tenant, user: UserId) -> Result<Vec<PasskeyInfo>, MfaError> {
        Ok(self.store.passkeys(tenant.id, user).await?.iter().map(PasskeyInfo::from).collect())
    }

    async fn start_ceremony(
        &self,
        tenant: &Tenant,
        user: Option<UserId>,
        purpose: CeremonyPurpose,
        name: Option<String>,
        state: String,
        options: Value,
    ) -> Result<StartedCeremony, MfaError> {
        let id = SessionToken::generate().map_err(|e| MfaError::Internal(format!("no randomness: {e}")))?;
        let expires_at = now() + CHALLENGE_LIFETIME;
        let ceremony = Ceremony { id_hash: id.hash(), tenant: tenant.id, user, purpose, name, state, expires_at };
        self.store.put_ceremony(&ceremony).await?;
        Ok(StartedCeremony { id, options, expires_at })
    }

    /// The ceremony `presented` of `tenant` for `purpose`, spent (one use).
    async fn take_ceremony(
        &self,
        tenant: &Tenant,
        presented: &str,
        purpose: CeremonyPurpose,
    ) -> Result<Ceremony, MfaError> {
        let token = SessionToken::parse(presented).ok_or(MfaError::InvalidCeremony)?;
        let ceremony = self.store.take_ceremony(tenant.id, &token.hash()).await?.ok_or(MfaError::InvalidCeremony)?;
        if ceremony.purpose != purpose || now() >= ceremony.expires_at {
            return Err(MfaError::InvalidCeremony);
        }
        Ok(ceremony)
    }

    /// Starts registering a credential named `name` for `user`: the options for
    /// `navigator.credentials.create()`.
    pub async fn start_passkey_registration(
        &self,
        tenant: &Tenant,
        user: &User,
        name: &str,
    ) -> Result<StartedCeremony, MfaError> {
        let name = passkey_name(name)?;
        let webauthn = self.webauthn(tenant)?;
        let existing = self.store.passkeys(tenant.id, user.id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(MfaError::Invalid(format!("a user may register at most {MAX_PASSKEYS} passkeys")));
        }
        // The authenticator refuses to register a second credential for the same account.
        let exclude =
            existing.iter().map(|p| parse_passkey(p).map(|k| k.cred_id().clone())).collect::<Result<_, _>>()?;
        let display = user.display_name.as_ref().map_or(user.email.as_str(), |d| d.as_str());
        let (options, state) = webauthn
            .start_passkey_registration(user.id.0, user.email.as_str(), display, Some(exclude))
            .map_err(|e| MfaError::Internal(format!("WebAuthn registration: {e}")))?;
        let (state, options) = (state_json::<PasskeyRegistration>(&state)?, options_json(&options)?);
        self.start_ceremony(tenant, Some(user.id), CeremonyPurpose::Register, Some(name), state, options).await
    }

    /// Finishes a registration with the browser's answer; recovery codes come with the
    /// user's first factor.
    pub async fn finish_passkey_registration(
        &self,
        tenant: &Tenant,
        user: &User,
        ceremony: &str,
        credential: Value,
    ) -> Result<RegisteredPasskey, MfaError> {
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential).map_err(malformed)?;
        let webauthn = self.webauthn(tenant)?;
        let ceremony = self.take_ceremony(tenant, ceremony, CeremonyPurpose::Register).await?;
        if ceremony.user != Some(user.id) {
            return Err(MfaError::InvalidCeremony);
        }
        let state: PasskeyRegistration = serde_json::from_str(&ceremony.state)
            .map_err(|e| MfaError::Internal(format!("stored registration state: {e}")))?;
        let name = ceremony.name.unwrap_or_else(|| "passkey".into());
        self.register(&webauthn, tenant, user, name, &credential, &state).await
    }

    /// Verifies a new credential and stores it; recovery codes come with the user's
    /// first factor.
    async fn register(
        &self,
        webauthn: &Webauthn,
        tenant: &Tenant,
        user: &User,
        name: String,
        credential: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
    ) -> Result<RegisteredPasskey, MfaError> {
        let passkey = webauthn.finish_passkey_registration(credential, state).map_err(|e| {
            counted("webauthn", false);
            MfaError::WebauthnRejected(format!("the registration did not verify: {e}"))
        })?;
        let first_factor = !self.status(tenant, user).await?.active();
        let (codes, hashes) =
            if first_factor { totp::new_recovery_codes().map_err(MfaError::Internal)? } else { (vec![], vec![]) };
        let stored = StoredPasskey {
            id: Uuid::now_v7(),
            tenant: tenant.id,
            user: user.id,
            credential_id: passkey.cred_id().to_vec(),
            name,
            passkey: state_json(&passkey)?,
            created_at: now(),
            last_used_at: None,
        };
        let record = self.events.record(
            &self
                .event("mfa.webauthn.registered", Actor::User(user.id.0), tenant, user.id)
                .details(json!({ "credential": stored.id, "name": stored.name })),
        );
        let codes_stored = match self.store.add_passkey(&stored, &hashes, &record).await {
            Err(StoreError::Conflict(_)) => return Err(MfaError::CredentialRegistered),
            other => other?,
        };
        counted("webauthn", true);
        self.events.committed(&record);
        // A passkey signs in without a password: its owner hears of every new one.
        let time = now().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
        let values = [
            ("email", user.email.as_str()),
            ("tenant", tenant.name.as_str()),
            ("name", stored.name.as_str()),
            ("time", time.as_str()),
        ];
        if let Err(e) = self.outbox.queue(Some(tenant.id), Template::PasskeyAdded, user.email.as_str(), &values).await {
            tracing::warn!(error = %e, user = %user.id, "cannot queue the new-passkey notice");
        }
        Ok(RegisteredPasskey { passkey: PasskeyInfo::from(&stored), recovery_codes: codes_stored.then_some(codes) })
    }

    /// Renames one of the user's credentials.
    pub async fn rename_passkey(&self, tenant: &Tenant, user: &User, id: Uuid, name: &str) -> Result<(), MfaError> {
        let name = passkey_name(name)?;
        if !self.store.rename_passkey(tenant.id, user.id, id, &name).await? {
            return Err(MfaError::NoSuchPasskey);
        }
        Ok(())
    }

    /// Removes one of the user's credentials. Under a tenant's MFA requirement the
    /// last factor stays; without factors left, the recovery codes go too.
    pub async fn remove_passkey(&self, tenant: &Tenant, user: &User, id: Uuid) -> Result<(), MfaError> {
        let status = self.status(tenant, user).await?;
        let owned = self.store.passkeys(tenant.id, user.id).await?.iter().any(|p| p.id == id);
        if !owned {
            return Err(MfaError::NoSuchPasskey);
        }
        let last = !status.totp_active && status.webauthn_credentials == 1;
        if last && tenant.settings.mfa_required {
            return Err(MfaError::Required);
        }
        let record = self.events.record(
            &self
                .event("mfa.webauthn.removed", Actor::User(user.id.0), tenant, user.id)
                .details(json!({ "credential": id })),
        );
        if !self.store.remove_passkey(tenant.id, user.id, id, &record).await? {
            return Err(MfaError::NoSuchPasskey);
        }
        self.events.committed(&record);
        Ok(())
    }

    /// Starts the security-key step of a sign-in challenge (costs no try): for a
    /// `verify` challenge the options for `navigator.credentials.get()` listing the
    /// user's credentials; for an `enroll` one (the tenant requires a factor) the
    /// options for `navigator.credentials.create()` registering one named `name`.
    pub async fn start_webauthn_for_challenge(
        &self,
        tenant: &Tenant,
        presented: &str,
        name: Option<&str>,
    ) -> Result<Value, MfaError> {
        let token = SessionToken::parse(presented).ok_or(MfaError::InvalidChallenge)?;
        let challenge = self
            .store
            .peek_challenge(tenant.id, &token.hash(), CHALLENGE_MAX_ATTEMPTS)
            .await?
            .filter(|c| now() < c.expires_at)
            .ok_or(MfaError::InvalidChallenge)?;
        let webauthn = self.webauthn(tenant)?;
        let (step, options) = match challenge.purpose {
            ChallengePurpose::Verify => {
                let stored = self.store.passkeys(tenant.id, challenge.user).await?;
                if stored.is_empty() || challenge.email_code_hash.is_some() {
                    return Err(MfaError::NotEnrolled);
                }
                let passkeys = stored.iter().map(parse_passkey).collect::<Result<Vec<_>, _>>()?;
                let (options, state) = webauthn
                    .start_passkey_authentication(&passkeys)
                    .map_err(|e| MfaError::Internal(format!("WebAuthn authentication: {e}")))?;
                (ChallengeStep::Authenticate { state }, options_json(&options)?)
            }
            ChallengePurpose::Enroll => {
                let name = passkey_name(name.unwrap_or("passkey"))?;
                let user = self.users.get(tenant.id, challenge.user).await?.ok_or(MfaError::InvalidChallenge)?;
                let display = user.display_name.as_ref().map_or(user.email.as_str(), |d| d.as_str());
                let (options, state) = webauthn
                    .start_passkey_registration(user.id.0, user.email.as_str(), display, None)
                    .map_err(|e| MfaError::Internal(format!("WebAuthn registration: {e}")))?;
                (ChallengeStep::Register { name, state }, options_json(&options)?)
            }
        };
        if !self.store.set_challenge_webauthn(tenant.id, &token.hash(), &state_json(&step)?).await? {
            return Err(MfaError::InvalidChallenge);
        }
        Ok(options)
    }

    /// Verifies an assertion against the user's stored credential and records its use.
    async fn check_assertion(
        &self,
        tenant: &Tenant,
        user: &User,
        verify: impl FnOnce(&Passkey) -> Result<webauthn_rs::prelude::AuthenticationResult, String>,
        stored: &StoredPasskey,
    ) -> Result<(), MfaError> {
        let mut passkey = parse_passkey(stored)?;
        let result = match verify(&passkey) {
            Ok(result) => result,
            Err(why) => {
                counted("webauthn", false);
                let mut event = self.event("mfa.verify.failure", Actor::User(user.id.0), tenant, user.id);
                event.outcome = Outcome::Failure;
                self.events.emit(event.details(json!({ "method": "webauthn", "credential": stored.id }))).await;
                return Err(MfaError::WebauthnRejected(format!("the passkey's answer did not verify: {why}")));
            }
        };
        counted("webauthn", true);
        let changed = passkey.update_credential(&result) == Some(true);
        let record = if changed { Some(state_json(&passkey)?) } else { None };
        self.store.passkey_used(tenant.id, stored.id, record.as_deref(), now()).await?;
        Ok(())
    }

    /// Completes a sign-in challenge with the security key: an assertion of one of the
    /// user's credentials, or, for an `enroll` challenge, the new credential (whose
    /// answer then carries the user's recovery codes).
    pub async fn verify_webauthn(
        &self,
        tenant: &Tenant,
        presented: &str,
        credential: Value,
    ) -> Result<VerifiedLogin, MfaError> {
        let webauthn = self.webauthn(tenant)?;
        // Peeked first so that a credential of the wrong shape costs no try.
        let token = SessionToken::parse(presented).ok_or(MfaError::InvalidChallenge)?;
        let peeked = self.store.peek_challenge(tenant.id, &token.hash(), CHALLENGE_MAX_ATTEMPTS).await?;
        let step: Option<ChallengeStep> = match peeked.and_then(|c| c.webauthn_state) {
            Some(text) => Some(
                serde_json::from_str(&text).map_err(|e| MfaError::Internal(format!("stored WebAuthn state: {e}")))?,
            ),
            None => None,
        };
        let parsed = match &step {
            Some(ChallengeStep::Register { .. }) => {
                Answer::Registration(serde_json::from_value(credential).map_err(malformed)?)
            }
            _ => Answer::Assertion(serde_json::from_value(credential).map_err(malformed)?),
        };
        let (challenge, user, token) = self.challenge(tenant, presented).await?;
        let proved = self.webauthn_step(&webauthn, tenant, &user, &challenge, step, parsed).await;
        let recovery_codes = self.counted_against_account(tenant, &user, proved).await?;
        let login = self.complete(tenant, &token, user, challenge.client, &["pwd", "hwk"]).await?;
        Ok(VerifiedLogin { recovery_codes, ..login })
    }

    /// Checks the security-key answer of a challenge's second step: the recovery
    /// codes when it registered the user's first factor.
    async fn webauthn_step(
        &self,
        webauthn: &Webauthn,
        tenant: &Tenant,
        user: &User,
        challenge: &super::Challenge,
        step: Option<ChallengeStep>,
        parsed: Answer,
    ) -> Result<Option<Vec<String>>, MfaError> {
        match (step, parsed) {
            (Some(ChallengeStep::Authenticate { state }), Answer::Assertion(credential)) => {
                let stored = self.store.passkey_by_credential_id(tenant.id, credential.get_credential_id()).await?;
                let Some(stored) = stored.filter(|p| p.user == user.id) else {
                    counted("webauthn", false);
                    return Err(MfaError::WebauthnRejected("this passkey is not one of the user's".into()));
                };
                let verify = |_: &Passkey| {
                    webauthn.finish_passkey_authentication(&credential, &state).map_err(|e| e.to_string())
                };
                self.check_assertion(tenant, user, verify, &stored).await?;
                Ok(None)
            }
            (Some(ChallengeStep::Register { name, state }), Answer::Registration(credential))
                if challenge.purpose == ChallengePurpose::Enroll =>
            {
                Ok(self.register(webauthn, tenant, user, name, &credential, &state).await?.recovery_codes)
            }
            _ => Err(MfaError::WebauthnRejected(
                "no security key step was started for this challenge: POST /v1/auth/mfa/webauthn/start first".into(),
            )),
        }
    }

    /// Starts a passwordless sign-in: the options for `navigator.credentials.get()`
    /// with no credential listed, so the authenticator offers its passkeys for this site.
    pub async fn start_passkey_sign_in(&self, tenant: &Tenant) -> Result<StartedCeremony, MfaError> {
        let (options, state) = self
            .webauthn(tenant)?
            .start_discoverable_authentication()
            .map_err(|e| MfaError::Internal(format!("WebAuthn authentication: {e}")))?;
        let (state, options) = (state_json::<DiscoverableAuthentication>(&state)?, options_json(&options)?);
        self.start_ceremony(tenant, None, CeremonyPurpose::SignIn, None, state, options).await
    }

    /// Finishes a passwordless sign-in: the passkey names its user, and its verified
    /// assertion (with user verification) opens a session.
    pub async fn finish_passkey_sign_in(
        &self,
        tenant: &Tenant,
        ceremony: &str,
        credential: Value,
        client: ClientInfo,
    ) -> Result<LoginSuccess, MfaError> {
        metrics::counter!("guard_auth_attempts_total", "method" => "passkey").increment(1);
        let credential: PublicKeyCredential = serde_json::from_value(credential).map_err(malformed)?;
        let webauthn = self.webauthn(tenant)?;
        let ceremony = self.take_ceremony(tenant, ceremony, CeremonyPurpose::SignIn).await?;
        let state: DiscoverableAuthentication = serde_json::from_str(&ceremony.state)
            .map_err(|e| MfaError::Internal(format!("stored authentication state: {e}")))?;
        let ip = client.ip.clone();
        let ip = ip.as_deref();
        let (user_handle, credential_id) = match webauthn.identify_discoverable_authentication(&credential) {
            Ok(found) => found,
            Err(_) => return Err(self.refuse_passkey(tenant, "unknown_passkey", None, ip).await),
        };
        let stored = self.store.passkey_by_credential_id(tenant.id, credential_id).await?;
        let Some(stored) = stored.filter(|p| p.user.0 == user_handle) else {
            return Err(self.refuse_passkey(tenant, "unknown_passkey", None, ip).await);
        };
        let Some(user) = self.users.get(tenant.id, stored.user).await? else {
            return Err(self.refuse_passkey(tenant, "unknown_passkey", None, ip).await);
        };
        let account = crate::risk::account_hash(user.email.as_str());
        let verify = |passkey: &Passkey| {
            webauthn.finish_discoverable_authentication_v2(&credential, state, passkey).map_err(|e| e.to_string())
        };
        if let Err(e) = self.check_assertion(tenant, &user, verify, &stored).await {
            if matches!(e, MfaError::WebauthnRejected(_)) {
                self.auth.count_failure(tenant.id, Some(&account), ip).await?;
            }
            return Err(e);
        }
        if !may_use_session(tenant, &user) {
            return Err(self.refuse_passkey(tenant, user.status.as_str(), Some(&account), ip).await);
        }
        // A verified passkey is two factors already: only the deny threshold acts.
        let mut client = client;
        self.auth.assess(tenant, &account, Some(user.id), &mut client).await.map_err(MfaError::Auth)?;
        self.auth.open_session(tenant, user, client, None, &["hwk", "user"]).await.map_err(MfaError::Auth)
    }

    /// A refused passkey sign-in: counted like a failed password sign-in, against the
    /// address (and the account, when the passkey named one), and recorded.
    async fn refuse_passkey(
        &self,
        tenant: &Tenant,
        reason: &'static str,
        account: Option<&[u8; 32]>,
        ip: Option<&str>,
    ) -> MfaError {
        metrics::counter!("guard_auth_failures_total", "reason" => reason).increment(1);
        if let Err(e) = self.auth.count_failure(tenant.id, account, ip).await {
            return MfaError::Store(e);
        }
        let event = Event::success("auth.login.failure", Actor::System).tenant(tenant.id.0).outcome(Outcome::Failure);
        self.events.emit(event.details(json!({ "reason": reason, "method": "passkey" }))).await;
        MfaError::WebauthnRejected("the passkey is not registered here or cannot sign in".into())
    }
}
