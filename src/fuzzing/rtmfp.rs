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

/// A server session fed the fuzzer's packets: the input is a series of
/// `length (1 byte) ‖ plaintext` records, each handled at a later time, the
/// session's own answers collected between them; a record with length 0
/// instead queues a message on a flow of the session's own (every other
/// one as media, so that losses take either congestion cut).
///
/// Besides never panicking: the session never holds more than its limits
/// (each event's message fits the message limit), and whatever it sends
/// opens under its key as a well-formed packet.
pub fn rtmfp_session(data: &[u8]) {
    use crate::rtmfp::session::{fuzz_session, Event};
    let mut s = fuzz_session();
    let key = PacketKey::new(&[7; 16]);
    let own = s.open_flow(b"TC\x04\x00", Some(2));
    let mut rest = data;
    let mut now = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        now += 37;
        let (packet, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        if len == 0 {
            let message = bytes::Bytes::from(vec![1u8; 3000]);
            let _ = if now.is_multiple_of(2) {
                s.send_media(now, own, message, Some(now + 100))
            } else {
                s.send(own, message, Some(now + 100))
            };
        } else {
            let _ = s.handle_plaintext(now, packet);
        }
        s.handle_timeout(now);
        while let Some(e) = s.poll_event() {
            if let Event::Message { data, .. } = e {
                assert!(data.len() <= 32 << 10, "a message over the limit");
            }
        }
        while let Some(mut d) = s.poll_transmit(now) {
            let plain = key.open(&mut d).expect("the session's packets open");
            let (_, chunks) = packet::parse(plain).expect("the session's header parses");
            for c in chunks {
                c.expect("the session's chunks parse");
            }
        }
    }
}
