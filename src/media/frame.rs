//! The protocol-agnostic media unit every consumer works with.
//!
//! A [`Frame`] is one codec access unit with its timing. Its payload is a
//! [`Bytes`] slice of the buffer the publisher's message arrived in, so handing
//! a frame to many consumers clones a reference count, never the samples.

use bytes::Bytes;

/// Which elementary stream a frame or configuration belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
}

/// Codecs castgate can carry. Later issues add HEVC, AV1 and Opus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Aac,
    Mp3,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 => MediaKind::Video,
            Codec::Aac | Codec::Mp3 => MediaKind::Audio,
        }
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
    /// H.264: AVCC (length-prefixed) NAL units. AAC: one raw access unit.
    /// MP3: the frame bytes as they came in the FLV tag.
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

/// A track's decoder configuration. A new one mid-stream starts a new track
/// configuration (new init segment, discontinuity), not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecConfig {
    Avc(AvcConfig),
    Aac(AacConfig),
    Mp3(Mp3Config),
}

impl CodecConfig {
    pub fn kind(&self) -> MediaKind {
        match self {
            CodecConfig::Avc(_) => MediaKind::Video,
            CodecConfig::Aac(_) | CodecConfig::Mp3(_) => MediaKind::Audio,
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            CodecConfig::Avc(_) => Codec::H264,
            CodecConfig::Aac(_) => Codec::Aac,
            CodecConfig::Mp3(_) => Codec::Mp3,
        }
    }
}
