//! Server bytes into an RTMP client session (rtmp::client). The body, and
//! what it asserts, is `castgate::fuzzing::client_session`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::client_session(data));
