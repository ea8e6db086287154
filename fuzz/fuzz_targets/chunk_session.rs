//! Client bytes from a hostile peer into a whole server session: handshake,
//! chunk stream, control messages, AMF commands, publish and play paths.
//! The driver is `castgate::rtmp::session::exercise`, shared with the
//! property tests so every crash found here replays as an ordinary test.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::rtmp::session::exercise(data);
});
