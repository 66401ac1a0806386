//! guard's integration tests. They live in one test binary on purpose: each extra
//! binary is another link step, the slowest part of a build on a small machine.
//! Add a module here rather than a file under tests/.

// A test binary: helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account_control;
mod audit;
mod auth;
mod authz;
mod authz_scale;
mod backup;
mod cli;
mod debug;
mod errors;
mod hardening;
mod health;
mod hostile_input;
mod identity;
mod limits;
mod logs;
mod metrics;
mod mfa;
mod migrations;
mod observability;
mod outage;
mod passkeys;
mod risk;
mod shutdown;
mod support;
mod tenants;
mod tls;
mod users;
mod walk;
