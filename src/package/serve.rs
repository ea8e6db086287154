//! What a media URL answers. The store decides the body, its content type
//! and how long it may be cached; the HTTP layer only turns the answer into
//! a response (signing, compression, headers).
//!
//! The locking rule lives here: never two stream locks at once (a ladder's
//! renditions are snapshotted one at a time), and only what is needed is
//! taken under a stream's lock; rendering happens without it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::hls::{Delivery, RenditionReport};
use super::model::StreamSnapshot;
use super::segmenter::{Position, StreamSegmenter};
use super::service::{Held, Packaged, Progress, Store};
use super::urls::{self, Directives, Resource};
use super::{dash, hls};
use crate::locks::lock;
use crate::media::MediaKind;

/// How long a manifest may be reused before asking again: about how often
/// a player polls, well under a part or segment.
const MANIFEST_MAX_AGE: Duration = Duration::from_secs(1);

/// What a served resource is.
#[derive(Debug)]
pub enum Payload {
    /// A manifest: text, which the HTTP layer may sign and compress.
    Text(String),
    /// Segment bytes as stored: sent in order, never joined.
    Chunks(Vec<Bytes>),
    /// A segment (LL-DASH) or a part (an LL-HLS preload hint) still being
    /// made: its chunks as they come, until it is finished. Its length is
    /// not known up front.
    Growing(Growing),
}

/// How long a response may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never changes: segment numbers and init ids are never reused (see
    /// [`StreamSegmenter::new`]).
    Immutable,
    /// Changes as the stream goes on: reuse for `max_age`, then revalidate.
    Live { max_age: Duration },
}

/// A resource ready to send.
#[derive(Debug)]
pub struct Served {
    pub payload: Payload,
    pub content_type: &'static str,
    pub cache: CachePolicy,
    /// The stream's target duration in seconds (how often its players
    /// come back, for viewer counting).
    pub target_duration: u32,
}

/// Why nothing is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotFound {
    Stream,
    /// The stream exists but has no complete segment yet.
    NoSegmentYet,
    Track,
    InitSegment,
    Segment,
    Part,
}

impl NotFound {
    /// What is missing, for the response text.
    pub fn what(self) -> &'static str {
        match self {
            NotFound::Stream => "stream",
            NotFound::NoSegmentYet => "stream (no segment yet)",
            NotFound::Track => "track",
            NotFound::InitSegment => "init segment",
            NotFound::Segment => "segment",
            NotFound::Part => "part",
        }
    }
}

const HLS: &str = "application/vnd.apple.mpegurl";
const DASH: &str = "application/dash+xml";

/// A transcoded stream's renditions (each its own stream): see
/// [`Store::ladder_snapshots`].
type Ladder = Vec<(String, StreamSnapshot)>;

impl Store {
    /// The answer to `resource` of stream `key`. `utc_timing`: the URLs of
    /// the time endpoint the MPD names, in order of preference (unused for
    /// other resources).
    pub fn serve(
        &self,
        key: &str,
        resource: Resource,
        utc_timing: &[&str],
    ) -> Result<Served, NotFound> {
        self.serve_now(key, resource, Directives::default(), utc_timing)
    }

    /// [`Store::serve`], with the directives of a request that need not
    /// wait (a delta update, the cache policy of a blocking reload's answer).
    fn serve_now(
        &self,
        key: &str,
        resource: Resource,
        directives: Directives,
        utc_timing: &[&str],
    ) -> Result<Served, NotFound> {
        let stream = self.get(key).ok_or(NotFound::Stream)?;
        match resource {
            // A player may need an init segment before the first segment
            // is complete.
            Resource::Init(kind, id) => media(&stream, kind, Ready::Always, |seg| {
                seg.init(kind, id)
                    .map(|b| vec![b])
                    .ok_or(NotFound::InitSegment)
            }),
            Resource::Segment(kind, n) => media(&stream, kind, Ready::WithSegments, |seg| {
                seg.segment(kind, n).ok_or(NotFound::Segment)
            }),
            Resource::Part(kind, n, i) => media(&stream, kind, Ready::Always, |seg| {
                seg.part(kind, n, i).ok_or(NotFound::Part)
            }),
            Resource::MediaPlaylist(kind) => {
                let delivery = Delivery {
                    skip: directives.skip,
                    reports: self.rendition_reports(key, kind, &stream),
                };
                let mut served = manifest(&stream, &[], HLS, |snap, _| {
                    hls::media_playlist_with(snap, kind, &delivery).ok_or(NotFound::Track)
                })?;
                // The answer to a blocking reload satisfies its directives
                // for good: a cache may keep it (keyed by the query) for
                // as long as a player could ask the same.
                if directives.blocking() {
                    served.cache = CachePolicy::Live {
                        max_age: Duration::from_secs(6 * u64::from(served.target_duration)),
                    };
                }
                Ok(served)
            }
            Resource::Multivariant => {
                let ladder = self.ladder_of(key, &stream);
                manifest(&stream, &ladder, HLS, |snap, ladder| {
                    Ok(hls::multivariant_ladder(snap, ladder))
                })
            }
            Resource::Mpd => {
                let ladder = self.ladder_of(key, &stream);
                manifest(&stream, &ladder, DASH, |snap, ladder| {
                    Ok(dash::mpd_ladder(snap, utc_timing, ladder))
                })
            }
        }
    }

    /// The EXT-X-RENDITION-REPORTs of `key`'s `kind` playlist (low latency
    /// only): the stream's other track, and the other renditions of its
    /// transcode ladder (its own when it is the source, its siblings and
    /// the source when it is a rendition). One stream lock at a time.
    fn rendition_reports(
        &self,
        key: &str,
        kind: MediaKind,
        stream: &Mutex<StreamSegmenter>,
    ) -> Vec<RenditionReport> {
        let other_kind = match kind {
            MediaKind::Video => MediaKind::Audio,
            MediaKind::Audio => MediaKind::Video,
        };
        let (ll, other) = {
            let seg = lock(stream);
            (seg.low_latency(), seg.position(other_kind))
        };
        if !ll {
            return Vec::new();
        }
        let mut reports = Vec::new();
        let mut add = |uri: String, pos: Position| {
            if let Some((last_msn, last_part)) = pos.last_part {
                reports.push(RenditionReport {
                    uri,
                    last_msn,
                    last_part,
                });
            }
        };
        add(urls::media_playlist(other_kind), other);
        if kind == MediaKind::Audio {
            return reports;
        }
        let video = |key: &str| {
            self.get(key)
                .map(|s| lock(&s).position(MediaKind::Video))
                .unwrap_or_default()
        };
        let playlist = urls::media_playlist(MediaKind::Video);
        for name in self.ladder(key) {
            add(
                format!("{name}/{playlist}"),
                video(&format!("{key}/{name}")),
            );
        }
        if let Some((source, me)) = key.rsplit_once('/') {
            let siblings = self.ladder(source);
            if siblings.iter().any(|n| n == me) {
                add(format!("../{playlist}"), video(source));
                for name in siblings.iter().filter(|n| *n != me) {
                    add(
                        format!("../{name}/{playlist}"),
                        video(&format!("{source}/{name}")),
                    );
                }
            }
        }
        reports
    }

    /// The renditions `key`'s manifests list, snapshotted before the
    /// source's lock is taken again.
    fn ladder_of(&self, key: &str, stream: &Mutex<StreamSegmenter>) -> Ladder {
        let source_ended = lock(stream).is_ended();
        self.ladder_snapshots(key, source_ended)
    }
}

/// Why a request gets no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotFound(NotFound),
    /// 400: a blocking request too far ahead of the playlist (RFC 8216bis
    /// §6.2.5.2), or malformed directives.
    BadRequest(String),
    /// 503: the bound on held requests is reached, or what the request
    /// waits for did not come within three target durations.
    Unavailable(&'static str),
}

impl From<NotFound> for Refused {
    fn from(n: NotFound) -> Self {
        Refused::NotFound(n)
    }
}

/// What a held request finds when it looks.
enum Check {
    Ready,
    Wait,
    Refuse(Refused),
}

/// How long a request may be held: three target durations (RFC 8216bis
/// §6.2.5.2), then 503.
fn hold_time(target_duration: u32) -> Duration {
    Duration::from_secs(3 * u64::from(target_duration.max(1)))
}

/// How many parts ahead of the last one a request may ask for: three
/// seconds' worth (the Advance Part Limit).
fn advance_parts(part_target: f64) -> usize {
    if part_target < 1.0 {
        (3.0 / part_target.max(0.01)).ceil() as usize
    } else {
        3
    }
}

/// A blocking playlist reload for part `part` of segment `msn` (or the
/// whole segment): ready once the playlist lists it or anything later, or
/// once the stream has ended (it answers with what exists).
fn reload_check(pos: Position, msn: u64, part: Option<usize>, advance: usize) -> Check {
    if pos.ended {
        return Check::Ready;
    }
    let Some((last_msn, last_part)) = pos.last_part else {
        return Check::Wait;
    };
    let too_far =
        msn > last_msn + 2 || part.is_some_and(|p| msn == last_msn && p > last_part + advance);
    if too_far {
        return Check::Refuse(Refused::BadRequest(format!(
            "_HLS_msn={msn} _HLS_part={} is too far ahead of the playlist ({last_msn}.{last_part})",
            part.map_or("-".to_string(), |p| p.to_string())
        )));
    }
    let listed = match part {
        None => pos.last_finished.is_some_and(|f| f >= msn),
        Some(p) => last_msn > msn || (last_msn == msn && last_part >= p),
    };
    if listed {
        Check::Ready
    } else {
        Check::Wait
    }
}

/// A part request: ready once the part exists or can no longer come (a
/// later part exists: the segment closed without it); held while it is
/// the near future (a preload hint); refused beyond.
fn part_check(pos: Position, msn: u64, index: usize, advance: usize) -> Check {
    if pos.growing == Some((msn, index)) {
        return Check::Ready;
    }
    let Some((last_msn, last_part)) = pos.last_part.filter(|_| !pos.ended) else {
        return if pos.ended { Check::Ready } else { Check::Wait };
    };
    if (msn, index) <= (last_msn, last_part) {
        Check::Ready
    } else if (msn == last_msn && index <= last_part + advance)
        || (msn == last_msn + 1 && index <= advance)
    {
        Check::Wait
    } else {
        Check::Refuse(Refused::NotFound(NotFound::Part))
    }
}

/// A segment request in low latency: served (growing) once its first chunk
/// exists, held while it is the next one to start.
fn segment_check(pos: Position, msn: u64) -> Check {
    if pos.growing.is_some_and(|(m, _)| m == msn) {
        return Check::Ready;
    }
    match pos.last_part {
        Some((last_msn, _)) if !pos.ended && msn == last_msn + 1 => Check::Wait,
        None if !pos.ended => Check::Wait,
        _ => Check::Ready,
    }
}

impl Store {
    /// The answer to `resource` of `key` for a request with `directives`:
    /// [`Store::serve`], except that on a low-latency stream a blocking
    /// playlist reload, a part not made yet (a preload hint) and a segment
    /// about to start wait for what they ask (bounded in number and in
    /// time), and a segment being made is sent as it grows.
    pub async fn answer(
        &self,
        key: &str,
        resource: Resource,
        directives: Directives,
        utc_timing: &[&str],
    ) -> Result<Served, Refused> {
        let stream = self.get(key).ok_or(NotFound::Stream)?;
        stream.touch(self.memory().now_ms());
        if let (Resource::Segment(kind, number), Some(dvr)) = (resource, stream.dvr()) {
            let (on_disk, target) = {
                let seg = lock(&stream);
                (seg.on_disk(kind, number), seg.target_duration())
            };
            if on_disk {
                let dvr = Arc::clone(dvr);
                let chunks = tokio::task::spawn_blocking(move || dvr.read(kind, number))
                    .await
                    .ok()
                    .flatten()
                    .ok_or(NotFound::Segment)?;
                return Ok(Served {
                    payload: Payload::Chunks(chunks),
                    content_type: mp4_type(kind),
                    cache: CachePolicy::Immutable,
                    target_duration: target,
                });
            }
        }
        let (ll, target, part_target) = {
            let seg = lock(&stream);
            (seg.low_latency(), seg.target_duration(), seg.part_target())
        };
        if !ll {
            return Ok(self.serve_now(key, resource, Directives::default(), utc_timing)?);
        }
        let advance = advance_parts(part_target);
        let wait = hold_time(target);
        match resource {
            Resource::MediaPlaylist(kind) => {
                if let Some(msn) = directives.msn {
                    stream.low_latency_request();
                    self.wait_until(&stream, wait, Progress::Parts, |seg| {
                        reload_check(seg.position(kind), msn, directives.part, advance)
                    })
                    .await?;
                }
            }
            Resource::Part(kind, msn, index) => {
                stream.low_latency_request();
                let held = self
                    .wait_until(&stream, wait, Progress::Chunks, |seg| {
                        part_check(seg.position(kind), msn, index, advance)
                    })
                    .await?;
                let growing = Scope::Part(index);
                if let Some(served) = self.growing(&stream, held, growing, kind, msn, wait)? {
                    return Ok(served);
                }
            }
            Resource::Segment(kind, msn) => {
                let held = self
                    .wait_until(&stream, wait, Progress::Chunks, |seg| {
                        segment_check(seg.position(kind), msn)
                    })
                    .await?;
                let growing = Scope::Segment;
                if let Some(served) = self.growing(&stream, held, growing, kind, msn, wait)? {
                    // A segment fetched as it is made: a low-latency DASH client.
                    stream.low_latency_request();
                    return Ok(served);
                }
            }
            Resource::Multivariant | Resource::Mpd | Resource::Init(..) => {}
        }
        Ok(self.serve_now(key, resource, directives, utc_timing)?)
    }

    /// `scope` of segment `number` as a response sent as it grows, if it
    /// is being made (else `None`: it is served as stored). Keeps the
    /// request's place among the held ones, or takes one.
    fn growing(
        &self,
        stream: &Arc<Packaged>,
        held: Option<Held>,
        scope: Scope,
        kind: MediaKind,
        number: u64,
        wait: Duration,
    ) -> Result<Option<Served>, Refused> {
        // Subscribed before reading, so no chunk written in between is missed.
        let rx = stream.subscribe(Progress::Chunks);
        let (chunks, target) = {
            let seg = lock(stream);
            // Most requests are for finished parts: no copy for them here.
            if !scope.being_made(seg.position(kind), number) {
                return Ok(None);
            }
            (scope.read(&seg, kind, number, 0), seg.target_duration())
        };
        let Some((chunks, false)) = chunks else {
            return Ok(None);
        };
        let held = match held {
            Some(h) => h,
            None => self.hold(stream).ok_or(Refused::Unavailable(TOO_MANY))?,
        };
        Ok(Some(Served {
            payload: Payload::Growing(Growing {
                rx,
                stream: Arc::clone(stream),
                _held: held,
                kind,
                number,
                scope,
                sent: chunks.len(),
                pending: chunks.into(),
                finished: false,
                wait,
            }),
            content_type: mp4_type(kind),
            cache: CachePolicy::Immutable,
            target_duration: target,
        }))
    }

    /// Waits (at most `wait`) until `check` says ready, woken by
    /// `progress`, holding a place among the held requests while it waits
    /// (returned, if it waited).
    async fn wait_until(
        &self,
        stream: &Arc<Packaged>,
        wait: Duration,
        progress: Progress,
        check: impl Fn(&StreamSegmenter) -> Check,
    ) -> Result<Option<Held>, Refused> {
        match check(&lock(stream)) {
            Check::Ready => return Ok(None),
            Check::Refuse(r) => return Err(r),
            Check::Wait => {}
        }
        let held = self.hold(stream).ok_or(Refused::Unavailable(TOO_MANY))?;
        let mut rx = stream.subscribe(progress);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            match check(&lock(stream)) {
                Check::Ready => return Ok(Some(held)),
                Check::Refuse(r) => return Err(r),
                Check::Wait => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // The stream is gone from the store: answer with what is.
                Ok(Err(_)) => return Ok(Some(held)),
                Err(_) => return Err(Refused::Unavailable(TIMED_OUT)),
            }
        }
    }
}

const TOO_MANY: &str = "too many requests waiting; try again";
const TIMED_OUT: &str = "not produced in time; try again";

/// What a growing response sends: a whole segment, or one of its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Segment,
    Part(usize),
}

impl Scope {
    /// Whether it is being made now, by where the track's playlist ends.
    fn being_made(self, pos: Position, number: u64) -> bool {
        match self {
            Scope::Segment => {
                pos.last_finished.is_none_or(|f| f < number)
                    && (pos.growing.is_some_and(|(m, _)| m == number)
                        || pos.last_part.is_some_and(|(m, _)| m == number))
            }
            Scope::Part(index) => pos.growing == Some((number, index)),
        }
    }

    /// Its chunks from `from` on as far as written, and whether it is finished.
    fn read(
        self,
        seg: &StreamSegmenter,
        kind: MediaKind,
        number: u64,
        from: usize,
    ) -> Option<(Vec<Bytes>, bool)> {
        match self {
            Scope::Segment => seg.segment_from(kind, number, from),
            Scope::Part(index) => seg.part_from(kind, number, index, from),
        }
    }
}

/// A segment or a part being made, sent as it grows (chunked transfer):
/// each CMAF chunk (about a frame) as soon as the packager has written it,
/// until it is finished. Holds a place among the held requests while it
/// lasts.
pub struct Growing {
    stream: Arc<Packaged>,
    _held: Held,
    rx: watch::Receiver<u64>,
    kind: MediaKind,
    number: u64,
    scope: Scope,
    /// Chunks of the segment taken so far.
    sent: usize,
    pending: VecDeque<Bytes>,
    finished: bool,
    /// How long to wait for the next part before giving up.
    wait: Duration,
}

impl std::fmt::Debug for Growing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Growing")
            .field("kind", &self.kind)
            .field("number", &self.number)
            .field("scope", &self.scope)
            .field("sent", &self.sent)
            .finish()
    }
}

impl Growing {
    /// The next chunk, `None` once the segment is closed and sent, or an
    /// error when the segment stalls or is gone (the response is cut
    /// short, so no cache keeps it).
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(Ok(b));
            }
            if self.finished {
                return None;
            }
            self.rx.borrow_and_update();
            let read = self
                .scope
                .read(&lock(&self.stream), self.kind, self.number, self.sent);
            match read {
                Some((chunks, finished)) => {
                    self.sent += chunks.len();
                    self.pending.extend(chunks);
                    self.finished = finished;
                }
                None => return Some(Err(std::io::Error::other("segment gone"))),
            }
            if !self.pending.is_empty() || self.finished {
                continue;
            }
            match tokio::time::timeout(self.wait, self.rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Some(Err(std::io::Error::other("segment stalled"))),
            }
        }
    }

    /// The chunks as a stream, for a response body.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(
            self,
            |mut g| async move { g.next_chunk().await.map(|c| (c, g)) },
        )
    }
}

/// When a stream's media may be served.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ready {
    Always,
    /// Once the stream has a complete segment ([`StreamSegmenter::has_segments`]).
    WithSegments,
}

/// An init segment or a segment, as stored.
fn media(
    stream: &Mutex<StreamSegmenter>,
    kind: MediaKind,
    ready: Ready,
    get: impl FnOnce(&StreamSegmenter) -> Result<Vec<Bytes>, NotFound>,
) -> Result<Served, NotFound> {
    let seg = lock(stream);
    if ready == Ready::WithSegments && !seg.has_segments() {
        return Err(NotFound::NoSegmentYet);
    }
    let chunks = get(&seg)?;
    Ok(Served {
        payload: Payload::Chunks(chunks),
        content_type: mp4_type(kind),
        cache: CachePolicy::Immutable,
        target_duration: seg.target_duration(),
    })
}

/// A manifest, rendered from a snapshot taken under the stream's lock and
/// released before rendering. Only once the stream has a segment, so a
/// player's first manifest lists every track.
fn manifest(
    stream: &Mutex<StreamSegmenter>,
    ladder: &[(String, StreamSnapshot)],
    content_type: &'static str,
    render: impl FnOnce(&StreamSnapshot, &[(&str, &StreamSnapshot)]) -> Result<String, NotFound>,
) -> Result<Served, NotFound> {
    let (snap, max_age) = {
        let seg = lock(stream);
        if !seg.has_segments() {
            return Err(NotFound::NoSegmentYet);
        }
        // In low latency a manifest is stale within a part: a player (or
        // its browser's cache) must ask again each time.
        let max_age = if seg.low_latency() {
            Duration::ZERO
        } else {
            MANIFEST_MAX_AGE
        };
        (seg.snapshot(), max_age)
    };
    let ladder: Vec<(&str, &StreamSnapshot)> =
        ladder.iter().map(|(n, s)| (n.as_str(), s)).collect();
    Ok(Served {
        payload: Payload::Text(render(&snap, &ladder)?),
        content_type,
        cache: CachePolicy::Live { max_age },
        target_duration: snap.target_duration,
    })
}

fn mp4_type(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video/mp4",
        MediaKind::Audio => "audio/mp4",
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A store with live streams in it, fed as the server feeds it.

    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::hub::{Hub, HubConfig, Publisher, StreamEvent};
    use crate::media::{avc, Codec, CodecConfig, Frame};
    use crate::package::segmenter::SegmenterConfig;
    use crate::package::service::{HoldLimits, Packager, PackagerConfig, Store};

    pub struct Live {
        pub hub: Hub,
        pub store: Store,
        pub packager: Packager,
    }

    impl Live {
        /// Needs a tokio runtime (the packager runs a task per stream).
        pub fn new() -> Live {
            Live::with(SegmenterConfig::default(), HoldLimits::default())
        }

        /// [`Live::new`] with this segmenter configuration and these
        /// bounds on held requests.
        pub fn with(segmenter: SegmenterConfig, limits: HoldLimits) -> Live {
            let hub = Hub::new(HubConfig::default());
            let store = Store::new(limits);
            let config = PackagerConfig {
                segmenter,
                dvr_ms: 0,
                dvr_dir: None,
                dvr_event: false,
                grace: Duration::from_secs(600),
                retention: Duration::from_secs(600),
            };
            let packager = Packager::new(hub.clone(), store.clone(), config);
            Live {
                hub,
                store,
                packager,
            }
        }

        /// Publishes `key` as [`publish`] does.
        pub fn publish(&self, key: &str, ms: std::ops::Range<i64>) -> Publisher {
            publish(&self.hub, &self.packager, key, ms)
        }
    }

    /// Publishes `key` on `hub` with `packager` as the server does (hub
    /// first, then `ensure`): video only, a keyframe every second over
    /// `ms` (with the default 2 s target, a segment closes every 2 s).
    pub fn publish(
        hub: &Hub,
        packager: &Packager,
        key: &str,
        ms: std::ops::Range<i64>,
    ) -> Publisher {
        let p = hub
            .publish(&crate::stream_key::StreamKey::parse(key).unwrap(), "peer")
            .unwrap();
        packager.ensure(&crate::stream_key::StreamKey::parse(key).unwrap());
        let config =
            avc::build_decoder_config(&[0x67, 0x64, 0, 0x1f, 0xac], &[0x68, 0xee]).unwrap();
        p.send(StreamEvent::Config(Arc::new(CodecConfig::Avc(config))));
        for dts in ms.step_by(1000) {
            p.send(StreamEvent::Frame(Frame {
                codec: Codec::H264,
                dts,
                cts: 0,
                keyframe: true,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            }));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::Live;
    use super::*;
    use crate::package::segmenter::SegmenterConfig;
    use crate::package::service::HoldLimits;

    /// A low-latency manifest (the default): asked again every time.
    const LIVE: CachePolicy = CachePolicy::Live {
        max_age: Duration::ZERO,
    };

    fn text(s: &Served) -> &str {
        match &s.payload {
            Payload::Text(t) => t,
            other => panic!("media, not a manifest: {other:?}"),
        }
    }

    fn chunks(s: &Served) -> &[Bytes] {
        match &s.payload {
            Payload::Chunks(c) => c,
            other => panic!("not stored media: {other:?}"),
        }
    }

    /// Classic manifests may be reused for a second (low-latency ones,
    /// below, never: they are stale within a part).
    #[tokio::test]
    async fn classic_manifests_may_be_reused_for_a_second() {
        let classic = SegmenterConfig {
            low_latency: false,
            ..SegmenterConfig::default()
        };
        let live = Live::with(classic, HoldLimits::default());
        let key = "live/classic";
        let _p = live.publish(key, 0..9000);
        for r in [
            Resource::MediaPlaylist(MediaKind::Video),
            Resource::Multivariant,
            Resource::Mpd,
        ] {
            let s = live.store.serve(key, r, &[]).unwrap();
            assert_eq!(
                s.cache,
                CachePolicy::Live {
                    max_age: MANIFEST_MAX_AGE
                },
                "{r:?}"
            );
        }
    }

    /// Every resource with its type and cache policy, the manifests
    /// exactly as rendered from the stream's snapshot.
    #[tokio::test]
    async fn serves_each_resource_with_its_type_and_cache_policy() {
        let live = Live::new();
        let key = "live/serve";
        let _p = live.publish(key, 0..9000);
        let stream = live.store.get(key).unwrap();
        let snap = lock(&stream).snapshot();
        let video = snap.video.as_ref().unwrap();
        let (first, init) = (video.segments[0].number, video.segments[0].init);
        let serve = |r| live.store.serve(key, r, &["http://h/time", "/time"]);

        let s = serve(Resource::Segment(MediaKind::Video, first)).unwrap();
        assert_eq!(
            (s.content_type, s.cache),
            ("video/mp4", CachePolicy::Immutable)
        );
        let stored = lock(&stream).segment(MediaKind::Video, first).unwrap();
        assert_eq!(chunks(&s), stored.as_slice());
        assert_eq!(s.target_duration, 2);

        let s = serve(Resource::Init(MediaKind::Video, init)).unwrap();
        assert_eq!(
            (s.content_type, s.cache),
            ("video/mp4", CachePolicy::Immutable)
        );
        assert_eq!(
            chunks(&s),
            [lock(&stream).init(MediaKind::Video, init).unwrap()]
        );

        let s = serve(Resource::MediaPlaylist(MediaKind::Video)).unwrap();
        assert_eq!((s.content_type, s.cache), (HLS, LIVE));
        assert_eq!(
            text(&s),
            hls::media_playlist(&snap, MediaKind::Video).unwrap()
        );

        let s = serve(Resource::Multivariant).unwrap();
        assert_eq!((s.content_type, s.cache), (HLS, LIVE));
        assert_eq!(text(&s), hls::multivariant(&snap));

        let s = serve(Resource::Mpd).unwrap();
        assert_eq!((s.content_type, s.cache), ("application/dash+xml", LIVE));
        assert_eq!(text(&s), dash::mpd(&snap, &["http://h/time", "/time"]));

        let missing = |r| serve(r).unwrap_err();
        assert_eq!(
            missing(Resource::MediaPlaylist(MediaKind::Audio)),
            NotFound::Track
        );
        assert_eq!(
            missing(Resource::Segment(MediaKind::Video, 1)),
            NotFound::Segment
        );
        assert_eq!(
            missing(Resource::Segment(MediaKind::Audio, first)),
            NotFound::Segment
        );
        assert_eq!(
            missing(Resource::Init(MediaKind::Video, 1)),
            NotFound::InitSegment
        );
        assert_eq!(
            live.store
                .serve("live/none", Resource::Mpd, &[])
                .unwrap_err(),
            NotFound::Stream
        );
    }

    /// Before a segment is complete a player can fetch the init segment
    /// and nothing else.
    #[tokio::test]
    async fn before_the_first_segment_only_init_segments_are_served() {
        let live = Live::new();
        let key = "live/early";
        let _p = live.publish(key, 0..1);
        // The first init's id is the stream's first segment number, which
        // the one keyframe opened.
        let init = (lock(&live.store.get(key).unwrap()).next_number() - 1) as u32;
        let serve = |r| live.store.serve(key, r, &[]);
        let s = serve(Resource::Init(MediaKind::Video, init)).unwrap();
        assert_eq!(s.cache, CachePolicy::Immutable);
        for r in [
            Resource::Multivariant,
            Resource::Mpd,
            Resource::MediaPlaylist(MediaKind::Video),
            Resource::Segment(MediaKind::Video, u64::from(init)),
        ] {
            assert_eq!(serve(r).unwrap_err(), NotFound::NoSegmentYet, "{r:?}");
        }
    }

    /// A transcoded stream's manifests list its renditions.
    #[tokio::test]
    async fn manifests_list_the_ladder() {
        let live = Live::new();
        let key = "live/ladder";
        live.store.set_ladder(key, vec!["240p".into()]);
        let _source = live.publish(key, 0..9000);
        let _r = live.publish("live/ladder/240p", 0..9000);
        let multivariant = live.store.serve(key, Resource::Multivariant, &[]).unwrap();
        assert!(text(&multivariant).contains("\n240p/video.m3u8\n"));
        let mpd = live.store.serve(key, Resource::Mpd, &["/time"]).unwrap();
        assert!(text(&mpd).contains("<Representation id=\"video-240p\""));
    }
}
