//! `SessionStore` for both backends, one SQL text for SQLite and PostgreSQL. Expiry is
//! decided in Rust, not by comparing times in SQL, which SQLite stores as text.

use guard_core::sessions::{ClientInfo, Session, SessionId};
use guard_core::store::StoreError;
use guard_core::tenants::TenantId;
use guard_core::users::UserId;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) const COLUMNS: &str =
    "id, tenant_id, user_id, created_at, last_seen_at, expires_at, idle_expires_at, ip, user_agent";

/// A session from a row with [`COLUMNS`].
pub(crate) fn from_row<R: Row>(row: &R) -> Result<Session, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    OffsetDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let e = crate::error::from_sqlx;
    Ok(Session {
        id: SessionId(row.try_get("id").map_err(e)?),
        tenant: TenantId(row.try_get("tenant_id").map_err(e)?),
        user: UserId(row.try_get("user_id").map_err(e)?),
        created_at: row.try_get("created_at").map_err(e)?,
        last_seen_at: row.try_get("last_seen_at").map_err(e)?,
        expires_at: row.try_get("expires_at").map_err(e)?,
        idle_expires_at: row.try_get("idle_expires_at").map_err(e)?,
        client: ClientInfo { ip: row.try_get("ip").map_err(e)?, user_agent: row.try_get("user_agent").map_err(e)? },
    })
}

/// Implements `SessionStore` for a `SqlStore` of one backend.
macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl guard_core::sessions::SessionStore for $store {
            async fn create(
                &self,
                new: &guard_core::sessions::NewSession,
            ) -> Result<(), guard_core::store::StoreError> {
                let s = &new.session;
                sqlx::query(
                    "INSERT INTO sessions (id, tenant_id, user_id, token_hash, created_at, last_seen_at, expires_at, \
                     idle_expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(s.id.0)
                .bind(s.tenant.0)
                .bind(s.user.0)
                .bind(&new.token_hash.0[..])
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(s.idle_expires_at)
                .bind(s.client.ip.as_deref())
                .bind(s.client.user_agent.as_deref())
                .execute(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn find(
                &self,
                token: &guard_core::sessions::TokenHash,
            ) -> Result<Option<guard_core::sessions::Session>, guard_core::store::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM sessions WHERE token_hash = $1 AND revoked_at IS NULL",
                    crate::sessions::COLUMNS
                )))
                .bind(&token.0[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                row.as_ref().map(crate::sessions::from_row).transpose()
            }

            async fn touch(
                &self,
                id: guard_core::sessions::SessionId,
                at: time::OffsetDateTime,
                idle_expires_at: time::OffsetDateTime,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query("UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE id = $3")
                    .bind(at)
                    .bind(idle_expires_at)
                    .bind(id.0)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn list_for_user(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                now: time::OffsetDateTime,
            ) -> Result<Vec<guard_core::sessions::Session>, guard_core::store::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL \
                     ORDER BY id DESC",
                    crate::sessions::COLUMNS
                )))
                .bind(tenant.0)
                .bind(user.0)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                let sessions = rows.iter().map(crate::sessions::from_row).collect::<Result<Vec<_>, _>>()?;
                Ok(sessions.into_iter().filter(|s| !s.expired(now)).collect())
            }

            async fn revoke(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                id: guard_core::sessions::SessionId,
            ) -> Result<bool, guard_core::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 \
                     WHERE tenant_id = $2 AND user_id = $3 AND id = $4 AND revoked_at IS NULL",
                )
                .bind(crate::tenants::now())
                .bind(tenant.0)
                .bind(user.0)
                .bind(id.0)
                .execute(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use impl_session_store;
