//! The password policy, after NIST SP 800-63B 5.1.1.2: a length range and a blocklist
//! of breached passwords; no composition rules, no expiry.

use std::sync::OnceLock;

use crate::tenants::TenantSettings;

static COMMON: &str = include_str!("../../data/common-passwords-100k.txt");

/// The shipped list's entries long enough to matter (a password shorter than the
/// smallest allowed minimum is refused for its length anyway), sorted for binary
/// search. Built on first use: about 40,000 slices into the embedded text.
fn common_passwords() -> &'static [&'static str] {
    static LIST: OnceLock<Vec<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut list: Vec<&'static str> =
            COMMON.lines().map(str::trim).filter(|l| l.chars().count() >= MIN_ALLOWED as usize).collect();
        list.sort_unstable();
        list.dedup();
        list
    })
}

/// The smallest minimum length a tenant may set.
const MIN_ALLOWED: u32 = 8;

/// True when `password` (ignoring case) is one of the 100,000 most common.
pub fn is_common_password(password: &str) -> bool {
    let lowered = password.to_lowercase();
    let list = common_passwords();
    list.binary_search(&lowered.as_str()).is_ok() || list.binary_search(&password).is_ok()
}

/// Why a new password is refused. The texts are meant for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("the password must be at least {0} characters long")]
    TooShort(u32),
    #[error("the password must be at most {0} characters long")]
    TooLong(u32),
    #[error("the password is one of the most commonly used passwords; choose another")]
    Common,
    #[error("the password must not be the same as your email address or user name")]
    SameAsIdentifier,
}

/// Facts about the account a password is for, so it cannot simply repeat them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordContext<'a> {
    pub email: Option<&'a str>,
    pub username: Option<&'a str>,
}

/// A tenant's password rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: u32,
    pub max_length: u32,
}

impl PasswordPolicy {
    /// The policy in a tenant's settings.
    pub fn of(settings: &TenantSettings) -> PasswordPolicy {
        PasswordPolicy { min_length: settings.password_min_length, max_length: settings.password_max_length }
    }

    /// Checks a new password. Length counts characters, not bytes, so every script is
    /// treated alike.
    pub fn check(&self, password: &str, context: PasswordContext<'_>) -> Result<(), PasswordRejection> {
        let length = password.chars().count();
        if length < self.min_length as usize {
            return Err(PasswordRejection::TooShort(self.min_length));
        }
        if length > self.max_length as usize {
            return Err(PasswordRejection::TooLong(self.max_length));
        }
        let lowered = password.to_lowercase();
        let local_part = context.email.and_then(|e| e.split('@').next());
        for identifier in [context.email, local_part, context.username].into_iter().flatten() {
            if !identifier.is_empty() && lowered == identifier.to_lowercase() {
                return Err(PasswordRejection::SameAsIdentifier);
            }
        }
        if is_common_password(password) {
            return Err(PasswordRejection::Common);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy::of(&TenantSettings::default())
    }

    #[test]
    fn the_shipped_list_holds_the_100000_most_common_passwords() {
        assert_eq!(COMMON.lines().count(), 100_000);
        assert_eq!(COMMON.lines().next(), Some("123456"));
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for common in ["password", "12345678", "iloveyou", "PASSWORD1", "Qwertyuiop", "sunshine1"] {
            assert_eq!(policy().check(common, PasswordContext::default()), Err(PasswordRejection::Common), "{common}");
        }
    }

    #[test]
    fn length_is_counted_in_characters_from_8_to_128_by_default() {
        assert_eq!(policy().check("x7#kQ2v", PasswordContext::default()), Err(PasswordRejection::TooShort(8)));
        assert!(policy().check("correct horse battery staple", PasswordContext::default()).is_ok());
        assert!(policy().check("ñandú-über-café", PasswordContext::default()).is_ok());
        assert!(
            policy().check("日本語のパスワードです", PasswordContext::default()).is_ok(),
            "11 characters, 33 bytes"
        );
        let long = "a-very-long-passphrase ".repeat(6);
        assert!(policy().check(&long[..128], PasswordContext::default()).is_ok(), "128 characters are accepted");
        assert_eq!(policy().check(&"z".repeat(129), PasswordContext::default()), Err(PasswordRejection::TooLong(128)));
    }

    #[test]
    fn no_composition_rules_apply() {
        assert!(policy().check("all lower case words here", PasswordContext::default()).is_ok());
    }

    #[test]
    fn a_password_may_not_repeat_the_email_or_user_name() {
        let context = PasswordContext { email: Some("ada.lovelace@example.com"), username: Some("countess-ada") };
        for same in ["Ada.Lovelace@example.com", "ada.lovelace", "COUNTESS-ADA"] {
            assert_eq!(policy().check(same, context), Err(PasswordRejection::SameAsIdentifier), "{same}");
        }
        assert!(policy().check("ada lovelace wrote programs", context).is_ok());
    }
}
