//! A subscriber's bounded queue and its drop policy.
//!
//! Past the soft limit, non-key video is dropped, and once one video frame is
//! dropped every video frame up to the next keyframe goes too (a decoder
//! cannot use P-frames whose references are gone). Audio, configuration and
//! keyframes are kept until the hard limit; past it the subscriber is closed:
//! it is too slow to follow the stream at all.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::StreamEvent;
use crate::locks::lock;
use crate::media::MediaKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub soft_bytes: usize,
    pub hard_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            soft_bytes: 2 * 1024 * 1024,
            hard_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why a subscriber stopped receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    #[error("subscriber too slow: queue passed {0} bytes")]
    TooSlow(usize),
}

#[derive(Default)]
struct Inner {
    items: VecDeque<StreamEvent>,
    bytes: usize,
    skip_video: bool,
    dropped: u64,
    closed: Option<Closed>,
}

pub(super) struct SubscriberQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl SubscriberQueue {
    pub(super) fn new() -> Self {
        SubscriberQueue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
        }
    }

    /// The GOP burst a new subscriber starts with; bounded by the GOP cache
    /// limit rather than the queue's.
    pub(super) fn push_initial(&self, events: Vec<StreamEvent>) {
        let mut q = lock(&self.inner);
        for e in events {
            q.bytes += e.cost();
            q.items.push_back(e);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Queues an event under the drop policy. Returns false when the
    /// subscriber is (now) closed and should be removed.
    pub(super) fn push(&self, event: StreamEvent, limits: &QueueLimits) -> bool {
        let mut q = lock(&self.inner);
        if q.closed.is_some() {
            return false;
        }
        let cost = event.cost();
        let over_soft = q.bytes + cost > limits.soft_bytes;
        let over_hard = q.bytes + cost > limits.hard_bytes;
        if let StreamEvent::Frame(f) = &event {
            if f.kind() == MediaKind::Video && !f.keyframe && (q.skip_video || over_soft) {
                q.skip_video = true;
                q.dropped += 1;
                return true;
            }
        }
        if over_hard {
            q.closed = Some(Closed::TooSlow(limits.hard_bytes));
            q.items.clear();
            q.bytes = 0;
            drop(q);
            self.notify.notify_one();
            return false;
        }
        if let StreamEvent::Frame(f) = &event {
            if f.kind() == MediaKind::Video && f.keyframe {
                q.skip_video = false;
            }
        }
        q.bytes += cost;
        q.items.push_back(event);
        drop(q);
        self.notify.notify_one();
        true
    }

    pub(super) async fn recv(&self) -> Result<StreamEvent, Closed> {
        loop {
            {
                let mut q = lock(&self.inner);
                if let Some(e) = q.items.pop_front() {
                    q.bytes -= e.cost();
                    return Ok(e);
                }
                if let Some(c) = q.closed {
                    return Err(c);
                }
            }
            self.notify.notified().await;
        }
    }

    pub(super) fn dropped(&self) -> u64 {
        lock(&self.inner).dropped
    }
}
