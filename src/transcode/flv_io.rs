//! FLV as a byte stream to and from the ffmpeg child (sans-I/O).
//!
//! [`FlvWriter`] turns hub events into an FLV stream for ffmpeg's stdin;
//! [`FlvReader`] cuts ffmpeg's FLV output back into tags, bounded (a tag
//! larger than [`MAX_TAG`] is an error, not an allocation), whatever bytes
//! arrive. Tag bodies are the formats in [`crate::media::flv`].

use bytes::{Buf, Bytes, BytesMut};

use crate::hub::StreamEvent;
use crate::media::flv;
use std::sync::Arc;

use crate::media::flv_file::{TAG_AUDIO, TAG_VIDEO};
use crate::media::{CodecConfig, MediaKind};

/// Largest tag accepted back from ffmpeg (as `rtmp.max_message_size`'s
/// default: a 4K keyframe fits).
pub const MAX_TAG: usize = 8 * 1024 * 1024;

/// Hub events -> FLV bytes.
pub struct FlvWriter {
    /// Added to every timestamp: see [`crate::transcode::FEED_OFFSET_MS`].
    offset_ms: i64,
    mp3_flags: Option<u8>,
    last_ts: u32,
}

impl FlvWriter {
    pub fn new(offset_ms: i64) -> Self {
        FlvWriter {
            offset_ms,
            mp3_flags: None,
            last_ts: 0,
        }
    }

    /// The file header (and PreviousTagSize0) announcing the tracks there are.
    pub fn header(audio: bool, video: bool) -> Bytes {
        let flags = u8::from(audio) << 2 | u8::from(video);
        Bytes::from(vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
    }

    fn ts(&self, dts: i64) -> u32 {
        // FLV time is 32-bit milliseconds: wrap as RTMP does.
        ((dts + self.offset_ms) & 0xFFFF_FFFF) as u32
    }

    /// The tag for `event`, if it has one (publisher start/stop and
    /// metadata have none: ffmpeg needs only configurations and frames).
    pub fn tag(&mut self, event: &StreamEvent) -> Option<Bytes> {
        match event {
            StreamEvent::Config(c) => {
                if let CodecConfig::Mp3(m) = c.as_ref() {
                    self.mp3_flags = Some(m.flv_flags);
                }
                let body = flv::config_body(c)?;
                let t = match c.kind() {
                    MediaKind::Video => TAG_VIDEO,
                    MediaKind::Audio => TAG_AUDIO,
                };
                Some(write_tag(t, self.last_ts, &[&body]))
            }
            StreamEvent::Frame(f) => {
                let ts = self.ts(f.dts);
                self.last_ts = ts;
                match f.kind() {
                    MediaKind::Video => {
                        Some(write_tag(TAG_VIDEO, ts, &[&flv::video_header(f), &f.data]))
                    }
                    MediaKind::Audio => {
                        let h = flv::audio_header(f, self.mp3_flags)?;
                        Some(write_tag(TAG_AUDIO, ts, &[&h, &f.data]))
                    }
                }
            }
            _ => None,
        }
    }
}

fn write_tag(tag_type: u8, ts: u32, parts: &[&[u8]]) -> Bytes {
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(11 + size + 4);
    out.push(tag_type);
    out.extend_from_slice(&(size as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(&((size + 11) as u32).to_be_bytes());
    out.into()
}

/// One tag read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub tag_type: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("not an FLV stream (no `FLV` signature)")]
    NotFlv,
    #[error("FLV header size {0} is invalid")]
    BadHeader(usize),
    #[error("FLV tag of {0} bytes is larger than the limit")]
    TooLarge(usize),
}

/// FLV bytes -> tags, incrementally.
#[derive(Default)]
pub struct FlvReader {
    buf: BytesMut,
    header_done: bool,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<Tag>, ReadError> {
        if !self.header_done {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(ReadError::NotFlv);
            }
            let size =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=1024).contains(&size) {
                return Err(ReadError::BadHeader(size));
            }
            // The header, then PreviousTagSize0.
            if self.buf.len() < size + 4 {
                return Ok(None);
            }
            self.buf.advance(size + 4);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let b = &self.buf;
        let size = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
        if size > MAX_TAG {
            return Err(ReadError::TooLarge(size));
        }
        if b.len() < 11 + size + 4 {
            return Ok(None);
        }
        let tag_type = b[0] & 0x1F;
        let timestamp = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let mut tag = self.buf.split_to(11 + size + 4).freeze();
        tag.advance(11);
        tag.truncate(size);
        Ok(Some(Tag {
            tag_type,
            timestamp,
            body: tag,
        }))
    }
}

/// One rendition's FLV output -> hub events on the source's clock: FLV's
/// 32-bit milliseconds unwrapped, the feed offset taken off; tags castgate
/// cannot carry (script data, other codecs, broken bodies) dropped.
pub struct OutputParser {
    reader: FlvReader,
    offset_ms: i64,
    /// (last raw timestamp, its unwrapped value)
    unwrap: Option<(u32, i64)>,
}

impl OutputParser {
    pub fn new(offset_ms: i64) -> Self {
        OutputParser {
            reader: FlvReader::new(),
            offset_ms,
            unwrap: None,
        }
    }

    /// Feeds bytes; returns the events of every tag they complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, ReadError> {
        self.reader.push(data);
        let mut out = Vec::new();
        while let Some(tag) = self.reader.next_tag()? {
            let pos = match self.unwrap {
                None => i64::from(tag.timestamp),
                Some((last, pos)) => pos + i64::from(tag.timestamp.wrapping_sub(last) as i32),
            };
            self.unwrap = Some((tag.timestamp, pos));
            let dts = pos - self.offset_ms;
            let event = match tag.tag_type {
                TAG_VIDEO => match flv::parse_video(dts, tag.body) {
                    Ok(flv::VideoTag::Config(c)) => {
                        Some(StreamEvent::Config(Arc::new(CodecConfig::Avc(c))))
                    }
                    Ok(flv::VideoTag::Frame(f)) => Some(StreamEvent::Frame(f)),
                    _ => None,
                },
                TAG_AUDIO => match flv::parse_audio(dts, tag.body) {
                    Ok(flv::AudioTag::Config(c)) => Some(StreamEvent::Config(Arc::new(c))),
                    Ok(flv::AudioTag::Frame(f)) => Some(StreamEvent::Frame(f)),
                    _ => None,
                },
                _ => None,
            };
            out.extend(event);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Frame};

    fn frame(codec: Codec, dts: i64, key: bool) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec,
            dts,
            cts: 40,
            keyframe: key,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        })
    }

    #[test]
    fn written_tags_read_back_in_any_chunking() {
        let mut w = FlvWriter::new(10_000);
        let mut stream = FlvWriter::header(true, true).to_vec();
        let aac = CodecConfig::Aac(crate::media::AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48000,
            channels: 2,
            frame_length: 1024,
        });
        for e in [
            StreamEvent::PublisherStarted,
            StreamEvent::Config(Arc::new(aac)),
            frame(Codec::H264, 0, true),
            frame(Codec::Aac, 5, true),
            frame(Codec::H264, 0xFFFF_FFFF, false),
        ] {
            if let Some(t) = w.tag(&e) {
                stream.extend_from_slice(&t);
            }
        }
        for chunk in [1, 7, 1000] {
            let mut r = FlvReader::new();
            let mut tags = Vec::new();
            for c in stream.chunks(chunk) {
                r.push(c);
                while let Some(t) = r.next_tag().unwrap() {
                    tags.push(t);
                }
            }
            let got: Vec<(u8, u32, usize)> = tags
                .iter()
                .map(|t| (t.tag_type, t.timestamp, t.body.len()))
                .collect();
            assert_eq!(
                got,
                [
                    (TAG_AUDIO, 0, 4),
                    (TAG_VIDEO, 10_000, 10),
                    (TAG_AUDIO, 10_005, 7),
                    (TAG_VIDEO, (0xFFFF_FFFFu64 + 10_000) as u32, 10),
                ]
            );
            let v = flv::parse_video(0, tags[1].body.clone()).unwrap();
            assert!(matches!(v, flv::VideoTag::Frame(f) if f.keyframe && f.cts == 40));
        }
    }

    #[test]
    fn ffmpeg_output_becomes_events_on_the_source_clock() {
        // The fuzz seed: a byte of chunk size, then real ffmpeg FLV output
        // made with `-output_ts_offset 10` (the feed offset).
        let seed = include_bytes!("../../fuzz/seeds/ffmpeg_output/rendition_64.bin");
        let mut p = OutputParser::new(10_000);
        let mut events = Vec::new();
        for c in seed[1..].chunks(64) {
            events.extend(p.push(c).unwrap());
        }
        let configs = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Config(_)))
            .count();
        assert_eq!(configs, 2);
        let frames: Vec<&Frame> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert!(frames.len() > 20, "{}", frames.len());
        let video: Vec<i64> = frames
            .iter()
            .filter(|f| f.codec == Codec::H264)
            .map(|f| f.pts())
            .collect();
        assert_eq!(video.iter().min(), Some(&0), "back on the source clock");
        assert!(video.iter().all(|t| *t < 1100), "{video:?}");
    }

    #[test]
    fn hostile_bytes_are_bounded_errors() {
        let mut r = FlvReader::new();
        r.push(b"NOPE00000000");
        assert_eq!(r.next_tag(), Err(ReadError::NotFlv));
        let mut r = FlvReader::new();
        r.push(&FlvWriter::header(true, true));
        r.push(&[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.next_tag(), Err(ReadError::TooLarge(0xFF_FFFF)));
        let mut r = FlvReader::new();
        r.push(&[b'F', b'L', b'V', 1, 5, 0xFF, 0, 0, 9]);
        assert!(matches!(r.next_tag(), Err(ReadError::BadHeader(_))));
    }
}
