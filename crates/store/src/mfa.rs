//! `MfaStore` for both backends, one SQL text for SQLite and PostgreSQL. Spending a
//! code, a step or a challenge try is one conditional statement, so two racing
//! requests cannot both spend the same thing.

/// Inserts `count` recovery codes for one user: binds user, tenant, then each hash.
pub(crate) fn insert_codes_sql(count: usize) -> String {
    let rows: Vec<String> = (0..count).map(|i| format!("($1, $2, ${})", i + 3)).collect();
    format!("INSERT INTO mfa_recovery_codes (user_id, tenant_id, code_hash) VALUES {}", rows.join(", "))
}

/// Every table holding a user's factors or a step towards one, emptied by a reset.
pub(crate) const FACTOR_TABLES: [&str; 6] = [
    "mfa_totp",
    "webauthn_credentials",
    "mfa_recovery_codes",
    "mfa_challenges",
    "webauthn_ceremonies",
    "mfa_enrollment_deadlines",
];

pub(crate) const CHALLENGE_COLUMNS: &str = "user_id, purpose, expires_at, attempts, ip, user_agent, webauthn_state, \
     risk_score, risk_reasons, device_hash, email_code_hash";

pub(crate) type ChallengeRow = (
    uuid::Uuid,
    String,
    time::OffsetDateTime,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// A challenge from a row of [`CHALLENGE_COLUMNS`].
pub(crate) fn challenge(row: ChallengeRow) -> Result<guard_core::mfa::Challenge, guard_core::store::StoreError> {
    let (user, purpose, expires_at, attempts, ip, user_agent, webauthn_state, score, reasons, device, email_code) = row;
    let risk = guard_core::sessions::ClientInfo::risk_from_columns(score, reasons);
    let email_code_hash = match email_code {
        Some(hash) => Some(guard_core::sessions::TokenHash(hash.try_into().map_err(|_| {
            guard_core::store::StoreError::Internal("challenge row with invalid email code hash".into())
        })?)),
        None => None,
    };
    let purpose = guard_core::mfa::ChallengePurpose::parse(&purpose)
        .ok_or_else(|| guard_core::store::StoreError::Internal("challenge row with invalid purpose".into()))?;
    Ok(guard_core::mfa::Challenge {
        user: guard_core::users::UserId(user),
        purpose,
        expires_at,
        attempts,
        client: guard_core::sessions::ClientInfo { ip, user_agent, device, risk },
        webauthn_state,
        email_code_hash,
    })
}

pub(crate) const PASSKEY_COLUMNS: &str =
    "id, tenant_id, user_id, credential_id, name, passkey, created_at, last_used_at";

pub(crate) type PasskeyRow =
    (uuid::Uuid, uuid::Uuid, uuid::Uuid, Vec<u8>, String, String, time::OffsetDateTime, Option<time::OffsetDateTime>);

/// A credential from a row of [`PASSKEY_COLUMNS`].
pub(crate) fn passkey(row: PasskeyRow) -> guard_core::mfa::StoredPasskey {
    let (id, tenant, user, credential_id, name, passkey, created_at, last_used_at) = row;
    guard_core::mfa::StoredPasskey {
        id,
        tenant: guard_core::tenants::TenantId(tenant),
        user: guard_core::users::UserId(user),
        credential_id,
        name,
        passkey,
        created_at,
        last_used_at,
    }
}

/// Implements `MfaStore` for a `SqlStore` of one backend.
macro_rules! impl_mfa_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// The challenge `sql` (binding tenant, id hash, most attempts) returns.
            async fn challenge_row(
                &self,
                sql: String,
                tenant: guard_core::tenants::TenantId,
                id_hash: &guard_core::sessions::TokenHash,
                max_attempts: i64,
            ) -> Result<Option<guard_core::mfa::Challenge>, guard_core::store::StoreError> {
                let row: Option<crate::mfa::ChallengeRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.0)
                    .bind(&id_hash.0[..])
                    .bind(max_attempts)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                row.map(crate::mfa::challenge).transpose()
            }

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
                audit: &guard_core::audit::AuditRecord,
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
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
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
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<(), guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                Self::store_recovery_codes(&mut tx, tenant, user, codes).await?;
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
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
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let mut removed = false;
                for table in crate::mfa::FACTOR_TABLES {
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND user_id = $2"
                    )))
                    .bind(tenant.0)
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    removed |= matches!(table, "mfa_totp" | "webauthn_credentials") && done.rows_affected() > 0;
                }
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(removed)
            }

            async fn remove_totp(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let done = sqlx::query("DELETE FROM mfa_totp WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.0)
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                sqlx::query(
                    "DELETE FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2 \
                     AND NOT EXISTS (SELECT 1 FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2)",
                )
                .bind(tenant.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_challenge(
                &self,
                c: &guard_core::mfa::NewChallenge,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO mfa_challenges (id_hash, tenant_id, user_id, purpose, created_at, expires_at, ip, \
                     user_agent, risk_score, risk_reasons, device_hash, email_code_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&c.id_hash.0[..])
                .bind(c.tenant.0)
                .bind(c.user.0)
                .bind(c.purpose.as_str())
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.client.ip.as_deref())
                .bind(c.client.user_agent.as_deref())
                .bind(c.client.risk.as_ref().map(|r| i64::from(r.score)))
                .bind(c.client.risk_reasons_text())
                .bind(c.client.device.as_deref())
                .bind(c.email_code_hash.as_ref().map(|h| h.0.to_vec()))
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
                let sql = format!(
                    "UPDATE mfa_challenges SET attempts = attempts + 1 \
                     WHERE tenant_id = $1 AND id_hash = $2 AND attempts < $3 RETURNING {}",
                    crate::mfa::CHALLENGE_COLUMNS
                );
                self.challenge_row(sql, tenant, id_hash, max_attempts).await
            }

            async fn peek_challenge(
                &self,
                tenant: guard_core::tenants::TenantId,
                id_hash: &guard_core::sessions::TokenHash,
                max_attempts: i64,
            ) -> Result<Option<guard_core::mfa::Challenge>, guard_core::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM mfa_challenges WHERE tenant_id = $1 AND id_hash = $2 AND attempts < $3",
                    crate::mfa::CHALLENGE_COLUMNS
                );
                self.challenge_row(sql, tenant, id_hash, max_attempts).await
            }

            async fn set_challenge_webauthn(
                &self,
                tenant: guard_core::tenants::TenantId,
                id_hash: &guard_core::sessions::TokenHash,
                state: &str,
            ) -> Result<bool, guard_core::store::StoreError> {
                let done = sqlx::query("UPDATE mfa_challenges SET webauthn_state = $1 WHERE tenant_id = $2 AND id_hash = $3")
                    .bind(state)
                    .bind(tenant.0)
                    .bind(&id_hash.0[..])
                    .execute(&self.writer)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn passkeys(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
            ) -> Result<Vec<guard_core::mfa::StoredPasskey>, guard_core::store::StoreError> {
                let rows: Vec<crate::mfa::PasskeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2 ORDER BY id",
                    crate::mfa::PASSKEY_COLUMNS
                )))
                .bind(tenant.0)
                .bind(user.0)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(crate::mfa::passkey).collect())
            }

            async fn passkey_by_credential_id(
                &self,
                tenant: guard_core::tenants::TenantId,
                credential_id: &[u8],
            ) -> Result<Option<guard_core::mfa::StoredPasskey>, guard_core::store::StoreError> {
                let row: Option<crate::mfa::PasskeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM webauthn_credentials WHERE tenant_id = $1 AND credential_id = $2",
                    crate::mfa::PASSKEY_COLUMNS
                )))
                .bind(tenant.0)
                .bind(credential_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.map(crate::mfa::passkey))
            }

            async fn add_passkey(
                &self,
                p: &guard_core::mfa::StoredPasskey,
                recovery_codes: &[guard_core::sessions::TokenHash],
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO webauthn_credentials (id, tenant_id, user_id, credential_id, name, passkey, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(p.id)
                .bind(p.tenant.0)
                .bind(p.user.0)
                .bind(&p.credential_id[..])
                .bind(&p.name)
                .bind(&p.passkey)
                .bind(p.created_at)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                // Two first factors enrolled at once must not each replace the other's
                // codes: the set shown to the user would be dead.
                let unused: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
                )
                .bind(p.tenant.0)
                .bind(p.user.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                let store_codes = !recovery_codes.is_empty() && unused == 0;
                if store_codes {
                    Self::store_recovery_codes(&mut tx, p.tenant, p.user, recovery_codes).await?;
                }
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(store_codes)
            }

            async fn passkey_used(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: uuid::Uuid,
                passkey: Option<&str>,
                at: time::OffsetDateTime,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "UPDATE webauthn_credentials SET last_used_at = $1, passkey = COALESCE($2, passkey) \
                     WHERE tenant_id = $3 AND id = $4",
                )
                .bind(at)
                .bind(passkey)
                .bind(tenant.0)
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn rename_passkey(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                id: uuid::Uuid,
                name: &str,
            ) -> Result<bool, guard_core::store::StoreError> {
                let done =
                    sqlx::query("UPDATE webauthn_credentials SET name = $1 WHERE tenant_id = $2 AND user_id = $3 AND id = $4")
                        .bind(name)
                        .bind(tenant.0)
                        .bind(user.0)
                        .bind(id)
                        .execute(&self.writer)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn remove_passkey(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: guard_core::users::UserId,
                id: uuid::Uuid,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let done = sqlx::query("DELETE FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2 AND id = $3")
                    .bind(tenant.0)
                    .bind(user.0)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                // Without a factor left, recovery codes would be a factor of their own.
                sqlx::query(
                    "DELETE FROM mfa_recovery_codes WHERE tenant_id = $1 AND user_id = $2 \
                     AND NOT EXISTS (SELECT 1 FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2) \
                     AND NOT EXISTS (SELECT 1 FROM mfa_totp WHERE tenant_id = $1 AND user_id = $2 \
                     AND confirmed_at IS NOT NULL)",
                )
                .bind(tenant.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                Ok(true)
            }

            async fn put_ceremony(&self, c: &guard_core::mfa::Ceremony) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO webauthn_ceremonies (id_hash, tenant_id, user_id, purpose, name, state, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.id_hash.0[..])
                .bind(c.tenant.0)
                .bind(c.user.map(|u| u.0))
                .bind(c.purpose.as_str())
                .bind(c.name.as_deref())
                .bind(&c.state)
                .bind(c.expires_at)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn take_ceremony(
                &self,
                tenant: guard_core::tenants::TenantId,
                id_hash: &guard_core::sessions::TokenHash,
            ) -> Result<Option<guard_core::mfa::Ceremony>, guard_core::store::StoreError> {
                type Row = (Option<uuid::Uuid>, String, Option<String>, String, time::OffsetDateTime);
                let row: Option<Row> = sqlx::query_as(
                    "DELETE FROM webauthn_ceremonies WHERE tenant_id = $1 AND id_hash = $2 \
                     RETURNING user_id, purpose, name, state, expires_at",
                )
                .bind(tenant.0)
                .bind(&id_hash.0[..])
                .fetch_optional(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                let Some((user, purpose, name, state, expires_at)) = row else { return Ok(None) };
                let purpose = guard_core::mfa::CeremonyPurpose::parse(&purpose).ok_or_else(|| {
                    guard_core::store::StoreError::Internal("ceremony row with invalid purpose".into())
                })?;
                Ok(Some(guard_core::mfa::Ceremony {
                    id_hash: *id_hash,
                    tenant,
                    user: user.map(guard_core::users::UserId),
                    purpose,
                    name,
                    state,
                    expires_at,
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
                    "SELECT t.slug, COUNT(u.id), COALESCE(SUM(CASE WHEN \
                     EXISTS (SELECT 1 FROM mfa_totp m WHERE m.user_id = u.id AND m.confirmed_at IS NOT NULL) \
                     OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = u.id) THEN 1 ELSE 0 END), 0) \
                     FROM tenants t LEFT JOIN users u ON u.tenant_id = t.id GROUP BY t.slug ORDER BY t.slug",
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
