//! ffmpeg publishes, ffmpeg plays: what comes out is what went in.

use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

/// A player started before the publisher receives every packet, byte- and
/// timestamp-identical, and ffmpeg decodes it without an error.
#[test]
fn publish_and_play_are_identical() {
    let src = fixture(0);
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let out = dir.path().join("played.flv");
    let mut player = play(&server.url("live/one"), &out);
    server.wait_log_all(&["play requested", "live/one"], T);
    let mut publisher = publish(&src, &server.url("live/one"), &[]);
    let status = wait_child(&mut publisher, T, "publisher");
    assert!(
        status.success(),
        "publisher failed: {}",
        stderr_of(&mut publisher)
    );
    server.wait_log_all(&["publish ended", "live/one"], T);
    // The player ends when the publisher's stream ends (StreamEOF).
    wait_child(&mut player, T, "player");
    assert_same_tracks(&framemd5(&src), &framemd5(&out), "played");
    assert_eq!(decode_errors(&out), "", "decoding the played stream");
}

/// A player joining mid-stream starts at a keyframe (GOP cache) and gets
/// identical packets from there on.
#[test]
fn late_player_starts_at_keyframe() {
    let src = fixture(0);
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let out = dir.path().join("late.flv");
    let mut publisher = publish(&src, &server.url("live/late"), &["-stream_loop", "1"]);
    server.wait_log_all(&["publish started", "live/late"], T);
    // Join after the first GOP has gone by: wait for ~1.5 s of media to flow
    // by watching our own RTMP player of the stream.
    let probe_out = dir.path().join("probe.flv");
    let mut probe = play(&server.url("live/late"), &probe_out);
    let deadline = std::time::Instant::now() + T;
    while std::fs::metadata(&probe_out).map(|m| m.len()).unwrap_or(0) < 60_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "probe player got nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut player = play(&server.url("live/late"), &out);
    wait_child(&mut publisher, T, "publisher");
    wait_child(&mut player, T, "player");
    wait_child(&mut probe, T, "probe");
    let source = framemd5(&src);
    let played = framemd5(&out);
    let v = track(&source, 0);
    assert!(
        played.len() > 100,
        "late player got {} packets",
        played.len()
    );
    let first_video = played
        .iter()
        .find(|p| v.iter().any(|s| s.md5 == p.md5))
        .expect("late player got video");
    assert!(
        first_video.dts > 0,
        "the late player should have joined mid-stream"
    );
    // The first video packet is a keyframe: it sits on a 30-frame GOP boundary.
    let index = v.iter().position(|s| s.md5 == first_video.md5).unwrap();
    assert_eq!(
        index % 30,
        0,
        "late player's first video frame is frame {index}"
    );
    assert_eq!(decode_errors(&out), "");
}

/// Two keys published at once stay separate.
#[test]
fn two_keys_stay_separate() {
    let (a, b) = (fixture(1), fixture(2));
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let (out_a, out_b) = (dir.path().join("a.flv"), dir.path().join("b.flv"));
    let mut pa = play(&server.url("live/a"), &out_a);
    let mut pb = play(&server.url("live/b"), &out_b);
    server.wait_log_all(&["play requested", "live/a"], T);
    server.wait_log_all(&["play requested", "live/b"], T);
    let mut qa = publish(&a, &server.url("live/a"), &[]);
    let mut qb = publish(&b, &server.url("live/b"), &[]);
    for (c, w) in [
        (&mut qa, "publisher a"),
        (&mut qb, "publisher b"),
        (&mut pa, "player a"),
        (&mut pb, "player b"),
    ] {
        wait_child(c, T, w);
    }
    assert_same_tracks(&framemd5(&a), &framemd5(&out_a), "key a");
    assert_same_tracks(&framemd5(&b), &framemd5(&out_b), "key b");
}

/// A second publisher on a live key takes it over: the first is told and
/// disconnected, the player stays and receives the new publisher's frames
/// with time still rising.
#[test]
fn takeover_replaces_publisher_and_keeps_players() {
    let (a, b) = (fixture(3), fixture(4));
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let out = dir.path().join("p.flv");
    let mut player = play(&server.url("live/t"), &out);
    server.wait_log_all(&["play requested", "live/t"], T);
    let mut first = publish(&a, &server.url("live/t"), &["-stream_loop", "-1"]);
    server.wait_log_all(&["play started", "live/t"], T);
    // Let the first publisher's frames reach the player.
    let deadline = std::time::Instant::now() + T;
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 60_000 {
        assert!(std::time::Instant::now() < deadline, "player got nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = publish(&b, &server.url("live/t"), &[]);
    server.wait_log("publisher takeover", T);
    let status = wait_child(&mut first, T, "first publisher");
    assert!(!status.success(), "the replaced publisher is disconnected");
    server.wait_log_all(&["replaced by a new publisher", "live/t"], T);
    assert!(wait_child(&mut second, T, "second publisher").success());
    wait_child(&mut player, T, "player");

    let played = framemd5(&out);
    let src_b = framemd5(&b);
    let vb = track(&src_b, 0);
    let played_b: Vec<&Packet> = played
        .iter()
        .filter(|p| vb.iter().any(|s| s.md5 == p.md5))
        .collect();
    assert!(
        played_b.len() >= 100,
        "player got {} of the second publisher's video frames",
        played_b.len()
    );
    // Time keeps rising for the player across the switch.
    for t in 0..2 {
        let tr = track(&played, t);
        assert!(
            tr.windows(2).all(|w| w[1].dts >= w[0].dts),
            "track {t} went back in time"
        );
    }
    assert_eq!(decode_errors(&out), "");
}

/// librtmp's player (rtmpdump) receives the whole stream and ends cleanly
/// when the publisher does.
#[test]
fn rtmpdump_plays() {
    require("rtmpdump");
    let src = fixture(6);
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let out = dir.path().join("dump.flv");
    let mut player = std::process::Command::new("rtmpdump")
        .args(["-q", "--live", "-r", &server.url("live/dump"), "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run rtmpdump");
    server.wait_log_all(&["play requested", "live/dump"], T);
    let mut publisher = publish(&src, &server.url("live/dump"), &[]);
    assert!(wait_child(&mut publisher, T, "publisher").success());
    let status = wait_child(&mut player, T, "rtmpdump");
    assert!(
        status.success(),
        "rtmpdump failed: {}",
        stderr_of(&mut player)
    );
    assert_same_tracks(&framemd5(&src), &framemd5(&out), "rtmpdump");
    assert_eq!(decode_errors(&out), "");
}

/// With `publish_conflict = "reject"`, a second publisher of a live key is
/// refused and the first goes on untouched.
#[test]
fn reject_policy_refuses_second_publisher() {
    let (a, b) = (fixture(7), fixture(8));
    let server = Castgate::start(&[("CASTGATE__RTMP__PUBLISH_CONFLICT", "reject")]);
    let dir = tempdir();
    let out = dir.path().join("r.flv");
    let mut player = play(&server.url("live/r"), &out);
    server.wait_log_all(&["play requested", "live/r"], T);
    let mut first = publish(&a, &server.url("live/r"), &[]);
    server.wait_log_all(&["publish started", "live/r"], T);
    let mut second = publish(&b, &server.url("live/r"), &[]);
    let status = wait_child(&mut second, T, "second publisher");
    assert!(!status.success(), "the second publisher must be refused");
    server.wait_log_all(&["publish refused", "already being published"], T);
    assert!(wait_child(&mut first, T, "first publisher").success());
    wait_child(&mut player, T, "player");
    assert_same_tracks(&framemd5(&a), &framemd5(&out), "first publisher's stream");
}
