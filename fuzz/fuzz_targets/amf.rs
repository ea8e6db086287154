//! AMF0 and AMF3 bodies, with an encode/decode round trip (rtmp::amf0, amf3).
//! The body, and what it asserts, is `castgate::fuzzing::amf`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::amf(data));
