//! The master key: 256 bits that encrypt secrets at rest with AES-256-GCM.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Why the master key could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 32 random bytes, base64-encoded (openssl rand -base64 32)")]
    Malformed,
    #[error("{0}")]
    Unavailable(String),
    /// The ciphertext was not made with this key (or was altered).
    #[error("the master key does not decrypt this secret: is it the key it was encrypted with?")]
    WrongKey,
    #[error("no randomness: {0}")]
    Random(String),
}

/// The key encrypting secrets at rest. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// First byte of every ciphertext, so the format can change later.
const FORMAT_V1: u8 = 1;

impl MasterKey {
    /// A key from its base64 text.
    pub fn from_base64(text: &str) -> Result<MasterKey, MasterKeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::Malformed)?;
        Ok(MasterKey(bytes.try_into().map_err(|_| MasterKeyError::Malformed)?))
    }

    /// A new random key.
    pub fn generate() -> Result<MasterKey, MasterKeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| MasterKeyError::Random(e.to_string()))?;
        Ok(MasterKey(bytes))
    }

    /// The key in `path`; when the file does not exist and `create` is set, a new key
    /// written there readable by its owner only (0600).
    pub fn load_or_create(path: &Path, create: bool) -> Result<MasterKey, MasterKeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => MasterKey::from_base64(&text).map_err(|_| {
                MasterKeyError::Unavailable(format!("{}: not a master key (32 bytes, base64)", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = MasterKey::generate()?;
                write_private(path, &STANDARD.encode(key.0)).map_err(|e| {
                    MasterKeyError::Unavailable(format!("cannot create the master key file {}: {e}", path.display()))
                })?;
                tracing::warn!(path = %path.display(), "generated a new master key; back it up with the database");
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MasterKeyError::Unavailable(format!(
                "no master key: set GUARD_MASTER_KEY (openssl rand -base64 32) to the same value on every \
                 replica, or put it in {}",
                path.display()
            ))),
            Err(e) => Err(MasterKeyError::Unavailable(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// 32 bytes for one `purpose` (HKDF-SHA256), so that each use of the master key
    /// has a key of its own.
    pub fn derive(&self, purpose: &str) -> Result<[u8; 32], MasterKeyError> {
        use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
        struct Len32;
        impl KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let failed = || MasterKeyError::Random("key derivation failed".into());
        let prk = Salt::new(HKDF_SHA256, b"guard master key derivation").extract(&self.0);
        let info = [purpose.as_bytes()];
        let okm = prk.expand(&info, Len32).map_err(|_| failed())?;
        let mut out = [0u8; 32];
        okm.fill(&mut out).map_err(|_| failed())?;
        Ok(out)
    }

    fn cipher(&self) -> Result<LessSafeKey, MasterKeyError> {
        let key = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| MasterKeyError::Malformed)?;
        Ok(LessSafeKey::new(key))
    }

    /// Encrypts `plaintext`, binding it to `context` (which decryption must repeat).
    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, MasterKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| MasterKeyError::Random(e.to_string()))?;
        let mut sealed = plaintext.to_vec();
        self.cipher()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| MasterKeyError::Random("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::encrypt`] made with the same `context`.
    pub fn decrypt(&self, ciphertext: &[u8], context: &str) -> Result<Vec<u8>, MasterKeyError> {
        let (&version, rest) = ciphertext.split_first().ok_or(MasterKeyError::WrongKey)?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN {
            return Err(MasterKeyError::WrongKey);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| MasterKeyError::WrongKey)?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .cipher()?
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| MasterKeyError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trips_and_is_bound_to_key_and_context() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.encrypt(b"private key", "kid-1").unwrap();
        assert_eq!(key.decrypt(&sealed, "kid-1").unwrap(), b"private key");
        assert!(matches!(key.decrypt(&sealed, "kid-2"), Err(MasterKeyError::WrongKey)));
        let other = MasterKey::generate().unwrap();
        assert!(matches!(other.decrypt(&sealed, "kid-1"), Err(MasterKeyError::WrongKey)));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(key.decrypt(&tampered, "kid-1"), Err(MasterKeyError::WrongKey)));
        assert_ne!(key.encrypt(b"private key", "kid-1").unwrap(), sealed, "nonces differ");
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_master_key() {
        let key = MasterKey::generate().unwrap();
        let a = key.derive("audit mac").unwrap();
        assert_eq!(a, key.derive("audit mac").unwrap());
        assert_ne!(a, key.derive("audit signing").unwrap());
        assert_ne!(a, MasterKey::generate().unwrap().derive("audit mac").unwrap());
    }

    #[test]
    fn key_files_are_created_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        assert!(matches!(MasterKey::load_or_create(&path, false), Err(MasterKeyError::Unavailable(_))));
        let made = MasterKey::load_or_create(&path, true).unwrap();
        let again = MasterKey::load_or_create(&path, true).unwrap();
        assert_eq!(made.0, again.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }
}
