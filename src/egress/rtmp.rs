//! RTMP and RTMPS push: the sans-I/O [`ClientSession`] over TCP or TLS,
//! and hub events turned into the FLV tag bodies it sends.
//!
//! A reader task forwards the server's bytes (acknowledgement windows,
//! pings, chunk size changes, status messages) so that the relay's loop can
//! wait for them and for its own clock at once; the session answers them.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::target::RtmpTarget;
use super::ConnectError;
use crate::hub::StreamEvent;
use crate::media::flv::ex::FourCc;
use crate::media::flv::{CodecSet, TagKind, TagWriter};
use crate::media::{CodecConfig, MediaKind, Metadata, TrackId};
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::chunk::ChunkLimits;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientSession};
use crate::rtmp::enhanced::CAPS_MULTITRACK;

/// A byte stream to a destination (TCP or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Largest message accepted from a destination: servers only send commands
/// and control messages to a publisher.
const MAX_SERVER_MESSAGE: usize = 1024 * 1024;

/// A publishing connection to one destination.
pub struct RtmpLink {
    session: ClientSession,
    writer: WriteHalf<Box<dyn Io>>,
    input: mpsc::Receiver<io::Result<Bytes>>,
    reader: JoinHandle<()>,
    out: FlvOut,
}

impl Drop for RtmpLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// How long an `rtmfp://` relay waits for its session to open.
const RTMFP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A relay delivers every frame over RTMFP, as over TCP: retransmitted
/// until acknowledged, never abandoned.
const RTMFP_MEDIA_LIFETIME: Option<std::time::Duration> = None;

/// A TCP connection to the first of `addrs` that answers, with TLS for
/// an `rtmps://` target, or an RTMFP session for `rtmfp://` (shared with
/// pulled sources).
pub async fn dial(
    t: &RtmpTarget,
    addrs: &[std::net::SocketAddr],
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, ConnectError> {
    if t.rtmfp {
        // UDP: the first address (the egress policy checked them all).
        let addr = *addrs
            .first()
            .ok_or_else(|| ConnectError::permanent("no address to connect to".into()))?;
        let url = format!("rtmfp://{}/{}", t.authority, t.app);
        let io = crate::transport::rtmfp::connect(
            addr,
            &url,
            RTMFP_MEDIA_LIFETIME,
            RTMFP_CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| {
            format!(
                "cannot open an RTMFP session with {}:{}: {e}",
                t.host, t.port
            )
        })?;
        return Ok(Box::new(io));
    }
    let tcp = TcpStream::connect(addrs)
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", t.host, t.port))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match (t.tls, tls) {
        (true, Some(config)) => {
            let name = crate::transport::tls_client::server_name(&t.host)
                .map_err(ConnectError::permanent)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", t.host))?;
            Box::new(tls)
        }
        (true, None) => {
            return Err(ConnectError::permanent(
                "rtmps without a TLS configuration".into(),
            ))
        }
        (false, _) => Box::new(tcp),
    };
    Ok(io)
}

/// Connects, shakes hands and publishes. The error says which step failed
/// (and never holds the stream key: callers scrub it anyway).
/// `addrs`: the target's addresses, resolved and checked by the egress
/// policy; only these are connected to (tried in order).
///
/// Enhanced RTMP: `connect` announces `announce` as its `fourCcList` (the
/// stream's codecs; empty: a legacy client), and every codec castgate
/// carries is sent, HEVC, AV1, VP9, Opus, FLAC, AC-3 and E-AC-3 in
/// Enhanced RTMP tags; `legacy_only` sends H.264, AAC and MP3 only (for a
/// destination that reads legacy FLV alone) and announces nothing.
pub async fn connect(
    t: &RtmpTarget,
    addrs: &[std::net::SocketAddr],
    tls: Option<Arc<rustls::ClientConfig>>,
    announce: CodecSet,
    legacy_only: bool,
) -> Result<RtmpLink, ConnectError> {
    let io = dial(t, addrs, tls).await?;
    let (mut read, writer) = tokio::io::split(io);
    let (tx, input) = mpsc::channel(4);
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = BytesMut::with_capacity(16 * 1024);
            let r = match read.read_buf(&mut buf).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the destination closed the connection",
                )),
                Ok(_) => Ok(buf.freeze()),
                Err(e) => Err(e),
            };
            let end = r.is_err();
            if tx.send(r).await.is_err() || end {
                return;
            }
        }
    });
    let config = ClientConfig {
        rtmpe: t.rtmpe,
        app: t.app.clone(),
        stream: t.key.clone(),
        tc_url: format!("{}://{}/{}", t.scheme(), t.authority, t.app),
        mode: ClientMode::Publish,
        chunk_limits: ChunkLimits {
            max_message_size: MAX_SERVER_MESSAGE,
            max_buffered: 2 * MAX_SERVER_MESSAGE,
            ..ChunkLimits::default()
        },
        fourcc_list: match legacy_only {
            true => Vec::new(),
            false => fourcc_list(announce),
        },
        ..ClientConfig::default()
    };
    let mut link = RtmpLink {
        session: ClientSession::new(config),
        writer,
        input,
        reader,
        out: FlvOut::new(legacy_only),
    };
    link.session.start();
    loop {
        link.flush()
            .await
            .map_err(|e| format!("write during the handshake: {e}"))?;
        let data = match link.input.recv().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(format!("during the handshake and publish: {e}").into()),
            None => return Err(String::from("the destination closed the connection").into()),
        };
        link.session
            .handle_input(&data)
            .map_err(|e| format!("RTMP error from the destination: {e}"))?;
        while let Some(ev) = link.session.poll_event() {
            match ev {
                ClientEvent::Publishing { .. } => {
                    link.check_destination(announce, legacy_only);
                    link.flush()
                        .await
                        .map_err(|e| format!("write after publish: {e}"))?;
                    return Ok(link);
                }
                ClientEvent::Failed { code, description } => {
                    return Err(ConnectError::refused(format!(
                        "the destination refused: {code} {description}"
                    )))
                }
                other => debug!("destination: {other:?}"),
            }
        }
    }
}

impl RtmpLink {
    /// Says when a destination that states its Enhanced RTMP codecs leaves
    /// out one of the stream's (it is sent anyway: a server that forwards
    /// may well take it; the destination decides).
    ///
    /// A destination whose `_result` states the multitrack capability
    /// (`capsEx`) gets the stream's other tracks too.
    fn check_destination(&mut self, stream: CodecSet, legacy_only: bool) {
        let server = self.session.server_capabilities();
        if legacy_only || !server.enhanced {
            return;
        }
        if server.caps_ex & CAPS_MULTITRACK != 0 {
            self.out.tags = std::mem::take(&mut self.out.tags).with_tracks();
            info!("the destination takes Enhanced RTMP multitrack: every track is relayed");
        }
        let takes = server.codecs();
        for codec in stream.iter().filter(|c| !takes.contains(*c)) {
            tracing::warn!(
                codec = codec.name(),
                "the destination's Enhanced RTMP codecs do not include {codec} ({}); sent anyway",
                FourCc::of(codec)
            );
        }
    }

    /// Encodes one hub event; true when it was a frame that will be sent.
    pub fn push(&mut self, ev: &StreamEvent) -> bool {
        self.out.push(&mut self.session, ev)
    }

    /// Writes everything pending; returns the bytes written.
    pub async fn flush(&mut self) -> io::Result<usize> {
        if !self.session.has_output() {
            return Ok(0);
        }
        let out = self.session.take_output();
        self.writer.write_all(&out).await?;
        Ok(out.len())
    }

    /// The next bytes from the destination (`None`: the connection ended).
    pub async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        self.input.recv().await
    }

    /// Handles bytes from the destination: acknowledgements and pings are
    /// answered; an error or a status ending the publish is returned.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), String> {
        self.session
            .handle_input(data)
            .map_err(|e| format!("RTMP error from the destination: {e}"))?;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                ClientEvent::Failed { code, description } => {
                    return Err(format!(
                        "the destination ended the publish: {code} {description}"
                    ))
                }
                other => debug!("destination: {other:?}"),
            }
        }
        Ok(())
    }

    /// Ends the publish politely (FCUnpublish, deleteStream), sends FIN, and
    /// reads until the destination closes too. Closing a socket while the
    /// destination still sends (acknowledgements for the tail we just wrote)
    /// makes the kernel answer with a reset, and the destination may lose
    /// the tail it had not read yet. Bounded in time: a destination that
    /// does not read or never closes is just dropped.
    pub async fn close(mut self) {
        self.session.stop();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = self.flush().await;
            let _ = self.writer.shutdown().await;
            while let Some(Ok(_)) = self.input.recv().await {}
        })
        .await;
    }
}

/// The `fourCcList` a relay announces: the FourCCs of `codecs`.
fn fourcc_list(codecs: CodecSet) -> Vec<String> {
    codecs
        .iter()
        .filter_map(|c| FourCc::of(c).as_str().map(str::to_string))
        .collect()
}

/// Hub events -> RTMP media and data messages, for a publishing session.
/// The tags are [`TagWriter`]'s; the relay's queue replays the latest
/// metadata and configurations after it trims, so repeats are skipped here.
#[derive(Default)]
struct FlvOut {
    tags: TagWriter,
    metadata: Option<Metadata>,
    video_config: Option<Arc<CodecConfig>>,
    audio_config: Option<Arc<CodecConfig>>,
    /// Multitrack tracks' configurations sent, by kind and id.
    track_configs: Vec<(TrackId, Arc<CodecConfig>)>,
}

impl FlvOut {
    fn new(legacy_only: bool) -> FlvOut {
        let codecs = match legacy_only {
            true => CodecSet::LEGACY,
            false => CodecSet::ALL,
        };
        FlvOut {
            tags: TagWriter::new().accepting(codecs),
            ..FlvOut::default()
        }
    }

    /// True when `ev` was a frame that will be sent.
    fn push(&mut self, session: &mut ClientSession, ev: &StreamEvent) -> bool {
        if self.repeats(ev) {
            return false;
        }
        let mut sent = false;
        for tag in self.tags.write(ev) {
            sent = true;
            match tag.kind {
                TagKind::Media(kind) => session.send_media(kind, tag.timestamp, &tag.parts()),
                TagKind::Script => {
                    // A publisher sets the metadata with `@setDataFrame`.
                    let mut body = Vec::with_capacity(16 + tag.body_len());
                    amf0::encode(&Amf0Value::string("@setDataFrame"), &mut body);
                    body.extend_from_slice(tag.head());
                    body.extend_from_slice(&tag.payload);
                    session.send_data_raw(tag.timestamp, &body);
                }
            }
        }
        while let Some(codec) = self.tags.take_withheld() {
            info!(
                codec = codec.name(),
                "{codec} track not relayed: this relay is legacy_only"
            );
        }
        if !sent {
            return false;
        }
        matches!(ev, StreamEvent::Frame(_))
    }

    /// Whether `ev` is the metadata or configuration already sent (a
    /// returning publisher usually sends the same); remembers it if not.
    fn repeats(&mut self, ev: &StreamEvent) -> bool {
        match ev {
            StreamEvent::Metadata(m) => {
                if self.metadata.as_ref() == Some(m) {
                    return true;
                }
                self.metadata = Some(m.clone());
            }
            StreamEvent::Config(c) => {
                let slot = match c.kind() {
                    MediaKind::Video => &mut self.video_config,
                    MediaKind::Audio => &mut self.audio_config,
                };
                if slot.as_ref() == Some(c) {
                    return true;
                }
                *slot = Some(c.clone());
            }
            StreamEvent::TrackConfig(id, c) => {
                let same =
                    |t: &&mut (TrackId, Arc<CodecConfig>)| t.0 == *id && t.1.kind() == c.kind();
                match self.track_configs.iter_mut().find(same) {
                    Some(t) if t.1 == *c => return true,
                    Some(t) => t.1 = c.clone(),
                    None => self.track_configs.push((*id, c.clone())),
                }
            }
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::samples::{self, ReadBack};
    use crate::media::Codec;
    use crate::rtmp::client::tests::pump;
    use crate::rtmp::session::{ServerEvent, ServerSession, SessionConfig};

    /// A destination reads back what the relay sends as the same events:
    /// metadata set with `@setDataFrame`, configurations, frames. Repeated
    /// metadata and configurations (the queue's replays) go out once.
    #[test]
    fn a_destination_reads_back_what_the_relay_sends() {
        let (_, config) =
            ClientConfig::from_url("rtmp://127.0.0.1/live/relay", ClientMode::Publish).unwrap();
        let mut session = ClientSession::new(config);
        let mut server = ServerSession::new(SessionConfig::default());
        session.start();
        pump(&mut session, &mut server, 4096);

        let input = samples::events();
        let mut out = FlvOut::default();
        let mut frames = 0;
        for e in input.iter().chain(&input[..3]) {
            frames += u32::from(out.push(&mut session, e));
        }
        assert_eq!(frames, 3);
        let mut back = ReadBack::default();
        for ev in pump(&mut session, &mut server, 4096) {
            match ev {
                ServerEvent::Metadata { metadata, .. } => {
                    back.metadata(amf0::encode_all(&[metadata]).into())
                }
                ServerEvent::Media {
                    kind,
                    timestamp,
                    payload,
                    ..
                } => back.media(kind, timestamp, payload),
                _ => {}
            }
        }
        assert_eq!(back.events, input);
    }

    /// The hub's events for FFmpeg 9's HEVC + Opus tags.
    fn hevc_opus() -> Vec<StreamEvent> {
        let file = Bytes::from_static(include_bytes!("../media/flv/testdata/hevc_opus.flv"));
        let mut back = ReadBack::default();
        for tag in crate::media::flv_file::read_tags(&file).unwrap() {
            let kind = match tag.tag_type {
                8 => MediaKind::Audio,
                9 => MediaKind::Video,
                _ => continue,
            };
            back.media(kind, tag.timestamp, tag.body);
        }
        back.events
    }

    /// What a destination reads of a relay announcing `announce`, sending
    /// every codec or legacy ones only: what it was announced, and the
    /// events its media make.
    fn relay_to_server(
        announce: CodecSet,
        legacy_only: bool,
        events: &[StreamEvent],
    ) -> (CodecSet, bool, Vec<StreamEvent>) {
        let (_, mut config) =
            ClientConfig::from_url("rtmp://127.0.0.1/live/relay", ClientMode::Publish).unwrap();
        if !legacy_only {
            config.fourcc_list = fourcc_list(announce);
        }
        let mut session = ClientSession::new(config);
        let mut server = ServerSession::new(SessionConfig::default());
        session.start();
        pump(&mut session, &mut server, 4096);
        let caps = server.peer_capabilities().clone();
        let mut out = FlvOut::new(legacy_only);
        for e in events {
            out.push(&mut session, e);
        }
        let mut back = ReadBack::default();
        for ev in pump(&mut session, &mut server, 4096) {
            if let ServerEvent::Media {
                kind,
                timestamp,
                payload,
                ..
            } = ev
            {
                back.media(kind, timestamp, payload);
            }
        }
        (caps.codecs(), caps.enhanced, back.events)
    }

    /// A relay announces the stream's FourCCs and sends its HEVC and Opus
    /// in Enhanced RTMP tags, read back as the same events; a legacy_only
    /// relay announces nothing and sends neither.
    #[test]
    fn enhanced_rtmp_out_and_legacy_only() {
        let events = hevc_opus();
        let stream = CodecSet::EMPTY.with(Codec::Hevc).with(Codec::Opus);
        let (announced, enhanced, back) = relay_to_server(stream, false, &events);
        assert!(enhanced);
        assert_eq!(announced, CodecSet::LEGACY.union(stream));
        assert_eq!(back, events);

        let (announced, enhanced, back) = relay_to_server(stream, true, &events);
        assert!(!enhanced);
        assert_eq!(announced, CodecSet::LEGACY);
        assert!(back.is_empty(), "{back:?}");
        assert_eq!(fourcc_list(stream), ["hvc1", "Opus"]);
    }
}
