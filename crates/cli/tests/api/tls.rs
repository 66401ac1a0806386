//! HTTPS served by guard itself: the configured certificate and ALPN, renewed files
//! picked up (by polling or on SIGHUP) without a failed request or a dropped
//! connection, a renewal that cannot be loaded changing nothing, TLS_MIN_VERSION,
//! certificates `serve` refuses to start with, and the size and time limits of a
//! request's head. Certificates are made by openssl. SQLite only: nothing here touches
//! the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use guard_testkit::{Backend, GuardCommand, TestApp, TestAppBuilder};
use reqwest::tls::{TlsInfo, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{GUARD, test_routes};

/// A self-signed certificate made by openssl, and its key.
pub(crate) struct TestCert {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pem: Vec<u8>,
    /// The certificate as a server presents it.
    der: Vec<u8>,
}

impl TestCert {
    /// A P-256 certificate for CN=`cn`, valid 30 days for localhost and 127.0.0.1.
    /// Not a CA (openssl's default for -x509): clients refuse a CA certificate as a
    /// server's own, but trust a self-signed leaf given to them as a root.
    pub(crate) fn create(dir: &Path, name: &str, cn: &str) -> TestCert {
        let config = dir.join(format!("{name}.cnf"));
        std::fs::write(
            &config,
            format!(
                "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n\
                 [dn]\nCN = {cn}\n\
                 [ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
                 extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n"
            ),
        )
        .unwrap();
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "30", "-config"])
            .arg(&config)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(output.status.success(), "openssl: {}", String::from_utf8_lossy(&output.stderr));
        let pem = std::fs::read(&cert).unwrap();
        let der = pem_body(&pem);
        TestCert { cert, key, pem, der }
    }

    fn root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&self.pem).unwrap()
    }
}

/// The bytes of the one PEM block in `pem`.
fn pem_body(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let body: String = text.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn path_text(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// guard serving `cert` from its own files.
fn tls_app(cert: &TestCert) -> TestAppBuilder {
    TestApp::builder(Backend::Sqlite)
        .env("TLS_CERT_FILE", path_text(&cert.cert))
        .env("TLS_KEY_FILE", path_text(&cert.key))
}

/// The files guard is configured with, which a renewal replaces.
struct Served {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Served {
    fn new(dir: &Path) -> Served {
        Served { cert: dir.join("tls.crt"), key: dir.join("tls.key") }
    }

    fn app(&self) -> TestAppBuilder {
        TestApp::builder(Backend::Sqlite)
            .env("TLS_CERT_FILE", path_text(&self.cert))
            .env("TLS_KEY_FILE", path_text(&self.key))
    }

    /// Puts `cert` in place as renewal tools do: the certificate first, then the key,
    /// each written under a temporary name and renamed over the served file.
    fn install(&self, cert: &TestCert) {
        replace(&self.cert, &std::fs::read(&cert.cert).unwrap());
        replace(&self.key, &std::fs::read(&cert.key).unwrap());
    }
}

fn replace(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A client trusting exactly `roots`, that reports the certificate each response came
/// over.
fn client(roots: &[&TestCert]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only(roots.iter().map(|cert| cert.root()))
        .tls_info(true)
        .timeout(Duration::from_secs(10))
}

/// Clients trusting `roots`, a new one (so a new connection and a full handshake,
/// never a resumed TLS session, which would report the certificate of the session it
/// resumes) for every request.
#[derive(Clone)]
struct FreshClients(Vec<reqwest::Certificate>);

impl FreshClients {
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only(self.0.clone())
            .tls_info(true)
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    fn get(&self, url: String) -> reqwest::RequestBuilder {
        self.client().get(url)
    }
}

fn fresh_client(roots: &[&TestCert]) -> FreshClients {
    FreshClients(roots.iter().map(|cert| cert.root()).collect())
}

/// `error` and its sources, one after another.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// GET `url` expecting 200: the certificate the server presented, or what went wrong.
async fn served_certificate(clients: &FreshClients, url: &str) -> Result<Vec<u8>, String> {
    let response = clients.client().get(url).send().await.map_err(|e| error_chain(&e))?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let info = response.extensions().get::<TlsInfo>().ok_or("no TLS information")?;
    info.peer_certificate().map(<[u8]>::to_vec).ok_or_else(|| "no server certificate".to_owned())
}

fn tls_version(response: &reqwest::Response) -> Option<Version> {
    response.extensions().get::<TlsInfo>().and_then(TlsInfo::version)
}

/// Waits (10 s at most) until a new connection to `url` gets `expected`; how long that
/// took.
async fn wait_until_served(client: &FreshClients, url: &str, expected: &TestCert) -> Duration {
    let started = Instant::now();
    loop {
        let served = served_certificate(client, url).await;
        if served.as_deref() == Ok(expected.der.as_slice()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not served after 10 s; last answer: {served:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample whose name-and-labels text is exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What `openssl s_client` reports of a handshake offering ALPN `protocols`.
async fn s_client(addr: SocketAddr, protocols: &str) -> String {
    let target = addr.to_string();
    let output = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", target.as_str(), "-servername", "localhost", "-alpn", protocols])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run openssl s_client");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_configured_certificate_and_offers_h2_and_http_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "guard-test-a");
    let Some(app) = tls_app(&a).spawn().await else { return };
    assert_eq!(app.base, format!("https://{}", app.addr));

    let client = client(&[&a]).build().unwrap();
    let response = client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let info = response.extensions().get::<TlsInfo>().unwrap();
    assert_eq!(info.peer_certificate(), Some(a.der.as_slice()));
    assert_eq!(app.get("/health/live").await.status(), 200, "the testkit's client trusts the test certificate");

    assert!(s_client(app.addr, "h2").await.contains("ALPN protocol: h2"));
    assert!(s_client(app.addr, "http/1.1").await.contains("ALPN protocol: http/1.1"));

    // Plain HTTP on the HTTPS port fails its handshake; the server goes on accepting.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/health/live", app.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {:?}", plain.map(|r| r.status()));
    assert_eq!(client.get(app.url("/health/live")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_files_are_served_without_a_failed_request_or_a_dropped_connection() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "localhost");
    let b = TestCert::create(dir.path(), "b", "guard-renewed-b");
    let served = Served::new(dir.path());
    served.install(&a);
    let Some(app) = served.app().env("TLS_RELOAD_INTERVAL", "200ms").routes(test_routes()).spawn().await else {
        return;
    };
    let fresh = fresh_client(&[&a, &b]);
    let live = app.url("/health/live");
    assert_eq!(served_certificate(&fresh, &live).await, Ok(a.der.clone()));

    // A request on a connection opened before the renewal and still busy after it. Its
    // client trusts A alone: a new handshake would fail once B is served.
    let slow = tokio::spawn({
        let (client, url) = (client(&[&a]).build().unwrap(), app.url("/test/slow?ms=5000"));
        async move {
            let response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
            let certificate =
                response.extensions().get::<TlsInfo>().and_then(TlsInfo::peer_certificate).map(<[u8]>::to_vec);
            let status = response.status();
            let body = response.text().await.map_err(|e| error_chain(&e))?;
            Ok::<_, String>((status, certificate, body))
        }
    });

    // New connections, one after another, all through the renewal.
    let stop = Arc::new(AtomicBool::new(false));
    let requests = tokio::spawn({
        let (client, url, stop) = (fresh.clone(), live.clone(), stop.clone());
        let (a_der, b_der) = (a.der.clone(), b.der.clone());
        async move {
            let (mut on_a, mut on_b, mut failures) = (0_u32, 0_u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match served_certificate(&client, &url).await {
                    Ok(der) if der == a_der => on_a += 1,
                    Ok(der) if der == b_der => on_b += 1,
                    Ok(_) => failures.push("a certificate that is neither A nor B".to_owned()),
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (on_a, on_b, failures)
        }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    served.install(&b);
    wait_until_served(&fresh, &live, &b).await;
    assert!(!slow.is_finished(), "the slow request ended before B was served: the test would prove nothing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (on_a, on_b, failures) = requests.await.unwrap();
    assert!(failures.is_empty(), "{} requests failed across the renewal: {failures:?}", failures.len());
    assert!(on_a > 0 && on_b > 0, "requests served with A: {on_a}, with B: {on_b}");

    let (status, certificate, body) = slow.await.unwrap().expect("the busy connection survives the renewal");
    assert_eq!((status.as_u16(), body.as_str()), (200, "done"));
    assert_eq!(certificate.as_deref(), Some(a.der.as_slice()), "and keeps the certificate it began with");

    let metrics = fresh.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let expiry = guard_api::tls::describe(&b.cert).unwrap()[0].not_after.unix_timestamp() as f64;
    let series = r#"guard_certificate_expiry_timestamp_seconds{kind="tls",name="guard-renewed-b"}"#;
    assert_eq!(sample(&metrics, series), Some(expiry), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_cannot_be_loaded_leaves_the_served_certificate_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "localhost");
    let b = TestCert::create(dir.path(), "b", "guard-late-renewal-b");
    let served = Served::new(dir.path());
    served.install(&a);
    let Some(app) = served.app().env("TLS_RELOAD_INTERVAL", "200ms").spawn().await else { return };
    let fresh = fresh_client(&[&a, &b]);
    let live = app.url("/health/live");

    // B's certificate with A's key, then no certificate at all: each checked five times.
    replace(&served.cert, &std::fs::read(&b.cert).unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(served_certificate(&fresh, &live).await, Ok(a.der.clone()), "after a key mismatch");
    replace(&served.cert, b"not a certificate\n");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(served_certificate(&fresh, &live).await, Ok(a.der.clone()), "after an unreadable certificate");

    served.install(&b);
    wait_until_served(&fresh, &live, &b).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_at_once() {
    // Listening here too makes sure a handler is installed before the signal is sent:
    // without one, SIGHUP would end the test process.
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "localhost");
    let b = TestCert::create(dir.path(), "b", "guard-hangup-b");
    let served = Served::new(dir.path());
    served.install(&a);
    let Some(app) = served.app().env("TLS_RELOAD_INTERVAL", "1h").spawn().await else { return };
    let fresh = fresh_client(&[&a, &b]);
    let live = app.url("/health/live");

    served.install(&b);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(served_certificate(&fresh, &live).await, Ok(a.der.clone()), "files are checked hourly only");
    let pid = std::process::id().to_string();
    let sent = Command::new("kill").args(["-HUP", pid.as_str()]).status().unwrap();
    assert!(sent.success());
    let waited = wait_until_served(&fresh, &live, &b).await;
    assert!(waited < Duration::from_secs(5), "B served {waited:?} after SIGHUP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_1_3_refuses_a_tls_1_2_client() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "guard-test-versions");
    let tls12 = client(&[&a]).tls_version_max(Version::TLS_1_2).build().unwrap();
    let tls13 = client(&[&a]).tls_version_min(Version::TLS_1_3).build().unwrap();

    // The default minimum, 1.2, lets the same client in: the refusal below is the
    // setting's doing.
    let Some(default) = tls_app(&a).spawn().await else { return };
    let response = tls12.get(default.url("/health/live")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(tls_version(&response), Some(Version::TLS_1_2));
    drop(default);

    let Some(app) = tls_app(&a).env("TLS_MIN_VERSION", "1.3").spawn().await else { return };
    let refused = tls12.get(app.url("/health/live")).send().await.expect_err("a TLS 1.2 client is refused");
    let why = format!("{refused:?} / {}", error_chain(&refused));
    assert!(why.contains("ProtocolVersion"), "refused with a protocol_version alert: {why}");
    let response = tls13.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(tls_version(&response), Some(Version::TLS_1_3));
}

#[test]
fn serve_refuses_to_start_with_certificate_files_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "guard-test-a");
    let b = TestCert::create(dir.path(), "b", "guard-test-b");
    let missing = dir.path().join("missing.crt");
    let cases = [
        (
            &a.cert,
            &b.key,
            format!(
                "TLS_KEY_FILE {} is not the private key of the certificate in TLS_CERT_FILE {}",
                b.key.display(),
                a.cert.display()
            ),
        ),
        (&a.cert, &a.cert, format!("TLS_KEY_FILE {}: no private key in it", a.cert.display())),
        (&missing, &a.key, format!("TLS_CERT_FILE {}: cannot read it", missing.display())),
        (&a.key, &a.key, format!("TLS_CERT_FILE {}: no certificate in it", a.key.display())),
    ];
    for (cert, key, expected) in cases {
        let guard = GuardCommand::new(GUARD).env("TLS_CERT_FILE", path_text(cert)).env("TLS_KEY_FILE", path_text(key));
        let output = guard.run_for(&["serve", "--listen", "127.0.0.1:0"], Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&expected), "expected {expected:?} in: {stderr}");
        for key_file in [&a.key, &b.key] {
            let key_text = std::fs::read_to_string(key_file).unwrap();
            for line in key_text.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16) {
                assert!(!stderr.contains(line), "key material in: {stderr}");
            }
        }
    }
}

/// GET /health/live on a new plain connection with an X-Fill field of `fill` bytes:
/// a head of 75 + `fill` bytes. The status line, or "" when the connection closed
/// without one.
async fn status_line(addr: SocketAddr, fill: usize) -> String {
    let head = format!(
        "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(fill)
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server refusing a large head may close before reading all of it.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "no answer to a head of {} bytes within 10 s", head.len());
    String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_guard_header_limit_gets_431_and_guard_keeps_serving() {
    let Some(app) = TestApp::builder(Backend::Sqlite).env("GUARD_HEADER_LIMIT", "4KiB").spawn().await else { return };
    assert_eq!(status_line(app.addr, 4096 - 75).await, "HTTP/1.1 200 OK", "a head of exactly the limit");
    assert_eq!(status_line(app.addr, 4096 - 75 + 1).await, "HTTP/1.1 431 Request Header Fields Too Large");
    // Far past the read buffer: refused while it is still being read.
    let huge = status_line(app.addr, 200_000).await;
    assert!(huge.is_empty() || huge == "HTTP/1.1 431 Request Header Fields Too Large", "{huge:?}");
    assert_eq!(app.get("/health/live").await.status(), 200);
}

/// Connects, sends `sent`, and waits (10 s at most) for guard to close the connection:
/// how long that took.
async fn closed_after(addr: SocketAddr, sent: &str) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(sent.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "{sent:?}: still open after 10 s");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_guard_header_timeout_is_disconnected() {
    let Some(app) = TestApp::builder(Backend::Sqlite).env("GUARD_HEADER_TIMEOUT", "1s").spawn().await else { return };
    // Silent after connecting, and stalled halfway through the head.
    for sent in ["", "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"] {
        let waited = closed_after(app.addr, sent).await;
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{sent:?}: closed after {waited:?}"
        );
    }
    assert_eq!(app.get("/health/live").await.status(), 200);

    // A TLS handshake that never starts.
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::create(dir.path(), "a", "guard-test-timeout");
    let Some(app) = tls_app(&a).env("GUARD_HEADER_TIMEOUT", "1s").spawn().await else { return };
    let waited = closed_after(app.addr, "").await;
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "closed after {waited:?}");
    assert_eq!(app.get("/health/live").await.status(), 200);
}
