//! Real RTMFP peers' handshake packets, recorded once and replayed: the
//! datagrams of rtmfp-cpp (zenomt, the author of RFC 7016; built by hand
//! from its public sources, none of it in this repository) on their
//! defaults, captured by a UDP relay between it and castgate on loopback:
//!
//! - `rtmfp-cpp-tcpublish-ihello.bin`, `…-iikeying.bin`: `tcpublish`
//!   publishing to castgate's listener;
//! - `rtmfp-cpp-tcserver-rhello.bin`, `…-rikeying.bin`: `tcserver`
//!   answering castgate's RTMFP client (an `rtmfp://` relay).
//!
//! They are startup packets, under the Flash profile's default key: the
//! session packets after them are under keys from an ephemeral exchange
//! and cannot be replayed. `librtmfp-ihello.bin` and `librtmfp-iikeying.bin`
//! are librtmfp's `TestClient` (MonaSolutions) publishing to castgate the same
//! way.

use std::net::SocketAddr;

use castgate::rtmfp::crypto::{self, DhGroup, PacketOptions};
use castgate::rtmfp::flash::{CertOffer, Discriminator, Keying, KeyingKey, HMAC_LEN};
use castgate::rtmfp::handshake::{open_startup, Responder};
use castgate::rtmfp::packet::Chunk;

const IHELLO: &[u8] = include_bytes!("vectors/rtmfp/rtmfp-cpp-tcpublish-ihello.bin");
const IIKEYING: &[u8] = include_bytes!("vectors/rtmfp/rtmfp-cpp-tcpublish-iikeying.bin");
const RHELLO: &[u8] = include_bytes!("vectors/rtmfp/rtmfp-cpp-tcserver-rhello.bin");
const RIKEYING: &[u8] = include_bytes!("vectors/rtmfp/rtmfp-cpp-tcserver-rikeying.bin");

fn chunk_of(bytes: &[u8]) -> (Option<u32>, Vec<u8>) {
    (crypto::session_id(bytes), bytes.to_vec())
}

#[test]
fn rtmfp_cpp_s_ihello_is_answered_with_a_180_byte_rhello() {
    let (sid, mut packet) = chunk_of(IHELLO);
    assert_eq!(sid, Some(0), "a startup packet");
    let Chunk::IHello { epd, tag } = open_startup(&mut packet).unwrap() else {
        panic!("not an IHello")
    };
    let d = Discriminator::parse(epd).unwrap();
    let url = String::from_utf8_lossy(d.ancillary.expect("the URL as ancillary data"));
    assert!(
        url.starts_with("rtmfp://127.0.0.1:") && url.ends_with("/live"),
        "{url}"
    );
    assert!(d.fingerprint.is_none());
    assert_eq!(tag.len(), 16);
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let rhello = Responder::with_secret([1; 32], [2; 64])
        .hello(0, 0, &from, epd, tag)
        .unwrap();
    // The answer is larger than the question: what `HelloLimiter` bounds.
    assert_eq!((IHELLO.len(), rhello.len()), (68, 180));
}

#[test]
fn rtmfp_cpp_s_iikeying_selects_its_static_group_14_key_and_asks_for_hmacs_and_sequence_numbers() {
    let (sid, mut packet) = chunk_of(IIKEYING);
    assert_eq!(sid, Some(0));
    let Chunk::IIKeying {
        session_id,
        cookie,
        cert,
        skic,
        ..
    } = open_startup(&mut packet).unwrap()
    else {
        panic!("not an IIKeying")
    };
    assert_ne!(session_id, 0);
    assert_eq!(cookie.len(), 64, "castgate's cookie, echoed");
    let offer = CertOffer::parse(cert).unwrap();
    assert!(offer.groups.contains(&DhGroup::Modp2048), "{offer:?}");
    // tcpublish's certificate carries static keys; its component selects
    // the group (RFC 7425 §4.3.5), so castgate takes the key from there.
    let keying = Keying::parse(skic).unwrap();
    assert_eq!(
        keying.key,
        KeyingKey::Static(DhGroup::Modp2048),
        "{keying:?}"
    );
    let (_, public) = offer
        .static_keys
        .iter()
        .find(|(g, _)| *g == DhGroup::Modp2048)
        .expect("a static group-14 key in the certificate");
    assert_eq!(public.len(), 256);
    let options = keying.negotiate().unwrap();
    assert_eq!(
        options,
        PacketOptions {
            hmac_send: HMAC_LEN,
            hmac_recv: options.hmac_recv,
            sseq_send: true,
            sseq_recv: true,
        }
    );
    assert!((4..=32).contains(&options.hmac_recv), "{options:?}");
}

#[test]
fn tcserver_s_rhello_and_rikeying_are_read() {
    let (_, mut packet) = chunk_of(RHELLO);
    let Chunk::RHello { tag, cookie, cert } = open_startup(&mut packet).unwrap() else {
        panic!("not an RHello")
    };
    assert_eq!(tag.len(), 16);
    assert!(
        !cookie.is_empty() && cookie.len() <= 128,
        "{}",
        cookie.len()
    );
    let offer = CertOffer::parse(cert).unwrap();
    assert_eq!(
        offer.choose(&DhGroup::ALL),
        Some(DhGroup::Modp2048),
        "{offer:?}"
    );

    let (sid, mut packet) = chunk_of(RIKEYING);
    assert_ne!(sid, Some(0), "to the initiator's session id");
    let Chunk::RIKeying {
        session_id, skrc, ..
    } = open_startup(&mut packet).unwrap()
    else {
        panic!("not an RIKeying")
    };
    assert_ne!(session_id, 0);
    let keying = Keying::parse(skrc).unwrap();
    assert!(matches!(keying.key, KeyingKey::Ephemeral(DhGroup::Modp2048, k) if k.len() == 256));
    let options = keying.negotiate().unwrap();
    assert!(
        options.hmac_send > 0 && options.sseq_send,
        "tcserver asks for both: {options:?}"
    );
}

const LIBRTMFP_IHELLO: &[u8] = include_bytes!("vectors/rtmfp/librtmfp-ihello.bin");
const LIBRTMFP_IIKEYING: &[u8] = include_bytes!("vectors/rtmfp/librtmfp-iikeying.bin");

/// librtmfp's `TestClient` (MonaSolutions, the Mona family) publishing to
/// castgate: a 36-byte IHello, and an IIKeying in Flash Player's layout
/// (its key in its certificate, group 2 selected, HMAC and sequence
/// numbers offered, not asked for).
#[test]
fn librtmfp_s_handshake_is_read_and_answered() {
    let (sid, mut packet) = chunk_of(LIBRTMFP_IHELLO);
    assert_eq!((sid, LIBRTMFP_IHELLO.len()), (Some(0), 36));
    let Chunk::IHello { epd, tag } = open_startup(&mut packet).unwrap() else {
        panic!("not an IHello")
    };
    let d = Discriminator::parse(epd).unwrap();
    assert!(d.fingerprint.is_none(), "{d:?}");
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let rhello = Responder::with_secret([1; 32], [2; 64])
        .hello(0, 0, &from, epd, tag)
        .unwrap();
    assert_eq!(
        rhello.len(),
        180,
        "5 times the IHello: what `HelloLimiter` bounds"
    );

    let (_, mut packet) = chunk_of(LIBRTMFP_IIKEYING);
    let Chunk::IIKeying {
        cookie, cert, skic, ..
    } = open_startup(&mut packet).unwrap()
    else {
        panic!("not an IIKeying")
    };
    assert_eq!(cookie.len(), 64);
    let offer = CertOffer::parse(cert).unwrap();
    let keying = Keying::parse(skic).unwrap();
    assert_eq!(
        keying.key,
        KeyingKey::Static(DhGroup::Modp1024),
        "{keying:?}"
    );
    assert!(
        offer
            .static_keys
            .iter()
            .any(|(g, k)| *g == DhGroup::Modp1024 && k.len() == 128),
        "{offer:?}"
    );
    assert_eq!(
        keying.negotiate(),
        Ok(PacketOptions::default()),
        "offers only"
    );
    // The answer librtmfp reads by offsets.
    let skrc = keying.respond(DhGroup::Modp1024, &[9; 128]);
    assert_eq!(skrc[..7], [0x03, 0x1a, 0x00, 0x00, 0x02, 0x1e, 0x00]);
}
