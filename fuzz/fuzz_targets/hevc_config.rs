//! HEVC decoder configuration record and SPS (media::hevc).
//! The body, and what it asserts, is `castgate::fuzzing::hevc_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::hevc_config(data));
