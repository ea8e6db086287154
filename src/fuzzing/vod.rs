//! The on-demand reader and packager (`vod`): what a file dropped under
//! `[vod] dir` meets.

use bytes::Bytes;

use crate::media::mp4::Limits;
use crate::media::{MediaKind, StreamEvent};
use crate::vod::{self, Title};

/// Inputs past this are not read (the committed seeds are smaller).
const MAX_INPUT: usize = 64 << 10;

/// A whole file through [`Title::read`] (MP4 with a small sample cap, so
/// that inputs reach it), then [`vod::package`]. Besides never panicking,
/// a title that reads:
///
/// - has frames, decode times from 0, a duration ≥ 0;
/// - its seek points (at least one) ascend, each on a keyframe at its decode time, of
///   video when the title has video frames (any kind otherwise);
/// - [`Title::seek`] answers the last point at or before the time asked,
///   or the first for a time before it; [`Title::configs_at`] of each
///   point has the configuration of the point's frame;
/// - packaged, every track lists contiguous segment numbers, the first
///   track's from 1, and every listed segment and its init segment can be
///   fetched.
pub fn vod_title(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let file = Bytes::copy_from_slice(data);
    let Ok(title) = Title::read_with(file, Limits { max_samples: 4096 }) else {
        return;
    };
    assert_eq!(title.bytes, data.len() as u64);
    let mut frames = 0;
    let mut has_video = false;
    let mut first = i64::MAX;
    for e in &title.events {
        match e {
            StreamEvent::Frame(f) => {
                assert!(f.dts >= 0, "a frame before time 0: {}", f.dts);
                first = first.min(f.dts);
                has_video |= f.kind() == MediaKind::Video;
                frames += 1;
            }
            StreamEvent::Config(_) => {}
            other => panic!("a title holds only configurations and frames: {other:?}"),
        }
    }
    assert!(frames > 0, "a title without frames");
    assert_eq!(first, 0, "the first frame at 0");
    assert!(title.duration_ms >= 0, "duration {}", title.duration_ms);
    let (v, a) = title.frame_counts();
    assert_eq!(v + a, frames);

    // Seek points.
    assert!(
        !title.seek_points.is_empty(),
        "a title without a seek point"
    );
    for (i, p) in title.seek_points.iter().enumerate() {
        if i > 0 {
            assert!(title.seek_points[i - 1].dts <= p.dts, "seek points ascend");
            assert!(title.seek_points[i - 1].index < p.index);
        }
        let StreamEvent::Frame(f) = &title.events[p.index] else {
            panic!("a seek point not on a frame");
        };
        assert!(f.keyframe, "a seek point not on a keyframe");
        assert_eq!(f.dts, p.dts);
        assert!(
            f.kind() == MediaKind::Video || !has_video,
            "an audio seek point in a title with video"
        );
        let configs = title.configs_at(p.index);
        let k = usize::from(f.kind() == MediaKind::Audio);
        let c = configs[k].as_ref().expect("a seek point's configuration");
        assert_eq!(c.kind(), f.kind());
        assert_eq!(title.seek(p.dts).map(|q| q.dts), Some(p.dts));
    }
    if let (Some(head), Some(last)) = (title.seek_points.first(), title.seek_points.last()) {
        let probes = [
            i64::MIN,
            -1,
            0,
            1,
            head.dts,
            last.dts,
            last.dts + 1,
            title.duration_ms / 2,
            title.duration_ms,
            i64::MAX,
        ];
        for ms in probes {
            let p = title.seek(ms).expect("a point when there are points");
            assert!(p.dts <= ms || p == *head, "seek({ms}) gave {p:?}");
            // The last at or before: the next one is after.
            if let Some(next) = title
                .seek_points
                .iter()
                .find(|q| q.index > p.index)
                .filter(|_| p.dts <= ms)
            {
                assert!(next.dts > ms, "seek({ms}) not the last");
            }
        }
    } else {
        assert_eq!(title.seek(0), None);
    }
    let _ = title.configs_at(usize::MAX);

    // Packaged.
    let seg = vod::package("vod/fuzz", &title, 2.0);
    let snap = seg.snapshot();
    assert!(snap.ended);
    let mut firsts = Vec::new();
    for (kind, track) in [
        (MediaKind::Video, &snap.video),
        (MediaKind::Audio, &snap.audio),
    ] {
        let Some(t) = track else { continue };
        for (i, g) in t.segments.iter().enumerate() {
            if i > 0 {
                assert_eq!(g.number, t.segments[i - 1].number + 1, "contiguous numbers");
            }
            let chunks = seg
                .segment(kind, g.number)
                .unwrap_or_else(|| panic!("{kind:?} segment {} listed, not served", g.number));
            assert!(chunks.iter().any(|c| !c.is_empty()));
            assert!(
                seg.init(kind, g.init).is_some(),
                "{kind:?} segment {} needs init {} that is not there",
                g.number,
                g.init
            );
        }
        if let Some(g) = t.segments.first() {
            firsts.push(g.number);
        }
    }
    if let Some(min) = firsts.iter().min() {
        assert_eq!(*min, 1, "numbers from 1");
    }
}
