//! Shared pieces of the end-to-end tests: a castgate process with its log,
//! real ffmpeg/ffprobe runs, generated fixtures and framemd5 comparisons.
//!
//! A missing external program is a test failure with a clear message,
//! never a skip: run `./scripts/test.sh` (it installs them) or install them.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Fails the test if `tool` is not on PATH.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: the end-to-end tests need it (run ./scripts/test.sh, which installs it with apt-get)"
    );
}

/// FFmpeg 9, the Enhanced RTMP peer (HEVC, AV1, VP9, Opus, FLAC, AC-3 in
/// FLV, multitrack): the binary `CASTGATE_FFMPEG9` names. `scripts/test.sh`
/// installs it (PyPI's imageio-ffmpeg in a venv under
/// `~/.cache/castgate`) and sets the variable; Debian's ffmpeg 5.1 cannot
/// send Enhanced RTMP. Unset, not executable or not FFmpeg 9: the test
/// fails saying so.
/// A Debian daemon (nginx, haproxy) from /usr/sbin, which a user's PATH may
/// lack, else from PATH; a missing one fails the test saying so.
pub fn sbin(tool: &str) -> String {
    let path = format!("/usr/sbin/{tool}");
    if Path::new(&path).exists() {
        return path;
    }
    require(tool);
    tool.to_string()
}

pub fn ffmpeg9() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let fix =
            "run ./scripts/test.sh (it installs FFmpeg 9 from PyPI's imageio-ffmpeg and sets \
                   CASTGATE_FFMPEG9), or set CASTGATE_FFMPEG9 to an FFmpeg 9 binary";
        let Some(path) = std::env::var_os("CASTGATE_FFMPEG9").filter(|p| !p.is_empty()) else {
            return Err(format!("CASTGATE_FFMPEG9 is not set: {fix}"));
        };
        let path = PathBuf::from(path);
        let executable = std::fs::metadata(&path).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        });
        if !executable {
            return Err(format!(
                "CASTGATE_FFMPEG9={} is not an executable file: {fix}",
                path.display()
            ));
        }
        let out = Command::new(&path)
            .args(["-hide_banner", "-version"])
            .output_within(Duration::from_secs(30))
            .map_err(|e| format!("CASTGATE_FFMPEG9={}: {e}: {fix}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        let version = first.strip_prefix("ffmpeg version ").unwrap_or_default();
        if !out.status.success() || !version.trim_start_matches('n').starts_with("9.") {
            return Err(format!(
                "CASTGATE_FFMPEG9={} is not FFmpeg 9 ({:?}): {fix}",
                path.display(),
                if first.is_empty() {
                    String::from_utf8_lossy(&out.stderr).to_string()
                } else {
                    first.to_string()
                }
            ));
        }
        Ok(path)
    });
    match found {
        Ok(p) => p.clone(),
        Err(e) => panic!("FFmpeg 9 is needed for the Enhanced RTMP tests: {e}"),
    }
}

/// A free loopback port, bound then released: only for peers that cannot
/// bind port 0 and report what they got (ffmpeg or srt-live-transmit as
/// listeners, a port that must refuse connections). castgate itself binds
/// port 0 and reports its ports in its log ([`Castgate::listening`]).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A loopback TCP port held bound but not listening: connections to it are
/// refused for as long as this lives, and nothing else can take the port
/// meanwhile (unlike a port bound and released). [`ClosedPort::listen`]
/// turns it into a listener on the same port later, with no race.
pub struct ClosedPort {
    fd: std::os::fd::OwnedFd,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2)/bind(2)/getsockname(2) on a descriptor we
        // own; the sockaddr structs are fully initialised and sized.
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(raw, &addr as *const _ as *const libc::sockaddr, len);
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut got_len = len;
            let rc =
                libc::getsockname(raw, &mut got as *mut _ as *mut libc::sockaddr, &mut got_len);
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            ClosedPort {
                fd,
                port: u16::from_be(got.sin_port),
            }
        }
    }

    /// Starts listening on the held port.
    pub fn listen(self) -> TcpListener {
        use std::os::fd::AsRawFd;
        // SAFETY: listen(2) on the bound socket we own.
        let rc = unsafe { libc::listen(self.fd.as_raw_fd(), 128) };
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        TcpListener::from(self.fd)
    }
}

/// The log lines of a running castgate, shared with the thread reading them.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// A castgate process on loopback ports it picked itself (port 0), killed
/// on drop. Dropping it also fails the test if castgate logged a panic
/// (tokio catches a task's panic and the process lives on, so only the log
/// shows it), unless the test is already failing.
pub struct Castgate {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    log: Arc<Log>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Egress settings letting API relays reach loopback test destinations.
pub const LOOPBACK_EGRESS: [(&str, &str); 2] = [
    ("CASTGATE__EGRESS__ALLOW", "127.0.0.1/32"),
    ("CASTGATE__EGRESS__SRT_LISTEN", "127.0.0.1:1024-65535"),
];

impl Castgate {
    /// Starts castgate with extra `CASTGATE__…` settings and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Castgate {
        Self::start_with_args(&[], env)
    }

    /// [`Castgate::start`] for tests whose API relays send to local test
    /// destinations: castgate refuses loopback targets from the API by
    /// default (`[egress]`), so this allows 127.0.0.1 and SRT listener
    /// relays on it ([`LOOPBACK_EGRESS`]) instead of weakening the default.
    pub fn start_loopback_egress(env: &[(&str, &str)]) -> Castgate {
        Self::start_with_args_loopback_egress(&[], env)
    }

    /// [`Castgate::start_with_args`] with [`LOOPBACK_EGRESS`] (before `env`).
    pub fn start_with_args_loopback_egress(args: &[&str], env: &[(&str, &str)]) -> Castgate {
        let all: Vec<(&str, &str)> = LOOPBACK_EGRESS.iter().chain(env).copied().collect();
        Self::start_with_args(args, &all)
    }

    /// [`Castgate::start`] with command-line arguments (e.g. `--config F`).
    pub fn start_with_args(args: &[&str], env: &[(&str, &str)]) -> Castgate {
        Self::start_command(Command::new(env!("CARGO_BIN_EXE_castgate")), args, env)
    }

    /// Starts castgate through `prlimit` with its soft open-files limit at
    /// `soft` (the hard one as it is).
    pub fn start_with_soft_open_files(soft: u64) -> Castgate {
        require("prlimit");
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={soft}:"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_castgate"));
        Self::start_command(cmd, &[], &[])
    }

    /// Runs `cmd` (castgate, or a wrapper that runs it) with `args` and the
    /// test settings, and waits until it listens.
    fn start_command(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Castgate {
        cmd.args(args)
            .env("CASTGATE__RTMP__LISTEN", "127.0.0.1:0")
            .env("CASTGATE__HTTP__LISTEN", "127.0.0.1:0")
            .env("CASTGATE__SRT__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "castgate=debug,info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot start castgate");
        let log = Arc::new(Log::default());
        let mut readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lines.lock().unwrap().push(line);
                    log.changed.notify_all();
                }
            }));
        }
        let unbound: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let mut server = Castgate {
            child,
            rtmp: unbound,
            http: unbound,
            log,
            readers,
        };
        server.rtmp = server.listening("RTMP");
        server.http = server.listening("HTTP");
        server
    }

    /// The address a listener bound, from its `"{what} listening"` log line
    /// (`what`: RTMP, HTTP, RTMPS, HTTPS, SRT); waits for the line.
    pub fn listening(&self, what: &str) -> SocketAddr {
        let line = self.wait_log(&format!(" {what} listening"), Duration::from_secs(20));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen=ADDRESS in {line:?}"))
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://{}/{key}", self.rtmp)
    }

    /// `http://HOST:PORT/{path}` on castgate's HTTP listener.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}/{}", self.http, path.trim_start_matches('/'))
    }

    /// Waits for a log line containing every one of `parts`; panics with the
    /// log on timeout. Returns the line.
    pub fn wait_log_all(&self, parts: &[&str], timeout: Duration) -> String {
        self.find_log(parts, timeout).unwrap_or_else(|| {
            panic!(
                "no log line with {parts:?} within {timeout:?}; log:\n{}",
                self.log.lines.lock().unwrap().join("\n")
            )
        })
    }

    /// Waits for a log line containing every one of `parts`; `None` on
    /// timeout (for callers that report failures themselves).
    pub fn find_log(&self, parts: &[&str], timeout: Duration) -> Option<String> {
        self.wait_count(parts, 1, timeout)
            .then(|| self.lines_with(parts).swap_remove(0))
    }

    /// How many log lines there are so far (a mark for [`Self::find_log_after`]).
    pub fn log_len(&self) -> usize {
        self.log.lines.lock().unwrap().len()
    }

    /// As [`Self::find_log`], among the lines logged after the mark `start`
    /// (a client port reused by a later connection names the same peer).
    pub fn find_log_after(
        &self,
        start: usize,
        parts: &[&str],
        timeout: Duration,
    ) -> Option<String> {
        self.wait_lines(timeout, |lines| {
            lines
                .iter()
                .skip(start)
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .cloned()
        })
    }

    /// Waits until at least `n` log lines contain every one of `parts`;
    /// false on timeout.
    pub fn wait_count(&self, parts: &[&str], n: usize, timeout: Duration) -> bool {
        self.wait_lines(timeout, |lines| {
            let count = lines
                .iter()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .count();
            (count >= n).then_some(())
        })
        .is_some()
    }

    /// Runs `check` on the log now and on every new line until it answers
    /// or `timeout` passes.
    fn wait_lines<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(found) = check(&lines) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self
                .log
                .changed
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Every log line so far that contains all of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    pub fn wait_log(&self, part: &str, timeout: Duration) -> String {
        self.wait_log_all(&[part], timeout)
    }

    /// How many log lines contain every one of `parts` so far.
    pub fn count_log(&self, parts: &[&str]) -> usize {
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit (after a signal); panics on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_child(&mut self.child, timeout, "castgate")
    }

    /// castgate's resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Fails the test if castgate logged a panic (a task that panicked is
    /// caught by tokio, so the process lives on, but it is still a bug).
    pub fn assert_no_panic(&self) {
        let panics = self.lines_with(&["panicked"]);
        assert!(panics.is_empty(), "castgate panicked: {panics:#?}");
    }
}

impl Drop for Castgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process: every line is in once the
        // readers end.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if !std::thread::panicking() {
            self.assert_no_panic();
        }
    }
}

/// Resident memory (VmRSS) of process `pid` in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The soft limit on open files of this process (castgate inherits it).
pub fn open_files_limit() -> u64 {
    open_files_limits("self").0
}

/// The soft and hard open-files limits of process `pid` (`"self"`: this one).
pub fn open_files_limits(pid: &str) -> (u64, u64) {
    let path = format!("/proc/{pid}/limits");
    let limits = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files limit in {path}"));
    let value = |i: usize| {
        line.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (value(3), value(4))
}

/// The time of day in seconds of a castgate log line (it starts with an
/// RFC 3339 UTC timestamp such as `2026-11-21T03:24:26.372639Z`).
pub fn log_time(line: &str) -> f64 {
    let t = line
        .split_once('T')
        .and_then(|(_, rest)| rest.split_once('Z'))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("no timestamp in log line {line:?}"));
    let f: Vec<f64> = t.split(':').filter_map(|x| x.parse().ok()).collect();
    assert_eq!(f.len(), 3, "bad timestamp in log line {line:?}");
    f[0] * 3600.0 + f[1] * 60.0 + f[2]
}

/// A temporary directory for one test's files.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("castgate-e2e")
        .tempdir()
        .unwrap()
}

/// Generates (once per run and variant) a 4 s FLV: testsrc2 + sine, libx264
/// High with B-frames, 1 s GOP, AAC. `variant` changes the picture and tone
/// so two fixtures never share a frame.
pub fn fixture(variant: u32) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = DIR.get_or_init(tempdir);
    let path = dir.path().join(format!("fixture{variant}.flv"));
    if path.exists() {
        return path;
    }
    require("ffmpeg");
    let video = format!("testsrc2=size=640x360:rate=30,hue=h={}", variant * 40);
    let audio = format!(
        "sine=frequency={}:beep_factor=4:sample_rate=48000",
        500 + variant * 250
    );
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", &video, "-f", "lavfi", "-i",
            &audio,
        ])
        .args(["-map", "0:v", "-map", "1:a", "-t", "4"])
        .args([
            "-c:v",
            "libx264",
            "-threads",
            "1",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .args([
            "-bf",
            "2",
            "-g",
            "30",
            "-keyint_min",
            "30",
            "-sc_threshold",
            "0",
            "-b:v",
            "450k",
        ])
        .args([
            "-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "2", "-f", "flv",
        ])
        .arg(&path)
        .status()
        .expect("cannot run ffmpeg");
    assert!(status.success(), "ffmpeg could not generate the fixture");
    path
}

/// `ffmpeg -re -i FILE -c copy -f flv URL`, with extra input options
/// (e.g. `-stream_loop N`).
pub fn publish(file: &Path, url: &str, input_opts: &[&str]) -> Child {
    publish_with(file, url, input_opts, &[])
}

/// [`publish`] with extra output options too (e.g. `-rtmp_flush_interval 1`).
pub fn publish_with(file: &Path, url: &str, input_opts: &[&str], output_opts: &[&str]) -> Child {
    require("ffmpeg");
    publish_by(Path::new("ffmpeg"), file, url, input_opts, output_opts)
}

/// [`publish_with`] by another ffmpeg binary (e.g. [`ffmpeg9`]).
pub fn publish_by(
    ffmpeg: &Path,
    file: &Path,
    url: &str,
    input_opts: &[&str],
    output_opts: &[&str],
) -> Child {
    Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-re"])
        .args(input_opts)
        .arg("-i")
        .arg(file)
        .args(["-c", "copy"])
        .args(output_opts)
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ffmpeg.display()))
}

/// `ffmpeg -i URL -copyts -c copy OUT.flv`: an RTMP player recording what it
/// gets, with the timestamps exactly as received.
pub fn play(url: &str, out: &Path) -> Child {
    require("ffmpeg");
    Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-y", "-i", url, "-copyts", "-c", "copy", "-f", "flv",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg")
}

/// Waits for a child with a deadline; kills it and panics on timeout.
pub fn wait_child(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a one-shot external command (ffprobe, ffmpeg over a file,
/// castgate's own subcommands) may take before the test fails instead of
/// stalling CI.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `Command::output` with a deadline: past `limit` the process is killed
/// and the call fails with `TimedOut`, naming the program.
pub trait OutputWithin {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<std::process::Output> {
        fn drain(
            pipe: Option<impl std::io::Read + Send + 'static>,
        ) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        }
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{:?} did not finish within {limit:?}", self.get_program()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
}

/// One packet as `ffmpeg -f framemd5` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub stream: u32,
    pub dts: i64,
    pub pts: i64,
    pub size: u64,
    pub md5: String,
}

/// The packets of a file, in file order, with timestamps in milliseconds.
pub fn framemd5(file: &Path) -> Vec<Packet> {
    framemd5_of(file, "0")
}

/// The packets `-map MAP` selects from a file or URL, in order, with
/// timestamps converted to milliseconds from each stream's time base.
pub fn framemd5_of(input: impl AsRef<std::ffi::OsStr>, map: &str) -> Vec<Packet> {
    require("ffmpeg");
    framemd5_by("ffmpeg", input, map)
}

/// [`framemd5_of`] read by another ffmpeg (FFmpeg 9 for Enhanced RTMP FLV,
/// which Debian's 5.1 cannot read).
pub fn framemd5_by(
    ffmpeg: impl AsRef<std::ffi::OsStr>,
    input: impl AsRef<std::ffi::OsStr>,
    map: &str,
) -> Vec<Packet> {
    let input = input.as_ref();
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-copyts", "-i"])
        .arg(input)
        .args(["-map", map, "-c", "copy", "-f", "framemd5", "-"])
        .output_within(RUN_LIMIT)
        .expect("cannot run ffmpeg");
    assert!(
        out.status.success(),
        "framemd5 of {} failed: {}",
        input.to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // "#tb 0: 1/1000" lines give each output stream's time base.
    let time_bases: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#tb "))
        .filter_map(|l| l.split_once(": ").map(|(_, tb)| tb.trim()))
        .filter_map(|tb| tb.split_once('/'))
        .filter_map(|(n, d)| Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?))
        .collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let stream: u32 = f.first()?.parse().ok()?;
            let tb = *time_bases.get(stream as usize)?;
            let ms = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .map(|t| (t * tb * 1000.0).round() as i64)
            };
            Some(Packet {
                stream,
                dts: ms(f.get(1)?)?,
                pts: ms(f.get(2)?)?,
                size: f.get(4)?.parse().ok()?,
                md5: f.get(5)?.to_string(),
            })
        })
        .collect()
}

/// The packets of one stream index.
pub fn track(packets: &[Packet], stream: u32) -> Vec<Packet> {
    packets
        .iter()
        .filter(|p| p.stream == stream)
        .cloned()
        .collect()
}

/// Decodes a file or URL fully; returns ffmpeg's error output (empty when clean).
pub fn decode_errors(input: impl AsRef<std::ffi::OsStr>) -> String {
    require("ffmpeg");
    decode_errors_by(Path::new("ffmpeg"), input)
}

/// [`decode_errors`] by another ffmpeg binary (e.g. [`ffmpeg9`]).
pub fn decode_errors_by(ffmpeg: &Path, input: impl AsRef<std::ffi::OsStr>) -> String {
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-f", "null", "-"])
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ffmpeg.display()));
    let mut s = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        s.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    s
}

/// The checksums of the decoded frames (pictures, or audio frames) that
/// `-map MAP` selects from a file or URL, in output order, decoded by
/// `ffmpeg` (`ffmpeg -i INPUT -map MAP -f framemd5 -`). Two inputs that
/// carry the same coded stream decode to the same list even when their
/// containers frame the packets differently.
pub fn decoded_frames(ffmpeg: &Path, input: impl AsRef<std::ffi::OsStr>, map: &str) -> Vec<String> {
    let input = input.as_ref();
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-map", map, "-f", "framemd5", "-"])
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ffmpeg.display()));
    assert!(
        out.status.success(),
        "decoding {} failed: {}",
        input.to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// Asserts the audio packets `got` are every packet of `src` from the one
/// at `got`'s first presentation time (±1 ms) to the end: same payloads,
/// presentation times within 1 ms (an audio time scale rounds). Audio is
/// lined up by time, not hash: a sine's frames repeat. Missing trailing
/// audio fails here.
pub fn assert_audio_run(src: &[Packet], got: &[Packet], what: &str) {
    assert_audio_run_shifted(src, got, 0.0, 1.0, what)
}

/// [`assert_audio_run`] where `got`'s presentation times are `shift_ms`
/// (±`tolerance_ms`) from the source's: an MP4 edit list that starts Opus
/// after its pre-skip moves every time by it (an FLV has no such list).
pub fn assert_audio_run_shifted(
    src: &[Packet],
    got: &[Packet],
    shift_ms: f64,
    tolerance_ms: f64,
    what: &str,
) {
    assert!(!got.is_empty(), "{what}: no audio packets");
    let near =
        |g: &Packet, e: &Packet| (g.pts as f64 - e.pts as f64 - shift_ms).abs() <= tolerance_ms;
    let first = src
        .iter()
        .position(|p| near(&got[0], p))
        .unwrap_or_else(|| {
            panic!(
                "{what}: the first audio packet (pts {} ms, {shift_ms} ms from the source's) \
                 is not in the source",
                got[0].pts
            )
        });
    assert_eq!(
        got.len(),
        src.len() - first,
        "{what}: every audio packet of the window (source has {} from the first one)",
        src.len() - first
    );
    assert!(
        near(&got[got.len() - 1], &src[src.len() - 1]),
        "{what}: up to the last audio packet"
    );
    for (g, e) in got.iter().zip(&src[first..]) {
        assert_eq!((g.size, &g.md5), (e.size, &e.md5), "{what}: audio payloads");
        assert!(
            near(g, e),
            "{what}: audio pts {} vs {} (should be {shift_ms} ± {tolerance_ms} ms from it)",
            g.pts,
            e.pts
        );
    }
}

/// Asserts every track of `played` is a contiguous run of the same track of
/// `source` (matched by payload, since a demuxer may number streams in
/// another order): same checksums, sizes, DTS and PTS.
pub fn assert_same_tracks(source: &[Packet], played: &[Packet], what: &str) {
    for s in 0..2 {
        let src = track(source, s);
        let first = &src[0].md5;
        let p = (0..2)
            .find(|&p| {
                let t = track(played, p);
                !t.is_empty() && src.iter().any(|x| x.md5 == t[0].md5)
            })
            .unwrap_or_else(|| {
                panic!("{what}: no played track matches source track {s} ({first})")
            });
        let mut played_track = track(played, p);
        for x in &mut played_track {
            x.stream = s;
        }
        assert_same_packets(&src, &played_track, &format!("{what}, track {s}"));
    }
}

/// Asserts `played` is a contiguous run of `source`: same payload
/// checksums, sizes, DTS and PTS.
pub fn assert_same_packets(source: &[Packet], played: &[Packet], what: &str) {
    assert!(!played.is_empty(), "{what}: nothing was played");
    let start = source
        .iter()
        .position(|p| p.md5 == played[0].md5 && p.dts == played[0].dts)
        .unwrap_or_else(|| {
            panic!(
                "{what}: first played packet {:?} is not in the source",
                played[0]
            )
        });
    let expect = &source[start..];
    assert_eq!(
        played.len(),
        expect.len(),
        "{what}: played {} packets, source has {} from the start point",
        played.len(),
        expect.len()
    );
    for (i, (a, b)) in played.iter().zip(expect).enumerate() {
        assert_eq!(a, b, "{what}: packet {i} differs");
    }
}

/// Asserts that `output` (a file or URL: HLS, DASH, a recording) holds
/// every video and audio frame of `source`: as many packets per track, the
/// same payloads in the same order, presentation times within 1 ms (an
/// audio time scale rounds), and that ffmpeg decodes it without an error.
pub fn assert_holds_every_frame(source: &Path, output: &str, what: &str) {
    for map in ["0:v", "0:a"] {
        let src = framemd5_of(source, map);
        let got = framemd5_of(output, map);
        assert_eq!(
            got.len(),
            src.len(),
            "{what} ({map}): {} packets, the source has {}",
            got.len(),
            src.len()
        );
        for (i, (g, e)) in got.iter().zip(&src).enumerate() {
            assert_eq!(
                (g.size, &g.md5),
                (e.size, &e.md5),
                "{what} ({map}): packet {i} payload differs"
            );
            assert!(
                (g.pts - e.pts).abs() <= 1,
                "{what} ({map}): packet {i} pts {} vs {}",
                g.pts,
                e.pts
            );
        }
    }
    assert_eq!(decode_errors(output), "", "{what}: decoding");
}

/// A TCP connection to `to` from the loopback source address `src` (any of
/// 127/8 is local on Linux: several client addresses without namespaces).
pub fn tcp_connect_from(src: std::net::IpAddr, to: SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    let s = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(src, 0))?;
            socket.connect(to).await?.into_std()
        })
        .unwrap_or_else(|e| panic!("connect to {to} from {src}: {e}"));
    s.set_nonblocking(false).unwrap();
    s
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One HTTP request over a fresh connection (`Connection: close`), with
/// extra request headers. Our own tiny client keeps the test crate free of
/// an HTTP client dependency; real clients (ffmpeg, browsers) are used too.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    http_exchange(addr, method, path, headers, &[])
}

/// [`http_request`] with a request body (sent with its Content-Length).
pub fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to castgate HTTP");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    http_over(&mut s, addr, method, path, headers, body)
}

/// One `Connection: close` HTTP/1.1 exchange over any byte stream (a TCP
/// or a TLS connection).
pub fn http_over(
    s: &mut (impl std::io::Read + std::io::Write),
    host: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out).unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after the response: keep
    // what was read.
    if let Err(e) = s.read_to_end(&mut raw) {
        assert!(!raw.is_empty(), "read HTTP response: {e}");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("HTTP status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, &[])
}

/// Polls `path` until it answers 200 (the stream's first segment exists).
pub fn wait_http_ok(addr: SocketAddr, path: &str, timeout: Duration) -> HttpResponse {
    let deadline = Instant::now() + timeout;
    loop {
        let r = http_get(addr, path);
        if r.status == 200 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered 200 (last {})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file under `dir`, in no particular order (none when it is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
