//! Publisher side: RTMP audio/video/data messages -> hub events.
//!
//! Each track gets its own [`Timeline`] (32-bit wrap, monotonic repair); FLV
//! bodies become [`Frame`]s that slice the message payload, never copy it.
//! A repeated identical sequence header is not a new configuration.

use std::sync::Arc;

use bytes::Bytes;

use crate::hub::StreamEvent;
use crate::media::flv::{self, AudioTag, FlvError, VideoTag};
use crate::media::timeline::Timeline;
use crate::media::{avc, CodecConfig, Frame, MediaKind};
use crate::rtmp::amf0::Amf0Value;

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
}

impl Ingest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Timestamp repairs made so far (both tracks).
    pub fn repairs(&self) -> u64 {
        self.video_time.repairs() + self.audio_time.repairs()
    }

    /// Turns one media message into zero or more hub events.
    pub fn media(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
        mut emit: impl FnMut(StreamEvent),
    ) -> Result<(), FlvError> {
        if payload.is_empty() {
            // Some encoders send empty tags as keep-alives.
            return Ok(());
        }
        self.bytes += payload.len() as u64;
        match kind {
            MediaKind::Video => {
                let dts = self.video_time.next(timestamp);
                // An empty AVC sequence header announces in-band parameter
                // sets (see `annex_b_frame`), not a broken stream.
                if payload.len() == 5 && payload[0] & 0x0F == 7 && payload[1] == 0 {
                    return Ok(());
                }
                match flv::parse_video(dts, payload)? {
                    VideoTag::Config(c) => self.config(CodecConfig::Avc(c), &mut emit),
                    VideoTag::Frame(f)
                        if avc::looks_like_annex_b(&f.data, self.nal_length_size()) =>
                    {
                        self.annex_b_frame(f, &mut emit)?
                    }
                    VideoTag::Frame(f) => {
                        self.frames += 1;
                        emit(StreamEvent::Frame(f));
                    }
                    VideoTag::EndOfSequence => {}
                    VideoTag::Unsupported { codec_id } => {
                        if codec_id != flv::VIDEO_NOT_MEDIA {
                            self.unsupported_tags += 1;
                        }
                    }
                }
            }
            MediaKind::Audio => {
                let dts = self.audio_time.next(timestamp);
                match flv::parse_audio(dts, payload)? {
                    AudioTag::Config(c) => self.config(c, &mut emit),
                    AudioTag::Frame(f) => {
                        self.frames += 1;
                        emit(StreamEvent::Frame(f));
                    }
                    AudioTag::Mp3 { config, frame } => {
                        self.config(CodecConfig::Mp3(config), &mut emit);
                        self.frames += 1;
                        emit(StreamEvent::Frame(frame));
                    }
                    AudioTag::Unsupported { .. } => self.unsupported_tags += 1,
                }
            }
        }
        Ok(())
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
                Ok(c) => self.config(CodecConfig::Avc(c), emit),
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

    fn config(&mut self, config: CodecConfig, emit: &mut impl FnMut(StreamEvent)) {
        let slot = match config.kind() {
            MediaKind::Video => &mut self.video_config,
            MediaKind::Audio => &mut self.audio_config,
        };
        if slot.as_deref() == Some(&config) {
            return;
        }
        let config = Arc::new(config);
        *slot = Some(config.clone());
        emit(StreamEvent::Config(config));
    }

    pub fn metadata(&mut self, metadata: Amf0Value, mut emit: impl FnMut(StreamEvent)) {
        emit(StreamEvent::Metadata(Arc::new(metadata)));
    }
}
