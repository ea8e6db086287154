//! The packager's memory budget (issue 23): four ffmpeg publishers, each
//! holding ~3 MB of window, under a 6 MiB `package.memory_budget_bytes`.
//! One stream is watched (its playlist polled); the other three are not.
//! castgate's memory gauge stays within the budget (plus a stated slack),
//! the unwatched streams' older listed segments go to disk and are served
//! from there with the bytes served from memory before, ffmpeg reads a
//! spilled stream's playlist from the start of its window, and the watched
//! stream keeps all its segments in memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(120);
const BUDGET: u64 = 6 << 20;
/// What the gauge may exceed the budget by: the budget is enforced at
/// most every 50 ms, and the open segments grow in between (0.5 Mbit/s
/// streams at twice real time: ~13 KB per stream per pass); a segment
/// spilled waits in memory (counted) until the writer has written it.
const SLACK: u64 = 256 << 10;

/// A sample of the page's series `name` (with its labels, if any).
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The first and the newest segment URI of `key`'s video playlist.
fn segments(server: &Castgate, key: &str) -> Option<(String, String)> {
    let r = http_get(server.http, &format!("/{key}/video.m3u8"));
    if r.status != 200 {
        return None;
    }
    let p = m3u8_rs::parse_media_playlist_res(r.text().as_bytes()).ok()?;
    Some((
        p.segments.first()?.uri.clone(),
        p.segments.last()?.uri.clone(),
    ))
}

/// The segment number in a `video/seg-N.m4s` URI.
fn number(uri: &str) -> String {
    uri.trim_start_matches("video/seg-")
        .trim_end_matches(".m4s")
        .to_string()
}

/// The file segment `uri` of `key` spilled to, if it is on disk.
fn on_disk(dvr_dir: &Path, key: &str, uri: &str) -> Option<PathBuf> {
    let name = format!("video/{}.m4s", number(uri));
    files_under(&dvr_dir.join(key))
        .into_iter()
        .find(|p| p.ends_with(&name))
}

#[test]
fn past_the_budget_unwatched_streams_spill_to_disk_and_are_served_the_same() {
    require("ffmpeg");
    let dir = tempdir();
    let dvr_dir = dir.path().join("spill");
    let budget = BUDGET.to_string();
    let server = Castgate::start(&[
        ("CASTGATE__PACKAGE__MEMORY_BUDGET_BYTES", &budget),
        ("CASTGATE__PACKAGE__DVR_DIR", dvr_dir.to_str().unwrap()),
        // ~24 segments of ~130 KB held per stream: ~3.1 MB each, 12.4 MB
        // in all. Watched, one keeps all; at the floor (the open segment
        // and the newest four) the others hold ~0.65 MB each: 5 MB.
        ("CASTGATE__PACKAGE__WINDOW", "20"),
        ("CASTGATE__PACKAGE__EXTRA_SEGMENTS", "3"),
        ("CASTGATE__PACKAGE__GRACE_SECS", "600"),
    ]);
    server.wait_log_all(&["package memory budget", &budget], T);
    // Twice real time: 40 loops of 4 s last 80 s.
    let keys = ["live/m0", "live/m1", "live/m2", "live/m3"];
    let mut publishers: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-readrate", "2"])
                .args(["-stream_loop", "40", "-i"])
                .arg(fixture(i as u32 + 1))
                .args(["-c", "copy", "-f", "flv"])
                .arg(server.url(key))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot run ffmpeg")
        })
        .collect();
    let (watched, idle) = ("live/m0", "live/m1");

    // m1's first segment as soon as it has one, served from memory.
    let start = Instant::now();
    let early = loop {
        if let Some((first, _)) = segments(&server, idle) {
            break first;
        }
        assert!(start.elapsed() < T, "{idle} never listed a segment");
        std::thread::sleep(Duration::from_millis(100));
    };
    let before = http_get(server.http, &format!("/{idle}/{early}"));
    assert_eq!(before.status, 200, "{early}");
    assert!(on_disk(&dvr_dir, idle, &early).is_none());
    // m2 and m3 requested once, after m1: m1 is now the least recently
    // requested, the first to let go (m0, polled, the last).
    for k in ["live/m2", "live/m3"] {
        wait_http_ok(server.http, &format!("/{k}/video.m3u8"), T);
    }

    // Until that segment is on disk: the gauge stays within the budget,
    // the watched stream is polled.
    let mut peak = 0.0f64;
    let file = loop {
        assert!(
            segments(&server, watched).is_some() || start.elapsed() < Duration::from_secs(20),
            "{watched} lists nothing"
        );
        let page = http_get(server.http, "/metrics").text();
        let held = metric(&page, "castgate_package_memory_bytes").expect("the memory gauge");
        assert_eq!(
            metric(&page, "castgate_package_memory_budget_bytes"),
            Some(BUDGET as f64)
        );
        peak = peak.max(held);
        assert!(
            held <= (BUDGET + SLACK) as f64,
            "{held} bytes held, budget {BUDGET} + {SLACK}"
        );
        if let Some(f) = on_disk(&dvr_dir, idle, &early) {
            break f;
        }
        assert!(
            start.elapsed() < T,
            "{early} of {idle} never went to disk (peak {peak} bytes held)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Still listed, served from disk with the same bytes.
    let listed = http_get(server.http, &format!("/{idle}/video.m3u8")).text();
    assert!(
        listed.contains(&early),
        "{early} left the playlist:\n{listed}"
    );
    let after = http_get(server.http, &format!("/{idle}/{early}"));
    assert_eq!(after.status, 200, "{early} after the spill");
    assert!(before.body.len() > 1000);
    assert_eq!(
        after.body, before.body,
        "{early}: not the bytes served before"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before.body, "the file");

    // Steady state: a few more seconds within the budget, the watched
    // stream polled.
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(8) {
        assert!(segments(&server, watched).is_some());
        let page = http_get(server.http, "/metrics").text();
        let held = metric(&page, "castgate_package_memory_bytes").unwrap();
        peak = peak.max(held);
        assert!(held <= (BUDGET + SLACK) as f64, "{held} bytes held");
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = http_get(server.http, "/metrics").text();
    let spilled = metric(&page, "castgate_package_spilled_segments_total").unwrap();
    assert!(spilled > 0.0, "{page}");
    assert_eq!(
        metric(&page, "castgate_package_budget_dropped_segments_total"),
        Some(0.0),
        "the writer kept up"
    );
    let stream = |k: &str| {
        metric(
            &page,
            &format!("castgate_stream_package_memory_bytes{{stream=\"{k}\"}}"),
        )
        .unwrap_or_else(|| panic!("no memory series for {k}"))
    };
    // The watched stream kept every segment: nothing of it on disk, and
    // it holds the most.
    let m4s = |k: &str| {
        files_under(&dvr_dir.join(k))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "m4s"))
            .count()
    };
    assert_eq!(m4s(watched), 0, "the watched stream spilled");
    assert!(m4s(idle) > 0, "{idle} never spilled");
    for k in &keys[1..] {
        assert!(stream(watched) > stream(k), "{watched} holds less than {k}");
    }
    eprintln!(
        "segment files on disk: {:?}; bytes held: {:?}",
        keys.map(m4s),
        keys.map(stream)
    );
    assert!(
        (stream(watched) + stream(idle) + stream("live/m2") + stream("live/m3"))
            <= metric(&page, "castgate_package_memory_bytes").unwrap()
    );

    // ffmpeg reads the spilled stream from the start of its window (on
    // disk now).
    let (first, _) = segments(&server, idle).unwrap();
    assert!(
        on_disk(&dvr_dir, idle, &first).is_some(),
        "{first}, the first listed, is in memory"
    );
    let out = Command::new("timeout")
        .args(["30", "ffmpeg", "-nostdin", "-v", "error"])
        .args(["-live_start_index", "0", "-i"])
        .arg(server.http_url(&format!("{idle}/video.m3u8")))
        .args(["-t", "4", "-map", "0:v", "-f", "framemd5", "-"])
        .output()
        .expect("cannot run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg: {} {stderr}", out.status);
    assert_eq!(stderr, "", "ffmpeg's errors");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(
        frames >= 100,
        "{frames} frames read from the window's start"
    );

    for p in &mut publishers {
        let _ = p.kill();
        let _ = p.wait();
    }
    eprintln!("peak {peak} bytes held under a {BUDGET}-byte budget; {spilled} segments spilled");
    server.assert_no_panic();
}
