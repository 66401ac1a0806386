//! Reading a consistent snapshot of every table out of either backend, and loading
//! one into either, in the portable values of `guard_core::backup`.
//!
//! A snapshot is one read transaction on one connection (SQLite: a read transaction
//! on the WAL; PostgreSQL: REPEATABLE READ), so guard keeps serving while it is taken
//! and every table is seen at the same instant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use futures_util::TryStreamExt;
use guard_core::backup::Value;
use guard_core::config::{DatabaseConfig, DatabaseKind};
use guard_core::store::{Backend, StoreError};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Row, ValueRef};
use tokio::sync::mpsc;

use crate::error::from_sqlx;

/// The migrations table is not data: a backup records the schema version instead.
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One table: its columns in order, with their PostgreSQL types where known.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    /// PostgreSQL `udt_name` per column (empty on SQLite).
    types: Vec<String>,
}

enum Conn {
    /// Taken out while a blocking thread reads through it.
    Sqlite(Option<rusqlite::Connection>),
    Postgres(PgConnection),
}

/// The connection a step works on.
enum ConnRef<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl Conn {
    fn sqlite(&self) -> Result<&rusqlite::Connection, StoreError> {
        match self {
            Conn::Sqlite(Some(c)) => Ok(c),
            _ => Err(StoreError::Unavailable("the snapshot's connection was lost".into())),
        }
    }
}

/// The connection a restore loads through: PostgreSQL's inside one transaction.
enum LoadConn {
    /// Taken out while a blocking thread writes through it.
    Sqlite(Option<rusqlite::Connection>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// One encoded chunk of rows of a table.
pub type Chunk = (Vec<u8>, u64);
/// Rows are sent in chunks of about this many bytes.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// A consistent read of the whole database.
pub struct Snapshot {
    conn: Conn,
}

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidConfig(format!("DATABASE_URL: not a SQLite URL the driver accepts ({e})")))
}

/// The database file a SQLite URL names (None: not a file URL).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    // The SQLite driver takes any string as a file name, a PostgreSQL URL included.
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (!path.as_os_str().is_empty() && !url.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| path.to_path_buf())
}

fn pg_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidConfig(format!("DATABASE_URL: not a PostgreSQL URL the driver accepts ({e})")))
}

impl Snapshot {
    /// Opens a connection and starts the snapshot.
    pub async fn begin(config: &DatabaseConfig) -> Result<Snapshot, StoreError> {
        let url = config.url.expose();
        match config.kind() {
            DatabaseKind::Sqlite => {
                let path = sqlite_options(url)?.get_filename().to_path_buf();
                if !path.exists() {
                    return Err(StoreError::Unavailable(format!("no database file at {}", path.display())));
                }
                let busy = config.sqlite_busy_timeout;
                let conn = tokio::task::spawn_blocking(move || crate::backup_sqlite::open_snapshot(&path, busy))
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))??;
                Ok(Snapshot { conn: Conn::Sqlite(Some(conn)) })
            }
            DatabaseKind::Postgres => {
                let mut c = pg_options(url)?.connect().await.map_err(from_sqlx)?;
                sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut c)
                    .await
                    .map_err(from_sqlx)?;
                Ok(Snapshot { conn: Conn::Postgres(c) })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// The latest migration applied (0 for an empty database).
    pub async fn schema_version(&mut self) -> Result<i64, StoreError> {
        match &mut self.conn {
            Conn::Sqlite(_) => crate::backup_sqlite::schema_version(self.conn.sqlite()?),
            Conn::Postgres(c) => read_schema_version(ConnRef::Postgres(c)).await,
        }
    }

    /// Every table but the migrations table, parents before children.
    pub async fn tables(&mut self) -> Result<Vec<Table>, StoreError> {
        match &mut self.conn {
            Conn::Sqlite(_) => order(crate::backup_sqlite::tables(self.conn.sqlite()?)?),
            Conn::Postgres(c) => tables(ConnRef::Postgres(c)).await,
        }
    }

    pub async fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", quote(&table.name));
        let n: i64 = match &mut self.conn {
            Conn::Sqlite(_) => return crate::backup_sqlite::count(self.conn.sqlite()?, &table.name),
            Conn::Postgres(c) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(c).await.map_err(from_sqlx)?,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Sends every row of `table`, encoded, in chunks; returns the rows sent.
    pub async fn export(&mut self, table: &Table, out: &mpsc::Sender<Chunk>) -> Result<u64, StoreError> {
        if let Conn::Sqlite(slot) = &mut self.conn {
            let conn =
                slot.take().ok_or_else(|| StoreError::Unavailable("the snapshot's connection was lost".into()))?;
            let (name, columns, out) = (table.name.clone(), table.columns.clone(), out.clone());
            let (conn, result) = tokio::task::spawn_blocking(move || {
                let result = crate::backup_sqlite::export(&conn, &name, &columns, &out);
                (conn, result)
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            *slot = Some(conn);
            return result;
        }
        let columns = table.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {columns} FROM {}", quote(&table.name));
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        let mut rows_in_chunk = 0u64;
        let mut total = 0u64;
        let closed = || StoreError::Unavailable("the backup writer stopped".into());
        macro_rules! pump {
            ($conn:expr, $encode:expr) => {{
                let mut rows = sqlx::query(AssertSqlSafe(sql.clone())).fetch($conn);
                while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
                    for i in 0..table.columns.len() {
                        $encode(&row, i, &table.types)?.encode(&mut chunk);
                    }
                    rows_in_chunk += 1;
                    if chunk.len() >= CHUNK_BYTES {
                        total += rows_in_chunk;
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
                        out.send((full, rows_in_chunk)).await.map_err(|_| closed())?;
                        rows_in_chunk = 0;
                    }
                }
            }};
        }
        if let Conn::Postgres(c) = &mut self.conn {
            pump!(&mut *c, pg_value);
        }
        if rows_in_chunk > 0 {
            total += rows_in_chunk;
            out.send((chunk, rows_in_chunk)).await.map_err(|_| closed())?;
        }
        Ok(total)
    }

    /// Ends the snapshot.
    pub async fn close(self) -> Result<(), StoreError> {
        match self.conn {
            Conn::Sqlite(Some(c)) => {
                c.execute_batch("COMMIT").map_err(crate::backup_sqlite::fail)?;
                c.close().map_err(|(_, e)| crate::backup_sqlite::fail(e))
            }
            Conn::Sqlite(None) => Ok(()),
            Conn::Postgres(mut c) => {
                sqlx::query("COMMIT").execute(&mut c).await.map_err(from_sqlx)?;
                c.close().await.map_err(from_sqlx)
            }
        }
    }
}

fn unsupported(column: &str, type_name: &str) -> StoreError {
    StoreError::Migration(format!("column {column}: type {type_name} cannot be backed up"))
}

fn pg_value(row: &sqlx::postgres::PgRow, i: usize, types: &[String]) -> Result<Value, StoreError> {
    let raw = row.try_get_raw(i).map_err(from_sqlx)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let get = |e| from_sqlx(e);
    Ok(match types.get(i).map(String::as_str).unwrap_or_default() {
        "uuid" => Value::Bytes(row.try_get::<uuid::Uuid, _>(i).map_err(get)?.as_bytes().to_vec()),
        "timestamptz" => {
            let t: time::OffsetDateTime = row.try_get(i).map_err(get)?;
            // As sqlx writes OffsetDateTime into SQLite.
            let text = t
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| StoreError::Migration(format!("column {}: {e}", row.column(i).name())))?;
            Value::Text(text)
        }
        "bool" => Value::Int(i64::from(row.try_get::<bool, _>(i).map_err(get)?)),
        "bytea" => Value::Bytes(row.try_get(i).map_err(get)?),
        "int8" => Value::Int(row.try_get(i).map_err(get)?),
        "int4" => Value::Int(i64::from(row.try_get::<i32, _>(i).map_err(get)?)),
        "int2" => Value::Int(i64::from(row.try_get::<i16, _>(i).map_err(get)?)),
        "float8" => Value::Real(row.try_get(i).map_err(get)?),
        "text" | "varchar" => Value::Text(row.try_get(i).map_err(get)?),
        "jsonb" | "json" => Value::Text(row.try_get::<serde_json::Value, _>(i).map_err(get)?.to_string()),
        other => return Err(unsupported(row.column(i).name(), other)),
    })
}

async fn read_schema_version(conn: ConnRef<'_>) -> Result<i64, StoreError> {
    let (exists, conn): (Result<i64, sqlx::Error>, ConnRef<'_>) = match conn {
        ConnRef::Sqlite(c) => {
            let n = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_one(&mut *c)
            .await;
            (n, ConnRef::Sqlite(c))
        }
        ConnRef::Postgres(c) => {
            let n = sqlx::query_scalar(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
            )
            .fetch_one(&mut *c)
            .await;
            (n, ConnRef::Postgres(c))
        }
    };
    if exists.map_err(from_sqlx)? == 0 {
        return Ok(0);
    }
    let sql = "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success";
    let version: i64 = match conn {
        ConnRef::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        ConnRef::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
    }
    .map_err(from_sqlx)?;
    Ok(version)
}

/// Tables with their columns and the tables they reference, ordered so that every
/// table comes after those it references.
async fn tables(conn: ConnRef<'_>) -> Result<Vec<Table>, StoreError> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    match conn {
        ConnRef::Sqlite(c) => {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )
            .fetch_all(&mut *c)
            .await
            .map_err(from_sqlx)?;
            for name in names.into_iter().filter(|n| n != MIGRATIONS_TABLE) {
                let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                    .bind(&name)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(from_sqlx)?;
                let parents: Vec<String> =
                    sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?)")
                        .bind(&name)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(from_sqlx)?;
                let types = Vec::new();
                found.insert(name, (columns, types, parents.into_iter().collect()));
            }
        }
        ConnRef::Postgres(c) => {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text, c.udt_name::text
                 FROM information_schema.columns c
                 JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                 WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
                 ORDER BY c.table_name, c.ordinal_position",
            )
            .fetch_all(&mut *c)
            .await
            .map_err(from_sqlx)?;
            for (table, column, udt) in rows {
                if table == MIGRATIONS_TABLE {
                    continue;
                }
                let entry = found.entry(table).or_default();
                entry.0.push(column);
                entry.1.push(udt);
            }
            let edges: Vec<(String, String)> = sqlx::query_as(
                "SELECT cl.relname::text, parent.relname::text
                 FROM pg_constraint con
                 JOIN pg_class cl ON cl.oid = con.conrelid
                 JOIN pg_class parent ON parent.oid = con.confrelid
                 WHERE con.contype = 'f' AND cl.relnamespace = current_schema()::regnamespace",
            )
            .fetch_all(&mut *c)
            .await
            .map_err(from_sqlx)?;
            for (child, parent) in edges {
                if let Some(entry) = found.get_mut(&child) {
                    entry.2.insert(parent);
                }
            }
        }
    }
    order(found)
}

/// Per table: its columns, their PostgreSQL types, and the tables it references.
pub(crate) type Found = (Vec<String>, Vec<String>, BTreeSet<String>);

/// The tables guard's migrations create (by `CREATE TABLE` or `RENAME TO`): a backup
/// and a restore touch these only, whatever else shares the schema.
fn guard_tables() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for m in crate::migrate::embedded_migrations(backend) {
            let words: Vec<&str> = m.up.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let next = |k: usize| words.get(i + k).map(|s| s.to_ascii_uppercase());
                let name = if w.eq_ignore_ascii_case("CREATE") && next(1).as_deref() == Some("TABLE") {
                    if next(2).as_deref() == Some("IF") { words.get(i + 5) } else { words.get(i + 2) }
                } else if w.eq_ignore_ascii_case("RENAME") && next(1).as_deref() == Some("TO") {
                    words.get(i + 2)
                } else {
                    None
                };
                if let Some(name) = name {
                    let name = name.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
                    names.insert(name.to_ascii_lowercase());
                }
            }
        }
    }
    names
}

/// guard's tables, each after the tables it references.
fn order(mut found: BTreeMap<String, Found>) -> Result<Vec<Table>, StoreError> {
    let ours = guard_tables();
    found.retain(|name, _| ours.contains(name));
    let mut ordered = Vec::new();
    let mut placed = BTreeSet::new();
    while !found.is_empty() {
        let ready: Vec<String> = found
            .iter()
            .filter(|(name, (_, _, parents))| {
                parents.iter().all(|p| placed.contains(p) || p == *name || !found.contains_key(p))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            return Err(StoreError::Migration("the tables' foreign keys form a cycle".into()));
        }
        for name in ready {
            if let Some((columns, types, _)) = found.remove(&name) {
                placed.insert(name.clone());
                ordered.push(Table { name, columns, types });
            }
        }
    }
    Ok(ordered)
}

/// Loads a backup into the database `config` names, replacing everything in it.
///
/// SQLite: the data goes into a new file beside the database, which replaces it only
/// once complete. PostgreSQL: everything happens in one transaction. Either way a
/// failure leaves the database as it was.
pub struct Loader {
    conn: LoadConn,
    sqlite_paths: Option<(PathBuf, PathBuf)>,
    tables: Vec<Table>,
    /// SQLite indexes and triggers, dropped while loading and created again after.
    deferred: Vec<String>,
}

impl Loader {
    /// Creates the schema as it was at `schema_version`, empty, ready for rows.
    pub async fn begin(config: &DatabaseConfig, schema_version: i64) -> Result<Loader, StoreError> {
        let url = config.url.expose();
        match config.kind() {
            DatabaseKind::Sqlite => {
                let options = sqlite_options(url)?;
                let target = options.get_filename().to_path_buf();
                if target.as_os_str().is_empty() || url.contains(":memory:") || url.contains("mode=memory") {
                    return Err(StoreError::InvalidConfig("cannot restore into an in-memory SQLite database".into()));
                }
                let staging = sibling(&target, "restoring");
                for stale in [staging.clone(), sibling(&staging, "wal"), sibling(&staging, "shm")] {
                    remove_if_exists(&stale)?;
                }
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| io_error("create the database directory", &e))?;
                }
                // Nothing reads the new file until it is complete: no journal, no syncs.
                let mut conn = options
                    .filename(&staging)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Off)
                    .synchronous(SqliteSynchronous::Off)
                    .foreign_keys(false)
                    .connect()
                    .await
                    .map_err(from_sqlx)?;
                crate::migrate::migrator(Backend::Sqlite)
                    .run_to(schema_version, &mut conn)
                    .await
                    .map_err(crate::migrate::from_migrate)?;
                let tables = tables(ConnRef::Sqlite(&mut conn)).await?;
                let deferred: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(from_sqlx)?;
                for (kind, name, _) in &deferred {
                    let drop = format!("DROP {} {}", kind.to_uppercase(), quote(name));
                    sqlx::query(AssertSqlSafe(drop)).execute(&mut conn).await.map_err(from_sqlx)?;
                }
                // guard_meta rows written by the migrations are replaced by the backup's.
                for table in &tables {
                    let sql = format!("DELETE FROM {}", quote(&table.name));
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.map_err(from_sqlx)?;
                }
                conn.close().await.map_err(from_sqlx)?;
                let path = staging.clone();
                let conn = tokio::task::spawn_blocking(move || crate::backup_sqlite::open_for_load(&path))
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))??;
                Ok(Loader {
                    conn: LoadConn::Sqlite(Some(conn)),
                    sqlite_paths: Some((staging, target)),
                    tables,
                    deferred: deferred.into_iter().map(|(_, _, sql)| sql).collect(),
                })
            }
            DatabaseKind::Postgres => {
                // A one-connection pool gives a transaction that owns its connection;
                // the migrations' own transactions nest in it as savepoints.
                let pool = sqlx::pool::PoolOptions::<sqlx::Postgres>::new()
                    .max_connections(1)
                    .connect_lazy_with(pg_options(url)?);
                let mut tx = pool.begin().await.map_err(from_sqlx)?;
                let current = read_schema_version(ConnRef::Postgres(&mut tx)).await?;
                // Remove what is there by the migrations' own down scripts, then build
                // the backup's schema; the transaction keeps both from being seen half done.
                drop_all_pg(&mut tx, current).await?;
                run_pg_migrations(&mut tx, schema_version).await?;
                let tables = tables(ConnRef::Postgres(&mut tx)).await?;
                for table in &tables {
                    let sql = format!("DELETE FROM {}", quote(&table.name));
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(from_sqlx)?;
                    let sql = format!("ALTER TABLE {} DISABLE TRIGGER USER", quote(&table.name));
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(from_sqlx)?;
                }
                Ok(Loader { conn: LoadConn::Postgres(tx), sqlite_paths: None, tables, deferred: Vec::new() })
            }
        }
    }

    /// The target's tables, parents first: the order to load in.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Loads the rows arriving on `rows` into `table`, whose columns in the backup are
    /// `columns`; returns the number of rows.
    pub async fn load(
        &mut self,
        table: &str,
        columns: &[String],
        rows: mpsc::Receiver<Vec<Vec<Value>>>,
    ) -> Result<u64, StoreError> {
        let target = self
            .tables
            .iter()
            .find(|t| t.name == table)
            .cloned()
            .ok_or_else(|| StoreError::Migration(format!("table {table} is not in the restored schema")))?;
        for c in columns {
            if !target.columns.contains(c) {
                return Err(StoreError::Migration(format!("column {table}.{c} is not in the restored schema")));
            }
        }
        let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        match &mut self.conn {
            LoadConn::Sqlite(slot) => {
                let lost = || StoreError::Unavailable("the restore's connection was lost".into());
                let conn = slot.take().ok_or_else(lost)?;
                let (name, columns) = (table.to_owned(), columns.to_vec());
                let (conn, result) = tokio::task::spawn_blocking(move || {
                    let result = crate::backup_sqlite::load(&conn, &name, &columns, rows);
                    (conn, result)
                })
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                *slot = Some(conn);
                result
            }
            LoadConn::Postgres(conn) => {
                let types: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        target.columns.iter().position(|t| t == c).map(|i| target.types[i].clone()).unwrap_or_default()
                    })
                    .collect();
                let mut rows = rows;
                load_pg(conn, table, &list, &types, &mut rows).await
            }
        }
    }

    /// Makes the restored data the database.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.conn {
            LoadConn::Sqlite(slot) => {
                let conn = slot.ok_or_else(|| StoreError::Unavailable("the restore's connection was lost".into()))?;
                let deferred = self.deferred.clone();
                tokio::task::spawn_blocking(move || crate::backup_sqlite::finish_load(conn, &deferred))
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))??;
                if let Some((staging, target)) = self.sqlite_paths {
                    // A WAL left from the old database would be replayed into the new one.
                    for stale in [sibling(&target, "wal"), sibling(&target, "shm")] {
                        remove_if_exists(&stale)?;
                    }
                    // On disk before it replaces anything, with the old file's owner and mode.
                    let file = std::fs::File::open(&staging).map_err(|e| io_error("open the restored database", &e))?;
                    file.sync_all().map_err(|e| io_error("sync the restored database", &e))?;
                    if let Ok(old) = std::fs::metadata(&target) {
                        use std::os::unix::fs::MetadataExt as _;
                        let _ = std::fs::set_permissions(&staging, old.permissions());
                        let _ = std::os::unix::fs::chown(&staging, Some(old.uid()), Some(old.gid()));
                    }
                    std::fs::rename(&staging, &target)
                        .map_err(|e| io_error("move the restored database in place", &e))?;
                    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
                        && let Ok(dir) = std::fs::File::open(dir)
                    {
                        let _ = dir.sync_all();
                    }
                }
                Ok(())
            }
            LoadConn::Postgres(mut conn) => {
                for table in &self.tables {
                    let sql = format!("ALTER TABLE {} ENABLE TRIGGER USER", quote(&table.name));
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(from_sqlx)?;
                }
                // Identity columns continue after the restored rows.
                let identities: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND is_identity = 'YES'",
                )
                .fetch_all(&mut *conn)
                .await
                .map_err(from_sqlx)?;
                for (table, column) in identities {
                    let sql = format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), coalesce((SELECT max({qc}) FROM {qt}), 0) + 1, false)",
                        t = table.replace('\'', "''"),
                        c = column.replace('\'', "''"),
                        qc = quote(&column),
                        qt = quote(&table)
                    );
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(from_sqlx)?;
                }
                conn.commit().await.map_err(from_sqlx)
            }
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-");
    name.push(suffix);
    PathBuf::from(name)
}

fn io_error(what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot {what}: {e}"))
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(&format!("remove {}", path.display()), &e)),
    }
}

async fn drop_all_pg(conn: &mut PgConnection, current: i64) -> Result<(), StoreError> {
    if current == 0 {
        return Ok(());
    }
    let migrator = crate::migrate::migrator(Backend::Postgres);
    // Undo runs each down script in a transaction of its own; inside ours they nest
    // as savepoints, so nothing is committed until the restore is.
    let mut migrator = migrator;
    migrator.set_locking(false);
    migrator.undo(&mut *conn, 0).await.map_err(crate::migrate::from_migrate)
}

async fn run_pg_migrations(conn: &mut PgConnection, schema_version: i64) -> Result<(), StoreError> {
    let mut migrator = crate::migrate::migrator(Backend::Postgres);
    migrator.set_locking(false);
    migrator.run_to(schema_version, &mut *conn).await.map_err(crate::migrate::from_migrate)
}

async fn load_pg(
    conn: &mut PgConnection,
    table: &str,
    list: &str,
    types: &[String],
    rows: &mut mpsc::Receiver<Vec<Vec<Value>>>,
) -> Result<u64, StoreError> {
    let sql = format!("COPY {} ({list}) FROM STDIN", quote(table));
    let mut copy = conn.copy_in_raw(&sql).await.map_err(from_sqlx)?;
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut total = 0u64;
    let mut failure = None;
    'receive: while let Some(batch) = rows.recv().await {
        for row in batch {
            for (i, value) in row.iter().enumerate() {
                if i > 0 {
                    buf.push(b'\t');
                }
                if let Err(e) = copy_text(&mut buf, value, types.get(i).map(String::as_str).unwrap_or_default()) {
                    failure = Some(e);
                    break 'receive;
                }
            }
            buf.push(b'\n');
            total += 1;
        }
        if buf.len() >= CHUNK_BYTES {
            copy.send(std::mem::take(&mut buf)).await.map_err(from_sqlx)?;
        }
    }
    if let Some(e) = failure {
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    if !buf.is_empty() {
        copy.send(buf).await.map_err(from_sqlx)?;
    }
    copy.finish().await.map_err(from_sqlx)?;
    Ok(total)
}

/// One value in COPY's text format, converted to the target column's type.
fn copy_text(out: &mut Vec<u8>, value: &Value, udt: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let mismatch = |what: &str| StoreError::Migration(format!("a {what} value does not fit a {udt} column"));
    match (value, udt) {
        (Value::Null, _) => out.extend_from_slice(b"\\N"),
        (Value::Bytes(b), "uuid") => {
            let id = uuid::Uuid::from_slice(b).map_err(|_| mismatch("bytes"))?;
            let _ = write!(out, "{id}");
        }
        (Value::Int(n), "bool") => out.push(if *n != 0 { b't' } else { b'f' }),
        (Value::Bytes(b), "bytea") => {
            out.extend_from_slice(b"\\\\x");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
        (Value::Bytes(_), _) => return Err(mismatch("bytes")),
        (Value::Int(n), _) => {
            let _ = write!(out, "{n}");
        }
        (Value::Real(x), _) => {
            let _ = write!(out, "{x:?}");
        }
        (Value::Text(s), _) => {
            for byte in s.bytes() {
                match byte {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    other => out.push(other),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn only_sqlite_file_urls_name_a_file() {
        assert_eq!(sqlite_path("sqlite://data/guard.db"), Some("data/guard.db".into()));
        assert_eq!(sqlite_path("sqlite:guard.db?mode=rwc"), Some("guard.db".into()));
        // The driver itself would take these as file names.
        assert_eq!(sqlite_path("postgres://postgres@127.0.0.1/guard"), None);
        assert_eq!(sqlite_path("postgresql://127.0.0.1/guard"), None);
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
