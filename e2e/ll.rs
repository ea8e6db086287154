//! Low-latency delivery over real HTTP: blocking playlist reloads and preload hints with a raw
//! client (and the bound on held requests), many held requests on one HTTP/2 connection (h2c
//! on the plain port, ALPN `h2` on HTTPS), and a DASH segment read while it is being made. A live `ffmpeg -re` publisher feeds
//! castgate on its defaults (low latency on). The spec's rules on every playlist are checked
//! in-process (`src/package/ll_tests.rs`, with a paused clock); these check the same behaviour
//! across sockets, with real time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::harness::*;
use crate::latency::zerolatency_publisher;
use crate::tls_rtmpt::{tls_client_config, TlsGate};

const T: Duration = Duration::from_secs(60);

const KEY: &str = "live/ll";

/// Segment `msn`, part `part` of a media playlist's `EXT-X-PRELOAD-HINT` (the next part).
pub(crate) fn preload_hint(playlist: &str) -> (u64, usize) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in\n{playlist}"));
    let uri = line
        .split("URI=\"")
        .nth(1)
        .and_then(|r| r.split('"').next());
    let (msn, part) = uri
        .and_then(|u| u.rsplit_once("part-"))
        .and_then(|(_, n)| n.strip_suffix(".m4s"))
        .and_then(|n| n.split_once('.'))
        .unwrap_or_else(|| panic!("preload hint URI not understood: {line}"));
    (msn.parse().unwrap(), part.parse().unwrap())
}

/// Whether `playlist` lists part `part` of segment `msn` of `track` as an `EXT-X-PART`.
pub(crate) fn lists_part(playlist: &str, track: &str, msn: u64, part: usize) -> bool {
    let uri = format!("URI=\"{track}/part-{msn}.{part}.m4s\"");
    playlist
        .lines()
        .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&uri))
}

/// `EXT-X-PART-INF:PART-TARGET` in seconds.
fn part_target(playlist: &str) -> f64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PART-TARGET in\n{playlist}"))
}

/// Waits until `track`'s media playlist lists parts and has a preload hint.
fn wait_parts(server: &Castgate, track: &str) -> String {
    let path = format!("/{KEY}/{track}.m3u8");
    let deadline = Instant::now() + T;
    loop {
        let r = http_get(server.http, &path);
        let text = r.text();
        if r.status == 200 && text.contains("#EXT-X-PART:") && text.contains("PRELOAD-HINT") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never listed parts ({}):\n{text}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking reload of `track`'s playlist for part `part` of segment `msn`, its answer and
/// when it arrived.
fn blocking_reload(
    addr: SocketAddr,
    track: &str,
    msn: u64,
    part: usize,
) -> (HttpResponse, Instant) {
    let r = http_get(
        addr,
        &format!("/{KEY}/{track}.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
    );
    (r, Instant::now())
}

/// Blocking reloads of the video and audio playlists for the next part (their preload hint)
/// are answered once that part is listed, never before (the answer lists it) and within one
/// part duration of a client polling the plain playlist every 5 ms seeing it; a request more
/// than two segments ahead gets 400; a request held when the publisher leaves is answered with
/// the ended playlist.
#[test]
fn blocking_reloads_over_http_answer_when_their_part_is_listed() {
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let mut publisher = zerolatency_publisher(&server.url(KEY));
    for track in ["video", "audio"] {
        let first = wait_parts(&server, track);
        let target = Duration::from_secs_f64(part_target(&first));
        let mut late_by = Vec::new();
        for _ in 0..8 {
            let before = http_get(server.http, &format!("/{KEY}/{track}.m3u8")).text();
            let (msn, part) = preload_hint(&before);
            assert!(
                !lists_part(&before, track, msn, part),
                "the hinted part is already listed:\n{before}"
            );
            // The poller: when does a plain reload first list the part?
            let addr = server.http;
            let poller = std::thread::spawn(move || {
                let deadline = Instant::now() + T;
                loop {
                    let text = http_get(addr, &format!("/{KEY}/{track}.m3u8")).text();
                    if lists_part(&text, track, msn, part) {
                        return Instant::now();
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{track} {msn}.{part} never listed"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let asked = Instant::now();
            let (r, answered) = blocking_reload(server.http, track, msn, part);
            let seen = poller.join().expect("poller");
            assert_eq!(r.status, 200, "blocking reload of {track} {msn}.{part}");
            let text = r.text();
            assert!(
                lists_part(&text, track, msn, part),
                "the answer to a reload blocked on {msn}.{part} does not list it:\n{text}"
            );
            assert!(
                answered <= seen + target,
                "{track} {msn}.{part}: the blocking reload was answered {:?} after a poller saw the part (one part is {target:?})",
                answered - seen
            );
            late_by.push(answered.saturating_duration_since(seen).as_secs_f64() * 1000.0);
            eprintln!(
                "{track} {msn}.{part}: held {:.0} ms, answered {:+.0} ms from the poller's sight",
                (answered - asked).as_secs_f64() * 1000.0,
                if answered >= seen {
                    (answered - seen).as_secs_f64() * 1000.0
                } else {
                    -((seen - answered).as_secs_f64() * 1000.0)
                }
            );
        }

        // Too far ahead: the spec's 400, at once.
        let now = http_get(server.http, &format!("/{KEY}/{track}.m3u8")).text();
        let (msn, _) = preload_hint(&now);
        let asked = Instant::now();
        let (r, _) = blocking_reload(server.http, track, msn + 3, 0);
        assert_eq!(r.status, 400, "a reload three segments ahead: {}", r.text());
        assert!(asked.elapsed() < T);
    }

    // A reload held when the publisher leaves: answered with the ended playlist once the
    // grace period is over, not dropped.
    let now = http_get(server.http, &format!("/{KEY}/video.m3u8")).text();
    let (msn, part) = preload_hint(&now);
    let held = std::thread::spawn({
        let addr = server.http;
        move || blocking_reload(addr, "video", msn + 1, part.min(1))
    });
    publisher.kill().unwrap();
    publisher.wait().unwrap();
    let (r, _) = held.join().expect("held reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("#EXT-X-ENDLIST"),
        "the held reload was not answered with the ended playlist:\n{}",
        r.text()
    );
    server.assert_no_panic();
}

/// What one HTTP/2 request brought back.
struct H2Answer {
    path: String,
    status: u16,
    body: Vec<u8>,
}

/// Sends every path at once on one HTTP/2 connection over `io` and waits for all answers.
async fn h2_all<IO>(io: IO, authority: &str, paths: Vec<String>) -> Vec<H2Answer>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for path in paths {
        let mut send = send.clone();
        let uri = format!("{authority}{path}");
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::get(uri)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let res = send.send_request(req).await.expect("HTTP/2 request");
            assert_eq!(res.version(), hyper::Version::HTTP_2);
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
            H2Answer { path, status, body }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

/// Blocking reloads of both playlists and preload-hint part requests, ten at once on one
/// connection: each is answered (the reloads list their part, the parts are the bytes a plain
/// request for them gets afterwards).
fn check_held_on_one_connection(
    server: &Castgate,
    answers: impl FnOnce(Vec<String>) -> Vec<H2Answer>,
    what: &str,
) {
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for track in ["video", "audio"] {
        let text = wait_parts(server, track);
        let (msn, part) = preload_hint(&text);
        for _ in 0..3 {
            paths.push(format!(
                "/{KEY}/{track}.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            ));
            expected.push((track, msn, part, false));
        }
        for _ in 0..2 {
            paths.push(format!("/{KEY}/{track}/part-{msn}.{part}.m4s"));
            expected.push((track, msn, part, true));
        }
    }
    let started = Instant::now();
    let got = answers(paths);
    eprintln!(
        "{what}: {} held requests answered in {:?}",
        got.len(),
        started.elapsed()
    );
    assert_eq!(got.len(), expected.len());
    for (a, (track, msn, part, is_part)) in got.iter().zip(expected) {
        assert_eq!(a.status, 200, "{what}: {}", a.path);
        if is_part {
            let later = http_get(
                server.http,
                &format!("/{KEY}/{track}/part-{msn}.{part}.m4s"),
            );
            assert_eq!(later.status, 200);
            assert!(!a.body.is_empty(), "{what}: {} is empty", a.path);
            assert_eq!(
                a.body, later.body,
                "{what}: {} differs from the part served later",
                a.path
            );
        } else {
            let text = String::from_utf8_lossy(&a.body);
            assert!(
                lists_part(&text, track, msn, part),
                "{what}: {} does not list its part:\n{text}",
                a.path
            );
        }
    }
}

/// Apple's players need HTTP/2 for LL-HLS: blocking reloads and preload hints held together on
/// one HTTP/2 connection, with prior knowledge on the plain port (h2c) and with ALPN on HTTPS.
#[test]
fn held_requests_share_one_http2_connection() {
    let gate = TlsGate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let server = &gate.server;
    let mut publisher = zerolatency_publisher(&server.url(KEY));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let http = server.http;
    check_held_on_one_connection(
        server,
        |paths| {
            rt.block_on(async {
                let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
                h2_all(tcp, &format!("http://{http}"), paths).await
            })
        },
        "h2c",
    );

    let https = gate.https;
    check_held_on_one_connection(
        server,
        |paths| {
            rt.block_on(async {
                let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
                let connector = tokio_rustls::TlsConnector::from(tls_client_config(&[b"h2"]));
                let tls = connector
                    .connect(
                        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                        tcp,
                    )
                    .await
                    .expect("TLS handshake");
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                h2_all(tls, &format!("https://{https}"), paths).await
            })
        },
        "h2 over TLS",
    );

    publisher.kill().unwrap();
    publisher.wait().unwrap();
    server.assert_no_panic();
}

/// One HTTP/1.1 response read chunk by chunk as it arrives.
struct ChunkedRead {
    status: u16,
    headers: String,
    /// Each chunk's bytes and when it was read.
    chunks: Vec<(Vec<u8>, Instant)>,
}

/// GETs `path` and reads a chunked response chunk by chunk, calling `on_first` as soon as the
/// first chunk has been read.
fn get_chunked(addr: SocketAddr, path: &str, mut on_first: impl FnMut()) -> ChunkedRead {
    let mut s = TcpStream::connect(addr).expect("connect to castgate HTTP");
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("response head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        headers.push_str(&line);
    }
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let mut chunks = Vec::new();
    if !headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut body = Vec::new();
        r.read_to_end(&mut body).unwrap();
        chunks.push((body, Instant::now()));
        return ChunkedRead {
            status,
            headers,
            chunks,
        };
    }
    loop {
        let mut size = String::new();
        r.read_line(&mut size).expect("chunk size");
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size:?}"));
        if n == 0 {
            break;
        }
        let mut data = vec![0; n];
        r.read_exact(&mut data).expect("chunk data");
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf).expect("chunk end");
        chunks.push((data, Instant::now()));
        if chunks.len() == 1 {
            on_first();
        }
    }
    ChunkedRead {
        status,
        headers,
        chunks,
    }
}

/// Reads `path` (`what`: "the segment", "the part") while castgate makes it: 200, sent as it
/// grows, its first bytes before the video playlist `listed` it, more than one chunk, and all
/// of them the resource served once it is finished.
fn read_while_made(server: &Castgate, path: &str, what: &str, listed: impl Fn(&str) -> bool) {
    let mut listed_at_first_chunk = None;
    let got = get_chunked(server.http, path, || {
        let playlist = http_get(server.http, &format!("/{KEY}/video.m3u8")).text();
        listed_at_first_chunk = Some(listed(&playlist));
    });
    assert_eq!(got.status, 200, "{}", got.headers);
    assert_eq!(
        listed_at_first_chunk,
        Some(false),
        "the first bytes of {path} came only after {what} was listed whole"
    );
    assert!(
        got.chunks.len() > 1,
        "{path} came in {} chunk(s), not as it was made",
        got.chunks.len()
    );
    let first = got.chunks.first().unwrap().1;
    let last = got.chunks.last().unwrap().1;
    eprintln!(
        "{path}: {} chunks over {:?}",
        got.chunks.len(),
        last - first
    );
    let grown: Vec<u8> = got.chunks.into_iter().flat_map(|(c, _)| c).collect();
    let whole = http_get(server.http, path);
    assert_eq!(whole.status, 200);
    assert_eq!(
        grown.len(),
        whole.body.len(),
        "{what} read while it grew differs in size from the finished one"
    );
    assert!(
        grown == whole.body,
        "{what} read while it grew differs from the finished one"
    );
}

/// LL-DASH: the MPD advertises chunked segments, and a request for the segment about to start
/// is answered as soon as its first part exists and sent chunk by chunk while it is made: the
/// first chunk arrives while the playlist does not list the segment as whole yet, more follow,
/// and all of them together are the segment served after it closed.
#[test]
fn a_dash_segment_is_sent_while_it_is_made() {
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let mut publisher = zerolatency_publisher(&server.url(KEY));
    let text = wait_parts(&server, "video");
    let mpd = wait_http_ok(server.http, &format!("/{KEY}/manifest.mpd"), T).text();
    for needle in [
        "availabilityTimeComplete=\"false\"",
        "availabilityTimeOffset=",
        "media=\"video/seg-$Number$.m4s\"",
    ] {
        assert!(mpd.contains(needle), "the MPD lacks {needle}:\n{mpd}");
    }

    // The segment after the one being made (the hinted one when the hint opens a segment):
    // held until it starts, then grown.
    let (msn, part) = preload_hint(&text);
    let next = if part == 0 { msn } else { msn + 1 };
    let path = format!("/{KEY}/video/seg-{next}.m4s");
    let whole_uri = format!("video/seg-{next}.m4s");
    read_while_made(&server, &path, "the segment", |playlist| {
        playlist.lines().any(|l| l.trim() == whole_uri)
    });

    publisher.kill().unwrap();
    publisher.wait().unwrap();
    server.assert_no_panic();
}

/// LL-HLS: the hinted part, asked for as soon as the part before it is listed, is sent while
/// it is made: its first bytes arrive before the playlist lists it, more follow, and all of
/// them are the part served after it was listed.
#[test]
fn a_preload_hinted_part_is_sent_while_it_is_made() {
    let server = Castgate::start(&[]);
    let mut publisher = zerolatency_publisher(&server.url(KEY));
    let text = wait_parts(&server, "video");
    // Held until the hinted part is listed: the new hint is then a part that has just begun.
    let (msn, part) = preload_hint(&text);
    let (listed, _) = blocking_reload(server.http, "video", msn, part);
    assert_eq!(listed.status, 200, "{}", listed.text());
    let (msn, part) = preload_hint(&listed.text());
    let uri = format!("video/part-{msn}.{part}.m4s");
    let path = format!("/{KEY}/{uri}");
    read_while_made(&server, &path, "the part", |playlist| {
        lists_part(playlist, "video", msn, part)
    });

    publisher.kill().unwrap();
    publisher.wait().unwrap();
    server.assert_no_panic();
}

/// The bound on held requests over real HTTP: with two allowed per stream, three blocking
/// reloads for a part two segments ahead sent together get two held answers (200, once the
/// part exists) and one refusal at once (503, saying why), before either held one is
/// answered; once they are answered, the stream takes held requests again.
#[test]
fn held_requests_beyond_the_bound_are_refused_at_once() {
    let server = Castgate::start(&[("CASTGATE__PACKAGE__MAX_HELD_PER_STREAM", "2")]);
    let mut publisher = zerolatency_publisher(&server.url(KEY));
    let text = wait_parts(&server, "video");
    // Two segments after the one of the last listed part (the hint may open the next one).
    let (hint_msn, hint_part) = preload_hint(&text);
    let msn = if hint_part == 0 {
        hint_msn - 1
    } else {
        hint_msn
    };
    let addr = server.http;
    let asks: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || blocking_reload(addr, "video", msn + 2, 0)))
        .collect();
    let mut answers: Vec<(HttpResponse, Instant)> = asks
        .into_iter()
        .map(|a| a.join().expect("request"))
        .collect();
    answers.sort_by_key(|(r, _)| r.status);
    let statuses: Vec<u16> = answers.iter().map(|(r, _)| r.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 503],
        "first lines: {:?}",
        answers
            .iter()
            .map(|(r, _)| r.text().lines().next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    );
    let (refused, refused_at) = &answers[2];
    assert!(
        refused.text().contains("too many requests waiting"),
        "{}",
        refused.text()
    );
    for (held, at) in &answers[..2] {
        assert!(
            lists_part(&held.text(), "video", msn + 2, 0),
            "{}",
            held.text()
        );
        assert!(refused_at < at, "the refusal waited for the part");
    }
    let (msn, part) = preload_hint(&answers[0].0.text());
    let (again, _) = blocking_reload(addr, "video", msn, part);
    assert_eq!(again.status, 200, "{}", again.text());

    publisher.kill().unwrap();
    publisher.wait().unwrap();
    server.assert_no_panic();
}

/// The stream's `low_latency_wanted` and `read_every_ms` in the API.
fn read_state(server: &Castgate) -> (bool, Option<u64>) {
    let path = format!("/api/v1/streams/{KEY}");
    let r = http_get(server.http, &path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("stream JSON");
    let wanted = j["low_latency_wanted"]
        .as_bool()
        .expect("low_latency_wanted");
    (wanted, j["read_every_ms"].as_u64())
}

/// Polls the API until the stream is (not) wanted at low latency and read every `ms`; a
/// classic playlist reload with each poll shows those do not count.
fn wait_read_state(server: &Castgate, wanted: bool, ms: u64, why: &str) {
    let deadline = Instant::now() + T;
    loop {
        let _ = http_get(server.http, &format!("/{KEY}/video.m3u8"));
        let state = read_state(server);
        if state == (wanted, Some(ms)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: the stream stayed at {state:?}, not ({wanted}, Some({ms}))"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A publisher is read every 200 ms (`rtmp.read_batch_unwatched_secs`) while only classic
/// HLS requests come, every 10 ms (`rtmp.read_batch_secs`) from the first blocking reload or
/// RTMP player on, and every 200 ms again once they are gone.
#[test]
fn a_publisher_is_read_often_only_while_someone_waits_at_low_latency() {
    let server = Castgate::start(&[]);
    let mut publisher = zerolatency_publisher(&server.url(KEY));
    wait_parts(&server, "video");
    wait_read_state(&server, false, 200, "classic requests only");

    let text = http_get(server.http, &format!("/{KEY}/video.m3u8")).text();
    let (msn, part) = preload_hint(&text);
    let (r, _) = blocking_reload(server.http, "video", msn, part);
    assert_eq!(r.status, 200, "blocking reload of {msn}.{part}");
    wait_read_state(&server, true, 10, "after a blocking reload");
    wait_read_state(
        &server,
        false,
        200,
        "3 s after the last low-latency request",
    );

    let dir = tempdir();
    let mut player = play(&server.url(KEY), &dir.path().join("out.flv"));
    wait_read_state(&server, true, 10, "with an RTMP player");
    let _ = player.kill();
    let _ = player.wait();
    wait_read_state(&server, false, 200, "once the RTMP player left");

    let _ = publisher.kill();
    let _ = publisher.wait();
    server.assert_no_panic();
}
