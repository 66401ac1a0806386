//! The benchmark baseline: an axum server with one empty handler and no middleware,
//! on the same runtime settings as guard. Figures for guard are read against it, so
//! they compare across machines.
//!
//! `cargo run --release --example empty_axum -- 127.0.0.1:18081`

#![allow(clippy::expect_used)] // a benchmark tool: fail loudly

use axum::Router;
use axum::routing::get;

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        let app = Router::new().route("/health", get(|| async {}));
        axum::serve(listener, app).await.expect("serve");
    });
}
