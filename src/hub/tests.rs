use super::*;
use crate::media::{Codec, Frame};
use bytes::Bytes;

fn video(dts: i64, key: bool, size: usize) -> StreamEvent {
    StreamEvent::Frame(Frame {
        codec: Codec::H264,
        dts,
        cts: 0,
        keyframe: key,
        data: Bytes::from(vec![0u8; size]),
    })
}

fn audio(dts: i64) -> StreamEvent {
    StreamEvent::Frame(Frame {
        codec: Codec::Aac,
        dts,
        cts: 0,
        keyframe: true,
        data: Bytes::from_static(&[1, 2, 3]),
    })
}

fn frame_dts(e: &StreamEvent) -> Option<i64> {
    match e {
        StreamEvent::Frame(f) => Some(f.dts),
        _ => None,
    }
}

/// Everything queued right now, without waiting.
async fn drain(s: &Subscriber) -> Vec<StreamEvent> {
    let mut out = vec![];
    while let Ok(Ok(e)) = tokio::time::timeout(std::time::Duration::from_millis(5), s.recv()).await
    {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn late_subscriber_starts_at_last_keyframe() {
    let hub = Hub::new(HubConfig::default());
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "peer",
        )
        .unwrap();
    for (i, key) in [true, false, false, true, false].into_iter().enumerate() {
        p.send(video(i as i64 * 33, key, 10));
        p.send(audio(i as i64 * 33));
    }
    let s = hub.subscribe("live/a");
    let got = drain(&s).await;
    assert_eq!(got[0], StreamEvent::PublisherStarted);
    let dts: Vec<i64> = got.iter().filter_map(frame_dts).collect();
    assert_eq!(dts, vec![99, 99, 132, 132]);
}

/// Other multitrack tracks: a late subscriber gets their latest
/// configurations and their frames since track 0's last keyframe, on the
/// same timeline.
#[tokio::test]
async fn late_subscriber_gets_the_other_tracks_too() {
    let hub = Hub::new(HubConfig::default());
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/m").unwrap(),
            "peer",
        )
        .unwrap();
    let config = |width| {
        Arc::new(CodecConfig::Mp3(crate::media::Mp3Config {
            sample_rate: width,
            channels: 2,
            flv_flags: 0x2f,
        }))
    };
    p.send(StreamEvent::TrackConfig(1, config(22050)));
    p.send(StreamEvent::TrackConfig(1, config(44100)));
    p.send(StreamEvent::TrackConfig(2, config(48000)));
    for (i, key) in [true, false, true, false].into_iter().enumerate() {
        let dts = i as i64 * 40;
        p.send(video(dts, key, 10));
        let StreamEvent::Frame(f) = audio(dts) else {
            unreachable!()
        };
        p.send(StreamEvent::TrackFrame(1, f));
    }
    let got = drain(&hub.subscribe("live/m")).await;
    let configs: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TrackConfig(id, c) => Some((*id, c.audio_format().0)),
            _ => None,
        })
        .collect();
    assert_eq!(configs, [(1, 44100), (2, 48000)]);
    let frames: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Frame(f) => Some((0, f.dts)),
            StreamEvent::TrackFrame(id, f) => Some((*id, f.dts)),
            _ => None,
        })
        .collect();
    assert_eq!(frames, [(0, 80), (1, 80), (0, 120), (1, 120)]);
}

#[tokio::test]
async fn slow_subscriber_drops_non_key_video_then_closes() {
    let hub = Hub::new(HubConfig {
        queue: QueueLimits {
            soft_bytes: 1000,
            hard_bytes: 3000,
        },
        ..HubConfig::default()
    });
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "peer",
        )
        .unwrap();
    let s = hub.subscribe("live/a");
    let fast = hub.subscribe("live/a");
    let _ = drain(&s).await;
    let mut fast_got = vec![];
    for (ev, expect_dropped) in [
        (video(0, true, 500), 0),
        (video(33, false, 500), 1), // over soft: dropped
        (video(66, false, 10), 2),  // would fit, but its reference is gone
        (audio(70), 2),             // audio kept
        (video(100, true, 500), 2), // keyframe kept (under hard)
    ] {
        p.send(ev);
        assert_eq!(s.dropped(), expect_dropped);
        fast_got.extend(drain(&fast).await.iter().filter_map(frame_dts));
    }
    let got: Vec<i64> = drain(&s).await.iter().filter_map(frame_dts).collect();
    assert_eq!(got, vec![0, 70, 100]);
    // The subscriber that keeps up got everything.
    assert_eq!(fast_got, vec![0, 33, 66, 70, 100]);
    // Now overflow the hard limit without reading.
    let mut fast_frames = 0;
    for i in 0..10 {
        p.send(video(200 + i, true, 500));
        fast_frames += drain(&fast).await.len();
    }
    assert_eq!(fast_frames, 10);
    let mut res = Ok(StreamEvent::PublisherStopped);
    for _ in 0..20 {
        res = s.recv().await;
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(Closed::TooSlow(3000)));
}

#[tokio::test]
async fn takeover_replaces_and_kicks_old_publisher() {
    let hub = Hub::new(HubConfig::default());
    let mut old = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "one",
        )
        .unwrap();
    old.send(video(1000, true, 1));
    let s = hub.subscribe("live/a");
    let new = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "two",
        )
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), old.kicked())
        .await
        .expect("old publisher is told");
    assert!(!old.send(video(1033, false, 1)), "old publisher is ignored");
    new.send(video(0, true, 1));
    drop(old); // must not end the new publisher's stream
    assert!(hub.is_live("live/a"));
    let got = drain(&s).await;
    let dts: Vec<i64> = got.iter().filter_map(frame_dts).collect();
    // Time keeps rising across the publisher change.
    assert_eq!(dts, vec![1000, 1040]);
    assert!(!got.contains(&StreamEvent::PublisherStopped));
}

#[tokio::test]
async fn reject_policy_refuses_second_publisher() {
    let hub = Hub::new(HubConfig {
        publish_conflict: PublishConflict::Reject,
        ..HubConfig::default()
    });
    let _p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "one",
        )
        .unwrap();
    assert!(matches!(
        hub.publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "two"
        ),
        Err(PublishError::AlreadyPublishing(_))
    ));
    assert!(hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/b").unwrap(),
            "two"
        )
        .is_ok());
    // A reload switches the rule for the next publisher.
    hub.set_publish_conflict(PublishConflict::Takeover);
    let _three = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "three",
        )
        .unwrap();
    hub.set_publish_conflict(PublishConflict::Reject);
    assert!(hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "four"
        )
        .is_err());
}

#[tokio::test]
async fn streams_are_removed_when_unused() {
    let hub = Hub::new(HubConfig::default());
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "one",
        )
        .unwrap();
    let s = hub.subscribe("live/a");
    drop(p);
    assert_eq!(hub.streams().len(), 1);
    assert_eq!(drain(&s).await.last(), Some(&StreamEvent::PublisherStopped));
    drop(s);
    assert!(hub.streams().is_empty());
}

#[tokio::test]
async fn keys_are_separate() {
    let hub = Hub::new(HubConfig::default());
    let a = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "one",
        )
        .unwrap();
    let b = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/b").unwrap(),
            "two",
        )
        .unwrap();
    let sa = hub.subscribe("live/a");
    let _ = drain(&sa).await;
    b.send(video(5, true, 1));
    a.send(video(7, true, 1));
    let dts: Vec<i64> = drain(&sa).await.iter().filter_map(frame_dts).collect();
    assert_eq!(dts, vec![7]);
}

/// Records what a tap sees.
#[derive(Default)]
struct Recorder(Mutex<Vec<StreamEvent>>);

impl Tap for Recorder {
    fn event(&self, event: &StreamEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[test]
fn taps_see_every_event_in_order_and_join_live_streams_like_subscribers() {
    let hub = Hub::new(HubConfig::default());
    let early = Arc::new(Recorder::default());
    let early_handle = hub.tap("live/t", early.clone());
    let publisher = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/t").unwrap(),
            "peer",
        )
        .unwrap();
    publisher.send(video(0, true, 10));
    publisher.send(audio(10));
    publisher.send(video(40, false, 10));

    // A tap joining mid-GOP starts like a subscriber: start and the GOP.
    let late = Arc::new(Recorder::default());
    let _late_handle = hub.tap("live/t", late.clone());
    publisher.send(video(80, false, 10));
    drop(publisher);

    let seen =
        |r: &Recorder| -> Vec<Option<i64>> { r.0.lock().unwrap().iter().map(frame_dts).collect() };
    assert_eq!(
        seen(&early),
        [None, Some(0), Some(10), Some(40), Some(80), None]
    );
    assert_eq!(
        seen(&late),
        [None, Some(0), Some(10), Some(40), Some(80), None]
    );
    let events = early.0.lock().unwrap();
    assert_eq!(events[0], StreamEvent::PublisherStarted);
    assert_eq!(events[5], StreamEvent::PublisherStopped);
    drop(events);

    // A detached tap sees nothing more, and an unused slot goes away.
    drop(early_handle);
    let publisher = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/t").unwrap(),
            "peer",
        )
        .unwrap();
    publisher.send(audio(0));
    assert_eq!(early.0.lock().unwrap().len(), 6);
    assert_eq!(late.0.lock().unwrap().len(), 8);
    drop(publisher);
    drop(_late_handle);
    assert!(hub.streams().is_empty());
}

#[tokio::test]
async fn stream_info_has_tracks_and_rates() {
    let hub = Hub::new(HubConfig::default());
    assert!(hub.stream("live/r").is_none());
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/r").unwrap(),
            "1.2.3.4:5",
        )
        .unwrap();
    let info = hub.stream("live/r").unwrap();
    assert_eq!(info.publisher.as_deref(), Some("1.2.3.4:5"));
    assert!(info.since.is_some());
    assert_eq!((info.fps, info.video_kbps), (None, None), "no media yet");
    p.send(StreamEvent::Config(Arc::new(CodecConfig::Aac(
        crate::media::AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48000,
            channels: 2,
            frame_length: 1024,
        },
    ))));
    // 7 s at 25 fps, 1000-byte frames (200 kbit/s), plus 3-byte audio.
    for i in 0..175 {
        p.send(video(i * 40, i % 25 == 0, 1000));
        p.send(audio(i * 40));
    }
    let info = hub.stream("live/r").unwrap();
    assert!(info.audio.is_some() && info.video.is_none());
    // No video configuration: video rates are not reported.
    assert_eq!(info.fps, None);
    let a = info.audio_kbps.unwrap();
    assert!((a - 0.6).abs() < 0.01, "{a}");
    let hub2 = Hub::new(HubConfig::default());
    let p2 = hub2
        .publish(&crate::stream_key::StreamKey::parse("live/v").unwrap(), "x")
        .unwrap();
    p2.send(StreamEvent::Config(Arc::new(CodecConfig::Avc(
        crate::media::AvcConfig {
            record: Bytes::new(),
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 31,
            nal_length_size: 4,
            sps: vec![],
            pps: vec![],
            width: 64,
            height: 64,
        },
    ))));
    for i in 0..175 {
        p2.send(video(i * 40, i % 25 == 0, 1000));
    }
    let info = hub2.stream("live/v").unwrap();
    assert_eq!(info.fps, Some(25.0));
    assert_eq!(info.video_kbps, Some(200.0));
    drop(p2);
    assert!(hub2.stream("live/v").is_none());
}

#[test]
fn demand_counts_subscribers_and_a_new_publisher_resets_the_read_period() {
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/d").unwrap();
    let info = |hub: &Hub| {
        hub.streams()
            .into_iter()
            .find(|s| s.key == "live/d")
            .expect("the stream is listed")
    };
    let p = hub.publish(&key, "peer").unwrap();
    assert!(!p.low_latency_wanted());
    p.demand()
        .set_read_period(Some(std::time::Duration::from_millis(100)));
    assert_eq!(
        info(&hub).read_period,
        Some(std::time::Duration::from_millis(100))
    );
    let s = hub.subscribe("live/d");
    assert!(p.low_latency_wanted(), "a subscriber wants low latency");
    assert!(info(&hub).low_latency_wanted);
    drop(s);
    assert!(!p.low_latency_wanted(), "its leaving is counted");
    drop(p);
    // Another publisher (one that does not batch, say) is not shown the
    // last one's period.
    let p2 = hub.publish(&key, "peer2").unwrap();
    assert_eq!(info(&hub).read_period, None);
    drop(p2);
}
