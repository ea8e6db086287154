//! RTMPT: RTMP tunnelled in HTTP requests. Each tunnel session runs the
//! ordinary connection driver ([`serve_connection`]) over an in-memory
//! [`pipe`], so a tunnelled publish or play is the same as any other; the
//! HTTP handlers (`http::rtmpt`) only parse requests and call
//! [`Tunnels::open`] and [`Tunnels::request`].
//!
//! Limits: the number of sessions, each request body, the bytes held for a
//! client that does not poll, and inactivity (a reaper closes sessions that
//! sent no request for `rtmpt.session_timeout_secs`).

pub mod pipe;
pub mod protocol;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Instant;
use tracing::{info, warn, Instrument};

use crate::config::RtmptConfig;
use crate::server::{serve_connection, ServerContext};
use pipe::{Pipe, SessionIo};
use protocol::{Command, SeqError, TunnelState};

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
    /// Held for the whole of a request: one request per session at a time,
    /// in sequence order.
    state: tokio::sync::Mutex<TunnelState>,
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
    ctx: Arc<ServerContext>,
    config: RtmptConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Tunnels {
    /// A session table, with its reaper task (which ends with the table).
    pub fn new(ctx: Arc<ServerContext>, config: RtmptConfig) -> Arc<Tunnels> {
        let tunnels = Arc::new(Tunnels {
            ctx,
            config,
            sessions: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&tunnels);
        let period = (tunnels.config.session_timeout() / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(reaper(weak, period));
        tunnels
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
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
            state: tokio::sync::Mutex::new(TunnelState::new(Instant::now())),
            last_seen: Mutex::new(Instant::now()),
        });
        info!(%peer, proto, session = session.short_id(), "RTMPT session opened");
        let span = tracing::info_span!("rtmpt", session = session.short_id());
        tokio::spawn(run_session(io, peer, proto, Arc::clone(&self.ctx)).instrument(span));
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
        let session = self
            .table()
            .get(id)
            .cloned()
            .ok_or(TunnelError::UnknownSession)?;
        let mut state = session.state.lock().await;
        let data: &[u8] = if cmd.carries_data() { &body } else { &[] };
        let status = session.pipe.status();
        if status.pending_input + data.len() > self.config.max_body_bytes {
            return Err(TunnelError::Backlog(status.pending_input));
        }
        state.accept(cmd, seq, Instant::now())?;
        *session.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
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
                self.remove(&session.id);
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
            self.remove(&session.id);
            info!(peer = %session.peer, proto = session.proto, session = session.short_id(), "RTMPT session ended");
        }
        state.touch(Instant::now());
        *session.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
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

    fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// Closes sessions that sent no request for the timeout.
    fn reap(&self) {
        let timeout = self.config.session_timeout();
        let now = Instant::now();
        let expired: Vec<Arc<Session>> = {
            let mut table = self.table();
            let ids: Vec<String> = table
                .values()
                .filter(|s| {
                    let seen = *s.last_seen.lock().unwrap_or_else(|e| e.into_inner());
                    // A request in progress keeps its session.
                    now.saturating_duration_since(seen) >= timeout && s.state.try_lock().is_ok()
                })
                .map(|s| s.id.clone())
                .collect();
            ids.iter().filter_map(|id| table.remove(id)).collect()
        };
        for s in expired {
            warn!(peer = %s.peer, proto = s.proto, session = s.short_id(), "RTMPT session expired: no request for {timeout:?}");
            s.pipe.close_input();
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

async fn run_session(
    io: SessionIo,
    peer: SocketAddr,
    proto: &'static str,
    ctx: Arc<ServerContext>,
) {
    // Dropping `io` at the end tells the tunnel the connection is over.
    serve_connection(io, peer, proto, ctx).await;
}

/// 128 bits from the installed crypto provider's secure random source, hex.
/// Possession of the id is control of the session, so it must not be
/// guessable: without a secure source there is no id.
fn new_session_id() -> Option<String> {
    let mut raw = [0u8; protocol::SESSION_ID_LEN / 2];
    super::tls::secure_random(&mut raw).then(|| raw.iter().map(|b| format!("{b:02x}")).collect())
}
