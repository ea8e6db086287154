//! The load generator (`castgate-load`) against a real castgate: its
//! publishers get in, every stream's playlist appears and advances, its HLS
//! players fetch segments, and the report says so. This keeps the tool that
//! bench/compare and bench/soak rely on honest.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn load_generator_publishes_and_watches_every_stream() {
    let src = fixture(3);
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let json = dir.path().join("load.json");
    let http = server.http;
    let out = Command::new(env!("CARGO_BIN_EXE_castgate-load"))
        .args(["--rtmp", &format!("rtmp://{}/live", server.rtmp)])
        .arg("--file")
        .arg(&src)
        .args(["--publishers", "3", "--duration", "7", "--ramp", "0.2"])
        .args([
            "--playlist",
            &format!("http://{http}/live/{{name}}/video.m3u8"),
        ])
        .args(["--players", "2"])
        .args([
            "--player-url",
            &format!("http://{http}/live/{{name}}/index.m3u8"),
        ])
        .arg("--json")
        .arg(&json)
        .output_within(RUN_LIMIT)
        .expect("cannot run castgate-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "castgate-load failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        server.wait_log_all(&["publish started", &format!("live/load{i}")], T);
    }
    let report = std::fs::read_to_string(&json).expect("castgate-load wrote no JSON");
    let number = |key: &str| -> f64 {
        let at = report
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("no {key} in {report}"));
        let rest = report[at + key.len() + 3..].trim_start();
        let end = rest.find([',', '\n']).unwrap();
        rest[..end].trim().parse().unwrap_or(-1.0)
    };
    assert_eq!(number("publish_ok"), 3.0, "{stdout}");
    assert_eq!(number("streams_without_playlist"), 0.0, "{stdout}");
    assert_eq!(number("stalled_streams"), 0.0, "{stdout}");
    // The first playlist needs one whole segment (2 s by default) of media
    // sent in real time, so it cannot come sooner; how soon after that is
    // measured by bench/compare, not asserted.
    let first = number("first_playlist_ms_max");
    assert!(first >= 1500.0, "first playlist after {first} ms: {stdout}");
    eprintln!("castgate-load: first playlist after at most {first} ms");
    assert!(number("player_segments") >= 4.0, "{stdout}");
    assert_eq!(number("player_errors"), 0.0, "{stdout}");
}

/// `castgate-load --player-mode ll` against castgate with low latency on:
/// 2 streams × 2 LL players do blocking reloads, receive parts and time
/// them; nothing fails. The delays are printed, not bounded: bench/ll
/// measures them under load.
#[test]
fn ll_players_receive_parts_and_time_their_listing() {
    let src = fixture(3);
    let server = Castgate::start(&[("CASTGATE__PACKAGE__LOW_LATENCY", "true")]);
    let dir = tempdir();
    let json = dir.path().join("load.json");
    let http = server.http;
    let out = Command::new(env!("CARGO_BIN_EXE_castgate-load"))
        .args(["--rtmp", &format!("rtmp://{}/live", server.rtmp)])
        .arg("--file")
        .arg(&src)
        .args(["--publishers", "2", "--duration", "8", "--ramp", "0.2"])
        .args(["--players", "4", "--player-mode", "ll"])
        .args([
            "--player-url",
            &format!("http://{http}/live/{{name}}/index.m3u8"),
        ])
        .arg("--json")
        .arg(&json)
        .output_within(RUN_LIMIT)
        .expect("cannot run castgate-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "castgate-load failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("castgate-load wrote no JSON"))
            .expect("the report is JSON");
    let ll = &report["ll"];
    let n = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("{v} in {ll}"));
    assert_eq!(n(&report["publish_ok"]), 2.0, "{stdout}");
    assert_eq!(n(&ll["players"]), 4.0, "{stdout}");
    assert_eq!(n(&ll["errors"]), 0.0, "{stdout}");
    // Players join 3 s after their stream starts: about 5 s of 0.2 s parts,
    // video and audio, for each of the 4.
    assert!(n(&ll["parts"]) >= 4.0 * 2.0 * 10.0, "{stdout}");
    assert!(n(&ll["blocking_reloads"]) >= 4.0 * 10.0, "{stdout}");
    assert!(n(&ll["hinted_fetches"]) > 0.0, "{stdout}");
    // Every video part received after a blocking reload is timed, from its
    // own moof, to exactly one frame the publisher sent.
    let listed = &ll["listed_delay"];
    assert!(n(&listed["count"]) >= 4.0 * 10.0, "{stdout}");
    assert_eq!(n(&ll["end_mismatch"]), 0.0, "{stdout}");
    assert_eq!(n(&ll["unmapped"]), 0.0, "{stdout}");
    // A part cannot be listed before castgate had the frame that completes it.
    assert!(n(&listed["p50_ms"]) >= 0.0, "{stdout}");
    eprintln!(
        "LL: part complete -> listed p50 {} ms, p99 {} ms, max {} ms over {} parts",
        listed["p50_ms"], listed["p99_ms"], listed["max_ms"], listed["count"]
    );
}
