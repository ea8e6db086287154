//! Enhanced RTMP in, CMAF HLS and DASH out (issue 18), against the real
//! publisher: FFmpeg 9 ([`ffmpeg9`]), which sends HEVC, AV1 and VP9 video
//! and Opus, FLAC, AC-3 and E-AC-3 audio as Enhanced RTMP (FourCC tags).
//!
//! Each test encodes a small source file with FFmpeg 9 (6 s of 320x240 at
//! 25 fps with a 1 s GOP, and a stereo sine), publishes it with
//! `-re -c copy`, waits for the stream to end, then reads the ended (VOD)
//! playlists: that file is the reference. Checked:
//! - the multivariant playlist and the MPD name the codecs right, against
//!   strings derived without castgate: FFmpeg 9's own DASH muxer for AV1,
//!   VP9 and H.264, the HEVC record in the FLV for HEVC (ISO/IEC 14496-15
//!   annex E), fixed sample-entry names for audio;
//! - the whole publish is there and decodes: HLS and DASH read by FFmpeg 9
//!   give every video frame (same presentation times, same decoded
//!   pictures) and every audio packet (same payloads and times), with no
//!   decoding error;
//! - hls.js and dash.js play AV1 + Opus in headless Chromium.
//!
//! The multitrack test (two video and two audio tracks in one publish) is
//! `e2e/multitrack.rs`; RTMP play and relays of Enhanced RTMP are in
//! `e2e/enhanced.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(90);

/// Seconds of each source file; with 2 s segments and a 6-segment window
/// the ended playlists hold all of it.
const SECS: &str = "6";

/// FourCCs a publisher announces in `connect` (`fourCcList`), as OBS
/// does; FFmpeg sends none unless asked (`-rtmp_enhanced_codecs`). Some
/// tests announce, some do not: castgate must take both.
const ANNOUNCE: [&str; 2] = [
    "-rtmp_enhanced_codecs",
    "hvc1,av01,vp09,avc1,Opus,fLaC,ac-3,ec-3,mp4a",
];

/// One publish: what FFmpeg 9 encodes and what the manifests must say.
pub struct Case {
    /// The stream key (`live/NAME`).
    pub key: &'static str,
    /// Video encoder options (after `-c:v`).
    pub video: &'static [&'static str],
    /// Audio encoder options (after `-c:a`).
    pub audio: &'static [&'static str],
    /// How the expected video codecs string is found without castgate.
    pub video_codec: Expected,
    /// The audio codecs string (the MP4 sample entry's name: `opus`,
    /// `fLaC`, `ac-3`, `ec-3`, or `mp4a.40.2` for AAC-LC).
    pub audio_codec: &'static str,
    /// Announce the FourCCs in `connect` ([`ANNOUNCE`]).
    pub announce: bool,
}

/// Where the expected video codecs string comes from.
#[derive(Clone, Copy)]
pub enum Expected {
    /// FFmpeg 9's DASH muxer writes it for a copy of the source (AV1, VP9,
    /// H.264). castgate's may be the long form of the same string (AV1 and
    /// VP9 colour fields appended after a `.`).
    FfmpegDash,
    /// FFmpeg writes none for HEVC: built from the HEVCDecoderConfigurationRecord
    /// in the FLV's sequence start (ISO/IEC 14496-15 annex E). The sample
    /// entry may be `hvc1` (parameter sets in the record) or `hev1`.
    HevcRecord,
}

pub const HEVC_AAC: Case = Case {
    key: "live/hevc",
    video: &[
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
    ],
    audio: &["aac", "-b:a", "96k"],
    video_codec: Expected::HevcRecord,
    audio_codec: "mp4a.40.2",
    announce: true,
};

pub const AV1_OPUS: Case = Case {
    key: "live/av1",
    video: &[
        "libsvtav1",
        "-preset",
        "12",
        "-svtav1-params",
        "svt-log-level=1",
    ],
    audio: &["libopus", "-b:a", "96k"],
    video_codec: Expected::FfmpegDash,
    audio_codec: "opus",
    announce: true,
};

pub const VP9_FLAC: Case = Case {
    key: "live/vp9",
    video: &[
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "400k",
    ],
    audio: &["flac"],
    video_codec: Expected::FfmpegDash,
    audio_codec: "fLaC",
    announce: false,
};

pub const H264_AC3: Case = Case {
    key: "live/ac3",
    video: &[
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-bf",
        "2",
    ],
    audio: &["ac3", "-b:a", "192k"],
    video_codec: Expected::FfmpegDash,
    audio_codec: "ac-3",
    announce: false,
};

pub const H264_EAC3: Case = Case {
    key: "live/eac3",
    video: &[
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-bf",
        "2",
    ],
    audio: &["eac3", "-b:a", "192k"],
    video_codec: Expected::FfmpegDash,
    audio_codec: "ec-3",
    announce: true,
};

/// H.264 + AAC from FFmpeg 9 stay legacy FLV tags (FFmpeg uses Enhanced
/// RTMP only for the other codecs and for a second track), announced as
/// Enhanced RTMP capable: the baseline the other cases build on.
pub const H264_AAC: Case = Case {
    key: "live/avc",
    video: &[
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-bf",
        "2",
    ],
    audio: &["aac", "-b:a", "96k"],
    video_codec: Expected::FfmpegDash,
    audio_codec: "mp4a.40.2",
    announce: true,
};

/// Encodes `case`'s source with FFmpeg 9 into `DIR/NAME.flv`: 6 s of
/// testsrc2 320x240 at 25 fps, one keyframe a second, and a beeping stereo
/// 48 kHz sine.
pub fn encode(dir: &Path, case: &Case) -> PathBuf {
    let ff = ffmpeg9();
    let name = case.key.rsplit('/').next().unwrap_or(case.key);
    let path = dir.join(format!("{name}.flv"));
    let out = Command::new(&ff)
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:beep_factor=4:sample_rate=48000",
        ])
        .args(["-map", "0:v", "-map", "1:a", "-t", SECS])
        .arg("-c:v")
        .args(case.video)
        .args(["-g", "25", "-keyint_min", "25", "-pix_fmt", "yuv420p"])
        .arg("-c:a")
        .args(case.audio)
        .args(["-ar", "48000", "-ac", "2", "-f", "flv"])
        .arg(&path)
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ff.display()));
    assert!(
        out.status.success(),
        "FFmpeg 9 could not encode the {} source: {}",
        case.key,
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Publishes `file` to `key` with FFmpeg 9 (`-re -c copy OUTPUT_OPTS -f
/// flv`) and
/// waits until it has sent everything and the stream has ended (castgate
/// started with a 1 s grace period).
pub fn publish_and_end(
    server: &Castgate,
    file: &Path,
    key: &str,
    announce: bool,
    output_opts: &[&str],
) {
    let mut out_opts: Vec<&str> = output_opts.to_vec();
    if announce {
        out_opts.extend(ANNOUNCE);
    }
    let mut publisher = publish_by(&ffmpeg9(), file, &server.url(key), &[], &out_opts);
    let status = wait_child(&mut publisher, T, "FFmpeg 9 publisher");
    assert!(
        status.success(),
        "FFmpeg 9 could not publish {key}: {}\ncastgate said:\n{}",
        stderr_of(&mut publisher),
        castgate_says(server, key)
    );
    server.wait_log_all(&["packaging ended", key], T);
}

/// castgate's log lines about `key` (for failure messages: an unsupported
/// codec, a dropped track).
pub fn castgate_says(server: &Castgate, key: &str) -> String {
    server.lines_with(&[key]).join("\n")
}

/// Prints what castgate logged about a stream when the test fails while
/// this lives (a manifest that lacks a codec is explained by the log: a
/// codec castgate does not carry, a dropped track).
pub struct LogOnFailure<'a> {
    pub server: &'a Castgate,
    pub key: &'a str,
}

impl Drop for LogOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "castgate's log about {}:\n{}",
                self.key,
                castgate_says(self.server, self.key)
            );
        }
    }
}

/// GET `/KEY/resource`, which must answer 200.
pub fn get_ok(server: &Castgate, key: &str, resource: &str) -> String {
    let path = format!("/{key}/{resource}");
    let r = http_get(server.http, &path);
    assert_eq!(
        r.status,
        200,
        "GET {path} answered {} ({}) after the publish ended",
        r.status,
        r.text().trim(),
    );
    r.text()
}

pub fn master_playlist(text: &str) -> m3u8_rs::MasterPlaylist {
    m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("m3u8-rs cannot parse the multivariant playlist: {e:?}\n{text}"))
}

pub fn media_playlist(text: &str) -> m3u8_rs::MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("m3u8-rs cannot parse the media playlist: {e:?}\n{text}"))
}

/// The codecs string FFmpeg 9's DASH muxer writes for the video of `file`
/// (a copy, nothing re-encoded).
fn ffmpeg_dash_codec(file: &Path) -> String {
    let dir = tempdir();
    let ff = ffmpeg9();
    let out = Command::new(&ff)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-c", "copy", "-f", "dash"])
        .arg(dir.path().join("ref.mpd"))
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ff.display()));
    assert!(
        out.status.success(),
        "FFmpeg 9's DASH muxer failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mpd = std::fs::read_to_string(dir.path().join("ref.mpd")).expect("FFmpeg's MPD");
    let codecs = Mpd::parse(&mpd)
        .all("Representation")
        .into_iter()
        .find_map(|r| {
            r.attr("codecs")
                .filter(|c| !c.is_empty())
                .map(str::to_string)
        });
    codecs.unwrap_or_else(|| panic!("FFmpeg's MPD names no codecs:\n{mpd}"))
}

/// The body of the first Enhanced RTMP sequence start with FourCC
/// `fourcc` in an FLV file (the codec configuration record), read with
/// nothing but the FLV and Enhanced RTMP framing: a video tag (9) with
/// `IsExHeader | FrameType | PacketType 0 (SequenceStart)` or an audio tag
/// (8) with `SoundFormat 9 (ExHeader) | AudioPacketType 0
/// (SequenceStart)`, then the FourCC, then the record.
pub fn flv_sequence_start(file: &Path, fourcc: &[u8; 4]) -> Vec<u8> {
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(data.starts_with(b"FLV"), "{} is not FLV", file.display());
    let header = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut at = header + 4; // PreviousTagSize0
    while at + 11 <= data.len() {
        let kind = data[at];
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let body = &data[at + 11..(at + 11 + size).min(data.len())];
        let ex_header = match kind {
            9 => body.first().is_some_and(|b| b & 0x80 != 0),
            8 => body.first().is_some_and(|b| b >> 4 == 9),
            _ => false,
        };
        if ex_header && body.len() > 5 && body[0] & 0x0f == 0 && &body[1..5] == fourcc {
            return body[5..].to_vec();
        }
        at += 11 + size + 4;
    }
    panic!(
        "{}: no {} sequence start",
        file.display(),
        String::from_utf8_lossy(fourcc)
    )
}

/// The Opus pre-skip of an FLV's Opus track in milliseconds, from the
/// OpusHead in its sequence start (RFC 7845 5.1: 48 kHz samples, little
/// endian, after the magic, the version and the channel count).
pub fn opus_pre_skip_ms(file: &Path) -> f64 {
    let head = flv_sequence_start(file, b"Opus");
    assert!(
        head.len() >= 12 && head.starts_with(b"OpusHead"),
        "{}: not an OpusHead: {head:02x?}",
        file.display()
    );
    f64::from(u16::from_le_bytes([head[10], head[11]])) / 48.0
}

/// The RFC 6381 codecs string of an HEVCDecoderConfigurationRecord
/// (ISO/IEC 14496-15 annex E): `hvc1.[A-C]PROFILE.COMPAT.{L|H}LEVEL` and the
/// constraint bytes up to the last non-zero one, e.g. `hvc1.1.6.L60.90`.
pub fn hevc_codec_string(hvcc: &[u8]) -> String {
    assert!(hvcc.len() >= 13, "HEVC record too short: {hvcc:02x?}");
    let space = ["", "A", "B", "C"][usize::from(hvcc[1] >> 6)];
    let tier = if hvcc[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = hvcc[1] & 0x1f;
    let compat = u32::from_be_bytes(hvcc[2..6].try_into().unwrap()).reverse_bits();
    let constraints = &hvcc[6..12];
    let used = constraints
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i + 1);
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{}", hvcc[12]);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:02X}"));
    }
    s
}

#[test]
fn hevc_codec_string_follows_annex_e() {
    // x265 Main, level 2 (a 320x240 encode): the record FFmpeg 9 sends.
    let hvcc = [
        0x01, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x3c, 0xf0, 0,
    ];
    assert_eq!(hevc_codec_string(&hvcc), "hvc1.1.6.L60.90");
    // Main 10, high tier, level 5.1, no constraint flags.
    let hvcc = [0x01, 0x22, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 153];
    assert_eq!(hevc_codec_string(&hvcc), "hvc1.2.4.H153");
}

/// The video codecs string castgate must write for `case`'s source.
fn expected_video_codec(case: &Case, source: &Path) -> String {
    match case.video_codec {
        Expected::FfmpegDash => ffmpeg_dash_codec(source),
        Expected::HevcRecord => hevc_codec_string(&flv_sequence_start(source, b"hvc1")),
    }
}

/// Whether castgate's video codecs string `got` is `expected`: equal, or
/// its long form (more fields after a `.`), or for HEVC the same with the
/// `hev1` sample entry.
pub fn same_video_codec(got: &str, expected: &str) -> bool {
    let matches = |want: &str| got == want || got.starts_with(&format!("{want}."));
    matches(expected)
        || expected
            .strip_prefix("hvc1.")
            .is_some_and(|rest| matches(&format!("hev1.{rest}")))
}

/// Enough of an MPD to check it: elements with their attributes.
pub struct Mpd {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Mpd>,
}

impl Mpd {
    pub fn parse(xml: &str) -> Mpd {
        use quick_xml::events::{BytesStart, Event};
        fn element(e: &BytesStart) -> Mpd {
            Mpd {
                name: e.local_name().as_ref().to_string(),
                attrs: e
                    .attributes()
                    .filter_map(Result::ok)
                    .map(|a| {
                        (
                            a.key.local_name().as_ref().to_string(),
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .map(|v| v.into_owned())
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
                children: Vec::new(),
            }
        }
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<Mpd> = Vec::new();
        let mut root = None;
        let close = |stack: &mut Vec<Mpd>, root: &mut Option<Mpd>, el: Mpd| match stack.last_mut() {
            Some(parent) => parent.children.push(el),
            None => *root = Some(el),
        };
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => stack.push(element(&e)),
                Ok(Event::Empty(e)) => close(&mut stack, &mut root, element(&e)),
                Ok(Event::End(_)) => {
                    let el = stack.pop().expect("balanced MPD");
                    close(&mut stack, &mut root, el);
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("the MPD is not XML: {e}\n{xml}"),
            }
        }
        root.unwrap_or_else(|| panic!("an empty MPD:\n{xml}"))
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every element named `name` at any depth, in document order.
    pub fn all(&self, name: &str) -> Vec<&Mpd> {
        let mut out = Vec::new();
        self.collect(name, &mut out);
        out
    }

    fn collect<'a>(&'a self, name: &str, out: &mut Vec<&'a Mpd>) {
        if self.name == name {
            out.push(self);
        }
        for c in &self.children {
            c.collect(name, out);
        }
    }

    /// The content type of an AdaptationSet (`contentType`, or the start
    /// of its `mimeType`).
    pub fn content_type(&self) -> &str {
        self.attr("contentType")
            .or_else(|| self.attr("mimeType").and_then(|m| m.split('/').next()))
            .unwrap_or_default()
    }

    /// An attribute of a Representation, or of its AdaptationSet when the
    /// Representation does not say.
    pub fn rep_attr<'a>(&'a self, set: &'a Mpd, key: &str) -> Option<&'a str> {
        self.attr(key).or_else(|| set.attr(key))
    }
}

/// An audio Representation (or its AdaptationSet) declares two channels:
/// MPEG's scheme with `2`, or for AC-3 and E-AC-3 Dolby's with the
/// channel mask `A000` (left and right).
pub fn assert_stereo(rep: &Mpd, set: &Mpd, text: &str) {
    let configs: Vec<&Mpd> = rep
        .all("AudioChannelConfiguration")
        .into_iter()
        .chain(
            set.children
                .iter()
                .filter(|c| c.name == "AudioChannelConfiguration"),
        )
        .collect();
    assert!(!configs.is_empty(), "no AudioChannelConfiguration: {text}");
    for c in configs {
        let scheme = c.attr("schemeIdUri").unwrap_or_default();
        let value = c.attr("value").unwrap_or_default();
        let stereo = match scheme {
            "urn:mpeg:dash:23003:3:audio_channel_configuration:2011" => value == "2",
            "tag:dolby.com,2014:dash:audio_channel_configuration:2011" => {
                value.eq_ignore_ascii_case("A000")
            }
            _ => false,
        };
        assert!(
            stereo,
            "AudioChannelConfiguration {scheme} {value:?} is not stereo: {text}"
        );
    }
}

/// The checks every codec pair goes through; see the module comment.
fn run(case: &Case) {
    let dir = tempdir();
    let source = encode(dir.path(), case);
    let video_codec = expected_video_codec(case, &source);
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let key = case.key;
    let _log = LogOnFailure {
        server: &server,
        key,
    };
    publish_and_end(&server, &source, key, case.announce, &[]);

    // The multivariant playlist: one variant at the source's size and
    // rate, with both codecs; the audio as an EXT-X-MEDIA rendition.
    let text = get_ok(&server, key, "index.m3u8");
    let m = master_playlist(&text);
    assert_eq!(m.variants.len(), 1, "{text}");
    let v = &m.variants[0];
    assert_eq!(
        v.resolution.map(|r| (r.width, r.height)),
        Some((320, 240)),
        "{text}"
    );
    assert!(
        v.frame_rate.is_some_and(|f| (f - 25.0).abs() < 0.5),
        "{text}"
    );
    assert!(v.bandwidth > 0, "{text}");
    let codecs: Vec<&str> = v.codecs.as_deref().unwrap_or_default().split(',').collect();
    assert_eq!(codecs.len(), 2, "CODECS names video and audio: {text}");
    let video = codecs
        .iter()
        .find(|c| !c.eq_ignore_ascii_case(case.audio_codec))
        .copied()
        .unwrap_or_default();
    assert!(
        same_video_codec(video, &video_codec),
        "{key}: video CODECS {video:?}, expected {video_codec:?} (or its long form): {text}"
    );
    assert!(
        codecs.contains(&case.audio_codec),
        "{key}: audio CODECS should be {:?}: {text}",
        case.audio_codec
    );
    let audio: Vec<_> = m
        .alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .collect();
    assert_eq!(audio.len(), 1, "one audio rendition: {text}");
    assert_eq!(
        v.audio.as_deref(),
        Some(audio[0].group_id.as_str()),
        "{text}"
    );
    assert_eq!(audio[0].channels.as_deref(), Some("2"), "stereo: {text}");

    // The media playlists ended.
    for uri in [Some(v.uri.as_str()), audio[0].uri.as_deref()]
        .into_iter()
        .flatten()
    {
        let p = media_playlist(&get_ok(&server, key, uri));
        assert!(p.end_list, "{key}/{uri}: an ended stream says so");
        assert!(!p.segments.is_empty(), "{key}/{uri}: no segments");
    }

    // The MPD: static now, one video and one audio AdaptationSet, each
    // Representation with its codecs.
    let text = get_ok(&server, key, "manifest.mpd");
    let mpd = Mpd::parse(&text);
    assert_eq!(mpd.attr("type"), Some("static"), "{text}");
    let sets = mpd.all("AdaptationSet");
    assert_eq!(sets.len(), 2, "{text}");
    for set in &sets {
        let reps = set.all("Representation");
        assert_eq!(reps.len(), 1, "{text}");
        let rep = reps[0];
        let codecs = rep.rep_attr(set, "codecs").unwrap_or_default();
        match set.content_type() {
            "video" => {
                assert!(
                    same_video_codec(codecs, &video_codec),
                    "{key}: MPD video codecs {codecs:?}, expected {video_codec:?}: {text}"
                );
                assert_eq!(rep.rep_attr(set, "width"), Some("320"), "{text}");
                assert_eq!(rep.rep_attr(set, "height"), Some("240"), "{text}");
            }
            "audio" => {
                assert_eq!(codecs, case.audio_codec, "{key}: MPD audio codecs: {text}");
                assert_eq!(
                    rep.rep_attr(set, "audioSamplingRate"),
                    Some("48000"),
                    "{text}"
                );
                assert_stereo(rep, set, &text);
            }
            other => panic!("{key}: an AdaptationSet of content type {other:?}: {text}"),
        }
    }

    // Both manifests carry the whole publish, and it decodes. Opus in MP4
    // may start after its pre-skip with an edit list, which moves every
    // presentation time FFmpeg reports by it (FFmpeg then also drops the
    // first packet, whose samples the edit starts inside). castgate times
    // Opus by its sample count, the FLV in rounded milliseconds (FFmpeg's
    // stamps 0, 21, 41, … for 20 ms frames): 2 ms of slack then.
    let (audio_shifts, tolerance) = if case.audio_codec == "opus" {
        (vec![0.0, -opus_pre_skip_ms(&source)], 2.0)
    } else {
        (vec![0.0], 1.0)
    };
    assert_whole_publish(&server, key, &source, &audio_shifts, tolerance);
}

/// FFmpeg 9 reads the ended HLS and DASH of `key`: no decoding error;
/// every video frame of `source` (same presentation times, same decoded
/// pictures: the packets may be framed differently, e.g. AV1 without
/// temporal delimiters); every audio packet from the first one played
/// (same payloads, and times `audio_shifts` ms ± `tolerance` from the
/// source's: the first shift that lines the first packet up), starting
/// with the video.
pub fn assert_whole_publish(
    server: &Castgate,
    key: &str,
    source: &Path,
    audio_shifts: &[f64],
    tolerance: f64,
) {
    let ff = ffmpeg9();
    let src_v = framemd5_by(&ff, source, "0:v");
    let src_a = framemd5_by(&ff, source, "0:a");
    let src_pictures = decoded_frames(&ff, source, "0:v");
    assert_eq!(src_v.len(), 150, "the source has 6 s of 25 fps video");
    for url in [
        server.http_url(&format!("{key}/index.m3u8")),
        server.http_url(&format!("{key}/manifest.mpd")),
    ] {
        assert_eq!(decode_errors_by(&ff, &url), "", "FFmpeg 9 decoding {url}");
        let v = framemd5_by(&ff, &url, "0:v");
        assert_eq!(
            v.len(),
            src_v.len(),
            "{url}: every video frame of the publish"
        );
        let mut got_pts: Vec<i64> = v.iter().map(|p| p.pts).collect();
        let mut src_pts: Vec<i64> = src_v.iter().map(|p| p.pts).collect();
        got_pts.sort_unstable();
        src_pts.sort_unstable();
        for (g, e) in got_pts.iter().zip(&src_pts) {
            assert!(
                (g - e).abs() <= 1,
                "{url}: video presentation times differ: {got_pts:?} vs {src_pts:?}"
            );
        }
        assert!(
            decoded_frames(&ff, &url, "0:v") == src_pictures,
            "{url}: the decoded pictures differ from the source's"
        );
        let a = framemd5_by(&ff, &url, "0:a");
        assert!(!a.is_empty(), "{url}: no audio");
        let shift = audio_shifts
            .iter()
            .copied()
            .find(|s| {
                src_a.iter().any(|p| {
                    p.md5 == a[0].md5 && (a[0].pts as f64 - p.pts as f64 - s).abs() <= tolerance
                })
            })
            .unwrap_or(0.0);
        assert_audio_run_shifted(&src_a, &a, shift, tolerance, &format!("{url}: audio"));
        assert!(
            (a[0].pts - src_pts[0]).abs() <= 100,
            "{url}: audio starts at {} ms, video at {} ms: the audio before it is missing",
            a[0].pts,
            src_pts[0]
        );
    }
}

#[test]
fn h264_and_aac() {
    run(&H264_AAC);
}

#[test]
fn hevc_and_aac() {
    run(&HEVC_AAC);
}

#[test]
fn av1_and_opus() {
    run(&AV1_OPUS);
}

#[test]
fn vp9_and_flac() {
    run(&VP9_FLAC);
}

#[test]
fn h264_and_ac3() {
    run(&H264_AC3);
}

#[test]
fn h264_and_eac3() {
    run(&H264_EAC3);
}

/// hls.js and dash.js in headless Chromium play live AV1 + Opus and VP9 +
/// FLAC streams (Chromium decodes them in software; HEVC and AC-3 it does
/// not): playback starts at the source's size, `currentTime` advances, no
/// player error, nothing off the machine.
#[test]
fn browsers_play_av1_opus_and_vp9_flac() {
    crate::browser::ensure_installed();
    let dir = tempdir();
    let server = Castgate::start(&[]);
    for (case, key) in [(&AV1_OPUS, "live/av1web"), (&VP9_FLAC, "live/vp9web")] {
        browsers_play(&server, &encode(dir.path(), case), key);
    }
}

fn browsers_play(server: &Castgate, source: &Path, key: &str) {
    let _log = LogOnFailure { server, key };
    let mut publisher = publish_by(
        &ffmpeg9(),
        source,
        &server.url(key),
        &["-stream_loop", "-1"],
        &[],
    );
    // Let the window fill so both players have a live edge.
    let deadline = Instant::now() + T;
    loop {
        let r = http_get(server.http, &format!("/{key}/video.m3u8"));
        if r.status == 200 && media_playlist(&r.text()).segments.len() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{key}: the video playlist never reached 3 segments (last {})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (player, path) in [("hls", "index.m3u8"), ("dash", "manifest.mpd")] {
        let url = server.http_url(&format!("{key}/{path}"));
        let name = key.replace('/', "-");
        let shot = shots.join(format!("castgate-{name}-{player}.png"));
        let report = crate::browser::play(player, &url, 10, &shot);
        assert!(report.ok, "{player} did not play {url}: {}", report.raw);
        assert!(report.errors.is_empty(), "{player}: {:?}", report.errors);
        assert!(
            report.advanced_s >= 5.0,
            "{player} advanced only {} s: {}",
            report.advanced_s,
            report.raw
        );
        assert!(
            report.raw.contains("\"size\":\"320x240\""),
            "{player} did not show the 320x240 picture: {}",
            report.raw
        );
        assert!(
            report.frames > 0.0,
            "{player}: no frame decoded: {}",
            report.raw
        );
        assert!(
            report.blocked.is_empty(),
            "{player} tried to reach {:?}",
            report.blocked
        );
        eprintln!(
            "{key} {player}: startup {} ms, longest stall {} s, {} frames, {} dropped",
            report.startup_ms, report.max_stall_s, report.frames, report.dropped
        );
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// A publish castgate cannot give ffmpeg as FLV (HEVC + Opus from FFmpeg 9)
/// through a transcode ladder (`ci-small`: the source, 240p and 180p
/// H.264): castgate feeds the transcoder Matroska, the renditions appear
/// as variants beside the HEVC source, and each decodes (FFmpeg 9) at its
/// size with no error while live.
#[test]
fn hevc_and_opus_through_a_transcode_ladder() {
    let dir = tempdir();
    let ff = ffmpeg9();
    let source = dir.path().join("hevc_opus.flv");
    let out = Command::new(&ff)
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=800:sample_rate=48000"])
        .args(["-map", "0:v", "-map", "1:a", "-t", SECS])
        .args(["-c:v", "libx265", "-preset", "ultrafast"])
        .args([
            "-x265-params",
            "log-level=error",
            "-g",
            "25",
            "-keyint_min",
            "25",
        ])
        .args(["-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-f", "flv"])
        .arg(&source)
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ff.display()));
    assert!(
        out.status.success(),
        "FFmpeg 9 could not encode the source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = crate::transcode::start(dir.path(), &[("live/*", "ci-small")], &[]);
    let key = "live/hevcabr";
    let _log = LogOnFailure {
        server: &server,
        key,
    };
    let mut publisher = publish_by(&ff, &source, &server.url(key), &["-stream_loop", "-1"], &[]);
    let m = crate::transcode::wait_variants(&server, &format!("/{key}/index.m3u8"), 3);
    let text = http_get(server.http, &format!("/{key}/index.m3u8")).text();
    let mut seen = Vec::new();
    for v in &m.variants {
        let codecs = v.codecs.as_deref().unwrap_or_default();
        let (w, h) = v
            .resolution
            .map(|r| (r.width, r.height))
            .unwrap_or_else(|| panic!("a variant without RESOLUTION: {text}"));
        if (w, h) == (640, 360) {
            assert!(
                codecs.starts_with("hvc1.") || codecs.starts_with("hev1."),
                "the source variant is HEVC: {text}"
            );
        } else {
            assert!(codecs.starts_with("avc1."), "a rendition is H.264: {text}");
        }
        // Each variant decodes at its size, without an error: 25 pictures
        // of the live playlist (a bounded read: the stream goes on).
        let url = server.http_url(&format!("{key}/{}", v.uri));
        let probe = Command::new(&ff)
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&url)
            .args(["-map", "0:v", "-frames:v", "25", "-f", "rawvideo", "-"])
            .output_within(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("FFmpeg 9 reading {url}: {e}"));
        let err = String::from_utf8_lossy(&probe.stderr);
        assert!(probe.status.success() && err.is_empty(), "{url}: {err}");
        // 25 yuv420p pictures: 25 * w * h * 3 / 2 bytes.
        assert_eq!(
            probe.stdout.len() as u64,
            25 * w * h * 3 / 2,
            "{url}: 25 pictures of {w}x{h}"
        );
        seen.push(h);
    }
    seen.sort_unstable();
    assert_eq!(seen, [180, 240, 360], "{text}");
    let _ = publisher.kill();
    let _ = publisher.wait();
}
