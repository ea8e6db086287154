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

use super::tag::{self as flv, AudioTag, FlvError, VideoTag};
use crate::media::avc::AvcError;
use crate::media::timeline::Timeline;
use crate::media::{avc, CodecConfig, Frame, MediaKind, Metadata, StreamEvent};

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
}

/// Something about a publisher's media worth one warning, where no tag is
/// bad: castgate carries on without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A video codec castgate does not carry (FLV codec id, or `EX_VIDEO_*`).
    UnsupportedVideo(u8),
    /// An audio format castgate does not carry (FLV SoundFormat).
    UnsupportedAudio(u8),
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
            Notice::UnreadableSps(why) => {
                write!(f, "AVC sequence header taken without a picture size: {why}")
            }
        }
    }
}

fn video_codec_name(id: u8) -> &'static str {
    match id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 | 6 => "Screen Video",
        4 | 5 => "On2 VP6",
        12 | flv::EX_VIDEO_HEVC => "HEVC",
        13 | flv::EX_VIDEO_AV1 => "AV1",
        flv::EX_VIDEO_VP9 => "VP9",
        flv::EX_VIDEO_OTHER => "(Enhanced RTMP FourCC)",
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
                match flv::parse_video(dts, payload)? {
                    VideoTag::Config(c) => {
                        let notice = unreadable_sps(&c);
                        if self.config(CodecConfig::Avc(c), &mut emit) {
                            return Ok(notice);
                        }
                    }
                    VideoTag::Frame(f)
                        if avc::looks_like_annex_b(&f.data, self.nal_length_size()) =>
                    {
                        self.annex_b_frame(f, &mut emit)?
                    }
                    VideoTag::Frame(f) => {
                        let Some(CodecConfig::Avc(c)) = self.video_config.as_deref() else {
                            return Err(IngestError::BeforeConfig("H.264"));
                        };
                        if let Some(e) =
                            avc::nal_units(&f.data, c.nal_length_size).find_map(Result::err)
                        {
                            return Err(IngestError::NalFraming(e));
                        }
                        self.frames += 1;
                        emit(StreamEvent::Frame(f));
                    }
                    VideoTag::EndOfSequence => {}
                    VideoTag::Unsupported { codec_id } => {
                        if codec_id != flv::VIDEO_NOT_MEDIA {
                            self.unsupported_tags += 1;
                            return Ok(self.tell(Notice::UnsupportedVideo(codec_id)));
                        }
                    }
                }
            }
            MediaKind::Audio => {
                let dts = Self::dts(&mut self.audio_time, timestamp, self.arrival_ms);
                match flv::parse_audio(dts, payload)? {
                    AudioTag::Config(c) => {
                        self.config(c, &mut emit);
                    }
                    AudioTag::Frame(f) => {
                        if !matches!(self.audio_config.as_deref(), Some(CodecConfig::Aac(_))) {
                            return Err(IngestError::BeforeConfig("AAC"));
                        }
                        self.frames += 1;
                        emit(StreamEvent::Frame(f));
                    }
                    AudioTag::Mp3 { config, frame } => {
                        self.config(CodecConfig::Mp3(config), &mut emit);
                        self.frames += 1;
                        emit(StreamEvent::Frame(frame));
                    }
                    AudioTag::Unsupported { sound_format } => {
                        self.unsupported_tags += 1;
                        return Ok(self.tell(Notice::UnsupportedAudio(sound_format)));
                    }
                }
            }
        }
        Ok(None)
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
    ) -> Result<(), FlvError> {
        let units = avc::annex_b_units(&f.data);
        if units.is_empty() {
            return Err(FlvError::EmptyFrame("H.264"));
        }
        let sps = units.iter().find(|u| u[0] & 0x1F == 7);
        let pps = units.iter().find(|u| u[0] & 0x1F == 8);
        if let (Some(sps), Some(pps)) = (sps, pps) {
            match avc::build_decoder_config(sps, pps) {
                Ok(c) => {
                    self.config(CodecConfig::Avc(c), emit);
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

    /// Takes a configuration; false when it repeats the current one.
    fn config(&mut self, config: CodecConfig, emit: &mut impl FnMut(StreamEvent)) -> bool {
        let slot = match config.kind() {
            MediaKind::Video => &mut self.video_config,
            MediaKind::Audio => &mut self.audio_config,
        };
        if slot.as_deref() == Some(&config) {
            return false;
        }
        let config = Arc::new(config);
        *slot = Some(config.clone());
        emit(StreamEvent::Config(config));
        true
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
