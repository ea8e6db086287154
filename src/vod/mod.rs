//! Video on demand: the files under `[vod] dir` (recordings and files
//! dropped there) played by name over HLS, DASH and RTMP, in one namespace:
//! `PATH` under the directory is `/APP/PATH/index.m3u8`, `.../manifest.mpd`
//! and `rtmp://HOST/APP/PATH`, `APP` being `vod.app` (default `vod`).
//!
//! - **Names.** [`Library::resolve`] turns a URL's path into a file: no
//!   empty, `.` or `..` segment and no hidden name; the canonical path
//!   (symlinks followed) must lie under the directory's canonical path, so
//!   a symlink out of it is refused; `PATH`, `PATH.flv` and `PATH.mp4` are
//!   tried in that order (a recording's `vod_path` has no extension).
//! - **Titles.** A file is read whole (at most `vod.max_file_bytes`) and
//!   parsed once into a [`Title`]; at most [`LOADS_AT_ONCE`] files are read
//!   at a time, so a flood of requests for distinct files cannot hold more
//!   than that many files' bytes beyond the cache.
//! - **Packaging.** The first HLS or DASH request for a title packages it
//!   with the live packager (`package::segmenter`: segments cut at
//!   keyframes, every codec the live path takes), as an ended stream in a
//!   store of its own: the manifests are then the VOD forms (HLS
//!   `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`, a static MPD), and
//!   `package::Store::answer` serves them as it does live ones.
//! - **CMAF recordings.** A directory holding an `index.m3u8` (what
//!   `record` writes) is served over HTTP as it is on disk (it has the
//!   packaged layout), and over RTMP read back into a title: each track's
//!   init and media segments as one fragmented MP4 (`Title::read_cmaf`).
//! - **Cache.** Titles and their packaged segments are kept by last use up
//!   to `vod.cache_bytes` (a title costs its file's size, and as much again
//!   once packaged); a file changed on disk (size or modification time) is
//!   read again.

mod title;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::locks::lock;
use crate::media::StreamEvent;
use crate::package::model::PlaylistType;
use crate::package::segmenter::{SegmenterConfig, StreamSegmenter};
use crate::package::serve::{Refused, Served};
use crate::package::service::{HoldLimits, Packaged, Store};
use crate::package::urls::{Directives, Resource};
use crate::settings::{check, Invalid, Section};
pub use title::{Format, SeekPoint, Title, TitleError};

/// Failed files remembered (then forgotten all at once).
const MAX_FAILED: usize = 1024;

/// Files read and parsed at once (each may hold `max_file_bytes`).
pub const LOADS_AT_ONCE: usize = 2;

/// `[vod]`: on-demand play of the files under a directory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The directory whose files play on demand (relative to the working
    /// directory); recordings go under `recorder.dir`, the same by default.
    pub dir: String,
    /// The application name of the namespace: `/APP/PATH/...` over HTTP,
    /// `rtmp://HOST/APP/PATH`. Nothing can be published under it.
    pub app: String,
    /// Target segment duration of packaged titles, in seconds (segments
    /// are cut at the first keyframe past it).
    pub segment_secs: f64,
    /// Larger files are refused (415).
    pub max_file_bytes: u64,
    /// What the titles kept in memory may hold in total.
    pub cache_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dir: "media".into(),
            app: "vod".into(),
            segment_secs: 4.0,
            max_file_bytes: 1 << 30,
            cache_bytes: 1 << 30,
        }
    }
}

impl Section for Settings {
    const NAME: &'static str = "vod";
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(!self.dir.is_empty(), "vod.dir", "must not be empty")?;
        check(
            crate::stream_key::StreamKey::new(&self.app, "x").is_ok(),
            "vod.app",
            "must be an application name (letters, digits, -_.~@+=:, no '/')",
        )?;
        check(
            self.segment_secs.is_finite() && (1.0..=30.0).contains(&self.segment_secs),
            "vod.segment_secs",
            "must be between 1 and 30",
        )?;
        check(
            (1 << 20..=1 << 36).contains(&self.max_file_bytes),
            "vod.max_file_bytes",
            "must be between 1048576 and 68719476736",
        )?;
        check(
            (1 << 20..=1 << 40).contains(&self.cache_bytes),
            "vod.cache_bytes",
            "must be between 1048576 and 1099511627776",
        )
    }
}

/// Why a name does not play.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
    #[error("no such file")]
    NotFound,
    #[error("no {0} in this title")]
    Missing(&'static str),
    #[error("refused: {0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Unsupported(String),
    #[error("the file could not be read: {0}")]
    Io(std::io::Error),
}

/// A file found for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    path: PathBuf,
    /// A CMAF recording's directory (`len` and `modified` are its
    /// `index.m3u8`'s).
    dir: bool,
    len: u64,
    modified: Option<SystemTime>,
}

struct Entry {
    found: Found,
    title: Arc<Title>,
    packaged: Option<Arc<Packaged>>,
    /// What this entry holds, in bytes.
    cost: u64,
    used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// Files that did not play, and why, until they change (so a client
    /// asking again does not make them read again, nor logged again).
    failed: HashMap<String, (Found, String)>,
    total: u64,
    tick: u64,
}

/// The files that play on demand, and the cache of those read.
pub struct Library {
    settings: Settings,
    /// The packaged titles (keys `APP/PATH`), served like live streams.
    store: Store,
    cache: Mutex<Cache>,
    loads: tokio::sync::Semaphore,
}

impl Library {
    pub fn new(settings: Settings) -> Arc<Library> {
        Arc::new(Library {
            settings,
            store: Store::new(HoldLimits::default()),
            cache: Mutex::new(Cache::default()),
            loads: tokio::sync::Semaphore::new(LOADS_AT_ONCE),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The name under this namespace of a stream key `APP/PATH`, if `key`
    /// is in it.
    pub fn path_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.settings.app.as_str())?
            .strip_prefix('/')
    }

    /// The file `name` plays (see the module's doc).
    pub fn resolve(&self, name: &str) -> Result<PathBuf, VodError> {
        resolve(Path::new(&self.settings.dir), name).map(|f| f.path)
    }

    /// The title `name` plays, read now or kept from before.
    pub async fn title(&self, name: &str) -> Result<Arc<Title>, VodError> {
        self.entry(name).await.map(|(title, _)| title)
    }

    /// The answer to an HLS or DASH request for `resource` of `name`.
    pub async fn answer(
        &self,
        name: &str,
        resource: Resource,
        utc_timing: &[&str],
    ) -> Result<Served, VodError> {
        let found = self.find(name).await?;
        if found.dir {
            // A CMAF recording: its files as they are.
            let max = self.settings.max_file_bytes;
            return tokio::task::spawn_blocking(move || cmaf_file(&found.path, resource, max))
                .await
                .map_err(|e| VodError::Io(std::io::Error::other(e)))?;
        }
        let (title, packaged) = self.entry_of(name, found).await?;
        let key = format!("{}/{name}", self.settings.app);
        let packaged = match packaged {
            Some(p) => p,
            None => {
                let target = self.settings.segment_secs;
                let built = {
                    let key = key.clone();
                    let title = Arc::clone(&title);
                    tokio::task::spawn_blocking(move || package(&key, &title, target))
                        .await
                        .map_err(|e| VodError::Unsupported(format!("packaging failed: {e}")))?
                };
                self.remember_packaged(name, &title, Packaged::new(built))
            }
        };
        // (Again: the store may have lost it to a concurrent eviction.)
        self.store.put(&key, Arc::clone(&packaged));
        let answered = self
            .store
            .answer(&key, resource, Directives::default(), utc_timing)
            .await;
        if !self.is_cached(name, &packaged) {
            // Evicted meanwhile, or never kept: the store must not keep it.
            self.store.remove_if_same(&key, &packaged);
        }
        match answered {
            Ok(s) => Ok(s),
            Err(Refused::NotFound(n)) => Err(VodError::Missing(n.what())),
            Err(r) => Err(VodError::Unsupported(format!("{r:?}"))),
        }
    }

    /// The cached entry for `name`, checked against the file on disk, or
    /// a new one.
    async fn entry(&self, name: &str) -> Result<(Arc<Title>, Option<Arc<Packaged>>), VodError> {
        let found = self.find(name).await?;
        self.entry_of(name, found).await
    }

    /// What `name` names on disk (see [`resolve`]), looked up off the
    /// runtime.
    async fn find(&self, name: &str) -> Result<Found, VodError> {
        let (dir, name) = (PathBuf::from(&self.settings.dir), name.to_string());
        tokio::task::spawn_blocking(move || resolve(&dir, &name))
            .await
            .map_err(|e| VodError::Io(std::io::Error::other(e)))?
    }

    /// [`Library::entry`] for the file `found` at `name`.
    async fn entry_of(
        &self,
        name: &str,
        found: Found,
    ) -> Result<(Arc<Title>, Option<Arc<Packaged>>), VodError> {
        if let Some(hit) = self.cached(name, &found)? {
            return Ok(hit);
        }
        let _permit = self.loads.acquire().await.map_err(|_| VodError::NotFound)?;
        // Another request may have read it while this one waited.
        if let Some(hit) = self.cached(name, &found)? {
            return Ok(hit);
        }
        let path = found.path.clone();
        let max = self.settings.max_file_bytes;
        let read = tokio::task::spawn_blocking(move || read_title(&path, max))
            .await
            .map_err(|e| VodError::Io(std::io::Error::other(e)))?;
        let title = match read {
            Ok(t) => Arc::new(t),
            Err(VodError::Unsupported(why)) => {
                tracing::warn!(file = %name, "not playable on demand: {why}");
                let mut cache = lock(&self.cache);
                if cache.failed.len() >= MAX_FAILED {
                    cache.failed.clear();
                }
                cache.failed.insert(name.to_string(), (found, why.clone()));
                return Err(VodError::Unsupported(why));
            }
            Err(e) => return Err(e),
        };
        let (v, a) = title.frame_counts();
        tracing::info!(
            file = %name,
            format = title.format.as_str(),
            duration_ms = title.duration_ms,
            video_frames = v,
            audio_frames = a,
            "on-demand title read"
        );
        let mut cache = lock(&self.cache);
        cache.tick += 1;
        let used = cache.tick;
        let cost = found.len;
        if let Some(old) = cache.entries.insert(
            name.to_string(),
            Entry {
                found,
                title: Arc::clone(&title),
                packaged: None,
                cost,
                used,
            },
        ) {
            cache.total -= old.cost;
        }
        cache.total += cost;
        self.evict(&mut cache, name);
        Ok((title, None))
    }

    /// The entry kept for `name` if it is still `found`'s, or the reason
    /// it did not play.
    #[allow(clippy::type_complexity)]
    fn cached(
        &self,
        name: &str,
        found: &Found,
    ) -> Result<Option<(Arc<Title>, Option<Arc<Packaged>>)>, VodError> {
        let mut cache = lock(&self.cache);
        if let Some((f, why)) = cache.failed.get(name) {
            if f == found {
                return Err(VodError::Unsupported(why.clone()));
            }
        }
        cache.tick += 1;
        let tick = cache.tick;
        let Some(e) = cache.entries.get_mut(name).filter(|e| e.found == *found) else {
            return Ok(None);
        };
        e.used = tick;
        Ok(Some((Arc::clone(&e.title), e.packaged.clone())))
    }

    /// Keeps `p` as `title`'s packaging, unless a concurrent request kept
    /// one first (then that one). Returns the one to serve.
    fn remember_packaged(&self, name: &str, title: &Arc<Title>, p: Arc<Packaged>) -> Arc<Packaged> {
        let mut cache = lock(&self.cache);
        let Some(e) = cache
            .entries
            .get_mut(name)
            .filter(|e| Arc::ptr_eq(&e.title, title))
        else {
            return p;
        };
        if let Some(kept) = &e.packaged {
            return Arc::clone(kept);
        }
        let extra = lock(&p).stored_bytes();
        e.packaged = Some(Arc::clone(&p));
        e.cost += extra;
        cache.total += extra;
        self.evict(&mut cache, name);
        p
    }

    /// Whether `p` is the packaging the cache keeps for `name`.
    fn is_cached(&self, name: &str, p: &Arc<Packaged>) -> bool {
        lock(&self.cache)
            .entries
            .get(name)
            .and_then(|e| e.packaged.as_ref())
            .is_some_and(|kept| Arc::ptr_eq(kept, p))
    }

    /// Drops the least recently used entries but `keep` until the cache
    /// fits its bound.
    fn evict(&self, cache: &mut Cache, keep: &str) {
        while cache.total > self.settings.cache_bytes {
            let Some(oldest) = cache
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = cache.entries.remove(&oldest) {
                cache.total -= e.cost;
                if let Some(p) = e.packaged {
                    self.store
                        .remove_if_same(&format!("{}/{oldest}", self.settings.app), &p);
                }
            }
        }
    }

    /// Bytes the cache holds now.
    pub fn cached_bytes(&self) -> u64 {
        lock(&self.cache).total
    }
}

/// See [`Library::resolve`].
fn resolve(dir: &Path, name: &str) -> Result<Found, VodError> {
    check_segments(name)?;
    let root = dir.canonicalize().map_err(|_| VodError::NotFound)?;
    for candidate in [
        name.to_string(),
        format!("{name}.flv"),
        format!("{name}.mp4"),
    ] {
        let path = root.join(&candidate);
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if !real.starts_with(&root) {
            return Err(VodError::Forbidden("a link out of the media directory"));
        }
        let meta = std::fs::metadata(&real).map_err(VodError::Io)?;
        if meta.is_dir() {
            // A CMAF recording: known by its index, which is rewritten
            // after every segment.
            let index = real.join(crate::package::urls::MULTIVARIANT);
            match std::fs::metadata(&index) {
                Ok(m) if m.is_file() => {
                    return Ok(Found {
                        path: real,
                        dir: true,
                        len: m.len(),
                        modified: m.modified().ok(),
                    })
                }
                _ => continue,
            }
        }
        if !meta.is_file() {
            continue;
        }
        return Ok(Found {
            path: real,
            dir: false,
            len: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    Err(VodError::NotFound)
}

/// A CMAF recording's file for `resource`, `real` being its directory as
/// [`resolve`] found it (canonical, inside the media directory): served
/// as it is on disk, since it has castgate's layout.
fn cmaf_file(real: &Path, resource: Resource, max: u64) -> Result<Served, VodError> {
    use crate::package::serve::{CachePolicy, Payload};
    use crate::package::urls;
    let (rel, content_type, manifest) = match resource {
        Resource::Multivariant => (urls::MULTIVARIANT.to_string(), HLS_TYPE, true),
        Resource::MediaPlaylist(kind) => (urls::media_playlist(kind), HLS_TYPE, true),
        Resource::Mpd => (urls::MPD.to_string(), DASH_TYPE, true),
        Resource::Init(kind, id) => (urls::init(kind, id), mp4_type(kind), false),
        Resource::Segment(kind, n) => (urls::segment(kind, n), mp4_type(kind), false),
        Resource::Part(..) => return Err(VodError::Missing("part")),
    };
    let path = real.join(&rel);
    let missing = || VodError::Missing(if manifest { "manifest" } else { "segment" });
    let file = path.canonicalize().map_err(|_| missing())?;
    if !file.starts_with(real) {
        return Err(VodError::Forbidden("a link out of the recording"));
    }
    let meta = std::fs::metadata(&file).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    if meta.len() > max {
        return Err(VodError::Unsupported(format!(
            "{rel}: {} bytes, more than vod.max_file_bytes",
            meta.len()
        )));
    }
    let data = std::fs::read(&file).map_err(VodError::Io)?;
    let payload = if manifest {
        Payload::Text(
            String::from_utf8(data)
                .map_err(|_| VodError::Unsupported(format!("{rel} is not text")))?,
        )
    } else {
        Payload::Chunks(vec![Bytes::from(data)])
    };
    Ok(Served {
        payload,
        content_type,
        // A recording being written grows: its manifests are asked again.
        cache: if manifest {
            CachePolicy::Live {
                max_age: std::time::Duration::from_secs(1),
            }
        } else {
            CachePolicy::Immutable
        },
        target_duration: 4,
    })
}

const HLS_TYPE: &str = "application/vnd.apple.mpegurl";
const DASH_TYPE: &str = "application/dash+xml";

fn mp4_type(kind: crate::media::MediaKind) -> &'static str {
    match kind {
        crate::media::MediaKind::Video => "video/mp4",
        crate::media::MediaKind::Audio => "audio/mp4",
    }
}

/// Refuses empty, hidden, `.` and `..` segments.
fn check_segments(name: &str) -> Result<(), VodError> {
    if name.is_empty() || name.len() > 1024 {
        return Err(VodError::NotFound);
    }
    for segment in name.split('/') {
        if segment.is_empty() || segment.starts_with('.') {
            return Err(VodError::Forbidden(
                "an empty, hidden, '.' or '..' path segment",
            ));
        }
    }
    Ok(())
}

/// A CMAF recording's tracks read back: for each track playlist, its
/// first init segment and the media segments listed after it (up to a
/// different init: a recording whose codec changed plays up to there), at
/// most `max` bytes in all. Every file must lie inside `dir`.
fn read_cmaf(dir: &Path, max: u64) -> Result<Title, VodError> {
    use crate::media::MediaKind;
    use crate::package::urls;
    let unsupported = |why: String| VodError::Unsupported(why);
    let mut total = 0u64;
    let mut tracks = Vec::new();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let name = urls::media_playlist(kind);
        let Ok(text) = std::fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        let mut files = Vec::new();
        let mut init: Option<&str> = None;
        for line in text.lines() {
            if let Some(uri) = line
                .strip_prefix("#EXT-X-MAP:URI=\"")
                .and_then(|l| l.strip_suffix('"'))
            {
                match init {
                    None => {
                        init = Some(uri);
                        files.push(uri);
                    }
                    Some(first) if first == uri => {}
                    Some(_) => break,
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                files.push(line);
            }
        }
        if init.is_none() {
            return Err(unsupported(format!("{name} names no init segment")));
        }
        let mut data = Vec::new();
        for rel in files {
            let path = dir
                .join(rel)
                .canonicalize()
                .map_err(|e| unsupported(format!("{rel}: {e}")))?;
            if !path.starts_with(dir) {
                return Err(VodError::Forbidden(
                    "a playlist naming a file out of its recording",
                ));
            }
            let bytes = std::fs::read(&path).map_err(VodError::Io)?;
            total += bytes.len() as u64;
            if total > max {
                return Err(unsupported(format!(
                    "more than vod.max_file_bytes ({max}) bytes"
                )));
            }
            data.extend_from_slice(&bytes);
        }
        tracks.push(Bytes::from(data));
    }
    if tracks.is_empty() {
        return Err(unsupported(
            "a CMAF recording without a track playlist".into(),
        ));
    }
    Title::read_cmaf(&tracks).map_err(|e| unsupported(e.to_string()))
}

/// Reads and parses a file of at most `max` bytes (or a CMAF recording's
/// directory).
fn read_title(path: &Path, max: u64) -> Result<Title, VodError> {
    use std::io::Read;
    if path.is_dir() {
        return read_cmaf(path, max);
    }
    let file = std::fs::File::open(path).map_err(VodError::Io)?;
    let len = file.metadata().map_err(VodError::Io)?.len();
    if len > max {
        return Err(VodError::Unsupported(format!(
            "{len} bytes, more than vod.max_file_bytes ({max})"
        )));
    }
    let mut data = Vec::with_capacity(len as usize);
    // Bounded even if the file grew since it was looked at.
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(VodError::Io)?;
    if data.len() as u64 > max {
        return Err(VodError::Unsupported(format!(
            "more than vod.max_file_bytes ({max}) bytes"
        )));
    }
    Title::read(Bytes::from(data)).map_err(|e| VodError::Unsupported(e.to_string()))
}

/// `title` packaged as an ended stream `key`: segments of about
/// `target_secs` cut at keyframes, every one listed.
pub fn package(key: &str, title: &Title, target_secs: f64) -> StreamSegmenter {
    let config = SegmenterConfig {
        target: target_secs,
        part_target: target_secs,
        window: MAX_SEGMENTS,
        extra: 0,
        aligned: false,
        low_latency: false,
    };
    let start = SystemTime::now();
    let mut seg = StreamSegmenter::with_first_number(key, config, 1);
    seg.set_playlist_type(PlaylistType::Vod);
    let mut at = start;
    for e in &title.events {
        if let StreamEvent::Frame(f) = e {
            at = start + std::time::Duration::from_millis(f.dts.max(0) as u64);
        }
        seg.push(e, at);
    }
    seg.end(at);
    seg
}

/// Segments a packaged title may list: 10 days of 1 s segments.
const MAX_SEGMENTS: usize = 864_000;

#[cfg(test)]
mod tests;
