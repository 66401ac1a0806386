//! The server loop with a bounded graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::Lifecycle;

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, marks
/// the process as draining (readiness turns 503), and waits for in-flight requests for
/// at most `drain_timeout` before returning anyway.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
    lifecycle: Lifecycle,
) -> std::io::Result<()> {
    let (drain_started_tx, drain_started) = tokio::sync::oneshot::channel::<()>();
    let graceful = async move {
        shutdown.await;
        lifecycle.begin_drain();
        tracing::info!(
            drain_timeout_seconds = drain_timeout.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        let _ = drain_started_tx.send(());
    };
    let server =
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(graceful);
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        joined = &mut server => flatten(joined),
        () = async {
            if drain_started.await.is_ok() {
                tokio::time::sleep(drain_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("drain timeout reached; closing the remaining connections");
            server.abort();
            Ok(())
        }
    }
}

fn flatten(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    match joined {
        Ok(result) => result,
        Err(e) => Err(std::io::Error::other(e)),
    }
}
