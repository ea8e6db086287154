//! RTMPS, HTTPS (with HTTP/2), RTMPT and RTMPTS: ffmpeg publishes and plays
//! through each, librtmp (rtmpdump, GStreamer's rtmpsink) plays and
//! publishes over RTMPT, GStreamer's own client publishes over RTMPS, the
//! certificate is reloaded under a live publisher, and wrong-protocol and
//! hostile clients on every listener get a clean close or an HTTP error,
//! and a log line.
//!
//! librtmp is not tested over rtmpts:// (nor rtmps://): its TLS is broken
//! in Debian 12's librtmp1 (2.4+20151223, built with GnuTLS), whatever the
//! server. rtmpdump and GStreamer's rtmpsink crash (SIGSEGV in
//! `RTMP_Connect1`) on `rtmpts://` right after the tunnel's open request,
//! also against a minimal TLS server sending a well-formed
//! `HTTP/1.1 200 OK` reply; on `rtmps://` they fail with
//! "RTMP_Connect1, handshake failed", also through a plain TLS terminator
//! in front of a server rtmpdump plays from over `rtmp://`. GStreamer's own
//! RTMP client (rtmp2sink) covers TLS publishing instead.
//!
//! Certificates are generated at test start with rcgen. ffmpeg 5.1 does not
//! verify certificates by default; the Rust TLS client here accepts any
//! certificate and reports which one it was served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use castgate::rtmp::amf0::{self, Amf0Value};
use castgate::rtmp::chunk::ChunkEncoder;
use castgate::rtmp::handshake::{ClientHandshake, HandshakeStatus};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use sha2::{Digest, Sha256};

use crate::harness::*;
use crate::librtmp::*;

const T: Duration = Duration::from_secs(90);

/// ffmpeg's RTMPT client (libavformat/rtmphttp.c) holds written bytes until
/// its next read, which `rtmp_write` does every `-rtmp_flush_interval`
/// packets (default 10), and `rtmp_http_close` drops whatever it still
/// holds: the last few packets of a publish never leave ffmpeg, whatever
/// the server. Flushing every packet makes ffmpeg send all of them, so the
/// tests can demand every frame from castgate.
const FLUSH_EVERY_PACKET: [&str; 2] = ["-rtmp_flush_interval", "1"];

/// A self-signed certificate for `localhost` as PEM files, and its DER.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Cert {
    fn generate(dir: &Path, name: &str) -> Cert {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen: self-signed certificate");
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        Cert {
            cert,
            key,
            der: c.cert.der().to_vec(),
        }
    }

    /// The SHA-256 fingerprint castgate logs.
    fn fingerprint(&self) -> String {
        Sha256::digest(&self.der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// castgate with RTMPS and HTTPS on (one certificate for both).
pub(crate) struct TlsGate {
    pub(crate) server: Castgate,
    rtmps: SocketAddr,
    pub(crate) https: SocketAddr,
    cert: Cert,
    dir: tempfile::TempDir,
}

impl TlsGate {
    pub(crate) fn start(env: &[(&str, &str)]) -> TlsGate {
        let dir = tempdir();
        let cert = Cert::generate(dir.path(), "server");
        let mut all = vec![
            ("CASTGATE__RTMPS__LISTEN", "127.0.0.1:0"),
            ("CASTGATE__HTTPS__LISTEN", "127.0.0.1:0"),
            ("CASTGATE__RTMPS__CERT", cert.cert.to_str().unwrap()),
            ("CASTGATE__RTMPS__KEY", cert.key.to_str().unwrap()),
        ];
        all.extend_from_slice(env);
        let server = Castgate::start(&all);
        let rtmps = server.listening("RTMPS");
        let https = server.listening("HTTPS");
        TlsGate {
            server,
            rtmps,
            https,
            cert,
            dir,
        }
    }

    fn rtmps_url(&self, key: &str) -> String {
        format!("rtmps://{}/{key}", self.rtmps)
    }

    fn rtmpt_url(&self, key: &str) -> String {
        format!("rtmpt://{}/{key}", self.server.http)
    }

    fn rtmpts_url(&self, key: &str) -> String {
        format!("rtmpts://{}/{key}", self.https)
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://{}/{}", self.https, path.trim_start_matches('/'))
    }
}

/// A client that accepts any server certificate (castgate's own
/// no-verify relay config: handshake signatures are still checked), with
/// `alpn`.
pub(crate) fn tls_client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let opts = castgate::transport::tls_client::TlsOptions {
        ca_file: None,
        no_verify: true,
    };
    let base = castgate::transport::tls_client::client_config(&opts).unwrap();
    let mut config = ClientConfig::clone(&base);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A finished TLS client connection over `tcp`, or the handshake error.
fn tls_handshake(
    mut tcp: TcpStream,
    alpn: &[&[u8]],
) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>, String> {
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(tls_client_config(alpn), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn tls_connect(addr: SocketAddr) -> rustls::StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tls_handshake(tcp, &[]).unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"))
}

/// The leaf certificate a new connection to `addr` is served.
fn served_cert(addr: SocketAddr) -> Vec<u8> {
    let s = tls_connect(addr);
    s.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .to_vec()
}

/// One HTTP/1.1 exchange over TLS.
fn https_exchange(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    let mut s = tls_connect(addr);
    http_over(
        &mut s,
        addr,
        method,
        path,
        &[("Content-Type", "application/x-fcs")],
        body,
    )
}

/// GET over HTTP/2 (ALPN `h2`, hyper's client): status, body, and the
/// protocol ALPN chose.
fn h2_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>, Option<Vec<u8>>) {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(tls_client_config(&[b"h2", b"http/1.1"]));
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("https://{addr}{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.expect("HTTP/2 request");
        assert_eq!(res.version(), hyper::Version::HTTP_2);
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, body, alpn)
    })
}

fn hangup(server: &Castgate) {
    // SAFETY: kill(2) with a valid pid and signal number has no memory effects.
    let r = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0, "kill -HUP failed");
}

/// Reads until the peer closes and returns what was read; panics on a
/// reset (the close must be clean) or if it does not close within `timeout`.
fn expect_clean_close(s: &mut impl Read, timeout: Duration, what: &str) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A TLS peer may close without close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return got,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                panic!("{what}: connection reset instead of a clean close")
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{what}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not closed within {timeout:?}"
        );
    }
}

fn peer_tag(s: &TcpStream) -> String {
    format!("peer={}", s.local_addr().unwrap())
}

fn c0c1() -> (ClientHandshake, Vec<u8>) {
    let mut hs = ClientHandshake::new();
    let mut out = Vec::new();
    hs.start(&mut out);
    (hs, out)
}

/// RTMP command messages as a client sends them.
struct Commands(ChunkEncoder);

impl Commands {
    fn new() -> Commands {
        Commands(ChunkEncoder::new())
    }

    fn command(&mut self, out: &mut Vec<u8>, stream_id: u32, values: &[Amf0Value]) {
        let mut b = BytesMut::new();
        self.0
            .write(3, 20, stream_id, 0, &[&amf0::encode_all(values)], &mut b);
        out.extend_from_slice(&b);
    }

    /// `connect` to `live`, `createStream`, `publish name`.
    fn connect_and_publish(&mut self, out: &mut Vec<u8>, name: &str) {
        self.command(
            out,
            0,
            &[
                Amf0Value::string("connect"),
                Amf0Value::Number(1.0),
                Amf0Value::object([
                    ("app", Amf0Value::string("live")),
                    ("tcUrl", Amf0Value::string("rtmpt://127.0.0.1/live")),
                ]),
            ],
        );
        self.command(
            out,
            0,
            &[
                Amf0Value::string("createStream"),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
            ],
        );
        self.command(
            out,
            1,
            &[
                Amf0Value::string("publish"),
                Amf0Value::Number(3.0),
                Amf0Value::Null,
                Amf0Value::string(name),
            ],
        );
    }
}

/// A raw RTMPT client: each request on a fresh HTTP connection.
struct Tunnel {
    http: SocketAddr,
    id: String,
    seq: u64,
}

impl Tunnel {
    fn post(http: SocketAddr, path: &str, body: &[u8]) -> HttpResponse {
        http_exchange(
            http,
            "POST",
            path,
            &[("Content-Type", "application/x-fcs")],
            body,
        )
    }

    fn open(http: SocketAddr) -> Tunnel {
        let r = Tunnel::post(http, "/open/1", &[0]);
        assert_eq!(r.status, 200, "open: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/x-fcs"));
        let id = r.text().trim().to_string();
        assert!(
            id.len() >= 16 && id.len() < 64 && r.text().ends_with('\n'),
            "{:?}",
            r.text()
        );
        Tunnel { http, id, seq: 0 }
    }

    /// Sends `cmd` with the next sequence number; returns the response.
    fn request(&mut self, cmd: &str, body: &[u8]) -> HttpResponse {
        let r = Tunnel::post(self.http, &format!("/{cmd}/{}/{}", self.id, self.seq), body);
        if r.status == 200 {
            self.seq += 1;
        }
        r
    }

    /// A request with an explicit sequence number (which is not used up).
    fn request_at(&self, cmd: &str, seq: &str, body: &[u8]) -> HttpResponse {
        Tunnel::post(self.http, &format!("/{cmd}/{}/{seq}", self.id), body)
    }

    fn short(&self) -> &str {
        &self.id[..8]
    }
}

/// ffmpeg publishes over rtmps://, rtmpt:// and rtmpts:// at once; each
/// stream's HLS (read over HTTP) and DASH (read over HTTPS) output holds
/// every frame and decodes cleanly, and HTTPS serves the same bytes over
/// HTTP/2.
#[test]
fn ffmpeg_publishes_over_rtmps_rtmpt_and_rtmpts() {
    let src = fixture(20);
    let gate = TlsGate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let streams = [
        ("rtmps", "live/s", gate.rtmps_url("live/s")),
        ("rtmpt", "live/t", gate.rtmpt_url("live/t")),
        ("rtmpts", "live/ts", gate.rtmpts_url("live/ts")),
    ];
    let mut publishers: Vec<_> = streams
        .iter()
        .map(|(proto, _, url)| {
            let out: &[&str] = if proto.starts_with("rtmpt") {
                &FLUSH_EVERY_PACKET
            } else {
                &[]
            };
            (*proto, publish_with(&src, url, &[], out))
        })
        .collect();
    for (proto, p) in &mut publishers {
        let status = wait_child(p, T, proto);
        assert!(
            status.success(),
            "{proto} publisher failed: {}",
            stderr_of(p)
        );
    }
    let frames = framemd5(&src).len();
    for (proto, key, _) in &streams {
        // Quoted: "live/t" is a prefix of "live/ts".
        let stream = format!("stream=\"{key}\"");
        let ended = gate.server.wait_log_all(&["publish ended", &stream], T);
        assert!(
            ended.contains(&format!("proto=\"{proto}\""))
                && ended.contains(&format!("frames={frames} ")),
            "{proto}: {ended}"
        );
        gate.server.wait_log_all(&["packaging ended", &stream], T);
    }
    for (proto, key, _) in &streams {
        let hls = gate.server.http_url(&format!("{key}/index.m3u8"));
        assert_holds_every_frame(&src, &hls, &format!("HLS of the {proto} publish"));
        let dash = gate.https_url(&format!("{key}/manifest.mpd"));
        assert_holds_every_frame(
            &src,
            &dash,
            &format!("DASH over HTTPS of the {proto} publish"),
        );
    }
    // HTTP/2 by ALPN serves what HTTP/1.1 serves: a playlist and a segment.
    let playlist = http_get(gate.server.http, "/live/s/video.m3u8");
    assert_eq!(playlist.status, 200);
    let (status, body, alpn) = h2_get(gate.https, "/live/s/video.m3u8");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "ALPN did not pick h2");
    assert_eq!(status, 200);
    assert_eq!(body, playlist.body, "the same playlist over HTTP/2");
    let seg = playlist
        .text()
        .lines()
        .find(|l| l.ends_with(".m4s"))
        .expect("a segment in the playlist")
        .to_string();
    let (status, body, _) = h2_get(gate.https, &format!("/live/s/{seg}"));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        http_get(gate.server.http, &format!("/live/s/{seg}")).body
    );
    let (status, _, _) = h2_get(gate.https, "/healthz");
    assert_eq!(status, 200);
}

/// ffmpeg plays a live stream over rtmps://, rtmpt:// and rtmpts://: each
/// player, started before the publisher, records every packet with the
/// publisher's timestamps and payloads.
#[test]
fn ffmpeg_plays_over_rtmps_rtmpt_and_rtmpts() {
    let src = fixture(21);
    let gate = TlsGate::start(&[]);
    let dir = tempdir();
    let key = "live/play";
    let mut players = Vec::new();
    for (proto, url) in [
        ("rtmps", gate.rtmps_url(key)),
        ("rtmpt", gate.rtmpt_url(key)),
        ("rtmpts", gate.rtmpts_url(key)),
    ] {
        let out = dir.path().join(format!("{proto}.flv"));
        players.push((proto, play(&url, &out), out));
        gate.server
            .wait_log_all(&["play requested", key, &format!("proto=\"{proto}\"")], T);
    }
    let mut publisher = publish(&src, &gate.server.url(key), &[]);
    assert!(wait_child(&mut publisher, T, "publisher").success());
    let source = framemd5(&src);
    for (proto, child, out) in &mut players {
        let status = wait_child(child, T, proto);
        assert!(status.success(), "{proto} player: {}", stderr_of(child));
        assert_same_tracks(&source, &framemd5(out), &format!("played over {proto}"));
        assert_eq!(decode_errors(&*out), "", "decoding what {proto} played");
    }
}

/// SIGHUP reloads the certificate while a publisher is live over RTMPS: a
/// bad new pair keeps the old certificate (logged), a good one is served to
/// new connections on both TLS listeners, and the publisher never notices.
#[test]
fn certificate_reload_on_sighup_keeps_the_live_publisher() {
    let src = fixture(22);
    let mut gate = TlsGate::start(&[]);
    let key = "live/reload";
    let mut publisher = publish(&src, &gate.rtmps_url(key), &["-stream_loop", "-1"]);
    gate.server.wait_log_all(&["publish started", key], T);
    wait_http_ok(gate.server.http, "/live/reload/video.m3u8", T);
    assert_eq!(served_cert(gate.rtmps), gate.cert.der);
    assert_eq!(served_cert(gate.https), gate.cert.der);

    // A bad new certificate: logged, and the old one stays in use.
    std::fs::write(&gate.cert.cert, "not a certificate\n").unwrap();
    hangup(&gate.server);
    let line = gate.server.wait_log_all(
        &[
            "TLS certificate reload failed, keeping the previous one",
            "no PEM certificate",
        ],
        T,
    );
    assert!(line.contains(gate.cert.cert.to_str().unwrap()), "{line}");
    assert!(line.contains(&gate.cert.fingerprint()), "{line}");
    assert_eq!(served_cert(gate.rtmps), gate.cert.der);

    // A good new pair, swapped in by rename as deploy tools do.
    let next = Cert::generate(gate.dir.path(), "next");
    std::fs::rename(&next.key, &gate.cert.key).unwrap();
    std::fs::rename(&next.cert, &gate.cert.cert).unwrap();
    hangup(&gate.server);
    gate.server
        .wait_log_all(&["TLS certificate reloaded", &next.fingerprint()], T);
    assert_eq!(
        served_cert(gate.rtmps),
        next.der,
        "RTMPS serves the new certificate"
    );
    assert_eq!(
        served_cert(gate.https),
        next.der,
        "HTTPS serves the new certificate"
    );

    // The publisher is still connected and its media still flows: the
    // playlist gains a new segment after the reload.
    let last_segment = |text: String| {
        text.lines()
            .rfind(|l| l.ends_with(".m4s"))
            .map(str::to_string)
    };
    let before = last_segment(http_get(gate.server.http, "/live/reload/video.m3u8").text());
    let deadline = Instant::now() + T;
    while last_segment(http_get(gate.server.http, "/live/reload/video.m3u8").text()) == before {
        assert!(Instant::now() < deadline, "no new segment after the reload");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gate.server.is_running(), "SIGHUP must not stop castgate");
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the publisher dropped: {}",
        stderr_of(&mut publisher)
    );
    assert_eq!(gate.server.count_log(&["publish ended", key]), 0);
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// Wrong protocols on each listener get a clean close (or, for plain HTTP
/// on the HTTPS port, a 400) and a log line naming the peer, while a real
/// RTMPS publish alongside arrives whole.
#[test]
fn wrong_protocol_on_each_listener_is_closed_with_a_log_line() {
    let src = fixture(23);
    let gate = TlsGate::start(&[
        ("CASTGATE__RTMP__HANDSHAKE_TIMEOUT_SECS", "1"),
        ("CASTGATE__HTTP__IDLE_TIMEOUT_SECS", "1"),
    ]);
    let server = &gate.server;
    let mut publisher = publish(&src, &gate.rtmps_url("live/along"), &[]);
    server.wait_log_all(&["publish started", "live/along"], T);

    // Plain RTMP (C0+C1) on the RTMPS port.
    let mut s = TcpStream::connect(gate.rtmps).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(&c0c1().1).unwrap();
    expect_clean_close(&mut s, T, "plain RTMP on the RTMPS port");
    server.wait_log_all(
        &[&peer_tag(&s), "plain RTMP handshake on the RTMPS port"],
        T,
    );
    // ffmpeg makes the same mistake and gives up.
    let mut wrong = publish(&src, &format!("rtmp://{}/live/wrong", gate.rtmps), &[]);
    assert!(!wait_child(&mut wrong, T, "rtmp:// to the RTMPS port").success());

    // TLS on the plain RTMP port and on the plain HTTP port.
    for (addr, log) in [
        (server.rtmp, "looks like a TLS ClientHello"),
        (server.http, "TLS ClientHello on the plain HTTP port"),
    ] {
        let tcp = TcpStream::connect(addr).unwrap();
        let tag = peer_tag(&tcp);
        assert!(tls_handshake(tcp, &[]).is_err(), "TLS to {addr} must fail");
        server.wait_log_all(&[&tag, log], T);
    }

    // Plain HTTP on the HTTPS port (http:// or rtmpt:// to 8443): a 400.
    let r = http_get(gate.https, "/healthz");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("https://"), "{}", r.text());
    let r = Tunnel::post(gate.https, "/open/1", &[0]);
    assert_eq!(r.status, 400);
    server.wait_log("plain HTTP request on the HTTPS port", T);

    // Not TLS, not HTTP, on each TLS port.
    for (addr, port) in [(gate.https, "HTTPS"), (gate.rtmps, "RTMPS")] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(&[0u8; 64]).unwrap();
        expect_clean_close(&mut s, T, "zeros");
        server.wait_log_all(
            &[
                &peer_tag(&s),
                &format!("not a TLS handshake on the {port} port (first byte 0x00)"),
            ],
            T,
        );
    }

    // RTMPE inside TLS (C0 = 6 after the TLS handshake), on the RTMPS port
    // and in an RTMPTS tunnel: no client layers the two, castgate refuses.
    const INSIDE_TLS: &str = "RTMPE inside TLS is not a variant clients speak";
    let mut c0 = vec![6u8];
    c0.extend_from_slice(&[0; 100]);
    let mut tls = tls_connect(gate.rtmps);
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tag = peer_tag(&tls.sock);
    tls.write_all(&c0).unwrap();
    tls.flush().unwrap();
    expect_clean_close(&mut tls, T, "RTMPE inside RTMPS");
    server.wait_log_all(&[&tag, "proto=\"rtmps\"", INSIDE_TLS], T);
    let r = https_exchange(gate.https, "POST", "/open/1", &[0]);
    assert_eq!(r.status, 200, "RTMPTS open: {}", r.text());
    let id = r.text().trim().to_string();
    let r = https_exchange(gate.https, "POST", &format!("/send/{id}/0"), &c0);
    assert_eq!(r.status, 200, "RTMPTS send: {}", r.text());
    assert_eq!(r.body, vec![0], "an ended session's interval is 0");
    server.wait_log_all(&["proto=\"rtmpts\"", INSIDE_TLS], T);

    // A TLS record header followed by garbage.
    let mut s = TcpStream::connect(gate.rtmps).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut junk = vec![0x16, 3, 1, 0, 64];
    junk.extend_from_slice(&[0xEE; 64]);
    s.write_all(&junk).unwrap();
    expect_clean_close(&mut s, T, "TLS garbage");
    server.wait_log_all(&[&peer_tag(&s), "TLS handshake failed"], T);

    // A client that connects and says nothing is closed after the
    // handshake timeout (1 s here).
    let mut s = TcpStream::connect(gate.rtmps).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    expect_clean_close(&mut s, T, "silent client");
    server.wait_log_all(&[&peer_tag(&s), "sent nothing within"], T);

    // Idle connections are closed (http.idle_timeout_secs = 1 here): a
    // keep-alive connection once its response is sent, and a TLS
    // connection that never sends a request.
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: castgate\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let got = expect_clean_close(&mut s, T, "idle keep-alive connection");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the idle timeout"
    );
    let mut tls = tls_connect(gate.https);
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    expect_clean_close(&mut tls, T, "idle TLS connection");

    // RTMPT over HTTPS refuses unknown sessions too.
    let r = https_exchange(
        gate.https,
        "POST",
        &format!("/idle/{}/0", "0".repeat(32)),
        &[0],
    );
    assert_eq!(r.status, 404);

    // The real stream went on untouched.
    assert!(wait_child(&mut publisher, T, "publisher").success());
    let frames = framemd5(&src).len();
    server.wait_log_all(
        &[
            "publish ended",
            "live/along",
            &format!("frames={frames} "),
            "bad_tags=0",
        ],
        T,
    );
}

/// Hostile RTMPT requests get an HTTP error and change nothing: unknown and
/// malformed ids, replayed and skipped sequence numbers, oversized bodies.
/// The dummy byte of `/idle` never enters the RTMP stream, a `/send` reply
/// carries the server's answer at once, garbage ends the RTMP session with a
/// log line, and a GET on a tunnel-shaped path is still a media request.
#[test]
fn rtmpt_refuses_hostile_requests_with_http_errors() {
    let server = Castgate::start(&[("CASTGATE__RTMPT__MAX_BODY_BYTES", "65536")]);
    let http = server.http;
    let post = |path: &str, body: &[u8]| Tunnel::post(http, path, body);

    // Flash's ident probe, unknown and malformed ids, unknown commands.
    assert_eq!(post("/fcs/ident2", &[0]).status, 404);
    let unknown = "0123456789abcdef".repeat(2);
    assert_eq!(post(&format!("/idle/{unknown}/0"), &[0]).status, 404);
    server.wait_log_all(&["RTMPT idle refused", "unknown or ended RTMPT session"], T);
    assert_eq!(post("/send/abc/0", b"x").status, 404);
    assert_eq!(post(&format!("/bogus/{unknown}/0"), &[0]).status, 404);

    let mut t = Tunnel::open(http);
    // The idle dummy byte is 0x03 here: had it entered the stream, it would
    // be a C0 and the real C0+C1 below would break the handshake.
    let r = t.request("idle", &[3]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-fcs"));
    assert_eq!(r.body, vec![1], "polling interval 1, nothing queued");

    // C0+C1: the reply holds the polling interval and all of S0+S1+S2.
    let (mut hs, c0c1) = c0c1();
    let r = t.request("send", &c0c1);
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0], 1, "polling interval");
    let mut c2 = Vec::new();
    let (used, status) = hs.process(&r.body[1..], &mut c2).expect("server handshake");
    assert_eq!((used, status), (3073, HandshakeStatus::Done));

    // Replayed (this C0+C1 again), skipped and malformed sequence numbers.
    for (seq, body) in [
        ("1", &c0c1[..]),
        ("0", &[0u8][..]),
        ("9", &[0u8; 8][..]),
        ("-1", &[0][..]),
        ("x", &[0][..]),
    ] {
        let r = t.request_at("send", seq, body);
        assert_eq!(r.status, 400, "sequence number {seq}: {}", r.text());
    }
    server.wait_log_all(&["RTMPT send refused", "replayed", t.short()], T);
    server.wait_log_all(&["RTMPT send refused", "skips ahead", t.short()], T);
    // An oversized body.
    let r = t.request("send", &vec![0u8; 70_000]);
    assert_eq!(r.status, 413);
    server.wait_log_all(&["RTMPT send refused", "larger than 65536"], T);

    // None of that reached the session: C2 and a publish go through.
    let mut out = c2;
    let mut cmds = Commands::new();
    cmds.connect_and_publish(&mut out, "hostile");
    let r = t.request("send", &out);
    assert_eq!(r.status, 200);
    let reply = String::from_utf8_lossy(&r.body);
    assert!(
        reply.contains("NetConnection.Connect.Success"),
        "the reply carries the answer to connect: {reply:?}"
    );
    server.wait_log_all(&["publish started", "live/hostile", "proto=\"rtmpt\""], T);

    // /close: the connection ends, the id is gone.
    let r = t.request("close", &[0]);
    assert_eq!(r.status, 200);
    server.wait_log_all(&["RTMPT session closed by the client", t.short()], T);
    server.wait_log_all(&["publish ended", "live/hostile"], T);
    assert_eq!(t.request("idle", &[0]).status, 404);

    // Garbage where C0+C1 belongs: the RTMP session ends with its reason;
    // the reply says so (interval 0) and the id is gone after it.
    let mut g = Tunnel::open(http);
    let r = g.request("send", b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![0], "an ended session's interval is 0");
    server.wait_log_all(
        &["proto=\"rtmpt\"", "unsupported RTMP version byte 0x47"],
        T,
    );
    assert_eq!(g.request("idle", &[0]).status, 404);

    // GET on a tunnel-shaped path is a media request (a stream may be
    // called `send`): a 404 from the media routes, not a 405.
    let r = http_get(http, &format!("/send/{}/index.m3u8", g.id));
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not found"), "{}", r.text());
    assert_eq!(http_get(http, "/healthz").status, 200);
}

/// Sessions are bounded and expire after inactivity (2 s here), which ends
/// their RTMP connection; an ffmpeg publish that keeps polling is never
/// expired and arrives whole.
#[test]
fn rtmpt_sessions_expire_and_are_bounded() {
    let src = fixture(24);
    let server = Castgate::start(&[
        ("CASTGATE__RTMPT__SESSION_TIMEOUT_SECS", "2"),
        ("CASTGATE__RTMPT__MAX_SESSIONS", "3"),
    ]);
    let http = server.http;
    let mut quiet = Tunnel::open(http);
    let idle = Tunnel::open(http);
    let rtmpt = format!("rtmpt://{http}/live/kept");
    let mut publisher = publish_with(&src, &rtmpt, &[], &FLUSH_EVERY_PACKET);
    server.wait_log_all(&["publish started", "live/kept"], T);
    // Three sessions: the limit.
    let r = Tunnel::post(http, "/open/1", &[0]);
    assert_eq!(r.status, 503, "{}", r.text());
    server.wait_log("RTMPT open refused: too many sessions", T);

    // A publisher over a raw tunnel that then stops polling.
    let (mut hs, c0c1) = c0c1();
    let r = quiet.request("send", &c0c1);
    let mut out = Vec::new();
    hs.process(&r.body[1..], &mut out).unwrap();
    Commands::new().connect_and_publish(&mut out, "quiet");
    assert_eq!(quiet.request("send", &out).status, 200);
    server.wait_log_all(&["publish started", "live/quiet"], T);

    // Both silent sessions expire; the quiet publisher's RTMP connection
    // ends with its session.
    for t in [&quiet, &idle] {
        server.wait_log_all(&["RTMPT session expired", t.short()], T);
    }
    server.wait_log_all(&["publish ended", "live/quiet"], T);
    assert_eq!(quiet.request_at("idle", "2", &[0]).status, 404);
    assert_eq!(idle.request_at("idle", "0", &[0]).status, 404);

    // The polling publisher was never expired and delivered every frame.
    assert!(wait_child(&mut publisher, T, "rtmpt publisher").success());
    let frames = framemd5(&src).len();
    server.wait_log_all(
        &["publish ended", "live/kept", &format!("frames={frames} ")],
        T,
    );
    assert_eq!(server.count_log(&["RTMPT session expired"]), 2);
    // Room again for new sessions.
    Tunnel::open(http);
}

/// The per-address caps hold on the TLS listeners too: past
/// `rtmp.max_connections_per_ip` (RTMPS) and `http.max_connections_per_ip`
/// (HTTPS) a connection from 127.0.0.2 is closed before TLS with a log line
/// naming the address, while 127.0.0.1 is served (ffmpeg publishes over
/// rtmps://, a GET over HTTPS answers).
#[test]
fn per_address_caps_hold_on_rtmps_and_https() {
    let src = fixture(25);
    let gate = TlsGate::start(&[
        ("CASTGATE__RTMP__MAX_CONNECTIONS_PER_IP", "2"),
        ("CASTGATE__HTTP__MAX_CONNECTIONS_PER_IP", "2"),
        ("CASTGATE__RTMP__HANDSHAKE_TIMEOUT_SECS", "60"),
    ]);
    let server = &gate.server;
    let greedy: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let held_rtmps: Vec<_> = (0..2)
        .map(|_| tls_handshake(tcp_connect_from(greedy, gate.rtmps), &[]).expect("RTMPS TLS"))
        .collect();
    let mut held_https: Vec<_> = (0..2)
        .map(|_| {
            let mut s =
                tls_handshake(tcp_connect_from(greedy, gate.https), &[]).expect("HTTPS TLS");
            assert_eq!(crate::limits::keep_alive_get(&mut s, "/healthz"), 200);
            s
        })
        .collect();
    for (addr, what) in [(gate.rtmps, "RTMPS"), (gate.https, "HTTPS")] {
        let tcp = tcp_connect_from(greedy, addr);
        let tag = format!("{} ", peer_tag(&tcp));
        assert!(
            tls_handshake(tcp, &[]).is_err(),
            "{what}: a third connection from 127.0.0.2 must be refused"
        );
        let line = server.wait_log_all(&[&tag, "connection refused: per-address limit reached"], T);
        assert!(line.contains("client=127.0.0.2"), "{line}");
    }
    // 127.0.0.1 is served on both.
    assert_eq!(
        https_exchange(gate.https, "GET", "/healthz", &[]).status,
        200
    );
    let mut publisher = publish(&src, &gate.rtmps_url("live/capped"), &[]);
    server.wait_log_all(&["publish started", "live/capped", "proto=\"rtmps\""], T);
    assert!(
        wait_child(&mut publisher, T, "rtmps publisher").success(),
        "{}",
        stderr_of(&mut publisher)
    );
    // The held HTTPS connections still work.
    assert_eq!(
        crate::limits::keep_alive_get(&mut held_https[0], "/healthz"),
        200
    );
    drop(held_rtmps);
}

/// A missing or bad certificate or key stops start-up with a message
/// naming the file.
#[test]
fn bad_certificate_files_stop_start_up_naming_the_file() {
    let dir = tempdir();
    let good = Cert::generate(dir.path(), "good");
    let other = Cert::generate(dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "garbage").unwrap();
    let (g_cert, g_key) = (good.cert.to_str().unwrap(), good.key.to_str().unwrap());
    let garbage = garbage.to_str().unwrap();
    for (section, cert, key, named) in [
        (
            "RTMPS",
            "/nonexistent/cert.pem",
            g_key,
            "/nonexistent/cert.pem",
        ),
        (
            "RTMPS",
            g_cert,
            "/nonexistent/key.pem",
            "/nonexistent/key.pem",
        ),
        ("RTMPS", garbage, g_key, garbage),
        ("RTMPS", g_cert, garbage, garbage),
        ("RTMPS", g_cert, other.key.to_str().unwrap(), "does not fit"),
        (
            "HTTPS",
            "/nonexistent/https.pem",
            g_key,
            "/nonexistent/https.pem",
        ),
    ] {
        let port = || "127.0.0.1:0".to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_castgate"))
            .env("CASTGATE__RTMP__LISTEN", port())
            .env("CASTGATE__HTTP__LISTEN", port())
            .env("CASTGATE__RTMPS__LISTEN", port())
            .env("CASTGATE__HTTPS__LISTEN", port())
            .env(format!("CASTGATE__{section}__CERT"), cert)
            .env(format!("CASTGATE__{section}__KEY"), key)
            .env_remove("RUST_LOG")
            .output_within(RUN_LIMIT)
            .expect("cannot run castgate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{section} {cert} {key}: started");
        assert!(
            stderr.contains(named) && stderr.contains(section),
            "{section} {cert} {key}: {stderr}"
        );
    }
}

/// librtmp's player over the RTMP tunnel: rtmpdump, started before the
/// publisher, records every packet with the publisher's timestamps and
/// payloads and ends when the stream does. librtmp reads the tunnel's
/// replies with case-sensitive matching (`HTTP/1.1 200 `, `Content-`
/// then `length:`): with other spellings it fails at once with
/// "RTMP_Connect1, Could not connect for handshake".
#[test]
fn rtmpdump_plays_over_rtmpt() {
    let server = Castgate::start(&[]);
    let url = format!("rtmpt://{}/live/dumpt", server.http);
    rtmpdump_plays(&server, &url, "live/dumpt", "rtmpt", &fixture(24));
}

/// GStreamer's librtmp sink publishes over rtmpt://: castgate receives every
/// frame, and the stream's HLS and DASH hold them all.
#[test]
fn gstreamer_rtmpsink_publishes_over_rtmpt() {
    let src = fixture(25);
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1"), SHORT_RTMPT_SESSIONS]);
    let dir = tempdir();
    let sent = dir.path().join("sent.flv");
    let location = format!("location=rtmpt://{}/live/gstt", server.http);
    let mut gst = gst_publish(&src, &["rtmpsink", &location], &sent);
    let frames = framemd5(&src).len();
    expect_gst_publish(&server, &mut gst, "live/gstt", "rtmpt", frames);
    assert_hls_holds_gst_publish(
        &server,
        "live/gstt",
        &src,
        &sent,
        "HLS of GStreamer's rtmpsink publish over rtmpt",
    );
    assert_dash_holds_gst_publish(
        &server,
        "live/gstt",
        &src,
        &sent,
        "DASH of GStreamer's rtmpsink publish over rtmpt",
    );
}

/// GStreamer's own RTMP client (rtmp2sink) publishes over rtmps:// to a
/// self-signed certificate (`tls-validation-flags=0` accepts it): every
/// frame arrives and the HLS holds them all. librtmp cannot do TLS here
/// (see the module comment).
#[test]
fn gstreamer_rtmp2sink_publishes_over_rtmps() {
    let src = fixture(26);
    let gate = TlsGate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let sent = gate.dir.path().join("sent.flv");
    let location = format!("location={}", gate.rtmps_url("live/gsts"));
    let mut gst = gst_publish(
        &src,
        &["rtmp2sink", &location, "tls-validation-flags=0"],
        &sent,
    );
    let frames = framemd5(&src).len();
    expect_gst_publish(&gate.server, &mut gst, "live/gsts", "rtmps", frames);
    assert_hls_holds_gst_publish(
        &gate.server,
        "live/gsts",
        &src,
        &sent,
        "HLS of GStreamer's rtmp2sink publish over rtmps",
    );
}
