//! `[source]` (how pulled sources run) and the `[[sources]]` entries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{check, secs, secs_within, Invalid, Section};

/// `[source]`. Backoff and connect timeouts are `[relay]`'s.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Sources at once (API and config together).
    pub max_sources: usize,
    /// An on-demand source stops this long after its last viewer left.
    #[serde(rename = "on_demand_idle_secs", with = "secs")]
    pub on_demand_idle: Duration,
    /// A source that sends nothing for this long is reconnected.
    #[serde(rename = "media_timeout_secs", with = "secs")]
    pub media_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_sources: 100,
            on_demand_idle: Duration::from_secs(10),
            media_timeout: Duration::from_secs(10),
        }
    }
}

impl Section for Settings {
    const NAME: &'static str = "source";
    /// The sources service is built once, with these.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            (1..=10_000).contains(&self.max_sources),
            "source.max_sources",
            "must be between 1 and 10000",
        )?;
        check(
            secs_within(self.on_demand_idle, 0.0, 86_400.0),
            "source.on_demand_idle_secs",
            "must be in [0, 86400]",
        )?;
        check(
            secs_within(self.media_timeout, 0.5, 600.0),
            "source.media_timeout_secs",
            "must be in [0.5, 600]",
        )
    }
}

/// One `[[sources]]` entry: castgate pulls `url` and publishes it as
/// `stream`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticSource {
    pub stream: String,
    pub url: String,
    #[serde(default)]
    pub on_demand: bool,
}

/// Checks the `[[sources]]` entries; an error names the entry (never the
/// URL's secrets).
pub fn check_static(entries: &[StaticSource]) -> Result<(), Invalid> {
    let mut streams = std::collections::HashSet::new();
    for (index, e) in entries.iter().enumerate() {
        let bad = |why: String| {
            Invalid::new(
                format!("sources[{index}]"),
                format!("entry with stream {:?}: {why}", e.stream),
            )
        };
        super::parse_source(&e.stream, &e.url).map_err(bad)?;
        if !streams.insert(e.stream.clone()) {
            return Err(bad("another entry pulls into this stream".into()));
        }
    }
    Ok(())
}
