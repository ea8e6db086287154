//! Cluster mode, viewers' side: every node answers for every stream.
//! Three castgate nodes and a real `redis-server`; HLS/DASH from nodes that
//! do not own the stream (forwarded to the owner, coalesced and cached),
//! RTMP and SRT play from them (one pull from the owner), the cluster API;
//! and the deployment of the README: HAProxy (TCP) in front of the nodes'
//! RTMP ports for publishers, nginx's `proxy_cache` in front of their HTTP
//! ports as the CDN, the owner killed with SIGKILL.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::{kill, node, node_with, publish_live, Redis, LEASE_SECS, T};
use crate::harness::*;
use crate::relay::{wait_bound, Proc};

/// The sum of the `/metrics` samples of `name` whose labels hold every one
/// of `labels` (e.g. `route="part"`).
fn metric(server: &Castgate, name: &str, labels: &[&str]) -> f64 {
    let page = http_get(server.http, "/metrics");
    assert_eq!(page.status, 200, "/metrics");
    page.text()
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The URIs a media playlist lists: its init section, segments and parts,
/// as paths on the server (`dir` is the playlist's directory).
fn listed(playlist: &str, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        let uri = if line.starts_with("#EXT-X-MAP:") || line.starts_with("#EXT-X-PART:") {
            line.split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            Some(line.trim())
        } else {
            None
        };
        if let Some(u) = uri {
            out.push(format!("{dir}/{}", u.split('?').next().unwrap_or(u)));
        }
    }
    out
}

/// The segments (`seg-N`) a playlist lists, in order.
fn segments_of(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("seg-"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The highest segment number a node's video playlist lists (0: none).
pub(crate) fn last_segment(addr: SocketAddr, key: &str) -> u64 {
    let r = http_get(addr, &format!("/{key}/video.m3u8"));
    if r.status != 200 {
        return 0;
    }
    segments_of(&r.text())
        .iter()
        .filter_map(|s| s.split("seg-").nth(1)?.strip_suffix(".m4s")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Video frames ffmpeg decodes from `url` in `secs` seconds of media, and
/// its decode errors.
fn read_frames(url: &str, secs: u32) -> (usize, String) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i", url, "-map", "0:v"])
        .args(["-t", &secs.to_string(), "-f", "framemd5", "-"])
        .stdin(Stdio::null())
        .output_within(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("ffmpeg reading {url}: {e}"));
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    (frames, String::from_utf8_lossy(&out.stderr).to_string())
}

/// ffmpeg reads every URL at once for `secs` of media: each decodes
/// cleanly with at least `min` video frames.
fn read_all(urls: &[String], secs: u32, min: usize) {
    let reads: Vec<_> = urls
        .iter()
        .map(|u| {
            let u = u.clone();
            std::thread::spawn(move || (read_frames(&u, secs), u))
        })
        .collect();
    for r in reads {
        let ((frames, errors), url) = r.join().unwrap();
        assert_eq!(errors.trim(), "", "decoding {url}");
        assert!(frames >= min, "{url}: {frames} frames in {secs} s");
    }
}

#[test]
fn hls_and_dash_from_any_node_are_the_owners_bytes() {
    let redis = Redis::start(free_port());
    let n1 = node(&redis, "node1", "reject");
    let n2 = node(&redis, "node2", "reject");
    let n3 = node(&redis, "node3", "reject");
    let key = "live/e";
    let mut p = publish_live(&n1, key);
    n1.wait_log_all(&["publish started", key], T);
    wait_http_ok(n1.http, &format!("/{key}/video.m3u8"), T);
    for n in [&n2, &n3] {
        wait_http_ok(n.http, &format!("/{key}/video.m3u8"), T);
    }

    // Every segment the three nodes list at once: the same bytes from each.
    let playlists: Vec<String> = [&n1, &n2, &n3]
        .iter()
        .map(|n| http_get(n.http, &format!("/{key}/video.m3u8")).text())
        .collect();
    let common: Vec<String> = segments_of(&playlists[0])
        .into_iter()
        .filter(|s| playlists[1..].iter().all(|p| p.contains(s.as_str())))
        .collect();
    assert!(!common.is_empty(), "no segment in common: {playlists:?}");
    for track in ["video", "audio"] {
        let pl = http_get(n2.http, &format!("/{key}/{track}.m3u8")).text();
        for uri in listed(&pl, &format!("/{key}")) {
            let from_owner = http_get(n1.http, &uri);
            if from_owner.status != 200 {
                continue; // slid out of the window meanwhile
            }
            for n in [&n2, &n3] {
                let r = http_get(n.http, &uri);
                assert_eq!(r.status, 200, "{uri} from {}", n.http);
                assert!(
                    r.body == from_owner.body,
                    "{uri}: node {} sent other bytes than the owner",
                    n.http
                );
                assert_eq!(
                    r.header("content-type"),
                    from_owner.header("content-type"),
                    "{uri}"
                );
            }
        }
    }
    // An LL-HLS blocking reload on node3 for the part the playlist hints at
    // is held at the owner and answered listing it.
    let peer_playlists = |n: &Castgate| {
        metric(
            n,
            "castgate_cluster_peer_requests_total",
            &["route=\"playlist\""],
        )
    };
    let asked = peer_playlists(&n1);
    let before = http_get(n3.http, &format!("/{key}/video.m3u8")).text();
    let (msn, part) = crate::ll::preload_hint(&before);
    assert!(
        !crate::ll::lists_part(&before, "video", msn, part),
        "{before}"
    );
    let held = http_get(
        n3.http,
        &format!("/{key}/video.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
    );
    assert_eq!(held.status, 200, "{}", held.text());
    assert!(
        crate::ll::lists_part(&held.text(), "video", msn, part),
        "the blocking reload's answer lacks part {msn}.{part}:\n{}",
        held.text()
    );
    assert!(
        peer_playlists(&n1) > asked,
        "the reload did not reach the owner"
    );

    // The MPD names the node asked (its time URL), not the owner.
    let mpd = wait_http_ok(n3.http, &format!("/{key}/manifest.mpd"), T).text();
    assert!(mpd.contains("<MPD"), "{mpd}");
    assert!(
        mpd.contains(&n3.http.to_string()),
        "the MPD's UTCTiming names another host: {mpd}"
    );

    // ffmpeg reads HLS and DASH from every node, at once: 5 s of 30 fps
    // video each, decoded cleanly.
    let urls: Vec<String> = [&n1, &n2, &n3]
        .iter()
        .flat_map(|n| {
            [
                n.http_url(&format!("{key}/index.m3u8")),
                n.http_url(&format!("{key}/manifest.mpd")),
            ]
        })
        .collect();
    read_all(&urls, 5, 140);
    // Nothing was packaged off the owner: only node1 published.
    for n in [&n2, &n3] {
        assert_eq!(n.count_log(&["publish started"]), 0);
        assert!(metric(n, "castgate_edge_requests_total", &["result=\"fetched\""]) > 0.0);
    }
    assert!(p.try_wait().unwrap().is_none(), "the publisher died");
    kill(p);
    for n in [&n1, &n2, &n3] {
        n.assert_no_panic();
    }
}

/// One player: polls the video and audio playlists for `secs` and fetches
/// every init section, segment and part they list, once; each URL it
/// fetched goes into `seen`.
fn player(server: SocketAddr, key: String, secs: u64, seen: Arc<Mutex<BTreeSet<String>>>) -> usize {
    let mut mine = BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut fetched = 0;
    while Instant::now() < until {
        for track in ["video", "audio"] {
            let pl = http_get(server, &format!("/{key}/{track}.m3u8"));
            assert_eq!(pl.status, 200, "{key}/{track}.m3u8");
            for uri in listed(&pl.text(), &format!("/{key}")) {
                if mine.insert(uri.clone()) {
                    let r = http_get(server, &uri);
                    assert_eq!(r.status, 200, "{uri}");
                    assert!(!r.body.is_empty(), "{uri}");
                    fetched += 1;
                    seen.lock().unwrap().insert(uri);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    fetched
}

#[test]
fn twenty_players_on_a_non_owner_make_one_upstream_request_per_segment_and_part() {
    let redis = Redis::start(free_port());
    let n1 = node(&redis, "node1", "reject");
    let n2 = node(&redis, "node2", "reject");
    let key = "live/many";
    let mut p = publish_live(&n1, key);
    n1.wait_log_all(&["publish started", key], T);
    wait_http_ok(n1.http, &format!("/{key}/video.m3u8"), T);
    let routes = ["route=\"segment\"", "route=\"part\"", "route=\"init\""];
    let upstream = |n: &Castgate| -> f64 {
        routes
            .iter()
            .map(|r| metric(n, "castgate_cluster_peer_requests_total", &[r]))
            .sum()
    };
    let before = upstream(&n1);
    assert_eq!(before, 0.0, "node2 asked node1 for media before any player");

    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let players: Vec<_> = (0..20)
        .map(|_| {
            let (seen, key, addr) = (seen.clone(), key.to_string(), n2.http);
            std::thread::spawn(move || player(addr, key, 8, seen))
        })
        .collect();
    let served: usize = players.into_iter().map(|p| p.join().unwrap()).sum();
    let distinct = seen.lock().unwrap().len();
    let upstream_requests = upstream(&n1) - before;
    assert!(distinct >= 10, "the players saw only {distinct} URLs");
    assert!(
        served >= 15 * distinct,
        "20 players fetched {served} times {distinct} URLs"
    );
    // One request at the owner per segment, part and init section.
    assert_eq!(
        upstream_requests, distinct as f64,
        "node1 was asked {upstream_requests} times for {distinct} URLs ({served} requests at node2)"
    );
    let edge = |result: &str| -> f64 {
        routes
            .iter()
            .map(|r| {
                metric(
                    &n2,
                    "castgate_edge_requests_total",
                    &[r, &format!("result=\"{result}\"")],
                )
            })
            .sum()
    };
    assert_eq!(edge("fetched"), distinct as f64);
    assert_eq!(
        edge("hit") + edge("coalesced") + edge("fetched"),
        served as f64
    );
    // node2 fetching for its viewers is no viewer at node1.
    assert_eq!(api_players(&n1, key), 0, "node1 counts node2 as a viewer");
    println!(
        "20 players: {served} media requests at node2, {distinct} at node1 (ratio {:.3}); hits {}, coalesced {}",
        upstream_requests / served as f64,
        edge("hit"),
        edge("coalesced")
    );
    assert!(p.try_wait().unwrap().is_none(), "the publisher died");
    kill(p);
    n1.assert_no_panic();
    n2.assert_no_panic();
}

/// The `players` of a stream in a node's own stream list (0: not listed).
/// The list is the node's (`/streams/{key}` of a stream another node owns
/// is that node's view).
fn api_players(server: &Castgate, key: &str) -> u64 {
    let r = http_get(server.http, "/api/v1/streams");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stream"] == key))
        .and_then(|s| s["players"].as_u64())
        .unwrap_or(0)
}

fn wait_players(server: &Castgate, key: &str, n: u64) {
    let deadline = Instant::now() + T;
    loop {
        let got = api_players(server, key);
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} on {} has {got} players, not {n}; its log:\n{}",
            server.http,
            server.lines_with(&[key]).join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rtmp_and_srt_play_from_a_non_owner_is_one_pull_from_the_owner() {
    let redis = Redis::start(free_port());
    let n1 = node(&redis, "node1", "reject");
    let n2 = node(&redis, "node2", "reject");
    let srt = n2.listening("SRT");
    let key = "live/r";
    let mut p = publish_live(&n1, key);
    n1.wait_log_all(&["publish started", key], T);
    let dir = tempdir();
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("p{i}.flv")))
        .collect();
    let mut players: Vec<Child> = outs.iter().map(|o| play(&n2.url(key), o)).collect();
    let srt_out = dir.path().join("srt.ts");
    let mut srt_player = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(format!(
            "srt://{srt}?streamid=#!::r={key},m=request&transtype=live"
        ))
        .args(["-t", "4", "-c", "copy", "-f", "mpegts"])
        .arg(&srt_out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ffmpeg");
    n2.wait_log_all(&["pulling the stream from its owner", key, "node1"], T);
    let status = wait_child(&mut srt_player, T, "the SRT player");
    assert!(
        status.success(),
        "SRT play: {}; node2: {:?}",
        stderr_of(&mut srt_player),
        n2.lines_with(&["srt"])
    );
    // Three RTMP players here, one at the owner: node2's pull.
    for pl in players.iter_mut() {
        if let Ok(Some(status)) = pl.try_wait() {
            panic!(
                "an RTMP player of node2 ended ({status}): {}\nnode2: {:?}",
                stderr_of(pl),
                n2.lines_with(&[key])
            );
        }
    }
    wait_players(&n2, key, 3);
    wait_players(&n1, key, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api_players(&n1, key), 1, "one pull whatever the players");
    for pl in players.drain(..) {
        kill(pl);
    }
    for out in outs.iter().chain([&srt_out]) {
        let (frames, errors) = read_frames(out.to_str().unwrap(), 60);
        assert!(
            frames >= 60,
            "{}: {frames} frames ({errors})",
            out.display()
        );
    }
    assert_eq!(
        n2.count_log(&["pulling the stream from its owner", key]),
        1,
        "one pull for every player"
    );
    // Nobody watches: the pull ends (source.on_demand_idle_secs later).
    wait_players(&n1, key, 0);
    assert!(p.try_wait().unwrap().is_none(), "the publisher died");
    kill(p);
    n1.assert_no_panic();
    n2.assert_no_panic();
}

/// An API call: (status, the owner header, JSON body or null).
fn api(server: &Castgate, method: &str, path: &str) -> (u16, Option<String>, serde_json::Value) {
    let r = http_exchange(server.http, method, &format!("/api/v1{path}"), &[], &[]);
    let json = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (
        r.status,
        r.header("x-castgate-owner").map(str::to_string),
        json,
    )
}

#[test]
fn the_api_on_any_node_lists_every_stream_and_passes_changes_to_the_owner() {
    let redis = Redis::start(free_port());
    let dir = tempdir();
    let rec = dir.path().to_str().unwrap();
    let n1 = node_with(
        &redis,
        "node1",
        "reject",
        &[("CASTGATE__RECORDER__DIR", rec)],
    );
    let n2 = node(&redis, "node2", "reject");
    let a = publish_live(&n1, "live/a1");
    let b = publish_live(&n2, "live/b2");
    for (n, k) in [(&n1, "live/a1"), (&n2, "live/b2")] {
        n.wait_log_all(&["publish started", k], T);
    }
    for n in [&n1, &n2] {
        let deadline = Instant::now() + T;
        let view = loop {
            let r = http_get(n.http, "/api/v1/cluster");
            assert_eq!(r.status, 200);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            if v["streams"].as_array().is_some_and(|s| s.len() == 2)
                && v["nodes"].as_array().is_some_and(|s| s.len() == 2)
            {
                break v;
            }
            assert!(Instant::now() < deadline, "{v}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let owner = |k: &str| {
            view["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["stream"] == k)
                .map(|s| s["node"].as_str().unwrap().to_string())
        };
        assert_eq!(owner("live/a1").as_deref(), Some("node1"), "{view}");
        assert_eq!(owner("live/b2").as_deref(), Some("node2"), "{view}");
        let me = view["node"].as_str().unwrap();
        for s in view["streams"].as_array().unwrap() {
            assert_eq!(s["here"].as_bool().unwrap(), s["node"] == me, "{view}");
        }
        let http: Vec<&str> = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["http"].as_str().unwrap())
            .collect();
        assert!(
            http.contains(&format!("http://{}", n1.http).as_str()),
            "{view}"
        );
    }
    // node2 asked about node1's stream: node1 answers (its view, its
    // recording), node2 passes the calls on.
    let (status, owner, view) = api(&n2, "GET", "/streams/live/a1");
    assert_eq!((status, owner.as_deref()), (200, Some("node1")), "{view}");
    assert_eq!(view["stream"], "live/a1", "{view}");
    let (status, _, started) = api(&n2, "POST", "/streams/live/a1/recording");
    assert!(status == 201 || status == 200, "{status} {started}");
    let deadline = Instant::now() + T;
    loop {
        let (_, _, list) = api(&n1, "GET", "/recordings");
        if list["recordings"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["stream"] == "live/a1"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "node1 records nothing: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, owner, stopped) = api(&n2, "DELETE", "/streams/live/a1/recording");
    assert_eq!(
        (status, owner.as_deref()),
        (200, Some("node1")),
        "{stopped}"
    );
    assert_eq!(
        n2.count_log(&["API call passed to the node", "live/a1", "node1"]),
        3
    );
    // node2's own stream stays node2's.
    let (status, owner, _) = api(&n2, "GET", "/streams/live/b2");
    assert_eq!((status, owner), (200, None));

    // node2's console: the nodes, and every stream with its owner.
    crate::browser::ensure_installed();
    let shot = crate::console::artifact("console-cluster.png");
    let mut cmd = Command::new("node");
    cmd.arg(crate::browser::browser_dir().join("console.js"))
        .arg("--cluster")
        .arg(n2.http_url("/"))
        .args(["-", "live/a1=node1,live/b2=node2", "2"])
        .arg(&shot)
        .current_dir(crate::browser::browser_dir());
    let out = {
        let _serial = crate::browser::one_at_a_time();
        crate::console::run_console_js(cmd, Duration::from_secs(120), || {})
    };
    let (line, r) = crate::console::report_of(&out);
    assert!(
        r["ok"] == true,
        "the console's cluster view: {line}\n{}",
        out.stderr
    );
    let streams = r["steps"]["cluster"]["streams"].to_string();
    assert!(streams.contains("node2 (this node)"), "{streams}");
    assert_eq!(
        r["steps"]["cluster"]["node"], "(this node: node2)",
        "{line}"
    );
    kill(a);
    kill(b);
}

// --- HAProxy, nginx's cache, and a node killed -----------------------------

/// HAProxy in TCP mode on `port`, in front of the nodes' RTMP ports,
/// health-checking them every 300 ms.
fn haproxy(dir: &Path, port: u16, nodes: &[SocketAddr]) -> Proc {
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  server n{i} {a} check inter 300ms fall 1 rise 1\n"))
        .collect();
    let conf = format!(
        "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
frontend rtmp\n  bind 127.0.0.1:{port}\n  default_backend nodes\nbackend nodes\n  balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(sbin("haproxy"))
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run haproxy");
    let mut proc = Proc(child, "haproxy");
    wait_bound(false, port, &mut proc);
    proc
}

/// nginx on `port` as a CDN edge: `proxy_cache` in front of the nodes'
/// HTTP ports (it keeps what their `Cache-Control` allows, one request per
/// URL at a time with `proxy_cache_lock`), passing the client's Host on.
fn nginx_cdn(dir: &Path, port: u16, nodes: &[SocketAddr]) -> Proc {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::create_dir_all(prefix.join("cache")).unwrap();
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let servers: String = nodes
        .iter()
        .map(|a| format!("    server {a} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    let conf = format!(
        "{user}
daemon off;
master_process off;
error_log {p}/logs/error.log warn;
pid {p}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  proxy_cache_path {p}/cache levels=1:2 keys_zone=castgate:10m max_size=256m inactive=60s use_temp_path=off;
  upstream castgate {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://castgate;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_cache castgate;
      proxy_cache_lock on;
      proxy_cache_key $uri$is_args$args;
      proxy_next_upstream error timeout http_502 http_503;
      add_header X-Cache $upstream_cache_status;
    }}
  }}
}}
",
        p = prefix.display()
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(sbin("nginx"))
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run nginx");
    let mut proc = Proc(child, "nginx");
    wait_bound(false, port, &mut proc);
    proc
}

/// The node Redis names as `key`'s owner ("" while nobody).
fn owner_of(redis: &Redis, key: &str) -> String {
    let v = redis.get(&format!("castgate:stream:{key}"));
    v.split("\"node\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn behind_haproxy_and_a_cache_the_cluster_survives_its_owner_killed() {
    let redis = Redis::start(free_port());
    let mut nodes = vec![
        node(&redis, "node1", "reject"),
        node(&redis, "node2", "reject"),
        node(&redis, "node3", "reject"),
    ];
    let dir = tempdir();
    let lb_port = free_port();
    let rtmp: Vec<SocketAddr> = nodes.iter().map(|n| n.rtmp).collect();
    let _lb = haproxy(dir.path(), lb_port, &rtmp);
    let cdn_port = free_port();
    let http: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let _cdn = nginx_cdn(dir.path(), cdn_port, &http);
    let cdn: SocketAddr = format!("127.0.0.1:{cdn_port}").parse().unwrap();
    let key = "live/ha";
    let lb_url = format!("rtmp://127.0.0.1:{lb_port}/{key}");

    // ffmpeg publishes through HAProxy: some node takes the stream.
    let mut p = publish(&fixture(0), &lb_url, &["-stream_loop", "-1"]);
    let deadline = Instant::now() + T;
    let first = loop {
        let o = owner_of(&redis, key);
        if !o.is_empty() {
            break o;
        }
        assert!(Instant::now() < deadline, "nobody took {key}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let owner_index = nodes
        .iter()
        .position(|n| n.count_log(&["publish started", key]) > 0)
        .expect("the owner logged its publish");
    assert_eq!(format!("node{}", owner_index + 1), first);
    let playlist = format!("/{key}/video.m3u8");
    for n in &nodes {
        wait_http_ok(n.http, &playlist, T);
    }
    // Through the cache: ffmpeg reads the stream, every segment and part
    // is the owner's, and what the cache keeps it serves again.
    wait_http_ok(cdn, &playlist, T);
    read_all(
        &[
            format!("http://{cdn}/{key}/index.m3u8"),
            format!("http://{cdn}/{key}/manifest.mpd"),
        ],
        4,
        110,
    );
    let pl = http_get(cdn, &playlist).text();
    let seg = listed(&pl, &format!("/{key}"))
        .into_iter()
        .rfind(|u| u.contains("seg-"))
        .expect("a segment");
    let a = http_get(cdn, &seg);
    let b = http_get(cdn, &seg);
    assert_eq!(b.header("x-cache"), Some("HIT"), "{seg}: {:?}", b.headers);
    assert!(a.body == b.body && a.body == http_get(nodes[owner_index].http, &seg).body);
    // hls.js plays through the cache.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-cdn-hls.png");
    let report = crate::browser::play("hls", &format!("http://{cdn}/{key}/index.m3u8"), 8, &shot);
    assert!(report.ok, "hls.js through the cache: {report:?}");

    // The owner dies. The encoder reconnects through HAProxy until a node
    // takes the stream (the dead owner's lease expires after lease_secs).
    let before: Vec<u64> = nodes.iter().map(|n| last_segment(n.http, key)).collect();
    let mut owner = nodes.remove(owner_index);
    let killed = Instant::now();
    let status = Command::new("kill")
        .args(["-KILL", &owner.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    owner.wait_exit(T);
    wait_child(&mut p, T, "the publisher of the killed node");
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        let o = owner_of(&redis, key);
        if !o.is_empty() && o != first {
            break o;
        }
        if p.try_wait().ok().flatten().is_some() {
            // Refused (the lease is still the dead node's) or sent to the
            // dead node: an encoder tries again.
            p = publish(&fixture(0), &lb_url, &["-stream_loop", "-1"]);
        }
        assert!(
            Instant::now() < deadline,
            "no node took {key} after {first} died"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Playback resumes from every surviving node: new segments listed.
    let lease: f64 = LEASE_SECS.parse().unwrap();
    let segment = 2.0;
    let mut resumed = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let old = before[if i >= owner_index { i + 1 } else { i }];
        let deadline = Instant::now() + Duration::from_secs(30);
        while last_segment(n.http, key) <= old {
            assert!(Instant::now() < deadline, "{} never resumed", n.http);
            std::thread::sleep(Duration::from_millis(50));
        }
        resumed.push(killed.elapsed().as_secs_f64());
    }
    let worst = resumed.iter().copied().fold(0.0, f64::max);
    println!(
        "owner {first} killed; {second} took over; playback resumed on every node after {resumed:?} s (lease {lease} s + segment {segment} s)"
    );
    // lease_secs + one segment, plus the encoder's own reconnect and start
    // (ffmpeg's process start, its first keyframe) and HAProxy's check.
    assert!(
        worst <= lease + segment + 3.0,
        "playback resumed only {worst:.2} s after the owner died"
    );
    let (frames, errors) = read_frames(&format!("http://{cdn}/{key}/index.m3u8"), 3);
    assert_eq!(
        errors.trim(),
        "",
        "decoding through the cache after the failover"
    );
    assert!(
        frames >= 80,
        "{frames} frames through the cache after the failover"
    );
    kill(p);
    for n in &nodes {
        n.assert_no_panic();
    }
}
