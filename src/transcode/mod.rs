//! Per-stream transcoding: profiles (ABR ladders) mapped to streams by
//! pattern, one supervised ffmpeg per transcoded stream, its renditions
//! published back into the hub as streams of their own (`live/KEY/720p`),
//! so they are packaged, relayed and played like any stream.
//!
//! - [`profile`]: the ladders (`profiles/*.toml`, shipped ones embedded).
//! - [`command`]: a profile -> the ffmpeg command line (one decode, one
//!   filter graph, a pipe per rendition, keyframes forced at the source's).
//! - [`flv_io`]: FLV to ffmpeg and back, sans-I/O.
//! - `child`: spawning with the extra pipes and the process hygiene.
//! - `job`: the supervisor task of one stream.

pub mod command;
pub mod flv_io;
pub mod profile;
pub mod progress;

mod child;
mod job;
mod settings;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::egress::target::StreamPattern;
use crate::hub::Hub;
use crate::package::service::Packager;
use crate::stream_key::StreamKey;
use crate::streams::{Granted, Origin, PublishHook, Registry};
pub use job::exercise as exercise_output;
pub use profile::{Profile, Profiles};
pub use progress::Progress;
pub use settings::{Mapping, Settings};

/// Added to every timestamp fed to ffmpeg and taken off what comes back:
/// encoder delay (B-frames, AAC priming) puts the first output packets a
/// little before the first input, and ffmpeg would shift a stream starting
/// near zero to keep times non-negative, moving the renditions off the
/// source's clock. Ten seconds is far more than any such delay.
pub const FEED_OFFSET_MS: i64 = 10_000;

/// How jobs run (from `[transcoder]`).
#[derive(Clone, Debug)]
pub struct TranscodeSettings {
    pub ffmpeg: PathBuf,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// ffmpeg stderr lines logged per minute per job; the rest are counted.
    pub stderr_lines_per_minute: u32,
    /// A publisher returning within this time resumes the job (the
    /// packager's grace period, so renditions and source agree).
    pub grace: Duration,
}

/// One `[[transcode]]` mapping, checked.
#[derive(Clone, Debug)]
pub struct Rule {
    pub pattern: StreamPattern,
    pub profile: String,
}

/// Starts a job when a stream that maps to a transcoding profile is
/// published; knows every job's state for the API.
#[derive(Clone)]
pub struct Transcoder {
    inner: Arc<Inner>,
}

struct Inner {
    /// Gets `transcode.failed`.
    events: crate::webhooks::Webhooks,
    hub: Hub,
    packager: Packager,
    settings: TranscodeSettings,
    /// Mappings and profiles; a SIGHUP reload swaps them (running jobs keep
    /// the profile they started with).
    plan: Mutex<Arc<(Vec<Rule>, Profiles)>>,
    jobs: Mutex<HashMap<String, Arc<JobStatus>>>,
    /// Jobs stop (and their ffmpeg with them) when castgate shuts down.
    shutdown: crate::shutdown::Shutdown,
    /// Jobs run on the runtime current when the transcoder was made (the
    /// main one), not on the connection thread that saw the publish.
    runtime: Option<tokio::runtime::Handle>,
}

/// A job's state, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TranscodeState {
    /// Waiting for a source keyframe to start ffmpeg.
    Starting,
    Running,
    /// After a crash or a failed start, until the next attempt.
    Backoff,
    /// The publisher left; the job waits out the grace period.
    Waiting,
}

/// What the API shows of a job.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TranscodeView {
    pub profile: String,
    /// Rendition stream keys (`app/key/NAME`).
    pub renditions: Vec<String>,
    pub state: TranscodeState,
    pub pid: Option<u32>,
    /// ffmpeg restarts after it exited on its own.
    pub restarts: u64,
    pub last_exit: Option<String>,
    /// ffmpeg's latest progress report (this run).
    pub progress: Option<Progress>,
}

/// A job's state, shared by its task and the API.
pub struct JobStatus {
    view: Mutex<TranscodeView>,
}

impl JobStatus {
    fn update(&self, f: impl FnOnce(&mut TranscodeView)) {
        f(&mut lock(&self.view));
    }
}

impl Transcoder {
    pub fn new(
        hub: Hub,
        packager: Packager,
        settings: TranscodeSettings,
        rules: Vec<Rule>,
        profiles: Profiles,
        shutdown: crate::shutdown::Shutdown,
        events: crate::webhooks::Webhooks,
    ) -> Self {
        Transcoder {
            inner: Arc::new(Inner {
                events,
                hub,
                packager,
                settings,
                plan: Mutex::new(Arc::new((rules, profiles))),
                jobs: Mutex::new(HashMap::new()),
                shutdown,
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// Replaces the mappings and profiles (a config reload): new publishes
    /// use them, running jobs go on with the profile they started with.
    pub fn set_plan(&self, rules: Vec<Rule>, profiles: Profiles) {
        *lock(&self.inner.plan) = Arc::new((rules, profiles));
    }

    /// The profile `key` gets: `requested` (named by the auth webhook) when
    /// it exists, else the first matching rule's, if any.
    pub fn profile_for(&self, key: &str, requested: Option<&str>) -> Option<Profile> {
        let plan = lock(&self.inner.plan).clone();
        let (rules, profiles) = &*plan;
        if let Some(name) = requested {
            match profiles.get(name) {
                Some(p) => return Some(p.clone()),
                None => warn!(
                    stream = key,
                    profile = name,
                    "the auth webhook named an unknown profile: using the configured mapping"
                ),
            }
        }
        let rule = rules.iter().find(|r| r.pattern.matches(key))?;
        profiles.get(&rule.profile).cloned()
    }

    /// Called when `key` is published, before the packager starts on it. A
    /// stream mapped to a profile with encoded renditions gets a job (unless
    /// its job is still running: a publisher returning within the grace
    /// period resumes it); anything else is passed through. `requested`: a
    /// profile the auth webhook attached to this publish. The job publishes
    /// its renditions through `registry`.
    pub fn on_publish(&self, registry: &Registry, key: &str, requested: Option<&str>) {
        let Some(profile) = self.profile_for(key, requested) else {
            return;
        };
        if !profile.needs_ffmpeg() {
            info!(
                stream = key,
                profile = profile.name,
                "passthrough profile: no transcoding"
            );
            return;
        }
        let Some(runtime) = &self.inner.runtime else {
            warn!(stream = key, "no runtime to run the transcode job on");
            return;
        };
        let mut jobs = lock(&self.inner.jobs);
        if jobs.contains_key(key) {
            return;
        }
        let names: Vec<String> = profile.encoded().map(|(r, _, _)| r.name.clone()).collect();
        let packager = &self.inner.packager;
        packager.align(key);
        for n in &names {
            packager.align(&format!("{key}/{n}"));
        }
        packager.store().set_ladder(key, names.clone());
        let status = Arc::new(JobStatus {
            view: Mutex::new(TranscodeView {
                profile: profile.name.clone(),
                renditions: names.iter().map(|n| format!("{key}/{n}")).collect(),
                state: TranscodeState::Starting,
                pid: None,
                restarts: 0,
                last_exit: None,
                progress: None,
            }),
        });
        jobs.insert(key.to_string(), status.clone());
        info!(
            stream = key,
            profile = profile.name,
            renditions = ?names,
            "transcode job started"
        );
        runtime.spawn(job::run(
            self.clone(),
            registry.clone(),
            key.to_string(),
            profile,
            status,
        ));
    }

    /// The job of `key`, if it has one.
    pub fn status(&self, key: &str) -> Option<TranscodeView> {
        let s = lock(&self.inner.jobs).get(key).cloned()?;
        let v = lock(&s.view).clone();
        Some(v)
    }
}

/// Every publish but a rendition's may start a job.
impl PublishHook for Transcoder {
    fn on_publish(&self, registry: &Registry, key: &StreamKey, origin: &Origin, granted: &Granted) {
        if let Origin::Client { .. } = origin {
            Transcoder::on_publish(self, registry, key, granted.profile.as_deref());
        }
    }
}

/// `name` as a program to run: a path as is, a bare name looked up in PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

use crate::locks::lock;

#[cfg(test)]
mod tests {
    use super::TranscodeState;

    /// The API's JSON keeps the strings it had when the state was a string.
    #[test]
    fn states_serialise_as_lowercase_words() {
        for (state, word) in [
            (TranscodeState::Starting, "starting"),
            (TranscodeState::Running, "running"),
            (TranscodeState::Backoff, "backoff"),
            (TranscodeState::Waiting, "waiting"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), word);
        }
    }
}
