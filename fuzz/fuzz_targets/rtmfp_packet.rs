//! One RTMFP datagram's plaintext through the cipher layer, the packet and
//! chunk parsers and the handshake's contents (rtmfp::*). The body, and
//! what it asserts, is `castgate::fuzzing::rtmfp_packet`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::rtmfp_packet(data));
