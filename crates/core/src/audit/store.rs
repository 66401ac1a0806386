//! What the audit log needs from a database.

use async_trait::async_trait;
use uuid::Uuid;

use super::model::{AuditFilter, AuditRecord, ChainState, Checkpoint};
use crate::store::StoreError;

/// Storage of audit records, chains and checkpoints.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends records (with their MACs) in one transaction of their own, for events
    /// that record no change of their own.
    async fn append(&self, records: &[AuditRecord]) -> Result<(), StoreError>;

    /// The chains that have unsealed records.
    async fn unsealed_chains(&self) -> Result<Vec<Uuid>, StoreError>;

    /// Links up to `limit` queued records, oldest first, into their tenants' chains
    /// and moves them to the log, in one transaction that holds the sealer lock (one
    /// sealer at a time across replicas); returns each touched chain's new head and
    /// how many of its records were sealed (nothing when the queue was empty).
    async fn seal(&self, limit: u32, keys: &super::AuditKeys) -> Result<Vec<(ChainState, u64)>, StoreError>;

    /// Every chain's head and anchor, or one tenant's.
    async fn chains(&self, tenant: Option<Uuid>) -> Result<Vec<ChainState>, StoreError>;

    /// Up to `limit` sealed records of `tenant` with seq above `after_seq`, in order.
    async fn sealed_after(&self, tenant: Uuid, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// The tenant's unsealed records (which verification cannot yet cover).
    async fn unsealed(&self, tenant: Uuid, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// The tenant's checkpoints, by seq.
    async fn checkpoints(&self, tenant: Uuid) -> Result<Vec<Checkpoint>, StoreError>;

    /// The tenant's latest checkpoint.
    async fn last_checkpoint(&self, tenant: Uuid) -> Result<Option<Checkpoint>, StoreError>;

    /// Stores a checkpoint; an existing one at the same seq is kept.
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// The records `filter` selects, one page (`limit` + 1 fetched to know whether
    /// there are more).
    async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;

    /// Retention: moves the chain's anchor to `anchor` (a checkpoint), then deletes the
    /// records and older checkpoints it covers; returns how many records went.
    async fn prune(&self, anchor: &Checkpoint) -> Result<u64, StoreError>;

    /// Takes (or renews) the lease `name` for `holder` for `ttl`; false while another
    /// holder's lease is running.
    async fn take_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;

    /// Gives up `holder`'s lease `name` (at shutdown), so another replica need not wait.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Each chain's last delivered seq for `sink`.
    async fn delivered(&self, sink: &str) -> Result<Vec<(Uuid, i64)>, StoreError>;

    /// Records that `sink` has `tenant`'s chain up to `seq`.
    async fn set_delivered(&self, sink: &str, tenant: Uuid, seq: i64) -> Result<(), StoreError>;
}
