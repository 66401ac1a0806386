//! `KeyStore` for both backends, one SQL text (public JWK as TEXT / JSONB).

use guard_core::keys::{KeyId, KeyStatus, SigningAlgorithm, SigningKey};
use guard_core::store::StoreError;
use guard_core::tenants::TenantId;
use sqlx::Row;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) const COLUMNS: &str =
    "id, tenant_id, algorithm, public_jwk, private_encrypted, status, created_at, retired_at";

pub(crate) const INSERT: &str = "INSERT INTO signing_keys (id, tenant_id, algorithm, public_jwk, private_encrypted, \
     status, created_at) VALUES ($1, $2, $3, $4, $5, 'active', $6)";

/// A key from a row with [`COLUMNS`].
pub(crate) fn from_row<R: Row>(row: &R) -> Result<SigningKey, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Json<serde_json::Value>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    OffsetDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let e = crate::error::from_sqlx;
    let corrupt = |what: &str| StoreError::Internal(format!("signing key row with invalid {what}"));
    let algorithm: String = row.try_get("algorithm").map_err(e)?;
    let status: String = row.try_get("status").map_err(e)?;
    let Json(public_jwk) = row.try_get("public_jwk").map_err(e)?;
    Ok(SigningKey {
        id: KeyId(row.try_get("id").map_err(e)?),
        tenant: TenantId(row.try_get("tenant_id").map_err(e)?),
        algorithm: algorithm.parse::<SigningAlgorithm>().map_err(|_| corrupt("algorithm"))?,
        public_jwk,
        private_encrypted: row.try_get("private_encrypted").map_err(e)?,
        status: KeyStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        created_at: row.try_get("created_at").map_err(e)?,
        retired_at: row.try_get("retired_at").map_err(e)?,
    })
}

/// Implements `KeyStore` for a `SqlStore` of one backend.
macro_rules! impl_key_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl guard_core::keys::KeyStore for $store {
            async fn insert_active(
                &self,
                key: &guard_core::keys::SigningKey,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(crate::keys::INSERT)
                    .bind(&key.id.0)
                    .bind(key.tenant.0)
                    .bind(key.algorithm.as_str())
                    .bind(sqlx::types::Json(&key.public_jwk))
                    .bind(&key.private_encrypted)
                    .bind(key.created_at)
                    .execute(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn rotate(&self, key: &guard_core::keys::SigningKey) -> Result<(), guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                sqlx::query(
                    "UPDATE signing_keys SET status = 'retired', retired_at = $1 \
                     WHERE tenant_id = $2 AND status = 'active'",
                )
                .bind(key.created_at)
                .bind(key.tenant.0)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                sqlx::query(crate::keys::INSERT)
                    .bind(&key.id.0)
                    .bind(key.tenant.0)
                    .bind(key.algorithm.as_str())
                    .bind(sqlx::types::Json(&key.public_jwk))
                    .bind(&key.private_encrypted)
                    .bind(key.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                tx.commit().await.map_err(crate::error::from_sqlx)
            }

            async fn list(
                &self,
                tenant: guard_core::tenants::TenantId,
            ) -> Result<Vec<guard_core::keys::SigningKey>, guard_core::store::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id",
                    crate::keys::COLUMNS
                )))
                .bind(tenant.0)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                rows.iter().map(crate::keys::from_row).collect()
            }
        }
    };
}
pub(crate) use impl_key_store;
