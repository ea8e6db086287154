//! Relays against real receivers: nginx-rtmp, ffmpeg as an RTMP listener,
//! srt-live-transmit and ffmpeg as SRT peers, castgate's own RTMPS listener;
//! and the MPEG-TS muxer's output checked by ffprobe and ffmpeg.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use castgate::egress::ts::{TsMuxer, MESSAGE, PACKET};
use castgate::hub::StreamEvent;
use castgate::media::flv::Ingest;
use castgate::media::MediaKind;
use serde_json::{json, Value};

use crate::harness::*;

pub(crate) const T: Duration = Duration::from_secs(60);

/// Packets per stream type as ffprobe counts them: (video, audio).
pub(crate) fn count_packets(input: &Path) -> (u64, u64) {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=index,codec_type,nb_read_packets", "-of", "csv=p=0"])
        .arg(input)
        .output_within(RUN_LIMIT)
        .expect("cannot run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // MPEG-TS streams are listed twice (under their program too).
    let mut seen = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.trim().split(',').collect();
        if let [index, kind, n] = f[..] {
            seen.insert(
                index.to_string(),
                (kind.to_string(), n.parse::<u64>().unwrap_or(0)),
            );
        }
    }
    let count = |k: &str| {
        seen.values()
            .filter(|(kind, _)| kind == k)
            .map(|(_, n)| n)
            .sum()
    };
    (count("video"), count("audio"))
}

/// The MD5 of every decoded frame (pictures or audio frames) of one
/// stream: equal lists mean the same pictures and sound, whatever the
/// container and bitstream format.
pub(crate) fn decoded_md5(input: &Path, map: &str) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-map", map, "-f", "framemd5", "-"])
        .output_within(RUN_LIMIT)
        .expect("cannot run ffmpeg");
    assert!(
        out.status.success(),
        "decoding {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .collect()
}

/// The hub events a live publish of `flv` produces (castgate's own ingest).
pub(crate) fn events_of(flv: &Path) -> Vec<StreamEvent> {
    let data = Bytes::from(std::fs::read(flv).unwrap());
    let mut ingest = Ingest::new();
    let mut events = vec![StreamEvent::PublisherStarted];
    for t in castgate::media::flv_file::read_tags(&data).unwrap() {
        let kind = match t.tag_type {
            9 => MediaKind::Video,
            8 => MediaKind::Audio,
            _ => continue,
        };
        ingest
            .media(kind, t.timestamp, t.body, |e| events.push(e))
            .unwrap();
    }
    events
}

/// The muxer's output of a real encode (H.264 High with B-frames, AAC):
/// ffprobe finds every frame, ffmpeg decodes it without an error, and the
/// decoded pictures and sound are those of the source.
#[test]
fn ts_muxer_output_decodes_like_the_source() {
    let src = fixture(0);
    let events = events_of(&src);
    let mut mux = TsMuxer::new();
    let mut ts = Vec::new();
    for e in &events {
        mux.push(e);
        for m in mux.take_messages(false) {
            assert_eq!(m.len(), MESSAGE);
            ts.extend_from_slice(&m);
        }
    }
    for m in mux.take_messages(true) {
        assert_eq!(m.len() % PACKET, 0);
        ts.extend_from_slice(&m);
    }
    assert_eq!(mux.stats.dropped, 0);
    let dir = tempdir();
    let out = dir.path().join("out.ts");
    std::fs::write(&out, &ts).unwrap();
    let frames = |kind| {
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Frame(f) if f.kind() == kind))
            .count() as u64
    };
    assert_eq!(
        count_packets(&out),
        (frames(MediaKind::Video), frames(MediaKind::Audio))
    );
    assert_eq!(count_packets(&src), count_packets(&out));
    assert_eq!(strict_decode(&out), "", "decoding the TS");
    for map in ["0:v", "0:a"] {
        let want = decoded_md5(&src, map);
        assert!(!want.is_empty());
        assert_eq!(decoded_md5(&out, map), want, "decoded {map} differs");
    }
}

/// Decodes a file; returns every warning and error ffmpeg prints (empty when
/// clean). Stricter than [`decode_errors`]: a truncated or corrupt packet is
/// only a warning. `-copyts` keeps the null muxer from complaining about
/// B-frame timestamps that round to the same 1/fps tick.
pub(crate) fn strict_decode(input: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-copyts", "-i"])
        .arg(input)
        .args(["-f", "null", "-"])
        .output_within(RUN_LIMIT)
        .expect("cannot run ffmpeg");
    let mut s = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        s.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    s
}

/// A child process killed (and reaped) when dropped, so a failing test
/// leaves no receiver behind.
pub(crate) struct Proc(pub(crate) Child, pub(crate) &'static str);

impl Proc {
    pub(crate) fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_child(&mut self.0, timeout, self.1)
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether something listens on a loopback TCP port (LISTEN) or holds a
/// UDP port, from /proc/net: probing with a connection would use up a
/// one-shot listener such as `ffmpeg -listen 1`.
pub(crate) fn bound(udp: bool, port: u16) -> bool {
    let files: &[&str] = if udp {
        &["/proc/net/udp", "/proc/net/udp6"]
    } else {
        &["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let hex = format!(":{port:04X}");
    files.iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&hex) && (udp || cols[3] == "0A")
            })
    })
}

pub(crate) fn wait_bound(udp: bool, port: u16, p: &mut Proc) {
    let deadline = Instant::now() + T;
    while !bound(udp, port) {
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!(
                "{} exited with {status} before listening: {}",
                p.1,
                stderr_of(&mut p.0)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never listened on {port}",
            p.1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("no free UDP port")
}

/// `ffmpeg -listen 1`: an RTMP server for one publisher, recording it.
fn ffmpeg_rtmp_listener(port: u16, path: &str, out: &Path) -> Proc {
    require("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-y", "-listen", "1", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/{path}"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");
    let mut p = Proc(child, "ffmpeg -listen 1");
    wait_bound(false, port, &mut p);
    p
}

/// `srt-live-transmit` writing what it receives to `out`; `-a:no`: it exits
/// when its peer disconnects. `url` is the SRT URL (listener or caller).
pub(crate) fn srt_receiver(url: &str, out: &Path) -> Proc {
    require("srt-live-transmit");
    let file = std::fs::File::create(out).unwrap();
    let child = Command::new("srt-live-transmit")
        .args(["-q", "-a:no", url, "file://con"])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run srt-live-transmit");
    Proc(child, "srt-live-transmit")
}

const NGINX_RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// nginx with Debian's RTMP module on a loopback port, recording every
/// publish of `live/KEY` to `rec/KEY.flv`. One process (no master).
pub(crate) struct Nginx {
    _proc: Proc,
    port: u16,
    rec: PathBuf,
}

impl Nginx {
    pub(crate) fn start(dir: &Path) -> Nginx {
        let bin = sbin("nginx");
        assert!(
            Path::new(NGINX_RTMP_MODULE).exists(),
            "{NGINX_RTMP_MODULE} is missing: install libnginx-mod-rtmp (./scripts/test.sh does)"
        );
        let port = free_port();
        let prefix = dir.join("nginx");
        let rec = prefix.join("rec");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        std::fs::create_dir_all(&rec).unwrap();
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            "{user}
load_module {NGINX_RTMP_MODULE};
daemon off;
master_process off;
error_log {p}/logs/error.log info;
pid {p}/nginx.pid;
events {{ worker_connections 256; }}
rtmp {{
  server {{
    listen 127.0.0.1:{port};
    chunk_size 4096;
    application live {{
      live on;
      record all;
      record_path {r};
      record_unique off;
    }}
  }}
}}
",
            p = prefix.display(),
            r = rec.display()
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run nginx");
        let mut proc = Proc(child, "nginx");
        wait_bound(false, port, &mut proc);
        Nginx {
            _proc: proc,
            port,
            rec,
        }
    }

    pub(crate) fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }

    fn recording(&self, key: &str) -> PathBuf {
        self.rec.join(format!("{key}.flv"))
    }
}

/// One API call: (status, JSON body or Null).
pub(crate) fn api(
    server: &Castgate,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let data = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http_exchange(
        server.http,
        method,
        &format!("/api/v1{path}"),
        &headers,
        data.as_bytes(),
    );
    let json = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text()))
    };
    (r.status, json)
}

pub(crate) fn create_relay(server: &Castgate, body: Value) -> Value {
    let (status, r) = api(server, "POST", "/relays", Some(&body), None);
    assert_eq!(status, 201, "POST /relays {body}: {r}");
    r
}

/// Polls a relay until `pred` holds; panics with the relay and the log.
pub(crate) fn wait_relay(
    server: &Castgate,
    id: u64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (status, r) = api(server, "GET", &format!("/relays/{id}"), None, None);
        assert_eq!(status, 200, "relay {id}: {r}");
        if pred(&r) {
            return r;
        }
        if Instant::now() >= deadline {
            panic!(
                "relay {id} never {what}: {r}\nlog:\n{}",
                server.lines_with(&[""]).join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn in_state(state: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["state"] == state
}

/// The source published in these tests: the 4 s fixture four times over
/// (so that a target can be killed and restarted mid-stream), as one file
/// whose packets receivers are compared with.
fn looped_fixture(variant: u32, dir: &Path) -> PathBuf {
    looped_fixture_n(variant, 4, dir)
}

/// The 4 s fixture `times` times over, as one file.
pub(crate) fn looped_fixture_n(variant: u32, times: u32, dir: &Path) -> PathBuf {
    let out = dir.join(format!("looped{variant}x{times}.flv"));
    let loops = times.saturating_sub(1).to_string();
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            &loops,
            "-i",
        ])
        .arg(fixture(variant))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&out)
        .status()
        .expect("cannot run ffmpeg");
    assert!(status.success());
    out
}

/// Payload checksums of one stream of a file, in order.
fn md5s(file: &Path, map: &str) -> Vec<String> {
    framemd5_of(file, map).into_iter().map(|p| p.md5).collect()
}

/// Asserts a received FLV holds exactly the source's packets (payloads,
/// in order, per track), and decodes cleanly.
fn assert_every_packet(src: &Path, got: &Path, what: &str) {
    for map in ["0:v", "0:a"] {
        assert_eq!(md5s(got, map), md5s(src, map), "{what} ({map})");
    }
    assert_eq!(strict_decode(got), "", "{what}: decoding");
}

/// Polls until a growing recording holds `want` packets.
fn wait_packets(file: &Path, want: (u64, u64), what: &str) {
    let deadline = Instant::now() + T;
    loop {
        let got = if file.exists() {
            count_packets(file)
        } else {
            (0, 0)
        };
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {got:?} packets, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One ffmpeg publish; three relays created through the API before it
/// starts, at once: nginx-rtmp, an ffmpeg RTMP listener and an SRT listener
/// (srt-live-transmit). The ffmpeg listener is killed mid-stream and
/// restarted: its relay backs off and goes live again while the other two
/// lose nothing. Deleting its relay ends the stream for it. nginx and SRT
/// receive every frame (payload-identical for nginx, decoding to the same
/// pictures and sound over SRT), and no secret reaches the log or the API.
#[test]
fn three_relays_survive_a_target_restart_and_a_delete() {
    require("srt-live-transmit");
    let dir = tempdir();
    let src = looped_fixture(0, dir.path());
    let want = count_packets(&src);
    let nginx = Nginx::start(dir.path());
    let lst_port = free_port();
    let lst1_out = dir.path().join("listener1.flv");
    let mut lst1 = ffmpeg_rtmp_listener(lst_port, "app/lstKEY3141", &lst1_out);
    let srt_port = free_udp_port();
    let srt_out = dir.path().join("srt.ts");
    let mut srt = srt_receiver(
        &format!("srt://127.0.0.1:{srt_port}?mode=listener"),
        &srt_out,
    );
    wait_bound(true, srt_port, &mut srt);
    let server = Castgate::start_loopback_egress(&[("CASTGATE__PACKAGE__GRACE_SECS", "2")]);
    server.wait_log_all(&["REST API on", "loopback clients only"], T);

    let targets = [
        nginx.url("ngxKEY2718"),
        format!("rtmp://127.0.0.1:{lst_port}/app/lstKEY3141"),
        format!("srt://127.0.0.1:{srt_port}?streamid=srtID1618&latency=200"),
    ];
    let ids: Vec<u64> = targets
        .iter()
        .map(|t| {
            let r = create_relay(&server, json!({"stream": "live/multi", "target": t}));
            assert_eq!(r["state"], "waiting", "{r}");
            r["id"].as_u64().unwrap()
        })
        .collect();
    let (_, list) = api(&server, "GET", "/relays", None, None);
    let shown = list.to_string();
    assert_eq!(list["relays"].as_array().unwrap().len(), 3);
    for secret in ["ngxKEY2718", "lstKEY3141", "srtID1618"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }

    let mut publisher = Proc(
        publish(&src, &server.url("live/multi"), &[]),
        "ffmpeg publisher",
    );
    for &id in &ids {
        wait_relay(&server, id, "went live", in_state("live"));
    }
    // The listener is killed mid-stream (3 s in) and comes back.
    wait_relay(&server, ids[1], "sent 3 s", |r| {
        r["frames_sent"].as_u64() >= Some(90 + 140)
    });
    lst1.kill();
    let r = wait_relay(&server, ids[1], "backed off", in_state("backoff"));
    assert!(
        r["last_error"].is_string() && r["next_attempt_secs"].is_number(),
        "{r}"
    );
    let lst2_out = dir.path().join("listener2.flv");
    let mut lst2 = ffmpeg_rtmp_listener(lst_port, "app/lstKEY3141", &lst2_out);
    let r = wait_relay(&server, ids[1], "went live again", in_state("live"));
    assert!(r["reconnects"].as_u64() >= Some(1), "{r}");
    let sent = r["frames_sent"].as_u64().unwrap();
    let live_again = r.clone();
    let before_delete = wait_relay(&server, ids[1], "sent 2 s more", |r| {
        r["frames_sent"].as_u64() >= Some(sent + 2 * 77)
    });
    // DELETE: the relay stops, and its target sees the end of the stream.
    let (status, _) = api(
        &server,
        "DELETE",
        &format!("/relays/{}", ids[1]),
        None,
        None,
    );
    assert_eq!(status, 204);
    let deleted_at = Instant::now();
    lst2.wait(Duration::from_secs(10));
    assert!(deleted_at.elapsed() < Duration::from_secs(10));
    assert!(
        publisher.0.try_wait().unwrap().is_none(),
        "the stream still runs while the deleted relay's target has ended"
    );
    let (status, _) = api(&server, "GET", &format!("/relays/{}", ids[1]), None, None);
    assert_eq!(status, 404);
    server.wait_log_all(&["relay stopped", &format!("relay={}", ids[1])], T);

    // The publisher ends; after the grace period the other relays end their
    // publishes: nginx closes its recording, srt-live-transmit exits.
    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    srt.wait(T);
    for id in [ids[0], ids[2]] {
        let r = wait_relay(
            &server,
            id,
            "waited for the stream again",
            in_state("waiting"),
        );
        assert_eq!(r["frames_sent"].as_u64(), Some(want.0 + want.1), "{r}");
        assert_eq!(r["frames_dropped"].as_u64(), Some(0), "{r}");
        assert_eq!(r["reconnects"].as_u64(), Some(0), "{r}");
    }
    let rec = nginx.recording("ngxKEY2718");
    wait_packets(&rec, want, "nginx recording");
    assert_every_packet(&src, &rec, "nginx-rtmp");
    assert_eq!(count_packets(&srt_out), want, "SRT");
    assert_eq!(strict_decode(&srt_out), "", "SRT: decoding");
    for map in ["0:v", "0:a"] {
        assert_eq!(
            decoded_md5(&srt_out, map),
            decoded_md5(&src, map),
            "SRT decodes to other frames ({map})"
        );
    }
    // The restarted listener got a clean run of the stream from a keyframe.
    let video = framemd5_of(&lst2_out, "0:v");
    let got: Vec<String> = video.iter().map(|p| p.md5.clone()).collect();
    let audio = framemd5_of(&lst2_out, "0:a");
    // Every frame the relay sent on this connection after it was seen live
    // arrived (and at least a second of video did).
    let sent_since = before_delete["frames_sent"].as_u64().unwrap() - sent;
    assert!(
        (video.len() + audio.len()) as u64 >= sent_since && got.len() >= 30,
        "{sent_since} frames sent, received {} video frames ({:?} .. {:?} ms) and {} audio frames ({:?} .. {:?} ms); relay when \
         live again: {live_again}; before the delete: {before_delete}; listener: {}; log:\n{}",
        got.len(),
        video.first().map(|p| p.dts),
        video.last().map(|p| p.dts),
        audio.len(),
        audio.first().map(|p| p.dts),
        audio.last().map(|p| p.dts),
        stderr_of(&mut lst2.0),
        server.lines_with(&["relay"]).join("\n")
    );
    let all = md5s(&src, "0:v");
    let start = all
        .iter()
        .position(|m| *m == got[0])
        .expect("first frame in the source");
    assert_eq!(&all[start..start + got.len()], &got[..]);
    assert_eq!(strict_decode(&lst2_out), "", "listener 2: decoding");
    assert!(framemd5_of(&lst2_out, "0:v").len() == got.len());

    for secret in ["ngxKEY2718", "lstKEY3141", "srtID1618"] {
        assert!(
            server.lines_with(&[secret]).is_empty(),
            "{secret} logged: {:?}",
            server.lines_with(&[secret])
        );
    }
    assert!(server.count_log(&["relay live", "target=rtmp://127.0.0.1", "/live/***"]) >= 1);
    server.assert_no_panic();
}

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1:
/// (CA PEM, certificate PEM, key PEM) file paths.
fn ca_and_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "castgate e2e CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}

/// Polls until an HLS playlist on `server` is complete (EXT-X-ENDLIST).
fn wait_endlist(server: &Castgate, path: &str) {
    let deadline = Instant::now() + T;
    loop {
        let r = http_get(server.http, path);
        if r.status == 200 && r.text().contains("#EXT-X-ENDLIST") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never ended ({})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A second castgate is the destination: a static relay from the config
/// file (pattern and template) and RTMPS relays through the API, one
/// trusting the test CA that signed the destination's certificate, one
/// with verification explicitly off, and one with neither (it must fail
/// on the certificate and keep retrying). An SRT relay in listener mode
/// with a passphrase serves srt-live-transmit calling in. Every frame
/// reaches every destination that accepts the relay.
#[test]
fn static_rtmps_and_srt_listener_relays() {
    require("srt-live-transmit");
    let dir = tempdir();
    let src = fixture(1);
    let want = count_packets(&src);
    let (ca, cert, key) = ca_and_cert(dir.path());
    let dest = Castgate::start_loopback_egress(&[
        ("CASTGATE__RTMPS__LISTEN", "127.0.0.1:0"),
        ("CASTGATE__HTTPS__LISTEN", "127.0.0.1:0"),
        ("CASTGATE__RTMPS__CERT", cert.to_str().unwrap()),
        ("CASTGATE__RTMPS__KEY", key.to_str().unwrap()),
        ("CASTGATE__PACKAGE__GRACE_SECS", "1"),
    ]);
    let rtmps = dest.listening("RTMPS");
    let config = dir.path().join("castgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[relays]]\nstream = \"live/*\"\ntarget = \"rtmp://{}/relayed/{{key}}\"\n",
            dest.rtmp
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args_loopback_egress(
        &["serve", "--config", config.to_str().unwrap()],
        &[
            ("CASTGATE__PACKAGE__GRACE_SECS", "1"),
            // The API relay below takes its CA file from here.
            ("CASTGATE__EGRESS__CA_DIR", dir.path().to_str().unwrap()),
        ],
    );
    server.wait_log_all(&["static relay configured", "relayed/***"], T);

    let port = rtmps.port();
    let trusted = create_relay(
        &server,
        json!({"stream": "live/cam", "target": format!("rtmps://localhost:{port}/tls/cam"),
               "tls_ca_file": ca.to_str().unwrap()}),
    );
    assert_eq!(trusted["tls_verify"], true);
    let insecure = create_relay(
        &server,
        json!({"stream": "live/cam", "target": format!("rtmps://127.0.0.1:{port}/insecure/cam"),
               "tls_verify": false}),
    );
    assert_eq!(insecure["tls_verify"], false);
    let untrusted = create_relay(
        &server,
        json!({"stream": "live/cam", "target": format!("rtmps://localhost:{port}/untrusted/cam")}),
    );
    let srt_port = free_udp_port();
    let srt_relay = create_relay(
        &server,
        json!({"stream": "live/cam",
               "target": format!("srt://127.0.0.1:{srt_port}?mode=listener&passphrase=passphrase-0123&pbkeylen=24")}),
    );
    assert_eq!(
        srt_relay["target"],
        format!("srt://127.0.0.1:{srt_port}?mode=listener&passphrase=***&pbkeylen=24&latency=120")
    );
    let ids = [&trusted, &insecure, &untrusted, &srt_relay].map(|r| r["id"].as_u64().unwrap());

    let mut publisher = Proc(
        publish(&src, &server.url("live/cam"), &[]),
        "ffmpeg publisher",
    );
    // The static relay starts with the stream.
    let static_id = {
        let deadline = Instant::now() + T;
        loop {
            let (_, list) = api(&server, "GET", "/relays", None, None);
            let found = list["relays"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["source"] == "config")
                .cloned();
            if let Some(r) = found {
                assert_eq!(r["stream"], "live/cam");
                assert_eq!(r["target"], format!("rtmp://{}/relayed/***", dest.rtmp));
                break r["id"].as_u64().unwrap();
            }
            assert!(Instant::now() < deadline, "no static relay: {list}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The SRT relay listens once the stream is live; the receiver calls in.
    wait_relay(&server, ids[3], "listened", in_state("connecting"));
    let deadline = Instant::now() + T;
    while !bound(true, srt_port) {
        assert!(Instant::now() < deadline, "the SRT relay never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let srt_out = dir.path().join("srt.ts");
    let mut srt = srt_receiver(
        &format!("srt://127.0.0.1:{srt_port}?passphrase=passphrase-0123&pbkeylen=24"),
        &srt_out,
    );
    for id in [static_id, ids[0], ids[1], ids[3]] {
        wait_relay(&server, id, "went live", in_state("live"));
    }
    let r = wait_relay(&server, ids[2], "failed on the certificate", |r| {
        r["state"] == "backoff" && r["last_error"].is_string()
    });
    let e = r["last_error"].as_str().unwrap();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );

    let status = publisher.wait(T);
    assert!(
        status.success(),
        "publisher: {}",
        stderr_of(&mut publisher.0)
    );
    // The stream ends: the static instance goes, the API relays wait.
    wait_relay(&server, ids[0], "waited again", in_state("waiting"));
    srt.wait(T);
    let deadline = Instant::now() + T;
    while api(&server, "GET", &format!("/relays/{static_id}"), None, None).0 != 404 {
        assert!(
            Instant::now() < deadline,
            "the static relay outlived its stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for app in ["relayed", "tls", "insecure"] {
        let path = format!("/{app}/cam/index.m3u8");
        wait_endlist(&dest, &format!("/{app}/cam/video.m3u8"));
        wait_endlist(&dest, &format!("/{app}/cam/audio.m3u8"));
        assert_holds_every_frame(&src, &dest.http_url(&path), app);
    }
    assert_eq!(
        http_get(dest.http, "/untrusted/cam/index.m3u8").status,
        404,
        "the unverified destination got nothing"
    );
    assert_eq!(count_packets(&srt_out), want, "SRT listener");
    assert_eq!(strict_decode(&srt_out), "", "SRT listener: decoding");
    dest.wait_log_all(&["proto=\"rtmps\"", "publish started", "tls/cam"], T);
    server.assert_no_panic();
    dest.assert_no_panic();
}

/// Raw API request with a token: (status, headers and body).
fn api_raw(
    server: &Castgate,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    http_exchange(
        server.http,
        method,
        &format!("/api/v1{path}"),
        headers,
        body,
    )
}

/// The API over HTTP with `api.token` set: missing and wrong tokens, bad
/// requests of every kind, the OpenAPI document, and a live stream's
/// tracks, codecs, bitrate and frame rate.
#[test]
fn relay_api_access_validation_and_streams() {
    let server = Castgate::start_loopback_egress(&[("CASTGATE__API__TOKEN", "tok-123")]);
    server.wait_log_all(&["REST API on", "Authorization: Bearer"], T);
    let auth = ("Authorization", "Bearer tok-123");
    let json_ct = ("Content-Type", "application/json");
    let error = |r: &HttpResponse| -> String {
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
        v["error"].as_str().unwrap_or_default().to_string()
    };

    let r = api_raw(&server, "GET", "/relays", &[], b"");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert!(error(&r).contains("missing"), "{}", r.text());
    let r = api_raw(
        &server,
        "GET",
        "/relays",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!((r.status, error(&r).as_str()), (401, "wrong bearer token"));
    let r = api_raw(&server, "GET", "/relays", &[auth], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "API replies carry no CORS headers"
    );

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case] = &[
        ("{not json", &[auth, json_ct], 400, "JSON"),
        (
            r#"{"stream":"live/a","target":"rtmp://h/a/k"}"#,
            &[auth],
            415,
            "Content-Type",
        ),
        (r#"{"stream":"live/a"}"#, &[auth, json_ct], 422, "target"),
        (
            r#"{"stream":"live/a","target":"rtmp://h/a/k","extra":1}"#,
            &[auth, json_ct],
            422,
            "extra",
        ),
        (
            r#"{"stream":"live/a","target":"udp://h:1234"}"#,
            &[auth, json_ct],
            422,
            "unknown scheme",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp//h/a/k"}"#,
            &[auth, json_ct],
            422,
            "not a URL",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h:99999/a/k"}"#,
            &[auth, json_ct],
            422,
            "port",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h/app"}"#,
            &[auth, json_ct],
            422,
            "no stream key",
        ),
        (
            r#"{"stream":"live/a","target":"srt://h:9000?latncy=20"}"#,
            &[auth, json_ct],
            422,
            "unknown option",
        ),
        (
            r#"{"stream":"cam","target":"rtmp://h/a/k"}"#,
            &[auth, json_ct],
            422,
            "unknown stream pattern",
        ),
        (
            r#"{"stream":"live/../x","target":"rtmp://h/a/k"}"#,
            &[auth, json_ct],
            422,
            "unknown stream pattern",
        ),
        (
            r#"{"stream":"live/a","target":"rtmps://h/a/k","tls_ca_file":"/nonexistent/ca.pem"}"#,
            &[auth, json_ct],
            422,
            // One answer for any unusable path (no file-existence oracle).
            "tls_ca_file refused",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h/a/k","tls_verify":false}"#,
            &[auth, json_ct],
            422,
            "rtmps",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h/a/k"}"#,
            &[json_ct],
            401,
            "missing",
        ),
    ];
    for (body, headers, status, want) in cases {
        let r = api_raw(&server, "POST", "/relays", headers, body.as_bytes());
        assert_eq!(r.status, *status, "{body}: {}", r.text());
        assert!(error(&r).contains(want), "{body}: {}", r.text());
    }
    let big = format!(
        r#"{{"stream":"live/a","target":"rtmp://h/a/{}"}}"#,
        "k".repeat(70_000)
    );
    let r = api_raw(&server, "POST", "/relays", &[auth, json_ct], big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    let long = format!(
        r#"{{"stream":"live/a","target":"rtmp://h/a/{}"}}"#,
        "k".repeat(3000)
    );
    let r = api_raw(
        &server,
        "POST",
        "/relays",
        &[auth, json_ct],
        long.as_bytes(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(error(&r).contains("longer than"), "{}", r.text());

    let ok = br#"{"stream":"live/a","target":"rtmp://127.0.0.1:9/a/k"}"#;
    let r = api_raw(&server, "POST", "/relays", &[auth, json_ct], ok);
    assert_eq!(r.status, 201, "{}", r.text());
    let created: Value = serde_json::from_slice(&r.body).unwrap();
    let id = created["id"].as_u64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/relays/{id}").as_str())
    );
    let r = api_raw(&server, "POST", "/relays", &[auth, json_ct], ok);
    assert_eq!(r.status, 409, "{}", r.text());
    for (method, path) in [
        ("GET", "/relays/987654".to_string()),
        ("DELETE", "/relays/987654".to_string()),
        ("GET", "/relays/not-a-number".to_string()),
        ("GET", "/streams/live/nothing".to_string()),
        ("GET", "/nothing".to_string()),
    ] {
        let r = api_raw(&server, method, &path, &[auth], b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
    }
    let r = api_raw(&server, "DELETE", &format!("/relays/{id}"), &[auth], b"");
    assert_eq!(r.status, 204);
    let r = api_raw(&server, "DELETE", &format!("/relays/{id}"), &[auth], b"");
    assert_eq!(r.status, 404);

    let r = api_raw(&server, "GET", "/openapi.json", &[auth], b"");
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/relays"]["post"].is_object());

    // A live stream as the API describes it.
    let src = fixture(2);
    let mut publisher = Proc(
        publish(&src, &server.url("live/apitest"), &["-stream_loop", "2"]),
        "ffmpeg publisher",
    );
    let deadline = Instant::now() + T;
    let stream = loop {
        let r = api_raw(&server, "GET", "/streams/live/apitest", &[auth], b"");
        if r.status == 200 {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            if v["video"]["fps"].is_number() && v["uptime_secs"].as_f64() > Some(2.5) {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "no stream info: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stream["stream"], "live/apitest");
    assert_eq!(
        (stream["app"].as_str(), stream["key"].as_str()),
        (Some("live"), Some("apitest"))
    );
    assert!(stream["publisher"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let v = &stream["video"];
    assert_eq!(
        (
            v["codec"].as_str(),
            v["width"].as_u64(),
            v["height"].as_u64()
        ),
        (Some("h264"), Some(640), Some(360))
    );
    assert!(
        v["codec_string"].as_str().unwrap().starts_with("avc1.64"),
        "{v}"
    );
    let fps = v["fps"].as_f64().unwrap();
    assert!((28.0..=32.0).contains(&fps), "fps {fps}");
    let a = &stream["audio"];
    assert_eq!(
        (
            a["codec"].as_str(),
            a["codec_string"].as_str(),
            a["sample_rate"].as_u64(),
            a["channels"].as_u64()
        ),
        (Some("aac"), Some("mp4a.40.2"), Some(48000), Some(2))
    );
    let kbps = stream["bitrate_kbps"].as_f64().unwrap();
    assert!((200.0..2000.0).contains(&kbps), "bitrate {kbps}");
    let r = api_raw(&server, "GET", "/streams", &[auth], b"");
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["streams"].as_array().unwrap().len(), 1, "{list}");
    publisher.kill();
    server.assert_no_panic();
}

/// A publisher that ends and a new one on the same key within the grace
/// period: the relay's outbound publish (to `ffmpeg -listen 1`, which
/// would end with it) stays up, the destination gets both publishes with
/// timestamps still rising, and it ends once the stream is gone for good.
#[test]
fn relay_outlives_a_publisher_reconnect() {
    let dir = tempdir();
    let src = fixture(3);
    let one = count_packets(&src);
    let port = free_port();
    let out = dir.path().join("listener.flv");
    let mut listener = ffmpeg_rtmp_listener(port, "app/k", &out);
    let server = Castgate::start_loopback_egress(&[("CASTGATE__PACKAGE__GRACE_SECS", "6")]);
    let id = create_relay(
        &server,
        json!({"stream": "live/again", "target": format!("rtmp://127.0.0.1:{port}/app/k")}),
    )["id"]
        .as_u64()
        .unwrap();
    for round in 1..=2u64 {
        let mut publisher = Proc(publish(&src, &server.url("live/again"), &[]), "publisher");
        wait_relay(&server, id, "went live", in_state("live"));
        let status = publisher.wait(T);
        assert!(
            status.success(),
            "publisher {round}: {}",
            stderr_of(&mut publisher.0)
        );
        assert!(server.wait_count(&["publish ended", "live/again"], round as usize, T));
        // Still the same outbound publish: the listener is still running.
        assert!(listener.0.try_wait().unwrap().is_none(), "round {round}");
        let r = wait_relay(&server, id, "sent the round", |r| {
            r["frames_sent"].as_u64() == Some(round * (one.0 + one.1))
        });
        assert_eq!(r["state"], "live", "{r}");
        assert_eq!(r["reconnects"], 0, "{r}");
    }
    // Gone past the grace period: the relay ends its publish.
    listener.wait(T);
    wait_relay(&server, id, "waited again", in_state("waiting"));
    assert_eq!(count_packets(&out), (2 * one.0, 2 * one.1));
    for map in ["0:v", "0:a"] {
        let p = framemd5_of(&out, map);
        assert!(
            p.windows(2).all(|w| w[0].dts < w[1].dts),
            "{map}: timestamps do not rise across the reconnect"
        );
        let src_md5 = md5s(&src, map);
        let got: Vec<String> = p.into_iter().map(|p| p.md5).collect();
        assert_eq!(got, [src_md5.clone(), src_md5].concat(), "{map}");
    }
    assert_eq!(strict_decode(&out), "", "decoding");
    assert_eq!(server.count_log(&["relay live", &format!("relay={id}")]), 1);
}
