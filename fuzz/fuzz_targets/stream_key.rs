//! RTMP app and stream names into hub keys and URLs (server::stream_key).
//! The body, and what it asserts, is `castgate::fuzzing::stream_key`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::stream_key(data));
