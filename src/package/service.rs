//! The packaging service: a hub tap per published stream feeds the stream's
//! segmenter synchronously (segments close when the publisher goes), and a
//! small task per stream waits out the grace period for the publisher to
//! return, ends the stream otherwise, and drops it from memory after the
//! retention time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info};

use super::segmenter::{SegmenterConfig, StreamSegmenter};
use crate::hub::{Hub, StreamEvent, Tap, TapHandle};

#[derive(Clone, Copy, Debug)]
pub struct PackagerConfig {
    pub segmenter: SegmenterConfig,
    /// A publisher returning within this time continues the same playlist.
    pub grace: Duration,
    /// An ended stream stays downloadable this long.
    pub retention: Duration,
}

/// Every packaged stream, by `app/key`, shared with the HTTP routes.
#[derive(Clone, Default)]
pub struct Store {
    streams: Arc<Mutex<HashMap<String, Arc<Mutex<StreamSegmenter>>>>>,
    /// Transcoded streams: source key -> its renditions' names (each packaged
    /// as `KEY/NAME`), for the multivariant playlist and the MPD.
    ladders: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Store {
    /// Declares `key`'s renditions (`key/NAME` streams), listed in its
    /// manifests once they have segments.
    pub fn set_ladder(&self, key: &str, renditions: Vec<String>) {
        lock(&self.ladders).insert(key.to_string(), renditions);
    }

    /// The renditions of `key` (empty when it is not transcoded).
    pub fn ladder(&self, key: &str) -> Vec<String> {
        lock(&self.ladders).get(key).cloned().unwrap_or_default()
    }

    pub fn get(&self, key: &str) -> Option<Arc<Mutex<StreamSegmenter>>> {
        lock(&self.streams).get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = lock(&self.streams).keys().cloned().collect();
        k.sort();
        k
    }

    fn insert(&self, key: &str, s: Arc<Mutex<StreamSegmenter>>) {
        lock(&self.streams).insert(key.to_string(), s);
    }

    fn remove_if_same(&self, key: &str, s: &Arc<Mutex<StreamSegmenter>>) {
        let mut map = lock(&self.streams);
        if map.get(key).is_some_and(|cur| Arc::ptr_eq(cur, s)) {
            map.remove(key);
            lock(&self.ladders).remove(key);
        }
    }
}

/// Starts and tracks packaged streams.
#[derive(Clone)]
pub struct Packager {
    hub: Hub,
    store: Store,
    config: PackagerConfig,
    running: Arc<Mutex<HashMap<String, Arc<Mutex<StreamSegmenter>>>>>,
    /// Streams segmented on the aligned grid (see [`Packager::align`]).
    aligned: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// Feeds one stream's segmenter from the hub, on the publisher's thread.
struct SegmenterTap {
    seg: Arc<Mutex<StreamSegmenter>>,
    /// Whether a publisher is live, for the grace-period timer.
    live: watch::Sender<bool>,
    /// Set when the segmenter panicked: it is not fed again.
    broken: AtomicBool,
    key: String,
}

impl Tap for SegmenterTap {
    fn event(&self, event: &StreamEvent) {
        match event {
            StreamEvent::PublisherStarted => {
                self.live.send_replace(true);
            }
            StreamEvent::PublisherStopped => {
                self.live.send_replace(false);
            }
            _ => {}
        }
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        // The tap runs on the publisher's connection: a packager bug must
        // end this stream's packaging, not the publish or its RTMP players.
        let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lock(&self.seg).push(event, SystemTime::now())
        }));
        if pushed.is_err() {
            self.broken.store(true, Ordering::Relaxed);
            error!(
                stream = self.key,
                "packaging failed (a bug); HLS and DASH for this stream stop here"
            );
        }
    }
}

impl Packager {
    pub fn new(hub: Hub, store: Store, config: PackagerConfig) -> Self {
        Packager {
            hub,
            store,
            config,
            running: Arc::default(),
            aligned: Arc::default(),
        }
    }

    /// Segments `key` on the aligned grid ([`SegmenterConfig::aligned`])
    /// from its next [`Packager::ensure`] on: a transcode ladder's source and
    /// renditions cut at the same keyframes. Call before `ensure`.
    pub fn align(&self, key: &str) {
        lock(&self.aligned).insert(key.to_string());
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes sure `key` is being packaged. Called when a publish starts,
    /// before any media flows; a stream already packaged (its publisher
    /// returning within the grace period) keeps its segmenter and playlist.
    pub fn ensure(&self, key: &str) {
        let mut running = lock(&self.running);
        if running.contains_key(key) {
            return;
        }
        info!(stream = key, "packaging started");
        let segmenter = SegmenterConfig {
            aligned: lock(&self.aligned).contains(key),
            ..self.config.segmenter
        };
        let seg = Arc::new(Mutex::new(StreamSegmenter::new(key, segmenter)));
        running.insert(key.to_string(), seg.clone());
        self.store.insert(key, seg.clone());
        let (live, live_rx) = watch::channel(false);
        let tap = self.hub.tap(
            key,
            Arc::new(SegmenterTap {
                seg: seg.clone(),
                live,
                broken: AtomicBool::new(false),
                key: key.to_string(),
            }),
        );
        let this = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            this.watch_grace(&key, tap, live_rx, &seg).await;
            // Keep the ended stream for late players, then forget it (unless
            // a new publish replaced it meanwhile).
            tokio::time::sleep(this.config.retention).await;
            this.store.remove_if_same(&key, &seg);
            info!(stream = key, "packaged stream dropped after retention");
        });
    }

    /// Ends the stream once its publisher has been gone for the grace period.
    async fn watch_grace(
        &self,
        key: &str,
        tap: TapHandle,
        mut live: watch::Receiver<bool>,
        seg: &Arc<Mutex<StreamSegmenter>>,
    ) {
        loop {
            if live.wait_for(|l| !*l).await.is_err() {
                break;
            }
            let deadline = tokio::time::Instant::now() + self.config.grace;
            if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, live.wait_for(|l| *l)).await {
                continue;
            }
            // Decide under the registry lock, so a publish that arrives now
            // either finds this stream still running or starts a new one.
            let mut running = lock(&self.running);
            if *live.borrow() {
                continue;
            }
            running.remove(key);
            lock(&self.aligned).remove(key);
            drop(tap);
            break;
        }
        let mut s = lock(seg);
        s.end();
        info!(stream = key, stats = ?s.stats, "packaging ended");
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
