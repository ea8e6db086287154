//! A connection's read buffer, with room only while it reads.
//!
//! The session decodes RTMP in place from the bytes read, and what it
//! leaves is at most a partial chunk (a few KB). A read needs room for a
//! whole batch (~40 KB for a 3 Mbit/s publisher read every 100 ms), but a
//! connection spends nearly all its time waiting: 64 KB reserved per
//! connection while it waits was 126 KB of a publisher's memory, 250 MB
//! for 2,000 publishers. So the room is lent for the read: each connection
//! thread keeps one spare buffer ([`reserve`] takes it, [`release`] gives
//! it back), and between reads a connection keeps only its leftover bytes.
//! Reading, decoding and releasing happen in one poll, with no `await`
//! between them, so the spare is never needed by two connections at once
//! (a second would simply allocate).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Room below which a read first takes the spare buffer (and a drain
/// grows it, see `coalesce::Coalescer::recv`).
pub(super) const MIN_ROOM: usize = 16 * 1024;
/// Room a read is given (more if the spare already has it).
pub(super) const READ_ROOM: usize = 64 * 1024;
/// Capacity a connection keeps between reads: above it, [`release`] moves
/// the leftover bytes to a buffer of their own size.
const KEEP: usize = 8 * 1024;

thread_local! {
    /// This thread's spare read buffer.
    static SPARE: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Makes room in `buf` for a read, keeping its bytes in front.
pub fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() >= MIN_ROOM {
        return;
    }
    let mut spare = SPARE.with(|s| s.take());
    spare.clear();
    // Empty, the spare takes back the front its last reader consumed (or
    // is made, with room for a partial chunk too); it grows only for a
    // leftover larger than that.
    spare.reserve(READ_ROOM + KEEP);
    spare.reserve(buf.len() + READ_ROOM);
    spare.extend_from_slice(buf);
    *buf = spare;
}

/// Ends a read: a large buffer goes back to the thread's spare, and `buf`
/// keeps only its bytes.
pub fn release(buf: &mut BytesMut) {
    if buf.capacity() <= KEEP {
        return;
    }
    let rest = if buf.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&buf[..])
    };
    let big = std::mem::replace(buf, rest);
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        // The larger of the two stays (a drain may have grown it).
        if big.capacity() > spare.capacity() {
            *spare = big;
        }
    });
}

/// Reads once from `io` into `buf` after its bytes, as
/// `AsyncReadExt::read_buf` does, with room only for the duration of each
/// poll: a read that has to wait gives the room back first. `Ok(0)` is the
/// end of the stream.
pub fn read<'a, S: AsyncRead + Unpin>(
    io: &'a mut S,
    buf: &'a mut BytesMut,
) -> impl Future<Output = io::Result<usize>> + 'a {
    poll_fn(move |cx| {
        reserve(buf);
        let spare = buf.spare_capacity_mut();
        let start = spare.as_ptr();
        let mut rb = ReadBuf::uninit(spare);
        let polled = Pin::new(&mut *io).poll_read(cx, &mut rb);
        let filled = rb.filled();
        // A reader could swap the `ReadBuf` for another: the count below
        // is only true of ours.
        assert!(
            std::ptr::eq(filled.as_ptr().cast(), start),
            "the reader replaced the read buffer"
        );
        let n = filled.len();
        match polled {
            Poll::Ready(Ok(())) => {
                // SAFETY: `poll_read` initialised the first `n` spare bytes
                // (it filled our `ReadBuf`, checked above).
                unsafe { buf.set_len(buf.len() + n) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                release(buf);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                release(buf);
                Poll::Pending
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn a_waiting_connection_keeps_only_its_leftover_bytes() {
        let mut buf = BytesMut::new();
        reserve(&mut buf);
        assert!(buf.capacity() >= READ_ROOM);
        let spare = buf.as_ptr();
        buf.extend_from_slice(&[1; 40_000]);
        // The session consumed all but a partial chunk.
        let _ = buf.split_to(40_000 - 300);
        release(&mut buf);
        assert_eq!(&buf[..], &[1; 300][..]);
        assert!(buf.capacity() <= KEEP, "kept {}", buf.capacity());
        // The next read reuses the thread's spare, all of it (the front
        // the session consumed too), with the leftover first.
        reserve(&mut buf);
        assert_eq!(buf.as_ptr(), spare, "the spare buffer was not reused");
        assert!(buf.capacity() >= READ_ROOM + KEEP);
        assert_eq!(&buf[..], &[1; 300][..]);
        assert!(buf.capacity() - buf.len() >= MIN_ROOM);
        // Emptied, a connection holds nothing.
        buf.clear();
        release(&mut buf);
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn a_small_buffer_with_room_is_left_alone() {
        let mut buf = BytesMut::with_capacity(KEEP);
        buf.extend_from_slice(b"abc");
        let at = buf.as_ptr();
        release(&mut buf);
        assert_eq!(buf.as_ptr(), at);
        let mut big = BytesMut::with_capacity(MIN_ROOM + 10);
        let at = big.as_ptr();
        reserve(&mut big);
        assert_eq!(big.as_ptr(), at, "enough room: no swap");
    }

    #[tokio::test]
    async fn reads_append_and_waiting_holds_no_room() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let mut buf = BytesMut::from(&b"left"[..]);
        // Nothing to read yet: the read waits without holding room.
        let mut waiting = Box::pin(read(&mut b, &mut buf));
        assert!(futures_poll_once(waiting.as_mut()).is_none());
        drop(waiting);
        assert_eq!(&buf[..], b"left");
        assert!(buf.capacity() <= KEEP);
        a.write_all(&[9; 50_000]).await.unwrap();
        let n = read(&mut b, &mut buf).await.unwrap();
        assert_eq!(n, 50_000);
        assert_eq!(&buf[..4], b"left");
        assert!(buf[4..].iter().all(|&x| x == 9));
        drop(a);
        buf.clear();
        assert_eq!(read(&mut b, &mut buf).await.unwrap(), 0, "end of stream");
    }

    /// Polls `f` once with a no-op waker.
    fn futures_poll_once<F: Future>(f: Pin<&mut F>) -> Option<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
