//! castgate: an RTMP ingest gateway.
//!
//! Protocol cores (`rtmp`, `media`) are sans-I/O; `transport` owns
//! listeners; `server` runs sessions over byte streams and connects them to
//! the `hub`, which fans each live stream out to its consumers.

pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod media;
pub mod package;
pub mod rtmp;
pub mod server;
pub mod transport;

use std::sync::Arc;

use tokio::net::TcpListener;

/// Binds every listener, then serves until the process is told to stop.
/// Bind errors are returned (and name the address) before anything runs.
pub async fn run(config: config::Config) -> std::io::Result<()> {
    let rtmp_addr = config.rtmp.listen;
    let max_connections = config.rtmp.max_connections;
    let listener = TcpListener::bind(rtmp_addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for RTMP on {rtmp_addr}: {e}"),
        )
    })?;
    let http_addr = config.http.listen;
    let http_listener = TcpListener::bind(http_addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for HTTP on {http_addr}: {e}"),
        )
    })?;
    tracing::info!(listen = %listener.local_addr()?, "RTMP listening");
    tracing::info!(listen = %http_listener.local_addr()?, "HTTP listening");
    let ctx = server::ServerContext::new(config);
    let app = http::router(http::HttpState {
        store: ctx.packager.store().clone(),
    });
    let rtmp = transport::tcp::serve(listener, max_connections, move |socket, peer| {
        server::serve_connection(socket, peer, "rtmp", Arc::clone(&ctx))
    });
    let http = axum::serve(http_listener, app);
    tokio::select! {
        _ = rtmp => {}
        r = http => {
            if let Err(e) = r {
                tracing::error!("HTTP server stopped: {e}");
            }
        }
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
