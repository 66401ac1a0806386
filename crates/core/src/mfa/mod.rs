//! Multi-factor authentication: TOTP (RFC 6238) with one-time recovery codes, the
//! second step of a sign-in (a challenge opened by a correct password), and the
//! tenant's requirement with its enrolment grace period, and WebAuthn credentials
//! (passkeys and security keys) as a second factor and for passwordless sign-in.

mod passkeys;
mod service;
mod store;
mod totp;

pub use passkeys::{MAX_PASSKEYS, PasskeyInfo, RegisteredPasskey, StartedCeremony};
pub use service::{MfaError, MfaService, MfaStatus, SecondStep, TotpEnrollment, VerifiedLogin};
pub use store::{
    Ceremony, CeremonyPurpose, Challenge, ChallengePurpose, EnrollmentCount, MfaStore, NewChallenge, StoredPasskey,
    TotpFactor,
};
pub use totp::{RECOVERY_CODE_COUNT, email_code_hash, new_email_code, recovery_code_hash};

/// Wrong tries a challenge allows before it is spent.
pub const CHALLENGE_MAX_ATTEMPTS: i64 = 5;
/// How long the second step of a sign-in may take.
pub const CHALLENGE_LIFETIME: time::Duration = time::Duration::minutes(5);
