//! MPEG-TS in: a sans-I/O demuxer for SRT publishes (and any other
//! transport stream). Bytes come in chunks of any size; hub events come
//! out: [`StreamEvent::Config`] and [`StreamEvent::Frame`], the same ones
//! [`crate::media::flv::Ingest`] makes of the same content, so the rest of
//! castgate (hub, packager, RTMP play, relays) takes a TS publish as an
//! ordinary publish. It reads what `egress::ts` writes and what FFmpeg and
//! srt-live-transmit send.
//!
//! - Packets: 188 bytes, each confirmed by the next one's 0x47 sync byte;
//!   on a miss, bytes are skipped until two packets in a row start with it
//!   (counted as a resync).
//! - PSI (`psi`): PAT and PMT sections, reassembled, bounded (1 KiB) and
//!   CRC checked. The first program is taken, with its first video stream
//!   (H.264, HEVC) and first audio stream (AAC, MP3, AC-3, E-AC-3, Opus); a
//!   new PMT version re-maps them.
//! - PES (`pes`): reassembled per PID under a byte cap ([`DemuxLimits`]);
//!   a unit start completes the previous one, a nonzero
//!   `PES_packet_length` completes it as soon as it is reached. A
//!   continuity counter gap drops the damaged PES (a repeated counter is a
//!   duplicate packet and is ignored).
//! - Time (`clock`): PTS/DTS unwrapped past 33 bits, the first one at the
//!   base, jumps re-based program-wide, milliseconds per track monotonic.
//! - Elementary streams: `video` (Annex B to length prefixes, parameter
//!   sets into the configuration record) and `audio` (one hub frame per
//!   ADTS/MP3/AC-3 frame, E-AC-3 access unit or Opus packet, timed by its
//!   sample count from the PES time; a frame split across PES packets is
//!   carried over).
//!
//! Latency: a video PES with no length (FFmpeg, `egress::ts`) ends where
//! the next one starts, so each access unit waits one frame interval (33 ms
//! at 30 fps); audio PES carry their length and go out as they complete.
//!
//! Not `mpeg2ts`'s reader (which the muxer uses to write): it reads whole
//! packets from an `io::Read`, stops at the first bad or unknown one and
//! assumes a section fits a packet; resync, continuity and per-PID bounds
//! are what a publisher's stream needs.
//!
//! Nothing here panics on any input, and everything is bounded before it
//! is allocated; what is dropped is counted ([`DemuxStats`]) and said once
//! ([`Warning`]).

mod audio;
mod clock;
mod pes;
mod psi;
mod video;

use std::sync::Arc;

use bytes::Bytes;

use crate::media::{Codec, CodecConfig, Frame, MediaKind, StreamEvent};
use clock::{Clock, Placement, TrackTime};
use pes::PesHeader;
use psi::{EsKind, Sections};

pub use pes::PesError;
pub use psi::SectionError;

/// One transport packet.
pub const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const PID_PAT: u16 = 0;
const PID_NULL: u16 = 0x1fff;
/// Distinct warnings remembered to say each once; past this many, new
/// ones are only counted.
const MAX_TOLD: usize = 64;
/// Composition offsets (PTS − DTS) beyond ±10 s are damage, clamped.
const MAX_COMPOSITION_TICKS: i64 = 10_000 * clock::TICKS_PER_MS;

/// How much one elementary stream may buffer: a PES past its cap is
/// dropped before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemuxLimits {
    /// A video PES (one access unit): 8 MiB, room for a 4K intra frame.
    pub video_pes: usize,
    /// An audio PES: 256 KiB, seconds of any audio codec carried here.
    pub audio_pes: usize,
}

impl Default for DemuxLimits {
    fn default() -> Self {
        DemuxLimits {
            video_pes: 8 << 20,
            audio_pes: 256 << 10,
        }
    }
}

/// What the demuxer read and what it dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Transport packets read (any PID).
    pub packets: u64,
    /// Times the packet sync was lost.
    pub resyncs: u64,
    /// Bytes skipped looking for the sync byte.
    pub skipped_bytes: u64,
    /// Packets with the transport error indicator set, dropped.
    pub transport_errors: u64,
    /// Continuity counter gaps on the PIDs read.
    pub cc_errors: u64,
    /// PES packets dropped: damaged, too long, truncated, without a
    /// header or a timestamp.
    pub dropped_pes: u64,
    /// Frames sent.
    pub frames: u64,
    /// Frames dropped: before their configuration, without a time, or of
    /// a format that cannot be carried.
    pub dropped_frames: u64,
    /// Timestamp jumps that re-based the program.
    pub discontinuities: u64,
    /// Decode times clamped to keep a track monotonic.
    pub repairs: u64,
}

/// Something about a stream worth one log line. Each distinct warning is
/// handed out once ([`TsDemuxer::take_warnings`]); the counters in
/// [`DemuxStats`] count every occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Bytes between packets that did not start with the sync byte.
    SyncLost,
    /// Packets marked damaged by the transport (error indicator set).
    TransportError,
    /// Scrambled packets: castgate has no keys.
    Scrambled { pid: u16 },
    /// An adaptation field longer than its packet.
    BadAdaptationField { pid: u16 },
    /// Packets were lost: the PES being assembled was dropped.
    ContinuityError { pid: u16 },
    /// A PAT or PMT section dropped.
    BadSection { pid: u16, why: SectionError },
    /// A new PMT version (or another program) re-mapped the streams.
    ProgramChanged { program: u16, version: u8 },
    /// A stream type castgate does not carry: ignored.
    UnsupportedStream { pid: u16, stream_type: u8 },
    /// A second stream of a kind already taken: ignored.
    ExtraStream { pid: u16, kind: MediaKind },
    /// A PES longer than [`DemuxLimits`] allows: dropped.
    PesTooLong { pid: u16, limit: usize },
    /// A PES that ended before its `PES_packet_length`: dropped.
    PesTruncated { pid: u16 },
    /// A PES whose header does not parse: dropped.
    BadPes { pid: u16, why: PesError },
    /// A PES without a timestamp, with nothing to time it from: dropped.
    NoTimestamp { pid: u16 },
    /// A timestamp jump: the program was re-based to continue.
    Discontinuity { pid: u16 },
    /// Elementary stream bytes that are not a frame: skipped.
    BadFrame { codec: Codec, why: &'static str },
    /// In-band parameter sets that make no configuration.
    BadParameterSets { codec: Codec, why: &'static str },
    /// Video before its first parameter sets: dropped.
    BeforeConfig { codec: Codec },
    /// An audio format castgate cannot carry: its frames are dropped.
    UnsupportedAudio { codec: Codec, why: &'static str },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::SyncLost => f.write_str("TS sync lost: bytes skipped to the next packet"),
            Warning::TransportError => {
                f.write_str("packets with the transport error indicator: dropped")
            }
            Warning::Scrambled { pid } => write!(f, "PID {pid:#x} is scrambled: dropped"),
            Warning::BadAdaptationField { pid } => {
                write!(f, "PID {pid:#x}: adaptation field longer than the packet")
            }
            Warning::ContinuityError { pid } => {
                write!(
                    f,
                    "PID {pid:#x}: continuity counter gap, the damaged PES is dropped"
                )
            }
            Warning::BadSection { pid, why } => {
                write!(f, "PID {pid:#x}: PSI section dropped: {why}")
            }
            Warning::ProgramChanged { program, version } => {
                write!(
                    f,
                    "program {program} changed (PMT version {version}): streams re-mapped"
                )
            }
            Warning::UnsupportedStream { pid, stream_type } => write!(
                f,
                "PID {pid:#x}: stream type {stream_type:#04x} is not carried: ignored"
            ),
            Warning::ExtraStream { pid, kind } => write!(
                f,
                "PID {pid:#x}: another {} stream, only the first is carried: ignored",
                match kind {
                    MediaKind::Video => "video",
                    MediaKind::Audio => "audio",
                }
            ),
            Warning::PesTooLong { pid, limit } => {
                write!(f, "PID {pid:#x}: PES longer than {limit} bytes: dropped")
            }
            Warning::PesTruncated { pid } => {
                write!(f, "PID {pid:#x}: PES shorter than its length: dropped")
            }
            Warning::BadPes { pid, why } => {
                write!(f, "PID {pid:#x}: bad PES header ({why}): dropped")
            }
            Warning::NoTimestamp { pid } => {
                write!(f, "PID {pid:#x}: PES without a timestamp: dropped")
            }
            Warning::Discontinuity { pid } => {
                write!(f, "PID {pid:#x}: timestamp jump, the timeline was re-based")
            }
            Warning::BadFrame { codec, why } => write!(f, "{codec}: {why}: skipped"),
            Warning::BadParameterSets { codec, why } => write!(f, "{codec}: {why}"),
            Warning::BeforeConfig { codec } => {
                write!(f, "{codec} frames before the first parameter sets: dropped")
            }
            Warning::UnsupportedAudio { codec, why } => {
                write!(f, "{codec}: {why} cannot be carried: dropped")
            }
        }
    }
}

/// Counters and the warnings not yet taken.
#[derive(Debug, Default)]
struct Log {
    stats: DemuxStats,
    told: Vec<Warning>,
    pending: Vec<Warning>,
}

impl Log {
    fn warn(&mut self, w: Warning) {
        if self.told.len() < MAX_TOLD && !self.told.contains(&w) {
            self.told.push(w.clone());
            self.pending.push(w);
        }
    }

    fn placed(&mut self, pid: u16, placement: Placement) {
        match placement {
            Placement::Kept => {}
            Placement::Clamped => self.stats.repairs += 1,
            Placement::Rebased => {
                self.stats.discontinuities += 1;
                self.warn(Warning::Discontinuity { pid });
            }
        }
    }
}

/// A PID's continuity counter (13818-1 2.4.3.3).
#[derive(Debug, Default)]
struct Continuity(Option<u8>);

enum Counter {
    Next,
    Duplicate,
    Gap,
}

impl Continuity {
    /// For a packet with payload; `discontinuity`: the adaptation field
    /// says the counter may jump.
    fn check(&mut self, cc: u8, discontinuity: bool) -> Counter {
        match self.0.replace(cc) {
            None => Counter::Next,
            Some(_) if discontinuity => Counter::Next,
            Some(last) if last == cc => Counter::Duplicate,
            Some(last) if (last + 1) & 0xf == cc => Counter::Next,
            Some(_) => Counter::Gap,
        }
    }
}

#[derive(Debug)]
struct Program {
    number: u16,
    pmt_pid: u16,
    sections: Sections,
    cc: Continuity,
    /// The PMT version applied.
    version: Option<u8>,
}

impl Program {
    fn new(number: u16, pmt_pid: u16) -> Self {
        Program {
            number,
            pmt_pid,
            sections: Sections::default(),
            cc: Continuity::default(),
            version: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum PesState {
    /// Waiting for a unit start.
    #[default]
    Idle,
    Collecting,
    /// Dropped: waiting for the next unit start.
    Skipping,
}

/// The PES being assembled on a PID.
#[derive(Debug, Default)]
struct Pes {
    state: PesState,
    buf: Vec<u8>,
    header: Option<PesHeader>,
    /// Unwrapped (DTS, PTS) positions, when the header has a PTS.
    times: Option<(i64, i64)>,
}

/// Where an audio track's next frame is timed from: a PES time and the
/// samples since.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    position: i64,
    samples: u64,
    rate: u32,
}

#[derive(Debug)]
struct Track {
    pid: u16,
    kind: EsKind,
    cc: Continuity,
    pes: Pes,
    config: Option<Arc<CodecConfig>>,
    /// Audio: the running time.
    next: Option<Anchor>,
    /// Audio: the start of a frame the last PES ended in.
    carry: Vec<u8>,
}

impl Track {
    fn new(pid: u16, kind: EsKind) -> Self {
        Track {
            pid,
            kind,
            cc: Continuity::default(),
            pes: Pes::default(),
            config: None,
            next: None,
            carry: Vec::new(),
        }
    }

    fn drop_pes(&mut self, log: &mut Log) {
        if self.pes.state == PesState::Collecting {
            log.stats.dropped_pes += 1;
        }
        self.pes.state = PesState::Skipping;
        self.pes.buf.clear();
        self.pes.header = None;
        self.pes.times = None;
        self.carry.clear();
    }
}

/// Which state a packet's PID feeds.
#[derive(Clone, Copy)]
enum Target {
    Pat,
    Pmt,
    Track(usize),
}

/// The demuxer: [`TsDemuxer::push`] bytes, get events.
#[derive(Debug)]
pub struct TsDemuxer {
    limits: DemuxLimits,
    /// Bytes not yet read: less than two packets between calls.
    buf: Vec<u8>,
    /// Packets were found where expected; a miss then is a loss.
    synced: bool,
    pat: Sections,
    pat_cc: Continuity,
    program: Option<Program>,
    /// The video and the audio stream taken, at most one of each.
    tracks: Vec<Track>,
    /// Video's and audio's places on the timeline: per kind, not per
    /// stream, so a stream re-mapped by a new PMT goes on from where the
    /// last one was (the hub's times never go back).
    timelines: [TrackTime; 2],
    clock: Clock,
    log: Log,
}

impl TsDemuxer {
    pub fn new(limits: DemuxLimits) -> Self {
        TsDemuxer {
            limits,
            buf: Vec::new(),
            // Not a loss: the first packet is looked for like any other.
            synced: false,
            pat: Sections::default(),
            pat_cc: Continuity::default(),
            program: None,
            tracks: Vec::new(),
            timelines: Default::default(),
            clock: Clock::new(0),
            log: Log::default(),
        }
    }

    /// The first timestamp maps to `base_ms` instead of 0 (a publish that
    /// continues a timeline). Before the first [`TsDemuxer::push`].
    #[must_use]
    pub fn with_base_ms(mut self, base_ms: i64) -> Self {
        self.clock = Clock::new(base_ms);
        self
    }

    pub fn stats(&self) -> &DemuxStats {
        &self.log.stats
    }

    /// Warnings not taken yet, each distinct one once per demuxer.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.log.pending)
    }

    /// Reads `bytes` (any amount, packets need not be aligned), calling
    /// `emit` with the events they complete, in stream order.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(StreamEvent)) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let mut pos = 0;
        while let Some(rest) = buf.get(pos..).filter(|r| r.len() >= PACKET) {
            if rest[0] == SYNC {
                // The next packet's first byte confirms this one; the last
                // packet of a chunk goes on trust while in sync (waiting
                // would delay every chunk by one).
                if rest.get(PACKET).map_or(self.synced, |&b| b == SYNC) {
                    self.synced = true;
                    self.packet(&rest[..PACKET], &mut emit);
                    pos += PACKET;
                    continue;
                }
                if rest.len() == PACKET {
                    break;
                }
            }
            if self.synced {
                self.synced = false;
                self.log.stats.resyncs += 1;
                self.log.warn(Warning::SyncLost);
            }
            let skip = rest[1..]
                .iter()
                .position(|&b| b == SYNC)
                .map_or(rest.len(), |i| i + 1);
            self.log.stats.skipped_bytes += skip as u64;
            pos += skip;
        }
        buf.drain(..pos);
        self.buf = buf;
    }

    /// Ends the stream: the PES packets still open (a video PES without a
    /// length ends only where the next starts) are completed; a partial
    /// packet left over is dropped.
    pub fn finish(&mut self, mut emit: impl FnMut(StreamEvent)) {
        // A last packet waiting for a next one to confirm its sync.
        if self.buf.len() >= PACKET && self.buf[0] == SYNC {
            let last = std::mem::take(&mut self.buf);
            self.packet(&last[..PACKET], &mut emit);
        }
        for i in 0..self.tracks.len() {
            self.complete(i, &mut emit);
        }
        self.buf.clear();
    }

    fn packet(&mut self, p: &[u8], emit: &mut dyn FnMut(StreamEvent)) {
        self.log.stats.packets += 1;
        if p[1] & 0x80 != 0 {
            // The PID itself may be damaged: nothing of it is used.
            self.log.stats.transport_errors += 1;
            self.log.warn(Warning::TransportError);
            return;
        }
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let target = if pid == PID_PAT {
            Target::Pat
        } else if self.program.as_ref().is_some_and(|g| g.pmt_pid == pid) {
            Target::Pmt
        } else if let Some(i) = self.tracks.iter().position(|t| t.pid == pid) {
            Target::Track(i)
        } else {
            return;
        };
        let unit_start = p[1] & 0x40 != 0;
        let scrambled = p[3] >> 6 != 0;
        let control = (p[3] >> 4) & 3;
        let mut start = 4;
        let mut discontinuity = false;
        if control & 2 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > PACKET {
                self.log.warn(Warning::BadAdaptationField { pid });
                self.damage(target);
                return;
            }
            discontinuity = len > 0 && p[5] & 0x80 != 0;
            start = 5 + len;
        }
        if control & 1 == 0 {
            return; // no payload: the counter does not count it
        }
        let counter = match target {
            Target::Pat => &mut self.pat_cc,
            Target::Pmt => match self.program.as_mut() {
                Some(g) => &mut g.cc,
                None => return,
            },
            Target::Track(i) => &mut self.tracks[i].cc,
        };
        match counter.check(p[3] & 0xf, discontinuity) {
            Counter::Next => {}
            Counter::Duplicate => return,
            Counter::Gap => {
                self.log.stats.cc_errors += 1;
                self.log.warn(Warning::ContinuityError { pid });
                self.damage(target);
            }
        }
        if scrambled {
            self.log.warn(Warning::Scrambled { pid });
            self.damage(target);
            return;
        }
        let payload = &p[start..];
        match target {
            Target::Pat => {
                let mut sections = std::mem::take(&mut self.pat);
                let r = sections.push(payload, unit_start, &mut |s| self.pat_section(s));
                self.pat = sections;
                if let Err(why) = r {
                    self.log.warn(Warning::BadSection { pid, why });
                }
            }
            Target::Pmt => {
                let Some(g) = self.program.as_mut() else {
                    return;
                };
                let mut sections = std::mem::take(&mut g.sections);
                let r = sections.push(payload, unit_start, &mut |s| self.pmt_section(pid, s));
                // The program may have been replaced by a section of it.
                if let Some(g) = self.program.as_mut().filter(|g| g.pmt_pid == pid) {
                    g.sections = sections;
                }
                if let Err(why) = r {
                    self.log.warn(Warning::BadSection { pid, why });
                }
            }
            Target::Track(i) => self.es_payload(i, payload, unit_start, emit),
        }
    }

    /// Packets of `target` were lost or unreadable.
    fn damage(&mut self, target: Target) {
        match target {
            Target::Pat => self.pat.reset(),
            Target::Pmt => {
                if let Some(g) = self.program.as_mut() {
                    g.sections.reset();
                }
            }
            Target::Track(i) => self.tracks[i].drop_pes(&mut self.log),
        }
    }

    fn pat_section(&mut self, section: &[u8]) {
        let s = match psi::check(section) {
            Ok(s) => s,
            Err(why) => {
                self.log.warn(Warning::BadSection { pid: PID_PAT, why });
                return;
            }
        };
        if s.table_id != psi::TABLE_PAT || !s.current {
            return;
        }
        let usable = |&(n, pid): &(u16, u16)| n != 0 && pid != PID_PAT && pid != PID_NULL;
        let mut programs = psi::pat_programs(s.body).filter(usable);
        match self.program.as_mut() {
            None => {
                if let Some((n, pid)) = programs.next() {
                    self.program = Some(Program::new(n, pid));
                }
            }
            Some(g) => match psi::pat_programs(s.body)
                .filter(usable)
                .find(|e| e.0 == g.number)
            {
                Some((_, pid)) if pid != g.pmt_pid => *g = Program::new(g.number, pid),
                Some(_) => {}
                // Our program left a PAT that lists them all: take its first.
                None if s.only => {
                    if let Some((n, pid)) = programs.next() {
                        self.program = Some(Program::new(n, pid));
                    }
                }
                None => {}
            },
        }
    }

    fn pmt_section(&mut self, pid: u16, section: &[u8]) {
        let s = match psi::check(section) {
            Ok(s) => s,
            Err(why) => {
                self.log.warn(Warning::BadSection { pid, why });
                return;
            }
        };
        let Some(g) = self.program.as_mut().filter(|g| g.pmt_pid == pid) else {
            return;
        };
        if s.table_id != psi::TABLE_PMT || !s.current || s.id != g.number {
            return;
        }
        if g.version == Some(s.version) {
            return; // a repeat
        }
        let pmt = match psi::parse_pmt(s.body) {
            Ok(p) => p,
            Err(why) => {
                self.log.warn(Warning::BadSection { pid, why });
                return;
            }
        };
        if g.version.replace(s.version).is_some() {
            let w = Warning::ProgramChanged {
                program: g.number,
                version: s.version,
            };
            self.log.warn(w);
        }
        let mut taken: [Option<(u16, EsKind)>; 2] = [None, None];
        for es in &pmt.streams {
            let reserved = [PID_PAT, PID_NULL, pid].contains(&es.pid);
            if reserved || taken.iter().flatten().any(|t| t.0 == es.pid) {
                continue;
            }
            let Some(kind) = psi::classify(es.stream_type, es.descriptors, pmt.program_info) else {
                self.log.warn(Warning::UnsupportedStream {
                    pid: es.pid,
                    stream_type: es.stream_type,
                });
                continue;
            };
            let slot = &mut taken[usize::from(kind.media_kind() == MediaKind::Audio)];
            if slot.is_none() {
                *slot = Some((es.pid, kind));
            } else {
                self.log.warn(Warning::ExtraStream {
                    pid: es.pid,
                    kind: kind.media_kind(),
                });
            }
        }
        // A stream kept as it was keeps its state; a changed one starts over.
        self.tracks
            .retain(|t| taken.contains(&Some((t.pid, t.kind))));
        for (pid, kind) in taken.into_iter().flatten() {
            if !self.tracks.iter().any(|t| t.pid == pid) {
                self.tracks.push(Track::new(pid, kind));
            }
        }
    }

    fn es_payload(
        &mut self,
        i: usize,
        payload: &[u8],
        unit_start: bool,
        emit: &mut dyn FnMut(StreamEvent),
    ) {
        if unit_start {
            self.complete(i, emit);
            let pes = &mut self.tracks[i].pes;
            pes.buf.clear();
            pes.header = None;
            pes.times = None;
            pes.state = PesState::Collecting;
        }
        let Self {
            tracks,
            clock,
            log,
            limits,
            ..
        } = self;
        let track = &mut tracks[i];
        if track.pes.state != PesState::Collecting {
            return;
        }
        let limit = match track.kind.media_kind() {
            MediaKind::Video => limits.video_pes,
            MediaKind::Audio => limits.audio_pes,
        };
        let pid = track.pid;
        if track.pes.buf.len() + payload.len() > limit {
            log.warn(Warning::PesTooLong { pid, limit });
            track.drop_pes(log);
            return;
        }
        append_bounded(&mut track.pes.buf, payload, limit);
        if track.pes.header.is_none() {
            match pes::parse_header(&track.pes.buf) {
                Ok(None) => {}
                Ok(Some(h)) => {
                    if h.packet_length != 0 && 6 + h.packet_length > limit {
                        log.warn(Warning::PesTooLong { pid, limit });
                        track.drop_pes(log);
                        return;
                    }
                    track.pes.times = h.pts.map(|pts| {
                        let dts_raw = h.dts.unwrap_or(pts);
                        let dts = clock.unwrap(dts_raw);
                        (dts, dts.saturating_add(clock::step33(dts_raw, pts)))
                    });
                    track.pes.header = Some(h);
                }
                Err(why) => {
                    log.warn(Warning::BadPes { pid, why });
                    track.drop_pes(log);
                    return;
                }
            }
        }
        if let Some(h) = track.pes.header.filter(|h| h.packet_length != 0) {
            if track.pes.buf.len() >= 6 + h.packet_length {
                // Bytes past the length are not the stream's.
                track.pes.buf.truncate(6 + h.packet_length);
                self.complete(i, emit);
            }
        }
    }

    /// Completes the PES being assembled on track `i`, if any.
    fn complete(&mut self, i: usize, emit: &mut dyn FnMut(StreamEvent)) {
        let track = &mut self.tracks[i];
        if track.pes.state != PesState::Collecting {
            return;
        }
        track.pes.state = PesState::Idle;
        let pid = track.pid;
        let header = track.pes.header.take();
        let times = track.pes.times.take();
        let Some(h) = header else {
            self.log.warn(Warning::BadPes {
                pid,
                why: PesError::BadLength,
            });
            self.log.stats.dropped_pes += 1;
            return;
        };
        let len = track.pes.buf.len();
        if h.packet_length != 0 && len < 6 + h.packet_length {
            self.log.warn(Warning::PesTruncated { pid });
            self.log.stats.dropped_pes += 1;
            return;
        }
        if len < h.data_offset {
            self.log.warn(Warning::BadPes {
                pid,
                why: PesError::BadLength,
            });
            self.log.stats.dropped_pes += 1;
            return;
        }
        match track.kind.media_kind() {
            MediaKind::Video => {
                let buf = std::mem::take(&mut track.pes.buf);
                self.video_pes(i, &buf[h.data_offset..], times, emit);
                // The buffer is kept for the next access unit.
                self.tracks[i].pes.buf = buf;
            }
            MediaKind::Audio => {
                let data = Bytes::from(std::mem::take(&mut track.pes.buf)).slice(h.data_offset..);
                self.audio_pes(i, data, times, emit);
            }
        }
    }

    fn video_pes(
        &mut self,
        i: usize,
        es: &[u8],
        times: Option<(i64, i64)>,
        emit: &mut dyn FnMut(StreamEvent),
    ) {
        let Self {
            tracks,
            clock,
            log,
            timelines,
            ..
        } = self;
        let track = &mut tracks[i];
        let time = &mut timelines[0];
        let codec = match track.kind {
            EsKind::Hevc => Codec::Hevc,
            _ => Codec::H264,
        };
        let Some((dts_position, pts_position)) = times else {
            log.warn(Warning::NoTimestamp { pid: track.pid });
            log.stats.dropped_pes += 1;
            return;
        };
        let Some(au) = video::convert(codec, es, track.config.as_deref()) else {
            log.warn(Warning::BadFrame {
                codec,
                why: "a PES without NAL units",
            });
            log.stats.dropped_frames += 1;
            return;
        };
        if let Some(why) = au.bad_parameter_sets {
            log.warn(Warning::BadParameterSets { codec, why });
        }
        if let Some(c) = au.new_config {
            let c = Arc::new(c);
            track.config = Some(c.clone());
            emit(StreamEvent::Config(c));
        }
        if track.config.is_none() {
            log.warn(Warning::BeforeConfig { codec });
            log.stats.dropped_frames += 1;
            return;
        }
        if au.data.is_empty() {
            return; // parameter sets only: they went into the configuration
        }
        let (out, placement) = time.place(clock, dts_position);
        log.placed(track.pid, placement);
        let composition = pts_position
            .saturating_sub(dts_position)
            .clamp(-MAX_COMPOSITION_TICKS, MAX_COMPOSITION_TICKS);
        let dts = clock::to_ms(out);
        let cts = clock::to_ms(out.saturating_add(composition)) - dts;
        log.stats.frames += 1;
        emit(StreamEvent::Frame(Frame {
            codec,
            dts,
            // Within ±10 s by the clamp.
            cts: cts as i32,
            keyframe: au.keyframe,
            data: Bytes::from(au.data),
        }));
    }

    fn audio_pes(
        &mut self,
        i: usize,
        data: Bytes,
        times: Option<(i64, i64)>,
        emit: &mut dyn FnMut(StreamEvent),
    ) {
        let Self {
            tracks,
            clock,
            log,
            timelines,
            ..
        } = self;
        let track = &mut tracks[i];
        let time = &mut timelines[1];
        let pid = track.pid;
        // A frame carried from the last PES comes first, timed from there.
        let (data, boundary) = if track.carry.is_empty() {
            (data, 0)
        } else {
            let mut joined = std::mem::take(&mut track.carry);
            let boundary = joined.len();
            joined.extend_from_slice(&data);
            (Bytes::from(joined), boundary)
        };
        let mut pes_time = times.map(|(dts, _)| dts);
        let mut pos = 0;
        while pos < data.len() {
            if pos >= boundary {
                if let Some(position) = pes_time.take() {
                    track.next = Some(Anchor {
                        position,
                        samples: 0,
                        rate: 0,
                    });
                }
            }
            let found = match audio::next_frame(track.kind, &data[pos..]) {
                audio::Next::Frame(f) => f,
                audio::Next::NeedMore => {
                    let rest = &data[pos..];
                    if rest.len() <= audio::MAX_CARRY {
                        track.carry = rest.to_vec();
                    } else {
                        log.warn(Warning::BadFrame {
                            codec: audio::stream_codec(track.kind),
                            why: "a frame longer than any of its codec",
                        });
                    }
                    break;
                }
                audio::Next::Skip(n, why) => {
                    log.warn(Warning::BadFrame {
                        codec: audio::stream_codec(track.kind),
                        why,
                    });
                    pos += n.max(1);
                    continue;
                }
            };
            let frame = data.slice(pos + found.payload.start..pos + found.payload.end);
            pos += found.len;
            let codec = audio::codec(track.kind, &found.format);
            let Some(anchor) = track.next.as_mut() else {
                log.warn(Warning::NoTimestamp { pid });
                log.stats.dropped_frames += 1;
                continue;
            };
            if anchor.rate != found.sample_rate {
                anchor.position = anchor
                    .position
                    .saturating_add(clock::samples_to_ticks(anchor.samples, anchor.rate));
                anchor.samples = 0;
                anchor.rate = found.sample_rate;
            }
            let position = anchor
                .position
                .saturating_add(clock::samples_to_ticks(anchor.samples, anchor.rate));
            anchor.samples += u64::from(found.samples);
            match audio::config_for(track.kind, &found.format, track.config.as_deref()) {
                Ok(None) => {}
                Ok(Some(c)) => {
                    let c = Arc::new(c);
                    track.config = Some(c.clone());
                    emit(StreamEvent::Config(c));
                }
                Err(why) => {
                    log.warn(Warning::UnsupportedAudio { codec, why });
                    log.stats.dropped_frames += 1;
                    continue;
                }
            }
            let (out, placement) = time.place(clock, position);
            log.placed(pid, placement);
            time.set_step(clock::samples_to_ticks(
                u64::from(found.samples),
                found.sample_rate,
            ));
            log.stats.frames += 1;
            emit(StreamEvent::Frame(Frame {
                codec,
                dts: clock::to_ms(out),
                cts: 0,
                keyframe: true,
                data: frame,
            }));
        }
    }
}

/// Appends `data`, growing the buffer at most to `limit` (Vec doubling
/// would reserve past it).
fn append_bounded(buf: &mut Vec<u8>, data: &[u8], limit: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let target = need.max(buf.capacity() * 2).min(limit.max(need));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests;
