//! RTMFP (issue 24): castgate's RTMFP client, as an `rtmfp://` relay of one
//! castgate, publishes into another castgate's RTMFP listener, directly and
//! through a lossy, jittery UDP relay run by the test; the receiving
//! castgate's recording holds every frame of what ffmpeg published from the
//! keyframe the relay joined at, and the stream plays there over RTMP, HLS
//! and DASH like any other.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::relay::{create_relay, wait_relay};

const T: Duration = Duration::from_secs(90);

/// A UDP relay between RTMFP clients and `server`: each datagram, either
/// way, is dropped with probability `loss` or else delivered after a delay
/// drawn from `0..=jitter` (so datagrams also arrive out of order).
struct LossyRelay {
    addr: SocketAddr,
    /// Its tasks end when it is dropped.
    _runtime: tokio::runtime::Runtime,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    passed: Arc<std::sync::atomic::AtomicU64>,
}

impl LossyRelay {
    fn start(server: SocketAddr, loss: f64, jitter: Duration, seed: u64) -> LossyRelay {
        use std::sync::atomic::{AtomicU64, Ordering};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let passed = Arc::new(AtomicU64::new(0));
        let (front, back) = runtime.block_on(async {
            let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            (Arc::new(front), Arc::new(back))
        });
        let addr = front.local_addr().unwrap();
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let rng = Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(seed)));
        // One direction: read `from`, send on `to` to the address `dest` gives.
        let pump =
            |from: Arc<tokio::net::UdpSocket>,
             to: Arc<tokio::net::UdpSocket>,
             dest: Arc<dyn Fn(SocketAddr) -> Option<SocketAddr> + Send + Sync>| {
                let (rng, dropped, passed) = (rng.clone(), dropped.clone(), passed.clone());
                async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let Ok((n, src)) = from.recv_from(&mut buf).await else {
                            continue;
                        };
                        let Some(dst) = dest(src) else { continue };
                        let (lost, delay) = {
                            let mut r = rng.lock().unwrap();
                            let jitter_ms = jitter.as_millis() as u64;
                            (r.f64() < loss, Duration::from_millis(r.u64(0..=jitter_ms)))
                        };
                        if lost {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        passed.fetch_add(1, Ordering::Relaxed);
                        let data = buf[..n].to_vec();
                        let to = to.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = to.send_to(&data, dst).await;
                        });
                    }
                }
            };
        let seen = client.clone();
        runtime.spawn(pump(
            front.clone(),
            back.clone(),
            Arc::new(move |src| {
                *seen.lock().unwrap() = Some(src);
                Some(server)
            }),
        ));
        let known = client.clone();
        runtime.spawn(pump(back, front, Arc::new(move |_| *known.lock().unwrap())));
        LossyRelay {
            addr,
            _runtime: runtime,
            dropped,
            passed,
        }
    }

    fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.dropped.load(Ordering::Relaxed),
            self.passed.load(Ordering::Relaxed),
        )
    }
}

/// `path=…` of a log line.
fn path_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("path="))
        .map(|p| p.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no path= in {line:?}"))
}

/// The receiving castgate: RTMFP on, every `live/*` stream recorded as FLV.
fn receiver(dir: &Path) -> (Castgate, SocketAddr) {
    let cfg = dir.join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[rtmfp]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
             [recorder]\ndir = \"{}\"\n\
             [[record]]\nstream = \"live/*\"\nformat = \"flv\"\n",
            dir.join("media").display()
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("CASTGATE__PACKAGE__GRACE_SECS", "1")],
    );
    let udp = server.listening("RTMFP");
    (server, udp)
}

/// Asserts that `got` holds every frame of `src` from some keyframe to
/// the end, unchanged (payload checksums, sizes, times), and at least half
/// of the source's video: a relay joins a stream at its latest keyframe, as
/// over TCP, and from there loses nothing.
fn assert_contiguous(src: &Path, got: &Path, what: &str) {
    let got_str = got.to_str().unwrap();
    assert_eq!(decode_errors(got_str), "", "{what}: decoding");
    for map in ["0:v", "0:a"] {
        let source = framemd5_of(src, map);
        let received = framemd5_of(got_str, map);
        assert_same_packets(&source, &received, &format!("{what} ({map})"));
        if map == "0:v" {
            assert!(
                received.len() * 2 >= source.len(),
                "{what}: {} of {} video frames",
                received.len(),
                source.len()
            );
        }
    }
}

#[test]
fn an_rtmfp_relay_delivers_every_frame_through_loss_and_jitter() {
    let dir = tempdir();
    let (b, b_udp) = receiver(dir.path());
    let a = Castgate::start_loopback_egress(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let src = fixture(3);
    for (i, (loss, jitter_ms)) in [(0.0, 0u64), (0.01, 50), (0.05, 50)]
        .into_iter()
        .enumerate()
    {
        let relay = LossyRelay::start(b_udp, loss, Duration::from_millis(jitter_ms), i as u64 + 1);
        let what = format!("{}% loss, {jitter_ms} ms jitter", loss * 100.0);
        let name = format!("live/lossy{i}");
        let r = create_relay(
            &a,
            json!({"stream": format!("live/src{i}"),
                   "target": format!("rtmfp://{}/{name}", relay.addr)}),
        );
        let id = r["id"].as_u64().unwrap();
        let mark = b.log_len();
        let started = Instant::now();
        let mut publisher = publish(&src, &a.url(&format!("live/src{i}")), &[]);
        let begun = b.wait_log_all(&["recording started", &format!("stream=\"{name}\"")], T);
        let first_ms = started.elapsed().as_millis();
        wait_relay(&a, id, "connected over RTMFP", |r| r["state"] == "live");
        // The stream plays on the receiver like any other: RTMP, HLS, DASH.
        if i == 0 {
            let out = dir.path().join("played.flv");
            let mut player = play(&b.url(&name), &out);
            let hls = wait_http_ok(b.http, &format!("/{name}/index.m3u8"), T);
            assert!(hls.text().contains("#EXTM3U"), "{}", hls.text());
            let dash = wait_http_ok(b.http, &format!("/{name}/manifest.mpd"), T);
            assert!(dash.text().contains("<MPD"), "{}", dash.text());
            wait_child(&mut player, T, "ffmpeg RTMP player");
            let played = framemd5(&out);
            assert!(
                played.len() > 30,
                "{what}: the RTMP player got {} packets",
                played.len()
            );
        }
        let status = wait_child(&mut publisher, T, "ffmpeg publisher");
        assert!(status.success(), "ffmpeg publisher: {status}");
        let done = b.wait_log_all(&["recording completed", &format!("stream=\"{name}\"")], T);
        let total_ms = started.elapsed().as_millis();
        assert_eq!(path_of(&done), path_of(&begun));
        let file = dir.path().join("media").join(path_of(&done));
        assert_contiguous(&src, &file, &format!("the recording, {what}"));
        let (dropped, passed) = relay.counts();
        if loss > 0.0 {
            assert!(
                dropped > 0,
                "{what}: the relay dropped nothing ({passed} passed)"
            );
        }
        let closed = b
            .find_log_after(mark, &["rtmfp session closed", "retransmitted_bytes="], T)
            .unwrap_or_else(|| panic!("{what}: the RTMFP session never closed"));
        let field = |name: &str| {
            closed
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or("?")
                .to_string()
        };
        eprintln!(
            "RTMFP {what}: first frame recorded {first_ms} ms after the publish began, the \
             last {total_ms} ms; the test relay dropped {dropped} of {} datagrams; the \
             receiver's session: rtt {} ms, {} bytes retransmitted, {} timeouts",
            dropped + passed,
            field("rtt_ms="),
            field("retransmitted_bytes="),
            field("timeouts="),
        );
        b.assert_no_panic();
    }
    a.assert_no_panic();
}

/// castgate pulls a stream from another castgate over RTMFP (a source with
/// an `rtmfp://` URL: castgate's RTMFP client playing) before anyone
/// publishes it there; ffmpeg then publishes over RTMP into the upstream.
/// The puller's recording of the pulled stream holds every frame from the
/// keyframe it joined at, and the upstream logs an RTMFP player.
#[test]
fn an_rtmfp_source_plays_a_stream_from_the_rtmfp_listener() {
    let dir = tempdir();
    let up_dir = dir.path().join("up");
    std::fs::create_dir_all(&up_dir).unwrap();
    let (up, up_udp) = receiver(&up_dir);
    let cfg = dir.path().join("puller.toml");
    std::fs::write(
        &cfg,
        format!(
            "[recorder]\ndir = \"{}\"\n[[record]]\nstream = \"live/*\"\nformat = \"flv\"\n",
            dir.path().join("media").display()
        ),
    )
    .unwrap();
    let puller = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("CASTGATE__PACKAGE__GRACE_SECS", "1")],
    );
    let id = crate::sources::create_source(
        &puller,
        json!({"stream": "live/pulled", "url": format!("rtmfp://{up_udp}/live/up"), "on_demand": false}),
    );
    let r = crate::sources::wait_source(&puller, id, "connecting", |r| r["state"] == "connecting");
    assert_eq!(r["protocol"], "rtmfp", "{r}");
    up.wait_log_all(&["play requested", "stream=\"live/up\""], T);
    let src = fixture(2);
    let mut publisher = publish(&src, &up.url("live/up"), &[]);
    crate::sources::wait_source(&puller, id, "live", |r| r["state"] == "live");
    let status = wait_child(&mut publisher, T, "ffmpeg publisher");
    assert!(status.success(), "ffmpeg publisher: {status}");
    let done = puller.wait_log_all(&["recording completed", "stream=\"live/pulled\""], T);
    let file = dir.path().join("media").join(path_of(&done));
    assert_contiguous(&src, &file, "the pulled stream's recording");
    let player = up.wait_log_all(&["play started", "stream=\"live/up\""], T);
    assert!(player.contains("proto=\"rtmfp\""), "{player}");
    up.assert_no_panic();
    puller.assert_no_panic();
}

/// The listener under hostile input: garbage datagrams of every size, cut
/// and corrupted startup packets, then a flood of IHellos from one address;
/// castgate answers within its RHello budget, logs no panic, and still
/// opens sessions for a real client, up to `max_sessions_per_ip` from one
/// address: the next is refused with a log line naming the limit.
#[test]
fn the_rtmfp_listener_survives_garbage_and_keeps_its_caps() {
    use castgate::rtmfp::handshake::Initiator;
    let server = Castgate::start(&[
        ("CASTGATE__RTMFP__ENABLED", "true"),
        ("CASTGATE__RTMFP__LISTEN", "127.0.0.1:0"),
        ("CASTGATE__RTMFP__MAX_SESSIONS_PER_IP", "2"),
        ("CASTGATE__RTMFP__HELLO_BYTES_PER_SEC_PER_IP", "1800"),
        ("CASTGATE__RTMFP__HELLO_BYTES_PER_SEC", "1800"),
    ]);
    let udp = server.listening("RTMFP");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(24);
    for n in [0usize, 1, 3, 4, 19, 20, 36, 180, 1200, 4000, 8192] {
        for _ in 0..20 {
            let junk: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            sock.send_to(&junk, udp).unwrap();
        }
    }
    // A real IHello, then bit flips and truncations of it.
    let hello = Initiator::new("rtmfp://127.0.0.1/live", 9, &[]).hello(0);
    for i in 0..hello.len() * 8 {
        let mut bad = hello.clone();
        bad[i / 8] ^= 1 << (i % 8);
        sock.send_to(&bad, udp).unwrap();
        sock.send_to(&hello[..i / 8], udp).unwrap();
    }
    // A real client still opens a session (its retries outlast the
    // backlog of garbage).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("rtmfp://{udp}/live");
    let connect = |timeout: Duration| {
        // (The client sends its IHello again after a second and more: the
        // RHello budget a flood spent refills meanwhile.)
        rt.block_on(castgate::transport::rtmfp::connect(
            udp, &url, None, timeout,
        ))
    };
    let first = connect(T).expect("a first session");
    // 50 good IHellos from one address: 1800 bytes a second of RHellos
    // (180 each) is at most 10 answers, plus the refill while sending.
    for _ in 0..50 {
        sock.send_to(&hello, udp).unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        assert_eq!(n, 180, "an RHello");
        answers += 1;
    }
    assert!(
        (1..=12).contains(&answers),
        "{answers} RHellos for 50 IHellos"
    );
    // Up to the per-address cap: the next is refused.
    let second = connect(T).expect("a second session");
    let mark = server.log_len();
    let third = connect(Duration::from_secs(4));
    assert!(third.is_err(), "a third session from one address opened");
    server
        .find_log_after(mark, &["rtmfp session refused", "limit 2 per address"], T)
        .expect("the refusal is logged with the limit");
    drop((first, second));
    server.assert_no_panic();
}
