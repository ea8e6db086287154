//! Hostile media files through on-demand play (`vod`): `Title::read` of a
//! whole MP4 or FLV file (seek points, configurations, duration), then the
//! packager over the title (segments listed and served). The body is
//! `castgate::fuzzing::vod_title`, replayed by `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::fuzzing::vod_title(data);
});
