//! CMAF recordings: the stream cut into CMAF segments by the live packager's
//! segmenter, written to a directory with the layout castgate serves
//! (`index.m3u8`, `video.m3u8`, `audio.m3u8`, `manifest.mpd`,
//! `video/init-N.mp4`, `video/seg-N.m4s`, …), so the directory plays as it
//! is, over `/vod/PATH/` or from any static web server.
//!
//! Times start at 0 (the first frame recorded), so a recording started in
//! the middle of a live stream is a title from 0 like any other.
//!
//! Segment by segment: each segment is written when it closes, then the
//! playlists and the MPD are rewritten (a temporary file renamed over the
//! old one) to list everything written so far as a finished title (HLS
//! `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`, a static MPD). A process
//! killed mid-recording leaves a directory that plays up to its last
//! closed segment. Memory holds a few segments (the segmenter's window)
//! and the list of segments written.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

use crate::media::{MediaKind, StreamEvent};
use crate::package::model::PlaylistType;
use crate::package::segmenter::{SegmenterConfig, StreamSegmenter};
use crate::package::{dash, hls, urls};

/// The file a CMAF recording is known by (its directory's multivariant
/// playlist).
pub const INDEX: &str = urls::MULTIVARIANT;

/// Target segment duration of recordings, in seconds.
pub const SEGMENT_SECS: f64 = 4.0;

/// How long a recording's segments stay listed (its longest life).
const LISTED_MS: u64 = 30 * 24 * 3600 * 1000;

/// A CMAF recording being written.
pub struct CmafOut {
    /// The directory, absolute.
    dir: PathBuf,
    seg: StreamSegmenter,
    /// The last segment number written, per track (video, audio).
    written: [Option<u64>; 2],
    inits: HashSet<(MediaKind, u32)>,
    /// Bytes written so far (segments and inits; playlists not counted).
    pub bytes: u64,
    /// Segments written.
    pub segments: u64,
    /// The first frame's decode time: the title starts at 0 whenever the
    /// recording started in the live stream.
    base: Option<i64>,
}

fn slot(kind: MediaKind) -> usize {
    usize::from(kind == MediaKind::Audio)
}

impl CmafOut {
    /// A recording into `dir` (which must exist and be empty) of stream
    /// `key`.
    pub fn new(dir: PathBuf, key: &str) -> CmafOut {
        let config = SegmenterConfig {
            target: SEGMENT_SECS,
            part_target: SEGMENT_SECS,
            window: 2,
            extra: 1,
            aligned: false,
            low_latency: false,
        };
        let mut seg = StreamSegmenter::with_first_number(key, config, 1);
        seg.set_dvr(LISTED_MS);
        seg.set_playlist_type(PlaylistType::Vod);
        CmafOut {
            dir,
            seg,
            written: [None; 2],
            inits: HashSet::new(),
            bytes: 0,
            segments: 0,
            base: None,
        }
    }

    /// Feeds one event; writes the segments it closed. Returns the bytes
    /// written.
    pub fn write(&mut self, e: &StreamEvent) -> std::io::Result<u64> {
        match e {
            StreamEvent::Frame(f) => {
                let base = *self.base.get_or_insert(f.dts);
                let mut f = f.clone();
                // A frame before the first (audio interleaved early) joins
                // it at 0.
                f.dts = (f.dts - base).max(0);
                self.seg.push(&StreamEvent::Frame(f), SystemTime::now());
            }
            _ => self.seg.push(e, SystemTime::now()),
        }
        self.flush()
    }

    /// The stream is over: the last segments close and are written.
    pub fn finish(&mut self) -> std::io::Result<u64> {
        self.seg.end(SystemTime::now());
        self.flush()
    }

    /// Writes the segments closed since the last call, then the manifests.
    fn flush(&mut self) -> std::io::Result<u64> {
        // Segments that left the segmenter's memory were written already.
        drop(self.seg.take_dvr());
        let snap = self.seg.snapshot();
        let mut wrote = 0u64;
        for t in [&snap.video, &snap.audio].into_iter().flatten() {
            let kind = t.info.kind;
            for g in &t.segments {
                if self.written[slot(kind)].is_some_and(|n| g.number <= n) {
                    continue;
                }
                if self.inits.insert((kind, g.init)) {
                    let init = self.seg.init(kind, g.init).ok_or_else(|| {
                        std::io::Error::other(format!("init segment {} is gone", g.init))
                    })?;
                    wrote += self.put(&urls::init(kind, g.init), &[init])?;
                }
                let chunks = self.seg.segment(kind, g.number).ok_or_else(|| {
                    std::io::Error::other(format!("segment {} left memory unwritten", g.number))
                })?;
                wrote += self.put(&urls::segment(kind, g.number), &chunks)?;
                self.written[slot(kind)] = Some(g.number);
                self.segments += 1;
            }
        }
        if wrote > 0 {
            self.manifests()?;
        }
        self.bytes += wrote;
        Ok(wrote)
    }

    /// The playlists and the MPD for what is written: a finished title.
    fn manifests(&self) -> std::io::Result<()> {
        let mut snap = self.seg.snapshot();
        snap.ended = true;
        // Only what is on disk (an audio segment may lag its video one).
        for t in [&mut snap.video, &mut snap.audio].into_iter().flatten() {
            let last = self.written[slot(t.info.kind)];
            t.segments.retain(|g| last.is_some_and(|n| g.number <= n));
            t.partial = None;
        }
        snap.video = snap.video.filter(|t| !t.segments.is_empty());
        snap.audio = snap.audio.filter(|t| !t.segments.is_empty());
        for kind in [MediaKind::Video, MediaKind::Audio] {
            if let Some(p) = hls::media_playlist(&snap, kind) {
                replace(&self.dir, &urls::media_playlist(kind), p.as_bytes())?;
            }
        }
        replace(&self.dir, urls::MPD, dash::mpd(&snap, &[]).as_bytes())?;
        // Last: the file the recording is known by appears once the rest
        // is there.
        replace(&self.dir, INDEX, hls::multivariant(&snap).as_bytes())
    }

    fn put(&self, rel: &str, chunks: &[Bytes]) -> std::io::Result<u64> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, chunks.concat())?;
        Ok(chunks.iter().map(|c| c.len() as u64).sum())
    }
}

/// Writes `dir/rel` whole: a temporary file renamed over it, so a reader
/// never sees half of one.
fn replace(dir: &Path, rel: &str, body: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{rel}.tmp"));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, dir.join(rel))
}
