//! RTMPE and RTMPTE (Adobe's encrypted RTMP: C0 = 6, a Diffie-Hellman key
//! exchange inside the digest handshake, then RC4 on every byte; RTMPTE is
//! the same byte stream inside the RTMPT tunnel) against librtmp, the only
//! client that speaks them here (Debian's ffmpeg is built without
//! librtmp): GStreamer's `rtmpsink` publishes and rtmpdump plays over
//! both; `rtmp.rtmpe = false` turns both away (and SIGHUP turns them on
//! and off); the connection's protocol shows in the log, the auth webhook
//! and `/metrics`; castgate relays to another castgate over rtmpe:// and
//! pulls a source from an rtmpe:// URL.
//!
//! RTMPE shares the RTMP port (C0 tells the variants apart); RTMPTE goes
//! through the RTMPT tunnel on the HTTP port. The hostile handshakes
//! (C0 = 6 with a C1 that has no digest, or cut short; C0 = 8 or 9) are in
//! `malformed.rs`; RTMPE inside TLS (refused) in `tls_rtmpt.rs`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;
use crate::librtmp::*;
use crate::ops::{scrape, value, Received, Receiver};
use crate::relay::{create_relay, wait_relay, Proc};
use crate::sources::{create_source, start_castgate, wait_ended, wait_source};

const T: Duration = Duration::from_secs(90);

/// `rtmpe://HOST:PORT/KEY` on castgate's RTMP port.
fn rtmpe_url(server: &Castgate, key: &str) -> String {
    format!("rtmpe://{}/{key}", server.rtmp)
}

/// `rtmpte://HOST:PORT/KEY` on castgate's HTTP port (the RTMPT tunnel).
fn rtmpte_url(server: &Castgate, key: &str) -> String {
    format!("rtmpte://{}/{key}", server.http)
}

/// GStreamer's rtmpsink publishes the fixture to `url` (over `proto`):
/// castgate logs the publish's end over `proto` with every frame, and the
/// stream's HLS and DASH hold every frame of the source, decode cleanly
/// and keep the publisher's timestamps.
fn gst_publishes(url: impl Fn(&Castgate, &str) -> String, proto: &str) {
    let src = fixture(25);
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1"), SHORT_RTMPT_SESSIONS]);
    let dir = tempdir();
    let sent = dir.path().join("sent.flv");
    let key = format!("live/gst{proto}");
    let location = format!("location={}", url(&server, &key));
    let mut gst = gst_publish(&src, &["rtmpsink", &location], &sent);
    let frames = framemd5(&src).len();
    expect_gst_publish(&server, &mut gst, &key, proto, frames);
    let what = format!("GStreamer's rtmpsink publish over {proto}");
    assert_hls_holds_gst_publish(&server, &key, &src, &sent, &format!("HLS of {what}"));
    assert_dash_holds_gst_publish(&server, &key, &src, &sent, &format!("DASH of {what}"));
    server.assert_no_panic();
}

/// GStreamer's librtmp sink publishes over rtmpe://.
#[test]
fn gstreamer_rtmpsink_publishes_over_rtmpe() {
    gst_publishes(rtmpe_url, "rtmpe");
}

/// GStreamer's librtmp sink publishes over rtmpte://.
#[test]
fn gstreamer_rtmpsink_publishes_over_rtmpte() {
    gst_publishes(rtmpte_url, "rtmpte");
}

/// rtmpdump plays over rtmpe://, started before an ffmpeg publisher over
/// plain rtmp://: every packet with the publisher's timestamps and
/// payloads, ending with the stream.
#[test]
fn rtmpdump_plays_over_rtmpe() {
    let server = Castgate::start(&[]);
    let url = rtmpe_url(&server, "live/dumpe");
    rtmpdump_plays(&server, &url, "live/dumpe", "rtmpe", &fixture(24));
    server.assert_no_panic();
}

/// rtmpdump plays over rtmpte://, as over rtmpe://.
#[test]
fn rtmpdump_plays_over_rtmpte() {
    let server = Castgate::start(&[]);
    let url = rtmpte_url(&server, "live/dumpte");
    rtmpdump_plays(&server, &url, "live/dumpte", "rtmpte", &fixture(24));
    server.assert_no_panic();
}

/// The log line of a C0 = 6 client turned away by `rtmp.rtmpe = false`.
const TURNED_OFF: &str =
    "RTMPE (encrypted RTMP, version byte 6) is turned off (rtmp.rtmpe = false)";

/// rtmpdump over `url` (rtmpe:// or rtmpte://) while RTMPE is turned off:
/// it fails, and castgate logs why (the `n`th such line); the client got
/// no further than the handshake.
fn rtmpdump_refused(server: &Castgate, url: &str, key: &str, n: usize) {
    let dir = tempdir();
    let out = dir.path().join("refused.flv");
    let mut player = Proc(rtmpdump(url, &out), "rtmpdump");
    let status = wait_child(
        &mut player.0,
        T,
        &format!("rtmpdump {url} (RTMPE turned off)"),
    );
    let said = stderr_of(&mut player.0);
    assert!(
        !status.success(),
        "rtmpdump {url} succeeded with RTMPE turned off: {said}"
    );
    assert!(
        server.wait_count(&[TURNED_OFF], n, T),
        "no log line (the {n}th) with {TURNED_OFF:?} for {url} (rtmpdump said: {said}); log:\n{}",
        server.lines_with(&[""]).join("\n")
    );
    assert_eq!(
        server.count_log(&["play requested", &format!("stream=\"{key}\"")]),
        0,
        "the refused RTMPE client got as far as play (rtmpdump said: {said})"
    );
}

/// With `rtmp.rtmpe = false`, rtmpdump over rtmpe:// and over rtmpte://
/// fails and castgate logs why, while plain RTMP on the same port goes
/// on: ffmpeg publishes every frame.
#[test]
fn rtmpe_turned_off_refuses_version_6_and_keeps_plain_rtmp() {
    let server = Castgate::start(&[("CASTGATE__RTMP__RTMPE", "false")]);
    rtmpdump_refused(&server, &rtmpe_url(&server, "live/off"), "live/off", 1);
    // The setting covers RTMPTE too (the same bytes in the tunnel).
    rtmpdump_refused(&server, &rtmpte_url(&server, "live/offt"), "live/offt", 2);

    let src = fixture(24);
    let mut publisher = Proc(publish(&src, &server.url("live/plain"), &[]), "publisher");
    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    let frames = framemd5(&src).len();
    let ended = server.wait_log_all(&["publish ended", "stream=\"live/plain\""], T);
    assert!(
        ended.contains("proto=\"rtmp\"") && ended.contains(&format!("frames={frames} ")),
        "{ended}"
    );
    server.assert_no_panic();
}

/// `rtmp.rtmpe` is live: SIGHUP turns RTMPE on (rtmpdump then plays over
/// rtmpe:// every packet) and off again (refused again), without a
/// restart.
#[test]
fn sighup_turns_rtmpe_on_and_off() {
    let dir = tempdir();
    let cfg = dir.path().join("castgate.toml");
    let set = |on: bool| std::fs::write(&cfg, format!("[rtmp]\nrtmpe = {on}\n")).unwrap();
    set(false);
    let server = Castgate::start_with_args(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    let hup = |n: usize| {
        // SAFETY: kill(2) with a valid pid and signal number has no memory effects.
        assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
        assert!(
            server.wait_count(&["SIGHUP: config reloaded"], n, T),
            "no reload {n}; log:\n{}",
            server.lines_with(&[""]).join("\n")
        );
    };
    rtmpdump_refused(&server, &rtmpe_url(&server, "live/h1"), "live/h1", 1);
    set(true);
    hup(1);
    let url = rtmpe_url(&server, "live/h2");
    rtmpdump_plays(&server, &url, "live/h2", "rtmpe", &fixture(24));
    set(false);
    hup(2);
    rtmpdump_refused(&server, &rtmpe_url(&server, "live/h3"), "live/h3", 2);
    server.assert_no_panic();
}

/// castgate pulls a source from an rtmpe:// URL (its own RTMP port, as
/// another castgate's): the upstream sees an RTMPE player, the source
/// reports its protocol as rtmpe, and the copy's HLS holds every frame.
#[test]
fn castgate_pulls_a_source_over_rtmpe() {
    let server = start_castgate(&[("CASTGATE__RTMP__PLAY_WAIT_SECS", "30")]);
    let src = fixture(24);
    let id = create_source(
        &server,
        json!({"stream": "live/copy", "url": rtmpe_url(&server, "live/orig")}),
    );
    server.wait_log_all(
        &["play requested", "stream=\"live/orig\"", "proto=\"rtmpe\""],
        T,
    );
    let mut publisher = Proc(publish(&src, &server.url("live/orig"), &[]), "publisher");
    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    let r = wait_source(&server, id, "ended", |r| {
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("upstream stream ended"))
    });
    assert_eq!(r["protocol"], "rtmpe", "{r}");
    wait_ended(&server, "live/copy");
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/copy/index.m3u8"),
        "HLS of a stream pulled over rtmpe",
    );
    server.assert_no_panic();
}

/// The `castgate_connections` gauge for `protocol` and `state` (absent: 0).
fn connections(server: &Castgate, protocol: &str, state: &str) -> f64 {
    value(
        &scrape(server),
        "castgate_connections",
        &[("protocol", protocol), ("state", state)],
    )
    .unwrap_or(0.0)
}

/// Polls `/metrics` until the RTMPE and RTMPTE publishing gauges are
/// (`rtmpe`, `rtmpte`); panics with the page on timeout.
fn wait_publishing(server: &Castgate, rtmpe: f64, rtmpte: f64) {
    let deadline = Instant::now() + T;
    loop {
        let got = (
            connections(server, "rtmpe", "publishing"),
            connections(server, "rtmpte", "publishing"),
        );
        if got == (rtmpe, rtmpte) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "castgate_connections{{state=\"publishing\"}}: rtmpe and rtmpte {got:?}, \
             want {:?}:\n{}",
            (rtmpe, rtmpte),
            http_get(server.http, "/metrics").text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What `/api/v1/streams` says `stream` publishes over.
fn api_protocol(server: &Castgate, stream: &str) -> Value {
    let r = http_get(server.http, "/api/v1/streams");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("JSON stream list");
    v["streams"]
        .as_array()
        .expect("a stream list")
        .iter()
        .find(|s| s["stream"] == stream)
        .unwrap_or_else(|| panic!("{stream} is not in the stream list: {v}"))["protocol"]
        .clone()
}

/// Encrypted publishers are named as what they are (`rtmpe`, `rtmpte`,
/// never plain rtmp/rtmpt) by the auth webhook's request, the
/// `stream.started` and `stream.ended` events, the API's stream list and
/// `/metrics` (counted while they publish, no longer once they stop). The
/// publishers are live GStreamer sources that run until interrupted, so
/// they are certainly live while the API and `/metrics` are read.
#[test]
fn encrypted_publishers_show_in_the_webhooks_api_and_metrics() {
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let cfg = dir.path().join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\npublish = \"webhook\"\nwebhook_url = \"{}\"\n\
             [webhooks]\nurls = [\"{}\"]\n",
            hook.url("/auth"),
            hook.url("/events")
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[SHORT_RTMPT_SESSIONS],
    );
    let mut enc = Proc(
        gst_live_publish(&rtmpe_url(&server, "live/enc")),
        "GStreamer over rtmpe",
    );
    let mut tun = Proc(
        gst_live_publish(&rtmpte_url(&server, "live/tun")),
        "GStreamer over rtmpte",
    );
    // The JSON bodies the receiver got at `path`.
    let got = |path: &str| -> Vec<Value> {
        hook.requests()
            .iter()
            .filter(|r| r.path == path)
            .map(Received::json)
            .collect()
    };
    // The first `kind` event about `stream` among `reqs`.
    let event = |reqs: &[Received], kind: &str, stream: &str| -> Option<Value> {
        reqs.iter()
            .filter(|r| r.path == "/events")
            .map(Received::json)
            .find(|v| v["type"] == kind && v["stream"] == stream)
    };
    for (gst, key, proto) in [(&mut enc, "enc", "rtmpe"), (&mut tun, "tun", "rtmpte")] {
        let stream = format!("live/{key}");
        let line = wait_log_with_peers(
            &server,
            &mut [(&mut gst.0, gst.1)],
            &["publish started", &format!("stream=\"{stream}\"")],
        );
        assert!(line.contains(&format!("proto=\"{proto}\"")), "{line}");
        // The webhook allowed the publish, so it was asked first.
        let v = got("/auth")
            .into_iter()
            .find(|v| v["action"] == "publish" && v["key"] == key)
            .unwrap_or_else(|| {
                panic!(
                    "{stream} started without an auth request: {:#?}",
                    hook.requests()
                )
            });
        assert_eq!(v["app"], "live", "{v}");
        assert_eq!(v["protocol"], proto, "the auth request for {stream}: {v}");
        let reqs = hook.wait(&format!("stream.started of {stream}"), |g| {
            event(g, "stream.started", &stream).is_some()
        });
        let v = event(&reqs, "stream.started", &stream).unwrap();
        assert_eq!(v["data"]["protocol"], proto, "stream.started: {v}");
        assert_eq!(api_protocol(&server, &stream), proto, "the API's {stream}");
    }
    wait_publishing(&server, 1.0, 1.0);
    for proto in ["rtmp", "rtmpt"] {
        assert_eq!(
            connections(&server, proto, "publishing"),
            0.0,
            "encrypted publishers counted as {proto}"
        );
    }

    for (gst, key, proto) in [(&mut enc, "enc", "rtmpe"), (&mut tun, "tun", "rtmpte")] {
        let stream = format!("live/{key}");
        interrupt(&gst.0);
        let status = gst.wait(T);
        assert!(
            status.success(),
            "GStreamer's live {proto} publish did not end cleanly ({status}): {}",
            output_of(&mut gst.0)
        );
        let ended = server.wait_log_all(&["publish ended", &format!("stream=\"{stream}\"")], T);
        assert!(ended.contains(&format!("proto=\"{proto}\"")), "{ended}");
        let reqs = hook.wait(&format!("stream.ended of {stream}"), |g| {
            event(g, "stream.ended", &stream).is_some()
        });
        let v = event(&reqs, "stream.ended", &stream).unwrap();
        assert_eq!(v["data"]["protocol"], proto, "stream.ended: {v}");
    }
    wait_publishing(&server, 0.0, 0.0);
    server.assert_no_panic();
}

/// A relay to an rtmpe:// target: a second castgate receives the stream
/// over RTMPE (its log says so) with every frame, and its HLS holds them
/// all. The relay keeps its scheme in the API.
#[test]
fn relay_to_an_rtmpe_target_on_another_castgate() {
    let src = fixture(24);
    let dest = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let server = Castgate::start_loopback_egress(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let port = dest.rtmp.port();
    let relay = create_relay(
        &server,
        json!({"stream": "live/cam", "target": format!("rtmpe://127.0.0.1:{port}/relayed/cam")}),
    );
    assert_eq!(
        relay["target"],
        format!("rtmpe://127.0.0.1:{port}/relayed/***"),
        "{relay}"
    );
    let id = relay["id"].as_u64().unwrap();

    let mut publisher = publish(&src, &server.url("live/cam"), &[]);
    dest.wait_log_all(
        &[
            "publish started",
            "stream=\"relayed/cam\"",
            "proto=\"rtmpe\"",
        ],
        T,
    );
    let status = wait_child(&mut publisher, T, "publisher");
    assert!(status.success(), "publisher: {}", stderr_of(&mut publisher));
    let frames = framemd5(&src).len();
    let ended = dest.wait_log_all(&["publish ended", "stream=\"relayed/cam\""], T);
    assert!(
        ended.contains("proto=\"rtmpe\"") && ended.contains(&format!("frames={frames} ")),
        "{ended}"
    );
    dest.wait_log_all(&["packaging ended", "stream=\"relayed/cam\""], T);
    assert_holds_every_frame(
        &src,
        &dest.http_url("relayed/cam/index.m3u8"),
        "HLS of the stream relayed over rtmpe",
    );
    // The stream ended: the relay waits for the next one, with no error.
    let r = wait_relay(&server, id, "waited again", |r| r["state"] == "waiting");
    assert!(r["last_error"].is_null(), "{r}");
    server.assert_no_panic();
    dest.assert_no_panic();
}
