//! Users: the accounts of a tenant.

mod model;
mod service;
mod store;

pub use model::{ADMIN_ROLE, DisplayName, Email, NewUser, User, UserId, UserStatus, Username};
pub use service::{CreatedUser, NewAccount, UserError, UserService, UserUpdate};
pub use store::{UserChange, UserFilter, UserPage, UserStore};
