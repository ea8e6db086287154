//! HLS and DASH viewers: the distinct clients a stream's playlists, MPD and
//! segments were served to lately. RTMP players are the hub's subscribers;
//! HTTP has no connection per viewer, so a viewer here is a client identity
//! seen within a window.
//!
//! - **Identity**: the peer IP address and the User-Agent (its first
//!   [`UA_BYTES`] bytes), hashed to 64 bits with a per-process random key.
//!   Two players behind one NAT count as two when their User-Agents differ
//!   and as one when they are identical. Behind a reverse proxy or CDN every
//!   viewer has the proxy's address (castgate trusts no `X-Forwarded-For`),
//!   so the count is per proxy and User-Agent there.
//! - **Protocol**: the kind of the last manifest the client was served (an
//!   HLS playlist or the DASH MPD). HLS and DASH share the segment URLs, so
//!   a segment or init request keeps a known client counted but never
//!   creates one; a client that only ever fetches segments is not counted.
//! - **Window**: a client counts for [`WINDOW_TARGETS`] × the stream's
//!   target duration after its last request. A playing client asks for
//!   something at least once per target duration (an HLS player reloads its
//!   media playlist about once per EXT-X-TARGETDURATION, RFC 8216 §6.3.4; a
//!   DASH player refreshes the MPD every `minimumUpdatePeriod`, half the
//!   target, and fetches a segment per segment duration), and the target
//!   grows with long GOPs, so three of them ride out a late or retried
//!   reload without the count flickering, and a player that stops leaves
//!   the count within 6 s at the default 2 s segments.
//! - **Bounds**: at most `per_stream` clients are tracked per stream and
//!   `total` in all (about 40 bytes each). A new client past a cap is not
//!   tracked: the stream's counts saturate and are flagged `capped` (lower
//!   bounds) until a window has passed without a refusal. Streams are only
//!   tracked once the HTTP layer found them in the packager's store.
//! - **Cost per request**: the caller's clock read, one SipHash of the
//!   address and User-Agent and one of the stream key, and one short lock
//!   of one of [`SHARDS`] shards (chosen by stream key) around two lookups
//!   in maps keyed by those hashes and a store.
//!   Nothing is allocated except for a stream's or a client's first entry
//!   (and a map growing). Expired entries are dropped when a count is read
//!   and, at most once a second per shard, by a request (a pass over that
//!   shard's entries, ~5 ns each).
//!
//! No clock is read here: every call takes `now`, so the window is tested
//! with made-up instants.

use crate::locks::lock;
use std::collections::hash_map::Entry;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Target durations a client stays counted after its last request.
pub const WINDOW_TARGETS: u64 = 3;
/// Locks the tracker is split into (by stream key).
pub const SHARDS: usize = 16;
/// User-Agent bytes that go into the identity (bounds the hashing cost).
pub const UA_BYTES: usize = 256;
/// Expired entries are dropped by requests at most this often per shard.
const SWEEP_EVERY_MS: u64 = 1000;

/// The HTTP protocols a viewer is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpProtocol {
    Hls,
    Dash,
}

/// What a client was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// A playlist (HLS) or the MPD (DASH): counts the client under it.
    Manifest(HttpProtocol),
    /// An init or media segment: keeps a counted client counted.
    Media,
}

/// Caps on tracked clients (`http.max_viewers_tracked_per_stream`,
/// `http.max_viewers_tracked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewerLimits {
    pub per_stream: usize,
    pub total: usize,
}

impl Default for ViewerLimits {
    fn default() -> Self {
        ViewerLimits {
            per_stream: 10_000,
            total: 100_000,
        }
    }
}

/// A stream's HTTP viewers now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewerCounts {
    pub hls: usize,
    pub dash: usize,
    /// A new client was refused by a cap within the last window: the counts
    /// are lower bounds.
    pub capped: bool,
}

/// A client's identity (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(u64);

#[derive(Clone, Copy, Debug)]
struct Client {
    /// Milliseconds since the tracker's epoch.
    last_ms: u64,
    protocol: HttpProtocol,
}

/// Map keys are already keyed hashes: used as they are.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

struct StreamViewers {
    /// The stream key (map keys are its hash).
    key: Box<str>,
    clients: HashMap<ClientId, Client, BuildHasherDefault<IdHasher>>,
    /// [`WINDOW_TARGETS`] × the target duration last reported.
    window_ms: u64,
    /// Counts are lower bounds until then.
    capped_until_ms: u64,
    last_prune_ms: u64,
}

impl StreamViewers {
    fn new(key: &str, window_ms: u64) -> Self {
        StreamViewers {
            key: key.into(),
            clients: HashMap::default(),
            window_ms,
            capped_until_ms: 0,
            last_prune_ms: 0,
        }
    }

    /// Drops expired clients; returns the live counts and how many went.
    fn prune(&mut self, now_ms: u64) -> (ViewerCounts, usize) {
        let before = self.clients.len();
        let window = self.window_ms;
        let mut counts = ViewerCounts {
            capped: now_ms < self.capped_until_ms,
            ..ViewerCounts::default()
        };
        self.clients.retain(|_, c| {
            let live = now_ms.saturating_sub(c.last_ms) < window;
            if live {
                match c.protocol {
                    HttpProtocol::Hls => counts.hls += 1,
                    HttpProtocol::Dash => counts.dash += 1,
                }
            }
            live
        });
        // A crowd that left gives its memory back.
        if self.clients.capacity() > 64 && self.clients.len() < self.clients.capacity() / 4 {
            self.clients.shrink_to_fit();
        }
        self.last_prune_ms = now_ms;
        (counts, before - self.clients.len())
    }
}

#[derive(Default)]
struct Shard {
    /// By the stream key's keyed hash (one hash per request picks the
    /// shard and the entry).
    streams: HashMap<u64, StreamViewers, BuildHasherDefault<IdHasher>>,
    last_sweep_ms: u64,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Client entries across shards (≤ `limits.total`).
    tracked: AtomicUsize,
    /// New clients refused by a cap, ever.
    refused: AtomicU64,
    /// When requests last swept other shards for room (total cap reached).
    last_global_sweep_ms: AtomicU64,
    keys: RandomState,
    epoch: Instant,
    limits: ViewerLimits,
}

/// The tracker, shared by the HTTP routes (which record), the API and
/// `/metrics` (which read).
#[derive(Clone)]
pub struct Viewers {
    inner: Arc<Inner>,
}

impl Default for Viewers {
    fn default() -> Self {
        Viewers::new(ViewerLimits::default())
    }
}

impl Viewers {
    pub fn new(limits: ViewerLimits) -> Viewers {
        Viewers {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                tracked: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
                last_global_sweep_ms: AtomicU64::new(0),
                keys: RandomState::new(),
                epoch: Instant::now(),
                limits,
            }),
        }
    }

    /// The identity of a client at `ip` sending `user_agent`.
    pub fn client(&self, ip: IpAddr, user_agent: Option<&[u8]>) -> ClientId {
        let mut h = self.inner.keys.build_hasher();
        ip.to_canonical().hash(&mut h);
        if let Some(ua) = user_agent {
            h.write(&ua[..ua.len().min(UA_BYTES)]);
        }
        ClientId(h.finish())
    }

    /// Notes that `client` was served `fetch` of `stream`, whose target
    /// segment duration is `target`.
    pub fn record(
        &self,
        stream: &str,
        client: ClientId,
        fetch: Fetch,
        target: Duration,
        now: Instant,
    ) {
        let now_ms = self.ms(now);
        let window_ms = WINDOW_TARGETS * (target.as_millis() as u64).max(1000);
        let hash = self.inner.keys.hash_one(stream);
        let shard_index = shard_of(hash);
        let mut shard = lock(&self.inner.shards[shard_index]);
        if now_ms.saturating_sub(shard.last_sweep_ms) >= SWEEP_EVERY_MS {
            self.sweep_shard(&mut shard, now_ms);
        }
        if let Entry::Vacant(e) = shard.streams.entry(hash) {
            if fetch == Fetch::Media {
                return;
            }
            e.insert(StreamViewers::new(stream, window_ms));
        }
        // Two keys with one 64-bit keyed hash: the later one is not tracked.
        let Some(sv) = shard.streams.get_mut(&hash).filter(|sv| &*sv.key == stream) else {
            return;
        };
        sv.window_ms = window_ms;
        if let Some(c) = sv.clients.get_mut(&client) {
            let live = now_ms.saturating_sub(c.last_ms) < window_ms;
            match fetch {
                Fetch::Manifest(protocol) => {
                    c.protocol = protocol;
                    c.last_ms = c.last_ms.max(now_ms);
                }
                // An expired entry not yet dropped: segments alone do not
                // bring a client back.
                Fetch::Media if live => c.last_ms = c.last_ms.max(now_ms),
                Fetch::Media => {}
            }
            return;
        }
        let Fetch::Manifest(protocol) = fetch else {
            return;
        };
        let limits = self.inner.limits;
        if sv.clients.len() >= limits.per_stream
            && now_ms.saturating_sub(sv.last_prune_ms) >= SWEEP_EVERY_MS
        {
            let (_, gone) = sv.prune(now_ms);
            self.inner.tracked.fetch_sub(gone, Ordering::Relaxed);
        }
        let room = sv.clients.len() < limits.per_stream
            && (self.reserve() || {
                self.make_room(shard_index, now_ms);
                self.reserve()
            });
        if !room {
            sv.capped_until_ms = now_ms + sv.window_ms;
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        sv.clients.insert(
            client,
            Client {
                last_ms: now_ms,
                protocol,
            },
        );
    }

    /// `stream`'s viewers at `now` (expired clients are dropped on the way).
    pub fn count(&self, stream: &str, now: Instant) -> ViewerCounts {
        let now_ms = self.ms(now);
        let hash = self.inner.keys.hash_one(stream);
        let mut shard = lock(&self.inner.shards[shard_of(hash)]);
        let Some(sv) = shard.streams.get_mut(&hash).filter(|sv| &*sv.key == stream) else {
            return ViewerCounts::default();
        };
        let (counts, gone) = sv.prune(now_ms);
        self.inner.tracked.fetch_sub(gone, Ordering::Relaxed);
        counts
    }

    /// Drops every expired entry and every stream left without one (for a
    /// scrape: streams nobody requests any more are forgotten here).
    pub fn sweep(&self, now: Instant) {
        let now_ms = self.ms(now);
        for shard in self.inner.shards.iter() {
            self.sweep_shard(&mut lock(shard), now_ms);
        }
    }

    /// Client entries held now.
    pub fn tracked(&self) -> usize {
        self.inner.tracked.load(Ordering::Relaxed)
    }

    /// New clients refused by a cap since start.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.inner.epoch).as_millis() as u64
    }

    #[cfg(test)]
    fn shard_of(&self, stream: &str) -> usize {
        shard_of(self.inner.keys.hash_one(stream))
    }

    /// Takes one slot under the total cap.
    fn reserve(&self) -> bool {
        let total = self.inner.limits.total;
        self.inner
            .tracked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < total).then_some(t + 1)
            })
            .is_ok()
    }

    /// The total cap is reached: drops expired entries of the other shards
    /// (the caller holds `own`), at most once a second across the tracker.
    /// `try_lock` only: two requests doing this at once never wait on each
    /// other.
    fn make_room(&self, own: usize, now_ms: u64) {
        let last = self.inner.last_global_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .inner
                .last_global_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for (i, shard) in self.inner.shards.iter().enumerate() {
            if i == own {
                continue;
            }
            if let Ok(mut s) = shard.try_lock() {
                self.sweep_shard(&mut s, now_ms);
            }
        }
    }

    fn sweep_shard(&self, shard: &mut Shard, now_ms: u64) {
        let mut gone = 0;
        shard.streams.retain(|_, sv| {
            gone += sv.prune(now_ms).1;
            !sv.clients.is_empty() || now_ms < sv.capped_until_ms
        });
        shard.last_sweep_ms = now_ms;
        self.inner.tracked.fetch_sub(gone, Ordering::Relaxed);
    }
}

/// The shard of a stream key's hash: bits the shard's own map does not
/// index by (hashbrown uses the low bits and the top 7).
fn shard_of(hash: u64) -> usize {
    ((hash >> 32) % SHARDS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use HttpProtocol::{Dash, Hls};

    const TARGET: Duration = Duration::from_secs(2);

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn counts(hls: usize, dash: usize) -> ViewerCounts {
        ViewerCounts {
            hls,
            dash,
            capped: false,
        }
    }

    #[test]
    fn identity_is_address_and_user_agent() {
        let v = Viewers::default();
        let a = v.client(ip(1), Some(b"hls.js"));
        assert_eq!(a, v.client(ip(1), Some(b"hls.js")));
        assert_ne!(a, v.client(ip(2), Some(b"hls.js")));
        assert_ne!(a, v.client(ip(1), Some(b"dash.js")));
        assert_ne!(a, v.client(ip(1), None));
        // IPv4 and its IPv6-mapped form are one client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(a, v.client(mapped, Some(b"hls.js")));
        // Only the first UA_BYTES count: a huge header costs no more.
        let long = vec![b'x'; UA_BYTES + 100];
        let mut other = long.clone();
        other[UA_BYTES + 50] = b'y';
        assert_eq!(v.client(ip(1), Some(&long)), v.client(ip(1), Some(&other)));
    }

    #[test]
    fn clients_count_under_their_manifest_and_expire_after_the_window() {
        let v = Viewers::default();
        let t0 = Instant::now();
        let (a, b, c) = (
            v.client(ip(1), Some(b"a")),
            v.client(ip(1), Some(b"b")),
            v.client(ip(2), Some(b"a")),
        );
        v.record("live/x", a, Fetch::Manifest(Hls), TARGET, t0);
        v.record("live/x", a, Fetch::Manifest(Hls), TARGET, secs(t0, 0.1));
        v.record("live/x", b, Fetch::Manifest(Hls), TARGET, t0);
        v.record("live/x", c, Fetch::Manifest(Dash), TARGET, t0);
        assert_eq!(v.count("live/x", t0), counts(2, 1));
        assert_eq!(v.count("live/other", t0), counts(0, 0));
        // Segments keep `a` counted; `b` and `c` go quiet.
        for s in [2.0, 4.0] {
            v.record("live/x", a, Fetch::Media, TARGET, secs(t0, s));
        }
        // The window is 3 × 2 s: `b` and `c` count until just before 6 s.
        assert_eq!(v.count("live/x", secs(t0, 5.99)), counts(2, 1));
        v.record("live/x", a, Fetch::Media, TARGET, secs(t0, 6.0));
        assert_eq!(v.count("live/x", secs(t0, 6.0)), counts(1, 0));
        assert_eq!(v.tracked(), 1, "expired entries were dropped");
        assert_eq!(v.count("live/x", secs(t0, 11.99)), counts(1, 0));
        assert_eq!(v.count("live/x", secs(t0, 12.0)), counts(0, 0));
        assert_eq!(v.tracked(), 0);
    }

    #[test]
    fn segments_alone_create_or_revive_nobody() {
        let v = Viewers::default();
        let t0 = Instant::now();
        let a = v.client(ip(1), None);
        v.record("live/x", a, Fetch::Media, TARGET, t0);
        assert_eq!(v.count("live/x", t0), counts(0, 0));
        v.record("live/x", a, Fetch::Manifest(Dash), TARGET, t0);
        // Expired but not yet dropped (nothing read or swept since): a
        // segment does not bring it back, a manifest does.
        v.record("live/x", a, Fetch::Media, TARGET, secs(t0, 6.5));
        assert_eq!(v.count("live/x", secs(t0, 6.5)), counts(0, 0));
        v.record("live/x", a, Fetch::Manifest(Hls), TARGET, secs(t0, 7.0));
        assert_eq!(v.count("live/x", secs(t0, 7.0)), counts(1, 0));
    }

    #[test]
    fn the_last_manifest_decides_the_protocol() {
        let v = Viewers::default();
        let t0 = Instant::now();
        let a = v.client(ip(1), None);
        v.record("live/x", a, Fetch::Manifest(Hls), TARGET, t0);
        v.record("live/x", a, Fetch::Manifest(Dash), TARGET, secs(t0, 1.0));
        assert_eq!(v.count("live/x", secs(t0, 1.0)), counts(0, 1));
    }

    #[test]
    fn the_window_follows_the_target_duration() {
        let v = Viewers::default();
        let t0 = Instant::now();
        let a = v.client(ip(1), None);
        // A 5 s GOP made the target 5 s: 15 s of window.
        let target = Duration::from_secs(5);
        v.record("live/x", a, Fetch::Manifest(Hls), target, t0);
        assert_eq!(v.count("live/x", secs(t0, 14.9)), counts(1, 0));
        assert_eq!(v.count("live/x", secs(t0, 15.0)), counts(0, 0));
        // Below a second the window is 3 s all the same.
        v.record("live/y", a, Fetch::Manifest(Hls), Duration::ZERO, t0);
        assert_eq!(v.count("live/y", secs(t0, 2.9)), counts(1, 0));
        assert_eq!(v.count("live/y", secs(t0, 3.0)), counts(0, 0));
    }

    #[test]
    fn the_per_stream_cap_saturates_and_says_so() {
        let v = Viewers::new(ViewerLimits {
            per_stream: 3,
            total: 100,
        });
        let t0 = Instant::now();
        for n in 0..10 {
            let c = v.client(ip(n), None);
            v.record("live/x", c, Fetch::Manifest(Hls), TARGET, t0);
        }
        let got = v.count("live/x", t0);
        assert_eq!((got.hls, got.capped), (3, true));
        assert_eq!((v.tracked(), v.refused()), (3, 7));
        // Another stream is not affected.
        let c = v.client(ip(50), None);
        v.record("live/y", c, Fetch::Manifest(Dash), TARGET, t0);
        assert_eq!(v.count("live/y", t0), counts(0, 1));
        // Tracked clients go on counting; the flag clears a window after
        // the last refusal, and room comes back as clients expire.
        let first = v.client(ip(0), None);
        v.record("live/x", first, Fetch::Manifest(Hls), TARGET, secs(t0, 5.0));
        assert_eq!(v.count("live/x", secs(t0, 6.0)), counts(1, 0));
        let late = v.client(ip(9), None);
        v.record("live/x", late, Fetch::Manifest(Hls), TARGET, secs(t0, 6.0));
        assert_eq!(v.count("live/x", secs(t0, 6.0)), counts(2, 0));
    }

    #[test]
    fn the_total_cap_holds_across_streams_and_frees_expired_room() {
        let v = Viewers::new(ViewerLimits {
            per_stream: 100,
            total: 5,
        });
        let t0 = Instant::now();
        for n in 0..20u8 {
            let c = v.client(ip(n), None);
            v.record(&format!("live/s{n}"), c, Fetch::Manifest(Hls), TARGET, t0);
        }
        assert_eq!((v.tracked(), v.refused()), (5, 15));
        let capped = (0..20)
            .filter(|n| v.count(&format!("live/s{n}"), t0).capped)
            .count();
        assert_eq!(capped, 15);
        // Once the first five expire (nobody read them), a new client finds
        // room: the request path sweeps the other shards. (A stream in a
        // shard none of the five is in, so its own shard's sweep frees
        // nothing.)
        let full: Vec<usize> = (0..20)
            .filter(|n| v.count(&format!("live/s{n}"), t0).hls == 1)
            .map(|n| v.shard_of(&format!("live/s{n}")))
            .collect();
        assert_eq!(full.len(), 5);
        let new = (0..)
            .map(|n| format!("live/new{n}"))
            .find(|s| !full.contains(&v.shard_of(s)))
            .unwrap();
        let c = v.client(ip(100), None);
        v.record(&new, c, Fetch::Manifest(Dash), TARGET, secs(t0, 7.0));
        assert_eq!(v.count(&new, secs(t0, 7.0)), counts(0, 1));
        assert_eq!(v.tracked(), 1);
    }

    #[test]
    fn a_flood_of_distinct_clients_stays_bounded() {
        let limits = ViewerLimits {
            per_stream: 1000,
            total: 1500,
        };
        let v = Viewers::new(limits);
        let t0 = Instant::now();
        for n in 0..50_000u32 {
            let c = v.client(IpAddr::from(n.to_be_bytes()), Some(b"flood"));
            let stream = if n < 20_000 { "live/a" } else { "live/b" };
            v.record(stream, c, Fetch::Manifest(Hls), TARGET, t0);
            assert!(v.tracked() <= limits.total);
        }
        assert_eq!(v.count("live/a", t0).hls, 1000);
        assert_eq!(v.count("live/b", t0).hls, 500);
        assert_eq!(v.tracked(), 1500);
        // All gone after the window; the streams are forgotten by a sweep.
        v.sweep(secs(t0, 6.0));
        assert_eq!(v.tracked(), 0);
        let shards: usize = v.inner.shards.iter().map(|s| lock(s).streams.len()).sum();
        assert_eq!(shards, 0);
    }
}
