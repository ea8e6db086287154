//! Glass-to-glass latency in real browsers: hls.js, dash.js and Shaka Player in headless
//! Chromium, in their low-latency modes, play a live x264 `-tune zerolatency` publish. The test
//! checks that each played and measured its latency, and prints the numbers; it sets no latency
//! threshold (timings are measured by `bench/latency`, not asserted in CI).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::browser::{self, Mode};
use crate::harness::*;

const T: Duration = Duration::from_secs(90);

/// Seconds each player is sampled for.
const PLAY_SECS: u32 = 20;

/// A live encoder as a low-latency publisher runs one: `ffmpeg -re` from lavfi (testsrc2 at
/// 30 fps and a sine), libx264 `-tune zerolatency` (no B-frames, no lookahead) with a 1 s GOP,
/// AAC, straight to RTMP. `bench/latency` publishes with the same settings.
pub(crate) fn zerolatency_publisher(url: &str) -> Child {
    require("ffmpeg");
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error"])
        .args(["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:beep_factor=4:sample_rate=48000",
        ])
        .args(["-map", "0:v", "-map", "1:a"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-profile:v",
            "high",
        ])
        .args(["-g", "30", "-keyint_min", "30", "-sc_threshold", "0"])
        .args(["-b:v", "800k", "-maxrate", "800k", "-bufsize", "800k"])
        .args(["-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "2"])
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg")
}

/// Waits until the video playlist lists `n` whole segments, so that every player finds a live
/// edge with some history behind it.
fn wait_segments(server: &Castgate, n: usize) {
    wait_http_ok(server.http, "/live/ll/index.m3u8", T);
    let deadline = Instant::now() + T;
    loop {
        let text = http_get(server.http, "/live/ll/video.m3u8").text();
        let segments = text.lines().filter(|l| l.starts_with("#EXTINF")).count();
        if segments >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the playlist never reached {n} segments:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// hls.js (HLS), dash.js (DASH) and Shaka Player (DASH) in low-latency mode play a live
/// zerolatency publish from another origin, each for 20 s: playback starts and advances with
/// no fatal error, no request leaves the machine, and every player reports a latency (program
/// date of the playhead to wall clock) once a second that is a positive number of seconds.
/// Median, p95 and the longest stall are printed.
#[test]
fn browsers_report_latency_of_a_live_publish_in_low_latency_mode() {
    browser::ensure_installed();
    let server = Castgate::start(&[]);
    let mut publisher = zerolatency_publisher(&server.url("live/ll"));
    wait_segments(&server, 3);
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut lines = Vec::new();
    for (player, path) in [
        ("hls", "live/ll/index.m3u8"),
        ("dash", "live/ll/manifest.mpd"),
        ("shaka", "live/ll/manifest.mpd"),
    ] {
        if let Ok(Some(status)) = publisher.try_wait() {
            panic!(
                "the publisher ended ({status}) before {player} played: {}",
                stderr_of(&mut publisher)
            );
        }
        let url = server.http_url(path);
        let shot = shots.join(format!("castgate-ll-{player}.png"));
        let report = browser::play_in(player, Mode::LowLatency, &url, PLAY_SECS, &shot);
        assert!(report.ok, "{player} did not play {url}: {}", report.raw);
        assert!(report.errors.is_empty(), "{player}: {:?}", report.errors);
        assert!(
            report.low_latency,
            "{player} not in low-latency mode: {}",
            report.raw
        );
        assert!(
            report.blocked.is_empty(),
            "{player} tried to reach {:?}",
            report.blocked
        );
        // One sample a second; the first may come before the player knows its program date.
        assert!(
            report.latencies_s.len() as u32 >= PLAY_SECS / 2,
            "{player} reported latency in only {} of {PLAY_SECS} samples: {}",
            report.latencies_s.len(),
            report.raw
        );
        assert!(
            report.latencies_s.iter().all(|l| l.is_finite() && *l > 0.0),
            "{player}: a playhead at or ahead of the wall clock means a wrong program date: {:?}",
            report.latencies_s
        );
        // Not a latency target: a playhead minutes behind a stream that started seconds ago
        // can only come from a misread program date (Shaka reading an ISO date as NTP did).
        assert!(
            report.latencies_s.iter().all(|l| *l < 120.0),
            "{player}: latency beyond the stream's age means a wrong program date: {:?}",
            report.latencies_s
        );
        assert!(
            report.latency_median_s.is_finite() && report.latency_p95_s.is_finite(),
            "{player}: {}",
            report.raw
        );
        lines.push(format!(
            "{player:5} latency median {:.3} s, p95 {:.3} s, longest stall {:.3} s, startup {} ms, \
             {} frames, {} dropped ({} samples)",
            report.latency_median_s,
            report.latency_p95_s,
            report.max_stall_s,
            report.startup_ms,
            report.frames,
            report.dropped,
            report.latencies_s.len()
        ));
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
    // Measured, not asserted: printed for the log (`--nocapture` shows it on success).
    eprintln!(
        "low-latency glass-to-glass, {PLAY_SECS} s each:\n{}",
        lines.join("\n")
    );
}
