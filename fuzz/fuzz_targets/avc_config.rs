//! H.264 decoder configuration record, SPS, AVCC and Annex B framing (media::avc).
//! The body, and what it asserts, is `castgate::fuzzing::avc_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::avc_config(data));
