//! Cluster mode (`[cluster]`): castgate nodes sharing stream ownership in
//! a real `redis-server` (Debian's), started by each test on a free
//! loopback port. ffmpeg publishes; Redis is read with `redis-cli`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

pub(crate) const LEASE_SECS: &str = "3";
pub(crate) const T: Duration = Duration::from_secs(20);

/// A `redis-server` child on a loopback port, killed on drop.
pub(crate) struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    pub(crate) fn start(port: u16) -> Redis {
        require("redis-server");
        require("redis-cli");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        let deadline = Instant::now() + T;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `GET key` with redis-cli ("" when missing).
    pub(crate) fn get(&self, key: &str) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw", "GET", key])
            .output()
            .expect("cannot run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until `key` holds a value containing `part`.
    pub(crate) fn wait_value(&self, key: &str, part: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let v = self.get(key);
            if v.contains(part) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never held {part:?} (last {v:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node on its own loopback ports, advertising them to the others.
pub(crate) fn node(redis: &Redis, id: &str, conflict: &str) -> Castgate {
    node_with(redis, id, conflict, &[])
}

/// [`node`] with more settings.
pub(crate) fn node_with(
    redis: &Redis,
    id: &str,
    conflict: &str,
    more: &[(&str, &str)],
) -> Castgate {
    let (rtmp, http) = (free_port(), free_port());
    let (advertise_http, advertise_rtmp) = (
        format!("http://127.0.0.1:{http}"),
        format!("rtmp://127.0.0.1:{rtmp}"),
    );
    let (rtmp_listen, http_listen) = (format!("127.0.0.1:{rtmp}"), format!("127.0.0.1:{http}"));
    let redis_url = redis.url();
    let mut env: Vec<(&str, &str)> = vec![
        ("CASTGATE__CLUSTER__REDIS_URL", &redis_url),
        ("CASTGATE__CLUSTER__NODE_ID", id),
        ("CASTGATE__CLUSTER__LEASE_SECS", LEASE_SECS),
        ("CASTGATE__CLUSTER__ADVERTISE_HTTP", &advertise_http),
        ("CASTGATE__CLUSTER__ADVERTISE_RTMP", &advertise_rtmp),
        ("CASTGATE__RTMP__LISTEN", &rtmp_listen),
        ("CASTGATE__HTTP__LISTEN", &http_listen),
        ("CASTGATE__RTMP__PUBLISH_CONFLICT", conflict),
    ];
    env.extend_from_slice(more);
    Castgate::start(&env)
}

/// A publisher that keeps going (the fixture looped).
pub(crate) fn publish_live(server: &Castgate, key: &str) -> Child {
    publish(&fixture(0), &server.url(key), &["-stream_loop", "-1"])
}

/// A publish that must be refused: ffmpeg fails; its stderr.
pub(crate) fn publish_refused(server: &Castgate, key: &str) -> String {
    let mut ff = publish(&fixture(1), &server.url(key), &[]);
    let status = wait_child(&mut ff, T, "a refused ffmpeg publish");
    let err = stderr_of(&mut ff);
    assert!(!status.success(), "the publish was not refused: {err}");
    err
}

pub(crate) fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn ownership_across_nodes_follows_publish_conflict() {
    let redis = Redis::start(free_port());
    let n1 = node(&redis, "node1", "reject");
    let n2 = node(&redis, "node2", "reject");
    let n3 = node(&redis, "node3", "takeover");
    n1.wait_log("cluster mode", T);

    // node1 owns live/a: Redis names it, with a fencing token.
    let mut first = publish_live(&n1, "live/a");
    n1.wait_log_all(&["publish started", "live/a"], T);
    let v = redis.wait_value("castgate:stream:live/a", "\"node\":\"node1\"");
    assert!(v.contains("\"token\":"), "{v}");

    // Reject on node2: refused, naming node1 (in ffmpeg's error and the log).
    let err = publish_refused(&n2, "live/a");
    assert!(
        err.contains("node1"),
        "ffmpeg's error names the owner: {err}"
    );
    n2.wait_log_all(&["publish refused", "live/a", "node node1"], T);
    assert!(
        first.try_wait().unwrap().is_none(),
        "node1's publisher goes on"
    );
    assert_eq!(n2.count_log(&["publish started", "live/a"]), 0);

    // Takeover on node3: it takes the lease (a higher token), and node1
    // ends its publisher within the lease.
    let token = |v: &str| -> u64 {
        v.split("\"token\":")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    let t1 = token(&v);
    // Every node serves node1's stream (node2 and node3 from node1).
    for n in [&n1, &n2, &n3] {
        wait_http_ok(n.http, "/live/a/video.m3u8", T);
    }
    let before: Vec<u64> = [&n1, &n2, &n3]
        .iter()
        .map(|n| crate::cluster_edge::last_segment(n.http, "live/a"))
        .collect();
    let third = publish_live(&n3, "live/a");
    let started = n3.wait_log_all(&["publish started", "live/a"], T);
    let taken = Instant::now();
    let v3 = redis.wait_value("castgate:stream:live/a", "\"node\":\"node3\"");
    assert!(token(&v3) > t1, "{v3} after token {t1}");
    let lost = n1.wait_log_all(&["cluster lease was lost", "live/a", "node3"], T);
    let ended_in = log_time(&lost) - log_time(&started);
    assert!(
        ended_in < 3.0,
        "node1 ended its publisher {ended_in:.2} s after the takeover (lease_secs = {LEASE_SECS}): {lost}"
    );
    wait_child(
        &mut first,
        Duration::from_secs(5),
        "node1's replaced publisher",
    );
    // Playback goes on from every node, node1 included (from node3 now):
    // node3's segments are listed within lease_secs and a segment.
    let lease: f64 = LEASE_SECS.parse().unwrap();
    for (n, old) in [&n1, &n2, &n3].into_iter().zip(before) {
        let deadline = Instant::now() + T;
        while crate::cluster_edge::last_segment(n.http, "live/a") <= old {
            assert!(
                Instant::now() < deadline,
                "{} never listed node3's segments",
                n.http
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = taken.elapsed().as_secs_f64();
        assert!(
            took <= lease + 2.0 + 2.0,
            "{}: node3's stream listed {took:.2} s after its publish started",
            n.http
        );
    }
    // node1's end did not release node3's lease.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(redis
        .get("castgate:stream:live/a")
        .contains("\"node\":\"node3\""));
    kill(third);
    // node3's publish over: its lease is released.
    let deadline = Instant::now() + T;
    while !redis.get("castgate:stream:live/a").is_empty() {
        assert!(Instant::now() < deadline, "node3's lease was not released");
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in [&n1, &n2, &n3] {
        n.assert_no_panic();
    }
}

#[test]
fn without_redis_owners_go_on_and_new_publishes_are_refused_until_it_is_back() {
    let port = free_port();
    let redis = Redis::start(port);
    let n1 = node(&redis, "node1", "reject");
    let n2 = node(&redis, "node2", "reject");
    let mut owned = publish_live(&n1, "live/o");
    n1.wait_log_all(&["publish started", "live/o"], T);
    redis.wait_value("castgate:stream:live/o", "\"node\":\"node1\"");
    let playlist = "/live/o/index.m3u8";
    wait_http_ok(n1.http, playlist, T);

    // Redis stops for longer than the lease.
    drop(redis);
    std::thread::sleep(Duration::from_secs(1));
    let before = http_get(n1.http, playlist);
    std::thread::sleep(Duration::from_secs(4));
    // node1 keeps serving its stream, live.
    let after = http_get(n1.http, playlist);
    assert_eq!(after.status, 200);
    let text = String::from_utf8_lossy(&after.body).to_string();
    assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
    assert_ne!(before.body, after.body, "the playlist did not move on");
    assert!(
        owned.try_wait().unwrap().is_none(),
        "node1's publisher was ended"
    );
    assert_eq!(n1.count_log(&["cluster lease was lost"]), 0);
    n1.wait_log("Redis unreachable", T);

    // node2 refuses a new publish, saying why.
    publish_refused(&n2, "live/p");
    n2.wait_log_all(&["publish refused", "live/p", "cannot be reached"], T);

    // Redis back (empty): new publishes work with no restart, and node1
    // claims its stream again.
    let redis = Redis::start(port);
    let mut p = publish_live(&n2, "live/p");
    n2.wait_log_all(&["publish started", "live/p"], T);
    redis.wait_value("castgate:stream:live/p", "\"node\":\"node2\"");
    redis.wait_value("castgate:stream:live/o", "\"node\":\"node1\"");
    assert!(
        owned.try_wait().unwrap().is_none(),
        "node1's publisher goes on"
    );
    kill(p);
    kill(owned);
    p = publish(&fixture(1), &n1.url("live/q"), &[]);
    wait_child(&mut p, T, "a publish after Redis came back");
    n1.wait_log_all(&["publish started", "live/q"], T);
    for n in [&n1, &n2] {
        n.assert_no_panic();
    }
}
