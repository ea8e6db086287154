//! FLAC stream header (fLaC, metadata blocks, STREAMINFO), dfLa and frame headers (media::flac).
//! The body, and what it asserts, is `castgate::fuzzing::flac_config`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::flac_config(data));
