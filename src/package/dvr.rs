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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::segmenter::DvrOutbox;
use crate::locks::lock;
use crate::media::MediaKind;

/// Jobs waiting for the writer thread, over every stream.
pub const QUEUE: usize = 1024;

type Id = (MediaKind, u64);

/// One stream session's DVR archive.
#[derive(Debug)]
pub struct Dvr {
    dir: PathBuf,
    stream: String,
    /// Segments handed to the writer and not written yet.
    pending: Mutex<HashMap<Id, Vec<Bytes>>>,
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
            lock(&dvr.pending).remove(&id);
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
    pub fn new(root: &Path, key: &str, session: u64) -> Arc<Dvr> {
        Arc::new(Dvr {
            dir: root.join(key).join(session.to_string()),
            stream: key.to_string(),
            pending: Mutex::default(),
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
                lock(&self.pending).insert(id, chunks);
                match writer().try_send(Job::Write(Arc::clone(self), id)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        lock(&self.pending).remove(&id);
                        self.lose("the DVR writer's queue is full");
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        lock(&self.pending).remove(&id);
                        self.lose("the DVR writer is gone");
                    }
                }
            }
            for number in out.forgotten {
                let id = (kind, number);
                lock(&self.pending).remove(&id);
                // Best effort: a file left behind goes with the session.
                let _ = writer().try_send(Job::Delete(self.path(id)));
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
        lock(&self.pending).clear();
        if writer().try_send(Job::DeleteAll(self.dir.clone())).is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
