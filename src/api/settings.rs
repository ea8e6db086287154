//! `[api]`: the REST API's switch, token and body limit.

use serde::{Deserialize, Serialize};

use crate::settings::{check, Invalid, Section};

/// `[api]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// Bearer token every call must carry; empty: loopback clients only.
    pub token: String,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
}

impl Section for Settings {
    const NAME: &'static str = "api";
    /// The API (and the guard on /metrics) is built once, with these.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            (1024..=16 * 1024 * 1024).contains(&self.max_body_bytes),
            "api.max_body_bytes",
            "must be between 1024 and 16777216",
        )?;
        check(
            self.token.len() <= 4096 && self.token.bytes().all(|b| (0x21..0x7f).contains(&b)),
            "api.token",
            "must be printable ASCII without spaces, at most 4096 bytes",
        )
    }
}

impl Settings {
    /// The token calls must carry, if one is set.
    pub fn token(&self) -> Option<String> {
        (!self.token.is_empty()).then(|| self.token.clone())
    }
}
