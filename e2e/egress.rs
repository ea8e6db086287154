//! The egress policy (SSRF guard) against a live castgate: API relays to
//! loopback in disguise never reach a local sink under the default policy,
//! do with `egress.allow`; internal targets are refused at creation (on a
//! stream never published, so nothing is ever dialled); a relay of a stream
//! into castgate itself under its own name is refused; `tls_ca_file`
//! answers alike for every unusable path.
//!
//! Only loopback is ever dialled: the non-loopback targets are refused by
//! the API before any relay exists.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;
use crate::relay::{api, create_relay, in_state, wait_relay, Proc, T};

/// A loopback TCP listener that counts the connections reaching it.
struct Sink {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start() -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a sink");
        l.set_nonblocking(true).expect("nonblocking sink");
        let port = l.local_addr().expect("sink address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        held.push(c);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Sink {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until a connection arrived (bounded).
    fn wait_connection(&self, what: &str) {
        let deadline = Instant::now() + T;
        while self.accepted() == 0 {
            assert!(
                Instant::now() < deadline,
                "no connection reached the sink: {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a loopback address can be spelled in a target URL.
const DISGUISES: [&str; 6] = [
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "localhost",
    "0.0.0.0",
];

fn post_relay(server: &Castgate, body: Value) -> (u16, Value) {
    api(server, "POST", "/relays", Some(&body), None)
}

/// Default policy: numeric spellings of loopback are refused at creation
/// (400, naming the policy); a name (`localhost`) passes creation and is
/// refused when resolved, at connect time, with the stream live. The sink
/// sees no connection at all.
#[test]
fn disguised_loopback_targets_never_reach_a_local_sink() {
    require("ffmpeg");
    let sink = Sink::start();
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "2")]);
    for host in DISGUISES.iter().filter(|h| **h != "localhost") {
        let target = format!("rtmp://{host}:{}/app/k", sink.port);
        let (status, r) = post_relay(&server, json!({"stream": "live/egress", "target": target}));
        assert_eq!(status, 400, "{target}: {r}");
        let e = r["error"].as_str().unwrap_or_default();
        assert!(e.contains("egress policy refuses"), "{target}: {r}");
    }
    let by_name = create_relay(
        &server,
        json!({"stream": "live/egress",
               "target": format!("rtmp://localhost:{}/app/SECRETkey42", sink.port)}),
    );
    let id = by_name["id"].as_u64().unwrap();
    let _publisher = Proc(
        publish(
            &fixture(1),
            &server.url("live/egress"),
            &["-stream_loop", "-1"],
        ),
        "publisher",
    );
    let r = wait_relay(&server, id, "failed", in_state("failed"));
    let e = r["last_error"].as_str().unwrap_or_default();
    assert!(e.contains("egress policy refuses localhost ("), "{r}");
    let line = server.wait_log_all(&["relay refused by the egress policy", "refused="], T);
    assert!(!line.contains("SECRETkey42"), "{line}");
    assert_eq!(sink.accepted(), 0, "castgate dialled a refused target");
    server.assert_no_panic();
}

/// With `egress.allow = "127.0.0.1/32"` the same disguised targets connect
/// (each to its own sink): the check follows the resolved address, not the
/// spelling. `0.0.0.0` stays refused (unspecified is not 127.0.0.1/32).
#[test]
fn allowed_loopback_is_reached_in_every_spelling() {
    require("ffmpeg");
    let server = Castgate::start(&[
        ("CASTGATE__PACKAGE__GRACE_SECS", "2"),
        ("CASTGATE__EGRESS__ALLOW", "127.0.0.1/32"),
    ]);
    let mut sinks = Vec::new();
    for host in DISGUISES.iter().filter(|h| **h != "0.0.0.0") {
        let sink = Sink::start();
        create_relay(
            &server,
            json!({"stream": "live/allowed",
                   "target": format!("rtmp://{host}:{}/app/k", sink.port)}),
        );
        sinks.push((host, sink));
    }
    let zero = Sink::start();
    let (status, r) = post_relay(
        &server,
        json!({"stream": "live/allowed", "target": format!("rtmp://0.0.0.0:{}/app/k", zero.port)}),
    );
    assert_eq!(status, 400, "{r}");
    let _publisher = Proc(
        publish(
            &fixture(1),
            &server.url("live/allowed"),
            &["-stream_loop", "-1"],
        ),
        "publisher",
    );
    for (host, sink) in &sinks {
        sink.wait_connection(host);
    }
    assert_eq!(zero.accepted(), 0);
    server.assert_no_panic();
}

/// Internal targets from the API are refused with a 400 and a reason, on a
/// stream that is never published (nothing is dialled either way); SRT
/// listener relays only on `egress.srt_listen`; `tls_ca_file` gives one
/// answer for a secret file and a missing one.
#[test]
fn internal_targets_and_ca_files_are_refused_at_creation() {
    let server = Castgate::start(&[("CASTGATE__EGRESS__SRT_LISTEN", "127.0.0.1:9000-9100")]);
    for (target, reason) in [
        ("rtmp://169.254.169.254/app/k", "link-local"),
        ("rtmp://10.0.0.1:6379/app/k", "private"),
        ("rtmp://[fd00:ec2::254]/app/k", "unique-local"),
        ("rtmp://metadata.google.internal/app/k", "metadata"),
        ("rtmps://[::ffff:169.254.169.254]/app/k", "link-local"),
        ("srt://100.64.0.1:9000?streamid=x", "carrier-grade NAT"),
        ("srt://0.0.0.0:9999?mode=listener", "egress.srt_listen"),
        ("srt://:22?mode=listener", "egress.srt_listen"),
        ("srt://127.0.0.1:9200?mode=listener", "egress.srt_listen"),
    ] {
        let (status, r) = post_relay(&server, json!({"stream": "live/never", "target": target}));
        assert_eq!(status, 400, "{target}: {r}");
        let e = r["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("egress policy refuses") && e.contains(reason),
            "{target}: {r}"
        );
    }
    // The log names the stream and the refused address.
    server.wait_log_all(
        &[
            "relay refused by the egress policy at creation",
            "live/never",
            "refused=169.254.169.254",
        ],
        T,
    );
    // Inside the configured range: created (nothing dials; it listens on
    // loopback for a receiver that never comes).
    let listener = create_relay(
        &server,
        json!({"stream": "live/never", "target": "srt://127.0.0.1:9050?mode=listener"}),
    );
    let (_, list) = api(&server, "GET", "/relays", None, None);
    assert_eq!(list["relays"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        api(
            &server,
            "DELETE",
            &format!("/relays/{}", listener["id"]),
            None,
            None
        )
        .0,
        204
    );

    let answers: Vec<(u16, Value)> = ["/etc/shadow", "/nonexistent", "/etc/passwd"]
        .iter()
        .map(|path| {
            post_relay(
                &server,
                json!({"stream": "live/never", "target": "rtmps://ingest.example/app/k",
                       "tls_ca_file": path}),
            )
        })
        .collect();
    assert_eq!(answers[0].0, 422, "{:?}", answers[0]);
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "tls_ca_file answers differ: {answers:?}"
    );
    server.assert_no_panic();
}

/// A relay of `live/loop` to castgate's own RTMP listener as `live/loop`
/// would take the stream over from its publisher: refused at creation when
/// the address is literal, at connect time when it is a name, even with
/// loopback allowed. The publisher stays the only one.
#[test]
fn a_relay_into_its_own_stream_is_refused() {
    require("ffmpeg");
    let server = Castgate::start(&[
        ("CASTGATE__PACKAGE__GRACE_SECS", "2"),
        ("CASTGATE__EGRESS__ALLOW", "127.0.0.1/32"),
    ]);
    let port = server.rtmp.port();
    for host in ["127.0.0.1", "127.1", "0.0.0.0"] {
        let target = format!("rtmp://{host}:{port}/live/loop");
        let (status, r) = post_relay(&server, json!({"stream": "live/loop", "target": target}));
        assert_eq!(status, 400, "{target}: {r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap_or_default()
                .contains("own listener"),
            "{r}"
        );
    }
    let named = create_relay(
        &server,
        json!({"stream": "live/loop", "target": format!("rtmp://localhost:{port}/live/loop")}),
    );
    let mut publisher = Proc(
        publish(
            &fixture(1),
            &server.url("live/loop"),
            &["-stream_loop", "-1"],
        ),
        "publisher",
    );
    let r = wait_relay(
        &server,
        named["id"].as_u64().unwrap(),
        "failed",
        in_state("failed"),
    );
    assert!(
        r["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("own listener"),
        "{r}"
    );
    server.wait_log_all(&["relay refused by the egress policy"], T);
    assert_eq!(
        server.count_log(&["publish started", "live/loop"]),
        1,
        "a second publisher appeared on live/loop"
    );
    assert!(
        publisher.0.try_wait().ok().flatten().is_none(),
        "the real publisher was cut off"
    );
    server.assert_no_panic();
}

/// Webhook URLs in the config file are the operator's: trusted, so
/// `check-config` takes one on loopback or the metadata address (nothing is
/// dialled here). A bad `[egress]` entry is named.
#[test]
fn check_config_trusts_operator_webhooks_and_names_bad_egress_entries() {
    use crate::harness::{tempdir, OutputWithin, RUN_LIMIT};
    let run = |body: &str| {
        let dir = tempdir();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, body).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_castgate"))
            .args(["check-config", f.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .output_within(RUN_LIMIT)
            .expect("cannot run castgate")
    };
    let out = run(
        "[webhooks]\nurls = [\"http://127.1:9/hook\", \"http://169.254.169.254/hook\"]\nsecret = \"s\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Accepted, with the metadata address named (and the loopback one not).
    assert!(
        err.contains("warning: webhooks.urls: http://169.254.169.254")
            && err.contains("cloud metadata"),
        "{err}"
    );
    assert!(!err.contains("127.1"), "{err}");
    for (body, named) in [
        ("[egress]\nallow = [\"10.0.0.0/33\"]\n", "egress.allow"),
        (
            "[egress]\nsrt_listen = [\"0.0.0.0:22-\"]\n",
            "egress.srt_listen",
        ),
    ] {
        let out = run(body);
        assert!(!out.status.success(), "{body:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{body:?}: {err}");
    }
}

/// Relays granted by an auth-webhook answer are untrusted like API ones:
/// literal internal targets are not started, a name is refused at connect
/// time, and the local sink sees no connection.
#[test]
fn auth_webhook_relays_are_checked_like_api_relays() {
    require("ffmpeg");
    let sink = Sink::start();
    let grant = format!(
        r#"{{"relays":["rtmp://169.254.169.254/app/x","rtmp://2130706433:{p}/app/y","rtmp://localhost:{p}/app/GRANTkey77"]}}"#,
        p = sink.port
    );
    let hook = crate::ops::Receiver::start(Arc::new(move |_r: &crate::ops::Received| {
        (200, grant.clone())
    }));
    let server = Castgate::start(&[
        ("CASTGATE__PACKAGE__GRACE_SECS", "2"),
        ("CASTGATE__AUTH__PUBLISH", "webhook"),
        ("CASTGATE__AUTH__WEBHOOK_URL", &hook.url("/auth")),
        ("CASTGATE__AUTH__WEBHOOK_TIMEOUT_SECS", "5"),
    ]);
    let _publisher = Proc(
        publish(
            &fixture(1),
            &server.url("live/granted"),
            &["-stream_loop", "-1"],
        ),
        "publisher",
    );
    assert!(
        server.wait_count(
            &[
                "relay from the auth webhook not started",
                "egress policy refuses"
            ],
            2,
            T
        ),
        "two granted relays should be refused at creation:\n{}",
        server.lines_with(&["relay"]).join("\n")
    );
    // The grant is applied in order: the third relay is attached after the
    // two refusals are logged.
    assert!(
        server.wait_count(&["relay attached by the auth webhook"], 1, T),
        "the allowed-looking relay should be attached:\n{}",
        server.lines_with(&["relay"]).join("\n")
    );
    let (_, list) = api(&server, "GET", "/relays", None, None);
    let relays = list["relays"].as_array().cloned().unwrap_or_default();
    assert_eq!(relays.len(), 1, "{list}");
    let id = relays[0]["id"].as_u64().unwrap();
    let r = wait_relay(&server, id, "failed", in_state("failed"));
    assert!(
        r["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("egress policy refuses localhost"),
        "{r}"
    );
    assert!(
        server.count_log(&["GRANTkey77"]) == 0,
        "a stream key reached the log"
    );
    assert_eq!(sink.accepted(), 0, "castgate dialled a refused target");
    server.assert_no_panic();
}
