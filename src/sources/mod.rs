//! Pulled sources: castgate fetches a stream itself, as an RTMP/RTMPS
//! player or an SRT caller, and publishes it through the registry like any
//! publisher (so HLS, DASH, RTMP and SRT play, relays and transcode work
//! for it).
//!
//! Each source is a task (`supervisor`) with a state: `idle` (on demand,
//! nobody watches), `connecting`, `live`, `backoff` after a failure or the
//! end of the upstream stream (exponential with jitter, `relay.backoff_*`),
//! `stopped` when deleted, `failed` when retrying cannot help (the egress
//! policy refused the address). Sources come from the API (checked by the
//! egress policy when created and at every connect) and from `[[sources]]`
//! in the config (trusted like `[[relays]]`).
//!
//! On demand: a source pulls only while someone watches its stream: an
//! RTMP or SRT player (a hub subscriber), an API relay of it, or an
//! HLS/DASH request (`Sources::touch`, called by the HTTP layer). It stops
//! `source.on_demand_idle_secs` after the last one. Viewers are looked at
//! every [`DEMAND_POLL`].
//!
//! Secrets (an RTMP stream key and query, an SRT stream id and passphrase)
//! stay out of logs, API replies, events and metrics: the URL shown is
//! redacted, and errors are scrubbed.

mod settings;
mod supervisor;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::egress::target::{SrtMode, Target};
use crate::egress::Relays;
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::stream_key::StreamKey;
use crate::streams::Registry;
use crate::webhooks::Webhooks;

pub use settings::{check_static, Settings, StaticSource};

/// How often an on-demand source looks at its stream's viewers.
pub const DEMAND_POLL: Duration = Duration::from_millis(250);

/// A source's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// On demand, and nobody watches.
    Idle,
    Connecting,
    Live,
    /// Waiting before the next attempt (`next_attempt_secs`).
    Backoff,
    Stopped,
    /// Gave up: retrying cannot help (see `last_error`).
    Failed,
}

/// What the API shows of a source. The URL is redacted.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SourceInfo {
    pub id: u64,
    /// The stream it publishes (`app/key`).
    pub stream: String,
    /// Where it pulls from, stream key / stream id / passphrase redacted.
    pub url: String,
    /// `rtmp`, `rtmps` or `srt`.
    pub protocol: String,
    /// `api`, or `config` for a `[[sources]]` entry.
    pub origin: String,
    pub on_demand: bool,
    pub state: SourceState,
    /// Seconds in the current state.
    pub state_secs: f64,
    /// In `backoff`: seconds until the next attempt.
    pub next_attempt_secs: Option<f64>,
    /// Media bytes received (every connection).
    pub bytes: u64,
    /// Audio and video frames published (every connection).
    pub frames: u64,
    /// Connection attempts after the first (after a failure, the end of
    /// the upstream stream, or waking up on demand).
    pub reconnects: u64,
    /// The last error (secrets redacted).
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
}

/// A request for a source (the API's `POST /sources`).
#[derive(Clone, Debug, Default)]
pub struct NewSource {
    pub stream: String,
    pub url: String,
    pub on_demand: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Bad(String),
    #[error("source limit reached ({0}, source.max_sources)")]
    TooMany(usize),
    #[error("source {0} already publishes this stream")]
    Duplicate(u64),
    /// Refused by the egress policy (`[egress]`).
    #[error("{0}")]
    Egress(String),
}

/// Checks a stream name and a source URL (`rtmp://`, `rtmps://`, or an
/// SRT caller `srt://`); the error never quotes the URL's secrets.
pub fn parse_source(stream: &str, url: &str) -> Result<(StreamKey, Target), String> {
    let key = StreamKey::parse(stream).map_err(|why| {
        format!(
            "bad stream {:?}: {why} (expected APP/KEY, e.g. live/cam1)",
            crate::text::short(stream, 64)
        )
    })?;
    let target = Target::parse(url).map_err(|e| format!("bad url: {e}"))?;
    if let Target::Srt(t) = &target {
        if t.mode == SrtMode::Listener {
            return Err(
                "bad url: a source calls out (srt://host:port?streamid=…); senders that call castgate use the SRT listener ([srt])"
                    .into(),
            );
        }
    }
    Ok((key, target))
}

/// Where a source comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Api,
    /// A cluster replica (`edge::replica`): the stream's owner, another
    /// node, pulled once for this node's players; one connection, then the
    /// edge decides again (the owner may have changed).
    Cluster {
        owner: String,
    },
    /// A `[[sources]]` entry (the entry itself: a reload keeps unchanged
    /// entries running).
    Config(StaticSource),
}

struct Status {
    state: SourceState,
    since: Instant,
    next_attempt: Option<Instant>,
    last_error: Option<(String, SystemTime)>,
}

/// One source, shared by the registry and its task.
pub(crate) struct Source {
    id: u64,
    key: StreamKey,
    target: Target,
    redacted: String,
    origin: Origin,
    on_demand: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    status: Mutex<Status>,
    bytes: AtomicU64,
    frames: AtomicU64,
    reconnects: AtomicU64,
    /// The last HLS/DASH request for its stream.
    last_http: Mutex<Option<Instant>>,
    stop: watch::Sender<bool>,
    events: Webhooks,
}

impl Source {
    fn status(&self) -> MutexGuard<'_, Status> {
        crate::locks::lock(&self.status)
    }

    fn state(&self) -> SourceState {
        self.status().state
    }

    fn set_state(&self, state: SourceState) {
        self.set(state, None);
    }

    fn set_backoff(&self, next: Instant) {
        self.set(SourceState::Backoff, Some(next));
    }

    fn set(&self, state: SourceState, next: Option<Instant>) {
        let from = {
            let mut s = self.status();
            let from = s.state;
            if from != state {
                s.state = state;
                s.since = Instant::now();
            }
            s.next_attempt = next;
            from
        };
        if from != state {
            info!(
                source = self.id,
                stream = self.key.as_str(),
                from = ?from,
                to = ?state,
                "source state changed"
            );
            let last_error = self.status().last_error.as_ref().map(|(e, _)| e.clone());
            self.events.emit(
                "source.state_changed",
                Some(self.key.as_str()),
                serde_json::json!({
                    "source": self.id,
                    "url": self.redacted,
                    "from": from,
                    "to": state,
                    "last_error": last_error,
                }),
            );
        }
    }

    /// Records an error with the URL's secrets scrubbed out; returns it.
    fn error(&self, e: &str) -> String {
        let e = self.target.scrub(e);
        self.status().last_error = Some((e.clone(), SystemTime::now()));
        e
    }

    fn info(&self) -> SourceInfo {
        let s = self.status();
        let now = Instant::now();
        SourceInfo {
            id: self.id,
            stream: self.key.to_string(),
            url: self.redacted.clone(),
            protocol: self.target.scheme().to_string(),
            origin: match self.origin {
                Origin::Api => "api".into(),
                Origin::Config(_) => "config".into(),
                Origin::Cluster { .. } => "cluster".into(),
            },
            on_demand: self.on_demand,
            state: s.state,
            state_secs: now.duration_since(s.since).as_secs_f64(),
            next_attempt_secs: s
                .next_attempt
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            bytes: self.bytes.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: s.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: s
                .last_error
                .as_ref()
                .map(|(_, t)| crate::timefmt::rfc3339_millis(*t)),
        }
    }
}

/// What sources need from the rest of castgate.
#[derive(Clone)]
pub struct Deps {
    pub hub: Hub,
    pub registry: Registry,
    /// Backoff, connect timeout and the egress policy are `[relay]`'s and
    /// `[egress]`'s; API relays count as viewers of an on-demand source.
    pub relays: Relays,
    pub events: Webhooks,
    pub shutdown: Shutdown,
}

/// Every pulled source, by id (cheap to clone; clones share).
#[derive(Clone)]
pub struct Sources {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    deps: Deps,
    settings: Settings,
    sources: Mutex<BTreeMap<u64, Arc<Source>>>,
    next_id: AtomicU64,
    runtime: Option<tokio::runtime::Handle>,
}

impl Inner {
    fn sources(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Source>>> {
        crate::locks::lock(&self.sources)
    }

    /// Whether anyone watches `source`'s stream now.
    fn wanted(&self, source: &Source) -> bool {
        let key = source.key.as_str();
        let players = self.deps.hub.stream(key).is_some_and(|s| s.subscribers > 0);
        let http = crate::locks::lock(&source.last_http)
            .is_some_and(|t| t.elapsed() < self.settings.on_demand_idle.max(DEMAND_POLL));
        players || http || self.deps.relays.has_api_relay(key)
    }
}

impl Sources {
    /// Tasks run on the runtime current at this call, if any. The
    /// `[[sources]]` entries start at once.
    pub fn new(deps: Deps, settings: Settings, entries: &[StaticSource]) -> Sources {
        let sources = Sources {
            inner: Arc::new(Inner {
                deps,
                settings,
                sources: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(1),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        };
        sources.set_static(entries);
        sources
    }

    /// Creates a source from the API: the URL's host must pass the egress
    /// policy now (and its addresses again at every connect).
    pub fn create(&self, req: NewSource) -> Result<SourceInfo, CreateError> {
        let (key, target) = parse_source(&req.stream, &req.url).map_err(CreateError::Bad)?;
        let policy = &self.inner.deps.relays.settings().egress;
        let (host, port) = host_port(&target);
        policy
            .check_literal(host, port, own_stream(&target, &key))
            .map_err(|d| {
                warn!(
                    stream = key.as_str(),
                    url = %target.redacted(),
                    refused = %d.target,
                    "source refused by the egress policy at creation: {}",
                    d.reason
                );
                CreateError::Egress(d.to_string())
            })?;
        let tls = match &target {
            Target::Rtmp(r) if r.tls => Some(
                crate::transport::tls_client::client_config(&Default::default())
                    .map_err(CreateError::Bad)?,
            ),
            _ => None,
        };
        self.start(key, target, tls, req.on_demand, Origin::Api)
            .map(|s| s.info())
    }

    /// Pulls `key` once from `owner`, the node that publishes it
    /// (`rtmp_base`: its `advertise_rtmp`), for this node's players. Its
    /// address is the owner's own configuration (through Redis), so the
    /// egress policy, which guards addresses users give, does not apply.
    pub fn replicate(
        &self,
        key: &StreamKey,
        owner: &str,
        rtmp_base: &str,
    ) -> Result<u64, CreateError> {
        let url = format!("{}/{key}", rtmp_base.trim_end_matches('/'));
        let target = Target::parse(&url).map_err(|e| CreateError::Bad(format!("bad url: {e}")))?;
        let origin = Origin::Cluster {
            owner: owner.to_string(),
        };
        self.start(key.clone(), target, None, true, origin)
            .map(|s| s.id)
    }

    /// The cluster replicas: (id, stream, state).
    pub fn replicas(&self) -> Vec<(u64, StreamKey, SourceState)> {
        self.inner
            .sources()
            .values()
            .filter(|s| matches!(s.origin, Origin::Cluster { .. }))
            .map(|s| (s.id, s.key.clone(), s.state()))
            .collect()
    }

    /// Whether `key` has a source of any kind.
    pub fn has(&self, key: &str) -> bool {
        self.inner.sources().values().any(|s| s.key.as_str() == key)
    }

    fn start(
        &self,
        key: StreamKey,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        on_demand: bool,
        origin: Origin,
    ) -> Result<Arc<Source>, CreateError> {
        let source = {
            let mut map = self.inner.sources();
            if let Some(s) = map.values().find(|s| s.key == key) {
                return Err(CreateError::Duplicate(s.id));
            }
            if map.len() >= self.inner.settings.max_sources {
                return Err(CreateError::TooMany(self.inner.settings.max_sources));
            }
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let source = Arc::new(Source {
                id,
                key,
                redacted: target.redacted(),
                target,
                origin,
                on_demand,
                tls,
                status: Mutex::new(Status {
                    state: if on_demand {
                        SourceState::Idle
                    } else {
                        SourceState::Connecting
                    },
                    since: Instant::now(),
                    next_attempt: None,
                    last_error: None,
                }),
                bytes: AtomicU64::new(0),
                frames: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                last_http: Mutex::new(None),
                stop: watch::channel(false).0,
                events: self.inner.deps.events.clone(),
            });
            map.insert(id, source.clone());
            source
        };
        info!(
            source = source.id,
            stream = source.key.as_str(),
            url = source.redacted,
            on_demand,
            "source created"
        );
        let task = supervisor::run(source.clone(), self.inner.clone());
        match &self.inner.runtime {
            Some(rt) => drop(rt.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
        Ok(source)
    }

    /// Replaces the `[[sources]]` entries (start-up and SIGHUP): sources
    /// of entries that are gone stop, new entries start, unchanged ones go
    /// on. Returns (stopped, started).
    pub fn set_static(&self, entries: &[StaticSource]) -> (usize, usize) {
        let doomed: Vec<u64> = self
            .inner
            .sources()
            .values()
            .filter(|s| matches!(&s.origin, Origin::Config(e) if !entries.contains(e)))
            .map(|s| s.id)
            .collect();
        for id in &doomed {
            self.delete(*id);
        }
        let mut started = 0;
        for e in entries {
            let exists = self
                .inner
                .sources()
                .values()
                .any(|s| s.origin == Origin::Config(e.clone()));
            if exists {
                continue;
            }
            let made = parse_source(&e.stream, &e.url).and_then(|(key, target)| {
                let tls = match &target {
                    Target::Rtmp(r) if r.tls => Some(crate::transport::tls_client::client_config(
                        &Default::default(),
                    )?),
                    _ => None,
                };
                self.start(key, target, tls, e.on_demand, Origin::Config(e.clone()))
                    .map_err(|e| e.to_string())
            });
            match made {
                Ok(_) => started += 1,
                Err(why) => warn!(stream = e.stream, "[[sources]] entry not started: {why}"),
            }
        }
        (doomed.len(), started)
    }

    pub fn list(&self) -> Vec<SourceInfo> {
        let all: Vec<Arc<Source>> = self.inner.sources().values().cloned().collect();
        all.iter().map(|s| s.info()).collect()
    }

    pub fn get(&self, id: u64) -> Option<SourceInfo> {
        let s = self.inner.sources().get(&id).cloned();
        s.map(|s| s.info())
    }

    /// Stops and forgets a source: its stream ends. False if there is none.
    pub fn delete(&self, id: u64) -> bool {
        let Some(source) = self.inner.sources().remove(&id) else {
            return false;
        };
        source.stop.send_replace(true);
        info!(
            source = source.id,
            stream = source.key.as_str(),
            url = source.redacted,
            "source deleted"
        );
        true
    }

    /// Stops every source (shutdown).
    pub fn stop_all(&self) -> usize {
        let ids: Vec<u64> = self.inner.sources().keys().copied().collect();
        ids.iter().filter(|id| self.delete(**id)).count()
    }

    /// An HLS/DASH request for `stream`: wakes its on-demand source, if it
    /// has one. True when that source is not live yet (the request can be
    /// answered "try again shortly").
    pub fn touch(&self, stream: &str) -> bool {
        let map = self.inner.sources();
        let Some(s) = map.values().find(|s| {
            s.on_demand && s.key.as_str() == stream && !matches!(s.origin, Origin::Cluster { .. })
        }) else {
            return false;
        };
        *crate::locks::lock(&s.last_http) = Some(Instant::now());
        s.state() != SourceState::Live
    }

    /// Whether `stream` has an on-demand source (it goes live once
    /// watched: an SRT player of it is admitted and waits).
    pub fn on_demand(&self, stream: &str) -> bool {
        self.inner.sources().values().any(|s| {
            s.on_demand && s.key.as_str() == stream && !matches!(s.origin, Origin::Cluster { .. })
        })
    }
}

/// Whether an RTMP URL plays the source's own stream (from castgate
/// itself that would be a loop).
fn own_stream(target: &Target, key: &StreamKey) -> bool {
    match target {
        Target::Rtmp(t) => crate::egress::names_stream(t, key.as_str()),
        Target::Srt(_) => false,
    }
}

fn host_port(target: &Target) -> (&str, u16) {
    match target {
        Target::Rtmp(r) => (&r.host, r.port),
        Target::Srt(s) => (&s.host, s.port),
    }
}

#[cfg(test)]
mod tests;
