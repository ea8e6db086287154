//! The task behind each relay: wait for the stream, connect, send, and on
//! failure back off and try again, until deleted (or, for a static relay,
//! until its stream ends).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{error, info, warn, Instrument};

use super::queue::RelayQueue;
use super::rtmp::{self, RtmpLink};
use super::srt::{self, SrtLink};
use super::target::{SrtMode, Target};
use super::{ConnectError, FailKind, Inner, Relay, RelaySettings, RelayState, Source};
use crate::hub::{StreamEvent, TapHandle};
use crate::media::flv::CodecSet;

/// A connection that lasted this long resets the backoff to its start.
/// How long an RTMP relay waits for the stream's first configuration to
/// announce its codecs (a publisher sends it within milliseconds).
const ANNOUNCE_WAIT: Duration = Duration::from_millis(500);
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// Why a relay's task ended.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// Deleted.
    Stopped,
    /// A static relay whose stream ended.
    StreamEnded,
}

/// What ended a round of connection attempts.
enum GiveUp {
    Exit(Exit),
    Failed(String),
}

/// How a live connection ended.
#[derive(Debug)]
enum LiveEnd {
    Stopped,
    /// The publisher left and did not return within the grace period.
    StreamEnded,
    Failed(String),
}

pub(super) async fn run(relay: Arc<Relay>, reg: Arc<Inner>, tap: TapHandle) {
    let span = tracing::info_span!(
        "relay",
        relay = relay.id,
        stream = %relay.stream,
        target = %relay.redacted
    );
    async move {
        let exit = supervise(&relay, &reg.settings).await;
        relay.set_state(RelayState::Stopped);
        match exit {
            Exit::Stopped => {
                drop(tap);
                info!("relay stopped");
            }
            Exit::StreamEnded => {
                reg.remove(&relay);
                drop(tap);
                info!("relay ended with its stream");
                // A publisher that came back while this instance was
                // closing found it still there and started none: start
                // its successor now.
                if reg.hub.is_live(&relay.stream) {
                    super::Relays { inner: reg.clone() }.on_publish(&relay.stream);
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// The delay before attempt `n` (0-based): `initial * 2^n` up to `max`,
/// times a random factor in [0.75, 1.25) (so that relays failing together
/// do not retry together), never past `max`.
pub fn backoff(n: u32, initial: Duration, max: Duration) -> Duration {
    let base = initial.saturating_mul(1u32 << n.min(20)).min(max);
    base.mul_f64(0.75 + fastrand::f64() * 0.5).min(max)
}

/// The next instant of the relays' shared flush clock: every relay sends
/// on the same ticks, so one timer wake-up serves them all (unaligned, ten
/// relays cost ten wake-ups and context switches per interval).
pub(super) fn next_tick(every: Duration, now: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let every = every.as_nanos().max(1);
    let n = now.saturating_duration_since(epoch).as_nanos() / every + 1;
    epoch + Duration::from_nanos((n * every).min(u128::from(u64::MAX)) as u64)
}

/// Resolves when `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves once the publisher has been gone for the grace period.
async fn stream_gone(queue: &RelayQueue, grace: Duration) {
    let mut live = queue.live();
    loop {
        if *live.borrow_and_update() {
            if live.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        let since = queue.gone_since().unwrap_or_else(std::time::Instant::now);
        let deadline = Instant::from_std(since) + grace;
        tokio::select! {
            _ = sleep_until(deadline) => {
                if !queue.is_live() {
                    return;
                }
            }
            r = live.changed() => {
                if r.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

fn ended(queue: &RelayQueue, grace: Duration) -> bool {
    !queue.is_live() && queue.gone_since().is_none_or(|t| t.elapsed() >= grace)
}

enum Link {
    Rtmp(Box<RtmpLink>),
    Srt(Box<SrtLink>),
}

/// The addresses a relay may connect to (see [`super::resolve_checked`]):
/// any unless the operator wrote the target (a config relay).
async fn resolve(
    relay: &Relay,
    settings: &RelaySettings,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, ConnectError> {
    let trusted = matches!(relay.source, Source::Config(_));
    let own_stream = match &relay.target {
        Target::Rtmp(t) => super::names_stream(t, &relay.stream),
        Target::Srt(_) => false,
    };
    super::resolve_checked(settings, host, port, trusted, own_stream, "relay").await
}

async fn connect(relay: &Relay, settings: &RelaySettings) -> Result<Link, ConnectError> {
    match &relay.target {
        Target::Rtmp(t) => timeout(settings.connect_timeout, async {
            let addrs = resolve(relay, settings, &t.host, t.port).await?;
            // Announced in connect: the stream's codecs, once the publisher
            // has configured a track (at once, past its first moments);
            // every codec castgate carries if none comes soon.
            let wait = settings.connect_timeout.min(ANNOUNCE_WAIT);
            let mut codecs = relay.queue.stream_codecs(wait).await;
            if codecs.is_empty() {
                codecs = CodecSet::ALL;
            }
            rtmp::connect(t, &addrs, relay.tls.clone(), codecs, relay.legacy_only).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "connect and publish not done within {:?}",
                settings.connect_timeout
            )
            .into())
        })
        .map(|l| Link::Rtmp(Box::new(l))),
        // A listener waits for its receiver as long as it takes.
        Target::Srt(t) if t.mode == SrtMode::Listener => {
            srt::connect(t, &[], settings.connect_timeout)
                .await
                .map(|l| Link::Srt(Box::new(l)))
        }
        Target::Srt(t) => timeout(settings.connect_timeout + Duration::from_secs(1), async {
            let addrs = resolve(relay, settings, &t.host, t.port).await?;
            srt::connect(t, &addrs, settings.connect_timeout).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "SRT connection not made within {:?}",
                settings.connect_timeout
            )
            .into())
        })
        .map(|l| Link::Srt(Box::new(l))),
    }
}

async fn supervise(relay: &Relay, settings: &RelaySettings) -> Exit {
    use futures_util::FutureExt;
    let mut stop = relay.stop.subscribe();
    // A bug in a relay (or in the SRT or TLS code under it) must end this
    // relay only, visibly.
    let outcome = std::panic::AssertUnwindSafe(attempts(relay, settings, &mut stop))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            error!("relay task panicked (a bug)");
            relay.queue.disconnected();
            GiveUp::Failed("internal error (the relay task panicked)".into())
        });
    match outcome {
        GiveUp::Exit(e) => e,
        GiveUp::Failed(e) => {
            relay.set_state(RelayState::Failed);
            warn!("relay failed, not retrying (delete it and create it again): {e}");
            // A static instance goes with its stream; an API relay stays
            // visible as failed until deleted.
            let ephemeral = matches!(relay.source, Source::Config(_));
            tokio::select! {
                _ = stopped(&mut stop) => Exit::Stopped,
                _ = stream_gone(&relay.queue, settings.grace), if ephemeral => Exit::StreamEnded,
            }
        }
    }
}

async fn attempts(
    relay: &Relay,
    settings: &RelaySettings,
    stop: &mut watch::Receiver<bool>,
) -> GiveUp {
    let queue = &relay.queue;
    let ephemeral = matches!(relay.source, Source::Config(_));
    let mut attempt: u32 = 0;
    let mut refusals: u32 = 0;
    loop {
        if !queue.is_live() {
            relay.set_state(RelayState::Waiting);
            info!("relay waiting for the stream");
            let mut live = queue.live();
            tokio::select! {
                _ = live.wait_for(|l| *l) => {}
                _ = stopped(stop) => return GiveUp::Exit(Exit::Stopped),
            }
        }
        loop {
            relay.set_state(RelayState::Connecting);
            let result = tokio::select! {
                r = connect(relay, settings) => Some(r),
                _ = stopped(stop) => return GiveUp::Exit(Exit::Stopped),
                _ = stream_gone(queue, settings.grace) => None,
            };
            let failure = match result {
                None => break,
                Some(Ok(link)) => {
                    queue.connected();
                    relay.set_state(RelayState::Live);
                    info!("relay live");
                    let started = Instant::now();
                    let end = live(relay, link, settings, stop).await;
                    refusals = 0;
                    queue.disconnected();
                    if started.elapsed() >= BACKOFF_RESET {
                        attempt = 0;
                    }
                    match end {
                        LiveEnd::Stopped => return GiveUp::Exit(Exit::Stopped),
                        LiveEnd::StreamEnded => {
                            info!("the stream ended: relay connection closed");
                            break;
                        }
                        LiveEnd::Failed(e) => e,
                    }
                }
                Some(Err(ConnectError { message, kind })) => match kind {
                    FailKind::Transient => message,
                    FailKind::Refused => {
                        refusals += 1;
                        if refusals >= settings.max_refusals {
                            return GiveUp::Failed(
                                relay.error(&format!("{message} ({refusals} times in a row)")),
                            );
                        }
                        message
                    }
                    FailKind::Permanent => return GiveUp::Failed(relay.error(&message)),
                },
            };
            let e = relay.error(&failure);
            if ended(queue, settings.grace) {
                warn!("relay connection failed: {e}");
                break;
            }
            let delay = backoff(attempt, settings.backoff_initial, settings.backoff_max);
            attempt = attempt.saturating_add(1);
            relay.set_backoff(std::time::Instant::now() + delay);
            warn!(
                retry_in_secs = format!("{:.1}", delay.as_secs_f64()),
                "relay backoff: {e}"
            );
            tokio::select! {
                _ = sleep(delay) => {}
                _ = stopped(stop) => return GiveUp::Exit(Exit::Stopped),
                _ = stream_gone(queue, settings.grace) => break,
            }
            relay.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if ephemeral {
            return GiveUp::Exit(Exit::StreamEnded);
        }
        attempt = 0;
    }
}

/// Sends the queue on the flush clock until stopped, failed, or the
/// stream ends.
async fn live(
    relay: &Relay,
    mut link: Link,
    settings: &RelaySettings,
    stop: &mut watch::Receiver<bool>,
) -> LiveEnd {
    let every = settings.flush_interval;
    let mut events: Vec<StreamEvent> = Vec::new();
    loop {
        enum Wake {
            Tick,
            Input(bytes::Bytes),
            Gone(String),
            Stop,
        }
        let wake = tokio::select! {
            _ = sleep_until(next_tick(every, Instant::now())) => Wake::Tick,
            w = peer(&mut link) => w.map_or_else(Wake::Gone, Wake::Input),
            _ = stopped(stop) => Wake::Stop,
        };
        match wake {
            Wake::Stop => {
                // What is queued still goes out before the end.
                let _ = send_queued(relay, &mut link, settings, &mut events).await;
                close(link).await;
                return LiveEnd::Stopped;
            }
            Wake::Gone(e) => return LiveEnd::Failed(e),
            Wake::Input(data) => {
                if let Link::Rtmp(l) = &mut link {
                    if let Err(e) = l.handle_input(&data) {
                        return LiveEnd::Failed(e);
                    }
                    // Acknowledgements and ping answers.
                    if let Err(e) = flush(relay, &mut link, settings).await {
                        return LiveEnd::Failed(e);
                    }
                }
            }
            Wake::Tick => {
                if ended(&relay.queue, settings.grace) {
                    close(link).await;
                    return LiveEnd::StreamEnded;
                }
                if let Err(e) = send_queued(relay, &mut link, settings, &mut events).await {
                    return LiveEnd::Failed(e);
                }
            }
        }
    }
}

/// The next thing the destination says: bytes (RTMP) or why it is gone.
async fn peer(link: &mut Link) -> Result<bytes::Bytes, String> {
    match link {
        Link::Rtmp(l) => match l.recv().await {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) => Err(format!("connection lost: {e}")),
            None => Err("connection lost".into()),
        },
        Link::Srt(l) => Err(l.closed().await),
    }
}

async fn send_queued(
    relay: &Relay,
    link: &mut Link,
    settings: &RelaySettings,
    events: &mut Vec<StreamEvent>,
) -> Result<(), String> {
    relay.queue.drain(events);
    if events.is_empty() {
        return Ok(());
    }
    let (mut sent, mut skipped) = (0, 0);
    match link {
        Link::Rtmp(l) => {
            for ev in events.drain(..) {
                let frame = matches!(ev, StreamEvent::Frame(_));
                match (frame, l.push(&ev)) {
                    (true, true) => sent += 1,
                    (true, false) => skipped += 1,
                    _ => {}
                }
            }
        }
        Link::Srt(l) => {
            let before = l.mux_dropped();
            for ev in events.drain(..) {
                l.push(&ev);
            }
            sent = l.take_frames();
            skipped = l.mux_dropped() - before;
        }
    }
    relay.frames_sent.fetch_add(sent, Ordering::Relaxed);
    relay.link_dropped.fetch_add(skipped, Ordering::Relaxed);
    flush(relay, link, settings).await
}

async fn flush(relay: &Relay, link: &mut Link, settings: &RelaySettings) -> Result<(), String> {
    let limit = settings.write_timeout;
    let r = match link {
        Link::Rtmp(l) => timeout(limit, l.flush())
            .await
            .map(|r| r.map_err(|e| format!("write failed: {e}"))),
        Link::Srt(l) => timeout(limit, l.flush()).await,
    };
    match r {
        Ok(Ok(n)) => {
            relay.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the destination took more than {limit:?} to accept a write"
        )),
    }
}

async fn close(link: Link) {
    match link {
        Link::Rtmp(l) => l.close().await,
        Link::Srt(l) => l.close().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_ticks_are_shared_and_ahead() {
        let every = Duration::from_millis(50);
        let _ = next_tick(every, Instant::now());
        let now = Instant::now();
        let a = next_tick(every, now);
        let b = next_tick(every, now + Duration::from_millis(13));
        assert!(a > now && a <= now + every);
        assert!(b == a || b == a + every);
        let later = next_tick(every, a);
        assert_eq!(later, a + every, "a tick at a tick is the next one");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..200 {
            let d0 = backoff(0, i, m).as_secs_f64();
            assert!((0.75..1.25).contains(&d0), "{d0}");
            let d3 = backoff(3, i, m).as_secs_f64();
            assert!((6.0..10.0).contains(&d3), "{d3}");
            let d = backoff(10, i, m).as_secs_f64();
            assert!((45.0..=60.0).contains(&d), "{d}");
            assert!(backoff(u32::MAX, i, m) <= m);
        }
        // Jitter: not every delay is the same.
        let set: std::collections::HashSet<u128> =
            (0..50).map(|_| backoff(2, i, m).as_micros()).collect();
        assert!(set.len() > 10);
    }
}
