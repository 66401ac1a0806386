//! Users: the accounts of a tenant.

mod model;
mod service;
mod store;

pub use model::{DisplayName, Email, NewUser, User, UserId, UserStatus, Username};
pub use service::{CreatedUser, UserError, UserService};
pub use store::{UserFilter, UserPage, UserStore};
