//! Server bytes from a hostile relay destination into the RTMP client
//! session: handshake, chunk stream, control messages, AMF replies and
//! status, before and after publishing. The driver is
//! `castgate::rtmp::client::exercise`, shared with a property test.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = castgate::rtmp::client::exercise(data);
});
