//! HTTPS: the certificate guard serves, read from PEM files and swapped in place when
//! the files change (or on SIGHUP), so a renewal needs no restart and cuts no
//! connection.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use guard_core::config::{TlsFiles, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

/// The gauge holding the expiry of the served certificate.
pub const EXPIRY_GAUGE: &str = "guard_certificate_expiry_timestamp_seconds";

static TLS12_AND_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The certificate and key new handshakes get. A handshake takes its own reference,
/// so replacing them leaves established connections on the one they started with.
pub struct CertificateStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertificateStore {
    pub fn new(key: CertifiedKey) -> CertificateStore {
        CertificateStore { current: ArcSwap::from_pointee(key) }
    }

    /// Loads `files` and records the certificate's expiry (gauge and log line).
    pub fn open(files: &TlsFiles) -> Result<CertificateStore, String> {
        let (key, leaf) = load_with_leaf(files)?;
        record_expiry(files, &leaf);
        tracing::info!(
            subject = %leaf.subject,
            not_after = %rfc3339(leaf.not_after),
            cert_file = %files.cert.display(),
            "TLS certificate loaded"
        );
        Ok(CertificateStore::new(key))
    }

    /// What new handshakes get from now on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// What a handshake starting now gets.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateStore")
            .field("chain_length", &self.current.load().cert.len())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The aws-lc-rs provider, named explicitly so no process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the PEM certificate chain (leaf first) and private key of `files`, and checks
/// the key belongs to the leaf. Errors name the file and the problem, never key bytes.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    load_with_leaf(files).map(|(key, _)| key)
}

/// [`load`], with the leaf certificate described.
pub fn load_with_leaf(files: &TlsFiles) -> Result<(CertifiedKey, CertificateInfo), String> {
    let cert_file = files.cert.display();
    let key_file = files.key.display();

    let chain_pem =
        std::fs::read(&files.cert).map_err(|e| format!("TLS_CERT_FILE {cert_file}: cannot read it: {e}"))?;
    let chain = read_chain(&chain_pem).map_err(|e| format!("TLS_CERT_FILE {cert_file}: {e}"))?;
    let leaf = match chain.first() {
        Some(der) => describe_der(der).map_err(|e| format!("TLS_CERT_FILE {cert_file}: first certificate: {e}"))?,
        None => return Err(format!("TLS_CERT_FILE {cert_file}: no certificate in it")),
    };

    let key_pem = std::fs::read(&files.key).map_err(|e| format!("TLS_KEY_FILE {key_file}: cannot read it: {e}"))?;
    // The parser's own messages are left out: they could quote part of the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            format!("TLS_KEY_FILE {key_file}: no private key in it (expected a PEM PKCS#8, SEC1 or PKCS#1 key)")
        }
        pem::Error::Io(e) => format!("TLS_KEY_FILE {key_file}: cannot read it: {e}"),
        _ => format!("TLS_KEY_FILE {key_file}: not a well-formed PEM private key"),
    })?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(|_| {
        format!("TLS_KEY_FILE {key_file}: unsupported private key (expected RSA, ECDSA P-256/P-384/P-521 or Ed25519)")
    })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok((certified, leaf)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(format!(
            "TLS_KEY_FILE {key_file} is not the private key of the certificate in TLS_CERT_FILE {cert_file}"
        )),
        Err(e) => Err(format!(
            "cannot check that TLS_KEY_FILE {key_file} belongs to the certificate in TLS_CERT_FILE {cert_file}: {e}"
        )),
    }
}

/// Every CERTIFICATE block of `pem`, in order; an error when there is none.
fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in it (expected PEM CERTIFICATE blocks, leaf first)".into());
    }
    Ok(chain)
}

/// The server configuration: aws-lc-rs, TLS 1.2 and 1.3 (or 1.3 alone), no client
/// certificates, HTTP/2 and HTTP/1.1 offered by ALPN, the certificate from `store`.
pub fn server_config(store: Arc<CertificateStore>, min: TlsVersion) -> Result<Arc<rustls::ServerConfig>, String> {
    let versions = match min {
        TlsVersion::V1_2 => TLS12_AND_13,
        TlsVersion::V1_3 => TLS13_ONLY,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What `guard cert list` shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The distinguished name, such as `CN=auth.example.com, O=Example`.
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    /// Lowercase hex, without separators.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
}

/// The certificates of the PEM chain at `chain_pem`, leaf first.
pub fn describe(chain_pem: &Path) -> Result<Vec<CertificateInfo>, String> {
    let file = chain_pem.display();
    let pem = std::fs::read(chain_pem).map_err(|e| format!("{file}: cannot read it: {e}"))?;
    let chain = read_chain(&pem).map_err(|e| format!("{file}: {e}"))?;
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| describe_der(der).map_err(|e| format!("{file}: certificate {} of {}: {e}", i + 1, chain.len())))
        .collect()
}

fn describe_der(der: &CertificateDer<'_>) -> Result<CertificateInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("invalid subjectAltName extension ({e})")),
    };
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        common_name,
        issuer: cert.issuer().to_string(),
        serial: hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        dns_names,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// Sets the expiry gauge of the certificate served from `files`.
fn record_expiry(files: &TlsFiles, leaf: &CertificateInfo) {
    metrics::describe_gauge!(
        EXPIRY_GAUGE,
        metrics::Unit::Seconds,
        "Expiry (Unix time) of certificates guard uses, by kind (tls) and name (subject common name or file name)."
    );
    let name = match &leaf.common_name {
        Some(cn) if !cn.is_empty() => cn.clone(),
        _ => files
            .cert
            .file_name()
            .map_or_else(|| files.cert.display().to_string(), |n| n.to_string_lossy().into_owned()),
    };
    metrics::gauge!(EXPIRY_GAUGE, "kind" => "tls", "name" => name).set(leaf.not_after.unix_timestamp() as f64);
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// What a change of either file changes: modification time, length and (on Unix) inode,
/// since renewal tools usually rename a new file over the old one.
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let of = |path: &Path| {
        std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), file_id(&m)))
    };
    [of(files.cert.as_path()), of(files.key.as_path())]
}

#[cfg(unix)]
fn file_id(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> u64 {
    0
}

/// Reloads `files` into `store` on SIGHUP, and when either file changes (checked every
/// `interval`), until `shutdown` turns true. A file that cannot be loaded is logged
/// and the certificate being served stays.
pub async fn watch(
    store: Arc<CertificateStore>,
    files: TlsFiles,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = interval.max(Duration::from_millis(10));
    let mut seen = stamp(&files);
    let mut hangup = hangup_signal();
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let reason = tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = poll.tick() => {
                let now = stamp(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "the files changed"
            }
            () = next_hangup(&mut hangup) => {
                seen = stamp(&files);
                "SIGHUP"
            }
        };
        reload(&store, &files, reason).await;
    }
}

async fn reload(store: &CertificateStore, files: &TlsFiles, reason: &'static str) {
    let owned = files.clone();
    match tokio::task::spawn_blocking(move || load_with_leaf(&owned)).await {
        Ok(Ok((key, leaf))) => {
            store.replace(key);
            record_expiry(files, &leaf);
            tracing::info!(
                reason,
                subject = %leaf.subject,
                not_after = %rfc3339(leaf.not_after),
                "TLS certificate reloaded"
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(reason, error = %e, "cannot reload the TLS certificate; still serving the previous one");
        }
        Err(e) => {
            tracing::warn!(reason, error = %e, "cannot reload the TLS certificate; still serving the previous one");
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificate files are still checked for changes");
            None
        }
    }
}

/// Completes on the next SIGHUP; never when there is no signal to wait for.
#[cfg(unix)]
async fn next_hangup(signal: &mut Hangup) {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending::<()>().await;
}

#[cfg(not(unix))]
type Hangup = ();

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending::<()>().await;
}
