//! RTMP handshake bytes from a hostile peer, in two reads. The first byte
//! picks where the rest is split, so the fuzzer explores every boundary
//! between reads. Both the server (C0/C1/C2) and the client (S0/S1/S2) state
//! machines eat the same bytes. Nothing may panic, and the consumption
//! contract must hold: never more than offered, everything unless done,
//! nothing once done, and never more than one handshake's worth in or out.

#![no_main]

use castgate::rtmp::handshake::{
    ClientHandshake, HandshakeError, HandshakeStatus, ServerHandshake, HANDSHAKE_SIZE,
};
use libfuzzer_sys::fuzz_target;

/// C0+C1+C2 (or S0+S1+S2): the most either side reads or writes.
const MAX_HANDSHAKE: usize = 1 + 2 * HANDSHAKE_SIZE;

type Step = Result<(usize, HandshakeStatus), HandshakeError>;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector) * rest.len() / 255;
    let reads = [&rest[..split], &rest[split..]];

    let mut server = ServerHandshake::new();
    feed(|input, out| server.process(input, out), &reads);
    let _ = server.client_used_digest();

    let mut client = ClientHandshake::new();
    feed(|input, out| client.process(input, out), &reads);

    let mut client = ClientHandshake::new_simple();
    let mut out = Vec::new();
    client.start(&mut out);
    feed(|input, out| client.process(input, out), &reads);
});

fn feed(mut process: impl FnMut(&[u8], &mut Vec<u8>) -> Step, reads: &[&[u8]]) {
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    for read in reads {
        match process(read, &mut out) {
            Ok((used, status)) => {
                assert!(used <= read.len());
                if done {
                    assert_eq!(used, 0, "consumed input after Done");
                }
                match status {
                    HandshakeStatus::NeedMore => assert_eq!(used, read.len()),
                    HandshakeStatus::Done => done = true,
                }
                consumed += used;
            }
            Err(_) => {
                // A failed handshake stays failed.
                assert!(process(&[3], &mut out).is_err());
                break;
            }
        }
    }
    assert!(consumed <= MAX_HANDSHAKE);
    assert!(out.len() <= MAX_HANDSHAKE);
}
