//! Server-side sessions: an opaque random token in the client's hands, only its
//! SHA-256 hash in the database, absolute and idle expiry from the tenant's settings.

mod model;
mod service;
mod store;
mod token;

pub use model::{ClientInfo, NewSession, Session, SessionId};
pub use service::{AuthError, AuthService, Authenticated, LoginSuccess};
pub use store::SessionStore;
pub use token::{SessionToken, TokenHash};
