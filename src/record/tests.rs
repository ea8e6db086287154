use std::sync::Arc;

use bytes::Bytes;

use super::writer::{Feed, Job};
use super::*;
use crate::hub::{Hub, HubConfig, Tap};
use crate::media::flv::samples::{self, ReadBack};
use crate::media::flv_file::{read_tags, TAG_SCRIPT, TAG_VIDEO};
use crate::media::{Codec, Frame, MediaKind, StreamEvent};

fn entry(stream: &str, format: &str, path: &str) -> RecordEntry {
    RecordEntry {
        stream: stream.into(),
        format: format.into(),
        path: path.into(),
        split_secs: 0.0,
        split_bytes: 0,
    }
}

fn settings(dir: &std::path::Path, queue_bytes: usize) -> Settings {
    Settings {
        dir: dir.to_string_lossy().into_owned(),
        queue_bytes,
    }
}

#[test]
fn entries_are_checked_and_name_their_key() {
    let ok = rules(&[entry("live/*", "flv", template::DEFAULT)]).unwrap();
    assert!(ok[0].pattern.matches("live/cam"));
    assert_eq!(ok[0].split, Split::default());
    for (e, key, why) in [
        (
            entry("live/*", "cmaf", "{key}"),
            "record[0].format",
            "not built yet",
        ),
        (
            entry("live/*", "mp4", "{key}"),
            "record[0].format",
            "not a recording format",
        ),
        (
            entry("nope", "flv", "{key}"),
            "record[0].stream",
            "names no application",
        ),
        (entry("live/*", "flv", "../{key}"), "record[0].path", "`..`"),
        (
            entry("live/*", "flv", "/var/{key}"),
            "record[0].path",
            "absolute",
        ),
    ] {
        let err = rules(&[e]).unwrap_err();
        assert_eq!(err.key, key, "{err}");
        assert!(err.why.contains(why), "{err}");
    }
    let mut e = entry("live/*", "flv", "{key}");
    e.split_secs = -1.0;
    assert_eq!(rules(&[e]).unwrap_err().key, "record[0].split_secs");
    let mut e = entry("*", "flv", "{key}");
    e.split_secs = 2.5;
    e.split_bytes = 1000;
    let r = rules(&[e]).unwrap();
    assert_eq!(
        r[0].split,
        Split {
            after_ms: Some(2500),
            after_bytes: Some(1000)
        }
    );
    // The config file form: format is required, path has its default.
    let cfg = crate::config::Config::load_with_env(None, crate::config::tests::env(&[])).unwrap();
    assert!(cfg.record.is_empty());
    assert_eq!(cfg.recorder.dir, "media");
}

fn frame(codec: Codec, dts: i64, keyframe: bool, size: usize) -> StreamEvent {
    StreamEvent::Frame(Frame {
        codec,
        dts,
        cts: 0,
        keyframe,
        data: Bytes::from(vec![0u8; size]),
    })
}

/// No writer drains this feed (a writer stalled on a dead disk): the
/// publisher's pushes stay quick and bounded, and once the queue is full
/// the recording stops: the queue is freed and later events are ignored.
#[test]
fn a_stalled_writer_stops_its_recording_and_never_the_publisher() {
    let feed = Feed::new(10_000);
    feed.event(&StreamEvent::PublisherStarted);
    let mut pushed = 0;
    for i in 0..100 {
        feed.event(&frame(Codec::H264, i * 40, i % 25 == 0, 1000));
        if feed.overflowed() {
            break;
        }
        pushed += 1;
        assert!(feed.queued_bytes() <= 10_000);
    }
    assert!(feed.overflowed(), "the queue never filled");
    assert!((8..=10).contains(&pushed), "{pushed} frames fit in 10 kB");
    assert_eq!(feed.queued_bytes(), 0, "an overflowed queue is freed");
    feed.event(&frame(Codec::H264, 99_000, true, 1000));
    assert_eq!(feed.queued_bytes(), 0, "nothing is queued after the stop");

    // Its writer says why.
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        stream: "live/cam".into(),
        dir: dir.path().into(),
        path: PathTemplate::parse("{key}").unwrap(),
        split: Split::default(),
        events: Default::default(),
    };
    let outcome = writer::spawn(job, Arc::new(feed)).unwrap().join().unwrap();
    match outcome {
        Outcome::Failed(why) => assert!(why.contains("cannot keep up"), "{why}"),
        o => panic!("{o:?}"),
    }
}

/// The tags of an FLV file read back as hub events.
fn read_back(data: &Bytes) -> (Vec<u8>, Vec<StreamEvent>) {
    let tags = read_tags(data).unwrap();
    let mut back = ReadBack::default();
    let mut types = Vec::new();
    for t in tags {
        types.push(t.tag_type);
        match t.tag_type {
            TAG_SCRIPT => {
                // `onMetaData` (the AMF0 string), then the value.
                let name = crate::media::flv::ON_METADATA.len();
                back.metadata(t.body.slice(name..));
            }
            TAG_VIDEO => back.media(MediaKind::Video, t.timestamp, t.body),
            _ => back.media(MediaKind::Audio, t.timestamp, t.body),
        }
    }
    (types, back.events)
}

fn recorder(dir: &std::path::Path, entry: RecordEntry) -> Recorder {
    Recorder::new(
        &settings(dir, 1 << 20),
        rules(&[entry]).unwrap(),
        Default::default(),
    )
}

/// A publish through the hub is recorded whole: the file holds the
/// header, metadata, sequence headers and every frame, and reads back as
/// the events the publisher sent.
#[test]
fn a_publish_is_recorded_as_it_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(
        dir.path(),
        entry("live/*", "flv", "{app}/{key}/{date}-{time}"),
    );
    let hub = Hub::new(HubConfig::default());
    let other = crate::stream_key::StreamKey::parse("other/cam").unwrap();
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let publisher = hub.publish(&other, "test").unwrap();
    assert!(rec.on_publish(&hub, &other).is_empty(), "no rule matches");
    drop(publisher);

    let publisher = hub.publish(&key, "test").unwrap();
    let recordings = rec.on_publish(&hub, &key);
    assert_eq!(recordings.len(), 1);
    let sent = samples::events();
    for e in &sent {
        assert!(publisher.send(e.clone()));
    }
    drop(publisher);
    let outcome = recordings.finish();
    let [Outcome::Completed(files)] = &outcome[..] else {
        panic!("{outcome:?}")
    };
    assert_eq!(files.len(), 1);
    assert!(
        files[0].starts_with("live/cam/20") && files[0].ends_with(".flv"),
        "{files:?}"
    );
    let data = Bytes::from(std::fs::read(dir.path().join(&files[0])).unwrap());
    assert_eq!(&data[..5], b"FLV\x01\x05", "audio and video flags");
    let (types, events) = read_back(&data);
    assert_eq!(types, [18, 9, 8, 9, 8, 9]);
    assert_eq!(events, sent);
}

/// Frames every 40 ms, keyframes every 500 ms, audio between: with
/// `split_secs = 1` each file starts at a keyframe with the metadata and
/// sequence headers before it, and no frame is lost or written twice.
#[test]
fn split_files_start_at_keyframes_with_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = entry("live/*", "flv", "{key}");
    e.split_secs = 1.0;
    let rec = recorder(dir.path(), e);
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let publisher = hub.publish(&key, "test").unwrap();
    let recordings = rec.on_publish(&hub, &key);
    let head = samples::events();
    // Metadata and the two configurations.
    for e in &head[..3] {
        publisher.send(e.clone());
    }
    let mut frames = 0;
    for i in 0..75 {
        let dts = i * 40;
        publisher.send(frame(Codec::H264, dts, dts % 500 == 0, 100));
        publisher.send(frame(Codec::Aac, dts, true, 20));
        frames += 2;
    }
    drop(publisher);
    let outcome = recordings.finish();
    let [Outcome::Completed(files)] = &outcome[..] else {
        panic!("{outcome:?}")
    };
    // 0-2960 ms: files at 0, 1000 and 2000 ms; a split within the same
    // second gets a suffix instead of overwriting.
    assert_eq!(files, &["cam.flv", "cam-1.flv", "cam-2.flv"]);
    let mut total = 0;
    for (n, f) in files.iter().enumerate() {
        let data = Bytes::from(std::fs::read(dir.path().join(f)).unwrap());
        let tags = read_tags(&data).unwrap();
        assert_eq!(
            tags.iter().map(|t| t.tag_type).take(4).collect::<Vec<_>>(),
            [18, 9, 8, 9],
            "{f}: metadata, video and audio configuration, then the keyframe"
        );
        let (_, events) = read_back(&data);
        let media: Vec<&Frame> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        let first_video = media.iter().find(|f| f.kind() == MediaKind::Video).unwrap();
        assert!(first_video.keyframe, "{f} starts at a keyframe");
        assert_eq!(first_video.dts, n as i64 * 1000, "{f}");
        assert_eq!(
            media[0].dts,
            n as i64 * 1000,
            "{f}: nothing before the keyframe"
        );
        total += media.len();
    }
    assert_eq!(total, frames, "every frame once");
}

/// A split by size, and a recording whose directory cannot be made (a
/// file where it should be) fails with the reason while the publisher goes
/// on.
#[test]
fn splits_by_size_and_fails_on_an_unwritable_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = entry("live/*", "flv", "{key}");
    e.split_bytes = 2000;
    let rec = recorder(dir.path(), e);
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let publisher = hub.publish(&key, "test").unwrap();
    let recordings = rec.on_publish(&hub, &key);
    for e in &samples::events()[..3] {
        publisher.send(e.clone());
    }
    for i in 0..30 {
        publisher.send(frame(Codec::H264, i * 40, i % 10 == 0, 500));
    }
    drop(publisher);
    let [Outcome::Completed(files)] = &recordings.finish()[..] else {
        panic!()
    };
    // 10 frames of 500 bytes between keyframes: each file passes 2000
    // bytes before its next keyframe.
    assert_eq!(files.len(), 3, "{files:?}");

    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    let rec = recorder(&blocked, entry("live/*", "flv", "{app}/{key}"));
    let publisher = hub.publish(&key, "test").unwrap();
    let recordings = rec.on_publish(&hub, &key);
    for e in samples::events() {
        assert!(publisher.send(e), "the publisher goes on");
    }
    drop(publisher);
    match &recordings.finish()[..] {
        [Outcome::Failed(why)] => assert!(why.contains("cannot create the directory"), "{why}"),
        o => panic!("{o:?}"),
    }
}

/// A takeover ends the old publish's recording at the new publisher's
/// start (the new publish has its own): no file mixes two publishers.
#[test]
fn a_takeover_completes_the_previous_recording() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(dir.path(), entry("live/*", "flv", "{key}"));
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let first = hub.publish(&key, "one").unwrap();
    let old = rec.on_publish(&hub, &key);
    for e in samples::events() {
        first.send(e);
    }
    let second = hub.publish(&key, "two").unwrap();
    let new = rec.on_publish(&hub, &key);
    assert!(!first.send(frame(Codec::H264, 80, true, 10)), "replaced");
    for e in samples::events() {
        second.send(e);
    }
    drop(second);
    // The old guard goes last, as a kicked connection's would.
    drop(first);
    let [Outcome::Completed(a)] = &old.finish()[..] else {
        panic!()
    };
    let [Outcome::Completed(b)] = &new.finish()[..] else {
        panic!()
    };
    assert_ne!(a, b);
    for f in [&a[0], &b[0]] {
        let data = Bytes::from(std::fs::read(dir.path().join(f)).unwrap());
        let (_, events) = read_back(&data);
        let frames = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Frame(_)))
            .count();
        assert_eq!(frames, 3, "{f}: one publisher's frames");
    }
}

/// The commented `[[record]]` example of the embedded defaults is valid
/// once uncommented.
#[test]
fn the_defaults_example_checks() {
    let example: Vec<&str> = crate::config::DEFAULTS
        .lines()
        .skip_while(|l| *l != "# [[record]]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| &l[2..])
        .collect();
    assert_eq!(example.first(), Some(&"[[record]]"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, example.join("\n")).unwrap();
    let cfg =
        crate::config::Config::load_with_env(Some(&file), crate::config::tests::env(&[])).unwrap();
    let r = rules(&cfg.record).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].split.after_ms, Some(3_600_000));
    // And a typo is named.
    std::fs::write(&file, example.join("\n").replace("flv", "cmaf")).unwrap();
    let e = crate::config::Config::load_with_env(Some(&file), crate::config::tests::env(&[]))
        .unwrap_err();
    assert!(e.to_string().contains("record[0].format"), "{e}");
}
