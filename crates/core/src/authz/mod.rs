//! Authorization with Cedar: each tenant's versioned policy set and optional schema,
//! its stored entities, the groups and roles guard's users carry into Cedar, and the
//! decision engine that answers applications and guards guard's own administration.
//!
//! A tenant's compiled state ([`engine::TenantEngine`]) is immutable and replaced
//! whole when anything it was built from changes, so a decision never sees half an
//! update. Every process polls `authz_state` for changes made elsewhere.

pub mod builtin;
pub mod compile;
pub mod engine;
pub mod model;
pub mod service;
pub mod stats;
pub mod store;

pub use engine::{Decision, DecisionInput, TenantEngine};
pub use model::{AuthzError, AuthzState, Group, Issue, PolicySnapshot, PolicyVersion, Role, UserFacts};
pub use service::{Authz, AuthzSettings};
pub use store::AuthzStore;
