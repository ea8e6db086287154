//! The RTMP server session: a sans-I/O state machine.
//!
//! Feed it the bytes a client sent with [`ServerSession::handle_input`]; take
//! the bytes to send back with [`ServerSession::take_output`] and the things a
//! server must decide or act on with [`ServerSession::poll_event`]. Publish and
//! play requests wait for [`ServerSession::accept_publish`] /
//! [`ServerSession::reject_publish`] (and the play equivalents), so the
//! caller can consult the hub, authorisation and limits. The same session
//! runs over TCP, TLS and the RTMPT tunnel.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Value, AmfError};
use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, MessageBudget};
use super::enhanced::{self, Capabilities};
use super::handshake::{HandshakeError, HandshakeStatus, RtmpePolicy, ServerHandshake};
use super::message::{self as msg, Message, UserControl};
use super::rtmpe::CipherLayer;
use super::status::{Level, NetStatus};
use crate::media::MediaKind;

/// Chunk stream ids castgate sends on.
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_DATA: u32 = 5;
const CSID_VIDEO: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad AMF in {what}: {source}")]
    Amf {
        what: &'static str,
        #[source]
        source: AmfError,
    },
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// Settings of one session, taken from the server config.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    pub chunk_limits: ChunkLimits,
    /// Chunk size castgate sends with (announced right after connect).
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size and Set Peer Bandwidth we announce.
    pub window_ack_size: u32,
    /// Most NetStreams one connection may create.
    pub max_streams: u32,
    /// Whether a client may ask for RTMPE (C0 = 6).
    pub rtmpe: RtmpePolicy,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_limits: ChunkLimits::default(),
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
            max_streams: 8,
            rtmpe: RtmpePolicy::Accept,
        }
    }
}

/// What a `play` asked for besides the name: `play(name, start, len,
/// reset)`.
///
/// ActionScript's `NetStream.play` takes `start` and `len` in seconds, but
/// clients put milliseconds on the wire: Flash Player, librtmp (rtmpdump's
/// `--start`/`--stop` become `start` and `stop - start` in ms) and FFmpeg
/// (`-2000` for "live or recorded", `-1000` for live). Both sentinels are
/// also taken in seconds (`-2`, `-1`). On demand, a negative start is the
/// beginning and a length that is not positive is "to the end".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayRange {
    /// As sent (ms); `-2000` when absent.
    pub start: f64,
    /// As sent (ms); `-1` when absent.
    pub duration: f64,
    /// Whether to send NetStream.Play.Reset (`true` when absent).
    pub reset: bool,
}

impl Default for PlayRange {
    fn default() -> Self {
        PlayRange {
            start: -2000.0,
            duration: -1.0,
            reset: true,
        }
    }
}

impl PlayRange {
    /// Where a recorded stream starts, in ms (0 for the live sentinels).
    pub fn start_ms(&self) -> i64 {
        if self.start.is_finite() && self.start > 0.0 {
            self.start.min(i64::MAX as f64 / 2.0) as i64
        } else {
            0
        }
    }

    /// How much of a recorded stream to play, in ms; `None`: to the end.
    pub fn duration_ms(&self) -> Option<i64> {
        (self.duration.is_finite() && self.duration > 0.0)
            .then(|| self.duration.min(i64::MAX as f64 / 4.0) as i64)
    }

    /// Reads `play`'s arguments after the name: start, len, reset (a
    /// number or a boolean, as clients differ).
    fn from_args(args: &[Amf0Value]) -> PlayRange {
        let d = PlayRange::default();
        let num = |i: usize| args.get(i).and_then(|v| v.as_f64());
        PlayRange {
            start: num(1).unwrap_or(d.start),
            duration: num(2).unwrap_or(d.duration),
            reset: match args.get(3) {
                Some(Amf0Value::Boolean(b)) => *b,
                Some(Amf0Value::Number(n)) => *n != 0.0,
                _ => d.reset,
            },
        }
    }
}

/// What the session tells its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    /// The handshake finished; RTMP messages follow.
    HandshakeDone { digest: bool },
    /// `connect` was answered with NetConnection.Connect.Success.
    Connected {
        app: String,
        tc_url: String,
        flash_ver: String,
    },
    /// `publish`: answer with accept_publish / reject_publish.
    PublishRequested {
        stream_id: u32,
        app: String,
        name: String,
        query: String,
        mode: String,
    },
    /// `play`: answer with accept_play / reject_play.
    PlayRequested {
        stream_id: u32,
        app: String,
        name: String,
        query: String,
        range: PlayRange,
    },
    /// `seek(ms)` on a playing stream: answer with
    /// [`ServerSession::seek_done`] (at the time media now start from) or
    /// [`ServerSession::seek_failed`].
    Seek { stream_id: u32, ms: f64 },
    /// `pause(flag, ms)` or `pauseRaw` on a playing stream: answer with
    /// [`ServerSession::pause_done`] (a driver that cannot pause says
    /// nothing).
    Pause {
        stream_id: u32,
        pause: bool,
        ms: f64,
    },
    /// `getStreamLength(name)`: answer with
    /// [`ServerSession::answer_stream_length`] and this transaction id.
    StreamLengthRequested {
        stream_id: u32,
        transaction: f64,
        name: String,
        query: String,
    },
    /// The client's SetBufferLength (how far ahead it buffers).
    BufferLength { stream_id: u32, millis: u32 },
    /// An audio or video message on a published stream (FLV tag body), or
    /// on one whose PublishRequested is not answered yet (see
    /// `accepts_media`).
    Media {
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// `@setDataFrame onMetaData` (or a bare `onMetaData`) on a published
    /// stream: the metadata object.
    Metadata { stream_id: u32, metadata: Amf0Value },
    /// The client stopped publishing (FCUnpublish, closeStream, deleteStream).
    PublishStopped { stream_id: u32 },
    /// The client stopped playing (closeStream, deleteStream).
    PlayStopped { stream_id: u32 },
    /// receiveAudio / receiveVideo.
    ReceiveChanged {
        stream_id: u32,
        kind: MediaKind,
        enabled: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum StreamState {
    Created,
    PublishPending { name: String },
    Publishing { name: String },
    PlayPending { name: String, reset: bool },
    Playing { name: String },
}

#[derive(Debug)]
enum Phase {
    Handshake(Box<ServerHandshake>),
    AwaitConnect,
    Connected,
}

/// One RTMP server-side connection.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    phase: Phase,
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<ServerEvent>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    app: String,
    streams: HashMap<u32, StreamState>,
    next_stream_id: u32,
    control: msg::Control,
    /// What the client announced of Enhanced RTMP in `connect`.
    peer: Capabilities,
    /// Whether the client asked for RTMPE (known from C0 on).
    encrypted: bool,
    /// RTMPE's RC4 layer (off for plain RTMP).
    cipher: CipherLayer,
}

/// The limits until the client may publish or play: the tighter of the
/// configured ones and [`ChunkLimits::UNAUTHORISED`].
fn unauthorised_limits(configured: ChunkLimits) -> ChunkLimits {
    let u = ChunkLimits::UNAUTHORISED;
    ChunkLimits {
        max_message_size: configured.max_message_size.min(u.max_message_size),
        max_chunk_size: configured.max_chunk_size.min(u.max_chunk_size),
        max_partial_streams: configured.max_partial_streams.min(u.max_partial_streams),
        max_buffered: configured.max_buffered.min(u.max_buffered),
    }
}

impl ServerSession {
    pub fn new(config: SessionConfig) -> Self {
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(crate::rtmp::chunk::DEFAULT_CHUNK_SIZE);
        ServerSession {
            config,
            phase: Phase::Handshake(Box::new(ServerHandshake::with_rtmpe(config.rtmpe))),
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            decoder: ChunkDecoder::new(unauthorised_limits(config.chunk_limits)),
            encoder,
            app: String::new(),
            streams: HashMap::new(),
            next_stream_id: 1,
            control: msg::Control::default(),
            peer: Capabilities::default(),
            encrypted: false,
            cipher: CipherLayer::default(),
        }
    }

    /// Whether this is an RTMPE connection (known from the first byte on).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Counts this session's partially received messages against a budget
    /// shared by every connection.
    pub fn set_message_budget(&mut self, budget: std::sync::Arc<MessageBudget>) {
        self.decoder.set_budget(budget);
    }

    /// The message limits in force now (tighter until publish or play).
    pub fn chunk_limits(&self) -> ChunkLimits {
        self.decoder.limits()
    }

    /// The application name from `connect` (without a query string).
    pub fn app(&self) -> &str {
        &self.app
    }

    /// What the client announced of Enhanced RTMP in `connect` (empty for
    /// a legacy client, or before connect).
    pub fn peer_capabilities(&self) -> &Capabilities {
        &self.peer
    }

    pub fn is_handshake_done(&self) -> bool {
        !matches!(self.phase, Phase::Handshake(_))
    }

    /// Bytes to send to the client, emptied by the call (and encrypted,
    /// on an RTMPE connection).
    pub fn take_output(&mut self) -> BytesMut {
        self.cipher.sending(&mut self.output);
        self.output.split()
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Processes bytes from the client.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        let mut input = std::mem::take(&mut self.input);
        let start = input.len();
        input.extend_from_slice(data);
        let result = self.handle_read(&mut input, start);
        self.input = input;
        result
    }

    /// Input read straight into `buf`: the bytes from `start` on are new,
    /// those before them what the last call left there (a partial chunk).
    /// Whole chunks are taken out of `buf`; the rest stays for the next
    /// read to append to. A driver reading into one buffer this way spares
    /// [`handle_input`](Self::handle_input)'s copy of every byte received.
    /// Use one way or the other for a session, not both.
    pub fn handle_read(&mut self, buf: &mut BytesMut, start: usize) -> Result<(), SessionError> {
        let start = start.min(buf.len());
        self.control.received(buf.len() - start);
        self.cipher.received(&mut buf[start..]);
        if let Phase::Handshake(hs) = &mut self.phase {
            let mut out = Vec::new();
            let result = hs.process(buf, &mut out);
            self.encrypted = hs.is_encrypted();
            let (consumed, status) = result?;
            let digest = hs.client_used_digest();
            let _ = buf.split_to(consumed);
            self.output.extend_from_slice(&out);
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            if let Some(ciphers) = hs.take_ciphers() {
                self.cipher.start(ciphers, buf, self.output.len());
            }
            self.phase = Phase::AwaitConnect;
            self.events.push_back(ServerEvent::HandshakeDone { digest });
        }
        loop {
            let before = buf.len();
            match self.decoder.decode(buf)? {
                Some(m) => self.handle_message(m)?,
                None if buf.len() == before => break,
                None => {}
            }
        }
        self.maybe_ack();
        Ok(())
    }

    fn maybe_ack(&mut self) {
        if let Some(seq) = self.control.ack_due() {
            self.send_control(msg::ACKNOWLEDGEMENT, &seq.to_be_bytes());
        }
    }

    fn handle_message(&mut self, m: Message) -> Result<(), SessionError> {
        match self.control.handle(&m, &mut self.decoder)? {
            msg::ControlOutcome::NotControl => {}
            msg::ControlOutcome::Done => return Ok(()),
            msg::ControlOutcome::Answer(uc) => {
                self.send_user_control(uc);
                return Ok(());
            }
            msg::ControlOutcome::Event(uc) => {
                if let UserControl::SetBufferLength { stream_id, millis } = uc {
                    self.events
                        .push_back(ServerEvent::BufferLength { stream_id, millis });
                }
                return Ok(());
            }
        }
        match m.type_id {
            msg::AUDIO | msg::VIDEO => self.handle_media(m),
            msg::AGGREGATE => {
                for sub in msg::split_aggregate(&m)? {
                    self.handle_media(Message {
                        type_id: sub.type_id,
                        stream_id: m.stream_id,
                        timestamp: sub.timestamp,
                        payload: sub.payload,
                    });
                }
            }
            msg::COMMAND_AMF0 => {
                let values = decode_amf(&m.payload, "command")?;
                self.handle_command(m.stream_id, values)?;
            }
            msg::COMMAND_AMF3 => {
                // AMF3 commands are AMF0 after a one-byte format selector.
                let values = decode_amf(m.payload.get(1..).unwrap_or(&[]), "AMF3 command")?;
                self.handle_command(m.stream_id, values)?;
            }
            msg::DATA_AMF0 => {
                let values = decode_amf(&m.payload, "data message")?;
                self.handle_data(m.stream_id, values);
            }
            msg::DATA_AMF3 => {
                let values = decode_amf(m.payload.get(1..).unwrap_or(&[]), "AMF3 data message")?;
                self.handle_data(m.stream_id, values);
            }
            // Shared objects and unknown types are ignored, as FMS does.
            _ => {}
        }
        Ok(())
    }

    fn handle_media(&mut self, m: Message) {
        let kind = match m.type_id {
            msg::AUDIO => MediaKind::Audio,
            msg::VIDEO => MediaKind::Video,
            _ => return,
        };
        if self.accepts_media(m.stream_id) {
            self.events.push_back(ServerEvent::Media {
                stream_id: m.stream_id,
                kind,
                timestamp: m.timestamp,
                payload: m.payload,
            });
        }
    }

    /// Media and metadata are passed on for a publishing stream, and for one
    /// whose publish is still pending: an encoder that does not wait for
    /// Publish.Start can put its first tags in the same read as `publish`,
    /// and they follow the PublishRequested event, so a driver that accepts
    /// loses nothing (one that refuses ignores them).
    fn accepts_media(&self, stream_id: u32) -> bool {
        matches!(
            self.streams.get(&stream_id),
            Some(StreamState::Publishing { .. } | StreamState::PublishPending { .. })
        )
    }

    fn handle_data(&mut self, stream_id: u32, values: Vec<Amf0Value>) {
        if !self.accepts_media(stream_id) {
            return;
        }
        let mut it = values.into_iter();
        let first = it.next();
        let mut name = first.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        let second;
        if name == "@setDataFrame" {
            second = it.next();
            name = second.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        }
        if name == "onMetaData" {
            if let Some(metadata) = it.next() {
                self.events.push_back(ServerEvent::Metadata {
                    stream_id,
                    metadata,
                });
            }
        }
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        values: Vec<Amf0Value>,
    ) -> Result<(), SessionError> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Amf0Value::String(s)) => s,
            other => {
                return Err(SessionError::Protocol(format!(
                    "command without a name: {other:?}"
                )))
            }
        };
        let tid = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let _command_object = it.next();
        let args: Vec<Amf0Value> = it.collect();
        let arg_str = |i: usize| {
            args.get(i)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };

        if !matches!(self.phase, Phase::Connected) && name != "connect" {
            return Err(SessionError::Protocol(format!("`{name}` before connect")));
        }
        match name.as_str() {
            "connect" => self.on_connect(tid, _command_object)?,
            "createStream" => self.on_create_stream(tid)?,
            "releaseStream" | "FCPublish" => {
                self.send_result(tid, Amf0Value::Null, Amf0Value::Undefined);
            }
            "FCUnpublish" => {
                let name = strip_query(&arg_str(0)).0;
                let target = self.streams.iter().find_map(|(id, s)| match s {
                    StreamState::Publishing { name: n } if *n == name => Some(*id),
                    _ => None,
                });
                if let Some(id) = target {
                    self.stop_stream(id);
                }
                self.send_result(tid, Amf0Value::Null, Amf0Value::Undefined);
            }
            "publish" => self.on_publish(stream_id, &arg_str(0), &arg_str(1))?,
            "play" => {
                let range = PlayRange::from_args(&args);
                self.on_play(stream_id, &arg_str(0), range)?
            }
            "play2" => {
                let name = args
                    .first()
                    .and_then(|o| o.get("streamName"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                self.on_play(stream_id, &name, PlayRange::default())?
            }
            "closeStream" => self.stop_stream(stream_id),
            "deleteStream" => {
                let id = args.first().and_then(|v| v.as_f64()).unwrap_or(0.0) as u32;
                self.stop_stream(id);
                self.streams.remove(&id);
            }
            "getStreamLength" => {
                // Live streams have no length (the driver answers 0);
                // Flash players ask anyway.
                let (name, query) = strip_query(&arg_str(0));
                self.events.push_back(ServerEvent::StreamLengthRequested {
                    stream_id,
                    transaction: tid,
                    name,
                    query,
                });
            }
            "seek" if self.is_playing(stream_id) => {
                let ms = args.first().and_then(|v| v.as_f64()).unwrap_or(0.0);
                self.events.push_back(ServerEvent::Seek { stream_id, ms });
            }
            "pause" | "pauseRaw" if self.is_playing(stream_id) => {
                // pause(flag, ms); a number for the flag from some clients.
                let pause = match args.first() {
                    Some(Amf0Value::Boolean(b)) => *b,
                    Some(Amf0Value::Number(n)) => *n != 0.0,
                    _ => true,
                };
                let ms = args.get(1).and_then(|v| v.as_f64()).unwrap_or(0.0);
                self.events.push_back(ServerEvent::Pause {
                    stream_id,
                    pause,
                    ms,
                });
            }
            "receiveAudio" | "receiveVideo" => {
                let enabled = args.first().and_then(|v| v.as_bool()).unwrap_or(true);
                let kind = if name == "receiveAudio" {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                self.events.push_back(ServerEvent::ReceiveChanged {
                    stream_id,
                    kind,
                    enabled,
                });
            }
            // Bandwidth checks and pings some clients send: answer, ignore.
            "_checkbw" | "ping" => self.send_result(tid, Amf0Value::Null, Amf0Value::Undefined),
            _ => {}
        }
        Ok(())
    }

    fn on_connect(&mut self, tid: f64, obj: Option<Amf0Value>) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::AwaitConnect) {
            return Err(SessionError::Protocol("second connect".into()));
        }
        let obj = obj.unwrap_or(Amf0Value::Null);
        let field = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let app_full = field("app");
        let app = strip_query(app_full.trim_end_matches('/')).0;
        if app.is_empty() {
            return Err(SessionError::Protocol("connect without an app".into()));
        }
        let encoding = obj
            .get("objectEncoding")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        self.app = app.clone();
        self.peer = Capabilities::from_connect(&obj);
        self.phase = Phase::Connected;

        self.send_control(
            msg::WINDOW_ACK_SIZE,
            &self.config.window_ack_size.to_be_bytes(),
        );
        let mut bw = self.config.window_ack_size.to_be_bytes().to_vec();
        bw.push(2); // dynamic
        self.send_control(msg::SET_PEER_BANDWIDTH, &bw);
        self.send_control(
            msg::SET_CHUNK_SIZE,
            &self.config.out_chunk_size.to_be_bytes(),
        );
        self.encoder
            .set_chunk_size(self.config.out_chunk_size as usize);
        // Enhanced RTMP: the server states what it supports in here.
        let props = Amf0Value::object(
            [
                ("fmsVer", Amf0Value::string("FMS/3,0,1,123")),
                ("capabilities", Amf0Value::Number(31.0)),
            ]
            .into_iter()
            .chain(enhanced::server_announcement()),
        );
        let status = NetStatus::ConnectSuccess;
        let info = Amf0Value::object([
            ("level", Amf0Value::string(status.level().as_str())),
            ("code", Amf0Value::string(status.code())),
            ("description", Amf0Value::string(status.description())),
            ("objectEncoding", Amf0Value::Number(encoding)),
        ]);
        self.send_command(
            0,
            &[
                Amf0Value::string("_result"),
                Amf0Value::Number(tid),
                props,
                info,
            ],
        );
        self.events.push_back(ServerEvent::Connected {
            app,
            tc_url: field("tcUrl"),
            flash_ver: field("flashVer"),
        });
        Ok(())
    }

    fn on_create_stream(&mut self, tid: f64) -> Result<(), SessionError> {
        if self.streams.len() as u32 >= self.config.max_streams {
            return Err(SessionError::Protocol(format!(
                "more than {} streams on one connection",
                self.config.max_streams
            )));
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.insert(id, StreamState::Created);
        self.send_result(tid, Amf0Value::Null, Amf0Value::Number(f64::from(id)));
        Ok(())
    }

    fn on_publish(&mut self, stream_id: u32, name: &str, mode: &str) -> Result<(), SessionError> {
        let (name, query) = strip_query(name);
        match self.streams.get(&stream_id) {
            Some(StreamState::Created) => {}
            Some(_) => {
                self.send_status(
                    stream_id,
                    NetStatus::PublishBadConnection,
                    "Stream is busy.",
                );
                return Ok(());
            }
            None => {
                return Err(SessionError::Protocol(format!(
                    "publish on unknown stream {stream_id}"
                )))
            }
        }
        if name.is_empty() {
            self.send_status(stream_id, NetStatus::PublishBadName, "Empty stream name.");
            return Ok(());
        }
        self.streams.insert(
            stream_id,
            StreamState::PublishPending { name: name.clone() },
        );
        self.events.push_back(ServerEvent::PublishRequested {
            stream_id,
            app: self.app.clone(),
            name,
            query,
            mode: if mode.is_empty() {
                "live".into()
            } else {
                mode.into()
            },
        });
        Ok(())
    }

    fn on_play(
        &mut self,
        stream_id: u32,
        name: &str,
        range: PlayRange,
    ) -> Result<(), SessionError> {
        let (name, query) = strip_query(name);
        match self.streams.get(&stream_id) {
            Some(StreamState::Created) => {}
            Some(_) => return Ok(()),
            None => {
                return Err(SessionError::Protocol(format!(
                    "play on unknown stream {stream_id}"
                )))
            }
        }
        if name.is_empty() {
            self.send_status(
                stream_id,
                NetStatus::PlayStreamNotFound,
                "Empty stream name.",
            );
            return Ok(());
        }
        self.streams.insert(
            stream_id,
            StreamState::PlayPending {
                name: name.clone(),
                reset: range.reset,
            },
        );
        self.events.push_back(ServerEvent::PlayRequested {
            stream_id,
            app: self.app.clone(),
            name,
            query,
            range,
        });
        Ok(())
    }

    /// Ends whatever a NetStream is doing and tells the driver.
    fn stop_stream(&mut self, stream_id: u32) {
        let Some(state) = self.streams.get_mut(&stream_id) else {
            return;
        };
        let old = std::mem::replace(state, StreamState::Created);
        match old {
            StreamState::Publishing { name } | StreamState::PublishPending { name } => {
                self.send_status(
                    stream_id,
                    NetStatus::UnpublishSuccess,
                    &format!("{name} is now unpublished."),
                );
                self.events
                    .push_back(ServerEvent::PublishStopped { stream_id });
            }
            StreamState::Playing { .. } | StreamState::PlayPending { .. } => {
                self.events
                    .push_back(ServerEvent::PlayStopped { stream_id });
            }
            StreamState::Created => {}
        }
    }

    /// Confirms a publish: NetStream.Publish.Start; media now flows as events.
    pub fn accept_publish(&mut self, stream_id: u32) {
        if let Some(StreamState::PublishPending { name }) = self.streams.get(&stream_id).cloned() {
            // Allowed now: media-sized messages from here on.
            self.decoder.set_limits(self.config.chunk_limits);
            self.send_user_control(UserControl::StreamBegin(stream_id));
            self.send_status(
                stream_id,
                NetStatus::PublishStart,
                &format!("{name} is now published."),
            );
            self.streams
                .insert(stream_id, StreamState::Publishing { name });
        }
    }

    /// Refuses a publish with an error status (e.g. [`NetStatus::PublishBadName`]).
    pub fn reject_publish(&mut self, stream_id: u32, status: NetStatus, description: &str) {
        if matches!(
            self.streams.get(&stream_id),
            Some(StreamState::PublishPending { .. })
        ) {
            self.streams.insert(stream_id, StreamState::Created);
            self.send_status(stream_id, status, description);
        }
    }

    /// Ends a live publish from the server side (takeover, idle timeout,
    /// shutdown). Always sent at level `error`, whatever the code's own
    /// level: the publisher did not ask for it, and encoders (ffmpeg, OBS)
    /// stop on an error instead of sending into a closed publish.
    pub fn end_publish(&mut self, stream_id: u32, status: NetStatus, description: &str) {
        if matches!(
            self.streams.get(&stream_id),
            Some(StreamState::Publishing { .. })
        ) {
            self.streams.insert(stream_id, StreamState::Created);
            self.send_status_at(stream_id, Level::Error, status, description);
        }
    }

    /// Confirms a play: Reset (unless the play said not to), StreamBegin,
    /// Play.Start and sample access.
    pub fn accept_play(&mut self, stream_id: u32) {
        if let Some(StreamState::PlayPending { name, reset }) =
            self.streams.get(&stream_id).cloned()
        {
            self.decoder.set_limits(self.config.chunk_limits);
            self.send_user_control(UserControl::StreamIsRecorded(stream_id));
            self.send_user_control(UserControl::StreamBegin(stream_id));
            self.send_play_start(stream_id, &name, reset);
            self.send_data(
                stream_id,
                0,
                &[
                    Amf0Value::string("|RtmpSampleAccess"),
                    Amf0Value::Boolean(true),
                    Amf0Value::Boolean(true),
                ],
            );
            self.streams
                .insert(stream_id, StreamState::Playing { name });
        }
    }

    /// Refuses a play ([`NetStatus::PlayStreamNotFound`], …).
    pub fn reject_play(&mut self, stream_id: u32, status: NetStatus, description: &str) {
        if matches!(
            self.streams.get(&stream_id),
            Some(StreamState::PlayPending { .. })
        ) {
            self.streams.insert(stream_id, StreamState::Created);
            self.send_status(stream_id, status, description);
        }
    }

    /// Tells a player its publisher went away (it may come back).
    pub fn notify_unpublish(&mut self, stream_id: u32) {
        if let Some(StreamState::Playing { name }) = self.streams.get(&stream_id).cloned() {
            self.send_status(
                stream_id,
                NetStatus::PlayUnpublishNotify,
                &format!("{name} is now unpublished."),
            );
            self.send_user_control(UserControl::StreamEof(stream_id));
        }
    }

    /// Tells a player a publisher (re)started the stream.
    pub fn notify_publish(&mut self, stream_id: u32) {
        if let Some(StreamState::Playing { name }) = self.streams.get(&stream_id).cloned() {
            self.send_user_control(UserControl::StreamBegin(stream_id));
            self.send_status(
                stream_id,
                NetStatus::PlayPublishNotify,
                &format!("{name} is now published."),
            );
        }
    }

    /// Ends a play from the server side ([`NetStatus::PlayStop`]).
    pub fn end_play(&mut self, stream_id: u32, status: NetStatus, description: &str) {
        if matches!(
            self.streams.get(&stream_id),
            Some(StreamState::Playing { .. })
        ) {
            self.send_user_control(UserControl::StreamEof(stream_id));
            self.send_status(stream_id, status, description);
            self.streams.insert(stream_id, StreamState::Created);
        }
    }

    /// Answers a `seek` (see [`ServerEvent::Seek`]): media now start at
    /// `ms` (the keyframe at or before the target). StreamBegin,
    /// NetStream.Seek.Notify, then Play.Reset and Play.Start as FMS sends
    /// them.
    pub fn seek_done(&mut self, stream_id: u32, ms: i64) {
        if let Some(StreamState::Playing { name }) = self.streams.get(&stream_id).cloned() {
            self.send_user_control(UserControl::StreamBegin(stream_id));
            self.send_status(
                stream_id,
                NetStatus::SeekNotify,
                &format!("Seeking {ms} (stream ID: {stream_id})."),
            );
            self.send_play_start(stream_id, &name, true);
        }
    }

    /// `NetStream.Play.Reset` (if `reset`) then `NetStream.Play.Start`.
    fn send_play_start(&mut self, stream_id: u32, name: &str, reset: bool) {
        if reset {
            self.send_status(
                stream_id,
                NetStatus::PlayReset,
                &format!("Playing and resetting {name}."),
            );
        }
        self.send_status(
            stream_id,
            NetStatus::PlayStart,
            &format!("Started playing {name}."),
        );
    }

    /// Refuses a `seek` (a live stream): NetStream.Seek.Failed.
    pub fn seek_failed(&mut self, stream_id: u32, description: &str) {
        if self.is_playing(stream_id) {
            self.send_status(stream_id, NetStatus::SeekFailed, description);
        }
    }

    /// Answers a `pause` (see [`ServerEvent::Pause`]) at `ms`: paused,
    /// NetStream.Pause.Notify then StreamEOF; unpaused, StreamBegin then
    /// NetStream.Unpause.Notify.
    pub fn pause_done(&mut self, stream_id: u32, paused: bool, ms: i64) {
        if let Some(StreamState::Playing { name }) = self.streams.get(&stream_id).cloned() {
            if paused {
                self.send_status(
                    stream_id,
                    NetStatus::PauseNotify,
                    &format!("Pausing {name} at {ms}."),
                );
                self.send_user_control(UserControl::StreamEof(stream_id));
            } else {
                self.send_user_control(UserControl::StreamBegin(stream_id));
                self.send_status(
                    stream_id,
                    NetStatus::UnpauseNotify,
                    &format!("Unpausing {name} at {ms}."),
                );
            }
        }
    }

    /// Answers `getStreamLength` (see [`ServerEvent::StreamLengthRequested`])
    /// with a length in seconds (0 for a live stream).
    pub fn answer_stream_length(&mut self, stream_id: u32, transaction: f64, secs: f64) {
        self.send_command(
            stream_id,
            &[
                Amf0Value::string("_result"),
                Amf0Value::Number(transaction),
                Amf0Value::Null,
                Amf0Value::Number(secs),
            ],
        );
    }

    /// The end of a recorded stream: StreamEOF, `onPlayStatus`
    /// NetStream.Play.Complete (a data message at `ms`, the end's time,
    /// with the `duration` in seconds and the `bytes` sent) and
    /// NetStream.Play.Stop, as nginx-rtmp sends them. The stream stays
    /// playing: the client may seek back.
    pub fn complete_play(&mut self, stream_id: u32, ms: i64, bytes: u64) {
        if let Some(StreamState::Playing { name }) = self.streams.get(&stream_id).cloned() {
            self.send_user_control(UserControl::StreamEof(stream_id));
            let status = NetStatus::PlayComplete;
            self.send_data(
                stream_id,
                ms.clamp(0, i64::from(u32::MAX)) as u32,
                &[
                    Amf0Value::string("onPlayStatus"),
                    Amf0Value::object([
                        ("level", Amf0Value::string(status.level().as_str())),
                        ("code", Amf0Value::string(status.code())),
                        ("duration", Amf0Value::Number(ms as f64 / 1000.0)),
                        ("bytes", Amf0Value::Number(bytes as f64)),
                    ]),
                ],
            );
            self.send_status(
                stream_id,
                NetStatus::PlayStop,
                &format!("Stopped playing {name}."),
            );
        }
    }

    pub fn is_playing(&self, stream_id: u32) -> bool {
        matches!(
            self.streams.get(&stream_id),
            Some(StreamState::Playing { .. })
        )
    }

    /// Sends an audio or video message to a playing stream: the FLV tag
    /// header and the shared payload are chunked without being joined.
    pub fn send_media(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, parts: &[&[u8]]) {
        let (csid, type_id) = match kind {
            MediaKind::Audio => (CSID_AUDIO, msg::AUDIO),
            MediaKind::Video => (CSID_VIDEO, msg::VIDEO),
        };
        self.encoder
            .write(csid, type_id, stream_id, timestamp, parts, &mut self.output);
    }

    /// Sends a data message (e.g. onMetaData) to a playing stream.
    pub fn send_data(&mut self, stream_id: u32, timestamp: u32, values: &[Amf0Value]) {
        let payload = amf0::encode_all(values);
        self.encoder.write(
            CSID_DATA,
            msg::DATA_AMF0,
            stream_id,
            timestamp,
            &[&payload],
            &mut self.output,
        );
    }

    /// Sends a data message body already encoded (AMF0), in parts: the
    /// hub's metadata after its `onMetaData` name, say.
    pub fn send_data_raw(&mut self, stream_id: u32, timestamp: u32, parts: &[&[u8]]) {
        self.encoder.write(
            CSID_DATA,
            msg::DATA_AMF0,
            stream_id,
            timestamp,
            parts,
            &mut self.output,
        );
    }

    /// Sends a Ping Request (the driver's keep-alive).
    pub fn send_ping(&mut self, timestamp: u32) {
        self.send_user_control(UserControl::PingRequest(timestamp));
    }

    fn send_control(&mut self, type_id: u8, payload: &[u8]) {
        self.encoder
            .write(CSID_CONTROL, type_id, 0, 0, &[payload], &mut self.output);
    }

    fn send_user_control(&mut self, uc: UserControl) {
        self.send_control(msg::USER_CONTROL, &uc.encode());
    }

    fn send_command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        let payload = amf0::encode_all(values);
        self.encoder.write(
            CSID_COMMAND,
            msg::COMMAND_AMF0,
            stream_id,
            0,
            &[&payload],
            &mut self.output,
        );
    }

    fn send_result(&mut self, tid: f64, obj: Amf0Value, value: Amf0Value) {
        self.send_command(
            0,
            &[
                Amf0Value::string("_result"),
                Amf0Value::Number(tid),
                obj,
                value,
            ],
        );
    }

    /// Sends `onStatus` at the code's own level.
    fn send_status(&mut self, stream_id: u32, status: NetStatus, description: &str) {
        self.send_status_at(stream_id, status.level(), status, description);
    }

    fn send_status_at(
        &mut self,
        stream_id: u32,
        level: Level,
        status: NetStatus,
        description: &str,
    ) {
        let info = Amf0Value::object([
            ("level", Amf0Value::string(level.as_str())),
            ("code", Amf0Value::string(status.code())),
            ("description", Amf0Value::string(description)),
        ]);
        self.send_command(
            stream_id,
            &[
                Amf0Value::string("onStatus"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                info,
            ],
        );
    }
}

fn decode_amf(payload: &[u8], what: &'static str) -> Result<Vec<Amf0Value>, SessionError> {
    amf0::decode_all(payload).map_err(|source| SessionError::Amf { what, source })
}

/// Splits `name?query` (stream keys often carry tokens in a query string).
pub fn strip_query(name: &str) -> (String, String) {
    match name.split_once('?') {
        Some((n, q)) => (n.to_string(), q.to_string()),
        None => (name.to_string(), String::new()),
    }
}

/// Drives a server session with arbitrary client bytes, accepting every
/// publish and play so that the media paths are reached too. Shared by the
/// `chunk_session` fuzz target and the property tests; must never panic.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut session = ServerSession::new(SessionConfig {
        chunk_limits: ChunkLimits {
            max_message_size: 1 << 20,
            max_buffered: 2 << 20,
            ..ChunkLimits::default()
        },
        ..SessionConfig::default()
    });
    // Odd selectors start with a valid handshake so the fuzzer spends its
    // time in the chunk stream and commands.
    if selector & 1 == 1 {
        let mut client = super::handshake::ClientHandshake::new_simple();
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        if session.handle_input(&c0c1).is_err() {
            return;
        }
        let s = session.take_output();
        let mut c2 = Vec::new();
        if client.process(&s, &mut c2).is_err() || session.handle_input(&c2).is_err() {
            return;
        }
    }
    let piece = usize::from(selector >> 1).max(1);
    for part in rest.chunks(piece) {
        if session.handle_input(part).is_err() {
            return;
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                ServerEvent::PublishRequested { stream_id, .. } => {
                    session.accept_publish(stream_id)
                }
                ServerEvent::PlayRequested { stream_id, .. } => {
                    session.accept_play(stream_id);
                    session.send_media(
                        stream_id,
                        MediaKind::Video,
                        0,
                        &[&[0x17, 1, 0, 0, 0], part],
                    );
                }
                ServerEvent::Seek { stream_id, ms } => session.seek_done(stream_id, ms as i64),
                ServerEvent::Pause {
                    stream_id, pause, ..
                } => {
                    session.pause_done(stream_id, pause, 0);
                    session.complete_play(stream_id, 1000, 1);
                }
                ServerEvent::StreamLengthRequested {
                    stream_id,
                    transaction,
                    ..
                } => session.answer_stream_length(stream_id, transaction, 1.5),
                _ => {}
            }
        }
        let _ = session.take_output();
    }
}

#[cfg(test)]
mod tests;
