//! `UserStore` for both backends, one SQL text for SQLite and PostgreSQL. Every
//! statement is scoped by `tenant_id`.

use guard_core::store::StoreError;
use guard_core::tenants::TenantId;
use guard_core::users::{DisplayName, Email, User, UserFilter, UserId, UserStatus, Username};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) const COLUMNS: &str = "id, tenant_id, email, username, display_name, status, \
     password_change_required, roles, created_at, updated_at, last_login_at";

/// A user from a row with [`COLUMNS`].
pub(crate) fn from_row<R: Row>(row: &R) -> Result<User, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    sqlx::types::Json<Vec<String>>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    OffsetDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let corrupt = |what: &str| StoreError::Internal(format!("user row with invalid {what}"));
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(crate::error::from_sqlx);
    let get_optional = |column: &str| row.try_get::<Option<String>, _>(column).map_err(crate::error::from_sqlx);
    Ok(User {
        id: UserId(row.try_get("id").map_err(crate::error::from_sqlx)?),
        tenant: TenantId(row.try_get("tenant_id").map_err(crate::error::from_sqlx)?),
        email: Email::parse(&get_text("email")?).map_err(|_| corrupt("email"))?,
        username: get_optional("username")?
            .map(|u| Username::parse(&u))
            .transpose()
            .map_err(|_| corrupt("username"))?,
        display_name: get_optional("display_name")?
            .map(|d| DisplayName::parse(&d))
            .transpose()
            .map_err(|_| corrupt("display name"))?,
        status: UserStatus::parse(&get_text("status")?).ok_or_else(|| corrupt("status"))?,
        password_change_required: row.try_get("password_change_required").map_err(crate::error::from_sqlx)?,
        roles: row.try_get::<sqlx::types::Json<Vec<String>>, _>("roles").map_err(crate::error::from_sqlx)?.0,
        created_at: row.try_get("created_at").map_err(crate::error::from_sqlx)?,
        updated_at: row.try_get("updated_at").map_err(crate::error::from_sqlx)?,
        last_login_at: row.try_get("last_login_at").map_err(crate::error::from_sqlx)?,
    })
}

/// The listing query for `filter`, with its parameters numbered in the order
/// [`impl_user_store`] binds them: tenant, prefix, status, cursor, limit.
pub(crate) fn list_sql(filter: &UserFilter, has_cursor: bool) -> String {
    let mut sql = format!("SELECT {COLUMNS} FROM users WHERE tenant_id = $1");
    let mut n = 1;
    if filter.email_prefix.is_some() {
        n += 1;
        sql.push_str(&format!(" AND email LIKE ${n} ESCAPE '\\'"));
    }
    if filter.status.is_some() {
        n += 1;
        sql.push_str(&format!(" AND status = ${n}"));
    }
    if has_cursor {
        n += 1;
        sql.push_str(&format!(" AND id > ${n}"));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", n + 1));
    sql
}

/// The UPDATE for `change`, parameters numbered in the order [`impl_user_store`]
/// binds them: the changed columns, then updated_at, tenant and id.
pub(crate) fn update_sql(change: &guard_core::users::UserChange) -> String {
    let columns = [
        ("status", change.status.is_some()),
        ("username", change.username.is_some()),
        ("display_name", change.display_name.is_some()),
        ("roles", change.roles.is_some()),
        ("password_hash", change.password_hash.is_some()),
        ("password_change_required", change.password_change_required.is_some()),
    ];
    let mut sql = String::from("UPDATE users SET ");
    let mut n = 0;
    for (column, _) in columns.iter().filter(|(_, set)| *set) {
        n += 1;
        sql.push_str(&format!("{column} = ${n}, "));
    }
    sql.push_str(&format!(
        "updated_at = ${} WHERE tenant_id = ${} AND id = ${} RETURNING {COLUMNS}",
        n + 1,
        n + 2,
        n + 3
    ));
    sql
}

/// `prefix` as a LIKE pattern that matches it literally.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Implements `UserStore` for a `SqlStore` of one backend.
macro_rules! impl_user_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl guard_core::users::UserStore for $store {
            async fn create(
                &self,
                user: &guard_core::users::NewUser,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<guard_core::users::User, guard_core::store::StoreError> {
                let at = crate::tenants::now();
                let row = crate::audit::audited!(self, audit, |tx| sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO users (id, tenant_id, email, username, display_name, status, password_hash, \
                     password_change_required, roles, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {}",
                    crate::users::COLUMNS
                )))
                .bind(user.id.0)
                .bind(user.tenant.0)
                .bind(user.email.as_str())
                .bind(user.username.as_ref().map(|u| u.as_str()))
                .bind(user.display_name.as_ref().map(|d| d.as_str()))
                .bind(user.status.as_str())
                .bind(user.password_hash.as_deref())
                .bind(user.password_change_required)
                .bind(sqlx::types::Json(&user.roles))
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?);
                crate::users::from_row(&row)
            }

            async fn get(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: guard_core::users::UserId,
            ) -> Result<Option<guard_core::users::User>, guard_core::store::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM users WHERE tenant_id = $1 AND id = $2",
                    crate::users::COLUMNS
                )))
                .bind(tenant.0)
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                row.as_ref().map(crate::users::from_row).transpose()
            }

            async fn get_by_email(
                &self,
                tenant: guard_core::tenants::TenantId,
                email: &guard_core::users::Email,
            ) -> Result<Option<guard_core::users::User>, guard_core::store::StoreError> {
                Ok(self.credentials(tenant, email).await?.map(|(user, _hash)| user))
            }

            async fn list(
                &self,
                tenant: guard_core::tenants::TenantId,
                filter: &guard_core::users::UserFilter,
                after: Option<guard_core::users::UserId>,
                limit: u32,
            ) -> Result<guard_core::users::UserPage, guard_core::store::StoreError> {
                let sql = crate::users::list_sql(filter, after.is_some());
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.0);
                if let Some(prefix) = &filter.email_prefix {
                    query = query.bind(crate::users::like_prefix(prefix));
                }
                if let Some(status) = filter.status {
                    query = query.bind(status.as_str());
                }
                if let Some(after) = after {
                    query = query.bind(after.0);
                }
                let rows =
                    query.bind(i64::from(limit) + 1).fetch_all(&self.pool).await.map_err(crate::error::from_sqlx)?;
                let mut users = rows.iter().map(crate::users::from_row).collect::<Result<Vec<_>, _>>()?;
                let next_cursor = if users.len() > limit as usize {
                    users.truncate(limit as usize);
                    users.last().map(|u| u.id)
                } else {
                    None
                };
                Ok(guard_core::users::UserPage { users, next_cursor })
            }

            async fn update(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: guard_core::users::UserId,
                change: &guard_core::users::UserChange,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<guard_core::users::User, guard_core::store::StoreError> {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(crate::users::update_sql(change)));
                if let Some(status) = change.status {
                    query = query.bind(status.as_str());
                }
                if let Some(username) = &change.username {
                    query = query.bind(username.as_ref().map(|u| u.as_str().to_owned()));
                }
                if let Some(display_name) = &change.display_name {
                    query = query.bind(display_name.as_ref().map(|d| d.as_str().to_owned()));
                }
                if let Some(roles) = &change.roles {
                    query = query.bind(sqlx::types::Json(roles.clone()));
                }
                if let Some(hash) = &change.password_hash {
                    query = query.bind(hash.clone());
                }
                if let Some(required) = change.password_change_required {
                    query = query.bind(required);
                }
                let user = crate::audit::audited!(self, audit, |tx| {
                    let row = query
                        .bind(crate::tenants::now())
                        .bind(tenant.0)
                        .bind(id.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    let user = match row {
                        Some(row) => crate::users::from_row(&row)?,
                        None => return Err(guard_core::store::StoreError::NotFound),
                    };
                    // A link mailed before the password changed or the account was
                    // disabled must not work after: it would undo the change.
                    if change.ends_email_tokens() {
                        sqlx::query(
                            "UPDATE email_tokens SET used_at = $1 \
                             WHERE tenant_id = $2 AND user_id = $3 AND used_at IS NULL",
                        )
                        .bind(crate::tenants::now())
                        .bind(tenant.0)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    }
                    user
                });
                Ok(user)
            }

            async fn delete(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: guard_core::users::UserId,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| {
                    let done = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.0)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                });
                Ok(true)
            }

            async fn password_hash(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: guard_core::users::UserId,
            ) -> Result<Option<String>, guard_core::store::StoreError> {
                let hash: Option<Option<String>> =
                    sqlx::query_scalar("SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.0)
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                Ok(hash.flatten())
            }

            async fn require_password_change_all(
                &self,
                tenant: guard_core::tenants::TenantId,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<u64, guard_core::store::StoreError> {
                let done = crate::audit::audited!(self, audit, |tx| sqlx::query(
                    "UPDATE users SET password_change_required = $1, updated_at = $2 WHERE tenant_id = $3"
                )
                .bind(true)
                .bind(crate::tenants::now())
                .bind(tenant.0)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?);
                Ok(done.rows_affected())
            }

            async fn credentials(
                &self,
                tenant: guard_core::tenants::TenantId,
                email: &guard_core::users::Email,
            ) -> Result<Option<(guard_core::users::User, Option<String>)>, guard_core::store::StoreError> {
                use sqlx::Row as _;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {}, password_hash FROM users WHERE tenant_id = $1 AND email = $2",
                    crate::users::COLUMNS
                )))
                .bind(tenant.0)
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let hash: Option<String> = row.try_get("password_hash").map_err(crate::error::from_sqlx)?;
                Ok(Some((crate::users::from_row(&row)?, hash)))
            }

            async fn record_login(
                &self,
                tenant: guard_core::tenants::TenantId,
                id: guard_core::users::UserId,
                at: time::OffsetDateTime,
                new_hash: Option<String>,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "UPDATE users SET last_login_at = $1, password_hash = COALESCE($2, password_hash) \
                     WHERE tenant_id = $3 AND id = $4",
                )
                .bind(at)
                .bind(new_hash)
                .bind(tenant.0)
                .bind(id.0)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_user_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_numbered_in_bind_order() {
        let all = UserFilter { email_prefix: Some("ada".into()), status: Some(UserStatus::Active) };
        let sql = list_sql(&all, true);
        assert!(
            sql.ends_with(
                "tenant_id = $1 AND email LIKE $2 ESCAPE '\\' AND status = $3 AND id > $4 ORDER BY id LIMIT $5"
            ),
            "{sql}"
        );
        assert!(list_sql(&UserFilter::default(), false).ends_with("WHERE tenant_id = $1 ORDER BY id LIMIT $2"));
    }

    #[test]
    fn like_patterns_match_the_prefix_literally() {
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
