//! A flow's sending side (RFC 7016 §3.6.2): messages cut into fragments as
//! packets have room, sequence numbers, acknowledgements, loss detection
//! and per-message reliability.
//!
//! A message may carry a deadline (a media frame is worth nothing late).
//! Once it has passed, what is left of the message is not sent, and a
//! fragment of it that is lost is sent again as an "abandon" fragment with
//! no data, so that the receiver's sequence has no hole; the forward
//! sequence number (FSN) tells the receiver not to wait for any of it.

use std::collections::VecDeque;

use bytes::Bytes;

use super::packet::{DataFlags, Fragment};
use super::wire::Reader;

/// A fragment is taken as lost once this many acknowledgements have
/// covered fragments sent after it (rtmfp-cpp's `NAKS_FOR_LOSS`), and
/// once it has been out for the session's loss delay: a network that
/// reorders packets acknowledges fragments sent later first, and counting
/// acknowledgements alone would resend what is only late (and halve the
/// congestion window each round trip for it).
const NAKS_FOR_LOSS: u8 = 3;

/// How far an echoed timestamp may be from when its packet was sent: a
/// tick of the 4 ms clock.
const ECHO_PRECISION_MS: u64 = 4;

/// What an acknowledgement says beyond its cumulative sequence number
/// (RFC 7016 §2.3.13, §2.3.14). Either may be truncated.
#[derive(Debug, Clone, Copy)]
pub enum Selective<'a> {
    /// Acknowledgement Ranges (0x51): pairs of VLUs, holes − 1 then
    /// received − 1, each range after the one before.
    Ranges(&'a [u8]),
    /// Bitmap Acknowledgement (0x50): bit i (least significant first) of
    /// byte j says whether `cumulative + 2 + 8j + i` arrived
    /// (`cumulative + 1`, by definition, did not).
    Bitmap(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sent, waiting for its acknowledgement.
    InFlight,
    /// To send again.
    Lost,
    Acked,
}

#[derive(Debug)]
struct Frag {
    fragment: Fragment,
    data: Bytes,
    deadline: Option<u64>,
    fin: bool,
    abandoned: bool,
    state: State,
    naks: u8,
    /// Its last transmission.
    sent_at: u64,
    /// Its first transmission, when it was sent again since.
    first_sent_at: Option<u64>,
}

#[derive(Debug)]
struct Message {
    data: Bytes,
    offset: usize,
    deadline: Option<u64>,
}

/// The send buffer is full: the message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the flow's send buffer is full")]
pub struct Full;

/// A fragment to put in a packet.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub seq: u64,
    pub fsn_offset: u64,
    pub flags: DataFlags,
    pub data: Bytes,
    /// A retransmission (it does not count as new data in flight twice).
    pub retransmission: bool,
}

/// What an acknowledgement did, for congestion control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckOutcome {
    pub acked_bytes: usize,
    pub lost_bytes: usize,
    /// The latest send time among the fragments newly found lost.
    pub lost_sent_at: Option<u64>,
    /// The longest round trip (ms) of a fragment that others overtook:
    /// acknowledged after fragments sent later, or after it was taken as
    /// lost when its first transmission was what arrived. How late the
    /// path delivers what it reorders.
    pub reordered_rtt: Option<u64>,
}

/// When an acknowledgement came and what it tells of time.
#[derive(Debug, Clone, Copy, Default)]
pub struct AckTiming {
    pub now: u64,
    /// A fragment NAKed enough is lost only once out this long.
    pub loss_delay: u64,
    /// When castgate sent the packet whose timestamp the acknowledgement
    /// echoes: the newest the peer had then. A retransmitted fragment
    /// acknowledged with an older echo had arrived the first time.
    pub echoed_sent_at: Option<u64>,
}

/// One sending flow.
#[derive(Debug)]
pub struct SendFlow {
    unsent: VecDeque<Message>,
    /// Fragments with sequence numbers `base..next_seq`, in order.
    frags: VecDeque<Frag>,
    base: u64,
    buffered: usize,
    limit: usize,
    in_flight: usize,
    closing: bool,
    fin_sent: bool,
    /// An acknowledgement came: the flow's options need not be sent again.
    pub acked_any: bool,
    /// The receiver's free buffer, in bytes, from its last acknowledgement.
    pub peer_buffer: u64,
    /// Messages whose deadline passed before all of them was sent.
    pub abandoned_messages: u64,
}

impl SendFlow {
    /// A flow that buffers at most `limit` bytes of unacknowledged data.
    pub fn new(limit: usize) -> SendFlow {
        SendFlow {
            unsent: VecDeque::new(),
            frags: VecDeque::new(),
            base: 1,
            buffered: 0,
            limit,
            in_flight: 0,
            closing: false,
            fin_sent: false,
            acked_any: false,
            // Until the receiver says otherwise (rtmfp-cpp's initial value).
            peer_buffer: 65536,
            abandoned_messages: 0,
        }
    }

    /// Queues a message; `deadline` (ms, the caller's clock) makes it
    /// partially reliable.
    pub fn send(&mut self, data: Bytes, deadline: Option<u64>) -> Result<(), Full> {
        if self.closing {
            return Err(Full);
        }
        if self.buffered + data.len() > self.limit {
            return Err(Full);
        }
        self.buffered += data.len();
        self.unsent.push_back(Message {
            data,
            offset: 0,
            deadline,
        });
        Ok(())
    }

    /// No more messages: the last fragment will carry FIN.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Bytes queued or unacknowledged.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Bytes sent and neither acknowledged nor taken as lost.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn next_seq(&self) -> u64 {
        self.base + self.frags.len() as u64
    }

    /// Everything at or below this is acknowledged or abandoned.
    pub fn fsn(&self) -> u64 {
        match self
            .frags
            .iter()
            .position(|f| f.state != State::Acked && !f.abandoned)
        {
            Some(i) => self.base + i as u64 - 1,
            None => self.next_seq() - 1,
        }
    }

    /// The flow is closed and its FIN acknowledged.
    pub fn is_complete(&self) -> bool {
        self.fin_sent && self.frags.is_empty()
    }

    /// Whether something waits to go: a lost fragment, new data, or FIN.
    pub fn has_lost(&self) -> bool {
        self.frags.iter().any(|f| f.state == State::Lost)
    }

    pub fn has_new(&self) -> bool {
        !self.unsent.is_empty() || (self.closing && !self.fin_sent)
    }

    /// The next fragment to send, cut to at most `room` bytes of data:
    /// a lost one first, else new data. `now` decides abandonment.
    pub fn next_fragment(&mut self, now: u64, room: usize, new_allowed: bool) -> Option<Outgoing> {
        if let Some(i) = self.frags.iter().position(|f| f.state == State::Lost) {
            let fsn = self.fsn();
            let seq = self.base + i as u64;
            let f = &mut self.frags[i];
            if !f.abandoned && f.deadline.is_some_and(|d| now >= d) {
                f.abandoned = true;
            }
            let data = if f.abandoned {
                Bytes::new()
            } else {
                f.data.clone()
            };
            if data.len() <= room {
                f.state = State::InFlight;
                f.naks = 0;
                f.first_sent_at.get_or_insert(f.sent_at);
                f.sent_at = now;
                self.in_flight += f.data.len();
                let flags = DataFlags {
                    fragment: f.fragment,
                    options: false,
                    abandon: f.abandoned,
                    fin: f.fin,
                };
                let fsn = fsn.min(seq - 1);
                return Some(Outgoing {
                    seq,
                    fsn_offset: seq - fsn,
                    flags,
                    data,
                    retransmission: true,
                });
            }
            return None;
        }
        if !new_allowed {
            return None;
        }
        self.drop_stale(now);
        let seq = self.next_seq();
        let (fragment, data, deadline, last) = match self.unsent.front_mut() {
            Some(m) => {
                let left = m.data.len() - m.offset;
                let take = left.min(room);
                if take == 0 && left > 0 {
                    return None;
                }
                let fragment = match (m.offset == 0, take == left) {
                    (true, true) => Fragment::Whole,
                    (true, false) => Fragment::Begin,
                    (false, true) => Fragment::End,
                    (false, false) => Fragment::Middle,
                };
                let data = m.data.slice(m.offset..m.offset + take);
                m.offset += take;
                let deadline = m.deadline;
                let done = m.offset == m.data.len();
                if done {
                    self.unsent.pop_front();
                }
                (fragment, data, deadline, done && self.unsent.is_empty())
            }
            None if self.closing && !self.fin_sent => (Fragment::Whole, Bytes::new(), None, true),
            None => return None,
        };
        let fin = self.closing && last;
        if fin {
            self.fin_sent = true;
        }
        self.in_flight += data.len();
        let fsn = self.fsn();
        self.frags.push_back(Frag {
            fragment,
            data: data.clone(),
            deadline,
            fin,
            abandoned: false,
            state: State::InFlight,
            naks: 0,
            sent_at: now,
            first_sent_at: None,
        });
        Some(Outgoing {
            seq,
            fsn_offset: seq - fsn.min(seq - 1),
            flags: DataFlags {
                fragment,
                options: false,
                abandon: false,
                fin,
            },
            data,
            retransmission: false,
        })
    }

    /// Drops the queued messages whose deadline passed; a message partly
    /// sent loses its rest (the receiver drops its beginning).
    fn drop_stale(&mut self, now: u64) {
        while let Some(m) = self.unsent.front() {
            if m.deadline.is_none_or(|d| now < d) {
                break;
            }
            self.buffered -= m.data.len() - m.offset;
            self.abandoned_messages += 1;
            self.unsent.pop_front();
        }
    }

    /// Takes an acknowledgement: cumulative, then what `selective` adds.
    /// Nothing above what was sent is taken, whatever the peer claims.
    /// A fragment NAKed enough is lost only once out for the loss delay
    /// (see [`NAKS_FOR_LOSS`]).
    pub fn on_ack(
        &mut self,
        cumulative: u64,
        selective: Selective<'_>,
        buffer_blocks: u64,
        at: AckTiming,
    ) -> AckOutcome {
        let AckTiming {
            now, loss_delay, ..
        } = at;
        self.acked_any = true;
        self.peer_buffer = buffer_blocks.saturating_mul(1024);
        let mut out = AckOutcome::default();
        let top = self.next_seq() - 1;
        let mut highest = 0;
        let cumulative = cumulative.min(top);
        if cumulative >= self.base {
            for seq in self.base..=cumulative {
                self.mark_acked(seq, at, &mut out);
            }
            highest = cumulative;
        }
        match selective {
            Selective::Ranges(ranges) => {
                let mut r = Reader::new(ranges);
                let mut cursor = cumulative;
                while let (Ok(holes), Ok(received)) = (r.vlu(), r.vlu()) {
                    let Some(from) = cursor.checked_add(holes).and_then(|c| c.checked_add(2))
                    else {
                        break;
                    };
                    let Some(to) = from.checked_add(received) else {
                        break;
                    };
                    if from > top {
                        break;
                    }
                    let to = to.min(top);
                    for seq in from.max(self.base)..=to {
                        self.mark_acked(seq, at, &mut out);
                    }
                    highest = highest.max(to);
                    cursor = to;
                }
            }
            Selective::Bitmap(bitmap) => {
                // Bits past what was sent say nothing; the bitmap is
                // bounded by the packet, so this loop is too.
                let first = cumulative.saturating_add(2);
                'bytes: for (j, byte) in bitmap.iter().enumerate() {
                    for i in 0..8 {
                        let seq = first.saturating_add(8 * j as u64 + i);
                        if seq > top {
                            break 'bytes;
                        }
                        if byte & (1 << i) != 0 {
                            if seq >= self.base {
                                self.mark_acked(seq, at, &mut out);
                            }
                            highest = highest.max(seq);
                        }
                    }
                }
            }
        }
        // Fragments sent before the highest one acknowledged, still not
        // acknowledged themselves, count a NAK each time.
        let end = (highest.saturating_sub(self.base) as usize).min(self.frags.len());
        for f in self.frags.iter_mut().take(end) {
            if f.state == State::InFlight {
                f.naks = f.naks.saturating_add(1);
                if f.naks >= NAKS_FOR_LOSS && now >= f.sent_at.saturating_add(loss_delay) {
                    f.state = State::Lost;
                    self.in_flight -= f.data.len();
                    out.lost_bytes += f.data.len();
                    out.lost_sent_at = out.lost_sent_at.max(Some(f.sent_at));
                }
            }
        }
        while self.frags.front().is_some_and(|f| f.state == State::Acked) {
            self.frags.pop_front();
            self.base += 1;
        }
        out
    }

    fn mark_acked(&mut self, seq: u64, at: AckTiming, out: &mut AckOutcome) {
        let Some(f) = seq
            .checked_sub(self.base)
            .and_then(|i| self.frags.get_mut(i as usize))
        else {
            return;
        };
        // Overtaken, then arrived: taken as lost but not sent again yet
        // (its last transmission was late), acknowledged with an echo from
        // before it was sent again (its first was; the echo is good to a
        // timestamp tick), or NAKed before it came.
        let reordered_since = match (f.state, f.first_sent_at) {
            (State::Lost, _) => Some(f.sent_at),
            (State::InFlight, Some(first))
                if at
                    .echoed_sent_at
                    .is_some_and(|e| e + ECHO_PRECISION_MS < f.sent_at) =>
            {
                Some(first)
            }
            (State::InFlight, None) if f.naks > 0 => Some(f.sent_at),
            _ => None,
        };
        if let Some(since) = reordered_since {
            out.reordered_rtt = out.reordered_rtt.max(Some(at.now.saturating_sub(since)));
        }
        match f.state {
            State::Acked => return,
            State::InFlight => self.in_flight -= f.data.len(),
            State::Lost => {}
        }
        f.state = State::Acked;
        self.buffered -= f.data.len();
        out.acked_bytes += f.data.len();
    }

    /// The retransmission timer fired: everything in flight is lost.
    /// Returns the bytes.
    pub fn on_timeout(&mut self) -> usize {
        let mut lost = 0;
        for f in self.frags.iter_mut().filter(|f| f.state == State::InFlight) {
            f.state = State::Lost;
            lost += f.data.len();
        }
        self.in_flight -= lost;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(now: u64, loss_delay: u64) -> AckTiming {
        AckTiming {
            now,
            loss_delay,
            echoed_sent_at: None,
        }
    }

    fn data(n: usize) -> Bytes {
        Bytes::from((0..n).map(|i| i as u8).collect::<Vec<_>>())
    }

    #[test]
    fn a_message_is_cut_to_the_room_given() {
        let mut f = SendFlow::new(1 << 20);
        f.send(data(25), None).unwrap();
        let kinds: Vec<_> = std::iter::from_fn(|| f.next_fragment(0, 10, true))
            .map(|o| (o.seq, o.flags.fragment, o.data.len(), o.fsn_offset))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, Fragment::Begin, 10, 1),
                (2, Fragment::Middle, 10, 2),
                (3, Fragment::End, 5, 3)
            ]
        );
        assert_eq!(f.in_flight(), 25);
        let out = f.on_ack(3, Selective::Ranges(&[]), 10, timing(0, 0));
        assert_eq!(out.acked_bytes, 25);
        assert_eq!(
            (f.in_flight(), f.buffered(), f.peer_buffer),
            (0, 0, 10 * 1024)
        );
    }

    #[test]
    fn three_acks_past_a_fragment_make_it_lost_and_it_goes_again() {
        let mut f = out_at_zero(5);
        // 1 is acked, 2 missing, 3.. arrive one by one.
        f.on_ack(1, Selective::Ranges(&[]), 64, timing(0, 0));
        assert_eq!(
            f.on_ack(1, Selective::Ranges(&[0x00, 0x00]), 64, timing(0, 0))
                .lost_bytes,
            0,
            "3"
        );
        assert_eq!(
            f.on_ack(1, Selective::Ranges(&[0x00, 0x01]), 64, timing(0, 0))
                .lost_bytes,
            0,
            "3-4"
        );
        let out = f.on_ack(1, Selective::Ranges(&[0x00, 0x02]), 64, timing(0, 0));
        assert_eq!(out.lost_bytes, 4, "3-5: the third NAK");
        assert!(f.has_lost());
        let again = f.next_fragment(1, 100, false).unwrap();
        assert_eq!(
            (again.seq, again.retransmission, again.fsn_offset),
            (2, true, 1)
        );
        f.on_ack(5, Selective::Ranges(&[]), 64, timing(0, 0));
        assert!(f.frags.is_empty());
        assert_eq!(f.buffered(), 0);
    }

    /// `n` fragments of 4 bytes, sequence numbers 1..=n, out at 0 ms.
    fn out_at_zero(n: usize) -> SendFlow {
        let mut f = SendFlow::new(1 << 20);
        for _ in 0..n {
            f.send(data(4), None).unwrap();
            f.next_fragment(0, 100, true).unwrap();
        }
        f
    }

    /// 1 acknowledged at 10 ms, then 3, 3-4 and 3-5 at `now`: fragment 2
    /// NAKed three times. Returns the bytes taken as lost.
    fn nak_fragment_two_thrice(f: &mut SendFlow, now: u64, loss_delay: u64) -> usize {
        f.on_ack(1, Selective::Ranges(&[]), 64, timing(10, loss_delay));
        let mut lost = 0;
        for ranges in [[0x00, 0x00], [0x00, 0x01], [0x00, 0x02]] {
            lost += f
                .on_ack(1, Selective::Ranges(&ranges), 64, timing(now, loss_delay))
                .lost_bytes;
        }
        lost
    }

    #[test]
    fn a_fragment_overtaken_by_later_ones_is_lost_only_after_the_loss_delay() {
        // Three NAKs within 100 ms of sending: reordered, not lost yet;
        // it arrives late after all, and nothing is resent.
        let mut f = out_at_zero(5);
        assert_eq!(nak_fragment_two_thrice(&mut f, 60, 100), 0);
        assert!(!f.has_lost());
        f.on_ack(5, Selective::Ranges(&[]), 64, timing(70, 100));
        assert!(f.frags.is_empty() && !f.has_lost());
        // Or the next acknowledgement past the delay finds it lost.
        let mut g = out_at_zero(5);
        assert_eq!(nak_fragment_two_thrice(&mut g, 60, 100), 0);
        let out = g.on_ack(1, Selective::Ranges(&[0x00, 0x02]), 64, timing(100, 100));
        assert_eq!((out.lost_bytes, out.lost_sent_at), (4, Some(0)));
    }

    #[test]
    fn a_fragment_that_was_overtaken_reports_how_late_it_came() {
        // NAKed, then acknowledged at 80 ms: it took 80 ms.
        let mut f = out_at_zero(5);
        nak_fragment_two_thrice(&mut f, 60, 1000);
        let out = f.on_ack(5, Selective::Ranges(&[]), 64, timing(80, 1000));
        assert_eq!(out.reordered_rtt, Some(80));
        // Taken as lost at 100 ms and sent again at 110: an echo from
        // before 110 means the first transmission arrived, 130 ms after
        // it was sent; an echo from after says nothing.
        for (echo, expected) in [(Some(90), Some(130)), (Some(120), None), (None, None)] {
            let mut g = out_at_zero(5);
            nak_fragment_two_thrice(&mut g, 100, 100);
            assert!(g.has_lost());
            let again = g.next_fragment(110, 100, false).unwrap();
            assert!(again.retransmission);
            let at = AckTiming {
                now: 130,
                loss_delay: 100,
                echoed_sent_at: echo,
            };
            let out = g.on_ack(5, Selective::Ranges(&[]), 64, at);
            assert_eq!(out.reordered_rtt, expected, "echo {echo:?}");
        }
        // Taken as lost and acknowledged before it went again: late, 140 ms.
        let mut h = out_at_zero(5);
        nak_fragment_two_thrice(&mut h, 100, 100);
        let out = h.on_ack(5, Selective::Ranges(&[]), 64, timing(140, 100));
        assert_eq!(out.reordered_rtt, Some(140));
    }

    #[test]
    fn a_bitmap_acknowledgement_acks_the_bits_set_and_naks_the_holes() {
        let mut f = out_at_zero(6);
        // Cumulative 1; bit 0 is 3, bit 2 is 5; 2 and 4 are holes.
        let out = f.on_ack(1, Selective::Bitmap(&[0b0000_0101]), 64, timing(0, 0));
        assert_eq!((out.acked_bytes, out.lost_bytes), (12, 0));
        f.on_ack(1, Selective::Bitmap(&[0b0000_0101]), 64, timing(0, 0));
        let out = f.on_ack(1, Selective::Bitmap(&[0b0000_0101]), 64, timing(0, 0));
        assert_eq!(
            out.lost_bytes, 8,
            "2 and 4, below the highest acknowledged (5)"
        );
        // 4 (taken as lost) and 6 arrive; bits past 6 (all sent) say nothing.
        let out = f.on_ack(1, Selective::Bitmap(&[0xff; 200]), 64, timing(0, 0));
        assert_eq!(out.acked_bytes, 8, "4 and 6");
        let out = f.on_ack(u64::MAX, Selective::Bitmap(&[0xff; 8]), 64, timing(0, 0));
        assert_eq!(out.acked_bytes, 4, "the cumulative part: 2");
        assert!(f.frags.is_empty());
    }

    #[test]
    fn a_late_message_is_abandoned_and_the_fsn_moves_past_it() {
        let mut f = SendFlow::new(1 << 20);
        f.send(data(20), Some(100)).unwrap();
        f.send(data(5), None).unwrap();
        let first = f.next_fragment(0, 10, true).unwrap();
        assert_eq!(first.flags.fragment, Fragment::Begin);
        // The deadline passes: the rest of the message is not sent.
        let next = f.next_fragment(100, 10, true).unwrap();
        assert_eq!((next.seq, next.flags.fragment), (2, Fragment::Whole));
        assert_eq!(f.abandoned_messages, 1);
        // Its first fragment is lost and resent as an empty abandon.
        f.on_timeout();
        let abn = f.next_fragment(101, 10, true).unwrap();
        assert_eq!((abn.seq, abn.flags.abandon, abn.data.len()), (1, true, 0));
        // Seq 1 is abandoned, so the FSN is 1 even before any ack.
        assert_eq!(f.fsn(), 1);
        let resent = f.next_fragment(102, 10, true).unwrap();
        assert_eq!((resent.seq, resent.fsn_offset), (2, 1));
    }

    #[test]
    fn hostile_acks_take_nothing_unsent_and_do_not_loop_forever() {
        let mut f = SendFlow::new(1 << 20);
        f.send(data(4), None).unwrap();
        f.next_fragment(0, 100, true).unwrap();
        let out = f.on_ack(
            u64::MAX,
            Selective::Ranges(&[0xff, 0xff, 0xff, 0x7f, 0x7f]),
            0,
            timing(0, 0),
        );
        assert_eq!(out.acked_bytes, 4);
        let mut huge = Vec::new();
        crate::rtmfp::wire::put_vlu(&mut huge, u64::MAX);
        crate::rtmfp::wire::put_vlu(&mut huge, u64::MAX);
        assert_eq!(
            f.on_ack(0, Selective::Ranges(&huge), 0, timing(0, 0)),
            AckOutcome::default()
        );
        assert_eq!(f.peer_buffer, 0);
    }

    #[test]
    fn close_sends_fin_and_completes_on_its_ack() {
        let mut f = SendFlow::new(100);
        f.send(data(3), None).unwrap();
        assert_eq!(f.send(data(98), None), Err(Full));
        f.close();
        assert_eq!(f.send(data(1), None), Err(Full));
        let last = f.next_fragment(0, 100, true).unwrap();
        assert!(last.flags.fin);
        assert!(f.next_fragment(0, 100, true).is_none());
        assert!(!f.is_complete());
        f.on_ack(1, Selective::Ranges(&[]), 1, timing(0, 0));
        assert!(f.is_complete());
        // Closing an empty flow sends an empty FIN.
        let mut g = SendFlow::new(100);
        g.close();
        let fin = g.next_fragment(0, 0, true).unwrap();
        assert!(fin.flags.fin && fin.data.is_empty());
    }
}
