//! A string that must never reach a log line or a printed configuration.

use std::fmt;

/// A secret value. `Debug` and `Display` print a redacted form; `expose` is the only
/// way to the real text, so every use of it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret text itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A form safe to print: connection URLs keep everything but their password
    /// (and password-like query parameters); anything else is replaced entirely.
    pub fn redacted(&self) -> String {
        redact_url(&self.0).unwrap_or_else(|| "[redacted]".to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

const MASK: &str = "***";

fn redact_url(raw: &str) -> Option<String> {
    // SQLite URLs name a file and carry no credentials.
    if raw.starts_with("sqlite:") {
        return Some(raw.to_owned());
    }
    let mut url = url::Url::parse(raw).ok()?;
    if !url.has_host() {
        return None;
    }
    if url.password().is_some() {
        url.set_password(Some(MASK)).ok()?;
    }
    let sensitive = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.contains("password") || k.contains("secret") || k.contains("token") || k == "sslkey"
    };
    if url.query_pairs().any(|(k, _)| sensitive(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if sensitive(&k) { MASK.to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_masked_and_the_rest_kept() {
        let s = Secret::new("postgres://guard:hunter2@db.internal:5432/guard?sslmode=require");
        let shown = s.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "postgres://guard:***@db.internal:5432/guard?sslmode=require");
    }

    #[test]
    fn password_query_parameters_are_masked() {
        let s = Secret::new("redis://cache:6379/0?password=hunter2&db=1");
        let shown = s.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db=1"));
    }

    #[test]
    fn non_url_secrets_are_hidden_entirely_and_debug_never_shows_them() {
        let s = Secret::new("hunter2");
        assert_eq!(s.redacted(), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn sqlite_urls_are_shown_as_they_are() {
        let s = Secret::new("sqlite://./data/guard.db");
        assert_eq!(s.redacted(), "sqlite://./data/guard.db");
    }
}
