//! The RTMP chunk stream: splitting messages into chunks and reassembling them.
//!
//! The decoder is incremental and never consumes a partial chunk: it parses a
//! chunk only once the whole chunk is in the input buffer, so a caller can
//! feed any split of the byte stream. Every length read from the wire is
//! checked against the configured limits before anything is allocated, and
//! partial messages grow only as their bytes actually arrive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The chunk size every RTMP peer starts with.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// The largest chunk size the protocol can express (the top bit must be 0).
pub const MAX_PROTOCOL_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("message of {declared} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { declared: usize, limit: usize },
    #[error(
        "chunk size {0} is invalid (must be 1..={MAX_PROTOCOL_CHUNK_SIZE}) or above our limit"
    )]
    BadChunkSize(u32),
    #[error("chunk stream {0} continues a message it never started")]
    NoPreviousHeader(u32),
    #[error("more than {0} chunk streams with partial messages")]
    TooManyChunkStreams(usize),
    #[error("partial messages of all connections exceed the server's budget of {0} bytes")]
    BudgetExhausted(usize),
    #[error("partial messages exceed {0} bytes in total")]
    TooMuchBuffered(usize),
    #[error("malformed control message: {0}")]
    BadControl(&'static str),
    #[error("malformed aggregate message: {0}")]
    BadAggregate(&'static str),
}

/// One reassembled RTMP message: what the decoder yields and the encoder
/// writes (the `message` module reads its payloads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub type_id: u8,
    pub stream_id: u32,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Limits the decoder enforces on what the peer declares.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Largest single message (RTMP allows 16 MiB - 1).
    pub max_message_size: usize,
    /// Largest chunk size the peer may set.
    pub max_chunk_size: u32,
    /// Most chunk streams that may hold a partial message at once.
    pub max_partial_streams: usize,
    /// Most bytes held in partial messages across all chunk streams.
    pub max_buffered: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_size: 8 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            max_partial_streams: 64,
            max_buffered: 16 * 1024 * 1024,
        }
    }
}

impl ChunkLimits {
    /// For a connection that has not been allowed to publish or play yet:
    /// commands only (a `connect` with every Enhanced RTMP capability is a
    /// few KiB), so an anonymous peer can hold at most this much.
    pub const UNAUTHORISED: ChunkLimits = ChunkLimits {
        max_message_size: 64 * 1024,
        max_chunk_size: 16 * 1024 * 1024,
        max_partial_streams: 4,
        max_buffered: 128 * 1024,
    };
}

/// Bytes of partially received messages held by every connection at once:
/// one budget shared by all decoders, so many connections each within
/// their own limit still cannot exhaust memory together. Atomic counting
/// only (no I/O, no clock).
#[derive(Debug)]
pub struct MessageBudget {
    used: AtomicUsize,
    limit: usize,
}

impl MessageBudget {
    pub fn new(limit: usize) -> Self {
        MessageBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What the decoder remembers per chunk stream id (header compression state).
#[derive(Debug, Default)]
struct InboundStream {
    /// Absolute timestamp of the last message started on this chunk stream.
    timestamp: u32,
    /// The last header's timestamp field (delta or absolute): type-3 headers
    /// that start a new message repeat it, the way ffmpeg and librtmp read it.
    timestamp_field: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    /// Whether the last header carried an extended timestamp; type-3 chunks
    /// then carry one too.
    extended: bool,
    /// False until a type-0 header (or a type-1/2 after it) has set the fields.
    initialised: bool,
    /// The message being reassembled, if one is in progress.
    partial: Option<BytesMut>,
}

/// Bytes reserved up front for a message that spans chunks.
const PARTIAL_RESERVE: usize = 256 * 1024;
/// Messages in one chunk up to this size are cut from [`SMALL_ARENA`]-byte
/// arenas (see `ChunkDecoder::apply`).
const SMALL_MESSAGE: usize = 2048;
const SMALL_ARENA: usize = 16 * 1024;

/// Reassembles messages from chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: usize,
    limits: ChunkLimits,
    streams: HashMap<u32, InboundStream>,
    buffered: usize,
    /// Chunk streams holding a partial message: counted as they change,
    /// since a peer can open up to 65599 chunk streams and counting them
    /// per chunk made every chunk cost that much.
    partial_streams: usize,
    /// The budget shared with every other connection, if any; `buffered`
    /// bytes of it are this decoder's.
    budget: Option<Arc<MessageBudget>>,
    /// The arena small whole messages are cut from (its unused rest).
    small: BytesMut,
}

impl Drop for ChunkDecoder {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(self.buffered);
        }
    }
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: HashMap::new(),
            buffered: 0,
            partial_streams: 0,
            small: BytesMut::new(),
            budget: None,
        }
    }

    /// Counts this decoder's partial messages against `budget` too.
    pub fn set_budget(&mut self, budget: Arc<MessageBudget>) {
        if let Some(old) = self.budget.take() {
            old.give_back(self.buffered);
        }
        if budget.take(self.buffered) {
            self.budget = Some(budget);
        }
    }

    /// Replaces the limits (a session raises them once its client is
    /// allowed to publish or play). Already buffered bytes stay.
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> ChunkLimits {
        self.limits
    }

    /// Gives back `n` buffered bytes (a partial message completed or dropped).
    fn release(&mut self, n: usize) {
        self.buffered -= n;
        if let Some(b) = &self.budget {
            b.give_back(n);
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_PROTOCOL_CHUNK_SIZE || size > self.limits.max_chunk_size {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Drops the partial message on a chunk stream (the Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            if let Some(p) = s.partial.take() {
                self.partial_streams -= 1;
                self.release(p.len());
            }
        }
    }

    /// Decodes at most one chunk from the front of `input`. Returns a message
    /// when that chunk completed one. `Ok(None)` with `input` unchanged means
    /// more bytes are needed; `Ok(None)` with input consumed means a chunk was
    /// taken that did not finish its message — call again.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        let Some(header) = self.peek_header(input)? else {
            return Ok(None);
        };
        let need = header.header_len + header.payload_len;
        if input.len() < need {
            return Ok(None);
        }
        input.advance(header.header_len);
        let chunk = input.split_to(header.payload_len);
        self.apply(header, chunk)
    }

    fn peek_header(&mut self, input: &[u8]) -> Result<Option<ParsedHeader>, ChunkError> {
        let Some(&b0) = input.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match input.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match input.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let prev = self.streams.get(&csid);
        let field_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(fields) = input.get(pos..pos + field_len) else {
            return Ok(None);
        };
        pos += field_len;
        let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);

        let continuing = prev.is_some_and(|p| p.partial.is_some());
        if fmt != 0 && !prev.is_some_and(|p| p.initialised) {
            return Err(ChunkError::NoPreviousHeader(csid));
        }
        let mut h = ParsedHeader {
            fmt,
            csid,
            header_len: 0,
            payload_len: 0,
            timestamp_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: false,
            new_message: true,
        };
        match (fmt, prev) {
            (0, _) => {
                h.timestamp_field = be24(&fields[0..3]);
                h.length = be24(&fields[3..6]) as usize;
                h.type_id = fields[6];
                h.stream_id = u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]);
            }
            (1, Some(p)) => {
                h.timestamp_field = be24(&fields[0..3]);
                h.length = be24(&fields[3..6]) as usize;
                h.type_id = fields[6];
                h.stream_id = p.stream_id;
            }
            (2, Some(p)) => {
                h.timestamp_field = be24(&fields[0..3]);
                h.length = p.length;
                h.type_id = p.type_id;
                h.stream_id = p.stream_id;
            }
            (_, Some(p)) => {
                h.timestamp_field = p.timestamp_field;
                h.length = p.length;
                h.type_id = p.type_id;
                h.stream_id = p.stream_id;
                h.extended = p.extended;
                h.new_message = !continuing;
            }
            (_, None) => return Err(ChunkError::NoPreviousHeader(csid)),
        }
        if fmt != 3 {
            // A type 0-2 header always starts a new message; one arriving in
            // the middle of a message abandons it, like an Abort.
            h.extended = h.timestamp_field == EXTENDED_TIMESTAMP;
        }
        if h.extended {
            let Some(ext) = input.get(pos..pos + 4) else {
                return Ok(None);
            };
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            if fmt == 3 && !h.new_message {
                // Continuation chunks repeat the extended timestamp in most
                // implementations but not all: only skip it when it matches.
                if ext == prev.map_or(0, |p| p.timestamp_field) {
                    pos += 4;
                }
            } else {
                h.timestamp_field = ext;
                pos += 4;
            }
        }
        if h.length > self.limits.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                declared: h.length,
                limit: self.limits.max_message_size,
            });
        }
        let already = if h.new_message {
            0
        } else {
            prev.and_then(|p| p.partial.as_ref()).map_or(0, |b| b.len())
        };
        h.header_len = pos;
        h.payload_len = (h.length - already.min(h.length)).min(self.chunk_size);
        Ok(Some(h))
    }

    fn apply(&mut self, h: ParsedHeader, chunk: BytesMut) -> Result<Option<Message>, ChunkError> {
        let s = self.streams.entry(h.csid).or_default();
        if h.new_message {
            if let Some(old) = s.partial.take() {
                self.partial_streams -= 1;
                self.buffered -= old.len();
                if let Some(b) = &self.budget {
                    b.give_back(old.len());
                }
            }
            s.timestamp = match h.fmt {
                0 => h.timestamp_field,
                _ => s.timestamp.wrapping_add(h.timestamp_field),
            };
            s.timestamp_field = h.timestamp_field;
            s.length = h.length;
            s.type_id = h.type_id;
            s.stream_id = h.stream_id;
            s.extended = h.extended;
            s.initialised = true;
        }
        if chunk.len() == s.length {
            // Whole message in one chunk: one copy. Handing out a slice of
            // the input buffer instead would pin that whole buffer for as
            // long as the frame lives (a segment window: seconds), so every
            // read would need a fresh buffer.
            let payload = if chunk.len() <= SMALL_MESSAGE {
                // Small ones (audio frames, most commands) are cut from a
                // shared arena: one allocation for many messages, where
                // each had two (its bytes, then the shared count on its
                // first clone). The arena lives as long as its last message;
                // messages in one are neighbours in time, so they go together.
                if self.small.capacity() - self.small.len() < chunk.len() {
                    self.small = BytesMut::with_capacity(SMALL_ARENA);
                }
                self.small.extend_from_slice(&chunk);
                self.small.split().freeze()
            } else {
                Bytes::copy_from_slice(&chunk)
            };
            return Ok(Some(Message {
                type_id: s.type_id,
                stream_id: s.stream_id,
                timestamp: s.timestamp,
                payload,
            }));
        }
        let partial = match s.partial.as_mut() {
            Some(p) => p,
            None => {
                if self.partial_streams >= self.limits.max_partial_streams {
                    return Err(ChunkError::TooManyChunkStreams(
                        self.limits.max_partial_streams,
                    ));
                }
                self.partial_streams += 1;
                // Sized for the whole message when that is modest; a big
                // declared length only gets memory as its bytes arrive.
                s.partial
                    .insert(BytesMut::with_capacity(s.length.min(PARTIAL_RESERVE)))
            }
        };
        if self.buffered + chunk.len() > self.limits.max_buffered {
            return Err(ChunkError::TooMuchBuffered(self.limits.max_buffered));
        }
        if let Some(b) = &self.budget {
            if !b.take(chunk.len()) {
                return Err(ChunkError::BudgetExhausted(b.limit()));
            }
        }
        self.buffered += chunk.len();
        if partial.capacity() - partial.len() < chunk.len() {
            // Past the first reservation: grow once to the declared length
            // (already checked against max_message_size and max_buffered).
            partial.reserve(s.length - partial.len());
        }
        partial.extend_from_slice(&chunk);
        if partial.len() < s.length {
            return Ok(None);
        }
        let payload = s.partial.take().unwrap_or_default();
        self.buffered -= payload.len();
        self.partial_streams -= 1;
        if let Some(b) = &self.budget {
            b.give_back(payload.len());
        }
        Ok(Some(Message {
            type_id: s.type_id,
            stream_id: s.stream_id,
            timestamp: s.timestamp,
            payload: payload.freeze(),
        }))
    }
}

#[derive(Debug)]
struct ParsedHeader {
    fmt: u8,
    csid: u32,
    header_len: usize,
    payload_len: usize,
    timestamp_field: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    new_message: bool,
}

/// What the encoder remembers per chunk stream for header compression.
#[derive(Clone, Copy, Debug)]
struct OutboundStream {
    timestamp: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
}

/// Splits messages into chunks.
///
/// Header compression is deliberately conservative: type 0 for the first
/// message on a chunk stream, when the message stream changes or time goes
/// backwards; otherwise type 1 or 2 with a delta. Every decoder (ffmpeg,
/// librtmp, Flash) reads those the same way, unlike type-3 message starts.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: usize,
    streams: HashMap<u32, OutboundStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Changes the outgoing chunk size. The caller must send Set Chunk Size
    /// to the peer before the next message.
    pub fn set_chunk_size(&mut self, size: usize) {
        self.chunk_size = size.clamp(1, MAX_PROTOCOL_CHUNK_SIZE as usize);
    }

    /// Writes one message whose payload is the concatenation of `parts`
    /// (so a tag header and a shared frame payload need no joining copy).
    pub fn write(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        parts: &[&[u8]],
        out: &mut BytesMut,
    ) {
        let length: usize = parts.iter().map(|p| p.len()).sum();
        let prev = self.streams.get(&csid).copied();
        let (fmt, field) = match prev {
            Some(p) if p.stream_id == stream_id && timestamp >= p.timestamp => {
                let delta = timestamp - p.timestamp;
                if p.length == length && p.type_id == type_id {
                    (2u8, delta)
                } else {
                    (1u8, delta)
                }
            }
            _ => (0u8, timestamp),
        };
        self.streams.insert(
            csid,
            OutboundStream {
                timestamp,
                length,
                type_id,
                stream_id,
            },
        );
        let extended = field >= EXTENDED_TIMESTAMP;
        let field24 = if extended { EXTENDED_TIMESTAMP } else { field };

        out.reserve(length + 18 + length / self.chunk_size.max(1) * 8);
        put_basic_header(out, fmt, csid);
        out.put_slice(&field24.to_be_bytes()[1..]);
        if fmt <= 1 {
            out.put_slice(&(length as u32).to_be_bytes()[1..]);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        if extended {
            out.put_u32(field);
        }

        let mut in_chunk = 0usize;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                if in_chunk == self.chunk_size {
                    put_basic_header(out, 3, csid);
                    if extended {
                        out.put_u32(field);
                    }
                    in_chunk = 0;
                }
                let n = part.len().min(self.chunk_size - in_chunk);
                out.put_slice(&part[..n]);
                part = &part[n..];
                in_chunk += n;
            }
        }
    }

    /// Convenience for a single-part message.
    pub fn write_message(&mut self, csid: u32, msg: &Message, out: &mut BytesMut) {
        self.write(
            csid,
            msg.type_id,
            msg.stream_id,
            msg.timestamp,
            &[&msg.payload],
            out,
        );
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let v = csid.clamp(320, 65599) - 64;
            out.put_u8((fmt << 6) | 1);
            out.put_u8((v & 0xFF) as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

/// Decodes every complete message in `input` (for tests and benches).
pub fn decode_all(
    decoder: &mut ChunkDecoder,
    input: &mut BytesMut,
) -> Result<Vec<Message>, ChunkError> {
    let mut out = Vec::new();
    loop {
        let before = input.len();
        match decoder.decode(input)? {
            Some(m) => out.push(m),
            None if input.len() == before => return Ok(out),
            None => {}
        }
    }
}

/// Builds a message from parts (tests and simple callers).
pub fn message(type_id: u8, stream_id: u32, timestamp: u32, payload: impl Into<Bytes>) -> Message {
    Message {
        type_id,
        stream_id,
        timestamp,
        payload: payload.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(msgs: &[(u32, Message)], chunk_size: usize, split: usize) -> Vec<Message> {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk_size);
        let mut wire = BytesMut::new();
        for (csid, m) in msgs {
            enc.write_message(*csid, m, &mut wire);
        }
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(chunk_size as u32).unwrap();
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(split.max(1)) {
            input.extend_from_slice(piece);
            out.extend(decode_all(&mut dec, &mut input).unwrap());
        }
        assert!(input.is_empty(), "{} bytes left over", input.len());
        out
    }

    #[test]
    fn small_whole_messages_share_an_arena_and_big_ones_do_not() {
        let small: Vec<Message> = (0..40u8)
            .map(|i| message(8, 1, u32::from(i) * 21, vec![i; 400]))
            .collect();
        let big = message(9, 1, 900, vec![7u8; 3000]);
        let mut msgs: Vec<(u32, Message)> = small.iter().map(|m| (4, m.clone())).collect();
        msgs.push((6, big.clone()));
        let out = roundtrip(&msgs, 4096, 1000);
        assert_eq!(out[..40], small[..], "the payloads are intact");
        assert_eq!(out[40], big);
        // Neighbours in one arena: each payload starts where the last ended,
        // until an arena is full (16 KiB holds 40 of these).
        for w in out[..40].windows(2) {
            let end = w[0].payload.as_ptr() as usize + w[0].payload.len();
            assert_eq!(w[1].payload.as_ptr() as usize, end);
        }
        let last = &out[39].payload;
        let after = last.as_ptr() as usize + last.len();
        assert_ne!(
            out[40].payload.as_ptr() as usize,
            after,
            "a big one has its own"
        );
    }

    #[test]
    fn single_small_message() {
        let m = message(20, 0, 0, &b"hello"[..]);
        assert_eq!(roundtrip(&[(3, m.clone())], 128, 1), vec![m]);
    }

    #[test]
    fn large_message_is_chunked_and_reassembled() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let m = message(9, 1, 40, payload);
        for cs in [1, 2, 127, 128, 4096, 60_000] {
            assert_eq!(roundtrip(&[(6, m.clone())], cs, 7), vec![m.clone()]);
        }
    }

    #[test]
    fn extended_timestamps_on_continuations() {
        let m1 = message(9, 1, 0x0100_0000, vec![1u8; 300]);
        let m2 = message(9, 1, 0x0100_0021, vec![2u8; 300]);
        let m3 = message(9, 1, u32::MAX, vec![3u8; 10]);
        let out = roundtrip(&[(6, m1.clone()), (6, m2.clone()), (6, m3.clone())], 128, 3);
        assert_eq!(out, vec![m1, m2, m3]);
    }

    #[test]
    fn ffmpeg_style_type3_message_start_repeats_delta() {
        // fmt 0 at ts 0 len 2, fmt 2 delta 40, fmt 3 (new message, same delta).
        let wire: Vec<u8> = vec![
            0x06, 0, 0, 0, 0, 0, 2, 9, 1, 0, 0, 0, 0xAA, 0xBB, // fmt0
            0x86, 0, 0, 40, 0xCC, 0xDD, // fmt2
            0xC6, 0xEE, 0xFF, // fmt3 new message
        ];
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut input = BytesMut::from(&wire[..]);
        let out = decode_all(&mut dec, &mut input).unwrap();
        let ts: Vec<u32> = out.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0, 40, 80]);
        assert_eq!(&out[2].payload[..], &[0xEE, 0xFF]);
    }

    #[test]
    fn continuation_without_repeated_extended_timestamp() {
        // Some encoders omit the extended timestamp on type-3 continuations.
        let mut wire = vec![
            0x06, 0xFF, 0xFF, 0xFF, 0, 0, 4, 9, 1, 0, 0, 0, 0x12, 0x34, 0x56, 0x78,
        ];
        wire.extend_from_slice(&[1, 2]);
        wire.push(0xC6);
        wire.extend_from_slice(&[3, 4]);
        // The next message, so the decoder can see the 4 bytes after the
        // type-3 header are not a repeated extended timestamp.
        wire.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 1, 20, 0, 0, 0, 0, 5]);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(2).unwrap();
        let mut input = BytesMut::from(&wire[..]);
        let out = decode_all(&mut dec, &mut input).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].timestamp, 0x1234_5678);
        assert_eq!(&out[0].payload[..], &[1, 2, 3, 4]);
    }

    #[test]
    fn interleaved_chunk_streams() {
        let a = message(9, 1, 0, vec![0xAAu8; 300]);
        let b = message(8, 1, 0, vec![0xBBu8; 300]);
        // Encode each separately, then interleave chunk by chunk.
        let mut enc = ChunkEncoder::new();
        let mut wa = BytesMut::new();
        let mut wb = BytesMut::new();
        enc.write_message(6, &a, &mut wa);
        enc.write_message(4, &b, &mut wb);
        // chunk boundaries: first chunk 12 + 128, then 1 + 128, then 1 + 44.
        let split = |w: &BytesMut| vec![w[..140].to_vec(), w[140..269].to_vec(), w[269..].to_vec()];
        let (pa, pb) = (split(&wa), split(&wb));
        let mut wire = BytesMut::new();
        for i in 0..3 {
            wire.extend_from_slice(&pa[i]);
            wire.extend_from_slice(&pb[i]);
        }
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let out = decode_all(&mut dec, &mut wire).unwrap();
        assert_eq!(out, vec![a, b]);
    }

    #[test]
    fn oversized_message_is_rejected_before_allocating() {
        let wire = [0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
        let mut dec = ChunkDecoder::new(ChunkLimits {
            max_message_size: 1024,
            ..ChunkLimits::default()
        });
        let mut input = BytesMut::from(&wire[..]);
        assert!(matches!(
            dec.decode(&mut input),
            Err(ChunkError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn bad_chunk_sizes() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        assert!(dec.set_chunk_size(0).is_err());
        assert!(dec.set_chunk_size(0x8000_0000).is_err());
        assert!(dec.set_chunk_size(64 * 1024 * 1024).is_err());
        assert!(dec.set_chunk_size(4096).is_ok());
    }

    #[test]
    fn type1_without_previous_header_is_error() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut input = BytesMut::from(&[0x46, 0, 0, 0, 0, 0, 1, 9, 0][..]);
        assert_eq!(dec.decode(&mut input), Err(ChunkError::NoPreviousHeader(6)));
    }

    #[test]
    fn abort_drops_partial() {
        let m = message(9, 1, 0, vec![7u8; 300]);
        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        enc.write_message(6, &m, &mut wire);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut first = wire.split_to(140);
        assert_eq!(dec.decode(&mut first).unwrap(), None);
        assert_eq!(dec.buffered, 128);
        dec.abort(6);
        assert_eq!(dec.buffered, 0);
    }

    #[test]
    fn too_many_partial_streams() {
        let mut dec = ChunkDecoder::new(ChunkLimits {
            max_partial_streams: 2,
            ..ChunkLimits::default()
        });
        let mut wire = BytesMut::new();
        for csid in 3..6u8 {
            wire.extend_from_slice(&[csid, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0]);
            wire.extend_from_slice(&[0u8; 128]);
        }
        assert_eq!(
            decode_all(&mut dec, &mut wire),
            Err(ChunkError::TooManyChunkStreams(2))
        );
    }

    /// Half-sent messages of many decoders draw on one budget: past it the
    /// next chunk is refused, and what a decoder held goes back to the
    /// budget when its messages complete or the decoder is dropped.
    #[test]
    fn partial_messages_share_one_budget() {
        let budget = Arc::new(MessageBudget::new(3000));
        // fmt 0, csid 3, a 2000-byte message; the first 128-byte chunk only.
        let half_sent = || {
            let mut w = vec![0x03, 0, 0, 0, 0, 0x07, 0xD0, 9, 1, 0, 0, 0];
            w.extend_from_slice(&[0xAB; 128]);
            BytesMut::from(&w[..])
        };
        let mut decoders: Vec<ChunkDecoder> = Vec::new();
        for _ in 0..23 {
            let mut d = ChunkDecoder::new(ChunkLimits::default());
            d.set_budget(budget.clone());
            assert_eq!(d.decode(&mut half_sent()), Ok(None));
            decoders.push(d);
        }
        assert_eq!(budget.used(), 23 * 128);
        let mut over = ChunkDecoder::new(ChunkLimits::default());
        over.set_budget(budget.clone());
        assert_eq!(
            over.decode(&mut half_sent()),
            Err(ChunkError::BudgetExhausted(3000))
        );
        decoders.truncate(3);
        assert_eq!(budget.used(), 3 * 128, "dropped decoders gave theirs back");
        // A completed message gives its bytes back too.
        let d = &mut decoders[0];
        let mut rest = BytesMut::new();
        for left in [128usize; 14].iter().chain([2000 - 15 * 128].iter()) {
            rest.extend_from_slice(&[0xC3]);
            rest.extend_from_slice(&vec![0xCD; *left]);
        }
        let done = decode_all(d, &mut rest).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].payload.len(), 2000);
        assert_eq!(budget.used(), 2 * 128);
    }

    /// Every chunk used to count the partial messages over all chunk
    /// streams ever seen: 2.7 MB of empty messages on 65 280 chunk stream
    /// ids took 20 s of CPU (release). The count is now kept as streams
    /// change (`partial_streams`); this checks the result on that input,
    /// and benches/parsing.rs (`chunk/many_streams`) measures its speed.
    #[test]
    fn many_chunk_streams_cost_linear_time() {
        let mut wire = Vec::new();
        for round in 0..3u8 {
            for csid in 320u32..65600 {
                let v = csid - 64;
                wire.extend_from_slice(&[0x01, v as u8, (v >> 8) as u8]);
                wire.extend_from_slice(&[0, 0, round, 0, 0, 0, 9, 1, 0, 0, 0]);
            }
        }
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut input = BytesMut::from(&wire[..]);
        let out = decode_all(&mut dec, &mut input).unwrap();
        assert_eq!(out.len(), 3 * 65280);
        assert_eq!(dec.partial_streams, 0, "every message completed");
    }

    #[test]
    fn partial_stream_count_follows_aborts_and_completions() {
        let mut dec = ChunkDecoder::new(ChunkLimits {
            max_partial_streams: 1,
            ..ChunkLimits::default()
        });
        let mut enc = ChunkEncoder::new();
        for csid in [3, 4, 5] {
            // A 300-byte message: partial after its first chunk.
            let mut wire = BytesMut::new();
            enc.write_message(csid, &message(9, 1, 0, vec![1u8; 300]), &mut wire);
            let mut first = wire.split_to(140);
            assert_eq!(dec.decode(&mut first).unwrap(), None);
            assert_eq!(dec.partial_streams, 1);
            if csid == 4 {
                dec.abort(csid);
            } else {
                assert_eq!(decode_all(&mut dec, &mut wire).unwrap().len(), 1);
            }
            assert_eq!(dec.partial_streams, 0);
        }
    }

    #[test]
    fn three_byte_basic_header() {
        let m = message(9, 1, 5, vec![9u8; 200]);
        assert_eq!(roundtrip(&[(400, m.clone())], 128, 5), vec![m.clone()]);
        assert_eq!(roundtrip(&[(100, m.clone())], 128, 5), vec![m]);
    }

    fn arb_message() -> impl Strategy<Value = (u32, Message)> {
        (
            prop_oneof![2u32..64, 64u32..320, 320u32..65600],
            prop::sample::select(vec![8u8, 9, 18, 20]),
            0u32..4,
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..2000),
        )
            .prop_map(|(csid, t, sid, ts, p)| (csid, message(t, sid, ts, p)))
    }

    proptest! {
        #[test]
        fn prop_round_trip(msgs in prop::collection::vec(arb_message(), 1..20),
                           chunk_size in prop_oneof![1usize..300, Just(128usize), Just(4096usize), Just(65536usize)],
                           split in 1usize..5000) {
            let out = roundtrip(&msgs, chunk_size, split);
            let expect: Vec<Message> = msgs.into_iter().map(|(_, m)| m).collect();
            prop_assert_eq!(out, expect);
        }

        #[test]
        fn prop_garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..4000), cs in 1u32..512) {
            let mut dec = ChunkDecoder::new(ChunkLimits { max_message_size: 65536, ..ChunkLimits::default() });
            let _ = dec.set_chunk_size(cs);
            let mut input = BytesMut::from(&data[..]);
            let _ = decode_all(&mut dec, &mut input);
        }
    }
}
