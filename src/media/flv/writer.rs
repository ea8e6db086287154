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
//! - Each output says which codecs it takes ([`CodecSet`]): a legacy FLV
//!   reader only H.264, AAC and MP3; an Enhanced RTMP peer what it
//!   announced. H.264, AAC and MP3 always go in their legacy tags (as
//!   FFmpeg sends them), the others in Enhanced RTMP tags. What an output
//!   does not take is withheld (configuration and frames), and said once
//!   ([`TagWriter::take_withheld`]).

use bytes::Bytes;

use super::tag as flv;
use crate::media::{Codec, CodecConfig, MediaKind, StreamEvent, TrackId};

/// A set of codecs: what an FLV output takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CodecSet(u16);

/// Every codec, in [`CodecSet`] bit order.
const CODECS: [Codec; 10] = [
    Codec::H264,
    Codec::Aac,
    Codec::Mp3,
    Codec::Hevc,
    Codec::Av1,
    Codec::Vp9,
    Codec::Opus,
    Codec::Flac,
    Codec::Ac3,
    Codec::Eac3,
];

impl CodecSet {
    pub const EMPTY: CodecSet = CodecSet(0);
    /// What a legacy FLV tag carries and every RTMP player reads.
    pub const LEGACY: CodecSet = CodecSet(0b111);
    pub const ALL: CodecSet = CodecSet((1 << CODECS.len()) - 1);

    const fn bit(codec: Codec) -> u16 {
        1 << match codec {
            Codec::H264 => 0,
            Codec::Aac => 1,
            Codec::Mp3 => 2,
            Codec::Hevc => 3,
            Codec::Av1 => 4,
            Codec::Vp9 => 5,
            Codec::Opus => 6,
            Codec::Flac => 7,
            Codec::Ac3 => 8,
            Codec::Eac3 => 9,
        }
    }

    pub fn contains(self, codec: Codec) -> bool {
        self.0 & Self::bit(codec) != 0
    }

    pub fn insert(&mut self, codec: Codec) {
        self.0 |= Self::bit(codec);
    }

    #[must_use]
    pub fn with(mut self, codec: Codec) -> CodecSet {
        self.insert(codec);
        self
    }

    #[must_use]
    pub fn union(self, other: CodecSet) -> CodecSet {
        CodecSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every codec of `other` is in this set.
    pub fn covers(self, other: CodecSet) -> bool {
        other.0 & !self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Codec> {
        CODECS.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Codec> for CodecSet {
    fn from_iter<I: IntoIterator<Item = Codec>>(iter: I) -> Self {
        let mut set = CodecSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl std::fmt::Debug for CodecSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter().map(Codec::name)).finish()
    }
}

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
const _: () = assert!(flv::Head::MAX <= MAX_HEAD);

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

/// The tags one event makes: none, one, or two (an enhanced audio
/// configuration is followed by its channel layout, a video one by its
/// `colorInfo` when it has one).
#[derive(Debug)]
pub struct Tags(std::iter::Flatten<std::array::IntoIter<Option<Tag>, 2>>);

impl Tags {
    fn none() -> Tags {
        Tags([None, None].into_iter().flatten())
    }

    fn one(tag: Tag) -> Tags {
        Tags([Some(tag), None].into_iter().flatten())
    }
}

impl Iterator for Tags {
    type Item = Tag;
    fn next(&mut self) -> Option<Tag> {
        self.0.next()
    }
}

/// Hub events -> FLV tags, for one output.
#[derive(Debug)]
pub struct TagWriter {
    /// What this output takes.
    accept: CodecSet,
    /// Codecs withheld from this output, and those already reported.
    withheld: CodecSet,
    reported: CodecSet,
    /// Added to every frame's time (see [`TagWriter::with_offset`]).
    offset_ms: i64,
    /// MP3 carries its format byte in every tag.
    mp3_flags: Option<u8>,
    /// Whether video has started at a keyframe since the gate last closed.
    video_started: bool,
    /// The last frame's timestamp, for configurations.
    last_ts: u32,
    /// Whether tracks other than 0 are written (as one-track multitrack
    /// packets), and the video tracks among them started at a keyframe.
    tracks: bool,
    tracks_started: Vec<TrackId>,
}

impl Default for TagWriter {
    fn default() -> Self {
        TagWriter {
            accept: CodecSet::LEGACY,
            withheld: CodecSet::EMPTY,
            reported: CodecSet::EMPTY,
            offset_ms: 0,
            mp3_flags: None,
            video_started: false,
            last_ts: 0,
            tracks: false,
            tracks_started: Vec::new(),
        }
    }
}

impl TagWriter {
    /// A writer for a legacy FLV reader: H.264, AAC and MP3 only (see
    /// [`TagWriter::accepting`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A legacy writer adding `offset_ms` to every frame's time before the
    /// wrap (the transcoder's feed offset).
    pub fn with_offset(offset_ms: i64) -> Self {
        TagWriter {
            offset_ms,
            ..Self::default()
        }
    }

    /// The writer takes these codecs (and the legacy ones, which every
    /// FLV reader takes), the others in Enhanced RTMP tags.
    #[must_use]
    pub fn accepting(mut self, codecs: CodecSet) -> Self {
        self.accept = codecs.union(CodecSet::LEGACY);
        self
    }

    /// The writer writes the tracks other than 0 too (Enhanced RTMP v2
    /// multitrack), for a reader that takes them.
    #[must_use]
    pub fn with_tracks(mut self) -> Self {
        self.tracks = true;
        self
    }

    /// What this writer takes.
    pub fn accepts(&self) -> CodecSet {
        self.accept
    }

    /// A codec withheld since the last call, once per codec: for the
    /// output to say what its reader misses.
    pub fn take_withheld(&mut self) -> Option<Codec> {
        let new = self.withheld.iter().find(|c| !self.reported.contains(*c))?;
        self.reported.insert(new);
        Some(new)
    }

    /// Whether the output takes `codec`; remembers it as withheld if not.
    fn takes(&mut self, codec: Codec) -> bool {
        let takes = self.accept.contains(codec);
        if !takes {
            self.withheld.insert(codec);
        }
        takes
    }

    /// Holds video back until the next keyframe: for an output that skipped
    /// video frames (a player that turned video off).
    pub fn hold_video(&mut self) {
        self.video_started = false;
        self.tracks_started.clear();
    }

    /// The tags for `event`: publisher changes have none, nor video before
    /// a keyframe, nor an MP3 frame before its configuration, nor a codec
    /// this output does not take.
    pub fn write(&mut self, event: &StreamEvent) -> Tags {
        match event {
            StreamEvent::PublisherStarted => {
                self.hold_video();
                Tags::none()
            }
            StreamEvent::PublisherStopped => Tags::none(),
            StreamEvent::TrackConfig(id, c) => {
                if !self.tracks || !self.takes(c.codec()) {
                    return Tags::none();
                }
                if c.kind() == MediaKind::Video {
                    self.tracks_started.retain(|t| t != id);
                }
                let Some((head, payload)) = flv::track_config_parts(c, *id) else {
                    return Tags::none();
                };
                let kind = TagKind::Media(c.kind());
                let config = Tag::new(kind, self.last_ts, &head, payload.clone());
                let color = flv::color_info_parts(c, *id)
                    .map(|(head, amf)| Tag::new(kind, self.last_ts, &head, amf));
                Tags([Some(config), color].into_iter().flatten())
            }
            StreamEvent::TrackFrame(id, f) => {
                if !self.tracks || !self.takes(f.codec) {
                    return Tags::none();
                }
                if f.kind() == MediaKind::Video && !self.tracks_started.contains(id) {
                    if !f.keyframe {
                        return Tags::none();
                    }
                    self.tracks_started.push(*id);
                }
                let head = flv::track_frame_header(f, *id);
                let timestamp = ((f.dts + self.offset_ms) & 0xFFFF_FFFF) as u32;
                Tags::one(Tag::new(
                    TagKind::Media(f.kind()),
                    timestamp,
                    &head,
                    f.data.clone(),
                ))
            }
            StreamEvent::Metadata(m) => {
                Tags::one(Tag::new(TagKind::Script, 0, ON_METADATA, m.amf0().clone()))
            }
            StreamEvent::Config(c) => {
                if !self.takes(c.codec()) {
                    return Tags::none();
                }
                if let CodecConfig::Mp3(m) = c.as_ref() {
                    self.mp3_flags = Some(m.flv_flags);
                }
                if c.kind() == MediaKind::Video {
                    self.hold_video();
                }
                let Some((head, payload)) = flv::config_parts(c) else {
                    return Tags::none();
                };
                let kind = TagKind::Media(c.kind());
                let config = Tag::new(kind, self.last_ts, &head, payload.clone());
                // Audio's channel layout, or video's colorInfo.
                let layout = flv::multichannel_config(c)
                    .map(|head| Tag::new(kind, self.last_ts, &head, Bytes::new()));
                let color = flv::color_info_parts(c, 0)
                    .map(|(head, amf)| Tag::new(kind, self.last_ts, &head, amf));
                Tags([Some(config), layout.or(color)].into_iter().flatten())
            }
            StreamEvent::Frame(f) => {
                if !self.takes(f.codec) {
                    return Tags::none();
                }
                let tag = match f.kind() {
                    MediaKind::Video => {
                        if !self.video_started && !f.keyframe {
                            return Tags::none();
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
                        let Some(header) = flv::audio_header(f, self.mp3_flags) else {
                            return Tags::none();
                        };
                        Tag::new(TagKind::Media(MediaKind::Audio), 0, &header, f.data.clone())
                    }
                };
                self.last_ts = ((f.dts + self.offset_ms) & 0xFFFF_FFFF) as u32;
                Tags::one(Tag {
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
    use crate::media::flv::ex::FourCc;
    use crate::media::flv::samples::{self, ReadBack};
    use crate::media::flv_file::read_tags;
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
            .flat_map(|e| w.write(e))
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
        assert_eq!(w.write(&mp3_frame).next(), None);
        // The configuration itself has no tag.
        assert_eq!(w.write(&mp3(0x2f)).next(), None);
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
        assert_eq!(w.write(&StreamEvent::PublisherStarted).next(), None);
        assert_eq!(times(&mut w, &[video(80, false), video(120, true)]), [120]);
        // A publisher leaving does not close the gate.
        assert_eq!(w.write(&StreamEvent::PublisherStopped).next(), None);
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
        let tag = w.write(&m).next().unwrap();
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
        let tag = w.write(&StreamEvent::Frame(f.clone())).next().unwrap();
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
            let tag = w.write(e).next().expect("each event has a tag");
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

    /// Multitrack out: what FFmpeg 9 sent as two video and two audio
    /// tracks, ingested, written for an Enhanced RTMP reader and read back,
    /// is the same events, tracks and ids included; a writer without
    /// tracks writes track 0 alone.
    #[test]
    fn multitrack_tracks_read_back_as_the_same_events() {
        let file = Bytes::from_static(include_bytes!("testdata/multitrack_av.flv"));
        let mut input = Vec::new();
        let mut reader = super::super::Ingest::new();
        for tag in read_tags(&file).unwrap() {
            let kind = match tag.tag_type {
                8 => MediaKind::Audio,
                9 => MediaKind::Video,
                _ => continue,
            };
            reader
                .media(kind, tag.timestamp, tag.body, |e| input.push(e))
                .unwrap();
        }
        assert!(input
            .iter()
            .any(|e| matches!(e, StreamEvent::TrackFrame(1, f) if f.kind() == MediaKind::Video)));
        let written = |mut w: TagWriter| {
            let mut back = ReadBack::default();
            for e in &input {
                for tag in w.write(e) {
                    let TagKind::Media(kind) = tag.kind else {
                        continue;
                    };
                    back.media(kind, tag.timestamp, Bytes::from(tag.parts().concat()));
                }
            }
            back.events
        };
        let all = TagWriter::new().accepting(CodecSet::ALL).with_tracks();
        assert_eq!(written(all), input);
        let track_0: Vec<_> = input
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    StreamEvent::TrackConfig(..) | StreamEvent::TrackFrame(..)
                )
            })
            .cloned()
            .collect();
        assert_eq!(written(TagWriter::new().accepting(CodecSet::ALL)), track_0);
    }

    /// A configuration's `colorInfo` goes out right after its sequence
    /// start (a command-frame `Metadata` packet, as FFmpeg 9 sends it),
    /// for track 0 and the other tracks alike, and castgate's reader
    /// attaches it to the same configuration again.
    #[test]
    fn color_info_follows_the_sequence_start_and_reads_back() {
        use crate::media::color_info::{ColorInfo, ColourCodes, ContentLightLevel};
        let (events, _) = ffmpeg_events(include_bytes!("testdata/hevc_opus.flv"));
        let info = |transfer| ColorInfo {
            colour: Some(ColourCodes {
                primaries: 9,
                transfer,
                matrix: 9,
            }),
            mastering: None,
            light_level: Some(ContentLightLevel {
                max_cll: 1000,
                max_fall: 400,
            }),
        };
        let mut input = Vec::new();
        for e in &events {
            match e {
                StreamEvent::Config(c) if c.kind() == MediaKind::Video => {
                    let c = (**c).clone();
                    let pq = c.clone().with_color_info(Some(info(16)));
                    let hlg = c.with_color_info(Some(info(18)));
                    input.push(StreamEvent::Config(Arc::new(pq)));
                    input.push(StreamEvent::TrackConfig(1, Arc::new(hlg)));
                }
                e => input.push(e.clone()),
            }
        }
        let mut w = TagWriter::new().accepting(CodecSet::ALL).with_tracks();
        let mut back = ReadBack::default();
        let mut heads = Vec::new();
        for tag in input.iter().flat_map(|e| w.write(e)) {
            heads.push(tag.head().to_vec());
            let TagKind::Media(kind) = tag.kind else {
                continue;
            };
            back.media(kind, tag.timestamp, tag.parts().concat().into());
        }
        // Sequence start, then colorInfo, for track 0 and track 1.
        let at = heads.iter().position(|h| h[..] == *b"\x90hvc1").unwrap();
        assert_eq!(heads[at + 1], b"\xd4hvc1");
        assert_eq!(heads[at + 2][..2], [0x96, 0x00]);
        assert_eq!(heads[at + 3], b"\x96\x04hvc1\x01");
        let last = |track: u8| {
            back.events.iter().rev().find_map(|e| match e {
                StreamEvent::Config(c) if track == 0 && c.kind() == MediaKind::Video => {
                    c.color_info().copied()
                }
                StreamEvent::TrackConfig(id, c) if *id == track => c.color_info().copied(),
                _ => None,
            })
        };
        assert_eq!(last(0), Some(info(16)));
        assert_eq!(last(1), Some(info(18)));
    }

    /// The decoder configuration a sequence start (or, for AC-3 and
    /// E-AC-3, the first coded frame) says, as the reader would make it.
    fn config_of(fourcc: FourCc, record: Bytes, first_frame: &[u8]) -> CodecConfig {
        use crate::media::{ac3, av1, flac, hevc, opus, vp9, FlacRecord, OpusRecord, Vp9Record};
        match fourcc {
            FourCc::HEVC => CodecConfig::Hevc(hevc::parse_decoder_config(record).unwrap()),
            FourCc::AV1 => CodecConfig::Av1(av1::parse_codec_config(record).unwrap()),
            FourCc::VP9 => CodecConfig::Vp9(Vp9Record {
                config: vp9::parse_vpcc(&record).unwrap(),
                record,
                color_info: None,
            }),
            FourCc::OPUS => CodecConfig::Opus(OpusRecord {
                head: opus::parse_opus_head(&record).unwrap(),
                record,
            }),
            FourCc::FLAC => CodecConfig::Flac(FlacRecord {
                config: flac::parse_sequence_header(record.clone()).unwrap(),
                record,
            }),
            FourCc::AC3 => match ac3::parse_sync_frame(first_frame).unwrap() {
                ac3::SyncFrame::Ac3(h) => CodecConfig::Ac3(h),
                other => panic!("{other:?}"),
            },
            FourCc::EAC3 => CodecConfig::Eac3(ac3::parse_eac3_access_unit(first_frame).unwrap()),
            other => panic!("{other}"),
        }
    }

    /// What FFmpeg 9 wrote, as events: enhanced tags split by
    /// [`super::super::ex`], legacy ones by the tag parser. Its video
    /// metadata (colorInfo) is not an event and is left out.
    fn ffmpeg_events(file: &'static [u8]) -> (Vec<StreamEvent>, Vec<(TagKind, Vec<u8>)>) {
        use crate::media::flv::ex::{self, AudioPacket, ExVideoBody, VideoPacket};
        use crate::media::flv::tag::{parse_audio, parse_video, AudioTag, VideoTag};
        let tags = read_tags(&Bytes::from_static(file)).unwrap();
        let first_frame = |fourcc: FourCc| {
            tags.iter()
                .filter(|t| t.tag_type == 8 && t.body[0] >> 4 == 9)
                .find_map(|t| {
                    let a = ex::parse_audio(t.body.clone()).ok()?;
                    match &a.tracks[0].packet {
                        AudioPacket::CodedFrames(d) if a.tracks[0].fourcc == fourcc => {
                            Some(d.clone())
                        }
                        _ => None,
                    }
                })
                .unwrap_or_default()
        };
        let (mut events, mut bodies) = (Vec::new(), Vec::new());
        for t in &tags {
            let dts = i64::from(t.timestamp);
            let kind = match t.tag_type {
                8 => MediaKind::Audio,
                9 => MediaKind::Video,
                _ => continue,
            };
            let enhanced = match kind {
                MediaKind::Video => t.body[0] & 0x80 != 0,
                MediaKind::Audio => t.body[0] >> 4 == 9,
            };
            let event = if !enhanced && kind == MediaKind::Video {
                match parse_video(dts, t.body.clone()).unwrap() {
                    VideoTag::Config(c) => StreamEvent::Config(Arc::new(c)),
                    VideoTag::Frame(f) => StreamEvent::Frame(f),
                    _ => continue,
                }
            } else if !enhanced {
                match parse_audio(dts, t.body.clone()).unwrap() {
                    AudioTag::Config(c) => StreamEvent::Config(Arc::new(c)),
                    AudioTag::Frame(f) => StreamEvent::Frame(f),
                    other => panic!("{other:?}"),
                }
            } else if kind == MediaKind::Video {
                let v = ex::parse_video(t.body.clone()).unwrap();
                let ExVideoBody::Tracks(tracks) = v.body else {
                    continue;
                };
                let track = &tracks[0];
                match &track.packet {
                    VideoPacket::SequenceStart(r) => {
                        StreamEvent::Config(Arc::new(config_of(track.fourcc, r.clone(), &[])))
                    }
                    VideoPacket::CodedFrames { cts, data } => StreamEvent::Frame(Frame {
                        codec: track.fourcc.codec().unwrap(),
                        dts,
                        cts: *cts,
                        keyframe: v.frame_type == 1,
                        data: data.clone(),
                    }),
                    VideoPacket::Metadata(_) => continue,
                    other => panic!("{other:?}"),
                }
            } else {
                let a = ex::parse_audio(t.body.clone()).unwrap();
                let track = &a.tracks[0];
                match &track.packet {
                    AudioPacket::SequenceStart(r) => StreamEvent::Config(Arc::new(config_of(
                        track.fourcc,
                        r.clone(),
                        &first_frame(track.fourcc),
                    ))),
                    AudioPacket::CodedFrames(data) => StreamEvent::Frame(Frame {
                        codec: track.fourcc.codec().unwrap(),
                        dts,
                        cts: 0,
                        keyframe: true,
                        data: data.clone(),
                    }),
                    // The writer makes it after the configuration.
                    AudioPacket::MultichannelConfig(_) => {
                        bodies.push((TagKind::Media(kind), t.body.to_vec()));
                        continue;
                    }
                    other => panic!("{other:?}"),
                }
            };
            events.push(event);
            bodies.push((TagKind::Media(kind), t.body.to_vec()));
        }
        (events, bodies)
    }

    /// Every tag FFmpeg 9 wrote for HEVC, AV1, VP9, Opus, FLAC, AC-3 and
    /// E-AC-3 (and the legacy H.264 and AAC beside them) is made again
    /// byte for byte from the events it stands for: sequence starts with
    /// the record as sent (AC-3's empty), channel layouts, HEVC coded
    /// frames with and without a composition time.
    #[test]
    fn enhanced_tags_are_made_as_ffmpeg_9_makes_them() {
        for (name, file) in [
            ("hevc_opus", &include_bytes!("testdata/hevc_opus.flv")[..]),
            ("hevc_aac", include_bytes!("testdata/ffmpeg9_hevc_aac.flv")),
            ("av1_ac3", include_bytes!("testdata/ffmpeg9_av1_ac3.flv")),
            ("vp9_eac3", include_bytes!("testdata/ffmpeg9_vp9_eac3.flv")),
            (
                "h264_flac",
                include_bytes!("testdata/ffmpeg9_h264_flac.flv"),
            ),
        ] {
            let (events, expected) = ffmpeg_events(file);
            let mut w = TagWriter::new().accepting(CodecSet::ALL);
            let made: Vec<(TagKind, Vec<u8>)> = events
                .iter()
                .flat_map(|e| w.write(e))
                .map(|t| (t.kind, t.parts().concat()))
                .collect();
            assert!(expected.len() > 8, "{name}");
            for (i, (m, e)) in made.iter().zip(&expected).enumerate() {
                assert_eq!(m, e, "{name}: tag {i}");
            }
            assert_eq!(made.len(), expected.len(), "{name}");
            assert_eq!(w.take_withheld(), None);
        }
    }

    /// What castgate's own reader makes of the enhanced tags written is
    /// what went in: the same frames, the same configurations (AC-3's comes
    /// with its first frame there, as its sequence start is empty).
    #[test]
    fn enhanced_tags_read_back_through_the_reader() {
        for file in [
            &include_bytes!("testdata/hevc_opus.flv")[..],
            include_bytes!("testdata/ffmpeg9_hevc_aac.flv"),
            include_bytes!("testdata/ffmpeg9_av1_ac3.flv"),
            include_bytes!("testdata/ffmpeg9_vp9_eac3.flv"),
            include_bytes!("testdata/ffmpeg9_h264_flac.flv"),
        ] {
            let (events, _) = ffmpeg_events(file);
            let mut w = TagWriter::new().accepting(CodecSet::ALL);
            let mut back = ReadBack::default();
            for tag in events.iter().flat_map(|e| w.write(e)) {
                let TagKind::Media(kind) = tag.kind else {
                    continue;
                };
                back.media(kind, tag.timestamp, tag.parts().concat().into());
            }
            let split = |events: &[StreamEvent]| {
                let frames: Vec<StreamEvent> = events
                    .iter()
                    .filter(|e| matches!(e, StreamEvent::Frame(_)))
                    .cloned()
                    .collect();
                let mut configs: Vec<String> = events
                    .iter()
                    .filter(|e| matches!(e, StreamEvent::Config(_)))
                    .map(|e| format!("{e:?}"))
                    .collect();
                configs.sort();
                (frames, configs)
            };
            let (frames, configs) = split(&events);
            assert!(frames.len() > 5 && configs.len() == 2);
            assert_eq!(split(&back.events), (frames, configs));
        }
    }

    /// A legacy reader gets the legacy tracks only; what it misses is said
    /// once per codec. A reader that announced some codecs gets those.
    #[test]
    fn codecs_an_output_does_not_take_are_withheld() {
        let (events, _) = ffmpeg_events(include_bytes!("testdata/ffmpeg9_hevc_aac.flv"));
        let mut legacy = TagWriter::new();
        let kinds: Vec<u8> = events
            .iter()
            .flat_map(|e| legacy.write(e))
            .map(|t| t.head()[0])
            .collect();
        assert!(kinds.iter().all(|&b| b >> 4 == 10), "AAC only: {kinds:x?}");
        assert!(kinds.len() > 2);
        assert_eq!(legacy.take_withheld(), Some(Codec::Hevc));
        assert_eq!(legacy.take_withheld(), None);

        let (events, _) = ffmpeg_events(include_bytes!("testdata/ffmpeg9_av1_ac3.flv"));
        let mut some = TagWriter::new().accepting(CodecSet::EMPTY.with(Codec::Ac3));
        let heads: Vec<Vec<u8>> = events
            .iter()
            .flat_map(|e| some.write(e))
            .map(|t| t.head()[1..5].to_vec())
            .collect();
        assert!(heads.iter().all(|h| h == b"ac-3"));
        assert_eq!(some.take_withheld(), Some(Codec::Av1));
        assert_eq!(some.accepts(), CodecSet::LEGACY.with(Codec::Ac3));
    }

    /// The enhanced tags read back through the Enhanced RTMP parser as the
    /// frames they were made from: header and payload, no copy.
    #[test]
    fn enhanced_frames_parse_back() {
        use crate::media::flv::ex::{self, ExVideoBody, VideoPacket};
        for (codec, cts, key) in [
            (Codec::Hevc, 40, true),
            (Codec::Hevc, 0, false),
            (Codec::Hevc, -33, false),
            (Codec::Av1, 0, true),
            (Codec::Vp9, 0, false),
        ] {
            let f = Frame {
                codec,
                dts: 80,
                cts,
                keyframe: key,
                data: Bytes::from_static(&[0, 0, 0, 2, 0x26, 1]),
            };
            // Past the keyframe gate.
            let mut w = TagWriter::new().accepting(CodecSet::ALL);
            w.video_started = true;
            let tag = w.write(&StreamEvent::Frame(f.clone())).next().unwrap();
            assert_eq!(tag.payload.as_ptr(), f.data.as_ptr());
            let v = ex::parse_video(tag.parts().concat().into()).unwrap();
            assert_eq!(v.frame_type, if key { 1 } else { 2 });
            let ExVideoBody::Tracks(t) = v.body else {
                panic!()
            };
            assert_eq!(t[0].fourcc, FourCc::of(codec));
            assert_eq!(t[0].fourcc.codec(), Some(codec));
            assert_eq!(
                t[0].packet,
                VideoPacket::CodedFrames {
                    cts,
                    data: f.data.clone()
                }
            );
        }
        for codec in [Codec::Opus, Codec::Flac, Codec::Ac3, Codec::Eac3] {
            let f = Frame {
                codec,
                dts: 80,
                cts: 0,
                keyframe: true,
                data: Bytes::from_static(&[0xfc, 1, 2]),
            };
            let tag = TagWriter::new()
                .accepting(CodecSet::ALL)
                .write(&StreamEvent::Frame(f.clone()))
                .next()
                .unwrap();
            let a = ex::parse_audio(tag.parts().concat().into()).unwrap();
            assert_eq!(a.tracks[0].fourcc.codec(), Some(codec));
            assert_eq!(
                a.tracks[0].packet,
                ex::AudioPacket::CodedFrames(f.data.clone())
            );
        }
    }

    #[test]
    fn sequence_ends() {
        use crate::media::flv::tag::sequence_end;
        assert_eq!(sequence_end(Codec::H264).unwrap(), [0x17, 2, 0, 0, 0]);
        assert_eq!(sequence_end(Codec::Hevc).unwrap(), *b"\x92hvc1");
        assert_eq!(sequence_end(Codec::Opus).unwrap(), *b"\x92Opus");
        assert_eq!(sequence_end(Codec::Aac), None);
    }

    #[test]
    fn codec_sets() {
        assert_eq!(CodecSet::LEGACY.iter().count(), 3);
        assert!(CodecSet::LEGACY.iter().all(Codec::is_legacy));
        assert_eq!(CodecSet::ALL.iter().count(), 10);
        assert!(CodecSet::ALL.covers(CodecSet::LEGACY));
        assert!(!CodecSet::LEGACY.covers(CodecSet::ALL));
        let set: CodecSet = [Codec::Hevc, Codec::Opus].into_iter().collect();
        assert_eq!(format!("{set:?}"), r#"{"HEVC", "Opus"}"#);
    }
}
