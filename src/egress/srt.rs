//! SRT push: MPEG-TS ([`super::ts`]) in 1316-byte messages, as a caller or
//! as a listener a receiver calls in to.
//!
//! The SRT implementation (`srt-tokio`, pure Rust, unmaintained) sits behind
//! [`SrtSocketApi`], three calls wide, so that libsrt can replace it. A
//! socket task owns the SRT socket; the relay hands it messages through a
//! bounded channel and learns from the task's end that the peer is gone.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::target::{SrtMode, SrtTarget};
use super::ts::{TsMuxer, MESSAGE};
use super::ConnectError;
use crate::hub::StreamEvent;

/// What relays need from an SRT implementation.
pub trait SrtSocketApi: Send + 'static {
    /// Sends one message (at most 1316 bytes, whole TS packets).
    fn send(&mut self, msg: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// The next message from the peer; `None` once the connection is gone.
    fn recv(&mut self) -> impl Future<Output = Option<Bytes>> + Send;
    /// Sends what is still buffered, then closes.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Opening connections with the SRT implementation in use.
mod backend {
    use std::time::Instant;

    use futures_util::{SinkExt, StreamExt};
    use srt_tokio::SrtSocket;

    use super::*;

    impl SrtSocketApi for SrtSocket {
        async fn send(&mut self, msg: Bytes) -> io::Result<()> {
            SinkExt::send(self, (Instant::now(), msg)).await
        }

        async fn recv(&mut self) -> Option<Bytes> {
            match StreamExt::next(self).await {
                Some(Ok((_, data))) => Some(data),
                _ => None,
            }
        }

        async fn close(mut self) {
            let _ = self.close_and_finish().await;
        }
    }

    fn builder(t: &SrtTarget, connect_timeout: Duration) -> srt_tokio::SrtSocketBuilder {
        let mut b = SrtSocket::builder().latency(t.latency).set(|o| {
            o.connect.timeout = connect_timeout;
        });
        if let Some(p) = &t.passphrase {
            // Both were checked when the target was parsed (10 to 79
            // characters, 16/24/32 bytes): the builder would panic otherwise.
            b = b.encryption(t.key_len, p.clone());
        }
        b
    }

    pub async fn call(t: &SrtTarget, connect_timeout: Duration) -> io::Result<SrtSocket> {
        let addr = tokio::net::lookup_host((t.host.as_str(), t.port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for the host"))?;
        builder(t, connect_timeout)
            .call(addr, t.stream_id.as_deref())
            .await
    }

    pub async fn listen(t: &SrtTarget, connect_timeout: Duration) -> io::Result<SrtSocket> {
        let addr: SocketAddr = t.bind_addr();
        builder(t, connect_timeout).local(addr).listen().await
    }
}

/// An SRT connection carrying one stream.
pub struct SrtLink {
    tx: Option<mpsc::Sender<Bytes>>,
    /// Fires (with the reason) when the socket task ends.
    done: oneshot::Receiver<String>,
    task: JoinHandle<()>,
    mux: TsMuxer,
    frames_before: u64,
}

/// Calls the receiver, or waits for one to call in (listener mode: no time
/// limit, the caller races this with stop and the end of the stream).
pub async fn connect(t: &SrtTarget, connect_timeout: Duration) -> Result<SrtLink, ConnectError> {
    let socket = match t.mode {
        SrtMode::Caller => backend::call(t, connect_timeout)
            .await
            .map_err(|e| format!("SRT call to {}:{} failed: {e}", t.host, t.port))?,
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
    Ok(SrtLink::start(socket))
}

impl SrtLink {
    fn start<S: SrtSocketApi>(mut socket: S) -> SrtLink {
        // A few tens of messages: back-pressure reaches the relay's queue
        // (and its drop policy) instead of piling up here.
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let (done_tx, done) = oneshot::channel();
        let task = tokio::spawn(async move {
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
                                Duration::from_secs(3),
                                socket.close(),
                            )
                            .await;
                            let _ = done_tx.send("closed".into());
                            return;
                        }
                    },
                    // Receivers send nothing but control traffic; a `None`
                    // is the peer going away (or timing out).
                    r = socket.recv() => {
                        if r.is_none() {
                            break "the SRT peer closed the connection".to_string();
                        }
                    }
                }
            };
            let _ = done_tx.send(reason);
        });
        SrtLink {
            tx: Some(tx),
            done,
            task,
            mux: TsMuxer::new(),
            frames_before: 0,
        }
    }

    /// Muxes one hub event.
    pub fn push(&mut self, ev: &StreamEvent) {
        self.mux.push(ev);
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
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
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
