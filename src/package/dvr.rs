//! DVR: a live stream's segments past the memory window, on disk.
//!
//! With `package.dvr_secs` set, the segmenter keeps listing a segment for
//! that long after its bytes leave memory ([`StreamSegmenter::set_dvr`]);
//! those bytes come out of it in an outbox, which [`Packaged::update`]
//! hands to the stream's [`Dvr`]: the segment waits in memory (`pending`,
//! still served from there) until the one writer thread has written it
//! under `package.dvr_dir/KEY/SESSION/`, and segments no longer listed are
//! deleted. Memory thus stays at the live window whatever the DVR depth;
//! the archive's descriptions (about 150 bytes a segment) stay listed.
//!
//! **Spill.** Under `package.memory_budget_bytes` every packaged stream
//! has a [`Dvr`] (when `dvr_dir` is set), and listed segments of the least
//! watched streams go through it the same way (see `package::memory`):
//! still listed, served from disk, deleted when they leave the window or
//! the stream is dropped. Segments waiting for the writer count in the
//! store's memory.
//!
//! **Drop policy.** The writer's queue is bounded ([`QUEUE`] jobs): a
//! segment that finds it full is not stored (counted and logged once per
//! stream); a request for it then gets 404, like a segment past the
//! window. The publisher never waits on the disk. A write error (disk
//! full) is counted and logged the same way.
//!
//! [`StreamSegmenter::set_dvr`]: super::segmenter::StreamSegmenter::set_dvr
//! [`Packaged::update`]: super::service::Packaged::update

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::memory::Memory;
use super::segmenter::DvrOutbox;
use crate::locks::lock;
use crate::media::MediaKind;

/// Directory entries a start-up cleanup examines at most.
const MAX_CLEAN_ENTRIES: usize = 1_000_000;

/// Deletes what a previous castgate left under `root` (it ended without
/// dropping its streams: a crash, a kill): the segment files of the
/// layout [`Dvr`] writes (`…/video/N.m4s`, `…/audio/N.m4s`), then the
/// directories that left empty. Nothing else is touched, so a `dvr_dir`
/// set to a directory holding other files loses none of them; links are
/// not followed. Returns the files deleted.
pub fn clean_stale(root: &Path) -> usize {
    let mut deleted = 0;
    let mut seen = 0;
    let mut dirs = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(list) = std::fs::read_dir(&dir) else {
            continue;
        };
        dirs.push(dir.clone());
        let in_track = dir
            .file_name()
            .is_some_and(|n| n == "video" || n == "audio");
        for e in list.flatten() {
            seen += 1;
            if seen > MAX_CLEAN_ENTRIES {
                return deleted;
            }
            let Ok(kind) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                todo.push(e.path());
            } else if kind.is_file()
                && in_track
                && name
                    .strip_suffix(".m4s")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::remove_file(e.path()).is_ok()
            {
                deleted += 1;
            }
        }
    }
    // Deepest first; a directory that still holds anything stays.
    for dir in dirs.iter().rev().filter(|d| d.as_path() != root) {
        let _ = std::fs::remove_dir(dir);
    }
    deleted
}

/// Jobs waiting for the writer thread, over every stream.
pub const QUEUE: usize = 1024;

/// Jobs queued for the writer and not done yet.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// Whether the writer's queue has room for `jobs` more (the memory budget
/// drops segments rather than queue them past it).
pub fn has_room(jobs: usize) -> bool {
    QUEUED.load(Ordering::Relaxed).saturating_add(jobs) <= QUEUE
}

/// Queues `job` for the writer, counted in [`QUEUED`].
fn send(job: Job) -> Result<(), TrySendError<Job>> {
    QUEUED.fetch_add(1, Ordering::Relaxed);
    let r = writer().try_send(job);
    if r.is_err() {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
    }
    r
}

type Id = (MediaKind, u64);

/// One stream session's DVR archive.
#[derive(Debug)]
pub struct Dvr {
    dir: PathBuf,
    stream: String,
    /// Segments handed to the writer and not written yet (counted in
    /// `memory`: they are still held).
    pending: Mutex<HashMap<Id, Vec<Bytes>>>,
    memory: Arc<Memory>,
    /// Segments stored, and those lost (queue full or write error).
    pub written: AtomicU64,
    pub lost: AtomicU64,
}

enum Job {
    Write(Arc<Dvr>, Id),
    Delete(PathBuf),
    /// The whole session's directory.
    DeleteAll(PathBuf),
}

fn writer() -> &'static SyncSender<Job> {
    static TX: OnceLock<SyncSender<Job>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("dvr-writer".into())
            .spawn(move || {
                for job in rx {
                    run(job);
                    QUEUED.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .expect("cannot start the DVR writer thread");
        tx
    })
}

fn run(job: Job) {
    match job {
        Job::Write(dvr, id) => {
            let Some(chunks) = lock(&dvr.pending).get(&id).cloned() else {
                return;
            };
            let path = dvr.path(id);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, chunks.concat()));
            dvr.unpend(id);
            match written {
                Ok(()) => {
                    dvr.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => dvr.lose(&format!("write {}: {e}", path.display())),
            }
        }
        Job::Delete(path) => {
            let _ = std::fs::remove_file(path);
        }
        Job::DeleteAll(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Dvr {
    /// The archive of stream `key`'s session numbered from `session` (its
    /// first segment number: sessions never share one), under `root`.
    /// `memory` counts the segments waiting for the writer.
    pub fn new(root: &Path, key: &str, session: u64, memory: Arc<Memory>) -> Arc<Dvr> {
        Arc::new(Dvr {
            dir: root.join(key).join(session.to_string()),
            stream: key.to_string(),
            pending: Mutex::default(),
            memory,
            written: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        })
    }

    fn path(&self, (kind, number): Id) -> PathBuf {
        let track = match kind {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        };
        self.dir.join(track).join(format!("{number}.m4s"))
    }

    /// Stops holding segment `id` for the writer.
    fn unpend(&self, id: Id) {
        if let Some(chunks) = lock(&self.pending).remove(&id) {
            self.memory.adjust(len(&chunks), 0);
        }
    }

    fn lose(&self, why: &str) {
        if self.lost.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                stream = self.stream,
                "DVR segment not stored ({why}); older segments of this stream may be missing"
            );
        }
    }

    /// Takes what left the segmenter's memory: segments to store, numbers
    /// to delete. Called under the stream's lock, so a request never finds
    /// a listed segment nowhere.
    pub fn take(self: &Arc<Self>, outbox: Vec<(MediaKind, DvrOutbox)>) {
        for (kind, out) in outbox {
            for (number, chunks) in out.spilled {
                let id = (kind, number);
                self.memory.adjust(0, len(&chunks));
                if let Some(old) = lock(&self.pending).insert(id, chunks) {
                    self.memory.adjust(len(&old), 0);
                }
                match send(Job::Write(Arc::clone(self), id)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.unpend(id);
                        self.lose("the DVR writer's queue is full");
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        self.unpend(id);
                        self.lose("the DVR writer is gone");
                    }
                }
            }
            for number in out.forgotten {
                let id = (kind, number);
                self.unpend(id);
                // Best effort: a file left behind goes with the session.
                let _ = send(Job::Delete(self.path(id)));
            }
        }
    }

    /// Segment `number` of `kind`: waiting to be written, or read from disk
    /// (blocking: call off the async runtime).
    pub fn read(&self, kind: MediaKind, number: u64) -> Option<Vec<Bytes>> {
        if let Some(chunks) = lock(&self.pending).get(&(kind, number)) {
            return Some(chunks.clone());
        }
        std::fs::read(self.path((kind, number)))
            .ok()
            .map(|b| vec![Bytes::from(b)])
    }

    /// Deletes the session's archive (the stream is dropped).
    pub fn remove(&self) {
        self.release_pending();
        if send(Job::DeleteAll(self.dir.clone())).is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Dvr {
    /// Forgets the segments not yet written, taking their bytes out of the
    /// ledger.
    fn release_pending(&self) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        self.memory
            .adjust(pending.values().map(|c| len(c)).sum(), 0);
    }
}

impl Drop for Dvr {
    fn drop(&mut self) {
        self.release_pending();
    }
}

/// Bytes of a segment's chunks.
fn len(chunks: &[Bytes]) -> u64 {
    chunks.iter().map(|b| b.len() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crashed_archive_is_cleaned_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let session = root.path().join("live/cam/1700000000");
        for track in ["video", "audio"] {
            std::fs::create_dir_all(session.join(track)).unwrap();
            for n in 1700000001..1700000004u64 {
                std::fs::write(session.join(track).join(format!("{n}.m4s")), b"x").unwrap();
            }
        }
        // Not ours: kept, and so are their directories.
        std::fs::write(root.path().join("live/notes.txt"), b"keep").unwrap();
        std::fs::write(session.join("video/poster.m4s.bak"), b"keep").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("video")).unwrap();
        std::fs::write(outside.path().join("video/1.m4s"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();

        assert_eq!(clean_stale(root.path()), 6);
        assert!(!session.join("audio").exists(), "an emptied directory goes");
        assert!(session.join("video/poster.m4s.bak").exists());
        assert!(root.path().join("live/notes.txt").exists());
        assert!(
            outside.path().join("video/1.m4s").exists(),
            "links are not followed"
        );
        assert!(root.path().exists());
        assert_eq!(clean_stale(&root.path().join("missing")), 0);
    }
}
