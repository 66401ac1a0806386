//! Token signing keys: one active key per tenant, private parts encrypted at rest
//! under the master key, public parts published as a JWKS. Retired keys stay
//! published for [`RETIRED_KEYS_PUBLISHED_FOR`] so tokens they signed live out their
//! lifetime.

mod master;
mod model;
mod service;
mod store;

pub use master::{MasterKey, MasterKeyError};
pub use model::{KeyId, KeyStatus, NewSigningKey, RETIRED_KEYS_PUBLISHED_FOR, SigningAlgorithm, SigningKey};
pub use service::{AccessClaims, KeyError, KeyService, TokenService};
pub use store::KeyStore;
