//! `[rtmp]`: the RTMP listener, its connections' limits and timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hub::PublishConflict;
use crate::rtmp::chunk::ChunkLimits;
use crate::rtmp::handshake::RtmpePolicy;
use crate::rtmp::session::SessionConfig;
use crate::settings::{check, secs, secs_within, Invalid, Section};

/// `[rtmp]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Connections one client address may hold at once (RTMP and RTMPS
    /// each); more are closed at accept (logged, naming the address).
    pub max_connections_per_ip: usize,
    /// Connection threads, each an event loop of its own; 0 = one per core.
    pub workers: usize,
    /// Take RTMPE (C0 = 6) on the RTMP port and in the RTMPT tunnel.
    pub rtmpe: bool,
    /// Also the TLS handshake (RTMPS, HTTPS) and an HTTP client's first byte.
    #[serde(rename = "handshake_timeout_secs", with = "secs")]
    pub handshake_timeout: Duration,
    pub max_message_size: usize,
    /// Bytes of partially received messages all connections may hold.
    pub message_budget_bytes: usize,
    pub max_chunk_size: u32,
    pub chunk_size: u32,
    pub window_ack_size: u32,
    /// A publisher that sends no media for this long is disconnected.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// A connected session that neither publishes nor plays (nor waits for
    /// its authorisation) for this long is closed.
    #[serde(rename = "session_idle_secs", with = "secs")]
    pub session_idle: Duration,
    /// How long a player of a stream that is not live waits for a publisher.
    #[serde(rename = "play_wait_secs", with = "secs")]
    pub play_wait: Duration,
    pub publish_conflict: PublishConflict,
    /// A publisher's socket is read on a clock of this period, every
    /// publisher on a thread in one wake-up, instead of once per frame
    /// (see `server::coalesce`); zero reads each frame as it arrives.
    #[serde(rename = "read_batch_secs", with = "secs")]
    pub read_batch: Duration,
    /// The clock's period while nobody waits on the stream at low latency
    /// (no RTMP/SRT player or relay, no low-latency HLS/DASH request in the
    /// last seconds; see `hub::Demand`): classic HLS and DASH players fetch
    /// whole segments, and reading less often costs about half the CPU.
    #[serde(rename = "read_batch_unwatched_secs", with = "secs")]
    pub read_batch_unwatched: Duration,
}

impl Section for Settings {
    const NAME: &'static str = "rtmp";
    /// Connections read the settings current when they start (the
    /// reload publishes them on `ServerContext::rtmp`); the hub takes the
    /// conflict rule at once. The handshake timeout is also the HTTP
    /// listeners' first-byte deadline, fixed at start-up.
    const LIVE: &'static [&'static str] = &[
        "rtmpe",
        "max_message_size",
        "max_chunk_size",
        "chunk_size",
        "window_ack_size",
        "idle_timeout_secs",
        "session_idle_secs",
        "play_wait_secs",
        "publish_conflict",
        "read_batch_secs",
        "read_batch_unwatched_secs",
    ];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.max_connections > 0,
            "rtmp.max_connections",
            "must be at least 1",
        )?;
        check(
            self.handshake_timeout > Duration::ZERO
                && secs_within(self.handshake_timeout, 0.0, 3600.0),
            "rtmp.handshake_timeout_secs",
            "must be in (0, 3600]",
        )?;
        check(
            self.idle_timeout > Duration::ZERO && secs_within(self.idle_timeout, 0.0, 86_400.0),
            "rtmp.idle_timeout_secs",
            "must be in (0, 86400]",
        )?;
        check(
            self.session_idle > Duration::ZERO && secs_within(self.session_idle, 0.0, 86_400.0),
            "rtmp.session_idle_secs",
            "must be in (0, 86400]",
        )?;
        check(
            secs_within(self.play_wait, 0.0, 86_400.0),
            "rtmp.play_wait_secs",
            "must be in [0, 86400]",
        )?;
        check(
            (1024..=16 * 1024 * 1024).contains(&self.max_message_size),
            "rtmp.max_message_size",
            "must be between 1024 and 16777216",
        )?;
        check(
            self.message_budget_bytes >= self.max_message_size * 2,
            "rtmp.message_budget_bytes",
            "must hold at least two messages of rtmp.max_message_size",
        )?;
        check(
            (128..=0x7FFF_FFFF).contains(&self.max_chunk_size),
            "rtmp.max_chunk_size",
            "must be between 128 and 2147483647",
        )?;
        check(
            (128..=65_536).contains(&self.chunk_size),
            "rtmp.chunk_size",
            "must be between 128 and 65536",
        )?;
        check(
            self.window_ack_size >= 4096,
            "rtmp.window_ack_size",
            "must be at least 4096",
        )?;
        check(
            secs_within(self.read_batch, 0.0, 1.0),
            "rtmp.read_batch_secs",
            "must be in [0, 1]",
        )?;
        check(
            secs_within(self.read_batch_unwatched, 0.0, 1.0)
                && self.read_batch_unwatched >= self.read_batch,
            "rtmp.read_batch_unwatched_secs",
            "must be in [rtmp.read_batch_secs, 1]",
        )?;
        check(
            self.max_connections_per_ip > 0,
            "rtmp.max_connections_per_ip",
            "must be at least 1",
        )
    }
}

impl Settings {
    /// The sans-I/O session's limits, for a connection over TLS or not
    /// (RTMPE is never layered inside TLS).
    pub fn session_config(&self, tls: bool) -> SessionConfig {
        SessionConfig {
            rtmpe: match (self.rtmpe, tls) {
                (_, true) => RtmpePolicy::InsideTls,
                (true, false) => RtmpePolicy::Accept,
                (false, false) => RtmpePolicy::TurnedOff,
            },
            chunk_limits: ChunkLimits {
                max_message_size: self.max_message_size,
                max_chunk_size: self.max_chunk_size,
                max_buffered: self.max_message_size * 2,
                ..ChunkLimits::default()
            },
            out_chunk_size: self.chunk_size,
            window_ack_size: self.window_ack_size,
            ..SessionConfig::default()
        }
    }
}
