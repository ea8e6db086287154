//! FLV tags both ways: everything that turns FLV tag bodies into media and
//! media back into FLV tags, so a codec change touches only this module.
//!
//! - [`tag`]: the tag bodies themselves, parsed and their headers built;
//! - [`ex`]: the structure of Enhanced RTMP bodies (FourCCs, ModEx,
//!   multitrack), before any codec is looked at;
//! - [`reader`]: a publisher's tags -> hub events ([`Ingest`]): timeline
//!   repair, Annex B, what is dropped and why;
//! - [`writer`]: hub events -> tags ([`TagWriter`]) for every FLV output:
//!   MP3 flags, the 32-bit timestamp wrap, the keyframe gate.
//!
//! The FLV file container (header, tag framing) is [`super::flv_file`].

pub mod ex;
pub mod reader;
pub mod tag;
pub mod writer;

pub use reader::{Ingest, IngestError, Notice};
pub use tag::*;
pub use writer::{CodecSet, Tag, TagKind, TagWriter, Tags, ON_METADATA};

/// Bytes from hex digits (spaces ignored), for the tests' tag bodies.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> bytes::Bytes {
    super::bits::hex(s).into()
}

/// A publisher's tags as the reader takes them, for the tests of every
/// output: what they write must read back as the same events.
#[cfg(test)]
pub(crate) mod samples {
    use bytes::Bytes;

    use super::{hex, Ingest};
    use crate::media::{MediaKind, StreamEvent};

    /// `onMetaData` as AMF0: an object `{ width: 64 }`.
    pub(crate) const METADATA: &[u8] = b"\x03\x00\x05width\x00\x40\x50\0\0\0\0\0\0\x00\x00\x09";

    /// Metadata, then a real AVC sequence header (64x64 High) and AAC-LC
    /// 48 kHz stereo with a keyframe, an AAC frame and an inter frame.
    pub(crate) fn events() -> Vec<StreamEvent> {
        let mut back = ReadBack::default();
        back.metadata(Bytes::from_static(METADATA));
        for (kind, ts, body) in [
            (MediaKind::Video, 0, "170000000001640009ffe1001867640009acd94426c044000003000400000300f03c48965801000468efbcb0fdf8f800"),
            (MediaKind::Audio, 0, "af00119056e500"),
            (MediaKind::Video, 0, "1701000043 00000002 6588"),
            (MediaKind::Audio, 10, "af01 211004608c1c"),
            (MediaKind::Video, 40, "2701000085 00000002 4188"),
        ] {
            back.media(kind, ts, hex(body));
        }
        assert_eq!(back.events.len(), 6);
        back.events
    }

    /// What tags that came back out of an output make.
    #[derive(Default)]
    pub(crate) struct ReadBack {
        reader: Ingest,
        pub(crate) events: Vec<StreamEvent>,
    }

    impl ReadBack {
        pub(crate) fn media(&mut self, kind: MediaKind, timestamp: u32, body: Bytes) {
            let events = &mut self.events;
            self.reader
                .media(kind, timestamp, body, |e| events.push(e))
                .expect("a tag the reader takes");
        }

        pub(crate) fn metadata(&mut self, amf0: Bytes) {
            let events = &mut self.events;
            self.reader.metadata(amf0, |e| events.push(e));
        }
    }
}
