//! An RTMPE client's handshake into the server (rtmp::handshake, rtmp::rtmpe):
//! a C1 the harness signs, the fuzzer's DH key and C2, encrypted bytes after.
//! The body, and what it asserts, is `castgate::fuzzing::rtmpe_handshake`,
//! which `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::rtmpe_handshake(data));
