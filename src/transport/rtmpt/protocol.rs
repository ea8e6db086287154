//! The RTMPT protocol's bookkeeping, sans I/O: commands, sequence numbers,
//! the adaptive polling interval and inactivity.
//!
//! RTMPT as Flash Player and ffmpeg speak it: every request is a POST with
//! `Content-Type: application/x-fcs` on a keep-alive HTTP/1.1 connection.
//! `POST /open/1` returns `<session id>\n`. Then `/send/<id>/<seq>` carries
//! client RTMP bytes, `/idle/<id>/<seq>` asks for server bytes, and
//! `/close/<id>/<seq>` ends the session; the last two carry a 1-byte dummy
//! body that is not RTMP. Every reply to those starts with one byte, the
//! polling interval the client should wait before its next idle poll, then
//! whatever the server has queued for the client. `seq` counts the
//! session's requests (ffmpeg starts at 0, Flash at 0 or 1).

use std::time::{Duration, Instant};

/// The content type of every RTMPT request and reply.
pub const CONTENT_TYPE: &str = "application/x-fcs";

/// The polling interval a busy session gets.
pub const MIN_INTERVAL: u8 = 1;
/// The longest polling interval handed out.
pub const MAX_INTERVAL: u8 = 32;
/// Empty replies in a row before the interval grows by one step.
pub const EMPTY_REPLIES_PER_STEP: u32 = 10;
/// The interval of a session whose RTMP connection has ended.
pub const ENDED_INTERVAL: u8 = 0;

/// A tunnel request after `/open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Send,
    Idle,
    Close,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        match s {
            "send" => Some(Command::Send),
            "idle" => Some(Command::Idle),
            "close" => Some(Command::Close),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Send => "send",
            Command::Idle => "idle",
            Command::Close => "close",
        }
    }

    /// Whether the request body is RTMP data (only `/send`'s is; the others
    /// carry a dummy byte).
    pub fn carries_data(self) -> bool {
        self == Command::Send
    }
}

/// Why a request was refused. A refused request changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error("sequence number {got} replayed or out of order (expected {expected})")]
    Replayed { expected: u64, got: u64 },
    #[error("sequence number {got} skips ahead (expected {expected})")]
    Skipped { expected: u64, got: u64 },
    #[error("first sequence number must be 0 or 1, got {got}")]
    BadStart { got: u64 },
    #[error("the session is closed")]
    Closed,
}

/// One tunnel session's protocol state.
#[derive(Debug)]
pub struct TunnelState {
    /// The sequence number the next request must carry (`None`: no request
    /// yet, 0 or 1 accepted).
    next_seq: Option<u64>,
    interval: u8,
    empty_replies: u32,
    last_request: Instant,
    closed: bool,
}

impl TunnelState {
    pub fn new(now: Instant) -> TunnelState {
        TunnelState {
            next_seq: None,
            interval: MIN_INTERVAL,
            empty_replies: 0,
            last_request: now,
            closed: false,
        }
    }

    /// Checks a request's sequence number. Accepted, the number is used up
    /// and the session's inactivity clock restarts; refused, nothing changes.
    pub fn accept(&mut self, cmd: Command, seq: u64, now: Instant) -> Result<(), SeqError> {
        self.check(seq)?;
        self.next_seq = Some(seq + 1);
        self.last_request = now;
        if cmd == Command::Close {
            self.closed = true;
        }
        Ok(())
    }

    /// Whether [`accept`](Self::accept) would take `seq` now, changing
    /// nothing: a request is checked before its body is read.
    pub fn check(&self, seq: u64) -> Result<(), SeqError> {
        if self.closed {
            return Err(SeqError::Closed);
        }
        match self.next_seq {
            None if seq > 1 => return Err(SeqError::BadStart { got: seq }),
            None => {}
            Some(expected) if seq < expected => {
                return Err(SeqError::Replayed { expected, got: seq })
            }
            Some(expected) if seq > expected => {
                return Err(SeqError::Skipped { expected, got: seq })
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The interval byte for a reply that carried `received` client bytes
    /// in and `sent` server bytes out. Traffic either way resets it to the
    /// minimum; every [`EMPTY_REPLIES_PER_STEP`] empty replies in a row make
    /// it one step longer, up to [`MAX_INTERVAL`] (Red5 and FMS behave the
    /// same way). An ended session says [`ENDED_INTERVAL`].
    pub fn reply_interval(&mut self, received: usize, sent: usize, ended: bool) -> u8 {
        if ended {
            return ENDED_INTERVAL;
        }
        if received > 0 || sent > 0 {
            self.empty_replies = 0;
            self.interval = MIN_INTERVAL;
        } else {
            self.empty_replies += 1;
            if self.empty_replies >= EMPTY_REPLIES_PER_STEP {
                self.empty_replies = 0;
                self.interval = (self.interval + 1).min(MAX_INTERVAL);
            }
        }
        self.interval
    }

    /// Marks activity (a request finished).
    pub fn touch(&mut self, now: Instant) {
        self.last_request = self.last_request.max(now);
    }

    pub fn last_request(&self) -> Instant {
        self.last_request
    }

    /// Whether no request came for `timeout`.
    pub fn expired(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_request) >= timeout
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Parses a sequence number from a URL segment (decimal, no sign).
pub fn parse_seq(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether a string can be a session id this server handed out: hex of a
/// fixed length. Anything else is refused before a table lookup.
pub fn plausible_session_id(s: &str) -> bool {
    s.len() == SESSION_ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Session ids are 128 random bits in hex (ffmpeg accepts up to 63 chars).
pub const SESSION_ID_LEN: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_in_order() {
        let t0 = Instant::now();
        let mut s = TunnelState::new(t0);
        s.accept(Command::Send, 0, t0).unwrap();
        s.accept(Command::Idle, 1, t0).unwrap();
        s.accept(Command::Send, 2, t0).unwrap();
        // Flash may start at 1.
        let mut f = TunnelState::new(t0);
        f.accept(Command::Idle, 1, t0).unwrap();
        f.accept(Command::Send, 2, t0).unwrap();
    }

    #[test]
    fn replayed_and_skipped_are_refused_without_effect() {
        let t0 = Instant::now();
        let mut s = TunnelState::new(t0);
        assert_eq!(
            s.accept(Command::Send, 5, t0),
            Err(SeqError::BadStart { got: 5 })
        );
        s.accept(Command::Send, 0, t0).unwrap();
        s.accept(Command::Send, 1, t0).unwrap();
        assert_eq!(
            s.accept(Command::Send, 1, t0),
            Err(SeqError::Replayed {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            s.accept(Command::Send, 0, t0),
            Err(SeqError::Replayed {
                expected: 2,
                got: 0
            })
        );
        assert_eq!(
            s.accept(Command::Idle, 3, t0),
            Err(SeqError::Skipped {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            s.accept(Command::Send, u64::MAX, t0),
            Err(SeqError::Skipped {
                expected: 2,
                got: u64::MAX
            })
        );
        // The refusals used nothing up, nor does a check.
        assert_eq!(s.check(2), Ok(()));
        assert_eq!(s.check(2), Ok(()));
        s.accept(Command::Send, 2, t0).unwrap();
        s.accept(Command::Close, 3, t0).unwrap();
        assert!(s.is_closed());
        assert_eq!(s.accept(Command::Idle, 4, t0), Err(SeqError::Closed));
        assert_eq!(s.check(4), Err(SeqError::Closed));
    }

    #[test]
    fn refused_requests_do_not_keep_a_session_alive() {
        let t0 = Instant::now();
        let mut s = TunnelState::new(t0);
        s.accept(Command::Send, 0, t0).unwrap();
        let later = t0 + Duration::from_secs(20);
        assert!(s.accept(Command::Send, 7, later).is_err());
        assert!(s.expired(later, Duration::from_secs(10)));
        s.accept(Command::Idle, 1, later).unwrap();
        assert!(!s.expired(later, Duration::from_secs(10)));
        assert!(s.expired(later + Duration::from_secs(10), Duration::from_secs(10)));
    }

    #[test]
    fn polling_interval_adapts() {
        let t0 = Instant::now();
        let mut s = TunnelState::new(t0);
        assert_eq!(s.reply_interval(10, 0, false), MIN_INTERVAL);
        // Empty replies: one step per EMPTY_REPLIES_PER_STEP.
        let mut seen = Vec::new();
        for _ in 0..(EMPTY_REPLIES_PER_STEP * 40) {
            seen.push(s.reply_interval(0, 0, false));
        }
        assert_eq!(seen[0], MIN_INTERVAL);
        assert_eq!(seen[EMPTY_REPLIES_PER_STEP as usize - 1], MIN_INTERVAL + 1);
        assert!(seen.windows(2).all(|w| w[1] >= w[0]), "never shrinks idle");
        assert_eq!(*seen.last().unwrap(), MAX_INTERVAL, "capped");
        // Traffic either way resets it.
        assert_eq!(s.reply_interval(0, 1, false), MIN_INTERVAL);
        for _ in 0..EMPTY_REPLIES_PER_STEP {
            s.reply_interval(0, 0, false);
        }
        assert_eq!(s.reply_interval(1, 0, false), MIN_INTERVAL);
        assert_eq!(s.reply_interval(1, 0, true), ENDED_INTERVAL);
    }

    #[test]
    fn parsing() {
        assert_eq!(Command::parse("send"), Some(Command::Send));
        assert_eq!(Command::parse("open"), None);
        assert!(Command::Send.carries_data());
        assert!(!Command::Idle.carries_data());
        assert_eq!(parse_seq("0"), Some(0));
        assert_eq!(parse_seq("123"), Some(123));
        for bad in ["", "-1", "+1", "1a", "99999999999999999999", " 1"] {
            assert_eq!(parse_seq(bad), None, "{bad}");
        }
        assert!(plausible_session_id(&"a1".repeat(16)));
        assert!(!plausible_session_id("abc"));
        assert!(!plausible_session_id(&"zz".repeat(16)));
    }
}
