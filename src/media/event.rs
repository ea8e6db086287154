//! What flows from a publisher to its consumers (through the hub), in terms
//! of media only: every protocol reads into these and writes from them.

use std::sync::Arc;

use bytes::Bytes;

use super::{CodecConfig, Frame};

/// What flows from a publisher to its subscribers.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// A publisher started the stream (or replaced the previous one).
    PublisherStarted,
    /// The publisher left; another may come back on the same key.
    PublisherStopped,
    /// The stream's `onMetaData` object.
    Metadata(Metadata),
    /// A track's decoder configuration (sequence header).
    Config(Arc<CodecConfig>),
    Frame(Frame),
    /// The configuration of another track of the same kind: Enhanced RTMP
    /// multitrack sends several (a ladder of renditions, audio in several
    /// languages) with ids; `Config` and `Frame` are track 0's, these are
    /// the others'. A consumer that carries one track of each kind ignores
    /// them.
    TrackConfig(TrackId, Arc<CodecConfig>),
    /// A frame of another track (see [`StreamEvent::TrackConfig`]).
    TrackFrame(TrackId, Frame),
}

/// An Enhanced RTMP multitrack track id, 1 to 255 (track 0 travels as
/// plain `Config` and `Frame` events). Ids are per kind: video track 1 and
/// audio track 1 are two tracks.
pub type TrackId = u8;

/// A stream's `onMetaData` object, kept as its AMF0 encoding (the value
/// after the `onMetaData` name). Consumers only pass it on, so only the
/// protocols that carry AMF0 need to read it. Cloning shares the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    amf0: Bytes,
}

impl Metadata {
    /// `amf0`: one encoded AMF0 value (an object or an ECMA array).
    pub fn from_amf0(amf0: Bytes) -> Self {
        Metadata { amf0 }
    }

    /// The encoded AMF0 value.
    pub fn amf0(&self) -> &Bytes {
        &self.amf0
    }
}
