//! The RTMFP listener: one UDP socket, the stateless handshake, and a task
//! per session that turns the session's flows into an RTMP byte stream for
//! the connection driver (`rtmfp::bridge`), as the RTMPT tunnel does with
//! HTTP requests. Everything of the protocol is in the sans-I/O `rtmfp`
//! core; this module owns the socket, the clock, the tasks and the limits.
//!
//! Datagrams for an open session go to its task through a bounded queue
//! (full: dropped, as the network may; the peer retransmits). A session
//! changes address (mobility) only on a packet that opened under its keys.

mod settings;

pub use settings::Settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use super::per_ip::PerIpLimit;
use super::Handler;
use crate::rtmfp::bridge::{tc_metadata, Bridge};
use crate::rtmfp::handshake::{open_startup, HelloLimiter, Responder};
use crate::rtmfp::packet::Chunk;
use crate::rtmfp::recv::RecvLimits;
use crate::rtmfp::session::{Event, Session, SessionConfig};
use crate::rtmfp::{crypto, session};

/// The largest datagram read: RTMFP packets stay under 1280 bytes, the
/// startup ones under 4.3 KB.
const MAX_DATAGRAM: usize = 8192;
/// Datagrams queued for one session's task.
const SESSION_QUEUE: usize = 256;
/// How long a session whose RTMP side ended may take to deliver what that
/// side sent before it closes anyway.
const DRAIN_MS: u64 = 10_000;
/// The byte stream between a session and its RTMP connection driver.
const PIPE_BYTES: usize = 256 << 10;

/// What the listener's sessions are built with.
fn session_config(s: &Settings) -> SessionConfig {
    SessionConfig {
        max_recv_flows: s.max_flows_per_session,
        recv: RecvLimits {
            buffer: s.flow_buffer_bytes,
            fragments: (s.flow_buffer_bytes / 512).max(64),
            message: s.max_message_bytes,
            window: 1 << 16,
        },
        send_buffer: s.send_buffer_bytes,
        keepalive_ms: s.keepalive.as_millis() as u64,
        idle_timeout_ms: s.idle_timeout.as_millis() as u64,
    }
}

struct Entry {
    tx: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    peer: SocketAddr,
    /// The IIKeying's session key component, hashed, and the RIKeying that
    /// answered it: a repeated IIKeying gets the same answer, no new DH.
    skic: [u8; 32],
    rikeying: Vec<u8>,
}

/// Binds the RTMFP socket.
pub async fn bind(settings: &Settings) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(settings.listen).await
}

/// Serves RTMFP on `socket` until the task is dropped: each session's RTMP
/// side is handed to `handler` as protocol `rtmfp`.
pub async fn serve(socket: UdpSocket, settings: Arc<Settings>, handler: Handler) {
    let socket = Arc::new(socket);
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let start = Instant::now();
    let responder = Responder::new();
    let mut limiter = HelloLimiter::new(
        settings.hello_bytes_per_sec_per_ip,
        settings.hello_bytes_per_sec,
    );
    let per_ip = PerIpLimit::new(settings.max_sessions_per_ip, settings.max_sessions);
    let mut sessions: HashMap<u32, Entry> = HashMap::new();
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<u32>();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on Linux: not fatal.
                    debug!(listener = local, "rtmfp recv: {e}");
                    continue;
                }
            },
            Some(id) = gone_rx.recv() => {
                sessions.remove(&id);
                continue;
            }
        };
        let datagram = &mut buf[..n];
        let Some(id) = crypto::session_id(datagram) else {
            continue;
        };
        let now = start.elapsed();
        if id != 0 {
            if let Some(e) = sessions.get(&id) {
                // Full: dropped, as the network may.
                let _ = e.tx.try_send((datagram.to_vec(), from));
            }
            continue;
        }
        let chunk = match open_startup(datagram) {
            Ok(c) => c,
            Err(e) => {
                debug!(%from, "rtmfp startup packet dropped: {e}");
                continue;
            }
        };
        let ts = session::timestamp(now.as_millis() as u64);
        match chunk {
            Chunk::IHello { epd, tag } => {
                match responder.hello(now.as_secs(), ts, &from, epd, tag) {
                    Ok(rhello) => {
                        if limiter.allow(now.as_millis() as u64, from.ip(), rhello.len()) {
                            let _ = socket.send_to(&rhello, from).await;
                        } else {
                            debug!(%from, "rtmfp IHello not answered: hello rate limit");
                        }
                    }
                    Err(e) => debug!(%from, "rtmfp IHello not answered: {e}"),
                }
            }
            Chunk::IIKeying {
                session_id,
                cookie,
                cert,
                skic,
                ..
            } => {
                let digest: [u8; 32] = Sha256::digest(skic).into();
                if let Some(e) = sessions
                    .values()
                    .find(|e| e.peer == from && e.skic == digest)
                {
                    let _ = socket.send_to(&e.rikeying, from).await;
                    continue;
                }
                let permit = match per_ip.try_acquire(from.ip()) {
                    Ok(p) => p,
                    Err(why) => {
                        warn!(peer = %from, listener = local, "rtmfp session refused: {why}");
                        continue;
                    }
                };
                if sessions.len() >= settings.max_sessions {
                    warn!(peer = %from, listener = local, max_sessions = settings.max_sessions, "rtmfp session refused: limit reached");
                    continue;
                }
                let accepted =
                    match responder.keying(now.as_secs(), &from, session_id, cookie, cert, skic) {
                        Ok(a) => a,
                        Err(e) => {
                            debug!(peer = %from, "rtmfp IIKeying refused: {e}");
                            continue;
                        }
                    };
                let near_id = loop {
                    let id = fastrand::u32(1..);
                    if !sessions.contains_key(&id) {
                        break id;
                    }
                };
                let rikeying = Responder::rikeying_packet(ts, &accepted, near_id);
                let _ = socket.send_to(&rikeying, from).await;
                info!(peer = %from, group = accepted.group as u8, "rtmfp session open");
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                sessions.insert(
                    near_id,
                    Entry {
                        tx,
                        peer: from,
                        skic: digest,
                        rikeying,
                    },
                );
                let session = Session::new(
                    false,
                    accepted.far_session_id,
                    accepted.keys,
                    session_config(&settings),
                    now.as_millis() as u64,
                );
                let task = SessionTask {
                    socket: Arc::clone(&socket),
                    peer: from,
                    session,
                    inbox: Inbox::Listener(rx),
                    start,
                    send_limit: settings.send_buffer_bytes,
                    media_lifetime: Some(settings.media_lifetime.as_millis() as u64),
                    peer_finished: false,
                };
                let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
                tokio::spawn(handler(Box::new(theirs), from, "rtmfp"));
                let gone = gone_tx.clone();
                let span = tracing::info_span!("rtmfp", peer = %from);
                tokio::spawn(
                    async move {
                        task.run(ours, Bridge::for_server()).await;
                        drop(permit);
                        let _ = gone.send(near_id);
                    }
                    .instrument(span),
                );
            }
            _ => {}
        }
    }
}

/// Where a session's datagrams come from: the listener's queue (server),
/// or its own socket (client).
enum Inbox {
    Listener(mpsc::Receiver<(Vec<u8>, SocketAddr)>),
    Own(Arc<UdpSocket>, Vec<u8>),
}

impl Inbox {
    async fn recv(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        match self {
            Inbox::Listener(rx) => rx.recv().await,
            Inbox::Own(socket, buf) => loop {
                match socket.recv_from(buf).await {
                    Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
                    // ICMP errors (the server went away) surface here.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(_) => return None,
                }
            },
        }
    }

    /// A datagram already waiting, without waiting for one.
    fn try_recv(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        match self {
            Inbox::Listener(rx) => rx.try_recv().ok(),
            Inbox::Own(socket, buf) => match socket.try_recv_from(buf) {
                Ok((n, from)) => Some((buf[..n].to_vec(), from)),
                Err(_) => None,
            },
        }
    }
}

/// Datagrams a session takes in one wake-up before it answers: what came
/// together is acknowledged and handed on together.
const DATAGRAMS_PER_WAKE: usize = 32;

struct SessionTask {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    session: Session,
    inbox: Inbox,
    start: Instant,
    /// Bytes the sending flows may hold before the RTMP side is no longer read.
    send_limit: usize,
    /// Audio and video abandoned this long after being queued (`None`:
    /// every frame is delivered).
    media_lifetime: Option<u64>,
    /// The peer finished its NetConnection flow: the RTMP side is told the
    /// connection ended, once what came before is written.
    peer_finished: bool,
}

impl SessionTask {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Runs the session with `local`, the RTMP side's end of its pipe,
    /// through `bridge`, to the session's end.
    async fn run(mut self, local: tokio::io::DuplexStream, mut bridge: Bridge) {
        let (mut rd, mut wr) = tokio::io::split(local);
        let mut flows: HashMap<u32, u64> = HashMap::new();
        let mut local_buf = vec![0u8; 64 << 10];
        let mut local_open = true;
        // When the RTMP side ended: the flows drain, then the session closes.
        let mut draining_until: Option<u64> = None;
        let mut dropped_media = 0u64;
        let reason = loop {
            if let Some(until) = draining_until {
                let now = self.now();
                if self.session.all_delivered() || now >= until {
                    self.session.close(now);
                    draining_until = Some(u64::MAX);
                }
            }
            // The session's events into the bridge, what that gives the RTMP
            // side, then what the peer is owed.
            if let Some(reason) = self.drain_events(&mut bridge) {
                break reason;
            }
            let out = bridge.take_to_local();
            if !out.is_empty() && local_open {
                if let Err(e) = wr.write_all(&out).await {
                    debug!("rtmfp: the RTMP side is gone ({e}): closing");
                    local_open = false;
                    draining_until.get_or_insert(self.drain(self.now()));
                }
            }
            if std::mem::take(&mut self.peer_finished) {
                debug!("rtmfp: the peer finished its NetConnection flow");
                let _ = wr.shutdown().await;
            }
            let now = self.now();
            while let Some(d) = self.session.poll_transmit(now) {
                tracing::trace!(len = d.len(), now, "rtmfp out");
                let _ = self.socket.send_to(&d, self.peer).await;
            }
            let buffered: usize = flows.values().map(|&f| self.session.buffered(f)).sum();
            let room = buffered < self.send_limit;
            let wake = self
                .session
                .poll_timeout()
                .map(|ms| self.start + Duration::from_millis(ms));
            tokio::select! {
                d = self.inbox.recv() => {
                    let Some(first) = d else { break "socket gone".to_string() };
                    let mut next = Some(first);
                    let mut taken = 0;
                    while let Some((mut d, from)) = next.take() {
                        tracing::trace!(len = d.len(), now = self.now(), "rtmfp in");
                        let ok = self.session.handle_datagram(self.now(), &mut d).is_ok();
                        if ok && from != self.peer {
                            info!(from = %self.peer, to = %from, "rtmfp session moved");
                            self.peer = from;
                        }
                        taken += 1;
                        if taken < DATAGRAMS_PER_WAKE {
                            next = self.inbox.try_recv();
                        }
                    }
                }
                r = rd.read(&mut local_buf), if local_open && room => {
                    match r {
                        Ok(0) | Err(_) => {
                            debug!("rtmfp: the RTMP side ended: delivering what it sent, then closing");
                            local_open = false;
                            draining_until.get_or_insert(self.drain(self.now()));
                        }
                        Ok(n) => {
                            tracing::trace!(n, now = self.now(), "rtmfp local");
                            if let Err(e) = bridge.from_local(&local_buf[..n]) {
                                warn!("rtmfp: the RTMP side's bytes: {e}");
                                local_open = false;
                                draining_until.get_or_insert(self.drain(self.now()));
                            }
                            self.send_outbound(&mut bridge, &mut flows, &mut dropped_media);
                        }
                    }
                }
                _ = sleep_until(wake) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        };
        let s = self.session.stats;
        info!(
            packets_in = s.packets_in,
            packets_out = s.packets_out,
            bad_packets = s.bad_packets,
            retransmitted_bytes = s.retransmitted_bytes,
            timeouts = s.timeouts,
            dropped_media,
            rtt_ms = self.session.rtt_ms(),
            "rtmfp session closed: {reason}"
        );
    }

    /// Closes the sending flows and returns until when they may drain.
    fn drain(&mut self, now: u64) -> u64 {
        self.session.close_flows();
        now + DRAIN_MS
    }

    /// Session events into the bridge; `Some` when the session ended.
    fn drain_events(&mut self, bridge: &mut Bridge) -> Option<String> {
        while let Some(e) = self.session.poll_event() {
            if !matches!(e, Event::Message { .. }) {
                tracing::trace!(?e, "rtmfp event");
            }
            match e {
                Event::FlowOpened {
                    flow,
                    metadata,
                    association,
                } => match bridge.flow_opened(flow, &metadata, association) {
                    Ok(stream_id) => {
                        debug!(
                            flow,
                            stream_id,
                            ?association,
                            "rtmfp: the peer opened a flow"
                        )
                    }
                    Err(e) => debug!(flow, "rtmfp flow ignored: {e}"),
                },
                Event::Message { flow, data } => {
                    if let Err(e) = bridge.from_peer(flow, &data) {
                        warn!(flow, "rtmfp message refused: {e}");
                        self.session.close(self.now());
                    }
                }
                Event::FlowFinished { flow } => {
                    if bridge.flow_finished(flow) {
                        self.peer_finished = true;
                    }
                }
                Event::SendFlowRejected { flow, code } => {
                    debug!(flow, code, "rtmfp: the peer refused a flow");
                }
                Event::Closed { reason } => return Some(format!("{reason:?}")),
            }
        }
        None
    }

    /// The RTMP side's messages onto flows: one per stream, opened on first
    /// use with the association the bridge gives then. One flow keeps a stream's
    /// messages in their RTMP order (a status after the media before it);
    /// audio and video carry a deadline, so a late frame is abandoned
    /// rather than holding the ones after it.
    fn send_outbound(
        &mut self,
        bridge: &mut Bridge,
        flows: &mut HashMap<u32, u64>,
        dropped_media: &mut u64,
    ) {
        let now = self.now();
        while let Some(o) = bridge.poll_outbound() {
            let key = o.stream_id;
            let flow = *flows.entry(key).or_insert_with(|| {
                let flow = self
                    .session
                    .open_flow(&tc_metadata(o.stream_id), o.association);
                debug!(flow, stream_id = o.stream_id, association = ?o.association, "rtmfp: flow opened to the peer");
                bridge.own_flow_opened(flow, o.association);
                flow
            });
            let deadline = self.media_lifetime.filter(|_| o.media).map(|l| now + l);
            let queued = if o.media {
                self.session.send_media(now, flow, o.message, deadline)
            } else {
                self.session.send(flow, o.message, deadline)
            };
            if queued.is_err() {
                if o.media {
                    *dropped_media += 1;
                } else {
                    warn!("rtmfp: a control message did not fit the flow's buffer");
                    self.session.close(now);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long the client waits for the first answer before sending its
/// IHello or IIKeying again; then half as long again each time.
const CLIENT_RETRY: Duration = Duration::from_secs(1);

/// Opens an RTMFP session to `server` for `url` (`rtmfp://host/app`) and
/// returns an RTMP byte stream over it: the caller runs an RTMP client
/// (`rtmp::ClientSession`) on it as on a TCP connection, its messages
/// travel on the session's flows. `media_lifetime`: how long audio and
/// video may wait to be delivered before they are abandoned (`None`: every
/// frame is delivered). Fails when no session opens within `timeout`.
pub async fn connect(
    server: SocketAddr,
    url: &str,
    media_lifetime: Option<Duration>,
    timeout: Duration,
) -> std::io::Result<tokio::io::DuplexStream> {
    use crate::rtmfp::crypto::DhGroup;
    use crate::rtmfp::handshake::{Initiator, Progress};
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let start = Instant::now();
    let deadline = start + timeout;
    let ts = |start: Instant| session::timestamp(start.elapsed().as_millis() as u64);
    let mut init = Initiator::new(url, fastrand::u32(1..), &DhGroup::ALL);
    let mut fell_back = false;
    let mut packet = init.hello(ts(start));
    let mut retry = CLIENT_RETRY;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut resend_at = Instant::now();
    let (far_session_id, keys) = loop {
        if Instant::now() >= resend_at {
            socket.send(&packet).await?;
            resend_at = Instant::now() + retry;
            retry = retry * 3 / 2;
        }
        let wait = resend_at.min(deadline);
        let n = match tokio::time::timeout_at(wait, socket.recv(&mut buf)).await {
            Err(_) if Instant::now() >= deadline => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no RTMFP session with {server} within {timeout:?}"),
                ))
            }
            Err(_) => continue,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(n)) => n,
        };
        let Ok(chunk) = open_startup(&mut buf[..n]) else {
            continue;
        };
        match init.on_chunk(ts(start), &chunk) {
            Ok(Progress::Send(p)) => {
                packet = p;
                retry = CLIENT_RETRY;
                resend_at = Instant::now();
            }
            Ok(Progress::Open {
                far_session_id,
                keys,
                ..
            }) => break (far_session_id, keys),
            // MonaServer offers groups 2, 5 and 14 but answers in group 2
            // whatever was selected: start again selecting group 2, once.
            Err(crate::rtmfp::Error::NoCommonGroup) if !fell_back => {
                debug!(%server, "rtmfp handshake: the server answered in another DH group; again with group 2");
                fell_back = true;
                init = Initiator::new(url, fastrand::u32(1..), &[DhGroup::Modp1024]);
                packet = init.hello(ts(start));
                retry = CLIENT_RETRY;
                resend_at = Instant::now();
            }
            Err(e) => debug!(%server, "rtmfp handshake: {e}"),
        }
    };
    let socket = Arc::new(socket);
    let session = Session::new(
        true,
        far_session_id,
        *keys,
        SessionConfig::default(),
        start.elapsed().as_millis() as u64,
    );
    let task = SessionTask {
        socket: Arc::clone(&socket),
        peer: server,
        session,
        inbox: Inbox::Own(socket, vec![0u8; MAX_DATAGRAM]),
        start,
        send_limit: SessionConfig::default().send_buffer,
        media_lifetime: media_lifetime.map(|d| d.as_millis() as u64),
        peer_finished: false,
    };
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let span = tracing::info_span!("rtmfp_client", peer = %server);
    tokio::spawn(task.run(ours, Bridge::for_client()).instrument(span));
    Ok(theirs)
}
