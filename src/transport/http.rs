//! Listeners for the HTTP server: plain and TLS, each with a connection
//! limit and a look at the first byte, and [`serve`], which runs the router
//! on every connection they yield.
//!
//! Why not `axum::serve`: it builds its own hyper connection builder and
//! exposes none of its settings, and the RTMPT tunnel needs one of them.
//! librtmp (rtmpdump, GStreamer's `rtmpsink`) parses the tunnel's replies
//! with case-sensitive string matching and only finds a header spelt
//! `Content-Length:`; hyper writes lower-case names unless told
//! `title_case_headers`. [`serve`] is the same small loop as axum's, with
//! hyper-util's `auto` builder (HTTP/1.1 and HTTP/2 on one listener, told
//! apart by the HTTP/2 preface a client sends after ALPN picked `h2`).
//! Accepting and handshaking run in their own tasks and feed a channel, so
//! a slow or silent client never holds up `accept` for the others.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, warn};

use super::tls::{self, FirstByte};

/// A connection that holds its slot under the listener's limit until
/// dropped, and fails with `TimedOut` once nothing moved either way for
/// `idle` (an idle keep-alive connection, or a client that stopped reading).
pub struct Limited<S> {
    io: S,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Limited<S> {
    fn new(io: S, permit: OwnedSemaphorePermit, idle: Duration) -> Limited<S> {
        Limited {
            io,
            _permit: permit,
            idle,
            last_activity: Instant::now(),
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// With the I/O pending: whether the connection has been idle too long
    /// (else the timer is armed to wake the task when it would be).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let deadline = self.last_activity + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(()) if Instant::now() >= deadline => return true,
                Poll::Ready(()) => {}
            }
        }
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("HTTP connection idle for {:?}", self.idle),
        )
    }
}

/// Acknowledges received data at once instead of after the delayed-ACK
/// timer. HTTP clients that write a POST's headers and body separately
/// (ffmpeg's RTMPT does) otherwise wait on Nagle's algorithm until the
/// server ACKs the headers: 40 ms per request on Linux, which held an
/// `-rtmp_flush_interval 1` publish to a third of real time. Linux resets
/// quick-ACK mode by itself, so it is set again after every read.
pub trait QuickAck {
    fn ack_now(&self);
}

impl QuickAck for TcpStream {
    fn ack_now(&self) {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        {
            let _ = self.set_quickack(true);
        }
    }
}

impl QuickAck for TlsStream<TcpStream> {
    fn ack_now(&self) {
        self.get_ref().0.ack_now();
    }
}

impl<S: AsyncRead + QuickAck + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                    this.io.ack_now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.timed_out())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.timed_out())),
            other => other,
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.timed_out())),
            other => other,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.timed_out())),
            other => other,
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepted (and, for HTTPS, TLS-established) connections for [`serve`].
pub struct HttpListener<S> {
    rx: mpsc::Receiver<(Limited<S>, SocketAddr)>,
    local: SocketAddr,
}

impl<S> HttpListener<S> {
    /// The next connection; `None` once the accept task has ended (only
    /// with the runtime).
    async fn accept(&mut self) -> Option<(Limited<S>, SocketAddr)> {
        self.rx.recv().await
    }
}

/// The client's address, for handlers (`ConnectInfo<ClientAddr>`), on both
/// the plain and the TLS listener.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Serves `app` on every connection of `listener` until the listener ends
/// (it does not before the runtime does). Each request carries
/// `ConnectInfo<ClientAddr>`. HTTP/1 replies have title-case header names
/// (`Content-Length:`), which librtmp's RTMPT client needs.
pub async fn serve<S>(mut listener: HttpListener<S>, app: axum::Router)
where
    S: AsyncRead + AsyncWrite + QuickAck + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().title_case_headers(true);
    let local = listener.local;
    while let Some((io, peer)) = listener.accept().await {
        let app = app.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(ClientAddr(peer)));
                // A Router is always ready: no `poll_ready` needed.
                tower_service::Service::call(&mut app.clone(), req)
            });
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .await
            {
                debug!(%peer, listener = %local, "HTTP connection ended: {e}");
            }
        });
    }
}

/// Accepts forever; `prepare` turns each TCP connection into the stream to
/// serve (or `None`: it already logged why not), in its own task.
fn accept_loop<S, F, Fut>(
    listener: TcpListener,
    limits: HttpLimits,
    what: &'static str,
    prepare: F,
) -> HttpListener<S>
where
    S: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<S>> + Send + 'static,
{
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (tx, rx) = mpsc::channel(64);
    let HttpLimits {
        max_connections,
        idle,
        handshake: _,
    } = limits;
    let limit = Arc::new(Semaphore::new(max_connections));
    let prepare = Arc::new(prepare);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    error!(listener = %local, "{what} accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                warn!(%peer, listener = %local, max_connections, "{what} connection refused: limit reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let prepare = Arc::clone(&prepare);
            tokio::spawn(async move {
                if let Some(io) = prepare(tcp, peer).await {
                    let _ = tx.send((Limited::new(io, permit, idle), peer)).await;
                }
            });
        }
    });
    HttpListener { rx, local }
}

/// Limits for each HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections at once; more are closed at accept (logged).
    pub max_connections: usize,
    /// A connection with no byte moving either way for this long is closed.
    pub idle: Duration,
    /// Time for the first byte and, on HTTPS, the TLS handshake.
    pub handshake: Duration,
}

/// The plain HTTP listener. A TLS ClientHello (https:// or rtmpts:// sent
/// to the HTTP port) is closed with a log line instead of reaching hyper,
/// which would drop it silently.
pub fn plain(listener: TcpListener, limits: HttpLimits) -> HttpListener<TcpStream> {
    let first_byte_timeout = limits.handshake;
    accept_loop(listener, limits, "HTTP", move |tcp, peer| async move {
        match tls::peek_first_byte(&tcp, first_byte_timeout).await {
            Ok(b) if FirstByte::of(b) == FirstByte::Tls => {
                warn!(%peer, proto = "http", "connection closed: TLS ClientHello on the plain HTTP port (https:// or rtmpts:// instead of http:// or rtmpt://?)");
                tls::close_gently(tcp).await;
                None
            }
            Ok(_) => Some(tcp),
            // Nothing sent: nothing to serve, and nothing worth a warning
            // (browsers open spare connections).
            Err(reason) => {
                tracing::debug!(%peer, proto = "http", "connection closed: {reason}");
                None
            }
        }
    })
}

/// The HTTPS listener: TLS with ALPN (`h2`, `http/1.1`). A plain HTTP
/// request gets a 400 saying to use https, then the connection is closed;
/// anything else that is not TLS is closed with a log line.
pub fn tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: HttpLimits,
) -> HttpListener<TlsStream<TcpStream>> {
    let handshake_timeout = limits.handshake;
    accept_loop(listener, limits, "HTTPS", move |tcp, peer| {
        let acceptor = acceptor.clone();
        async move {
            let first = match tls::peek_first_byte(&tcp, handshake_timeout).await {
                Ok(b) => FirstByte::of(b),
                Err(reason) => {
                    tracing::debug!(%peer, proto = "https", "connection closed: {reason}");
                    return None;
                }
            };
            if first == FirstByte::Http {
                let reason = first.not_tls_reason("HTTPS");
                warn!(%peer, proto = "https", "connection closed: {reason}");
                refuse_plain_http(tcp).await;
                return None;
            }
            match tls::accept(&acceptor, tcp, handshake_timeout, "HTTPS").await {
                Ok(s) => Some(s),
                Err(reason) => {
                    warn!(%peer, proto = "https", "connection closed: {reason}");
                    None
                }
            }
        }
    })
}

/// Answers a plain HTTP request on the TLS port with a 400, as nginx does.
/// The request head is read first (bounded) so the close does not reset
/// the connection before the client has read the answer.
async fn refuse_plain_http(mut tcp: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let _ = timeout(Duration::from_secs(1), async {
        while seen.len() < 16 * 1024 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let body = "This is the HTTPS port: use https:// (or rtmpts://).\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(reply.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
