//! The Docker files, read: `docker-compose config` parses
//! `docker/compose.yml`, the config it mounts passes `castgate
//! check-config`, the Dockerfile's build command is `cargo build --release
//! --locked` on a lock file that resolves and a toolchain no older than any
//! locked crate needs, and its run command (ENTRYPOINT + CMD on the mounted
//! config, ports aside) is what these tests start — here and in the
//! console's browser test — with its HEALTHCHECK run against it. The image
//! itself is built and run in a Docker engine by `docker_run.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{require, Castgate, OutputWithin, RUN_LIMIT};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The Dockerfile as `(INSTRUCTION, arguments)`, continuation lines joined,
/// comments dropped.
pub fn dockerfile() -> Vec<(String, String)> {
    let text = read("docker/Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (ins, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((ins.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{what} is not exec form ({e}): {args}"))
}

/// ENTRYPOINT + CMD: what the container runs.
pub fn run_command() -> Vec<String> {
    let df = dockerfile();
    let get = |ins: &str| {
        df.iter()
            .rev()
            .find(|(i, _)| i == ins)
            .map(|(_, a)| exec_form(a, ins))
            .unwrap_or_default()
    };
    let mut cmd = get("ENTRYPOINT");
    cmd.extend(get("CMD"));
    cmd
}

/// `docker-compose -f docker/compose.yml config` (the normalised file);
/// panics unless it parses.
pub fn compose_config(token: Option<&str>) -> String {
    require("docker-compose");
    let mut cmd = Command::new("docker-compose");
    cmd.args(["-f", "docker/compose.yml", "config"])
        .current_dir(repo())
        .env_remove("CASTGATE_API_TOKEN")
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("CASTGATE_API_TOKEN", t);
    }
    let out = cmd
        .output_within(RUN_LIMIT)
        .expect("cannot run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host file compose mounts at `target` (`- HOST:TARGET[:ro]` in the
/// normalised output).
fn mount_source(config: &str, target: &str) -> Option<PathBuf> {
    config.lines().find_map(|l| {
        let spec = l.trim().strip_prefix("- ")?;
        let (host, rest) = spec.split_once(':')?;
        (rest == target || rest.strip_prefix(target) == Some(":ro")).then(|| PathBuf::from(host))
    })
}

/// The container's command line with the config path replaced by the host
/// file compose mounts there: `[serve, --config, HOST_FILE]`.
pub fn serve_args() -> (Vec<String>, PathBuf) {
    let cmd = run_command();
    assert_eq!(cmd.first().map(String::as_str), Some("castgate"), "{cmd:?}");
    let at = cmd
        .iter()
        .position(|a| a == "--config")
        .unwrap_or_else(|| panic!("the container command has no --config: {cmd:?}"));
    let in_container = cmd.get(at + 1).expect("--config without a file").clone();
    let host = mount_source(&compose_config(None), &in_container).unwrap_or_else(|| {
        panic!("docker/compose.yml mounts nothing at {in_container}, the file the image runs with")
    });
    let mut args = cmd[1..].to_vec();
    args[at] = host.display().to_string();
    (args, host)
}

fn check_config(file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_castgate"))
        .arg("check-config")
        .arg(file)
        .env_remove("CASTGATE__API__TOKEN")
        .output_within(RUN_LIMIT)
        .expect("cannot run castgate check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `1.88` and `1.88.0` compare equal.
fn version(v: &str) -> [u32; 3] {
    let mut out = [0; 3];
    for (slot, part) in out.iter_mut().zip(v.split('.')) {
        *slot = part.parse().unwrap_or(0);
    }
    out
}

#[test]
fn compose_file_parses_and_its_config_checks() {
    let normalised = compose_config(None);
    assert!(
        normalised.contains("dockerfile: docker/Dockerfile"),
        "{normalised}"
    );
    assert!(
        normalised.contains(&format!("context: {}", repo().display())),
        "the build context is the repository: {normalised}"
    );
    // The token comes from the shell, and nothing else is required.
    assert!(
        normalised.contains("CASTGATE__API__TOKEN: ''"),
        "{normalised}"
    );
    let with = compose_config(Some("s3cret"));
    assert!(with.contains("CASTGATE__API__TOKEN: s3cret"), "{with}");

    // Every published port is the same port in the container, one per listener.
    let mut published = BTreeSet::new();
    let lines: Vec<&str> = normalised.lines().map(str::trim).collect();
    for w in lines.windows(2) {
        if let (Some(p), Some(t)) = (
            w[0].strip_prefix("- published: "),
            w[1].strip_prefix("target: "),
        ) {
            assert_eq!(p, t, "{normalised}");
            published.insert(p.parse::<u16>().unwrap());
        }
    }
    assert_eq!(published, BTreeSet::from([1935, 1936, 8080, 8443]));

    let (_, mounted) = serve_args();
    assert_eq!(mounted, repo().join("docker/castgate.toml"));
    let (ok, out) = check_config(&mounted);
    assert!(ok, "check-config {}: {out}", mounted.display());
    assert!(out.contains(": ok"), "{out}");

    // The publish URL and the HLS URL the compose file promises.
    let cfg = castgate::config::Config::load_with_env(Some(&mounted), Vec::new()).unwrap();
    assert_eq!(cfg.rtmp.listen.port(), 1935);
    assert_eq!(cfg.http.listen.port(), 8080);
    assert!(cfg.rtmp.listen.ip().is_unspecified() && cfg.http.listen.ip().is_unspecified());

    // The commented relay and transcode examples are valid once
    // uncommented, and the check is not a rubber stamp: a typo fails it,
    // naming the key, and so does an unknown profile.
    let dir = crate::harness::tempdir();
    let text = std::fs::read_to_string(&mounted).unwrap();
    let mut in_example = false;
    let examples: String = text
        .lines()
        .map(|l| {
            if l == "# [[relays]]" || l == "# [[transcode]]" {
                in_example = true;
            } else if !l.starts_with("# ") {
                in_example = false;
            }
            if in_example {
                &l[2..]
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(examples.matches("\n[[relays]]").count(), 2, "{examples}");
    assert_eq!(examples.matches("\n[[transcode]]").count(), 1, "{examples}");
    let uncommented = dir.path().join("examples.toml");
    std::fs::write(&uncommented, &examples).unwrap();
    let (ok, out) = check_config(&uncommented);
    assert!(ok, "the examples, uncommented: {out}\n{examples}");
    let cfg = castgate::config::Config::load_with_env(Some(&uncommented), Vec::new()).unwrap();
    assert_eq!(cfg.relays.len(), 2);
    let bad_profile = dir.path().join("bad-profile.toml");
    std::fs::write(&bad_profile, examples.replace("abr-720p", "abr-9000p")).unwrap();
    let (ok, out) = check_config(&bad_profile);
    assert!(!ok && out.contains("abr-9000p"), "{out}");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, text.replace("[log]\nlevel", "[log]\nlevle")).unwrap();
    let (ok, out) = check_config(&typo);
    assert!(!ok && out.contains("levle"), "{out}");
}

#[test]
fn dockerfile_builds_and_runs_what_the_tests_do() {
    let df = dockerfile();
    let froms: Vec<&str> = df
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    // Build stage: a Rust toolchain at least as new as every locked crate needs.
    let rust = froms[0]
        .strip_prefix("rust:")
        .and_then(|r| r.split('-').next())
        .unwrap_or_else(|| panic!("build stage is not a rust image: {}", froms[0]));
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    // `cargo metadata --locked` fails when the lock file would have to
    // change. Only the packages a Linux build of this architecture (the
    // image's platform) uses: other targets' crates need not be fetched;
    // any that the local cache lacks are downloaded from crates.io.
    let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .args(["--filter-platform", &platform])
        .current_dir(repo())
        .output_within(RUN_LIMIT)
        .expect("cannot run cargo metadata");
    assert!(
        out.status.success(),
        "Cargo.lock does not resolve as is, so `cargo build --locked` would fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    assert!(packages.len() > 50, "{} packages", packages.len());
    let (needed, by) = packages
        .iter()
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?)))
        .max()
        .unwrap();
    assert!(
        packages
            .iter()
            .any(|p| p["name"] == "castgate" && p["rust_version"].is_string()),
        "castgate's own rust-version counts too"
    );
    assert!(
        version(rust) >= needed,
        "the build stage has Rust {rust}, {by} needs {needed:?}"
    );
    // Each RUN with the stage it belongs to (0: build, 1: runtime; ARGs
    // before the first FROM belong to none).
    let mut froms_seen = 0usize;
    let mut stage_runs: Vec<(usize, &str)> = Vec::new();
    for (ins, args) in &df {
        if ins == "FROM" {
            froms_seen += 1;
        }
        if ins == "RUN" && froms_seen > 0 {
            stage_runs.push((froms_seen - 1, args.as_str()));
        }
    }
    let build_runs: Vec<&str> = stage_runs
        .iter()
        .filter(|(s, _)| *s == 0)
        .map(|(_, r)| *r)
        .collect();
    let runs: Vec<&str> = stage_runs
        .iter()
        .filter(|(s, _)| *s == 1)
        .map(|(_, r)| *r)
        .collect();
    let build = build_runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .unwrap_or_else(|| panic!("no cargo build: {build_runs:?}"));
    let command: Vec<&str> = build
        .split_whitespace()
        .skip_while(|w| w.starts_with("--mount="))
        .collect();
    assert_eq!(
        command[..4],
        ["cargo", "build", "--release", "--locked"],
        "{build}"
    );
    // Each stage installs its own list of Debian packages, set at the top.
    let args: BTreeMap<&str, &str> = df
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, a)| a.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    let stages: Vec<&[(String, String)]> = {
        let starts: Vec<usize> = (0..df.len()).filter(|&i| df[i].0 == "FROM").collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, &at)| &df[at..starts.get(n + 1).copied().unwrap_or(df.len())])
            .collect()
    };
    for (stage, list) in stages.iter().zip(["BUILD_PACKAGES", "RUNTIME_PACKAGES"]) {
        assert!(
            args.contains_key(list),
            "ARG {list}=… before the first FROM"
        );
        assert!(
            stage.iter().any(|(i, a)| i == "ARG" && a == list),
            "the stage FROM {} declares ARG {list}",
            stage[0].1
        );
        assert!(
            stage.iter().any(|(i, a)| i == "RUN"
                && a.contains(&format!(
                    "apt-get install -y --no-install-recommends ${list}"
                ))),
            "the stage FROM {} installs ${list}",
            stage[0].1
        );
    }
    // Runtime stage: Debian slim, ffmpeg for transcode profiles, curl for the
    // health check, libsrt for SRT relays, a user of its own.
    assert!(
        froms[1].starts_with("debian:") && froms[1].ends_with("-slim"),
        "{}",
        froms[1]
    );
    let runtime: Vec<&str> = args["RUNTIME_PACKAGES"].split_whitespace().collect();
    for pkg in ["ffmpeg", "curl", "libsrt1.5-openssl"] {
        assert!(
            runtime.contains(&pkg),
            "{pkg} in RUNTIME_PACKAGES {runtime:?}"
        );
    }
    // libsrt (SRT relays) is linked against Debian's OpenSSL flavour.
    let build: Vec<&str> = args["BUILD_PACKAGES"].split_whitespace().collect();
    assert!(
        build.contains(&"libsrt-openssl-dev"),
        "libsrt-openssl-dev in BUILD_PACKAGES {build:?}"
    );
    let install = runs.last().copied().unwrap_or("");
    assert!(install.contains("useradd "), "{install}");
    let user = df
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.as_str());
    assert!(
        user.is_some_and(|u| u != "root" && u != "0" && install.contains(&format!(" {u}"))),
        "USER {user:?}"
    );
    // EXPOSE: exactly the listeners of the config the image runs with.
    let (args, mounted) = serve_args();
    let cfg = castgate::config::Config::load_with_env(Some(&mounted), Vec::new()).unwrap();
    let expose: BTreeSet<u16> = df
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, a)| a.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert_eq!(
        expose,
        BTreeSet::from([
            cfg.rtmp.listen.port(),
            cfg.rtmps.listen.port(),
            cfg.http.listen.port(),
            cfg.https.listen.port()
        ])
    );
    // The image carries the same config file compose mounts over it.
    let in_container = &run_command()[3];
    assert_eq!(args[1], "--config");
    assert!(
        df.iter()
            .any(|(i, a)| i == "COPY" && *a == format!("docker/castgate.toml {in_container}")),
        "COPY docker/castgate.toml {in_container}"
    );
    let health = healthcheck();
    assert!(
        health.contains(&format!("127.0.0.1:{}/healthz", cfg.http.listen.port())),
        "{health}"
    );
    // Everything cargo needs is in the build context; the bulky rest is not.
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target", "e2e/browser/node_modules", ".git"] {
        assert!(ignored.contains(&must), "{must} in .dockerignore");
    }
    for needed in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "benches",
        "e2e",
        "tests",
        "docker",
    ] {
        assert!(
            !ignored
                .iter()
                .any(|i| *i == needed || i.starts_with(&format!("{needed}/*"))),
            "{needed} must reach the build"
        );
    }
}

/// The HEALTHCHECK's command (after `CMD`).
fn healthcheck() -> String {
    let df = dockerfile();
    let (_, h) = df
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    h.split_once(" CMD ")
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {h}"))
}

fn run_healthcheck(http: std::net::SocketAddr) -> std::process::ExitStatus {
    require("curl");
    let cmd = healthcheck().replace("127.0.0.1:8080", &http.to_string());
    Command::new("sh")
        .args(["-c", &cmd])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("cannot run sh")
}

/// The container's command, on the file compose mounts (ports aside), passes
/// the container's health check, serves the console and the API's 401
/// without the token compose passes; once stopped, the check fails.
#[test]
fn container_command_serves_and_passes_its_health_check() {
    let (args, _) = serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Castgate::start_with_args(&args, &[("CASTGATE__API__TOKEN", "t0ken")]);
    server.wait_log(
        "REST API on: every call needs Authorization",
        Duration::from_secs(10),
    );
    let http = server.http;
    let status = run_healthcheck(http);
    assert!(status.success(), "HEALTHCHECK against castgate: {status}");
    let page = crate::harness::http_get(http, "/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("castgate console"));
    let api = crate::harness::http_get(http, "/api/v1/streams");
    assert_eq!(api.status, 401);
    let api = crate::harness::http_request(
        http,
        "GET",
        "/api/v1/streams",
        &[("Authorization", "Bearer t0ken")],
    );
    assert_eq!(api.status, 200, "{}", api.text());
    server.assert_no_panic();
    drop(server);
    let status = run_healthcheck(http);
    assert!(
        !status.success(),
        "HEALTHCHECK passes with castgate stopped"
    );
}

/// The three-node cluster's compose file (`docker/compose-cluster.yml`)
/// and the HAProxy and nginx configs it mounts agree: compose parses it;
/// each castgate service is a cluster node with its own id that advertises
/// its own service name, all on the compose file's Redis; HAProxy's RTMP
/// servers and nginx's upstream are exactly those services; and HAProxy
/// and nginx accept their files (nginx with the names pointed at loopback:
/// outside compose they do not resolve).
#[test]
fn cluster_compose_file_and_its_proxies_name_the_same_nodes() {
    require("docker-compose");
    let out = Command::new("docker-compose")
        .args(["-f", "docker/compose-cluster.yml", "config"])
        .current_dir(repo())
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .expect("cannot run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let normalised = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| -> Vec<String> {
        normalised
            .lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
            .collect()
    };
    let services = ["castgate1", "castgate2", "castgate3"];
    let ids = value("CASTGATE__CLUSTER__NODE_ID");
    let http = value("CASTGATE__CLUSTER__ADVERTISE_HTTP");
    let rtmp = value("CASTGATE__CLUSTER__ADVERTISE_RTMP");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "three distinct node ids: {ids:?}"
    );
    for s in services {
        assert!(normalised.contains(&format!("  {s}:")), "service {s}");
        assert!(http.contains(&format!("http://{s}:8080")), "{http:?}");
        assert!(rtmp.contains(&format!("rtmp://{s}:1935")), "{rtmp:?}");
    }
    assert_eq!(
        value("CASTGATE__CLUSTER__REDIS_URL"),
        vec!["redis://redis:6379"; 3]
    );
    assert!(normalised.contains("  redis:"), "{normalised}");

    let haproxy_cfg = read("docker/cluster/haproxy.cfg");
    let servers: Vec<&str> = haproxy_cfg
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        servers,
        services.map(|s| format!("{s}:1935")).to_vec(),
        "{haproxy_cfg}"
    );
    let nginx_conf = read("docker/cluster/nginx.conf");
    let upstream: Vec<&str> = nginx_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|a| a.starts_with("castgate"))
        .collect();
    assert_eq!(
        upstream,
        services.map(|s| format!("{s}:8080")).to_vec(),
        "{nginx_conf}"
    );

    // The proxies accept their files.
    let check = Command::new(crate::harness::sbin("haproxy"))
        .args(["-c", "-f"])
        .arg(repo().join("docker/cluster/haproxy.cfg"))
        .output_within(RUN_LIMIT)
        .expect("cannot run haproxy");
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let dir = crate::harness::tempdir();
    let mut local = nginx_conf.clone();
    for s in services {
        local = local.replace(&format!("{s}:"), "127.0.0.1:");
    }
    let local = local
        .replace("/var/cache/nginx", &dir.path().display().to_string())
        .replace(
            "/tmp/nginx.pid",
            &dir.path().join("nginx.pid").display().to_string(),
        );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, local).unwrap();
    let check = Command::new(crate::harness::sbin("nginx"))
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .output_within(RUN_LIMIT)
        .expect("cannot run nginx");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}
