//! RTMP handshake bytes into the server and client state machines (rtmp::handshake).
//! The body, and what it asserts, is `castgate::fuzzing::handshake`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::handshake(data));
