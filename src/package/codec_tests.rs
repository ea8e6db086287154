//! The Enhanced RTMP codecs through the packager: HEVC, AV1, VP9, Opus,
//! FLAC, AC-3 and E-AC-3, from FLV tags as a publisher sends them to init
//! segments and media segments, checked two ways: the boxes parsed back
//! with mp4-atom, and every track decoded by Debian's ffmpeg 5.1 (packets
//! identical to the publisher's frames, pictures identical to FFmpeg 9's
//! decode of the source). A missing ffmpeg fails these tests.
//!
//! The sources in `testdata/` were made once with FFmpeg 9.0.2 (the static
//! build of PyPI `imageio-ffmpeg`), from `-f lavfi -i
//! testsrc2=size=128x72:rate=10 -f lavfi -i
//! sine=frequency=440:sample_rate=48000 -t 2 -f flv`:
//!
//! - `hevc_opus.flv`: `-c:v libx265 -preset ultrafast -x265-params
//!   keyint=10:min-keyint=10:bframes=2 -c:a libopus -b:a 24k -ac 2`
//! - `av1_ac3.flv`: `-c:v libsvtav1 -preset 11 -g 10 -svtav1-params
//!   lp=1:color-primaries=9:transfer-characteristics=18:matrix-coefficients=9
//!   -c:a ac3 -b:a 96k -ac 2` (BT.2020 HLG)
//! - `vp9_flac.flv`: `-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 10
//!   -b:v 100k -color_primaries bt2020 -color_trc smpte2084 -colorspace
//!   bt2020nc -c:a flac -ac 1` (only the matrix reaches FFmpeg's `vpcC`)
//! - `eac3.flv`: the sine alone, `-c:a eac3 -b:a 96k -ac 2`
//!
//! `*.video.framemd5` and `vp9_flac.audio.framemd5` hold FFmpeg 9's
//! decode of each source (`-map 0:v -f framemd5`; FLAC is lossless, so its
//! decode is exact too): what the packaged tracks must decode to. The
//! lossy audio decoders work in floating point, so Opus, AC-3 and E-AC-3
//! are checked by their packets and decoded durations instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use mp4_atom::{AnySampleGroupEntry, Codec as Entry, Colr, Decode, FourCC, Ftyp, Moof, Moov};
use sha2::{Digest, Sha256};

use super::cmaf;
use super::model::{TrackInfo, VideoRange};
use super::segmenter::{SegmenterConfig, StreamSegmenter};
use crate::hub::StreamEvent;
use crate::media::flv::ex::{self, AudioPacket, ExVideoBody, FourCc, VideoPacket};
use crate::media::flv::Ingest;
use crate::media::{
    ac3, av1, flac, flv_file, hevc, opus, vp9, CodecConfig, FlacRecord, Frame, MediaKind,
    OpusRecord, Vp9Record,
};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/package/testdata")
        .join(name)
}

/// A track of a source file: its configuration and its frames.
struct Track {
    config: CodecConfig,
    frames: Vec<Frame>,
}

struct Source {
    video: Option<Track>,
    audio: Option<Track>,
}

fn video_config(fourcc: FourCc, record: Bytes) -> CodecConfig {
    match fourcc {
        FourCc::HEVC => CodecConfig::Hevc(hevc::parse_decoder_config(record).unwrap()),
        FourCc::AV1 => CodecConfig::Av1(av1::parse_codec_config(record).unwrap()),
        FourCc::VP9 => CodecConfig::Vp9(Vp9Record {
            config: vp9::parse_vpcc(&record).unwrap(),
            record,
            color_info: None,
        }),
        other => panic!("video {other}"),
    }
}

fn audio_config(fourcc: FourCc, record: Bytes) -> CodecConfig {
    match fourcc {
        FourCc::OPUS => CodecConfig::Opus(OpusRecord {
            head: opus::parse_opus_head(&record).unwrap(),
            record,
        }),
        FourCc::FLAC => CodecConfig::Flac(FlacRecord {
            config: flac::parse_sequence_header(record.clone()).unwrap(),
            record,
        }),
        other => panic!("audio sequence start for {other}"),
    }
}

/// AC-3 and E-AC-3 have no sequence start: the first frame configures.
fn sync_frame_config(fourcc: FourCc, frame: &[u8]) -> CodecConfig {
    match fourcc {
        FourCc::AC3 => match ac3::parse_sync_frame(frame).unwrap() {
            ac3::SyncFrame::Ac3(h) => CodecConfig::Ac3(h),
            other => panic!("{other:?}"),
        },
        FourCc::EAC3 => CodecConfig::Eac3(ac3::parse_eac3_access_unit(frame).unwrap()),
        other => panic!("audio frames before a sequence start for {other}"),
    }
}

/// The tracks of an Enhanced RTMP FLV file, as the ingest makes them from
/// the same tags (`media::flv::ex` for the structure, the codec parsers
/// for the records).
fn read_flv(name: &str) -> Source {
    let data = Bytes::from(std::fs::read(testdata(name)).unwrap());
    let (mut video, mut audio): (Option<Track>, Option<Track>) = (None, None);
    for tag in flv_file::read_tags(&data).unwrap() {
        let dts = i64::from(tag.timestamp);
        match tag.tag_type {
            flv_file::TAG_VIDEO => {
                assert!(tag.body[0] & 0x80 != 0, "an Enhanced RTMP video tag");
                let v = ex::parse_video(tag.body).unwrap();
                let ExVideoBody::Tracks(tracks) = v.body else {
                    continue;
                };
                for t in tracks {
                    match t.packet {
                        VideoPacket::SequenceStart(record) => {
                            let config = video_config(t.fourcc, record);
                            video = Some(Track {
                                config,
                                frames: Vec::new(),
                            });
                        }
                        VideoPacket::CodedFrames { cts, data } => {
                            let track = video.as_mut().expect("a sequence start first");
                            track.frames.push(Frame {
                                codec: track.config.codec(),
                                dts,
                                cts,
                                keyframe: v.frame_type == 1,
                                data,
                            });
                        }
                        _ => {}
                    }
                }
            }
            flv_file::TAG_AUDIO => {
                assert_eq!(tag.body[0] >> 4, 9, "an Enhanced RTMP audio tag");
                for t in ex::parse_audio(tag.body).unwrap().tracks {
                    match t.packet {
                        // FFmpeg sends an empty one for AC-3 and E-AC-3:
                        // their first frame configures.
                        AudioPacket::SequenceStart(record)
                            if matches!(t.fourcc, FourCc::AC3 | FourCc::EAC3) =>
                        {
                            assert!(record.is_empty(), "{record:?}");
                        }
                        // FFmpeg's trailer repeats FLAC's sequence start
                        // with the totals and MD5 filled in: no new track.
                        AudioPacket::SequenceStart(_) if audio.is_some() => {}
                        AudioPacket::SequenceStart(record) => {
                            let config = audio_config(t.fourcc, record);
                            audio = Some(Track {
                                config,
                                frames: Vec::new(),
                            });
                        }
                        AudioPacket::CodedFrames(data) => {
                            let track = audio.get_or_insert_with(|| Track {
                                config: sync_frame_config(t.fourcc, &data),
                                frames: Vec::new(),
                            });
                            track.frames.push(Frame {
                                codec: track.config.codec(),
                                dts,
                                cts: 0,
                                keyframe: true,
                                data,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Source { video, audio }
}

/// One packaged track: its description, init segment and media segments.
struct Packaged {
    info: TrackInfo,
    init: Bytes,
    segments: Vec<Bytes>,
}

impl Packaged {
    /// Init and segments in one file, as a player appends them.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let mut all = BytesMut::from(&self.init[..]);
        for s in &self.segments {
            all.extend_from_slice(s);
        }
        let path = dir.join(name);
        std::fs::write(&path, &all).unwrap();
        path
    }
}

/// Every event of `src` through a segmenter, in time order as a publisher
/// sends them (see [`package_events`]).
fn package(src: &Source) -> (Option<Packaged>, Option<Packaged>) {
    let mut events = Vec::new();
    let mut frames: Vec<&Frame> = Vec::new();
    for t in [&src.video, &src.audio].into_iter().flatten() {
        events.push(StreamEvent::Config(Arc::new(t.config.clone())));
        frames.extend(&t.frames);
    }
    // Stable: video before audio at equal times, each in its own order.
    frames.sort_by_key(|f| f.dts);
    events.extend(frames.into_iter().map(|f| StreamEvent::Frame(f.clone())));
    package_events(&events, false)
}

/// The events the ingest makes of a file's tags, as they would arrive.
fn ingest(name: &str) -> Vec<StreamEvent> {
    let data = Bytes::from(std::fs::read(testdata(name)).unwrap());
    let mut ingest = Ingest::new();
    let mut events = Vec::new();
    for tag in flv_file::read_tags(&data).unwrap() {
        let kind = match tag.tag_type {
            flv_file::TAG_AUDIO => MediaKind::Audio,
            flv_file::TAG_VIDEO => MediaKind::Video,
            _ => continue,
        };
        if let Err(e) = ingest.media(kind, tag.timestamp, tag.body, |e| events.push(e)) {
            panic!("{name}: {e}");
        }
    }
    events
}

/// `events` through a segmenter (half-second segments, so the two seconds
/// make several; in low latency, each a run of small CMAF chunks); then
/// the stream ends.
fn segmenter(events: &[StreamEvent], low_latency: bool) -> StreamSegmenter {
    let config = SegmenterConfig {
        target: 0.5,
        part_target: 0.25,
        window: 100,
        extra: 0,
        aligned: false,
        low_latency,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut seg = StreamSegmenter::with_first_number("live/codecs", config, 1);
    for e in events {
        seg.push(e, now);
    }
    seg.end(now);
    assert_eq!(seg.stats.write_errors, 0, "{:?}", seg.stats);
    assert_eq!(seg.stats.unsupported_frames, 0, "{:?}", seg.stats);
    seg
}

/// The tracks [`segmenter`] made of `events`.
fn package_events(
    events: &[StreamEvent],
    low_latency: bool,
) -> (Option<Packaged>, Option<Packaged>) {
    let seg = segmenter(events, low_latency);
    let snapshot = seg.snapshot();
    let take = |kind: MediaKind| {
        let t = match kind {
            MediaKind::Video => snapshot.video.as_ref(),
            MediaKind::Audio => snapshot.audio.as_ref(),
        }?;
        assert_eq!(t.inits.len(), 1);
        let segments: Vec<Bytes> = t
            .segments
            .iter()
            .map(|s| seg.segment(kind, s.number).unwrap().concat().into())
            .collect();
        assert!(
            segments.len() >= 2,
            "{kind:?}: {} segments: {:?}",
            segments.len(),
            t.segments
        );
        Some(Packaged {
            info: t.info.clone(),
            init: seg.init(kind, t.inits[0]).unwrap(),
            segments,
        })
    };
    (take(MediaKind::Video), take(MediaKind::Audio))
}

// ---- the boxes, parsed back ----

fn parse_init(init: &Bytes) -> (Ftyp, Moov) {
    let mut b = &init[..];
    let ftyp = Ftyp::decode(&mut b).unwrap();
    let moov = Moov::decode(&mut b).unwrap();
    assert!(b.is_empty());
    (ftyp, moov)
}

fn brands(ftyp: &Ftyp) -> Vec<String> {
    ftyp.compatible_brands
        .iter()
        .map(|b| b.to_string())
        .collect()
}

fn entry(moov: &Moov) -> &Entry {
    let codecs = &moov.trak[0].mdia.minf.stbl.stsd.codecs;
    assert_eq!(codecs.len(), 1);
    &codecs[0]
}

/// The body of child box `kind` of the sample entry, found in the raw
/// bytes (what the publisher's record must be, byte for byte).
fn entry_child<'a>(init: &'a [u8], entry: &[u8; 4], kind: &[u8; 4]) -> &'a [u8] {
    let at = init
        .windows(4)
        .position(|w| w == entry)
        .expect("the sample entry");
    let within = &init[at..];
    let k = within.windows(4).position(|w| w == kind).expect("the box");
    let size = u32::from_be_bytes(within[k - 4..k].try_into().unwrap()) as usize;
    &within[k + 4..k - 4 + size]
}

/// Every `moof` of a segment with the sample sizes of its `mdat`.
fn moofs(segment: &Bytes) -> Vec<Moof> {
    let mut b = &segment[..];
    let mut out = Vec::new();
    while !b.is_empty() {
        let moof = Moof::decode(&mut b).unwrap();
        let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        assert_eq!(&b[4..8], b"mdat");
        let samples: u32 = moof.traf[0].trun[0]
            .samples
            .iter()
            .map(|e| e.size.unwrap())
            .sum();
        assert_eq!(size, samples as usize + 8);
        b = &b[size..];
        out.push(moof);
    }
    out
}

/// Sample durations of a track, in order, from its segments' `trun`s.
fn durations(p: &Packaged) -> Vec<u32> {
    p.segments
        .iter()
        .flat_map(moofs)
        .flat_map(|m| {
            m.traf[0].trun[0]
                .samples
                .iter()
                .map(|e| e.duration.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

// ---- ffmpeg as the oracle ----

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (these tests need Debian's ffmpeg and ffprobe)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} failed: {stderr}");
    assert_eq!(stderr, "", "{program} {args:?} complained");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ffprobe`'s view of the one stream: `key=value|...`.
fn probe_stream(path: &Path, entries: &str) -> String {
    let p = path.to_str().unwrap();
    let entries = format!("stream={entries}");
    run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            &entries,
            "-of",
            "compact=p=0",
            p,
        ],
    )
    .trim()
    .trim_end_matches('|')
    .to_string()
}

/// SHA-256 of every packet as ffmpeg demuxes it (no decoding).
fn packet_hashes(path: &Path) -> Vec<String> {
    let p = path.to_str().unwrap();
    let args = [
        "-nostdin",
        "-v",
        "error",
        "-i",
        p,
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "framehash",
        "-hash",
        "sha256",
        "-",
    ];
    hash_lines(&run("ffmpeg", &args))
        .into_iter()
        .map(|(_, _, h)| h)
        .collect()
}

/// (duration, size, hash) of each line of a framehash/framemd5 output.
fn hash_lines(out: &str) -> Vec<(i64, usize, String)> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            (
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5].to_string(),
            )
        })
        .collect()
}

/// The decoded frames: (duration, size, md5) of each picture or block of
/// PCM, as `-f framemd5` prints them.
fn decoded(path: &Path) -> Vec<(i64, usize, String)> {
    let p = path.to_str().unwrap();
    let args = [
        "-nostdin",
        "-v",
        "error",
        "-i",
        p,
        "-map",
        "0",
        "-fps_mode",
        "passthrough",
        "-f",
        "framemd5",
        "-",
    ];
    hash_lines(&run("ffmpeg", &args))
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The md5 of each frame in a stored framemd5 file.
fn expected_md5(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(testdata(name)).unwrap();
    hash_lines(&text).into_iter().map(|(_, _, m)| m).collect()
}

/// What every track must pass: its packets are the publisher's frames
/// byte for byte, in order (from the first at or after `from` ms: audio
/// before the first video keyframe has no segment), but for what the
/// sample format leaves out (AV1's temporal delimiters).
fn assert_packets_are_the_frames(path: &Path, track: &Track, from: i64) {
    let want: Vec<String> = track
        .frames
        .iter()
        .filter(|f| f.dts >= from && !f.data.is_empty())
        .map(|f| sha256(&cmaf::sample_data(&track.config, &f.data)))
        .collect();
    assert!(want.len() > 15);
    assert_eq!(packet_hashes(path), want, "{}", path.display());
}

/// Decodes to exactly what FFmpeg 9 decoded from the source.
fn assert_decodes_as(path: &Path, expected: &str) {
    let got: Vec<String> = decoded(path).into_iter().map(|(_, _, m)| m).collect();
    let want = expected_md5(expected);
    assert!(want.len() >= 20, "{expected}");
    assert_eq!(got, want, "{} vs {expected}", path.display());
}

/// The `roll` groups an Opus track must have (Opus-in-ISOBMFF 4.3.6.2):
/// an `sgpd` and an empty `sbgp` in the init segment's sample table, and
/// an `sbgp` in every fragment mapping all its samples to a group.
fn assert_opus_roll_groups(p: &Packaged, moov: &Moov) {
    let stbl = &moov.trak[0].mdia.minf.stbl;
    assert_eq!(stbl.sgpd.len(), 1);
    let sgpd = &stbl.sgpd[0];
    assert_eq!(sgpd.grouping_type, FourCC::new(b"roll"));
    assert_eq!(sgpd.default_length, Some(2));
    let [entry] = &sgpd.entries[..] else {
        panic!("{sgpd:?}")
    };
    // -4 packets of 20 ms: 80 ms.
    assert_eq!(
        entry.entry,
        AnySampleGroupEntry::UnknownGroupingType(FourCC::new(b"roll"), vec![0xff, 0xfc])
    );
    assert_eq!(stbl.sbgp.len(), 1);
    assert!(stbl.sbgp[0].entries.is_empty());
    for moof in p.segments.iter().flat_map(moofs) {
        let traf = &moof.traf[0];
        assert!(traf.sgpd.is_empty(), "20 ms packets use the init's group");
        let [sbgp] = &traf.sbgp[..] else {
            panic!("{traf:?}")
        };
        assert_eq!(sbgp.grouping_type, FourCC::new(b"roll"));
        let count = traf.trun[0].samples.len() as u32;
        assert_eq!(sbgp.entries.len(), 1);
        assert_eq!(
            (
                sbgp.entries[0].sample_count,
                sbgp.entries[0].group_description_index
            ),
            (count, 1)
        );
    }
}

#[test]
fn hevc_and_opus() {
    let src = read_flv("hevc_opus.flv");
    let (video, audio) = package(&src);
    let (video, audio) = (video.unwrap(), audio.unwrap());
    let (vsrc, asrc) = (src.video.as_ref().unwrap(), src.audio.as_ref().unwrap());
    let dir = tempfile::tempdir().unwrap();

    // FFmpeg's FLV muxer marks the record's arrays incomplete, though
    // they hold every parameter set and the frames none: `hvc1`, with the
    // arrays marked complete in the `hvcC` written; the codec string's
    // prefix follows the entry.
    let CodecConfig::Hevc(hevc) = &vsrc.config else {
        panic!()
    };
    assert!(hevc.arrays.iter().all(|a| !a.complete));
    assert_eq!(video.info.codec, "hvc1.1.6.L30.90");
    let (ftyp, moov) = parse_init(&video.init);
    assert_eq!(brands(&ftyp), ["iso6", "cmfc", "mp41"]);
    let Entry::Hvc1(hvc1) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!((hvc1.visual.width, hvc1.visual.height), (128, 72));
    assert_eq!((video.info.width, video.info.height), (128, 72));
    assert_eq!(hvc1.colr, None, "the HEVC VUI is not read");
    let written = entry_child(&video.init, b"hvc1", b"hvcC");
    assert_eq!(written, &hevc.record_complete()[..]);
    let reparsed = crate::media::hevc::parse_decoder_config(written.to_vec().into()).unwrap();
    use crate::media::hevc::{NAL_PPS, NAL_SPS, NAL_VPS};
    for (a, b) in reparsed.arrays.iter().zip(&hevc.arrays) {
        let parameter_set = [NAL_VPS, NAL_SPS, NAL_PPS].contains(&a.nal_unit_type);
        assert_eq!(a.complete, parameter_set || b.complete, "{a:?}");
        assert_eq!(a.units, b.units);
    }
    assert_eq!(reparsed.arrays.len(), hevc.arrays.len());
    let v = video.write(dir.path(), "video.mp4");
    assert_eq!(
        probe_stream(&v, "codec_name,codec_tag_string,profile,width,height"),
        "codec_name=hevc|profile=Main|codec_tag_string=hvc1|width=128|height=72"
    );
    assert_packets_are_the_frames(&v, vsrc, 0);
    assert_decodes_as(&v, "hevc_opus.video.framemd5");

    // Opus: `dOps`, the `Opus` brand, the pre-skip edit, the roll groups,
    // and every packet 20 ms long, from its TOC.
    let CodecConfig::Opus(o) = &asrc.config else {
        panic!()
    };
    assert_eq!(audio.info.codec, "opus");
    assert_eq!((audio.info.timescale, audio.info.channels), (48_000, 2));
    let (ftyp, moov) = parse_init(&audio.init);
    assert!(brands(&ftyp).contains(&"Opus".to_string()));
    let Entry::Opus(opus) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!((opus.audio.channel_count, opus.audio.sample_size), (2, 16));
    assert_eq!(opus.audio.sample_rate.integer(), 48_000);
    assert_eq!(opus.dops.pre_skip, 312);
    assert_eq!(
        entry_child(&audio.init, b"Opus", b"dOps"),
        &o.head.to_dops()[..]
    );
    let elst = moov.trak[0].edts.as_ref().unwrap().elst.as_ref().unwrap();
    assert_eq!(elst.entries.len(), 1);
    assert_eq!(
        (elst.entries[0].segment_duration, elst.entries[0].media_time),
        (0, Some(312))
    );
    assert_opus_roll_groups(&audio, &moov);
    let d = durations(&audio);
    assert_eq!(d.len(), asrc.frames.len());
    assert!(d.iter().all(|&d| d == 960), "{d:?}");
    let a = audio.write(dir.path(), "audio.mp4");
    assert_eq!(
        probe_stream(&a, "codec_name,codec_tag_string,sample_rate,channels"),
        "codec_name=opus|codec_tag_string=Opus|sample_rate=48000|channels=2"
    );
    assert_packets_are_the_frames(&a, asrc, 0);
    // Pre-skip trimmed by the edit, as FFmpeg 9 trims the source. (Opus
    // decodes in floating point: its PCM is not compared bit for bit.)
    let pcm = decoded(&a);
    assert_eq!(pcm.len(), asrc.frames.len());
    assert_eq!(pcm[0].0, 960 - 312);
    assert!(pcm[1..].iter().all(|&(d, _, _)| d == 960));
}

#[test]
fn av1_and_ac3() {
    let src = read_flv("av1_ac3.flv");
    let (video, audio) = package(&src);
    let (video, audio) = (video.unwrap(), audio.unwrap());
    let (vsrc, asrc) = (src.video.as_ref().unwrap(), src.audio.as_ref().unwrap());
    let dir = tempfile::tempdir().unwrap();

    // AV1: `av1C` verbatim, `colr` from the sequence header (BT.2020 HLG),
    // the `av01` brand; HLS says HLG.
    let CodecConfig::Av1(av1) = &vsrc.config else {
        panic!()
    };
    assert_eq!(video.info.codec, "av01.0.00M.08.0.110.09.18.09.0");
    assert_eq!(video.info.video_range, Some(VideoRange::Hlg));
    let (ftyp, moov) = parse_init(&video.init);
    assert_eq!(brands(&ftyp), ["iso6", "cmfc", "mp41", "av01"]);
    let Entry::Av01(av01) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!((av01.visual.width, av01.visual.height), (128, 72));
    assert_eq!(entry_child(&video.init, b"av01", b"av1C"), &av1.record[..]);
    assert_eq!(
        av01.colr,
        Some(Colr::Nclx {
            colour_primaries: 9,
            transfer_characteristics: 18,
            matrix_coefficients: 9,
            full_range_flag: false
        })
    );
    // Without a sequence header in configOBUs the binding requires a
    // `colr` all the same: all unspecified.
    let mut bare = av1.clone();
    bare.sequence_header = None;
    assert_eq!(
        cmaf::colour(&CodecConfig::Av1(bare)),
        Some(cmaf::Colour {
            primaries: 2,
            transfer: 2,
            matrix: 2,
            full_range: false
        })
    );
    let v = video.write(dir.path(), "video.mp4");
    assert_eq!(
        probe_stream(
            &v,
            "codec_name,codec_tag_string,width,height,color_primaries,color_transfer"
        ),
        "codec_name=av1|codec_tag_string=av01|width=128|height=72|\
         color_transfer=arib-std-b67|color_primaries=bt2020"
    );
    // FFmpeg starts each temporal unit with a temporal delimiter; the
    // samples do without (a slice of the frame: nothing is copied).
    let first = &vsrc.frames[0].data;
    assert_eq!(first[..2], [0x12, 0x00]);
    let sample = cmaf::sample_data(&vsrc.config, first);
    assert_eq!(
        (sample.as_ptr(), sample.len()),
        (first[2..].as_ptr(), first.len() - 2)
    );
    assert_packets_are_the_frames(&v, vsrc, 0);
    assert_decodes_as(&v, "av1_ac3.video.framemd5");

    // AC-3: `dac3` from the first sync frame, 1536 samples a frame, the
    // Dolby channel configuration for DASH (L R).
    let CodecConfig::Ac3(h) = &asrc.config else {
        panic!()
    };
    assert_eq!(audio.info.codec, "ac-3");
    assert_eq!(audio.info.dolby_channels, Some(0xa000));
    let (_, moov) = parse_init(&audio.init);
    let Entry::Ac3(ac3) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!(ac3.audio.channel_count, 2);
    assert_eq!(entry_child(&audio.init, b"ac-3", b"dac3"), &h.to_dac3()[..]);
    assert!(moov.trak[0].edts.is_none());
    assert!(durations(&audio).iter().all(|&d| d == 1536));
    let a = audio.write(dir.path(), "audio.mp4");
    assert_eq!(
        probe_stream(&a, "codec_name,codec_tag_string,sample_rate,channels"),
        "codec_name=ac3|codec_tag_string=ac-3|sample_rate=48000|channels=2"
    );
    // The first audio frame (0 ms) is before the first keyframe (5 ms).
    assert_packets_are_the_frames(&a, asrc, vsrc.frames[0].dts);
    let pcm = decoded(&a);
    assert_eq!(pcm.len(), asrc.frames.len() - 1);
    assert!(pcm.iter().all(|&(d, _, _)| d == 1536));
}

#[test]
fn vp9_and_flac() {
    let src = read_flv("vp9_flac.flv");
    let (video, audio) = package(&src);
    let (video, audio) = (video.unwrap(), audio.unwrap());
    let (vsrc, asrc) = (src.video.as_ref().unwrap(), src.audio.as_ref().unwrap());
    let dir = tempfile::tempdir().unwrap();

    // VP9: `vpcC` has no size: it comes from the first keyframe. FFmpeg's
    // `vpcC` has the matrix only (its PQ flags do not reach it), so `colr`
    // says that much and no HDR range is claimed.
    let CodecConfig::Vp9(r) = &vsrc.config else {
        panic!()
    };
    assert_eq!(vsrc.config.picture_size(), (0, 0));
    assert_eq!(video.info.codec, "vp09.00.10.08");
    assert_eq!((video.info.width, video.info.height), (128, 72));
    assert_eq!(video.info.video_range, None);
    let (ftyp, moov) = parse_init(&video.init);
    assert_eq!(brands(&ftyp), ["iso6", "cmfc", "mp41"]);
    let Entry::Vp09(vp09) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!((vp09.visual.width, vp09.visual.height), (128, 72));
    let tkhd = &moov.trak[0].tkhd;
    assert_eq!((tkhd.width.integer(), tkhd.height.integer()), (128, 72));
    assert_eq!(
        entry_child(&video.init, b"vp09", b"vpcC"),
        &r.config.to_vpcc()[..]
    );
    assert_eq!(
        vp09.colr,
        Some(Colr::Nclx {
            colour_primaries: 2,
            transfer_characteristics: 2,
            matrix_coefficients: 9,
            full_range_flag: false
        })
    );
    let v = video.write(dir.path(), "video.mp4");
    assert_eq!(
        probe_stream(
            &v,
            "codec_name,codec_tag_string,profile,width,height,color_space"
        ),
        "codec_name=vp9|profile=Profile 0|codec_tag_string=vp09|width=128|height=72|\
         color_space=bt2020nc"
    );
    assert_packets_are_the_frames(&v, vsrc, 0);
    assert_decodes_as(&v, "vp9_flac.video.framemd5");

    // FLAC: `dfLa`, each sample as long as its frame header says (1024),
    // not the RTMP clock's 21 or 22 ms; lossless, so the PCM is the
    // source's exactly.
    let CodecConfig::Flac(f) = &asrc.config else {
        panic!()
    };
    assert_eq!(audio.info.codec, "fLaC");
    let (_, moov) = parse_init(&audio.init);
    let Entry::Flac(flac) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!((flac.audio.channel_count, flac.audio.sample_size), (1, 16));
    assert_eq!(flac.audio.sample_rate.integer(), 48_000);
    assert_eq!(
        entry_child(&audio.init, b"fLaC", b"dfLa"),
        &f.config.to_dfla()[..]
    );
    let d = durations(&audio);
    assert_eq!(d.len(), asrc.frames.len() - 1, "FFmpeg's empty last frame");
    let (last, rest) = d.split_last().unwrap();
    assert!(rest.iter().all(|&d| d == 1024), "{d:?}");
    assert_eq!(*last, 768, "the short last block, from its header");
    let a = audio.write(dir.path(), "audio.mp4");
    assert_eq!(
        probe_stream(&a, "codec_name,codec_tag_string,sample_rate,channels"),
        "codec_name=flac|codec_tag_string=fLaC|sample_rate=48000|channels=1"
    );
    assert_packets_are_the_frames(&a, asrc, 0);
    assert_decodes_as(&a, "vp9_flac.audio.framemd5");
}

#[test]
fn eac3_alone() {
    let src = read_flv("eac3.flv");
    let (video, audio) = package(&src);
    assert!(video.is_none());
    let (audio, asrc) = (audio.unwrap(), src.audio.as_ref().unwrap());
    let dir = tempfile::tempdir().unwrap();

    let CodecConfig::Eac3(c) = &asrc.config else {
        panic!()
    };
    assert_eq!(audio.info.codec, "ec-3");
    assert_eq!(audio.info.dolby_channels, Some(0xa000));
    let (_, moov) = parse_init(&audio.init);
    let Entry::Eac3(eac3) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!(eac3.audio.channel_count, 2);
    assert_eq!(entry_child(&audio.init, b"ec-3", b"dec3"), &c.to_dec3()[..]);
    let d = durations(&audio);
    assert_eq!(d.len(), asrc.frames.len());
    assert!(d.iter().all(|&d| d == 1536));
    let a = audio.write(dir.path(), "audio.mp4");
    assert_eq!(
        probe_stream(&a, "codec_name,codec_tag_string,sample_rate,channels"),
        "codec_name=eac3|codec_tag_string=ec-3|sample_rate=48000|channels=2"
    );
    assert_packets_are_the_frames(&a, asrc, 0);
    let pcm = decoded(&a);
    assert_eq!(pcm.len(), asrc.frames.len());
    assert!(pcm.iter().all(|&(d, _, _)| d == 1536));
}

/// `hvc1` needs every parameter set in the record and none in band: the
/// record FFmpeg sends is `hvc1` (and so is its codec string), until a
/// keyframe carries an SPS; a record without a PPS is `hev1`.
#[test]
fn hvc1_only_with_every_parameter_set_in_the_record_and_none_in_band() {
    let src = read_flv("hevc_opus.flv");
    let v = src.video.unwrap();
    let CodecConfig::Hevc(hevc) = v.config.clone() else {
        panic!()
    };
    let mut no_pps = hevc.clone();
    no_pps
        .arrays
        .retain(|a| a.nal_unit_type != crate::media::hevc::NAL_PPS);
    assert_eq!(
        cmaf::hevc_entry(&no_pps, &cmaf::Observed::default()),
        b"hev1"
    );
    let key = &v.frames[0].data;
    let config = CodecConfig::Hevc(hevc.clone());
    let seen = cmaf::Observed::keyframe(&config, key);
    assert_eq!(seen, cmaf::Observed::default(), "x265 with global headers");
    assert_eq!(cmaf::hevc_entry(&hevc, &seen), b"hvc1");
    assert_eq!(cmaf::codec_string(&config, &seen), "hvc1.1.6.L30.90");
    let (_, moov) = parse_init(&cmaf::init_segment_with(1, &config, &seen).unwrap());
    assert!(matches!(entry(&moov), Entry::Hvc1(_)));

    // The SPS in band, before the picture.
    let sps = hevc.sps().next().unwrap().clone();
    let mut with_sps = (sps.len() as u32).to_be_bytes().to_vec();
    with_sps.extend_from_slice(&sps);
    with_sps.extend_from_slice(key);
    let seen = cmaf::Observed::keyframe(&config, &with_sps);
    assert!(seen.in_band_parameter_sets);
    assert_eq!(cmaf::hevc_entry(&hevc, &seen), b"hev1");
    assert_eq!(cmaf::codec_string(&config, &seen), "hev1.1.6.L30.90");

    // Through the segmenter: the init segment and the codec string are
    // remade at the first keyframe, before any manifest names them.
    let frames: Vec<Frame> = v
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| Frame {
            data: if i == 0 {
                with_sps.clone().into()
            } else {
                f.data.clone()
            },
            ..f.clone()
        })
        .collect();
    let (video, _) = package(&Source {
        video: Some(Track { config, frames }),
        audio: None,
    });
    let video = video.unwrap();
    assert_eq!(video.info.codec, "hev1.1.6.L30.90");
    assert!(matches!(entry(&parse_init(&video.init).1), Entry::Hev1(_)));
}

/// The real ingest (`media::flv::Ingest`) makes the same init segments
/// and media segments, byte for byte, of every file as this module's
/// reader: the checks above hold for what a publisher gets.
#[test]
fn the_ingest_makes_the_same_segments() {
    for name in ["hevc_opus.flv", "av1_ac3.flv", "vp9_flac.flv", "eac3.flv"] {
        let (v1, a1) = package(&read_flv(name));
        let (v2, a2) = package_events(&ingest(name), false);
        for (one, two) in [(v1, v2), (a1, a2)] {
            let (Some(one), Some(two)) = (one, two) else {
                continue;
            };
            assert_eq!(one.info, two.info, "{name}");
            assert_eq!(one.init, two.init, "{name}");
            assert_eq!(one.segments, two.segments, "{name}");
        }
    }
}

/// In low latency a segment is many small chunks (a `moof` per frame or
/// two): each Opus chunk has its roll group, and every track still
/// demuxes to the publisher's frames and decodes without a complaint.
#[test]
fn low_latency_chunks_play_too() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["hevc_opus", "av1_ac3", "vp9_flac", "eac3"] {
        let src = read_flv(&format!("{name}.flv"));
        let (video, audio) = package_events(&ingest(&format!("{name}.flv")), true);
        let first_video = src.video.as_ref().map_or(0, |v| v.frames[0].dts);
        for (p, t, kind) in [(video, &src.video, "video"), (audio, &src.audio, "audio")] {
            let (Some(p), Some(t)) = (p, t) else {
                continue;
            };
            let chunks: usize = p.segments.iter().map(|s| moofs(s).len()).sum();
            assert!(
                chunks > 2 * p.segments.len(),
                "{name} {kind}: {chunks} chunks"
            );
            if name == "hevc_opus" && kind == "audio" {
                assert_opus_roll_groups(&p, &parse_init(&p.init).1);
            }
            let path = p.write(dir.path(), &format!("{name}.{kind}.mp4"));
            let from = if kind == "audio" { first_video } else { 0 };
            assert_packets_are_the_frames(&path, t, from);
            assert!(!decoded(&path).is_empty());
        }
    }
}

/// The manifests of the real ingest's events name what the segments are:
/// codec strings (with `hvc1` as the sample entry), HDR, the Dolby channel
/// configuration.
#[test]
fn manifests_name_the_codecs() {
    for (name, codecs, range, dash_audio) in [
        ("hevc_opus", "hvc1.1.6.L30.90,opus", None, "value=\"2\""),
        (
            "av1_ac3",
            "av01.0.00M.08.0.110.09.18.09.0,ac-3",
            Some("HLG"),
            "dolby.com,2014:dash:audio_channel_configuration:2011\" value=\"A000\"",
        ),
        ("vp9_flac", "vp09.00.10.08,fLaC", None, "value=\"1\""),
        (
            "eac3",
            "ec-3",
            None,
            "dolby.com,2014:dash:audio_channel_configuration:2011\" value=\"A000\"",
        ),
    ] {
        let snapshot = segmenter(&ingest(&format!("{name}.flv")), false).snapshot();
        let m3u8 = super::hls::multivariant(&snapshot);
        assert!(m3u8.contains(&format!("CODECS=\"{codecs}\"")), "{m3u8}");
        match range {
            Some(r) => assert!(m3u8.contains(&format!(",VIDEO-RANGE={r}")), "{m3u8}"),
            None => assert!(!m3u8.contains("VIDEO-RANGE"), "{m3u8}"),
        }
        let mpd = super::dash::mpd(&snapshot, &[]);
        for codec in codecs.split(',') {
            assert!(mpd.contains(&format!("codecs=\"{codec}\"")), "{mpd}");
        }
        assert!(mpd.contains(dash_audio), "{mpd}");
        if range.is_some() {
            assert!(
                mpd.contains("TransferCharacteristics\" value=\"18\""),
                "{mpd}"
            );
        }
    }
}

/// An HEVC publish whose `colorInfo` says HDR10 (BT.2020, PQ, a mastering
/// display and a content light level), as FFmpeg 9 sends it: a video
/// `Metadata` packet after the sequence start. The init segment gets
/// `colr`, `mdcv` and `clli`, which ffprobe reads back; HLS and DASH say
/// PQ. A reset `colorInfo` later takes them away again.
#[test]
fn hevc_color_info_reaches_the_init_segment() {
    use crate::amf::amf0::{self, Amf0Value};
    let n = Amf0Value::Number;
    let hdr10 = Amf0Value::object([
        (
            "colorConfig",
            Amf0Value::object([
                ("bitDepth", n(8.0)),
                ("colorPrimaries", n(9.0)),
                ("transferCharacteristics", n(16.0)),
                ("matrixCoefficients", n(9.0)),
            ]),
        ),
        (
            "hdrCll",
            Amf0Value::object([("maxFall", n(400.0)), ("maxCLL", n(1000.0))]),
        ),
        (
            "hdrMdcv",
            Amf0Value::object([
                ("redX", n(0.708)),
                ("redY", n(0.292)),
                ("greenX", n(0.17)),
                ("greenY", n(0.797)),
                ("blueX", n(0.131)),
                ("blueY", n(0.046)),
                ("whitePointX", n(0.3127)),
                ("whitePointY", n(0.329)),
                ("maxLuminance", n(1000.0)),
                ("minLuminance", n(0.0001)),
            ]),
        ),
    ]);
    let metadata = |value: Amf0Value| {
        let mut body = b"\xd4hvc1".to_vec();
        body.extend(amf0::encode_all(&[Amf0Value::string("colorInfo"), value]));
        Bytes::from(body)
    };
    let data = Bytes::from(std::fs::read(testdata("hevc_opus.flv")).unwrap());
    let mut ingest = Ingest::new();
    let mut events = Vec::new();
    let mut configs = 0;
    for tag in flv_file::read_tags(&data).unwrap() {
        let body = match tag.tag_type {
            // FFmpeg's own colorInfo (an empty colorConfig) becomes HDR10.
            flv_file::TAG_VIDEO if tag.body[..5] == *b"\xd4hvc1" => metadata(hdr10.clone()),
            flv_file::TAG_VIDEO | flv_file::TAG_AUDIO => tag.body,
            _ => continue,
        };
        let kind = match tag.tag_type {
            flv_file::TAG_AUDIO => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        ingest
            .media(kind, tag.timestamp, body, |e| {
                if let StreamEvent::Config(c) = &e {
                    configs += usize::from(c.kind() == MediaKind::Video);
                }
                events.push(e)
            })
            .unwrap();
    }
    // The sequence start, then again with the colorInfo attached.
    assert_eq!(configs, 2);
    let (video, _) = package_events(&events, false);
    let video = video.unwrap();
    assert_eq!(video.info.video_range, Some(VideoRange::Pq));
    let (_, moov) = parse_init(&video.init);
    let Entry::Hvc1(hvc1) = entry(&moov) else {
        panic!("{:?}", entry(&moov))
    };
    assert_eq!(
        hvc1.colr,
        Some(Colr::Nclx {
            colour_primaries: 9,
            transfer_characteristics: 16,
            matrix_coefficients: 9,
            full_range_flag: false
        })
    );
    assert_eq!(
        entry_child(&video.init, b"hvc1", b"clli"),
        [0x03, 0xe8, 0x01, 0x90]
    );
    assert_eq!(entry_child(&video.init, b"hvc1", b"mdcv").len(), 24);
    let dir = tempfile::tempdir().unwrap();
    let v = video.write(dir.path(), "video.mp4");
    // (ffprobe reports the colour of the SPS VUI, unspecified in this
    // source, over the `colr`: the side data is what it reads from the
    // container alone.)
    let side_data = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream_side_data",
            "-of",
            "compact=p=0",
            v.to_str().unwrap(),
        ],
    );
    for expected in [
        "side_data_type=Mastering display metadata|red_x=35400/50000|red_y=14600/50000|\
         green_x=8500/50000|green_y=39850/50000|blue_x=6550/50000|blue_y=2300/50000|\
         white_point_x=15635/50000|white_point_y=16450/50000|\
         min_luminance=1/10000|max_luminance=10000000/10000",
        "side_data_type=Content light level metadata|max_content=1000|max_average=400",
    ] {
        assert!(side_data.contains(expected), "{side_data}");
    }
    let seg = segmenter(&events, false);
    let snapshot = seg.snapshot();
    assert!(super::hls::multivariant(&snapshot).contains("VIDEO-RANGE=PQ"));

    // A reset (Undefined) before the frames: no HDR boxes, no range.
    let mut reset = Ingest::new();
    let mut events = Vec::new();
    for tag in flv_file::read_tags(&data).unwrap() {
        let body = match tag.tag_type {
            flv_file::TAG_VIDEO if tag.body[..5] == *b"\xd4hvc1" => {
                let hdr = metadata(hdr10.clone());
                reset
                    .media(MediaKind::Video, tag.timestamp, hdr, |e| events.push(e))
                    .unwrap();
                metadata(Amf0Value::Undefined)
            }
            flv_file::TAG_VIDEO => tag.body,
            _ => continue,
        };
        reset
            .media(MediaKind::Video, tag.timestamp, body, |e| events.push(e))
            .unwrap();
    }
    let (video, _) = package_events(&events, false);
    let video = video.unwrap();
    assert_eq!(video.info.video_range, None);
    assert!(!video
        .init
        .windows(4)
        .any(|w| w == b"mdcv" || w == b"clli" || w == b"colr"));
}
