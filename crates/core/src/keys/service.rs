//! Keys per tenant, cached per process, and the access tokens they sign.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::master::MasterKey;
use super::model::{KeyId, KeyStatus, NewSigningKey, SigningAlgorithm, SigningKey};
use super::store::KeyStore;
use crate::sessions::{Session, SessionId};
use crate::store::StoreError;
use crate::tenants::{Tenant, TenantId};
use crate::users::UserId;

/// Why keys or tokens could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The access token is not one this tenant's keys signed, or it has expired.
    #[error("the access token is not valid")]
    InvalidToken,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant's keys, ready to use.
struct TenantKeys {
    loaded: Instant,
    signer: (KeyId, SigningAlgorithm, EncodingKey),
    verifiers: HashMap<String, (SigningAlgorithm, DecodingKey)>,
    jwks: Value,
}

/// Signing keys, one active per tenant, created on first use.
#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    algorithm: SigningAlgorithm,
    /// How long a process keeps signing with the key it loaded: after a rotation,
    /// every process signs with the new key within this time.
    ttl: Duration,
    cache: Arc<Mutex<HashMap<TenantId, Arc<TenantKeys>>>>,
}

/// A verifier's kid unknown to the cache triggers a reload at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

fn decoding_key(key: &SigningKey) -> Option<DecodingKey> {
    let member = |name: &str| key.public_jwk.get(name).and_then(Value::as_str);
    match key.algorithm {
        SigningAlgorithm::EdDSA => DecodingKey::from_ed_components(member("x")?).ok(),
        SigningAlgorithm::ES256 => DecodingKey::from_ec_components(member("x")?, member("y")?).ok(),
    }
}

fn encoding_key(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> EncodingKey {
    match algorithm {
        SigningAlgorithm::EdDSA => EncodingKey::from_ed_der(pkcs8),
        SigningAlgorithm::ES256 => EncodingKey::from_ec_der(pkcs8),
    }
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

impl KeyService {
    /// A service creating keys of `algorithm`, reloading them after `ttl`.
    pub fn new(store: Arc<dyn KeyStore>, master: MasterKey, algorithm: SigningAlgorithm, ttl: Duration) -> KeyService {
        KeyService { store, master, algorithm, ttl, cache: Arc::default() }
    }

    fn cached(&self, tenant: TenantId) -> Option<Arc<TenantKeys>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&tenant).cloned()
    }

    async fn load(&self, tenant: TenantId) -> Result<Arc<TenantKeys>, KeyError> {
        let mut keys = self.store.list(tenant).await?;
        if !keys.iter().any(|k| k.status == KeyStatus::Active) {
            let new =
                NewSigningKey::generate(tenant, self.algorithm, &self.master, now()).map_err(KeyError::Internal)?;
            match self.store.insert_active(&new.key).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            keys = self.store.list(tenant).await?;
        }
        let active = keys
            .iter()
            .find(|k| k.status == KeyStatus::Active)
            .ok_or_else(|| KeyError::Internal("the tenant has no active signing key".into()))?;
        let pkcs8 = self
            .master
            .decrypt(&active.private_encrypted, &active.id.0)
            .map_err(|e| KeyError::Internal(format!("signing key {}: {e}", active.id)))?;
        let at = now();
        let published: Vec<&SigningKey> = keys.iter().filter(|k| k.published(at)).collect();
        let verifiers =
            published.iter().filter_map(|k| Some((k.id.0.clone(), (k.algorithm, decoding_key(k)?)))).collect();
        let loaded = Arc::new(TenantKeys {
            loaded: Instant::now(),
            signer: (active.id.clone(), active.algorithm, encoding_key(active.algorithm, &pkcs8)),
            verifiers,
            jwks: json!({ "keys": published.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>() }),
        });
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(tenant, loaded.clone());
        Ok(loaded)
    }

    async fn keys(&self, tenant: TenantId) -> Result<Arc<TenantKeys>, KeyError> {
        match self.cached(tenant) {
            Some(k) if k.loaded.elapsed() < self.ttl => Ok(k),
            _ => self.load(tenant).await,
        }
    }

    /// The tenant's published public keys as a JWK Set.
    pub async fn jwks(&self, tenant: TenantId) -> Result<Value, KeyError> {
        Ok(self.keys(tenant).await?.jwks.clone())
    }

    /// Every key of the tenant, newest first, creating the first one if needed.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<SigningKey>, KeyError> {
        self.keys(tenant).await?;
        Ok(self.store.list(tenant).await?)
    }

    /// Makes a new key the tenant's active one; the old one keeps verifying.
    pub async fn rotate(&self, tenant: TenantId) -> Result<SigningKey, KeyError> {
        let new = NewSigningKey::generate(tenant, self.algorithm, &self.master, now()).map_err(KeyError::Internal)?;
        self.store.rotate(&new.key).await?;
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(&tenant);
        Ok(new.key)
    }

    /// Checks that the master key opens every active key, so a wrong key is found
    /// at start rather than at the first sign-in.
    pub async fn check_master_key(&self, tenants: &[TenantId]) -> Result<(), KeyError> {
        for tenant in tenants {
            for key in self.store.list(*tenant).await?.iter().filter(|k| k.status == KeyStatus::Active) {
                self.master
                    .decrypt(&key.private_encrypted, &key.id.0)
                    .map_err(|e| KeyError::Internal(format!("signing key {} of tenant {tenant}: {e}", key.id)))?;
            }
        }
        Ok(())
    }

    async fn verifier(&self, tenant: TenantId, kid: &str) -> Result<(SigningAlgorithm, DecodingKey), KeyError> {
        let keys = self.keys(tenant).await?;
        if let Some(found) = keys.verifiers.get(kid) {
            return Ok(found.clone());
        }
        // A key rotated in by another process: look again, but not for every forged kid.
        if keys.loaded.elapsed() < RELOAD_AT_MOST_EVERY {
            return Err(KeyError::InvalidToken);
        }
        self.load(tenant).await?.verifiers.get(kid).cloned().ok_or(KeyError::InvalidToken)
    }
}

/// The claims of a guard access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: UserId,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: Uuid,
    /// The session the token was issued for; it ends with it.
    pub sid: SessionId,
    /// The tenant's id.
    pub tid: TenantId,
    /// How the session was authenticated (RFC 8176), for resource servers and
    /// policies that demand a second factor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// When the user authenticated (the session's start), seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// Issues and checks access tokens (JWT).
#[derive(Clone)]
pub struct TokenService {
    keys: KeyService,
    public_url: Arc<str>,
}

impl TokenService {
    /// Tokens whose issuer is under `public_url`.
    pub fn new(keys: KeyService, public_url: &str) -> TokenService {
        TokenService { keys, public_url: public_url.trim_end_matches('/').into() }
    }

    /// The keys behind the tokens.
    pub fn keys(&self) -> &KeyService {
        &self.keys
    }

    /// The issuer of the tenant's tokens: `{public_url}/t/{slug}`.
    pub fn issuer(&self, tenant: &Tenant) -> String {
        format!("{}/t/{}", self.public_url, tenant.slug)
    }

    /// A signed access token for `user` in `session`, and its lifetime in seconds.
    pub async fn issue(&self, tenant: &Tenant, session: &Session) -> Result<(String, u64), KeyError> {
        let keys = self.keys.keys(tenant.id).await?;
        let (kid, algorithm, encoding) = &keys.signer;
        let lifetime = tenant.settings.access_token_lifetime_seconds;
        let iat = OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            iss: self.issuer(tenant),
            sub: session.user,
            aud: tenant.settings.access_token_audience.clone(),
            exp: iat.saturating_add_unsigned(lifetime),
            iat,
            nbf: iat,
            jti: Uuid::now_v7(),
            sid: session.id,
            tid: tenant.id,
            amr: session.amr.clone(),
            auth_time: Some(session.created_at.unix_timestamp()),
        };
        let mut header = Header::new(algorithm.jwt());
        header.kid = Some(kid.0.clone());
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(&header, &claims, encoding).map_err(|e| KeyError::Internal(e.to_string()))?;
        Ok((token, lifetime))
    }

    /// The claims of `token` when one of the tenant's published keys signed it for
    /// this tenant, issuer and audience, and it has not expired.
    pub async fn verify(&self, tenant: &Tenant, token: &str) -> Result<AccessClaims, KeyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| KeyError::InvalidToken)?;
        let kid = header.kid.ok_or(KeyError::InvalidToken)?;
        let (algorithm, key) = self.keys.verifier(tenant.id, &kid).await?;
        if header.alg != algorithm.jwt() {
            return Err(KeyError::InvalidToken);
        }
        let mut validation = Validation::new(algorithm.jwt());
        validation.set_issuer(&[self.issuer(tenant)]);
        validation.set_audience(&[&tenant.settings.access_token_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|_| KeyError::InvalidToken)?;
        if data.claims.tid != tenant.id {
            return Err(KeyError::InvalidToken);
        }
        Ok(data.claims)
    }
}
