//! A real RTMPE client's handshake, recorded once and replayed: Debian's
//! rtmpdump (librtmp) playing `rtmpe://127.0.0.1:19399/live/vector` against
//! `examples/rtmpe_capture.rs`, which answered as castgate's server
//! handshake with fixed randomness. `c0c1.bin` and `c2.bin` (C2 and the
//! encrypted `connect` after it) are librtmp's bytes; `s0s1s2.bin` is what
//! the server answered.

use bytes::BytesMut;
use castgate::rtmp::amf0::{self, Amf0Value};
use castgate::rtmp::chunk::{ChunkDecoder, ChunkLimits};
use castgate::rtmp::handshake::{HandshakeStatus, ServerHandshake};
use castgate::rtmp::message::COMMAND_AMF0;
use castgate::rtmp::rtmpe::KeyPair;

const C0C1: &[u8] = include_bytes!("vectors/rtmpe/c0c1.bin");
const S0S1S2: &[u8] = include_bytes!("vectors/rtmpe/s0s1s2.bin");
const C2_AND_AFTER: &[u8] = include_bytes!("vectors/rtmpe/c2.bin");

/// As in `examples/rtmpe_capture.rs`.
const FILLER_SEED: u64 = 0x0072_746d_7065;
const SERVER_KEY_SEED: [u8; 32] = [0x5c; 32];

/// The server as it was when the vectors were recorded.
fn recorded_server() -> ServerHandshake {
    fastrand::seed(FILLER_SEED);
    ServerHandshake::new().with_rtmpe_key(KeyPair::from_seed(&SERVER_KEY_SEED))
}

/// Feeds `input` in pieces of `piece` bytes; returns what was consumed and
/// the last status.
fn feed(
    server: &mut ServerHandshake,
    input: &[u8],
    piece: usize,
    out: &mut Vec<u8>,
) -> (usize, HandshakeStatus) {
    let mut used = 0;
    for chunk in input.chunks(piece) {
        let (n, status) = server
            .process(chunk, out)
            .expect("the recorded client is accepted");
        used += n;
        if status == HandshakeStatus::Done {
            return (used, status);
        }
        assert_eq!(n, chunk.len());
    }
    (used, HandshakeStatus::NeedMore)
}

#[test]
fn the_recorded_client_is_librtmps_rtmpe() {
    assert_eq!(C0C1.len(), 1537);
    assert_eq!(C0C1[0], 6, "C0: RTMPE");
    assert_eq!(
        &C0C1[5..9],
        &[128, 0, 3, 2],
        "librtmp's RTMPE client version"
    );
    assert_eq!(S0S1S2.len(), 1 + 2 * 1536);
    assert!(C2_AND_AFTER.len() > 1536, "the connect command follows C2");
}

/// Whatever the split of the client's bytes, the server answers exactly
/// what the client saw, accepts librtmp's C2 (signed over that S1's
/// digest), leaves the bytes after it, and decrypts them into librtmp's
/// `connect` command.
#[test]
fn castgate_replays_the_recorded_rtmpdump_handshake() {
    for piece in [1, 7, 64, 1536, 1537, usize::MAX] {
        let mut server = recorded_server();
        let mut answer = Vec::new();
        let (used, status) = feed(&mut server, C0C1, piece, &mut answer);
        assert_eq!((used, status), (1537, HandshakeStatus::NeedMore));
        assert!(server.is_encrypted());
        assert!(
            answer == S0S1S2,
            "S0+S1+S2 differ from the recording (piece {piece})"
        );

        let (used, status) = feed(&mut server, C2_AND_AFTER, piece.min(1536), &mut answer);
        assert_eq!(status, HandshakeStatus::Done, "piece {piece}");
        assert_eq!(used % 1536, 0);
        let mut ciphers = server.take_ciphers().expect("RTMPE ciphers");
        let mut after = BytesMut::from(&C2_AND_AFTER[1536..]);
        ciphers.decrypt.apply(&mut after);

        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        // One message in chunks of 128: `decode` takes a chunk a call.
        let connect = loop {
            let before = after.len();
            match decoder.decode(&mut after).expect("decrypted chunks decode") {
                Some(m) => break m,
                None => assert!(after.len() < before, "the connect command is whole"),
            }
        };
        assert_eq!(connect.type_id, COMMAND_AMF0);
        let values = amf0::decode_all(&connect.payload).expect("AMF0 command");
        assert_eq!(values[0], Amf0Value::String("connect".into()));
        let Amf0Value::Object(props) = &values[2] else {
            panic!("connect without a command object: {values:?}");
        };
        let prop = |name: &str| {
            props
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(prop("app"), Some(Amf0Value::String("live".into())));
        assert_eq!(
            prop("tcUrl"),
            Some(Amf0Value::String("rtmpe://127.0.0.1:19399/live".into()))
        );
    }
}

/// One flipped bit anywhere in librtmp's C2 is refused: the signature
/// covers all of it.
#[test]
fn a_tampered_recorded_c2_is_refused() {
    for at in [0, 700, 1503, 1504, 1535] {
        let mut server = recorded_server();
        server.process(C0C1, &mut Vec::new()).unwrap();
        let mut c2 = C2_AND_AFTER[..1536].to_vec();
        c2[at] ^= 0x10;
        let err = server.process(&c2, &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "RTMPE C2 signature does not verify");
    }
}
