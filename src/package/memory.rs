//! The packager's memory: how many media bytes the packaged streams hold
//! (segments, parts, init segments, and spilled segments not yet written),
//! the budget (`package.memory_budget_bytes`), and the choice of what to
//! let go past it.
//!
//! Each [`Packaged`] stream keeps its own count and adds the difference to
//! the store's [`Memory`] after every change, so the total is one atomic
//! load. Past the budget, [`Store::enforce_budget`] (run by the publishers'
//! taps, at most every [`PASS_EVERY_MS`]) asks [`choose`] which streams let
//! go of what: the least watched first; for each, the segments kept past
//! the listed window are dropped, then listed closed segments go to disk
//! through the stream's DVR writer and are served from there (playlists
//! unchanged). The open segment and the newest closed ones (whose parts a
//! low-latency playlist lists) never go. When the writer's queue has no
//! room, the oldest listed segments are dropped instead (the playlist
//! starts later): memory does not grow past the budget to wait for a disk.
//!
//! [`Packaged`]: super::service::Packaged
//! [`Store::enforce_budget`]: super::service::Store::enforce_budget

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::service::Store;
use crate::metrics::{esc, Family, Render};

/// A stream requested within this many target durations counts as
/// watched (as `viewers` counts a client: a playing client asks for
/// something at least once per target duration).
pub const WATCHED_TARGETS: u64 = 3;

/// The budget is enforced at most this often (a pass locks every stream
/// once, one at a time).
pub const PASS_EVERY_MS: u64 = 50;

/// What [`choose`] knows of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Requested lately (see [`WATCHED_TARGETS`]).
    pub watched: bool,
    /// When it was last requested, in ms on the store's clock (0: never).
    pub last_request_ms: u64,
    /// Bytes of the segments kept past the listed window (no playlist
    /// lists them: they go first, and not to disk).
    pub extra_bytes: u64,
    /// The listed closed segments in memory that may go to disk, oldest
    /// first: the bytes of each (its audio and video together).
    pub spillable: Vec<u64>,
}

/// What one stream lets go of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// Drop the segments kept past the listed window.
    pub drop_extras: bool,
    /// Send this many of its oldest spillable segments to disk.
    pub spill: usize,
}

/// Which streams let go of what to free `excess` bytes: unwatched streams
/// before watched ones, then the least recently requested first (never
/// requested before any), then in the order given. Each stream gives its
/// extra segments, then its spillable segments oldest first, before the
/// next is asked. Returns `(index in streams, release)` for the streams
/// that give something, in that order; frees less than `excess` only when
/// everything that may go does.
pub fn choose(streams: &[Usage], excess: u64) -> Vec<(usize, Release)> {
    let mut order: Vec<usize> = (0..streams.len()).collect();
    order.sort_by_key(|&i| (streams[i].watched, streams[i].last_request_ms, i));
    let mut freed = 0u64;
    let mut out = Vec::new();
    for i in order {
        if freed >= excess {
            break;
        }
        let u = &streams[i];
        let mut r = Release::default();
        if u.extra_bytes > 0 {
            r.drop_extras = true;
            freed = freed.saturating_add(u.extra_bytes);
        }
        for bytes in &u.spillable {
            if freed >= excess {
                break;
            }
            r.spill += 1;
            freed = freed.saturating_add(*bytes);
        }
        if r != Release::default() {
            out.push((i, r));
        }
    }
    out
}

/// Media bytes held by one store's streams, its budget, and what was let
/// go to keep to it.
#[derive(Debug)]
pub struct Memory {
    held: AtomicU64,
    /// `u64::MAX`: no budget.
    budget: AtomicU64,
    /// Segment files (one track's segment each) sent to disk, and their bytes.
    pub spilled_segments: AtomicU64,
    pub spilled_bytes: AtomicU64,
    /// Extra segments (past the listed window) dropped under the budget.
    pub extras_dropped: AtomicU64,
    /// Listed segments dropped because they could not go to disk (the
    /// writer's queue full, or no `dvr_dir`), and their bytes.
    pub dropped_segments: AtomicU64,
    pub dropped_bytes: AtomicU64,
    epoch: Instant,
    /// The store's clock (ms from `epoch`) before which no pass starts.
    next_pass_ms: AtomicU64,
    /// Spill logs: the next allowed, and those left out since the last.
    next_log_ms: AtomicU64,
    logs_skipped: AtomicU64,
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new(u64::MAX)
    }
}

impl Memory {
    /// A ledger with `budget` bytes (`u64::MAX`: none).
    pub fn new(budget: u64) -> Memory {
        Memory {
            held: AtomicU64::new(0),
            budget: AtomicU64::new(budget),
            spilled_segments: AtomicU64::new(0),
            spilled_bytes: AtomicU64::new(0),
            extras_dropped: AtomicU64::new(0),
            dropped_segments: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
            epoch: Instant::now(),
            next_pass_ms: AtomicU64::new(0),
            next_log_ms: AtomicU64::new(0),
            logs_skipped: AtomicU64::new(0),
        }
    }

    /// Media bytes in memory now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The budget in bytes (`u64::MAX`: none).
    pub fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    pub fn set_budget(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    /// Bytes held beyond the budget.
    pub fn excess(&self) -> u64 {
        self.held().saturating_sub(self.budget())
    }

    /// Moves the count from `before` to `after` bytes.
    pub fn adjust(&self, before: u64, after: u64) {
        if after > before {
            self.held.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.held.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// The store's clock in ms (never 0, which means "never").
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether a budget pass should run now: over budget, and none ran in
    /// the last [`PASS_EVERY_MS`] (one caller wins).
    pub fn claim_pass(&self, now_ms: u64) -> bool {
        if self.excess() == 0 {
            return false;
        }
        let next = self.next_pass_ms.load(Ordering::Relaxed);
        now_ms >= next
            && self
                .next_pass_ms
                .compare_exchange(
                    next,
                    now_ms + PASS_EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether a spill log may be written now (one a second); else counts
    /// it. Returns the logs left out since the last one written.
    pub fn may_log(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_log_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_log_ms
                .compare_exchange(next, now_ms + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.logs_skipped.swap(0, Ordering::Relaxed));
        }
        self.logs_skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `/metrics`: the packager's memory, its budget, what was let go, and
/// each stream's bytes (at most `max` streams, by name).
impl Render for Store {
    fn render(&self, f: &mut Family<'_>, max: usize) {
        let m = self.memory();
        let totals: [(&str, &str, &str, u64); 7] = [
            (
                "castgate_package_memory_bytes",
                "gauge",
                "Media bytes the packaged streams hold in memory (segments, parts, init segments, segments waiting for the disk writer).",
                m.held(),
            ),
            (
                "castgate_package_memory_budget_bytes",
                "gauge",
                "package.memory_budget_bytes as applied (absent: no budget).",
                m.budget(),
            ),
            (
                "castgate_package_spilled_segments_total",
                "counter",
                "Track segments written to disk under the memory budget (still listed, served from disk).",
                m.spilled_segments.load(Ordering::Relaxed),
            ),
            (
                "castgate_package_spilled_bytes_total",
                "counter",
                "Bytes of the segments spilled to disk under the memory budget.",
                m.spilled_bytes.load(Ordering::Relaxed),
            ),
            (
                "castgate_package_extra_segments_dropped_total",
                "counter",
                "Track segments kept past the listed window dropped under the memory budget.",
                m.extras_dropped.load(Ordering::Relaxed),
            ),
            (
                "castgate_package_budget_dropped_segments_total",
                "counter",
                "Listed track segments dropped under the memory budget because the disk could not take them.",
                m.dropped_segments.load(Ordering::Relaxed),
            ),
            (
                "castgate_package_budget_dropped_bytes_total",
                "counter",
                "Bytes of the listed segments dropped under the memory budget.",
                m.dropped_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in totals {
            if name == "castgate_package_memory_budget_bytes" && v == u64::MAX {
                continue;
            }
            f.head(name, kind, help);
            f.line(name, "", v as f64);
        }
        let name = "castgate_stream_package_memory_bytes";
        f.head(
            name,
            "gauge",
            "Media bytes a packaged stream holds in memory.",
        );
        for (key, bytes) in self.memory_by_stream(max) {
            f.line(name, &format!("stream=\"{}\"", esc(&key)), bytes as f64);
        }
    }
}

/// Bytes read at most from a `/proc` or cgroup file.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Where [`machine_budget`]'s figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineMemory {
    /// The cgroup's memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    Cgroup,
    /// `/proc/meminfo`'s MemTotal.
    MemTotal,
}

/// The default budget: half the memory castgate may use, the lower of the
/// cgroup's limit and the machine's memory; `None` when neither can be
/// read.
pub fn machine_budget() -> Option<(u64, MachineMemory)> {
    let read = |path: &str| -> Option<String> {
        let mut s = String::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAX_FILE_BYTES)
            .read_to_string(&mut s)
            .ok()?;
        Some(s)
    };
    let total = read("/proc/meminfo").and_then(|t| parse_meminfo(&t));
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|t| parse_cgroup_limit(&t));
    let (bytes, from) = match (cgroup, total) {
        (Some(c), Some(t)) if c < t => (c, MachineMemory::Cgroup),
        (_, Some(t)) => (t, MachineMemory::MemTotal),
        (Some(c), None) => (c, MachineMemory::Cgroup),
        (None, None) => return None,
    };
    Some((bytes / 2, from))
}

/// MemTotal in bytes from `/proc/meminfo`'s text.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// A cgroup memory limit in bytes: `None` for `max` (v2) or a figure so
/// large it means none (v1 writes about 2^63).
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < 1 << 60).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(watched: bool, last: u64, extra: u64, spillable: &[u64]) -> Usage {
        Usage {
            watched,
            last_request_ms: last,
            extra_bytes: extra,
            spillable: spillable.to_vec(),
        }
    }

    #[test]
    fn nothing_over_nothing_chosen() {
        let s = [usage(false, 0, 100, &[10, 10])];
        assert!(choose(&s, 0).is_empty());
        assert!(choose(&[], 1000).is_empty());
    }

    /// Unwatched streams first (never requested before requested long
    /// ago), watched ones last; each gives its extras, then its oldest
    /// listed segments, before the next is asked.
    #[test]
    fn least_watched_give_first_extras_before_listed_segments() {
        let s = [
            usage(true, 900, 100, &[50, 50]),  // watched
            usage(false, 500, 100, &[50, 50]), // unwatched, requested at 500
            usage(false, 0, 100, &[50, 50]),   // never requested
        ];
        // The never-requested stream's extras are enough.
        assert_eq!(
            choose(&s, 80),
            [(
                2,
                Release {
                    drop_extras: true,
                    spill: 0
                }
            )]
        );
        // Then its listed segments, one at a time.
        assert_eq!(
            choose(&s, 130),
            [(
                2,
                Release {
                    drop_extras: true,
                    spill: 1
                }
            )]
        );
        // Then the other unwatched stream; the watched one keeps all.
        assert_eq!(
            choose(&s, 260),
            [
                (
                    2,
                    Release {
                        drop_extras: true,
                        spill: 2
                    }
                ),
                (
                    1,
                    Release {
                        drop_extras: true,
                        spill: 0
                    }
                )
            ]
        );
        // Everything that may go, and no more, when the excess is larger.
        let all = choose(&s, u64::MAX);
        assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2, 1, 0]);
        assert!(all.iter().all(|(_, r)| r.drop_extras && r.spill == 2));
    }

    /// Ties among unwatched streams: the oldest last request first, then
    /// the order given; a stream with nothing to give is not listed.
    #[test]
    fn ties_go_by_oldest_request_then_order() {
        let s = [
            usage(false, 700, 0, &[10]),
            usage(false, 300, 0, &[]),
            usage(false, 300, 0, &[10]),
            usage(false, 700, 0, &[10]),
        ];
        let order: Vec<usize> = choose(&s, 25).iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [2, 0, 3]);
    }

    #[test]
    fn meminfo_and_cgroup_limits_are_read() {
        let m = "MemTotal:       16303900 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo(m), Some(16303900 * 1024));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: lots kB\n"), None);
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(parse_cgroup_limit(""), None);
    }

    #[test]
    fn the_ledger_counts_and_gates_passes() {
        let m = Memory::new(100);
        m.adjust(0, 150);
        assert_eq!((m.held(), m.excess()), (150, 50));
        assert!(m.claim_pass(10));
        assert!(!m.claim_pass(10 + PASS_EVERY_MS - 1), "one pass at a time");
        assert!(m.claim_pass(10 + PASS_EVERY_MS));
        m.adjust(150, 90);
        assert_eq!((m.held(), m.excess()), (90, 0));
        assert!(!m.claim_pass(10_000), "under budget: no pass");
        assert_eq!(m.may_log(5), Some(0));
        assert_eq!(m.may_log(6), None);
        assert_eq!(m.may_log(1005), Some(1));
    }
}
