//! `AuthzStore` for both backends, one SQL text for SQLite and PostgreSQL. Every
//! change also moves the tenant's row in `authz_state`, in the same transaction, which
//! is how other processes learn of it.

pub(crate) type VersionRow = (uuid::Uuid, i64, time::OffsetDateTime, String, String, String, Option<String>);

pub(crate) fn version_from_row(
    row: VersionRow,
) -> Result<guard_core::authz::PolicyVersion, guard_core::store::StoreError> {
    let (tenant, version, created_at, actor, change, policies, schema) = row;
    let policies = serde_json::from_str(&policies).map_err(|e| {
        guard_core::store::StoreError::Internal(format!("policy version {version} is not readable: {e}"))
    })?;
    Ok(guard_core::authz::PolicyVersion {
        tenant: guard_core::tenants::TenantId(tenant),
        version,
        created_at,
        actor,
        change,
        snapshot: guard_core::authz::PolicySnapshot { policies, schema },
    })
}

pub(crate) fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// A LIKE pattern matching `"name"` inside a JSON array of role names.
pub(crate) fn role_pattern(name: &str) -> String {
    format!("%\"{}\"%", name.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// Entities looked up in one statement (two parameters each).
pub(crate) const LOOKUP_CHUNK: usize = 200;
/// Entities written in one statement (five parameters each).
pub(crate) const UPSERT_CHUNK: usize = 500;

/// Looks up `n` (type, id) pairs of the tenant `$1`.
pub(crate) fn lookup_sql(n: usize) -> String {
    let pairs: Vec<String> =
        (0..n).map(|i| format!("(entity_type = ${} AND entity_id = ${})", 2 * i + 2, 2 * i + 3)).collect();
    format!("SELECT entity_type, entity_id, body FROM authz_entities WHERE tenant_id = $1 AND ({})", pairs.join(" OR "))
}

/// Creates or replaces `n` entities in one statement.
pub(crate) fn upsert_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p = 5 * i;
            format!("(${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5)
        })
        .collect();
    format!(
        "INSERT INTO authz_entities (tenant_id, entity_type, entity_id, body, updated_at) VALUES {} \
         ON CONFLICT (tenant_id, entity_type, entity_id) \
         DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        rows.join(", ")
    )
}

pub(crate) const BUMP_ENTITIES: &str = "INSERT INTO authz_state (tenant_id, policy_version, entity_version, changed_at_us) \
     VALUES ($1, 0, 1, $2) ON CONFLICT (tenant_id) DO UPDATE SET entity_version = authz_state.entity_version + 1, \
     changed_at_us = excluded.changed_at_us";

/// Implements `AuthzStore` for a `SqlStore` of one backend.
macro_rules! impl_authz_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl guard_core::authz::AuthzStore for $store {
            async fn authz_state(
                &self,
                tenant: guard_core::tenants::TenantId,
            ) -> Result<guard_core::authz::AuthzState, guard_core::store::StoreError> {
                let row: Option<(i64, i64)> =
                    sqlx::query_as("SELECT policy_version, entity_version FROM authz_state WHERE tenant_id = $1")
                        .bind(tenant.0)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                Ok(row.map_or_else(Default::default, |(p, e)| guard_core::authz::AuthzState {
                    policy_version: p,
                    entity_version: e,
                }))
            }

            async fn authz_changes(
                &self,
                since_us: i64,
            ) -> Result<Vec<(guard_core::tenants::TenantId, guard_core::authz::AuthzState)>, guard_core::store::StoreError>
            {
                let rows: Vec<(uuid::Uuid, i64, i64)> = sqlx::query_as(
                    "SELECT tenant_id, policy_version, entity_version FROM authz_state WHERE changed_at_us >= $1",
                )
                .bind(since_us)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(t, p, e)| {
                        (
                            guard_core::tenants::TenantId(t),
                            guard_core::authz::AuthzState { policy_version: p, entity_version: e },
                        )
                    })
                    .collect())
            }

            async fn policy_head(
                &self,
                tenant: guard_core::tenants::TenantId,
            ) -> Result<Option<guard_core::authz::PolicyVersion>, guard_core::store::StoreError> {
                let row: Option<crate::authz::VersionRow> = sqlx::query_as(
                    "SELECT tenant_id, version, created_at, actor, change, policies, schema FROM policy_versions WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(tenant.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                row.map(crate::authz::version_from_row).transpose()
            }

            async fn policy_version(
                &self,
                tenant: guard_core::tenants::TenantId,
                version: i64,
            ) -> Result<Option<guard_core::authz::PolicyVersion>, guard_core::store::StoreError> {
                let row: Option<crate::authz::VersionRow> = sqlx::query_as(
                    "SELECT tenant_id, version, created_at, actor, change, policies, schema FROM policy_versions WHERE tenant_id = $1 AND version = $2",
                )
                .bind(tenant.0)
                .bind(version)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                row.map(crate::authz::version_from_row).transpose()
            }

            async fn policy_versions(
                &self,
                tenant: guard_core::tenants::TenantId,
                before: Option<i64>,
                limit: u32,
            ) -> Result<Vec<guard_core::authz::PolicyVersion>, guard_core::store::StoreError> {
                let rows: Vec<crate::authz::VersionRow> = sqlx::query_as(
                    "SELECT tenant_id, version, created_at, actor, change, policies, schema FROM policy_versions WHERE tenant_id = $1 AND version < $2 \
                     ORDER BY version DESC LIMIT $3",
                )
                .bind(tenant.0)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit.min(1000)))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                rows.into_iter().map(crate::authz::version_from_row).collect()
            }

            async fn write_policy_version(
                &self,
                version: &guard_core::authz::PolicyVersion,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let policies = serde_json::to_string(&version.snapshot.policies)
                    .map_err(|e| guard_core::store::StoreError::Internal(e.to_string()))?;
                crate::audit::audited!(self, audit, |tx| {
                    let inserted = sqlx::query(
                        "INSERT INTO policy_versions (tenant_id, version, created_at, actor, change, policies, schema) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, version) DO NOTHING",
                    )
                    .bind(version.tenant.0)
                    .bind(version.version)
                    .bind(version.created_at)
                    .bind(&version.actor)
                    .bind(&version.change)
                    .bind(&policies)
                    .bind(&version.snapshot.schema)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    if inserted.rows_affected() == 0 {
                        return Ok(false);
                    }
                    sqlx::query(
                        "INSERT INTO authz_state (tenant_id, policy_version, entity_version, changed_at_us) \
                         VALUES ($1, $2, 0, $3) ON CONFLICT (tenant_id) DO UPDATE \
                         SET policy_version = excluded.policy_version, changed_at_us = excluded.changed_at_us",
                    )
                    .bind(version.tenant.0)
                    .bind(version.version)
                    .bind(crate::authz::now_us())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                });
                Ok(true)
            }

            async fn policy_heads(
                &self,
            ) -> Result<Vec<guard_core::authz::store::PolicyHead>, guard_core::store::StoreError> {
                let rows: Vec<(uuid::Uuid, i64, time::OffsetDateTime, String, bool)> = sqlx::query_as(
                    "SELECT p.tenant_id, p.version, p.created_at, p.policies, p.schema IS NOT NULL \
                     FROM policy_versions p JOIN authz_state s \
                     ON s.tenant_id = p.tenant_id AND s.policy_version = p.version ORDER BY p.tenant_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(tenant, version, created_at, policies, has_schema)| guard_core::authz::store::PolicyHead {
                        tenant: guard_core::tenants::TenantId(tenant),
                        version,
                        created_at,
                        policy_count: serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&policies)
                            .map_or(0, |m| m.len()),
                        has_schema,
                    })
                    .collect())
            }

            async fn entities_page(
                &self,
                tenant: guard_core::tenants::TenantId,
                entity_type: Option<&str>,
                after: Option<(&str, &str)>,
                limit: u32,
            ) -> Result<Vec<guard_core::authz::store::StoredEntity>, guard_core::store::StoreError> {
                // Every stored type is longer than "", so ("", "") is before all.
                let (after_type, after_id) = after.unwrap_or(("", ""));
                let rows: Vec<(String, String, String)> = match entity_type {
                    Some(entity_type) => sqlx::query_as(
                        "SELECT entity_type, entity_id, body FROM authz_entities WHERE tenant_id = $1 \
                         AND entity_type = $2 AND (entity_type, entity_id) > ($3, $4) \
                         ORDER BY entity_type, entity_id LIMIT $5",
                    )
                    .bind(tenant.0)
                    .bind(entity_type)
                    .bind(after_type)
                    .bind(after_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await,
                    None => sqlx::query_as(
                        "SELECT entity_type, entity_id, body FROM authz_entities WHERE tenant_id = $1 \
                         AND (entity_type, entity_id) > ($2, $3) ORDER BY entity_type, entity_id LIMIT $4",
                    )
                    .bind(tenant.0)
                    .bind(after_type)
                    .bind(after_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await,
                }
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(entity_type, entity_id, body)| guard_core::authz::store::StoredEntity {
                        entity_type,
                        entity_id,
                        body,
                    })
                    .collect())
            }

            async fn entities_by_uid(
                &self,
                tenant: guard_core::tenants::TenantId,
                uids: &[(String, String)],
            ) -> Result<Vec<guard_core::authz::store::StoredEntity>, guard_core::store::StoreError> {
                let mut found = Vec::new();
                for chunk in uids.chunks(crate::authz::LOOKUP_CHUNK) {
                    let sql = crate::authz::lookup_sql(chunk.len());
                    let mut query = sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(sql)).bind(tenant.0);
                    for (entity_type, entity_id) in chunk {
                        query = query.bind(entity_type).bind(entity_id);
                    }
                    let rows = query.fetch_all(&self.pool).await.map_err(crate::error::from_sqlx)?;
                    found.extend(rows.into_iter().map(|(entity_type, entity_id, body)| {
                        guard_core::authz::store::StoredEntity { entity_type, entity_id, body }
                    }));
                }
                Ok(found)
            }

            async fn entity(
                &self,
                tenant: guard_core::tenants::TenantId,
                entity_type: &str,
                entity_id: &str,
            ) -> Result<Option<guard_core::authz::store::StoredEntity>, guard_core::store::StoreError> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT body FROM authz_entities WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3",
                )
                .bind(tenant.0)
                .bind(entity_type)
                .bind(entity_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.map(|(body,)| guard_core::authz::store::StoredEntity {
                    entity_type: entity_type.to_owned(),
                    entity_id: entity_id.to_owned(),
                    body,
                }))
            }

            async fn upsert_entities(
                &self,
                tenant: guard_core::tenants::TenantId,
                entities: &[guard_core::authz::store::StoredEntity],
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<(), guard_core::store::StoreError> {
                let now = guard_core::stored_now();
                // The last of a uid given twice wins, and one statement must not
                // touch a row twice.
                let mut latest: std::collections::HashMap<(&str, &str), &str> = std::collections::HashMap::new();
                let mut order = Vec::new();
                for entity in entities {
                    let key = (entity.entity_type.as_str(), entity.entity_id.as_str());
                    if latest.insert(key, entity.body.as_str()).is_none() {
                        order.push(key);
                    }
                }
                crate::audit::audited!(self, audit, |tx| {
                    for chunk in order.chunks(crate::authz::UPSERT_CHUNK) {
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(crate::authz::upsert_sql(chunk.len())));
                        for key in chunk {
                            query = query
                                .bind(tenant.0)
                                .bind(key.0)
                                .bind(key.1)
                                .bind(latest.get(key).copied().unwrap_or_default())
                                .bind(now);
                        }
                        query.execute(&mut *tx).await.map_err(crate::error::from_sqlx)?;
                    }
                    sqlx::query(crate::authz::BUMP_ENTITIES)
                        .bind(tenant.0)
                        .bind(crate::authz::now_us())
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                });
                Ok(())
            }

            async fn delete_entity(
                &self,
                tenant: guard_core::tenants::TenantId,
                entity_type: &str,
                entity_id: &str,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| {
                    let done = sqlx::query(
                        "DELETE FROM authz_entities WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3",
                    )
                    .bind(tenant.0)
                    .bind(entity_type)
                    .bind(entity_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    sqlx::query(crate::authz::BUMP_ENTITIES)
                        .bind(tenant.0)
                        .bind(crate::authz::now_us())
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                });
                Ok(true)
            }

            async fn user_facts(
                &self,
                tenant: guard_core::tenants::TenantId,
                user: uuid::Uuid,
            ) -> Result<Option<guard_core::authz::UserFacts>, guard_core::store::StoreError> {
                let row: Option<(String, Option<String>, String, sqlx::types::Json<Vec<String>>)> = sqlx::query_as(
                    "SELECT email, username, status, roles FROM users WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.0)
                .bind(user)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                let Some((email, username, status, roles)) = row else {
                    return Ok(None);
                };
                let groups: Vec<(String,)> = sqlx::query_as(
                    "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id \
                     WHERE m.user_id = $1 AND g.tenant_id = $2 ORDER BY g.name",
                )
                .bind(user)
                .bind(tenant.0)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(Some(guard_core::authz::UserFacts {
                    id: user,
                    email,
                    username,
                    status,
                    roles: roles.0,
                    groups: groups.into_iter().map(|(g,)| g).collect(),
                }))
            }

            async fn groups(
                &self,
                tenant: guard_core::tenants::TenantId,
            ) -> Result<Vec<guard_core::authz::Group>, guard_core::store::StoreError> {
                let rows: Vec<(uuid::Uuid, String, Option<String>, time::OffsetDateTime, i64)> = sqlx::query_as(
                    "SELECT g.id, g.name, g.description, g.created_at, \
                     (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) \
                     FROM groups g WHERE g.tenant_id = $1 ORDER BY g.name",
                )
                .bind(tenant.0)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, description, created_at, members)| guard_core::authz::Group {
                        id,
                        tenant,
                        name,
                        description,
                        created_at,
                        members: u64::try_from(members).unwrap_or(0),
                    })
                    .collect())
            }

            async fn group(
                &self,
                tenant: guard_core::tenants::TenantId,
                name: &str,
            ) -> Result<Option<guard_core::authz::Group>, guard_core::store::StoreError> {
                Ok(self.groups(tenant).await?.into_iter().find(|g| g.name == name))
            }

            async fn create_group(
                &self,
                group: &guard_core::authz::Group,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<(), guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| sqlx::query(
                    "INSERT INTO groups (id, tenant_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(group.id)
                .bind(group.tenant.0)
                .bind(&group.name)
                .bind(&group.description)
                .bind(group.created_at)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?);
                Ok(())
            }

            async fn delete_group(
                &self,
                tenant: guard_core::tenants::TenantId,
                name: &str,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| {
                    // Members go first, through their trigger, so other processes
                    // learn that these users lost the group.
                    sqlx::query(
                        "DELETE FROM group_members WHERE group_id IN \
                         (SELECT id FROM groups WHERE tenant_id = $1 AND name = $2)",
                    )
                    .bind(tenant.0)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    let done = sqlx::query("DELETE FROM groups WHERE tenant_id = $1 AND name = $2")
                        .bind(tenant.0)
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                });
                Ok(true)
            }

            async fn group_members(&self, group: uuid::Uuid) -> Result<Vec<uuid::Uuid>, guard_core::store::StoreError> {
                let rows: Vec<(uuid::Uuid,)> =
                    sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
                        .bind(group)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(|(u,)| u).collect())
            }

            async fn add_member(
                &self,
                group: uuid::Uuid,
                user: uuid::Uuid,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| {
                    let done = sqlx::query(
                        "INSERT INTO group_members (group_id, user_id, added_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (group_id, user_id) DO NOTHING",
                    )
                    .bind(group)
                    .bind(user)
                    .bind(guard_core::stored_now())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                });
                Ok(true)
            }

            async fn remove_member(
                &self,
                group: uuid::Uuid,
                user: uuid::Uuid,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| {
                    let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                        .bind(group)
                        .bind(user)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                });
                Ok(true)
            }

            async fn roles(
                &self,
                tenant: guard_core::tenants::TenantId,
            ) -> Result<Vec<guard_core::authz::Role>, guard_core::store::StoreError> {
                let rows: Vec<(String, Option<String>)> =
                    sqlx::query_as("SELECT name, description FROM roles WHERE tenant_id = $1 ORDER BY name")
                        .bind(tenant.0)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(name, description)| guard_core::authz::Role { name, description, builtin: false })
                    .collect())
            }

            async fn create_role(
                &self,
                tenant: guard_core::tenants::TenantId,
                role: &guard_core::authz::Role,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<(), guard_core::store::StoreError> {
                crate::audit::audited!(self, audit, |tx| sqlx::query(
                    "INSERT INTO roles (tenant_id, name, description, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant.0)
                .bind(&role.name)
                .bind(&role.description)
                .bind(guard_core::stored_now())
                .execute(&mut *tx)
                .await
                .map_err(crate::error::from_sqlx)?);
                Ok(())
            }

            async fn delete_role(
                &self,
                tenant: guard_core::tenants::TenantId,
                name: &str,
                audit: &guard_core::audit::AuditRecord,
            ) -> Result<bool, guard_core::store::StoreError> {
                let holders: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND CAST(roles AS TEXT) LIKE $2 ESCAPE '\\'",
                )
                .bind(tenant.0)
                .bind(crate::authz::role_pattern(name))
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                if holders > 0 {
                    return Err(guard_core::store::StoreError::Conflict(format!("{holders} users hold the role")));
                }
                crate::audit::audited!(self, audit, |tx| {
                    let done = sqlx::query("DELETE FROM roles WHERE tenant_id = $1 AND name = $2")
                        .bind(tenant.0)
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                });
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_authz_store;
