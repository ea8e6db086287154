//! Cluster mode: which node owns which stream, in Redis (`[cluster]`).
//!
//! Off by default (`redis_url = ""`): then nothing here runs and castgate
//! opens no connection. On, a node:
//!
//! - claims `castgate:stream:{app/key}` before a publish starts
//!   (`streams::Registry::publish` calls [`Cluster::claim`]): a JSON
//!   [`Holder`] (node, fencing token, advertised URLs) set with an expiry,
//!   the token from `INCR castgate:fence`, atomically in one script that
//!   applies `rtmp.publish_conflict` (`reject`: refused naming the owner;
//!   `takeover`: taken with a new token);
//! - renews every lease it holds each [`lease::renew_interval`] with a
//!   script that extends it only while the token is still its own; a lease
//!   taken by another node is lost and its publish ends ([`LeaseGuard::lost`]);
//! - releases a lease when its publish ends, only if it is still its own;
//! - keeps `castgate:node:{id}` (its URLs and load) alive with an expiry;
//! - lists the cluster's streams ([`Cluster::streams`], a bounded SCAN).
//!
//! A node that cannot reach Redis refuses new publishes with the reason and
//! keeps serving what it publishes (see [`lease`] for the rule).

pub mod lease;
mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::hub::PublishConflict;
use crate::locks::lock;
use crate::stream_key::StreamKey;
pub use lease::Holder;
use lease::{ClaimMode, Lease, RenewAnswer, Step};
pub use settings::Settings;

/// Key prefix of stream leases.
pub const STREAM_PREFIX: &str = "castgate:stream:";
/// Key prefix of node liveness keys.
pub const NODE_PREFIX: &str = "castgate:node:";
/// The fencing counter.
pub const FENCE_KEY: &str = "castgate:fence";
/// At most this many streams are listed by [`Cluster::streams`].
pub const MAX_LISTED: usize = 10_000;
/// At most this many nodes are listed by [`Cluster::nodes`].
pub const MAX_NODES: usize = 1000;
/// How long one Redis command or connection attempt may take.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Claims a stream. KEYS: stream, fence. ARGV: node, px, mode, seen token,
/// http, rtmp. Returns {token, current value}: token 0 when refused.
const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  if ARGV[3] == 'free' then return {0, cur} end
  if ARGV[3] == 'own' then
    local ok, h = pcall(cjson.decode, cur)
    if not ok or type(h) ~= 'table' or h.node ~= ARGV[1] then return {0, cur} end
  end
end
local t = redis.call('INCR', KEYS[2])
local seen = tonumber(ARGV[4])
if t <= seen then
  t = seen + 1
  redis.call('SET', KEYS[2], t)
end
local v = '{"node":' .. cjson.encode(ARGV[1]) .. ',"token":' .. string.format('%d', t) ..
  ',"http":' .. cjson.encode(ARGV[5]) .. ',"rtmp":' .. cjson.encode(ARGV[6]) .. '}'
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return {t, cur or ''}
"#;

/// Extends a lease only if it holds `token`. KEYS: stream. ARGV: token, px.
/// Returns {1, ''} extended, {0, ''} missing, {2, value} held by another.
const RENEW: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
if string.match(cur, '"token":(%d+)') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
return {2, cur}
"#;

/// Deletes a lease only if it holds `token`. KEYS: stream. ARGV: token.
const RELEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '"token":(%d+)') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// A live node, as its liveness key says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Node {
    pub node: String,
    #[serde(default)]
    pub http: String,
    #[serde(default)]
    pub rtmp: String,
    /// Streams it publishes (leases it holds).
    #[serde(default)]
    pub streams: u64,
    /// RTMP and SRT players and HLS/DASH viewers it serves.
    #[serde(default)]
    pub viewers: u64,
}

/// Why a claim did not take the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("stream {stream} is published on node {owner}")]
    Owned { stream: String, owner: String },
    #[error("the cluster store (Redis) cannot be reached: {0}; new publishes are refused until it answers")]
    Unreachable(String),
}

/// This node's side of the cluster (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    settings: Settings,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    leases: Mutex<HashMap<u64, Held>>,
    next_id: AtomicU64,
    /// The highest fencing token this node has seen.
    seen: AtomicU64,
    /// Whether the last command reached Redis (for the log: said once per change).
    reachable: std::sync::atomic::AtomicBool,
    /// Counts this node's viewers for its liveness key.
    load: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
}

struct Held {
    key: StreamKey,
    lease: Lease,
    lost: watch::Sender<Option<String>>,
}

/// A stream this node owns; dropping it releases the lease (if still ours).
pub struct LeaseGuard {
    cluster: Cluster,
    id: u64,
    key: StreamKey,
    lost: watch::Receiver<Option<String>>,
}

impl LeaseGuard {
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Resolves with the reason once another node took the stream (the
    /// publish must then end); never otherwise.
    /// Why the lease was lost, if it was (without waiting; see [`lost`]).
    ///
    /// [`lost`]: LeaseGuard::lost
    pub fn lost_now(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    pub async fn lost(&mut self) -> String {
        let why = match self.lost.wait_for(|l| l.is_some()).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let held = lock(&self.cluster.inner.leases).remove(&self.id);
        let Some(held) = held else { return };
        if held.lease.state() == &lease::State::Lost {
            return;
        }
        let cluster = self.cluster.clone();
        let token = held.lease.token();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { cluster.release(&held.key, token).await });
        }
    }
}

fn stream_key(key: &StreamKey) -> String {
    format!("{STREAM_PREFIX}{key}")
}

impl Cluster {
    /// `None` without `[cluster] redis_url`. The URL was checked when the
    /// config loaded.
    pub fn new(settings: &Settings) -> Option<Cluster> {
        if !settings.enabled() {
            return None;
        }
        let client = match redis::Client::open(settings.redis_url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                warn!("cluster: {e}: cluster mode off");
                return None;
            }
        };
        let node = settings.node();
        info!(node, lease = ?settings.lease, "cluster mode: stream ownership in Redis");
        Some(Cluster {
            inner: Arc::new(Inner {
                node,
                settings: settings.clone(),
                client,
                conn: tokio::sync::Mutex::new(None),
                leases: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                seen: AtomicU64::new(0),
                reachable: std::sync::atomic::AtomicBool::new(true),
                load: std::sync::OnceLock::new(),
            }),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// How the node's load (its viewers) is counted for the other nodes
    /// (set once, at start-up).
    pub fn set_load(&self, count: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.inner.load.set(Box::new(count));
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Runs `cmd` on the shared connection, connecting first if needed; a
    /// connection failure drops it (the next command reconnects).
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = {
            let mut slot = self.inner.conn.lock().await;
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(REDIS_TIMEOUT)
                        .set_response_timeout(REDIS_TIMEOUT);
                    let c = self
                        .inner
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(|e| self.unreachable(e.to_string()))?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        match cmd.query_async::<T>(&mut conn).await {
            Ok(v) => {
                if !self.inner.reachable.swap(true, Ordering::Relaxed) {
                    info!("cluster: Redis answers again");
                }
                Ok(v)
            }
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                *self.inner.conn.lock().await = None;
                Err(self.unreachable(e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn unreachable(&self, why: String) -> String {
        if self.inner.reachable.swap(false, Ordering::Relaxed) {
            warn!(
                "cluster: Redis unreachable: {why}; new publishes are refused, streams published here go on"
            );
        }
        why
    }

    fn px(&self) -> u64 {
        self.inner.settings.lease.as_millis() as u64
    }

    /// Runs the claim script: `Ok(token)`, or `Err(current holder)`.
    async fn claim_raw(
        &self,
        key: &StreamKey,
        mode: ClaimMode,
    ) -> Result<(u64, String), ClaimError> {
        let s = &self.inner.settings;
        let seen = self.inner.seen.load(Ordering::Relaxed);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM)
            .arg(2)
            .arg(stream_key(key))
            .arg(FENCE_KEY)
            .arg(&self.inner.node)
            .arg(self.px())
            .arg(mode.as_str())
            .arg(seen)
            .arg(&s.advertise_http)
            .arg(&s.advertise_rtmp);
        let (token, current): (u64, String) =
            self.run(&cmd).await.map_err(ClaimError::Unreachable)?;
        if token > 0 {
            self.inner.seen.fetch_max(token, Ordering::Relaxed);
        }
        Ok((token, current))
    }

    /// Claims `key` for a publish on this node under `conflict`.
    pub async fn claim(
        &self,
        key: &StreamKey,
        conflict: PublishConflict,
    ) -> Result<LeaseGuard, ClaimError> {
        let mode = lease::claim_mode(conflict);
        let (token, current) = self.claim_raw(key, mode).await?;
        let previous = Holder::parse(&current);
        if token == 0 {
            let owner = previous
                .map(|h| h.node)
                .unwrap_or_else(|| "unknown (not a castgate value)".into());
            return Err(ClaimError::Owned {
                stream: key.to_string(),
                owner,
            });
        }
        match previous {
            Some(h) if h.node != self.inner.node => info!(
                stream = key.as_str(),
                from = h.node,
                token,
                "cluster: stream taken over from another node"
            ),
            _ => tracing::debug!(stream = key.as_str(), token, "cluster: stream claimed"),
        }
        let (tx, rx) = watch::channel(None);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.leases).insert(
            id,
            Held {
                key: key.clone(),
                lease: Lease::claimed(token, self.inner.settings.lease, Instant::now()),
                lost: tx,
            },
        );
        Ok(LeaseGuard {
            cluster: self.clone(),
            id,
            key: key.clone(),
            lost: rx,
        })
    }

    async fn release(&self, key: &StreamKey, token: u64) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE).arg(1).arg(stream_key(key)).arg(token);
        match self.run::<i64>(&cmd).await {
            Ok(_) => tracing::debug!(stream = key.as_str(), token, "cluster: lease released"),
            Err(e) => warn!(
                stream = key.as_str(),
                "cluster: lease not released ({e}); it expires by itself"
            ),
        }
    }

    async fn renew_one(&self, key: &StreamKey, token: u64) -> RenewAnswer {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW)
            .arg(1)
            .arg(stream_key(key))
            .arg(token)
            .arg(self.px());
        match self.run::<(i64, String)>(&cmd).await {
            Ok((1, _)) => RenewAnswer::Extended,
            Ok((0, _)) => RenewAnswer::Missing,
            Ok((_, v)) => match Holder::parse(&v) {
                Some(h) => RenewAnswer::Taken(h),
                None => RenewAnswer::Taken(Holder {
                    node: "unknown (not a castgate value)".into(),
                    token: 0,
                    http: String::new(),
                    rtmp: String::new(),
                }),
            },
            Err(_) => RenewAnswer::Unreachable,
        }
    }

    /// One pass: renews every lease (ending those lost) and this node's
    /// liveness key.
    async fn tick(&self) {
        let held: Vec<(u64, StreamKey, u64)> = lock(&self.inner.leases)
            .iter()
            .filter(|(_, h)| h.lease.state() != &lease::State::Lost)
            .map(|(id, h)| (*id, h.key.clone(), h.lease.token()))
            .collect();
        let mut reachable = true;
        for (id, key, token) in held {
            // One unanswered renewal stands for the pass: no wait per lease.
            let answer = if reachable {
                self.renew_one(&key, token).await
            } else {
                RenewAnswer::Unreachable
            };
            reachable = answer != RenewAnswer::Unreachable;
            let mut step = self.apply(id, |l| l.on_renew(answer, Instant::now()));
            if step == Some(Step::Reclaim) {
                let got = match self.claim_raw(&key, ClaimMode::IfFree).await {
                    Ok((t, _)) if t > 0 => Some(Ok(t)),
                    Ok((_, cur)) => Holder::parse(&cur).map(Err),
                    Err(_) => None,
                };
                step = match got {
                    Some(got) => self.apply(id, |l| l.reclaimed(got, Instant::now())),
                    None => Some(Step::Keep),
                };
                if step == Some(Step::Keep) {
                    info!(
                        stream = key.as_str(),
                        "cluster: lease claimed again (its key was gone)"
                    );
                }
            }
            if let Some(Step::Lost(why)) = step {
                warn!(
                    stream = key.as_str(),
                    "cluster: lease lost: {why}; ending the publish"
                );
                if let Some(h) = lock(&self.inner.leases).get(&id) {
                    let _ = h.lost.send(Some(why));
                }
            }
        }
        if reachable {
            self.heartbeat().await;
        }
    }

    fn apply(&self, id: u64, f: impl FnOnce(&mut Lease) -> Step) -> Option<Step> {
        lock(&self.inner.leases)
            .get_mut(&id)
            .map(|h| f(&mut h.lease))
    }

    /// Sets `castgate:node:{id}` with its URLs and the streams it owns.
    async fn heartbeat(&self) {
        let s = &self.inner.settings;
        let streams = lock(&self.inner.leases).len();
        let value = serde_json::json!({
            "node": self.inner.node,
            "http": s.advertise_http,
            "rtmp": s.advertise_rtmp,
            "streams": streams,
            "viewers": self.inner.load.get().map_or(0, |f| f()),
        })
        .to_string();
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{NODE_PREFIX}{}", self.inner.node))
            .arg(value)
            .arg("PX")
            .arg(self.px());
        let _ = self.run::<()>(&cmd).await;
    }

    /// Renews leases and the node key until `shutdown`.
    pub async fn run_renewals(self, shutdown: crate::shutdown::Shutdown) {
        let every = lease::renew_interval(self.inner.settings.lease);
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => self.tick().await,
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// The keys under `prefix`, sorted, at most `max` (SCAN in batches: a
    /// long list never blocks Redis).
    async fn scan(&self, prefix: &str, max: usize) -> Result<Vec<String>, String> {
        let mut cursor: u64 = 0;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(500);
            let (next, batch): (u64, Vec<String>) = self.run(&cmd).await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= max {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(max);
        Ok(keys)
    }

    /// The streams the cluster holds (at most [`MAX_LISTED`]), by key.
    pub async fn streams(&self) -> Result<Vec<(String, Holder)>, String> {
        let keys = self.scan(STREAM_PREFIX, MAX_LISTED).await?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let mut cmd = redis::cmd("MGET");
            cmd.arg(chunk);
            let values: Vec<Option<String>> = self.run(&cmd).await?;
            for (k, v) in chunk.iter().zip(values) {
                if let Some(h) = v.as_deref().and_then(Holder::parse) {
                    out.push((k[STREAM_PREFIX.len()..].to_string(), h));
                }
            }
        }
        Ok(out)
    }

    /// Who holds `key`, or else `parent` (the stream a rendition or a
    /// track belongs to), in one round trip.
    pub async fn owner(&self, key: &str, parent: Option<&str>) -> Result<Option<Holder>, String> {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(format!("{STREAM_PREFIX}{key}"));
        if let Some(p) = parent {
            cmd.arg(format!("{STREAM_PREFIX}{p}"));
        }
        let values: Vec<Option<String>> = self.run(&cmd).await?;
        Ok(values.iter().flatten().find_map(|v| Holder::parse(v)))
    }

    /// The live nodes (their liveness keys), by id.
    pub async fn nodes(&self) -> Result<Vec<Node>, String> {
        let keys = self.scan(NODE_PREFIX, MAX_NODES).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&keys);
        let values: Vec<Option<String>> = self.run(&cmd).await?;
        let mut nodes: Vec<Node> = values
            .iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    /// Who holds `key` now, as Redis says.
    pub async fn holder(&self, key: &StreamKey) -> Result<Option<Holder>, String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(stream_key(key));
        let v: Option<String> = self.run(&cmd).await?;
        Ok(v.as_deref().and_then(Holder::parse))
    }
}

#[cfg(test)]
pub(crate) mod redis_tests;
