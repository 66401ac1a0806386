//! `MfaStore` for both backends, one SQL text for SQLite and PostgreSQL. Spending a
//! code, a step or a challenge try is one conditional statement, so two racing
//! requests cannot both spend the same thing.

/// Inserts `count` recovery codes for one user: binds user, tenant, then each hash.
pub(crate) fn insert_codes_sql(count: usize) -> String {
    let rows: Vec<String> = (0..count).map(|i| format!("($1, $2, ${})", i + 3)).collect();
    format!("INSERT INTO mfa_recovery_codes (user_id, tenant_id, code_hash) VALUES {}", rows.join(", "))
}

/// Implements `MfaStore` for a `SqlStore` of one backend.
macro_rules! impl_mfa_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn store_recovery_codes<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                codes: &[guard_core::sessions::TokenHash],
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query("DELETE FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.0)
                    .bind(user.0)
                    .execute(&mut **tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                if codes.is_empty() {
                    return Ok(());
                }
                let mut insert =
                    sqlx::query(sqlx::AssertSqlSafe(crate::mfa::insert_codes_sql(codes.len()))).bind(user.0).bind(tenant.0);
                for code in codes {
                    insert = insert.bind(&code.0[..]);
                }
                insert.execute(&mut **tx).await.map_err(crate::error::from_sqlx)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl guard_core::mfa::MfaStore for $store {
            async fn totp(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
            ) -> Result<Option<guard_core::mfa::TotpFactor>, guard_core::store::StoreError> {
                let row: Option<(Vec<u8>, time::OffsetDateTime, Option<time::OffsetDateTime>, i64)> = sqlx::query_as(
                    "SELECT secret, created_at, confirmed_at, last_step FROM mfa_totp \
                     WHERE tenant_id = $1 AND user_id = $2",
                )
                .bind(tenant.0)
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.map(|(sealed_secret, created_at, confirmed_at, last_step)| guard_core::mfa::TotpFactor {
                    sealed_secret,
                    created_at,
                    confirmed_at,
                    last_step,
                }))
            }

            async fn put_pending_totp(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                sealed_secret: &[u8],
                at: time::OffsetDateTime,
            ) -> Result<(), guard_core::store::StoreError> {
                // Replaces an unconfirmed secret; a confirmed one stays and nothing changes.
                let done = sqlx::query(
                    "INSERT INTO mfa_totp (user_id, tenant_id, secret, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, \
                     last_step = -1 WHERE mfa_totp.confirmed_at IS NULL",
                )
                .bind(user.0)
                .bind(tenant.0)
                .bind(sealed_secret)
                .bind(at)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                if done.rows_affected() == 0 {
                    return Err(guard_core::store::StoreError::Conflict("an authenticator is already active".into()));
                }
                Ok(())
            }

            async fn confirm_totp(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                step: i64,
                at: time::OffsetDateTime,
                recovery_codes: &[guard_core::sessions::TokenHash],
            ) -> Result<bool, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let done = sqlx::query(
                    "UPDATE mfa_totp SET confirmed_at = $1, last_step = $2 \
                     WHERE tenant_id = $3 AND user_id = $4 AND confirmed_at IS NULL AND last_step < $2",
                )
                .bind(at)
                .bind(step)
                .bind(tenant.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::store_recovery_codes(&mut tx, tenant, user, recovery_codes).await?;
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(true)
            }

            async fn use_totp_step(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                step: i64,
            ) -> Result<bool, guard_core::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE mfa_totp SET last_step = $1 \
                     WHERE tenant_id = $2 AND user_id = $3 AND confirmed_at IS NOT NULL AND last_step < $1",
                )
                .bind(step)
                .bind(tenant.0)
                .bind(user.0)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace_recovery_codes(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                codes: &[guard_core::sessions::TokenHash],
            ) -> Result<(), guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                Self::store_recovery_codes(&mut tx, tenant, user, codes).await?;
                tx.commit().await.map_err(crate::error::from_sqlx)
            }

            async fn use_recovery_code(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                code: &guard_core::sessions::TokenHash,
                at: time::OffsetDateTime,
            ) -> Result<bool, guard_core::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE mfa_recovery_codes SET used_at = $1 \
                     WHERE tenant_id = $2 AND user_id = $3 AND code_hash = $4 AND used_at IS NULL",
                )
                .bind(at)
                .bind(tenant.0)
                .bind(user.0)
                .bind(&code.0[..])
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn recovery_codes_left(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
            ) -> Result<u64, guard_core::store::StoreError> {
                let left: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
                )
                .bind(tenant.0)
                .bind(user.0)
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(u64::try_from(left).unwrap_or(0))
            }

            async fn remove_factors(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
            ) -> Result<bool, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let mut removed = false;
                for table in ["mfa_totp", "mfa_recovery_codes", "mfa_challenges", "mfa_enrollment_deadlines"] {
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND user_id = $2"
                    )))
                    .bind(tenant.0)
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    removed |= table == "mfa_totp" && done.rows_affected() > 0;
                }
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(removed)
            }

            async fn create_challenge(
                &self,
                c: &guard_core::mfa::NewChallenge,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO mfa_challenges (id_hash, tenant_id, user_id, purpose, created_at, expires_at, ip, \
                     user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&c.id_hash.0[..])
                .bind(c.tenant.0)
                .bind(c.user.0)
                .bind(c.purpose.as_str())
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.client.ip.as_deref())
                .bind(c.client.user_agent.as_deref())
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn take_attempt(
                &self,
                tenant: guard_core::tenants::TenantId,
                id_hash: &guard_core::sessions::TokenHash,
                max_attempts: i64,
            ) -> Result<Option<guard_core::mfa::Challenge>, guard_core::store::StoreError> {
                type Row = (uuid::Uuid, String, time::OffsetDateTime, i64, Option<String>, Option<String>);
                let row: Option<Row> = sqlx::query_as(
                    "UPDATE mfa_challenges SET attempts = attempts + 1 \
                     WHERE tenant_id = $1 AND id_hash = $2 AND attempts < $3 \
                     RETURNING user_id, purpose, expires_at, attempts, ip, user_agent",
                )
                .bind(tenant.0)
                .bind(&id_hash.0[..])
                .bind(max_attempts)
                .fetch_optional(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                let Some((user, purpose, expires_at, attempts, ip, user_agent)) = row else { return Ok(None) };
                let purpose = guard_core::mfa::ChallengePurpose::parse(&purpose).ok_or_else(|| {
                    guard_core::store::StoreError::Internal("challenge row with invalid purpose".into())
                })?;
                Ok(Some(guard_core::mfa::Challenge {
                    user: guard_core::users::UserId(user),
                    purpose,
                    expires_at,
                    attempts,
                    client: guard_core::sessions::ClientInfo { ip, user_agent },
                }))
            }

            async fn delete_challenge(
                &self,
                tenant: guard_core::tenants::TenantId,
                id_hash: &guard_core::sessions::TokenHash,
            ) -> Result<bool, guard_core::store::StoreError> {
                let done = sqlx::query("DELETE FROM mfa_challenges WHERE tenant_id = $1 AND id_hash = $2")
                    .bind(tenant.0)
                    .bind(&id_hash.0[..])
                    .execute(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn enrollment_deadline(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                due: time::OffsetDateTime,
            ) -> Result<time::OffsetDateTime, guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO mfa_enrollment_deadlines (user_id, tenant_id, due_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user.0)
                .bind(tenant.0)
                .bind(due)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                sqlx::query_scalar("SELECT due_at FROM mfa_enrollment_deadlines WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.0)
                    .bind(user.0)
                    .fetch_one(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)
            }

            async fn enrollment_counts(
                &self,
            ) -> Result<Vec<guard_core::mfa::EnrollmentCount>, guard_core::store::StoreError> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT t.slug, COUNT(u.id), COUNT(m.user_id) FROM tenants t \
                     LEFT JOIN users u ON u.tenant_id = t.id \
                     LEFT JOIN mfa_totp m ON m.user_id = u.id AND m.confirmed_at IS NOT NULL \
                     GROUP BY t.slug ORDER BY t.slug",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(tenant_slug, users, enrolled)| guard_core::mfa::EnrollmentCount {
                        tenant_slug,
                        users: u64::try_from(users).unwrap_or(0),
                        enrolled: u64::try_from(enrolled).unwrap_or(0),
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use impl_mfa_store;
