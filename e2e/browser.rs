//! Browser playback checks: plays an HLS or DASH URL with hls.js, dash.js or Shaka Player in
//! headless Chromium (driven by `e2e/browser/play.js` through playwright-core), in each player's
//! normal or low-latency mode, and reports whether video advanced and how far behind live it was.
//!
//! Needs node + npm and Chromium (`/usr/lib/chromium/chromium` or `/usr/bin/chromium`). A missing
//! tool is a test failure, never a skip. The npm packages are pinned by
//! `e2e/browser/package-lock.json` and installed by the test command (`npm ci` in
//! `scripts/test.sh`); the tests check that the installed versions are the pinned ones.
//!
//! The player page is served from its own loopback origin, so the media server must answer with
//! CORS headers (`Access-Control-Allow-Origin`) or playback fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CHROMIUM_CANDIDATES: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];

/// The parsed JSON line printed by `play.js`.
#[derive(Debug, Clone)]
#[allow(dead_code)] // not every test reads every field
pub struct BrowserReport {
    /// Video advanced by at least min(5, secs / 2) seconds with no fatal player error.
    pub ok: bool,
    /// Milliseconds from navigation start until currentTime was seen advancing (NaN: never).
    pub startup_ms: f64,
    /// How far currentTime advanced during the sampling window.
    pub advanced_s: f64,
    /// Length of the sampling window (wall clock).
    pub wall_s: f64,
    /// Longest interval without currentTime progress during the sampling window.
    pub max_stall_s: f64,
    /// Latency samples (one a second during the window) where the player knew its program date:
    /// `Date.now()` minus the program date of the playhead, in seconds.
    pub latencies_s: Vec<f64>,
    /// Median and 95th percentile (nearest rank) of `latencies_s` (NaN: no sample).
    pub latency_median_s: f64,
    pub latency_p95_s: f64,
    /// Whether the player ran in its low-latency mode.
    pub low_latency: bool,
    /// `getVideoPlaybackQuality()` totals.
    pub frames: f64,
    pub dropped: f64,
    /// Fatal player errors (and page exceptions).
    pub errors: Vec<String>,
    /// Requests the page tried to make to non-loopback hosts (blocked), e.g. dash.js's default
    /// internet time server when the MPD has no `<UTCTiming>`.
    pub blocked: Vec<String>,
    /// The video element's `duration` at the end (NaN: unknown or infinite, as for live).
    pub duration_s: f64,
    /// `currentTime` at the end of the sampling window.
    pub current_time_s: f64,
    /// With [`play_vod`]'s seek: where the page seeked to, `currentTime` at `seeked`, the media
    /// time of the first frame presented after it, and milliseconds from the seek to `seeked`
    /// (NaN: no seek, or `seeked` never came).
    pub seek_target_s: f64,
    pub seek_landed_s: f64,
    pub seek_frame_s: f64,
    pub seeked_ms: f64,
    /// The buffered time ranges when the seek was asked, `(start, end)`.
    pub seek_buffered_before: Vec<(f64, f64)>,
    /// The whole JSON line, for assertion messages.
    pub raw: String,
}

/// Directory holding package.json / play.js / player.html.
pub fn browser_dir() -> PathBuf {
    // file!() is absolute when this module is included from another crate with #[path = ".."],
    // and relative to the manifest dir (e2e/browser.rs) in castgate itself.
    let this = Path::new(file!());
    let mut candidates = Vec::new();
    if this.is_absolute() {
        candidates.push(this.with_file_name("browser"));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("e2e")
            .join("browser"),
    );
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(this)
            .with_file_name("browser"),
    );
    candidates
        .iter()
        .find(|d| d.join("play.js").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("browser: cannot find e2e/browser/play.js (looked in {candidates:?})")
        })
}

fn tool_version(prog: &str) -> Result<String, String> {
    match Command::new(prog).arg("--version").stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!("`{prog} --version` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("`{prog}` not found ({e}); install Node.js >= 20 with npm (e.g. apt-get install nodejs npm)")),
    }
}

fn chromium_path() -> Option<&'static str> {
    CHROMIUM_CANDIDATES
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

/// Checks that `package.json` pins every dependency to one exact version and that
/// `node_modules` holds exactly those versions (a stale or partial install from an earlier
/// checkout must not pass for the pinned players).
fn packages_match(dir: &Path) -> Result<(), String> {
    let manifest = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|e| format!("cannot read {}/package.json: {e}", dir.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)
        .map_err(|e| format!("{}/package.json: {e}", dir.display()))?;
    let deps = manifest["dependencies"]
        .as_object()
        .ok_or("package.json has no dependencies")?;
    for (name, want) in deps {
        let want = want.as_str().unwrap_or_default();
        if !is_exact_version(want) {
            return Err(format!(
                "package.json must pin {name} to one exact version, not {want:?}"
            ));
        }
        let installed = dir.join("node_modules").join(name).join("package.json");
        let have = std::fs::read_to_string(&installed)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string));
        match have {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(format!(
                    "{name} {v} is installed but package.json pins {want}: run `npm ci` in {} \
                     (scripts/test.sh does)",
                    dir.display()
                ))
            }
            None => {
                return Err(format!(
                    "{name} is not installed: run `npm ci` in {} (scripts/test.sh does)",
                    dir.display()
                ))
            }
        }
    }
    Ok(())
}

/// `1.2.3` (with an optional `-pre` suffix), not a range such as `^1.2.3` or `1.x`.
fn is_exact_version(v: &str) -> bool {
    let core = v.split_once('-').map_or(v, |(core, _)| core);
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn check_installed() -> Result<(), String> {
    let node = tool_version("node")?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!(
            "node {node} is too old: playwright-core and dash.js need Node.js >= 20"
        ));
    }
    if chromium_path().is_none() {
        return Err(format!(
            "no Chromium at {CHROMIUM_CANDIDATES:?}; install it (apt-get install chromium)"
        ));
    }
    packages_match(&browser_dir())
}

/// Checks node, Chromium and the pinned npm packages once per test run. The test command
/// (`scripts/test.sh`) installs them with `npm ci`; a test never installs anything. Panics
/// with a clear message if something is missing: a missing tool is a failure, not a skip.
pub fn ensure_installed() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = CHECKED.get_or_init(check_installed) {
        panic!("browser tests cannot run: {e}");
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Kills the child's whole process group (node and the Chromium it started).
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
}

/// Runs `cmd` in its own process group with captured output; kills the group after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    use std::os::unix::process::CommandExt;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                let _ = child.wait();
                let (o, e) = (
                    out.join().unwrap_or_default(),
                    err.join().unwrap_or_default(),
                );
                return Err(format!(
                    "timed out after {timeout:?}\nstdout:\n{o}\nstderr:\n{e}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("wait failed: {e}"));
            }
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// One Chromium at a time: parallel test threads would skew timings on small CI machines.
/// Hold the guard while a browser runs.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a player is configured for a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The player's classic live mode (hls.js and Shaka with `lowLatencyMode` off).
    Normal,
    /// hls.js `lowLatencyMode`, dash.js live catch-up, Shaka `streaming.lowLatencyMode`.
    LowLatency,
    /// hls.js, classic mode, asked to switch to the smallest variant and then to the
    /// largest (the report's `sizes` lists the picture sizes shown).
    SwitchVariants,
}

/// Runs play.js for `player` ("hls" or "dash") against `url` for `secs` seconds of sampling,
/// saving a screenshot to `screenshot` (put it under the target dir, e.g.
/// `env!("CARGO_TARGET_TMPDIR")`, so it survives as an artifact). Returns the parsed report;
/// `ok == false` means playback failed. Panics on a harness failure (browser or packages missing,
/// play.js crashed, or the secs + 95 s timeout expired). Calls are serialized (one browser at a time).
pub fn play(player: &str, url: &str, secs: u32, screenshot: &Path) -> BrowserReport {
    play_in(player, Mode::Normal, url, secs, screenshot)
}

/// [`play`] for any of the players ("hls", "dash" or "shaka") in the given mode.
pub fn play_in(player: &str, mode: Mode, url: &str, secs: u32, screenshot: &Path) -> BrowserReport {
    let flag = match mode {
        Mode::Normal => None,
        Mode::LowLatency => Some("--low-latency"),
        Mode::SwitchVariants => Some("--switch"),
    };
    run_play(
        player,
        url,
        secs,
        screenshot,
        flag.as_slice(),
        &format!("{mode:?}"),
    )
}

/// Plays a title on demand: once playback has started, seeks to `seek_s` as a seek bar does,
/// waits for `seeked` and then samples `secs` seconds of playback from there (the report's
/// `seek_*` fields say where it landed). The player buffers at most `max_buffer_s` ahead, so a
/// seek far enough ahead falls outside what is buffered and makes it fetch the segment holding
/// the target.
pub fn play_vod(
    player: &str,
    url: &str,
    secs: u32,
    seek_s: f64,
    max_buffer_s: f64,
    screenshot: &Path,
) -> BrowserReport {
    let (seek, buffer) = (seek_s.to_string(), max_buffer_s.to_string());
    let args = ["--seek", seek.as_str(), "--max-buffer", buffer.as_str()];
    run_play(
        player,
        url,
        secs,
        screenshot,
        &args,
        &format!("seek {seek_s} s"),
    )
}

fn run_play(
    player: &str,
    url: &str,
    secs: u32,
    screenshot: &Path,
    flags: &[&str],
    label: &str,
) -> BrowserReport {
    assert!(
        matches!(player, "hls" | "dash" | "shaka"),
        "browser::play: player must be \"hls\", \"dash\" or \"shaka\", got {player:?}"
    );
    assert!(secs > 0, "browser::play: secs must be > 0");
    ensure_installed();
    let _serial = one_at_a_time();
    let dir = browser_dir();
    if let Some(parent) = screenshot.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("play.js"))
        .args([player, url, &secs.to_string()])
        .arg(screenshot)
        .args(flags)
        .current_dir(&dir)
        .stdin(Stdio::null());
    // play.js gives up by itself after secs + 80 s (+ 20 s with a seek; a
    // first Chromium launch on a loaded 2-core machine alone can take 30 s).
    let timeout = Duration::from_secs(u64::from(secs) + 115);
    let what = format!("node play.js {player} {url} {secs} ({label})");
    let out = run_bounded(cmd, timeout).unwrap_or_else(|e| panic!("browser harness: {what}: {e}"));
    let code = out.status.code();
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .map(str::trim);
    let (Some(line), Some(0 | 1)) = (line, code) else {
        panic!(
            "browser harness failure: {what} exited with {} (0 = played, 1 = playback failed, 2 = harness failure)\nstdout:\n{}\nstderr:\n{}",
            out.status, out.stdout, out.stderr
        );
    };
    let report = parse_report(line).unwrap_or_else(|| {
        panic!(
            "browser harness: cannot parse play.js output: {line}\nstderr:\n{}",
            out.stderr
        )
    });
    assert_eq!(
        report.ok,
        code == Some(0),
        "browser harness: play.js exit status {code:?} disagrees with its report: {line}"
    );
    report
}

fn parse_report(line: &str) -> Option<BrowserReport> {
    let v = json::parse(line)?;
    let num = |k: &str| v.get(k).and_then(json::Value::as_f64).unwrap_or(f64::NAN);
    let strs = |k: &str| -> Vec<String> {
        match v.get(k) {
            Some(json::Value::Arr(a)) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| format!("{x:?}"), str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let nums = |k: &str| -> Vec<f64> {
        match v.get(k) {
            Some(json::Value::Arr(a)) => a.iter().filter_map(json::Value::as_f64).collect(),
            _ => Vec::new(),
        }
    };
    Some(BrowserReport {
        ok: matches!(v.get("ok"), Some(json::Value::Bool(true))),
        latencies_s: nums("latencies_s"),
        latency_median_s: num("latency_median_s"),
        latency_p95_s: num("latency_p95_s"),
        low_latency: matches!(v.get("low_latency"), Some(json::Value::Bool(true))),
        startup_ms: num("startup_ms"),
        advanced_s: num("advanced_s"),
        wall_s: num("wall_s"),
        max_stall_s: num("max_stall_s"),
        frames: num("frames"),
        dropped: num("dropped"),
        errors: strs("errors"),
        blocked: strs("blocked"),
        duration_s: num("duration_s"),
        current_time_s: num("current_time_s"),
        seek_target_s: num("seek_target_s"),
        seek_landed_s: num("seek_landed_s"),
        seek_frame_s: num("seek_frame_s"),
        seeked_ms: num("seeked_ms"),
        seek_buffered_before: match v.get("seek_buffered_before") {
            Some(json::Value::Arr(a)) => a
                .iter()
                .filter_map(|r| match r {
                    json::Value::Arr(p) if p.len() == 2 => Some((p[0].as_f64()?, p[1].as_f64()?)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        raw: line.to_string(),
    })
}

/// Just enough JSON for play.js's one-line report (objects, arrays, strings, numbers, literals).
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                Value::Num(n) => Some(*n),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
    }

    pub fn parse(s: &str) -> Option<Value> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        (p.i == p.b.len()).then_some(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
        }
        fn lit(&mut self, word: &str, v: Value) -> Option<Value> {
            self.b[self.i..].starts_with(word.as_bytes()).then(|| {
                self.i += word.len();
                v
            })
        }
        fn value(&mut self) -> Option<Value> {
            self.ws();
            match *self.b.get(self.i)? {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    if self.eat(b'}').is_some() {
                        return Some(Value::Obj(fields));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        fields.push((k, self.value()?));
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            return Some(Value::Obj(fields));
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.eat(b']').is_some() {
                        return Some(Value::Arr(items));
                    }
                    loop {
                        items.push(self.value()?);
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            return Some(Value::Arr(items));
                        }
                    }
                }
                b'"' => self.string().map(Value::Str),
                b't' => self.lit("true", Value::Bool(true)),
                b'f' => self.lit("false", Value::Bool(false)),
                b'n' => self.lit("null", Value::Null),
                _ => {
                    let start = self.i;
                    while self
                        .b
                        .get(self.i)
                        .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                    {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.b[start..self.i])
                        .ok()?
                        .parse()
                        .ok()
                        .map(Value::Num)
                }
            }
        }
        fn string(&mut self) -> Option<String> {
            if self.b.get(self.i) != Some(&b'"') {
                return None;
            }
            self.i += 1;
            let mut out = String::new();
            loop {
                let start = self.i;
                while !matches!(self.b.get(self.i), Some(b'"' | b'\\') | None) {
                    self.i += 1;
                }
                out.push_str(std::str::from_utf8(&self.b[start..self.i]).ok()?);
                match *self.b.get(self.i)? {
                    b'"' => {
                        self.i += 1;
                        return Some(out);
                    }
                    _ => {
                        let esc = *self.b.get(self.i + 1)?;
                        self.i += 2;
                        match esc {
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'u' => {
                                let hex =
                                    std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                                self.i += 4;
                                // Surrogate pairs are not needed for play.js's ASCII-ish output.
                                out.push(
                                    char::from_u32(u32::from_str_radix(hex, 16).ok()?)
                                        .unwrap_or('\u{fffd}'),
                                );
                            }
                            c => out.push(char::from(c)),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parses_a_play_js_report() {
        let line = r#"{"ok":false,"startup_ms":null,"advanced_s":1.5e0,"errors":["a \"b\" \u00e9\\", "x"],"nested":{"k":[1,-2.5,true]}}"#;
        let v = parse(line).expect("parses");
        assert_eq!(v.get("ok"), Some(&Value::Bool(false)));
        assert_eq!(v.get("startup_ms"), Some(&Value::Null));
        assert_eq!(v.get("advanced_s").and_then(Value::as_f64), Some(1.5));
        assert_eq!(
            v.get("errors"),
            Some(&Value::Arr(vec![
                Value::Str("a \"b\" é\\".into()),
                Value::Str("x".into())
            ]))
        );
        assert!(parse("{\"ok\":true").is_none());
        assert!(parse("{\"ok\":true} trailing").is_none());
    }
}

#[test]
fn only_exact_versions_count_as_pinned() {
    for v in ["5.2.12", "1.65.1", "1.0.0-beta.2"] {
        assert!(is_exact_version(v), "{v}");
    }
    for v in [
        "^5.2.12",
        "~1.7.4",
        "5.2",
        "5.x.1",
        "latest",
        "",
        ">=1.0.0",
        "1.2.3 || 2.0.0",
    ] {
        assert!(!is_exact_version(v), "{v}");
    }
}
