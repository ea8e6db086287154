//! A sans-I/O MPEG-TS muxer for SRT relays: hub events in, 188-byte
//! transport packets out, grouped seven at a time (1316 bytes, one SRT
//! message).
//!
//! `mpeg2ts` writes the packets and the PSI tables; what is ours is the PES
//! packetising, the clock (PCR), and the elementary stream conversions:
//!
//! - H.264 and HEVC (stream type 0x24) frames go from length prefixes to
//!   Annex B (start codes), each access unit led by an access unit
//!   delimiter, and every keyframe that does not carry its own parameter
//!   sets gets the ones from the sequence header (SPS/PPS; VPS/SPS/PPS),
//!   so a receiver can start at any keyframe.
//! - AAC frames get an ADTS header each; MP3 frames go as they are.
//! - AC-3 and E-AC-3 go as their sync frames, DVB style (ETSI EN 300 468
//!   Annex D): stream type 0x06 with an AC-3 (0x6a) or enhanced AC-3
//!   (0x7a) descriptor: one scheme for both, which ffmpeg 5.1 reads by
//!   the descriptor alone (ATSC's 0x81/0x87 work too; ffmpeg's own muxer
//!   adds an `AC-3`/`EAC3` registration descriptor to them).
//! - Opus as ETSI TS 102 366's successor for Opus (the "Opus in MPEG-TS"
//!   spec): stream type 0x06, registration descriptor `Opus`, DVB extension
//!   descriptor 0x80 with the channel configuration, and each packet led by
//!   its control header (0x7FE0 and the size in 255-runs).
//! - AV1, VP9 and FLAC have no carriage here: their tracks are left out
//!   (frames counted as dropped) and said once ([`TsMuxer::take_uncarried`]).
//! - PAT and PMT go out before every video keyframe (and every 500 ms on an
//!   audio-only stream), and again whenever the track set changes (with a
//!   new PMT version).
//! - The PCR rides on the video PID (the audio PID on an audio-only
//!   stream), at every video PES, and on a payload-less packet when the
//!   other track runs ahead by more than 80 ms (a slide show at 1 fps still
//!   gets a clock). PTS/DTS are the hub's milliseconds on a 90 kHz clock,
//!   shifted 700 ms ahead of the PCR: the decoder buffer time receivers
//!   expect (ffmpeg's muxer leaves the same gap).
//!
//! Frames that cannot be converted (an AVCC length running past the end, an
//! AAC configuration ADTS cannot signal, a frame before its track's
//! configuration) are dropped and counted, never half written.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mpeg2ts::es::{StreamId, StreamType};
use mpeg2ts::pes::PesHeader;
use mpeg2ts::time::{ClockReference, Timestamp};
use mpeg2ts::ts::payload::{self, Pat, Pmt};
use mpeg2ts::ts::{
    AdaptationField, ContinuityCounter, Descriptor, EsInfo, Pid, ProgramAssociation,
    TransportScramblingControl, TsHeader, TsPacket, TsPacketWriter, TsPayload, VersionNumber,
    WriteTsPacket,
};

use crate::hub::StreamEvent;
use crate::media::flv::CodecSet;
use crate::media::hevc::HevcConfig;
use crate::media::{aac, avc, AacConfig, AvcConfig, Codec, CodecConfig, Frame, MediaKind};

/// One TS packet.
pub const PACKET: usize = 188;
/// Seven packets: one SRT message (what libsrt and every SRT encoder send).
pub const MESSAGE: usize = 7 * PACKET;

const PID_PMT: u16 = 0x1000;
const PID_VIDEO: u16 = 0x100;
const PID_AUDIO: u16 = 0x101;
const PROGRAM: u16 = 1;

/// PTS/DTS lead over the PCR, in milliseconds.
const PCR_LEAD_MS: i64 = 700;
/// An audio-only stream repeats PAT/PMT at least this often (ms of media).
const PSI_INTERVAL_MS: i64 = 500;
/// The PCR is repeated at least this often (ms of media), under the 100 ms
/// ISO 13818-1 asks for.
const PCR_INTERVAL_MS: i64 = 80;
/// 2^33: PTS, DTS and the PCR base wrap here.
const WRAP_90K: i64 = 1 << 33;
/// The access unit delimiter every H.264 access unit starts with
/// (primary_pic_type 7: any slice type).
const AUD: [u8; 6] = [0, 0, 0, 1, 9, 0xf0];
/// HEVC's (NAL type 35, pic_type 2: any slice type), as FFmpeg writes it.
const HEVC_AUD: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];
/// What the Annex B conversion needs to know of a video codec's NAL units.
#[derive(Clone, Copy)]
struct NalSyntax {
    aud: &'static [u8],
    nal_type: fn(u8) -> u8,
    aud_type: u8,
    sps_type: u8,
}

const H264_SYNTAX: NalSyntax = NalSyntax {
    aud: &AUD,
    nal_type: |b| b & 0x1f,
    aud_type: 9,
    sps_type: 7,
};

const HEVC_SYNTAX: NalSyntax = NalSyntax {
    aud: &HEVC_AUD,
    nal_type: |b| (b >> 1) & 0x3f,
    aud_type: 35,
    sps_type: crate::media::hevc::NAL_SPS,
};

/// PES stream ids: video, MPEG audio, private stream 1 (AC-3, Opus).
const STREAM_ID_VIDEO: u8 = 0xe0;
const STREAM_ID_AUDIO: u8 = 0xc0;
const STREAM_ID_PRIVATE_1: u8 = 0xbd;
/// PMT descriptor tags.
const DESC_REGISTRATION: u8 = 0x05;
const DESC_AC3: u8 = 0x6a;
const DESC_EAC3: u8 = 0x7a;
const DESC_EXTENSION: u8 = 0x7f;
/// The DVB extension descriptor's tag for Opus (user defined, as used).
const EXT_OPUS: u8 = 0x80;

/// What the muxer did with the events it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TsStats {
    pub frames: u64,
    /// Frames dropped: no configuration for their track yet, or a payload
    /// that could not be converted.
    pub dropped: u64,
    pub packets: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum VideoTrack {
    Avc(Arc<AvcConfig>),
    Hevc(Arc<HevcConfig>),
}

#[derive(Clone, Debug, PartialEq)]
enum AudioTrack {
    Aac(AacConfig),
    Mp3,
    Ac3,
    Eac3,
    /// The Opus channel configuration code (1 to 8 channels).
    Opus(u8),
}

impl AudioTrack {
    fn stream_type(&self) -> StreamType {
        match self {
            AudioTrack::Aac(_) => StreamType::AdtsAac,
            AudioTrack::Mp3 => StreamType::Mpeg1Audio,
            AudioTrack::Ac3 | AudioTrack::Eac3 | AudioTrack::Opus(_) => {
                StreamType::Mpeg2PacketizedData
            }
        }
    }

    fn descriptors(&self) -> Vec<Descriptor> {
        let d = |tag, data: &[u8]| Descriptor {
            tag,
            data: data.to_vec(),
        };
        match self {
            AudioTrack::Aac(_) | AudioTrack::Mp3 => vec![],
            // No optional fields: the sync frames say it all.
            AudioTrack::Ac3 => vec![d(DESC_AC3, &[0])],
            AudioTrack::Eac3 => vec![d(DESC_EAC3, &[0])],
            AudioTrack::Opus(code) => vec![
                d(DESC_REGISTRATION, b"Opus"),
                d(DESC_EXTENSION, &[EXT_OPUS, *code]),
            ],
        }
    }

    fn stream_id(&self) -> u8 {
        match self {
            AudioTrack::Aac(_) | AudioTrack::Mp3 => STREAM_ID_AUDIO,
            _ => STREAM_ID_PRIVATE_1,
        }
    }
}

/// The muxer. Feed it with [`TsMuxer::push`], collect SRT messages with
/// [`TsMuxer::take_messages`].
pub struct TsMuxer {
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// Codecs met that MPEG-TS does not carry here, and those told.
    uncarried: CodecSet,
    told: CodecSet,
    /// Continuity counters: PAT, PMT, video, audio.
    cc: [u8; 4],
    pmt_version: u8,
    /// PAT/PMT must go out before the next frame.
    psi_due: bool,
    last_psi_ms: Option<i64>,
    last_pcr_ms: Option<i64>,
    /// Highest DTS seen, the PCR never goes back.
    clock_ms: Option<i64>,
    out: BytesMut,
    /// Reused conversion buffer for one access unit.
    scratch: Vec<u8>,
    pub stats: TsStats,
}

impl Default for TsMuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsMuxer {
    pub fn new() -> Self {
        TsMuxer {
            video: None,
            audio: None,
            uncarried: CodecSet::EMPTY,
            told: CodecSet::EMPTY,
            cc: [0; 4],
            pmt_version: 0,
            psi_due: true,
            last_psi_ms: None,
            last_pcr_ms: None,
            clock_ms: None,
            out: BytesMut::with_capacity(64 * 1024),
            scratch: Vec::new(),
            stats: TsStats::default(),
        }
    }

    /// Muxes one hub event. Metadata and publisher changes carry nothing a
    /// TS receiver needs (the hub keeps timestamps rising across
    /// publishers), so only configurations and frames produce output.
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Config(c) => self.set_config(c),
            StreamEvent::Frame(f) => self.frame(f),
            // One program of one video and one audio track: track 0's.
            StreamEvent::Metadata(_)
            | StreamEvent::PublisherStarted
            | StreamEvent::PublisherStopped
            | StreamEvent::TrackConfig(..)
            | StreamEvent::TrackFrame(..) => {}
        }
    }

    /// A codec met that MPEG-TS does not carry here (AV1, VP9, FLAC, Opus
    /// beyond 8 channels), once per codec: for the relay to say so.
    pub fn take_uncarried(&mut self) -> Option<crate::media::Codec> {
        let new = self.uncarried.iter().find(|c| !self.told.contains(*c))?;
        self.told.insert(new);
        Some(new)
    }

    /// Bytes muxed and not yet taken.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Takes the complete 1316-byte messages; with `flush`, the remainder
    /// too (a shorter message, still whole packets), so nothing waits for
    /// the next frame.
    pub fn take_messages(&mut self, flush: bool) -> Vec<Bytes> {
        let mut msgs = Vec::with_capacity(self.out.len() / MESSAGE + 1);
        while self.out.len() >= MESSAGE {
            msgs.push(self.out.split_to(MESSAGE).freeze());
        }
        if flush && !self.out.is_empty() {
            msgs.push(self.out.split().freeze());
        }
        msgs
    }

    fn set_config(&mut self, c: &CodecConfig) {
        let tracks_before = self.program();
        match c {
            CodecConfig::Avc(a) => {
                if !matches!(&self.video, Some(VideoTrack::Avc(v)) if **v == *a) {
                    self.video = Some(VideoTrack::Avc(Arc::new(a.clone())));
                }
            }
            CodecConfig::Hevc(h) => {
                if !matches!(&self.video, Some(VideoTrack::Hevc(v)) if **v == *h) {
                    self.video = Some(VideoTrack::Hevc(Arc::new(h.clone())));
                }
            }
            CodecConfig::Aac(a) => self.audio = Some(AudioTrack::Aac(a.clone())),
            CodecConfig::Mp3(_) => self.audio = Some(AudioTrack::Mp3),
            CodecConfig::Ac3(_) => self.audio = Some(AudioTrack::Ac3),
            CodecConfig::Eac3(_) => self.audio = Some(AudioTrack::Eac3),
            CodecConfig::Opus(o) if matches!(o.head.mapping_family, 0 | 1) => {
                self.audio = Some(AudioTrack::Opus(o.head.channels.clamp(1, 8)));
            }
            // Not carried: the track leaves the program, its frames are
            // counted as dropped.
            other => {
                self.uncarried.insert(other.codec());
                match other.kind() {
                    MediaKind::Video => self.video = None,
                    MediaKind::Audio => self.audio = None,
                }
            }
        }
        let tracks_after = self.program();
        if tracks_before != tracks_after {
            self.pmt_version = (self.pmt_version + 1) & 0x1f;
            self.psi_due = true;
        }
    }

    /// What the PMT says of the tracks: a change is a new PMT version (a
    /// new AAC or AVC configuration alone is not).
    fn program(&self) -> (Option<StreamType>, Option<(StreamType, Vec<Descriptor>)>) {
        (
            self.video_type(),
            self.audio
                .as_ref()
                .map(|a| (a.stream_type(), a.descriptors())),
        )
    }

    fn video_type(&self) -> Option<StreamType> {
        self.video.as_ref().map(|v| match v {
            VideoTrack::Avc(_) => StreamType::H264,
            VideoTrack::Hevc(_) => StreamType::H265,
        })
    }

    fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            PID_VIDEO
        } else {
            PID_AUDIO
        }
    }

    fn frame(&mut self, f: &Frame) {
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        let converted = match f.codec {
            Codec::H264 | Codec::Hevc => self.video_access_unit(f, &mut data),
            Codec::Aac | Codec::Mp3 | Codec::Ac3 | Codec::Eac3 | Codec::Opus => {
                self.audio_frame(f, &mut data)
            }
            Codec::Av1 | Codec::Vp9 | Codec::Flac => {
                self.uncarried.insert(f.codec);
                false
            }
        };
        if converted {
            self.stats.frames += 1;
            self.write_frame(f, &data);
        } else {
            self.stats.dropped += 1;
        }
        self.scratch = data;
    }

    /// AUD, the parameter sets on keyframes that lack them, then the
    /// frame's NAL units (its own AUDs left out) in Annex B.
    fn video_access_unit(&self, f: &Frame, out: &mut Vec<u8>) -> bool {
        let (syntax, len_size, sets): (&NalSyntax, u8, Vec<&Bytes>) = match (&self.video, f.codec) {
            (Some(VideoTrack::Avc(c)), Codec::H264) => (
                &H264_SYNTAX,
                c.nal_length_size,
                c.sps.iter().chain(&c.pps).collect(),
            ),
            (Some(VideoTrack::Hevc(c)), Codec::Hevc) => (
                &HEVC_SYNTAX,
                c.nal_length_size,
                c.vps().chain(c.sps()).chain(c.pps()).collect(),
            ),
            _ => return false,
        };
        let NalSyntax {
            aud,
            nal_type,
            aud_type,
            sps_type,
        } = *syntax;
        out.extend_from_slice(aud);
        let mut has_sps = false;
        for nal in avc::nal_units(&f.data, len_size) {
            match nal {
                Ok(n) => has_sps |= nal_type(n[0]) == sps_type,
                Err(_) => return false,
            }
        }
        if f.keyframe && !has_sps {
            for ps in sets {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(ps);
            }
        }
        for nal in avc::nal_units(&f.data, len_size).flatten() {
            if nal_type(nal[0]) != aud_type {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
        }
        true
    }

    fn audio_frame(&self, f: &Frame, out: &mut Vec<u8>) -> bool {
        match (&self.audio, f.codec) {
            (Some(AudioTrack::Aac(cfg)), Codec::Aac) => match aac::adts_header(cfg, f.data.len()) {
                Ok(h) => {
                    out.extend_from_slice(&h);
                    out.extend_from_slice(&f.data);
                    true
                }
                Err(_) => false,
            },
            (Some(AudioTrack::Mp3), Codec::Mp3)
            | (Some(AudioTrack::Ac3), Codec::Ac3)
            | (Some(AudioTrack::Eac3), Codec::Eac3) => {
                out.extend_from_slice(&f.data);
                true
            }
            (Some(AudioTrack::Opus(_)), Codec::Opus) => {
                opus_control_header(f.data.len(), out);
                out.extend_from_slice(&f.data);
                true
            }
            _ => false,
        }
    }

    fn write_frame(&mut self, f: &Frame, es: &[u8]) {
        let is_video = f.kind() == MediaKind::Video;
        let clock = self.clock_ms.map_or(f.dts, |c| c.max(f.dts));
        self.clock_ms = Some(clock);
        let psi_needed = self.psi_due
            || (is_video && f.keyframe)
            || (self.video.is_none()
                && self
                    .last_psi_ms
                    .is_none_or(|t| clock - t >= PSI_INTERVAL_MS));
        if psi_needed {
            self.write_psi();
            self.last_psi_ms = Some(clock);
        }
        let pcr_here = (if is_video { PID_VIDEO } else { PID_AUDIO }) == self.pcr_pid();
        if !pcr_here
            && self
                .last_pcr_ms
                .is_none_or(|t| clock - t >= PCR_INTERVAL_MS)
        {
            self.write_pcr_only(clock);
        }
        let pcr = pcr_here.then_some(clock);
        if let Some(p) = pcr {
            self.last_pcr_ms = Some(p);
        }
        self.write_pes(f, es, is_video, pcr);
    }

    /// A payload-less packet on the PCR PID carrying only the clock.
    fn write_pcr_only(&mut self, clock_ms: i64) {
        self.last_pcr_ms = Some(clock_ms);
        let pid = self.pcr_pid();
        // No payload: the counter repeats the last payload packet's.
        let cc = self.cc[cc_index(pid)].wrapping_sub(1) & 0xf;
        let packet = TsPacket {
            header: header(pid, cc),
            adaptation_field: Some(AdaptationField {
                pcr: Some(pcr(clock_ms)),
                ..empty_adaptation_field()
            }),
            payload: None,
        };
        self.write(&packet);
    }

    fn write_psi(&mut self) {
        self.psi_due = false;
        let pat = TsPacket {
            header: header(0, self.next_cc(0)),
            adaptation_field: None,
            payload: Some(TsPayload::Pat(Pat {
                transport_stream_id: 1,
                version_number: VersionNumber::new(),
                table: vec![ProgramAssociation {
                    program_num: PROGRAM,
                    program_map_pid: pid(PID_PMT),
                }],
            })),
        };
        self.write(&pat);
        let mut es_info = Vec::new();
        if let Some(t) = self.video_type() {
            es_info.push(EsInfo {
                stream_type: t,
                elementary_pid: pid(PID_VIDEO),
                descriptors: vec![],
            });
        }
        if let Some(a) = &self.audio {
            es_info.push(EsInfo {
                stream_type: a.stream_type(),
                elementary_pid: pid(PID_AUDIO),
                descriptors: a.descriptors(),
            });
        }
        let pmt = TsPacket {
            header: header(PID_PMT, self.next_cc(PID_PMT)),
            adaptation_field: None,
            payload: Some(TsPayload::Pmt(Pmt {
                program_num: PROGRAM,
                pcr_pid: Some(pid(self.pcr_pid())),
                version_number: VersionNumber::from_u8(self.pmt_version).unwrap_or_default(),
                program_info: vec![],
                es_info,
            })),
        };
        self.write(&pmt);
    }

    fn write_pes(&mut self, f: &Frame, es: &[u8], is_video: bool, pcr_ms: Option<i64>) {
        let (pid_n, stream_id) = match &self.audio {
            _ if is_video => (PID_VIDEO, STREAM_ID_VIDEO),
            Some(a) => (PID_AUDIO, a.stream_id()),
            None => (PID_AUDIO, STREAM_ID_AUDIO),
        };
        let dts = ts90(f.dts + PCR_LEAD_MS);
        let pts = ts90(f.pts() + PCR_LEAD_MS);
        let header_len = 9 + 5 + if pts != dts { 5 } else { 0 };
        let pes_header = PesHeader {
            stream_id: StreamId::new(stream_id),
            priority: false,
            data_alignment_indicator: true,
            copyright: false,
            original_or_copy: false,
            pts: Some(pts),
            dts: (pts != dts).then_some(dts),
            escr: None,
        };
        // PES_packet_length counts from after the length field; 0 means
        // "unbounded", which only video may use.
        let pes_len = header_len - 6 + es.len();
        let pes_packet_len = match u16::try_from(pes_len) {
            Ok(n) if !is_video => n,
            _ => 0,
        };
        let af = (pcr_ms.is_some() || (is_video && f.keyframe)).then(|| AdaptationField {
            random_access_indicator: is_video && f.keyframe,
            pcr: pcr_ms.map(pcr),
            ..empty_adaptation_field()
        });
        let af_len = af
            .as_ref()
            .map_or(0, |a| 2 + if a.pcr.is_some() { 6 } else { 0 });
        let first_room = 184 - af_len - header_len;
        let (first, mut rest) = es.split_at(first_room.min(es.len()));
        let start = TsPacket {
            header: header(pid_n, self.next_cc(pid_n)),
            adaptation_field: af,
            payload: Some(TsPayload::PesStart(payload::Pes {
                header: pes_header,
                pes_packet_len,
                // `first` fits a packet by construction.
                data: payload::Bytes::new(first).unwrap_or_else(|_| empty_bytes()),
            })),
        };
        self.write(&start);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(payload::Bytes::MAX_SIZE));
            rest = tail;
            let packet = TsPacket {
                header: header(pid_n, self.next_cc(pid_n)),
                adaptation_field: None,
                payload: Some(TsPayload::PesContinuation(
                    payload::Bytes::new(chunk).unwrap_or_else(|_| empty_bytes()),
                )),
            };
            self.write(&packet);
        }
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let i = cc_index(pid);
        let cc = self.cc[i];
        self.cc[i] = (cc + 1) & 0xf;
        cc
    }

    fn write(&mut self, packet: &TsPacket) {
        let before = self.out.len();
        let mut w = TsPacketWriter::new(bytes::BufMut::writer(&mut self.out));
        // Every packet is built to fit: a failure is a bug in this module,
        // and then the partial packet is taken back out.
        if w.write_ts_packet(packet).is_err() || self.out.len() != before + PACKET {
            self.out.truncate(before);
            debug_assert!(false, "TS packet did not fit: {packet:?}");
            return;
        }
        self.stats.packets += 1;
    }
}

/// The Opus control header of one packet (Opus in MPEG-TS, 3.1): the
/// 11-bit prefix 0x3ff with no trim and no extension (0x7FE0), then the
/// size as bytes of 255 and a last byte below 255.
fn opus_control_header(size: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x7f, 0xe0]);
    out.extend(std::iter::repeat_n(0xff, size / 255));
    out.push((size % 255) as u8);
}

fn cc_index(pid: u16) -> usize {
    match pid {
        0 => 0,
        PID_PMT => 1,
        PID_VIDEO => 2,
        _ => 3,
    }
}

fn pid(n: u16) -> Pid {
    // Our PIDs are constants below 0x1FFF.
    Pid::new(n).unwrap_or_else(|_| Pid::from(0))
}

fn header(pid_n: u16, cc: u8) -> TsHeader {
    TsHeader {
        transport_error_indicator: false,
        transport_priority: false,
        pid: pid(pid_n),
        transport_scrambling_control: TransportScramblingControl::NotScrambled,
        continuity_counter: ContinuityCounter::from_u8(cc & 0xf).unwrap_or_default(),
    }
}

fn empty_adaptation_field() -> AdaptationField {
    AdaptationField {
        discontinuity_indicator: false,
        random_access_indicator: false,
        es_priority_indicator: false,
        pcr: None,
        opcr: None,
        splice_countdown: None,
        transport_private_data: Vec::new(),
        extension: None,
    }
}

fn empty_bytes() -> payload::Bytes {
    payload::Bytes::new(&[]).unwrap_or_else(|_| unreachable!("an empty payload always fits"))
}

/// Milliseconds to the 33-bit 90 kHz clock, wrapping as MPEG-TS does.
fn ts90(ms: i64) -> Timestamp {
    let v = ms.saturating_mul(90).rem_euclid(WRAP_90K);
    Timestamp::new(v as u64).unwrap_or_else(|_| unreachable!("below 2^33 by construction"))
}

fn pcr(ms: i64) -> ClockReference {
    let base = ms.saturating_mul(90).rem_euclid(WRAP_90K) as u64;
    ClockReference::new(base * 300).unwrap_or_else(|_| unreachable!("below the PCR maximum"))
}

/// Muxes arbitrary events and checks the output framing: the fuzz target's
/// driver (also run by a property test). `data` is cut into events: each
/// starts with a selector byte, then a length and a payload.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    use crate::media::{AacConfig, Mp3Config};
    let mut mux = TsMuxer::new();
    let mut rest = data;
    let mut dts: i64 = 0;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len) * 8;
        let (payload, tail) = tail.split_at(n.min(tail.len()));
        rest = tail;
        dts += i64::from(sel >> 4) * 7 - 20;
        let data = Bytes::copy_from_slice(payload);
        let ev = match sel & 0x7 {
            0 => StreamEvent::Config(Arc::new(CodecConfig::Avc(AvcConfig {
                record: Bytes::new(),
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 31,
                nal_length_size: 1 + ((sel >> 3) & 3),
                sps: vec![data.clone()],
                pps: vec![data],
                width: 0,
                height: 0,
            }))),
            1 => StreamEvent::Config(Arc::new(CodecConfig::Aac(AacConfig {
                asc: data,
                object_type: 2,
                sample_rate: 48000,
                channels: 2,
                frame_length: 1024,
            }))),
            2 => StreamEvent::Config(Arc::new(CodecConfig::Mp3(Mp3Config {
                sample_rate: 44100,
                channels: 2,
                flv_flags: 0x2f,
            }))),
            3 | 4 => StreamEvent::Frame(Frame {
                codec: Codec::H264,
                dts,
                cts: i32::from(sel >> 3) * 33,
                keyframe: sel & 1 == 1,
                data,
            }),
            5 => StreamEvent::Frame(Frame {
                codec: Codec::Aac,
                dts,
                cts: 0,
                keyframe: true,
                data,
            }),
            6 => StreamEvent::Frame(Frame {
                codec: Codec::Mp3,
                dts,
                cts: 0,
                keyframe: true,
                data,
            }),
            _ => match (sel >> 3) & 3 {
                0 => StreamEvent::PublisherStarted,
                // The Enhanced RTMP codecs: an Opus configuration, or a
                // frame of HEVC, Opus, AC-3, E-AC-3 or AV1 (no carriage).
                1 => StreamEvent::Config(Arc::new(CodecConfig::Opus(crate::media::OpusRecord {
                    record: Bytes::new(),
                    head: crate::media::opus::OpusHead {
                        version: 1,
                        channels: 1 + (sel >> 5),
                        pre_skip: 312,
                        input_sample_rate: 48000,
                        output_gain: 0,
                        mapping_family: u8::from(sel >> 5 > 1),
                        mapping: None,
                    },
                }))),
                _ => StreamEvent::Frame(Frame {
                    codec: [
                        Codec::Hevc,
                        Codec::Opus,
                        Codec::Ac3,
                        Codec::Eac3,
                        Codec::Av1,
                    ][usize::from(sel >> 5) % 5],
                    dts,
                    cts: 0,
                    keyframe: sel & 0x10 != 0,
                    data,
                }),
            },
        };
        mux.push(&ev);
        let msgs = mux.take_messages(sel & 0x80 != 0);
        for m in msgs {
            assert!(m.len() <= MESSAGE && m.len() % PACKET == 0);
            assert!(m.chunks(PACKET).all(|p| p[0] == 0x47));
        }
    }
    assert_eq!(mux.pending() % PACKET, 0);
}

#[cfg(test)]
mod tests;
