//! Whether anyone waits on a stream at low latency, for its publisher's
//! connection to choose how often to read it.
//!
//! Reading a publisher every 10 ms instead of every 100 ms costs about
//! twice the CPU per stream (each read is a task wake-up, a poll and a
//! `recv`), and only players that follow the live edge closely gain from
//! it: RTMP and SRT players, relays, and low-latency HLS and DASH clients
//! (blocking playlist reloads, parts, segments fetched as they are made).
//! Classic HLS and DASH players fetch whole 2 s segments and never notice.
//! So the hub counts the first kind (its subscribers) and the packager marks
//! the second (each low-latency request), and the publisher's connection
//! reads fast only while either is there.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A low-latency HTTP request keeps the stream wanted this long: players
/// ask several times a second, so a pause this long means they left.
pub const HTTP_HOLD: Duration = Duration::from_secs(3);

/// One stream's demand for low latency.
#[derive(Debug, Default)]
pub struct Demand {
    /// Hub subscribers (players, relays): set by the hub as they change.
    subscribers: AtomicUsize,
    /// Until when (ms on [`now_ms`]'s clock) a low-latency request wants it.
    http_until_ms: AtomicU64,
    /// How often the publisher's connection reads it now, in ms (0: as
    /// bytes arrive, or a publisher that does not batch), for the API.
    read_every_ms: AtomicU64,
}

impl Demand {
    /// A low-latency request for the stream was made now.
    pub fn low_latency_request(&self) {
        self.low_latency_request_at(now_ms());
    }

    fn low_latency_request_at(&self, now_ms: u64) {
        let until = now_ms + HTTP_HOLD.as_millis() as u64;
        // Requests come several times a second per player: write only when
        // it moves the end by a tenth of the hold, not at every request.
        let old = self.http_until_ms.load(Ordering::Relaxed);
        if until >= old + HTTP_HOLD.as_millis() as u64 / 10 {
            self.http_until_ms.fetch_max(until, Ordering::Relaxed);
        }
    }

    /// Whether anyone wants the stream at low latency now.
    pub fn wanted(&self) -> bool {
        self.wanted_at(now_ms())
    }

    fn wanted_at(&self, now_ms: u64) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
            || now_ms < self.http_until_ms.load(Ordering::Relaxed)
    }

    /// The publisher's connection reads the stream every `period` now
    /// (`None`: not batched).
    pub fn set_read_period(&self, period: Option<Duration>) {
        let ms = period.map_or(0, |p| p.as_millis() as u64);
        self.read_every_ms.store(ms, Ordering::Relaxed);
    }

    /// What [`set_read_period`] last said.
    ///
    /// [`set_read_period`]: Demand::set_read_period
    pub fn read_period(&self) -> Option<Duration> {
        match self.read_every_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(super) fn set_subscribers(&self, n: usize) {
        self.subscribers.store(n, Ordering::Relaxed);
    }
}

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_while_subscribed_or_for_a_hold_after_a_request() {
        let d = Demand::default();
        assert!(!d.wanted_at(1_000));
        d.set_subscribers(2);
        assert!(d.wanted_at(1_000));
        d.set_subscribers(0);
        assert!(!d.wanted_at(1_000));
        let hold = HTTP_HOLD.as_millis() as u64;
        d.low_latency_request_at(1_000);
        assert!(d.wanted_at(1_000));
        assert!(d.wanted_at(1_000 + hold - 1));
        assert!(!d.wanted_at(1_000 + hold));
        // Later requests extend it (in steps of a tenth of the hold).
        d.low_latency_request_at(1_000 + hold / 2);
        assert!(d.wanted_at(1_000 + hold + hold / 3));
        assert!(!d.wanted_at(1_000 + hold + hold / 2));
    }
}
