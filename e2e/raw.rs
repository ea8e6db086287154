//! A raw RTMP client that can say anything: for hostile inputs, the corpus
//! replayer and fault tests (TCP resets, stalled readers).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use castgate::rtmp::amf0::{self, Amf0Value};
use castgate::rtmp::chunk::ChunkEncoder;
use castgate::rtmp::handshake::{ClientHandshake, HandshakeStatus};

/// What waiting for the server's bytes came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    Found,
    Closed,
    TimedOut,
}

pub struct Raw {
    pub s: TcpStream,
    pub enc: ChunkEncoder,
    /// Everything the server sent after the handshake.
    pub received: Vec<u8>,
}

/// The payload of castgate's Ping Response to [`Raw::ping`].
const PONG: [u8; 6] = [0, 7, 0xC0, 0xFF, 0xEE, 0x42];

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Raw {
            s,
            enc: ChunkEncoder::new(),
            received: Vec::new(),
        }
    }

    /// As [`Raw::connect`], from the loopback source address `src` (e.g.
    /// 127.0.0.2: Linux routes all of 127/8 on `lo`), so that castgate sees
    /// a client of another address.
    pub fn connect_from(src: std::net::IpAddr, addr: SocketAddr) -> Raw {
        let s = crate::harness::tcp_connect_from(src, addr);
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Raw {
            s,
            enc: ChunkEncoder::new(),
            received: Vec::new(),
        }
    }

    /// As [`Raw::connect`], with a receive buffer of a few KiB, so that the
    /// kernel holds little of what castgate sends a client that stops
    /// reading: the rest is castgate's to bound.
    pub fn connect_small_buffer(addr: SocketAddr) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("tokio runtime");
        let s = rt
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_recv_buffer_size(4096)?;
                socket.connect(addr).await?.into_std()
            })
            .expect("connect");
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Raw {
            s,
            enc: ChunkEncoder::new(),
            received: Vec::new(),
        }
    }

    /// The `peer=` value castgate logs for this connection (with the space
    /// that ends it, so port 4000 does not match port 40001).
    pub fn peer_tag(&self) -> String {
        format!("peer={} ", self.s.local_addr().unwrap())
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed; that is what some tests expect.
        let _ = self.s.write_all(bytes);
    }

    pub fn handshake(&mut self) {
        let mut hs = ClientHandshake::new();
        let mut out = Vec::new();
        hs.start(&mut out);
        self.send(&out);
        let mut buf = [0u8; 4096];
        let mut pending = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "handshake did not finish");
            match self.s.read(&mut buf) {
                Ok(0) => panic!("server closed during the handshake"),
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(_) => continue,
            }
            let mut out = Vec::new();
            let (used, status) = hs.process(&pending, &mut out).expect("handshake");
            pending.drain(..used);
            self.send(&out);
            if status == HandshakeStatus::Done {
                self.received.extend_from_slice(&pending);
                return;
            }
        }
    }

    pub fn message(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.message_at(csid, type_id, stream_id, 0, payload);
    }

    pub fn message_at(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) {
        let mut out = BytesMut::new();
        self.enc
            .write(csid, type_id, stream_id, timestamp, &[payload], &mut out);
        self.send(&out);
    }

    pub fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.message(3, 20, stream_id, &amf0::encode_all(values));
    }

    pub fn rtmp_connect(&mut self, app: &str) {
        self.command(
            0,
            &[
                Amf0Value::string("connect"),
                Amf0Value::Number(1.0),
                Amf0Value::object([
                    ("app", Amf0Value::string(app)),
                    (
                        "tcUrl",
                        Amf0Value::string(format!("rtmp://127.0.0.1/{app}")),
                    ),
                ]),
            ],
        );
    }

    /// Handshake, `connect` to app `live`, `createStream`, then `publish`
    /// or `play` of `name` on stream 1.
    pub fn start_stream(&mut self, command: &str, name: &str) {
        self.start_stream_in("live", command, name);
    }

    /// [`Raw::start_stream`] in application `app`.
    pub fn start_stream_in(&mut self, app: &str, command: &str, name: &str) {
        self.handshake();
        self.rtmp_connect(app);
        self.command(
            0,
            &[
                Amf0Value::string("createStream"),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
            ],
        );
        self.command(
            1,
            &[
                Amf0Value::string(command),
                Amf0Value::Number(3.0),
                Amf0Value::Null,
                Amf0Value::string(name),
            ],
        );
    }

    /// [`Raw::start_stream`] for a publish, then waits for
    /// `NetStream.Publish.Start`: media sent from here on is published.
    pub fn start_publish(&mut self, name: &str, timeout: Duration) -> Result<(), String> {
        self.start_stream("publish", name);
        match self.wait_for(b"NetStream.Publish.Start", timeout) {
            Wait::Found => Ok(()),
            other => Err(format!("publish of {name} not accepted: {other:?}")),
        }
    }

    /// Reads until the server has sent `pattern` (anywhere since the
    /// handshake), closes the connection, or `timeout` passes.
    pub fn wait_for(&mut self, pattern: &[u8], timeout: Duration) -> Wait {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        loop {
            if self.received.windows(pattern.len()).any(|w| w == pattern) {
                return Wait::Found;
            }
            if Instant::now() >= deadline {
                return Wait::TimedOut;
            }
            match self.s.read(&mut buf) {
                Ok(0) => return Wait::Closed,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Wait::Closed,
            }
        }
    }

    /// Whether `pattern` is in what was read so far.
    pub fn has_received(&self, pattern: &[u8]) -> bool {
        self.received.windows(pattern.len()).any(|w| w == pattern)
    }

    /// Proof that nothing matching `pattern` was sent up to now: two Ping
    /// round trips (whatever castgate wrote in answer to earlier messages
    /// went out with or before the first Pong, so it has been read once the
    /// second Pong is), then a look at everything read. Panics if a Ping
    /// goes unanswered.
    pub fn nothing_received(&mut self, pattern: &[u8], timeout: Duration) -> bool {
        let pongs = |r: &[u8]| r.windows(PONG.len()).filter(|w| *w == PONG).count();
        for _ in 0..2 {
            let want = pongs(&self.received) + 1;
            let mut ping = vec![0x02, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0];
            ping.extend_from_slice(&[0, 6, 0xC0, 0xFF, 0xEE, 0x42]);
            self.send(&ping);
            let deadline = Instant::now() + timeout;
            let mut buf = [0u8; 65536];
            while pongs(&self.received) < want {
                assert!(Instant::now() < deadline, "no Pong from castgate");
                match self.s.read(&mut buf) {
                    Ok(0) => panic!("castgate closed the connection"),
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("reading from castgate: {e}"),
                }
            }
        }
        !self.has_received(pattern)
    }

    /// Sends a Ping Request (a type-0 chunk on chunk stream 2, whatever
    /// came before) and waits for castgate's Ping Response: proof that the
    /// session read everything sent before it and is alive.
    pub fn ping(&mut self, timeout: Duration) -> Wait {
        let mut ping = vec![0x02, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0];
        ping.extend_from_slice(&[0, 6, 0xC0, 0xFF, 0xEE, 0x42]);
        self.send(&ping);
        self.wait_for(&PONG, timeout)
    }

    /// Reads until the server closes the connection.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), String> {
        match self.wait_for(b"\0never\0sent\0", timeout) {
            Wait::Closed => Ok(()),
            _ => Err(format!(
                "server did not close the connection within {timeout:?}"
            )),
        }
    }

    /// Reads until the server closes the connection; panics if it does not
    /// within `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration, what: &str) {
        if let Err(e) = self.wait_closed(timeout) {
            panic!("{what}: {e}");
        }
    }

    /// Ends the connection with a TCP reset (SO_LINGER 0, then close), as a
    /// crashed host or a middlebox does, instead of an orderly FIN.
    pub fn reset(self) {
        let socket = tokio::net::TcpSocket::from_std_stream(self.s);
        socket.set_zero_linger().expect("SO_LINGER 0");
        drop(socket);
    }
}
