//! The web console in a real browser. Headless Chromium (playwright-core,
//! driven by `e2e/browser/console.js`) uses the console as an operator
//! would while ffmpeg publishes: token, stream list, the console's own
//! player (which the list then counts as an HLS viewer), a relay created
//! with the form going live (to this same castgate, so the relayed stream
//! shows up in the list too), links, a screenshot, the relay stopped. Once on the compose service's command and config with
//! an API token, once on the embedded defaults (`cargo run --release`).
//! And recordings: one started and stopped from a stream's row, listed,
//! played on demand with a seek, and deleted (`console.js --recordings`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::browser;
use crate::harness::{fixture, http_request, publish, require, wait_http_ok, Castgate};

const TOKEN: &str = "console-e2e-token";

/// `target/e2e-artifacts/NAME`, kept after the run.
pub(crate) fn artifact(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("e2e-artifacts").join(name)
}

/// The compose service's command and mounted config (ports aside), with the
/// token compose passes.
#[test]
fn console_lists_plays_and_manages_relays_in_chromium() {
    require("ffmpeg");
    browser::ensure_installed();
    let (args, _) = crate::docker::serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server =
        Castgate::start_with_args_loopback_egress(&args, &[("CASTGATE__API__TOKEN", TOKEN)]);
    let r = drive_console(&server, Some(TOKEN), 7, "console.png", true, None);
    // The player went on across a publisher switch (a new publisher on the
    // key within the grace period: a discontinuity in the playlists).
    let re = &r["steps"]["reconnect"];
    let edge = re["edge"].as_f64().unwrap_or(f64::NAN);
    assert!(
        re["current_time"].as_f64().unwrap_or(0.0) >= edge + 4.0,
        "{re}"
    );
    // The OpenAPI link works with a token too (the page fetches it).
    let tab = &r["steps"]["links"]["openapi_tab"];
    assert!(
        tab["url"].as_str().unwrap_or("").starts_with("blob:"),
        "{tab}"
    );
    // Without the token the page explains the 401.
    let status = r["steps"]["load"]["status"].as_str().unwrap_or("");
    assert!(
        status.contains("401") && status.contains("token"),
        "{status}"
    );
}

/// `cargo run --release` as is: embedded defaults, no token, so the API
/// answers loopback clients, which this browser is.
#[test]
fn console_works_on_the_embedded_defaults_without_a_token() {
    require("ffmpeg");
    browser::ensure_installed();
    let server = Castgate::start_loopback_egress(&[]);
    server.wait_log("answering loopback clients only", Duration::from_secs(10));
    // An SRT publisher too: the page lists it with libsrt's counters.
    let srt = server.listening("SRT");
    let mut srt_publisher = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture(9))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("srt://{srt}?streamid=#!::r=live/srtcam,m=publish"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run ffmpeg");
    let r = drive_console(
        &server,
        None,
        8,
        "console-defaults.png",
        false,
        Some("live/srtcam"),
    );
    let _ = srt_publisher.kill();
    let _ = srt_publisher.wait();
    // Loopback needs no token: no 401 on the way.
    let status = r["steps"]["token"]["status"].as_str().unwrap_or("");
    assert!(status.starts_with("updated "), "{status}");
    // peer, stream, mode, connected, RTT, rate, bandwidth, lost,
    // retransmitted, dropped.
    let row: Vec<&str> = r["steps"]["srt"]["row"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(row.len(), 10, "{row:?}");
    assert!(row[0].starts_with("127.0.0.1:"), "{row:?}");
    assert_eq!(row[1..3], ["live/srtcam", "publish"], "{row:?}");
    assert!(
        row[4].ends_with(" ms") && row[5].ends_with(" Mb/s"),
        "{row:?}"
    );
    assert!(row[7..].iter().all(|c| c.parse::<u64>().is_ok()), "{row:?}");
    assert_eq!(r["steps"]["srt"]["count"], "(1)", "{r}");
}

/// Recordings from the console (issue 21), with an API token: a recording
/// of a live stream started from its row, listed as being recorded (its
/// deletion refused, the reason shown), stopped, listed complete with its
/// duration, played on demand in the console's player (the clock shows
/// where and of how long), seeked beyond what was buffered (it lands within
/// one GOP of the target and plays on), and deleted: gone from the page,
/// from the API and from the disk.
#[test]
fn console_records_plays_seeks_and_deletes_a_recording_in_chromium() {
    require("ffmpeg");
    browser::ensure_installed();
    let dir = crate::harness::tempdir();
    let media = dir.path().join("media");
    let cfg = dir.path().join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vod]\ndir = \"{m}\"\n[recorder]\ndir = \"{m}\"\n",
            m = media.display()
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("CASTGATE__API__TOKEN", TOKEN)],
    );
    let mut publisher = publish(
        &fixture(6),
        &server.url("live/cam"),
        &["-stream_loop", "-1"],
    );
    wait_http_ok(server.http, "/live/cam/index.m3u8", Duration::from_secs(30));
    let shot = artifact("console-recordings.png");
    let _ = std::fs::remove_file(&shot);
    let mut cmd = Command::new("node");
    cmd.arg(browser::browser_dir().join("console.js"))
        .arg("--recordings")
        .arg(server.http_url("/"))
        .args([TOKEN, "live/cam"])
        .arg(&shot)
        .current_dir(browser::browser_dir());
    let out = {
        let _serial = browser::one_at_a_time();
        run_console_js(cmd, Duration::from_secs(300), || {})
    };
    let _ = publisher.kill();
    let _ = publisher.wait();
    let (line, r) = report_of(&out);
    println!("console.js: {line}");
    println!("console screenshot: {}", shot.display());
    assert!(
        r["ok"] == true && out.status.success(),
        "the console failed at {}: {}\nstderr:\n{}",
        r["failed_step"],
        r["errors"],
        out.stderr
    );
    assert_eq!(r["blocked"], serde_json::json!([]), "{line}");
    assert_eq!(r["token_in_urls"], serde_json::json!([]), "{line}");
    // The failed loads are the API's answers before the token was entered
    // and its refusal to delete a recording being written.
    for e in r["console_errors"].as_array().into_iter().flatten() {
        let e = e.as_str().unwrap_or("");
        assert!(
            e.contains("401") || e.contains("409"),
            "browser console error: {e}"
        );
    }
    let steps = &r["steps"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);

    // Started from the stream's row: the file being written, under the
    // stream's name in the media directory.
    let path = steps["record_start"]["path"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // A CMAF recording (the default format) is known by its directory's
    // index.m3u8.
    let base = path
        .strip_suffix("/index.m3u8")
        .or_else(|| path.strip_suffix(".flv"))
        .unwrap_or("")
        .to_string();
    assert!(path.starts_with("live/cam/") && !base.is_empty(), "{line}");
    assert_eq!(
        steps["record_start"]["before"],
        "not recording Start recording"
    );
    let file = media.join(&path);
    // Listed while written: not playable yet, not deletable (the API's
    // reason on the page).
    let listed = &steps["record_listed"];
    assert_eq!(listed["row"][4], "recording", "{listed}");
    assert_eq!(listed["play_disabled"], true, "{listed}");
    let refused = listed["refused"].as_str().unwrap_or("");
    assert!(
        refused.contains("409") && refused.contains(&path),
        "{listed}"
    );
    // Stopped: complete, with the duration it was recorded for (12 s of
    // wall clock between the clicks).
    let stop = &steps["record_stop"];
    assert_eq!(stop["row"][4], "complete", "{stop}");
    assert_eq!(stop["row"][5], path.as_str(), "{stop}");
    let listed_secs = f(&stop["duration_s"]);
    assert!((10.0..=20.0).contains(&listed_secs), "{stop}");
    assert_eq!(stop["play_disabled"], false, "{stop}");
    assert_eq!(stop["message"], "", "no error: {stop}");
    server.wait_log_all(
        &["recording completed", "stream=\"live/cam\""],
        Duration::from_secs(10),
    );

    // Played on demand, from the recording's VOD URL (no secret in it).
    let play = &steps["vod_play"];
    let vod = &base;
    assert_eq!(play["hls_link"], format!("/vod/{vod}/index.m3u8"), "{play}");
    assert_eq!(
        play["dash_link"],
        format!("/vod/{vod}/manifest.mpd"),
        "{play}"
    );
    assert_eq!(play["kind"], "Recording", "{play}");
    assert_eq!(play["player"]["vod"], true, "{play}");
    let duration = f(&play["duration"]);
    // The display floors to whole seconds.
    assert!(
        duration >= listed_secs - 0.5 && duration < listed_secs + 1.5,
        "the seek bar spans {duration} s of a {listed_secs} s recording: {play}"
    );
    let clock = play["clock"].as_str().unwrap_or("");
    let (now, total) = clock.split_once(" / ").unwrap_or_default();
    assert!(
        now.contains(':') && total.starts_with("0:") && total.contains('.'),
        "{clock}"
    );
    assert!(
        f(&play["current_time"]) - f(&play["start"]) >= 1.5,
        "{play}"
    );

    // Seeked beyond the buffer: it landed within one GOP (1 s) of the
    // target, at most 0.5 s after it, and played on.
    let seek = &steps["vod_seek"];
    let target = f(&seek["target"]);
    let buffered: Vec<(f64, f64)> = seek["buffered_before"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (f(&r[0]), f(&r[1])))
        .collect();
    assert!(
        buffered.iter().all(|&(a, b)| !(a..b).contains(&target)),
        "the target was buffered, the seek fetched nothing: {seek}"
    );
    for what in ["landed", "frame"] {
        let at = f(&seek[what]);
        assert!(
            (target - 1.0..=target + 0.5).contains(&at),
            "{what} at {at} s for a seek to {target} s: {seek}"
        );
    }
    assert!(seek["seeks"].as_u64().unwrap_or(0) >= 1, "{seek}");
    assert!(
        f(&seek["current_time"]) >= f(&seek["landed"]) + 0.9,
        "playback went on after the seek: {seek}"
    );

    // Deleted: from the page, the API and the disk.
    let del = &steps["vod_delete"];
    assert!(
        del["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("deleted "),
        "{del}"
    );
    assert_eq!(del["count"], "(0)", "{del}");
    assert_eq!(del["empty_shown"], true, "{del}");
    assert!(
        r["dialogs"].as_array().map_or(0, Vec::len) == 2,
        "two confirmations (refused, then done): {line}"
    );
    assert!(!file.exists(), "{} is still on disk", file.display());
    assert!(
        !media.join(format!("{base}.json")).exists(),
        "its sidecar is still on disk"
    );
    let auth = format!("Bearer {TOKEN}");
    let list = http_request(
        server.http,
        "GET",
        "/api/v1/recordings",
        &[("Authorization", auth.as_str())],
    );
    assert_eq!(list.status, 200);
    assert_eq!(list.text(), "{\"recordings\":[],\"truncated\":false}");
    server.wait_log_all(&["recording deleted"], Duration::from_secs(10));
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    server.assert_no_panic();
}

/// Publishes `live/cam`, runs console.js against `server`, checks its
/// report and castgate's side of it; returns the report.
fn drive_console(
    server: &Castgate,
    token: Option<&str>,
    fixture_variant: u32,
    shot_name: &str,
    reconnect: bool,
    srt_stream: Option<&str>,
) -> serde_json::Value {
    let mut publisher = publish(
        &fixture(fixture_variant),
        &server.url("live/cam"),
        &["-stream_loop", "-1"],
    );
    wait_http_ok(server.http, "/live/cam/index.m3u8", Duration::from_secs(30));
    let shot = artifact(shot_name);
    let _ = std::fs::remove_file(&shot);
    let relay_target = format!("rtmp://{}/live/cam-relay", server.rtmp);
    let mut cmd = Command::new("node");
    // A pulled source of live/cam (castgate plays it from itself).
    cmd.env(
        "CONSOLE_SOURCE_URL",
        format!("rtmp://{}/live/cam?from=console", server.rtmp),
    );
    if let Some(stream) = srt_stream {
        cmd.env("CONSOLE_SRT_STREAM", stream);
    }
    cmd.arg(browser::browser_dir().join("console.js"))
        .arg(server.http_url("/"))
        .args([
            token.unwrap_or("-"),
            "live/cam",
            &relay_target,
            "live/cam-relay",
        ])
        .arg(&shot)
        .args(reconnect.then_some("reconnect"))
        .current_dir(browser::browser_dir());
    let out = {
        let _serial = browser::one_at_a_time();
        run_console_js(cmd, Duration::from_secs(300), || {
            // Replace the publisher while the page plays.
            let _ = publisher.kill();
            let _ = publisher.wait();
            publisher = publish(
                &fixture(fixture_variant),
                &server.url("live/cam"),
                &["-stream_loop", "-1"],
            );
            assert!(
                server.wait_count(
                    &["publish started", "stream=\"live/cam\""],
                    2,
                    Duration::from_secs(30)
                ),
                "the second publisher never started"
            );
        })
    };
    let _ = publisher.kill();
    let _ = publisher.wait();
    let (line, r) = report_of(&out);
    println!("console.js: {line}");
    println!("console screenshot: {}", shot.display());
    assert!(
        r["ok"] == true && out.status.success(),
        "the console failed at {}: {}\nstderr:\n{}",
        r["failed_step"],
        r["errors"],
        out.stderr
    );
    let steps = &r["steps"];
    // Nothing from another site: every request stayed on castgate's origin,
    // and the page says so in its policy.
    assert_eq!(r["blocked"], serde_json::json!([]), "{line}");
    assert_eq!(
        steps["load"]["csp"].as_str(),
        Some(castgate::console::CONTENT_SECURITY_POLICY)
    );
    // The only failed loads are the API calls made before the token was
    // entered and the relay refused on purpose (no missing asset, no
    // script error).
    let errors: Vec<&str> = r["console_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .collect();
    for e in &errors {
        assert!(
            e.contains("422") || e.contains("503") || token.is_some() && e.contains("401"),
            "browser console error: {e}"
        );
    }
    // (The relay's and the source's.)
    assert_eq!(
        errors.iter().filter(|e| e.contains("422")).count(),
        2,
        "{errors:?}"
    );
    // The stream row: codecs, resolution, fps, bitrates, uptime, publisher.
    let row: Vec<&str> = steps["token"]["row"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(row.first().copied(), Some("live/cam"), "{row:?}");
    assert!(
        row[1].starts_with("h264 (avc1.64") && row[1].contains("640×360"),
        "{row:?}"
    );
    assert!(
        row[1].contains(" fps ") && row[1].ends_with("kb/s"),
        "{row:?}"
    );
    assert!(row[2].starts_with("aac (mp4a.40.2) 48 kHz 2 ch"), "{row:?}");
    assert!(
        row[3].ends_with(" kb/s") && row[4].ends_with('s'),
        "{row:?}"
    );
    assert!(row[5].starts_with("127.0.0.1:"), "{row:?}");
    // The console's own player played it...
    let play = &steps["play"];
    assert!(play["advanced_s"].as_f64().unwrap_or(0.0) >= 4.0, "{play}");
    // ...through 3 segment requests answered 503 (retried).
    assert_eq!(play["injected_failures"], 3, "{play}");
    assert_eq!(
        (play["width"].as_u64(), play["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(play["frames"].as_u64().unwrap_or(0) > 60, "{play}");
    assert_eq!(play["player"]["tracks"].as_array().map(Vec::len), Some(2));
    // ...and was counted as the stream's one HLS viewer in the list...
    assert_eq!(play["players"], "1 (hls 1)", "{play}");
    // ...while the list refreshed by itself (the uptime moved on).
    assert!(play["refreshed"]["after"].is_string(), "{play}");
    assert_ne!(
        play["refreshed"]["before"], play["refreshed"]["after"],
        "{play}"
    );
    // The relay went live from the form, reached its destination, and stopped.
    let relay = &steps["relay_create"];
    assert!(
        relay["row"][3].as_str().unwrap_or("").starts_with("live"),
        "{relay}"
    );
    assert_eq!(relay["row"][2], format!("rtmp://{}/live/***", server.rtmp));
    assert_eq!(relay["relayed_row"][0], "live/cam-relay");
    let refused = relay["refused"].as_str().unwrap_or("");
    assert!(
        refused.starts_with("422: ") && refused.contains("ftp"),
        "{relay}"
    );
    let id = relay["id"].as_u64().expect("relay id");
    assert!(steps["relay_stop"].is_object(), "{line}");
    let links = steps["links"]["links"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for label in ["HLS", "DASH", "OpenAPI"] {
        assert!(
            links
                .iter()
                .any(|l| l["label"] == label && l["status"] == 200),
            "{links:?}"
        );
    }
    // What the browser saw is what castgate did.
    let relay_tag = format!("relay={id} ");
    for what in [
        "relay created",
        "relay live",
        "relay deleted",
        "relay stopped",
    ] {
        server.wait_log_all(&[what, &relay_tag], Duration::from_secs(10));
    }
    server.wait_log_all(
        &["publish started", "stream=\"live/cam-relay\""],
        Duration::from_secs(1),
    );
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let relays = http_request(server.http, "GET", "/api/v1/relays", &headers);
    assert_eq!(relays.status, 200);
    assert_eq!(relays.text(), "{\"relays\":[]}", "relay {id} is gone");
    // The pulled source went live from the form (URL redacted: its query
    // is a secret), published live/cam-pulled, and stopped.
    let source = &steps["source_create"];
    assert_eq!(source["row"][1], "live/cam-pulled", "{source}");
    assert_eq!(source["row"][2], format!("rtmp://{}/live/***", server.rtmp));
    assert!(
        source["row"][3].as_str().unwrap_or("").starts_with("live"),
        "{source}"
    );
    assert!(
        source["refused"]
            .as_str()
            .unwrap_or("")
            .starts_with("422: "),
        "{source}"
    );
    assert_eq!(source["stream_row"][0], "live/cam-pulled", "{source}");
    assert!(steps["source_stop"].is_object(), "{line}");
    server.wait_log_all(&["source stopped"], Duration::from_secs(10));
    let sources = http_request(server.http, "GET", "/api/v1/sources", &headers);
    assert_eq!(sources.text(), "{\"sources\":[]}");
    assert!(
        !server
            .lines_with(&["from=console"])
            .iter()
            .any(|l| l.contains("source")),
        "the source URL's query reached the log"
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    server.assert_no_panic();
    r
}

/// Kills node and its Chromium if the test panics while they run.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            browser::kill_group(&mut self.0);
            let _ = self.0.wait();
        }
    }
}

/// console.js's JSON report (its last line that is one) and that line.
pub(crate) fn report_of(out: &browser::Output) -> (&str, serde_json::Value) {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "console.js printed no report ({}):\n{}\n{}",
                out.status, out.stdout, out.stderr
            )
        });
    let r = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("console.js report is not JSON ({e}): {line}"));
    (line, r)
}

/// Runs console.js in its own process group with a deadline. When it says
/// `{"event":"playing"}`, runs `on_playing` and then writes a line to its
/// stdin (it waits for one in `reconnect` mode).
pub(crate) fn run_console_js(
    mut cmd: Command,
    timeout: Duration,
    mut on_playing: impl FnMut(),
) -> browser::Output {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = Running(cmd.spawn().expect("cannot start node"));
    let mut stdin = child.0.stdin.take();
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if line.trim() == r#"{"event":"playing"}"# {
                    on_playing();
                    if let Some(s) = stdin.as_mut() {
                        let _ = writeln!(s, "republished");
                        let _ = s.flush();
                    }
                }
                lines.push(line);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!(
                "console.js still running after {timeout:?}; its output:\n{}",
                lines.join("\n")
            ),
        }
    }
    drop(stdin);
    let status = child.0.wait().expect("wait for node");
    browser::Output {
        status,
        stdout: lines.join("\n"),
        stderr: err.join().unwrap_or_default(),
    }
}
