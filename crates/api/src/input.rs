//! Checks on text as it enters guard, and serde's complaints in plain words.
//!
//! Control characters (Unicode Cc: U+0000 to U+001F, U+007F to U+009F) are refused in
//! every text field, query parameter, path segment and header guard reads, because
//! nothing guard stores needs them and PostgreSQL refuses NUL outright. Line breaks
//! and tabs are text in the multi-line fields (`text`, `schema`, `description`).

use guard_proto::ErrorCode;
use serde_json::json;

use crate::ApiError;

/// JSON object keys whose string values may hold line breaks and tabs.
const MULTI_LINE_FIELDS: [&[u8]; 3] = [b"text", b"schema", b"description"];

/// Whether `c` is refused in text; `multi_line` lets tab, LF and CR through.
fn refused(c: char, multi_line: bool) -> bool {
    c.is_control() && !(multi_line && matches!(c, '\t' | '\n' | '\r'))
}

/// The first control character in `text`, if any.
pub(crate) fn control_in(text: &str) -> Option<char> {
    text.chars().find(|c| refused(*c, false))
}

/// The 400 for a control character `c` found in `name` (of `source`: body, query,
/// path or header).
pub(crate) fn control_character(source: &'static str, name: &str, c: char) -> ApiError {
    let place = match source {
        "body" => format!("{name} (in the body)"),
        "query" => format!("query parameter {name}"),
        "path" => format!("path segment {name}"),
        _ => format!("header {name}"),
    };
    ApiError::new(ErrorCode::ControlCharacter)
        .detail(format!(
            "{place} holds a control character (U+{:04X}); text may not contain U+0000 to U+001F or U+007F to \
             U+009F (line breaks and tabs only in text, schema and description fields)",
            u32::from(c)
        ))
        .extension("source", json!(source))
        .extension("name", json!(name))
}

/// One level of the JSON document being scanned.
enum Frame {
    /// An object, with the byte range of the latest key and whether a key comes next.
    Object {
        key: Option<(usize, usize)>,
        expect_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The path of the control character in `body` (a JSON document) that is refused, and
/// the character, or `None` when there is none. One pass, no allocation unless found;
/// on malformed JSON it stops quietly and leaves the complaint to the parser.
pub(crate) fn control_in_json(body: &[u8]) -> Option<(String, char)> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'{' => stack.push(Frame::Object { key: None, expect_key: true }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            b'"' => {
                let start = i + 1;
                let is_key = matches!(stack.last(), Some(Frame::Object { expect_key: true, .. }));
                let multi_line = !is_key
                    && matches!(stack.last(), Some(Frame::Object { key: Some((s, e)), .. })
                        if body.get(*s..*e).is_some_and(|k| MULTI_LINE_FIELDS.contains(&k)));
                let (end, found) = scan_string(body, start, multi_line);
                if is_key && let Some(Frame::Object { key, .. }) = stack.last_mut() {
                    *key = Some((start, end));
                }
                if let Some(c) = found {
                    return Some((json_path(body, &stack), c));
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Scans the string starting at `start` (after its opening quote): the index of its
/// closing quote (or the end of `body`), and the first refused character in it.
fn scan_string(body: &[u8], start: usize, multi_line: bool) -> (usize, Option<char>) {
    let mut j = start;
    let mut found = None;
    while let Some(&b) = body.get(j) {
        let (c, step) = match b {
            b'"' => return (j, found),
            b'\\' => match body.get(j + 1) {
                Some(b'u') => {
                    let code = body
                        .get(j + 2..j + 6)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok());
                    (code.and_then(char::from_u32), 6)
                }
                Some(b'n') => (Some('\n'), 2),
                Some(b't') => (Some('\t'), 2),
                Some(b'r') => (Some('\r'), 2),
                Some(b'b') => (Some('\u{8}'), 2),
                Some(b'f') => (Some('\u{c}'), 2),
                _ => (None, 2),
            },
            // Raw C0 bytes are a JSON syntax error anyway; DEL is allowed raw.
            0x00..=0x1f | 0x7f => (Some(char::from(b)), 1),
            // U+0080 to U+009F in UTF-8.
            0xc2 => match body.get(j + 1) {
                Some(&next @ 0x80..=0x9f) => (char::from_u32(u32::from(next)), 2),
                _ => (None, 1),
            },
            _ => (None, 1),
        };
        if found.is_none() {
            found = c.filter(|c| refused(*c, multi_line));
        }
        j += step;
    }
    (body.len(), found)
}

/// `policies[0].text`-style path of the innermost value in `stack`.
fn json_path(body: &[u8], stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Object { key: Some((s, e)), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                let key = String::from_utf8_lossy(body.get(*s..*e).unwrap_or_default());
                for c in key.chars() {
                    if c.is_control() {
                        path.push_str(&format!("\\u{:04x}", u32::from(c)));
                    } else {
                        path.push(c);
                    }
                }
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() { "the body".into() } else { path }
}

/// serde's message `message` in words a client can act on: what was expected and what
/// came, with Rust's type names (`struct NewTenantBody`, `u32`) replaced.
pub(crate) fn plain(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(at) = rest.rfind(", expected ")
        {
            let (found, expected) = (&rest[..at], &rest[at + ", expected ".len()..]);
            return format!("expected {}, found {}", expected_words(expected), found_words(found));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some((length, expected)) = rest.split_once(", expected ")
    {
        return format!("expected {}, found {length} elements", expected_words(expected));
    }
    if let Some(field) = message.strip_suffix(", there are no fields") {
        return format!("{field}: no fields are allowed here");
    }
    if message.contains("struct ") || message.contains("enum ") {
        return "the value does not have the expected shape".into();
    }
    message.to_owned()
}

/// What serde's `expecting` text means, in words.
pub(crate) fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" | "char" | "String" | "string" => "a string",
        "a boolean" | "bool" => "true or false",
        "unit" | "null" => "null",
        "a sequence" | "a tuple" => "an array",
        "a map" | "map" => "an object",
        "any valid JSON value" => "a JSON value",
        e if e.starts_with("struct ") => "an object",
        e if e.starts_with("tuple") => "an array",
        e if e.starts_with("a sequence") => "an array",
        e if e.starts_with("enum ") || e.contains("variant") => "one of the allowed values",
        e if e.contains("UUID") || e.contains("Uuid") => "a UUID",
        e if e.contains("::") || e.chars().next().is_some_and(char::is_uppercase) => "a value of another kind",
        e => e,
    };
    words.to_owned()
}

/// What serde's `Unexpected` text means, in words.
fn found_words(found: &str) -> String {
    match found {
        "map" => "an object".into(),
        "sequence" => "an array".into(),
        "unit value" | "null" => "null".into(),
        f => {
            if f.starts_with("string \"") {
                return format!("the {f}");
            }
            for (kind, prefix) in [("boolean `", ""), ("integer `", "the number "), ("floating point `", "the number ")]
            {
                if let Some(value) = f.strip_prefix(kind).and_then(|v| v.strip_suffix('`')) {
                    return format!("{prefix}{value}");
                }
            }
            f.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Option<(String, char)> {
        control_in_json(body.as_bytes())
    }

    #[test]
    fn control_characters_are_found_with_their_path_wherever_they_hide() {
        assert_eq!(found(r#"{"name": "a\u0000b"}"#), Some(("name".into(), '\0')));
        assert_eq!(found(r#"{"a": [1, {"b": "\u001B"}]}"#), Some(("a[1].b".into(), '\u{1b}')));
        assert_eq!(found("{\"a\": \"x\u{7f}\"}"), Some(("a".into(), '\u{7f}')));
        assert_eq!(found("{\"a\": \"x\u{85}\"}"), Some(("a".into(), '\u{85}')));
        assert_eq!(found(r#"{"a\u0001": 1}"#), Some(("a\\u0001".into(), '\u{1}')));
        assert_eq!(found(r#"["\u009f"]"#), Some(("[0]".into(), '\u{9f}')));
        assert_eq!(found(r#""\b""#), Some(("the body".into(), '\u{8}')));
        assert_eq!(found(r#"{"name": "a\nb"}"#), Some(("name".into(), '\n')));
    }

    #[test]
    fn line_breaks_pass_in_multi_line_fields_and_escaped_backslashes_are_not_escapes() {
        assert_eq!(found(r#"{"text": "a\nb\tc\r\n", "description": "x\ny"}"#), None);
        assert_eq!(found(r#"{"policies": [{"id": "p", "text": "permit(\n);"}]}"#), None);
        assert_eq!(found(r#"{"text": "a\u0000"}"#), Some(("text".into(), '\0')));
        assert_eq!(found(r#"{"name": "C:\\u0000", "x": "\\n", "e": "é ✓ \ud83d\ude00"}"#), None);
        assert_eq!(found(r#"{"text": {"inner": "a\nb"}}"#), Some(("text.inner".into(), '\n')));
        // A key named like a multi-line field is still a key.
        assert_eq!(found(r#"{"text\n": 1}"#), Some(("text\\n".into(), '\n')));
    }

    #[test]
    fn malformed_json_is_left_to_the_parser() {
        for body in ["", "{", "\"", "\"\\", "\"\\u00", "{\"a\":\"\\u00zz\"}", "]]]", "\u{c2}"] {
            let _ = found(body);
        }
        assert_eq!(found(r#"{"a": "\u00zz"}"#), None);
    }

    #[test]
    fn serde_messages_lose_their_rust_type_names() {
        let cases = [
            (
                "invalid type: string \"acme\", expected struct NewTenantBody",
                "expected an object, found the string \"acme\"",
            ),
            ("invalid type: sequence, expected struct NewTenantBody", "expected an object, found an array"),
            ("invalid length 0, expected struct NewTenantBody with 2 elements", "expected an object, found 0 elements"),
            ("invalid type: integer `5`, expected a string", "expected a string, found the number 5"),
            ("invalid value: integer `-1`, expected u32", "expected a whole number, 0 or more, found the number -1"),
            ("invalid type: string \"two\", expected i64", "expected a whole number, found the string \"two\""),
            ("invalid type: boolean `true`, expected a string", "expected a string, found true"),
            ("invalid type: null, expected a sequence", "expected an array, found null"),
            (
                "invalid type: string \"x, expected y\", expected enum Kind",
                "expected one of the allowed values, found the string \"x, expected y\"",
            ),
            ("unknown field `x`, there are no fields", "unknown field `x`: no fields are allowed here"),
            ("missing field `name`", "missing field `name`"),
            ("unknown field `x`, expected one of `a`, `b`", "unknown field `x`, expected one of `a`, `b`"),
        ];
        for (serde, words) in cases {
            assert_eq!(plain(serde), words, "{serde}");
        }
    }
}
