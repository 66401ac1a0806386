//! Validated string newtypes: one `parse` constructor each, and the same conversions.

/// Gives a `struct Name(String)` with a `parse(&str) -> Result<Name, String>`
/// constructor: serde through `parse`, `as_str`, `Display`, and `String` conversions.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<$name, String> {
                $name::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use string_newtype;

/// `text` trimmed, when it is 1 to 200 characters without control characters.
pub(crate) fn short_text(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let ok = !trimmed.is_empty() && trimmed.chars().count() <= 200 && !trimmed.chars().any(char::is_control);
    ok.then(|| trimmed.to_owned())
}
