//! The task behind each source: wait for a viewer (on demand), connect,
//! publish what arrives, and when the connection fails or the upstream
//! stream ends, back off and connect again, until deleted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, error, info, warn, Instrument};

use super::{Inner, Source, SourceState};
use crate::egress::target::{RtmpTarget, SrtTarget, Target};
use crate::egress::{ConnectError, FailKind};
use crate::media::flv::Ingest;
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::chunk::ChunkLimits;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientSession};
use crate::streams::{Granted, Origin, PublishGuard};
use crate::transport::libsrt;

/// A connection that stayed live this long resets the backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Deleted, or castgate stops.
    Stopped,
    /// On demand: nobody watched for `source.on_demand_idle_secs`.
    Unwatched,
    /// The upstream stream ended (its publisher left): reconnect, not a
    /// failure.
    Ended(String),
    /// Something broke: reconnect after a backoff.
    Failed(String),
    /// Retrying cannot help.
    Permanent(String),
}

pub(super) async fn run(source: Arc<Source>, reg: Arc<Inner>) {
    let span = tracing::info_span!(
        "source",
        source = source.id,
        stream = %source.key,
        url = %source.redacted
    );
    async move {
        use futures_util::FutureExt;
        let mut stop = source.stop.subscribe();
        let outcome = std::panic::AssertUnwindSafe(supervise(&source, &reg, &mut stop))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                error!("source task panicked (a bug)");
                End::Permanent("internal error (the source task panicked)".into())
            });
        if let End::Permanent(e) = outcome {
            source.set_state(SourceState::Failed);
            warn!("source failed, not retrying (delete it and create it again): {e}");
            stopped(&mut stop).await;
        }
        source.set_state(SourceState::Stopped);
        info!("source stopped");
    }
    .instrument(span)
    .await
}

/// Resolves when `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What the supervisor does after a connection ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Connect again after this delay (`backoff` state).
    Backoff(Duration),
    /// On demand and unwatched: `idle` until a viewer comes.
    Idle,
    Exit,
}

/// The decision after `end`, `attempt` being the failures in a row so far
/// (updated). A clean end of the upstream is retried after the initial
/// backoff (the publisher restarting is a reconnect, not a failure).
pub(super) fn next(end: &End, attempt: &mut u32, initial: Duration, max: Duration) -> Next {
    match end {
        End::Stopped | End::Permanent(_) => Next::Exit,
        End::Unwatched => {
            *attempt = 0;
            Next::Idle
        }
        End::Ended(_) => {
            *attempt = 0;
            Next::Backoff(crate::egress::backoff(0, initial, max))
        }
        End::Failed(_) => {
            let d = crate::egress::backoff(*attempt, initial, max);
            *attempt = attempt.saturating_add(1);
            Next::Backoff(d)
        }
    }
}

async fn supervise(source: &Source, reg: &Inner, stop: &mut watch::Receiver<bool>) -> End {
    let relay = reg.deps.relays.settings();
    let mut attempt: u32 = 0;
    let mut first = true;
    loop {
        if source.on_demand && !reg.wanted(source) {
            source.set_state(SourceState::Idle);
            info!("source idle: nobody watches");
            tokio::select! {
                _ = until_wanted(source, reg) => {}
                _ = stopped(stop) => return End::Stopped,
                _ = reg.deps.shutdown.cancelled() => return End::Stopped,
            }
        }
        if !first {
            source.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        source.set_state(SourceState::Connecting);
        let started = Instant::now();
        let end = tokio::select! {
            e = connect_and_pull(source, reg) => e,
            _ = stopped(stop) => End::Stopped,
            _ = reg.deps.shutdown.cancelled() => End::Stopped,
        };
        if started.elapsed() >= BACKOFF_RESET {
            attempt = 0;
        }
        match &end {
            // The upstream's publisher left: the normal end of a stream.
            End::Ended(e) => {
                let e = source.error(e);
                info!("source connection ended: {e}");
            }
            End::Failed(e) | End::Permanent(e) => {
                let e = source.error(e);
                warn!("source connection ended: {e}");
            }
            End::Unwatched => info!("source stopped pulling: nobody watched"),
            End::Stopped => {}
        }
        // A replica connects once: the edge looks the owner up again.
        if matches!(source.origin, super::Origin::Cluster { .. }) {
            return End::Stopped;
        }
        match next(&end, &mut attempt, relay.backoff_initial, relay.backoff_max) {
            Next::Exit => return end,
            Next::Idle => continue,
            Next::Backoff(delay) => {
                source.set_backoff(std::time::Instant::now() + delay);
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = stopped(stop) => return End::Stopped,
                    _ = reg.deps.shutdown.cancelled() => return End::Stopped,
                }
            }
        }
    }
}

/// Resolves once someone watches the source's stream.
async fn until_wanted(source: &Source, reg: &Inner) {
    while !reg.wanted(source) {
        sleep(super::DEMAND_POLL).await;
    }
}

/// Resolves once an on-demand source has been unwatched for the idle
/// time; never for an always-on source.
async fn unwatched(source: &Source, reg: &Inner) {
    if !source.on_demand {
        return std::future::pending().await;
    }
    let mut last = Instant::now();
    loop {
        if reg.wanted(source) {
            last = Instant::now();
        } else if last.elapsed() >= reg.settings.on_demand_idle {
            return;
        }
        sleep(super::DEMAND_POLL).await;
    }
}

/// The addresses the source may connect to (see
/// [`crate::egress::resolve_checked`]): any unless the operator wrote the
/// source (config).
async fn resolve(
    source: &Source,
    reg: &Inner,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, ConnectError> {
    let trusted = matches!(
        source.origin,
        super::Origin::Config(_) | super::Origin::Cluster { .. }
    );
    let own = super::own_stream(&source.target, &source.key);
    crate::egress::resolve_checked(
        reg.deps.relays.settings(),
        host,
        port,
        trusted,
        own,
        "source",
    )
    .await
}

fn failed(e: ConnectError) -> End {
    match e.kind {
        FailKind::Permanent => End::Permanent(e.message),
        FailKind::Transient | FailKind::Refused => End::Failed(e.message),
    }
}

async fn connect_and_pull(source: &Source, reg: &Inner) -> End {
    match &source.target {
        Target::Rtmp(t) => {
            let addrs = match resolve(source, reg, &t.host, t.port).await {
                Ok(a) => a,
                Err(e) => return failed(e),
            };
            pull_rtmp(source, reg, t, &addrs).await
        }
        Target::Srt(t) => {
            let addrs = match resolve(source, reg, &t.host, t.port).await {
                Ok(a) => a,
                Err(e) => return failed(e),
            };
            pull_srt(source, reg, t, &addrs).await
        }
    }
}

/// Takes the stream in the registry.
async fn publish(source: &Source, reg: &Inner) -> Result<PublishGuard, End> {
    let origin = match &source.origin {
        super::Origin::Cluster { owner } => Origin::Replica {
            owner: owner.clone(),
            url: source.redacted.clone(),
        },
        _ => Origin::Pulled {
            url: source.redacted.clone(),
            source_id: source.id,
        },
    };
    reg.deps
        .registry
        .publish(source.key.clone(), origin, &Granted::default())
        .await
        .map_err(|e| End::Failed(format!("the stream cannot be published: {e}")))
}

/// Largest message accepted from an RTMP server (a keyframe).
const MAX_RTMP_MESSAGE: usize = 16 * 1024 * 1024;

async fn pull_rtmp(
    source: &Source,
    reg: &Inner,
    t: &RtmpTarget,
    addrs: &[std::net::SocketAddr],
) -> End {
    let relay = reg.deps.relays.settings();
    let connect_timeout = relay.connect_timeout;
    let mut io = match timeout(
        connect_timeout,
        crate::egress::rtmp::dial(t, addrs, source.tls.clone()),
    )
    .await
    {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return failed(e),
        Err(_) => return End::Failed(format!("no connection within {connect_timeout:?}")),
    };
    let mut session = ClientSession::new(ClientConfig {
        rtmpe: t.rtmpe,
        app: t.app.clone(),
        stream: t.key.clone(),
        tc_url: format!("{}://{}/{}", t.scheme(), t.authority, t.app),
        mode: ClientMode::Play,
        chunk_limits: ChunkLimits {
            max_message_size: MAX_RTMP_MESSAGE,
            max_buffered: 2 * MAX_RTMP_MESSAGE,
            ..ChunkLimits::default()
        },
        ..ClientConfig::default()
    });
    session.start();
    let mut guard: Option<PublishGuard> = None;
    let mut ingest = Ingest::new();
    let mut media_wait = connect_timeout;
    let mut unwatched = std::pin::pin!(unwatched(source, reg));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let started = Instant::now();
    loop {
        if session.has_output() {
            let out = session.take_output();
            if let Err(e) = io.write_all(&out).await {
                return End::Failed(format!("write to the server: {e}"));
            }
        }
        buf.clear();
        let read = tokio::select! {
            r = timeout(media_wait, io.read_buf(&mut buf)) => r,
            _ = &mut unwatched => return End::Unwatched,
            _ = guard_kicked(&mut guard) => return End::Failed("another publisher took the stream".into()),
        };
        match read {
            Err(_) if guard.is_some() => {
                return End::Ended(format!(
                    "nothing received for {:.1} s",
                    media_wait.as_secs_f64()
                ))
            }
            Err(_) => {
                return End::Failed(format!("no media within {:.1} s", media_wait.as_secs_f64()))
            }
            Ok(Ok(0)) => {
                return match guard {
                    Some(_) => End::Ended("the server closed the connection".into()),
                    None => End::Failed("the server closed the connection".into()),
                }
            }
            Ok(Err(e)) => return End::Failed(format!("read from the server: {e}")),
            Ok(Ok(_)) => {}
        }
        if let Err(e) = session.handle_input(&buf) {
            return End::Failed(format!("RTMP error from the server: {e}"));
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Playing { .. } => info!("source playing"),
                // The upstream ended the play (castgate sends Play.Stop
                // when its stream ends): a reconnect, not a failure.
                ClientEvent::Failed { code, .. }
                    if guard.is_some() && code == "NetStream.Play.Stop" =>
                {
                    return End::Ended(format!("the upstream stream ended ({code})"));
                }
                ClientEvent::Failed { code, description } => {
                    return End::Failed(format!("the server refused: {code} {description}"))
                }
                ClientEvent::Status { code, .. }
                    if guard.is_some()
                        && (code == "NetStream.Play.UnpublishNotify"
                            || code == "NetStream.Play.Complete") =>
                {
                    return End::Ended(format!("the upstream stream ended ({code})"));
                }
                ClientEvent::Media {
                    kind,
                    timestamp,
                    payload,
                } => {
                    let g = match ensure_published(&mut guard, source, reg).await {
                        Ok(g) => g,
                        Err(end) => return end,
                    };
                    media_wait = reg.settings.media_timeout;
                    let len = payload.len() as u64;
                    ingest.set_arrival(started.elapsed().as_millis() as i64);
                    let mut frames = 0;
                    let r = ingest.media(kind, timestamp, payload, |ev| {
                        frames += u64::from(is_frame(&ev));
                        g.send(ev);
                    });
                    if let Err(e) = r {
                        debug!("bad {kind:?} tag from the source: {e}");
                    }
                    source.bytes.fetch_add(len, Ordering::Relaxed);
                    source.frames.fetch_add(frames, Ordering::Relaxed);
                }
                ClientEvent::Data { values, .. } => {
                    if let Some(meta) = metadata(values) {
                        let g = match ensure_published(&mut guard, source, reg).await {
                            Ok(g) => g,
                            Err(end) => return end,
                        };
                        let amf0 = crate::rtmp::amf0::encode_all(std::slice::from_ref(&meta));
                        ingest.metadata(amf0.into(), |ev| {
                            g.send(ev);
                        });
                    }
                }
                other => debug!("server: {other:?}"),
            }
        }
    }
}

async fn guard_kicked(guard: &mut Option<PublishGuard>) {
    match guard {
        Some(g) => g.kicked().await,
        None => std::future::pending().await,
    }
}

/// The publish, taken at the first media or metadata (a server that plays
/// nothing yet publishes nothing); the source is `live` from then on.
async fn ensure_published<'a>(
    guard: &'a mut Option<PublishGuard>,
    source: &Source,
    reg: &Inner,
) -> Result<&'a PublishGuard, End> {
    if guard.is_none() {
        *guard = Some(publish(source, reg).await?);
        source.set_state(SourceState::Live);
        info!("source live");
    }
    guard
        .as_ref()
        .ok_or_else(|| End::Failed("internal: no publish".into()))
}

fn is_frame(ev: &crate::hub::StreamEvent) -> bool {
    matches!(
        ev,
        crate::hub::StreamEvent::Frame(_) | crate::hub::StreamEvent::TrackFrame(..)
    )
}

/// The `onMetaData` object of a data message (`onMetaData {…}` or
/// `@setDataFrame onMetaData {…}`).
fn metadata(values: Vec<Amf0Value>) -> Option<Amf0Value> {
    let mut it = values.into_iter();
    let mut name = it.next()?;
    if name.as_str() == Some("@setDataFrame") {
        name = it.next()?;
    }
    (name.as_str() == Some("onMetaData"))
        .then(|| it.next())
        .flatten()
}

async fn pull_srt(
    source: &Source,
    reg: &Inner,
    t: &SrtTarget,
    addrs: &[std::net::SocketAddr],
) -> End {
    let connect_timeout = reg.deps.relays.settings().connect_timeout;
    let Some(addr) = addrs.first().copied() else {
        return End::Failed("no address for the host".into());
    };
    let opts = libsrt::Options {
        latency: t.latency,
        stream_id: t.stream_id.clone(),
        passphrase: t.passphrase.clone(),
        key_len: t.key_len,
        connect_timeout,
    };
    // Blocks for at most the connect timeout; a source stopped meanwhile
    // drops the result, which closes the socket.
    let sock = tokio::task::spawn_blocking(move || {
        let s = libsrt::Socket::new(&opts)?;
        s.connect(addr)?;
        Ok::<_, std::io::Error>(s)
    })
    .await;
    let sock = match sock {
        Ok(Ok(s)) => Arc::new(s),
        Ok(Err(e)) => return End::Failed(format!("SRT call to {}:{} failed: {e}", t.host, t.port)),
        Err(e) => return End::Failed(format!("SRT connect task: {e}")),
    };
    let mut guard = match publish(source, reg).await {
        Ok(g) => g,
        Err(end) => {
            sock.close();
            return end;
        }
    };
    source.set_state(SourceState::Live);
    info!("source live");
    let limits = crate::srt::ReceiveLimits {
        first_message: connect_timeout,
        idle: reg.settings.media_timeout,
    };
    let unwatched = std::pin::pin!(unwatched(source, reg));
    let mut was_unwatched = false;
    let stop = async {
        unwatched.await;
        was_unwatched = true;
    };
    let received = crate::srt::receive_ts(
        sock,
        &mut guard,
        limits,
        &reg.deps.shutdown,
        stop,
        |_| {},
        |bytes, frames| {
            source.bytes.fetch_add(bytes, Ordering::Relaxed);
            source.frames.fetch_add(frames, Ordering::Relaxed);
        },
    )
    .await;
    drop(guard);
    match received {
        Err(e) => End::Failed(format!("SRT receive: {e}")),
        Ok(_) if was_unwatched => End::Unwatched,
        Ok(r) => match r.end {
            crate::srt::PublishEnd::Left(why) => End::Ended(format!("the SRT sender left ({why})")),
            crate::srt::PublishEnd::Idle(_) => End::Ended(r.end.to_string()),
            crate::srt::PublishEnd::NoMedia(_) | crate::srt::PublishEnd::Kicked => {
                End::Failed(r.end.to_string())
            }
            crate::srt::PublishEnd::Stopping => End::Stopped,
        },
    }
}
