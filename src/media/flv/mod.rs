//! FLV tags both ways: everything that turns FLV tag bodies into media and
//! media back into FLV tags, so a codec change touches only this module.
//!
//! - [`tag`]: the tag bodies themselves, parsed and their headers built;
//! - [`reader`]: a publisher's tags -> hub events ([`Ingest`]): timeline
//!   repair, Annex B, what is dropped and why;
//! - [`writer`]: hub events -> tags ([`TagWriter`]) for every FLV output:
//!   MP3 flags, the 32-bit timestamp wrap, the keyframe gate.
//!
//! The FLV file container (header, tag framing) is [`super::flv_file`].

pub mod reader;
pub mod tag;
pub mod writer;

pub use reader::{Ingest, IngestError, Notice};
pub use tag::*;
pub use writer::{Tag, TagKind, TagWriter, ON_METADATA};

/// Bytes from hex digits (spaces ignored), for the tests' tag bodies.
#[cfg(test)]
fn hex(s: &str) -> bytes::Bytes {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}
