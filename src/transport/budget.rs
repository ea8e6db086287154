//! One byte budget shared by every connection: request bodies held in
//! memory at once (`http.body_budget_bytes`). Each body's own limit bounds
//! one request; this bounds all of them together, so many clients sending
//! large bodies at once cannot exhaust memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
}

/// The shared budget. Cloning shares it.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

/// Bytes taken from the budget; dropping it gives them back.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow with [`Reservation::grow`].
    pub fn empty(&self) -> Reservation {
        Reservation {
            inner: Arc::clone(&self.inner),
            bytes: 0,
        }
    }

    /// `bytes` from the budget, or `None` if that would pass its limit.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut r = self.empty();
        r.grow(bytes).then_some(r)
    }
}

impl Reservation {
    /// Takes `more` bytes; false (nothing taken) if that would pass the limit.
    pub fn grow(&mut self, more: usize) -> bool {
        let inner = &self.inner;
        let ok = inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&n| n <= inner.limit)
            })
            .is_ok();
        if ok {
            self.bytes += more;
        }
        ok
    }

    /// Grows the reservation to at least `total` bytes.
    pub fn grow_to(&mut self, total: usize) -> bool {
        total <= self.bytes || self.grow(total - self.bytes)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.inner.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let budget = ByteBudget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none());
        assert_eq!(budget.used(), 60);
        let mut b = budget.empty();
        assert!(b.grow(30));
        assert!(b.grow_to(40));
        assert!(b.grow_to(35), "already holds 40");
        assert_eq!(b.bytes(), 40);
        assert!(!b.grow(1), "would be 101");
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(usize::MAX).is_none());
        assert_eq!(budget.used(), 0);
    }
}
