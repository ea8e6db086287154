//! AV1 codec configuration record, OBU framing and sequence header (media::av1).
//! The body, and what it asserts, is `castgate::fuzzing::av1_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::av1_config(data));
