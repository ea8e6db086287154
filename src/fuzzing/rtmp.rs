//! RTMP wire formats: AMF, the handshake, the chunk stream, aggregate and
//! user control messages, and a whole server session.

use bytes::{Bytes, BytesMut};

use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::amf3::{self, Amf3Value};
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits};
use crate::rtmp::handshake::{
    ClientHandshake, HandshakeError, HandshakeStatus, ServerHandshake, HANDSHAKE_SIZE,
};
use crate::rtmp::message::{self, Message, UserControl};

/// AMF0 and AMF3 bodies from a hostile peer. Whatever decodes must survive
/// re-encoding: the encoder's output decodes again and re-encodes to the same
/// bytes (a fixed point, which holds even for NaN payloads), and where no
/// normalisation applies the values are equal.
pub fn amf(data: &[u8]) {
    check_amf0(data);
    check_amf3(data);
}

fn check_amf0(data: &[u8]) {
    let Ok(values) = amf0::decode_all(data) else {
        return;
    };
    let bytes = amf0::encode_all(&values);
    let again = amf0::decode_all(&bytes).expect("re-encoded AMF0 decodes");
    assert_eq!(
        amf0::encode_all(&again),
        bytes,
        "AMF0 re-encoding is stable"
    );
    if values.iter().all(amf0_comparable) {
        assert_eq!(again, values, "AMF0 round trip");
    }
}

fn check_amf3(data: &[u8]) {
    let Ok(values) = amf3::decode_all(data) else {
        return;
    };
    let bytes = encode_amf3(&values);
    let again = amf3::decode_all(&bytes).expect("re-encoded AMF3 decodes");
    assert_eq!(encode_amf3(&again), bytes, "AMF3 re-encoding is stable");
    if values.iter().all(amf3_comparable) {
        assert_eq!(again, values, "AMF3 round trip");
    }
}

fn encode_amf3(values: &[Amf3Value]) -> Vec<u8> {
    let mut out = Vec::new();
    values.iter().for_each(|v| amf3::encode(v, &mut out));
    out
}

/// Whether a decoded AMF0 value must compare equal after a round trip: no NaN
/// (never equal to itself), and no string that lossy UTF-8 repair pushed past
/// 65535 bytes (re-encoded as a long string, or truncated when it is a name).
fn amf0_comparable(value: &Amf0Value) -> bool {
    const SHORT: usize = u16::MAX as usize;
    let props_ok = |props: &[(String, Amf0Value)]| {
        props
            .iter()
            .all(|(name, v)| name.len() <= SHORT && amf0_comparable(v))
    };
    match value {
        Amf0Value::Number(n) => !n.is_nan(),
        Amf0Value::Date { millis, .. } => !millis.is_nan(),
        Amf0Value::String(s) => s.len() <= SHORT,
        Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => props_ok(props),
        Amf0Value::StrictArray(items) => items.iter().all(amf0_comparable),
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => class_name.len() <= SHORT && props_ok(properties),
        Amf0Value::AvmPlus(inner) => amf3_comparable(inner),
        _ => true,
    }
}

/// Whether a decoded AMF3 value must compare equal after a round trip: only
/// NaN breaks it (fuzz inputs are far below the 2^28-byte length limit).
fn amf3_comparable(value: &Amf3Value) -> bool {
    let members_ok = |m: &[(String, Amf3Value)]| m.iter().all(|(_, v)| amf3_comparable(v));
    match value {
        Amf3Value::Double(d) | Amf3Value::Date(d) => !d.is_nan(),
        Amf3Value::VectorDouble(items) => !items.iter().any(|d| d.is_nan()),
        Amf3Value::Array { assoc, dense } => members_ok(assoc) && dense.iter().all(amf3_comparable),
        Amf3Value::Object {
            sealed, dynamic, ..
        } => members_ok(sealed) && members_ok(dynamic),
        Amf3Value::VectorObject { items, .. } => items.iter().all(amf3_comparable),
        Amf3Value::Dictionary(entries) => entries
            .iter()
            .all(|(k, v)| amf3_comparable(k) && amf3_comparable(v)),
        _ => true,
    }
}

/// C0/C1/C2 (or S0/S1/S2) from a hostile peer, in two reads. The first byte
/// picks where the rest is split, so every boundary between reads is
/// explored. The server and both client state machines eat the same bytes.
/// The consumption contract must hold: never more than offered, everything
/// unless done, nothing once done, never more than one handshake's worth in
/// or out, and a failed handshake stays failed.
pub fn handshake(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector) * rest.len() / 255;
    let reads = [&rest[..split], &rest[split..]];

    let mut server = ServerHandshake::new();
    feed_handshake(|input, out| server.process(input, out), &reads);
    let _ = server.client_used_digest();

    let mut client = ClientHandshake::new();
    feed_handshake(|input, out| client.process(input, out), &reads);

    let mut client = ClientHandshake::new_simple();
    let mut out = Vec::new();
    client.start(&mut out);
    feed_handshake(|input, out| client.process(input, out), &reads);
    let _ = (client.server_used_digest(), client.server_response_valid());
}

type HandshakeStep = Result<(usize, HandshakeStatus), HandshakeError>;

fn feed_handshake(mut process: impl FnMut(&[u8], &mut Vec<u8>) -> HandshakeStep, reads: &[&[u8]]) {
    /// C0+C1+C2 (or S0+S1+S2): the most either side reads or writes.
    const MAX_HANDSHAKE: usize = 1 + 2 * HANDSHAKE_SIZE;
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    for read in reads {
        match process(read, &mut out) {
            Ok((used, status)) => {
                assert!(used <= read.len());
                if done {
                    assert_eq!(used, 0, "consumed input after Done");
                }
                match status {
                    HandshakeStatus::NeedMore => assert_eq!(used, read.len()),
                    HandshakeStatus::Done => done = true,
                }
                consumed += used;
            }
            Err(_) => {
                assert!(
                    process(&[3], &mut out).is_err(),
                    "a failed handshake stays failed"
                );
                break;
            }
        }
    }
    assert!(consumed <= MAX_HANDSHAKE);
    assert!(out.len() <= MAX_HANDSHAKE);
}

/// An RTMPE client's C1 (signed by the harness, so that the DH key and C2
/// behind the digest are reached), C2 and the encrypted bytes after it; the
/// body and its assertions are [`crate::rtmp::handshake::fuzz_rtmpe`].
pub fn rtmpe_handshake(data: &[u8]) {
    crate::rtmp::handshake::fuzz_rtmpe(data);
}

/// Client bytes into a whole server session: handshake, chunk stream,
/// control messages, AMF commands, publish and play paths. The driver is
/// [`crate::rtmp::session::exercise`], which the property tests also run.
pub fn chunk_session(data: &[u8]) {
    crate::rtmp::session::exercise(data);
}

/// Limits of the `chunk` target: small, so the limit paths are reached.
const CHUNK_LIMITS: ChunkLimits = ChunkLimits {
    max_message_size: 1 << 16,
    max_chunk_size: 1 << 20,
    max_partial_streams: 8,
    max_buffered: 1 << 17,
};

/// The chunk stream decoder alone, on a hostile byte stream (after the
/// handshake). Set Chunk Size and Abort are applied as a session would.
///
/// - The decoder never consumes a partial chunk, so feeding the bytes in
///   pieces (of `1 + first byte` bytes) gives the same messages and the same
///   error as feeding them at once.
/// - Whatever decoded re-encodes (our encoder, same chunk sizes) into a
///   stream that decodes to the same messages without error.
pub fn chunk(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode_chunks(rest, rest.len().max(1));
    let (pieces, pieces_err) = decode_chunks(rest, usize::from(selector) + 1);
    assert_eq!(whole, pieces, "messages depend on how the input was split");
    assert_eq!(whole_err, pieces_err, "error depends on the input split");

    let mut encoder = ChunkEncoder::new();
    let mut wire = BytesMut::new();
    for (i, m) in whole.iter().enumerate() {
        // Any chunk stream id will do; vary them to reach every basic header.
        let csid = [2, 3, 63, 64, 319, 320, 65599][i % 7];
        encoder.write_message(csid, m, &mut wire);
        if let Some(size) = applied_chunk_size(m) {
            encoder.set_chunk_size(size as usize);
        }
    }
    let encoded = wire.freeze();
    let (again, err) = decode_chunks(&encoded, encoded.len().max(1));
    assert_eq!(err, None, "our own chunk stream does not decode");
    assert_eq!(again, whole, "chunk stream round trip");
}

/// The chunk size a decoded Set Chunk Size message sets, if the decoder
/// accepts it.
fn applied_chunk_size(m: &Message) -> Option<u32> {
    if m.type_id != message::SET_CHUNK_SIZE {
        return None;
    }
    let size = message::read_u32_payload(&m.payload, "set chunk size").ok()?;
    ChunkDecoder::new(CHUNK_LIMITS)
        .set_chunk_size(size)
        .ok()
        .map(|()| size)
}

fn decode_chunks(data: &[u8], piece: usize) -> (Vec<Message>, Option<ChunkError>) {
    let mut decoder = ChunkDecoder::new(CHUNK_LIMITS);
    let mut input = BytesMut::new();
    let mut out = Vec::new();
    for part in data.chunks(piece) {
        input.extend_from_slice(part);
        loop {
            let before = input.len();
            match decoder.decode(&mut input) {
                Ok(Some(m)) => {
                    if let Some(size) = applied_chunk_size(&m) {
                        let _ = decoder.set_chunk_size(size);
                    }
                    if m.type_id == message::ABORT {
                        if let Ok(csid) = message::read_u32_payload(&m.payload, "abort") {
                            decoder.abort(csid);
                        }
                    }
                    out.push(m);
                }
                Ok(None) if input.len() != before => {}
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Aggregate messages (type 22) and User Control events (type 4).
///
/// The first 4 bytes are the aggregate's own timestamp, the rest its body.
/// Sub-messages are slices of the body, and re-serialising them with their
/// rebased timestamps splits back into the same sub-messages. A User
/// Control event that parses re-encodes to one that parses the same.
pub fn aggregate(data: &[u8]) {
    let (ts, body) = match data.split_first_chunk::<4>() {
        Some((ts, body)) => (u32::from_be_bytes(*ts), body),
        None => (0, data),
    };
    let payload = Bytes::copy_from_slice(body);
    let agg = Message {
        type_id: message::AGGREGATE,
        stream_id: 1,
        timestamp: ts,
        payload: payload.clone(),
    };
    if let Ok(subs) = message::split_aggregate(&agg) {
        let range = payload.as_ptr_range();
        let mut again = Vec::new();
        for s in &subs {
            let p = s.payload.as_ptr_range();
            assert!(
                s.payload.is_empty() || (range.start <= p.start && p.end <= range.end),
                "sub-message payload is not a slice of the aggregate"
            );
            let size = u32::try_from(s.payload.len()).expect("sub-message under 2^24 bytes");
            again.push(s.type_id);
            again.extend_from_slice(&size.to_be_bytes()[1..]);
            let t = s.timestamp.to_be_bytes();
            again.extend_from_slice(&[t[1], t[2], t[3], t[0], 0, 0, 0]);
            again.extend_from_slice(&s.payload);
            again.extend_from_slice(&(size + 11).to_be_bytes());
        }
        let rebuilt = Message {
            payload: again.into(),
            ..agg
        };
        assert_eq!(
            message::split_aggregate(&rebuilt).as_ref(),
            Ok(&subs),
            "aggregate round trip"
        );
    }

    for payload in [data, body] {
        if let Ok(event) = UserControl::parse(payload) {
            assert_eq!(
                UserControl::parse(&event.encode()),
                Ok(event),
                "user control round trip"
            );
        }
        let value = message::read_u32_payload(payload, "value");
        assert_eq!(value.is_ok(), payload.len() >= 4);
    }
}

/// Server bytes into the RTMP client session (relays, the load generator):
/// `rtmp::client::exercise`, which a property test also runs.
pub fn rtmp_client(data: &[u8]) {
    let _ = crate::rtmp::client::exercise(data);
}
