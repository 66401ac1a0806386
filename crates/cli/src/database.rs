//! Opening the database for a command: reachable, schema current, `default` tenant
//! present.

use guard_core::store::StoreError;
use guard_core::tenants::TenantService;
use guard_store::Database;

use crate::Failure;
use crate::migrate_cmd::store_failure;

/// Whether pending migrations are applied or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Migrations {
    Apply,
    Require,
}

/// Opens the database, applies (or requires) the migrations and makes sure the
/// `default` tenant exists.
pub(crate) async fn prepare(full: &guard_core::Config, migrations: Migrations) -> Result<Database, Failure> {
    let config = &full.database;
    let fail = |e: StoreError| store_failure(&e, config);
    let db = guard_store::open(config).await.map_err(fail)?;
    db.pool.ping(config.acquire_timeout).await.map_err(fail)?;
    match migrations {
        Migrations::Require => {
            let status = db.migrations.status().await.map_err(fail)?;
            status.check_serveable().map_err(fail)?;
            if status.pending() > 0 {
                return Err(fail(StoreError::SchemaTooOld {
                    applied: status.latest_applied,
                    known: status.latest_known,
                }));
            }
        }
        Migrations::Apply => {
            let applied = db.migrations.up().await.map_err(fail)?;
            if !applied.is_empty() {
                tracing::info!(?applied, "applied database migrations");
            }
        }
    }
    tenants(&db, full)?
        .ensure_default()
        .await
        .map_err(|e| Failure::Runtime(format!("cannot create the default tenant: {e}")))?;
    Ok(db)
}

/// The tenant service over `db`, its events in the audit log.
pub(crate) fn tenants(db: &Database, config: &guard_core::Config) -> Result<TenantService, Failure> {
    let audit = guard_api::audit_log(config, db).map_err(Failure::Config)?;
    Ok(TenantService::new(db.tenants.clone(), audit))
}

/// The database (migrated) and every service over it, with Redis when configured so
/// that revocations reach running servers' shared session cache.
pub(crate) async fn services(config: &guard_core::Config) -> Result<(Database, guard_api::Services), Failure> {
    let db = prepare(config, Migrations::Apply).await?;
    let redis =
        guard_store::redis::Redis::open(&config.redis).map_err(|e| Failure::Config(format!("REDIS_URL: {e}")))?;
    let services = guard_api::Services::new(config, &db, redis.as_ref()).map_err(Failure::Config)?;
    Ok((db, services))
}
