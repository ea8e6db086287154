//! Batched reading for publishers on plain TCP.
//!
//! An encoder writes every audio and video frame as it is made: ~80 small
//! writes a second per stream. Waking for each one (an epoll wake-up, a
//! thread switch, a `recv` and the window-update ACK it triggers) cost more
//! than everything castgate does with the frame. While a connection
//! publishes, its socket's receive low-water mark is raised so the kernel
//! stops waking us for every frame, and the connection instead drains the
//! socket on a shared clock (`rtmp.read_batch_secs`, 10 ms by default):
//! every publisher on a thread is read in the same wake-up. A fast stream
//! still passes the mark between ticks and is read as soon as it does.
//! Players, and the low-latency parts of HLS and DASH, see at most one tick
//! of extra latency.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use tokio::time::Instant;

/// Most bytes one tick drains from a socket (the rest waits a tick: one
/// fast publisher cannot hold its thread for long).
const MAX_DRAIN: usize = 1024 * 1024;
/// Receive low-water mark while publishing.
const LOW_WATER: libc::c_int = 128 * 1024;

/// A TCP socket's descriptor, borrowed from the stream the connection owns
/// (which outlives this).
#[derive(Clone, Copy, Debug)]
pub struct Coalescer {
    fd: RawFd,
}

impl Coalescer {
    pub fn new(fd: RawFd) -> Self {
        Coalescer { fd }
    }

    /// Raises (publishing) or resets (otherwise) the low-water mark.
    pub fn set_batching(&self, on: bool) -> io::Result<()> {
        let value: libc::c_int = if on { LOW_WATER } else { 1 };
        // SAFETY: a valid socket descriptor and a correctly sized int option.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Drains the socket into `buf` (up to [`MAX_DRAIN`] bytes a tick), below
    /// the low-water mark too. `Ok(0)` is end of stream; `WouldBlock` means
    /// nothing waited. An end of stream or error after some data is left for
    /// the next read to report.
    pub fn drain(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let mut total = 0;
        while total < MAX_DRAIN {
            match self.recv(buf) {
                Ok(0) if total > 0 => break,
                Ok(0) => return Ok(0),
                Ok(n) => total += n,
                Err(_) if total > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// One non-blocking `recv` into `buf`'s spare capacity (a `recv` returns
    /// what there is, whatever the low-water mark).
    pub fn recv(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv writes at most `spare.len()` bytes into memory we own;
        // `set_len` below only covers what it reported written.
        let n = unsafe {
            libc::recv(
                self.fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the kernel initialised the first `n` spare bytes.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }
}

/// The next tick of the shared clock of period `tick` after `now`. Ticks
/// are aligned across connections so that one wake-up serves them all.
pub fn next_tick(epoch: Instant, now: Instant, tick: Duration) -> Instant {
    let since = now.saturating_duration_since(epoch).as_nanos();
    let tick = tick.as_nanos().max(1);
    let n = since / tick + 1;
    epoch + Duration::from_nanos((n * tick) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_aligned_and_in_the_future() {
        const TICK: Duration = Duration::from_millis(50);
        let epoch = Instant::now();
        let t1 = next_tick(epoch, epoch + Duration::from_millis(7), TICK);
        let t2 = next_tick(epoch, epoch + Duration::from_millis(49), TICK);
        assert_eq!(t1, t2);
        assert_eq!(t1 - epoch, TICK);
        let t3 = next_tick(epoch, t1, TICK);
        assert_eq!(t3 - epoch, 2 * TICK);
    }

    #[test]
    fn drains_below_the_low_water_mark() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let c = Coalescer::new(server.as_raw_fd());
        c.set_batching(true).unwrap();
        let mut buf = bytes::BytesMut::new();
        assert_eq!(
            c.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.write_all(b"hello").unwrap();
        // Loopback delivers synchronously with the write; retry briefly in
        // case the scheduler delays it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match c.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, 5);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "data never arrived");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&buf[..], b"hello");
        // A drain takes everything waiting, across many reads.
        let big = vec![7u8; 300_000];
        client.write_all(&big).unwrap();
        buf.clear();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while buf.len() < big.len() {
            match c.drain(&mut buf) {
                Ok(n) => assert!(n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "data never arrived");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&buf[..], &big[..]);
        c.set_batching(false).unwrap();
        drop(client);
        assert_eq!(c.recv(&mut buf).unwrap(), 0);
    }
}
