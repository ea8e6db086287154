//! Video on demand in the browser players (issue 21): hls.js and dash.js
//! in headless Chromium play a title castgate packages on the fly (an MP4
//! made by ffmpeg with `+faststart` and a 1 s GOP, and a recording castgate
//! made of a live publish), seek as a seek bar does, and must land within
//! one GOP of the target (at most 1 s before it, at most 0.5 s after) and
//! play on from there. The players buffer only a few seconds ahead, so the
//! target is not buffered when the seek is asked: the player has to find
//! the segment that holds it from the playlist or MPD and fetch it, which
//! is what a wrong segment duration or timestamp would break.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::browser::{self, BrowserReport};
use crate::harness::*;
use crate::vod_http::start;

const T: Duration = Duration::from_secs(90);
/// Seconds of playback sampled after the seek.
const SAMPLE_SECS: u32 = 4;
/// Where the page seeks: in the fourth 4 s segment, half-way through a
/// 1 s GOP.
const SEEK_S: f64 = 12.5;
/// How far ahead the players buffer (less than the distance to the seek).
const MAX_BUFFER_S: f64 = 4.0;

/// `target/e2e-artifacts/NAME`, kept after the run.
fn artifact(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("e2e-artifacts").join(name)
}

/// A 20 s MP4 (640x360 at 30 fps, H.264 with a keyframe every second,
/// AAC), `moov` first.
fn twenty_seconds_mp4(out: &Path) {
    require("ffmpeg");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=800:beep_factor=4:sample_rate=48000",
        ])
        .args(["-map", "0:v", "-map", "1:a", "-t", "20"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"])
        .args(["-g", "30", "-keyint_min", "30", "-sc_threshold", "0"])
        .args(["-b:v", "450k", "-c:a", "aac", "-b:a", "64k"])
        .args(["-movflags", "+faststart"])
        .arg(out)
        .status()
        .expect("cannot run ffmpeg");
    assert!(status.success(), "ffmpeg could not write {}", out.display());
}

/// Plays `url` in `player`, seeks to [`SEEK_S`] and checks where it landed
/// and that playback went on from there; `duration` is the title's length.
fn play_and_seek(player: &str, url: &str, duration: f64, shot: &str) -> BrowserReport {
    let r = browser::play_vod(
        player,
        url,
        SAMPLE_SECS,
        SEEK_S,
        MAX_BUFFER_S,
        &artifact(shot),
    );
    println!("{player} {url}: {}", r.raw);
    let raw = &r.raw;
    assert!(r.ok, "{player} did not play {url} through the seek: {raw}");
    assert!(r.errors.is_empty() && r.blocked.is_empty(), "{raw}");
    assert!(
        (r.duration_s - duration).abs() <= 0.5,
        "{player}: duration {} for a {duration} s title: {raw}",
        r.duration_s
    );
    assert_eq!(r.seek_target_s, SEEK_S, "{raw}");
    // The target was not buffered: the player fetched it.
    assert!(
        r.seek_buffered_before
            .iter()
            .all(|&(start, end)| !(start..end).contains(&SEEK_S)),
        "{player}: the target was already buffered, so the seek fetched nothing: {raw}"
    );
    // Landed within one GOP of the target: the element's position and the
    // first frame shown after the seek.
    for (what, at) in [
        ("seeked at", r.seek_landed_s),
        ("first frame", r.seek_frame_s),
    ] {
        assert!(
            (SEEK_S - 1.0..=SEEK_S + 0.5).contains(&at),
            "{player}: {what} {at} s for a seek to {SEEK_S} s: {raw}"
        );
    }
    assert!(r.seeked_ms < 10_000.0, "{player}: slow seek: {raw}");
    // And went on from there.
    assert!(
        r.advanced_s >= f64::from(SAMPLE_SECS) / 2.0,
        "{player}: advanced {} s after the seek: {raw}",
        r.advanced_s
    );
    assert!(
        r.current_time_s >= r.seek_landed_s + f64::from(SAMPLE_SECS) / 2.0
            && r.current_time_s <= duration + 0.1,
        "{player}: at {} s at the end: {raw}",
        r.current_time_s
    );
    assert!(r.frames > 0.0, "{raw}");
    r
}

#[test]
fn hls_js_and_dash_js_seek_in_an_mp4_on_demand() {
    browser::ensure_installed();
    let dir = tempdir();
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("films")).unwrap();
    twenty_seconds_mp4(&media.join("films/twenty.mp4"));
    let server = start(dir.path(), &media, "");
    for (player, resource) in [("hls", "index.m3u8"), ("dash", "manifest.mpd")] {
        let url = server.http_url(&format!("/vod/films/twenty.mp4/{resource}"));
        play_and_seek(player, &url, 20.0, &format!("vod-mp4-seek-{player}.png"));
    }
    server.assert_no_panic();
}

#[test]
fn hls_js_and_dash_js_seek_in_a_recording_castgate_made() {
    browser::ensure_installed();
    let dir = tempdir();
    let media = dir.path().join("media");
    let server = start(
        dir.path(),
        &media,
        "[[record]]\nstream = \"live/*\"\nformat = \"flv\"\n",
    );
    // 20 s of a live publish (the 4 s fixture, five times), recorded.
    let mut publisher = publish(
        &fixture(5),
        &server.url("live/show"),
        &["-stream_loop", "4"],
    );
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    server.wait_log_all(&["recording completed", "stream=\"live/show\""], T);
    let list = http_get(server.http, "/api/v1/recordings");
    assert_eq!(list.status, 200, "{}", list.text());
    let list: Value = serde_json::from_str(&list.text()).unwrap();
    let rec = &list["recordings"][0];
    assert_eq!(rec["state"], "complete", "{list}");
    let duration = rec["duration"].as_f64().expect("a duration");
    assert!((19.0..=20.5).contains(&duration), "{list}");
    for (player, key) in [("hls", "hls"), ("dash", "dash")] {
        let path = rec["urls"][key].as_str().expect("a VOD URL");
        let url = server.http_url(path);
        play_and_seek(
            player,
            &url,
            duration,
            &format!("vod-recording-seek-{player}.png"),
        );
    }
    server.assert_no_panic();
}
