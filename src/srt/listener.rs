//! The SRT listener's I/O: one thread accepts (libsrt's `accept` blocks),
//! each connection is a tokio task, and a publisher's socket has a thread
//! of its own blocked in libsrt's receive call.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::admission::{self, Decision, Load, Refusal};
use super::settings::Settings;
use super::streamid::{Mode, StreamId};
use crate::auth::{Action, Auth, Request, Verdict};
use crate::hub::{Hub, StreamEvent};
use crate::metrics::{esc, Family, Render};
use crate::shutdown::Shutdown;
use crate::stream_key::StreamKey;
use crate::streams::{Granted, Origin, PublishGuard, Registry};
use crate::transport::libsrt::{self, Admission, Stats};
use crate::transport::per_ip::PerIpLimit;

/// What the listener needs from the rest of castgate.
#[derive(Clone)]
pub struct Deps {
    pub registry: Registry,
    pub hub: Hub,
    pub auth: Arc<Auth>,
    pub shutdown: Shutdown,
    /// Whether a stream that is not live will be once watched (an
    /// on-demand pulled source): its SRT players are admitted and wait.
    pub on_demand: Option<OnDemand>,
}

/// See [`Deps::on_demand`].
pub type OnDemand = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Deps {
    /// Whether a player of `stream` gets something: it is live, or an
    /// on-demand source will make it live.
    fn will_be_live(&self, stream: &str) -> bool {
        self.hub.is_live(stream) || self.on_demand.as_ref().is_some_and(|f| f(stream))
    }
}

/// The running listener; dropping it stops accepting (connections go on
/// until they end or castgate stops).
pub struct SrtListener {
    listener: Arc<libsrt::Listener>,
    local: SocketAddr,
}

impl SrtListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for SrtListener {
    fn drop(&mut self) {
        self.listener.close();
    }
}

/// One SRT connection as the console and `/metrics` show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SrtSession {
    pub id: u64,
    pub peer: String,
    pub stream: String,
    /// `publish` or `request`.
    pub mode: &'static str,
    /// Seconds since it was accepted.
    pub age_secs: f64,
    #[serde(skip)]
    started: Instant,
    /// libsrt's counters, refreshed every second.
    pub rtt_ms: f64,
    pub bandwidth_mbps: f64,
    pub rate_mbps: f64,
    pub packets_received: i64,
    pub packets_received_lost: i64,
    pub packets_received_retransmitted: i64,
    pub packets_received_dropped: i64,
    pub packets_sent: i64,
    pub packets_retransmitted: i64,
    pub packets_lost: i64,
}

impl SrtSession {
    fn update(&mut self, s: &Stats) {
        self.rtt_ms = s.rtt_ms;
        self.bandwidth_mbps = s.bandwidth_mbps;
        self.rate_mbps = if self.mode == Mode::Publish.name() {
            s.receive_rate_mbps
        } else {
            s.send_rate_mbps
        };
        self.packets_received = s.packets_received;
        self.packets_received_lost = s.packets_received_lost;
        self.packets_received_retransmitted = s.packets_received_retransmitted;
        self.packets_received_dropped = s.packets_received_dropped;
        self.packets_sent = s.packets_sent;
        self.packets_retransmitted = s.packets_retransmitted;
        self.packets_lost = s.packets_lost;
    }
}

/// The listener's live connections (cheap to clone; clones share).
#[derive(Clone, Default)]
pub struct SrtSessions {
    inner: Arc<Mutex<BTreeMap<u64, SrtSession>>>,
    next: Arc<AtomicU64>,
}

impl SrtSessions {
    pub fn list(&self) -> Vec<SrtSession> {
        crate::locks::lock(&self.inner)
            .values()
            .map(|s| SrtSession {
                age_secs: s.started.elapsed().as_secs_f64(),
                ..s.clone()
            })
            .collect()
    }

    fn add(&self, peer: SocketAddr, stream: &str, mode: Mode) -> SessionEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let session = SrtSession {
            id,
            peer: peer.to_string(),
            stream: stream.to_string(),
            mode: mode.name(),
            age_secs: 0.0,
            started: Instant::now(),
            rtt_ms: 0.0,
            bandwidth_mbps: 0.0,
            rate_mbps: 0.0,
            packets_received: 0,
            packets_received_lost: 0,
            packets_received_retransmitted: 0,
            packets_received_dropped: 0,
            packets_sent: 0,
            packets_retransmitted: 0,
            packets_lost: 0,
        };
        crate::locks::lock(&self.inner).insert(id, session);
        SessionEntry {
            sessions: self.clone(),
            id,
        }
    }
}

/// `/metrics`: SRT connections by mode, and libsrt's counters per
/// connection (at most `max` of them): publishers' receiving side,
/// players' sending side.
impl Render for SrtSessions {
    fn render(&self, f: &mut Family<'_>, max: usize) {
        let sessions = self.list();
        f.head(
            "castgate_srt_connections",
            "gauge",
            "SRT connections by mode (publish, request).",
        );
        for mode in ["publish", "request"] {
            let n = sessions.iter().filter(|s| s.mode == mode).count();
            f.line(
                "castgate_srt_connections",
                &format!("mode=\"{mode}\""),
                n as f64,
            );
        }
        type SrtGet = fn(&SrtSession) -> f64;
        let per_session: &[(&str, &str, &str, SrtGet)] = &[
            (
                "castgate_srt_rtt_ms",
                "gauge",
                "Smoothed round-trip time.",
                |s| s.rtt_ms,
            ),
            (
                "castgate_srt_bandwidth_mbps",
                "gauge",
                "libsrt's estimate of the link's bandwidth.",
                |s| s.bandwidth_mbps,
            ),
            (
                "castgate_srt_rate_mbps",
                "gauge",
                "Receiving (publish) or sending (request) rate.",
                |s| s.rate_mbps,
            ),
            (
                "castgate_srt_packets_lost_total",
                "counter",
                "Packets lost: seen missing (publish) or reported by the player (request).",
                |s| (s.packets_received_lost + s.packets_lost) as f64,
            ),
            (
                "castgate_srt_packets_retransmitted_total",
                "counter",
                "Packets retransmitted: received (publish) or sent (request).",
                |s| (s.packets_received_retransmitted + s.packets_retransmitted) as f64,
            ),
            (
                "castgate_srt_packets_dropped_total",
                "counter",
                "Packets castgate gave up on as too late to play (publish).",
                |s| s.packets_received_dropped as f64,
            ),
        ];
        let shown: Vec<_> = sessions.iter().take(max).collect();
        for (name, kind, help, get) in per_session {
            f.head(name, kind, help);
            for s in &shown {
                let labels = format!(
                    "connection=\"{}\",stream=\"{}\",mode=\"{}\"",
                    s.id,
                    esc(&s.stream),
                    s.mode
                );
                f.line(name, &labels, get(s));
            }
        }
    }
}

/// A session's row, removed on drop.
struct SessionEntry {
    sessions: SrtSessions,
    id: u64,
}

impl SessionEntry {
    fn update(&self, stats: &Stats) {
        if let Some(s) = crate::locks::lock(&self.sessions.inner).get_mut(&self.id) {
            s.update(stats);
        }
    }
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        crate::locks::lock(&self.sessions.inner).remove(&self.id);
    }
}

/// Shared between the admission callback and the connections.
struct Shared {
    settings: Arc<RwLock<Settings>>,
    deps: Deps,
    connections: AtomicUsize,
    per_ip: PerIpLimit,
    sessions: SrtSessions,
}

/// Pending handshakes libsrt queues before `accept` takes them.
const BACKLOG: u16 = 64;

/// Binds `[srt] listen` and serves callers on the current tokio runtime.
/// `settings` is read for each caller (a reload replaces it; the address,
/// the latency and the per-address table's size are fixed here);
/// `sessions` lists the connections.
pub fn start(
    settings: Arc<RwLock<Settings>>,
    sessions: SrtSessions,
    deps: Deps,
) -> io::Result<SrtListener> {
    let current = crate::locks::read(&settings).clone();
    let opts = libsrt::Options {
        latency: current.latency,
        stream_id: None,
        // Set per caller by the admission.
        passphrase: None,
        key_len: 0,
        connect_timeout: current.handshake_timeout,
    };
    let addr = current.listen;
    // The admission checks the address's count against the current
    // setting; the table itself only needs a bound.
    let per_ip = PerIpLimit::new(usize::MAX, 1 << 20);
    let shared = Arc::new(Shared {
        settings: Arc::clone(&settings),
        deps,
        connections: AtomicUsize::new(0),
        per_ip,
        sessions,
    });
    let admit_shared = Arc::clone(&shared);
    let admit: Arc<libsrt::Admit> = Arc::new(move |peer, id| admit(&admit_shared, peer, id));
    let listener = Arc::new(
        libsrt::Listener::bind(&opts, addr, BACKLOG, admit).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen for SRT on {addr}: {e}"))
        })?,
    );
    let local = listener.local_addr().unwrap_or(addr);
    let runtime = tokio::runtime::Handle::current();
    let accepting = Arc::clone(&listener);
    std::thread::Builder::new()
        .name("castgate-srt-listen".into())
        .spawn(move || {
            // An error: closed (castgate stops, or the listener was dropped).
            while let Ok((sock, peer)) = accepting.accept() {
                let shared = Arc::clone(&shared);
                runtime.spawn(async move { serve(shared, sock, peer).await });
            }
        })?;
    Ok(SrtListener { listener, local })
}

/// The handshake callback (libsrt's thread: no waiting here).
fn admit(shared: &Shared, peer: Option<SocketAddr>, id: &str) -> Admission {
    let settings = crate::locks::read(&shared.settings).clone();
    let load = Load {
        total: shared.connections.load(Ordering::Relaxed),
        from_address: peer.map_or(0, |p| shared.per_ip.held(p.ip())),
    };
    let auth = &shared.deps.auth;
    let now = crate::timefmt::unix_secs(std::time::SystemTime::now());
    let decision = admission::decide(
        &settings,
        id,
        load,
        |r| {
            let req = auth_request(r, peer);
            auth.check_without_waiting(&req, now)
        },
        |stream| shared.deps.will_be_live(stream),
    );
    let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
    match decision {
        Decision::Accept { passphrase, .. } => Admission::Accept { passphrase },
        Decision::Reject { reason, why } => {
            log_refusal(auth, &peer, id, reason, &why);
            Admission::Reject(reason)
        }
    }
}

/// A refusal's log line: the stream (never a possible key or query) and
/// the peer.
fn log_refusal(auth: &Auth, peer: &str, id: &str, reason: i32, why: &Refusal) {
    let stream = match super::streamid::parse(id) {
        Ok(r) => {
            let action = action_of(r.mode);
            format!("{}/{}", r.app, auth.loggable_name(action, &r.app, &r.name))
        }
        Err(_) => format!("<stream id of {} bytes>", id.len()),
    };
    if let (Refusal::Unauthorised(_), Ok(r)) = (why, super::streamid::parse(id)) {
        crate::metrics::auth_denied(match r.mode {
            Mode::Publish => "publish",
            Mode::Request => "play",
        });
    }
    warn!(peer = %peer, stream, reason, "SRT caller refused: {why}");
}

fn action_of(mode: Mode) -> Action {
    match mode {
        Mode::Publish => Action::Publish,
        Mode::Request => Action::Play,
    }
}

fn auth_request(r: &StreamId, peer: Option<SocketAddr>) -> Request {
    let mut req = Request::new(action_of(r.mode), &r.app, &r.name, &r.query, "srt");
    if let Some(p) = peer {
        req = req.from(p);
    }
    req.user = r.user.clone();
    req.session = r.session.clone();
    req
}

/// Holds one of the listener's connection slots.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted caller: authorised (the webhook, if the policy has one),
/// then publishing or playing until it leaves.
async fn serve(shared: Arc<Shared>, sock: libsrt::Socket, peer: Option<SocketAddr>) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let _slot = Slot(&shared.connections);
    let Some(peer) = peer else {
        warn!("SRT caller with an unknown address: closed");
        return;
    };
    let span = tracing::info_span!("srt", peer = %peer);
    async {
        // Counted for the admission of the address's next callers (which
        // refuses an address at its limit).
        let _permit = match shared.per_ip.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(e) => {
                warn!("SRT caller closed: {e}");
                return;
            }
        };
        let settings = crate::locks::read(&shared.settings).clone();
        let Some(request) = sock
            .stream_id()
            .and_then(|id| super::streamid::parse(&id).ok())
        else {
            warn!("SRT caller closed: its stream id no longer reads");
            return;
        };
        let req = auth_request(&request, Some(peer));
        let now = crate::timefmt::unix_secs(std::time::SystemTime::now());
        let verdict = tokio::time::timeout(
            settings.handshake_timeout,
            shared.deps.auth.check(&req, now),
        )
        .await
        .unwrap_or_else(|_| Verdict::Deny("the auth webhook did not answer in time".into()));
        let grant = match verdict {
            Verdict::Allow(g) => g,
            Verdict::Deny(why) => {
                let why = Refusal::Unauthorised(why);
                log_refusal(
                    &shared.deps.auth,
                    &peer.to_string(),
                    &format!(
                        "#!::r={}/{},m={}",
                        request.app,
                        request.name,
                        request.mode.name()
                    ),
                    super::streamid::REJECT_UNAUTHORIZED,
                    &why,
                );
                return;
            }
        };
        let name = grant.name.clone().unwrap_or_else(|| request.name.clone());
        let key = match StreamKey::new(&request.app, &name) {
            Ok(k) => k,
            Err(why) => {
                let name =
                    shared
                        .deps
                        .auth
                        .loggable_name(action_of(request.mode), &request.app, &name);
                warn!(app = request.app, name, "SRT caller closed: {why}");
                return;
            }
        };
        let sock = Arc::new(sock);
        match request.mode {
            Mode::Publish => {
                let granted = Granted {
                    profile: grant.profile.clone(),
                    relays: grant.relays.clone(),
                };
                publish(&shared, sock, peer, key, &granted, &settings).await
            }
            // Checked in the handshake already, unless a webhook renamed it.
            Mode::Request if !shared.deps.will_be_live(key.as_str()) => {
                warn!(
                    stream = key.as_str(),
                    "SRT caller closed: the stream is not live"
                );
            }
            Mode::Request => play(&shared, sock, peer, key, &settings).await,
        }
    }
    .instrument(span)
    .await
}

/// What the receiving thread hands the publish task.
enum Incoming {
    Message(Bytes),
    /// Nothing for a second: libsrt's counters as of now.
    Quiet(Option<Stats>),
    Gone(String),
}

/// Starts the thread that blocks in libsrt's receive call.
fn receive_thread(sock: Arc<libsrt::Socket>) -> io::Result<mpsc::Receiver<Incoming>> {
    sock.set_recv_timeout(Duration::from_secs(1))?;
    // Back-pressure: a full channel blocks the thread, and libsrt's
    // receive buffer (then its latency window) absorbs the rest.
    let (tx, rx) = mpsc::channel(256);
    std::thread::Builder::new()
        .name("castgate-srt-rx".into())
        .spawn(move || {
            let mut buf = [0u8; libsrt::MAX_MESSAGE];
            let mut last_stats = Instant::now();
            loop {
                let item = match sock.recv(&mut buf) {
                    Ok(n) => Incoming::Message(Bytes::copy_from_slice(&buf[..n])),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => Incoming::Quiet(sock.stats()),
                    Err(e) => Incoming::Gone(e.to_string()),
                };
                let gone = matches!(item, Incoming::Gone(_));
                if tx.blocking_send(item).is_err() || gone {
                    break;
                }
                if last_stats.elapsed() >= Duration::from_secs(1) {
                    last_stats = Instant::now();
                    if tx.blocking_send(Incoming::Quiet(sock.stats())).is_err() {
                        break;
                    }
                }
            }
        })?;
    Ok(rx)
}

/// Why a publish ended.
#[derive(Debug)]
pub(crate) enum PublishEnd {
    Left(String),
    NoMedia(Duration),
    Idle(Duration),
    Kicked,
    Stopping,
}

impl std::fmt::Display for PublishEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishEnd::Left(why) => write!(f, "the publisher left ({why})"),
            PublishEnd::NoMedia(d) => write!(f, "no MPEG-TS within {:.1} s", d.as_secs_f64()),
            PublishEnd::Idle(d) => write!(f, "nothing received for {:.1} s", d.as_secs_f64()),
            PublishEnd::Kicked => write!(f, "another publisher took the stream"),
            PublishEnd::Stopping => write!(f, "castgate is stopping"),
        }
    }
}

/// How long an SRT publish may stay silent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReceiveLimits {
    /// Until the first message.
    pub first_message: Duration,
    /// Between messages after that.
    pub idle: Duration,
}

/// What a finished SRT publish received.
pub(crate) struct Received {
    pub end: PublishEnd,
    pub bytes: u64,
    pub stats: Option<Stats>,
    pub ts: crate::media::ts::DemuxStats,
}

/// The publishing half of an SRT connection, shared by the listener's
/// publishers and pulled SRT sources (`sources`): a thread blocked in
/// libsrt's receive call, MPEG-TS read by `media::ts` into `guard`, until
/// the peer leaves, stays silent past `limits`, is taken over, or castgate
/// stops. `stop` ends it too (resolving: stopped). `on_stats` gets
/// libsrt's counters about every second; `tally` (bytes, frames) every
/// message. Closes the socket.
pub(crate) async fn receive_ts(
    sock: Arc<libsrt::Socket>,
    guard: &mut PublishGuard,
    limits: ReceiveLimits,
    shutdown: &Shutdown,
    stop: impl std::future::Future<Output = ()>,
    mut on_stats: impl FnMut(&Stats),
    mut tally: impl FnMut(u64, u64),
) -> io::Result<Received> {
    let mut rx = receive_thread(Arc::clone(&sock))?;
    let key = guard.key().clone();
    let mut demux = crate::media::ts::TsDemuxer::new(Default::default());
    let started = Instant::now();
    let mut last_message: Option<Instant> = None;
    let mut bytes_in: u64 = 0;
    let mut stop = std::pin::pin!(stop);
    let end = loop {
        let wait = match last_message {
            None => limits.first_message.saturating_sub(started.elapsed()),
            Some(at) => limits.idle.saturating_sub(at.elapsed()),
        };
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = tokio::time::sleep(wait) => {
                break match last_message {
                    None => PublishEnd::NoMedia(limits.first_message),
                    Some(_) => PublishEnd::Idle(limits.idle),
                };
            }
            _ = guard.kicked() => break PublishEnd::Kicked,
            _ = shutdown.cancelled() => break PublishEnd::Stopping,
            _ = &mut stop => break PublishEnd::Stopping,
        };
        match item {
            Some(Incoming::Message(m)) => {
                last_message = Some(Instant::now());
                bytes_in += m.len() as u64;
                let mut frames = 0;
                demux.push(&m, |ev| {
                    frames += u64::from(matches!(
                        ev,
                        StreamEvent::Frame(_) | StreamEvent::TrackFrame(..)
                    ));
                    guard.send(ev);
                });
                tally(m.len() as u64, frames);
                for w in demux.take_warnings() {
                    warn!(stream = key.as_str(), "SRT publish: {w}");
                }
            }
            Some(Incoming::Quiet(stats)) => {
                if let Some(s) = stats {
                    on_stats(&s);
                }
            }
            Some(Incoming::Gone(why)) => break PublishEnd::Left(why),
            None => break PublishEnd::Left("the receive thread ended".into()),
        }
    };
    // What the demuxer still holds (a video access unit ends where the
    // next one starts) is the end of the stream.
    if !matches!(end, PublishEnd::Kicked) {
        demux.finish(|ev| {
            guard.send(ev);
        });
    }
    let stats = sock.stats();
    sock.close();
    Ok(Received {
        end,
        bytes: bytes_in,
        stats,
        ts: *demux.stats(),
    })
}

async fn publish(
    shared: &Shared,
    sock: Arc<libsrt::Socket>,
    peer: SocketAddr,
    key: StreamKey,
    granted: &Granted,
    settings: &Settings,
) {
    let origin = Origin::Client {
        protocol: "srt",
        peer,
        mode: "live".into(),
    };
    let mut guard = match shared
        .deps
        .registry
        .publish(key.clone(), origin, granted)
        .await
    {
        Ok(g) => g,
        Err(e) => {
            warn!(stream = key.as_str(), "SRT publish refused: {e}");
            return;
        }
    };
    let entry = shared.sessions.add(peer, key.as_str(), Mode::Publish);
    let started = Instant::now();
    let limits = ReceiveLimits {
        first_message: settings.handshake_timeout,
        idle: settings.idle_timeout,
    };
    let received = receive_ts(
        sock,
        &mut guard,
        limits,
        &shared.deps.shutdown,
        std::future::pending(),
        |s| entry.update(s),
        |_, _| {},
    )
    .await;
    let r = match received {
        Ok(r) => r,
        Err(e) => {
            warn!(stream = key.as_str(), "SRT publish failed: {e}");
            return;
        }
    };
    info!(
        stream = key.as_str(),
        bytes = r.bytes,
        secs = format!("{:.1}", started.elapsed().as_secs_f64()),
        lost = r.stats.map(|s| s.packets_received_lost),
        retransmitted = r.stats.map(|s| s.packets_received_retransmitted),
        ts = ?r.ts,
        "SRT publish ended: {}", r.end
    );
}

async fn play(
    shared: &Shared,
    sock: Arc<libsrt::Socket>,
    peer: SocketAddr,
    key: StreamKey,
    settings: &Settings,
) {
    let subscriber = shared.deps.hub.subscribe(key.as_str());
    let entry = shared.sessions.add(peer, key.as_str(), Mode::Request);
    let mut link = match crate::egress::srt::SrtLink::accepted(
        Arc::clone(&sock),
        peer.to_string(),
        settings.latency,
        settings.player_queue_messages,
    ) {
        Ok(l) => l,
        Err(e) => {
            warn!(stream = key.as_str(), "SRT play failed: {e}");
            return;
        }
    };
    info!(stream = key.as_str(), "SRT play started");
    let started = Instant::now();
    let mut frames: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let end = loop {
        tokio::select! {
            ev = subscriber.recv() => match ev {
                Ok(StreamEvent::PublisherStopped) => {
                    link.push(&StreamEvent::PublisherStopped);
                    let _ = link.flush().await;
                    break "the stream ended".to_string();
                }
                Ok(ev) => {
                    link.push(&ev);
                    frames += link.take_frames();
                    if let Err(e) = link.flush().await {
                        break e;
                    }
                }
                Err(closed) => break closed.to_string(),
            },
            why = link.closed() => break why,
            _ = tick.tick() => {
                if let Some(s) = sock.stats() {
                    entry.update(&s);
                }
            }
            _ = shared.deps.shutdown.cancelled() => break "castgate is stopping".to_string(),
        }
    };
    let dropped = subscriber.dropped();
    link.close().await;
    info!(
        stream = key.as_str(),
        frames,
        dropped,
        secs = format!("{:.1}", started.elapsed().as_secs_f64()),
        "SRT play ended: {end}"
    );
}
