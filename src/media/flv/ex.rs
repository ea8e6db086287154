//! Enhanced RTMP tag headers (veovera E-RTMP v1 and v2): the structure of
//! an `ExVideoTagHeader` or `ExAudioTagHeader` body, before any codec is
//! looked at.
//!
//! A legacy FLV tag names its codec with a 4-bit id; an enhanced one sets
//! the top bit of the first byte (video) or uses sound format 9 (audio) and
//! names it with a FourCC (`hvc1`, `av01`, `Opus`, ...). Version 2 adds:
//!
//! - **ModEx** packets that wrap the real packet type with modifiers; the
//!   one defined is a nanosecond offset added to the millisecond timestamp.
//! - **Multitrack** packets: one track with an id (`OneTrack`), several
//!   tracks of one codec (`ManyTracks`), or several of different codecs
//!   (`ManyTracksManyCodecs`), each with its own size. OBS sends a whole
//!   ladder of renditions this way; FFmpeg sends track 0 as plain packets
//!   and each further track as a `OneTrack` packet.
//! - Audio `MultichannelConfig` and video `Metadata` (AMF, `colorInfo`).
//!
//! [`parse_video`] and [`parse_audio`] split a body into [`Track`]s, each a
//! FourCC, a track id (0 outside multitrack) and a packet whose payload is
//! a [`Bytes::slice`] of the body. Every length is checked against what is
//! left before it is used, and a body holds at most [`MAX_TRACKS`] tracks.

use bytes::Bytes;

use super::tag::{FlvError, Head};
use crate::media::Codec;

/// Most tracks one multitrack body may carry (E-RTMP track ids are one
/// byte; a ladder of 16 renditions is far beyond any encoder's).
pub const MAX_TRACKS: usize = 16;

/// A codec's four-character code, as sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const AVC: FourCc = FourCc(*b"avc1");
    pub const HEVC: FourCc = FourCc(*b"hvc1");
    pub const AV1: FourCc = FourCc(*b"av01");
    pub const VP9: FourCc = FourCc(*b"vp09");
    pub const VP8: FourCc = FourCc(*b"vp08");
    pub const AAC: FourCc = FourCc(*b"mp4a");
    pub const MP3: FourCc = FourCc(*b".mp3");
    pub const OPUS: FourCc = FourCc(*b"Opus");
    pub const FLAC: FourCc = FourCc(*b"fLaC");
    pub const AC3: FourCc = FourCc(*b"ac-3");
    pub const EAC3: FourCc = FourCc(*b"ec-3");
}

impl FourCc {
    /// The codec castgate carries under this FourCC, if any.
    pub fn codec(self) -> Option<Codec> {
        Some(match self {
            FourCc::AVC => Codec::H264,
            FourCc::HEVC => Codec::Hevc,
            FourCc::AV1 => Codec::Av1,
            FourCc::VP9 => Codec::Vp9,
            FourCc::AAC => Codec::Aac,
            FourCc::MP3 => Codec::Mp3,
            FourCc::OPUS => Codec::Opus,
            FourCc::FLAC => Codec::Flac,
            FourCc::AC3 => Codec::Ac3,
            FourCc::EAC3 => Codec::Eac3,
            _ => return None,
        })
    }

    /// The FourCC Enhanced RTMP names `codec` with.
    pub fn of(codec: Codec) -> FourCc {
        match codec {
            Codec::H264 => FourCc::AVC,
            Codec::Hevc => FourCc::HEVC,
            Codec::Av1 => FourCc::AV1,
            Codec::Vp9 => FourCc::VP9,
            Codec::Aac => FourCc::AAC,
            Codec::Mp3 => FourCc::MP3,
            Codec::Opus => FourCc::OPUS,
            Codec::Flac => FourCc::FLAC,
            Codec::Ac3 => FourCc::AC3,
            Codec::Eac3 => FourCc::EAC3,
        }
    }

    /// The four characters, if they are ASCII graphics (a FourCC from the
    /// network may not be).
    pub fn as_str(&self) -> Option<&str> {
        self.0
            .iter()
            .all(|b| b.is_ascii_graphic())
            .then(|| std::str::from_utf8(&self.0).ok())
            .flatten()
    }
}

/// Printable for logs: the four characters when they are ASCII graphics,
/// else hex (a FourCC comes from the network).
impl std::fmt::Display for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            self.0.iter().try_for_each(|&b| write!(f, "{}", b as char))
        } else {
            write!(f, "0x{:08x}", u32::from_be_bytes(self.0))
        }
    }
}

impl std::fmt::Debug for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FourCc({self})")
    }
}

/// How a multitrack packet lays out its tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multitrack {
    /// Not a multitrack packet: one track, id 0.
    No,
    OneTrack,
    ManyTracks,
    ManyTracksManyCodecs,
}

/// A video packet of one track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoPacket {
    /// The decoder configuration record (`avcC`, `hvcC`, `av1C`, `vpcC`).
    SequenceStart(Bytes),
    /// Coded frames with their composition time offset (ms; sent for
    /// `avc1` and `hvc1` in `CodedFrames`, 0 in `CodedFramesX` and for
    /// other codecs).
    CodedFrames {
        cts: i32,
        data: Bytes,
    },
    SequenceEnd,
    /// AMF-encoded metadata, e.g. `colorInfo` (HDR).
    Metadata(Bytes),
    /// An AV1 `MPEG2TSSequenceStart` (a TS AV1 video descriptor).
    Mpeg2TsSequenceStart(Bytes),
}

/// An audio packet of one track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioPacket {
    /// Codec configuration: AudioSpecificConfig, `OpusHead`, FLAC's
    /// `fLaC` + metadata blocks; none for AC-3/E-AC-3 and MP3.
    SequenceStart(Bytes),
    CodedFrames(Bytes),
    SequenceEnd,
    MultichannelConfig(ChannelLayout),
}

/// An audio track's channel layout (`MultichannelConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLayout {
    pub channels: u8,
    pub order: ChannelOrder,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelOrder {
    Unspecified,
    /// Speaker flags (bit 0 front left, 1 front right, 2 front centre, ...).
    Native(u32),
    /// One speaker id per channel.
    Custom(Bytes),
}

/// One track of an enhanced tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track<P> {
    pub fourcc: FourCc,
    /// 0 for a plain (non-multitrack) packet.
    pub id: u8,
    pub packet: P,
}

/// An enhanced video tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExVideo {
    /// FLV frame type: 1 key, 2 inter, 3 disposable, 4 generated key, 5 command.
    pub frame_type: u8,
    /// Nanoseconds to add to the tag's millisecond timestamp (ModEx), below 1 ms.
    pub nanos: u32,
    pub multitrack: Multitrack,
    pub body: ExVideoBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExVideoBody {
    /// A command frame (frame type 5): a command byte, no picture
    /// (0 start seek, 1 end seek).
    Command(u8),
    Tracks(Vec<Track<VideoPacket>>),
}

/// An enhanced audio tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExAudio {
    /// Nanoseconds to add to the tag's millisecond timestamp (ModEx).
    pub nanos: u32,
    pub multitrack: Multitrack,
    pub tracks: Vec<Track<AudioPacket>>,
}

/// Video packet types (the low nibble of an enhanced video header).
pub const VIDEO_SEQUENCE_START: u8 = 0;
pub const VIDEO_CODED_FRAMES: u8 = 1;
pub const VIDEO_SEQUENCE_END: u8 = 2;
/// Coded frames with a composition time of 0, which is not sent.
pub const VIDEO_CODED_FRAMES_X: u8 = 3;
/// Audio packet types (the low nibble of an enhanced audio header).
pub const AUDIO_SEQUENCE_START: u8 = 0;
pub const AUDIO_CODED_FRAMES: u8 = 1;
pub const AUDIO_SEQUENCE_END: u8 = 2;
pub const AUDIO_MULTICHANNEL_CONFIG: u8 = 4;
/// Sound format 9: an enhanced audio header.
const AUDIO_EX_HEADER: u8 = 9 << 4;
/// `AudioChannelMask` speakers (the first three; FFmpeg's masks agree).
pub const SPEAKER_FRONT_LEFT: u32 = 0x1;
pub const SPEAKER_FRONT_RIGHT: u32 = 0x2;
pub const SPEAKER_FRONT_CENTER: u32 = 0x4;

/// An enhanced video header: IsExHeader, the FLV frame type (1 key, 2
/// inter), the packet type, the FourCC, then `extra` (a composition time).
pub fn video_head(frame_type: u8, packet_type: u8, fourcc: FourCc, extra: &[u8]) -> Head {
    Head::new(&[
        &[0x80 | (frame_type & 7) << 4 | packet_type & 0xf],
        &fourcc.0,
        extra,
    ])
}

/// An enhanced audio header: sound format 9, the packet type, the FourCC,
/// then `extra`.
pub fn audio_head(packet_type: u8, fourcc: FourCc, extra: &[u8]) -> Head {
    Head::new(&[&[AUDIO_EX_HEADER | packet_type & 0xf], &fourcc.0, extra])
}

/// An enhanced video header of a one-track multitrack packet (a track other
/// than 0): IsExHeader, the frame type, `Multitrack`, then `OneTrack` with
/// the packet type, the FourCC, the track id and `extra`.
pub fn track_video_head(
    frame_type: u8,
    packet_type: u8,
    fourcc: FourCc,
    id: u8,
    extra: &[u8],
) -> Head {
    Head::new(&[
        &[0x80 | (frame_type & 7) << 4 | PACKET_MULTITRACK_VIDEO],
        &[MULTITRACK_ONE_TRACK << 4 | packet_type & 0xf],
        &fourcc.0,
        &[id],
        extra,
    ])
}

/// An enhanced audio header of a one-track multitrack packet.
pub fn track_audio_head(packet_type: u8, fourcc: FourCc, id: u8, extra: &[u8]) -> Head {
    Head::new(&[
        &[AUDIO_EX_HEADER | PACKET_MULTITRACK_AUDIO],
        &[MULTITRACK_ONE_TRACK << 4 | packet_type & 0xf],
        &fourcc.0,
        &[id],
        extra,
    ])
}

/// `AvMultitrackType::OneTrack`.
const MULTITRACK_ONE_TRACK: u8 = 0;

/// A whole `MultichannelConfig` body. A custom order's speaker ids do not
/// fit a [`Head`] and are written as unspecified.
pub fn multichannel_head(fourcc: FourCc, channels: u8, order: &ChannelOrder) -> Head {
    match order {
        ChannelOrder::Native(flags) => audio_head(
            AUDIO_MULTICHANNEL_CONFIG,
            fourcc,
            &[&[1, channels][..], &flags.to_be_bytes()].concat(),
        ),
        _ => audio_head(AUDIO_MULTICHANNEL_CONFIG, fourcc, &[0, channels]),
    }
}

/// The FLV frame type of a video packet that holds no picture.
pub const VIDEO_FRAME_COMMAND: u8 = 5;
const PACKET_MULTITRACK_VIDEO: u8 = 6;
const PACKET_MULTITRACK_AUDIO: u8 = 5;
const PACKET_MOD_EX: u8 = 7;
/// An AMF `[name, value]` list, e.g. `colorInfo`.
pub const VIDEO_METADATA: u8 = 4;
/// The one ModEx type defined, for audio and video alike.
const MOD_EX_TIMESTAMP_OFFSET_NANO: u8 = 0;

/// A bounded reader over a tag body.
struct Cursor {
    body: Bytes,
    at: usize,
}

impl Cursor {
    fn left(&self) -> usize {
        self.body.len() - self.at
    }

    fn take(&mut self, what: &'static str, n: usize) -> Result<Bytes, FlvError> {
        if self.left() < n {
            return Err(FlvError::Truncated {
                what,
                need: n,
                have: self.left(),
            });
        }
        let b = self.body.slice(self.at..self.at + n);
        self.at += n;
        Ok(b)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FlvError> {
        Ok(self.take(what, 1)?[0])
    }

    fn u24(&mut self, what: &'static str) -> Result<u32, FlvError> {
        let b = self.take(what, 3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    fn fourcc(&mut self, what: &'static str) -> Result<FourCc, FlvError> {
        let b = self.take(what, 4)?;
        Ok(FourCc([b[0], b[1], b[2], b[3]]))
    }

    fn rest(&mut self) -> Bytes {
        let b = self.body.slice(self.at..);
        self.at = self.body.len();
        b
    }
}

/// Follows ModEx packets to the real packet type, keeping the timestamp
/// offset. Each ModEx carries its data size (one byte, or two after 0xff),
/// its data, then the modifier type and the next packet type in one byte.
fn mod_ex(c: &mut Cursor, mut packet_type: u8) -> Result<(u8, u32), FlvError> {
    let mut nanos = 0;
    while packet_type == PACKET_MOD_EX {
        let mut size = usize::from(c.u8("ModEx data size")?) + 1;
        if size == 256 {
            let b = c.take("ModEx data size", 2)?;
            size = usize::from(u16::from_be_bytes([b[0], b[1]])) + 1;
        }
        let data = c.take("ModEx data", size)?;
        let next = c.u8("ModEx type")?;
        let (mod_type, next_type) = (next >> 4, next & 0xf);
        if mod_type == MOD_EX_TIMESTAMP_OFFSET_NANO && data.len() >= 3 {
            // Below a millisecond by definition; larger values are clamped.
            nanos = u32::from_be_bytes([0, data[0], data[1], data[2]]).min(999_999);
        }
        packet_type = next_type;
    }
    Ok((packet_type, nanos))
}

/// After the packet type: the multitrack layout, the real packet type and
/// the shared FourCC (none for `ManyTracksManyCodecs`, each track has one).
fn multitrack_header(
    c: &mut Cursor,
    packet_type: u8,
    multitrack_type: u8,
    fourcc_what: &'static str,
) -> Result<(Multitrack, u8, Option<FourCc>), FlvError> {
    if packet_type != multitrack_type {
        return Ok((Multitrack::No, packet_type, Some(c.fourcc(fourcc_what)?)));
    }
    let b = c.u8("multitrack type")?;
    let layout = match b >> 4 {
        0 => Multitrack::OneTrack,
        1 => Multitrack::ManyTracks,
        2 => Multitrack::ManyTracksManyCodecs,
        other => {
            return Err(FlvError::BadPacketType {
                codec: "Enhanced RTMP multitrack layout",
                packet_type: other,
            })
        }
    };
    let inner = b & 0xf;
    if inner == multitrack_type || inner == PACKET_MOD_EX {
        return Err(FlvError::BadPacketType {
            codec: "Enhanced RTMP multitrack (nested)",
            packet_type: inner,
        });
    }
    let fourcc = match layout {
        Multitrack::ManyTracksManyCodecs => None,
        _ => Some(c.fourcc(fourcc_what)?),
    };
    Ok((layout, inner, fourcc))
}

/// Splits the rest of the body into tracks, reading each one's packet with
/// `packet` (from a cursor over that track's bytes only).
fn tracks<P>(
    c: &mut Cursor,
    layout: Multitrack,
    shared: Option<FourCc>,
    fourcc_what: &'static str,
    mut packet: impl FnMut(&mut Cursor, FourCc) -> Result<P, FlvError>,
) -> Result<Vec<Track<P>>, FlvError> {
    let mut out = Vec::new();
    loop {
        if out.len() == MAX_TRACKS {
            return Err(FlvError::TooManyTracks(MAX_TRACKS));
        }
        let fourcc = match shared {
            Some(f) => f,
            None => c.fourcc(fourcc_what)?,
        };
        let id = match layout {
            Multitrack::No => 0,
            _ => c.u8("track id")?,
        };
        let mut track = match layout {
            Multitrack::ManyTracks | Multitrack::ManyTracksManyCodecs => {
                let size = c.u24("track size")? as usize;
                Cursor {
                    body: c.take("track", size)?,
                    at: 0,
                }
            }
            Multitrack::No | Multitrack::OneTrack => Cursor {
                body: c.rest(),
                at: 0,
            },
        };
        out.push(Track {
            fourcc,
            id,
            packet: packet(&mut track, fourcc)?,
        });
        if c.left() == 0 {
            return Ok(out);
        }
    }
}

/// Parses an enhanced video tag body (its first byte has the top bit set).
pub fn parse_video(body: Bytes) -> Result<ExVideo, FlvError> {
    let mut c = Cursor { body, at: 0 };
    let first = c.u8("Enhanced RTMP video header")?;
    let frame_type = (first >> 4) & 7;
    let (packet_type, nanos) = mod_ex(&mut c, first & 0xf)?;
    if frame_type == VIDEO_FRAME_COMMAND && packet_type != VIDEO_METADATA {
        return Ok(ExVideo {
            frame_type,
            nanos,
            multitrack: Multitrack::No,
            body: ExVideoBody::Command(c.u8("video command")?),
        });
    }
    const FOURCC: &str = "Enhanced RTMP video FourCC";
    let (layout, packet_type, shared) =
        multitrack_header(&mut c, packet_type, PACKET_MULTITRACK_VIDEO, FOURCC)?;
    let tracks = tracks(&mut c, layout, shared, FOURCC, |t, fourcc| {
        Ok(match packet_type {
            0 => VideoPacket::SequenceStart(t.rest()),
            1 => {
                // Only AVC and HEVC carry a composition time here.
                let cts = if matches!(fourcc, FourCc::AVC | FourCc::HEVC) {
                    si24(t.u24("composition time")?)
                } else {
                    0
                };
                VideoPacket::CodedFrames {
                    cts,
                    data: t.rest(),
                }
            }
            2 => VideoPacket::SequenceEnd,
            3 => VideoPacket::CodedFrames {
                cts: 0,
                data: t.rest(),
            },
            VIDEO_METADATA => VideoPacket::Metadata(t.rest()),
            5 => VideoPacket::Mpeg2TsSequenceStart(t.rest()),
            other => {
                return Err(FlvError::BadPacketType {
                    codec: "Enhanced RTMP video",
                    packet_type: other,
                })
            }
        })
    })?;
    Ok(ExVideo {
        frame_type,
        nanos,
        multitrack: layout,
        body: ExVideoBody::Tracks(tracks),
    })
}

/// Parses an enhanced audio tag body (sound format 9).
pub fn parse_audio(body: Bytes) -> Result<ExAudio, FlvError> {
    let mut c = Cursor { body, at: 0 };
    let first = c.u8("Enhanced RTMP audio header")?;
    let (packet_type, nanos) = mod_ex(&mut c, first & 0xf)?;
    const FOURCC: &str = "Enhanced RTMP audio FourCC";
    let (layout, packet_type, shared) =
        multitrack_header(&mut c, packet_type, PACKET_MULTITRACK_AUDIO, FOURCC)?;
    let tracks = tracks(&mut c, layout, shared, FOURCC, |t, _| {
        Ok(match packet_type {
            0 => AudioPacket::SequenceStart(t.rest()),
            1 => AudioPacket::CodedFrames(t.rest()),
            2 => AudioPacket::SequenceEnd,
            4 => {
                let order = t.u8("channel order")?;
                let channels = t.u8("channel count")?;
                let order = match order {
                    0 => ChannelOrder::Unspecified,
                    1 => {
                        let b = t.take("channel flags", 4)?;
                        ChannelOrder::Native(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    }
                    2 => ChannelOrder::Custom(t.take("channel mapping", usize::from(channels))?),
                    other => {
                        return Err(FlvError::BadPacketType {
                            codec: "Enhanced RTMP channel order",
                            packet_type: other,
                        })
                    }
                };
                AudioPacket::MultichannelConfig(ChannelLayout { channels, order })
            }
            other => {
                return Err(FlvError::BadPacketType {
                    codec: "Enhanced RTMP audio",
                    packet_type: other,
                })
            }
        })
    })?;
    Ok(ExAudio {
        nanos,
        multitrack: layout,
        tracks,
    })
}

/// Sign-extends a 24-bit value.
fn si24(v: u32) -> i32 {
    ((v << 8) as i32) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::hex;
    use crate::media::flv_file::read_tags;

    fn video(h: &str) -> Result<ExVideo, FlvError> {
        parse_video(hex(h))
    }

    fn audio(h: &str) -> Result<ExAudio, FlvError> {
        parse_audio(hex(h))
    }

    /// FFmpeg 9 (`-c:v libx265 -c:a libopus -f flv`): every enhanced tag
    /// of the file parses, in the order FFmpeg sends them: the HEVC and
    /// Opus configurations, the Opus channel layout, a colorInfo metadata
    /// command frame, then coded frames with composition times.
    #[test]
    fn ffmpeg_9_hevc_and_opus() {
        let file = Bytes::from_static(include_bytes!("testdata/hevc_opus.flv"));
        let mut seen = Vec::new();
        for tag in read_tags(&file).unwrap() {
            match tag.tag_type {
                9 => {
                    let v = parse_video(tag.body).unwrap();
                    assert_eq!(v.multitrack, Multitrack::No);
                    let ExVideoBody::Tracks(t) = v.body else {
                        panic!("a command")
                    };
                    assert_eq!((t.len(), t[0].fourcc, t[0].id), (1, FourCc::HEVC, 0));
                    seen.push(match &t[0].packet {
                        VideoPacket::SequenceStart(b) => format!("hvcC {}", b.len()),
                        VideoPacket::Metadata(b) => {
                            assert_eq!(v.frame_type, 5);
                            assert!(b.windows(9).any(|w| w == b"colorInfo"));
                            "metadata".into()
                        }
                        VideoPacket::CodedFrames { cts, .. } => {
                            format!("video {} cts {cts}", v.frame_type)
                        }
                        other => panic!("{other:?}"),
                    });
                }
                8 => {
                    let a = parse_audio(tag.body).unwrap();
                    assert_eq!((a.tracks.len(), a.tracks[0].fourcc), (1, FourCc::OPUS));
                    seen.push(match &a.tracks[0].packet {
                        AudioPacket::SequenceStart(b) => {
                            assert!(b.starts_with(b"OpusHead"));
                            "OpusHead".into()
                        }
                        AudioPacket::MultichannelConfig(l) => format!("{l:?}"),
                        AudioPacket::CodedFrames(_) => "opus".into(),
                        other => panic!("{other:?}"),
                    });
                }
                _ => {}
            }
        }
        assert!(seen[0].starts_with("hvcC "), "{seen:?}");
        assert_eq!(seen[1], "OpusHead");
        assert_eq!(
            seen[2], "ChannelLayout { channels: 1, order: Native(4) }",
            "mono: front centre"
        );
        assert_eq!(seen[3], "metadata");
        assert_eq!(seen[4], "video 1 cts 200", "{seen:?}");
        assert!(seen.iter().filter(|s| *s == "opus").count() > 10);
    }

    /// FFmpeg 9 with two mapped video streams: track 0 as plain packets
    /// (legacy AVC here), track 1 as `OneTrack` multitrack packets.
    #[test]
    fn ffmpeg_9_second_video_track_is_one_track_multitrack() {
        let file = Bytes::from_static(include_bytes!("testdata/multitrack.flv"));
        let mut track1 = Vec::new();
        for tag in read_tags(&file).unwrap() {
            if tag.tag_type != 9 || tag.body[0] & 0x80 == 0 {
                continue;
            }
            let v = parse_video(tag.body).unwrap();
            assert_eq!(v.multitrack, Multitrack::OneTrack);
            let ExVideoBody::Tracks(t) = v.body else {
                panic!("a command")
            };
            assert_eq!((t.len(), t[0].fourcc, t[0].id), (1, FourCc::AVC, 1));
            track1.push(t[0].packet.clone());
        }
        assert!(matches!(track1[0], VideoPacket::SequenceStart(_)));
        assert!(track1[1..]
            .iter()
            .all(|p| matches!(p, VideoPacket::CodedFrames { .. })));
        assert!(track1.len() > 3);
    }

    #[test]
    fn many_tracks_of_many_codecs_each_with_its_size() {
        // Key frame, Multitrack; ManyTracksManyCodecs of CodedFramesX:
        // track 1 av01 (2 bytes), track 2 vp09 (3 bytes).
        let v = video("96 23 6176 3031 01 000002 aabb 7670 3039 02 000003 ccddee").unwrap();
        assert_eq!(v.multitrack, Multitrack::ManyTracksManyCodecs);
        let ExVideoBody::Tracks(t) = v.body else {
            panic!()
        };
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].fourcc, t[0].id), (FourCc::AV1, 1));
        assert_eq!((t[1].fourcc, t[1].id), (FourCc::VP9, 2));
        assert_eq!(
            t[1].packet,
            VideoPacket::CodedFrames {
                cts: 0,
                data: Bytes::from_static(&[0xcc, 0xdd, 0xee])
            }
        );
        // A size beyond the body is an error, not a short read.
        assert!(matches!(
            video("96 23 6176 3031 01 000009 aabb"),
            Err(FlvError::Truncated { .. })
        ));
    }

    #[test]
    fn many_tracks_of_one_codec_share_the_fourcc() {
        // ManyTracks of SequenceEnd for two hvc1 tracks (empty bodies).
        let v = video("96 12 6876 6331 00 000000 01 000000").unwrap();
        let ExVideoBody::Tracks(t) = v.body else {
            panic!()
        };
        assert_eq!(
            t.iter().map(|t| (t.fourcc, t.id)).collect::<Vec<_>>(),
            [(FourCc::HEVC, 0), (FourCc::HEVC, 1)]
        );
        assert!(t.iter().all(|t| t.packet == VideoPacket::SequenceEnd));
    }

    #[test]
    fn mod_ex_carries_a_nanosecond_offset() {
        // ModEx: size 3 (sent as 2), 250000 ns, then type 0 / CodedFrames
        // of hvc1 with composition time -1.
        let v = video("97 02 03d090 01 6876 6331 ffffff 00").unwrap();
        assert_eq!(v.nanos, 250_000);
        let ExVideoBody::Tracks(t) = v.body else {
            panic!()
        };
        assert_eq!(
            t[0].packet,
            VideoPacket::CodedFrames {
                cts: -1,
                data: Bytes::from_static(&[0])
            }
        );
        let a = audio("97 02 000001 01 4f707573 aa").unwrap();
        assert_eq!((a.nanos, a.tracks[0].fourcc), (1, FourCc::OPUS));
    }

    #[test]
    fn command_frames_have_no_fourcc() {
        let v = video("d0 01").unwrap();
        assert_eq!(v.body, ExVideoBody::Command(1));
    }

    #[test]
    fn audio_layouts() {
        let a = audio("94 6163 2d33 02 06 000102030405").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.tracks[0].fourcc, FourCc::AC3);
        assert_eq!(
            a.tracks[0].packet,
            AudioPacket::MultichannelConfig(ChannelLayout {
                channels: 6,
                order: ChannelOrder::Custom(Bytes::from_static(&[0, 1, 2, 3, 4, 5]))
            })
        );
        assert!(audio("94 6163 2d33 02 06 0001").is_err());
        assert!(audio("94 6163 2d33 07 06").is_err());
    }

    #[test]
    fn bounded_and_never_panics() {
        // More tracks than allowed.
        let mut many = String::from("96 13 6176 3031");
        for id in 0..=MAX_TRACKS {
            many.push_str(&format!(" {id:02x} 000000"));
        }
        assert_eq!(video(&many), Err(FlvError::TooManyTracks(MAX_TRACKS)));
        // Nested multitrack, ModEx inside multitrack, unknown layouts.
        assert!(video("96 06 6176 3031").is_err());
        assert!(video("96 37 6176 3031").is_err());
        assert!(video("96 07 6176 3031").is_err());
        // Every prefix of valid bodies is an error or a value, never a panic.
        for h in [
            "96 23 6176 3031 01 000002 aabb 7670 3039 02 000003 ccddee",
            "97 02 03d090 01 6876 6331 ffffff 00",
            "97 ff 00ff",
        ] {
            let b = hex(h);
            for n in 0..=b.len() {
                let _ = parse_video(b.slice(..n));
                let _ = parse_audio(b.slice(..n));
            }
        }
    }
}
