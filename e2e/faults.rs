//! Faults around a live stream: a publisher killed with SIGKILL or reset
//! mid-segment (with and without a new publisher inside the grace period),
//! and a thousand connections that never finish the handshake.
//!
//! (A player that stops reading, and the connection limit, are in
//! malformed.rs.)

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use castgate::media::flv_file::read_tags;

use crate::harness::*;
use crate::raw::{Raw, Wait};

const T: Duration = Duration::from_secs(60);
/// `package.grace_secs` in these tests.
const GRACE: f64 = 2.0;
/// `package.segment_secs` (the default).
const SEGMENT: f64 = 2.0;

fn start_server() -> Castgate {
    Castgate::start(&[
        ("CASTGATE__PACKAGE__GRACE_SECS", "2"),
        // Every segment of these short streams stays listed.
        ("CASTGATE__PACKAGE__WINDOW", "50"),
    ])
}

fn media_playlist(server: &Castgate, path: &str) -> Option<m3u8_rs::MediaPlaylist> {
    let r = http_get(server.http, path);
    if r.status != 200 {
        return None;
    }
    let text = r.text();
    Some(
        m3u8_rs::parse_media_playlist_res(text.as_bytes())
            .unwrap_or_else(|e| panic!("{path} does not parse: {e:?}\n{text}")),
    )
}

/// Polls the video playlist of `key` until it lists at least `n` segments.
fn wait_segments(server: &Castgate, key: &str, n: usize) -> m3u8_rs::MediaPlaylist {
    let path = format!("/{key}/video.m3u8");
    let deadline = Instant::now() + T;
    loop {
        if let Some(p) = media_playlist(server, &path) {
            if p.segments.len() >= n {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} never listed {n} segments"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stream's video frames so far, from `/metrics`.
pub(crate) fn video_frames(server: &Castgate, key: &str) -> u64 {
    let text = http_get(server.http, "/metrics").text();
    let series = format!("castgate_stream_video_frames_total{{stream=\"{key}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until half a segment of video (at 30 fps) has arrived after a
/// segment was cut: the open segment is then half done, whatever the
/// machine's speed (an event, where a sleep would only hope for it).
fn wait_mid_segment(server: &Castgate, key: &str) -> m3u8_rs::MediaPlaylist {
    let cut = wait_segments(server, key, 2);
    let want = video_frames(server, key) + (SEGMENT * 30.0 / 2.0) as u64;
    let deadline = Instant::now() + T;
    while video_frames(server, key) < want {
        assert!(
            Instant::now() < deadline,
            "{key}: half a segment of video never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cut
}

fn check_manifests(server: &Castgate, key: &str, ended: bool) -> m3u8_rs::MediaPlaylist {
    let mut video = None;
    for track in ["video", "audio"] {
        let path = format!("/{key}/{track}.m3u8");
        let p = media_playlist(server, &path).unwrap_or_else(|| panic!("{path} is gone"));
        assert_eq!(p.end_list, ended, "{path}: EXT-X-ENDLIST");
        for s in &p.segments {
            assert!(
                (s.duration.round() as u64) <= p.target_duration,
                "{path}: EXTINF {} above TARGETDURATION {}",
                s.duration,
                p.target_duration
            );
        }
        if track == "video" {
            video = Some(p);
        }
    }
    let mpd = http_get(server.http, &format!("/{key}/manifest.mpd"));
    assert_eq!(mpd.status, 200, "MPD of {key}");
    let text = mpd.text();
    let mut reader = quick_xml::Reader::from_str(&text);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("the MPD of {key} is not well-formed XML: {e}\n{text}"),
        }
    }
    let kind = if ended { "static" } else { "dynamic" };
    assert!(
        text.contains(&format!("type=\"{kind}\"")),
        "the MPD of {key} should be {kind}:\n{text}"
    );
    video.unwrap()
}

/// `frames=N` of a `publish ended` log line.
fn frames_of(line: &str) -> usize {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("frames="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frames= in {line:?}"))
}

/// Seconds from log line `a` to log line `b` (across midnight too).
fn log_gap(a: &str, b: &str) -> f64 {
    (log_time(b) - log_time(a)).rem_euclid(86_400.0)
}

/// After a publisher vanished mid-segment: the segment it was in is closed
/// at once (listed while the stream is still within its grace period, no
/// ENDLIST yet, manifests valid), the stream ends `GRACE` later with the
/// same segments, and the packaged stream holds every frame castgate
/// received, decoding cleanly. `before` is the video playlist seen before
/// the fault; `ended_line` the publisher's `publish ended` log line.
fn check_cut_stream(
    server: &Castgate,
    key: &str,
    before: &m3u8_rs::MediaPlaylist,
    ended_line: &str,
    source: &[Packet],
) {
    // The open segment is closed by the interruption itself.
    let closed = wait_segments(server, key, before.segments.len() + 1);
    let during = check_manifests(server, key, false);
    assert!(during.segments.len() >= closed.segments.len());
    let last = during.segments.last().unwrap();
    assert!(
        last.duration > 0.0 && f64::from(last.duration) < SEGMENT,
        "the last segment ({} s) should be cut short by the fault",
        last.duration
    );
    // The stream ends after the grace period, not before (how promptly is
    // a matter for benchmarks; the bound only names a lost timer).
    let end_line = server.wait_log_all(&["packaging ended", &format!("stream=\"{key}\"")], T);
    let gap = log_gap(ended_line, &end_line);
    assert!(
        (GRACE - 0.1..GRACE + 20.0).contains(&gap),
        "{key} ended {gap:.2} s after its publisher, grace is {GRACE} s"
    );
    let ended = check_manifests(server, key, true);
    let uris = |p: &m3u8_rs::MediaPlaylist| -> Vec<String> {
        p.segments.iter().map(|s| s.uri.clone()).collect()
    };
    assert_eq!(
        uris(&ended),
        uris(&during),
        "ending the stream must not change its closed segments"
    );
    // Every frame received, in order, decoding cleanly.
    let hls = server.http_url(&format!("{key}/index.m3u8"));
    assert_eq!(decode_errors(&hls), "", "{hls}");
    assert_eq!(
        decode_errors(server.http_url(&format!("{key}/manifest.mpd"))),
        "",
        "MPD of {key}"
    );
    let packaged = framemd5_of(&hls, "0");
    assert_eq!(
        packaged.len(),
        frames_of(ended_line),
        "{key}: packets packaged vs frames received ({ended_line})"
    );
    let video: Vec<Packet> = (0..2)
        .map(|s| track(&packaged, s))
        .find(|t| t.first().is_some_and(|p| p.md5 == track(source, 0)[0].md5))
        .expect("packaged video starts with the source's first frame");
    let src_video = track(source, 0);
    for (i, p) in video.iter().enumerate() {
        assert_eq!(
            p.md5,
            src_video[i % src_video.len()].md5,
            "{key}: video packet {i}"
        );
    }
}

/// ffmpeg publishing in real time is killed with SIGKILL in the middle of a
/// segment: the segment is closed, manifests stay valid, the stream ends
/// after the grace period holding every frame received.
#[test]
fn publisher_killed_mid_segment() {
    let src = fixture(15);
    let server = start_server();
    let key = "live/killed";
    let mut p = publish(&src, &server.url(key), &["-stream_loop", "-1"]);
    // A segment was just cut: the next one is open; kill half-way into it.
    let before = wait_mid_segment(&server, key);
    p.kill().unwrap(); // SIGKILL
    p.wait().unwrap();
    let ended_line = server.wait_log_all(&["publish ended", key], T);
    assert!(
        server
            .lines_with(&["connection closed", key])
            .iter()
            .any(|l| l.contains("peer closed")),
        "the kill shows as the peer closing"
    );
    check_cut_stream(&server, key, &before, &ended_line, &framemd5(&src));
    server.assert_no_panic();
}

/// A publisher killed mid-segment and replaced within the grace period:
/// the stream goes on in the same playlist after a discontinuity (a new
/// DASH Period), and ends once, after the second publisher and its grace.
#[test]
fn publisher_killed_and_back_within_grace() {
    let src = fixture(16);
    let server = start_server();
    let key = "live/back";
    let mut first = publish(&src, &server.url(key), &["-stream_loop", "-1"]);
    wait_mid_segment(&server, key);
    first.kill().unwrap();
    first.wait().unwrap();
    let first_end = server.wait_log_all(&["publish ended", key], T);
    let mut second = publish(&src, &server.url(key), &[]);
    assert!(server.wait_count(&["publish started", key], 2, T));
    let second_start = server.lines_with(&["publish started", key]).remove(1);
    assert!(
        log_gap(&first_end, &second_start) < GRACE,
        "the second publisher came too late for this test"
    );
    assert!(wait_child(&mut second, T, "second publisher").success());
    assert!(server.wait_count(&["publish ended", key], 2, T));
    let second_end = server.lines_with(&["publish ended", key]).remove(1);
    let end_line = server.wait_log_all(&["packaging ended", &format!("stream=\"{key}\"")], T);
    assert!(
        log_gap(&second_end, &end_line) >= GRACE - 0.1,
        "the stream ended before the second publisher's grace period"
    );
    assert_eq!(
        server.count_log(&["packaging started", key]),
        1,
        "one packaging run across both publishers"
    );
    let video = check_manifests(&server, key, true);
    let discontinuities = video.segments.iter().filter(|s| s.discontinuity).count();
    assert_eq!(discontinuities, 1, "one discontinuity, at the return");
    let mpd = http_get(server.http, &format!("/{key}/manifest.mpd")).text();
    assert_eq!(mpd.matches("<Period").count(), 2, "{mpd}");
    let hls = server.http_url(&format!("{key}/index.m3u8"));
    assert_eq!(decode_errors(&hls), "", "{hls}");
    // Both publishes, whole: every frame received is packaged.
    let received: usize = server
        .lines_with(&["publish ended", key])
        .iter()
        .map(|l| frames_of(l))
        .sum();
    assert_eq!(framemd5_of(&hls, "0").len(), received, "packets packaged");
    server.assert_no_panic();
}

/// A publisher whose connection is reset (RST, not FIN) in the middle of a
/// segment: the same guarantees as a killed one, and the log says reset.
#[test]
fn publisher_reset_mid_segment() {
    let src = fixture(17);
    let server = start_server();
    let key = "live/reset";
    let data = Bytes::from(std::fs::read(&src).unwrap());
    let tags = read_tags(&data).expect("fixture tags");
    let mut c = Raw::connect(server.rtmp);
    c.start_publish("reset", T).unwrap();
    // Up to 3.5 s: the second segment (2 s to 4 s) is half done.
    let mut sent = 0;
    for t in tags.iter().filter(|t| t.timestamp <= 3500) {
        let (csid, kind) = match t.tag_type {
            8 => (4, 8),
            9 => (6, 9),
            18 => (5, 18),
            _ => continue,
        };
        c.message_at(csid, kind, 1, t.timestamp, &t.body);
        sent += 1;
    }
    assert!(sent > 150, "only {sent} tags sent");
    // Everything sent was read and handed on before the reset.
    assert_eq!(c.ping(T), Wait::Found, "castgate did not answer the Ping");
    let before = wait_segments(&server, key, 1);
    let peer = c.peer_tag();
    c.reset();
    let closed = server.wait_log_all(&[&peer, "connection closed"], T);
    assert!(
        closed.contains("reset"),
        "the reset should show in the log: {closed}"
    );
    let ended_line = server.wait_log_all(&[&peer, "publish ended", key], T);
    check_cut_stream(&server, key, &before, &ended_line, &framemd5(&src));
    server.assert_no_panic();
}

/// A thousand connections that never finish the handshake are each closed
/// by the handshake timeout (and logged), while a real publisher arriving
/// among them gets in and is packaged.
#[test]
fn a_thousand_idle_connections_time_out() {
    const IDLE: usize = 1000;
    // Long enough for ffmpeg to start and connect on a busy machine while
    // the idle connections are still open.
    const HANDSHAKE_TIMEOUT: u64 = 5;
    let limit = open_files_limit();
    assert!(
        limit >= 2 * IDLE as u64 + 200,
        "the open-files limit is {limit}: this test needs {} (ulimit -n)",
        2 * IDLE + 200
    );
    let src = fixture(18);
    let server = Castgate::start(&[
        (
            "CASTGATE__RTMP__HANDSHAKE_TIMEOUT_SECS",
            &HANDSHAKE_TIMEOUT.to_string(),
        ),
        ("CASTGATE__RTMP__MAX_CONNECTIONS", "2000"),
        // Every connection here comes from 127.0.0.1 (the idle ones and the
        // publisher): the per-address cap (64 by default) would refuse all
        // but the first 64. This test is about the handshake timeout.
        ("CASTGATE__RTMP__MAX_CONNECTIONS_PER_IP", "2000"),
    ]);
    // The kernel queues them even while castgate is slow to accept (listen
    // backlog 1024); how long that takes is printed, not asserted.
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            TcpStream::connect(server.rtmp)
                .unwrap_or_else(|e| panic!("idle connection {i} refused: {e}"))
        })
        .collect();
    let connected = started.elapsed();
    let key = "live/busy";
    let mut publisher = publish(&src, &server.url(key), &[]);
    let published = server.wait_log_all(&["publish started", key], T);
    assert!(
        server.wait_count(&["handshake and connect not finished"], IDLE, T),
        "only {} of {IDLE} idle connections were timed out",
        server.count_log(&["handshake and connect not finished"])
    );
    let timeouts = server.lines_with(&["handshake and connect not finished"]);
    assert_eq!(timeouts.len(), IDLE, "exactly the idle connections");
    assert!(
        log_gap(&published, &timeouts[0]) < 43_200.0,
        "the publisher got in only after the idle connections were gone"
    );
    // Each idle socket sees the server's close.
    for (i, s) in idle.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("idle connection {i} was not closed: {other:?}"),
        }
    }
    let all_closed = started.elapsed();
    assert!(
        all_closed >= Duration::from_secs(HANDSHAKE_TIMEOUT),
        "closed before the handshake timeout"
    );
    eprintln!(
        "{IDLE} idle connections: opened in {:.2} s, all closed after {:.2} s",
        connected.as_secs_f64(),
        all_closed.as_secs_f64()
    );
    drop(idle);
    wait_http_ok(server.http, &format!("/{key}/index.m3u8"), T);
    assert!(
        wait_child(&mut publisher, T, "publisher").success(),
        "publisher: {}",
        stderr_of(&mut publisher)
    );
    assert_eq!(
        decode_errors(server.http_url(&format!("{key}/index.m3u8"))),
        ""
    );
    server.assert_no_panic();
}

/// castgate raises its soft open-files limit to the hard one at start-up
/// (started here with a soft limit of 512), and says so in its log.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = open_files_limits("self");
    assert!(
        hard > 512,
        "the hard open-files limit is {hard}: this test needs more than 512"
    );
    let server = Castgate::start_with_soft_open_files(512);
    let (soft, castgate_hard) = open_files_limits(&server.pid().to_string());
    assert_eq!(castgate_hard, hard);
    assert_eq!(soft, hard, "castgate's soft limit");
    server.wait_log_all(
        &["open files limit raised to the hard limit", "from=512"],
        T,
    );
    server.assert_no_panic();
}
