//! Hostile publisher data through the MPEG-TS muxer an SRT relay runs:
//! arbitrary codec configurations (SPS/PPS, AudioSpecificConfig) and frame
//! payloads (AVCC lengths running anywhere), with jumping timestamps. The
//! driver is `castgate::egress::ts::exercise`, shared with a property test:
//! nothing may panic and the output must stay whole 188-byte packets.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::egress::ts::exercise(data);
});
