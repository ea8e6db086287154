//! `[rtmfp]`: the RTMFP listener (UDP), its session limits and buffers.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{check, secs, secs_within, Invalid, Section};

/// `[rtmfp]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// UDP, so it may share the RTMP port's number.
    pub listen: SocketAddr,
    /// Sessions open at once; an IIKeying beyond this is dropped (logged).
    pub max_sessions: usize,
    /// Sessions one client address may hold at once.
    pub max_sessions_per_ip: usize,
    /// A session without a packet from its peer for this long ends.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// A keepalive ping after this long without a packet from the peer.
    #[serde(rename = "keepalive_secs", with = "secs")]
    pub keepalive: Duration,
    /// Bytes of RHellos per second to one address, and to all: an RHello
    /// (180 bytes) is larger than the smallest IHello (36), so this bounds
    /// what a forged source address can draw.
    pub hello_bytes_per_sec_per_ip: u64,
    pub hello_bytes_per_sec: u64,
    /// Flows a peer may open in one session.
    pub max_flows_per_session: usize,
    /// Bytes a receiving flow holds out of order, and of one message.
    pub flow_buffer_bytes: usize,
    pub max_message_bytes: usize,
    /// Bytes a sending flow holds unacknowledged; past it, castgate stops
    /// reading what the RTMP side sends the peer (a slow player).
    pub send_buffer_bytes: usize,
    /// Audio and video for a player are abandoned this long after they
    /// were queued if not yet delivered (partial reliability).
    #[serde(rename = "media_lifetime_secs", with = "secs")]
    pub media_lifetime: Duration,
}

impl Section for Settings {
    const NAME: &'static str = "rtmfp";
    /// The listener and its session table are built once, with these.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            (1..=1_000_000).contains(&self.max_sessions),
            "rtmfp.max_sessions",
            "must be between 1 and 1000000",
        )?;
        check(
            self.max_sessions_per_ip > 0,
            "rtmfp.max_sessions_per_ip",
            "must be at least 1",
        )?;
        check(
            secs_within(self.idle_timeout, 1.0, 3600.0),
            "rtmfp.idle_timeout_secs",
            "must be in [1, 3600]",
        )?;
        check(
            secs_within(self.keepalive, 0.5, 3600.0) && self.keepalive < self.idle_timeout,
            "rtmfp.keepalive_secs",
            "must be in [0.5, 3600] and below rtmfp.idle_timeout_secs",
        )?;
        check(
            self.hello_bytes_per_sec_per_ip >= 256
                && self.hello_bytes_per_sec >= self.hello_bytes_per_sec_per_ip,
            "rtmfp.hello_bytes_per_sec_per_ip",
            "must be at least 256, and at most rtmfp.hello_bytes_per_sec",
        )?;
        check(
            (1..=256).contains(&self.max_flows_per_session),
            "rtmfp.max_flows_per_session",
            "must be between 1 and 256",
        )?;
        check(
            (16 * 1024..=64 * 1024 * 1024).contains(&self.flow_buffer_bytes),
            "rtmfp.flow_buffer_bytes",
            "must be between 16384 and 67108864",
        )?;
        check(
            (64 * 1024..=64 * 1024 * 1024).contains(&self.max_message_bytes),
            "rtmfp.max_message_bytes",
            "must be between 65536 and 67108864",
        )?;
        check(
            (64 * 1024..=256 * 1024 * 1024).contains(&self.send_buffer_bytes),
            "rtmfp.send_buffer_bytes",
            "must be between 65536 and 268435456",
        )?;
        check(
            secs_within(self.media_lifetime, 0.05, 60.0),
            "rtmfp.media_lifetime_secs",
            "must be in [0.05, 60]",
        )
    }
}
