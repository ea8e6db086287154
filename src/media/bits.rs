//! The bounded MSB-first bit reader the codec parsers share.
//!
//! Every parser here reads publisher bytes, so a read past the end is an
//! error ([`BitError::End`]), never invented zero bits, and nothing is
//! allocated. In RBSP mode (H.264 and H.265 NAL units) emulation-prevention
//! bytes (`00 00 03` → `00 00`) are dropped as they are reached, so a NAL
//! unit is read in place rather than copied out first.

/// Why a bit read failed. Parsers turn it into their own error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitError {
    /// The data ended before the field did.
    End,
    /// An exp-Golomb code with more than 31 leading zeros (over 32 bits).
    ExpGolombTooLong,
    /// A field read with a limit ([`BitReader::ue_max`], [`BitReader::bits_max`])
    /// exceeded it.
    OutOfRange { field: &'static str, value: u32 },
}

/// MSB-first reader over a byte slice; see the module doc.
#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// The next byte to load.
    pos: usize,
    /// Zero bytes just loaded (RBSP mode), saturating.
    zeros: u8,
    cur: u8,
    bits_left: u8,
    rbsp: bool,
}

impl<'a> BitReader<'a> {
    /// Reads `data` as it is.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self::with_mode(data, false)
    }

    /// Reads a NAL unit's payload, skipping emulation-prevention bytes.
    pub(crate) fn rbsp(data: &'a [u8]) -> Self {
        Self::with_mode(data, true)
    }

    fn with_mode(data: &'a [u8], rbsp: bool) -> Self {
        BitReader {
            data,
            pos: 0,
            zeros: 0,
            cur: 0,
            bits_left: 0,
            rbsp,
        }
    }

    fn next_byte(&mut self) -> Result<u8, BitError> {
        loop {
            let b = *self.data.get(self.pos).ok_or(BitError::End)?;
            self.pos += 1;
            if !self.rbsp {
                return Ok(b);
            }
            if self.zeros >= 2 && b == 3 {
                self.zeros = 0;
                continue;
            }
            self.zeros = if b == 0 {
                self.zeros.saturating_add(1)
            } else {
                0
            };
            return Ok(b);
        }
    }

    pub(crate) fn bit(&mut self) -> Result<u32, BitError> {
        if self.bits_left == 0 {
            self.cur = self.next_byte()?;
            self.bits_left = 8;
        }
        self.bits_left -= 1;
        Ok(u32::from((self.cur >> self.bits_left) & 1))
    }

    pub(crate) fn flag(&mut self) -> Result<bool, BitError> {
        Ok(self.bit()? == 1)
    }

    /// Up to 32 bits (more is a caller bug and reads as an error).
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, BitError> {
        debug_assert!(n <= 32);
        let v = self.bits_u64(n.min(32))?;
        // n <= 32, so the value fits.
        Ok(v as u32)
    }

    /// Up to 64 bits.
    pub(crate) fn bits_u64(&mut self, n: u32) -> Result<u64, BitError> {
        debug_assert!(n <= 64);
        let mut v = 0u64;
        for _ in 0..n.min(64) {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v)
    }

    /// `n` bits, refused when larger than `max`.
    pub(crate) fn bits_max(
        &mut self,
        field: &'static str,
        n: u32,
        max: u32,
    ) -> Result<u32, BitError> {
        let value = self.bits(n)?;
        if value > max {
            return Err(BitError::OutOfRange { field, value });
        }
        Ok(value)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, BitError> {
        Ok(self.bits(8)? as u8)
    }

    /// Skips `n` bits (fails, like a read, if fewer are left).
    pub(crate) fn skip(&mut self, n: u32) -> Result<(), BitError> {
        for _ in 0..n {
            self.bit()?;
        }
        Ok(())
    }

    /// ue(v) (H.264 9.1, H.265 9.2): 31 leading zeros is the most a 32-bit
    /// value needs.
    pub(crate) fn ue(&mut self) -> Result<u32, BitError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(BitError::ExpGolombTooLong);
            }
        }
        let v = (1u64 << zeros) - 1 + u64::from(self.bits(zeros)?);
        u32::try_from(v).map_err(|_| BitError::ExpGolombTooLong)
    }

    /// ue(v), refused when larger than `max`: every value that later sizes
    /// a loop or an array goes through here.
    pub(crate) fn ue_max(&mut self, field: &'static str, max: u32) -> Result<u32, BitError> {
        let value = self.ue()?;
        if value > max {
            return Err(BitError::OutOfRange { field, value });
        }
        Ok(value)
    }

    /// se(v) (H.264 9.1.1).
    pub(crate) fn se(&mut self) -> Result<i32, BitError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= 2^31 - 1 because k <= 2^32 - 2.
        Ok(v as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_msb_first_and_stops_at_the_end() {
        let mut r = BitReader::new(&[0b1010_0000, 0xff]);
        assert_eq!(r.bit(), Ok(1));
        assert_eq!(r.bits(3), Ok(0b010));
        assert_eq!(r.bits(8), Ok(0x0f));
        assert_eq!(r.bits(5), Err(BitError::End));
        assert_eq!(BitReader::new(&[]).bit(), Err(BitError::End));
        let mut r = BitReader::new(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
        assert_eq!(r.bits_u64(64), Ok(0x1234_5678_9abc_def0));
    }

    #[test]
    fn rbsp_mode_drops_emulation_prevention() {
        // 00 00 03 01 reads as 00 00 01; a plain reader keeps the 03.
        let data = [0, 0, 3, 1];
        let mut r = BitReader::rbsp(&data);
        assert_eq!(r.bits(24), Ok(1));
        assert_eq!(r.bit(), Err(BitError::End));
        assert_eq!(BitReader::new(&data).bits(32), Ok(0x0301));
        // 00 00 03 03: only the first 03 is an escape.
        let mut r = BitReader::rbsp(&[0, 0, 3, 3]);
        assert_eq!(r.bits(24), Ok(3));
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 000010000 -> 0, 1, 2, 3, 15
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0000, 0b1000_0000]);
        assert_eq!(r.ue(), Ok(0));
        assert_eq!(r.ue(), Ok(1));
        assert_eq!(r.ue(), Ok(2));
        assert_eq!(r.ue(), Ok(3));
        assert_eq!(
            r.ue_max("x", 14),
            Err(BitError::OutOfRange {
                field: "x",
                value: 15
            })
        );
        let mut r = BitReader::new(&[0b0100_1100]);
        assert_eq!((r.se(), r.se()), (Ok(1), Ok(-1)));
        assert_eq!(
            BitReader::new(&[0, 0, 0, 0, 0x80]).ue(),
            Err(BitError::ExpGolombTooLong)
        );
        // 31 leading zeros, a 1 and 31 ones: the largest code, 2^32 - 2.
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.ue(), Ok(u32::MAX - 1));
    }
}

/// MSB-first bit writer for hand-made test vectors (no emulation
/// prevention: the tests keep clear of `00 00 0x`).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

#[cfg(test)]
impl BitWriter {
    pub(crate) fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.acc = (self.acc << 1) | ((v >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    pub(crate) fn ue(&mut self, v: u32) {
        let v = u64::from(v) + 1;
        let len = 64 - v.leading_zeros();
        self.bits(0, len - 1);
        self.bits(v, len);
    }

    pub(crate) fn se(&mut self, v: i32) {
        let k = if v > 0 { 2 * v - 1 } else { -2 * v };
        self.ue(k as u32);
    }

    /// The bytes, the last one padded with zero bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.bits(0, 1);
        }
        self.out
    }
}

/// Hex (whitespace ignored) to bytes, for test vectors.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A real record (hex) with some bytes overwritten and maybe cut short,
/// for property tests: it gets past the headers that stop purely random
/// input.
#[cfg(test)]
pub(crate) fn mutated(base: &'static str) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let base = hex(base);
    let len = base.len();
    (
        proptest::collection::vec((0..len, any::<u8>()), 1..6),
        0..=len,
    )
        .prop_map(move |(edits, cut)| {
            let mut v = base.clone();
            for (i, b) in edits {
                v[i] = b;
            }
            v.truncate(cut.max(1));
            v
        })
}
