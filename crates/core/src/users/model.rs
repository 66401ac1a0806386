//! User types, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::newtype::{short_text, string_newtype};
use crate::tenants::TenantId;

/// A user's id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    /// A new, time-ordered id.
    pub fn generate() -> UserId {
        UserId(Uuid::now_v7())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, normalised to lower case and trimmed, so `Ada@Example.com` and
/// `ada@example.com` are one account. Checked for shape only; ownership is proved by
/// the verification email.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Normalises and checks `text`.
    pub fn parse(text: &str) -> Result<Email, String> {
        let email = text.trim().to_lowercase();
        let invalid = || format!("{text:?} is not a valid email address");
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.len() <= 253
            && domain.contains('.')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..")
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c));
        if email.len() > 254 || !domain_ok || !local_ok {
            return Err(invalid());
        }
        Ok(Email(email))
    }
}

/// An optional sign-in name: 3 to 64 lower-case letters, digits, `.`, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Lower-cases and checks `text`.
    pub fn parse(text: &str) -> Result<Username, String> {
        let name = text.trim().to_lowercase();
        let ok = (3..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok {
            return Err(format!("{text:?} is not a valid user name: use 3 to 64 letters, digits, '.', '_' or '-'"));
        }
        Ok(Username(name))
    }
}

/// A name to show: 1 to 200 characters without control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and checks `text`.
    pub fn parse(text: &str) -> Result<DisplayName, String> {
        short_text(text)
            .map(DisplayName)
            .ok_or_else(|| format!("{text:?} is not a valid display name: use 1 to 200 characters"))
    }
}

string_newtype!(Email);
string_newtype!(Username);
string_newtype!(DisplayName);

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Disabled,
    Locked,
    PendingVerification,
}

impl UserStatus {
    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
            UserStatus::Locked => "locked",
            UserStatus::PendingVerification => "pending_verification",
        }
    }

    /// The status written `text`.
    pub fn parse(text: &str) -> Option<UserStatus> {
        [UserStatus::Active, UserStatus::Disabled, UserStatus::Locked, UserStatus::PendingVerification]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The role that lets a user administer their tenant (and, in the default tenant,
/// every tenant).
pub const ADMIN_ROLE: &str = "admin";

/// A user as stored (without credentials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub tenant: TenantId,
    pub email: Email,
    pub username: Option<Username>,
    pub display_name: Option<DisplayName>,
    pub status: UserStatus,
    /// The user must choose a new password at the next sign-in.
    pub password_change_required: bool,
    pub roles: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
}

impl User {
    /// True when the user administers their tenant.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }
}

/// What creating a user stores.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub id: UserId,
    pub tenant: TenantId,
    pub email: Email,
    pub username: Option<Username>,
    pub display_name: Option<DisplayName>,
    pub status: UserStatus,
    /// PHC string of the password hash; `None` for a user who has not set one yet.
    pub password_hash: Option<String>,
    pub password_change_required: bool,
    pub roles: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked_for_shape() {
        assert_eq!(Email::parse("  Ada.Lovelace@Example.COM ").unwrap().as_str(), "ada.lovelace@example.com");
        assert!(Email::parse("ada+guard@example.co.uk").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@-x.com",
            "ada..x@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_and_display_names_are_checked() {
        assert_eq!(Username::parse("Ada_L").unwrap().as_str(), "ada_l");
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("ada lovelace").is_err());
        assert_eq!(DisplayName::parse(" Ada Lovelace ").unwrap().as_str(), "Ada Lovelace");
        assert!(DisplayName::parse("\u{7}").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in [UserStatus::Active, UserStatus::Disabled, UserStatus::Locked, UserStatus::PendingVerification] {
            assert_eq!(UserStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(UserStatus::parse("gone"), None);
    }
}
