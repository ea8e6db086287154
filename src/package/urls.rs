//! The URL layout under `/APP/KEY/`: the builders the manifests write and
//! the parser the HTTP routes read, side by side so they can never
//! disagree (a round-trip property test holds them to it).
//!
//! Keys may contain slashes (`app/a/b`), so a path is parsed from its end.

use crate::media::MediaKind;

pub const MULTIVARIANT: &str = "index.m3u8";
pub const MPD: &str = "manifest.mpd";

const INIT_PREFIX: &str = "init-";
const INIT_SUFFIX: &str = ".mp4";
const SEGMENT_PREFIX: &str = "seg-";
const PART_PREFIX: &str = "part-";
const SEGMENT_SUFFIX: &str = ".m4s";
const PLAYLIST_SUFFIX: &str = ".m3u8";

pub fn track_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    }
}

fn track_of(name: &str) -> Option<MediaKind> {
    [MediaKind::Video, MediaKind::Audio]
        .into_iter()
        .find(|k| track_name(*k) == name)
}

/// `video.m3u8` / `audio.m3u8`
pub fn media_playlist(kind: MediaKind) -> String {
    format!("{}{PLAYLIST_SUFFIX}", track_name(kind))
}

/// `video/init-3.mp4`
pub fn init(kind: MediaKind, init: u32) -> String {
    format!("{}/{INIT_PREFIX}{init}{INIT_SUFFIX}", track_name(kind))
}

/// `video/seg-42.m4s`
pub fn segment(kind: MediaKind, number: u64) -> String {
    format!(
        "{}/{SEGMENT_PREFIX}{number}{SEGMENT_SUFFIX}",
        track_name(kind)
    )
}

/// `video/part-42.3.m4s`: part 3 (from 0) of segment 42 (LL-HLS).
pub fn part(kind: MediaKind, number: u64, index: usize) -> String {
    format!(
        "{}/{PART_PREFIX}{number}.{index}{SEGMENT_SUFFIX}",
        track_name(kind)
    )
}

/// Parts a segment can have (a bound on the index a URL may name).
pub const MAX_PARTS: usize = 100_000;

/// DASH SegmentTemplate media pattern for one init generation.
pub fn dash_media_template(kind: MediaKind) -> String {
    format!(
        "{}/{SEGMENT_PREFIX}$Number${SEGMENT_SUFFIX}",
        track_name(kind)
    )
}

/// What a media path names under a stream's folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Multivariant,
    MediaPlaylist(MediaKind),
    Mpd,
    Init(MediaKind, u32),
    Segment(MediaKind, u64),
    /// Part `.2` (from 0) of segment `.1`.
    Part(MediaKind, u64, usize),
}

impl Resource {
    /// The path under the stream's folder, as the manifests write it.
    pub fn path(self) -> String {
        match self {
            Resource::Multivariant => MULTIVARIANT.to_string(),
            Resource::Mpd => MPD.to_string(),
            Resource::MediaPlaylist(kind) => media_playlist(kind),
            Resource::Init(kind, id) => init(kind, id),
            Resource::Segment(kind, n) => segment(kind, n),
            Resource::Part(kind, n, i) => part(kind, n, i),
        }
    }

    /// A playlist or the MPD (text that changes), not media bytes.
    pub fn is_manifest(self) -> bool {
        matches!(
            self,
            Resource::Multivariant | Resource::MediaPlaylist(_) | Resource::Mpd
        )
    }
}

/// The absolute path of `resource` of stream `key` (`/app/name/video.m3u8`).
pub fn url(key: &str, resource: Resource) -> String {
    format!("/{key}/{}", resource.path())
}

/// The LL-HLS delivery directives of a playlist request's query
/// (`_HLS_msn`, `_HLS_part`, `_HLS_skip`); other parameters (a signed
/// URL's) are not ours and are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<usize>,
    pub skip: bool,
}

/// Why a request's directives are refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadDirective {
    /// Not a number, or repeated.
    Malformed(&'static str),
    /// `_HLS_part` without `_HLS_msn` (RFC 8216bis §6.2.5.2).
    PartWithoutMsn,
}

impl std::fmt::Display for BadDirective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadDirective::Malformed(name) => write!(f, "{name} is malformed"),
            BadDirective::PartWithoutMsn => write!(f, "_HLS_part needs _HLS_msn"),
        }
    }
}

impl Directives {
    pub fn parse(query: Option<&str>) -> Result<Directives, BadDirective> {
        let mut d = Directives::default();
        let (mut msn, mut part, mut skip) = (false, false, false);
        for pair in query.unwrap_or("").split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let seen = match name {
                "_HLS_msn" => {
                    d.msn = Some(digits(value).ok_or(BadDirective::Malformed("_HLS_msn"))?);
                    &mut msn
                }
                "_HLS_part" => {
                    let p = digits(value).filter(|p| *p < MAX_PARTS);
                    d.part = Some(p.ok_or(BadDirective::Malformed("_HLS_part"))?);
                    &mut part
                }
                "_HLS_skip" => {
                    // `v2` also skips date ranges, of which there are none.
                    d.skip = match value {
                        "YES" | "v2" => true,
                        _ => return Err(BadDirective::Malformed("_HLS_skip")),
                    };
                    &mut skip
                }
                _ => continue,
            };
            if std::mem::replace(seen, true) {
                return Err(BadDirective::Malformed(name_of(name)));
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err(BadDirective::PartWithoutMsn);
        }
        Ok(d)
    }

    /// Whether anything is asked (the request may be held).
    pub fn blocking(&self) -> bool {
        self.msn.is_some()
    }
}

fn name_of(name: &str) -> &'static str {
    match name {
        "_HLS_msn" => "_HLS_msn",
        "_HLS_part" => "_HLS_part",
        _ => "_HLS_skip",
    }
}

/// Splits `/app/key/.../resource` into the stream key and the resource.
/// `None` for anything that is not a media URL or whose key is not at
/// least `app/name` or has an empty or `..` segment.
pub fn parse(path: &str) -> Option<(String, Resource)> {
    let path = path.trim_start_matches('/');
    let (rest, last) = path.rsplit_once('/')?;
    let (key, resource) = match parse_file(last) {
        Some(r) => (rest, r),
        None => {
            let (key, dir) = rest.rsplit_once('/')?;
            (key, parse_track_file(track_of(dir)?, last)?)
        }
    };
    // Only a name a stream can have (one rule: `StreamKey`).
    let key = crate::stream_key::StreamKey::parse(key).ok()?;
    Some((key.into(), resource))
}

/// The files directly in a stream's folder.
fn parse_file(name: &str) -> Option<Resource> {
    match name {
        MULTIVARIANT => Some(Resource::Multivariant),
        MPD => Some(Resource::Mpd),
        _ => {
            let kind = track_of(name.strip_suffix(PLAYLIST_SUFFIX)?)?;
            Some(Resource::MediaPlaylist(kind))
        }
    }
}

/// The files in a track's folder (`video/`, `audio/`).
fn parse_track_file(kind: MediaKind, name: &str) -> Option<Resource> {
    let between = |prefix: &str, suffix: &str| name.strip_prefix(prefix)?.strip_suffix(suffix);
    if let Some(n) = between(INIT_PREFIX, INIT_SUFFIX) {
        return Some(Resource::Init(kind, n.parse().ok()?));
    }
    if let Some(n) = between(PART_PREFIX, SEGMENT_SUFFIX) {
        let (n, i) = n.split_once('.')?;
        let i: usize = digits(i)?;
        return (i < MAX_PARTS).then_some(Resource::Part(kind, digits(n)?, i));
    }
    let n = between(SEGMENT_PREFIX, SEGMENT_SUFFIX)?;
    Some(Resource::Segment(kind, n.parse().ok()?))
}

/// A number written as plain digits (no sign), as the builders write it.
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn media_paths() {
        assert_eq!(
            parse("/live/k/index.m3u8"),
            Some(("live/k".into(), Resource::Multivariant))
        );
        assert_eq!(
            parse("/app/a/b/manifest.mpd"),
            Some(("app/a/b".into(), Resource::Mpd))
        );
        assert_eq!(
            parse("/live/k/video.m3u8"),
            Some(("live/k".into(), Resource::MediaPlaylist(MediaKind::Video)))
        );
        assert_eq!(
            parse("/live/k/audio/init-7.mp4"),
            Some(("live/k".into(), Resource::Init(MediaKind::Audio, 7)))
        );
        assert_eq!(
            parse("/live/k/video/seg-123.m4s"),
            Some(("live/k".into(), Resource::Segment(MediaKind::Video, 123)))
        );
        assert_eq!(
            parse("/live/k/audio/part-123.4.m4s"),
            Some(("live/k".into(), Resource::Part(MediaKind::Audio, 123, 4)))
        );
        for bad in [
            "/live/k/video/part-1.m4s",
            "/live/k/video/part-1.-1.m4s",
            "/live/k/video/part-1.+1.m4s",
            "/live/k/video/part-+1.1.m4s",
            "/live/k/video/part-1.1.1.m4s",
            "/live/k/video/part-.1.m4s",
            "/live/k/video/part-1..m4s",
            "/live/k/video/part-1.100000.m4s",
            "/live/k/video/part-18446744073709551616.0.m4s",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for bad in [
            "/index.m3u8",
            "/k/index.m3u8",
            "/live/k/video/seg-x.m4s",
            "/live/k/other/seg-1.m4s",
            "/live/../index.m3u8",
            "/live//index.m3u8",
            "/live/k/video/seg-99999999999999999999999.m4s",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// Paths a client can send that name nothing: traversal, empty
    /// segments, numbers past the type, names we never write.
    #[test]
    fn hostile_paths() {
        for bad in [
            "/live/k/../index.m3u8",
            "/../k/index.m3u8",
            "/live/../../manifest.mpd",
            "/live/k/..",
            "//live/k//video.m3u8",
            "/live//k/video/seg-1.m4s",
            "/live/k/video//seg-1.m4s",
            "/live/k/",
            "/live/k",
            "/",
            "//",
            "/live/k/video/init-4294967296.mp4",
            "/live/k/video/seg-18446744073709551616.m4s",
            "/live/k/video/seg--1.m4s",
            "/live/k/video/seg- 1.m4s",
            "/live/k/video/seg-.m4s",
            "/live/k/video/init-1.m4s",
            "/live/k/video/seg-1.mp4",
            "/live/k/video/seg-1.m4s/",
            "/live/k/subtitles.m3u8",
            "/live/k/.m3u8",
            "/live/k/VIDEO.m3u8",
            "/live/k/Index.m3u8",
            "/live/k/index.m3u8?x=1",
            "/live/k/text/seg-1.m4s",
            "/live/k/video.m3u8/seg-1.m4s",
            "/live/k/seg-1.m4s",
            "/live/k/init-1.mp4",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // The largest numbers the types hold are valid.
        assert_eq!(
            parse("/live/k/video/init-4294967295.mp4"),
            Some(("live/k".into(), Resource::Init(MediaKind::Video, u32::MAX)))
        );
        assert_eq!(
            parse("/live/k/audio/seg-18446744073709551615.m4s"),
            Some((
                "live/k".into(),
                Resource::Segment(MediaKind::Audio, u64::MAX)
            ))
        );
        // Leading zeros and `+` parse as the number; only what we write
        // round-trips, but these name the same segment.
        for same in ["/live/k/video/seg-007.m4s", "/live/k/video/seg-+7.m4s"] {
            assert_eq!(
                parse(same),
                Some(("live/k".into(), Resource::Segment(MediaKind::Video, 7))),
                "{same}"
            );
        }
    }

    #[test]
    fn delivery_directives() {
        let d = |q| Directives::parse(Some(q));
        assert_eq!(
            d("_HLS_msn=12&_HLS_part=3"),
            Ok(Directives {
                msn: Some(12),
                part: Some(3),
                skip: false
            })
        );
        assert_eq!(
            d("exp=1&_HLS_skip=YES&sig=ab&_HLS_msn=4"),
            Ok(Directives {
                msn: Some(4),
                part: None,
                skip: true
            })
        );
        assert_eq!(Directives::parse(None), Ok(Directives::default()));
        assert!(!Directives::parse(None).unwrap().blocking());
        assert_eq!(d("_HLS_part=1"), Err(BadDirective::PartWithoutMsn));
        for (q, name) in [
            ("_HLS_msn=x", "_HLS_msn"),
            ("_HLS_msn=-1", "_HLS_msn"),
            ("_HLS_msn=", "_HLS_msn"),
            ("_HLS_msn=1&_HLS_msn=2", "_HLS_msn"),
            ("_HLS_msn=1&_HLS_part=100000", "_HLS_part"),
            ("_HLS_msn=1&_HLS_part=+1", "_HLS_part"),
            ("_HLS_skip=NO", "_HLS_skip"),
            ("_HLS_skip=YES&_HLS_skip=YES", "_HLS_skip"),
        ] {
            assert_eq!(d(q), Err(BadDirective::Malformed(name)), "{q}");
        }
    }

    fn kind() -> impl Strategy<Value = MediaKind> {
        prop_oneof![Just(MediaKind::Video), Just(MediaKind::Audio)]
    }

    fn resource() -> impl Strategy<Value = Resource> {
        prop_oneof![
            Just(Resource::Multivariant),
            Just(Resource::Mpd),
            kind().prop_map(Resource::MediaPlaylist),
            (kind(), any::<u32>()).prop_map(|(k, n)| Resource::Init(k, n)),
            (kind(), any::<u64>()).prop_map(|(k, n)| Resource::Segment(k, n)),
            (kind(), any::<u64>(), 0..MAX_PARTS).prop_map(|(k, n, i)| Resource::Part(k, n, i)),
        ]
    }

    /// Keys as streams are named: `app/name`, names with slashes too, and
    /// segments that look like our own files or folders.
    fn key() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            "[A-Za-z0-9_~@+=:.-]{1,12}".prop_filter("not . or ..", |s| s != ".." && s != "."),
            Just("video".to_string()),
            Just("audio".to_string()),
            Just("index.m3u8".to_string()),
            Just("seg-1.m4s".to_string()),
        ];
        prop::collection::vec(segment, 2..5).prop_map(|s| s.join("/"))
    }

    proptest! {
        /// Every URL the manifests write parses back to what it names.
        #[test]
        fn parse_inverts_url(key in key(), resource in resource()) {
            prop_assert_eq!(parse(&url(&key, resource)), Some((key, resource)));
        }

        /// Whatever parses is a servable key, and building its URL again
        /// names the same thing.
        #[test]
        fn what_parses_rebuilds(path in "(/[a-z0-9.+-]{0,6}){1,6}") {
            if let Some((key, resource)) = parse(&path) {
                prop_assert!(key.contains('/'));
                prop_assert!(key.split('/').all(|s| !s.is_empty() && s != ".." && s != "."));
                prop_assert_eq!(parse(&url(&key, resource)), Some((key, resource)));
            }
        }
    }
}
