//! The DASH MPD rendered from a [`StreamSnapshot`]: a pure function, no I/O.
//!
//! A small hand-written writer (DESIGN.md allows it): the document is a fixed
//! shape, and every value that is not ours (codec strings, the time URL) goes
//! through [`attr`] escaping. Every URL comes from [`urls`] and is relative.
//!
//! Timing model: segment times are decode times on each track's media
//! timeline, whose zero is `s.availability_start`. Each Period's
//! `presentationTimeOffset` is the Period's own start expressed in the
//! track's timescale (not the track's first `tfdt`), so audio and video keep
//! their relative offset exactly as ingested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::hls::window;
use super::model::{SegmentInfo, StreamSnapshot, TrackTimeline, VideoRange};
use super::urls;
use crate::media::MediaKind;
use crate::timefmt::rfc3339_millis;

/// Live profile (what dash.js, Shaka and ffmpeg expect) plus CMAF, which the
/// segments are.
pub const PROFILES: &str = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019";

/// The MPD (`manifest.mpd`).
///
/// Live: `type="dynamic"` with availabilityStartTime, publishTime,
/// minimumUpdatePeriod (half the target duration, at least 1 s: a new
/// segment is seen within half a segment without hammering us),
/// timeShiftBufferDepth (the listed window), suggestedPresentationDelay
/// (3 × target duration). Ended: `type="static"` with
/// mediaPresentationDuration, re-based so the first listed segment plays at
/// 0 — a static MPD is what ffmpeg and dash.js handle best, whereas a
/// dynamic MPD "with an end" keeps players polling and ffmpeg's demuxer
/// hammering it.
///
/// `utc_timing` (URLs of castgate's time endpoint, returning an ISO 8601
/// time, in order of preference) each become a `<UTCTiming>`; without one
/// dash.js calls an internet time server. GStreamer's dashdemux uses the
/// first and cannot resolve a relative URL; dash.js tries them in order.
///
/// The XML declaration has no `encoding` (UTF-8 is XML's default):
/// GStreamer 1.22's type detection of an MPD read over HTTP takes
/// `<?xml version="1.0" encoding="UTF-8"?>` for plain XML and plays nothing.
///
/// Periods: a new Period starts at every segment number where a track has
/// `discontinuity == true` (both tracks are split at the same numbers), and,
/// defensively, where a track's init changes without one (a Period can only
/// name one init). Period ids must stay the same across reloads, so they come
/// from the discontinuity count, as HLS's EXT-X-DISCONTINUITY-SEQUENCE does:
/// they count from the segment numbers flagged `discontinuity` that are no
/// longer in the snapshot (the video track's `discontinuities_before`, else
/// the audio's: both tracks are split at the same numbers). A Period whose first
/// segment is held starts at that segment's time (video, else audio); the
/// oldest Period, once that segment is evicted, starts at media time 0 with
/// presentationTimeOffset 0 — its id stays and every segment keeps exactly
/// the same presentation time, only the nominal start moves.
///
/// Contract with the packager: segment numbers are contiguous within a track
/// (`$Number$` addressing), and `s.target_duration` ≥ every segment.
pub fn mpd(s: &StreamSnapshot, utc_timing: &[&str]) -> String {
    mpd_ladder(s, utc_timing, &[])
}

/// How far (90 kHz ticks, half a second) a rendition's segment start may be
/// from the source's and still belong to the same Period: their keyframes
/// are the same pictures, but decode times differ by the encoders' B-frame
/// delays.
const LADDER_SLACK: u64 = 45_000;

/// The MPD of a transcoded stream: [`mpd`] of the source, whose video
/// AdaptationSet also holds one Representation per rendition (`(name,
/// snapshot)`, each its own stream at `NAME/` under the source's URL) with
/// its own SegmentTemplate and SegmentTimeline. Periods are the source's;
/// a rendition lists its segments that start within a Period's time span
/// (and share one init). Segments of all Representations start at the same
/// keyframes (the packager cuts ladders on one grid), hence
/// `segmentAlignment="true"`.
pub fn mpd_ladder(
    s: &StreamSnapshot,
    utc_timing: &[&str],
    renditions: &[(&str, &StreamSnapshot)],
) -> String {
    let mut source = Source::new(s);
    source.utc_timing = utc_timing.first().copied();
    let periods: Vec<_> = periods(&source.boundaries, &source.listed)
        .into_iter()
        .collect();
    let mut out = String::with_capacity(2048);
    write_mpd_start(&mut out, &source);
    if periods.is_empty() {
        // Nothing packaged yet: the schema wants one Period.
        let _ = writeln!(
            out,
            "  <Period id=\"p{}\" start=\"PT0S\"/>",
            source.evicted_discontinuities
        );
    }
    for (i, (key, segs)) in periods.iter().enumerate() {
        let next = periods.get(i + 1).map(|(_, segs)| segs);
        write_period(&mut out, &source, i == 0, *key, segs, next, renditions);
    }
    for url in utc_timing {
        let _ = writeln!(
            out,
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{}\"/>",
            attr(url)
        );
    }
    out.push_str("</MPD>\n");
    out
}

/// The source stream's tracks and what the MPD lists of them.
struct Source<'a> {
    s: &'a StreamSnapshot,
    tracks: Vec<(MediaKind, &'a TrackTimeline)>,
    /// Each track's listed window, in `tracks` order.
    listed: Vec<&'a [SegmentInfo]>,
    boundaries: BTreeMap<u64, Boundary>,
    /// Discontinuities gone from the snapshot: both tracks are split at
    /// the same numbers, so the video's count, else the audio's.
    evicted_discontinuities: u64,
    /// Where presentation time 0 is on the media timeline: media time 0
    /// when live (so availabilityStartTime keeps its meaning), the first
    /// listed segment when static (a VOD view of what is left).
    zero: Time,
    /// The preferred time URL: a ProducerReferenceTime names it, so players
    /// read its `wallClockTime` as an ISO 8601 date (Shaka takes an NTP
    /// count without it).
    utc_timing: Option<&'a str>,
}

impl<'a> Source<'a> {
    fn new(s: &'a StreamSnapshot) -> Self {
        let tracks: Vec<(MediaKind, &TrackTimeline)> = [
            (MediaKind::Video, s.video.as_ref()),
            (MediaKind::Audio, s.audio.as_ref()),
        ]
        .into_iter()
        .filter_map(|(kind, t)| Some((kind, t?)))
        .collect();
        let listed: Vec<&[SegmentInfo]> = tracks
            .iter()
            .map(|(_, t)| window(&t.segments, s.window))
            .collect();
        let first_listed = tracks
            .iter()
            .zip(&listed)
            .find_map(|((_, t), l)| l.first().map(|g| Time::new(g.start, t.info.timescale)));
        let zero = match (s.ended, first_listed) {
            (true, Some(first)) => first,
            _ => Time::new(0, 1),
        };
        Source {
            s,
            boundaries: boundaries(&tracks),
            evicted_discontinuities: tracks.first().map_or(0, |(_, t)| t.discontinuities_before),
            tracks,
            listed,
            zero,
            utc_timing: None,
        }
    }

    /// Each track's listed segments with its timeline.
    fn listed(&self) -> impl Iterator<Item = (&'a TrackTimeline, &'a [SegmentInfo])> + '_ {
        self.tracks
            .iter()
            .map(|(_, t)| *t)
            .zip(self.listed.iter().copied())
    }

    /// Where the last listed segment ends, in ms (the latest track's).
    fn end_ms(&self) -> Option<u64> {
        self.listed()
            .filter_map(|(t, l)| {
                let last = l.last()?;
                Some(Time::new(last.start + last.duration, t.info.timescale).millis())
            })
            .max()
    }

    /// How much time the listed window spans, in ms (the longest track's).
    fn window_ms(&self) -> Option<u64> {
        self.listed()
            .filter_map(|(t, l)| {
                let (first, last) = (l.first()?, l.last()?);
                let span = last.start + last.duration - first.start.min(last.start);
                Some(Time::new(span, t.info.timescale).millis())
            })
            .max()
    }

    /// The id of the Period starting at boundary `key` (`None`: the one
    /// whose start is no longer held).
    fn period_id(&self, key: Option<u64>) -> String {
        let discontinuities = self.evicted_discontinuities
            + key.map_or(0, |b| {
                self.boundaries
                    .range(..=b)
                    .filter(|(_, k)| **k == Boundary::Discontinuity)
                    .count() as u64
            });
        match key.map(|b| (b, self.boundaries.get(&b))) {
            Some((b, Some(Boundary::InitChange))) => format!("p{discontinuities}-{b}"),
            _ => format!("p{discontinuities}"),
        }
    }

    /// The first video segment of a Period's lists, if it has one.
    fn first_video(&self, segs: &'a [Vec<&'a SegmentInfo>]) -> Option<&'a SegmentInfo> {
        self.tracks
            .iter()
            .zip(segs)
            .find(|((kind, _), _)| *kind == MediaKind::Video)
            .and_then(|(_, segs)| segs.first().copied())
    }
}

/// The `<MPD>` start tag: live or static timing, and segment durations.
fn write_mpd_start(out: &mut String, source: &Source<'_>) {
    let (s, zero) = (source.s, source.zero);
    let target_ms = u64::from(s.target_duration) * 1000;
    out.push_str("<?xml version=\"1.0\"?>\n");
    out.push_str(
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"urn:mpeg:dash:schema:mpd:2011 DASH-MPD.xsd\"",
    );
    let _ = write!(out, " profiles=\"{PROFILES}\"");
    if s.ended {
        out.push_str(" type=\"static\"");
        let duration = source.end_ms().unwrap_or(0).saturating_sub(zero.millis());
        let _ = write!(
            out,
            " mediaPresentationDuration=\"{}\"",
            xs_duration(duration)
        );
    } else {
        out.push_str(" type=\"dynamic\"");
        let _ = write!(
            out,
            " availabilityStartTime=\"{}\"",
            rfc3339_millis(s.availability_start)
        );
        // Low latency: a new segment is listed once its first part exists,
        // so players must see it soon after.
        let update = if s.low_latency {
            (target_ms / 4).max(200)
        } else {
            (target_ms / 2).max(1000)
        };
        let _ = write!(out, " minimumUpdatePeriod=\"{}\"", xs_duration(update));
        if let Some(depth) = source.window_ms() {
            let _ = write!(out, " timeShiftBufferDepth=\"{}\"", xs_duration(depth));
        }
        let _ = write!(
            out,
            " suggestedPresentationDelay=\"{}\"",
            xs_duration(3 * target_ms)
        );
    }
    let _ = write!(out, " publishTime=\"{}\"", rfc3339_millis(s.updated));
    let _ = writeln!(
        out,
        " maxSegmentDuration=\"{}\" minBufferTime=\"{}\">",
        xs_duration(target_ms),
        xs_duration(target_ms.max(1000))
    );
    if s.low_latency && !s.ended {
        write_service_description(out, s);
    }
}

/// The latency players should aim at (LL-DASH): four parts behind the
/// producer (0.8 s with 0.2 s parts; a segment is sent frame by frame as it
/// is made, so a player that far behind always has the next frame), with
/// the playback rate bounds a player may use to catch up. `referenceId`
/// names the ProducerReferenceTime every AdaptationSet carries.
fn write_service_description(out: &mut String, s: &StreamSnapshot) {
    let part_ms = (s.part_target * 1000.0) as u64;
    let target = (4 * part_ms).max(500);
    let _ = writeln!(
        out,
        "  <ServiceDescription id=\"0\">\n    <Latency referenceId=\"0\" target=\"{target}\" \
         min=\"{}\" max=\"{}\"/>\n    <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  \
         </ServiceDescription>",
        2 * part_ms,
        target + 3000 * u64::from(s.target_duration)
    );
}

/// One Period: `segs` are its listed segments per track, `next` the next
/// Period's (where this one's span ends for the renditions).
fn write_period(
    out: &mut String,
    source: &Source<'_>,
    first: bool,
    key: Option<u64>,
    segs: &[Vec<&SegmentInfo>],
    next: Option<&Vec<Vec<&SegmentInfo>>>,
    renditions: &[(&str, &StreamSnapshot)],
) {
    let zero = source.zero;
    let origin = match key {
        _ if first && source.s.ended => zero,
        None => Time::new(0, 1),
        Some(b) => origin(&source.tracks, b),
    };
    let start = origin.millis().saturating_sub(zero.millis());
    let _ = writeln!(
        out,
        "  <Period id=\"{}\" start=\"{}\">",
        source.period_id(key),
        xs_duration(start)
    );
    // This Period's span on the video timeline, for the renditions.
    let span = source.first_video(segs).map(|first| {
        let lo = first.start.saturating_sub(LADDER_SLACK);
        let hi = next
            .and_then(|next| source.first_video(next))
            .map_or(u64::MAX, |n| n.start.saturating_sub(LADDER_SLACK));
        (lo, hi)
    });
    for ((kind, t), segs) in source.tracks.iter().zip(segs) {
        if segs.is_empty() {
            continue;
        }
        let mut reps = vec![Rep {
            id: urls::track_name(*kind).to_string(),
            prefix: String::new(),
            track: t,
            segs: segs.clone(),
        }];
        if let (MediaKind::Video, Some(span)) = (kind, span) {
            reps.extend(rendition_reps(renditions, span));
        }
        let id = match kind {
            MediaKind::Video => 0,
            MediaKind::Audio => 1,
        };
        adaptation_set(out, *kind, (id, None), &reps, origin, source);
    }
    // Multitrack audio tracks: an AdaptationSet each, alternatives to the
    // stream's own audio.
    if let Some(span) = span {
        for (i, (name, rep)) in audio_rendition_reps(renditions, span)
            .into_iter()
            .enumerate()
        {
            let label = Some(name);
            adaptation_set(
                out,
                MediaKind::Audio,
                (2 + i, label),
                &[rep],
                origin,
                source,
            );
        }
    }
    out.push_str("  </Period>\n");
}

/// The audio-only renditions' (multitrack audio tracks') Representations
/// in a Period spanning `lo..hi` on the video timeline (90 kHz), with the
/// rendition's name.
fn audio_rendition_reps<'a>(
    renditions: &[(&'a str, &'a StreamSnapshot)],
    (lo, hi): (u64, u64),
) -> Vec<(&'a str, Rep<'a>)> {
    let mut reps = Vec::new();
    for (name, r) in renditions {
        let (None, Some(at)) = (r.video.as_ref(), r.audio.as_ref()) else {
            continue;
        };
        let to_audio = |t: u64| Time::new(t, 90_000).rescale(at.info.timescale);
        let (lo, hi) = (to_audio(lo), if hi == u64::MAX { hi } else { to_audio(hi) });
        let inside: Vec<&SegmentInfo> = window(&at.segments, r.window)
            .iter()
            .filter(|g| g.start >= lo && g.start < hi)
            .collect();
        let Some(init) = inside.first().map(|g| g.init) else {
            continue;
        };
        let rep = Rep {
            id: format!("audio-{name}"),
            prefix: format!("{name}/"),
            track: at,
            segs: inside.into_iter().take_while(|g| g.init == init).collect(),
        };
        reps.push((*name, rep));
    }
    reps
}

/// The renditions' Representations in a Period spanning `lo..hi` on the
/// video timeline: each rendition's listed segments that start in it and
/// share the first one's init.
fn rendition_reps<'a>(
    renditions: &[(&str, &'a StreamSnapshot)],
    (lo, hi): (u64, u64),
) -> Vec<Rep<'a>> {
    let mut reps = Vec::new();
    for (name, r) in renditions {
        let Some(rt) = r.video.as_ref() else { continue };
        let inside: Vec<&SegmentInfo> = window(&rt.segments, r.window)
            .iter()
            .filter(|g| g.start >= lo && g.start < hi)
            .collect();
        let Some(init) = inside.first().map(|g| g.init) else {
            continue;
        };
        reps.push(Rep {
            id: format!("video-{name}"),
            prefix: format!("{name}/"),
            track: rt,
            segs: inside.into_iter().take_while(|g| g.init == init).collect(),
        });
    }
    reps
}

/// Why a Period starts at a segment number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Boundary {
    Discontinuity,
    /// The init changed without a discontinuity flag (a packager slip).
    InitChange,
}

/// A point on a track's media timeline.
#[derive(Clone, Copy, Debug)]
struct Time {
    ticks: u64,
    timescale: u32,
}

impl Time {
    fn new(ticks: u64, timescale: u32) -> Self {
        Time {
            ticks,
            timescale: timescale.max(1),
        }
    }

    /// The same instant in another timescale (rounded down).
    fn rescale(self, timescale: u32) -> u64 {
        let t = u128::from(self.ticks) * u128::from(timescale) / u128::from(self.timescale);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    fn millis(self) -> u64 {
        self.rescale(1000)
    }
}

/// Every held segment number that starts a Period, from all tracks.
fn boundaries(tracks: &[(MediaKind, &TrackTimeline)]) -> BTreeMap<u64, Boundary> {
    let mut out = BTreeMap::new();
    for (_, t) in tracks {
        let mut previous: Option<&SegmentInfo> = None;
        for seg in &t.segments {
            if seg.discontinuity {
                out.insert(seg.number, Boundary::Discontinuity);
            } else if previous.is_some_and(|p| p.init != seg.init) {
                out.entry(seg.number).or_insert(Boundary::InitChange);
            }
            previous = Some(seg);
        }
    }
    out
}

/// The listed segments grouped by Period, keyed by the boundary that starts
/// it (`None`: the Period whose start is no longer held, or the stream's
/// first). One list per track, in `listed` order.
type Periods<'a> = BTreeMap<Option<u64>, Vec<Vec<&'a SegmentInfo>>>;

fn periods<'a>(boundaries: &BTreeMap<u64, Boundary>, listed: &[&'a [SegmentInfo]]) -> Periods<'a> {
    let mut out: Periods<'a> = BTreeMap::new();
    for (i, segs) in listed.iter().enumerate() {
        for seg in segs.iter() {
            let key = boundaries.range(..=seg.number).next_back().map(|(n, _)| *n);
            out.entry(key).or_insert_with(|| vec![vec![]; listed.len()])[i].push(seg);
        }
    }
    out
}

/// Start of the Period beginning at segment `number`: that segment's time in
/// the first track (video before audio) that holds it.
fn origin(tracks: &[(MediaKind, &TrackTimeline)], number: u64) -> Time {
    tracks
        .iter()
        .find_map(|(_, t)| {
            let seg = t.segments.iter().find(|g| g.number == number)?;
            Some(Time::new(seg.start, t.info.timescale))
        })
        .unwrap_or(Time::new(0, 1))
}

/// One Representation: the source's track (`prefix` empty) or a rendition's.
struct Rep<'a> {
    id: String,
    /// URL prefix relative to the source's folder (`720p/`).
    prefix: String,
    track: &'a TrackTimeline,
    segs: Vec<&'a SegmentInfo>,
}

/// `(id, label)`: the AdaptationSet's id, and a `Label` for an
/// alternative audio track.
fn adaptation_set(
    out: &mut String,
    kind: MediaKind,
    (id, label): (usize, Option<&str>),
    reps: &[Rep<'_>],
    origin: Time,
    source: &Source<'_>,
) {
    let s = source.s;
    let (content, mime) = match kind {
        MediaKind::Video => ("video", "video/mp4"),
        MediaKind::Audio => ("audio", "audio/mp4"),
    };
    // An audio track's language and name, when the publisher gave them.
    let given = reps.first().map(|r| &r.track.info.label);
    let _ = write!(
        out,
        "    <AdaptationSet id=\"{id}\" contentType=\"{content}\" mimeType=\"{mime}\""
    );
    if let Some(language) = given.and_then(|l| l.language.as_deref()) {
        let _ = write!(out, " lang=\"{}\"", attr(language));
    }
    out.push_str(" segmentAlignment=\"true\" startWithSAP=\"1\">\n");
    if let Some(label) = given.and_then(|l| l.name.as_deref()).or(label) {
        let _ = writeln!(out, "      <Label>{}</Label>", attr(label));
    }
    let ll = s.low_latency && !s.ended;
    if let Some(first) = reps.first().and_then(|r| r.segs.first()).filter(|_| ll) {
        // The ingest wall clock of a sample: how far behind the producer
        // the playhead is.
        let _ = write!(
            out,
            "      <ProducerReferenceTime id=\"0\" type=\"encoder\" wallClockTime=\"{}\" \
             presentationTime=\"{}\"",
            rfc3339_millis(first.wall_clock),
            first.start
        );
        match source.utc_timing {
            Some(url) => {
                let _ = writeln!(
                    out,
                    ">\n        <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" \
                     value=\"{}\"/>\n      </ProducerReferenceTime>",
                    attr(url)
                );
            }
            None => out.push_str("/>\n"),
        }
    }
    for rep in reps {
        representation(out, kind, rep, origin, ll.then_some(s));
    }
    out.push_str("    </AdaptationSet>\n");
}

/// `ll`: the stream, when it is live and low latency: the segment being
/// made is listed (with a nominal duration) and is available from its
/// first part (`availabilityTimeOffset`).
fn representation(
    out: &mut String,
    kind: MediaKind,
    rep: &Rep<'_>,
    origin: Time,
    ll: Option<&StreamSnapshot>,
) {
    let info = &rep.track.info;
    let segs = &rep.segs;
    let bandwidth = if info.peak_bandwidth > 0 {
        info.peak_bandwidth
    } else {
        info.average_bandwidth
    };
    let _ = write!(
        out,
        "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{bandwidth}\"",
        attr(&rep.id),
        attr(&info.codec)
    );
    match kind {
        MediaKind::Video => {
            if info.width > 0 && info.height > 0 {
                let _ = write!(out, " width=\"{}\" height=\"{}\"", info.width, info.height);
            }
            if let Some(rate) = info.frame_rate.and_then(frame_rate) {
                let _ = write!(out, " frameRate=\"{rate}\"");
            }
            out.push_str(">\n");
            // DASH-IF IOP HDR signalling: PQ is essential (an SDR player
            // must not pick it), HLG is SDR-compatible, so supplemental.
            if let Some(range) = info.video_range {
                let (element, value) = match range {
                    VideoRange::Pq => ("EssentialProperty", 16),
                    VideoRange::Hlg => ("SupplementalProperty", 18),
                };
                let _ = writeln!(
                    out,
                    "        <{element} \
                     schemeIdUri=\"urn:mpeg:mpegB:cicp:TransferCharacteristics\" \
                     value=\"{value}\"/>"
                );
            }
        }
        MediaKind::Audio => {
            let rate = if info.sample_rate > 0 {
                info.sample_rate
            } else {
                info.timescale
            };
            let _ = writeln!(out, " audioSamplingRate=\"{rate}\">");
            if let Some(dolby) = info.dolby_channels {
                // AC-3 and E-AC-3 (DASH-IF IOP 9.2.1.2): the channel mask.
                let _ = writeln!(
                    out,
                    "        <AudioChannelConfiguration \
                     schemeIdUri=\"tag:dolby.com,2014:dash:audio_channel_configuration:2011\" \
                     value=\"{dolby:04X}\"/>"
                );
            } else if info.channels > 0 {
                let _ = writeln!(
                    out,
                    "        <AudioChannelConfiguration \
                     schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
                     value=\"{}\"/>",
                    info.channels
                );
            }
        }
    }
    let first = segs[0];
    let ts = info.timescale.max(1);
    let _ = write!(
        out,
        "        <SegmentTemplate timescale=\"{ts}\" initialization=\"{}{}\" media=\"{}{}\" \
         startNumber=\"{}\" presentationTimeOffset=\"{}\"",
        attr(&rep.prefix),
        urls::init(kind, first.init),
        attr(&rep.prefix),
        urls::dash_media_template(kind),
        first.number,
        origin.rescale(ts)
    );
    let mut entries = s_entries(segs);
    if let Some(s) = ll {
        let offset = (f64::from(s.target_duration) - s.part_target).max(0.0);
        let _ = write!(
            out,
            " availabilityTimeOffset=\"{offset:.3}\" availabilityTimeComplete=\"false\""
        );
        for d in ahead(rep.track, segs, s) {
            match entries.last_mut() {
                Some(last) if last.1 == d => last.2 += 1,
                _ => entries.push((None, d, 0)),
            }
        }
    }
    out.push_str(">\n");
    out.push_str("          <SegmentTimeline>\n");
    for (t, d, r) in entries {
        out.push_str("            <S");
        if let Some(t) = t {
            let _ = write!(out, " t=\"{t}\"");
        }
        let _ = write!(out, " d=\"{d}\"");
        if r > 0 {
            let _ = write!(out, " r=\"{r}\"");
        }
        out.push_str("/>\n");
    }
    out.push_str("          </SegmentTimeline>\n");
    out.push_str("        </SegmentTemplate>\n");
    out.push_str("      </Representation>\n");
}

/// The segments listed ahead of what is finished, as nominal durations:
/// the one being made and the one after it, or (between two segments) the
/// next one. A player learns of a segment from the MPD, which it reloads
/// about once a second: listing the next one ahead lets it ask as soon as
/// the segment becomes available (its start plus one part), and castgate
/// holds a request for the next segment until it starts. Only when the
/// timeline ends with the track's last segment, in the same Period (no
/// discontinuity, same init), while the stream is live. A nominal duration
/// is the previous segment's (the GOP repeats), or the target, or what the
/// segment already holds if that is longer; the next MPD corrects it.
fn ahead(t: &TrackTimeline, segs: &[&SegmentInfo], s: &StreamSnapshot) -> Vec<u64> {
    let Some(last) = segs.last().filter(|_| !s.ended) else {
        return Vec::new();
    };
    let target = (f64::from(s.target_duration) * f64::from(t.info.timescale)) as u64;
    let nominal = last.duration.min(target.max(last.duration));
    match t.partial.as_ref() {
        Some(p) => {
            let follows = p.number == last.number + 1
                && p.start == last.start + last.duration
                && !p.discontinuity
                && p.init == last.init;
            if !follows {
                return Vec::new();
            }
            let made: u64 = p.parts.iter().map(|x| x.duration).sum();
            vec![nominal.max(made), nominal]
        }
        None if t.segments.last().map(|g| g.number) == Some(last.number) => vec![nominal],
        None => Vec::new(),
    }
}

/// `<S>` entries `(t, d, r)`: `t` on the first and wherever the timeline is
/// not contiguous (a gap or an overlap), equal consecutive durations merged
/// into `r`.
fn s_entries(segs: &[&SegmentInfo]) -> Vec<(Option<u64>, u64, u64)> {
    let mut out: Vec<(Option<u64>, u64, u64)> = vec![];
    let mut next: Option<u64> = None;
    for seg in segs {
        let contiguous = next == Some(seg.start);
        next = Some(seg.start + seg.duration);
        if contiguous {
            if let Some(last) = out.last_mut().filter(|l| l.1 == seg.duration) {
                last.2 += 1;
                continue;
            }
        }
        out.push(((!contiguous).then_some(seg.start), seg.duration, 0));
    }
    out
}

/// `PT12.345S` (xs:duration, millisecond precision).
fn xs_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

/// DASH `frameRate` is an integer or a fraction (`FrameRateType`), never a
/// decimal: 30, 30000/1001, else the rate in thousandths.
fn frame_rate(fps: f64) -> Option<String> {
    if !fps.is_finite() || fps <= 0.0 || fps > 1e6 {
        return None;
    }
    let whole = fps.round();
    if (fps - whole).abs() < 1e-3 {
        return Some(format!("{whole}"));
    }
    let ntsc = (fps * 1.001).round();
    if (fps - ntsc * 1000.0 / 1001.0).abs() < 1e-3 {
        return Some(format!("{}/1001", ntsc * 1000.0));
    }
    Some(format!("{}/1000", (fps * 1000.0).round()))
}

/// Escapes an attribute value. Whitespace controls become character
/// references (so attribute normalisation keeps them); other characters XML
/// 1.0 forbids are dropped.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::hls::test_support::*;
    use proptest::prelude::*;
    use quick_xml::events::{BytesStart, Event};
    use quick_xml::{Reader, XmlVersion};

    /// A parsed element: enough DOM to check the MPD.
    #[derive(Debug)]
    struct El {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<El>,
    }

    impl El {
        fn attr(&self, key: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        fn a(&self, key: &str) -> &str {
            self.attr(key)
                .unwrap_or_else(|| panic!("<{}> has no {key}", self.name))
        }

        fn n(&self, key: &str) -> u64 {
            self.a(key).parse().unwrap()
        }

        fn kids<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
            self.children.iter().filter(move |c| c.name == name)
        }

        fn kid(&self, name: &str) -> &El {
            let mut it = self.children.iter().filter(|c| c.name == name);
            let k = it.next().unwrap_or_else(|| panic!("no <{name}>"));
            assert!(it.next().is_none(), "more than one <{name}>");
            k
        }

        fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a El>) {
            if self.name == name {
                out.push(self);
            }
            for c in &self.children {
                c.all(name, out);
            }
        }
    }

    fn element(e: &BytesStart) -> El {
        El {
            name: e.name().0.to_string(),
            attrs: e
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    (
                        a.key.0.to_string(),
                        a.normalized_value(XmlVersion::Explicit1_0)
                            .unwrap()
                            .into_owned(),
                    )
                })
                .collect(),
            children: vec![],
        }
    }

    fn parse(xml: &str) -> El {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<El> = vec![];
        let mut root = None;
        let mut close = |stack: &mut Vec<El>, el: El| match stack.last_mut() {
            Some(parent) => parent.children.push(el),
            None => {
                assert!(root.is_none(), "two roots");
                root = Some(el);
            }
        };
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => stack.push(element(&e)),
                Ok(Event::Empty(e)) => close(&mut stack, element(&e)),
                Ok(Event::End(_)) => {
                    let el = stack.pop().unwrap();
                    close(&mut stack, el);
                }
                Ok(Event::Text(t)) => {
                    assert!(t.trim().is_empty(), "stray text")
                }
                Ok(Event::Eof) => break,
                Ok(Event::Decl(_)) => {}
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("bad XML at {}: {e}\n{xml}", reader.error_position()),
            }
        }
        assert!(stack.is_empty());
        root.expect("a root element")
    }

    /// `(number, t, d)` of every segment a SegmentTemplate addresses.
    fn expand(template: &El) -> Vec<(u64, u64, u64)> {
        let mut number = template.n("startNumber");
        let mut t: Option<u64> = None;
        let mut out = vec![];
        for s in template.kid("SegmentTimeline").kids("S") {
            if let Some(x) = s.attr("t") {
                t = Some(x.parse().unwrap());
            }
            let d = s.n("d");
            let r = s.attr("r").map_or(0, |r| r.parse::<u64>().unwrap());
            let mut at = t.expect("first S has t");
            for _ in 0..=r {
                out.push((number, at, d));
                number += 1;
                at += d;
            }
            t = Some(at);
        }
        out
    }

    fn triples(segs: &[SegmentInfo]) -> Vec<(u64, u64, u64)> {
        segs.iter()
            .map(|g| (g.number, g.start, g.duration))
            .collect()
    }

    fn adaptation<'a>(period: &'a El, content: &str) -> Option<&'a El> {
        period
            .kids("AdaptationSet")
            .find(|a| a.a("contentType") == content)
    }

    /// Every listed segment of every track, from all Periods in order.
    fn expand_track(mpd: &El, content: &str) -> Vec<(u64, u64, u64)> {
        mpd.kids("Period")
            .filter_map(|p| adaptation(p, content))
            .flat_map(|a| expand(a.kid("Representation").kid("SegmentTemplate")))
            .collect()
    }

    const TIME_URL: &str = "/api/time?fmt=iso&x=\"1\"";

    /// A rendition of `s`: the same segment times, its own numbers and size.
    fn rendition(s: &StreamSnapshot, height: u32) -> StreamSnapshot {
        let mut r = s.clone();
        r.audio = None;
        if let Some(v) = r.video.as_mut() {
            v.info.height = height;
            v.info.width = height * 16 / 9;
            v.info.codec = "avc1.4d401e".into();
            for g in &mut v.segments {
                g.number += 1000;
            }
        }
        r
    }

    #[test]
    fn a_ladder_is_one_video_set_with_a_representation_per_rendition() {
        let s = snapshot(true, true, 10, 8, 6, &[15], false);
        let low = rendition(&s, 360);
        let xml = mpd_ladder(&s, &[TIME_URL], &[("360p", &low)]);
        let m = parse(&xml);
        let periods: Vec<&El> = m.kids("Period").collect();
        assert_eq!(periods.len(), 2, "{xml}");
        for p in periods {
            let video = adaptation(p, "video").expect("video set");
            assert_eq!(video.a("segmentAlignment"), "true");
            let reps: Vec<&El> = video.kids("Representation").collect();
            assert_eq!(reps.len(), 2, "{xml}");
            assert_eq!(reps[0].a("id"), "video");
            assert_eq!(reps[1].a("id"), "video-360p");
            assert_eq!(reps[1].a("height"), "360");
            let t = reps[1].kid("SegmentTemplate");
            assert_eq!(t.a("media"), "360p/video/seg-$Number$.m4s");
            assert!(t.a("initialization").starts_with("360p/video/init-"));
            // Same times as the source in this Period, the rendition's numbers.
            let src: Vec<(u64, u64, u64)> = expand(reps[0].kid("SegmentTemplate"))
                .into_iter()
                .map(|(n, t, d)| (n + 1000, t, d))
                .collect();
            assert_eq!(expand(t), src, "{xml}");
            assert!(adaptation(p, "audio").is_some());
        }
        // No renditions: exactly the plain MPD.
        assert_eq!(mpd_ladder(&s, &[TIME_URL], &[]), mpd(&s, &[TIME_URL]));
    }

    /// GStreamer detects an MPD read over HTTP only without an `encoding`
    /// in the XML declaration; every time URL becomes a UTCTiming, in order
    /// (GStreamer uses the first, dash.js falls back to the next).
    #[test]
    fn declaration_and_time_sources_suit_gstreamer() {
        let s = snapshot(true, true, 10, 8, 6, &[], false);
        let xml = mpd(&s, &["http://127.0.0.1:8080/time", "/time"]);
        assert!(xml.starts_with("<?xml version=\"1.0\"?>\n<MPD "), "{xml}");
        let m = parse(&xml);
        let values: Vec<&str> = m.kids("UTCTiming").map(|u| u.a("value")).collect();
        assert_eq!(values, ["http://127.0.0.1:8080/time", "/time"]);
        assert!(m
            .kids("UTCTiming")
            .all(|u| u.a("schemeIdUri") == "urn:mpeg:dash:utc:http-iso:2014"));
    }

    #[test]
    fn live_audio_and_video() {
        let s = snapshot(true, true, 10, 8, 6, &[], false);
        let xml = mpd(&s, &[TIME_URL]);
        assert!(xml.contains("value=\"/api/time?fmt=iso&amp;x=&quot;1&quot;\""));
        let m = parse(&xml);
        assert_eq!(m.name, "MPD");
        assert_eq!(m.a("xmlns"), "urn:mpeg:dash:schema:mpd:2011");
        assert_eq!(
            m.a("xmlns:xsi"),
            "http://www.w3.org/2001/XMLSchema-instance"
        );
        assert!(m
            .a("profiles")
            .split(',')
            .any(|p| p == "urn:mpeg:dash:profile:isoff-live:2011"));
        assert_eq!(m.a("type"), "dynamic");
        assert_eq!(m.a("availabilityStartTime"), "2023-11-14T22:13:20.000Z");
        assert_eq!(m.a("publishTime"), "2023-11-14T22:15:23.456Z");
        assert_eq!(m.a("minimumUpdatePeriod"), "PT1S");
        assert_eq!(m.a("timeShiftBufferDepth"), "PT12S");
        assert_eq!(m.a("suggestedPresentationDelay"), "PT6S");
        assert_eq!(m.a("minBufferTime"), "PT2S");
        assert!(m.attr("mediaPresentationDuration").is_none());
        let utc = m.kid("UTCTiming");
        assert_eq!(utc.a("schemeIdUri"), "urn:mpeg:dash:utc:http-iso:2014");
        assert_eq!(utc.a("value"), TIME_URL);

        let p = m.kid("Period");
        assert_eq!((p.a("id"), p.a("start")), ("p0", "PT0S"));
        assert_eq!(p.kids("AdaptationSet").count(), 2);

        let v = adaptation(p, "video").unwrap();
        assert_eq!(v.a("mimeType"), "video/mp4");
        assert_eq!(v.a("segmentAlignment"), "true");
        assert_eq!(v.a("startWithSAP"), "1");
        let r = v.kid("Representation");
        assert_eq!(r.a("id"), "video");
        assert_eq!(r.a("codecs"), "avc1.64001f");
        assert_eq!(r.n("bandwidth"), 3_200_000);
        assert_eq!((r.n("width"), r.n("height")), (1280, 720));
        assert_eq!(r.a("frameRate"), "30000/1001");
        let tpl = r.kid("SegmentTemplate");
        assert_eq!(tpl.n("timescale"), 90_000);
        assert_eq!(tpl.a("initialization"), "video/init-1.mp4");
        assert_eq!(tpl.a("media"), "video/seg-$Number$.m4s");
        assert_eq!(tpl.n("startNumber"), 12);
        assert_eq!(tpl.n("presentationTimeOffset"), 0);
        // Six equal durations: one S with r=5.
        let s_entries: Vec<_> = tpl.kid("SegmentTimeline").kids("S").collect();
        assert_eq!(s_entries.len(), 1);
        assert_eq!(
            (
                s_entries[0].n("t"),
                s_entries[0].n("d"),
                s_entries[0].n("r")
            ),
            (12 * 180_000, 180_000, 5)
        );
        let video = &s.video.as_ref().unwrap().segments;
        assert_eq!(expand(tpl), triples(&video[2..]));

        let a = adaptation(p, "audio").unwrap();
        assert_eq!(a.a("mimeType"), "audio/mp4");
        let r = a.kid("Representation");
        assert_eq!(r.a("id"), "audio");
        assert_eq!(r.a("codecs"), "mp4a.40.2");
        assert_eq!(r.n("audioSamplingRate"), 48_000);
        let acc = r.kid("AudioChannelConfiguration");
        assert_eq!(
            acc.a("schemeIdUri"),
            "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
        );
        assert_eq!(acc.a("value"), "2");
        let tpl = r.kid("SegmentTemplate");
        assert_eq!(tpl.n("timescale"), 48_000);
        let audio = &s.audio.as_ref().unwrap().segments;
        let got = expand(tpl);
        assert_eq!(got, triples(&audio[2..]));
        let total: u64 = got.iter().map(|g| g.2).sum();
        assert_eq!(total, 3 * (94 + 93) * 1024);
        // Alternating durations: only the first S carries t.
        let s_entries: Vec<_> = tpl.kid("SegmentTimeline").kids("S").collect();
        assert_eq!(s_entries.len(), 6);
        assert!(s_entries[1..].iter().all(|e| e.attr("t").is_none()));
    }

    #[test]
    fn hdr_video_and_dolby_audio() {
        use crate::package::model::VideoRange;
        for (range, element, value) in [
            (VideoRange::Pq, "EssentialProperty", "16"),
            (VideoRange::Hlg, "SupplementalProperty", "18"),
        ] {
            let mut s = snapshot(true, true, 10, 8, 6, &[], false);
            let v = s.video.as_mut().unwrap();
            v.info.codec = "av01.0.08M.10.0.110.09.16.09.0".into();
            v.info.video_range = Some(range);
            let a = s.audio.as_mut().unwrap();
            a.info.codec = "ec-3".into();
            a.info.channels = 6;
            a.info.dolby_channels = Some(0xf801);
            let m = parse(&mpd(&s, &[TIME_URL]));
            let p = m.kid("Period");
            let r = adaptation(p, "video").unwrap().kid("Representation");
            assert_eq!(r.a("codecs"), "av01.0.08M.10.0.110.09.16.09.0");
            let prop = r.kid(element);
            assert_eq!(
                prop.a("schemeIdUri"),
                "urn:mpeg:mpegB:cicp:TransferCharacteristics"
            );
            assert_eq!(prop.a("value"), value);
            let a = adaptation(p, "audio").unwrap();
            assert_eq!(a.a("mimeType"), "audio/mp4");
            let r = a.kid("Representation");
            assert_eq!(r.a("codecs"), "ec-3");
            let acc = r.kid("AudioChannelConfiguration");
            assert_eq!(
                acc.a("schemeIdUri"),
                "tag:dolby.com,2014:dash:audio_channel_configuration:2011"
            );
            assert_eq!(acc.a("value"), "F801");
            assert_eq!(r.kids("AudioChannelConfiguration").count(), 1);
        }
    }

    #[test]
    fn discontinuity_starts_a_period() {
        let s = snapshot(true, true, 10, 8, 6, &[15], false);
        let m = parse(&mpd(&s, &[TIME_URL]));
        let periods: Vec<_> = m.kids("Period").collect();
        assert_eq!(periods.len(), 2);
        assert_eq!((periods[0].a("id"), periods[0].a("start")), ("p0", "PT0S"));
        assert_eq!((periods[1].a("id"), periods[1].a("start")), ("p1", "PT30S"));
        let tpl = |p: &El, c: &str| -> (u64, u64, String) {
            let t = adaptation(p, c)
                .unwrap()
                .kid("Representation")
                .kid("SegmentTemplate");
            (
                t.n("startNumber"),
                t.n("presentationTimeOffset"),
                t.a("initialization").to_string(),
            )
        };
        assert_eq!(tpl(periods[0], "video"), (12, 0, "video/init-1.mp4".into()));
        assert_eq!(tpl(periods[0], "audio"), (12, 0, "audio/init-1.mp4".into()));
        assert_eq!(
            tpl(periods[1], "video"),
            (15, 30 * 90_000, "video/init-2.mp4".into())
        );
        // Audio's offset is the Period start, not its own first tfdt (which
        // is 16 ms earlier): A/V sync is kept.
        assert_eq!(
            tpl(periods[1], "audio"),
            (15, 30 * 48_000, "audio/init-2.mp4".into())
        );
        let video = &s.video.as_ref().unwrap().segments;
        let audio = &s.audio.as_ref().unwrap().segments;
        assert_eq!(expand_track(&m, "video"), triples(&video[2..]));
        assert_eq!(expand_track(&m, "audio"), triples(&audio[2..]));
    }

    #[test]
    fn period_ids_and_starts_survive_reloads() {
        let mut s = snapshot(true, true, 10, 12, 6, &[15], false);
        let ids = |s: &StreamSnapshot, evicted: u64| -> Vec<(String, String)> {
            let m = parse(&mpd(&with_evicted(s.clone(), evicted), &[TIME_URL]));
            m.kids("Period")
                .map(|p| (p.a("id").to_string(), p.a("start").to_string()))
                .collect()
        };
        let p1 = ("p1".to_string(), "PT30S".to_string());
        // Window 16..=21: only p1 listed, its first segment still held.
        assert_eq!(ids(&s, 0), vec![p1.clone()]);
        // The store evicts 10..=14: same.
        for t in [s.video.as_mut().unwrap(), s.audio.as_mut().unwrap()] {
            t.segments.drain(..5);
        }
        assert_eq!(ids(&s, 0), vec![p1.clone()]);
        // Segment 15 evicted (the store counts its discontinuity): same id,
        // same presentation times.
        for t in [s.video.as_mut().unwrap(), s.audio.as_mut().unwrap()] {
            t.segments.drain(..1);
        }
        let m = parse(&mpd(&with_evicted(s.clone(), 1), &[TIME_URL]));
        let p = m.kid("Period");
        assert_eq!(p.a("id"), "p1");
        let tpl = adaptation(p, "video")
            .unwrap()
            .kid("Representation")
            .kid("SegmentTemplate");
        assert_eq!(tpl.n("presentationTimeOffset"), 0);
        assert_eq!(p.a("start"), "PT0S");
    }

    #[test]
    fn ended_stream_is_static() {
        let s = snapshot(true, true, 10, 8, 6, &[], true);
        let m = parse(&mpd(&s, &[TIME_URL]));
        assert_eq!(m.a("type"), "static");
        // Video listed 12..=17: 24 s to 36 s.
        assert_eq!(m.a("mediaPresentationDuration"), "PT12S");
        for absent in [
            "availabilityStartTime",
            "minimumUpdatePeriod",
            "timeShiftBufferDepth",
        ] {
            assert!(m.attr(absent).is_none(), "{absent}");
        }
        assert_eq!(m.kid("UTCTiming").a("value"), TIME_URL);
        let p = m.kid("Period");
        assert_eq!(p.a("start"), "PT0S");
        let pto = |c: &str| {
            adaptation(p, c)
                .unwrap()
                .kid("Representation")
                .kid("SegmentTemplate")
                .n("presentationTimeOffset")
        };
        assert_eq!(pto("video"), 24 * 90_000);
        assert_eq!(pto("audio"), 24 * 48_000);

        // With a discontinuity the second Period starts where it plays.
        let s = snapshot(true, true, 10, 8, 6, &[15], true);
        let m = parse(&mpd(&s, &[TIME_URL]));
        let starts: Vec<_> = m.kids("Period").map(|p| p.a("start").to_string()).collect();
        assert_eq!(starts, ["PT0S", "PT6S"]);
    }

    #[test]
    fn audio_only() {
        let s = snapshot(false, true, 10, 8, 6, &[14], false);
        let xml = mpd(&s, &[TIME_URL]);
        let m = parse(&xml);
        assert!(!xml.contains("video"), "{xml}");
        let periods: Vec<_> = m.kids("Period").collect();
        assert_eq!(periods.len(), 2);
        // Period start from audio's own segment 14.
        let start = 10 * 96_000 + 2 * (94 + 93) * 1024;
        assert_eq!(periods[1].a("start"), xs_duration(start * 1000 / 48_000));
        for p in &periods {
            assert_eq!(p.kids("AdaptationSet").count(), 1);
            adaptation(p, "audio").unwrap();
        }
        let audio = &s.audio.as_ref().unwrap().segments;
        assert_eq!(expand_track(&m, "audio"), triples(&audio[2..]));
    }

    #[test]
    fn video_only() {
        let s = snapshot(true, false, 10, 8, 6, &[], false);
        let xml = mpd(&s, &[TIME_URL]);
        let m = parse(&xml);
        let p = m.kid("Period");
        assert_eq!(p.kids("AdaptationSet").count(), 1);
        assert!(adaptation(p, "audio").is_none());
        let mut acc = vec![];
        m.all("AudioChannelConfiguration", &mut acc);
        assert!(acc.is_empty());
        assert!(!xml.contains("audio"), "{xml}");
    }

    #[test]
    fn gaps_repeat_t() {
        let segs = [
            (1, 0, 90_000, false),
            (2, 90_000, 90_000, false),
            (3, 200_000, 90_000, false),
            (4, 290_000, 90_000, false),
            (5, 380_000, 45_000, false),
        ];
        let mut s = snapshot(false, false, 0, 0, 10, &[], false);
        s.video = Some(timeline(video_info(), &segs));
        let m = parse(&mpd(&s, &[TIME_URL]));
        let tpl = adaptation(m.kid("Period"), "video")
            .unwrap()
            .kid("Representation")
            .kid("SegmentTemplate");
        let entries: Vec<_> = tpl
            .kid("SegmentTimeline")
            .kids("S")
            .map(|e| {
                (
                    e.attr("t").map(str::to_owned),
                    e.n("d"),
                    e.attr("r").map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                (Some("0".into()), 90_000, Some("1".into())),
                (Some("200000".into()), 90_000, Some("1".into())),
                (None, 45_000, None),
            ]
        );
        assert_eq!(expand(tpl), triples(&s.video.as_ref().unwrap().segments));
    }

    #[test]
    fn init_change_without_discontinuity_gets_its_own_period() {
        let mut s = snapshot(true, false, 10, 6, 6, &[], false);
        for seg in &mut s.video.as_mut().unwrap().segments[3..] {
            seg.init = 7;
        }
        let m = parse(&mpd(&with_evicted(s, 2), &[TIME_URL]));
        let periods: Vec<_> = m.kids("Period").collect();
        assert_eq!(periods.len(), 2);
        assert_eq!(periods[0].a("id"), "p2");
        assert_eq!(periods[1].a("id"), "p2-13");
        let init = |p: &El| {
            adaptation(p, "video")
                .unwrap()
                .kid("Representation")
                .kid("SegmentTemplate")
                .a("initialization")
                .to_string()
        };
        assert_eq!(init(periods[0]), "video/init-1.mp4");
        assert_eq!(init(periods[1]), "video/init-7.mp4");
    }

    #[test]
    fn nothing_packaged_yet() {
        let s = snapshot(true, true, 0, 0, 6, &[], false);
        let m = parse(&mpd(&s, &[TIME_URL]));
        let p = m.kid("Period");
        assert_eq!(p.a("id"), "p0");
        assert!(p.children.is_empty());
        m.kid("UTCTiming");
    }

    #[test]
    fn hostile_codec_is_escaped() {
        let mut s = snapshot(true, false, 0, 2, 6, &[], false);
        s.video.as_mut().unwrap().info.codec = "avc1\"/><x a='&\u{1}\n".into();
        let m = parse(&mpd(&s, &[TIME_URL]));
        let r = adaptation(m.kid("Period"), "video")
            .unwrap()
            .kid("Representation");
        assert_eq!(r.a("codecs"), "avc1\"/><x a='&\n");
    }

    #[test]
    fn frame_rates() {
        assert_eq!(frame_rate(30.0).as_deref(), Some("30"));
        assert_eq!(frame_rate(25.0004).as_deref(), Some("25"));
        assert_eq!(frame_rate(30_000.0 / 1001.0).as_deref(), Some("30000/1001"));
        assert_eq!(frame_rate(60_000.0 / 1001.0).as_deref(), Some("60000/1001"));
        assert_eq!(frame_rate(23.976).as_deref(), Some("24000/1001"));
        assert_eq!(frame_rate(12.5).as_deref(), Some("12500/1000"));
        assert_eq!(frame_rate(f64::NAN), None);
        assert_eq!(frame_rate(0.0), None);
    }

    #[test]
    fn durations() {
        assert_eq!(xs_duration(0), "PT0S");
        assert_eq!(xs_duration(1000), "PT1S");
        assert_eq!(xs_duration(12_345), "PT12.345S");
        assert_eq!(xs_duration(5), "PT0.005S");
    }

    proptest! {
        #[test]
        fn random_tracks_render_a_valid_mpd(s in arb_snapshot(), evicted in 0u64..5) {
            let s = with_evicted(s, evicted);
            let xml = mpd(&s, &[TIME_URL]);
            let m = parse(&xml);
            prop_assert_eq!(m.a("type"), if s.ended { "static" } else { "dynamic" });
            prop_assert_eq!(m.a("xmlns:xsi"), "http://www.w3.org/2001/XMLSchema-instance");
            prop_assert_eq!(m.kid("UTCTiming").a("value"), TIME_URL);
            for (content, t) in [("video", &s.video), ("audio", &s.audio)] {
                match t {
                    Some(t) => {
                        let listed = window(&t.segments, s.window);
                        prop_assert_eq!(listed.len(), s.window.min(t.segments.len()));
                        prop_assert_eq!(expand_track(&m, content), triples(listed));
                    }
                    None => prop_assert!(!xml.contains(content)),
                }
            }
            let periods: Vec<_> = m.kids("Period").collect();
            let mut ids: Vec<_> = periods.iter().map(|p| p.a("id")).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), periods.len());
            prop_assert_eq!(
                periods.len(),
                1 + s.video.as_ref().or(s.audio.as_ref()).map_or(0, |t| {
                    window(&t.segments, s.window)[1..].iter().filter(|g| g.discontinuity).count()
                })
            );
            // Each segment plays at its media time (live) and no Period
            // starts after its first segment.
            for p in &periods {
                let start = p.a("start");
                let start_ms: f64 = start[2..start.len() - 1].parse::<f64>().unwrap() * 1000.0;
                for a in p.kids("AdaptationSet") {
                    let tpl = a.kid("Representation").kid("SegmentTemplate");
                    let ts = tpl.n("timescale") as f64;
                    let pto = tpl.n("presentationTimeOffset") as f64;
                    let first = expand(tpl)[0].1 as f64;
                    let at_ms = start_ms + (first - pto) / ts * 1000.0;
                    if !s.ended {
                        prop_assert!((at_ms - first / ts * 1000.0).abs() <= 1.0);
                    }
                    if a.a("contentType") == "video" || s.video.is_none() {
                        prop_assert!(at_ms + 1.0 >= start_ms);
                    }
                }
            }
        }
    }
}
