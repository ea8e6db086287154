//! RTMPT: RTMP tunnelled in HTTP requests. Each tunnel session runs the
//! ordinary connection driver (the `transport::Handler` it is given) over an in-memory
//! [`pipe`], so a tunnelled publish or play is the same as any other; the
//! HTTP handlers (`http::rtmpt`) only parse requests and call
//! [`Tunnels::open`] and [`Tunnels::request`].
//!
//! Limits: the number of sessions, in all and per client address, each
//! request body and all bodies together (`http.body_budget_bytes`), the
//! bytes held for a client that does not poll, and inactivity (a reaper
//! closes sessions that sent no request for `rtmpt.session_timeout_secs`).
//! A request is admitted ([`Tunnels::admit`]: session id, sequence number)
//! before its body is read.

pub mod pipe;
pub mod protocol;
mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Instant;
use tracing::{info, warn, Instrument};

use super::budget::ByteBudget;
use super::per_ip::{IpPermit, PerIpLimit, PerIpRefusal};
use pipe::Pipe;
use protocol::{Command, SeqError, TunnelState};
pub use settings::Settings;

/// How long a `/send` waits for the session to digest its bytes before
/// replying (normally microseconds; a bound, not a delay).
const SETTLE_LIMIT: Duration = Duration::from_secs(1);
/// How long a `/close` waits for the session to finish its input.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// Why a tunnel request was refused. Nothing else happens: no byte of a
/// refused request reaches the RTMP session.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("unknown or ended RTMPT session")]
    UnknownSession,
    #[error("too many RTMPT sessions (rtmpt.max_sessions = {0})")]
    TooManySessions(usize),
    #[error("too many RTMPT sessions from this address: {0} (rtmpt.max_sessions_per_ip)")]
    TooManyFromAddress(PerIpRefusal),
    #[error("{0}")]
    Sequence(#[from] SeqError),
    #[error("session is not keeping up: {0} bytes still unread")]
    Backlog(usize),
    #[error("no secure random source for a session id")]
    NoRandom,
}

struct Session {
    id: String,
    peer: SocketAddr,
    proto: &'static str,
    pipe: Arc<Pipe>,
    /// Held for the whole of a request (from before its body is read): one
    /// request per session at a time, in sequence order.
    state: Arc<tokio::sync::Mutex<TunnelState>>,
    /// The session's slot under `rtmpt.max_sessions_per_ip`.
    _ip_permit: IpPermit,
    /// The last request's time, readable by the reaper without waiting.
    last_seen: Mutex<Instant>,
}

impl Session {
    fn short_id(&self) -> &str {
        &self.id[..8]
    }
}

/// The open tunnel sessions of one server (shared by HTTP and HTTPS).
pub struct Tunnels {
    /// Serves each session's byte stream (the RTMP connection driver).
    handler: crate::transport::Handler,
    config: Settings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    per_ip: PerIpLimit,
    /// Request bodies buffered by every connection (`http.body_budget_bytes`).
    bodies: ByteBudget,
}

/// A tunnel request whose session and sequence number were accepted, its
/// body not read yet; it holds the session's request lock.
pub struct Admitted<'a> {
    tunnels: &'a Tunnels,
    session: Arc<Session>,
    state: tokio::sync::OwnedMutexGuard<TunnelState>,
    cmd: Command,
    seq: u64,
}

impl Tunnels {
    /// A session table, with its reaper task (which ends with the table).
    /// `body_budget_bytes` is `http.body_budget_bytes`.
    pub fn new(
        handler: crate::transport::Handler,
        config: Settings,
        body_budget_bytes: usize,
    ) -> Arc<Tunnels> {
        let per_ip = PerIpLimit::new(config.max_sessions_per_ip, config.max_sessions);
        let bodies = ByteBudget::new(body_budget_bytes);
        let tunnels = Arc::new(Tunnels {
            handler,
            config,
            sessions: Mutex::new(HashMap::new()),
            per_ip,
            bodies,
        });
        let weak = Arc::downgrade(&tunnels);
        let period = (tunnels.config.session_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(reaper(weak, period));
        tunnels
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        crate::locks::lock(&self.sessions)
    }

    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// The budget request bodies are buffered under.
    pub fn body_budget(&self) -> &ByteBudget {
        &self.bodies
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `POST /open/1`: a new session and its RTMP connection; returns the id.
    pub fn open(&self, peer: SocketAddr, proto: &'static str) -> Result<String, TunnelError> {
        let mut table = self.table();
        if table.len() >= self.config.max_sessions {
            warn!(%peer, proto, max_sessions = self.config.max_sessions, "RTMPT open refused: too many sessions");
            return Err(TunnelError::TooManySessions(self.config.max_sessions));
        }
        let ip_permit = match self.per_ip.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                warn!(%peer, client = %peer.ip(), proto, max_sessions_per_ip = self.config.max_sessions_per_ip, "RTMPT open refused: per-address limit reached ({why})");
                return Err(TunnelError::TooManyFromAddress(why));
            }
        };
        let id = loop {
            let Some(id) = new_session_id() else {
                warn!(%peer, proto, "RTMPT open refused: no secure random source");
                return Err(TunnelError::NoRandom);
            };
            if !table.contains_key(&id) {
                break id;
            }
        };
        let (pipe, io) = Pipe::new(self.config.max_body_bytes);
        let session = Arc::new(Session {
            id: id.clone(),
            peer,
            proto,
            pipe,
            state: Arc::new(tokio::sync::Mutex::new(TunnelState::new(Instant::now()))),
            _ip_permit: ip_permit,
            last_seen: Mutex::new(Instant::now()),
        });
        info!(%peer, proto, session = session.short_id(), "RTMPT session opened");
        let span = tracing::info_span!("rtmpt", session = session.short_id());
        tokio::spawn((self.handler)(Box::new(io), peer, proto).instrument(span));
        table.insert(id.clone(), session);
        Ok(id)
    }

    /// `/send`, `/idle` or `/close` of session `id` with sequence number
    /// `seq`. Returns the reply body: the polling-interval byte, then the
    /// bytes queued for the client. A refusal is for the caller to log (it
    /// knows who asked).
    pub async fn request(
        &self,
        cmd: Command,
        id: &str,
        seq: u64,
        body: Bytes,
    ) -> Result<Bytes, TunnelError> {
        self.admit(cmd, id, seq).await?.finish(body).await
    }

    /// The first half of [`request`](Self::request): the session must exist
    /// and take `seq`, before anything of the request's body is read (a
    /// request to an unknown session costs no body buffer). Waits for the
    /// session's previous request to finish.
    pub async fn admit(
        &self,
        cmd: Command,
        id: &str,
        seq: u64,
    ) -> Result<Admitted<'_>, TunnelError> {
        let session = self
            .table()
            .get(id)
            .cloned()
            .ok_or(TunnelError::UnknownSession)?;
        let state = Arc::clone(&session.state).lock_owned().await;
        state.check(seq)?;
        Ok(Admitted {
            tunnels: self,
            session,
            state,
            cmd,
            seq,
        })
    }
}

impl Admitted<'_> {
    /// The second half of [`Tunnels::request`], with the body.
    pub async fn finish(self, body: Bytes) -> Result<Bytes, TunnelError> {
        let Admitted {
            tunnels,
            session,
            mut state,
            cmd,
            seq,
        } = self;
        let data: &[u8] = if cmd.carries_data() { &body } else { &[] };
        let status = session.pipe.status();
        if status.pending_input + data.len() > tunnels.config.max_body_bytes {
            return Err(TunnelError::Backlog(status.pending_input));
        }
        state.accept(cmd, seq, Instant::now())?;
        *crate::locks::lock(&session.last_seen) = Instant::now();
        let pipe = &session.pipe;
        match cmd {
            Command::Send => {
                if pipe.push(data) && !data.is_empty() {
                    pipe.wait_settled(SETTLE_LIMIT).await;
                }
            }
            Command::Idle => {}
            Command::Close => {
                // Everything the client sent before is processed (a
                // publisher's last frames), then the connection ends.
                pipe.close_input();
                pipe.wait_gone(CLOSE_LIMIT).await;
                tunnels.remove(&session.id);
                info!(peer = %session.peer, proto = session.proto, session = session.short_id(), "RTMPT session closed by the client");
            }
        }
        let out = if cmd == Command::Close {
            Bytes::new()
        } else {
            pipe.take_output()
        };
        let gone = pipe.status().session_gone;
        let interval = state.reply_interval(data.len(), out.len(), gone || cmd == Command::Close);
        if gone && cmd != Command::Close {
            // The RTMP connection ended (its reason is logged); this reply
            // carries its last bytes and the next request gets a 404.
            tunnels.remove(&session.id);
            info!(peer = %session.peer, proto = session.proto, session = session.short_id(), "RTMPT session ended");
        }
        state.touch(Instant::now());
        *crate::locks::lock(&session.last_seen) = Instant::now();
        tracing::trace!(
            session = session.short_id(),
            cmd = cmd.name(),
            seq,
            received = data.len(),
            sent = out.len(),
            interval,
            "RTMPT request"
        );
        let mut reply = BytesMut::with_capacity(1 + out.len());
        reply.put_u8(interval);
        reply.extend_from_slice(&out);
        Ok(reply.freeze())
    }
}

impl Tunnels {
    fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// Closes sessions that sent no request for the timeout, and frees the
    /// slots of sessions whose RTMP connection ended with nothing left to
    /// deliver (a client that opened and never spoke, for one).
    fn reap(&self) {
        let timeout = self.config.session_timeout;
        let now = Instant::now();
        let (expired, ended): (Vec<Arc<Session>>, Vec<Arc<Session>>) = {
            let mut table = self.table();
            let mut expired = Vec::new();
            let mut ended = Vec::new();
            table.retain(|_, s| {
                // A request in progress keeps its session.
                if s.state.try_lock().is_err() {
                    return true;
                }
                let seen = *crate::locks::lock(&s.last_seen);
                let status = s.pipe.status();
                if now.saturating_duration_since(seen) >= timeout {
                    expired.push(Arc::clone(s));
                    false
                } else if status.session_gone && status.pending_output == 0 {
                    ended.push(Arc::clone(s));
                    false
                } else {
                    true
                }
            });
            (expired, ended)
        };
        for s in expired {
            warn!(peer = %s.peer, proto = s.proto, session = s.short_id(), "RTMPT session expired: no request for {timeout:?}");
            s.pipe.close_input();
        }
        for s in ended {
            info!(peer = %s.peer, proto = s.proto, session = s.short_id(), "RTMPT session ended");
        }
    }
}

async fn reaper(tunnels: Weak<Tunnels>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tunnels.upgrade() {
            Some(t) => t.reap(),
            None => return,
        }
    }
}

/// 128 bits from the installed crypto provider's secure random source, hex.
/// Possession of the id is control of the session, so it must not be
/// guessable: without a secure source there is no id.
fn new_session_id() -> Option<String> {
    let mut raw = [0u8; protocol::SESSION_ID_LEN / 2];
    super::tls::secure_random(&mut raw).then(|| raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::handshake::{ClientHandshake, HandshakeStatus};
    use crate::settings::tests::default_section;

    /// A table with the default settings and these.
    fn table(settings: Settings) -> Arc<Tunnels> {
        let budget = default_section::<crate::transport::HttpSettings>("http").body_budget_bytes;
        Tunnels::new(
            crate::server::handler(crate::server::ServerContext::for_tests(
                crate::settings::tests::default_section("rtmp"),
            )),
            settings,
            budget,
        )
    }

    fn tunnels(timeout: f64, max: usize) -> Arc<Tunnels> {
        table(Settings {
            session_timeout: Duration::from_secs_f64(timeout),
            max_sessions: max,
            ..default_section("rtmpt")
        })
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[tokio::test]
    async fn send_reply_carries_the_answer_and_refusals_change_nothing() {
        let t = tunnels(30.0, 10);
        let id = t.open(peer(), "rtmpt").unwrap();
        assert!(protocol::plausible_session_id(&id));
        let mut hs = ClientHandshake::new();
        let mut c0c1 = Vec::new();
        hs.start(&mut c0c1);
        let reply = t
            .request(Command::Send, &id, 0, Bytes::from(c0c1.clone()))
            .await
            .unwrap();
        assert_eq!(reply[0], protocol::MIN_INTERVAL);
        let mut c2 = Vec::new();
        assert_eq!(
            hs.process(&reply[1..], &mut c2).unwrap(),
            (3073, HandshakeStatus::Done)
        );
        // A replay is refused and does not reach the session.
        assert!(matches!(
            t.request(Command::Send, &id, 0, Bytes::from(c0c1)).await,
            Err(TunnelError::Sequence(SeqError::Replayed { .. }))
        ));
        let unknown = "0".repeat(protocol::SESSION_ID_LEN);
        assert!(matches!(
            t.request(Command::Idle, &unknown, 0, Bytes::new()).await,
            Err(TunnelError::UnknownSession)
        ));
        let reply = t
            .request(Command::Idle, &id, 1, Bytes::from_static(&[3]))
            .await;
        assert_eq!(&reply.unwrap()[..], &[protocol::MIN_INTERVAL]);
        let reply = t.request(Command::Close, &id, 2, Bytes::new()).await;
        assert_eq!(&reply.unwrap()[..], &[protocol::ENDED_INTERVAL]);
        assert!(t.is_empty());
    }

    #[tokio::test]
    async fn sessions_are_bounded_ended_ones_freed_and_silent_ones_expire() {
        let t = tunnels(0.3, 2);
        let a = t.open(peer(), "rtmpt").unwrap();
        let _b = t.open(peer(), "rtmpt").unwrap();
        assert!(matches!(
            t.open(peer(), "rtmpt"),
            Err(TunnelError::TooManySessions(2))
        ));
        // Garbage ends a's RTMP connection: the reply says so, the slot is free.
        let reply = t
            .request(Command::Send, &a, 0, Bytes::from_static(b"GET /"))
            .await
            .unwrap();
        assert_eq!(&reply[..], &[protocol::ENDED_INTERVAL]);
        assert_eq!(t.len(), 1);
        let _c = t.open(peer(), "rtmpt").unwrap();
        // Nobody polls: both expire.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.is_empty() {
            assert!(Instant::now() < deadline, "sessions never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn sessions_per_address_are_capped_and_refusals_come_before_the_body() {
        let t = table(Settings {
            max_sessions_per_ip: 2,
            session_timeout: Duration::from_secs(30),
            ..default_section("rtmpt")
        });
        let a: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        let first = t.open(a, "rtmpt").unwrap();
        let _second = t.open(a, "rtmpt").unwrap();
        assert!(matches!(
            t.open(a, "rtmpt"),
            Err(TunnelError::TooManyFromAddress(_))
        ));
        // Another address is served.
        let _other = t.open(b, "rtmpt").unwrap();
        // Unknown ids and bad sequence numbers are refused without a body.
        let unknown = "f".repeat(protocol::SESSION_ID_LEN);
        assert!(matches!(
            t.admit(Command::Send, &unknown, 0).await,
            Err(TunnelError::UnknownSession)
        ));
        assert!(matches!(
            t.admit(Command::Send, &first, 7).await,
            Err(TunnelError::Sequence(SeqError::BadStart { got: 7 }))
        ));
        // A refused admission used nothing up: 0 is still accepted.
        let admitted = t.admit(Command::Idle, &first, 0).await.unwrap();
        admitted.finish(Bytes::new()).await.unwrap();
        // A closed session gives its address's slot back.
        t.request(Command::Close, &first, 1, Bytes::new())
            .await
            .unwrap();
        let _again = t.open(a, "rtmpt").unwrap();
    }
}
