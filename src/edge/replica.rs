//! RTMP (and SRT) play, on this node, of a stream another node owns: one
//! pull from the owner into this node's hub, whatever the number of players.
//!
//! Every [`POLL`], the streams that players wait for here and that nobody
//! publishes here are looked up in Redis; for one another node owns, a
//! replica source (`sources::Sources::replicate`, an on-demand RTMP pull of
//! the owner's `advertise_rtmp`) is made. A replica makes one connection:
//! once it ends (the owner stopped, died or lost the stream; or nobody
//! watches any more) it is deleted, and the next pass looks the owner up
//! again, so players move to a new owner after a takeover or a failover.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::{Edge, Route};
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::sources::{SourceState, Sources};
use crate::stream_key::StreamKey;

/// How often waiting players are looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// How long a stream whose replica just ended waits before another try.
pub const RETRY: Duration = Duration::from_secs(1);

/// Runs until `shutdown`; `vod_app` (the on-demand application) is never
/// replicated: its files are on every node.
pub async fn run(
    edge: Edge,
    hub: Hub,
    sources: Sources,
    vod_app: Option<String>,
    shutdown: Shutdown,
) {
    let mut ended: HashMap<StreamKey, Instant> = HashMap::new();
    let mut timer = tokio::time::interval(POLL);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        for (id, key, state) in sources.replicas() {
            if matches!(state, SourceState::Stopped | SourceState::Failed) {
                sources.delete(id);
                debug!(stream = key.as_str(), "replica ended");
                ended.insert(key, now);
            }
        }
        ended.retain(|_, at| now.duration_since(*at) < RETRY);
        for (key, players) in hub.waited_for() {
            let Ok(key) = StreamKey::parse(&key) else {
                continue;
            };
            if vod_app.as_deref() == Some(key.app())
                || ended.contains_key(&key)
                || sources.has(key.as_str())
            {
                continue;
            }
            let Route::Owner(owner) = edge.route(key.as_str()).await else {
                continue;
            };
            if owner.rtmp.is_empty() {
                continue;
            }
            match sources.replicate(&key, &owner.node, &owner.rtmp) {
                Ok(id) => info!(
                    stream = key.as_str(),
                    owner = owner.node,
                    source = id,
                    players,
                    "pulling the stream from its owner for this node's players"
                ),
                Err(e) => {
                    debug!(stream = key.as_str(), "replica not made: {e}");
                    ended.insert(key, now);
                }
            }
        }
    }
}
