//! RTMP handshake (C0/C1/C2 and S0/S1/S2), sans-I/O.
//!
//! Both sides are plain state machines: feed them whatever bytes arrived, in
//! any split, and send whatever they append to `out`. They never read past the
//! end of the handshake, so the first RTMP chunks, which often share a TCP
//! segment with C2 or S2, stay with the caller.
//!
//! Two flavours exist in the wild:
//!
//! * the *simple* handshake of the RTMP 1.0 spec: C1/S1 are a timestamp, four
//!   zero bytes and random filler, and C2/S2 echo the peer's C1/S1;
//! * the Flash Player 9 *digest* handshake (ffmpeg, OBS, Flash, librtmp with
//!   SWF verification): C1/S1 carry a version instead of the zero field and an
//!   HMAC-SHA256 digest at an offset derived from their own bytes, and C2/S2
//!   end with a signature keyed by the peer's digest. Players such as ffmpeg
//!   in play mode refuse servers that do not answer a digest C1 in kind.
//!
//! and, on the same port, RTMPE (C0 = 0x06): the digest handshake with a
//! Diffie-Hellman public key hidden in C1 and S1 (see [`super::rtmpe`]),
//! after which both directions go through RC4. The server takes it when
//! [`RtmpePolicy::Accept`]; the client speaks it from
//! [`ClientHandshake::new_rtmpe`].
//!
//! Neither side has a clock (no I/O here), so the timestamps we send are 0,
//! which the spec allows ("may be 0"), and echoes are verbatim, as nginx-rtmp
//! and ffmpeg send them.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

use super::rtmpe::{Ciphers, KeyPair, PublicKeyOutOfRange, KEY_LEN};

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The version byte (C0/S0) of plain, unencrypted RTMP.
pub const RTMP_VERSION: u8 = 3;
/// The version byte of RTMPE (RC4 after a DH exchange).
pub const RTMPE_VERSION: u8 = 6;

/// C0+C1 or S0+S1: the largest thing either side ever buffers.
const VERSION_AND_BLOCK: usize = 1 + HANDSHAKE_SIZE;
const DIGEST_LEN: usize = 32;
/// Bytes of a digest-scheme C2/S2 covered by its trailing signature.
const SIGNED_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;

/// The version we advertise in a digest S1. Players only check that the first
/// byte is at least 3 (ffmpeg: `serverdata[5] >= 3`).
const SERVER_VERSION: [u8; 4] = [0x04, 0x05, 0x00, 0x01];
/// The version ffmpeg's client puts in C1 (9.0.124.2); any non-zero value
/// selects the digest scheme on the server.
const CLIENT_VERSION: [u8; 4] = [0x09, 0x00, 0x7c, 0x02];
/// The version librtmp puts in an RTMPE C1 (128.0.3.2).
const RTMPE_CLIENT_VERSION: [u8; 4] = [0x80, 0x00, 0x03, 0x02];

/// Shared tail of both well-known keys (as in nginx-rtmp and ffmpeg).
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
/// Flash Player key: its 30-byte text part signs C1, the whole key derives the
/// C2 signing key.
const FP_KEY: [u8; 62] = concat_key(b"Genuine Adobe Flash Player 001", &KEY_TAIL);
const FP_KEY_TEXT_LEN: usize = 30;
/// Flash Media Server key: its 36-byte text part signs S1, the whole key
/// derives the S2 signing key.
const FMS_KEY: [u8; 68] = concat_key(b"Genuine Adobe Flash Media Server 001", &KEY_TAIL);
const FMS_KEY_TEXT_LEN: usize = 36;

const fn concat_key<const A: usize, const B: usize, const N: usize>(
    a: &[u8; A],
    b: &[u8; B],
) -> [u8; N] {
    assert!(A + B == N);
    let mut out = [0; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Why a handshake was abandoned. Every variant means "close the connection".
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum HandshakeError {
    /// C0/S0 was not 3; the hint names the usual culprits so logs explain
    /// themselves (an HTTP request or a TLS ClientHello on the RTMP port).
    #[error("unsupported RTMP version byte {0:#04x} (expected 0x03){hint}", hint = version_hint(*.0))]
    UnsupportedVersion(u8),
    /// C0 was 6 and `rtmp.rtmpe` is off.
    #[error("RTMPE (encrypted RTMP, version byte 6) is turned off (rtmp.rtmpe = false); use rtmp:// or rtmps://")]
    EncryptedTurnedOff,
    /// C0 was 6 on a TLS connection: no client layers the two.
    #[error("RTMPE inside TLS is not a variant clients speak; use rtmps:// alone")]
    EncryptedInsideTls,
    /// C0/S0 was 8 or 9: RTMPE whose S2 signature is scrambled with XTEA
    /// or Blowfish. No client here sends it.
    #[error("RTMPE with a scrambled signature (version byte {0}: {cipher}) is not supported; librtmp, rtmpdump and GStreamer send version 6", cipher = scrambler(*.0))]
    ScrambledNotSupported(u8),
    /// An RTMPE C1 ("C1") or S1 ("S1") without a Flash digest: its DH key
    /// cannot be found without one.
    #[error("RTMPE {0} carries no valid digest under either offset scheme")]
    RtmpeNoDigest(&'static str),
    #[error(transparent)]
    RtmpePublicKey(#[from] PublicKeyOutOfRange),
    /// An RTMPE C2 ("C2") or S2 ("S2") not signed with our digest.
    #[error("RTMPE {0} signature does not verify")]
    RtmpeBadSignature(&'static str),
    /// Our RTMPE C0 was answered with another version byte.
    #[error(
        "the server answered version byte {0:#04x} to an RTMPE handshake (it does not speak RTMPE)"
    )]
    RtmpeRefusedByServer(u8),
}

fn scrambler(version: u8) -> &'static str {
    if version == 8 {
        "XTEA"
    } else {
        "Blowfish"
    }
}

/// Whether a server takes RTMPE (C0 = 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtmpePolicy {
    #[default]
    Accept,
    /// `rtmp.rtmpe = false`.
    TurnedOff,
    /// The connection is already TLS (rtmps, rtmpts).
    InsideTls,
}

fn version_hint(version: u8) -> &'static str {
    match version {
        b'G' | b'P' | b'H' | b'O' => ": looks like an HTTP request",
        0x16 => ": looks like a TLS ClientHello (rtmps:// to a plain RTMP port?)",
        _ => "",
    }
}

/// Whether the handshake still needs input.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeStatus {
    NeedMore,
    Done,
}

type Block = [u8; HANDSHAKE_SIZE];
type Digest = [u8; DIGEST_LEN];

/// The server's view of C0: plain, RTMPE, or refused.
fn check_client_version(version: u8, rtmpe: RtmpePolicy) -> Result<(), HandshakeError> {
    match (version, rtmpe) {
        (RTMP_VERSION, _) | (RTMPE_VERSION, RtmpePolicy::Accept) => Ok(()),
        (RTMPE_VERSION, RtmpePolicy::TurnedOff) => Err(HandshakeError::EncryptedTurnedOff),
        (RTMPE_VERSION, RtmpePolicy::InsideTls) => Err(HandshakeError::EncryptedInsideTls),
        (8 | 9, _) => Err(HandshakeError::ScrambledNotSupported(version)),
        _ => Err(HandshakeError::UnsupportedVersion(version)),
    }
}

/// The client's view of S0, given what it sent in C0.
fn check_server_version(version: u8, sent: u8) -> Result<(), HandshakeError> {
    match version {
        v if v == sent => Ok(()),
        8 | 9 if sent == RTMPE_VERSION => Err(HandshakeError::ScrambledNotSupported(version)),
        _ if sent == RTMPE_VERSION => Err(HandshakeError::RtmpeRefusedByServer(version)),
        _ => Err(HandshakeError::UnsupportedVersion(version)),
    }
}

/// Where a C1/S1 keeps its digest. Both layouts occur in practice, and the
/// reader cannot tell which one was used except by trying both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// Offset bytes at 8..12, digest in 12..772 ("scheme 1": ffmpeg, OBS,
    /// librtmp, nginx-rtmp).
    Early,
    /// Offset bytes at 772..776, digest in 776..1536 ("scheme 0/2": some Flash
    /// Players, RTMPE clients).
    Late,
}

impl Scheme {
    /// Early first: that is what nearly every encoder sends. A false match
    /// of the other scheme is a 2^-256 event, so the order is otherwise moot.
    const ALL: [Scheme; 2] = [Scheme::Early, Scheme::Late];

    /// `sum(4 offset bytes) % 728 + base + 4`; always leaves room for the
    /// 32 digest bytes inside the block's half.
    fn digest_offset(self, block: &Block) -> usize {
        let base = match self {
            Scheme::Early => 8,
            Scheme::Late => 772,
        };
        let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        sum % 728 + base + 4
    }

    /// Where an RTMPE C1/S1 keeps its DH public key: in the half without
    /// the digest, at `sum(4 offset bytes) % 632` from its start, the
    /// offset bytes being the last four of that half.
    fn dh_offset(self, block: &Block) -> usize {
        let (base, start) = match self {
            Scheme::Early => (1532, 772),
            Scheme::Late => (768, 8),
        };
        let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        sum % 632 + start
    }

    fn dh_key(self, block: &Block) -> [u8; KEY_LEN] {
        let at = self.dh_offset(block);
        let mut key = [0; KEY_LEN];
        key.copy_from_slice(&block[at..at + KEY_LEN]);
        key
    }

    fn put_dh_key(self, block: &mut Block, key: &[u8; KEY_LEN]) {
        let at = self.dh_offset(block);
        block[at..at + KEY_LEN].copy_from_slice(key);
    }
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Digest {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// HMAC of a C1/S1 without the 32 digest bytes at `offset`.
fn block_digest(block: &Block, offset: usize, key: &[u8]) -> Digest {
    let mut mac = new_mac(key);
    mac.update(&block[..offset]);
    mac.update(&block[offset + DIGEST_LEN..]);
    mac.finalize().into_bytes().into()
}

fn digest_at(block: &Block, offset: usize) -> Digest {
    let mut digest = [0; DIGEST_LEN];
    digest.copy_from_slice(&block[offset..offset + DIGEST_LEN]);
    digest
}

/// The valid digest embedded in `block` under either scheme, if any.
fn find_digest(block: &Block, key: &[u8]) -> Option<(Scheme, Digest)> {
    Scheme::ALL.into_iter().find_map(|scheme| {
        let offset = scheme.digest_offset(block);
        let digest = digest_at(block, offset);
        (block_digest(block, offset, key) == digest).then_some((scheme, digest))
    })
}

/// Signs `block` in place at the scheme's offset; returns the digest.
fn embed_digest(block: &mut Block, scheme: Scheme, key: &[u8]) -> Digest {
    let offset = scheme.digest_offset(block);
    let digest = block_digest(block, offset, key);
    block[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// The trailing signature of a digest-scheme C2/S2: keyed by the peer's C1/S1
/// digest run through our full key, so only someone who saw it can produce it.
fn response_signature(block: &Block, peer_digest: &Digest, full_key: &[u8]) -> Digest {
    let key = hmac_sha256(full_key, peer_digest);
    hmac_sha256(&key, &block[..SIGNED_LEN])
}

/// Whether a C2/S2 carries the signature keyed by `our_digest`.
fn is_signed_by(block: &Block, our_digest: &Digest, full_key: &[u8]) -> bool {
    response_signature(block, our_digest, full_key)[..] == block[SIGNED_LEN..]
}

/// A digest-scheme C2/S2: random bytes followed by their signature.
fn signed_response(peer_digest: &Digest, full_key: &[u8]) -> Box<Block> {
    let mut block = random_block();
    let signature = response_signature(&block, peer_digest, full_key);
    block[SIGNED_LEN..].copy_from_slice(&signature);
    block
}

/// Time 0, `version` (zero for the simple scheme), then random filler.
fn random_block_with_version(version: [u8; 4]) -> Box<Block> {
    let mut block = random_block();
    block[..4].fill(0);
    block[4..8].copy_from_slice(&version);
    block
}

fn random_block() -> Box<Block> {
    let mut block = Box::new([0; HANDSHAKE_SIZE]);
    fastrand::fill(&mut block[..]);
    block
}

fn has_version(block: &Block) -> bool {
    block[4..8] != [0; 4]
}

/// A C2/S2 that echoes `sent`. The time2 field (4..8) is the peer's clock and
/// legitimately differs, so it is not compared.
fn is_echo(response: &Block, sent: &Block) -> bool {
    response[..4] == sent[..4] && response[8..] == sent[8..]
}

/// Collects a fixed-size message from arbitrarily split input.
struct Partial<const N: usize> {
    buf: Box<[u8; N]>,
    len: usize,
}

impl<const N: usize> Partial<N> {
    fn new() -> Self {
        Self {
            buf: Box::new([0; N]),
            len: 0,
        }
    }

    /// Takes what fits from `input`; returns how many bytes that was.
    fn fill(&mut self, input: &[u8]) -> usize {
        let n = (N - self.len).min(input.len());
        self.buf[self.len..self.len + n].copy_from_slice(&input[..n]);
        self.len += n;
        n
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == N
    }
}

impl<const N: usize> fmt::Debug for Partial<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Partial({}/{})", self.len, N)
    }
}

/// Validates the version byte as soon as it arrives, so an HTTP or TLS
/// client is turned away without waiting for 1536 more bytes that never come.
fn fill_version_and_block(
    partial: &mut Partial<VERSION_AND_BLOCK>,
    input: &[u8],
    check_version: impl FnOnce(u8) -> Result<(), HandshakeError>,
) -> Result<usize, HandshakeError> {
    if partial.is_empty() {
        if let Some(&version) = input.first() {
            check_version(version)?;
        }
    }
    Ok(partial.fill(input))
}

/// The block part of a complete C0+C1 / S0+S1.
fn block_of(partial: &Partial<VERSION_AND_BLOCK>) -> Box<Block> {
    let mut block = Box::new([0; HANDSHAKE_SIZE]);
    block.copy_from_slice(&partial.buf[1..]);
    block
}

#[derive(Debug)]
enum ServerState {
    ReadingC0C1(Partial<VERSION_AND_BLOCK>),
    /// S0+S1+S2 are sent; C2 is skipped, not stored: clients fill it with
    /// junk often enough that checking it would only reject working clients.
    SkippingC2 {
        remaining: usize,
    },
    /// RTMPE: C2 must be signed with our S1's digest before the ciphers,
    /// already derived, are handed over.
    ReadingC2 {
        c2: Partial<HANDSHAKE_SIZE>,
        s1_digest: Digest,
        ciphers: Box<Ciphers>,
    },
    Done,
    Failed(HandshakeError),
}

/// Server side: reads C0+C1, answers S0+S1+S2 at once, then reads C2.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    rtmpe: RtmpePolicy,
    /// Our DH key for an RTMPE client, if one was given (recorded vectors);
    /// otherwise a fresh one is made when a C1 asks for it.
    rtmpe_key: Option<KeyPair>,
    encrypted: bool,
    ciphers: Option<Ciphers>,
    client_used_digest: bool,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A server that takes plain RTMP and RTMPE.
    pub fn new() -> Self {
        Self::with_rtmpe(RtmpePolicy::Accept)
    }

    pub fn with_rtmpe(rtmpe: RtmpePolicy) -> Self {
        Self {
            state: ServerState::ReadingC0C1(Partial::new()),
            rtmpe,
            rtmpe_key: None,
            encrypted: false,
            ciphers: None,
            client_used_digest: false,
        }
    }

    /// Uses `key` for an RTMPE client instead of a fresh key pair: for
    /// replaying recorded handshakes.
    pub fn with_rtmpe_key(mut self, key: KeyPair) -> Self {
        self.rtmpe_key = Some(key);
        self
    }

    /// Feeds bytes received from the client. Returns how many input bytes were
    /// consumed (never more than the handshake needs: bytes after C2, the
    /// first RTMP chunks, often in the same TCP segment, are left for the
    /// caller) and appends the bytes to send to `out`. S0+S1+S2 are written
    /// as soon as C0+C1 are complete (we do not wait for C2).
    ///
    /// After an error the handshake is dead and every call returns the same
    /// error; after `Done` every call consumes nothing and returns `Done`.
    pub fn process(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, HandshakeStatus), HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match &mut self.state {
                ServerState::ReadingC0C1(partial) => {
                    let rtmpe = self.rtmpe;
                    match fill_version_and_block(partial, rest, |v| check_client_version(v, rtmpe))
                    {
                        Ok(n) => consumed += n,
                        Err(err) => return Err(self.fail(err)),
                    }
                    self.encrypted = !partial.is_empty() && partial.buf[0] == RTMPE_VERSION;
                    if !partial.is_full() {
                        return Ok((consumed, HandshakeStatus::NeedMore));
                    }
                    let c1 = block_of(partial);
                    if self.encrypted {
                        match self.respond_rtmpe(&c1, out) {
                            Ok((s1_digest, ciphers)) => {
                                self.state = ServerState::ReadingC2 {
                                    c2: Partial::new(),
                                    s1_digest,
                                    ciphers: Box::new(ciphers),
                                }
                            }
                            Err(err) => return Err(self.fail(err)),
                        }
                    } else {
                        self.respond(&c1, out);
                        self.state = ServerState::SkippingC2 {
                            remaining: HANDSHAKE_SIZE,
                        };
                    }
                }
                ServerState::ReadingC2 {
                    c2,
                    s1_digest,
                    ciphers,
                } => {
                    consumed += c2.fill(rest);
                    if !c2.is_full() {
                        return Ok((consumed, HandshakeStatus::NeedMore));
                    }
                    if !is_signed_by(&c2.buf, s1_digest, &FP_KEY) {
                        return Err(self.fail(HandshakeError::RtmpeBadSignature("C2")));
                    }
                    self.ciphers = Some((**ciphers).clone());
                    self.state = ServerState::Done;
                }
                ServerState::SkippingC2 { remaining } => {
                    let n = (*remaining).min(rest.len());
                    *remaining -= n;
                    consumed += n;
                    if *remaining > 0 {
                        return Ok((consumed, HandshakeStatus::NeedMore));
                    }
                    self.state = ServerState::Done;
                }
                ServerState::Done => return Ok((consumed, HandshakeStatus::Done)),
                ServerState::Failed(err) => return Err(*err),
            }
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Whether the client used the FP9 digest scheme (for logs).
    pub fn client_used_digest(&self) -> bool {
        self.client_used_digest
    }

    /// Whether the client asked for RTMPE (known from C0 on).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The RC4 ciphers of a finished RTMPE handshake, once.
    pub fn take_ciphers(&mut self) -> Option<Ciphers> {
        self.ciphers.take()
    }

    fn fail(&mut self, err: HandshakeError) -> HandshakeError {
        self.state = ServerState::Failed(err);
        err
    }

    /// Writes S0+S1+S2. A digest C1 gets a signed S1/S2; a zero-version C1,
    /// or one whose digest does not verify, gets the simple echo (as in
    /// nginx-rtmp), which every client accepts.
    fn respond(&mut self, c1: &Block, out: &mut Vec<u8>) {
        out.reserve(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        let client_digest = if has_version(c1) {
            find_digest(c1, &FP_KEY[..FP_KEY_TEXT_LEN])
        } else {
            None
        };
        match client_digest {
            Some((scheme, digest)) => {
                self.client_used_digest = true;
                let mut s1 = random_block_with_version(SERVER_VERSION);
                embed_digest(&mut s1, scheme, &FMS_KEY[..FMS_KEY_TEXT_LEN]);
                out.extend_from_slice(&s1[..]);
                out.extend_from_slice(&signed_response(&digest, &FMS_KEY)[..]);
            }
            None => {
                out.extend_from_slice(&random_block_with_version([0; 4])[..]);
                out.extend_from_slice(c1);
            }
        }
    }

    /// Writes S0+S1+S2 to an RTMPE C1: our DH key and digest placed by the
    /// client's own scheme, S2 signed over its digest. Returns our S1
    /// digest (C2 must be signed with it) and the ciphers. The client's
    /// digest and key are checked before any exponentiation is spent.
    fn respond_rtmpe(
        &mut self,
        c1: &Block,
        out: &mut Vec<u8>,
    ) -> Result<(Digest, Ciphers), HandshakeError> {
        let (scheme, client_digest) = find_digest(c1, &FP_KEY[..FP_KEY_TEXT_LEN])
            .ok_or(HandshakeError::RtmpeNoDigest("C1"))?;
        self.client_used_digest = true;
        let client_key = scheme.dh_key(c1);
        super::rtmpe::check_public(&client_key)?;
        let ours = self.rtmpe_key.take().unwrap_or_else(KeyPair::generate);
        let secret = ours.shared_secret(&client_key)?;
        let mut s1 = random_block_with_version(SERVER_VERSION);
        scheme.put_dh_key(&mut s1, ours.public());
        let s1_digest = embed_digest(&mut s1, scheme, &FMS_KEY[..FMS_KEY_TEXT_LEN]);
        out.reserve(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMPE_VERSION);
        out.extend_from_slice(&s1[..]);
        out.extend_from_slice(&signed_response(&client_digest, &FMS_KEY)[..]);
        Ok((
            s1_digest,
            Ciphers::derive(&secret, ours.public(), &client_key),
        ))
    }
}

#[derive(Debug)]
enum ClientState {
    /// `start` has not written C0+C1 yet.
    Idle,
    ReadingS0S1(Partial<VERSION_AND_BLOCK>),
    /// C2 is sent; S2 is read only to record whether it checks out
    /// (RTMPE: it must, before the ciphers are handed over).
    ReadingS2(Partial<HANDSHAKE_SIZE>),
    Done,
    Failed(HandshakeError),
}

/// Client side: sends C0+C1, reads S0+S1, answers C2, then reads S2.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    /// Our C1, kept to check an echoing S2.
    c1: Box<Block>,
    /// Our C1 digest in the digest scheme: it keys a digest server's S2.
    c1_digest: Option<Digest>,
    server_used_digest: bool,
    server_response_valid: bool,
    /// RTMPE: our DH key until S1 arrives, then the ciphers until S2 checks
    /// out.
    rtmpe: Option<ClientRtmpe>,
    ciphers: Option<Ciphers>,
}

#[derive(Debug)]
enum ClientRtmpe {
    Offered(KeyPair),
    Derived(Box<Ciphers>),
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandshake {
    /// FP9 digest handshake like ffmpeg and Flash send (non-zero version,
    /// digest in C1 at the scheme-1 offset), which servers that insist on
    /// it (some CDNs, FMS/AMS) require and every other server accepts.
    pub fn new() -> Self {
        let mut c1 = random_block_with_version(CLIENT_VERSION);
        let digest = embed_digest(&mut c1, Scheme::Early, &FP_KEY[..FP_KEY_TEXT_LEN]);
        Self::with_c1(c1, Some(digest))
    }

    /// Simple handshake of the RTMP 1.0 spec: zero version, random C1.
    pub fn new_simple() -> Self {
        Self::with_c1(random_block_with_version([0; 4]), None)
    }

    /// RTMPE as librtmp sends it: C0 = 6, the version 128.0.3.2, our DH
    /// key and the digest at the scheme-2 ("late") offsets.
    pub fn new_rtmpe() -> Self {
        let key = KeyPair::generate();
        let mut c1 = random_block_with_version(RTMPE_CLIENT_VERSION);
        Scheme::Late.put_dh_key(&mut c1, key.public());
        let digest = embed_digest(&mut c1, Scheme::Late, &FP_KEY[..FP_KEY_TEXT_LEN]);
        let mut hs = Self::with_c1(c1, Some(digest));
        hs.rtmpe = Some(ClientRtmpe::Offered(key));
        hs
    }

    fn with_c1(c1: Box<Block>, c1_digest: Option<Digest>) -> Self {
        Self {
            state: ClientState::Idle,
            c1,
            c1_digest,
            server_used_digest: false,
            server_response_valid: false,
            rtmpe: None,
            ciphers: None,
        }
    }

    fn version(&self) -> u8 {
        if self.rtmpe.is_some() {
            RTMPE_VERSION
        } else {
            RTMP_VERSION
        }
    }

    /// The RC4 ciphers of a finished RTMPE handshake, once.
    pub fn take_ciphers(&mut self) -> Option<Ciphers> {
        self.ciphers.take()
    }

    /// C0+C1 to send first. Later calls write nothing; `process` calls this
    /// itself if the caller did not.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if matches!(self.state, ClientState::Idle) {
            out.reserve(VERSION_AND_BLOCK);
            out.push(self.version());
            out.extend_from_slice(&self.c1[..]);
            self.state = ClientState::ReadingS0S1(Partial::new());
        }
    }

    /// Feeds S0/S1/S2; writes C2 to `out` as soon as S1 is complete. Same
    /// consumption contract as [`ServerHandshake::process`]: bytes after S2
    /// are left for the caller.
    ///
    /// S2 is checked, but a bad one is accepted: many servers get it wrong
    /// (random S2, S2 echoing the wrong block, digest keyed with the wrong
    /// key) and refusing them gains nothing. See
    /// [`ClientHandshake::server_response_valid`].
    pub fn process(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, HandshakeStatus), HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            // The version byte our C0 sent.
            let sent = self.version();
            match &mut self.state {
                ClientState::Idle => self.start(out),
                ClientState::ReadingS0S1(partial) => {
                    match fill_version_and_block(partial, rest, |v| check_server_version(v, sent)) {
                        Ok(n) => consumed += n,
                        Err(err) => return Err(self.fail(err)),
                    }
                    if !partial.is_full() {
                        return Ok((consumed, HandshakeStatus::NeedMore));
                    }
                    let s1 = block_of(partial);
                    if let Some(ClientRtmpe::Offered(key)) = self.rtmpe.take() {
                        match self.respond_rtmpe(&s1, &key, out) {
                            Ok(ciphers) => {
                                self.rtmpe = Some(ClientRtmpe::Derived(Box::new(ciphers)))
                            }
                            Err(err) => return Err(self.fail(err)),
                        }
                    } else {
                        self.respond(&s1, out);
                    }
                    self.state = ClientState::ReadingS2(Partial::new());
                }
                ClientState::ReadingS2(partial) => {
                    consumed += partial.fill(rest);
                    if !partial.is_full() {
                        return Ok((consumed, HandshakeStatus::NeedMore));
                    }
                    self.server_response_valid =
                        s2_checks_out(&partial.buf, &self.c1, self.c1_digest.as_ref());
                    if let Some(ClientRtmpe::Derived(ciphers)) = self.rtmpe.take() {
                        let signed = self
                            .c1_digest
                            .as_ref()
                            .is_some_and(|d| is_signed_by(&partial.buf, d, &FMS_KEY));
                        if !signed {
                            return Err(self.fail(HandshakeError::RtmpeBadSignature("S2")));
                        }
                        self.ciphers = Some(*ciphers);
                    }
                    self.state = ClientState::Done;
                }
                ClientState::Done => return Ok((consumed, HandshakeStatus::Done)),
                ClientState::Failed(err) => return Err(*err),
            }
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// Whether S1 carried a valid server digest (for logs).
    pub fn server_used_digest(&self) -> bool {
        self.server_used_digest
    }

    /// Whether S2 was a correct echo of C1 or a correct digest signature.
    /// Only meaningful once done; a `false` is logged, not fatal.
    pub fn server_response_valid(&self) -> bool {
        self.server_response_valid
    }

    fn fail(&mut self, err: HandshakeError) -> HandshakeError {
        self.state = ClientState::Failed(err);
        err
    }

    /// Writes C2: signed if we spoke digest and S1 answered with a valid
    /// digest, otherwise an echo of S1. A digest S1 that does not verify is
    /// echoed too: old servers put a version there without any digest.
    fn respond(&mut self, s1: &Block, out: &mut Vec<u8>) {
        let server_digest = if self.c1_digest.is_some() && has_version(s1) {
            find_digest(s1, &FMS_KEY[..FMS_KEY_TEXT_LEN])
        } else {
            None
        };
        self.server_used_digest = server_digest.is_some();
        match server_digest {
            Some((_, digest)) => out.extend_from_slice(&signed_response(&digest, &FP_KEY)[..]),
            None => out.extend_from_slice(s1),
        }
    }

    /// Writes C2 to an RTMPE S1 (signed over its digest) and derives the
    /// ciphers from the server's DH key, found by the scheme its digest used.
    fn respond_rtmpe(
        &mut self,
        s1: &Block,
        key: &KeyPair,
        out: &mut Vec<u8>,
    ) -> Result<Ciphers, HandshakeError> {
        let (scheme, server_digest) = find_digest(s1, &FMS_KEY[..FMS_KEY_TEXT_LEN])
            .ok_or(HandshakeError::RtmpeNoDigest("S1"))?;
        self.server_used_digest = true;
        let server_key = scheme.dh_key(s1);
        let secret = key.shared_secret(&server_key)?;
        out.extend_from_slice(&signed_response(&server_digest, &FP_KEY)[..]);
        Ok(Ciphers::derive(&secret, key.public(), &server_key))
    }
}

/// Whether S2 answers our C1: signed with its digest, or echoing it.
fn s2_checks_out(s2: &Block, c1: &Block, c1_digest: Option<&Digest>) -> bool {
    let signed = c1_digest.is_some_and(|digest| is_signed_by(s2, digest, &FMS_KEY));
    signed || is_echo(s2, c1)
}

/// The fuzz body of the RTMPE server handshake (`fuzz/` target
/// `rtmpe_handshake`; the property tests run it too). Random bytes rarely
/// carry a valid digest, so the harness signs the fuzzer's C1 as any client
/// can (the keys are public) to reach what lies behind it. The input:
///
/// `[selector] [C1 filler: 1536] [DH key: 128] [C2: 1536] [after: …]`,
/// zero-padded when short. Selector bits: 0 the digest scheme; 1 the DH key
/// is the fuzzer's (else a valid client key); 2 C2 is the fuzzer's (else
/// signed); 3–7 where the bytes are split into two reads.
///
/// With a valid key and a signed C2 the handshake must finish, and the
/// server must decrypt what the client encrypted after it; otherwise it may
/// fail, but only with an error, and a failed handshake stays failed.
#[doc(hidden)]
pub fn fuzz_rtmpe(data: &[u8]) {
    use std::sync::OnceLock;
    static KEYS: OnceLock<(KeyPair, KeyPair, Ciphers)> = OnceLock::new();
    // Fixed key pairs, and the client's ciphers made once: one
    // exponentiation per run (the server's shared secret) instead of four,
    // with a small exponent.
    let (client_key, server_key, client_ciphers) = KEYS.get_or_init(|| {
        let client = KeyPair::from_seed(&[0x11; 32]);
        let server = KeyPair::from_small_exponent(3);
        let secret = client.shared_secret(server.public()).expect("in range");
        let ciphers = Ciphers::derive(&secret, client.public(), server.public());
        (client, server, ciphers)
    });
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let field = |at: usize, len: usize| -> Vec<u8> {
        let mut v = vec![0; len];
        let have = rest.get(at..).unwrap_or(&[]);
        let n = have.len().min(len);
        v[..n].copy_from_slice(&have[..n]);
        v
    };
    let scheme = if selector & 1 == 0 {
        Scheme::Early
    } else {
        Scheme::Late
    };
    let fuzzed_key = selector & 2 != 0;
    let fuzzed_c2 = selector & 4 != 0;
    let mut c1 = Box::new([0u8; HANDSHAKE_SIZE]);
    c1.copy_from_slice(&field(0, HANDSHAKE_SIZE));
    let mut key = *client_key.public();
    if fuzzed_key {
        key.copy_from_slice(&field(HANDSHAKE_SIZE, KEY_LEN));
    }
    scheme.put_dh_key(&mut c1, &key);
    let c1_digest = embed_digest(&mut c1, scheme, &FP_KEY[..FP_KEY_TEXT_LEN]);
    let after = rest.get(2 * HANDSHAKE_SIZE + KEY_LEN..).unwrap_or(&[]);

    let mut server = ServerHandshake::new().with_rtmpe_key(server_key.clone());
    let mut out = Vec::new();
    let c0c1 = [&[RTMPE_VERSION][..], &c1[..]].concat();
    let split = usize::from(selector >> 3) * c0c1.len() / 31;
    let first = server.process(&c0c1[..split], &mut out);
    assert!(matches!(first, Ok((n, HandshakeStatus::NeedMore)) if n == split) || first.is_err());
    let step = server.process(&c0c1[split..], &mut out);
    let Ok((_, HandshakeStatus::NeedMore)) = step else {
        assert!(step.is_err() && fuzzed_key, "a valid signed C1 is answered");
        assert!(server.process(&[3], &mut out).is_err(), "failure sticks");
        return;
    };
    assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
    let s1 = block_of_slice(&out[1..VERSION_AND_BLOCK]);
    let (s1_scheme, s1_digest) =
        find_digest(&s1, &FMS_KEY[..FMS_KEY_TEXT_LEN]).expect("S1 carries our digest");
    assert_eq!(s1_scheme, scheme, "S1 answers in the client's scheme");
    let s2 = block_of_slice(&out[VERSION_AND_BLOCK..]);
    assert!(is_signed_by(&s2, &c1_digest, &FMS_KEY), "S2 is signed");
    let mut c2 = block_of_slice(&field(HANDSHAKE_SIZE + KEY_LEN, HANDSHAKE_SIZE));
    if !fuzzed_c2 {
        c2 = signed_response(&s1_digest, &FP_KEY);
    }
    let mut wire = c2.to_vec();
    assert_eq!(
        &s1_scheme.dh_key(&s1),
        server_key.public(),
        "S1 carries our key"
    );
    let mut client = (!fuzzed_key).then(|| client_ciphers.clone());
    let mut sent = after.to_vec();
    if let Some(c) = &mut client {
        c.encrypt.apply(&mut sent);
    }
    wire.extend_from_slice(&sent);
    match server.process(&wire, &mut Vec::new()) {
        Ok((used, HandshakeStatus::Done)) => {
            assert_eq!(used, HANDSHAKE_SIZE, "bytes after C2 are left");
            let mut ciphers = server.take_ciphers().expect("ciphers after RTMPE");
            let mut got = wire[used..].to_vec();
            ciphers.decrypt.apply(&mut got);
            if client.is_some() {
                assert_eq!(got, after, "the server decrypts what the client sent");
            }
        }
        Ok((_, HandshakeStatus::NeedMore)) => unreachable!("a whole C2 was offered"),
        Err(err) => {
            assert!(fuzzed_c2, "a signed C2 is accepted: {err}");
            assert_eq!(err, HandshakeError::RtmpeBadSignature("C2"));
        }
    }
}

fn block_of_slice(bytes: &[u8]) -> Box<Block> {
    let mut block = Box::new([0; HANDSHAKE_SIZE]);
    block.copy_from_slice(bytes);
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Step = Result<(usize, HandshakeStatus), HandshakeError>;

    macro_rules! vector {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/handshake/",
                $name
            ))
        };
    }

    /// C0+C1 sent by ffmpeg 5.1 publishing to `rtmp://` (digest, scheme 1).
    const FFMPEG_C0C1: &[u8; VERSION_AND_BLOCK] = vector!("ffmpeg_c0c1.bin");
    /// C0+C1 sent by rtmpdump 2.4 (librtmp) without SWF verification: simple.
    const RTMPDUMP_SIMPLE_C0C1: &[u8; VERSION_AND_BLOCK] = vector!("rtmpdump_simple_c0c1.bin");
    /// C0+C1 sent by rtmpdump with `--swfhash/--swfsize`: librtmp's digest.
    const RTMPDUMP_FP9_C0C1: &[u8; VERSION_AND_BLOCK] = vector!("rtmpdump_fp9_c0c1.bin");

    /// What the client sends right after C2 (a connect command, say).
    const CLIENT_EXTRA: &[u8] = b"\x03client chunks after C2";
    /// What the server sends right after S2 (window ack size, say).
    const SERVER_EXTRA: &[u8] = b"\x02server chunks after S2";

    fn as_block(bytes: &[u8]) -> &Block {
        bytes.try_into().unwrap()
    }

    /// Runs a server against `client` in memory. Each `process` call gets the
    /// next chunk size from `sizes` (cycled); leftovers after the handshake
    /// must come back unconsumed. Returns both sides and the raw C2/S2.
    fn run_pair(
        mut client: ClientHandshake,
        sizes: &[usize],
    ) -> (ServerHandshake, ClientHandshake, Vec<u8>, Vec<u8>) {
        let mut server = ServerHandshake::new();
        let mut sizes = sizes.iter().copied().cycle();
        let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
        client.start(&mut c2s);
        let (mut server_pos, mut client_pos) = (0, 0);
        while !(server.is_done() && client.is_done()) {
            let mut progressed = false;
            if !server.is_done() && server_pos < c2s.len() {
                let end = c2s
                    .len()
                    .min(server_pos.saturating_add(sizes.next().unwrap()));
                let before = s2c.len();
                let step = server.process(&c2s[server_pos..end], &mut s2c);
                server_pos += check_step(step, end - server_pos);
                if s2c.len() > before {
                    assert_eq!(s2c.len() - before, VERSION_AND_BLOCK + HANDSHAKE_SIZE);
                    s2c.extend_from_slice(SERVER_EXTRA);
                }
                progressed = true;
            }
            if !client.is_done() && client_pos < s2c.len() {
                let end = s2c
                    .len()
                    .min(client_pos.saturating_add(sizes.next().unwrap()));
                let before = c2s.len();
                let step = client.process(&s2c[client_pos..end], &mut c2s);
                client_pos += check_step(step, end - client_pos);
                if c2s.len() > before {
                    assert_eq!(c2s.len() - before, HANDSHAKE_SIZE);
                    c2s.extend_from_slice(CLIENT_EXTRA);
                }
                progressed = true;
            }
            assert!(progressed, "handshake stalled");
        }
        assert_eq!(&c2s[server_pos..], CLIENT_EXTRA);
        assert_eq!(&s2c[client_pos..], SERVER_EXTRA);
        let c2 = c2s[VERSION_AND_BLOCK..VERSION_AND_BLOCK + HANDSHAKE_SIZE].to_vec();
        let s2 = s2c[VERSION_AND_BLOCK..VERSION_AND_BLOCK + HANDSHAKE_SIZE].to_vec();
        (server, client, c2, s2)
    }

    /// Checks the consumption contract of one call; returns bytes consumed.
    fn check_step(step: Step, offered: usize) -> usize {
        let (used, status) = step.expect("handshake failed");
        assert!(used <= offered);
        if status == HandshakeStatus::NeedMore {
            assert_eq!(used, offered, "NeedMore must consume everything");
        }
        used
    }

    fn assert_pair(client: ClientHandshake, sizes: &[usize], digest: bool) {
        let (server, client, _, _) = run_pair(client, sizes);
        assert_eq!(server.client_used_digest(), digest);
        assert_eq!(client.server_used_digest(), digest);
        assert!(client.server_response_valid());
    }

    #[test]
    fn pair_completes_for_every_small_chunk_size() {
        for size in 1..=32 {
            assert_pair(ClientHandshake::new(), &[size], true);
            assert_pair(ClientHandshake::new_simple(), &[size], false);
        }
    }

    #[test]
    fn pair_completes_with_whole_messages_and_all_at_once() {
        for sizes in [
            &[usize::MAX][..],
            &[1537, 1536],
            &[1536, 1, 1537],
            &[1, 3072, 9],
        ] {
            assert_pair(ClientHandshake::new(), sizes, true);
            assert_pair(ClientHandshake::new_simple(), sizes, false);
        }
    }

    #[test]
    fn digest_c2_is_signed_with_server_digest() {
        let mut out = Vec::new();
        let mut server = ServerHandshake::new();
        let mut client = ClientHandshake::new();
        client.start(&mut out);
        let mut s0s1s2 = Vec::new();
        server.process(&out, &mut s0s1s2).unwrap();
        let mut c2 = Vec::new();
        let (used, status) = client.process(&s0s1s2, &mut c2).unwrap();
        assert_eq!((used, status), (s0s1s2.len(), HandshakeStatus::Done));
        // As FMS checks C2: keyed by the S1 digest through the full FP key.
        let s1 = as_block(&s0s1s2[1..VERSION_AND_BLOCK]);
        let (_, s1_digest) = find_digest(s1, &FMS_KEY[..FMS_KEY_TEXT_LEN]).unwrap();
        let c2 = as_block(&c2);
        assert_eq!(
            response_signature(c2, &s1_digest, &FP_KEY)[..],
            c2[SIGNED_LEN..]
        );
    }

    #[test]
    fn simple_c2_echoes_s1() {
        let (server_out, c2) = {
            let mut client = ClientHandshake::new_simple();
            let mut c0c1 = Vec::new();
            client.start(&mut c0c1);
            let mut s = Vec::new();
            ServerHandshake::new().process(&c0c1, &mut s).unwrap();
            let mut c2 = Vec::new();
            client.process(&s, &mut c2).unwrap();
            (s, c2)
        };
        assert_eq!(c2, server_out[1..VERSION_AND_BLOCK]);
    }

    /// ffmpeg's `rtmp_handshake()` check of a server (play mode), written out
    /// independently of the code under test: S1 digest under either scheme
    /// (772 first, then 8), then the S2 signature keyed by C1's digest.
    fn ffmpeg_accepts(c1: &Block, response: &[u8]) {
        fn calc_digest(buf: &[u8], gap: Option<usize>, key: &[u8]) -> Digest {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
            match gap {
                Some(gap) => {
                    mac.update(&buf[..gap]);
                    mac.update(&buf[gap + 32..]);
                }
                None => mac.update(buf),
            }
            mac.finalize().into_bytes().into()
        }
        fn calc_digest_pos(buf: &[u8], off: usize) -> usize {
            buf[off..off + 4].iter().map(|&b| b as usize).sum::<usize>() % 728 + off + 4
        }
        let server_key = b"Genuine Adobe Flash Media Server 001";
        assert_eq!(response.len(), 1 + 2 * 1536);
        assert_eq!(response[0], 3);
        let (s1, s2) = (&response[1..1537], &response[1537..]);
        assert!(
            s1[4] >= 3,
            "ffmpeg only validates servers with version >= 3"
        );
        let server_pos = [772, 8]
            .into_iter()
            .map(|off| calc_digest_pos(s1, off))
            .find(|&pos| calc_digest(s1, Some(pos), server_key)[..] == s1[pos..pos + 32]);
        assert!(server_pos.is_some(), "Server response validating failed");
        let client_pos = calc_digest_pos(c1, 8);
        let mut full_key = server_key.to_vec();
        full_key.extend_from_slice(&KEY_TAIL);
        let digest = calc_digest(&c1[client_pos..client_pos + 32], None, &full_key);
        let signature = calc_digest(&s2[..1536 - 32], None, &digest);
        assert_eq!(signature[..], s2[1536 - 32..], "Signature mismatch");
    }

    fn respond_to(c0c1: &[u8]) -> (ServerHandshake, Vec<u8>) {
        let mut server = ServerHandshake::new();
        let mut out = Vec::new();
        let step = server.process(c0c1, &mut out).unwrap();
        assert_eq!(step, (VERSION_AND_BLOCK, HandshakeStatus::NeedMore));
        (server, out)
    }

    #[test]
    fn ffmpeg_c1_gets_digest_answer_ffmpeg_accepts() {
        let (server, out) = respond_to(FFMPEG_C0C1);
        assert!(server.client_used_digest());
        ffmpeg_accepts(as_block(&FFMPEG_C0C1[1..]), &out);
    }

    #[test]
    fn librtmp_fp9_c1_gets_digest_answer() {
        // librtmp verifies S2 the same way ffmpeg does.
        let (server, out) = respond_to(RTMPDUMP_FP9_C0C1);
        assert!(server.client_used_digest());
        ffmpeg_accepts(as_block(&RTMPDUMP_FP9_C0C1[1..]), &out);
    }

    #[test]
    fn librtmp_simple_c1_gets_exact_echo() {
        // librtmp compares all 1536 bytes of S2 with its C1.
        let (server, out) = respond_to(RTMPDUMP_SIMPLE_C0C1);
        assert!(!server.client_used_digest());
        assert_eq!(out[0], RTMP_VERSION);
        assert_eq!(out[5..9], [0; 4], "simple S1 has a zero version");
        assert_eq!(out[VERSION_AND_BLOCK..], RTMPDUMP_SIMPLE_C0C1[1..]);
    }

    #[test]
    fn server_answers_late_scheme_digest_in_kind() {
        let mut c1 = random_block_with_version(CLIENT_VERSION);
        let c1_digest = embed_digest(&mut c1, Scheme::Late, &FP_KEY[..FP_KEY_TEXT_LEN]);
        let mut c0c1 = vec![RTMP_VERSION];
        c0c1.extend_from_slice(&c1[..]);
        let (server, out) = respond_to(&c0c1);
        assert!(server.client_used_digest());
        let s1 = as_block(&out[1..VERSION_AND_BLOCK]);
        let found = find_digest(s1, &FMS_KEY[..FMS_KEY_TEXT_LEN]).map(|(scheme, _)| scheme);
        assert_eq!(found, Some(Scheme::Late));
        let s2 = as_block(&out[VERSION_AND_BLOCK..]);
        assert_eq!(
            response_signature(s2, &c1_digest, &FMS_KEY)[..],
            s2[SIGNED_LEN..]
        );
    }

    #[test]
    fn bad_digest_falls_back_to_echo() {
        let mut c0c1 = *FFMPEG_C0C1;
        let pos = 1 + Scheme::Early.digest_offset(as_block(&FFMPEG_C0C1[1..]));
        c0c1[pos] ^= 1;
        let (server, out) = respond_to(&c0c1);
        assert!(!server.client_used_digest());
        assert_eq!(out[VERSION_AND_BLOCK..], c0c1[1..]);
    }

    #[test]
    fn c2_and_following_chunks_in_one_segment() {
        let mut input = FFMPEG_C0C1.to_vec();
        input.extend_from_slice(&[0xAA; HANDSHAKE_SIZE]); // junk C2 is fine
        input.extend_from_slice(CLIENT_EXTRA);
        let mut server = ServerHandshake::new();
        let mut out = Vec::new();
        let step = server.process(&input, &mut out).unwrap();
        assert_eq!(
            step,
            (VERSION_AND_BLOCK + HANDSHAKE_SIZE, HandshakeStatus::Done)
        );
        assert!(server.is_done());
        assert_eq!(out.len(), VERSION_AND_BLOCK + HANDSHAKE_SIZE);
        // Once done, nothing more is consumed or sent.
        let step = server.process(CLIENT_EXTRA, &mut out).unwrap();
        assert_eq!(step, (0, HandshakeStatus::Done));
        assert_eq!(out.len(), VERSION_AND_BLOCK + HANDSHAKE_SIZE);
    }

    #[test]
    fn s0s1s2_sent_before_c2_arrives() {
        for vector in [FFMPEG_C0C1, RTMPDUMP_SIMPLE_C0C1] {
            let mut server = ServerHandshake::new();
            let mut out = Vec::new();
            server
                .process(&vector[..VERSION_AND_BLOCK - 1], &mut out)
                .unwrap();
            assert!(out.is_empty());
            server
                .process(&vector[VERSION_AND_BLOCK - 1..], &mut out)
                .unwrap();
            assert_eq!(out.len(), VERSION_AND_BLOCK + HANDSHAKE_SIZE);
            assert!(!server.is_done());
        }
    }

    #[test]
    fn truncated_input_needs_more() {
        for vector in [FFMPEG_C0C1, RTMPDUMP_SIMPLE_C0C1, RTMPDUMP_FP9_C0C1] {
            for len in 0..VERSION_AND_BLOCK {
                let mut server = ServerHandshake::new();
                let mut out = Vec::new();
                let step = server.process(&vector[..len], &mut out);
                assert_eq!(step, Ok((len, HandshakeStatus::NeedMore)));
                assert!(out.is_empty());
            }
        }
        let mut client = ClientHandshake::new();
        let mut out = Vec::new();
        assert_eq!(
            client.process(&[], &mut out),
            Ok((0, HandshakeStatus::NeedMore))
        );
        assert_eq!(out.len(), VERSION_AND_BLOCK, "process starts the handshake");
    }

    #[test]
    fn rejects_wrong_versions_on_first_byte() {
        use HandshakeError::*;
        let cases = [
            (RtmpePolicy::TurnedOff, 6, EncryptedTurnedOff),
            (RtmpePolicy::InsideTls, 6, EncryptedInsideTls),
            (RtmpePolicy::Accept, 8, ScrambledNotSupported(8)),
            (RtmpePolicy::Accept, 9, ScrambledNotSupported(9)),
            (RtmpePolicy::Accept, b'G', UnsupportedVersion(b'G')),
            (RtmpePolicy::Accept, 0x16, UnsupportedVersion(0x16)),
            (RtmpePolicy::TurnedOff, 0, UnsupportedVersion(0)),
        ];
        for (policy, version, expected) in cases {
            let mut server = ServerHandshake::with_rtmpe(policy);
            let mut out = Vec::new();
            assert_eq!(server.process(&[version], &mut out), Err(expected));
            // The error sticks, whatever comes next.
            assert_eq!(server.process(FFMPEG_C0C1, &mut out), Err(expected));
            assert!(out.is_empty());
        }
        // A plain client refuses any other S0; an RTMPE client says why.
        for (client, version, expected) in [
            (ClientHandshake::new(), 6, UnsupportedVersion(6)),
            (ClientHandshake::new(), b'G', UnsupportedVersion(b'G')),
            (ClientHandshake::new_rtmpe(), 3, RtmpeRefusedByServer(3)),
            (ClientHandshake::new_rtmpe(), 8, ScrambledNotSupported(8)),
        ] {
            let mut client = client;
            let mut out = Vec::new();
            client.start(&mut out);
            assert_eq!(client.process(&[version, 0, 0], &mut out), Err(expected));
            assert_eq!(client.process(&[RTMP_VERSION], &mut out), Err(expected));
            assert_eq!(out.len(), VERSION_AND_BLOCK);
        }
    }

    #[test]
    fn error_messages_explain_common_mistakes() {
        let http = HandshakeError::UnsupportedVersion(b'G').to_string();
        assert!(http.contains("0x47") && http.contains("HTTP"), "{http}");
        let tls = HandshakeError::UnsupportedVersion(0x16).to_string();
        assert!(tls.contains("TLS"), "{tls}");
        let off = HandshakeError::EncryptedTurnedOff.to_string();
        assert!(
            off.contains("RTMPE") && off.contains("rtmp.rtmpe = false"),
            "{off}"
        );
        let xtea = HandshakeError::ScrambledNotSupported(8).to_string();
        assert!(xtea.contains("version byte 8: XTEA"), "{xtea}");
        let blowfish = HandshakeError::ScrambledNotSupported(9).to_string();
        assert!(blowfish.contains("version byte 9: Blowfish"), "{blowfish}");
    }

    /// Keystreams agree: what one side encrypts the other decrypts.
    fn assert_ciphers_pair(mut client: Ciphers, mut server: Ciphers) {
        let text: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut wire = text.clone();
        client.encrypt.apply(&mut wire);
        assert_ne!(wire, text);
        server.decrypt.apply(&mut wire);
        assert_eq!(wire, text, "client to server");
        server.encrypt.apply(&mut wire);
        client.decrypt.apply(&mut wire);
        assert_eq!(wire, text, "server to client");
    }

    fn assert_rtmpe_pair(client: ClientHandshake, sizes: &[usize]) {
        let (mut server, mut client, _, _) = run_pair(client, sizes);
        assert!(server.is_encrypted() && server.client_used_digest());
        assert!(client.server_used_digest() && client.server_response_valid());
        let (c, s) = (client.take_ciphers(), server.take_ciphers());
        assert_ciphers_pair(c.expect("client ciphers"), s.expect("server ciphers"));
        assert!(server.take_ciphers().is_none(), "handed over once");
    }

    #[test]
    fn rtmpe_pair_agrees_on_keys_for_every_small_chunk_size() {
        for size in [1, 2, 3, 7, 128, 1537, usize::MAX] {
            assert_rtmpe_pair(ClientHandshake::new_rtmpe(), &[size]);
        }
    }

    /// A scheme-1 RTMPE client (digest at 8..12, DH key in the second half)
    /// gets its S1 in the same scheme and the same keys.
    #[test]
    fn rtmpe_scheme_1_client_is_answered_in_kind() {
        let mut client = ClientHandshake::new_rtmpe();
        let Some(ClientRtmpe::Offered(key)) = &client.rtmpe else {
            unreachable!()
        };
        let mut c1 = random_block_with_version(RTMPE_CLIENT_VERSION);
        Scheme::Early.put_dh_key(&mut c1, key.public());
        client.c1_digest = Some(embed_digest(
            &mut c1,
            Scheme::Early,
            &FP_KEY[..FP_KEY_TEXT_LEN],
        ));
        client.c1 = c1;
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut server = ServerHandshake::new();
        let mut reply = Vec::new();
        server.process(&c0c1, &mut reply).unwrap();
        let s1 = as_block(&reply[1..VERSION_AND_BLOCK]);
        let (scheme, _) = find_digest(s1, &FMS_KEY[..FMS_KEY_TEXT_LEN]).unwrap();
        assert_eq!(scheme, Scheme::Early);
        let mut c2 = Vec::new();
        assert_eq!(
            client.process(&reply, &mut c2),
            Ok((reply.len(), HandshakeStatus::Done))
        );
        assert_eq!(
            server.process(&c2, &mut Vec::new()),
            Ok((HANDSHAKE_SIZE, HandshakeStatus::Done))
        );
        assert_ciphers_pair(
            client.take_ciphers().unwrap(),
            server.take_ciphers().unwrap(),
        );
    }

    /// librtmp's `HandShake()` client check of an RTMPE server, written out
    /// from its source independently of the code under test: the S1 digest
    /// at `GetDigestOffset2` (772..776, `% 728 + 776`) or else
    /// `GetDigestOffset1`, the server's key at the matching `GetDHOffset`,
    /// `InitRC4Encryption` (out key = HMAC(secret, server key), in key =
    /// HMAC(secret, own key)), the S2 signature keyed by C1's digest through
    /// the 68-byte FMS key, and a C2 signed over S1's digest.
    #[test]
    fn librtmp_rtmpe_client_accepts_our_answer() {
        fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().into()
        }
        let sum4 = |b: &[u8], at: usize| b[at..at + 4].iter().map(|&x| x as usize).sum::<usize>();
        let dig2 = |b: &[u8]| sum4(b, 772) % 728 + 776;
        let dig1 = |b: &[u8]| sum4(b, 8) % 728 + 12;
        let dh2 = |b: &[u8]| sum4(b, 768) % 632 + 8;
        let dh1 = |b: &[u8]| sum4(b, 1532) % 632 + 772;
        let fp_key: Vec<u8> = [&b"Genuine Adobe Flash Player 001"[..], &KEY_TAIL].concat();
        let fms_key: Vec<u8> = [&b"Genuine Adobe Flash Media Server 001"[..], &KEY_TAIL].concat();
        let p = num_bigint::BigUint::parse_bytes(
            b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
            16,
        )
        .unwrap();
        let pad = |n: num_bigint::BigUint| {
            let b = n.to_bytes_be();
            let mut out = vec![0u8; 128 - b.len()];
            out.extend_from_slice(&b);
            out
        };
        for seed in 0..8u32 {
            // C1 as librtmp builds it: version 128.0.3.2, key at GetDHOffset2,
            // digest at GetDigestOffset2 keyed by the 30-byte FP key.
            let x = num_bigint::BigUint::from(0xC0FFEE_u32 + seed) << 200usize;
            let client_pub = pad(num_bigint::BigUint::from(2u32).modpow(&x, &p));
            let mut c1 = vec![0u8; 1536];
            fastrand::fill(&mut c1);
            c1[4..8].copy_from_slice(&[128, 0, 3, 2]);
            let at = dh2(&c1);
            c1[at..at + 128].copy_from_slice(&client_pub);
            let d = dig2(&c1);
            let digest = hmac(&fp_key[..30], &[&c1[..d], &c1[d + 32..]]);
            c1[d..d + 32].copy_from_slice(&digest);

            let mut server = ServerHandshake::new();
            let mut reply = Vec::new();
            let c0c1 = [&[6u8][..], &c1].concat();
            assert_eq!(
                server.process(&c0c1, &mut reply),
                Ok((1537, HandshakeStatus::NeedMore))
            );
            assert_eq!(reply.len(), 1 + 2 * 1536);
            assert_eq!(reply[0], 6, "S0 answers the client's type");
            let (s1, s2) = (&reply[1..1537], &reply[1537..]);
            let (pos, dh) = [(dig2(s1), dh2(s1)), (dig1(s1), dh1(s1))]
                .into_iter()
                .find(|&(pos, _)| {
                    hmac(&fms_key[..36], &[&s1[..pos], &s1[pos + 32..]]) == s1[pos..pos + 32]
                })
                .expect("librtmp finds the server digest");
            let server_pub = num_bigint::BigUint::from_bytes_be(&s1[dh..dh + 128]);
            assert!(server_pub > num_bigint::BigUint::from(1u32) && server_pub < &p - 1u32);
            let secret = pad(server_pub.modpow(&x, &p));
            // S2: signed with HMAC(68-byte FMS key, C1 digest).
            let sig_key = hmac(&fms_key, &[&digest]);
            assert_eq!(hmac(&sig_key, &[&s2[..1504]]), s2[1504..], "S2 signature");
            // C2: random, signed with HMAC(62-byte FP key, S1 digest).
            let mut c2 = vec![0u8; 1536];
            fastrand::fill(&mut c2);
            let c2_key = hmac(&fp_key, &[&s1[pos..pos + 32]]);
            let sig = hmac(&c2_key, &[&c2[..1504]]);
            c2[1504..].copy_from_slice(&sig);
            // librtmp's first encrypted bytes: keyOut = HMAC(secret, server key),
            // advanced 1536 bytes.
            let mut out_key =
                super::super::rtmpe::Rc4::new(&hmac(&secret, &[&s1[dh..dh + 128]])[..16]);
            let mut in_key = super::super::rtmpe::Rc4::new(&hmac(&secret, &[&client_pub])[..16]);
            let mut skip = vec![0u8; 1536];
            out_key.apply(&mut skip);
            in_key.apply(&mut skip);
            let mut first = b"connect".to_vec();
            out_key.apply(&mut first);
            c2.extend_from_slice(&first);
            let mut none = Vec::new();
            assert_eq!(
                server.process(&c2, &mut none),
                Ok((1536, HandshakeStatus::Done)),
                "C2 accepted; the chunk after it left to the caller"
            );
            let mut ciphers = server.take_ciphers().unwrap();
            ciphers.decrypt.apply(&mut first);
            assert_eq!(first, b"connect");
            let mut answer = b"_result".to_vec();
            ciphers.encrypt.apply(&mut answer);
            in_key.apply(&mut answer);
            assert_eq!(answer, b"_result");
        }
    }

    #[test]
    fn rtmpe_c1_without_digest_or_with_a_bad_key_is_refused() {
        let mut server = ServerHandshake::new();
        let mut c0c1 = vec![RTMPE_VERSION];
        c0c1.extend_from_slice(&[0x5a; HANDSHAKE_SIZE]);
        let mut out = Vec::new();
        assert_eq!(
            server.process(&c0c1, &mut out),
            Err(HandshakeError::RtmpeNoDigest("C1"))
        );
        assert!(out.is_empty());
        for bad_key in [[0u8; KEY_LEN], [0xff; KEY_LEN], {
            let mut one = [0u8; KEY_LEN];
            one[KEY_LEN - 1] = 1;
            one
        }] {
            let mut c1 = random_block_with_version(RTMPE_CLIENT_VERSION);
            Scheme::Late.put_dh_key(&mut c1, &bad_key);
            embed_digest(&mut c1, Scheme::Late, &FP_KEY[..FP_KEY_TEXT_LEN]);
            let c0c1 = [&[RTMPE_VERSION][..], &c1[..]].concat();
            let mut out = Vec::new();
            assert_eq!(
                ServerHandshake::new().process(&c0c1, &mut out),
                Err(HandshakeError::RtmpePublicKey(PublicKeyOutOfRange))
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn rtmpe_unsigned_c2_is_refused() {
        let mut client = ClientHandshake::new_rtmpe();
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut server = ServerHandshake::new();
        let mut out = Vec::new();
        server.process(&c0c1, &mut out).unwrap();
        // An echo of S1, as a plain client would send: not signed.
        let c2 = out[1..VERSION_AND_BLOCK].to_vec();
        assert_eq!(
            server.process(&c2, &mut Vec::new()),
            Err(HandshakeError::RtmpeBadSignature("C2"))
        );
        assert!(server.take_ciphers().is_none());
    }

    #[test]
    fn rtmpe_client_refuses_an_unsigned_s2() {
        let mut client = ClientHandshake::new_rtmpe();
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut reply = Vec::new();
        ServerHandshake::new().process(&c0c1, &mut reply).unwrap();
        reply[VERSION_AND_BLOCK + 10] ^= 1;
        assert_eq!(
            client.process(&reply, &mut Vec::new()),
            Err(HandshakeError::RtmpeBadSignature("S2"))
        );
        assert!(client.take_ciphers().is_none());
    }

    #[test]
    fn client_accepts_bad_s2() {
        let mut server_out = Vec::new();
        let mut client = ClientHandshake::new();
        client.start(&mut Vec::new());
        let mut c0c1 = vec![RTMP_VERSION];
        c0c1.extend_from_slice(&client.c1[..]);
        ServerHandshake::new()
            .process(&c0c1, &mut server_out)
            .unwrap();
        server_out[VERSION_AND_BLOCK + 100] ^= 1;
        let step = client.process(&server_out, &mut Vec::new());
        assert_eq!(step, Ok((server_out.len(), HandshakeStatus::Done)));
        assert!(client.server_used_digest());
        assert!(!client.server_response_valid());
    }

    #[test]
    fn client_echoes_s1_without_valid_digest() {
        // An old server: non-zero version in S1 but no digest.
        let mut client = ClientHandshake::new();
        client.start(&mut Vec::new());
        let mut input = vec![RTMP_VERSION];
        input.extend_from_slice(&random_block_with_version([3, 0, 0, 0])[..]);
        let mut c2 = Vec::new();
        client.process(&input, &mut c2).unwrap();
        assert!(!client.server_used_digest());
        assert_eq!(c2, input[1..]);
    }

    #[test]
    fn keys_match_published_constants() {
        assert_eq!(
            &FP_KEY[..FP_KEY_TEXT_LEN],
            b"Genuine Adobe Flash Player 001"
        );
        assert_eq!(
            &FMS_KEY[..FMS_KEY_TEXT_LEN],
            b"Genuine Adobe Flash Media Server 001"
        );
        assert_eq!(FP_KEY[FP_KEY_TEXT_LEN..], KEY_TAIL);
        assert_eq!(FMS_KEY[FMS_KEY_TEXT_LEN..], KEY_TAIL);
    }

    /// Feeds `data` in the given chunks; checks the contract and the bounds
    /// that hold whatever the bytes are.
    fn feed_arbitrary(
        mut process: impl FnMut(&[u8], &mut Vec<u8>) -> Step,
        data: &[u8],
        sizes: &[usize],
        max_out: usize,
    ) {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut total_used = 0;
        for &size in sizes.iter().cycle().take(data.len() + 1) {
            let end = data.len().min(pos + size);
            match process(&data[pos..end], &mut out) {
                Ok((used, status)) => {
                    assert!(used <= end - pos);
                    total_used += used;
                    if status == HandshakeStatus::Done {
                        break;
                    }
                    assert_eq!(used, end - pos);
                }
                Err(_) => break,
            }
            pos = end;
        }
        assert!(total_used <= VERSION_AND_BLOCK + HANDSHAKE_SIZE);
        assert!(out.len() <= max_out);
    }

    proptest! {
        #[test]
        fn pair_completes_for_random_splits(
            sizes in prop::collection::vec(1usize..4000, 1..16),
            digest in any::<bool>(),
        ) {
            let client = if digest { ClientHandshake::new() } else { ClientHandshake::new_simple() };
            assert_pair(client, &sizes, digest);
        }

        /// The fuzz target's body on random inputs: every selector, short and
        /// whole inputs.
        #[test]
        fn rtmpe_fuzz_body_holds(data in prop::collection::vec(any::<u8>(), 0..3600)) {
            fuzz_rtmpe(&data);
        }

        #[test]
        fn rtmpe_pair_agrees_for_random_splits(sizes in prop::collection::vec(1usize..4000, 1..16)) {
            assert_rtmpe_pair(ClientHandshake::new_rtmpe(), &sizes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..4000),
            first in prop_oneof![Just(RTMP_VERSION), Just(RTMPE_VERSION), any::<u8>()],
            sizes in prop::collection::vec(1usize..2000, 1..8),
        ) {
            let mut data = data;
            data.insert(0, first);
            let mut server = ServerHandshake::new();
            feed_arbitrary(|i, o| server.process(i, o), &data, &sizes, VERSION_AND_BLOCK + HANDSHAKE_SIZE);
            let mut client = ClientHandshake::new_rtmpe();
            feed_arbitrary(|i, o| client.process(i, o), &data, &sizes, VERSION_AND_BLOCK + HANDSHAKE_SIZE);
            let mut client = ClientHandshake::new();
            feed_arbitrary(|i, o| client.process(i, o), &data, &sizes, VERSION_AND_BLOCK + HANDSHAKE_SIZE);
        }
    }
}
