//! SRT relays against libsrt peers in every role a user meets: ffmpeg and
//! srt-live-transmit as listeners castgate calls, and as callers into
//! castgate's listener; with stream ids, passphrases (AES-128/192/256) and
//! latency; joined mid-stream (a relay created or reconnected while the
//! stream is live starts from a GOP burst, which srt-tokio got wrong); a
//! listener that never answers, rejects, or is killed shows in the API as
//! `backoff` with the reason, and the relay reconnects.
//!
//! What arrives is checked against the source: the frames a receiver
//! decodes are exactly the source's last frames (same pictures and sound,
//! none missing, none extra) up to the end of the stream.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::relay::*;

/// castgate with settings that keep these tests short: SRT handshakes
/// time out after 2 s, retries come within 1 s, a stream ends 1 s after
/// its publisher.
fn start_castgate() -> Castgate {
    let server = Castgate::start_loopback_egress(&[
        ("CASTGATE__PACKAGE__GRACE_SECS", "1"),
        ("CASTGATE__RELAY__CONNECT_TIMEOUT_SECS", "2"),
        ("CASTGATE__RELAY__BACKOFF_MAX_SECS", "1"),
    ]);
    server.wait_log_all(&["REST API on", "loopback clients only"], T);
    server
}

/// ffmpeg receiving SRT into an MPEG-TS file, its log (verbose: it names
/// the stream id it accepted) in `log`. `url` is a listener or caller URL;
/// ffmpeg's `latency` is in microseconds.
pub(crate) fn ffmpeg_srt_receiver(url: &str, out: &Path, log: &Path) -> Proc {
    require("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "verbose", "-y", "-i", url])
        .args(["-map", "0", "-c", "copy", "-f", "mpegts"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("cannot run ffmpeg");
    Proc(child, "ffmpeg SRT receiver")
}

/// The payload checksums of the audio packets of a file, as raw AAC (a
/// TS carries ADTS frames, an FLV raw ones).
fn audio_packets(file: &Path) -> Vec<String> {
    let ts = file.extension().is_some_and(|e| e == "ts");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:a", "-c", "copy"]);
    if ts {
        cmd.args(["-bsf:a", "aac_adtstoasc"]);
    }
    let out = cmd
        .args(["-f", "framemd5", "-"])
        .output()
        .expect("cannot run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(',').nth(5).map(|s| s.trim().to_string()))
        .collect()
}

/// Asserts `have` is the end of `want`, with at least `min` entries.
fn assert_tail(want: &[String], have: &[String], min: usize, what: &str) {
    assert!(
        have.len() >= min,
        "{what}: {} frames received, want at least {min}",
        have.len()
    );
    assert!(
        have.len() <= want.len(),
        "{what}: more frames than the source"
    );
    let tail = &want[want.len() - have.len()..];
    if have != tail {
        let first_bad = have.iter().zip(tail).position(|(a, b)| a != b);
        panic!(
            "{what}: the {} frames received are not the source's last frames (first difference at {first_bad:?})",
            have.len()
        );
    }
}

/// Asserts that `got` holds the end of the stream `src`: its last
/// pictures, decoded (a receiver that joins mid-stream starts at a
/// keyframe; the GOPs are closed, so the pictures are the source's), and
/// its last audio packets, payload for payload; at least `min_video`
/// pictures and as many seconds of audio.
///
/// `raw`: `got` holds the bytes castgate sent (srt-live-transmit). ffmpeg
/// rewrites the TS it receives, with timestamps its own null muxer then
/// calls non-monotonic at the source's loop points: those lines alone are
/// not counted.
pub(crate) fn assert_source_tail(src: &Path, got: &Path, min_video: usize, raw: bool, what: &str) {
    assert!(got.exists(), "{what}: nothing received");
    let errors = strict_decode(got);
    let errors: Vec<&str> = errors
        .lines()
        .filter(|l| raw || !l.contains("non monotonically increasing dts to muxer"))
        .collect();
    assert!(errors.is_empty(), "{what}: decoding: {errors:#?}");
    assert_tail(
        &decoded_md5(src, "0:v"),
        &decoded_md5(got, "0:v"),
        min_video,
        &format!("{what} (pictures)"),
    );
    assert_tail(
        &audio_packets(src),
        &audio_packets(got),
        min_video * 3 / 2,
        &format!("{what} (audio packets)"),
    );
}

fn id_of(r: &Value) -> u64 {
    r["id"].as_u64().unwrap()
}

fn assert_no_secret(server: &Castgate, secrets: &[&str]) {
    let log = server.lines_with(&[""]).join("\n");
    let (_, list) = api(server, "GET", "/relays", None, None);
    let shown = list.to_string();
    for s in secrets {
        assert!(!log.contains(s), "{s} in the log");
        assert!(!shown.contains(s), "{s} in the API: {shown}");
    }
}

/// The case, and more: castgate calls an ffmpeg (libsrt 1.5)
/// listener with a stream id, AES-256 and a latency. Before any listener
/// exists the relay backs off with the handshake timeout as its error; it
/// joins the live stream once ffmpeg listens (ffmpeg names the stream id it
/// accepted). ffmpeg is killed (no SRT shutdown reaches castgate): the
/// relay notices, backs off with the reason, and reconnects to a new
/// listener, which gets every frame from its first keyframe to the end.
#[test]
fn ffmpeg_listener_gets_every_frame_and_a_killed_one_shows_and_reconnects() {
    let dir = tempdir();
    let src = looped_fixture_n(2, 6, dir.path());
    let server = start_castgate();
    let port = free_udp_port();
    let pass = "ffPASS-0123456789";
    let sid = "#!::r=live/srtFF,m=publish";
    let relay = create_relay(
        &server,
        json!({"stream": "live/srt",
               "target": format!("srt://127.0.0.1:{port}?streamid={}&passphrase={pass}&pbkeylen=32&latency=200",
                                 sid.replace('#', "%23").replace(',', "%2C"))}),
    );
    let id = id_of(&relay);
    assert_eq!(
        relay["target"],
        format!("srt://127.0.0.1:{port}?streamid=***&passphrase=***&pbkeylen=32&latency=200")
    );
    let mut publisher = Proc(publish(&src, &server.url("live/srt"), &[]), "publisher");

    // Nobody listens: the handshake times out, the relay says so.
    let r = wait_relay(&server, id, "backed off without a listener", |r| {
        r["state"] == "backoff" && r["last_error"].is_string()
    });
    let e = r["last_error"].as_str().unwrap();
    assert!(e.contains("SRT call") && e.contains("timed out"), "{e}");
    assert_eq!(r["bytes_sent"], 0, "{r}");

    let listener = |n: u32| {
        let out = dir.path().join(format!("ff{n}.ts"));
        let log = dir.path().join(format!("ff{n}.log"));
        let url = format!(
            "srt://127.0.0.1:{port}?mode=listener&passphrase={pass}&pbkeylen=32&latency=200000"
        );
        let mut p = ffmpeg_srt_receiver(&url, &out, &log);
        wait_bound(true, port, &mut p);
        (p, out, log)
    };
    let (mut ff1, _, log1) = listener(1);
    let r = wait_relay(&server, id, "went live", in_state("live"));
    let sent = r["frames_sent"].as_u64().unwrap();
    wait_relay(&server, id, "sent 1 s", |r| {
        r["frames_sent"].as_u64() >= Some(sent + 77)
    });
    let accepted = std::fs::read_to_string(&log1).unwrap();
    assert!(
        accepted.contains(&format!("accept streamid [{sid}]")),
        "ffmpeg did not get the stream id:\n{accepted}"
    );

    // SIGKILL: ffmpeg cannot say goodbye; castgate finds out by itself.
    ff1.kill();
    let r = wait_relay(&server, id, "backed off after the kill", |r| {
        r["state"] == "backoff"
            && r["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("went away"))
    });
    let reconnects = r["reconnects"].as_u64().unwrap();
    let (mut ff2, out2, _) = listener(2);
    let r = wait_relay(&server, id, "went live again", in_state("live"));
    assert!(r["reconnects"].as_u64() > Some(reconnects), "{r}");

    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    // The stream ends: castgate closes the connection, ffmpeg finishes.
    ff2.wait(T);
    wait_relay(
        &server,
        id,
        "waited for the stream again",
        in_state("waiting"),
    );
    assert_source_tail(
        &src,
        &out2,
        60,
        false,
        "ffmpeg listener after the reconnect",
    );
    server.wait_log_all(&["SRT connection closed", "packets_sent="], T);
    assert_no_secret(&server, &[pass, "srtFF"]);
    server.assert_no_panic();
}

/// castgate calls srt-live-transmit (a listener with an AES-128
/// passphrase). A relay with the wrong passphrase is rejected: `backoff`,
/// and the error says why. The right one, created while the stream is
/// live, delivers every frame from its first keyframe to the end.
#[test]
fn srt_live_transmit_listener_rejects_a_wrong_passphrase_and_gets_every_frame() {
    require("srt-live-transmit");
    let dir = tempdir();
    let src = looped_fixture_n(3, 3, dir.path());
    let server = start_castgate();
    let port = free_udp_port();
    let out = dir.path().join("slt.ts");
    let mut slt = srt_receiver(
        &format!("srt://127.0.0.1:{port}?mode=listener&passphrase=sltPASS-0123&pbkeylen=16"),
        &out,
    );
    wait_bound(true, port, &mut slt);
    let mut publisher = Proc(publish(&src, &server.url("live/slt"), &[]), "publisher");

    let wrong = id_of(&create_relay(
        &server,
        json!({"stream": "live/slt",
               "target": format!("srt://127.0.0.1:{port}?passphrase=wrongPASS-987&pbkeylen=16")}),
    ));
    let r = wait_relay(&server, wrong, "was rejected", |r| {
        r["state"] == "backoff" && r["last_error"].is_string()
    });
    let e = r["last_error"].as_str().unwrap();
    assert!(e.contains("rejected") && e.contains("passphrase"), "{e}");
    assert_eq!(
        api(&server, "DELETE", &format!("/relays/{wrong}"), None, None).0,
        204
    );

    let good = id_of(&create_relay(
        &server,
        json!({"stream": "live/slt",
               "target": format!("srt://127.0.0.1:{port}?passphrase=sltPASS-0123&streamid=sltID42&latency=150")}),
    ));
    let r = wait_relay(&server, good, "went live", in_state("live"));
    assert!(r["last_error"].is_null(), "{r}");
    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    // -a:no: srt-live-transmit exits when castgate closes the connection.
    slt.wait(T);
    assert_source_tail(&src, &out, 60, true, "srt-live-transmit listener");
    assert_no_secret(&server, &["sltPASS-0123", "wrongPASS-987", "sltID42"]);
    server.assert_no_panic();
}

/// castgate as the listener (relays in `mode=listener`), joined while the
/// stream is live: an ffmpeg caller with the relay's stream id and an
/// AES-128 passphrase; an ffmpeg caller with another stream id is turned
/// away; srt-live-transmit calls the other relay with AES-256. Both
/// receivers get every frame from their first keyframe to the end.
#[test]
fn castgate_listener_serves_ffmpeg_and_srt_live_transmit_callers() {
    require("srt-live-transmit");
    let dir = tempdir();
    let src = looped_fixture_n(4, 3, dir.path());
    let server = start_castgate();
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let ff_relay = id_of(&create_relay(
        &server,
        json!({"stream": "live/lst",
               "target": format!("srt://127.0.0.1:{p1}?mode=listener&streamid=lstID7&passphrase=lstPASS-0123")}),
    ));
    let slt_relay = id_of(&create_relay(
        &server,
        json!({"stream": "live/lst",
               "target": format!("srt://127.0.0.1:{p2}?mode=listener&passphrase=lstPASS-4567&pbkeylen=32&latency=200")}),
    ));
    let mut publisher = Proc(publish(&src, &server.url("live/lst"), &[]), "publisher");
    for (id, port) in [(ff_relay, p1), (slt_relay, p2)] {
        wait_relay(&server, id, "listened", in_state("connecting"));
        let deadline = std::time::Instant::now() + T;
        while !bound(true, port) {
            assert!(
                std::time::Instant::now() < deadline,
                "relay {id} never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Another stream id: accepted by libsrt, then closed by castgate.
    let intruder_out = dir.path().join("intruder.ts");
    let mut intruder = ffmpeg_srt_receiver(
        &format!("srt://127.0.0.1:{p1}?streamid=other&passphrase=lstPASS-0123"),
        &intruder_out,
        &dir.path().join("intruder.log"),
    );
    intruder.wait(T);
    server.wait_log_all(&["SRT caller refused", "not the stream id"], T);
    assert_eq!(
        api(&server, "GET", &format!("/relays/{ff_relay}"), None, None).1["state"],
        "connecting"
    );

    let ff_out = dir.path().join("caller.ts");
    let mut ff = ffmpeg_srt_receiver(
        &format!("srt://127.0.0.1:{p1}?streamid=lstID7&passphrase=lstPASS-0123"),
        &ff_out,
        &dir.path().join("caller.log"),
    );
    let slt_out = dir.path().join("slt.ts");
    let mut slt = srt_receiver(
        &format!("srt://127.0.0.1:{p2}?passphrase=lstPASS-4567&pbkeylen=32"),
        &slt_out,
    );
    for id in [ff_relay, slt_relay] {
        wait_relay(&server, id, "went live", in_state("live"));
    }
    server.wait_log_all(&["SRT receiver called in", "peer=127.0.0.1:"], T);
    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    ff.wait(T);
    slt.wait(T);
    assert_source_tail(&src, &ff_out, 60, false, "ffmpeg caller");
    assert_source_tail(&src, &slt_out, 60, true, "srt-live-transmit caller");
    assert_no_secret(&server, &["lstPASS-0123", "lstPASS-4567", "lstID7"]);
    server.assert_no_panic();
}
