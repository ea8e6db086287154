//! RTMFP, RTMP's messages over UDP (RFC 7016, the transport, with the
//! Flash profile of RFC 7425), sans-I/O: no sockets, no tasks, no clock
//! reads (times are passed in).
//!
//! The layers, from the datagram up:
//!
//! * `crypto`: a datagram is a 4-byte scrambled session id, then AES-128-CBC
//!   ciphertext; the plaintext starts with a 16-bit checksum. The default
//!   key during the handshake, then one key per direction from a
//!   Diffie-Hellman exchange (groups 2, 5, 14).
//! * `packet`: the plaintext is a flags byte (mode, timestamps), then
//!   chunks (type, 16-bit length, body). `wire` holds the field encodings
//!   (big-endian integers, VLUs) and the bounded reader every parser uses.
//! * `handshake`: IHello → RHello (a stateless cookie) → IIKeying →
//!   RIKeying, with `flash` reading the profile's option lists (endpoint
//!   discriminators, certificates, session key components).
//! * Next (issue 24): sessions with flows of user data (sequence numbers,
//!   fragments, acknowledgements, per-flow reliability, congestion
//!   control), the Flash profile's flow metadata carrying RTMP messages,
//!   and a UDP listener through the stream registry.
//!
//! Every parser here reads untrusted bytes through `wire::Reader`: each
//! length is checked against what is left before it is used, nothing is
//! allocated from a length on the wire, and a bad packet is an `Error`.

pub mod bridge;
pub mod crypto;
pub mod flash;
pub mod handshake;
pub mod packet;
pub mod recv;
pub mod send;
pub mod session;
pub mod wire;

/// Why a datagram, a chunk or a handshake step was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("a field runs past the end of its chunk or packet")]
    Truncated,
    #[error("a variable-length integer is longer than 64 bits")]
    BadVlu,
    #[error("a packet of {0} bytes is not a session id and whole AES blocks")]
    NotBlocks(usize),
    #[error("checksum mismatch (a wrong key, or a damaged packet)")]
    Checksum,
    #[error("packet mode 0 (neither initiator, responder nor startup)")]
    BadMode,
    #[error("malformed chunk 0x{0:02x}")]
    BadChunk(u8),
    #[error("chunk 0x{0:02x} is not expected here")]
    Unexpected(u8),
    #[error("the endpoint discriminator names no hostname, URL or fingerprint")]
    BadDiscriminator,
    #[error("an IHello for a peer's fingerprint (peer introduction is not supported)")]
    PeerIntroduction,
    #[error("a tag of {0} bytes")]
    BadTag(usize),
    #[error("the cookie is not castgate's, not for this address, or expired")]
    BadCookie,
    #[error("a certificate with too many options")]
    BadCertificate,
    #[error("no Diffie-Hellman public key in a group castgate knows")]
    NoKey,
    #[error("no Diffie-Hellman group in common")]
    NoCommonGroup,
    #[error("a Diffie-Hellman public key outside its group")]
    BadPublicKey,
    #[error("an HMAC length outside 4..=32 bytes")]
    BadHmacLength,
    #[error("a session sequence number seen before (a replayed packet)")]
    Replay,
}
