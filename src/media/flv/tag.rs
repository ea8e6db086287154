//! FLV audio and video tag bodies (the payload of RTMP messages 8 and 9)
//! to [`Frame`]s and configurations, and the headers to write them back.
//!
//! Legacy FLV (Adobe FLV spec, Annex E.4) carries H.264, AAC and MP3 here.
//! Enhanced RTMP (video's 0x80 IsExHeader bit, audio's sound format 9) is
//! split by [`super::ex`] and mapped here for every FourCC castgate
//! carries: `avc1`, `hvc1`, `av01`, `vp09`, `mp4a`, `.mp3`, `Opus`, `fLaC`,
//! `ac-3`, `ec-3`. Others are [`VideoTag::UnsupportedFourCc`] (and audio's),
//! so the publisher keeps going without that track. Multitrack packets come
//! back as `Tracks`, one tag per track id.
//!
//! Writing: H.264, AAC and MP3 keep their legacy headers; HEVC, AV1, VP9,
//! Opus, FLAC, AC-3 and E-AC-3 get Enhanced RTMP ones, as FFmpeg 9 writes
//! them (see [`video_header`], [`config_parts`], [`multichannel_config`]).
//!
//! Frame payloads are [`Bytes::slice`]s of the message body: parsing never
//! copies samples. Every [`FlvError`] concerns one tag only.

use bytes::Bytes;

use super::ex;
use crate::media::aac::{self, AacError};
use crate::media::av1::{self, Av1Error};
use crate::media::avc::{self, AvcError};
use crate::media::color_info::{parse_video_metadata, ColorInfo, ColorInfoError, VideoMetadata};
use crate::media::flac::{self, FlacError};
use crate::media::hevc::{self, HevcError};
use crate::media::mpeg_audio;
use crate::media::opus::{self, OpusError};
use crate::media::vp9::{self, Vp9Error};
use crate::media::{
    Codec, CodecConfig, FlacRecord, Frame, MediaKind, Mp3Config, OpusRecord, TrackId, Vp9Record,
};

/// Why a tag body could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("bad AVC sequence header: {0}")]
    BadAvcConfig(#[from] AvcError),
    #[error("bad AAC sequence header: {0}")]
    BadAacConfig(#[from] AacError),
    #[error("unknown {codec} packet type {packet_type}")]
    BadPacketType {
        codec: &'static str,
        packet_type: u8,
    },
    #[error("bad HEVC sequence header: {0}")]
    BadHevcConfig(#[from] HevcError),
    #[error("bad AV1 sequence header: {0}")]
    BadAv1Config(#[from] Av1Error),
    #[error("bad VP9 sequence header: {0}")]
    BadVp9Config(#[from] Vp9Error),
    #[error("bad Opus sequence header: {0}")]
    BadOpusConfig(#[from] OpusError),
    #[error("bad FLAC sequence header: {0}")]
    BadFlacConfig(#[from] FlacError),
    #[error("an Enhanced RTMP MP3 frame without an MPEG audio header")]
    BadMp3Frame,
    #[error("more than {0} tracks in one Enhanced RTMP multitrack tag")]
    TooManyTracks(usize),
    #[error("{0}")]
    BadVideoMetadata(#[from] ColorInfoError),
    /// A coded-frame tag with no payload. Harmless (some encoders send one
    /// at the end): drop the tag, keep the stream.
    #[error("empty {0} frame")]
    EmptyFrame(&'static str),
}

/// A parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    Config(CodecConfig),
    Frame(Frame),
    EndOfSequence,
    /// A tag that holds no picture: a command frame (frame type 5), an
    /// Enhanced RTMP metadata packet of no known name, an empty sequence start (a publisher
    /// saying a configuration comes later). Nothing to carry.
    NotMedia,
    /// A legacy codec we do not carry: keep publishing, log once. Legacy
    /// codec ids are 0–15.
    Unsupported {
        codec_id: u8,
    },
    /// An Enhanced RTMP FourCC we do not carry.
    UnsupportedFourCc(ex::FourCc),
    /// An Enhanced RTMP `colorInfo` (empty: reset): it applies to the
    /// frames that follow.
    ColorInfo(ColorInfo),
    /// An Enhanced RTMP multitrack packet: each track's tag with its id.
    Tracks(Vec<(u8, VideoTag)>),
}

/// A parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// A sequence start: AAC AudioSpecificConfig, OpusHead, FLAC header.
    Config(CodecConfig),
    /// A coded frame. AC-3 and E-AC-3 have no sequence start: their
    /// configuration is read from the frames ([`crate::media::ac3`]).
    Frame(Frame),
    /// MP3 carries its format in every tag.
    Mp3 {
        config: Mp3Config,
        frame: Frame,
    },
    /// A packet with nothing to carry: an empty sequence start, a channel
    /// layout (`MultichannelConfig`), a sequence end.
    NotMedia,
    Unsupported {
        sound_format: u8,
    },
    UnsupportedFourCc(ex::FourCc),
    /// An Enhanced RTMP multitrack packet: each track's tag with its id.
    Tracks(Vec<(u8, AudioTag)>),
}

fn need(what: &'static str, need: usize, have: usize) -> Result<(), FlvError> {
    if have < need {
        return Err(FlvError::Truncated { what, need, have });
    }
    Ok(())
}

/// Signed 24-bit big-endian composition time.
fn si24(b: &[u8]) -> i32 {
    // Arithmetic shift sign-extends.
    i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8
}

/// Parses a video message body. `dts` is the already-unwrapped decode time
/// in ms (see [`crate::media::timeline`]).
///
/// The keyframe flag is FLV frame type 1, trusted as every server does;
/// types 2–4 (and undefined ones) are inter frames, like ffmpeg reads them.
pub fn parse_video(dts: i64, body: Bytes) -> Result<VideoTag, FlvError> {
    need("video tag", 1, body.len())?;
    let first = body[0];
    if first & 0x80 != 0 {
        return parse_ex_video(dts, body);
    }
    let (frame_type, codec_id) = (first >> 4, first & 0xf);
    if frame_type == 5 {
        return Ok(VideoTag::NotMedia);
    }
    if codec_id != 7 {
        return Ok(VideoTag::Unsupported { codec_id });
    }
    need("AVC video tag header", 5, body.len())?;
    let cts = si24(&body[2..5]);
    match body[1] {
        0 => Ok(VideoTag::Config(CodecConfig::Avc(
            avc::parse_decoder_config(body.slice(5..))?,
        ))),
        1 => video_frame(Codec::H264, dts, cts, frame_type, body.slice(5..)),
        2 => Ok(VideoTag::EndOfSequence),
        packet_type => Err(FlvError::BadPacketType {
            codec: "AVC",
            packet_type,
        }),
    }
}

/// Enhanced RTMP (v1/v2) `ExVideoTagHeader`, split by [`ex::parse_video`].
/// ModEx timestamp offsets are below a millisecond and dropped.
fn parse_ex_video(dts: i64, body: Bytes) -> Result<VideoTag, FlvError> {
    let ex = ex::parse_video(body)?;
    let ex::ExVideoBody::Tracks(tracks) = ex.body else {
        return Ok(VideoTag::NotMedia);
    };
    if ex.multitrack == ex::Multitrack::No {
        let Some(track) = tracks.into_iter().next() else {
            return Ok(VideoTag::NotMedia);
        };
        return ex_video_track(dts, ex.frame_type, track.fourcc, track.packet);
    }
    let tags = tracks
        .into_iter()
        .map(|t| {
            Ok((
                t.id,
                ex_video_track(dts, ex.frame_type, t.fourcc, t.packet)?,
            ))
        })
        .collect::<Result<_, FlvError>>()?;
    Ok(VideoTag::Tracks(tags))
}

/// One track of an enhanced video tag.
fn ex_video_track(
    dts: i64,
    frame_type: u8,
    fourcc: ex::FourCc,
    packet: ex::VideoPacket,
) -> Result<VideoTag, FlvError> {
    let codec = match fourcc {
        ex::FourCc::AVC => Codec::H264,
        ex::FourCc::HEVC => Codec::Hevc,
        ex::FourCc::AV1 => Codec::Av1,
        ex::FourCc::VP9 => Codec::Vp9,
        other => return Ok(VideoTag::UnsupportedFourCc(other)),
    };
    match packet {
        ex::VideoPacket::SequenceStart(record) if record.is_empty() => Ok(VideoTag::NotMedia),
        ex::VideoPacket::SequenceStart(record) => Ok(VideoTag::Config(match codec {
            Codec::H264 => CodecConfig::Avc(avc::parse_decoder_config(record)?),
            Codec::Hevc => CodecConfig::Hevc(hevc::parse_decoder_config(record)?),
            Codec::Av1 => CodecConfig::Av1(av1::parse_codec_config(record)?),
            _ => CodecConfig::Vp9(Vp9Record {
                config: vp9::parse_vpcc(&record)?,
                record,
                color_info: None,
            }),
        })),
        ex::VideoPacket::CodedFrames { cts, data } => {
            video_frame(codec, dts, cts, frame_type, data)
        }
        ex::VideoPacket::SequenceEnd => Ok(VideoTag::EndOfSequence),
        ex::VideoPacket::Metadata(body) => Ok(match parse_video_metadata(&body)? {
            VideoMetadata::ColorInfo(c) => VideoTag::ColorInfo(c),
            VideoMetadata::Other => VideoTag::NotMedia,
        }),
        // An AV1 TS descriptor (the av1C is what counts).
        ex::VideoPacket::Mpeg2TsSequenceStart(_) => Ok(VideoTag::NotMedia),
    }
}

fn video_frame(
    codec: Codec,
    dts: i64,
    cts: i32,
    frame_type: u8,
    data: Bytes,
) -> Result<VideoTag, FlvError> {
    if data.is_empty() {
        return Err(FlvError::EmptyFrame(codec.name()));
    }
    Ok(VideoTag::Frame(Frame {
        codec,
        dts,
        cts,
        keyframe: frame_type == 1,
        data,
    }))
}

/// Parses an audio message body. Audio frames are all keyframes with
/// composition offset 0.
///
/// For MP3 the sample rate and channels come from the MPEG audio frame
/// header when the payload starts with one, else from the FLV flags: FLV
/// has no 48 kHz code, so ffmpeg flags 48 kHz MP3 as 44 kHz.
pub fn parse_audio(dts: i64, body: Bytes) -> Result<AudioTag, FlvError> {
    need("audio tag", 1, body.len())?;
    let flags = body[0];
    let sound_format = flags >> 4;
    match sound_format {
        10 => {
            need("AAC audio tag header", 2, body.len())?;
            match body[1] {
                0 => {
                    let config = aac::parse_audio_specific_config(body.slice(2..))?;
                    Ok(AudioTag::Config(CodecConfig::Aac(config)))
                }
                1 => Ok(AudioTag::Frame(audio_frame(
                    Codec::Aac,
                    dts,
                    body.slice(2..),
                )?)),
                packet_type => Err(FlvError::BadPacketType {
                    codec: "AAC",
                    packet_type,
                }),
            }
        }
        2 | 14 => {
            let frame = audio_frame(Codec::Mp3, dts, body.slice(1..))?;
            let (sample_rate, channels) =
                mpeg_audio_format(&frame.data).unwrap_or_else(|| mp3_format_from_flags(flags));
            Ok(AudioTag::Mp3 {
                config: Mp3Config {
                    sample_rate,
                    channels,
                    flv_flags: flags,
                },
                frame,
            })
        }
        9 => parse_ex_audio(dts, body),
        sound_format => Ok(AudioTag::Unsupported { sound_format }),
    }
}

/// Enhanced RTMP `ExAudioTagHeader` (sound format 9), split by
/// [`ex::parse_audio`].
fn parse_ex_audio(dts: i64, body: Bytes) -> Result<AudioTag, FlvError> {
    let ex = ex::parse_audio(body)?;
    if ex.multitrack == ex::Multitrack::No {
        let Some(track) = ex.tracks.into_iter().next() else {
            return Ok(AudioTag::NotMedia);
        };
        return ex_audio_track(dts, track.fourcc, track.packet);
    }
    let tags = ex
        .tracks
        .into_iter()
        .map(|t| Ok((t.id, ex_audio_track(dts, t.fourcc, t.packet)?)))
        .collect::<Result<_, FlvError>>()?;
    Ok(AudioTag::Tracks(tags))
}

/// One track of an enhanced audio tag.
fn ex_audio_track(
    dts: i64,
    fourcc: ex::FourCc,
    packet: ex::AudioPacket,
) -> Result<AudioTag, FlvError> {
    let codec = match fourcc {
        ex::FourCc::AAC => Codec::Aac,
        ex::FourCc::MP3 => Codec::Mp3,
        ex::FourCc::OPUS => Codec::Opus,
        ex::FourCc::FLAC => Codec::Flac,
        ex::FourCc::AC3 => Codec::Ac3,
        ex::FourCc::EAC3 => Codec::Eac3,
        other => return Ok(AudioTag::UnsupportedFourCc(other)),
    };
    match packet {
        ex::AudioPacket::SequenceStart(record) if record.is_empty() => Ok(AudioTag::NotMedia),
        ex::AudioPacket::SequenceStart(record) => Ok(match codec {
            Codec::Aac => {
                AudioTag::Config(CodecConfig::Aac(aac::parse_audio_specific_config(record)?))
            }
            Codec::Opus => AudioTag::Config(CodecConfig::Opus(OpusRecord {
                head: opus::parse_opus_head(&record)?,
                record,
            })),
            Codec::Flac => AudioTag::Config(CodecConfig::Flac(FlacRecord {
                config: flac::parse_sequence_header(record.clone())?,
                record,
            })),
            // MP3, AC-3 and E-AC-3 define no sequence start.
            _ => AudioTag::NotMedia,
        }),
        // FFmpeg ends an Enhanced RTMP FLAC track with an empty coded
        // frame (the encoder's final flush): nothing to carry, no error.
        ex::AudioPacket::CodedFrames(data) if data.is_empty() => Ok(AudioTag::NotMedia),
        ex::AudioPacket::CodedFrames(data) => {
            let frame = audio_frame(codec, dts, data)?;
            if codec != Codec::Mp3 {
                return Ok(AudioTag::Frame(frame));
            }
            let (sample_rate, channels) =
                mpeg_audio_format(&frame.data).ok_or(FlvError::BadMp3Frame)?;
            Ok(AudioTag::Mp3 {
                config: Mp3Config {
                    sample_rate,
                    channels,
                    flv_flags: mpeg_audio::flv_flags(sample_rate, channels),
                },
                frame,
            })
        }
        ex::AudioPacket::SequenceEnd | ex::AudioPacket::MultichannelConfig(_) => {
            Ok(AudioTag::NotMedia)
        }
    }
}

fn audio_frame(codec: Codec, dts: i64, data: Bytes) -> Result<Frame, FlvError> {
    if data.is_empty() {
        return Err(FlvError::EmptyFrame(codec.name()));
    }
    Ok(Frame {
        codec,
        dts,
        cts: 0,
        keyframe: true,
        data,
    })
}

/// SoundRate (5.5/11/22/44 kHz) and SoundType (mono/stereo); format 14 is
/// MP3 at 8 kHz whatever the rate bits say.
fn mp3_format_from_flags(flags: u8) -> (u32, u8) {
    let rate = if flags >> 4 == 14 {
        8000
    } else {
        [5512, 11025, 22050, 44100][usize::from((flags >> 2) & 3)]
    };
    (rate, 1 + (flags & 1))
}

/// Sample rate and channels from an MPEG-1/2/2.5 audio frame header, if
/// `data` starts with a valid one.
fn mpeg_audio_format(data: &[u8]) -> Option<(u32, u8)> {
    mpeg_audio::parse_header(data).map(|h| (h.sample_rate, h.channels))
}

/// A tag body header (the bytes before a frame's or a record's payload),
/// at most [`Head::MAX`] bytes; derefs to the bytes. Kept apart from the
/// payload so that writing never copies samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    bytes: [u8; Head::MAX],
    len: u8,
}

/// The audio tag header, as it was called before Enhanced RTMP.
pub type AudioHeader = Head;

impl Head {
    /// The longest: an Enhanced RTMP `MultichannelConfig` with its flags,
    /// in a multitrack packet.
    pub const MAX: usize = 13;

    pub(crate) fn new(parts: &[&[u8]]) -> Head {
        let mut head = Head {
            bytes: [0; Head::MAX],
            len: 0,
        };
        for p in parts {
            let at = usize::from(head.len);
            head.bytes[at..at + p.len()].copy_from_slice(p);
            head.len += p.len() as u8;
        }
        head
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::ops::Deref for Head {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Head {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq<[u8]> for Head {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Head {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_bytes() == other
    }
}

/// Composition time as signed 24 bits, saturated to ±2^23 ms (about 2.3
/// hours; no real offset comes near).
fn si24_bytes(cts: i32) -> [u8; 3] {
    let b = cts.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
    [b[1], b[2], b[3]]
}

/// The video tag header for a frame. H.264 keeps the legacy form (frame
/// type 1 or 2, codec 7, AVC packet type 1, composition time), which every
/// player reads. HEVC, AV1 and VP9 get an Enhanced RTMP header: HEVC as
/// `CodedFrames` with its composition time, or `CodedFramesX` when that is
/// 0, as FFmpeg sends it; AV1 and VP9 as `CodedFrames` (no composition time
/// in their packets, so a non-zero one cannot be said and is dropped).
pub fn video_header(frame: &Frame) -> Head {
    let frame_type = if frame.keyframe { 1 } else { 2 };
    let cts = si24_bytes(frame.cts);
    match frame.codec {
        Codec::Hevc if frame.cts == 0 => {
            ex::video_head(frame_type, ex::VIDEO_CODED_FRAMES_X, ex::FourCc::HEVC, &[])
        }
        Codec::Hevc => ex::video_head(frame_type, ex::VIDEO_CODED_FRAMES, ex::FourCc::HEVC, &cts),
        Codec::Av1 | Codec::Vp9 => ex::video_head(
            frame_type,
            ex::VIDEO_CODED_FRAMES,
            ex::FourCc::of(frame.codec),
            &[],
        ),
        _ => Head::new(&[&[frame_type << 4 | 7, 1], &cts]),
    }
}

/// The audio tag header to put before `frame.data`: `AF 01` for raw AAC
/// (44 kHz/16-bit/stereo, as Flash requires for AAC whatever the real
/// format); for MP3 the single flags byte from its [`Mp3Config`]; for Opus,
/// FLAC, AC-3 and E-AC-3 an Enhanced RTMP `CodedFrames` header with the
/// FourCC. `None` for a video frame, or MP3 without `mp3_flags`.
pub fn audio_header(frame: &Frame, mp3_flags: Option<u8>) -> Option<Head> {
    match (frame.codec, mp3_flags) {
        (Codec::Aac, _) => Some(Head::new(&[&[0xaf, 0x01]])),
        (Codec::Mp3, Some(flags)) => Some(Head::new(&[&[flags]])),
        (Codec::Opus | Codec::Flac | Codec::Ac3 | Codec::Eac3, _) => Some(ex::audio_head(
            ex::AUDIO_CODED_FRAMES,
            ex::FourCc::of(frame.codec),
            &[],
        )),
        _ => None,
    }
}

/// What AC-3 and E-AC-3 sequence starts carry: nothing (FFmpeg sends them
/// empty; the configuration is in every sync frame).
static EMPTY: Bytes = Bytes::new();

/// The sequence header tag body for a configuration, as its header and the
/// bytes that follow it (kept apart so writing never copies them):
/// `17 00 00 00 00` + record for AVC, `AF 00` + AudioSpecificConfig for
/// AAC (the legacy forms), and for the other codecs an Enhanced RTMP
/// `SequenceStart` (key frame type for video) with the FourCC and the
/// record as the publisher sent it, empty for AC-3 and E-AC-3. MP3 has none.
pub fn config_parts(config: &CodecConfig) -> Option<(Head, &Bytes)> {
    let codec = config.codec();
    let head = match codec {
        Codec::H264 => Head::new(&[&[0x17, 0, 0, 0, 0]]),
        Codec::Aac => Head::new(&[&[0xaf, 0]]),
        Codec::Mp3 => return None,
        Codec::Hevc | Codec::Av1 | Codec::Vp9 => {
            ex::video_head(1, ex::VIDEO_SEQUENCE_START, ex::FourCc::of(codec), &[])
        }
        Codec::Opus | Codec::Flac | Codec::Ac3 | Codec::Eac3 => {
            ex::audio_head(ex::AUDIO_SEQUENCE_START, ex::FourCc::of(codec), &[])
        }
    };
    Some((head, config.record().unwrap_or(&EMPTY)))
}

/// [`config_parts`] as one body.
pub fn config_body(config: &CodecConfig) -> Option<Bytes> {
    let (header, payload) = config_parts(config)?;
    let mut body = Vec::with_capacity(header.len() + payload.len());
    body.extend_from_slice(&header);
    body.extend_from_slice(payload);
    Some(body.into())
}

/// The Enhanced RTMP `MultichannelConfig` body that follows an Opus, FLAC,
/// AC-3 or E-AC-3 sequence start, as FFmpeg sends it: mono as front
/// centre, stereo as front left and right, more channels with their count
/// only (castgate keeps no speaker layout; the codec's own header has it).
/// `None` for the other codecs.
pub fn multichannel_config(config: &CodecConfig) -> Option<Head> {
    let codec = config.codec();
    if codec.kind() != MediaKind::Audio || codec.is_legacy() {
        return None;
    }
    let (_, channels) = config.audio_format();
    let fourcc = ex::FourCc::of(codec);
    let layout = match channels {
        1 => ex::ChannelOrder::Native(ex::SPEAKER_FRONT_CENTER),
        2 => ex::ChannelOrder::Native(ex::SPEAKER_FRONT_LEFT | ex::SPEAKER_FRONT_RIGHT),
        _ => ex::ChannelOrder::Unspecified,
    };
    Some(ex::multichannel_head(fourcc, channels, &layout))
}

/// The Enhanced RTMP video `Metadata` packet with a configuration's
/// `colorInfo`, sent after its sequence start as FFmpeg does, for track
/// `id` (0: a plain packet); `None` without one. The frame type is
/// ignored with `Metadata`: FFmpeg writes a command frame, but a command
/// frame's multitrack packet would be a command, so other tracks' say key.
pub fn color_info_parts(config: &CodecConfig, id: TrackId) -> Option<(Head, Bytes)> {
    let info = config.color_info()?;
    let fourcc = ex::FourCc::of(config.codec());
    let packet = ex::VIDEO_METADATA;
    let head = match id {
        0 => ex::video_head(ex::VIDEO_FRAME_COMMAND, packet, fourcc, &[]),
        id => ex::track_video_head(1, packet, fourcc, id, &[]),
    };
    Some((head, info.to_amf0().into()))
}

/// The body of a sequence end for `codec`'s track, for an output that
/// ends a stream the way FFmpeg ends a file: `17 02 000000` for H.264, an
/// Enhanced RTMP `SequenceEnd` for the other non-legacy codecs; `None` for
/// AAC and MP3, which have none.
pub fn sequence_end(codec: Codec) -> Option<Head> {
    match codec {
        Codec::H264 => Some(Head::new(&[&[0x17, 2, 0, 0, 0]])),
        Codec::Aac | Codec::Mp3 => None,
        Codec::Hevc | Codec::Av1 | Codec::Vp9 => Some(ex::video_head(
            1,
            ex::VIDEO_SEQUENCE_END,
            ex::FourCc::of(codec),
            &[],
        )),
        Codec::Opus | Codec::Flac | Codec::Ac3 | Codec::Eac3 => Some(ex::audio_head(
            ex::AUDIO_SEQUENCE_END,
            ex::FourCc::of(codec),
            &[],
        )),
    }
}

/// The header of a frame of multitrack track `id` (1 or more), in a
/// one-track multitrack packet: every codec with its FourCC, H.264 as
/// `avc1` `CodedFrames` with its composition time (as FFmpeg 9 sends a
/// second track), HEVC as for track 0.
pub fn track_frame_header(frame: &Frame, id: TrackId) -> Head {
    let fourcc = ex::FourCc::of(frame.codec);
    match frame.kind() {
        MediaKind::Video => {
            let frame_type = if frame.keyframe { 1 } else { 2 };
            let cts = si24_bytes(frame.cts);
            let (packet_type, cts) = match frame.codec {
                Codec::Hevc if frame.cts == 0 => (ex::VIDEO_CODED_FRAMES_X, &[][..]),
                Codec::H264 | Codec::Hevc => (ex::VIDEO_CODED_FRAMES, &cts[..]),
                _ => (ex::VIDEO_CODED_FRAMES, &[][..]),
            };
            ex::track_video_head(frame_type, packet_type, fourcc, id, cts)
        }
        MediaKind::Audio => ex::track_audio_head(ex::AUDIO_CODED_FRAMES, fourcc, id, &[]),
    }
}

/// The sequence start of multitrack track `id` (see [`config_parts`]):
/// the record as sent after a one-track multitrack header. MP3 has none.
pub fn track_config_parts(config: &CodecConfig, id: TrackId) -> Option<(Head, &Bytes)> {
    let codec = config.codec();
    let fourcc = ex::FourCc::of(codec);
    let head = match codec.kind() {
        _ if codec == Codec::Mp3 => return None,
        MediaKind::Video => ex::track_video_head(1, ex::VIDEO_SEQUENCE_START, fourcc, id, &[]),
        MediaKind::Audio => ex::track_audio_head(ex::AUDIO_SEQUENCE_START, fourcc, id, &[]),
    };
    Some((head, config.record().unwrap_or(&EMPTY)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::hex;
    use crate::media::MediaKind;

    // Tag bodies from ffmpeg 5.1 + libx264 (64x64, High, -bf 2, SEI removed)
    // and ffmpeg's AAC encoder (48 kHz stereo, silence).
    const AVC_SEQ: &str = "170000000001640009ffe1001867640009acd94426c044000003000400000300f03c48965801000468efbcb0fdf8f800";
    const AVC_KEY: &str =
        "17010000430000001b658884006ff76ef3f89f24d99d37a91cec657321108f122f433781";
    const AVC_INTER: &str = "270100008500000009419a23188ffff32714";
    const AVC_EOS: &str = "1702000000";
    const AAC_SEQ: &str = "af00119056e500";
    const AAC_RAW: &str = "af01211004608c1c";
    // libmp3lame: 44.1 kHz joint stereo (flags 2F), 22.05 kHz mono (2A) and
    // 48 kHz stereo, which ffmpeg can only flag as 44 kHz (2F).
    const MP3_44: &str = "2ffffb90640000026b0bce9d60600000000d20a000011665";
    const MP3_22_MONO: &str = "2afff340c400133062843f4f18000bd6dbb60879a6699a66";
    const MP3_48: &str = "2ffffb9464000001ee0850bd";

    fn video(s: &str) -> VideoTag {
        parse_video(1000, hex(s)).unwrap()
    }

    fn audio(s: &str) -> AudioTag {
        parse_audio(1000, hex(s)).unwrap()
    }

    #[test]
    fn avc_sequence_header_round_trip() {
        let VideoTag::Config(CodecConfig::Avc(c)) = video(AVC_SEQ) else {
            panic!("not a config")
        };
        assert_eq!((c.width, c.height, c.profile_idc), (64, 64, 100));
        assert_eq!(avc::codec_string(&c), "avc1.640009");
        assert_eq!(config_body(&CodecConfig::Avc(c)).unwrap(), hex(AVC_SEQ));
    }

    #[test]
    fn avc_frames_round_trip() {
        for (body, key, cts) in [(AVC_KEY, true, 67), (AVC_INTER, false, 133)] {
            let body = hex(body);
            let VideoTag::Frame(f) = parse_video(1000, body.clone()).unwrap() else {
                panic!("not a frame")
            };
            assert_eq!((f.keyframe, f.cts, f.dts), (key, cts, 1000));
            assert_eq!(f.pts(), 1000 + i64::from(cts));
            assert_eq!(f.kind(), MediaKind::Video);
            assert_eq!(avc::contains_idr(&f.data, 4), key);
            // Zero-copy: the payload points into the body.
            assert_eq!(f.data.as_ptr(), body[5..].as_ptr());
            let mut out = video_header(&f).to_vec();
            out.extend_from_slice(&f.data);
            assert_eq!(out, body);
        }
    }

    #[test]
    fn negative_composition_time() {
        // The inter frame with its offset set to -33 (FF FF DF).
        let body = hex("27 01 ffffdf 00000009419a23188ffff32714");
        let VideoTag::Frame(f) = parse_video(500, body.clone()).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!((f.cts, f.pts()), (-33, 467));
        assert_eq!(video_header(&f), body[..5]);
        let min = hex("27 01 800000 00");
        let VideoTag::Frame(f) = parse_video(0, min.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(f.cts, -(1 << 23));
        assert_eq!(video_header(&f), min[..5]);
    }

    #[test]
    fn cts_beyond_24_bits_saturates() {
        let mut f = Frame {
            codec: Codec::H264,
            dts: 0,
            cts: 1 << 30,
            keyframe: false,
            data: Bytes::new(),
        };
        assert_eq!(video_header(&f), [0x27, 1, 0x7f, 0xff, 0xff]);
        f.cts = i32::MIN;
        assert_eq!(video_header(&f), [0x27, 1, 0x80, 0, 0]);
    }

    #[test]
    fn end_of_sequence_and_others() {
        assert_eq!(video(AVC_EOS), VideoTag::EndOfSequence);
        // Sorenson H.263, VP6, legacy-extension HEVC.
        for (b, id) in [("22", 2), ("14 00", 4), ("1c 00 00 00 00", 12)] {
            assert_eq!(video(b), VideoTag::Unsupported { codec_id: id });
        }
        // Video info/command frame: start of client-side seeking.
        assert_eq!(video("57 00"), VideoTag::NotMedia);
    }

    #[test]
    fn video_errors() {
        let err = |s: &str| parse_video(0, hex(s)).unwrap_err();
        assert_eq!(
            err(""),
            FlvError::Truncated {
                what: "video tag",
                need: 1,
                have: 0
            }
        );
        assert!(matches!(err("17 01 00"), FlvError::Truncated { .. }));
        assert_eq!(
            err("17 03 000000"),
            FlvError::BadPacketType {
                codec: "AVC",
                packet_type: 3
            }
        );
        assert_eq!(err("17 01 000000"), FlvError::EmptyFrame("H.264"));
        assert!(matches!(
            err("17 00 000000 02"),
            FlvError::BadAvcConfig(AvcError::Truncated { .. })
        ));
    }

    #[test]
    fn enhanced_rtmp_avc1() {
        let seq = hex(AVC_SEQ);
        let mut ex = b"\x90avc1".to_vec(); // key frame, SequenceStart
        ex.extend_from_slice(&seq[5..]);
        let VideoTag::Config(CodecConfig::Avc(c)) = parse_video(0, ex.into()).unwrap() else {
            panic!()
        };
        assert_eq!((c.width, c.height), (64, 64));

        let VideoTag::Frame(f) = parse_video(7, hex("91 61766331 ffffdf 00000001 65")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (f.keyframe, f.cts, f.dts, &f.data[..]),
            (true, -33, 7, &[0, 0, 0, 1, 0x65][..])
        );
        let VideoTag::Frame(f) = parse_video(7, hex("a3 61766331 00000001 41")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (f.keyframe, f.cts, &f.data[..]),
            (false, 0, &[0, 0, 0, 1, 0x41][..])
        );
        assert_eq!(video("92 61766331"), VideoTag::EndOfSequence);
    }

    #[test]
    fn enhanced_rtmp_others() {
        for (b, tag) in [
            (
                "91 76703038 00",
                VideoTag::UnsupportedFourCc(ex::FourCc::VP8),
            ),
            // An empty sequence start: the configuration comes later.
            ("90 61763031", VideoTag::NotMedia),
            // Command frame, a colorInfo reset (Undefined), metadata of
            // another name, end of sequence.
            ("d0 01", VideoTag::NotMedia),
            (
                "d4 61766331 02 0009 636f6c6f72496e666f 06",
                VideoTag::ColorInfo(Default::default()),
            ),
            ("d4 61766331 02 0001 78 06", VideoTag::NotMedia),
            ("92 68766331", VideoTag::EndOfSequence),
            // A second track (multitrack, one track of id 1) and the same
            // track's end.
            (
                "96 00 61766331 01",
                VideoTag::Tracks(vec![(1, VideoTag::NotMedia)]),
            ),
        ] {
            assert_eq!(video(b), tag, "{b}");
        }
        assert!(matches!(
            parse_video(0, hex("90 6176")),
            Err(FlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_video(0, hex("94 61766331 02")),
            Err(FlvError::BadVideoMetadata(_))
        ));
        assert!(matches!(
            parse_video(0, hex("91 61766331 00")),
            Err(FlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_video(0, hex("98 61766331")),
            Err(FlvError::BadPacketType { .. })
        ));
        // A record that does not parse is the tag's error.
        assert!(matches!(
            parse_video(0, hex("90 68766331 01")),
            Err(FlvError::BadHevcConfig(_))
        ));
        assert!(matches!(
            parse_video(0, hex("91 68766331 000000")),
            Err(FlvError::EmptyFrame("HEVC"))
        ));
    }

    /// Every FourCC FFmpeg 9 sends, from its FLV output: sequence starts
    /// become configurations, frames carry the codec and keyframe flag.
    #[test]
    fn enhanced_rtmp_codecs_from_ffmpeg() {
        use crate::media::flv_file::{read_tags, TAG_AUDIO, TAG_VIDEO};
        let file = Bytes::from_static(include_bytes!("testdata/hevc_opus.flv"));
        let (mut configs, mut frames) = (Vec::new(), Vec::new());
        for tag in read_tags(&file).unwrap() {
            match tag.tag_type {
                TAG_VIDEO => match parse_video(0, tag.body).unwrap() {
                    VideoTag::Config(c) => configs.push(c),
                    VideoTag::Frame(f) => frames.push(f),
                    _ => {}
                },
                TAG_AUDIO => match parse_audio(0, tag.body).unwrap() {
                    AudioTag::Config(c) => configs.push(c),
                    AudioTag::Frame(f) => frames.push(f),
                    _ => {}
                },
                _ => {}
            }
        }
        let codecs: Vec<_> = configs.iter().map(|c| c.codec()).collect();
        assert_eq!(codecs, [Codec::Hevc, Codec::Opus]);
        assert!(configs[0].codec_string().starts_with("hvc1."));
        assert!(frames.iter().any(|f| f.codec == Codec::Hevc && f.keyframe));
        assert!(frames.iter().any(|f| f.codec == Codec::Hevc && !f.keyframe));
        assert!(frames.iter().any(|f| f.codec == Codec::Opus));
    }

    /// ModEx (a nanosecond timestamp offset) around plain `avc1` coded
    /// frames: the frame is carried, the sub-millisecond offset dropped.
    #[test]
    fn enhanced_rtmp_avc1_inside_mod_ex() {
        let tag = parse_video(7, hex("97 02 0186a0 01 61766331 000002 00000001 65")).unwrap();
        let VideoTag::Frame(f) = tag else {
            panic!("{tag:?}")
        };
        assert_eq!((f.dts, f.cts, f.keyframe), (7, 2, true));
        assert_eq!(&f.data[..], &[0, 0, 0, 1, 0x65]);
    }

    #[test]
    fn aac_round_trip() {
        let AudioTag::Config(CodecConfig::Aac(c)) = audio(AAC_SEQ) else {
            panic!()
        };
        assert_eq!((c.sample_rate, c.channels), (48000, 2));
        assert_eq!(aac::codec_string(&c), "mp4a.40.2");
        assert_eq!(config_body(&CodecConfig::Aac(c)).unwrap(), hex(AAC_SEQ));

        let body = hex(AAC_RAW);
        let AudioTag::Frame(f) = parse_audio(21, body.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (f.codec, f.dts, f.cts, f.keyframe),
            (Codec::Aac, 21, 0, true)
        );
        assert_eq!(f.data.as_ptr(), body[2..].as_ptr());
        let mut out = audio_header(&f, None).unwrap().to_vec();
        out.extend_from_slice(&f.data);
        assert_eq!(out, body);
    }

    #[test]
    fn mp3() {
        for (s, rate, channels) in [
            (MP3_44, 44100, 2),
            (MP3_22_MONO, 22050, 1),
            (MP3_48, 48000, 2),
        ] {
            let body = hex(s);
            let AudioTag::Mp3 { config, frame } = parse_audio(0, body.clone()).unwrap() else {
                panic!()
            };
            assert_eq!((config.sample_rate, config.channels), (rate, channels));
            assert_eq!(config.flv_flags, body[0]);
            assert_eq!(frame.codec, Codec::Mp3);
            let mut out = audio_header(&frame, Some(config.flv_flags))
                .unwrap()
                .to_vec();
            out.extend_from_slice(&frame.data);
            assert_eq!(out, body);
            assert_eq!(config_body(&CodecConfig::Mp3(config)), None);
        }
        // No MPEG header in the payload: the flags decide. 11 kHz mono, and
        // format 14 (MP3 8 kHz) stereo.
        for (s, rate, channels) in [("26 00", 11025, 1), ("e3 00", 8000, 2)] {
            let AudioTag::Mp3 { config, .. } = audio(s) else {
                panic!()
            };
            assert_eq!((config.sample_rate, config.channels), (rate, channels));
        }
    }

    #[test]
    fn audio_others_and_errors() {
        // PCM, Nellymoser, G.711, Speex.
        for f in [0u8, 6, 7, 11] {
            assert_eq!(
                audio(&format!("{:02x} 00", f << 4 | 0xe)),
                AudioTag::Unsupported { sound_format: f }
            );
        }
        let err = |s: &str| parse_audio(0, hex(s)).unwrap_err();
        assert!(matches!(err(""), FlvError::Truncated { .. }));
        assert!(matches!(err("af"), FlvError::Truncated { .. }));
        assert_eq!(err("af 01"), FlvError::EmptyFrame("AAC"));
        assert_eq!(err("2f"), FlvError::EmptyFrame("MP3"));
        assert_eq!(
            err("af 02 00"),
            FlvError::BadPacketType {
                codec: "AAC",
                packet_type: 2
            }
        );
        assert_eq!(err("af 00"), FlvError::BadAacConfig(AacError::Truncated));
    }

    #[test]
    fn audio_header_needs_an_audio_frame() {
        let f = Frame {
            codec: Codec::H264,
            dts: 0,
            cts: 0,
            keyframe: true,
            data: Bytes::new(),
        };
        assert_eq!(audio_header(&f, Some(0x2f)), None);
        let mp3 = Frame {
            codec: Codec::Mp3,
            ..f
        };
        assert_eq!(audio_header(&mp3, None), None);
        assert_eq!(&*audio_header(&mp3, Some(0x2f)).unwrap(), &[0x2f]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn exercise(tag_video: bool, body: Bytes) {
            if tag_video {
                match parse_video(0, body) {
                    Ok(VideoTag::Config(c)) => {
                        let _ = c.codec_string();
                        let _ = config_body(&c);
                    }
                    Ok(VideoTag::Frame(f)) => {
                        let _ = video_header(&f);
                        let mut out = Vec::new();
                        let _ = avc::to_annex_b(&f.data, 4, &mut out);
                    }
                    _ => {}
                }
            } else {
                match parse_audio(0, body) {
                    Ok(AudioTag::Config(c)) => {
                        if let CodecConfig::Aac(a) = &c {
                            let _ = aac::adts_header(a, 100);
                        }
                        let _ = config_body(&c);
                    }
                    Ok(AudioTag::Frame(f)) => {
                        let _ = audio_header(&f, None);
                    }
                    Ok(AudioTag::Mp3 { config, frame }) => {
                        assert!(config.sample_rate > 0 && config.channels > 0);
                        let _ = audio_header(&frame, Some(config.flv_flags));
                    }
                    _ => {}
                }
            }
        }

        proptest! {
            #[test]
            fn arbitrary_bodies_never_panic(video in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 0..200)) {
                exercise(video, data.into());
            }

            #[test]
            fn plausible_headers_never_panic(
                first in prop_oneof![Just(0x17u8), Just(0x27), Just(0x90), Just(0x91), Just(0xaf), Just(0x2f)],
                second in 0u8..4,
                rest in proptest::collection::vec(any::<u8>(), 0..120),
            ) {
                let mut body = vec![first, second];
                body.extend(rest);
                exercise(first & 0xf == 7 || first & 0x80 != 0, body.into());
            }

            #[test]
            fn video_header_round_trips(cts in -(1i32 << 23)..(1 << 23), key in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 1..50)) {
                let f = Frame { codec: Codec::H264, dts: 5, cts, keyframe: key, data: data.into() };
                let mut body = video_header(&f).to_vec();
                body.extend_from_slice(&f.data);
                prop_assert_eq!(parse_video(5, body.into()).unwrap(), VideoTag::Frame(f));
            }
        }
    }
}
