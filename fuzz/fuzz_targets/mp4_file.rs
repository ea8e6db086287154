//! Hostile MP4 files through the reader a dropped-in VOD file meets
//! (`media::mp4`): box sizes past their parents, tables whose counts
//! outrun their boxes, sample and chunk offsets anywhere, fragments of
//! unknown tracks. The body is `castgate::fuzzing::mp4_file`, replayed by
//! `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::fuzzing::mp4_file(data);
});
