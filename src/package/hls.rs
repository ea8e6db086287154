//! HLS playlists rendered from a [`StreamSnapshot`]: pure functions, no I/O.
//!
//! We write the text ourselves because `m3u8-rs` silently drops the LL-HLS
//! tags when it writes (see DESIGN.md); it is used in the tests as the
//! parser that checks what we render. Every URL comes from
//! [`urls`] and is relative, so the same text works under any `/APP/KEY/`
//! prefix and behind proxies.

use super::model::{PartInfo, SegmentInfo, StreamSnapshot, TrackInfo, TrackTimeline};
use super::urls;
use crate::media::MediaKind;
use crate::timefmt::rfc3339_millis;
use std::fmt::Write as _;

/// EXT-X-VERSION: 7 covers fractional EXTINF (3), EXT-X-MAP without
/// I-frames-only (6) and everything else we write.
pub const VERSION: u32 = 7;

/// Group id of the audio rendition in the multivariant playlist.
const AUDIO_GROUP: &str = "audio";

/// The multivariant playlist (`index.m3u8`).
///
/// Video (+ audio): one EXT-X-STREAM-INF for `video.m3u8` whose BANDWIDTH
/// counts both tracks (the player downloads both), and the audio track as an
/// EXT-X-MEDIA rendition in group `audio`. Audio only: a single
/// EXT-X-STREAM-INF for `audio.m3u8`. A track that does not exist is never
/// advertised; with no track at all the playlist lists no variant.
pub fn multivariant(s: &StreamSnapshot) -> String {
    multivariant_ladder(s, &[])
}

/// The multivariant playlist of a transcoded stream: the source's video
/// and every rendition's (`(name, snapshot)`, each its own stream at
/// `NAME/` under the source's URL), one EXT-X-STREAM-INF each, sharing one
/// audio group: the source's audio track (else the first rendition's).
/// Every variant's BANDWIDTH and CODECS count that audio. Renditions
/// without video are not listed. With no renditions this is
/// [`multivariant`].
pub fn multivariant_ladder(s: &StreamSnapshot, renditions: &[(&str, &StreamSnapshot)]) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{VERSION}");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");

    let audio = s
        .audio
        .as_ref()
        .map(|t| (String::new(), &t.info))
        .or_else(|| {
            renditions
                .iter()
                .find_map(|(n, r)| r.audio.as_ref().map(|t| (format!("{n}/"), &t.info)))
        });
    let videos: Vec<(String, &TrackInfo)> = s
        .video
        .as_ref()
        .map(|t| (String::new(), &t.info))
        .into_iter()
        .chain(
            renditions
                .iter()
                .filter_map(|(n, r)| r.video.as_ref().map(|t| (format!("{n}/"), &t.info))),
        )
        .collect();
    if videos.is_empty() {
        if let Some(a) = s.audio.as_ref().map(|t| &t.info) {
            let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", a.peak_bandwidth);
            if a.average_bandwidth > 0 {
                let _ = write!(out, ",AVERAGE-BANDWIDTH={}", a.average_bandwidth);
            }
            write_codecs(&mut out, std::iter::once(a.codec.as_str()));
            let _ = writeln!(out, "\n{}", urls::media_playlist(MediaKind::Audio));
        }
        return out;
    }
    // Renditions with audio and no video (multitrack audio tracks) are
    // alternatives to the default audio, in the same group.
    let alternatives: Vec<(&str, &TrackInfo)> = renditions
        .iter()
        .filter(|(_, r)| r.video.is_none())
        .filter_map(|(n, r)| r.audio.as_ref().map(|t| (*n, &t.info)))
        .collect();
    if let Some((prefix, a)) = &audio {
        // NAMEs are unique in a group (RFC 8216bis 4.4.6.1): a name the
        // publisher gave twice gets the track's own after it.
        let mut names = Vec::new();
        let mut unique = |given: Option<&String>, fallback: String| {
            let name = match given {
                Some(n) if names.contains(n) => format!("{n} ({fallback})"),
                Some(n) => n.clone(),
                None => fallback,
            };
            names.push(name.clone());
            name
        };
        let name = unique(a.label.name.as_ref(), "audio".to_string());
        write_audio_media(&mut out, &name, true, a, prefix);
        for (name, a) in &alternatives {
            let alternative = format!("{name}/");
            // (Unless it is the default: a stream with no audio of its own.)
            if alternative != *prefix {
                let name = unique(a.label.name.as_ref(), audio_label(name));
                write_audio_media(&mut out, &name, false, a, &alternative);
            }
        }
    }
    let audio = audio.map(|(_, a)| a);
    // A variant's peak counts its biggest audio, its CODECS every audio
    // codec of the group (RFC 8216bis 4.4.6.2).
    let audio_peak = alternatives
        .iter()
        .map(|(_, a)| a.peak_bandwidth)
        .chain(audio.map(|a| a.peak_bandwidth))
        .max()
        .unwrap_or(0);
    let mut audio_codecs: Vec<&str> = audio.map(|a| a.codec.as_str()).into_iter().collect();
    for (_, a) in &alternatives {
        if !audio_codecs.contains(&a.codec.as_str()) {
            audio_codecs.push(&a.codec);
        }
    }
    for (prefix, v) in videos {
        let peak = v.peak_bandwidth + audio_peak;
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={peak}");
        // AVERAGE-BANDWIDTH only when every advertised track has one:
        // half a sum would understate it.
        let average = v.average_bandwidth + audio.map_or(0, |a| a.average_bandwidth);
        if v.average_bandwidth > 0 && audio.is_none_or(|a| a.average_bandwidth > 0) {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={average}");
        }
        let codecs = std::iter::once(v.codec.as_str()).chain(audio_codecs.iter().copied());
        write_codecs(&mut out, codecs);
        if v.width > 0 && v.height > 0 {
            let _ = write!(out, ",RESOLUTION={}x{}", v.width, v.height);
        }
        if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        // SDR is the default: only HDR transfers are named.
        if let Some(range) = v.video_range {
            let _ = write!(out, ",VIDEO-RANGE={}", range.as_str());
        }
        if audio.is_some() {
            let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
        }
        let _ = writeln!(out, "\n{prefix}{}", urls::media_playlist(MediaKind::Video));
    }
    out
}

/// The NAME of an alternative audio rendition: "track N" for a multitrack
/// track's stream (`audioN`), else its name.
fn audio_label(name: &str) -> String {
    match name.strip_prefix("audio") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => format!("track {n}"),
        _ => name.to_string(),
    }
}

/// One EXT-X-MEDIA audio rendition of the group.
fn write_audio_media(out: &mut String, name: &str, default: bool, a: &TrackInfo, prefix: &str) {
    let default = if default { "YES" } else { "NO" };
    let _ = write!(
        out,
        "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"{name}\",\
         DEFAULT={default},AUTOSELECT=YES"
    );
    if let Some(language) = &a.label.language {
        let _ = write!(out, ",LANGUAGE=\"{language}\"");
    }
    if a.channels > 0 {
        let _ = write!(out, ",CHANNELS=\"{}\"", a.channels);
    }
    let _ = writeln!(
        out,
        ",URI=\"{prefix}{}\"",
        urls::media_playlist(MediaKind::Audio)
    );
}

/// A media playlist (`video.m3u8` / `audio.m3u8`), or `None` if the stream
/// has no such track.
///
/// Lists the last `s.window` segments of the track (at least one).
///
/// EXT-X-DISCONTINUITY-SEQUENCE counts every discontinuity tag that ever
/// left the playlist (RFC 8216 §6.2.2): the track's
/// `discontinuities_before` (segments gone from the snapshot) plus those
/// still in the snapshot but before the window.
///
/// EXT-X-MAP is written at the top, whenever the init changes and after every
/// discontinuity; EXT-X-PROGRAM-DATE-TIME on the first segment and after every
/// discontinuity (where the media clock may have jumped).
///
/// Contract with the packager (nothing is asserted): `s.target_duration` ≥
/// every segment's rounded duration, and a segment whose init differs from
/// its predecessor's has `discontinuity == true` (RFC 8216 requires
/// EXT-X-DISCONTINUITY for new encoding parameters; the DASH MPD needs a new
/// Period for a new init).
pub fn media_playlist(s: &StreamSnapshot, kind: MediaKind) -> Option<String> {
    media_playlist_with(s, kind, &Delivery::default())
}

/// What a low-latency request asks of a media playlist beyond the
/// snapshot (ignored unless `s.low_latency`).
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// `_HLS_skip=YES`: a delta update (EXT-X-SKIP).
    pub skip: bool,
    /// EXT-X-RENDITION-REPORT lines: the other renditions a player may
    /// switch to, with their last part.
    pub reports: Vec<RenditionReport>,
}

/// One EXT-X-RENDITION-REPORT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// The rendition's media playlist, relative to this one.
    pub uri: String,
    pub last_msn: u64,
    pub last_part: usize,
}

/// Part hold-back in part targets (RFC 8216bis: at least 3).
const PART_HOLD_BACK_PARTS: f64 = 3.0;
/// Hold-back in target durations (at least 3).
const HOLD_BACK_TARGETS: f64 = 3.0;
/// Skip boundary in target durations (at least 6).
const SKIP_UNTIL_TARGETS: f64 = 6.0;
/// Parts are listed for the segments of the last this many target
/// durations (at least 3).
pub(crate) const PARTS_FOR_TARGETS: f64 = 3.0;

/// The last part `t` lists: `(media sequence number, part index)`. The
/// segment being made if it has a part, else the last finished one.
pub fn last_part(t: &TrackTimeline) -> Option<(u64, usize)> {
    if let Some(p) = &t.partial {
        return Some((p.number, p.parts.len().saturating_sub(1)));
    }
    t.segments
        .last()
        .map(|g| (g.number, g.parts.len().saturating_sub(1)))
}

/// The number of leading `listed` segments a delta update leaves out:
/// those that end at least the skip boundary before the playlist's end.
pub fn skippable(listed: &[SegmentInfo], timescale: u32, skip_until: f64) -> usize {
    let until = (skip_until * f64::from(timescale)) as u64;
    let mut after = 0u64;
    let mut keep = 0;
    for g in listed.iter().rev() {
        if after >= until {
            break;
        }
        after += g.duration;
        keep += 1;
    }
    listed.len() - keep
}

/// The media playlist with `delivery` applied. With `s.low_latency`
/// (RFC 8216bis, LL-HLS): EXT-X-SERVER-CONTROL (blocking reload, hold-backs,
/// skip boundary), EXT-X-PART-INF, EXT-X-PART for the parts of the last
/// three target durations and of the segment being made, an
/// EXT-X-PRELOAD-HINT for the next part while live, EXT-X-SKIP for a delta
/// update and the rendition reports.
pub fn media_playlist_with(
    s: &StreamSnapshot,
    kind: MediaKind,
    delivery: &Delivery,
) -> Option<String> {
    let track = track(s, kind)?;
    let listed = window(&track.segments, s.window);
    let skipped = &track.segments[..track.segments.len() - listed.len()];
    let discontinuity_sequence =
        track.discontinuities_before + skipped.iter().filter(|g| g.discontinuity).count() as u64;
    let timescale = f64::from(track.info.timescale.max(1));
    let ll = s.low_latency;
    let target = f64::from(s.target_duration);
    let skip_until = SKIP_UNTIL_TARGETS * target;
    let omitted = if ll && delivery.skip {
        skippable(listed, track.info.timescale.max(1), skip_until)
    } else {
        0
    };

    let mut out = String::with_capacity(160 + 96 * listed.len());
    out.push_str("#EXTM3U\n");
    let _ = writeln!(
        out,
        "#EXT-X-VERSION:{}",
        if ll { LL_VERSION } else { VERSION }
    );
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", s.target_duration);
    if ll {
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},\
             PART-HOLD-BACK={:.3},HOLD-BACK={:.1}",
            skip_until,
            PART_HOLD_BACK_PARTS * s.part_target,
            HOLD_BACK_TARGETS * target,
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.5}", s.part_target);
    }
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        listed.first().map_or(0, |g| g.number)
    );
    let _ = writeln!(
        out,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
    );
    if let Some(t) = s.playlist_type {
        let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{}", t.as_str());
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if omitted > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={omitted}");
    }

    // Parts for the segments that end within the last three target
    // durations (and for the one being made).
    let parts_from = {
        let span = (PARTS_FOR_TARGETS * target * timescale) as u64;
        let mut covered = track
            .partial
            .as_ref()
            .map_or(0, |p| p.parts.iter().map(|x| x.duration).sum::<u64>());
        let mut from = listed.len();
        for g in listed.iter().rev() {
            if covered >= span {
                break;
            }
            covered += g.duration;
            from -= 1;
        }
        from
    };
    let mut previous: Option<(u32, bool)> = None;
    for (i, seg) in listed.iter().enumerate().skip(omitted) {
        let head = Head {
            init: seg.init,
            discontinuity: seg.discontinuity,
            wall_clock: seg.wall_clock,
        };
        write_head(&mut out, kind, &head, previous.map(|p| p.0));
        if ll && i >= parts_from {
            write_parts(&mut out, kind, seg.number, &seg.parts, timescale);
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.5},\n{}",
            seg.duration as f64 / timescale,
            urls::segment(kind, seg.number)
        );
        previous = Some((seg.init, seg.discontinuity));
    }
    if ll {
        if let Some(p) = &track.partial {
            let head = Head {
                init: p.init,
                discontinuity: p.discontinuity,
                wall_clock: p.wall_clock,
            };
            write_head(&mut out, kind, &head, previous.map(|p| p.0));
            write_parts(&mut out, kind, p.number, &p.parts, timescale);
        }
        if !s.ended {
            let (number, index) = match (&track.partial, listed.last()) {
                (Some(p), _) => (p.number, p.parts.len()),
                (None, Some(g)) => (g.number + 1, 0),
                (None, None) => (0, 0),
            };
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                urls::part(kind, number, index)
            );
        }
        for r in &delivery.reports {
            let _ = writeln!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
                quoted(&r.uri),
                r.last_msn,
                r.last_part
            );
        }
    }
    if s.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Some(out)
}

/// EXT-X-VERSION of a low-latency playlist: EXT-X-SKIP needs 9.
pub const LL_VERSION: u32 = 9;

/// What the tags before a segment (or the segment being made) depend on.
struct Head {
    init: u32,
    discontinuity: bool,
    wall_clock: std::time::SystemTime,
}

/// EXT-X-DISCONTINUITY, EXT-X-MAP (at the top, whenever the init changes
/// and after every discontinuity) and EXT-X-PROGRAM-DATE-TIME (at the top
/// and after every discontinuity, where the media clock may have jumped).
fn write_head(out: &mut String, kind: MediaKind, seg: &Head, previous_init: Option<u32>) {
    if seg.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if previous_init != Some(seg.init) || seg.discontinuity {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", urls::init(kind, seg.init));
    }
    if previous_init.is_none() || seg.discontinuity {
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            rfc3339_millis(seg.wall_clock)
        );
    }
}

fn write_parts(out: &mut String, kind: MediaKind, number: u64, parts: &[PartInfo], ts: f64) {
    for (i, p) in parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
            p.duration as f64 / ts,
            urls::part(kind, number, i)
        );
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

/// The snapshot's timeline for `kind`.
pub(crate) fn track(s: &StreamSnapshot, kind: MediaKind) -> Option<&TrackTimeline> {
    match kind {
        MediaKind::Video => s.video.as_ref(),
        MediaKind::Audio => s.audio.as_ref(),
    }
}

/// The segments a manifest lists: the last `window` (at least one, so a
/// misconfigured window of 0 never yields an empty live playlist).
pub(crate) fn window(segments: &[SegmentInfo], window: usize) -> &[SegmentInfo] {
    let n = window.max(1).min(segments.len());
    &segments[segments.len() - n..]
}

/// `,CODECS="a,b"` (skipping empty codec strings; nothing if none is known).
fn write_codecs<'a>(out: &mut String, codecs: impl Iterator<Item = &'a str>) {
    let list: Vec<String> = codecs.map(quoted).filter(|c| !c.is_empty()).collect();
    if !list.is_empty() {
        let _ = write!(out, ",CODECS=\"{}\"", list.join(","));
    }
}

/// An HLS quoted-string cannot contain `"`, CR or LF (RFC 8216 §4.2); drop
/// them rather than break the playlist.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Snapshot builders shared by the HLS and DASH tests.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use proptest::prelude::*;

    use crate::media::MediaKind;
    use crate::package::model::{PartInfo, SegmentInfo, StreamSnapshot, TrackInfo, TrackTimeline};

    pub const VIDEO_TS: u32 = 90_000;
    pub const AUDIO_TS: u32 = 48_000;

    /// 2023-11-14T22:13:20Z.
    pub fn epoch() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    pub fn video_info() -> TrackInfo {
        TrackInfo {
            kind: MediaKind::Video,
            codec: "avc1.64001f".into(),
            timescale: VIDEO_TS,
            width: 1280,
            height: 720,
            frame_rate: Some(30_000.0 / 1001.0),
            video_range: None,
            sample_rate: 0,
            channels: 0,
            dolby_channels: None,
            peak_bandwidth: 3_200_000,
            average_bandwidth: 2_900_000,
            label: Default::default(),
        }
    }

    pub fn audio_info() -> TrackInfo {
        TrackInfo {
            kind: MediaKind::Audio,
            codec: "mp4a.40.2".into(),
            timescale: AUDIO_TS,
            width: 0,
            height: 0,
            frame_rate: None,
            video_range: None,
            sample_rate: 48_000,
            channels: 2,
            dolby_channels: None,
            peak_bandwidth: 130_000,
            average_bandwidth: 128_000,
            label: Default::default(),
        }
    }

    /// One track from `(number, start, duration, discontinuity)`; the init
    /// id counts the discontinuities (a new init after each).
    pub fn timeline(info: TrackInfo, segs: &[(u64, u64, u64, bool)]) -> TrackTimeline {
        let ts = u64::from(info.timescale);
        let mut init = 1;
        let mut inits = vec![];
        let segments = segs
            .iter()
            .enumerate()
            .map(|(i, &(number, start, duration, discontinuity))| {
                if discontinuity && i > 0 {
                    init += 1;
                }
                if inits.last() != Some(&init) {
                    inits.push(init);
                }
                SegmentInfo {
                    number,
                    start,
                    duration,
                    init,
                    discontinuity,
                    wall_clock: epoch()
                        + Duration::from_nanos(
                            (u128::from(start) * 1_000_000_000 / u128::from(ts)) as u64,
                        ),
                    bytes: duration * 100,
                    parts: vec![PartInfo {
                        duration,
                        independent: true,
                    }],
                }
            })
            .collect();
        TrackTimeline {
            info,
            inits,
            segments,
            discontinuities_before: 0,
            partial: None,
        }
    }

    /// `s` with `n` discontinuities gone from every track (evicted by the
    /// store).
    pub fn with_evicted(mut s: StreamSnapshot, n: u64) -> StreamSnapshot {
        for t in [s.video.as_mut(), s.audio.as_mut()].into_iter().flatten() {
            t.discontinuities_before = n;
        }
        s
    }

    /// `n` contiguous segments numbered from `first`: video 2 s each, audio
    /// alternately 94 and 93 AAC frames (so the timelines need `r` runs and
    /// fresh `S` entries). `disc` lists the numbers that start after a
    /// discontinuity.
    pub fn segs(
        first: u64,
        n: usize,
        ts: u32,
        disc: &[u64],
        audio: bool,
    ) -> Vec<(u64, u64, u64, bool)> {
        let mut start = first * 2 * u64::from(ts);
        (0..n as u64)
            .map(|i| {
                let number = first + i;
                let duration = if audio {
                    if i % 2 == 0 {
                        94 * 1024
                    } else {
                        93 * 1024
                    }
                } else {
                    2 * u64::from(ts)
                };
                let seg = (number, start, duration, disc.contains(&number));
                start += duration;
                seg
            })
            .collect()
    }

    pub fn snapshot(
        video: bool,
        audio: bool,
        first: u64,
        n: usize,
        window: usize,
        disc: &[u64],
        ended: bool,
    ) -> StreamSnapshot {
        StreamSnapshot {
            key: "live/test".into(),
            video: video.then(|| timeline(video_info(), &segs(first, n, VIDEO_TS, disc, false))),
            audio: audio.then(|| timeline(audio_info(), &segs(first, n, AUDIO_TS, disc, true))),
            target_duration: 2,
            part_target: 0.5,
            low_latency: false,
            window,
            ended,
            playlist_type: None,
            availability_start: epoch(),
            updated: epoch() + Duration::from_millis(123_456),
        }
    }

    /// A random track: contiguous numbers, durations 0.1–7 s, random
    /// discontinuities, and the target duration a packager would pick.
    pub fn arb_snapshot() -> impl Strategy<Value = StreamSnapshot> {
        (
            0u64..1_000_000,
            prop::collection::vec((9_000u64..630_000, any::<bool>(), 0u8..10), 1..40),
            1usize..12,
            any::<bool>(),
            0u8..3,
        )
            .prop_map(|(first, raw, window, ended, tracks)| {
                let mut video = vec![];
                let mut audio = vec![];
                let (mut vt, mut at) = (first * 180_000, first * 96_000);
                for (i, &(d, gap, disc)) in raw.iter().enumerate() {
                    let number = first + i as u64;
                    let disc = disc == 0 && i > 0;
                    if gap && disc {
                        vt += 9_000;
                    }
                    let ad = d * 48 / 90 / 1024 * 1024 + 1024;
                    video.push((number, vt, d, disc));
                    audio.push((number, at, ad, disc));
                    vt += d;
                    at += ad;
                }
                let longest = raw
                    .iter()
                    .map(|&(d, _, _)| d as f64 / 90_000.0)
                    .chain(audio.iter().map(|a| a.2 as f64 / 48_000.0))
                    .fold(0.0, f64::max);
                let mut s = snapshot(false, false, 0, 0, window, &[], ended);
                s.target_duration = longest.ceil() as u32;
                if tracks != 1 {
                    s.video = Some(timeline(video_info(), &video));
                }
                if tracks != 0 {
                    s.audio = Some(timeline(audio_info(), &audio));
                }
                s
            })
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use m3u8_rs::{AlternativeMediaType, MasterPlaylist, MediaPlaylist};
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn parse_master(text: &str) -> MasterPlaylist {
        m3u8_rs::parse_master_playlist_res(text.as_bytes())
            .unwrap_or_else(|e| panic!("not a multivariant playlist: {e:?}\n{text}"))
    }

    fn parse_media(text: &str) -> MediaPlaylist {
        m3u8_rs::parse_media_playlist_res(text.as_bytes())
            .unwrap_or_else(|e| panic!("not a media playlist: {e:?}\n{text}"))
    }

    /// Checks every rule a media playlist must keep against the track it was
    /// rendered from, and returns the parsed playlist.
    fn check_media(s: &StreamSnapshot, kind: MediaKind) -> MediaPlaylist {
        let text = media_playlist(s, kind).expect("track exists");
        let p = parse_media(&text);
        let t = track(s, kind).unwrap();
        let listed = window(&t.segments, s.window);
        assert_eq!(p.version, Some(7));
        assert!(p.independent_segments);
        assert_eq!(p.target_duration, u64::from(s.target_duration));
        assert_eq!(p.media_sequence, listed[0].number);
        assert_eq!(p.segments.len(), listed.len());
        assert_eq!(p.end_list, s.ended);
        let ts = f64::from(t.info.timescale);
        for (parsed, seg) in p.segments.iter().zip(listed) {
            assert_eq!(parsed.uri, urls::segment(kind, seg.number));
            let real = seg.duration as f64 / ts;
            assert!((f64::from(parsed.duration) - real).abs() < 1e-5);
            assert!(
                f64::from(parsed.duration).round() as u64 <= p.target_duration,
                "EXTINF {} over TARGETDURATION {}",
                parsed.duration,
                p.target_duration
            );
            assert_eq!(parsed.discontinuity, seg.discontinuity);
        }
        assert!(p.segments[0].map.is_some(), "EXT-X-MAP at the top");
        assert!(p.segments[0].program_date_time.is_some());
        p
    }

    #[test]
    fn live_window_lists_the_last_six_of_eight() {
        let s = snapshot(true, true, 10, 8, 6, &[], false);
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let p = check_media(&s, kind);
            assert_eq!(p.media_sequence, 12);
            assert_eq!(p.discontinuity_sequence, 0);
            assert!(!p.end_list);
            assert_eq!(p.segments[0].map.as_ref().unwrap().uri, urls::init(kind, 1));
            // One init, no discontinuity: MAP and PROGRAM-DATE-TIME once.
            assert!(p.segments[1..].iter().all(|g| g.map.is_none()));
            assert!(p.segments[1..]
                .iter()
                .all(|g| g.program_date_time.is_none()));
        }
        let text = media_playlist(&s, MediaKind::Video).unwrap();
        assert!(
            text.contains("#EXTINF:2.00000,\nvideo/seg-12.m4s\n"),
            "{text}"
        );
        // Wall clock of segment 12: epoch + 24 s, to the millisecond.
        let p = parse_media(&text);
        let pdt = p.segments[0].program_date_time.unwrap();
        assert_eq!(pdt.timestamp_millis(), 1_700_000_024_000);
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:44.000Z\n"));
        let audio = media_playlist(&s, MediaKind::Audio).unwrap();
        assert!(
            audio.contains("#EXTINF:2.00533,\naudio/seg-12.m4s\n"),
            "{audio}"
        );
    }

    #[test]
    fn multivariant_lists_a_ladder_with_one_audio_group() {
        let s = snapshot(true, true, 0, 3, 6, &[], false);
        let mut low = snapshot(true, true, 0, 3, 6, &[], false);
        if let Some(v) = low.video.as_mut() {
            v.info.width = 640;
            v.info.height = 360;
            v.info.peak_bandwidth = 500_000;
            v.info.average_bandwidth = 400_000;
        }
        let text = multivariant_ladder(&s, &[("360p", &low)]);
        let m = parse_master(&text);
        let uris: Vec<&str> = m.variants.iter().map(|v| v.uri.as_str()).collect();
        assert_eq!(uris, ["video.m3u8", "360p/video.m3u8"]);
        let v = &m.variants[1];
        let audio = s.audio.as_ref().unwrap().info.clone();
        assert_eq!(v.bandwidth, 500_000 + audio.peak_bandwidth);
        assert_eq!(v.average_bandwidth, Some(400_000 + audio.average_bandwidth));
        let r = v.resolution.unwrap();
        assert_eq!((r.width, r.height), (640, 360));
        assert_eq!(v.audio.as_deref(), Some("audio"));
        assert_eq!(m.alternatives.len(), 1, "{text}");
        assert_eq!(m.alternatives[0].uri.as_deref(), Some("audio.m3u8"));
        // A source without audio shares the first rendition's.
        let mut mute = s.clone();
        mute.audio = None;
        let m = parse_master(&multivariant_ladder(&mute, &[("360p", &low)]));
        assert_eq!(m.alternatives[0].uri.as_deref(), Some("360p/audio.m3u8"));
        assert_eq!(multivariant_ladder(&s, &[]), multivariant(&s));
    }

    /// Alternative audio renditions take the publisher's names, unique in
    /// their group (a repeated one gets the track's own after it).
    #[test]
    fn audio_rendition_names_stay_unique() {
        let mut s = snapshot(true, true, 0, 3, 6, &[], false);
        let named = |name: &str| super::super::model::TrackLabel {
            name: Some(name.to_string()),
            language: None,
        };
        s.audio.as_mut().unwrap().info.label = named("Main");
        let track = |name: &str| {
            let mut t = snapshot(false, true, 0, 3, 6, &[], false);
            t.audio.as_mut().unwrap().info.label = named(name);
            t
        };
        let (one, two) = (track("Main"), track("Other"));
        let text = multivariant_ladder(&s, &[("audio1", &one), ("audio2", &two)]);
        let m = parse_master(&text);
        let names: Vec<&str> = m.alternatives.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["Main", "Main (track 1)", "Other"], "{text}");
    }

    #[test]
    fn multivariant_audio_and_video() {
        let s = snapshot(true, true, 0, 3, 6, &[], false);
        let text = multivariant(&s);
        let m = parse_master(&text);
        assert_eq!(m.version, Some(7));
        assert!(m.independent_segments);
        assert_eq!(m.variants.len(), 1);
        let v = &m.variants[0];
        assert_eq!(v.uri, "video.m3u8");
        assert_eq!(v.bandwidth, 3_330_000);
        assert_eq!(v.average_bandwidth, Some(3_028_000));
        assert_eq!(v.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        let r = v.resolution.unwrap();
        assert_eq!((r.width, r.height), (1280, 720));
        assert!((v.frame_rate.unwrap() - 29.97).abs() < 1e-9);
        assert!(text.contains("FRAME-RATE=29.970"), "{text}");
        assert_eq!(v.audio.as_deref(), Some("audio"));
        assert_eq!(m.alternatives.len(), 1);
        let a = &m.alternatives[0];
        assert_eq!(a.media_type, AlternativeMediaType::Audio);
        assert_eq!(a.group_id, "audio");
        assert!(a.default && a.autoselect);
        assert_eq!(a.channels.as_deref(), Some("2"));
        assert_eq!(a.uri.as_deref(), Some("audio.m3u8"));
    }

    #[test]
    fn hdr_video_range() {
        use crate::package::model::VideoRange;
        let mut s = snapshot(true, true, 0, 3, 6, &[], false);
        assert!(
            !multivariant(&s).contains("VIDEO-RANGE"),
            "SDR is the default"
        );
        for (range, name) in [(VideoRange::Pq, "PQ"), (VideoRange::Hlg, "HLG")] {
            let v = s.video.as_mut().unwrap();
            v.info.codec = "hev1.2.4.L123.90".into();
            v.info.video_range = Some(range);
            let text = multivariant(&s);
            assert!(text.contains(&format!(",VIDEO-RANGE={name}")), "{text}");
            let m = parse_master(&text);
            assert_eq!(
                m.variants[0].codecs.as_deref(),
                Some("hev1.2.4.L123.90,mp4a.40.2")
            );
        }
    }

    #[test]
    fn discontinuity_in_the_middle() {
        let s = snapshot(true, true, 10, 8, 6, &[15], false);
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let p = check_media(&s, kind);
            // Listed: 12..=17; 15 is index 3.
            assert_eq!(p.discontinuity_sequence, 0);
            for (i, g) in p.segments.iter().enumerate() {
                assert_eq!(g.discontinuity, i == 3);
                assert_eq!(g.map.is_some(), i == 0 || i == 3);
                assert_eq!(g.program_date_time.is_some(), i == 0 || i == 3);
            }
            assert_eq!(p.segments[3].map.as_ref().unwrap().uri, urls::init(kind, 2));
            let seg = &track(&s, kind).unwrap().segments[5];
            assert_eq!(seg.number, 15);
            let millis = seg
                .wall_clock
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            assert_eq!(
                p.segments[3].program_date_time.unwrap().timestamp_millis(),
                millis
            );
        }
        let text = media_playlist(&s, MediaKind::Video).unwrap();
        assert!(text.contains(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"video/init-2.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"
        ));
    }

    #[test]
    fn discontinuity_sequence_counts_what_left_the_playlist() {
        // 11 is held but before the window; the store evicted 3 more.
        let s = with_evicted(snapshot(true, false, 10, 8, 6, &[11, 13], false), 3);
        let p = check_media(&s, MediaKind::Video);
        assert_eq!(p.discontinuity_sequence, 4);
        assert!(p.segments[1].discontinuity);
        // The flagged segment at the top keeps its tag until it leaves.
        let s = snapshot(true, false, 10, 8, 6, &[12], false);
        let p = check_media(&s, MediaKind::Video);
        assert_eq!(p.discontinuity_sequence, 0);
        assert!(p.segments[0].discontinuity);
    }

    /// Each track's playlist counts its own discontinuities gone from the
    /// snapshot.
    #[test]
    fn each_track_counts_its_own_evicted_discontinuities() {
        let mut s = snapshot(true, true, 10, 6, 6, &[], false);
        s.video.as_mut().unwrap().discontinuities_before = 2;
        s.audio.as_mut().unwrap().discontinuities_before = 5;
        assert_eq!(check_media(&s, MediaKind::Video).discontinuity_sequence, 2);
        assert_eq!(check_media(&s, MediaKind::Audio).discontinuity_sequence, 5);
    }

    #[test]
    fn ended_stream_has_endlist() {
        let s = snapshot(true, true, 0, 4, 6, &[], true);
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let p = check_media(&s, kind);
            assert!(p.end_list);
            assert_eq!(p.segments.len(), 4);
        }
        assert!(media_playlist(&s, MediaKind::Video)
            .unwrap()
            .ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn audio_only() {
        let s = snapshot(false, true, 0, 4, 6, &[], false);
        assert!(media_playlist(&s, MediaKind::Video).is_none());
        check_media(&s, MediaKind::Audio);
        let text = multivariant(&s);
        let m = parse_master(&text);
        assert!(m.alternatives.is_empty());
        assert_eq!(m.variants.len(), 1);
        let v = &m.variants[0];
        assert_eq!(v.uri, "audio.m3u8");
        assert_eq!(v.bandwidth, 130_000);
        assert_eq!(v.codecs.as_deref(), Some("mp4a.40.2"));
        assert!(v.resolution.is_none() && v.frame_rate.is_none() && v.audio.is_none());
        assert!(!text.contains("EXT-X-MEDIA:"), "{text}");
    }

    #[test]
    fn video_only() {
        let s = snapshot(true, false, 0, 4, 6, &[], false);
        assert!(media_playlist(&s, MediaKind::Audio).is_none());
        check_media(&s, MediaKind::Video);
        let text = multivariant(&s);
        let m = parse_master(&text);
        assert!(m.alternatives.is_empty());
        assert_eq!(m.variants.len(), 1);
        let v = &m.variants[0];
        assert_eq!(v.uri, "video.m3u8");
        assert_eq!(v.bandwidth, 3_200_000);
        assert_eq!(v.codecs.as_deref(), Some("avc1.64001f"));
        assert!(v.audio.is_none());
        assert!(!text.contains("AUDIO"), "{text}");
    }

    #[test]
    fn no_track_advertises_nothing() {
        let s = snapshot(false, false, 0, 0, 6, &[], false);
        let m = parse_master(&multivariant(&s));
        assert!(m.variants.is_empty() && m.alternatives.is_empty());
        assert!(media_playlist(&s, MediaKind::Video).is_none());
    }

    #[test]
    fn hostile_codec_string_cannot_break_the_playlist() {
        let mut s = snapshot(true, false, 0, 2, 6, &[], false);
        s.video.as_mut().unwrap().info.codec = "avc1\"\n#EXT-X-ENDLIST".into();
        let text = multivariant(&s);
        assert_eq!(text.lines().count(), 5, "{text}");
        parse_master(&text);
    }

    proptest! {
        #[test]
        fn random_tracks_render_valid_playlists(s in arb_snapshot(), evicted in 0u64..5) {
            let s = with_evicted(s, evicted);
            parse_master(&multivariant(&s));
            for kind in [MediaKind::Video, MediaKind::Audio] {
                let Some(t) = track(&s, kind) else {
                    prop_assert!(media_playlist(&s, kind).is_none());
                    continue;
                };
                let p = check_media(&s, kind);
                let n = t.segments.len();
                prop_assert_eq!(p.segments.len(), s.window.min(n));
                let listed = &t.segments[n - p.segments.len()..];
                let want: f64 = listed
                    .iter()
                    .map(|g| g.duration as f64 / f64::from(t.info.timescale))
                    .sum();
                let got: f64 = p.segments.iter().map(|g| f64::from(g.duration)).sum();
                prop_assert!((want - got).abs() < 1e-3, "{} vs {}", want, got);
                let before = t.segments[..n - listed.len()]
                    .iter()
                    .filter(|g| g.discontinuity)
                    .count() as u64;
                prop_assert_eq!(p.discontinuity_sequence, evicted + before);
            }
        }
    }
}
