//! Hostile and broken clients on raw sockets. Each gets a clean close and a
//! log line naming it; a stream published alongside goes on untouched.

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use castgate::rtmp::amf0::Amf0Value;
use castgate::rtmp::handshake::ClientHandshake;

use crate::harness::*;
use crate::raw::Raw;

const T: Duration = Duration::from_secs(60);

/// One hostile input: what to send, and pieces of the log line it must
/// cause (all of them): the exact reason, so that a server that ignores
/// the input and closes on the handshake timeout instead does not pass.
struct Case {
    name: &'static str,
    run: fn(&mut Raw),
    log: &'static [&'static str],
}

/// A C1's worth of pseudo-random bytes (xorshift32: the same every run).
fn noise_c1() -> Vec<u8> {
    let mut x = 0x9E37_79B9u32;
    (0..1536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "truncated handshake",
            run: |c| {
                c.send(&[3]);
                c.send(&[0u8; 100]);
            },
            log: &["handshake and connect not finished"],
        },
        Case {
            name: "RTMPE C0 with an all-zero C1",
            run: |c| {
                c.send(&[6]);
                c.send(&[0; 1536]);
            },
            log: &["RTMPE C1 carries no valid digest"],
        },
        Case {
            name: "RTMPE C0 with a random C1",
            run: |c| {
                c.send(&[6]);
                c.send(&noise_c1());
            },
            log: &["RTMPE C1 carries no valid digest"],
        },
        Case {
            name: "RTMPE handshake cut short in C1",
            run: |c| {
                c.send(&[6]);
                c.send(&noise_c1()[..700]);
            },
            log: &["handshake and connect not finished"],
        },
        Case {
            name: "RTMPE with XTEA (version byte 8)",
            run: |c| c.send(&[8; 1537]),
            log: &["version byte 8", "not supported"],
        },
        Case {
            name: "RTMPE with Blowfish (version byte 9)",
            run: |c| c.send(&[9; 1537]),
            log: &["version byte 9", "not supported"],
        },
        Case {
            name: "wrong version (HTTP request on the RTMP port)",
            run: |c| c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            log: &[
                "unsupported RTMP version byte 0x47 (expected 0x03): looks like an HTTP request",
            ],
        },
        Case {
            name: "TLS ClientHello on the plain port",
            run: |c| c.send(&[0x16, 3, 1, 0, 0xC8, 1, 0, 0, 0xC4, 3, 3]),
            log: &[
                "unsupported RTMP version byte 0x16 (expected 0x03): looks like a TLS ClientHello",
            ],
        },
        Case {
            name: "oversized chunk size",
            run: |c| {
                c.handshake();
                c.message(2, 1, 0, &0x8000_0000u32.to_be_bytes());
            },
            log: &["chunk size"],
        },
        Case {
            name: "message length beyond the limit",
            run: |c| {
                c.handshake();
                // fmt 0, csid 3, length 0xFFFFFF (16 MiB - 1) > the 8 MiB limit.
                c.send(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0, 2, 0, 7]);
            },
            log: &["exceeds the limit"],
        },
        Case {
            name: "AMF bomb",
            run: |c| {
                c.handshake();
                // "connect", 1.0, then a strict array claiming 4 billion items: 25 bytes.
                let mut p = vec![2, 0, 7];
                p.extend_from_slice(b"connect");
                p.push(0);
                p.extend_from_slice(&1.0f64.to_be_bytes());
                p.extend_from_slice(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]);
                c.message(3, 20, 0, &p);
            },
            log: &["bad AMF"],
        },
        Case {
            name: "nested-object AMF bomb",
            run: |c| {
                c.handshake();
                let mut p = vec![2, 0, 7];
                p.extend_from_slice(b"connect");
                for _ in 0..5000 {
                    p.extend_from_slice(&[3, 0, 1, b'a']);
                }
                c.message(3, 20, 0, &p);
            },
            log: &["bad AMF"],
        },
        Case {
            name: "garbage after connect",
            run: |c| {
                c.handshake();
                c.rtmp_connect("live");
                // A type-1 chunk header on a chunk stream never started.
                c.send(&[0x47, 0x13, 0x37, 0xFF, 0xEE, 0xDD, 0xCC, 0xBB, 0xAA, 0x99]);
            },
            log: &["never started"],
        },
        Case {
            name: "command before connect",
            run: |c| {
                c.handshake();
                c.command(
                    0,
                    &[
                        Amf0Value::string("createStream"),
                        Amf0Value::Number(2.0),
                        Amf0Value::Null,
                    ],
                );
            },
            log: &["before connect"],
        },
        Case {
            name: "command that is not a command",
            run: |c| {
                c.handshake();
                c.command(0, &[Amf0Value::Number(5.0)]);
            },
            log: &["command without a name"],
        },
        Case {
            name: "Set Chunk Size of zero",
            run: |c| {
                c.handshake();
                c.message(2, 1, 0, &0u32.to_be_bytes());
            },
            log: &["chunk size 0"],
        },
    ]
}

/// Every hostile input is closed cleanly with a log line while a real
/// publisher and player on the same server carry on untouched.
#[test]
fn hostile_inputs_are_closed_and_other_streams_go_on() {
    let src = fixture(5);
    let mut server = Castgate::start(&[("CASTGATE__RTMP__HANDSHAKE_TIMEOUT_SECS", "1")]);
    let dir = tempdir();
    let out = dir.path().join("good.flv");
    let mut player = play(&server.url("live/good"), &out);
    server.wait_log_all(&["play requested", "live/good"], T);
    // The source twice over: long enough for every case to run alongside.
    let mut publisher = publish(&src, &server.url("live/good"), &["-stream_loop", "1"]);
    server.wait_log_all(&["play started", "live/good"], T);

    for case in cases() {
        let mut c = Raw::connect(server.rtmp);
        let tag = c.peer_tag();
        (case.run)(&mut c);
        c.expect_closed(Duration::from_secs(10), case.name);
        let line = server.wait_log_all(&[&tag, "connection closed"], T);
        assert!(
            case.log.iter().all(|part| line.contains(part)),
            "{}: log line {line:?} should mention {:?}",
            case.name,
            case.log
        );
    }

    assert!(server.is_running(), "castgate died");
    assert!(
        wait_child(&mut publisher, T, "publisher").success(),
        "the good publisher was disturbed"
    );
    wait_child(&mut player, T, "player");
    // The good stream arrived whole: every source packet, twice, in order.
    let source = framemd5(&src);
    let played = framemd5(&out);
    for s in 0..2 {
        let one = track(&source, s);
        let want: Vec<&str> = one
            .iter()
            .chain(one.iter())
            .map(|p| p.md5.as_str())
            .collect();
        let got_tracks: Vec<Vec<String>> = (0..2)
            .map(|p| track(&played, p).into_iter().map(|x| x.md5).collect())
            .collect();
        assert!(
            got_tracks
                .iter()
                .any(|g| g.iter().map(String::as_str).eq(want.iter().copied())),
            "source track {s} did not arrive whole alongside the hostile clients"
        );
    }
    assert_eq!(decode_errors(&out), "");
}

/// Clients that connect but never publish or play cannot make castgate hold
/// media-sized messages: a declared 8 MiB message is refused at once (the
/// limit before authorisation is 64 KiB), and many half-sent small ones are
/// capped per connection, so 100 such clients leave RSS nearly flat, while
/// a real publisher alongside is untouched.
#[test]
fn half_sent_messages_from_non_publishers_are_bounded() {
    let src = fixture(7);
    let server = Castgate::start(&[
        ("CASTGATE__RTMP__MAX_CONNECTIONS", "500"),
        // 100 clients and the publisher, all from 127.0.0.1: past the
        // per-address cap (64 by default), which is not what this tests.
        ("CASTGATE__RTMP__MAX_CONNECTIONS_PER_IP", "500"),
    ]);
    let mut publisher = publish(&src, &server.url("live/ok"), &["-stream_loop", "1"]);
    server.wait_log_all(&["publish started", "live/ok"], T);
    let rss_before = server.rss_kib();

    // Four half-sent 8 MiB messages: the first declaration closes it.
    let mut big = Raw::connect(server.rtmp);
    let tag = big.peer_tag();
    big.handshake();
    big.rtmp_connect("live");
    for csid in 4..8u8 {
        // fmt 0, a 0xFFFFFF-byte video message, one 128-byte chunk of it.
        let mut m = vec![csid, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
        m.extend_from_slice(&[0x17; 128]);
        big.send(&m);
    }
    big.expect_closed(Duration::from_secs(10), "an 8 MiB message before publish");
    let line = server.wait_log_all(&[&tag, "connection closed"], T);
    assert!(line.contains("exceeds the limit of 65536 bytes"), "{line}");

    // The first `sent` bytes of a 60000-byte video message on chunk stream
    // `csid`, in 128-byte chunks (the default chunk size); `sent` is a
    // multiple of 128, so the next message starts on a chunk boundary.
    let half_sent = |csid: u8, sent: usize| -> Vec<u8> {
        let mut m = vec![csid, 0, 0, 0, 0, 0xEA, 0x60, 9, 1, 0, 0, 0];
        for (i, piece) in vec![0x17u8; sent].chunks(128).enumerate() {
            if i > 0 {
                m.push(0xC0 | csid);
            }
            m.extend_from_slice(piece);
        }
        m
    };
    // 100 clients, each holding three 39936-byte halves of 60 KB messages
    // (117 KiB: just under the 128 KiB a client may hold before publishing).
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut c = Raw::connect(server.rtmp);
        c.handshake();
        c.rtmp_connect("live");
        for csid in 4..7u8 {
            c.send(&half_sent(csid, 128 * 312));
        }
        held.push(c);
    }
    // A fourth half would pass the per-client cap: that client is closed.
    let mut greedy = Raw::connect(server.rtmp);
    let greedy_tag = greedy.peer_tag();
    greedy.handshake();
    greedy.rtmp_connect("live");
    for csid in 4..8u8 {
        greedy.send(&half_sent(csid, 128 * 312));
    }
    greedy.expect_closed(
        Duration::from_secs(10),
        "a client past its partial-message cap",
    );
    let line = server.wait_log_all(&[&greedy_tag, "connection closed"], T);
    assert!(
        line.contains("partial messages exceed 131072 bytes"),
        "{line}"
    );
    for c in &mut held {
        assert_eq!(c.ping(T), crate::raw::Wait::Found, "a held client is alive");
    }
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    eprintln!("RSS grew by {grown_kib} KiB with 100 clients holding half-sent messages");
    assert!(
        grown_kib < 64 * 1024,
        "RSS grew by {grown_kib} KiB for clients that never published"
    );
    drop(held);
    assert!(
        wait_child(&mut publisher, T, "publisher").success(),
        "the real publisher was disturbed"
    );
}

/// Publishes the fixture's tags over a raw client, each changed by `edit`
/// (which may also drop a tag by returning `None`), then pings so that
/// everything was read.
fn publish_tags(
    server: &Castgate,
    name: &str,
    edit: impl Fn(&castgate::media::flv_file::FileTag) -> Option<(u32, Vec<u8>)>,
) -> Raw {
    let data = bytes::Bytes::from(std::fs::read(fixture(9)).unwrap());
    let tags = castgate::media::flv_file::read_tags(&data).expect("fixture tags");
    let mut c = Raw::connect(server.rtmp);
    c.start_publish(name, T).unwrap();
    // The 4 s fixture twice, time rising (sequence headers sent once).
    for round in 0..2u32 {
        for t in &tags {
            let csid = match t.tag_type {
                8 => 4,
                9 => 6,
                _ => continue,
            };
            if round > 0 && t.body.get(1) == Some(&0) {
                continue;
            }
            let mut t = t.clone();
            t.timestamp += round * 4000;
            if let Some((ts, body)) = edit(&t) {
                c.message_at(csid, t.tag_type, 1, ts, &body);
            }
        }
    }
    assert_eq!(c.ping(T), crate::raw::Wait::Found, "castgate read it all");
    c
}

/// The media playlist's TARGETDURATION and EXTINFs, once it lists `n`
/// segments.
fn durations(server: &Castgate, key: &str, n: usize) -> (u64, Vec<f32>, String) {
    let deadline = Instant::now() + T;
    loop {
        let r = http_get(server.http, &format!("/{key}/video.m3u8"));
        if r.status == 200 {
            let text = r.text();
            if let Ok(p) = m3u8_rs::parse_media_playlist_res(text.as_bytes()) {
                if p.segments.len() >= n {
                    let d = p.segments.iter().map(|s| s.duration).collect();
                    return (p.target_duration, d, text);
                }
            }
        }
        assert!(Instant::now() < deadline, "{key} never listed {n} segments");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sequence header with 4 MiB of junk after the record is kept at the
/// size of the record it carries (the junk would be copied into every init
/// segment), and a publisher whose clock leaps 13 hours ahead in one step
/// gets sane segment durations: the leap is clamped and counted.
#[test]
fn oversized_sequence_header_and_timestamp_leaps_stay_sane() {
    let server = Castgate::start(&[]);
    let _big = publish_tags(&server, "bighdr", |t| {
        let mut body = t.body.to_vec();
        if t.tag_type == 9 && body.get(1) == Some(&0) {
            body.extend(std::iter::repeat_n(0xEE, 4 * 1024 * 1024));
        }
        Some((t.timestamp, body))
    });
    let (_, _, text) = durations(&server, "live/bighdr", 1);
    let map = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no EXT-X-MAP in\n{text}"));
    let init = http_get(server.http, &format!("/live/bighdr/{map}"));
    assert_eq!(init.status, 200);
    assert!(
        init.body.len() < 4096,
        "the init segment carries the junk: {} bytes",
        init.body.len()
    );

    let leap = 47_721_000u32;
    let _leap = publish_tags(&server, "leap", |t| {
        let ts = if t.timestamp > 2500 {
            t.timestamp + leap
        } else {
            t.timestamp
        };
        Some((ts, t.body.to_vec()))
    });
    let (target, extinf, text) = durations(&server, "live/leap", 3);
    assert!(target <= 4, "TARGETDURATION {target}:\n{text}");
    assert!(
        extinf.iter().all(|d| *d <= 4.0),
        "segment durations {extinf:?}:\n{text}"
    );
    let metrics = http_get(server.http, "/metrics").text();
    let repairs = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("castgate_stream_timestamp_repairs_total{stream=\"live/leap\"}")
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no repairs series for live/leap:\n{metrics}"));
    assert!(
        repairs >= 2.0,
        "the leap of both tracks is counted: {repairs}"
    );
}

/// Sessions that connect and then neither publish nor play cannot hold the
/// connection slots: at the cap, each is closed after
/// `rtmp.session_idle_secs` with a log line naming it, and then a real
/// publisher gets in.
#[test]
fn idle_sessions_at_the_connection_cap_are_closed() {
    let server = Castgate::start(&[
        ("CASTGATE__RTMP__MAX_CONNECTIONS", "20"),
        ("CASTGATE__RTMP__SESSION_IDLE_SECS", "2"),
    ]);
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut c = Raw::connect(server.rtmp);
        c.handshake();
        c.rtmp_connect("live");
        assert_eq!(c.ping(T), crate::raw::Wait::Found, "connected and alive");
        idle.push(c);
    }
    for c in &mut idle {
        let tag = c.peer_tag();
        c.expect_closed(T, "an idle session at the cap");
        server.wait_log_all(
            &[&tag, "connection closed", "neither published nor played"],
            T,
        );
    }
    let src = fixture(8);
    let mut ff = publish(&src, &server.url("live/after"), &[]);
    assert!(
        wait_child(&mut ff, T, "publisher after the idle sessions").success(),
        "{}",
        stderr_of(&mut ff)
    );
    server.wait_log_all(&["publish started", "live/after"], T);
}

/// A stream key splits into application and name one way only: the
/// application is one path segment, so `live/a` + `b` is refused (it would
/// otherwise be the stream `live` + `a/b` under another application's name)
/// while `live` + `a/b` publishes.
#[test]
fn application_names_are_one_path_segment() {
    let server = Castgate::start(&[]);
    let mut nested = Raw::connect(server.rtmp);
    nested.start_stream_in("live/a", "publish", "b");
    assert_eq!(
        nested.wait_for(b"NetStream.Publish.BadName", T),
        crate::raw::Wait::Found
    );
    server.wait_log_all(&["publish refused", "application name has a '/'"], T);
    let mut plain = Raw::connect(server.rtmp);
    plain.start_publish("a/b", T).unwrap();
    server.wait_log_all(&["publish started", "live/a/b"], T);
}

/// Past `rtmp.max_connections` a connection is refused at once with a log
/// line, and a slot freed is usable again.
#[test]
fn connection_limit_refuses_clearly() {
    let server = Castgate::start(&[("CASTGATE__RTMP__MAX_CONNECTIONS", "2")]);
    let a = Raw::connect(server.rtmp);
    let b = Raw::connect(server.rtmp);
    let mut c = Raw::connect(server.rtmp);
    c.expect_closed(Duration::from_secs(5), "third connection");
    server.wait_log("connection refused: limit reached", T);
    drop((a, b));
    // Once the first two are gone (the server notices the close), a new
    // client completes a handshake.
    let deadline = Instant::now() + T;
    loop {
        let mut d = Raw::connect(server.rtmp);
        let mut hs = ClientHandshake::new();
        let mut out = Vec::new();
        hs.start(&mut out);
        d.send(&out);
        // Served (S0 arrives) or refused (closed); a read timeout is neither.
        let mut buf = [0u8; 1];
        let served = loop {
            match d.s.read(&mut buf) {
                Ok(1) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break false,
                Err(_) => assert!(Instant::now() < deadline, "no answer from the server"),
            }
        };
        if served {
            break;
        }
        assert!(Instant::now() < deadline, "slots were never freed");
    }
}

/// A publisher that stops sending media is disconnected after
/// `rtmp.idle_timeout_secs`, and its stream ends.
#[test]
fn idle_publisher_is_disconnected() {
    let server = Castgate::start(&[("CASTGATE__RTMP__IDLE_TIMEOUT_SECS", "1")]);
    let mut c = Raw::connect(server.rtmp);
    c.start_stream("publish", "idle");
    server.wait_log_all(&["publish started", "live/idle"], T);
    c.expect_closed(Duration::from_secs(10), "idle publisher");
    server.wait_log_all(&["sent no media", "live/idle"], T);
}

/// An RTMP player that stops reading is cut off (its queue is bounded and it
/// is disconnected), while the publisher runs at full speed and another
/// player receives everything; castgate's memory stays bounded meanwhile.
#[test]
fn player_that_stops_reading_is_dropped() {
    const HARD_KIB: u64 = 1024;
    let src = fixture(9);
    let hard = (HARD_KIB * 1024).to_string();
    let server = Castgate::start(&[
        ("CASTGATE__HUB__QUEUE_SOFT_BYTES", "262144"),
        ("CASTGATE__HUB__QUEUE_HARD_BYTES", &hard),
        // The write timeout: long enough that only the queue cap bounds
        // what waits for the stuck player.
        ("CASTGATE__RTMP__IDLE_TIMEOUT_SECS", "10"),
    ]);
    let dir = tempdir();
    let out = dir.path().join("ok.flv");
    let mut good = play(&server.url("live/slow"), &out);
    server.wait_log_all(&["play requested", "live/slow"], T);

    let mut stuck = Raw::connect_small_buffer(server.rtmp);
    let tag = stuck.peer_tag();
    stuck.start_stream("play", "slow");
    server.wait_log_all(&[&tag, "play requested"], T);
    // castgate's resident memory, sampled every 20 ms from here to the end.
    let baseline = server.rss_kib();
    let pid = server.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };

    // ~12 MB at 20x real time (~12 Mbit/s): an ordinary player keeps up,
    // while the stuck one fills its socket buffers and then its queue.
    let mut publisher = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-readrate",
            "20",
            "-stream_loop",
            "40",
            "-i",
        ])
        .arg(&src)
        .args(["-c", "copy", "-f", "flv", &server.url("live/slow")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");
    let status = wait_child(&mut publisher, T, "publisher");
    assert!(
        status.success(),
        "publisher was held up: {}",
        stderr_of(&mut publisher)
    );
    let line = server.wait_log_all(&[&tag, "connection closed"], T);
    assert!(
        line.contains("too slow") || line.contains("not reading"),
        "the stuck player should be dropped for being slow: {line}"
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    eprintln!("stuck player: castgate RSS {baseline} KiB before, {peak} KiB at peak");
    // The stuck player's queue is capped at HARD_KIB; the margin covers
    // what any stream costs (packager window, the other player's queue).
    // Measured: +4 MiB with this cap, +9.7 MiB with a 64 MiB one.
    assert!(
        peak < baseline + HARD_KIB + 5 * 1024,
        "castgate grew from {baseline} to {peak} KiB with a player not reading \
         (its queue is capped at {HARD_KIB} KiB)"
    );
    wait_child(&mut good, T, "good player");
    // The other player stayed connected to the end. It may itself have
    // lost video to the drop policy during this burst (no real-time pacing),
    // but only ever whole GOPs: after every gap its video resumes on a
    // keyframe, so nothing it got references a dropped frame. (Its file is
    // not run through a decoder here: ffmpeg's own -stream_loop output
    // already trips the null muxer at loop boundaries.)
    let source_video = track(&framemd5(&src), 0);
    let position = |md5: &str| source_video.iter().position(|p| p.md5 == md5);
    let got = framemd5(&out);
    let video: Vec<usize> = (0..2)
        .map(|t| track(&got, t))
        .find(|t| t.first().is_some_and(|p| position(&p.md5).is_some()))
        .expect("the good player got video")
        .iter()
        .map(|p| position(&p.md5).expect("a played frame that is not in the source"))
        .collect();
    let n = source_video.len();
    assert_eq!(video[0] % 30, 0, "video starts on a keyframe");
    for w in video.windows(2) {
        if w[1] != (w[0] + 1) % n {
            assert_eq!(
                w[1] % 30,
                0,
                "after a gap ({} -> {}) video must resume on a keyframe",
                w[0],
                w[1]
            );
        }
    }
    // Only the stuck player was cut off; the other one ended with the stream.
    let cut_off = server.count_log(&["connection closed", "too slow"])
        + server.count_log(&["connection closed", "not reading"]);
    assert_eq!(cut_off, 1, "only the stuck player may be disconnected");
    drop(stuck);
}

/// A publisher that never sends a keyframe, with garbage sequence headers
/// and NAL units, packages nothing and breaks nothing: a real stream
/// published alongside is served as HLS and decodes cleanly.
#[test]
fn garbage_publisher_does_not_disturb_hls() {
    let src = fixture(12);
    let server = Castgate::start(&[]);
    let mut good = publish(&src, &server.url("live/fine"), &[]);
    let mut c = Raw::connect(server.rtmp);
    c.start_stream("publish", "evil");
    server.wait_log_all(&["publish started", "live/evil"], T);
    let mut rng = 0x1234_5678u32;
    let mut junk = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                rng as u8
            })
            .collect()
    };
    for i in 0..300u32 {
        let mut video = vec![0x27, 1, 0, 0, 0];
        video.extend(junk(64));
        let mut bad_header = vec![0x17, 0];
        bad_header.extend(junk(12));
        let mut audio = vec![0xAF, (i % 2) as u8];
        audio.extend(junk(8));
        let mut enc = BytesMut::new();
        c.enc.write(6, 9, 1, i * 33, &[&video], &mut enc);
        c.enc.write(6, 9, 1, i * 33, &[&bad_header], &mut enc);
        c.enc.write(4, 8, 1, i * 21, &[&audio], &mut enc);
        c.send(&enc);
    }
    assert!(wait_child(&mut good, T, "good publisher").success());
    let fine = wait_http_ok(server.http, "/live/fine/index.m3u8", T);
    assert_eq!(fine.status, 200);
    assert_eq!(decode_errors(server.http_url("live/fine/index.m3u8")), "");
    // No keyframe ever arrived: no video is advertised for it. (Random
    // bytes can pass for an AAC config, so its "audio" may be packaged:
    // garbage in, garbage out, and nothing else is disturbed.)
    assert_eq!(http_get(server.http, "/live/evil/video.m3u8").status, 404);
    let master = http_get(server.http, "/live/evil/index.m3u8");
    assert!(!master.text().contains("RESOLUTION"), "{}", master.text());
    server.wait_log_all(&["dropped a bad", "live/evil"], T);
    drop(c);
}
