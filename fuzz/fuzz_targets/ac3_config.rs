//! AC-3 / E-AC-3 sync frame headers, dac3 and dec3 (media::ac3).
//! The body, and what it asserts, is `castgate::fuzzing::ac3_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::ac3_config(data));
