//! Test support for guard: [`TestApp`] runs the real server on a random port against
//! a fresh database (a temporary SQLite file, or a PostgreSQL database created for the
//! test and dropped after it), [`TcpProxy`] simulates a dependency going down, and
//! [`GuardCommand`] runs the `guard` binary itself.
//!
//! PostgreSQL and Redis are used when reachable at their local defaults (or
//! GUARD_TEST_DATABASE_URL / GUARD_TEST_REDIS_URL). When they are not, a test prints
//! why it skips — unless GUARD_TEST_REQUIRE_SERVICES=1 or CI is set, where an
//! unreachable service is a failure.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support fails loudly

mod app;
mod command;
mod proxy;
mod services;
mod sink;
mod smtp;
mod syslog;
mod webauthn;

pub use app::{Backend, TestApp, TestAppBuilder};
pub use command::{GuardCommand, GuardProcess};
pub use proxy::TcpProxy;
pub use services::{PostgresDatabase, postgres_admin_url, redis_url, services_required};
pub use smtp::{SmtpSink, first_link};
pub use syslog::SyslogSink;
pub use webauthn::SoftAuthenticator;

/// Runs an async test body once per database backend, as `NAME::sqlite` and
/// `NAME::postgres`, with `$backend` bound to the [`Backend`].
#[macro_export]
macro_rules! backend_test {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $backend = $crate::Backend::Sqlite;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $backend = $crate::Backend::Postgres;
                $body
            }
        }
    };
}

/// A fixed master key for tests (never for a real deployment).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";
