//! Batched reading for publishers on plain TCP.
//!
//! An encoder writes every audio and video frame as it is made: ~80 small
//! writes a second per stream. Waking for each one (an epoll wake-up, a
//! thread switch, a `recv` and the window-update ACK it triggers) cost more
//! than everything castgate does with the frame. While a connection
//! publishes, its socket's receive low-water mark is raised so the kernel
//! stops waking us for every frame, and the connection instead drains the
//! socket on a shared clock: every publisher on a thread is read in the
//! same wake-up. A fast stream still passes the mark between ticks and is
//! read as soon as it does. The period is `rtmp.read_batch_secs` (10 ms)
//! while anyone waits on the stream at low latency (`hub::Demand`: players,
//! relays, low-latency HLS/DASH requests), who then see at most one tick of
//! extra latency, and `rtmp.read_batch_unwatched_secs` (200 ms) otherwise:
//! each tick costs a wake-up, a poll and a `recv` per publisher, and at
//! 10 ms those cost about as much as the media itself.
//!
//! The clock is one task per connection thread ([`Ticks`]), not a timer per
//! connection: tokio wakes its driver (a write to its eventfd, then an extra
//! `epoll_wait`) whenever a timer is set earlier than the one it last slept
//! for, and after each tick every connection set the next one, so each
//! publisher cost that syscall pair a tick. One timer per thread and a
//! [`Notify`] that wakes the connections on the same thread cost none.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

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
    /// nothing waited; `Ok(n)` took everything queued when it returned. An end of stream or error after some data is left for
    /// the next read to report.
    pub fn drain(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let mut total = 0;
        while total < MAX_DRAIN {
            match self.recv(buf) {
                Ok(0) if total > 0 => break,
                Ok(0) => return Ok(0),
                Ok(n) => {
                    total += n;
                    // A read that left room in the buffer took all there
                    // was (a non-blocking `recv` returns what is queued, up
                    // to the room given): asking again would only return
                    // EAGAIN, a syscall a tick for every publisher.
                    if buf.len() < buf.capacity() {
                        break;
                    }
                }
                Err(_) if total > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// One non-blocking `recv` into `buf`'s spare capacity (a `recv` returns
    /// what there is, whatever the low-water mark).
    pub fn recv(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < super::readbuf::MIN_ROOM {
            buf.reserve(super::readbuf::READ_ROOM);
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
/// are aligned across threads too, so that one wake-up serves them all.
pub fn next_tick(epoch: Instant, now: Instant, tick: Duration) -> Instant {
    let since = now.saturating_duration_since(epoch).as_nanos();
    let tick = tick.as_nanos().max(1);
    let n = since / tick + 1;
    epoch + Duration::from_nanos((n * tick) as u64)
}

/// One process-wide origin for the batching clocks.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One thread's batching clock of one period: a task that sleeps to each
/// tick and wakes every connection waiting for it, while any is batching.
#[derive(Debug)]
struct Clock {
    period: Duration,
    tick: Notify,
    /// Connections subscribed ([`Ticks`] alive).
    users: AtomicUsize,
    /// The ticking task is running (it stops when `users` drops to 0).
    running: AtomicBool,
}

thread_local! {
    /// This thread's clocks, by period (the period is reloadable, so a
    /// thread may briefly have two).
    static CLOCKS: RefCell<Vec<Arc<Clock>>> = const { RefCell::new(Vec::new()) };
}

/// A batching connection's subscription to its thread's clock. Must be
/// made inside a tokio runtime (the clock's task is spawned on it).
#[derive(Debug)]
pub struct Ticks {
    clock: Arc<Clock>,
}

impl Ticks {
    /// Subscribes to this thread's clock of `period`, starting it if idle.
    pub fn subscribe(period: Duration) -> Ticks {
        let clock = CLOCKS.with(|clocks| {
            let mut clocks = clocks.borrow_mut();
            clocks.retain(|c| c.users.load(Ordering::Relaxed) > 0 || c.period == period);
            match clocks.iter().find(|c| c.period == period) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Clock {
                        period,
                        tick: Notify::new(),
                        users: AtomicUsize::new(0),
                        running: AtomicBool::new(false),
                    });
                    clocks.push(c.clone());
                    c
                }
            }
        });
        clock.users.fetch_add(1, Ordering::AcqRel);
        if !clock.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(run_clock(clock.clone()));
        }
        Ticks { clock }
    }

    pub fn period(&self) -> Duration {
        self.clock.period
    }

    /// Completes at the next tick. Make it before checking the socket, so a
    /// tick in between is not missed.
    pub fn next(&self) -> Notified<'_> {
        self.clock.tick.notified()
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        self.clock.users.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn run_clock(clock: Arc<Clock>) {
    loop {
        if clock.users.load(Ordering::Acquire) == 0 {
            clock.running.store(false, Ordering::Release);
            // A subscriber that came in between saw it running and did not
            // start another: carry on for it.
            if clock.users.load(Ordering::Acquire) == 0
                || clock.running.swap(true, Ordering::AcqRel)
            {
                return;
            }
        }
        sleep_until(next_tick(epoch(), Instant::now(), clock.period)).await;
        clock.tick.notify_waiters();
    }
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

    #[tokio::test(start_paused = true)]
    async fn one_clock_per_thread_wakes_every_subscriber_and_stops_unused() {
        let period = Duration::from_millis(10);
        let a = Ticks::subscribe(period);
        let b = Ticks::subscribe(period);
        assert!(Arc::ptr_eq(&a.clock, &b.clock), "one clock per period");
        let other = Ticks::subscribe(Duration::from_millis(20));
        assert!(!Arc::ptr_eq(&a.clock, &other.clock));
        drop(other);
        let clock = a.clock.clone();
        // Both wake at the same tick, on the shared grid.
        let t0 = Instant::now();
        tokio::join!(a.next(), b.next());
        let t1 = Instant::now();
        assert!(t1 > t0 && t1 - t0 <= period, "woke after {:?}", t1 - t0);
        assert_eq!(next_tick(epoch(), t1 - Duration::from_nanos(1), period), t1);
        a.next().await;
        assert_eq!(Instant::now() - t1, period);
        // A tick between making the wait and polling it is not missed.
        let wait = b.next();
        tokio::time::sleep(period * 2).await;
        tokio::time::timeout(Duration::ZERO, wait)
            .await
            .expect("a tick after the wait was made wakes it");
        // Unused, the clock's task ends at its next tick...
        drop((a, b));
        tokio::time::sleep(period * 3).await;
        assert!(
            !clock.running.load(Ordering::Acquire),
            "the clock still ticks"
        );
        // ...and a new subscriber starts it again.
        let c = Ticks::subscribe(period);
        assert!(Arc::ptr_eq(&c.clock, &clock));
        assert!(clock.running.load(Ordering::Acquire));
        let t2 = Instant::now();
        c.next().await;
        assert!(Instant::now() - t2 <= period);
    }

    /// Retries `read` until it returns data. Loopback delivers with the
    /// write, but the scheduler may delay it: retried briefly.
    fn first_data(mut read: impl FnMut() -> io::Result<usize>) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match read() {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "data never arrived");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
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
        assert_eq!(first_data(|| c.recv(&mut buf)), 5);
        assert_eq!(&buf[..], b"hello");
        // A little data: the drain's first read is short and ends it.
        client.write_all(b"again").unwrap();
        buf.clear();
        assert_eq!(first_data(|| c.drain(&mut buf)), 5);
        assert_eq!(&buf[..], b"again");
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
