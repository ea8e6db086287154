//! The RTMP connection driver: runs a sans-I/O [`ServerSession`] over any
//! byte stream (TCP, TLS, or the RTMPT tunnel's pipe), and connects it to
//! the hub as a publisher and/or a player.

pub mod coalesce;
pub mod playout;
mod readbuf;
mod settings;
pub mod vod;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{info, warn, Instrument};

use crate::auth::{Action, Auth, Grant, Verdict};
use crate::cluster::ClaimError;
use crate::hub::{Closed, Hub, StreamEvent, Subscriber};
use crate::media::flv::Ingest;
use crate::metrics::ConnGauge;
use crate::rtmp::session::{PlayRange, ServerEvent, ServerSession, SessionError};
use crate::rtmp::status::NetStatus;
use crate::shutdown::Shutdown;
use crate::stream_key::StreamKey;
use crate::streams::{Granted, Origin, PublishError, PublishGuard, Registry};
use coalesce::{Coalescer, Ticks};
use playout::{Playout, Sent};
pub use settings::Settings;

/// What every RTMP connection shares: only what a connection uses (the
/// `app` module builds it).
pub struct ServerContext {
    /// Live streams: players subscribe here.
    pub hub: Hub,
    /// What a publish starts and stops (see [`crate::streams`]).
    pub streams: Registry,
    /// Publish and play authorisation (its policy is swapped on SIGHUP).
    pub auth: Arc<Auth>,
    /// Fires when the process starts to stop.
    pub shutdown: Shutdown,
    /// `[rtmp]` as last reloaded: each connection takes the one current
    /// when it starts.
    pub rtmp: tokio::sync::watch::Sender<Arc<Settings>>,
    /// Partially received RTMP messages of every connection, together.
    pub message_budget: Arc<crate::rtmp::chunk::MessageBudget>,
    /// The files played on demand (`rtmp://HOST/VOD_APP/PATH`, see [`vod`]).
    pub vod: Arc<crate::vod::Library>,
}

impl ServerContext {
    pub fn new(
        hub: Hub,
        streams: Registry,
        auth: Arc<Auth>,
        rtmp: Settings,
        shutdown: Shutdown,
        vod: Arc<crate::vod::Library>,
    ) -> Arc<Self> {
        let message_budget = Arc::new(crate::rtmp::chunk::MessageBudget::new(
            rtmp.message_budget_bytes,
        ));
        Arc::new(ServerContext {
            hub,
            streams,
            auth,
            shutdown,
            rtmp: tokio::sync::watch::Sender::new(Arc::new(rtmp)),
            message_budget,
            vod,
        })
    }

    /// `[rtmp]` as last reloaded.
    pub fn rtmp(&self) -> Arc<Settings> {
        self.rtmp.borrow().clone()
    }

    /// A context on the embedded defaults with `rtmp` (tests in modules
    /// below `app`, which must not import it): its own hub, packager,
    /// relays and registry, open auth, no webhooks.
    #[cfg(test)]
    pub(crate) fn for_tests(rtmp: Settings) -> Arc<Self> {
        use crate::settings::tests::default_section;
        let hub = Hub::new(crate::hub::HubConfig::default());
        let package: crate::package::Settings = default_section("package");
        let packager = crate::package::service::Packager::new(
            hub.clone(),
            crate::package::service::Store::default(),
            package.packager_config(),
        );
        let events = crate::webhooks::Webhooks::default();
        let relays = crate::egress::Relays::new(
            hub.clone(),
            crate::egress::RelaySettings::default(),
            Vec::new(),
            events.clone(),
        );
        let streams = Registry::new(
            hub.clone(),
            packager,
            relays,
            crate::record::Recorder::default(),
            crate::metrics::Streams::default(),
            events,
        );
        let auth: crate::auth::Settings = default_section("auth");
        let auth = Arc::new(Auth::new(auth.policy().expect("the default auth checks")));
        let vod = crate::vod::Library::new(crate::vod::Settings::default());
        ServerContext::new(hub, streams, auth, rtmp, Shutdown::never(), vod)
    }
}

/// Why a connection ended (logged once, at the end).
#[derive(Debug, thiserror::Error)]
pub enum EndReason {
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("handshake and connect not finished within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("publisher sent no media for {0:?}")]
    IdlePublisher(Duration),
    #[error("session neither published nor played for {0:?} (rtmp.session_idle_secs)")]
    IdleSession(Duration),
    #[error("replaced by a new publisher of {0}")]
    TakenOver(String),
    #[error("no publisher for {0} within {1:?}")]
    PlayWaitExpired(String, Duration),
    #[error("player too slow: {0}")]
    SlowPlayer(Closed),
    #[error("peer not reading: a write took longer than {0:?}")]
    WriteTimeout(Duration),
    #[error("publish refused: {0}")]
    PublishRefused(String),
    #[error("server shutting down")]
    Shutdown,
}

struct Publishing {
    stream_id: u32,
    /// The registry's handle: frames go through it; dropping it ends the
    /// publish (packaging, relays, transcode, stats, `stream.ended`).
    guard: PublishGuard,
    ingest: Ingest,
    /// Limits the bad-tag warnings of this publish.
    bad_tag_log: LogThrottle,
    last_media: Instant,
    started: Instant,
    /// The webhook-named transcode profile (`Auth::profile_of`).
    _profile: Option<crate::auth::ProfileGuard>,
}

/// A publish or play waiting for its authorisation.
struct PendingAuth {
    stream_id: u32,
    app: String,
    name: String,
    query: String,
    /// Publish mode (`live`, `record`, `append`); empty for play.
    mode: String,
    /// What a play asked for besides the name.
    range: PlayRange,
    action: Action,
}

/// A `getStreamLength` of a file to look up (answered at the top of the
/// loop, where the connection may wait).
struct LengthRequest {
    stream_id: u32,
    transaction: f64,
    path: String,
    query: String,
}

/// `getStreamLength` requests a connection may have waiting; more are
/// answered 0.
const MAX_LENGTH_REQUESTS: usize = 4;

struct Playing {
    subscriber: Subscriber,
    playout: Playout,
    /// Set while no publisher is live: the player gives up at this instant.
    give_up_at: Option<Instant>,
}

/// Serves one plain-TCP RTMP connection, reading publishers in batches
/// (see [`coalesce`]).
pub async fn serve_tcp_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerContext>,
) {
    use std::os::fd::AsRawFd;
    let coalescer = Coalescer::new(socket.as_raw_fd());
    serve(socket, peer, "rtmp", ctx, Some(coalescer)).await
}

/// The RTMP connection driver as a transport [`Handler`]: what TLS
/// listeners and RTMPT tunnels hand their byte streams to.
///
/// [`Handler`]: crate::transport::Handler
pub fn handler(ctx: Arc<ServerContext>) -> crate::transport::Handler {
    Arc::new(move |io, peer, protocol| {
        let ctx = Arc::clone(&ctx);
        // Dropping `io` at the end tells a tunnel the connection is over.
        Box::pin(async move { serve_connection(io, peer, protocol, ctx).await })
    })
}

/// Serves one RTMP connection over any byte stream to its end and logs why
/// it ended.
pub async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    protocol: &'static str,
    ctx: Arc<ServerContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve(io, peer, protocol, ctx, None).await
}

async fn serve<S>(
    io: S,
    peer: SocketAddr,
    protocol: &'static str,
    ctx: Arc<ServerContext>,
    coalescer: Option<Coalescer>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // `proto` is the variant (rtmp, rtmpe, rtmps, rtmpt, rtmpte, rtmpts),
    // recorded once the handshake tells it.
    let span = tracing::info_span!("conn", %peer, proto = tracing::field::Empty);
    async move {
        if ctx.shutdown.is_stopping() {
            tracing::Span::current().record("proto", protocol);
            info!("connection refused: shutting down");
            return;
        }
        let mut conn = Connection::new(ctx, peer, protocol, coalescer);
        let reason = conn.run(io).await;
        conn.record_variant();
        let stream = conn.last_key.as_str();
        match &reason {
            EndReason::PeerClosed => info!(stream, "connection closed: {reason}"),
            _ => warn!(stream, "connection closed: {reason}"),
        }
        if let Some(p) = conn.publishing.take() {
            log_publish_end(&p);
        }
        if let Some(v) = conn.vod.take() {
            log_vod_end(&v);
        }
    }
    .instrument(span)
    .await
}

/// The label of RTMPE over a transport: `rtmpe` on the RTMP port, `rtmpte`
/// in the RTMPT tunnel.
fn encrypted_variant(transport: &'static str) -> &'static str {
    match transport {
        "rtmpt" => "rtmpte",
        _ => "rtmpe",
    }
}

/// The connection's own account of a publish ending (the registry's guard,
/// dropped with `p`, emits `stream.ended`).
fn log_publish_end(p: &Publishing) {
    info!(
        stream = p.guard.key().as_str(),
        frames = p.ingest.frames,
        bytes = p.ingest.bytes,
        bad_tags = p.ingest.bad_tags,
        unsupported_tags = p.ingest.unsupported_tags,
        timestamp_repairs = p.ingest.repairs(),
        secs = p.started.elapsed().as_secs_f64(),
        "publish ended"
    );
}

/// The connection's account of an on-demand play ending.
fn log_vod_end(v: &vod::VodPlay) {
    info!(
        stream = v.key,
        frames = v.playout.frames_sent,
        bytes = v.bytes,
        at_ms = v.position_ms,
        complete = v.is_finished(),
        "play ended"
    );
}

struct Connection {
    /// This connection's `[rtmp]` (as current when it started).
    config: Arc<Settings>,
    gauge: ConnGauge,
    /// The transport's label until the handshake shows the variant
    /// (`rtmp` becomes `rtmpe`, `rtmpt` becomes `rtmpte`).
    protocol: &'static str,
    variant_recorded: bool,
    /// Set when a publish or play awaits its authorisation: no more session
    /// events are handled until it is decided (media sent right after the
    /// publish command waits in the session, in order).
    pending: Option<PendingAuth>,
    session: ServerSession,
    ctx: Arc<ServerContext>,
    peer: SocketAddr,
    phase: Phase,
    /// The last stream this connection published or played, for the final log line.
    last_key: String,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    /// An on-demand play (the `vod.app` application).
    vod: Option<vod::VodPlay>,
    /// The client's last SetBufferLength (ms).
    buffer_ms: Option<u32>,
    /// `getStreamLength` requests of files, to answer.
    length_requests: VecDeque<LengthRequest>,
    /// Set on plain TCP: publishers are then read in batches.
    coalescer: Option<Coalescer>,
    batching: bool,
    /// This thread's batching clock, while batching.
    ticks: Option<Ticks>,
    /// The last time this connection was shaking hands, publishing,
    /// playing or awaiting an authorisation: idle sessions are closed
    /// `rtmp.session_idle_secs` after it.
    last_active: Instant,
}

/// How far a connection has come. What it publishes or plays is held
/// apart (`publishing`, `playing`): one connection may do both at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Handshake or `connect` not done: `rtmp.handshake_timeout_secs` runs.
    Handshake,
    /// `connect` answered; idle unless publishing, playing or awaiting an
    /// authorisation (then `rtmp.session_idle_secs` runs).
    Connected,
}

impl Connection {
    fn new(
        ctx: Arc<ServerContext>,
        peer: SocketAddr,
        protocol: &'static str,
        coalescer: Option<Coalescer>,
    ) -> Connection {
        // The config as last reloaded: RTMP limits and timeouts changed by
        // SIGHUP apply to connections from then on.
        let config = ctx.rtmp();
        let tls = matches!(protocol, "rtmps" | "rtmpts");
        let mut session = ServerSession::new(config.session_config(tls));
        session.set_message_budget(ctx.message_budget.clone());
        Connection {
            session,
            config,
            gauge: ConnGauge::new(protocol),
            protocol,
            variant_recorded: false,
            pending: None,
            ctx,
            peer,
            phase: Phase::Handshake,
            last_key: String::new(),
            publishing: None,
            playing: None,
            vod: None,
            buffer_ms: None,
            length_requests: VecDeque::new(),
            coalescer,
            batching: false,
            ticks: None,
            last_active: Instant::now(),
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut io: S) -> EndReason {
        let rtmp = &self.config;
        let handshake_deadline = Instant::now() + rtmp.handshake_timeout;
        let write_timeout = rtmp.idle_timeout;
        // What the session left undecoded (a partial chunk): room to read
        // into is lent by `readbuf` only while reading.
        let mut buf = BytesMut::new();
        let shutdown = self.ctx.shutdown.clone();
        // Made once, not per pass of the loop: a batching publisher passes
        // it at every tick, and registering a waiter and a timer each time
        // (then dropping them) cost more than reading its frames.
        let shutdown_signal = shutdown.cancelled();
        tokio::pin!(shutdown_signal);
        let timer = sleep_until(Instant::now() + Duration::from_secs(3600));
        tokio::pin!(timer);
        loop {
            loop {
                if let Some(p) = self.pending.take() {
                    self.authorise(p).await;
                } else if let Some(r) = self.length_requests.pop_front() {
                    self.answer_length(r).await;
                } else {
                    break;
                }
                if let Err(reason) = self.drain_events() {
                    return reason;
                }
            }
            if !self.is_idle_session() {
                self.last_active = Instant::now();
            }
            self.gauge.set(match (&self.publishing, self.is_playing()) {
                (Some(_), _) => "publishing",
                (None, true) => "playing",
                _ if self.phase == Phase::Handshake => "handshake",
                _ => "connected",
            });
            if self.session.has_output() {
                let out = self.session.take_output();
                match timeout(write_timeout, io.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return e.into(),
                    Err(_) => return EndReason::WriteTimeout(write_timeout),
                }
            }
            self.update_batching();
            // The timer stays set unless the deadline came closer: set too
            // late it fires early, the timers find nothing due, and it is
            // set again.
            let deadline = self.next_deadline(handshake_deadline);
            if timer.is_elapsed() || deadline < timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            // Batching, the clock wakes the connection at every tick anyway:
            // a takeover is checked then rather than waited for.
            let publishing = self.publishing.is_some() && self.ticks.is_none();
            let playing = self.playing.is_some();
            let vod_wake = self.vod.as_ref().and_then(|v| v.wake);
            let ticks = self.ticks.as_ref();
            // Reads append to what the session left in `buf` (a partial
            // chunk): it decodes in place, with no copy of the input.
            let read_from = buf.len();
            let input = tokio::select! {
                r = readbuf::read(&mut io, &mut buf) => Some(r),
                _ = tick_opt(ticks), if ticks.is_some() => {
                    readbuf::reserve(&mut buf);
                    match self.coalescer.map(|c| c.drain(&mut buf)) {
                        Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                        other => other,
                    }
                }
                ev = recv_opt(self.playing.as_ref().map(|p| &p.subscriber)), if playing => {
                    match ev {
                        Ok(ev) => self.on_stream_event(ev),
                        Err(closed) => return EndReason::SlowPlayer(closed),
                    }
                    None
                }
                _ = sleep_until(vod_wake.unwrap_or(deadline)), if vod_wake.is_some() => {
                    self.vod_step(|v, session, now| v.pump(session, now));
                    None
                }
                _ = kicked_opt(self.publishing.as_mut().map(|p| &mut p.guard)), if publishing => {
                    return self.taken_over(&mut io).await;
                }
                _ = &mut shutdown_signal => {
                    self.end_publish(NetStatus::UnpublishSuccess, "Server shutting down.");
                    if let Some(p) = self.playing.take() {
                        self.session.end_play(p.playout.stream_id, NetStatus::PlayStop, "Server shutting down.");
                    }
                    if let Some(v) = self.vod.take() {
                        self.session.end_play(v.stream_id, NetStatus::PlayStop, "Server shutting down.");
                    }
                    let out = self.session.take_output();
                    let _ = timeout(Duration::from_millis(200), io.write_all(&out)).await;
                    return EndReason::Shutdown;
                }
                _ = &mut timer => {
                    if let Some(reason) = self.check_timers(handshake_deadline) {
                        let out = self.session.take_output();
                        let _ = timeout(Duration::from_millis(200), io.write_all(&out)).await;
                        return reason;
                    }
                    None
                }
            };
            if self.ticks.is_some()
                && self
                    .publishing
                    .as_ref()
                    .is_some_and(|p| p.guard.is_kicked())
            {
                return self.taken_over(&mut io).await;
            }
            match input {
                // A tick may have found nothing to read.
                None => readbuf::release(&mut buf),
                Some(Ok(0)) => return EndReason::PeerClosed,
                Some(Ok(_)) => {
                    let decoded = self.session.handle_read(&mut buf, read_from);
                    readbuf::release(&mut buf);
                    if let Err(e) = decoded {
                        // Flush what the session still had to say, best effort.
                        let out = self.session.take_output();
                        let _ = timeout(Duration::from_millis(200), io.write_all(&out)).await;
                        return e.into();
                    }
                    if let Err(reason) = self.drain_events() {
                        return reason;
                    }
                }
                Some(Err(e)) => return e.into(),
            }
        }
    }

    /// Ends a publish another publisher took over (or whose cluster lease
    /// was lost), telling the client.
    async fn taken_over<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> EndReason {
        let key = self.end_publish(NetStatus::PublishBadName, "Replaced by a new publisher.");
        let out = self.session.take_output();
        let _ = timeout(Duration::from_millis(200), io.write_all(&out)).await;
        EndReason::TakenOver(key)
    }

    /// Names the connection by its RTMP variant in its log span and gauge,
    /// once: at the end of the handshake, or at the end of a connection
    /// that never finished one.
    fn record_variant(&mut self) {
        if std::mem::replace(&mut self.variant_recorded, true) {
            return;
        }
        if self.session.is_encrypted() {
            self.protocol = encrypted_variant(self.protocol);
            self.gauge.set_protocol(self.protocol);
        }
        tracing::Span::current().record("proto", self.protocol);
    }

    /// Batches reads while publishing, and only then (commands and players
    /// are answered at once).
    fn update_batching(&mut self) {
        let want =
            self.publishing.is_some() && !self.is_playing() && !self.config.read_batch.is_zero();
        if want != self.batching {
            if let Some(c) = self.coalescer {
                match c.set_batching(want) {
                    Ok(()) => self.batching = want,
                    Err(e) => {
                        warn!("could not change the socket's receive low-water mark: {e}");
                        self.coalescer = None;
                        self.batching = false;
                    }
                }
            }
        }
        // The thread's clock while batching: fast while anyone waits on the
        // stream at low latency, slower while nobody does (checked at every
        // pass, so a new player is served fast from the next tick on).
        let wanted = self
            .publishing
            .as_ref()
            .is_some_and(|p| p.guard.low_latency_wanted());
        let period = if wanted {
            self.config.read_batch
        } else {
            self.config.read_batch_unwatched
        };
        let before = self.ticks.as_ref().map(Ticks::period);
        match &self.ticks {
            Some(t) if self.batching && t.period() == period => {}
            _ if self.batching => self.ticks = Some(Ticks::subscribe(period)),
            _ => self.ticks = None,
        }
        let now = self.ticks.as_ref().map(Ticks::period);
        if now != before {
            if let Some(p) = &self.publishing {
                p.guard.set_read_period(now);
            }
        }
    }

    /// Connected, and neither publishing, playing nor awaiting a decision.
    fn is_idle_session(&self) -> bool {
        self.phase == Phase::Connected
            && self.publishing.is_none()
            && !self.is_playing()
            && self.pending.is_none()
    }

    /// Playing a live stream or a file.
    fn is_playing(&self) -> bool {
        self.playing.is_some() || self.vod.is_some()
    }

    fn next_deadline(&self, handshake_deadline: Instant) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut d = far;
        if self.phase == Phase::Handshake {
            d = d.min(handshake_deadline);
        }
        if self.is_idle_session() {
            d = d.min(self.last_active + self.config.session_idle);
        }
        if let Some(p) = &self.publishing {
            d = d.min(p.last_media + self.config.idle_timeout);
        }
        if let Some(t) = self.playing.as_ref().and_then(|p| p.give_up_at) {
            d = d.min(t);
        }
        d
    }

    fn check_timers(&mut self, handshake_deadline: Instant) -> Option<EndReason> {
        let now = Instant::now();
        let rtmp = &self.config;
        if self.phase == Phase::Handshake && now >= handshake_deadline {
            return Some(EndReason::HandshakeTimeout(rtmp.handshake_timeout));
        }
        if self.is_idle_session() && now >= self.last_active + rtmp.session_idle {
            return Some(EndReason::IdleSession(rtmp.session_idle));
        }
        if let Some(p) = &self.publishing {
            if now >= p.last_media + rtmp.idle_timeout {
                let idle = rtmp.idle_timeout;
                self.end_publish(NetStatus::PublishIdle, "No media received.");
                return Some(EndReason::IdlePublisher(idle));
            }
        }
        if let Some(p) = &self.playing {
            if p.give_up_at.is_some_and(|t| now >= t) {
                let key = p.subscriber.key().to_string();
                let sid = p.playout.stream_id;
                if !p.playout.started() {
                    self.session.reject_play(
                        sid,
                        NetStatus::PlayStreamNotFound,
                        &format!("{key} is not being published."),
                    );
                } else {
                    self.session
                        .end_play(sid, NetStatus::PlayStop, &format!("{key} ended."));
                }
                self.playing = None;
                return Some(EndReason::PlayWaitExpired(key, rtmp.play_wait));
            }
        }
        None
    }

    fn end_publish(&mut self, status: NetStatus, description: &str) -> String {
        match self.publishing.take() {
            Some(p) => {
                self.session.end_publish(p.stream_id, status, description);
                log_publish_end(&p);
                p.guard.key().to_string()
            }
            None => String::new(),
        }
    }

    fn drain_events(&mut self) -> Result<(), EndReason> {
        while self.pending.is_none() {
            let Some(ev) = self.session.poll_event() else {
                break;
            };
            self.on_session_event(ev)?;
        }
        Ok(())
    }

    /// Asks the authoriser (a webhook answers within its timeout; this
    /// connection alone waits) and answers the client.
    async fn authorise(&mut self, p: PendingAuth) {
        let req = crate::auth::Request::new(p.action, &p.app, &p.name, &p.query, self.protocol)
            .from(self.peer);
        let now = crate::timefmt::unix_secs(std::time::SystemTime::now());
        let verdict = self.ctx.auth.check(&req, now).await;
        match (p.action, verdict) {
            (Action::Publish, Verdict::Allow(grant)) => {
                self.on_publish(p.stream_id, &p.app, &p.name, &p.mode, grant)
                    .await
            }
            (Action::Play, Verdict::Allow(grant)) => {
                let name = grant.name.as_deref().unwrap_or(&p.name);
                if p.app == self.ctx.vod.settings().app {
                    let name = name.to_string();
                    self.on_vod_play(p.stream_id, &name, p.range).await
                } else {
                    self.on_play(p.stream_id, &p.app, name)
                }
            }
            (Action::Publish, Verdict::Deny(why)) => {
                crate::metrics::auth_denied("publish");
                warn!(
                    app = p.app,
                    name = self.ctx.auth.loggable_name(p.action, &p.app, &p.name),
                    "publish refused: unauthorised: {why}"
                );
                self.session.reject_publish(
                    p.stream_id,
                    NetStatus::PublishUnauthorized,
                    "Not authorised to publish this stream.",
                );
            }
            (Action::Play, Verdict::Deny(why)) => {
                crate::metrics::auth_denied("play");
                warn!(
                    app = p.app,
                    name = self.ctx.auth.loggable_name(p.action, &p.app, &p.name),
                    "play refused: unauthorised: {why}"
                );
                self.session.reject_play(
                    p.stream_id,
                    NetStatus::PlayFailed,
                    "Not authorised to play this stream.",
                );
            }
        }
    }

    /// Checks the name, then queues the request for [`Self::authorise`].
    fn ask(&mut self, p: PendingAuth) {
        let PendingAuth {
            action,
            stream_id,
            ref app,
            ref name,
            ..
        } = p;
        if let Err(why) = StreamKey::new(app, name) {
            let what = match action {
                Action::Publish => "publish",
                Action::Play => "play",
            };
            let name = self.ctx.auth.loggable_name(action, app, name);
            warn!(app, name, "{what} refused: {why}");
            match action {
                Action::Publish => self.session.reject_publish(
                    stream_id,
                    NetStatus::PublishBadName,
                    &why.to_string(),
                ),
                Action::Play => self.session.reject_play(
                    stream_id,
                    NetStatus::PlayStreamNotFound,
                    &why.to_string(),
                ),
            }
            return;
        }
        self.pending = Some(p);
    }

    fn on_session_event(&mut self, ev: ServerEvent) -> Result<(), EndReason> {
        match ev {
            ServerEvent::HandshakeDone { digest } => {
                self.record_variant();
                tracing::debug!(digest, "handshake done");
            }
            ServerEvent::Connected {
                app,
                tc_url,
                flash_ver,
            } => {
                // Encoders may put a key in the tcUrl's query: not logged.
                let tc_url = crate::rtmp::session::strip_query(&tc_url).0;
                info!(app, tc_url, flash_ver, "connected");
                self.phase = Phase::Connected;
            }
            ServerEvent::PublishRequested {
                stream_id,
                app,
                name,
                query,
                mode,
            } => {
                if vod::path_of(&self.ctx.vod.settings().app, &app, &name).is_some() {
                    let why = format!(
                        "{app} is the on-demand application (vod.app): nothing can be published to it"
                    );
                    let name = self.ctx.auth.loggable_name(Action::Publish, &app, &name);
                    warn!(app, name, "publish refused: {why}");
                    self.session
                        .reject_publish(stream_id, NetStatus::PublishBadName, &why);
                } else {
                    self.ask(PendingAuth {
                        stream_id,
                        app,
                        name,
                        query,
                        mode,
                        range: PlayRange::default(),
                        action: Action::Publish,
                    })
                }
            }
            ServerEvent::PlayRequested {
                stream_id,
                app,
                name,
                query,
                range,
            } => {
                // A file: authorised and checked by its path under vod.dir.
                let vod_app = self.ctx.vod.settings().app.clone();
                let (app, name) = match vod::path_of(&vod_app, &app, &name) {
                    Some(path) => (vod_app, path),
                    None => (app, name),
                };
                self.ask(PendingAuth {
                    stream_id,
                    app,
                    name,
                    query,
                    mode: String::new(),
                    range,
                    action: Action::Play,
                })
            }
            ServerEvent::Seek { stream_id, ms } => {
                if self.vod.as_ref().is_some_and(|v| v.stream_id == stream_id) {
                    let ms = if ms.is_finite() {
                        ms.max(0.0) as i64
                    } else {
                        0
                    };
                    self.vod_step(|v, session, now| v.seek(session, ms, now));
                    if let Some(v) = &self.vod {
                        info!(stream = v.key, to_ms = ms, at_ms = v.start_ms(), "seek");
                    }
                } else {
                    self.session
                        .seek_failed(stream_id, "A live stream cannot seek.");
                }
            }
            ServerEvent::Pause {
                stream_id, pause, ..
            } => {
                // A live stream goes on (nothing to answer).
                if self.vod.as_ref().is_some_and(|v| v.stream_id == stream_id) {
                    self.vod_step(|v, session, now| v.pause(session, pause, now));
                    if let Some(v) = &self.vod {
                        info!(
                            stream = v.key,
                            at_ms = v.position_ms,
                            "{}",
                            if pause { "paused" } else { "unpaused" }
                        );
                    }
                }
            }
            ServerEvent::StreamLengthRequested {
                stream_id,
                transaction,
                name,
                query,
            } => self.on_stream_length(stream_id, transaction, name, query),
            ServerEvent::BufferLength { millis, .. } => {
                self.buffer_ms = Some(millis);
                if let Some(v) = &mut self.vod {
                    v.set_lead(vod::lead_of(millis), Instant::now());
                }
            }
            ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            } => self.on_media(stream_id, kind, timestamp, payload),
            ServerEvent::Metadata {
                stream_id,
                metadata,
            } => self.on_metadata(stream_id, metadata),
            ServerEvent::PublishStopped { stream_id } => self.on_publish_stopped(stream_id),
            ServerEvent::PlayStopped { stream_id } => self.on_play_stopped(stream_id),
            ServerEvent::ReceiveChanged {
                stream_id,
                kind,
                enabled,
            } => self.on_receive_changed(stream_id, kind, enabled),
        }
        Ok(())
    }

    /// A publisher's audio or video message: through the FLV reader into
    /// the registry's guard, counting and throttling what is dropped.
    fn on_media(
        &mut self,
        stream_id: u32,
        kind: crate::media::MediaKind,
        timestamp: u32,
        payload: bytes::Bytes,
    ) {
        let Some(p) = self
            .publishing
            .as_mut()
            .filter(|p| p.stream_id == stream_id)
        else {
            return;
        };
        let now = Instant::now();
        p.last_media = now;
        p.ingest
            .set_arrival(now.duration_since(p.started).as_millis() as i64);
        let guard = &p.guard;
        let stats = guard.stats();
        let result = p.ingest.media(kind, timestamp, payload, |ev| {
            guard.send(ev);
        });
        stats
            .timestamp_repairs
            .store(p.ingest.repairs(), std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(None) => {}
            Ok(Some(notice)) => warn!(stream = p.guard.key().as_str(), "{notice}"),
            Err(e) => {
                p.ingest.bad_tags += 1;
                stats
                    .bad_tags
                    .store(p.ingest.bad_tags, std::sync::atomic::Ordering::Relaxed);
                // The first few, then at most one line a second with
                // the count of those not logged: a broken encoder must
                // not flood the log, however fast it sends.
                let n = p.ingest.bad_tags;
                if let Some(suppressed) = p.bad_tag_log.allow(now, n) {
                    warn!(
                        stream = p.guard.key().as_str(),
                        bad_tags = n,
                        not_logged = suppressed,
                        "dropped a bad {kind:?} tag: {e}"
                    );
                }
            }
        }
    }

    fn on_metadata(&mut self, stream_id: u32, metadata: crate::rtmp::amf0::Amf0Value) {
        if let Some(p) = self
            .publishing
            .as_mut()
            .filter(|p| p.stream_id == stream_id)
        {
            let guard = &p.guard;
            let amf0 = crate::rtmp::amf0::encode_all(std::slice::from_ref(&metadata));
            p.ingest.metadata(amf0.into(), |ev| {
                guard.send(ev);
            });
        }
    }

    fn on_publish_stopped(&mut self, stream_id: u32) {
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.stream_id == stream_id)
        {
            if let Some(p) = self.publishing.take() {
                log_publish_end(&p);
            }
        }
    }

    fn on_play_stopped(&mut self, stream_id: u32) {
        if self.vod.as_ref().is_some_and(|v| v.stream_id == stream_id) {
            if let Some(v) = self.vod.take() {
                log_vod_end(&v);
            }
        }
        if self
            .playing
            .as_ref()
            .is_some_and(|p| p.playout.stream_id == stream_id)
        {
            if let Some(p) = self.playing.take() {
                info!(
                    stream = p.subscriber.key(),
                    frames = p.playout.frames_sent,
                    dropped = p.subscriber.dropped(),
                    "play ended"
                );
            }
        }
    }

    fn on_receive_changed(&mut self, stream_id: u32, kind: crate::media::MediaKind, enabled: bool) {
        if let Some(v) = self.vod.as_mut().filter(|v| v.stream_id == stream_id) {
            match kind {
                crate::media::MediaKind::Audio => v.playout.receive_audio = enabled,
                crate::media::MediaKind::Video => v.playout.receive_video = enabled,
            }
        }
        if let Some(p) = self
            .playing
            .as_mut()
            .filter(|p| p.playout.stream_id == stream_id)
        {
            match kind {
                crate::media::MediaKind::Audio => p.playout.receive_audio = enabled,
                crate::media::MediaKind::Video => p.playout.receive_video = enabled,
            }
        }
    }

    async fn on_publish(
        &mut self,
        stream_id: u32,
        app: &str,
        name: &str,
        mode: &str,
        grant: Grant,
    ) {
        let name = match &grant.name {
            Some(renamed) => {
                // The name sent may be a secret key: only the new one is shown.
                info!(app, to = renamed, "publish renamed by the auth");
                renamed.as_str()
            }
            None => name,
        };
        let key = match StreamKey::new(app, name) {
            Ok(k) => k,
            Err(why) => {
                warn!(app, name, "publish refused: {why}");
                self.session
                    .reject_publish(stream_id, NetStatus::PublishBadName, &why.to_string());
                return;
            }
        };
        if self.publishing.is_some() {
            warn!(
                stream = key.as_str(),
                "publish refused: this connection already publishes"
            );
            self.session.reject_publish(
                stream_id,
                NetStatus::PublishBadConnection,
                "This connection already publishes a stream.",
            );
            return;
        }
        let origin = Origin::Client {
            protocol: self.protocol,
            peer: self.peer,
            mode: mode.to_string(),
        };
        let granted = Granted {
            profile: grant.profile.clone(),
            relays: grant.relays.clone(),
        };
        match self
            .ctx
            .streams
            .publish(key.clone(), origin, &granted)
            .await
        {
            Ok(guard) => {
                self.last_key = key.to_string();
                self.session.accept_publish(stream_id);
                let now = Instant::now();
                self.publishing = Some(Publishing {
                    stream_id,
                    guard,
                    ingest: Ingest::new(),
                    bad_tag_log: LogThrottle::default(),
                    last_media: now,
                    started: now,
                    _profile: self
                        .ctx
                        .auth
                        .publish_profile(&key, grant.profile.as_deref()),
                });
            }
            Err(PublishError::Hub(e)) => {
                warn!(stream = key.as_str(), "publish refused: {e}");
                self.session.reject_publish(
                    stream_id,
                    NetStatus::PublishBadName,
                    &format!("{key} is already being published."),
                );
            }
            Err(PublishError::Cluster(e)) => {
                warn!(stream = key.as_str(), "publish refused: {e}");
                let (status, description) = match &e {
                    ClaimError::Owned { owner, .. } => (
                        NetStatus::PublishBadName,
                        format!("{key} is already being published on node {owner}."),
                    ),
                    ClaimError::Unreachable(_) => (
                        NetStatus::PublishFailed,
                        "The cluster store cannot be reached: publishing is refused for now."
                            .to_string(),
                    ),
                };
                self.session.reject_publish(stream_id, status, &description);
            }
        }
    }

    fn on_play(&mut self, stream_id: u32, app: &str, name: &str) {
        let key = match StreamKey::new(app, name) {
            Ok(k) => k,
            Err(why) => {
                warn!(app, name, "play refused: {why}");
                self.session.reject_play(
                    stream_id,
                    NetStatus::PlayStreamNotFound,
                    &why.to_string(),
                );
                return;
            }
        };
        if self.is_playing() {
            self.session.reject_play(
                stream_id,
                NetStatus::PlayFailed,
                "This connection already plays a stream.",
            );
            return;
        }
        let wait = self.config.play_wait;
        let subscriber = self.ctx.hub.subscribe(&key);
        if !subscriber.is_live() && wait.is_zero() {
            info!(stream = key.as_str(), "play refused: not published");
            self.session.reject_play(
                stream_id,
                NetStatus::PlayStreamNotFound,
                &format!("{key} is not being published."),
            );
            return;
        }
        info!(
            stream = key.as_str(),
            live = subscriber.is_live(),
            "play requested"
        );
        self.last_key = key.to_string();
        let peer = self.session.peer_capabilities();
        if peer.enhanced {
            info!(stream = key.as_str(), codecs = ?peer.codecs(), "Enhanced RTMP player");
        }
        // Play.Start goes out once the first PublisherStarted event (which a
        // live stream's queue already holds) shows a track the player takes.
        self.playing = Some(Playing {
            subscriber,
            playout: Playout::new(stream_id, peer.codecs(), peer.enhanced),
            give_up_at: Some(Instant::now() + wait),
        });
    }

    /// Runs one step of the on-demand play (sending what is due, a seek,
    /// a pause) at the current time; a play that failed (codecs) ends.
    fn vod_step(
        &mut self,
        step: impl FnOnce(&mut vod::VodPlay, &mut ServerSession, Instant) -> vod::Step,
    ) {
        let Some(v) = self.vod.as_mut() else {
            return;
        };
        let was_finished = v.is_finished();
        match step(v, &mut self.session, Instant::now()) {
            vod::Step::Wait(_) => {
                if !was_finished && v.is_finished() {
                    info!(
                        stream = v.key,
                        frames = v.playout.frames_sent,
                        at_ms = v.position_ms,
                        "play complete"
                    );
                }
            }
            vod::Step::Failed(why) => {
                info!(stream = v.key, "play refused: {why}");
                self.vod = None;
            }
        }
    }

    /// A play in the on-demand application, authorised: the file `path`
    /// read (off the runtime's threads, by the library) and played from
    /// `range`'s start.
    async fn on_vod_play(&mut self, stream_id: u32, path: &str, range: PlayRange) {
        let key = format!("{}/{path}", self.ctx.vod.settings().app);
        if self.is_playing() {
            warn!(
                stream = key,
                "play refused: this connection already plays a stream"
            );
            self.session.reject_play(
                stream_id,
                NetStatus::PlayFailed,
                "This connection already plays a stream.",
            );
            return;
        }
        self.last_key = key.clone();
        let library = Arc::clone(&self.ctx.vod);
        let title = match library.title(path).await {
            Ok(t) => t,
            Err(crate::vod::VodError::NotFound) => {
                info!(stream = key, "play refused: no such file under vod.dir");
                self.session.reject_play(
                    stream_id,
                    NetStatus::PlayStreamNotFound,
                    &format!("{path} was not found."),
                );
                return;
            }
            Err(crate::vod::VodError::Forbidden(why)) => {
                warn!(stream = key, "play refused: {why}");
                self.session.reject_play(
                    stream_id,
                    NetStatus::PlayStreamNotFound,
                    &format!("{path} was not found."),
                );
                return;
            }
            Err(e) => {
                warn!(stream = key, "play refused: the file does not play: {e}");
                self.session.reject_play(
                    stream_id,
                    NetStatus::PlayFailed,
                    &format!("{path} does not play: {e}"),
                );
                return;
            }
        };
        let peer = self.session.peer_capabilities();
        let playout = Playout::new(stream_id, peer.codecs(), peer.enhanced);
        let lead = self.buffer_ms.map_or(vod::DEFAULT_LEAD, vod::lead_of);
        let now = Instant::now();
        let mut play = vod::VodPlay::new(
            key.clone(),
            title,
            playout,
            range.start_ms(),
            range.duration_ms(),
            lead,
            now,
        );
        info!(
            stream = key,
            start_ms = range.start_ms(),
            duration_ms = range.duration_ms(),
            from_ms = play.start_ms(),
            length_ms = play.title().duration_ms,
            lead_ms = lead.as_millis() as u64,
            "on-demand play requested"
        );
        match play.begin(&mut self.session, now) {
            vod::Step::Failed(why) => info!(stream = key, "play refused: {why}"),
            vod::Step::Wait(_) => {
                if play.playout.started() {
                    info!(stream = key, "play started");
                }
                self.vod = Some(play);
            }
        }
    }

    /// `getStreamLength`: a file's duration (authorised as a play of it
    /// would be), the playing file's at once, 0 for a live stream.
    fn on_stream_length(&mut self, stream_id: u32, transaction: f64, name: String, query: String) {
        let vod_app = self.ctx.vod.settings().app.clone();
        let Some(path) = vod::path_of(&vod_app, self.session.app(), &name) else {
            self.session
                .answer_stream_length(stream_id, transaction, 0.0);
            return;
        };
        if let Some(v) = self
            .vod
            .as_ref()
            .filter(|v| v.key == format!("{vod_app}/{path}"))
        {
            let secs = v.title().duration_ms as f64 / 1000.0;
            self.session
                .answer_stream_length(stream_id, transaction, secs);
        } else if self.length_requests.len() < MAX_LENGTH_REQUESTS {
            self.length_requests.push_back(LengthRequest {
                stream_id,
                transaction,
                path,
                query,
            });
        } else {
            self.session
                .answer_stream_length(stream_id, transaction, 0.0);
        }
    }

    /// Looks up a file's duration for `getStreamLength` (0 if it may not be
    /// played, or does not play).
    async fn answer_length(&mut self, r: LengthRequest) {
        let app = self.ctx.vod.settings().app.clone();
        let secs = if StreamKey::new(&app, &r.path).is_err() {
            0.0
        } else {
            let req =
                crate::auth::Request::new(Action::Play, &app, &r.path, &r.query, self.protocol)
                    .from(self.peer);
            let now = crate::timefmt::unix_secs(std::time::SystemTime::now());
            match self.ctx.auth.check(&req, now).await {
                Verdict::Allow(grant) => {
                    let path = grant.name.as_deref().unwrap_or(&r.path);
                    match self.ctx.vod.title(path).await {
                        Ok(t) => t.duration_ms as f64 / 1000.0,
                        Err(_) => 0.0,
                    }
                }
                Verdict::Deny(_) => 0.0,
            }
        };
        self.session
            .answer_stream_length(r.stream_id, r.transaction, secs);
    }

    fn on_stream_event(&mut self, ev: StreamEvent) {
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        let wait = self.config.play_wait;
        match &ev {
            StreamEvent::PublisherStarted => p.give_up_at = None,
            StreamEvent::PublisherStopped => p.give_up_at = Some(Instant::now() + wait),
            _ => {}
        }
        let was_started = p.playout.started();
        match p.playout.send(&mut self.session, &ev) {
            Sent::Ok if !was_started && p.playout.started() => {
                info!(stream = p.subscriber.key(), "play started");
            }
            Sent::Ok => {}
            Sent::Failed(why) => {
                info!(stream = p.subscriber.key(), "play refused: {why}");
                self.playing = None;
            }
        }
    }
}

async fn recv_opt(sub: Option<&Subscriber>) -> Result<StreamEvent, Closed> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(t: Option<&Ticks>) {
    match t {
        Some(t) => t.next().await,
        None => std::future::pending().await,
    }
}

async fn kicked_opt(p: Option<&mut PublishGuard>) {
    match p {
        Some(p) => p.kicked().await,
        None => std::future::pending().await,
    }
}

/// Lets the first few of a run of warnings through, then at most one a
/// second, so a peer cannot flood the log however fast it sends.
#[derive(Debug, Default)]
struct LogThrottle {
    last: Option<Instant>,
    /// Warnings not logged since the last line.
    suppressed: u64,
}

impl LogThrottle {
    /// Warnings always logged at the start of a run.
    const FIRST: u64 = 5;
    const EVERY: Duration = Duration::from_secs(1);

    /// Whether the `n`th warning (counting from 1) is logged at `now`;
    /// `Some(k)`: yes, after `k` that were not.
    fn allow(&mut self, now: Instant, n: u64) -> Option<u64> {
        let due = n <= Self::FIRST || self.last.is_none_or(|t| now >= t + Self::EVERY);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod timer_tests;

#[cfg(test)]
mod tests {
    use super::LogThrottle;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn bad_tag_warnings_are_limited_by_time() {
        let mut t = LogThrottle::default();
        let t0 = Instant::now();
        // The first five pass, then 10,000 within one second: one more line.
        let logged: Vec<u64> = (1..=10_005u64)
            .filter_map(|n| t.allow(t0 + Duration::from_micros(n * 50), n))
            .collect();
        assert_eq!(logged, vec![0, 0, 0, 0, 0]);
        // A second later the next one is logged, with the count skipped.
        assert_eq!(
            t.allow(t0 + Duration::from_millis(1001), 10_006),
            Some(10_000)
        );
        assert_eq!(t.allow(t0 + Duration::from_millis(1500), 10_007), None);
        assert_eq!(t.allow(t0 + Duration::from_millis(2100), 10_008), Some(1));
    }
}
