//! VP9 vpcC and keyframe uncompressed header (media::vp9).
//! The body, and what it asserts, is `castgate::fuzzing::vp9_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::vp9_config(data));
