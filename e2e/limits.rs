//! Slow and greedy clients cannot lock everyone else out: request heads
//! and bodies have deadlines, every listener caps what one client address
//! may hold, RTMPT refuses a request for an unknown session before reading
//! its body, and buffered request bodies share one budget.
//!
//! Several client addresses on one machine: Linux routes all of 127/8 on
//! `lo`, so a client socket bound to 127.0.0.2 or 127.0.0.3 reaches
//! castgate on 127.0.0.1 as another address (no namespaces needed).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::raw::{Raw, Wait};

const T: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One HTTP/1.1 response (its head and a `Content-Length` body) read from a
/// connection that may stay open (keep-alive).
pub fn read_response(s: &mut impl Read) -> Result<(u16, Vec<u8>), String> {
    let mut raw = Vec::new();
    let mut b = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut b) {
            Ok(0) => return Err(format!("closed after {} bytes", raw.len())),
            Ok(n) => raw.extend_from_slice(&b[..n]),
            Err(e) => return Err(format!("read: {e} after {} bytes", raw.len())),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut b) {
            Ok(0) => return Err("closed in the body".into()),
            Ok(n) => body.extend_from_slice(&b[..n]),
            Err(e) => return Err(format!("read body: {e}")),
        }
    }
    Ok((status, body))
}

/// A keep-alive GET on an open connection (TCP or TLS).
pub fn keep_alive_get(s: &mut (impl Read + Write), path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: castgate\r\n\r\n").as_bytes())
        .expect("send GET");
    read_response(s)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .0
}

/// A `Connection: close` request from source address `src`.
fn request_from(
    src: IpAddr,
    http: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> HttpResponse {
    let mut s = tcp_connect_from(src, http);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let headers: &[(&str, &str)] = if method == "POST" {
        &[("Content-Type", "application/x-fcs")]
    } else {
        &[]
    };
    http_over(&mut s, http, method, path, headers, body)
}

/// `POST /open/1` from `src`; the session id on a 200.
fn rtmpt_open(src: IpAddr, http: SocketAddr) -> (u16, String) {
    let r = request_from(src, http, "POST", "/open/1", &[0]);
    (r.status, r.text().trim().to_string())
}

/// Whether the server closed `s` (EOF or reset); false while it is open.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let closed = match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Slowloris: clients that send a request head one byte a second hold all
/// of `http.max_connections`; each is closed at the head deadline with a
/// log line naming it, and then clients from another address are served,
/// as many at once as the limit allows.
#[test]
fn slowloris_heads_are_cut_at_the_deadline_and_others_are_served() {
    const N: usize = 40;
    let server = Castgate::start(&[
        ("CASTGATE__HTTP__MAX_CONNECTIONS", &N.to_string()),
        ("CASTGATE__HTTP__HEADER_TIMEOUT_SECS", "3"),
    ]);
    let attacker = ip("127.0.0.2");
    let mut slow: Vec<Option<TcpStream>> = (0..N)
        .map(|_| Some(tcp_connect_from(attacker, server.http)))
        .collect();
    // A head that never ends, one byte a second on every connection, until
    // castgate closes them all.
    let head = b"GET /healthz HTTP/1.1\r\nHost: castgate\r\nX-Slow: ";
    let deadline = Instant::now() + T;
    let mut sent = 0usize;
    while slow.iter().any(Option::is_some) {
        assert!(
            Instant::now() < deadline,
            "{} slow connections still open after {T:?}",
            slow.iter().flatten().count()
        );
        let byte = head.get(sent).copied().unwrap_or(b'a');
        for conn in slow.iter_mut() {
            let Some(s) = conn else { continue };
            if closed_by_server(s) || s.write_all(&[byte]).is_err() {
                *conn = None;
            }
        }
        sent += 1;
        // The attacker's pace, not a wait for castgate.
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        server.wait_count(
            &[
                "HTTP connection closed",
                "peer=127.0.0.2:",
                "http.header_timeout_secs"
            ],
            N,
            T
        ),
        "each slow connection is logged: {:#?}",
        server.lines_with(&["peer=127.0.0.2:"])
    );
    eprintln!("{N} slow connections closed after {sent} bytes each at most");
    // The slots are free: N clients of another address at once, each served.
    let other = ip("127.0.0.3");
    let mut clients: Vec<TcpStream> = (0..N)
        .map(|_| {
            let s = tcp_connect_from(other, server.http);
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(keep_alive_get(c, "/healthz"), 200, "client {i}");
    }
    server.assert_no_panic();
}

/// One address over `http.max_connections_per_ip` gets a 503 with a log
/// line naming it, while another address is served and its own held
/// connections keep working; a slot given back is usable again.
#[test]
fn one_address_over_its_http_share_gets_503_while_others_are_served() {
    const CAP: usize = 4;
    let server = Castgate::start(&[("CASTGATE__HTTP__MAX_CONNECTIONS_PER_IP", &CAP.to_string())]);
    let greedy = ip("127.0.0.2");
    // CAP keep-alive connections, each served once: castgate holds them.
    let mut held: Vec<TcpStream> = (0..CAP)
        .map(|i| {
            let mut s = tcp_connect_from(greedy, server.http);
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            assert_eq!(keep_alive_get(&mut s, "/healthz"), 200, "held {i}");
            s
        })
        .collect();
    let r = request_from(greedy, server.http, "GET", "/healthz", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    server.wait_log_all(
        &[
            "HTTP connection refused: per-address limit reached",
            "client=127.0.0.2",
        ],
        T,
    );
    // Another address is served meanwhile, and the held ones still are.
    let r = request_from(ip("127.0.0.3"), server.http, "GET", "/healthz", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(keep_alive_get(&mut held[0], "/healthz"), 200);
    // A connection closed gives its slot back (once castgate notices).
    drop(held.pop());
    let deadline = Instant::now() + T;
    loop {
        let r = request_from(greedy, server.http, "GET", "/healthz", &[]);
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.assert_no_panic();
}

/// One address over `rtmp.max_connections_per_ip` is refused at accept
/// with a log line naming it, while its held sessions stay up and ffmpeg
/// from another address publishes.
#[test]
fn one_address_over_its_rtmp_share_is_refused_while_ffmpeg_publishes() {
    require("ffmpeg");
    let server = Castgate::start(&[
        ("CASTGATE__RTMP__MAX_CONNECTIONS_PER_IP", "3"),
        ("CASTGATE__RTMP__SESSION_IDLE_SECS", "120"),
    ]);
    let greedy = ip("127.0.0.2");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::connect_from(greedy, server.rtmp);
        c.handshake();
        c.rtmp_connect("live");
        assert_eq!(c.ping(T), Wait::Found, "connected and alive");
        held.push(c);
    }
    let mut over = Raw::connect_from(greedy, server.rtmp);
    over.expect_closed(T, "a fourth connection from 127.0.0.2");
    let line = server.wait_log_all(
        &[
            &over.peer_tag(),
            "connection refused: per-address limit reached",
        ],
        T,
    );
    assert!(line.contains("client=127.0.0.2"), "{line}");
    // ffmpeg, from 127.0.0.1, is not affected.
    let src = fixture(8);
    let mut publisher = publish(&src, &server.url("live/others"), &[]);
    server.wait_log_all(&["publish started", "live/others"], T);
    assert!(
        wait_child(&mut publisher, T, "publisher").success(),
        "{}",
        stderr_of(&mut publisher)
    );
    for c in &mut held {
        assert_eq!(c.ping(T), Wait::Found, "a held session is still served");
    }
    server.assert_no_panic();
}

/// One address over `rtmpt.max_sessions_per_ip` gets a 503 for `/open`
/// with a log line naming it, while another address opens sessions and
/// ffmpeg publishes over rtmpt://; closing a session gives its slot back.
#[test]
fn one_address_over_its_rtmpt_share_gets_503_while_ffmpeg_publishes() {
    require("ffmpeg");
    let server = Castgate::start(&[("CASTGATE__RTMPT__MAX_SESSIONS_PER_IP", "2")]);
    let http = server.http;
    let greedy = ip("127.0.0.2");
    let (s1, first) = rtmpt_open(greedy, http);
    let (s2, _second) = rtmpt_open(greedy, http);
    assert_eq!((s1, s2), (200, 200));
    let (s3, text) = rtmpt_open(greedy, http);
    assert_eq!(s3, 503, "{text}");
    server.wait_log_all(
        &[
            "RTMPT open refused: per-address limit reached",
            "client=127.0.0.2",
        ],
        T,
    );
    assert_eq!(rtmpt_open(ip("127.0.0.3"), http).0, 200);
    let src = fixture(9);
    let mut publisher = publish_with(
        &src,
        &format!("rtmpt://{http}/live/tunnelled"),
        &[],
        &["-rtmp_flush_interval", "1"],
    );
    server.wait_log_all(&["publish started", "live/tunnelled"], T);
    assert!(
        wait_child(&mut publisher, T, "rtmpt publisher").success(),
        "{}",
        stderr_of(&mut publisher)
    );
    let r = request_from(greedy, http, "POST", &format!("/close/{first}/0"), &[0]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rtmpt_open(greedy, http).0, 200, "the closed session's slot");
    server.assert_no_panic();
}

/// A `/send` head for session `id` declaring a `len`-byte body.
fn send_head(http: SocketAddr, id: &str, len: usize) -> Vec<u8> {
    format!(
        "POST /send/{id}/0 HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/x-fcs\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes()
}

/// Many large `/send` bodies to session ids that do not exist: each is
/// answered 404 before a byte of its body is sent (so castgate never reads
/// it), and with the bodies sent regardless, castgate's memory stays flat.
#[test]
fn rtmpt_bodies_for_unknown_sessions_are_refused_unread() {
    const CLIENTS: usize = 60;
    const LEN: usize = 8 * 1024 * 1024 - 1;
    let server = Castgate::start(&[]);
    let http = server.http;
    let rss_before = server.rss_kib();
    let mut peak = rss_before;
    for phase in ["head first", "head and body at once"] {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                std::thread::spawn(move || {
                    let id = format!("{:032x}", 0xdead_0000 + i);
                    let mut s = TcpStream::connect(http).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let body = vec![0x5au8; LEN];
                    if phase == "head first" {
                        // The answer comes with no byte of the body sent.
                        s.write_all(&send_head(http, &id, LEN)).unwrap();
                        let got = read_response(&mut s).map(|r| r.0);
                        // What an attacker sends anyway; castgate has closed.
                        let _ = s.write_all(&body);
                        got
                    } else {
                        let mut all = send_head(http, &id, LEN);
                        all.extend_from_slice(&body);
                        let _ = s.write_all(&all);
                        // Refused and closed; the answer may be lost to the reset.
                        read_response(&mut s).map(|r| r.0)
                    }
                })
            })
            .collect();
        // The peak while the clients run.
        while !clients.iter().all(|c| c.is_finished()) {
            peak = peak.max(server.rss_kib());
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, c) in clients.into_iter().enumerate() {
            let got = c.join().expect("client thread");
            match phase {
                "head first" => assert_eq!(got, Ok(404), "{phase}: client {i}"),
                _ => assert!(
                    matches!(got, Ok(404) | Err(_)),
                    "{phase}: client {i}: {got:?}"
                ),
            }
        }
    }
    assert!(
        server.wait_count(
            &["RTMPT send refused", "unknown or ended RTMPT session"],
            2 * CLIENTS,
            T
        ),
        "every refusal is logged"
    );
    let grown_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "RSS {} MiB before, {} MiB at the peak of {} 8 MiB bodies to unknown sessions",
        rss_before / 1024,
        peak / 1024,
        2 * CLIENTS
    );
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
    assert_eq!(http_get(http, "/healthz").status, 200);
    server.assert_no_panic();
}

/// Request bodies share `http.body_budget_bytes`: with room for two 1 MiB
/// bodies, the third of three bodies in progress at once gets a 503 at
/// once (logged), the other two are taken, and the budget is given back.
#[test]
fn rtmpt_bodies_share_one_budget() {
    const MIB: usize = 1024 * 1024;
    let server = Castgate::start(&[
        ("CASTGATE__RTMPT__MAX_BODY_BYTES", &MIB.to_string()),
        ("CASTGATE__HTTP__BODY_BUDGET_BYTES", &(2 * MIB).to_string()),
    ]);
    let http = server.http;
    let local = ip("127.0.0.1");
    // The sessions first: an /open's own small body takes from the budget too.
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let (status, id) = rtmpt_open(local, http);
            assert_eq!(status, 200);
            id
        })
        .collect();
    let mut conns: Vec<TcpStream> = ids
        .iter()
        .map(|id| {
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(&send_head(http, id, MIB)).unwrap();
            s
        })
        .collect();
    // Exactly one of the three is answered (503) before its body is sent.
    let deadline = Instant::now() + T;
    let refused = loop {
        let answered: Vec<usize> = (0..3)
            .filter(|&i| {
                conns[i]
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut b = [0u8; 1];
                matches!(conns[i].peek(&mut b), Ok(n) if n > 0)
            })
            .collect();
        if let [one] = answered[..] {
            break one;
        }
        assert!(answered.len() < 2, "more than one answered: {answered:?}");
        assert!(Instant::now() < deadline, "no body was refused");
    };
    conns[refused]
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (status, text) = read_response(&mut conns[refused]).unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&text));
    server.wait_log_all(&["RTMPT send refused", "past http.body_budget_bytes"], T);
    for (i, s) in conns.iter_mut().enumerate() {
        if i == refused {
            continue;
        }
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&vec![0u8; MIB]).unwrap();
        assert_eq!(read_response(s).unwrap().0, 200, "body {i}");
    }
    // Given back: a new 1 MiB body is taken.
    let (_, id) = rtmpt_open(local, http);
    let r = request_from(
        local,
        http,
        "POST",
        &format!("/send/{id}/0"),
        &vec![3u8; MIB],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    server.assert_no_panic();
}

/// A request body that stalls is cut at `http.body_timeout_secs`: a 408,
/// logged with the client, and the connection closed; the tunnel session
/// it was for is untouched (its sequence number not used up).
#[test]
fn a_stalled_body_is_cut_at_its_deadline() {
    let server = Castgate::start(&[("CASTGATE__HTTP__BODY_TIMEOUT_SECS", "2")]);
    let http = server.http;
    let (status, id) = rtmpt_open(ip("127.0.0.1"), http);
    assert_eq!(status, 200);
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let tag = format!("peer={} ", s.local_addr().unwrap());
    let mut start = send_head(http, &id, 1000);
    start.extend_from_slice(&[0u8; 10]);
    s.write_all(&start).unwrap();
    // The other 990 bytes never come.
    let (status, _) = read_response(&mut s).expect("an answer to the stalled body");
    assert_eq!(status, 408);
    server.wait_log_all(&[&tag, "HTTP request body not complete within 2s"], T);
    // Then the connection is closed (the rest of the body is not awaited).
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection should be closed after the 408: {other:?}"),
    }
    // The session takes sequence number 0 still.
    let r = request_from(
        ip("127.0.0.1"),
        http,
        "POST",
        &format!("/idle/{id}/0"),
        &[0],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    server.assert_no_panic();
}
