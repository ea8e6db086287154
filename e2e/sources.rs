//! Pulled sources against real peers: castgate plays a stream from
//! nginx-rtmp (ffmpeg publishes into nginx) and calls an ffmpeg SRT
//! listener, publishes what it gets (HLS holds the frames), reconnects when
//! the upstream ends or is killed and comes back, pulls an on-demand
//! source only while it is watched (RTMP player, HLS requests), and stops
//! a deleted source. castgate dials loopback only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;
use crate::relay::{api, free_udp_port, wait_bound, Nginx, Proc};

const T: Duration = Duration::from_secs(60);

pub(crate) fn start_castgate(extra: &[(&str, &str)]) -> Castgate {
    let mut env = vec![
        ("CASTGATE__PACKAGE__GRACE_SECS", "1"),
        ("CASTGATE__RELAY__BACKOFF_INITIAL_SECS", "0.5"),
        ("CASTGATE__RELAY__BACKOFF_MAX_SECS", "1"),
        ("CASTGATE__RELAY__CONNECT_TIMEOUT_SECS", "30"),
        ("CASTGATE__SOURCE__ON_DEMAND_IDLE_SECS", "1"),
        ("CASTGATE__SOURCE__MEDIA_TIMEOUT_SECS", "5"),
    ];
    env.extend_from_slice(extra);
    Castgate::start_loopback_egress(&env)
}

pub(crate) fn create_source(server: &Castgate, body: Value) -> u64 {
    let (status, r) = api(server, "POST", "/sources", Some(&body), None);
    assert_eq!(status, 201, "POST /sources {body}: {r}");
    r["id"].as_u64().expect("an id")
}

/// Polls a source until `pred` holds; panics with the source and the log.
pub(crate) fn wait_source(
    server: &Castgate,
    id: u64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (status, r) = api(server, "GET", &format!("/sources/{id}"), None, None);
        assert_eq!(status, 200, "source {id}: {r}");
        if pred(&r) {
            return r;
        }
        if Instant::now() >= deadline {
            panic!(
                "source {id} never {what}: {r}\nlog:\n{}",
                server.lines_with(&[""]).join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn in_state(state: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["state"] == state
}

/// Waits until the stream's HLS video playlist is ended.
pub(crate) fn wait_ended(server: &Castgate, key: &str) {
    let deadline = Instant::now() + T;
    loop {
        let r = http_get(server.http, &format!("/{key}/video.m3u8"));
        if r.status == 200 && r.text().contains("#EXT-X-ENDLIST") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never ended: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn publish_into(file: &Path, url: &str, input_opts: &[&str]) -> Proc {
    require("ffmpeg");
    Proc(publish(file, url, input_opts), "ffmpeg publisher")
}

/// `ffmpeg -re -i FILE -c copy -f mpegts srt://127.0.0.1:PORT?mode=listener`:
/// an SRT sender waiting for a caller.
fn ffmpeg_srt_listener(file: &Path, port: u16, opts: &str) -> Proc {
    require("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!(
            "srt://127.0.0.1:{port}?mode=listener&linger=5{opts}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");
    let mut p = Proc(child, "ffmpeg SRT listener");
    wait_bound(true, port, &mut p);
    p
}

fn assert_no_secret(server: &Castgate, secrets: &[&str]) {
    let log = server.lines_with(&[""]).join("\n");
    let (_, list) = api(server, "GET", "/sources", None, None);
    let shown = list.to_string();
    for s in secrets {
        assert!(!log.contains(s), "{s} in the log");
        assert!(!shown.contains(s), "{s} in the API: {shown}");
    }
}

/// castgate plays `live/up` from nginx-rtmp before anyone publishes there;
/// ffmpeg publishes the fixture into nginx: castgate's HLS of the pulled
/// stream holds every frame. The upstream publisher ending is a reconnect
/// (backoff, then live again with the next publisher, counted); DELETE
/// stops the source and ends the stream. The stream key stays secret.
#[test]
fn pulls_from_nginx_rtmp_reconnects_when_the_upstream_restarts_and_stops_on_delete() {
    let dir = tempdir();
    let nginx = Nginx::start(dir.path());
    let server = start_castgate(&[]);
    let src = fixture(3);
    let url = nginx.url("upKEY9?token=tokSECRET");
    let id = create_source(
        &server,
        json!({"stream": "live/pulled", "url": url, "on_demand": false}),
    );
    server.wait_log_all(&["source playing"], T);
    let r = wait_source(&server, id, "connecting", in_state("connecting"));
    assert_eq!(r["protocol"], "rtmp");
    assert_eq!(r["origin"], "api");
    assert!(r["url"].as_str().unwrap().ends_with("/live/***"), "{r}");

    let mut first = publish_into(&src, &url, &[]);
    wait_source(&server, id, "live", in_state("live"));
    let status = first.wait(T);
    assert!(status.success(), "publisher: {}", stderr_of(&mut first.0));
    // The upstream publisher left. nginx-rtmp says nothing to its players
    // by default (no publish_notify): castgate notices the silence after
    // source.media_timeout_secs, ends the stream, backs off and reconnects.
    assert!(server.wait_count(&["source state changed", "from=Live", "to=Backoff"], 1, T));
    let r = wait_source(&server, id, "reconnected", |r| {
        r["reconnects"].as_u64() >= Some(1)
    });
    assert!(
        r["last_error"]
            .as_str()
            .unwrap()
            .contains("nothing received for 5.0 s"),
        "{r}"
    );
    wait_ended(&server, "live/pulled");
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/pulled/index.m3u8"),
        "HLS of the pulled stream",
    );
    let r = wait_source(&server, id, "any", |_| true);
    assert!(r["frames"].as_u64().unwrap() >= 300, "{r}");
    assert!(r["bytes"].as_u64().unwrap() > 100_000, "{r}");

    // A new publisher upstream, killed mid-stream, then another.
    let mut second = publish_into(&src, &url, &["-stream_loop", "-1"]);
    wait_source(&server, id, "live again", in_state("live"));
    let before = wait_source(&server, id, "any", |_| true)["reconnects"]
        .as_u64()
        .unwrap();
    second.kill();
    assert!(
        server.wait_count(&["source state changed", "from=Live", "to=Backoff"], 2, T),
        "no backoff after the kill"
    );
    let _third = publish_into(&src, &url, &["-stream_loop", "-1"]);
    let r = wait_source(&server, id, "live after the kill", in_state("live"));
    assert!(r["reconnects"].as_u64().unwrap() > before, "{r}");
    server.wait_log_all(&["pulled publish started", "live/pulled"], T);

    let (status, _) = api(&server, "DELETE", &format!("/sources/{id}"), None, None);
    assert_eq!(status, 204);
    let (status, _) = api(&server, "GET", &format!("/sources/{id}"), None, None);
    assert_eq!(status, 404);
    server.wait_log_all(&["source stopped"], T);
    wait_ended(&server, "live/pulled");
    assert_no_secret(&server, &["upKEY9", "tokSECRET"]);
    server.assert_no_panic();
}

/// castgate pulls a stream from castgate (another instance's RTMP, here
/// its own under another name) that is not published yet: the RTMP server
/// keeps the play waiting, ffmpeg publishes, the copy's HLS holds every
/// frame, and the upstream's end (NetStream.Play.UnpublishNotify) is seen
/// at once and is a reconnect.
#[test]
fn pulls_from_castgate_and_the_upstream_end_is_a_reconnect() {
    let server = start_castgate(&[("CASTGATE__RTMP__PLAY_WAIT_SECS", "30")]);
    let src = fixture(7);
    let id = create_source(
        &server,
        json!({"stream": "live/copy", "url": server.url("live/orig")}),
    );
    server.wait_log_all(&["play requested", "live/orig"], T);
    let mut publisher = publish_into(&src, &server.url("live/orig"), &[]);
    wait_source(&server, id, "live", in_state("live"));
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
    assert!(r["frames"].as_u64().unwrap() >= 300, "{r}");
    wait_ended(&server, "live/copy");
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/copy/index.m3u8"),
        "HLS of a stream pulled from castgate",
    );
    assert!(server.wait_count(&["source state changed", "from=Live", "to=Backoff"], 1, T));
    server.assert_no_panic();
}

/// castgate calls an ffmpeg SRT listener (stream id, passphrase, latency
/// in the URL): HLS holds every frame. When ffmpeg is done and a new
/// listener comes up on the same port, castgate reconnects. The stream id
/// and passphrase stay secret.
#[test]
fn pulls_from_an_ffmpeg_srt_listener_and_reconnects() {
    let server = start_castgate(&[("CASTGATE__RELAY__CONNECT_TIMEOUT_SECS", "5")]);
    let src = fixture(4);
    let port = free_udp_port();
    let pass = "srcPASS-0123456789";
    let opts = format!("&passphrase={pass}&pbkeylen=16");
    let mut first = ffmpeg_srt_listener(&src, port, &opts);
    let url = format!("srt://127.0.0.1:{port}?streamid=sidSECRET42&passphrase={pass}&latency=200");
    let id = create_source(&server, json!({"stream": "live/srtpull", "url": url}));
    let r = wait_source(&server, id, "live", in_state("live"));
    assert_eq!(r["protocol"], "srt");
    let status = first.wait(T);
    assert!(status.success(), "ffmpeg: {}", stderr_of(&mut first.0));
    wait_ended(&server, "live/srtpull");
    assert_holds_every_frame(
        &src,
        &server.http_url("/live/srtpull/index.m3u8"),
        "HLS of the pulled SRT stream",
    );
    assert!(server.wait_count(&["source state changed", "from=Live", "to=Backoff"], 1, T));
    let r = wait_source(&server, id, "any", |_| true);
    assert!(r["frames"].as_u64().unwrap() >= 300, "{r}");
    assert!(r["last_error"].as_str().unwrap().contains("left"), "{r}");
    let first_frames = r["frames"].as_u64().unwrap();
    let _second = ffmpeg_srt_listener(&src, port, &opts);
    assert!(
        server.wait_count(&["source state changed", "to=Live"], 2, T),
        "never live again:\n{}",
        server.lines_with(&["source"]).join("\n")
    );
    let r = wait_source(&server, id, "counted", |r| {
        r["frames"].as_u64() > Some(first_frames)
    });
    assert!(r["reconnects"].as_u64() >= Some(1), "{r}");
    assert!(r["url"].as_str().unwrap().contains("streamid=***"), "{r}");
    let (status, _) = api(&server, "DELETE", &format!("/sources/{id}"), None, None);
    assert_eq!(status, 204);
    wait_ended(&server, "live/srtpull");
    assert_no_secret(&server, &["sidSECRET42", pass]);
    server.assert_no_panic();
}

/// An on-demand source pulls nothing while nobody watches (`idle`, no
/// bytes). An HLS request wakes it: the first is answered 503 with
/// Retry-After, a retry gets the playlist; with no more requests it goes
/// back to `idle` and the stream ends. An RTMP player of its stream wakes
/// it too and gets the stream; `idle` again after the player leaves.
#[test]
fn an_on_demand_source_pulls_only_while_watched() {
    let dir = tempdir();
    let nginx = Nginx::start(dir.path());
    let server = start_castgate(&[("CASTGATE__RTMP__PLAY_WAIT_SECS", "30")]);
    let src = fixture(5);
    let url = nginx.url("od");
    let _upstream = publish_into(&src, &url, &["-stream_loop", "-1"]);
    let id = create_source(
        &server,
        json!({"stream": "live/od", "url": url, "on_demand": true}),
    );
    let r = wait_source(&server, id, "idle", in_state("idle"));
    assert_eq!(r["bytes"], 0, "{r}");
    assert_eq!(r["on_demand"], true);

    // HLS wakes it: 503 + Retry-After first, then the playlist.
    let first = http_get(server.http, "/live/od/index.m3u8");
    assert_eq!(first.status, 503, "{}", first.text());
    assert_eq!(first.header("retry-after"), Some("1"));
    let deadline = Instant::now() + T;
    loop {
        let r = http_get(server.http, "/live/od/video.m3u8");
        if r.status == 200 && r.text().contains("#EXTINF") {
            break;
        }
        assert!(
            [200, 404, 503].contains(&r.status),
            "{} {}",
            r.status,
            r.text()
        );
        assert!(Instant::now() < deadline, "HLS never came: {}", r.text());
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_source(&server, id, "live for HLS", in_state("live"));
    // Nobody requests any more: back to idle, and the stream ends (asked
    // through the API: an HLS request would wake the source again).
    wait_source(&server, id, "idle after HLS", in_state("idle"));
    let (status, r) = api(&server, "GET", "/streams/live/od", None, None);
    assert_eq!(status, 404, "{r}");
    let pulled = wait_source(&server, id, "any", |_| true)["bytes"]
        .as_u64()
        .unwrap();
    assert!(pulled > 0);

    // An RTMP player wakes it.
    let out = dir.path().join("played.flv");
    let mut player = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(server.url("live/od"))
        .args(["-t", "3", "-c", "copy", "-f", "flv"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");
    wait_source(&server, id, "live for the player", in_state("live"));
    let status = wait_child(&mut player, T, "ffmpeg player");
    assert!(status.success(), "player: {}", stderr_of(&mut player));
    let played = framemd5_of(&out, "0:v");
    assert!(
        played.len() >= 60,
        "the player got {} pictures",
        played.len()
    );
    let r = wait_source(&server, id, "idle after the player", in_state("idle"));
    assert!(r["bytes"].as_u64().unwrap() > pulled, "{r}");
    assert!(r["reconnects"].as_u64().unwrap() >= 1, "{r}");

    server.assert_no_panic();
}

/// An SRT player of an on-demand source's stream is admitted although the
/// stream is not live yet, wakes the source and receives it; the source is
/// idle again once the player left.
#[test]
fn an_srt_player_wakes_an_on_demand_source() {
    let dir = tempdir();
    let nginx = Nginx::start(dir.path());
    let server = start_castgate(&[]);
    let srt = server.listening("SRT");
    let src = fixture(6);
    let url = nginx.url("od2");
    let _upstream = publish_into(&src, &url, &["-stream_loop", "-1"]);
    let id = create_source(
        &server,
        json!({"stream": "live/od2", "url": url, "on_demand": true}),
    );
    wait_source(&server, id, "idle", in_state("idle"));
    let out = dir.path().join("srt-played.ts");
    let log = dir.path().join("srt-player.log");
    let mut player = crate::srt::ffmpeg_srt_receiver(
        &format!("srt://{srt}?streamid=#!::r=live/od2,m=request"),
        &out,
        &log,
    );
    let r = wait_source(&server, id, "live for the SRT player", in_state("live"));
    assert_eq!(r["on_demand"], true);
    // The player writes what it received (after probing it).
    let deadline = Instant::now() + T;
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 100_000 {
        assert!(
            Instant::now() < deadline,
            "the SRT player wrote nothing: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    player.kill();
    wait_source(&server, id, "idle after the SRT player", in_state("idle"));
    let got = framemd5_of(&out, "0:v");
    assert!(
        got.len() >= 30,
        "the SRT player got {} pictures: {}",
        got.len(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    server.assert_no_panic();
}

/// Each state change is a `source.state_changed` webhook event naming the
/// stream, the redacted URL and the error, never the stream key.
#[test]
fn state_changes_are_webhook_events_without_secrets() {
    use crate::ops::{Received, Receiver};
    let hook = Receiver::start(std::sync::Arc::new(|_: &Received| (200, String::new())));
    let dir = tempdir();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[webhooks]\nurls = [\"{}\"]\n", hook.url("/events")),
    )
    .unwrap();
    let server = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[
            ("CASTGATE__RELAY__BACKOFF_INITIAL_SECS", "0.5"),
            ("CASTGATE__RELAY__BACKOFF_MAX_SECS", "1"),
        ],
    );
    let dead = ClosedPort::new();
    let id = create_source(
        &server,
        json!({"stream": "live/dead", "url": format!("rtmp://127.0.0.1:{}/app/KEYsecret77", dead.port)}),
    );
    let changes = |g: &[Received]| -> Vec<Value> {
        g.iter()
            .map(|r| r.json())
            .filter(|v| v["type"] == "source.state_changed")
            .collect()
    };
    let got = hook.wait("a source backing off", |g| {
        changes(g).iter().any(|v| v["data"]["to"] == "backoff")
    });
    let events = changes(&got);
    let first = &events[0];
    assert_eq!(first["stream"], "live/dead", "{first}");
    assert_eq!(first["data"]["source"], id);
    assert_eq!(
        first["data"]["url"],
        format!("rtmp://127.0.0.1:{}/app/***", dead.port)
    );
    let backoff = events
        .iter()
        .find(|v| v["data"]["to"] == "backoff")
        .unwrap();
    assert_eq!(backoff["data"]["from"], "connecting", "{backoff}");
    assert!(
        backoff["data"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{backoff}"
    );
    for r in &got {
        assert!(!String::from_utf8_lossy(&r.body).contains("KEYsecret77"));
    }
    assert_no_secret(&server, &["KEYsecret77"]);
}

/// The API refuses bad sources with the reason and, without an egress
/// allowance, a loopback address (castgate would dial it for a client).
#[test]
fn source_api_validation_and_egress_policy() {
    let server = Castgate::start(&[]);
    for (body, want, status) in [
        (
            json!({"stream": "live/a", "url": "rtmp://127.0.0.1:1935/live/KEYx"}),
            "egress",
            400,
        ),
        (
            json!({"stream": "live/a", "url": "http://x/y"}),
            "unknown scheme",
            422,
        ),
        (
            json!({"stream": "live/a", "url": "srt://:9000?mode=listener"}),
            "calls out",
            422,
        ),
        (
            json!({"stream": "bad", "url": "rtmp://h/app/k"}),
            "bad stream",
            422,
        ),
    ] {
        let (got, r) = api(&server, "POST", "/sources", Some(&body), None);
        assert_eq!(got, status, "{body}: {r}");
        let e = r["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(e.contains(want), "{body}: {r}");
        assert!(!e.contains("keyx"), "{r}");
    }
    let (status, r) = api(&server, "GET", "/sources", None, None);
    assert_eq!(status, 200);
    assert_eq!(r["sources"], json!([]));
    let (status, _) = api(&server, "DELETE", "/sources/7", None, None);
    assert_eq!(status, 404);
    let (_, doc) = api(&server, "GET", "/openapi.json", None, None);
    assert!(
        doc["paths"]["/sources"]["post"].is_object(),
        "{}",
        doc["paths"]
    );
    assert!(doc["paths"]["/sources/{id}"]["delete"].is_object());
}
