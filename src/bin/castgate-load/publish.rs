//! Publishers: each replays the FLV file over its own RTMP connection at
//! real-time speed, tag by tag as ffmpeg `-re` does (one write per due
//! instant), or every tag due within a tick in one write (`--tick-ms`: an
//! encoder behind an output buffer, and a load generator that fits beside
//! thousands of streams), looping with rising timestamps for as long as
//! asked. Each logs when it wrote each video frame, for the LL players'
//! delays.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use castgate::media::flv_file::{FileTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use castgate::media::MediaKind;
use castgate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

use crate::ll::SendLog;

/// A publisher's byte stream: TCP, or RTMP's messages over an RTMFP
/// session (castgate's client, `transport::rtmfp::connect`).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how a publisher reaches the server.
#[derive(Clone, Debug)]
pub struct Dest {
    /// `host:port`.
    pub addr: String,
    pub transport: Transport,
}

/// How a publisher reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    /// Every frame delivered (nothing abandoned), as over TCP.
    Rtmfp,
}

async fn dial(addr: &str, transport: Transport, tc_url: &str) -> Result<Box<dyn Io>, String> {
    match transport {
        Transport::Tcp => {
            let stream = timeout(Duration::from_secs(10), TcpStream::connect(addr))
                .await
                .map_err(|_| format!("connect to {addr} timed out"))?
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            Ok(Box::new(stream))
        }
        Transport::Rtmfp => {
            let server = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("{addr}: no address"))?;
            let io =
                castgate::transport::rtmfp::connect(server, tc_url, None, Duration::from_secs(10))
                    .await
                    .map_err(|e| format!("rtmfp session with {addr}: {e}"))?;
            Ok(Box::new(io))
        }
    }
}

/// The file, prepared once and shared by every publisher.
pub struct Replay {
    /// The script tag (onMetaData), sent once after publish starts.
    pub script: Option<Bytes>,
    /// Sequence headers, sent once before the first media.
    pub headers: Vec<FileTag>,
    /// Media tags in file order, timestamps relative to the first.
    pub media: Vec<FileTag>,
    /// Timestamp step between loops: past the last tag by one video frame.
    pub loop_ms: u32,
}

impl Replay {
    pub fn new(tags: Vec<FileTag>) -> Result<Replay, String> {
        // Sequence headers: legacy AVC and AAC, and Enhanced RTMP
        // SequenceStart packets (IsExHeader / sound format 9, type 0).
        let is_header = |t: &FileTag| match (t.tag_type, t.body.first()) {
            (TAG_VIDEO, Some(b)) if b & 0x80 != 0 => b & 0x0F == 0,
            (TAG_AUDIO, Some(b)) if b >> 4 == 9 => b & 0x0F == 0,
            (TAG_VIDEO, _) => t.body.len() >= 2 && t.body[0] & 0x0F == 7 && t.body[1] == 0,
            (TAG_AUDIO, _) => t.body.len() >= 2 && t.body[0] >> 4 == 10 && t.body[1] == 0,
            _ => false,
        };
        let script = tags
            .iter()
            .find(|t| t.tag_type == TAG_SCRIPT)
            .map(|t| t.body.clone());
        let headers: Vec<FileTag> = tags.iter().filter(|t| is_header(t)).cloned().collect();
        let mut media: Vec<FileTag> = tags
            .into_iter()
            .filter(|t| matches!(t.tag_type, TAG_AUDIO | TAG_VIDEO) && !is_header(t))
            .collect();
        let first = media
            .first()
            .ok_or("the FLV file has no audio or video tags")?
            .timestamp;
        for t in &mut media {
            t.timestamp = t.timestamp.saturating_sub(first);
        }
        let last = media.iter().map(|t| t.timestamp).max().unwrap_or(0);
        Ok(Replay {
            script,
            headers,
            media,
            loop_ms: last + 34,
        })
    }
}

/// Most bytes a publisher queues before writing them.
const MAX_QUEUED: usize = 256 * 1024;

/// What one publisher saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PublisherReport {
    pub name: String,
    pub connected: bool,
    /// Connect to NetStream.Publish.Start.
    pub publish_ms: Option<f64>,
    pub error: Option<String>,
    pub tags_sent: u64,
    pub bytes_sent: u64,
    /// Largest delay between the time a tag was to be written (its own, or
    /// its tick's end) and its write: the load generator (or a server not
    /// reading) falling behind real time.
    pub max_late_ms: f64,
    /// Seconds from the run's start to Publish.Start.
    #[serde(skip)]
    pub started_at: Option<Instant>,
}

/// When a publisher runs and how it writes.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub start: Instant,
    pub end: Instant,
    /// Tags due within a tick go in one write at its end (zero: each tag
    /// at its own time).
    pub tick: Duration,
}

/// Publishes `config.stream` from `schedule.start` until `schedule.end`.
pub async fn run(
    config: ClientConfig,
    dest: Dest,
    replay: Arc<Replay>,
    schedule: Schedule,
    log: Arc<SendLog>,
    on_started: impl FnOnce(Instant),
) -> PublisherReport {
    let mut report = PublisherReport {
        name: config.stream.clone(),
        ..Default::default()
    };
    sleep_until(schedule.start).await;
    let mut out = Outbox {
        log,
        video: Vec::new(),
    };
    let result = publish(
        config,
        &dest,
        &replay,
        schedule,
        &mut report,
        &mut out,
        on_started,
    )
    .await;
    if let Err(e) = result {
        report.error = Some(e);
    }
    report
}

async fn publish(
    config: ClientConfig,
    dest: &Dest,
    replay: &Replay,
    Schedule { end, tick, .. }: Schedule,
    report: &mut PublisherReport,
    out: &mut Outbox,
    on_started: impl FnOnce(Instant),
) -> Result<(), String> {
    let t0 = Instant::now();
    let mut stream = dial(&dest.addr, dest.transport, &config.tc_url).await?;
    report.connected = true;
    let mut session = ClientSession::new(config);
    session.start();
    let mut rbuf = BytesMut::with_capacity(8 << 10);

    // Handshake, connect, createStream, publish.
    let started = loop {
        flush(&mut stream, &mut session, report, out).await?;
        if let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Publishing { .. } => break Instant::now(),
                ClientEvent::Failed { code, description } => {
                    return Err(format!("publish refused: {code} {description}"))
                }
                _ => continue,
            }
        }
        rbuf.clear();
        let n = timeout(Duration::from_secs(10), stream.read_buf(&mut rbuf))
            .await
            .map_err(|_| "no answer to publish within 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed the connection before Publish.Start".into());
        }
        session.handle_input(&rbuf).map_err(|e| e.to_string())?;
    };
    report.publish_ms = Some(started.duration_since(t0).as_secs_f64() * 1000.0);
    report.started_at = Some(started);
    on_started(started);

    if let Some(script) = &replay.script {
        session.send_data_raw(0, script);
    }
    for t in &replay.headers {
        session.send_media(kind(t.tag_type), 0, &[&t.body]);
    }
    let zero = Instant::now();
    let mut index = 0usize;
    let mut offset: u64 = 0;
    loop {
        let tag = &replay.media[index];
        let ts = offset + u64::from(tag.timestamp);
        let due = zero + Duration::from_millis(ts);
        if due >= end {
            break;
        }
        if due > Instant::now() {
            flush(&mut stream, &mut session, report, out).await?;
            // With a tick, the tag goes at the end of the tick it falls in,
            // with every other tag due by then.
            let wake = zero + round_up(due - zero, tick);
            // Wait for that time, answering the server meanwhile.
            loop {
                rbuf.clear();
                tokio::select! {
                    _ = sleep_until(wake) => break,
                    r = stream.read_buf(&mut rbuf) => {
                        match r {
                            Ok(0) => return Err("server closed the connection".into()),
                            Ok(_) => session.handle_input(&rbuf).map_err(|e| e.to_string())?,
                            Err(e) => return Err(e.to_string()),
                        }
                        if let Some(ClientEvent::Failed { code, description }) = session.poll_event() {
                            return Err(format!("server ended the publish: {code} {description}"));
                        }
                        flush(&mut stream, &mut session, report, out).await?;
                    }
                }
            }
            let late = Instant::now().saturating_duration_since(wake).as_secs_f64() * 1000.0;
            report.max_late_ms = report.max_late_ms.max(late);
        }
        // Behind its schedule, a publisher writes as it goes rather than
        // queueing every overdue tag (seconds of media for each of
        // thousands of publishers).
        if session.output_len() >= MAX_QUEUED {
            flush(&mut stream, &mut session, report, out).await?;
        }
        session.send_media(kind(tag.tag_type), (ts & 0xFFFF_FFFF) as u32, &[&tag.body]);
        if tag.tag_type == TAG_VIDEO {
            out.video.push(ts);
        }
        report.tags_sent += 1;
        index += 1;
        if index == replay.media.len() {
            index = 0;
            offset += u64::from(replay.loop_ms);
        }
    }
    // Every frame is written: a part ending past the last one is the stream's final part,
    // flushed when the publish stops.
    flush(&mut stream, &mut session, report, out).await?;
    out.log.finish();
    session.stop();
    flush(&mut stream, &mut session, report, out).await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// `d` rounded up to a whole number of ticks (`d` itself with no tick).
fn round_up(d: Duration, tick: Duration) -> Duration {
    if tick.is_zero() {
        return d;
    }
    let ticks = d.as_nanos().div_ceil(tick.as_nanos());
    tick * u32::try_from(ticks).unwrap_or(u32::MAX)
}

fn kind(tag_type: u8) -> MediaKind {
    if tag_type == TAG_AUDIO {
        MediaKind::Audio
    } else {
        MediaKind::Video
    }
}

/// The stream's send log, and the video timestamps queued in the session
/// but not yet written.
struct Outbox {
    log: Arc<SendLog>,
    video: Vec<u64>,
}

/// Writes what the session has queued; the video frames in it count as
/// sent once the write returns (the kernel has every byte of them).
async fn flush(
    stream: &mut Box<dyn Io>,
    session: &mut ClientSession,
    report: &mut PublisherReport,
    out: &mut Outbox,
) -> Result<(), String> {
    if session.has_output() {
        let bytes = session.take_output();
        report.bytes_sent += bytes.len() as u64;
        stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
        out.log.record(&mut out.video, Instant::now());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_moves_a_tag_to_the_end_of_its_tick() {
        let ms = Duration::from_millis;
        let tick = ms(100);
        assert_eq!(round_up(ms(0), tick), ms(0));
        assert_eq!(round_up(ms(1), tick), ms(100));
        assert_eq!(round_up(ms(100), tick), ms(100));
        assert_eq!(round_up(ms(133), tick), ms(200));
        // No tick: each tag at its own time.
        assert_eq!(round_up(ms(133), Duration::ZERO), ms(133));
    }
}
