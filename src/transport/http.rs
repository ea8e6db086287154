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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use super::per_ip::{IpPermit, PerIpLimit};
use super::tls::{self, FirstByte};

/// A connection that holds its slots (the listener's and its address's)
/// until dropped, and fails with `TimedOut` once nothing moved either way
/// for `idle` (an idle keep-alive connection, or a client that stopped
/// reading), or when its first request head is not complete by `head_by`
/// however slowly bytes trickle in (slowloris; hyper's own header timeout
/// starts only once it knows the HTTP version, and not at all for HTTP/2).
pub struct Limited<S> {
    io: S,
    _permit: OwnedSemaphorePermit,
    _ip_permit: IpPermit,
    idle: Duration,
    last_activity: Instant,
    /// When the first request head must be in; the flag is set by
    /// [`serve`] when that request reaches the router.
    head_by: Instant,
    head_limit: Duration,
    served: Arc<AtomicBool>,
    timer: Pin<Box<Sleep>>,
}

impl<S> Limited<S> {
    fn new(
        io: S,
        permits: (OwnedSemaphorePermit, IpPermit),
        idle: Duration,
        head_limit: Duration,
    ) -> Limited<S> {
        Limited {
            io,
            _permit: permits.0,
            _ip_permit: permits.1,
            idle,
            last_activity: Instant::now(),
            head_by: Instant::now() + head_limit,
            head_limit,
            served: Arc::new(AtomicBool::new(false)),
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// With the I/O pending: why the connection is to be closed now, if it
    /// is (else the timer is armed to wake the task when it would be).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        loop {
            let idle_at = self.last_activity + self.idle;
            let head_pending = !self.served.load(Ordering::Relaxed);
            let deadline = if head_pending {
                idle_at.min(self.head_by)
            } else {
                idle_at
            };
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return None,
                Poll::Ready(()) if Instant::now() >= deadline => {
                    let why = if head_pending && deadline == self.head_by {
                        format!(
                            "no complete request head within {:?} (http.header_timeout_secs)",
                            self.head_limit
                        )
                    } else {
                        format!("HTTP connection idle for {:?}", self.idle)
                    };
                    return Some(io::Error::new(io::ErrorKind::TimedOut, why));
                }
                Poll::Ready(()) => {}
            }
        }
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
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
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
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            other => other,
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
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
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
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
    limits: HttpLimits,
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
/// (`Content-Length:`), which librtmp's RTMPT client needs. Request heads
/// get `limits.header` (hyper's header timeout, which needs a timer), and
/// request bodies `limits.body`: a body not complete by then fails for the
/// handler reading it, and the request is answered 408.
pub async fn serve<S>(mut listener: HttpListener<S>, app: axum::Router)
where
    S: AsyncRead + AsyncWrite + QuickAck + Unpin + Send + 'static,
{
    let limits = listener.limits;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .title_case_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header);
    builder.http2().timer(TokioTimer::new());
    let local = listener.local;
    while let Some((io, peer)) = listener.accept().await {
        let app = app.clone();
        let builder = builder.clone();
        let served = Arc::clone(&io.served);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                served.store(true, Ordering::Relaxed);
                let mut app = app.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.extensions.insert(ConnectInfo(ClientAddr(peer)));
                    let (body, body_late) = TimedBody::new(body, limits.body);
                    let version = parts.version;
                    let path = parts.uri.path().to_owned();
                    let req = hyper::Request::from_parts(parts, body);
                    // A Router is always ready: no `poll_ready` needed.
                    let res: axum::response::Response =
                        match tower_service::Service::call(&mut app, req).await {
                            Ok(res) => res,
                            Err(never) => match never {},
                        };
                    if !body_late.load(Ordering::Relaxed) {
                        return Ok::<_, std::convert::Infallible>(res);
                    }
                    warn!(%peer, listener = %local, path, "HTTP request body not complete within {:?} (http.body_timeout_secs): 408", limits.body);
                    Ok(request_timeout(version))
                }
            });
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .await
            {
                match timeout_reason(&*e) {
                    Some(why) => info!(%peer, listener = %local, "HTTP connection closed: {why}"),
                    None => debug!(%peer, listener = %local, "HTTP connection ended: {e}"),
                }
            }
        });
    }
}

/// 408, closing the connection (HTTP/1: the rest of the body is not read).
fn request_timeout(version: hyper::Version) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut res = (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "request body not received in time\n",
    )
        .into_response();
    if version < hyper::Version::HTTP_2 {
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// Why a connection ended, if a deadline ended it: hyper's header timeout,
/// or one of [`Limited`]'s.
fn timeout_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Some("request head not complete in time (http.header_timeout_secs)".into());
            }
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return Some(io.to_string());
            }
        }
        cur = err.source();
    }
    None
}

/// A request body that fails once `limit` has passed since its head,
/// setting `late` (the handler's answer is then replaced by a 408).
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> (TimedBody, Arc<AtomicBool>) {
        let late = Arc::new(AtomicBool::new(false));
        let body = TimedBody {
            inner,
            deadline: Instant::now() + limit,
            limit,
            sleep: None,
            late: Arc::clone(&late),
        };
        (body, late)
    }
}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                // The timer exists only for bodies that keep a handler waiting.
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        this.late.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(format!(
                            "request body not complete within {:?}",
                            this.limit
                        )
                        .into())))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts forever; `prepare` turns each TCP connection into the stream to
/// serve (or `None`: it already logged why not), in its own task.
fn accept_loop<S, F, Fut>(
    listener: TcpListener,
    limits: HttpLimits,
    what: &'static str,
    plain_refusal: bool,
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
        max_connections_per_ip,
        idle,
        header,
        ..
    } = limits;
    let limit = Arc::new(Semaphore::new(max_connections));
    let per_ip = PerIpLimit::new(max_connections_per_ip, max_connections);
    // Refusals answered with a 503 at once; past this many in progress a
    // refused connection is just closed (a flood gets no more than that).
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
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
            // The address's share first: a client over it is named, and
            // never takes a slot another address could use.
            let ip_permit = match per_ip.try_acquire(peer.ip()) {
                Ok(p) => p,
                Err(why) => {
                    warn!(%peer, client = %peer.ip(), listener = %local, max_connections_per_ip, "{what} connection refused: per-address limit reached ({why})");
                    refuse_busy(tcp, plain_refusal, &refusals);
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                warn!(%peer, listener = %local, max_connections, "{what} connection refused: limit reached");
                refuse_busy(tcp, plain_refusal, &refusals);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let prepare = Arc::clone(&prepare);
            tokio::spawn(async move {
                if let Some(io) = prepare(tcp, peer).await {
                    let conn = Limited::new(io, (permit, ip_permit), idle, header);
                    let _ = tx.send((conn, peer)).await;
                }
            });
        }
    });
    HttpListener { rx, local, limits }
}

/// Refused connections being answered at once (see [`refuse_busy`]).
const REFUSALS_IN_FLIGHT: usize = 64;

/// Closes a refused connection; on plain HTTP, after a 503 (within a
/// second, in its own task, at most [`REFUSALS_IN_FLIGHT`] at once). The
/// request is read first (bounded) so that the close does not reset the
/// connection before the client has read the answer.
fn refuse_busy(mut tcp: TcpStream, plain: bool, in_flight: &Arc<Semaphore>) {
    if !plain {
        return;
    }
    let Ok(slot) = Arc::clone(in_flight).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let body = "Too many connections from your address or in all; try again later.\n";
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = timeout(Duration::from_secs(1), async {
            let _ = tcp.write_all(reply.as_bytes()).await;
            let _ = tcp.shutdown().await;
            let mut buf = [0u8; 4096];
            // Drain what the client sent until it closes (bounded by the timeout).
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(slot);
    });
}

/// Limits for each HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections at once; more are closed at accept (logged).
    pub max_connections: usize,
    /// Connections one client address may hold; more get a 503 (plain
    /// HTTP) or are closed (HTTPS), logged with the address.
    pub max_connections_per_ip: usize,
    /// A request head must be complete within this.
    pub header: Duration,
    /// A request body must be complete within this after its head.
    pub body: Duration,
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
    accept_loop(
        listener,
        limits,
        "HTTP",
        true,
        move |tcp, peer| async move {
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
        },
    )
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
    accept_loop(listener, limits, "HTTPS", false, move |tcp, peer| {
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
