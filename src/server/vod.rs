//! RTMP video on demand: a `play` in the on-demand application (`vod.app`,
//! default `vod`) plays a file under `[vod] dir` as Flash Media Server and
//! nginx-rtmp's `play` did.
//!
//! - **Start.** The configurations in force at the keyframe at or before
//!   `start` ([`Title::seek`], [`Title::configs_at`]), an `onMetaData`
//!   with the duration (and picture size and codecs when known), then the
//!   frames from that keyframe on with the file's own timestamps (a start
//!   at 30 s sends the keyframe at or before 30000 ms first).
//! - **Pacing.** A frame of decode time `t` is due at `anchor + (t -
//!   anchor_ms) - lead`: real time, ahead by the client's buffer
//!   (SetBufferLength, [`DEFAULT_LEAD`] until it says, at most
//!   [`MAX_LEAD`]). At most [`BATCH_BYTES`] go out per wake-up, so a long
//!   lead does not put a file's worth in one write.
//! - **Seek** restarts at the keyframe at or before the target (configs
//!   again, then frames), **pause** stops sending until unpause, which
//!   resumes where sending stopped (the anchor moves by the pause).
//! - **End.** After the last frame (or past `start + len`):
//!   `onPlayStatus` NetStream.Play.Complete and NetStream.Play.Stop; the
//!   stream stays open for a seek back.
//! - **Codecs.** Through the live player's [`Playout`]: a player gets the
//!   codecs it announced, or `Play.Failed` naming them.
//!
//! Time is passed in (`now`): the tests drive it by hand.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::playout::{Playout, Sent};
use crate::media::{Codec, Metadata, StreamEvent};
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::session::ServerSession;
use crate::vod::Title;

/// The lead until the client states its buffer.
pub const DEFAULT_LEAD: Duration = Duration::from_secs(3);
/// The longest lead taken (rtmpdump asks for ten hours).
pub const MAX_LEAD: Duration = Duration::from_secs(60);
/// Bytes of frames sent per wake-up at most.
pub const BATCH_BYTES: usize = 256 * 1024;

/// The lead for a client's SetBufferLength.
pub fn lead_of(millis: u32) -> Duration {
    Duration::from_millis(u64::from(millis)).min(MAX_LEAD)
}

/// The file a `play` in `app` names, if `app` is the on-demand
/// application `vod_app` (or `vod_app/DIR`, as FFmpeg splits
/// `rtmp://HOST/vod/DIR/FILE`): the path under the directory, without the
/// `mp4:`/`flv:` prefix players put before a file name (FFmpeg and
/// librtmp send `mp4:NAME.mp4` for `NAME.mp4`, and `NAME` for
/// `NAME.flv`, which [`crate::vod::Library`] finds).
pub fn path_of(vod_app: &str, app: &str, name: &str) -> Option<String> {
    let dir = if app == vod_app {
        None
    } else {
        Some(app.strip_prefix(vod_app)?.strip_prefix('/')?)
    };
    let mut name = name;
    for prefix in ["mp4:", "flv:", "f4v:", "mp3:", "raw:"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
            break;
        }
    }
    Some(match dir {
        Some(d) => format!("{d}/{name}"),
        None => name.to_string(),
    })
}

/// What a wake-up came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sleep until then (`None`: nothing to do until the client asks).
    Wait(Option<Instant>),
    /// The play failed (the player takes none of the title's codecs):
    /// Play.Failed was sent with this description.
    Failed(String),
}

/// One on-demand play on a NetStream.
pub struct VodPlay {
    pub stream_id: u32,
    /// `APP/PATH`, for logs.
    pub key: String,
    title: Arc<Title>,
    pub playout: Playout,
    /// The next event of the title to send.
    next: usize,
    /// Frames of a later decode time are not sent (`start + len`).
    end_ms: Option<i64>,
    /// The frame of decode time `anchor_ms` is due at `anchor` (less the lead).
    anchor: Instant,
    anchor_ms: i64,
    lead: Duration,
    /// Since when sending is paused.
    paused: Option<Instant>,
    /// Play.Complete went out (until a seek).
    finished: bool,
    /// The decode time of the last frame sent (where a pause stands).
    pub position_ms: i64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// When to wake up next (`None`: when the client asks).
    pub wake: Option<Instant>,
}

impl VodPlay {
    /// A play of `title` from `start_ms` for `duration_ms` (to the end if
    /// `None`), through `playout`. Nothing is sent until [`Self::begin`].
    pub fn new(
        key: String,
        title: Arc<Title>,
        playout: Playout,
        start_ms: i64,
        duration_ms: Option<i64>,
        lead: Duration,
        now: Instant,
    ) -> VodPlay {
        let point = title.seek(start_ms);
        let (next, at) = point.map(|p| (p.index, p.dts)).unwrap_or((0, 0));
        VodPlay {
            stream_id: playout.stream_id,
            key,
            title,
            playout,
            next,
            end_ms: duration_ms.map(|d| start_ms.saturating_add(d)),
            anchor: now,
            anchor_ms: at,
            lead,
            paused: None,
            finished: false,
            position_ms: at,
            bytes: 0,
            wake: Some(now),
        }
    }

    pub fn title(&self) -> &Arc<Title> {
        &self.title
    }

    /// Where sending starts (the keyframe's decode time).
    pub fn start_ms(&self) -> i64 {
        self.anchor_ms
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Starts the play: the player's decision (Play.Start, or Play.Failed
    /// naming the codecs it lacks), the metadata and the configurations in
    /// force at the start; then frames as [`Self::pump`] sends them.
    pub fn begin(&mut self, session: &mut ServerSession, now: Instant) -> Step {
        let mut events = vec![
            StreamEvent::PublisherStarted,
            StreamEvent::Metadata(metadata(&self.title)),
        ];
        events.extend(self.configs());
        for e in &events {
            if let Sent::Failed(why) = self.playout.send(session, e) {
                return self.fail(why);
            }
        }
        self.pump(session, now)
    }

    fn configs(&self) -> Vec<StreamEvent> {
        self.title
            .configs_at(self.next)
            .into_iter()
            .flatten()
            .map(StreamEvent::Config)
            .collect()
    }

    fn fail(&mut self, why: String) -> Step {
        self.wake = None;
        self.finished = true;
        Step::Failed(why)
    }

    /// The decode time at which a frame is due at `now`'s pace.
    fn due(&self, dts: i64) -> Instant {
        let ahead = dts - self.anchor_ms;
        let at = if ahead >= 0 {
            self.anchor + Duration::from_millis(ahead as u64)
        } else {
            self.anchor
        };
        at.checked_sub(self.lead).unwrap_or(self.anchor.min(at))
    }

    /// Sends what is due at `now` (at most [`BATCH_BYTES`]), and
    /// Play.Complete at the end.
    pub fn pump(&mut self, session: &mut ServerSession, now: Instant) -> Step {
        if self.finished || self.paused.is_some() {
            self.wake = None;
            return Step::Wait(None);
        }
        let title = Arc::clone(&self.title);
        let mut sent = 0usize;
        while let Some(e) = title.events.get(self.next) {
            if let StreamEvent::Frame(f) = e {
                if self.end_ms.is_some_and(|end| f.dts > end) {
                    break;
                }
                let due = self.due(f.dts);
                if due > now {
                    self.wake = Some(due);
                    return Step::Wait(self.wake);
                }
                if sent >= BATCH_BYTES {
                    self.wake = Some(now);
                    return Step::Wait(self.wake);
                }
                sent += f.data.len();
                self.bytes += f.data.len() as u64;
                self.position_ms = self.position_ms.max(f.dts);
            }
            self.next += 1;
            if let Sent::Failed(why) = self.playout.send(session, e) {
                return self.fail(why);
            }
        }
        // The end of the title or of the range asked for.
        self.finished = true;
        self.wake = None;
        let end = match self.end_ms {
            Some(end) => end.min(self.title.duration_ms),
            None => self.title.duration_ms,
        };
        session.complete_play(self.stream_id, end.max(self.position_ms), self.bytes);
        Step::Wait(None)
    }

    /// Restarts at the keyframe at or before `ms`: Seek.Notify, then the
    /// configurations in force there and the frames from there on.
    pub fn seek(&mut self, session: &mut ServerSession, ms: i64, now: Instant) -> Step {
        let point = self.title.seek(ms);
        let (next, at) = point.map(|p| (p.index, p.dts)).unwrap_or((0, 0));
        self.next = next;
        self.anchor = now;
        self.anchor_ms = at;
        self.position_ms = at;
        self.finished = false;
        if self.paused.is_some() {
            // Paused still: the pause moves to the new position.
            self.paused = Some(now);
        }
        session.seek_done(self.stream_id, at);
        for e in self.configs() {
            if let Sent::Failed(why) = self.playout.send(session, &e) {
                return self.fail(why);
            }
        }
        self.pump(session, now)
    }

    /// Pauses or resumes sending (Pause.Notify / Unpause.Notify).
    pub fn pause(&mut self, session: &mut ServerSession, pause: bool, now: Instant) -> Step {
        match (pause, self.paused) {
            (true, None) => self.paused = Some(now),
            (false, Some(since)) => {
                // Resume at the pace where it stopped.
                self.anchor += now.saturating_duration_since(since);
                self.paused = None;
            }
            _ => {}
        }
        session.pause_done(self.stream_id, pause, self.position_ms);
        self.pump(session, now)
    }

    /// The client's new buffer length.
    pub fn set_lead(&mut self, lead: Duration, now: Instant) {
        self.lead = lead.min(MAX_LEAD);
        if !self.finished && self.paused.is_none() {
            self.wake = Some(now);
        }
    }
}

/// `onMetaData` for a title: its duration in seconds, and the picture size
/// and codec ids (FLV's, for the codecs legacy FLV has) when known.
pub fn metadata(title: &Title) -> Metadata {
    let mut fields = vec![(
        "duration",
        Amf0Value::Number(title.duration_ms as f64 / 1000.0),
    )];
    if let Some(v) = &title.video {
        let (w, h) = v.picture_size();
        if w > 0 && h > 0 {
            fields.push(("width", Amf0Value::Number(f64::from(w))));
            fields.push(("height", Amf0Value::Number(f64::from(h))));
        }
        if v.codec() == Codec::H264 {
            fields.push(("videocodecid", Amf0Value::Number(7.0)));
        }
    }
    if let Some(a) = &title.audio {
        let (rate, channels) = a.audio_format();
        if rate > 0 {
            fields.push(("audiosamplerate", Amf0Value::Number(f64::from(rate))));
            fields.push(("stereo", Amf0Value::Boolean(channels > 1)));
        }
        match a.codec() {
            Codec::Aac => fields.push(("audiocodecid", Amf0Value::Number(10.0))),
            Codec::Mp3 => fields.push(("audiocodecid", Amf0Value::Number(2.0))),
            _ => {}
        }
    }
    fields.push(("filesize", Amf0Value::Number(title.bytes as f64)));
    let value = Amf0Value::object(fields);
    Metadata::from_amf0(Bytes::from(amf0::encode_all(std::slice::from_ref(&value))))
}

#[cfg(test)]
mod tests;
