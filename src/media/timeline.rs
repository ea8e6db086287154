//! Per-track decode-time repair.
//!
//! RTMP timestamps are 32-bit milliseconds and wrap after ~49.7 days; some
//! encoders also step backwards (B-frame reordering bugs, audio resampling,
//! publisher glitches). Muxers need an unwrapped, non-decreasing DTS per
//! track, so every track's raw timestamps pass through one [`Timeline`].

/// Unwraps one track's 32-bit RTMP timestamps and keeps them monotonic.
///
/// Steps are read in serial-number arithmetic: a difference within ±2^31 is
/// taken at face value, so a jump backwards by more than 2^31 is a wrap
/// forwards, and one forwards by more than 2^31 is a small step back across
/// zero. A step back is clamped to the last DTS (and counted), while the
/// unwrapped position keeps following the input, so once the publisher's
/// clock catches up the track runs on at its own pace. A step back of more
/// than [`RESET_MS`] is a clock reset (an encoder restarting its clock), not
/// jitter: the track is rebased to continue from its last DTS at once instead
/// of standing still until the new clock catches up.
/// A backwards step larger than this is a clock reset, not jitter.
pub const RESET_MS: i64 = 1000;

/// How far a track's clock may run ahead of the time that passed between
/// two of its messages' arrivals before the step counts as absurd (a
/// publisher's clock leaping hours ahead): such a step is clamped to the
/// time that passed, so segment durations stay sane. A track that paused
/// for a while and resumes with the right timestamp is not affected.
pub const MAX_AHEAD_MS: i64 = 10_000;

#[derive(Clone, Debug, Default)]
pub struct Timeline {
    last_raw: Option<u32>,
    /// Unwrapped input, not clamped.
    position: i64,
    /// Last DTS handed out.
    last_dts: i64,
    repairs: u64,
    /// When the last message arrived (ms on the caller's clock), if known.
    last_arrival: Option<i64>,
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Timeline::next`] for a message that arrived at `arrival_ms` (any
    /// monotonic clock in milliseconds): a forward step more than
    /// [`MAX_AHEAD_MS`] beyond the time since the previous message arrived
    /// is clamped to that time (at least 1 ms) and counted as a repair.
    pub fn next_at(&mut self, raw: u32, arrival_ms: i64) -> i64 {
        let last = self.last_arrival.replace(arrival_ms);
        if let (Some(last_raw), Some(last_arrival)) = (self.last_raw, last) {
            let step = i64::from(raw.wrapping_sub(last_raw) as i32);
            let elapsed = (arrival_ms - last_arrival).max(0);
            if step > elapsed + MAX_AHEAD_MS {
                self.last_raw = Some(raw);
                self.position = self.position.saturating_add(elapsed.max(1));
                self.last_dts = self.last_dts.max(self.position);
                self.repairs += 1;
                return self.last_dts;
            }
        }
        self.next(raw)
    }

    /// The DTS in milliseconds for the next message's raw timestamp.
    pub fn next(&mut self, raw: u32) -> i64 {
        let Some(last_raw) = self.last_raw else {
            self.last_raw = Some(raw);
            self.position = i64::from(raw);
            self.last_dts = self.position;
            return self.last_dts;
        };
        self.last_raw = Some(raw);
        // Reinterpreting the wrapped difference as i32 is the unwrap.
        let step = i64::from(raw.wrapping_sub(last_raw) as i32);
        self.position = self.position.saturating_add(step);
        if self.position < self.last_dts - RESET_MS {
            self.position = self.last_dts;
            self.repairs += 1;
        } else if self.position < self.last_dts {
            self.repairs += 1;
        } else {
            self.last_dts = self.position;
        }
        self.last_dts
    }

    /// How many timestamps were clamped so far.
    pub fn repairs(&self) -> u64 {
        self.repairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reset_is_rebased_not_frozen() {
        let mut t = Timeline::new();
        let out: Vec<i64> = [50_000u32, 50_040, 0, 40, 80]
            .iter()
            .map(|&r| t.next(r))
            .collect();
        assert_eq!(out, [50_000, 50_040, 50_040, 50_080, 50_120]);
        assert_eq!(t.repairs(), 1);
    }

    #[test]
    fn absurd_leaps_ahead_are_clamped_to_the_time_that_passed() {
        let mut t = Timeline::new();
        // 40 ms apart in arrival; the third message's clock leaps 13 hours.
        assert_eq!(t.next_at(1000, 0), 1000);
        assert_eq!(t.next_at(1040, 40), 1040);
        assert_eq!(t.next_at(1040 + 47_721_000, 80), 1080);
        assert_eq!(t.repairs(), 1);
        // The track runs on from there at its own pace.
        assert_eq!(t.next_at(1040 + 47_721_040, 120), 1120);
        assert_eq!(t.repairs(), 1);
    }

    #[test]
    fn a_pause_as_long_as_the_gap_in_arrival_is_kept() {
        let mut t = Timeline::new();
        assert_eq!(t.next_at(1000, 0), 1000);
        // Nothing for 30 s, then the right timestamp: not a leap.
        assert_eq!(t.next_at(31_000, 30_000), 31_000);
        // A burst (a backlog sent at once) is small steps: kept too.
        for i in 1..=100 {
            assert_eq!(t.next_at(31_000 + i * 33, 30_001), 31_000 + i as i64 * 33);
        }
        assert_eq!(t.repairs(), 0);
    }

    #[test]
    fn wraps_at_2_pow_32() {
        let mut t = Timeline::new();
        let out: Vec<i64> = [4294966000u32, 4294967000, 200, 1200]
            .iter()
            .map(|&r| t.next(r))
            .collect();
        assert_eq!(out, [4294966000, 4294967000, 4294967496, 4294968496]);
        assert_eq!(t.repairs(), 0);
    }

    #[test]
    fn backward_step_is_clamped_and_counted() {
        let mut t = Timeline::new();
        let out: Vec<i64> = [1000u32, 1040, 1020, 1030, 1080]
            .iter()
            .map(|&r| t.next(r))
            .collect();
        assert_eq!(out, [1000, 1040, 1040, 1040, 1080]);
        assert_eq!(t.repairs(), 2);
    }

    #[test]
    fn step_back_across_zero_is_not_a_wrap() {
        let mut t = Timeline::new();
        assert_eq!(t.next(10), 10);
        // 4294967290 is 16 ms before 10 on the wrapped clock.
        assert_eq!(t.next(4294967290), 10);
        assert_eq!(t.repairs(), 1);
        assert_eq!(t.next(20), 20);
    }

    #[test]
    fn exactly_half_range_back_is_a_step_back() {
        let mut t = Timeline::new();
        t.next(1 << 31);
        assert_eq!(t.next(0), 1 << 31);
        assert_eq!(t.repairs(), 1);
    }

    #[test]
    fn equal_timestamps_are_fine() {
        let mut t = Timeline::new();
        assert_eq!(t.next(0), 0);
        assert_eq!(t.next(0), 0);
        assert_eq!(t.repairs(), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn output_never_decreases(raw in proptest::collection::vec(any::<u32>(), 1..200)) {
                let mut t = Timeline::new();
                let mut last = i64::MIN;
                let mut clamped = 0;
                for r in raw {
                    let d = t.next(r);
                    if d == last { clamped += 1; }
                    prop_assert!(d >= last);
                    last = d;
                }
                prop_assert!(t.repairs() <= clamped);
            }

            #[test]
            fn small_steps_are_exact(start in any::<u32>(), steps in proptest::collection::vec(0u32..5000, 1..200)) {
                let mut t = Timeline::new();
                let (mut raw, mut want) = (start, i64::from(start));
                prop_assert_eq!(t.next(raw), want);
                for s in steps {
                    raw = raw.wrapping_add(s);
                    want += i64::from(s);
                    prop_assert_eq!(t.next(raw), want);
                }
                prop_assert_eq!(t.repairs(), 0);
            }
        }
    }
}
