//! Enhanced RTMP v2 multitrack (issue 18): FFmpeg 9 publishes two video
//! tracks (the same picture at 640x360 and 320x180, a simulcast ladder as
//! OBS's multitrack output sends) and two audio tracks (two different
//! tones) in one FLV stream. FFmpeg sends track 0 as plain Enhanced RTMP
//! packets and track 1 as OneTrack multitrack packets (trackId 1).
//!
//! What the test expects (castgate's layout, README "Enhanced RTMP"):
//! - The multivariant playlist `/KEY/index.m3u8` lists two variants, one
//!   per video track, each with BANDWIDTH (the 640x360 one larger),
//!   RESOLUTION, FRAME-RATE and CODECS (`avc1.…,mp4a.40.2`), and both with
//!   the same AUDIO group, which has two `EXT-X-MEDIA:TYPE=AUDIO`
//!   renditions (one per audio track, stereo, distinct URIs and NAMEs,
//!   exactly one DEFAULT=YES). The test follows the URIs the playlist
//!   gives rather than fixing names: track 0 is at `video.m3u8` /
//!   `audio.m3u8`, track N at `videoN/…` / `audioN/…`.
//! - The MPD `/KEY/manifest.mpd` has one video AdaptationSet with two
//!   Representations (640x360 and 320x180) and two audio AdaptationSets
//!   (one per audio track: different content, not bitrates of one).
//! - Each variant's media playlist, read by FFmpeg 9, decodes to exactly
//!   the pictures of its source track; each audio rendition carries every
//!   packet of its source track; the MPD's video and audio streams, read
//!   by FFmpeg 9, are each one of the source tracks, all different.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::enhanced_cmaf::{
    assert_stereo, get_ok, master_playlist, media_playlist, publish_and_end, LogOnFailure, Mpd,
};
use crate::harness::*;

/// How long a step may take (publishing, packaging, a relay draining).
const T: Duration = Duration::from_secs(90);

/// Encodes the multitrack source with FFmpeg 9: 6 s, 25 fps, one keyframe
/// a second in both video tracks (the same frames, so segments align),
/// H.264 High at 800 and 200 kbit/s, AAC-LC stereo at 128 and 64 kbit/s.
pub(crate) fn encode(dir: &Path) -> PathBuf {
    let ff = ffmpeg9();
    let path = dir.join("multitrack.flv");
    let out = Command::new(&ff)
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=500:beep_factor=4:sample_rate=48000",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1500:beep_factor=2:sample_rate=48000",
        ])
        .args([
            "-filter_complex",
            "[0:v]split=2[hi][lo0];[lo0]scale=320:180[lo]",
        ])
        .args(["-map", "[hi]", "-map", "[lo]", "-map", "1:a", "-map", "2:a"])
        .args(["-t", "6"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .args([
            "-bf",
            "2",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
        ])
        .args(["-b:v:0", "800k", "-b:v:1", "200k"])
        .args(["-c:a", "aac", "-ar", "48000", "-ac", "2"])
        .args(["-b:a:0", "128k", "-b:a:1", "64k", "-f", "flv"])
        .arg(&path)
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ff.display()));
    assert!(
        out.status.success(),
        "FFmpeg 9 could not encode the multitrack source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Which of `sources` `got` is (equal lists of decoded-frame checksums).
fn which_video(sources: &[Vec<String>], got: &[String], what: &str) -> usize {
    assert!(!got.is_empty(), "{what}: no video frames");
    sources.iter().position(|s| s == got).unwrap_or_else(|| {
        panic!(
            "{what}: its {} decoded pictures are not those of any source track ({:?} frames)",
            got.len(),
            sources.iter().map(Vec::len).collect::<Vec<_>>()
        )
    })
}

/// Which of the source audio tracks `got` comes from (its first packet's
/// payload), checked to carry every packet of it from there to the end.
fn which_audio(sources: &[Vec<Packet>], got: &[Packet], what: &str) -> usize {
    assert!(!got.is_empty(), "{what}: no audio packets");
    let i = sources
        .iter()
        .position(|s| {
            s.iter()
                .any(|p| p.md5 == got[0].md5 && (p.pts - got[0].pts).abs() <= 1)
        })
        .unwrap_or_else(|| panic!("{what}: its first packet is in no source audio track"));
    assert_audio_run(&sources[i], got, what);
    i
}

#[test]
fn two_video_and_two_audio_tracks_in_one_publish() {
    let dir = tempdir();
    let source = encode(dir.path());
    let ff = ffmpeg9();
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let key = "live/multi";
    let _log = LogOnFailure {
        server: &server,
        key,
    };
    // `-map 0`: all four tracks (ffmpeg picks one video and one audio
    // otherwise); FFmpeg 9's FLV muxer makes tracks 1 multitrack packets.
    publish_and_end(&server, &source, key, true, &["-map", "0"]);
    // The sources, per track (FFmpeg 9 reads the multitrack FLV).
    let src_video: Vec<Vec<String>> = ["0:v:0", "0:v:1"]
        .iter()
        .map(|m| decoded_frames(&ff, &source, m))
        .collect();
    let src_audio: Vec<Vec<Packet>> = ["0:a:0", "0:a:1"]
        .iter()
        .map(|m| framemd5_by(&ff, &source, m))
        .collect();
    assert_eq!(src_video[0].len(), 150, "6 s of 25 fps in track 0");
    assert_eq!(src_video[1].len(), 150, "6 s of 25 fps in track 1");
    assert_ne!(
        src_audio[0][5].md5, src_audio[1][5].md5,
        "two different tones"
    );

    // The multivariant playlist.
    let text = get_ok(&server, key, "index.m3u8");
    let m = master_playlist(&text);
    assert_eq!(m.variants.len(), 2, "one variant per video track: {text}");
    let mut by_size: Vec<_> = m
        .variants
        .iter()
        .map(|v| {
            let r = v
                .resolution
                .unwrap_or_else(|| panic!("a variant without RESOLUTION: {text}"));
            ((r.width, r.height), v)
        })
        .collect();
    by_size.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    assert_eq!(
        by_size.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [(640, 360), (320, 180)],
        "{text}"
    );
    for (_, v) in &by_size {
        assert!(v.bandwidth > 0, "{text}");
        let codecs = v.codecs.as_deref().unwrap_or_default();
        assert!(
            codecs.starts_with("avc1.64") && codecs.ends_with(",mp4a.40.2"),
            "CODECS {codecs:?}: {text}"
        );
        assert!(
            v.frame_rate.is_some_and(|f| (f - 25.0).abs() < 0.5),
            "{text}"
        );
    }
    assert!(
        by_size[0].1.bandwidth > by_size[1].1.bandwidth,
        "the 640x360 variant has the larger BANDWIDTH: {text}"
    );
    let group = by_size[0].1.audio.clone();
    assert!(group.is_some(), "variants name an AUDIO group: {text}");
    assert_eq!(
        by_size[1].1.audio, group,
        "one AUDIO group for both: {text}"
    );
    let audio: Vec<_> = m
        .alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .collect();
    assert_eq!(audio.len(), 2, "one EXT-X-MEDIA per audio track: {text}");
    for a in &audio {
        assert_eq!(Some(&a.group_id), group.as_ref(), "{text}");
        assert!(a.uri.is_some(), "an audio rendition without URI: {text}");
        assert_eq!(a.channels.as_deref(), Some("2"), "stereo: {text}");
    }
    assert_ne!(audio[0].uri, audio[1].uri, "{text}");
    assert_ne!(audio[0].name, audio[1].name, "{text}");
    assert_eq!(
        audio.iter().filter(|a| a.default).count(),
        1,
        "one DEFAULT=YES rendition: {text}"
    );

    // Each variant: an ended media playlist whose pictures are exactly its
    // source track's (640x360 is track 0, 320x180 track 1).
    for (i, (size, v)) in by_size.iter().enumerate() {
        let p = media_playlist(&get_ok(&server, key, &v.uri));
        assert!(p.end_list, "{key}/{}: an ended stream says so", v.uri);
        let url = server.http_url(&format!("{key}/{}", v.uri));
        assert_eq!(decode_errors_by(&ff, &url), "", "FFmpeg 9 decoding {url}");
        let got = decoded_frames(&ff, &url, "0:v");
        let what = format!("variant {size:?} ({url})");
        assert_eq!(which_video(&src_video, &got, &what), i, "{what}");
    }
    // Each audio rendition: every packet of one source audio track, the
    // two renditions two different tracks.
    let mut tracks: Vec<usize> = audio
        .iter()
        .map(|a| {
            let uri = a.uri.as_deref().unwrap_or_default();
            let p = media_playlist(&get_ok(&server, key, uri));
            assert!(p.end_list, "{key}/{uri}: an ended stream says so");
            let url = server.http_url(&format!("{key}/{uri}"));
            let got = framemd5_by(&ff, &url, "0:a");
            which_audio(&src_audio, &got, &format!("audio rendition {url}"))
        })
        .collect();
    tracks.sort_unstable();
    assert_eq!(tracks, [0, 1], "the renditions are the two audio tracks");

    // The MPD: one video AdaptationSet with both Representations, one
    // audio AdaptationSet per audio track.
    let text = get_ok(&server, key, "manifest.mpd");
    let mpd = Mpd::parse(&text);
    assert_eq!(mpd.attr("type"), Some("static"), "{text}");
    let sets = mpd.all("AdaptationSet");
    let video: Vec<_> = sets
        .iter()
        .filter(|s| s.content_type() == "video")
        .collect();
    let audio: Vec<_> = sets
        .iter()
        .filter(|s| s.content_type() == "audio")
        .collect();
    assert_eq!(video.len(), 1, "one video AdaptationSet: {text}");
    assert_eq!(audio.len(), 2, "two audio AdaptationSets: {text}");
    let reps = video[0].all("Representation");
    let mut sizes: Vec<(String, String)> = reps
        .iter()
        .map(|r| {
            let codecs = r.rep_attr(video[0], "codecs").unwrap_or_default();
            assert!(codecs.starts_with("avc1.64"), "{codecs:?}: {text}");
            (
                r.rep_attr(video[0], "width")
                    .unwrap_or_default()
                    .to_string(),
                r.rep_attr(video[0], "height")
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("320".to_string(), "180".to_string()),
            ("640".to_string(), "360".to_string())
        ],
        "{text}"
    );
    let ids: std::collections::HashSet<_> = reps.iter().filter_map(|r| r.attr("id")).collect();
    assert_eq!(ids.len(), 2, "distinct Representation ids: {text}");
    for a in &audio {
        let reps = a.all("Representation");
        assert_eq!(reps.len(), 1, "{text}");
        assert_eq!(reps[0].rep_attr(a, "codecs"), Some("mp4a.40.2"), "{text}");
        assert_stereo(reps[0], a, &text);
    }
    assert_ne!(audio[0].attr("id"), audio[1].attr("id"), "{text}");

    // FFmpeg 9 reads the MPD: its two video streams are the two source
    // tracks, its two audio streams the two source audio tracks.
    let url = server.http_url(&format!("{key}/manifest.mpd"));
    assert_eq!(decode_errors_by(&ff, &url), "", "FFmpeg 9 decoding {url}");
    let mut found: Vec<usize> = ["0:v:0", "0:v:1"]
        .iter()
        .map(|m| {
            let got = decoded_frames(&ff, &url, m);
            which_video(&src_video, &got, &format!("{url} stream {m}"))
        })
        .collect();
    found.sort_unstable();
    assert_eq!(found, [0, 1], "{url}: both video tracks");
    let mut found: Vec<usize> = ["0:a:0", "0:a:1"]
        .iter()
        .map(|m| {
            let got = framemd5_by(&ff, &url, m);
            which_audio(&src_audio, &got, &format!("{url} stream {m}"))
        })
        .collect();
    found.sort_unstable();
    assert_eq!(found, [0, 1], "{url}: both audio tracks");
}

/// A relay to an RTMP server whose `connect` answer states Enhanced RTMP
/// multitrack (here a second castgate) carries every track: the edge's
/// HLS has both variants and both audio renditions, each variant exactly
/// the pictures of its source track. (A destination that does not state
/// it gets track 0, as `enhanced.rs` checks with FFmpeg 9's listener.)
#[test]
fn a_relay_to_a_multitrack_destination_carries_every_track() {
    use crate::relay::{create_relay, wait_relay};
    let dir = tempdir();
    let source = encode(dir.path());
    let ff = ffmpeg9();
    let grace = [("CASTGATE__PACKAGE__GRACE_SECS", "1")];
    let edge = Castgate::start(&grace);
    let origin = Castgate::start_loopback_egress(&grace);
    let (key, relayed) = ("live/ladder", "live/relayed");
    let _log = LogOnFailure {
        server: &edge,
        key: relayed,
    };
    let relay = create_relay(
        &origin,
        serde_json::json!({"stream": key, "target": edge.url(relayed)}),
    );
    publish_and_end(&origin, &source, key, true, &["-map", "0"]);
    let id = relay["id"].as_u64().unwrap();
    wait_relay(&origin, id, "sent every frame", |r| {
        r["frames_sent"].as_u64() > Some(0) && r["queued_bytes"] == 0
    });
    origin.wait_log_all(&["every track is relayed"], T);
    edge.wait_log_all(&["packaging ended", relayed], T);
    let src_video: Vec<Vec<String>> = ["0:v:0", "0:v:1"]
        .iter()
        .map(|m| decoded_frames(&ff, &source, m))
        .collect();
    let text = get_ok(&edge, relayed, "index.m3u8");
    let m = master_playlist(&text);
    assert_eq!(m.variants.len(), 2, "one variant per video track: {text}");
    let mut found: Vec<usize> = m
        .variants
        .iter()
        .map(|v| {
            let url = edge.http_url(&format!("{relayed}/{}", v.uri));
            let got = decoded_frames(&ff, &url, "0:v");
            which_video(&src_video, &got, &format!("relayed variant {url}"))
        })
        .collect();
    found.sort_unstable();
    assert_eq!(found, [0, 1], "both video tracks relayed: {text}");
    let audio = m
        .alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .count();
    assert_eq!(audio, 2, "both audio tracks relayed: {text}");
    origin.assert_no_panic();
    edge.assert_no_panic();
}

/// hls.js in headless Chromium plays the live multitrack ladder and
/// switches between its variants when asked: it shows the 640x360 track,
/// then the 320x180 one, then 640x360 again, with no player error.
#[test]
fn hls_js_switches_between_the_variants() {
    crate::browser::ensure_installed();
    let dir = tempdir();
    let source = encode(dir.path());
    let server = Castgate::start(&[]);
    let key = "live/multiweb";
    let _log = LogOnFailure {
        server: &server,
        key,
    };
    let mut publisher = publish_by(
        &ffmpeg9(),
        &source,
        &server.url(key),
        &["-stream_loop", "-1"],
        &["-map", "0"],
    );
    // Both variants listed, and a window for hls.js to start in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let index = http_get(server.http, &format!("/{key}/index.m3u8"));
        let video = http_get(server.http, &format!("/{key}/video1/video.m3u8"));
        let ready = index.status == 200
            && master_playlist(&index.text()).variants.len() == 2
            && video.status == 200
            && media_playlist(&video.text()).segments.len() >= 3;
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key}: two variants with three segments never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let url = server.http_url(&format!("{key}/index.m3u8"));
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("castgate-multitrack-hls.png");
    let report =
        crate::browser::play_in("hls", crate::browser::Mode::SwitchVariants, &url, 20, &shot);
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert!(report.ok, "hls.js did not play {url}: {}", report.raw);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let sizes: serde_json::Value = serde_json::from_str(&report.raw).expect("the report is JSON");
    let sizes: Vec<&str> = sizes["sizes"]
        .as_array()
        .expect("sizes in the report")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let small = sizes.iter().position(|s| *s == "320x180");
    let large_after = small.and_then(|i| sizes[i..].iter().position(|s| *s == "640x360"));
    assert!(
        small.is_some() && large_after.is_some(),
        "hls.js did not show 320x180 and then 640x360: {sizes:?} ({})",
        report.raw
    );
}
