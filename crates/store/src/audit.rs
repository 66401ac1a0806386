//! `AuditStore` for both backends, one SQL text for SQLite and PostgreSQL, and the
//! insert other stores use to write a change's event in the change's transaction.

use guard_core::audit::{AuditFilter, AuditRecord, Order};
use uuid::Uuid;

pub(crate) const COLUMNS: &str = "id, tenant_id, seq, at_us, event_type, actor, target, result, ip, user_agent, \
     request_id, details, mac, hash";

pub(crate) const INSERT: &str = "INSERT INTO audit_queue (id, tenant_id, at_us, event_type, actor, target, result, \
     ip, user_agent, request_id, details, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// A row with [`COLUMNS`].
pub(crate) type Row = (
    Uuid,
    Uuid,
    Option<i64>,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Vec<u8>,
    Option<Vec<u8>>,
);

pub(crate) fn from_row(row: Row) -> AuditRecord {
    let (id, tenant, seq, at_us, kind, actor, target, result, ip, user_agent, request_id, details, mac, hash) = row;
    AuditRecord { id, tenant, seq, at_us, kind, actor, target, result, ip, user_agent, request_id, details, mac, hash }
}

/// A chain's sealed records after a seq, in order, as rows (PostgreSQL).
pub(crate) const SEALED_PAGE: &str = "SELECT id, tenant_id, seq, at_us, event_type, actor, target, result, ip, \
     user_agent, request_id, details, mac, hash FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The same page as one JSON array of arrays, built inside SQLite: the driver hands
/// rows over one at a time, which costs more than the reading itself.
pub(crate) const SEALED_PAGE_JSON: &str = "SELECT json_group_array(json_array(hex(id), hex(tenant_id), seq, at_us, \
     event_type, actor, target, result, ip, user_agent, request_id, details, hex(mac), hex(hash))) \
     FROM (SELECT * FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3)";

type JsonRow = (
    String,
    String,
    Option<i64>,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
);

/// The records of a [`SEALED_PAGE_JSON`] page.
pub(crate) fn from_json_page(json: &str) -> Result<Vec<AuditRecord>, guard_core::store::StoreError> {
    let corrupt = |what: &str| guard_core::store::StoreError::Internal(format!("audit page with invalid {what}"));
    let rows: Vec<JsonRow> = serde_json::from_str(json).map_err(|_| corrupt("JSON"))?;
    let id = |hex: &str| Uuid::from_slice(&unhex(hex).ok_or_else(|| corrupt("id"))?).map_err(|_| corrupt("id"));
    rows.into_iter()
        .map(
            |(
                record_id,
                tenant,
                seq,
                at_us,
                kind,
                actor,
                target,
                result,
                ip,
                user_agent,
                request_id,
                details,
                mac,
                hash,
            )| {
                Ok(AuditRecord {
                    id: id(&record_id)?,
                    tenant: id(&tenant)?,
                    seq,
                    at_us,
                    kind,
                    actor,
                    target,
                    result,
                    ip,
                    user_agent,
                    request_id,
                    details,
                    mac: unhex(&mac).ok_or_else(|| corrupt("mac"))?,
                    hash: hash.map(|h| unhex(&h).ok_or_else(|| corrupt("hash"))).transpose()?,
                })
            },
        )
        .collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// Most records moved by one INSERT while sealing.
const SEAL_ROWS_PER_STATEMENT: usize = 20;
/// Most bytes of values in one sealing INSERT: statements past sqlx's 8 KiB write
/// buffer took about 45 ms each on PostgreSQL over loopback (measured), small ones
/// well under a millisecond.
const SEAL_BYTES_PER_STATEMENT: usize = 6 * 1024;

/// `sealed` cut into runs for one INSERT each, by count and by size.
pub(crate) fn seal_chunks(sealed: &[(i64, AuditRecord)]) -> Vec<&[(i64, AuditRecord)]> {
    let size = |r: &AuditRecord| {
        let text = [&r.kind, &r.actor, &r.result, &r.details].iter().map(|t| t.len()).sum::<usize>();
        let optional = [&r.target, &r.ip, &r.user_agent, &r.request_id]
            .iter()
            .map(|t| t.as_ref().map_or(0, String::len))
            .sum::<usize>();
        text + optional + 160
    };
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (n, (_, record)) in sealed.iter().enumerate() {
        let this = size(record);
        if n > start && (n - start >= SEAL_ROWS_PER_STATEMENT || bytes + this > SEAL_BYTES_PER_STATEMENT) {
            chunks.push(&sealed[start..n]);
            (start, bytes) = (n, 0);
        }
        bytes += this;
    }
    if start < sealed.len() {
        chunks.push(&sealed[start..]);
    }
    chunks
}

/// The INSERT of `rows` sealed records into audit_events: every column, in [`COLUMNS`]
/// order, for each row.
pub(crate) fn seal_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=14).map(|c| format!("${}", 14 * r + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!("INSERT INTO audit_events ({COLUMNS}) VALUES {}", values.join(", "))
}

/// Runs of consecutive positions in ascending `positions`: each run holds only
/// positions sealed here, so deleting it by range cannot take a record queued below
/// another's and committed later (PostgreSQL), which would fall in a gap.
pub(crate) fn runs(positions: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for pos in positions {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == pos => *last = pos,
            _ => runs.push((pos, pos)),
        }
    }
    runs
}

/// The queue's columns: [`COLUMNS`] without seq and hash, with the position first.
pub(crate) const QUEUE_COLUMNS: &str =
    "pos, id, tenant_id, at_us, event_type, actor, target, result, ip, user_agent, request_id, details, mac";

/// A queued row with [`QUEUE_COLUMNS`].
pub(crate) type QueueRow = (
    i64,
    Uuid,
    Uuid,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Vec<u8>,
);

/// The position and unsealed record of a queued row.
pub(crate) fn from_queue_row(row: QueueRow) -> (i64, AuditRecord) {
    let (pos, id, tenant, at_us, kind, actor, target, result, ip, user_agent, request_id, details, mac) = row;
    let record = AuditRecord {
        id,
        tenant,
        seq: None,
        at_us,
        kind,
        actor,
        target,
        result,
        ip,
        user_agent,
        request_id,
        details,
        mac,
        hash: None,
    };
    (pos, record)
}

/// A query parameter, bound in order.
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Id(Uuid),
}

/// The query `filter` makes, with its parameters in order.
pub(crate) fn query_sql(filter: &AuditFilter) -> (String, Vec<Param>) {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1");
    let mut params = Vec::new();
    let mut add = |sql: &mut String, clause: &str, param: Param| {
        params.push(param);
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(tenant) = filter.tenant {
        add(&mut sql, " AND tenant_id = ?", Param::Id(tenant));
    }
    if let Some(since) = filter.since_us {
        add(&mut sql, " AND at_us >= ?", Param::Int(since));
    }
    if let Some(until) = filter.until_us {
        add(&mut sql, " AND at_us < ?", Param::Int(until));
    }
    if let Some(pattern) = &filter.kind_like {
        add(&mut sql, " AND event_type LIKE ? ESCAPE '\\'", Param::Text(pattern.clone()));
    }
    if let Some(result) = filter.result {
        add(&mut sql, " AND result = ?", Param::Text(result.0.as_str().to_owned()));
    }
    if let Some(actor) = &filter.actor {
        add(&mut sql, " AND actor = ?", Param::Text(actor.clone()));
    }
    if let Some(target) = &filter.target {
        add(&mut sql, " AND target = ?", Param::Text(target.clone()));
    }
    if filter.order == Order::Chain {
        sql.push_str(" AND seq IS NOT NULL");
        if let Some(after) = filter.after_position {
            params.push(Param::Id(after.tenant));
            params.push(Param::Id(after.tenant));
            params.push(Param::Int(after.seq));
            let n = params.len();
            sql.push_str(&format!(" AND (tenant_id > ${} OR (tenant_id = ${} AND seq > ${n}))", n - 2, n - 1));
        }
        params.push(Param::Int(i64::from(filter.limit) + 1));
        sql.push_str(&format!(" ORDER BY tenant_id, seq LIMIT ${}", params.len()));
        return (sql, params);
    }
    let (compare, direction) = match filter.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst | Order::Chain => (">", "ASC"),
    };
    if let Some(after) = filter.after {
        params.push(Param::Int(after.at_us));
        params.push(Param::Int(after.at_us));
        params.push(Param::Id(after.id));
        let n = params.len();
        // The bound on at_us alone lets the index range start at the cursor.
        sql.push_str(&format!(
            " AND at_us {compare}= ${} AND (at_us {compare} ${} OR id {compare} ${n})",
            n - 2,
            n - 1
        ));
    }
    params.push(Param::Int(i64::from(filter.limit) + 1));
    sql.push_str(&format!(" ORDER BY at_us {direction}, id {direction} LIMIT ${}", params.len()));
    (sql, params)
}

/// Inserts one audit record with the executor given (a change's transaction).
macro_rules! insert_audit_record {
    ($executor:expr, $record:expr) => {{
        let record: &guard_core::audit::AuditRecord = $record;
        if cfg!(feature = "bench-unaudited") {
            Ok(())
        } else {
            sqlx::query(crate::audit::INSERT)
                .bind(record.id)
                .bind(record.tenant)
                .bind(record.at_us)
                .bind(&record.kind)
                .bind(&record.actor)
                .bind(&record.target)
                .bind(&record.result)
                .bind(&record.ip)
                .bind(&record.user_agent)
                .bind(&record.request_id)
                .bind(&record.details)
                .bind(&record.mac)
                .execute($executor)
                .await
                .map(|_| ())
                .map_err(crate::error::from_sqlx)
        }
    }};
}
pub(crate) use insert_audit_record;

/// Implements `AuditStore` for a `SqlStore` of one backend.
macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl guard_core::audit::AuditStore for $store {
            async fn append(
                &self,
                records: &[guard_core::audit::AuditRecord],
            ) -> Result<(), guard_core::store::StoreError> {
                if let [record] = records {
                    // One statement commits by itself: no BEGIN and COMMIT round trips.
                    return crate::audit::insert_audit_record!(&self.writer, record);
                }
                let mut tx = self.writer.begin().await.map_err(crate::error::from_sqlx)?;
                for record in records {
                    crate::audit::insert_audit_record!(&mut *tx, record)?;
                }
                tx.commit().await.map_err(crate::error::from_sqlx)
            }

            async fn unsealed_chains(&self) -> Result<Vec<uuid::Uuid>, guard_core::store::StoreError> {
                let rows: Vec<(uuid::Uuid,)> =
                    sqlx::query_as("SELECT DISTINCT tenant_id FROM audit_queue")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn seal(
                &self,
                limit: u32,
                keys: &guard_core::audit::AuditKeys,
            ) -> Result<Vec<(guard_core::audit::ChainState, u64)>, guard_core::store::StoreError> {
                let fail = crate::error::from_sqlx;
                // Sealed records are what checkpoints sign and delivery sends: their
                // commit reaches the disk before it returns, whatever the configured
                // durability, and takes every earlier commit with it.
                let mut conn = self.flushing_writer().await?;
                let sealed: Result<Vec<(guard_core::audit::ChainState, u64)>, guard_core::store::StoreError> = async {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(fail)?;
                    // The sealer lock, taken by a write before anything is read: on SQLite
                    // the write lock, on PostgreSQL this row until commit. A second sealer
                    // waits, then reads a queue without what the first one moved.
                    let now = guard_core::stored_now();
                    sqlx::query(
                        "INSERT INTO job_leases (name, holder, expires_at, acquired_at) VALUES ('audit-sealer', '-', $1, $1) \
                         ON CONFLICT (name) DO UPDATE SET acquired_at = excluded.acquired_at",
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                    // The limit written out: with a parameter, PostgreSQL's generic plan
                    // sorts the whole queue instead of walking its primary key.
                    let rows: Vec<crate::audit::QueueRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {} FROM audit_queue ORDER BY pos LIMIT {limit}",
                        crate::audit::QUEUE_COLUMNS
                    )))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(fail)?;
                    if rows.is_empty() {
                        tx.rollback().await.map_err(fail)?;
                        return Ok(Vec::new());
                    }
                    let mut by_chain: std::collections::BTreeMap<uuid::Uuid, Vec<(i64, guard_core::audit::AuditRecord)>> =
                        std::collections::BTreeMap::new();
                    for row in rows {
                        let (pos, record) = crate::audit::from_queue_row(row);
                        by_chain.entry(record.tenant).or_default().push((pos, record));
                    }
                    let mut heads = Vec::with_capacity(by_chain.len());
                    for (tenant, queued) in by_chain {
                        sqlx::query(
                            "INSERT INTO audit_chains (tenant_id, last_seq, last_hash, anchor_seq, anchor_hash) \
                             VALUES ($1, 0, $2, 0, $2) ON CONFLICT (tenant_id) DO NOTHING",
                        )
                        .bind(tenant)
                        .bind(vec![0u8; 32])
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                        let (mut seq, mut hash, anchor_seq, anchor_hash): (i64, Vec<u8>, i64, Vec<u8>) = sqlx::query_as(
                            "SELECT last_seq, last_hash, anchor_seq, anchor_hash FROM audit_chains WHERE tenant_id = $1",
                        )
                        .bind(tenant)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail)?;
                        let count = queued.len() as u64;
                        let mut sealed = Vec::with_capacity(queued.len());
                        for (pos, mut record) in queued {
                            seq += 1;
                            hash = keys.link(&hash, seq, &guard_core::audit::content_bytes(&record));
                            record.seq = Some(seq);
                            record.hash = Some(hash.clone());
                            sealed.push((pos, record));
                        }
                        // Several rows a statement: the sealer shares the (SQLite) writer
                        // with every request.
                        for chunk in crate::audit::seal_chunks(&sealed) {
                            let mut insert = sqlx::query(sqlx::AssertSqlSafe(crate::audit::seal_sql(chunk.len())));
                            for (_, r) in chunk {
                                insert = insert
                                    .bind(r.id)
                                    .bind(r.tenant)
                                    .bind(r.seq)
                                    .bind(r.at_us)
                                    .bind(&r.kind)
                                    .bind(&r.actor)
                                    .bind(&r.target)
                                    .bind(&r.result)
                                    .bind(&r.ip)
                                    .bind(&r.user_agent)
                                    .bind(&r.request_id)
                                    .bind(&r.details)
                                    .bind(&r.mac)
                                    .bind(&r.hash);
                            }
                            insert.execute(&mut *tx).await.map_err(fail)?;
                        }
                        for (first, last) in crate::audit::runs(sealed.iter().map(|(pos, _)| *pos)) {
                            sqlx::query("DELETE FROM audit_queue WHERE pos >= $1 AND pos <= $2")
                                .bind(first)
                                .bind(last)
                                .execute(&mut *tx)
                                .await
                                .map_err(fail)?;
                        }
                        sqlx::query("UPDATE audit_chains SET last_seq = $2, last_hash = $3 WHERE tenant_id = $1")
                            .bind(tenant)
                            .bind(seq)
                            .bind(&hash)
                            .execute(&mut *tx)
                            .await
                            .map_err(fail)?;
                        let head =
                            guard_core::audit::ChainState { tenant, last_seq: seq, last_hash: hash, anchor_seq, anchor_hash };
                        heads.push((head, count));
                    }
                    tx.commit().await.map_err(fail)?;
                    Ok(heads)
                }
                .await;
                self.release_writer(conn).await;
                sealed
            }

            async fn chains(
                &self,
                tenant: Option<uuid::Uuid>,
            ) -> Result<Vec<guard_core::audit::ChainState>, guard_core::store::StoreError> {
                let rows: Vec<(uuid::Uuid, i64, Vec<u8>, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT tenant_id, last_seq, last_hash, anchor_seq, anchor_hash FROM audit_chains \
                     WHERE $1 IS NULL OR tenant_id = $1 ORDER BY tenant_id",
                )
                .bind(tenant)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(tenant, last_seq, last_hash, anchor_seq, anchor_hash)| guard_core::audit::ChainState {
                        tenant,
                        last_seq,
                        last_hash,
                        anchor_seq,
                        anchor_hash,
                    })
                    .collect())
            }

            async fn sealed_after(
                &self,
                tenant: uuid::Uuid,
                after_seq: i64,
                limit: u32,
            ) -> Result<Vec<guard_core::audit::AuditRecord>, guard_core::store::StoreError> {
                self.sealed_page(tenant, after_seq, limit).await
            }

            async fn unsealed(
                &self,
                tenant: uuid::Uuid,
                limit: u32,
            ) -> Result<Vec<guard_core::audit::AuditRecord>, guard_core::store::StoreError> {
                let rows: Vec<crate::audit::QueueRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM audit_queue WHERE tenant_id = $1 ORDER BY pos LIMIT $2",
                    crate::audit::QUEUE_COLUMNS
                )))
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(|row| crate::audit::from_queue_row(row).1).collect())
            }

            async fn checkpoints(
                &self,
                tenant: uuid::Uuid,
            ) -> Result<Vec<guard_core::audit::Checkpoint>, guard_core::store::StoreError> {
                let rows: Vec<(uuid::Uuid, i64, Vec<u8>, i64, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT tenant_id, seq, hash, at_us, key_id, signature FROM audit_checkpoints \
                     WHERE tenant_id = $1 ORDER BY seq",
                )
                .bind(tenant)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(crate::audit::checkpoint_from_row).collect())
            }

            async fn last_checkpoint(
                &self,
                tenant: uuid::Uuid,
            ) -> Result<Option<guard_core::audit::Checkpoint>, guard_core::store::StoreError> {
                let row: Option<(uuid::Uuid, i64, Vec<u8>, i64, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT tenant_id, seq, hash, at_us, key_id, signature FROM audit_checkpoints \
                     WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(row.map(crate::audit::checkpoint_from_row))
            }

            async fn add_checkpoint(
                &self,
                checkpoint: &guard_core::audit::Checkpoint,
            ) -> Result<(), guard_core::store::StoreError> {
                // On disk before the caller logs it, or anything outside the database
                // vouches for it.
                let mut conn = self.flushing_writer().await?;
                let stored = sqlx::query(
                    "INSERT INTO audit_checkpoints (tenant_id, seq, hash, at_us, key_id, signature) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, seq) DO NOTHING",
                )
                .bind(checkpoint.tenant)
                .bind(checkpoint.seq)
                .bind(&checkpoint.hash)
                .bind(checkpoint.at_us)
                .bind(&checkpoint.key_id)
                .bind(&checkpoint.signature)
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(crate::error::from_sqlx);
                self.release_writer(conn).await;
                stored
            }

            async fn query(
                &self,
                filter: &guard_core::audit::AuditFilter,
            ) -> Result<Vec<guard_core::audit::AuditRecord>, guard_core::store::StoreError> {
                let (sql, params) = crate::audit::query_sql(filter);
                let mut query = sqlx::query_as::<$db, crate::audit::Row>(sqlx::AssertSqlSafe(sql));
                for param in params {
                    query = match param {
                        crate::audit::Param::Int(v) => query.bind(v),
                        crate::audit::Param::Text(v) => query.bind(v),
                        crate::audit::Param::Id(v) => query.bind(v),
                    };
                }
                let rows = query.fetch_all(&self.pool).await.map_err(crate::error::from_sqlx)?;
                Ok(rows.into_iter().map(crate::audit::from_row).collect())
            }

            async fn prune(&self, anchor: &guard_core::audit::Checkpoint) -> Result<u64, guard_core::store::StoreError> {
                let fail = crate::error::from_sqlx;
                // The anchor moves first: verification starts after it, so records it
                // covers that a crash leaves behind are ignored, never reported missing.
                sqlx::query(
                    "UPDATE audit_chains SET anchor_seq = $2, anchor_hash = $3 WHERE tenant_id = $1 AND anchor_seq < $2",
                )
                .bind(anchor.tenant)
                .bind(anchor.seq)
                .bind(&anchor.hash)
                .execute(&self.writer)
                .await
                .map_err(fail)?;
                let mut pruned = 0;
                loop {
                    // In batches, so that other writers get the (SQLite) write lock between them.
                    let deleted = sqlx::query(
                        "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events \
                         WHERE tenant_id = $1 AND seq <= $2 LIMIT 5000)",
                    )
                    .bind(anchor.tenant)
                    .bind(anchor.seq)
                    .execute(&self.writer)
                    .await
                    .map_err(fail)?
                    .rows_affected();
                    pruned += deleted;
                    if deleted == 0 {
                        break;
                    }
                }
                sqlx::query("DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq < $2")
                    .bind(anchor.tenant)
                    .bind(anchor.seq)
                    .execute(&self.writer)
                    .await
                    .map_err(fail)?;
                Ok(pruned)
            }

            async fn take_lease(
                &self,
                name: &str,
                holder: &str,
                ttl: std::time::Duration,
            ) -> Result<bool, guard_core::store::StoreError> {
                let now = guard_core::stored_now();
                let until = now + ttl;
                let done = sqlx::query(
                    "INSERT INTO job_leases (name, holder, expires_at, acquired_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
                     acquired_at = excluded.acquired_at \
                     WHERE job_leases.holder = excluded.holder OR job_leases.expires_at < excluded.acquired_at",
                )
                .bind(name)
                .bind(holder)
                .bind(until)
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err(crate::error::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<(), guard_core::store::StoreError> {
                sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.writer)
                    .await
                    .map(|_| ())
                    .map_err(crate::error::from_sqlx)
            }

            async fn delivered(&self, sink: &str) -> Result<Vec<(uuid::Uuid, i64)>, guard_core::store::StoreError> {
                sqlx::query_as("SELECT tenant_id, delivered_seq FROM audit_deliveries WHERE sink = $1")
                    .bind(sink)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::error::from_sqlx)
            }

            async fn set_delivered(
                &self,
                sink: &str,
                tenant: uuid::Uuid,
                seq: i64,
            ) -> Result<(), guard_core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO audit_deliveries (sink, tenant_id, delivered_seq) VALUES ($1, $2, $3) \
                     ON CONFLICT (sink, tenant_id) DO UPDATE SET delivered_seq = excluded.delivered_seq \
                     WHERE audit_deliveries.delivered_seq < excluded.delivered_seq",
                )
                .bind(sink)
                .bind(tenant)
                .bind(seq)
                .execute(&self.writer)
                .await
                .map(|_| ())
                .map_err(crate::error::from_sqlx)
            }
        }
    };
}
pub(crate) use impl_audit_store;

pub(crate) fn checkpoint_from_row(row: (Uuid, i64, Vec<u8>, i64, String, Vec<u8>)) -> guard_core::audit::Checkpoint {
    let (tenant, seq, hash, at_us, key_id, signature) = row;
    guard_core::audit::Checkpoint { tenant, seq, hash, at_us, key_id, signature }
}

/// Runs `$body` (which reaches the database through `&mut *$tx`) in a transaction on
/// the writer, writes the change's audit record in it, and commits: the change and
/// its event commit together or not at all. An early return from `$body` rolls back.
macro_rules! audited {
    ($self:ident, $record:expr, |$tx:ident| $body:expr) => {{
        let mut $tx = $self.writer.begin().await.map_err(crate::error::from_sqlx)?;
        let out = $body;
        crate::audit::insert_audit_record!(&mut *$tx, $record)?;
        $tx.commit().await.map_err(crate::error::from_sqlx)?;
        out
    }};
}
pub(crate) use audited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_hold_only_consecutive_positions() {
        assert_eq!(runs([3, 4, 5, 9, 10, 12].into_iter()), vec![(3, 5), (9, 10), (12, 12)]);
        assert!(runs(std::iter::empty()).is_empty());
    }

    #[test]
    fn sealing_statements_stay_small_by_count_and_by_size() {
        let record = |details: usize| AuditRecord {
            id: Uuid::now_v7(),
            tenant: Uuid::nil(),
            seq: Some(1),
            at_us: 0,
            kind: "user.updated".into(),
            actor: "operator".into(),
            target: None,
            result: "success".into(),
            ip: None,
            user_agent: None,
            request_id: None,
            details: "x".repeat(details),
            mac: vec![0; 32],
            hash: Some(vec![0; 32]),
        };
        let small: Vec<(i64, AuditRecord)> = (0..45).map(|n| (n, record(10))).collect();
        let sizes: Vec<usize> = seal_chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![20, 20, 5]);
        let large: Vec<(i64, AuditRecord)> = (0..4).map(|n| (n, record(4000))).collect();
        assert!(seal_chunks(&large).iter().all(|c| c.len() == 1), "each past the byte budget alone");
    }
}
