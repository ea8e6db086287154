//! Player side: hub events -> RTMP messages on a playing NetStream.

use crate::hub::StreamEvent;
use crate::media::flv;
use crate::media::{CodecConfig, MediaKind};
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::session::ServerSession;

/// Per-player state: what it wants and where its stream stands.
pub struct Playout {
    pub stream_id: u32,
    pub receive_audio: bool,
    pub receive_video: bool,
    /// MP3 carries its format byte in every tag.
    mp3_flags: Option<u8>,
    /// Video is held back until a keyframe (after a join or a takeover).
    video_started: bool,
    last_ts: u32,
    pub frames_sent: u64,
}

impl Playout {
    pub fn new(stream_id: u32) -> Self {
        Playout {
            stream_id,
            receive_audio: true,
            receive_video: true,
            mp3_flags: None,
            video_started: false,
            last_ts: 0,
            frames_sent: 0,
        }
    }

    /// Writes one hub event to the session's output.
    pub fn send(&mut self, session: &mut ServerSession, event: &StreamEvent) {
        let sid = self.stream_id;
        match event {
            StreamEvent::PublisherStarted => {
                self.video_started = false;
                session.notify_publish(sid);
            }
            StreamEvent::PublisherStopped => session.notify_unpublish(sid),
            StreamEvent::Metadata(m) => {
                session.send_data(
                    sid,
                    0,
                    &[Amf0Value::string("onMetaData"), Amf0Value::clone(m)],
                );
            }
            StreamEvent::Config(c) => {
                if let CodecConfig::Mp3(m) = c.as_ref() {
                    self.mp3_flags = Some(m.flv_flags);
                }
                if let Some(body) = flv::config_body(c) {
                    session.send_media(sid, c.kind(), self.last_ts, &[&body]);
                }
                if c.kind() == MediaKind::Video {
                    self.video_started = false;
                }
            }
            StreamEvent::Frame(f) => {
                let ts = (f.dts & 0xFFFF_FFFF) as u32;
                match f.kind() {
                    MediaKind::Video => {
                        if !self.receive_video {
                            self.video_started = false;
                            return;
                        }
                        if !self.video_started && !f.keyframe {
                            return;
                        }
                        self.video_started = true;
                        let header = flv::video_header(f);
                        session.send_media(sid, MediaKind::Video, ts, &[&header, &f.data]);
                    }
                    MediaKind::Audio => {
                        if !self.receive_audio {
                            return;
                        }
                        let Some(header) = flv::audio_header(f, self.mp3_flags) else {
                            return;
                        };
                        session.send_media(sid, MediaKind::Audio, ts, &[&header, &f.data]);
                    }
                }
                self.last_ts = ts;
                self.frames_sent += 1;
            }
        }
    }
}
