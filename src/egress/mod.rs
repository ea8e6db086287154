//! Relays: re-publishing live streams to RTMP, RTMPS and SRT destinations
//! (multistream), each supervised on its own.
//!
//! A relay is a task with its own bounded queue ([`queue::RelayQueue`], a
//! hub tap) and a state: `waiting` for its stream, `connecting`, `live`,
//! `backoff` after a failure (exponential, with jitter, 1 s to 60 s by
//! default), `stopped` when deleted, `failed` when retrying cannot help. A
//! slow or dead destination loses frames by the queue's policy and never
//! slows the publisher, the packager or another relay.
//!
//! Relays come from the API (one stream, one target; they outlive their
//! stream and wait for it to return) and from `[[relays]]` in the config (a
//! stream pattern and a target template: an instance per matching stream,
//! started when it is published and ended with it).

pub mod queue;
pub mod rtmp;
mod settings;
pub mod srt;
mod supervisor;
pub mod target;
pub mod ts;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::egress_policy::{EgressPolicy, CA_FILE_REFUSED};
use crate::hub::{Hub, QueueLimits};
use crate::transport::tls_client::{self as tls, TlsOptions};
use queue::RelayQueue;
use target::{StreamPattern, Target, TargetError, TargetTemplate};

pub use settings::{static_rules, Settings, StaticRelay};
pub use supervisor::backoff;

/// `host:port` resolved now, each address checked by the egress policy
/// unless `trusted` (the operator wrote the target), within the connect
/// timeout. A refusal is final (a permanent error): retrying cannot help.
/// `who` (a relay, a source) names the dialler in the refusal's log line.
pub async fn resolve_checked(
    settings: &RelaySettings,
    host: &str,
    port: u16,
    trusted: bool,
    own_stream: bool,
    who: &str,
) -> Result<Vec<std::net::SocketAddr>, ConnectError> {
    use crate::egress_policy::ResolveError;
    let lookup = settings.egress.resolve(host, port, trusted, own_stream);
    match tokio::time::timeout(settings.connect_timeout, lookup).await {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(ResolveError::Denied(d))) => {
            warn!(refused = %d.target, "{who} refused by the egress policy");
            Err(ConnectError::permanent(d.to_string()))
        }
        Ok(Err(ResolveError::Lookup(e))) => Err(e.into()),
        Err(_) => Err(format!(
            "cannot resolve {host} within {:?}",
            settings.connect_timeout
        )
        .into()),
    }
}

/// How relays behave; from `[relay]` in the config.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// Relays at once (API and static instances together).
    pub max_relays: usize,
    pub queue: QueueLimits,
    pub connect_timeout: Duration,
    /// A write to a destination taking longer than this drops the
    /// connection (and the relay retries).
    pub write_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The relay sends what its queue holds at this interval.
    pub flush_interval: Duration,
    /// A publisher returning within this time continues on the same
    /// outbound connection.
    pub grace: Duration,
    /// A relay whose destination refuses it (an RTMP error status: bad
    /// stream key, application) this many times in a row gives up
    /// (`failed`) instead of retrying forever.
    pub max_refusals: u32,
    /// Relay threads (single-threaded event loops); 0: relays run as tasks
    /// on the runtime that creates them.
    pub threads: usize,
    /// What API relays may connect to (`[egress]`).
    pub egress: Arc<EgressPolicy>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            max_relays: 1000,
            queue: QueueLimits::default(),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            flush_interval: Duration::from_millis(100),
            grace: Duration::from_secs(10),
            max_refusals: 10,
            threads: 0,
            egress: Arc::new(EgressPolicy::default()),
        }
    }
}

/// Why a connection attempt failed, and whether trying again can help.
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    pub kind: FailKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// Network trouble, a destination down or slow: retry.
    Transient,
    /// The destination answered and refused (retried, up to a limit).
    Refused,
    /// Retrying cannot help (an address that cannot be bound, a name that
    /// cannot be a TLS server name).
    Permanent,
}

impl ConnectError {
    pub fn refused(message: String) -> ConnectError {
        ConnectError {
            message,
            kind: FailKind::Refused,
        }
    }

    pub fn permanent(message: String) -> ConnectError {
        ConnectError {
            message,
            kind: FailKind::Permanent,
        }
    }
}

impl From<String> for ConnectError {
    fn from(message: String) -> ConnectError {
        ConnectError {
            message,
            kind: FailKind::Transient,
        }
    }
}

/// A `[[relays]]` entry.
#[derive(Clone, Debug)]
pub struct StaticRule {
    /// The entry as written (pattern, target, TLS options): a reload keeps
    /// the relays of entries whose spec did not change.
    spec: String,
    pub pattern: StreamPattern,
    pub template: TargetTemplate,
    pub tls: TlsOptions,
    /// Built once (the CA file is read at start-up).
    tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Send H.264, AAC and MP3 only (see [`NewRelay::legacy_only`]).
    pub legacy_only: bool,
}

impl StaticRule {
    /// Checks a rule as written in the config; the error is the reason.
    pub fn parse(stream: &str, target: &str, tls: TlsOptions) -> Result<StaticRule, String> {
        let pattern = StreamPattern::parse(stream)?;
        let template = TargetTemplate::parse(target).map_err(|e| e.to_string())?;
        let sample = template.fill("app/key").map_err(|e| e.to_string())?;
        if !target
            .split("://")
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case(sample.scheme()))
        {
            return Err("the scheme of a target template cannot be a placeholder".into());
        }
        check_tls_options(&sample, &tls)?;
        let tls_config = match sample.scheme() {
            "rtmps" => Some(tls::client_config(&tls)?),
            _ => None,
        };
        Ok(StaticRule {
            spec: format!("{stream}\n{target}\n{tls:?}"),
            pattern,
            template,
            tls,
            tls_config,
            legacy_only: false,
        })
    }

    /// The rule sends legacy codecs only (RTMP and RTMPS targets).
    pub fn with_legacy_only(mut self, legacy_only: bool) -> Result<StaticRule, String> {
        let sample = self.template.fill("app/key").map_err(|e| e.to_string())?;
        check_legacy_only(&sample, legacy_only)?;
        self.legacy_only = legacy_only;
        self.spec.push_str(&format!("\nlegacy_only={legacy_only}"));
        Ok(self)
    }
}

/// How a relay's link is made: TLS (RTMPS) and what it sends.
struct LinkOptions {
    no_verify: bool,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    legacy_only: bool,
}

fn check_legacy_only(target: &Target, legacy_only: bool) -> Result<(), String> {
    if legacy_only && !matches!(target, Target::Rtmp(_)) {
        return Err("legacy_only applies to rtmp:// and rtmps:// targets only".into());
    }
    Ok(())
}

/// A relay's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelayState {
    /// The stream is not live yet.
    Waiting,
    Connecting,
    Live,
    /// Waiting before the next attempt (`next_attempt_secs`).
    Backoff,
    Stopped,
    /// Gave up: retrying cannot help (see `last_error`).
    Failed,
}

/// Where a relay comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Api,
    /// The id of its `[[relays]]` entry (stable across reloads while the
    /// entry is unchanged).
    Config(u64),
}

/// What the API shows of a relay. The target is redacted.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RelayInfo {
    pub id: u64,
    /// The stream relayed (`app/key`).
    pub stream: String,
    /// The destination, stream key / stream id / passphrase redacted.
    pub target: String,
    /// `rtmp`, `rtmps` or `srt`.
    pub protocol: String,
    /// `api`, or `config` for an instance of a `[[relays]]` entry.
    pub source: String,
    pub state: RelayState,
    /// Seconds in the current state.
    pub state_secs: f64,
    /// In `backoff`: seconds until the next attempt.
    pub next_attempt_secs: Option<f64>,
    pub bytes_sent: u64,
    pub frames_sent: u64,
    /// Frames lost to the queue's drop policy (slow or absent destination)
    /// or not convertible for the destination.
    pub frames_dropped: u64,
    /// Connection attempts after a failure.
    pub reconnects: u64,
    /// The last error (secrets redacted).
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Bytes waiting in the relay's queue.
    pub queued_bytes: u64,
    /// RTMPS: whether the destination's certificate is verified.
    pub tls_verify: Option<bool>,
    /// RTMP/RTMPS: only H.264, AAC and MP3 are sent (legacy FLV); else
    /// every codec castgate carries, in Enhanced RTMP tags where needed.
    pub legacy_only: bool,
}

/// A request for a relay (the API's `POST /relays`).
#[derive(Clone, Debug, Default)]
pub struct NewRelay {
    pub stream: String,
    pub target: String,
    pub tls: TlsOptions,
    /// RTMP/RTMPS: send H.264, AAC and MP3 only, for a destination that
    /// reads legacy FLV alone (other tracks are left out, said once).
    pub legacy_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("unknown stream pattern {0:?}: expected APP/KEY, e.g. live/cam ({1})")]
    BadStream(String, String),
    #[error("bad target: {0}")]
    BadTarget(#[from] TargetError),
    #[error("{0}")]
    BadTls(String),
    /// An option that does not fit the target (`legacy_only` for SRT).
    #[error("{0}")]
    BadOption(String),
    #[error("relay limit reached ({0}, relay.max_relays)")]
    TooMany(usize),
    #[error("relay {0} already sends this stream to this target")]
    Duplicate(u64),
    /// Refused by the egress policy (`[egress]`).
    #[error("{0}")]
    Egress(String),
}

struct Status {
    state: RelayState,
    since: Instant,
    next_attempt: Option<Instant>,
    last_error: Option<(String, SystemTime)>,
}

/// One relay, shared by the registry and its task.
pub(crate) struct Relay {
    id: u64,
    stream: String,
    target: Target,
    /// The target as given (the duplicate check compares it).
    url: String,
    redacted: String,
    source: Source,
    tls: Option<Arc<rustls::ClientConfig>>,
    tls_verify: Option<bool>,
    legacy_only: bool,
    queue: Arc<RelayQueue>,
    status: Mutex<Status>,
    bytes_sent: AtomicU64,
    frames_sent: AtomicU64,
    /// Frames the link could not send (before the first keyframe, or not
    /// convertible), on top of the queue's drops.
    link_dropped: AtomicU64,
    reconnects: AtomicU64,
    stop: watch::Sender<bool>,
    events: crate::webhooks::Webhooks,
}

impl Relay {
    fn status(&self) -> MutexGuard<'_, Status> {
        crate::locks::lock(&self.status)
    }

    fn set_state(&self, state: RelayState) {
        let changed = {
            let mut s = self.status();
            let from = s.state;
            if s.state != state {
                s.state = state;
                s.since = Instant::now();
            }
            s.next_attempt = None;
            (from != state).then_some(from)
        };
        if let Some(from) = changed {
            self.state_changed(from, state);
        }
    }

    fn set_backoff(&self, next: Instant) {
        let from = {
            let mut s = self.status();
            let from = s.state;
            s.state = RelayState::Backoff;
            s.since = Instant::now();
            s.next_attempt = Some(next);
            from
        };
        if from != RelayState::Backoff {
            self.state_changed(from, RelayState::Backoff);
        }
    }

    /// The `relay.state_changed` webhook event (queued, never waited for).
    fn state_changed(&self, from: RelayState, to: RelayState) {
        let last_error = self.status().last_error.as_ref().map(|(e, _)| e.clone());
        self.events.emit(
            "relay.state_changed",
            Some(&self.stream),
            serde_json::json!({
                "relay": self.id,
                "target": self.redacted,
                "from": from,
                "to": to,
                "last_error": last_error,
            }),
        );
    }

    /// Records an error with the target's secrets scrubbed out; returns it.
    fn error(&self, e: &str) -> String {
        let e = self.target.scrub(e);
        self.status().last_error = Some((e.clone(), SystemTime::now()));
        e
    }

    fn info(&self) -> RelayInfo {
        let s = self.status();
        let now = Instant::now();
        RelayInfo {
            id: self.id,
            stream: self.stream.clone(),
            target: self.redacted.clone(),
            protocol: self.target.scheme().to_string(),
            source: match self.source {
                Source::Api => "api".into(),
                Source::Config(_) => "config".into(),
            },
            state: s.state,
            state_secs: now.duration_since(s.since).as_secs_f64(),
            next_attempt_secs: s
                .next_attempt
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            frames_sent: self.frames_sent.load(Ordering::Relaxed),
            frames_dropped: self.queue.dropped() + self.link_dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: s.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: s
                .last_error
                .as_ref()
                .map(|(_, t)| crate::timefmt::rfc3339_millis(*t)),
            queued_bytes: self.queue.queued_bytes() as u64,
            tls_verify: self.tls_verify,
            legacy_only: self.legacy_only,
        }
    }
}

/// A single-threaded event loop running relays. Measured with ten relays of
/// one stream: on tokio's work-stealing runtime every flush tick woke the
/// idle worker too (a futex and a context switch per tick for nothing);
/// here the tick wakes one thread that sends for every relay and sleeps.
/// The connection threads (`transport::pool`) do the same for RTMP.
struct RelayThread {
    handle: tokio::runtime::Handle,
    relays: Arc<AtomicU64>,
}

fn start_threads(n: usize) -> Vec<RelayThread> {
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot start relay thread {i}: {e}; relays run on the main runtime");
                break;
            }
        };
        let handle = runtime.handle().clone();
        let spawned = std::thread::Builder::new()
            .name(format!("castgate-relay-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()));
        if let Err(e) = spawned {
            warn!("cannot start relay thread {i}: {e}; relays run on the main runtime");
            break;
        }
        threads.push(RelayThread {
            handle,
            relays: Arc::default(),
        });
    }
    threads
}

/// Every relay, by id.
#[derive(Clone)]
pub struct Relays {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    hub: Hub,
    settings: RelaySettings,
    events: crate::webhooks::Webhooks,
    /// `[[relays]]` entries with their ids; replaced on reload.
    rules: Mutex<Vec<(u64, StaticRule)>>,
    /// Where relay tasks run: relay threads, else the runtime current when
    /// the registry was made (whichever thread asks).
    threads: Vec<RelayThread>,
    runtime: Option<tokio::runtime::Handle>,
    relays: Mutex<BTreeMap<u64, Arc<Relay>>>,
    next_id: AtomicU64,
    next_rule: AtomicU64,
}

impl Inner {
    fn rules(&self) -> MutexGuard<'_, Vec<(u64, StaticRule)>> {
        crate::locks::lock(&self.rules)
    }

    fn relays(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Relay>>> {
        crate::locks::lock(&self.relays)
    }

    /// Forgets a relay whose task ended on its own.
    fn remove(&self, relay: &Arc<Relay>) {
        let mut map = self.relays();
        if map.get(&relay.id).is_some_and(|r| Arc::ptr_eq(r, relay)) {
            map.remove(&relay.id);
        }
    }
}

fn check_tls_options(target: &Target, tls: &TlsOptions) -> Result<(), String> {
    if target.scheme() != "rtmps" && (tls.ca_file.is_some() || tls.no_verify) {
        return Err("tls_ca_file and tls_verify apply to rtmps:// targets only".into());
    }
    if tls.no_verify && tls.ca_file.is_some() {
        return Err("tls_ca_file is pointless with tls_verify = false".into());
    }
    Ok(())
}

impl Relays {
    /// Tasks run on the runtime current at this call, if any (else on
    /// whichever runtime creates them).
    /// `events` gets each relay's `relay.state_changed`.
    pub fn new(
        hub: Hub,
        settings: RelaySettings,
        rules: Vec<StaticRule>,
        events: crate::webhooks::Webhooks,
    ) -> Relays {
        let rules: Vec<(u64, StaticRule)> = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u64, r))
            .collect();
        for (i, r) in &rules {
            info!(
                rule = i,
                pattern = r.pattern.as_str(),
                target = %r.template.redacted(),
                "static relay configured"
            );
        }
        let next_rule = rules.len() as u64;
        let threads = start_threads(settings.threads);
        Relays {
            inner: Arc::new(Inner {
                hub,
                settings,
                events,
                rules: Mutex::new(rules),
                next_rule: AtomicU64::new(next_rule),
                threads,
                runtime: tokio::runtime::Handle::try_current().ok(),
                relays: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Records castgate's own listening addresses once bound: API relays
    /// into castgate itself are refused.
    pub fn set_own_listeners(&self, addrs: Vec<std::net::SocketAddr>) {
        self.inner.settings.egress.set_own_listeners(addrs);
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.inner.settings
    }

    /// Creates a relay from the API. Reads the CA file if one is given:
    /// call it off the async threads.
    pub fn create(&self, req: NewRelay) -> Result<RelayInfo, CreateError> {
        let stream: String = crate::stream_key::StreamKey::parse(&req.stream)
            .map_err(|why| CreateError::BadStream(short(&req.stream), why.to_string()))?
            .into();
        let target = Target::parse(&req.target)?;
        check_tls_options(&target, &req.tls).map_err(CreateError::BadTls)?;
        check_legacy_only(&target, req.legacy_only).map_err(CreateError::BadOption)?;
        let policy = &self.inner.settings.egress;
        match &target {
            Target::Rtmp(t) => policy.check_literal(&t.host, t.port, names_stream(t, &stream)),
            Target::Srt(t) if t.mode == target::SrtMode::Listener => {
                policy.check_srt_listen(t.bind_addr())
            }
            Target::Srt(t) => policy.check_literal(&t.host, t.port, false),
        }
        .map_err(|d| {
            warn!(
                stream,
                target = %target.redacted(),
                refused = %d.target,
                "relay refused by the egress policy at creation: {}",
                d.reason
            );
            CreateError::Egress(d.to_string())
        })?;
        let mut tls_options = req.tls.clone();
        if let Some(path) = &req.tls.ca_file {
            // One answer for every unusable path: no oracle for the
            // server's files.
            let path = policy
                .ca_file(path)
                .map_err(|e| CreateError::BadTls(e.into()))?;
            tls_options.ca_file = Some(path.to_string_lossy().into_owned());
        }
        {
            let map = self.inner.relays();
            if let Some(r) = map
                .values()
                .find(|r| r.source == Source::Api && r.stream == stream && r.url == req.target)
            {
                return Err(CreateError::Duplicate(r.id));
            }
        }
        let tls_config = match target.scheme() {
            "rtmps" => Some(tls::client_config(&tls_options).map_err(|e| {
                CreateError::BadTls(match tls_options.ca_file {
                    Some(_) => CA_FILE_REFUSED.into(),
                    None => e,
                })
            })?),
            _ => None,
        };
        let relay = self
            .start(
                stream,
                target,
                req.target,
                LinkOptions {
                    no_verify: tls_options.no_verify,
                    tls_config,
                    legacy_only: req.legacy_only,
                },
                Source::Api,
            )
            .map_err(|StartError::TooMany(n)| CreateError::TooMany(n))?;
        Ok(relay.info())
    }

    /// Starts the static relays whose pattern matches a stream that has
    /// just been published (once per stream: a returning publisher keeps
    /// the instances it has).
    pub fn on_publish(&self, key: &str) {
        let rules = self.inner.rules().clone();
        for (i, rule) in &rules {
            let i = *i;
            if !rule.pattern.matches(key) {
                continue;
            }
            let exists = self
                .inner
                .relays()
                .values()
                .any(|r| r.source == Source::Config(i) && r.stream == key);
            if exists {
                continue;
            }
            let target = match rule.template.fill(key) {
                Ok(t) => t,
                Err(e) => {
                    warn!(stream = key, rule = i, "static relay not started: {e}");
                    continue;
                }
            };
            let url = target.redacted();
            if let Err(e) = self.start(
                key.to_string(),
                target,
                url,
                LinkOptions {
                    no_verify: rule.tls.no_verify,
                    tls_config: rule.tls_config.clone(),
                    legacy_only: rule.legacy_only,
                },
                Source::Config(i),
            ) {
                warn!(stream = key, rule = i, "static relay not started: {e:?}");
            }
        }
    }

    fn start(
        &self,
        stream: String,
        target: Target,
        url: String,
        options: LinkOptions,
        source: Source,
    ) -> Result<Arc<Relay>, StartError> {
        let LinkOptions {
            no_verify,
            tls_config,
            legacy_only,
        } = options;
        let queue = RelayQueue::new(self.inner.settings.queue);
        let relay = {
            let mut map = self.inner.relays();
            if map.len() >= self.inner.settings.max_relays {
                return Err(StartError::TooMany(self.inner.settings.max_relays));
            }
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let relay = Arc::new(Relay {
                id,
                stream,
                redacted: target.redacted(),
                tls_verify: (target.scheme() == "rtmps").then_some(!no_verify),
                legacy_only,
                target,
                url,
                source,
                tls: tls_config,
                queue: queue.clone(),
                status: Mutex::new(Status {
                    state: RelayState::Waiting,
                    since: Instant::now(),
                    next_attempt: None,
                    last_error: None,
                }),
                bytes_sent: AtomicU64::new(0),
                frames_sent: AtomicU64::new(0),
                link_dropped: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                stop: watch::channel(false).0,
                events: self.inner.events.clone(),
            });
            map.insert(id, relay.clone());
            relay
        };
        // Attached here, synchronously: a static relay started by a publish
        // sees the stream from its first frame.
        let tap = self.inner.hub.tap(&relay.stream, queue);
        info!(
            relay = relay.id,
            stream = relay.stream,
            target = relay.redacted,
            source = ?relay.source,
            "relay created"
        );
        let task = supervisor::run(relay.clone(), self.inner.clone(), tap);
        let thread = self
            .inner
            .threads
            .iter()
            .min_by_key(|t| t.relays.load(Ordering::Relaxed));
        match (thread, &self.inner.runtime) {
            (Some(t), _) => {
                let count = t.relays.clone();
                count.fetch_add(1, Ordering::Relaxed);
                drop(t.handle.spawn(async move {
                    task.await;
                    count.fetch_sub(1, Ordering::Relaxed);
                }));
            }
            (None, Some(rt)) => drop(rt.spawn(task)),
            (None, None) => drop(tokio::spawn(task)),
        }
        Ok(relay)
    }

    /// Replaces the `[[relays]]` entries (SIGHUP): relays of entries that
    /// are gone stop, entries that are new start for the streams live now,
    /// unchanged entries and their relays are not touched. Returns (stopped
    /// relays, new entries).
    pub fn set_rules(&self, new: Vec<StaticRule>) -> (usize, usize) {
        let (removed, added) = {
            let mut rules = self.inner.rules();
            let mut kept: Vec<(u64, StaticRule)> = Vec::new();
            let mut added = 0;
            let mut old: Vec<(u64, StaticRule)> = std::mem::take(&mut *rules);
            for rule in new {
                match old.iter().position(|(_, o)| o.spec == rule.spec) {
                    Some(i) => kept.push(old.swap_remove(i)),
                    None => {
                        let id = self.inner.next_rule.fetch_add(1, Ordering::Relaxed);
                        info!(
                            rule = id,
                            pattern = rule.pattern.as_str(),
                            target = %rule.template.redacted(),
                            "static relay configured (reload)"
                        );
                        kept.push((id, rule));
                        added += 1;
                    }
                }
            }
            *rules = kept;
            (old.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), added)
        };
        let doomed: Vec<u64> = self
            .inner
            .relays()
            .values()
            .filter(|r| matches!(r.source, Source::Config(id) if removed.contains(&id)))
            .map(|r| r.id)
            .collect();
        for id in &doomed {
            self.delete(id.to_owned());
        }
        if added > 0 {
            for info in self.inner.hub.streams() {
                if info.publisher.is_some() {
                    self.on_publish(&info.key);
                }
            }
        }
        (doomed.len(), added)
    }

    /// Stops every relay (shutdown): each destination sees its stream end.
    pub fn stop_all(&self) -> usize {
        let ids: Vec<u64> = self.inner.relays().keys().copied().collect();
        ids.iter().filter(|id| self.delete(**id)).count()
    }

    pub fn list(&self) -> Vec<RelayInfo> {
        let relays: Vec<Arc<Relay>> = self.inner.relays().values().cloned().collect();
        relays.iter().map(|r| r.info()).collect()
    }

    pub fn get(&self, id: u64) -> Option<RelayInfo> {
        let r = self.inner.relays().get(&id).cloned();
        r.map(|r| r.info())
    }

    /// The relays of one stream.
    pub fn of_stream(&self, key: &str) -> Vec<u64> {
        self.inner
            .relays()
            .values()
            .filter(|r| r.stream == key)
            .map(|r| r.id)
            .collect()
    }

    /// Whether an API relay sends `key` (it waits for the stream: an
    /// on-demand pulled source counts it as a viewer).
    pub fn has_api_relay(&self, key: &str) -> bool {
        self.inner
            .relays()
            .values()
            .any(|r| r.source == Source::Api && r.stream == key)
    }

    /// Stops and forgets a relay; its destination sees the stream end.
    /// False if there is no such relay.
    pub fn delete(&self, id: u64) -> bool {
        let Some(relay) = self.inner.relays().remove(&id) else {
            return false;
        };
        relay.stop.send_replace(true);
        info!(
            relay = relay.id,
            stream = relay.stream,
            target = relay.redacted,
            "relay deleted"
        );
        true
    }
}

#[derive(Debug)]
enum StartError {
    TooMany(usize),
}

/// Whether an RTMP target publishes under the name of the stream relayed
/// (into castgate itself that would take the stream over).
pub fn names_stream(t: &target::RtmpTarget, stream: &str) -> bool {
    let key = t.key.split('?').next().unwrap_or("");
    crate::stream_key::StreamKey::new(&t.app, key).is_ok_and(|k| k == stream)
}

/// Client input echoed in a message, cut short.
fn short(s: &str) -> String {
    crate::text::short(s, 64)
}

#[cfg(test)]
mod tests;
