//! Recordings on disk: finding them under `[recorder] dir` (bounded: a
//! depth, an entry count, a file count; symbolic links are never
//! followed), what each one is (its sidecar, or else its FLV tag headers),
//! their ids, deleting one, and retention's choice of what to delete (a
//! pure function of the list and the time).
//!
//! A recording is an FLV file `X.flv` or a CMAF directory `X/` (listed by
//! its `X/index.m3u8`: its size is its files', its duration what its
//! playlist lists). Every recording `X` gets a sidecar `X.json` beside it (written
//! when the file opens and again when it closes or fails): the stream, the
//! start, the state, and once complete its duration and size. A file
//! without a sidecar (dropped in, or written before sidecars) is listed as
//! complete with its duration read from its FLV tag headers.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The RTMP application (and HTTP path prefix) recordings play under as
/// video on demand, until a `[vod]` setting names it.
pub const VOD_APP: &str = "vod";
/// Directory levels below the recorder dir that a scan enters.
pub const MAX_DEPTH: usize = 8;
/// Directory entries a scan examines at most.
pub const MAX_ENTRIES: usize = 100_000;
/// Recording files a scan lists at most.
pub const MAX_FILES: usize = 10_000;
/// FLV tags a duration walk reads at most (about 24 h at 30 fps video and
/// 47 audio frames a second).
const MAX_TAGS: u64 = 8_000_000;
/// Largest sidecar read.
const MAX_SIDECAR: u64 = 16 * 1024;
/// The FLV recordings' extension.
const EXT: &str = ".flv";
/// What a CMAF recording's directory is known by (its `index.m3u8`).
const CMAF_INDEX: &str = "/index.m3u8";
/// Files a CMAF recording's directory may hold, in each track directory.
const MAX_CMAF_FILES: usize = 200_000;

/// The recording's name without what marks its format: the FLV file's
/// extension, or a CMAF directory's `/index.m3u8`.
fn base_of(rel: &str) -> Option<&str> {
    rel.strip_suffix(EXT)
        .or_else(|| rel.strip_suffix(CMAF_INDEX))
}

/// A recording file's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Being written now.
    Recording,
    /// Closed normally (the publish ended, a split, a stop).
    Complete,
    /// Stopped by an error, or left open by a castgate that died.
    Failed,
}

/// What is written beside each file (`X.json` for `X.flv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// `app/key`.
    pub stream: String,
    pub format: String,
    /// RFC 3339, when the file opened.
    pub start: String,
    /// The same, in milliseconds since the epoch (for ordering).
    pub start_ms: i64,
    pub state: FileState,
    /// Seconds of media, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where the recorder's directory is in the VOD namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VodPlace {
    /// The VOD application (`vod.app`).
    pub app: String,
    /// The recorder's directory under `[vod] dir`, with a trailing `/`
    /// (empty when they are the same directory).
    pub prefix: String,
}

impl VodPlace {
    /// Where `record_dir` is under `vod_dir` (the same directory when it
    /// is not under it: see `Recorder::with_vod`).
    pub fn of(app: &str, record_dir: &Path, vod_dir: &Path) -> VodPlace {
        let real = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let prefix = real(record_dir)
            .strip_prefix(real(vod_dir))
            .ok()
            .map(|rel| rel.to_string_lossy().into_owned())
            .filter(|rel| !rel.is_empty())
            .map(|rel| format!("{rel}/"))
            .unwrap_or_default();
        VodPlace {
            app: app.to_string(),
            prefix,
        }
    }
}

/// Where a recording plays on demand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct VodUrls {
    /// `/vod/PATH/index.m3u8` on the HTTP listener.
    pub hls: String,
    /// `/vod/PATH/manifest.mpd` on the HTTP listener.
    pub dash: String,
    /// The RTMP path: `vod/PATH` (app `vod`, stream name `PATH`).
    pub rtmp: String,
}

/// One recording file.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct RecordingFile {
    /// Stable across restarts and URL-safe: the file's path relative to
    /// the recorder dir, base64url-encoded.
    pub id: String,
    /// `app/key` of the stream recorded, when known (from the sidecar).
    pub stream: Option<String>,
    /// RFC 3339.
    pub start: String,
    /// Seconds of media (last minus first frame time).
    pub duration: f64,
    /// Bytes of media files.
    pub size: u64,
    /// The media files, relative to the recorder dir.
    pub files: Vec<String>,
    pub state: FileState,
    /// `flv`.
    pub format: String,
    /// The path relative to the recorder dir without the extension.
    pub vod_path: String,
    pub urls: VodUrls,
    /// For ordering and retention: start and last change, in ms since the
    /// epoch.
    #[serde(skip)]
    pub start_ms: i64,
    #[serde(skip)]
    pub modified_ms: i64,
}

impl RecordingFile {
    /// The media file, relative to the recorder dir.
    pub fn path(&self) -> &str {
        self.files.first().map_or("", String::as_str)
    }
}

/// A scan's answer.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Sorted by start, then path.
    pub files: Vec<RecordingFile>,
    /// A bound was reached: some recordings are not listed.
    pub truncated: bool,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A recording's id: base64url (no padding) of its relative path.
pub fn id_of(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len() * 4 / 3 + 3);
    for chunk in rel.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The relative path an id names, if it is one `id_of` makes.
pub fn rel_of(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 8192 || id.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(id.len() * 3 / 4);
    for chunk in id.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = B64.iter().position(|b| b == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    let rel = String::from_utf8(out).ok()?;
    // Only the canonical encoding names a file.
    (id_of(&rel) == id).then_some(rel)
}

/// Whether `rel` is a path a scan could list: relative, plain segments,
/// none hidden, within the depth, ending in `.flv`.
fn listable(rel: &str) -> bool {
    let segments: Vec<&str> = rel.split('/').collect();
    base_of(rel).is_some_and(|b| !b.is_empty())
        && segments.len() <= MAX_DEPTH + 1
        && segments
            .iter()
            .all(|s| !s.is_empty() && !s.starts_with('.') && !s.contains('\\'))
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The sidecar's path for a media file's relative path.
pub fn sidecar_path(rel: &str) -> String {
    format!("{}.json", base_of(rel).unwrap_or(rel))
}

/// A CMAF recording's directory (absolute) if `rel` names one.
fn cmaf_dir(dir: &Path, rel: &str) -> Option<PathBuf> {
    rel.strip_suffix(CMAF_INDEX).map(|b| dir.join(b))
}

/// The regular files of a CMAF recording's directory and of its track
/// directories (`video/`, `audio/`): links and anything deeper are left
/// alone.
fn cmaf_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for sub in [None, Some("video"), Some("audio")] {
        let at = sub.map_or_else(|| dir.to_path_buf(), |s| dir.join(s));
        if sub.is_some() && !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for e in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            if out.len() >= MAX_CMAF_FILES {
                return out;
            }
            if let Ok(m) = e.metadata() {
                // `DirEntry::metadata` does not follow a link.
                if m.is_file() {
                    out.push((e.path(), m.len()));
                }
            }
        }
    }
    out
}

/// Seconds a CMAF recording's media playlist lists (video, else audio).
fn cmaf_duration(dir: &Path) -> Option<f64> {
    for name in ["video.m3u8", "audio.m3u8"] {
        let path = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() > 64 << 20 {
            continue;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let secs = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .filter_map(|l| l.split(',').next()?.parse::<f64>().ok())
            .sum();
        return Some(secs);
    }
    None
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes `rel`'s sidecar (a temporary file renamed over it, so a reader
/// never sees half of one).
pub fn write_sidecar(dir: &Path, rel: &str, s: &Sidecar) -> std::io::Result<()> {
    let path = dir.join(sidecar_path(rel));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)
}

fn read_sidecar(dir: &Path, rel: &str) -> Option<Sidecar> {
    let path = dir.join(sidecar_path(rel));
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SIDECAR {
        return None;
    }
    let mut data = Vec::new();
    std::fs::File::open(&path)
        .ok()?
        .take(MAX_SIDECAR)
        .read_to_end(&mut data)
        .ok()?;
    serde_json::from_slice(&data).ok()
}

/// Seconds between an FLV file's first and last audio or video tag, read
/// from the tag headers only (at most [`MAX_TAGS`] of them); `None` for a
/// file that is not FLV or holds no media tag. A tag cut short by the end
/// of the file (one being written, or a crash) ends the walk.
pub fn flv_duration(path: &Path) -> Option<f64> {
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut head = [0u8; 9];
    r.read_exact(&mut head).ok()?;
    if &head[..3] != b"FLV" {
        return None;
    }
    let offset = u64::from(u32::from_be_bytes([head[5], head[6], head[7], head[8]]));
    if !(9..=1024).contains(&offset) {
        return None;
    }
    // The header's rest and PreviousTagSize0.
    r.seek_relative(offset as i64 - 9 + 4).ok()?;
    let mut pos = offset + 4;
    let (mut first, mut last) = (None::<i64>, 0i64);
    for _ in 0..MAX_TAGS {
        let mut tag = [0u8; 11];
        if r.read_exact(&mut tag).is_err() {
            break;
        }
        let size = u64::from(u32::from_be_bytes([0, tag[1], tag[2], tag[3]]));
        let ts = i64::from(u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]));
        if pos + 11 + size > len {
            break;
        }
        if matches!(tag[0] & 0x1f, 8 | 9) && size > 0 {
            let f = *first.get_or_insert(ts);
            // 32-bit wrap is past 49 days: not handled.
            last = last.max(ts).max(f);
        }
        pos += 11 + size + 4;
        if r.seek_relative(size as i64 + 4).is_err() {
            break;
        }
    }
    first.map(|f| (last - f) as f64 / 1000.0)
}

/// Describes the recording at `rel` (checked by the caller: listable,
/// every directory on the way a real directory). `writing`: the files
/// being written now.
fn describe(
    dir: &Path,
    rel: &str,
    writing: &HashSet<String>,
    vod: &VodPlace,
) -> Option<RecordingFile> {
    let path = dir.join(rel);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let cmaf = cmaf_dir(dir, rel);
    let size = match &cmaf {
        Some(d) => cmaf_files(d).iter().map(|(_, n)| n).sum(),
        None => meta.len(),
    };
    let modified_ms = meta.modified().map(ms).unwrap_or(0);
    let side = read_sidecar(dir, rel);
    let state = if writing.contains(rel) {
        FileState::Recording
    } else {
        match side.as_ref().map(|s| s.state) {
            // A sidecar still saying "recording" of a file nobody writes:
            // the castgate writing it died.
            Some(FileState::Recording) | Some(FileState::Failed) => FileState::Failed,
            Some(FileState::Complete) | None => FileState::Complete,
        }
    };
    let duration = match (&side, state) {
        (
            Some(Sidecar {
                duration: Some(d), ..
            }),
            FileState::Complete,
        ) => *d,
        _ => match &cmaf {
            Some(d) => cmaf_duration(d),
            None => flv_duration(&path),
        }
        .unwrap_or(0.0),
    };
    let (start, start_ms) = match &side {
        Some(s) => (s.start.clone(), s.start_ms),
        None => {
            let end = meta.modified().unwrap_or(UNIX_EPOCH);
            let t = end
                .checked_sub(std::time::Duration::from_secs_f64(duration.clamp(0.0, 1e9)))
                .unwrap_or(end);
            (crate::timefmt::rfc3339_millis(t), ms(t))
        }
    };
    let vod_path = format!("{}{}", vod.prefix, base_of(rel).unwrap_or(rel));
    let vod_app = &vod.app;
    Some(RecordingFile {
        id: id_of(rel),
        stream: side.as_ref().map(|s| s.stream.clone()),
        start,
        duration: (duration * 1000.0).round() / 1000.0,
        size,
        files: vec![rel.to_string()],
        state,
        format: side.map_or_else(
            || if cmaf.is_some() { "cmaf" } else { "flv" }.to_string(),
            |s| s.format,
        ),
        urls: VodUrls {
            hls: format!("/{vod_app}/{vod_path}/index.m3u8"),
            dash: format!("/{vod_app}/{vod_path}/manifest.mpd"),
            rtmp: format!("{vod_app}/{vod_path}"),
        },
        vod_path,
        start_ms,
        modified_ms,
    })
}

/// Every recording under `dir` (see the module docs for the bounds).
/// `writing` is asked after the directories were read, so a file that is
/// listed and being written is known as such.
pub fn scan(dir: &Path, writing: impl FnOnce() -> HashSet<String>, vod: &VodPlace) -> Scan {
    let mut found = Vec::new();
    let mut truncated = false;
    let mut entries = 0usize;
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(dir.to_path_buf(), String::new(), 0)];
    'walk: while let Some((abs, prefix, depth)) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&abs) else {
            continue;
        };
        for entry in list {
            entries += 1;
            if entries > MAX_ENTRIES || found.len() >= MAX_FILES {
                truncated = true;
                break 'walk;
            }
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // file_type() does not follow a symbolic link: links are
            // neither entered nor listed.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((entry.path(), format!("{rel}/"), depth + 1));
                }
            } else if kind.is_file() && listable(&rel) {
                found.push(rel);
            }
        }
    }
    let writing = writing();
    let mut files: Vec<RecordingFile> = found
        .iter()
        .filter_map(|rel| describe(dir, rel, &writing, vod))
        .collect();
    files.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then_with(|| a.id.cmp(&b.id)));
    Scan { files, truncated }
}

/// Whether every directory from `dir` down to `rel`'s file is a real
/// directory (no symbolic link on the way).
fn no_links_on_the_way(dir: &Path, rel: &str) -> bool {
    let mut at = dir.to_path_buf();
    let segments: Vec<&str> = rel.split('/').collect();
    for seg in &segments[..segments.len().saturating_sub(1)] {
        at.push(seg);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

/// The recording with this id, as a scan would list it.
pub fn find(
    dir: &Path,
    id: &str,
    writing: impl FnOnce() -> HashSet<String>,
    vod: &VodPlace,
) -> Option<RecordingFile> {
    let rel = rel_of(id)?;
    if !listable(&rel) || !no_links_on_the_way(dir, &rel) {
        return None;
    }
    describe(dir, &rel, &writing(), vod)
}

/// Deletes a listed recording's files (the media file and its sidecar),
/// then the directories this left empty, up to but not including `dir`.
/// Refuses anything a scan could not list.
pub fn remove(dir: &Path, rel: &str) -> std::io::Result<()> {
    // A missing file is NotFound; anything but a regular file is refused.
    let is_file = listable(rel) && std::fs::symlink_metadata(dir.join(rel))?.is_file();
    if !is_file || !no_links_on_the_way(dir, rel) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{rel} is not a recording under the recorder dir"),
        ));
    }
    match cmaf_dir(dir, rel) {
        // Its files, then its track directories and itself if that left
        // them empty.
        Some(d) => {
            for (f, _) in cmaf_files(&d) {
                std::fs::remove_file(f)?;
            }
            for sub in ["video", "audio"] {
                let _ = std::fs::remove_dir(d.join(sub));
            }
            let _ = std::fs::remove_dir(&d);
        }
        None => std::fs::remove_file(dir.join(rel))?,
    }
    let side = dir.join(sidecar_path(rel));
    if std::fs::symlink_metadata(&side).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(side);
    }
    let mut parent = Path::new(base_of(rel).unwrap_or(rel)).parent();
    while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
        if std::fs::remove_dir(dir.join(p)).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(())
}

/// Why retention deletes a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Older than `retention_days`.
    Age,
    /// The total is past `retention_bytes`.
    Size,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Age => "retention_days",
            Expiry::Size => "retention_bytes",
        }
    }
}

/// Retention: which of `files` to delete at `now_ms`, oldest first, and
/// why. A recording being written is never chosen but counts in the total.
/// Age is measured from a file's last change (its end); `max_age_ms` and
/// `max_bytes` of 0 are no limit.
pub fn expired(
    files: &[RecordingFile],
    now_ms: i64,
    max_age_ms: i64,
    max_bytes: u64,
) -> Vec<(usize, Expiry)> {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| (files[i].start_ms, files[i].modified_ms));
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    let mut out = Vec::new();
    for i in order {
        let f = &files[i];
        if f.state == FileState::Recording {
            continue;
        }
        let why = if max_age_ms > 0 && now_ms.saturating_sub(f.modified_ms) > max_age_ms {
            Expiry::Age
        } else if max_bytes > 0 && total > max_bytes {
            Expiry::Size
        } else {
            continue;
        };
        total -= f.size;
        out.push((i, why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vod() -> VodPlace {
        VodPlace {
            app: "vod".into(),
            prefix: String::new(),
        }
    }

    #[test]
    fn the_vod_place_is_the_record_dir_under_the_vod_dir() {
        let root = tempfile::tempdir().unwrap();
        let media = root.path().join("media");
        std::fs::create_dir_all(media.join("rec")).unwrap();
        assert_eq!(VodPlace::of("vod", &media, &media).prefix, "");
        assert_eq!(VodPlace::of("v", &media.join("rec"), &media).prefix, "rec/");
        // Outside it: as if it were the VOD directory.
        assert_eq!(VodPlace::of("vod", root.path(), &media).prefix, "");
    }

    #[test]
    fn ids_are_url_safe_and_name_their_path() {
        for rel in [
            "a.flv",
            "live/cam/2026-12-06-21-18-37.flv",
            "x/y/z-1.flv",
            "ab.flv",
            "abc.flv",
        ] {
            let id = id_of(rel);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
            assert_eq!(rel_of(&id).as_deref(), Some(rel));
        }
        assert_eq!(id_of("abc"), "YWJj");
        assert_eq!(id_of("ab"), "YWI");
        // "YWJ" decodes to "ab" but is not its encoding ("YWI").
        for bad in ["", "a", "YWJj=", "YW/j", "YWJ", "YWK"] {
            assert!(rel_of(bad).is_none(), "{bad}");
        }
        for bad in [
            "../x.flv",
            "/etc/x.flv",
            "a/.h.flv",
            "a//b.flv",
            "a.mp4",
            ".flv",
        ] {
            assert!(!listable(bad), "{bad}");
        }
    }

    fn file(name: &str, start_ms: i64, end_ms: i64, size: u64, state: FileState) -> RecordingFile {
        RecordingFile {
            id: id_of(name),
            stream: None,
            start: String::new(),
            duration: 0.0,
            size,
            files: vec![name.into()],
            state,
            format: "flv".into(),
            vod_path: name.into(),
            urls: VodUrls {
                hls: String::new(),
                dash: String::new(),
                rtmp: String::new(),
            },
            start_ms,
            modified_ms: end_ms,
        }
    }

    #[test]
    fn retention_deletes_the_oldest_finished_first() {
        use FileState::*;
        const DAY: i64 = 86_400_000;
        let now = 100 * DAY;
        let files = [
            file("c", 50 * DAY, 51 * DAY, 100, Complete),
            file("a", 10 * DAY, 11 * DAY, 100, Failed),
            // Being written, the oldest and past every limit: kept.
            file("w", 5 * DAY, now, 1000, Recording),
            file("b", 20 * DAY, 21 * DAY, 100, Complete),
            file("d", 99 * DAY, 99 * DAY + 5, 100, Complete),
        ];
        let names = |v: Vec<(usize, Expiry)>| -> Vec<(&str, Expiry)> {
            v.into_iter().map(|(i, w)| (files[i].path(), w)).collect()
        };
        // No limits: nothing.
        assert!(expired(&files, now, 0, 0).is_empty());
        // 60 days: a and b ended more than 60 days ago.
        assert_eq!(
            names(expired(&files, now, 60 * DAY, 0)),
            [("a", Expiry::Age), ("b", Expiry::Age)]
        );
        // 1400 bytes in all: the oldest finished go first until the rest
        // fits.
        assert_eq!(names(expired(&files, now, 0, 1300)), [("a", Expiry::Size)]);
        assert_eq!(
            names(expired(&files, now, 0, 1200)),
            [("a", Expiry::Size), ("b", Expiry::Size)]
        );
        // Below what is being written: every finished file goes, the one
        // being written stays.
        assert_eq!(
            names(expired(&files, now, 0, 500)),
            [
                ("a", Expiry::Size),
                ("b", Expiry::Size),
                ("c", Expiry::Size),
                ("d", Expiry::Size)
            ]
        );
        // Both: age first, then size counts what age freed.
        assert_eq!(
            names(expired(&files, now, 60 * DAY, 1250)),
            [("a", Expiry::Age), ("b", Expiry::Age)]
        );
        assert_eq!(
            names(expired(&files, now, 60 * DAY, 1150)),
            [("a", Expiry::Age), ("b", Expiry::Age), ("c", Expiry::Size)]
        );
    }

    /// An FLV file's duration from its tag headers: media tags only, from
    /// the first to the last; a cut last tag ends the walk.
    #[test]
    fn flv_duration_walks_tag_headers() {
        let dir = tempfile::tempdir().unwrap();
        let tag = |kind: u8, ts: u32, size: usize| {
            let mut t = vec![kind];
            t.extend_from_slice(&(size as u32).to_be_bytes()[1..]);
            t.extend_from_slice(&ts.to_be_bytes()[1..]);
            t.push((ts >> 24) as u8);
            t.extend_from_slice(&[0, 0, 0]);
            t.extend(std::iter::repeat_n(0u8, size));
            t.extend_from_slice(&(11 + size as u32).to_be_bytes());
            t
        };
        let mut data = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        data.extend(tag(18, 0, 30));
        data.extend(tag(9, 1000, 50));
        data.extend(tag(8, 1010, 10));
        data.extend(tag(9, 4980, 50));
        data.extend(tag(8, 5000, 10));
        let path = dir.path().join("a.flv");
        std::fs::write(&path, &data).unwrap();
        assert_eq!(flv_duration(&path), Some(4.0));
        // A tag cut short (a file being written) is not counted.
        let mut cut = data.clone();
        cut.extend(tag(9, 9000, 50));
        cut.truncate(cut.len() - 20);
        std::fs::write(&path, &cut).unwrap();
        assert_eq!(flv_duration(&path), Some(4.0));
        // Past 2^24 ms, the extended byte counts.
        let mut long = data[..13].to_vec();
        long.extend(tag(9, 0x00ff_ffff, 5));
        long.extend(tag(9, 0x0100_0000 + 999, 5));
        std::fs::write(&path, &long).unwrap();
        assert_eq!(flv_duration(&path), Some(1.0));
        std::fs::write(&path, b"not an flv file").unwrap();
        assert_eq!(flv_duration(&path), None);
    }

    /// A scan lists `.flv` files under the dir with their sidecars' facts,
    /// skips hidden names and symbolic links, marks the files being
    /// written, and reads a file without a sidecar from its tags.
    #[test]
    fn scans_list_files_and_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("live/cam")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let flv = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";
        std::fs::write(root.join("live/cam/one.flv"), flv).unwrap();
        write_sidecar(
            &root,
            "live/cam/one.flv",
            &Sidecar {
                stream: "live/cam".into(),
                format: "flv".into(),
                start: "2026-12-06T21:00:00.000Z".into(),
                start_ms: 1000,
                state: FileState::Complete,
                duration: Some(12.5),
                bytes: Some(13),
                reason: None,
            },
        )
        .unwrap();
        std::fs::write(root.join("live/cam/two.flv"), flv).unwrap();
        std::fs::write(root.join("live/.hidden.flv"), flv).unwrap();
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        std::fs::write(outside.join("secret.flv"), flv).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.flv"), root.join("l.flv")).unwrap();
        let writing = || HashSet::from(["live/cam/two.flv".to_string()]);
        let scan = scan(&root, writing, &vod());
        assert!(!scan.truncated);
        let paths: Vec<&str> = scan.files.iter().map(RecordingFile::path).collect();
        assert_eq!(paths, ["live/cam/one.flv", "live/cam/two.flv"]);
        let one = &scan.files[0];
        assert_eq!(one.stream.as_deref(), Some("live/cam"));
        assert_eq!(one.duration, 12.5);
        assert_eq!(one.state, FileState::Complete);
        assert_eq!(one.size, 13);
        assert_eq!(one.vod_path, "live/cam/one");
        assert_eq!(one.urls.hls, "/vod/live/cam/one/index.m3u8");
        assert_eq!(one.urls.dash, "/vod/live/cam/one/manifest.mpd");
        assert_eq!(one.urls.rtmp, "vod/live/cam/one");
        assert_eq!(scan.files[1].state, FileState::Recording);
        assert_eq!(scan.files[1].stream, None);
        // Found by id; links and outside paths are not.
        let found = find(&root, &one.id, HashSet::new, &vod()).unwrap();
        assert_eq!(&found, one);
        for rel in ["link/secret.flv", "l.flv", "../outside/secret.flv"] {
            assert!(
                find(&root, &id_of(rel), HashSet::new, &vod()).is_none(),
                "{rel}"
            );
            assert!(remove(&root, rel).is_err(), "{rel}");
        }
        assert!(outside.join("secret.flv").exists());
        // Removing takes the sidecar and the emptied directories.
        remove(&root, "live/cam/one.flv").unwrap();
        remove(&root, "live/cam/two.flv").unwrap();
        assert!(!root.join("live/cam").exists());
        assert!(root.join("live").exists(), "not empty: the hidden file");
        assert!(root.exists());
    }
}
