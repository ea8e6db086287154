//! MPEG-TS in (`media::ts`) against two references.
//!
//! - castgate's own muxer (`egress::ts`, what an SRT relay sends): events
//!   muxed to TS and demuxed again come back with equal configurations
//!   (`same_decoding`) and equal frames (bytes, decode time, composition
//!   offset, keyframe flag), for H.264 + AAC, HEVC + AC-3, H.264 + Opus and
//!   H.264 + MP3.
//! - FFmpeg 5.1 (Debian's, the encoder a publisher runs): a TS it writes
//!   (libx264 or libx265, and AAC) is demuxed, written back out as FLV or
//!   CMAF, and that decodes to the same pictures and sound, frame for
//!   frame (`framemd5`), as the TS itself. A missing ffmpeg fails them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use castgate::egress::ts::TsMuxer;
use castgate::media::flv::writer::TagWriter;
use castgate::media::flv::Ingest;
use castgate::media::ts::{DemuxLimits, DemuxStats, TsDemuxer, Warning};
use castgate::media::{
    aac, flv_file, hevc, opus, Codec, CodecConfig, Frame, MediaKind, Mp3Config, OpusRecord,
    StreamEvent,
};
use castgate::package::cmaf;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/media/flv/testdata")
        .join(name)
}

/// One track: its configuration and frames.
#[derive(Clone, Debug)]
struct Track {
    config: CodecConfig,
    frames: Vec<Frame>,
}

/// The tracks the FLV ingest makes of a file FFmpeg 9 wrote.
fn read_flv(name: &str) -> (Option<Track>, Option<Track>) {
    let data = Bytes::from(std::fs::read(testdata(name)).unwrap());
    let mut ingest = Ingest::new();
    let mut events = Vec::new();
    for tag in flv_file::read_tags(&data).unwrap() {
        let kind = match tag.tag_type {
            flv_file::TAG_VIDEO => MediaKind::Video,
            flv_file::TAG_AUDIO => MediaKind::Audio,
            _ => continue,
        };
        ingest
            .media(kind, tag.timestamp, tag.body, |e| events.push(e))
            .unwrap();
    }
    let tracks = split(&events);
    (tracks.0.into_iter().next(), tracks.1.into_iter().next())
}

/// Each kind's tracks: a new one per configuration.
fn split(events: &[StreamEvent]) -> (Vec<Track>, Vec<Track>) {
    let (mut video, mut audio): (Vec<Track>, Vec<Track>) = (Vec::new(), Vec::new());
    for e in events {
        match e {
            StreamEvent::Config(c) => {
                let list = match c.kind() {
                    MediaKind::Video => &mut video,
                    MediaKind::Audio => &mut audio,
                };
                list.push(Track {
                    config: (**c).clone(),
                    frames: Vec::new(),
                });
            }
            StreamEvent::Frame(f) => {
                let list = match f.kind() {
                    MediaKind::Video => &mut video,
                    MediaKind::Audio => &mut audio,
                };
                list.last_mut()
                    .expect("a frame after its configuration")
                    .frames
                    .push(f.clone());
            }
            _ => {}
        }
    }
    (video, audio)
}

/// The events a publisher of these tracks sends: configurations, then the
/// frames in decode order (video first at equal times).
fn publish(video: &Track, audio: &Track) -> Vec<StreamEvent> {
    let mut events = vec![
        StreamEvent::Config(Arc::new(video.config.clone())),
        StreamEvent::Config(Arc::new(audio.config.clone())),
    ];
    let mut frames: Vec<&Frame> = video.frames.iter().chain(&audio.frames).collect();
    frames.sort_by_key(|f| (f.dts, f.kind() == MediaKind::Audio));
    events.extend(frames.into_iter().map(|f| StreamEvent::Frame(f.clone())));
    events
}

fn mux(events: &[StreamEvent]) -> Vec<u8> {
    let mut m = TsMuxer::new();
    let mut out = Vec::new();
    for e in events {
        m.push(e);
        for msg in m.take_messages(false) {
            out.extend_from_slice(&msg);
        }
    }
    for msg in m.take_messages(true) {
        out.extend_from_slice(&msg);
    }
    assert_eq!(m.stats.dropped, 0, "{:?}", m.stats);
    out
}

/// `ts` through the demuxer in SRT-sized chunks (7 packets).
fn demux(ts: &[u8], base_ms: i64) -> (Vec<StreamEvent>, DemuxStats, Vec<Warning>) {
    let mut d = TsDemuxer::new(DemuxLimits::default()).with_base_ms(base_ms);
    let mut events = Vec::new();
    for chunk in ts.chunks(1316) {
        d.push(chunk, |e| events.push(e));
    }
    d.finish(|e| events.push(e));
    let stats = *d.stats();
    (events, stats, d.take_warnings())
}

/// Muxes the two tracks with `egress::ts`, demuxes them, and checks that
/// what comes out is what went in.
fn assert_round_trip(video: &Track, audio: &Track) {
    let events = publish(video, audio);
    let first_dts = video.frames[0].dts.min(audio.frames[0].dts);
    let (out, stats, warnings) = demux(&mux(&events), first_dts);
    assert_eq!(warnings, [], "{stats:?}");
    assert_eq!(
        (stats.cc_errors, stats.dropped_pes, stats.dropped_frames),
        (0, 0, 0)
    );
    assert_eq!(
        (stats.discontinuities, stats.repairs, stats.resyncs),
        (0, 0, 0)
    );
    let (got_video, got_audio) = split(&out);
    for (want, got) in [(video, got_video), (audio, got_audio)] {
        let codec = want.config.codec();
        assert_eq!(got.len(), 1, "{codec}: one configuration");
        let got = &got[0];
        assert!(
            got.config.same_decoding(&want.config),
            "{codec}:\n got {:?}\nwant {:?}",
            got.config,
            want.config
        );
        assert_eq!(got.frames.len(), want.frames.len(), "{codec}");
        for (i, (g, w)) in got.frames.iter().zip(&want.frames).enumerate() {
            assert_eq!(g, w, "{codec} frame {i}");
        }
    }
}

fn aac_track(frames: usize) -> Track {
    let config = CodecConfig::Aac(
        aac::parse_audio_specific_config(Bytes::from_static(&[0x11, 0x90])).unwrap(),
    );
    let frames = (0..frames)
        .map(|i| Frame {
            codec: Codec::Aac,
            // 1024 samples at 48 kHz, on the millisecond clock.
            dts: (i as i64 * 1024 * 1000) / 48_000,
            cts: 0,
            keyframe: true,
            data: Bytes::from(vec![0x20 | (i % 7) as u8; 150 + (i * 37) % 400]),
        })
        .collect();
    Track { config, frames }
}

/// x264 (FFmpeg 9) video: 5 frames at 10 fps, a keyframe first.
fn x264() -> Track {
    let (video, _) = read_flv("h264_flac.flv");
    let video = video.expect("H.264 in h264_flac.flv");
    assert_eq!(video.config.codec(), Codec::H264);
    video
}

#[test]
fn h264_and_aac_round_trip() {
    assert_round_trip(&x264(), &aac_track(24));
}

/// x265's parameter sets (426x240 Main) in the record FFmpeg writes.
const HEVC_RECORD: &str = "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002b42010101600000030090000003000003003ca00d880f1c9e5959a4932bc05a020000030002000003003c1022000100074401c172b46240";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Length-prefixed NAL units.
fn nals(units: &[Vec<u8>]) -> Bytes {
    let mut out = Vec::new();
    for u in units {
        out.extend_from_slice(&(u.len() as u32).to_be_bytes());
        out.extend_from_slice(u);
    }
    out.into()
}

/// HEVC at 25 fps: an IDR every 10 frames, TRAIL pictures with B-frame
/// composition offsets between, a prefix SEI on the keyframes, one
/// picture of 6 KB (many packets). The record is one castgate rebuilds
/// from the parameter sets a TS carries (VPS, SPS, PPS): FFmpeg's, as
/// `media::hevc`'s tests show.
fn hevc_track() -> Track {
    let config =
        CodecConfig::Hevc(hevc::parse_decoder_config(Bytes::from(unhex(HEVC_RECORD))).unwrap());
    let body = |header: [u8; 2], len: usize, seed: usize| {
        let mut u = header.to_vec();
        u.extend((0..len).map(|i| ((i * 7 + seed) % 253) as u8 + 1));
        u
    };
    let frames = (0..30)
        .map(|i: usize| {
            let key = i.is_multiple_of(10);
            let units = if key {
                vec![
                    body([0x4e, 0x01], 20, i),                               // prefix SEI
                    body([0x26, 0x01], if i == 10 { 6000 } else { 700 }, i), // IDR_W_RADL
                ]
            } else {
                vec![body([0x02, 0x01], 100 + i * 13, i)] // TRAIL_R
            };
            Frame {
                codec: Codec::Hevc,
                dts: i as i64 * 40,
                cts: if key { 80 } else { [120, 0, 40][i % 3] },
                keyframe: key,
                data: nals(&units),
            }
        })
        .collect();
    Track { config, frames }
}

#[test]
fn hevc_and_ac3_round_trip() {
    let (_, ac3) = read_flv("av1_ac3.flv");
    let ac3 = ac3.expect("AC-3 in av1_ac3.flv");
    assert_eq!(ac3.config.codec(), Codec::Ac3);
    assert_round_trip(&hevc_track(), &ac3);
}

#[test]
fn h264_and_opus_round_trip() {
    let (_, opus_track) = read_flv("hevc_opus.flv");
    let mut opus_track = opus_track.expect("Opus in hevc_opus.flv");
    let CodecConfig::Opus(o) = &opus_track.config else {
        panic!("{:?}", opus_track.config)
    };
    // MPEG-TS has no pre-skip field and `egress::ts` writes no start trim:
    // everything else of FFmpeg's OpusHead must come back.
    assert_eq!(o.head.pre_skip, 312);
    let mut record = o.record.to_vec();
    record[10..12].copy_from_slice(&[0, 0]);
    opus_track.config = CodecConfig::Opus(OpusRecord {
        head: opus::parse_opus_head(&record).unwrap(),
        record: record.into(),
    });
    assert_round_trip(&x264(), &opus_track);
}

#[test]
fn h264_and_mp3_round_trip() {
    // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, stereo: 417-byte frames
    // (418 with the padding bit) of 1152 samples.
    let frames = (0..20)
        .map(|i: usize| {
            let padded = i % 3 == 1;
            let mut f = vec![0xff, 0xfb, if padded { 0x92 } else { 0x90 }, 0x64];
            f.resize(if padded { 418 } else { 417 }, (i % 200) as u8 + 1);
            Frame {
                codec: Codec::Mp3,
                dts: (i as i64 * 1152 * 1000) / 44_100,
                cts: 0,
                keyframe: true,
                data: f.into(),
            }
        })
        .collect();
    let mp3 = Track {
        config: CodecConfig::Mp3(Mp3Config {
            sample_rate: 44_100,
            channels: 2,
            flv_flags: 0x2f,
        }),
        frames,
    };
    assert_round_trip(&x264(), &mp3);
}

// ---- FFmpeg as the oracle ----

/// Debian's ffmpeg: these tests need it and fail without it.
fn ffmpeg() -> &'static str {
    let found = Command::new("ffmpeg").arg("-version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "ffmpeg is required for the MPEG-TS oracle tests (Debian: apt-get install ffmpeg)"
    );
    "ffmpeg"
}

fn run_ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new(ffmpeg())
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One decoded frame: its presentation time (ms, as in the file), size
/// and MD5.
#[derive(Debug)]
struct Decoded {
    pts_ms: f64,
    size: String,
    md5: String,
}

/// Every decoded frame of one stream of `file` (`selector`: `v` or `a`),
/// timestamps as the file has them (`-copyts`).
fn framemd5(file: &Path, selector: &str) -> Vec<Decoded> {
    let map = format!("0:{selector}");
    let out = run_ffmpeg(&[
        "-copyts",
        "-i",
        file.to_str().unwrap(),
        "-map",
        &map,
        "-fps_mode",
        "passthrough",
        "-f",
        "framemd5",
        "-",
    ]);
    let text = String::from_utf8(out).unwrap();
    // "#tb 0: 1/90000"
    let tb = text
        .lines()
        .find_map(|l| l.strip_prefix("#tb 0: "))
        .and_then(|t| t.split_once('/'))
        .map(|(n, d)| n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap())
        .expect("a time base");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            assert_eq!(fields.len(), 6, "{l}");
            Decoded {
                pts_ms: fields[2].parse::<f64>().unwrap() * tb * 1000.0,
                size: fields[4].to_string(),
                md5: fields[5].to_string(),
            }
        })
        .collect()
}

/// The copies (`video`, `audio`: castgate's events written out) decode to
/// the same frames as the TS, at the same times: each frame's time from
/// the first picture's, so audio/video sync counts too (castgate's clock
/// is whole milliseconds, hence 1 ms of slack).
fn assert_same_decode(ts: &Path, video: &Path, audio: &Path) {
    let (ts_video, copy_video) = (framemd5(ts, "v"), framemd5(video, "v"));
    let origins = (ts_video[0].pts_ms, copy_video[0].pts_ms);
    let pairs = [
        ("video", ts_video, copy_video),
        ("audio", framemd5(ts, "a"), framemd5(audio, "a")),
    ];
    for (what, want, got) in pairs {
        assert!(want.len() > 40, "{what}: {} frames", want.len());
        assert_eq!(got.len(), want.len(), "{what}: frame count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!((&g.size, &g.md5), (&w.size, &w.md5), "{what}: frame {i}");
            let (g_ms, w_ms) = (g.pts_ms - origins.1, w.pts_ms - origins.0);
            assert!(
                (g_ms - w_ms).abs() <= 1.001,
                "{what}: frame {i} at {g_ms} ms, not {w_ms} ms"
            );
        }
    }
}

/// FFmpeg's TS of 2 s of `testsrc2` and a sine, with `video` args.
fn ffmpeg_ts(dir: &Path, video: &[&str]) -> PathBuf {
    let path = dir.join("source.ts");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(video);
    args.extend_from_slice(&["-c:a", "aac", "-b:a", "96k", "-f", "mpegts"]);
    args.push(path.to_str().unwrap());
    run_ffmpeg(&args);
    path
}

/// The TS's events, checked clean.
fn demux_file(ts: &Path) -> Vec<StreamEvent> {
    let (events, stats, warnings) = demux(&std::fs::read(ts).unwrap(), 0);
    assert_eq!(warnings, [], "{stats:?}");
    assert_eq!(
        (
            stats.cc_errors,
            stats.dropped_pes,
            stats.dropped_frames,
            stats.resyncs
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.discontinuities, 0);
    events
}

/// The events as an FLV file, through the writer RTMP play-out uses
/// (legacy codecs: H.264, AAC, MP3; others withheld).
fn write_flv(events: &[StreamEvent], path: &Path) {
    let mut w = TagWriter::new();
    let mut out = flv_file::header(true, true).to_vec();
    for e in events {
        for tag in w.write(e) {
            out.extend_from_slice(&flv_file::encode_tag(&tag));
        }
    }
    std::fs::write(path, out).unwrap();
}

/// A video track as one CMAF file: init segment and one fragment.
fn write_cmaf(track: &Track, path: &Path) {
    let scale = i64::from(cmaf::timescale(&track.config));
    let ticks = |ms: i64| ms * scale / 1000;
    let samples: Vec<cmaf::Sample> = track
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let next = track.frames.get(i + 1).map_or(f.dts + 40, |n| n.dts);
            cmaf::Sample {
                duration: (ticks(next) - ticks(f.dts)) as u32,
                cts_offset: ticks(i64::from(f.cts)) as i32,
                keyframe: f.keyframe,
                data: cmaf::sample_data(&track.config, &f.data),
            }
        })
        .collect();
    let mut out = cmaf::init_segment(1, &track.config).unwrap().to_vec();
    let start = ticks(track.frames[0].dts) as u64;
    let fragment = cmaf::fragment_for(&track.config, 1, 1, start, &samples).unwrap();
    out.extend_from_slice(&fragment.to_bytes());
    std::fs::write(path, out).unwrap();
}

#[test]
fn ffmpeg_h264_and_aac_decode_the_same_through_flv() {
    let dir = tempfile::tempdir().unwrap();
    let ts = ffmpeg_ts(
        dir.path(),
        &[
            "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-bf", "2",
        ],
    );
    let events = demux_file(&ts);
    let (video, audio) = split(&events);
    assert_eq!((video.len(), audio.len()), (1, 1), "one configuration each");
    assert_eq!(video[0].frames.len(), 50, "2 s at 25 fps");
    assert!(video[0].frames.iter().any(|f| f.cts > 0), "B-frames");
    let flv = dir.path().join("out.flv");
    write_flv(&events, &flv);
    assert_same_decode(&ts, &flv, &flv);
}

#[test]
fn ffmpeg_hevc_and_aac_decode_the_same_through_cmaf_and_flv() {
    let dir = tempfile::tempdir().unwrap();
    let ts = ffmpeg_ts(
        dir.path(),
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=25:min-keyint=25:bframes=2:log-level=error",
        ],
    );
    let events = demux_file(&ts);
    let (video, audio) = split(&events);
    assert_eq!((video.len(), audio.len()), (1, 1), "one configuration each");
    let hevc = &video[0];
    assert_eq!(hevc.frames.len(), 50);
    assert!(hevc.config.codec_string().starts_with("hvc1.1.6.L"));
    assert_eq!(hevc.config.picture_size(), (320, 180));
    // Debian's ffmpeg cannot put HEVC in FLV: the video as CMAF, the
    // audio as FLV (the writer withholds HEVC from a legacy output).
    let mp4 = dir.path().join("video.mp4");
    write_cmaf(hevc, &mp4);
    let flv = dir.path().join("audio.flv");
    write_flv(&events, &flv);
    assert_same_decode(&ts, &mp4, &flv);
}

/// (pts in ms, size) of the packets FFmpeg reads from one stream.
fn ffprobe_packets(file: &Path, selector: &str) -> Vec<(f64, usize)> {
    let found = Command::new("ffprobe").arg("-version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "ffprobe is required for the MPEG-TS oracle tests (Debian: apt-get install ffmpeg)"
    );
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector, "-show_entries"])
        .args(["packet=pts_time,size", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Side data makes lines of its own, and trailing commas.
        .filter_map(
            |l| match l.split(',').filter(|f| !f.is_empty()).collect::<Vec<_>>()[..] {
                [pts, size, ..] => Some((pts.parse::<f64>().ok()? * 1000.0, size.parse().ok()?)),
                _ => None,
            },
        )
        .collect()
}

/// FFmpeg's TS with each audio codec it writes beside H.264 (MP3, AC-3,
/// E-AC-3, Opus): castgate takes the same frames as FFmpeg's own demuxer
/// and parsers, the same bytes (Opus without its control header), at the
/// same times.
#[test]
fn ffmpeg_audio_codecs_come_out_frame_for_frame() {
    let dir = tempfile::tempdir().unwrap();
    for (codec, args) in [
        (Codec::Mp3, &["-c:a", "libmp3lame", "-b:a", "64k"][..]),
        (Codec::Ac3, &["-c:a", "ac3", "-b:a", "96k"]),
        (Codec::Eac3, &["-c:a", "eac3", "-b:a", "96k"]),
        (Codec::Opus, &["-c:a", "libopus", "-b:a", "32k"]),
    ] {
        let ts = dir.path().join(format!("{}.ts", codec.id()));
        let mut a = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=128x72:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-f", "mpegts", ts.to_str().unwrap()]);
        run_ffmpeg(&a);
        let events = demux_file(&ts);
        let (_, audio) = split(&events);
        assert_eq!(audio.len(), 1, "{codec}: one configuration");
        assert_eq!(audio[0].config.codec(), codec);
        if let CodecConfig::Opus(o) = &audio[0].config {
            // FFmpeg trims libopus's look-ahead from the first packet: the
            // pre-skip its OpusHead says in FLV and MP4.
            assert_eq!(
                (o.head.pre_skip, o.head.channels),
                (312, 1),
                "the sine is mono"
            );
        }
        let got = &audio[0].frames;
        let want = ffprobe_packets(&ts, "a");
        assert!(want.len() > 20, "{codec}: {} packets", want.len());
        assert_eq!(got.len(), want.len(), "{codec}: frame count");
        for (i, (g, (pts, size))) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.data.len(), *size, "{codec}: frame {i}");
            let (g_ms, w_ms) = ((g.dts - got[0].dts) as f64, pts - want[0].0);
            assert!(
                (g_ms - w_ms).abs() <= 1.001,
                "{codec}: frame {i} at {g_ms}, not {w_ms}"
            );
        }
    }
}
