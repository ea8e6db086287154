//! FLV files: header and tag framing (media::flv_file).
//! The body, and what it asserts, is `castgate::fuzzing::flv_file`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::flv_file(data));
