//! Passwords: the policy a new password must meet, and Argon2id hashing on a bounded
//! pool of blocking threads.

mod hasher;
mod policy;

pub use hasher::{HashError, HashParams, PasswordHasher, Verification};
pub use policy::{PasswordContext, PasswordPolicy, PasswordRejection, is_common_password};
