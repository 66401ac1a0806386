//! Storage of factors, recovery codes, sign-in challenges and enrolment deadlines.
//! Every method takes the tenant: no query reaches another tenant's factors.

use async_trait::async_trait;
use time::OffsetDateTime;

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
}

/// A stored challenge, with the tries used so far (this one included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user: UserId,
    pub purpose: ChallengePurpose,
    pub expires_at: OffsetDateTime,
    pub attempts: i64,
    pub client: ClientInfo,
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
    /// Removes the user's TOTP factor and recovery codes, their open challenges and
    /// enrolment deadline; false when there was no factor.
    async fn remove_factors(&self, tenant: TenantId, user: UserId) -> Result<bool, StoreError>;
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
    /// Per tenant: how many users, and how many with a confirmed factor.
    async fn enrollment_counts(&self) -> Result<Vec<EnrollmentCount>, StoreError>;
}
