//! The HLS/DASH viewer tracker on the media request path: what one request
//! costs (`Viewers::client` + `Viewers::record`, and the clock read the
//! route makes) with 1,000 viewers on the stream, and heap allocations per
//! request once a client is known (a counting allocator; must be 0).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use castgate::viewers::{Fetch, HttpProtocol, ViewerLimits, Viewers};
use criterion::{criterion_group, criterion_main, Criterion};

/// Counts allocations (not bytes) made through the global allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A browser's User-Agent (~120 bytes).
const UA: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const STREAM: &str = "live/bench";
/// An hour-long target: no client expires while the benchmark runs.
const TARGET: Duration = Duration::from_secs(3600);
const VIEWERS: u32 = 1000;

fn ip(n: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000 | n).to_be_bytes())
}

/// One media request as the route makes it.
fn request(v: &Viewers, n: u32, fetch: Fetch) {
    let c = v.client(ip(n), Some(UA));
    v.record(STREAM, c, fetch, TARGET, Instant::now());
}

fn benches(c: &mut Criterion) {
    let v = Viewers::new(ViewerLimits::default());
    for n in 0..VIEWERS {
        request(&v, n, Fetch::Manifest(HttpProtocol::Hls));
    }
    assert_eq!(v.count(STREAM, Instant::now()).hls, VIEWERS as usize);

    // Allocations per request of known clients, outside the timing loop.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for n in 0..10 * VIEWERS {
        let fetch = if n % 3 == 0 {
            Fetch::Manifest(HttpProtocol::Hls)
        } else {
            Fetch::Media
        };
        request(&v, n % VIEWERS, fetch);
    }
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "viewers: {allocs} allocations in {} requests of known clients",
        10 * VIEWERS
    );
    assert_eq!(allocs, 0, "the request path must not allocate");

    let mut g = c.benchmark_group("viewers");
    let mut n = 0u32;
    g.bench_function("segment_request_known_client", |b| {
        b.iter(|| {
            n = (n + 1) % VIEWERS;
            request(&v, black_box(n), Fetch::Media)
        })
    });
    g.bench_function("playlist_request_known_client", |b| {
        b.iter(|| {
            n = (n + 1) % VIEWERS;
            request(&v, black_box(n), Fetch::Manifest(HttpProtocol::Hls))
        })
    });
    g.bench_function("client_identity_only", |b| {
        b.iter(|| v.client(black_box(ip(7)), Some(black_box(UA))))
    });
    g.bench_function("count_1000_viewers", |b| {
        b.iter(|| v.count(black_box(STREAM), Instant::now()))
    });
    g.finish();
}

criterion_group!(viewers, benches);
criterion_main!(viewers);
