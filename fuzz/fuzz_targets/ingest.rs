//! Media messages through the FLV tag reader, the CMAF packager and the manifests
//! (media::flv::reader, package::segmenter, package::{hls, dash}).
//! The body, and what it asserts, is `castgate::fuzzing::ingest`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::ingest(data));
