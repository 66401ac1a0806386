//! guard's domain layer: typed configuration, the storage traits every backend
//! implements, and the domain errors the API maps to problem documents.
//!
//! Nothing here knows about HTTP or SQL; the `store` crate implements the traits for
//! SQLite and PostgreSQL and the `api` crate serves them.

pub mod accounts;
pub mod audit;
pub mod authz;
pub mod backup;
pub mod config;
pub mod email;
pub mod events;
pub mod keys;
pub mod mfa;
pub mod net;
mod newtype;
pub mod passwords;
pub mod ratelimit;
pub mod risk;
pub mod secret;
pub mod secret_gen;
pub mod security;
pub mod sessions;
pub mod store;
pub mod tenants;
pub mod users;

pub use config::Config;
pub use secret::Secret;

/// The current time to the microsecond: what PostgreSQL stores, so a value written on
/// SQLite survives a move between backends unchanged.
pub fn stored_now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}
