//! FLV tags in: the sans-I/O tag reader. A publisher's audio, video and
//! data tag bodies (RTMP messages 8, 9 and 18) become hub events.
//!
//! Each track gets its own [`Timeline`] (32-bit wrap, monotonic repair); FLV
//! bodies become [`Frame`]s that slice the message payload, never copy it.
//! A repeated identical sequence header is not a new configuration.
//!
//! What cannot be carried is dropped before it reaches the hub, so players
//! and the packager only ever see frames they can decode: a tag that does
//! not parse, a frame before its sequence header, an H.264 frame whose NAL
//! length prefixes run past its end ([`IngestError`], counted as bad tags),
//! and tags of codecs castgate does not carry ([`Notice`], said once).

use std::sync::Arc;

use bytes::Bytes;

use super::ex::FourCc;
use super::tag::{self as flv, AudioTag, FlvError, VideoTag};
use crate::media::avc::AvcError;
use crate::media::timeline::Timeline;
use crate::media::{
    ac3, avc, color_info::ColorInfo, Codec, CodecConfig, Frame, MediaKind, Metadata, StreamEvent,
    TrackId,
};

/// Why a media tag was dropped (one tag; the publisher goes on).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Flv(#[from] FlvError),
    /// Nothing can decode a frame whose configuration never came.
    #[error("{0} frame before its sequence header")]
    BeforeConfig(&'static str),
    /// AVCC framing that does not add up: passed on, it would break every
    /// player and the packaged segments.
    #[error("bad NAL unit framing: {0}")]
    NalFraming(AvcError),
    #[error("bad AC-3 frame: {0}")]
    BadAc3(#[from] ac3::Ac3Error),
    #[error("bad AC-3 track: {0}")]
    Ac3(&'static str),
    #[error("more than {0} multitrack tracks")]
    TooManyTracks(usize),
}

/// Multitrack tracks (besides track 0 of each kind) one publish may have.
pub const MAX_OTHER_TRACKS: usize = 16;

/// Something about a publisher's media worth one warning, where no tag is
/// bad: castgate carries on without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A video codec castgate does not carry (FLV codec id, or `EX_VIDEO_*`).
    UnsupportedVideo(u8),
    /// An audio format castgate does not carry (FLV SoundFormat).
    UnsupportedAudio(u8),
    /// An Enhanced RTMP FourCC castgate does not carry.
    UnsupportedFourCc(MediaKind, FourCc),
    /// An AVC sequence header taken without a picture size: its SPS is
    /// missing or does not parse (decoders may still cope with in-band ones).
    UnreadableSps(String),
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::UnsupportedVideo(id) => write!(
                f,
                "unsupported video codec {} (id {id:#04x}): its tags are dropped",
                video_codec_name(*id)
            ),
            Notice::UnsupportedAudio(id) => write!(
                f,
                "unsupported audio format {} (id {id}): its tags are dropped",
                audio_format_name(*id)
            ),
            Notice::UnsupportedFourCc(kind, fourcc) => write!(
                f,
                "unsupported {} codec FourCC '{fourcc}': that track is dropped",
                kind_name(*kind)
            ),
            Notice::UnreadableSps(why) => {
                write!(f, "AVC sequence header taken without a picture size: {why}")
            }
        }
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    }
}

fn video_codec_name(id: u8) -> &'static str {
    match id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 | 6 => "Screen Video",
        4 | 5 => "On2 VP6",
        12 => "HEVC (legacy extension id; send Enhanced RTMP `hvc1`)",
        13 => "AV1 (legacy extension id; send Enhanced RTMP `av01`)",
        _ => "(unknown)",
    }
}

fn audio_format_name(id: u8) -> &'static str {
    match id {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        11 => "Speex",
        15 => "device-specific",
        _ => "(reserved)",
    }
}

#[derive(Default)]
pub struct Ingest {
    video_time: Timeline,
    audio_time: Timeline,
    video_config: Option<Arc<CodecConfig>>,
    audio_config: Option<Arc<CodecConfig>>,
    /// Multitrack tracks other than track 0: kind, id, configuration.
    other_tracks: Vec<(MediaKind, TrackId, Arc<CodecConfig>)>,
    /// The `colorInfo` each video track was last sent (by track id; at
    /// most one per track castgate keeps), attached to its configuration.
    color_infos: Vec<(TrackId, ColorInfo)>,
    /// Tags that failed to parse and were dropped.
    pub bad_tags: u64,
    /// Tags of codecs castgate does not carry yet.
    pub unsupported_tags: u64,
    pub frames: u64,
    pub bytes: u64,
    /// In-band parameter sets that did not parse.
    pub bad_in_band: u64,
    /// Unsupported codecs already reported (each once per publish).
    told: Vec<Notice>,
    /// When the message being handled arrived (ms, the driver's clock), so
    /// absurd timestamp leaps can be told from pauses; `None`: not known.
    arrival_ms: Option<i64>,
}

impl Ingest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the next messages' arrival time (milliseconds on any monotonic
    /// clock): timestamps then cannot leap far ahead of it.
    pub fn set_arrival(&mut self, ms: i64) {
        self.arrival_ms = Some(ms);
    }

    fn dts(timeline: &mut Timeline, raw: u32, arrival: Option<i64>) -> i64 {
        match arrival {
            Some(at) => timeline.next_at(raw, at),
            None => timeline.next(raw),
        }
    }

    /// Timestamp repairs made so far (both tracks).
    pub fn repairs(&self) -> u64 {
        self.video_time.repairs() + self.audio_time.repairs()
    }

    /// Turns one media message into zero or more hub events. A [`Notice`]
    /// is returned the first time there is something to say about it.
    pub fn media(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
        mut emit: impl FnMut(StreamEvent),
    ) -> Result<Option<Notice>, IngestError> {
        if payload.is_empty() {
            // Some encoders send empty tags as keep-alives.
            return Ok(None);
        }
        self.bytes += payload.len() as u64;
        match kind {
            MediaKind::Video => {
                let dts = Self::dts(&mut self.video_time, timestamp, self.arrival_ms);
                // An empty AVC sequence header announces in-band parameter
                // sets (see `annex_b_frame`), not a broken stream.
                if payload.len() == 5 && payload[0] & 0x0F == 7 && payload[1] == 0 {
                    return Ok(None);
                }
                let tag = flv::parse_video(dts, payload)?;
                self.video_tag(0, tag, &mut emit)
            }
            MediaKind::Audio => {
                let dts = Self::dts(&mut self.audio_time, timestamp, self.arrival_ms);
                let tag = flv::parse_audio(dts, payload)?;
                self.audio_tag(0, tag, &mut emit)
            }
        }
    }

    fn video_tag(
        &mut self,
        track: TrackId,
        tag: VideoTag,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<Option<Notice>, IngestError> {
        match tag {
            VideoTag::Config(c) => {
                let notice = match &c {
                    CodecConfig::Avc(avc) => unreadable_sps(avc),
                    _ => None,
                };
                if self.config(track, c, emit)? {
                    return Ok(notice);
                }
            }
            VideoTag::Frame(f)
                if track == 0
                    && f.codec == Codec::H264
                    && avc::looks_like_annex_b(&f.data, self.nal_length_size()) =>
            {
                self.annex_b_frame(f, emit)?
            }
            VideoTag::Frame(f) => {
                let nal_length_size = match self.config_of(MediaKind::Video, track) {
                    Some(c) if c.codec() != f.codec => None,
                    Some(CodecConfig::Avc(c)) => Some(Some(c.nal_length_size)),
                    Some(CodecConfig::Hevc(c)) => Some(Some(c.nal_length_size)),
                    Some(_) => Some(None),
                    None => None,
                };
                let Some(nal_length_size) = nal_length_size else {
                    return Err(IngestError::BeforeConfig(f.codec.name()));
                };
                if let Some(size) = nal_length_size {
                    if let Some(e) = avc::nal_units(&f.data, size).find_map(Result::err) {
                        return Err(IngestError::NalFraming(e));
                    }
                }
                self.frame(track, f, emit);
            }
            VideoTag::EndOfSequence | VideoTag::NotMedia => {}
            VideoTag::ColorInfo(info) => self.color_info(track, info, emit)?,
            VideoTag::Unsupported { codec_id } => {
                self.unsupported_tags += 1;
                return Ok(self.tell(Notice::UnsupportedVideo(codec_id)));
            }
            VideoTag::UnsupportedFourCc(fourcc) => {
                self.unsupported_tags += 1;
                return Ok(self.tell(Notice::UnsupportedFourCc(MediaKind::Video, fourcc)));
            }
            // Tracks do not nest: `track` is always 0 here.
            VideoTag::Tracks(tracks) => {
                let mut first = None;
                for (id, tag) in tracks {
                    first = first.or(self.video_tag(id, tag, emit)?);
                }
                return Ok(first);
            }
        }
        Ok(None)
    }

    fn audio_tag(
        &mut self,
        track: TrackId,
        tag: AudioTag,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<Option<Notice>, IngestError> {
        match tag {
            AudioTag::Config(c) => {
                self.config(track, c, emit)?;
            }
            AudioTag::Frame(f) => {
                // AC-3 and E-AC-3 say what they are in every frame.
                match f.codec {
                    Codec::Ac3 => match ac3::parse_sync_frame(&f.data)? {
                        ac3::SyncFrame::Ac3(h) => {
                            self.config(track, CodecConfig::Ac3(h), emit)?;
                        }
                        ac3::SyncFrame::Eac3(_) => {
                            return Err(IngestError::Ac3("E-AC-3 frame in an AC-3 track"))
                        }
                    },
                    Codec::Eac3 => {
                        let c = ac3::parse_eac3_access_unit(&f.data)?;
                        self.config(track, CodecConfig::Eac3(c), emit)?;
                    }
                    _ => {}
                }
                if self
                    .config_of(MediaKind::Audio, track)
                    .map(CodecConfig::codec)
                    != Some(f.codec)
                {
                    return Err(IngestError::BeforeConfig(f.codec.name()));
                }
                self.frame(track, f, emit);
            }
            AudioTag::Mp3 { config, frame } => {
                self.config(track, CodecConfig::Mp3(config), emit)?;
                self.frame(track, frame, emit);
            }
            AudioTag::NotMedia => {}
            AudioTag::Unsupported { sound_format } => {
                self.unsupported_tags += 1;
                return Ok(self.tell(Notice::UnsupportedAudio(sound_format)));
            }
            AudioTag::UnsupportedFourCc(fourcc) => {
                self.unsupported_tags += 1;
                return Ok(self.tell(Notice::UnsupportedFourCc(MediaKind::Audio, fourcc)));
            }
            AudioTag::Tracks(tracks) => {
                let mut first = None;
                for (id, tag) in tracks {
                    first = first.or(self.audio_tag(id, tag, emit)?);
                }
                return Ok(first);
            }
        }
        Ok(None)
    }

    /// The configuration of a track, if it has one.
    fn config_of(&self, kind: MediaKind, track: TrackId) -> Option<&CodecConfig> {
        match (kind, track) {
            (MediaKind::Video, 0) => self.video_config.as_deref(),
            (MediaKind::Audio, 0) => self.audio_config.as_deref(),
            _ => self
                .other_tracks
                .iter()
                .find(|(k, id, _)| (*k, *id) == (kind, track))
                .map(|(.., c)| &**c),
        }
    }

    fn frame(&mut self, track: TrackId, f: Frame, emit: &mut impl FnMut(StreamEvent)) {
        self.frames += 1;
        emit(match track {
            0 => StreamEvent::Frame(f),
            id => StreamEvent::TrackFrame(id, f),
        });
    }

    /// `notice` the first time it comes up in this publish, else nothing.
    fn tell(&mut self, notice: Notice) -> Option<Notice> {
        if self.told.contains(&notice) {
            return None;
        }
        self.told.push(notice.clone());
        Some(notice)
    }

    /// The NAL length size of the current video configuration (4 if none).
    fn nal_length_size(&self) -> u8 {
        match self.video_config.as_deref() {
            Some(CodecConfig::Avc(c)) => c.nal_length_size,
            _ => 4,
        }
    }

    /// An Annex B frame: converted to AVCC (4-byte lengths); its in-band
    /// SPS/PPS, when present, become the track's configuration. Start codes
    /// with no NAL unit behind them are an empty frame, an error like any
    /// other empty frame (it would become an empty sample).
    fn annex_b_frame(
        &mut self,
        mut f: Frame,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<(), IngestError> {
        let units = avc::annex_b_units(&f.data);
        if units.is_empty() {
            return Err(FlvError::EmptyFrame("H.264").into());
        }
        let sps = units.iter().find(|u| u[0] & 0x1F == 7);
        let pps = units.iter().find(|u| u[0] & 0x1F == 8);
        if let (Some(sps), Some(pps)) = (sps, pps) {
            match avc::build_decoder_config(sps, pps) {
                Ok(c) => {
                    self.config(0, CodecConfig::Avc(c), emit)?;
                }
                Err(_) => self.bad_in_band += 1,
            }
        }
        if self.video_config.is_none() {
            // Nothing can decode it without parameter sets.
            return Ok(());
        }
        f.data = Bytes::from(avc::annex_b_to_avcc(&units));
        self.frames += 1;
        emit(StreamEvent::Frame(f));
        Ok(())
    }

    /// A new `colorInfo` for video track `track` replaces the last one;
    /// a configuration already sent goes out again with it attached, so
    /// it applies from the next frame on (as the spec asks).
    fn color_info(
        &mut self,
        track: TrackId,
        info: ColorInfo,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<(), IngestError> {
        let at = self.color_infos.iter().position(|(id, _)| *id == track);
        match (at, info.is_empty()) {
            (Some(i), true) => {
                self.color_infos.swap_remove(i);
            }
            (Some(i), false) => self.color_infos[i].1 = info,
            // Bounded like the tracks themselves.
            (None, false) if self.color_infos.len() <= MAX_OTHER_TRACKS => {
                self.color_infos.push((track, info))
            }
            (None, _) => {}
        }
        if let Some(current) = self.config_of(MediaKind::Video, track) {
            let again = current.clone();
            self.config(track, again, emit)?;
        }
        Ok(())
    }

    /// Takes a configuration; false when it repeats the current one (see
    /// [`CodecConfig::same_decoding`]). A new track past
    /// [`MAX_OTHER_TRACKS`] is refused.
    fn config(
        &mut self,
        track: TrackId,
        config: CodecConfig,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<bool, IngestError> {
        let kind = config.kind();
        let config = match kind {
            MediaKind::Video => {
                let info = self.color_infos.iter().find(|(id, _)| *id == track);
                config.with_color_info(info.map(|(_, c)| *c))
            }
            MediaKind::Audio => config,
        };
        if self
            .config_of(kind, track)
            .is_some_and(|c| c.same_decoding(&config))
        {
            return Ok(false);
        }
        let config = Arc::new(config);
        match (kind, track) {
            (MediaKind::Video, 0) => self.video_config = Some(config.clone()),
            (MediaKind::Audio, 0) => self.audio_config = Some(config.clone()),
            _ => {
                let others = &mut self.other_tracks;
                match others
                    .iter()
                    .position(|(k, id, _)| (*k, *id) == (kind, track))
                {
                    Some(i) => others[i].2 = config.clone(),
                    None if others.len() >= MAX_OTHER_TRACKS => {
                        return Err(IngestError::TooManyTracks(MAX_OTHER_TRACKS));
                    }
                    None => others.push((kind, track, config.clone())),
                }
            }
        }
        emit(match track {
            0 => StreamEvent::Config(config),
            id => StreamEvent::TrackConfig(id, config),
        });
        Ok(true)
    }

    /// The stream's `onMetaData` object, `amf0` being its encoded value
    /// (the protocol that carried it decoded the message).
    pub fn metadata(&mut self, amf0: Bytes, mut emit: impl FnMut(StreamEvent)) {
        emit(StreamEvent::Metadata(Metadata::from_amf0(amf0)));
    }
}

/// Why an accepted AVC configuration has no picture size, if it has none.
fn unreadable_sps(c: &crate::media::AvcConfig) -> Option<Notice> {
    if c.width > 0 && c.height > 0 {
        return None;
    }
    Some(Notice::UnreadableSps(match c.sps.first() {
        None => "it holds no SPS".to_string(),
        Some(sps) => match avc::parse_sps(sps) {
            Err(e) => format!("its SPS does not parse: {e}"),
            Ok(_) => "its SPS gives no size".to_string(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv_file::{read_tags, TAG_AUDIO, TAG_VIDEO};

    /// What an FLV file FFmpeg 9 wrote makes of it: the events and notices.
    fn ingest(file: &'static [u8]) -> (Ingest, Vec<StreamEvent>, Vec<Notice>) {
        let mut ingest = Ingest::new();
        let (mut events, mut notices) = (Vec::new(), Vec::new());
        for tag in read_tags(&Bytes::from_static(file)).unwrap() {
            let kind = match tag.tag_type {
                TAG_VIDEO => MediaKind::Video,
                TAG_AUDIO => MediaKind::Audio,
                _ => continue,
            };
            let notice = ingest.media(kind, tag.timestamp, tag.body, |e| events.push(e));
            notices.extend(notice.unwrap());
        }
        (ingest, events, notices)
    }

    /// Frames and keyframes of one codec.
    type Count = (Codec, usize, usize);

    /// The codecs of the configurations, and frames per codec.
    fn summary(events: &[StreamEvent]) -> (Vec<Codec>, Vec<Count>) {
        let mut configs = Vec::new();
        let mut frames: Vec<Count> = Vec::new();
        for e in events {
            match e {
                StreamEvent::Config(c) => configs.push(c.codec()),
                StreamEvent::Frame(f) => match frames.iter_mut().find(|(c, ..)| *c == f.codec) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 += usize::from(f.keyframe);
                    }
                    None => frames.push((f.codec, 1, usize::from(f.keyframe))),
                },
                _ => {}
            }
        }
        (configs, frames)
    }

    #[test]
    fn enhanced_rtmp_from_ffmpeg_9() {
        // (file, configurations, (codec, frames, keyframes)); 10 fps with a
        // keyframe every 5 frames, 0.5 s of 48 kHz audio: AC-3 and E-AC-3
        // frames of 1536 samples, FLAC blocks of 1024.
        let cases: [(&'static [u8], &[Codec], &[Count]); 3] = [
            (
                include_bytes!("testdata/av1_ac3.flv"),
                &[Codec::Av1, Codec::Ac3],
                &[(Codec::Av1, 5, 1), (Codec::Ac3, 16, 16)],
            ),
            (
                include_bytes!("testdata/vp9_eac3.flv"),
                &[Codec::Vp9, Codec::Eac3],
                &[(Codec::Vp9, 5, 1), (Codec::Eac3, 16, 16)],
            ),
            (
                include_bytes!("testdata/h264_flac.flv"),
                &[Codec::H264, Codec::Flac],
                &[(Codec::H264, 5, 1), (Codec::Flac, 24, 24)],
            ),
        ];
        for (file, configs, frames) in cases {
            let (ingest, events, notices) = ingest(file);
            let (got_configs, mut got_frames) = summary(&events);
            got_frames.sort_by_key(|f| f.0.kind() == MediaKind::Audio);
            assert_eq!(got_configs, configs);
            assert_eq!(got_frames, frames, "{configs:?}");
            assert_eq!(notices, [], "{configs:?}");
            assert_eq!((ingest.bad_tags, ingest.unsupported_tags), (0, 0));
        }
    }

    /// HEVC and Opus with FFmpeg's colorInfo metadata and channel layout
    /// packets, which carry nothing to the hub.
    #[test]
    fn hevc_and_opus() {
        let (_, events, notices) = ingest(include_bytes!("testdata/hevc_opus.flv"));
        let (configs, frames) = summary(&events);
        assert_eq!(configs, [Codec::Hevc, Codec::Opus]);
        assert!(frames.iter().any(|f| f.0 == Codec::Hevc && f.2 >= 1));
        assert!(frames.iter().any(|f| f.0 == Codec::Opus && f.1 > 1));
        assert_eq!(notices, []);
        let StreamEvent::Config(hevc) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert!(hevc.codec_string().starts_with("hvc1."));
    }

    /// Multitrack: FFmpeg 9 sends track 0 in plain packets and track 1 in
    /// one-track multitrack packets (here two video tracks of H.264, an AAC
    /// and an Opus audio track); track 1 comes out as `Track*` events.
    #[test]
    fn multitrack_tracks_keep_their_ids() {
        let (ingest, events, notices) = ingest(include_bytes!("testdata/multitrack_av.flv"));
        let mut tracks: Vec<(MediaKind, TrackId, Codec, usize)> = Vec::new();
        for e in &events {
            let (id, f) = match e {
                StreamEvent::Frame(f) => (0, f),
                StreamEvent::TrackFrame(id, f) => (*id, f),
                _ => continue,
            };
            match tracks.iter_mut().find(|t| (t.0, t.1) == (f.kind(), id)) {
                Some(t) => t.3 += 1,
                None => tracks.push((f.kind(), id, f.codec, 1)),
            }
        }
        tracks.sort_by_key(|t| (t.0 == MediaKind::Audio, t.1));
        let shape: Vec<_> = tracks.iter().map(|t| (t.0, t.1)).collect();
        assert_eq!(
            shape,
            [
                (MediaKind::Video, 0),
                (MediaKind::Video, 1),
                (MediaKind::Audio, 0),
                (MediaKind::Audio, 1)
            ],
            "{tracks:?}"
        );
        // Both video tracks have every frame; each audio track its codec.
        assert_eq!(tracks[0].3, tracks[1].3);
        assert_eq!((tracks[2].2, tracks[3].2), (Codec::Aac, Codec::Opus));
        let track_configs = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TrackConfig(1, _)))
            .count();
        assert_eq!(track_configs, 2);
        assert_eq!(notices, []);
        assert_eq!((ingest.bad_tags, ingest.unsupported_tags), (0, 0));
    }

    #[test]
    fn an_ac3_frame_that_does_not_parse_is_a_bad_tag() {
        let mut ingest = Ingest::new();
        let err = ingest
            .media(
                MediaKind::Audio,
                0,
                crate::media::flv::hex("91 61632d33 0b77 00"),
                |_| {},
            )
            .unwrap_err();
        assert!(matches!(err, IngestError::BadAc3(_)), "{err}");
    }

    #[test]
    fn an_unknown_fourcc_is_told_once() {
        let mut ingest = Ingest::new();
        let vp8 = || crate::media::flv::hex("91 76703038 0102");
        let first = ingest.media(MediaKind::Video, 0, vp8(), |_| {}).unwrap();
        let again = ingest.media(MediaKind::Video, 40, vp8(), |_| {}).unwrap();
        assert_eq!(
            first,
            Some(Notice::UnsupportedFourCc(MediaKind::Video, FourCc::VP8))
        );
        assert_eq!(
            first.unwrap().to_string(),
            "unsupported video codec FourCC 'vp08': that track is dropped"
        );
        assert_eq!(again, None);
        assert_eq!(ingest.unsupported_tags, 2);
    }
}
