//! Per-stream CMAF packaging, sans-I/O: hub events in, init segments,
//! parts (CMAF chunks) and segments out, kept in a sliding window.
//!
//! Rules (DESIGN.md, "timestamps are a subsystem"):
//! - Video times are the RTMP decode time and composition offset ×90 (90 kHz);
//!   nothing is re-derived from the bitstream. A frame's duration is the
//!   distance to the next frame's DTS, so each frame waits for its successor.
//! - Audio (AAC) is timed by its sample count (1024 or 960 per frame) in its
//!   own sample rate, anchored to the RTMP clock and re-anchored only when the
//!   RTMP clock runs ahead by more than [`AUDIO_REANCHOR_MS`] (a real gap;
//!   never backwards, which would overlap samples already written).
//! - Segments start at video keyframes: a segment closes at the first keyframe
//!   at or after the target duration. Audio segments follow the video's
//!   boundaries in time, so segment N of both tracks covers the same span.
//!   Audio that is ahead of the video waits until the video has passed it.
//! - Segment numbers are contiguous within a track (HLS media sequence
//!   numbers and DASH `$Number$` count segments): a video segment whose span
//!   has no audio still gets an audio segment of that number. Mid-stream it
//!   holds the next audio sample alone; for boundaries the audio had not
//!   reached when the publisher stopped, once audio segments follow (the
//!   publisher returned), a copy of the last audio frame at the boundary
//!   (nothing else exists to put there; a discontinuity follows).
//! - A segment is a run of parts (~`part_target` each), each a moof+mdat.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::cmaf::{self, Fragment, Sample};
use super::model::{
    PartInfo, PartialSegment, SegmentInfo, StreamSnapshot, TrackInfo, TrackTimeline,
};
use super::model::{PlaylistType, TrackLabel, VideoRange};
use crate::hub::StreamEvent;
use crate::media::{aac, ac3, avc, flac, opus, CodecConfig, Frame, MediaKind};

/// Audio re-anchors to the RTMP clock when the sample clock is this far behind.
pub const AUDIO_REANCHOR_MS: u64 = 200;
/// In low latency, a chunk is written once it holds an eighth of a part
/// (25 ms of 0.2 s): each video frame up to 40 fps, two AAC frames; the
/// `moof` a chunk costs (~100 bytes) stays near 1 % of a 3 Mbit/s stream.
const LL_CHUNKS_PER_PART: u64 = 8;

/// Audio held back waiting for video beyond this span is released anyway
/// (the video stalled; audio must not pile up).
const MAX_AUDIO_HOLD_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug)]
pub struct SegmenterConfig {
    /// Target segment duration in seconds.
    pub target: f64,
    /// Target part (CMAF chunk) duration in seconds.
    pub part_target: f64,
    /// Segments listed in playlists.
    pub window: usize,
    /// Extra segments kept for clients that loaded an older playlist.
    pub extra: usize,
    /// Cut on a time grid instead: at the first keyframe whose presentation
    /// time falls in a later `target`-long slot of the media clock than the
    /// open segment's. Streams with keyframes at the same times (the
    /// renditions of a transcode ladder and their source) then cut at the
    /// same keyframes whenever each of them started.
    pub aligned: bool,
    /// Manifests list parts (LL-HLS) and segments ahead of their end
    /// (LL-DASH); the segments are the same either way.
    pub low_latency: bool,
}

/// The embedded defaults (`src/defaults.toml`'s `[package]`).
impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            target: 2.0,
            part_target: 0.2,
            window: 6,
            extra: 3,
            aligned: false,
            low_latency: true,
        }
    }
}

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Video frames before the first keyframe (nothing to decode them against).
    pub dropped_before_keyframe: u64,
    /// Video frames whose DTS did not advance and were nudged forward.
    pub dts_repairs: u64,
    /// Times the audio sample clock was re-anchored to the RTMP clock.
    pub audio_reanchors: u64,
    /// Frames of codecs CMAF output does not carry (e.g. MP3), or of
    /// another codec than their track's configuration.
    pub unsupported_frames: u64,
    /// Frames without a byte (FFmpeg ends an FLV's FLAC track with one):
    /// no sample to write.
    pub empty_frames: u64,
    /// Audio segments made of a copy of the last audio frame: video
    /// segments the audio never reached before the publisher stopped.
    pub audio_gap_fills: u64,
    /// Fragments that could not be written.
    pub write_errors: u64,
}

/// DVR: what left a track's memory: segments to store (number, chunks)
/// and numbers of stored segments no longer listed.
#[derive(Debug, Default)]
pub struct DvrOutbox {
    pub spilled: Vec<(u64, Vec<Bytes>)>,
    pub forgotten: Vec<u64>,
}

impl DvrOutbox {
    pub fn is_empty(&self) -> bool {
        self.spilled.is_empty() && self.forgotten.is_empty()
    }
}

/// A finished segment: its description and its bytes as chained chunks.
#[derive(Clone, Debug)]
struct StoredSegment {
    info: SegmentInfo,
    body: Body,
    /// Where each part's chunks start in `chunks` (LL-HLS part URLs).
    part_starts: Vec<usize>,
}

/// Where a closed segment's bytes are.
#[derive(Clone, Debug)]
enum Body {
    /// In memory, as chained chunks.
    Memory(Vec<Bytes>),
    /// Sent to disk under the memory budget (through the stream's DVR
    /// writer, served from there); still listed as it was.
    Disk,
}

impl Body {
    fn chunks(&self) -> Option<&Vec<Bytes>> {
        match self {
            Body::Memory(c) => Some(c),
            Body::Disk => None,
        }
    }
}

/// How listed segments leave memory under the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spill {
    /// To disk (the DVR outbox): still listed, served from there.
    Disk,
    /// Dropped with every older segment (the playlist starts later): the
    /// disk cannot take them now.
    Drop,
}

/// What [`StreamSegmenter::release`] let go of, per track segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    pub extras: u64,
    pub extra_bytes: u64,
    pub spilled: u64,
    pub spilled_bytes: u64,
    pub dropped: u64,
    pub dropped_bytes: u64,
}

#[derive(Debug)]
struct OpenSegment {
    number: u64,
    start: u64,
    wall_clock: SystemTime,
    discontinuity: bool,
    init: u32,
    parts: Vec<PartInfo>,
    chunks: Vec<Bytes>,
    part_starts: Vec<usize>,
    bytes: u64,
    duration: u64,
}

/// A video frame waiting for its successor (its duration is the DTS gap).
#[derive(Debug)]
struct Pending {
    dts: u64,
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

/// An audio sample waiting for the video: the sample, its time in the
/// track's timescale, and its ingest wall clock.
type HeldSample = (Sample, u64, SystemTime);

#[derive(Debug)]
struct Track {
    kind: MediaKind,
    track_id: u32,
    timescale: u32,
    config: Arc<CodecConfig>,
    init_id: u32,
    inits: Vec<(u32, Bytes)>,
    info: TrackInfo,
    /// The part being built: how long it is so far, how many samples it
    /// has and whether its first is a keyframe. Its samples are written out
    /// in chunks as they come (see [`Track::add`]).
    part_duration: u64,
    part_samples: usize,
    part_independent: bool,
    /// Samples of the chunk being built (written when it reaches
    /// `part_ticks / chunks_per_part`), and where it starts.
    chunk: Vec<Sample>,
    chunk_start: u64,
    chunk_duration: u64,
    /// Chunks a part is cut into: 1 (one `moof` + `mdat` per part) in
    /// classic mode; in low latency, about one per video frame, so a
    /// preload-hinted part or a growing segment is sent frame by frame.
    chunks_per_part: u64,
    open: Option<OpenSegment>,
    segments: VecDeque<StoredSegment>,
    fragment_seq: u32,
    /// Video: the frame waiting for its duration.
    pending: Option<Pending>,
    /// The last sample's duration (video: its DTS gap; audio: its length).
    last_duration: u64,
    /// Video: what the configuration's first keyframe showed, once seen
    /// (it can change the init segment, see [`cmaf::Observed`]).
    observed: Option<cmaf::Observed>,
    /// Audio: the RTMP time of the last frame, for the durations of frames
    /// whose length the codec does not tell.
    last_rtmp: Option<u64>,
    /// Audio: the sample clock (next sample's time), and samples waiting
    /// for the video to pass them.
    audio_next: Option<u64>,
    held: VecDeque<HeldSample>,
    /// Audio: the last frame received in the current configuration (what
    /// fills a video segment the audio never reached, see [`Track::pay_owed`]).
    last_frame: Option<Bytes>,
    /// Audio: video boundaries the audio had not reached when the publisher
    /// stopped (see [`Track::owe_cuts`]), and where the first of their
    /// segments may start (the end of what was written before).
    owed: VecDeque<(u64, u64, SystemTime, bool)>,
    owed_at: u64,
    /// Audio: video boundaries not yet reached by the audio: (segment
    /// number, boundary in audio ticks, wall clock, discontinuity). The
    /// audio segment closes when its first sample at or past the boundary
    /// arrives, so late-interleaved audio still lands before the boundary.
    cuts: VecDeque<(u64, u64, SystemTime, bool)>,
    /// For frame-rate measurement: frames and ticks committed.
    frames: u64,
    ticks: u64,
    /// Discontinuities among evicted segments (EXT-X-DISCONTINUITY-SEQUENCE).
    evicted_discontinuities: u64,
    /// DVR: how far back (ms) segments stay listed once their bytes have
    /// left memory (0: no DVR, they are forgotten).
    dvr_ms: u64,
    /// DVR: the segments listed whose bytes left memory (to the DVR
    /// store), oldest first, each with one part standing for its parts.
    archived: VecDeque<SegmentInfo>,
    /// DVR: what left memory since the driver last asked
    /// ([`StreamSegmenter::take_dvr`]).
    outbox: DvrOutbox,
    /// Parts made and segments closed so far (what wakes requests
    /// waiting for the next one).
    made: u64,
    /// The longest segment closed so far, in the track's timescale (for
    /// TARGETDURATION).
    longest: u64,
    /// Chunks written so far (what wakes responses sent as they grow).
    chunks_made: u64,
    /// Entries in the last closed segment's chunk list: the next one is
    /// allocated at about that size, not grown by doubling (which left up
    /// to half of each list unused, over the whole window).
    chunks_hint: usize,
    /// A segment flagged as a discontinuity closed without a sample (the
    /// audio had none in that video segment's span): the flag moves to the
    /// next segment, which would otherwise follow a new init or a jump in
    /// time unflagged.
    carried_discontinuity: bool,
}

impl Track {
    fn new(
        kind: MediaKind,
        config: Arc<CodecConfig>,
        init_id: u32,
    ) -> Result<Track, cmaf::CmafError> {
        let track_id = match kind {
            MediaKind::Video => 1,
            MediaKind::Audio => 2,
        };
        let init = cmaf::init_segment(track_id, &config)?;
        let info = track_info(&config, &cmaf::Observed::default());
        Ok(Track {
            kind,
            track_id,
            timescale: info.timescale,
            config,
            init_id,
            inits: vec![(init_id, init)],
            info,
            part_duration: 0,
            part_samples: 0,
            part_independent: false,
            chunk: Vec::new(),
            chunk_start: 0,
            chunk_duration: 0,
            chunks_per_part: 1,
            open: None,
            segments: VecDeque::new(),
            fragment_seq: 0,
            pending: None,
            last_duration: 0,
            observed: None,
            last_rtmp: None,
            audio_next: None,
            held: VecDeque::new(),
            last_frame: None,
            owed: VecDeque::new(),
            owed_at: 0,
            cuts: VecDeque::new(),
            frames: 0,
            ticks: 0,
            evicted_discontinuities: 0,
            dvr_ms: 0,
            archived: VecDeque::new(),
            outbox: DvrOutbox::default(),
            made: 0,
            longest: 0,
            chunks_made: 0,
            chunks_hint: 0,
            carried_discontinuity: false,
        })
    }

    fn ms_to_ticks(&self, ms: u64) -> u64 {
        rescale(ms, u64::from(self.timescale), 1000)
    }

    /// Changes the codec configuration: a new init segment. A new timescale
    /// (an audio sample rate change) re-expresses the segments still held in
    /// it, since the model gives a track's segments in the track's one
    /// timescale: their times in seconds stay what they were. (Their bytes
    /// keep their own init's timescale.)
    fn reconfigure(
        &mut self,
        config: Arc<CodecConfig>,
        keep: usize,
        part_target: f64,
        stats: &mut SegmenterStats,
    ) -> Result<(), cmaf::CmafError> {
        let init = cmaf::init_segment(self.track_id, &config)?;
        // Owed segments are copies of a frame of the configuration ending
        // here: made now, in its init.
        let part_ticks = (part_target * f64::from(self.timescale)) as u64;
        self.pay_owed(keep, part_ticks, stats);
        self.init_id += 1;
        // Keep only the init segments stored segments use, and the new one:
        // a publisher switching configurations without sending frames in
        // between must not grow the list (it is pruned otherwise only when a
        // segment closes).
        let segments = &self.segments;
        let archived = &self.archived;
        self.inits.retain(|(id, _)| {
            segments.iter().any(|s| s.info.init == *id) || archived.iter().any(|s| s.init == *id)
        });
        self.inits.push((self.init_id, init));
        let bandwidth = (self.info.peak_bandwidth, self.info.average_bandwidth);
        self.info = track_info(&config, &cmaf::Observed::default());
        (self.info.peak_bandwidth, self.info.average_bandwidth) = bandwidth;
        let (old, new) = (self.timescale, self.info.timescale);
        if old != new {
            for s in &mut self.segments {
                rescale_segment(&mut s.info, old, new);
            }
            for s in &mut self.archived {
                rescale_segment(s, old, new);
            }
        }
        self.timescale = new;
        self.config = config;
        self.last_frame = None;
        self.observed = None;
        self.last_rtmp = None;
        Ok(())
    }

    /// Video: the configuration's first keyframe, before its first segment
    /// opens (so before any manifest names the init segment): if it shows
    /// what the record does not (HEVC parameter sets in band, the VP9
    /// frame size), the init segment and the track's description are
    /// remade with it.
    fn observe_keyframe(&mut self, data: &[u8], stats: &mut SegmenterStats) {
        if self.observed.is_some() {
            return;
        }
        let seen = cmaf::Observed::keyframe(&self.config, data);
        self.observed = Some(seen);
        if seen == cmaf::Observed::default() {
            return;
        }
        match cmaf::init_segment_with(self.track_id, &self.config, &seen) {
            Ok(init) => {
                if let Some(slot) = self.inits.iter_mut().find(|(id, _)| *id == self.init_id) {
                    slot.1 = init;
                }
                let fresh = track_info(&self.config, &seen);
                self.info.codec = fresh.codec;
                (self.info.width, self.info.height) = (fresh.width, fresh.height);
            }
            Err(_) => stats.write_errors += 1,
        }
    }

    /// Whether the track has begun its numbering: from then on every
    /// segment number the video cuts is one of its segments too.
    fn started(&self) -> bool {
        self.open.is_some() || !self.segments.is_empty()
    }

    /// Audio: crosses the video boundaries a sample at `time` is at or past,
    /// before it is added. Before the track's first segment, every one
    /// (the track starts at the last). After, at most one per sample: a
    /// boundary the previous sample already passed opens a segment that
    /// this sample alone fills, so no number is skipped when the audio had
    /// nothing in a video segment's span (the numbers stay those of the
    /// video segments from the next boundary on). Boundaries owed from
    /// before a stop come first (see [`Track::owe_cuts`]).
    fn cross_cuts(&mut self, time: u64, keep: usize, part_ticks: u64, stats: &mut SegmenterStats) {
        self.pay_owed(keep, part_ticks, stats);
        if let Some((number, _, wall, disc)) = self.owed.pop_front() {
            // No frame to copy (not expected: the sample's own frame is the
            // last one): this sample stands for the owed segment.
            self.close_segment(keep, stats);
            let disc = disc
                || self
                    .segments
                    .back()
                    .is_some_and(|s| s.info.init != self.init_id);
            self.open_segment(number, time, wall, disc);
            return;
        }
        let started = self.started();
        let mut crossed = None;
        let mut discontinuity = false;
        while let Some(&cut) = self.cuts.front().filter(|c| c.1 <= time) {
            self.cuts.pop_front();
            discontinuity |= cut.3;
            crossed = Some(cut);
            if started {
                break;
            }
        }
        if let Some((number, _, wall, _)) = crossed {
            self.close_segment(keep, stats);
            self.open_segment(number, time, wall, discontinuity);
        }
    }

    /// Audio: moves held samples into segments, oldest first, crossing
    /// the video's boundaries on the way, for as long as `release` lets
    /// the oldest go.
    fn commit_held(
        &mut self,
        keep: usize,
        part_ticks: u64,
        stats: &mut SegmenterStats,
        release: impl Fn(&VecDeque<HeldSample>) -> bool,
    ) {
        while release(&self.held) {
            let Some((sample, time, _)) = self.held.pop_front() else {
                break;
            };
            self.cross_cuts(time, keep, part_ticks, stats);
            self.add(sample, time, part_ticks, stats);
        }
    }

    /// Audio, when the publisher stops or the configuration changes: the
    /// video boundaries the audio did not reach are owed an audio segment
    /// each, made only if audio segments follow (the publisher returns, the
    /// new configuration gets frames): a stream that ends with its audio
    /// behind its video just has fewer audio segments.
    fn owe_cuts(&mut self) {
        if !self.started() {
            self.cuts.clear();
            return;
        }
        if self.owed.is_empty() {
            self.owed_at = self.audio_next.unwrap_or(0);
        }
        self.owed.extend(self.cuts.drain(..));
    }

    /// Makes the owed audio segments, each a copy of the last audio frame
    /// at its video boundary (after what was written before it), so that
    /// the numbering stays contiguous across the discontinuity. Needs a
    /// frame of the current configuration (the one that ended, or the first
    /// of a new one: then the first owed segment follows a discontinuity,
    /// as its init changes); without one they stay owed.
    fn pay_owed(&mut self, keep: usize, part_ticks: u64, stats: &mut SegmenterStats) {
        let Some(frame) = self.last_frame.clone().filter(|_| !self.owed.is_empty()) else {
            return;
        };
        let frame_len = audio_frame_len(&self.config, &frame).unwrap_or(self.last_duration.max(1));
        let mut at = self.owed_at;
        while let Some((number, boundary, wall, disc)) = self.owed.pop_front() {
            self.close_segment(keep, stats);
            let disc = disc
                || self
                    .segments
                    .back()
                    .is_some_and(|s| s.info.init != self.init_id);
            let start = if disc { boundary } else { boundary.max(at) };
            self.open_segment(number, start, wall, disc);
            let sample = Sample {
                duration: frame_len as u32,
                cts_offset: 0,
                keyframe: true,
                data: frame.clone(),
            };
            self.add(sample, start, part_ticks, stats);
            stats.audio_gap_fills += 1;
            at = start.saturating_add(frame_len);
        }
        self.close_segment(keep, stats);
    }

    fn open_segment(
        &mut self,
        number: u64,
        start: u64,
        wall_clock: SystemTime,
        discontinuity: bool,
    ) {
        self.open = Some(OpenSegment {
            number,
            start,
            wall_clock,
            discontinuity: discontinuity || std::mem::take(&mut self.carried_discontinuity),
            init: self.init_id,
            parts: Vec::new(),
            chunks: Vec::with_capacity(self.chunks_hint + self.chunks_hint / 16 + 4),
            part_starts: Vec::new(),
            bytes: 0,
            duration: 0,
        });
    }

    /// Adds a sample to the open segment's current part. Parts are cut on
    /// a fixed cadence, whatever the keyframes: a part that this sample
    /// would take past the part target is flushed first (so every part but
    /// one made of a single long sample stays within PART-TARGET), and a
    /// part that reaches the target is flushed at once (a player gets it
    /// without waiting for the next sample).
    fn add(&mut self, sample: Sample, time: u64, part_ticks: u64, stats: &mut SegmenterStats) {
        if self.open.is_none() {
            return;
        }
        if self.part_samples > 0 && self.part_duration + u64::from(sample.duration) > part_ticks {
            self.flush_part(stats);
        }
        if self.part_samples == 0 {
            self.part_independent = sample.keyframe;
        }
        if self.chunk.is_empty() {
            self.chunk_start = time;
        }
        self.part_duration += u64::from(sample.duration);
        self.part_samples += 1;
        self.chunk_duration += u64::from(sample.duration);
        self.frames += 1;
        self.ticks += u64::from(sample.duration);
        self.chunk.push(sample);
        if self.part_duration >= part_ticks {
            self.flush_part(stats);
        } else if self.chunk_duration >= part_ticks / self.chunks_per_part.max(1) {
            self.flush_chunk(stats);
        }
    }

    /// Writes the samples of the chunk being built as one CMAF chunk
    /// (`moof` + `mdat`) at the end of the open segment, opening a part
    /// there if it is the part's first.
    fn flush_chunk(&mut self, stats: &mut SegmenterStats) {
        if self.chunk.is_empty() {
            return;
        }
        self.chunk_duration = 0;
        let Some(open) = self.open.as_mut() else {
            self.chunk.clear();
            return;
        };
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        match cmaf::fragment_for(
            &self.config,
            self.track_id,
            self.fragment_seq,
            self.chunk_start,
            &self.chunk,
        ) {
            Ok(Fragment { header, payloads }) => {
                open.bytes +=
                    header.len() as u64 + payloads.iter().map(|p| p.len() as u64).sum::<u64>();
                if open.part_starts.len() == open.parts.len() {
                    open.part_starts.push(open.chunks.len());
                }
                open.chunks.push(header);
                open.chunks.extend(payloads);
                self.chunks_made += 1;
            }
            Err(_) => stats.write_errors += 1,
        }
        self.chunk.clear();
    }

    /// Ends the part being built: its last chunk written, the part listed.
    fn flush_part(&mut self, stats: &mut SegmenterStats) {
        if self.part_samples == 0 {
            return;
        }
        self.flush_chunk(stats);
        self.part_samples = 0;
        let duration = std::mem::take(&mut self.part_duration);
        let Some(open) = self.open.as_mut() else {
            return;
        };
        // Every chunk of it failed to write: no part.
        if open.part_starts.len() == open.parts.len() {
            return;
        }
        open.parts.push(PartInfo {
            duration,
            independent: self.part_independent,
        });
        open.duration += duration;
        self.made += 1;
    }

    /// Closes the open segment into the window.
    fn close_segment(&mut self, keep: usize, stats: &mut SegmenterStats) {
        self.flush_part(stats);
        let Some(mut open) = self.open.take() else {
            return;
        };
        if open.parts.is_empty() {
            self.carried_discontinuity |= open.discontinuity;
            return;
        }
        self.chunks_hint = open.chunks.len();
        if open.chunks.capacity() > open.chunks.len() + open.chunks.len() / 8 + 8 {
            // Grown past the guess (the first segment, or a longer one).
            open.chunks.shrink_to_fit();
        }
        let seconds = open.duration as f64 / f64::from(self.timescale);
        if seconds > 0.0 {
            let bps = (open.bytes as f64 * 8.0 / seconds) as u64;
            self.info.peak_bandwidth = self.info.peak_bandwidth.max(bps);
        }
        self.segments.push_back(StoredSegment {
            info: SegmentInfo {
                number: open.number,
                start: open.start,
                duration: open.duration,
                init: open.init,
                discontinuity: open.discontinuity,
                wall_clock: open.wall_clock,
                bytes: open.bytes,
                parts: open.parts,
            },
            body: Body::Memory(open.chunks),
            part_starts: open.part_starts,
        });
        self.made += 1;
        self.longest = self.longest.max(open.duration);
        while self.segments.len() > keep {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            self.evict(old);
        }
        self.trim_archive();
        let (bytes, ticks) = self.segments.iter().fold((0u64, 0u64), |(b, t), s| {
            (b + s.info.bytes, t + s.info.duration)
        });
        if let Some(bps) = (bytes * 8 * u64::from(self.timescale)).checked_div(ticks) {
            self.info.average_bandwidth = bps;
        }
        if self.kind == MediaKind::Video && self.ticks > 0 {
            self.info.frame_rate =
                Some(self.frames as f64 * f64::from(self.timescale) / self.ticks as f64);
        }
        let oldest = self
            .archived
            .front()
            .or(self.segments.front().map(|s| &s.info))
            .map_or(self.init_id, |s| s.init);
        self.inits.retain(|(id, _)| *id >= oldest);
    }

    /// A segment leaving the window: forgotten (its file, if it was
    /// spilled, deleted), or with DVR archived (its bytes to disk unless
    /// they are there already).
    fn evict(&mut self, old: StoredSegment) {
        if self.dvr_ms == 0 {
            self.evicted_discontinuities += u64::from(old.info.discontinuity);
            if let Body::Disk = old.body {
                self.outbox.forgotten.push(old.info.number);
            }
            return;
        }
        let mut info = old.info;
        info.parts = vec![PartInfo {
            duration: info.duration,
            independent: true,
        }];
        if let Body::Memory(chunks) = old.body {
            self.outbox.spilled.push((info.number, chunks));
        }
        self.archived.push_back(info);
    }

    /// Media bytes in memory: closed segments not spilled, the open one,
    /// init segments. A part is a range of its segment's chunks, so it is
    /// counted with it.
    fn memory_bytes(&self) -> u64 {
        let closed: u64 = self
            .segments
            .iter()
            .filter(|s| s.body.chunks().is_some())
            .map(|s| s.info.bytes)
            .sum();
        let open = self.open.as_ref().map_or(0, |o| o.bytes);
        let inits: u64 = self.inits.iter().map(|(_, b)| b.len() as u64).sum();
        closed + open + inits
    }

    /// Segments kept past the listed window (only without DVR, which lists
    /// everything kept).
    fn extras(&self, window: usize) -> usize {
        if self.dvr_ms > 0 {
            0
        } else {
            self.segments.len().saturating_sub(window)
        }
    }

    /// How many of the newest closed segments stay in memory whatever the
    /// budget: the newest, and in low latency those whose parts playlists
    /// list (ending within the last `PARTS_FOR_TARGETS` target durations,
    /// as `hls` counts them) plus one, should the target grow.
    fn protected(&self, low_latency: bool, target: u32) -> usize {
        if !low_latency {
            return 1;
        }
        let span =
            (super::hls::PARTS_FOR_TARGETS * f64::from(target) * f64::from(self.timescale)) as u64;
        let mut covered: u64 = self
            .open
            .as_ref()
            .map_or(0, |o| o.parts.iter().map(|p| p.duration).sum());
        let mut n = 0;
        for s in self.segments.iter().rev() {
            if covered >= span {
                break;
            }
            covered += s.info.duration;
            n += 1;
        }
        n.max(1) + 1
    }

    /// The listed segments in memory that may go to disk, oldest first:
    /// (number, bytes).
    fn spillable(&self, window: usize, protected: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        let listed = self.segments.len() - self.extras(window);
        let from = self.extras(window);
        let to = from + listed.saturating_sub(protected);
        self.segments
            .range(from..to)
            .filter(|s| s.body.chunks().is_some())
            .map(|s| (s.info.number, s.info.bytes))
    }

    /// Drops the segments kept past the listed window.
    fn drop_extras(&mut self, window: usize, freed: &mut Freed) {
        for _ in 0..self.extras(window) {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            if let Some(c) = old.body.chunks() {
                freed.extras += 1;
                freed.extra_bytes += c.iter().map(|b| b.len() as u64).sum::<u64>();
            }
            self.evict(old);
        }
    }

    /// Spilled segments `numbers` (all spillable) to disk, or drops them
    /// with every older segment.
    fn spill(&mut self, numbers: &[u64], how: Spill, freed: &mut Freed) {
        let Some(&last) = numbers.iter().max() else {
            return;
        };
        match how {
            Spill::Disk => {
                for s in self.segments.iter_mut() {
                    if !numbers.contains(&s.info.number) {
                        continue;
                    }
                    if let Body::Memory(chunks) = std::mem::replace(&mut s.body, Body::Disk) {
                        freed.spilled += 1;
                        freed.spilled_bytes += s.info.bytes;
                        self.outbox.spilled.push((s.info.number, chunks));
                    }
                }
            }
            Spill::Drop => {
                while self.segments.front().is_some_and(|s| s.info.number <= last) {
                    let Some(old) = self.segments.pop_front() else {
                        break;
                    };
                    if old.body.chunks().is_some() {
                        freed.dropped += 1;
                        freed.dropped_bytes += old.info.bytes;
                    }
                    self.evict(old);
                }
            }
        }
    }

    /// Whether segment `number` is listed with its bytes on disk (spilled,
    /// or archived by the DVR).
    fn on_disk(&self, number: u64) -> bool {
        let archived = self.archived.front().is_some_and(|f| f.number <= number)
            && self.archived.back().is_some_and(|b| b.number >= number);
        archived
            || self
                .segments
                .iter()
                .any(|s| s.info.number == number && matches!(s.body, Body::Disk))
    }

    /// DVR: forgets the archived segments that begin before the DVR depth
    /// (counted back from the newest segment's end).
    fn trim_archive(&mut self) {
        let depth = self.ms_to_ticks(self.dvr_ms);
        let mut listed: u64 = self
            .archived
            .iter()
            .map(|s| s.duration)
            .chain(self.segments.iter().map(|s| s.info.duration))
            .sum();
        while let Some(old) = self.archived.front() {
            if listed <= depth {
                break;
            }
            listed -= old.duration;
            self.evicted_discontinuities += u64::from(old.discontinuity);
            self.outbox.forgotten.push(old.number);
            self.archived.pop_front();
        }
    }

    fn timeline(&self, window: usize) -> TrackTimeline {
        // DVR: everything kept is listed, the archive first.
        let skip = if self.dvr_ms > 0 {
            0
        } else {
            self.segments.len().saturating_sub(window)
        };
        TrackTimeline {
            info: self.info.clone(),
            inits: self.inits.iter().map(|(id, _)| *id).collect(),
            segments: self
                .archived
                .iter()
                .cloned()
                .chain(self.segments.iter().skip(skip).map(|s| s.info.clone()))
                .collect(),
            discontinuities_before: self.discontinuities_before(skip),
            partial: self
                .open
                .as_ref()
                .filter(|o| !o.parts.is_empty())
                .map(|o| PartialSegment {
                    number: o.number,
                    start: o.start,
                    init: o.init,
                    discontinuity: o.discontinuity,
                    wall_clock: o.wall_clock,
                    parts: o.parts.clone(),
                }),
        }
    }

    /// The chunks of part `index` of segment `number` from chunk `from` of
    /// it on, as far as it is written, and whether the part is finished.
    fn part_from(&self, number: u64, index: usize, from: usize) -> Option<(Vec<Bytes>, bool)> {
        let (chunks, starts, finished) = match &self.open {
            Some(o) if o.number == number => (&o.chunks, &o.part_starts, o.parts.len()),
            _ => {
                let s = self.segments.iter().find(|s| s.info.number == number)?;
                (s.body.chunks()?, &s.part_starts, s.part_starts.len())
            }
        };
        let start = *starts.get(index)?;
        let end = starts.get(index + 1).copied().unwrap_or(chunks.len());
        let from = start.saturating_add(from).min(end);
        Some((chunks[from..end].to_vec(), index < finished))
    }

    /// Segment `number` as far as it is made: its chunks from `from` on,
    /// and whether it is finished.
    fn segment_from(&self, number: u64, from: usize) -> Option<(Vec<Bytes>, bool)> {
        if let Some(o) = self.open.as_ref().filter(|o| o.number == number) {
            if o.chunks.is_empty() {
                return None;
            }
            return Some((o.chunks.get(from..).unwrap_or_default().to_vec(), false));
        }
        let s = self.segments.iter().find(|s| s.info.number == number)?;
        let chunks = s.body.chunks()?;
        Some((chunks.get(from..).unwrap_or_default().to_vec(), true))
    }
}

/// Largest media time in ticks (at 90 kHz, 1.6 million years): times are
/// capped here so that sums of times and durations never overflow.
const MAX_TICKS: u64 = 1 << 62;

/// `value * num / den` without overflow, capped at [`MAX_TICKS`]: times
/// come from publishers, who can push an RTMP clock forward by 2^31 ms per
/// message, and AAC timescales go up to 2^24 - 1.
fn rescale(value: u64, num: u64, den: u64) -> u64 {
    let v = u128::from(value) * u128::from(num) / u128::from(den.max(1));
    u64::try_from(v).map_or(MAX_TICKS, |v| v.min(MAX_TICKS))
}

/// Re-expresses a segment's times in another timescale. Part boundaries
/// are rescaled, not part durations, so the parts still add up.
fn rescale_segment(info: &mut SegmentInfo, from: u32, to: u32) {
    let start = rescale(info.start, u64::from(to), u64::from(from));
    let (mut old_end, mut end) = (info.start, start);
    for part in &mut info.parts {
        old_end = old_end.saturating_add(part.duration);
        let part_end = rescale(old_end, u64::from(to), u64::from(from));
        part.duration = part_end - end;
        end = part_end;
    }
    info.start = start;
    info.duration = end - start;
}

/// A track's description: the codec string and size of the init segment
/// made with `seen` (see [`cmaf::Observed`]).
fn track_info(config: &CodecConfig, seen: &cmaf::Observed) -> TrackInfo {
    let codec = match config {
        CodecConfig::Avc(c) => avc::codec_string(c),
        CodecConfig::Aac(c) => aac::codec_string(c),
        c => cmaf::codec_string(c, seen),
    };
    let (sample_rate, channels) = config.audio_format();
    let (width, height) = match config.kind() {
        MediaKind::Video => cmaf::picture_size(config, seen),
        MediaKind::Audio => (0, 0),
    };
    TrackInfo {
        kind: config.kind(),
        codec,
        timescale: cmaf::timescale(config).max(1),
        width,
        height,
        frame_rate: None,
        video_range: cmaf::colour(config).and_then(|c| VideoRange::from_transfer(c.transfer)),
        sample_rate,
        channels,
        dolby_channels: cmaf::dolby_channels(config),
        peak_bandwidth: 0,
        average_bandwidth: 0,
        label: Default::default(),
    }
}

/// How many samples an audio frame holds, from the codec: AAC's frame
/// length, the Opus TOC, the FLAC frame header, 1536 for AC-3, the E-AC-3
/// sync frame's blocks (else the configuration's). `None` when the frame
/// does not say (its duration then comes from the RTMP clock).
fn audio_frame_len(config: &CodecConfig, data: &[u8]) -> Option<u64> {
    let len = match config {
        CodecConfig::Aac(c) => c.frame_length,
        CodecConfig::Opus(_) => opus::packet_samples(data)?,
        CodecConfig::Flac(_) => flac::frame_block_size(data)?,
        CodecConfig::Ac3(_) => 1536,
        CodecConfig::Eac3(c) => ac3::parse_sync_frame(data)
            .map(|f| f.samples())
            .unwrap_or(c.samples),
        _ => return None,
    };
    (len > 0).then_some(u64::from(len))
}

/// Where a track's playlist ends: what a blocking request is compared with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The last finished segment.
    pub last_finished: Option<u64>,
    /// The last part listed: `(segment number, part index)`, in the
    /// segment being made if it has one.
    pub last_part: Option<(u64, usize)>,
    /// The part being written (it has chunks but is not finished):
    /// `(segment number, part index)`.
    pub growing: Option<(u64, usize)>,
    /// The stream is over: nothing more will come.
    pub ended: bool,
}

/// One stream's packager and segment window.
#[derive(Debug)]
pub struct StreamSegmenter {
    key: String,
    config: SegmenterConfig,
    video: Option<Track>,
    audio: Option<Track>,
    /// The publisher's name and language for the audio (any codec).
    audio_label: TrackLabel,
    /// The next segment number to open.
    next_number: u64,
    /// Where this stream's numbering started (also its first init id).
    first_number: u64,
    /// The next segments opened follow a discontinuity.
    discontinuity: bool,
    /// Highest video DTS seen (90 kHz): audio before it can be committed.
    video_progress: Option<u64>,
    /// Aligned mode: the grid slot of the open video segment's first keyframe.
    slot: Option<i64>,
    target_duration: u32,
    ended: bool,
    /// HLS EXT-X-PLAYLIST-TYPE (`None`: a live window).
    playlist_type: Option<PlaylistType>,
    /// DVR depth in ms (0: none), see [`StreamSegmenter::set_dvr`].
    dvr_ms: u64,
    availability_start: Option<SystemTime>,
    updated: SystemTime,
    pub stats: SegmenterStats,
}

impl StreamSegmenter {
    /// Segment numbers and init ids start at the current Unix time in
    /// seconds, so a stream that ends and is published again later never
    /// reuses a URL: segments are served as immutable.
    pub fn new(key: &str, config: SegmenterConfig, now: SystemTime) -> Self {
        let mut seg = Self::with_first_number(key, config, Self::first_number_at(now));
        seg.updated = now;
        seg
    }

    /// The first segment number of a stream started at `now`: its Unix
    /// time in seconds (at least 1, at most `u32::MAX`).
    pub fn first_number_at(now: SystemTime) -> u64 {
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
            .clamp(1, u64::from(u32::MAX))
    }

    /// As [`StreamSegmenter::new`], numbering from `first_number` (tests).
    /// Nothing has changed yet: `updated` is the epoch until the first event.
    pub fn with_first_number(key: &str, config: SegmenterConfig, first_number: u64) -> Self {
        let first_number = first_number.clamp(1, u64::from(u32::MAX));
        StreamSegmenter {
            key: key.to_string(),
            config,
            video: None,
            audio: None,
            next_number: first_number,
            first_number,
            discontinuity: false,
            video_progress: None,
            slot: None,
            target_duration: config.target.ceil().max(1.0) as u32,
            audio_label: TrackLabel::default(),
            ended: false,
            playlist_type: None,
            dvr_ms: 0,
            availability_start: None,
            updated: SystemTime::UNIX_EPOCH,
            stats: SegmenterStats::default(),
        }
    }

    fn keep(&self) -> usize {
        self.config.window + self.config.extra
    }

    /// Names the audio track (the publisher's metadata said so).
    pub fn set_audio_label(&mut self, label: TrackLabel) {
        self.audio_label = label;
    }

    /// What the media playlists promise about their changes (a title on
    /// demand: VOD; a DVR window: EVENT).
    pub fn set_playlist_type(&mut self, t: PlaylistType) {
        self.playlist_type = Some(t);
    }

    /// DVR: segments stay listed for `ms` (counted back from the newest
    /// segment's end) after their bytes leave memory; those bytes, and the
    /// numbers of segments no longer listed, wait in an outbox for the
    /// driver to store and delete ([`StreamSegmenter::take_dvr`]). Set
    /// before the first configuration.
    pub fn set_dvr(&mut self, ms: u64) {
        self.dvr_ms = ms;
        for t in [&mut self.video, &mut self.audio].into_iter().flatten() {
            t.dvr_ms = ms;
        }
    }

    /// DVR: what left memory since the last call, per track.
    pub fn take_dvr(&mut self) -> Vec<(MediaKind, DvrOutbox)> {
        [&mut self.video, &mut self.audio]
            .into_iter()
            .flatten()
            .filter(|t| !t.outbox.is_empty())
            .map(|t| (t.kind, std::mem::take(&mut t.outbox)))
            .collect()
    }

    /// Whether segment `number` of `kind` is listed but its bytes are on
    /// disk (archived by the DVR, or spilled under the memory budget).
    pub fn on_disk(&self, kind: MediaKind, number: u64) -> bool {
        self.track(kind).is_some_and(|t| t.on_disk(number))
    }

    /// The stream's name (`app/key`, or a rendition's `app/key/NAME`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Media bytes this stream holds in memory (see [`Track::memory_bytes`]).
    pub fn memory_bytes(&self) -> u64 {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .map(Track::memory_bytes)
            .sum()
    }

    /// What the memory budget's choice needs to know: the bytes of the
    /// segments kept past the listed window, and the listed segments that
    /// may go to disk, oldest first (bytes per number, both tracks).
    pub fn budget_usage(&self) -> (u64, Vec<u64>) {
        let window = self.config.window;
        let mut extra = 0;
        let mut spillable = std::collections::BTreeMap::<u64, u64>::new();
        for t in [&self.video, &self.audio].into_iter().flatten() {
            extra += t
                .segments
                .iter()
                .take(t.extras(window))
                .filter(|s| s.body.chunks().is_some())
                .map(|s| s.info.bytes)
                .sum::<u64>();
            let protected = t.protected(self.config.low_latency, self.target_duration);
            for (number, bytes) in t.spillable(window, protected) {
                *spillable.entry(number).or_default() += bytes;
            }
        }
        (extra, spillable.into_values().collect())
    }

    /// Lets go of what the budget's choice asked: the segments kept past
    /// the listed window (when `drop_extras`), then the oldest `spill`
    /// spillable segments (see [`StreamSegmenter::budget_usage`]), `how`.
    /// Spilled bytes wait in the DVR outbox ([`StreamSegmenter::take_dvr`]).
    pub fn release(&mut self, drop_extras: bool, spill: usize, how: Spill) -> Freed {
        let window = self.config.window;
        let mut freed = Freed::default();
        let (low_latency, target) = (self.config.low_latency, self.target_duration);
        let mut numbers = std::collections::BTreeSet::new();
        for t in [&self.video, &self.audio].into_iter().flatten() {
            let protected = t.protected(low_latency, target);
            numbers.extend(t.spillable(window, protected).map(|(n, _)| n));
        }
        let numbers: Vec<u64> = numbers.into_iter().take(spill).collect();
        for t in [&mut self.video, &mut self.audio].into_iter().flatten() {
            if drop_extras {
                t.drop_extras(window, &mut freed);
            }
            let protected = t.protected(low_latency, target);
            let mine: Vec<u64> = t
                .spillable(window, protected)
                .map(|(n, _)| n)
                .filter(|n| numbers.contains(n))
                .collect();
            t.spill(&mine, how, &mut freed);
        }
        freed
    }

    /// Cuts on the aligned grid from now on ([`SegmenterConfig::aligned`]):
    /// the stream turned out to be one variant of a ladder.
    pub fn align(&mut self) {
        self.config.aligned = true;
    }

    /// Feeds one hub event observed at wall-clock time `now`.
    pub fn push(&mut self, event: &StreamEvent, now: SystemTime) {
        match event {
            // Other multitrack tracks are their own streams' (see
            // `package::service`).
            StreamEvent::PublisherStarted
            | StreamEvent::Metadata(_)
            | StreamEvent::TrackConfig(..)
            | StreamEvent::TrackFrame(..) => {}
            StreamEvent::PublisherStopped => self.interrupt(now),
            StreamEvent::Config(c) => self.on_config(c.clone(), now),
            StreamEvent::Frame(f) if f.data.is_empty() => self.stats.empty_frames += 1,
            StreamEvent::Frame(f) => match f.kind() {
                MediaKind::Video => self.on_video(f, now),
                MediaKind::Audio => self.on_audio(f, now),
            },
        }
    }

    fn on_config(&mut self, config: Arc<CodecConfig>, now: SystemTime) {
        let kind = config.kind();
        // The video's open segment: (number, start in 90 kHz, wall clock,
        // discontinuity).
        let video_open = self
            .video
            .as_ref()
            .and_then(|v| v.open.as_ref())
            .map(|o| (o.number, o.start, o.wall_clock, o.discontinuity));
        if matches!(config.as_ref(), CodecConfig::Mp3(_)) {
            // CMAF players do not take MP3 in fMP4; the stream is packaged
            // without it (RTMP players still get it).
            return;
        }
        let slot = match kind {
            MediaKind::Video => &mut self.video,
            MediaKind::Audio => &mut self.audio,
        };
        match slot {
            Some(t) if *t.config == *config => {}
            Some(_) => {
                // A new configuration mid-stream: close what is open, new
                // init segment, discontinuity.
                self.interrupt(now);
                let (keep, part_target) = (self.keep(), self.config.part_target);
                let slot = match kind {
                    MediaKind::Video => &mut self.video,
                    MediaKind::Audio => &mut self.audio,
                };
                if let Some(t) = slot {
                    if t.reconfigure(config, keep, part_target, &mut self.stats)
                        .is_err()
                    {
                        self.stats.write_errors += 1;
                    }
                }
            }
            None => match Track::new(kind, config, self.first_number as u32) {
                Ok(mut t) => {
                    t.dvr_ms = self.dvr_ms;
                    if self.config.low_latency {
                        t.chunks_per_part = LL_CHUNKS_PER_PART;
                    }
                    // Audio configured after the video opened a segment
                    // (AC-3 and E-AC-3 are configured by their first frame):
                    // its samples belong to that segment too.
                    if let (MediaKind::Audio, Some((number, start, wall, disc))) =
                        (kind, video_open)
                    {
                        let start = rescale(start, u64::from(t.timescale), 90_000);
                        t.cuts.push_back((number, start, wall, disc));
                    }
                    *slot = Some(t);
                }
                Err(_) => self.stats.write_errors += 1,
            },
        }
        self.updated = now;
    }

    fn on_video(&mut self, f: &Frame, now: SystemTime) {
        let part_ticks = (self.config.part_target * f64::from(cmaf::VIDEO_TIMESCALE)) as u64;
        let target_ticks = (self.config.target * f64::from(cmaf::VIDEO_TIMESCALE)) as u64;
        let keep = self.keep();
        let Some(track) = self.video.as_mut() else {
            self.stats.unsupported_frames += 1;
            return;
        };
        // A frame of another codec cannot be decoded with the init segment.
        if f.codec != track.config.codec() {
            self.stats.unsupported_frames += 1;
            return;
        }
        let mut dts = track.ms_to_ticks(f.dts.max(0) as u64);
        let cts = f.cts.saturating_mul(90);
        if let Some(p) = track.pending.take() {
            if dts <= p.dts {
                dts = p.dts.saturating_add(1);
                self.stats.dts_repairs += 1;
            }
            let duration = dts - p.dts;
            track.last_duration = duration;
            let sample = Sample {
                duration: duration.min(u64::from(u32::MAX)) as u32,
                cts_offset: p.cts,
                keyframe: p.keyframe,
                data: p.data,
            };
            track.add(sample, p.dts, part_ticks, &mut self.stats);
        }
        // Cut here? At a keyframe, once the open segment reached the target.
        if f.keyframe {
            let slot = f
                .pts()
                .div_euclid(((self.config.target * 1000.0) as i64).max(1));
            let cut = match &track.open {
                None => true,
                Some(_) if self.config.aligned => self.slot.is_none_or(|s| slot > s),
                Some(open) => dts.saturating_sub(open.start) >= target_ticks,
            };
            if cut {
                self.slot = Some(slot);
                track.observe_keyframe(&f.data, &mut self.stats);
                track.close_segment(keep, &mut self.stats);
                let number = self.next_number;
                self.next_number += 1;
                let disc = self.discontinuity;
                track.open_segment(number, dts, now, disc);
                if self.availability_start.is_none() {
                    let since_zero = Duration::from_secs_f64(dts as f64 / 90_000.0);
                    self.availability_start = Some(now.checked_sub(since_zero).unwrap_or(now));
                }
                // The audio follows: everything before this boundary closes
                // the audio's segment of the same number.
                self.video_progress = Some(dts);
                self.advance_audio(Some((number, dts, now, disc)));
                self.discontinuity = false;
                self.updated = now;
                self.bump_target();
            }
        }
        let Some(track) = self.video.as_mut() else {
            return;
        };
        if track.open.is_none() {
            self.stats.dropped_before_keyframe += 1;
            return;
        }
        track.pending = Some(Pending {
            dts,
            cts,
            keyframe: f.keyframe,
            data: cmaf::sample_data(&track.config, &f.data),
        });
        self.video_progress = Some(self.video_progress.map_or(dts, |p| p.max(dts)));
        self.advance_audio(None);
    }

    fn on_audio(&mut self, f: &Frame, now: SystemTime) {
        let Some(track) = self.audio.as_mut() else {
            self.stats.unsupported_frames += 1;
            return;
        };
        // Only frames of the track's codec go in: a publisher that switches
        // to MP3 keeps the track it had (MP3 is not packaged).
        if f.codec != track.config.codec() {
            self.stats.unsupported_frames += 1;
            return;
        }
        let rtmp_time = track.ms_to_ticks(f.dts.max(0) as u64);
        // A frame whose codec does not say how long it is lasts as long as
        // the RTMP clock moved since the previous one (or as that one did).
        let frame_len = audio_frame_len(&track.config, &f.data).unwrap_or_else(|| {
            match track.last_rtmp.map(|t| rtmp_time.saturating_sub(t)) {
                Some(gap) if gap > 0 => gap,
                _ if track.last_duration > 0 => track.last_duration,
                _ => track.ms_to_ticks(20).max(1),
            }
        });
        let frame_len = frame_len.min(u64::from(u32::MAX));
        track.last_rtmp = Some(rtmp_time);
        track.last_duration = frame_len;
        let tolerance = track.ms_to_ticks(AUDIO_REANCHOR_MS);
        let time = match track.audio_next {
            // Re-anchor forward only, over a real gap: an RTMP clock that
            // lags the sample count (frozen or slow timestamps) must not
            // pull decode times back into samples already written.
            Some(next) if rtmp_time <= next + tolerance => next,
            Some(_) => {
                self.stats.audio_reanchors += 1;
                rtmp_time
            }
            None => rtmp_time,
        };
        track.audio_next = Some(time.saturating_add(frame_len));
        track.last_frame = Some(f.data.clone());
        let sample = Sample {
            duration: frame_len as u32,
            cts_offset: 0,
            keyframe: true,
            data: f.data.clone(),
        };
        track.held.push_back((sample, time, now));
        self.advance_audio(None);
    }

    /// Moves held audio into segments. With video, audio is committed only
    /// up to the video's progress (so it can still land in the right
    /// segment when the video cuts); `cut` is a video boundary just made:
    /// (new segment number, boundary in 90 kHz, wall clock, discontinuity).
    fn advance_audio(&mut self, cut: Option<(u64, u64, SystemTime, bool)>) {
        let keep = self.keep();
        let audio_only = self.video.is_none();
        let part_target = self.config.part_target;
        let target = self.config.target;
        let progress = self.video_progress;
        let Some(track) = self.audio.as_mut() else {
            return;
        };
        let ts = u64::from(track.timescale);
        let to_audio = |t90: u64| rescale(t90, ts, 90_000);
        let part_ticks = (part_target * ts as f64) as u64;
        if audio_only {
            while let Some((sample, time, wall)) = track.held.pop_front() {
                let cut_here = match &track.open {
                    None => true,
                    Some(open) => time.saturating_sub(open.start) as f64 >= target * ts as f64,
                };
                if cut_here {
                    track.close_segment(keep, &mut self.stats);
                    let number = self.next_number;
                    self.next_number += 1;
                    track.open_segment(number, time, wall, self.discontinuity);
                    if self.availability_start.is_none() {
                        let since = Duration::from_secs_f64(time as f64 / ts as f64);
                        self.availability_start = Some(wall.checked_sub(since).unwrap_or(wall));
                    }
                    self.discontinuity = false;
                    self.updated = wall;
                    let secs = track
                        .segments
                        .back()
                        .map(|s| s.info.duration as f64 / ts as f64);
                    if let Some(secs) = secs {
                        self.target_duration = self.target_duration.max(secs.round() as u32);
                    }
                }
                track.add(sample, time, part_ticks, &mut self.stats);
            }
            return;
        }
        if let Some((number, boundary90, wall, disc)) = cut {
            track
                .cuts
                .push_back((number, to_audio(boundary90), wall, disc));
        }
        let limit = progress.map(to_audio);
        let max_hold = MAX_AUDIO_HOLD_MS * ts / 1000;
        track.commit_held(keep, part_ticks, &mut self.stats, |held| {
            let (Some(first), Some(last)) = (held.front(), held.back()) else {
                return false;
            };
            let below = limit.is_some_and(|l| first.1 < l);
            below || last.1.saturating_sub(first.1) > max_hold
        });
        // Audio closes its segment when its held samples pass the video's
        // cut, which can be well after the cut itself (and longer than it).
        self.bump_target();
    }

    /// Keeps TARGETDURATION ≥ every segment's rounded duration. It only
    /// ever grows (a GOP longer than the configured target raises it once).
    /// Several audio segments can close at once, the longest not last.
    fn bump_target(&mut self) {
        for t in [&self.video, &self.audio].into_iter().flatten() {
            let secs = t.longest as f64 / f64::from(t.timescale);
            self.target_duration = self.target_duration.max(secs.round() as u32);
        }
    }

    /// The publisher left or the configuration changed: close what is
    /// open (the last video frame gets the previous frame's duration) and
    /// start the next segment with a discontinuity. `now`: when.
    pub fn interrupt(&mut self, now: SystemTime) {
        let keep = self.keep();
        let part_ticks_v = (self.config.part_target * f64::from(cmaf::VIDEO_TIMESCALE)) as u64;
        let mut any_open = false;
        if let Some(v) = self.video.as_mut() {
            if let Some(p) = v.pending.take() {
                let duration = if v.last_duration > 0 {
                    v.last_duration
                } else {
                    3000
                };
                let sample = Sample {
                    duration: duration as u32,
                    cts_offset: p.cts,
                    keyframe: p.keyframe,
                    data: p.data,
                };
                v.add(sample, p.dts, part_ticks_v, &mut self.stats);
            }
            any_open |= v.open.is_some();
            v.close_segment(keep, &mut self.stats);
        }
        if let Some(a) = self.audio.as_mut() {
            let part_ticks = (self.config.part_target * f64::from(a.timescale)) as u64;
            a.commit_held(keep, part_ticks, &mut self.stats, |_| true);
            a.owe_cuts();
            any_open |= a.open.is_some();
            a.close_segment(keep, &mut self.stats);
            a.audio_next = None;
        }
        self.bump_target();
        if any_open {
            self.discontinuity = true;
            self.updated = now;
        }
    }

    /// The stream is over for good (at `now`): close everything,
    /// playlists say so.
    pub fn end(&mut self, now: SystemTime) {
        self.interrupt(now);
        self.ended = true;
        self.updated = now;
    }

    /// The number the next segment will get.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Manifests in their low-latency forms.
    pub fn low_latency(&self) -> bool {
        self.config.low_latency
    }

    /// Nominal part duration in seconds.
    pub fn part_target(&self) -> f64 {
        self.config.part_target
    }

    /// EXT-X-TARGETDURATION in seconds (≥ every segment, rounded).
    pub fn target_duration(&self) -> u32 {
        self.target_duration
    }

    /// Whether manifests can be served: some segment exists, and every
    /// track that has started a segment has finished one (so the first
    /// manifest a player sees lists every track the stream has; a track
    /// that never started, e.g. video without a keyframe, does not block).
    pub fn has_segments(&self) -> bool {
        let mut any = false;
        for t in [&self.video, &self.audio].into_iter().flatten() {
            if !t.segments.is_empty() {
                any = true;
            } else if t.open.is_some() {
                return false;
            }
        }
        any
    }

    pub fn snapshot(&self) -> StreamSnapshot {
        let w = if self.dvr_ms > 0 {
            usize::MAX
        } else {
            self.config.window
        };
        StreamSnapshot {
            key: self.key.clone(),
            video: self
                .video
                .as_ref()
                .filter(|t| !t.segments.is_empty())
                .map(|t| t.timeline(w)),
            audio: self
                .audio
                .as_ref()
                .filter(|t| !t.segments.is_empty())
                .map(|t| {
                    let mut timeline = t.timeline(w);
                    timeline.info.label = self.audio_label.clone();
                    timeline
                }),
            target_duration: self.target_duration,
            part_target: self.config.part_target,
            low_latency: self.config.low_latency,
            window: w,
            ended: self.ended,
            playlist_type: self.playlist_type,
            availability_start: self.availability_start.unwrap_or(SystemTime::UNIX_EPOCH),
            updated: self.updated,
        }
    }

    /// Discontinuities that have slid out of `kind`'s listed window (the
    /// snapshot's [`TrackTimeline::discontinuities_before`]).
    pub fn discontinuity_sequence(&self, kind: MediaKind) -> u64 {
        let Some(t) = self.track(kind) else {
            return 0;
        };
        let skip = if self.dvr_ms > 0 {
            0
        } else {
            t.segments.len().saturating_sub(self.config.window)
        };
        t.discontinuities_before(skip)
    }

    fn track(&self, kind: MediaKind) -> Option<&Track> {
        match kind {
            MediaKind::Video => self.video.as_ref(),
            MediaKind::Audio => self.audio.as_ref(),
        }
    }

    pub fn init(&self, kind: MediaKind, id: u32) -> Option<Bytes> {
        self.track(kind)?
            .inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }

    /// Where `kind`'s playlist ends now (see [`Position`]).
    pub fn position(&self, kind: MediaKind) -> Position {
        let Some(t) = self.track(kind) else {
            return Position::default();
        };
        let open = t.open.as_ref().filter(|o| !o.parts.is_empty());
        let last_part = open.map(|o| (o.number, o.parts.len() - 1)).or_else(|| {
            let g = t.segments.back()?;
            Some((g.info.number, g.info.parts.len().saturating_sub(1)))
        });
        let growing = t
            .open
            .as_ref()
            .filter(|o| o.part_starts.len() > o.parts.len())
            .map(|o| (o.number, o.parts.len()));
        Position {
            last_finished: t.segments.back().map(|g| g.info.number),
            last_part,
            growing,
            ended: self.ended,
        }
    }

    /// Part `index` (from 0) of segment `number`, once it is finished.
    pub fn part(&self, kind: MediaKind, number: u64, index: usize) -> Option<Vec<Bytes>> {
        match self.track(kind)?.part_from(number, index, 0)? {
            (chunks, true) => Some(chunks),
            (_, false) => None,
        }
    }

    /// Part `index` of segment `number` as far as it is written (at least
    /// one chunk): its chunks from chunk `from` of it on, and whether it is
    /// finished. What a preload-hinted part's response sends as it grows.
    pub fn part_from(
        &self,
        kind: MediaKind,
        number: u64,
        index: usize,
        from: usize,
    ) -> Option<(Vec<Bytes>, bool)> {
        self.track(kind)?.part_from(number, index, from)
    }

    /// Segment `number` of `kind` as far as it is made (at least one part):
    /// its chunks from index `from` on, and whether it is finished. What a
    /// chunked (LL-DASH) response sends as the segment grows.
    pub fn segment_from(
        &self,
        kind: MediaKind,
        number: u64,
        from: usize,
    ) -> Option<(Vec<Bytes>, bool)> {
        self.track(kind)?.segment_from(number, from)
    }

    /// Grows whenever a part is made, a segment closes or the stream ends: what requests
    /// waiting for a part compare (see `package::service::Packaged`).
    pub fn progress(&self) -> u64 {
        let made: u64 = [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .map(|t| t.made)
            .sum();
        made * 2 + u64::from(self.ended)
    }

    /// Grows whenever a chunk is written, and with [`StreamSegmenter::progress`]:
    /// what responses sent as they grow wait on.
    pub fn chunk_progress(&self) -> u64 {
        let chunks: u64 = [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .map(|t| t.chunks_made)
            .sum();
        chunks.wrapping_add(self.progress())
    }

    /// A finished segment's bytes, as the chunks to send in order.
    pub fn segment(&self, kind: MediaKind, number: u64) -> Option<Vec<Bytes>> {
        self.track(kind)?
            .segments
            .iter()
            .find(|s| s.info.number == number)
            .and_then(|s| s.body.chunks().cloned())
    }

    /// Bytes held by the window (for memory accounting and tests).
    pub fn stored_bytes(&self) -> u64 {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .map(|t| t.segments.iter().map(|s| s.info.bytes).sum::<u64>())
            .sum()
    }
}

impl Track {
    /// Discontinuity flags among the first `n` stored segments, plus those
    /// already evicted (counted as they leave).
    fn discontinuities_before(&self, n: usize) -> u64 {
        self.evicted_discontinuities
            + self
                .segments
                .iter()
                .take(n)
                .filter(|s| s.info.discontinuity)
                .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AacConfig, Codec, Mp3Config};

    /// The wall clock the tests give the segmenter.
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// The snapshot carries the discontinuities gone from it (evicted, or
    /// held before the window), so a playlist needs nothing else.
    #[test]
    fn snapshot_counts_discontinuities_before_its_segments() {
        let config = SegmenterConfig {
            window: 2,
            extra: 1,
            ..SegmenterConfig::default()
        };
        let mut seg = StreamSegmenter::with_first_number("live/t", config, 1);
        let now = t0();
        for session in 0..4 {
            seg.push(&StreamEvent::Config(avc_config()), now);
            for ms in (0..=6000).step_by(1000) {
                seg.push(&keyframe(session * 10_000 + ms), now);
            }
            seg.push(&StreamEvent::PublisherStopped, now);
        }
        // Four segments a session; sessions 2 to 4 start flagged, and all
        // three flags are before the two listed segments.
        let snap = seg.snapshot();
        let video = snap.video.as_ref().unwrap();
        let numbers: Vec<u64> = video.segments.iter().map(|s| s.number).collect();
        assert_eq!(numbers, [15, 16]);
        assert_eq!(video.discontinuities_before, 3);
        assert_eq!(seg.discontinuity_sequence(MediaKind::Video), 3);
        let playlist = super::super::hls::media_playlist(&snap, MediaKind::Video).unwrap();
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:3\n"),
            "{playlist}"
        );
    }

    /// The segmenter reads no clock: every time it reports is one it was
    /// given (the config's, the cut's, the stop's, the end's).
    /// DVR: segments leave memory into the outbox but stay listed for the
    /// DVR depth; older ones are forgotten (and counted as evicted).
    #[test]
    fn dvr_lists_the_depth_and_keeps_only_the_window_in_memory() {
        let config = SegmenterConfig {
            window: 2,
            extra: 1,
            ..SegmenterConfig::default()
        };
        let mut seg = StreamSegmenter::with_first_number("live/t", config, 1);
        seg.set_dvr(10_000);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        // 2 s segments (keyframes every second), a discontinuity at 20 s.
        for ms in (0..=30_000).step_by(1000) {
            if ms == 20_000 {
                seg.push(&StreamEvent::PublisherStopped, now);
                seg.push(&StreamEvent::Config(avc_config()), now);
            }
            seg.push(&keyframe(ms), now);
        }
        let snap = seg.snapshot();
        let video = snap.video.as_ref().unwrap();
        let listed: Vec<u64> = video.segments.iter().map(|g| g.number).collect();
        let span: u64 = video.segments.iter().map(|g| g.duration).sum();
        // Within the depth, by at most one segment.
        assert!(
            (8 * 90_000..=10 * 90_000).contains(&span),
            "{span} ticks listed: {listed:?}"
        );
        assert!(
            listed.windows(2).all(|w| w[1] == w[0] + 1),
            "contiguous: {listed:?}"
        );
        // Memory holds the window and its extra segments only.
        let in_memory = listed
            .iter()
            .filter(|n| seg.segment(MediaKind::Video, **n).is_some());
        assert_eq!(in_memory.count(), 3);
        let oldest = listed[0];
        assert!(seg.on_disk(MediaKind::Video, oldest));
        assert!(!seg.on_disk(MediaKind::Video, *listed.last().unwrap()));
        // What left memory: every segment before the window, once; what is
        // no longer listed: the ones before the depth.
        let out = seg.take_dvr();
        assert_eq!(out.len(), 1);
        let (kind, out) = &out[0];
        assert_eq!(*kind, MediaKind::Video);
        let spilled: Vec<u64> = out.spilled.iter().map(|(n, _)| *n).collect();
        assert_eq!(spilled, (1..listed[listed.len() - 3]).collect::<Vec<_>>());
        assert!(out.spilled.iter().all(|(_, c)| !c.is_empty()));
        assert_eq!(out.forgotten, (1..oldest).collect::<Vec<_>>());
        assert!(seg.take_dvr().is_empty(), "taken once");
        // The discontinuity at 20 s is listed, none was forgotten.
        assert_eq!(video.discontinuities_before, 0);
        assert_eq!(video.segments.iter().filter(|g| g.discontinuity).count(), 1);
        // Every init a listed segment needs is still there.
        for g in &video.segments {
            assert!(
                seg.init(MediaKind::Video, g.init).is_some(),
                "init {}",
                g.init
            );
        }
        // Without DVR, the same stream lists the window only.
        let mut live = StreamSegmenter::with_first_number("live/t", config, 1);
        live.push(&StreamEvent::Config(avc_config()), now);
        for ms in (0..=30_000).step_by(1000) {
            live.push(&keyframe(ms), now);
        }
        assert_eq!(live.snapshot().video.unwrap().segments.len(), 2);
        assert!(live.take_dvr().is_empty());
    }

    /// The memory count: a closed segment adds its bytes (parts are ranges
    /// of it, counted once), eviction takes them away; under the budget,
    /// extras go first, then the oldest listed segments go to disk (still
    /// listed, bytes in the outbox identical) or are dropped from the
    /// front; the protected newest segments never go.
    #[test]
    fn memory_is_counted_and_released_under_the_budget() {
        let config = SegmenterConfig {
            window: 4,
            extra: 2,
            ..SegmenterConfig::default()
        };
        let mut seg = StreamSegmenter::with_first_number("live/m", config, 1);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        let inits = seg.memory_bytes();
        assert!(inits > 0, "the init segment is held");
        let listed = |seg: &StreamSegmenter| -> Vec<u64> {
            let snap = seg.snapshot();
            snap.video
                .map_or(vec![], |v| v.segments.iter().map(|g| g.number).collect())
        };
        let closed = |seg: &StreamSegmenter| -> u64 {
            (1..100)
                .filter_map(|n| seg.segment(MediaKind::Video, n))
                .flatten()
                .map(|b| b.len() as u64)
                .sum()
        };
        // Keyframes every second, 2 s segments.
        let mut ms = 0;
        let mut feed = |seg: &mut StreamSegmenter, upto: i64| {
            while ms <= upto {
                seg.push(&keyframe(ms), now);
                ms += 1000;
            }
        };
        feed(&mut seg, 4_000);
        let before = seg.memory_bytes();
        feed(&mut seg, 6_000); // closes one more segment
        let after = seg.memory_bytes();
        assert!(after > before, "a close adds bytes: {before} -> {after}");
        feed(&mut seg, 31_000);
        // Window 4 + 2 extra closed segments, the open one, the init.
        assert_eq!(listed(&seg).len(), 4);
        let open = seg.memory_bytes() - inits - closed(&seg);
        assert!(open > 0 && open < closed(&seg) / 3, "open segment: {open}");
        let full = seg.memory_bytes();
        feed(&mut seg, 33_000); // one more close, one eviction
        assert!(
            seg.memory_bytes().abs_diff(full) < full / 10,
            "eviction takes bytes away"
        );

        let (extra, spillable) = seg.budget_usage();
        let list = listed(&seg);
        // Low latency: the newest segments whose parts are listed (3 target
        // durations of 2 s) and one more stay.
        assert!(extra > 0);
        assert_eq!(spillable.len(), 0, "{list:?}: all listed are protected");

        // A longer window: the oldest listed segments may go.
        let config = SegmenterConfig {
            window: 8,
            extra: 2,
            ..SegmenterConfig::default()
        };
        let mut seg = StreamSegmenter::with_first_number("live/m", config, 1);
        seg.push(&StreamEvent::Config(avc_config()), now);
        for ms in (0..=40_000).step_by(1000) {
            seg.push(&keyframe(ms), now);
        }
        let list = listed(&seg);
        let (extra, spillable) = seg.budget_usage();
        assert_eq!(list.len(), 8);
        // The newest three (6 s: parts listed) and one more stay.
        assert_eq!(spillable.len(), 8 - 4, "{list:?}");
        let first = seg.segment(MediaKind::Video, list[0]).unwrap();
        let held = seg.memory_bytes();
        let freed = seg.release(true, 2, Spill::Disk);
        assert_eq!((freed.extras, freed.spilled, freed.dropped), (2, 2, 0));
        assert_eq!(freed.extra_bytes, extra);
        assert_eq!(freed.spilled_bytes, spillable[0] + spillable[1]);
        assert_eq!(
            seg.memory_bytes(),
            held - freed.extra_bytes - freed.spilled_bytes
        );
        assert_eq!(listed(&seg), list, "playlists unchanged");
        assert!(seg.on_disk(MediaKind::Video, list[0]) && seg.on_disk(MediaKind::Video, list[1]));
        assert!(!seg.on_disk(MediaKind::Video, list[2]));
        assert!(seg.segment(MediaKind::Video, list[0]).is_none());
        let out = seg.take_dvr();
        let spilled = &out[0].1.spilled;
        assert_eq!(spilled.len(), 2);
        assert_eq!(
            (spilled[0].0, &spilled[0].1),
            (list[0], &first),
            "bytes identical"
        );
        // A spilled segment leaving the window is deleted from disk.
        for ms in (41_000..=42_000).step_by(1000) {
            seg.push(&keyframe(ms), now);
        }
        assert!(seg.take_dvr().is_empty(), "extras come back first");
        for ms in (43_000..=48_000).step_by(1000) {
            seg.push(&keyframe(ms), now);
        }
        assert_eq!(seg.take_dvr()[0].1.forgotten, [list[0], list[1]]);

        // Dropped instead: the playlist starts later, nothing goes to disk.
        let list = listed(&seg);
        let freed = seg.release(true, 1, Spill::Drop);
        assert_eq!((freed.extras, freed.dropped, freed.spilled), (2, 1, 0));
        assert_eq!(listed(&seg)[..], list[1..]);
        assert!(seg.take_dvr().is_empty());
        // However much is asked, the protected segments stay.
        seg.release(true, usize::MAX, Spill::Disk);
        let list = listed(&seg);
        let in_memory: Vec<bool> = list
            .iter()
            .map(|n| seg.segment(MediaKind::Video, *n).is_some())
            .collect();
        assert_eq!(in_memory.iter().filter(|m| **m).count(), 4, "{list:?}");
        assert!(
            in_memory.iter().rev().take(4).all(|m| *m),
            "the newest stay"
        );
    }

    #[test]
    fn manifest_times_are_the_times_given() {
        let at = |ms| t0() + Duration::from_millis(ms);
        let mut seg = StreamSegmenter::new("live/t", SegmenterConfig::default(), at(0));
        assert_eq!(seg.next_number(), 1_700_000_000);
        assert_eq!(seg.snapshot().updated, at(0));
        seg.push(&StreamEvent::Config(avc_config()), at(5));
        assert_eq!(seg.snapshot().updated, at(5));
        seg.push(&keyframe(0), at(10));
        seg.push(&keyframe(2000), at(20));
        let snap = seg.snapshot();
        assert_eq!(snap.updated, at(20));
        assert_eq!(snap.availability_start, at(10));
        seg.push(&StreamEvent::PublisherStopped, at(30));
        assert_eq!(seg.snapshot().updated, at(30));
        seg.end(at(40));
        assert_eq!(seg.snapshot().updated, at(40));
    }

    fn aac_config() -> Arc<CodecConfig> {
        Arc::new(CodecConfig::Aac(AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
            frame_length: 1024,
        }))
    }

    fn audio(codec: Codec, dts: i64) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec,
            dts,
            cts: 0,
            keyframe: true,
            data: Bytes::from_static(&[1, 2, 3]),
        })
    }

    /// Audio-only: the total duration and the start of the segments made
    /// from `frames` (RTMP ms, payload) of a track configured with `config`.
    fn audio_durations(config: CodecConfig, frames: &[(i64, &'static [u8])]) -> Vec<u64> {
        let mut seg = StreamSegmenter::with_first_number("live/t", SegmenterConfig::default(), 1);
        let now = t0();
        let codec = config.codec();
        seg.push(&StreamEvent::Config(Arc::new(config)), now);
        for &(dts, data) in frames {
            seg.push(
                &StreamEvent::Frame(Frame {
                    codec,
                    dts,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::from_static(data),
                }),
                now,
            );
        }
        seg.end(now);
        let a = seg.snapshot().audio.unwrap();
        let mut starts: Vec<u64> = a.segments.iter().map(|s| s.start).collect();
        starts.push(a.segments.last().map_or(0, |s| s.start + s.duration));
        // One segment per 2 s: compare the total and the sample clock.
        vec![
            a.segments.iter().map(|s| s.duration).sum(),
            a.segments[0].start,
        ]
    }

    #[test]
    fn audio_durations_come_from_the_codec() {
        let opus = CodecConfig::Opus(crate::media::OpusRecord {
            record: Bytes::new(),
            head: crate::media::opus::OpusHead {
                version: 1,
                channels: 2,
                pre_skip: 312,
                input_sample_rate: 48_000,
                output_gain: 0,
                mapping_family: 0,
                mapping: None,
            },
        });
        // 10 ms CELT packets whose RTMP times wobble by a millisecond: the
        // TOC times them, 480 samples each, whatever the clock says.
        let frames: Vec<(i64, &'static [u8])> = (0..10)
            .map(|i| (i * 10 + i % 2, &b"\xf0\x00"[..]))
            .collect();
        assert_eq!(audio_durations(opus.clone(), &frames), [4800, 0]);
        // A packet whose TOC says nothing (code 3 without its count byte)
        // lasts as long as the RTMP clock moved since the one before
        // (100 - 91 ms, then 30 ms).
        let mut frames = frames;
        frames.push((100, &b"\xf3"[..]));
        frames.push((130, &b"\xf3"[..]));
        assert_eq!(audio_durations(opus, &frames), [4800 + 432 + 1440, 0]);
    }

    #[test]
    fn frames_of_another_codec_stay_out() {
        let mut seg = StreamSegmenter::with_first_number("live/t", SegmenterConfig::default(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(aac_config()), now);
        seg.push(&audio(Codec::Opus, 0), now);
        seg.push(&audio(Codec::Aac, 0), now);
        seg.push(&StreamEvent::Config(avc_config()), now);
        seg.push(
            &StreamEvent::Frame(Frame {
                codec: Codec::Hevc,
                dts: 0,
                cts: 0,
                keyframe: true,
                data: Bytes::from_static(b"\0\0\0\x01\x26"),
            }),
            now,
        );
        assert_eq!(seg.stats.unsupported_frames, 2);
        seg.push(&audio(Codec::Aac, 21), now);
        let empty = StreamEvent::Frame(Frame {
            codec: Codec::Aac,
            dts: 42,
            cts: 0,
            keyframe: true,
            data: Bytes::new(),
        });
        seg.push(&empty, now);
        assert_eq!(seg.stats.empty_frames, 1);
    }

    #[test]
    fn mp3_frames_stay_out_of_an_aac_track() {
        let mut seg = StreamSegmenter::with_first_number("live/t", SegmenterConfig::default(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(aac_config()), now);
        let mp3 = CodecConfig::Mp3(Mp3Config {
            sample_rate: 44_100,
            channels: 2,
            flv_flags: 0x2f,
        });
        seg.push(&StreamEvent::Config(Arc::new(mp3)), now);
        for i in 0..10 {
            seg.push(&audio(Codec::Mp3, i * 26), now);
        }
        assert_eq!(seg.stats.unsupported_frames, 10);
        seg.end(now);
        assert!(seg.snapshot().audio.is_none());
    }

    /// The fuzzer's `audio_rate_change`: segments held from before a sample
    /// rate change keep their length in seconds in the new timescale.
    #[test]
    fn audio_rate_change_rescales_held_segments() {
        let mut seg = StreamSegmenter::with_first_number("live/t", SegmenterConfig::default(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(aac_config()), now);
        for i in 0..150 {
            seg.push(&audio(Codec::Aac, i * 1024 / 48), now);
        }
        let before: Vec<(f64, f64)> = {
            let t = seg.snapshot().audio.unwrap();
            let ts = f64::from(t.info.timescale);
            t.segments
                .iter()
                .map(|s| (s.start as f64 / ts, s.duration as f64 / ts))
                .collect()
        };
        let mut config = (*aac_config()).clone();
        if let CodecConfig::Aac(c) = &mut config {
            c.asc = Bytes::from_static(&[0x13, 0x10]); // 22.05 kHz
            c.sample_rate = 22_050;
        }
        seg.push(&StreamEvent::Config(Arc::new(config)), now);
        let t = seg.snapshot().audio.unwrap();
        assert_eq!(t.info.timescale, 22_050);
        // The change closes the open segment too.
        assert_eq!(t.segments.len(), before.len() + 1);
        for (s, (start, duration)) in t.segments.iter().zip(before) {
            assert!((s.start as f64 / 22_050.0 - start).abs() < 1e-4);
            assert!((s.duration as f64 / 22_050.0 - duration).abs() < 1e-4);
            assert_eq!(s.duration, s.parts.iter().map(|p| p.duration).sum::<u64>());
        }
    }

    /// The fuzzer's `discontinuity_on_empty_audio_segment`: the audio has
    /// no sample in the span of the video segment that carries the
    /// discontinuity (a new audio init), so that audio segment is never
    /// stored; the next one must carry the flag.
    #[test]
    fn discontinuity_survives_an_empty_audio_segment() {
        let mut seg = StreamSegmenter::with_first_number("live/t", SegmenterConfig::default(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(aac_config()), now);
        seg.push(&audio(Codec::Aac, 0), now);
        let mut config = (*aac_config()).clone();
        if let CodecConfig::Aac(c) = &mut config {
            c.channels = 1;
            c.asc = Bytes::from_static(&[0x11, 0x88]);
        }
        seg.push(&StreamEvent::Config(Arc::new(config)), now);
        let avc =
            crate::media::avc::build_decoder_config(&[0x67, 0x64, 0, 0x1f, 0xac], &[0x68, 0xee])
                .unwrap();
        seg.push(&StreamEvent::Config(Arc::new(CodecConfig::Avc(avc))), now);
        for i in 0..8 {
            seg.push(
                &StreamEvent::Frame(Frame {
                    codec: Codec::H264,
                    dts: 1000 + i * 1000,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                }),
                now,
            );
        }
        seg.push(&audio(Codec::Aac, 6100), now);
        seg.end(now);
        let audio = seg.snapshot().audio.unwrap().segments;
        let (first, next) = (&audio[0], &audio[1]);
        assert_ne!(first.init, next.init);
        assert_eq!(next.number, first.number + 1, "{audio:?}");
        assert!(next.discontinuity);
    }

    fn avc_config() -> Arc<CodecConfig> {
        let avc =
            crate::media::avc::build_decoder_config(&[0x67, 0x64, 0, 0x1f, 0xac], &[0x68, 0xee])
                .unwrap();
        Arc::new(CodecConfig::Avc(avc))
    }

    fn keyframe(dts: i64) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec: Codec::H264,
            dts,
            cts: 0,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        })
    }

    /// Feeds, in time order, a keyframe every second over `video` (ms) and
    /// a 48 kHz AAC frame (1024 samples) wherever `audio_at` says so.
    fn wide() -> SegmenterConfig {
        SegmenterConfig {
            window: 10,
            ..SegmenterConfig::default()
        }
    }

    fn feed(
        seg: &mut StreamSegmenter,
        video: std::ops::Range<i64>,
        audio_at: impl Fn(i64) -> bool,
    ) {
        let now = t0();
        let mut frame = 0i64;
        for ms in video.step_by(1000) {
            loop {
                let at = frame * 1024 / 48;
                if at >= ms + 1000 {
                    break;
                }
                if at >= ms && audio_at(at) {
                    seg.push(&audio(Codec::Aac, at), now);
                }
                frame += 1;
            }
            seg.push(&keyframe(ms), now);
        }
    }

    /// Audio configured after the video's first keyframe (AC-3 and E-AC-3
    /// are configured by their first frame, 75 ms in with FFmpeg): its
    /// first samples go into the segment the video opened, not the next.
    #[test]
    fn audio_configured_after_the_first_keyframe_joins_the_open_segment() {
        let mut seg = StreamSegmenter::with_first_number("live/t", wide(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        seg.push(&keyframe(0), now);
        seg.push(&StreamEvent::Config(aac_config()), now);
        // AAC frames from the 4th (85 ms) until the next keyframe, then on.
        for frame in 4..47 {
            seg.push(&audio(Codec::Aac, frame * 1024 / 48), now);
        }
        feed(&mut seg, 1000..10_000, |ms| ms >= 1000);
        seg.end(now);
        let snap = seg.snapshot();
        let (video, audio) = (snap.video.unwrap().segments, snap.audio.unwrap().segments);
        assert_eq!(audio[0].number, video[0].number, "{audio:?}");
        assert_eq!(audio.len(), video.len());
        // It starts where its first sample is (85 ms, at 48 kHz).
        assert_eq!(audio[0].start, 85 * 48, "{:?}", audio[0]);
    }

    /// The fuzzer's `audio_gap`, by hand: the audio has no sample in the
    /// whole span of one video segment (2 s to 4 s). Its number is not
    /// skipped: the first sample after the gap makes that segment alone.
    #[test]
    fn audio_gap_keeps_segment_numbers_contiguous() {
        let mut seg = StreamSegmenter::with_first_number("live/t", wide(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        seg.push(&StreamEvent::Config(aac_config()), now);
        feed(&mut seg, 0..10_000, |ms| !(1900..4100).contains(&ms));
        seg.end(now);
        let snap = seg.snapshot();
        let video: Vec<u64> = snap
            .video
            .unwrap()
            .segments
            .iter()
            .map(|s| s.number)
            .collect();
        let audio = snap.audio.unwrap().segments;
        let numbers: Vec<u64> = audio.iter().map(|s| s.number).collect();
        assert_eq!(video, [1, 2, 3, 4, 5]);
        assert_eq!(numbers, [1, 2, 3, 4, 5], "{audio:?}");
        // Segment 2 (video 2 s..4 s) is the first sample after the gap,
        // alone; segment 3 starts with the next one.
        let first_after = 4100 * 48 / 1024 * 1024 + 1024;
        let at = |ms: u64| ms * 48;
        assert!(audio[1].start >= at(4000) && audio[1].start < at(4121));
        assert!(audio[1].start <= first_after, "{:?}", audio[1]);
        assert_eq!(audio[1].duration, 1024);
        assert_eq!(audio[2].start, audio[1].start + 1024);
        assert!(audio.iter().all(|s| !s.discontinuity));
        assert_eq!(seg.stats.audio_gap_fills, 0);
    }

    /// The audio stops before the video's last boundaries, then the
    /// publisher leaves and comes back: the video segments the audio never
    /// reached still get audio segments (a copy of the last audio frame at
    /// each boundary), so the numbering goes on contiguously after the
    /// discontinuity.
    #[test]
    fn audio_behind_the_video_at_a_stop_keeps_numbers_contiguous() {
        let mut seg = StreamSegmenter::with_first_number("live/t", wide(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        seg.push(&StreamEvent::Config(aac_config()), now);
        feed(&mut seg, 0..7000, |ms| ms < 1900);
        seg.push(&StreamEvent::PublisherStopped, now);
        seg.push(&StreamEvent::PublisherStarted, now);
        feed(&mut seg, 0..5000, |_| true);
        seg.end(now);
        let snap = seg.snapshot();
        let video = snap.video.unwrap().segments;
        let audio = snap.audio.unwrap().segments;
        let numbers = |t: &[SegmentInfo]| t.iter().map(|s| s.number).collect::<Vec<_>>();
        assert_eq!(numbers(&video), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(numbers(&audio), [1, 2, 3, 4, 5, 6, 7], "{audio:?}");
        assert_eq!(seg.stats.audio_gap_fills, 3);
        for (filled, boundary_ms) in audio[1..4].iter().zip([2000u64, 4000, 6000]) {
            assert_eq!(filled.start, boundary_ms * 48);
            assert_eq!(filled.duration, 1024);
            assert!(!filled.discontinuity);
        }
        // The copies are the last frame's bytes (in the fragment's buffer:
        // a frame that small is copied, not chained).
        let filled = seg.segment(MediaKind::Audio, 2).unwrap();
        assert!(filled.last().is_some_and(|b| b.ends_with(&[1, 2, 3])));
        // Both tracks follow the discontinuity at the same number.
        assert!(video[4].discontinuity && audio[4].discontinuity);
        assert!(!video[3].discontinuity && !audio[3].discontinuity);
    }

    /// A stream that ends with its audio behind its video has fewer audio
    /// segments, no copies: nothing follows that needs the numbers.
    #[test]
    fn audio_behind_the_video_at_the_end_is_left_short() {
        let mut seg = StreamSegmenter::with_first_number("live/t", wide(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        seg.push(&StreamEvent::Config(aac_config()), now);
        feed(&mut seg, 0..7000, |ms| ms < 1900);
        seg.end(now);
        let snap = seg.snapshot();
        assert_eq!(snap.video.unwrap().segments.len(), 4);
        assert_eq!(snap.audio.unwrap().segments.len(), 1);
        assert_eq!(seg.stats.audio_gap_fills, 0);
    }

    /// A new audio configuration whose frames only come after the
    /// publisher stopped and returned: the video segments the audio did not
    /// reach before the stop are copies of the new configuration's first
    /// frame, in its init, after a discontinuity.
    #[test]
    fn owed_audio_segments_after_a_configuration_change_copy_its_first_frame() {
        let mut seg = StreamSegmenter::with_first_number("live/t", wide(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(avc_config()), now);
        seg.push(&StreamEvent::Config(aac_config()), now);
        feed(&mut seg, 0..3000, |_| true);
        let mut config = (*aac_config()).clone();
        if let CodecConfig::Aac(c) = &mut config {
            c.channels = 1;
            c.asc = Bytes::from_static(&[0x11, 0x88]);
        }
        seg.push(&StreamEvent::Config(Arc::new(config)), now);
        feed(&mut seg, 3000..6000, |_| false);
        seg.push(&StreamEvent::PublisherStopped, now);
        seg.push(&StreamEvent::PublisherStarted, now);
        feed(&mut seg, 0..5000, |_| true);
        seg.end(now);
        let audio = seg.snapshot().audio.unwrap().segments;
        let numbers: Vec<u64> = audio.iter().map(|s| s.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7], "{audio:?}");
        assert_eq!(seg.stats.audio_gap_fills, 2);
        let (owed, next) = (&audio[2], &audio[3]);
        assert!(owed.discontinuity && !next.discontinuity, "{audio:#?}");
        assert_eq!(owed.init, audio[1].init + 1);
        assert_eq!(next.init, owed.init);
        assert_eq!((owed.start, owed.duration), (3000 * 48, 1024));
        assert_eq!((next.start, next.duration), (5000 * 48, 1024));
        assert!(audio[4].discontinuity);
    }

    /// The fuzzer's `aac_frozen_timestamps`: an RTMP clock that stands
    /// still is behind the sample clock, which must not jump back.
    #[test]
    fn frozen_audio_timestamps_never_pull_time_back() {
        let mut seg = StreamSegmenter::with_first_number("live/t", SegmenterConfig::default(), 1);
        let now = t0();
        seg.push(&StreamEvent::Config(aac_config()), now);
        for _ in 0..200 {
            seg.push(&audio(Codec::Aac, 0), now);
        }
        seg.end(now);
        assert_eq!(seg.stats.audio_reanchors, 0);
        let segs = seg.snapshot().audio.unwrap().segments;
        let total: u64 = segs.iter().map(|s| s.duration).sum();
        assert_eq!(total, 200 * 1024);
        for pair in segs.windows(2) {
            assert_eq!(pair[1].start, pair[0].start + pair[0].duration);
        }
    }
}
