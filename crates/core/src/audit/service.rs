//! The audit log service: writing events, sealing them into chains, checkpoints,
//! verification, queries and retention.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::chain::{AuditKeys, content_bytes};
use super::model::{AuditFilter, AuditPage, AuditRecord, ChainState, Cursor, hex};
use super::store::AuditStore;
use crate::events::{Event, EventSink};
use crate::store::StoreError;

/// How long the sealer lets writes gather after being woken.
const SEAL_GATHER: Duration = Duration::from_millis(200);
/// Records sealed per transaction.
const SEAL_BATCH: u32 = 2000;
/// Records read per page while verifying.
const VERIFY_PAGE: u32 = 5_000;
/// Pages being read while one is checked.
const VERIFY_READ_AHEAD: i64 = 3;
/// Most records a query page may hold.
pub const MAX_PAGE: u32 = 1000;

/// guard's audit log.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
    keys: Arc<AuditKeys>,
    wake: Arc<Notify>,
    checkpoint_every: Duration,
    group_commit: Arc<super::batch::GroupCommit>,
    /// When this process last saw each chain checkpointed, to skip asking the
    /// database on every sealing pass.
    checkpointed: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, (i64, i64)>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// Where a chain stopped verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The position at fault, when there is one.
    pub seq: Option<i64>,
    /// The record at fault, when it is still there.
    pub id: Option<Uuid>,
    pub reason: String,
}

/// One chain's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The tenant, or `null` for platform events.
    pub tenant: Option<Uuid>,
    /// Records checked.
    pub records: u64,
    pub checkpoints: u64,
    /// The first record still kept (retention pruned those before).
    pub first_seq: i64,
    pub last_seq: i64,
    /// Records written but not yet sealed (checked for their MAC only).
    pub unsealed: u64,
    pub broken: Option<Broken>,
}

/// Verification of one or every chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub intact: bool,
    pub records: u64,
    pub chains: Vec<ChainReport>,
    /// The checkpoint signing key's id.
    pub key_id: String,
}

impl AuditLog {
    /// The audit log over `store`, signing a checkpoint of each chain that has grown at
    /// most every `checkpoint_every`.
    pub fn new(store: Arc<dyn AuditStore>, keys: AuditKeys, checkpoint_every: Duration) -> AuditLog {
        AuditLog {
            store,
            keys: Arc::new(keys),
            wake: Arc::new(Notify::new()),
            checkpoint_every,
            group_commit: Arc::default(),
            checkpointed: Arc::default(),
        }
    }

    /// The store, for delivery.
    pub(crate) fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// The keys records and checkpoints are made with.
    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    /// The stored form of `event` (with the current request's context and its MAC), to
    /// hand to the store method that makes the change it records, so both commit in
    /// one transaction. Call [`AuditLog::committed`] once they have.
    pub fn record(&self, event: &Event) -> AuditRecord {
        let mut record = AuditRecord::from_event(event);
        record.mac = self.keys.mac(&content_bytes(&record));
        record
    }

    /// Counts a record that has committed and wakes the sealer.
    pub fn committed(&self, record: &AuditRecord) {
        metrics::counter!("guard_audit_events_total", "type" => record.kind.clone(), "result" => record.result.clone())
            .increment(1);
        tracing::info!(
            target: "guard::event",
            event = %record.kind,
            tenant = %record.tenant,
            actor = %record.actor,
            event_target = record.target,
            result = %record.result,
            details = %record.details,
            "event"
        );
        self.wake.notify_one();
    }

    /// Seals every chain's unsealed records; returns how many. Signs a checkpoint of
    /// each grown chain when the last is older than the interval, or always with `force`.
    pub async fn seal(&self, force_checkpoint: bool) -> Result<u64, StoreError> {
        let mut sealed = 0;
        let mut heads: std::collections::BTreeMap<Uuid, ChainState> = std::collections::BTreeMap::new();
        // A read first: an empty queue costs no write transaction (on SQLite, the lock).
        let mut queued = !self.store.unsealed_chains().await?.is_empty();
        while queued {
            let batch = self.store.seal(SEAL_BATCH, &self.keys).await?;
            let mut this_pass = 0;
            for (head, count) in batch {
                this_pass += count;
                heads.insert(head.tenant, head);
            }
            sealed += this_pass;
            // A short batch emptied the queue: no second transaction to find that out.
            queued = this_pass == u64::from(SEAL_BATCH);
        }
        for head in heads.values() {
            self.checkpoint_if_due(head, force_checkpoint).await?;
        }
        if force_checkpoint {
            for head in self.store.chains(None).await? {
                self.checkpoint_if_due(&head, true).await?;
            }
        }
        Ok(sealed)
    }

    async fn checkpoint_if_due(&self, head: &ChainState, force: bool) -> Result<(), StoreError> {
        if head.last_seq <= head.anchor_seq {
            return Ok(());
        }
        let now = now_us();
        let interval = self.checkpoint_every.as_micros() as i64;
        let known = self.checkpointed.lock().ok().and_then(|seen| seen.get(&head.tenant).copied());
        if let Some((seq, at_us)) = known
            && (seq >= head.last_seq || (!force && now - at_us < interval))
        {
            return Ok(());
        }
        let last = self.store.last_checkpoint(head.tenant).await?;
        if let (Some(last), Ok(mut seen)) = (&last, self.checkpointed.lock()) {
            seen.insert(head.tenant, (last.seq, last.at_us));
        }
        let due = match last {
            None => true,
            Some(last) if last.seq >= head.last_seq => false,
            Some(last) => force || now - last.at_us >= interval,
        };
        if due {
            let checkpoint = self.keys.sign(head.tenant, head.last_seq, &head.last_hash, now);
            self.store.add_checkpoint(&checkpoint).await?;
            if let Ok(mut seen) = self.checkpointed.lock() {
                seen.insert(head.tenant, (checkpoint.seq, checkpoint.at_us));
            }
            // The log is a second witness: a copy outside the database.
            // Everything needed to check the signature with `guard audit key`'s key.
            tracing::info!(
                target: "guard::audit",
                tenant = %head.tenant,
                seq = head.last_seq,
                hash = %hex(&head.last_hash),
                at_us = checkpoint.at_us,
                key_id = %checkpoint.key_id,
                signature = %hex(&checkpoint.signature),
                "audit checkpoint signed"
            );
        }
        Ok(())
    }

    /// Seals what the process writes (woken by each write) and what other processes
    /// write (polled), until `stop` turns true (or its sender is gone); then seals what
    /// is left and signs each chain's end before returning, wherever in its loop the
    /// stop found it.
    pub async fn run_sealer(self, poll: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        // Every interval each grown chain's head is signed, even when the chain then
        // stays quiet: its newest records do not wait for the next write.
        let mut last_forced = tokio::time::Instant::now();
        loop {
            let force = last_forced.elapsed() >= self.checkpoint_every;
            if force {
                last_forced = tokio::time::Instant::now();
            }
            if let Err(e) = self.seal(force).await {
                tracing::warn!(error = %e, "cannot seal audit records");
            }
            // The stop may have come during that pass.
            if *stop.borrow() {
                break;
            }
            let stopped = tokio::select! {
                _ = self.wake.notified() => {
                    // Let the writes of a busy moment gather into one sealing pass:
                    // each pass costs the (SQLite) writer a transaction.
                    tokio::select! {
                        _ = tokio::time::sleep(SEAL_GATHER) => false,
                        _ = stop.changed() => true,
                    }
                }
                _ = tokio::time::sleep(poll) => false,
                _ = stop.changed() => true,
            };
            if stopped {
                break;
            }
        }
        self.seal_at_exit().await;
    }

    /// The last pass before the process exits: every queued record sealed and every
    /// grown chain's head signed, so the log does not end past its last checkpoint
    /// (the operations guide promises a checkpoint at shutdown). One retry, for a
    /// database busy with another process.
    async fn seal_at_exit(&self) {
        for attempt in 1..=2 {
            match self.seal(true).await {
                Ok(sealed) => {
                    tracing::info!(sealed, "audit chains sealed and signed at shutdown");
                    return;
                }
                Err(e) if attempt == 1 => {
                    tracing::warn!(error = %e, "cannot seal audit records at shutdown; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot seal audit records at shutdown: the next start's sealer signs the chains' ends"
                ),
            }
        }
    }

    /// Checks every record of one tenant's chain (`Some(PLATFORM)` for platform
    /// events) or of every chain: MACs, hash links, positions, checkpoints and the
    /// chain head. Seals pending records first so that they are covered.
    pub async fn verify(&self, tenant: Option<Uuid>) -> Result<VerifyReport, StoreError> {
        self.seal(false).await?;
        let mut chains = Vec::new();
        for chain in self.store.chains(tenant).await? {
            let mut report = self.verify_chain(&chain).await?;
            if report.broken.is_some() {
                // Retention may have moved the anchor while this chain was read: a
                // break seen against a stale anchor is checked again from the new one.
                let now = self.store.chains(Some(chain.tenant)).await?;
                if let Some(current) = now.first().filter(|c| c.anchor_seq != chain.anchor_seq) {
                    report = self.verify_chain(current).await?;
                }
            }
            chains.push(report);
        }
        let intact = chains.iter().all(|c| c.broken.is_none());
        let records = chains.iter().map(|c| c.records).sum();
        if !intact {
            metrics::counter!("guard_audit_verify_failures_total").increment(1);
        }
        Ok(VerifyReport { intact, records, chains, key_id: self.keys.key_id().to_owned() })
    }

    async fn verify_chain(&self, chain: &ChainState) -> Result<ChainReport, StoreError> {
        let tenant = chain.tenant;
        let mut report = ChainReport {
            tenant: (tenant != super::PLATFORM).then_some(tenant),
            records: 0,
            checkpoints: 0,
            first_seq: chain.anchor_seq + 1,
            last_seq: chain.last_seq,
            unsealed: 0,
            broken: None,
        };
        let checkpoints = self.store.checkpoints(tenant).await?;
        report.checkpoints = checkpoints.len() as u64;
        if let Some(bad) = checkpoints.iter().find(|c| !self.keys.signed(c)) {
            report.broken = Some(Broken {
                seq: Some(bad.seq),
                id: None,
                reason: format!(
                    "the checkpoint at seq {} does not carry guard's signature (key {})",
                    bad.seq,
                    self.keys.key_id()
                ),
            });
            return Ok(report);
        }
        if chain.anchor_seq > 0 && !checkpoints.iter().any(|c| c.seq == chain.anchor_seq && c.hash == chain.anchor_hash)
        {
            report.broken = Some(Broken {
                seq: Some(chain.anchor_seq),
                id: None,
                reason: format!(
                    "records up to seq {} are gone but no signed checkpoint vouches for where retention stopped",
                    chain.anchor_seq
                ),
            });
            return Ok(report);
        }
        // Retention never keeps less than a day: an anchor signed within the last day
        // means records were cut away that no retention allows yet.
        if let Some(anchor) = checkpoints.iter().find(|c| chain.anchor_seq > 0 && c.seq == chain.anchor_seq)
            && now_us() - anchor.at_us < 86_400_000_000
        {
            report.broken = Some(Broken {
                seq: Some(chain.anchor_seq),
                id: None,
                reason: format!(
                    "records up to seq {} are gone, cut at a checkpoint less than a day old: no retention deletes that soon",
                    chain.anchor_seq
                ),
            });
            return Ok(report);
        }
        let mut checkpoints = checkpoints.into_iter().filter(|c| c.seq > chain.anchor_seq).peekable();
        let mut previous = chain.anchor_hash.clone();
        let mut expected = chain.anchor_seq + 1;
        // Pages are read ahead, several at once: positions are gapless in an intact
        // chain, so page k starts after anchor + k pages. A gap shows up as a break
        // in the page holding it, before any overlap with the next could matter.
        let fetch = |after: i64| {
            let store = self.store.clone();
            tokio::spawn(async move { store.sealed_after(tenant, after, VERIFY_PAGE).await })
        };
        let page_start = |k: i64| chain.anchor_seq + k * i64::from(VERIFY_PAGE);
        let mut ahead: std::collections::VecDeque<_> = (0..VERIFY_READ_AHEAD).map(|k| fetch(page_start(k))).collect();
        let mut next_page = VERIFY_READ_AHEAD;
        // The head as last read: the sealer may move it while the chain is read.
        let mut head = chain.clone();
        loop {
            let Some(reading) = ahead.pop_front() else { break };
            let page = reading.await.map_err(|e| StoreError::Internal(format!("verification reader: {e}")))??;
            let full = page.len() == VERIFY_PAGE as usize;
            if full {
                ahead.push_back(fetch(page_start(next_page)));
                next_page += 1;
            } else {
                // The end as of this read: pages read ahead past it are stale.
                ahead.clear();
            }
            for record in &page {
                let seq = record.seq.unwrap_or(-1);
                let fail = |reason: String| Broken { seq: Some(seq), id: Some(record.id), reason };
                if seq > head.last_seq {
                    // Sealed since the head was read, or put there by hand: the head
                    // says which.
                    if let Some(now) = self.store.chains(Some(tenant)).await?.into_iter().next() {
                        head = now;
                    }
                    if seq > head.last_seq {
                        report.broken = Some(fail(format!(
                            "a record at seq {seq} lies beyond the chain head (seq {}): it was inserted",
                            head.last_seq
                        )));
                        return Ok(report);
                    }
                }
                if seq != expected {
                    let reason = if seq > expected {
                        format!("records at seq {expected}..{} are missing (deleted); the chain resumes here", seq - 1)
                    } else {
                        format!("a record at seq {seq} appears out of order")
                    };
                    report.broken = Some(fail(reason));
                    return Ok(report);
                }
                let content = content_bytes(record);
                if !self.keys.mac_matches(&content, &record.mac) {
                    report.broken = Some(fail("the record's content does not match its MAC: it was altered, or inserted by something other than guard".into()));
                    return Ok(report);
                }
                let hash = self.keys.link(&previous, seq, &content);
                if record.hash.as_deref() != Some(hash.as_slice()) {
                    report.broken = Some(fail(
                        "the record's hash does not follow from its predecessor's: the chain was altered here".into(),
                    ));
                    return Ok(report);
                }
                while let Some(checkpoint) = checkpoints.next_if(|c| c.seq <= seq) {
                    if checkpoint.seq < seq || checkpoint.hash != hash {
                        report.broken = Some(Broken {
                            seq: Some(checkpoint.seq),
                            id: Some(record.id),
                            reason: format!(
                                "the signed checkpoint at seq {} disagrees with the records",
                                checkpoint.seq
                            ),
                        });
                        return Ok(report);
                    }
                }
                previous = hash;
                expected += 1;
                report.records += 1;
            }
            // A head that moved on while the last pages were read: read on to it.
            if ahead.is_empty() && !full && expected - 1 < head.last_seq && !page.is_empty() {
                ahead.push_back(fetch(expected - 1));
            }
        }
        let chain = &head;
        let last = expected - 1;
        if last != chain.last_seq || (last > chain.anchor_seq && previous != chain.last_hash) {
            report.broken = Some(Broken {
                seq: Some(last + 1),
                id: None,
                reason: format!(
                    "the records end at seq {last} but the chain head is at seq {}: records were removed from the end",
                    chain.last_seq
                ),
            });
            return Ok(report);
        }
        if let Some(checkpoint) = checkpoints.next() {
            report.broken = Some(Broken {
                seq: Some(checkpoint.seq),
                id: None,
                reason: format!(
                    "a signed checkpoint names seq {} but the records end at seq {last}: records were removed from the end",
                    checkpoint.seq
                ),
            });
            return Ok(report);
        }
        for record in self.store.unsealed(tenant, 10_000).await? {
            report.unsealed += 1;
            if !self.keys.mac_matches(&content_bytes(&record), &record.mac) {
                report.broken = Some(Broken {
                    seq: None,
                    id: Some(record.id),
                    reason: "an unsealed record does not match its MAC: it was altered, or inserted by something other than guard".into(),
                });
                return Ok(report);
            }
        }
        Ok(report)
    }

    /// One page of the records `filter` selects, after sealing what is queued, so
    /// that a query sees every event committed before it.
    pub async fn query(&self, filter: &AuditFilter) -> Result<AuditPage, StoreError> {
        self.seal(false).await?;
        let mut records = self.store.query(filter).await?;
        if records.len() <= filter.limit as usize {
            return Ok(AuditPage { records, next: None, next_position: None });
        }
        records.truncate(filter.limit as usize);
        let last = records.last();
        let next = last.map(|r| Cursor { at_us: r.at_us, id: r.id });
        let next_position = last
            .filter(|_| filter.order == super::model::Order::Chain)
            .and_then(|r| Some(super::model::ChainPosition { tenant: r.tenant, seq: r.seq? }));
        Ok(AuditPage { records, next, next_position })
    }

    /// Retention: for each chain, drops the records covered by the latest checkpoint
    /// older than the chain's retention (`retention(tenant)`); returns how many went.
    /// The checkpoint becomes the chain's anchor, so what remains still verifies.
    /// Records not yet delivered to each sink of `held_for` are kept whatever their
    /// age: a chain is cut no further than the position every such sink has reached
    /// (nowhere, for a sink that has not started).
    pub async fn prune(&self, retention: impl Fn(Uuid) -> Duration, held_for: &[String]) -> Result<u64, StoreError> {
        let mut pruned = 0;
        let mut delivered = Vec::with_capacity(held_for.len());
        for sink in held_for {
            delivered.push(self.store.delivered(sink).await?);
        }
        for chain in self.store.chains(None).await? {
            let cutoff = now_us() - retention(chain.tenant).as_micros() as i64;
            let held_at = delivered
                .iter()
                .map(|positions| positions.iter().find(|(t, _)| *t == chain.tenant).map_or(0, |(_, seq)| *seq))
                .min()
                .unwrap_or(i64::MAX);
            let anchor = self
                .store
                .checkpoints(chain.tenant)
                .await?
                .into_iter()
                .filter(|c| c.at_us < cutoff && c.seq > chain.anchor_seq && c.seq <= held_at && self.keys.signed(c))
                .max_by_key(|c| c.seq);
            if let Some(anchor) = anchor {
                pruned += self.store.prune(&anchor).await?;
            }
        }
        if pruned > 0 {
            metrics::counter!("guard_audit_pruned_total").increment(pruned);
        }
        Ok(pruned)
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

#[async_trait]
impl EventSink for AuditLog {
    async fn emit(&self, event: Event) {
        let record = self.record(&event);
        match self.group_commit.append(&self.store, record.clone()).await {
            Ok(()) => self.committed(&record),
            Err(e) => {
                metrics::counter!("guard_audit_write_failures_total").increment(1);
                tracing::error!(error = %e, event = event.kind, "cannot store an audit event");
            }
        }
    }
}
