//! HTTP media paths (package::urls::parse).
//! The body, and what it asserts, is `castgate::fuzzing::http_path`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::http_path(data));
