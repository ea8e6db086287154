//! Records a real RTMPE client's handshake for `tests/rtmpe_vectors.rs`.
//!
//! ```text
//! cargo run --example rtmpe_capture -- 127.0.0.1:19399 tests/vectors/rtmpe &
//! rtmpdump -r rtmpe://127.0.0.1:19399/live/vector --live -o /dev/null
//! ```
//!
//! It accepts one connection and answers it as castgate's server handshake
//! with fixed randomness (a seeded filler and a fixed DH key, so the test
//! can replay the exchange byte for byte), then writes what the client sent
//! (`c0c1.bin`, then `c2.bin`: C2 and the encrypted chunks that followed
//! within a second) and what the server answered (`s0s1s2.bin`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use castgate::rtmp::handshake::{HandshakeStatus, ServerHandshake};
use castgate::rtmp::rtmpe::KeyPair;

/// Shared with the test that replays the vectors.
const FILLER_SEED: u64 = 0x0072_746d_7065;
const SERVER_KEY_SEED: [u8; 32] = [0x5c; 32];

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:19399".into());
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "tests/vectors/rtmpe".into()));
    std::fs::create_dir_all(&dir)?;
    let listener = TcpListener::bind(&addr)?;
    eprintln!("waiting for one RTMPE client on {addr}");
    let (mut socket, peer) = listener.accept()?;
    eprintln!("client {peer}");
    fastrand::seed(FILLER_SEED);
    let mut server = ServerHandshake::new().with_rtmpe_key(KeyPair::from_seed(&SERVER_KEY_SEED));
    let mut c0c1 = vec![0; 1537];
    socket.read_exact(&mut c0c1)?;
    let mut answer = Vec::new();
    let (used, status) = server
        .process(&c0c1, &mut answer)
        .map_err(std::io::Error::other)?;
    assert_eq!((used, status), (1537, HandshakeStatus::NeedMore));
    socket.write_all(&answer)?;
    // C2, then whatever the client sends in the next second (its connect).
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut c2 = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => c2.extend_from_slice(&buf[..n]),
            Err(e) if c2.len() >= 1536 => {
                eprintln!("read ends: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::write(dir.join("c0c1.bin"), &c0c1)?;
    std::fs::write(dir.join("s0s1s2.bin"), &answer)?;
    std::fs::write(dir.join("c2.bin"), &c2)?;
    let status = server.process(&c2, &mut Vec::new());
    eprintln!("C2 and {} bytes after it: {status:?}", c2.len() - 1536);
    Ok(())
}
