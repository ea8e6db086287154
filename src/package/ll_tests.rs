//! Low-latency HLS and DASH, from a publish to what a player reads: the
//! playlists a live stream goes through, parsed and checked against the
//! rules of RFC 8216bis (LL-HLS), and the held requests (blocking reload,
//! preload hint, growing segment) on a paused clock, so "not before the
//! part is made" and "refused after three target durations" are exact.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::hls::LL_VERSION;
use super::segmenter::SegmenterConfig;
use super::serve::test_support::Live;
use super::serve::{Payload, Refused, Served};
use super::service::HoldLimits;
use super::urls::{self, Directives, Resource};
use crate::hub::{Publisher, StreamEvent};
use crate::locks::lock;
use crate::media::{AacConfig, Codec, CodecConfig, Frame, MediaKind};

const PART: f64 = 0.2;
const TARGET: u32 = 2;

fn ll_config() -> SegmenterConfig {
    SegmenterConfig {
        target: f64::from(TARGET),
        part_target: PART,
        window: 10,
        extra: 3,
        aligned: false,
        low_latency: true,
    }
}

/// A live encoder's output: 30 fps H.264 with a keyframe every second and
/// 48 kHz AAC (1024 samples a frame), sent in time order as a publisher
/// would, up to the media time asked for.
struct Encoder {
    publisher: Publisher,
    frame: i64,
    audio: i64,
}

impl Encoder {
    fn start(live: &Live, key: &str) -> Encoder {
        let publisher = live.publish(key, 0..0);
        let aac = CodecConfig::Aac(AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
            frame_length: 1024,
        });
        publisher.send(StreamEvent::Config(Arc::new(aac)));
        Encoder {
            publisher,
            frame: 0,
            audio: 0,
        }
    }

    fn video_ms(&self) -> i64 {
        (self.frame * 1000 + 15) / 30
    }

    fn audio_ms(&self) -> i64 {
        self.audio * 1024 / 48
    }

    /// Sends every frame before media time `ms`.
    fn until(&mut self, ms: i64) {
        loop {
            let (v, a) = (self.video_ms(), self.audio_ms());
            if v.min(a) >= ms {
                return;
            }
            let frame = if v <= a {
                self.frame += 1;
                let key = (self.frame - 1) % 30 == 0;
                Frame {
                    codec: Codec::H264,
                    dts: v,
                    cts: 0,
                    keyframe: key,
                    data: Bytes::from_static(if key {
                        &[0, 0, 0, 1, 0x65]
                    } else {
                        &[0, 0, 0, 1, 0x41]
                    }),
                }
            } else {
                self.audio += 1;
                Frame {
                    codec: Codec::Aac,
                    dts: a,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::from_static(&[1, 2, 3]),
                }
            };
            self.publisher.send(StreamEvent::Frame(frame));
        }
    }
}

/// The attributes of one tag line (`NAME=VALUE,...`, quoted values
/// unquoted).
fn attrs(line: &str) -> Vec<(String, String)> {
    let body = line.split_once(':').map_or("", |(_, b)| b);
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').expect("NAME=VALUE");
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').expect("closing quote");
            (&q[..end], q[end + 1..].strip_prefix(',').unwrap_or(""))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.push((name.to_string(), value.to_string()));
        rest = next;
    }
    out
}

fn attr<'a>(a: &'a [(String, String)], name: &str) -> Option<&'a str> {
    a.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn num(a: &[(String, String)], name: &str) -> f64 {
    attr(a, name)
        .unwrap_or_else(|| panic!("no {name} in {a:?}"))
        .parse()
        .unwrap()
}

#[derive(Debug, Clone, PartialEq)]
struct Part {
    duration: f64,
    uri: String,
    independent: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Segment {
    duration: f64,
    uri: String,
    parts: Vec<Part>,
}

/// What a low-latency player reads in a media playlist.
#[derive(Debug, Default)]
struct Ll {
    version: u32,
    target: f64,
    media_sequence: u64,
    part_target: f64,
    part_hold_back: f64,
    hold_back: f64,
    skip_until: f64,
    skipped: usize,
    segments: Vec<Segment>,
    /// Parts of the segment being made.
    partial: Vec<Part>,
    hint: Option<String>,
    reports: Vec<(String, u64, usize)>,
    ended: bool,
}

/// Parses `text` as m3u8-rs does (it must accept it) and reads the
/// low-latency tags by hand (m3u8-rs keeps them as unknown tags).
fn parse(text: &str) -> Ll {
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("m3u8-rs rejects the playlist: {e:?}\n{text}"));
    let mut ll = Ll::default();
    let mut parts = Vec::new();
    let mut extinf = None;
    for line in text.lines() {
        let tag = line.split_once(':').map_or(line, |(t, _)| t);
        let a = || attrs(line);
        match tag {
            "#EXT-X-VERSION" => ll.version = line[15..].parse().unwrap(),
            "#EXT-X-TARGETDURATION" => ll.target = line[22..].parse().unwrap(),
            "#EXT-X-MEDIA-SEQUENCE" => ll.media_sequence = line[22..].parse().unwrap(),
            "#EXT-X-PART-INF" => ll.part_target = num(&a(), "PART-TARGET"),
            "#EXT-X-SERVER-CONTROL" => {
                let a = a();
                assert_eq!(attr(&a, "CAN-BLOCK-RELOAD"), Some("YES"), "{line}");
                ll.part_hold_back = num(&a, "PART-HOLD-BACK");
                ll.hold_back = num(&a, "HOLD-BACK");
                ll.skip_until = num(&a, "CAN-SKIP-UNTIL");
            }
            "#EXT-X-SKIP" => ll.skipped = num(&a(), "SKIPPED-SEGMENTS") as usize,
            "#EXT-X-PART" => {
                let a = a();
                parts.push(Part {
                    duration: num(&a, "DURATION"),
                    uri: attr(&a, "URI").unwrap().to_string(),
                    independent: attr(&a, "INDEPENDENT") == Some("YES"),
                });
            }
            "#EXT-X-PRELOAD-HINT" => {
                let a = a();
                assert_eq!(attr(&a, "TYPE"), Some("PART"), "{line}");
                ll.hint = Some(attr(&a, "URI").unwrap().to_string());
            }
            "#EXT-X-RENDITION-REPORT" => {
                let a = a();
                ll.reports.push((
                    attr(&a, "URI").unwrap().to_string(),
                    num(&a, "LAST-MSN") as u64,
                    num(&a, "LAST-PART") as usize,
                ));
            }
            "#EXTINF" => extinf = Some(line[8..].trim_end_matches(',').parse().unwrap()),
            "#EXT-X-ENDLIST" => ll.ended = true,
            _ if !line.starts_with('#') && !line.is_empty() => ll.segments.push(Segment {
                duration: extinf.take().expect("a URI without EXTINF"),
                uri: line.to_string(),
                parts: std::mem::take(&mut parts),
            }),
            _ => {}
        }
    }
    ll.partial = parts;
    assert_eq!(parsed.segments.len(), ll.segments.len(), "{text}");
    assert_eq!(parsed.media_sequence, ll.media_sequence, "{text}");
    ll
}

/// `video/part-12.3.m4s` -> (12, 3).
fn part_position(uri: &str) -> (u64, usize) {
    let (msn, idx) = uri
        .rsplit_once("part-")
        .and_then(|(_, r)| r.strip_suffix(".m4s"))
        .and_then(|r| r.split_once('.'))
        .unwrap_or_else(|| panic!("not a part URI: {uri}"));
    (msn.parse().unwrap(), idx.parse().unwrap())
}

/// `video/seg-12.m4s` -> 12.
fn segment_number(uri: &str) -> u64 {
    let (_, r) =
        urls::parse(&format!("/live/k/{uri}")).unwrap_or_else(|| panic!("not a media URI: {uri}"));
    match r {
        Resource::Segment(_, n) => n,
        other => panic!("{uri} is {other:?}"),
    }
}

/// Every rule of RFC 8216bis a low-latency media playlist of `kind` must
/// follow (§4.4.3.7–§4.4.5.3 and §6.2.5).
fn check_rules(ll: &Ll, kind: MediaKind, text: &str) {
    let eps = 1e-4;
    assert_eq!(ll.version, LL_VERSION, "{text}");
    assert!((ll.part_target - PART).abs() < eps, "{text}");
    assert!(ll.part_hold_back >= 3.0 * ll.part_target - eps, "{text}");
    assert!(ll.hold_back >= 3.0 * ll.target - eps, "{text}");
    assert!(ll.skip_until >= 6.0 * ll.target - eps, "{text}");
    let mut all_parts = Vec::new();
    for (i, seg) in ll.segments.iter().enumerate() {
        // Consecutive media sequence numbers, from MEDIA-SEQUENCE and skips.
        let msn = ll.media_sequence + (ll.skipped + i) as u64;
        assert_eq!(segment_number(&seg.uri), msn, "{text}");
        assert!(seg.duration <= ll.target + 0.5, "{text}");
        if seg.parts.is_empty() {
            continue;
        }
        // A segment's parts add up to it.
        let sum: f64 = seg.parts.iter().map(|p| p.duration).sum();
        assert!(
            (sum - seg.duration).abs() < eps * (seg.parts.len() as f64 + 1.0),
            "segment {msn}: parts add up to {sum}, EXTINF {}\n{text}",
            seg.duration
        );
        // A segment starts at a keyframe: its first part is independent.
        assert!(seg.parts[0].independent, "{text}");
        all_parts.extend(seg.parts.iter().map(|p| (msn, p)));
    }
    let partial_msn = ll.media_sequence + (ll.skipped + ll.segments.len()) as u64;
    all_parts.extend(ll.partial.iter().map(|p| (partial_msn, p)));
    if let Some((_, first)) = ll.partial.first().map(|p| (0, p)) {
        assert!(
            first.independent,
            "the segment being made starts at a keyframe\n{text}"
        );
    }
    // Parts: at most PART-TARGET, numbered from 0 within their segment.
    let mut expected: Option<(u64, usize)> = None;
    for (msn, p) in &all_parts {
        assert!(p.duration <= ll.part_target + 1e-5, "{p:?}\n{text}");
        assert!(p.duration > 0.0, "{p:?}\n{text}");
        let (m, i) = part_position(&p.uri);
        assert_eq!(m, *msn, "{text}");
        assert!(p.uri.starts_with(urls::track_name(kind)), "{text}");
        match expected {
            Some((em, ei)) if em == m => assert_eq!(i, ei, "{text}"),
            _ => assert_eq!(i, 0, "{text}"),
        }
        expected = Some((m, i + 1));
        if kind == MediaKind::Audio {
            assert!(p.independent, "every audio frame is a sync sample\n{text}");
        }
    }
    // Parts only for the last segments, and for at least the last three
    // target durations of the playlist (or all of it).
    let with_parts = ll.segments.iter().filter(|s| !s.parts.is_empty()).count();
    assert!(
        ll.segments[ll.segments.len() - with_parts..]
            .iter()
            .all(|s| !s.parts.is_empty()),
        "{text}"
    );
    let covered: f64 = all_parts.iter().map(|(_, p)| p.duration).sum();
    let total: f64 = ll.segments.iter().map(|s| s.duration).sum::<f64>()
        + ll.partial.iter().map(|p| p.duration).sum::<f64>();
    assert!(
        covered >= (3.0 * ll.target).min(total) - eps,
        "parts cover {covered} s of {total}\n{text}"
    );
    // The preload hint names the part after the last one listed.
    if ll.ended {
        assert_eq!(ll.hint, None, "{text}");
    } else {
        let hint = ll
            .hint
            .as_deref()
            .expect("a live playlist hints its next part");
        let next = match (ll.partial.last(), all_parts.last()) {
            (Some(p), _) => {
                let (m, i) = part_position(&p.uri);
                (m, i + 1)
            }
            (None, _) => (partial_msn, 0),
        };
        assert_eq!(part_position(hint), next, "{text}");
    }
}

async fn playlist(live: &Live, key: &str, kind: MediaKind, d: Directives) -> String {
    let served = live
        .store
        .answer(key, Resource::MediaPlaylist(kind), d, &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    text(&served).to_string()
}

fn text(s: &Served) -> &str {
    match &s.payload {
        Payload::Text(t) => t,
        other => panic!("not a manifest: {other:?}"),
    }
}

fn live_ll() -> Live {
    Live::with(ll_config(), HoldLimits::default())
}

/// A 40 s publish read every 50 ms of media: every video and audio
/// playlist, full and delta, follows the rules; the rendition reports
/// name the other track's last part; delta updates leave out exactly the
/// segments that end before the skip boundary, and list the rest as the
/// full playlist does.
#[tokio::test]
async fn every_playlist_of_a_live_publish_follows_the_ll_hls_rules() {
    let live = live_ll();
    let key = "live/rules";
    let mut enc = Encoder::start(&live, key);
    let mut skipped_some = false;
    let mut partial_seen = false;
    for ms in (50..40_000).step_by(50) {
        enc.until(ms);
        if !lock(&live.store.get(key).unwrap()).has_segments() {
            continue;
        }
        let mut last = Vec::new();
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let full_text = playlist(&live, key, kind, Directives::default()).await;
            let full = parse(&full_text);
            check_rules(&full, kind, &full_text);
            partial_seen |= !full.partial.is_empty();
            let skip = Directives {
                skip: true,
                ..Directives::default()
            };
            let delta_text = playlist(&live, key, kind, skip).await;
            let delta = parse(&delta_text);
            check_rules(&delta, kind, &delta_text);
            // The delta lists the full playlist's last segments, as they are.
            assert_eq!(delta.media_sequence, full.media_sequence, "{delta_text}");
            assert_eq!(
                delta.segments[..],
                full.segments[delta.skipped..],
                "{delta_text}\n{full_text}"
            );
            // Skipped: only segments ending at least CAN-SKIP-UNTIL before
            // the end; the first one kept would not have been.
            let after = |from: usize| -> f64 {
                full.segments[from..]
                    .iter()
                    .map(|s| s.duration)
                    .sum::<f64>()
            };
            if delta.skipped > 0 {
                skipped_some = true;
                assert!(
                    after(delta.skipped) >= full.skip_until - 1e-4,
                    "{delta_text}"
                );
            }
            if delta.skipped < full.segments.len() {
                assert!(after(delta.skipped + 1) < full.skip_until, "{delta_text}");
            }
            let last_part = |ll: &Ll| {
                ll.partial
                    .last()
                    .or_else(|| ll.segments.last().and_then(|s| s.parts.last()))
                    .map(|p| part_position(&p.uri))
            };
            last.push((full.reports.clone(), last_part(&full)));
        }
        // Rendered from the same state: each playlist reports the other's
        // last part exactly.
        let (video_reports, video_last) = &last[0];
        let (audio_reports, audio_last) = &last[1];
        if let Some((msn, part)) = audio_last {
            assert_eq!(video_reports, &[("audio.m3u8".to_string(), *msn, *part)]);
        }
        if let Some((msn, part)) = video_last {
            assert_eq!(audio_reports, &[("video.m3u8".to_string(), *msn, *part)]);
        }
    }
    assert!(skipped_some, "no delta update ever skipped a segment");
    assert!(partial_seen, "no playlist listed a segment being made");
    // Once ended: no hint, ENDLIST, the rules still hold.
    live.packager.end_all();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let text = playlist(&live, key, kind, Directives::default()).await;
        let ll = parse(&text);
        assert!(ll.ended, "{text}");
        check_rules(&ll, kind, &text);
    }
}

/// The position a blocking reload for the part after the last listed one
/// asks for.
async fn next_part(live: &Live, key: &str) -> (u64, usize) {
    let ll = parse(&playlist(live, key, MediaKind::Video, Directives::default()).await);
    let hint = ll.hint.expect("live");
    part_position(&hint)
}

fn reload(msn: u64, part: usize) -> Directives {
    Directives {
        msn: Some(msn),
        part: Some(part),
        skip: false,
    }
}

/// Lets every other task run until none can make progress.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A blocking reload for the next part is held (one place among the held
/// requests) until the packager makes that part, and answered with a
/// playlist listing it; a request too far ahead is refused with 400 at
/// once.
#[tokio::test(start_paused = true)]
async fn a_blocking_reload_is_answered_once_its_part_is_made() {
    let live = live_ll();
    let key = "live/block";
    let mut enc = Encoder::start(&live, key);
    enc.until(5_000);
    let (msn, part) = next_part(&live, key).await;
    let store = live.store.clone();
    let held = tokio::spawn(async move {
        store
            .answer(
                key,
                Resource::MediaPlaylist(MediaKind::Video),
                reload(msn, part),
                &[],
            )
            .await
    });
    settle().await;
    assert!(!held.is_finished(), "answered before the part exists");
    assert_eq!(live.store.held(), 1);
    // One frame short of the part: still held.
    let mut ms = 5_000;
    loop {
        ms += 33;
        enc.until(ms);
        settle().await;
        let pos = lock(&live.store.get(key).unwrap()).position(MediaKind::Video);
        let made = pos.last_part.is_some_and(|p| p >= (msn, part));
        assert_eq!(held.is_finished(), made, "at {ms} ms, {pos:?}");
        if made {
            break;
        }
        assert!(ms < 6_000, "the part was never made");
    }
    let served = held.await.unwrap().unwrap();
    let ll = parse(text(&served));
    let listed: Vec<_> = ll
        .segments
        .iter()
        .flat_map(|s| &s.parts)
        .chain(&ll.partial)
        .map(|p| part_position(&p.uri))
        .collect();
    assert!(listed.contains(&(msn, part)), "{}", text(&served));
    assert_eq!(live.store.held(), 0);
    // Cacheable by its query for as long as a player could ask it.
    assert!(matches!(
        served.cache,
        super::serve::CachePolicy::Live { max_age } if max_age >= Duration::from_secs(6)
    ));

    // Too far ahead: 400, held by nobody.
    for (m, p) in [(msn + 3, 0), (msn, part + 100)] {
        let r = live
            .store
            .answer(
                key,
                Resource::MediaPlaylist(MediaKind::Video),
                reload(m, p),
                &[],
            )
            .await;
        assert!(matches!(r, Err(Refused::BadRequest(_))), "{m}.{p}: {r:?}");
    }
    assert_eq!(live.store.held(), 0);
}

/// A held reload is released when the stream ends (with the playlist that
/// exists, ENDLIST included), and one that nothing satisfies within three
/// target durations gets 503.
#[tokio::test(start_paused = true)]
async fn held_reloads_are_released_by_the_end_and_by_time() {
    let live = live_ll();
    let key = "live/release";
    let mut enc = Encoder::start(&live, key);
    enc.until(5_000);
    let (msn, part) = next_part(&live, key).await;
    // Nothing more is published: after 3 target durations, 503.
    let started = tokio::time::Instant::now();
    let r = live
        .store
        .answer(
            key,
            Resource::MediaPlaylist(MediaKind::Video),
            reload(msn, part),
            &[],
        )
        .await;
    assert!(matches!(r, Err(Refused::Unavailable(_))), "{r:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3 * u64::from(TARGET))
    );
    assert_eq!(live.store.held(), 0);

    let store = live.store.clone();
    let held = tokio::spawn(async move {
        store
            .answer(
                key,
                Resource::MediaPlaylist(MediaKind::Video),
                reload(msn, part),
                &[],
            )
            .await
    });
    settle().await;
    assert!(!held.is_finished());
    live.packager.end_all();
    let served = held.await.unwrap().unwrap();
    assert!(parse(text(&served)).ended, "{}", text(&served));
    assert_eq!(live.store.held(), 0);
}

/// A publisher that leaves and comes back within grace (its clock starting
/// again at 0): a reload held across the gap, for a part the segment cut
/// short at the stop never got, is not broken by it: it is answered once
/// the returning publisher has made a part, with the playlist marking the
/// discontinuity.
#[tokio::test(start_paused = true)]
async fn a_held_reload_survives_a_return_within_grace() {
    let live = live_ll();
    let key = "live/return";
    let mut enc = Encoder::start(&live, key);
    enc.until(5_000);
    settle().await;
    // Beyond what the frames left at the stop can finish (they close the
    // segment with the hinted part and at most one more).
    let (msn, hinted) = next_part(&live, key).await;
    let part = hinted + 3;
    let store = live.store.clone();
    let held = tokio::spawn(async move {
        store
            .answer(
                key,
                Resource::MediaPlaylist(MediaKind::Video),
                reload(msn, part),
                &[],
            )
            .await
    });
    settle().await;
    drop(enc);
    settle().await;
    assert!(!held.is_finished(), "answered while the publisher was away");
    let mut back = Encoder::start(&live, key);
    let mut ms = 0;
    while !held.is_finished() {
        ms += 33;
        back.until(ms);
        settle().await;
        assert!(ms < 5_000, "the held reload was never answered");
    }
    let served = held.await.unwrap().unwrap();
    let text = text(&served);
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    let ll = parse(text);
    assert!(!ll.ended, "{text}");
    let (next, _) = part_position(&ll.hint.expect("live"));
    assert!(next > msn, "{text}");
    assert_eq!(live.store.held(), 0);
}

/// The bounds on held requests: past the per-stream or the total count a
/// request is refused with 503 at once, and every place comes back.
#[tokio::test(start_paused = true)]
async fn the_bound_on_held_requests_refuses_cleanly() {
    let live = Live::with(
        ll_config(),
        HoldLimits {
            per_stream: 2,
            total: 3,
        },
    );
    let mut a = Encoder::start(&live, "live/a");
    let mut b = Encoder::start(&live, "live/b");
    a.until(5_000);
    b.until(5_000);
    let spawn = |key: &'static str, (msn, part): (u64, usize)| {
        let store = live.store.clone();
        tokio::spawn(async move {
            store
                .answer(
                    key,
                    Resource::MediaPlaylist(MediaKind::Video),
                    reload(msn, part),
                    &[],
                )
                .await
        })
    };
    let next_a = next_part(&live, "live/a").await;
    let next_b = next_part(&live, "live/b").await;
    let waiting = vec![spawn("live/a", next_a), spawn("live/a", next_a)];
    settle().await;
    assert_eq!(live.store.held(), 2);
    let over_stream = spawn("live/a", next_a);
    let r = over_stream.await.unwrap();
    assert!(matches!(r, Err(Refused::Unavailable(_))), "{r:?}");
    let third = spawn("live/b", next_b);
    settle().await;
    assert_eq!(live.store.held(), 3);
    let over_total = spawn("live/b", next_b);
    let r = over_total.await.unwrap();
    assert!(matches!(r, Err(Refused::Unavailable(_))), "{r:?}");
    a.until(6_000);
    b.until(6_000);
    for h in waiting.into_iter().chain([third]) {
        assert!(h.await.unwrap().is_ok());
    }
    assert_eq!(live.store.held(), 0);
}

fn media_bytes(s: &Served) -> Vec<u8> {
    match &s.payload {
        Payload::Chunks(c) => c.concat(),
        other => panic!("not stored media: {other:?}"),
    }
}

/// The part being written (chunks out, not finished) of `key`'s video.
fn growing_part(live: &Live, key: &str) -> Option<(u64, usize)> {
    lock(&live.store.get(key).unwrap())
        .position(MediaKind::Video)
        .growing
}

/// A preload hint asked for before its part starts is held; once the
/// part's first frame is packaged it is sent as it grows, frame by frame
/// (the body grows after each frame, before the part is finished), and
/// all of it is the part its URL serves afterwards.
#[tokio::test(start_paused = true)]
async fn a_preload_hint_is_sent_frame_by_frame_as_its_part_is_made() {
    let live = live_ll();
    let key = "live/hint";
    let mut enc = Encoder::start(&live, key);
    enc.until(5_000);
    // Just after a part is finished: the hinted one has not started.
    let mut ms = 5_000;
    while growing_part(&live, key).is_some() {
        ms += 5;
        enc.until(ms);
    }
    let (msn, part) = next_part(&live, key).await;
    let resource = Resource::Part(MediaKind::Video, msn, part);
    let store = live.store.clone();
    let held = tokio::spawn(async move {
        store
            .answer(key, resource, Directives::default(), &[])
            .await
    });
    settle().await;
    assert!(!held.is_finished(), "part {msn}.{part} has not started");
    while !held.is_finished() {
        ms += 5;
        enc.until(ms);
        settle().await;
        assert!(ms < 6_000, "part {msn}.{part} never started");
    }
    let served = held.await.unwrap().unwrap();
    let Payload::Growing(mut growing) = served.payload else {
        panic!("not growing: {:?}", served.payload);
    };
    assert_eq!(growing_part(&live, key), Some((msn, part)));
    let body = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let body = Arc::clone(&body);
        tokio::spawn(async move {
            while let Some(chunk) = growing.next_chunk().await {
                body.lock().unwrap().extend_from_slice(&chunk.unwrap());
            }
        })
    };
    // One video frame at a time until the part is finished: the body
    // must grow while it is being made, not only at its end.
    let mut grew_before_finished = 0;
    let mut seen = 0;
    while growing_part(&live, key) == Some((msn, part)) {
        settle().await;
        let len = body.lock().unwrap().len();
        grew_before_finished += usize::from(len > seen);
        seen = len;
        ms += 33;
        enc.until(ms);
    }
    settle().await;
    reader.await.unwrap();
    assert!(
        grew_before_finished >= 3,
        "the part's body grew {grew_before_finished} time(s) before it was finished"
    );
    let again = live.store.serve(key, resource, &[]).unwrap();
    assert_eq!(*body.lock().unwrap(), media_bytes(&again));
    assert_eq!(live.store.held(), 0);
    // A part that can never be near: 404, not held.
    let far = Resource::Part(MediaKind::Video, msn + 5, 0);
    let r = live
        .store
        .answer(key, far, Directives::default(), &[])
        .await;
    assert!(matches!(r, Err(Refused::NotFound(_))), "{r:?}");
}

/// `moof` boxes in `bytes` (top-level boxes only).
fn moofs(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        n += usize::from(&bytes[at + 4..at + 8] == b"moof");
        assert!(size >= 8, "bad box size at {at}");
        at += size;
    }
    assert_eq!(at, bytes.len(), "boxes do not add up");
    n
}

/// In low latency a part is written as about one CMAF chunk per video
/// frame (two AAC frames per audio chunk); classic parts are one chunk.
/// Either way the parts of a segment are the segment.
#[tokio::test]
async fn low_latency_parts_are_chunked_by_frame_classic_parts_are_whole() {
    for low_latency in [true, false] {
        let config = SegmenterConfig {
            low_latency,
            ..ll_config()
        };
        let live = Live::with(config, HoldLimits::default());
        let key = "live/chunks";
        let mut enc = Encoder::start(&live, key);
        enc.until(7_000);
        let stream = live.store.get(key).unwrap();
        let seg = lock(&stream);
        let n = seg.position(MediaKind::Video).last_finished.unwrap();
        for (kind, ll_chunks) in [(MediaKind::Video, 6), (MediaKind::Audio, 5)] {
            let whole = seg.segment(kind, n).unwrap().concat();
            let mut parts = Vec::new();
            for i in 0.. {
                let Some(p) = seg.part(kind, n, i) else { break };
                let p = p.concat();
                let want = if low_latency { ll_chunks } else { 1 };
                // The last part of a segment may be short.
                if seg.part(kind, n, i + 1).is_some() {
                    assert_eq!(
                        moofs(&p),
                        want,
                        "{kind:?} part {n}.{i}, low latency {low_latency}"
                    );
                }
                parts.extend_from_slice(&p);
            }
            assert_eq!(parts, whole, "{kind:?} parts of {n} are not the segment");
        }
    }
}

/// LL-DASH: a segment asked for before it starts is held, then sent as it
/// grows: its first chunk arrives before the segment closes, and all its
/// chunks make exactly the segment served once closed.
#[tokio::test(start_paused = true)]
async fn a_growing_segment_is_sent_as_made_and_equals_the_closed_one() {
    let live = live_ll();
    let key = "live/grow";
    let mut enc = Encoder::start(&live, key);
    enc.until(5_000);
    let (msn, _) = next_part(&live, key).await;
    let next = msn + 1;
    let resource = Resource::Segment(MediaKind::Video, next);
    let store = live.store.clone();
    let held = tokio::spawn(async move {
        store
            .answer(key, resource, Directives::default(), &[])
            .await
    });
    settle().await;
    assert!(!held.is_finished(), "segment {next} has not started");
    let mut ms = 5_000;
    while !held.is_finished() {
        ms += 33;
        enc.until(ms);
        settle().await;
        assert!(ms < 12_000, "segment {next} never started");
    }
    let served = held.await.unwrap().unwrap();
    let Payload::Growing(mut growing) = served.payload else {
        panic!("not growing: {:?}", served.payload);
    };
    let first = growing.next_chunk().await.unwrap().unwrap();
    let closed = |live: &Live| {
        lock(&live.store.get(key).unwrap())
            .position(MediaKind::Video)
            .last_finished
            .is_some_and(|f| f >= next)
    };
    assert!(
        !closed(&live),
        "the first chunk came only after the segment closed"
    );
    let mut body = first.to_vec();
    let reader = tokio::spawn(async move {
        while let Some(chunk) = growing.next_chunk().await {
            body.extend_from_slice(&chunk.unwrap());
        }
        body
    });
    while !closed(&live) {
        ms += 33;
        enc.until(ms);
        settle().await;
    }
    let body = reader.await.unwrap();
    let whole = live.store.serve(key, resource, &[]).unwrap();
    assert_eq!(body, media_bytes(&whole));
    assert_eq!(live.store.held(), 0);
}

/// The video Representation's listed segment numbers in an MPD: from
/// `startNumber`, one per `S` and per repeat.
fn mpd_video_numbers(mpd: &str) -> std::ops::Range<u64> {
    let video = &mpd[mpd.find("contentType=\"video\"").expect("video")..];
    let video = &video[..video.find("</AdaptationSet>").unwrap()];
    let start: u64 = attr_of(video, "startNumber").parse().unwrap();
    let count: u64 = video
        .split("<S ")
        .skip(1)
        .map(|s| {
            1 + s
                .split("r=\"")
                .nth(1)
                .map_or(0, |r| r.split('"').next().unwrap().parse::<u64>().unwrap())
        })
        .sum();
    start..start + count
}

fn attr_of<'a>(xml: &'a str, name: &str) -> &'a str {
    let at = xml
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("no {name}"));
    let rest = &xml[at + name.len() + 3..];
    &rest[..rest.find('"').unwrap()]
}

/// LL-DASH: while live, the MPD lists one segment beyond the last one that
/// exists (the one being made, or the last finished between two segments),
/// so a player asks for it as soon as it is available; a request for it is
/// held until it starts. Once ended, the MPD lists what exists only.
#[tokio::test]
async fn the_mpd_lists_the_next_segment_ahead_while_live() {
    let live = live_ll();
    let key = "live/ahead";
    let mut enc = Encoder::start(&live, key);
    let mpd = |live: &Live| match live.store.serve(key, Resource::Mpd, &[]).unwrap().payload {
        Payload::Text(t) => t,
        other => panic!("not a manifest: {other:?}"),
    };
    let mut checked = (0, 0);
    for ms in (5_000..9_000).step_by(20) {
        enc.until(ms);
        let pos = lock(&live.store.get(key).unwrap()).position(MediaKind::Video);
        let made = pos
            .last_part
            .map(|(n, _)| n)
            .max(pos.last_finished)
            .unwrap();
        let listed = mpd_video_numbers(&mpd(&live));
        assert_eq!(
            listed.end,
            made + 2,
            "at {ms} ms ({pos:?}):\n{}",
            mpd(&live)
        );
        if pos.last_part.is_some_and(|(n, _)| n == made) && pos.last_finished == Some(made) {
            checked.0 += 1; // between two segments: the next one ahead
        } else {
            checked.1 += 1; // a segment being made: it and the next one
        }
    }
    assert!(checked.0 > 0 && checked.1 > 0, "{checked:?}");
    live.packager.end_all();
    let text = mpd(&live);
    let pos = lock(&live.store.get(key).unwrap()).position(MediaKind::Video);
    assert_eq!(
        mpd_video_numbers(&text).end,
        pos.last_finished.unwrap() + 1,
        "{text}"
    );
}
