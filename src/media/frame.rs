//! The protocol-agnostic media unit every consumer works with.
//!
//! A [`Frame`] is one codec access unit with its timing. Its payload is a
//! [`Bytes`] slice of the buffer the publisher's message arrived in, so handing
//! a frame to many consumers clones a reference count, never the samples.

use bytes::Bytes;

use super::color_info::ColorInfo;
use super::{ac3, av1, flac, hevc, opus, vp9};

/// Which elementary stream a frame or configuration belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
}

/// Codecs castgate can carry. H.264, AAC and MP3 come in legacy FLV tags;
/// the others only in Enhanced RTMP (FourCC) tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Hevc,
    Av1,
    Vp9,
    Aac,
    Mp3,
    Opus,
    Flac,
    Ac3,
    Eac3,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::Hevc | Codec::Av1 | Codec::Vp9 => MediaKind::Video,
            Codec::Aac | Codec::Mp3 | Codec::Opus | Codec::Flac | Codec::Ac3 | Codec::Eac3 => {
                MediaKind::Audio
            }
        }
    }

    /// Whether a legacy FLV tag can carry it (a player that announced no
    /// Enhanced RTMP FourCCs can take it).
    pub fn is_legacy(self) -> bool {
        matches!(self, Codec::H264 | Codec::Aac | Codec::Mp3)
    }

    /// The short lowercase id the API uses (`h264`, `hevc`, `opus`…).
    pub fn id(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Hevc => "hevc",
            Codec::Av1 => "av1",
            Codec::Vp9 => "vp9",
            Codec::Aac => "aac",
            Codec::Mp3 => "mp3",
            Codec::Opus => "opus",
            Codec::Flac => "flac",
            Codec::Ac3 => "ac3",
            Codec::Eac3 => "eac3",
        }
    }

    /// The name for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H.264",
            Codec::Hevc => "HEVC",
            Codec::Av1 => "AV1",
            Codec::Vp9 => "VP9",
            Codec::Aac => "AAC",
            Codec::Mp3 => "MP3",
            Codec::Opus => "Opus",
            Codec::Flac => "FLAC",
            Codec::Ac3 => "AC-3",
            Codec::Eac3 => "E-AC-3",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One access unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub codec: Codec,
    /// Decode time in milliseconds on the publisher's RTMP clock, unwrapped
    /// past 32 bits and monotonic per track (see [`crate::media::timeline`]).
    pub dts: i64,
    /// Composition offset in milliseconds: `pts = dts + cts`. Signed, because
    /// Enhanced RTMP and some encoders send negative offsets.
    pub cts: i32,
    /// A random access point (IDR for H.264; every audio frame).
    pub keyframe: bool,
    /// H.264 and HEVC: length-prefixed NAL units. AV1: the temporal unit's
    /// OBUs (low-overhead format, as in `av01` samples). VP9: one frame (or
    /// superframe). AAC, Opus: one raw packet. FLAC: one frame. AC-3 and
    /// E-AC-3: the sync frames of one access unit. MP3: the frame bytes as
    /// they came in the FLV tag.
    pub data: Bytes,
}

impl Frame {
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }

    pub fn pts(&self) -> i64 {
        self.dts + i64::from(self.cts)
    }
}

/// H.264 decoder configuration (the FLV/MP4 `AVCDecoderConfigurationRecord`)
/// and what castgate learned from its first SPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// The record exactly as the publisher sent it (becomes `avcC`).
    pub record: Bytes,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Bytes per NAL length prefix in frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// SPS and PPS NAL units (without length prefixes).
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Display size from the first SPS (cropping applied), if it parsed.
    pub width: u32,
    pub height: u32,
}

/// AAC `AudioSpecificConfig` and its decoded essentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// The AudioSpecificConfig exactly as sent (becomes the `esds` DSI).
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = SBR, 29 = PS).
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// Samples per frame: 1024 (or 960 with the frameLengthFlag).
    pub frame_length: u32,
}

/// MP3 has no sequence header in FLV; its format comes from the tag's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mp3Config {
    pub sample_rate: u32,
    pub channels: u8,
    /// The FLV SoundFormat/Rate/Size/Type byte, replayed on RTMP play-out.
    pub flv_flags: u8,
}

/// A VP9 `vpcC` as the publisher sent it, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vp9Record {
    /// The `vpcC` body (version and flags first), replayed on play-out.
    pub record: Bytes,
    pub config: vp9::Vp9Config,
    /// The publisher's Enhanced RTMP `colorInfo`, for `mdcv` and `clli`.
    pub color_info: Option<ColorInfo>,
}

/// An Opus sequence start (`OpusHead`) as sent, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusRecord {
    pub record: Bytes,
    pub head: opus::OpusHead,
}

/// A FLAC sequence start as sent, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlacRecord {
    pub record: Bytes,
    pub config: flac::FlacConfig,
}

/// A track's decoder configuration. A new one mid-stream starts a new track
/// configuration (new init segment, discontinuity), not an error.
///
/// AC-3 and E-AC-3 have no sequence start in Enhanced RTMP: their
/// configuration is read from the first sync frames of the track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecConfig {
    Avc(AvcConfig),
    Hevc(hevc::HevcConfig),
    Av1(av1::Av1Config),
    Vp9(Vp9Record),
    Aac(AacConfig),
    Mp3(Mp3Config),
    Opus(OpusRecord),
    Flac(FlacRecord),
    Ac3(ac3::Ac3Header),
    Eac3(ac3::Eac3Config),
}

impl CodecConfig {
    pub fn kind(&self) -> MediaKind {
        self.codec().kind()
    }

    pub fn codec(&self) -> Codec {
        match self {
            CodecConfig::Avc(_) => Codec::H264,
            CodecConfig::Hevc(_) => Codec::Hevc,
            CodecConfig::Av1(_) => Codec::Av1,
            CodecConfig::Vp9(_) => Codec::Vp9,
            CodecConfig::Aac(_) => Codec::Aac,
            CodecConfig::Mp3(_) => Codec::Mp3,
            CodecConfig::Opus(_) => Codec::Opus,
            CodecConfig::Flac(_) => Codec::Flac,
            CodecConfig::Ac3(_) => Codec::Ac3,
            CodecConfig::Eac3(_) => Codec::Eac3,
        }
    }

    /// The record a sequence start carries, as sent (`None` for MP3, AC-3
    /// and E-AC-3, which have none).
    pub fn record(&self) -> Option<&Bytes> {
        match self {
            CodecConfig::Avc(c) => Some(&c.record),
            CodecConfig::Hevc(c) => Some(&c.record),
            CodecConfig::Av1(c) => Some(&c.record),
            CodecConfig::Vp9(c) => Some(&c.record),
            CodecConfig::Aac(c) => Some(&c.asc),
            CodecConfig::Opus(c) => Some(&c.record),
            CodecConfig::Flac(c) => Some(&c.record),
            CodecConfig::Mp3(_) | CodecConfig::Ac3(_) | CodecConfig::Eac3(_) => None,
        }
    }

    /// The RFC 6381 codecs parameter for HLS `CODECS` and DASH `@codecs`.
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::Avc(c) => super::avc::codec_string(c),
            CodecConfig::Hevc(c) => hevc::codec_string(c),
            CodecConfig::Av1(c) => av1::codec_string(c),
            CodecConfig::Vp9(c) => vp9::codec_string(&c.config),
            CodecConfig::Aac(c) => super::aac::codec_string(c),
            CodecConfig::Mp3(_) => "mp4a.6B".into(),
            CodecConfig::Opus(c) => opus::codec_string(&c.head),
            CodecConfig::Flac(c) => flac::codec_string(&c.config),
            CodecConfig::Ac3(_) => "ac-3".into(),
            CodecConfig::Eac3(_) => "ec-3".into(),
        }
    }

    /// Whether a decoder set up for `self` decodes a stream configured as
    /// `other`: a repeated sequence start that says nothing new is not a
    /// new configuration. FFmpeg, for one, sends FLAC's STREAMINFO again at
    /// the end with the totals and MD5 filled in.
    pub fn same_decoding(&self, other: &CodecConfig) -> bool {
        match (self, other) {
            (CodecConfig::Flac(a), CodecConfig::Flac(b)) => {
                let (a, b) = (&a.config.stream_info, &b.config.stream_info);
                (a.sample_rate, a.channels, a.bits_per_sample)
                    == (b.sample_rate, b.channels, b.bits_per_sample)
                    && (a.min_block_size, a.max_block_size) == (b.min_block_size, b.max_block_size)
            }
            _ => self == other,
        }
    }

    /// The publisher's Enhanced RTMP `colorInfo` attached to a video
    /// configuration (HEVC, AV1, VP9).
    pub fn color_info(&self) -> Option<&ColorInfo> {
        match self {
            CodecConfig::Hevc(c) => c.color_info.as_ref(),
            CodecConfig::Av1(c) => c.color_info.as_ref(),
            CodecConfig::Vp9(c) => c.color_info.as_ref(),
            _ => None,
        }
    }

    /// This configuration with `color_info` attached (replacing what it
    /// had); the codecs that cannot take one (H.264, audio) are returned
    /// as they are.
    pub fn with_color_info(mut self, color_info: Option<ColorInfo>) -> CodecConfig {
        match &mut self {
            CodecConfig::Hevc(c) => c.color_info = color_info,
            CodecConfig::Av1(c) => c.color_info = color_info,
            CodecConfig::Vp9(c) => c.color_info = color_info,
            _ => {}
        }
        self
    }

    /// Display size of a video configuration, if known (0 × 0 if not).
    pub fn picture_size(&self) -> (u32, u32) {
        match self {
            CodecConfig::Avc(c) => (c.width, c.height),
            CodecConfig::Hevc(c) => (c.width, c.height),
            CodecConfig::Av1(c) => (c.width, c.height),
            _ => (0, 0),
        }
    }

    /// Sample rate and channels of an audio configuration (0, 0 for video).
    pub fn audio_format(&self) -> (u32, u8) {
        match self {
            CodecConfig::Aac(c) => (c.sample_rate, c.channels),
            CodecConfig::Mp3(c) => (c.sample_rate, c.channels),
            CodecConfig::Opus(c) => (opus::SAMPLE_RATE, c.head.channels),
            CodecConfig::Flac(c) => (
                c.config.stream_info.sample_rate,
                c.config.stream_info.channels,
            ),
            CodecConfig::Ac3(h) => (h.sample_rate, h.channels()),
            CodecConfig::Eac3(c) => (c.sample_rate, c.channels),
            CodecConfig::Avc(_)
            | CodecConfig::Hevc(_)
            | CodecConfig::Av1(_)
            | CodecConfig::Vp9(_) => (0, 0),
        }
    }
}
