//! Email templates: a subject, a text and an HTML body per template, built in and
//! overridable file by file from a directory. `{{name}}` is replaced by a value,
//! HTML-escaped in the HTML body.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The emails guard sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    VerifyEmail,
    PasswordReset,
    PasswordChanged,
    RecoveryCodeUsed,
    LoginCode,
    PasskeyAdded,
    AccountExists,
}

impl Template {
    /// The template's name: its files are NAME.subject, NAME.txt and NAME.html.
    pub fn name(self) -> &'static str {
        match self {
            Template::VerifyEmail => "verify_email",
            Template::PasswordReset => "password_reset",
            Template::PasswordChanged => "password_changed",
            Template::RecoveryCodeUsed => "recovery_code_used",
            Template::LoginCode => "login_code",
            Template::PasskeyAdded => "passkey_added",
            Template::AccountExists => "account_exists",
        }
    }

    fn built_in(self) -> [&'static str; 3] {
        match self {
            Template::VerifyEmail => [
                include_str!("../../templates/verify_email.subject"),
                include_str!("../../templates/verify_email.txt"),
                include_str!("../../templates/verify_email.html"),
            ],
            Template::PasswordReset => [
                include_str!("../../templates/password_reset.subject"),
                include_str!("../../templates/password_reset.txt"),
                include_str!("../../templates/password_reset.html"),
            ],
            Template::PasswordChanged => [
                include_str!("../../templates/password_changed.subject"),
                include_str!("../../templates/password_changed.txt"),
                include_str!("../../templates/password_changed.html"),
            ],
            Template::RecoveryCodeUsed => [
                include_str!("../../templates/recovery_code_used.subject"),
                include_str!("../../templates/recovery_code_used.txt"),
                include_str!("../../templates/recovery_code_used.html"),
            ],
            Template::LoginCode => [
                include_str!("../../templates/login_code.subject"),
                include_str!("../../templates/login_code.txt"),
                include_str!("../../templates/login_code.html"),
            ],
            Template::PasskeyAdded => [
                include_str!("../../templates/passkey_added.subject"),
                include_str!("../../templates/passkey_added.txt"),
                include_str!("../../templates/passkey_added.html"),
            ],
            Template::AccountExists => [
                include_str!("../../templates/account_exists.subject"),
                include_str!("../../templates/account_exists.txt"),
                include_str!("../../templates/account_exists.html"),
            ],
        }
    }

    const ALL: [Template; 7] = [
        Template::VerifyEmail,
        Template::PasswordReset,
        Template::PasswordChanged,
        Template::RecoveryCodeUsed,
        Template::LoginCode,
        Template::PasskeyAdded,
        Template::AccountExists,
    ];
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every template's text, read once at start.
#[derive(Debug, Clone)]
pub struct Templates {
    texts: HashMap<Template, [String; 3]>,
}

const EXTENSIONS: [&str; 3] = ["subject", "txt", "html"];

impl Templates {
    /// The built-in templates, with any file found in `dir` replacing its part.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let mut texts = HashMap::new();
        for template in Template::ALL {
            let mut parts = template.built_in().map(str::to_owned);
            if let Some(dir) = dir {
                for (part, extension) in parts.iter_mut().zip(EXTENSIONS) {
                    let path: PathBuf = dir.join(format!("{}.{extension}", template.name()));
                    match std::fs::read_to_string(&path) {
                        Ok(text) => *part = text,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("email template {}: {e}", path.display())),
                    }
                }
            }
            texts.insert(template, parts);
        }
        Ok(Templates { texts })
    }

    /// `template` with `values` filled in.
    pub fn render(&self, template: Template, values: &[(&str, &str)]) -> Rendered {
        let empty = [String::new(), String::new(), String::new()];
        let [subject, text, html] = self.texts.get(&template).unwrap_or(&empty);
        Rendered {
            // A subject is one line whatever a value holds.
            subject: fill(subject, values, |v| v.replace(['\r', '\n'], " ")).trim().to_owned(),
            text: fill(text, values, str::to_owned),
            html: fill(html, values, escape_html),
        }
    }
}

fn fill(text: &str, values: &[(&str, &str)], escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(&escape(value)),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_filled_in_and_escaped_in_html_only() {
        let templates = Templates::load(None).unwrap();
        let link = "https://guard.example/v1/auth/email/verify?tenant=acme&token=a<b";
        let r = templates.render(
            Template::VerifyEmail,
            &[("email", "ada@example.com"), ("tenant", "Acme\nCorp"), ("link", link), ("expires_in", "24 hours")],
        );
        assert_eq!(r.subject, "Confirm your email address for Acme Corp");
        assert!(r.text.contains(link));
        assert!(r.html.contains("token=a&lt;b"));
        assert!(!r.html.contains("{{"));
    }

    #[test]
    fn files_in_the_directory_replace_built_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password_reset.subject"), "Reset for {{ email }} ({{unknown}})").unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let r = templates.render(Template::PasswordReset, &[("email", "ada@example.com")]);
        assert_eq!(r.subject, "Reset for ada@example.com ({{unknown}})");
        assert!(r.text.contains("password reset was requested"), "the text part is still built in");
    }
}
