//! The image built and the compose service run in a real Docker engine:
//! `docker build -f docker/Dockerfile`, then `docker-compose up` of
//! docker/compose.yml with its ports published on 127.0.0.1 only; ffmpeg
//! publishes over RTMP, HLS and DASH read back hold every frame, the
//! HEALTHCHECK turns healthy, castgate runs as the image's own user, and
//! `docker-compose down` stops it cleanly.
//!
//! An engine that answers is used as it is; otherwise (as root) this test
//! starts `dockerd` and stops it at the end. `scripts/docker-base-images.sh`
//! puts the Dockerfile's base images into the engine (pulled, or made here
//! when Docker Hub cannot be reached). The engine keeps its layer and
//! BuildKit caches, so a second run rebuilds only what changed.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    assert_holds_every_frame, fixture, free_port, http_get, http_request, publish, require,
    stderr_of, wait_child, wait_http_ok,
};

/// Starting dockerd: it answers within seconds.
const ENGINE_START: Duration = Duration::from_secs(90);
/// debootstrap and the stand-in images, when they have to be made.
const BASE_IMAGES: Duration = Duration::from_secs(20 * 60);
/// A cold release build on two shared cores (see the README for timings).
const BUILD: Duration = Duration::from_secs(45 * 60);
/// `up`, `down`, `inspect` and the like.
const COMPOSE: Duration = Duration::from_secs(120);
/// The HEALTHCHECK runs every 10 s and needs one success.
const HEALTHY: Duration = Duration::from_secs(120);
/// The publish, the stream's end (package.grace_secs is 10 s) and the reads.
const STREAM: Duration = Duration::from_secs(90);

const TOKEN: &str = "docker-e2e-token";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/e2e-artifacts/NAME`, kept after the run.
fn artifact(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Debian's docker.io client: it builds with the engine's own BuildKit,
/// where a newer client (such as a /usr/local/bin/docker) wants the buildx
/// plugin for that.
fn docker() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/docker");
    assert!(
        debian.is_file(),
        "`/usr/bin/docker` is not installed: the Docker test needs Debian's docker.io (run ./scripts/test.sh, which installs it with apt-get)"
    );
    debian
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` with its output in the file `log`, within `timeout`; returns
/// the output, panicking with its end unless the command succeeds.
fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration, what: &str) -> String {
    let file = File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let status = wait_child(&mut child, timeout, what);
    let out = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success(),
        "{what} failed ({status}), log in {}:\n{}",
        log.display(),
        tail(&out, 40)
    );
    out
}

/// A short command's stdout, trimmed; panics unless it succeeds in time.
fn output(cmd: &mut Command, what: &str) -> String {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    finish(child, what).0.trim().to_string()
}

fn engine_answers(docker: &Path) -> bool {
    Command::new(docker)
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Docker engine for this test: the running one, or a `dockerd` this
/// test starts and, on drop, stops (SIGTERM, then its own shutdown).
struct Engine {
    dockerd: Option<Child>,
}

impl Engine {
    fn ensure(docker: &Path) -> Engine {
        if engine_answers(docker) {
            return Engine { dockerd: None };
        }
        require("dockerd");
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "no Docker engine answers, and starting dockerd needs root"
        );
        let log = artifact("dockerd.log");
        let file = File::create(&log).unwrap();
        // Niced: a cold image build takes both cores for minutes, and the
        // other tests run meanwhile.
        let mut child = Command::new("nice")
            .args(["-n", "10", "dockerd"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start dockerd");
        let deadline = Instant::now() + ENGINE_START;
        while !engine_answers(docker) {
            let text = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dockerd exited ({status}):\n{}", tail(&text(), 30));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dockerd did not answer within {ENGINE_START:?}:\n{}",
                    tail(&text(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Engine {
            dockerd: Some(child),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Some(child) = self.dockerd.as_mut() else {
            return;
        };
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The normalised compose file (`docker-compose config`) with every port
/// published on 127.0.0.1 at a free port: `(file text, container port →
/// host address)`. Everything else is the user's service as it is.
fn loopback_compose(normalised: &str) -> (String, BTreeMap<u16, SocketAddr>) {
    let mut ports = BTreeMap::new();
    let mut out = Vec::new();
    let lines: Vec<&str> = normalised.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = &line[..line.len() - line.trim_start().len()];
        if let Some(published) = line.trim().strip_prefix("- published: ") {
            let target = lines
                .get(i + 1)
                .and_then(|l| l.trim().strip_prefix("target: "))
                .unwrap_or_else(|| panic!("no target after line {i}:\n{normalised}"));
            assert_eq!(published, target, "{normalised}");
            let port: u16 = target.parse().unwrap();
            let host: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            // The short form: compose 1.29's long form has no host_ip.
            out.push(format!("{indent}- {host}:{port}"));
            ports.insert(port, host);
            i += 2;
        } else {
            out.push(line.to_string());
            i += 1;
        }
    }
    assert_eq!(ports.len(), 4, "{normalised}");
    (out.join("\n") + "\n", ports)
}

/// The compose project of this test; `docker-compose down` on drop unless
/// the test already brought it down.
struct Service {
    docker_compose: Vec<String>,
    up: bool,
}

impl Service {
    fn compose(&self) -> Command {
        let mut cmd = Command::new(&self.docker_compose[0]);
        cmd.args(&self.docker_compose[1..]).current_dir(repo());
        cmd
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.up {
            let _ = self
                .compose()
                .args(["down", "--timeout", "10"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The image the Dockerfile builds, run by docker/compose.yml in a real
/// engine, serves a real publish as HLS and DASH through its published
/// loopback ports; health check, user and shutdown as the files say.
#[test]
fn image_builds_and_the_compose_service_streams() {
    require("docker-compose");
    require("ffmpeg");
    let docker = docker();
    let _engine = Engine::ensure(&docker);

    // The base images: present, pulled, or stand-ins made here.
    run_logged(
        Command::new(repo().join("scripts/docker-base-images.sh")).env("DOCKER", &docker),
        &artifact("docker-base-images.log"),
        BASE_IMAGES,
        "scripts/docker-base-images.sh",
    );

    // `docker build` as the Dockerfile says, under the name compose runs.
    let normalised = crate::docker::compose_config(Some(TOKEN));
    let image = normalised
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .unwrap_or_else(|| panic!("compose.yml names no image:\n{normalised}"))
        .to_string();
    let started = Instant::now();
    run_logged(
        Command::new(&docker)
            .args(["build", "--progress=plain", "-f", "docker/Dockerfile", "-t"])
            .arg(&image)
            .arg(".")
            .env("DOCKER_BUILDKIT", "1")
            .current_dir(repo()),
        &artifact("docker-build.log"),
        BUILD,
        "docker build",
    );
    eprintln!(
        "docker build -f docker/Dockerfile: {:.0} s (log in {})",
        started.elapsed().as_secs_f64(),
        artifact("docker-build.log").display()
    );
    let user = output(
        Command::new(&docker).args(["image", "inspect", "-f", "{{.Config.User}}", &image]),
        "docker image inspect",
    );
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "USER {user:?}"
    );

    // compose up, the ports on 127.0.0.1 only.
    let (file, ports) = loopback_compose(&normalised);
    let dir = crate::harness::tempdir();
    let compose_file = dir.path().join("compose.yml");
    std::fs::write(&compose_file, &file).unwrap();
    let project = format!("castgate-e2e-{}", std::process::id());
    let service = Service {
        docker_compose: vec![
            "docker-compose".into(),
            "-p".into(),
            project.clone(),
            "-f".into(),
            compose_file.display().to_string(),
        ],
        up: true,
    };
    run_logged(
        service.compose().args(["up", "-d", "--no-build"]),
        &artifact("docker-compose-up.log"),
        COMPOSE,
        "docker-compose up",
    );
    let id = output(
        service.compose().args(["ps", "-q", "castgate"]),
        "docker-compose ps",
    );
    assert!(!id.is_empty(), "compose started no castgate container");
    let inspect = |format: &str| {
        output(
            Command::new(&docker).args(["inspect", "-f", format, &id]),
            "docker inspect",
        )
    };
    // castgate's log: its stdout and stderr.
    let logs = || {
        let child = Command::new(&docker)
            .args(["logs", &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run docker logs");
        let (out, err) = finish(child, "docker logs");
        out + &err
    };

    // The HEALTHCHECK turns healthy.
    let deadline = Instant::now() + HEALTHY;
    loop {
        let state = inspect("{{.State.Status}} {{.State.Health.Status}}");
        if state == "running healthy" {
            break;
        }
        assert!(
            state.starts_with("running") && !state.ends_with("unhealthy"),
            "container {state}:\n{}",
            tail(&logs(), 30)
        );
        assert!(
            Instant::now() < deadline,
            "not healthy within {HEALTHY:?} ({state}):\n{}",
            tail(&logs(), 30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // castgate is the container's first process, running as the image's
    // user (seen from the host: `docker top`), not root.
    let uid = output(
        Command::new(&docker).args(["exec", &id, "id", "-u"]),
        "docker exec id",
    );
    let name = output(
        Command::new(&docker).args(["exec", &id, "id", "-un"]),
        "docker exec id",
    );
    assert_eq!(name, user);
    assert_ne!(uid, "0");
    let top = output(
        Command::new(&docker).args(["top", &id, "-o", "pid,uid,args"]),
        "docker top",
    );
    // PID UID COMMAND: docker top wants the PID column.
    let procs: Vec<(&str, &str)> = top
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(char::is_whitespace))
        .filter_map(|(_, rest)| rest.trim().split_once(char::is_whitespace))
        .collect();
    assert!(
        procs
            .iter()
            .any(|(u, a)| *u == uid && a.trim().starts_with("castgate serve --config")),
        "{top}"
    );
    assert!(procs.iter().all(|(u, _)| *u == uid), "{top}");

    // Through the published ports only: health, console, API with the
    // token compose passes.
    let http = ports[&8080];
    let rtmp = ports[&1935];
    assert_eq!(http_get(http, "/healthz").status, 200);
    let page = http_get(http, "/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("castgate console"));
    assert_eq!(http_get(http, "/api/v1/streams").status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let api = http_request(
        http,
        "GET",
        "/api/v1/streams",
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(api.status, 200, "{}", api.text());

    // ffmpeg publishes; HLS and DASH of it hold every frame once it ends.
    let source = fixture(11);
    let mut publisher = publish(&source, &format!("rtmp://{rtmp}/live/docker"), &[]);
    wait_http_ok(http, "/live/docker/index.m3u8", STREAM);
    let status = wait_child(&mut publisher, STREAM, "ffmpeg publishing to the container");
    assert!(
        status.success(),
        "publisher failed: {}",
        stderr_of(&mut publisher)
    );
    let deadline = Instant::now() + STREAM;
    while !http_get(http, "/live/docker/video.m3u8")
        .text()
        .contains("#EXT-X-ENDLIST")
    {
        assert!(
            Instant::now() < deadline,
            "the stream did not end within {STREAM:?}:\n{}",
            tail(&logs(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (what, path) in [
        ("HLS from the container", "live/docker/index.m3u8"),
        ("DASH from the container", "live/docker/manifest.mpd"),
    ] {
        assert_holds_every_frame(&source, &format!("http://{http}/{path}"), what);
    }
    let log = logs();
    let published = log
        .lines()
        .find(|l| l.contains("live/docker") && l.contains("publish"))
        .unwrap_or_else(|| panic!("no publish of live/docker in the log:\n{log}"));
    eprintln!("in the container's log: {published}\nprocesses: {top}");
    assert!(!log.contains("panicked"), "{log}");

    // `docker-compose down`: SIGTERM, castgate's own clean shutdown (exit
    // 0 before Docker's 10 s stop timeout would kill it), nothing left.
    let waited = Command::new(&docker)
        .args(["wait", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run docker wait");
    let last_words = Command::new(&docker)
        .args(["logs", "-f", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run docker logs");
    let mut service = service;
    run_logged(
        service.compose().args(["down", "--timeout", "10"]),
        &artifact("docker-compose-down.log"),
        COMPOSE,
        "docker-compose down",
    );
    service.up = false;
    let (code, _) = finish(waited, "docker wait");
    assert_eq!(code.trim(), "0", "castgate's exit code in the container");
    let (out, err) = finish(last_words, "docker logs -f");
    let shutdown = out + &err;
    assert!(shutdown.contains("shut down cleanly"), "{shutdown}");
    let left = output(
        Command::new(&docker).args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ]),
        "docker ps",
    );
    assert_eq!(left, "", "containers left after down");
    assert!(
        std::net::TcpStream::connect_timeout(&http, Duration::from_secs(5)).is_err(),
        "{http} still answers after down"
    );
}

/// A child's stdout and stderr once it exits (within [`COMPOSE`]);
/// panics with both unless it succeeds.
fn finish(mut child: Child, what: &str) -> (String, String) {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_child(&mut child, COMPOSE, what);
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(status.success(), "{what} failed ({status}): {out}{err}");
    (out, err)
}
