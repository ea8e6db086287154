//! RTMP aggregate messages and User Control events (rtmp::message).
//! The body, and what it asserts, is `castgate::fuzzing::aggregate`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::aggregate(data));
