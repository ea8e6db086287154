//! The packaging service: a hub tap per published stream feeds the stream's
//! segmenter synchronously (segments close when the publisher goes), and a
//! small task per stream waits out the grace period for the publisher to
//! return, ends the stream otherwise, and drops it from memory after the
//! retention time.

use crate::locks::lock;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info};

use super::dvr::{self, Dvr};
use super::labels;
use super::memory::{self, Memory, Usage};
use super::model::{StreamSnapshot, TrackLabel};
use super::segmenter::{SegmenterConfig, Spill, StreamSegmenter};
use crate::hub::{Demand, Hub, StreamEvent, Tap, TapHandle};
use crate::media::{MediaKind, TrackId};

#[derive(Clone, Debug)]
pub struct PackagerConfig {
    pub segmenter: SegmenterConfig,
    /// DVR: how long live playlists reach back (0: no DVR), where the
    /// segments past the memory window go (and, without DVR, the segments
    /// spilled under the memory budget; `None`: they are dropped), and
    /// whether playlists say EXT-X-PLAYLIST-TYPE:EVENT.
    pub dvr_ms: u64,
    pub dvr_dir: Option<std::path::PathBuf>,
    pub dvr_event: bool,
    /// A publisher returning within this time continues the same playlist.
    pub grace: Duration,
    /// An ended stream stays downloadable this long.
    pub retention: Duration,
}

/// One packaged stream: its segmenter (reached through `Deref`, under the
/// packager's locking rule) and what wakes the requests waiting for its
/// next part: a low-latency player's blocking playlist reload, a preload
/// hint, a chunked segment. A waiting request holds a `watch::Receiver`
/// (no thread, no polling) and is woken only when the stream has made
/// what it waits for: a part or a segment, or the end ([`Progress::Parts`]);
/// or any chunk ([`Progress::Chunks`]).
#[derive(Debug)]
pub struct Packaged {
    seg: Mutex<StreamSegmenter>,
    parts: watch::Sender<u64>,
    chunks: watch::Sender<u64>,
    /// Requests waiting on this stream now.
    held: AtomicUsize,
    /// DVR: where its segments go when they leave memory.
    dvr: Option<Arc<Dvr>>,
    /// The hub's record of who waits on the stream at low latency: its
    /// low-latency requests are marked there (the publisher is then read
    /// more often).
    demand: std::sync::OnceLock<Arc<Demand>>,
    /// The store's memory ledger, and the media bytes this stream added
    /// to it.
    memory: Arc<Memory>,
    bytes: AtomicU64,
    /// When it was last requested, on the ledger's clock (0: never).
    last_request: AtomicU64,
    /// Whether it has spilled to disk (logged the first time).
    spilled: AtomicBool,
}

impl Drop for Packaged {
    fn drop(&mut self) {
        self.memory.adjust(*self.bytes.get_mut(), 0);
    }
}

impl Deref for Packaged {
    type Target = Mutex<StreamSegmenter>;
    fn deref(&self) -> &Self::Target {
        &self.seg
    }
}

impl Packaged {
    /// A stream of its own, on no store's budget (VOD titles, tests).
    pub fn new(seg: StreamSegmenter) -> Arc<Packaged> {
        Self::with_dvr(seg, None, Arc::default())
    }

    /// A stream counted in `memory` whose segments go to `dvr` as they
    /// leave memory (the segmenter's DVR depth set, see
    /// [`StreamSegmenter::set_dvr`], or spilled under the budget).
    pub fn with_dvr(
        seg: StreamSegmenter,
        dvr: Option<Arc<Dvr>>,
        memory: Arc<Memory>,
    ) -> Arc<Packaged> {
        let (parts, _) = watch::channel(seg.progress());
        let (chunks, _) = watch::channel(seg.chunk_progress());
        let bytes = seg.memory_bytes();
        memory.adjust(0, bytes);
        Arc::new(Packaged {
            seg: Mutex::new(seg),
            parts,
            chunks,
            held: AtomicUsize::new(0),
            dvr,
            demand: std::sync::OnceLock::new(),
            memory,
            bytes: AtomicU64::new(bytes),
            last_request: AtomicU64::new(0),
            spilled: AtomicBool::new(false),
        })
    }

    /// Media bytes this stream holds in memory (segments, parts, init
    /// segments; spilled segments waiting for the writer are the store's).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Notes a request for the stream at `now_ms` (the ledger's clock).
    pub fn touch(&self, now_ms: u64) {
        self.last_request.store(now_ms, Ordering::Relaxed);
    }

    /// What the budget's choice knows of this stream at `now_ms`.
    fn usage(&self, now_ms: u64) -> Usage {
        let seg = lock(&self.seg);
        let (extra_bytes, spillable) = seg.budget_usage();
        let last = self.last_request.load(Ordering::Relaxed);
        let span = memory::WATCHED_TARGETS * u64::from(seg.target_duration()) * 1000;
        Usage {
            watched: last > 0 && now_ms.saturating_sub(last) <= span,
            last_request_ms: last,
            extra_bytes,
            spillable,
        }
    }

    /// Marks a low-latency request for the stream (see [`Demand`]).
    pub fn low_latency_request(&self) {
        if let Some(d) = self.demand.get() {
            d.low_latency_request();
        }
    }

    /// The stream's DVR archive, if it has one.
    pub fn dvr(&self) -> Option<&Arc<Dvr>> {
        self.dvr.as_ref()
    }

    /// Runs `f` on the segmenter, then wakes the requests waiting for
    /// what it made (after the lock is released: a woken request takes it
    /// at once).
    pub fn update<R>(&self, f: impl FnOnce(&mut StreamSegmenter) -> R) -> R {
        let mut seg = lock(&self.seg);
        let before = (seg.progress(), seg.chunk_progress());
        let r = f(&mut seg);
        if let Some(dvr) = &self.dvr {
            dvr.take(seg.take_dvr());
        }
        let after = (seg.progress(), seg.chunk_progress());
        let bytes = seg.memory_bytes();
        let before_bytes = self.bytes.swap(bytes, Ordering::Relaxed);
        self.memory.adjust(before_bytes, bytes);
        drop(seg);
        if after.0 != before.0 {
            self.parts.send_replace(after.0);
        }
        if after.1 != before.1 {
            self.chunks.send_replace(after.1);
        }
        r
    }

    /// A handle that sees the stream's next `progress`: take it before
    /// checking what exists, so nothing made in between is missed.
    pub fn subscribe(&self, progress: Progress) -> watch::Receiver<u64> {
        match progress {
            Progress::Parts => self.parts.subscribe(),
            Progress::Chunks => self.chunks.subscribe(),
        }
    }
}

impl Packaged {
    /// Lets go of what the budget asked: to disk through the stream's
    /// writer when it has room, else dropped. Counted in the ledger.
    fn release(&self, r: memory::Release, now_ms: u64) {
        let how = match &self.dvr {
            Some(_) if dvr::has_room(2 * r.spill) => Spill::Disk,
            _ => Spill::Drop,
        };
        let (freed, key) = self.update(|seg| {
            (
                seg.release(r.drop_extras, r.spill, how),
                seg.key().to_string(),
            )
        });
        let m = &self.memory;
        m.extras_dropped.fetch_add(freed.extras, Ordering::Relaxed);
        m.spilled_segments
            .fetch_add(freed.spilled, Ordering::Relaxed);
        m.spilled_bytes
            .fetch_add(freed.spilled_bytes, Ordering::Relaxed);
        m.dropped_segments
            .fetch_add(freed.dropped, Ordering::Relaxed);
        m.dropped_bytes
            .fetch_add(freed.dropped_bytes, Ordering::Relaxed);
        if freed.dropped > 0 {
            if let Some(skipped) = m.may_log(now_ms) {
                tracing::warn!(
                    stream = key,
                    segments = freed.dropped,
                    other_logs_skipped = skipped,
                    "memory budget: listed segments dropped (they could not go to disk)"
                );
            }
        }
        if freed.spilled > 0 && !self.spilled.swap(true, Ordering::Relaxed) {
            if let Some(skipped) = m.may_log(now_ms) {
                info!(
                    stream = key,
                    budget = m.budget(),
                    other_logs_skipped = skipped,
                    "memory budget: this stream's older segments now go to disk"
                );
            }
        }
    }
}

/// What a waiting request is woken by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A part or a segment made, or the stream's end: blocking playlist
    /// reloads (a playlist changes only then).
    Parts,
    /// Any chunk written, and all of the above: responses sent as they
    /// grow, and requests waiting for a part or segment to start.
    Chunks,
}

/// Bounds on requests held waiting for a part (blocking playlist reloads,
/// preload hints, chunked segments): each holds a little memory and a
/// connection, so a client cannot pile them up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    pub per_stream: usize,
    pub total: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        HoldLimits {
            per_stream: 1000,
            total: 20_000,
        }
    }
}

/// A place among the held requests: given back on drop.
pub struct Held {
    stream: Arc<Packaged>,
    total: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stream.held.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every packaged stream, by `app/key`, shared with the HTTP routes.
#[derive(Clone, Default)]
pub struct Store {
    streams: Arc<Mutex<HashMap<String, Arc<Packaged>>>>,
    /// Transcoded streams: source key -> its renditions' names (each packaged
    /// as `KEY/NAME`), for the multivariant playlist and the MPD.
    ladders: Arc<Mutex<HashMap<String, Vec<String>>>>,
    limits: HoldLimits,
    /// Requests held now, over every stream.
    held: Arc<AtomicUsize>,
    /// Media bytes held, the budget, what was let go.
    memory: Arc<Memory>,
}

impl Store {
    pub fn new(limits: HoldLimits) -> Store {
        Store {
            limits,
            ..Store::default()
        }
    }

    /// A place for one more request waiting on `stream`, or `None` when
    /// the stream's or the server's bound is reached.
    pub fn hold(&self, stream: &Arc<Packaged>) -> Option<Held> {
        let claim = |n: &AtomicUsize, max: usize| {
            n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v < max).then_some(v + 1)
            })
            .is_ok()
        };
        if !claim(&self.held, self.limits.total) {
            return None;
        }
        if !claim(&stream.held, self.limits.per_stream) {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Held {
            stream: Arc::clone(stream),
            total: Arc::clone(&self.held),
        })
    }

    /// Requests held now (all streams).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The store's memory ledger (bytes held, budget, what was let go).
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// Each stream's media bytes in memory, by name (sorted), at most `max`.
    pub fn memory_by_stream(&self, max: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = lock(&self.streams)
            .iter()
            .map(|(k, s)| (k.clone(), s.memory_bytes()))
            .collect();
        all.sort();
        all.truncate(max);
        all
    }

    /// Keeps the packaged streams within the memory budget, if they are
    /// past it and no pass ran in the last [`memory::PASS_EVERY_MS`]:
    /// cheap otherwise (two atomic loads). Locks one stream at a time.
    pub fn enforce_budget(&self) {
        let now = self.memory.now_ms();
        if !self.memory.claim_pass(now) {
            return;
        }
        let streams: Vec<Arc<Packaged>> = lock(&self.streams).values().cloned().collect();
        let usage: Vec<Usage> = streams.iter().map(|s| s.usage(now)).collect();
        for (i, release) in memory::choose(&usage, self.memory.excess()) {
            streams[i].release(release, now);
        }
    }

    /// Declares `key`'s renditions (`key/NAME` streams), listed in its
    /// manifests once they have segments.
    pub fn set_ladder(&self, key: &str, renditions: Vec<String>) {
        lock(&self.ladders).insert(key.to_string(), renditions);
    }

    /// The renditions of `key` (empty when it is not transcoded).
    pub fn ladder(&self, key: &str) -> Vec<String> {
        lock(&self.ladders).get(key).cloned().unwrap_or_default()
    }

    /// Snapshots of `key`'s renditions for its manifests, in ladder order:
    /// those with segments, and while the source is live (`source_ended`
    /// false) only those not ended. An ended rendition next to a live
    /// source is a past session's (the source was published again) or a
    /// transcode that gave up: either way not part of what plays now.
    /// One stream lock at a time.
    pub fn ladder_snapshots(&self, key: &str, source_ended: bool) -> Vec<(String, StreamSnapshot)> {
        self.ladder(key)
            .into_iter()
            .filter_map(|name| {
                let seg = self.get(&format!("{key}/{name}"))?;
                let seg = lock(&seg);
                let current = source_ended || !seg.is_ended();
                (current && seg.has_segments()).then(|| (name, seg.snapshot()))
            })
            .collect()
    }

    /// Adds `name` to `key`'s renditions (see [`Store::set_ladder`]).
    pub fn add_rendition(&self, key: &str, name: String) {
        let mut ladders = lock(&self.ladders);
        let ladder = ladders.entry(key.to_string()).or_default();
        if !ladder.contains(&name) {
            ladder.push(name);
        }
    }

    /// Makes `s` what `key` serves (a multitrack track's stream: its
    /// source's new session already dropped the previous one's).
    pub fn put(&self, key: &str, s: Arc<Packaged>) {
        lock(&self.streams).insert(key.to_string(), s);
    }

    pub fn get(&self, key: &str) -> Option<Arc<Packaged>> {
        lock(&self.streams).get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = lock(&self.streams).keys().cloned().collect();
        k.sort();
        k
    }

    /// Makes `s` what `key` serves. A new session of a stream also drops
    /// what is kept of its renditions' (`key/NAME`) ended sessions, except
    /// those in `running` (live, or within their grace period): they were
    /// the previous session's, and the new one's replace them only when its
    /// transcode starts.
    fn insert(&self, key: &str, s: Arc<Packaged>, running: &HashMap<String, Arc<Packaged>>) {
        let mut map = lock(&self.streams);
        let prefix = format!("{key}/");
        map.retain(|k, _| !k.starts_with(&prefix) || running.contains_key(k));
        map.insert(key.to_string(), s);
    }

    /// Stops serving `key` if it is still `s`.
    pub fn remove_if_same(&self, key: &str, s: &Arc<Packaged>) {
        let mut map = lock(&self.streams);
        if map.get(key).is_some_and(|cur| Arc::ptr_eq(cur, s)) {
            map.remove(key);
            lock(&self.ladders).remove(key);
        }
    }
}

/// Starts and tracks packaged streams.
#[derive(Clone)]
pub struct Packager {
    hub: Hub,
    store: Store,
    config: PackagerConfig,
    running: Arc<Mutex<HashMap<String, Arc<Packaged>>>>,
    /// Streams segmented on the aligned grid (see [`Packager::align`]).
    aligned: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// Feeds one stream's segmenter from the hub, on the publisher's thread.
struct SegmenterTap {
    seg: Arc<Packaged>,
    /// Its other multitrack tracks, each packaged as a stream of its own.
    tracks: Arc<Mutex<Vec<TrackStream>>>,
    store: Store,
    config: SegmenterConfig,
    /// Whether a publisher is live, for the grace-period timer.
    live: watch::Sender<bool>,
    /// Set when the segmenter panicked: it is not fed again.
    broken: AtomicBool,
    key: String,
    /// The audio tracks' names and languages from the last `onMetaData`
    /// (see [`super::labels`]), for tracks packaged later too.
    labels: Mutex<Vec<(TrackId, TrackLabel)>>,
    /// Where the tracks' streams spill under the memory budget.
    spill_dir: Option<std::path::PathBuf>,
}

/// An Enhanced RTMP multitrack track other than track 0, packaged as
/// `KEY/video1`, `KEY/audio2`…: video tracks are variants of the stream's
/// ladder (segmented on the shared grid, like a transcode's renditions),
/// audio tracks its alternative audio renditions.
struct TrackStream {
    kind: MediaKind,
    id: TrackId,
    seg: Arc<Packaged>,
}

/// The name of a track's stream below its source's key.
pub fn track_name(kind: MediaKind, id: TrackId) -> String {
    match kind {
        MediaKind::Video => format!("video{id}"),
        MediaKind::Audio => format!("audio{id}"),
    }
}

impl SegmenterTap {
    /// The stream of another track, made at its first configuration.
    fn track(&self, kind: MediaKind, id: TrackId, create: bool) -> Option<Arc<Packaged>> {
        let mut tracks = lock(&self.tracks);
        if let Some(t) = tracks.iter().find(|t| (t.kind, t.id) == (kind, id)) {
            return Some(t.seg.clone());
        }
        if !create {
            return None;
        }
        let name = track_name(kind, id);
        let key = format!("{}/{name}", self.key);
        let config = SegmenterConfig {
            aligned: kind == MediaKind::Video,
            ..self.config
        };
        let stream = StreamSegmenter::new(&key, config, SystemTime::now());
        let dvr = self
            .spill_dir
            .as_ref()
            .map(|d| Dvr::new(d, &key, stream.next_number(), self.store.memory().clone()));
        let seg = Packaged::with_dvr(stream, dvr, self.store.memory().clone());
        if kind == MediaKind::Audio {
            let label = self.label(id);
            seg.update(|s| s.set_audio_label(label));
        }
        if kind == MediaKind::Video {
            // Variants switch seamlessly only on a shared grid.
            self.seg.update(|s| s.align());
        }
        self.store.put(&key, seg.clone());
        self.store.add_rendition(&self.key, name);
        info!(stream = self.key, track = key, "multitrack track packaged");
        tracks.push(TrackStream {
            kind,
            id,
            seg: seg.clone(),
        });
        Some(seg)
    }

    /// The label the publisher gave audio track `id`, if any.
    fn label(&self, id: TrackId) -> TrackLabel {
        let labels = lock(&self.labels);
        let found = labels.iter().find(|(i, _)| *i == id);
        found.map(|(_, l)| l.clone()).unwrap_or_default()
    }

    /// A new `onMetaData`: its audio labels replace the last ones, on
    /// every audio track packaged so far.
    fn relabel(&self, amf0: &[u8]) {
        *lock(&self.labels) = labels::audio_labels(amf0);
        let label = self.label(0);
        self.seg.update(|s| s.set_audio_label(label));
        let audio: Vec<_> = lock(&self.tracks)
            .iter()
            .filter(|t| t.kind == MediaKind::Audio)
            .map(|t| (t.id, t.seg.clone()))
            .collect();
        for (id, seg) in audio {
            let label = self.label(id);
            seg.update(|s| s.set_audio_label(label));
        }
    }

    fn feed(&self, event: &StreamEvent, now: SystemTime) {
        match event {
            StreamEvent::Metadata(m) => {
                self.relabel(m.amf0());
                self.seg.update(|seg| seg.push(event, now));
            }
            StreamEvent::TrackConfig(id, c) => {
                if let Some(t) = self.track(c.kind(), *id, true) {
                    t.update(|seg| seg.push(&StreamEvent::Config(c.clone()), now));
                }
            }
            StreamEvent::TrackFrame(id, f) => {
                if let Some(t) = self.track(f.kind(), *id, false) {
                    t.update(|seg| seg.push(&StreamEvent::Frame(f.clone()), now));
                }
            }
            StreamEvent::PublisherStarted | StreamEvent::PublisherStopped => {
                self.seg.update(|seg| seg.push(event, now));
                let tracks: Vec<_> = lock(&self.tracks).iter().map(|t| t.seg.clone()).collect();
                for t in tracks {
                    t.update(|seg| seg.push(event, now));
                }
            }
            _ => self.seg.update(|seg| seg.push(event, now)),
        }
    }
}

impl Tap for SegmenterTap {
    fn event(&self, event: &StreamEvent) {
        match event {
            StreamEvent::PublisherStarted => {
                self.live.send_replace(true);
            }
            StreamEvent::PublisherStopped => {
                self.live.send_replace(false);
            }
            _ => {}
        }
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        // The tap runs on the publisher's connection: a packager bug must
        // end this stream's packaging, not the publish or its RTMP players.
        let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.feed(event, SystemTime::now());
            self.store.enforce_budget();
        }));
        if pushed.is_err() {
            self.broken.store(true, Ordering::Relaxed);
            error!(
                stream = self.key,
                "packaging failed (a bug); HLS and DASH for this stream stop here"
            );
        }
    }
}

impl Packager {
    pub fn new(hub: Hub, store: Store, config: PackagerConfig) -> Self {
        Packager {
            hub,
            store,
            config,
            running: Arc::default(),
            aligned: Arc::default(),
        }
    }

    /// Segments `key` on the aligned grid ([`SegmenterConfig::aligned`])
    /// from its next [`Packager::ensure`] on: a transcode ladder's source and
    /// renditions cut at the same keyframes. Call before `ensure`.
    pub fn align(&self, key: &str) {
        lock(&self.aligned).insert(key.to_string());
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes sure `key` is being packaged. Called when a publish starts,
    /// before any media flows; a stream already packaged (its publisher
    /// returning within the grace period) keeps its segmenter and playlist.
    pub fn ensure(&self, key: &crate::stream_key::StreamKey) {
        let key = key.as_str();
        let mut running = lock(&self.running);
        if running.contains_key(key) {
            return;
        }
        info!(stream = key, "packaging started");
        let segmenter = SegmenterConfig {
            aligned: lock(&self.aligned).contains(key),
            ..self.config.segmenter
        };
        let mut stream = StreamSegmenter::new(key, segmenter, SystemTime::now());
        let memory = self.store.memory().clone();
        let dvr = self.config.dvr_dir.as_ref().map(|dir| {
            if self.config.dvr_ms > 0 {
                stream.set_dvr(self.config.dvr_ms);
                if self.config.dvr_event {
                    stream.set_playlist_type(super::model::PlaylistType::Event);
                }
            }
            // Without DVR, only what the memory budget spills goes there.
            Dvr::new(dir, key, stream.next_number(), memory.clone())
        });
        let seg = Packaged::with_dvr(stream, dvr, memory);
        let _ = seg.demand.set(self.hub.demand(key));
        running.insert(key.to_string(), seg.clone());
        self.store.insert(key, seg.clone(), &running);
        let (live, live_rx) = watch::channel(false);
        let tracks: Arc<Mutex<Vec<TrackStream>>> = Arc::default();
        let tap = self.hub.tap(
            key,
            Arc::new(SegmenterTap {
                seg: seg.clone(),
                tracks: tracks.clone(),
                store: self.store.clone(),
                config: segmenter,
                live,
                broken: AtomicBool::new(false),
                key: key.to_string(),
                labels: Mutex::default(),
                spill_dir: self.config.dvr_dir.clone(),
            }),
        );
        let this = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            this.watch_grace(&key, tap, live_rx, &seg).await;
            let tracks = std::mem::take(&mut *lock(&tracks));
            for t in &tracks {
                t.seg.update(|s| s.end(SystemTime::now()));
            }
            // Keep the ended stream for late players, then forget it (unless
            // a new publish replaced it meanwhile).
            tokio::time::sleep(this.config.retention).await;
            for t in &tracks {
                let track_key = format!("{key}/{}", track_name(t.kind, t.id));
                this.store.remove_if_same(&track_key, &t.seg);
            }
            this.store.remove_if_same(&key, &seg);
            for dvr in tracks.iter().filter_map(|t| t.seg.dvr()).chain(seg.dvr()) {
                dvr.remove();
            }
            info!(stream = key, "packaged stream dropped after retention");
        });
    }

    /// Shutdown: ends every packaged stream now, without waiting for the
    /// grace period (open segments close, playlists get EXT-X-ENDLIST, the
    /// MPD turns static). Returns how many.
    pub fn end_all(&self) -> usize {
        let segs: Vec<_> = lock(&self.running).values().cloned().collect();
        for s in &segs {
            s.update(|seg| seg.end(SystemTime::now()));
        }
        segs.len()
    }

    /// Ends the stream once its publisher has been gone for the grace period.
    async fn watch_grace(
        &self,
        key: &str,
        tap: TapHandle,
        mut live: watch::Receiver<bool>,
        seg: &Arc<Packaged>,
    ) {
        loop {
            if live.wait_for(|l| !*l).await.is_err() {
                break;
            }
            let deadline = tokio::time::Instant::now() + self.config.grace;
            if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, live.wait_for(|l| *l)).await {
                continue;
            }
            // Decide under the registry lock, so a publish that arrives now
            // either finds this stream still running or starts a new one.
            let mut running = lock(&self.running);
            if *live.borrow() {
                continue;
            }
            running.remove(key);
            lock(&self.aligned).remove(key);
            drop(tap);
            break;
        }
        let stats = seg.update(|s| {
            s.end(SystemTime::now());
            s.stats
        });
        info!(stream = key, ?stats, "packaging ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;
    use crate::package::serve::test_support::publish;

    /// Waits (bounded) until `key`'s packaged stream is ended.
    async fn ended(store: &Store, key: &str) {
        let bound = Duration::from_secs(10);
        tokio::time::timeout(bound, async {
            while !store.get(key).is_some_and(|s| lock(&s).is_ended()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the stream ends once the grace period is over");
    }

    /// A key published again after its stream ended (grace over, still
    /// retained) never serves the ended session as current: from the new
    /// publish on, the store answers with the new session only, "no segment
    /// yet" until its first segment.
    #[tokio::test]
    async fn republish_after_grace_replaces_the_ended_session_at_once() {
        let hub = Hub::new(HubConfig::default());
        let store = Store::default();
        let packager = packager(&hub, &store);
        let key = "live/again";
        drop(publish(&hub, &packager, key, 0..9000));
        ended(&store, key).await;
        let old = store.get(key).unwrap();
        assert!(lock(&old).has_segments());

        let p = publish(&hub, &packager, key, 0..1);
        let now = store.get(key).unwrap();
        assert!(
            !Arc::ptr_eq(&old, &now),
            "the ended session is still served"
        );
        let s = lock(&now);
        assert!(!s.is_ended() && !s.has_segments());
        drop(s);
        drop(p);
    }

    fn packager(hub: &Hub, store: &Store) -> Packager {
        let config = PackagerConfig {
            segmenter: SegmenterConfig::default(),
            dvr_ms: 0,
            dvr_dir: None,
            dvr_event: false,
            grace: Duration::from_millis(20),
            retention: Duration::from_secs(600),
        };
        Packager::new(hub.clone(), store.clone(), config)
    }

    /// Past the budget, the unwatched stream drops its extra segments and
    /// sends its oldest listed one to disk, through the DVR writer: still
    /// listed, served with the same bytes; the watched stream keeps all.
    /// The ledger is the sum of the streams' counts (and what waits for
    /// the writer), and a dropped stream takes its bytes out of it.
    #[tokio::test]
    async fn past_the_budget_the_unwatched_stream_spills_and_is_served_from_disk() {
        use crate::package::serve::Payload;
        use crate::package::urls::{Directives, Resource};

        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(HubConfig::default());
        let store = Store::default();
        let config = PackagerConfig {
            segmenter: SegmenterConfig {
                window: 8,
                extra: 2,
                ..SegmenterConfig::default()
            },
            dvr_dir: Some(dir.path().to_path_buf()),
            ..packager(&hub, &store).config
        };
        let packager = Packager::new(hub.clone(), store.clone(), config);
        let _w = publish(&hub, &packager, "live/watched", 0..30_000);
        let _i = publish(&hub, &packager, "live/idle", 0..30_000);
        let (watched, idle) = (
            store.get("live/watched").unwrap(),
            store.get("live/idle").unwrap(),
        );
        let m = store.memory().clone();
        assert_eq!(m.held(), watched.memory_bytes() + idle.memory_bytes());
        assert!(idle.memory_bytes() > 0);
        watched.touch(m.now_ms());

        let video = MediaKind::Video;
        let first = lock(&idle).snapshot().video.unwrap().segments[0].number;
        let before = lock(&idle).segment(video, first).unwrap().concat();
        let playlist = |s: &Arc<Packaged>| lock(s).snapshot().video.unwrap().segments;
        let listed = playlist(&idle);
        let (idle_extra, spillable) = lock(&idle).budget_usage();
        let (watched_bytes, held) = (watched.memory_bytes(), m.held());
        m.set_budget(held - idle_extra - 1);
        store.enforce_budget();

        assert_eq!(
            watched.memory_bytes(),
            watched_bytes,
            "the watched stream keeps all"
        );
        assert_eq!(
            idle.memory_bytes(),
            held - watched_bytes - idle_extra - spillable[0]
        );
        assert!(
            m.held() <= m.budget() + spillable[0],
            "pending for the writer"
        );
        assert!(lock(&idle).on_disk(video, first));
        assert_eq!(playlist(&idle), listed, "playlist unchanged");
        assert_eq!(m.spilled_segments.load(Ordering::Relaxed), 1);
        assert_eq!(m.extras_dropped.load(Ordering::Relaxed), 2);

        // Written (the ledger lets go of it), then served from disk.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while m.held() > m.budget() {
            assert!(std::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let files = |d: &std::path::Path| std::fs::read_dir(d).map_or(0, |r| r.count());
        let sessions = dir.path().join("live/idle");
        assert_eq!(files(&sessions), 1, "one session directory");
        assert!(files(&dir.path().join("live/watched")) == 0);
        let served = store
            .answer(
                "live/idle",
                Resource::Segment(video, first),
                Directives::default(),
                &[],
            )
            .await
            .unwrap();
        let Payload::Chunks(chunks) = served.payload else {
            panic!("{:?}", served.payload)
        };
        assert_eq!(chunks.concat(), before, "the same bytes");

        // A stream dropped takes its bytes out of the ledger.
        let bytes = m.held();
        let mut seg =
            StreamSegmenter::new("live/gone", SegmenterConfig::default(), SystemTime::now());
        let config =
            crate::media::avc::build_decoder_config(&[0x67, 0x64, 0, 0x1f, 0xac], &[0x68, 0xee])
                .unwrap();
        seg.push(
            &StreamEvent::Config(Arc::new(crate::media::CodecConfig::Avc(config))),
            SystemTime::now(),
        );
        let gone = Packaged::with_dvr(seg, None, m.clone());
        assert!(m.held() > bytes);
        drop(gone);
        assert_eq!(m.held(), bytes);
    }

    /// A transcoded key published again: its previous session's renditions
    /// (ended, still retained) are dropped with the new publish, so neither
    /// their URLs nor the new session's manifests show them.
    #[tokio::test]
    async fn republish_drops_the_previous_sessions_renditions() {
        let hub = Hub::new(HubConfig::default());
        let store = Store::default();
        let packager = packager(&hub, &store);
        let (key, rendition) = ("live/ladder", "live/ladder/240p");
        store.set_ladder(key, vec!["240p".into()]);
        let source = publish(&hub, &packager, key, 0..9000);
        let r = publish(&hub, &packager, rendition, 0..9000);
        assert_eq!(store.ladder_snapshots(key, false).len(), 1);
        drop((source, r));
        ended(&store, key).await;
        ended(&store, rendition).await;
        assert_eq!(store.ladder_snapshots(key, true).len(), 1);

        let _p = publish(&hub, &packager, key, 0..1);
        assert!(
            store.get(rendition).is_none(),
            "the ended rendition is still served"
        );
        assert!(store.ladder_snapshots(key, false).is_empty());
        // The new session's rendition, once its transcode publishes it.
        let _r = publish(&hub, &packager, rendition, 0..9000);
        let now = store.get(rendition).unwrap();
        assert!(!lock(&now).is_ended());
        assert_eq!(store.ladder_snapshots(key, false).len(), 1);
    }

    /// While the source is live, its manifests leave out an ended rendition
    /// (a transcode that gave up); once the source has ended too, the
    /// retained ladder is listed whole.
    #[tokio::test]
    async fn a_live_source_lists_only_live_renditions() {
        let hub = Hub::new(HubConfig::default());
        let store = Store::default();
        let packager = packager(&hub, &store);
        let key = "live/half";
        store.set_ladder(key, vec!["a".into(), "b".into()]);
        let _source = publish(&hub, &packager, key, 0..9000);
        let _a = publish(&hub, &packager, "live/half/a", 0..9000);
        drop(publish(&hub, &packager, "live/half/b", 0..9000));
        ended(&store, "live/half/b").await;
        let names = |ended| -> Vec<String> {
            store
                .ladder_snapshots(key, ended)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names(false), ["a"]);
        assert_eq!(names(true), ["a", "b"]);
    }

    /// An Enhanced RTMP multitrack publish (FFmpeg 9: two H.264 video
    /// tracks, 64x64 and 32x32, an AAC and an Opus audio track) packaged
    /// with no transcoding: the second video track is a variant of the
    /// multivariant playlist and a Representation of the video
    /// AdaptationSet, the second audio track an alternative rendition
    /// and an AdaptationSet of its own.
    #[tokio::test]
    async fn multitrack_tracks_become_variants_and_audio_renditions() {
        use crate::package::serve::test_support::Live;
        use crate::package::serve::Payload;
        use crate::package::urls::Resource;

        let live = Live::new();
        let key = "live/multi";
        publish_multitrack(&live, key, None);
        let text = |r| match live.store.serve(key, r, &[]).unwrap().payload {
            Payload::Text(t) => t,
            other => panic!("{other:?}"),
        };
        let m3u8 = text(Resource::Multivariant);
        let variants: Vec<&str> = m3u8
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
            .collect();
        assert_eq!(variants.len(), 2, "{m3u8}");
        assert!(variants[0].contains("RESOLUTION=64x64"), "{m3u8}");
        assert!(variants[1].contains("RESOLUTION=32x32"), "{m3u8}");
        for v in &variants {
            assert!(v.contains("mp4a.40.2,opus"), "both audio codecs: {m3u8}");
        }
        assert!(m3u8.contains("\nvideo1/video.m3u8\n"), "{m3u8}");
        let audio: Vec<&str> = m3u8
            .lines()
            .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
            .collect();
        assert_eq!(audio.len(), 2, "{m3u8}");
        assert!(audio[0].contains("DEFAULT=YES") && audio[0].contains("URI=\"audio.m3u8\""));
        assert!(
            audio[1].contains("NAME=\"track 1\",DEFAULT=NO")
                && audio[1].contains("URI=\"audio1/audio.m3u8\""),
            "{m3u8}"
        );

        let mpd = text(Resource::Mpd);
        assert_eq!(mpd.matches("<AdaptationSet").count(), 3, "{mpd}");
        assert_eq!(mpd.matches("contentType=\"audio\"").count(), 2, "{mpd}");
        assert!(mpd.contains("<Representation id=\"video-video1\""), "{mpd}");
        assert!(mpd.contains("<Label>audio1</Label>"), "{mpd}");
        assert!(mpd.contains("codecs=\"opus\""), "{mpd}");

        // The tracks' own playlists exist, under their names.
        for track in ["live/multi/video1", "live/multi/audio1"] {
            assert!(live
                .store
                .get(track)
                .is_some_and(|s| lock(&s).has_segments()));
        }
    }

    /// FFmpeg 9's two-video, two-audio multitrack publish (half a second,
    /// a keyframe at its start, sent eight times over) on `key`, after
    /// `metadata` (an `onMetaData` object) when given.
    fn publish_multitrack(
        live: &crate::package::serve::test_support::Live,
        key: &str,
        metadata: Option<crate::amf::amf0::Amf0Value>,
    ) {
        use crate::media::flv::Ingest;
        use crate::media::flv_file::{read_tags, TAG_AUDIO, TAG_VIDEO};

        let stream_key = crate::stream_key::StreamKey::parse(key).unwrap();
        let p = live.hub.publish(&stream_key, "peer").unwrap();
        live.packager.ensure(&stream_key);
        let file =
            bytes::Bytes::from_static(include_bytes!("../media/flv/testdata/multitrack_av.flv"));
        let mut ingest = Ingest::new();
        if let Some(m) = metadata {
            let amf0 = crate::amf::amf0::encode_all(&[m]);
            ingest.metadata(amf0.into(), |e| {
                p.send(e);
            });
        }
        for round in 0..8u32 {
            for tag in read_tags(&file).unwrap() {
                let kind = match tag.tag_type {
                    TAG_VIDEO => MediaKind::Video,
                    TAG_AUDIO => MediaKind::Audio,
                    _ => continue,
                };
                let ts = tag.timestamp + round * 500;
                ingest
                    .media(kind, ts, tag.body, |e| {
                        p.send(e);
                    })
                    .unwrap();
            }
        }
    }

    /// The publisher's names and languages for its audio tracks (Enhanced
    /// RTMP `audioTrackIdInfoMap`, and `language` for track 0) name the
    /// HLS renditions and the DASH AdaptationSets.
    #[tokio::test]
    async fn audio_tracks_take_the_names_and_languages_of_the_metadata() {
        use crate::amf::amf0::Amf0Value;
        use crate::package::serve::test_support::Live;
        use crate::package::serve::Payload;
        use crate::package::urls::Resource;

        let live = Live::new();
        let key = "live/languages";
        let metadata = Amf0Value::object([
            ("language", Amf0Value::string("en")),
            (
                "audioTrackIdInfoMap",
                Amf0Value::object([(
                    "1",
                    Amf0Value::object([
                        ("name", Amf0Value::string("Commentaire & analyse")),
                        ("language", Amf0Value::string("fr-CA")),
                    ]),
                )]),
            ),
        ]);
        publish_multitrack(&live, key, Some(metadata));
        let text = |r| match live.store.serve(key, r, &[]).unwrap().payload {
            Payload::Text(t) => t,
            other => panic!("{other:?}"),
        };
        let m3u8 = text(Resource::Multivariant);
        let audio: Vec<&str> = m3u8
            .lines()
            .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
            .collect();
        assert_eq!(audio.len(), 2, "{m3u8}");
        assert!(
            audio[0].contains("NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE=\"en\""),
            "{m3u8}"
        );
        assert!(
            audio[1].contains(
                "NAME=\"Commentaire & analyse\",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE=\"fr-CA\""
            ) && audio[1].contains("URI=\"audio1/audio.m3u8\""),
            "{m3u8}"
        );
        let mpd = text(Resource::Mpd);
        assert!(
            mpd.contains("contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"en\""),
            "{mpd}"
        );
        assert!(
            mpd.contains("lang=\"fr-CA\" segmentAlignment=\"true\" startWithSAP=\"1\">\n      <Label>Commentaire &amp; analyse</Label>"),
            "{mpd}"
        );
    }
}
