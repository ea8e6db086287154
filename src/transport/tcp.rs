//! The plain TCP listener with a connection limit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{error, warn};

/// Accepts connections forever, running `handle` for each in its own task
/// on a connection thread (see [`super::pool`]).
/// Past `max_connections` a new connection is closed at once with a log line:
/// a clear refusal, never a hang.
pub async fn serve<F, Fut>(listener: TcpListener, max_connections: usize, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let limit = Arc::new(Semaphore::new(max_connections));
    let name = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                error!(listener = name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, listener = name, max_connections, "connection refused: limit reached");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let handle = handle.clone();
        super::pool::spawn_connection(socket, move |socket| async move {
            handle(socket, peer).await;
            drop(permit);
        });
    }
}
