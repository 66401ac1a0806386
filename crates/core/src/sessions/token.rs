//! Session tokens: 256 random bits, base64url in the client's hands, SHA-256 at rest.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A session token as the client holds it. Never stored, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// The SHA-256 of a token: what the database keeps and looks sessions up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 32;

impl SessionToken {
    /// A new token from the operating system's generator.
    pub fn generate() -> Result<SessionToken, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(SessionToken(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A token presented by a client, when it has the shape guard issues; anything
    /// else cannot be a session and is refused before any lookup.
    pub fn parse(text: &str) -> Option<SessionToken> {
        let decoded = URL_SAFE_NO_PAD.decode(text).ok()?;
        (decoded.len() == TOKEN_BYTES).then(|| SessionToken(text.to_owned()))
    }

    /// The text to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored for this token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_random_bits_and_parse_back() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(SessionToken::parse(a.expose()), Some(a.clone()));
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "abc", "not base64 at all!!", &"A".repeat(44)] {
            assert_eq!(SessionToken::parse(bad), None, "{bad}");
        }
    }
}
