//! Per-client-address counters: how many connections (or tunnel sessions)
//! each IP address holds, so one address cannot take every slot of a
//! listener and lock everyone else out.
//!
//! The table holds an entry only while its address holds at least one
//! permit, and never more than `max_entries` of them: its memory is bounded
//! whatever the clients do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PerIpRefusal {
    /// The address already holds its share.
    #[error("{held} held by this address (limit {limit} per address)")]
    AddressFull { held: usize, limit: usize },
    /// Too many distinct addresses at once (the table's bound).
    #[error("{0} client addresses already tracked")]
    TableFull(usize),
}

#[derive(Debug)]
struct Inner {
    per_ip: usize,
    max_entries: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A shared counter map keyed by client address. Cloning shares it.
#[derive(Clone, Debug)]
pub struct PerIpLimit {
    inner: Arc<Inner>,
}

/// One slot of one address; dropping it gives the slot back.
#[derive(Debug)]
pub struct IpPermit {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl PerIpLimit {
    /// At most `per_ip` permits per address, and at most `max_entries`
    /// addresses at once (a listener's connection limit is a natural bound:
    /// every entry holds at least one connection).
    pub fn new(per_ip: usize, max_entries: usize) -> PerIpLimit {
        PerIpLimit {
            inner: Arc::new(Inner {
                per_ip,
                max_entries: max_entries.max(1),
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        crate::locks::lock(&self.inner.counts)
    }

    /// A slot for `ip` (IPv4-mapped IPv6 addresses count as their IPv4
    /// address), or why not.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<IpPermit, PerIpRefusal> {
        let ip = ip.to_canonical();
        let mut counts = self.counts();
        let entries = counts.len();
        match counts.get_mut(&ip) {
            Some(held) if *held >= self.inner.per_ip => {
                return Err(PerIpRefusal::AddressFull {
                    held: *held,
                    limit: self.inner.per_ip,
                })
            }
            Some(held) => *held += 1,
            None if self.inner.per_ip == 0 => {
                return Err(PerIpRefusal::AddressFull { held: 0, limit: 0 })
            }
            None if entries >= self.inner.max_entries => {
                return Err(PerIpRefusal::TableFull(entries))
            }
            None => {
                counts.insert(ip, 1);
            }
        }
        Ok(IpPermit {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Permits `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Addresses holding at least one permit.
    pub fn addresses(&self) -> usize {
        self.counts().len()
    }

    pub fn per_ip(&self) -> usize {
        self.inner.per_ip
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut counts = crate::locks::lock(&self.inner.counts);
        if let Some(held) = counts.get_mut(&self.ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_gets_its_share_and_no_more() {
        let limit = PerIpLimit::new(2, 100);
        let a1 = limit.try_acquire(ip("127.0.0.2")).unwrap();
        let _a2 = limit.try_acquire(ip("127.0.0.2")).unwrap();
        assert_eq!(
            limit.try_acquire(ip("127.0.0.2")).unwrap_err(),
            PerIpRefusal::AddressFull { held: 2, limit: 2 }
        );
        // Another address is unaffected.
        let _b = limit.try_acquire(ip("127.0.0.3")).unwrap();
        assert_eq!(limit.held(ip("127.0.0.2")), 2);
        // A slot given back can be taken again.
        drop(a1);
        assert_eq!(limit.held(ip("127.0.0.2")), 1);
        let _a3 = limit.try_acquire(ip("127.0.0.2")).unwrap();
    }

    #[test]
    fn mapped_ipv6_counts_as_its_ipv4_address() {
        let limit = PerIpLimit::new(1, 100);
        let _a = limit.try_acquire(ip("127.0.0.2")).unwrap();
        assert!(limit.try_acquire(ip("::ffff:127.0.0.2")).is_err());
        let _v6 = limit.try_acquire(ip("::1")).unwrap();
    }

    #[test]
    fn entries_are_bounded_and_freed() {
        let limit = PerIpLimit::new(4, 3);
        let permits: Vec<_> = (1..=3)
            .map(|i| limit.try_acquire(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(
            limit.try_acquire(ip("10.0.0.9")).unwrap_err(),
            PerIpRefusal::TableFull(3)
        );
        // A tracked address may still take more of its share.
        let extra = limit.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(limit.addresses(), 3);
        drop(extra);
        drop(permits);
        // Every slot back: no entry left behind.
        assert_eq!(limit.addresses(), 0);
        let _n = limit.try_acquire(ip("10.0.0.9")).unwrap();
        assert_eq!(limit.addresses(), 1);
    }

    #[test]
    fn zero_refuses_everyone() {
        let limit = PerIpLimit::new(0, 10);
        assert!(limit.try_acquire(ip("127.0.0.1")).is_err());
        assert_eq!(limit.addresses(), 0);
    }
}
