//! Recording live streams to disk (FLV for now), started and stopped with
//! the stream by the registry (`streams`).
//!
//! A `[[record]]` entry whose `stream` pattern (the static relays'
//! pattern syntax and matcher) matches a stream that is published starts
//! one recording for that publish; the publish's end (or a takeover by
//! another publisher) completes it.
//!
//! The write path never slows the publisher: the recording is a hub
//! [`Tap`] that only appends the event (a shared `Bytes`, no copy) to a
//! bounded queue ([`Settings::queue_bytes`]) drained by the recording's own
//! writer thread. **Drop policy:** a recording whose queue is full (the
//! disk cannot keep up) is stopped, not thinned: its queue is freed, the
//! file keeps everything written so far, and `recording.failed` says why.
//! An I/O error (disk full, permission denied, a file where a directory
//! should be) stops that recording the same way; the live stream and its
//! other consumers go on.
//!
//! Files: the FLV header, `onMetaData` and the sequence headers (so each
//! file plays on its own), then every frame as an FLV tag from
//! [`crate::media::flv::TagWriter`], the writer every FLV output of
//! castgate shares (Enhanced RTMP tags for the codecs past H.264, AAC and
//! MP3; multitrack tracks too). Timestamps are the live stream's, as RTMP
//! players get them. `split_secs`/`split_bytes` start a new file at the
//! first video keyframe past the limit (or the first frame, for audio
//! only). The file is flushed to the OS at every video keyframe and at
//! least every second of media, so a killed process loses at most the
//! last GOP; it is synced to disk when it closes.

mod template;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::egress::target::StreamPattern;
use crate::hub::{Hub, Tap};
use crate::settings::{check, Invalid, Section};
use crate::stream_key::StreamKey;
use crate::webhooks::Webhooks;
pub use template::{sanitise, PathTemplate};
pub use writer::Outcome;

/// `[recorder]`: where recordings go and how they are queued.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The directory every `[[record]]` path is relative to.
    pub dir: String,
    /// Each recording's queue between the stream and its writer thread.
    pub queue_bytes: usize,
}

impl Section for Settings {
    const NAME: &'static str = "recorder";
    /// Both apply to recordings started after the reload.
    const LIVE: &'static [&'static str] = &["dir", "queue_bytes"];

    fn validate(&self) -> Result<(), Invalid> {
        check(!self.dir.is_empty(), "recorder.dir", "must not be empty")?;
        check(
            (65_536..=1 << 30).contains(&self.queue_bytes),
            "recorder.queue_bytes",
            "must be between 65536 and 1073741824",
        )
    }
}

/// One `[[record]]` entry as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntry {
    pub stream: String,
    /// `flv` (`cmaf` is not built yet and is refused).
    pub format: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// Start a new file after this many seconds (0: never).
    #[serde(default)]
    pub split_secs: f64,
    /// Start a new file after this many bytes (0: never).
    #[serde(default)]
    pub split_bytes: u64,
}

fn default_path() -> String {
    template::DEFAULT.to_string()
}

/// A checked `[[record]]` entry.
#[derive(Clone, Debug)]
pub struct Rule {
    pub pattern: StreamPattern,
    pub path: PathTemplate,
    pub split: Split,
}

/// When a recording starts its next file (at a keyframe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Media time of a file, in milliseconds.
    pub after_ms: Option<i64>,
    pub after_bytes: Option<u64>,
}

/// The `[[record]]` entries, checked; an error names the entry and key.
pub fn rules(entries: &[RecordEntry]) -> Result<Vec<Rule>, Invalid> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = |k: &str| format!("record[{i}].{k}");
            let pattern =
                StreamPattern::parse(&e.stream).map_err(|w| Invalid::new(key("stream"), w))?;
            match e.format.as_str() {
                "flv" => {}
                "cmaf" => {
                    return Err(Invalid::new(
                        key("format"),
                        "\"cmaf\" recordings are not built yet: use \"flv\"",
                    ))
                }
                other => {
                    return Err(Invalid::new(
                        key("format"),
                        format!("{other:?} is not a recording format (\"flv\")"),
                    ))
                }
            }
            let path = PathTemplate::parse(&e.path).map_err(|w| Invalid::new(key("path"), w))?;
            check(
                e.split_secs.is_finite() && (0.0..=86_400.0 * 7.0).contains(&e.split_secs),
                &key("split_secs"),
                "must be between 0 (never) and 604800",
            )?;
            Ok(Rule {
                pattern,
                path,
                split: Split {
                    after_ms: (e.split_secs > 0.0).then(|| (e.split_secs * 1000.0).round() as i64),
                    after_bytes: (e.split_bytes > 0).then_some(e.split_bytes),
                },
            })
        })
        .collect()
}

/// What the recorder does now: swapped whole on reload.
#[derive(Clone, Debug, Default)]
struct Plan {
    dir: PathBuf,
    queue_bytes: usize,
    rules: Vec<Rule>,
}

/// The recording service: built once (see `app`), asked by the registry
/// on every publish. Cheap to clone; clones share everything.
#[derive(Clone, Default)]
pub struct Recorder {
    plan: Arc<RwLock<Arc<Plan>>>,
    events: Webhooks,
}

impl Recorder {
    /// A recorder for `settings` and the checked `[[record]]` rules;
    /// `events` gets the `recording.*` events.
    pub fn new(settings: &Settings, rules: Vec<Rule>, events: Webhooks) -> Recorder {
        let r = Recorder {
            plan: Arc::default(),
            events,
        };
        r.set_plan(settings, rules);
        r
    }

    /// Replaces the settings and rules (SIGHUP): publishes from now on use
    /// them; recordings under way go on as they started.
    pub fn set_plan(&self, settings: &Settings, rules: Vec<Rule>) {
        for r in &rules {
            tracing::info!(
                pattern = r.pattern.as_str(),
                path = r.path.as_str(),
                dir = settings.dir,
                "recording configured"
            );
        }
        *crate::locks::write(&self.plan) = Arc::new(Plan {
            dir: PathBuf::from(&settings.dir),
            queue_bytes: settings.queue_bytes,
            rules,
        });
    }

    /// How many recordings a publish of `key` starts now.
    pub fn matching(&self, key: &str) -> usize {
        let plan = crate::locks::read(&self.plan).clone();
        plan.rules.iter().filter(|r| r.pattern.matches(key)).count()
    }

    /// Starts a recording of `key`'s publish for every rule that matches;
    /// call right after the hub took the publisher, before its first frame.
    /// Dropping the returned [`Recordings`] completes them.
    pub fn on_publish(&self, hub: &Hub, key: &StreamKey) -> Recordings {
        let plan = crate::locks::read(&self.plan).clone();
        let mut list = Vec::new();
        for rule in plan
            .rules
            .iter()
            .filter(|r| r.pattern.matches(key.as_str()))
        {
            let feed = Arc::new(writer::Feed::new(plan.queue_bytes));
            let job = writer::Job {
                stream: key.to_string(),
                dir: plan.dir.clone(),
                path: rule.path.clone(),
                split: rule.split,
                events: self.events.clone(),
            };
            let thread = writer::spawn(job, feed.clone());
            // Attached synchronously: the recording sees the stream from
            // its start (the hub replays what it has: start, metadata,
            // configurations).
            let tap = hub.tap(key.as_str(), feed.clone() as Arc<dyn Tap>);
            list.push(Recording {
                feed,
                _tap: tap,
                thread,
            });
        }
        Recordings(list)
    }
}

/// The recordings of one publish; dropping them completes them (the
/// writer threads finish on their own: nothing here waits for the disk).
#[derive(Default)]
pub struct Recordings(Vec<Recording>);

impl Recordings {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Completes every recording and waits for their writers (tests).
    pub fn finish(mut self) -> Vec<Outcome> {
        let list = std::mem::take(&mut self.0);
        list.into_iter().map(Recording::finish).collect()
    }
}

struct Recording {
    feed: Arc<writer::Feed>,
    // Detached on drop, before the feed closes.
    _tap: crate::hub::TapHandle,
    thread: Option<std::thread::JoinHandle<Outcome>>,
}

impl Recording {
    fn finish(mut self) -> Outcome {
        self.feed.close();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(o)) => o,
            _ => Outcome::Failed("the writer thread did not start or panicked".into()),
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.feed.close();
    }
}

/// How long a recording may go without a flush, in media time.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests;
