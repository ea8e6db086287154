//! Hostile transport streams through the MPEG-TS demuxer an SRT publish
//! runs: packets cut anywhere, sync lost, PSI sections and PES packets of
//! any length, timestamps jumping. The body is
//! `castgate::fuzzing::ts_demux`, replayed by `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::fuzzing::ts_demux(data);
});
