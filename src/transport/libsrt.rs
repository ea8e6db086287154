//! libsrt (Debian's `libsrt-openssl-dev`, the library ffmpeg and
//! srt-live-transmit use) through a small hand-written FFI: every `unsafe`
//! of SRT (the relays' links, the SRT listener) is in this file.
//!
//! Why libsrt and not a Rust SRT: `srt-tokio` 0.4 corrupted or lost what
//! it sent to an ffmpeg (libsrt 1.5.1) listener when it joined a live
//! stream (ffmpeg decoded a damaged first picture and wrote nothing), while
//! its own end reported every byte sent. Why not the `libsrt-sys` crate: it
//! builds a bundled libsrt 1.4 from C sources with cmake instead of linking
//! the system library.
//!
//! The calls are the blocking ones, made from threads (connect, accept,
//! receive) except sending, which is non-blocking (`SRTO_SNDSYN` off) and
//! only copies a message into libsrt's send buffer.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

mod sys {
    use std::ffi::{c_char, c_int, c_void};

    pub type SrtSocket = c_int;
    pub const INVALID_SOCK: SrtSocket = -1;
    pub const ERROR: c_int = -1;

    // SRT_SOCKOPT values (srt/srt.h, libsrt 1.5).
    pub const SRTO_SNDSYN: c_int = 1;
    pub const SRTO_RCVSYN: c_int = 2;
    pub const SRTO_LINGER: c_int = 7;
    pub const SRTO_RCVTIMEO: c_int = 14;
    pub const SRTO_LATENCY: c_int = 23;
    pub const SRTO_PASSPHRASE: c_int = 26;
    pub const SRTO_PBKEYLEN: c_int = 27;
    pub const SRTO_CONNTIMEO: c_int = 36;
    pub const SRTO_PEERLATENCY: c_int = 44;
    pub const SRTO_STREAMID: c_int = 46;
    pub const SRTO_TRANSTYPE: c_int = 50;
    pub const SRTT_LIVE: c_int = 0;

    // SRT_SOCKSTATUS.
    pub const SRTS_CONNECTED: c_int = 5;

    // SRT_ERRNO.
    pub const SRT_ENOSERVER: c_int = 1001;
    pub const SRT_ECONNREJ: c_int = 1002;
    pub const SRT_ECONNLOST: c_int = 2001;
    pub const SRT_ENOCONN: c_int = 2002;
    pub const SRT_EASYNCSND: c_int = 6001;
    pub const SRT_EASYNCRCV: c_int = 6002;
    pub const SRT_ETIMEOUT: c_int = 6003;

    // Syslog levels, as libsrt's logging uses them.
    pub const LOG_ERR: c_int = 3;

    /// `struct linger`.
    #[repr(C)]
    pub struct Linger {
        pub onoff: c_int,
        pub linger: c_int,
    }

    /// The leading fields of `SRT_TRACEBSTATS` (`struct CBytePerfMon`),
    /// in its order and C layout (through the RTT and bandwidth
    /// estimate), then room for the rest (the whole struct is about 500
    /// bytes in libsrt 1.5; fields are only ever appended).
    #[repr(C)]
    pub struct PerfMon {
        pub ms_timestamp: i64,
        pub pkt_sent_total: i64,
        pub pkt_recv_total: i64,
        pub pkt_snd_loss_total: c_int,
        pub pkt_rcv_loss_total: c_int,
        pub pkt_retrans_total: c_int,
        pub pkt_sent_ack_total: c_int,
        pub pkt_recv_ack_total: c_int,
        pub pkt_sent_nak_total: c_int,
        pub pkt_recv_nak_total: c_int,
        pub us_snd_duration_total: i64,
        pub pkt_snd_drop_total: c_int,
        pub pkt_rcv_drop_total: c_int,
        pub pkt_rcv_undecrypt_total: c_int,
        pub byte_sent_total: u64,
        pub byte_recv_total: u64,
        pub byte_rcv_loss_total: u64,
        pub byte_retrans_total: u64,
        pub byte_snd_drop_total: u64,
        pub byte_rcv_drop_total: u64,
        pub byte_rcv_undecrypt_total: u64,
        // Since the last clear (never cleared here: since the start).
        pub pkt_sent: i64,
        pub pkt_recv: i64,
        pub pkt_snd_loss: c_int,
        pub pkt_rcv_loss: c_int,
        pub pkt_retrans: c_int,
        pub pkt_rcv_retrans: c_int,
        pub pkt_sent_ack: c_int,
        pub pkt_recv_ack: c_int,
        pub pkt_sent_nak: c_int,
        pub pkt_recv_nak: c_int,
        pub mbps_send_rate: f64,
        pub mbps_recv_rate: f64,
        pub us_snd_duration: i64,
        pub pkt_reorder_distance: c_int,
        pub pkt_rcv_avg_belated_time: f64,
        pub pkt_rcv_belated: i64,
        pub pkt_snd_drop: c_int,
        pub pkt_rcv_drop: c_int,
        pub pkt_rcv_undecrypt: c_int,
        pub byte_sent: u64,
        pub byte_recv: u64,
        pub byte_rcv_loss: u64,
        pub byte_retrans: u64,
        pub byte_snd_drop: u64,
        pub byte_rcv_drop: u64,
        pub byte_rcv_undecrypt: u64,
        // Instant measurements.
        pub us_pkt_snd_period: f64,
        pub pkt_flow_window: c_int,
        pub pkt_congestion_window: c_int,
        pub pkt_flight_size: c_int,
        pub ms_rtt: f64,
        pub mbps_bandwidth: f64,
        pub rest: [u64; 256],
    }

    pub type LogHandler = unsafe extern "C" fn(
        opaque: *mut c_void,
        level: c_int,
        file: *const c_char,
        line: c_int,
        area: *const c_char,
        message: *const c_char,
    );

    /// `srt_listen_callback_fn`: called on libsrt's receiving thread for
    /// each caller's handshake, before the connection is accepted.
    pub type ListenHook = unsafe extern "C" fn(
        opaque: *mut c_void,
        ns: SrtSocket,
        hs_version: c_int,
        peer: *const libc::sockaddr,
        stream_id: *const c_char,
    ) -> c_int;

    #[link(name = "srt")]
    extern "C" {
        pub fn srt_startup() -> c_int;
        pub fn srt_create_socket() -> SrtSocket;
        pub fn srt_setsockflag(
            u: SrtSocket,
            opt: c_int,
            optval: *const c_void,
            optlen: c_int,
        ) -> c_int;
        pub fn srt_getsockflag(
            u: SrtSocket,
            opt: c_int,
            optval: *mut c_void,
            optlen: *mut c_int,
        ) -> c_int;
        pub fn srt_bind(u: SrtSocket, name: *const libc::sockaddr, namelen: c_int) -> c_int;
        pub fn srt_listen(u: SrtSocket, backlog: c_int) -> c_int;
        pub fn srt_accept(
            u: SrtSocket,
            addr: *mut libc::sockaddr,
            addrlen: *mut c_int,
        ) -> SrtSocket;
        pub fn srt_connect(u: SrtSocket, name: *const libc::sockaddr, namelen: c_int) -> c_int;
        pub fn srt_sendmsg2(
            u: SrtSocket,
            buf: *const c_char,
            len: c_int,
            mctrl: *mut c_void,
        ) -> c_int;
        pub fn srt_recvmsg(u: SrtSocket, buf: *mut c_char, len: c_int) -> c_int;
        pub fn srt_close(u: SrtSocket) -> c_int;
        pub fn srt_getsockname(
            u: SrtSocket,
            name: *mut libc::sockaddr,
            namelen: *mut c_int,
        ) -> c_int;
        pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
        pub fn srt_getlasterror_str() -> *const c_char;
        pub fn srt_getrejectreason(u: SrtSocket) -> c_int;
        pub fn srt_rejectreason_str(id: c_int) -> *const c_char;
        pub fn srt_getsockstate(u: SrtSocket) -> c_int;
        pub fn srt_getsndbuffer(u: SrtSocket, blocks: *mut usize, bytes: *mut usize) -> c_int;
        pub fn srt_bstats(u: SrtSocket, perf: *mut PerfMon, clear: c_int) -> c_int;
        pub fn srt_setloglevel(level: c_int);
        pub fn srt_setloghandler(opaque: *mut c_void, handler: Option<LogHandler>);
        pub fn srt_listen_callback(
            lsn: SrtSocket,
            hook: Option<ListenHook>,
            opaque: *mut c_void,
        ) -> c_int;
        pub fn srt_setrejectreason(u: SrtSocket, value: c_int) -> c_int;
    }
}

/// The largest message libsrt delivers in live mode (one UDP payload).
pub const MAX_MESSAGE: usize = 1500;

/// Starts libsrt once per process and routes its log (errors only) to ours.
fn startup() -> io::Result<()> {
    static START: Once = Once::new();
    static FAILED: AtomicBool = AtomicBool::new(false);
    START.call_once(|| {
        // SAFETY: `srt_startup` takes no arguments and may be called from
        // any thread; `Once` runs it once. The log handler is a plain
        // function valid for the whole process and ignores `opaque`.
        unsafe {
            if sys::srt_startup() < 0 {
                FAILED.store(true, Ordering::Relaxed);
            }
            sys::srt_setloglevel(sys::LOG_ERR);
            sys::srt_setloghandler(std::ptr::null_mut(), Some(log_handler));
        }
    });
    if FAILED.load(Ordering::Relaxed) {
        return Err(io::Error::other("libsrt did not start (srt_startup)"));
    }
    Ok(())
}

/// libsrt's log lines, from its own threads.
unsafe extern "C" fn log_handler(
    _opaque: *mut c_void,
    _level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    // SAFETY: libsrt passes NUL-terminated strings (or null, checked by
    // `cstr`) valid for the duration of this call; they are copied here.
    let (area, message) = unsafe { (cstr(area), cstr(message)) };
    tracing::warn!(target: "castgate::libsrt", area = %area, "{}", message.trim_end());
}

/// Copies a C string (null: empty).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string valid for this call.
unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated by the contract above.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The calling thread's last libsrt error: (SRT code, system errno, text).
fn last_error() -> (c_int, c_int, String) {
    let mut errno: c_int = 0;
    // SAFETY: `srt_getlasterror` writes one int through a valid pointer;
    // `srt_getlasterror_str` returns a thread-local NUL-terminated string
    // (copied at once, before any other libsrt call on this thread).
    unsafe {
        let code = sys::srt_getlasterror(&mut errno);
        (code, errno, cstr(sys::srt_getlasterror_str()))
    }
}

/// The last error as an `io::Error`: the system error's kind when libsrt
/// failed in a system call, else `kind`.
fn error(what: &str, kind: io::ErrorKind) -> io::Error {
    let (_, errno, text) = last_error();
    let kind = if errno != 0 {
        io::Error::from_raw_os_error(errno).kind()
    } else {
        kind
    };
    io::Error::new(kind, format!("{what}: {}", text.trim_end_matches('.')))
}

/// What a socket is set up with before it connects or listens.
#[derive(Clone, Debug)]
pub struct Options {
    pub latency: Duration,
    /// Sent to the listener (caller only).
    pub stream_id: Option<String>,
    pub passphrase: Option<String>,
    /// AES key length in bytes: 16, 24 or 32.
    pub key_len: u16,
    pub connect_timeout: Duration,
}

/// Counters of one connection, from `srt_bstats`: the sender's side (a
/// relay, a player of castgate's) and the receiver's (a publisher).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub packets_sent: i64,
    pub packets_retransmitted: i64,
    pub packets_lost: i64,
    /// Packets libsrt dropped as too late to deliver.
    pub packets_dropped: i64,
    pub bytes_sent: u64,
    pub packets_received: i64,
    /// Packets the receiver saw missing (and asked again for).
    pub packets_received_lost: i64,
    /// Retransmitted packets that arrived.
    pub packets_received_retransmitted: i64,
    /// Packets the receiver gave up on (too late to play).
    pub packets_received_dropped: i64,
    pub bytes_received: u64,
    /// Smoothed round-trip time.
    pub rtt_ms: f64,
    /// libsrt's estimate of the link's bandwidth.
    pub bandwidth_mbps: f64,
    /// The receiving rate over the last second or so.
    pub receive_rate_mbps: f64,
    /// The sending rate over the last second or so.
    pub send_rate_mbps: f64,
}

/// One libsrt socket, closed once (explicitly or on drop). Shared between
/// the task that sends and the thread that receives: libsrt sockets may be
/// used from several threads, and a call on a closed socket fails cleanly
/// (libsrt looks ids up; it does not reuse them).
pub struct Socket {
    id: sys::SrtSocket,
    closed: AtomicBool,
}

impl Socket {
    /// A live-mode socket with `opts` set.
    pub fn new(opts: &Options) -> io::Result<Socket> {
        startup()?;
        // SAFETY: no arguments; returns an id or INVALID_SOCK.
        let id = unsafe { sys::srt_create_socket() };
        if id == sys::INVALID_SOCK {
            return Err(error("cannot create an SRT socket", io::ErrorKind::Other));
        }
        let s = Socket {
            id,
            closed: AtomicBool::new(false),
        };
        s.set_int(sys::SRTO_TRANSTYPE, sys::SRTT_LIVE, "transtype")?;
        // Blocking connect, accept and receive (each on its own thread);
        // sending only queues into libsrt's buffer and never blocks.
        s.set_bool(sys::SRTO_RCVSYN, true, "rcvsyn")?;
        s.set_bool(sys::SRTO_SNDSYN, false, "sndsyn")?;
        let ms = |d: Duration| c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX);
        s.set_int(sys::SRTO_LATENCY, ms(opts.latency), "latency")?;
        s.set_int(
            sys::SRTO_CONNTIMEO,
            ms(opts.connect_timeout).max(1),
            "connect timeout",
        )?;
        // `close` waits for the receiver's acknowledgements itself.
        let linger = sys::Linger {
            onoff: 0,
            linger: 0,
        };
        s.set(
            sys::SRTO_LINGER,
            (&linger as *const sys::Linger).cast(),
            std::mem::size_of::<sys::Linger>(),
            "linger",
        )?;
        if let Some(id) = &opts.stream_id {
            s.set_str(sys::SRTO_STREAMID, id, "streamid")?;
        }
        if let Some(p) = &opts.passphrase {
            s.set_int(sys::SRTO_PBKEYLEN, c_int::from(opts.key_len), "pbkeylen")?;
            s.set_str(sys::SRTO_PASSPHRASE, p, "passphrase")?;
        }
        Ok(s)
    }

    fn set(&self, opt: c_int, val: *const c_void, len: usize, name: &str) -> io::Result<()> {
        let len = c_int::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too long"))?;
        // SAFETY: `val` points to `len` readable bytes (the callers pass a
        // live local or a string slice); libsrt copies the value.
        let r = unsafe { sys::srt_setsockflag(self.id, opt, val, len) };
        if r == sys::ERROR {
            return Err(error(
                &format!("SRT option {name} refused"),
                io::ErrorKind::InvalidInput,
            ));
        }
        Ok(())
    }

    fn set_int(&self, opt: c_int, v: c_int, name: &str) -> io::Result<()> {
        self.set(opt, (&v as *const c_int).cast(), size_of::<c_int>(), name)
    }

    fn set_bool(&self, opt: c_int, v: bool, name: &str) -> io::Result<()> {
        // libsrt reads boolean options as a C++ `bool` (one byte).
        self.set(opt, (&v as *const bool).cast(), size_of::<bool>(), name)
    }

    fn set_str(&self, opt: c_int, v: &str, name: &str) -> io::Result<()> {
        self.set(opt, v.as_ptr().cast(), v.len(), name)
    }

    /// Calls a listener; blocks until connected, refused or timed out
    /// (`connect_timeout`).
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        let (sa, len) = sockaddr(addr);
        // SAFETY: `sa` is a sockaddr_in/sockaddr_in6 of `len` bytes, alive
        // for the call.
        let r = unsafe {
            sys::srt_connect(self.id, (&sa as *const libc::sockaddr_storage).cast(), len)
        };
        if r != sys::ERROR {
            return Ok(());
        }
        let (code, _, text) = last_error();
        // SAFETY: a plain query on our socket id.
        let reason = unsafe { sys::srt_getrejectreason(self.id) };
        let why = if reason >= SRT_REJC_PREDEFINED {
            // The listener's own code (access control: 1400 and up).
            format!("refused by the listener, reason {reason}")
        } else {
            // SAFETY: returns a static NUL-terminated string for any id.
            unsafe { cstr(sys::srt_rejectreason_str(reason)) }
        };
        let kind = match code {
            sys::SRT_ENOSERVER => io::ErrorKind::TimedOut,
            sys::SRT_ECONNREJ => io::ErrorKind::ConnectionRefused,
            _ => io::ErrorKind::Other,
        };
        let text = text.trim_end_matches('.');
        Err(io::Error::new(
            kind,
            if why.is_empty() || text.contains(&why) {
                text.to_string()
            } else {
                format!("{text}: {why}")
            },
        ))
    }

    /// Binds and listens (backlog 1: one receiver at a time).
    pub fn listen(&self, addr: SocketAddr) -> io::Result<()> {
        let (sa, len) = sockaddr(addr);
        // SAFETY: as in `connect`.
        let r =
            unsafe { sys::srt_bind(self.id, (&sa as *const libc::sockaddr_storage).cast(), len) };
        if r == sys::ERROR {
            return Err(error("cannot bind", io::ErrorKind::AddrInUse));
        }
        // SAFETY: a plain call on our bound socket.
        if unsafe { sys::srt_listen(self.id, 1) } == sys::ERROR {
            return Err(error("cannot listen", io::ErrorKind::Other));
        }
        Ok(())
    }

    /// Waits for a caller (blocks; `close` from another thread ends it
    /// with an error).
    pub fn accept(&self) -> io::Result<(Socket, Option<SocketAddr>)> {
        // SAFETY: zeroed sockaddr_storage is a valid value.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `sa` has `len` writable bytes; libsrt writes at most that
        // and updates `len`.
        let id = unsafe {
            sys::srt_accept(
                self.id,
                (&mut sa as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if id == sys::INVALID_SOCK {
            return Err(error("accept failed", io::ErrorKind::Other));
        }
        let s = Socket {
            id,
            closed: AtomicBool::new(false),
        };
        Ok((s, from_sockaddr(&sa)))
    }

    /// The stream id the caller sent (an accepted socket).
    pub fn stream_id(&self) -> Option<String> {
        let mut buf = [0u8; 513];
        let mut len = (buf.len() - 1) as c_int;
        // SAFETY: `buf` has `len` writable bytes; libsrt writes at most
        // `len` and stores the length written.
        let r = unsafe {
            sys::srt_getsockflag(
                self.id,
                sys::SRTO_STREAMID,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == sys::ERROR {
            return None;
        }
        let len = usize::try_from(len).ok()?.min(buf.len());
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// The receiver's latency as negotiated: how long it holds a message
    /// before handing it on.
    pub fn peer_latency(&self) -> Option<Duration> {
        let mut v: c_int = 0;
        let mut len = size_of::<c_int>() as c_int;
        // SAFETY: `v` is a writable int of `len` bytes.
        let r = unsafe {
            sys::srt_getsockflag(
                self.id,
                sys::SRTO_PEERLATENCY,
                (&mut v as *mut c_int).cast(),
                &mut len,
            )
        };
        (r != sys::ERROR).then(|| Duration::from_millis(u64::try_from(v).unwrap_or(0)))
    }

    /// Queues one message (at most 1316 bytes in live mode); never blocks.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let len = c_int::try_from(msg.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
        // SAFETY: `msg` is `len` readable bytes, copied by libsrt before
        // it returns; a null control block asks for the defaults.
        let r =
            unsafe { sys::srt_sendmsg2(self.id, msg.as_ptr().cast(), len, std::ptr::null_mut()) };
        if r != sys::ERROR {
            return Ok(());
        }
        let (code, _, text) = last_error();
        let text = text.trim_end_matches('.');
        Err(match code {
            sys::SRT_EASYNCSND => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the SRT send buffer is full (the receiver does not keep up): {text}"),
            ),
            sys::SRT_ECONNLOST | sys::SRT_ENOCONN => {
                io::Error::new(io::ErrorKind::ConnectionReset, text.to_string())
            }
            _ => io::Error::other(text.to_string()),
        })
    }

    /// Makes `recv` give up after `d` (a connected socket: on a listener
    /// it would bound `accept`).
    pub fn set_recv_timeout(&self, d: Duration) -> io::Result<()> {
        let ms = c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX);
        self.set_int(sys::SRTO_RCVTIMEO, ms, "rcvtimeo")
    }

    /// Blocks for the next message from the peer (`TimedOut` after the
    /// receive timeout, if set); an error once the connection is broken
    /// or closed.
    pub fn recv(&self, buf: &mut [u8; MAX_MESSAGE]) -> io::Result<usize> {
        // SAFETY: `buf` has MAX_MESSAGE writable bytes.
        let n = unsafe { sys::srt_recvmsg(self.id, buf.as_mut_ptr().cast(), MAX_MESSAGE as c_int) };
        if n == sys::ERROR {
            let (code, _, text) = last_error();
            let kind = if code == sys::SRT_EASYNCRCV || code == sys::SRT_ETIMEOUT {
                io::ErrorKind::TimedOut
            } else {
                io::ErrorKind::ConnectionReset
            };
            return Err(io::Error::new(kind, text.trim_end_matches('.').to_string()));
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub fn connected(&self) -> bool {
        // SAFETY: a plain query on our socket id.
        unsafe { sys::srt_getsockstate(self.id) == sys::SRTS_CONNECTED }
    }

    /// Messages sent and not yet acknowledged by the receiver.
    pub fn unacknowledged(&self) -> Option<usize> {
        let (mut blocks, mut bytes) = (0usize, 0usize);
        // SAFETY: two writable size_t locals.
        let r = unsafe { sys::srt_getsndbuffer(self.id, &mut blocks, &mut bytes) };
        (r != sys::ERROR).then_some(blocks)
    }

    pub fn stats(&self) -> Option<Stats> {
        // SAFETY: an all-zero PerfMon is a valid value (integers only).
        let mut p: Box<sys::PerfMon> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `p` is larger than libsrt's SRT_TRACEBSTATS, which
        // `srt_bstats` fills; its leading fields have the same layout.
        let r = unsafe { sys::srt_bstats(self.id, &mut *p, 0) };
        (r != sys::ERROR).then(|| Stats {
            packets_sent: p.pkt_sent_total,
            packets_retransmitted: i64::from(p.pkt_retrans_total),
            packets_lost: i64::from(p.pkt_snd_loss_total),
            packets_dropped: i64::from(p.pkt_snd_drop_total),
            bytes_sent: p.byte_sent_total,
            packets_received: p.pkt_recv_total,
            packets_received_lost: i64::from(p.pkt_rcv_loss_total),
            packets_received_retransmitted: i64::from(p.pkt_rcv_retrans),
            packets_received_dropped: i64::from(p.pkt_rcv_drop_total),
            bytes_received: p.byte_recv_total,
            rtt_ms: p.ms_rtt,
            bandwidth_mbps: p.mbps_bandwidth,
            receive_rate_mbps: p.mbps_recv_rate,
            send_rate_mbps: p.mbps_send_rate,
        })
    }

    /// Closes (once): a peer is told, a blocked accept or receive returns.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            // SAFETY: our id, closed exactly once.
            unsafe { sys::srt_close(self.id) };
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a listener answers a caller's handshake (see [`Listener`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Accept; with a passphrase, the caller must encrypt with it.
    Accept { passphrase: Option<String> },
    /// Refuse, telling the caller why: an SRT reject reason (1400 and up
    /// are the access-control codes of `srt/access_control.h`).
    Reject(i32),
}

/// Decides a caller's admission from its address and stream id. Runs on
/// libsrt's receiving thread: it must be quick and must not block.
pub type Admit = dyn Fn(Option<SocketAddr>, &str) -> Admission + Send + Sync;

/// A listening socket whose callers are admitted one by one by an
/// [`Admit`] function, in the handshake (so a refusal carries its reason
/// to the caller, and a per-caller passphrase applies).
pub struct Listener {
    sock: Socket,
    /// The hook's state, owned here; libsrt holds a pointer to it until
    /// the socket is closed (in `Drop`, before this is freed).
    hook: *mut Arc<Admit>,
}

// SAFETY: `hook` points to an `Arc<Admit>` (Send + Sync) that only libsrt's
// thread reads and only `Drop` frees, after closing the socket.
unsafe impl Send for Listener {}
// SAFETY: as above; `Socket` is used from several threads already.
unsafe impl Sync for Listener {}

impl Listener {
    /// Binds `addr` and listens with `backlog` pending handshakes; each
    /// caller goes through `admit`.
    pub fn bind(
        opts: &Options,
        addr: SocketAddr,
        backlog: u16,
        admit: Arc<Admit>,
    ) -> io::Result<Listener> {
        let sock = Socket::new(opts)?;
        let hook = Box::into_raw(Box::new(admit));
        let listener = Listener { sock, hook };
        // SAFETY: `hook` stays valid until `Drop` closes the socket (after
        // which libsrt calls no hook) and frees it.
        let r =
            unsafe { sys::srt_listen_callback(listener.sock.id, Some(listen_hook), hook.cast()) };
        if r == sys::ERROR {
            return Err(error(
                "cannot set the listen callback",
                io::ErrorKind::Other,
            ));
        }
        let (sa, len) = sockaddr(addr);
        // SAFETY: as in `Socket::connect`.
        let r = unsafe {
            sys::srt_bind(
                listener.sock.id,
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if r == sys::ERROR {
            return Err(error("cannot bind", io::ErrorKind::AddrInUse));
        }
        // SAFETY: a plain call on our bound socket.
        if unsafe { sys::srt_listen(listener.sock.id, c_int::from(backlog)) } == sys::ERROR {
            return Err(error("cannot listen", io::ErrorKind::Other));
        }
        Ok(listener)
    }

    /// Waits for the next admitted caller (blocks; `close` from another
    /// thread ends it with an error).
    pub fn accept(&self) -> io::Result<(Socket, Option<SocketAddr>)> {
        self.sock.accept()
    }

    /// The bound address (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: zeroed sockaddr_storage is a valid value.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `sa` has `len` writable bytes.
        let r = unsafe {
            sys::srt_getsockname(
                self.sock.id,
                (&mut sa as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if r == sys::ERROR {
            return Err(error("getsockname", io::ErrorKind::Other));
        }
        from_sockaddr(&sa).ok_or_else(|| io::Error::other("unknown address family"))
    }

    /// Stops listening: a blocked `accept` returns an error.
    pub fn close(&self) {
        self.sock.close();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.sock.close();
        // SAFETY: made by `Box::into_raw` in `bind`; the socket is closed,
        // so libsrt no longer calls the hook with it.
        drop(unsafe { Box::from_raw(self.hook) });
    }
}

/// The C side of [`Listener`]'s admission: calls the `Admit` function,
/// sets the caller's passphrase or reject reason. A panic in `admit`
/// refuses the caller instead of unwinding into C.
unsafe extern "C" fn listen_hook(
    opaque: *mut c_void,
    ns: sys::SrtSocket,
    _hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int {
    // SAFETY: `opaque` is the `Arc<Admit>` `Listener::bind` registered,
    // alive while the listener is open.
    let admit: &Arc<Admit> = unsafe { &*opaque.cast::<Arc<Admit>>() };
    // SAFETY: libsrt passes the caller's address (a sockaddr_in or
    // sockaddr_in6 by its family; copied into storage large enough for
    // either) or null.
    let peer = (!peer.is_null())
        .then(|| unsafe { peer_address(peer) })
        .flatten();
    // SAFETY: a NUL-terminated stream id (empty when none), or null.
    let id = unsafe { cstr(stream_id) };
    let decision = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| admit(peer, &id)))
        .unwrap_or(Admission::Reject(REJECT_INTERNAL_ERROR));
    let refuse = |reason: c_int| {
        // SAFETY: a plain call on the pending socket libsrt gave us.
        unsafe { sys::srt_setrejectreason(ns, reason) };
        sys::ERROR
    };
    match decision {
        Admission::Accept { passphrase: None } => 0,
        Admission::Accept {
            passphrase: Some(p),
        } => {
            // SAFETY: `p` is `len` readable bytes, copied by libsrt.
            let r = unsafe {
                sys::srt_setsockflag(
                    ns,
                    sys::SRTO_PASSPHRASE,
                    p.as_ptr().cast(),
                    c_int::try_from(p.len()).unwrap_or(0),
                )
            };
            if r == sys::ERROR {
                refuse(REJECT_INTERNAL_ERROR)
            } else {
                0
            }
        }
        Admission::Reject(reason) => refuse(reason),
    }
}

/// Reject reasons from here up are the listener's own (SRT_REJC_PREDEFINED).
const SRT_REJC_PREDEFINED: c_int = 1000;

/// SRT_REJX_ISE: the service failed (castgate's own error).
const REJECT_INTERNAL_ERROR: c_int = 1500;

/// A caller's address from libsrt's `sockaddr`.
///
/// # Safety
/// `sa` points to a sockaddr_in or sockaddr_in6, as its family says.
unsafe fn peer_address(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: the family field is readable in any sockaddr.
    let len = match c_int::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => size_of::<libc::sockaddr_in6>(),
        _ => return None,
    };
    // SAFETY: `sa` holds `len` bytes by its family; `ss` is larger.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.cast::<u8>(),
            (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        )
    };
    from_sockaddr(&ss)
}

/// `addr` as a C socket address and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, c_int) {
    // SAFETY: zeroed sockaddr_storage is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as c_int)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            latency: Duration::from_millis(120),
            stream_id: None,
            passphrase: None,
            key_len: 16,
            connect_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:9000", "[::1]:9001", "0.0.0.0:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, _) = sockaddr(a);
            assert_eq!(from_sockaddr(&ss), Some(a));
        }
    }

    #[test]
    fn stats_buffer_is_larger_than_libsrts() {
        // SRT_TRACEBSTATS in libsrt 1.5 is under 600 bytes.
        assert!(size_of::<sys::PerfMon>() >= 2048);
    }

    /// Two sockets of ours on loopback: one listens, one calls with a
    /// stream id and a passphrase; every message arrives, the listener
    /// sees the stream id, and a close reaches the other side.
    #[test]
    fn caller_reaches_listener_with_stream_id_and_passphrase() {
        for key_len in [16, 24, 32] {
            exchange(key_len);
        }
    }

    /// One connection with AES of `key_len` bytes.
    fn exchange(key_len: u16) {
        let mut o = opts();
        o.passphrase = Some("passphrase-0123".into());
        o.key_len = key_len;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let l = Socket::new(&o).unwrap();
        l.listen(addr).unwrap();
        let t = std::thread::spawn(move || {
            let (s, peer) = l.accept().unwrap();
            assert!(peer.is_some());
            let id = s.stream_id();
            let mut got = Vec::new();
            let mut buf = [0u8; MAX_MESSAGE];
            while let Ok(n) = s.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            (id, got)
        });
        let mut c = o.clone();
        c.stream_id = Some("#!::r=live/x".into());
        let s = Socket::new(&c).unwrap();
        s.connect(addr).unwrap();
        assert!(s.connected());
        for i in 0..50u8 {
            s.send(&[i; 1316]).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.unacknowledged() != Some(0) {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Acknowledged messages wait in the receiver for its latency
        // before they are handed on; a close before that loses them.
        std::thread::sleep(s.peer_latency().unwrap() + Duration::from_millis(100));
        let st = s.stats().unwrap();
        assert!(st.packets_sent >= 50, "{st:?}");
        s.close();
        let (id, got) = t.join().unwrap();
        assert_eq!(id.as_deref(), Some("#!::r=live/x"));
        assert_eq!(got.len(), 50);
        assert!(got.iter().enumerate().all(|(i, m)| m == &[i as u8; 1316]));
    }

    #[test]
    fn wrong_passphrase_is_refused_with_the_reason() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut o = opts();
        o.passphrase = Some("passphrase-0123".into());
        let l = std::sync::Arc::new(Socket::new(&o).unwrap());
        l.listen(addr).unwrap();
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.accept().map(|_| ()));
        o.passphrase = Some("other-passphrase".into());
        let s = Socket::new(&o).unwrap();
        let e = s.connect(addr).unwrap_err();
        assert!(e.to_string().contains("passphrase"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        // Closing the listener ends a blocked accept.
        l.close();
        assert!(t.join().unwrap().is_err());
    }

    /// A listener whose admission refuses one stream id (the caller sees
    /// the reason), accepts another, and asks a third for a passphrase.
    #[test]
    fn admission_refuses_with_a_reason_and_sets_passphrases() {
        let admit: Arc<Admit> = Arc::new(|peer, id| {
            assert!(peer.is_some_and(|p| p.ip().is_loopback()));
            match id {
                "open" => Admission::Accept { passphrase: None },
                "secret" => Admission::Accept {
                    passphrase: Some("passphrase-0123".into()),
                },
                "panics" => panic!("a bug in the admission"),
                _ => Admission::Reject(1403),
            }
        });
        let l =
            Arc::new(Listener::bind(&opts(), "127.0.0.1:0".parse().unwrap(), 8, admit).unwrap());
        let addr = l.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let accepting = l.clone();
        let (tx, accepted) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            while let Ok((s, _)) = accepting.accept() {
                let _ = tx.send(s.stream_id().unwrap_or_default());
            }
        });
        let call = |id: &str, pass: Option<&str>| {
            let mut o = opts();
            o.stream_id = Some(id.into());
            o.passphrase = pass.map(str::to_string);
            let s = Socket::new(&o).unwrap();
            s.connect(addr)
        };
        call("open", None).unwrap();
        let e = call("closed", None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        assert!(e.to_string().contains("reason 1403"), "{e}");
        let e = call("panics", None).unwrap_err();
        assert!(e.to_string().contains("reason 1500"), "{e}");
        // The passphrase is the caller's own business only when asked.
        call("secret", None).unwrap_err();
        call("secret", Some("another-passphrase")).unwrap_err();
        call("secret", Some("passphrase-0123")).unwrap();
        let wait = Duration::from_secs(10);
        assert_eq!(accepted.recv_timeout(wait).as_deref(), Ok("open"));
        assert_eq!(accepted.recv_timeout(wait).as_deref(), Ok("secret"));
        l.close();
        t.join().unwrap();
        // Nobody refused was accepted.
        assert!(accepted.try_recv().is_err());
    }

    #[test]
    fn nobody_listening_times_out() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let mut o = opts();
        o.connect_timeout = Duration::from_millis(500);
        let s = Socket::new(&o).unwrap();
        let e = s
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }
}
