//! Signing key types and key generation.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::tenants::TenantId;

/// How long a retired key stays in the JWKS: longer than any access token lives.
pub const RETIRED_KEYS_PUBLISHED_FOR: time::Duration = time::Duration::hours(25);

/// Signature algorithm of a key, as named in JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    EdDSA,
    ES256,
}

impl SigningAlgorithm {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "EDDSA" | "ED25519" => Ok(SigningAlgorithm::EdDSA),
            "ES256" => Ok(SigningAlgorithm::ES256),
            _ => Err(format!("{s:?} is not a signing algorithm: use EdDSA or ES256")),
        }
    }
}

/// A key id: the key's JWK thumbprint (RFC 7638), so it names the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a key signs new tokens or only verifies old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Retired,
}

impl KeyStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
        }
    }

    /// A stored name back.
    pub fn parse(text: &str) -> Option<KeyStatus> {
        match text {
            "active" => Some(KeyStatus::Active),
            "retired" => Some(KeyStatus::Retired),
            _ => None,
        }
    }
}

/// A signing key as stored, its private part still encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    pub id: KeyId,
    pub tenant: TenantId,
    pub algorithm: SigningAlgorithm,
    /// The public key as a JWK (with kid, alg and use).
    pub public_jwk: Value,
    /// PKCS#8 private key, encrypted under the master key with the kid as context.
    pub private_encrypted: Vec<u8>,
    pub status: KeyStatus,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

impl SigningKey {
    /// True while the key belongs in the JWKS.
    pub fn published(&self, now: OffsetDateTime) -> bool {
        self.retired_at.is_none_or(|at| now < at + RETIRED_KEYS_PUBLISHED_FOR)
    }
}

/// A freshly generated key pair: the stored form and the plain PKCS#8.
pub struct NewSigningKey {
    pub key: SigningKey,
    pub pkcs8: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The RFC 7638 thumbprint of a JWK's required members, given in lexicographic order.
fn thumbprint(canonical: &str) -> String {
    b64(&Sha256::digest(canonical.as_bytes()))
}

impl NewSigningKey {
    /// Generates a key pair for `tenant`, encrypting the private part with `master`.
    pub fn generate(
        tenant: TenantId,
        algorithm: SigningAlgorithm,
        master: &super::MasterKey,
        now: OffsetDateTime,
    ) -> Result<NewSigningKey, String> {
        let rng = SystemRandom::new();
        let (pkcs8, members, canonical) = match algorithm {
            SigningAlgorithm::EdDSA => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
                let x = b64(pair.public_key().as_ref());
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                (pkcs8.as_ref().to_vec(), json!({"kty": "OKP", "crv": "Ed25519", "x": x}), canonical)
            }
            SigningAlgorithm::ES256 => {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| e.to_string())?;
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                    .map_err(|e| e.to_string())?;
                // Uncompressed point: 0x04, then 32 bytes of x and 32 of y.
                let point = pair.public_key().as_ref();
                if point.len() != 65 {
                    return Err("unexpected P-256 public key encoding".into());
                }
                let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (pkcs8.as_ref().to_vec(), json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}), canonical)
            }
        };
        let id = KeyId(thumbprint(&canonical));
        let mut public_jwk = members;
        public_jwk["kid"] = json!(id.0);
        public_jwk["alg"] = json!(algorithm.as_str());
        public_jwk["use"] = json!("sig");
        let private_encrypted = master.encrypt(&pkcs8, &id.0).map_err(|e| e.to_string())?;
        Ok(NewSigningKey {
            key: SigningKey {
                id,
                tenant,
                algorithm,
                public_jwk,
                private_encrypted,
                status: KeyStatus::Active,
                created_at: now,
                retired_at: None,
            },
            pkcs8,
        })
    }
}
