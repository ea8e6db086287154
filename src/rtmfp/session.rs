//! An open RTMFP session (RFC 7016 §3.5.2–3.6), after the handshake:
//! flows of user data both ways, acknowledgements, retransmission,
//! congestion control, keepalive and close. Sans-I/O in quinn-proto's
//! shape: the driver gives it datagrams (`handle_datagram`) and the time
//! (`handle_timeout` at `poll_timeout`), and takes what it has to send
//! (`poll_transmit`) and what happened (`poll_event`). Times are
//! milliseconds on the driver's monotonic clock.
//!
//! Congestion control is the TCP-compatible baseline RFC 7016 §3.6.2.6
//! requires: a congestion window in bytes, slow start to a threshold, one
//! fragment's worth more per window afterwards, cut once per round trip on
//! loss, two fragments after a retransmission timeout. The cut is a half,
//! or an eighth while time-critical data (media) flows, as RFC 7016
//! Appendix A has it: live media cannot wait for a window to grow back,
//! and a lossy path would otherwise hold it below its bitrate. The window
//! grows only while at least half of it is used (an application-limited
//! sender does not earn a window it never tried). Round trips come from
//! the packets' timestamp echoes (RFC 6298's smoothing).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::crypto::SessionKeys;
use super::flash;
use super::packet::{self, Builder, Chunk, Header, Mode, UserData};
use super::recv::{self, RecvFlow, RecvLimits};
use super::send::{AckTiming, Full, Selective, SendFlow};
use super::wire::{put_vlu, Reader};
use super::Error;

/// Plaintext bytes of a session packet at most: room for IPv6, UDP, the
/// session id and padding under a 1280-byte path MTU (rtmfp-cpp's figure).
pub const MAX_SESSION_PACKET: usize = 1200;
/// What a user data chunk takes besides its data, at most: flags, flow id,
/// sequence number and FSN offset as VLUs.
const DATA_OVERHEAD: usize = 1 + 3 * super::wire::MAX_VLU_LEN;
/// The segment size congestion control counts in.
const MSS: usize = MAX_SESSION_PACKET - 8 - packet::CHUNK_HEADER - DATA_OVERHEAD;
const CWND_INITIAL: usize = 3 * MSS;
const CWND_AFTER_TIMEOUT: usize = 2 * MSS;
/// An acknowledgement is sent at once after this many packets with data.
const ACK_AFTER_PACKETS: u32 = 2;
/// Otherwise within this (RFC 7016's delayed ack).
const DELAYED_ACK_MS: u64 = 200;
/// Before a round trip is measured (RFC 6298 §2.1).
const INITIAL_RTO_MS: u64 = 1000;
const MIN_RTO_MS: u64 = 250;
const MAX_RTO_MS: u64 = 10_000;
/// Data queued as time-critical this recently makes a loss cut the
/// congestion window by an eighth instead of a half (rtmfp-cpp's figure).
const TIME_CRITICAL_MS: u64 = 800;
/// The longest reordered round trip counts for this long (two periods of
/// this at most, one at least) in the loss delay.
const REORDER_PERIOD_MS: u64 = 10_000;
/// A packet timestamp's unit (RFC 7016 §2.2.4).
const TIMESTAMP_MS: u64 = 4;
/// The newest timestamp received is echoed for this long at most before
/// whatever arrives next replaces it (a peer's clock may jump).
const ECHO_NEWEST_MS: u64 = 1000;
/// A timestamp is echoed only this long after it was received.
const MAX_ECHO_AGE_MS: u64 = 128_000;
/// Bytes of a ping castgate answers: a reply is never larger than its ping.
const MAX_PING: usize = 1000;
/// A closing session repeats its Close this often until acknowledged.
const CLOSE_REPEAT_MS: u64 = 1000;

/// What bounds a session; the module that runs it owns the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Flows the peer may open.
    pub max_recv_flows: usize,
    pub recv: RecvLimits,
    /// Bytes each sending flow may hold unacknowledged.
    pub send_buffer: usize,
    /// A ping goes after this long without a packet from the peer.
    pub keepalive_ms: u64,
    /// The session ends after this long without a packet from the peer.
    pub idle_timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            max_recv_flows: 16,
            recv: RecvLimits::default(),
            send_buffer: 2 << 20,
            keepalive_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// What happened in a session, for its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a flow to castgate, with its metadata and the flow
    /// of castgate's it answers (its return association), if any.
    FlowOpened {
        flow: u64,
        metadata: Bytes,
        association: Option<u64>,
    },
    Message {
        flow: u64,
        data: Bytes,
    },
    /// The peer finished a flow (every fragment to its FIN arrived).
    FlowFinished {
        flow: u64,
    },
    /// The peer refused one of castgate's flows (a flow exception).
    SendFlowRejected {
        flow: u64,
        code: u64,
    },
    Closed {
        reason: CloseReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent Close.
    ByPeer,
    /// castgate closed it and the peer acknowledged (or the wait ended).
    Local,
    /// No packet from the peer within the idle timeout.
    IdleTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Close sent at `since`, waiting for Close Acknowledgement.
    Closing {
        since: u64,
        last_sent: u64,
    },
    Closed,
}

struct OutFlow {
    flow: SendFlow,
    /// Options sent with its fragments until the first acknowledgement.
    options: Vec<u8>,
    rejected: bool,
}

struct InFlow {
    flow: RecvFlow,
    ack_due: bool,
    finished_reported: bool,
}

/// Flow exceptions waiting to be sent, at most (more are sent on the
/// peer's next retransmission).
const MAX_REFUSALS: usize = 32;

/// The flow exception code castgate sends for a flow it refuses.
pub const EXCEPTION_REFUSED: u64 = 0;

/// The largest value of the current period and the one before.
#[derive(Debug, Default)]
struct WindowedMax {
    current: u64,
    previous: u64,
    started: u64,
}

impl WindowedMax {
    fn update(&mut self, now: u64, value: u64) {
        if now >= self.started + REORDER_PERIOD_MS {
            let gone = now >= self.started + 2 * REORDER_PERIOD_MS;
            self.previous = if gone { 0 } else { self.current };
            self.current = 0;
            self.started = now;
        }
        self.current = self.current.max(value);
    }

    fn get(&self) -> u64 {
        self.current.max(self.previous)
    }
}

pub struct Session {
    mode: Mode,
    far_session_id: u32,
    keys: SessionKeys,
    config: SessionConfig,
    state: State,
    out: BTreeMap<u64, OutFlow>,
    next_flow_id: u64,
    /// Round robin among the sending flows.
    last_served: u64,
    inbound: BTreeMap<u64, InFlow>,
    /// Flows refused (over the limit): each gets a flow exception.
    refused: Vec<u64>,
    events: VecDeque<Event>,
    /// The peer's last timestamp and when it came, for the echo.
    ts_received: Option<(u16, u64)>,
    last_echo: Option<u16>,
    srtt: Option<u64>,
    rttvar: u64,
    rto: u64,
    last_received: u64,
    /// When acknowledged data last moved (the retransmission timer).
    last_progress: u64,
    cwnd: usize,
    ssthresh: usize,
    last_reduction: u64,
    /// When time-critical data was last queued.
    time_critical_at: Option<u64>,
    /// How late the path delivers what it reorders (see `loss_delay`).
    reordered_rtt: WindowedMax,
    packets_since_ack: u32,
    ack_now: bool,
    delayed_ack_at: Option<u64>,
    ping_reply: Option<Vec<u8>>,
    ping_due: bool,
    last_ping: u64,
    close_ack_due: bool,
    /// Counters for the driver's logs and metrics.
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bad_packets: u64,
    pub retransmitted_bytes: u64,
    pub timeouts: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mode", &self.mode)
            .field("far_session_id", &self.far_session_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session just out of its handshake. `initiator`: castgate opened it.
    pub fn new(
        initiator: bool,
        far_session_id: u32,
        keys: SessionKeys,
        config: SessionConfig,
        now: u64,
    ) -> Session {
        Session {
            mode: if initiator {
                Mode::Initiator
            } else {
                Mode::Responder
            },
            far_session_id,
            keys,
            config,
            state: State::Open,
            out: BTreeMap::new(),
            // Flash Player's first NetConnection flow is 2; any will do.
            next_flow_id: 2,
            last_served: 0,
            inbound: BTreeMap::new(),
            refused: Vec::new(),
            events: VecDeque::new(),
            ts_received: None,
            last_echo: None,
            srtt: None,
            rttvar: 0,
            rto: INITIAL_RTO_MS,
            last_received: now,
            last_progress: now,
            cwnd: CWND_INITIAL,
            ssthresh: usize::MAX,
            last_reduction: 0,
            time_critical_at: None,
            reordered_rtt: WindowedMax::default(),
            packets_since_ack: 0,
            ack_now: false,
            delayed_ack_at: None,
            ping_reply: None,
            ping_due: false,
            last_ping: now,
            close_ack_due: false,
            stats: Stats::default(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The smoothed round trip, once measured.
    pub fn rtt_ms(&self) -> Option<u64> {
        self.srtt
    }

    /// Opens a sending flow with the Flash profile's `metadata`, answering
    /// the peer's flow `association` if given.
    pub fn open_flow(&mut self, metadata: &[u8], association: Option<u64>) -> u64 {
        let id = self.next_flow_id;
        self.next_flow_id += 1;
        let mut options = Vec::with_capacity(metadata.len() + 8);
        flash::put_option(&mut options, flash::USER_DATA_METADATA, metadata);
        if let Some(a) = association {
            let mut v = Vec::new();
            put_vlu(&mut v, a);
            flash::put_option(&mut options, flash::USER_DATA_RETURN_ASSOCIATION, &v);
        }
        options.push(0);
        self.out.insert(
            id,
            OutFlow {
                flow: SendFlow::new(self.config.send_buffer),
                options,
                rejected: false,
            },
        );
        id
    }

    /// Queues a message on a sending flow; `deadline` (ms) makes it
    /// abandonable. Full, or an unknown or refused flow, is an error.
    pub fn send(&mut self, flow: u64, data: Bytes, deadline: Option<u64>) -> Result<(), Full> {
        match self.out.get_mut(&flow) {
            Some(f) if !f.rejected && self.state == State::Open => f.flow.send(data, deadline),
            _ => Err(Full),
        }
    }

    /// [`Session::send`] for audio and video: time-critical data, which a
    /// loss in the next [`TIME_CRITICAL_MS`] cuts the window less for.
    pub fn send_media(
        &mut self,
        now: u64,
        flow: u64,
        data: Bytes,
        deadline: Option<u64>,
    ) -> Result<(), Full> {
        self.time_critical_at = Some(now);
        self.send(flow, data, deadline)
    }

    /// Bytes a sending flow holds (queued or unacknowledged).
    pub fn buffered(&self, flow: u64) -> usize {
        self.out.get(&flow).map_or(0, |f| f.flow.buffered())
    }

    pub fn close_flow(&mut self, flow: u64) {
        if let Some(f) = self.out.get_mut(&flow) {
            f.flow.close();
        }
    }

    /// Closes every sending flow: each ends with a FIN once its data is sent.
    pub fn close_flows(&mut self) {
        for f in self.out.values_mut() {
            f.flow.close();
        }
    }

    /// Every sending flow's data is acknowledged (or the peer refused the
    /// flow): closing the session now loses nothing.
    pub fn all_delivered(&self) -> bool {
        self.out
            .values()
            .all(|f| f.rejected || (f.flow.is_complete() && f.flow.buffered() == 0))
    }

    /// Starts closing the session.
    pub fn close(&mut self, now: u64) {
        if self.state == State::Open {
            self.state = State::Closing {
                since: now,
                last_sent: 0,
            };
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes a datagram addressed to this session. A packet that fails to
    /// open is counted and dropped (`Err`), never fatal.
    pub fn handle_datagram(&mut self, now: u64, datagram: &mut [u8]) -> Result<(), Error> {
        if self.state == State::Closed {
            return Ok(());
        }
        let plain = match self.keys.open(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.bad_packets += 1;
                return Err(e);
            }
        };
        self.handle_plaintext(now, plain)
    }

    /// A packet's plaintext, once opened (the fuzz target enters here).
    #[doc(hidden)]
    pub fn handle_plaintext(&mut self, now: u64, plain: &[u8]) -> Result<(), Error> {
        let mut r = Reader::new(plain);
        let header = Header::parse(&mut r)?;
        let expected = match self.mode {
            Mode::Initiator => Mode::Responder,
            _ => Mode::Initiator,
        };
        if header.mode != expected {
            self.stats.bad_packets += 1;
            return Err(Error::BadMode);
        }
        self.stats.packets_in += 1;
        self.last_received = now;
        if let Some(ts) = header.timestamp {
            // The newest timestamp is echoed, not the last to arrive: a
            // packet the path held back does not make the echo older, so
            // an echo from before a retransmission was sent says that
            // the retransmission had not arrived (see `send::AckTiming`).
            let newer = self.ts_received.is_none_or(|(old, at)| {
                (ts.wrapping_sub(old) as i16) > 0 || now >= at + ECHO_NEWEST_MS
            });
            if newer {
                self.ts_received = Some((ts, now));
            }
        }
        if let Some(echo) = header.timestamp_echo {
            self.on_echo(now, echo);
        }
        let echoed_sent_at = header.timestamp_echo.map(|echo| {
            now.saturating_sub(u64::from(timestamp(now).wrapping_sub(echo)) * TIMESTAMP_MS)
        });
        let mut had_data = false;
        // Next User Data continues the chunk before it.
        let mut last: Option<(u64, u64, u64)> = None;
        for chunk in packet::Chunks::new(r.remaining()) {
            if let Ok(c) = &chunk {
                if !matches!(c, Chunk::UserData(_) | Chunk::Ack { .. }) {
                    tracing::trace!(?c, "rtmfp chunk");
                }
            }
            let chunk = match chunk {
                Ok(c) => c,
                Err(_) => {
                    // A malformed chunk ends the packet; what came before holds.
                    self.stats.bad_packets += 1;
                    break;
                }
            };
            match chunk {
                Chunk::UserData(d) => {
                    let (flow, seq, fsn) = match (d.position, last) {
                        (Some((flow, seq, offset)), _) => (flow, seq, seq - offset),
                        (None, Some((flow, seq, fsn))) => (flow, seq.saturating_add(1), fsn),
                        (None, None) => continue,
                    };
                    last = Some((flow, seq, fsn));
                    had_data = true;
                    self.on_user_data(flow, seq, fsn, &d);
                }
                Chunk::Ack {
                    flow,
                    buffer_blocks,
                    cumulative,
                    rest,
                    ranges,
                } => {
                    let selective = if ranges {
                        Selective::Ranges(rest)
                    } else {
                        Selective::Bitmap(rest)
                    };
                    self.on_ack(
                        now,
                        flow,
                        cumulative,
                        selective,
                        buffer_blocks,
                        echoed_sent_at,
                    );
                }
                Chunk::Ping(body) if body.len() <= MAX_PING => {
                    self.ping_reply = Some(body.to_vec());
                }
                Chunk::PingReply(_) => {}
                Chunk::BufferProbe { flow } => {
                    if let Some(f) = self.inbound.get_mut(&flow) {
                        f.ack_due = true;
                        self.ack_now = true;
                    }
                }
                Chunk::FlowException { flow, code } => {
                    if let Some(f) = self.out.get_mut(&flow) {
                        if !f.rejected {
                            f.rejected = true;
                            self.events
                                .push_back(Event::SendFlowRejected { flow, code });
                        }
                    }
                }
                Chunk::Close => {
                    self.close_ack_due = true;
                    if self.state != State::Closed {
                        self.state = State::Closed;
                        self.events.push_back(Event::Closed {
                            reason: CloseReason::ByPeer,
                        });
                    }
                }
                Chunk::CloseAck => {
                    // Solicited, it ends castgate's close; unsolicited, it
                    // is the peer's abrupt close (rtmfp-cpp's abort).
                    let reason = match self.state {
                        State::Closing { .. } => CloseReason::Local,
                        _ => CloseReason::ByPeer,
                    };
                    if self.state != State::Closed {
                        self.state = State::Closed;
                        self.events.push_back(Event::Closed { reason });
                    }
                }
                _ => {}
            }
        }
        if had_data {
            self.packets_since_ack += 1;
            if self.packets_since_ack >= ACK_AFTER_PACKETS {
                self.ack_now = true;
            } else if self.delayed_ack_at.is_none() {
                self.delayed_ack_at = Some(now + DELAYED_ACK_MS);
            }
        }
        Ok(())
    }

    fn on_user_data(&mut self, flow: u64, seq: u64, fsn: u64, d: &UserData<'_>) {
        if !self.inbound.contains_key(&flow) {
            let mut metadata = None;
            let mut association = None;
            for o in flash::options(d.options) {
                match o {
                    Ok(flash::Opt::Value { kind, value }) if kind == flash::USER_DATA_METADATA => {
                        metadata = Some(Bytes::copy_from_slice(value));
                    }
                    Ok(flash::Opt::Value { kind, value })
                        if kind == flash::USER_DATA_RETURN_ASSOCIATION =>
                    {
                        association = Reader::new(value).vlu().ok();
                    }
                    _ => {}
                }
            }
            // A flow is known by its first fragment's metadata; without it
            // (its first fragments were lost) the sender repeats it.
            let Some(metadata) = metadata else {
                return;
            };
            let open = self
                .inbound
                .values()
                .filter(|f| !f.finished_reported)
                .count();
            if open >= self.config.max_recv_flows {
                if self.refused.len() < MAX_REFUSALS && !self.refused.contains(&flow) {
                    self.refused.push(flow);
                }
                self.ack_now = true;
                return;
            }
            // Finished flows linger to acknowledge a repeated FIN, as many
            // as may be open; the oldest goes first.
            if self.inbound.len() >= 2 * self.config.max_recv_flows {
                let oldest = self
                    .inbound
                    .iter()
                    .find(|(_, f)| f.finished_reported)
                    .map(|(&id, _)| id);
                if let Some(id) = oldest {
                    self.inbound.remove(&id);
                }
            }
            self.inbound.insert(
                flow,
                InFlow {
                    flow: RecvFlow::new(self.config.recv),
                    ack_due: false,
                    finished_reported: false,
                },
            );
            self.events.push_back(Event::FlowOpened {
                flow,
                metadata,
                association,
            });
        }
        let Some(f) = self.inbound.get_mut(&flow) else {
            return;
        };
        f.ack_due = true;
        let in_order = seq == f.flow.cumulative().saturating_add(1);
        let accepted = f
            .flow
            .receive(seq, fsn, d.flags, Bytes::copy_from_slice(d.data));
        if accepted == recv::Accepted::New && (!in_order || seq != f.flow.cumulative()) {
            // Out of order, or filling a hole: the sender learns of the
            // hole, or of the late fragment, at once (and so measures how
            // late it was without an acknowledgement delay in it).
            self.ack_now = true;
        }
        while let Some(data) = f.flow.poll_message() {
            self.events.push_back(Event::Message { flow, data });
        }
        if f.flow.is_finished() && !f.finished_reported {
            f.finished_reported = true;
            self.events.push_back(Event::FlowFinished { flow });
        }
    }

    fn on_echo(&mut self, now: u64, echo: u16) {
        if self.last_echo == Some(echo) {
            return;
        }
        self.last_echo = Some(echo);
        let sample = u64::from(timestamp(now).wrapping_sub(echo)) * TIMESTAMP_MS;
        if sample > MAX_RTO_MS * 6 {
            return;
        }
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                self.rttvar = (3 * self.rttvar + srtt.abs_diff(sample)) / 4;
                self.srtt = Some((7 * srtt + sample) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(sample);
        self.rto = (srtt + 4 * self.rttvar + DELAYED_ACK_MS).clamp(MIN_RTO_MS, MAX_RTO_MS);
    }

    /// How long a fragment is out before NAKs may call it lost: a round
    /// trip and four deviations, as the retransmission timeout has it but
    /// without the delayed-ack allowance, and an eighth more than the
    /// longest round trip of a reordered fragment lately (a path that
    /// reorders by more than its variance suggests, as when bursts meet
    /// jitter, teaches the sender how long to wait), up to the
    /// retransmission timeout. 0 before anything is measured (NAKs alone,
    /// as RFC 7016 has it).
    fn loss_delay(&self) -> u64 {
        let smoothed = self
            .srtt
            .map_or(0, |srtt| srtt + (4 * self.rttvar).max(TIMESTAMP_MS));
        let reordered = self.reordered_rtt.get();
        // Never past the retransmission timeout, whatever was learnt.
        smoothed.max(reordered + reordered / 8).min(self.rto)
    }

    fn on_ack(
        &mut self,
        now: u64,
        flow: u64,
        cumulative: u64,
        selective: Selective<'_>,
        blocks: u64,
        echoed_sent_at: Option<u64>,
    ) {
        let timing = AckTiming {
            now,
            loss_delay: self.loss_delay(),
            echoed_sent_at,
        };
        let in_flight = self.in_flight();
        let Some(f) = self.out.get_mut(&flow) else {
            return;
        };
        let outcome = f.flow.on_ack(cumulative, selective, blocks, timing);
        if let Some(rtt) = outcome.reordered_rtt {
            self.reordered_rtt.update(now, rtt.min(MAX_RTO_MS));
        }
        if f.flow.is_complete() {
            self.out.remove(&flow);
        }
        if outcome.acked_bytes > 0 {
            self.last_progress = now;
            if in_flight * 2 >= self.cwnd {
                if self.cwnd < self.ssthresh {
                    self.cwnd += outcome.acked_bytes.min(MSS);
                } else {
                    self.cwnd += (MSS * outcome.acked_bytes / self.cwnd).max(1);
                }
            }
        }
        if let Some(sent_at) = outcome.lost_sent_at {
            self.stats.retransmitted_bytes += outcome.lost_bytes as u64;
            // Once per round trip: only a loss of data sent after the last
            // reduction reduces again.
            if sent_at >= self.last_reduction {
                let used = self.cwnd.min(in_flight);
                let time_critical = self
                    .time_critical_at
                    .is_some_and(|at| now < at + TIME_CRITICAL_MS);
                let cut = if time_critical { used / 8 } else { used / 2 };
                self.ssthresh = (used - cut).max(CWND_AFTER_TIMEOUT);
                self.cwnd = self.ssthresh;
                self.last_reduction = now;
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.out.values().map(|f| f.flow.in_flight()).sum()
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.state == State::Closed {
            return None;
        }
        let mut at = self.last_received + self.config.idle_timeout_ms;
        at = at.min(self.last_received.max(self.last_ping) + self.config.keepalive_ms);
        if let Some(d) = self.delayed_ack_at {
            at = at.min(d);
        }
        if self.in_flight() > 0 {
            at = at.min(self.last_progress + self.rto);
        }
        if let State::Closing { last_sent, .. } = self.state {
            at = at.min(last_sent + CLOSE_REPEAT_MS);
        }
        Some(at)
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.state == State::Closed {
            return;
        }
        if now >= self.last_received + self.config.idle_timeout_ms {
            self.state = State::Closed;
            self.events.push_back(Event::Closed {
                reason: CloseReason::IdleTimeout,
            });
            return;
        }
        if let State::Closing { since, .. } = self.state {
            // Give up waiting for the acknowledgement after a while.
            if now >= since + self.config.keepalive_ms {
                self.state = State::Closed;
                self.events.push_back(Event::Closed {
                    reason: CloseReason::Local,
                });
                return;
            }
        }
        if self.delayed_ack_at.is_some_and(|d| now >= d) {
            self.ack_now = true;
        }
        if now >= self.last_received.max(self.last_ping) + self.config.keepalive_ms {
            self.ping_due = true;
            self.last_ping = now;
        }
        if self.in_flight() > 0 && now >= self.last_progress + self.rto {
            for f in self.out.values_mut() {
                let lost = f.flow.on_timeout();
                self.stats.retransmitted_bytes += lost as u64;
            }
            self.stats.timeouts += 1;
            self.ssthresh = (self.cwnd / 2).max(CWND_AFTER_TIMEOUT);
            self.cwnd = CWND_AFTER_TIMEOUT;
            self.rto = (self.rto * 3 / 2).min(MAX_RTO_MS);
            self.last_progress = now;
            self.last_reduction = now;
        }
    }

    /// The next datagram to send, sealed, or `None` when nothing is due.
    /// Call until `None`.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.state == State::Closed && !self.close_ack_due {
            return None;
        }
        let mut header = Header::new(self.mode);
        header.timestamp = Some(timestamp(now));
        if let Some((ts, at)) = self.ts_received {
            if now.saturating_sub(at) < MAX_ECHO_AGE_MS {
                header.timestamp_echo = Some(ts.wrapping_add(((now - at) / TIMESTAMP_MS) as u16));
            }
        }
        let mut b = Builder::new(&header, MAX_SESSION_PACKET);
        if self.close_ack_due {
            self.close_ack_due = false;
            b.push(&Chunk::CloseAck);
        }
        if let State::Closing { since, last_sent } = self.state {
            if last_sent == 0 || now >= last_sent + CLOSE_REPEAT_MS {
                b.push(&Chunk::Close);
                self.state = State::Closing {
                    since,
                    last_sent: now.max(1),
                };
            }
        }
        if self.state == State::Closed {
            return self.seal(b);
        }
        if let Some(body) = self.ping_reply.take() {
            b.push(&Chunk::PingReply(&body));
        }
        if self.ping_due {
            self.ping_due = false;
            b.push(&Chunk::Ping(&[]));
        }
        if self.ack_now || self.delayed_ack_at.is_some_and(|d| now >= d) {
            self.push_acks(&mut b);
        }
        if matches!(self.state, State::Open) {
            self.push_data(now, &mut b);
        }
        self.seal(b)
    }

    fn seal(&mut self, b: Builder) -> Option<Vec<u8>> {
        if b.is_empty() {
            return None;
        }
        let mut buf = b.into_buf();
        self.keys.seal(self.far_session_id, &mut buf);
        self.stats.packets_out += 1;
        Some(buf)
    }

    fn push_acks(&mut self, b: &mut Builder) {
        let mut all_sent = true;
        while let Some(&flow) = self.refused.last() {
            let c = Chunk::FlowException {
                flow,
                code: EXCEPTION_REFUSED,
            };
            if !b.push(&c) {
                return;
            }
            self.refused.pop();
        }
        for (&id, f) in self.inbound.iter_mut().filter(|(_, f)| f.ack_due) {
            // Ranges up to what is left of the packet (truncation is allowed).
            let room = b.room().saturating_sub(3 * super::wire::MAX_VLU_LEN);
            let ranges = f.flow.ack_ranges(room);
            let c = Chunk::Ack {
                ranges: true,
                flow: id,
                buffer_blocks: f.flow.buffer_blocks(),
                cumulative: f.flow.cumulative(),
                rest: &ranges,
            };
            if !b.push(&c) {
                all_sent = false;
                break;
            }
            f.ack_due = false;
        }
        if all_sent {
            self.ack_now = false;
            self.delayed_ack_at = None;
            self.packets_since_ack = 0;
        }
    }

    fn push_data(&mut self, now: u64, b: &mut Builder) {
        let ids: Vec<u64> = self.out.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let start = ids
            .iter()
            .position(|&id| id > self.last_served)
            .unwrap_or(0);
        let mut in_flight = self.in_flight();
        let mut progress = true;
        while progress {
            progress = false;
            for k in 0..ids.len() {
                let id = ids[(start + k) % ids.len()];
                let Some(f) = self.out.get_mut(&id) else {
                    continue;
                };
                if f.rejected {
                    continue;
                }
                let window = (self.cwnd as u64).min(f.flow.peer_buffer.max(MSS as u64));
                let allowed = (in_flight as u64) < window;
                if !allowed && !f.flow.has_lost() {
                    continue;
                }
                let options: &[u8] = if f.flow.acked_any { &[] } else { &f.options };
                let room = b.room().saturating_sub(DATA_OVERHEAD + options.len());
                if room == 0 && !f.flow.has_new() {
                    continue;
                }
                let Some(o) = f.flow.next_fragment(now, room, allowed) else {
                    continue;
                };
                let chunk = Chunk::UserData(UserData {
                    flags: packet::DataFlags {
                        options: !options.is_empty(),
                        ..o.flags
                    },
                    position: Some((id, o.seq, o.fsn_offset)),
                    options,
                    data: &o.data,
                });
                let pushed = b.push(&chunk);
                debug_assert!(pushed, "a fragment is cut to the room left");
                if o.retransmission {
                    self.stats.retransmitted_bytes += o.data.len() as u64;
                }
                in_flight += o.data.len();
                self.last_served = id;
                progress = true;
            }
        }
    }
}

/// A responder session with fixed keys and small limits, for the fuzz
/// target: its peer's packets are the fuzzer's plaintexts.
#[doc(hidden)]
pub fn fuzz_session() -> Session {
    let key = super::crypto::PacketKey::new(&[7; 16]);
    let keys = SessionKeys::plain(key.clone(), key);
    let config = SessionConfig {
        max_recv_flows: 4,
        recv: RecvLimits {
            buffer: 64 << 10,
            fragments: 256,
            message: 32 << 10,
            window: 4096,
        },
        send_buffer: 64 << 10,
        ..SessionConfig::default()
    };
    Session::new(false, 1, keys, config, 0)
}

/// A packet timestamp: the clock in 4 ms ticks, modulo 2^16.
pub fn timestamp(now_ms: u64) -> u16 {
    (now_ms / TIMESTAMP_MS) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmfp::crypto::{DhGroup, DhKeyPair, PacketOptions};

    /// Two ends with matching keys, as a handshake leaves them.
    pub(crate) fn pair(now: u64) -> (Session, Session) {
        let a = DhKeyPair::from_seed(DhGroup::Modp1024, &[1; 28]);
        let b = DhKeyPair::from_seed(DhGroup::Modp1024, &[2; 28]);
        let secret = a.shared_secret(b.public()).unwrap();
        let (skic, skrc) = (b"skic".to_vec(), b"skrc".to_vec());
        let client = Session::new(
            true,
            20,
            SessionKeys::derive(&secret, &skic, &skrc, PacketOptions::default()),
            SessionConfig::default(),
            now,
        );
        let server = Session::new(
            false,
            10,
            SessionKeys::derive(&secret, &skrc, &skic, PacketOptions::default()),
            SessionConfig::default(),
            now,
        );
        (client, server)
    }

    /// Moves every datagram each side has to the other until both are
    /// quiet, dropping those `lose` picks; returns the datagrams moved.
    fn exchange(
        a: &mut Session,
        b: &mut Session,
        now: u64,
        lose: &mut dyn FnMut() -> bool,
    ) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            while let Some(mut d) = a.poll_transmit(now) {
                any = true;
                moved += 1;
                if !lose() {
                    b.handle_datagram(now, &mut d).unwrap();
                }
            }
            while let Some(mut d) = b.poll_transmit(now) {
                any = true;
                moved += 1;
                if !lose() {
                    a.handle_datagram(now, &mut d).unwrap();
                }
            }
            if !any {
                return moved;
            }
        }
    }

    fn messages(s: &mut Session) -> Vec<(u64, Bytes)> {
        std::iter::from_fn(|| s.poll_event())
            .filter_map(|e| match e {
                Event::Message { flow, data } => Some((flow, data)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_flow_opens_with_its_metadata_and_carries_big_messages() {
        let (mut c, mut s) = pair(0);
        let flow = c.open_flow(b"TC\x04\x00\x00", None);
        let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
        c.send(flow, Bytes::from_static(b"hello"), None).unwrap();
        c.send(flow, big.clone(), None).unwrap();
        let mut now = 0;
        let mut got = Vec::new();
        let mut opened = None;
        while got.len() < 2 && now < 10_000 {
            exchange(&mut c, &mut s, now, &mut || false);
            for e in std::iter::from_fn(|| s.poll_event()) {
                match e {
                    Event::FlowOpened { flow, metadata, .. } => opened = Some((flow, metadata)),
                    Event::Message { data, .. } => got.push(data),
                    _ => {}
                }
            }
            now += 10;
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
        assert_eq!(opened, Some((flow, Bytes::from_static(b"TC\x04\x00\x00"))));
        assert_eq!(got, [Bytes::from_static(b"hello"), big]);
        assert!(c.rtt_ms().is_some(), "the echo measured a round trip");
        assert_eq!(c.buffered(flow), 0, "all acknowledged");
    }

    #[test]
    fn every_reliable_message_arrives_in_order_through_loss() {
        let (mut c, mut s) = pair(0);
        let flow = c.open_flow(b"TC", None);
        let mut rng = fastrand::Rng::with_seed(7);
        let sent: Vec<Bytes> = (0..300)
            .map(|i| Bytes::from(vec![i as u8; 1 + rng.usize(..3000)]))
            .collect();
        let mut queue = sent.clone().into_iter();
        let mut got = Vec::new();
        let mut now = 0;
        while got.len() < sent.len() && now < 600_000 {
            while c.buffered(flow) < 64 << 10 {
                let Some(m) = queue.next() else { break };
                c.send(flow, m, None).unwrap();
            }
            exchange(&mut c, &mut s, now, &mut || rng.u8(..) < 26); // ~10 % each way
            got.extend(messages(&mut s).into_iter().map(|(_, d)| d));
            now += 20;
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
        assert_eq!(got.len(), sent.len(), "by {now} ms");
        assert!(got == sent, "in order, unchanged");
        assert!(c.stats.retransmitted_bytes > 0);
        assert!(!s.is_closed() && !c.is_closed());
    }

    /// What [`through_link`] saw.
    #[derive(Debug)]
    struct LinkRun {
        frames_sent: usize,
        frames_got: usize,
        /// Retransmitted after the first 2 s (round trips known by then).
        resent_after_warmup: u64,
        timeouts: u64,
    }

    /// 30 frames a second of 12 KB each (~3 Mbit/s) for 20 s from a
    /// client to a server, handed over every 100 ms as a relay flushes
    /// them, over a link that loses `loss_per_mille` of the datagrams each
    /// way and holds each of the others 0–`jitter` ms (uniformly, each on
    /// its own, so datagrams overtake one another). `media`: the frames go
    /// as time-critical data.
    fn through_link(loss_per_mille: u64, jitter: u64, media: bool) -> LinkRun {
        let (mut c, mut s) = pair(0);
        let flow = c.open_flow(b"TC", None);
        let mut rng = fastrand::Rng::with_seed(11);
        // (arrival, to the server, datagram)
        let mut link: Vec<(u64, bool, Vec<u8>)> = Vec::new();
        let (mut sent, mut got) = (0usize, 0usize);
        let mut warm = 0;
        for now in 0..20_000u64 {
            if now % 100 == 0 {
                for _ in 0..3 {
                    let frame = Bytes::from(vec![sent as u8; 12_000]);
                    let queued = if media {
                        c.send_media(now, flow, frame, None)
                    } else {
                        c.send(flow, frame, None)
                    };
                    queued.expect("the sender keeps up: its buffer never fills");
                    sent += 1;
                }
            }
            c.handle_timeout(now);
            s.handle_timeout(now);
            for (from, to_server) in [(&mut c, true), (&mut s, false)] {
                while let Some(d) = from.poll_transmit(now) {
                    if rng.u64(..1000) >= loss_per_mille {
                        link.push((now + rng.u64(..=jitter), to_server, d));
                    }
                }
            }
            let (due, held): (Vec<_>, Vec<_>) = link.drain(..).partition(|(at, ..)| *at <= now);
            link = held;
            for (_, to_server, mut d) in due {
                let to = if to_server { &mut s } else { &mut c };
                to.handle_datagram(now, &mut d).unwrap();
            }
            for (_, data) in messages(&mut s) {
                assert_eq!(data[0], got as u8, "in order");
                got += 1;
            }
            if now == 2_000 {
                warm = c.stats.retransmitted_bytes;
            }
        }
        LinkRun {
            frames_sent: sent,
            frames_got: got,
            resent_after_warmup: c.stats.retransmitted_bytes - warm,
            timeouts: c.stats.timeouts,
        }
    }

    #[test]
    fn a_reordering_link_without_loss_costs_no_retransmission_once_a_round_trip_is_known() {
        let run = through_link(0, 50, false);
        assert!(run.frames_got + 5 >= run.frames_sent, "{run:?}");
        assert_eq!((run.resent_after_warmup, run.timeouts), (0, 0), "{run:?}");
    }

    #[test]
    fn media_keeps_its_bitrate_through_loss_and_jitter() {
        let run = through_link(50, 50, true);
        assert!(run.frames_got + 15 >= run.frames_sent, "{run:?}");
        assert!(run.resent_after_warmup > 0, "{run:?}");
    }

    #[test]
    fn late_media_is_abandoned_and_what_follows_still_arrives() {
        let (mut c, mut s) = pair(0);
        let flow = c.open_flow(b"TC", None);
        let mut now = 0;
        // Everything of the first message is lost; it expires at 100 ms.
        c.send(flow, Bytes::from(vec![1; 5000]), Some(100)).unwrap();
        exchange(&mut c, &mut s, now, &mut || true);
        now = 150;
        c.send(flow, Bytes::from_static(b"fresh"), None).unwrap();
        for _ in 0..400 {
            exchange(&mut c, &mut s, now, &mut || false);
            now += 10;
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
        let got = messages(&mut s);
        assert_eq!(got, [(flow, Bytes::from_static(b"fresh"))]);
        assert_eq!(
            c.buffered(flow),
            0,
            "the abandoned fragments were acknowledged"
        );
    }

    #[test]
    fn a_peer_over_the_flow_limit_gets_a_flow_exception() {
        let (mut c, mut s) = pair(0);
        s.config.max_recv_flows = 1;
        let f1 = c.open_flow(b"one", None);
        let f2 = c.open_flow(b"two", None);
        c.send(f1, Bytes::from_static(b"a"), None).unwrap();
        c.send(f2, Bytes::from_static(b"b"), None).unwrap();
        for now in 0..5 {
            exchange(&mut c, &mut s, now * 250, &mut || false);
            c.handle_timeout(now * 250);
            s.handle_timeout(now * 250);
        }
        let rejected: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(
            rejected,
            [Event::SendFlowRejected {
                flow: f2,
                code: EXCEPTION_REFUSED
            }]
        );
        assert_eq!(messages(&mut s), [(f1, Bytes::from_static(b"a"))]);
        assert_eq!(c.send(f2, Bytes::from_static(b"c"), None), Err(Full));
    }

    #[test]
    fn close_is_acknowledged_and_silence_times_out() {
        let (mut c, mut s) = pair(0);
        c.close(0);
        exchange(&mut c, &mut s, 0, &mut || false);
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed {
                reason: CloseReason::ByPeer
            })
        );
        assert_eq!(
            c.poll_event(),
            Some(Event::Closed {
                reason: CloseReason::Local
            })
        );
        let (mut c, _s) = pair(0);
        let mut now = 0;
        while !c.is_closed() {
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
            while c.poll_transmit(now).is_some() {}
        }
        assert_eq!(now, SessionConfig::default().idle_timeout_ms);
        assert_eq!(
            c.poll_event(),
            Some(Event::Closed {
                reason: CloseReason::IdleTimeout
            })
        );
    }

    #[test]
    fn an_unsolicited_close_acknowledgement_is_the_peer_s_abort() {
        let (c, mut s) = pair(0);
        let mut header = Header::new(Mode::Initiator);
        header.timestamp = Some(0);
        let mut b = Builder::new(&header, MAX_SESSION_PACKET);
        b.push(&Chunk::CloseAck);
        let mut d = b.into_buf();
        let mut keys = c.keys.clone();
        keys.seal(10, &mut d);
        s.handle_datagram(0, &mut d).unwrap();
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed {
                reason: CloseReason::ByPeer
            })
        );
        assert!(s.is_closed());
    }

    #[test]
    fn a_datagram_under_the_wrong_key_or_mode_is_dropped() {
        let (mut c, mut s) = pair(0);
        let flow = c.open_flow(b"x", None);
        c.send(flow, Bytes::from_static(b"y"), None).unwrap();
        let mut d = c.poll_transmit(0).unwrap();
        // The client's own packet back to itself: wrong key.
        assert!(c.handle_datagram(0, &mut d.clone()).is_err());
        assert!(s.handle_datagram(0, &mut d).is_ok());
        assert_eq!(c.stats.bad_packets, 1);
    }
}
