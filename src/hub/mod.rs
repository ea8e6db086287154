//! Live streams by `app/key`: one publisher, many subscribers.
//!
//! The publisher pushes [`StreamEvent`]s; each subscriber has its own bounded
//! queue with a drop policy, so a slow consumer never makes the publisher or
//! another consumer wait. New subscribers start from the GOP cache (metadata,
//! sequence headers and the frames since the last keyframe) so players start
//! at once. The hub knows no protocol.
//!
//! A [`Tap`] is a synchronous consumer: it sees every event on the
//! publisher's own thread, in order, with no queue and no task wake-up. The
//! packager is one: it only appends to in-memory segments, and waking a task
//! per frame cost more than the packaging itself.

mod demand;
mod queue;
mod settings;

use crate::locks::lock;
use crate::stream_key::StreamKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::media::{CodecConfig, Frame, MediaKind, Metadata, TrackId};
pub use demand::Demand;
use queue::SubscriberQueue;
pub use queue::{Closed, QueueLimits};
pub use settings::Settings;

/// The events are media's: the hub only routes them.
pub use crate::media::StreamEvent;

impl StreamEvent {
    /// Approximate memory cost, for queue accounting.
    fn cost(&self) -> usize {
        64 + match self {
            StreamEvent::Frame(f) => f.data.len(),
            _ => 0,
        }
    }
}

/// What to do when a second publisher arrives on a live key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishConflict {
    /// The new publisher replaces the old one (an encoder reconnecting after
    /// a network drop must not be told "already publishing").
    #[default]
    Takeover,
    /// The new publisher is refused.
    Reject,
}

#[derive(Clone, Copy, Debug)]
pub struct HubConfig {
    pub publish_conflict: PublishConflict,
    pub gop_cache: bool,
    /// A GOP larger than this is not cached (players then wait for the next keyframe).
    pub gop_cache_max_bytes: usize,
    pub queue: QueueLimits,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            publish_conflict: PublishConflict::Takeover,
            gop_cache: true,
            gop_cache_max_bytes: 32 * 1024 * 1024,
            queue: QueueLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("stream {0} is already being published")]
    AlreadyPublishing(String),
}

/// The registry of live streams.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    /// `config.publish_conflict` as last set (a reload changes it).
    reject_conflicts: AtomicBool,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_id: AtomicU64,
}

/// One stream slot. It exists while it has a publisher or subscribers.
pub struct Stream {
    key: String,
    state: Mutex<StreamState>,
    /// Who waits on it at low latency (its subscribers counted here).
    demand: Arc<Demand>,
}

/// A synchronous consumer of one stream's events; see the module docs.
/// Called with the stream locked: it must be quick and must not call back
/// into the hub.
pub trait Tap: Send + Sync {
    fn event(&self, event: &StreamEvent);
}

#[derive(Default)]
struct StreamState {
    /// Incremented for every publisher; events from an older one are ignored.
    generation: u64,
    publisher: Option<PublisherSlot>,
    subscribers: Vec<Arc<SubscriberQueue>>,
    taps: Vec<(u64, Arc<dyn Tap>)>,
    metadata: Option<Metadata>,
    video_config: Option<Arc<CodecConfig>>,
    audio_config: Option<Arc<CodecConfig>>,
    /// Multitrack tracks other than track 0: their latest configurations.
    track_configs: Vec<(MediaKind, TrackId, Arc<CodecConfig>)>,
    /// Frames since the last video keyframe (every track), if it fits:
    /// `Frame` and `TrackFrame` events.
    gop: Vec<StreamEvent>,
    gop_bytes: usize,
    /// Offset added to the current publisher's timestamps so that time keeps
    /// rising for subscribers across a publisher change.
    offset: Option<i64>,
    /// Highest presentation time delivered so far (after the offset).
    last_pts: Option<i64>,
    rates: Rates,
}

struct PublisherSlot {
    id: u64,
    peer: String,
    protocol: &'static str,
    kick: watch::Sender<bool>,
    since: std::time::Instant,
}

/// Information about a stream, for logs and the API.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    pub key: String,
    pub publisher: Option<String>,
    /// What the publisher publishes over (`rtmpe`, `srt`, `pull` …).
    pub publisher_protocol: Option<&'static str>,
    pub subscribers: usize,
    /// Consumers fed synchronously (the packager, relays).
    pub taps: usize,
    /// When the current publisher started.
    pub since: Option<std::time::Instant>,
    pub video: Option<Arc<CodecConfig>>,
    pub audio: Option<Arc<CodecConfig>>,
    /// Over the last few seconds of media time.
    pub video_kbps: Option<f64>,
    pub audio_kbps: Option<f64>,
    pub fps: Option<f64>,
    /// Frames the current subscribers (players) lost to their drop policy.
    pub subscribers_dropped: u64,
    /// Someone waits on it at low latency (see [`Demand`]).
    pub low_latency_wanted: bool,
    /// How often its publisher's connection reads it (`None`: as bytes
    /// arrive, or not an RTMP publisher on plain TCP).
    pub read_period: Option<std::time::Duration>,
}

/// Bytes and frames per second of media time, in one-second buckets keyed
/// by decode time: no clock read on the publisher's path.
#[derive(Default)]
struct Rates {
    /// (second, video bytes, audio bytes, video frames)
    buckets: [(i64, u64, u64, u32); RATE_BUCKETS],
    first: Option<i64>,
    last: i64,
}

const RATE_BUCKETS: usize = 8;
/// Complete seconds averaged over.
const RATE_WINDOW: i64 = 5;

impl Rates {
    fn add(&mut self, f: &Frame) {
        let sec = f.dts.div_euclid(1000);
        let first = *self.first.get_or_insert(sec);
        if sec < first {
            return;
        }
        self.last = self.last.max(sec);
        let b = &mut self.buckets[sec.rem_euclid(RATE_BUCKETS as i64) as usize];
        if b.0 != sec {
            *b = (sec, 0, 0, 0);
        }
        let n = f.data.len() as u64;
        match f.kind() {
            MediaKind::Video => {
                b.1 += n;
                b.3 += 1;
            }
            MediaKind::Audio => b.2 += n,
        }
    }

    /// (video kbit/s, audio kbit/s, fps) over the last complete seconds.
    fn get(&self) -> Option<(f64, f64, f64)> {
        let first = self.first?;
        let from = (self.last - RATE_WINDOW).max(first);
        let secs = self.last - from;
        if secs <= 0 {
            return None;
        }
        let (mut v, mut a, mut n) = (0u64, 0u64, 0u64);
        for b in &self.buckets {
            if b.0 >= from && b.0 < self.last {
                v += b.1;
                a += b.2;
                n += u64::from(b.3);
            }
        }
        let s = secs as f64;
        Some((
            v as f64 * 8.0 / 1000.0 / s,
            a as f64 * 8.0 / 1000.0 / s,
            n as f64 / s,
        ))
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Hub {
            inner: Arc::new(HubInner {
                reject_conflicts: AtomicBool::new(
                    config.publish_conflict == PublishConflict::Reject,
                ),
                config,
                streams: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// As built; the conflict rule may have changed since
    /// ([`Hub::set_publish_conflict`]).
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// What a second publisher on a live key does now.
    pub fn publish_conflict(&self) -> PublishConflict {
        if self.inner.reject_conflicts.load(Ordering::Relaxed) {
            PublishConflict::Reject
        } else {
            PublishConflict::Takeover
        }
    }

    /// What a second publisher on a live key does from now on.
    pub fn set_publish_conflict(&self, conflict: PublishConflict) {
        self.inner
            .reject_conflicts
            .store(conflict == PublishConflict::Reject, Ordering::Relaxed);
    }

    fn slot(&self, key: &str) -> Arc<Stream> {
        let mut streams = lock(&self.inner.streams);
        streams
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Stream {
                    key: key.to_string(),
                    state: Mutex::new(StreamState::default()),
                    demand: Arc::default(),
                })
            })
            .clone()
    }

    /// Starts publishing `key` for `peer`. Only the stream registry calls
    /// this in castgate (`streams::Registry::publish`): a publish always
    /// goes through it.
    pub fn publish(&self, key: &StreamKey, peer: &str) -> Result<Publisher, PublishError> {
        self.publish_over(key, peer, "rtmp")
    }

    /// [`Hub::publish`] naming the protocol the publisher uses.
    pub fn publish_over(
        &self,
        key: &StreamKey,
        peer: &str,
        protocol: &'static str,
    ) -> Result<Publisher, PublishError> {
        let key = key.as_str();
        let stream = self.slot(key);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (kick_tx, kick_rx) = watch::channel(false);
        let generation;
        {
            let mut st = lock(&stream.state);
            if let Some(old) = &st.publisher {
                if self.inner.reject_conflicts.load(Ordering::Relaxed) {
                    drop(st);
                    self.remove_if_unused(&stream);
                    return Err(PublishError::AlreadyPublishing(key.to_string()));
                }
                tracing::info!(stream = key, old = %old.peer, new = peer, "publisher takeover");
                let _ = old.kick.send(true);
            }
            st.generation += 1;
            generation = st.generation;
            // The new publisher's connection says how it reads, if it batches.
            stream.demand.set_read_period(None);
            st.publisher = Some(PublisherSlot {
                id,
                peer: peer.to_string(),
                protocol,
                kick: kick_tx,
                since: std::time::Instant::now(),
            });
            st.rates = Rates::default();
            st.metadata = None;
            st.video_config = None;
            st.audio_config = None;
            st.track_configs.clear();
            st.gop.clear();
            st.gop_bytes = 0;
            st.offset = None;
            let limits = self.inner.config.queue;
            st.subscribers
                .retain(|q| q.push(StreamEvent::PublisherStarted, &limits));
            for (_, tap) in &st.taps {
                tap.event(&StreamEvent::PublisherStarted);
            }
        }
        Ok(Publisher {
            hub: self.clone(),
            stream,
            generation,
            id,
            kicked: kick_rx,
        })
    }

    /// Subscribes to `key`, whether or not it is being published yet. The
    /// queue starts with the GOP cache when a publisher is live.
    pub fn subscribe(&self, key: &str) -> Subscriber {
        let stream = self.slot(key);
        let queue = Arc::new(SubscriberQueue::new());
        {
            let mut st = lock(&stream.state);
            if st.publisher.is_some() {
                queue.push_initial(st.initial_events());
            }
            st.subscribers.push(queue.clone());
            stream.demand.set_subscribers(st.subscribers.len());
        }
        Subscriber {
            hub: self.clone(),
            stream,
            queue,
        }
    }

    /// Attaches a synchronous consumer to `key`. If a publisher is live, the
    /// tap first gets what a new subscriber would (start, metadata, configs,
    /// the GOP cache). Dropping the handle detaches it.
    pub fn tap(&self, key: &str, tap: Arc<dyn Tap>) -> TapHandle {
        let stream = self.slot(key);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = lock(&stream.state);
            if st.publisher.is_some() {
                for e in st.initial_events() {
                    tap.event(&e);
                }
            }
            st.taps.push((id, tap));
        }
        TapHandle {
            hub: self.clone(),
            stream,
            id,
        }
    }

    /// `key`'s demand for low latency, for a consumer outside the hub (the
    /// packager's low-latency requests) to mark.
    pub fn demand(&self, key: &str) -> Arc<Demand> {
        self.slot(key).demand.clone()
    }

    /// Whether `key` has a live publisher.
    pub fn is_live(&self, key: &str) -> bool {
        let streams = lock(&self.inner.streams);
        streams
            .get(key)
            .is_some_and(|s| lock(&s.state).publisher.is_some())
    }

    /// What the current publisher of `key` publishes over; `None`: not live.
    pub fn publisher_protocol(&self, key: &str) -> Option<&'static str> {
        let streams = lock(&self.inner.streams);
        let s = streams.get(key)?;
        let st = lock(&s.state);
        st.publisher.as_ref().map(|p| p.protocol)
    }

    /// The streams players wait for that nobody publishes: (key, players).
    pub fn waited_for(&self) -> Vec<(String, usize)> {
        let streams = lock(&self.inner.streams);
        streams
            .iter()
            .filter_map(|(k, s)| {
                let st = lock(&s.state);
                (st.publisher.is_none() && !st.subscribers.is_empty())
                    .then(|| (k.clone(), st.subscribers.len()))
            })
            .collect()
    }

    /// Every stream slot (live, or waited for by players and relays).
    pub fn streams(&self) -> Vec<StreamInfo> {
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).values().cloned().collect();
        let mut out: Vec<StreamInfo> = streams.iter().map(|s| s.info()).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// One stream, if it has a slot.
    pub fn stream(&self, key: &str) -> Option<StreamInfo> {
        let s = lock(&self.inner.streams).get(key).cloned();
        s.map(|s| s.info())
    }

    fn remove_if_unused(&self, stream: &Arc<Stream>) {
        let mut streams = lock(&self.inner.streams);
        let unused = {
            let st = lock(&stream.state);
            st.publisher.is_none() && st.subscribers.is_empty() && st.taps.is_empty()
        };
        if unused {
            if let Some(current) = streams.get(&stream.key) {
                if Arc::ptr_eq(current, stream) {
                    streams.remove(&stream.key);
                }
            }
        }
    }
}

impl Stream {
    fn info(&self) -> StreamInfo {
        let st = lock(&self.state);
        let rates = st.publisher.as_ref().and_then(|_| st.rates.get());
        StreamInfo {
            key: self.key.clone(),
            publisher: st.publisher.as_ref().map(|p| p.peer.clone()),
            publisher_protocol: st.publisher.as_ref().map(|p| p.protocol),
            subscribers: st.subscribers.len(),
            taps: st.taps.len(),
            since: st.publisher.as_ref().map(|p| p.since),
            video: st.video_config.clone(),
            audio: st.audio_config.clone(),
            video_kbps: rates.map(|r| r.0).filter(|_| st.video_config.is_some()),
            audio_kbps: rates.map(|r| r.1).filter(|_| st.audio_config.is_some()),
            fps: rates.map(|r| r.2).filter(|_| st.video_config.is_some()),
            subscribers_dropped: st.subscribers.iter().map(|q| q.dropped()).sum(),
            low_latency_wanted: self.demand.wanted(),
            read_period: st.publisher.as_ref().and(self.demand.read_period()),
        }
    }
}

/// The right to publish one stream. Dropping it ends the publish.
pub struct Publisher {
    hub: Hub,
    stream: Arc<Stream>,
    generation: u64,
    id: u64,
    kicked: watch::Receiver<bool>,
}

impl Publisher {
    pub fn key(&self) -> &str {
        &self.stream.key
    }

    /// Resolves when another publisher took the stream over.
    pub async fn kicked(&mut self) {
        let _ = self.kicked.wait_for(|k| *k).await;
    }

    /// Whether another publisher took the stream over, without waiting: for
    /// a connection woken often anyway, cheaper than keeping [`kicked`]
    /// registered.
    ///
    /// [`kicked`]: Publisher::kicked
    pub fn is_kicked(&self) -> bool {
        *self.kicked.borrow()
    }

    /// Hands an event to every subscriber. Returns false when this publisher
    /// has been replaced (the event is then dropped).
    pub fn send(&self, event: StreamEvent) -> bool {
        let limits = self.hub.inner.config.queue;
        let config = &self.hub.inner.config;
        let mut st = lock(&self.stream.state);
        if st.generation != self.generation {
            return false;
        }
        let event = match event {
            StreamEvent::Frame(mut f) => {
                st.place(&mut f);
                st.rates.add(&f);
                let event = StreamEvent::Frame(f);
                if config.gop_cache {
                    update_gop(&mut st, &event, config.gop_cache_max_bytes);
                }
                event
            }
            StreamEvent::TrackFrame(id, mut f) => {
                st.place(&mut f);
                let event = StreamEvent::TrackFrame(id, f);
                if config.gop_cache {
                    update_gop(&mut st, &event, config.gop_cache_max_bytes);
                }
                event
            }
            StreamEvent::TrackConfig(id, c) => {
                let kind = c.kind();
                match st
                    .track_configs
                    .iter_mut()
                    .find(|t| (t.0, t.1) == (kind, id))
                {
                    Some(t) => t.2 = c.clone(),
                    None => st.track_configs.push((kind, id, c.clone())),
                }
                StreamEvent::TrackConfig(id, c)
            }
            StreamEvent::Config(c) => {
                match c.kind() {
                    MediaKind::Video => st.video_config = Some(c.clone()),
                    MediaKind::Audio => st.audio_config = Some(c.clone()),
                }
                StreamEvent::Config(c)
            }
            StreamEvent::Metadata(m) => {
                st.metadata = Some(m.clone());
                StreamEvent::Metadata(m)
            }
            other => other,
        };
        for (_, tap) in &st.taps {
            tap.event(&event);
        }
        let subscribers = st.subscribers.len();
        st.subscribers.retain(|q| q.push(event.clone(), &limits));
        if st.subscribers.len() != subscribers {
            self.stream.demand.set_subscribers(st.subscribers.len());
        }
        true
    }

    /// Whether anyone waits on the stream at low latency (see [`Demand`]).
    pub fn low_latency_wanted(&self) -> bool {
        self.stream.demand.wanted()
    }

    /// The stream's demand, where the connection says how often it reads.
    pub fn demand(&self) -> &Demand {
        &self.stream.demand
    }
}

impl StreamState {
    /// What a consumer joining a live stream starts with.
    fn initial_events(&self) -> Vec<StreamEvent> {
        let mut initial = vec![StreamEvent::PublisherStarted];
        initial.extend(self.metadata.clone().map(StreamEvent::Metadata));
        initial.extend(self.video_config.clone().map(StreamEvent::Config));
        initial.extend(self.audio_config.clone().map(StreamEvent::Config));
        initial.extend(
            self.track_configs
                .iter()
                .map(|(_, id, c)| StreamEvent::TrackConfig(*id, c.clone())),
        );
        initial.extend(self.gop.iter().cloned());
        initial
    }

    /// Puts a publisher's frame on the stream's timeline: the offset that
    /// keeps time rising across publishers is added.
    fn place(&mut self, f: &mut Frame) {
        let offset = match self.offset {
            Some(o) => o,
            None => {
                // First frame of this publisher: continue one frame after
                // the last presented time (so no new frame's PTS or DTS
                // collides with an old one's), or keep the publisher's own
                // clock when nothing came before.
                let o = self.last_pts.map_or(0, |last| last + 40 - f.dts);
                self.offset = Some(o);
                o
            }
        };
        f.dts += offset;
        let pts = f.pts().max(f.dts);
        self.last_pts = Some(self.last_pts.map_or(pts, |l| l.max(pts)));
    }
}

/// A registered [`Tap`]; dropping it detaches the tap.
pub struct TapHandle {
    hub: Hub,
    stream: Arc<Stream>,
    id: u64,
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        lock(&self.stream.state)
            .taps
            .retain(|(id, _)| *id != self.id);
        self.hub.remove_if_unused(&self.stream);
    }
}

/// Keeps the frames since track 0's last video keyframe (`event` is a
/// `Frame` or `TrackFrame`).
fn update_gop(st: &mut StreamState, event: &StreamEvent, max_bytes: usize) {
    let (f, restart) = match event {
        StreamEvent::Frame(f) => (f, f.kind() == MediaKind::Video && f.keyframe),
        StreamEvent::TrackFrame(_, f) => (f, false),
        _ => return,
    };
    if restart {
        st.gop.clear();
        st.gop_bytes = 0;
    } else if st.gop.is_empty() {
        // Nothing cached until the first keyframe (audio-only streams have
        // configs and go live with the next frame, which is instant anyway).
        return;
    }
    st.gop_bytes += f.data.len();
    if st.gop_bytes > max_bytes {
        st.gop.clear();
        st.gop_bytes = 0;
        return;
    }
    st.gop.push(event.clone());
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let limits = self.hub.inner.config.queue;
        {
            let mut st = lock(&self.stream.state);
            if st.generation == self.generation
                && st.publisher.as_ref().is_some_and(|p| p.id == self.id)
            {
                st.publisher = None;
                st.gop.clear();
                st.gop_bytes = 0;
                st.subscribers
                    .retain(|q| q.push(StreamEvent::PublisherStopped, &limits));
                for (_, tap) in &st.taps {
                    tap.event(&StreamEvent::PublisherStopped);
                }
            }
        }
        self.hub.remove_if_unused(&self.stream);
    }
}

/// A consumer of one stream. Dropping it unsubscribes.
pub struct Subscriber {
    hub: Hub,
    stream: Arc<Stream>,
    queue: Arc<SubscriberQueue>,
}

impl Subscriber {
    pub fn key(&self) -> &str {
        &self.stream.key
    }

    /// The next event, or why this subscriber was cut off.
    pub async fn recv(&self) -> Result<StreamEvent, Closed> {
        self.queue.recv().await
    }

    /// Frames this subscriber lost to its drop policy.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    pub fn is_live(&self) -> bool {
        lock(&self.stream.state).publisher.is_some()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        {
            let mut st = lock(&self.stream.state);
            st.subscribers.retain(|q| !Arc::ptr_eq(q, &self.queue));
            self.stream.demand.set_subscribers(st.subscribers.len());
        }
        self.hub.remove_if_unused(&self.stream);
    }
}

#[cfg(test)]
mod tests;
