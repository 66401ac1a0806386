//! Storage of factors, recovery codes, sign-in challenges and enrolment deadlines.
//! Every method takes the tenant: no query reaches another tenant's factors.

use async_trait::async_trait;
use time::OffsetDateTime;

use uuid::Uuid;

use crate::sessions::{ClientInfo, TokenHash};
use crate::store::StoreError;
use crate::tenants::TenantId;
use crate::users::UserId;

/// A user's TOTP factor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpFactor {
    /// The secret, sealed under the master key.
    pub sealed_secret: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// Unset until a first valid code confirmed the enrolment.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The newest time step a code was accepted for (-1: none).
    pub last_step: i64,
}

/// What a challenge lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// Prove a factor the user has.
    Verify,
    /// Enrol a first factor (the tenant requires one and the grace period is over).
    Enroll,
}

impl ChallengePurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChallengePurpose::Verify => "verify",
            ChallengePurpose::Enroll => "enroll",
        }
    }

    pub fn parse(text: &str) -> Option<ChallengePurpose> {
        match text {
            "verify" => Some(ChallengePurpose::Verify),
            "enroll" => Some(ChallengePurpose::Enroll),
            _ => None,
        }
    }
}

/// A challenge to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChallenge {
    pub id_hash: TokenHash,
    pub tenant: TenantId,
    pub user: UserId,
    pub purpose: ChallengePurpose,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub client: ClientInfo,
    /// The one-time code emailed for a stepped-up sign-in of a user without a factor.
    pub email_code_hash: Option<TokenHash>,
}

/// A stored challenge, with the tries used so far (this one included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user: UserId,
    pub purpose: ChallengePurpose,
    pub expires_at: OffsetDateTime,
    pub attempts: i64,
    pub client: ClientInfo,
    /// The WebAuthn state of a second step by security key, once its options were asked for.
    pub webauthn_state: Option<String>,
    /// The one-time code emailed for a stepped-up sign-in of a user without a factor.
    pub email_code_hash: Option<TokenHash>,
}

/// A user's WebAuthn credential as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    pub id: Uuid,
    pub tenant: TenantId,
    pub user: UserId,
    /// The authenticator's credential id (unique within a tenant).
    pub credential_id: Vec<u8>,
    pub name: String,
    /// webauthn-rs's `Passkey` as JSON: public key, algorithm, signature counter.
    pub passkey: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// What a WebAuthn ceremony was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// Register a new credential for a signed-in user.
    Register,
    /// Sign in with a passkey alone.
    SignIn,
}

impl CeremonyPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::Register => "register",
            CeremonyPurpose::SignIn => "sign_in",
        }
    }

    pub fn parse(text: &str) -> Option<CeremonyPurpose> {
        match text {
            "register" => Some(CeremonyPurpose::Register),
            "sign_in" => Some(CeremonyPurpose::SignIn),
            _ => None,
        }
    }
}

/// The server's half of a WebAuthn ceremony between its start and its finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    pub id_hash: TokenHash,
    pub tenant: TenantId,
    /// The registering user; `None` for a passkey sign-in (the passkey names the user).
    pub user: Option<UserId>,
    pub purpose: CeremonyPurpose,
    /// The name the new credential gets.
    pub name: Option<String>,
    /// webauthn-rs's serialised state.
    pub state: String,
    pub expires_at: OffsetDateTime,
}

/// Users and users with an active factor, in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentCount {
    pub tenant_slug: String,
    pub users: u64,
    pub enrolled: u64,
}

/// Factors and challenges in the database.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// The user's TOTP factor, confirmed or not.
    async fn totp(&self, tenant: TenantId, user: UserId) -> Result<Option<TotpFactor>, StoreError>;
    /// Stores a new unconfirmed TOTP secret, replacing an unconfirmed one; `Conflict`
    /// when a confirmed factor exists.
    async fn put_pending_totp(
        &self,
        tenant: TenantId,
        user: UserId,
        sealed_secret: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Confirms the pending factor with a code of time step `step` and replaces the
    /// user's recovery codes, in one transaction; false when there is no pending
    /// factor or the step was used already.
    async fn confirm_totp(
        &self,
        tenant: TenantId,
        user: UserId,
        step: i64,
        at: OffsetDateTime,
        recovery_codes: &[TokenHash],
        audit: &crate::audit::AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Records a code of time step `step` as used; false when that step, or a later
    /// one, was used already (a replay).
    async fn use_totp_step(&self, tenant: TenantId, user: UserId, step: i64) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes.
    async fn replace_recovery_codes(
        &self,
        tenant: TenantId,
        user: UserId,
        codes: &[TokenHash],
        audit: &crate::audit::AuditRecord,
    ) -> Result<(), StoreError>;
    /// Spends a recovery code; false when it is not one of the user's unused codes.
    async fn use_recovery_code(
        &self,
        tenant: TenantId,
        user: UserId,
        code: &TokenHash,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, tenant: TenantId, user: UserId) -> Result<u64, StoreError>;
    /// Removes the user's TOTP factor, WebAuthn credentials and recovery codes, their
    /// open challenges and ceremonies and enrolment deadline; false when there was no factor.
    async fn remove_factors(
        &self,
        tenant: TenantId,
        user: UserId,
        audit: &crate::audit::AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Removes the user's TOTP factor, and their recovery codes unless a WebAuthn
    /// credential remains; false when there was no TOTP factor.
    async fn remove_totp(
        &self,
        tenant: TenantId,
        user: UserId,
        audit: &crate::audit::AuditRecord,
    ) -> Result<bool, StoreError>;
    async fn create_challenge(&self, challenge: &NewChallenge) -> Result<(), StoreError>;
    /// Counts a try on the challenge and returns it; `None` when it does not exist
    /// in this tenant or has no tries left.
    async fn take_attempt(
        &self,
        tenant: TenantId,
        id_hash: &TokenHash,
        max_attempts: i64,
    ) -> Result<Option<Challenge>, StoreError>;
    /// Removes a challenge; false when it was gone already (spent by a racing request).
    async fn delete_challenge(&self, tenant: TenantId, id_hash: &TokenHash) -> Result<bool, StoreError>;
    /// The user's enrolment deadline, set to `due` unless one exists.
    async fn enrollment_deadline(
        &self,
        tenant: TenantId,
        user: UserId,
        due: OffsetDateTime,
    ) -> Result<OffsetDateTime, StoreError>;
    /// Per tenant: how many users, and how many with a confirmed factor (TOTP or a
    /// WebAuthn credential).
    async fn enrollment_counts(&self) -> Result<Vec<EnrollmentCount>, StoreError>;
    /// The challenge without counting a try; `None` when it does not exist in this
    /// tenant or has no tries left.
    async fn peek_challenge(
        &self,
        tenant: TenantId,
        id_hash: &TokenHash,
        max_attempts: i64,
    ) -> Result<Option<Challenge>, StoreError>;
    /// Keeps the WebAuthn state of the challenge's second step; false when the
    /// challenge is gone.
    async fn set_challenge_webauthn(
        &self,
        tenant: TenantId,
        id_hash: &TokenHash,
        state: &str,
    ) -> Result<bool, StoreError>;
    /// The user's WebAuthn credentials, oldest first.
    async fn passkeys(&self, tenant: TenantId, user: UserId) -> Result<Vec<StoredPasskey>, StoreError>;
    /// The credential with this authenticator credential id in the tenant.
    async fn passkey_by_credential_id(
        &self,
        tenant: TenantId,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>, StoreError>;
    /// Stores a new credential, and, when given and the user has no unused ones yet,
    /// their recovery codes (their first factor), in one transaction; whether the
    /// codes were stored. `Conflict` when the credential id is registered already.
    async fn add_passkey(
        &self,
        passkey: &StoredPasskey,
        recovery_codes: &[TokenHash],
        audit: &crate::audit::AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Records a use of a credential, with its updated record when it changed.
    async fn passkey_used(
        &self,
        tenant: TenantId,
        id: Uuid,
        passkey: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Renames one of the user's credentials; false when it is not theirs.
    async fn rename_passkey(&self, tenant: TenantId, user: UserId, id: Uuid, name: &str) -> Result<bool, StoreError>;
    /// Removes one of the user's credentials; false when it is not theirs.
    async fn remove_passkey(
        &self,
        tenant: TenantId,
        user: UserId,
        id: Uuid,
        audit: &crate::audit::AuditRecord,
    ) -> Result<bool, StoreError>;
    async fn put_ceremony(&self, ceremony: &Ceremony) -> Result<(), StoreError>;
    /// Removes and returns the ceremony (one use); `None` when it does not exist in
    /// this tenant.
    async fn take_ceremony(&self, tenant: TenantId, id_hash: &TokenHash) -> Result<Option<Ceremony>, StoreError>;
}
