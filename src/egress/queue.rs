//! A relay's bounded queue: a hub [`Tap`], so the publisher's thread only
//! appends to it (no task wake-up per frame); the relay drains it on its
//! own clock.
//!
//! The drop policy, in the order it applies:
//!
//! - Connected and keeping up: everything is queued.
//! - Past the soft limit: non-key video is dropped, and once one video
//!   frame is dropped every video frame up to the next keyframe goes too (a
//!   decoder cannot use P-frames whose references are gone). Audio and
//!   keyframes are kept.
//! - Past the hard limit: frames are dropped whatever they are (the
//!   destination is not taking a stream at all), and video resumes at the
//!   next keyframe.
//! - Not connected (connecting, backoff): only the current GOP is kept, so
//!   a (re)connected destination starts at once from the last keyframe
//!   instead of receiving a stale backlog. That GOP includes frames the
//!   lost connection had already taken: a destination that fails mid-GOP
//!   would otherwise wait up to a GOP for video on the next connection.
//!
//! Metadata and codec configurations are never lost: the latest of each is
//! kept aside and sent first whenever sending (re)starts, and when one
//! cannot be queued (past the hard limit) it goes out again before the next
//! frame. Every dropped frame is counted.
//!
//! Enhanced RTMP multitrack's other tracks (`TrackConfig`, `TrackFrame`)
//! go through the same policy; GOPs are those of track 0. A track whose
//! video lost a frame waits for its own next keyframe (tracks' keyframes
//! need not line up with track 0's), and an RTMP link's writer starts each
//! track at a keyframe anyway.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::hub::{QueueLimits, StreamEvent, Tap};
use crate::media::flv::CodecSet;
use crate::media::{CodecConfig, MediaKind, Metadata, TrackId};

/// The publisher's side of a relay.
pub struct RelayQueue {
    inner: Mutex<Inner>,
    limits: QueueLimits,
    /// Whether a publisher is live; the relay waits on it.
    live: watch::Sender<bool>,
    /// The codecs of the tracks configured so far (a relay announces them
    /// in its `connect`).
    codecs: watch::Sender<CodecSet>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<StreamEvent>,
    bytes: usize,
    /// Video is dropped until the next keyframe.
    skip_video: bool,
    /// The relay has a destination to send to.
    connected: bool,
    /// When the publisher left (for the grace period), if it did.
    gone_since: Option<Instant>,
    metadata: Option<Metadata>,
    video_config: Option<Arc<CodecConfig>>,
    audio_config: Option<Arc<CodecConfig>>,
    /// The other multitrack tracks' latest configurations, by kind and id.
    track_configs: Vec<(TrackId, Arc<CodecConfig>)>,
    /// Video tracks (other than 0) dropping until their next keyframe.
    skip_tracks: Vec<TrackId>,
    /// The latest metadata and configurations must go out before anything
    /// else on the next drain.
    headers_due: bool,
    /// At least one video configuration was seen (streams without video
    /// have no keyframes to trim at).
    has_video: bool,
    /// Frames drained since the last video keyframe (references: frame
    /// payloads are shared `Bytes`), given back to the queue if the
    /// connection drops; empty when that GOP is of no use (no keyframe
    /// seen yet, a new configuration, or larger than the soft limit).
    sent_gop: Vec<StreamEvent>,
    sent_gop_bytes: usize,
}

/// Most tracks besides track 0 whose configurations are kept (the ingest
/// takes 16 per publish).
const MAX_TRACK_CONFIGS: usize = 32;

fn cost(e: &StreamEvent) -> usize {
    64 + match e {
        StreamEvent::Frame(f) | StreamEvent::TrackFrame(_, f) => f.data.len(),
        _ => 0,
    }
}

impl RelayQueue {
    pub fn new(limits: QueueLimits) -> Arc<RelayQueue> {
        Arc::new(RelayQueue {
            inner: Mutex::new(Inner::default()),
            limits,
            live: watch::channel(false).0,
            codecs: watch::channel(CodecSet::EMPTY).0,
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::locks::lock(&self.inner)
    }

    /// Frames lost to the drop policy so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_frames(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Follows the publisher's presence.
    pub fn live(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    pub fn is_live(&self) -> bool {
        *self.live.borrow()
    }

    /// The codecs of the stream's tracks, once one is configured; empty if
    /// none is within `wait` (a relay connecting right after the publish
    /// starts waits for the publisher's first configurations).
    pub async fn stream_codecs(&self, wait: std::time::Duration) -> CodecSet {
        let mut rx = self.codecs.subscribe();
        let known = tokio::time::timeout(wait, rx.wait_for(|c| !c.is_empty())).await;
        match known {
            Ok(Ok(c)) => *c,
            _ => CodecSet::EMPTY,
        }
    }

    /// When the publisher left, if it is gone.
    pub fn gone_since(&self) -> Option<Instant> {
        self.lock().gone_since
    }

    /// Bytes waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Sending starts (a destination is connected): what is queued (at
    /// most the current GOP) goes out after the latest metadata and
    /// configurations.
    pub fn connected(&self) {
        let mut q = self.lock();
        q.connected = true;
        q.headers_due = true;
    }

    /// Sending stops: from now on only the current GOP is kept, starting
    /// with the frames of it that the lost connection already took (while
    /// the stream is live: an ended stream's GOP is not kept).
    pub fn disconnected(&self) {
        let mut q = self.lock();
        q.connected = false;
        let sent = std::mem::take(&mut q.sent_gop);
        q.sent_gop_bytes = 0;
        let has_key = q.items.iter().any(is_keyframe);
        // When frames were dropped since (skip_video), that GOP is broken.
        // When the publisher is gone, it is of no use: the next publisher
        // starts at its own keyframe, and a later connection would get
        // stale frames before it.
        if !has_key && !q.skip_video && self.is_live() {
            for e in sent.into_iter().rev() {
                q.bytes += cost(&e);
                q.items.push_front(e);
            }
        }
        let n = trim_to_last_keyframe(&mut q);
        drop(q);
        self.drop_frames(n);
    }

    /// Moves everything queued into `out` (the latest headers first when
    /// they are due).
    pub fn drain(&self, out: &mut Vec<StreamEvent>) {
        let mut q = self.lock();
        if q.headers_due {
            q.headers_due = false;
            out.extend(q.metadata.clone().map(StreamEvent::Metadata));
            out.extend(q.video_config.clone().map(StreamEvent::Config));
            out.extend(q.audio_config.clone().map(StreamEvent::Config));
            for t in &q.track_configs {
                out.push(StreamEvent::TrackConfig(t.0, t.1.clone()));
            }
        }
        q.bytes = 0;
        let soft = self.limits.soft_bytes;
        while let Some(e) = q.items.pop_front() {
            q.remember_sent(&e, soft);
            out.push(e);
        }
    }
}

impl Inner {
    /// Keeps a drained frame aside while it belongs to the current GOP and
    /// that GOP stays under `limit` bytes.
    fn remember_sent(&mut self, e: &StreamEvent, limit: usize) {
        match e {
            StreamEvent::Frame(_) => {
                let key = is_keyframe(e);
                if key || self.sent_gop_bytes + cost(e) > limit {
                    self.forget_sent_gop();
                }
                if key || !self.sent_gop.is_empty() {
                    self.sent_gop_bytes += cost(e);
                    self.sent_gop.push(e.clone());
                }
            }
            // Frames before a new configuration are of no use after it.
            StreamEvent::Config(_) => self.forget_sent_gop(),
            _ => {}
        }
    }

    fn forget_sent_gop(&mut self) {
        self.sent_gop.clear();
        self.sent_gop_bytes = 0;
    }
}

fn is_frame(e: &StreamEvent) -> bool {
    matches!(e, StreamEvent::Frame(_) | StreamEvent::TrackFrame(..))
}

fn is_keyframe(e: &StreamEvent) -> bool {
    matches!(e, StreamEvent::Frame(f) if f.kind() == MediaKind::Video && f.keyframe)
}

/// Drops what precedes the last queued video keyframe (everything but
/// control events when there is none and the stream has video). Returns
/// the frames dropped.
fn trim_to_last_keyframe(q: &mut Inner) -> u64 {
    let last_key = q.items.iter().rposition(is_keyframe);
    let cut = match last_key {
        Some(i) => i,
        None if q.has_video => q.items.len(),
        None => return 0,
    };
    let mut n = 0;
    for e in q.items.drain(..cut) {
        q.bytes -= cost(&e);
        if is_frame(&e) {
            n += 1;
        }
    }
    // Configurations and metadata among them are replayed from the copies
    // kept aside.
    q.headers_due = true;
    if last_key.is_none() {
        q.skip_video = true;
    }
    n
}

impl RelayQueue {
    /// A frame of another multitrack track: queued under the same limits;
    /// its video, once it lost a frame, resumes at its own keyframe.
    fn track_frame(
        &self,
        mut q: MutexGuard<'_, Inner>,
        id: TrackId,
        f: &crate::media::Frame,
        event: &StreamEvent,
    ) {
        let cost = cost(event);
        let over_soft = q.bytes + cost > self.limits.soft_bytes;
        let over_hard = q.bytes + cost > self.limits.hard_bytes;
        let keep = match f.kind() {
            MediaKind::Video => {
                let skipping = q.skip_tracks.contains(&id);
                if f.keyframe && !over_hard {
                    q.skip_tracks.retain(|t| *t != id);
                    true
                } else if skipping || (over_soft && !f.keyframe) || over_hard {
                    if !skipping && q.skip_tracks.len() < MAX_TRACK_CONFIGS {
                        q.skip_tracks.push(id);
                    }
                    false
                } else {
                    true
                }
            }
            MediaKind::Audio => !over_hard,
        };
        if !keep {
            drop(q);
            self.drop_frames(1);
            return;
        }
        q.bytes += cost;
        q.items.push_back(event.clone());
    }
}

impl Tap for RelayQueue {
    fn event(&self, event: &StreamEvent) {
        let mut q = self.lock();
        match event {
            StreamEvent::PublisherStarted => {
                q.gone_since = None;
                // A new publisher's video starts at its first keyframe; its
                // tracks are its own.
                q.skip_video = true;
                q.track_configs.clear();
                q.skip_tracks.clear();
                q.forget_sent_gop();
                drop(q);
                self.live.send_replace(true);
                return;
            }
            StreamEvent::PublisherStopped => {
                q.gone_since = Some(Instant::now());
                drop(q);
                self.live.send_replace(false);
                return;
            }
            StreamEvent::Metadata(m) => q.metadata = Some(m.clone()),
            StreamEvent::Config(c) => {
                match c.kind() {
                    MediaKind::Video => {
                        q.video_config = Some(c.clone());
                        q.has_video = true;
                    }
                    MediaKind::Audio => q.audio_config = Some(c.clone()),
                }
                let codecs: CodecSet = [&q.video_config, &q.audio_config]
                    .into_iter()
                    .flatten()
                    .map(|c| c.codec())
                    .collect();
                self.codecs
                    .send_if_modified(|c| std::mem::replace(c, codecs) != codecs);
            }
            StreamEvent::Frame(_) => {}
            StreamEvent::TrackConfig(id, c) => {
                let kind = c.kind();
                let same = |t: &(TrackId, Arc<CodecConfig>)| t.0 == *id && t.1.kind() == kind;
                let entry = (*id, c.clone());
                match q.track_configs.iter().position(same) {
                    Some(i) => q.track_configs[i] = entry,
                    None if q.track_configs.len() < MAX_TRACK_CONFIGS => {
                        q.track_configs.push(entry)
                    }
                    None => return,
                }
            }
            StreamEvent::TrackFrame(id, f) => {
                self.track_frame(q, *id, f, event);
                return;
            }
        }
        let cost = cost(event);
        let StreamEvent::Frame(f) = event else {
            // Control events are small; past the hard limit they are
            // replayed from the copies kept aside instead of queued.
            if q.bytes + cost > self.limits.hard_bytes {
                q.headers_due = true;
            } else {
                q.bytes += cost;
                q.items.push_back(event.clone());
            }
            return;
        };
        let video = f.kind() == MediaKind::Video;
        if video && f.keyframe && !q.connected {
            // Not sending: a new GOP replaces the one kept.
            let n = q.items.drain(..).filter(is_frame).count() as u64;
            q.bytes = 0;
            q.headers_due = true;
            self.drop_frames(n);
        }
        let over_soft = q.bytes + cost > self.limits.soft_bytes;
        let over_hard = q.bytes + cost > self.limits.hard_bytes;
        if video {
            if f.keyframe && !over_hard {
                q.skip_video = false;
            } else if q.skip_video || (over_soft && !f.keyframe) || over_hard {
                q.skip_video = true;
                drop(q);
                self.drop_frames(1);
                return;
            }
        } else if over_hard {
            drop(q);
            self.drop_frames(1);
            return;
        }
        q.bytes += cost;
        q.items.push_back(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Frame};
    use bytes::Bytes;

    fn frame(kind: MediaKind, key: bool, size: usize, dts: i64) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec: if kind == MediaKind::Video {
                Codec::H264
            } else {
                Codec::Aac
            },
            dts,
            cts: 0,
            keyframe: key,
            data: Bytes::from(vec![0; size]),
        })
    }

    fn video_config() -> StreamEvent {
        StreamEvent::Config(Arc::new(CodecConfig::Avc(crate::media::AvcConfig {
            record: Bytes::new(),
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 31,
            nal_length_size: 4,
            sps: vec![],
            pps: vec![],
            width: 0,
            height: 0,
        })))
    }

    fn drained(q: &RelayQueue) -> Vec<StreamEvent> {
        let mut v = Vec::new();
        q.drain(&mut v);
        v
    }

    fn dts_of(v: &[StreamEvent]) -> Vec<i64> {
        v.iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some(f.dts),
                _ => None,
            })
            .collect()
    }

    const LIMITS: QueueLimits = QueueLimits {
        soft_bytes: 10_000,
        hard_bytes: 20_000,
    };

    /// Another multitrack track: its configuration is a header like track
    /// 0's; its video, having lost a frame, waits for its own keyframe
    /// while track 0 goes on; a new publisher's tracks replace the old.
    #[test]
    fn multitrack_tracks_follow_the_same_policy() {
        let track = |key: bool, size: usize, dts: i64| {
            let StreamEvent::Frame(f) = frame(MediaKind::Video, key, size, dts) else {
                unreachable!()
            };
            StreamEvent::TrackFrame(1, f)
        };
        let StreamEvent::Config(c) = video_config() else {
            unreachable!()
        };
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        q.event(&StreamEvent::TrackConfig(1, c.clone()));
        let v = drained(&q);
        assert!(
            matches!(v.last(), Some(StreamEvent::TrackConfig(1, _))),
            "{v:?}"
        );
        q.event(&frame(MediaKind::Video, true, 8_000, 0));
        q.event(&track(true, 1_000, 0));
        // Past the soft limit: track 1's P-frame goes, and its next one
        // too (under the limit by then), until its keyframe.
        q.event(&track(false, 2_000, 33));
        q.drain(&mut Vec::new());
        q.event(&frame(MediaKind::Video, false, 10, 33));
        q.event(&track(false, 10, 66));
        q.event(&track(true, 10, 99));
        let v = drained(&q);
        let tracks: Vec<i64> = v
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TrackFrame(1, f) => Some(f.dts),
                _ => None,
            })
            .collect();
        assert_eq!(dts_of(&v), [33]);
        assert_eq!(tracks, [99]);
        assert_eq!(q.dropped(), 2);
        // A reconnection replays track 1's configuration; a new publisher
        // forgets it.
        q.disconnected();
        q.connected();
        assert!(drained(&q)
            .iter()
            .any(|e| matches!(e, StreamEvent::TrackConfig(1, _))));
        q.event(&StreamEvent::PublisherStarted);
        q.disconnected();
        q.connected();
        assert!(!drained(&q)
            .iter()
            .any(|e| matches!(e, StreamEvent::TrackConfig(..))));
    }

    #[test]
    fn connected_keeps_everything_under_the_soft_limit() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        assert!(q.is_live());
        q.event(&video_config());
        q.event(&frame(MediaKind::Video, true, 100, 0));
        q.event(&frame(MediaKind::Audio, true, 100, 0));
        q.event(&frame(MediaKind::Video, false, 100, 33));
        let v = drained(&q);
        // The config as a header, then in stream order.
        assert!(matches!(v[0], StreamEvent::Config(_)));
        assert!(matches!(v[1], StreamEvent::Config(_)));
        assert_eq!(dts_of(&v), [0, 0, 33]);
        assert_eq!(q.dropped(), 0);
        assert!(drained(&q).is_empty());
    }

    #[test]
    fn slow_destination_loses_non_key_video_then_everything() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        let _ = drained(&q);
        q.event(&frame(MediaKind::Video, true, 9_000, 0));
        // Past soft: the P-frame goes, and so does the next one (under soft).
        q.event(&frame(MediaKind::Video, false, 2_000, 33));
        q.event(&frame(MediaKind::Audio, true, 500, 34));
        q.drain(&mut Vec::new());
        q.event(&frame(MediaKind::Video, false, 10, 66));
        assert_eq!(q.dropped(), 2);
        // A keyframe resumes video.
        q.event(&frame(MediaKind::Video, true, 5_000, 99));
        q.event(&frame(MediaKind::Video, false, 10, 133));
        assert_eq!(dts_of(&drained(&q)), [99, 133]);
        // Past hard: audio and keyframes go too.
        q.event(&frame(MediaKind::Video, true, 19_000, 200));
        q.event(&frame(MediaKind::Audio, true, 1_000, 201));
        q.event(&frame(MediaKind::Video, true, 1_000, 233));
        q.event(&frame(MediaKind::Video, false, 10, 266));
        assert_eq!(q.dropped(), 5);
        assert_eq!(dts_of(&drained(&q)), [200]);
    }

    #[test]
    fn disconnected_keeps_only_the_current_gop() {
        let q = RelayQueue::new(LIMITS);
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        for i in 0..10 {
            q.event(&frame(MediaKind::Video, i % 4 == 0, 100, i * 33));
            q.event(&frame(MediaKind::Audio, true, 50, i * 33));
        }
        // GOPs at 0, 132, 264: only the last is queued (its audio too).
        assert_eq!(q.dropped(), 16);
        q.connected();
        let v = drained(&q);
        assert!(matches!(v[0], StreamEvent::Config(_)), "headers first");
        assert_eq!(dts_of(&v), [264, 264, 297, 297]);
    }

    #[test]
    fn disconnecting_trims_the_backlog_to_the_last_keyframe() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        for i in 0..6 {
            q.event(&frame(MediaKind::Video, i % 3 == 0, 100, i * 33));
        }
        q.disconnected();
        assert_eq!(q.dropped(), 3);
        q.connected();
        assert_eq!(dts_of(&drained(&q)), [99, 132, 165]);
    }

    #[test]
    fn a_connection_lost_mid_gop_gives_its_gop_to_the_next_one() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        for i in 0..5 {
            q.event(&frame(MediaKind::Video, i % 3 == 0, 100, i * 33));
            q.event(&frame(MediaKind::Audio, true, 50, i * 33));
        }
        // Everything went out; the connection drops mid-GOP (keyframes at 0, 99).
        assert_eq!(
            dts_of(&drained(&q)),
            [0, 0, 33, 33, 66, 66, 99, 99, 132, 132]
        );
        q.disconnected();
        q.event(&frame(MediaKind::Video, false, 100, 165));
        q.connected();
        let v = drained(&q);
        assert!(matches!(v[0], StreamEvent::Config(_)), "headers first");
        assert_eq!(dts_of(&v), [99, 99, 132, 132, 165]);
        assert_eq!(q.dropped(), 0);
        // A new configuration starts over: the next loss waits for a keyframe.
        q.event(&video_config());
        q.event(&frame(MediaKind::Video, false, 100, 198));
        let _ = drained(&q);
        q.disconnected();
        q.event(&frame(MediaKind::Video, false, 100, 231));
        q.connected();
        assert_eq!(dts_of(&drained(&q)), Vec::<i64>::new());
        q.event(&frame(MediaKind::Video, true, 100, 264));
        assert_eq!(dts_of(&drained(&q)), [264]);
    }

    #[test]
    fn a_connection_closed_after_the_stream_ended_keeps_nothing() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        q.event(&frame(MediaKind::Video, true, 100, 0));
        q.event(&frame(MediaKind::Video, false, 100, 33));
        assert_eq!(dts_of(&drained(&q)), [0, 33]);
        q.event(&StreamEvent::PublisherStopped);
        q.disconnected();
        assert_eq!(q.queued_bytes(), 0, "nothing waits to be sent");
        q.event(&StreamEvent::PublisherStarted);
        q.event(&frame(MediaKind::Video, true, 100, 0));
        q.connected();
        assert_eq!(dts_of(&drained(&q)), [0], "only the new publisher's frames");
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn a_gop_past_the_soft_limit_is_not_kept_for_the_next_connection() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&video_config());
        q.event(&frame(MediaKind::Video, true, 6_000, 0));
        let _ = drained(&q);
        q.event(&frame(MediaKind::Video, false, 6_000, 33));
        let _ = drained(&q);
        q.disconnected();
        q.connected();
        assert_eq!(dts_of(&drained(&q)), Vec::<i64>::new());
    }

    #[test]
    fn headers_past_the_hard_limit_are_replayed() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        q.event(&StreamEvent::PublisherStarted);
        q.event(&frame(MediaKind::Audio, true, 19_900, 0));
        q.event(&video_config());
        let v = drained(&q);
        assert!(matches!(v.first(), Some(StreamEvent::Config(_))));
    }

    #[test]
    fn publisher_presence_and_new_publisher_waits_for_a_keyframe() {
        let q = RelayQueue::new(LIMITS);
        q.connected();
        let rx = q.live();
        q.event(&StreamEvent::PublisherStarted);
        assert!(*rx.borrow());
        q.event(&video_config());
        q.event(&frame(MediaKind::Video, true, 10, 0));
        q.event(&StreamEvent::PublisherStopped);
        assert!(!q.is_live());
        assert!(q.gone_since().is_some());
        q.event(&StreamEvent::PublisherStarted);
        assert!(q.gone_since().is_none());
        q.event(&frame(MediaKind::Video, false, 10, 40));
        q.event(&frame(MediaKind::Video, true, 10, 73));
        assert_eq!(dts_of(&drained(&q)), [0, 73]);
        assert_eq!(q.dropped(), 1);
    }
}
