//! The packaging service: one task per published stream that feeds the
//! stream's segmenter from the hub, closes segments when the publisher goes,
//! waits out the grace period for it to return, ends the stream otherwise,
//! and drops it from memory after the retention time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::segmenter::{SegmenterConfig, StreamSegmenter};
use crate::hub::{Hub, StreamEvent};

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
}

impl Store {
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
        }
    }
}

/// Starts and tracks packager tasks.
#[derive(Clone)]
pub struct Packager {
    hub: Hub,
    store: Store,
    config: PackagerConfig,
    running: Arc<Mutex<HashMap<String, Arc<Mutex<StreamSegmenter>>>>>,
}

impl Packager {
    pub fn new(hub: Hub, store: Store, config: PackagerConfig) -> Self {
        Packager {
            hub,
            store,
            config,
            running: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes sure `key` is being packaged. Called when a publish starts,
    /// before any media flows; a stream already packaged (its publisher
    /// returning within the grace period) keeps its task and playlist.
    pub fn ensure(&self, key: &str) {
        let mut running = lock(&self.running);
        if running.contains_key(key) {
            return;
        }
        let seg = Arc::new(Mutex::new(StreamSegmenter::new(key, self.config.segmenter)));
        running.insert(key.to_string(), seg.clone());
        self.store.insert(key, seg.clone());
        let subscriber = self.hub.subscribe(key);
        let this = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            this.run(&key, subscriber, seg.clone()).await;
            lock(&this.running).remove(&key);
            // Keep the ended stream for late players, then forget it (unless
            // a new publish replaced it meanwhile).
            tokio::time::sleep(this.config.retention).await;
            this.store.remove_if_same(&key, &seg);
            info!(stream = key, "packaged stream dropped after retention");
        });
    }

    async fn run(
        &self,
        key: &str,
        subscriber: crate::hub::Subscriber,
        seg: Arc<Mutex<StreamSegmenter>>,
    ) {
        info!(stream = key, "packaging started");
        let mut gone_since: Option<tokio::time::Instant> = None;
        loop {
            let event = match gone_since {
                None => subscriber.recv().await,
                Some(t) => {
                    match tokio::time::timeout_at(t + self.config.grace, subscriber.recv()).await {
                        Ok(ev) => ev,
                        Err(_) => break,
                    }
                }
            };
            let event = match event {
                Ok(e) => e,
                Err(closed) => {
                    warn!(
                        stream = key,
                        "packager fell behind and was cut off: {closed}"
                    );
                    break;
                }
            };
            match event {
                StreamEvent::PublisherStopped => gone_since = Some(tokio::time::Instant::now()),
                StreamEvent::PublisherStarted => gone_since = None,
                _ => {}
            }
            lock(&seg).push(&event, SystemTime::now());
        }
        let mut s = lock(&seg);
        s.end();
        info!(stream = key, stats = ?s.stats, "packaging ended");
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
