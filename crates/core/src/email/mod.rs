//! Email: templates rendered when a message is queued, a durable outbox in the
//! database, and a background sender delivering it over SMTP with retries, so a
//! restart loses no mail. Also the single-use tokens that emails carry.

mod sender;
mod store;
mod templates;

pub use sender::{OutboxSender, SendError, SmtpMailer};
pub use store::{EmailStore, EmailTokenPurpose, NewEmailToken, OutboxMessage};
pub use templates::{Rendered, Template, Templates};
