//! Events out: `stream.started`, `stream.ended`, `relay.state_changed`,
//! `transcode.failed` (and any other kind a module emits), POSTed as JSON
//! to each configured URL, signed, in order, retried with backoff.
//!
//! [`Webhooks::emit`] is the hook, on a handle `app` builds once and hands
//! to what emits (the stream registry, relays, transcode jobs): it
//! only locks a short queue and wakes a task, never waits for the network,
//! so a slow or dead receiver cannot touch the media path. Each URL has its
//! own bounded queue and delivery task; when a queue is full its oldest
//! event is dropped (counted and logged).
//!
//! Signature: `X-Castgate-Signature: sha256=HEX` with
//! `HEX = hex(HMAC-SHA256(secret, "{X-Castgate-Timestamp}.{body}"))`; the
//! timestamp is the attempt's (Unix seconds), so receivers can refuse
//! replays.

pub mod client;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::settings::{secs, secs_within, Invalid, Section};
use client::Endpoint;

/// `[webhooks]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub urls: Vec<String>,
    pub secret: String,
    pub queue_size: usize,
    #[serde(rename = "timeout_secs", with = "secs")]
    pub timeout: Duration,
    #[serde(rename = "backoff_initial_secs", with = "secs")]
    pub backoff_initial: Duration,
    #[serde(rename = "backoff_max_secs", with = "secs")]
    pub backoff_max: Duration,
    pub max_attempts: u32,
}

impl Section for Settings {
    const NAME: &'static str = "webhooks";
    /// A reload replaces the dispatcher ([`configure`]) when anything changed.
    const LIVE: &'static [&'static str] = &[
        "urls",
        "secret",
        "queue_size",
        "timeout_secs",
        "backoff_initial_secs",
        "backoff_max_secs",
        "max_attempts",
    ];

    fn validate(&self) -> Result<(), Invalid> {
        let invalid = |key: &str, reason: String| Err(Invalid::new(key, reason));
        for u in &self.urls {
            if let Err(e) = Endpoint::parse(u) {
                return invalid("webhooks.urls", e);
            }
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            return invalid(
                "webhooks.queue_size",
                "must be between 1 and 1000000".into(),
            );
        }
        if !secs_within(self.timeout, 0.1, 600.0) {
            return invalid("webhooks.timeout_secs", "must be in [0.1, 600]".into());
        }
        if !(self.backoff_initial.as_secs_f64() >= 0.01
            && self.backoff_initial <= self.backoff_max
            && self.backoff_max.as_secs_f64() <= 3600.0)
        {
            return invalid(
                "webhooks.backoff_initial_secs",
                "must be in [0.01, webhooks.backoff_max_secs], and that at most 3600".into(),
            );
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return invalid("webhooks.max_attempts", "must be between 1 and 1000".into());
        }
        Ok(())
    }
}

/// One event as POSTed.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Rises by one per event in this process (receivers can spot gaps).
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339, when it happened.
    pub time: String,
    /// `app/key`, when the event is about a stream.
    pub stream: Option<String>,
    pub data: serde_json::Value,
}

/// HMAC-SHA256 of `"{timestamp}.{body}"` in lower-case hex.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Delivery counters, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    /// Given up after max_attempts, or pushed out of a full queue.
    pub dropped: AtomicU64,
}

/// The event dispatcher: built once (see `app`) and handed to whatever
/// emits events (the stream registry, relays, transcode jobs) and to
/// `/metrics` for its counters. Cheap to clone; clones share everything.
/// Without [`Webhooks::configure`] (or with no URL), emitting does nothing.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

struct Shared {
    /// The dispatcher of the current config (none: events are off).
    current: ArcSwapOption<Dispatcher>,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            shared: Arc::new(Shared {
                current: ArcSwapOption::const_empty(),
                next_id: AtomicU64::new(1),
                counters: Arc::default(),
            }),
        }
    }
}

impl Webhooks {
    /// Delivery counters, for `/metrics`.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Queues an event for every configured URL; returns at once. A no-op
    /// when no URL is configured.
    pub fn emit(&self, kind: &str, stream: Option<&str>, data: serde_json::Value) {
        let Some(d) = self.shared.current.load_full() else {
            return;
        };
        let event = Event {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            kind: kind.to_string(),
            time: crate::timefmt::rfc3339_millis(SystemTime::now()),
            stream: stream.map(str::to_string),
            data,
        };
        let body = match serde_json::to_vec(&event) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                warn!("webhook event {kind} not serialisable: {e}");
                return;
            }
        };
        for sink in &d.sinks {
            sink.push(kind, body.clone());
        }
    }

    /// Starts delivering to `section`'s URLs (replacing the previous set;
    /// its queued events are still delivered). Call on a runtime. The
    /// config was validated, so a URL that no longer parses is skipped with
    /// a warning.
    pub fn configure(&self, section: &Settings) {
        if let Some(old) = self.shared.current.load_full() {
            if old.section == *section {
                return;
            }
        }
        if section.urls.is_empty() {
            self.shared.current.store(None);
            return;
        }
        let mut sinks = Vec::new();
        for u in &section.urls {
            match Endpoint::parse(u) {
                Ok(ep) => {
                    info!(url = ep.redacted(), "webhook events on");
                    let sink = Arc::new(Sink {
                        ep,
                        queue: Mutex::new(VecDeque::new()),
                        wake: Notify::new(),
                        section: section.clone(),
                        counters: Arc::clone(&self.shared.counters),
                    });
                    tokio::spawn(deliver(Arc::downgrade(&sink)));
                    sinks.push(sink);
                }
                Err(e) => warn!("webhook URL skipped: {e}"),
            }
        }
        self.shared.current.store(Some(Arc::new(Dispatcher {
            section: section.clone(),
            sinks,
        })));
    }

    /// Stops accepting events and waits (up to `limit`) for the queues to
    /// empty: the last events (streams ended at shutdown) go out.
    pub async fn flush(&self, limit: Duration) {
        let Some(d) = self.shared.current.swap(None) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + limit;
        for sink in &d.sinks {
            while !sink.lock().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

struct Dispatcher {
    section: Settings,
    sinks: Vec<Arc<Sink>>,
}

/// One URL's queue.
struct Sink {
    ep: Endpoint,
    queue: Mutex<VecDeque<(String, Bytes)>>,
    wake: Notify,
    section: Settings,
    counters: Arc<Counters>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, VecDeque<(String, Bytes)>> {
        crate::locks::lock(&self.queue)
    }

    fn push(&self, kind: &str, body: Bytes) {
        let dropped = {
            let mut q = self.lock();
            let dropped = if q.len() >= self.section.queue_size {
                q.pop_front()
            } else {
                None
            };
            q.push_back((kind.to_string(), body));
            dropped
        };
        if let Some((k, _)) = dropped {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                url = self.ep.redacted(),
                event = k,
                "webhook queue full: oldest event dropped"
            );
        }
        self.wake.notify_one();
    }
}

/// Delivers one URL's events in order while its sink is referenced by a
/// dispatcher (or still holds events).
async fn deliver(sink: std::sync::Weak<Sink>) {
    loop {
        let Some(s) = sink.upgrade() else {
            return;
        };
        let next = s.lock().front().cloned();
        let Some((kind, body)) = next else {
            // Wait for an event, but let go of the sink now and then so a
            // replaced dispatcher's task ends.
            let _ = tokio::time::timeout(Duration::from_secs(1), s.wake.notified()).await;
            continue;
        };
        let ok = send_with_retries(&s, &kind, &body).await;
        {
            let mut q = s.lock();
            // The front is still this event unless a full queue pushed it out.
            if q.front().is_some_and(|(_, b)| b.as_ptr() == body.as_ptr()) {
                q.pop_front();
            }
        }
        if ok {
            s.counters.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send_with_retries(s: &Sink, kind: &str, body: &Bytes) -> bool {
    let c = &s.section;
    let mut backoff = c.backoff_initial;
    let max = c.backoff_max;
    for attempt in 1..=c.max_attempts {
        let ts = crate::timefmt::unix_secs(SystemTime::now());
        let headers = [
            ("x-castgate-event", kind.to_string()),
            ("x-castgate-timestamp", ts.to_string()),
            (
                "x-castgate-signature",
                format!("sha256={}", signature(&c.secret, ts, body)),
            ),
        ];
        let limit = c.timeout;
        let err = match client::post_json(&s.ep, &headers, body.clone(), limit).await {
            Ok(r) if (200..300).contains(&r.status) => return true,
            Ok(r) => format!("answered {}", r.status),
            Err(e) => e,
        };
        s.counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if attempt == c.max_attempts {
            warn!(
                url = s.ep.redacted(),
                event = kind,
                attempt,
                "webhook event dropped: {err}"
            );
            return false;
        }
        warn!(
            url = s.ep.redacted(),
            event = kind,
            attempt,
            retry_in = ?backoff,
            "webhook delivery failed: {err}"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Python: hmac.new(b"key", b"1.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("key", 1, b"{}"),
            "1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(signature("key", 2, b"{}"), signature("key", 1, b"{}"));
    }
}
