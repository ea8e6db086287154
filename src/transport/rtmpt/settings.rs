//! `[rtmpt]`: the tunnel's switch, session limits and body size.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{check, secs, secs_within, Invalid, Section};

/// `[rtmpt]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// Open tunnel sessions at once; `/open` beyond this gets 503.
    pub max_sessions: usize,
    /// Sessions one client address may hold at once; `/open` beyond gets 503.
    pub max_sessions_per_ip: usize,
    /// A session with no request for this long is closed.
    #[serde(rename = "session_timeout_secs", with = "secs")]
    pub session_timeout: Duration,
    /// Largest request body accepted (413 beyond), and the most server
    /// bytes held for a client that does not poll.
    pub max_body_bytes: usize,
}

impl Section for Settings {
    const NAME: &'static str = "rtmpt";
    /// The session table is built once, with these.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            (1..=1_000_000).contains(&self.max_sessions),
            "rtmpt.max_sessions",
            "must be between 1 and 1000000",
        )?;
        check(
            self.max_sessions_per_ip > 0,
            "rtmpt.max_sessions_per_ip",
            "must be at least 1",
        )?;
        check(
            secs_within(self.session_timeout, 0.1, 3600.0),
            "rtmpt.session_timeout_secs",
            "must be in [0.1, 3600]",
        )?;
        check(
            (1024..=64 * 1024 * 1024).contains(&self.max_body_bytes),
            "rtmpt.max_body_bytes",
            "must be between 1024 and 67108864",
        )
    }
}
