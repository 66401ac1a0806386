//! Storage of the outbox and of email tokens.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sessions::TokenHash;
use crate::store::StoreError;
use crate::tenants::TenantId;
use crate::users::UserId;

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub tenant: Option<TenantId>,
    /// The template's name, for metrics.
    pub template: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// Delivery attempts made so far (counting the one under way once claimed).
    pub attempts: u32,
}

/// What an email token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTokenPurpose {
    VerifyEmail,
    PasswordReset,
}

impl EmailTokenPurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailTokenPurpose::VerifyEmail => "verify_email",
            EmailTokenPurpose::PasswordReset => "password_reset",
        }
    }
}

/// A token to store; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmailToken {
    pub tenant: TenantId,
    pub user: UserId,
    pub purpose: EmailTokenPurpose,
    pub token_hash: TokenHash,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// The outbox and email tokens in the database.
#[async_trait]
pub trait EmailStore: Send + Sync {
    /// Queues a message, due at once.
    async fn enqueue(&self, message: &OutboxMessage, now_ms: i64) -> Result<(), StoreError>;
    /// Claims up to `limit` due messages for `lease_ms`, counting an attempt on each;
    /// another sender does not get them until the lease runs out.
    async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Records delivery.
    async fn mark_sent(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;
    /// Records a failed attempt: try again at `next_ms`, or give up when `None`.
    async fn mark_failed(&self, id: Uuid, error: &str, next_ms: Option<i64>) -> Result<(), StoreError>;
    /// Messages not yet sent nor given up on.
    async fn pending(&self) -> Result<u64, StoreError>;
    /// Stores a token, spending any earlier unused one of the user for the same purpose.
    async fn insert_token(&self, token: &NewEmailToken) -> Result<(), StoreError>;
    /// Spends the token; the user it was for when it was unused and unexpired at `at`.
    async fn consume_token(
        &self,
        tenant: TenantId,
        purpose: EmailTokenPurpose,
        token: &TokenHash,
        at: OffsetDateTime,
    ) -> Result<Option<UserId>, StoreError>;
}
