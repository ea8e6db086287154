use std::time::Duration;

use super::supervisor::{next, End, Next};
use super::*;

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);

#[test]
fn failures_back_off_exponentially_and_an_ended_upstream_reconnects_at_the_start() {
    let mut attempt = 0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        match next(&End::Failed("down".into()), &mut attempt, INITIAL, MAX) {
            Next::Backoff(d) => delays.push(d),
            other => panic!("a failure backs off, got {other:?}"),
        }
    }
    assert_eq!(attempt, 8);
    // initial * 2^n with jitter in [0.75, 1.25), capped at max.
    for (n, d) in delays.iter().enumerate() {
        let base = INITIAL.saturating_mul(1 << n).min(MAX);
        assert!(*d >= base.mul_f64(0.75).min(MAX) && *d <= MAX, "{n}: {d:?}");
    }
    assert!(delays[7] > delays[0] * 10, "{delays:?}");
    // The publisher upstream restarting: a reconnect at the first delay,
    // and the failure count starts again.
    match next(
        &End::Ended("unpublished".into()),
        &mut attempt,
        INITIAL,
        MAX,
    ) {
        Next::Backoff(d) => assert!(d <= INITIAL.mul_f64(1.25), "{d:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(attempt, 0);
}

#[test]
fn stop_and_permanent_errors_exit_and_unwatched_goes_idle() {
    let mut attempt = 3;
    assert_eq!(next(&End::Stopped, &mut attempt, INITIAL, MAX), Next::Exit);
    assert_eq!(
        next(&End::Permanent("egress".into()), &mut attempt, INITIAL, MAX),
        Next::Exit
    );
    assert_eq!(
        next(&End::Unwatched, &mut attempt, INITIAL, MAX),
        Next::Idle
    );
    assert_eq!(attempt, 0);
}

#[test]
fn urls_are_redacted_and_errors_scrubbed() {
    let (key, t) = parse_source(
        "live/cam1",
        "rtmp://up.example:1936/app/SECRETKEY?token=T0KEN",
    )
    .unwrap();
    assert_eq!(key.as_str(), "live/cam1");
    assert_eq!(t.redacted(), "rtmp://up.example:1936/app/***");
    assert_eq!(
        t.scrub("NetStream.Play.Failed SECRETKEY?token=T0KEN and SECRETKEY"),
        "NetStream.Play.Failed *** and ***"
    );
    let (_, t) = parse_source(
        "live/cam2",
        "srt://10.0.0.1:9000?streamid=%23!%3A%3Ar%3Dlive%2Fx%2Cm%3Drequest&passphrase=verysecretpass&latency=200",
    )
    .unwrap();
    let shown = t.redacted();
    assert!(
        !shown.contains("verysecretpass") && !shown.contains("live/x"),
        "{shown}"
    );
    assert_eq!(
        shown,
        "srt://10.0.0.1:9000?streamid=***&passphrase=***&pbkeylen=16&latency=200"
    );
    assert_eq!(
        t.scrub("rejected #!::r=live/x,m=request with verysecretpass"),
        "rejected *** with ***"
    );
}

#[test]
fn bad_sources_are_refused_without_echoing_secrets() {
    for (stream, url, want) in [
        ("live/a", "srt://:9000?mode=listener", "calls out"),
        ("live/a", "http://x/y", "unknown scheme"),
        ("nope", "rtmp://h/app/k", "bad stream"),
        ("live/a", "rtmp://h/app", "no stream key"),
        ("live/a", "srt://h:1?passphrase=short", "passphrase"),
    ] {
        let e = parse_source(stream, url).unwrap_err();
        assert!(e.contains(want), "{url}: {e}");
        assert!(!e.contains("short"), "{e}");
    }
}

#[test]
fn static_entries_are_checked_and_one_stream_has_one_source() {
    let entry = |stream: &str, url: &str| StaticSource {
        stream: stream.into(),
        url: url.into(),
        on_demand: false,
    };
    check_static(&[
        entry("live/a", "rtmp://h/app/k"),
        entry("live/b", "srt://h:9000"),
    ])
    .unwrap();
    let e = check_static(&[
        entry("live/a", "rtmp://h/app/k"),
        entry("live/a", "srt://h:9000"),
    ])
    .unwrap_err();
    assert_eq!(e.key, "sources[1]");
    let e = check_static(&[
        entry("live/a", "rtmp://h/app/SECRET?x=1"),
        entry("live/b", "ftp://h"),
    ])
    .unwrap_err();
    assert!(
        e.why.contains("unknown scheme") && !e.why.contains("SECRET"),
        "{e}"
    );
}

mod supervised {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::*;
    use crate::egress::RelaySettings;
    use crate::hub::HubConfig;
    use crate::package::segmenter::SegmenterConfig;
    use crate::package::service::{Packager, PackagerConfig, Store};

    fn sources(on_demand_idle: Duration) -> (Sources, Hub) {
        let hub = Hub::new(HubConfig::default());
        let packager = Packager::new(
            hub.clone(),
            Store::default(),
            PackagerConfig {
                segmenter: SegmenterConfig::default(),
                dvr_ms: 0,
                dvr_dir: None,
                dvr_event: false,
                grace: Duration::from_millis(20),
                retention: Duration::from_secs(60),
            },
        );
        let relays = Relays::new(
            hub.clone(),
            RelaySettings {
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_millis(100),
                connect_timeout: Duration::from_secs(2),
                egress: Arc::new(crate::egress_policy::EgressPolicy::open()),
                ..RelaySettings::default()
            },
            Vec::new(),
            Webhooks::default(),
        );
        let registry = Registry::new(
            hub.clone(),
            packager,
            relays.clone(),
            Default::default(),
            Default::default(),
            Webhooks::default(),
        );
        let deps = Deps {
            hub: hub.clone(),
            registry,
            relays,
            events: Webhooks::default(),
            shutdown: Shutdown::never(),
        };
        let settings = Settings {
            on_demand_idle,
            ..Settings::default()
        };
        (Sources::new(deps, settings, &[]), hub)
    }

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    async fn wait(
        s: &Sources,
        id: u64,
        what: &str,
        pred: impl Fn(&SourceInfo) -> bool,
    ) -> SourceInfo {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let info = s.get(id).expect("the source");
            if pred(&info) {
                return info;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An always-on source whose server is down backs off and retries,
    /// counting reconnects, with the error and never the key.
    #[tokio::test]
    async fn a_failing_source_backs_off_and_retries_with_a_scrubbed_error() {
        let (s, _hub) = sources(Duration::from_millis(100));
        let port = closed_port();
        let url = format!("rtmp://127.0.0.1:{port}/live/SECRETKEY?t=TOKEN");
        let info = s
            .create(NewSource {
                stream: "live/a".into(),
                url,
                on_demand: false,
            })
            .unwrap();
        assert_eq!(info.url, format!("rtmp://127.0.0.1:{port}/live/***"));
        let info = wait(&s, info.id, "retried", |i| i.reconnects >= 2).await;
        let e = info.last_error.unwrap();
        assert!(e.contains("cannot connect"), "{e}");
        assert!(!e.contains("SECRETKEY") && !e.contains("TOKEN"), "{e}");
        assert!(matches!(
            info.state,
            SourceState::Backoff | SourceState::Connecting
        ));
        let dup = s.create(NewSource {
            stream: "live/a".into(),
            url: "rtmp://127.0.0.1:1/live/other".into(),
            on_demand: false,
        });
        assert!(matches!(dup, Err(CreateError::Duplicate(id)) if id == info.id));
        assert!(s.delete(info.id));
        assert!(s.get(info.id).is_none());
    }

    /// On demand: idle until a hub subscriber (a player) comes, trying
    /// while it stays, idle again once it left; an HLS request wakes it too.
    #[tokio::test]
    async fn an_on_demand_source_follows_its_viewers() {
        let (s, hub) = sources(Duration::from_millis(100));
        let port = closed_port();
        let info = s
            .create(NewSource {
                stream: "live/od".into(),
                url: format!("rtmp://127.0.0.1:{port}/live/x"),
                on_demand: true,
            })
            .unwrap();
        let id = info.id;
        assert_eq!(info.state, SourceState::Idle);
        assert!(s.on_demand("live/od") && !s.on_demand("live/other"));
        // Nobody watches: it stays idle (no attempt).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let info = s.get(id).unwrap();
        assert_eq!(
            (info.state, info.reconnects, info.last_error),
            (SourceState::Idle, 0, None)
        );
        let player = hub.subscribe("live/od");
        wait(&s, id, "tried for the player", |i| i.last_error.is_some()).await;
        drop(player);
        wait(&s, id, "idle after the player", |i| {
            i.state == SourceState::Idle
        })
        .await;
        let tries = s.get(id).unwrap().reconnects;
        // An HLS request wakes it (and says it is starting).
        assert!(s.touch("live/od"));
        assert!(!s.touch("live/nothing"));
        wait(&s, id, "tried for HLS", |i| i.reconnects > tries).await;
        wait(&s, id, "idle after HLS", |i| i.state == SourceState::Idle).await;
        assert!(s.delete(id));
    }
}
