//! Server-side sessions: an opaque random token in the client's hands, only its
//! SHA-256 hash in the database, absolute and idle expiry from the tenant's settings.

mod cache;
mod model;
mod rotation;
pub(crate) mod service;
mod store;
mod token;

pub use cache::{MemorySessionCache, SessionCache};
pub use model::{
    ClientInfo, NewSession, RefreshOutcome, RefreshRotation, RevokedSession, Session, SessionId, SessionScope,
};
pub use service::{
    AuthError, AuthParts, AuthService, Authenticated, IssuedTokens, LoginOutcome, LoginSuccess, PendingLogin,
};
pub use store::SessionStore;
pub use token::{SessionToken, TokenHash};
