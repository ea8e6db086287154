//! What an edge keeps of the owner's answers: by URL, for as long as the
//! owner's `Cache-Control` allows, within a byte budget (the least recently
//! used go first). Sans-I/O: time is passed in, answers are opaque.
//!
//! A segment or part is `immutable` at the owner (its number is never
//! reused); it is kept [`IMMUTABLE_TTL`], long enough for every player of
//! the live window. A playlist or MPD carries `max-age=N` (kept N seconds)
//! or `no-cache` (not kept: only coalesced while it is being fetched).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an immutable answer is kept (past the live window nobody asks
/// again; DVR requests fetch it anew).
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(120);
/// At most this many entries, whatever their size.
pub const MAX_ENTRIES: usize = 65_536;

/// How long an answer with this `Cache-Control` may be reused (`None`: not
/// at all).
pub fn ttl(cache_control: &str) -> Option<Duration> {
    let mut max_age = None;
    for d in cache_control.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" || d == "private" {
            return None;
        }
        if d == "immutable" {
            return Some(IMMUTABLE_TTL);
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            max_age = v.parse::<u64>().ok();
        }
    }
    match max_age {
        Some(0) | None => None,
        Some(s) => Some(Duration::from_secs(s).min(IMMUTABLE_TTL)),
    }
}

struct Entry<A> {
    answer: A,
    bytes: usize,
    expires: Instant,
    used: u64,
}

/// Answers by URL (`A` is cheap to clone: an `Arc`).
pub struct Cache<A> {
    entries: HashMap<String, Entry<A>>,
    bytes: usize,
    budget: usize,
    tick: u64,
}

impl<A: Clone> Cache<A> {
    pub fn new(budget: usize) -> Cache<A> {
        Cache {
            entries: HashMap::new(),
            bytes: 0,
            budget,
            tick: 0,
        }
    }

    /// The answer for `url` if it is still fresh at `now` (a stale one is
    /// dropped).
    pub fn get(&mut self, url: &str, now: Instant) -> Option<A> {
        self.tick += 1;
        let tick = self.tick;
        let fresh = match self.entries.get_mut(url) {
            Some(e) if e.expires > now => {
                e.used = tick;
                return Some(e.answer.clone());
            }
            Some(_) => false,
            None => return None,
        };
        if !fresh {
            self.remove(url);
        }
        None
    }

    /// Keeps `answer` (`bytes` long) for `ttl` from `now`, evicting the
    /// least recently used to stay within the budget. One larger than the
    /// whole budget is not kept.
    pub fn insert(&mut self, url: String, answer: A, bytes: usize, ttl: Duration, now: Instant) {
        if bytes > self.budget || ttl.is_zero() {
            return;
        }
        self.remove(&url);
        self.tick += 1;
        self.entries.insert(
            url,
            Entry {
                answer,
                bytes,
                expires: now + ttl,
                used: self.tick,
            },
        );
        self.bytes += bytes;
        if self.bytes > self.budget || self.entries.len() > MAX_ENTRIES {
            self.evict(now);
        }
    }

    fn remove(&mut self, url: &str) {
        if let Some(e) = self.entries.remove(url) {
            self.bytes -= e.bytes;
        }
    }

    /// Drops the expired, then the least recently used, until within the
    /// budget and the entry cap.
    fn evict(&mut self, now: Instant) {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = e.expires > now;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.bytes -= freed;
        if self.bytes <= self.budget && self.entries.len() <= MAX_ENTRIES {
            return;
        }
        let mut by_use: Vec<(u64, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.used, k.clone()))
            .collect();
        by_use.sort_unstable();
        // Down to 90 %: eviction is a sort, not done on every insert.
        let target = self.budget / 10 * 9;
        let max_entries = MAX_ENTRIES / 10 * 9;
        for (_, url) in by_use {
            if self.bytes <= target && self.entries.len() <= max_entries {
                break;
            }
            self.remove(&url);
        }
        tracing::debug!(
            before,
            after = self.entries.len(),
            "edge cache: evicted to stay within its budget"
        );
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The fuzz target's body (`fuzz/fuzz_targets/edge_cache.rs`): the first
/// line of `data` as a `Cache-Control` value and as a Redis lease value,
/// the rest as cache operations; the accounting must hold after each.
pub fn exercise(data: &[u8]) {
    let (head, ops) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(head);
    if let Some(t) = ttl(&text) {
        assert!(t > Duration::ZERO && t <= IMMUTABLE_TTL);
    }
    let _ = crate::cluster::Holder::parse(&text);
    let t0 = Instant::now();
    let mut cache: Cache<u8> = Cache::new(1000);
    for op in ops.chunks(4) {
        let [kind, url, size, time] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        let url = format!("/{}", url % 16);
        let now = t0 + Duration::from_millis(u64::from(time) * 50);
        if kind % 2 == 0 {
            let ttl = Duration::from_millis(u64::from(kind) * 40);
            cache.insert(url, kind, usize::from(size) * 8, ttl, now);
        } else {
            let _ = cache.get(&url, now);
        }
        let sum: usize = cache.entries.values().map(|e| e.bytes).sum();
        assert_eq!(sum, cache.bytes(), "the byte count drifted");
        assert!(cache.bytes() <= 1000, "over the budget: {}", cache.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_body_runs() {
        exercise(b"max-age=3\n\x00\x01\x7f\x10\x01\x01\x00\x00\x02\x02\xff\x09");
        exercise(b"{\"node\":\"a\",\"token\":1}");
    }

    #[test]
    fn cache_control_sets_the_life() {
        assert_eq!(
            ttl("public, max-age=31536000, immutable"),
            Some(IMMUTABLE_TTL)
        );
        assert_eq!(
            ttl("max-age=2, must-revalidate"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(ttl("max-age=99999"), Some(IMMUTABLE_TTL));
        for none in [
            "no-cache",
            "no-store",
            "max-age=0",
            "",
            "private, max-age=5",
        ] {
            assert_eq!(ttl(none), None, "{none}");
        }
    }

    #[test]
    fn fresh_answers_are_reused_and_stale_ones_dropped() {
        let t0 = Instant::now();
        let mut c: Cache<u32> = Cache::new(1000);
        c.insert("/a".into(), 1, 100, Duration::from_secs(2), t0);
        assert_eq!(c.get("/a", t0 + Duration::from_secs(1)), Some(1));
        assert_eq!(c.get("/a", t0 + Duration::from_secs(2)), None);
        assert_eq!((c.len(), c.bytes()), (0, 0));
        c.insert("/z".into(), 9, 10, Duration::ZERO, t0);
        assert!(c.is_empty(), "a zero life is not kept");
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut c: Cache<u32> = Cache::new(1000);
        for i in 0..4 {
            c.insert(format!("/{i}"), i, 300, ttl, t0);
            // /0 stays the most recently used.
            assert_eq!(c.get("/0", t0), Some(0));
        }
        assert!(c.bytes() <= 1000, "{}", c.bytes());
        assert_eq!(c.get("/0", t0), Some(0), "the recently used one stays");
        assert_eq!(c.get("/1", t0), None, "the oldest use went first");
        assert_eq!(c.get("/3", t0), Some(3));
        c.insert("/big".into(), 7, 1001, ttl, t0);
        assert_eq!(c.get("/big", t0), None, "larger than the budget");
        // Replacing an entry does not count it twice.
        c.insert("/3".into(), 33, 300, ttl, t0);
        assert_eq!(c.get("/3", t0), Some(33));
        assert!(c.bytes() <= 1000);
    }
}
