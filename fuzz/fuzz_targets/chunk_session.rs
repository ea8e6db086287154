//! Client bytes into a whole RTMP server session (rtmp::session::exercise).
//! The body, and what it asserts, is `castgate::fuzzing::chunk_session`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::chunk_session(data));
