//! An edge's cache (`edge::cache`): `Cache-Control` values from another
//! node's answers, lease values read from Redis, and sequences of cache
//! inserts and lookups whose byte accounting must hold. The body is
//! `castgate::fuzzing::edge_cache`, replayed by `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    castgate::fuzzing::edge_cache(data);
});
