//! The RTMFP handshake (RFC 7016 §3.5.1) with the Flash profile's keys,
//! both ends of it, sans-I/O:
//!
//! ```text
//! initiator                                   responder (castgate's server)
//!   IHello(epd, tag)            ------------>   stateless: RHello, nothing kept
//!                               <------------   RHello(tag, cookie, certificate)
//!   IIKeying(isid, cookie, cert, SKIC) ------>  cookie checked first, then DH
//!                               <------------   RIKeying(rsid, SKRC)
//!   packets to rsid, session keys   <------>    packets to isid, session keys
//! ```
//!
//! Startup packets (all four above) have session id 0, or the initiator's
//! id for RIKeying, and the default key. The cookie binds the RHello to the
//! IHello's source address and a time, under a secret only castgate knows:
//! the responder keeps no state for an IHello, and does no Diffie-Hellman
//! for an address that did not receive its RHello. An RHello is larger than
//! the smallest IHello (180 bytes against 36 for librtmfp, whose cookie
//! and certificate sizes are fixed), so `HelloLimiter` bounds the bytes it
//! sends to any one address and in all.

use std::net::{IpAddr, SocketAddr};

use super::crypto::{hmac_sha256, same_bytes, DhGroup, DhKeyPair, PacketKey, SessionKeys};
use super::flash::{self, CertOffer, Discriminator, Keying, KeyingKey};
use super::packet::{self, Builder, Chunk, Header, Mode};
use super::Error;

/// Plaintext bytes of a startup packet at most (rtmfp-cpp's limit).
pub const MAX_STARTUP_PACKET: usize = 4256;
/// Bytes of castgate's cookie: librtmfp takes no other length.
pub const COOKIE_LEN: usize = 64;
/// A cookie is good for this long after its RHello (rtmfp-cpp: 95 s).
pub const COOKIE_LIFETIME_SECS: u64 = 95;
/// Tags castgate answers: an initiator's tag is 16 bytes in every known
/// implementation; more is refused rather than echoed.
pub const MAX_TAG_LEN: usize = 64;
/// The signature field of IIKeying and RIKeying: the Flash profile signs
/// nothing, and its implementations send this one byte.
const SIGNATURE: &[u8] = b"X";

/// A startup packet, sealed with the default key for `session_id`.
pub fn startup_packet(chunk: &Chunk<'_>, timestamp: u16, session_id: u32) -> Vec<u8> {
    let mut header = Header::new(Mode::Startup);
    header.timestamp = Some(timestamp);
    let mut b = Builder::new(&header, MAX_STARTUP_PACKET);
    let fits = b.push(chunk);
    debug_assert!(fits, "handshake chunks are far below the startup limit");
    let mut buf = b.into_buf();
    PacketKey::default_key().seal(session_id, &mut buf);
    buf
}

/// Opens a startup packet in place and returns its first chunk (a startup
/// packet carries one: IHello, RHello, IIKeying or RIKeying).
pub fn open_startup(packet: &mut [u8]) -> Result<Chunk<'_>, Error> {
    let plain = PacketKey::default_key().open(packet)?;
    let (header, mut chunks) = packet::parse(plain)?;
    if header.mode != Mode::Startup {
        return Err(Error::BadMode);
    }
    chunks.next().unwrap_or(Err(Error::Truncated))
}

/// Mints and checks cookies: `issued (u32 seconds) ‖ MAC`, the MAC an
/// HMAC-SHA256 over the issue time and the address, 60 bytes of it.
#[derive(Clone)]
pub struct CookieJar {
    secret: [u8; 32],
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar(..)")
    }
}

impl CookieJar {
    pub fn new(secret: [u8; 32]) -> CookieJar {
        CookieJar { secret }
    }

    fn mac(&self, issued: u32, addr: &SocketAddr) -> [u8; COOKIE_LEN - 4] {
        let (ip, port) = (address_bytes(addr.ip()), addr.port().to_be_bytes());
        let mut out = [0; COOKIE_LEN - 4];
        let first = hmac_sha256(&self.secret, &[&[1], &issued.to_be_bytes(), &ip, &port]);
        let second = hmac_sha256(&self.secret, &[&[2], &issued.to_be_bytes(), &ip, &port]);
        out[..32].copy_from_slice(&first);
        out[32..].copy_from_slice(&second[..COOKIE_LEN - 4 - 32]);
        out
    }

    pub fn issue(&self, now_secs: u64, addr: &SocketAddr) -> [u8; COOKIE_LEN] {
        let issued = now_secs as u32;
        let mut cookie = [0; COOKIE_LEN];
        cookie[..4].copy_from_slice(&issued.to_be_bytes());
        cookie[4..].copy_from_slice(&self.mac(issued, addr));
        cookie
    }

    /// Whether `cookie` is one this jar issued to `addr` within the
    /// lifetime. The MAC comparison does not stop at the first difference.
    pub fn check(&self, now_secs: u64, addr: &SocketAddr, cookie: &[u8]) -> Result<(), Error> {
        let Ok(cookie) = <&[u8; COOKIE_LEN]>::try_from(cookie) else {
            return Err(Error::BadCookie);
        };
        let issued = u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
        let age = (now_secs as u32).wrapping_sub(issued);
        if u64::from(age) > COOKIE_LIFETIME_SECS {
            return Err(Error::BadCookie);
        }
        if !same_bytes(&self.mac(issued, addr), &cookie[4..]) {
            return Err(Error::BadCookie);
        }
        Ok(())
    }
}

fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// castgate's server side of the handshake: stateless until an IIKeying
/// with a good cookie.
#[derive(Debug, Clone)]
pub struct Responder {
    cookies: CookieJar,
    cert: Vec<u8>,
    groups: Vec<DhGroup>,
}

/// An accepted IIKeying: what the session needs, and the component to send.
#[derive(Debug)]
pub struct Accepted {
    /// The initiator's session id: packets to it carry it.
    pub far_session_id: u32,
    pub keys: SessionKeys,
    pub group: DhGroup,
    /// castgate's session key responder component, for the RIKeying.
    pub skrc: Vec<u8>,
}

/// The groups a server offers, as MonaServer does (librtmfp expects
/// exactly its 77-byte certificate).
pub const SERVER_GROUPS: [DhGroup; 3] = [DhGroup::Modp1024, DhGroup::Modp1536, DhGroup::Modp2048];

impl Responder {
    /// A responder with a fresh cookie secret and certificate.
    pub fn new() -> Responder {
        let mut secret = [0u8; 32];
        let mut random = [0u8; 64];
        if getrandom::fill(&mut secret).is_err() || getrandom::fill(&mut random).is_err() {
            fastrand::fill(&mut secret);
            fastrand::fill(&mut random);
        }
        Responder::with_secret(secret, random)
    }

    /// A deterministic responder, for tests and recorded vectors.
    pub fn with_secret(secret: [u8; 32], cert_random: [u8; 64]) -> Responder {
        Responder {
            cookies: CookieJar::new(secret),
            cert: flash::certificate(true, &SERVER_GROUPS, &cert_random),
            groups: SERVER_GROUPS.to_vec(),
        }
    }

    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    /// The RHello packet answering an IHello, or why none is due. A
    /// fingerprint discriminator asks for a peer introduction (out of
    /// scope); a hostname or URL is any server's, castgate's included.
    pub fn hello(
        &self,
        now_secs: u64,
        timestamp: u16,
        from: &SocketAddr,
        epd: &[u8],
        tag: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let d = Discriminator::parse(epd)?;
        if d.fingerprint.is_some() {
            return Err(Error::PeerIntroduction);
        }
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            return Err(Error::BadTag(tag.len()));
        }
        let cookie = self.cookies.issue(now_secs, from);
        let chunk = Chunk::RHello {
            tag,
            cookie: &cookie,
            cert: &self.cert,
        };
        Ok(startup_packet(&chunk, timestamp, 0))
    }

    /// Checks an IIKeying and, when it is good, runs the key exchange. The
    /// cookie is checked before anything is parsed or computed.
    pub fn keying(
        &self,
        now_secs: u64,
        from: &SocketAddr,
        far_session_id: u32,
        cookie: &[u8],
        cert: &[u8],
        skic: &[u8],
    ) -> Result<Accepted, Error> {
        self.cookies.check(now_secs, from, cookie)?;
        if far_session_id == 0 {
            return Err(Error::BadChunk(packet::kind::IIKEYING));
        }
        let offer = CertOffer::parse(cert)?;
        let keying = Keying::parse(skic)?;
        let options = keying.negotiate()?;
        let (group, peer_public) = match keying.key {
            KeyingKey::Ephemeral(g, public) => (g, public),
            KeyingKey::Static(g) => {
                let key = offer.static_keys.iter().find(|(sg, _)| *sg == g);
                (g, key.ok_or(Error::NoKey)?.1)
            }
        };
        if !self.groups.contains(&group) {
            return Err(Error::NoCommonGroup);
        }
        let pair = DhKeyPair::generate(group);
        let secret = pair.shared_secret(peer_public)?;
        let skrc = keying.respond(group, pair.public());
        let keys = SessionKeys::derive(&secret, &skrc, skic, options);
        Ok(Accepted {
            far_session_id,
            keys,
            group,
            skrc,
        })
    }

    /// The RIKeying packet for an accepted IIKeying: to the initiator's
    /// session id, default key; `near_session_id` is the id the initiator
    /// is to send with.
    pub fn rikeying_packet(timestamp: u16, accepted: &Accepted, near_session_id: u32) -> Vec<u8> {
        let chunk = Chunk::RIKeying {
            session_id: near_session_id,
            skrc: &accepted.skrc,
            signature: SIGNATURE,
        };
        startup_packet(&chunk, timestamp, accepted.far_session_id)
    }
}

impl Default for Responder {
    fn default() -> Responder {
        Responder::new()
    }
}

/// A client's side of the handshake, for castgate's RTMFP client (tests and
/// relays to `rtmfp://` targets).
#[derive(Debug)]
pub struct Initiator {
    epd: Vec<u8>,
    tag: [u8; 16],
    near_session_id: u32,
    preference: Vec<DhGroup>,
    state: InitiatorState,
}

#[derive(Debug)]
enum InitiatorState {
    HelloSent,
    KeyingSent {
        pair: DhKeyPair,
        skic: Vec<u8>,
        /// The IIKeying packet, for a retransmission.
        packet: Vec<u8>,
    },
    Done,
}

/// What the initiator makes of a startup packet.
#[derive(Debug)]
pub enum Progress {
    /// Send this packet (the IIKeying).
    Send(Vec<u8>),
    /// The session is open.
    Open {
        far_session_id: u32,
        keys: Box<SessionKeys>,
        group: DhGroup,
    },
}

impl Initiator {
    /// An initiator for `url`, whose packets castgate will receive on
    /// `near_session_id` (not 0), preferring groups in `preference` order.
    pub fn new(url: &str, near_session_id: u32, preference: &[DhGroup]) -> Initiator {
        let mut tag = [0u8; 16];
        if getrandom::fill(&mut tag).is_err() {
            fastrand::fill(&mut tag);
        }
        Initiator {
            epd: Discriminator::for_url(url),
            tag,
            near_session_id: near_session_id.max(1),
            preference: preference.to_vec(),
            state: InitiatorState::HelloSent,
        }
    }

    pub fn near_session_id(&self) -> u32 {
        self.near_session_id
    }

    /// The IHello packet (also its retransmission).
    pub fn hello(&self, timestamp: u16) -> Vec<u8> {
        let chunk = Chunk::IHello {
            epd: &self.epd,
            tag: &self.tag,
        };
        startup_packet(&chunk, timestamp, 0)
    }

    /// The packet to send again when no answer came: IHello or IIKeying.
    pub fn retransmission(&self, timestamp: u16) -> Option<Vec<u8>> {
        match &self.state {
            InitiatorState::HelloSent => Some(self.hello(timestamp)),
            InitiatorState::KeyingSent { packet, .. } => Some(packet.clone()),
            InitiatorState::Done => None,
        }
    }

    /// Takes a startup chunk from the responder.
    pub fn on_chunk(&mut self, timestamp: u16, chunk: &Chunk<'_>) -> Result<Progress, Error> {
        match (&self.state, chunk) {
            (InitiatorState::HelloSent, Chunk::RHello { tag, cookie, cert }) => {
                if *tag != self.tag {
                    return Err(Error::BadTag(tag.len()));
                }
                let offer = CertOffer::parse(cert)?;
                let group = offer.choose(&self.preference).ok_or(Error::NoCommonGroup)?;
                let pair = DhKeyPair::generate(group);
                let mut random = [0u8; 64];
                fastrand::fill(&mut random);
                // Flash Player's layout: the key in the certificate, the
                // component selecting its group (MonaServer and rtmfp-cpp
                // both take it).
                let (skic, own_cert) = Keying::initiate(group, pair.public(), &random);
                let iikeying = Chunk::IIKeying {
                    session_id: self.near_session_id,
                    cookie,
                    cert: &own_cert,
                    skic: &skic,
                    signature: SIGNATURE,
                };
                let packet = startup_packet(&iikeying, timestamp, 0);
                self.state = InitiatorState::KeyingSent {
                    pair,
                    skic,
                    packet: packet.clone(),
                };
                Ok(Progress::Send(packet))
            }
            (
                InitiatorState::KeyingSent { pair, skic, .. },
                Chunk::RIKeying {
                    session_id, skrc, ..
                },
            ) => {
                if *session_id == 0 {
                    return Err(Error::BadChunk(packet::kind::RIKEYING));
                }
                let keying = Keying::parse(skrc)?;
                let options = keying.negotiate()?;
                let KeyingKey::Ephemeral(group, public) = keying.key else {
                    return Err(Error::NoKey);
                };
                if group != pair.group() {
                    return Err(Error::NoCommonGroup);
                }
                let secret = pair.shared_secret(public)?;
                let keys = SessionKeys::derive(&secret, skic, skrc, options);
                let open = Progress::Open {
                    far_session_id: *session_id,
                    keys: Box::new(keys),
                    group,
                };
                self.state = InitiatorState::Done;
                Ok(open)
            }
            (_, other) => Err(Error::Unexpected(other.kind())),
        }
    }
}

/// Bounds what RHellos may send: a token bucket per source address (in a
/// fixed table of hashed slots, so that no address costs memory) and one
/// for all, both in bytes per second. An IHello over budget is dropped:
/// the initiator retries after a second or more.
#[derive(Debug)]
pub struct HelloLimiter {
    slots: Vec<Bucket>,
    all: Bucket,
    per_address: f64,
    total: f64,
    hash_key: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn take(&mut self, now_ms: u64, rate: f64, bytes: f64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        // A bucket holds at most one second of its rate.
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at_ms = now_ms.max(self.at_ms);
        if self.tokens < bytes {
            return false;
        }
        self.tokens -= bytes;
        true
    }
}

/// Slots of the per-address table: addresses that hash alike share one.
const LIMITER_SLOTS: usize = 4096;

impl HelloLimiter {
    /// `per_address` and `total` in bytes per second.
    pub fn new(per_address: u64, total: u64) -> HelloLimiter {
        // Buckets start full: the first IHellos after a start are answered.
        let full = |rate: u64| Bucket {
            tokens: rate as f64,
            at_ms: 0,
        };
        HelloLimiter {
            slots: vec![full(per_address); LIMITER_SLOTS],
            all: full(total),
            per_address: per_address as f64,
            total: total as f64,
            hash_key: fastrand::u64(..),
        }
    }

    /// Whether an RHello of `bytes` may go to `ip` now.
    pub fn allow(&mut self, now_ms: u64, ip: IpAddr, bytes: usize) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash_key.hash(&mut h);
        ip.hash(&mut h);
        let slot = (h.finish() as usize) % LIMITER_SLOTS;
        let bytes = bytes as f64;
        // Checked per address first, so that one address's flood does not
        // spend the shared budget.
        let mut candidate = self.slots[slot];
        if !candidate.take(now_ms, self.per_address, bytes) {
            return false;
        }
        if !self.all.take(now_ms, self.total, bytes) {
            return false;
        }
        self.slots[slot] = candidate;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
    }

    fn chunk_of(packet: &mut [u8]) -> Chunk<'_> {
        open_startup(packet).unwrap()
    }

    /// Runs the handshake between castgate's two ends and returns both
    /// sides' outcome.
    fn handshake(preference: &[DhGroup]) -> (Accepted, Progress, u32) {
        let responder = Responder::with_secret([3; 32], [4; 64]);
        let mut init = Initiator::new("rtmfp://127.0.0.1/live", 0x0102_0304, preference);
        let mut ihello = init.hello(1);
        assert_eq!(crate::rtmfp::crypto::session_id(&ihello), Some(0));
        let Chunk::IHello { epd, tag } = chunk_of(&mut ihello) else {
            panic!("not an IHello")
        };
        let mut rhello = responder.hello(1000, 2, &addr(5000), epd, tag).unwrap();
        // Librtmfp's sizes: a 16-byte tag gives a 180-byte RHello.
        assert_eq!(rhello.len(), 180);
        let rhello_chunk = chunk_of(&mut rhello);
        let Progress::Send(mut iikeying) = init.on_chunk(3, &rhello_chunk).unwrap() else {
            panic!("no IIKeying")
        };
        let Chunk::IIKeying {
            session_id,
            cookie,
            cert,
            skic,
            ..
        } = chunk_of(&mut iikeying)
        else {
            panic!("not an IIKeying")
        };
        let accepted = responder
            .keying(1010, &addr(5000), session_id, cookie, cert, skic)
            .unwrap();
        assert_eq!(accepted.far_session_id, 0x0102_0304);
        let mut rikeying = Responder::rikeying_packet(4, &accepted, 77);
        assert_eq!(
            crate::rtmfp::crypto::session_id(&rikeying),
            Some(0x0102_0304)
        );
        let rikeying_chunk = chunk_of(&mut rikeying);
        let open = init.on_chunk(5, &rikeying_chunk).unwrap();
        (accepted, open, 77)
    }

    #[test]
    fn both_ends_open_a_session_with_matching_keys_in_each_group() {
        for (preference, group) in [
            (vec![DhGroup::Modp1024], DhGroup::Modp1024),
            (DhGroup::ALL.to_vec(), DhGroup::Modp2048),
            (vec![DhGroup::Modp1536], DhGroup::Modp1536),
        ] {
            let (accepted, open, rsid) = handshake(&preference);
            let Progress::Open {
                far_session_id,
                keys,
                group: chosen,
            } = open
            else {
                panic!("not open")
            };
            assert_eq!(
                (far_session_id, chosen, accepted.group),
                (rsid, group, group)
            );
            // Client to server and back, each with its own key.
            let mut up = vec![0; crate::rtmfp::crypto::HEADER_ROOM];
            let (to_server, to_client) = (b"\x01 to the server", b"\x02 to the client");
            up.extend_from_slice(to_server);
            let (mut keys, mut server_keys) = (keys, accepted.keys);
            keys.seal(rsid, &mut up);
            let opened = server_keys.open(&mut up).unwrap();
            assert_eq!(opened[..to_server.len()], *to_server);
            let mut down = vec![0; crate::rtmfp::crypto::HEADER_ROOM];
            down.extend_from_slice(to_client);
            server_keys.seal(0x0102_0304, &mut down);
            let opened = keys.open(&mut down).unwrap();
            assert_eq!(opened[..to_client.len()], *to_client);
        }
    }

    #[test]
    fn a_cookie_is_good_only_for_its_address_and_lifetime() {
        let jar = CookieJar::new([9; 32]);
        let c = jar.issue(1000, &addr(1));
        assert_eq!(jar.check(1000, &addr(1), &c), Ok(()));
        assert_eq!(jar.check(1000 + COOKIE_LIFETIME_SECS, &addr(1), &c), Ok(()));
        assert_eq!(
            jar.check(1001 + COOKIE_LIFETIME_SECS, &addr(1), &c),
            Err(Error::BadCookie)
        );
        assert_eq!(jar.check(999, &addr(1), &c), Err(Error::BadCookie));
        assert_eq!(jar.check(1000, &addr(2), &c), Err(Error::BadCookie));
        assert_eq!(jar.check(1000, &addr(1), &c[..63]), Err(Error::BadCookie));
        for i in 0..COOKIE_LEN {
            let mut bad = c;
            bad[i] ^= 0x40;
            assert!(jar.check(1000, &addr(1), &bad).is_err(), "byte {i}");
        }
        assert!(CookieJar::new([8; 32]).check(1000, &addr(1), &c).is_err());
    }

    #[test]
    fn no_diffie_hellman_without_a_good_cookie() {
        let responder = Responder::with_secret([3; 32], [4; 64]);
        let skic = Keying::build(DhGroup::Modp1024, &[5; 128]);
        let cookie = responder.cookies.issue(50, &addr(9));
        // A garbage component behind a bad cookie is refused for the cookie.
        assert_eq!(
            responder
                .keying(50, &addr(9), 1, &[0; 64], b"", b"garbage")
                .unwrap_err(),
            Error::BadCookie
        );
        assert_eq!(
            responder
                .keying(50, &addr(10), 1, &cookie, b"", &skic)
                .unwrap_err(),
            Error::BadCookie
        );
        assert!(responder
            .keying(50, &addr(9), 1, &cookie, b"", &skic)
            .is_ok());
    }

    #[test]
    fn refusals_name_their_reason() {
        let responder = Responder::with_secret([3; 32], [4; 64]);
        let from = addr(7);
        let mut fp = Vec::new();
        flash::put_option(&mut fp, flash::EPD_FINGERPRINT, &[1; 32]);
        assert_eq!(
            responder.hello(0, 0, &from, &fp, &[1; 16]),
            Err(Error::PeerIntroduction)
        );
        let epd = Discriminator::for_url("rtmfp://x/app");
        assert_eq!(
            responder.hello(0, 0, &from, &epd, &[]),
            Err(Error::BadTag(0))
        );
        assert_eq!(
            responder.hello(0, 0, &from, &epd, &[1; 65]),
            Err(Error::BadTag(65))
        );
        let cookie = responder.cookies.issue(0, &from);
        let mut hmac = Vec::new();
        flash::put_option(&mut hmac, flash::KEYING_HMAC_NEGOTIATION, &[0x05, 99]);
        flash::put_option(&mut hmac, flash::KEYING_DH_PUBLIC_KEY, &[2, 9]);
        assert_eq!(
            responder
                .keying(0, &from, 1, &cookie, b"", &hmac)
                .unwrap_err(),
            Error::BadHmacLength
        );
        let skic = Keying::build(DhGroup::Modp1024, &[0]);
        assert_eq!(
            responder
                .keying(0, &from, 1, &cookie, b"", &skic)
                .unwrap_err(),
            Error::BadPublicKey
        );
        let mut select = Vec::new();
        flash::put_option(&mut select, flash::KEYING_DH_GROUP_SELECT, &[2]);
        assert_eq!(
            responder
                .keying(0, &from, 1, &cookie, b"", &select)
                .unwrap_err(),
            Error::NoKey
        );
        let skic = Keying::build(DhGroup::Modp1024, &[5; 128]);
        assert_eq!(
            responder
                .keying(0, &from, 0, &cookie, b"", &skic)
                .unwrap_err(),
            Error::BadChunk(packet::kind::IIKEYING)
        );
    }

    #[test]
    fn an_rhello_with_another_tag_is_not_taken() {
        let responder = Responder::with_secret([3; 32], [4; 64]);
        let mut init = Initiator::new("rtmfp://127.0.0.1/live", 5, &[DhGroup::Modp1024]);
        let epd = Discriminator::for_url("rtmfp://127.0.0.1/live");
        let mut rhello = responder.hello(0, 0, &addr(1), &epd, &[0xaa; 16]).unwrap();
        let chunk = chunk_of(&mut rhello);
        assert_eq!(init.on_chunk(0, &chunk).unwrap_err(), Error::BadTag(16));
        // Still waiting for its own: the retransmission is the IHello.
        let mut again = init.retransmission(1).unwrap();
        assert!(matches!(chunk_of(&mut again), Chunk::IHello { .. }));
    }

    #[test]
    fn the_hello_limiter_bounds_each_address_and_all_of_them() {
        let mut l = HelloLimiter::new(1000, 3000);
        let a: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        // Buckets start full and hold one second of their rate at most.
        let sent = (0..100).filter(|_| l.allow(0, a, 180)).count();
        assert_eq!(sent, 1000 / 180);
        assert!(!l.allow(50, a, 180), "50 ms refill 50 bytes: 150");
        assert!(l.allow(200, a, 180), "200 ms refill 200 bytes: 300");
        // Many addresses, once each, are held by the total.
        let mut fresh = HelloLimiter::new(1000, 3000);
        let others = (0..50u8)
            .filter(|i| fresh.allow(0, Ipv4Addr::new(10, 1, 0, *i).into(), 180))
            .count();
        assert_eq!(others, 3000 / 180);
        let later = (0..50u8)
            .filter(|i| fresh.allow(60_000, Ipv4Addr::new(10, 2, 0, *i).into(), 180))
            .count();
        assert_eq!(later, 3000 / 180);
    }
}
