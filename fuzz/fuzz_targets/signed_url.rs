//! Signed HLS/DASH URL queries and playlist signing (auth::signed).
//! The body, and what it asserts, is `castgate::fuzzing::signed_url`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::signed_url(data));
