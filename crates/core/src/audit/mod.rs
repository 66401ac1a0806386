//! The audit log: every security-relevant event, stored with a MAC under a key
//! derived from the master key, then linked into a per-tenant SHA-256 hash chain with
//! periodic Ed25519-signed checkpoints, so that editing, inserting, deleting or
//! truncating records is detected by [`AuditLog::verify`].
//!
//! An event that records a change is written by the store in the transaction of that
//! change ([`AuditRecord`] is passed to the store method); other events go through
//! [`EventSink::emit`](crate::events::EventSink::emit). A sealer gives records their
//! place in the chain shortly after they commit, so concurrent writers on several
//! replicas never contend for the chain head inside a request.

mod batch;
mod chain;
mod delivery;
mod model;
mod service;
mod store;
mod when;

pub use chain::{AuditKeys, content_bytes};
pub use delivery::{Deliverer, DeliveryStart, Sink};
pub use model::{
    AuditFilter, AuditPage, AuditRecord, ChainPosition, ChainState, Checkpoint, Cursor, InvalidParam, Order, PLATFORM,
    QueryParams, REQUEST, RequestContext, ResultFilter, type_pattern,
};
pub use service::{AuditLog, Broken, ChainReport, MAX_PAGE, VerifyReport};
pub use store::AuditStore;
pub use when::parse_time;
