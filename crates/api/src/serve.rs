//! The server loop: plain HTTP or HTTPS, request heads limited in size and in time,
//! and a bounded graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use guard_proto::{ErrorCode, Problem};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Lifecycle;
use crate::raw_problem::ProblemIo;

/// How the server talks to clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// HTTPS with this configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Largest request head (request line and header fields) in bytes; larger gets 431.
    pub header_limit: usize,
    /// Longest time for a TLS handshake, and for a request's head to arrive.
    pub header_timeout: Duration,
}

impl ServeOptions {
    /// The limits of `server`, over `tls` when given.
    pub fn new(server: &guard_core::config::ServerConfig, tls: Option<Arc<rustls::ServerConfig>>) -> ServeOptions {
        ServeOptions { tls, header_limit: server.header_limit, header_timeout: server.header_timeout }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// hyper refuses read buffers smaller than this.
const MIN_BUF_SIZE: usize = 8192;

/// Wait after an accept error that is not the client's doing (EMFILE, ENOMEM), so a
/// full file table is not retried in a tight loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, marks
/// the process as draining (readiness turns 503), and waits for in-flight requests for
/// at most `drain_timeout` before closing what is left and returning.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
    lifecycle: Lifecycle,
    options: ServeOptions,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(options.header_limit, limit_head));
    let builder = Arc::new(connection_builder(&options));
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot accept connections; retrying");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                }
            }
        };
        // Responses and handshake messages go out at once rather than wait on Nagle.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            peer,
            header_timeout: options.header_timeout,
        };
        match &acceptor {
            Some(acceptor) => connections.spawn(connection.serve_tls(acceptor.clone(), stream)),
            None => connections.spawn(connection.serve(stream)),
        };
    }

    // Closed at once, so new connections are refused rather than left waiting.
    drop(listener);
    lifecycle.begin_drain();
    tracing::info!(
        drain_timeout_seconds = drain_timeout.as_secs_f64(),
        connections = connections.len(),
        "shutting down: draining in-flight requests"
    );
    let drain = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout(drain_timeout, drain).await.is_err() {
        tracing::warn!(connections = connections.len(), "drain timeout reached; closing the remaining connections");
        connections.shutdown().await;
    }
    Ok(())
}

/// HTTP/1.1 and HTTP/2 (chosen by the client's first bytes), with the head limits.
fn connection_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        // The whole head must fit the read buffer. hyper's floor is 8 KiB; limit_head
        // enforces smaller limits.
        .max_buf_size(options.header_limit.max(MIN_BUF_SIZE))
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.header_limit).unwrap_or(u32::MAX));
    builder
}

/// Errors of one connection attempt (the client gave up), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// 431 `headers_too_large` for a head over the limit, measured as HTTP/1.1 sends it.
/// hyper's own check cannot go below 8 KiB, and HTTP/2 counts differently.
async fn limit_head(State(limit): State<usize>, request: Request, next: Next) -> Response {
    if head_size(&request) > limit {
        let problem = Problem::new(ErrorCode::HeadersTooLarge).with_detail(format!(
            "the request line and header fields are larger than this server accepts ({limit} bytes)"
        ));
        return crate::error::problem_response(problem, None);
    }
    next.run(request).await
}

/// `METHOD target HTTP/1.1\r\n`, a `name: value\r\n` per field, and the closing `\r\n`.
fn head_size(request: &Request) -> usize {
    let target = request.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + fields + 2
}

/// One accepted connection, until it is served.
struct Connection {
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    peer: SocketAddr,
    header_timeout: Duration,
}

impl Connection {
    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream) {
        // Bounded, or sockets that never finish a handshake would pile up.
        match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve(tls).await,
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { app, builder, watcher, peer, header_timeout } = self;
        let requested = Arc::new(AtomicBool::new(false));
        let seen = requested.clone();
        let service = ServiceExt::<Request>::map_request(app, move |mut request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            // Handlers and middleware read the client's address from here.
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(Body::new)
        });
        // Owned, so the task holds no borrow of the shared builder across awaits.
        let connection =
            // hyper's own answers to heads it cannot parse are rewritten as problems.
            builder
                .serve_connection_with_upgrades(TokioIo::new(ProblemIo::new(io)), TowerToHyperService::new(service))
                .into_owned();
        let mut connection = std::pin::pin!(watcher.watch(connection));
        // hyper's header timeout starts only once HTTP/1 is recognised, and HTTP/2 has
        // none: a client that sends no request at all is closed here.
        let first = tokio::select! {
            result = connection.as_mut() => Some(result),
            () = tokio::time::sleep(header_timeout) => None,
        };
        let result = match first {
            Some(result) => result,
            None if !requested.load(Ordering::Relaxed) => {
                tracing::debug!(peer = %peer, "no request within the header timeout; closing the connection");
                return;
            }
            None => connection.await,
        };
        if let Err(e) = result {
            tracing::debug!(peer = %peer, error = %e, "connection closed with an error");
        }
    }
}
