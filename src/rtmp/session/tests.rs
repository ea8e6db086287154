//! The server session driven by our own client-side pieces, message by message.

use super::*;
use crate::rtmp::handshake::ClientHandshake;
use crate::rtmp::message::UserControl;
use proptest::prelude::*;

/// A scripted client: handshake, then commands, reading back what the server says.
struct Client {
    server: ServerSession,
    enc: ChunkEncoder,
    dec: ChunkDecoder,
    inbox: BytesMut,
}

impl Client {
    fn new() -> Client {
        let mut server = ServerSession::new(SessionConfig::default());
        let mut hs = ClientHandshake::new();
        let mut out = Vec::new();
        hs.start(&mut out);
        server.handle_input(&out).unwrap();
        let s012 = server.take_output();
        let mut c2 = Vec::new();
        let (_, status) = hs.process(&s012, &mut c2).unwrap();
        assert_eq!(status, HandshakeStatus::Done);
        server.handle_input(&c2).unwrap();
        assert_eq!(
            server.poll_event(),
            Some(ServerEvent::HandshakeDone { digest: true })
        );
        Client {
            server,
            enc: ChunkEncoder::new(),
            dec: ChunkDecoder::new(ChunkLimits::default()),
            inbox: BytesMut::new(),
        }
    }

    fn send(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        ts: u32,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let mut out = BytesMut::new();
        self.enc
            .write(csid, type_id, stream_id, ts, &[payload], &mut out);
        self.server.handle_input(&out)
    }

    fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.send(
            3,
            msg::COMMAND_AMF0,
            stream_id,
            0,
            &amf0::encode_all(values),
        )
        .unwrap();
    }

    /// Every message the server sent since the last call (applying its chunk size).
    fn received(&mut self) -> Vec<Message> {
        self.inbox.extend_from_slice(&self.server.take_output());
        let mut out = Vec::new();
        for m in crate::rtmp::message::decode_all_with_sizes(&mut self.dec, &mut self.inbox) {
            out.push(m);
        }
        out
    }

    fn commands(&mut self) -> Vec<Vec<Amf0Value>> {
        self.received()
            .into_iter()
            .filter(|m| m.type_id == msg::COMMAND_AMF0)
            .map(|m| amf0::decode_all(&m.payload).unwrap())
            .collect()
    }

    fn connect(&mut self) {
        self.command(
            0,
            &[
                Amf0Value::string("connect"),
                Amf0Value::Number(1.0),
                Amf0Value::object([
                    ("app", Amf0Value::string("live?token=1")),
                    ("tcUrl", Amf0Value::string("rtmp://h/live")),
                    ("flashVer", Amf0Value::string("FMLE/3.0")),
                ]),
            ],
        );
    }

    fn create_stream(&mut self) -> u32 {
        self.command(
            0,
            &[
                Amf0Value::string("createStream"),
                Amf0Value::Number(4.0),
                Amf0Value::Null,
            ],
        );
        let cmds = self.commands();
        let result = cmds
            .iter()
            .find(|c| c[0].as_str() == Some("_result") && c[1].as_f64() == Some(4.0))
            .unwrap();
        result[3].as_f64().unwrap() as u32
    }
}

fn status_code(cmd: &[Amf0Value]) -> Option<&str> {
    if cmd.first()?.as_str()? != "onStatus" {
        return None;
    }
    cmd.get(3)?.get("code")?.as_str()
}

#[test]
fn connect_gets_result_and_control_messages() {
    let mut c = Client::new();
    c.connect();
    let msgs = c.received();
    let types: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
    assert_eq!(
        types,
        vec![
            msg::WINDOW_ACK_SIZE,
            msg::SET_PEER_BANDWIDTH,
            msg::SET_CHUNK_SIZE,
            msg::COMMAND_AMF0
        ]
    );
    let result = amf0::decode_all(&msgs[3].payload).unwrap();
    assert_eq!(result[0].as_str(), Some("_result"));
    assert_eq!(result[1].as_f64(), Some(1.0));
    assert_eq!(
        result[3].get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        c.server.poll_event(),
        Some(ServerEvent::Connected {
            app: "live".into(),
            tc_url: "rtmp://h/live".into(),
            flash_ver: "FMLE/3.0".into()
        })
    );
}

/// Enhanced RTMP: the client's announcement is kept on the session; the
/// `_result` properties state castgate's own (every codec it carries as
/// forwardable, ModEx), for legacy and enhanced clients alike.
#[test]
fn connect_negotiates_enhanced_rtmp() {
    use crate::media::flv::CodecSet;
    use crate::media::Codec;
    use crate::rtmp::enhanced::{CAN_FORWARD, CAPS_MOD_EX};
    let mut c = Client::new();
    c.command(
        0,
        &[
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                (
                    "fourCcList",
                    Amf0Value::StrictArray(vec![
                        Amf0Value::string("hvc1"),
                        Amf0Value::string("avc1"),
                    ]),
                ),
                (
                    "audioFourCcInfoMap",
                    Amf0Value::object([("Opus", Amf0Value::Number(1.0))]),
                ),
                ("capsEx", Amf0Value::Number(4.0)),
            ]),
        ],
    );
    let caps = c.server.peer_capabilities();
    assert!(caps.enhanced);
    assert_eq!(caps.caps_ex, CAPS_MOD_EX);
    assert_eq!(
        caps.codecs(),
        CodecSet::LEGACY.with(Codec::Hevc).with(Codec::Opus)
    );
    let result = c.commands().remove(0);
    assert_eq!(result[0].as_str(), Some("_result"));
    let props = &result[2];
    assert_eq!(
        props.get("fmsVer").and_then(|v| v.as_str()),
        Some("FMS/3,0,1,123")
    );
    let Some(Amf0Value::StrictArray(list)) = props.get("fourCcList") else {
        panic!("{props:?}")
    };
    assert!(list.contains(&Amf0Value::string("hvc1")));
    let video = props.get("videoFourCcInfoMap").unwrap();
    assert_eq!(
        video.get("av01").and_then(|v| v.as_f64()),
        Some(f64::from(CAN_FORWARD))
    );
    let audio = props.get("audioFourCcInfoMap").unwrap();
    assert_eq!(
        audio.get("ec-3").and_then(|v| v.as_f64()),
        Some(f64::from(CAN_FORWARD))
    );
    assert_eq!(
        props.get("capsEx").and_then(|v| v.as_f64()),
        Some(f64::from(crate::rtmp::enhanced::SERVER_CAPS_EX))
    );

    // A legacy client: nothing announced, legacy codecs only.
    let mut legacy = Client::new();
    legacy.connect();
    assert!(!legacy.server.peer_capabilities().enhanced);
    assert_eq!(legacy.server.peer_capabilities().codecs(), CodecSet::LEGACY);
}

#[test]
fn publish_flow_and_media_events() {
    let mut c = Client::new();
    c.connect();
    c.command(
        0,
        &[
            Amf0Value::string("releaseStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
        ],
    );
    c.command(
        0,
        &[
            Amf0Value::string("FCPublish"),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
        ],
    );
    let sid = c.create_stream();
    assert_eq!(sid, 1);
    c.command(
        sid,
        &[
            Amf0Value::string("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            Amf0Value::string("key?secret=x"),
            Amf0Value::string("live"),
        ],
    );
    let ev = std::iter::from_fn(|| c.server.poll_event())
        .find(|e| matches!(e, ServerEvent::PublishRequested { .. }));
    assert_eq!(
        ev,
        Some(ServerEvent::PublishRequested {
            stream_id: 1,
            app: "live".into(),
            name: "key".into(),
            query: "secret=x".into(),
            mode: "live".into()
        })
    );
    // Media sent before the answer (an encoder that does not wait for
    // Publish.Start) follows PublishRequested; the driver decides.
    c.send(6, msg::VIDEO, sid, 0, &[0x17, 0, 0, 0, 0]).unwrap();
    assert!(matches!(
        c.server.poll_event(),
        Some(ServerEvent::Media {
            stream_id: 1,
            timestamp: 0,
            ..
        })
    ));
    c.server.accept_publish(sid);
    let codes: Vec<String> = c
        .commands()
        .iter()
        .filter_map(|x| status_code(x).map(String::from))
        .collect();
    assert_eq!(codes, vec!["NetStream.Publish.Start"]);
    c.send(6, msg::VIDEO, sid, 40, &[0x27, 1, 0, 0, 0, 9])
        .unwrap();
    match c.server.poll_event() {
        Some(ServerEvent::Media {
            stream_id: 1,
            kind: MediaKind::Video,
            timestamp: 40,
            payload,
        }) => {
            assert_eq!(&payload[..], &[0x27, 1, 0, 0, 0, 9]);
        }
        other => panic!("{other:?}"),
    }
    // @setDataFrame metadata.
    let meta = amf0::encode_all(&[
        Amf0Value::string("@setDataFrame"),
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
    ]);
    c.send(4, msg::DATA_AMF0, sid, 0, &meta).unwrap();
    assert!(matches!(
        c.server.poll_event(),
        Some(ServerEvent::Metadata { stream_id: 1, .. })
    ));
    c.command(
        0,
        &[
            Amf0Value::string("FCUnpublish"),
            Amf0Value::Number(6.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
        ],
    );
    assert_eq!(
        c.server.poll_event(),
        Some(ServerEvent::PublishStopped { stream_id: 1 })
    );
    let codes: Vec<String> = c
        .commands()
        .iter()
        .filter_map(|x| status_code(x).map(String::from))
        .collect();
    assert_eq!(codes, vec!["NetStream.Unpublish.Success"]);
}

#[test]
fn rejected_publish_gets_bad_name() {
    let mut c = Client::new();
    c.connect();
    let sid = c.create_stream();
    c.command(
        sid,
        &[
            Amf0Value::string("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            Amf0Value::string("k"),
        ],
    );
    assert!(matches!(
        c.server.poll_event(),
        Some(ServerEvent::Connected { .. })
    ));
    assert!(matches!(
        c.server.poll_event(),
        Some(ServerEvent::PublishRequested { .. })
    ));
    c.server
        .reject_publish(sid, NetStatus::PublishBadName, "taken");
    // One onStatus, on the publishing stream, at level error, with the
    // description given (what the session adds around the code).
    let received = c.received();
    let statuses: Vec<&Message> = received
        .iter()
        .filter(|m| m.type_id == msg::COMMAND_AMF0)
        .collect();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].stream_id, sid);
    let status = amf0::decode_all(&statuses[0].payload).unwrap();
    let info = &status[3];
    assert_eq!(info.get("level").and_then(|v| v.as_str()), Some("error"));
    assert_eq!(
        info.get("description").and_then(|v| v.as_str()),
        Some("taken")
    );
    // The stream is no longer publishing: its media is not passed on...
    c.send(4, msg::VIDEO, sid, 0, &[0x17, 0, 0, 0, 0]).unwrap();
    assert_eq!(c.server.poll_event(), None, "media of a rejected publish");
    // ...and it may publish again (the session went back to Created).
    c.command(
        sid,
        &[
            Amf0Value::string("publish"),
            Amf0Value::Number(6.0),
            Amf0Value::Null,
            Amf0Value::string("k2"),
        ],
    );
    assert!(matches!(
        c.server.poll_event(),
        Some(ServerEvent::PublishRequested { .. })
    ));
    // Rejecting a stream that is not pending sends nothing.
    c.server
        .reject_publish(sid + 7, NetStatus::PublishBadName, "x");
    assert!(c.commands().is_empty());
}

#[test]
fn play_flow_and_media_out() {
    let mut c = Client::new();
    c.connect();
    let sid = c.create_stream();
    c.command(
        sid,
        &[
            Amf0Value::string("play"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
            Amf0Value::Number(-2.0),
        ],
    );
    let ev = std::iter::from_fn(|| c.server.poll_event())
        .find(|e| matches!(e, ServerEvent::PlayRequested { .. }));
    assert!(
        matches!(ev, Some(ServerEvent::PlayRequested { stream_id: 1, range, .. }) if range.start == -2.0)
    );
    c.server.accept_play(sid);
    c.server
        .send_media(sid, MediaKind::Audio, 1234, &[&[0xAF, 1], &[1, 2, 3]]);
    let msgs = c.received();
    let codes: Vec<String> = msgs
        .iter()
        .filter(|m| m.type_id == msg::COMMAND_AMF0)
        .filter_map(|m| status_code(&amf0::decode_all(&m.payload).unwrap()).map(String::from))
        .collect();
    assert_eq!(codes, vec!["NetStream.Play.Reset", "NetStream.Play.Start"]);
    let audio = msgs.iter().find(|m| m.type_id == msg::AUDIO).unwrap();
    assert_eq!(
        (audio.timestamp, &audio.payload[..]),
        (1234, &[0xAF, 1, 1, 2, 3][..])
    );
    // getStreamLength answers; receiveVideo false is reported.
    c.command(
        sid,
        &[
            Amf0Value::string("receiveVideo"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Boolean(false),
        ],
    );
    assert_eq!(
        c.server.poll_event(),
        Some(ServerEvent::ReceiveChanged {
            stream_id: 1,
            kind: MediaKind::Video,
            enabled: false
        })
    );
    c.command(
        0,
        &[
            Amf0Value::string("deleteStream"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Number(1.0),
        ],
    );
    assert_eq!(
        c.server.poll_event(),
        Some(ServerEvent::PlayStopped { stream_id: 1 })
    );
}

#[test]
fn ping_is_answered_and_window_is_acknowledged() {
    let mut c = Client::new();
    c.connect();
    c.received();
    c.send(
        2,
        msg::USER_CONTROL,
        0,
        0,
        &UserControl::PingRequest(77).encode(),
    )
    .unwrap();
    let msgs = c.received();
    assert_eq!(
        UserControl::parse(&msgs[0].payload).unwrap(),
        UserControl::PingResponse(77)
    );
    c.send(2, msg::WINDOW_ACK_SIZE, 0, 0, &5000u32.to_be_bytes())
        .unwrap();
    c.send(6, msg::VIDEO, 0, 0, &vec![0u8; 6000]).unwrap();
    let acks: Vec<Message> = c
        .received()
        .into_iter()
        .filter(|m| m.type_id == msg::ACKNOWLEDGEMENT)
        .collect();
    assert_eq!(acks.len(), 1);
}

#[test]
fn aggregate_messages_are_split() {
    let mut c = Client::new();
    c.connect();
    let sid = c.create_stream();
    c.command(
        sid,
        &[
            Amf0Value::string("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            Amf0Value::string("k"),
        ],
    );
    c.server.accept_publish(sid);
    while c.server.poll_event().is_some() {}
    let mut agg = Vec::new();
    for (t, ts, body) in [(9u8, 100u32, &b"vv"[..]), (8, 120, &b"a"[..])] {
        agg.push(t);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.extend_from_slice(&[0, 0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&((body.len() + 11) as u32).to_be_bytes());
    }
    c.send(6, msg::AGGREGATE, sid, 1000, &agg).unwrap();
    let evs: Vec<ServerEvent> = std::iter::from_fn(|| c.server.poll_event()).collect();
    let times: Vec<(MediaKind, u32)> = evs
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Media {
                kind, timestamp, ..
            } => Some((*kind, *timestamp)),
            _ => None,
        })
        .collect();
    assert_eq!(
        times,
        vec![(MediaKind::Video, 1000), (MediaKind::Audio, 1020)]
    );
}

#[test]
fn amf3_command_is_understood() {
    let mut c = Client::new();
    let mut p = vec![0u8];
    p.extend(amf0::encode_all(&[
        Amf0Value::string("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("objectEncoding", Amf0Value::Number(3.0)),
        ]),
    ]));
    c.send(3, msg::COMMAND_AMF3, 0, 0, &p).unwrap();
    assert!(c
        .commands()
        .iter()
        .any(|x| x[0].as_str() == Some("_result")));
}

#[test]
fn hostile_inputs_are_errors() {
    // Command before connect.
    let mut c = Client::new();
    let r = c.send(
        3,
        msg::COMMAND_AMF0,
        0,
        0,
        &amf0::encode_all(&[Amf0Value::string("createStream"), Amf0Value::Number(2.0)]),
    );
    assert!(matches!(r, Err(SessionError::Protocol(_))));
    // AMF bomb.
    let mut c = Client::new();
    let mut p = vec![2, 0, 7];
    p.extend_from_slice(b"connect");
    p.extend_from_slice(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(matches!(
        c.send(3, msg::COMMAND_AMF0, 0, 0, &p),
        Err(SessionError::Amf { .. })
    ));
    // Too many streams.
    let mut c = Client::new();
    c.connect();
    for _ in 0..8 {
        c.create_stream();
    }
    let r = c.send(
        3,
        msg::COMMAND_AMF0,
        0,
        0,
        &amf0::encode_all(&[
            Amf0Value::string("createStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ]),
    );
    assert!(matches!(r, Err(SessionError::Protocol(_))));
    // Wrong version.
    let mut s = ServerSession::new(SessionConfig::default());
    assert!(matches!(
        s.handle_input(&[0x47, 0x45, 0x54]),
        Err(SessionError::Handshake(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_client_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..3000)) {
        exercise(&data);
    }
}

/// Until publish or play is accepted a client may send commands only: a
/// media-sized message is refused, and the full limits apply once the
/// publish is accepted.
#[test]
fn large_messages_only_after_publish_is_accepted() {
    let big = vec![0x17; 200 * 1024];
    let mut c = Client::new();
    c.connect();
    let err = c.send(6, msg::VIDEO, 1, 0, &big).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the limit of 65536"),
        "{err}"
    );

    let mut c = Client::new();
    c.connect();
    let sid = c.create_stream();
    c.command(
        sid,
        &[
            Amf0Value::string("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            Amf0Value::string("k"),
        ],
    );
    assert_eq!(c.server.chunk_limits().max_message_size, 64 * 1024);
    c.server.accept_publish(sid);
    assert_eq!(
        c.server.chunk_limits().max_message_size,
        SessionConfig::default().chunk_limits.max_message_size
    );
    c.send(6, msg::VIDEO, sid, 0, &big).unwrap();
    let media = std::iter::from_fn(|| c.server.poll_event())
        .find(|e| matches!(e, ServerEvent::Media { .. }));
    assert!(
        matches!(media, Some(ServerEvent::Media { ref payload, .. }) if payload.len() == big.len()),
        "the keyframe after Publish.Start"
    );
}

/// A client playing `name` with `play`'s extra arguments, accepted; the
/// play's range, and whatever the server said so far read.
fn playing(extra: &[Amf0Value]) -> (Client, u32, PlayRange) {
    let mut c = Client::new();
    c.connect();
    let sid = c.create_stream();
    let mut cmd = vec![
        Amf0Value::string("play"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        Amf0Value::string("clip.mp4"),
    ];
    cmd.extend_from_slice(extra);
    c.command(sid, &cmd);
    let range = std::iter::from_fn(|| c.server.poll_event())
        .find_map(|e| match e {
            ServerEvent::PlayRequested { range, .. } => Some(range),
            _ => None,
        })
        .expect("a play request");
    c.server.accept_play(sid);
    c.received();
    (c, sid, range)
}

fn status_codes(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.type_id == msg::COMMAND_AMF0)
        .filter_map(|m| status_code(&amf0::decode_all(&m.payload).unwrap()).map(String::from))
        .collect()
}

/// `play`'s start and len are milliseconds on the wire (FFmpeg's -2000,
/// librtmp's `--start`/`--stop`); the live sentinels start a recorded
/// stream at 0; a len that is not positive plays to the end; reset false
/// sends no Play.Reset.
#[test]
fn play_range_is_read_as_clients_send_it() {
    let n = Amf0Value::Number;
    let (_, _, r) = playing(&[]);
    assert_eq!((r.start_ms(), r.duration_ms(), r.reset), (0, None, true));
    for live in [-2000.0, -1000.0, -2.0, -1.0] {
        assert_eq!(playing(&[n(live)]).2.start_ms(), 0, "{live}");
    }
    let (_, _, r) = playing(&[n(30_000.0), n(5_000.0)]);
    assert_eq!((r.start_ms(), r.duration_ms()), (30_000, Some(5_000)));
    for len in [-1.0, 0.0, f64::NAN] {
        assert_eq!(playing(&[n(1.0), n(len)]).2.duration_ms(), None, "{len}");
    }
    assert_eq!(playing(&[n(f64::INFINITY)]).2.start_ms(), 0);

    // reset = false (a boolean, or 0 from some clients): no Play.Reset.
    for reset in [Amf0Value::Boolean(false), n(0.0)] {
        let mut c = Client::new();
        c.connect();
        let sid = c.create_stream();
        c.command(
            sid,
            &[
                Amf0Value::string("play"),
                n(0.0),
                Amf0Value::Null,
                Amf0Value::string("clip"),
                n(0.0),
                n(-1.0),
                reset,
            ],
        );
        c.server.accept_play(sid);
        assert_eq!(status_codes(&c.received()), ["NetStream.Play.Start"]);
    }
}

/// seek and pause on a playing stream are events; the driver's answers
/// are the statuses FMS sends; on a stream not playing they are nothing.
#[test]
fn seek_and_pause_are_events_answered_by_the_driver() {
    let n = Amf0Value::Number;
    let (mut c, sid, _) = playing(&[]);
    c.command(
        sid,
        &[
            Amf0Value::string("seek"),
            n(0.0),
            Amf0Value::Null,
            n(2500.0),
        ],
    );
    assert_eq!(
        c.server.poll_event(),
        Some(ServerEvent::Seek {
            stream_id: sid,
            ms: 2500.0
        })
    );
    c.server.seek_done(sid, 2000);
    let msgs = c.received();
    assert_eq!(
        status_codes(&msgs),
        [
            "NetStream.Seek.Notify",
            "NetStream.Play.Reset",
            "NetStream.Play.Start"
        ]
    );
    // StreamBegin before them.
    let uc = msgs
        .iter()
        .find(|m| m.type_id == msg::USER_CONTROL)
        .unwrap();
    assert_eq!(
        UserControl::parse(&uc.payload).unwrap(),
        UserControl::StreamBegin(sid)
    );

    for (name, flag, paused) in [
        ("pause", Amf0Value::Boolean(true), true),
        ("pauseRaw", Amf0Value::Boolean(false), false),
        ("pause", n(1.0), true),
    ] {
        c.command(
            sid,
            &[
                Amf0Value::string(name),
                n(0.0),
                Amf0Value::Null,
                flag,
                n(1234.0),
            ],
        );
        assert_eq!(
            c.server.poll_event(),
            Some(ServerEvent::Pause {
                stream_id: sid,
                pause: paused,
                ms: 1234.0
            }),
            "{name}"
        );
        c.server.pause_done(sid, paused, 1234);
        let codes = status_codes(&c.received());
        let want = if paused {
            "NetStream.Pause.Notify"
        } else {
            "NetStream.Unpause.Notify"
        };
        assert_eq!(codes, [want]);
    }

    c.server.seek_failed(sid, "A live stream cannot seek.");
    assert_eq!(status_codes(&c.received()), ["NetStream.Seek.Failed"]);

    // On a stream that is not playing: nothing.
    let other = c.create_stream();
    c.command(
        other,
        &[Amf0Value::string("seek"), n(0.0), Amf0Value::Null, n(1.0)],
    );
    c.command(
        other,
        &[
            Amf0Value::string("pause"),
            n(0.0),
            Amf0Value::Null,
            Amf0Value::Boolean(true),
            n(1.0),
        ],
    );
    assert_eq!(c.server.poll_event(), None);
    c.server.seek_done(other, 0);
    c.server.pause_done(other, true, 0);
    assert!(status_codes(&c.received()).is_empty());
}

/// getStreamLength is an event with the transaction id; the answer is a
/// `_result` with the length in seconds.
#[test]
fn stream_length_is_the_drivers_answer() {
    let mut c = Client::new();
    c.connect();
    c.received();
    while c.server.poll_event().is_some() {}
    c.command(
        0,
        &[
            Amf0Value::string("getStreamLength"),
            Amf0Value::Number(7.0),
            Amf0Value::Null,
            Amf0Value::string("mp4:clip.mp4?t=1"),
        ],
    );
    assert_eq!(
        c.server.poll_event(),
        Some(ServerEvent::StreamLengthRequested {
            stream_id: 0,
            transaction: 7.0,
            name: "mp4:clip.mp4".into(),
            query: "t=1".into(),
        })
    );
    c.server.answer_stream_length(0, 7.0, 4.077);
    let result = c.commands().remove(0);
    assert_eq!(result[0].as_str(), Some("_result"));
    assert_eq!(result[1].as_f64(), Some(7.0));
    assert_eq!(result[3].as_f64(), Some(4.077));
}

/// The client's SetBufferLength reaches the driver.
#[test]
fn set_buffer_length_is_an_event() {
    let mut c = Client::new();
    c.connect();
    let uc = UserControl::SetBufferLength {
        stream_id: 1,
        millis: 1500,
    };
    c.send(2, msg::USER_CONTROL, 0, 0, &uc.encode()).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| c.server.poll_event()).collect();
    assert!(events.contains(&ServerEvent::BufferLength {
        stream_id: 1,
        millis: 1500
    }));
}

/// The end of a recorded stream: StreamEOF, onPlayStatus Play.Complete
/// (a data message at the end's time), Play.Stop; the stream still plays
/// (a seek back is answered).
#[test]
fn complete_play_sends_play_status_and_stop() {
    let (mut c, sid, _) = playing(&[]);
    c.server.complete_play(sid, 4077, 261_222);
    let msgs = c.received();
    let kinds: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
    assert_eq!(
        kinds,
        [msg::USER_CONTROL, msg::DATA_AMF0, msg::COMMAND_AMF0]
    );
    assert_eq!(
        UserControl::parse(&msgs[0].payload).unwrap(),
        UserControl::StreamEof(sid)
    );
    let data = amf0::decode_all(&msgs[1].payload).unwrap();
    assert_eq!(data[0].as_str(), Some("onPlayStatus"));
    assert_eq!(
        data[1].get("code").and_then(|v| v.as_str()),
        Some("NetStream.Play.Complete")
    );
    assert_eq!(
        data[1].get("duration").and_then(|v| v.as_f64()),
        Some(4.077)
    );
    assert_eq!(msgs[1].timestamp, 4077);
    assert_eq!(status_codes(&msgs), ["NetStream.Play.Stop"]);
    assert!(c.server.is_playing(sid));
    c.server.seek_done(sid, 0);
    assert_eq!(status_codes(&c.received())[0], "NetStream.Seek.Notify");
}
