//! One recording: the bounded queue the stream feeds ([`Feed`], a hub
//! tap) and the writer thread that drains it into files.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use tracing::{info, warn};

use super::cmaf::{CmafOut, INDEX};
use super::library::{self, FileState, Sidecar};
use super::{Format, PathTemplate, Split, FLUSH_EVERY};
use crate::hub::Tap;
use crate::media::flv::{CodecSet, TagWriter};
use crate::media::flv_file;
use crate::media::{MediaKind, StreamEvent};
use crate::webhooks::Webhooks;

/// How a recording ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The publish ended; the files written (relative to the record dir).
    Completed(Vec<String>),
    /// Stopped early; the reason (the files keep what was written).
    Failed(String),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Running,
    /// The publish ended: write what is queued, then finish.
    Closing,
    /// The queue overflowed: the writer stops; events are ignored.
    Overflowed,
    /// The writer stopped (an error): events are ignored.
    Stopped,
}

struct Queue {
    events: VecDeque<StreamEvent>,
    bytes: usize,
    state: State,
    /// Whether this publish's own `PublisherStarted` was seen.
    started: bool,
}

/// The writer looks at its queue this often when nothing woke it: events
/// wait at most this long (a CMAF segment is on disk this long after it
/// closes), and a recording costs a few wake-ups a second instead of one
/// per frame.
const WAKE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// A queue this long wakes the writer at once (a burst: a GOP cache
/// replayed, a publisher catching up).
const WAKE_EVENTS: usize = 256;

/// The bounded queue between a stream and its writer thread.
pub struct Feed {
    limit: usize,
    queue: Mutex<Queue>,
    ready: Condvar,
}

fn cost(e: &StreamEvent) -> usize {
    64 + match e {
        StreamEvent::Frame(f) | StreamEvent::TrackFrame(_, f) => f.data.len(),
        _ => 0,
    }
}

impl Feed {
    pub fn new(limit: usize) -> Feed {
        Feed {
            limit,
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                bytes: 0,
                state: State::Running,
                started: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// The publish ended: the writer finishes after what is queued.
    pub fn close(&self) {
        let mut q = crate::locks::lock(&self.queue);
        if q.state == State::Running {
            q.state = State::Closing;
        }
        self.ready.notify_one();
    }

    /// Whether it saw its publish start (the hub replays the start to a
    /// tap attached to a live stream).
    pub fn started(&self) -> bool {
        crate::locks::lock(&self.queue).started
    }

    /// Whether it still takes events (not closed, stopped or overflowed).
    pub fn running(&self) -> bool {
        crate::locks::lock(&self.queue).state == State::Running
    }

    /// The writer gave up: nothing more is queued.
    fn stop(&self) {
        let mut q = crate::locks::lock(&self.queue);
        q.state = State::Stopped;
        q.events.clear();
        q.bytes = 0;
    }

    /// Waits for events; `Err(state)` once there are none and the state is
    /// not `Running`.
    fn take(&self, out: &mut VecDeque<StreamEvent>) -> Result<(), State> {
        let mut q = crate::locks::lock(&self.queue);
        loop {
            match q.state {
                State::Overflowed => return Err(State::Overflowed),
                State::Stopped => return Err(State::Stopped),
                _ if !q.events.is_empty() => {
                    std::mem::swap(&mut q.events, out);
                    q.bytes = 0;
                    return Ok(());
                }
                State::Closing => return Err(State::Closing),
                State::Running => {
                    // Woken by volume or a change of state; otherwise it
                    // looks again after a while (see `WAKE_EVERY`).
                    q = self
                        .ready
                        .wait_timeout(q, WAKE_EVERY)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn queued_bytes(&self) -> usize {
        crate::locks::lock(&self.queue).bytes
    }

    #[cfg(test)]
    pub(super) fn overflowed(&self) -> bool {
        crate::locks::lock(&self.queue).state == State::Overflowed
    }
}

impl Tap for Feed {
    /// On the publisher's thread: an append, or the drop policy (the whole
    /// recording stops; the publisher never waits).
    fn event(&self, event: &StreamEvent) {
        let mut q = crate::locks::lock(&self.queue);
        if q.state != State::Running {
            return;
        }
        match event {
            StreamEvent::PublisherStarted if q.started => {
                // Another publisher took the stream over: this publish's
                // recording ends here (the new publish has its own).
                q.state = State::Closing;
                self.ready.notify_one();
                return;
            }
            StreamEvent::PublisherStarted => q.started = true,
            StreamEvent::PublisherStopped => {
                q.state = State::Closing;
                self.ready.notify_one();
                return;
            }
            _ => {}
        }
        let c = cost(event);
        if q.bytes + c > self.limit {
            q.state = State::Overflowed;
            q.events.clear();
            q.bytes = 0;
            self.ready.notify_one();
            return;
        }
        q.bytes += c;
        q.events.push_back(event.clone());
        if q.events.len() == WAKE_EVENTS {
            self.ready.notify_one();
        }
    }
}

/// What a recording shows while it runs (the API's view), shared by its
/// writer thread and the recorder.
pub struct Status {
    pub started: SystemTime,
    /// The file being written (relative to the record dir) and how many
    /// were opened. Held while a file is created, so whoever reads it
    /// after seeing the file on disk knows it is being written.
    pub(super) file: Mutex<(Option<String>, u64)>,
    /// Bytes written, every file.
    pub(super) bytes: AtomicU64,
    /// The writer finished (completed or failed).
    pub(super) done: AtomicBool,
}

impl Status {
    pub fn new() -> Status {
        Status {
            started: SystemTime::now(),
            file: Mutex::new((None, 0)),
            bytes: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> Option<String> {
        crate::locks::lock(&self.file).0.clone()
    }

    pub fn files(&self) -> u64 {
        crate::locks::lock(&self.file).1
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// What a writer thread needs.
pub struct Job {
    pub stream: String,
    pub format: Format,
    pub dir: PathBuf,
    pub path: PathTemplate,
    pub split: Split,
    pub events: Webhooks,
    pub status: Arc<Status>,
    /// Woken when a file closes (retention may have work).
    pub closed: Arc<tokio::sync::Notify>,
}

/// Starts the writer thread (`None` if the system refused a thread: the
/// recording is then failed at once and says so).
pub fn spawn(job: Job, feed: Arc<Feed>) -> Option<std::thread::JoinHandle<Outcome>> {
    let (stream, events) = (job.stream.clone(), job.events.clone());
    let status = job.status.clone();
    let f = feed.clone();
    match std::thread::Builder::new()
        .name("record".into())
        .spawn(move || run(job, &f))
    {
        Ok(t) => Some(t),
        Err(e) => {
            feed.stop();
            status.done.store(true, Ordering::Release);
            let reason = format!("cannot start a writer thread: {e}");
            warn!(stream, "recording failed: {reason}");
            events.emit(
                "recording.failed",
                Some(&stream),
                serde_json::json!({ "path": null, "reason": reason }),
            );
            None
        }
    }
}

/// The file (FLV) or directory (CMAF) being written.
struct Open {
    /// Relative to the record dir: the FLV file, or the CMAF directory's
    /// `index.m3u8`.
    path: String,
    /// When it opened.
    start: SystemTime,
    sink: Sink,
    bytes: u64,
    frames: u64,
    first_dts: Option<i64>,
    last_dts: i64,
    flushed_dts: i64,
}

enum Sink {
    Flv {
        out: BufWriter<File>,
        tags: TagWriter,
    },
    Cmaf(Box<CmafOut>),
}

impl Open {
    /// Writes `e` (FLV: its tags, none for an event the writer drops;
    /// CMAF: into the segmenter, and the segments it closed); returns
    /// whether it took it.
    fn write(&mut self, e: &StreamEvent) -> Result<bool, String> {
        match &mut self.sink {
            Sink::Flv { out, tags } => {
                let mut wrote = false;
                for tag in tags.write(e) {
                    let bytes = flv_file::encode_tag(&tag);
                    out.write_all(&bytes)
                        .map_err(|e| io_reason("write", &self.path, e))?;
                    self.bytes += bytes.len() as u64;
                    wrote = true;
                }
                Ok(wrote)
            }
            Sink::Cmaf(c) => {
                self.bytes += c.write(e).map_err(|e| io_reason("write", &self.path, e))?;
                Ok(matches!(e, StreamEvent::Frame(_)))
            }
        }
    }

    /// FLV: hands what is buffered to the OS. (CMAF writes whole files.)
    fn flush(&mut self) -> Result<(), String> {
        match &mut self.sink {
            Sink::Flv { out, .. } => out.flush().map_err(|e| io_reason("write", &self.path, e)),
            Sink::Cmaf(_) => Ok(()),
        }
    }

    /// Writes what is left and syncs it to disk.
    fn close(&mut self) -> Result<(), String> {
        match &mut self.sink {
            Sink::Flv { out, .. } => {
                out.flush().map_err(|e| io_reason("write", &self.path, e))?;
                out.get_ref()
                    .sync_data()
                    .map_err(|e| io_reason("sync", &self.path, e))
            }
            Sink::Cmaf(c) => {
                self.bytes += c.finish().map_err(|e| io_reason("write", &self.path, e))?;
                Ok(())
            }
        }
    }
}

struct Writer {
    job: Job,
    /// The events a new file starts with: metadata and the latest
    /// configuration of each track.
    headers: Vec<StreamEvent>,
    file: Option<Open>,
    done: Vec<String>,
}

fn run(job: Job, feed: &Feed) -> Outcome {
    let mut w = Writer {
        job,
        headers: Vec::new(),
        file: None,
        done: Vec::new(),
    };
    let mut batch = VecDeque::new();
    let end = 'run: loop {
        match feed.take(&mut batch) {
            Ok(()) => {
                for e in batch.drain(..) {
                    if let Err(reason) = w.event(&e) {
                        feed.stop();
                        break 'run Err(reason);
                    }
                }
            }
            Err(State::Overflowed) => {
                break Err(format!(
                    "the disk cannot keep up: the recording's queue of {} bytes is full \
                     (recorder.queue_bytes)",
                    feed.limit
                ))
            }
            Err(_) => break Ok(()),
        }
    };
    let (status, closed) = (w.job.status.clone(), w.job.closed.clone());
    let outcome = w.finish(end);
    *crate::locks::lock(&status.file) = (None, status.files());
    status.done.store(true, Ordering::Release);
    // The sweeper forgets finished recordings (and applies retention).
    closed.notify_one();
    outcome
}

impl Writer {
    fn stream(&self) -> &str {
        &self.job.stream
    }

    /// Writes one event; `Err` is why the recording stops.
    fn event(&mut self, e: &StreamEvent) -> Result<(), String> {
        match e {
            StreamEvent::PublisherStarted | StreamEvent::PublisherStopped => return Ok(()),
            StreamEvent::Metadata(_) => {
                self.headers
                    .retain(|h| !matches!(h, StreamEvent::Metadata(_)));
                self.headers.push(e.clone());
            }
            StreamEvent::Config(c) => {
                let kind = c.kind();
                self.headers
                    .retain(|h| !matches!(h, StreamEvent::Config(o) if o.kind() == kind));
                self.headers.push(e.clone());
            }
            StreamEvent::TrackConfig(id, c) => {
                let kind = c.kind();
                self.headers.retain(
                    |h| !matches!(h, StreamEvent::TrackConfig(i, o) if i == id && o.kind() == kind),
                );
                self.headers.push(e.clone());
            }
            StreamEvent::Frame(f) | StreamEvent::TrackFrame(_, f) => {
                let main_key = matches!(e, StreamEvent::Frame(_))
                    && f.kind() == MediaKind::Video
                    && f.keyframe;
                let starts_here = main_key || !self.has_video();
                if self.file.is_none() {
                    self.open(f.dts)?;
                } else if starts_here && self.split_due(f.dts) {
                    self.close_file()?;
                    self.open(f.dts)?;
                }
                let file = self.file.as_mut().ok_or("no file open")?;
                let before = file.bytes;
                let wrote = file.write(e)?;
                self.job
                    .status
                    .bytes
                    .fetch_add(file.bytes - before, Ordering::Relaxed);
                if wrote {
                    file.frames += 1;
                    file.first_dts.get_or_insert(f.dts);
                    file.last_dts = file.last_dts.max(f.dts);
                }
                if main_key || f.dts - file.flushed_dts >= FLUSH_EVERY.as_millis() as i64 {
                    file.flush()?;
                    file.flushed_dts = f.dts;
                }
                return Ok(());
            }
        }
        // A new configuration goes into the open file too.
        if let Some(file) = self.file.as_mut() {
            let before = file.bytes;
            file.write(e)?;
            self.job
                .status
                .bytes
                .fetch_add(file.bytes - before, Ordering::Relaxed);
        }
        Ok(())
    }

    fn has_video(&self) -> bool {
        self.headers
            .iter()
            .any(|h| matches!(h, StreamEvent::Config(c) if c.kind() == MediaKind::Video))
    }

    fn split_due(&self, dts: i64) -> bool {
        let Some(f) = &self.file else { return false };
        let split = self.job.split;
        split
            .after_ms
            .is_some_and(|ms| f.first_dts.is_some_and(|first| dts - first >= ms))
            || split.after_bytes.is_some_and(|b| f.bytes >= b)
    }

    /// Opens the next file, named for now, and writes its header,
    /// metadata and configurations (at `dts`, the time of its first frame).
    fn open(&mut self, dts: i64) -> Result<(), String> {
        let start = SystemTime::now();
        let base = self.job.path.fill(&self.job.stream, start);
        let (path, file) = {
            // Held from before the file exists until it is known as being
            // written (see `Status::file`).
            let mut current = crate::locks::lock(&self.job.status.file);
            let (path, file) = match self.job.format {
                Format::Flv => {
                    let (path, file) = create(&self.job.dir, &base)?;
                    (path, Some(file))
                }
                Format::Cmaf => (create_dir(&self.job.dir, &base)?, None),
            };
            *current = (Some(path.clone()), current.1 + 1);
            (path, file)
        };
        let Some(file) = file else {
            // CMAF: the headers go into the segmenter.
            let dir = self.job.dir.join(&path);
            let dir = dir.parent().unwrap_or(&dir).to_path_buf();
            let mut sink = Box::new(CmafOut::new(dir, &self.job.stream));
            for h in &self.headers {
                sink.write(h).map_err(|e| io_reason("write", &path, e))?;
            }
            self.opened(path, start, Sink::Cmaf(sink), 0, dts);
            return Ok(());
        };
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let audio = self
            .headers
            .iter()
            .any(|h| matches!(h, StreamEvent::Config(c) if c.kind() == MediaKind::Audio));
        let video = self.has_video();
        let mut tags = TagWriter::new().accepting(CodecSet::ALL).with_tracks();
        let mut bytes = 13u64;
        let mut head = flv_file::header(audio || !video, video).to_vec();
        let ts = (dts & 0xFFFF_FFFF) as u32;
        for h in &self.headers {
            for mut tag in tags.write(h) {
                tag.timestamp = ts;
                head.extend_from_slice(&flv_file::encode_tag(&tag));
            }
        }
        bytes += (head.len() - 13) as u64;
        out.write_all(&head)
            .and_then(|()| out.flush())
            .map_err(|e| io_reason("write", &path, e))?;
        self.opened(path, start, Sink::Flv { out, tags }, bytes, dts);
        Ok(())
    }

    /// Says a file opened and makes it the one written.
    fn opened(&mut self, path: String, start: SystemTime, sink: Sink, bytes: u64, dts: i64) {
        self.job.status.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.sidecar(&path, start, FileState::Recording, None, None);
        info!(
            stream = self.stream(),
            path,
            format = self.job.format.as_str(),
            "recording started"
        );
        self.job.events.emit(
            "recording.started",
            Some(&self.job.stream),
            serde_json::json!({ "path": path, "format": self.job.format.as_str() }),
        );
        self.file = Some(Open {
            path,
            start,
            sink,
            bytes,
            frames: 0,
            first_dts: None,
            last_dts: dts,
            flushed_dts: dts,
        });
    }

    /// Flushes, syncs and closes the current file: `recording.completed`.
    fn close_file(&mut self) -> Result<(), String> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        let before = f.bytes;
        let closed = f.close();
        self.job
            .status
            .bytes
            .fetch_add(f.bytes - before, Ordering::Relaxed);
        if let Err(e) = closed {
            // Failed: `finish` says so with this file's path.
            self.file = Some(f);
            return Err(e);
        }
        let secs = f
            .first_dts
            .map_or(0.0, |first| (f.last_dts - first) as f64 / 1000.0);
        info!(
            stream = self.job.stream,
            path = f.path,
            secs,
            bytes = f.bytes,
            frames = f.frames,
            "recording completed"
        );
        self.job.events.emit(
            "recording.completed",
            Some(&self.job.stream),
            serde_json::json!({
                "path": f.path,
                "format": self.job.format.as_str(),
                "duration": secs,
                "bytes": f.bytes,
                "frames": f.frames,
            }),
        );
        self.sidecar(
            &f.path,
            f.start,
            FileState::Complete,
            Some((secs, f.bytes)),
            None,
        );
        self.done.push(f.path);
        self.job.closed.notify_one();
        Ok(())
    }

    /// Writes a file's sidecar (see `library`); a failure is logged, the
    /// recording goes on.
    fn sidecar(
        &self,
        path: &str,
        start: SystemTime,
        state: FileState,
        done: Option<(f64, u64)>,
        reason: Option<String>,
    ) {
        let s = Sidecar {
            stream: self.job.stream.clone(),
            format: self.job.format.as_str().into(),
            start: crate::timefmt::rfc3339_millis(start),
            start_ms: start
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            state,
            duration: done.map(|d| d.0),
            bytes: done.map(|d| d.1),
            reason,
        };
        if let Err(e) = library::write_sidecar(&self.job.dir, path, &s) {
            warn!(
                stream = self.job.stream,
                path, "recording's sidecar not written: {e}"
            );
        }
    }

    fn finish(mut self, end: Result<(), String>) -> Outcome {
        let end = end.and_then(|()| self.close_file());
        match end {
            Ok(()) => Outcome::Completed(self.done),
            Err(reason) => {
                // Keep what was written: a failed flush may still leave
                // most of it on disk.
                let path = self.file.take().map(|mut f| {
                    let _ = f.flush();
                    self.sidecar(
                        &f.path,
                        f.start,
                        FileState::Failed,
                        None,
                        Some(reason.clone()),
                    );
                    f.path
                });
                self.job.closed.notify_one();
                warn!(
                    stream = self.job.stream,
                    path = path.as_deref().unwrap_or(""),
                    "recording failed: {reason}"
                );
                self.job.events.emit(
                    "recording.failed",
                    Some(&self.job.stream),
                    serde_json::json!({ "path": path, "reason": reason }),
                );
                Outcome::Failed(reason)
            }
        }
    }
}

fn io_reason(what: &str, path: &str, e: std::io::Error) -> String {
    format!("cannot {what} {path}: {e}")
}

/// Creates `dir/base.flv` (its directories first), or `base-1.flv`, … if
/// the name is taken (a split within the same second): never overwrites.
fn create(dir: &Path, base: &str) -> Result<(String, File), String> {
    create_parent(dir, base)?;
    for n in 0..1000 {
        let rel = format!("{}.flv", numbered(base, n));
        // A CMAF recording of the same name would share its sidecar.
        if dir.join(rel.trim_end_matches(".flv")).exists() {
            continue;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&rel))
        {
            Ok(f) => return Ok((rel, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_reason("create", &rel, e)),
        }
    }
    Err(format!(
        "cannot create {base}.flv: 1000 files of that name exist"
    ))
}

/// Creates the directory `dir/base` (its parents first), or `base-1`, …
/// if the name is taken: never writes into another recording. Returns the
/// recording's path: its `index.m3u8` inside.
fn create_dir(dir: &Path, base: &str) -> Result<String, String> {
    create_parent(dir, base)?;
    for n in 0..1000 {
        let name = numbered(base, n);
        // A FLV recording of the same name would share its sidecar.
        if dir.join(format!("{name}.flv")).exists() {
            continue;
        }
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => return Ok(format!("{name}/{INDEX}")),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_reason("create", &name, e)),
        }
    }
    Err(format!(
        "cannot create {base}/: 1000 recordings of that name exist"
    ))
}

/// The directories `base` goes in, under `dir`.
fn create_parent(dir: &Path, base: &str) -> Result<(), String> {
    let parent = dir.join(Path::new(base).parent().unwrap_or(Path::new("")));
    std::fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create the directory {}: {e}", parent.display()))
}

/// The `n`th name tried for `base`: itself, then `base-1`, `base-2`, …
fn numbered(base: &str, n: u32) -> String {
    if n == 0 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}
