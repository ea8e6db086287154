//! Relays in process: the hub as the source, castgate's own server session
//! over loopback TCP as the destination (the e2e tests use real ones).

use std::net::SocketAddr;
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::hub::{HubConfig, StreamEvent};
use crate::media::{AvcConfig, Codec, CodecConfig, Frame, MediaKind};
use crate::rtmp::session::{ServerEvent, ServerSession, SessionConfig};
use crate::rtmp::status::NetStatus;

/// What the fake destination saw: (connection number, event).
type Seen = Arc<StdMutex<Vec<(usize, Seen1)>>>;

#[derive(Clone, Debug, PartialEq)]
enum Seen1 {
    Publish(String, String),
    Media(MediaKind, u32, bool),
    Stopped,
    Closed,
}

/// How the fake destination treats a publish.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    /// NetStream.Publish.BadName.
    Reject,
    /// Accepts, then never reads again (a small receive buffer).
    Stall,
    /// Accepts, then reads nothing (a small receive buffer) until
    /// [`Dest::resume`]; then sends a ping and reads on.
    Pause,
}

/// An RTMP server recording what arrives.
struct Dest {
    addr: SocketAddr,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
    /// The last connection's peer (the relay's local address).
    peer: Arc<StdMutex<Option<SocketAddr>>>,
    resume: Arc<tokio::sync::Notify>,
}

impl Dest {
    async fn start(addr: Option<SocketAddr>) -> Dest {
        Self::start_mode(addr, Mode::Accept).await
    }

    async fn start_mode(addr: Option<SocketAddr>, mode: Mode) -> Dest {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if matches!(mode, Mode::Stall | Mode::Pause) {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        socket
            .bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
            .unwrap();
        let listener: TcpListener = socket.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let peer: Arc<StdMutex<Option<SocketAddr>>> = Arc::default();
        let resume = Arc::new(tokio::sync::Notify::new());
        let (peer2, resume2) = (peer.clone(), resume.clone());
        let task = tokio::spawn(async move {
            let mut n = 0;
            let mut conns = Vec::new();
            loop {
                let (mut tcp, from) = listener.accept().await.unwrap();
                *peer2.lock().unwrap() = Some(from);
                n += 1;
                let seen = s.clone();
                let resume = resume2.clone();
                conns.push(tokio::spawn(async move {
                    let mut session = ServerSession::new(SessionConfig::default());
                    let mut buf = vec![0u8; 65536];
                    let mut stalled = false;
                    loop {
                        let out = session.take_output();
                        if !out.is_empty() && tcp.write_all(&out).await.is_err() {
                            break;
                        }
                        if stalled && mode == Mode::Pause {
                            resume.notified().await;
                            stalled = false;
                            session.send_ping(0);
                            continue;
                        }
                        if stalled {
                            // Hold the connection, read nothing.
                            std::future::pending::<()>().await;
                        }
                        let k = match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => k,
                        };
                        if session.handle_input(&buf[..k]).is_err() {
                            break;
                        }
                        while let Some(ev) = session.poll_event() {
                            let rec = match ev {
                                ServerEvent::PublishRequested {
                                    stream_id,
                                    app,
                                    name,
                                    ..
                                } => {
                                    if mode == Mode::Reject {
                                        session.reject_publish(
                                            stream_id,
                                            NetStatus::PublishBadName,
                                            "No such stream key.",
                                        );
                                    } else {
                                        session.accept_publish(stream_id);
                                    }
                                    stalled = matches!(mode, Mode::Stall | Mode::Pause);
                                    Seen1::Publish(app, name)
                                }
                                ServerEvent::Media {
                                    kind,
                                    timestamp,
                                    payload,
                                    ..
                                } => Seen1::Media(kind, timestamp, payload.first() == Some(&0x17)),
                                ServerEvent::PublishStopped { .. } => Seen1::Stopped,
                                _ => continue,
                            };
                            seen.lock().unwrap().push((n, rec));
                        }
                    }
                    seen.lock().unwrap().push((n, Seen1::Closed));
                }));
            }
        });
        Dest {
            addr,
            seen,
            task,
            peer,
            resume,
        }
    }

    fn seen(&self) -> Vec<(usize, Seen1)> {
        self.seen.lock().unwrap().clone()
    }

    /// Video and audio timestamps of frames (configs excluded: their
    /// timestamp is the last frame's).
    fn frames(&self) -> Vec<(usize, MediaKind, u32)> {
        self.seen()
            .into_iter()
            .filter_map(|(n, s)| match s {
                Seen1::Media(k, ts, _) => Some((n, k, ts)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn settings() -> RelaySettings {
    RelaySettings {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        connect_timeout: Duration::from_secs(2),
        grace: Duration::from_millis(600),
        // These relays are created like API relays and send to local test
        // destinations: loopback is allowed here (the default refuses it).
        egress: std::sync::Arc::new(
            crate::egress_policy::EgressPolicy::new(
                &["127.0.0.1/32".into(), "::1/128".into()],
                &[],
                // SRT listener relays on loopback, any, and an address
                // that cannot be bound (a test of that failure).
                &[
                    "127.0.0.1:1-65535".into(),
                    "0.0.0.0:1-65535".into(),
                    "192.0.2.1:9000".into(),
                ],
                "",
            )
            .unwrap(),
        ),
        ..RelaySettings::default()
    }
}

fn config_event() -> StreamEvent {
    StreamEvent::Config(Arc::new(CodecConfig::Avc(AvcConfig {
        record: Bytes::from_static(&[1, 100, 0, 31, 0xff, 0xe0, 0]),
        profile_idc: 100,
        constraint_flags: 0,
        level_idc: 31,
        nal_length_size: 4,
        sps: vec![],
        pps: vec![],
        width: 64,
        height: 64,
    })))
}

fn video(dts: i64, key: bool) -> StreamEvent {
    StreamEvent::Frame(Frame {
        codec: Codec::H264,
        dts,
        cts: 0,
        keyframe: key,
        data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
    })
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(relays: &Relays, id: u64) -> RelayState {
    relays.get(id).unwrap().state
}

/// The kernel's state of the TCP connection whose local address is `local`
/// (/proc/net/tcp: 1 established, 4 FIN_WAIT1, ...), if it exists.
fn tcp_state(local: SocketAddr) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let want = format!(":{:04X}", local.port());
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1)?.ends_with(&want)).then(|| u8::from_str_radix(f.get(3)?, 16).ok())?
    })
}

fn new_relay(stream: &str, target: &str) -> NewRelay {
    NewRelay {
        stream: stream.into(),
        target: target.into(),
        tls: TlsOptions::default(),
        legacy_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_the_stream_then_relays_everything_then_stops() {
    let dest = Dest::start(None).await;
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub.clone(),
        settings(),
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let url = format!("rtmp://{}/app/the-key?x=1", dest.addr);
    let info = relays.create(new_relay("live/a", &url)).unwrap();
    assert_eq!(info.state, RelayState::Waiting);
    assert_eq!(info.target, format!("rtmp://{}/app/***", dest.addr));
    let id = info.id;
    // Created before the stream: nothing connects yet (the relay's first
    // connection, below, is the one made once the stream is live).
    assert!(dest.seen().is_empty());
    assert_eq!(state(&relays, id), RelayState::Waiting);

    let publisher = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/a").unwrap(),
            "peer",
        )
        .unwrap();
    publisher.send(config_event());
    // Real media arrives over time; here it waits for the connection (a
    // relay not connected yet keeps only the current GOP).
    until("live", || state(&relays, id) == RelayState::Live).await;
    for i in 0..30 {
        publisher.send(video(i * 40, i % 10 == 0));
    }
    until("30 frames at the destination", || dest.frames().len() >= 31).await;
    assert_eq!(state(&relays, id), RelayState::Live);
    let seen = dest.seen();
    assert_eq!(seen[0], (1, Seen1::Publish("app".into(), "the-key".into())));
    // The sequence header, then every frame in order.
    let ts: Vec<u32> = dest.frames().iter().map(|f| f.2).collect();
    let want: Vec<u32> = std::iter::once(0).chain((0..30).map(|i| i * 40)).collect();
    assert_eq!(ts, want);
    let info = relays.get(id).unwrap();
    assert_eq!((info.frames_sent, info.frames_dropped), (30, 0));
    assert!(info.bytes_sent > 30 * 6);

    assert!(relays.delete(id));
    assert!(relays.get(id).is_none());
    assert!(!relays.delete(id));
    until("the destination to see the end", || {
        let s = dest.seen();
        s.contains(&(1, Seen1::Stopped)) && s.contains(&(1, Seen1::Closed))
    })
    .await;
    drop(publisher);
}

/// Deleting a relay whose destination is behind: everything written still
/// arrives, then the end of the publish. A socket closed while the
/// destination still sends (here a ping, in real servers acknowledgements)
/// answers with a reset that throws away the unsent tail; the relay keeps
/// reading until the destination has closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_relay_delivers_the_tail_to_a_slow_destination() {
    let dest = Dest::start_mode(None, Mode::Pause).await;
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub.clone(),
        settings(),
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let url = format!("rtmp://{}/app/k", dest.addr);
    let id = relays.create(new_relay("live/tail", &url)).unwrap().id;
    let publisher = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/tail").unwrap(),
            "peer",
        )
        .unwrap();
    publisher.send(config_event());
    until("live", || state(&relays, id) == RelayState::Live).await;
    // 12 KB: more than the paused destination's receive buffer takes, less
    // than the relay's send buffer, so part of it waits in the relay's kernel.
    for i in 0..20 {
        let mut data = vec![0u8; 600];
        data[..5].copy_from_slice(&[0, 0, 2, 0x54, 0x65]);
        publisher.send(StreamEvent::Frame(Frame {
            codec: Codec::H264,
            dts: i * 40,
            cts: 0,
            keyframe: i == 0,
            data: Bytes::from(data),
        }));
    }
    until("20 frames written", || {
        relays.get(id).unwrap().frames_sent == 20
    })
    .await;
    let local = dest.peer.lock().unwrap().unwrap();
    assert!(relays.delete(id));
    // The relay has sent its FIN (queued behind the data)...
    until("the relay's half-close", || tcp_state(local) == Some(4)).await;
    // ...and the destination now speaks, then reads.
    dest.resume.notify_one();
    until("the destination to see the end", || {
        dest.seen().contains(&(1, Seen1::Closed))
    })
    .await;
    assert!(
        dest.seen().contains(&(1, Seen1::Stopped)),
        "{:?}",
        dest.seen()
    );
    assert_eq!(dest.frames().len(), 21);
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backs_off_while_the_destination_is_down_then_resumes_at_a_keyframe() {
    // A port with nothing listening yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub.clone(),
        settings(),
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let id = relays
        .create(new_relay("live/b", &format!("rtmp://{addr}/app/k")))
        .unwrap()
        .id;
    let publisher = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/b").unwrap(),
            "peer",
        )
        .unwrap();
    publisher.send(config_event());
    let mut dts = 0;
    let mut feed = |n: usize, publisher: &crate::hub::Publisher| {
        for _ in 0..n {
            publisher.send(video(dts, dts % 400 == 0));
            dts += 40;
        }
    };
    feed(5, &publisher);
    until("backoff", || state(&relays, id) == RelayState::Backoff).await;
    let info = relays.get(id).unwrap();
    assert!(info.last_error.unwrap().contains("cannot connect"));
    assert!(info.next_attempt_secs.is_some());
    until("a retry", || relays.get(id).unwrap().reconnects >= 2).await;
    feed(20, &publisher);
    let dest = Dest::start(Some(addr)).await;
    until("live again", || state(&relays, id) == RelayState::Live).await;
    feed(10, &publisher);
    until("frames", || dest.frames().len() >= 5).await;
    // It starts at the last keyframe queued (dts 800), not with a backlog.
    let first_video = dest
        .seen()
        .into_iter()
        .find_map(|(_, s)| match s {
            Seen1::Media(MediaKind::Video, ts, true) if ts > 0 => Some(ts),
            _ => None,
        })
        .unwrap();
    assert_eq!(first_video, 800);
    assert!(relays.get(id).unwrap().frames_dropped >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_publisher_reconnect_within_the_grace_period() {
    let dest = Dest::start(None).await;
    let hub = Hub::new(HubConfig::default());
    // A grace period no loaded machine outlasts between the two publishers.
    let grace = RelaySettings {
        grace: Duration::from_secs(5),
        ..settings()
    };
    let relays = Relays::new(
        hub.clone(),
        grace,
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let id = relays
        .create(new_relay("live/c", &format!("rtmp://{}/app/k", dest.addr)))
        .unwrap()
        .id;
    let p1 = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/c").unwrap(),
            "one",
        )
        .unwrap();
    p1.send(config_event());
    for i in 0..10 {
        p1.send(video(i * 40, i == 0));
    }
    until("frames", || dest.frames().len() >= 11).await;
    drop(p1);
    until("the first publisher gone", || !hub.is_live("live/c")).await;
    // The second publisher's clock starts at 0 again.
    let p2 = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/c").unwrap(),
            "two",
        )
        .unwrap();
    p2.send(config_event());
    for i in 0..10 {
        p2.send(video(i * 40, i == 0));
    }
    until("frames", || dest.frames().len() >= 21).await;
    assert_eq!(state(&relays, id), RelayState::Live);
    let frames = dest.frames();
    assert!(frames.iter().all(|f| f.0 == 1), "one connection throughout");
    let ts: Vec<u32> = frames.iter().map(|f| f.2).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "time rises: {ts:?}");
    assert!(!dest.seen().iter().any(|s| s.1 == Seen1::Stopped));

    // Gone for longer than the grace period: the relay ends the publish and
    // waits for the stream again.
    drop(p2);
    until("waiting", || state(&relays, id) == RelayState::Waiting).await;
    until("the end", || dest.seen().contains(&(1, Seen1::Closed))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_relays_follow_their_streams() {
    let dest = Dest::start(None).await;
    let hub = Hub::new(HubConfig::default());
    let rule = StaticRule::parse(
        "live/*",
        &format!("rtmp://{}/relayed/{{key}}", dest.addr),
        TlsOptions::default(),
    )
    .unwrap();
    let relays = Relays::new(
        hub.clone(),
        settings(),
        vec![rule],
        crate::webhooks::Webhooks::default(),
    );
    assert!(relays.list().is_empty());
    let other = hub
        .publish(
            &crate::stream_key::StreamKey::parse("other/x").unwrap(),
            "p",
        )
        .unwrap();
    relays.on_publish("other/x");
    assert!(relays.list().is_empty(), "the pattern does not match");
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/cam").unwrap(),
            "p",
        )
        .unwrap();
    relays.on_publish("live/cam");
    relays.on_publish("live/cam");
    let list = relays.list();
    assert_eq!(list.len(), 1, "one instance per stream");
    assert_eq!(list[0].source, "config");
    let id = list[0].id;
    p.send(config_event());
    p.send(video(0, true));
    until("frames", || dest.frames().len() >= 2).await;
    assert_eq!(
        dest.seen()[0].1,
        Seen1::Publish("relayed".into(), "cam".into())
    );
    drop(p);
    // The stream ends: the instance goes with it.
    until("removal", || relays.get(id).is_none()).await;
    until("the end", || dest.seen().contains(&(1, Seen1::Closed))).await;
    drop(other);
}

#[tokio::test]
async fn bad_requests_are_refused_with_reasons() {
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub,
        RelaySettings {
            max_relays: 2,
            ..settings()
        },
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let err = |r: NewRelay| relays.create(r).unwrap_err().to_string();
    assert!(err(new_relay("nokey", "rtmp://h/a/k")).contains("unknown stream pattern"));
    assert!(err(new_relay("live/a b", "rtmp://h/a/k")).contains("unknown stream pattern"));
    assert!(err(new_relay("live/*", "rtmp://h/a/k")).contains("unknown stream pattern"));
    assert!(err(new_relay("live/a", "ftp://h/a/k")).contains("unknown scheme"));
    assert!(err(new_relay("live/a", "rtmp://h")).contains("no application"));
    // No oracle for the server's files: one answer for every unusable path.
    for path in ["/nonexistent/ca.pem", "/etc/shadow", "/etc/passwd"] {
        let e = err(NewRelay {
            tls: TlsOptions {
                ca_file: Some(path.into()),
                no_verify: false,
            },
            ..new_relay("live/a", "rtmps://h/a/k")
        });
        assert_eq!(e, crate::egress_policy::CA_FILE_REFUSED, "{path}");
    }
    let e = err(NewRelay {
        tls: TlsOptions {
            ca_file: None,
            no_verify: true,
        },
        ..new_relay("live/a", "srt://h:1?latency=5")
    });
    assert!(e.contains("rtmps:// targets only"), "{e}");
    // legacy_only is for RTMP targets, and shown.
    let e = err(NewRelay {
        legacy_only: true,
        ..new_relay("live/a", "srt://h:1?latency=5")
    });
    assert!(e.contains("legacy_only applies to rtmp://"), "{e}");
    let legacy = relays
        .create(NewRelay {
            legacy_only: true,
            ..new_relay("live/b", "rtmp://h/a/k")
        })
        .unwrap();
    assert!(legacy.legacy_only);
    assert!(relays.delete(legacy.id));
    assert!(
        StaticRule::parse("live/*", "srt://h:1", TlsOptions::default())
            .unwrap()
            .with_legacy_only(true)
            .is_err()
    );
    let a = relays.create(new_relay("live/a", "rtmp://h/a/k")).unwrap();
    assert!(matches!(
        relays.create(new_relay("live/a", "rtmp://h/a/k")),
        Err(CreateError::Duplicate(id)) if id == a.id
    ));
    relays.create(new_relay("live/a", "rtmp://h/a/k2")).unwrap();
    assert!(matches!(
        relays.create(new_relay("live/a", "rtmp://h/a/k3")),
        Err(CreateError::TooMany(2))
    ));
    assert!(relays.delete(a.id));
    relays.create(new_relay("live/a", "rtmp://h/a/k3")).unwrap();
}

#[test]
fn errors_are_scrubbed_of_secrets() {
    let hub = Hub::new(HubConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let relays = Relays::new(
        hub,
        settings(),
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let id = relays
        .create(new_relay("live/a", "rtmp://h/a/SECRET?tok=T0KEN"))
        .unwrap()
        .id;
    let relay = relays.inner.relays().get(&id).cloned().unwrap();
    let e = relay.error("NetStream.Publish.BadName SECRET?tok=T0KEN is taken; SECRET again");
    assert!(!e.contains("SECRET") && !e.contains("T0KEN"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_destination_loses_frames_by_policy_and_slows_nothing() {
    let stalled = Dest::start_mode(None, Mode::Stall).await;
    let healthy = Dest::start(None).await;
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub.clone(),
        RelaySettings {
            write_timeout: Duration::from_millis(1500),
            queue: crate::hub::QueueLimits {
                soft_bytes: 1024 * 1024,
                hard_bytes: 2048 * 1024,
            },
            ..settings()
        },
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let slow = relays
        .create(new_relay(
            "live/s",
            &format!("rtmp://{}/app/k", stalled.addr),
        ))
        .unwrap()
        .id;
    let fine = relays
        .create(new_relay(
            "live/s",
            &format!("rtmp://{}/app/k", healthy.addr),
        ))
        .unwrap()
        .id;
    let p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/s").unwrap(),
            "peer",
        )
        .unwrap();
    p.send(config_event());
    until("both live", || {
        state(&relays, slow) == RelayState::Live && state(&relays, fine) == RelayState::Live
    })
    .await;
    // 200 frames of 64 KiB (12.5 MiB) at 100 fps: far more than socket
    // buffers and the queue hold.
    let big = Bytes::from(vec![0u8; 64 * 1024]);
    // `send` is synchronous and never waits for a subscriber: a stalled
    // destination can only cost it frames (counted below), never time.
    for i in 0..200i64 {
        assert!(p.send(StreamEvent::Frame(Frame {
            codec: Codec::H264,
            dts: i * 40,
            cts: 0,
            keyframe: i % 25 == 0,
            data: big.clone(),
        })));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The healthy destination got everything.
    until("every frame at the healthy destination", || {
        healthy.frames().len() >= 201
    })
    .await;
    assert_eq!(relays.get(fine).unwrap().frames_dropped, 0);
    // The stalled one lost frames by policy, then timed out and is retried.
    until("the stalled relay to back off", || {
        relays.get(slow).unwrap().reconnects >= 1
    })
    .await;
    let info = relays.get(slow).unwrap();
    assert!(info.frames_dropped > 50, "{info:?}");
    assert!(
        info.last_error
            .as_deref()
            .unwrap_or("")
            .contains("to accept a write"),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_relays_and_unusable_addresses_fail() {
    let dest = Dest::start_mode(None, Mode::Reject).await;
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub.clone(),
        RelaySettings {
            max_refusals: 3,
            ..settings()
        },
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    let refused = relays
        .create(new_relay(
            "live/f",
            &format!("rtmp://{}/app/KEY123", dest.addr),
        ))
        .unwrap()
        .id;
    // 192.0.2.1 (TEST-NET-1) is no address of this machine.
    let unbindable = relays
        .create(new_relay("live/f", "srt://192.0.2.1:9000?mode=listener"))
        .unwrap()
        .id;
    let _p = hub
        .publish(
            &crate::stream_key::StreamKey::parse("live/f").unwrap(),
            "peer",
        )
        .unwrap();
    until("failed", || state(&relays, refused) == RelayState::Failed).await;
    let info = relays.get(refused).unwrap();
    let e = info.last_error.unwrap();
    assert!(e.contains("BadName") && e.contains("3 times"), "{e}");
    assert!(!e.contains("KEY123"), "{e}");
    assert_eq!(info.reconnects, 2);
    until("failed", || {
        state(&relays, unbindable) == RelayState::Failed
    })
    .await;
    assert!(relays
        .get(unbindable)
        .unwrap()
        .last_error
        .unwrap()
        .contains("192.0.2.1:9000"));
    // Failed is final (the relay's task has ended): it stays, visible,
    // until deleted.
    assert_eq!(state(&relays, refused), RelayState::Failed);
    assert!(relays.list().iter().any(|r| r.id == refused));
    assert!(relays.delete(refused) && relays.delete(unbindable));
}

/// The default egress policy refuses internal targets from the API at
/// creation, names the policy, and never dials them.
#[tokio::test]
async fn the_default_egress_policy_refuses_internal_targets_at_creation() {
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub,
        RelaySettings::default(),
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    for target in [
        "rtmp://169.254.169.254/app/k",
        "rtmp://metadata.google.internal/app/k",
        "rtmp://10.0.0.1:6379/app/k",
        "rtmp://[fd00:ec2::254]/app/k",
        "rtmp://2130706433/app/k",
        "rtmp://0x7f000001/app/k",
        "rtmp://0177.0.0.1/app/k",
        "rtmp://127.1/app/k",
        "rtmp://0.0.0.0/app/k",
        "rtmps://[::ffff:127.0.0.1]/app/k",
        "srt://100.64.0.1:9000",
        "srt://0.0.0.0:9999?mode=listener",
        "srt://:22?mode=listener",
    ] {
        match relays.create(new_relay("live/a", target)) {
            Err(CreateError::Egress(e)) => assert!(e.contains("egress"), "{target}: {e}"),
            other => panic!("{target}: {other:?}"),
        }
    }
    assert!(relays.list().is_empty());
    // Names are resolved and checked at connect time instead.
    relays
        .create(new_relay("live/a", "rtmp://localhost/app/k"))
        .unwrap();
}

/// A relay of a stream into castgate itself under its own name (its own
/// RTMP listener) is refused even where loopback is allowed; another name
/// is a copy, not a takeover.
#[tokio::test]
async fn a_relay_into_castgate_itself_is_refused() {
    let hub = Hub::new(HubConfig::default());
    let relays = Relays::new(
        hub,
        settings(),
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    relays.set_own_listeners(vec!["127.0.0.1:19350".parse().unwrap()]);
    for target in [
        "rtmp://127.0.0.1:19350/live/a",
        "rtmp://0.0.0.0:19350/live/a",
    ] {
        match relays.create(new_relay("live/a", target)) {
            Err(CreateError::Egress(e)) => assert!(e.contains("own listener"), "{target}: {e}"),
            other => panic!("{target}: {other:?}"),
        }
    }
    relays
        .create(new_relay("live/a", "rtmp://127.0.0.1:19350/live/copy"))
        .unwrap();
}
