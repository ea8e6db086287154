//! FLV tags out: the sans-I/O tag writer. Hub events become FLV tags (kind,
//! 32-bit timestamp, body) for every output that speaks FLV: RTMP play-out,
//! RTMP relays and the FLV stream fed to ffmpeg. Each output only frames
//! the tags its own way (an RTMP message, or an FLV tag header).
//!
//! What every FLV output must get right lives here once:
//! - MP3 has no sequence header: the flags byte of its configuration goes
//!   before every frame (a frame before it is dropped).
//! - FLV time is 32-bit milliseconds: times wrap at 2^32 as RTMP's do.
//! - Video is held back until a keyframe after a join, a takeover (a new
//!   publisher) or a new video configuration: a decoder must not start on a
//!   frame that refers to pictures it never had.
//! - A configuration has no time of its own: it goes out at the time of the
//!   last frame written.

use bytes::Bytes;

use super::tag as flv;
use crate::media::{CodecConfig, MediaKind, StreamEvent};

/// What an FLV tag holds (RTMP messages 8, 9 and 18 carry the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    Media(MediaKind),
    /// Script data: the stream's `onMetaData`.
    Script,
}

impl TagKind {
    /// The FLV TagType, which is also the RTMP message type id.
    pub fn type_id(self) -> u8 {
        match self {
            TagKind::Media(MediaKind::Audio) => 8,
            TagKind::Media(MediaKind::Video) => 9,
            TagKind::Script => 18,
        }
    }
}

/// The AMF0 string `onMetaData` that starts a metadata script tag body.
pub const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

/// The longest tag header written ([`ON_METADATA`]).
const MAX_HEAD: usize = ON_METADATA.len();

/// One tag to write: a short header, then a payload shared with the event
/// it came from (frame data is never copied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub kind: TagKind,
    /// Milliseconds, wrapped to 32 bits.
    pub timestamp: u32,
    head: [u8; MAX_HEAD],
    head_len: u8,
    pub payload: Bytes,
}

impl Tag {
    fn new(kind: TagKind, timestamp: u32, head: &[u8], payload: Bytes) -> Self {
        let mut bytes = [0; MAX_HEAD];
        bytes[..head.len()].copy_from_slice(head);
        Tag {
            kind,
            timestamp,
            head: bytes,
            head_len: head.len() as u8,
            payload,
        }
    }

    /// The bytes before the payload (tag body header, or the AMF0 name).
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    /// The body in two parts, for outputs that write a list of slices.
    pub fn parts(&self) -> [&[u8]; 2] {
        [self.head(), &self.payload]
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }
}

/// Hub events -> FLV tags, for one output.
#[derive(Debug, Default)]
pub struct TagWriter {
    /// Added to every frame's time (see [`TagWriter::with_offset`]).
    offset_ms: i64,
    /// MP3 carries its format byte in every tag.
    mp3_flags: Option<u8>,
    /// Whether video has started at a keyframe since the gate last closed.
    video_started: bool,
    /// The last frame's timestamp, for configurations.
    last_ts: u32,
}

impl TagWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer adding `offset_ms` to every frame's time before the wrap
    /// (the transcoder's feed offset).
    pub fn with_offset(offset_ms: i64) -> Self {
        TagWriter {
            offset_ms,
            ..Self::default()
        }
    }

    /// Holds video back until the next keyframe: for an output that skipped
    /// video frames (a player that turned video off).
    pub fn hold_video(&mut self) {
        self.video_started = false;
    }

    /// The tag for `event`, if it has one: publisher changes have none, nor
    /// video before a keyframe, nor an MP3 frame before its configuration.
    pub fn write(&mut self, event: &StreamEvent) -> Option<Tag> {
        match event {
            StreamEvent::PublisherStarted => {
                self.hold_video();
                None
            }
            // Track 0 only (multitrack out is not written yet).
            StreamEvent::PublisherStopped
            | StreamEvent::TrackConfig(..)
            | StreamEvent::TrackFrame(..) => None,
            StreamEvent::Metadata(m) => {
                Some(Tag::new(TagKind::Script, 0, ON_METADATA, m.amf0().clone()))
            }
            StreamEvent::Config(c) => {
                if let CodecConfig::Mp3(m) = c.as_ref() {
                    self.mp3_flags = Some(m.flv_flags);
                }
                if c.kind() == MediaKind::Video {
                    self.hold_video();
                }
                let (head, payload) = flv::config_parts(c)?;
                Some(Tag::new(
                    TagKind::Media(c.kind()),
                    self.last_ts,
                    head,
                    payload.clone(),
                ))
            }
            StreamEvent::Frame(f) => {
                let tag = match f.kind() {
                    MediaKind::Video => {
                        if !self.video_started && !f.keyframe {
                            return None;
                        }
                        self.video_started = true;
                        Tag::new(
                            TagKind::Media(MediaKind::Video),
                            0,
                            &flv::video_header(f),
                            f.data.clone(),
                        )
                    }
                    MediaKind::Audio => {
                        let header = flv::audio_header(f, self.mp3_flags)?;
                        Tag::new(TagKind::Media(MediaKind::Audio), 0, &header, f.data.clone())
                    }
                };
                self.last_ts = ((f.dts + self.offset_ms) & 0xFFFF_FFFF) as u32;
                Some(Tag {
                    timestamp: self.last_ts,
                    ..tag
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::flv::samples::{self, ReadBack};
    use crate::media::{AacConfig, AvcConfig, Codec, Frame, Metadata, Mp3Config};

    fn frame(codec: Codec, dts: i64, keyframe: bool) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec,
            dts,
            cts: if codec == Codec::H264 { 40 } else { 0 },
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        })
    }

    fn video(dts: i64, keyframe: bool) -> StreamEvent {
        frame(Codec::H264, dts, keyframe)
    }

    fn avc(record: &'static [u8]) -> StreamEvent {
        StreamEvent::Config(Arc::new(CodecConfig::Avc(AvcConfig {
            record: Bytes::from_static(record),
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 9,
            nal_length_size: 4,
            sps: Vec::new(),
            pps: Vec::new(),
            width: 64,
            height: 64,
        })))
    }

    fn aac() -> StreamEvent {
        StreamEvent::Config(Arc::new(CodecConfig::Aac(AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48000,
            channels: 2,
            frame_length: 1024,
        })))
    }

    fn mp3(flags: u8) -> StreamEvent {
        StreamEvent::Config(Arc::new(CodecConfig::Mp3(Mp3Config {
            sample_rate: 44100,
            channels: 2,
            flv_flags: flags,
        })))
    }

    /// (kind, timestamp, body) of each tag written.
    fn write(w: &mut TagWriter, events: &[StreamEvent]) -> Vec<(TagKind, u32, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| w.write(e))
            .map(|t| (t.kind, t.timestamp, t.parts().concat()))
            .collect()
    }

    fn times(w: &mut TagWriter, events: &[StreamEvent]) -> Vec<u32> {
        write(w, events).into_iter().map(|t| t.1).collect()
    }

    const V: TagKind = TagKind::Media(MediaKind::Video);
    const A: TagKind = TagKind::Media(MediaKind::Audio);

    #[test]
    fn mp3_frames_carry_their_configuration_flags() {
        let mut w = TagWriter::new();
        let mp3_frame = frame(Codec::Mp3, 20, true);
        // Before its configuration an MP3 frame has no header to go with.
        assert_eq!(w.write(&mp3_frame), None);
        // The configuration itself has no tag.
        assert_eq!(w.write(&mp3(0x2f)), None);
        assert_eq!(
            write(&mut w, std::slice::from_ref(&mp3_frame)),
            [(A, 20, vec![0x2f, 0, 0, 0, 1, 0x65])]
        );
        // A new configuration's flags apply from then on.
        w.write(&mp3(0x2a));
        let tags = write(&mut w, &[mp3_frame]);
        assert_eq!(tags[0].2[0], 0x2a);
        // AAC frames have their own fixed header.
        let tags = write(&mut w, &[frame(Codec::Aac, 21, true)]);
        assert_eq!(&tags[0].2[..2], [0xaf, 0x01]);
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut w = TagWriter::new();
        let near = (1i64 << 32) - 10;
        assert_eq!(
            times(
                &mut w,
                &[
                    video(near, true),
                    frame(Codec::Aac, near + 9, true),
                    video(1 << 32, false),
                    frame(Codec::Aac, (1 << 32) + 25, true),
                    // Far past the first wrap, as a 50-day stream would be.
                    video((3 << 32) + 7, false),
                ]
            ),
            [u32::MAX - 9, u32::MAX, 0, 25, 7]
        );
        // A configuration goes out at the last frame's (wrapped) time.
        assert_eq!(times(&mut w, &[aac()]), [7]);
    }

    #[test]
    fn the_offset_is_added_before_the_wrap() {
        let mut w = TagWriter::with_offset(10_000);
        assert_eq!(
            times(&mut w, &[video(0, true), video(u32::MAX.into(), false)]),
            [10_000, 9_999]
        );
    }

    #[test]
    fn video_waits_for_a_keyframe_after_a_join() {
        let mut w = TagWriter::new();
        // Joined mid-GOP: inter frames are held, audio is not.
        assert_eq!(
            times(
                &mut w,
                &[
                    video(0, false),
                    frame(Codec::Aac, 5, true),
                    video(40, false),
                    video(80, true),
                    video(120, false),
                ]
            ),
            [5, 80, 120]
        );
    }

    #[test]
    fn video_waits_for_a_keyframe_after_a_takeover() {
        let mut w = TagWriter::new();
        write(&mut w, &[video(0, true), video(40, false)]);
        assert_eq!(w.write(&StreamEvent::PublisherStarted), None);
        assert_eq!(times(&mut w, &[video(80, false), video(120, true)]), [120]);
        // A publisher leaving does not close the gate.
        assert_eq!(w.write(&StreamEvent::PublisherStopped), None);
        assert_eq!(times(&mut w, &[video(160, false)]), [160]);
    }

    #[test]
    fn video_waits_for_a_keyframe_after_a_new_configuration() {
        let mut w = TagWriter::new();
        write(&mut w, &[video(0, true), video(40, false)]);
        // The configuration goes out, at the last frame's time, and closes
        // the gate; an audio configuration does not.
        assert_eq!(
            write(&mut w, &[avc(&[1, 100, 0, 9])]),
            [(V, 40, vec![0x17, 0, 0, 0, 0, 1, 100, 0, 9])]
        );
        assert_eq!(times(&mut w, &[video(80, false)]), Vec::<u32>::new());
        assert_eq!(times(&mut w, &[video(120, true)]), [120]);
        assert_eq!(
            write(&mut w, &[aac()]),
            [(A, 120, vec![0xaf, 0, 0x11, 0x90])]
        );
        assert_eq!(times(&mut w, &[video(160, false)]), [160]);
    }

    #[test]
    fn held_video_resumes_at_a_keyframe() {
        let mut w = TagWriter::new();
        write(&mut w, &[video(0, true)]);
        w.hold_video();
        assert_eq!(times(&mut w, &[video(40, false), video(80, true)]), [80]);
    }

    #[test]
    fn metadata_is_an_on_metadata_script_tag() {
        let mut w = TagWriter::new();
        // An AMF0 ECMA array with one property, `duration: 0`.
        let value: &[u8] =
            b"\x08\x00\x00\x00\x01\x00\x08duration\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09";
        let m = StreamEvent::Metadata(Metadata::from_amf0(Bytes::from_static(value)));
        write(&mut w, &[video(500, true)]);
        let tag = w.write(&m).unwrap();
        assert_eq!((tag.kind, tag.timestamp), (TagKind::Script, 0));
        assert_eq!(tag.head(), b"\x02\x00\x0aonMetaData");
        assert_eq!(&tag.payload[..], value);
        assert_eq!(tag.body_len(), 13 + value.len());
        assert_eq!([V, A, TagKind::Script].map(TagKind::type_id), [9, 8, 18]);
    }

    #[test]
    fn frame_payloads_are_shared_not_copied() {
        let mut w = TagWriter::new();
        let StreamEvent::Frame(f) = video(0, true) else {
            unreachable!()
        };
        let tag = w.write(&StreamEvent::Frame(f.clone())).unwrap();
        assert_eq!(tag.payload.as_ptr(), f.data.as_ptr());
        assert_eq!(tag.head(), [0x17, 1, 0, 0, 40]);
    }

    /// What the reader makes of the writer's tags is what went in.
    #[test]
    fn written_tags_read_back_as_the_same_events() {
        let input = samples::events();
        let mut w = TagWriter::new();
        let mut back = ReadBack::default();
        for e in &input {
            let tag = w.write(e).expect("each event has a tag");
            let body = Bytes::from(tag.parts().concat());
            match tag.kind {
                TagKind::Media(kind) => back.media(kind, tag.timestamp, body),
                TagKind::Script => {
                    assert_eq!(&body[..ON_METADATA.len()], ON_METADATA);
                    back.metadata(body.slice(ON_METADATA.len()..));
                }
            }
        }
        assert_eq!(back.events, input);
    }
}
