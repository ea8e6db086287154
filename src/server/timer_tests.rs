//! The connection's timers on a paused tokio clock: a real [`Connection`]
//! over an in-memory pipe, driven by the crate's RTMP client session, with
//! time moved by hand (as `mini-redis`'s tests do).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::{advance, Instant};

use super::{Connection, EndReason, ServerContext};
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientSession};
use crate::rtmp::handshake::{ClientHandshake, HandshakeStatus};

const HANDSHAKE: Duration = Duration::from_secs(5);
const SESSION_IDLE: Duration = Duration::from_secs(7);
const PUBLISHER_IDLE: Duration = Duration::from_secs(20);
const PLAY_WAIT: Duration = Duration::from_secs(30);
const MS: Duration = Duration::from_millis(1);

fn context() -> Arc<ServerContext> {
    let mut rtmp: super::Settings = crate::settings::tests::default_section("rtmp");
    rtmp.handshake_timeout = HANDSHAKE;
    rtmp.session_idle = SESSION_IDLE;
    rtmp.idle_timeout = PUBLISHER_IDLE;
    rtmp.play_wait = PLAY_WAIT;
    ServerContext::for_tests(rtmp)
}

/// Starts a connection on one end of a pipe, the other end being the
/// client's, and lets it arm its timers (no time passes).
async fn serve(ctx: &Arc<ServerContext>) -> (JoinHandle<EndReason>, DuplexStream) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut conn = Connection::new(ctx.clone(), "127.0.0.1:1".parse().unwrap(), "rtmp", None);
    let conn = tokio::spawn(async move { conn.run(server).await });
    assert!(!ended(&conn).await);
    (conn, client)
}

/// Lets the connection act on what time it is now, then says whether it
/// has ended.
async fn ended(conn: &JoinHandle<EndReason>) -> bool {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    conn.is_finished()
}

/// The crate's client session on the client end of the pipe.
struct Client {
    io: DuplexStream,
    session: ClientSession,
}

impl Client {
    fn new(io: DuplexStream, mode: ClientMode) -> Client {
        let mut session = ClientSession::new(ClientConfig {
            app: "live".into(),
            stream: "cam".into(),
            tc_url: "rtmp://localhost/live".into(),
            mode,
            ..ClientConfig::default()
        });
        session.start();
        Client { io, session }
    }

    /// Sends what the session has to say and reads the server until an
    /// event `want` accepts. What the session queues in answer to that
    /// event is not sent: the server sees nothing more.
    async fn until(&mut self, want: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let out = self.session.take_output();
            self.io.write_all(&out).await.unwrap();
            let n = self.io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            self.session.handle_input(&buf[..n]).unwrap();
            while let Some(ev) = self.session.poll_event() {
                if want(&ev) {
                    return ev;
                }
            }
        }
    }

    /// Reads to the end of the connection; the last failure the server sent.
    async fn failure_then_close(&mut self) -> Option<(String, String)> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut failed = None;
        loop {
            let n = self.io.read(&mut buf).await.unwrap();
            if n == 0 {
                return failed;
            }
            self.session.handle_input(&buf[..n]).unwrap();
            while let Some(ev) = self.session.poll_event() {
                if let ClientEvent::Failed { code, description } = ev {
                    failed = Some((code, description));
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_closed_at_the_handshake_deadline() {
    let ctx = context();
    let t0 = Instant::now();
    let (conn, _client) = serve(&ctx).await;
    advance(HANDSHAKE - MS).await;
    assert!(!ended(&conn).await, "closed before the deadline");
    advance(MS).await;
    assert!(ended(&conn).await, "open past the deadline");
    let reason = conn.await.unwrap();
    assert!(
        matches!(reason, EndReason::HandshakeTimeout(d) if d == HANDSHAKE),
        "{reason}"
    );
    assert_eq!(t0.elapsed(), HANDSHAKE);
}

/// The deadline covers `connect` too: a handshake alone does not stop it.
#[tokio::test(start_paused = true)]
async fn handshake_without_connect_is_closed_at_the_handshake_deadline() {
    let ctx = context();
    let (conn, mut io) = serve(&ctx).await;
    let mut hs = ClientHandshake::new_simple();
    let mut out = Vec::new();
    hs.start(&mut out);
    io.write_all(&out).await.unwrap();
    let mut input = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed during the handshake");
        input.extend_from_slice(&buf[..n]);
        let mut c2 = Vec::new();
        let (used, status) = hs.process(&input, &mut c2).unwrap();
        input.drain(..used);
        io.write_all(&c2).await.unwrap();
        if status == HandshakeStatus::Done {
            break;
        }
    }
    advance(Duration::from_secs(4)).await;
    assert!(!ended(&conn).await);
    advance(Duration::from_secs(1)).await;
    let reason = conn.await.unwrap();
    assert!(
        matches!(reason, EndReason::HandshakeTimeout(d) if d == HANDSHAKE),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn connected_session_doing_nothing_is_closed_after_session_idle() {
    let ctx = context();
    let (conn, io) = serve(&ctx).await;
    let mut client = Client::new(io, ClientMode::Publish);
    // Connected; createStream and publish are never sent.
    client.until(|e| *e == ClientEvent::Connected).await;
    // Past the handshake deadline: connected, that one no longer runs.
    advance(SESSION_IDLE - MS).await;
    assert!(!ended(&conn).await, "closed before session_idle");
    advance(MS).await;
    let reason = conn.await.unwrap();
    assert!(
        matches!(reason, EndReason::IdleSession(d) if d == SESSION_IDLE),
        "{reason}"
    );
    assert_eq!(client.failure_then_close().await, None);
}

/// A publisher that sends nothing is ended by `rtmp.idle_timeout_secs`,
/// and told why; `session_idle` (shorter) does not apply while publishing.
#[tokio::test(start_paused = true)]
async fn publisher_sending_no_media_is_ended_after_the_idle_timeout() {
    let ctx = context();
    let (conn, io) = serve(&ctx).await;
    let mut client = Client::new(io, ClientMode::Publish);
    client
        .until(|e| matches!(e, ClientEvent::Publishing { .. }))
        .await;
    assert!(ctx
        .hub
        .stream("live/cam")
        .is_some_and(|s| s.publisher.is_some()));
    advance(PUBLISHER_IDLE - MS).await;
    assert!(!ended(&conn).await, "closed before the idle timeout");
    advance(MS).await;
    let reason = conn.await.unwrap();
    assert!(
        matches!(reason, EndReason::IdlePublisher(d) if d == PUBLISHER_IDLE),
        "{reason}"
    );
    assert_eq!(
        client.failure_then_close().await,
        Some((
            "NetStream.Publish.Idle".to_string(),
            "No media received.".to_string()
        ))
    );
}

/// A player of a stream nobody publishes waits `rtmp.play_wait_secs`, then
/// is refused and closed.
#[tokio::test(start_paused = true)]
async fn player_waits_for_a_publisher_until_the_play_wait_ends() {
    let ctx = context();
    let t0 = Instant::now();
    let (conn, io) = serve(&ctx).await;
    let mut client = Client::new(io, ClientMode::Play);
    // Nothing answers `play` until a publisher comes: the clock runs on
    // by itself only once every task waits, so to the play wait's end.
    let failed = client
        .until(|e| matches!(e, ClientEvent::Failed { .. }))
        .await;
    assert_eq!(
        failed,
        ClientEvent::Failed {
            code: "NetStream.Play.StreamNotFound".into(),
            description: "live/cam is not being published.".into(),
        }
    );
    assert_eq!(t0.elapsed(), PLAY_WAIT);
    let reason = conn.await.unwrap();
    assert!(
        matches!(&reason, EndReason::PlayWaitExpired(key, d) if key == "live/cam" && *d == PLAY_WAIT),
        "{reason}"
    );
}
