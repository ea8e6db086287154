//! The in-memory byte stream between an RTMPT tunnel and its RTMP session.
//!
//! Like `tokio::io::duplex`, with one thing more, which is why it exists:
//! the tunnel can wait until the session has consumed everything it was
//! given and asks for more ([`Pipe::wait_settled`]). The connection driver
//! writes all its output before it reads again, so at that point every byte
//! the session has to say in answer to a `/send` is in the pipe, and the
//! reply to the same request carries it: a handshake or a `connect` costs
//! one HTTP round trip instead of a send plus idle polls.
//!
//! Both directions are bounded: the tunnel refuses input past a limit, and
//! the session's writes wait once `out_cap` bytes are queued for a client
//! that does not poll (the driver's write timeout then ends it).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    /// Client bytes not read by the session yet.
    input: BytesMut,
    /// The client closed (or the session expired): the session reads what
    /// is left, then end of stream; what it writes is discarded.
    input_closed: bool,
    /// Server bytes not fetched by the client yet.
    output: BytesMut,
    /// The session's end of the pipe was dropped: its connection ended.
    session_gone: bool,
    /// The session asked for input and found none.
    starved: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

pub struct Pipe {
    inner: Mutex<Inner>,
    changed: Notify,
    out_cap: usize,
}

/// What the tunnel sees at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeStatus {
    pub pending_input: usize,
    pub pending_output: usize,
    pub session_gone: bool,
}

impl Pipe {
    /// A pipe and the session's end of it.
    pub fn new(out_cap: usize) -> (Arc<Pipe>, SessionIo) {
        let pipe = Arc::new(Pipe {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            out_cap: out_cap.max(1),
        });
        let io = SessionIo {
            pipe: Arc::clone(&pipe),
        };
        (pipe, io)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::locks::lock(&self.inner)
    }

    pub fn status(&self) -> PipeStatus {
        let g = self.lock();
        PipeStatus {
            pending_input: g.input.len(),
            pending_output: g.output.len(),
            session_gone: g.session_gone,
        }
    }

    /// Hands client bytes to the session. Returns false (and drops them)
    /// when the session is gone or the input side was closed.
    pub fn push(&self, data: &[u8]) -> bool {
        let mut g = self.lock();
        if g.session_gone || g.input_closed {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        g.input.extend_from_slice(data);
        g.starved = false;
        if let Some(w) = g.read_waker.take() {
            w.wake();
        }
        true
    }

    /// Takes everything queued for the client.
    pub fn take_output(&self) -> Bytes {
        let mut g = self.lock();
        let out = g.output.split().freeze();
        if let Some(w) = g.write_waker.take() {
            w.wake();
        }
        out
    }

    /// The client is done: the session reads what it was given, then end
    /// of stream. Nothing more goes to the client.
    pub fn close_input(&self) {
        let mut g = self.lock();
        g.input_closed = true;
        g.output.clear();
        if let Some(w) = g.read_waker.take() {
            w.wake();
        }
        if let Some(w) = g.write_waker.take() {
            w.wake();
        }
        drop(g);
        self.changed.notify_waiters();
    }

    /// Waits (at most `limit`) until the session has consumed all input and
    /// asks for more, or its output is full, or it is gone.
    pub async fn wait_settled(&self, limit: Duration) {
        let out_cap = self.out_cap;
        self.wait_for(limit, |g| {
            (g.starved && g.input.is_empty()) || g.session_gone || g.output.len() >= out_cap
        })
        .await
    }

    /// Waits (at most `limit`) until the session's connection has ended.
    pub async fn wait_gone(&self, limit: Duration) {
        self.wait_for(limit, |g| g.session_gone).await
    }

    async fn wait_for(&self, limit: Duration, done: impl Fn(&Inner) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// The session's end: an `AsyncRead + AsyncWrite` for the connection driver.
pub struct SessionIo {
    pipe: Arc<Pipe>,
}

impl AsyncRead for SessionIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pipe = &self.pipe;
        let mut g = pipe.lock();
        if !g.input.is_empty() {
            let n = buf.remaining().min(g.input.len());
            let chunk = g.input.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        if g.input_closed {
            return Poll::Ready(Ok(()));
        }
        g.read_waker = Some(cx.waker().clone());
        if !g.starved {
            g.starved = true;
            drop(g);
            pipe.changed.notify_waiters();
        }
        Poll::Pending
    }
}

impl AsyncWrite for SessionIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let pipe = &self.pipe;
        let mut g = pipe.lock();
        if g.input_closed {
            // Nobody will fetch it; the session still gets to read its input.
            return Poll::Ready(Ok(buf.len()));
        }
        let room = pipe.out_cap.saturating_sub(g.output.len());
        if room == 0 {
            g.write_waker = Some(cx.waker().clone());
            drop(g);
            pipe.changed.notify_waiters();
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        g.output.extend_from_slice(&buf[..n]);
        drop(g);
        pipe.changed.notify_waiters();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for SessionIo {
    fn drop(&mut self) {
        let mut g = self.pipe.lock();
        g.session_gone = true;
        g.input.clear();
        drop(g);
        self.pipe.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A session that echoes what it reads, upper-cased.
    async fn echo(mut io: SessionIo) {
        let mut buf = [0u8; 4];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let up: Vec<u8> = buf[..n].iter().map(u8::to_ascii_uppercase).collect();
                    if io.write_all(&up).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn settles_after_the_session_answered() {
        let (pipe, io) = Pipe::new(1024);
        tokio::spawn(echo(io));
        assert!(pipe.push(b"hello world"));
        pipe.wait_settled(Duration::from_secs(5)).await;
        // Everything the session said in answer is there, in one go.
        assert_eq!(&pipe.take_output()[..], b"HELLO WORLD");
        assert_eq!(pipe.status().pending_input, 0);
        assert!(pipe.take_output().is_empty());
    }

    #[tokio::test]
    async fn close_delivers_pending_input_then_eof() {
        let (pipe, mut io) = Pipe::new(1024);
        assert!(pipe.push(b"last bytes"));
        pipe.close_input();
        assert!(!pipe.push(b"more"), "nothing after close");
        let mut got = Vec::new();
        io.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last bytes");
        // Writes after the client left are swallowed, not errors.
        io.write_all(b"bye").await.unwrap();
        drop(io);
        pipe.wait_gone(Duration::from_secs(5)).await;
        assert!(pipe.status().session_gone);
    }

    #[tokio::test]
    async fn output_is_bounded_and_writer_resumes() {
        let (pipe, mut io) = Pipe::new(8);
        let writer = tokio::spawn(async move {
            io.write_all(b"0123456789abcdef").await.unwrap();
            io
        });
        pipe.wait_settled(Duration::from_secs(5)).await;
        assert_eq!(pipe.status().pending_output, 8);
        let mut got = pipe.take_output().to_vec();
        let _io = writer.await.unwrap();
        got.extend_from_slice(&pipe.take_output());
        assert_eq!(got, b"0123456789abcdef");
    }

    #[tokio::test]
    async fn gone_session_refuses_input() {
        let (pipe, io) = Pipe::new(8);
        drop(io);
        assert!(!pipe.push(b"x"));
        pipe.wait_settled(Duration::from_secs(5)).await;
        assert!(pipe.status().session_gone);
    }
}
