//! A publisher's media messages through the FLV tag reader
//! ([`Ingest::media`]) and the CMAF packager ([`StreamSegmenter`]), with the
//! HLS playlists and the DASH MPD rendered from the result.
//!
//! Input: one setup byte (segmenter settings), then records:
//!
//! ```text
//! flags  u8   bit 0     audio (else video)
//!             bit 1     the publisher reconnects first: PublisherStopped,
//!                       a fresh Ingest (a new connection), PublisherStarted
//!             bits 2-3  width of `step`: 0, 1, 2 or 4 bytes
//!             bits 4-7  the tag is sent 1 + n times
//! step   u8/u16/u32 BE, added (wrapping) to the RTMP timestamp before each send
//! len    u16 BE
//! body   len bytes (fewer if the input ends first)
//! ```

use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use mp4_atom::{Atom, Avcc, Decode, Ftyp, Moof, Moov};

use crate::hub::StreamEvent;
use crate::media::flv::Ingest;
use crate::media::{CodecConfig, MediaKind};
use crate::package::model::{StreamSnapshot, TrackTimeline};
use crate::package::segmenter::{SegmenterConfig, StreamSegmenter};
use crate::package::urls;
use crate::package::{dash, hls};

/// One record of the `ingest` target's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestRecord<'a> {
    pub audio: bool,
    pub reconnect: bool,
    /// Added to the RTMP timestamp before each send.
    pub step: u32,
    /// Extra sends of the same tag (0..=15).
    pub repeat: u8,
    pub body: &'a [u8],
}

impl<'a> IngestRecord<'a> {
    fn parse(input: &mut &'a [u8]) -> Option<Self> {
        let (&flags, rest) = input.split_first()?;
        let width = [0, 1, 2, 4][usize::from((flags >> 2) & 3)];
        let (step, rest) = rest.split_at_checked(width)?;
        let step = step.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (body, rest) = rest.split_at(len);
        *input = rest;
        Some(IngestRecord {
            audio: flags & 1 == 1,
            reconnect: flags & 2 == 2,
            step,
            repeat: flags >> 4,
            body,
        })
    }
}

/// Appends `record` in the `ingest` input format (for making seeds).
pub fn encode_ingest_record(record: &IngestRecord<'_>, out: &mut Vec<u8>) {
    let (width_code, width) = match record.step {
        0 => (0u8, 0),
        1..=0xFF => (1, 1),
        0x100..=0xFFFF => (2, 2),
        _ => (3, 4),
    };
    out.push(
        u8::from(record.audio)
            | u8::from(record.reconnect) << 1
            | width_code << 2
            | (record.repeat.min(15) << 4),
    );
    out.extend_from_slice(&record.step.to_be_bytes()[4 - width..]);
    let len = record.body.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&record.body[..len]);
}

/// Segmenter settings from the setup byte, within what the config allows.
fn segmenter_config(setup: u8) -> SegmenterConfig {
    let target: f64 = [0.5, 1.0, 2.0, 4.0][usize::from(setup & 3)];
    let part_target = (target / [1.0, 2.0, 4.0, 8.0][usize::from((setup >> 2) & 3)]).max(0.05);
    SegmenterConfig {
        target,
        part_target,
        window: 1 + usize::from((setup >> 4) & 3),
        extra: usize::from(setup >> 6),
        aligned: false,
        low_latency: setup & 0x80 != 0,
    }
}

/// Media messages through ingest and packager. Checked on the way:
/// - ingest: frames are non-empty and their decode times never go back on
///   a track within one connection; a configuration event is a change.
/// - packager (the contract the manifests rely on, see `hls` and `dash`):
///   segment numbers are contiguous within a track (HLS media sequence
///   numbers, DASH `$Number$` in one SegmentTemplate); a segment whose init
///   changes follows a discontinuity; TARGETDURATION covers every segment;
///   segments do not overlap on a track's timeline except after a
///   discontinuity; every video segment starts with a keyframe; every listed
///   segment and init is stored; the stored bytes are the moof/mdat pairs
///   the segment describes (decoded with mp4-atom: tfdt, sample durations,
///   sizes).
/// - the playlists and the MPD render, and list every segment in the window.
pub fn ingest(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let config = segmenter_config(setup);
    let mut seg = StreamSegmenter::with_first_number("live/fuzz", config, 1000);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut ingest = Ingest::new();
    let mut checker = EventChecker::default();
    let mut timestamp = 0u32;
    let mut messages = 0u64;
    seg.push(&StreamEvent::PublisherStarted, base);
    while let Some(record) = IngestRecord::parse(&mut rest) {
        if record.reconnect {
            let now = base + Duration::from_millis(messages * 10);
            seg.push(&StreamEvent::PublisherStopped, now);
            ingest = Ingest::new();
            checker = EventChecker {
                foreign_avcc: checker.foreign_avcc,
                audio_rates: checker.audio_rates,
                ..EventChecker::default()
            };
            seg.push(&StreamEvent::PublisherStarted, now);
        }
        let kind = if record.audio {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let body = Bytes::copy_from_slice(record.body);
        for _ in 0..=record.repeat {
            timestamp = timestamp.wrapping_add(record.step);
            messages += 1;
            let now = base + Duration::from_millis(messages * 10);
            let _ = ingest.media(kind, timestamp, body.clone(), |ev| {
                checker.check(&ev);
                seg.push(&ev, now);
            });
        }
    }
    assert_eq!(ingest.frames, checker.frames, "ingest frame count");
    let checks = Checks {
        foreign_avcc: checker.foreign_avcc,
        rescales: checker.audio_rates.len().saturating_sub(1) as u64,
        min_rate: checker.audio_rates.iter().copied().min().unwrap_or(1),
    };
    check_packager(&seg, &config, checks);
    seg.end(base + Duration::from_millis(messages * 10));
    check_packager(&seg, &config, checks);
}

/// What ingest emitted on the current connection.
#[derive(Default)]
struct EventChecker {
    last_dts: [Option<i64>; 2],
    configs: [Option<CodecConfig>; 2],
    frames: u64,
    /// Some AVC record is one mp4-atom does not read (trailing bytes that
    /// are no High-profile extension, no parameter sets...). It goes into
    /// `avcC` exactly as the publisher sent it, so then the init segment is
    /// not checked with mp4-atom.
    foreign_avcc: bool,
    /// Sample rates the audio track had, in order, each change counted:
    /// held segments are rescaled (rounding down) at every change.
    audio_rates: Vec<u32>,
}

impl EventChecker {
    fn check(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::TrackFrame(id, f) => {
                assert!(*id > 0, "track 0 travels as Frame");
                assert!(!f.data.is_empty(), "empty frame");
            }
            StreamEvent::TrackConfig(id, _) => assert!(*id > 0, "track 0 travels as Config"),
            StreamEvent::Frame(f) => {
                self.frames += 1;
                assert!(!f.data.is_empty(), "empty frame");
                let last = &mut self.last_dts[f.kind() as usize];
                assert!(
                    last.is_none_or(|d| d <= f.dts),
                    "decode time went back on the {:?} track: {last:?} -> {}",
                    f.kind(),
                    f.dts
                );
                *last = Some(f.dts);
            }
            StreamEvent::Config(c) => {
                let slot = &mut self.configs[c.kind() as usize];
                assert_ne!(slot.as_ref(), Some(&**c), "repeated configuration");
                *slot = Some((**c).clone());
                let rate = match &**c {
                    CodecConfig::Aac(a) => Some(a.sample_rate),
                    _ => None,
                };
                if let Some(rate) = rate.filter(|r| self.audio_rates.last() != Some(r)) {
                    self.audio_rates.push(rate);
                }
                if let CodecConfig::Avc(avc) = &**c {
                    let mut record = &avc.record[..];
                    let clean = Avcc::decode_body(&mut record).is_ok() && !record.has_remaining();
                    self.foreign_avcc |= !clean;
                }
            }
            StreamEvent::Metadata(_)
            | StreamEvent::PublisherStarted
            | StreamEvent::PublisherStopped => {}
        }
    }
}

/// What the packager checks skip or add.
#[derive(Clone, Copy)]
struct Checks {
    foreign_avcc: bool,
    /// Audio sample rate changes (each rescales the held segments), and
    /// the lowest rate: how far the rounding can have moved a time.
    rescales: u64,
    min_rate: u32,
}

fn check_packager(seg: &StreamSegmenter, config: &SegmenterConfig, checks: Checks) {
    let snap = seg.snapshot();
    let any = snap.video.is_some() || snap.audio.is_some();
    // A track with an open segment but none finished holds manifests back;
    // once ended, nothing is open.
    if seg.has_segments() || seg.is_ended() {
        assert_eq!(seg.has_segments(), any);
    }
    for (kind, track) in [
        (MediaKind::Video, snap.video.as_ref()),
        (MediaKind::Audio, snap.audio.as_ref()),
    ] {
        let Some(track) = track else {
            continue;
        };
        assert!(!track.segments.is_empty());
        assert!(track.segments.len() <= config.window);
        check_track(seg, &snap, kind, track, checks);
    }
    check_manifests(seg, &snap);
}

fn check_track(
    seg: &StreamSegmenter,
    snap: &StreamSnapshot,
    kind: MediaKind,
    t: &TrackTimeline,
    checks: Checks,
) {
    let timescale = t.info.timescale;
    assert!(timescale > 0);
    for pair in t.segments.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(
            b.number,
            a.number + 1,
            "{kind:?} segment numbers not contiguous"
        );
        if b.init != a.init {
            assert!(
                b.discontinuity,
                "{kind:?} init changed without a discontinuity"
            );
        }
        if !b.discontinuity {
            assert!(
                b.start >= a.start + a.duration,
                "{kind:?} segment {} overlaps its predecessor: {}+{} > {}",
                b.number,
                a.start,
                a.duration,
                b.start
            );
        }
    }
    for s in &t.segments {
        assert!(!s.parts.is_empty(), "segment without parts");
        assert_eq!(s.duration, s.parts.iter().map(|p| p.duration).sum::<u64>());
        let secs = s.duration as f64 / f64::from(timescale);
        assert!(
            secs.round() <= f64::from(snap.target_duration),
            "{kind:?} segment of {secs} s above TARGETDURATION {}",
            snap.target_duration
        );
        if kind == MediaKind::Video {
            assert!(
                s.parts[0].independent,
                "video segment without a keyframe first"
            );
        } else {
            assert!(s.parts.iter().all(|p| p.independent));
        }
        assert!(t.inits.contains(&s.init), "segment's init not listed");
        let init = seg.init(kind, s.init).expect("listed init is stored");
        // The segment's bytes are in its init's timescale, the model in the
        // track's current one; they differ for segments from before a
        // sample rate change, which the packager rescales (floor of each
        // part's end, once per change: after several changes the rounding
        // compounds, so after any change times are checked to within what
        // the roundings can add up to).
        let mut init_timescale = timescale;
        if !(kind == MediaKind::Video && checks.foreign_avcc) {
            let mut b = &init[..];
            Ftyp::decode(&mut b).expect("init: ftyp");
            let moov = Moov::decode(&mut b).expect("init: moov");
            assert!(b.is_empty(), "bytes after moov");
            init_timescale = moov.trak[0].mdia.mdhd.timescale;
        }
        let scale = |ticks: u64| {
            let t = u128::from(ticks) * u128::from(timescale) / u128::from(init_timescale);
            u64::try_from(t).expect("rescaled time fits")
        };
        let same = |bytes: u64, model: u64, what: &str| {
            if !(kind == MediaKind::Audio && checks.rescales > 0) {
                assert_eq!(bytes, model, "{what}");
            } else {
                // Each rescale rounds each boundary down by less than one
                // tick of that timescale (at most 1/min_rate s); a duration
                // has two boundaries.
                let per_rescale = u64::from(timescale).div_ceil(u64::from(checks.min_rate.max(1)));
                let slack = 2 * checks.rescales * per_rescale + 2;
                assert!(
                    bytes.abs_diff(model) <= slack,
                    "{what}: {bytes} vs {model} (rescaled)"
                );
            }
        };

        let chunks = seg
            .segment(kind, s.number)
            .expect("listed segment is stored");
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(bytes.len() as u64, s.bytes, "segment size");
        let mut b = &bytes[..];
        let mut time = None::<u64>;
        let mut elapsed = 0u64;
        for (index, part) in s.parts.iter().enumerate() {
            // A part is one CMAF chunk (moof + mdat), or several in low
            // latency: they are the segment's bytes in order.
            let part_bytes: Vec<u8> = seg
                .part(kind, s.number, index)
                .expect("a finished segment's parts are stored")
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect();
            assert_eq!(
                b.get(..part_bytes.len()),
                Some(&part_bytes[..]),
                "a part is the segment's next bytes"
            );
            b = &b[part_bytes.len()..];
            let mut p = &part_bytes[..];
            let mut part_start = None;
            while !p.is_empty() {
                let moof = Moof::decode(&mut p).expect("segment: moof");
                let traf = &moof.traf[0];
                let tfdt = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
                match time {
                    None => {
                        same(scale(tfdt), s.start, "first tfdt is the segment start");
                        elapsed = tfdt;
                    }
                    Some(t) => assert!(tfdt >= t, "tfdt went back inside a segment"),
                }
                part_start.get_or_insert(scale(elapsed));
                let trun = &traf.trun[0];
                assert!(!trun.samples.is_empty());
                let mut duration = 0u64;
                let mut size = 0u64;
                for e in trun.samples.iter() {
                    duration += u64::from(e.duration.expect("sample duration"));
                    size += u64::from(e.size.expect("sample size"));
                }
                elapsed += duration;
                time = Some(tfdt + duration);
                let (head, rest) = p.split_at_checked(8).expect("mdat header");
                let mdat_size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
                assert_eq!(&head[4..], b"mdat");
                assert_eq!(mdat_size, size + 8, "mdat size");
                p = usize::try_from(size)
                    .ok()
                    .and_then(|n| rest.get(n..))
                    .expect("mdat payload");
            }
            let part_start = part_start.expect("a part holds a chunk");
            same(scale(elapsed) - part_start, part.duration, "part duration");
        }
        assert!(b.is_empty(), "bytes after the last part");
    }
}

fn check_manifests(seg: &StreamSegmenter, snap: &StreamSnapshot) {
    let _ = hls::multivariant(snap);
    for (kind, track) in [
        (MediaKind::Video, snap.video.as_ref()),
        (MediaKind::Audio, snap.audio.as_ref()),
    ] {
        let playlist = hls::media_playlist(snap, kind);
        let Some(track) = track else {
            assert!(playlist.is_none());
            continue;
        };
        let playlist = playlist.expect("a track with segments has a playlist");
        assert_eq!(
            track.discontinuities_before,
            seg.discontinuity_sequence(kind)
        );
        for s in &track.segments {
            let uri = urls::segment(kind, s.number);
            assert!(playlist.contains(&uri), "{uri} not in the playlist");
        }
    }
    let mpd = dash::mpd(snap, &["/time"]);
    assert!(mpd.ends_with("</MPD>\n"));
}
