//! DVR (issue 21): with `package.dvr_secs`, the live playlist and MPD reach
//! back that far while memory holds only the window; the segments past it
//! are served from disk. ffmpeg publishes ten minutes of media (at 20
//! times real time: the packager runs on media time), castgate's memory stays flat,
//! the oldest listed segment is still served, byte for byte what the
//! playlist promised, and the MPD's timeShiftBufferDepth says ten minutes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(240);

/// The span the video playlist lists, in seconds, and its first segment's
/// URL (0.0 and None while there is none).
fn listed(server: &Castgate, key: &str) -> (f64, Option<String>, String) {
    let r = http_get(server.http, &format!("/{key}/video.m3u8"));
    if r.status != 200 {
        return (0.0, None, String::new());
    }
    let text = r.text();
    let Ok(p) = m3u8_rs::parse_media_playlist_res(text.as_bytes()) else {
        return (0.0, None, text);
    };
    let span = p.segments.iter().map(|s| f64::from(s.duration)).sum();
    (span, p.segments.first().map(|s| s.uri.clone()), text)
}

#[test]
fn ten_minutes_of_dvr_keep_memory_flat_and_serve_the_oldest_segment() {
    require("ffmpeg");
    let dir = tempdir();
    let dvr_dir = dir.path().join("dvr");
    let dvr_str = dvr_dir.to_str().unwrap().to_string();
    // What a castgate killed mid-stream left: deleted at start-up.
    let stale = dvr_dir.join("live/old/1700000000/video/1700000001.m4s");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"stale").unwrap();
    let server = Castgate::start(&[
        ("CASTGATE__PACKAGE__DVR_SECS", "600"),
        ("CASTGATE__PACKAGE__DVR_DIR", &dvr_str),
        ("CASTGATE__PACKAGE__DVR_EVENT", "true"),
        ("CASTGATE__PACKAGE__WINDOW", "6"),
        ("CASTGATE__PACKAGE__EXTRA_SEGMENTS", "3"),
        ("CASTGATE__PACKAGE__LOW_LATENCY", "false"),
        // Live (not ended) for the whole test after the publisher leaves.
        ("CASTGATE__PACKAGE__GRACE_SECS", "600"),
    ]);
    server.wait_log_all(
        &["DVR segments a previous run left were deleted", "deleted=1"],
        T,
    );
    assert!(!stale.exists() && !dvr_dir.join("live/old").exists());
    // 164 loops of the 4 s fixture: 656 s of media, sent at 20 times real
    // time.
    let src = fixture(5);
    let mut publisher = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-readrate", "20"])
        .args(["-stream_loop", "163", "-i"])
        .arg(&src)
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.url("live/dvr"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");

    // Memory once two minutes are listed, then at the end.
    let start = Instant::now();
    let early_rss = loop {
        let (span, _, _) = listed(&server, "live/dvr");
        if span >= 120.0 {
            assert!(span < 200.0, "sampled too late: {span} s listed");
            break server.rss_kib();
        }
        assert!(start.elapsed() < T, "two minutes of DVR never listed");
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    // Everything ffmpeg sent is packaged (the DVR no longer slides).
    server.wait_log_all(&["publish ended", "live/dvr"], T);
    let (span, first, playlist) = listed(&server, "live/dvr");
    let late_rss = server.rss_kib();
    assert!(
        (590.0..=602.0).contains(&span),
        "ten minutes listed, not {span} s:\n{playlist}"
    );
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT"),
        "{playlist}"
    );
    // About 8 more minutes of a 0.5 Mbit/s stream went by (30 MB): none of
    // it is held in memory.
    let grown_mib = late_rss.saturating_sub(early_rss) as f64 / 1024.0;
    assert!(
        grown_mib < 10.0,
        "RSS grew {grown_mib:.1} MiB from 2 to 10 minutes of DVR ({early_rss} -> {late_rss} KiB)"
    );

    // The oldest listed segment is served, from disk.
    let first = first.expect("a listed segment");
    let seg = http_get(server.http, &format!("/live/dvr/{first}"));
    assert_eq!(seg.status, 200, "{first}");
    assert!(seg.body.len() > 1000, "{first}: {} bytes", seg.body.len());
    let number = first
        .trim_start_matches("video/seg-")
        .trim_end_matches(".m4s")
        .to_string();
    let on_disk = files_under(&dvr_dir)
        .into_iter()
        .find(|p| p.ends_with(format!("video/{number}.m4s")))
        .unwrap_or_else(|| panic!("segment {number} is not under {}", dvr_dir.display()));
    assert_eq!(
        std::fs::read(on_disk).unwrap(),
        seg.body,
        "served from disk"
    );
    // Segments past the depth are deleted: the archive holds about ten
    // minutes, not eleven.
    let stored = files_under(&dvr_dir)
        .iter()
        .filter(|p| p.to_string_lossy().contains("/video/"))
        .count();
    assert!(
        (280..=305).contains(&stored),
        "{stored} video segments on disk for 600 s of 2 s segments"
    );
    // The oldest segment decodes with the init segment the playlist
    // names for it.
    let init = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("an EXT-X-MAP");
    let init = http_get(server.http, &format!("/live/dvr/{init}"));
    assert_eq!(init.status, 200);
    let oldest = dir.path().join("oldest.mp4");
    std::fs::write(&oldest, [init.body, seg.body].concat()).unwrap();
    assert_eq!(decode_errors(&oldest), "", "the oldest segment decodes");
    let frames = framemd5_of(&oldest, "0:v").len();
    assert!(
        (55..=65).contains(&frames),
        "{frames} frames in a 2 s segment"
    );

    let mpd = http_get(server.http, "/live/dvr/manifest.mpd").text();
    assert!(mpd.contains("type=\"dynamic\""), "{mpd}");
    let depth: f64 = mpd
        .split("timeShiftBufferDepth=\"PT")
        .nth(1)
        .and_then(|r| r.split_once("S\""))
        .and_then(|(secs, _)| secs.parse().ok())
        .unwrap_or_else(|| panic!("no timeShiftBufferDepth in seconds: {mpd}"));
    assert!((590.0..=602.0).contains(&depth), "{depth} s: {mpd}");
    server.assert_no_panic();
}
