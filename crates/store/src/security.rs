//! `SecurityStore` for both backends, one SQL text for SQLite and PostgreSQL. Block
//! and lock times are also kept as Unix seconds, so they compare as numbers in SQL
//! on both backends.

/// Implements `SecurityStore` for a `SqlStore` of one backend.
/// Admits one try of an account (see `SecurityStore::admit_attempt`): $1 tenant, $2
/// account hash, $3 now, $4 failures before delays start, $5 failures that lock, $6
/// the lock's end. The wait ladder matches `guard_core::security::delay_seconds`.
pub(crate) const ADMIT_ATTEMPT: &str = "\
    INSERT INTO account_lockouts (tenant_id, account_hash, failures, last_failure_unix, locked_until_unix) \
    VALUES ($1, $2, 1, $3, CASE WHEN $5 <= 1 THEN $6 ELSE NULL END) \
    ON CONFLICT (tenant_id, account_hash) DO UPDATE SET \
      failures = CASE WHEN account_lockouts.locked_until_unix IS NOT NULL THEN 1 \
        ELSE account_lockouts.failures + 1 END, \
      locked_until_unix = CASE \
        WHEN (CASE WHEN account_lockouts.locked_until_unix IS NOT NULL THEN 1 \
          ELSE account_lockouts.failures + 1 END) >= $5 THEN $6 \
        ELSE NULL END, \
      last_failure_unix = $3 \
    WHERE (account_lockouts.locked_until_unix IS NOT NULL AND account_lockouts.locked_until_unix <= $3) \
      OR (account_lockouts.locked_until_unix IS NULL AND NOT (account_lockouts.failures >= $4 \
        AND account_lockouts.last_failure_unix + CASE account_lockouts.failures - $4 \
          WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 2 THEN 4 WHEN 3 THEN 8 WHEN 4 THEN 16 WHEN 5 THEN 32 ELSE 60 END > $3)) \
    RETURNING failures, last_failure_unix, locked_until_unix";

macro_rules! impl_security_store {
    ($store:ty) => {
        impl $store {
            fn ip_block_from_row(
                row: (String, Option<uuid::Uuid>, i64, time::OffsetDateTime, time::OffsetDateTime),
            ) -> guard_core::security::IpBlock {
                let (ip, tenant, failures, blocked_at, blocked_until) = row;
                guard_core::security::IpBlock {
                    ip,
                    tenant: tenant.map(guard_core::tenants::TenantId),
                    failures: u64::try_from(failures).unwrap_or(0),
                    blocked_at,
                    blocked_until,
                }
            }
        }

        #[async_trait::async_trait]
        impl guard_core::security::SecurityStore for $store {
            async fn ip_block(
                &self,
                ip: &str,
                now_unix: i64,
            ) -> Result<Option<guard_core::security::IpBlock>, guard_core::store::StoreError> {
                let row = sqlx::query_as(
                    "SELECT ip, tenant_id, failures, blocked_at, blocked_until FROM ip_blocks \
                     WHERE ip = $1 AND until_unix > $2",
                )
                .bind(ip)
                .bind(now_unix)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.map(Self::ip_block_from_row))
            }

            async fn block_ip(
                &self,
                block: &guard_core::security::IpBlock,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<(), guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| sqlx::query(
                    "INSERT INTO ip_blocks (ip, tenant_id, failures, blocked_at, blocked_until, until_unix) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ip) DO UPDATE SET tenant_id = excluded.tenant_id, \
                     failures = excluded.failures, blocked_at = excluded.blocked_at, \
                     blocked_until = excluded.blocked_until, until_unix = excluded.until_unix",
                )
                .bind(&block.ip)
                .bind(block.tenant.map(|t| t.0))
                .bind(i64::try_from(block.failures).unwrap_or(i64::MAX))
                .bind(block.blocked_at)
                .bind(block.blocked_until)
                .bind(block.blocked_until.unix_timestamp())
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?);
                Ok(())
            }

            async fn unblock_ip(
                &self,
                ip: &str,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| {
                    let done = sqlx::query("DELETE FROM ip_blocks WHERE ip = $1")
                        .bind(ip)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                });
                Ok(true)
            }

            async fn ip_blocks(
                &self,
                now_unix: i64,
            ) -> Result<Vec<guard_core::security::IpBlock>, guard_core::store::StoreError> {
                let rows = sqlx::query_as(
                    "SELECT ip, tenant_id, failures, blocked_at, blocked_until FROM ip_blocks \
                     WHERE until_unix > $1 ORDER BY until_unix DESC, ip",
                )
                .bind(now_unix)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(Self::ip_block_from_row).collect())
            }

            async fn ip_failures_since(
                &self,
                ip: &str,
                since_unix: i64,
            ) -> Result<u64, guard_core::store::StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM login_attempts WHERE ip = $1 AND succeeded = FALSE AND at_unix >= $2",
                )
                .bind(ip)
                .bind(since_unix)
                .fetch_one(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn account_failures(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
            ) -> Result<Option<guard_core::security::AccountFailures>, guard_core::store::StoreError> {
                let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT failures, last_failure_unix, locked_until_unix FROM account_lockouts \
                     WHERE tenant_id = $1 AND account_hash = $2",
                )
                .bind(tenant.0)
                .bind(&account[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.map(|(failures, last_failure_unix, locked_until_unix)| {
                    guard_core::security::AccountFailures {
                        failures: u64::try_from(failures).unwrap_or(0),
                        last_failure_unix,
                        locked_until_unix,
                    }
                }))
            }

            async fn add_account_failure(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
                now_unix: i64,
                lock_at: u64,
                lock_until_unix: i64,
            ) -> Result<guard_core::security::AccountFailures, guard_core::store::StoreError> {
                // A lock that has run out starts the count afresh.
                let (failures, last_failure_unix, locked_until_unix): (i64, i64, Option<i64>) = sqlx::query_as(
                    "INSERT INTO account_lockouts (tenant_id, account_hash, failures, last_failure_unix) \
                     VALUES ($1, $2, 1, $3) ON CONFLICT (tenant_id, account_hash) DO UPDATE SET \
                     failures = CASE WHEN account_lockouts.locked_until_unix IS NOT NULL \
                       AND account_lockouts.locked_until_unix <= $3 THEN 1 ELSE account_lockouts.failures + 1 END, \
                     locked_until_unix = CASE WHEN account_lockouts.locked_until_unix IS NOT NULL \
                       AND account_lockouts.locked_until_unix <= $3 THEN NULL \
                       ELSE account_lockouts.locked_until_unix END, \
                     last_failure_unix = $3 \
                     RETURNING failures, last_failure_unix, locked_until_unix",
                )
                .bind(tenant.0)
                .bind(&account[..])
                .bind(now_unix)
                .fetch_one(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                let failures = u64::try_from(failures).unwrap_or(0);
                if failures >= lock_at && locked_until_unix.is_none() {
                    sqlx::query(
                        "UPDATE account_lockouts SET locked_until_unix = $1 WHERE tenant_id = $2 AND account_hash = $3",
                    )
                    .bind(lock_until_unix)
                    .bind(tenant.0)
                    .bind(&account[..])
                    .execute(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    return Ok(guard_core::security::AccountFailures {
                        failures,
                        last_failure_unix,
                        locked_until_unix: Some(lock_until_unix),
                    });
                }
                Ok(guard_core::security::AccountFailures { failures, last_failure_unix, locked_until_unix })
            }

            async fn admit_attempt(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
                now_unix: i64,
                delay_after: u64,
                lock_at: u64,
                lock_until_unix: i64,
            ) -> Result<Option<guard_core::security::AccountFailures>, guard_core::store::StoreError> {
                // One statement: the decision and the count cannot be split by a
                // concurrent try. No row back means refused (locked, or delayed).
                let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(crate::security::ADMIT_ATTEMPT)
                    .bind(tenant.0)
                    .bind(&account[..])
                    .bind(now_unix)
                    .bind(i64::try_from(delay_after).unwrap_or(i64::MAX))
                    .bind(i64::try_from(lock_at).unwrap_or(i64::MAX))
                    .bind(lock_until_unix)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(row.map(|(failures, last_failure_unix, locked_until_unix)| guard_core::security::AccountFailures {
                    failures: u64::try_from(failures).unwrap_or(0),
                    last_failure_unix,
                    locked_until_unix,
                }))
            }

            async fn release_attempt(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
                lock_at: u64,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "UPDATE account_lockouts SET failures = failures - 1, \
                     locked_until_unix = CASE WHEN failures - 1 < $3 THEN NULL ELSE locked_until_unix END \
                     WHERE tenant_id = $1 AND account_hash = $2 AND failures > 0",
                )
                .bind(tenant.0)
                .bind(&account[..])
                .bind(i64::try_from(lock_at).unwrap_or(i64::MAX))
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn prune(
                &self,
                now_unix: i64,
                stale_before_unix: i64,
                expired_before: time::OffsetDateTime,
            ) -> Result<u64, guard_core::store::StoreError> {
                let run = |query: sqlx::query::Query<'static, _, _>| async {
                    query.execute(&self.writer).await.map(|done| done.rows_affected()).map_err(crate::error::from_sqlx)
                };
                let mut deleted = run(sqlx::query("DELETE FROM ip_blocks WHERE until_unix <= $1").bind(now_unix)).await?;
                deleted += run(sqlx::query(
                    "DELETE FROM account_lockouts WHERE last_failure_unix < $1 \
                     AND (locked_until_unix IS NULL OR locked_until_unix <= $2)",
                )
                .bind(stale_before_unix)
                .bind(now_unix))
                .await?;
                deleted += run(sqlx::query("DELETE FROM login_attempts WHERE at_unix < $1").bind(stale_before_unix)).await?;
                // Times compare as text on SQLite: both sides are UTC, written by one encoder.
                for table in ["mfa_challenges", "webauthn_ceremonies"] {
                    let sql = format!("DELETE FROM {table} WHERE expires_at < $1");
                    deleted += run(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(expired_before)).await?;
                }
                Ok(deleted)
            }

            async fn clear_account(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
            ) -> Result<bool, guard_core::store::StoreError> {
                let done = sqlx::query("DELETE FROM account_lockouts WHERE tenant_id = $1 AND account_hash = $2")
                    .bind(tenant.0)
                    .bind(&account[..])
                    .execute(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}
pub(crate) use impl_security_store;
