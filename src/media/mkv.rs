//! A live Matroska writer (sans-I/O): hub tracks and frames as a byte
//! stream any ffmpeg reads, for the codecs a legacy FLV tag cannot carry.
//!
//! Debian's ffmpeg 5.1 reads HEVC, AV1, VP9, Opus, FLAC, AC-3 and E-AC-3 from
//! Matroska but not from FLV, so the transcoder feeds it this instead when a
//! source is not legacy (see `transcode`). Matroska's codec mappings take
//! castgate's frames as they are: length-prefixed NAL units with the
//! `avcC`/`hvcC` record as `CodecPrivate`, AV1 OBUs with `av1C`, raw Opus,
//! FLAC, AC-3 and AAC frames.
//!
//! The stream is an EBML header, a Segment of unknown size (it never ends),
//! its Info and Tracks, then one Cluster of known size per frame holding one
//! SimpleBlock: nothing is held back waiting for the next frame, and a
//! reader never has to guess where a Cluster ends. Times are milliseconds
//! (`TimestampScale` 1 ms, the hub's unit); a block's time is the frame's
//! presentation time, as Matroska wants.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecConfig, Frame, MediaKind};

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const FLAG_LACING: u32 = 0x9C;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// The size of an element whose end is not known (all ones, 8 bytes).
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// What cannot be written as Matroska.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MkvError {
    #[error("{0} has no Matroska mapping castgate writes")]
    Unsupported(&'static str),
}

/// The Matroska `CodecID` and `CodecPrivate` for a configuration.
fn codec(config: &CodecConfig) -> Result<(&'static str, Option<Bytes>), MkvError> {
    Ok(match config {
        CodecConfig::Avc(c) => ("V_MPEG4/ISO/AVC", Some(c.record.clone())),
        CodecConfig::Hevc(c) => ("V_MPEGH/ISO/HEVC", Some(c.record.clone())),
        CodecConfig::Av1(c) => ("V_AV1", Some(c.record.clone())),
        CodecConfig::Vp9(_) => ("V_VP9", None),
        CodecConfig::Aac(c) => ("A_AAC", Some(c.asc.clone())),
        CodecConfig::Mp3(_) => ("A_MPEG/L3", None),
        CodecConfig::Opus(c) => ("A_OPUS", Some(c.record.clone())),
        CodecConfig::Flac(c) => {
            // The `fLaC` marker and the metadata blocks, as in a file;
            // `dfLa` holds the blocks after its version and flags.
            let mut private = b"fLaC".to_vec();
            private.extend_from_slice(&c.config.to_dfla()[4..]);
            ("A_FLAC", Some(private.into()))
        }
        CodecConfig::Ac3(_) => ("A_AC3", None),
        CodecConfig::Eac3(_) => ("A_EAC3", None),
    })
}

/// Writes an element ID (its bytes already carry their length marker).
fn put_id(out: &mut BytesMut, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.put_slice(&bytes[skip..]);
}

/// Writes an element size as an EBML variable-length integer (8 bytes at
/// most: sizes up to 2^56 - 2).
fn put_size(out: &mut BytesMut, size: u64) {
    let len = (1..=8).find(|n| size < (1u64 << (7 * n)) - 1).unwrap_or(8);
    let marked = size | (1u64 << (7 * len));
    out.put_slice(&marked.to_be_bytes()[8 - len..]);
}

fn put_element(out: &mut BytesMut, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.put_slice(body);
}

fn put_uint(out: &mut BytesMut, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_element(out, id, &bytes[skip..]);
}

fn put_master(out: &mut BytesMut, id: u32, body: impl FnOnce(&mut BytesMut)) {
    let mut inner = BytesMut::new();
    body(&mut inner);
    put_element(out, id, &inner);
}

/// The Matroska stream of one video and (optionally) one audio track.
pub struct MkvWriter {
    video: Option<Track>,
    audio: Option<Track>,
    /// Added to every time (ms), so none is negative.
    offset_ms: i64,
}

struct Track {
    number: u8,
    config: CodecConfig,
}

impl MkvWriter {
    /// A stream of these tracks (video is track 1, audio track 2);
    /// `offset_ms` is added to every time. Fails for a track Matroska
    /// cannot carry here.
    pub fn new(
        video: Option<&CodecConfig>,
        audio: Option<&CodecConfig>,
        offset_ms: i64,
    ) -> Result<Self, MkvError> {
        for c in [video, audio].into_iter().flatten() {
            codec(c)?;
        }
        let track = |number, c: Option<&CodecConfig>| {
            c.map(|c| Track {
                number,
                config: c.clone(),
            })
        };
        Ok(MkvWriter {
            video: track(1, video),
            audio: track(2, audio),
            offset_ms,
        })
    }

    /// The EBML header, the start of the Segment, its Info and Tracks.
    pub fn header(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(512);
        put_master(&mut out, EBML, |e| {
            put_uint(e, EBML_VERSION, 1);
            put_uint(e, EBML_READ_VERSION, 1);
            put_uint(e, EBML_MAX_ID_LENGTH, 4);
            put_uint(e, EBML_MAX_SIZE_LENGTH, 8);
            put_element(e, DOC_TYPE, b"matroska");
            put_uint(e, DOC_TYPE_VERSION, 4);
            put_uint(e, DOC_TYPE_READ_VERSION, 2);
        });
        put_id(&mut out, SEGMENT);
        out.put_slice(&UNKNOWN_SIZE);
        put_master(&mut out, INFO, |i| {
            put_uint(i, TIMESTAMP_SCALE, 1_000_000);
            put_element(i, MUXING_APP, b"castgate");
            put_element(i, WRITING_APP, b"castgate");
        });
        put_master(&mut out, TRACKS, |t| {
            for track in [&self.video, &self.audio].into_iter().flatten() {
                put_master(t, TRACK_ENTRY, |e| track_entry(e, track));
            }
        });
        out.freeze()
    }

    /// A Cluster holding `frame` (of track 0 of its kind), or `None` when
    /// the stream has no track of that kind.
    pub fn frame(&self, frame: &Frame) -> Option<Bytes> {
        let track = match frame.kind() {
            MediaKind::Video => self.video.as_ref()?,
            MediaKind::Audio => self.audio.as_ref()?,
        };
        let pts = (frame.pts() + self.offset_ms).max(0) as u64;
        let mut out = BytesMut::with_capacity(frame.data.len() + 32);
        put_id(&mut out, CLUSTER);
        let mut head = BytesMut::with_capacity(16);
        put_uint(&mut head, CLUSTER_TIMESTAMP, pts);
        // SimpleBlock: track number (a 1-byte vint), time relative to the
        // Cluster (0), flags (keyframe), the frame.
        let block_len = 4 + frame.data.len();
        put_id(&mut head, SIMPLE_BLOCK);
        put_size(&mut head, block_len as u64);
        head.put_u8(0x80 | track.number);
        head.put_i16(0);
        head.put_u8(if frame.keyframe { 0x80 } else { 0 });
        put_size(&mut out, (head.len() + frame.data.len()) as u64);
        out.put_slice(&head);
        out.put_slice(&frame.data);
        Some(out.freeze())
    }
}

fn track_entry(e: &mut BytesMut, track: &Track) {
    let c = &track.config;
    put_uint(e, TRACK_NUMBER, u64::from(track.number));
    put_uint(e, TRACK_UID, u64::from(track.number));
    let kind = match c.kind() {
        MediaKind::Video => 1,
        MediaKind::Audio => 2,
    };
    put_uint(e, TRACK_TYPE, kind);
    put_uint(e, FLAG_LACING, 0);
    // `new` checked every track.
    let (id, private) = codec(c).unwrap_or(("", None));
    put_element(e, CODEC_ID, id.as_bytes());
    if let Some(p) = private {
        put_element(e, CODEC_PRIVATE, &p);
    }
    if let CodecConfig::Opus(o) = c {
        // Pre-skip in nanoseconds, and the 80 ms a decoder needs to settle
        // after a seek (RFC 7845's recommendation, as Matroska's Opus
        // mapping asks).
        let delay = u64::from(o.head.pre_skip) * 1_000_000_000 / 48_000;
        put_uint(e, CODEC_DELAY, delay);
        put_uint(e, SEEK_PRE_ROLL, 80_000_000);
    }
    match c.kind() {
        MediaKind::Video => {
            let (w, h) = c.picture_size();
            if w > 0 && h > 0 {
                put_master(e, VIDEO, |v| {
                    put_uint(v, PIXEL_WIDTH, u64::from(w));
                    put_uint(v, PIXEL_HEIGHT, u64::from(h));
                });
            }
        }
        MediaKind::Audio => {
            let (rate, channels) = c.audio_format();
            put_master(e, AUDIO, |a| {
                put_element(a, SAMPLING_FREQUENCY, &f64::from(rate).to_be_bytes());
                put_uint(a, CHANNELS, u64::from(channels.max(1)));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_ebml_varints() {
        let size = |n| {
            let mut b = BytesMut::new();
            put_size(&mut b, n);
            b.to_vec()
        };
        assert_eq!(size(0), [0x80]);
        assert_eq!(size(126), [0xFE]);
        // 127 is all ones in one byte (reserved for "unknown"): two bytes.
        assert_eq!(size(127), [0x40, 0x7F]);
        assert_eq!(size(300), [0x41, 0x2C]);
        assert_eq!(size(1 << 20), [0x30, 0x00, 0x00]);
        assert_eq!(size(1 << 21), [0x10, 0x20, 0x00, 0x00]);
    }

    #[test]
    fn ids_keep_their_marker_bytes() {
        let mut b = BytesMut::new();
        put_id(&mut b, CLUSTER);
        put_id(&mut b, SIMPLE_BLOCK);
        assert_eq!(&b[..], &[0x1F, 0x43, 0xB6, 0x75, 0xA3]);
    }

    #[test]
    fn a_frame_is_one_cluster_with_one_simple_block() {
        let config = CodecConfig::Ac3(
            match crate::media::ac3::parse_sync_frame(&crate::media::bits::hex("0b77 0000 0440 00"))
            {
                Ok(crate::media::ac3::SyncFrame::Ac3(h)) => h,
                other => panic!("{other:?}"),
            },
        );
        let w = MkvWriter::new(None, Some(&config), 100).unwrap();
        let f = Frame {
            codec: crate::media::Codec::Ac3,
            dts: 20,
            cts: 0,
            keyframe: true,
            data: Bytes::from_static(&[1, 2, 3]),
        };
        let cluster = w.frame(&f).unwrap();
        // Cluster of 12 bytes: Timestamp 120 (3 bytes), SimpleBlock (2 + 7)
        // of track 2, relative time 0, a keyframe.
        assert_eq!(
            &cluster[..],
            &[
                0x1F, 0x43, 0xB6, 0x75, 0x8C, 0xE7, 0x81, 120, 0xA3, 0x87, 0x82, 0, 0, 0x80, 1, 2,
                3
            ]
        );
        let video = Frame {
            codec: crate::media::Codec::H264,
            ..f
        };
        assert_eq!(w.frame(&video), None);
    }
}
