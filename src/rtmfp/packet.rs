//! RTMFP packets and chunks (RFC 7016 §2.2–2.3), once decrypted.
//!
//! A packet's plaintext is a flags byte (time-critical marks, whether a
//! timestamp and a timestamp echo follow, and the mode: initiator,
//! responder or startup), the timestamps (16 bits, 4 ms ticks), then
//! chunks: a type byte, a 16-bit length and that many bytes. The bytes after
//! the last whole chunk are padding (0xFF from the cipher layer, or a 0x00
//! or 0xFF padding chunk), never an error.
//!
//! [`Chunk`] borrows from the packet: parsing allocates nothing, and every
//! length is checked against the chunk it is in.

use super::wire::{put_field, put_vlu, Reader};
use super::Error;

/// Flags byte bits (RFC 7016 §2.2.4).
const FLAG_TIME_CRITICAL: u8 = 0x80;
const FLAG_TIME_CRITICAL_REVERSE: u8 = 0x40;
const FLAG_TIMESTAMP: u8 = 0x08;
const FLAG_TIMESTAMP_ECHO: u8 = 0x04;
const MODE_MASK: u8 = 0x03;

/// A chunk's type byte and length.
pub const CHUNK_HEADER: usize = 3;

/// Who sent a packet: the session's two ends, or a startup (handshake)
/// packet, whose session id is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Initiator = 1,
    Responder = 2,
    Startup = 3,
}

/// The packet header: everything before the first chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub mode: Mode,
    pub time_critical: bool,
    pub time_critical_reverse: bool,
    /// The sender's clock, in 4 ms ticks, modulo 2^16.
    pub timestamp: Option<u16>,
    /// The last timestamp the sender received, plus the ticks since.
    pub timestamp_echo: Option<u16>,
}

impl Header {
    pub fn new(mode: Mode) -> Header {
        Header {
            mode,
            time_critical: false,
            time_critical_reverse: false,
            timestamp: None,
            timestamp_echo: None,
        }
    }

    /// Reads the header; the reader is left at the first chunk.
    pub fn parse(r: &mut Reader<'_>) -> Result<Header, Error> {
        let flags = r.u8()?;
        let mode = match flags & MODE_MASK {
            1 => Mode::Initiator,
            2 => Mode::Responder,
            3 => Mode::Startup,
            _ => return Err(Error::BadMode),
        };
        let timestamp = if flags & FLAG_TIMESTAMP != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        let timestamp_echo = if flags & FLAG_TIMESTAMP_ECHO != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        Ok(Header {
            mode,
            time_critical: flags & FLAG_TIME_CRITICAL != 0,
            time_critical_reverse: flags & FLAG_TIME_CRITICAL_REVERSE != 0,
            timestamp,
            timestamp_echo,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = self.mode as u8;
        if self.time_critical {
            flags |= FLAG_TIME_CRITICAL;
        }
        if self.time_critical_reverse {
            flags |= FLAG_TIME_CRITICAL_REVERSE;
        }
        if self.timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        if self.timestamp_echo.is_some() {
            flags |= FLAG_TIMESTAMP_ECHO;
        }
        out.push(flags);
        for t in [self.timestamp, self.timestamp_echo].into_iter().flatten() {
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
}

/// Chunk type bytes (RFC 7016 §2.3).
pub mod kind {
    pub const IHELLO: u8 = 0x30;
    pub const FORWARDED_IHELLO: u8 = 0x0f;
    pub const RHELLO: u8 = 0x70;
    pub const REDIRECT: u8 = 0x71;
    pub const COOKIE_CHANGE: u8 = 0x79;
    pub const IIKEYING: u8 = 0x38;
    pub const RIKEYING: u8 = 0x78;
    pub const PING: u8 = 0x01;
    pub const PING_REPLY: u8 = 0x41;
    pub const USER_DATA: u8 = 0x10;
    pub const NEXT_USER_DATA: u8 = 0x11;
    pub const ACK_BITMAP: u8 = 0x50;
    pub const ACK_RANGES: u8 = 0x51;
    pub const BUFFER_PROBE: u8 = 0x18;
    pub const FLOW_EXCEPTION: u8 = 0x5e;
    pub const CLOSE: u8 = 0x0c;
    pub const CLOSE_ACK: u8 = 0x4c;
    pub const PADDING: u8 = 0x00;
    pub const PADDING_FF: u8 = 0xff;
}

/// Where a user data fragment lies in its message (RFC 7016 §2.3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    Whole = 0x00,
    Begin = 0x10,
    End = 0x20,
    Middle = 0x30,
}

/// User data flags: a fragment's place, whether options precede the data,
/// whether the sender abandoned the message (a media flow's stale frame),
/// and whether this is the flow's final sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFlags {
    pub fragment: Fragment,
    pub options: bool,
    pub abandon: bool,
    pub fin: bool,
}

const DATA_OPTIONS: u8 = 0x80;
const DATA_FRAGMENT_MASK: u8 = 0x30;
const DATA_ABANDON: u8 = 0x02;
const DATA_FIN: u8 = 0x01;

impl DataFlags {
    fn from_byte(b: u8) -> DataFlags {
        DataFlags {
            fragment: match b & DATA_FRAGMENT_MASK {
                0x00 => Fragment::Whole,
                0x10 => Fragment::Begin,
                0x20 => Fragment::End,
                _ => Fragment::Middle,
            },
            options: b & DATA_OPTIONS != 0,
            abandon: b & DATA_ABANDON != 0,
            fin: b & DATA_FIN != 0,
        }
    }

    fn to_byte(self) -> u8 {
        let mut b = self.fragment as u8;
        if self.options {
            b |= DATA_OPTIONS;
        }
        if self.abandon {
            b |= DATA_ABANDON;
        }
        if self.fin {
            b |= DATA_FIN;
        }
        b
    }
}

/// A user data chunk's fields. For a Next User Data chunk the flow, the
/// sequence number and the forward sequence number come from the chunk
/// before it in the packet (`flow` is `None` until resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData<'a> {
    pub flags: DataFlags,
    /// `(flow id, sequence number, forward sequence number offset)`.
    pub position: Option<(u64, u64, u64)>,
    /// The option list's bytes, its end marker included (empty without
    /// the options flag): read with `flash::options`.
    pub options: &'a [u8],
    pub data: &'a [u8],
}

/// One chunk, borrowing the packet's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk<'a> {
    IHello {
        epd: &'a [u8],
        tag: &'a [u8],
    },
    RHello {
        tag: &'a [u8],
        cookie: &'a [u8],
        cert: &'a [u8],
    },
    IIKeying {
        session_id: u32,
        cookie: &'a [u8],
        cert: &'a [u8],
        skic: &'a [u8],
        signature: &'a [u8],
    },
    RIKeying {
        session_id: u32,
        skrc: &'a [u8],
        signature: &'a [u8],
    },
    CookieChange {
        old: &'a [u8],
        new: &'a [u8],
    },
    Ping(&'a [u8]),
    PingReply(&'a [u8]),
    UserData(UserData<'a>),
    Ack {
        /// Ranges (0x51) or a bitmap (0x50) follow the cumulative ack.
        ranges: bool,
        flow: u64,
        /// The receiver's free buffer, in 1024-byte blocks.
        buffer_blocks: u64,
        cumulative: u64,
        rest: &'a [u8],
    },
    BufferProbe {
        flow: u64,
    },
    FlowException {
        flow: u64,
        code: u64,
    },
    Close,
    CloseAck,
    /// Padding, and the chunks castgate does not act on (forwarded
    /// IHello, redirect, ECN reports): skipped.
    Other {
        kind: u8,
        body: &'a [u8],
    },
}

impl<'a> Chunk<'a> {
    /// Parses one chunk's body.
    pub fn parse(kind: u8, body: &'a [u8]) -> Result<Chunk<'a>, Error> {
        let mut r = Reader::new(body);
        let chunk = match kind {
            kind::IHELLO => Chunk::IHello {
                epd: r.field()?,
                tag: r.rest(),
            },
            kind::RHELLO => Chunk::RHello {
                tag: r.field()?,
                cookie: r.field()?,
                cert: r.rest(),
            },
            kind::IIKEYING => Chunk::IIKeying {
                session_id: r.u32()?,
                cookie: r.field()?,
                cert: r.field()?,
                skic: r.field()?,
                signature: r.rest(),
            },
            kind::RIKEYING => Chunk::RIKeying {
                session_id: r.u32()?,
                skrc: r.field()?,
                signature: r.rest(),
            },
            kind::COOKIE_CHANGE => Chunk::CookieChange {
                old: r.field()?,
                new: r.rest(),
            },
            kind::PING => Chunk::Ping(r.rest()),
            kind::PING_REPLY => Chunk::PingReply(r.rest()),
            kind::USER_DATA | kind::NEXT_USER_DATA => {
                let flags = DataFlags::from_byte(r.u8()?);
                let position = if kind == kind::USER_DATA {
                    let flow = r.vlu()?;
                    let seq = r.vlu()?;
                    let fsn_offset = r.vlu()?;
                    if fsn_offset > seq {
                        return Err(Error::BadChunk(kind));
                    }
                    Some((flow, seq, fsn_offset))
                } else {
                    None
                };
                let options = if flags.options {
                    let before = r.remaining();
                    skip_options(&mut r)?;
                    &before[..before.len() - r.remaining().len()]
                } else {
                    &[]
                };
                Chunk::UserData(UserData {
                    flags,
                    position,
                    options,
                    data: r.rest(),
                })
            }
            kind::ACK_BITMAP | kind::ACK_RANGES => Chunk::Ack {
                ranges: kind == kind::ACK_RANGES,
                flow: r.vlu()?,
                buffer_blocks: r.vlu()?,
                cumulative: r.vlu()?,
                rest: r.rest(),
            },
            kind::BUFFER_PROBE => Chunk::BufferProbe { flow: r.vlu()? },
            kind::FLOW_EXCEPTION => Chunk::FlowException {
                flow: r.vlu()?,
                code: r.vlu()?,
            },
            kind::CLOSE => Chunk::Close,
            kind::CLOSE_ACK => Chunk::CloseAck,
            _ => Chunk::Other { kind, body },
        };
        Ok(chunk)
    }

    pub fn kind(&self) -> u8 {
        match self {
            Chunk::IHello { .. } => kind::IHELLO,
            Chunk::RHello { .. } => kind::RHELLO,
            Chunk::IIKeying { .. } => kind::IIKEYING,
            Chunk::RIKeying { .. } => kind::RIKEYING,
            Chunk::CookieChange { .. } => kind::COOKIE_CHANGE,
            Chunk::Ping(_) => kind::PING,
            Chunk::PingReply(_) => kind::PING_REPLY,
            Chunk::UserData(d) if d.position.is_some() => kind::USER_DATA,
            Chunk::UserData(_) => kind::NEXT_USER_DATA,
            Chunk::Ack { ranges: true, .. } => kind::ACK_RANGES,
            Chunk::Ack { ranges: false, .. } => kind::ACK_BITMAP,
            Chunk::BufferProbe { .. } => kind::BUFFER_PROBE,
            Chunk::FlowException { .. } => kind::FLOW_EXCEPTION,
            Chunk::Close => kind::CLOSE,
            Chunk::CloseAck => kind::CLOSE_ACK,
            Chunk::Other { kind, .. } => *kind,
        }
    }

    /// Appends the chunk, header included. The body must fit 16 bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[self.kind(), 0, 0]);
        match self {
            Chunk::IHello { epd, tag } => {
                put_field(out, epd);
                out.extend_from_slice(tag);
            }
            Chunk::RHello { tag, cookie, cert } => {
                put_field(out, tag);
                put_field(out, cookie);
                out.extend_from_slice(cert);
            }
            Chunk::IIKeying {
                session_id,
                cookie,
                cert,
                skic,
                signature,
            } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                put_field(out, cookie);
                put_field(out, cert);
                put_field(out, skic);
                out.extend_from_slice(signature);
            }
            Chunk::RIKeying {
                session_id,
                skrc,
                signature,
            } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                put_field(out, skrc);
                out.extend_from_slice(signature);
            }
            Chunk::CookieChange { old, new } => {
                put_field(out, old);
                out.extend_from_slice(new);
            }
            Chunk::Ping(b) | Chunk::PingReply(b) => out.extend_from_slice(b),
            Chunk::UserData(d) => {
                out.push(d.flags.to_byte());
                if let Some((flow, seq, fsn_offset)) = d.position {
                    put_vlu(out, flow);
                    put_vlu(out, seq);
                    put_vlu(out, fsn_offset);
                }
                out.extend_from_slice(d.options);
                out.extend_from_slice(d.data);
            }
            Chunk::Ack {
                flow,
                buffer_blocks,
                cumulative,
                rest,
                ..
            } => {
                put_vlu(out, *flow);
                put_vlu(out, *buffer_blocks);
                put_vlu(out, *cumulative);
                out.extend_from_slice(rest);
            }
            Chunk::BufferProbe { flow } => put_vlu(out, *flow),
            Chunk::FlowException { flow, code } => {
                put_vlu(out, *flow);
                put_vlu(out, *code);
            }
            Chunk::Close | Chunk::CloseAck => {}
            Chunk::Other { body, .. } => out.extend_from_slice(body),
        }
        let len = out.len() - start - CHUNK_HEADER;
        debug_assert!(len <= usize::from(u16::MAX));
        out[start + 1..start + 3].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

/// Skips an option list up to and including its end marker (a zero
/// length). Each option is a VLU length, then a VLU type and a value.
fn skip_options(r: &mut Reader<'_>) -> Result<(), Error> {
    loop {
        if r.field()?.is_empty() {
            return Ok(());
        }
    }
}

/// The chunks of a packet's plaintext, after its header. A chunk whose
/// length runs past the packet, and padding, end it (RFC 7016 §2.3.1).
pub struct Chunks<'a> {
    rest: &'a [u8],
}

impl<'a> Chunks<'a> {
    pub fn new(after_header: &'a [u8]) -> Chunks<'a> {
        Chunks { rest: after_header }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let [kind, hi, lo, ..] = *self.rest else {
            return None;
        };
        if kind == kind::PADDING_FF || kind == kind::PADDING {
            self.rest = &[];
            return None;
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let body = self.rest.get(CHUNK_HEADER..CHUNK_HEADER + len)?;
        self.rest = &self.rest[CHUNK_HEADER + len..];
        Some(Chunk::parse(kind, body))
    }
}

/// Parses a decrypted packet: its header and its chunks.
pub fn parse(plain: &[u8]) -> Result<(Header, Chunks<'_>), Error> {
    let mut r = Reader::new(plain);
    let header = Header::parse(&mut r)?;
    Ok((header, Chunks::new(r.remaining())))
}

/// Builds one packet's plaintext under a size limit, leaving room in front
/// for the session id and the checksum (`crypto::PacketKey::seal`).
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
    limit: usize,
    chunks: usize,
}

impl Builder {
    /// A packet whose plaintext (header and chunks) is at most `limit` bytes.
    pub fn new(header: &Header, limit: usize) -> Builder {
        let mut buf = Vec::with_capacity(super::crypto::HEADER_ROOM + limit + 16);
        buf.resize(super::crypto::HEADER_ROOM, 0);
        header.encode(&mut buf);
        Builder {
            buf,
            limit: super::crypto::HEADER_ROOM + limit,
            chunks: 0,
        }
    }

    /// Bytes a chunk body may still take.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len() + CHUNK_HEADER)
    }

    /// Adds `chunk` if it fits; says whether it did.
    pub fn push(&mut self, chunk: &Chunk<'_>) -> bool {
        let before = self.buf.len();
        chunk.encode(&mut self.buf);
        if self.buf.len() > self.limit {
            self.buf.truncate(before);
            return false;
        }
        self.chunks += 1;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.chunks == 0
    }

    /// The buffer for `PacketKey::seal`.
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(chunks: &[Chunk<'_>], header: &Header) -> Vec<u8> {
        let mut out = Vec::new();
        header.encode(&mut out);
        for c in chunks {
            c.encode(&mut out);
        }
        out
    }

    #[test]
    fn padding_and_a_chunk_running_past_the_end_stop_the_chunks() {
        let h = Header::new(Mode::Startup);
        let mut p = encoded(&[Chunk::Ping(b"a")], &h);
        p.extend_from_slice(&[0xff; 9]);
        let (_, chunks) = parse(&p).unwrap();
        assert_eq!(chunks.collect::<Vec<_>>(), vec![Ok(Chunk::Ping(b"a"))]);
        let mut q = encoded(&[Chunk::Ping(b"a")], &h);
        q.extend_from_slice(&[kind::PING, 0x00, 0x05, 1, 2]);
        assert_eq!(parse(&q).unwrap().1.count(), 1);
    }

    #[test]
    fn a_bad_field_in_a_chunk_is_an_error_not_a_panic() {
        // IIKeying whose cookie length runs past the chunk.
        let body = [0, 0, 0, 1, 0x40, 1, 2];
        assert_eq!(Chunk::parse(kind::IIKEYING, &body), Err(Error::Truncated));
        // User data with a forward sequence offset beyond its sequence number.
        assert_eq!(
            Chunk::parse(kind::USER_DATA, &[0x00, 2, 1, 5]),
            Err(Error::BadChunk(kind::USER_DATA))
        );
        // Options without their end marker.
        assert_eq!(
            Chunk::parse(kind::USER_DATA, &[0x80, 2, 1, 0, 0x02, 0x00, 0x41]),
            Err(Error::Truncated)
        );
        assert_eq!(
            Header::parse(&mut Reader::new(&[0x00])),
            Err(Error::BadMode)
        );
    }

    #[test]
    fn the_builder_keeps_to_its_limit() {
        let h = Header::new(Mode::Responder);
        let mut b = Builder::new(&h, 40);
        assert!(b.push(&Chunk::Ping(&[0; 30])));
        assert!(!b.push(&Chunk::Ping(&[0; 10])));
        assert!(b.push(&Chunk::Ping(&[0; 3])));
        assert_eq!(b.room(), 0);
        assert_eq!(b.into_buf().len(), super::super::crypto::HEADER_ROOM + 40);
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn options() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((1u64..0x3000, bytes(20)), 0..3).prop_map(|opts| {
            let mut out = Vec::new();
            for (t, v) in opts {
                let mut o = Vec::new();
                put_vlu(&mut o, t);
                o.extend_from_slice(&v);
                put_field(&mut out, &o);
            }
            out.push(0);
            out
        })
    }

    proptest! {
        #[test]
        fn headers_and_chunks_round_trip(
            mode in prop_oneof![Just(Mode::Initiator), Just(Mode::Responder), Just(Mode::Startup)],
            tc in any::<(bool, bool)>(),
            ts in any::<(Option<u16>, Option<u16>)>(),
            a in bytes(80), b in bytes(80), c in bytes(80), d in bytes(80),
            id in any::<u32>(),
            n in any::<(u64, u64, u64)>(),
            data_flags in any::<u8>(),
            opts in options(),
            next in any::<bool>(),
        ) {
            let header = Header {
                mode,
                time_critical: tc.0,
                time_critical_reverse: tc.1,
                timestamp: ts.0,
                timestamp_echo: ts.1,
            };
            let mut flags = DataFlags::from_byte(data_flags);
            flags.options = !opts.is_empty() && data_flags & 1 == 0;
            let (seq, off) = (n.1.max(n.2), n.1.min(n.2));
            let chunks = vec![
                Chunk::IHello { epd: &a, tag: &b },
                Chunk::RHello { tag: &a, cookie: &b, cert: &c },
                Chunk::IIKeying { session_id: id, cookie: &a, cert: &b, skic: &c, signature: &d },
                Chunk::RIKeying { session_id: id, skrc: &a, signature: &b },
                Chunk::CookieChange { old: &a, new: &b },
                Chunk::Ping(&a),
                Chunk::PingReply(&b),
                Chunk::UserData(UserData {
                    flags,
                    position: if next { None } else { Some((n.0, seq, off)) },
                    options: if flags.options { &opts } else { &[] },
                    data: &c,
                }),
                Chunk::Ack { ranges: tc.0, flow: n.0, buffer_blocks: n.1, cumulative: n.2, rest: &d },
                Chunk::BufferProbe { flow: n.0 },
                Chunk::FlowException { flow: n.1, code: n.2 },
                Chunk::Close,
                Chunk::CloseAck,
                Chunk::Other { kind: 0xec, body: &d },
            ];
            let p = encoded(&chunks, &header);
            let (h, parsed) = parse(&p).unwrap();
            prop_assert_eq!(h, header);
            let parsed: Result<Vec<_>, _> = parsed.collect();
            prop_assert_eq!(parsed.unwrap(), chunks);
        }
    }
}
