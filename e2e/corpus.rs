//! The corpus of malformed inputs (tests/corpus, see its README.md),
//! replayed against one castgate while ffmpeg publishes a real stream
//! alongside: every file gets the outcome its manifest line states, the
//! process survives without a panic, and the stream alongside arrives whole
//! over RTMP and in its HLS output. The hostile media files (`vod/`) lie in
//! castgate's `[vod] dir` and are asked for over HTTP and RTMP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::raw::{Raw, Wait};

const T: Duration = Duration::from_secs(60);
/// How long any one step of a replay may take (the handshake timeout is 2 s).
const STEP: Duration = Duration::from_secs(10);
/// Files replayed at once.
const WORKERS: usize = 16;
/// The stream published alongside (HTTP corpus files name it too).
const ALONGSIDE: &str = "live/alongside";
/// How many times the publisher sends the 4 s fixture.
const LOOPS: usize = 4;

/// One line of tests/corpus/MANIFEST.tsv.
#[derive(Debug)]
struct Entry {
    file: String,
    category: String,
    name: String,
    expect: String,
    log: String,
    reply: String,
    bad_tags: Option<u64>,
    what: String,
}

impl Entry {
    /// Whether the replayer publishes first and the file holds what follows.
    fn after_publish(&self) -> bool {
        matches!(self.category.as_str(), "flv" | "codec")
    }

    fn key(&self) -> String {
        format!("live/{}-{}", self.category, self.name)
    }
}

/// The corpus's folders.
const CATEGORIES: [&str; 7] = ["handshake", "chunk", "amf", "flv", "codec", "http", "vod"];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn manifest() -> Vec<Entry> {
    let dir = corpus_dir();
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .expect("tests/corpus/MANIFEST.tsv (run tests/corpus/generate.py)");
    let entries: Vec<Entry> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 6, "bad manifest line {l:?}");
            let (category, name) = f[0]
                .trim_end_matches(".bin")
                .split_once('/')
                .unwrap_or_else(|| panic!("bad file name in {l:?}"));
            Entry {
                file: f[0].to_string(),
                category: category.to_string(),
                name: name.to_string(),
                expect: f[1].to_string(),
                log: f[2].to_string(),
                reply: f[3].to_string(),
                bad_tags: f[4].parse().ok(),
                what: f[5].to_string(),
            }
        })
        .collect();
    // Every expectation can fail: RTMP files name what the log must say,
    // HTTP files a 4xx status (or a close without an answer), media files
    // a 4xx status, what the log says and the RTMP play's answer.
    for e in &entries {
        if e.category == "vod" {
            assert!(
                matches!(e.expect.as_str(), "404" | "415"),
                "{}: on-demand expectation {:?}",
                e.file,
                e.expect
            );
            assert!(
                matches!(
                    e.reply.as_str(),
                    "NetStream.Play.Failed" | "NetStream.Play.StreamNotFound"
                ),
                "{}: RTMP reply {:?}",
                e.file,
                e.reply
            );
            assert!(!e.log.is_empty(), "{}: no expected log text", e.file);
            assert!(e.bad_tags.is_none(), "{}: bad_tags", e.file);
        } else if e.category == "http" {
            assert!(
                e.expect == "close" || e.expect.starts_with('4') && e.expect.len() == 3,
                "{}: HTTP expectation {:?}",
                e.file,
                e.expect
            );
        } else {
            assert!(!e.log.is_empty(), "{}: no expected log text", e.file);
            assert_eq!(
                e.after_publish(),
                e.bad_tags.is_some(),
                "{}: bad_tags is for files sent after a publish",
                e.file
            );
        }
    }
    // Every file is listed and every listed file exists.
    let mut on_disk = Vec::new();
    for cat in CATEGORIES {
        for f in std::fs::read_dir(dir.join(cat)).expect("corpus folder") {
            on_disk.push(format!(
                "{cat}/{}",
                f.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = entries.iter().map(|e| e.file.clone()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/corpus and MANIFEST.tsv disagree: run tests/corpus/generate.py"
    );
    entries
}

/// Replays one RTMP file and checks its outcome.
fn replay_rtmp(server: &Castgate, e: &Entry, data: &[u8]) -> Result<(), String> {
    let since = server.log_len();
    let mut c = Raw::connect(server.rtmp);
    let peer = c.peer_tag();
    let key = e.key();
    let stream = format!("stream=\"{key}\"");
    if e.after_publish() {
        c.start_publish(&format!("{}-{}", e.category, e.name), STEP)?;
    }
    c.send(data);
    let check_reply = |c: &Raw| {
        let reply = e.reply.as_bytes();
        if reply.is_empty() || c.received.windows(reply.len()).any(|w| w == reply) {
            Ok(())
        } else {
            Err(format!("castgate's reply does not hold {:?}", e.reply))
        }
    };
    match e.expect.as_str() {
        "close" => {
            c.wait_closed(STEP)?;
            check_reply(&c)?;
            let line = server
                .find_log_after(since, &[&peer, "connection closed"], STEP)
                .ok_or("no `connection closed` log line for the peer")?;
            if !line.contains(&e.log) || !line.contains(" WARN ") {
                return Err(format!(
                    "closed with {line:?}, expected a warning with {:?}",
                    e.log
                ));
            }
        }
        "open" => {
            match c.ping(STEP) {
                Wait::Found => {}
                w => return Err(format!("no answer to a Ping after the file: {w:?}")),
            }
            check_reply(&c)?;
            // Names the peer, and media problems are warnings naming the
            // stream too.
            let mut parts = vec![peer.as_str(), e.log.as_str()];
            if e.after_publish() {
                parts.push(&stream);
                if e.log != "publish started" {
                    parts.push(" WARN ");
                }
            }
            server
                .find_log_after(since, &parts, STEP)
                .ok_or_else(|| format!("no log line with {parts:?}"))?;
            drop(c);
            let line = server
                .find_log_after(since, &[&peer, "connection closed"], STEP)
                .ok_or("no `connection closed` log line for the peer")?;
            if !line.contains("peer closed the connection") {
                return Err(format!("castgate closed the connection itself: {line:?}"));
            }
        }
        other => return Err(format!("unknown expectation {other:?}")),
    }
    check_publish_end(server, e, since, &peer, &stream)
}

/// A publishing replay ends with the bad-tag count the manifest states, and
/// the stream's packager ends after the grace period (it did not die).
fn check_publish_end(
    server: &Castgate,
    e: &Entry,
    since: usize,
    peer: &str,
    stream: &str,
) -> Result<(), String> {
    if !e.after_publish() {
        return Ok(());
    }
    let line = server
        .find_log_after(since, &[peer, "publish ended", stream], STEP)
        .ok_or("no `publish ended` log line")?;
    if let Some(n) = e.bad_tags {
        if !line.contains(&format!(" bad_tags={n} ")) {
            return Err(format!("expected bad_tags={n}: {line:?}"));
        }
    }
    server
        .find_log(&["packaging ended", stream], STEP)
        .ok_or("the stream's packager did not end after the grace period")?;
    Ok(())
}

/// Asks for one hostile media file under `[vod] dir` (`vod/NAME`): its
/// HLS and DASH manifests and a segment answer the manifest's status (415:
/// the file does not play, and the log says why; 404: it reads but has
/// nothing to serve), never a 200 nor a 5xx; an RTMP play of it gets the
/// manifest's `onStatus` code, and the connection stays usable (a Ping is
/// answered) until the client hangs up.
fn replay_vod(server: &Castgate, e: &Entry) -> Result<(), String> {
    let since = server.log_len();
    let name = &e.name;
    for res in [
        "index.m3u8",
        "manifest.mpd",
        "video.m3u8",
        "audio/seg-1.m4s",
    ] {
        let path = format!("/vod/{name}/{res}");
        let status = http_get(server.http, &path).status;
        // A segment of a title that does not read is refused as the title;
        // of one that does, it is not there.
        let want = if res.ends_with(".m4s") && e.expect == "404" {
            "404"
        } else {
            e.expect.as_str()
        };
        if status.to_string() != want {
            return Err(format!("{path} answered {status}, expected {want}"));
        }
    }
    if e.expect == "415" {
        let file = format!("file={name}");
        server
            .find_log_after(since, &["not playable on demand", &file, &e.log], STEP)
            .ok_or_else(|| format!("no `not playable on demand` log line with {:?}", e.log))?;
    }
    let mut c = Raw::connect(server.rtmp);
    let peer = c.peer_tag();
    c.start_stream_in("vod", "play", name);
    match c.wait_for(e.reply.as_bytes(), STEP) {
        Wait::Found => {}
        w => return Err(format!("RTMP play: no {:?}: {w:?}", e.reply)),
    }
    let stream = format!("stream=\"vod/{name}\"");
    server
        .find_log_after(since, &[&peer, "play refused", &stream, &e.log], STEP)
        .ok_or_else(|| format!("no `play refused` log line for the peer with {:?}", e.log))?;
    match c.ping(STEP) {
        Wait::Found => {}
        w => return Err(format!("no answer to a Ping after the refused play: {w:?}")),
    }
    drop(c);
    let line = server
        .find_log_after(since, &[&peer, "connection closed"], STEP)
        .ok_or("no `connection closed` log line for the peer")?;
    if !line.contains("peer closed the connection") {
        return Err(format!("castgate closed the connection itself: {line:?}"));
    }
    Ok(())
}

/// A response head and the bytes read after it.
type Head = (Vec<u8>, Vec<u8>);

/// Reads one HTTP response head; `None` if the connection closed first.
fn read_head(s: &mut TcpStream, deadline: Instant) -> Result<Option<Head>, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = raw.split_off(end + 4);
            return Ok(Some((raw, rest)));
        }
        if Instant::now() >= deadline {
            return Err("no complete response in time (a hang)".into());
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(None),
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Replays one HTTP file: the manifest's status (a 4xx), never a 5xx or a
/// hang; then the connection is closed or still serves `GET /healthz`.
fn replay_http(addr: SocketAddr, e: &Entry, data: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|x| format!("connect: {x}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The server may answer and close before reading everything.
    let _ = s.write_all(data);
    let deadline = Instant::now() + STEP;
    let Some((head, mut body)) = read_head(&mut s, deadline)? else {
        return if e.expect == "close" {
            Ok(())
        } else {
            Err("closed without an answer".into())
        };
    };
    let head = String::from_utf8_lossy(&head).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    if e.expect == "close" {
        return Err(format!("expected a close without an answer, got {status}"));
    }
    if !(400..500).contains(&status) || status.to_string() != e.expect {
        return Err(format!("answered {status}, expected {}", e.expect));
    }
    // Read the body the response announces.
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    let mut buf = [0u8; 65536];
    while body.len() < len {
        if Instant::now() >= deadline {
            return Err("the response body never completed".into());
        }
        match s.read(&mut buf) {
            Ok(0) => return Err("closed in the middle of the response body".into()),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    // Closed, or usable: a follow-up request on the same connection.
    let announced_close = header(&head, "connection").is_some_and(|v| v.contains("close"));
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: castgate\r\n\r\n");
    match read_head(&mut s, Instant::now() + STEP)? {
        None => Ok(()),
        Some(_) if announced_close => Err("answered again after `Connection: close`".into()),
        Some((h, _)) if h.starts_with(b"HTTP/1.1 200") => Ok(()),
        Some((h, _)) => Err(format!(
            "the connection is neither closed nor usable: {}",
            String::from_utf8_lossy(&h)
        )),
    }
}

/// Every corpus file gets its stated outcome against a live castgate, which
/// survives them all while a real publisher's stream arrives whole.
#[test]
fn corpus_of_malformed_inputs() {
    let entries = manifest();
    let src = fixture(14);
    // castgate's `[vod] dir`: the hostile media files.
    let media = tempdir();
    for e in entries.iter().filter(|e| e.category == "vod") {
        std::fs::copy(corpus_dir().join(&e.file), media.path().join(&e.name))
            .expect("copy a media file");
    }
    let mut server = Castgate::start(&[
        ("CASTGATE__VOD__DIR", media.path().to_str().unwrap()),
        ("CASTGATE__RTMP__HANDSHAKE_TIMEOUT_SECS", "2"),
        ("CASTGATE__PACKAGE__GRACE_SECS", "1"),
        // The whole alongside stream stays in the window.
        ("CASTGATE__PACKAGE__WINDOW", "20"),
    ]);
    let dir = tempdir();
    let out = dir.path().join("alongside.flv");
    let mut player = play(&server.url(ALONGSIDE), &out);
    server.wait_log_all(&["play requested", ALONGSIDE], T);
    let loops = (LOOPS - 1).to_string();
    let mut publisher = publish(&src, &server.url(ALONGSIDE), &["-stream_loop", &loops]);
    server.wait_log_all(&["play started", ALONGSIDE], T);
    let rss_before = server.rss_kib();

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = entries.get(i) else { return };
                let data = std::fs::read(corpus_dir().join(&e.file)).expect("corpus file");
                let result = if e.category == "http" {
                    replay_http(server.http, e, &data)
                } else if e.category == "vod" {
                    replay_vod(&server, e)
                } else {
                    replay_rtmp(&server, e, &data)
                };
                if let Err(why) = result {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{} ({}): {why}", e.file, e.what));
                }
            });
        }
    });
    let replay_time = started.elapsed();
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
    assert!(server.is_running(), "castgate died");
    server.assert_no_panic();
    let rss_after = server.rss_kib();
    eprintln!(
        "corpus: {} files replayed in {:.1} s; castgate RSS {} -> {} KiB",
        entries.len(),
        replay_time.as_secs_f64(),
        rss_before,
        rss_after
    );
    // The corpus claims gigabytes (4 GiB strings, 16 MiB messages, a 10 GB
    // request body): nothing of it may be allocated on trust.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "castgate's RSS grew from {rss_before} to {rss_after} KiB over the corpus"
    );
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the replay took {replay_time:?}, longer than the stream alongside: lengthen it"
    );

    // Whatever the malformed publishers left behind is served or absent,
    // never a server error.
    for e in entries.iter().filter(|e| e.after_publish()) {
        for res in ["index.m3u8", "video.m3u8", "audio.m3u8", "manifest.mpd"] {
            let path = format!("/{}/{res}", e.key());
            let status = http_get(server.http, &path).status;
            assert!(
                status == 200 || status == 404,
                "{path} (after {}) answered {status}",
                e.file
            );
        }
    }

    // The stream alongside: every source packet, LOOPS times, in order, over
    // RTMP and in HLS, decoding cleanly.
    assert!(
        wait_child(&mut publisher, T, "publisher").success(),
        "the publisher alongside was disturbed: {}",
        stderr_of(&mut publisher)
    );
    wait_child(&mut player, T, "player");
    let source = framemd5(&src);
    let looped = |s: u32| -> Vec<String> {
        let one = track(&source, s);
        (0..LOOPS)
            .flat_map(|_| one.iter().map(|p| p.md5.clone()))
            .collect()
    };
    let hashes = |packets: &[Packet], s: u32| -> Vec<String> {
        track(packets, s).into_iter().map(|p| p.md5).collect()
    };
    let played = framemd5(&out);
    for s in 0..2 {
        let want = looped(s);
        assert!(
            (0..2).any(|p| hashes(&played, p) == want),
            "RTMP: source track {s} did not arrive whole alongside the corpus"
        );
    }
    assert_eq!(decode_errors(&out), "", "RTMP recording alongside");
    server.wait_log_all(&["packaging ended", ALONGSIDE], T);
    let hls = server.http_url(&format!("{ALONGSIDE}/index.m3u8"));
    let packaged = framemd5_of(&hls, "0");
    for s in 0..2 {
        let want = looped(s);
        assert!(
            (0..2).any(|p| hashes(&packaged, p) == want),
            "HLS: source track {s} is not whole in the packaged stream ({} packets)",
            packaged.len()
        );
    }
    assert_eq!(decode_errors(&hls), "", "HLS alongside");
}
