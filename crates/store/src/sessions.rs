//! `SessionStore` for both backends, one SQL text for SQLite and PostgreSQL. Expiry is
//! decided in Rust, not by comparing times in SQL, which SQLite stores as text.

use guard_core::sessions::{ClientInfo, RevokedSession, Session, SessionId, SessionScope, TokenHash};
use guard_core::store::StoreError;
use guard_core::tenants::TenantId;
use guard_core::users::UserId;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

/// A session's first refresh token, generation 0.
pub(crate) const INSERT_REFRESH: &str =
    "INSERT INTO refresh_tokens (session_id, generation, tenant_id, token_hash, created_at) VALUES ($1, 0, $2, $3, $4)";

pub(crate) const COLUMNS: &str = "id, tenant_id, user_id, created_at, last_seen_at, expires_at, idle_expires_at, ip, user_agent, risk_score, \
     risk_reasons, amr";

/// A session from a row with [`COLUMNS`].
pub(crate) fn from_row<R: Row>(row: &R) -> Result<Session, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    OffsetDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let e = crate::error::from_sqlx;
    let risk =
        ClientInfo::risk_from_columns(row.try_get("risk_score").map_err(e)?, row.try_get("risk_reasons").map_err(e)?);
    Ok(Session {
        id: SessionId(row.try_get("id").map_err(e)?),
        tenant: TenantId(row.try_get("tenant_id").map_err(e)?),
        user: UserId(row.try_get("user_id").map_err(e)?),
        created_at: row.try_get("created_at").map_err(e)?,
        last_seen_at: row.try_get("last_seen_at").map_err(e)?,
        expires_at: row.try_get("expires_at").map_err(e)?,
        idle_expires_at: row.try_get("idle_expires_at").map_err(e)?,
        client: ClientInfo {
            ip: row.try_get("ip").map_err(e)?,
            user_agent: row.try_get("user_agent").map_err(e)?,
            device: None,
            risk,
        },
        amr: row
            .try_get::<Option<String>, _>("amr")
            .map_err(e)?
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// A revoked session from `RETURNING id, token_hash`.
pub(crate) fn revoked_from_row<R: Row>(row: &R) -> Result<RevokedSession, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let e = crate::error::from_sqlx;
    let hash: Vec<u8> = row.try_get("token_hash").map_err(e)?;
    let hash = hash.try_into().map_err(|_| StoreError::Internal("session row with invalid token hash".into()))?;
    Ok(RevokedSession { id: SessionId(row.try_get("id").map_err(e)?), token_hash: TokenHash(hash) })
}

/// Revocation of one session of a tenant, of one user when `with_user`; binds time,
/// tenant, (user,) id.
pub(crate) fn revoke_one_sql(with_user: bool) -> &'static str {
    if with_user {
        "UPDATE sessions SET revoked_at = $1 \
         WHERE revoked_at IS NULL AND tenant_id = $2 AND user_id = $3 AND id = $4 RETURNING id, token_hash"
    } else {
        "UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL AND tenant_id = $2 AND id = $3 \
         RETURNING id, token_hash"
    }
}

/// The bulk revocation for `scope`, parameters numbered in the order
/// [`impl_session_store`] binds them: time, tenant, user, excepted session.
pub(crate) fn revoke_all_sql(scope: &SessionScope) -> String {
    let mut sql = String::from("UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL");
    let mut n = 1;
    for (condition, present) in [
        ("tenant_id =", scope.tenant.is_some()),
        ("user_id =", scope.user.is_some()),
        ("id <>", scope.except.is_some()),
    ] {
        if present {
            n += 1;
            sql.push_str(&format!(" AND {condition} ${n}"));
        }
    }
    sql.push_str(" RETURNING id, token_hash");
    sql
}

/// Spends `count` refresh tokens in one statement: each presented token that is
/// still the newest of its family gets its successor as the next generation, and a
/// token spent before (or twice in this batch) finds that generation taken and gets
/// nothing. Binds the time, then tenant, presented hash and successor hash for each.
pub(crate) fn rotate_refresh_sql(count: usize) -> String {
    let values: Vec<String> = (0..count).map(|i| format!("(${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4)).collect();
    // A join condition in WHERE rather than ON: SQLite would read the ON of
    // ON CONFLICT as a join constraint.
    format!(
        "INSERT INTO refresh_tokens (session_id, generation, tenant_id, token_hash, created_at) \
         SELECT r.session_id, r.generation + 1, r.tenant_id, v.column3, $1 FROM (VALUES {}) AS v, refresh_tokens r \
         WHERE r.tenant_id = v.column1 AND r.token_hash = v.column2 \
         ON CONFLICT (session_id, generation) DO NOTHING RETURNING session_id, token_hash",
        values.join(", ")
    )
}

/// Looks up `count` refresh tokens by hash (bound in order): session, tenant, hash.
pub(crate) fn find_refresh_sql(count: usize) -> String {
    let params: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
    format!("SELECT session_id, tenant_id, token_hash FROM refresh_tokens WHERE token_hash IN ({})", params.join(", "))
}

/// Implements `SessionStore` for a `SqlStore` of one backend.
macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl guard_core::sessions::SessionStore for $store {
            async fn create(
                &self,
                new: &guard_core::sessions::NewSession,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<(), guard_core::store::StoreError> {
                let s = &new.session;
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO sessions (id, tenant_id, user_id, token_hash, created_at, last_seen_at, expires_at, \
                     idle_expires_at, ip, user_agent, risk_score, risk_reasons, amr) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
                .bind(s.client.risk.as_ref().map(|r| i64::from(r.score)))
                .bind(s.client.risk_reasons_text())
                .bind((!s.amr.is_empty()).then(|| s.amr.join(" ")))
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?;
                sqlx::query(crate::sessions::INSERT_REFRESH)
                    .bind(s.id.0)
                    .bind(s.tenant.0)
                    .bind(&new.refresh_hash.0[..])
                    .bind(s.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
                tx.commit().await.map_err(crate::error::from_sqlx)
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

            async fn get(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: guard_core::sessions::SessionId,
            ) -> Result<Option<guard_core::sessions::Session>, guard_core::store::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM sessions WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                    crate::sessions::COLUMNS
                )))
                .bind(tenant.0)
                .bind(id.0)
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
                    .execute(&self.writer)
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
                user: Option<guard_core::users::UserId>,
                id: guard_core::sessions::SessionId,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<Option<guard_core::sessions::RevokedSession>, guard_core::store::StoreError> {
                let mut query = sqlx::query(crate::sessions::revoke_one_sql(user.is_some()))
                    .bind(crate::tenants::now())
                    .bind(tenant.0);
                if let Some(user) = user {
                    query = query.bind(user.0);
                }
                // The event is written only when a session actually ended.
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                let row = query.bind(id.0).fetch_optional(&mut *tx).await.map_err(crate::error::from_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                crate::audit::insert_audit_record!(&mut *tx, audit)?;
                tx.commit().await.map_err(crate::error::from_sqlx)?;
                crate::sessions::revoked_from_row(&row).map(Some)
            }

            async fn revoke_all(
                &self,
                scope: guard_core::sessions::SessionScope,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<Vec<guard_core::sessions::RevokedSession>, guard_core::store::StoreError> {
                let sql = crate::sessions::revoke_all_sql(&scope);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(crate::tenants::now());
                if let Some(tenant) = scope.tenant {
                    query = query.bind(tenant.0);
                }
                if let Some(user) = scope.user {
                    query = query.bind(user.0);
                }
                if let Some(except) = scope.except {
                    query = query.bind(except.0);
                }
                let rows = crate::audit::audited!(self, audit, |tx| query
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?);
                rows.iter().map(crate::sessions::revoked_from_row).collect()
            }

            async fn rotate_refresh(
                &self,
                rotations: &[guard_core::sessions::RefreshRotation],
                at: time::OffsetDateTime,
            ) -> Result<Vec<guard_core::sessions::RefreshOutcome>, guard_core::store::StoreError> {
                use guard_core::sessions::{RefreshOutcome, SessionId};
                if rotations.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::query_as::<_, (uuid::Uuid, Vec<u8>)>(sqlx::AssertSqlSafe(
                    crate::sessions::rotate_refresh_sql(rotations.len()),
                ))
                .bind(at);
                for r in rotations {
                    query = query.bind(r.tenant.0).bind(&r.presented.0[..]).bind(&r.next.0[..]);
                }
                let rotated = query.fetch_all(&self.writer).await.map_err(crate::error::from_sqlx)?;
                // Successors are random, so the stored one names its rotation.
                let successor = |r: &guard_core::sessions::RefreshRotation| {
                    rotated.iter().find(|(_, next)| next[..] == r.next.0[..]).map(|(session, _)| *session)
                };
                // The rest are spent (reuse) or unknown: one read for all of them, so a
                // batch full of made-up tokens costs the writer one query, not one each.
                let unmatched: Vec<_> = rotations.iter().filter(|r| successor(r).is_none()).collect();
                let mut known: Vec<(uuid::Uuid, uuid::Uuid, Vec<u8>)> = Vec::new();
                if !unmatched.is_empty() {
                    let mut query =
                        sqlx::query_as(sqlx::AssertSqlSafe(crate::sessions::find_refresh_sql(unmatched.len())));
                    for r in &unmatched {
                        query = query.bind(&r.presented.0[..]);
                    }
                    known = query.fetch_all(&self.pool).await.map_err(crate::error::from_sqlx)?;
                }
                // A token of another tenant is unknown here, as every query is tenant-scoped.
                let outcomes = rotations
                    .iter()
                    .map(|r| match successor(r) {
                        Some(session) => RefreshOutcome::Rotated(SessionId(session)),
                        None => known
                            .iter()
                            .find(|(_, tenant, hash)| *tenant == r.tenant.0 && hash[..] == r.presented.0[..])
                            .map_or(RefreshOutcome::Unknown, |(session, _, _)| {
                                RefreshOutcome::Reused(SessionId(*session))
                            }),
                    })
                    .collect();
                Ok(outcomes)
            }

            async fn count_live(&self, now: time::OffsetDateTime) -> Result<u64, guard_core::store::StoreError> {
                use futures_util::TryStreamExt as _;
                let mut rows = sqlx::query_as::<_, (time::OffsetDateTime, time::OffsetDateTime)>(
                    "SELECT expires_at, idle_expires_at FROM sessions WHERE revoked_at IS NULL",
                )
                .fetch(&self.pool);
                let mut live = 0;
                while let Some((expires_at, idle_expires_at)) =
                    rows.try_next().await.map_err(crate::error::from_sqlx)?
                {
                    if now < expires_at && now < idle_expires_at {
                        live += 1;
                    }
                }
                Ok(live)
            }
        }
    };
}
pub(crate) use impl_session_store;
