//! The RTMP client session: a sans-I/O state machine that publishes or
//! plays one stream.
//!
//! The load generator drives it for thousands of publishers at once, and
//! relays push with it. Like [`super::session::ServerSession`], it never
//! touches a socket: call [`ClientSession::start`], write out
//! [`ClientSession::take_output`], feed the server's bytes to
//! [`ClientSession::handle_input`] and act on [`ClientSession::poll_event`].
//!
//! The command sequence is the one ffmpeg and OBS send, which every server
//! (nginx-rtmp, SRS, Wowza, YouTube, Twitch, castgate) accepts:
//! `connect` → (`releaseStream`, `FCPublish`) → `createStream` →
//! `publish`/`play`, then media on the created stream.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Value};
use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits};
use super::handshake::{ClientHandshake, HandshakeStatus};
use super::message::{self as msg, Message, UserControl};
use super::rtmpe::CipherLayer;
use super::session::SessionError;
use super::status::{Level, NetStatus};
use crate::media::MediaKind;

const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_DATA: u32 = 5;
const CSID_VIDEO: u32 = 6;

/// Transaction ids of the commands the client sends.
const TID_CONNECT: f64 = 1.0;
const TID_CREATE_STREAM: f64 = 4.0;
const TID_RELEASE_STREAM: f64 = 2.0;
const TID_FC_PUBLISH: f64 = 3.0;

/// Whether the session publishes or plays its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    Publish,
    Play,
}

/// What to connect to and how.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Application, as in `rtmp://host/APP/name` (may carry a `?query`).
    pub app: String,
    /// Stream name (may carry a `?query`, e.g. a token).
    pub stream: String,
    /// The URL the server is told it was reached at.
    pub tc_url: String,
    pub mode: ClientMode,
    /// Chunk size we send with (announced before `connect`).
    pub out_chunk_size: u32,
    pub chunk_limits: ChunkLimits,
    pub flash_ver: String,
    /// Enhanced RTMP FourCCs announced in `connect` (`fourCcList`, as
    /// FFmpeg sends it); empty: a legacy client.
    pub fourcc_list: Vec<String>,
    /// Speak RTMPE: the DH handshake, then RC4 both ways.
    pub rtmpe: bool,
    /// The buffer a player announces (SetBufferLength), in ms.
    pub buffer_ms: u32,
}

impl ClientConfig {
    /// Builds a config from `rtmp://host[:port]/app[/more]/stream`: the first
    /// path segment is the app and the rest the stream name, as ffmpeg and
    /// OBS split it. Returns the `host:port` too (port 1935 if absent).
    pub fn from_url(url: &str, mode: ClientMode) -> Result<(String, ClientConfig), String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("not a URL: {url}"))?;
        let default_port = match scheme {
            "rtmp" | "rtmpe" | "rtmfp" => 1935,
            "rtmps" => 443,
            _ => return Err(format!("unsupported scheme {scheme}:// in {url}")),
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("no app in {url}"))?;
        let (app, stream) = path
            .split_once('/')
            .ok_or_else(|| format!("no stream name in {url}"))?;
        if authority.is_empty() || app.is_empty() || stream.is_empty() {
            return Err(format!("expected rtmp://host/app/stream, got {url}"));
        }
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        let config = ClientConfig {
            app: app.to_string(),
            stream: stream.to_string(),
            tc_url: format!("{scheme}://{authority}/{app}"),
            mode,
            rtmpe: scheme == "rtmpe",
            ..ClientConfig::default()
        };
        Ok((addr, config))
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            app: String::new(),
            stream: String::new(),
            tc_url: String::new(),
            mode: ClientMode::Publish,
            out_chunk_size: 4096,
            chunk_limits: ChunkLimits::default(),
            flash_ver: "FMLE/3.0 (compatible; castgate)".into(),
            fourcc_list: Vec::new(),
            rtmpe: false,
            buffer_ms: 3000,
        }
    }
}

/// What the session tells its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// NetStream.Publish.Start: media may be sent now.
    Publishing { stream_id: u32 },
    /// NetStream.Play.Start: media events follow.
    Playing { stream_id: u32 },
    /// The server refused or ended something (an `error`-level status or a
    /// `_error` reply). Terminal for this session.
    Failed { code: String, description: String },
    /// Any other NetStream/NetConnection status (e.g. Play.Reset,
    /// Unpublish.Success), for logs.
    Status { code: String, description: String },
    /// Audio or video received while playing (FLV tag body).
    Media {
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// A data message received while playing (e.g. onMetaData).
    Data {
        timestamp: u32,
        values: Vec<Amf0Value>,
    },
    /// The `_result` of a command sent with [`ClientSession::call`] or
    /// [`ClientSession::send_stream_command`] (transaction ids from
    /// [`FIRST_CALLER_TID`] up).
    Result { transaction: f64, value: Amf0Value },
}

/// Transaction ids below this are the session's own.
pub const FIRST_CALLER_TID: f64 = 10.0;

#[derive(Debug)]
enum Phase {
    Handshake(Box<ClientHandshake>),
    Connecting,
    CreatingStream,
    Starting { stream_id: u32 },
    Active { stream_id: u32 },
    Failed,
}

/// One RTMP client connection.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<ClientEvent>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    control: msg::Control,
    /// What the server stated of Enhanced RTMP in its `connect` `_result`.
    server: super::enhanced::Capabilities,
    /// RTMPE's RC4 layer (off for plain RTMP).
    cipher: CipherLayer,
}

impl ClientSession {
    pub fn new(config: ClientConfig) -> Self {
        let decoder = ChunkDecoder::new(config.chunk_limits);
        let handshake = match config.rtmpe {
            true => ClientHandshake::new_rtmpe(),
            false => ClientHandshake::new(),
        };
        ClientSession {
            config,
            phase: Phase::Handshake(Box::new(handshake)),
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            decoder,
            encoder: ChunkEncoder::new(),
            control: msg::Control::default(),
            server: Default::default(),
            cipher: CipherLayer::default(),
        }
    }

    /// What the server stated of Enhanced RTMP when it accepted `connect`
    /// (empty for a legacy server, or before).
    pub fn server_capabilities(&self) -> &super::enhanced::Capabilities {
        &self.server
    }

    /// Queues C0+C1; call once before the first `take_output`.
    pub fn start(&mut self) {
        if let Phase::Handshake(hs) = &mut self.phase {
            let mut out = Vec::new();
            hs.start(&mut out);
            self.output.extend_from_slice(&out);
        }
    }

    /// Bytes to send to the server, emptied by the call (and encrypted,
    /// over RTMPE).
    pub fn take_output(&mut self) -> BytesMut {
        self.cipher.sending(&mut self.output);
        self.output.split()
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Bytes queued for the server (before encryption).
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The message stream id once publishing or playing.
    pub fn stream_id(&self) -> Option<u32> {
        match self.phase {
            Phase::Active { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    /// Processes bytes from the server.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.control.received(data.len());
        let start = self.input.len();
        self.input.extend_from_slice(data);
        self.cipher.received(&mut self.input[start..]);
        if let Phase::Handshake(hs) = &mut self.phase {
            let mut out = Vec::new();
            let (consumed, status) = hs.process(&self.input, &mut out)?;
            let _ = self.input.split_to(consumed);
            self.output.extend_from_slice(&out);
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            if let Some(ciphers) = hs.take_ciphers() {
                self.cipher
                    .start(ciphers, &mut self.input, self.output.len());
            }
            self.send_connect();
        }
        loop {
            let before = self.input.len();
            match self.decoder.decode(&mut self.input)? {
                Some(m) => self.handle_message(m)?,
                None if self.input.len() == before => break,
                None => {}
            }
        }
        self.maybe_ack();
        Ok(())
    }

    /// Sends one audio or video message (an FLV tag body). Ignored unless
    /// publishing.
    pub fn send_media(&mut self, kind: MediaKind, timestamp: u32, parts: &[&[u8]]) {
        let Phase::Active { stream_id } = self.phase else {
            return;
        };
        if self.config.mode != ClientMode::Publish {
            return;
        }
        let (csid, type_id) = match kind {
            MediaKind::Audio => (CSID_AUDIO, msg::AUDIO),
            MediaKind::Video => (CSID_VIDEO, msg::VIDEO),
        };
        self.encoder
            .write(csid, type_id, stream_id, timestamp, parts, &mut self.output);
    }

    /// Sends `@setDataFrame onMetaData {…}` as encoders do. Ignored unless
    /// publishing.
    pub fn send_metadata(&mut self, metadata: Amf0Value) {
        let Phase::Active { stream_id } = self.phase else {
            return;
        };
        if self.config.mode != ClientMode::Publish {
            return;
        }
        let payload = amf0::encode_all(&[
            Amf0Value::string("@setDataFrame"),
            Amf0Value::string("onMetaData"),
            metadata,
        ]);
        self.encoder.write(
            CSID_DATA,
            msg::DATA_AMF0,
            stream_id,
            0,
            &[&payload],
            &mut self.output,
        );
    }

    /// Sends a raw data message body (AMF0) as-is, e.g. a script tag read
    /// from an FLV file. Ignored unless publishing.
    pub fn send_data_raw(&mut self, timestamp: u32, payload: &[u8]) {
        let Phase::Active { stream_id } = self.phase else {
            return;
        };
        if self.config.mode == ClientMode::Publish {
            self.encoder.write(
                CSID_DATA,
                msg::DATA_AMF0,
                stream_id,
                timestamp,
                &[payload],
                &mut self.output,
            );
        }
    }

    /// Sends a command on the stream being played or published: `[name,
    /// transaction, null, args…]` (`seek`, `pause`). Ignored unless
    /// active.
    pub fn send_stream_command(&mut self, name: &str, transaction: f64, args: &[Amf0Value]) {
        let Phase::Active { stream_id } = self.phase else {
            return;
        };
        let mut values = vec![Amf0Value::string(name), tid(transaction), Amf0Value::Null];
        values.extend_from_slice(args);
        self.send_command(stream_id, &values);
    }

    /// Calls a command on the connection (message stream 0), e.g.
    /// `getStreamLength`; its `_result` comes back as
    /// [`ClientEvent::Result`] when `transaction` ≥ [`FIRST_CALLER_TID`].
    pub fn call(&mut self, name: &str, transaction: f64, args: &[Amf0Value]) {
        let mut values = vec![Amf0Value::string(name), tid(transaction), Amf0Value::Null];
        values.extend_from_slice(args);
        self.send_command(0, &values);
    }

    /// Announces a new buffer length for the stream being played.
    pub fn set_buffer_length(&mut self, millis: u32) {
        if let Phase::Active { stream_id } = self.phase {
            self.send_user_control(UserControl::SetBufferLength { stream_id, millis });
        }
    }

    /// Ends the publish or play politely (FCUnpublish / deleteStream), as
    /// ffmpeg does before closing.
    pub fn stop(&mut self) {
        let Phase::Active { stream_id } = self.phase else {
            return;
        };
        if self.config.mode == ClientMode::Publish {
            let name = Amf0Value::string(self.config.stream.clone());
            self.send_command(
                0,
                &[
                    Amf0Value::string("FCUnpublish"),
                    tid(5.0),
                    Amf0Value::Null,
                    name,
                ],
            );
        }
        self.send_command(
            0,
            &[
                Amf0Value::string("deleteStream"),
                tid(6.0),
                Amf0Value::Null,
                Amf0Value::Number(f64::from(stream_id)),
            ],
        );
        self.phase = Phase::Failed;
    }

    fn send_connect(&mut self) {
        // Announce our chunk size first: media then goes out in few chunks.
        self.send_control(
            msg::SET_CHUNK_SIZE,
            &self.config.out_chunk_size.to_be_bytes(),
        );
        self.encoder
            .set_chunk_size(self.config.out_chunk_size as usize);
        let mut props = vec![
            ("app", Amf0Value::string(self.config.app.clone())),
            ("type", Amf0Value::string("nonprivate")),
            ("flashVer", Amf0Value::string(self.config.flash_ver.clone())),
            ("tcUrl", Amf0Value::string(self.config.tc_url.clone())),
        ];
        if self.config.mode == ClientMode::Play {
            props.push(("fpad", Amf0Value::Boolean(false)));
            props.push(("capabilities", Amf0Value::Number(15.0)));
            props.push(("audioCodecs", Amf0Value::Number(4071.0)));
            props.push(("videoCodecs", Amf0Value::Number(252.0)));
            props.push(("videoFunction", Amf0Value::Number(1.0)));
        }
        if !self.config.fourcc_list.is_empty() {
            let list = self.config.fourcc_list.iter().map(Amf0Value::string);
            props.push(("fourCcList", Amf0Value::StrictArray(list.collect())));
        }
        self.send_command(
            0,
            &[
                Amf0Value::string("connect"),
                tid(TID_CONNECT),
                Amf0Value::object(props),
            ],
        );
        self.phase = Phase::Connecting;
    }

    fn on_connected(&mut self) {
        self.events.push_back(ClientEvent::Connected);
        if self.config.mode == ClientMode::Publish {
            let name = Amf0Value::string(self.config.stream.clone());
            self.send_command(
                0,
                &[
                    Amf0Value::string("releaseStream"),
                    tid(TID_RELEASE_STREAM),
                    Amf0Value::Null,
                    name.clone(),
                ],
            );
            self.send_command(
                0,
                &[
                    Amf0Value::string("FCPublish"),
                    tid(TID_FC_PUBLISH),
                    Amf0Value::Null,
                    name,
                ],
            );
        } else {
            // A 3 s client buffer by default, as ffmpeg announces.
            self.send_user_control(UserControl::SetBufferLength {
                stream_id: 0,
                millis: self.config.buffer_ms,
            });
        }
        self.send_command(
            0,
            &[
                Amf0Value::string("createStream"),
                tid(TID_CREATE_STREAM),
                Amf0Value::Null,
            ],
        );
        self.phase = Phase::CreatingStream;
    }

    fn on_stream_created(&mut self, stream_id: u32) {
        let name = Amf0Value::string(self.config.stream.clone());
        match self.config.mode {
            ClientMode::Publish => self.send_command(
                stream_id,
                &[
                    Amf0Value::string("publish"),
                    tid(0.0),
                    Amf0Value::Null,
                    name,
                    Amf0Value::string("live"),
                ],
            ),
            ClientMode::Play => {
                self.send_command(
                    stream_id,
                    &[
                        Amf0Value::string("play"),
                        tid(0.0),
                        Amf0Value::Null,
                        name,
                        Amf0Value::Number(-2000.0),
                    ],
                );
                self.send_user_control(UserControl::SetBufferLength {
                    stream_id,
                    millis: self.config.buffer_ms,
                });
            }
        }
        self.phase = Phase::Starting { stream_id };
    }

    fn maybe_ack(&mut self) {
        if let Some(seq) = self.control.ack_due() {
            self.send_control(msg::ACKNOWLEDGEMENT, &seq.to_be_bytes());
        }
    }

    fn handle_message(&mut self, m: Message) -> Result<(), SessionError> {
        match self.control.handle(&m, &mut self.decoder)? {
            msg::ControlOutcome::NotControl => {}
            msg::ControlOutcome::Done | msg::ControlOutcome::Event(_) => return Ok(()),
            msg::ControlOutcome::Answer(uc) => {
                self.send_user_control(uc);
                return Ok(());
            }
        }
        match m.type_id {
            msg::AUDIO | msg::VIDEO if self.is_playing() => {
                let kind = if m.type_id == msg::AUDIO {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                self.events.push_back(ClientEvent::Media {
                    kind,
                    timestamp: m.timestamp,
                    payload: m.payload,
                });
            }
            msg::AGGREGATE if self.is_playing() => {
                for sub in msg::split_aggregate(&m)? {
                    let kind = match sub.type_id {
                        msg::AUDIO => MediaKind::Audio,
                        msg::VIDEO => MediaKind::Video,
                        _ => continue,
                    };
                    self.events.push_back(ClientEvent::Media {
                        kind,
                        timestamp: sub.timestamp,
                        payload: sub.payload,
                    });
                }
            }
            msg::DATA_AMF0 if self.is_playing() => {
                let values = decode_amf(&m.payload, "data message")?;
                self.events.push_back(ClientEvent::Data {
                    timestamp: m.timestamp,
                    values,
                });
            }
            msg::COMMAND_AMF0 => {
                let values = decode_amf(&m.payload, "command")?;
                self.handle_command(values)?;
            }
            msg::COMMAND_AMF3 => {
                let values = decode_amf(m.payload.get(1..).unwrap_or(&[]), "AMF3 command")?;
                self.handle_command(values)?;
            }
            // Acks, bandwidth, shared objects: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn is_playing(&self) -> bool {
        self.config.mode == ClientMode::Play
            && matches!(self.phase, Phase::Active { .. } | Phase::Starting { .. })
    }

    fn handle_command(&mut self, values: Vec<Amf0Value>) -> Result<(), SessionError> {
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
        let obj = it.next();
        let info = it.next();
        let field = |k: &str| {
            info.as_ref()
                .and_then(|i| i.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        match name.as_str() {
            "_result" if tid == TID_CONNECT && matches!(self.phase, Phase::Connecting) => {
                if let Some(props) = &obj {
                    self.server = super::enhanced::Capabilities::from_connect(props);
                }
                self.on_connected()
            }
            "_result"
                if tid == TID_CREATE_STREAM && matches!(self.phase, Phase::CreatingStream) =>
            {
                let id = info.as_ref().and_then(|v| v.as_f64()).unwrap_or(-1.0);
                if !(1.0..=f64::from(u32::MAX)).contains(&id) || id.fract() != 0.0 {
                    return Err(SessionError::Protocol(format!(
                        "createStream answered with a bad stream id {id}"
                    )));
                }
                self.on_stream_created(id as u32);
            }
            "_result" if tid >= FIRST_CALLER_TID => {
                self.events.push_back(ClientEvent::Result {
                    transaction: tid,
                    value: info.clone().unwrap_or(Amf0Value::Null),
                });
            }
            // releaseStream and FCPublish are FMS's: a server without them
            // (MonaServer) answers `_error`, which refuses nothing.
            "_error" if tid == TID_RELEASE_STREAM || tid == TID_FC_PUBLISH => {}
            "_error" => {
                let (code, description) = (field("code"), field("description"));
                self.fail(code, description);
            }
            "onStatus" => {
                let (level, code, description) =
                    (field("level"), field("code"), field("description"));
                self.on_status(&level, code, description);
            }
            // onBWDone, _checkbw, onFCPublish, close…: nothing to answer.
            _ => {}
        }
        Ok(())
    }

    fn on_status(&mut self, level: &str, code: String, description: String) {
        let starting = match self.phase {
            Phase::Starting { stream_id } => Some(stream_id),
            _ => None,
        };
        match (NetStatus::parse(&code), starting) {
            (Some(NetStatus::PublishStart), Some(stream_id))
                if self.config.mode == ClientMode::Publish =>
            {
                self.phase = Phase::Active { stream_id };
                self.events.push_back(ClientEvent::Publishing { stream_id });
            }
            (Some(NetStatus::PlayStart), Some(stream_id))
                if self.config.mode == ClientMode::Play =>
            {
                self.phase = Phase::Active { stream_id };
                self.events.push_back(ClientEvent::Playing { stream_id });
            }
            _ if Level::parse(level) == Some(Level::Error) => self.fail(code, description),
            // The server ended the play (castgate's play wait ran out).
            (Some(NetStatus::PlayStop), _) if matches!(self.phase, Phase::Active { .. }) => {
                self.fail(code, description)
            }
            _ => self
                .events
                .push_back(ClientEvent::Status { code, description }),
        }
    }

    fn fail(&mut self, code: String, description: String) {
        if !matches!(self.phase, Phase::Failed) {
            self.phase = Phase::Failed;
            self.events
                .push_back(ClientEvent::Failed { code, description });
        }
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
}

fn tid(n: f64) -> Amf0Value {
    Amf0Value::Number(n)
}

fn decode_amf(payload: &[u8], what: &'static str) -> Result<Vec<Amf0Value>, SessionError> {
    amf0::decode_all(payload).map_err(|source| SessionError::Amf { what, source })
}

/// Server bytes from a hostile peer into a client session (a relay's
/// destination is as untrusted as a publisher): the fuzz target's driver,
/// also run by a property test. The first byte selects publish or play,
/// how far a real server session takes the client first (nowhere, past the
/// handshake, or to publishing), and the piece size. Returns whether the
/// real server got the client publishing or playing before the bytes came.
#[doc(hidden)]
pub fn exercise(data: &[u8]) -> bool {
    use super::session::{ServerEvent, ServerSession, SessionConfig};
    let Some((&selector, rest)) = data.split_first() else {
        return false;
    };
    let mode = if selector & 1 == 0 {
        ClientMode::Publish
    } else {
        ClientMode::Play
    };
    let mut client = ClientSession::new(ClientConfig {
        app: "live".into(),
        stream: "key?x=1".into(),
        tc_url: "rtmp://h/live".into(),
        mode,
        chunk_limits: ChunkLimits {
            max_message_size: 1 << 20,
            max_buffered: 2 << 20,
            ..ChunkLimits::default()
        },
        ..ClientConfig::default()
    });
    client.start();
    let rounds = (selector >> 1) & 3;
    if rounds > 0 {
        let mut server = ServerSession::new(SessionConfig::default());
        for _ in 0..rounds * 4 {
            let c = client.take_output();
            if server.handle_input(&c).is_err() {
                return false;
            }
            while let Some(ev) = server.poll_event() {
                match ev {
                    ServerEvent::PublishRequested { stream_id, .. } => {
                        server.accept_publish(stream_id)
                    }
                    ServerEvent::PlayRequested { stream_id, .. } => server.accept_play(stream_id),
                    _ => {}
                }
            }
            if client.handle_input(&server.take_output()).is_err() {
                return false;
            }
        }
    }
    let active = client.stream_id().is_some();
    let piece = usize::from(selector >> 3).max(1);
    for part in rest.chunks(piece) {
        if client.handle_input(part).is_err() {
            return active;
        }
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Publishing { .. } = ev {
                client.send_metadata(Amf0Value::Null);
                client.send_media(MediaKind::Video, 0, &[&[0x17, 1, 0, 0, 0], part]);
            }
        }
        let _ = client.take_output();
    }
    client.stop();
    let _ = client.take_output();
    active
}

#[cfg(test)]
pub(crate) mod tests;
