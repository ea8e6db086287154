use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::egress::{RelaySettings, StaticRule};
use crate::hub::{HubConfig, PublishConflict};
use crate::media::{Codec, Frame};
use crate::package::segmenter::SegmenterConfig;
use crate::package::service::{PackagerConfig, Store};
use crate::transport::tls_client::TlsOptions;

/// What a hook saw: the key, the protocol, and whether packaging had
/// already started on the key when it ran.
type Seen = Arc<Mutex<Vec<(String, &'static str, bool)>>>;

struct RecordingHook {
    store: Store,
    seen: Seen,
}

impl PublishHook for RecordingHook {
    fn on_publish(&self, _: &Registry, key: &StreamKey, origin: &Origin, _: &Granted) {
        let packaged = self.store.get(key).is_some();
        self.seen
            .lock()
            .unwrap()
            .push((key.to_string(), origin.protocol(), packaged));
    }
}

struct Fixture {
    registry: Registry,
    hub: Hub,
    store: Store,
    stats: crate::metrics::Streams,
    relays: Relays,
    seen: Seen,
}

fn fixture(conflict: PublishConflict) -> Fixture {
    let hub = Hub::new(HubConfig {
        publish_conflict: conflict,
        ..HubConfig::default()
    });
    let store = Store::default();
    let packager = Packager::new(
        hub.clone(),
        store.clone(),
        PackagerConfig {
            segmenter: SegmenterConfig::default(),
            dvr_ms: 0,
            dvr_dir: None,
            dvr_event: false,
            grace: Duration::from_millis(20),
            retention: Duration::from_secs(600),
        },
    );
    // A static relay for every `live/` stream, towards a closed loopback
    // port: it exists (and retries) as long as its stream is live.
    let rule = StaticRule::parse(
        "live/*",
        "rtmp://127.0.0.1:1/out/{key}",
        TlsOptions::default(),
    )
    .unwrap();
    let relays = Relays::new(
        hub.clone(),
        RelaySettings::default(),
        vec![rule],
        crate::webhooks::Webhooks::default(),
    );
    let stats = crate::metrics::Streams::default();
    let registry = Registry::new(
        hub.clone(),
        packager,
        relays.clone(),
        crate::record::Recorder::default(),
        stats.clone(),
        Webhooks::default(),
    );
    let seen = Seen::default();
    registry.add_hook(Arc::new(RecordingHook {
        store: store.clone(),
        seen: seen.clone(),
    }));
    Fixture {
        registry,
        hub,
        store,
        stats,
        relays,
        seen,
    }
}

fn client() -> Origin {
    Origin::Client {
        protocol: "rtmp",
        peer: "127.0.0.1:5000".parse().unwrap(),
        mode: "live".into(),
    }
}

fn key(s: &str) -> StreamKey {
    StreamKey::parse(s).unwrap()
}

#[tokio::test]
async fn a_publish_starts_everything_and_its_end_stops_it() {
    let f = fixture(PublishConflict::Takeover);
    let k = key("live/cam");
    let guard = f
        .registry
        .publish(k.clone(), client(), &Granted::default())
        .await
        .unwrap();
    assert!(f.hub.is_live("live/cam"));
    assert!(f.store.get("live/cam").is_some(), "not packaged");
    assert!(f.stats.contains("live/cam"), "no stats");
    assert_eq!(
        f.relays.of_stream("live/cam").len(),
        1,
        "static relay not started"
    );
    // The hook ran once, before packaging started.
    assert_eq!(
        *f.seen.lock().unwrap(),
        vec![("live/cam".to_string(), "rtmp", false)]
    );
    assert_eq!(guard.key(), &k);

    drop(guard);
    assert!(!f.hub.is_live("live/cam"));
    assert!(!f.stats.contains("live/cam"), "stats outlive the publish");
}

#[tokio::test]
async fn frames_sent_through_the_guard_are_counted_and_delivered() {
    let f = fixture(PublishConflict::Takeover);
    let guard = f
        .registry
        .publish(key("live/count"), client(), &Granted::default())
        .await
        .unwrap();
    let sub = f.hub.subscribe("live/count");
    let frame = Frame {
        codec: Codec::Aac,
        dts: 40,
        cts: 0,
        keyframe: true,
        data: Bytes::from_static(&[1, 2, 3]),
    };
    assert!(guard.send(StreamEvent::Frame(frame)));
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(guard.stats().audio_frames.load(Relaxed), 1);
    assert_eq!(guard.stats().bytes.load(Relaxed), 3);
    let mut got = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
        got.push(ev);
    }
    assert!(
        got.iter()
            .any(|e| matches!(e, StreamEvent::Frame(f) if f.dts == 40 && f.data[..] == [1, 2, 3])),
        "the frame did not reach a subscriber: {got:?}"
    );
}

#[tokio::test]
async fn a_refused_publish_starts_nothing() {
    let f = fixture(PublishConflict::Reject);
    let _first = f
        .registry
        .publish(key("other/a"), client(), &Granted::default())
        .await
        .unwrap();
    let second = f
        .registry
        .publish(key("other/a"), client(), &Granted::default())
        .await;
    assert!(matches!(
        second,
        Err(PublishError::Hub(
            crate::hub::PublishError::AlreadyPublishing(_)
        ))
    ));
    assert_eq!(
        f.seen.lock().unwrap().len(),
        1,
        "hooks ran for a refused publish"
    );
    // The live publish keeps its stats.
    assert!(f.stats.contains("other/a"));
}

#[tokio::test]
async fn a_takeover_keeps_the_stream_and_the_new_publish_owns_it() {
    let f = fixture(PublishConflict::Takeover);
    let old = f
        .registry
        .publish(key("live/t"), client(), &Granted::default())
        .await
        .unwrap();
    let new = f
        .registry
        .publish(key("live/t"), client(), &Granted::default())
        .await
        .unwrap();
    // The replaced publish ending must not take the new one's stats.
    drop(old);
    assert!(f.stats.contains("live/t"));
    assert!(f.hub.is_live("live/t"));
    drop(new);
    assert!(!f.stats.contains("live/t"));
}

#[tokio::test]
async fn renditions_are_published_like_any_stream() {
    let f = fixture(PublishConflict::Takeover);
    let origin = Origin::Rendition {
        source: key("live/show"),
        profile: "abr".into(),
    };
    let guard = f
        .registry
        .publish(key("live/show/720p"), origin, &Granted::default())
        .await
        .unwrap();
    assert!(f.store.get("live/show/720p").is_some());
    assert!(f.stats.contains("live/show/720p"));
    assert_eq!(f.relays.of_stream("live/show/720p").len(), 1);
    assert_eq!(
        *f.seen.lock().unwrap(),
        vec![("live/show/720p".to_string(), "transcode", false)]
    );
    drop(guard);
    assert!(!f.stats.contains("live/show/720p"));
}
