//! The segmenter on a real encoder's stream: ffmpeg makes an FLV (H.264 with
//! B-frames + AAC), castgate's ingest and segmenter package it, and ffmpeg
//! reads the CMAF output back: same payloads, same presentation times, every
//! video segment starting with a keyframe, audio aligned with video.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use bytes::Bytes;
use castgate::hub::StreamEvent;
use castgate::media::flv::Ingest;
use castgate::media::MediaKind;
use castgate::package::segmenter::{SegmenterConfig, StreamSegmenter};

fn require_ffmpeg() {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok();
    assert!(
        ok,
        "ffmpeg is not installed: these tests need it (run ./scripts/test.sh, which installs it)"
    );
}

/// A generated FLV: `secs` of testsrc2 + sine, 1 s GOP (or `gop` frames).
fn make_flv(dir: &Path, name: &str, secs: u32, gop: u32, video: bool, audio: bool) -> PathBuf {
    require_ffmpeg();
    let path = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-y"]);
    if video {
        cmd.args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"]);
    }
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]);
    }
    cmd.args(["-t", &secs.to_string()]);
    if video {
        let g = gop.to_string();
        cmd.args([
            "-c:v",
            "libx264",
            "-threads",
            "1",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .args([
            "-bf",
            "2",
            "-g",
            &g,
            "-keyint_min",
            &g,
            "-sc_threshold",
            "0",
        ]);
    }
    if audio {
        cmd.args(["-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "2"]);
    }
    let status = cmd.args(["-f", "flv"]).arg(&path).status().unwrap();
    assert!(status.success());
    path
}

/// The audio/video tags of an FLV file: (type, timestamp, body).
fn flv_tags(path: &Path) -> Vec<(u8, u32, Bytes)> {
    let data = Bytes::from(std::fs::read(path).unwrap());
    castgate::media::flv_file::read_tags(&data)
        .unwrap()
        .into_iter()
        .filter(|t| t.tag_type == 8 || t.tag_type == 9)
        .map(|t| (t.tag_type, t.timestamp, t.body))
        .collect()
}

fn package(tags: &[(u8, u32, Bytes)], seg: &mut StreamSegmenter) {
    let mut ingest = Ingest::new();
    let mut events = vec![StreamEvent::PublisherStarted];
    for (t, ts, body) in tags {
        let kind = if *t == 9 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        ingest
            .media(kind, *ts, body.clone(), |e| events.push(e))
            .unwrap();
    }
    for e in &events {
        seg.push(e, SystemTime::now());
    }
}

/// Writes init + every segment of a track into one fMP4 file.
fn write_track(seg: &StreamSegmenter, kind: MediaKind, path: &Path) {
    let snap = seg.snapshot();
    let t = match kind {
        MediaKind::Video => snap.video.unwrap(),
        MediaKind::Audio => snap.audio.unwrap(),
    };
    let mut out = seg.init(kind, t.segments[0].init).unwrap().to_vec();
    for s in &t.segments {
        for chunk in seg.segment(kind, s.number).unwrap() {
            out.extend_from_slice(&chunk);
        }
    }
    std::fs::write(path, out).unwrap();
}

/// (pts in ms, size, md5) per packet of one stream, via framemd5.
fn packets(path: &Path, stream: &str) -> Vec<(i64, u64, String)> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-copyts", "-i"])
        .arg(path)
        .args(["-map", stream, "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let tb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#tb 0: "))
        .map(|t| {
            let (n, d) = t.trim().split_once('/').unwrap();
            n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap()
        })
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let pts: i64 = f[2].parse().unwrap();
            (
                (pts as f64 * tb * 1000.0).round() as i64,
                f[4].parse().unwrap(),
                f[5].to_string(),
            )
        })
        .collect()
}

fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn av_stream_packages_frame_identical_and_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let flv = make_flv(dir.path(), "av.flv", 9, 30, true, true);
    let mut seg = StreamSegmenter::with_first_number("live/x", SegmenterConfig::default(), 1);
    package(&flv_tags(&flv), &mut seg);
    seg.end(SystemTime::now());
    let snap = seg.snapshot();
    let v = snap.video.clone().unwrap();
    let a = snap.audio.clone().unwrap();
    // 9 s with a 1 s GOP and a 2 s target: segments of 2 s, the last 1 s.
    let durations: Vec<f64> = v
        .segments
        .iter()
        .map(|s| s.duration as f64 / 90_000.0)
        .collect();
    assert_eq!(v.segments.len(), 5, "{durations:?}");
    assert!(
        durations[..4].iter().all(|d| (*d - 2.0).abs() < 0.001),
        "{durations:?}"
    );
    assert!(snap.target_duration >= 2);
    // Segment numbers match across tracks and every video segment and part
    // boundary is where the publisher put it.
    let vn: Vec<u64> = v.segments.iter().map(|s| s.number).collect();
    let an: Vec<u64> = a.segments.iter().map(|s| s.number).collect();
    assert_eq!(vn, an);
    for s in &v.segments {
        assert!(
            s.parts[0].independent,
            "segment {} does not start with a keyframe",
            s.number
        );
        assert!(s.parts.len() >= 2, "segments are built from parts");
    }
    // Each track's segments are contiguous: every segment starts where the
    // previous one ended (manifests list them back to back).
    for t in [&v, &a] {
        for w in t.segments.windows(2) {
            assert_eq!(
                w[0].start + w[0].duration,
                w[1].start,
                "gap before segment {}",
                w[1].number
            );
        }
    }
    // The first audio segment starts at the first audio sample (the source's
    // AAC starts a little after its video); every later boundary agrees
    // with the video's within one audio frame.
    let first_audio_ms = packets(&flv, "0:a")[0].0;
    assert_eq!(a.segments[0].start * 1000 / 48_000, first_audio_ms as u64);
    for (sv, sa) in v.segments.iter().zip(&a.segments).skip(1) {
        let tv = sv.start as f64 / 90_000.0;
        let ta = sa.start as f64 / 48_000.0;
        assert!(
            (tv - ta).abs() <= 1024.0 / 48_000.0 + 1e-9,
            "segment {}: video {tv} audio {ta}",
            sv.number
        );
    }

    let (vmp4, amp4) = (dir.path().join("v.mp4"), dir.path().join("a.mp4"));
    write_track(&seg, MediaKind::Video, &vmp4);
    write_track(&seg, MediaKind::Audio, &amp4);
    assert_eq!(decode_errors(&vmp4), "");
    assert_eq!(decode_errors(&amp4), "");
    // Video: every frame, same payload, same presentation time.
    let src_v = packets(&flv, "0:v");
    let out_v = packets(&vmp4, "0:v");
    assert_eq!(out_v.len(), src_v.len());
    assert_eq!(out_v, src_v);
    // Audio: every frame, same payload; times within a millisecond.
    let src_a = packets(&flv, "0:a");
    let out_a = packets(&amp4, "0:a");
    assert_eq!(out_a.len(), src_a.len());
    for (o, s) in out_a.iter().zip(&src_a) {
        assert_eq!((o.1, &o.2), (s.1, &s.2));
        assert!((o.0 - s.0).abs() <= 1, "audio pts {} vs {}", o.0, s.0);
    }
}

#[test]
fn audio_only_and_video_only_streams() {
    let dir = tempfile::tempdir().unwrap();
    let flv = make_flv(dir.path(), "a.flv", 5, 30, false, true);
    let mut seg = StreamSegmenter::with_first_number("live/a", SegmenterConfig::default(), 1);
    package(&flv_tags(&flv), &mut seg);
    seg.end(SystemTime::now());
    let snap = seg.snapshot();
    assert!(snap.video.is_none());
    let a = snap.audio.unwrap();
    assert!(a.segments.len() >= 2);
    let p = dir.path().join("a.mp4");
    write_track(&seg, MediaKind::Audio, &p);
    assert_eq!(decode_errors(&p), "");
    assert_eq!(packets(&p, "0:a").len(), packets(&flv, "0:a").len());

    let flv = make_flv(dir.path(), "v.flv", 5, 30, true, false);
    let mut seg = StreamSegmenter::with_first_number("live/v", SegmenterConfig::default(), 1);
    package(&flv_tags(&flv), &mut seg);
    seg.end(SystemTime::now());
    let snap = seg.snapshot();
    assert!(snap.audio.is_none());
    let p = dir.path().join("v.mp4");
    write_track(&seg, MediaKind::Video, &p);
    assert_eq!(packets(&p, "0:v"), packets(&flv, "0:v"));
}

#[test]
fn publisher_drop_and_return_is_a_discontinuity_and_window_slides() {
    let dir = tempfile::tempdir().unwrap();
    let flv = make_flv(dir.path(), "d.flv", 6, 30, true, true);
    let tags = flv_tags(&flv);
    let cfg = SegmenterConfig {
        window: 3,
        extra: 1,
        ..SegmenterConfig::default()
    };
    let mut seg = StreamSegmenter::with_first_number("live/d", cfg, 1);
    package(&tags, &mut seg);
    seg.push(&StreamEvent::PublisherStopped, SystemTime::now());
    // The same publisher returns; the hub would rebase its clock, here we
    // shift it by hand past the first run.
    let shifted: Vec<_> = tags
        .iter()
        .map(|(t, ts, b)| (*t, ts + 6100, b.clone()))
        .collect();
    package(&shifted, &mut seg);
    seg.end(SystemTime::now());
    let snap = seg.snapshot();
    let v = snap.video.unwrap();
    assert_eq!(v.segments.len(), 3, "the window lists 3 segments");
    let stored = (1..=10)
        .filter(|n| seg.segment(MediaKind::Video, *n).is_some())
        .count();
    assert_eq!(
        stored, 4,
        "window + extra segments are kept, older ones dropped"
    );
    let disc: Vec<u64> = v
        .segments
        .iter()
        .filter(|s| s.discontinuity)
        .map(|s| s.number)
        .collect();
    // 6 s = segments 1..3, then the return starts segment 4 with a discontinuity.
    let numbers: Vec<u64> = v.segments.iter().map(|s| s.number).collect();
    assert_eq!(numbers, vec![4, 5, 6]);
    assert_eq!(disc, vec![4], "the return starts a discontinuity");
    let a = snap.audio.unwrap();
    let adisc: Vec<u64> = a
        .segments
        .iter()
        .filter(|s| s.discontinuity)
        .map(|s| s.number)
        .collect();
    assert_eq!(adisc, vec![4], "audio marks the same discontinuity");
    assert_eq!(seg.discontinuity_sequence(MediaKind::Video), 0);
    assert!(snap.ended);
}

#[test]
fn garbage_and_missing_keyframes_do_not_crash() {
    let mut seg = StreamSegmenter::with_first_number("live/g", SegmenterConfig::default(), 1);
    let mut ingest = Ingest::new();
    let mut events = Vec::new();
    // Inter frames only, never a keyframe, and garbage bodies.
    for i in 0..200u32 {
        let body = Bytes::from(vec![0x27, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
        // Before any sequence header, every such frame is refused as
        // undecodable, never accepted and never a panic.
        assert!(ingest
            .media(MediaKind::Video, i * 33, body, |e| events.push(e))
            .is_err());
        let junk = Bytes::from(vec![0xAF, (i % 3) as u8, 0x12, 0x10, 0x99]);
        let audio = ingest.media(MediaKind::Audio, i * 21, junk, |e| events.push(e));
        // 12 10 is a valid AAC-LC config (type 0), then raw frames (type 1)
        // are accepted; type 2 does not exist and is refused.
        assert_eq!(audio.is_ok(), i % 3 != 2, "audio packet {i}: {audio:?}");
    }
    for e in &events {
        seg.push(e, SystemTime::now());
    }
    seg.end(SystemTime::now());
    assert!(!seg.has_segments() || seg.snapshot().video.is_none());
}

#[test]
fn codec_change_mid_stream_gets_new_init_and_discontinuity() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_flv(dir.path(), "big.flv", 4, 30, true, true);
    let b = make_flv_sized(dir.path(), "small.flv", "160x90");
    let mut seg = StreamSegmenter::with_first_number("live/c", SegmenterConfig::default(), 1);
    package(&flv_tags(&a), &mut seg);
    // Same publisher, new resolution: a new sequence header mid-stream.
    let later: Vec<_> = flv_tags(&b)
        .into_iter()
        .map(|(t, ts, body)| (t, ts + 4100, body))
        .collect();
    package(&later, &mut seg);
    seg.end(SystemTime::now());
    let v = seg.snapshot().video.unwrap();
    assert_eq!(
        v.info.width, 160,
        "track info follows the new configuration"
    );
    let inits: Vec<u32> = v.segments.iter().map(|s| s.init).collect();
    let first_new = inits
        .iter()
        .position(|&i| i != inits[0])
        .expect("a second init segment");
    assert!(
        v.segments[first_new].discontinuity,
        "a new init starts with a discontinuity"
    );
    assert!(seg.init(MediaKind::Video, inits[first_new]).is_some());
    // Both halves decode, each with its own init.
    for (i, range) in [
        (inits[0], 0..first_new),
        (inits[first_new], first_new..v.segments.len()),
    ] {
        let mut out = seg.init(MediaKind::Video, i).unwrap().to_vec();
        for s in &v.segments[range] {
            for c in seg.segment(MediaKind::Video, s.number).unwrap() {
                out.extend_from_slice(&c);
            }
        }
        let p = dir.path().join(format!("part{i}.mp4"));
        std::fs::write(&p, out).unwrap();
        assert_eq!(decode_errors(&p), "");
    }
}

fn make_flv_sized(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
            "-t",
            "4",
        ])
        .args([
            "-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-bf", "2", "-g", "30",
        ])
        .args(["-c:a", "aac", "-ar", "48000", "-ac", "2", "-f", "flv"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[test]
fn memory_is_bounded_by_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let flv = make_flv(dir.path(), "m.flv", 4, 30, true, true);
    let tags = flv_tags(&flv);
    let mut seg = StreamSegmenter::with_first_number("live/m", SegmenterConfig::default(), 1);
    let mut ingest = Ingest::new();
    // Stored bytes after each 4 s round, and the segment numbers seen.
    let mut stored = Vec::new();
    let mut first_numbers = Vec::new();
    // 20 loops of the 4 s source = 80 s of media, time rising throughout.
    for round in 0..20u32 {
        let mut events = Vec::new();
        for (t, ts, body) in &tags {
            let kind = if *t == 9 {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            ingest
                .media(kind, ts + round * 4100, body.clone(), |e| events.push(e))
                .unwrap();
        }
        for e in &events {
            seg.push(e, SystemTime::now());
        }
        stored.push(seg.stored_bytes());
        if let Some(v) = seg.snapshot().video {
            first_numbers.extend(v.segments.iter().map(|s| s.number));
        }
    }
    // Once the window has filled (the store keeps 9 segments per track of
    // 1 s GOPs: full well before 20 s), stored bytes stay flat: every
    // round's figure within one round's worth of media of the first full one.
    let full = stored[6];
    let round_bytes = stored[6] / 9 * 4;
    for (i, b) in stored.iter().enumerate().skip(6) {
        assert!(
            b.abs_diff(full) <= round_bytes,
            "stored bytes not flat after the window filled: round {i}: {b} vs {full} ({stored:?})"
        );
    }
    assert!(
        stored[19] < stored[6] * 2,
        "the store grows with the stream: {stored:?}"
    );
    let v = seg.snapshot().video.unwrap();
    assert_eq!(v.segments.len(), 6);
    let oldest_kept = v.segments[0].number;
    assert!(oldest_kept > 20, "old segments were evicted: {oldest_kept}");
    // Evicted segments answer nothing, for either track.
    let first = *first_numbers.iter().min().unwrap();
    assert_eq!(first, 1, "numbering starts where it was told to");
    for n in first..oldest_kept.saturating_sub(3) {
        assert!(
            seg.segment(MediaKind::Video, n).is_none(),
            "video segment {n} was kept after eviction"
        );
        assert!(
            seg.segment(MediaKind::Audio, n).is_none(),
            "audio segment {n} was kept after eviction"
        );
    }
    assert!(seg.segment(MediaKind::Video, oldest_kept).is_some());
}

#[test]
fn numbering_never_repeats_across_stream_restarts() {
    // A stream published again a second or more after it began numbers its
    // segments past every number the first session can have used in that
    // time (one segment a second at most: the target is ≥ 1 s).
    let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let a = StreamSegmenter::first_number_at(t0);
    let b = StreamSegmenter::first_number_at(t0 + std::time::Duration::from_millis(1100));
    assert!(b > a, "a restarted stream must not reuse segment URLs");
    let live = StreamSegmenter::new("live/r", SegmenterConfig::default(), t0);
    assert_eq!(
        live.next_number(),
        StreamSegmenter::first_number_at(t0),
        "new() numbers from the time it is given"
    );
    assert_eq!(StreamSegmenter::first_number_at(SystemTime::UNIX_EPOCH), 1);
}

/// Hostile publishers, fed through ingest as FLV tag bodies (no ffmpeg):
/// a real SPS/PPS pair and made-up slices, which the packager never decodes.
mod hostile {
    use super::*;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    /// An AVC sequence header; `level` tells two configurations apart.
    fn avc_seq(level: u8) -> Bytes {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, level, 0xff, 0xe1];
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.push(1);
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(PPS);
        Bytes::from(b)
    }

    fn frame(key: bool) -> Bytes {
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 8];
        b.extend_from_slice(&[if key { 0x65 } else { 0x41 }, 0x88, 1, 2, 3, 4, 5, 6]);
        Bytes::from(b)
    }

    fn aac(body: &[u8]) -> Bytes {
        Bytes::from([&[0xaf, 1][..], body].concat())
    }

    /// Runs `tags` (kind, timestamp, body) through ingest into `seg`.
    fn feed(seg: &mut StreamSegmenter, tags: &[(MediaKind, u32, Bytes)]) {
        let mut ingest = Ingest::new();
        let mut events = vec![StreamEvent::PublisherStarted];
        for (kind, ts, body) in tags {
            ingest
                .media(*kind, *ts, body.clone(), |e| events.push(e))
                .expect("valid tags");
        }
        for e in &events {
            seg.push(e, SystemTime::now());
        }
    }

    /// A publisher switching configurations back and forth without frames
    /// in between keeps one init segment per track, not one per switch.
    #[test]
    fn configuration_flood_keeps_one_init_per_track() {
        let mut seg = StreamSegmenter::with_first_number("live/f", SegmenterConfig::default(), 1);
        let mut tags = Vec::new();
        for i in 0..1000u32 {
            let asc: &[u8] = if i % 2 == 0 {
                &[0x11, 0x90]
            } else {
                &[0x12, 0x10]
            };
            tags.push((
                MediaKind::Audio,
                0,
                Bytes::from([&[0xaf, 0][..], asc].concat()),
            ));
            tags.push((MediaKind::Video, 0, avc_seq(30 + (i % 2) as u8)));
        }
        feed(&mut seg, &tags);
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let held = (1..=1001)
                .filter(|&id| seg.init(kind, id).is_some())
                .count();
            assert_eq!(held, 1, "{kind:?} init segments held after 1000 switches");
        }
    }

    /// AAC whose timestamps stand still while video advances: the sample
    /// clock runs ahead and must never be pulled back (decode times of a
    /// track only grow; before, this panicked on a subtraction).
    #[test]
    fn stuck_audio_timestamps_never_go_backwards() {
        let mut seg = StreamSegmenter::with_first_number("live/s", SegmenterConfig::default(), 1);
        let mut tags = vec![
            (MediaKind::Video, 0, avc_seq(30)),
            (
                MediaKind::Audio,
                0,
                Bytes::from_static(&[0xaf, 0, 0x11, 0x90]),
            ),
        ];
        // Video runs to 133 ms, then eleven AAC frames (229 ms of samples)
        // all stamped 0; then both run on normally to 6.6 s.
        for i in 0..5u32 {
            tags.push((MediaKind::Video, i * 33, frame(i == 0)));
        }
        for _ in 0..11 {
            tags.push((MediaKind::Audio, 0, aac(&[0x21, 0x10, 0x04, 0x60])));
        }
        for i in 5..200u32 {
            tags.push((MediaKind::Video, i * 33, frame(i % 30 == 0)));
            tags.push((MediaKind::Audio, i * 33, aac(&[0x21, 0x10, 0x04, 0x60])));
        }
        feed(&mut seg, &tags);
        seg.end(SystemTime::now());
        let audio = seg.snapshot().audio.expect("audio segments");
        assert!(audio.segments.len() >= 2, "{:?}", audio.segments);
        for w in audio.segments.windows(2) {
            assert!(
                w[1].start >= w[0].start + w[0].duration,
                "audio segments overlap: {:?}",
                audio.segments
            );
        }
    }

    /// An explicit AAC rate of 2^24 - 1 Hz with an RTMP clock leaping by
    /// 2^31 - 1 ms per tag: no arithmetic overflow, the stream ends cleanly.
    #[test]
    fn absurd_timescale_and_time_leaps_do_not_overflow() {
        let mut seg = StreamSegmenter::with_first_number("live/o", SegmenterConfig::default(), 1);
        // AAC-LC, explicit rate 0xFFFFFF, stereo.
        let asc = [0xaf, 0, 0x17, 0xff, 0xff, 0xff, 0x90];
        let mut tags = vec![
            (MediaKind::Video, 0, avc_seq(30)),
            (MediaKind::Audio, 0, Bytes::copy_from_slice(&asc)),
        ];
        for i in 0..600u32 {
            let ts = i.wrapping_mul(0x7FFF_FFFF);
            tags.push((MediaKind::Video, ts, frame(true)));
            tags.push((MediaKind::Audio, ts, aac(&[1, 2, 3, 4])));
        }
        feed(&mut seg, &tags);
        seg.end(SystemTime::now());
        let snap = seg.snapshot();
        assert!(snap.video.is_some_and(|v| !v.segments.is_empty()));
    }
}
