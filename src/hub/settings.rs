//! `[hub]`: the GOP cache and the per-subscriber queue limits.

use serde::{Deserialize, Serialize};

use super::{HubConfig, PublishConflict, QueueLimits};
use crate::settings::{check, Invalid, Section};

/// `[hub]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub gop_cache: bool,
    pub gop_cache_max_bytes: usize,
    pub queue_soft_bytes: usize,
    pub queue_hard_bytes: usize,
}

impl Section for Settings {
    const NAME: &'static str = "hub";
    /// The hub is built once, with these.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.queue_soft_bytes > 0 && self.queue_hard_bytes >= self.queue_soft_bytes,
            "hub.queue_hard_bytes",
            "must be at least hub.queue_soft_bytes, which must be positive",
        )
    }
}

impl Settings {
    /// The hub's own settings; the conflict rule is `[rtmp]`'s.
    pub fn hub_config(&self, publish_conflict: PublishConflict) -> HubConfig {
        HubConfig {
            publish_conflict,
            gop_cache: self.gop_cache,
            gop_cache_max_bytes: self.gop_cache_max_bytes,
            queue: QueueLimits {
                soft_bytes: self.queue_soft_bytes,
                hard_bytes: self.queue_hard_bytes,
            },
        }
    }
}
