//! The RTMP chunk stream decoder, split-invariance and re-encoding round trip (rtmp::chunk).
//! The body, and what it asserts, is `castgate::fuzzing::chunk`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::chunk(data));
