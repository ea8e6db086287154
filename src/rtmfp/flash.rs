//! The Flash profile's handshake contents (RFC 7425 §4.2–4.4): endpoint
//! discriminators, certificates and session key components, each a list of
//! options. An option is a VLU length and, when the length is not 0, a VLU
//! type and its value; a length of 0 is a marker (it ends a user data
//! option list).
//!
//! castgate's server certificate is ephemeral, as Flash Media Server's
//! was: it offers DH groups and 64 random bytes, and the key comes in the
//! RIKeying. It is byte for byte the shape MonaServer sends (77 bytes),
//! which librtmfp assumes.

use super::crypto::{DhGroup, PacketOptions};
use super::wire::{put_field, put_vlu, Reader};
use super::Error;

/// Endpoint discriminator options (RFC 7425 §4.4.2).
pub const EPD_REQUIRED_HOSTNAME: u64 = 0x00;
pub const EPD_ANCILLARY_DATA: u64 = 0x0a;
pub const EPD_FINGERPRINT: u64 = 0x0f;

/// Certificate options (§4.3).
pub const CERT_HOSTNAME: u64 = 0x00;
pub const CERT_ACCEPTS_ANCILLARY_DATA: u64 = 0x0a;
pub const CERT_EXTRA_RANDOMNESS: u64 = 0x0e;
pub const CERT_SUPPORTED_DH_GROUP: u64 = 0x15;
pub const CERT_STATIC_DH_PUBLIC_KEY: u64 = 0x1d;

/// Session key component options (§4.5.2).
pub const KEYING_DH_PUBLIC_KEY: u64 = 0x0d;
pub const KEYING_EXTRA_RANDOMNESS: u64 = 0x0e;
pub const KEYING_HMAC_NEGOTIATION: u64 = 0x1a;
pub const KEYING_SSEQ_NEGOTIATION: u64 = 0x1e;
pub const KEYING_DH_GROUP_SELECT: u64 = 0x1d;

/// User data options (RFC 7016 §2.3.11.1.1): a flow's metadata, and the
/// flow of the receiver's it answers.
pub const USER_DATA_METADATA: u64 = 0x00;
pub const USER_DATA_RETURN_ASSOCIATION: u64 = 0x0a;

/// Negotiation flags of the HMAC and session sequence number options: the
/// sender will always send it, will send it when asked, asks for it.
const NEGOTIATE_WILL_SEND_ALWAYS: u8 = 0x04;
const NEGOTIATE_WILL_SEND_ON_REQUEST: u8 = 0x02;
const NEGOTIATE_REQUEST: u8 = 0x01;
/// Bytes of HMAC castgate sends when asked (RFC 2104 §5's half of SHA-256).
pub const HMAC_LEN: usize = 16;

/// Bytes of the random option in a certificate: Flash's, and MonaServer's.
const CERT_RANDOM_LEN: usize = 64;

/// One entry of an option list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt<'a> {
    Marker,
    Value { kind: u64, value: &'a [u8] },
}

/// The options of `bytes`, in order; an error ends the list.
pub fn options(bytes: &[u8]) -> impl Iterator<Item = Result<Opt<'_>, Error>> {
    let mut r = Reader::new(bytes);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || r.is_empty() {
            return None;
        }
        let opt = r.field().and_then(|body| {
            if body.is_empty() {
                return Ok(Opt::Marker);
            }
            let mut b = Reader::new(body);
            let kind = b.vlu()?;
            Ok(Opt::Value {
                kind,
                value: b.rest(),
            })
        });
        failed = opt.is_err();
        Some(opt)
    })
}

/// Appends an option.
pub fn put_option(out: &mut Vec<u8>, kind: u64, value: &[u8]) {
    let mut body = Vec::with_capacity(value.len() + 2);
    put_vlu(&mut body, kind);
    body.extend_from_slice(value);
    put_field(out, &body);
}

/// The first value of option `kind` before any marker or error.
pub fn find(bytes: &[u8], kind: u64) -> Option<&[u8]> {
    for o in options(bytes) {
        match o {
            Ok(Opt::Value { kind: k, value }) if k == kind => return Some(value),
            Ok(Opt::Value { .. }) => {}
            Ok(Opt::Marker) | Err(_) => return None,
        }
    }
    None
}

/// What an IHello's endpoint discriminator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Discriminator<'a> {
    pub hostname: Option<&'a [u8]>,
    /// Flash Player and librtmfp put the `rtmfp://` URL here.
    pub ancillary: Option<&'a [u8]>,
    /// A peer's certificate fingerprint: an introduction to a peer, which
    /// castgate does not do.
    pub fingerprint: Option<&'a [u8]>,
}

impl<'a> Discriminator<'a> {
    /// Parses an EPD; one without any of the three options is invalid.
    pub fn parse(epd: &'a [u8]) -> Result<Discriminator<'a>, Error> {
        let mut d = Discriminator::default();
        for o in options(epd) {
            if let Opt::Value { kind, value } = o? {
                match kind {
                    EPD_REQUIRED_HOSTNAME => d.hostname = Some(value),
                    EPD_ANCILLARY_DATA => d.ancillary = Some(value),
                    EPD_FINGERPRINT => d.fingerprint = Some(value),
                    _ => {}
                }
            }
        }
        if d.hostname.is_none() && d.ancillary.is_none() && d.fingerprint.is_none() {
            return Err(Error::BadDiscriminator);
        }
        Ok(d)
    }

    /// The EPD a client sends to reach a server at `url`.
    pub fn for_url(url: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_option(&mut out, EPD_ANCILLARY_DATA, url.as_bytes());
        out
    }
}

/// An ephemeral-DH certificate offering `groups`: accepts ancillary data
/// (a server's), 64 random bytes, then one option per group.
pub fn certificate(server: bool, groups: &[DhGroup], random: &[u8; CERT_RANDOM_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    if server {
        put_option(&mut out, CERT_ACCEPTS_ANCILLARY_DATA, &[]);
    }
    put_option(&mut out, CERT_EXTRA_RANDOMNESS, random);
    for g in groups {
        let mut id = Vec::new();
        put_vlu(&mut id, g.id());
        put_option(&mut out, CERT_SUPPORTED_DH_GROUP, &id);
    }
    out
}

/// What a peer's certificate offers for the key exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertOffer<'a> {
    /// Groups it takes an ephemeral key in, known ones only.
    pub groups: Vec<DhGroup>,
    /// Static public keys by group (a certificate may carry them instead).
    pub static_keys: Vec<(DhGroup, &'a [u8])>,
}

/// The most groups a certificate is read for: there are three known ones.
const MAX_CERT_OPTIONS: usize = 64;

impl<'a> CertOffer<'a> {
    pub fn parse(cert: &'a [u8]) -> Result<CertOffer<'a>, Error> {
        let mut offer = CertOffer::default();
        for (i, o) in options(cert).enumerate() {
            if i == MAX_CERT_OPTIONS {
                return Err(Error::BadCertificate);
            }
            let Opt::Value { kind, value } = o? else {
                continue;
            };
            match kind {
                CERT_SUPPORTED_DH_GROUP => {
                    if let Some(g) = Reader::new(value).vlu().ok().and_then(DhGroup::from_id) {
                        if !offer.groups.contains(&g) {
                            offer.groups.push(g);
                        }
                    }
                }
                CERT_STATIC_DH_PUBLIC_KEY => {
                    let mut r = Reader::new(value);
                    if let Some(g) = r.vlu().ok().and_then(DhGroup::from_id) {
                        offer.static_keys.push((g, r.rest()));
                        if !offer.groups.contains(&g) {
                            offer.groups.push(g);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(offer)
    }

    /// The first of `preference` the certificate offers.
    pub fn choose(&self, preference: &[DhGroup]) -> Option<DhGroup> {
        preference.iter().copied().find(|g| self.groups.contains(g))
    }
}

/// The public key a session key component (SKIC or SKRC) carries: the DH
/// public key option, or a group select naming a static key of the
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyingKey<'a> {
    Ephemeral(DhGroup, &'a [u8]),
    Static(DhGroup),
}

/// A session key component, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keying<'a> {
    pub key: KeyingKey<'a>,
    /// The HMAC negotiation flags and the length the peer sends.
    pub hmac_flags: u8,
    pub hmac_len: u64,
    /// The session sequence number negotiation flags.
    pub sseq_flags: u8,
}

impl<'a> Keying<'a> {
    pub fn parse(component: &'a [u8]) -> Result<Keying<'a>, Error> {
        let mut key = None;
        let (mut hmac, mut hmac_len, mut sseq) = (0u8, 0u64, 0u8);
        for o in options(component) {
            let Opt::Value { kind, value } = o? else {
                break;
            };
            let mut r = Reader::new(value);
            match kind {
                KEYING_DH_PUBLIC_KEY if key.is_none() => {
                    let g = r.vlu().ok().and_then(DhGroup::from_id);
                    key = g.map(|g| KeyingKey::Ephemeral(g, r.rest()));
                }
                KEYING_DH_GROUP_SELECT if key.is_none() => {
                    key = r
                        .vlu()
                        .ok()
                        .and_then(DhGroup::from_id)
                        .map(KeyingKey::Static);
                }
                KEYING_HMAC_NEGOTIATION => {
                    hmac = r.u8().unwrap_or(0);
                    hmac_len = r.vlu().unwrap_or(0);
                }
                KEYING_SSEQ_NEGOTIATION => sseq = r.u8().unwrap_or(0),
                _ => {}
            }
        }
        Ok(Keying {
            key: key.ok_or(Error::NoKey)?,
            hmac_flags: hmac,
            hmac_len,
            sseq_flags: sseq,
        })
    }

    /// What castgate's packets carry with the peer whose component this
    /// is (castgate offers both on request and asks for neither): an HMAC
    /// and sequence numbers to the peer if it asks, checked from it if it
    /// says it always sends them.
    pub fn negotiate(&self) -> Result<PacketOptions, Error> {
        let hmac_recv = self.hmac_flags & NEGOTIATE_WILL_SEND_ALWAYS != 0;
        if hmac_recv && !(4..=32).contains(&self.hmac_len) {
            return Err(Error::BadHmacLength);
        }
        Ok(PacketOptions {
            hmac_send: if self.hmac_flags & NEGOTIATE_REQUEST != 0 {
                HMAC_LEN
            } else {
                0
            },
            hmac_recv: if hmac_recv { self.hmac_len as usize } else { 0 },
            sseq_send: self.sseq_flags & NEGOTIATE_REQUEST != 0,
            sseq_recv: self.sseq_flags & NEGOTIATE_WILL_SEND_ALWAYS != 0,
        })
    }

    /// castgate's responder component (SKRC) for the peer whose component
    /// this is: the HMAC and sequence number options, each "sent on
    /// request" if the peer asks for it and declined (flags 0) otherwise,
    /// then castgate's ephemeral public key. The layout is MonaServer's
    /// (`03 1a 00 00 02 1e 00`, then the key from byte 11): librtmfp reads
    /// it by offsets and refuses anything else.
    pub fn respond(&self, group: DhGroup, public: &[u8]) -> Vec<u8> {
        let asked = |flags: u8| flags & NEGOTIATE_REQUEST != 0;
        let mut out = Vec::with_capacity(public.len() + 16);
        if asked(self.hmac_flags) {
            let flags = [NEGOTIATE_WILL_SEND_ON_REQUEST, HMAC_LEN as u8];
            put_option(&mut out, KEYING_HMAC_NEGOTIATION, &flags);
        } else {
            put_option(&mut out, KEYING_HMAC_NEGOTIATION, &[0, 0]);
        }
        let sseq = if asked(self.sseq_flags) {
            NEGOTIATE_WILL_SEND_ON_REQUEST
        } else {
            0
        };
        put_option(&mut out, KEYING_SSEQ_NEGOTIATION, &[sseq]);
        let mut key = Vec::with_capacity(public.len() + 2);
        put_vlu(&mut key, group.id());
        key.extend_from_slice(public);
        put_option(&mut out, KEYING_DH_PUBLIC_KEY, &key);
        out
    }

    /// castgate's initiator component (SKIC), as Flash Player writes it:
    /// the group whose static key castgate's certificate carries, 64
    /// random bytes, then HMACs (16 bytes) and sequence numbers offered on
    /// request. `certificate` is the certificate that goes with it.
    pub fn initiate(group: DhGroup, public: &[u8], random: &[u8; 64]) -> (Vec<u8>, Vec<u8>) {
        let mut cert = Vec::with_capacity(public.len() + 4);
        let mut key = Vec::with_capacity(public.len() + 2);
        put_vlu(&mut key, group.id());
        key.extend_from_slice(public);
        put_option(&mut cert, CERT_STATIC_DH_PUBLIC_KEY, &key);
        let mut skic = Vec::with_capacity(96);
        let mut id = Vec::new();
        put_vlu(&mut id, group.id());
        put_option(&mut skic, KEYING_DH_GROUP_SELECT, &id);
        put_option(&mut skic, KEYING_EXTRA_RANDOMNESS, random);
        let hmac = [NEGOTIATE_WILL_SEND_ON_REQUEST, HMAC_LEN as u8];
        put_option(&mut skic, KEYING_HMAC_NEGOTIATION, &hmac);
        put_option(
            &mut skic,
            KEYING_SSEQ_NEGOTIATION,
            &[NEGOTIATE_WILL_SEND_ON_REQUEST],
        );
        (skic, cert)
    }

    /// A component carrying an ephemeral key and offering both options on
    /// request (tests and the fuzz seeds).
    pub fn build(group: DhGroup, public: &[u8]) -> Vec<u8> {
        let offer = Keying {
            key: KeyingKey::Static(group),
            hmac_flags: NEGOTIATE_REQUEST,
            hmac_len: HMAC_LEN as u64,
            sseq_flags: NEGOTIATE_REQUEST,
        };
        offer.respond(group, public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_is_monaserver_s_77_bytes() {
        let cert = certificate(
            true,
            &[DhGroup::Modp1024, DhGroup::Modp1536, DhGroup::Modp2048],
            &[7; 64],
        );
        assert_eq!(cert.len(), 77);
        assert_eq!(cert[..4], [0x01, 0x0a, 0x41, 0x0e]);
        assert_eq!(
            cert[68..],
            [0x02, 0x15, 0x02, 0x02, 0x15, 0x05, 0x02, 0x15, 0x0e]
        );
        let offer = CertOffer::parse(&cert).unwrap();
        assert_eq!(
            offer.groups,
            [DhGroup::Modp1024, DhGroup::Modp1536, DhGroup::Modp2048]
        );
        // rtmfp-cpp prefers 14, librtmfp takes 2.
        assert_eq!(offer.choose(&DhGroup::ALL), Some(DhGroup::Modp2048));
        assert_eq!(offer.choose(&[DhGroup::Modp1024]), Some(DhGroup::Modp1024));
    }

    #[test]
    fn a_discriminator_needs_one_of_its_three_options() {
        let epd = Discriminator::for_url("rtmfp://127.0.0.1/live");
        let d = Discriminator::parse(&epd).unwrap();
        assert_eq!(d.ancillary, Some(&b"rtmfp://127.0.0.1/live"[..]));
        assert_eq!(Discriminator::parse(&[]), Err(Error::BadDiscriminator));
        let mut other = Vec::new();
        put_option(&mut other, 0x33, b"x");
        assert_eq!(Discriminator::parse(&other), Err(Error::BadDiscriminator));
        assert_eq!(Discriminator::parse(&[0x05, 0x0a]), Err(Error::Truncated));
    }

    #[test]
    fn the_responder_component_has_the_layout_librtmfp_reads_by_offsets() {
        // librtmfp's component (Flash Player's): group 2 selected, 64
        // random bytes, HMAC (10 bytes) and sequence numbers offered.
        let mut skic = vec![0x02, 0x1d, 0x02, 0x41, 0x0e];
        skic.extend_from_slice(&[7; 64]);
        skic.extend_from_slice(&[0x03, 0x1a, 0x02, 0x0a, 0x02, 0x1e, 0x02]);
        let peer = Keying::parse(&skic).unwrap();
        assert_eq!(peer.key, KeyingKey::Static(DhGroup::Modp1024));
        assert_eq!(
            peer.negotiate(),
            Ok(PacketOptions::default()),
            "offers, no demands"
        );
        let skrc = peer.respond(DhGroup::Modp1024, &[9; 128]);
        assert_eq!(
            skrc[..11],
            [0x03, 0x1a, 0x00, 0x00, 0x02, 0x1e, 0x00, 0x81, 0x02, 0x0d, 0x02]
        );
        assert_eq!(skrc[11..], [9; 128], "the key from byte 11");
        assert_eq!(
            Keying::parse(&skrc).unwrap().negotiate(),
            Ok(PacketOptions::default())
        );
        // rtmfp-cpp asks for both: castgate says it sends them on request.
        let mut demand = Vec::new();
        put_option(&mut demand, KEYING_DH_GROUP_SELECT, &[14]);
        put_option(&mut demand, KEYING_HMAC_NEGOTIATION, &[0x07, 16]);
        put_option(&mut demand, KEYING_SSEQ_NEGOTIATION, &[0x07]);
        let skrc = Keying::parse(&demand)
            .unwrap()
            .respond(DhGroup::Modp2048, &[9; 256]);
        assert_eq!(skrc[..7], [0x03, 0x1a, 0x02, 0x10, 0x02, 0x1e, 0x02]);
        // castgate's own initiator component, Flash's layout.
        let (skic, cert) = Keying::initiate(DhGroup::Modp2048, &[5; 256], &[1; 64]);
        let parsed = Keying::parse(&skic).unwrap();
        assert_eq!(parsed.key, KeyingKey::Static(DhGroup::Modp2048));
        let offer = CertOffer::parse(&cert).unwrap();
        assert_eq!(offer.static_keys, [(DhGroup::Modp2048, &[5u8; 256][..])]);
    }

    #[test]
    fn keying_components_round_trip_and_demands_are_seen() {
        let k = Keying::build(DhGroup::Modp2048, &[9; 256]);
        let parsed = Keying::parse(&k).unwrap();
        assert_eq!(
            parsed.key,
            KeyingKey::Ephemeral(DhGroup::Modp2048, &[9; 256][..])
        );
        assert_eq!(
            parsed.negotiate(),
            Ok(PacketOptions::default()),
            "on request only"
        );
        // librtmfp's offer: will send on request (0x02), not a demand.
        let mut offer = Vec::new();
        put_option(&mut offer, KEYING_HMAC_NEGOTIATION, &[0x02, 16]);
        put_option(&mut offer, KEYING_DH_GROUP_SELECT, &[2]);
        let parsed = Keying::parse(&offer).unwrap();
        assert_eq!(parsed.key, KeyingKey::Static(DhGroup::Modp1024));
        assert_eq!(parsed.negotiate(), Ok(PacketOptions::default()));
        let mut demand = Vec::new();
        put_option(&mut demand, KEYING_SSEQ_NEGOTIATION, &[0x05]);
        put_option(&mut demand, KEYING_DH_PUBLIC_KEY, &[2, 1, 2, 3]);
        // rtmfp-cpp's default: always sends both and requires both.
        put_option(&mut demand, KEYING_HMAC_NEGOTIATION, &[0x07, 10]);
        assert_eq!(
            Keying::parse(&demand).unwrap().negotiate(),
            Ok(PacketOptions {
                hmac_send: HMAC_LEN,
                hmac_recv: 10,
                sseq_send: true,
                sseq_recv: true
            })
        );
        let mut bad = Vec::new();
        put_option(&mut bad, KEYING_HMAC_NEGOTIATION, &[0x04, 40]);
        put_option(&mut bad, KEYING_DH_PUBLIC_KEY, &[2, 1]);
        assert_eq!(
            Keying::parse(&bad).unwrap().negotiate(),
            Err(Error::BadHmacLength)
        );
        // No key at all, or only an unknown group.
        assert_eq!(Keying::parse(&[]), Err(Error::NoKey));
        let mut unknown = Vec::new();
        put_option(&mut unknown, KEYING_DH_PUBLIC_KEY, &[16, 1, 2]);
        assert_eq!(Keying::parse(&unknown), Err(Error::NoKey));
    }
}
