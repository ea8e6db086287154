//! SRT stream ids (srt::streamid): the three forms, refused with a reason
//! or read back the same in the access-control syntax. The body, and what
//! it asserts, is `castgate::fuzzing::srt_streamid`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::srt_streamid(data));
