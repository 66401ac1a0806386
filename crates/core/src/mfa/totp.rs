//! TOTP after RFC 6238 (HMAC-SHA-1, 6 digits, 30-second steps) through totp-rs, and
//! recovery codes.

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::sessions::TokenHash;

/// Recovery codes issued at once.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Bytes of a TOTP secret: 160 bits, the HMAC-SHA-1 block RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
/// Characters of a recovery code, without its separators: 12 × 5 = 60 bits.
const RECOVERY_CODE_CHARS: usize = 12;
/// 32 symbols, lower-case letters and digits without the look-alikes 0/o and i/l, so
/// a code is read and typed from paper without doubt.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz123456789";

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes)
}

/// A new random TOTP secret.
pub(crate) fn new_secret() -> Result<Vec<u8>, String> {
    Ok(random_bytes::<SECRET_BYTES>()?.to_vec())
}

/// The TOTP of `secret`, labelled for authenticator apps.
pub(crate) fn totp(secret: &[u8], skew: u8, issuer: &str, account: &str) -> Result<Totp, String> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(u16::from(skew))
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| format!("TOTP: {e}"))
}

/// The base32 form of `secret` that people type into an authenticator app.
pub(crate) fn secret_base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The time step a `code` is valid for now, when it is valid.
pub(crate) fn check(totp: &Totp, code: &str, unix_time: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp.check(&code, unix_time).and_then(|step| i64::try_from(step).ok())
}

/// An SVG QR code of `text` (the otpauth:// URI).
pub(crate) fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build())
}

/// New recovery codes (shown once) and their hashes (stored).
pub(crate) fn new_recovery_codes() -> Result<(Vec<String>, Vec<TokenHash>), String> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let bytes = random_bytes::<RECOVERY_CODE_CHARS>()?;
        // Five random bits a symbol, without bias.
        let symbols: String = bytes.iter().map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)])).collect();
        codes.push(format!("{}-{}-{}", &symbols[0..4], &symbols[4..8], &symbols[8..12]));
    }
    let hashes = codes.iter().map(|c| recovery_code_hash(c)).collect();
    Ok((codes, hashes))
}

/// A six-digit one-time code to send by email.
pub fn new_email_code() -> Result<String, String> {
    loop {
        let n = u32::from_le_bytes(random_bytes::<4>()?);
        // Draws above the last whole million are redrawn, so every code is as likely.
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// The stored form of an emailed code as typed (spaces do not matter).
pub fn email_code_hash(code: &str) -> TokenHash {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    TokenHash(Sha256::digest(format!("email-code:{digits}").as_bytes()).into())
}

/// The stored form of a recovery code as typed: case, spaces and hyphens do not matter.
pub fn recovery_code_hash(code: &str) -> TokenHash {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    TokenHash(Sha256::digest(normal.as_bytes()).into())
}

/// True when `code` has the shape of a recovery code (not of a TOTP code).
pub(crate) fn looks_like_recovery_code(code: &str) -> bool {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).count() == RECOVERY_CODE_CHARS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_pass() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 digits.
        let t = totp(b"12345678901234567890", 0, "guard", "test@example.com").unwrap();
        for (time, code) in [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(check(&t, code, time), Some((time / 30) as i64), "at {time}");
        }
        assert_eq!(check(&t, "287083", 59), None);
        assert_eq!(check(&t, "28708", 59), None);
    }

    #[test]
    fn skew_accepts_neighbouring_steps_only() {
        let t = totp(b"12345678901234567890", 1, "guard", "a@example.com").unwrap();
        assert_eq!(check(&t, "287082", 59 + 30), Some(1));
        assert_eq!(check(&t, "287082", 59 + 60), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_match_however_typed() {
        let (codes, hashes) = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let unique: std::collections::HashSet<_> = hashes.iter().map(|h| h.0).collect();
        assert_eq!(unique.len(), RECOVERY_CODE_COUNT);
        let typed = codes[0].to_uppercase().replace('-', " ");
        assert_eq!(recovery_code_hash(&typed), hashes[0]);
        assert!(looks_like_recovery_code(&codes[0]) && !looks_like_recovery_code("123456"));
    }
}
