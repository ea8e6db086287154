//! Operating castgate: publish/play authorisation (keys, an auth webhook
//! served by the test), signed HLS URLs, webhook events to a receiver in
//! the test, `/metrics` parsed as Prometheus text while ffmpeg publishes,
//! SIGHUP reloads and SIGTERM during a live publish.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::*;
use crate::raw::{Raw, Wait};

/// Generous: the suite runs ~40 tests at once on 2 cores.
const T: Duration = Duration::from_secs(60);

fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(msg);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// What the receiver answers: (status, body).
pub(crate) type Handler = Arc<dyn Fn(&Received) -> (u16, String) + Send + Sync>;

/// A small HTTP/1.1 server in the test: one thread per connection, every
/// request recorded (in arrival order) before it is answered.
pub(crate) struct Receiver {
    addr: SocketAddr,
    got: Arc<(Mutex<Vec<Received>>, Condvar)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub(crate) fn start(handler: Handler) -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), handler)
    }

    fn start_on(listener: TcpListener, handler: Handler) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let got: Arc<(Mutex<Vec<Received>>, Condvar)> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (g, h) = (g.clone(), handler.clone());
                std::thread::spawn(move || serve_one(conn, &g, &*h));
            }
        });
        Receiver { addr, got, stop }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Received> {
        self.got.0.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the requests so far.
    pub(crate) fn wait(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + T;
        let mut g = self.got.0.lock().unwrap();
        loop {
            if pred(&g) {
                return g.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "receiver: {what} not seen; got {g:#?}");
            g = self.got.1.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_one(
    mut s: TcpStream,
    got: &(Mutex<Vec<Received>>, Condvar),
    handler: &(dyn Fn(&Received) -> (u16, String) + Send + Sync),
) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let req = Received {
        path,
        headers,
        body,
    };
    {
        let mut g = got.0.lock().unwrap();
        g.push(req.clone());
        got.1.notify_all();
    }
    let (status, body) = handler(&req);
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn api_streams(server: &Castgate) -> Vec<String> {
    let r = http_get(server.http, "/api/v1/streams");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap().to_string())
        .collect()
}

/// Publishes with a raw client and returns what castgate answered.
pub(crate) fn raw_publish(server: &Castgate, name: &str) -> (Raw, &'static str) {
    let mut raw = Raw::connect(server.rtmp);
    raw.start_stream("publish", name);
    let deadline = Instant::now() + T;
    loop {
        for code in [
            "NetStream.Publish.Start",
            "NetStream.Publish.Unauthorized",
            "NetStream.Publish.BadName",
        ] {
            if raw
                .received
                .windows(code.len())
                .any(|w| w == code.as_bytes())
            {
                return (raw, code);
            }
        }
        assert!(Instant::now() < deadline, "no answer to publish {name}");
        if raw.wait_for(b"NetStream.Publish.", Duration::from_millis(200)) == Wait::Closed {
            panic!("castgate closed the connection publishing {name}");
        }
    }
}

/// A raw RTMP play of `live/NAME` that must be answered with `code`
/// (`what` names the case on failure); the client, for more checks.
fn raw_play_answered(server: &Castgate, name: &str, code: &str, what: &str) -> Raw {
    let mut c = Raw::connect(server.rtmp);
    c.start_stream("play", name);
    assert_eq!(c.wait_for(code.as_bytes(), T), Wait::Found, "{what}");
    c
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Stream keys apart from stream names: `NAME?key=KEY` publishes NAME
/// (ffmpeg, HLS appears under the public name); no key, a wrong key or a
/// key of another name gets NetStream.Publish.Unauthorized and leaves the
/// live publisher alone (no takeover); the key alone as the name publishes
/// as its stream and may take over; the key is in no log line, metric,
/// API answer or playlist.
#[test]
fn publish_keys_are_apart_from_names() {
    const KEY: &str = "k-7f3a9c-studio";
    let dir = tempdir();
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &format!(
            "[auth]\npublish = \"keys\"\n[auth.publish_keys.live]\n\
             studio = \"{KEY}\"\nother = \"k-other-2\"\n"
        ),
    );
    let server = Castgate::start_with_args_loopback_egress(&["serve", "--config", &cfg], &[]);
    let mut bad = publish(&fixture(0), &server.url("live/studio"), &[]);
    let status = wait_child(&mut bad, T, "ffmpeg without a key");
    assert!(!status.success(), "ffmpeg published without a key");
    assert!(api_streams(&server).is_empty());

    let mut good = publish(
        &fixture(0),
        &server.url(&format!("live/studio?key={KEY}")),
        &["-stream_loop", "-1"],
    );
    wait_http_ok(server.http, "/live/studio/video.m3u8", T);
    assert_eq!(api_streams(&server), vec!["live/studio".to_string()]);

    // Takeover attempts without the right key are refused.
    for name in [
        "studio".to_string(),
        "studio?key=k-7f3a9c-studiO".to_string(),
        "studio?key=k-other-2".to_string(),
        format!("other?key={KEY}"),
    ] {
        let (_raw, code) = raw_publish(&server, &name);
        assert_eq!(code, "NetStream.Publish.Unauthorized", "{name}");
    }
    // The ffmpeg without a key, then these four.
    assert!(server.wait_count(&["publish refused: unauthorised"], 5, T));
    assert_eq!(server.count_log(&["publisher takeover"]), 0);
    assert!(
        matches!(good.try_wait(), Ok(None)),
        "the keyed publisher was dropped"
    );
    let before = http_get(server.http, "/live/studio/video.m3u8").text();
    let deadline = Instant::now() + T;
    while http_get(server.http, "/live/studio/video.m3u8").text() == before {
        assert!(Instant::now() < deadline, "the live playlist stopped");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The key alone, as platform stream keys work: publishes as "studio",
    // taking it over (the same authorisation as a publish).
    let (_taker, code) = raw_publish(&server, KEY);
    assert_eq!(code, "NetStream.Publish.Start");
    server.wait_log_all(&["publisher takeover", "live/studio"], T);
    assert_eq!(api_streams(&server), vec!["live/studio".to_string()]);
    let _ = wait_child(&mut good, T, "the replaced ffmpeg");

    // The key appears nowhere a viewer or an operator's tools look.
    let mut seen = server.lines_with(&[""]).join("\n");
    for path in [
        "/metrics",
        "/api/v1/streams",
        "/live/studio/index.m3u8",
        "/live/studio/video.m3u8",
        "/live/studio/manifest.mpd",
    ] {
        seen.push_str(&http_get(server.http, path).text());
    }
    assert!(seen.contains("live/studio"), "nothing was looked at");
    assert!(!seen.contains(KEY), "the key leaked:\n{seen}");
    server.assert_no_panic();
}

/// The auth webhook: allows, denies, renames, is slow (times out), is
/// down; a slow answer for one publisher does not delay another; answers
/// are cached.
#[test]
fn publish_through_an_auth_webhook() {
    // The "slow" handler waits on this until released (or 40 s).
    let release: Arc<(Mutex<bool>, Condvar)> = Arc::default();
    let rel = release.clone();
    let hook = Receiver::start(Arc::new(move |r: &Received| {
        let v = r.json();
        if v["query"].as_str().unwrap_or("").contains("bad") {
            return (401, String::new());
        }
        match v["key"].as_str().unwrap_or("") {
            "allow" | "allow2" => (200, String::new()),
            "relayme" => (
                200,
                r#"{"relays":["rtmp://127.0.0.1:9/app/x"],"profile":"low"}"#.into(),
            ),
            "rename" => (200, r#"{"name":"renamed"}"#.into()),
            "slow" => {
                let (m, c) = &*rel;
                let g = m.lock().unwrap();
                let _ = c.wait_timeout_while(g, Duration::from_secs(40), |done| !*done);
                (200, String::new())
            }
            _ => (403, r#"{"error":"no"}"#.into()),
        }
    }));
    let server = Castgate::start_loopback_egress(&[
        ("CASTGATE__AUTH__PUBLISH", "webhook"),
        ("CASTGATE__AUTH__WEBHOOK_URL", &hook.url("/auth?token=t")),
        ("CASTGATE__AUTH__WEBHOOK_TIMEOUT_SECS", "5"),
        ("CASTGATE__AUTH__CACHE_SECS", "30"),
    ]);

    // Allows; the request carries what the issue lists.
    let (_a, code) = raw_publish(&server, "allow?tok=1");
    assert_eq!(code, "NetStream.Publish.Start");
    let req = &hook.requests()[0];
    assert_eq!(req.path, "/auth?token=t");
    let v = req.json();
    assert_eq!(v["action"], "publish");
    assert_eq!(v["app"], "live");
    assert_eq!(v["key"], "allow");
    assert_eq!(v["query"], "tok=1");
    assert_eq!(v["protocol"], "rtmp");
    assert!(
        v["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );

    // Denies: the right status, no stream.
    let (_d, code) = raw_publish(&server, "deny");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(!api_streams(&server).contains(&"live/deny".to_string()));

    // Renames: ffmpeg publishes live/rename, the stream is live/renamed.
    let mut ff = publish(
        &fixture(1),
        &server.url("live/rename"),
        &["-stream_loop", "-1"],
    );
    wait_http_ok(server.http, "/live/renamed/video.m3u8", T);
    assert_eq!(http_get(server.http, "/live/rename/video.m3u8").status, 404);
    let _ = ff.kill();
    let _ = ff.wait();

    // Slow: this publisher waits, another is answered meanwhile.
    let mut slow = Raw::connect(server.rtmp);
    slow.start_stream("publish", "slow");
    hook.wait("the slow request", |g| {
        g.iter().any(|r| r.json()["key"] == "slow")
    });
    let (_b, code) = raw_publish(&server, "allow2");
    assert_eq!(code, "NetStream.Publish.Start");
    // ... and is refused when the webhook times out (5 s), never accepted
    // meanwhile.
    assert_eq!(
        slow.wait_for(b"NetStream.Publish.Unauthorized", T),
        Wait::Found
    );
    assert!(
        !slow.has_received(b"NetStream.Publish.Start"),
        "the slow publisher was accepted without its webhook's answer"
    );
    server.wait_log_all(&["auth webhook failed", "no answer within"], T);
    {
        let (m, c) = &*release;
        *m.lock().unwrap() = true;
        c.notify_all();
    }

    // Cached: a second publish of an allowed key does not ask again.
    let asked = |k: &str| {
        hook.requests()
            .iter()
            .filter(|r| r.json()["key"] == k)
            .count()
    };
    drop(_a);
    let (_a2, code) = raw_publish(&server, "allow?tok=1");
    assert_eq!(code, "NetStream.Publish.Start");
    assert_eq!(asked("allow"), 1, "the allow answer was not cached");

    // A takeover needs the same authorisation: refused, the first stays.
    let (_t, code) = raw_publish(&server, "allow?tok=bad");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    let mut first = _a2;
    assert!(first.nothing_received(b"Replaced by a new publisher", T));
    assert!(api_streams(&server).contains(&"live/allow".to_string()));

    // The answer may attach relays (and name a transcode profile).
    let (_r, code) = raw_publish(&server, "relayme");
    assert_eq!(code, "NetStream.Publish.Start");
    let r = http_get(server.http, "/api/v1/relays");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["relays"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["stream"] == "live/relayme" && r["source"] == "api"),
        "{v}"
    );
    server.wait_log_all(&["publish started", "live/relayme", "profile=\"low\""], T);
    server.assert_no_panic();

    // Down: nothing listens on the webhook's port; publishing is refused.
    let dead = ClosedPort::new();
    let dead = dead.port;
    let down = Castgate::start_loopback_egress(&[
        ("CASTGATE__AUTH__PUBLISH", "webhook"),
        (
            "CASTGATE__AUTH__WEBHOOK_URL",
            &format!("http://127.0.0.1:{dead}/auth"),
        ),
    ]);
    let (_x, code) = raw_publish(&down, "allow");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    down.wait_log_all(&["auth webhook failed", "connect to"], T);
    let mut ff = publish(&fixture(0), &down.url("live/allow"), &[]);
    assert!(!wait_child(&mut ff, T, "ffmpeg to a castgate whose webhook is down").success());
    assert!(api_streams(&down).is_empty());
}

/// One play policy on every path: with signed URLs and play keys, RTMP
/// play (a raw client), RTMPT play (ffmpeg and librtmp's rtmpdump) and HLS
/// need the signature, and RTMP paths the key too; nothing less plays.
#[test]
fn one_play_policy_for_rtmp_rtmpt_and_hls() {
    require("rtmpdump");
    let secret = "s3cret";
    let dir = tempdir();
    let keys = write_config(
        dir.path(),
        "keys.toml",
        "[play.live]\ncam = \"view-key-1\"\n",
    );
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &format!("[auth]\nplay = \"keys\"\nurl_secret = \"{secret}\"\nkeys_file = \"{keys}\"\n"),
    );
    let server = Castgate::start_with_args_loopback_egress(&["serve", "--config", &cfg], &[]);
    let mut ff = publish(
        &fixture(0),
        &server.url("live/cam"),
        &["-stream_loop", "-1"],
    );
    let exp = now_secs() + 600;
    let sig = format!(
        "exp={exp}&sig={}",
        hmac_hex(secret, format!("live/cam:{exp}").as_bytes())
    );
    let other_exp = now_secs() + 601;
    let other = format!(
        "exp={other_exp}&sig={}",
        hmac_hex(secret, format!("live/other:{other_exp}").as_bytes())
    );
    wait_http_ok(server.http, &format!("/live/cam/video.m3u8?{sig}"), T);
    assert_eq!(http_get(server.http, "/live/cam/video.m3u8").status, 403);

    let full = format!("cam?key=view-key-1&{sig}");
    for name in [
        "cam".to_string(),
        "cam?key=view-key-1".to_string(),
        format!("cam?{sig}"),
        format!("cam?key=view-key-2&{sig}"),
        format!("cam?key=view-key-1&{other}"),
    ] {
        let no = raw_play_answered(&server, &name, "NetStream.Play.Failed", &name);
        assert!(!no.has_received(b"NetStream.Play.Start"), "{name}");
    }
    raw_play_answered(
        &server,
        &full,
        "NetStream.Play.Start",
        "the key and signature",
    );

    // RTMPT through the HTTP listener, with ffmpeg: one second of media
    // with the credential, an error without.
    let rtmpt = |name: &str| {
        let mut c = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "10000000", "-i"])
            .arg(format!("rtmpt://{}/live/{name}", server.http))
            .args(["-t", "1", "-f", "null", "-"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run ffmpeg");
        let status = wait_child(&mut c, T, "ffmpeg over rtmpt");
        (status.success(), stderr_of(&mut c))
    };
    let (ok, err) = rtmpt(&full);
    assert!(
        ok,
        "ffmpeg could not play over RTMPT with the credential: {err}"
    );
    let (ok, _) = rtmpt(&format!("cam?{sig}"));
    assert!(!ok, "ffmpeg played over RTMPT without the key");

    // librtmp's player over RTMPT without the signature fails at once.
    let mut dump = std::process::Command::new("rtmpdump")
        .args(["-q", "--live", "-r"])
        .arg(format!("rtmpt://{}/live", server.http))
        .args(["-y", "cam?key=view-key-1", "-o", "/dev/null"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run rtmpdump");
    let status = wait_child(&mut dump, T, "rtmpdump without a signature");
    assert!(!status.success(), "rtmpdump played without a signature");
    assert!(server.wait_count(&["play refused: unauthorised", "signed URL required"], 4, T));
    let _ = ff.kill();
    let _ = ff.wait();
    server.assert_no_panic();
}

/// Signed HLS URLs: a valid signature opens the playlists and the
/// segments they list (ffmpeg plays it), an expired or tampered one gets
/// 403, and so does a segment without one.
#[test]
fn signed_hls_urls() {
    let secret = "s3cret";
    let server = Castgate::start_loopback_egress(&[("CASTGATE__AUTH__URL_SECRET", secret)]);
    let mut ff = publish(
        &fixture(2),
        &server.url("live/sig"),
        &["-stream_loop", "-1"],
    );
    let exp = now_secs() + 600;
    let sig = hmac_hex(secret, format!("live/sig:{exp}").as_bytes());
    let q = format!("exp={exp}&sig={sig}");
    let media = wait_http_ok(server.http, &format!("/live/sig/video.m3u8?{q}"), T).text();
    let seg = media
        .lines()
        .find(|l| l.starts_with("video/seg-"))
        .unwrap_or_else(|| panic!("no segment in {media}"));
    assert!(
        seg.ends_with(&q),
        "segment URI without the signature: {seg}"
    );
    let map = media
        .lines()
        .find(|l| l.starts_with("#EXT-X-MAP:"))
        .unwrap_or_else(|| panic!("no EXT-X-MAP in {media}"));
    assert!(map.ends_with(&format!(".mp4?{q}\"")), "{map}");
    let init = map.split('"').nth(1).unwrap();
    assert_eq!(
        http_get(server.http, &format!("/live/sig/{init}")).status,
        200
    );
    assert_eq!(
        http_get(server.http, &format!("/live/sig/{seg}")).status,
        200
    );
    let bare = seg.split('?').next().unwrap();
    assert_eq!(
        http_get(server.http, &format!("/live/sig/{bare}")).status,
        403
    );
    assert_eq!(http_get(server.http, "/live/sig/index.m3u8").status, 403);
    // Expired (correctly signed, in the past).
    let old = now_secs() - 10;
    let old_sig = hmac_hex(secret, format!("live/sig:{old}").as_bytes());
    let r = http_get(
        server.http,
        &format!("/live/sig/index.m3u8?exp={old}&sig={old_sig}"),
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("expired"), "{}", r.text());
    // Tampered: a later exp with the old signature, a flipped digit, another stream.
    let later = exp + 1000;
    for bad in [
        format!("exp={later}&sig={sig}"),
        format!("exp={exp}&sig={}", flip(&sig)),
    ] {
        let r = http_get(server.http, &format!("/live/sig/index.m3u8?{bad}"));
        assert_eq!(r.status, 403, "{bad}");
        assert!(r.text().contains("bad signature"), "{}", r.text());
    }
    assert_eq!(
        http_get(server.http, &format!("/live/other/index.m3u8?{q}")).status,
        403
    );
    // RTMP play of the same stream needs the same signature.
    raw_play_answered(
        &server,
        "sig",
        "NetStream.Play.Failed",
        "RTMP played a signed-only stream without a signature",
    );
    raw_play_answered(
        &server,
        &format!("sig?{q}"),
        "NetStream.Play.Start",
        "a signed RTMP play",
    );
    // A real player follows the signed URLs.
    require("ffmpeg");
    let out = std::process::Command::new("timeout")
        .args(["60", "ffmpeg", "-nostdin", "-v", "error", "-i"])
        .arg(server.http_url(&format!("/live/sig/index.m3u8?{q}")))
        .args(["-t", "2", "-f", "null", "-"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg could not play the signed URL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = ff.kill();
    let _ = ff.wait();
}

fn flip(hex: &str) -> String {
    let mut c: Vec<char> = hex.chars().collect();
    c[0] = if c[0] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

/// Checks one event's signature the way a receiver would.
fn assert_signed(r: &Received, secret: &str) {
    let ts = &r.headers["x-castgate-timestamp"];
    let want = format!(
        "sha256={}",
        hmac_hex(secret, &[ts.as_bytes(), b".", &r.body].concat())
    );
    assert_eq!(
        r.headers["x-castgate-signature"], want,
        "bad signature on {r:?}"
    );
    let t: u64 = ts.parse().unwrap();
    assert!(t.abs_diff(now_secs()) < 600, "timestamp {t}");
}

/// Events reach a receiver signed and in order; while the receiver is down
/// the media path is unaffected (ffmpeg publishes to the end, HLS is
/// served) and the events are retried until it is back.
#[test]
fn webhook_events_signed_in_order_and_retried() {
    let secret = "hook-secret";
    let dir = tempdir();
    let hook = Receiver::start(Arc::new(|_: &Received| (200, String::new())));
    // Hold a port for the receiver that comes up late (refusing until then).
    let late_port = ClosedPort::new();
    let late_listener_port = late_port.port;
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &format!(
            "[webhooks]\nurls = [\"{}\", \"http://127.0.0.1:{late_listener_port}/late\"]\n\
             secret = \"{secret}\"\nbackoff_initial_secs = 0.2\nbackoff_max_secs = 1.0\n\
             max_attempts = 1000\n",
            hook.url("/events")
        ),
    );
    let server = Castgate::start_with_args_loopback_egress(&["serve", "--config", &cfg], &[]);
    let src = fixture(3);
    for key in ["one", "two"] {
        let mut ff = publish(&src, &server.url(&format!("live/{key}")), &[]);
        let status = wait_child(&mut ff, T, "ffmpeg");
        assert!(status.success(), "ffmpeg failed: {}", stderr_of(&mut ff));
        // The media path did not wait for the dead receiver.
        wait_http_ok(server.http, &format!("/live/{key}/video.m3u8"), T);
    }
    let got = hook.wait("four events", |g| g.len() >= 4);
    let kinds: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            assert_signed(r, secret);
            let v = r.json();
            (
                v["type"].as_str().unwrap().to_string(),
                v["stream"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds[..4],
        [
            ("stream.started".to_string(), "live/one".to_string()),
            ("stream.ended".into(), "live/one".into()),
            ("stream.started".into(), "live/two".into()),
            ("stream.ended".into(), "live/two".into()),
        ]
    );
    let ids: Vec<u64> = got
        .iter()
        .map(|r| r.json()["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not rising: {ids:?}"
    );
    assert_eq!(got[0].headers["x-castgate-event"], "stream.started");
    // The second URL was down all along: castgate retried.
    assert!(server.wait_count(&["webhook delivery failed", "/late"], 2, T));
    let late = Receiver::start_on(
        late_port.listen(),
        Arc::new(|_: &Received| (200, String::new())),
    );
    let got_late = late.wait("the retried events", |g| g.len() >= 4);
    let late_ids: Vec<u64> = got_late
        .iter()
        .map(|r| {
            assert_signed(r, secret);
            r.json()["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        late_ids[..4],
        ids[..4],
        "the late receiver got other events or another order"
    );

    // relay.state_changed: a relay to a destination that refuses.
    let dead_port = ClosedPort::new();
    let dead = dead_port.port;
    let body = format!(r#"{{"stream":"live/three","target":"rtmp://127.0.0.1:{dead}/app/x"}}"#);
    let r = http_exchange(
        server.http,
        "POST",
        "/api/v1/relays",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let mut ff = publish(&src, &server.url("live/three"), &[]);
    let relay_events = |g: &[Received]| -> Vec<(String, String)> {
        g.iter()
            .map(|r| r.json())
            .filter(|v| v["type"] == "relay.state_changed")
            .map(|v| {
                assert_eq!(v["stream"], "live/three");
                (
                    v["data"]["from"].as_str().unwrap().to_string(),
                    v["data"]["to"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let got = hook.wait("relay state changes", |g| {
        relay_events(g).iter().any(|(_, to)| to == "backoff")
    });
    let changes = relay_events(&got);
    assert_eq!(
        changes[0],
        ("waiting".to_string(), "connecting".to_string()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("connecting".to_string(), "backoff".to_string())),
        "{changes:?}"
    );
    for r in &got {
        assert_signed(r, secret);
    }
    let _ = wait_child(&mut ff, T, "ffmpeg");
    server.assert_no_panic();
}

/// Parses `/metrics` strictly enough to catch a malformed page: the
/// prometheus-parse crate, plus one TYPE per family, before its samples.
pub(crate) fn scrape(server: &Castgate) -> prometheus_parse::Scrape {
    let r = http_get(server.http, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let mut typed: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "family {name} declared twice"
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains_key(*f)))
                .unwrap_or(name);
            assert!(typed.contains_key(family), "sample before its TYPE: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        }
    }
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse")
}

pub(crate) fn value(
    s: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// `/metrics` parses and moves with a real ffmpeg publish: connections,
/// live streams, per-stream bitrate, fps, keyframe interval, B-frames,
/// A/V drift, HTTP requests and latency; the stream's series go with it.
#[test]
fn metrics_move_with_a_publish() {
    let server = Castgate::start_loopback_egress(&[]);
    assert_eq!(http_get(server.http, "/healthz").status, 200);
    assert_eq!(http_get(server.http, "/readyz").status, 200);
    let s = scrape(&server);
    assert_eq!(value(&s, "castgate_streams_live", &[]), Some(0.0));
    let mut ff = publish(&fixture(0), &server.url("live/m"), &["-stream_loop", "-1"]);
    wait_http_ok(server.http, "/live/m/video.m3u8", T);
    let st = [("stream", "live/m")];
    let deadline = Instant::now() + T;
    let s = loop {
        let s = scrape(&server);
        // Rates need a few seconds of media; the keyframe interval two keyframes.
        if value(&s, "castgate_stream_fps", &st).is_some()
            && value(&s, "castgate_stream_keyframe_interval_seconds", &st).is_some()
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "per-stream series never appeared"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(value(&s, "castgate_streams_live", &[]), Some(1.0));
    assert_eq!(
        value(
            &s,
            "castgate_connections",
            &[("protocol", "rtmp"), ("state", "publishing")]
        ),
        Some(1.0)
    );
    let fps = value(&s, "castgate_stream_fps", &st).unwrap();
    assert!((20.0..40.0).contains(&fps), "fps {fps} (the fixture is 30)");
    let kbps = value(&s, "castgate_stream_ingest_video_kbps", &st).unwrap();
    assert!(kbps > 50.0, "video kbps {kbps}");
    let gop = value(&s, "castgate_stream_keyframe_interval_seconds", &st).unwrap();
    assert!(
        (0.9..1.1).contains(&gop),
        "keyframe interval {gop} (the fixture's GOP is 1 s)"
    );
    assert_eq!(value(&s, "castgate_stream_bframes", &st), Some(1.0));
    let drift = value(&s, "castgate_stream_av_drift_seconds", &st).unwrap();
    assert!(drift.abs() < 1.0, "A/V drift {drift}");
    let frames = value(&s, "castgate_stream_video_frames_total", &st).unwrap();
    assert!(frames > 0.0);
    // Counters move: more frames later, playlist requests counted and timed.
    let before = value(
        &s,
        "castgate_http_requests_total",
        &[("route", "playlist"), ("status", "200")],
    )
    .unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(http_get(server.http, "/live/m/video.m3u8").status, 200);
    }
    let deadline = Instant::now() + T;
    let s2 = loop {
        let s2 = scrape(&server);
        if value(&s2, "castgate_stream_video_frames_total", &st).unwrap_or(0.0) > frames {
            break s2;
        }
        assert!(Instant::now() < deadline, "frame counter stuck at {frames}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let after = value(
        &s2,
        "castgate_http_requests_total",
        &[("route", "playlist"), ("status", "200")],
    )
    .unwrap();
    assert!(
        after >= before + 3.0,
        "playlist requests {before} -> {after}"
    );
    assert!(
        s2.samples
            .iter()
            .any(|x| x.metric == "castgate_http_request_duration_seconds"
                && x.labels.get("route") == Some("playlist")),
        "no playlist latency histogram"
    );
    let _ = ff.kill();
    let _ = ff.wait();
    // The stream's series leave with it.
    let deadline = Instant::now() + T;
    loop {
        let s = scrape(&server);
        if value(&s, "castgate_streams_live", &[]) == Some(0.0)
            && value(&s, "castgate_stream_fps", &st).is_none()
            && value(
                &s,
                "castgate_connections",
                &[("protocol", "rtmp"), ("state", "publishing")],
            ) == Some(0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream series outlived the publish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn relays(server: &Castgate) -> Vec<(u64, String, String)> {
    let r = http_get(server.http, "/api/v1/relays");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let list = v["relays"].as_array().or(v.as_array()).unwrap().clone();
    list.iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["target"].as_str().unwrap().to_string(),
                r["stream"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hup(server: &Castgate) {
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
}

/// SIGHUP applies a changed key list and relay list without dropping the
/// live publish or touching unchanged relays; an invalid file is refused
/// and the running config stays.
#[test]
fn sighup_reloads_keys_and_relays() {
    let dir = tempdir();
    // Relay targets that refuse connections: the relays' identity is what
    // is checked, not their delivery.
    let (held_a, held_b) = (ClosedPort::new(), ClosedPort::new());
    const K1: &str = "k1 = \"key-1\"";
    const K2: &str = "k2 = \"key-2\"";
    let (a, b) = (held_a.port, held_b.port);
    let config = |keys: &str, targets: &[u16], play_wait: u32| {
        let mut c = format!(
            "[rtmp]\nplay_wait_secs = {play_wait}\n\
             [auth]\npublish = \"keys\"\n[auth.publish_keys.live]\n{keys}\n"
        );
        for t in targets {
            c.push_str(&format!(
                "[[relays]]\nstream = \"live/*\"\ntarget = \"rtmp://127.0.0.1:{t}/app/{{key}}\"\n"
            ));
        }
        c
    };
    let cfg = write_config(dir.path(), "c.toml", &config(K1, &[a], 30));
    let server = Castgate::start_with_args_loopback_egress(&["serve", "--config", &cfg], &[]);
    let mut ff = publish(
        &fixture(0),
        &server.url("live/k1?key=key-1"),
        &["-stream_loop", "-1"],
    );
    wait_http_ok(server.http, "/live/k1/video.m3u8", T);
    let (_r, code) = raw_publish(&server, "k2?key=key-2");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    let before = relays(&server);
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(before[0].1.contains(&format!(":{a}/")), "{before:?}");

    // A player of a stream nobody publishes waits (play_wait_secs = 30).
    let mut waiting = Raw::connect(server.rtmp);
    waiting.start_stream("play", "nobody");
    assert!(
        waiting.nothing_received(b"NetStream.Play", T),
        "a player of an absent stream was answered at once"
    );

    // k2 allowed, relay b added, relay a untouched, players no longer wait.
    write_config(
        dir.path(),
        "c.toml",
        &config(&format!("{K1}\n{K2}"), &[a, b], 0),
    );
    hup(&server);
    server.wait_log_all(&["SIGHUP: config reloaded", "relay_rules_added=1"], T);
    let (_r2, code) = raw_publish(&server, "k2?key=key-2");
    assert_eq!(code, "NetStream.Publish.Start");
    raw_play_answered(
        &server,
        "nobody",
        "NetStream.Play.StreamNotFound",
        "the new rtmp.play_wait_secs did not apply",
    );
    let deadline = Instant::now() + T;
    let after = loop {
        let now: Vec<_> = relays(&server)
            .into_iter()
            .filter(|r| r.2 == "live/k1")
            .collect();
        if now.len() == 2 {
            break now;
        }
        assert!(Instant::now() < deadline, "relay b never started: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        after.contains(&before[0]),
        "relay a was replaced: {before:?} -> {after:?}"
    );

    // An invalid file changes nothing.
    write_config(dir.path(), "c.toml", "[auth]\npublish = \"sometimes\"\n");
    hup(&server);
    server.wait_log_all(&["config rejected", "publish"], T);
    let (_r3, code) = raw_publish(&server, "k2?key=key-2");
    assert_eq!(
        code, "NetStream.Publish.Start",
        "the old config did not stay"
    );

    // Relay a removed: its relay stops, b's stays; k2 refused again.
    write_config(dir.path(), "c.toml", &config(K1, &[b], 0));
    hup(&server);
    assert!(server.wait_count(&["SIGHUP: config reloaded"], 2, T));
    let b_relays: Vec<_> = after
        .iter()
        .filter(|r| r.1.contains(&format!(":{b}/")))
        .cloned()
        .collect();
    let deadline = Instant::now() + T;
    loop {
        let now: Vec<_> = relays(&server)
            .into_iter()
            .filter(|r| r.2 == "live/k1")
            .collect();
        if now == b_relays {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relay list after removing a: {now:?}, want {b_relays:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut fresh = Raw::connect(server.rtmp);
    fresh.start_stream("publish", "k2?key=key-2");
    assert_eq!(
        fresh.wait_for(b"NetStream.Publish.Unauthorized", T),
        Wait::Found
    );
    // The live publish went on through all of it.
    assert!(
        ff.try_wait().unwrap().is_none(),
        "the publisher was dropped"
    );
    assert!(api_streams(&server).contains(&"live/k1".to_string()));
    let _ = ff.kill();
    let _ = ff.wait();
    server.assert_no_panic();
}

/// SIGTERM during a live publish: /readyz turns 503, the playlists end with
/// EXT-X-ENDLIST (served during the drain) and castgate exits 0 within its
/// timeout.
#[test]
fn sigterm_during_a_live_publish() {
    let mut server = Castgate::start_loopback_egress(&[
        ("CASTGATE__LIFECYCLE__DRAIN_SECS", "10"),
        ("CASTGATE__LIFECYCLE__SHUTDOWN_TIMEOUT_SECS", "30"),
        // Without the shutdown, an ended publisher would keep the playlist
        // open this long: the ENDLIST below is the shutdown's doing.
        ("CASTGATE__PACKAGE__GRACE_SECS", "600"),
    ]);
    let mut ff = publish(&fixture(1), &server.url("live/t"), &["-stream_loop", "-1"]);
    wait_http_ok(server.http, "/live/t/video.m3u8", T);
    wait_http_ok(server.http, "/live/t/audio.m3u8", T);
    let pid = server.pid();
    let started = Instant::now();
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    server.wait_log("shutting down: draining HTTP", T);
    assert_eq!(http_get(server.http, "/readyz").status, 503);
    for p in ["/live/t/video.m3u8", "/live/t/audio.m3u8"] {
        let r = http_get(server.http, p);
        assert_eq!(r.status, 200, "{p}");
        assert!(
            r.text().contains("#EXT-X-ENDLIST"),
            "{p} not ended:\n{}",
            r.text()
        );
    }
    let mpd = http_get(server.http, "/live/t/manifest.mpd").text();
    assert!(mpd.contains("type=\"static\""), "MPD not ended:\n{mpd}");
    // (No transcode is mapped here, so there is no child process to check:
    // e2e/transcode.rs checks that SIGTERM leaves no ffmpeg behind.)
    // Within shutdown_timeout_secs (30), with slack for a loaded machine.
    let status = server.wait_exit(Duration::from_secs(45));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(45));
    server.wait_log("shut down cleanly", T);
    let _ = wait_child(&mut ff, T, "ffmpeg after castgate exited");
    server.assert_no_panic();
}
