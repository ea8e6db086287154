//! HTTP side: a watcher per stream that times publish → first playlist and
//! checks the playlist keeps advancing, and players that poll playlists and
//! fetch every new segment the way hls.js does.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};

use crate::http::{resolve, split_url, HttpClient};

/// What the watcher of one stream saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WatchReport {
    pub name: String,
    /// Publish.Start → first playlist listing a segment.
    pub first_playlist_ms: Option<f64>,
    /// Longest time the playlist did not change after the first one.
    pub longest_unchanged_s: f64,
    /// The playlist stopped changing for longer than the stall limit.
    pub stalled: bool,
    pub polls: u64,
    pub errors: u64,
}

/// The identity of a playlist's newest segment, to see it advance.
fn newest_segment(text: &str) -> Option<&str> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// A master playlist's media playlists (variants and renditions).
fn media_playlists(base: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next_is_variant = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#EXT-X-STREAM-INF") {
            next_is_variant = true;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-MEDIA:") {
            if let Some(uri) = attrs
                .split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                out.push(resolve(base, uri));
            }
        } else if next_is_variant && !line.is_empty() && !line.starts_with('#') {
            out.push(resolve(base, line));
            next_is_variant = false;
        }
    }
    out
}

/// Polls `url` (a media playlist) from `started` until `end`: every 100 ms
/// until the first segment appears, then every `interval`.
pub async fn watch(
    name: String,
    url: String,
    started: Instant,
    end: Instant,
    interval: Duration,
    stall: Duration,
) -> WatchReport {
    let mut report = WatchReport {
        name,
        ..Default::default()
    };
    let (addr, path) = match split_url(&url) {
        Ok(x) => x,
        Err(_) => {
            report.errors += 1;
            return report;
        }
    };
    let mut client = HttpClient::new(&addr);
    let mut last: Option<(String, Instant)> = None;
    while Instant::now() < end {
        report.polls += 1;
        match client.get(&path).await {
            Ok(r) if r.status == 200 => {
                let text = String::from_utf8_lossy(&r.body);
                if let Some(seg) = newest_segment(&text) {
                    let now = Instant::now();
                    if report.first_playlist_ms.is_none() {
                        report.first_playlist_ms =
                            Some(now.duration_since(started).as_secs_f64() * 1000.0);
                    }
                    match &mut last {
                        Some((s, at)) if s == seg => {
                            let unchanged = now.duration_since(*at);
                            report.longest_unchanged_s =
                                report.longest_unchanged_s.max(unchanged.as_secs_f64());
                            if unchanged > stall {
                                report.stalled = true;
                            }
                        }
                        _ => last = Some((seg.to_string(), now)),
                    }
                }
            }
            Ok(r) if r.status == 404 => {}
            _ => report.errors += 1,
        }
        let wait = if report.first_playlist_ms.is_some() {
            interval
        } else {
            Duration::from_millis(100)
        };
        sleep_until((Instant::now() + wait).min(end)).await;
    }
    if report.first_playlist_ms.is_none() {
        report.stalled = true;
    }
    report
}

/// What one player fetched.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PlayerReport {
    pub url: String,
    pub playlist_requests: u64,
    pub segments: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// Plays `url` (a master or media playlist) until `end`: reloads each media
/// playlist every `interval` and fetches every segment (and init section)
/// it has not fetched yet, starting from the newest three like a live player.
pub async fn play_hls(url: String, end: Instant, interval: Duration) -> PlayerReport {
    let mut report = PlayerReport {
        url: url.clone(),
        ..Default::default()
    };
    let Ok((addr, path)) = split_url(&url) else {
        report.errors += 1;
        return report;
    };
    let mut client = HttpClient::new(&addr);
    let mut playlists: Vec<String> = Vec::new();
    let mut fetched: HashSet<String> = HashSet::new();
    while Instant::now() < end {
        if playlists.is_empty() {
            report.playlist_requests += 1;
            match client.get(&path).await {
                Ok(r) if r.status == 200 => {
                    let text = String::from_utf8_lossy(&r.body);
                    let media = media_playlists(&path, &text);
                    playlists = if media.is_empty() {
                        vec![path.clone()]
                    } else {
                        media
                    };
                }
                Ok(r) if r.status == 404 => {}
                _ => report.errors += 1,
            }
            if playlists.is_empty() {
                sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        for pl in &playlists {
            report.playlist_requests += 1;
            let text = match client.get(pl).await {
                Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
                _ => {
                    report.errors += 1;
                    continue;
                }
            };
            let mut wanted: Vec<String> = Vec::new();
            for line in text.lines().map(str::trim) {
                if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
                    if let Some(uri) = attrs
                        .split("URI=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                    {
                        wanted.push(resolve(pl, uri));
                    }
                } else if !line.is_empty() && !line.starts_with('#') {
                    wanted.push(resolve(pl, line));
                }
            }
            // A player joining live starts near the end.
            if fetched.is_empty() && wanted.len() > 4 {
                let keep: Vec<String> = wanted
                    .iter()
                    .filter(|u| u.contains("init"))
                    .cloned()
                    .collect();
                let tail = wanted.split_off(wanted.len() - 3);
                wanted = keep.into_iter().chain(tail).collect();
            }
            for uri in wanted {
                if fetched.contains(&uri) {
                    continue;
                }
                match client.get(&uri).await {
                    Ok(r) if r.status == 200 => {
                        report.segments += 1;
                        report.bytes += r.body.len() as u64;
                    }
                    _ => report.errors += 1,
                }
                fetched.insert(uri);
            }
        }
        if fetched.len() > 10_000 {
            fetched.clear();
        }
        sleep_until((Instant::now() + interval).min(end)).await;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_playlists_name_their_media_playlists() {
        let master =
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"audio\",URI=\"audio.m3u8\"\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nvideo.m3u8\n";
        assert_eq!(
            media_playlists("/live/x/index.m3u8", master),
            ["/live/x/audio.m3u8", "/live/x/video.m3u8"]
        );
        assert!(media_playlists("/hls/x.m3u8", "#EXTM3U\n#EXTINF:2,\nx-1.ts\n").is_empty());
        assert_eq!(
            newest_segment("#EXTM3U\n#EXTINF:2,\nx-1.ts\n#EXTINF:2,\nx-2.ts\n\n"),
            Some("x-2.ts")
        );
        assert_eq!(newest_segment("#EXTM3U\n"), None);
    }
}
