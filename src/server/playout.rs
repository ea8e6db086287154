//! Player side: hub events -> RTMP messages on a playing NetStream. The
//! tags are [`TagWriter`]'s; this only says what the player asked for and
//! puts the tags into messages.
//!
//! A player gets the codecs it takes (see [`crate::rtmp::enhanced`]): a
//! legacy player H.264, AAC and MP3, an Enhanced RTMP player also those it
//! announced. What it does not take is withheld and logged once. A player
//! that takes none of the stream's tracks is refused with
//! `NetStream.Play.Failed` naming the codecs: Play.Start waits until a
//! track it takes is configured, or, failing that, the first frame (the
//! tracks are all known by then; a join replays them before any frame).

use tracing::info;

use crate::hub::StreamEvent;
use crate::media::flv::ex::FourCc;
use crate::media::flv::{CodecSet, TagKind, TagWriter};
use crate::media::{Codec, MediaKind};
use crate::rtmp::session::ServerSession;
use crate::rtmp::status::NetStatus;

/// Where a player's NetStream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No publisher yet: nothing sent.
    Waiting,
    /// A publisher started: whether the player takes any of its tracks is
    /// not known yet; configurations and metadata are held.
    Deciding {
        started: bool,
    },
    Playing,
}

/// What became of an event for the player.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    Ok,
    /// The player takes none of the stream's tracks: it was sent
    /// `NetStream.Play.Failed` with this description; stop playing.
    Failed(String),
}

/// Per-player state: what it wants and where its stream stands.
pub struct Playout {
    pub stream_id: u32,
    pub receive_audio: bool,
    pub receive_video: bool,
    tags: TagWriter,
    pub frames_sent: u64,
    phase: Phase,
    /// The codec of each track as last configured.
    video: Option<Codec>,
    audio: Option<Codec>,
    /// Held while deciding: the metadata and the last configuration of
    /// each track (bounded by the tracks a publish may have).
    held: Vec<StreamEvent>,
}

impl Playout {
    /// A player taking `codecs` (legacy ones are always taken), and with
    /// `tracks` the tracks other than 0 (an Enhanced RTMP player: it reads
    /// multitrack packets).
    pub fn new(stream_id: u32, codecs: CodecSet, tracks: bool) -> Self {
        let tags = TagWriter::new().accepting(codecs);
        Playout {
            stream_id,
            receive_audio: true,
            receive_video: true,
            tags: if tracks { tags.with_tracks() } else { tags },
            frames_sent: 0,
            phase: Phase::Waiting,
            video: None,
            audio: None,
            held: Vec::new(),
        }
    }

    /// Whether NetStream.Play.Start has gone out.
    pub fn started(&self) -> bool {
        match self.phase {
            Phase::Waiting => false,
            Phase::Deciding { started } => started,
            Phase::Playing => true,
        }
    }

    /// Writes one hub event to the session's output.
    pub fn send(&mut self, session: &mut ServerSession, event: &StreamEvent) -> Sent {
        let sid = self.stream_id;
        match event {
            StreamEvent::PublisherStarted => {
                if self.started() {
                    session.notify_publish(sid);
                }
                self.tags.hold_video();
                // A new publisher may bring other codecs.
                self.video = None;
                self.audio = None;
                self.held.clear();
                if self.tags.accepts() == CodecSet::ALL {
                    self.start(session);
                } else {
                    self.phase = Phase::Deciding {
                        started: self.started(),
                    };
                }
                return Sent::Ok;
            }
            StreamEvent::PublisherStopped => {
                if self.started() {
                    session.notify_unpublish(sid);
                }
                return Sent::Ok;
            }
            StreamEvent::Config(c) => match c.kind() {
                MediaKind::Video => self.video = Some(c.codec()),
                MediaKind::Audio => self.audio = Some(c.codec()),
            },
            _ => {}
        }
        if let Phase::Deciding { .. } = self.phase {
            match event {
                StreamEvent::Config(c) if !self.tags.accepts().contains(c.codec()) => {
                    self.hold(event);
                    return Sent::Ok;
                }
                StreamEvent::Metadata(_) => {
                    self.hold(event);
                    return Sent::Ok;
                }
                // Other tracks decide nothing; their configurations are
                // held for a player that takes them.
                StreamEvent::TrackConfig(..) => {
                    self.hold(event);
                    return Sent::Ok;
                }
                StreamEvent::TrackFrame(..) => return Sent::Ok,
                StreamEvent::Frame(f) if !self.takes_a_track(f.codec) => {
                    return self.fail(session);
                }
                _ => {
                    self.start(session);
                    for held in std::mem::take(&mut self.held) {
                        self.write(session, &held);
                    }
                }
            }
        }
        if self.phase == Phase::Playing {
            self.write(session, event);
        }
        Sent::Ok
    }

    /// Play.Start (unless it went out before a takeover), then playing.
    fn start(&mut self, session: &mut ServerSession) {
        if !self.started() {
            session.accept_play(self.stream_id);
        }
        self.phase = Phase::Playing;
    }

    /// Keeps the metadata and the latest configuration of each kind.
    fn hold(&mut self, event: &StreamEvent) {
        let same = |e: &StreamEvent| match (e, event) {
            (StreamEvent::Metadata(_), StreamEvent::Metadata(_)) => true,
            (StreamEvent::Config(a), StreamEvent::Config(b)) => a.kind() == b.kind(),
            (StreamEvent::TrackConfig(i, a), StreamEvent::TrackConfig(j, b)) => {
                (i, a.kind()) == (j, b.kind())
            }
            _ => false,
        };
        self.held.retain(|e| !same(e));
        self.held.push(event.clone());
    }

    /// Whether the player takes one of the stream's tracks (a frame's
    /// codec counts for its kind when that track was never configured).
    fn takes_a_track(&self, frame_codec: Codec) -> bool {
        let accepts = self.tags.accepts();
        let of_kind =
            |c: Option<Codec>, kind| c.or((frame_codec.kind() == kind).then_some(frame_codec));
        [
            of_kind(self.video, MediaKind::Video),
            of_kind(self.audio, MediaKind::Audio),
        ]
        .into_iter()
        .flatten()
        .any(|c| accepts.contains(c))
    }

    fn fail(&mut self, session: &mut ServerSession) -> Sent {
        let tracks: Vec<Codec> = [self.video, self.audio].into_iter().flatten().collect();
        let names: Vec<String> = tracks
            .iter()
            .map(|c| format!("{} {}", c.name(), kind_name(c.kind())))
            .collect();
        let fourccs: Vec<String> = tracks.iter().map(|c| FourCc::of(*c).to_string()).collect();
        let description = format!(
            "This player cannot take the stream's {}: it needs Enhanced RTMP with {} announced in connect.",
            names.join(" and "),
            fourccs.join(", ")
        );
        if self.started() {
            session.end_play(self.stream_id, NetStatus::PlayFailed, &description);
        } else {
            session.reject_play(self.stream_id, NetStatus::PlayFailed, &description);
        }
        self.phase = Phase::Waiting;
        Sent::Failed(description)
    }

    fn write(&mut self, session: &mut ServerSession, event: &StreamEvent) {
        let sid = self.stream_id;
        match event {
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
        while let Some(codec) = self.tags.take_withheld() {
            info!(
                codec = codec.name(),
                fourcc = %FourCc::of(codec),
                "{} track withheld from this player: it did not announce it",
                kind_name(codec.kind())
            );
        }
        if sent && matches!(event, StreamEvent::Frame(_)) {
            self.frames_sent += 1;
        }
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
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
        let mut playout = Playout::new(stream_id, CodecSet::LEGACY, false);
        playout.send(&mut server, &StreamEvent::PublisherStarted);
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
        read_all(player, server).0
    }

    /// What a player read: the events its media make, and its statuses
    /// (`Playing` and `Failed` as `"Play.Start"` and `"Failed: …"`).
    fn read_all(
        player: &mut ClientSession,
        server: &mut ServerSession,
    ) -> (Vec<StreamEvent>, Vec<String>) {
        pump(player, server, 4096);
        let mut back = ReadBack::default();
        let mut statuses = Vec::new();
        while let Some(ev) = player.poll_event() {
            match ev {
                ClientEvent::Data { values, .. } if values[0].as_str() == Some("onMetaData") => {
                    back.metadata(amf0::encode_all(&values[1..]).into());
                }
                ClientEvent::Media {
                    kind,
                    timestamp,
                    payload,
                } => back.media(kind, timestamp, payload),
                ClientEvent::Playing { .. } => statuses.push("Play.Start".to_string()),
                ClientEvent::Failed { code, description } => {
                    statuses.push(format!("{code}: {description}"))
                }
                _ => {}
            }
        }
        (back.events, statuses)
    }

    /// A player connected with `fourccs` announced (none: legacy) and
    /// asking to play; the server's stream id for it.
    fn player(fourccs: &[&str]) -> (ClientSession, ServerSession, u32) {
        let (_, mut config) =
            ClientConfig::from_url("rtmp://127.0.0.1/live/cam", ClientMode::Play).unwrap();
        config.fourcc_list = fourccs.iter().map(|s| s.to_string()).collect();
        let mut player = ClientSession::new(config);
        let mut server = ServerSession::new(SessionConfig::default());
        player.start();
        // Exchanged without `pump`, which accepts every play at once.
        let mut stream_id = None;
        loop {
            let (c, s) = (player.take_output(), server.take_output());
            if c.is_empty() && s.is_empty() {
                break;
            }
            server.handle_input(&c).unwrap();
            player.handle_input(&s).unwrap();
            while let Some(ev) = server.poll_event() {
                if let ServerEvent::PlayRequested { stream_id: id, .. } = ev {
                    stream_id = Some(id);
                }
            }
        }
        while player.poll_event().is_some() {}
        (player, server, stream_id.expect("a play request"))
    }

    /// FFmpeg 9's tags of a file, as the hub's events (after a publisher
    /// started).
    fn stream_of(file: &'static [u8]) -> Vec<StreamEvent> {
        let mut back = ReadBack::default();
        for tag in crate::media::flv_file::read_tags(&Bytes::from_static(file)).unwrap() {
            match tag.tag_type {
                8 => back.media(MediaKind::Audio, tag.timestamp, tag.body),
                9 => back.media(MediaKind::Video, tag.timestamp, tag.body),
                _ => {}
            }
        }
        let mut events = vec![StreamEvent::PublisherStarted];
        events.extend(back.events);
        events
    }

    fn play(fourccs: &[&str], stream: &[StreamEvent]) -> (Vec<StreamEvent>, Vec<String>, Sent) {
        let (mut player, mut server, stream_id) = player(fourccs);
        let codecs = server.peer_capabilities().codecs();
        let mut playout = Playout::new(stream_id, codecs, true);
        let mut last = Sent::Ok;
        for e in stream {
            last = playout.send(&mut server, e);
            if last != Sent::Ok {
                break;
            }
        }
        let (events, statuses) = read_all(&mut player, &mut server);
        (events, statuses, last)
    }

    fn codecs_of(events: &[StreamEvent]) -> Vec<Codec> {
        let mut codecs: Vec<Codec> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some(f.codec),
                _ => None,
            })
            .collect();
        codecs.dedup();
        codecs.sort_by_key(|c| c.name());
        codecs.dedup();
        codecs
    }

    /// HEVC and AAC: a legacy player gets the AAC track alone.
    #[test]
    fn a_legacy_player_gets_the_legacy_track() {
        let stream = stream_of(include_bytes!("../media/flv/testdata/ffmpeg9_hevc_aac.flv"));
        let (events, statuses, sent) = play(&[], &stream);
        assert_eq!(sent, Sent::Ok);
        assert_eq!(statuses, ["Play.Start"]);
        assert_eq!(codecs_of(&events), [Codec::Aac]);
        // The AAC configuration went out too.
        assert!(events
            .iter()
            .any(|e| matches!(e, StreamEvent::Config(c) if c.codec() == Codec::Aac)));
    }

    /// HEVC and Opus: a legacy player takes neither and is refused, with
    /// the codecs named; nothing else is sent.
    #[test]
    fn a_legacy_player_of_enhanced_codecs_only_is_refused() {
        let stream = stream_of(include_bytes!("../media/flv/testdata/hevc_opus.flv"));
        let (events, statuses, sent) = play(&[], &stream);
        let Sent::Failed(why) = sent else {
            panic!("{sent:?}")
        };
        assert!(why.contains("HEVC video and Opus audio"), "{why}");
        assert!(why.contains("hvc1, Opus"), "{why}");
        assert_eq!(statuses, [format!("NetStream.Play.Failed: {why}")]);
        assert!(events.is_empty());
    }

    /// A player that announced hvc1 only gets HEVC (and not Opus); one
    /// that announced both gets both, packet for packet.
    #[test]
    fn an_enhanced_player_gets_what_it_announced() {
        let stream = stream_of(include_bytes!("../media/flv/testdata/hevc_opus.flv"));
        let (events, statuses, _) = play(&["hvc1"], &stream);
        assert_eq!(statuses, ["Play.Start"]);
        assert_eq!(codecs_of(&events), [Codec::Hevc]);

        let (events, statuses, _) = play(&["hvc1", "Opus"], &stream);
        assert_eq!(statuses, ["Play.Start"]);
        let frames = |e: &[StreamEvent]| -> Vec<StreamEvent> {
            e.iter()
                .filter(|e| matches!(e, StreamEvent::Frame(_)))
                .cloned()
                .collect()
        };
        assert_eq!(frames(&events), frames(&stream));
        assert_eq!(codecs_of(&events), [Codec::Hevc, Codec::Opus]);
    }

    /// A player taking everything starts at once; a restricted one after
    /// the first configuration it takes.
    #[test]
    fn play_start_waits_only_for_a_track_it_takes() {
        let (_, mut server, sid) = player(&["*"]);
        let mut all = Playout::new(sid, server.peer_capabilities().codecs(), true);
        all.send(&mut server, &StreamEvent::PublisherStarted);
        assert!(all.started());

        let stream = stream_of(include_bytes!("../media/flv/testdata/ffmpeg9_hevc_aac.flv"));
        let (_, mut server, sid) = player(&[]);
        let mut legacy = Playout::new(sid, CodecSet::LEGACY, false);
        let mut i = 0;
        while !legacy.started() {
            legacy.send(&mut server, &stream[i]);
            i += 1;
        }
        assert!(matches!(&stream[i - 1], StreamEvent::Config(c) if c.codec() == Codec::Aac));
    }
}
