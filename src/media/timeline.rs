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

#[derive(Clone, Debug, Default)]
pub struct Timeline {
    last_raw: Option<u32>,
    /// Unwrapped input, not clamped.
    position: i64,
    /// Last DTS handed out.
    last_dts: i64,
    repairs: u64,
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
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
