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

/// PostgreSQL's "data exception" class (SQLSTATE 22xxx: a NUL in text, a value out of
/// range, a malformed literal): what the request sent, not a fault of guard. SQLite's
/// codes are numbers of at most four digits, so never match.
fn is_data_exception(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.len() == 5 && c.starts_with("22"))
}

/// Maps errors that mean "cannot talk to the database" to `Unavailable`, data the
/// database refuses to `InvalidData`, and the rest to `Internal`, keeping the
/// unique-key violation as `Conflict` on both backends.
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        sqlx::Error::Database(db) if is_data_exception(db.code().as_deref()) => {
            StoreError::InvalidData(db.message().to_owned())
        }
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A database error with a given SQLSTATE, as a driver would report it.
    #[derive(Debug)]
    struct Refused(&'static str);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused with {}", self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl DatabaseError for Refused {
        fn message(&self) -> &str {
            "invalid byte sequence for encoding \"UTF8\": 0x00"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    #[test]
    fn postgres_data_exceptions_are_invalid_data_and_other_refusals_are_internal() {
        for code in ["22021", "22P02", "22001", "22003"] {
            let e = from_sqlx(sqlx::Error::Database(Box::new(Refused(code))));
            assert!(matches!(e, StoreError::InvalidData(_)), "{code}: {e:?}");
        }
        // SQLite's SQLITE_NOLFS is 22, and a syntax error (42601) is guard's own fault.
        for code in ["22", "42601", "2067"] {
            let e = from_sqlx(sqlx::Error::Database(Box::new(Refused(code))));
            assert!(matches!(e, StoreError::Internal(_)), "{code}: {e:?}");
        }
    }
}
