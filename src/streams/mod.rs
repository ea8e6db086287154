//! The stream registry: the one place that decides what a publish starts
//! and what its end stops.
//!
//! Every publisher goes through [`Registry::publish`], whatever brought it:
//! an RTMP connection (plain, TLS or tunnelled over HTTP), SRT ingest, a
//! pulled source, or a transcode rendition ([`Registry::publish_rendition`]).
//! In cluster mode (`[cluster]`) a client's or a pulled source's publish
//! first claims the stream's lease in Redis (`cluster::Cluster::claim`,
//! under `rtmp.publish_conflict`): refused when another node holds it and
//! the rule is `reject`, or when Redis cannot be reached; a rendition lives
//! with its source's lease. A publish takes the stream in the hub, then
//! starts, in order:
//!
//! 1. the publish hooks (the transcoder: it aligns the packager's segments
//!    before packaging starts, and starts a job for a mapped profile);
//! 2. packaging (HLS/DASH);
//! 3. the static relays whose patterns match, and the relays an
//!    authorisation granted;
//! 4. the recordings whose `[[record]]` patterns match (`record`);
//! 5. per-stream stats for `/metrics` and the `stream.started` event.
//!
//! The [`PublishGuard`] it returns is the publisher's handle: frames sent
//! through it are counted and go to the hub. Dropping it emits
//! `stream.ended`, ends the publish in the hub (which stops what follows
//! the stream: packaging after its grace period, relays, the transcode
//! job), completes the recordings, unregisters the stats and releases the
//! cluster lease, in that order. A lease lost to another node ends the
//! publish as a takeover does ([`PublishGuard::kicked`]).
//!
//! The registry knows no protocol: a connection keeps its own protocol
//! work (sessions, acknowledgements, logs of its own counters).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tracing::{info, warn};

use crate::cluster::{ClaimError, Cluster, LeaseGuard};
use crate::egress::{CreateError, NewRelay, Relays};
use crate::hub::{Hub, PublishConflict, Publisher, StreamEvent};
use crate::metrics::{StatsGuard, StreamStats};
use crate::package::service::Packager;
use crate::record::{Recorder, Recordings};
use crate::stream_key::StreamKey;
use crate::webhooks::Webhooks;

/// Why a publish was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// Taken on this node, and the conflict rule keeps the publisher.
    #[error(transparent)]
    Hub(#[from] crate::hub::PublishError),
    /// Another node owns it, or the cluster store cannot be reached.
    #[error(transparent)]
    Cluster(#[from] ClaimError),
}

/// The publisher protocol of a cluster replica (see [`Origin::Replica`]):
/// a stream live here under it is owned elsewhere.
pub const REPLICA_PROTOCOL: &str = "cluster";

/// Who publishes a stream.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A client connection; `protocol` is its variant (`rtmp`, `rtmpe`,
    /// `rtmps`, `rtmpt`, `rtmpte`, `rtmpts`, `srt`), `mode` the publish
    /// mode it asked for (`live`, `record`, `append`).
    Client {
        protocol: &'static str,
        peer: SocketAddr,
        mode: String,
    },
    /// A rendition that a transcode job makes from another stream.
    Rendition { source: StreamKey, profile: String },
    /// A stream castgate pulls itself (`sources`): `url` is redacted.
    Pulled { url: String, source_id: u64 },
    /// In cluster mode, a stream another node (`owner`) publishes, pulled
    /// from it for this node's players (`edge::replica`). Only the hub
    /// carries it: packaging, relays, transcode, recordings, events and
    /// the lease are the owner's.
    Replica { owner: String, url: String },
}

impl Origin {
    /// The protocol named in logs, events and `/metrics`.
    pub fn protocol(&self) -> &'static str {
        match self {
            Origin::Client { protocol, .. } => protocol,
            Origin::Rendition { .. } => "transcode",
            Origin::Pulled { .. } => "pull",
            Origin::Replica { .. } => REPLICA_PROTOCOL,
        }
    }

    /// Who the hub shows as the publisher.
    fn peer(&self) -> String {
        match self {
            Origin::Client { peer, .. } => peer.to_string(),
            Origin::Rendition { .. } => "transcode".to_string(),
            Origin::Pulled { url, .. } | Origin::Replica { url, .. } => url.clone(),
        }
    }
}

/// What an authorisation added to a publish (an auth webhook's answer).
#[derive(Clone, Debug, Default)]
pub struct Granted {
    /// The transcode profile to use instead of the configured mapping.
    pub profile: Option<String>,
    /// Relay targets to start for this publish.
    pub relays: Vec<String>,
}

/// Something started for every publish besides packaging and relays (the
/// transcoder; later recording and cluster leases). Hooks run before
/// packaging starts, in the order they were added.
pub trait PublishHook: Send + Sync {
    fn on_publish(&self, registry: &Registry, key: &StreamKey, origin: &Origin, granted: &Granted);
}

/// The stream registry (cheap to clone; clones share everything).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    packager: Packager,
    relays: Relays,
    recorder: Recorder,
    stats: crate::metrics::Streams,
    events: Webhooks,
    hooks: RwLock<Vec<Arc<dyn PublishHook>>>,
    /// Stream ownership across nodes; `None` without `[cluster]`.
    cluster: Option<Cluster>,
}

impl Registry {
    pub fn new(
        hub: Hub,
        packager: Packager,
        relays: Relays,
        recorder: Recorder,
        stats: crate::metrics::Streams,
        events: Webhooks,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                hub,
                packager,
                relays,
                recorder,
                stats,
                events,
                hooks: RwLock::new(Vec::new()),
                cluster: None,
            }),
        }
    }

    /// The registry claiming leases in `cluster` for every publish (call
    /// before the registry is cloned).
    pub fn with_cluster(mut self, cluster: Option<Cluster>) -> Registry {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.cluster = cluster,
            None => tracing::error!("internal: the cluster was set on a shared registry; ignored"),
        }
        self
    }

    /// Adds a hook run on every publish from now on.
    pub fn add_hook(&self, hook: Arc<dyn PublishHook>) {
        crate::locks::write(&self.inner.hooks).push(hook);
    }

    /// Takes `key` for a new publisher and starts everything that follows a
    /// stream (see the module docs). Fails when the stream is taken and
    /// the conflict rule keeps the current publisher (on this node or, in
    /// cluster mode, on another), or when the cluster store cannot be
    /// reached.
    pub async fn publish(
        &self,
        key: StreamKey,
        origin: Origin,
        granted: &Granted,
    ) -> Result<PublishGuard, PublishError> {
        let lease = match (&self.inner.cluster, &origin) {
            (_, Origin::Rendition { .. } | Origin::Replica { .. }) | (None, _) => None,
            (Some(cluster), _) => {
                let conflict = self.inner.hub.publish_conflict();
                // A conflict on this node is the hub's to refuse, before
                // Redis is asked.
                if conflict == PublishConflict::Reject && self.inner.hub.is_live(key.as_str()) {
                    return Err(crate::hub::PublishError::AlreadyPublishing(key.to_string()).into());
                }
                Some(cluster.claim(&key, conflict).await?)
            }
        };
        self.start(key, origin, granted, lease)
    }

    /// Publishes a transcode rendition of `source` (no lease of its own:
    /// it lives with its source's, on the node that runs the job).
    pub fn publish_rendition(
        &self,
        key: StreamKey,
        source: StreamKey,
        profile: String,
    ) -> Result<PublishGuard, PublishError> {
        let origin = Origin::Rendition { source, profile };
        self.start(key, origin, &Granted::default(), None)
    }

    fn start(
        &self,
        key: StreamKey,
        origin: Origin,
        granted: &Granted,
        lease: Option<LeaseGuard>,
    ) -> Result<PublishGuard, PublishError> {
        let inner = &*self.inner;
        let publisher = inner
            .hub
            .publish_over(&key, &origin.peer(), origin.protocol())?;
        if let Origin::Replica { owner, url } = &origin {
            info!(
                stream = key.as_str(),
                owner, url, "replica publish started (the stream is another node's)"
            );
            return Ok(PublishGuard {
                publisher,
                _recordings: Recordings::default(),
                stats: inner.stats.register(&key),
                events: None,
                key,
                protocol: origin.protocol(),
                started: Instant::now(),
                lease: None,
            });
        }
        let hooks = crate::locks::read(&inner.hooks).clone();
        for hook in &hooks {
            hook.on_publish(self, &key, &origin, granted);
        }
        inner.packager.ensure(&key);
        // Logged once the packager has taken the new session: from this
        // line on, the key never serves a previous session.
        let protocol = origin.protocol();
        match &origin {
            Origin::Client { mode, .. } => info!(
                stream = key.as_str(),
                protocol,
                mode,
                profile = granted.profile,
                "publish started"
            ),
            Origin::Rendition { source, profile } => info!(
                stream = key.as_str(),
                source = source.as_str(),
                profile,
                "rendition publish started"
            ),
            Origin::Pulled { url, source_id } => info!(
                stream = key.as_str(),
                source = source_id,
                url,
                "pulled publish started"
            ),
            Origin::Replica { .. } => {}
        }
        inner.relays.on_publish(&key);
        for target in &granted.relays {
            let req = NewRelay {
                stream: key.to_string(),
                target: target.clone(),
                tls: Default::default(),
                legacy_only: false,
            };
            match inner.relays.create(req) {
                Ok(r) => info!(
                    stream = key.as_str(),
                    relay = r.id,
                    "relay attached by the auth webhook"
                ),
                Err(CreateError::Duplicate(_)) => {}
                Err(e) => warn!(
                    stream = key.as_str(),
                    "relay from the auth webhook not started: {e}"
                ),
            }
        }
        let recordings = inner.recorder.on_publish(&inner.hub, &key);
        let stats = inner.stats.register(&key);
        let events = inner.events.clone();
        events.emit(
            "stream.started",
            Some(&key),
            started_event(&origin, granted),
        );
        Ok(PublishGuard {
            publisher,
            _recordings: recordings,
            stats,
            events: Some(events),
            key,
            protocol,
            started: Instant::now(),
            lease,
        })
    }
}

fn started_event(origin: &Origin, granted: &Granted) -> serde_json::Value {
    match origin {
        Origin::Client {
            protocol,
            peer,
            mode,
        } => serde_json::json!({
            "protocol": protocol,
            "client": peer.to_string(),
            "mode": mode,
            "profile": granted.profile,
        }),
        Origin::Rendition { source, profile } => serde_json::json!({
            "protocol": "transcode",
            "source": source.as_str(),
            "profile": profile,
        }),
        Origin::Pulled { url, source_id } => serde_json::json!({
            "protocol": "pull",
            "url": url,
            "source": source_id,
        }),
        Origin::Replica { owner, url } => serde_json::json!({
            "protocol": REPLICA_PROTOCOL,
            "owner": owner,
            "url": url,
        }),
    }
}

/// A live publish (see the module docs): send its frames through it; drop
/// it to end the publish.
pub struct PublishGuard {
    // Field order is drop order: the hub sees the publisher leave before
    // the recordings complete and the stats are unregistered.
    publisher: Publisher,
    _recordings: Recordings,
    stats: StatsGuard,
    /// `None` for a replica: the owner tells of the stream.
    events: Option<Webhooks>,
    key: StreamKey,
    protocol: &'static str,
    started: Instant,
    /// Released last, once the publish has ended here.
    lease: Option<LeaseGuard>,
}

impl PublishGuard {
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Counts an event for `/metrics` and hands it to the hub; `false` once
    /// this publisher was replaced (see [`Publisher::send`]).
    pub fn send(&self, event: StreamEvent) -> bool {
        self.stats.stats.observe(&event);
        self.publisher.send(event)
    }

    /// Whether anyone waits on the stream at low latency (see
    /// [`crate::hub::Demand`]): its connection reads it more often then.
    pub fn low_latency_wanted(&self) -> bool {
        self.publisher.low_latency_wanted()
    }

    /// Says how often the connection reads the stream now (for the API).
    pub fn set_read_period(&self, period: Option<std::time::Duration>) {
        self.publisher.demand().set_read_period(period);
    }

    /// This publish's stats (the media path stores its counters there).
    pub fn stats(&self) -> &StreamStats {
        &self.stats.stats
    }

    /// [`kicked`] without waiting: true once another publisher took the
    /// stream over here, or the cluster lease was lost (then logged, as
    /// [`kicked`] does; the caller ends the publish).
    ///
    /// [`kicked`]: PublishGuard::kicked
    pub fn is_kicked(&self) -> bool {
        if self.publisher.is_kicked() {
            return true;
        }
        let Some(why) = self.lease.as_ref().and_then(|l| l.lost_now()) else {
            return false;
        };
        warn!(
            stream = self.key.as_str(),
            "publish ended: the cluster lease was lost: {why}"
        );
        true
    }

    /// Resolves when another publisher took the stream over: on this node,
    /// or on another one that took its cluster lease.
    pub async fn kicked(&mut self) {
        let Some(lease) = self.lease.as_mut() else {
            return self.publisher.kicked().await;
        };
        tokio::select! {
            _ = self.publisher.kicked() => {}
            why = lease.lost() => {
                warn!(stream = self.key.as_str(), "publish ended: the cluster lease was lost: {why}");
            }
        }
    }
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(events) = &self.events else { return };
        let s = &self.stats.stats;
        events.emit(
            "stream.ended",
            Some(&self.key),
            serde_json::json!({
                "protocol": self.protocol,
                "frames": s.video_frames.load(Relaxed) + s.audio_frames.load(Relaxed),
                "bytes": s.bytes.load(Relaxed),
                "secs": self.started.elapsed().as_secs_f64(),
            }),
        );
    }
}

#[cfg(test)]
mod tests;
