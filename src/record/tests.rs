use std::sync::Arc;
use std::time::SystemTime;

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
        retention_days: 0,
        retention_bytes: 0,
    }
}

#[test]
fn entries_are_checked_and_name_their_key() {
    let ok = rules(&[entry("live/*", "flv", template::DEFAULT)]).unwrap();
    assert!(ok[0].pattern.matches("live/cam"));
    assert_eq!(ok[0].split, Split::default());
    assert_eq!(ok[0].format, Format::Flv);
    let cmaf = rules(&[entry("live/*", "cmaf", template::DEFAULT)]).unwrap();
    assert_eq!(cmaf[0].format, Format::Cmaf);
    for (e, key, why) in [
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
    assert_eq!(
        (cfg.recorder.retention_days, cfg.recorder.retention_bytes),
        (0, 0),
        "recordings are kept by default"
    );
    cfg.recorder.validate().unwrap();
    let mut s = cfg.recorder.clone();
    s.retention_days = 36_501;
    assert_eq!(s.validate().unwrap_err().key, "recorder.retention_days");
    let env = crate::config::tests::env(&[("CASTGATE__RECORDER__RETENTION_BYTES", "-1")]);
    assert!(crate::config::Config::load_with_env(None, env).is_err());
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
        format: Format::Flv,
        dir: dir.path().into(),
        path: PathTemplate::parse("{key}").unwrap(),
        split: Split::default(),
        events: Default::default(),
        status: Arc::new(writer::Status::new()),
        closed: Default::default(),
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
    std::fs::write(&file, example.join("\n").replace("cmaf", "mkv")).unwrap();
    let e = crate::config::Config::load_with_env(Some(&file), crate::config::tests::env(&[]))
        .unwrap_err();
    assert!(e.to_string().contains("record[0].format"), "{e}");
}

/// Waits (bounded) for `f` to hold: the writer thread works on its own.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Sends the metadata, the configurations and `n` frames from `from` ms:
/// video every 40 ms with a keyframe every 1000 ms, audio between.
fn send_frames(publisher: &crate::hub::Publisher, from: i64, n: i64, head: bool) {
    if head {
        for e in &samples::events()[..3] {
            publisher.send(e.clone());
        }
    }
    for i in 0..n {
        let dts = from + i * 40;
        publisher.send(frame(Codec::H264, dts, dts % 500 == 0, 300));
        publisher.send(frame(Codec::Aac, dts + 20, true, 30));
    }
}

/// The API's recordings: started on a live stream (from its GOP cache, so
/// the file starts at a keyframe), one at a time per stream, shown with
/// the stream, listed while written (and not deletable then), stopped,
/// listed complete with the sidecar's facts, deleted; a second one ends
/// with the publish.
#[test]
fn api_recordings_start_stop_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(
        &settings(dir.path(), 1 << 20),
        Vec::new(),
        Default::default(),
    );
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let opts = StartOptions {
        format: Some("flv".into()),
        ..Default::default()
    };
    assert!(matches!(
        rec.start(&hub, &key, &opts),
        Err(StartError::NotLive(_))
    ));
    assert!(rec.stop("live/cam").is_empty());
    let publisher = hub.publish(&key, "test").unwrap();
    // 1.2 s before the start: the recording begins at the 1000 ms keyframe.
    send_frames(&publisher, 0, 30, true);
    let bad = StartOptions {
        format: Some("mp4".into()),
        ..Default::default()
    };
    match rec.start(&hub, &key, &bad) {
        Err(StartError::Bad(e)) => assert_eq!(e.key, "format", "{e}"),
        o => panic!("{o:?}"),
    }
    let started = rec.start(&hub, &key, &opts).unwrap();
    assert_eq!(started.started_by, StartedBy::Api);
    assert!(matches!(
        rec.start(&hub, &key, &opts),
        Err(StartError::Running(_))
    ));
    assert_eq!(rec.status_of("live/other"), None);
    wait_for("the first file opens", || {
        rec.status_of("live/cam").is_some_and(|s| s.path.is_some())
    });
    send_frames(&publisher, 1200, 50, false);
    let status = rec.status_of("live/cam").unwrap();
    let path = status.path.clone().unwrap();
    assert!(
        path.starts_with("live/cam/20") && path.ends_with(".flv"),
        "{path}"
    );
    let id = status.id.clone().unwrap();
    let listed = rec.list();
    assert_eq!(listed.files.len(), 1);
    assert_eq!(listed.files[0].state, FileState::Recording);
    assert_eq!(listed.files[0].id, id);
    assert!(matches!(rec.delete(&id), Err(DeleteError::Writing(_))));

    let stopped = rec.stop("live/cam");
    assert_eq!(stopped.len(), 1);
    assert_eq!(rec.status_of("live/cam"), None, "stopping");
    assert!(rec.stop("live/cam").is_empty(), "nothing runs now");
    wait_for("the writer finishes", || {
        rec.get(&id).unwrap().state == FileState::Complete
    });
    let file = rec.get(&id).unwrap();
    assert_eq!(file.state, FileState::Complete);
    assert_eq!(file.stream.as_deref(), Some("live/cam"));
    assert_eq!(
        file.size,
        std::fs::metadata(dir.path().join(&path)).unwrap().len()
    );
    // From the keyframe at 1000 ms to the last audio frame at 3180 ms.
    assert_eq!(file.duration, 2.18);
    let data = Bytes::from(std::fs::read(dir.path().join(&path)).unwrap());
    let (_, events) = read_back(&data);
    let first = events
        .iter()
        .find_map(|e| match e {
            StreamEvent::Frame(f) => Some(f),
            _ => None,
        })
        .unwrap();
    assert!(first.keyframe && first.dts == 1000, "{first:?}");

    // Stopped, a new one may start; the publish's end completes it.
    let again = rec.start(&hub, &key, &opts).unwrap();
    assert_eq!(again.started_by, StartedBy::Api);
    wait_for("the second file opens", || {
        rec.status_of("live/cam").is_some_and(|s| s.path.is_some())
    });
    drop(publisher);
    assert_eq!(rec.status_of("live/cam"), None, "ended");
    wait_for("the publish's end completes it", || {
        let all = rec.list();
        all.files.len() == 2 && all.files.iter().all(|f| f.state == FileState::Complete)
    });
    let all = rec.list();
    assert_eq!(all.files.len(), 2);
    assert!(all.files.iter().all(|f| f.state == FileState::Complete));

    rec.delete(&id).unwrap();
    assert!(!dir.path().join(&path).exists());
    assert!(!dir.path().join(path.replace(".flv", ".json")).exists());
    assert!(rec.get(&id).is_none());
    assert!(matches!(rec.delete(&id), Err(DeleteError::NotFound(_))));
    assert!(matches!(
        rec.delete("not-an-id!"),
        Err(DeleteError::NotFound(_))
    ));
    assert_eq!(rec.list().files.len(), 1);
}

/// A rule's recording shows in the stream's state and `stop` ends it
/// early (the publish goes on).
#[test]
fn a_rules_recording_is_shown_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(dir.path(), entry("live/*", "flv", "{key}"));
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let publisher = hub.publish(&key, "test").unwrap();
    let recordings = rec.on_publish(&hub, &key);
    send_frames(&publisher, 0, 10, true);
    wait_for("the file opens", || {
        rec.status_of("live/cam").is_some_and(|s| s.path.is_some())
    });
    assert_eq!(
        rec.status_of("live/cam").unwrap().started_by,
        StartedBy::Rule
    );
    assert_eq!(rec.stop("live/cam").len(), 1);
    let [Outcome::Completed(files)] = &recordings.finish()[..] else {
        panic!()
    };
    assert_eq!(files, &["cam.flv"]);
    assert!(
        publisher.send(frame(Codec::H264, 400, false, 10)),
        "the publish goes on"
    );
    assert_eq!(rec.status_of("live/cam"), None);
}

/// Retention deletes the oldest finished recordings past the total size
/// (the one being written counts, and stays), then by age; each deletion
/// takes the sidecar too.
#[test]
fn the_sweeper_deletes_the_oldest_finished_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 1 << 20);
    let rules = rules(&[entry("live/*", "flv", "{key}")]).unwrap();
    let rec = Recorder::new(&s, rules.clone(), Default::default());
    let hub = Hub::new(HubConfig::default());
    let key = crate::stream_key::StreamKey::parse("live/cam").unwrap();
    let mut names = Vec::new();
    for _ in 0..2 {
        let publisher = hub.publish(&key, "test").unwrap();
        let recordings = rec.on_publish(&hub, &key);
        send_frames(&publisher, 0, 25, true);
        drop(publisher);
        let [Outcome::Completed(files)] = &recordings.finish()[..] else {
            panic!()
        };
        names.extend(files.clone());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(names, ["cam.flv", "cam-1.flv"]);
    let size = rec.list().files[0].size;
    // The third, being written.
    let publisher = hub.publish(&key, "test").unwrap();
    let recordings = rec.on_publish(&hub, &key);
    // Past the keyframe at 1000 ms: the file is flushed there, a little
    // longer than the others.
    send_frames(&publisher, 0, 40, true);
    wait_for("the third file has frames on disk", || {
        rec.list()
            .files
            .iter()
            .any(|f| f.state == FileState::Recording && f.size > size)
    });
    assert_eq!(rec.sweep(SystemTime::now()), 0, "no retention set");
    // Two finished files and a half fit, not three.
    s.retention_bytes = size * 5 / 2;
    rec.set_plan(&s, rules.clone());
    assert_eq!(rec.sweep(SystemTime::now()), 1);
    let left: Vec<String> = rec
        .list()
        .files
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    assert_eq!(left, ["cam-1.flv", "cam-2.flv"], "the oldest went");
    assert!(!dir.path().join("cam.json").exists());
    // Two days on, with a day's retention: the finished one goes, the one
    // being written stays whatever its age.
    s.retention_bytes = 0;
    s.retention_days = 1;
    rec.set_plan(&s, rules);
    let later = SystemTime::now() + std::time::Duration::from_secs(2 * 86_400);
    assert_eq!(rec.sweep(later), 1);
    assert_eq!(rec.sweep(later), 0);
    let left: Vec<String> = rec
        .list()
        .files
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    assert_eq!(left, ["cam-2.flv"]);
    drop(publisher);
    recordings.finish();
    assert_eq!(rec.sweep(later), 1, "finished now");
    assert!(rec.list().files.is_empty());
}
