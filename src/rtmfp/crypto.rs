//! The Flash profile's cryptography (RFC 7425 §4.5–4.6).
//!
//! Every RTMFP packet after its 4-byte scrambled session id is encrypted
//! with AES-128 in CBC mode and a zero IV, as one unit. Before a session has
//! keys (the handshake, session id 0) the key is the profile's default,
//! the ASCII bytes "Adobe Systems 02"; afterwards each direction has its own
//! key, derived from a Diffie-Hellman exchange carried in IIKeying and
//! RIKeying:
//!
//! * `encrypt = HMAC-SHA256(secret, HMAC-SHA256(far component, near component))[..16]`
//! * `decrypt = HMAC-SHA256(secret, HMAC-SHA256(near component, far component))[..16]`
//!
//! where the components are the whole session key initiator/responder
//! component (SKIC/SKRC) bytes, and the secret is `peer^private mod p` as
//! minimal big-endian bytes (what OpenSSL's `BN_bn2bin` gives, which both
//! peer families use).
//!
//! The plaintext starts with a 16-bit Internet checksum of the rest (the
//! profile's integrity check when no HMAC was negotiated; castgate
//! negotiates none, like Flash Player) and is padded to the block size with
//! 0xFF bytes, which the chunk parser reads as padding.

use std::sync::OnceLock;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use sha2::Sha256;

use super::Error;

/// AES's block: packets are whole blocks after the session id.
pub const BLOCK: usize = 16;
/// The key of every startup packet (RFC 7425 §4.5.1).
pub const DEFAULT_KEY: [u8; 16] = *b"Adobe Systems 02";

/// The 16-bit Internet checksum as Flash computes it: big-endian words,
/// an odd last byte added as the low byte (not shifted, unlike RFC 1071).
pub fn in_cksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last);
    }
    while sum >> 16 != 0 {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

/// One direction's AES-128 key, CBC with a zero IV over a whole packet.
#[derive(Clone)]
pub struct PacketKey {
    aes: Aes128,
}

impl std::fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketKey(..)")
    }
}

impl PacketKey {
    pub fn new(key: &[u8; 16]) -> PacketKey {
        PacketKey {
            aes: Aes128::new(GenericArray::from_slice(key)),
        }
    }

    /// The handshake's key.
    pub fn default_key() -> PacketKey {
        static KEY: OnceLock<PacketKey> = OnceLock::new();
        KEY.get_or_init(|| PacketKey::new(&DEFAULT_KEY)).clone()
    }

    /// Encrypts `data` in place; its length is a multiple of [`BLOCK`].
    fn encrypt(&self, data: &mut [u8]) {
        let mut prev = [0u8; BLOCK];
        for block in data.chunks_exact_mut(BLOCK) {
            for (b, p) in block.iter_mut().zip(prev) {
                *b ^= p;
            }
            self.aes.encrypt_block(GenericArray::from_mut_slice(block));
            prev.copy_from_slice(block);
        }
    }

    /// Decrypts `data` in place; its length is a multiple of [`BLOCK`].
    fn decrypt(&self, data: &mut [u8]) {
        let mut prev = [0u8; BLOCK];
        for block in data.chunks_exact_mut(BLOCK) {
            let mut cipher = [0u8; BLOCK];
            cipher.copy_from_slice(block);
            self.aes.decrypt_block(GenericArray::from_mut_slice(block));
            for (b, p) in block.iter_mut().zip(prev) {
                *b ^= p;
            }
            prev = cipher;
        }
    }

    /// Seals a packet built in `buf`: 4 bytes for the session id and 2 for
    /// the checksum, then the plaintext (flags, timestamps, chunks). Pads
    /// with 0xFF, checksums, encrypts and scrambles the session id into
    /// the first 4 bytes (RFC 7016 §2.2.1).
    pub fn seal(&self, session_id: u32, buf: &mut Vec<u8>) {
        debug_assert!(buf.len() >= HEADER_ROOM);
        let encrypted = buf.len() - 4;
        buf.resize(4 + encrypted.next_multiple_of(BLOCK), 0xff);
        let sum = in_cksum(&buf[HEADER_ROOM..]);
        buf[4..6].copy_from_slice(&sum.to_be_bytes());
        self.encrypt(&mut buf[4..]);
        let scrambled = session_id ^ scramble_words(buf);
        buf[..4].copy_from_slice(&scrambled.to_be_bytes());
    }

    /// Opens a received packet in place: decrypts what follows the session
    /// id, checks the checksum, and returns the plaintext after it.
    pub fn open<'a>(&self, packet: &'a mut [u8]) -> Result<&'a [u8], Error> {
        let encrypted = packet.len().checked_sub(4).ok_or(Error::Truncated)?;
        if encrypted < BLOCK || encrypted % BLOCK != 0 {
            return Err(Error::NotBlocks(packet.len()));
        }
        self.decrypt(&mut packet[4..]);
        let sum = u16::from_be_bytes([packet[4], packet[5]]);
        let plain = &packet[HEADER_ROOM..];
        if in_cksum(plain) != sum {
            return Err(Error::Checksum);
        }
        Ok(plain)
    }
}

/// What [`PacketKey::seal`] expects before the plaintext: session id and
/// checksum.
pub const HEADER_ROOM: usize = 6;

/// The session id a packet is for: its first word XORed with the next two
/// (the first two of the ciphertext), which are zero if the packet is short.
pub fn session_id(packet: &[u8]) -> Option<u32> {
    let first = u32::from_be_bytes(packet.get(..4)?.try_into().ok()?);
    Some(first ^ scramble_words(packet))
}

fn scramble_words(packet: &[u8]) -> u32 {
    let word = |at: usize| {
        let mut w = [0u8; 4];
        for (i, b) in w.iter_mut().enumerate() {
            *b = packet.get(at + i).copied().unwrap_or(0);
        }
        u32::from_be_bytes(w)
    };
    word(4) ^ word(8)
}

/// Whether `a` and `b`, of one length known to both sides (a MAC), are
/// equal, without stopping at the first difference. (`auth::constant_time_eq`
/// hashes first for secrets of any length; `rtmfp` sits below `auth`.)
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type HmacSha256 = Hmac<Sha256>;

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// What a session's packets carry besides the checksum, as the keying
/// components negotiated (RFC 7425 §4.6.2): an HMAC-SHA256 of the
/// ciphertext, appended (it replaces the checksum), and a session sequence
/// number before the plaintext (replays are refused). Each is on for a
/// direction when the receiver asked for it or the sender said it will
/// always send it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketOptions {
    /// Bytes of HMAC castgate appends (0: none, the checksum instead).
    pub hmac_send: usize,
    /// Bytes of HMAC castgate expects (0: none).
    pub hmac_recv: usize,
    pub sseq_send: bool,
    pub sseq_recv: bool,
}

/// Session sequence numbers this far below the highest seen are refused
/// as replays (rtmfp-cpp's `MAX_SSEQ_GAP` is 32).
const SSEQ_WINDOW: u64 = 64;

/// Both directions' keys of an established session, and its options.
#[derive(Clone)]
pub struct SessionKeys {
    pub encrypt: PacketKey,
    pub decrypt: PacketKey,
    hmac_encrypt: [u8; 32],
    hmac_decrypt: [u8; 32],
    pub options: PacketOptions,
    next_sseq: u64,
    /// The highest sequence number received, and which of the 64 below it
    /// were (bit i: `top - 1 - i`).
    seen: Option<(u64, u64)>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// RFC 7425 §4.6.1: the keys from the DH secret and both components,
    /// `near` this side's and `far` the peer's.
    pub fn derive(secret: &[u8], near: &[u8], far: &[u8], options: PacketOptions) -> SessionKeys {
        let full = |a: &[u8], b: &[u8]| {
            let md = hmac_sha256(a, &[b]);
            hmac_sha256(secret, &[&md])
        };
        let (enc, dec) = (full(far, near), full(near, far));
        let aes = |k: &[u8; 32]| {
            let mut key = [0u8; 16];
            key.copy_from_slice(&k[..16]);
            PacketKey::new(&key)
        };
        SessionKeys {
            encrypt: aes(&enc),
            decrypt: aes(&dec),
            // §4.6.3: each direction's HMAC key from the whole 256 bits.
            hmac_encrypt: hmac_sha256(secret, &[&enc]),
            hmac_decrypt: hmac_sha256(secret, &[&dec]),
            options,
            next_sseq: 0,
            seen: None,
        }
    }

    /// Keys with the checksum only, for tests and the fuzz target.
    pub fn plain(encrypt: PacketKey, decrypt: PacketKey) -> SessionKeys {
        SessionKeys {
            encrypt,
            decrypt,
            hmac_encrypt: [0; 32],
            hmac_decrypt: [0; 32],
            options: PacketOptions::default(),
            next_sseq: 0,
            seen: None,
        }
    }

    /// Seals a packet built as for [`PacketKey::seal`], with the options.
    pub fn seal(&mut self, session_id: u32, buf: &mut Vec<u8>) {
        let o = self.options;
        if o.hmac_send == 0 && !o.sseq_send {
            self.encrypt.seal(session_id, buf);
            return;
        }
        let mut out = Vec::with_capacity(buf.len() + 16 + BLOCK + o.hmac_send);
        out.extend_from_slice(&[0; 4]);
        if o.sseq_send {
            super::wire::put_vlu(&mut out, self.next_sseq);
            self.next_sseq += 1;
        }
        let sum_at = out.len();
        if o.hmac_send == 0 {
            out.extend_from_slice(&[0, 0]);
        }
        let payload_at = out.len();
        out.extend_from_slice(&buf[HEADER_ROOM..]);
        let encrypted = out.len() - 4;
        out.resize(4 + encrypted.next_multiple_of(BLOCK), 0xff);
        if o.hmac_send == 0 {
            let sum = in_cksum(&out[payload_at..]);
            out[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        self.encrypt.encrypt(&mut out[4..]);
        if o.hmac_send > 0 {
            let mac = hmac_sha256(&self.hmac_encrypt, &[&out[4..]]);
            out.extend_from_slice(&mac[..o.hmac_send]);
        }
        let scrambled = session_id ^ scramble_words(&out);
        out[..4].copy_from_slice(&scrambled.to_be_bytes());
        *buf = out;
    }

    /// Opens a received packet in place (see [`PacketKey::open`]): checks
    /// the HMAC before decrypting, and refuses a replayed sequence number.
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<&'a [u8], Error> {
        let o = self.options;
        if o.hmac_recv == 0 && !o.sseq_recv {
            return self.decrypt.open(packet);
        }
        let len = packet.len();
        let body_end = len.checked_sub(o.hmac_recv).ok_or(Error::Truncated)?;
        let encrypted = body_end.checked_sub(4).ok_or(Error::Truncated)?;
        if encrypted < BLOCK || encrypted % BLOCK != 0 {
            return Err(Error::NotBlocks(len));
        }
        if o.hmac_recv > 0 {
            let mac = hmac_sha256(&self.hmac_decrypt, &[&packet[4..body_end]]);
            if !same_bytes(&mac[..o.hmac_recv], &packet[body_end..]) {
                return Err(Error::Checksum);
            }
        }
        self.decrypt.decrypt(&mut packet[4..body_end]);
        let mut r = super::wire::Reader::new(&packet[4..body_end]);
        let seq = if o.sseq_recv { Some(r.vlu()?) } else { None };
        if o.hmac_recv == 0 {
            let sum = r.u16()?;
            if in_cksum(r.remaining()) != sum {
                return Err(Error::Checksum);
            }
        }
        if let Some(seq) = seq {
            self.accept_sequence(seq)?;
        }
        let plain_at = body_end - r.remaining().len();
        Ok(&packet[plain_at..body_end])
    }

    fn accept_sequence(&mut self, seq: u64) -> Result<(), Error> {
        match self.seen {
            None => self.seen = Some((seq, 0)),
            Some((top, bits)) if seq > top => {
                // The old top becomes bit `shift - 1`; what falls past the
                // window is refused from then on anyway.
                let shift = seq - top;
                let bits = match shift {
                    s if s > SSEQ_WINDOW => 0,
                    SSEQ_WINDOW => 1 << (SSEQ_WINDOW - 1),
                    s => (bits << s) | (1 << (s - 1)),
                };
                self.seen = Some((seq, bits));
            }
            Some((top, bits)) => {
                let back = top - seq;
                if back == 0 || back > SSEQ_WINDOW {
                    return Err(Error::Replay);
                }
                let bit = 1u64 << (back - 1);
                if bits & bit != 0 {
                    return Err(Error::Replay);
                }
                self.seen = Some((top, bits | bit));
            }
        }
        Ok(())
    }
}

/// The Diffie-Hellman groups castgate speaks: the Flash profile's group 2
/// (Flash Player, librtmfp), and 5 and 14 (RFC 3526), which other
/// implementations choose when offered (rtmfp-cpp picks 14). Generator 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Modp1024 = 2,
    Modp1536 = 5,
    Modp2048 = 14,
}

const GROUP5_PRIME_HEX: &[u8] = b"\
FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF";

const GROUP14_PRIME_HEX: &[u8] = b"\
FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

impl DhGroup {
    /// Every group, in the order castgate prefers as an initiator.
    pub const ALL: [DhGroup; 3] = [DhGroup::Modp2048, DhGroup::Modp1536, DhGroup::Modp1024];

    pub fn id(self) -> u64 {
        self as u64
    }

    pub fn from_id(id: u64) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| g.id() == id)
    }

    pub fn prime(self) -> &'static BigUint {
        static P: [OnceLock<BigUint>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let (slot, hex) = match self {
            DhGroup::Modp1024 => (0, crate::rtmp::rtmpe::GROUP2_PRIME_HEX),
            DhGroup::Modp1536 => (1, GROUP5_PRIME_HEX),
            DhGroup::Modp2048 => (2, GROUP14_PRIME_HEX),
        };
        P[slot].get_or_init(|| BigUint::parse_bytes(hex, 16).expect("an RFC prime is valid hex"))
    }

    /// Bytes of the prime: no public key may be longer.
    pub fn prime_len(self) -> usize {
        match self {
            DhGroup::Modp1024 => 128,
            DhGroup::Modp1536 => 192,
            DhGroup::Modp2048 => 256,
        }
    }

    /// Bits of a private exponent: twice the group's strength (RFC 3526
    /// §8), as rtmfp-cpp uses; most of a handshake's CPU is these modpows.
    fn private_bits(self) -> usize {
        match self {
            DhGroup::Modp1024 => 224,
            DhGroup::Modp1536 => 256,
            DhGroup::Modp2048 => 320,
        }
    }
}

/// One side's ephemeral key pair in a group.
pub struct DhKeyPair {
    group: DhGroup,
    private: BigUint,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private exponent stays out of logs and panics.
        f.debug_struct("DhKeyPair")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DhKeyPair {
    pub fn generate(group: DhGroup) -> DhKeyPair {
        let mut seed = vec![0u8; group.private_bits() / 8];
        if getrandom::fill(&mut seed).is_err() {
            fastrand::fill(&mut seed);
        }
        DhKeyPair::from_seed(group, &seed)
    }

    /// The key pair whose private exponent is `seed` with its top bit set
    /// (never 0 or 1): deterministic, for tests and recorded vectors.
    pub fn from_seed(group: DhGroup, seed: &[u8]) -> DhKeyPair {
        let mut bytes = seed.to_vec();
        if let Some(b) = bytes.first_mut() {
            *b |= 0x80;
        } else {
            bytes.push(0x80);
        }
        let private = BigUint::from_bytes_be(&bytes);
        let public = BigUint::from(2u32)
            .modpow(&private, group.prime())
            .to_bytes_be();
        DhKeyPair {
            group,
            private,
            public,
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The public key, minimal big-endian bytes.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// `peer^private mod p`, minimal big-endian bytes, after checking the
    /// peer's key: no longer than the prime, and within `2..=p-2`.
    pub fn shared_secret(&self, peer: &[u8]) -> Result<Vec<u8>, Error> {
        if peer.len() > self.group.prime_len() {
            return Err(Error::BadPublicKey);
        }
        let y = BigUint::from_bytes_be(peer);
        let p = self.group.prime();
        if y < BigUint::from(2u32) || y > p - 2u32 {
            return Err(Error::BadPublicKey);
        }
        Ok(y.modpow(&self.private, p).to_bytes_be())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_checksum_is_the_internet_checksum_with_flash_s_odd_byte() {
        // RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            in_cksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // The odd byte is the low byte of its word (rtmfp-cpp, Cumulus).
        assert_eq!(in_cksum(&[0x12]), !0x0012);
        assert_eq!(in_cksum(&[]), 0xffff);
    }

    #[test]
    fn aes_128_matches_fips_197() {
        // FIPS-197 appendix C.1, one block: CBC with a zero IV is plain AES.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut block: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        PacketKey::new(&key).encrypt(&mut block);
        assert_eq!(
            block,
            [
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
    }

    #[test]
    fn cbc_chains_the_blocks() {
        // Two equal plaintext blocks make different ciphertext blocks.
        let mut data = [7u8; 32];
        PacketKey::default_key().encrypt(&mut data);
        assert_ne!(data[..16], data[16..]);
        PacketKey::default_key().decrypt(&mut data);
        assert_eq!(data, [7u8; 32]);
    }

    #[test]
    fn a_packet_with_a_flipped_bit_fails_its_checksum() {
        let mut buf = vec![0; HEADER_ROOM];
        buf.extend_from_slice(&[0x0b, 0x00, 0x10, 0x30, 0x00, 0x02, 0x01, 0x02]);
        PacketKey::default_key().seal(0, &mut buf);
        assert_eq!(buf.len(), 4 + 16);
        for bit in 32..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                PacketKey::default_key().open(&mut bad).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn sequence_numbers_refuse_replays_and_the_far_past() {
        let mut k = SessionKeys::plain(PacketKey::default_key(), PacketKey::default_key());
        for seq in [5, 3, 4, 10, 9, 80] {
            assert_eq!(k.accept_sequence(seq), Ok(()), "{seq}");
        }
        for seq in [5, 10, 80, 80 - 65, 0] {
            assert_eq!(k.accept_sequence(seq), Err(Error::Replay), "{seq}");
        }
        assert_eq!(k.accept_sequence(79), Ok(()));
        assert_eq!(k.accept_sequence(80 - 64), Ok(()), "the window's last");
    }

    #[test]
    fn every_group_prime_is_a_safe_prime_of_its_size() {
        // Miller-Rabin on p and (p-1)/2 with fixed bases: a typo in a hex
        // constant would not survive it.
        fn probably_prime(n: &BigUint) -> bool {
            let one = BigUint::from(1u32);
            let n1 = n - &one;
            let s = n1.trailing_zeros().unwrap_or(0);
            let d = &n1 >> s;
            [2u32, 3, 5, 7, 11, 13].iter().all(|&a| {
                let mut x = BigUint::from(a).modpow(&d, n);
                if x == one || x == n1 {
                    return true;
                }
                for _ in 1..s {
                    x = x.modpow(&BigUint::from(2u32), n);
                    if x == n1 {
                        return true;
                    }
                }
                false
            })
        }
        for g in DhGroup::ALL {
            let p = g.prime();
            assert_eq!(p.bits() as usize, g.prime_len() * 8, "{g:?}");
            assert!(probably_prime(p), "{g:?}");
            assert!(probably_prime(&(p >> 1)), "{g:?} (p-1)/2");
        }
    }

    #[test]
    fn public_keys_outside_the_group_are_refused() {
        let pair = DhKeyPair::from_seed(DhGroup::Modp1024, &[1; 28]);
        let p = DhGroup::Modp1024.prime();
        for bad in [
            vec![],
            vec![1],
            (p - 1u32).to_bytes_be(),
            p.to_bytes_be(),
            vec![0xff; 129],
        ] {
            assert_eq!(pair.shared_secret(&bad), Err(Error::BadPublicKey));
        }
        assert!(pair.shared_secret(&[2]).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn both_sides_derive_each_other_s_keys(
            a in any::<[u8; 28]>(), b in any::<[u8; 28]>(),
            skic in proptest::collection::vec(any::<u8>(), 1..200),
            (hmac, sseq) in (prop_oneof![Just(0usize), Just(4), Just(16), Just(32)], any::<bool>()),
            skrc in proptest::collection::vec(any::<u8>(), 1..200),
            plain in proptest::collection::vec(any::<u8>(), 1..1100),
        ) {
            let opts = PacketOptions { hmac_send: hmac, hmac_recv: hmac, sseq_send: sseq, sseq_recv: sseq };
            let mirror = |o: PacketOptions| o;
            let (ia, ra) = (
                DhKeyPair::from_seed(DhGroup::Modp1024, &a),
                DhKeyPair::from_seed(DhGroup::Modp1024, &b),
            );
            let s1 = ia.shared_secret(ra.public()).unwrap();
            let s2 = ra.shared_secret(ia.public()).unwrap();
            prop_assert_eq!(&s1, &s2);
            let mut init = SessionKeys::derive(&s1, &skic, &skrc, opts);
            let mut resp = SessionKeys::derive(&s2, &skrc, &skic, mirror(opts));
            let mut buf = vec![0; HEADER_ROOM];
            buf.extend_from_slice(&plain);
            init.seal(0x1234_5678, &mut buf);
            prop_assert_eq!(session_id(&buf), Some(0x1234_5678));
            let opened = resp.open(&mut buf).unwrap().to_vec();
            prop_assert_eq!(&opened[..plain.len()], &plain[..]);
            prop_assert!(opened[plain.len()..].iter().all(|&b| b == 0xff));
            // A second packet opens too; the first again is a replay when
            // sequence numbers are on.
            let mut again = vec![0; HEADER_ROOM];
            again.extend_from_slice(&plain);
            init.seal(0x1234_5678, &mut again);
            let replay = again.clone();
            prop_assert!(resp.open(&mut again).is_ok());
            let mut replay = replay;
            prop_assert_eq!(resp.open(&mut replay).is_err(), opts.sseq_send);
            // Each direction has its own key.
            let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
            init.encrypt.encrypt(&mut x);
            init.decrypt.encrypt(&mut y);
            prop_assert_ne!(x, y);
        }
    }
}
