//! `OpsStore`: sizes, expired-data clean-up, VACUUM/ANALYZE and integrity checks.

use guard_core::store::StoreError;
use sqlx::AssertSqlSafe;

/// What maintenance deletes: (what, table, condition). `$1` is the cutoff time, `$2`
/// now, `$3` and `$4` the same as Unix seconds. Literal text only.
pub(crate) const EXPIRED: &[(&str, &str, &str)] = &[
    (
        "refresh tokens of expired sessions",
        "refresh_tokens",
        "session_id IN (SELECT id FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1)",
    ),
    (
        "sessions expired or revoked before the cutoff",
        "sessions",
        "expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1",
    ),
    ("email tokens used or expired before the cutoff", "email_tokens", "expires_at < $1 OR used_at < $1"),
    ("MFA challenges expired", "mfa_challenges", "expires_at < $2"),
    ("passkey ceremonies expired", "webauthn_ceremonies", "expires_at < $2"),
    ("outbox mail sent before the cutoff", "email_outbox", "status = 'sent' AND sent_at < $1"),
    ("sign-in attempts before the cutoff", "login_attempts", "at_unix < $3"),
    ("address blocks that have ended", "ip_blocks", "until_unix <= $4"),
    (
        "account lockouts ended, with no failure since the cutoff",
        "account_lockouts",
        "(locked_until_unix IS NULL OR locked_until_unix < $4) AND last_failure_unix < $3",
    ),
];

/// Implements `OpsStore`'s shared part (clean-up, audit count) for a store; the
/// backend-specific methods come as the macro's arguments' functions.
macro_rules! impl_ops_store {
    ($store:ty, size: $size:path, optimize: $optimize:path, integrity: $integrity:path) => {
        #[async_trait::async_trait]
        impl guard_core::store::OpsStore for $store {
            async fn database_size(&self) -> Result<u64, guard_core::store::StoreError> {
                $size(self).await
            }

            async fn audit_events_stored(&self) -> Result<u64, guard_core::store::StoreError> {
                let (sealed, queued): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT CAST(coalesce(sum(last_seq - anchor_seq), 0) AS BIGINT) FROM audit_chains), \
                     (SELECT count(*) FROM audit_queue)",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(u64::try_from(sealed + queued).unwrap_or(0))
            }

            async fn delete_expired(
                &self,
                cutoff: time::OffsetDateTime,
                now: time::OffsetDateTime,
                dry_run: bool,
            ) -> Result<Vec<guard_core::store::MaintenanceStep>, guard_core::store::StoreError> {
                let mut steps = Vec::new();
                for (what, table, condition) in crate::ops::EXPIRED {
                    let count = format!("SELECT count(*) FROM {table} WHERE {condition}");
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                        .bind(cutoff)
                        .bind(now)
                        .bind(cutoff.unix_timestamp())
                        .bind(now.unix_timestamp())
                        .fetch_one(&self.writer)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                    // Refresh tokens go with their sessions (ON DELETE CASCADE).
                    if !dry_run && *table != "refresh_tokens" && n > 0 {
                        let delete = format!("DELETE FROM {table} WHERE {condition}");
                        sqlx::query(sqlx::AssertSqlSafe(delete))
                            .bind(cutoff)
                            .bind(now)
                            .bind(cutoff.unix_timestamp())
                            .bind(now.unix_timestamp())
                            .execute(&self.writer)
                            .await
                            .map_err(crate::error::from_sqlx)?;
                    }
                    steps.push(guard_core::store::MaintenanceStep { what, rows: u64::try_from(n).unwrap_or(0) });
                }
                Ok(steps)
            }

            async fn optimize(&self) -> Result<String, guard_core::store::StoreError> {
                $optimize(self).await
            }

            async fn check_integrity(&self) -> Result<Vec<String>, guard_core::store::StoreError> {
                $integrity(self).await
            }

            async fn record_job(
                &self,
                job: guard_core::store::Job,
                outcome: guard_core::store::JobOutcome,
            ) -> Result<(), guard_core::store::StoreError> {
                let now = guard_core::stored_now();
                let ok = outcome == guard_core::store::JobOutcome::Ok;
                sqlx::query(
                    "INSERT INTO job_runs (job, last_outcome, last_run_at, last_success_at, last_failure_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (job) DO UPDATE SET last_outcome = excluded.last_outcome, \
                     last_run_at = excluded.last_run_at, \
                     last_success_at = coalesce(excluded.last_success_at, job_runs.last_success_at), \
                     last_failure_at = coalesce(excluded.last_failure_at, job_runs.last_failure_at)",
                )
                .bind(job.as_str())
                .bind(outcome.as_str())
                .bind(now)
                .bind(ok.then_some(now))
                .bind((!ok).then_some(now))
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(())
            }

            async fn job_runs(&self) -> Result<Vec<guard_core::store::JobRun>, guard_core::store::StoreError> {
                type Row = (
                    String,
                    String,
                    time::OffsetDateTime,
                    Option<time::OffsetDateTime>,
                    Option<time::OffsetDateTime>,
                );
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT job, last_outcome, last_run_at, last_success_at, last_failure_at FROM job_runs ORDER BY job",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                // Rows written by a newer guard with jobs this one does not know are skipped.
                Ok(rows
                    .into_iter()
                    .filter_map(|(job, outcome, last_run_at, last_success_at, last_failure_at)| {
                        Some(guard_core::store::JobRun {
                            job: guard_core::store::Job::parse(&job)?,
                            last_outcome: guard_core::store::JobOutcome::parse(&outcome)?,
                            last_run_at,
                            last_success_at,
                            last_failure_at,
                        })
                    })
                    .collect())
            }

            async fn leases(
                &self,
                prefix: &str,
            ) -> Result<Vec<guard_core::store::Lease>, guard_core::store::StoreError> {
                // Compared as text: substr(), not LIKE, whose wildcards a prefix could hold.
                let rows: Vec<(String, String, time::OffsetDateTime)> = sqlx::query_as(
                    "SELECT name, holder, expires_at FROM job_leases \
                     WHERE substr(name, 1, length($1)) = $1 ORDER BY name",
                )
                .bind(prefix)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(name, holder, expires_at)| guard_core::store::Lease { name, holder, expires_at })
                    .collect())
            }
        }
    };
}
pub(crate) use impl_ops_store;

pub(crate) async fn sqlite_size(store: &crate::sqlite::SqliteStore) -> Result<u64, StoreError> {
    let bytes: i64 = sqlx::query_scalar("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
        .fetch_one(&store.pool)
        .await
        .map_err(crate::error::from_sqlx)?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

pub(crate) async fn sqlite_optimize(store: &crate::sqlite::SqliteStore) -> Result<String, StoreError> {
    let run = ["VACUUM", "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"];
    for sql in run {
        sqlx::query(sql).execute(&store.writer).await.map_err(crate::error::from_sqlx)?;
    }
    Ok(run.join("; "))
}

pub(crate) async fn sqlite_integrity(store: &crate::sqlite::SqliteStore) -> Result<Vec<String>, StoreError> {
    let mut problems: Vec<String> =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&store.pool).await.map_err(crate::error::from_sqlx)?;
    problems.retain(|p| p != "ok");
    let broken: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check")
            .fetch_all(&store.pool)
            .await
            .map_err(crate::error::from_sqlx)?;
    for (table, rowid, parent) in broken {
        problems.push(format!(
            "foreign key: a row of {table} (rowid {}) names a missing row of {parent}",
            rowid.map_or("-".to_owned(), |r| r.to_string())
        ));
    }
    Ok(problems)
}

pub(crate) async fn pg_size(store: &crate::postgres::PgStore) -> Result<u64, StoreError> {
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&store.pool)
        .await
        .map_err(crate::error::from_sqlx)?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

pub(crate) async fn pg_optimize(store: &crate::postgres::PgStore) -> Result<String, StoreError> {
    // VACUUM cannot run in a transaction: a plain statement on the pool.
    sqlx::query("VACUUM (ANALYZE)").execute(&store.writer).await.map_err(crate::error::from_sqlx)?;
    Ok("VACUUM (ANALYZE)".to_owned())
}

/// Single-column foreign keys of the current schema: (child, column, parent, column).
const PG_FOREIGN_KEYS: &str = "SELECT cl.relname::text, a.attname::text, p.relname::text, pa.attname::text
     FROM pg_constraint con
     JOIN pg_class cl ON cl.oid = con.conrelid
     JOIN pg_class p ON p.oid = con.confrelid
     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
     JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = con.confkey[1]
     WHERE con.contype = 'f' AND cardinality(con.conkey) = 1
       AND cl.relnamespace = current_schema()::regnamespace";

pub(crate) async fn pg_integrity(store: &crate::postgres::PgStore) -> Result<Vec<String>, StoreError> {
    let fail = crate::error::from_sqlx;
    let mut problems = Vec::new();
    let keys: Vec<(String, String, String, String)> =
        sqlx::query_as(PG_FOREIGN_KEYS).fetch_all(&store.pool).await.map_err(fail)?;
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for (child, column, parent, parent_column) in keys {
        // Reading every row also makes PostgreSQL read every page of both tables.
        let sql = format!(
            "SELECT count(*) FROM {c} x WHERE x.{cc} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} y WHERE y.{pc} = x.{cc})",
            c = q(&child),
            cc = q(&column),
            p = q(&parent),
            pc = q(&parent_column)
        );
        let orphans: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&store.pool).await.map_err(fail)?;
        if orphans > 0 {
            problems.push(format!("foreign key: {orphans} rows of {child}.{column} name missing rows of {parent}"));
        }
    }
    // Index structure, where the amcheck extension is installed and guard may use it.
    let amcheck: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck') \
         THEN has_function_privilege('bt_index_check(regclass)', 'EXECUTE')::int::bigint ELSE 0 END",
    )
    .fetch_one(&store.pool)
    .await
    .map_err(fail)?;
    if amcheck > 0 {
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             WHERE am.amname = 'btree' AND c.relnamespace = current_schema()::regnamespace",
        )
        .fetch_all(&store.pool)
        .await
        .map_err(fail)?;
        for index in indexes {
            let sql = format!("SELECT bt_index_check('{}'::regclass)", q(&index).replace('\'', "''"));
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&store.pool).await {
                problems.push(format!("index {index}: {e}"));
            }
        }
    }
    Ok(problems)
}
