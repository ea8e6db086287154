//! A sequence of RTMFP packets (plaintexts) into a server session: flows,
//! fragments, acknowledgements, close (rtmfp::session, recv, send). The
//! body, and what it asserts, is `castgate::fuzzing::rtmfp_session`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::rtmfp_session(data));
