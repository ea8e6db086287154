//! `[transcoder]` (where profiles and ffmpeg are, how jobs are supervised)
//! and the `[[transcode]]` mappings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{find_program, Profiles, Rule, TranscodeSettings};
use crate::egress::target::StreamPattern;
use crate::settings::{check, secs, Invalid, Section};

/// `[transcoder]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A folder of `*.toml` profiles adding to (and overriding) the shipped
    /// ones; empty = the shipped ones only.
    pub profiles_dir: String,
    /// The ffmpeg program (a path, or a name looked up in PATH).
    pub ffmpeg: String,
    #[serde(rename = "restart_backoff_initial_secs", with = "secs")]
    pub restart_backoff_initial: Duration,
    #[serde(rename = "restart_backoff_max_secs", with = "secs")]
    pub restart_backoff_max: Duration,
    /// ffmpeg stderr lines logged per minute and job; the rest are counted.
    pub stderr_lines_per_minute: u32,
}

/// One `[[transcode]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub stream: String,
    pub profile: String,
}

impl Section for Settings {
    const NAME: &'static str = "transcoder";
    /// A reload re-reads the profiles for new publishes; the jobs'
    /// supervisor settings are fixed at start-up.
    const LIVE: &'static [&'static str] = &["profiles_dir"];

    fn validate(&self) -> Result<(), Invalid> {
        let initial = self.restart_backoff_initial.as_secs_f64();
        let max = self.restart_backoff_max.as_secs_f64();
        check(
            initial > 0.0 && initial <= 3600.0,
            "transcoder.restart_backoff_initial_secs",
            "must be in (0, 3600]",
        )?;
        check(
            max >= initial && max <= 3600.0,
            "transcoder.restart_backoff_max_secs",
            "must be at least restart_backoff_initial_secs and at most 3600",
        )
    }
}

impl Settings {
    /// The transcode profiles and the checked `[[transcode]]` mappings.
    /// Errors name the profile file and key, or the config key.
    pub fn plan(&self, mappings: &[Mapping]) -> Result<(Profiles, Vec<Rule>), Invalid> {
        self.validate()?;
        let dir = (!self.profiles_dir.is_empty()).then(|| Path::new(&self.profiles_dir));
        if let Some(d) = dir {
            check(
                d.is_dir(),
                "transcoder.profiles_dir",
                &format!("{} is not a directory", d.display()),
            )?;
        }
        let profiles =
            Profiles::load(dir).map_err(|e| Invalid::new("transcoder.profiles_dir", e))?;
        let mut rules = Vec::new();
        for (i, m) in mappings.iter().enumerate() {
            let pattern = StreamPattern::parse(&m.stream)
                .map_err(|e| Invalid::new(format!("transcode[{i}].stream"), e))?;
            let Some(p) = profiles.get(&m.profile) else {
                let known: Vec<&str> = profiles.names().collect();
                return Err(Invalid::new(
                    format!("transcode[{i}].profile"),
                    format!("no profile {:?} (known: {})", m.profile, known.join(", ")),
                ));
            };
            if p.needs_ffmpeg() && find_program(&self.ffmpeg).is_none() {
                return Err(Invalid::new(
                    "transcoder.ffmpeg",
                    format!(
                        "{:?} not found, and transcode[{i}] maps {:?} to profile {:?} ({}), which needs it",
                        self.ffmpeg, m.stream, m.profile, p.origin
                    ),
                ));
            }
            rules.push(Rule {
                pattern,
                profile: m.profile.clone(),
            });
        }
        Ok((profiles, rules))
    }

    /// How transcode jobs run; `grace` is `package.grace_secs`.
    pub fn transcode_settings(&self, grace: Duration) -> TranscodeSettings {
        TranscodeSettings {
            ffmpeg: find_program(&self.ffmpeg).unwrap_or_else(|| PathBuf::from(&self.ffmpeg)),
            backoff_initial: self.restart_backoff_initial,
            backoff_max: self.restart_backoff_max,
            stderr_lines_per_minute: self.stderr_lines_per_minute,
            grace,
        }
    }
}
