//! Transcode profiles against the real ffmpeg: a 1080p publish through a
//! ladder (multivariant playlist and MPD, each rendition decoded by ffprobe
//! at its size, segment starts aligned across renditions, hls.js and dash.js
//! playing them), the
//! ffmpeg child killed and restarted, no child left behind, a publisher
//! returning within the grace period, a key published again after its
//! stream ended (never served as the ended session), passthrough for
//! unmapped streams, and check-config on bad profiles and mappings.
//!
//! Presets are ultrafast/superfast and sizes small so a loaded 2-core CI box
//! keeps up; every wait polls for its condition with a generous deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{http_get, require, tempdir, wait_http_ok, Castgate, OutputWithin, RUN_LIMIT};

const T: Duration = Duration::from_secs(90);

/// A CI-sized ladder: source + 720p + 480p + 360p, the fast presets.
const CI_LADDER: &str = r#"
description = "CI ladder"
[[rendition]]
name = "source"
codec = "copy"
[[rendition]]
name = "720p"
codec = "libx264"
height = 720
bitrate_kbps = 1200
preset = "ultrafast"
audio_codec = "aac"
audio_bitrate_kbps = 96
audio_channels = 2
audio_sample_rate = 48000
[[rendition]]
name = "480p"
codec = "libx264"
height = 480
bitrate_kbps = 600
preset = "superfast"
profile = "main"
[[rendition]]
name = "360p"
codec = "libx264"
height = 360
bitrate_kbps = 300
preset = "ultrafast"
profile = "baseline"
"#;

/// A small ladder for the supervision tests (a 640x360 source).
const CI_SMALL: &str = r#"
[[rendition]]
name = "source"
codec = "copy"
[[rendition]]
name = "240p"
codec = "libx264"
height = 240
bitrate_kbps = 300
preset = "ultrafast"
[[rendition]]
name = "180p"
codec = "libx264"
height = 180
bitrate_kbps = 150
preset = "ultrafast"
"#;

/// The small 640x360 fixture, published in a loop.
fn publish_small(server: &Castgate, key: &str) -> Child {
    crate::harness::publish(
        &crate::harness::fixture(5),
        &server.url(key),
        &["-stream_loop", "-1"],
    )
}

/// A 1080p30 source with a 1 s GOP and AAC, made once per run (ultrafast),
/// then published with `-c copy` (cheap) in a loop.
fn source_1080p() -> PathBuf {
    static FILE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        require("ffmpeg");
        let dir = tempdir();
        let path = dir.path().join("src1080.flv");
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=800:sample_rate=48000"])
            .args(["-map", "0:v", "-map", "1:a", "-t", "8"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30"])
            .args(["-keyint_min", "30", "-sc_threshold", "0", "-b:v", "2500k"])
            .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2", "-f", "flv"])
            .arg(&path)
            .status()
            .expect("cannot run ffmpeg");
        assert!(status.success(), "ffmpeg could not make the 1080p source");
        (dir, path)
    })
    .1
    .clone()
}

/// castgate with `[[transcode]]` entries (`(pattern, profile)`) and the CI
/// ladder in a profiles folder.
pub(crate) fn start(dir: &Path, mappings: &[(&str, &str)], env: &[(&str, &str)]) -> Castgate {
    start_with(dir, mappings, "", env)
}

/// [`start`] with more of the config file (`extra`, TOML) after the mappings.
fn start_with(
    dir: &Path,
    mappings: &[(&str, &str)],
    extra: &str,
    env: &[(&str, &str)],
) -> Castgate {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join("ci-ladder.toml"), CI_LADDER).unwrap();
    std::fs::write(profiles.join("ci-small.toml"), CI_SMALL).unwrap();
    let mut cfg = String::new();
    for (stream, profile) in mappings {
        cfg.push_str(&format!(
            "[[transcode]]\nstream = \"{stream}\"\nprofile = \"{profile}\"\n"
        ));
    }
    cfg.push_str(extra);
    let file = dir.join("castgate.toml");
    std::fs::write(&file, cfg).unwrap();
    let profiles_dir = profiles.display().to_string();
    let mut all: Vec<(&str, &str)> = vec![("CASTGATE__TRANSCODER__PROFILES_DIR", &profiles_dir)];
    all.extend_from_slice(env);
    Castgate::start_with_args(&["serve", "--config", file.to_str().unwrap()], &all)
}

fn publish_loop(server: &Castgate, key: &str) -> Child {
    crate::harness::publish(&source_1080p(), &server.url(key), &["-stream_loop", "-1"])
}

fn master(text: &str) -> m3u8_rs::MasterPlaylist {
    m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("not a multivariant playlist: {e:?}\n{text}"))
}

fn media(text: &str) -> m3u8_rs::MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("not a media playlist: {e:?}\n{text}"))
}

/// Polls the multivariant playlist until it lists `n` variants.
pub(crate) fn wait_variants(server: &Castgate, path: &str, n: usize) -> m3u8_rs::MasterPlaylist {
    wait_http_ok(server.http, path, T);
    let deadline = Instant::now() + T;
    loop {
        let m = master(&http_get(server.http, path).text());
        if m.variants.len() >= n {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never listed {n} variants: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `ffprobe` one value list from a URL or file, with a timeout.
fn ffprobe(input: &str, args: &[&str]) -> String {
    require("ffprobe");
    let out = Command::new("timeout")
        .args(["-s", "KILL", "60", "ffprobe", "-v", "error"])
        .args(args)
        .arg(input)
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .expect("cannot run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {input} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Presentation time (s) of the first video frame of every segment listed
/// in a video media playlist under `dir` (`live/k/720p`), by ffprobe on
/// init + segment.
fn segment_starts(server: &Castgate, dir: &str, tmp: &Path) -> Vec<f64> {
    let p = media(&http_get(server.http, &format!("/{dir}/video.m3u8")).text());
    let mut out = Vec::new();
    let mut init_uri = None;
    for (i, seg) in p.segments.iter().enumerate() {
        if let Some(m) = &seg.map {
            init_uri = Some(m.uri.clone());
        }
        let init = init_uri.as_ref().expect("no EXT-X-MAP before a segment");
        let mut bytes = http_get(server.http, &format!("/{dir}/{init}")).body;
        let body = http_get(server.http, &format!("/{dir}/{}", seg.uri));
        if body.status != 200 {
            // Slid out of the window meanwhile.
            continue;
        }
        bytes.extend_from_slice(&body.body);
        let file = tmp.join(format!("{}-{i}.mp4", dir.replace('/', "_")));
        std::fs::write(&file, &bytes).unwrap();
        let pts = ffprobe(
            file.to_str().unwrap(),
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "frame=pts_time",
                "-read_intervals",
                "%+#1",
                "-of",
                "csv=p=0",
            ],
        );
        let first = pts.lines().next().unwrap_or_default();
        out.push(
            first
                .trim_end_matches(',')
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("no frame time in {file:?}: {pts:?}")),
        );
    }
    out
}

/// ffmpeg processes whose parent is `pid`.
fn ffmpeg_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == pid && comm.ends_with("(ffmpeg") {
            out.push(child);
        }
    }
    out
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn api_json(server: &Castgate, path: &str) -> serde_json::Value {
    let r = http_get(server.http, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()))
}

#[test]
fn a_1080p_publish_through_a_ladder() {
    let dir = tempdir();
    let server = start(dir.path(), &[("live/*", "ci-ladder")], &[]);
    let mut publisher = publish_loop(&server, "live/abr");
    let m = wait_variants(&server, "/live/abr/index.m3u8", 4);
    let text = http_get(server.http, "/live/abr/index.m3u8").text();
    // Every rendition with its size, bandwidths, frame rate and codecs, and
    // one shared audio group.
    let mut sizes: Vec<(u64, u64, String)> = m
        .variants
        .iter()
        .map(|v| {
            let r = v
                .resolution
                .unwrap_or_else(|| panic!("no RESOLUTION: {text}"));
            (r.width, r.height, v.uri.clone())
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            (640, 360, "360p/video.m3u8".to_string()),
            (854, 480, "480p/video.m3u8".to_string()),
            (1280, 720, "720p/video.m3u8".to_string()),
            (1920, 1080, "video.m3u8".to_string()),
        ],
        "{text}"
    );
    for v in &m.variants {
        assert!(v.bandwidth > 0 && v.average_bandwidth.is_some(), "{text}");
        assert!(
            v.frame_rate.is_some_and(|f| (f - 30.0).abs() < 0.5),
            "{text}"
        );
        let codecs = v.codecs.as_deref().unwrap_or_default();
        assert!(
            codecs.starts_with("avc1.") && codecs.contains("mp4a.40.2"),
            "{text}"
        );
        assert_eq!(v.audio.as_deref(), Some("audio"), "{text}");
    }
    let audio: Vec<_> = m
        .alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .collect();
    assert_eq!(audio.len(), 1, "one shared audio group: {text}");
    // The bandwidths follow the ladder.
    let bw = |uri: &str| m.variants.iter().find(|v| v.uri == uri).unwrap().bandwidth;
    assert!(bw("360p/video.m3u8") < bw("480p/video.m3u8"), "{text}");
    assert!(bw("480p/video.m3u8") < bw("720p/video.m3u8"), "{text}");

    // Each rendition decodes at its size.
    for (w, h, uri) in &sizes {
        let url = server.http_url(&format!("live/abr/{uri}"));
        let got = ffprobe(
            &url,
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
            ],
        );
        // HLS input lists the stream once per program: take the first.
        let got = got.lines().find(|l| !l.is_empty()).unwrap_or_default();
        assert_eq!(got, format!("{w},{h}"), "{url}");
    }

    // Segment start times agree across renditions within one frame: every
    // rendition segment starts at a source segment start, once both cover
    // the same time.
    let tmp = tempdir();
    wait_until("4 segments in every rendition", T, || {
        ["", "/720p", "/480p", "/360p"].iter().all(|r| {
            let p = http_get(server.http, &format!("/live/abr{r}/video.m3u8"));
            p.status == 200 && media(&p.text()).segments.len() >= 4
        })
    });
    let source = segment_starts(&server, "live/abr", tmp.path());
    let frame = 1.0 / 30.0;
    for r in ["720p", "480p", "360p"] {
        let starts = segment_starts(&server, &format!("live/abr/{r}"), tmp.path());
        let (lo, hi) = (source[0], source[source.len() - 1]);
        let common: Vec<f64> = starts
            .iter()
            .copied()
            .filter(|t| *t >= lo - frame && *t <= hi + frame)
            .collect();
        assert!(common.len() >= 2, "{r}: {starts:?} vs source {source:?}");
        for t in common {
            let nearest = source
                .iter()
                .map(|s| (s - t).abs())
                .fold(f64::INFINITY, f64::min);
            assert!(
                nearest <= frame + 1e-3,
                "{r} segment at {t} s is {nearest} s from any source segment start: {starts:?} vs {source:?}"
            );
        }
    }

    // ffmpeg's progress in the stream's stats.
    wait_until("ffmpeg progress in the API", T, || {
        let j = api_json(&server, "/api/v1/streams/live/abr");
        let p = &j["transcode"]["progress"];
        p["fps"].as_f64().is_some_and(|f| f > 0.0) && p["frame"].as_u64().is_some_and(|f| f > 0)
    });
    let j = api_json(&server, "/api/v1/streams/live/abr");
    let t = &j["transcode"];
    assert_eq!(t["profile"], "ci-ladder", "{j}");
    assert_eq!(t["state"], "running", "{j}");
    assert!(t["pid"].as_u64().is_some(), "{j}");
    assert_eq!(
        t["renditions"],
        serde_json::json!(["live/abr/720p", "live/abr/480p", "live/abr/360p"]),
        "{j}"
    );
    assert!(t["progress"]["drop_frames"].as_u64().is_some(), "{j}");
    assert!(t["progress"].get("speed").is_some(), "{j}");

    // The MPD: one video AdaptationSet with a Representation per rendition,
    // segment-aligned, and the audio AdaptationSet.
    let mpd = http_get(server.http, "/live/abr/manifest.mpd").text();
    let sets: Vec<&str> = mpd.split("<AdaptationSet ").skip(1).collect();
    assert_eq!(sets.len(), 2, "{mpd}");
    let (video, audio) = if sets[0].contains("contentType=\"video\"") {
        (sets[0], sets[1])
    } else {
        (sets[1], sets[0])
    };
    assert!(video.contains("segmentAlignment=\"true\""), "{mpd}");
    for rep in [
        "\"video\"",
        "\"video-720p\"",
        "\"video-480p\"",
        "\"video-360p\"",
    ] {
        assert!(
            video.contains(&format!("<Representation id={rep}")),
            "{rep}: {mpd}"
        );
    }
    for h in [1080, 720, 480, 360] {
        assert!(video.contains(&format!("height=\"{h}\"")), "{h}: {mpd}");
    }
    assert!(
        video.contains("media=\"720p/video/seg-$Number$.m4s\""),
        "{mpd}"
    );
    assert!(audio.contains("contentType=\"audio\""), "{mpd}");
    assert!(audio.contains("<Representation"), "{mpd}");

    // hls.js and dash.js play them in Chromium.
    crate::browser::ensure_installed();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (player, path) in [
        ("hls", "live/abr/index.m3u8"),
        ("dash", "live/abr/manifest.mpd"),
    ] {
        let url = server.http_url(path);
        let shot = shots.join(format!("castgate-abr-{player}.png"));
        let report = crate::browser::play(player, &url, 12, &shot);
        assert!(report.ok, "{player} did not play {url}: {}", report.raw);
        assert!(report.errors.is_empty(), "{player}: {:?}", report.errors);
        assert!(
            report.advanced_s >= 5.0,
            "{player} advanced only {} s: {}",
            report.advanced_s,
            report.raw
        );
    }

    let _ = publisher.kill();
    let _ = publisher.wait();
    server.assert_no_panic();
}

#[test]
fn ffmpeg_is_restarted_resumed_and_never_left_behind() {
    let dir = tempdir();
    let server = start(
        dir.path(),
        &[("live/*", "ci-small")],
        &[("CASTGATE__PACKAGE__GRACE_SECS", "6")],
    );
    let castgate = server.pid();
    let mut publisher = publish_small(&server, "live/sup");
    wait_variants(&server, "/live/sup/index.m3u8", 3);
    let first = ffmpeg_children(castgate);
    assert_eq!(
        first.len(),
        1,
        "one ffmpeg per transcoded stream: {first:?}"
    );

    // Kill it: a new one starts and the renditions go on.
    let last_segment = |path: &str| {
        media(&http_get(server.http, path).text())
            .segments
            .last()
            .map(|s| s.uri.clone())
    };
    let before = last_segment("/live/sup/240p/video.m3u8");
    // SAFETY: kill(2) on a pid we just read from /proc; no memory involved.
    let killed = unsafe { libc::kill(first[0] as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill ffmpeg {}", first[0]);
    server.wait_log_all(&["ffmpeg exited; restarting", "live/sup"], T);
    wait_until("a new ffmpeg", T, || {
        let now = ffmpeg_children(castgate);
        now.len() == 1 && now[0] != first[0]
    });
    assert!(
        !Path::new(&format!("/proc/{}", first[0])).exists(),
        "the killed ffmpeg was not reaped"
    );
    // New segments after the restart, decodable, with a discontinuity.
    wait_until("240p segments after the restart", T, || {
        let p = media(&http_get(server.http, "/live/sup/240p/video.m3u8").text());
        let last = p.segments.last().map(|s| s.uri.clone());
        last != before && p.segments.iter().any(|s| s.discontinuity)
    });
    let url = server.http_url("live/sup/240p/video.m3u8");
    let height = ffprobe(
        &url,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=height",
            "-of",
            "csv=p=0",
        ],
    );
    assert_eq!(height.lines().next(), Some("240"), "{url}");
    let j = api_json(&server, "/api/v1/streams/live/sup");
    let restarts = j["transcode"]["restarts"].as_u64().unwrap_or(0);
    assert!(restarts >= 1, "{j}");
    assert!(
        j["transcode"]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("signal")),
        "{j}"
    );

    // The publisher leaves: ffmpeg goes at once.
    let second = ffmpeg_children(castgate);
    let _ = publisher.kill();
    let _ = publisher.wait();
    wait_until(
        "no ffmpeg child after the publish ended",
        Duration::from_secs(20),
        || ffmpeg_children(castgate).is_empty(),
    );
    for pid in first.iter().chain(&second) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "ffmpeg {pid} left behind"
        );
    }

    // It returns within the grace period: the job resumes, same URLs, a
    // discontinuity in the renditions.
    let segs_before = media(&http_get(server.http, "/live/sup/180p/video.m3u8").text())
        .segments
        .iter()
        .filter(|s| s.discontinuity)
        .count();
    let mut publisher = publish_small(&server, "live/sup");
    wait_until("ffmpeg again", T, || ffmpeg_children(castgate).len() == 1);
    wait_until("180p continues with a discontinuity", T, || {
        let p = media(&http_get(server.http, "/live/sup/180p/video.m3u8").text());
        p.segments.iter().filter(|s| s.discontinuity).count() > segs_before && !p.end_list
    });
    assert_eq!(
        server.count_log(&["transcode job started", "live/sup"]),
        1,
        "the job resumed rather than starting anew"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
    wait_until(
        "no ffmpeg after the second publish",
        Duration::from_secs(20),
        || ffmpeg_children(castgate).is_empty(),
    );
    server.wait_log_all(&["transcode job ended", "live/sup"], T);
    assert!(ffmpeg_children(castgate).is_empty());
    server.assert_no_panic();
}

/// The transcoder with the operations side: a crashed ffmpeg is told to the
/// webhook receiver (`transcode.failed`, signed like every event) and
/// counted in `/metrics`; SIGTERM during a transcoded publish stops ffmpeg
/// before castgate exits (with 0), and the renditions' playlists end.
#[test]
fn crashes_are_reported_and_sigterm_stops_ffmpeg() {
    let dir = tempdir();
    let hook = crate::ops::Receiver::start(std::sync::Arc::new(|_: &crate::ops::Received| {
        (200, String::new())
    }));
    let extra = format!(
        "[webhooks]\nurls = [\"{}\"]\nsecret = \"s\"\n",
        hook.url("/events")
    );
    let mut server = start_with(
        dir.path(),
        &[("live/*", "ci-small")],
        &extra,
        &[
            ("CASTGATE__PACKAGE__GRACE_SECS", "600"),
            ("CASTGATE__LIFECYCLE__DRAIN_SECS", "10"),
            ("CASTGATE__LIFECYCLE__SHUTDOWN_TIMEOUT_SECS", "30"),
        ],
    );
    let castgate = server.pid();
    let mut publisher = publish_small(&server, "live/ops");
    wait_variants(&server, "/live/ops/index.m3u8", 3);
    let first = ffmpeg_children(castgate);
    assert_eq!(first.len(), 1, "{first:?}");
    // SAFETY: kill(2) on a pid read from /proc; no memory involved.
    assert_eq!(
        unsafe { libc::kill(first[0] as libc::pid_t, libc::SIGKILL) },
        0
    );
    let got = hook.wait("transcode.failed", |r| {
        r.iter().any(|e| e.json()["type"] == "transcode.failed")
    });
    let e = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["type"] == "transcode.failed")
        .unwrap();
    assert_eq!(e["stream"], "live/ops", "{e}");
    assert_eq!(e["data"]["profile"], "ci-small", "{e}");
    assert!(
        e["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("signal")),
        "{e}"
    );
    let metrics = http_get(server.http, "/metrics").text();
    let restarts: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("castgate_transcode_restarts_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no restart counter in:\n{metrics}"));
    assert!(restarts >= 1.0, "{restarts}");
    wait_until("a new ffmpeg", T, || {
        let now = ffmpeg_children(castgate);
        now.len() == 1 && now[0] != first[0]
    });
    let second = ffmpeg_children(castgate);

    // SAFETY: as above, castgate's own pid.
    assert_eq!(
        unsafe { libc::kill(castgate as libc::pid_t, libc::SIGTERM) },
        0
    );
    server.wait_log_all(&["transcode job ends", "live/ops"], T);
    // During the drain (HTTP still up): no ffmpeg left, renditions ended.
    server.wait_log("shutting down: draining HTTP", T);
    wait_until("ffmpeg stopped by the shutdown", T, || {
        ffmpeg_children(castgate).is_empty()
    });
    for p in ["/live/ops/240p/video.m3u8", "/live/ops/video.m3u8"] {
        let text = http_get(server.http, p).text();
        assert!(text.contains("#EXT-X-ENDLIST"), "{p} not ended:\n{text}");
    }
    let status = server.wait_exit(Duration::from_secs(45));
    assert_eq!(status.code(), Some(0), "{status:?}");
    for pid in first.iter().chain(&second) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "ffmpeg {pid} outlived castgate"
        );
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// A 6 s 320x180 source (1 s GOP, AAC): another picture size than the
/// fixtures', so a playlist tells which session it belongs to.
fn source_180p(dir: &Path) -> PathBuf {
    require("ffmpeg");
    let path = dir.join("small.flv");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000"])
        .args(["-map", "0:v", "-map", "1:a", "-t", "6"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1"])
        .args(["-g", "30", "-keyint_min", "30", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-ar", "48000", "-ac", "2", "-f", "flv"])
        .arg(&path)
        .status()
        .expect("cannot run ffmpeg");
    assert!(status.success(), "ffmpeg could not make the 180p source");
    path
}

/// A transcoded key published again after its stream ended (grace over,
/// the ended session and its renditions still retained): from the new
/// publish's "publish started" line until the new session's segments
/// appear, every multivariant playlist, media playlist (source and
/// rendition) and MPD fetched is either 404 (not ready, as for any stream
/// before its first segment) or the new session: never an ENDLIST playlist
/// or a static MPD, never the old 640x360 source, never a listed rendition
/// that is the ended one.
#[test]
fn a_republished_key_never_serves_the_ended_session() {
    let dir = tempdir();
    let server = start(
        dir.path(),
        &[("live/again", "ci-small")],
        &[
            ("CASTGATE__PACKAGE__GRACE_SECS", "1"),
            ("CASTGATE__PACKAGE__RETENTION_SECS", "600"),
        ],
    );
    let key = "live/again";
    let mut first = crate::harness::publish(
        &crate::harness::fixture(5),
        &server.url(key),
        &["-stream_loop", "1"],
    );
    wait_http_ok(server.http, &format!("/{key}/240p/video.m3u8"), T);
    assert!(crate::harness::wait_child(&mut first, T, "first publish").success());
    // The first session and its renditions end (grace over) and are kept.
    for stream in [key, "live/again/240p", "live/again/180p"] {
        server.wait_log_all(&["packaging ended", &format!("stream=\"{stream}\"")], T);
    }
    for path in ["video.m3u8", "240p/video.m3u8"] {
        let old = http_get(server.http, &format!("/{key}/{path}"));
        assert_eq!(old.status, 200, "{path}: the ended session is retained");
        assert!(media(&old.text()).end_list, "{path}: {}", old.text());
    }

    let mark = server.log_len();
    let mut second = crate::harness::publish(&source_180p(dir.path()), &server.url(key), &[]);
    server
        .find_log_after(mark, &["publish started", &format!("stream=\"{key}\"")], T)
        .expect("the second publish is accepted");
    // From now on: 404 or the new session, until all four show it.
    let paths = [
        "index.m3u8",
        "video.m3u8",
        "manifest.mpd",
        "240p/video.m3u8",
    ];
    let mut current = [false; 4];
    let mut not_ready = 0;
    let deadline = Instant::now() + T;
    while !current.iter().all(|c| *c) {
        assert!(
            Instant::now() < deadline,
            "the new session never showed in all of {paths:?}: {current:?}"
        );
        for (i, path) in paths.iter().enumerate() {
            let r = http_get(server.http, &format!("/{key}/{path}"));
            if r.status == 404 {
                not_ready += 1;
                continue;
            }
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            let text = r.text();
            match *path {
                "index.m3u8" => {
                    let m = master(&text);
                    for v in &m.variants {
                        if v.uri == "video.m3u8" {
                            let size = v.resolution.map(|r| (r.width, r.height));
                            assert_eq!(size, Some((320, 180)), "old source listed: {text}");
                        }
                        let listed = http_get(server.http, &format!("/{key}/{}", v.uri));
                        assert!(
                            listed.status == 404 || !media(&listed.text()).end_list,
                            "{} is listed but is the ended session: {}",
                            v.uri,
                            listed.text()
                        );
                    }
                }
                "manifest.mpd" => {
                    assert!(
                        text.contains("type=\"dynamic\""),
                        "ended MPD served: {text}"
                    );
                    assert!(
                        !text.contains("width=\"640\""),
                        "old source in the MPD: {text}"
                    );
                }
                _ => assert!(
                    !media(&text).end_list,
                    "{path}: ended session served: {text}"
                ),
            }
            current[i] = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        not_ready > 0,
        "the polls began only after the new session had segments everywhere"
    );
    assert!(crate::harness::wait_child(&mut second, T, "second publish").success());
    server.assert_no_panic();
}

#[test]
fn unmapped_and_passthrough_streams_run_no_ffmpeg() {
    let dir = tempdir();
    let server = start(
        dir.path(),
        &[("ladder/*", "ci-ladder"), ("plain/*", "passthrough")],
        &[],
    );
    let src = crate::harness::fixture(3);
    let mut a = crate::harness::publish(&src, &server.url("live/none"), &["-stream_loop", "-1"]);
    let mut b = crate::harness::publish(&src, &server.url("plain/pt"), &["-stream_loop", "-1"]);
    for key in ["live/none", "plain/pt"] {
        let m = wait_variants(&server, &format!("/{key}/index.m3u8"), 1);
        assert_eq!(m.variants.len(), 1, "{key}: {m:?}");
        assert_eq!(m.variants[0].uri, "video.m3u8");
        let j = api_json(&server, &format!("/api/v1/streams/{key}"));
        assert!(j["transcode"].is_null(), "{key}: {j}");
    }
    // Both have segments: any ffmpeg would have started by now.
    assert!(ffmpeg_children(server.pid()).is_empty());
    let list = api_json(&server, "/api/v1/streams");
    let keys: Vec<&str> = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["stream"].as_str())
        .collect();
    assert_eq!(keys, ["live/none", "plain/pt"], "{list}");
    assert_eq!(server.count_log(&["transcode job started"]), 0);
    server.wait_log_all(&["passthrough profile", "plain/pt"], T);
    for p in [&mut a, &mut b] {
        let _ = p.kill();
        let _ = p.wait();
    }
    server.assert_no_panic();
}

#[test]
fn check_config_names_the_profile_file_and_key() {
    let dir = tempdir();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let check = |files: &[(&str, &str)], config: &str| -> (bool, String) {
        for e in std::fs::read_dir(&profiles).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
        for (name, text) in files {
            std::fs::write(profiles.join(name), text).unwrap();
        }
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            format!(
                "[transcoder]\nprofiles_dir = \"{}\"\n{config}",
                profiles.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_castgate"))
            .args(["check-config", cfg.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .output_within(RUN_LIMIT)
            .expect("cannot run castgate");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let good =
        "[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nheight = 360\nbitrate_kbps = 500\n";
    let map = "[[transcode]]\nstream = \"live/*\"\nprofile = \"mine\"\n";
    let (ok, err) = check(&[("mine.toml", good)], map);
    assert!(ok, "{err}");
    let mine = profiles.join("mine.toml").display().to_string();
    for (profile, config, want) in [
        (
            format!("{good}colour = \"red\"\n"),
            map.to_string(),
            vec![mine.as_str(), "colour"],
        ),
        (
            good.replace("360", "361"),
            map.to_string(),
            vec![mine.as_str(), "rendition[0].height"],
        ),
        (
            good.replace("500", "0"),
            map.to_string(),
            vec![mine.as_str(), "rendition[0].bitrate_kbps"],
        ),
        (
            format!("{good}maxrate_kbps = 100\n"),
            map.to_string(),
            vec![mine.as_str(), "rendition[0].maxrate_kbps"],
        ),
        (
            good.to_string(),
            map.replace("mine", "missing"),
            vec!["c.toml", "transcode[0].profile", "\"missing\""],
        ),
        (
            good.to_string(),
            map.replace("live/*", "nokey"),
            vec!["c.toml", "transcode[0].stream"],
        ),
        (
            good.to_string(),
            format!("ffmpeg = \"/nonexistent/ffmpeg\"\n{map}"),
            vec!["transcoder.ffmpeg", "/nonexistent/ffmpeg", "mine.toml"],
        ),
    ] {
        let (ok, err) = check(&[("mine.toml", &profile)], &config);
        assert!(!ok, "accepted: {profile}\n{config}");
        for w in want {
            assert!(err.contains(w), "message {err:?} should name {w:?}");
        }
    }
    // A passthrough profile needs no ffmpeg.
    let (ok, err) = check(
        &[],
        "ffmpeg = \"/nonexistent/ffmpeg\"\n[[transcode]]\nstream = \"live/*\"\nprofile = \"passthrough\"\n",
    );
    assert!(ok, "{err}");
}
