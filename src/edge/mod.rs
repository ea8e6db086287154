//! Serving, on any node of a cluster, a stream another node owns.
//!
//! A cluster node (`[cluster]`) is asked for streams wherever they are
//! published: a load balancer or a CDN sends a viewer to any node. This
//! module answers for the streams this node does not publish:
//!
//! - **HLS and DASH** ([`Edge::route`], [`Edge::get`]): the request goes to
//!   the owner (its `advertise_http`, from Redis) with the same path and
//!   query, so segments are byte-identical on every node. Answers are
//!   shared: every request for a URL while it is being fetched waits on
//!   the one upstream request (`answer`: coalescing, a low-latency segment
//!   streamed as it grows), and what the owner marks cacheable is kept
//!   (`cache`: segments and parts, playlists and MPDs for their
//!   `max-age`). LL-HLS blocking requests are forwarded as they are: the
//!   owner holds them.
//! - **RTMP and SRT play** (`replica`): a player of a stream owned
//!   elsewhere makes this node pull it once from the owner over RTMP into
//!   its own hub (an on-demand source), whatever the number of players.
//!
//! Who owns a stream is asked of Redis at most once a second per stream
//! ([`OWNER_TTL`]). A request that already comes from a node (it carries
//! [`upstream::NODE_HEADER`]) is never forwarded again.

pub mod answer;
pub mod cache;
pub mod replica;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Holder};
use crate::hub::Hub;
use crate::locks::lock;
use crate::webhooks::client::Endpoint;
use answer::Answer;
use cache::Cache;
use upstream::Upstreams;

/// How long an owner looked up in Redis is believed.
pub const OWNER_TTL: Duration = Duration::from_secs(1);
/// Redis lookups of owners in flight at most.
pub const MAX_LOOKUPS: usize = 64;
/// Owners remembered at most (then the memory starts over).
const MAX_OWNERS: usize = 10_000;
/// How long a lookup from outside the runtime is waited for.
pub const BLOCKING_LOOKUP: Duration = Duration::from_millis(600);
/// Fetches in flight at most; past it a request is answered 503.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Where a media request is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here: the stream is published on this node, or nowhere.
    Local,
    /// At the owner, another node.
    Owner(Holder),
}

/// How a forwarded request was answered (the `result` label of
/// `castgate_edge_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache.
    Hit,
    /// Joined a fetch in flight.
    Coalesced,
    /// Started a fetch.
    Fetched,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Coalesced => "coalesced",
            Outcome::Fetched => "fetched",
        }
    }
}

/// This node's edge (cheap to clone).
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    hub: Hub,
    owners: Mutex<HashMap<String, (Instant, Option<Holder>)>>,
    /// Redis lookups in flight (requests for random names must not turn
    /// into as many Redis calls).
    lookups: tokio::sync::Semaphore,
    shared: Mutex<Shared>,
    upstreams: Upstreams,
}

struct Shared {
    cache: Cache<Arc<Answer>>,
    in_flight: HashMap<String, Arc<Answer>>,
}

impl Edge {
    pub fn new(cluster: Cluster, hub: Hub) -> Edge {
        let budget = cluster.settings().cache_bytes as usize;
        Edge {
            inner: Arc::new(Inner {
                cluster,
                hub,
                owners: Mutex::new(HashMap::new()),
                lookups: tokio::sync::Semaphore::new(MAX_LOOKUPS),
                shared: Mutex::new(Shared {
                    cache: Cache::new(budget),
                    in_flight: HashMap::new(),
                }),
                upstreams: Upstreams::default(),
            }),
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// Where a request for `key` (a stream, or a rendition or track
    /// `APP/NAME/SUB` of one) is answered.
    pub async fn route(&self, key: &str) -> Route {
        if self.publishes(key) || parent(key).is_some_and(|p| self.publishes(p)) {
            return Route::Local;
        }
        match self.owner(key).await {
            Some(h) if h.node != self.inner.cluster.node() && !h.http.is_empty() => Route::Owner(h),
            _ => Route::Local,
        }
    }

    /// Whether this node publishes `key` (a replica of another node's
    /// stream does not count).
    fn publishes(&self, key: &str) -> bool {
        self.inner
            .hub
            .publisher_protocol(key)
            .is_some_and(|p| p != crate::streams::REPLICA_PROTOCOL)
    }

    /// The node that owns `key` (or its parent), as Redis said within
    /// [`OWNER_TTL`]; `None` when nobody does or Redis does not answer.
    pub async fn owner(&self, key: &str) -> Option<Holder> {
        let now = Instant::now();
        if let Some((at, h)) = lock(&self.inner.owners).get(key) {
            if now.duration_since(*at) < OWNER_TTL {
                return h.clone();
            }
        }
        // Past the budget, a request is answered here (a 404 for a name
        // nobody publishes) rather than queued behind Redis.
        let Ok(_permit) = self.inner.lookups.try_acquire() else {
            tracing::debug!(
                stream = key,
                "edge: too many owner lookups at once: answered here"
            );
            return None;
        };
        let found = match self.inner.cluster.owner(key, parent(key)).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(stream = key, "edge: owner unknown ({e}): answered here");
                None
            }
        };
        let mut owners = lock(&self.inner.owners);
        if owners.len() >= MAX_OWNERS {
            owners.clear();
        }
        owners.insert(key.to_string(), (now, found.clone()));
        found
    }

    /// Whether another node owns `key`, for callers that cannot wait
    /// (SRT admission runs in libsrt's thread, and its later check in a
    /// task): the lookup runs on `rt`, at most [`BLOCKING_LOOKUP`].
    pub fn owned_elsewhere_blocking(&self, key: &str, rt: &tokio::runtime::Handle) -> bool {
        let lookup = async {
            tokio::time::timeout(BLOCKING_LOOKUP, self.route(key))
                .await
                .is_ok_and(|r| matches!(r, Route::Owner(_)))
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // On a worker: it stops taking tasks while it waits.
            tokio::task::block_in_place(|| rt.block_on(lookup))
        } else {
            rt.block_on(lookup)
        }
    }

    /// Forgets what was looked up for `key` (its owner failed to answer).
    pub fn forget_owner(&self, key: &str) {
        lock(&self.inner.owners).remove(key);
    }

    /// The owner's answer for `path_and_query`: from the cache, a fetch in
    /// flight, or a new fetch (run in its own task, so a client leaving does
    /// not cut it off for the others). `host` is the client's (it changes
    /// an MPD, and so its cache key). `Err` when too many are in flight.
    pub fn get(
        &self,
        owner: &Holder,
        path_and_query: &str,
        host: Option<&str>,
    ) -> Result<(Arc<Answer>, Outcome), String> {
        let url = match host {
            Some(h) if path_and_query.ends_with(".mpd") || path_and_query.contains(".mpd?") => {
                format!("{h}{path_and_query}")
            }
            _ => path_and_query.to_string(),
        };
        let now = Instant::now();
        let answer = {
            let mut shared = lock(&self.inner.shared);
            if let Some(a) = shared.cache.get(&url, now) {
                return Ok((a, Outcome::Hit));
            }
            if let Some(a) = shared.in_flight.get(&url) {
                return Ok((a.clone(), Outcome::Coalesced));
            }
            if shared.in_flight.len() >= MAX_IN_FLIGHT {
                return Err(format!(
                    "{MAX_IN_FLIGHT} requests to other nodes are in flight"
                ));
            }
            let a = Arc::new(Answer::default());
            shared.in_flight.insert(url.clone(), a.clone());
            a
        };
        let ep =
            Endpoint::parse(&owner.http).map_err(|e| format!("the owner's advertise_http: {e}"));
        let edge = self.clone();
        let path_and_query = path_and_query.to_string();
        let host = host.map(str::to_string);
        let fetched = answer.clone();
        tokio::spawn(async move {
            match ep {
                Ok(ep) => {
                    edge.inner
                        .upstreams
                        .fetch(
                            &ep,
                            &path_and_query,
                            host.as_deref(),
                            edge.inner.cluster.node(),
                            &fetched,
                        )
                        .await
                }
                Err(e) => fetched.finish(Err(e)),
            }
            edge.settle(url, fetched);
        });
        Ok((answer, Outcome::Fetched))
    }

    /// A fetch ended: out of the in-flight map, into the cache when the
    /// owner allows it.
    fn settle(&self, url: String, answer: Arc<Answer>) {
        let keep = answer.complete().and_then(|(_, len)| {
            let head = futures_util::FutureExt::now_or_never(answer.head())?.ok()?;
            let ttl = cache::ttl(head.cache_control.as_deref().unwrap_or(""))?;
            (head.status == 200).then_some((len, ttl))
        });
        let mut shared = lock(&self.inner.shared);
        shared.in_flight.remove(&url);
        if let Some((len, ttl)) = keep {
            shared.cache.insert(url, answer, len, ttl, Instant::now());
        }
    }

    /// Bytes and entries in the cache, fetches in flight.
    pub fn cache_stats(&self) -> (usize, usize, usize) {
        let s = lock(&self.inner.shared);
        (s.cache.bytes(), s.cache.len(), s.in_flight.len())
    }
}

/// `APP/NAME` of `APP/NAME/SUB` (a rendition or a track); `None` for a
/// plain stream key.
pub fn parent(key: &str) -> Option<&str> {
    let (head, _) = key.rsplit_once('/')?;
    head.contains('/').then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_the_stream_of_a_rendition_or_track() {
        assert_eq!(parent("live/cam/720p"), Some("live/cam"));
        assert_eq!(parent("live/cam/a/b"), Some("live/cam/a"));
        assert_eq!(parent("live/cam"), None);
        assert_eq!(parent("cam"), None);
    }
}
