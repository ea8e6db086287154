//! SRT push: MPEG-TS ([`super::ts`]) in 1316-byte messages, as a caller or
//! as a listener a receiver calls in to.
//!
//! The SRT implementation (libsrt, through [`crate::transport::libsrt`]) sits behind
//! [`SrtSocketApi`], three calls wide. A socket task owns the SRT socket;
//! the relay hands it messages through a bounded channel and learns from
//! the task's end that the peer is gone (and why).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn, Instrument};

use super::target::{SrtMode, SrtTarget};
use super::ts::{TsMuxer, MESSAGE};
use super::ConnectError;
use crate::hub::StreamEvent;
use crate::transport::libsrt;

/// What relays need from an SRT implementation.
pub trait SrtSocketApi: Send + 'static {
    /// Sends one message (at most 1316 bytes, whole TS packets).
    fn send(&mut self, msg: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// The next message from the peer; `Err` (the reason) once the
    /// connection is gone.
    fn recv(&mut self) -> impl Future<Output = Result<Bytes, String>> + Send;
    /// Waits (bounded by the caller) until the peer acknowledged what was
    /// sent, then closes.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Opening connections with libsrt.
mod backend {
    use super::*;

    /// A connected libsrt socket; a thread blocks in its receive call and
    /// reports the end of the connection.
    pub struct LibSrt {
        sock: Arc<libsrt::Socket>,
        gone: oneshot::Receiver<String>,
        incoming: mpsc::Receiver<Bytes>,
        /// The connection's counters, as of the last second (libsrt has
        /// none for a broken connection).
        stats: Arc<Mutex<Option<libsrt::Stats>>>,
        peer: String,
    }

    impl LibSrt {
        pub(super) fn start(sock: Arc<libsrt::Socket>, peer: String) -> io::Result<LibSrt> {
            sock.set_recv_timeout(Duration::from_secs(1))?;
            let (gone_tx, gone) = oneshot::channel();
            // Receivers send nothing but control packets; a few messages
            // of slack, the rest is dropped.
            let (in_tx, incoming) = mpsc::channel(16);
            let stats = Arc::new(Mutex::new(None));
            let (reader, snapshot) = (sock.clone(), stats.clone());
            std::thread::Builder::new()
                .name("castgate-srt-rx".into())
                .spawn(move || {
                    let mut buf = [0u8; 1500];
                    let reason = loop {
                        match reader.recv(&mut buf) {
                            Ok(n) => {
                                let _ = in_tx.try_send(Bytes::copy_from_slice(&buf[..n]));
                            }
                            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                                if let Some(s) = reader.stats() {
                                    *crate::locks::lock(&snapshot) = Some(s);
                                }
                            }
                            Err(e) => break e.to_string(),
                        }
                    };
                    let _ = gone_tx.send(reason);
                })?;
            Ok(LibSrt {
                sock,
                gone,
                incoming,
                stats,
                peer,
            })
        }

        fn log_stats(&self, what: &str) {
            let now = self.sock.stats();
            let last = *crate::locks::lock(&self.stats);
            if let Some(s) = now.or(last) {
                info!(
                    peer = %self.peer,
                    packets_sent = s.packets_sent,
                    retransmitted = s.packets_retransmitted,
                    lost = s.packets_lost,
                    dropped_too_late = s.packets_dropped,
                    bytes_sent = s.bytes_sent,
                    "{what}"
                );
            }
        }
    }

    impl SrtSocketApi for LibSrt {
        async fn send(&mut self, msg: Bytes) -> io::Result<()> {
            self.sock.send(&msg)
        }

        async fn recv(&mut self) -> Result<Bytes, String> {
            tokio::select! {
                Some(m) = self.incoming.recv() => Ok(m),
                r = &mut self.gone => {
                    let why = r.unwrap_or_else(|_| "the receive thread ended".into());
                    self.log_stats("SRT connection lost");
                    Err(format!("the SRT peer {} went away ({why})", self.peer))
                }
            }
        }

        async fn close(self) {
            // libsrt keeps a message until the receiver acknowledges it:
            // an empty send buffer means the receiver has everything.
            while self.sock.connected() && self.sock.unacknowledged().is_some_and(|n| n > 0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The receiver holds what it acknowledged for its latency
            // before handing it on, and drops it if the connection closes
            // first (the last ~0.3 s of a stream, otherwise).
            if self.sock.connected() {
                let hold = self.sock.peer_latency().unwrap_or(Duration::ZERO);
                tokio::time::sleep(hold + Duration::from_millis(50)).await;
            }
            self.log_stats("SRT connection closed");
            self.sock.close();
        }
    }

    impl Drop for LibSrt {
        fn drop(&mut self) {
            self.sock.close();
        }
    }

    fn options(t: &SrtTarget, connect_timeout: Duration, caller: bool) -> libsrt::Options {
        libsrt::Options {
            latency: t.latency,
            // A listener does not send one; it checks the caller's.
            stream_id: t.stream_id.clone().filter(|_| caller),
            passphrase: t.passphrase.clone(),
            key_len: t.key_len,
            connect_timeout,
        }
    }

    /// Calls the first of `addrs` (resolved and checked by the caller).
    pub async fn call(
        addrs: &[SocketAddr],
        t: &SrtTarget,
        connect_timeout: Duration,
    ) -> io::Result<LibSrt> {
        let addr = *addrs
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for the host"))?;
        let opts = options(t, connect_timeout, true);
        // Blocks for at most the connect timeout; a relay stopped meanwhile
        // drops the result, which closes the socket.
        let sock = tokio::task::spawn_blocking(move || {
            let s = libsrt::Socket::new(&opts)?;
            s.connect(addr)?;
            Ok::<_, io::Error>(s)
        })
        .await
        .map_err(|e| io::Error::other(format!("SRT connect task: {e}")))??;
        LibSrt::start(Arc::new(sock), addr.to_string())
    }

    /// Closes the listening socket when the wait is abandoned, which ends
    /// the accepting thread.
    struct CloseOnDrop(Arc<libsrt::Socket>);

    impl Drop for CloseOnDrop {
        fn drop(&mut self) {
            self.0.close();
        }
    }

    pub async fn listen(t: &SrtTarget, connect_timeout: Duration) -> io::Result<LibSrt> {
        let addr: SocketAddr = t.bind_addr();
        let listener = Arc::new(libsrt::Socket::new(&options(t, connect_timeout, false))?);
        listener.listen(addr)?;
        let _guard = CloseOnDrop(listener.clone());
        let want_id = t.stream_id.clone();
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("castgate-srt-accept".into())
            .spawn(move || {
                let _enter = span.enter();
                let r = loop {
                    match listener.accept() {
                        Ok((s, peer)) => {
                            let peer = peer.map_or_else(|| "?".into(), |p| p.to_string());
                            // With a stream id in the target, only a caller
                            // sending it is served.
                            if want_id.is_some() && s.stream_id() != want_id {
                                warn!(peer = %peer, "SRT caller refused: not the stream id of this relay");
                                continue;
                            }
                            break Ok((s, peer));
                        }
                        Err(e) => break Err(e),
                    }
                };
                let _ = tx.send(r);
            })?;
        let (sock, peer) = rx
            .await
            .map_err(|_| io::Error::other("the SRT accept thread ended"))??;
        info!(peer = %peer, "SRT receiver called in");
        LibSrt::start(Arc::new(sock), peer)
    }
}

/// An SRT connection carrying one stream.
pub struct SrtLink {
    tx: Option<mpsc::Sender<Bytes>>,
    /// Fires (with the reason) when the socket task ends.
    done: oneshot::Receiver<String>,
    task: JoinHandle<()>,
    /// How long `close` waits for the socket task.
    close_bound: Duration,
    mux: TsMuxer,
    frames_before: u64,
}

/// Closing waits this long for acknowledgements (plus the latency).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls the receiver, or waits for one to call in (listener mode: no time
/// limit, the caller races this with stop and the end of the stream).
/// `addrs`: where a caller may call (resolved and checked by the egress
/// policy); unused by a listener.
pub async fn connect(
    t: &SrtTarget,
    addrs: &[SocketAddr],
    connect_timeout: Duration,
) -> Result<SrtLink, ConnectError> {
    let socket = match t.mode {
        SrtMode::Caller => backend::call(addrs, t, connect_timeout)
            .await
            .map_err(|e| {
                let msg = format!("SRT call to {}:{} failed: {e}", t.host, t.port);
                match e.kind() {
                    // The listener answered and rejected us (passphrase, stream
                    // id): retried, up to the refusal limit.
                    io::ErrorKind::ConnectionRefused => ConnectError::refused(msg),
                    _ => ConnectError::from(msg),
                }
            })?,
        SrtMode::Listener => backend::listen(t, connect_timeout).await.map_err(|e| {
            let msg = format!("SRT listener on {}: {e}", t.bind_addr());
            match e.kind() {
                // Not an address of this machine, or not ours to bind.
                io::ErrorKind::AddrNotAvailable | io::ErrorKind::PermissionDenied => {
                    ConnectError::permanent(msg)
                }
                _ => ConnectError::from(msg),
            }
        })?,
    };
    Ok(SrtLink::start(socket, t.latency, LINK_QUEUE))
}

/// Messages a link holds before the sender waits: a few tens, so that
/// back-pressure reaches the relay's queue (and its drop policy) instead
/// of piling up here.
const LINK_QUEUE: usize = 64;

impl SrtLink {
    /// A link over a socket the SRT listener accepted (a player calling
    /// in): `latency` is the listener's, `queue` the messages it may hold.
    pub fn accepted(
        sock: Arc<libsrt::Socket>,
        peer: String,
        latency: Duration,
        queue: usize,
    ) -> io::Result<SrtLink> {
        let socket = backend::LibSrt::start(sock, peer)?;
        Ok(SrtLink::start(socket, latency, queue))
    }

    /// `latency`: the receiver's, which closing waits for (on top of the
    /// acknowledgements).
    fn start<S: SrtSocketApi>(mut socket: S, latency: Duration, queue: usize) -> SrtLink {
        let (tx, mut rx) = mpsc::channel::<Bytes>(queue.max(1));
        let (done_tx, done) = oneshot::channel();
        let task = tokio::spawn(
            async move {
                let reason = loop {
                    tokio::select! {
                        msg = rx.recv() => match msg {
                            Some(m) => {
                                if let Err(e) = socket.send(m).await {
                                    break format!("SRT send failed: {e}");
                                }
                            }
                            None => {
                                // The relay closes: flush, then close, bounded.
                                let _ = tokio::time::timeout(
                                    CLOSE_TIMEOUT + latency,
                                    socket.close(),
                                )
                                .await;
                                let _ = done_tx.send("closed".into());
                                return;
                            }
                        },
                        // Receivers send nothing but control traffic; an
                        // error is the peer going away (or timing out).
                        r = socket.recv() => {
                            if let Err(why) = r {
                                break why;
                            }
                        }
                    }
                };
                let _ = done_tx.send(reason);
            }
            .in_current_span(),
        );
        SrtLink {
            tx: Some(tx),
            done,
            task,
            close_bound: CLOSE_TIMEOUT + latency + Duration::from_secs(2),
            mux: TsMuxer::new(),
            frames_before: 0,
        }
    }

    /// Muxes one hub event.
    pub fn push(&mut self, ev: &StreamEvent) {
        self.mux.push(ev);
        while let Some(codec) = self.mux.take_uncarried() {
            tracing::warn!(
                codec = codec.name(),
                "{codec} has no MPEG-TS carriage here: that track is not relayed over SRT"
            );
        }
    }

    /// Frames muxed since the last call.
    pub fn take_frames(&mut self) -> u64 {
        let n = self.mux.stats.frames - self.frames_before;
        self.frames_before = self.mux.stats.frames;
        n
    }

    /// Frames the muxer dropped (no configuration, unconvertible payload).
    pub fn mux_dropped(&self) -> u64 {
        self.mux.stats.dropped
    }

    /// Sends everything muxed; returns the bytes sent.
    pub async fn flush(&mut self) -> Result<usize, String> {
        let Some(tx) = &self.tx else {
            return Ok(0);
        };
        let mut n = 0;
        for m in self.mux.take_messages(true) {
            debug_assert!(m.len() <= MESSAGE);
            n += m.len();
            tx.send(m)
                .await
                .map_err(|_| "the SRT connection is gone".to_string())?;
        }
        Ok(n)
    }

    /// Resolves when the connection is gone, with the reason.
    pub async fn closed(&mut self) -> String {
        (&mut self.done)
            .await
            .unwrap_or_else(|_| "the SRT socket task ended".into())
    }

    /// Flushes and closes; the receiver sees the end of the stream.
    pub async fn close(mut self) {
        self.tx = None;
        let _ = tokio::time::timeout(self.close_bound, &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for SrtLink {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.task.abort();
        }
    }
}
