//! castgate's SRT listener against libsrt peers: ffmpeg and
//! srt-live-transmit publish MPEG-TS into it and play from it, with each
//! stream id form, with and without a passphrase; a wrong passphrase, a
//! malformed stream id and an unauthorised key are refused in the handshake
//! with a reason; an SRT publish is relayed to nginx-rtmp.
//!
//! What HLS and DASH hold is checked against the published file, packet
//! for packet.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::relay::*;
use crate::srt::{assert_source_tail, ffmpeg_srt_receiver};

const T: Duration = Duration::from_secs(60);

fn start_castgate(env: &[(&str, &str)]) -> (Castgate, std::net::SocketAddr) {
    let mut all = vec![("CASTGATE__PACKAGE__GRACE_SECS", "1")];
    all.extend_from_slice(env);
    let server = Castgate::start_loopback_egress(&all);
    let srt = server.listening("SRT");
    (server, srt)
}

/// `ffmpeg -re -i FILE -c copy -f mpegts URL`: an SRT publisher. `linger`
/// makes libsrt send what it holds before closing.
fn ffmpeg_srt_publisher(file: &Path, url: &str) -> Proc {
    require("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "mpegts", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");
    Proc(child, "ffmpeg SRT publisher")
}

/// `file` as MPEG-TS (what an SRT encoder sends).
fn to_ts(file: &Path, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("source.ts");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&out)
        .status()
        .expect("cannot run ffmpeg");
    assert!(status.success());
    out
}

fn srt_url(srt: std::net::SocketAddr, query: &str) -> String {
    format!("srt://{srt}?{query}")
}

/// Waits until the stream's HLS video playlist is ended (the publish is
/// over and packaged).
fn wait_ended(server: &Castgate, key: &str) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let r = http_get(server.http, &format!("/{key}/video.m3u8"));
        if r.status == 200 && r.text().contains("#EXT-X-ENDLIST") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never ended: {} {}\n{}",
            r.status,
            r.text(),
            server.lines_with(&[""]).join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ffmpeg publishes over SRT with the access-control stream id and with
/// MediaMTX's short form at once: both streams' HLS and DASH hold every
/// frame of the source, and the log names the protocol and the peer.
#[test]
fn ffmpeg_publishes_over_srt_into_hls_and_dash() {
    let (server, srt) = start_castgate(&[]);
    let src = fixture(5);
    let mut a = ffmpeg_srt_publisher(
        &src,
        &srt_url(srt, "streamid=#!::r=live/srtA,m=publish&linger=5"),
    );
    let mut b = ffmpeg_srt_publisher(&src, &srt_url(srt, "streamid=publish:live/srtB&linger=5"));
    for p in [&mut a, &mut b] {
        let status = p.wait(T);
        assert!(status.success(), "{}: {}", p.1, stderr_of(&mut p.0));
    }
    for key in ["live/srtA", "live/srtB"] {
        wait_ended(&server, key);
        assert_holds_every_frame(&src, &server.http_url(&format!("/{key}/index.m3u8")), key);
    }
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/srtA/manifest.mpd"),
        "DASH of live/srtA",
    );
    server.wait_log_all(&["publish started", "protocol=\"srt\"", "live/srtA"], T);
    server.wait_log_all(&["SRT publish ended", "live/srtB"], T);
    server.assert_no_panic();
}

/// srt-live-transmit sends a TS file (paced by ffmpeg onto its standard
/// input) as a bare `live/KEY` stream id: HLS and DASH hold every frame.
/// srt-live-transmit sends its input in whole 1316-byte messages and keeps
/// a partial one, and stays connected at the end of its input, so the file
/// is followed by null packets (which carry nothing) and castgate ends the
/// publish after its idle timeout.
#[test]
fn srt_live_transmit_publishes_a_ts_file() {
    require("srt-live-transmit");
    let dir = tempdir();
    let (server, srt) = start_castgate(&[("CASTGATE__SRT__IDLE_TIMEOUT_SECS", "2")]);
    let src = fixture(6);
    let ts = to_ts(&src, dir.path());
    let pad = dir.path().join("null.ts");
    let mut null_packet = vec![0x47, 0x1f, 0xff, 0x10];
    null_packet.resize(188, 0xff);
    std::fs::write(&pad, null_packet.repeat(64)).unwrap();
    let script = format!(
        "ffmpeg -nostdin -v error -re -i '{}' -c copy -f mpegts - && cat '{}'",
        ts.display(),
        pad.display()
    );
    let pacer = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run sh");
    let mut pacer = Proc(pacer, "ffmpeg pacer");
    let stdin = pacer.0.stdout.take().unwrap();
    let slt = Command::new("srt-live-transmit")
        .args(["-q", "-a:no", "file://con"])
        .arg(srt_url(srt, "streamid=live/slt1"))
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run srt-live-transmit");
    let mut slt = Proc(slt, "srt-live-transmit");
    assert!(pacer.wait(T).success());
    server.wait_log_all(
        &[
            "SRT publish ended",
            "nothing received for 2.0 s",
            "live/slt1",
        ],
        T,
    );
    slt.wait(T);
    wait_ended(&server, "live/slt1");
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/slt1/index.m3u8"),
        "srt-live-transmit",
    );
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/slt1/manifest.mpd"),
        "DASH of srt-live-transmit's publish",
    );
    server.assert_no_panic();
}

/// With `[srt] passphrase`, a caller without it and one with another are
/// refused (libsrt's own reason), one with it publishes; a malformed stream
/// id and a player of a stream that is not live are refused with their
/// reasons, named in the log with the peer.
#[test]
fn passphrases_and_bad_stream_ids_are_refused_with_a_reason() {
    let (server, srt) = start_castgate(&[("CASTGATE__SRT__PASSPHRASE", "srt-passphrase-0123")]);
    let src = fixture(7);
    for query in [
        "streamid=live/pass1",
        "streamid=live/pass1&passphrase=another-passphrase",
    ] {
        let mut p = ffmpeg_srt_publisher(&src, &srt_url(srt, query));
        let status = p.wait(T);
        assert!(!status.success(), "{query}: published");
    }
    assert_ne!(http_get(server.http, "/live/pass1/index.m3u8").status, 200);
    let mut bad = ffmpeg_srt_publisher(
        &src,
        &srt_url(srt, "streamid=#!::m=publish&passphrase=srt-passphrase-0123"),
    );
    assert!(!bad.wait(T).success());
    server.wait_log_all(
        &[
            "SRT caller refused",
            "reason=1400",
            "no r= (resource)",
            "peer=127.0.0.1:",
        ],
        T,
    );
    let mut mode = ffmpeg_srt_publisher(
        &src,
        &srt_url(
            srt,
            "streamid=#!::r=live/x,m=bidirectional&passphrase=srt-passphrase-0123",
        ),
    );
    assert!(!mode.wait(T).success());
    server.wait_log_all(&["SRT caller refused", "reason=1405"], T);
    let out = tempdir();
    let mut player = ffmpeg_srt_receiver(
        &srt_url(
            srt,
            "streamid=read:live/nothing&passphrase=srt-passphrase-0123",
        ),
        &out.path().join("p.ts"),
        &out.path().join("p.log"),
    );
    assert!(!player.wait(T).success());
    server.wait_log_all(&["SRT caller refused", "reason=1404", "not live"], T);

    let mut good = ffmpeg_srt_publisher(
        &src,
        &srt_url(
            srt,
            "streamid=live/pass1&passphrase=srt-passphrase-0123&linger=5",
        ),
    );
    assert!(good.wait(T).success(), "{}", stderr_of(&mut good.0));
    wait_ended(&server, "live/pass1");
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/pass1/index.m3u8"),
        "encrypted",
    );
    let log = server.lines_with(&[""]).join("\n");
    assert!(
        !log.contains("srt-passphrase-0123"),
        "the passphrase is logged"
    );
    server.assert_no_panic();
}

/// With publish keys, an SRT publisher sends the key in the resource's
/// query (or as the name); a wrong key is refused with reason 1401 and the
/// key never reaches the log.
#[test]
fn publish_keys_apply_to_srt() {
    let (server, srt) = start_castgate(&[
        ("CASTGATE__AUTH__PUBLISH", "keys"),
        ("CASTGATE__AUTH__PUBLISH_KEYS__LIVE__CAM", "srtKEY-98765"),
    ]);
    let src = fixture(8);
    let mut wrong = ffmpeg_srt_publisher(&src, &srt_url(srt, "streamid=live/cam?key=nope-0000"));
    assert!(!wrong.wait(T).success());
    server.wait_log_all(&["SRT caller refused", "reason=1401"], T);
    let mut right = ffmpeg_srt_publisher(
        &src,
        &srt_url(srt, "streamid=#!::r=live/srtKEY-98765,m=publish&linger=5"),
    );
    assert!(right.wait(T).success(), "{}", stderr_of(&mut right.0));
    wait_ended(&server, "live/cam");
    assert_holds_every_frame(&src, &server.http_url("/live/cam/index.m3u8"), "keyed");
    let log = server.lines_with(&[""]).join("\n");
    assert!(!log.contains("srtKEY-98765"), "the key is logged");
    assert!(!log.contains("nope-0000"), "the wrong key is logged");
    server.assert_no_panic();
}

/// ffmpeg and srt-live-transmit play a live stream over SRT (`m=request`,
/// `read:`): each gets every frame from the keyframe it joined at to the
/// end, decoding clean; an SRT publish is relayed to nginx-rtmp, where
/// ffmpeg plays it over RTMP. The stream has a passphrase of its own, used
/// with AES-128, -192 and -256 and three latencies.
#[test]
fn ffmpeg_and_srt_live_transmit_play_over_srt_and_a_relay_reaches_nginx() {
    require("srt-live-transmit");
    let dir = tempdir();
    // The stream's own passphrase (from a config file: a stream name is no
    // environment variable name), which each peer uses with another AES
    // key length and latency.
    let config = dir.path().join("castgate.toml");
    std::fs::write(
        &config,
        "[srt.passphrases]\n\"live/play1\" = \"play1-passphrase\"\n",
    )
    .unwrap();
    let server = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", config.to_str().unwrap()],
        &[("CASTGATE__PACKAGE__GRACE_SECS", "1")],
    );
    let srt = server.listening("SRT");
    let src = looped_fixture_n(9, 3, dir.path());
    let nginx = Nginx::start(dir.path());
    create_relay(
        &server,
        json!({"stream": "live/play1", "target": nginx.url("play1")}),
    );
    let pass = "passphrase=play1-passphrase";
    let mut publisher = ffmpeg_srt_publisher(
        &src,
        &srt_url(
            srt,
            &format!(
                "streamid=#!::r=live/play1,m=publish&{pass}&pbkeylen=16&latency=400000&linger=5"
            ),
        ),
    );
    server.wait_log_all(&["publish started", "live/play1"], T);
    let ff_out = dir.path().join("ff.ts");
    let mut ff = ffmpeg_srt_receiver(
        &srt_url(
            srt,
            &format!("streamid=#!::r=live/play1,m=request&{pass}&pbkeylen=24"),
        ),
        &ff_out,
        &dir.path().join("ff.log"),
    );
    let slt_out = dir.path().join("slt.ts");
    let mut slt = srt_receiver(
        &srt_url(
            srt,
            &format!("streamid=read:live/play1&{pass}&pbkeylen=32&latency=250"),
        ),
        &slt_out,
    );
    assert!(
        server.wait_count(&["SRT play started", "live/play1"], 2, T),
        "{}",
        server.lines_with(&["srt"]).join("\n")
    );
    // The API and /metrics list the publisher and both players.
    let (status, list) = api(&server, "GET", "/srt", None, None);
    assert_eq!(status, 200, "{list}");
    let sessions = list["sessions"].as_array().cloned().unwrap_or_default();
    let modes: Vec<&str> = sessions.iter().filter_map(|s| s["mode"].as_str()).collect();
    assert_eq!(
        modes.iter().filter(|m| **m == "publish").count(),
        1,
        "{list}"
    );
    assert_eq!(
        modes.iter().filter(|m| **m == "request").count(),
        2,
        "{list}"
    );
    assert!(
        sessions.iter().all(|s| s["stream"] == "live/play1"
            && s["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:"))),
        "{list}"
    );
    let metrics = http_get(server.http, "/metrics").text();
    for line in [
        "castgate_srt_connections{mode=\"publish\"} 1",
        "castgate_srt_connections{mode=\"request\"} 2",
    ] {
        assert!(metrics.contains(line), "no {line} in /metrics:\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("castgate_srt_rtt_ms{") && l.contains("mode=\"publish\"")),
        "{metrics}"
    );
    let rtmp_out = dir.path().join("rtmp.flv");
    // nginx-rtmp keeps a player waiting when its publisher leaves: ffmpeg
    // ends after 3 s without data (and writes what it got).
    let rtmp_player = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-rw_timeout",
            "3000000",
            "-i",
        ])
        .arg(nginx.url("play1"))
        .args(["-copyts", "-c", "copy", "-f", "flv"])
        .arg(&rtmp_out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run ffmpeg");
    let mut rtmp_player = Proc(rtmp_player, "ffmpeg RTMP player");
    assert!(
        publisher.wait(T).success(),
        "{}",
        stderr_of(&mut publisher.0)
    );
    ff.wait(T);
    slt.wait(T);
    rtmp_player.wait(T);
    assert_source_tail(&src, &ff_out, 30, false, "ffmpeg SRT player");
    assert_source_tail(&src, &slt_out, 30, true, "srt-live-transmit SRT player");
    assert_source_tail(
        &src,
        &rtmp_out,
        30,
        false,
        "ffmpeg RTMP player of nginx-rtmp",
    );
    server.assert_no_panic();
}

/// With `auth.publish = "webhook"`, an SRT caller is accepted in the
/// handshake and then asked about: the webhook sees `protocol = "srt"` with
/// the caller's `u=` and `s=`; its refusal closes the caller (logged, the
/// stream never starts) and its rename publishes under the public name.
#[test]
fn the_auth_webhook_decides_srt_publishes() {
    use crate::ops::{Received, Receiver};
    let hook = Receiver::start(std::sync::Arc::new(|r: &Received| {
        let v = r.json();
        match v["key"].as_str().unwrap_or("") {
            "secret-name" => (200, r#"{"name":"hooked"}"#.into()),
            _ => (403, r#"{"error":"no"}"#.into()),
        }
    }));
    let (server, srt) = start_castgate(&[
        ("CASTGATE__AUTH__PUBLISH", "webhook"),
        ("CASTGATE__AUTH__WEBHOOK_URL", &hook.url("/auth")),
    ]);
    let src = fixture(10);
    let mut denied = ffmpeg_srt_publisher(
        &src,
        &srt_url(srt, "streamid=#!::r=live/nope,m=publish,u=mallory"),
    );
    assert!(!denied.wait(T).success(), "a refused publisher went on");
    server.wait_log_all(&["SRT caller refused", "unauthorised", "live/"], T);
    assert_ne!(http_get(server.http, "/live/nope/video.m3u8").status, 200);
    let mut allowed = ffmpeg_srt_publisher(
        &src,
        &srt_url(
            srt,
            "streamid=#!::r=live/secret-name,m=publish,u=alice,s=sess-1&linger=5",
        ),
    );
    assert!(allowed.wait(T).success(), "{}", stderr_of(&mut allowed.0));
    wait_ended(&server, "live/hooked");
    assert_holds_every_frame(&src, &server.http_url("/live/hooked/index.m3u8"), "renamed");
    let asked = hook.wait("two SRT requests", |r| r.len() >= 2);
    let v = asked
        .iter()
        .map(Received::json)
        .find(|v| v["key"] == "secret-name")
        .expect("the webhook was asked about secret-name");
    assert_eq!(v["protocol"], "srt", "{v}");
    assert_eq!(v["action"], "publish", "{v}");
    assert_eq!(v["user"], "alice", "{v}");
    assert_eq!(v["session"], "sess-1", "{v}");
    assert!(
        v["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{v}"
    );
    let log = server.lines_with(&[""]).join("\n");
    assert!(
        !log.contains("secret-name"),
        "the name sent (a possible key) is logged"
    );
    server.assert_no_panic();
}

/// Hostile MPEG-TS over SRT (lost sync, continuity gaps, adaptation fields
/// longer than their packet, truncated packets, an oversized PAT section)
/// from srt-live-transmit, while ffmpeg publishes another stream: each
/// damage is a warning naming the stream, the hostile publish ends
/// cleanly, and the other stream's HLS holds every frame.
#[test]
fn hostile_ts_is_answered_by_warnings_and_other_streams_are_whole() {
    require("srt-live-transmit");
    let dir = tempdir();
    let (server, srt) = start_castgate(&[("CASTGATE__SRT__IDLE_TIMEOUT_SECS", "2")]);
    let good_src = fixture(11);
    let mut good = ffmpeg_srt_publisher(
        &good_src,
        &srt_url(srt, "streamid=publish:live/good&linger=5"),
    );
    let ts = std::fs::read(to_ts(&fixture(12), dir.path())).unwrap();
    let mut hostile = Vec::with_capacity(ts.len() + 65536);
    for (i, p) in ts.chunks(188).enumerate() {
        let mut p = p.to_vec();
        match i % 97 {
            // Bytes between packets: the sync is lost.
            50 => hostile.extend_from_slice(&[0u8; 37]),
            // A continuity counter gap.
            20 => p[3] = (p[3] & 0xf0) | (p[3].wrapping_add(3) & 0x0f),
            // An adaptation field longer than the packet.
            30 => {
                p[3] |= 0x30;
                p[4] = 200;
            }
            // A truncated packet.
            60 => p.truncate(100),
            _ => {}
        }
        if i == 200 {
            // A PAT whose section claims 1023 bytes (at most 1021).
            let mut pat = vec![0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb3, 0xff];
            pat.resize(188, 0xff);
            hostile.extend_from_slice(&pat);
        }
        hostile.extend_from_slice(&p);
    }
    // Null packets after it: srt-live-transmit keeps a partial message.
    let mut null_packet = vec![0x47, 0x1f, 0xff, 0x10];
    null_packet.resize(188, 0xff);
    hostile.extend_from_slice(&null_packet.repeat(64));
    // Through a pipe (srt-live-transmit cannot poll a file), written once
    // it is connected (it drops what it reads before).
    let slt = Command::new("srt-live-transmit")
        .args(["-q", "-a:no", "file://con"])
        .arg(srt_url(srt, "streamid=live/hostile"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run srt-live-transmit");
    let mut slt = Proc(slt, "srt-live-transmit");
    server.wait_log_all(&["publish started", "live/hostile"], T);
    {
        use std::io::Write;
        let mut stdin = slt.0.stdin.take().unwrap();
        stdin.write_all(&hostile).unwrap();
    }
    for warning in [
        "TS sync lost",
        "continuity counter gap",
        "adaptation field longer than the packet",
        "PSI section dropped",
    ] {
        server.wait_log_all(&["SRT publish:", warning, "live/hostile"], T);
    }
    server.wait_log_all(&["SRT publish ended", "live/hostile"], T);
    slt.wait(T);
    assert!(good.wait(T).success(), "{}", stderr_of(&mut good.0));
    wait_ended(&server, "live/good");
    assert_holds_every_frame(
        &good_src,
        &server.http_url("/live/good/index.m3u8"),
        "the good stream",
    );
    server.assert_no_panic();
}
