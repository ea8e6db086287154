//! Program time: 33-bit 90 kHz PTS/DTS unwrapped into one monotonic
//! position, then placed on the hub's millisecond timeline.
//!
//! The clock is the program's, shared by its tracks: the first timestamp
//! seen maps to the base (0 unless the caller gives one), and when a track
//! jumps (more than [`MAX_AHEAD_MS`] forward, more than [`RESET_MS`] back:
//! an encoder restart, a splice, a source switch) the whole program is
//! re-based so that track continues one frame after its last, and the
//! other tracks follow by the same shift, in sync. Smaller steps back are
//! clamped to just after the track's last time: decode times rise by at
//! least a millisecond, as the muxers after the hub need.

use crate::media::timeline::{MAX_AHEAD_MS, RESET_MS};

/// 90 kHz ticks per millisecond.
pub(super) const TICKS_PER_MS: i64 = 90;
const TICKS_PER_SECOND: i64 = 90_000;
const WRAP: i64 = 1 << 33;
const MAX_AHEAD: i64 = MAX_AHEAD_MS * TICKS_PER_MS;
const MAX_BACK: i64 = RESET_MS * TICKS_PER_MS;

/// `raw - from` on the 33-bit circle, as a step within ±2^32 ticks (13 h).
pub(super) fn step33(from: u64, raw: u64) -> i64 {
    let d = (raw.wrapping_sub(from) as i64).rem_euclid(WRAP);
    if d >= WRAP / 2 {
        d - WRAP
    } else {
        d
    }
}

/// Ticks of `samples` at `rate` Hz.
pub(super) fn samples_to_ticks(samples: u64, rate: u32) -> i64 {
    if rate == 0 {
        return 0;
    }
    i64::try_from(u128::from(samples) * TICKS_PER_SECOND as u128 / u128::from(rate))
        .unwrap_or(i64::MAX)
}

#[derive(Debug)]
pub(super) struct Clock {
    last_raw: Option<u64>,
    /// Unwrapped ticks of `last_raw`.
    position: i64,
    /// Output ticks = position + offset; set by the first timestamp.
    offset: Option<i64>,
    base: i64,
}

impl Clock {
    pub(super) fn new(base_ms: i64) -> Self {
        Clock {
            last_raw: None,
            position: 0,
            offset: None,
            base: base_ms.saturating_mul(TICKS_PER_MS),
        }
    }

    /// Unwraps a 33-bit timestamp against the last one seen on any track
    /// (PES headers in stream order): the first one fixes the origin.
    pub(super) fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = raw & (WRAP as u64 - 1);
        self.position = match self.last_raw {
            None => raw as i64,
            Some(last) => self.position.saturating_add(step33(last, raw)),
        };
        self.last_raw = Some(raw);
        self.offset.get_or_insert(self.base - self.position);
        self.position
    }
}

/// How a time was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Placement {
    Kept,
    /// Clamped: to a millisecond after the track's last time (a small step
    /// back), or to the base (a first time before it).
    Clamped,
    /// A jump: the program was re-based.
    Rebased,
}

/// One track's place on the program's timeline.
#[derive(Debug, Default)]
pub(super) struct TrackTime {
    /// Output ticks of the track's last frame.
    last: Option<i64>,
    /// Its last forward step (a frame's duration), what a re-based track
    /// advances by.
    step: i64,
}

impl TrackTime {
    /// The output ticks (base-relative, never below the base, never below
    /// this track's last) of a frame at `position`.
    pub(super) fn place(&mut self, clock: &mut Clock, position: i64) -> (i64, Placement) {
        let offset = *clock.offset.get_or_insert(clock.base - position);
        let out = position.saturating_add(offset);
        let (out, placement) = match self.last {
            None if out < clock.base => (clock.base, Placement::Clamped),
            None => (out, Placement::Kept),
            Some(last) => {
                let step = out.saturating_sub(last);
                if !(-MAX_BACK..=MAX_AHEAD).contains(&step) {
                    let want = last.saturating_add(self.step.max(1));
                    clock.offset = Some(offset.saturating_add(want.saturating_sub(out)));
                    (want, Placement::Rebased)
                } else if to_ms(out) <= to_ms(last) {
                    // A step back, or too small to show in milliseconds:
                    // the next millisecond, since a muxer needs decode
                    // times that rise (two frames at one time are not
                    // "monotonic" to ffmpeg's TS and FLV readers).
                    if step > 0 && step <= MAX_BACK {
                        self.step = step;
                    }
                    ((to_ms(last) + 1) * TICKS_PER_MS, Placement::Clamped)
                } else {
                    if step > 0 && step <= MAX_BACK {
                        self.step = step;
                    }
                    (out, Placement::Kept)
                }
            }
        };
        self.last = Some(out);
        (out, placement)
    }

    /// Sets the step a re-based track advances by (audio: a frame's
    /// duration, known before the next frame comes).
    pub(super) fn set_step(&mut self, ticks: i64) {
        if ticks > 0 && ticks <= MAX_BACK {
            self.step = ticks;
        }
    }
}

/// Output ticks to the hub's milliseconds (rounded down).
pub(super) fn to_ms(ticks: i64) -> i64 {
    ticks.div_euclid(TICKS_PER_MS)
}
