//! Relay target URLs, stream patterns and target templates as the REST API
//! receives them from the network. The driver is
//! `castgate::egress::target::exercise` (also a property test): nothing may
//! panic, and a redacted URL never carries the stream key or passphrase.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::egress::target::exercise(data);
});
