//! Recording (`[[record]]`, issue 21's first brick): ffmpeg publishes, the
//! FLV recording decodes cleanly and holds every frame of the source, and
//! the `recording.*` events arrive; a record directory that cannot be
//! written fails the recording (log line and event), never the stream.
//! The recordings API: start and stop on a live stream, list, get and
//! delete (and its 404s and 409s), and retention by size with its
//! `recording.deleted` event.

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
    start_with(cfg_dir, record_dir, hook, "", true)
}

/// castgate recording under `record_dir` with `recorder` lines added to
/// `[recorder]`, and a `[[record]]` rule for `live/*` if `rule`.
fn start_with(
    cfg_dir: &Path,
    record_dir: &Path,
    hook: &Receiver,
    recorder: &str,
    rule: bool,
) -> Castgate {
    let cfg = cfg_dir.join("castgate.toml");
    let rule_text = if rule {
        "[[record]]\nstream = \"live/*\"\nformat = \"flv\"\n"
    } else {
        ""
    };
    std::fs::write(
        &cfg,
        format!(
            "[webhooks]\nurls = [\"{}\"]\n\
             [recorder]\ndir = \"{}\"\n{recorder}\n{rule_text}",
            hook.url("/events"),
            record_dir.display()
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("CASTGATE__PACKAGE__GRACE_SECS", "1")],
    );
    if rule {
        server.wait_log_all(&["recording configured", "pattern=\"live/*\""], T);
    }
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

/// Asserts that live/cam's recording failed for `reason` (log line and
/// `recording.failed`) and that the live stream went on: its playlist
/// gains segments after the failure.
fn assert_recording_failed_stream_goes_on(server: &Castgate, hook: &Receiver, reason: &str) {
    let failed = server.wait_log_all(&["recording failed", "stream=\"live/cam\""], T);
    assert!(failed.contains(reason), "{failed}");
    let ev = event(hook, "recording.failed", "live/cam");
    assert!(
        ev["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{ev}"
    );
    let before = segments(server, "live/cam");
    let deadline = Instant::now() + T;
    while segments(server, "live/cam") < before + 2 {
        assert!(
            Instant::now() < deadline,
            "the HLS playlist stopped at {before} segments after the recording failed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills castgate with SIGKILL and waits for it to be gone.
fn sigkill(server: &mut Castgate) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_exit(T);
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
    assert_recording_failed_stream_goes_on(&server, &hook, "cannot create the directory");
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
    sigkill(&mut server);
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

/// An API call: (status, JSON body or null).
fn api(server: &Castgate, method: &str, path: &str, body: &str) -> (u16, Value) {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    let r = http_exchange(
        server.http,
        method,
        &format!("/api/v1{path}"),
        headers,
        body.as_bytes(),
    );
    let json = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text()))
    };
    (r.status, json)
}

/// Polls `f` until it gives something (bounded by `T`).
fn until<R>(what: &str, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: not within {T:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The API records a live stream on request: the file grows while it
/// runs, a second start is refused, the recording shows in the stream's
/// JSON, `DELETE` stops it; the list gives it complete, with the file's
/// size and a duration within a second of the video in the file; it is
/// deleted (and refused while written) with a `recording.deleted` event.
/// Streams that are not live or not recorded get 404.
#[test]
fn the_api_starts_stops_lists_and_deletes_a_recording() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let server = start_with(dir.path(), &media, &hook, "", false);
    let url = "/streams/live/cam/recording";
    let (status, body) = api(&server, "POST", url, "");
    assert_eq!(status, 404, "not live yet: {body}");
    let (status, body) = api(&server, "DELETE", url, "");
    assert_eq!(status, 404, "{body}");

    let src = fixture(4);
    // 16 s of media: long enough to start, watch it grow and stop.
    let mut publisher = publish(&src, &server.url("live/cam"), &["-stream_loop", "3"]);
    server.wait_log_all(&["publish started", "stream=\"live/cam\""], T);
    until("a first video keyframe in the GOP cache", || {
        (crate::faults::video_frames(&server, "live/cam") >= 5).then_some(())
    });
    let (status, started) = api(&server, "POST", url, r#"{"format":"flv"}"#);
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["started_by"], "api", "{started}");
    let (status, body) = api(&server, "POST", url, "");
    assert_eq!(status, 409, "one API recording per stream: {body}");
    assert_eq!(
        server.count_log(&["recording started by the API", "stream=\"live/cam\""]),
        1
    );

    let rec = until("the stream shows its recording's file", || {
        let (status, s) = api(&server, "GET", "/streams/live/cam", "");
        assert_eq!(status, 200, "{s}");
        s["recording"]["path"]
            .is_string()
            .then(|| s["recording"].clone())
    });
    let path = rec["path"].as_str().unwrap().to_string();
    assert!(
        path.starts_with("live/cam/20") && path.ends_with(".flv"),
        "the default template: {path}"
    );
    let id = rec["id"].as_str().unwrap().to_string();
    let file = media.join(&path);
    // It grows: a keyframe a second is flushed to the file.
    let first = until("the file has media", || {
        let n = file_len(&file);
        (n > 20_000).then_some(n)
    });
    until("the file grows", || {
        (file_len(&file) > first + 20_000).then_some(())
    });
    // Five more seconds of video (at 30 fps) before the stop, so a wrong
    // duration cannot hide in the tolerance.
    let frames = crate::faults::video_frames(&server, "live/cam");
    until("5 s more of the publish", || {
        (crate::faults::video_frames(&server, "live/cam") >= frames + 150).then_some(())
    });
    let (status, body) = api(&server, "DELETE", &format!("/recordings/{id}"), "");
    assert_eq!(status, 409, "being written: {body}");
    let (status, listed) = api(&server, "GET", "/recordings", "");
    assert_eq!(status, 200);
    assert_eq!(listed["recordings"][0]["state"], "recording", "{listed}");

    let (status, stopped) = api(&server, "DELETE", url, "");
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["stopped"][0]["path"], path.as_str(), "{stopped}");
    let done = server.wait_log_all(&["recording completed", "stream=\"live/cam\""], T);
    assert_eq!(path_of(&done), path);
    let (_, s) = api(&server, "GET", "/streams/live/cam", "");
    assert_eq!(s["recording"], Value::Null, "stopped: {s}");
    let (status, body) = api(&server, "DELETE", url, "");
    assert_eq!(status, 404, "nothing runs now: {body}");
    // The publish goes on after the stop.
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the publisher goes on"
    );

    let (status, listed) = api(&server, "GET", "/recordings", "");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["truncated"], false);
    let all = listed["recordings"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{listed}");
    let r = &all[0];
    assert_eq!(r["id"], id.as_str(), "{r}");
    assert_eq!(r["state"], "complete", "{r}");
    assert_eq!(r["stream"], "live/cam", "{r}");
    assert_eq!(r["files"], serde_json::json!([path]), "{r}");
    assert_eq!(r["size"].as_u64(), Some(file_len(&file)), "{r}");
    let vod = path.trim_end_matches(".flv");
    assert_eq!(r["vod_path"], vod, "{r}");
    assert_eq!(r["urls"]["hls"], format!("/vod/{vod}/index.m3u8"), "{r}");
    assert_eq!(r["urls"]["dash"], format!("/vod/{vod}/manifest.mpd"), "{r}");
    assert_eq!(r["urls"]["rtmp"], format!("vod/{vod}"), "{r}");
    assert!(r["start"]
        .as_str()
        .is_some_and(|s| s.starts_with("20") && s.ends_with('Z')));
    // The media in the file, by ffmpeg: its video frames at 30 fps.
    let file_str = file.to_str().unwrap();
    assert_eq!(decode_errors(file_str), "", "the recording decodes cleanly");
    let media_secs = framemd5_of(file_str, "0:v").len() as f64 / 30.0;
    let duration = r["duration"].as_f64().unwrap();
    assert!(media_secs > 4.5, "{media_secs} s of video recorded");
    assert!(
        (duration - media_secs).abs() <= 1.0,
        "listed {duration} s for {media_secs} s of video"
    );
    let (status, one) = api(&server, "GET", &format!("/recordings/{id}"), "");
    assert_eq!((status, &one), (200, r));

    let (status, body) = api(&server, "DELETE", &format!("/recordings/{id}"), "");
    assert_eq!(status, 204, "{body}");
    assert!(!file.exists(), "the file is gone");
    let ev = event(&hook, "recording.deleted", "live/cam");
    assert_eq!(ev["data"]["path"], path.as_str(), "{ev}");
    assert_eq!(ev["data"]["reason"], "api", "{ev}");
    server.wait_log_all(&["recording deleted", "reason=\"api\""], T);
    for method in ["GET", "DELETE"] {
        let (status, body) = api(&server, method, &format!("/recordings/{id}"), "");
        assert_eq!(status, 404, "{method}: {body}");
    }
    let (_, listed) = api(&server, "GET", "/recordings", "");
    assert_eq!(listed["recordings"], serde_json::json!([]), "{listed}");

    // Started again, it ends with the publish, completed.
    let (status, body) = api(&server, "POST", url, "");
    assert_eq!(status, 201, "{body}");
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    assert!(server.wait_count(&["recording completed", "stream=\"live/cam\""], 2, T));
    let listed = until("the second recording, complete", || {
        let (_, l) = api(&server, "GET", "/recordings", "");
        (l["recordings"][0]["state"] == "complete").then_some(l)
    });
    assert_eq!(
        listed["recordings"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let (status, body) = api(&server, "POST", url, "");
    assert_eq!(status, 404, "not live any more: {body}");
    server.assert_no_panic();
}

/// `retention_bytes` between one and two recordings' size: after the
/// second publish is recorded, the first (the oldest, finished) is deleted
/// with a log line and a `recording.deleted` event; the second stays.
#[test]
fn retention_bytes_deletes_the_oldest_finished_recording() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let (a, b) = (fixture(5), fixture(6));
    // A recording is about its source's size (the same tags).
    let limit = file_len(&a).max(file_len(&b)) * 3 / 2;
    let server = start_with(
        dir.path(),
        &media,
        &hook,
        &format!("retention_bytes = {limit}\n"),
        true,
    );
    let mut publisher = publish(&a, &server.url("live/a"), &[]);
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    let first = path_of(&server.wait_log_all(&["recording completed", "stream=\"live/a\""], T));
    assert!(file_len(&media.join(&first)) < limit);
    let mut publisher = publish(&b, &server.url("live/b"), &[]);
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    let second = path_of(&server.wait_log_all(&["recording completed", "stream=\"live/b\""], T));

    let ev = event(&hook, "recording.deleted", "live/a");
    assert_eq!(ev["data"]["path"], first.as_str(), "{ev}");
    assert_eq!(ev["data"]["reason"], "retention_bytes", "{ev}");
    let line = server.wait_log_all(&["recording deleted", "stream=\"live/a\""], T);
    assert!(line.contains("retention_bytes"), "{line}");
    assert!(!media.join(&first).exists(), "the oldest is gone");
    assert!(media.join(&second).exists(), "the newest stays");
    let (_, listed) = api(&server, "GET", "/recordings", "");
    let paths: Vec<&str> = listed["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["files"][0].as_str().unwrap())
        .collect();
    assert_eq!(paths, [second.as_str()], "{listed}");
    assert_eq!(
        server.count_log(&["recording deleted"]),
        1,
        "only the oldest"
    );
    let deleted: Vec<Value> = hook
        .requests()
        .iter()
        .map(Received::json)
        .filter(|v| v["type"] == "recording.deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    server.assert_no_panic();
}

/// castgate recording `live/*` in `format` under `record_dir`, which is
/// also its `[vod] dir`.
fn start_as(cfg_dir: &Path, record_dir: &Path, hook: &Receiver, format: &str) -> Castgate {
    let cfg = cfg_dir.join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[webhooks]\nurls = [\"{}\"]\n\
             [recorder]\ndir = \"{dir}\"\n\
             [vod]\ndir = \"{dir}\"\n\
             [[record]]\nstream = \"live/*\"\nformat = \"{format}\"\n",
            hook.url("/events"),
            dir = record_dir.display()
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

/// A CMAF recording (the default format): a directory whose playlists and
/// MPD play every frame of the publish, locally and over `/vod/…`, listed
/// by the API with its duration.
#[test]
fn a_cmaf_recording_plays_every_frame_over_hls_and_dash() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let server = start_as(dir.path(), &media, &hook, "cmaf");
    let src = fixture(6);
    let mut publisher = publish(&src, &server.url("live/cam"), &[]);
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    let done = server.wait_log_all(&["recording completed", "stream=\"live/cam\""], T);
    let path = path_of(&done);
    let vod_path = path
        .strip_suffix("/index.m3u8")
        .unwrap_or_else(|| panic!("a CMAF recording is a directory: {path}"));
    let index = media.join(&path);
    for f in ["video.m3u8", "audio.m3u8", "manifest.mpd"] {
        assert!(index.with_file_name(f).is_file(), "{f} beside {path}");
    }
    let playlist = std::fs::read_to_string(index.with_file_name("video.m3u8")).unwrap();
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD") && playlist.ends_with("#EXT-X-ENDLIST\n"),
        "{playlist}"
    );
    assert_holds_every_frame(&src, index.to_str().unwrap(), "the CMAF recording on disk");
    for manifest in ["index.m3u8", "manifest.mpd"] {
        let url = server.http_url(&format!("/vod/{vod_path}/{manifest}"));
        assert_holds_every_frame(&src, &url, &format!("the CMAF recording's {manifest}"));
    }
    let ev = event(&hook, "recording.completed", "live/cam");
    assert_eq!(ev["data"]["format"], "cmaf", "{ev}");
    assert_eq!(ev["data"]["path"], path.as_str(), "{ev}");
    let r = http_get(server.http, "/api/v1/recordings");
    assert_eq!(r.status, 200);
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    let rec = list["recordings"]
        .as_array()
        .or(list.as_array())
        .and_then(|l| l.iter().find(|r| r["vod_path"] == vod_path))
        .cloned()
        .unwrap_or_else(|| panic!("{vod_path} not listed: {list}"));
    assert_eq!(rec["format"], "cmaf", "{rec}");
    assert_eq!(rec["state"], "complete", "{rec}");
    let secs = rec["duration"].as_f64().unwrap();
    assert!((3.5..=4.2).contains(&secs), "a 4 s fixture: {rec}");
    server.assert_no_panic();
}

/// A CMAF recording killed with SIGKILL plays back up to its last closed
/// segment: its playlists were rewritten after every segment.
#[test]
fn a_cmaf_recording_survives_sigkill_up_to_its_last_segment() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let mut server = start_as(dir.path(), &media, &hook, "cmaf");
    let src = fixture(7);
    let mut publisher = publish(&src, &server.url("live/cam"), &["-stream_loop", "4"]);
    let started = server.wait_log_all(&["recording started", "stream=\"live/cam\""], T);
    let index = media.join(path_of(&started));
    let playlist = index.with_file_name("video.m3u8");
    // Two 4 s segments closed and listed.
    let deadline = Instant::now() + T;
    while std::fs::read_to_string(&playlist).map_or(0, |p| p.matches("#EXTINF").count()) < 2 {
        assert!(Instant::now() < deadline, "two segments never listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigkill(&mut server);
    let _ = publisher.kill();
    let _ = publisher.wait();

    let listed = std::fs::read_to_string(&playlist).unwrap();
    let index_str = index.to_str().unwrap();
    assert_eq!(decode_errors(index_str), "", "what was listed decodes");
    let src_video = framemd5_of(&src, "0:v");
    let got_video = framemd5_of(index_str, "0:v");
    let secs: f64 = listed
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert!(
        (got_video.len() as f64 - secs * 30.0).abs() <= 1.0,
        "every frame of the {secs} s listed: {}",
        got_video.len()
    );
    assert!(got_video.len() >= 240, "{} frames", got_video.len());
    // The first loop of the fixture, frame for frame.
    for (g, e) in got_video.iter().zip(&src_video) {
        assert_eq!((g.size, &g.md5, g.pts), (e.size, &e.md5, e.pts));
    }
}

/// A small tmpfs, unmounted when dropped. Needs root (CAP_SYS_ADMIN) and
/// `mount`; missing either fails the test with the reason.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn new(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("cannot run `mount`: the full-disk test needs it");
        assert!(
            out.status.success(),
            "mount -t tmpfs: {} (the full-disk test needs root)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A full disk (a 512 KiB tmpfs) stops the recording with a log line and
/// `recording.failed`; the live stream goes on (its HLS keeps growing,
/// the publisher is never refused).
#[test]
fn a_full_disk_stops_the_recording_not_the_stream() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let _disk = Tmpfs::new(&media, "512k");
    let server = start_as(dir.path(), &media, &hook, "cmaf");
    let src = fixture(8);
    // 16 s of a 0.5 Mbit/s stream: about 1 MB, twice the disk.
    let mut publisher = publish(&src, &server.url("live/cam"), &["-stream_loop", "3"]);
    assert_recording_failed_stream_goes_on(&server, &hook, "No space left on device");
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(
        status.success(),
        "the publisher went on to its end: {status}"
    );
    // What was written before the disk filled still plays.
    let index = media.join(path_of(
        &server.wait_log_all(&["recording started", "stream=\"live/cam\""], T),
    ));
    // (One 4 s segment, about 250 kB, fits.)
    assert_eq!(
        decode_errors(index.to_str().unwrap()),
        "",
        "what was written decodes"
    );
    assert!(!framemd5_of(index.to_str().unwrap(), "0:v").is_empty());
    server.assert_no_panic();
}

/// A 60 s publish recorded as CMAF and as FLV at once (two rules): both
/// decode whole and hold every frame of what ffmpeg published, and the
/// CMAF recording plays over `/vod/…` in HLS and DASH.
#[test]
fn a_minute_recorded_as_cmaf_and_flv_holds_every_frame() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let media = dir.path().join("media");
    let cfg = dir.path().join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[webhooks]\nurls = [\"{}\"]\n\
             [recorder]\ndir = \"{m}\"\n[vod]\ndir = \"{m}\"\n\
             [[record]]\nstream = \"live/*\"\nformat = \"cmaf\"\npath = \"cmaf/{{key}}\"\n\
             [[record]]\nstream = \"live/*\"\nformat = \"flv\"\npath = \"flv/{{key}}\"\n",
            hook.url("/events"),
            m = media.display()
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    // A minute encoded as the fixtures are (H.264 High with B-frames, 1 s
    // GOP, AAC), published as fast as ffmpeg reads it (a recording runs on
    // the stream's time, not the clock).
    let src = dir.path().join("minute.flv");
    let made = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000"])
        .args([
            "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
        ])
        .args(["-g", "30", "-keyint_min", "30", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&src)
        .status()
        .expect("cannot run ffmpeg");
    assert!(made.success(), "ffmpeg could not make the minute");
    let mut publisher = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&src)
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.url("live/min"))
        .spawn()
        .unwrap();
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    assert!(server.wait_count(&["recording completed", "stream=\"live/min\""], 2, T));
    let cmaf = media.join("cmaf/min/index.m3u8");
    let flv = media.join("flv/min.flv");
    assert_holds_every_frame(&src, cmaf.to_str().unwrap(), "the CMAF recording");
    assert_holds_every_frame(&src, flv.to_str().unwrap(), "the FLV recording");
    let secs: f64 = std::fs::read_to_string(cmaf.with_file_name("video.m3u8"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert!((59.5..=60.5).contains(&secs), "{secs} s listed");
    assert_holds_every_frame(
        &src,
        &server.http_url("/vod/cmaf/min/manifest.mpd"),
        "the CMAF recording over DASH",
    );
    assert_holds_every_frame(
        &src,
        &server.http_url("/vod/flv/min/index.m3u8"),
        "the FLV recording over HLS",
    );
    server.assert_no_panic();
}
