//! `RiskStore` for both backends, one SQL text for SQLite and PostgreSQL.

/// Implements `RiskStore` for a `SqlStore` of one backend.
macro_rules! impl_risk_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl guard_core::risk::RiskStore for $store {
            async fn record_attempt(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
                ip: &str,
                succeeded: bool,
                at_unix: i64,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO login_attempts (tenant_id, ip, account_hash, succeeded, at_unix) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant.0)
                .bind(ip)
                .bind(&account[..])
                .bind(succeeded)
                .bind(at_unix)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn attempt_counts(
                &self,
                tenant: guard_core::tenants::TenantId,
                account: &[u8; 32],
                ip: &str,
                failures_since: i64,
                accounts_since: i64,
            ) -> Result<guard_core::risk::AttemptCounts, guard_core::store::StoreError> {
                let (account_failures, ip_failures, ip_accounts): (i64, i64, i64) = sqlx::query_as(
                    "SELECT \
                     (SELECT COUNT(*) FROM login_attempts WHERE tenant_id = $1 AND account_hash = $2 \
                      AND succeeded = FALSE AND at_unix >= $4), \
                     (SELECT COUNT(*) FROM login_attempts WHERE tenant_id = $1 AND ip = $3 \
                      AND succeeded = FALSE AND at_unix >= $4), \
                     (SELECT COUNT(DISTINCT account_hash) FROM login_attempts WHERE tenant_id = $1 AND ip = $3 \
                      AND at_unix >= $5)",
                )
                .bind(tenant.0)
                .bind(&account[..])
                .bind(ip)
                .bind(failures_since)
                .bind(accounts_since)
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(guard_core::risk::AttemptCounts {
                    account_failures: count(account_failures),
                    ip_failures: count(ip_failures),
                    ip_accounts: count(ip_accounts),
                })
            }

            async fn known_sources(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                device: Option<&str>,
                ip: &str,
                network: Option<&str>,
            ) -> Result<guard_core::risk::KnownSources, guard_core::store::StoreError> {
                let (any, device, ip, network): (bool, bool, bool, bool) = sqlx::query_as(
                    "SELECT \
                     EXISTS (SELECT 1 FROM known_login_sources WHERE tenant_id = $1 AND user_id = $2), \
                     EXISTS (SELECT 1 FROM known_login_sources WHERE tenant_id = $1 AND user_id = $2 \
                      AND kind = 'device' AND value = $3), \
                     EXISTS (SELECT 1 FROM known_login_sources WHERE tenant_id = $1 AND user_id = $2 \
                      AND kind = 'ip' AND value = $4), \
                     EXISTS (SELECT 1 FROM known_login_sources WHERE tenant_id = $1 AND user_id = $2 \
                      AND kind = 'network' AND value = $5)",
                )
                .bind(tenant.0)
                .bind(user.0)
                .bind(device)
                .bind(ip)
                .bind(network)
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(guard_core::risk::KnownSources { any, device, ip, network })
            }

            async fn remember_source(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                kind: guard_core::risk::SourceKind,
                value: &str,
                at: time::OffsetDateTime,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO known_login_sources (user_id, tenant_id, kind, value, first_seen_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (user_id, kind, value) DO UPDATE SET last_seen_at = excluded.last_seen_at",
                )
                .bind(user.0)
                .bind(tenant.0)
                .bind(kind.as_str())
                .bind(value)
                .bind(at)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_risk_store;
