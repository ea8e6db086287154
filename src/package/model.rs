//! What the packager knows about a stream's segments: the one model both
//! the HLS playlists and the DASH MPD are rendered from, so they always
//! describe the same CMAF segments.
//!
//! Times are in each track's own timescale (video 90 kHz, audio its sample
//! rate), exactly as written in the segments' `tfdt`/`trun`.

use std::time::SystemTime;

use crate::media::MediaKind;

/// A track's description for manifests.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackInfo {
    pub kind: MediaKind,
    /// RFC 6381 codec string, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codec: String,
    pub timescale: u32,
    /// Video only (0 for audio).
    pub width: u32,
    pub height: u32,
    /// Measured from the stream's timestamps (video only).
    pub frame_rate: Option<f64>,
    /// Video: an HDR transfer (HLS `VIDEO-RANGE`); `None` for SDR or
    /// when the configuration does not say.
    pub video_range: Option<VideoRange>,
    /// Audio only (0 for video).
    pub sample_rate: u32,
    pub channels: u8,
    /// AC-3 and E-AC-3: the Dolby `audio_channel_configuration` (ETSI TS
    /// 102 366 Annex I) that DASH signals instead of a channel count.
    pub dolby_channels: Option<u16>,
    /// Peak and average bits per second, measured over the segments.
    pub peak_bandwidth: u64,
    pub average_bandwidth: u64,
    /// Audio: what the publisher called the track (see
    /// [`super::labels`]).
    pub label: TrackLabel,
}

/// An audio track's name and language (BCP 47), when the publisher gave
/// them: HLS `NAME`/`LANGUAGE`, DASH `Label`/`@lang`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackLabel {
    pub name: Option<String>,
    pub language: Option<String>,
}

impl TrackLabel {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.language.is_none()
    }
}

/// The HDR transfer functions HLS names in `VIDEO-RANGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoRange {
    /// SMPTE ST 2084 (transfer characteristics 16).
    Pq,
    /// ARIB STD-B67 (transfer characteristics 18).
    Hlg,
}

impl VideoRange {
    /// From ISO/IEC 23091-2 transfer characteristics (`None`: SDR or unknown).
    pub fn from_transfer(transfer: u8) -> Option<VideoRange> {
        match transfer {
            16 => Some(VideoRange::Pq),
            18 => Some(VideoRange::Hlg),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VideoRange::Pq => "PQ",
            VideoRange::Hlg => "HLG",
        }
    }
}

/// What a media playlist promises about its changes (RFC 8216
/// EXT-X-PLAYLIST-TYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistType {
    /// Never changes: a title played on demand.
    Vod,
    /// Only grows: a live stream whose every segment stays listed (DVR).
    Event,
}

impl PlaylistType {
    pub fn as_str(self) -> &'static str {
        match self {
            PlaylistType::Vod => "VOD",
            PlaylistType::Event => "EVENT",
        }
    }
}

/// One LL-HLS part / CMAF chunk inside a segment.
#[derive(Clone, Debug, PartialEq)]
pub struct PartInfo {
    /// Duration in the track's timescale.
    pub duration: u64,
    /// Starts with a keyframe (always true for audio).
    pub independent: bool,
}

/// One media segment of one track.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentInfo {
    /// Media sequence number, contiguous within a track; equal across the
    /// stream's tracks for segments that cover the same time (an audio
    /// segment standing for a video segment whose span had no audio holds
    /// the audio next to it, see [`super::segmenter`]).
    pub number: u64,
    /// Decode time of the first sample (the `tfdt`), in the track's timescale.
    pub start: u64,
    /// Duration in the track's timescale.
    pub duration: u64,
    /// Which init segment this segment needs (see [`TrackTimeline::inits`]).
    pub init: u32,
    /// This segment follows a discontinuity (publisher return, codec change).
    pub discontinuity: bool,
    /// Ingest wall-clock time of the segment's first sample.
    pub wall_clock: SystemTime,
    pub bytes: u64,
    pub parts: Vec<PartInfo>,
}

/// A track and the segments in its window, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackTimeline {
    pub info: TrackInfo,
    /// Ids of the init segments still referenced by the window.
    pub inits: Vec<u32>,
    pub segments: Vec<SegmentInfo>,
    /// Discontinuity flags on this track's segments before `segments`
    /// (gone from the snapshot): what HLS's EXT-X-DISCONTINUITY-SEQUENCE
    /// and the DASH Period ids count from.
    pub discontinuities_before: u64,
    /// The segment being made, once it has a part (LL-HLS lists its
    /// parts; the LL-DASH timeline lists it ahead of its end).
    pub partial: Option<PartialSegment>,
}

/// The segment being made: what is known before it closes.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialSegment {
    pub number: u64,
    /// Decode time of its first sample, in the track's timescale.
    pub start: u64,
    pub init: u32,
    pub discontinuity: bool,
    /// Ingest wall-clock time of its first sample.
    pub wall_clock: SystemTime,
    /// Its parts so far (at least one).
    pub parts: Vec<PartInfo>,
}

/// Everything a manifest needs, taken as one consistent snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSnapshot {
    /// `app/key`.
    pub key: String,
    pub video: Option<TrackTimeline>,
    pub audio: Option<TrackTimeline>,
    /// EXT-X-TARGETDURATION: whole seconds, ≥ every segment's rounded
    /// duration, constant for the stream's life.
    pub target_duration: u32,
    /// Nominal part duration in seconds (the CMAF chunk cadence).
    pub part_target: f64,
    /// Render the low-latency forms (LL-HLS parts, LL-DASH).
    pub low_latency: bool,
    /// How many segments the playlist lists (the store keeps a few more).
    pub window: usize,
    /// The publisher is gone for good: HLS ENDLIST, static/ended MPD.
    pub ended: bool,
    /// HLS EXT-X-PLAYLIST-TYPE: `None` for a live window.
    pub playlist_type: Option<PlaylistType>,
    /// Wall-clock time of media time zero (DASH availabilityStartTime).
    pub availability_start: SystemTime,
    /// When the manifest content last changed (DASH publishTime).
    pub updated: SystemTime,
}
