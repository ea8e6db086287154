//! A media file read for on-demand play: its tracks' configurations and
//! every frame in decode order, on one timeline starting at 0.
//!
//! Sans-I/O: [`Title::read`] takes the file's bytes (the caller bounds
//! their size) and returns the title or why the file does not play. Frames
//! are slices of those bytes, never copies. MP4 files (progressive or
//! fragmented) go through [`crate::media::mp4`], FLV files through
//! [`crate::media::flv::Ingest`], the same reader live RTMP publishes use,
//! so a recording plays back as it was received.

use std::sync::Arc;

use bytes::Bytes;

use crate::amf::{amf0, Budget, DecodeLimits};
use crate::media::flv::Ingest;
use crate::media::flv_file::{self, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use crate::media::mp4::{Limits, Mp4Error, Mp4File};
use crate::media::{CodecConfig, MediaKind, Metadata, StreamEvent};

/// The containers castgate plays on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Flv,
    Mp4,
    /// A CMAF recording's directory: each track's init segment and media
    /// segments.
    Cmaf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Flv => "flv",
            Format::Mp4 => "mp4",
            Format::Cmaf => "cmaf",
        }
    }
}

/// Why a file does not play.
#[derive(Debug, thiserror::Error)]
pub enum TitleError {
    #[error("neither an FLV nor an MP4 file")]
    NotMedia,
    #[error("MP4: {0}")]
    Mp4(#[from] Mp4Error),
    #[error("FLV: {0}")]
    Flv(#[from] flv_file::FlvFileError),
    #[error("no frame castgate can play (H.264, HEVC, AV1, VP9 video; AAC, Opus, MP3, FLAC, AC-3 audio)")]
    NoFrames,
    /// Frames, but none a player can start from (video without a
    /// keyframe): nothing of it would decode.
    #[error("no keyframe to start playing from")]
    NoKeyframe,
}

/// Where playing can start: a video keyframe (any frame of an audio-only
/// title).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeekPoint {
    /// Decode time in ms.
    pub dts: i64,
    /// Index of its frame in [`Title::events`].
    pub index: usize,
}

/// A file ready to play.
#[derive(Debug)]
pub struct Title {
    pub format: Format,
    /// The configurations in force at the start (the first of each kind).
    pub video: Option<Arc<CodecConfig>>,
    pub audio: Option<Arc<CodecConfig>>,
    /// An FLV file's own `onMetaData` (a recording's is the live stream's).
    pub metadata: Option<Metadata>,
    /// `Config` and `Frame` events in decode order, times from 0 (ms). A
    /// configuration that changes mid-file (a recorded stream whose
    /// publisher changed settings) is an event where it changed.
    pub events: Vec<StreamEvent>,
    /// Ascending decode times; at least one.
    pub seek_points: Vec<SeekPoint>,
    /// From the first frame's decode time to the end of the last frame.
    pub duration_ms: i64,
    /// The file's size.
    pub bytes: u64,
}

impl Title {
    /// Reads a whole file: FLV by its signature, anything else as MP4.
    pub fn read(file: Bytes) -> Result<Title, TitleError> {
        Title::read_with(file, Limits::default())
    }

    /// [`Title::read`] with the MP4 reader's `limits` (the fuzz target's
    /// are small, so that its inputs reach them).
    pub fn read_with(file: Bytes, limits: Limits) -> Result<Title, TitleError> {
        let bytes = file.len() as u64;
        let (format, metadata, events) = if file.starts_with(b"FLV") {
            let (metadata, events) = flv_events(&file)?;
            (Format::Flv, metadata, events)
        } else if looks_like_mp4(&file) {
            (Format::Mp4, None, mp4_events(&file, limits)?)
        } else {
            return Err(TitleError::NotMedia);
        };
        Title::from_events(format, metadata, events, bytes)
    }

    /// A CMAF recording's tracks, each its init segment followed by its
    /// media segments (a fragmented MP4 file per track). The tracks keep
    /// their times relative to each other, as the segments' `tfdt`s say.
    pub fn read_cmaf(tracks: &[Bytes]) -> Result<Title, TitleError> {
        let mut events = Vec::new();
        for file in tracks {
            let mp4 = Mp4File::parse(file)?;
            // `frames` starts each file at 0; put its shift back.
            let base = mp4
                .tracks()
                .filter_map(|t| t.samples.iter().map(|s| s.dts_ms).min())
                .min()
                .unwrap_or(0);
            events.extend(
                mp4.tracks()
                    .map(|t| StreamEvent::Config(Arc::new(t.config.clone()))),
            );
            events.extend(mp4.frames(file).map(|mut f| {
                f.dts += base;
                StreamEvent::Frame(f)
            }));
        }
        // One timeline: configurations first, then frames by decode time
        // (video first on a tie).
        events.sort_by_key(|e| match e {
            StreamEvent::Frame(f) => (1, f.dts, usize::from(f.kind() == MediaKind::Audio)),
            _ => (0, 0, 0),
        });
        let bytes = tracks.iter().map(|t| t.len() as u64).sum();
        Title::from_events(Format::Cmaf, None, events, bytes)
    }

    fn from_events(
        format: Format,
        metadata: Option<Metadata>,
        mut events: Vec<StreamEvent>,
        bytes: u64,
    ) -> Result<Title, TitleError> {
        let first = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some(f.dts),
                _ => None,
            })
            .min()
            .ok_or(TitleError::NoFrames)?;
        let mut video = None;
        let mut audio = None;
        let has_video = events
            .iter()
            .any(|e| matches!(e, StreamEvent::Frame(f) if f.kind() == MediaKind::Video));
        let mut seek_points = Vec::new();
        // Per kind: the last frame's decode time and the gap before it, for
        // the end of the last frame.
        let mut last = [(i64::MIN, 0i64); 2];
        for (index, e) in events.iter_mut().enumerate() {
            match e {
                StreamEvent::Config(c) => {
                    let slot = match c.kind() {
                        MediaKind::Video => &mut video,
                        MediaKind::Audio => &mut audio,
                    };
                    slot.get_or_insert_with(|| Arc::clone(c));
                }
                StreamEvent::Frame(f) => {
                    f.dts -= first;
                    let k = usize::from(f.kind() == MediaKind::Audio);
                    let (prev, _) = last[k];
                    let gap = if prev == i64::MIN { 0 } else { f.dts - prev };
                    last[k] = (f.dts, gap);
                    let point = f.keyframe && (f.kind() == MediaKind::Video || !has_video);
                    // Keep them ascending (a file's tracks may interleave
                    // loosely).
                    if point
                        && seek_points
                            .last()
                            .is_none_or(|p: &SeekPoint| p.dts <= f.dts)
                    {
                        seek_points.push(SeekPoint { dts: f.dts, index });
                    }
                }
                _ => {}
            }
        }
        if seek_points.is_empty() {
            return Err(TitleError::NoKeyframe);
        }
        let duration_ms = last
            .iter()
            .filter(|(dts, _)| *dts != i64::MIN)
            .map(|(dts, gap)| dts + gap)
            .max()
            .unwrap_or(0);
        Ok(Title {
            format,
            video,
            audio,
            metadata,
            events,
            seek_points,
            duration_ms,
            bytes,
        })
    }

    /// Where to start for a play from `ms`: the last seek point at or
    /// before it (the first one for a time before it).
    pub fn seek(&self, ms: i64) -> Option<SeekPoint> {
        let after = self.seek_points.partition_point(|p| p.dts <= ms);
        self.seek_points.get(after.saturating_sub(1)).copied()
    }

    /// The configurations in force at `index` of [`Title::events`] (what a
    /// player starting there must get first): video, audio.
    pub fn configs_at(&self, index: usize) -> [Option<Arc<CodecConfig>>; 2] {
        let mut found = [None, None];
        for e in self.events[..index.min(self.events.len())].iter().rev() {
            if let StreamEvent::Config(c) = e {
                let k = usize::from(c.kind() == MediaKind::Audio);
                if found[k].is_none() {
                    found[k] = Some(Arc::clone(c));
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        found
    }

    /// Video frames and audio frames (for logs and the API).
    pub fn frame_counts(&self) -> (usize, usize) {
        let mut n = (0, 0);
        for e in &self.events {
            if let StreamEvent::Frame(f) = e {
                match f.kind() {
                    MediaKind::Video => n.0 += 1,
                    MediaKind::Audio => n.1 += 1,
                }
            }
        }
        n
    }
}

/// A box header with a known top-level type at the start: `ftyp`, `moov`,
/// `moof`, `styp`, `free`, `skip`, `mdat`, `wide`.
fn looks_like_mp4(file: &[u8]) -> bool {
    file.len() >= 8
        && matches!(
            &file[4..8],
            b"ftyp" | b"moov" | b"moof" | b"styp" | b"free" | b"skip" | b"mdat" | b"wide"
        )
}

fn mp4_events(file: &Bytes, limits: Limits) -> Result<Vec<StreamEvent>, TitleError> {
    let mp4 = Mp4File::parse_with(file, limits)?;
    let mut events: Vec<StreamEvent> = mp4
        .tracks()
        .map(|t| StreamEvent::Config(Arc::new(t.config.clone())))
        .collect();
    events.extend(mp4.frames(file).map(StreamEvent::Frame));
    Ok(events)
}

/// An FLV file's events through the live ingest. Tags that do not parse
/// are skipped, as for a live publisher; multitrack tracks past the first
/// of each kind are left out (a title has one of each).
fn flv_events(file: &Bytes) -> Result<(Option<Metadata>, Vec<StreamEvent>), TitleError> {
    let tags = flv_file::read_tags(file)?;
    let mut ingest = Ingest::new();
    let mut metadata = None;
    let mut events = Vec::new();
    for tag in tags {
        let kind = match tag.tag_type {
            TAG_VIDEO => MediaKind::Video,
            TAG_AUDIO => MediaKind::Audio,
            TAG_SCRIPT => {
                if metadata.is_none() {
                    metadata = on_metadata(&tag.body);
                }
                continue;
            }
            _ => continue,
        };
        let _ = ingest.media(kind, tag.timestamp, tag.body, |e| match e {
            StreamEvent::Config(_) | StreamEvent::Frame(_) => events.push(e),
            _ => {}
        });
    }
    Ok((metadata, events))
}

/// The value of an `onMetaData` script tag.
fn on_metadata(body: &Bytes) -> Option<Metadata> {
    let mut rest: &[u8] = body;
    let mut budget = Budget::new(&DecodeLimits::default());
    let name = amf0::decode_one(&mut rest, &mut budget).ok()?;
    if name.as_str() != Some("onMetaData") || rest.is_empty() {
        return None;
    }
    let at = body.len() - rest.len();
    Some(Metadata::from_amf0(body.slice(at..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEVC_FLV: &[u8] = include_bytes!("../package/testdata/hevc_opus.flv");

    #[test]
    fn an_flv_file_reads_from_zero_with_keyframe_seek_points() {
        let t = Title::read(Bytes::from_static(HEVC_FLV)).unwrap();
        assert_eq!(t.format, Format::Flv);
        assert!(t.video.is_some() && t.audio.is_some());
        let (v, a) = t.frame_counts();
        assert!(v > 10 && a > 10, "{v} video, {a} audio frames");
        let first = t.events.iter().find_map(|e| match e {
            StreamEvent::Frame(f) => Some(f.dts),
            _ => None,
        });
        assert_eq!(first, Some(0));
        assert!(!t.seek_points.is_empty());
        for p in &t.seek_points {
            let StreamEvent::Frame(f) = &t.events[p.index] else {
                panic!("a seek point on a frame")
            };
            assert!(f.keyframe && f.kind() == MediaKind::Video && f.dts == p.dts);
        }
        assert!(t.duration_ms > 0);
        // Before everything: the first point; past the end: the last.
        assert_eq!(t.seek(-5), t.seek_points.first().copied());
        assert_eq!(t.seek(i64::MAX), t.seek_points.last().copied());
        let [video, audio] = t.configs_at(t.seek_points[0].index);
        assert!(video.is_some());
        assert!(audio.is_some() || t.seek_points[0].index < 3);
    }

    #[test]
    fn files_that_are_not_media_are_named_so() {
        assert!(matches!(
            Title::read(Bytes::from_static(b"<html>not a video</html>")),
            Err(TitleError::NotMedia)
        ));
        assert!(matches!(
            Title::read(Bytes::from_static(b"FLV\x01\x05\0\0\0\x09\0\0\0\0")),
            Err(TitleError::NoFrames)
        ));
        assert!(matches!(
            Title::read(Bytes::from_static(b"\0\0\0\x10ftypisom\0\0\0\0")),
            Err(TitleError::Mp4(_))
        ));
    }
}
