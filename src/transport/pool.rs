//! Connection threads: one single-threaded tokio runtime per core, each
//! owning the sockets it was given, the way nginx runs one event loop per
//! worker process.
//!
//! Measured (bench/compare, 50 publishers): with tokio's work-stealing
//! runtime, every packet that woke one worker also woke the other through a
//! futex to steal work that was not there, and those thread switches cost
//! more than the RTMP work itself (0.19 % of a core per stream against 0.12 %
//! on one thread). Here a connection stays on its thread for life; threads
//! only meet in the hub, when a player on one follows a publisher on another.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tracing::warn;

struct Worker {
    handle: Handle,
    /// Connections running on this worker, to place new ones on the least busy.
    active: Arc<AtomicUsize>,
}

static WORKERS: OnceLock<Vec<Worker>> = OnceLock::new();

/// Starts `threads` connection threads (0 = one per CPU core). Later calls do
/// nothing; until this is called, connections run on the caller's runtime.
pub fn start(threads: usize) -> std::io::Result<usize> {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    if let Some(w) = WORKERS.get() {
        return Ok(w.len());
    }
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("castgate-io-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        workers.push(Worker {
            handle,
            active: Arc::default(),
        });
    }
    let _ = WORKERS.set(workers);
    Ok(n)
}

/// Runs `serve` for an accepted socket on the least busy connection thread
/// (or as a task on the current runtime when no threads were started).
pub fn spawn_connection<F, Fut>(socket: TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(worker) = WORKERS
        .get()
        .and_then(|w| w.iter().min_by_key(|w| w.active.load(Ordering::Relaxed)))
    else {
        tokio::spawn(serve(socket));
        return;
    };
    // A socket belongs to the runtime whose driver polls it: move the file
    // descriptor over and register it there.
    let socket = match socket.into_std() {
        Ok(s) => s,
        Err(e) => {
            warn!("could not hand a connection to a worker thread: {e}");
            return;
        }
    };
    let active = worker.active.clone();
    active.fetch_add(1, Ordering::Relaxed);
    worker.handle.spawn(async move {
        match TcpStream::from_std(socket) {
            Ok(s) => serve(s).await,
            Err(e) => warn!("could not register a connection on its worker thread: {e}"),
        }
        active.fetch_sub(1, Ordering::Relaxed);
    });
}
