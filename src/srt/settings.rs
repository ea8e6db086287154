//! `[srt]`: the SRT listener, its callers' limits and timeouts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{check, millis, secs, secs_within, Invalid, Section};

/// `[srt]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// UDP.
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Connections one address may hold at once; more are refused in the
    /// handshake (reason 1402, logged naming the address).
    pub max_connections_per_ip: usize,
    /// An accepted caller must be authorised and (publishing) send its
    /// first packet within this time.
    #[serde(rename = "handshake_timeout_secs", with = "secs")]
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing for this long is disconnected.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// castgate's receive latency (SRT negotiates the larger of both
    /// sides'): how long a packet may be late and still be recovered.
    #[serde(rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    /// Callers must encrypt with this passphrase (10 to 79 characters);
    /// empty: no encryption asked. `passphrases` overrides it per stream.
    pub passphrase: String,
    /// Passphrases per stream (`"live/cam1" = "…"`), for publishers and
    /// players of that stream.
    pub passphrases: BTreeMap<String, String>,
    /// A player's queue of MPEG-TS messages not yet handed to libsrt; a
    /// player further behind loses frames up to the next keyframe.
    pub player_queue_messages: usize,
}

impl Settings {
    /// The passphrase a caller of `stream` (`app/name`) must use.
    pub fn passphrase_for(&self, stream: &str) -> Option<&str> {
        self.passphrases
            .get(stream)
            .map(String::as_str)
            .or(Some(self.passphrase.as_str()))
            .filter(|p| !p.is_empty())
    }
}

impl Section for Settings {
    const NAME: &'static str = "srt";
    /// New callers are admitted with the settings current when they call.
    const LIVE: &'static [&'static str] = &[
        "max_connections",
        "max_connections_per_ip",
        "handshake_timeout_secs",
        "idle_timeout_secs",
        "passphrase",
        "passphrases",
        "player_queue_messages",
    ];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.max_connections > 0,
            "srt.max_connections",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_ip > 0,
            "srt.max_connections_per_ip",
            "must be at least 1",
        )?;
        check(
            self.handshake_timeout > Duration::ZERO
                && secs_within(self.handshake_timeout, 0.0, 3600.0),
            "srt.handshake_timeout_secs",
            "must be in (0, 3600]",
        )?;
        check(
            self.idle_timeout > Duration::ZERO && secs_within(self.idle_timeout, 0.0, 3600.0),
            "srt.idle_timeout_secs",
            "must be in (0, 3600]",
        )?;
        check(
            self.latency <= Duration::from_secs(60),
            "srt.latency_ms",
            "must be at most 60000",
        )?;
        // libsrt's own bounds on SRTO_PASSPHRASE.
        let bad_passphrase = |p: &String| !p.is_empty() && !(10..=79).contains(&p.len());
        check(
            !bad_passphrase(&self.passphrase),
            "srt.passphrase",
            "must be empty or 10 to 79 characters",
        )?;
        for (stream, p) in &self.passphrases {
            if p.is_empty() || bad_passphrase(p) {
                return Err(Invalid::new(
                    format!("srt.passphrases.{stream:?}"),
                    "must be 10 to 79 characters",
                ));
            }
        }
        check(
            (16..=1_000_000).contains(&self.player_queue_messages),
            "srt.player_queue_messages",
            "must be in [16, 1000000]",
        )
    }
}
