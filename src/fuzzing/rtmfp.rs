//! The RTMFP target: one datagram's bytes through every RTMFP parser.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::OnceLock;

use crate::rtmfp::crypto::{self, PacketKey, HEADER_ROOM};
use crate::rtmfp::flash::{self, CertOffer, Discriminator, Keying};
use crate::rtmfp::handshake::Responder;
use crate::rtmfp::packet::{self, Chunk};
use crate::rtmfp::Error;

/// The input is a packet's plaintext (flags, timestamps, chunks), so that
/// the fuzzer reaches the chunk parsers instead of stopping at the
/// checksum; it also goes through the cipher layer as a datagram.
///
/// Besides never panicking:
/// - every chunk parsed re-encodes into a chunk that parses equal;
/// - sealing the plaintext and opening it again gives it back, padded
///   with 0xFF, and the session id survives the scrambling;
/// - an IIKeying is refused for its cookie before any Diffie-Hellman
///   (the responder never issued the fuzzer's cookie).
pub fn rtmfp_packet(data: &[u8]) {
    let mut datagram = data.to_vec();
    let _ = crypto::session_id(&datagram);
    let _ = PacketKey::default_key().open(&mut datagram);

    let mut buf = vec![0; HEADER_ROOM];
    buf.extend_from_slice(data);
    PacketKey::default_key().seal(0x0bad_cafe, &mut buf);
    assert_eq!(crypto::session_id(&buf), Some(0x0bad_cafe));
    let opened = PacketKey::default_key()
        .open(&mut buf)
        .expect("a sealed packet opens");
    assert_eq!(&opened[..data.len()], data);
    assert!(opened[data.len()..].iter().all(|&b| b == 0xff));

    let Ok((_, chunks)) = packet::parse(data) else {
        return;
    };
    for chunk in chunks {
        let Ok(chunk) = chunk else {
            continue;
        };
        let mut again = Vec::new();
        chunk.encode(&mut again);
        let reparsed = Chunk::parse(again[0], &again[packet::CHUNK_HEADER..]);
        assert_eq!(
            reparsed.as_ref(),
            Ok(&chunk),
            "a chunk re-encoded parses differently"
        );
        read_contents(&chunk);
    }
}

fn responder() -> &'static Responder {
    static R: OnceLock<Responder> = OnceLock::new();
    R.get_or_init(|| Responder::with_secret([1; 32], [2; 64]))
}

fn read_contents(chunk: &Chunk<'_>) {
    let from = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1935));
    match chunk {
        Chunk::IHello { epd, tag } => {
            let _ = Discriminator::parse(epd);
            if let Ok(rhello) = responder().hello(0, 0, &from, epd, tag) {
                assert!(rhello.len() <= 4 + 16 + crate::rtmfp::handshake::MAX_STARTUP_PACKET);
            }
        }
        Chunk::RHello { cert, .. } => {
            let _ = CertOffer::parse(cert);
        }
        Chunk::IIKeying {
            session_id,
            cookie,
            cert,
            skic,
            ..
        } => {
            let _ = CertOffer::parse(cert);
            let _ = Keying::parse(skic);
            let refused = responder().keying(0, &from, *session_id, cookie, cert, skic);
            assert_eq!(refused.err(), Some(Error::BadCookie));
        }
        Chunk::RIKeying { skrc, .. } => {
            let _ = Keying::parse(skrc);
        }
        Chunk::UserData(d) => {
            let n = flash::options(d.options).count();
            assert!(n <= d.options.len());
        }
        _ => {}
    }
}
