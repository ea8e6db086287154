//! FLV as a byte stream to and from the ffmpeg child (sans-I/O).
//!
//! [`FlvWriter`] turns hub events into an FLV stream for ffmpeg's stdin
//! (the tags are [`TagWriter`]'s); [`OutputParser`] reads ffmpeg's FLV
//! output back into hub events ([`FlvReader`] cuts it into tags, bounded,
//! whatever bytes arrive). Tag bodies are the formats in
//! [`crate::media::flv`].

use std::sync::Arc;

use bytes::Bytes;

use crate::hub::StreamEvent;
use crate::media::flv::{self, TagKind, TagWriter};
use crate::media::flv_file::{self, FlvReader, ReadError, TAG_AUDIO, TAG_VIDEO};

/// Hub events -> FLV bytes.
pub struct FlvWriter {
    tags: TagWriter,
}

impl FlvWriter {
    /// `offset_ms` is added to every timestamp: see
    /// [`crate::transcode::FEED_OFFSET_MS`].
    pub fn new(offset_ms: i64) -> Self {
        FlvWriter {
            tags: TagWriter::with_offset(offset_ms),
        }
    }

    /// The file header (and PreviousTagSize0) announcing the tracks there are.
    pub fn header(audio: bool, video: bool) -> Bytes {
        flv_file::header(audio, video)
    }

    /// The tag for `event`, if it has one (publisher start/stop and
    /// metadata have none: ffmpeg needs only configurations and frames).
    pub fn tag(&mut self, event: &StreamEvent) -> Option<Bytes> {
        // A legacy writer makes at most one tag per event.
        let tag = self.tags.write(event).next()?;
        if tag.kind == TagKind::Script {
            return None;
        }
        Some(flv_file::encode_tag(&tag))
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
                    Ok(flv::VideoTag::Config(c)) => Some(StreamEvent::Config(Arc::new(c))),
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
    fn ffmpeg_gets_configurations_and_frames_on_the_offset_clock() {
        let mut w = FlvWriter::new(10_000);
        let mut stream = FlvWriter::header(true, true).to_vec();
        let aac = crate::media::CodecConfig::Aac(crate::media::AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48000,
            channels: 2,
            frame_length: 1024,
        });
        for e in [
            StreamEvent::PublisherStarted,
            StreamEvent::Metadata(crate::media::Metadata::from_amf0(Bytes::from_static(
                b"\x05",
            ))),
            StreamEvent::Config(Arc::new(aac)),
            frame(Codec::H264, 0, true),
            frame(Codec::Aac, 5, true),
            frame(Codec::H264, 0xFFFF_FFFF, false),
        ] {
            if let Some(t) = w.tag(&e) {
                stream.extend_from_slice(&t);
            }
        }
        let tags = flv_file::read_tags(&Bytes::from(stream)).unwrap();
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
}
