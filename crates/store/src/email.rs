//! `EmailStore` for both backends. The outbox claim differs in one clause: on
//! PostgreSQL, rows another sender is claiming are skipped (FOR UPDATE SKIP LOCKED);
//! SQLite has one writer at a time anyway.

use guard_core::email::OutboxMessage;
use guard_core::store::StoreError;
use guard_core::tenants::TenantId;
use sqlx::Row;
use uuid::Uuid;

/// A claimed message from a row of `RETURNING` [`CLAIMED`].
pub(crate) fn from_row<R: Row>(row: &R) -> Result<OutboxMessage, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let e = crate::error::from_sqlx;
    let tenant: Option<Uuid> = row.try_get("tenant_id").map_err(e)?;
    let attempts: i32 = row.try_get("attempts").map_err(e)?;
    Ok(OutboxMessage {
        id: row.try_get("id").map_err(e)?,
        tenant: tenant.map(TenantId),
        template: row.try_get("template").map_err(e)?,
        recipient: row.try_get("recipient").map_err(e)?,
        subject: row.try_get("subject").map_err(e)?,
        text_body: row.try_get("text_body").map_err(e)?,
        html_body: row.try_get("html_body").map_err(e)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

/// Implements `EmailStore` for a `SqlStore` of one backend; `$lock` ends the claim's
/// subquery.
macro_rules! impl_email_store {
    ($store:ty, $lock:literal) => {
        #[async_trait::async_trait]
        impl guard_core::email::EmailStore for $store {
            async fn enqueue(
                &self,
                m: &guard_core::email::OutboxMessage,
                now_ms: i64,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO email_outbox (id, tenant_id, template, recipient, subject, text_body, html_body, \
                     status, attempts, next_attempt_ms, locked_until_ms, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, 0, $9)",
                )
                .bind(m.id)
                .bind(m.tenant.map(|t| t.0))
                .bind(&m.template)
                .bind(&m.recipient)
                .bind(&m.subject)
                .bind(&m.text_body)
                .bind(&m.html_body)
                .bind(now_ms)
                .bind(crate::tenants::now())
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn claim_due(
                &self,
                now_ms: i64,
                lease_ms: i64,
                limit: u32,
            ) -> Result<Vec<guard_core::email::OutboxMessage>, guard_core::store::StoreError> {
                let rows = sqlx::query(concat!(
                    "UPDATE email_outbox SET attempts = attempts + 1, locked_until_ms = $1 WHERE id IN (",
                    "SELECT id FROM email_outbox WHERE status = 'pending' AND next_attempt_ms <= $2 ",
                    "AND locked_until_ms <= $2 ORDER BY next_attempt_ms LIMIT $3",
                    $lock,
                    ") AND status = 'pending' AND locked_until_ms <= $2 ",
                    "RETURNING id, tenant_id, template, recipient, subject, text_body, html_body, attempts"
                ))
                .bind(now_ms.saturating_add(lease_ms))
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                rows.iter().map(crate::email::from_row).collect()
            }

            async fn mark_sent(
                &self,
                id: uuid::Uuid,
                at: time::OffsetDateTime,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "UPDATE email_outbox SET status = 'sent', sent_at = $1, locked_until_ms = 0, last_error = NULL \
                     WHERE id = $2",
                )
                .bind(at)
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn mark_failed(
                &self,
                id: uuid::Uuid,
                error: &str,
                next_ms: Option<i64>,
            ) -> Result<(), guard_core::store::StoreError> {
                let error: String = error.chars().take(1000).collect();
                let query = match next_ms {
                    Some(next) => sqlx::query(
                        "UPDATE email_outbox SET last_error = $1, next_attempt_ms = $2, locked_until_ms = 0 \
                         WHERE id = $3",
                    )
                    .bind(error)
                    .bind(next),
                    None => sqlx::query(
                        "UPDATE email_outbox SET last_error = $1, status = 'failed', locked_until_ms = 0 WHERE id = $2",
                    )
                    .bind(error),
                };
                query.bind(id).execute(&self.writer).await.map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn pending(&self) -> Result<u64, guard_core::store::StoreError> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM email_outbox WHERE status = 'pending'")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            async fn insert_token(
                &self,
                token: &guard_core::email::NewEmailToken,
            ) -> Result<(), guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                sqlx::query(
                    "UPDATE email_tokens SET used_at = $1 \
                     WHERE tenant_id = $2 AND user_id = $3 AND purpose = $4 AND used_at IS NULL",
                )
                .bind(token.created_at)
                .bind(token.tenant.0)
                .bind(token.user.0)
                .bind(token.purpose.as_str())
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO email_tokens (id, tenant_id, user_id, purpose, token_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(token.tenant.0)
                .bind(token.user.0)
                .bind(token.purpose.as_str())
                .bind(&token.token_hash.0[..])
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                tx.commit().await.map_err(crate::error::from_sqlx)
            }

            async fn consume_token(
                &self,
                tenant: guard_core::tenants::TenantId,
                purpose: guard_core::email::EmailTokenPurpose,
                token: &guard_core::sessions::TokenHash,
                at: time::OffsetDateTime,
            ) -> Result<Option<guard_core::users::UserId>, guard_core::store::StoreError> {
                let row: Option<(uuid::Uuid, time::OffsetDateTime)> = sqlx::query_as(
                    "UPDATE email_tokens SET used_at = $1 \
                     WHERE tenant_id = $2 AND purpose = $3 AND token_hash = $4 AND used_at IS NULL \
                     RETURNING user_id, expires_at",
                )
                .bind(at)
                .bind(tenant.0)
                .bind(purpose.as_str())
                .bind(&token.0[..])
                .fetch_optional(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.filter(|(_, expires_at)| at < *expires_at).map(|(user, _)| guard_core::users::UserId(user)))
            }
        }
    };
}
pub(crate) use impl_email_store;
