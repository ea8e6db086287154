//! MP4 files in: a sans-I/O reader that turns a whole `.mp4` file
//! (ISO/IEC 14496-12, "ISO BMFF") into track configurations, a sample index
//! and [`Frame`]s, for on-demand playback of dropped-in files.
//!
//! An MP4 file is a sequence of boxes: a 32-bit big-endian size (1 means a
//! 64-bit size follows the type; 0 means "to the end of the enclosing box
//! or file"), a four-character type, then the body, which for container
//! boxes is more boxes. The media bytes sit in `mdat`; everything needed to
//! find them is elsewhere:
//!
//! - **Progressive** files (what `ffmpeg` writes by default, `moov` after
//!   `mdat`; with `-movflags +faststart`, before it) describe every sample
//!   in `moov/trak/mdia/minf/stbl`: `stsd` (the sample entry: `avc1` with
//!   `avcC`, `hev1`/`hvc1` with `hvcC`, `av01` with `av1C`, `mp4a` with
//!   `esds`, `Opus` with `dOps`), `stts` (run-length decode durations),
//!   `ctts` (composition offsets), `stsz`/`stz2` (sizes), `stsc` (samples
//!   per chunk), `stco`/`co64` (chunk file offsets), `stss` (sync samples;
//!   absent means every sample is one). A sample's offset is its chunk's
//!   offset plus the sizes of the samples before it in that chunk.
//! - **Fragmented** files (`-movflags frag_keyframe+empty_moov`, CMAF) have
//!   an empty sample table and defaults in `moov/mvex/trex`; then pairs of
//!   `moof` + `mdat`. Each `moof/traf` names its track in `tfhd` (with
//!   defaults and a base data offset, by default the `moof`'s first byte),
//!   starts its decode time in `tfdt`, and lists samples in `trun`s
//!   (duration, size, flags, composition offset per sample, each field
//!   present or taken from the defaults, and a data offset from the base).
//!
//! Both can occur in one file (samples in `stbl`, then fragments); both
//! give the same [`Sample`] index. Only the first video track (H.264,
//! HEVC, AV1) and the first audio track (AAC, Opus) that castgate can read
//! are kept; other tracks are listed in [`Mp4File::skipped`]. A track's
//! first sample entry configures it (samples pointing at another entry of
//! `stsd` are read as if they used the first). The first non-empty edit
//! of `edts/elst` gives the presentation start ([`Mp4Track::media_start`]),
//! which the millisecond times take off: ffmpeg writes one for B-frame
//! delay and AAC priming, so the first samples of a track may have
//! negative times in milliseconds ([`Mp4File::frames`] shifts all tracks
//! alike to start at 0). Empty edits before it delay the track (ffmpeg
//! writes one when a track starts later than the others, as in a remuxed
//! FLV): their durations, in `mvhd`'s timescale, are added to its times.
//! Other edits' durations are not read.
//!
//! Input is hostile: every box size is checked against the bytes its
//! parent has left, every table's entry count against the bytes its box
//! holds, the samples of a track are capped ([`Limits`]), every sample is
//! checked to lie within the file, and arithmetic on file values is
//! checked. Nothing here panics; errors say which box and why
//! ([`Mp4Error`]).
//!
//! A small box walker of its own rather than `mp4-atom`'s reader: the
//! index needs the absolute file offset of every box and every sample, and
//! the walker only descends into the boxes this reader knows, so nesting
//! is bounded by construction.

use bytes::Bytes;

use super::{aac, av1, avc, hevc, opus, CodecConfig, Frame, MediaKind, OpusRecord};

/// Samples reserved at once before they are checked.
const RESERVE: usize = 1 << 16;

/// Bounds on what one file may make this reader allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Samples per track: 4 million is 37 hours of 30 fps video, 24 hours
    /// of 48 kHz AAC. A [`Sample`] is 48 bytes of index, so at most
    /// 192 MB per track; and since every sample must lie within the file,
    /// a file can claim no more samples than it has bytes (or 4 bytes of
    /// size table per empty sample).
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_samples: 4_000_000,
        }
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mp4Error {
    #[error("'{what}' truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: u64,
        have: u64,
    },
    #[error("box '{kind}' at offset {offset} declares {size} bytes, but only {left} are left")]
    BoxPastEnd {
        kind: String,
        offset: u64,
        size: u64,
        left: u64,
    },
    #[error("box '{kind}' at offset {offset} declares {size} bytes, less than its header")]
    BoxTooSmall {
        kind: String,
        offset: u64,
        size: u64,
    },
    #[error("no '{0}' box")]
    Missing(&'static str),
    #[error("'{what}': {count} entries, more than the {max} allowed")]
    TooMany {
        what: &'static str,
        count: u64,
        max: u64,
    },
    #[error("'{what}' version {version} is not supported")]
    Version { what: &'static str, version: u8 },
    #[error("'{what}' is invalid: {why}")]
    Invalid {
        what: &'static str,
        why: &'static str,
    },
    #[error("track {track}: sample {sample} ({size} bytes at offset {offset}) lies past the end of the file ({len} bytes)")]
    SampleOutsideFile {
        track: u32,
        sample: usize,
        offset: u64,
        size: u32,
        len: u64,
    },
    #[error("no H.264, HEVC or AV1 video track and no AAC or Opus audio track{0}")]
    NoTracks(String),
}

fn invalid(what: &'static str, why: &'static str) -> Mp4Error {
    Mp4Error::Invalid { what, why }
}

/// One sample (access unit) of a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track's timescale, as the file says it.
    pub dts: u64,
    /// Composition offset in the track's timescale: `pts = dts + cts`.
    pub cts: i32,
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Decode time in milliseconds, the edit list's start taken off
    /// (rounded down; may be negative for the first samples).
    pub dts_ms: i64,
    /// Composition offset in milliseconds (`pts_ms - dts_ms`, each rounded
    /// down).
    pub cts_ms: i32,
    /// A sync sample (`stss`, or no `sample_is_non_sync_sample` flag).
    pub keyframe: bool,
    /// Where the sample's bytes are in the file.
    pub offset: u64,
    pub size: u32,
}

/// A track castgate can play, with its sample index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mp4Track {
    pub track_id: u32,
    /// Ticks per second of the sample times (`mdhd`).
    pub timescale: u32,
    pub config: CodecConfig,
    /// The media time presented at 0: the first non-empty edit's media
    /// time less the empty edits before it (0 without an edit list), in
    /// the track's timescale.
    pub media_start: i64,
    /// Every sample in decode order (samples of `stbl`, then of each
    /// fragment in file order).
    pub samples: Vec<Sample>,
}

impl Mp4Track {
    pub fn kind(&self) -> MediaKind {
        self.config.kind()
    }

    /// The sum of the sample durations, in the track's timescale.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }

    /// Milliseconds of `ticks` in this track's timescale (rounded down).
    pub fn ticks_to_ms(&self, ticks: i64) -> i64 {
        to_ms(ticks, self.timescale)
    }
}

/// A track that was not kept, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedTrack {
    pub track_id: u32,
    pub reason: String,
}

/// What a file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mp4File {
    /// `ftyp`'s major brand, if the file has one.
    pub major_brand: Option<[u8; 4]>,
    /// Whether any `moof` was read.
    pub fragmented: bool,
    pub video: Option<Mp4Track>,
    pub audio: Option<Mp4Track>,
    pub skipped: Vec<SkippedTrack>,
}

impl Mp4File {
    /// Reads a whole file with the default [`Limits`].
    pub fn parse(data: &[u8]) -> Result<Mp4File, Mp4Error> {
        Self::parse_with(data, Limits::default())
    }

    /// Reads a whole file. Every sample of the index lies within `data`.
    pub fn parse_with(data: &[u8], limits: Limits) -> Result<Mp4File, Mp4Error> {
        parse_file(data, limits)
    }

    /// The kept tracks, video first.
    pub fn tracks(&self) -> impl Iterator<Item = &Mp4Track> {
        self.video.iter().chain(self.audio.iter())
    }

    /// The bytes of one sample of `file` (the same bytes this was parsed
    /// from), zero-copy.
    pub fn sample_bytes(file: &Bytes, sample: &Sample) -> Option<Bytes> {
        let start = usize::try_from(sample.offset).ok()?;
        let end = start.checked_add(usize::try_from(sample.size).ok()?)?;
        (end <= file.len()).then(|| file.slice(start..end))
    }

    /// Every sample of the kept tracks as a [`Frame`], interleaved by
    /// decode time (video first on a tie), payloads sliced from `file`
    /// (the bytes this was parsed from). Times are shifted by one amount
    /// for all tracks so that the earliest decode time is 0, keeping the
    /// tracks in sync. H.264 and HEVC payloads are the length-prefixed NAL
    /// units of the sample as stored.
    pub fn frames<'a>(&'a self, file: &'a Bytes) -> impl Iterator<Item = Frame> + 'a {
        let base = self
            .tracks()
            .filter_map(|t| t.samples.iter().map(|s| s.dts_ms).min())
            .min()
            .unwrap_or(0);
        let mut cursors: Vec<(&Mp4Track, usize)> = self.tracks().map(|t| (t, 0)).collect();
        std::iter::from_fn(move || loop {
            let (i, _) = cursors
                .iter()
                .enumerate()
                .filter_map(|(i, (t, n))| t.samples.get(*n).map(|s| (i, s.dts_ms)))
                .min_by_key(|&(i, dts)| (dts, i))?;
            let (track, n) = &mut cursors[i];
            let sample = track.samples[*n];
            *n += 1;
            // Parsing checked every sample against the file; bytes of
            // another file may be shorter, and their samples are passed by.
            let Some(data) = Mp4File::sample_bytes(file, &sample) else {
                continue;
            };
            return Some(Frame {
                codec: track.config.codec(),
                dts: sample.dts_ms.saturating_sub(base),
                cts: sample.cts_ms,
                keyframe: sample.keyframe,
                data,
            });
        })
    }
}

fn to_ms(ticks: i64, timescale: u32) -> i64 {
    if timescale == 0 {
        return 0;
    }
    let ms = (i128::from(ticks) * 1000).div_euclid(i128::from(timescale));
    ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

// ---------------------------------------------------------------------------
// Boxes

/// One box: its type, body and where it starts in the file.
#[derive(Clone, Copy, Debug)]
struct Atom<'a> {
    kind: [u8; 4],
    body: &'a [u8],
    /// File offset of the box's first byte.
    offset: u64,
    /// Header length: 8, or 16 with a 64-bit size.
    header: u64,
}

fn fourcc(kind: [u8; 4]) -> String {
    kind.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// The boxes of a container body. `base` is the file offset of `data[0]`.
struct Atoms<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

fn atoms(data: &[u8], base: u64) -> Atoms<'_> {
    Atoms { data, pos: 0, base }
}

impl<'a> Iterator for Atoms<'a> {
    type Item = Result<Atom<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = self.base + self.pos as u64;
        let r = (|| {
            if rest.len() < 8 {
                return Err(Mp4Error::Truncated {
                    what: "box header",
                    need: 8,
                    have: rest.len() as u64,
                });
            }
            let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let kind = [rest[4], rest[5], rest[6], rest[7]];
            let (size, header) = match size32 {
                0 => (rest.len() as u64, 8),
                1 => {
                    let Some(b) = rest.get(8..16) else {
                        return Err(Mp4Error::Truncated {
                            what: "64-bit box size",
                            need: 16,
                            have: rest.len() as u64,
                        });
                    };
                    let mut s = [0; 8];
                    s.copy_from_slice(b);
                    (u64::from_be_bytes(s), 16)
                }
                n => (u64::from(n), 8),
            };
            if size < header as u64 {
                return Err(Mp4Error::BoxTooSmall {
                    kind: fourcc(kind),
                    offset,
                    size,
                });
            }
            if size > rest.len() as u64 {
                return Err(Mp4Error::BoxPastEnd {
                    kind: fourcc(kind),
                    offset,
                    size,
                    left: rest.len() as u64,
                });
            }
            // size <= rest.len(), so it fits a usize.
            let size = size as usize;
            Ok((
                Atom {
                    kind,
                    body: &rest[header..size],
                    offset,
                    header: header as u64,
                },
                size,
            ))
        })();
        match r {
            Ok((atom, size)) => {
                self.pos += size;
                Some(Ok(atom))
            }
            Err(e) => {
                self.pos = self.data.len();
                Some(Err(e))
            }
        }
    }
}

/// The first child of `body` of type `kind`, if any.
fn child<'a>(body: &'a [u8], base: u64, kind: &[u8; 4]) -> Result<Option<Atom<'a>>, Mp4Error> {
    for a in atoms(body, base) {
        let a = a?;
        if &a.kind == kind {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

fn require<'a>(
    body: &'a [u8],
    base: u64,
    kind: &[u8; 4],
    name: &'static str,
) -> Result<Atom<'a>, Mp4Error> {
    child(body, base, kind)?.ok_or(Mp4Error::Missing(name))
}

impl Atom<'_> {
    /// File offset of the body's first byte.
    fn body_offset(&self) -> u64 {
        self.offset + self.header
    }
}

/// A bounded big-endian reader over a box body.
struct Reader<'a> {
    d: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(d: &'a [u8], what: &'static str) -> Self {
        Reader { d, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if self.d.len() < n {
            return Err(Mp4Error::Truncated {
                what: self.what,
                need: n as u64,
                have: self.d.len() as u64,
            });
        }
        let (a, b) = self.d.split_at(n);
        self.d = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Mp4Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Mp4Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Mp4Error> {
        let b = self.bytes(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A full box's version and flags.
    fn full(&mut self) -> Result<(u8, u32), Mp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// An entry count whose entries of `entry_size` bytes must fit what is
    /// left, and at most `max`.
    fn count(&mut self, entry_size: usize, max: usize) -> Result<usize, Mp4Error> {
        let n = self.u32()?;
        let n_us = n as usize;
        if n_us > max {
            return Err(Mp4Error::TooMany {
                what: self.what,
                count: u64::from(n),
                max: max as u64,
            });
        }
        let need = n_us.saturating_mul(entry_size);
        if need > self.d.len() {
            return Err(Mp4Error::Truncated {
                what: self.what,
                need: need as u64,
                have: self.d.len() as u64,
            });
        }
        Ok(n_us)
    }
}

// ---------------------------------------------------------------------------
// The file

/// `trex` defaults of one track.
#[derive(Clone, Copy, Debug, Default)]
struct TrackDefaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// A kept track while its samples are gathered.
struct Building {
    track: Mp4Track,
    defaults: TrackDefaults,
    /// The decode time after the last sample (for a `traf` without `tfdt`).
    next_dts: u64,
}

fn parse_file(data: &[u8], limits: Limits) -> Result<Mp4File, Mp4Error> {
    let mut major_brand = None;
    let mut moov = None;
    for a in atoms(data, 0) {
        let a = a?;
        match &a.kind {
            b"ftyp" if major_brand.is_none() => {
                let mut r = Reader::new(a.body, "ftyp");
                let b = r.bytes(4)?;
                major_brand = Some([b[0], b[1], b[2], b[3]]);
            }
            b"moov" if moov.is_none() => moov = Some(a),
            _ => {}
        }
    }
    let moov = moov.ok_or(Mp4Error::Missing("moov"))?;
    let movie_timescale = movie_timescale(&moov)?;
    let mut skipped = Vec::new();
    let mut video: Option<Building> = None;
    let mut audio: Option<Building> = None;
    let mut defaults: Vec<(u32, TrackDefaults)> = Vec::new();
    for a in atoms(moov.body, moov.body_offset()) {
        let a = a?;
        match &a.kind {
            b"trak" => match parse_trak(&a, data.len() as u64, movie_timescale, limits)? {
                Ok(b) => {
                    let slot = match b.track.kind() {
                        MediaKind::Video => &mut video,
                        MediaKind::Audio => &mut audio,
                    };
                    if slot.is_none() {
                        *slot = Some(b);
                    } else {
                        skipped.push(SkippedTrack {
                            track_id: b.track.track_id,
                            reason: format!(
                                "another {} track came first",
                                if b.track.kind() == MediaKind::Video {
                                    "video"
                                } else {
                                    "audio"
                                }
                            ),
                        });
                    }
                }
                Err(s) => skipped.push(s),
            },
            b"mvex" => {
                for t in atoms(a.body, a.body_offset()) {
                    let t = t?;
                    if &t.kind == b"trex" && defaults.len() < 1024 {
                        let mut r = Reader::new(t.body, "trex");
                        r.full()?;
                        let id = r.u32()?;
                        let _description = r.u32()?;
                        let d = TrackDefaults {
                            duration: r.u32()?,
                            size: r.u32()?,
                            flags: r.u32()?,
                        };
                        defaults.push((id, d));
                    }
                }
            }
            _ => {}
        }
    }
    for b in [&mut video, &mut audio].into_iter().flatten() {
        if let Some((_, d)) = defaults.iter().find(|(id, _)| *id == b.track.track_id) {
            b.defaults = *d;
        }
    }
    let mut fragmented = false;
    for a in atoms(data, 0) {
        let a = a?;
        if &a.kind == b"moof" {
            fragmented = true;
            parse_moof(&a, data.len() as u64, limits, &mut video, &mut audio)?;
        }
    }
    if video.is_none() && audio.is_none() {
        let why: Vec<String> = skipped
            .iter()
            .map(|s| format!("track {}: {}", s.track_id, s.reason))
            .collect();
        return Err(Mp4Error::NoTracks(if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join("; "))
        }));
    }
    Ok(Mp4File {
        major_brand,
        fragmented,
        video: video.map(|b| b.track),
        audio: audio.map(|b| b.track),
        skipped,
    })
}

/// A `trak`: `Ok(Err(_))` for a track that is not kept (another handler,
/// a codec castgate does not read, a configuration that does not parse).
/// `mvhd`'s timescale (edit durations are in it); `None` without one.
fn movie_timescale(moov: &Atom<'_>) -> Result<Option<u32>, Mp4Error> {
    let Some(mvhd) = child(moov.body, moov.body_offset(), b"mvhd")? else {
        return Ok(None);
    };
    let mut r = Reader::new(mvhd.body, "mvhd");
    let (version, _) = r.full()?;
    r.bytes(if version == 1 { 16 } else { 8 })?;
    Ok(Some(r.u32()?).filter(|t| *t > 0))
}

fn parse_trak(
    trak: &Atom<'_>,
    file_len: u64,
    movie_timescale: Option<u32>,
    limits: Limits,
) -> Result<Result<Building, SkippedTrack>, Mp4Error> {
    let base = trak.body_offset();
    let tkhd = require(trak.body, base, b"tkhd", "tkhd")?;
    let mut r = Reader::new(tkhd.body, "tkhd");
    let (version, _) = r.full()?;
    r.bytes(if version == 1 { 16 } else { 8 })?;
    let track_id = r.u32()?;
    let skip = |reason: String| Ok(Err(SkippedTrack { track_id, reason }));

    let mdia = require(trak.body, base, b"mdia", "mdia")?;
    let mbase = mdia.body_offset();
    let mdhd = require(mdia.body, mbase, b"mdhd", "mdhd")?;
    let mut r = Reader::new(mdhd.body, "mdhd");
    let (version, _) = r.full()?;
    match version {
        0 => r.bytes(8)?,
        1 => r.bytes(16)?,
        v => {
            return Err(Mp4Error::Version {
                what: "mdhd",
                version: v,
            })
        }
    };
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(invalid("mdhd", "timescale is 0"));
    }
    let hdlr = require(mdia.body, mbase, b"hdlr", "hdlr")?;
    let mut r = Reader::new(hdlr.body, "hdlr");
    r.full()?;
    r.u32()?;
    let handler = r.bytes(4)?;
    let kind = match handler {
        b"vide" => MediaKind::Video,
        b"soun" => MediaKind::Audio,
        other => {
            return skip(format!(
                "handler '{}' is neither video nor audio",
                fourcc([other[0], other[1], other[2], other[3]])
            ))
        }
    };
    let minf = require(mdia.body, mbase, b"minf", "minf")?;
    let stbl = require(minf.body, minf.body_offset(), b"stbl", "stbl")?;
    let sbase = stbl.body_offset();
    let stsd = require(stbl.body, sbase, b"stsd", "stsd")?;
    let config = match sample_entry(&stsd, kind)? {
        Ok(c) => c,
        Err(reason) => return skip(reason),
    };
    if config.kind() != kind {
        return skip(format!(
            "{} sample entry in a track of the other kind",
            config.codec()
        ));
    }
    let media_start = match child(trak.body, base, b"edts")? {
        Some(edts) => match child(edts.body, edts.body_offset(), b"elst")? {
            Some(elst) => {
                let (media_time, delay) = first_edit(elst.body)?;
                // Empty edits first delay the track: its media time
                // `media_time` is presented `delay` (movie ticks) late.
                let delay = movie_timescale.map_or(0, |movie| {
                    let ticks = i128::from(delay) * i128::from(timescale) / i128::from(movie);
                    i64::try_from(ticks).unwrap_or(i64::MAX)
                });
                media_time.saturating_sub(delay)
            }
            None => 0,
        },
        None => 0,
    };
    let mut track = Mp4Track {
        track_id,
        timescale,
        config,
        media_start,
        samples: Vec::new(),
    };
    sample_table(&stbl, &mut track, file_len, limits)?;
    let next_dts = track
        .samples
        .last()
        .map_or(0, |s| s.dts.saturating_add(u64::from(s.duration)));
    Ok(Ok(Building {
        track,
        defaults: TrackDefaults::default(),
        next_dts,
    }))
}

/// The media time of the first edit that is not empty (-1), and the
/// duration of the empty edits before it (in the movie's timescale).
fn first_edit(body: &[u8]) -> Result<(i64, u64), Mp4Error> {
    let mut r = Reader::new(body, "elst");
    let (version, _) = r.full()?;
    let entry = match version {
        0 => 12,
        1 => 20,
        v => {
            return Err(Mp4Error::Version {
                what: "elst",
                version: v,
            })
        }
    };
    let n = r.count(entry, usize::MAX)?;
    let mut delay = 0u64;
    for _ in 0..n {
        let (duration, media_time) = if version == 1 {
            (r.u64()?, r.u64()? as i64)
        } else {
            (u64::from(r.u32()?), i64::from(r.u32()? as i32))
        };
        r.u32()?;
        if media_time >= 0 {
            return Ok((media_time, delay));
        }
        delay = delay.saturating_add(duration);
    }
    Ok((0, 0))
}

/// The configuration of the first sample entry of `stsd`, or why the
/// track is not kept.
fn sample_entry(stsd: &Atom<'_>, kind: MediaKind) -> Result<Result<CodecConfig, String>, Mp4Error> {
    let mut r = Reader::new(stsd.body, "stsd");
    r.full()?;
    let n = r.u32()?;
    if n == 0 {
        return Err(invalid("stsd", "no sample entry"));
    }
    let base = stsd.body_offset() + 8;
    let Some(entry) = atoms(r.d, base).next().transpose()? else {
        return Err(Mp4Error::Missing("sample entry"));
    };
    let what = "sample entry";
    // SampleEntry: 6 reserved bytes and a data reference index.
    let fixed = match kind {
        // VisualSampleEntry: 16 bytes of pre_defined/reserved, width,
        // height, resolutions, reserved, frame count, compressor name,
        // depth, pre_defined: 70 bytes.
        MediaKind::Video => 8 + 70,
        MediaKind::Audio => {
            // AudioSampleEntry: 20 bytes, 16 and 36 more for the
            // QuickTime sound description versions 1 and 2.
            let mut q = Reader::new(entry.body, what);
            q.bytes(8)?;
            match q.u16()? {
                0 => 28,
                1 => 28 + 16,
                2 => 28 + 36,
                _ => return Ok(Err("unknown sound description version".into())),
            }
        }
    };
    let mut q = Reader::new(entry.body, what);
    q.bytes(fixed)?;
    let cbase = entry.body_offset() + fixed as u64;
    let children = q.d;
    let record = |k: &[u8; 4], name: &'static str| -> Result<Bytes, Mp4Error> {
        let a = require(children, cbase, k, name)?;
        Ok(Bytes::copy_from_slice(a.body))
    };
    let parsed: Result<CodecConfig, String> = match &entry.kind {
        b"avc1" | b"avc3" => avc::parse_decoder_config(record(b"avcC", "avcC")?)
            .map(CodecConfig::Avc)
            .map_err(|e| e.to_string()),
        b"hvc1" | b"hev1" => hevc::parse_decoder_config(record(b"hvcC", "hvcC")?)
            .map(CodecConfig::Hevc)
            .map_err(|e| e.to_string()),
        b"av01" => av1::parse_codec_config(record(b"av1C", "av1C")?)
            .map(CodecConfig::Av1)
            .map_err(|e| e.to_string()),
        b"mp4a" => match esds_asc(&require(children, cbase, b"esds", "esds")?)? {
            Ok(asc) => aac::parse_audio_specific_config(asc)
                .map(CodecConfig::Aac)
                .map_err(|e| e.to_string()),
            Err(why) => Err(why),
        },
        b"Opus" => opus::parse_dops(&record(b"dOps", "dOps")?)
            .map_err(|e| e.to_string())
            .and_then(|head| {
                let record = opus_head(&head);
                opus::parse_opus_head(&record)
                    .map(|head| {
                        CodecConfig::Opus(OpusRecord {
                            record: Bytes::from(record),
                            head,
                        })
                    })
                    .map_err(|e| e.to_string())
            }),
        other => Err(format!("sample entry '{}' is not read", fourcc(*other))),
    };
    Ok(parsed)
}

/// The `OpusHead` packet (RFC 7845 5.1) a `dOps` stands for: the record
/// castgate's Opus configuration carries.
fn opus_head(head: &opus::OpusHead) -> Vec<u8> {
    let mut r = b"OpusHead".to_vec();
    r.extend_from_slice(&[1, head.channels]);
    r.extend_from_slice(&head.pre_skip.to_le_bytes());
    r.extend_from_slice(&head.input_sample_rate.to_le_bytes());
    r.extend_from_slice(&head.output_gain.to_le_bytes());
    r.push(head.mapping_family);
    if let Some(m) = &head.mapping {
        r.extend_from_slice(&[m.streams, m.coupled_streams]);
        r.extend_from_slice(&m.table);
    }
    r
}

/// The AudioSpecificConfig in an `esds` (ISO/IEC 14496-1 descriptors:
/// ES_Descriptor, DecoderConfigDescriptor, DecoderSpecificInfo).
fn esds_asc(esds: &Atom<'_>) -> Result<Result<Bytes, String>, Mp4Error> {
    let mut r = Reader::new(esds.body, "esds");
    r.full()?;
    let es = descriptor(&mut r, 0x03)?;
    let mut r = Reader::new(es, "ES_Descriptor");
    r.u16()?;
    let flags = r.u8()?;
    if flags & 0x80 != 0 {
        r.u16()?;
    }
    if flags & 0x40 != 0 {
        let n = r.u8()?;
        r.bytes(usize::from(n))?;
    }
    if flags & 0x20 != 0 {
        r.u16()?;
    }
    let dc = descriptor(&mut r, 0x04)?;
    let mut r = Reader::new(dc, "DecoderConfigDescriptor");
    let object_type = r.u8()?;
    // 0x40 MPEG-4 audio; 0x66 to 0x68 the MPEG-2 AAC profiles.
    if !matches!(object_type, 0x40 | 0x66..=0x68) {
        return Ok(Err(format!(
            "esds object type 0x{object_type:02x} is not AAC"
        )));
    }
    r.bytes(12)?;
    let dsi = descriptor(&mut r, 0x05)?;
    Ok(Ok(Bytes::copy_from_slice(dsi)))
}

/// The body of the next descriptor, which must have `tag`.
fn descriptor<'a>(r: &mut Reader<'a>, tag: u8) -> Result<&'a [u8], Mp4Error> {
    if r.u8()? != tag {
        return Err(invalid("esds", "descriptors not in the expected order"));
    }
    let mut len = 0usize;
    for _ in 0..4 {
        let b = r.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return r.bytes(len);
        }
    }
    Err(invalid("esds", "descriptor length longer than 4 bytes"))
}

/// Run-length tables of `stbl`, read as iterators over their entries.
fn sample_table(
    stbl: &Atom<'_>,
    track: &mut Mp4Track,
    file_len: u64,
    limits: Limits,
) -> Result<(), Mp4Error> {
    let base = stbl.body_offset();
    let max = limits.max_samples;
    // Sizes.
    let sizes = if let Some(a) = child(stbl.body, base, b"stsz")? {
        let mut r = Reader::new(a.body, "stsz");
        r.full()?;
        let constant = r.u32()?;
        if constant != 0 {
            let n = r.u32()?;
            if n as usize > max {
                return Err(Mp4Error::TooMany {
                    what: "stsz",
                    count: u64::from(n),
                    max: max as u64,
                });
            }
            Sizes::Constant(constant, n as usize)
        } else {
            let n = r.count(4, max)?;
            Sizes::Table {
                d: r.d,
                bits: 32,
                n,
            }
        }
    } else if let Some(a) = child(stbl.body, base, b"stz2")? {
        let mut r = Reader::new(a.body, "stz2");
        r.full()?;
        r.bytes(3)?;
        let bits = r.u8()?;
        if !matches!(bits, 4 | 8 | 16) {
            return Err(invalid("stz2", "field size is not 4, 8 or 16"));
        }
        let n = r.u32()? as usize;
        if n > max {
            return Err(Mp4Error::TooMany {
                what: "stz2",
                count: n as u64,
                max: max as u64,
            });
        }
        let need = (n as u64 * u64::from(bits)).div_ceil(8);
        if need > r.d.len() as u64 {
            return Err(Mp4Error::Truncated {
                what: "stz2",
                need,
                have: r.d.len() as u64,
            });
        }
        Sizes::Table {
            d: r.d,
            bits: u32::from(bits),
            n,
        }
    } else {
        return Err(Mp4Error::Missing("stsz"));
    };
    let count = sizes.len();
    if count == 0 {
        return Ok(());
    }
    // Decode durations.
    let stts = require(stbl.body, base, b"stts", "stts")?;
    let mut r = Reader::new(stts.body, "stts");
    r.full()?;
    let n = r.count(8, usize::MAX)?;
    let stts = r.d.get(..n * 8).unwrap_or_default();
    // Composition offsets.
    let ctts = match child(stbl.body, base, b"ctts")? {
        Some(a) => {
            let mut r = Reader::new(a.body, "ctts");
            r.full()?;
            let n = r.count(8, usize::MAX)?;
            Some(r.d.get(..n * 8).unwrap_or_default())
        }
        None => None,
    };
    // Sync samples.
    let stss = match child(stbl.body, base, b"stss")? {
        Some(a) => {
            let mut r = Reader::new(a.body, "stss");
            r.full()?;
            let n = r.count(4, usize::MAX)?;
            Some(r.d.get(..n * 4).unwrap_or_default())
        }
        None => None,
    };
    // Chunks.
    let (chunks, chunk_bytes) = if let Some(a) = child(stbl.body, base, b"stco")? {
        let mut r = Reader::new(a.body, "stco");
        r.full()?;
        let n = r.count(4, usize::MAX)?;
        (r.d.get(..n * 4).unwrap_or_default(), 4)
    } else if let Some(a) = child(stbl.body, base, b"co64")? {
        let mut r = Reader::new(a.body, "co64");
        r.full()?;
        let n = r.count(8, usize::MAX)?;
        (r.d.get(..n * 8).unwrap_or_default(), 8)
    } else {
        return Err(Mp4Error::Missing("stco"));
    };
    let chunk_count = chunks.len() / chunk_bytes;
    let stsc = require(stbl.body, base, b"stsc", "stsc")?;
    let mut r = Reader::new(stsc.body, "stsc");
    r.full()?;
    let n = r.count(12, usize::MAX)?;
    let stsc = r.d.get(..n * 12).unwrap_or_default();
    let be32 = |d: &[u8], i: usize| -> u32 {
        d.get(i..i + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };

    // A count is not a promise of samples (one constant size can claim
    // millions in a few bytes): reserve a bounded amount, grow as they
    // prove to lie within the file.
    track.samples.reserve(count.min(RESERVE));
    let mut stts_i = 0usize;
    let mut stts_left = 0u32;
    let mut delta = 0u32;
    let mut ctts_i = 0usize;
    let mut ctts_left = 0u32;
    let mut offset_cts = 0i32;
    let mut stss_i = 0usize;
    let mut stsc_i = 0usize;
    let mut dts = 0u64;
    let mut sample = 0usize;
    for chunk in 0..chunk_count {
        if sample == count {
            break;
        }
        // The stsc entry covering this chunk (first_chunk is 1-based).
        while stsc_i + 1 < n && (be32(stsc, (stsc_i + 1) * 12) as usize) <= chunk + 1 {
            stsc_i += 1;
        }
        if n == 0 || (be32(stsc, stsc_i * 12) as usize) > chunk + 1 {
            return Err(invalid("stsc", "chunk not covered by any entry"));
        }
        let per_chunk = be32(stsc, stsc_i * 12 + 4) as usize;
        let mut pos = if chunk_bytes == 4 {
            u64::from(be32(chunks, chunk * 4))
        } else {
            (u64::from(be32(chunks, chunk * 8)) << 32) | u64::from(be32(chunks, chunk * 8 + 4))
        };
        for _ in 0..per_chunk {
            if sample == count {
                break;
            }
            let size = sizes.get(sample);
            let end = pos.checked_add(u64::from(size));
            if end.is_none_or(|e| e > file_len) {
                return Err(Mp4Error::SampleOutsideFile {
                    track: track.track_id,
                    sample,
                    offset: pos,
                    size,
                    len: file_len,
                });
            }
            while stts_left == 0 {
                if stts_i * 8 >= stts.len() {
                    return Err(invalid("stts", "fewer durations than samples"));
                }
                stts_left = be32(stts, stts_i * 8);
                delta = be32(stts, stts_i * 8 + 4);
                stts_i += 1;
            }
            stts_left -= 1;
            let mut cts = 0;
            if let Some(ctts) = ctts {
                while ctts_left == 0 && ctts_i * 8 < ctts.len() {
                    ctts_left = be32(ctts, ctts_i * 8);
                    offset_cts = be32(ctts, ctts_i * 8 + 4) as i32;
                    ctts_i += 1;
                }
                if ctts_left > 0 {
                    ctts_left -= 1;
                    cts = offset_cts;
                }
            }
            let keyframe = match stss {
                None => true,
                Some(stss) => {
                    while stss_i * 4 < stss.len() && (be32(stss, stss_i * 4) as usize) < sample + 1
                    {
                        stss_i += 1;
                    }
                    stss_i * 4 < stss.len() && be32(stss, stss_i * 4) as usize == sample + 1
                }
            };
            push_sample(track, dts, delta, cts, keyframe, pos, size);
            dts = dts
                .checked_add(u64::from(delta))
                .ok_or(invalid("stts", "decode time overflows"))?;
            pos = end.unwrap_or(pos);
            sample += 1;
        }
    }
    if sample < count {
        return Err(invalid("stco", "fewer chunks than the samples need"));
    }
    Ok(())
}

fn push_sample(
    track: &mut Mp4Track,
    dts: u64,
    duration: u32,
    cts: i32,
    keyframe: bool,
    offset: u64,
    size: u32,
) {
    let t = i64::try_from(dts).unwrap_or(i64::MAX);
    let start = t.saturating_sub(track.media_start);
    let dts_ms = track.ticks_to_ms(start);
    let pts_ms = track.ticks_to_ms(start.saturating_add(i64::from(cts)));
    let cts_ms = pts_ms
        .saturating_sub(dts_ms)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    track.samples.push(Sample {
        dts,
        cts,
        duration,
        dts_ms,
        cts_ms,
        keyframe,
        offset,
        size,
    });
}

/// Sample sizes: one for all, or a table of 4-, 8-, 16- or 32-bit fields.
enum Sizes<'a> {
    Constant(u32, usize),
    Table { d: &'a [u8], bits: u32, n: usize },
}

impl Sizes<'_> {
    fn len(&self) -> usize {
        match self {
            Sizes::Constant(_, n) => *n,
            Sizes::Table { n, .. } => *n,
        }
    }

    /// The size of sample `i` (< `len()`, whose fields were checked to be
    /// there; 0 otherwise).
    fn get(&self, i: usize) -> u32 {
        match *self {
            Sizes::Constant(s, _) => s,
            Sizes::Table { d, bits, .. } => match bits {
                4 => d.get(i / 2).map_or(0, |b| {
                    u32::from(if i.is_multiple_of(2) {
                        b >> 4
                    } else {
                        b & 0x0f
                    })
                }),
                8 => d.get(i).map_or(0, |&b| u32::from(b)),
                16 => d
                    .get(i * 2..i * 2 + 2)
                    .map_or(0, |b| u32::from(u16::from_be_bytes([b[0], b[1]]))),
                _ => d
                    .get(i * 4..i * 4 + 4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Fragments

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DURATION: u32 = 0x08;
const TFHD_SIZE: u32 = 0x10;
const TFHD_FLAGS: u32 = 0x20;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTS: u32 = 0x800;
/// `sample_is_non_sync_sample` in sample flags.
const NON_SYNC: u32 = 0x0001_0000;

fn parse_moof(
    moof: &Atom<'_>,
    file_len: u64,
    limits: Limits,
    video: &mut Option<Building>,
    audio: &mut Option<Building>,
) -> Result<(), Mp4Error> {
    // Without a base data offset nor default-base-is-moof, the first
    // traf's base is the moof, the next ones' the end of the previous
    // traf's data (ISO/IEC 14496-12 8.8.7.1).
    let mut previous_end = moof.offset;
    for traf in atoms(moof.body, moof.body_offset()) {
        let traf = traf?;
        if &traf.kind != b"traf" {
            continue;
        }
        let tbase = traf.body_offset();
        let tfhd = require(traf.body, tbase, b"tfhd", "tfhd")?;
        let mut r = Reader::new(tfhd.body, "tfhd");
        let (_, flags) = r.full()?;
        let track_id = r.u32()?;
        let Some(b) = [&mut *video, &mut *audio]
            .into_iter()
            .flatten()
            .find(|b| b.track.track_id == track_id)
        else {
            continue;
        };
        let data_base = if flags & TFHD_BASE_DATA_OFFSET != 0 {
            r.u64()?
        } else if flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 {
            moof.offset
        } else {
            previous_end
        };
        if flags & TFHD_DESCRIPTION_INDEX != 0 {
            r.u32()?;
        }
        let mut d = b.defaults;
        if flags & TFHD_DURATION != 0 {
            d.duration = r.u32()?;
        }
        if flags & TFHD_SIZE != 0 {
            d.size = r.u32()?;
        }
        if flags & TFHD_FLAGS != 0 {
            d.flags = r.u32()?;
        }
        if let Some(tfdt) = child(traf.body, tbase, b"tfdt")? {
            let mut r = Reader::new(tfdt.body, "tfdt");
            let (version, _) = r.full()?;
            b.next_dts = if version == 1 {
                r.u64()?
            } else {
                u64::from(r.u32()?)
            };
        }
        let mut first_trun = true;
        for trun in atoms(traf.body, tbase) {
            let trun = trun?;
            if &trun.kind != b"trun" {
                continue;
            }
            let mut r = Reader::new(trun.body, "trun");
            let (_, flags) = r.full()?;
            let entry = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS]
                .iter()
                .filter(|&&f| flags & f != 0)
                .count()
                * 4;
            let optional = if flags & TRUN_DATA_OFFSET != 0 { 4 } else { 0 }
                + if flags & TRUN_FIRST_FLAGS != 0 { 4 } else { 0 };
            let n = r.u32()? as usize;
            let room = limits.max_samples.saturating_sub(b.track.samples.len());
            if n > room {
                return Err(Mp4Error::TooMany {
                    what: "trun",
                    count: n as u64,
                    max: room as u64,
                });
            }
            if n.saturating_mul(entry).saturating_add(optional) > r.d.len() {
                return Err(Mp4Error::Truncated {
                    what: "trun",
                    need: (n * entry + optional) as u64,
                    have: r.d.len() as u64,
                });
            }
            let mut pos = if flags & TRUN_DATA_OFFSET != 0 {
                let off = i64::from(r.u32()? as i32);
                data_base
                    .checked_add_signed(off)
                    .ok_or(invalid("trun", "data offset before the file"))?
            } else if first_trun {
                data_base
            } else {
                // Right after the previous trun's data.
                previous_end
            };
            first_trun = false;
            let first_flags = if flags & TRUN_FIRST_FLAGS != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            b.track.samples.reserve(n.min(RESERVE));
            for i in 0..n {
                let duration = if flags & TRUN_DURATION != 0 {
                    r.u32()?
                } else {
                    d.duration
                };
                let size = if flags & TRUN_SIZE != 0 {
                    r.u32()?
                } else {
                    d.size
                };
                let mut sample_flags = if flags & TRUN_FLAGS != 0 {
                    r.u32()?
                } else {
                    d.flags
                };
                if i == 0 {
                    if let Some(f) = first_flags {
                        sample_flags = f;
                    }
                }
                let cts = if flags & TRUN_CTS != 0 {
                    // Signed in version 1; version 0's unsigned values
                    // are read the same way, as FFmpeg does.
                    r.u32()? as i32
                } else {
                    0
                };
                let end = pos.checked_add(u64::from(size));
                if end.is_none_or(|e| e > file_len) {
                    return Err(Mp4Error::SampleOutsideFile {
                        track: track_id,
                        sample: b.track.samples.len(),
                        offset: pos,
                        size,
                        len: file_len,
                    });
                }
                let keyframe = b.track.kind() == MediaKind::Audio || sample_flags & NON_SYNC == 0;
                let dts = b.next_dts;
                push_sample(&mut b.track, dts, duration, cts, keyframe, pos, size);
                b.next_dts = dts
                    .checked_add(u64::from(duration))
                    .ok_or(invalid("trun", "decode time overflows"))?;
                pos = end.unwrap_or(pos);
            }
            previous_end = pos;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut b = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
        b.extend_from_slice(body);
        bx(kind, &b)
    }

    fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    /// An AAC-LC 48 kHz stereo `mp4a` sample entry.
    fn mp4a() -> Vec<u8> {
        let asc = [0x11, 0x90];
        let mut dsi = vec![0x05, asc.len() as u8];
        dsi.extend_from_slice(&asc);
        let mut dcd = vec![0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dcd.extend_from_slice(&dsi);
        let mut es = vec![0, 1, 0, 0x04, dcd.len() as u8];
        es.extend_from_slice(&dcd);
        let mut d = vec![0x03, es.len() as u8];
        d.extend_from_slice(&es);
        let esds = full(b"esds", 0, 0, &d);
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1]; // reserved, data ref index
        body.extend_from_slice(&[0; 8]); // version, revision, vendor
        body.extend_from_slice(&[0, 2, 0, 16, 0, 0, 0, 0]); // channels, size
        body.extend_from_slice(&(48_000u32 << 16).to_be_bytes());
        body.extend_from_slice(&esds);
        bx(b"mp4a", &body)
    }

    /// A `trak` of one audio track with the given `stbl` tables.
    fn trak(track_id: u32, tables: &[Vec<u8>]) -> Vec<u8> {
        let mut tkhd = vec![0; 8];
        tkhd.extend_from_slice(&track_id.to_be_bytes());
        tkhd.extend_from_slice(&[0; 68]);
        let mdhd = full(b"mdhd", 0, 0, &words(&[0, 0, 48_000, 0, 0]));
        let hdlr = full(
            b"hdlr",
            0,
            0,
            &cat(&[words(&[0]), b"soun".to_vec(), vec![0; 13]]),
        );
        let stsd = full(b"stsd", 0, 0, &cat(&[words(&[1]), mp4a()]));
        let stbl = bx(b"stbl", &cat(&[vec![stsd], tables.to_vec()].concat()));
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &cat(&[mdhd, hdlr, minf]));
        bx(b"trak", &cat(&[full(b"tkhd", 0, 3, &tkhd), mdia]))
    }

    /// A progressive file: moov first, then three samples of 10, 20 and
    /// 30 bytes in two chunks.
    fn progressive() -> Vec<u8> {
        progressive_with(|mdat_at| {
            vec![
                full(b"stts", 0, 0, &words(&[1, 3, 1024])),
                full(b"stsc", 0, 0, &words(&[2, 1, 2, 1, 2, 1, 1])),
                full(b"stsz", 0, 0, &words(&[0, 3, 10, 20, 30])),
                full(b"stco", 0, 0, &words(&[2, mdat_at + 8, mdat_at + 38])),
            ]
        })
    }

    /// A progressive file with the `stbl` tables `tables` makes of the
    /// `mdat`'s file offset (its 60 bytes are 0, 1, 2…).
    fn progressive_with(tables: impl Fn(u32) -> Vec<Vec<u8>>) -> Vec<u8> {
        let build = |mdat_at: u32| {
            let tables = tables(mdat_at);
            let ftyp = bx(b"ftyp", b"isom\0\0\0\0isom");
            let moov = bx(b"moov", &trak(1, &tables));
            (ftyp, moov)
        };
        let (ftyp, moov) = build(0);
        let at = (ftyp.len() + moov.len()) as u32;
        let (ftyp, moov) = build(at);
        let mdat = bx(b"mdat", &(0..60).collect::<Vec<u8>>());
        cat(&[ftyp, moov, mdat])
    }

    #[test]
    fn reads_a_progressive_file() {
        let data = progressive();
        let f = Mp4File::parse(&data).unwrap();
        assert_eq!(f.major_brand, Some(*b"isom"));
        assert!(!f.fragmented && f.video.is_none());
        let a = f.audio.as_ref().unwrap();
        assert_eq!((a.track_id, a.timescale), (1, 48_000));
        assert_eq!(a.config.codec(), crate::media::Codec::Aac);
        assert_eq!(a.config.audio_format(), (48_000, 2));
        let mdat = data.len() as u64 - 60;
        let got: Vec<_> = a
            .samples
            .iter()
            .map(|s| (s.dts, s.dts_ms, s.offset, s.size, s.keyframe))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, mdat, 10, true),
                (1024, 21, mdat + 10, 20, true),
                (2048, 42, mdat + 30, 30, true),
            ]
        );
        assert_eq!(a.duration(), 3072);
        let file = Bytes::from(data);
        let frames: Vec<_> = f.frames(&file).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[1].data[..], &(10..30).collect::<Vec<u8>>()[..]);
        assert_eq!(frames[2].dts, 42);
    }

    #[test]
    fn reads_co64_stz2_ctts_and_stss() {
        let data = progressive_with(|at| {
            vec![
                full(b"stts", 0, 0, &words(&[2, 1, 1000, 2, 500])),
                full(b"ctts", 1, 0, &words(&[2, 1, 1000, 2, (-500i32) as u32])),
                full(b"stss", 0, 0, &words(&[1, 3])),
                full(b"stsc", 0, 0, &words(&[2, 1, 2, 1, 2, 1, 1])),
                full(b"stz2", 0, 0, &[0, 0, 0, 8, 0, 0, 0, 3, 10, 20, 30, 0]),
                full(b"co64", 0, 0, &words(&[2, 0, at + 8, 0, at + 38])),
            ]
        });
        let f = Mp4File::parse(&data).unwrap();
        let a = f.audio.unwrap();
        let mdat = data.len() as u64 - 60;
        let got: Vec<_> = a
            .samples
            .iter()
            .map(|s| {
                (
                    s.dts, s.duration, s.cts, s.cts_ms, s.keyframe, s.offset, s.size,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, 1000, 1000, 20, false, mdat, 10),
                (1000, 500, -500, -10, false, mdat + 10, 20),
                (1500, 500, -500, -11, true, mdat + 30, 30),
            ]
        );
        // 4-bit sizes, two to a byte.
        let data = progressive_with(|at| {
            vec![
                full(b"stts", 0, 0, &words(&[1, 3, 1024])),
                full(b"stsc", 0, 0, &words(&[1, 1, 3, 1])),
                full(b"stz2", 0, 0, &[0, 0, 0, 4, 0, 0, 0, 3, 0x1f, 0x20]),
                full(b"stco", 0, 0, &words(&[1, at + 8])),
            ]
        });
        let sizes: Vec<_> = Mp4File::parse(&data)
            .unwrap()
            .audio
            .unwrap()
            .samples
            .iter()
            .map(|s| s.size)
            .collect();
        assert_eq!(sizes, [1, 15, 2]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let data = progressive();
        for n in 0..data.len() {
            assert!(Mp4File::parse(&data[..n]).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn every_byte_corrupted_is_no_panic() {
        for data in [progressive(), fragmented()] {
            for i in 0..data.len() {
                for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut d = data.clone();
                    d[i] = v;
                    if let Ok(f) = Mp4File::parse(&d) {
                        let file = Bytes::from(d);
                        for t in f.tracks() {
                            for s in &t.samples {
                                assert!(s.offset + u64::from(s.size) <= file.len() as u64);
                            }
                        }
                        let _ = f.frames(&file).count();
                    }
                }
            }
        }
    }

    #[test]
    fn box_sizes_are_checked() {
        // Past the end.
        let mut data = bx(b"moov", &[0; 8]);
        data[3] = 40;
        assert!(matches!(
            Mp4File::parse(&data),
            Err(Mp4Error::BoxPastEnd {
                size: 40,
                left: 16,
                ..
            })
        ));
        // Smaller than its header.
        let data = [0, 0, 0, 4, b'f', b't', b'y', b'p'];
        assert!(matches!(
            Mp4File::parse(&data),
            Err(Mp4Error::BoxTooSmall { size: 4, .. })
        ));
        // A 64-bit size smaller than its 16-byte header; one cut short.
        let mut data = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        data.extend_from_slice(&15u64.to_be_bytes());
        assert!(matches!(
            Mp4File::parse(&data),
            Err(Mp4Error::BoxTooSmall { size: 15, .. })
        ));
        assert!(matches!(
            Mp4File::parse(&data[..12]),
            Err(Mp4Error::Truncated { .. })
        ));
        // A 64-bit size far past the end.
        let mut data = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        data.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            Mp4File::parse(&data),
            Err(Mp4Error::BoxPastEnd { .. })
        ));
        // No moov at all.
        assert_eq!(
            Mp4File::parse(&bx(b"free", &[])),
            Err(Mp4Error::Missing("moov"))
        );
        assert_eq!(Mp4File::parse(&[]), Err(Mp4Error::Missing("moov")));
    }

    #[test]
    fn sizes_to_the_end_and_64_bit_sizes_read() {
        let data = progressive();
        let mdat = data.len() - 68;
        // mdat's size 0: to the end of the file.
        let mut zero = data.clone();
        zero[mdat..mdat + 4].copy_from_slice(&[0; 4]);
        assert_eq!(Mp4File::parse(&zero), Mp4File::parse(&data));
        // mdat with a 64-bit size: the samples move 8 bytes on, and so
        // do the chunk offsets.
        let mut large = data[..mdat].to_vec();
        large.extend_from_slice(&[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        large.extend_from_slice(&(16u64 + 60).to_be_bytes());
        large.extend_from_slice(&data[mdat + 8..]);
        let f = Mp4File::parse(&large).unwrap();
        let s = f.audio.unwrap().samples;
        assert_eq!(s[0].offset, mdat as u64 + 8);
    }

    #[test]
    fn huge_counts_are_errors_before_allocating() {
        let limits = Limits { max_samples: 1000 };
        let file =
            |tables: Vec<Vec<u8>>| cat(&[bx(b"moov", &trak(1, &tables)), bx(b"mdat", &[0; 64])]);
        let ok = |stsz: Vec<u8>| {
            vec![
                full(b"stts", 0, 0, &words(&[1, u32::MAX, 1024])),
                full(b"stsc", 0, 0, &words(&[1, 1, u32::MAX, 1])),
                stsz,
                full(b"stco", 0, 0, &words(&[1, 8])),
            ]
        };
        // A table of 4 billion sizes in a few bytes.
        let f = file(ok(full(b"stsz", 0, 0, &words(&[0, u32::MAX, 1]))));
        assert!(matches!(
            Mp4File::parse_with(&f, limits),
            Err(Mp4Error::TooMany { what: "stsz", .. })
        ));
        assert!(matches!(
            Mp4File::parse(&f),
            Err(Mp4Error::TooMany { what: "stsz", .. })
        ));
        let f = file(ok(full(b"stsz", 0, 0, &words(&[0, 999, 1]))));
        assert!(matches!(
            Mp4File::parse_with(&f, limits),
            Err(Mp4Error::Truncated { what: "stsz", .. })
        ));
        // One size for 4 billion samples.
        let f = file(ok(full(b"stsz", 0, 0, &words(&[1, u32::MAX]))));
        assert!(matches!(
            Mp4File::parse(&f),
            Err(Mp4Error::TooMany { what: "stsz", .. })
        ));
        // Within the cap, but the samples run past the file.
        let f = file(ok(full(b"stsz", 0, 0, &words(&[1, 1000]))));
        assert!(matches!(
            Mp4File::parse_with(&f, limits),
            Err(Mp4Error::SampleOutsideFile { size: 1, .. })
        ));
        // Tables whose counts outrun their boxes.
        for (kind, size) in [(b"stts", 8), (b"stsc", 12), (b"stco", 4), (b"ctts", 8)] {
            let mut tables = ok(full(b"stsz", 0, 0, &words(&[1, 4])));
            tables.retain(|t| &t[4..8] != kind);
            tables.push(full(kind, 0, 0, &words(&[u32::MAX, 1, 2, 3])));
            let err = Mp4File::parse(&file(tables)).unwrap_err();
            assert!(
                matches!(err, Mp4Error::Truncated { need, .. } if need == u64::from(u32::MAX) * size),
                "{err}"
            );
        }
        // stts covering fewer samples than stsz lists.
        let mut tables = ok(full(b"stsz", 0, 0, &words(&[1, 4])));
        tables[0] = full(b"stts", 0, 0, &words(&[1, 2, 1024]));
        assert!(matches!(
            Mp4File::parse(&file(tables)),
            Err(Mp4Error::Invalid { what: "stts", .. })
        ));
    }

    /// A fragmented file: an empty moov with trex, then two fragments of
    /// two samples each (default-base-is-moof, data offsets from the moof).
    fn fragmented() -> Vec<u8> {
        let empty = vec![
            full(b"stts", 0, 0, &words(&[0])),
            full(b"stsc", 0, 0, &words(&[0])),
            full(b"stsz", 0, 0, &words(&[0, 0])),
            full(b"stco", 0, 0, &words(&[0])),
        ];
        let trex = full(b"trex", 0, 0, &words(&[1, 1, 1024, 0, 0]));
        let moov = bx(b"moov", &cat(&[trak(1, &empty), bx(b"mvex", &trex)]));
        let mut out = cat(&[bx(b"ftyp", b"iso6\0\0\0\0iso6"), moov]);
        for (n, dts) in [(0u32, 0u32), (1, 2048)] {
            let moof = |data_offset: u32| {
                let tfhd = full(
                    b"tfhd",
                    0,
                    TFHD_DEFAULT_BASE_IS_MOOF | TFHD_SIZE,
                    &words(&[1, 5]),
                );
                let tfdt = full(b"tfdt", 0, 0, &words(&[dts]));
                let trun = full(
                    b"trun",
                    0,
                    TRUN_DATA_OFFSET | TRUN_SIZE,
                    &words(&[2, data_offset, 5 + n, 7]),
                );
                let traf = bx(b"traf", &cat(&[tfhd, tfdt, trun]));
                bx(
                    b"moof",
                    &cat(&[full(b"mfhd", 0, 0, &words(&[n + 1])), traf]),
                )
            };
            let len = moof(0).len() as u32;
            out.extend_from_slice(&moof(len + 8));
            out.extend_from_slice(&bx(b"mdat", &[n as u8; 16]));
        }
        out
    }

    #[test]
    fn reads_a_fragmented_file() {
        let data = fragmented();
        let f = Mp4File::parse(&data).unwrap();
        assert!(f.fragmented);
        let a = f.audio.as_ref().unwrap();
        let got: Vec<_> = a
            .samples
            .iter()
            .map(|s| (s.dts, s.size, s.duration))
            .collect();
        assert_eq!(
            got,
            [
                (0, 5, 1024),
                (1024, 7, 1024),
                (2048, 6, 1024),
                (3072, 7, 1024)
            ]
        );
        let file = Bytes::from(data);
        let frames: Vec<_> = f.frames(&file).collect();
        assert_eq!(frames.len(), 4);
        assert!(frames[..2].iter().all(|f| f.data.iter().all(|&b| b == 0)));
        assert!(frames[2..].iter().all(|f| f.data.iter().all(|&b| b == 1)));
        assert_eq!(frames[3].dts, 64);
    }

    #[test]
    fn huge_fragment_counts_are_errors() {
        let data = fragmented();
        let at = data.windows(4).position(|w| w == b"trun").unwrap();
        // The sample count.
        let mut d = data.clone();
        d[at + 8..at + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Mp4File::parse(&d),
            Err(Mp4Error::TooMany { what: "trun", .. })
        ));
        d[at + 8..at + 12].copy_from_slice(&100u32.to_be_bytes());
        assert!(matches!(
            Mp4File::parse(&d),
            Err(Mp4Error::Truncated { what: "trun", .. })
        ));
        // A data offset before the file; one past its end.
        let mut d = data.clone();
        d[at + 12..at + 16].copy_from_slice(&(-100_000i32).to_be_bytes());
        assert!(Mp4File::parse(&d).is_err());
        let mut d = data;
        d[at + 12..at + 16].copy_from_slice(&100_000i32.to_be_bytes());
        assert!(matches!(
            Mp4File::parse(&d),
            Err(Mp4Error::SampleOutsideFile { .. })
        ));
    }

    #[test]
    fn unreadable_tracks_are_named() {
        let data = progressive();
        let at = data.windows(4).position(|w| w == b"mp4a").unwrap();
        let mut d = data.clone();
        d[at..at + 4].copy_from_slice(b"mp4v");
        let err = Mp4File::parse(&d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no H.264, HEVC or AV1 video track and no AAC or Opus audio track \
             (track 1: sample entry 'mp4v' is not read)"
        );
        let at = data.windows(4).position(|w| w == b"soun").unwrap();
        let mut d = data;
        d[at..at + 4].copy_from_slice(b"text");
        assert!(Mp4File::parse(&d)
            .unwrap_err()
            .to_string()
            .contains("handler 'text' is neither video nor audio"));
    }
}
