//! The cryptography of the audit log: each record's MAC, the hash chain linking
//! records, and the Ed25519 checkpoints signing chain heads.

use aws_lc_rs::digest::SHA256;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use uuid::Uuid;

use super::model::{AuditRecord, Checkpoint, hex};
use crate::keys::{MasterKey, MasterKeyError};

/// The keys of the audit log, derived from the master key: one authenticates each
/// record, the other signs checkpoints.
pub struct AuditKeys {
    mac: hmac::Key,
    chain: hmac::Key,
    signer: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// The audit keys of `master`.
    pub fn derive(master: &MasterKey) -> Result<AuditKeys, MasterKeyError> {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &master.derive("guard audit record mac v1")?);
        let chain = hmac::Key::new(hmac::HMAC_SHA256, &master.derive("guard audit chain link v1")?);
        let seed = master.derive("guard audit checkpoint signing v1")?;
        let signer = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| MasterKeyError::Random("cannot make the audit signing key".into()))?;
        let digest = aws_lc_rs::digest::digest(&SHA256, signer.public_key().as_ref());
        let key_id = hex(&digest.as_ref()[..8]);
        Ok(AuditKeys { mac, chain, signer, key_id })
    }

    /// The checkpoint signing key's id: the first 8 bytes of the SHA-256 of its public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The checkpoint public key (raw Ed25519, 32 bytes), for verifying elsewhere.
    pub fn public_key(&self) -> Vec<u8> {
        self.signer.public_key().as_ref().to_vec()
    }

    /// The MAC of a record's content.
    pub fn mac(&self, content: &[u8]) -> Vec<u8> {
        hmac::sign(&self.mac, content).as_ref().to_vec()
    }

    /// Whether `mac` authenticates `content` (constant time).
    pub fn mac_matches(&self, content: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.mac, content, mac).is_ok()
    }

    /// A checkpoint of `tenant`'s chain at (`seq`, `hash`), made at `at_us`.
    pub fn sign(&self, tenant: Uuid, seq: i64, hash: &[u8], at_us: i64) -> Checkpoint {
        let signature = self.signer.sign(&checkpoint_message(tenant, seq, hash, at_us)).as_ref().to_vec();
        Checkpoint { tenant, seq, hash: hash.to_vec(), at_us, key_id: self.key_id.clone(), signature }
    }

    /// Whether `checkpoint` carries this key's valid signature.
    pub fn signed(&self, checkpoint: &Checkpoint) -> bool {
        let message = checkpoint_message(checkpoint.tenant, checkpoint.seq, &checkpoint.hash, checkpoint.at_us);
        checkpoint.key_id == self.key_id
            && UnparsedPublicKey::new(&ED25519, self.signer.public_key().as_ref())
                .verify(&message, &checkpoint.signature)
                .is_ok()
    }
}

fn checkpoint_message(tenant: Uuid, seq: i64, hash: &[u8], at_us: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(80);
    message.extend_from_slice(b"guard audit checkpoint v1\0");
    message.extend_from_slice(tenant.as_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(hash);
    message.extend_from_slice(&at_us.to_be_bytes());
    message
}

/// The canonical bytes of a record's content: every field but `seq`, `mac` and
/// `hash`, each length-prefixed so that no two records share an encoding.
pub fn content_bytes(record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + record.details.len());
    out.extend_from_slice(record.id.as_bytes());
    out.extend_from_slice(record.tenant.as_bytes());
    out.extend_from_slice(&record.at_us.to_be_bytes());
    for field in [&record.kind, &record.actor, &record.result, &record.details] {
        put(&mut out, Some(field));
    }
    for field in [&record.target, &record.ip, &record.user_agent, &record.request_id] {
        put(&mut out, field.as_ref());
    }
    out
}

fn put(out: &mut Vec<u8>, field: Option<&String>) {
    match field {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            out.extend_from_slice(&(text.len() as u64).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

impl AuditKeys {
    /// The link of the record at `seq` with `content` following `previous` (32 zero
    /// bytes before the first record): HMAC-SHA256 under a key of its own, so that
    /// renumbering the records after a deleted one needs the master key too.
    pub fn link(&self, previous: &[u8], seq: i64, content: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.chain);
        context.update(previous);
        context.update(&seq.to_be_bytes());
        context.update(content);
        context.sign().as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            id: Uuid::now_v7(),
            tenant: Uuid::now_v7(),
            seq: None,
            at_us: 1_700_000_000_000_000,
            kind: "auth.login.success".into(),
            actor: "user:1".into(),
            target: Some("x".into()),
            result: "success".into(),
            ip: None,
            user_agent: Some("curl".into()),
            request_id: None,
            details: "{}".into(),
            mac: Vec::new(),
            hash: None,
        }
    }

    #[test]
    fn any_change_to_a_field_changes_the_content_and_fails_the_mac() {
        let keys = AuditKeys::derive(&MasterKey::generate().unwrap()).unwrap();
        let original = record();
        let mac = keys.mac(&content_bytes(&original));
        assert!(keys.mac_matches(&content_bytes(&original), &mac));
        let mut moved = original.clone();
        // The same characters split differently between two fields.
        moved.target = Some("".into());
        moved.user_agent = Some("xcurl".into());
        assert_ne!(content_bytes(&moved), content_bytes(&original));
        let mut altered = original.clone();
        altered.result = "failure".into();
        assert!(!keys.mac_matches(&content_bytes(&altered), &mac));
        let other = AuditKeys::derive(&MasterKey::generate().unwrap()).unwrap();
        assert!(!other.mac_matches(&content_bytes(&original), &mac));
    }

    #[test]
    fn checkpoints_verify_only_unchanged_and_under_the_same_key() {
        let master = MasterKey::generate().unwrap();
        let keys = AuditKeys::derive(&master).unwrap();
        let tenant = Uuid::now_v7();
        let hash = keys.link(&[0; 32], 1, b"content");
        let checkpoint = keys.sign(tenant, 1, &hash, 42);
        assert!(keys.signed(&checkpoint));
        assert!(AuditKeys::derive(&master).unwrap().signed(&checkpoint), "derivation is stable");
        let mut moved = checkpoint.clone();
        moved.seq = 2;
        assert!(!keys.signed(&moved));
        let other = AuditKeys::derive(&MasterKey::generate().unwrap()).unwrap();
        assert!(!other.signed(&checkpoint));
        assert_ne!(keys.link(&[0; 32], 2, b"content"), hash, "the position is part of the hash");
        assert_ne!(other.link(&[0; 32], 1, b"content"), hash, "and the key");
    }
}
