//! `[relay]` (how relays run) and the `[[relays]]` entries (static relays).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tls::TlsOptions;
use super::{RelaySettings, StaticRule};
use crate::egress_policy::EgressPolicy;
use crate::hub::QueueLimits;
use crate::settings::{check, millis, secs, secs_within, Invalid, Section};

/// `[relay]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub max_relays: usize,
    pub queue_soft_bytes: usize,
    pub queue_hard_bytes: usize,
    #[serde(rename = "connect_timeout_secs", with = "secs")]
    pub connect_timeout: Duration,
    #[serde(rename = "write_timeout_secs", with = "secs")]
    pub write_timeout: Duration,
    #[serde(rename = "backoff_initial_secs", with = "secs")]
    pub backoff_initial: Duration,
    #[serde(rename = "backoff_max_secs", with = "secs")]
    pub backoff_max: Duration,
    #[serde(rename = "flush_interval_ms", with = "millis")]
    pub flush_interval: Duration,
    /// Relay threads; 0 = one per core.
    pub threads: usize,
}

impl Section for Settings {
    const NAME: &'static str = "relay";
    /// The relay service is built once, with these.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            (1..=100_000).contains(&self.max_relays),
            "relay.max_relays",
            "must be between 1 and 100000",
        )?;
        check(
            self.queue_soft_bytes >= 65536 && self.queue_hard_bytes >= self.queue_soft_bytes,
            "relay.queue_hard_bytes",
            "must be at least relay.queue_soft_bytes, which must be at least 65536",
        )?;
        for (key, v) in [
            ("relay.connect_timeout_secs", self.connect_timeout),
            ("relay.write_timeout_secs", self.write_timeout),
        ] {
            check(secs_within(v, 0.1, 600.0), key, "must be in [0.1, 600]")?;
        }
        check(
            self.backoff_initial.as_secs_f64() >= 0.1 && self.backoff_initial <= self.backoff_max,
            "relay.backoff_initial_secs",
            "must be at least 0.1 and at most relay.backoff_max_secs",
        )?;
        check(
            self.backoff_max.as_secs_f64() <= 3600.0,
            "relay.backoff_max_secs",
            "must be at most 3600",
        )?;
        check(
            (1..=1000).contains(&self.flush_interval.as_millis()),
            "relay.flush_interval_ms",
            "must be between 1 and 1000",
        )?;
        check(
            self.threads <= 1024,
            "relay.threads",
            "must be at most 1024",
        )
    }
}

impl Settings {
    /// The relay service's settings; `grace` is `package.grace_secs`.
    pub fn relay_settings(&self, grace: Duration, egress: Arc<EgressPolicy>) -> RelaySettings {
        RelaySettings {
            max_relays: self.max_relays,
            queue: QueueLimits {
                soft_bytes: self.queue_soft_bytes,
                hard_bytes: self.queue_hard_bytes,
            },
            connect_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            flush_interval: self.flush_interval,
            grace,
            threads: if self.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                self.threads
            },
            egress,
            ..RelaySettings::default()
        }
    }
}

/// One `[[relays]]` entry: every stream matching `stream` is relayed to
/// `target` with its placeholders filled.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRelay {
    pub stream: String,
    pub target: String,
    #[serde(default)]
    pub tls_ca_file: String,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Send H.264, AAC and MP3 only (RTMP and RTMPS targets).
    #[serde(default)]
    pub legacy_only: bool,
}

fn yes() -> bool {
    true
}

/// The `[[relays]]` entries, checked (a CA file is read now); an error
/// names the entry.
pub fn static_rules(entries: &[StaticRelay]) -> Result<Vec<StaticRule>, Invalid> {
    entries
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let tls = TlsOptions {
                ca_file: (!r.tls_ca_file.is_empty()).then(|| r.tls_ca_file.clone()),
                no_verify: !r.tls_verify,
            };
            StaticRule::parse(&r.stream, &r.target, tls)
                .and_then(|rule| rule.with_legacy_only(r.legacy_only))
                .map_err(|reason| {
                    Invalid::new(
                        format!("relays[{index}]"),
                        format!("entry with stream {:?}: {reason}", r.stream),
                    )
                })
        })
        .collect()
}
