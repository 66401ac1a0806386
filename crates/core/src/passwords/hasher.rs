//! Argon2id hashing. Hashing is deliberately slow CPU work, so it runs on blocking
//! threads, at most one per CPU at a time: a burst of logins queues here instead of
//! taking every thread the async runtime and the health endpoints need.

use std::sync::Arc;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

/// Argon2id cost parameters. The defaults are OWASP's recommendation
/// (m = 19456 KiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> HashParams {
        HashParams { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub valid: bool,
    /// The hash was made with other parameters than today's: store a new one.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    argon2: Arc<Argon2<'static>>,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified when there is no account, so an unknown
    /// email takes as long as a wrong password.
    decoy: Arc<String>,
}

/// Hashing failed: bad parameters, or a stored hash that is not a PHC string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(pub String);

impl PasswordHasher {
    /// A hasher with `params`, running at most `threads` hashes at once (at least 1).
    pub fn new(params: HashParams, threads: usize) -> Result<PasswordHasher, HashError> {
        let argon_params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| HashError(e.to_string()))?;
        let decoy = decoy_hash(&argon_params)?;
        let argon2 = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params));
        Ok(PasswordHasher { params, argon2, permits: Arc::new(Semaphore::new(threads.max(1))), decoy: Arc::new(decoy) })
    }

    /// A hasher with one thread per CPU.
    pub fn per_cpu(params: HashParams) -> Result<PasswordHasher, HashError> {
        let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        PasswordHasher::new(params, cpus)
    }

    /// The parameters new hashes are made with.
    pub fn params(&self) -> HashParams {
        self.params
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || work(&argon2)).await.map_err(|e| HashError(e.to_string()))
    }

    /// The PHC string (`$argon2id$v=19$m=…`) of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move |argon2| argon2.hash_password(password.as_bytes()).map(|h| h.to_string()))
            .await?
            .map_err(|e| HashError(e.to_string()))
    }

    /// Checks `password` against `stored`, in constant time for the comparison.
    pub async fn verify(&self, password: String, stored: String) -> Result<Verification, HashError> {
        let current = self.params;
        self.run(move |argon2| {
            let parsed = PasswordHash::new(&stored).map_err(|e| HashError(e.to_string()))?;
            let valid = argon2.verify_password(password.as_bytes(), &parsed).is_ok();
            let needs_rehash = Params::try_from(&parsed).map_or(true, |p| {
                parsed.algorithm.as_str() != "argon2id"
                    || (p.m_cost(), p.t_cost(), p.p_cost())
                        != (current.memory_kib, current.iterations, current.parallelism)
            });
            Ok(Verification { valid, needs_rehash })
        })
        .await?
    }

    /// Spends the time of one verification, for a sign-in with no account behind it.
    pub async fn verify_decoy(&self, password: String) -> Result<(), HashError> {
        self.verify(password, self.decoy.as_str().to_owned()).await.map(|_| ())
    }
}

/// A PHC string with `params`, a random salt and a random output. Verifying against it
/// costs one full hash, as against a real one, and no password matches it. It is made
/// without hashing, so that start-up neither waits for Argon2 nor keeps its working
/// memory (19 MiB by default) in the allocator.
fn decoy_hash(params: &Params) -> Result<String, HashError> {
    let error = |e: &dyn std::fmt::Display| HashError(e.to_string());
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    getrandom::fill(&mut salt).map_err(|e| error(&e))?;
    getrandom::fill(&mut output).map_err(|e| error(&e))?;
    let decoy = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| error(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| error(&e))?),
        hash: Some(Output::new(&output).map_err(|e| error(&e))?),
    };
    Ok(decoy.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests stay fast; the defaults are pinned separately.
    fn cheap() -> HashParams {
        HashParams { memory_kib: 1024, iterations: 1, parallelism: 1 }
    }

    #[test]
    fn defaults_are_the_owasp_parameters() {
        assert_eq!(HashParams::default(), HashParams { memory_kib: 19_456, iterations: 2, parallelism: 1 });
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_salts_differ() {
        let hasher = PasswordHasher::new(cheap(), 2).unwrap();
        let hash = hasher.hash("correct horse battery staple".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        let ok = hasher.verify("correct horse battery staple".into(), hash.clone()).await.unwrap();
        assert_eq!(ok, Verification { valid: true, needs_rehash: false });
        let wrong = hasher.verify("correct horse battery stable".into(), hash.clone()).await.unwrap();
        assert!(!wrong.valid);
        let again = hasher.hash("correct horse battery staple".into()).await.unwrap();
        assert_ne!(hash, again, "a fresh salt every time");
    }

    #[tokio::test]
    async fn hashes_made_with_older_parameters_ask_to_be_rehashed() {
        let old = PasswordHasher::new(HashParams { memory_kib: 512, iterations: 1, parallelism: 1 }, 1).unwrap();
        let hash = old.hash("a long enough passphrase".into()).await.unwrap();
        let current = PasswordHasher::new(cheap(), 1).unwrap();
        let checked = current.verify("a long enough passphrase".into(), hash).await.unwrap();
        assert_eq!(checked, Verification { valid: true, needs_rehash: true });
    }

    #[tokio::test]
    async fn a_stored_value_that_is_not_a_phc_string_is_an_error_not_a_match() {
        let hasher = PasswordHasher::new(cheap(), 1).unwrap();
        assert!(hasher.verify("x".into(), "plaintext".into()).await.is_err());
        hasher.verify_decoy("anything".into()).await.unwrap();
    }

    #[tokio::test]
    async fn the_decoy_costs_what_a_real_hash_costs_and_matches_nothing() {
        let hasher = PasswordHasher::new(cheap(), 1).unwrap();
        let real = hasher.hash("a long enough passphrase".into()).await.unwrap();
        let (decoy, real) = (PasswordHash::new(&hasher.decoy).unwrap(), PasswordHash::new(&real).unwrap());
        // Verification runs Argon2 with the stored hash's algorithm, parameters and
        // output length: the same as a real hash's, so it takes as long.
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.version, real.version);
        assert_eq!(Params::try_from(&decoy).unwrap(), Params::try_from(&real).unwrap());
        assert_eq!(decoy.salt.unwrap().len(), real.salt.unwrap().len());
        assert_eq!(decoy.hash.unwrap().len(), real.hash.unwrap().len());
        let checked = hasher.verify(String::new(), hasher.decoy.to_string()).await.unwrap();
        assert_eq!(checked, Verification { valid: false, needs_rehash: false });
        assert_ne!(hasher.decoy, PasswordHasher::new(cheap(), 1).unwrap().decoy, "a random salt and output");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_configured_number_of_hashes_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hasher = PasswordHasher::new(cheap(), 2).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (hasher, running, most) = (hasher.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    hasher
                        .run(move |_| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            // Long enough that, unbounded, all eight would overlap.
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
