//! `TenantStore` for both backends: the SQL is the same text on SQLite and PostgreSQL
//! (ids bind as BLOB / UUID, settings as TEXT / JSONB, times as TEXT / TIMESTAMPTZ).

use guard_core::store::StoreError;
use guard_core::tenants::{Tenant, TenantId, TenantName, TenantSettings, TenantSlug, TenantStatus};
use sqlx::Row;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) const COLUMNS: &str = "id, slug, name, status, settings, created_at, updated_at";

pub(crate) const INSERT: &str = "INSERT INTO tenants (id, slug, name, status, settings, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";

/// Inserts unless the slug is taken, for the bootstrap that several replicas may run
/// at once.
pub(crate) const INSERT_IF_ABSENT: &str = "INSERT INTO tenants (id, slug, name, status, settings, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (slug) DO NOTHING";

/// Now, to the microsecond both backends keep, so a stored time reads back equal.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

/// A tenant from a row with [`COLUMNS`].
pub(crate) fn from_row<R: Row>(row: &R) -> Result<Tenant, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Json<TenantSettings>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    OffsetDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let corrupt = |what: &str| StoreError::Internal(format!("tenant row with invalid {what}"));
    let slug: String = row.try_get("slug").map_err(crate::error::from_sqlx)?;
    let name: String = row.try_get("name").map_err(crate::error::from_sqlx)?;
    let status: String = row.try_get("status").map_err(crate::error::from_sqlx)?;
    let Json(settings): Json<TenantSettings> = row.try_get("settings").map_err(crate::error::from_sqlx)?;
    Ok(Tenant {
        id: TenantId(row.try_get("id").map_err(crate::error::from_sqlx)?),
        slug: TenantSlug::parse(&slug).map_err(|_| corrupt("slug"))?,
        name: TenantName::parse(&name).map_err(|_| corrupt("name"))?,
        status: TenantStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        settings,
        created_at: row.try_get("created_at").map_err(crate::error::from_sqlx)?,
        updated_at: row.try_get("updated_at").map_err(crate::error::from_sqlx)?,
    })
}

/// Implements `TenantStore` for a `SqlStore` of one backend.
macro_rules! impl_tenant_store {
    ($store:ty) => {
        impl $store {
            /// Runs `sql` (one of the INSERTs) for a new active tenant; returns the rows
            /// inserted.
            async fn insert_tenant(
                &self,
                sql: &'static str,
                id: guard_core::tenants::TenantId,
                tenant: &guard_core::tenants::NewTenant,
                at: time::OffsetDateTime,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<u64, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let done = sqlx::query(sql)
                    .bind(id.0)
                    .bind(tenant.slug.as_str())
                    .bind(tenant.name.as_str())
                    .bind(guard_core::tenants::TenantStatus::Active.as_str())
                    .bind(sqlx::types::Json(&tenant.settings))
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                // Only a tenant actually created gets its event (the default tenant is
                // ensured by every process that starts).
                if done.rows_affected() == 1 {
                    crate::audit::insert_audit_record!(&mut *tx, audit)?;
                }
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait::async_trait]
        impl guard_core::tenants::TenantStore for $store {
            async fn create(
                &self,
                id: guard_core::tenants::TenantId,
                tenant: &guard_core::tenants::NewTenant,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<guard_core::tenants::Tenant, guard_core::store::StoreError> {
                let at = crate::tenants::now();
                self.insert_tenant(crate::tenants::INSERT, id, tenant, at, audit).await?;
                Ok(guard_core::tenants::Tenant {
                    id,
                    slug: tenant.slug.clone(),
                    name: tenant.name.clone(),
                    status: guard_core::tenants::TenantStatus::Active,
                    settings: tenant.settings.clone(),
                    created_at: at,
                    updated_at: at,
                })
            }

            async fn create_if_absent(
                &self,
                id: guard_core::tenants::TenantId,
                tenant: &guard_core::tenants::NewTenant,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let at = crate::tenants::now();
                let inserted = self.insert_tenant(crate::tenants::INSERT_IF_ABSENT, id, tenant, at, audit).await?;
                Ok(inserted == 1)
            }

            async fn get(
                &self,
                id: guard_core::tenants::TenantId,
            ) -> Result<Option<guard_core::tenants::Tenant>, guard_core::store::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM tenants WHERE id = $1",
                    crate::tenants::COLUMNS
                )))
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                row.as_ref().map(crate::tenants::from_row).transpose()
            }

            async fn get_by_slug(
                &self,
                slug: &guard_core::tenants::TenantSlug,
            ) -> Result<Option<guard_core::tenants::Tenant>, guard_core::store::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM tenants WHERE slug = $1",
                    crate::tenants::COLUMNS
                )))
                .bind(slug.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                row.as_ref().map(crate::tenants::from_row).transpose()
            }

            async fn list(
                &self,
                after: Option<guard_core::tenants::TenantId>,
                limit: u32,
            ) -> Result<guard_core::tenants::TenantPage, guard_core::store::StoreError> {
                let fetch = i64::from(limit) + 1;
                let rows = match after {
                    Some(after) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
                            crate::tenants::COLUMNS
                        )))
                        .bind(after.0)
                        .bind(fetch)
                        .fetch_all(&self.pool)
                        .await
                    }
                    None => {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {} FROM tenants ORDER BY id LIMIT $1",
                            crate::tenants::COLUMNS
                        )))
                        .bind(fetch)
                        .fetch_all(&self.pool)
                        .await
                    }
                }
                .map_err(crate::error::from_sqlx)?;
                let mut tenants = rows.iter().map(crate::tenants::from_row).collect::<Result<Vec<_>, _>>()?;
                let next_cursor = if tenants.len() > limit as usize {
                    tenants.truncate(limit as usize);
                    tenants.last().map(|t| t.id)
                } else {
                    None
                };
                Ok(guard_core::tenants::TenantPage { tenants, next_cursor })
            }

            async fn set_status(
                &self,
                id: guard_core::tenants::TenantId,
                status: guard_core::tenants::TenantStatus,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<guard_core::tenants::Tenant, guard_core::store::StoreError> {
                let row = crate::audit::audited!(self, audit, |tx| sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE tenants SET status = $1, updated_at = $2 WHERE id = $3 RETURNING {}",
                    crate::tenants::COLUMNS
                )))
                .bind(status.as_str())
                .bind(crate::tenants::now())
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?
                // No tenant, no change: the transaction and its event roll back.
                .ok_or(guard_core::store::StoreError::NotFound)?);
                crate::tenants::from_row(&row)
            }

            async fn set_settings(
                &self,
                id: guard_core::tenants::TenantId,
                settings: &guard_core::tenants::TenantSettings,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<guard_core::tenants::Tenant, guard_core::store::StoreError> {
                let row = crate::audit::audited!(self, audit, |tx| sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE tenants SET settings = $1, updated_at = $2 WHERE id = $3 RETURNING {}",
                    crate::tenants::COLUMNS
                )))
                .bind(sqlx::types::Json(settings))
                .bind(crate::tenants::now())
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?
                // No tenant, no change: the transaction and its event roll back.
                .ok_or(guard_core::store::StoreError::NotFound)?);
                crate::tenants::from_row(&row)
            }
        }
    };
}
pub(crate) use impl_tenant_store;
