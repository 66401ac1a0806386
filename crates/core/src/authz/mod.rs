//! Authorization with Cedar: each tenant's versioned policy set and optional schema,
//! its stored entities, the groups and roles guard's users carry into Cedar, and the
//! decision engine that answers applications and guards guard's own administration.
//!
//! A tenant's compiled policies ([`engine::TenantEngine`]) are immutable and replaced
//! whole when the policies change; each decision loads the stored entities it needs
//! ([`slice`]) through a bounded cache keyed by the tenant's entity version. Every
//! process polls `authz_state` for changes made elsewhere.

pub mod builtin;
pub mod compile;
pub mod engine;
pub mod model;
pub mod service;
pub mod slice;
pub mod stats;
pub mod store;

pub use engine::{Decision, DecisionInput, TenantEngine};
pub use model::{AuthzError, AuthzState, Group, Issue, PolicySnapshot, PolicyVersion, Role, UserFacts};
pub use service::{Authz, AuthzSettings};
pub use store::AuthzStore;
