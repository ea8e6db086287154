//! FLV audio/video tag bodies and their play-out headers (media::flv).
//! The body, and what it asserts, is `castgate::fuzzing::flv_tags`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::flv_tags(data));
