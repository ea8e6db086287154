//! Recording (`[[record]]`, issue 21's first brick): ffmpeg publishes, the
//! FLV recording decodes cleanly and holds every frame of the source, and
//! the `recording.*` events arrive; a record directory that cannot be
//! written fails the recording (log line and event), never the stream.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::video_frames;
use crate::harness::*;
use crate::ops::{Received, Receiver};

const T: Duration = Duration::from_secs(90);

/// castgate with `[[record]]` for `live/*` under `dir`, posting events to
/// `hook`.
fn start(cfg_dir: &Path, record_dir: &Path, hook: &Receiver) -> Castgate {
    let cfg = cfg_dir.join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[webhooks]\nurls = [\"{}\"]\n\
             [recorder]\ndir = \"{}\"\n\
             [[record]]\nstream = \"live/*\"\nformat = \"flv\"\n",
            hook.url("/events"),
            record_dir.display()
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("CASTGATE__PACKAGE__GRACE_SECS", "1")],
    );
    server.wait_log_all(&["recording configured", "pattern=\"live/*\""], T);
    server
}

/// The first `kind` event about `stream` the receiver got, waited for.
fn event(hook: &Receiver, kind: &str, stream: &str) -> Value {
    let find = |g: &[Received]| {
        g.iter()
            .map(Received::json)
            .find(|v| v["type"] == kind && v["stream"] == stream)
    };
    let got = hook.wait(&format!("{kind} of {stream}"), |g| find(g).is_some());
    find(&got).unwrap()
}

/// `path=…` of a log line.
fn path_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("path="))
        .map(|p| p.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no path= in {line:?}"))
}

#[test]
fn a_recording_holds_every_frame_of_the_publish() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let server = start(dir.path(), &media, &hook);
    let src = fixture(1);
    let mut publisher = publish(&src, &server.url("live/cam"), &[]);
    let started = server.wait_log_all(&["recording started", "stream=\"live/cam\""], T);
    let path = path_of(&started);
    assert!(
        path.starts_with("live/cam/20") && path.ends_with(".flv"),
        "named by the default template: {path}"
    );
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    let done = server.wait_log_all(&["recording completed", "stream=\"live/cam\""], T);
    assert_eq!(path_of(&done), path);

    let file = media.join(&path);
    let file_str = file.to_str().unwrap();
    assert_eq!(decode_errors(file_str), "", "the recording decodes cleanly");
    assert_holds_every_frame(&src, file_str, "the recording");
    let packets = framemd5_of(&src, "0").len();

    let ev = event(&hook, "recording.started", "live/cam");
    assert_eq!(ev["data"]["path"], path.as_str(), "{ev}");
    let ev = event(&hook, "recording.completed", "live/cam");
    let data = &ev["data"];
    assert_eq!(data["path"], path.as_str(), "{ev}");
    assert_eq!(data["format"], "flv", "{ev}");
    assert_eq!(data["frames"].as_u64(), Some(packets as u64), "{ev}");
    assert_eq!(
        data["bytes"].as_u64(),
        Some(std::fs::metadata(&file).unwrap().len()),
        "{ev}"
    );
    let secs = data["duration"].as_f64().unwrap();
    assert!((3.5..=4.1).contains(&secs), "a 4 s fixture: {ev}");
    server.assert_no_panic();
}

/// The video playlist's segment count, 0 while there is none.
fn segments(server: &Castgate, key: &str) -> usize {
    let r = http_get(server.http, &format!("/{key}/video.m3u8"));
    if r.status != 200 {
        return 0;
    }
    m3u8_rs::parse_media_playlist_res(r.text().as_bytes())
        .map_or(0, |p| p.media_sequence as usize + p.segments.len())
}

#[test]
fn an_unwritable_record_dir_fails_the_recording_not_the_stream() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    // A file where the record directory should be.
    let blocked = dir.path().join("media");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let server = start(dir.path(), &blocked, &hook);
    let src = fixture(2);
    let mut publisher = publish(&src, &server.url("live/cam"), &["-stream_loop", "3"]);
    let failed = server.wait_log_all(&["recording failed", "stream=\"live/cam\""], T);
    assert!(failed.contains("cannot create the directory"), "{failed}");
    let ev = event(&hook, "recording.failed", "live/cam");
    assert!(
        ev["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot create the directory")),
        "{ev}"
    );
    // The live stream goes on: its playlist keeps gaining segments after
    // the recording failed.
    let before = segments(&server, "live/cam");
    let deadline = Instant::now() + T;
    while segments(&server, "live/cam") < before + 2 {
        assert!(
            Instant::now() < deadline,
            "the HLS playlist stopped at {before} segments after the recording failed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    assert_eq!(
        server.count_log(&["recording started"]),
        0,
        "no file was started"
    );
    server.assert_no_panic();
}

/// castgate killed with SIGKILL mid-recording: the file on disk holds the
/// stream up to a recent keyframe (it is flushed at each one), every frame
/// in it is the source's, in order, and it decodes.
#[test]
fn a_recording_survives_sigkill_up_to_its_last_keyframe() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let mut server = start(dir.path(), &media, &hook);
    let src = fixture(3);
    let mut publisher = publish(&src, &server.url("live/cam"), &[]);
    let started = server.wait_log_all(&["recording started", "stream=\"live/cam\""], T);
    let file = media.join(path_of(&started));
    // 75 of the fixture's 120 frames (1 s GOPs at 30 fps): the keyframes
    // at frames 30 and 60 have been written and flushed.
    let deadline = Instant::now() + T;
    while video_frames(&server, "live/cam") < 75 {
        assert!(
            Instant::now() < deadline,
            "the publish never reached 75 frames"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_exit(T);
    let _ = publisher.kill();
    let _ = publisher.wait();

    let file_str = file.to_str().unwrap();
    let src_video = framemd5_of(&src, "0:v");
    let got_video = framemd5_of(file_str, "0:v");
    assert!(
        got_video.len() >= 60 && got_video.len() < src_video.len(),
        "{} of {} video frames on disk after the kill",
        got_video.len(),
        src_video.len()
    );
    assert_eq!(
        got_video[..],
        src_video[..got_video.len()],
        "a prefix of the source"
    );
    let src_audio = framemd5_of(&src, "0:a");
    let got_audio = framemd5_of(file_str, "0:a");
    assert!(!got_audio.is_empty());
    assert_eq!(
        got_audio[..],
        src_audio[..got_audio.len()],
        "a prefix of the source"
    );
    assert_eq!(decode_errors(file_str), "", "what was flushed decodes");
}
