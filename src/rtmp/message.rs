//! RTMP message types and the protocol-control / user-control payloads.
//!
//! A [`Message`] is what the chunk stream reassembles: a type id, a message
//! stream id, a 32-bit millisecond timestamp and the payload.

use bytes::{Buf, Bytes, BytesMut};

pub use super::chunk::Message;
use super::chunk::{ChunkDecoder, ChunkError};

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACKNOWLEDGEMENT: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF3: u8 = 15;
pub const SHARED_OBJECT_AMF3: u8 = 16;
pub const COMMAND_AMF3: u8 = 17;
pub const DATA_AMF0: u8 = 18;
pub const SHARED_OBJECT_AMF0: u8 = 19;
pub const COMMAND_AMF0: u8 = 20;
pub const AGGREGATE: u8 = 22;

/// User Control events (message type 4) castgate sends or answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// An event type we do not act on (e.g. Flash's SWF verification).
    Other(u16),
}

impl UserControl {
    pub fn parse(mut payload: &[u8]) -> Result<UserControl, ChunkError> {
        if payload.len() < 2 {
            return Err(ChunkError::BadControl("user control shorter than 2 bytes"));
        }
        let event = payload.get_u16();
        let need_u32 = |p: &[u8]| {
            if p.len() < 4 {
                Err(ChunkError::BadControl(
                    "user control event without its 4-byte value",
                ))
            } else {
                Ok(())
            }
        };
        Ok(match event {
            0 => {
                need_u32(payload)?;
                UserControl::StreamBegin(payload.get_u32())
            }
            1 => {
                need_u32(payload)?;
                UserControl::StreamEof(payload.get_u32())
            }
            2 => {
                need_u32(payload)?;
                UserControl::StreamDry(payload.get_u32())
            }
            3 => {
                if payload.len() < 8 {
                    return Err(ChunkError::BadControl(
                        "SetBufferLength shorter than 8 bytes",
                    ));
                }
                UserControl::SetBufferLength {
                    stream_id: payload.get_u32(),
                    millis: payload.get_u32(),
                }
            }
            4 => {
                need_u32(payload)?;
                UserControl::StreamIsRecorded(payload.get_u32())
            }
            6 => {
                need_u32(payload)?;
                UserControl::PingRequest(payload.get_u32())
            }
            7 => {
                need_u32(payload)?;
                UserControl::PingResponse(payload.get_u32())
            }
            other => UserControl::Other(other),
        })
    }

    pub fn encode(self) -> Vec<u8> {
        let (event, a, b): (u16, u32, Option<u32>) = match self {
            UserControl::StreamBegin(s) => (0, s, None),
            UserControl::StreamEof(s) => (1, s, None),
            UserControl::StreamDry(s) => (2, s, None),
            UserControl::SetBufferLength { stream_id, millis } => (3, stream_id, Some(millis)),
            UserControl::StreamIsRecorded(s) => (4, s, None),
            UserControl::PingRequest(t) => (6, t, None),
            UserControl::PingResponse(t) => (7, t, None),
            UserControl::Other(e) => (e, 0, None),
        };
        let mut out = Vec::with_capacity(10);
        out.extend_from_slice(&event.to_be_bytes());
        out.extend_from_slice(&a.to_be_bytes());
        if let Some(b) = b {
            out.extend_from_slice(&b.to_be_bytes());
        }
        out
    }
}

/// Reads the 4-byte big-endian value of a protocol control message.
pub fn read_u32_payload(payload: &[u8], what: &'static str) -> Result<u32, ChunkError> {
    match payload.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ChunkError::BadControl(what)),
    }
}

/// Decodes every complete message, applying each Set Chunk Size as it
/// passes (the receiving side of a session; for tests and tools). Stops at
/// the first error.
pub fn decode_all_with_sizes(decoder: &mut ChunkDecoder, input: &mut BytesMut) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let before = input.len();
        match decoder.decode(input) {
            Ok(Some(m)) => {
                if m.type_id == SET_CHUNK_SIZE {
                    if let Ok(size) = read_u32_payload(&m.payload, "") {
                        let _ = decoder.set_chunk_size(size);
                    }
                }
                out.push(m);
            }
            Ok(None) if input.len() != before => {}
            _ => return out,
        }
    }
}

/// One FLV tag inside an aggregate message (type 22).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubMessage {
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Splits an aggregate message into its FLV tags.
///
/// Sub-tag timestamps are made relative to the first one and rebased on the
/// aggregate's own timestamp, as FMS and nginx-rtmp do. Payloads are slices of
/// the aggregate, never copies. A truncated tag ends the split with an error.
pub fn split_aggregate(aggregate: &Message) -> Result<Vec<SubMessage>, ChunkError> {
    let mut rest = aggregate.payload.clone();
    let mut out = Vec::new();
    let mut first_ts: Option<u32> = None;
    while !rest.is_empty() {
        if rest.len() < 11 {
            return Err(ChunkError::BadAggregate("tag header shorter than 11 bytes"));
        }
        let type_id = rest[0];
        let size = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
        rest.advance(11);
        if rest.len() < size {
            return Err(ChunkError::BadAggregate("tag body runs past the message"));
        }
        let payload = rest.split_to(size);
        // PreviousTagSize; tolerate it missing on the very last tag.
        rest.advance(rest.len().min(4));
        let base = *first_ts.get_or_insert(ts);
        out.push(SubMessage {
            type_id,
            timestamp: aggregate.timestamp.wrapping_add(ts.wrapping_sub(base)),
            payload,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_round_trip() {
        for uc in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(7),
            UserControl::StreamDry(2),
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(123456),
            UserControl::PingResponse(99),
        ] {
            assert_eq!(UserControl::parse(&uc.encode()).unwrap(), uc);
        }
    }

    #[test]
    fn user_control_short_is_error() {
        assert!(UserControl::parse(&[0]).is_err());
        assert!(UserControl::parse(&[0, 6, 1, 2]).is_err());
        assert!(UserControl::parse(&[0, 3, 0, 0, 0, 1]).is_err());
    }

    fn tag(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&((body.len() + 11) as u32).to_be_bytes());
        v
    }

    #[test]
    fn aggregate_splits_and_rebases() {
        let mut p = tag(9, 1000, b"video");
        p.extend(tag(8, 1023, b"au"));
        let m = Message {
            type_id: AGGREGATE,
            stream_id: 1,
            timestamp: 5000,
            payload: Bytes::from(p),
        };
        let subs = split_aggregate(&m).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].timestamp, 5000);
        assert_eq!(&subs[0].payload[..], b"video");
        assert_eq!(subs[1].timestamp, 5023);
        assert_eq!(subs[1].type_id, 8);
    }

    #[test]
    fn aggregate_truncated_is_error() {
        let mut p = tag(9, 0, b"video");
        p.truncate(14);
        let m = Message {
            type_id: AGGREGATE,
            stream_id: 1,
            timestamp: 0,
            payload: Bytes::from(p),
        };
        assert!(split_aggregate(&m).is_err());
    }
}

/// The protocol-control side both RTMP endpoints share: the peer's Set
/// Chunk Size and Abort (applied to the chunk decoder), its window and our
/// Acknowledgements, and Ping Requests.
#[derive(Debug, Default)]
pub struct Control {
    /// Bytes received, for acknowledgements (RTMP counts wrap at 32 bits).
    received: u64,
    last_ack: u64,
    peer_window: Option<u32>,
}

/// What [`Control::handle`] made of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Not a control message: the session handles it.
    NotControl,
    /// Applied; nothing to answer.
    Done,
    /// A Ping Request: answer with this Ping Response.
    Answer(UserControl),
    /// A User Control event the session may act on (the client's
    /// SetBufferLength).
    Event(UserControl),
}

impl Control {
    /// Counts bytes as they arrive.
    pub fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// Handles Set Chunk Size, Abort, Acknowledgement, Window Ack Size, Set
    /// Peer Bandwidth and User Control messages.
    pub fn handle(
        &mut self,
        m: &Message,
        decoder: &mut ChunkDecoder,
    ) -> Result<ControlOutcome, ChunkError> {
        match m.type_id {
            SET_CHUNK_SIZE => {
                let size = read_u32_payload(&m.payload, "Set Chunk Size without a size")?;
                decoder.set_chunk_size(size)?;
            }
            ABORT => {
                let csid = read_u32_payload(&m.payload, "Abort without a chunk stream id")?;
                decoder.abort(csid);
            }
            WINDOW_ACK_SIZE => {
                let w = read_u32_payload(&m.payload, "Window Ack Size without a size")?;
                self.peer_window = Some(w);
            }
            ACKNOWLEDGEMENT | SET_PEER_BANDWIDTH => {}
            USER_CONTROL => match UserControl::parse(&m.payload)? {
                UserControl::PingRequest(t) => {
                    return Ok(ControlOutcome::Answer(UserControl::PingResponse(t)))
                }
                uc @ UserControl::SetBufferLength { .. } => return Ok(ControlOutcome::Event(uc)),
                _ => {}
            },
            _ => return Ok(ControlOutcome::NotControl),
        }
        Ok(ControlOutcome::Done)
    }

    /// The Acknowledgement sequence number to send, when the peer's window
    /// has been received since the last one.
    pub fn ack_due(&mut self) -> Option<u32> {
        let window = self.peer_window.filter(|w| *w > 0)?;
        if self.received - self.last_ack < u64::from(window) {
            return None;
        }
        self.last_ack = self.received;
        Some((self.received & 0xFFFF_FFFF) as u32)
    }
}
