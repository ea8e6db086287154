//! The Flash profile's RTMP messages on flows (RFC 7425 §5), turned into an
//! RTMP chunk stream and back, so that an RTMFP session is served by the
//! same RTMP connection driver as every other variant (RTMPT does the same
//! with HTTP requests).
//!
//! On RTMFP, each RTMP stream id has its own flows. A flow's metadata is
//! `"TC"`, a flags byte (0x04: a stream id follows; bit 0: the receiver may
//! deliver out of order) and the stream id as a VLU. Each message on a flow
//! is the RTMP message type (1 byte), its timestamp (4 bytes, big-endian)
//! and the RTMP payload. A reply travels on a flow whose return
//! association names the flow it answers: `_result` to `connect` on one
//! associated with the client's stream-0 flow, `onStatus` and media for a
//! NetStream on flows associated with the client's flow of that stream.
//!
//! The bridge's local side speaks RTMP bytes: as a server-side bridge it is
//! the RTMP *client* of castgate's connection driver (it runs a plain
//! handshake with it); as a client-side bridge it is the RTMP *server* of
//! castgate's `rtmp::ClientSession`. Chunk-level control messages (chunk
//! size, abort, acknowledgements, bandwidth) belong to each side's chunk
//! stream and never cross.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::wire::{put_vlu, Reader};
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, Message};
use crate::rtmp::handshake::{ClientHandshake, HandshakeError, HandshakeStatus, ServerHandshake};
use crate::rtmp::message as msg;

/// Flow metadata's signature and flags (RFC 7425 §5.1.1).
const TC: &[u8; 2] = b"TC";
const TC_STREAM_ID: u8 = 0x04;
/// The chunk size the bridge writes its RTMP side with: few headers.
const CHUNK_SIZE: usize = 65536;
/// A message from a peer before the handshake with the local side is done
/// waits; at most this many bytes of them (a `connect` is a few KiB).
const MAX_HELD: usize = 64 << 10;

/// The flow metadata for RTMP stream `stream_id`.
pub fn tc_metadata(stream_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.extend_from_slice(TC);
    out.push(TC_STREAM_ID);
    put_vlu(&mut out, u64::from(stream_id));
    out
}

/// The RTMP stream id of a flow's metadata, if it is the Flash profile's.
pub fn parse_tc_metadata(metadata: &[u8]) -> Option<u32> {
    let mut r = Reader::new(metadata);
    if r.bytes(2).ok()? != TC || r.u8().ok()? & TC_STREAM_ID == 0 {
        return None;
    }
    u32::try_from(r.vlu().ok()?).ok()
}

/// A message as it travels on a flow: type, timestamp, payload.
pub fn tc_message(type_id: u8, timestamp: u32, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.extend_from_slice(&[type_id]);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Chunk-level control: each side's chunk stream has its own, so these
/// never cross the bridge.
fn chunk_level(type_id: u8) -> bool {
    matches!(
        type_id,
        msg::SET_CHUNK_SIZE
            | msg::ABORT
            | msg::ACKNOWLEDGEMENT
            | msg::WINDOW_ACK_SIZE
            | msg::SET_PEER_BANDWIDTH
    )
}

/// A message for the RTMFP peer. A stream's messages all take one flow, so
/// that they stay in order (a status never overtakes the media sent before
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub stream_id: u32,
    /// Audio or video: it may be abandoned when late; the rest is always
    /// delivered.
    pub media: bool,
    /// The peer's flow this stream's flows answer, if it opened one.
    pub association: Option<u64>,
    /// The message as it goes on the flow.
    pub message: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("a flow without the Flash profile's metadata")]
    NotTc,
    #[error("a message from an unknown flow {0}")]
    UnknownFlow(u64),
    #[error("a flow message shorter than its 5-byte header")]
    Short,
    #[error("the peer sent {0} bytes before the RTMP side was ready")]
    HeldTooMuch(usize),
    #[error("RTMP handshake with the local side: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("RTMP chunk stream from the local side: {0}")]
    Chunk(#[from] ChunkError),
}

enum Handshake {
    /// The bridge is the RTMP client of the local server (server side).
    AsClient(Box<ClientHandshake>),
    /// The bridge is the RTMP server of the local client (client side).
    AsServer(Box<ServerHandshake>),
    Done,
}

/// One RTMFP session's RTMP messages, both ways.
pub struct Bridge {
    handshake: Handshake,
    to_local: BytesMut,
    held: Vec<Message>,
    held_bytes: usize,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    /// The local side's chunk-level control, applied to `decoder`.
    control: msg::Control,
    from_local: BytesMut,
    /// The peer's flows and the stream id each carries.
    peer_flows: HashMap<u64, u32>,
    /// The peer flow each stream's replies associate with.
    stream_flows: HashMap<u32, u64>,
    /// castgate's own flows and the peer flow each answers.
    own_flows: HashMap<u64, Option<u64>>,
    outbound: VecDeque<Outbound>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("peer_flows", &self.peer_flows.len())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// The bridge of castgate's server: its local side is the RTMP
    /// connection driver, which it greets as a client.
    pub fn for_server() -> Bridge {
        let mut hs = ClientHandshake::new_simple();
        let mut out = Vec::new();
        hs.start(&mut out);
        let mut b = Bridge::new(Handshake::AsClient(Box::new(hs)));
        b.to_local.extend_from_slice(&out);
        b
    }

    /// The bridge of castgate's client: its local side is an
    /// `rtmp::ClientSession`, which it answers as a server.
    pub fn for_client() -> Bridge {
        Bridge::new(Handshake::AsServer(Box::default()))
    }

    fn new(handshake: Handshake) -> Bridge {
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(CHUNK_SIZE);
        Bridge {
            handshake,
            to_local: BytesMut::new(),
            held: Vec::new(),
            held_bytes: 0,
            encoder,
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            control: msg::Control::default(),
            from_local: BytesMut::new(),
            peer_flows: HashMap::new(),
            stream_flows: HashMap::new(),
            own_flows: HashMap::new(),
            outbound: VecDeque::new(),
        }
    }

    /// The peer opened a flow; its metadata names the RTMP stream, and
    /// `association` the flow of castgate's it answers, if any.
    ///
    /// Replies for that stream associate with this flow, unless it answers
    /// one of castgate's flows: then with the peer flow that one answers.
    /// rtmfp-cpp's client hangs every NetStream flow off castgate's
    /// NetConnection flow and takes flows only on its own NetConnection
    /// flow; Flash and librtmfp open NetStream flows with no association
    /// and take replies on them.
    pub fn flow_opened(
        &mut self,
        flow: u64,
        metadata: &[u8],
        association: Option<u64>,
    ) -> Result<u32, BridgeError> {
        let stream_id = parse_tc_metadata(metadata).ok_or(BridgeError::NotTc)?;
        let reply_to = association
            .and_then(|own| self.own_flows.get(&own).copied().flatten())
            .unwrap_or(flow);
        self.peer_flows.insert(flow, stream_id);
        self.stream_flows.insert(stream_id, reply_to);
        Ok(stream_id)
    }

    /// castgate opened `flow` to the peer, answering the peer's
    /// `association`.
    pub fn own_flow_opened(&mut self, flow: u64, association: Option<u64>) {
        self.own_flows.insert(flow, association);
    }

    /// The peer finished a flow. Says whether it was a NetConnection flow
    /// (stream 0): the peer's end of the RTMP connection, as a TCP FIN is.
    pub fn flow_finished(&mut self, flow: u64) -> bool {
        self.peer_flows.remove(&flow) == Some(0)
    }

    /// A message from the peer on `flow`: into the RTMP side.
    pub fn from_peer(&mut self, flow: u64, data: &[u8]) -> Result<(), BridgeError> {
        let stream_id = *self
            .peer_flows
            .get(&flow)
            .ok_or(BridgeError::UnknownFlow(flow))?;
        let mut r = Reader::new(data);
        let (Ok(type_id), Ok(timestamp)) = (r.u8(), r.u32()) else {
            return Err(BridgeError::Short);
        };
        if chunk_level(type_id) {
            return Ok(());
        }
        let m = Message {
            type_id,
            stream_id,
            timestamp,
            payload: Bytes::copy_from_slice(r.rest()),
        };
        if matches!(self.handshake, Handshake::Done) {
            self.write_local(&m);
        } else {
            self.held_bytes += m.payload.len();
            if self.held_bytes > MAX_HELD {
                return Err(BridgeError::HeldTooMuch(self.held_bytes));
            }
            self.held.push(m);
        }
        Ok(())
    }

    fn write_local(&mut self, m: &Message) {
        // Conventional chunk streams: commands 3, audio 4, video 6, data 5.
        let csid = match m.type_id {
            msg::AUDIO => 4,
            msg::VIDEO => 6,
            msg::DATA_AMF0 | msg::DATA_AMF3 => 5,
            msg::USER_CONTROL => 2,
            _ => 3,
        };
        self.encoder.write_message(csid, m, &mut self.to_local);
    }

    /// Bytes for the local RTMP side, emptied by the call.
    pub fn take_to_local(&mut self) -> BytesMut {
        self.to_local.split()
    }

    /// Bytes from the local RTMP side: handshake, then chunks, whose
    /// messages become [`Outbound`]s.
    pub fn from_local(&mut self, data: &[u8]) -> Result<(), BridgeError> {
        self.from_local.extend_from_slice(data);
        if !matches!(self.handshake, Handshake::Done) {
            let mut out = Vec::new();
            let (consumed, status) = match &mut self.handshake {
                Handshake::AsClient(hs) => hs.process(&self.from_local, &mut out)?,
                Handshake::AsServer(hs) => hs.process(&self.from_local, &mut out)?,
                Handshake::Done => unreachable!("checked above"),
            };
            let _ = self.from_local.split_to(consumed);
            self.to_local.extend_from_slice(&out);
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            self.handshake = Handshake::Done;
            // The chunk size this side writes with, then what waited.
            let size = (CHUNK_SIZE as u32).to_be_bytes();
            self.encoder
                .write(2, msg::SET_CHUNK_SIZE, 0, 0, &[&size], &mut self.to_local);
            for m in std::mem::take(&mut self.held) {
                self.write_local(&m);
            }
            self.held_bytes = 0;
        }
        loop {
            let before = self.from_local.len();
            match self.decoder.decode(&mut self.from_local)? {
                Some(m) => self.toward_peer(m)?,
                None if self.from_local.len() == before => return Ok(()),
                None => {}
            }
        }
    }

    fn toward_peer(&mut self, m: Message) -> Result<(), BridgeError> {
        match m.type_id {
            t if chunk_level(t) => {
                self.control.handle(&m, &mut self.decoder)?;
            }
            msg::AGGREGATE => {
                for sub in msg::split_aggregate(&m)? {
                    self.toward_peer(Message {
                        type_id: sub.type_id,
                        stream_id: m.stream_id,
                        timestamp: sub.timestamp,
                        payload: sub.payload,
                    })?;
                }
            }
            _ => {
                // A stream the peer has no flow of yet answers its
                // NetConnection flow (rtmfp-cpp's server takes a client's
                // NetStream flows only so).
                let association = self
                    .stream_flows
                    .get(&m.stream_id)
                    .or_else(|| self.stream_flows.get(&0))
                    .copied();
                self.outbound.push_back(Outbound {
                    stream_id: m.stream_id,
                    media: matches!(m.type_id, msg::AUDIO | msg::VIDEO),
                    association,
                    message: tc_message(m.type_id, m.timestamp, &m.payload),
                });
            }
        }
        Ok(())
    }

    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        self.outbound.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0::{self, Amf0Value};
    use crate::rtmp::session::{ServerEvent, ServerSession, SessionConfig};

    fn command(name: &str, tx: f64, args: &[Amf0Value]) -> Vec<u8> {
        let mut values = vec![Amf0Value::String(name.into()), Amf0Value::Number(tx)];
        values.extend_from_slice(args);
        let mut out = Vec::new();
        for v in &values {
            amf0::encode(v, &mut out);
        }
        out
    }

    fn pump(bridge: &mut Bridge, server: &mut ServerSession) -> Vec<ServerEvent> {
        let mut events = Vec::new();
        for _ in 0..8 {
            let to_server = bridge.take_to_local();
            server.handle_input(&to_server).unwrap();
            events.extend(std::iter::from_fn(|| server.poll_event()));
            let back = server.take_output();
            bridge.from_local(&back).unwrap();
        }
        events
    }

    #[test]
    fn metadata_round_trips_and_others_are_refused() {
        assert_eq!(tc_metadata(0), b"TC\x04\x00");
        assert_eq!(parse_tc_metadata(&tc_metadata(300)), Some(300));
        assert_eq!(parse_tc_metadata(b"TC\x00\x01"), None, "no stream id flag");
        assert_eq!(parse_tc_metadata(b"XX\x04\x01"), None);
        assert_eq!(parse_tc_metadata(b"TC\x04"), None);
        let mut big = b"TC\x04".to_vec();
        put_vlu(&mut big, u64::from(u32::MAX) + 1);
        assert_eq!(parse_tc_metadata(&big), None);
    }

    #[test]
    fn a_connect_and_a_publish_on_flows_reach_the_rtmp_session_and_replies_come_back_associated() {
        let mut bridge = Bridge::for_server();
        let mut server = ServerSession::new(SessionConfig::default());
        // The peer's NetConnection flow 2 carries connect before the local
        // handshake is done: it waits.
        bridge.flow_opened(2, &tc_metadata(0), None).unwrap();
        let mut obj = Vec::new();
        amf0::encode(
            &Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String("live".into())),
                (
                    "tcUrl".into(),
                    Amf0Value::String("rtmfp://127.0.0.1/live".into()),
                ),
            ]),
            &mut obj,
        );
        let mut connect = command("connect", 1.0, &[]);
        connect.extend_from_slice(&obj);
        bridge
            .from_peer(2, &tc_message(msg::COMMAND_AMF0, 0, &connect))
            .unwrap();
        // A chunk-size message from the peer never reaches the session.
        bridge
            .from_peer(2, &tc_message(msg::SET_CHUNK_SIZE, 0, &[0, 0, 0, 1]))
            .unwrap();
        let events = pump(&mut bridge, &mut server);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ServerEvent::Connected { .. })),
            "{events:?}"
        );
        let replies: Vec<Outbound> = std::iter::from_fn(|| bridge.poll_outbound()).collect();
        let result = replies
            .iter()
            .find(|o| o.message[0] == msg::COMMAND_AMF0)
            .expect("a command reply");
        assert_eq!(
            (result.stream_id, result.association, result.media),
            (0, Some(2), false)
        );
        assert!(replies.iter().all(|o| o.message[0] != msg::WINDOW_ACK_SIZE));

        // createStream, then publish on a flow of stream 1.
        bridge
            .from_peer(
                2,
                &tc_message(
                    msg::COMMAND_AMF0,
                    0,
                    &command("createStream", 2.0, &[Amf0Value::Null]),
                ),
            )
            .unwrap();
        pump(&mut bridge, &mut server);
        bridge.flow_opened(3, &tc_metadata(1), None).unwrap();
        let publish = command(
            "publish",
            0.0,
            &[
                Amf0Value::Null,
                Amf0Value::String("key".into()),
                Amf0Value::String("live".into()),
            ],
        );
        bridge
            .from_peer(3, &tc_message(msg::COMMAND_AMF0, 0, &publish))
            .unwrap();
        let events = pump(&mut bridge, &mut server);
        let requested = events.iter().find_map(|e| match e {
            ServerEvent::PublishRequested {
                stream_id, name, ..
            } => Some((*stream_id, name.clone())),
            _ => None,
        });
        assert_eq!(requested, Some((1, "key".to_string())));
        server.accept_publish(1);
        pump(&mut bridge, &mut server);
        let status: Vec<Outbound> = std::iter::from_fn(|| bridge.poll_outbound()).collect();
        assert!(
            status
                .iter()
                .any(|o| o.stream_id == 1 && o.association == Some(3)),
            "onStatus on stream 1, answering flow 3: {status:?}"
        );
        // Media from the peer arrives as media of stream 1.
        bridge
            .from_peer(3, &tc_message(msg::VIDEO, 40, &[0x17, 0x01, 0, 0, 0, 1, 2]))
            .unwrap();
        let events = pump(&mut bridge, &mut server);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ServerEvent::Media { stream_id: 1, .. })),
            "{events:?}"
        );
    }

    #[test]
    fn replies_follow_the_peer_s_flow_tree() {
        let mut bridge = Bridge::for_server();
        bridge.flow_opened(2, &tc_metadata(0), None).unwrap();
        bridge.own_flow_opened(7, Some(2));
        // rtmfp-cpp: the NetStream flow answers castgate's flow 7, so the
        // stream's replies go to the flow 7 answers, the peer's flow 2.
        bridge.flow_opened(4, &tc_metadata(1), Some(7)).unwrap();
        // Flash and librtmfp: a NetStream flow of its own.
        bridge.flow_opened(5, &tc_metadata(2), None).unwrap();
        assert_eq!(bridge.stream_flows.get(&1), Some(&2));
        assert_eq!(bridge.stream_flows.get(&2), Some(&5));
        assert_eq!(bridge.stream_flows.get(&0), Some(&2));
    }

    #[test]
    fn a_peer_cannot_make_the_bridge_hold_unbounded_bytes() {
        let mut bridge = Bridge::for_server();
        bridge.flow_opened(2, &tc_metadata(0), None).unwrap();
        let big = vec![0u8; 40 << 10];
        bridge
            .from_peer(2, &tc_message(msg::COMMAND_AMF0, 0, &big))
            .unwrap();
        assert!(matches!(
            bridge.from_peer(2, &tc_message(msg::COMMAND_AMF0, 0, &big)),
            Err(BridgeError::HeldTooMuch(_))
        ));
        assert!(matches!(
            bridge.from_peer(9, b"\x14\0\0\0\0"),
            Err(BridgeError::UnknownFlow(9))
        ));
        assert!(matches!(
            bridge.from_peer(2, b"\x14\0"),
            Err(BridgeError::Short)
        ));
    }
}
