//! AMF metadata: Enhanced RTMP colorInfo (media::color_info) and the audio
//! track labels of onMetaData (package::labels). The body, and what it
//! asserts, is `castgate::fuzzing::metadata`, which
//! `tests/fuzz_regressions.rs` also runs on every committed input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| castgate::fuzzing::metadata(data));
