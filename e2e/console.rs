//! The web console in a real browser: castgate runs the container's command
//! on the config docker/compose.yml mounts (ports aside) with an API token,
//! ffmpeg publishes, and headless Chromium (playwright-core, driven by
//! `e2e/browser/console.js`) uses the console as an operator would: token,
//! stream list, the console's own player, a relay created with the form
//! going live (to this same castgate, so the relayed stream shows up in the
//! list too), links, a screenshot, the relay stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::browser;
use crate::harness::{fixture, http_request, publish, require, wait_http_ok, Castgate};

const TOKEN: &str = "console-e2e-token";

/// `target/e2e-artifacts/NAME`, kept after the run.
fn artifact(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("e2e-artifacts").join(name)
}

#[test]
fn console_lists_plays_and_manages_relays_in_chromium() {
    require("ffmpeg");
    browser::ensure_installed();
    let _serial = browser::one_at_a_time();
    let (args, _) = crate::docker::serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Castgate::start_with_args(&args, &[("CASTGATE__API__TOKEN", TOKEN)]);
    let mut publisher = publish(
        &fixture(7),
        &server.url("live/cam"),
        &["-stream_loop", "-1"],
    );
    wait_http_ok(server.http, "/live/cam/index.m3u8", Duration::from_secs(30));

    let shot = artifact("console.png");
    let _ = std::fs::remove_file(&shot);
    let relay_target = format!("rtmp://{}/live/cam-relay", server.rtmp);
    let mut cmd = Command::new("node");
    cmd.arg(browser::browser_dir().join("console.js"))
        .arg(server.http_url("/"))
        .args([TOKEN, "live/cam", &relay_target, "live/cam-relay"])
        .arg(&shot)
        .current_dir(browser::browser_dir())
        .stdin(Stdio::null());
    let out = browser::run_bounded(cmd, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("node console.js: {e}"));
    let _ = publisher.kill();
    let _ = publisher.wait();
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "console.js printed no report ({}):\n{}\n{}",
                out.status, out.stdout, out.stderr
            )
        });
    let r: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("console.js report is not JSON ({e}): {line}"));
    println!("console.js: {line}");
    println!("console screenshot: {}", shot.display());
    assert!(
        r["ok"] == true && out.status.success(),
        "the console failed at {}: {}\nstderr:\n{}",
        r["failed_step"],
        r["errors"],
        out.stderr
    );
    let steps = &r["steps"];
    // Nothing from another site: every request stayed on castgate's origin,
    // and the page says so in its policy.
    assert_eq!(r["blocked"], serde_json::json!([]), "{line}");
    assert_eq!(
        steps["load"]["csp"].as_str(),
        Some(castgate::console::CONTENT_SECURITY_POLICY)
    );
    // The only failed loads are the API calls made before the token was
    // entered (no missing asset, no script error).
    for e in r["console_errors"].as_array().into_iter().flatten() {
        assert!(
            e.as_str().unwrap_or("").contains("401"),
            "browser console error: {e}"
        );
    }
    // Without the token the page explains the 401.
    let status = steps["load"]["status"].as_str().unwrap_or("");
    assert!(
        status.contains("401") && status.contains("token"),
        "{status}"
    );
    // The stream row: codecs, resolution, fps, bitrates, uptime, publisher.
    let row: Vec<&str> = steps["token"]["row"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(row.first().copied(), Some("live/cam"), "{row:?}");
    assert!(
        row[1].starts_with("h264 (avc1.64") && row[1].contains("640×360"),
        "{row:?}"
    );
    assert!(
        row[1].contains(" fps ") && row[1].ends_with("kb/s"),
        "{row:?}"
    );
    assert!(row[2].starts_with("aac (mp4a.40.2) 48 kHz 2 ch"), "{row:?}");
    assert!(
        row[3].ends_with(" kb/s") && row[4].ends_with('s'),
        "{row:?}"
    );
    assert!(row[5].starts_with("127.0.0.1:"), "{row:?}");
    // The console's own player played it.
    let play = &steps["play"];
    assert!(play["advanced_s"].as_f64().unwrap_or(0.0) >= 4.0, "{play}");
    // ...while the list refreshed by itself (the uptime moved on).
    assert_ne!(
        play["refreshed"]["before"], play["refreshed"]["after"],
        "{play}"
    );
    assert!(play["refreshed"]["after"].is_string(), "{play}");
    assert_eq!(
        (play["width"].as_u64(), play["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(play["frames"].as_u64().unwrap_or(0) > 60, "{play}");
    assert_eq!(play["player"]["tracks"].as_array().map(Vec::len), Some(2));
    // The relay went live from the form, reached its destination, and stopped.
    let relay = &steps["relay_create"];
    assert!(
        relay["row"][3].as_str().unwrap_or("").starts_with("live"),
        "{relay}"
    );
    assert_eq!(
        relay["row"][2],
        "rtmp://{}/live/***".replace("{}", &server.rtmp.to_string())
    );
    assert_eq!(relay["relayed_row"][0], "live/cam-relay");
    let id = relay["id"].as_u64().expect("relay id");
    assert!(steps["relay_stop"].is_object(), "{line}");
    let links = steps["links"]["links"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(links.iter().any(|l| l["label"] == "OpenAPI"), "{links:?}");
    // What the browser saw is what castgate did.
    let relay_tag = format!("relay={id} ");
    for what in [
        "relay created",
        "relay live",
        "relay deleted",
        "relay stopped",
    ] {
        server.wait_log_all(&[what, &relay_tag], Duration::from_secs(10));
    }
    server.wait_log_all(
        &["publish started", "stream=\"live/cam-relay\""],
        Duration::from_secs(1),
    );
    let relays = http_request(
        server.http,
        "GET",
        "/api/v1/relays",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(relays.status, 200);
    assert!(
        !relays.text().contains(&format!("\"id\":{id},")),
        "relay {id} still exists: {}",
        relays.text()
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    server.assert_no_panic();
}
