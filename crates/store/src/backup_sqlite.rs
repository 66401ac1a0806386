//! The SQLite side of backups through rusqlite, on a blocking thread: rows are read
//! and written in place, without a hand-over per row to sqlx's worker thread (which
//! made a backup of ten million rows take minutes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use guard_core::backup::Value;
use guard_core::store::StoreError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use crate::backup::{CHUNK_BYTES, Chunk, Found, MIGRATIONS_TABLE, quote};

pub(crate) fn fail(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("SQLite: {e}"))
}

/// Opens `path` read-only and starts a read transaction at once, so every later read
/// sees the database as it is now.
pub(crate) fn open_snapshot(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(fail)?;
    conn.busy_timeout(busy).map_err(fail)?;
    conn.execute_batch("BEGIN").map_err(fail)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(fail)?;
    Ok(conn)
}

/// Opens the file a restore writes: no journal, no syncs (nothing reads it until it is
/// complete), foreign keys checked once at the end.
pub(crate) fn open_for_load(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(fail)?;
    // A large page cache and in-memory sorting for the index builds at the end.
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF; \
         PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY;",
    )
    .map_err(fail)?;
    Ok(conn)
}

pub(crate) fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    let exists: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'", [], |r| {
            r.get(0)
        })
        .map_err(fail)?;
    if exists == 0 {
        return Ok(0);
    }
    conn.query_row("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success", [], |r| r.get(0))
        .map_err(fail)
}

/// Every table with its columns and the tables it references.
pub(crate) fn tables(conn: &Connection) -> Result<BTreeMap<String, Found>, StoreError> {
    let mut names = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .map_err(fail)?;
    let names: Vec<String> =
        names.query_map([], |r| r.get(0)).map_err(fail)?.collect::<Result<_, _>>().map_err(fail)?;
    let mut found = BTreeMap::new();
    for name in names.into_iter().filter(|n| n != MIGRATIONS_TABLE) {
        let mut columns = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid").map_err(fail)?;
        let columns: Vec<String> =
            columns.query_map([&name], |r| r.get(0)).map_err(fail)?.collect::<Result<_, _>>().map_err(fail)?;
        let mut parents = conn.prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)").map_err(fail)?;
        let parents: BTreeSet<String> =
            parents.query_map([&name], |r| r.get(0)).map_err(fail)?.collect::<Result<_, _>>().map_err(fail)?;
        found.insert(name, (columns, Vec::new(), parents));
    }
    Ok(found)
}

pub(crate) fn count(conn: &Connection, table: &str) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", quote(table)), [], |r| r.get(0)).map_err(fail)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Encodes a borrowed value as `Value::encode` would the owned one.
fn encode(value: ValueRef<'_>, out: &mut Vec<u8>) {
    let put_bytes = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    match value {
        ValueRef::Null => Value::Null.encode(out),
        ValueRef::Integer(n) => Value::Int(n).encode(out),
        ValueRef::Real(x) => Value::Real(x).encode(out),
        ValueRef::Text(t) => put_bytes(out, guard_core::backup::TAG_TEXT, t),
        ValueRef::Blob(b) => put_bytes(out, guard_core::backup::TAG_BYTES, b),
    }
}

/// Sends every row of `table` (`columns` in order), encoded, in chunks.
pub(crate) fn export(
    conn: &Connection,
    table: &str,
    columns: &[String],
    out: &mpsc::Sender<Chunk>,
) -> Result<u64, StoreError> {
    let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let mut statement = conn.prepare(&format!("SELECT {list} FROM {}", quote(table))).map_err(fail)?;
    let mut rows = statement.query([]).map_err(fail)?;
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let (mut in_chunk, mut total) = (0u64, 0u64);
    let closed = || StoreError::Unavailable("the backup writer stopped".into());
    while let Some(row) = rows.next().map_err(fail)? {
        for i in 0..columns.len() {
            encode(row.get_ref(i).map_err(fail)?, &mut chunk);
        }
        in_chunk += 1;
        if chunk.len() >= CHUNK_BYTES {
            total += in_chunk;
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
            out.blocking_send((full, in_chunk)).map_err(|_| closed())?;
            in_chunk = 0;
        }
    }
    if in_chunk > 0 {
        total += in_chunk;
        out.blocking_send((chunk, in_chunk)).map_err(|_| closed())?;
    }
    Ok(total)
}

/// Inserts the rows arriving on `rows` into `table`, one prepared statement per row,
/// in one transaction.
pub(crate) fn load(
    conn: &Connection,
    table: &str,
    columns: &[String],
    mut rows: mpsc::Receiver<Vec<Vec<Value>>>,
) -> Result<u64, StoreError> {
    let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let marks = (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    conn.execute_batch("BEGIN").map_err(fail)?;
    let mut total = 0u64;
    {
        let mut insert =
            conn.prepare(&format!("INSERT INTO {} ({list}) VALUES ({marks})", quote(table))).map_err(fail)?;
        while let Some(batch) = rows.blocking_recv() {
            for row in &batch {
                let values = row.iter().map(|v| {
                    ToSqlOutput::Borrowed(match v {
                        Value::Null => ValueRef::Null,
                        Value::Int(n) => ValueRef::Integer(*n),
                        Value::Real(x) => ValueRef::Real(*x),
                        Value::Text(s) => ValueRef::Text(s.as_bytes()),
                        Value::Bytes(b) => ValueRef::Blob(b),
                    })
                });
                insert.execute(rusqlite::params_from_iter(values)).map_err(fail)?;
                total += 1;
            }
        }
    }
    conn.execute_batch("COMMIT").map_err(fail)?;
    Ok(total)
}

/// Creates the indexes and triggers dropped for loading, checks every foreign key and
/// turns the WAL journal on; the file is then complete.
pub(crate) fn finish_load(conn: Connection, deferred: &[String]) -> Result<(), StoreError> {
    for sql in deferred {
        conn.execute_batch(sql).map_err(fail)?;
    }
    let broken: Option<String> = conn
        .query_row("SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1", [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
        .map_err(fail)?;
    if let Some(table) = broken {
        return Err(StoreError::Migration(format!(
            "the backup breaks a foreign key of table {table}; the database is unchanged"
        )));
    }
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).map_err(fail)?;
    conn.close().map_err(|(_, e)| fail(e))
}
