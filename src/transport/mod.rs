//! Listeners that hand a byte stream to a connection driver. They know
//! nothing of RTMP; they own accepting, connection limits and socket options.

pub mod budget;
pub mod http;
pub mod libsrt;
pub mod per_ip;
pub mod pool;
pub mod rtmfp;
pub mod rtmpt;
pub mod settings;
pub mod tcp;
pub mod tls;
pub mod tls_client;

pub use settings::{HttpSettings, HttpsSettings, RtmpsSettings, TlsFiles};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a listener or tunnel hands on (TLS over TCP, an RTMPT
/// session's pipe).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

/// What serves each byte stream a transport accepts: the RTMP connection
/// driver, given by whoever builds the transport, so transports never
/// import what they carry. Arguments: the stream, the peer, and the
/// protocol name for logs and metrics (`rtmps`, `rtmpt`, `rtmpts`).
pub type Handler = Arc<
    dyn Fn(
            Box<dyn ByteStream>,
            SocketAddr,
            &'static str,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;
