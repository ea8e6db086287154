//! Player side: hub events -> RTMP messages on a playing NetStream. The
//! tags are [`TagWriter`]'s; this only says what the player asked for and
//! puts the tags into messages.

use crate::hub::StreamEvent;
use crate::media::flv::{TagKind, TagWriter};
use crate::media::MediaKind;
use crate::rtmp::session::ServerSession;

/// Per-player state: what it wants and where its stream stands.
pub struct Playout {
    pub stream_id: u32,
    pub receive_audio: bool,
    pub receive_video: bool,
    tags: TagWriter,
    pub frames_sent: u64,
}

impl Playout {
    pub fn new(stream_id: u32) -> Self {
        Playout {
            stream_id,
            receive_audio: true,
            receive_video: true,
            tags: TagWriter::new(),
            frames_sent: 0,
        }
    }

    /// Writes one hub event to the session's output.
    pub fn send(&mut self, session: &mut ServerSession, event: &StreamEvent) {
        let sid = self.stream_id;
        match event {
            StreamEvent::PublisherStarted => session.notify_publish(sid),
            StreamEvent::PublisherStopped => session.notify_unpublish(sid),
            StreamEvent::Frame(f) if f.kind() == MediaKind::Video && !self.receive_video => {
                // Video turned back on resumes at a keyframe.
                self.tags.hold_video();
                return;
            }
            StreamEvent::Frame(f) if f.kind() == MediaKind::Audio && !self.receive_audio => return,
            _ => {}
        }
        let Some(tag) = self.tags.write(event) else {
            return;
        };
        match tag.kind {
            TagKind::Media(kind) => session.send_media(sid, kind, tag.timestamp, &tag.parts()),
            TagKind::Script => session.send_data_raw(sid, tag.timestamp, &tag.parts()),
        }
        if matches!(event, StreamEvent::Frame(_)) {
            self.frames_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::media::flv::ON_METADATA;
    use crate::rtmp::amf0::{self, Amf0Value};

    /// Metadata goes out as the data message players expect, whose name
    /// the writer spells in AMF0 without knowing AMF0.
    #[test]
    fn metadata_is_an_on_metadata_data_message() {
        let value = Amf0Value::object([("width", Amf0Value::Number(1280.0))]);
        let encoded = amf0::encode_all(std::slice::from_ref(&value));
        let body = [ON_METADATA, &encoded].concat();
        assert_eq!(
            amf0::decode_all(&Bytes::from(body)).unwrap(),
            [Amf0Value::string("onMetaData"), value]
        );
    }
}
