//! Wire types shared by guard's server, its typed client and the CLI: the RFC 9457
//! problem document with guard's stable error codes, and the health report shapes.

pub mod health;
pub mod problem;

pub use problem::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
