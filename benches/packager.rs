//! The packager on a realistic 720p30 stream (H.264 High with B-frames,
//! ~3 Mbps, + AAC): frames per second through ingest events -> CMAF parts
//! and segments, and heap allocations per frame (a counting allocator).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use castgate::hub::StreamEvent;
use castgate::media::flv::Ingest;
use castgate::media::MediaKind;
use castgate::package::segmenter::{SegmenterConfig, StreamSegmenter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

fn events() -> Vec<StreamEvent> {
    let mut ingest = Ingest::new();
    let mut events = vec![StreamEvent::PublisherStarted];
    for (t, ts, body) in common::tags_720p() {
        let kind = if t == 9 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        ingest
            .media(kind, ts, body, |e| events.push(e))
            .expect("fixture tags parse");
    }
    events
}

fn package(events: &[StreamEvent]) -> StreamSegmenter {
    let now = SystemTime::now();
    let mut seg = StreamSegmenter::new("live/bench", SegmenterConfig::default(), now);
    for e in events {
        seg.push(e, now);
    }
    seg.end(now);
    seg
}

fn benches(c: &mut Criterion) {
    let events = events();
    let frames = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Frame(_)))
        .count() as u64;

    // Allocations per frame, measured once outside the timing loop.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let seg = package(&events);
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(seg.stats.write_errors, 0);
    let video = seg.snapshot().video.expect("video segments");
    let secs: f64 = video
        .segments
        .iter()
        .map(|s| s.duration as f64 / 90_000.0)
        .sum();
    assert!(secs > 9.0, "only {secs} s of video packaged");
    println!(
        "packager_720p: {frames} frames, {allocs} allocations, {:.2} allocations per frame",
        allocs as f64 / frames as f64
    );

    let mut g = c.benchmark_group("packager_720p");
    g.throughput(Throughput::Elements(frames));
    g.bench_function("frames_to_cmaf_segments", |b| b.iter(|| package(&events)));
    g.finish();
}

criterion_group!(packager, benches);
criterion_main!(packager);
