//! Recording live streams to disk (CMAF or FLV), started and stopped with
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
//! CMAF recordings (the default) are directories of segments cut by the
//! live packager's segmenter, with playlists and an MPD rewritten after
//! each segment (see `record::cmaf`).
//!
//! FLV files: the FLV header, `onMetaData` and the sequence headers (so each
//! file plays on its own), then every frame as an FLV tag from
//! [`crate::media::flv::TagWriter`], the writer every FLV output of
//! castgate shares (Enhanced RTMP tags for the codecs past H.264, AAC and
//! MP3; multitrack tracks too). Timestamps are the live stream's, as RTMP
//! players get them. `split_secs`/`split_bytes` start a new file at the
//! first video keyframe past the limit (or the first frame, for audio
//! only). The file is flushed to the OS at every video keyframe and at
//! least every second of media, so a killed process loses at most the
//! last GOP; it is synced to disk when it closes.
//!
//! A recording can also be started on a live stream by the API
//! ([`Recorder::start`]) and stopped early, rule's or API's
//! ([`Recorder::stop`]); the publish's end completes either. The files
//! under the record dir are listed, described and deleted by `library`
//! (ids, sidecars, bounded scans), and a sweeper task
//! ([`Recorder::run_sweeper`]) applies `retention_days` and
//! `retention_bytes`, never to a file being written.

mod cmaf;
mod library;
mod template;
mod writer;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::egress::target::StreamPattern;
use crate::hub::{Hub, Tap};
use crate::settings::{check, Invalid, Section};
use crate::stream_key::StreamKey;
use crate::webhooks::Webhooks;
pub use library::{
    expired, Expiry, FileState, RecordingFile, Scan, VodUrls, MAX_DEPTH, MAX_ENTRIES, MAX_FILES,
    VOD_APP,
};
pub use template::{sanitise, PathTemplate};
pub use writer::Outcome;
use writer::Status;

/// `[recorder]`: where recordings go and how they are queued.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The directory every `[[record]]` path is relative to.
    pub dir: String,
    /// Each recording's queue between the stream and its writer thread.
    pub queue_bytes: usize,
    /// Finished recordings older than this many days are deleted (0: kept
    /// forever).
    pub retention_days: u32,
    /// The oldest finished recordings are deleted while all of them take
    /// more than this many bytes (0: no limit).
    pub retention_bytes: u64,
}

impl Section for Settings {
    const NAME: &'static str = "recorder";
    /// `dir` and `queue_bytes` apply to recordings started after the
    /// reload, retention to the sweeper's next pass.
    const LIVE: &'static [&'static str] =
        &["dir", "queue_bytes", "retention_bytes", "retention_days"];

    fn validate(&self) -> Result<(), Invalid> {
        check(!self.dir.is_empty(), "recorder.dir", "must not be empty")?;
        check(
            (65_536..=1 << 30).contains(&self.queue_bytes),
            "recorder.queue_bytes",
            "must be between 65536 and 1073741824",
        )?;
        check(
            self.retention_days <= 36_500,
            "recorder.retention_days",
            "must be between 0 (keep forever) and 36500",
        )
    }
}

/// One `[[record]]` entry as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntry {
    pub stream: String,
    /// `cmaf` (the default) or `flv`.
    #[serde(default = "default_format")]
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

fn default_format() -> String {
    Format::Cmaf.as_str().to_string()
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
    pub format: Format,
}

/// What a recording writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A directory of CMAF segments with an HLS VOD playlist and a static
    /// MPD (see `record::cmaf`).
    Cmaf,
    /// One FLV file: the RTMP tags as received, every codec.
    Flv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cmaf => "cmaf",
            Format::Flv => "flv",
        }
    }
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
            let (path, split, format) =
                check_output(&e.format, &e.path, e.split_secs, e.split_bytes, key)?;
            Ok(Rule {
                pattern,
                path,
                split,
                format,
            })
        })
        .collect()
}

/// Checks what a recording writes (a rule's or an API request's); errors
/// name the key as `key` spells it.
fn check_output(
    format: &str,
    path: &str,
    split_secs: f64,
    split_bytes: u64,
    key: impl Fn(&str) -> String,
) -> Result<(PathTemplate, Split, Format), Invalid> {
    let format = match format {
        "flv" => Format::Flv,
        "cmaf" => Format::Cmaf,
        other => {
            return Err(Invalid::new(
                key("format"),
                format!(
                    "{:?} is not a recording format (\"cmaf\" or \"flv\")",
                    crate::text::short(other, 40)
                ),
            ))
        }
    };
    let path = PathTemplate::parse(path).map_err(|w| Invalid::new(key("path"), w))?;
    check(
        split_secs.is_finite() && (0.0..=86_400.0 * 7.0).contains(&split_secs),
        &key("split_secs"),
        "must be between 0 (never) and 604800",
    )?;
    Ok((
        path,
        Split {
            after_ms: (split_secs > 0.0).then(|| (split_secs * 1000.0).round() as i64),
            after_bytes: (split_bytes > 0).then_some(split_bytes),
        },
        format,
    ))
}

/// What the recorder does now: swapped whole on reload.
#[derive(Clone, Debug, Default)]
struct Plan {
    dir: PathBuf,
    queue_bytes: usize,
    retention_days: u32,
    retention_bytes: u64,
    rules: Vec<Rule>,
}

/// Who started a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartedBy {
    /// A `[[record]]` rule, with the publish.
    Rule,
    /// `POST /streams/{app}/{key}/recording`.
    Api,
}

/// A running recording of a live stream, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecordingStatus {
    /// The id of the file being written (as `GET /recordings` lists it);
    /// null until its first file opens (at the stream's next frame).
    pub id: Option<String>,
    /// The file being written, relative to `recorder.dir`.
    pub path: Option<String>,
    /// RFC 3339, when the recording started.
    pub started: String,
    /// Bytes written so far, every file.
    pub bytes: u64,
    /// Files opened so far (a split opens the next).
    pub files: u64,
    pub format: String,
    pub started_by: StartedBy,
}

/// `POST /streams/{app}/{key}/recording`'s options; `None` takes the
/// default (`cmaf`, the default path template, no split).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartOptions {
    /// `cmaf` (the default) or `flv`.
    #[schema(example = "cmaf")]
    pub format: Option<String>,
    /// A path template, as `[[record]] path`.
    #[schema(example = "{app}/{key}/{date}-{time}")]
    pub path: Option<String>,
    /// A new file after this many seconds (at a keyframe; 0: never).
    pub split_secs: Option<f64>,
    /// A new file after this many bytes (at a keyframe; 0: never).
    pub split_bytes: Option<u64>,
}

/// Why a recording was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("stream {0} is not live")]
    NotLive(String),
    #[error("stream {0} already has a recording started by the API")]
    Running(String),
    #[error("{0}")]
    Bad(Invalid),
}

/// Why a recording was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no recording {0}")]
    NotFound(String),
    #[error("recording {0} is being written: stop it first")]
    Writing(String),
    #[error("cannot delete {0}: {1}")]
    Io(String, std::io::Error),
}

/// A running recording, as the recorder tracks it.
struct Active {
    stream: String,
    by: StartedBy,
    dir: PathBuf,
    feed: Arc<writer::Feed>,
    status: Arc<Status>,
    format: Format,
}

impl Active {
    fn view(&self) -> RecordingStatus {
        let path = self.status.path();
        RecordingStatus {
            id: path.as_deref().map(library::id_of),
            path,
            started: crate::timefmt::rfc3339_millis(self.status.started),
            bytes: self.status.bytes(),
            files: self.status.files(),
            format: self.format.as_str().into(),
            started_by: self.by,
        }
    }
}

/// The running recordings; API-started ones own their [`Recording`]
/// (rules' are owned by the publish). Finished ones are pruned on every
/// access.
#[derive(Default)]
struct Table {
    active: Vec<Arc<Active>>,
    api: Vec<Recording>,
}

impl Table {
    /// Forgets finished recordings; returns the API ones to drop (outside
    /// the lock: dropping detaches a hub tap).
    fn prune(&mut self) -> Vec<Recording> {
        self.active.retain(|a| !a.status.is_done());
        let (done, live) = std::mem::take(&mut self.api)
            .into_iter()
            .partition(|r| r.status.is_done());
        self.api = live;
        done
    }
}

/// The recording service: built once (see `app`), asked by the registry
/// on every publish and by the API. Cheap to clone; clones share
/// everything.
#[derive(Clone)]
pub struct Recorder {
    plan: Arc<RwLock<Arc<Plan>>>,
    events: Webhooks,
    table: Arc<Mutex<Table>>,
    /// Wakes the sweeper when a file closes.
    closed: Arc<tokio::sync::Notify>,
    /// The VOD application recordings play under, and `[vod] dir` (the
    /// recorder's directory when not set).
    vod_app: Arc<str>,
    vod_dir: Option<PathBuf>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            plan: Arc::default(),
            events: Webhooks::default(),
            table: Arc::default(),
            closed: Arc::default(),
            vod_app: Arc::from(VOD_APP),
            vod_dir: None,
        }
    }
}

impl Recorder {
    /// A recorder for `settings` and the checked `[[record]]` rules;
    /// `events` gets the `recording.*` events.
    pub fn new(settings: &Settings, rules: Vec<Rule>, events: Webhooks) -> Recorder {
        let r = Recorder {
            events,
            ..Recorder::default()
        };
        r.set_plan(settings, rules);
        r
    }

    /// Where recordings play on demand: the VOD application (default
    /// [`VOD_APP`]) and its directory, which `recorder.dir` is under (the
    /// same by default). A recorder directory outside it gets URLs as if it
    /// were the VOD directory, and a warning at start-up.
    pub fn with_vod(mut self, app: &str, dir: &str) -> Recorder {
        self.vod_app = Arc::from(app);
        self.vod_dir = Some(PathBuf::from(dir));
        self
    }

    fn vod_place(&self, plan: &Plan) -> library::VodPlace {
        let dir = self.vod_dir.as_deref().unwrap_or(&plan.dir);
        library::VodPlace::of(&self.vod_app, &plan.dir, dir)
    }

    /// Replaces the settings and rules (SIGHUP): publishes from now on use
    /// them; recordings under way go on as they started; the sweeper's
    /// next pass uses the new retention.
    pub fn set_plan(&self, settings: &Settings, rules: Vec<Rule>) {
        for r in &rules {
            info!(
                pattern = r.pattern.as_str(),
                path = r.path.as_str(),
                dir = settings.dir,
                "recording configured"
            );
        }
        *crate::locks::write(&self.plan) = Arc::new(Plan {
            dir: PathBuf::from(&settings.dir),
            queue_bytes: settings.queue_bytes,
            retention_days: settings.retention_days,
            retention_bytes: settings.retention_bytes,
            rules,
        });
        self.closed.notify_one();
    }

    fn plan(&self) -> Arc<Plan> {
        crate::locks::read(&self.plan).clone()
    }

    /// How many recordings a publish of `key` starts now.
    pub fn matching(&self, key: &str) -> usize {
        let plan = self.plan();
        plan.rules.iter().filter(|r| r.pattern.matches(key)).count()
    }

    /// Starts one recording of `key` into `table` and the hub.
    fn spawn(
        &self,
        table: &mut Table,
        plan: &Plan,
        hub: &Hub,
        key: &StreamKey,
        output: (PathTemplate, Split, Format),
        by: StartedBy,
    ) -> Recording {
        let feed = Arc::new(writer::Feed::new(plan.queue_bytes));
        let status = Arc::new(Status::new());
        // Known before its first file exists (see `Status::file`).
        table.active.push(Arc::new(Active {
            stream: key.to_string(),
            by,
            dir: plan.dir.clone(),
            feed: feed.clone(),
            status: status.clone(),
            format: output.2,
        }));
        let job = writer::Job {
            stream: key.to_string(),
            format: output.2,
            dir: plan.dir.clone(),
            path: output.0,
            split: output.1,
            events: self.events.clone(),
            status: status.clone(),
            closed: self.closed.clone(),
        };
        let thread = writer::spawn(job, feed.clone());
        // Attached synchronously: the recording sees the stream from its
        // start, or from now with what the hub replays (start, metadata,
        // configurations, the GOP cache).
        let tap = hub.tap(key.as_str(), feed.clone() as Arc<dyn Tap>);
        Recording {
            feed,
            status,
            _tap: tap,
            thread,
        }
    }

    /// Starts a recording of `key`'s publish for every rule that matches;
    /// call right after the hub took the publisher, before its first frame.
    /// Dropping the returned [`Recordings`] completes them.
    pub fn on_publish(&self, hub: &Hub, key: &StreamKey) -> Recordings {
        let plan = self.plan();
        let mut table = crate::locks::lock(&self.table);
        let pruned = table.prune();
        let mut list = Vec::new();
        for rule in plan
            .rules
            .iter()
            .filter(|r| r.pattern.matches(key.as_str()))
        {
            let output = (rule.path.clone(), rule.split, rule.format);
            list.push(self.spawn(&mut table, &plan, hub, key, output, StartedBy::Rule));
        }
        drop(table);
        drop(pruned);
        Recordings(list)
    }

    /// Starts a recording of the live stream `key` (the API's): it runs
    /// until [`Recorder::stop`] or the publish's end.
    pub fn start(
        &self,
        hub: &Hub,
        key: &StreamKey,
        options: &StartOptions,
    ) -> Result<RecordingStatus, StartError> {
        let output = check_output(
            options.format.as_deref().unwrap_or("cmaf"),
            options.path.as_deref().unwrap_or(template::DEFAULT),
            options.split_secs.unwrap_or(0.0),
            options.split_bytes.unwrap_or(0),
            str::to_string,
        )
        .map_err(StartError::Bad)?;
        let plan = self.plan();
        let mut table = crate::locks::lock(&self.table);
        let pruned = table.prune();
        if !hub.is_live(key.as_str()) {
            return Err(StartError::NotLive(key.to_string()));
        }
        if table
            .active
            .iter()
            .any(|a| a.by == StartedBy::Api && a.stream == key.as_str() && a.feed.running())
        {
            return Err(StartError::Running(key.to_string()));
        }
        let rec = self.spawn(&mut table, &plan, hub, key, output, StartedBy::Api);
        if !rec.feed.started() {
            // The publish ended between the check and the tap: this
            // recording must not wait for the next one.
            drop(table);
            drop(rec);
            return Err(StartError::NotLive(key.to_string()));
        }
        let view = table.active.last().map(|a| a.view());
        table.api.push(rec);
        drop(table);
        drop(pruned);
        info!(stream = key.as_str(), "recording started by the API");
        view.ok_or_else(|| StartError::NotLive(key.to_string()))
    }

    /// Stops every recording of `key` (the API's and the rules'): each
    /// completes with what was queued. Returns what was stopped (empty:
    /// none ran).
    pub fn stop(&self, key: &str) -> Vec<RecordingStatus> {
        let mut table = crate::locks::lock(&self.table);
        let mut pruned = table.prune();
        let mut stopped = Vec::new();
        for a in table
            .active
            .iter()
            .filter(|a| a.stream == key && a.feed.running())
        {
            a.feed.close();
            stopped.push(a.view());
        }
        // The API's recordings leave the hub now.
        let (ours, others) = std::mem::take(&mut table.api).into_iter().partition(|r| {
            table
                .active
                .iter()
                .any(|a| a.stream == key && Arc::ptr_eq(&a.status, &r.status))
        });
        table.api = others;
        pruned.extend::<Vec<Recording>>(ours);
        drop(table);
        drop(pruned);
        if !stopped.is_empty() {
            info!(
                stream = key,
                recordings = stopped.len(),
                "recording stopped by the API"
            );
        }
        stopped
    }

    /// The recording `key` shows: the API's if one runs, else a rule's.
    pub fn status_of(&self, key: &str) -> Option<RecordingStatus> {
        let table = crate::locks::lock(&self.table);
        let running = || {
            table
                .active
                .iter()
                .filter(|a| a.stream == key && a.feed.running())
        };
        running()
            .find(|a| a.by == StartedBy::Api)
            .or_else(|| running().next())
            .map(|a| a.view())
    }

    /// The files being written under `dir`.
    fn writing(&self, dir: &std::path::Path) -> HashSet<String> {
        let table = crate::locks::lock(&self.table);
        table
            .active
            .iter()
            .filter(|a| a.dir == dir)
            .filter_map(|a| a.status.path())
            .collect()
    }

    /// Every recording under `recorder.dir` (blocking: a bounded scan).
    pub fn list(&self) -> Scan {
        let plan = self.plan();
        library::scan(
            &plan.dir,
            || self.writing(&plan.dir),
            &self.vod_place(&plan),
        )
    }

    /// One recording by id (blocking).
    pub fn get(&self, id: &str) -> Option<RecordingFile> {
        let plan = self.plan();
        library::find(
            &plan.dir,
            id,
            || self.writing(&plan.dir),
            &self.vod_place(&plan),
        )
    }

    /// Deletes a finished recording's files (blocking): `recording.deleted`.
    pub fn delete(&self, id: &str) -> Result<RecordingFile, DeleteError> {
        let plan = self.plan();
        let Some(file) = library::find(
            &plan.dir,
            id,
            || self.writing(&plan.dir),
            &self.vod_place(&plan),
        ) else {
            return Err(DeleteError::NotFound(crate::text::short(id, 80)));
        };
        self.remove(&plan.dir, &file, "api")?;
        Ok(file)
    }

    /// Removes a listed file unless it is being written now; logs it and
    /// emits `recording.deleted`.
    fn remove(
        &self,
        dir: &std::path::Path,
        file: &RecordingFile,
        why: &str,
    ) -> Result<(), DeleteError> {
        let path = file.path().to_string();
        // Asked again, not only as listed (belt and braces: a writer
        // never reopens an existing file).
        if file.state == FileState::Recording || self.writing(dir).contains(&path) {
            return Err(DeleteError::Writing(path));
        }
        library::remove(dir, &path).map_err(|e| match e.kind() {
            // Deleted meanwhile (the sweeper, another request).
            std::io::ErrorKind::NotFound => DeleteError::NotFound(file.id.clone()),
            _ => DeleteError::Io(path.clone(), e),
        })?;
        info!(
            stream = file.stream.as_deref().unwrap_or(""),
            path,
            bytes = file.size,
            reason = why,
            "recording deleted"
        );
        self.events.emit(
            "recording.deleted",
            file.stream.as_deref(),
            serde_json::json!({
                "id": file.id,
                "path": path,
                "bytes": file.size,
                "duration": file.duration,
                "reason": why,
            }),
        );
        Ok(())
    }

    /// One retention pass at `now` (blocking): deletes what
    /// [`expired`] chooses. Returns how many files it deleted.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let plan = self.plan();
        if plan.retention_days == 0 && plan.retention_bytes == 0 {
            return 0;
        }
        let scan = self.list();
        if scan.truncated {
            warn!(
                dir = %plan.dir.display(),
                "recording retention: the recorder dir holds more than a scan reads \
                 ({MAX_FILES} files, {MAX_ENTRIES} entries, {MAX_DEPTH} levels): only those are counted"
            );
        }
        let now_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut deleted = 0;
        for (i, why) in expired(
            &scan.files,
            now_ms,
            i64::from(plan.retention_days) * 86_400_000,
            plan.retention_bytes,
        ) {
            match self.remove(&plan.dir, &scan.files[i], why.as_str()) {
                Ok(()) => deleted += 1,
                Err(e) => warn!("recording retention: {e}"),
            }
        }
        deleted
    }

    /// The retention sweeper: a pass at start, then every
    /// [`SWEEP_EVERY`] and whenever a recording file closes or a recording
    /// ends, until `shutdown`. It also forgets finished recordings.
    pub async fn run_sweeper(self, shutdown: crate::shutdown::Shutdown) {
        loop {
            // Finished API recordings leave the hub (their taps detach).
            let pruned = crate::locks::lock(&self.table).prune();
            drop(pruned);
            let r = self.clone();
            let _ = tokio::task::spawn_blocking(move || r.sweep(SystemTime::now())).await;
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                () = self.closed.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// How often retention runs besides when a file closes.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

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
    status: Arc<Status>,
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
