//! The Redis side against a real `redis-server` (Debian's), started on a
//! free loopback port by each test.

use std::process::{Child, Command, Stdio};

use super::*;

/// A `redis-server` child, killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        Self::on(port)
    }

    /// On `port` (a restart on the same address).
    pub(crate) fn on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install Debian's redis-server (scripts/test.sh does)")
            });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(url: &str, id: &str) -> Cluster {
    Cluster::new(&Settings {
        redis_url: url.into(),
        node_id: id.into(),
        advertise_http: format!("http://{id}:8080"),
        advertise_rtmp: format!("rtmp://{id}:1935"),
        lease: Duration::from_millis(1500),
        cache_bytes: 1 << 24,
    })
    .expect("cluster on")
}

fn key(s: &str) -> StreamKey {
    StreamKey::parse(s).unwrap()
}

#[test]
fn off_without_a_redis_url() {
    let off = Settings {
        redis_url: String::new(),
        node_id: String::new(),
        advertise_http: String::new(),
        advertise_rtmp: String::new(),
        lease: Duration::from_secs(5),
        cache_bytes: 1 << 24,
    };
    assert!(!off.enabled());
    assert!(Cluster::new(&off).is_none());
    assert!(!off.node().is_empty(), "the host name stands for node_id");
}

#[tokio::test]
async fn claims_follow_the_conflict_rule_and_name_the_owner() {
    let redis = RedisServer::start();
    let (n1, n2) = (node(&redis.url(), "n1"), node(&redis.url(), "n2"));
    let k = key("live/a");
    let a = n1.claim(&k, PublishConflict::Reject).await.unwrap();
    let held = n1.holder(&k).await.unwrap().unwrap();
    assert_eq!(held.node, "n1");
    assert_eq!(held.http, "http://n1:8080");
    assert_eq!(held.rtmp, "rtmp://n1:1935");
    let t1 = held.token;
    // Reject: refused, naming the owner.
    let e = n2.claim(&k, PublishConflict::Reject).await.err().unwrap();
    assert_eq!(
        e,
        ClaimError::Owned {
            stream: "live/a".into(),
            owner: "n1".into()
        }
    );
    assert!(e.to_string().contains("node n1"), "{e}");
    // Takeover: a new, higher token; n1's next renewal loses it.
    let mut a = a;
    let b = n2.claim(&k, PublishConflict::Takeover).await.unwrap();
    let t2 = n2.holder(&k).await.unwrap().unwrap().token;
    assert!(t2 > t1, "{t2} after {t1}");
    n1.tick().await;
    let why = tokio::time::timeout(Duration::from_secs(1), a.lost())
        .await
        .expect("n1 told its lease is lost");
    assert!(why.contains("node n2"), "{why}");
    // n1's publish ending does not release n2's lease.
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(n1.holder(&k).await.unwrap().unwrap().node, "n2");
    // The listing shows it; n2's end releases it.
    let list = n2.streams().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].0.as_str(), list[0].1.node.as_str()),
        ("live/a", "n2")
    );
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(n1.holder(&k).await.unwrap(), None);
    assert!(n1.streams().await.unwrap().is_empty());
}

#[tokio::test]
async fn renewals_keep_a_lease_past_its_time_and_the_node_key_alive() {
    let redis = RedisServer::start();
    let n1 = node(&redis.url(), "n1");
    let k = key("live/r");
    let _a = n1.claim(&k, PublishConflict::Reject).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        n1.tick().await;
    }
    // 3 s: twice the lease.
    assert_eq!(n1.holder(&k).await.unwrap().unwrap().node, "n1");
    let mut cmd = redis::cmd("GET");
    cmd.arg(format!("{NODE_PREFIX}n1"));
    let v: Option<String> = n1.run(&cmd).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&v.expect("node key")).unwrap();
    assert_eq!(v["streams"], 1);
    assert_eq!(v["http"], "http://n1:8080");
}

#[tokio::test]
async fn without_redis_claims_are_refused_and_held_leases_go_on_then_come_back() {
    let redis = RedisServer::start();
    let port = redis.port;
    let n1 = node(&redis.url(), "n1");
    let k = key("live/o");
    let mut a = n1.claim(&k, PublishConflict::Takeover).await.unwrap();
    let t1 = n1.holder(&k).await.unwrap().unwrap().token;
    drop(redis);
    let e = n1
        .claim(&key("live/new"), PublishConflict::Takeover)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClaimError::Unreachable(_)), "{e:?}");
    assert!(e.to_string().contains("cannot be reached"), "{e}");
    // Past the lease, unanswered: still held (unconfirmed), not lost.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    n1.tick().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), a.lost())
            .await
            .is_err(),
        "a lease is not lost while Redis cannot answer"
    );
    // Redis back, empty: the lease is claimed again with a higher token,
    // and new claims work, with no restart.
    let _redis = RedisServer::on(port);
    n1.tick().await;
    let h = n1.holder(&k).await.unwrap().expect("claimed again");
    assert_eq!(h.node, "n1");
    assert!(h.token > t1, "{} after {t1}", h.token);
    n1.claim(&key("live/new"), PublishConflict::Reject)
        .await
        .unwrap();
}
