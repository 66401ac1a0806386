//! The PostgreSQL backend.

use std::str::FromStr;

use guard_core::config::DatabaseConfig;
use guard_core::store::{Backend, StoreError};
use sqlx::Postgres;
use sqlx::postgres::PgConnectOptions;

use crate::audit::impl_audit_store;
use crate::authz::impl_authz_store;
use crate::email::impl_email_store;
use crate::keys::impl_key_store;
use crate::mfa::impl_mfa_store;
use crate::migrate::impl_migration_store;
use crate::risk::impl_risk_store;
use crate::security::impl_security_store;
use crate::sessions::impl_session_store;
use crate::sql_store::SqlStore;
use crate::tenants::impl_tenant_store;
use crate::users::impl_user_store;

/// guard's stores on PostgreSQL.
pub(crate) type PgStore = SqlStore<Postgres>;

/// Prepares the pool; connections open on first use, so a database that is down now
/// is picked up when it comes back.
pub(crate) fn open(config: &DatabaseConfig) -> Result<PgStore, StoreError> {
    let options = PgConnectOptions::from_str(config.url.expose())
        .map_err(|_| StoreError::InvalidConfig("DATABASE_URL: not a PostgreSQL URL the driver accepts".into()))?
        .application_name("guard");
    let pool = crate::pool::options(config).connect_lazy_with(options);
    Ok(SqlStore::new(pool, None, config.max_idle_conns, Backend::Postgres))
}

impl PgStore {
    /// A chain's sealed records after `after_seq`, in order.
    pub(crate) async fn sealed_page(
        &self,
        tenant: uuid::Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<guard_core::audit::AuditRecord>, StoreError> {
        let rows: Vec<crate::audit::Row> = sqlx::query_as(crate::audit::SEALED_PAGE)
            .bind(tenant)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(crate::error::from_sqlx)?;
        Ok(rows.into_iter().map(crate::audit::from_row).collect())
    }
}

impl_tenant_store!(PgStore);
crate::ops::impl_ops_store!(PgStore, size: crate::ops::pg_size, optimize: crate::ops::pg_optimize, integrity: crate::ops::pg_integrity);
impl_user_store!(PgStore);
impl_session_store!(PgStore);
impl_key_store!(PgStore);
impl_risk_store!(PgStore);
impl_security_store!(PgStore);
impl_authz_store!(PgStore);
impl_mfa_store!(PgStore, sqlx::Postgres);
impl_audit_store!(PgStore, sqlx::Postgres);
impl_email_store!(PgStore, " FOR UPDATE SKIP LOCKED");

impl_migration_store!(
    PgStore,
    exists: "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
    applied: "SELECT version, description, checksum, to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
     FROM _sqlx_migrations WHERE success ORDER BY version"
);
