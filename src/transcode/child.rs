//! Spawning ffmpeg: stdin for the source, one pipe per rendition on fds
//! 3, 4, …, stdout (progress) and stderr piped.
//!
//! Why extra pipes rather than ffmpeg publishing back over RTMP or one
//! multiplexed output: a pipe per rendition needs no listener, no port, no
//! authentication and no demultiplexer; each rendition is a plain FLV stream
//! castgate already parses, it cannot be confused with a publisher, and it
//! ends when ffmpeg does (EOF), so a dead child is noticed at once.
//!
//! The child never outlives castgate or its job: `kill_on_drop`, its own
//! process group (a Ctrl-C at a terminal does not reach it: castgate decides
//! when it stops), and `PR_SET_PDEATHSIG` = SIGKILL, so it dies with the
//! runtime thread that spawned it (a tokio worker, which lives as long as
//! castgate) even when castgate itself is killed with SIGKILL.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;

use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use super::command::FIRST_OUTPUT_FD;

/// Renditions one ffmpeg can have (fds 3.. must stay below [`HIGH_FD`]).
pub const MAX_OUTPUTS: usize = 32;
/// The write ends are moved at or above this before the fork, so the
/// `dup2`s onto 3, 4, … in the child never overwrite one not yet moved.
const HIGH_FD: RawFd = 64;

pub struct Spawned {
    pub child: Child,
    /// One FLV stream per encoded rendition, in profile order.
    pub outputs: Vec<pipe::Receiver>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pipe: (read end, write end moved to >= [`HIGH_FD`]), both close-on-exec.
fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [0; 2];
    // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: `w` is an open fd; F_DUPFD_CLOEXEC returns a new one we own.
    let high = cvt(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD) })?;
    // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
    Ok((r, unsafe { OwnedFd::from_raw_fd(high) }))
}

/// Starts `program args` with `outputs` rendition pipes.
pub fn spawn(program: &Path, args: &[String], outputs: usize) -> io::Result<Spawned> {
    if outputs > MAX_OUTPUTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_OUTPUTS} renditions per profile"),
        ));
    }
    let mut readers = Vec::with_capacity(outputs);
    let mut writers = Vec::with_capacity(outputs);
    for _ in 0..outputs {
        let (r, w) = output_pipe()?;
        readers.push(r);
        writers.push(w);
    }
    let raw: Vec<RawFd> = writers.iter().map(|w| w.as_raw_fd()).collect();
    let parent = std::process::id();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, getppid, dup2) on plain values.
    unsafe {
        cmd.pre_exec(move || {
            cvt(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            // castgate died between fork and prctl: no parent to signal.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("parent exited before exec"));
            }
            for (i, fd) in raw.iter().enumerate() {
                // dup2 leaves the new descriptor open across exec.
                cvt(libc::dup2(*fd, FIRST_OUTPUT_FD + i as RawFd))?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The child has its copies; ours must close so EOF means ffmpeg is done.
    drop(writers);
    let outputs = readers
        .into_iter()
        .map(pipe::Receiver::from_owned_fd)
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Spawned { child, outputs })
}
