//! A rendition's FLV output from ffmpeg back into the hub (transcode).
//! The body, and what it asserts, is `castgate::fuzzing::ffmpeg_output`,
//! which `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::ffmpeg_output(data));
