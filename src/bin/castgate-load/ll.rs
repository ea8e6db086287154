//! Low-latency HLS players (`--player-mode ll`): blocking playlist reloads
//! (`?_HLS_msn=M&_HLS_part=P` for the next part), every new part fetched,
//! the preload-hinted part requested alongside the reload as LL-HLS players
//! do, and the delay from a part's completion at the server to the reload
//! answer that listed it.
//!
//! When a part completes: the segmenter closes a video part on the frame
//! that follows its last one (a frame's duration is its successor's DTS
//! gap), so a part is complete once castgate has the frame whose decode time
//! is the part's end. The end comes from the part's own `moof` (`tfdt` plus
//! the `trun` sample durations, in the track timescale of the init's
//! `mdhd`): exact to the tick, where PROGRAM-DATE-TIME plus summed
//! EXT-X-PART durations carry millisecond and rounding error. Video decode
//! times are the RTMP milliseconds × 90, so the end maps back to one RTMP
//! timestamp, and the publisher of this process logged when it wrote that
//! frame ([`SendLog`]). Only video parts are timed: audio decode times come
//! from sample counts, not from one sent frame.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};

use crate::http::{resolve, split_url, HttpClient, Response};

/// Largest playlist parsed; a live LL playlist is a few kilobytes.
const MAX_PLAYLIST: usize = 1 << 20;
/// Most lines and parts one playlist may have.
const MAX_LINES: usize = 50_000;
const MAX_PARTS: usize = 10_000;
/// Longest URI accepted in a playlist.
const MAX_URI: usize = 2048;
/// Video frames each stream's [`SendLog`] remembers (over two minutes at 30 fps).
const SEND_LOG_FRAMES: usize = 4096;
/// Part URIs a rendition remembers having fetched.
const FETCHED_MEMORY: usize = 64;
/// Pause after an error or an answer that brought nothing new, so a
/// misbehaving server is not hammered.
const BACKOFF: Duration = Duration::from_millis(100);

/// When each video frame of one stream left the publisher: (RTMP timestamp
/// in ms, the instant the write carrying it returned).
#[derive(Default)]
pub struct SendLog {
    frames: Mutex<VecDeque<(u64, Instant)>>,
    /// Set once the publisher has written its last frame.
    finished: std::sync::atomic::AtomicBool,
}

impl SendLog {
    /// Records `timestamps` as written at `at`, and empties it.
    pub fn record(&self, timestamps: &mut Vec<u64>, at: Instant) {
        if timestamps.is_empty() {
            return;
        }
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        for ts in timestamps.drain(..) {
            if frames.len() == SEND_LOG_FRAMES {
                frames.pop_front();
            }
            frames.push_back((ts, at));
        }
    }

    /// The publisher has written its last frame.
    pub fn finish(&self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn finished(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The first frame sent at or after `ms`: its timestamp and send
    /// instant. None when it is not sent yet or already forgotten.
    fn first_at_or_after(&self, ms: u64) -> Option<(u64, Instant)> {
        let frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if frames.front().is_none_or(|f| f.0 > ms) {
            return None;
        }
        let i = frames.partition_point(|f| f.0 < ms);
        frames.get(i).copied()
    }
}

/// A part listed by a media playlist, with its position.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    msn: u64,
    index: u64,
    uri: String,
}

/// What an LL player needs of a media playlist.
#[derive(Debug, Default, PartialEq)]
struct MediaPlaylist {
    /// The last EXT-X-MAP's URI.
    map: Option<String>,
    parts: Vec<Part>,
    /// The position right after the last listed part: what a blocking
    /// reload asks for next.
    next: (u64, u64),
    /// EXT-X-PRELOAD-HINT:TYPE=PART's URI.
    hint: Option<String>,
}

/// `KEY=value` pairs of an attribute list, quotes removed.
fn attributes(list: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (value, tail) = quoted.split_once('"')?;
                (value, tail.split_once(',').map_or("", |(_, n)| n))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        rest = next;
        Some((key.trim(), value))
    })
}

fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    attributes(list).find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn uri(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > MAX_URI {
        return Err(format!("URI of {} bytes", value.len()));
    }
    Ok(value.to_string())
}

/// Parses a media playlist: parts are numbered from EXT-X-MEDIA-SEQUENCE
/// (plus EXT-X-SKIP's skipped segments), one msn per segment URI line, part
/// indexes from 0 within each segment.
fn parse_media(text: &str) -> Result<MediaPlaylist, String> {
    if text.len() > MAX_PLAYLIST {
        return Err(format!("playlist of {} bytes", text.len()));
    }
    if !text.starts_with("#EXTM3U") {
        return Err("not a playlist".into());
    }
    let mut out = MediaPlaylist::default();
    let mut msn = 0u64;
    let mut index = 0u64;
    for (n, line) in text.lines().map(str::trim).enumerate() {
        if n >= MAX_LINES {
            return Err("too many lines".into());
        }
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.parse().map_err(|_| format!("bad {line:?}"))?;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-SKIP:") {
            let skipped: u64 = attribute(attrs, "SKIPPED-SEGMENTS")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad {line:?}"))?;
            msn += skipped;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
            out.map = Some(uri(attribute(attrs, "URI").unwrap_or(""))?);
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
            if out.parts.len() == MAX_PARTS {
                return Err("too many parts".into());
            }
            out.parts.push(Part {
                msn,
                index,
                uri: uri(attribute(attrs, "URI").unwrap_or(""))?,
            });
            index += 1;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            if attribute(attrs, "TYPE") == Some("PART") {
                out.hint = Some(uri(attribute(attrs, "URI").unwrap_or(""))?);
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            msn += 1;
            index = 0;
        }
    }
    out.next = (msn, index);
    Ok(out)
}

/// The rendition a master playlist's player follows: its first variant and
/// the audio rendition of that variant's group. A media playlist is its own
/// only rendition.
fn renditions(base: &str, text: &str) -> Vec<String> {
    if !text.contains("#EXT-X-STREAM-INF") {
        return vec![base.to_string()];
    }
    let mut variant: Option<(String, Option<String>)> = None;
    let mut media: Vec<(String, String)> = Vec::new();
    let mut group: Option<Option<String>> = None;
    for line in text.lines().map(str::trim).take(MAX_LINES) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            group = Some(attribute(attrs, "AUDIO").map(str::to_string));
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-MEDIA:") {
            if let (Some("AUDIO"), Some(g), Some(u)) = (
                attribute(attrs, "TYPE"),
                attribute(attrs, "GROUP-ID"),
                attribute(attrs, "URI"),
            ) {
                media.push((g.to_string(), resolve(base, u)));
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            if let (Some(g), None) = (group.take(), &variant) {
                variant = Some((resolve(base, line), g));
            }
        }
    }
    let Some((path, audio)) = variant else {
        return Vec::new();
    };
    let mut out = vec![path];
    if let Some(g) = audio {
        out.extend(
            media
                .into_iter()
                .filter(|(mg, _)| *mg == g)
                .map(|(_, u)| u)
                .take(1),
        );
    }
    out
}

/// ISO BMFF boxes of `data`: (type, body). Stops at the first malformed box.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().ok()?;
        let (header, size) = match size32 {
            0 => (8, rest.len()),
            1 => {
                let large = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
                (16, usize::try_from(large).ok()?)
            }
            n => (8, n),
        };
        if size < header || size > rest.len() {
            return None;
        }
        let body = &rest[header..size];
        rest = &rest[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn be64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// The media timescale of an init segment's video track (`hdlr` `vide`);
/// None for audio or anything unreadable.
fn video_timescale(init: &[u8]) -> Option<u32> {
    let moov = child(init, b"moov")?;
    boxes(moov)
        .filter(|(k, _)| k == b"trak")
        .find_map(|(_, trak)| {
            let mdia = child(trak, b"mdia")?;
            let hdlr = child(mdia, b"hdlr")?;
            if hdlr.get(8..12)? != b"vide" {
                return None;
            }
            let mdhd = child(mdia, b"mdhd")?;
            match mdhd.first()? {
                1 => be32(mdhd, 20),
                _ => be32(mdhd, 12),
            }
        })
        .filter(|&t| t > 0)
}

/// A part's media end time: the last `moof`'s `tfdt` plus its `trun`
/// sample durations (or the `tfhd` default duration), in track ticks.
fn media_end(part: &[u8]) -> Option<u64> {
    let mut end = None;
    for (_, moof) in boxes(part).filter(|(k, _)| k == b"moof") {
        let traf = child(moof, b"traf")?;
        let tfhd = child(traf, b"tfhd")?;
        let tfhd_flags = be32(tfhd, 0)? & 0xFF_FFFF;
        let mut at = 8 + if tfhd_flags & 0x01 != 0 { 8 } else { 0 };
        at += if tfhd_flags & 0x02 != 0 { 4 } else { 0 };
        let default_duration = if tfhd_flags & 0x08 != 0 {
            be32(tfhd, at)
        } else {
            None
        };
        let tfdt = child(traf, b"tfdt")?;
        let mut time = match tfdt.first()? {
            1 => be64(tfdt, 4)?,
            _ => u64::from(be32(tfdt, 4)?),
        };
        for (_, trun) in boxes(traf).filter(|(k, _)| k == b"trun") {
            let flags = be32(trun, 0)? & 0xFF_FFFF;
            let count = be32(trun, 4)? as usize;
            let mut at = 8 + if flags & 0x01 != 0 { 4 } else { 0 };
            at += if flags & 0x04 != 0 { 4 } else { 0 };
            let per_sample = [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|&&f| flags & f != 0)
                .count()
                * 4;
            if count.checked_mul(per_sample)? > trun.len().saturating_sub(at) {
                return None;
            }
            for _ in 0..count {
                let duration = if flags & 0x100 != 0 {
                    be32(trun, at)?
                } else {
                    default_duration?
                };
                time += u64::from(duration);
                at += per_sample;
            }
        }
        end = Some(time);
    }
    end
}

/// Delay distribution of one measure, in milliseconds.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Distribution {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Distribution {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    fn of(samples: &mut [f64]) -> Distribution {
        samples.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let n = samples.len();
            (n > 0).then(|| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Distribution {
            count: samples.len(),
            p50_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: samples.last().copied(),
        }
    }
}

/// What the LL players saw, summed over all of them.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LlReport {
    pub players: usize,
    pub playlist_requests: u64,
    pub blocking_reloads: u64,
    /// Parts received (video and audio), and their bytes.
    pub parts: u64,
    pub part_bytes: u64,
    /// Hinted parts requested before they were listed.
    pub hinted_fetches: u64,
    /// Hinted part requests that brought nothing: refused, or still held
    /// when the reload moved past them (the part never came under that
    /// name). Not errors: the part, if listed, is fetched as listed.
    pub hints_unused: u64,
    /// Part completed at castgate → the blocking reload listing it answered.
    pub listed_delay: Distribution,
    /// Part completed at castgate → its bytes received.
    pub part_fetch_delay: Distribution,
    /// Timed parts whose blocking reload was sent after the part completed
    /// (the player was late, so the delay includes its own lag).
    pub not_held: u64,
    /// Timed parts whose end time is no sent frame's timestamp (the mapping
    /// was not exact), or whose frame was not in the send log.
    pub end_mismatch: u64,
    pub unmapped: u64,
    /// Parts ending past the publisher's last frame: a stream's final part,
    /// flushed when the publish stopped (not timed).
    pub final_parts: u64,
    /// Every error: the three kinds below plus unreadable playlists or parts.
    pub errors: u64,
    /// 400 answers (a blocking reload too far ahead).
    pub status_400: u64,
    /// Other non-200 answers (a 404 before the stream's first playlist is
    /// not one).
    pub bad_status: u64,
    pub io_errors: u64,
    /// Blocking reloads answered without a new part.
    pub answers_without_new_part: u64,
}

/// One player's counters and raw samples.
#[derive(Default)]
pub struct LlPlayer {
    counts: LlReport,
    listed_ms: Vec<f64>,
    fetch_ms: Vec<f64>,
}

impl LlReport {
    /// Adds one player's (or rendition's) counters and samples to these.
    fn absorb(&mut self, p: LlPlayer, listed: &mut Vec<f64>, fetch: &mut Vec<f64>) {
        let c = p.counts;
        self.playlist_requests += c.playlist_requests;
        self.blocking_reloads += c.blocking_reloads;
        self.parts += c.parts;
        self.part_bytes += c.part_bytes;
        self.hinted_fetches += c.hinted_fetches;
        self.hints_unused += c.hints_unused;
        self.not_held += c.not_held;
        self.end_mismatch += c.end_mismatch;
        self.unmapped += c.unmapped;
        self.final_parts += c.final_parts;
        self.errors += c.errors;
        self.status_400 += c.status_400;
        self.bad_status += c.bad_status;
        self.io_errors += c.io_errors;
        self.answers_without_new_part += c.answers_without_new_part;
        listed.extend(p.listed_ms);
        fetch.extend(p.fetch_ms);
    }

    /// Sums the players' counters and computes the distributions.
    pub fn merge(players: Vec<LlPlayer>) -> LlReport {
        let mut r = LlReport {
            players: players.len(),
            ..Default::default()
        };
        let mut listed = Vec::new();
        let mut fetch = Vec::new();
        for p in players {
            r.absorb(p, &mut listed, &mut fetch);
        }
        r.listed_delay = Distribution::of(&mut listed);
        r.part_fetch_delay = Distribution::of(&mut fetch);
        r
    }
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        a.duration_since(b).as_secs_f64() * 1000.0
    } else {
        -(b.duration_since(a).as_secs_f64() * 1000.0)
    }
}

impl LlPlayer {
    fn status(&mut self, response: &std::io::Result<Response>) -> bool {
        match response {
            Ok(r) if r.status == 200 => return true,
            Ok(r) if r.status == 400 => self.counts.status_400 += 1,
            Ok(_) => self.counts.bad_status += 1,
            Err(_) => self.counts.io_errors += 1,
        }
        self.counts.errors += 1;
        false
    }
}

/// Plays `url` (master or media playlist) in low-latency mode until `end`:
/// each rendition (the first variant and its audio) is followed at once.
pub async fn play(url: String, log: Arc<SendLog>, end: Instant) -> LlPlayer {
    let mut player = LlPlayer::default();
    let Ok((addr, path)) = split_url(&url) else {
        player.counts.errors += 1;
        return player;
    };
    let mut client = HttpClient::new(&addr);
    let renditions = loop {
        if Instant::now() >= end {
            return player;
        }
        player.counts.playlist_requests += 1;
        let response = tokio::select! {
            r = client.get(&path) => r,
            _ = sleep_until(end) => return player,
        };
        match response {
            // Not published yet.
            Ok(r) if r.status == 404 => {}
            r if player.status(&r) => {
                let text = String::from_utf8_lossy(&r.unwrap().body).into_owned();
                let found = renditions(&path, &text);
                if !found.is_empty() {
                    break found;
                }
                player.counts.errors += 1;
            }
            _ => {}
        }
        sleep(BACKOFF).await;
    };
    // Each rendition opens its own connections; this one is done.
    drop(client);
    let followers = renditions.into_iter().enumerate().map(|(i, path)| {
        let addr = addr.clone();
        let log = (i == 0).then(|| log.clone());
        async move {
            let mut p = LlPlayer::default();
            follow(&addr, &path, log.as_deref(), end, &mut p).await;
            p
        }
    });
    for p in futures_util::future::join_all(followers).await {
        player
            .counts
            .absorb(p, &mut player.listed_ms, &mut player.fetch_ms);
    }
    player
}

/// A fetched part body and when it arrived.
struct Fetched {
    uri: String,
    body: Vec<u8>,
    at: Instant,
}

/// Follows one media playlist with blocking reloads until `end`. `log`:
/// the publisher's send log when this rendition's parts are to be timed.
async fn follow(addr: &str, path: &str, log: Option<&SendLog>, end: Instant, p: &mut LlPlayer) {
    let mut playlists = HttpClient::new(addr);
    let mut parts = HttpClient::new(addr);
    // Next position to ask for with a blocking reload (None: a plain
    // reload), and the first position not yet taken.
    let mut want: Option<(u64, u64)> = None;
    let mut taken: Option<(u64, u64)> = None;
    let mut hint: Option<String> = None;
    let mut map: Option<String> = None;
    let mut timescale: Option<u32> = None;
    let mut fetched: VecDeque<String> = VecDeque::new();
    let mut prefetched: VecDeque<Fetched> = VecDeque::new();
    while Instant::now() < end {
        let target = match want {
            Some((msn, part)) => format!("{path}?_HLS_msn={msn}&_HLS_part={part}"),
            None => path.to_string(),
        };
        let hinted = hint
            .take()
            .filter(|u| want.is_some() && !fetched.contains(u));
        let sent = Instant::now();
        let blocking = want.is_some();
        // The reload and the hinted part are asked for at once, on two
        // connections. The player moves on when the reload is answered:
        // the hinted part is awaited only if that answer lists it (at a
        // segment boundary the hinted part may never exist).
        let (response, answered, hinted_response, abandoned) = {
            let reload = async {
                let r = playlists.get(&target).await;
                (r, Instant::now())
            };
            let prefetch = async {
                match &hinted {
                    Some(u) => Some((parts.get(u).await, Instant::now())),
                    None => None,
                }
            };
            tokio::pin!(reload, prefetch);
            let mut hinted_response = None;
            let (response, answered) = loop {
                tokio::select! {
                    r = &mut reload => break r,
                    r = &mut prefetch, if hinted.is_some() && hinted_response.is_none() => {
                        hinted_response = r;
                    }
                    _ = sleep_until(end) => return,
                }
            };
            let playlist = match response {
                Ok(r) if r.status == 404 && taken.is_none() => None,
                r if p.status(&r) => {
                    let text = String::from_utf8_lossy(&r.unwrap().body).into_owned();
                    let parsed = parse_media(&text);
                    if parsed.is_err() {
                        p.counts.errors += 1;
                    }
                    parsed.ok()
                }
                _ => None,
            };
            let mut abandoned = false;
            if let (Some(uri), None) = (&hinted, &hinted_response) {
                let listed = playlist
                    .as_ref()
                    .is_some_and(|pl| pl.parts.iter().any(|x| resolve(path, &x.uri) == *uri));
                if listed {
                    hinted_response = tokio::select! {
                        r = &mut prefetch => r,
                        _ = sleep_until(end) => return,
                    };
                } else {
                    abandoned = true;
                }
            }
            (playlist, answered, hinted_response, abandoned)
        };
        p.counts.playlist_requests += 1;
        if blocking {
            p.counts.blocking_reloads += 1;
        }
        if abandoned {
            // Its request is still outstanding on that connection.
            parts = HttpClient::new(addr);
            p.counts.hints_unused += 1;
        }
        if let (Some(uri), Some((r, at))) = (hinted, hinted_response) {
            p.counts.hinted_fetches += 1;
            match r {
                Ok(r) if r.status == 200 => {
                    remember(&mut fetched, uri.clone());
                    if prefetched.len() == 4 {
                        prefetched.pop_front();
                    }
                    prefetched.push_back(Fetched {
                        uri,
                        body: r.body,
                        at,
                    });
                }
                // Refused or failed: fetched once listed, like any part.
                _ => p.counts.hints_unused += 1,
            }
        }
        let Some(pl) = response else {
            want = None;
            sleep(BACKOFF).await;
            continue;
        };
        if pl.map.is_some() && pl.map != map {
            map = pl.map.clone();
            let uri = resolve(path, map.as_deref().unwrap_or_default());
            let r = parts.get(&uri).await;
            timescale = if p.status(&r) {
                video_timescale(&r.unwrap().body)
            } else {
                None
            };
        }
        let first_new = match taken {
            // Joining: start at the live edge, like a player would.
            None => pl.next,
            Some(t) if pl.next < t => pl.next, // the server started over
            Some(t) => t,
        };
        let mut new = 0;
        for part in pl.parts.iter().filter(|x| (x.msn, x.index) >= first_new) {
            new += 1;
            let uri = resolve(path, &part.uri);
            let got = match prefetched.iter().position(|f| f.uri == uri) {
                Some(i) => prefetched.remove(i),
                None => {
                    let r = parts.get(&uri).await;
                    let at = Instant::now();
                    remember(&mut fetched, uri.clone());
                    p.status(&r).then(|| Fetched {
                        uri,
                        body: r.unwrap().body,
                        at,
                    })
                }
            };
            let Some(got) = got else { continue };
            p.counts.parts += 1;
            p.counts.part_bytes += got.body.len() as u64;
            let (Some(log), Some(ts), true) = (log, timescale, blocking) else {
                continue;
            };
            let Some(end_ticks) = media_end(&got.body) else {
                p.counts.errors += 1;
                continue;
            };
            let end_ms = (u128::from(end_ticks) * 1000).div_ceil(u128::from(ts)) as u64;
            let Some((frame_ms, completed)) = log.first_at_or_after(end_ms) else {
                // The stream's last part ends with its last frame's (guessed) duration: no
                // later frame completed it, so it has nothing to be timed from.
                if log.finished() {
                    p.counts.final_parts += 1;
                } else {
                    p.counts.unmapped += 1;
                }
                continue;
            };
            if u128::from(frame_ms) * u128::from(ts) != u128::from(end_ticks) * 1000 {
                p.counts.end_mismatch += 1;
            }
            if sent > completed {
                p.counts.not_held += 1;
            }
            p.listed_ms.push(signed_ms(answered, completed));
            p.fetch_ms.push(signed_ms(got.at, completed));
        }
        if blocking && new == 0 {
            p.counts.answers_without_new_part += 1;
            sleep(BACKOFF).await;
        }
        taken = Some(pl.next);
        want = Some(pl.next);
        hint = pl.hint.as_deref().map(|u| resolve(path, u));
    }
}

fn remember(fetched: &mut VecDeque<String>, uri: String) {
    if fetched.len() == FETCHED_MEMORY {
        fetched.pop_front();
    }
    fetched.push_back(uri);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n\
        #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXT-X-MAP:URI=\"video/init-1.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00.000Z\n#EXTINF:2.0,\nvideo/seg-7.m4s\n\
        #EXT-X-PART:DURATION=0.2,URI=\"video/part-8.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"video/part-8.1.m4s\"\n\
        #EXTINF:0.4,\nvideo/seg-8.m4s\n\
        #EXT-X-PART:DURATION=0.2,URI=\"video/part-9.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"video/part-9.1.m4s\"\n\
        #EXT-X-RENDITION-REPORT:URI=\"audio.m3u8\",LAST-MSN=9,LAST-PART=0\n";

    #[test]
    fn parts_are_numbered_and_the_next_one_is_after_the_last() {
        let pl = parse_media(LL).unwrap();
        let at: Vec<_> = pl.parts.iter().map(|p| (p.msn, p.index)).collect();
        assert_eq!(at, [(8, 0), (8, 1), (9, 0)]);
        assert_eq!(pl.parts[2].uri, "video/part-9.0.m4s");
        assert_eq!(pl.next, (9, 1));
        assert_eq!(pl.hint.as_deref(), Some("video/part-9.1.m4s"));
        assert_eq!(pl.map.as_deref(), Some("video/init-1.mp4"));
        // A segment just closed: the next part is the next segment's first.
        let closed = LL
            .replace(
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"video/part-9.1.m4s\"\n",
                "",
            )
            .replace(
                "#EXT-X-RENDITION",
                "#EXTINF:0.2,\nvideo/seg-9.m4s\n#EXT-X-RENDITION",
            );
        assert_eq!(parse_media(&closed).unwrap().next, (10, 0));
        // Skipped segments count.
        let skip = LL.replace(
            "#EXT-X-MAP:URI=\"video/init-1.mp4\"\n",
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n",
        );
        assert_eq!(parse_media(&skip).unwrap().next, (12, 1));
    }

    #[test]
    fn bad_playlists_are_refused_not_guessed() {
        assert!(parse_media("hello").is_err());
        assert!(parse_media("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n").is_err());
        assert!(parse_media("#EXTM3U\n#EXT-X-PART:DURATION=0.2\n").is_err());
        let long = format!("#EXTM3U\n#EXT-X-PART:URI=\"{}\"\n", "a".repeat(MAX_URI + 1));
        assert!(parse_media(&long).is_err());
        let many = format!(
            "#EXTM3U\n{}",
            "#EXT-X-PART:URI=\"p\"\n".repeat(MAX_PARTS + 1)
        );
        assert!(parse_media(&many).is_err());
    }

    #[test]
    fn attribute_values_may_hold_commas_in_quotes() {
        let list = "TYPE=AUDIO,GROUP-ID=\"a,b\",NAME=\"x\",URI=\"audio.m3u8\"";
        assert_eq!(attribute(list, "GROUP-ID"), Some("a,b"));
        assert_eq!(attribute(list, "URI"), Some("audio.m3u8"));
        assert_eq!(attribute(list, "TYPE"), Some("AUDIO"));
        assert_eq!(attribute(list, "NOPE"), None);
    }

    #[test]
    fn a_master_playlist_gives_its_first_variant_and_its_audio() {
        let master = "#EXTM3U\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"audio\",URI=\"audio.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"aud\"\nvideo.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2,AUDIO=\"aud\"\nlow/video.m3u8\n";
        assert_eq!(
            renditions("/live/x/index.m3u8", master),
            ["/live/x/video.m3u8", "/live/x/audio.m3u8"]
        );
        assert_eq!(renditions("/live/x/video.m3u8", LL), ["/live/x/video.m3u8"]);
    }

    /// castgate's own CMAF writer is the reference for the box readers.
    #[test]
    fn the_end_of_a_part_and_the_video_timescale_come_from_the_boxes() {
        use castgate::package::cmaf::{fragment, Sample};
        let sample = |duration| Sample {
            duration,
            cts_offset: 0,
            keyframe: false,
            data: bytes::Bytes::from_static(b"abc"),
        };
        let f = fragment(1, 5, 900_000, &[sample(3000), sample(3003), sample(2997)]).unwrap();
        assert_eq!(media_end(&f.to_bytes()), Some(909_000));
        assert_eq!(media_end(b"\0\0\0\x08moov"), None);
        let truncated = f.to_bytes();
        assert_eq!(media_end(&truncated[..truncated.len() / 2]), None);
    }

    #[test]
    fn only_a_video_init_has_a_timescale_to_time_parts_in() {
        use castgate::media::{aac, avc, CodecConfig};
        use castgate::package::cmaf::init_segment;
        let record = bytes::Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
        ]);
        let mut video = avc::parse_decoder_config(record).unwrap();
        (video.width, video.height) = (640, 360);
        let init = init_segment(1, &CodecConfig::Avc(video)).unwrap();
        assert_eq!(video_timescale(&init), Some(90_000));
        let audio = aac::parse_audio_specific_config(bytes::Bytes::from_static(&[0x11, 0x90]));
        let init = init_segment(2, &CodecConfig::Aac(audio.unwrap())).unwrap();
        assert_eq!(video_timescale(&init), None);
        assert_eq!(video_timescale(b"junk"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let d = Distribution::of(&mut v);
        assert_eq!(
            (d.count, d.p50_ms, d.p99_ms, d.max_ms),
            (200, Some(100.0), Some(198.0), Some(200.0))
        );
        assert_eq!(Distribution::of(&mut []).p99_ms, None);
    }

    #[test]
    fn a_part_end_maps_to_the_first_frame_sent_at_or_after_it() {
        let log = SendLog::default();
        let t0 = Instant::now();
        log.record(&mut vec![0, 33], t0);
        log.record(&mut vec![67], t0 + Duration::from_millis(34));
        assert_eq!(log.first_at_or_after(33), Some((33, t0)));
        assert_eq!(
            log.first_at_or_after(34),
            Some((67, t0 + Duration::from_millis(34)))
        );
        assert_eq!(log.first_at_or_after(68), None);
    }
}
