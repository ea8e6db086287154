//! Players by protocol: real ffmpeg readers of a live stream over HLS,
//! DASH and RTMP, counted in the API and in `/metrics` while they read, and
//! gone from both after they stop.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const STREAM: &str = "live/watched";
/// Readers starting (ffmpeg's HLS and DASH start-up) and the counts
/// settling; and, after they stop, their entries expiring.
const SETTLE: Duration = Duration::from_secs(90);
/// More than two viewer windows (3 × the 2 s target duration): readers
/// that keep reading stay counted through it.
const STEADY: Duration = Duration::from_secs(14);

/// Readers, killed when dropped (also when the test fails).
struct Readers(Vec<(String, Child)>);

impl Drop for Readers {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `ffmpeg -user_agent UA -i URL -c copy -f null -`, bounded to 300 s of
/// media (it is killed long before).
fn reader(url: &str, user_agent: Option<&str>) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error"]);
    if let Some(ua) = user_agent {
        cmd.args(["-user_agent", ua]);
    }
    cmd.args([
        "-i", url, "-map", "0", "-c", "copy", "-t", "300", "-f", "null", "-",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("cannot run ffmpeg")
}

/// Per-protocol players of `STREAM` as the API and `/metrics` show them.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    api: BTreeMap<String, u64>,
    api_total: u64,
    capped: bool,
    metrics: BTreeMap<String, u64>,
}

fn seen(server: &Castgate) -> Seen {
    let r = http_get(server.http, &format!("/api/v1/streams/{STREAM}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("API JSON");
    let api = v["players_by_protocol"]
        .as_object()
        .unwrap_or_else(|| panic!("no players_by_protocol in {v}"))
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(u64::MAX)))
        .collect();
    let page = http_get(server.http, "/metrics").text();
    let prefix = format!("castgate_stream_players{{stream=\"{STREAM}\",protocol=\"");
    let metrics = page
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(p, n)| (p.to_string(), n.parse().unwrap_or(u64::MAX)))
        .collect();
    Seen {
        api,
        api_total: v["players"].as_u64().unwrap_or(u64::MAX),
        capped: v["players_capped"] != false,
        metrics,
    }
}

fn expect(rtmp: u64, hls: u64, dash: u64) -> Seen {
    let m: BTreeMap<String, u64> = [("rtmp", rtmp), ("hls", hls), ("dash", dash)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Seen {
        api: m.clone(),
        api_total: rtmp + hls + dash,
        capped: false,
        metrics: m,
    }
}

/// Polls until the API and `/metrics` both show `want`.
fn wait_for(server: &Castgate, want: &Seen, what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = seen(server);
        if got == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {SETTLE:?}; want {want:?}, last seen {got:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Four HLS readers (two of them with the same User-Agent: one client, as
/// two players behind one NAT with identical software would be), one DASH
/// reader and one RTMP player.
#[test]
fn hls_dash_and_rtmp_players_are_counted_while_they_read() {
    require("ffmpeg");
    let server = Castgate::start(&[]);
    let mut publisher = publish(&fixture(5), &server.url(STREAM), &["-stream_loop", "-1"]);
    wait_http_ok(
        server.http,
        &format!("/{STREAM}/index.m3u8"),
        Duration::from_secs(30),
    );
    let hls = server.http_url(&format!("{STREAM}/index.m3u8"));
    let dash = server.http_url(&format!("{STREAM}/manifest.mpd"));
    let mut readers = Readers(Vec::new());
    for ua in ["hls-a", "hls-b", "hls-c", "hls-c"] {
        readers
            .0
            .push((format!("HLS {ua}"), reader(&hls, Some(ua))));
    }
    readers
        .0
        .push(("DASH".into(), reader(&dash, Some("dash-a"))));
    readers
        .0
        .push(("RTMP".into(), reader(&server.url(STREAM), None)));

    let reading = expect(1, 3, 1);
    wait_for(&server, &reading, "the readers counted");
    // They stay counted while they read: every sample over two windows.
    let until = Instant::now() + STEADY;
    let mut samples = 0;
    while Instant::now() < until {
        let got = seen(&server);
        assert_eq!(got, reading, "sample {samples} while reading");
        samples += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every reader was still reading (the duplicate User-Agent counted once
    // because it is one identity, not because it failed).
    for (what, c) in &mut readers.0 {
        assert!(
            matches!(c.try_wait(), Ok(None)),
            "{what} reader exited early"
        );
    }
    println!("steady over {samples} samples: {reading:?}");

    drop(readers);
    wait_for(&server, &expect(0, 0, 0), "the counts back to 0");
    // The publish went on throughout.
    assert!(matches!(publisher.try_wait(), Ok(None)), "publisher exited");
    let _ = publisher.kill();
    let _ = publisher.wait();
    server.assert_no_panic();
}
