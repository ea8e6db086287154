//! The client session against castgate's own server session, in memory,
//! with the bytes cut at every size.

use super::*;
use crate::rtmp::session::{ServerEvent, ServerSession, SessionConfig};

/// Moves bytes both ways, `piece` bytes at a time, until both are quiet.
/// The server accepts every publish and play.
pub(crate) fn pump(
    client: &mut ClientSession,
    server: &mut ServerSession,
    piece: usize,
) -> Vec<ServerEvent> {
    let mut seen = Vec::new();
    loop {
        let c = client.take_output();
        let s = server.take_output();
        if c.is_empty() && s.is_empty() {
            return seen;
        }
        for part in c.chunks(piece) {
            server.handle_input(part).unwrap();
        }
        while let Some(ev) = server.poll_event() {
            match &ev {
                ServerEvent::PublishRequested { stream_id, .. } => {
                    server.accept_publish(*stream_id)
                }
                ServerEvent::PlayRequested { stream_id, .. } => server.accept_play(*stream_id),
                _ => {}
            }
            seen.push(ev);
        }
        for part in s.chunks(piece) {
            client.handle_input(part).unwrap();
        }
    }
}

fn events(client: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn config(mode: ClientMode) -> ClientConfig {
    let (addr, config) =
        ClientConfig::from_url("rtmp://127.0.0.1:19350/live/cam?token=1", mode).unwrap();
    assert_eq!(addr, "127.0.0.1:19350");
    config
}

#[test]
fn publishes_media_that_the_server_receives() {
    for piece in [1, 7, 128, 100_000] {
        let mut client = ClientSession::new(config(ClientMode::Publish));
        let mut server = ServerSession::new(SessionConfig::default());
        client.start();
        let seen = pump(&mut client, &mut server, piece);
        assert!(seen.iter().any(|e| matches!(e,
            ServerEvent::PublishRequested { app, name, query, .. }
                if app == "live" && name == "cam" && query == "token=1")));
        let evs = events(&mut client);
        assert_eq!(evs[0], ClientEvent::Connected);
        let Some(ClientEvent::Publishing { stream_id }) = evs.last().cloned() else {
            panic!("not publishing: {evs:?}");
        };
        assert_eq!(client.stream_id(), Some(stream_id));

        client.send_metadata(Amf0Value::object([("width", Amf0Value::Number(640.0))]));
        let big = vec![0xAB; 10_000];
        client.send_media(MediaKind::Video, 40, &[&[0x17, 1, 0, 0, 0], &big]);
        client.send_media(MediaKind::Audio, 0x0100_0000, &[&[0xAF, 1, 9]]);
        let seen = pump(&mut client, &mut server, piece);
        assert!(matches!(&seen[0], ServerEvent::Metadata { metadata, .. }
            if metadata.get("width").and_then(|v| v.as_f64()) == Some(640.0)));
        match &seen[1] {
            ServerEvent::Media {
                kind: MediaKind::Video,
                timestamp: 40,
                payload,
                ..
            } => {
                assert_eq!(payload.len(), 5 + big.len());
                assert_eq!(&payload[5..], &big[..]);
            }
            other => panic!("expected video, got {other:?}"),
        }
        assert!(matches!(
            &seen[2],
            ServerEvent::Media {
                kind: MediaKind::Audio,
                timestamp: 0x0100_0000,
                ..
            }
        ));

        client.stop();
        let seen = pump(&mut client, &mut server, piece);
        assert!(
            seen.contains(&ServerEvent::PublishStopped { stream_id }),
            "{seen:?}"
        );
    }
}

#[test]
fn plays_what_the_server_sends() {
    let mut client = ClientSession::new(config(ClientMode::Play));
    let mut server = ServerSession::new(SessionConfig::default());
    client.start();
    let seen = pump(&mut client, &mut server, 13);
    assert!(seen
        .iter()
        .any(|e| matches!(e, ServerEvent::PlayRequested { name, .. } if name == "cam")));
    let evs = events(&mut client);
    let Some(stream_id) = evs.iter().find_map(|e| match e {
        ClientEvent::Playing { stream_id } => Some(*stream_id),
        _ => None,
    }) else {
        panic!("not playing: {evs:?}");
    };
    // Play.Reset came before Play.Start and is only a status.
    assert!(evs
        .iter()
        .any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.Reset")));
    server.send_media(
        stream_id,
        MediaKind::Video,
        1000,
        &[&[0x17, 0, 0, 0, 0], b"config"],
    );
    server.send_data(
        stream_id,
        0,
        &[Amf0Value::string("onMetaData"), Amf0Value::Null],
    );
    pump(&mut client, &mut server, 13);
    let evs = events(&mut client);
    assert!(
        matches!(&evs[0], ClientEvent::Media { kind: MediaKind::Video, timestamp: 1000, payload }
        if &payload[5..] == b"config")
    );
    assert!(
        matches!(&evs[1], ClientEvent::Data { values, .. } if values[0].as_str() == Some("onMetaData"))
    );

    // The server gives up on the stream: the client is told, once.
    server.end_play(stream_id, NetStatus::PlayStop, "gone");
    pump(&mut client, &mut server, 13);
    let evs = events(&mut client);
    assert!(
        matches!(&evs[..], [ClientEvent::Failed { code, .. }] if code == "NetStream.Play.Stop"),
        "{evs:?}"
    );
}

#[test]
fn a_refused_publish_fails_with_the_servers_code() {
    let mut client = ClientSession::new(config(ClientMode::Publish));
    let mut server = ServerSession::new(SessionConfig::default());
    client.start();
    // Drive by hand so the server can refuse.
    loop {
        let c = client.take_output();
        let s = server.take_output();
        if c.is_empty() && s.is_empty() {
            break;
        }
        server.handle_input(&c).unwrap();
        while let Some(ev) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = ev {
                server.reject_publish(stream_id, NetStatus::PublishBadName, "taken");
            }
        }
        client.handle_input(&s).unwrap();
    }
    let evs = events(&mut client);
    assert!(
        matches!(evs.last(), Some(ClientEvent::Failed { code, description })
        if code == "NetStream.Publish.BadName" && description == "taken"),
        "{evs:?}"
    );
    assert_eq!(client.stream_id(), None);
    // Media after a failure goes nowhere.
    client.send_media(MediaKind::Audio, 0, &[&[0xAF, 1]]);
    assert!(!client.has_output());
}

#[test]
fn an_error_to_release_stream_or_fc_publish_refuses_nothing() {
    let mut client = ClientSession::new(config(ClientMode::Publish));
    let mut server = ServerSession::new(SessionConfig::default());
    client.start();
    pump(&mut client, &mut server, 100_000);
    let _ = events(&mut client);
    // MonaServer's answer to FMS's optional commands.
    let error = |tid: f64| {
        let mut body = Vec::new();
        for v in [
            Amf0Value::string("_error"),
            Amf0Value::Number(tid),
            Amf0Value::Null,
            Amf0Value::object(vec![
                ("level", Amf0Value::string("error")),
                ("code", Amf0Value::string("NetConnection.Call.Failed")),
                (
                    "description",
                    Amf0Value::string("No Method client releaseStream"),
                ),
            ]),
        ] {
            crate::amf::amf0::encode(&v, &mut body);
        }
        let mut out = bytes::BytesMut::new();
        crate::rtmp::chunk::ChunkEncoder::new().write(
            50,
            msg::COMMAND_AMF0,
            0,
            0,
            &[&body],
            &mut out,
        );
        out
    };
    client.handle_input(&error(2.0)).unwrap();
    client.handle_input(&error(3.0)).unwrap();
    assert!(events(&mut client).is_empty());
    assert!(client.stream_id().is_some(), "still publishing");
    // Any other transaction's error is a refusal.
    client.handle_input(&error(9.0)).unwrap();
    assert!(matches!(
        events(&mut client).last(),
        Some(ClientEvent::Failed { .. })
    ));
}

#[test]
fn acknowledges_the_servers_window_and_answers_pings() {
    let mut client = ClientSession::new(config(ClientMode::Play));
    let mut server = ServerSession::new(SessionConfig {
        window_ack_size: 5000,
        ..SessionConfig::default()
    });
    client.start();
    // Everything the client sends after C0+C1, C2 and the handshake.
    let mut sent = BytesMut::new();
    let c0c1 = client.take_output();
    server.handle_input(&c0c1).unwrap();
    client.handle_input(&server.take_output()).unwrap();
    let mut c2 = client.take_output();
    server.handle_input(&c2.split_to(1536)).unwrap();
    sent.extend_from_slice(&c2);
    server.handle_input(&c2).unwrap();
    loop {
        let s = server.take_output();
        if s.is_empty() {
            break;
        }
        client.handle_input(&s).unwrap();
        let c = client.take_output();
        sent.extend_from_slice(&c);
        server.handle_input(&c).unwrap();
        while let Some(ev) = server.poll_event() {
            if let ServerEvent::PlayRequested { stream_id, .. } = ev {
                server.accept_play(stream_id);
            }
        }
    }
    let stream_id = client.stream_id().expect("playing");
    server.send_ping(77);
    server.send_media(stream_id, MediaKind::Video, 0, &[&vec![0x27; 6000]]);
    client.handle_input(&server.take_output()).unwrap();
    sent.extend_from_slice(&client.take_output());
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let msgs = crate::rtmp::message::decode_all_with_sizes(&mut dec, &mut sent);
    assert!(sent.is_empty(), "client output did not decode");
    assert!(msgs.iter().any(|m| m.type_id == msg::USER_CONTROL
        && UserControl::parse(&m.payload).unwrap() == UserControl::PingResponse(77)));
    assert!(
        msgs.iter().any(|m| m.type_id == msg::ACKNOWLEDGEMENT),
        "{msgs:?}"
    );
}

#[test]
fn urls_are_split_like_ffmpeg_does() {
    let (addr, c) =
        ClientConfig::from_url("rtmp://example.com/app/a/b", ClientMode::Publish).unwrap();
    assert_eq!(addr, "example.com:1935");
    assert_eq!((c.app.as_str(), c.stream.as_str()), ("app", "a/b"));
    assert_eq!(c.tc_url, "rtmp://example.com/app");
    assert_eq!(
        ClientConfig::from_url("rtmps://h/a/s", ClientMode::Play)
            .unwrap()
            .0,
        "h:443"
    );
    for bad in [
        "http://h/a/s",
        "rtmp://h/a",
        "rtmp:///a/s",
        "rtmp://h//s",
        "nonsense",
    ] {
        assert!(
            ClientConfig::from_url(bad, ClientMode::Publish).is_err(),
            "{bad}"
        );
    }
}

proptest::proptest! {
    /// Whatever a server sends, the client errors or goes on; it never panics.
    #[test]
    fn hostile_server_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4000), piece in 1usize..300) {
        let mut client = ClientSession::new(config(ClientMode::Play));
        client.start();
        let _ = client.take_output();
        for part in data.chunks(piece) {
            if client.handle_input(part).is_err() {
                break;
            }
        }
    }
}

/// The fuzz driver reaches publishing with a real server (so fuzzed bytes
/// land in a live session), and arbitrary server bytes never panic.
#[test]
fn exercise_reaches_publishing_and_survives_garbage() {
    // Selector: publish (or play), three rounds with a real server,
    // 1-byte pieces.
    assert!(exercise(&[
        0b0000_1110,
        0x02,
        0,
        0,
        0,
        0,
        0,
        0,
        4,
        1,
        0,
        0,
        0,
        0,
        0x10,
        0
    ]));
    assert!(exercise(&[0b0000_1111]));
    // No rounds: the bytes meet the handshake.
    assert!(!exercise(&[0b0000_1000, 3, 0, 0]));
}

proptest::proptest! {
    #[test]
    fn arbitrary_server_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let _ = exercise(&data);
    }
}

/// castgate's client reads what a server states of Enhanced RTMP in its
/// connect `_result` (castgate's own server here: every codec it carries).
#[test]
fn reads_the_servers_enhanced_rtmp_capabilities() {
    let mut client = ClientSession::new(config(ClientMode::Publish));
    let mut server = ServerSession::new(SessionConfig::default());
    assert!(!client.server_capabilities().enhanced);
    client.start();
    pump(&mut client, &mut server, 4096);
    let caps = client.server_capabilities();
    assert!(caps.enhanced);
    assert_eq!(caps.codecs(), crate::media::flv::CodecSet::ALL);
    assert_eq!(caps.caps_ex, crate::rtmp::enhanced::SERVER_CAPS_EX);
}
