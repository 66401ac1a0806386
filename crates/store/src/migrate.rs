//! Embedded migrations and the `MigrationStore` logic both backends share.

use std::borrow::Cow;
use std::collections::BTreeMap;

use guard_core::store::{Backend, MigrationInfo, MigrationState, SchemaStatus, StoreError};
use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

/// One migration as shipped: its version, name, and the SQL to apply and revert it.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigration {
    pub version: i64,
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

mod embedded {
    use super::EmbeddedMigration;
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The migrations shipped for `backend`, in version order.
pub fn embedded_migrations(backend: Backend) -> &'static [EmbeddedMigration] {
    match backend {
        Backend::Sqlite => embedded::SQLITE,
        Backend::Postgres => embedded::POSTGRES,
    }
}

/// The sqlx migrator for `backend`'s embedded migrations.
pub(crate) fn migrator(backend: Backend) -> Migrator {
    let mut list = Vec::new();
    for m in embedded_migrations(backend) {
        let name = Cow::Borrowed(m.name);
        list.push(Migration::new(m.version, name.clone(), MigrationType::ReversibleUp, m.up.into_sql_str(), false));
        list.push(Migration::new(m.version, name, MigrationType::ReversibleDown, m.down.into_sql_str(), false));
    }
    Migrator::with_migrations(list)
}

/// A row of the migrations table: version, description, checksum, when applied.
pub(crate) type AppliedRow = (i64, String, Vec<u8>, String);

/// Compares what the database has applied with what this guard ships.
pub(crate) fn status_from(migrator: &Migrator, applied: Vec<AppliedRow>) -> SchemaStatus {
    let mut applied: BTreeMap<i64, (String, Vec<u8>, String)> =
        applied.into_iter().map(|(v, d, c, at)| (v, (d, c, at))).collect();
    let latest_applied = applied.keys().next_back().copied().unwrap_or(0);
    let mut migrations = Vec::new();
    let mut latest_known = 0;
    for m in migrator.iter().filter(|m| m.migration_type.is_up_migration()) {
        latest_known = latest_known.max(m.version);
        let state = match applied.remove(&m.version) {
            Some((_, checksum, at)) if checksum == *m.checksum => MigrationState::Applied { at },
            Some((_, _, at)) => MigrationState::Modified { at },
            None => MigrationState::Pending,
        };
        migrations.push(MigrationInfo { version: m.version, description: m.description.to_string(), state });
    }
    for (version, (description, _, at)) in applied {
        migrations.push(MigrationInfo { version, description, state: MigrationState::Unknown { at } });
    }
    migrations.sort_by_key(|m| m.version);
    SchemaStatus { migrations, latest_known, latest_applied }
}

/// The versions to revert for `down steps`, newest first, and the version to revert to.
pub(crate) fn plan_down(status: &SchemaStatus, steps: u32) -> (i64, Vec<i64>) {
    let mut applied: Vec<i64> = status
        .migrations
        .iter()
        .filter(|m| matches!(m.state, MigrationState::Applied { .. } | MigrationState::Modified { .. }))
        .map(|m| m.version)
        .collect();
    applied.sort_unstable_by(|a, b| b.cmp(a));
    let steps = (steps as usize).min(applied.len());
    let reverted = applied[..steps].to_vec();
    let target = applied.get(steps).copied().unwrap_or(0);
    (target, reverted)
}

pub(crate) fn from_migrate(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => crate::error::from_sqlx(e),
        MigrateError::VersionMismatch(version) => StoreError::MigrationModified { version },
        MigrateError::ExecuteMigration(e, version) => StoreError::Migration(format!("migration {version}: {e}")),
        other => StoreError::Migration(other.to_string()),
    }
}

/// Implements `MigrationStore` for a store with `pool` and `migrator` fields; only the
/// query that lists applied migrations differs between backends.
macro_rules! impl_migration_store {
    ($store:ty, exists: $exists_sql:expr, applied: $applied_sql:expr) => {
        #[async_trait::async_trait]
        impl guard_core::store::MigrationStore for $store {
            async fn status(&self) -> Result<guard_core::store::SchemaStatus, guard_core::store::StoreError> {
                // Reading status never creates the table: replicas starting together
                // would race on it outside the migration lock.
                let mut conn = self.pool.acquire().await.map_err(crate::error::from_sqlx)?;
                let exists: i64 =
                    sqlx::query_scalar($exists_sql).fetch_one(&mut *conn).await.map_err(crate::error::from_sqlx)?;
                let rows: Vec<crate::migrate::AppliedRow> = if exists > 0 {
                    sqlx::query_as($applied_sql).fetch_all(&mut *conn).await.map_err(crate::error::from_sqlx)?
                } else {
                    Vec::new()
                };
                Ok(crate::migrate::status_from(&self.migrator, rows))
            }

            async fn up(&self) -> Result<Vec<i64>, guard_core::store::StoreError> {
                let status = self.status().await?;
                status.check_serveable()?;
                let pending = status
                    .migrations
                    .iter()
                    .filter(|m| m.state == guard_core::store::MigrationState::Pending)
                    .map(|m| m.version)
                    .collect();
                self.migrator.run(&self.writer).await.map_err(crate::migrate::from_migrate)?;
                Ok(pending)
            }

            async fn down(&self, steps: u32) -> Result<Vec<i64>, guard_core::store::StoreError> {
                let status = self.status().await?;
                status.check_serveable()?;
                let (target, reverted) = crate::migrate::plan_down(&status, steps);
                if !reverted.is_empty() {
                    self.migrator.undo(&self.writer, target).await.map_err(crate::migrate::from_migrate)?;
                }
                Ok(reverted)
            }
        }
    };
}
pub(crate) use impl_migration_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_ship_the_same_migration_versions_and_names() {
        let sqlite: Vec<_> = embedded_migrations(Backend::Sqlite).iter().map(|m| (m.version, m.name)).collect();
        let postgres: Vec<_> = embedded_migrations(Backend::Postgres).iter().map(|m| (m.version, m.name)).collect();
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
        let mut sorted = sqlite.clone();
        sorted.sort();
        sorted.dedup_by_key(|m| m.0);
        assert_eq!(sorted, sqlite, "versions must be unique and ordered");
    }

    #[test]
    fn status_marks_applied_pending_modified_and_unknown_migrations() {
        let m = migrator(Backend::Sqlite);
        let first = m.iter().find(|x| x.migration_type.is_up_migration()).unwrap();
        let rows = vec![
            (first.version, first.description.to_string(), first.checksum.to_vec(), "t1".to_owned()),
            (999_999, "newer".to_owned(), vec![1], "t2".to_owned()),
        ];
        let status = status_from(&m, rows);
        assert_eq!(status.migrations[0].state, MigrationState::Applied { at: "t1".into() });
        assert!(status.migrations.iter().any(|x| x.state == MigrationState::Pending));
        assert_eq!(status.migrations.last().unwrap().state, MigrationState::Unknown { at: "t2".into() });
        assert_eq!(status.latest_applied, 999_999);
        assert!(matches!(status.check_serveable(), Err(StoreError::SchemaTooNew { applied: 999_999, .. })));

        let modified = status_from(&m, vec![(first.version, String::new(), vec![0; 4], "t".into())]);
        assert!(matches!(modified.check_serveable(), Err(StoreError::MigrationModified { .. })));
    }

    #[test]
    fn down_plans_the_newest_applied_migrations_first() {
        let info = |version, applied: bool| MigrationInfo {
            version,
            description: String::new(),
            state: if applied { MigrationState::Applied { at: String::new() } } else { MigrationState::Pending },
        };
        let status = SchemaStatus {
            migrations: vec![info(1, true), info(2, true), info(3, true), info(4, false)],
            latest_known: 4,
            latest_applied: 3,
        };
        assert_eq!(plan_down(&status, 1), (2, vec![3]));
        assert_eq!(plan_down(&status, 2), (1, vec![3, 2]));
        assert_eq!(plan_down(&status, 10), (0, vec![3, 2, 1]));
    }
}
