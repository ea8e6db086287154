//! What a media URL answers. The store decides the body, its content type
//! and how long it may be cached; the HTTP layer only turns the answer into
//! a response (signing, compression, headers).
//!
//! The locking rule lives here: never two stream locks at once (a ladder's
//! renditions are snapshotted one at a time), and only what is needed is
//! taken under a stream's lock; rendering happens without it.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::model::StreamSnapshot;
use super::segmenter::StreamSegmenter;
use super::service::Store;
use super::urls::Resource;
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
            Resource::MediaPlaylist(kind) => manifest(&stream, &[], HLS, |snap, _| {
                hls::media_playlist(snap, kind).ok_or(NotFound::Track)
            }),
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

    /// The renditions `key`'s manifests list, snapshotted before the
    /// source's lock is taken again.
    fn ladder_of(&self, key: &str, stream: &Mutex<StreamSegmenter>) -> Ladder {
        let source_ended = lock(stream).is_ended();
        self.ladder_snapshots(key, source_ended)
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
    let snap = {
        let seg = lock(stream);
        if !seg.has_segments() {
            return Err(NotFound::NoSegmentYet);
        }
        seg.snapshot()
    };
    let ladder: Vec<(&str, &StreamSnapshot)> =
        ladder.iter().map(|(n, s)| (n.as_str(), s)).collect();
    Ok(Served {
        payload: Payload::Text(render(&snap, &ladder)?),
        content_type,
        cache: CachePolicy::Live {
            max_age: MANIFEST_MAX_AGE,
        },
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
    use crate::package::service::{Packager, PackagerConfig, Store};

    pub struct Live {
        pub hub: Hub,
        pub store: Store,
        pub packager: Packager,
    }

    impl Live {
        /// Needs a tokio runtime (the packager runs a task per stream).
        pub fn new() -> Live {
            let hub = Hub::new(HubConfig::default());
            let store = Store::default();
            let config = PackagerConfig {
                segmenter: SegmenterConfig::default(),
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

    const LIVE: CachePolicy = CachePolicy::Live {
        max_age: Duration::from_secs(1),
    };

    fn text(s: &Served) -> &str {
        match &s.payload {
            Payload::Text(t) => t,
            Payload::Chunks(_) => panic!("media, not a manifest"),
        }
    }

    fn chunks(s: &Served) -> &[Bytes] {
        match &s.payload {
            Payload::Chunks(c) => c,
            Payload::Text(_) => panic!("a manifest, not media"),
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
