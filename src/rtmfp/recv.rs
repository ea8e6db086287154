//! A flow's receiving side (RFC 7016 §3.6.3): fragments by sequence number
//! into messages, in order, within a bounded buffer.
//!
//! Fragments at or below the cumulative acknowledgement are done; those
//! above it wait in `pending` until the gap before them fills, or until the
//! sender's forward sequence number (FSN) says the gap will never fill (it
//! abandoned those fragments: a stale media message). A message with a
//! fragment in such a gap is dropped whole; the messages after it go on.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::packet::{DataFlags, Fragment};
use super::wire::put_vlu;

/// What bounds a receiving flow; every figure is from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvLimits {
    /// Bytes of fragments held above the cumulative ack, and of the
    /// message being put together.
    pub buffer: usize,
    /// Fragments held above the cumulative ack (tiny fragments would
    /// otherwise cost more than their bytes).
    pub fragments: usize,
    /// Bytes of one message.
    pub message: usize,
    /// How far above the cumulative ack a sequence number may be.
    pub window: u64,
}

impl Default for RecvLimits {
    fn default() -> RecvLimits {
        RecvLimits {
            buffer: 1 << 20,
            fragments: 2048,
            message: 4 << 20,
            window: 1 << 16,
        }
    }
}

#[derive(Debug)]
struct Held {
    flags: DataFlags,
    data: Bytes,
}

/// What became of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New; acknowledge it.
    New,
    /// Seen before (a retransmission, or below the FSN): acknowledge again.
    Duplicate,
    /// Not kept (over a limit): not acknowledged, the sender will resend.
    Dropped,
}

/// One receiving flow.
#[derive(Debug)]
pub struct RecvFlow {
    limits: RecvLimits,
    /// Every sequence number up to this one is done.
    cumulative: u64,
    pending: BTreeMap<u64, Held>,
    pending_bytes: usize,
    /// The message being put together, and whether a fragment of it was lost.
    partial: BytesMut,
    in_message: bool,
    /// The sequence number of the FIN fragment, once seen.
    fin: Option<u64>,
    complete: Vec<Bytes>,
    /// Messages dropped because a fragment of theirs was abandoned or too big.
    pub dropped_messages: u64,
}

impl RecvFlow {
    pub fn new(limits: RecvLimits) -> RecvFlow {
        RecvFlow {
            limits,
            cumulative: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            partial: BytesMut::new(),
            in_message: false,
            fin: None,
            complete: Vec::new(),
            dropped_messages: 0,
        }
    }

    pub fn cumulative(&self) -> u64 {
        self.cumulative
    }

    /// Every fragment up to the FIN has arrived (or was abandoned).
    pub fn is_finished(&self) -> bool {
        self.fin.is_some_and(|f| self.cumulative >= f)
    }

    /// Free buffer, in the 1024-byte blocks an acknowledgement advertises.
    pub fn buffer_blocks(&self) -> u64 {
        let used = self.pending_bytes + self.partial.len();
        (self.limits.buffer.saturating_sub(used) / 1024) as u64
    }

    /// Takes a fragment. `fsn`: the sender will send nothing at or below it.
    pub fn receive(&mut self, seq: u64, fsn: u64, flags: DataFlags, data: Bytes) -> Accepted {
        if seq > self.cumulative.saturating_add(self.limits.window) {
            return Accepted::Dropped;
        }
        if flags.fin {
            // A second, different FIN is the sender's error; the first holds.
            self.fin.get_or_insert(seq);
        }
        let accepted = if seq <= self.cumulative || self.pending.contains_key(&seq) {
            Accepted::Duplicate
        } else if self.pending.len() >= self.limits.fragments
            || self.pending_bytes + self.partial.len() + data.len() > self.limits.buffer
        {
            // The next-expected fragment is always taken when it fits the
            // message limit: it is what frees the buffer.
            if seq == self.cumulative + 1 {
                self.hold(seq, flags, data);
                Accepted::New
            } else {
                Accepted::Dropped
            }
        } else {
            self.hold(seq, flags, data);
            Accepted::New
        };
        if fsn > self.cumulative && fsn <= self.cumulative.saturating_add(self.limits.window) {
            self.skip_to(fsn);
        }
        self.advance();
        accepted
    }

    fn hold(&mut self, seq: u64, flags: DataFlags, data: Bytes) {
        self.pending_bytes += data.len();
        self.pending.insert(seq, Held { flags, data });
    }

    /// Everything at or below `fsn` is done: the fragments held there are
    /// assembled in order, each gap drops the message it falls in.
    fn skip_to(&mut self, fsn: u64) {
        let mut expected = self.cumulative + 1;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > fsn {
                break;
            }
            let (seq, held) = entry.remove_entry();
            self.pending_bytes -= held.data.len();
            if seq != expected {
                self.lose_partial();
            }
            self.assemble(held);
            expected = seq + 1;
        }
        if expected <= fsn {
            self.lose_partial();
        }
        self.cumulative = fsn;
    }

    /// Moves the cumulative ack over the contiguous fragments held.
    fn advance(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.cumulative + 1 {
                break;
            }
            let (seq, held) = entry.remove_entry();
            self.pending_bytes -= held.data.len();
            self.cumulative = seq;
            self.assemble(held);
        }
    }

    fn lose_partial(&mut self) {
        if self.in_message {
            self.dropped_messages += 1;
        }
        self.partial.clear();
        self.in_message = false;
    }

    fn assemble(&mut self, held: Held) {
        if held.flags.abandon {
            self.lose_partial();
            return;
        }
        match held.flags.fragment {
            Fragment::Whole => {
                self.lose_partial();
                if !held.data.is_empty() || !held.flags.fin {
                    self.complete.push(held.data);
                }
            }
            Fragment::Begin => {
                self.lose_partial();
                self.in_message = true;
                self.append(&held.data);
            }
            Fragment::Middle | Fragment::End => {
                if !self.in_message {
                    // Its beginning was abandoned or never came.
                    return;
                }
                self.append(&held.data);
                if held.flags.fragment == Fragment::End && self.in_message {
                    self.in_message = false;
                    self.complete.push(self.partial.split().freeze());
                }
            }
        }
    }

    fn append(&mut self, data: &[u8]) {
        if self.partial.len() + data.len() > self.limits.message {
            self.lose_partial();
            return;
        }
        self.partial.extend_from_slice(data);
    }

    /// The next whole message, in order.
    pub fn poll_message(&mut self) -> Option<Bytes> {
        if self.complete.is_empty() {
            None
        } else {
            Some(self.complete.remove(0))
        }
    }

    /// The acknowledgement ranges after the cumulative ack (RFC 7016
    /// §2.3.14: for each run received, the holes before it minus one and
    /// its length minus one), at most `max_bytes` of them.
    pub fn ack_ranges(&self, max_bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cursor = self.cumulative;
        let mut keys = self.pending.keys().copied().peekable();
        while let Some(start) = keys.next() {
            let mut end = start;
            while keys.peek() == Some(&(end + 1)) {
                end += 1;
                keys.next();
            }
            let before = out.len();
            put_vlu(&mut out, start - cursor - 2);
            put_vlu(&mut out, end - start);
            if out.len() > max_bytes {
                out.truncate(before);
                break;
            }
            cursor = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(fragment: Fragment) -> DataFlags {
        DataFlags {
            fragment,
            options: false,
            abandon: false,
            fin: false,
        }
    }

    fn messages(f: &mut RecvFlow) -> Vec<Bytes> {
        std::iter::from_fn(|| f.poll_message()).collect()
    }

    #[test]
    fn fragments_out_of_order_make_messages_in_order() {
        let mut f = RecvFlow::new(RecvLimits::default());
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(f.receive(3, 0, flags(Fragment::End), b("c")), Accepted::New);
        assert_eq!(
            f.receive(4, 0, flags(Fragment::Whole), b("d")),
            Accepted::New
        );
        assert!(messages(&mut f).is_empty());
        assert_eq!(
            f.ack_ranges(100),
            [0x01, 0x01],
            "3..=4 after two holes, 1 and 2"
        );
        assert_eq!(
            f.receive(1, 0, flags(Fragment::Begin), b("a")),
            Accepted::New
        );
        assert_eq!(
            f.receive(2, 0, flags(Fragment::Middle), b("b")),
            Accepted::New
        );
        assert_eq!(messages(&mut f), [b("abc"), b("d")]);
        assert_eq!(f.cumulative(), 4);
        assert_eq!(
            f.receive(2, 0, flags(Fragment::Middle), b("b")),
            Accepted::Duplicate
        );
        assert!(f.ack_ranges(100).is_empty());
    }

    #[test]
    fn an_abandoned_fragment_drops_its_message_only() {
        let mut f = RecvFlow::new(RecvLimits::default());
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        // 1 Begin arrives, 2 (its End) is lost and abandoned, 3 is whole.
        f.receive(1, 0, flags(Fragment::Begin), b("x"));
        f.receive(3, 2, flags(Fragment::Whole), b("ok"));
        assert_eq!(messages(&mut f), [b("ok")]);
        assert_eq!(f.dropped_messages, 1);
        assert_eq!(f.cumulative(), 3);
        // An explicit abandon fragment does the same.
        f.receive(4, 3, flags(Fragment::Begin), b("y"));
        let mut abn = flags(Fragment::End);
        abn.abandon = true;
        f.receive(5, 3, abn, Bytes::new());
        f.receive(6, 3, flags(Fragment::Whole), b("z"));
        assert_eq!(messages(&mut f), [b("z")]);
        assert_eq!(f.dropped_messages, 2);
    }

    #[test]
    fn limits_drop_what_does_not_fit_but_never_the_next_expected() {
        let limits = RecvLimits {
            buffer: 4,
            fragments: 2,
            message: 6,
            window: 10,
        };
        let mut f = RecvFlow::new(limits);
        let b = |n: usize| Bytes::from(vec![1u8; n]);
        assert_eq!(
            f.receive(11, 0, flags(Fragment::Whole), b(1)),
            Accepted::Dropped,
            "window"
        );
        assert_eq!(f.receive(3, 0, flags(Fragment::Whole), b(3)), Accepted::New);
        assert_eq!(
            f.receive(4, 0, flags(Fragment::Whole), b(3)),
            Accepted::Dropped,
            "buffer"
        );
        assert_eq!(f.receive(2, 0, flags(Fragment::Whole), b(1)), Accepted::New);
        assert_eq!(
            f.receive(5, 0, flags(Fragment::Whole), b(1)),
            Accepted::Dropped,
            "count"
        );
        assert_eq!(
            f.receive(1, 0, flags(Fragment::Whole), b(3)),
            Accepted::New,
            "next"
        );
        assert_eq!(messages(&mut f).len(), 3);
        // A message over its limit is dropped, the flow goes on.
        f.receive(4, 0, flags(Fragment::Begin), b(4));
        f.receive(5, 0, flags(Fragment::End), b(4));
        f.receive(6, 0, flags(Fragment::Whole), b(2));
        assert_eq!(messages(&mut f), [b(2)]);
        assert_eq!(f.buffer_blocks(), 0);
    }

    #[test]
    fn a_far_fsn_is_ignored_and_fin_ends_the_flow() {
        let mut f = RecvFlow::new(RecvLimits::default());
        f.receive(
            1,
            u64::MAX,
            flags(Fragment::Whole),
            Bytes::from_static(b"a"),
        );
        assert_eq!(f.cumulative(), 1, "an FSN beyond the window moves nothing");
        let mut fin = flags(Fragment::Whole);
        fin.fin = true;
        f.receive(3, 1, fin, Bytes::new());
        assert!(!f.is_finished());
        f.receive(2, 1, flags(Fragment::Whole), Bytes::from_static(b"b"));
        assert!(f.is_finished());
        assert_eq!(messages(&mut f).len(), 2, "the empty FIN is not a message");
    }
}
