//! Opus OpusHead identification header, dOps and packet TOCs (media::opus).
//! The body, and what it asserts, is `castgate::fuzzing::opus_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::opus_config(data));
