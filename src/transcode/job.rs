//! One transcoded stream's supervisor task.
//!
//! It subscribes to the source (a bounded hub queue: a slow ffmpeg loses
//! frames by the hub's drop policy, never slows the publisher), starts
//! ffmpeg at a source keyframe, writes the source to its stdin as FLV and
//! publishes each rendition it reads back as `KEY/NAME`. ffmpeg exiting on
//! its own is restarted after a backoff; the publisher leaving stops ffmpeg
//! at once, and the job ends unless the publisher returns within the grace
//! period. The renditions' hub publishers live as long as the job, so their
//! clock stays the source's across restarts; each gap is told to their
//! consumers as a stop and a start (a discontinuity in HLS and DASH).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{error, info, warn};

use super::child;
use super::command::{self, Feed, SourceTracks};
use super::flv_io::{FlvWriter, OutputParser};
use super::progress::ProgressParser;
use super::{lock, JobStatus, Profile, TranscodeState, Transcoder, FEED_OFFSET_MS};
use crate::hub::{Closed, StreamEvent, Subscriber};
use crate::media::mkv::MkvWriter;
use crate::media::{CodecConfig, Frame, MediaKind};
use crate::stream_key::StreamKey;
use crate::streams::{PublishGuard, Registry};

/// A write to ffmpeg's stdin taking longer than this means it is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A run this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// One rendition's hub side, for the job's life.
struct Output {
    key: String,
    publisher: Arc<PublishGuard>,
    clock: Arc<Mutex<OutClock>>,
}

/// What a rendition last delivered: output that ffmpeg repeats after a
/// restart (it starts again from a keyframe) is not delivered twice.
#[derive(Default)]
struct OutClock {
    video: Option<i64>,
    audio: Option<i64>,
    /// Video is held back to the next keyframe after a dropped frame.
    need_key: bool,
    video_config: Option<Arc<CodecConfig>>,
    audio_config: Option<Arc<CodecConfig>>,
}

/// What writes the source for ffmpeg's stdin (see [`Feed`]).
enum FeedWriter {
    Flv(FlvWriter),
    Matroska(Box<MkvWriter>),
}

/// One ffmpeg run.
struct Run {
    child: Child,
    stdin: Option<ChildStdin>,
    writer: FeedWriter,
    /// The stream's header (FLV header and sequence headers, or Matroska's
    /// header and tracks), written before the first frame.
    head: Option<Bytes>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
    video: Arc<CodecConfig>,
    audio: Option<Arc<CodecConfig>>,
}

/// The source as the job last saw it.
#[derive(Default)]
struct Source {
    live: bool,
    video: Option<Arc<CodecConfig>>,
    audio: Option<Arc<CodecConfig>>,
}

/// Decode times last fed to ffmpeg, across runs: a new run starts at a
/// later keyframe than anything the previous one had.
#[derive(Default)]
struct Fed {
    video: Option<i64>,
    audio: Option<i64>,
}

pub(super) async fn run(
    t: Transcoder,
    registry: Registry,
    key: String,
    profile: Profile,
    status: Arc<JobStatus>,
) {
    let mut job = Supervisor::new(t, registry, key, profile, status);
    while let Flow::Continue = job.step().await {}
    job.finish().await;
}

/// Whether the supervisor goes on after a step.
enum Flow {
    Continue,
    End,
}

/// What one job's supervisor knows between events.
struct Supervisor {
    t: Transcoder,
    /// Renditions are published through it.
    registry: Registry,
    key: String,
    profile: Profile,
    status: Arc<JobStatus>,
    sub: Subscriber,
    src: Source,
    /// The renditions' hub side, taken at the first start, kept for the job.
    outputs: Option<Vec<Output>>,
    run: Option<Run>,
    fed: Fed,
    /// The wait after the next failure; doubles up to `backoff_max`.
    backoff: Duration,
    /// No ffmpeg starts before this (a backoff running).
    not_before: Instant,
    /// Since when the publisher is gone: the job ends a grace period later.
    gone_since: Option<Instant>,
}

impl Supervisor {
    fn new(
        t: Transcoder,
        registry: Registry,
        key: String,
        profile: Profile,
        status: Arc<JobStatus>,
    ) -> Supervisor {
        let sub = t.inner.hub.subscribe(&key);
        let gone_since = (!sub.is_live()).then(Instant::now);
        Supervisor {
            backoff: t.inner.settings.backoff_initial,
            t,
            registry,
            key,
            profile,
            status,
            sub,
            src: Source::default(),
            outputs: None,
            run: None,
            fed: Fed::default(),
            not_before: Instant::now(),
            gone_since,
        }
    }

    /// Waits for the next thing to happen and handles it.
    async fn step(&mut self) -> Flow {
        let grace_at = self.gone_since.map(|t| t + self.t.inner.settings.grace);
        tokio::select! {
            ev = self.sub.recv() => match ev {
                Err(closed) => self.input_lost(closed).await,
                Ok(StreamEvent::PublisherStarted) => self.publisher_started().await,
                Ok(StreamEvent::PublisherStopped) => self.publisher_stopped().await,
                Ok(StreamEvent::Metadata(_)) => {}
                Ok(StreamEvent::Config(c)) => self.source_config(c).await,
                Ok(StreamEvent::Frame(f)) => return self.frame(f).await,
                // A ladder is made from track 0.
                Ok(StreamEvent::TrackConfig(..) | StreamEvent::TrackFrame(..)) => {}
            },
            exit = wait_run(&mut self.run) => self.ffmpeg_exited(exit).await,
            _ = self.t.inner.shutdown.cancelled() => {
                info!(stream = self.key, "castgate is stopping: transcode job ends");
                return Flow::End;
            }
            _ = sleep_until_opt(grace_at) => return self.grace_over(),
        }
        Flow::Continue
    }

    /// The hub dropped this job's queue: ffmpeg starts again from a fresh one.
    async fn input_lost(&mut self, closed: Closed) {
        warn!(
            stream = self.key,
            "transcode input fell behind ({closed}); restarting ffmpeg"
        );
        self.stop_ffmpeg("input fell behind").await;
        self.sub = self.t.inner.hub.subscribe(&self.key);
        self.src = Source::default();
    }

    async fn publisher_started(&mut self) {
        if self.run.is_some() {
            self.stop_ffmpeg("publisher changed").await;
        }
        self.src = Source {
            live: true,
            ..Source::default()
        };
        self.gone_since = None;
        self.status.update(|v| v.state = TranscodeState::Starting);
    }

    async fn publisher_stopped(&mut self) {
        self.src.live = false;
        self.gone_since = Some(Instant::now());
        self.stop_ffmpeg("publisher left").await;
        self.status.update(|v| v.state = TranscodeState::Waiting);
    }

    async fn source_config(&mut self, c: Arc<CodecConfig>) {
        let changed = self.run.as_ref().is_some_and(|r| match c.kind() {
            MediaKind::Video => *r.video != *c,
            MediaKind::Audio => r.audio.as_ref().is_none_or(|a| **a != *c),
        });
        match c.kind() {
            MediaKind::Video => self.src.video = Some(c.clone()),
            MediaKind::Audio => self.src.audio = Some(c.clone()),
        }
        if changed {
            // New codec parameters: a new ffmpeg from the next keyframe.
            self.stop_ffmpeg("source parameters changed").await;
        }
    }

    /// Feeds a source frame to ffmpeg, starting it first at a keyframe.
    async fn frame(&mut self, f: Frame) -> Flow {
        if self.run.is_none() {
            if !self.startable(&f) {
                return Flow::Continue;
            }
            let Some(video) = self.src.video.clone() else {
                return Flow::Continue;
            };
            if let Flow::End = self.start_ffmpeg(video) {
                return Flow::End;
            }
        }
        if let Some(r) = self.run.as_mut() {
            feed(r, &f, &mut self.fed, &self.key).await;
        }
        Flow::Continue
    }

    /// ffmpeg may start at `f`: a live source's keyframe, past the backoff,
    /// later than anything an earlier run was given.
    fn startable(&self, f: &Frame) -> bool {
        self.src.live
            && f.kind() == MediaKind::Video
            && f.keyframe
            && Instant::now() >= self.not_before
            && self.fed.video.is_none_or(|d| f.dts > d)
    }

    /// Starts ffmpeg: the renditions are taken in the hub at the first
    /// start and told the stream resumes at the next ones. A failed spawn
    /// backs off; renditions that cannot be taken end the job.
    fn start_ffmpeg(&mut self, video: Arc<CodecConfig>) -> Flow {
        match &self.outputs {
            None => match publish_outputs(&self.registry, &self.key, &self.profile) {
                Ok(o) => self.outputs = Some(o),
                Err(e) => {
                    error!(stream = self.key, "transcode job stopped: {e}");
                    return Flow::End;
                }
            },
            Some(o) => {
                for o in o {
                    o.publisher.send(StreamEvent::PublisherStarted);
                }
            }
        }
        let Some(o) = &self.outputs else {
            return Flow::End;
        };
        let audio = self.src.audio.clone();
        match start(
            &self.t,
            &self.key,
            &self.profile,
            video,
            audio,
            o,
            &self.status,
        ) {
            Ok(r) => self.run = Some(r),
            Err(e) => {
                let settings = &self.t.inner.settings;
                error!(stream = self.key, ffmpeg = %settings.ffmpeg.display(), "cannot start ffmpeg: {e}");
                failed(
                    &self.t,
                    &self.key,
                    &self.profile.name,
                    &format!("cannot start ffmpeg: {e}"),
                    self.backoff,
                );
                for o in o {
                    o.publisher.send(StreamEvent::PublisherStopped);
                }
                self.back_off();
                self.status.update(|v| v.state = TranscodeState::Backoff);
            }
        }
        Flow::Continue
    }

    /// ffmpeg ended on its own: it restarts after the backoff (reset by a
    /// long enough run).
    async fn ffmpeg_exited(&mut self, exit: std::io::Result<std::process::ExitStatus>) {
        let ran = self
            .run
            .as_ref()
            .map_or(Duration::ZERO, |r| r.started.elapsed());
        let exit = match exit {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        if ran >= STABLE_RUN {
            self.backoff = self.t.inner.settings.backoff_initial;
        }
        warn!(stream = self.key, %exit, ran_secs = ran.as_secs_f64(), restart_in_secs = self.backoff.as_secs_f64(), "ffmpeg exited; restarting");
        failed(&self.t, &self.key, &self.profile.name, &exit, self.backoff);
        self.stop_ffmpeg("").await;
        self.back_off();
        self.status.update(|v| {
            v.restarts += 1;
            v.last_exit = Some(exit);
            v.state = TranscodeState::Backoff;
        });
    }

    /// No start before the current backoff has passed; the next one is longer.
    fn back_off(&mut self) {
        self.not_before = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.t.inner.settings.backoff_max);
    }

    /// The grace period is over: the job ends unless the publisher is back.
    /// Decided under the registry lock, so a publish that arrives now either
    /// finds this job or starts a new one.
    fn grace_over(&mut self) -> Flow {
        let mut jobs = lock(&self.t.inner.jobs);
        if self.sub.is_live() {
            self.gone_since = None;
            return Flow::Continue;
        }
        self.unregister(&mut jobs);
        Flow::End
    }

    /// Takes this job out of the registry: only its own entry, as a new
    /// publish may have started a new job.
    fn unregister(&self, jobs: &mut HashMap<String, Arc<JobStatus>>) {
        if jobs
            .get(&self.key)
            .is_some_and(|j| Arc::ptr_eq(j, &self.status))
        {
            jobs.remove(&self.key);
        }
    }

    async fn stop_ffmpeg(&mut self, why: &str) {
        stop(
            &mut self.run,
            self.outputs.as_deref(),
            &self.status,
            &self.key,
            why,
        )
        .await;
    }

    async fn finish(mut self) {
        self.stop_ffmpeg("job ended").await;
        self.unregister(&mut lock(&self.t.inner.jobs));
        info!(stream = self.key, "transcode job ended");
        // Dropping the outputs ends the rendition streams.
        drop(self.outputs.take());
    }
}

/// Tells operators (webhook `transcode.failed`, the restart counter in
/// `/metrics`) that ffmpeg ended on its own or could not start.
fn failed(t: &Transcoder, key: &str, profile: &str, why: &str, restart_in: Duration) {
    crate::metrics::transcode_restart();
    t.inner.events.emit(
        "transcode.failed",
        Some(key),
        serde_json::json!({
            "profile": profile,
            "reason": why,
            "restart_in_secs": restart_in.as_secs_f64(),
        }),
    );
}

async fn wait_run(run: &mut Option<Run>) -> std::io::Result<std::process::ExitStatus> {
    match run {
        Some(r) => r.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Publishes the rendition streams (`KEY/NAME`) through the registry, as
/// any publish: packaging, relays, stats and events follow them.
fn publish_outputs(
    registry: &Registry,
    key: &str,
    profile: &Profile,
) -> Result<Vec<Output>, String> {
    let source = StreamKey::parse(key).map_err(|e| format!("stream {key}: {e}"))?;
    let mut out = Vec::new();
    for (r, _, _) in profile.encoded() {
        let rkey = source
            .rendition(&r.name)
            .map_err(|e| format!("rendition {key}/{}: {e}", r.name))?;
        let publisher = registry
            .publish_rendition(rkey.clone(), source.clone(), profile.name.clone())
            .map_err(|e| format!("rendition {rkey}: {e}"))?;
        out.push(Output {
            key: rkey.into(),
            publisher: Arc::new(publisher),
            clock: Arc::default(),
        });
    }
    Ok(out)
}

fn start(
    t: &Transcoder,
    key: &str,
    profile: &Profile,
    video: Arc<CodecConfig>,
    audio: Option<Arc<CodecConfig>>,
    outputs: &[Output],
    status: &Arc<JobStatus>,
) -> std::io::Result<Run> {
    let settings = &t.inner.settings;
    let legacy = video.codec().is_legacy() && audio.as_ref().is_none_or(|a| a.codec().is_legacy());
    let tracks = SourceTracks {
        audio: audio.is_some(),
        feed: if legacy { Feed::Flv } else { Feed::Matroska },
        audio_fits_flv: audio.as_ref().is_none_or(|a| a.codec().is_legacy()),
    };
    let args = command::args(profile, tracks);
    let spawned = child::spawn(&settings.ffmpeg, &args, outputs.len())?;
    let mut child = spawned.child;
    let pid = child.id();
    info!(stream = key, pid, "ffmpeg started");
    tracing::debug!(stream = key, args = ?args, "ffmpeg command line");
    let mut tasks = Vec::new();
    for (pipe, o) in spawned.outputs.into_iter().zip(outputs) {
        tasks.push(tokio::spawn(read_output(
            pipe,
            o.key.clone(),
            o.publisher.clone(),
            o.clock.clone(),
        )));
    }
    if let Some(stdout) = child.stdout.take() {
        let status = status.clone();
        tasks.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut parser = ProgressParser::default();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = parser.line(&line) {
                    status.update(|v| v.progress = Some(p));
                }
            }
        }));
    }
    if let Some(stderr) = child.stderr.take() {
        tasks.push(tokio::spawn(log_stderr(
            stderr,
            key.to_string(),
            settings.stderr_lines_per_minute,
        )));
    }
    status.update(|v| {
        v.pid = pid;
        v.state = TranscodeState::Running;
        v.progress = None;
    });
    let (writer, head) = match tracks.feed {
        Feed::Flv => {
            let mut writer = FlvWriter::new(FEED_OFFSET_MS);
            let mut head = FlvWriter::header(tracks.audio, true).to_vec();
            for c in [Some(&video), audio.as_ref()].into_iter().flatten() {
                if let Some(tag) = writer.tag(&StreamEvent::Config(c.clone())) {
                    head.extend_from_slice(&tag);
                }
            }
            (FeedWriter::Flv(writer), head)
        }
        Feed::Matroska => {
            let writer = MkvWriter::new(Some(&video), audio.as_deref(), FEED_OFFSET_MS)
                .map_err(std::io::Error::other)?;
            let head = writer.header().to_vec();
            (FeedWriter::Matroska(Box::new(writer)), head)
        }
    };
    let stdin = child.stdin.take();
    Ok(Run {
        child,
        stdin,
        writer,
        head: Some(Bytes::from(head)),
        tasks,
        started: Instant::now(),
        video,
        audio,
    })
}

/// Writes one source frame to ffmpeg (after the header, on the first).
async fn feed(r: &mut Run, f: &Frame, fed: &mut Fed, key: &str) {
    let last = match f.kind() {
        MediaKind::Video => &mut fed.video,
        MediaKind::Audio => &mut fed.audio,
    };
    if last.is_some_and(|d| f.dts <= d) {
        // Already given to an earlier run (the GOP a restart begins with).
        return;
    }
    *last = Some(f.dts);
    let tag = match &mut r.writer {
        FeedWriter::Flv(w) => w.tag(&StreamEvent::Frame(f.clone())),
        FeedWriter::Matroska(w) => w.frame(f),
    };
    let Some(tag) = tag else {
        return;
    };
    let Some(stdin) = r.stdin.as_mut() else {
        return;
    };
    let head = r.head.take();
    let write = async {
        if let Some(h) = head {
            stdin.write_all(&h).await?;
        }
        stdin.write_all(&tag).await
    };
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        // ffmpeg exited: its exit is handled by the supervisor loop.
        Ok(Err(_)) => r.stdin = None,
        Err(_) => {
            warn!(stream = key, "ffmpeg stopped reading its input; killing it");
            r.stdin = None;
            let _ = r.child.start_kill();
        }
    }
}

/// Ends the current run, if any: kills ffmpeg, waits for it (no zombie),
/// lets the readers deliver what it wrote, and tells the renditions'
/// consumers the stream paused.
async fn stop(
    run: &mut Option<Run>,
    outputs: Option<&[Output]>,
    status: &JobStatus,
    key: &str,
    why: &str,
) {
    let Some(mut r) = run.take() else {
        return;
    };
    let pid = r.child.id();
    drop(r.stdin.take());
    let _ = r.child.start_kill();
    let _ = r.child.wait().await;
    if !why.is_empty() {
        info!(stream = key, pid, "ffmpeg stopped: {why}");
    }
    for task in r.tasks.iter_mut() {
        // The pipes hit EOF once ffmpeg is gone; do not wait on a stuck one.
        if timeout(Duration::from_secs(2), &mut *task).await.is_err() {
            task.abort();
        }
    }
    for o in outputs.into_iter().flatten() {
        o.publisher.send(StreamEvent::PublisherStopped);
    }
    status.update(|v| {
        v.pid = None;
        v.progress = None;
    });
}

/// Reads one rendition's FLV from its pipe into the hub.
async fn read_output(
    mut pipe: tokio::net::unix::pipe::Receiver,
    key: String,
    publisher: Arc<PublishGuard>,
    clock: Arc<Mutex<OutClock>>,
) {
    let mut parser = OutputParser::new(FEED_OFFSET_MS);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let events = match parser.push(&buf[..n]) {
            Ok(e) => e,
            Err(e) => {
                warn!(stream = key, "unreadable ffmpeg output: {e}");
                return;
            }
        };
        for event in events {
            if deliver(&mut lock(&clock), &event) {
                publisher.send(event);
            }
        }
    }
}

/// Fuzz body (`ffmpeg_output`): arbitrary bytes as a rendition's output, in
/// chunks sized by the input, through the parser and the delivery rule.
/// Delivered frames never go back in time on their track, and video resumes
/// at a keyframe after anything was skipped.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut parser = OutputParser::new(FEED_OFFSET_MS);
    let mut clock = OutClock::default();
    let (mut video, mut audio): (Option<i64>, Option<i64>) = (None, None);
    for piece in rest.chunks(chunk) {
        let Ok(events) = parser.push(piece) else {
            return;
        };
        for e in events {
            let skipping = clock.need_key;
            if !deliver(&mut clock, &e) {
                continue;
            }
            if let StreamEvent::Frame(f) = &e {
                let last = match f.kind() {
                    MediaKind::Video => {
                        assert!(!skipping || f.keyframe, "resumed on a non-keyframe");
                        &mut video
                    }
                    MediaKind::Audio => &mut audio,
                };
                assert!(last.is_none_or(|l| f.dts > l), "time went back");
                *last = Some(f.dts);
            }
        }
    }
}

/// Whether a rendition event goes to the hub: a repeated configuration
/// does not, nor a frame at or before what was already delivered.
fn deliver(c: &mut OutClock, event: &StreamEvent) -> bool {
    match event {
        StreamEvent::Config(cfg) => {
            let slot = match cfg.kind() {
                MediaKind::Video => &mut c.video_config,
                MediaKind::Audio => &mut c.audio_config,
            };
            if slot.as_ref().is_some_and(|s| **s == **cfg) {
                return false;
            }
            *slot = Some(cfg.clone());
            if cfg.kind() == MediaKind::Video {
                c.need_key = true;
            }
            true
        }
        StreamEvent::Frame(f) => match f.kind() {
            MediaKind::Video => {
                if c.video.is_some_and(|d| f.dts <= d) {
                    c.need_key = true;
                    return false;
                }
                if c.need_key && !f.keyframe {
                    return false;
                }
                c.need_key = false;
                c.video = Some(f.dts);
                true
            }
            MediaKind::Audio => {
                if c.audio.is_some_and(|d| f.dts <= d) {
                    return false;
                }
                c.audio = Some(f.dts);
                true
            }
        },
        _ => true,
    }
}

/// ffmpeg's stderr into our log, at most `per_minute` lines a minute.
async fn log_stderr(stderr: tokio::process::ChildStderr, key: String, per_minute: u32) {
    let mut lines = BufReader::new(stderr).lines();
    let mut window = Instant::now();
    let (mut logged, mut suppressed) = (0u32, 0u64);
    while let Ok(Some(line)) = lines.next_line().await {
        if window.elapsed() >= Duration::from_secs(60) {
            if suppressed > 0 {
                warn!(
                    stream = key,
                    suppressed, "ffmpeg: more stderr lines were not logged"
                );
            }
            window = Instant::now();
            logged = 0;
            suppressed = 0;
        }
        if logged < per_minute {
            logged += 1;
            warn!(stream = key, "ffmpeg: {}", line.trim_end());
        } else {
            suppressed += 1;
        }
    }
    if suppressed > 0 {
        warn!(
            stream = key,
            suppressed, "ffmpeg: more stderr lines were not logged"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;

    fn frame(kind: Codec, dts: i64, keyframe: bool) -> StreamEvent {
        StreamEvent::Frame(Frame {
            codec: kind,
            dts,
            cts: 0,
            keyframe,
            data: Bytes::from_static(b"x"),
        })
    }

    #[test]
    fn a_restart_never_delivers_time_twice() {
        let mut c = OutClock::default();
        let mut got = Vec::new();
        for e in [
            frame(Codec::H264, 0, true),
            frame(Codec::H264, 40, false),
            frame(Codec::Aac, 21, true),
            // ffmpeg restarted: it repeats from an earlier keyframe.
            frame(Codec::H264, 0, true),
            frame(Codec::H264, 40, false),
            frame(Codec::H264, 80, false),
            frame(Codec::Aac, 10, true),
            frame(Codec::H264, 120, true),
            frame(Codec::H264, 160, false),
            frame(Codec::Aac, 42, true),
        ] {
            if deliver(&mut c, &e) {
                if let StreamEvent::Frame(f) = e {
                    got.push((f.codec, f.dts));
                }
            }
        }
        assert_eq!(
            got,
            [
                (Codec::H264, 0),
                (Codec::H264, 40),
                (Codec::Aac, 21),
                (Codec::H264, 120),
                (Codec::H264, 160),
                (Codec::Aac, 42),
            ]
        );
    }
}
