//! `/metrics` in the Prometheus text format.
//!
//! Two sources, one page:
//! - event counters and histograms (connections, HTTP requests and their
//!   latency, auth decisions, transcode restarts) go through the `metrics`
//!   facade into `metrics-exporter-prometheus` (no listener of its own: our
//!   axum route renders it). They are touched per connection or request,
//!   never per frame.
//! - per-stream and per-relay series are read at scrape time from state
//!   that already exists (the hub's rates, relay stats) and from
//!   [`StreamStats`], plain atomics the publisher's task stores into per
//!   frame (no lock, no allocation on the media path). They are rendered
//!   here, for at most `metrics.max_streams` streams, so an ended stream
//!   leaves no stale series behind.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::hub::{Hub, StreamEvent};
use crate::media::MediaKind;
use crate::settings::{check, Invalid, Section};

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    pub max_streams: usize,
}

impl Section for Settings {
    const NAME: &'static str = "metrics";
    /// The exporter is set up once, at start-up.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.max_streams <= 100_000,
            "metrics.max_streams",
            "must be at most 100000",
        )
    }
}

/// Latency buckets (seconds) for HTTP and webhook histograms.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder, installed on first use. `None` if another
/// recorder was installed first (an embedding program's).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            // Series that exist before anything happens, so dashboards and
            // alerts see zeros rather than nothing.
            counter!("castgate_transcode_restarts_total").absolute(0);
            counter!("castgate_auth_denied_total", "action" => "publish").absolute(0);
            counter!("castgate_auth_denied_total", "action" => "play").absolute(0);
            Some(handle)
        })
        .as_ref()
}

/// Per-publish numbers the media path stores into (relaxed atomics).
#[derive(Default)]
pub struct StreamStats {
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    pub bytes: AtomicU64,
    pub keyframes: AtomicU64,
    last_key_dts: AtomicI64,
    /// Milliseconds between the last two video keyframes (0: not yet).
    pub keyframe_interval_ms: AtomicI64,
    pub bframes: AtomicBool,
    last_video_dts: AtomicI64,
    last_audio_dts: AtomicI64,
    has_video: AtomicBool,
    has_audio: AtomicBool,
    pub timestamp_repairs: AtomicU64,
    pub bad_tags: AtomicU64,
}

impl StreamStats {
    /// Called for every event the publisher sends: a few relaxed stores.
    #[inline]
    pub fn observe(&self, ev: &StreamEvent) {
        let StreamEvent::Frame(f) = ev else {
            return;
        };
        self.bytes.fetch_add(f.data.len() as u64, Ordering::Relaxed);
        match f.kind() {
            MediaKind::Video => {
                self.video_frames.fetch_add(1, Ordering::Relaxed);
                self.last_video_dts.store(f.dts, Ordering::Relaxed);
                self.has_video.store(true, Ordering::Relaxed);
                if f.cts != 0 {
                    self.bframes.store(true, Ordering::Relaxed);
                }
                if f.keyframe {
                    let n = self.keyframes.fetch_add(1, Ordering::Relaxed);
                    let last = self.last_key_dts.swap(f.dts, Ordering::Relaxed);
                    if n > 0 {
                        self.keyframe_interval_ms
                            .store(f.dts - last, Ordering::Relaxed);
                    }
                }
            }
            MediaKind::Audio => {
                self.audio_frames.fetch_add(1, Ordering::Relaxed);
                self.last_audio_dts.store(f.dts, Ordering::Relaxed);
                self.has_audio.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Video minus audio decode time of the latest frames, in seconds.
    fn drift(&self) -> Option<f64> {
        (self.has_video.load(Ordering::Relaxed) && self.has_audio.load(Ordering::Relaxed)).then(
            || {
                (self.last_video_dts.load(Ordering::Relaxed)
                    - self.last_audio_dts.load(Ordering::Relaxed)) as f64
                    / 1000.0
            },
        )
    }
}

/// The live publishes' stats, by stream. Touched at publish start and end
/// and at scrape time.
/// Stream key → (publish id, stats).
type StatsMap = BTreeMap<String, (u64, Arc<StreamStats>)>;

#[derive(Clone, Default)]
pub struct Streams {
    inner: Arc<Mutex<StatsMap>>,
    next: Arc<AtomicU64>,
}

/// Unregisters a publish's stats when dropped.
pub struct StatsGuard {
    streams: Streams,
    key: String,
    id: u64,
    pub stats: Arc<StreamStats>,
}

impl Drop for StatsGuard {
    fn drop(&mut self) {
        let mut m = self.streams.lock();
        if m.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            m.remove(&self.key);
        }
    }
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, StatsMap> {
        crate::locks::lock(&self.inner)
    }

    /// Registers a new publish of `key` (replacing a taken-over one's).
    pub fn register(&self, key: &str) -> StatsGuard {
        let stats = Arc::new(StreamStats::default());
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key.to_string(), (id, stats.clone()));
        StatsGuard {
            streams: self.clone(),
            key: key.to_string(),
            id,
            stats,
        }
    }

    /// Whether `key` has a live publish's stats registered.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    fn snapshot(&self) -> Vec<(String, Arc<StreamStats>)> {
        self.lock()
            .iter()
            .map(|(k, (_, s))| (k.clone(), s.clone()))
            .collect()
    }
}

/// Tracks one connection in `castgate_connections{protocol,state}`.
pub struct ConnGauge {
    protocol: &'static str,
    state: &'static str,
}

impl ConnGauge {
    pub fn new(protocol: &'static str) -> ConnGauge {
        counter!("castgate_connections_accepted_total", "protocol" => protocol).increment(1);
        gauge!("castgate_connections", "protocol" => protocol, "state" => "handshake")
            .increment(1.0);
        ConnGauge {
            protocol,
            state: "handshake",
        }
    }

    /// Moves the connection to another protocol label: the RTMP variant
    /// is known only once the handshake has begun (`rtmp` → `rtmpe`).
    pub fn set_protocol(&mut self, protocol: &'static str) {
        if protocol == self.protocol {
            return;
        }
        gauge!("castgate_connections", "protocol" => self.protocol, "state" => self.state)
            .decrement(1.0);
        gauge!("castgate_connections", "protocol" => protocol, "state" => self.state)
            .increment(1.0);
        self.protocol = protocol;
    }

    /// `handshake`, `connected`, `publishing`, `playing`.
    pub fn set(&mut self, state: &'static str) {
        if state == self.state {
            return;
        }
        gauge!("castgate_connections", "protocol" => self.protocol, "state" => self.state)
            .decrement(1.0);
        gauge!("castgate_connections", "protocol" => self.protocol, "state" => state)
            .increment(1.0);
        self.state = state;
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        gauge!("castgate_connections", "protocol" => self.protocol, "state" => self.state)
            .decrement(1.0);
    }
}

/// A refused publish or play.
pub fn auth_denied(action: &'static str) {
    counter!("castgate_auth_denied_total", "action" => action).increment(1);
}

/// An auth webhook call and how it ended (`allow`, `deny`, `error`).
pub fn auth_webhook_call(outcome: &'static str, took: Duration) {
    counter!("castgate_auth_webhook_calls_total", "outcome" => outcome).increment(1);
    histogram!("castgate_auth_webhook_duration_seconds").record(took.as_secs_f64());
}

/// The hook for the transcode supervisor: a transcoder was restarted.
pub fn transcode_restart() {
    counter!("castgate_transcode_restarts_total").increment(1);
}

/// One HTTP request: `route` is a small fixed set (see `http::route_of`).
pub fn http_request(route: &'static str, status: u16, took: Duration) {
    counter!("castgate_http_requests_total", "route" => route, "status" => status_label(status))
        .increment(1);
    if matches!(route, "playlist" | "mpd" | "segment" | "init") {
        histogram!("castgate_http_request_duration_seconds", "route" => route)
            .record(took.as_secs_f64());
    }
}

/// A media request for a stream another node owns (`edge`): `result` is
/// `hit`, `coalesced`, `fetched`, `failed` or `refused`.
pub fn edge_request(route: &'static str, result: &'static str) {
    counter!("castgate_edge_requests_total", "route" => route, "result" => result).increment(1);
}

/// A request another cluster node made here for its viewers (the
/// upstream side of `castgate_edge_requests_total`).
pub fn peer_request(route: &'static str) {
    counter!("castgate_cluster_peer_requests_total", "route" => route).increment(1);
}

fn status_label(status: u16) -> &'static str {
    const CODES: &[(u16, &str)] = &[
        (200, "200"),
        (204, "204"),
        (206, "206"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    CODES.iter().find(|(c, _)| *c == status).map_or(
        match status / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        |(_, s)| s,
    )
}

/// What the scrape reads besides the recorder.
#[derive(Clone)]
pub struct Sources {
    pub hub: Hub,
    pub streams: Streams,
    pub relays: crate::egress::Relays,
    pub max_streams: usize,
    /// HLS and DASH viewers.
    pub viewers: crate::viewers::Viewers,
    /// Webhook delivery counters.
    pub events: crate::webhooks::Webhooks,
    /// Series rendered by other modules (the SRT listener's).
    pub extra: Vec<Arc<dyn Render>>,
}

/// The whole page.
pub fn render(src: &Sources) -> String {
    let mut out = handle().map(|h| h.render()).unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    render_state(src, &mut out);
    out
}

/// Escapes a label value (`\`, `"`, newline).
pub fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Series another module renders at each scrape, from state only it
/// knows (the SRT listener's connections), so that this module imports
/// none of them.
pub trait Render: Send + Sync {
    /// Writes its families; at most `max_series` series per family.
    fn render(&self, f: &mut Family<'_>, max_series: usize);
}

/// The page being written: families of series.
pub struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    /// A family's `# HELP` and `# TYPE` lines.
    pub fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    /// One series: `labels` already escaped (`esc`), without braces.
    pub fn line(&mut self, name: &str, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {v}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {v}");
        }
    }
}

fn render_state(src: &Sources, out: &mut String) {
    let infos = src.hub.streams();
    let live: Vec<_> = infos.iter().filter(|i| i.publisher.is_some()).collect();
    let mut f = Family { out };
    let shown = render_stream_counts(&mut f, &live, src.max_streams);
    render_per_stream(&mut f, &shown, &src.streams);
    render_players(&mut f, &shown, &src.viewers);
    render_relays(&mut f, &src.relays, src.max_streams);
    for r in &src.extra {
        r.render(&mut f, src.max_streams);
    }
    render_webhooks(&mut f, &src.events);
}

/// How many streams are live and how many get no per-stream series; the
/// streams that get them.
fn render_stream_counts<'a>(
    f: &mut Family<'_>,
    live: &[&'a crate::hub::StreamInfo],
    max_streams: usize,
) -> Vec<&'a crate::hub::StreamInfo> {
    f.head(
        "castgate_streams_live",
        "gauge",
        "Streams with a publisher.",
    );
    f.line("castgate_streams_live", "", live.len() as f64);
    let shown: Vec<_> = live.iter().take(max_streams).copied().collect();
    f.head(
        "castgate_streams_unlabelled",
        "gauge",
        "Live streams beyond metrics.max_streams (no per-stream series).",
    );
    f.line(
        "castgate_streams_unlabelled",
        "",
        (live.len() - shown.len()) as f64,
    );
    shown
}

/// The per-stream series from the hub and the publishes' stats.
fn render_per_stream(f: &mut Family<'_>, shown: &[&crate::hub::StreamInfo], streams: &Streams) {
    let stats: BTreeMap<String, Arc<StreamStats>> = streams.snapshot().into_iter().collect();
    type Get = fn(&crate::hub::StreamInfo, Option<&StreamStats>) -> Option<f64>;
    let per_stream: &[(&str, &str, &str, Get)] = &[
        (
            "castgate_stream_ingest_video_kbps",
            "gauge",
            "Video ingest bitrate over the last seconds of media time.",
            |i, _| i.video_kbps,
        ),
        (
            "castgate_stream_ingest_audio_kbps",
            "gauge",
            "Audio ingest bitrate over the last seconds of media time.",
            |i, _| i.audio_kbps,
        ),
        (
            "castgate_stream_fps",
            "gauge",
            "Video frames per second of media time.",
            |i, _| i.fps,
        ),
        (
            "castgate_stream_keyframe_interval_seconds",
            "gauge",
            "Media time between the last two video keyframes.",
            |_, s| {
                let ms = s?.keyframe_interval_ms.load(Ordering::Relaxed);
                (ms > 0).then(|| ms as f64 / 1000.0)
            },
        ),
        (
            "castgate_stream_bframes",
            "gauge",
            "1 when the video has composition offsets (B-frames).",
            |_, s| Some(f64::from(u8::from(s?.bframes.load(Ordering::Relaxed)))),
        ),
        (
            "castgate_stream_av_drift_seconds",
            "gauge",
            "Decode time of the latest video frame minus the latest audio frame.",
            |_, s| s?.drift(),
        ),
        (
            "castgate_stream_timestamp_repairs_total",
            "counter",
            "Timestamps castgate repaired (jumps, non-monotonic input).",
            |_, s| Some(s?.timestamp_repairs.load(Ordering::Relaxed) as f64),
        ),
        (
            "castgate_stream_bad_tags_total",
            "counter",
            "Publisher tags dropped as unreadable.",
            |_, s| Some(s?.bad_tags.load(Ordering::Relaxed) as f64),
        ),
        (
            "castgate_stream_video_frames_total",
            "counter",
            "Video frames received in this publish.",
            |_, s| Some(s?.video_frames.load(Ordering::Relaxed) as f64),
        ),
        (
            "castgate_stream_audio_frames_total",
            "counter",
            "Audio frames received in this publish.",
            |_, s| Some(s?.audio_frames.load(Ordering::Relaxed) as f64),
        ),
        (
            "castgate_stream_ingest_bytes_total",
            "counter",
            "Media bytes received in this publish.",
            |_, s| Some(s?.bytes.load(Ordering::Relaxed) as f64),
        ),
        (
            "castgate_stream_player_frames_dropped_total",
            "counter",
            "Frames the stream's current RTMP players (consumers) lost to their drop policy.",
            |i, _| Some(i.subscribers_dropped as f64),
        ),
    ];
    for (name, kind, help, get) in per_stream {
        f.head(name, kind, help);
        for i in shown {
            let s = stats.get(&i.key).map(|s| &**s);
            if let Some(v) = get(i, s) {
                f.line(name, &format!("stream=\"{}\"", esc(&i.key)), v);
            }
        }
    }
}

/// Players by protocol: RTMP from the hub, HLS and DASH from the viewer
/// tracker (3 series per labelled stream), and the tracker's own state.
fn render_players(
    f: &mut Family<'_>,
    shown: &[&crate::hub::StreamInfo],
    viewers: &crate::viewers::Viewers,
) {
    let now = std::time::Instant::now();
    viewers.sweep(now);
    let http: Vec<_> = shown.iter().map(|i| viewers.count(&i.key, now)).collect();
    f.head(
        "castgate_stream_players",
        "gauge",
        "Players of the stream by protocol: RTMP subscribers; HLS and DASH clients (address + User-Agent) served a manifest lately.",
    );
    for (i, h) in shown.iter().zip(&http) {
        let stream = esc(&i.key);
        for (protocol, n) in [("rtmp", i.subscribers), ("hls", h.hls), ("dash", h.dash)] {
            f.line(
                "castgate_stream_players",
                &format!("stream=\"{stream}\",protocol=\"{protocol}\""),
                n as f64,
            );
        }
    }
    f.head(
        "castgate_stream_players_capped",
        "gauge",
        "1 while the stream's HLS/DASH player counts are lower bounds (a tracking cap was reached).",
    );
    for (i, h) in shown.iter().zip(&http) {
        f.line(
            "castgate_stream_players_capped",
            &format!("stream=\"{}\"", esc(&i.key)),
            f64::from(u8::from(h.capped)),
        );
    }
    f.head(
        "castgate_viewers_tracked",
        "gauge",
        "HLS/DASH client entries held by the viewer tracker (bounded by http.max_viewers_tracked).",
    );
    f.line("castgate_viewers_tracked", "", viewers.tracked() as f64);
    f.head(
        "castgate_viewers_untracked_total",
        "counter",
        "New HLS/DASH clients not tracked because a cap was reached.",
    );
    f.line(
        "castgate_viewers_untracked_total",
        "",
        viewers.refused() as f64,
    );
}

/// Relays by state, and per relay (at most `max_relays` of them).
fn render_relays(f: &mut Family<'_>, relays: &crate::egress::Relays, max_relays: usize) {
    let relays = relays.list();
    f.head("castgate_relays", "gauge", "Relays by state.");
    for state in [
        "waiting",
        "connecting",
        "live",
        "backoff",
        "stopped",
        "failed",
    ] {
        let n = relays
            .iter()
            .filter(|r| relay_state(r.state) == state)
            .count();
        f.line("castgate_relays", &format!("state=\"{state}\""), n as f64);
    }
    let shown_relays: Vec<_> = relays.iter().take(max_relays).collect();
    type RelayGet = fn(&crate::egress::RelayInfo) -> f64;
    let per_relay: &[(&str, &str, &str, RelayGet)] = &[
        (
            "castgate_relay_up",
            "gauge",
            "1 while the relay is live.",
            |r| f64::from(u8::from(r.state == crate::egress::RelayState::Live)),
        ),
        (
            "castgate_relay_bytes_sent_total",
            "counter",
            "Bytes sent to the destination.",
            |r| r.bytes_sent as f64,
        ),
        (
            "castgate_relay_reconnects_total",
            "counter",
            "Connection attempts after a failure.",
            |r| r.reconnects as f64,
        ),
        (
            "castgate_relay_frames_dropped_total",
            "counter",
            "Frames the relay (a consumer) lost to its drop policy.",
            |r| r.frames_dropped as f64,
        ),
    ];
    for (name, kind, help, get) in per_relay {
        f.head(name, kind, help);
        for r in &shown_relays {
            let labels = format!(
                "relay=\"{}\",stream=\"{}\",protocol=\"{}\",state=\"{}\"",
                r.id,
                esc(&r.stream),
                esc(&r.protocol),
                relay_state(r.state)
            );
            f.line(name, &labels, get(r));
        }
    }
}

/// Webhook deliveries by outcome.
fn render_webhooks(f: &mut Family<'_>, events: &crate::webhooks::Webhooks) {
    let c = events.counters();
    f.head(
        "castgate_webhook_events_total",
        "counter",
        "Webhook events by outcome (delivered, failed_attempt, dropped).",
    );
    for (outcome, v) in [
        ("delivered", &c.delivered),
        ("failed_attempt", &c.failed_attempts),
        ("dropped", &c.dropped),
    ] {
        f.line(
            "castgate_webhook_events_total",
            &format!("outcome=\"{outcome}\""),
            v.load(Ordering::Relaxed) as f64,
        );
    }
}

fn relay_state(s: crate::egress::RelayState) -> &'static str {
    use crate::egress::RelayState::*;
    match s {
        Waiting => "waiting",
        Connecting => "connecting",
        Live => "live",
        Backoff => "backoff",
        Stopped => "stopped",
        Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Frame};

    fn frame(codec: Codec, dts: i64, cts: i32, key: bool) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec,
            dts,
            cts,
            keyframe: key,
            data: bytes::Bytes::from_static(&[0; 10]),
        })
    }

    #[test]
    fn stream_stats() {
        let s = StreamStats::default();
        s.observe(&frame(Codec::H264, 0, 0, true));
        s.observe(&frame(Codec::Aac, 0, 0, true));
        s.observe(&frame(Codec::H264, 33, 66, false));
        s.observe(&frame(Codec::H264, 2000, 0, true));
        s.observe(&frame(Codec::Aac, 1950, 0, true));
        assert_eq!(s.keyframe_interval_ms.load(Ordering::Relaxed), 2000);
        assert!(s.bframes.load(Ordering::Relaxed));
        assert_eq!(s.drift(), Some(0.05));
        assert_eq!(s.bytes.load(Ordering::Relaxed), 50);
        assert_eq!(s.video_frames.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn registry_keeps_the_newest_publish() {
        let streams = Streams::default();
        let a = streams.register("live/a");
        let b = streams.register("live/a");
        drop(a);
        assert_eq!(streams.snapshot().len(), 1, "a takeover keeps its stats");
        drop(b);
        assert!(streams.snapshot().is_empty());
    }

    /// Per-stream series stop at `max_streams`; the rest are counted.
    #[tokio::test]
    async fn per_stream_series_are_capped() {
        let hub = Hub::new(crate::hub::HubConfig::default());
        let relays = crate::egress::Relays::new(
            hub.clone(),
            crate::egress::RelaySettings::default(),
            Vec::new(),
            crate::webhooks::Webhooks::default(),
        );
        let _p: Vec<_> = ["live/a", "live/b", "live/c"]
            .iter()
            .map(|k| {
                hub.publish(&crate::stream_key::StreamKey::parse(k).unwrap(), "peer")
                    .unwrap()
            })
            .collect();
        let src = Sources {
            events: crate::webhooks::Webhooks::default(),
            extra: Vec::new(),
            hub,
            streams: Streams::default(),
            relays,
            max_streams: 2,
            viewers: crate::viewers::Viewers::default(),
        };
        let mut out = String::new();
        render_state(&src, &mut out);
        assert!(out.contains("castgate_streams_live 3\n"), "{out}");
        assert!(out.contains("castgate_streams_unlabelled 1\n"), "{out}");
        let labelled: std::collections::BTreeSet<&str> = out
            .lines()
            .filter(|l| l.starts_with("castgate_stream_players{"))
            .filter_map(|l| l.split(',').next())
            .collect();
        assert_eq!(labelled.len(), 2, "{out}");
        // Three protocols each.
        let series = out
            .lines()
            .filter(|l| l.starts_with("castgate_stream_players{"))
            .count();
        assert_eq!(series, 6, "{out}");
    }

    /// HLS and DASH viewers are series of their own next to RTMP's.
    #[tokio::test]
    async fn players_by_protocol() {
        use crate::viewers::{Fetch, HttpProtocol, Viewers};
        let hub = Hub::new(crate::hub::HubConfig::default());
        let relays = crate::egress::Relays::new(
            hub.clone(),
            crate::egress::RelaySettings::default(),
            Vec::new(),
            crate::webhooks::Webhooks::default(),
        );
        let _p = hub
            .publish(
                &crate::stream_key::StreamKey::parse("live/a").unwrap(),
                "peer",
            )
            .unwrap();
        let _rtmp = hub.subscribe("live/a");
        let viewers = Viewers::default();
        // An hour-long target: the window cannot pass while the test runs.
        let target = Duration::from_secs(3600);
        let now = std::time::Instant::now();
        for (n, proto) in [HttpProtocol::Hls, HttpProtocol::Hls, HttpProtocol::Dash]
            .into_iter()
            .enumerate()
        {
            let c = viewers.client(std::net::IpAddr::from([192, 0, 2, n as u8]), None);
            viewers.record("live/a", c, Fetch::Manifest(proto), target, now);
        }
        let src = Sources {
            events: crate::webhooks::Webhooks::default(),
            extra: Vec::new(),
            hub,
            streams: Streams::default(),
            relays,
            max_streams: 10,
            viewers,
        };
        let mut out = String::new();
        render_state(&src, &mut out);
        for line in [
            "castgate_stream_players{stream=\"live/a\",protocol=\"rtmp\"} 1\n",
            "castgate_stream_players{stream=\"live/a\",protocol=\"hls\"} 2\n",
            "castgate_stream_players{stream=\"live/a\",protocol=\"dash\"} 1\n",
            "castgate_stream_players_capped{stream=\"live/a\"} 0\n",
            "castgate_viewers_tracked 3\n",
            "castgate_viewers_untracked_total 0\n",
        ] {
            assert!(out.contains(line), "{line} in:\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
