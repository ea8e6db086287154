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
        let mut sent = false;
        for tag in self.tags.write(event) {
            sent = true;
            match tag.kind {
                TagKind::Media(kind) => session.send_media(sid, kind, tag.timestamp, &tag.parts()),
                TagKind::Script => session.send_data_raw(sid, tag.timestamp, &tag.parts()),
            }
        }
        if !sent {
            return;
        }
        if matches!(event, StreamEvent::Frame(_)) {
            self.frames_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::flv::samples::{self, ReadBack};
    use crate::media::flv::ON_METADATA;
    use crate::rtmp::amf0::{self, Amf0Value};
    use crate::rtmp::client::tests::pump;
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientSession};
    use crate::rtmp::session::{ServerEvent, SessionConfig};

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

    /// A player reads back what it is sent as the same events, and gets
    /// only the tracks it asked for.
    #[test]
    fn a_player_reads_back_what_it_is_sent() {
        let (_, config) =
            ClientConfig::from_url("rtmp://127.0.0.1/live/cam", ClientMode::Play).unwrap();
        let mut player = ClientSession::new(config);
        let mut server = ServerSession::new(SessionConfig::default());
        player.start();
        let stream_id = pump(&mut player, &mut server, 4096)
            .iter()
            .find_map(|e| match e {
                ServerEvent::PlayRequested { stream_id, .. } => Some(*stream_id),
                _ => None,
            })
            .expect("a play request");
        while player.poll_event().is_some() {}

        let input = samples::events();
        let mut playout = Playout::new(stream_id);
        for e in &input {
            playout.send(&mut server, e);
        }
        assert_eq!(playout.frames_sent, 3);
        assert_eq!(read_back(&mut player, &mut server), input);

        // Audio off: no audio frames. Video off and on again: nothing until
        // the next keyframe.
        playout.receive_audio = false;
        playout.receive_video = false;
        for e in &input[3..] {
            playout.send(&mut server, e);
        }
        playout.receive_video = true;
        playout.send(&mut server, &input[5]);
        assert_eq!(playout.frames_sent, 3);
        playout.send(&mut server, &input[3]);
        assert_eq!(playout.frames_sent, 4);
    }

    fn read_back(player: &mut ClientSession, server: &mut ServerSession) -> Vec<StreamEvent> {
        pump(player, server, 4096);
        let mut back = ReadBack::default();
        while let Some(ev) = player.poll_event() {
            match ev {
                ClientEvent::Data { values, .. } => {
                    assert_eq!(values[0], Amf0Value::string("onMetaData"));
                    back.metadata(amf0::encode_all(&values[1..]).into());
                }
                ClientEvent::Media {
                    kind,
                    timestamp,
                    payload,
                } => back.media(kind, timestamp, payload),
                _ => {}
            }
        }
        back.events
    }
}
