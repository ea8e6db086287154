//! Enhanced RTMP out, against FFmpeg 9 (the peer that speaks it) and
//! Debian's ffmpeg 5.1 (a legacy player): FFmpeg 9 publishes HEVC + AAC;
//! an FFmpeg 9 player that announces its FourCCs gets every packet as
//! sent, a legacy player the AAC track alone, and a legacy player of a
//! stream with no legacy track is refused with the codecs named.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::harness::*;

pub(crate) const T: Duration = Duration::from_secs(90);

/// A 3 s FLV made by FFmpeg 9 (once per run and kind): testsrc2 in HEVC
/// (libx265, B-frames, 1 s GOP, so coded frames with and without a
/// composition time) and a sine in `audio` (`aac`, `libopus`).
pub(crate) fn hevc_fixture(audio: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = DIR
        .get_or_init(tempdir)
        .path()
        .join(format!("hevc_{audio}.flv"));
    if path.exists() {
        return path;
    }
    let out = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000"])
        .args(["-map", "0:v", "-map", "1:a", "-t", "3"])
        .args(["-c:v", "libx265", "-preset", "ultrafast", "-g", "30"])
        .args([
            "-x265-params",
            "log-level=error:bframes=2:keyint=30:min-keyint=30:scenecut=0:pools=1",
        ])
        .args(["-c:a", audio, "-b:a", "64k", "-ac", "2", "-f", "flv"])
        .arg(&path)
        .output_within(RUN_LIMIT)
        .expect("cannot run FFmpeg 9");
    assert!(
        out.status.success(),
        "FFmpeg 9 could not make the HEVC fixture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// FFmpeg 9 publishing a file as it is (`-re -c copy -f flv`).
pub(crate) fn publish9(file: &Path, url: &str) -> Child {
    Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run FFmpeg 9")
}

/// An FFmpeg 9 RTMP player announcing `codecs` (`-rtmp_enhanced_codecs`),
/// recording what it gets with the timestamps as received.
fn play9(url: &str, codecs: &str, out: &Path) -> Child {
    play9_mapped(url, codecs, out, &[])
}

/// [`play9`] with output options (`-map 0`: every track it gets).
fn play9_mapped(url: &str, codecs: &str, out: &Path, output_opts: &[&str]) -> Child {
    Command::new(ffmpeg9())
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-rtmp_enhanced_codecs",
            codecs,
        ])
        .args(["-i", url])
        .args(output_opts)
        .args(["-copyts", "-c", "copy", "-f", "flv"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run FFmpeg 9")
}

/// Starts `player`, then publishes `src` to `key` once the player waits,
/// and returns when both are done (the player's exit status).
fn publish_while_playing(
    server: &Castgate,
    key: &str,
    src: &Path,
    player: &mut Child,
) -> std::process::ExitStatus {
    server.wait_log_all(&["play requested", key], T);
    let mut publisher = publish9(src, &server.url(key));
    let status = wait_child(&mut publisher, T, "FFmpeg 9 publisher");
    assert!(
        status.success(),
        "FFmpeg 9 publisher failed: {}",
        stderr_of(&mut publisher)
    );
    wait_child(player, T, "player")
}

/// (a) FFmpeg 9 plays back what FFmpeg 9 published, HEVC and AAC, packet
/// for packet: same payloads, sizes, DTS, PTS and keyframes, as FFmpeg 9
/// reads both files. The same for HEVC with Opus, AC-3 and E-AC-3 (their
/// sequence starts and channel layouts as FFmpeg writes them).
#[test]
fn ffmpeg9_plays_back_hevc_identically() {
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let ff9 = ffmpeg9();
    for (audio, fourcc) in [
        ("aac", "mp4a"),
        ("libopus", "Opus"),
        ("ac3", "ac-3"),
        ("eac3", "ec-3"),
    ] {
        let src = hevc_fixture(audio);
        let key = format!("live/hevc_{audio}");
        let out = dir.path().join(format!("played_{audio}.flv"));
        let mut player = play9(&server.url(&key), &format!("hvc1,{fourcc}"), &out);
        let status = publish_while_playing(&server, &key, &src, &mut player);
        assert!(status.success(), "player: {}", stderr_of(&mut player));
        let source = framemd5_by(&ff9, &src, "0");
        let played = framemd5_by(&ff9, &out, "0");
        assert!(track(&source, 0).len() >= 90, "{} packets", source.len());
        assert_same_tracks(&source, &played, &format!("FFmpeg 9 played HEVC + {audio}"));
    }
    server.assert_no_panic();
}

/// Multitrack out: FFmpeg 9, announcing its FourCCs, plays a publish of
/// two video and two audio tracks (e2e/multitrack.rs's source, published
/// with `-map 0`) and gets all four, each packet for packet.
#[test]
fn ffmpeg9_plays_back_every_track_of_a_multitrack_publish() {
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let ff9 = ffmpeg9();
    let src = crate::multitrack::encode(dir.path());
    let key = "live/multi_play";
    let out = dir.path().join("played_multi.flv");
    let mut player = play9_mapped(&server.url(key), "avc1,mp4a", &out, &["-map", "0"]);
    server.wait_log_all(&["play requested", key], T);
    let mut publisher = Command::new(&ff9)
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&src)
        .args(["-map", "0", "-c", "copy", "-f", "flv", &server.url(key)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run FFmpeg 9");
    let status = wait_child(&mut publisher, T, "FFmpeg 9 publisher");
    assert!(status.success(), "publisher: {}", stderr_of(&mut publisher));
    let status = wait_child(&mut player, T, "player");
    assert!(status.success(), "player: {}", stderr_of(&mut player));
    let source = framemd5_by(&ff9, &src, "0");
    let played = framemd5_by(&ff9, &out, "0");
    let mut matched = Vec::new();
    for s in 0..4 {
        let src_track = track(&source, s);
        assert!(
            src_track.len() >= 100,
            "source track {s}: {} packets",
            src_track.len()
        );
        // The played track whose first packet is one of this track's.
        let p = (0..4)
            .find(|&p| {
                let t = track(&played, p);
                !t.is_empty() && src_track.iter().any(|x| x.md5 == t[0].md5)
            })
            .unwrap_or_else(|| panic!("no played track is source track {s}"));
        let mut got = track(&played, p);
        for x in &mut got {
            x.stream = s;
        }
        assert_same_packets(&src_track, &got, &format!("multitrack play, track {s}"));
        matched.push(p);
    }
    matched.sort_unstable();
    assert_eq!(
        matched,
        [0, 1, 2, 3],
        "each played track is one source track"
    );
    server.assert_no_panic();
}

/// (b) Debian's ffmpeg 5.1 announces no FourCC: it gets the AAC track
/// alone, packet for packet, and castgate says what it withheld.
#[test]
fn a_legacy_player_gets_the_aac_track_of_hevc_and_aac() {
    let src = hevc_fixture("aac");
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let out = dir.path().join("legacy.flv");
    let mut player = play(&server.url("live/mixed"), &out);
    let status = publish_while_playing(&server, "live/mixed", &src, &mut player);
    assert!(status.success(), "player: {}", stderr_of(&mut player));
    let audio = framemd5_by(ffmpeg9(), &src, "0:a");
    let played = framemd5_of(&out, "0");
    assert!(played.iter().all(|p| p.stream == 0));
    assert_same_packets(&audio, &played, "legacy player's audio");
    server.wait_log_all(&["withheld", "HEVC"], T);
    server.assert_no_panic();
}

/// A legacy player of HEVC + Opus takes neither track: NetStream.Play.Failed
/// names both codecs, and ffmpeg 5.1 fails with it.
#[test]
fn a_legacy_player_of_hevc_and_opus_is_refused() {
    let src = hevc_fixture("libopus");
    let server = Castgate::start(&[]);
    let dir = tempdir();
    let out = dir.path().join("refused.flv");
    let mut player = play(&server.url("live/opus"), &out);
    server.wait_log_all(&["play requested", "live/opus"], T);
    let mut publisher = publish9(&src, &server.url("live/opus"));
    let status = wait_child(&mut player, T, "legacy player");
    let err = stderr_of(&mut player);
    assert!(!status.success(), "the legacy player should fail: {err}");
    assert!(err.contains("HEVC video and Opus audio"), "{err}");
    server.wait_log_all(&["play refused", "HEVC video and Opus audio"], T);
    wait_child(&mut publisher, T, "publisher");
    server.assert_no_panic();
}

/// `FFmpeg 9 -listen 1`: an RTMP server for one publisher, recording what
/// it gets (Enhanced RTMP included) as FLV.
fn ffmpeg9_rtmp_listener(port: u16, path: &str, out: &Path) -> crate::relay::Proc {
    let child = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "warning", "-y", "-listen", "1", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/{path}"))
        .args(["-copyts", "-c", "copy", "-f", "flv"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run FFmpeg 9");
    let mut p = crate::relay::Proc(child, "FFmpeg 9 -listen 1");
    crate::relay::wait_bound(false, port, &mut p);
    p
}

/// (c) A relay to an FFmpeg 9 RTMP listener carries HEVC and AAC packet
/// for packet; a `legacy_only` relay to another carries the AAC alone.
#[test]
fn relays_to_ffmpeg9_carry_hevc_or_legacy_only() {
    use crate::relay::{create_relay, wait_relay};
    use serde_json::json;
    let src = hevc_fixture("aac");
    let dir = tempdir();
    let (port, legacy_port) = (free_port(), free_port());
    let (out, legacy_out) = (
        dir.path().join("relayed.flv"),
        dir.path().join("legacy.flv"),
    );
    let mut listener = ffmpeg9_rtmp_listener(port, "app/KEYe1", &out);
    let mut legacy = ffmpeg9_rtmp_listener(legacy_port, "app/KEYe2", &legacy_out);
    let server = Castgate::start_loopback_egress(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let relay = create_relay(
        &server,
        json!({"stream": "live/erelay", "target": format!("rtmp://127.0.0.1:{port}/app/KEYe1")}),
    );
    let legacy_relay = create_relay(
        &server,
        json!({
            "stream": "live/erelay",
            "target": format!("rtmp://127.0.0.1:{legacy_port}/app/KEYe2"),
            "legacy_only": true,
        }),
    );
    assert_eq!(legacy_relay["legacy_only"], true, "{legacy_relay}");
    assert_eq!(relay["legacy_only"], false, "{relay}");
    let mut publisher = publish9(&src, &server.url("live/erelay"));
    let status = wait_child(&mut publisher, T, "FFmpeg 9 publisher");
    assert!(status.success(), "publisher: {}", stderr_of(&mut publisher));
    for r in [&relay, &legacy_relay] {
        let id = r["id"].as_u64().unwrap();
        wait_relay(&server, id, "sent every frame", |r| {
            r["frames_sent"].as_u64() > Some(0) && r["queued_bytes"] == 0
        });
    }
    // The stream ends with its grace period; the relays close and the
    // listeners finish their files.
    listener.wait(T);
    legacy.wait(T);
    let ff9 = ffmpeg9();
    let source = framemd5_by(&ff9, &src, "0");
    assert_same_tracks(
        &source,
        &framemd5_by(&ff9, &out, "0"),
        "relayed to FFmpeg 9",
    );
    let audio = framemd5_by(&ff9, &src, "0:a");
    let legacy_got = framemd5_by(&ff9, &legacy_out, "0");
    assert!(legacy_got.iter().all(|p| p.stream == 0), "audio only");
    assert_same_packets(&audio, &legacy_got, "legacy_only relay");
    server.wait_log_all(&["HEVC track not relayed", "legacy_only"], T);
    server.assert_no_panic();
}

/// The MD5 of every decoded frame of one stream, decoded by `ffmpeg`.
fn decoded_md5_by(ffmpeg: &Path, input: &Path, map: &str) -> Vec<String> {
    let out = Command::new(ffmpeg)
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

/// The SRT relay's MPEG-TS of a publish of `flv` (castgate's ingest, then
/// its muxer), written to `out`; the muxer, for its counts.
fn mux_to_file(
    flv: &Path,
    out: &Path,
) -> (
    Vec<castgate::hub::StreamEvent>,
    castgate::egress::ts::TsMuxer,
) {
    let events = crate::relay::events_of(flv);
    let mut mux = castgate::egress::ts::TsMuxer::new();
    let mut ts = Vec::new();
    for e in &events {
        mux.push(e);
        for m in mux.take_messages(false) {
            ts.extend_from_slice(&m);
        }
    }
    for m in mux.take_messages(true) {
        ts.extend_from_slice(&m);
    }
    std::fs::write(out, &ts).unwrap();
    (events, mux)
}

/// The codec names ffprobe (Debian's 5.1) gives a file's streams.
fn probed_codecs(input: &Path) -> Vec<String> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output_within(RUN_LIMIT)
        .expect("cannot run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// SRT relays' MPEG-TS carries HEVC with AAC, AC-3, E-AC-3 and Opus, as
/// Debian's ffmpeg 5.1 reads it: every frame there, the pictures decode to
/// those of the source (as FFmpeg 9 decodes the FLV), the audio packets are
/// the source's, and decoding says nothing.
#[test]
fn ts_carries_hevc_ac3_eac3_and_opus() {
    use castgate::hub::StreamEvent;
    use castgate::media::MediaKind;
    require("ffmpeg");
    let ff9 = ffmpeg9();
    let dir = tempdir();
    for (audio, name) in [
        ("aac", "aac"),
        ("ac3", "ac3"),
        ("eac3", "eac3"),
        ("libopus", "opus"),
    ] {
        let src = hevc_fixture(audio);
        let out = dir.path().join(format!("{name}.ts"));
        let (events, mut mux) = mux_to_file(&src, &out);
        assert_eq!(mux.stats.dropped, 0, "{name}");
        assert_eq!(mux.take_uncarried(), None, "{name}");
        let mut want = vec![name, "hevc"];
        want.sort();
        assert_eq!(probed_codecs(&out), want, "{name}");
        let frames = |kind| {
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Frame(f) if f.kind() == kind))
                .count() as u64
        };
        assert_eq!(
            crate::relay::count_packets(&out),
            (frames(MediaKind::Video), frames(MediaKind::Audio)),
            "{name}"
        );
        let want = decoded_md5_by(&ff9, &src, "0:v");
        assert!(want.len() >= 90, "{name}");
        assert_eq!(
            decoded_md5_by(Path::new("ffmpeg"), &out, "0:v"),
            want,
            "{name}: pictures"
        );
        // As sent: AC-3 and E-AC-3 sync frames, Opus packets (the control
        // header taken off by the reader); AAC gains its 7-byte ADTS header.
        let (got, sent) = (framemd5_of(&out, "0:a"), framemd5_by(&ff9, &src, "0:a"));
        if name == "aac" {
            let sizes = |p: &[Packet], plus| p.iter().map(|p| p.size + plus).collect::<Vec<_>>();
            assert_eq!(sizes(&got, 0), sizes(&sent, 7), "aac: ADTS frames");
        } else {
            let md5s = |p: Vec<Packet>| p.into_iter().map(|p| (p.size, p.md5)).collect::<Vec<_>>();
            assert_eq!(md5s(got), md5s(sent), "{name}: audio packets");
        }
        assert_eq!(
            crate::relay::strict_decode(&out),
            "",
            "{name}: decoding the TS"
        );
    }
}

/// AV1, VP9 and FLAC have no carriage in the muxer: the track is left out
/// (the PMT has the other one alone), said once, its frames counted.
#[test]
fn ts_leaves_out_what_it_cannot_carry() {
    use castgate::media::Codec;
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media/flv/testdata");
    let dir = tempdir();
    for (file, left_out, kept) in [
        ("ffmpeg9_av1_ac3.flv", Codec::Av1, "ac3"),
        ("ffmpeg9_vp9_eac3.flv", Codec::Vp9, "eac3"),
        ("ffmpeg9_h264_flac.flv", Codec::Flac, "h264"),
    ] {
        let out = dir.path().join(format!("{file}.ts"));
        let (_, mut mux) = mux_to_file(&testdata.join(file), &out);
        assert_eq!(mux.take_uncarried(), Some(left_out), "{file}");
        assert_eq!(mux.take_uncarried(), None, "{file}: said once");
        assert!(mux.stats.dropped > 0 && mux.stats.frames > 0, "{file}");
        assert_eq!(probed_codecs(&out), [kept], "{file}");
    }
}
