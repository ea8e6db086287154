//! `[package]`: segment and part durations, the playlist window, and how
//! long a stream outlives its publisher.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::segmenter::SegmenterConfig;
use super::service::{HoldLimits, PackagerConfig};
use crate::settings::{check, secs, secs_within, Invalid, Section};

/// `[package]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Target segment duration; a segment closes at the first keyframe at or after it.
    #[serde(rename = "segment_secs", with = "secs")]
    pub segment: Duration,
    /// CMAF chunk (LL-HLS part) duration.
    #[serde(rename = "part_secs", with = "secs")]
    pub part: Duration,
    /// LL-HLS and LL-DASH manifests (parts, blocking reload, chunked
    /// segments); `false` gives the classic ones.
    pub low_latency: bool,
    /// Bounds on requests held waiting for a part.
    pub max_held_requests: usize,
    pub max_held_per_stream: usize,
    /// Segments listed in playlists.
    pub window: usize,
    /// Extra segments kept for late clients.
    pub extra_segments: usize,
    /// A publisher returning within this time continues the playlist (and
    /// its relays and transcode job).
    #[serde(rename = "grace_secs", with = "secs")]
    pub grace: Duration,
    /// An ended stream stays in memory this long.
    #[serde(rename = "retention_secs", with = "secs")]
    pub retention: Duration,
    /// DVR: live playlists and MPDs reach back this far (0: no DVR), with
    /// the segments past the memory window stored under `dvr_dir`.
    #[serde(rename = "dvr_secs", with = "secs")]
    pub dvr: Duration,
    pub dvr_dir: String,
    /// DVR playlists say EXT-X-PLAYLIST-TYPE:EVENT (segments are never
    /// removed: for a DVR longer than the event).
    pub dvr_event: bool,
    /// Media bytes the packaged streams may hold in memory (0: half the
    /// machine's or the cgroup's memory, see [`Settings::memory_budget`]);
    /// past it the least watched streams' older segments go to `dvr_dir`.
    pub memory_budget_bytes: u64,
}

/// The smallest budget accepted: a few segments of one stream.
pub const MIN_MEMORY_BUDGET: u64 = 1 << 20;

impl Section for Settings {
    const NAME: &'static str = "package";
    /// The packager, relays and transcoder are built once, with these;
    /// the memory budget is one number the store reads.
    const LIVE: &'static [&'static str] = &["memory_budget_bytes"];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            secs_within(self.segment, 0.5, 60.0),
            "package.segment_secs",
            "must be in [0.5, 60]",
        )?;
        check(
            secs_within(self.part, 0.05, self.segment.as_secs_f64()),
            "package.part_secs",
            "must be in [0.05, package.segment_secs]",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_held_requests),
            "package.max_held_requests",
            "must be between 1 and 1000000",
        )?;
        check(
            (1..=self.max_held_requests).contains(&self.max_held_per_stream),
            "package.max_held_per_stream",
            "must be between 1 and package.max_held_requests",
        )?;
        check(
            (1..=1000).contains(&self.window),
            "package.window",
            "must be between 1 and 1000",
        )?;
        check(
            self.extra_segments <= 1000,
            "package.extra_segments",
            "must be at most 1000",
        )?;
        check(
            secs_within(self.grace, 0.0, 3600.0),
            "package.grace_secs",
            "must be in [0, 3600]",
        )?;
        check(
            secs_within(self.retention, 0.0, 86_400.0),
            "package.retention_secs",
            "must be in [0, 86400]",
        )?;
        check(
            secs_within(self.dvr, 0.0, 7.0 * 86_400.0),
            "package.dvr_secs",
            "must be in [0, 604800]",
        )?;
        check(
            self.dvr.is_zero() || !self.dvr_dir.is_empty(),
            "package.dvr_dir",
            "must be set when package.dvr_secs is",
        )?;
        check(
            self.memory_budget_bytes == 0 || self.memory_budget_bytes >= MIN_MEMORY_BUDGET,
            "package.memory_budget_bytes",
            "must be 0 (half the machine's memory) or at least 1048576",
        )
    }
}

impl Settings {
    /// The memory budget in bytes: `memory_budget_bytes`, or for 0 half
    /// the lower of the cgroup's limit and MemTotal (reads them: call at
    /// start-up and reload), or no budget when neither can be read. Logs
    /// the figure.
    pub fn memory_budget(&self) -> u64 {
        if self.memory_budget_bytes > 0 {
            tracing::info!(
                bytes = self.memory_budget_bytes,
                "package memory budget (package.memory_budget_bytes)"
            );
            return self.memory_budget_bytes;
        }
        match super::memory::machine_budget() {
            Some((bytes, from)) => {
                tracing::info!(
                    bytes,
                    mib = bytes >> 20,
                    ?from,
                    "package memory budget: half of the memory castgate may use (package.memory_budget_bytes = 0)"
                );
                bytes
            }
            None => {
                tracing::warn!(
                    "package memory budget: the machine's memory cannot be read; no budget (set package.memory_budget_bytes)"
                );
                u64::MAX
            }
        }
    }

    /// The store's bounds on held requests.
    pub fn hold_limits(&self) -> HoldLimits {
        HoldLimits {
            per_stream: self.max_held_per_stream,
            total: self.max_held_requests,
        }
    }

    /// The packager's (and its segmenter's) settings.
    pub fn packager_config(&self) -> PackagerConfig {
        PackagerConfig {
            segmenter: SegmenterConfig {
                target: self.segment.as_secs_f64(),
                part_target: self.part.as_secs_f64(),
                window: self.window,
                extra: self.extra_segments,
                aligned: false,
                low_latency: self.low_latency,
            },
            grace: self.grace,
            retention: self.retention,
            dvr_ms: self.dvr.as_millis() as u64,
            // Also where segments spill under the memory budget.
            dvr_dir: (!self.dvr_dir.is_empty()).then(|| self.dvr_dir.clone().into()),
            dvr_event: self.dvr_event,
        }
    }
}
