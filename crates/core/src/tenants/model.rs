//! Tenant types. Values are parsed once at the edge (`TenantSlug::parse`, …) so the
//! rest of guard only ever sees valid ones.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::newtype::{short_text, string_newtype};

/// A tenant's id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

impl TenantId {
    /// A new, time-ordered id.
    pub fn generate() -> TenantId {
        TenantId(Uuid::now_v7())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant's short name, used in X-Tenant-ID and in URLs: 2 to 63 characters of
/// lower-case letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantSlug(String);

/// Slugs kept for guard's own paths.
const RESERVED_SLUGS: &[&str] = &["admin", "api", "health", "metrics", "v1", "well-known", "static", "assets"];

impl TenantSlug {
    /// The slug of the tenant every installation has.
    pub const DEFAULT: &'static str = "default";

    /// Checks `text` is a valid slug.
    pub fn parse(text: &str) -> Result<TenantSlug, String> {
        let ok_chars = text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(2..=63).contains(&text.len()) || !ok_chars || text.starts_with('-') || text.ends_with('-') {
            return Err(format!(
                "{text:?} is not a valid tenant slug: use 2 to 63 lower-case letters, digits and hyphens, \
                 not starting or ending with a hyphen"
            ));
        }
        if RESERVED_SLUGS.contains(&text) {
            return Err(format!("{text:?} is reserved; choose another tenant slug"));
        }
        Ok(TenantSlug(text.to_owned()))
    }

    /// A slug made from a display name ("Acme Corp." -> "acme-corp").
    pub fn from_name(name: &TenantName) -> Result<TenantSlug, String> {
        let mut slug = String::new();
        for c in name.as_str().chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') && !slug.is_empty() {
                slug.push('-');
            }
        }
        let slug = slug.trim_end_matches('-');
        let slug = &slug[..slug.len().min(63)];
        TenantSlug::parse(slug.trim_end_matches('-'))
            .map_err(|_| format!("cannot derive a tenant slug from the name {:?}; give one with --slug", name.as_str()))
    }
}

/// A tenant's display name: 1 to 200 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    /// Checks and trims `text`.
    pub fn parse(text: &str) -> Result<TenantName, String> {
        short_text(text).map(TenantName).ok_or_else(|| {
            format!("{text:?} is not a valid tenant name: use 1 to 200 characters without control characters")
        })
    }
}

string_newtype!(TenantSlug);
string_newtype!(TenantName);

/// Whether a tenant accepts sign-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Disabled,
}

impl TenantStatus {
    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Disabled => "disabled",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<TenantStatus> {
        match text {
            "active" => Some(TenantStatus::Active),
            "disabled" => Some(TenantStatus::Disabled),
            _ => None,
        }
    }
}

/// Per-tenant policy. Defaults follow NIST SP 800-63B for passwords and Keycloak's
/// defaults for session lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// Shortest password accepted (8 to 64).
    pub password_min_length: u32,
    /// Longest password accepted (64 to 1024).
    pub password_max_length: u32,
    /// A session ends this long after sign-in, whatever its use (seconds).
    pub session_absolute_lifetime_seconds: u64,
    /// A session ends after this long unused (seconds).
    pub session_idle_timeout_seconds: u64,
    /// New users must verify their email before they can sign in.
    pub email_verification_required: bool,
    /// Browser origins allowed to call guard for this tenant (`https://app.example.com`).
    pub allowed_origins: Vec<String>,
    /// Lifetime of access tokens (seconds); refresh tokens renew them.
    pub access_token_lifetime_seconds: u64,
    /// The `aud` claim of access tokens.
    pub access_token_audience: String,
    /// Every user must sign in with a second factor; one without must enrol.
    pub mfa_required: bool,
    /// When MFA becomes required for a user without a factor, how long they may still
    /// sign in without one, counted from their first sign-in under the requirement
    /// (seconds; 0: enrol at once).
    pub mfa_enrollment_grace_seconds: u64,
    /// TOTP codes of this many 30-second steps before or after now are accepted (0 to 2).
    pub totp_skew_steps: u8,
    /// WebAuthn relying party id: the domain passkeys are bound to. Unset: the host of
    /// GUARD_PUBLIC_URL.
    pub webauthn_rp_id: Option<String>,
    /// Origins whose pages may register and use passkeys (`https://app.example.com`),
    /// each within the relying party id. Empty: GUARD_PUBLIC_URL.
    pub webauthn_origins: Vec<String>,
    /// A sign-in whose risk score reaches this must pass a second factor (1 to 100).
    /// Unset: the score is recorded only.
    pub risk_mfa_threshold: Option<u8>,
    /// A sign-in whose risk score reaches this is refused (1 to 100). Unset: never.
    pub risk_deny_threshold: Option<u8>,
    /// Rate limits of this tenant by action (`login`, `signup`, `mfa_verify`,
    /// `password_reset`), written `LIMIT/WINDOW[,burst=N]`; unnamed actions keep the
    /// installation's.
    pub rate_limits: std::collections::BTreeMap<String, String>,
    /// Days audit events are kept (1 to 3650). Unset: the installation's AUDIT_RETENTION.
    pub audit_retention_days: Option<u32>,
}

impl Default for TenantSettings {
    fn default() -> TenantSettings {
        TenantSettings {
            password_min_length: 8,
            password_max_length: 128,
            session_absolute_lifetime_seconds: 10 * 3600,
            session_idle_timeout_seconds: 30 * 60,
            email_verification_required: false,
            allowed_origins: Vec::new(),
            access_token_lifetime_seconds: 15 * 60,
            access_token_audience: "guard".to_owned(),
            mfa_required: false,
            mfa_enrollment_grace_seconds: 7 * 24 * 3600,
            totp_skew_steps: 1,
            webauthn_rp_id: None,
            webauthn_origins: Vec::new(),
            risk_mfa_threshold: None,
            risk_deny_threshold: None,
            rate_limits: std::collections::BTreeMap::new(),
            audit_retention_days: None,
        }
    }
}

impl TenantSettings {
    /// Every reason these settings are not acceptable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(8..=64).contains(&self.password_min_length) {
            problems.push("password_min_length must be from 8 to 64".to_owned());
        }
        if !(64..=1024).contains(&self.password_max_length) {
            problems.push("password_max_length must be from 64 to 1024".to_owned());
        }
        if !(60..=366 * 24 * 3600).contains(&self.session_absolute_lifetime_seconds) {
            problems.push("session_absolute_lifetime_seconds must be from 60 to 31622400".to_owned());
        }
        if self.session_idle_timeout_seconds < 60
            || self.session_idle_timeout_seconds > self.session_absolute_lifetime_seconds
        {
            problems
                .push("session_idle_timeout_seconds must be at least 60 and at most the absolute lifetime".to_owned());
        }
        if !(60..=24 * 3600).contains(&self.access_token_lifetime_seconds) {
            problems.push("access_token_lifetime_seconds must be from 60 to 86400".to_owned());
        }
        let audience = &self.access_token_audience;
        if audience.is_empty() || audience.len() > 200 || audience.chars().any(char::is_control) {
            problems.push("access_token_audience must be 1 to 200 characters".to_owned());
        }
        if self.mfa_enrollment_grace_seconds > 366 * 24 * 3600 {
            problems.push("mfa_enrollment_grace_seconds must be at most 31622400".to_owned());
        }
        if self.totp_skew_steps > 2 {
            problems.push("totp_skew_steps must be from 0 to 2".to_owned());
        }
        for origin in &self.allowed_origins {
            if !is_origin(origin) {
                problems.push(format!("{origin:?} is not an origin (scheme://host[:port], no path)"));
            }
        }
        self.webauthn_problems(&mut problems);
        for (action, rule) in &self.rate_limits {
            let known = crate::ratelimit::Action::parse(action).is_some_and(|a| a != crate::ratelimit::Action::Api);
            if !known {
                problems.push(format!(
                    "rate_limits: {action:?} is not an action (login, signup, mfa_verify, password_reset)"
                ));
            } else if crate::ratelimit::Rule::parse(rule).is_none() {
                problems.push(format!(
                    "rate_limits.{action}: {rule:?} is not LIMIT/WINDOW[,burst=N], such as 10/1m,burst=5"
                ));
            }
        }
        for (name, threshold) in
            [("risk_mfa_threshold", self.risk_mfa_threshold), ("risk_deny_threshold", self.risk_deny_threshold)]
        {
            if threshold.is_some_and(|t| !(1..=100).contains(&t)) {
                problems.push(format!("{name} must be from 1 to 100, or null"));
            }
        }
        if self.audit_retention_days.is_some_and(|d| !(1..=3650).contains(&d)) {
            problems.push("audit_retention_days must be from 1 to 3650, or null".to_owned());
        }
        problems
    }

    fn webauthn_problems(&self, problems: &mut Vec<String>) {
        let rp_id = self.webauthn_rp_id.as_deref();
        if let Some(rp_id) = rp_id {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            if rp_id.len() > 253 || !rp_id.split('.').all(label_ok) || rp_id.parse::<std::net::IpAddr>().is_ok() {
                problems.push(format!("webauthn_rp_id {rp_id:?} is not a lower-case domain name"));
            }
        }
        for origin in &self.webauthn_origins {
            let host = url::Url::parse(origin).ok().and_then(|u| u.domain().map(str::to_owned));
            let within = |host: &str| rp_id.is_none_or(|rp| host == rp || host.ends_with(&format!(".{rp}")));
            if !is_origin(origin) || !host.as_deref().is_some_and(within) {
                problems.push(format!(
                    "webauthn_origins: {origin:?} is not an origin (scheme://host[:port]) whose host is the \
                     relying party id or under it"
                ));
            }
        }
        if rp_id.is_some() && self.webauthn_origins.is_empty() {
            problems.push("webauthn_rp_id needs webauthn_origins: the origins of the pages using it".to_owned());
        }
    }
}

fn is_origin(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.has_host()
            && u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && !text.ends_with('/')
    })
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: TenantName,
    pub status: TenantStatus,
    pub settings: TenantSettings,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What creating a tenant needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub slug: TenantSlug,
    pub name: TenantName,
    pub settings: TenantSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lower_case_words_and_refuse_the_rest() {
        for ok in ["acme", "acme-corp", "a1", "default"] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "-acme", "acme-", "Acme", "acme corp", "acme_corp", "admin", &"a".repeat(64)] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_derive_from_names() {
        let slug = |name: &str| TenantSlug::from_name(&TenantName::parse(name).unwrap()).map(|s| s.0);
        assert_eq!(slug("Acme Corp.").unwrap(), "acme-corp");
        assert_eq!(slug("  Élan  Vital -- 2 ").unwrap(), "lan-vital-2");
        assert!(slug("!!!").is_err());
        assert!(slug("Admin").is_err(), "reserved");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(TenantName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse("a\u{0}b").is_err());
        assert!(TenantName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn default_settings_are_valid_and_bad_ones_are_each_named() {
        assert!(TenantSettings::default().problems().is_empty());
        let bad = TenantSettings {
            password_min_length: 4,
            password_max_length: 32,
            session_absolute_lifetime_seconds: 30,
            session_idle_timeout_seconds: 10,
            email_verification_required: true,
            allowed_origins: vec!["https://app.example.com".into(), "https://app.example.com/path".into(), "*".into()],
            access_token_lifetime_seconds: 10,
            access_token_audience: String::new(),
            mfa_required: true,
            mfa_enrollment_grace_seconds: 400 * 24 * 3600,
            totp_skew_steps: 3,
            webauthn_rp_id: Some("Example.com".into()),
            webauthn_origins: vec!["https://login.example.org".into()],
            risk_mfa_threshold: Some(0),
            risk_deny_threshold: Some(101),
            rate_limits: [("login".into(), "many".into()), ("logins".into(), "10/1m".into())].into(),
            audit_retention_days: Some(0),
        };
        assert_eq!(bad.problems().len(), 17, "{:?}", bad.problems());
        let passkeys = TenantSettings {
            webauthn_rp_id: Some("example.com".into()),
            webauthn_origins: vec!["https://example.com".into(), "https://login.example.com:8443".into()],
            ..TenantSettings::default()
        };
        assert!(passkeys.problems().is_empty(), "{:?}", passkeys.problems());
    }

    #[test]
    fn settings_reject_unknown_members() {
        let err = serde_json::from_str::<TenantSettings>(r#"{"password_min_lenght": 10}"#).unwrap_err();
        assert!(err.to_string().contains("password_min_lenght"), "{err}");
        let partial: TenantSettings = serde_json::from_str(r#"{"password_min_length": 12}"#).unwrap();
        assert_eq!(partial.password_min_length, 12);
        assert_eq!(partial.password_max_length, 128);
    }
}
