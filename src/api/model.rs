//! The API's JSON bodies.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::egress::RelayInfo;
use crate::hub::StreamInfo;
use crate::media::CodecConfig;

/// `POST /relays`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRelay {
    /// The stream to relay, `APP/KEY` (it need not be live yet).
    #[schema(example = "live/cam")]
    pub stream: String,
    /// `rtmp://host[:port]/app/key`, `rtmps://…`, `rtmpe://…` (encrypted RTMP),
    /// `rtmfp://…` (RTMP over UDP),
    /// `srt://host:port?streamid=…&passphrase=…&latency=MS` (caller) or
    /// `srt://[ip]:port?mode=listener` (only on `egress.srt_listen`). The
    /// egress policy refuses internal addresses (`[egress]`).
    #[schema(example = "rtmps://live-api-s.facebook.com:443/rtmp/KEY")]
    pub target: String,
    /// RTMPS: a PEM file of CA certificates to trust besides the web roots
    /// (read on the server, only inside `egress.ca_dir`).
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// RTMPS: `false` turns certificate verification off.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// RTMP/RTMPS: `true` sends H.264, AAC and MP3 only (legacy FLV), for
    /// a destination that cannot read Enhanced RTMP; other tracks are left
    /// out. By default every codec goes, HEVC, AV1, VP9, Opus, FLAC, AC-3
    /// and E-AC-3 in Enhanced RTMP tags.
    #[serde(default)]
    pub legacy_only: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RelayList {
    pub relays: Vec<RelayInfo>,
}

/// `POST /sources`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    /// The stream it publishes, `APP/KEY`.
    #[schema(example = "live/cam1")]
    pub stream: String,
    /// `rtmp://host[:port]/app/key`, `rtmps://…`, or
    /// `srt://host:port?streamid=…&passphrase=…&latency=MS` (castgate
    /// calls). The egress policy refuses internal addresses (`[egress]`).
    #[schema(example = "rtmp://camera.example/live/main")]
    pub url: String,
    /// Pull only while someone watches the stream (RTMP/SRT players, API
    /// relays, HLS/DASH requests); stop `source.on_demand_idle_secs` after.
    #[serde(default)]
    pub on_demand: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<crate::sources::SourceInfo>,
}

/// The SRT listener's connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct SrtList {
    pub sessions: Vec<crate::srt::SrtSession>,
}

/// The cluster as this node sees it in Redis (`[cluster]`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// False on a single node (no `[cluster] redis_url`): the lists are empty.
    pub enabled: bool,
    /// This node's id.
    pub node: String,
    /// Live nodes, by id.
    pub nodes: Vec<ClusterNode>,
    /// Every stream published in the cluster, with the node that owns it.
    pub streams: Vec<ClusterStream>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNode {
    pub node: String,
    pub http: String,
    pub rtmp: String,
    /// Streams it publishes.
    pub streams: u64,
    /// Its RTMP/SRT players and HLS/DASH viewers.
    pub viewers: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterStream {
    /// `APP/NAME`.
    pub stream: String,
    /// The node that publishes it (holds its lease).
    pub node: String,
    /// Its fencing token: it rises with every new owner.
    pub token: u64,
    /// Whether this node is the owner.
    pub here: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<StreamView>,
}

/// A live stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    /// `app/key`.
    pub stream: String,
    pub app: String,
    pub key: String,
    /// The publisher's address.
    pub publisher: String,
    /// What it publishes over: `rtmp`, `rtmpe`, `rtmps`, `rtmpt`,
    /// `rtmpte`, `rtmpts`, `srt`, `pull` (a pulled source) or `transcode`
    /// (a rendition).
    pub protocol: String,
    pub uptime_secs: f64,
    pub video: Option<VideoTrack>,
    pub audio: Option<AudioTrack>,
    /// Audio and video, over the last few seconds of media.
    pub bitrate_kbps: Option<f64>,
    /// Players over every protocol (the sum of `players_by_protocol`).
    pub players: usize,
    /// RTMP players (queued subscribers: `rtmp play` clients and the
    /// stream's transcoder), and HLS and DASH viewers: distinct clients
    /// (address and User-Agent) served the stream's playlist or MPD, kept
    /// counted by any request within 3 target durations.
    pub players_by_protocol: PlayerCounts,
    /// The HLS/DASH counts reached a tracking cap
    /// (`http.max_viewers_tracked_per_stream`, `http.max_viewers_tracked`)
    /// within the last window: they are lower bounds.
    pub players_capped: bool,
    /// Relays of this stream (ids).
    pub relays: Vec<u64>,
    /// The stream's transcode job (ffmpeg state and progress), if it has one.
    pub transcode: Option<crate::transcode::TranscodeView>,
    /// The recording running for the stream (the API's if it started one,
    /// else a `[[record]]` rule's), or null.
    pub recording: Option<crate::record::RecordingStatus>,
    /// Someone waits on the stream at low latency: an RTMP or SRT player,
    /// a relay, or a low-latency HLS/DASH request in the last 3 s.
    pub low_latency_wanted: bool,
    /// How often castgate reads the publisher's socket, in ms:
    /// `rtmp.read_batch_secs` while `low_latency_wanted`, else
    /// `rtmp.read_batch_unwatched_secs`; null when it reads bytes as they
    /// arrive (RTMPS, RTMPT, SRT, pulled sources, or batching off).
    pub read_every_ms: Option<u64>,
    /// Media bytes its HLS/DASH packaging holds in memory (segments,
    /// parts, init segments; not those spilled to disk under
    /// `package.memory_budget_bytes`), or null when it is not packaged.
    pub package_memory_bytes: Option<u64>,
}

/// `GET /recordings`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<crate::record::RecordingFile>,
    /// The scan reached a bound (files, entries or depth): some
    /// recordings are not listed.
    pub truncated: bool,
}

/// `DELETE /streams/{app}/{key}/recording`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingsStopped {
    pub stopped: Vec<crate::record::RecordingStatus>,
}

/// Players of a stream by protocol (more protocols, e.g. SRT, may be added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlayerCounts {
    pub rtmp: usize,
    pub hls: usize,
    pub dash: usize,
}

impl PlayerCounts {
    pub fn total(&self) -> usize {
        self.rtmp + self.hls + self.dash
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoTrack {
    /// `h264`, `hevc`, `av1` or `vp9`.
    pub codec: String,
    /// RFC 6381, e.g. `avc1.64001f`.
    pub codec_string: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    pub bitrate_kbps: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AudioTrack {
    /// `aac`, `mp3`, `opus`, `flac`, `ac3` or `eac3`.
    pub codec: String,
    pub codec_string: String,
    pub sample_rate: u32,
    pub channels: u8,
    pub bitrate_kbps: Option<f64>,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl StreamView {
    pub fn new(
        s: StreamInfo,
        relays: Vec<u64>,
        http: crate::viewers::ViewerCounts,
        now: Instant,
    ) -> StreamView {
        let (app, key) = s.key.split_once('/').unwrap_or((&s.key, ""));
        let video = s.video.as_deref().map(|c| {
            let (width, height) = c.picture_size();
            VideoTrack {
                codec: c.codec().id().into(),
                codec_string: c.codec_string(),
                width,
                height,
                fps: s.fps.map(round1),
                bitrate_kbps: s.video_kbps.map(round1),
            }
        });
        let audio = s.audio.as_deref().map(|c| {
            let (sample_rate, channels) = c.audio_format();
            AudioTrack {
                codec: c.codec().id().into(),
                codec_string: match c {
                    // As browsers' MediaSource names MP3.
                    CodecConfig::Mp3(_) => "mp4a.40.34".into(),
                    c => c.codec_string(),
                },
                sample_rate,
                channels,
                bitrate_kbps: s.audio_kbps.map(round1),
            }
        });
        let bitrate_kbps = match (s.video_kbps, s.audio_kbps) {
            (None, None) => None,
            (v, a) => Some(round1(v.unwrap_or(0.0) + a.unwrap_or(0.0))),
        };
        let by_protocol = PlayerCounts {
            rtmp: s.subscribers,
            hls: http.hls,
            dash: http.dash,
        };
        StreamView {
            app: app.to_string(),
            key: key.to_string(),
            publisher: s.publisher.clone().unwrap_or_default(),
            protocol: s.publisher_protocol.unwrap_or_default().to_string(),
            uptime_secs: round1(
                s.since
                    .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64()),
            ),
            video,
            audio,
            bitrate_kbps,
            players: by_protocol.total(),
            players_by_protocol: by_protocol,
            players_capped: http.capped,
            relays,
            stream: s.key,
            transcode: None,
            recording: None,
            low_latency_wanted: s.low_latency_wanted,
            read_every_ms: s.read_period.map(|p| p.as_millis() as u64),
            package_memory_bytes: None,
        }
    }
}
