//! The plain TCP listener with a connection limit, in all and per client
//! address.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{error, warn};

use super::per_ip::PerIpLimit;

/// A listener's connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_per_ip: usize,
}

/// Accepts connections forever, running `handle` for each in its own task
/// on a connection thread (see [`super::pool`]).
/// Past `max_connections`, or past `max_per_ip` from one address, a new
/// connection is closed at once with a log line (naming the address): a
/// clear refusal, never a hang, and never one for another address.
pub async fn serve<F, Fut>(listener: TcpListener, limits: Limits, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let Limits {
        max_connections,
        max_per_ip,
    } = limits;
    let limit = Arc::new(Semaphore::new(max_connections));
    let per_ip = PerIpLimit::new(max_per_ip, max_connections);
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
        let ip_permit = match per_ip.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                warn!(%peer, client = %peer.ip(), listener = name, max_connections_per_ip = max_per_ip, "connection refused: per-address limit reached ({why})");
                drop(socket);
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
            drop(ip_permit);
        });
    }
}
