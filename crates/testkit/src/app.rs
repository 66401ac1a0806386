//! [`TestApp`]: the real server, in-process, on a random port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use guard_api::metrics::Metrics;
use guard_api::{AppState, ServeOptions, routes, with_middleware};
use guard_core::config::ConfigLoader;
use guard_store::redis::Redis;

use crate::services::PostgresDatabase;

/// The database engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test.
pub(crate) enum TestDatabase {
    Sqlite(tempfile::TempDir),
    Postgres(PostgresDatabase),
    /// Another TestApp's database, which that app owns.
    Shared(String),
}

impl TestDatabase {
    pub(crate) async fn create(backend: Backend) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => Some(TestDatabase::Sqlite(tempfile::tempdir().expect("temp dir"))),
            Backend::Postgres => PostgresDatabase::create().await.map(TestDatabase::Postgres),
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(dir) => format!("sqlite://{}/guard.db", dir.path().display()),
            TestDatabase::Postgres(db) => db.url.clone(),
            TestDatabase::Shared(url) => url.clone(),
        }
    }
}

/// Rewrites a database URL (for example to point it at a proxy).
type UrlRewrite = Box<dyn FnOnce(&str) -> String + Send>;

/// Configures a [`TestApp`] before it starts.
pub struct TestAppBuilder {
    backend: Backend,
    env: HashMap<String, String>,
    routes: Option<Router<AppState>>,
    database_url: Option<UrlRewrite>,
    shared: Option<String>,
}

impl TestAppBuilder {
    /// Uses `other`'s database instead of a fresh one, as a second replica would.
    pub fn share_database_of(mut self, other: &TestApp) -> TestAppBuilder {
        self.shared = Some(other.database_url.clone());
        self
    }

    /// Sets a configuration variable, as the environment would.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> TestAppBuilder {
        self.env.insert(key.to_owned(), value.into());
        self
    }

    /// Adds routes (behind guard's own middleware) for tests that need handlers guard
    /// does not have, such as one that panics.
    pub fn routes(mut self, routes: Router<AppState>) -> TestAppBuilder {
        self.routes = Some(routes);
        self
    }

    /// Rewrites the fresh database's URL before guard sees it (for example to route it
    /// through a [`crate::TcpProxy`]).
    pub fn database_url(mut self, rewrite: impl FnOnce(&str) -> String + Send + 'static) -> TestAppBuilder {
        self.database_url = Some(Box::new(rewrite));
        self
    }

    /// Creates the database, applies migrations and starts serving. `None` means the
    /// backend is unavailable here and the test should end (the reason is printed).
    pub async fn spawn(self) -> Option<TestApp> {
        let database = match self.shared {
            Some(url) => TestDatabase::Shared(url),
            None => TestDatabase::create(self.backend).await?,
        };
        let mut env = self.env;
        let real_url = database.url();
        let url = match self.database_url {
            Some(rewrite) => rewrite(&real_url),
            None => real_url.clone(),
        };
        env.entry("DATABASE_URL".into()).or_insert(url);
        env.entry("GUARD_LISTEN".into()).or_insert_with(|| "127.0.0.1:0".into());
        env.entry("LOG_LEVEL".into()).or_insert_with(|| "warn".into());
        // Tests sign in, and fail, far more often than a person: limits and brute-force
        // protection are off unless a test turns them on.
        env.entry("RATE_LIMIT_ENABLED".into()).or_insert_with(|| "false".into());
        env.entry("BRUTE_FORCE_PROTECTION".into()).or_insert_with(|| "false".into());
        env.entry("GUARD_MASTER_KEY".into()).or_insert_with(|| crate::TEST_MASTER_KEY.into());
        let config = ConfigLoader::isolated(env).load().unwrap_or_else(|e| panic!("test configuration: {e}")).config;

        let listener = tokio::net::TcpListener::bind(config.server.listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = Metrics::install().expect("metrics");
        // HTTPS as `guard serve` does it when TLS_CERT_FILE and TLS_KEY_FILE are set.
        let certificates = config.tls.files.as_ref().map(|files| {
            let store = guard_api::tls::CertificateStore::open(files).unwrap_or_else(|e| panic!("TLS: {e}"));
            (std::sync::Arc::new(store), files.clone())
        });
        let tls = certificates.as_ref().map(|(store, _)| {
            guard_api::tls::server_config(store.clone(), config.tls.min_version).unwrap_or_else(|e| panic!("TLS: {e}"))
        });
        let options = ServeOptions::new(&config.server, tls);
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some((_, files)) = &certificates {
            // The test certificate is self-signed: trusted as its own root.
            let pem = std::fs::read(&files.cert).expect("read TLS_CERT_FILE");
            http = http.tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("TLS_CERT_FILE certificate")]);
        }
        let reload_interval = config.tls.reload_interval;
        let db = guard_store::open(&config.database).await.expect("open database");
        db.migrations.up().await.expect("migrate");
        let audit = guard_api::audit_log(&config, &db).expect("audit log");
        guard_core::tenants::TenantService::new(db.tenants.clone(), audit)
            .ensure_default()
            .await
            .expect("default tenant");
        let redis = Redis::open(&config.redis).expect("redis");
        let drain = config.server.shutdown_timeout;
        let state = AppState::new(config, db, redis, metrics, Instant::now()).expect("state");
        let routes = match self.routes {
            Some(extra) => routes().merge(extra),
            None => routes(),
        };
        let app = with_middleware(routes, state.clone());
        let (stop_outbox, outbox_stop) = tokio::sync::watch::channel(false);
        tokio::spawn(state.audit.clone().run_sealer(std::time::Duration::from_secs(1), outbox_stop.clone()));
        tokio::spawn(state.authz.clone().run_refresher(state.config.authz.refresh_interval, outbox_stop.clone()));
        if let Some(sink) = &state.config.audit.delivery {
            let deliverer =
                guard_core::audit::Deliverer::new(state.audit.clone(), sink.clone(), state.config.audit.delivery_start)
                    .expect("deliverer");
            tokio::spawn(deliverer.run(outbox_stop.clone()));
        }
        if let Some((store, files)) = certificates {
            tokio::spawn(guard_api::tls::watch(store, files, reload_interval, outbox_stop.clone()));
        }
        if let Some(url) = &state.config.smtp.url {
            let mailer = guard_core::email::SmtpMailer::new(url.expose(), &state.config.smtp.from).expect("mailer");
            tokio::spawn(state.accounts.outbox().clone().run(mailer, outbox_stop));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheme = options.scheme();
        let server = tokio::spawn(guard_api::serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            drain,
            state.lifecycle.clone(),
            options,
        ));
        Some(TestApp {
            addr,
            base: format!("{scheme}://{addr}"),
            http: http.build().expect("client"),
            state,
            database_url: real_url,
            stop: Some(stop),
            _stop_outbox: stop_outbox,
            server: Some(server),
            _database: database,
        })
    }
}

/// A running guard with its own database. Dropping it stops the server and removes the
/// database.
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, or `https://` when TLS_CERT_FILE is set.
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    /// The database's own URL (not rewritten), for checking what guard wrote.
    pub database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Dropping it stops the outbox sender.
    _stop_outbox: tokio::sync::watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _database: TestDatabase,
}

impl TestApp {
    /// A builder for `backend` with default configuration.
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder { backend, env: HashMap::new(), routes: None, database_url: None, shared: None }
    }

    /// Starts guard on `backend` with default configuration.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        TestApp::builder(backend).spawn().await
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// Begins a graceful shutdown, as SIGTERM would, without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the server loop to return after [`TestApp::begin_shutdown`].
    pub async fn wait_stopped(&mut self) -> std::io::Result<()> {
        match self.server.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
