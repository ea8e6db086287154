//! RTMPE's cryptography: the Diffie-Hellman exchange carried in the
//! handshake and the RC4 keystreams that every later byte goes through.
//!
//! RTMPE ("encrypted RTMP", C0 = 0x06) is Adobe's obfuscation of RTMP from
//! the Flash Player 9/10 era. Each side hides a DH-1024 public key (RFC 2409
//! group 2, g = 2) in its C1/S1 at an offset derived from the block's own
//! bytes; the shared secret keys two RC4 ciphers, one per direction:
//!
//! * the key a side *sends* with is `HMAC-SHA256(secret, peer's public key)[:16]`,
//! * the key it *receives* with is `HMAC-SHA256(secret, own public key)[:16]`,
//!
//! and both keystreams are advanced by 1536 bytes before the first RTMP
//! chunk (librtmp's `HandShake`/`SHandShake`, which every client here uses).
//!
//! Nothing authenticates the server: anyone in the path can run the exchange
//! with each side. RTMPE is for compatibility with the encoders and players
//! that speak it; RTMPS is the variant that protects a stream.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use sha2::Sha256;

/// Bytes of a DH-1024 public key as carried in C1/S1 (big-endian, left
/// padded with zeros), and of the shared secret.
pub const KEY_LEN: usize = 128;
/// Bytes of the RC4 keys: the first half of an HMAC-SHA256.
const RC4_KEY_LEN: usize = 16;
/// Both keystreams are advanced past the handshake's size before use.
const KEYSTREAM_SKIP: usize = 1536;
/// Random bytes of a private exponent. 256 bits is the usual strength for a
/// 1024-bit group, and a fifth of the cost of a full-size exponent per
/// handshake (the exponentiations are most of an RTMPE handshake's CPU).
const PRIVATE_LEN: usize = 32;

/// RFC 2409's second Oakley group: the 1024-bit MODP prime, generator 2.
pub(crate) const GROUP2_PRIME_HEX: &[u8] = b"\
FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1\
29024E088A67CC74020BBEA63B139B22514A08798E3404DD\
EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245\
E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381\
FFFFFFFFFFFFFFFF";

fn prime() -> &'static BigUint {
    static P: OnceLock<BigUint> = OnceLock::new();
    P.get_or_init(|| {
        BigUint::parse_bytes(GROUP2_PRIME_HEX, 16).expect("the RFC 2409 prime is valid hex")
    })
}

/// A public key outside `2..=p-2`: 0 and 1 would make the secret
/// predictable, `p-1` has order 2, and `≥ p` is not a group element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RTMPE public key out of range (it must lie within 2..p-2 of the 1024-bit group)")]
pub struct PublicKeyOutOfRange;

/// One side's ephemeral DH key pair.
#[derive(Clone)]
pub struct KeyPair {
    private: BigUint,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private exponent stays out of logs and panics.
        f.debug_struct("KeyPair").finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> KeyPair {
        let mut seed = [0; PRIVATE_LEN];
        if getrandom::fill(&mut seed).is_err() {
            // No OS randomness (it does not happen on Linux); the
            // obfuscation is unauthenticated anyway, so fall back rather
            // than refuse the connection.
            fastrand::fill(&mut seed);
        }
        KeyPair::from_seed(&seed)
    }

    /// The key pair whose private exponent is `seed` with its top bit set
    /// (so that it is never 0 or 1): deterministic, for recorded vectors.
    pub fn from_seed(seed: &[u8; PRIVATE_LEN]) -> KeyPair {
        let mut bytes = *seed;
        bytes[0] |= 0x80;
        let private = BigUint::from_bytes_be(&bytes);
        let public = BigUint::from(2u32).modpow(&private, prime());
        KeyPair {
            private,
            public: to_key_bytes(&public),
        }
    }

    /// The key pair of a small private exponent, `exponent` ≥ 2, for the
    /// fuzz target: the same code on the same hostile input, at a fraction
    /// of a 256-bit exponentiation's cost (so the run reaches its count).
    #[doc(hidden)]
    pub fn from_small_exponent(exponent: u16) -> KeyPair {
        let private = BigUint::from(exponent.max(2));
        let public = BigUint::from(2u32).modpow(&private, prime());
        KeyPair {
            private,
            public: to_key_bytes(&public),
        }
    }

    /// The public key as it goes into C1/S1.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// `peer^private mod p`, after checking the peer's key is in range.
    pub fn shared_secret(
        &self,
        peer: &[u8; KEY_LEN],
    ) -> Result<[u8; KEY_LEN], PublicKeyOutOfRange> {
        let y = public_value(peer)?;
        Ok(to_key_bytes(&y.modpow(&self.private, prime())))
    }
}

/// Checks a peer's public key without spending an exponentiation.
pub fn check_public(peer: &[u8; KEY_LEN]) -> Result<(), PublicKeyOutOfRange> {
    public_value(peer).map(drop)
}

fn public_value(peer: &[u8; KEY_LEN]) -> Result<BigUint, PublicKeyOutOfRange> {
    let y = BigUint::from_bytes_be(peer);
    let p = prime();
    if y < BigUint::from(2u32) || y > p - 2u32 {
        return Err(PublicKeyOutOfRange);
    }
    Ok(y)
}

/// Big-endian, left-padded to 128 bytes (as librtmp writes keys and, with
/// GnuTLS as Debian builds it, secrets). Values are `< p < 2^1024`.
fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

/// RC4 (ARCFOUR). Written here rather than taken from a crate: it is a
/// dozen lines, and a per-byte loop with no trait layers is what the media
/// path wants (every byte of an RTMPE connection goes through it).
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rc4").finish_non_exhaustive()
    }
}

impl Rc4 {
    /// The key schedule. `key` must not be empty (ours are 16 bytes).
    pub fn new(key: &[u8]) -> Rc4 {
        debug_assert!(!key.is_empty());
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8;
        }
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        Rc4 { s, i: 0, j: 0 }
    }

    /// XORs the keystream into `data`: encrypts and decrypts alike.
    pub fn apply(&mut self, data: &mut [u8]) {
        let (mut i, mut j, s) = (self.i, self.j, &mut self.s);
        for byte in data {
            i = i.wrapping_add(1);
            let si = s[usize::from(i)];
            j = j.wrapping_add(si);
            let sj = s[usize::from(j)];
            s[usize::from(i)] = sj;
            s[usize::from(j)] = si;
            *byte ^= s[usize::from(si.wrapping_add(sj))];
        }
        self.i = i;
        self.j = j;
    }

    /// Advances the keystream by `n` bytes.
    fn skip(&mut self, n: usize) {
        let mut scratch = [0u8; 512];
        let mut left = n;
        while left > 0 {
            let step = left.min(scratch.len());
            self.apply(&mut scratch[..step]);
            left -= step;
        }
    }
}

/// The two ciphers of an RTMPE connection, ready for the first chunk.
#[derive(Debug, Clone)]
pub struct Ciphers {
    /// Applied to every byte received from the peer.
    pub decrypt: Rc4,
    /// Applied to every byte sent to the peer.
    pub encrypt: Rc4,
}

impl Ciphers {
    /// Keys both directions from the shared secret and the two public keys,
    /// and advances both keystreams past the handshake.
    pub fn derive(secret: &[u8; KEY_LEN], own: &[u8; KEY_LEN], peer: &[u8; KEY_LEN]) -> Ciphers {
        let key = |public: &[u8; KEY_LEN]| {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
            mac.update(public);
            let digest = mac.finalize().into_bytes();
            let mut rc4 = Rc4::new(&digest[..RC4_KEY_LEN]);
            rc4.skip(KEYSTREAM_SKIP);
            rc4
        };
        Ciphers {
            encrypt: key(peer),
            decrypt: key(own),
        }
    }
}

/// The RC4 layer of a session's two byte streams: off until the handshake
/// hands it the ciphers, then every byte in and out. Bytes written before
/// that (S0/S1/S2 or C2) stay in the clear.
#[derive(Debug, Default)]
pub struct CipherLayer {
    ciphers: Option<Ciphers>,
    /// Output below this offset was written in the clear.
    clear_until: usize,
}

impl CipherLayer {
    /// Turns the layer on. `pending_input` (bytes that came after the
    /// handshake's last, already encrypted) is decrypted; the first
    /// `clear_output` bytes of the output buffer are left as they are.
    pub fn start(&mut self, mut ciphers: Ciphers, pending_input: &mut [u8], clear_output: usize) {
        ciphers.decrypt.apply(pending_input);
        self.clear_until = clear_output;
        self.ciphers = Some(ciphers);
    }

    /// Decrypts bytes just received (nothing while off).
    pub fn received(&mut self, input: &mut [u8]) {
        if let Some(c) = &mut self.ciphers {
            c.decrypt.apply(input);
        }
    }

    /// Encrypts the output not yet encrypted; call as it is taken.
    pub fn sending(&mut self, output: &mut [u8]) {
        if let Some(c) = &mut self.ciphers {
            let from = std::mem::take(&mut self.clear_until);
            c.encrypt.apply(&mut output[from..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rc4(key: &[u8], text: &[u8]) -> Vec<u8> {
        let mut data = text.to_vec();
        Rc4::new(key).apply(&mut data);
        data
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The classic test vectors (Wikipedia's, and RFC 6229's 40-bit key at
    /// keystream offsets 0 and 1536, the skip RTMPE uses; OpenSSL's
    /// `enc -rc4-40` gives the same).
    #[test]
    fn rc4_matches_published_vectors() {
        assert_eq!(rc4(b"Key", b"Plaintext"), hex("bbf316e8d940af0ad3"));
        assert_eq!(rc4(b"Wiki", b"pedia"), hex("1021bf0420"));
        assert_eq!(
            rc4(b"Secret", b"Attack at dawn"),
            hex("45a01f645fc35b383552544b9bf5")
        );
        let key = hex("0102030405");
        assert_eq!(rc4(&key, &[0; 16]), hex("b2396305f03dc027ccc3524a0a1118a8"));
        let mut skipped = Rc4::new(&key);
        skipped.skip(1536);
        let mut block = [0u8; 16];
        skipped.apply(&mut block);
        assert_eq!(block.to_vec(), hex("d8729db41882259bee4f825325f5a130"));
    }

    #[test]
    fn rc4_in_pieces_equals_rc4_at_once() {
        let text: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let whole = rc4(b"0123456789abcdef", &text);
        let mut cipher = Rc4::new(b"0123456789abcdef");
        let mut pieces = text.clone();
        for chunk in pieces.chunks_mut(37) {
            cipher.apply(chunk);
        }
        assert_eq!(pieces, whole);
    }

    #[test]
    fn public_keys_outside_the_group_are_refused() {
        let ours = KeyPair::from_seed(&[7; PRIVATE_LEN]);
        let p = prime();
        for bad in [
            BigUint::from(0u32),
            BigUint::from(1u32),
            p - 1u32,
            p.clone(),
            (BigUint::from(1u32) << 1024usize) - 1u32,
        ] {
            assert_eq!(
                ours.shared_secret(&to_key_bytes(&bad)),
                Err(PublicKeyOutOfRange),
                "{bad:x}"
            );
        }
        for good in [BigUint::from(2u32), p - 2u32] {
            assert!(ours.shared_secret(&to_key_bytes(&good)).is_ok());
        }
    }

    /// g^x for a small x, and a known-answer check of the group: 2 generates
    /// the subgroup of order q = (p-1)/2, so a public key to the q is 1
    /// (librtmp checks this and warns when it fails).
    #[test]
    fn public_keys_are_in_the_prime_order_subgroup() {
        let pair = KeyPair::from_seed(&[0x42; PRIVATE_LEN]);
        let y = BigUint::from_bytes_be(pair.public());
        let q = (prime() - 1u32) >> 1usize;
        assert_eq!(y.modpow(&q, prime()), BigUint::from(1u32));
    }

    proptest! {
        /// Both sides reach the same secret, and each side's encryptor is the
        /// other's decryptor.
        #[test]
        fn both_sides_agree(a in any::<[u8; PRIVATE_LEN]>(), b in any::<[u8; PRIVATE_LEN]>(),
                            text in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (client, server) = (KeyPair::from_seed(&a), KeyPair::from_seed(&b));
            let s1 = client.shared_secret(server.public()).unwrap();
            let s2 = server.shared_secret(client.public()).unwrap();
            prop_assert_eq!(s1, s2);
            let mut c = Ciphers::derive(&s1, client.public(), server.public());
            let mut s = Ciphers::derive(&s2, server.public(), client.public());
            let mut wire = text.clone();
            c.encrypt.apply(&mut wire);
            s.decrypt.apply(&mut wire);
            prop_assert_eq!(&wire, &text);
            s.encrypt.apply(&mut wire);
            c.decrypt.apply(&mut wire);
            prop_assert_eq!(&wire, &text);
        }
    }
}
