//! Turning sqlx errors into store errors whose text is safe to show.

use guard_core::store::StoreError;

/// Why the database could not be reached, in words that carry no credentials or
/// server internals.
pub(crate) fn unavailable_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
        sqlx::Error::PoolClosed => "the connection pool is closed".into(),
        sqlx::Error::Io(io) => format!("cannot reach the database: {}", io.kind()),
        sqlx::Error::Tls(_) => "TLS handshake with the database failed".into(),
        sqlx::Error::Protocol(_) => "the database closed the connection or broke protocol".into(),
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("the database refused the query (SQLSTATE {code})"),
            None => "the database refused the query".into(),
        },
        sqlx::Error::WorkerCrashed => "the database worker stopped".into(),
        _ => "unexpected database error".into(),
    }
}

/// Maps errors that mean "cannot talk to the database" to `Unavailable` and the rest
/// to `Internal`, keeping the unique-key violation as `Conflict` on both backends.
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(unavailable_reason(&e)),
        _ => StoreError::Internal(e.to_string()),
    }
}
