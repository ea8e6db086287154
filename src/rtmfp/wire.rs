//! RTMFP's field encodings (RFC 7016 §2.1): big-endian integers and the
//! Variable Length Unsigned integer (VLU), seven bits a byte, most
//! significant group first, the high bit set on every byte but the last.
//! A VLU also prefixes most variable fields ("a VLU length, then that many
//! bytes").
//!
//! `Reader` is the one cursor every RTMFP parser reads with: each read is
//! checked against what is left, so a length from the wire can never point
//! past the packet, and nothing is allocated for it.

use super::Error;

/// The longest VLU accepted: ten bytes carry 70 bits, enough for any `u64`.
/// RFC 7016 sets no limit; a longer one is only zero groups, and refused.
pub const MAX_VLU_LEN: usize = 10;

/// Bytes `value` takes as a VLU.
pub fn vlu_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends `value` as a VLU.
pub fn put_vlu(out: &mut Vec<u8>, value: u64) {
    let n = vlu_len(value);
    for i in (0..n).rev() {
        let group = ((value >> (7 * i)) & 0x7f) as u8;
        out.push(if i == 0 { group } else { group | 0x80 });
    }
}

/// Appends a VLU length and `bytes`.
pub fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    put_vlu(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A bounded cursor over received bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// What is left, not consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Consumes and returns everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.rest.len() {
            return Err(Error::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn vlu(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for (i, &b) in self.rest.iter().enumerate() {
            if i == MAX_VLU_LEN || value > u64::MAX >> 7 {
                return Err(Error::BadVlu);
            }
            value = (value << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(Error::Truncated)
    }

    /// A VLU length and that many bytes.
    pub fn field(&mut self) -> Result<&'a [u8], Error> {
        let len = self.vlu()?;
        let len = usize::try_from(len).map_err(|_| Error::Truncated)?;
        self.bytes(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vlus_match_rfc_7016_examples() {
        // §2.1.2: 0x7f is one byte, 0x80 two (0x81 0x00), 16383 two.
        let enc = |v| {
            let mut out = Vec::new();
            put_vlu(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(0x7f), [0x7f]);
        assert_eq!(enc(0x80), [0x81, 0x00]);
        assert_eq!(enc(16383), [0xff, 0x7f]);
        assert_eq!(enc(16384), [0x81, 0x80, 0x00]);
        assert_eq!(enc(u64::MAX).len(), MAX_VLU_LEN);
    }

    #[test]
    fn a_vlu_past_64_bits_or_ten_bytes_is_refused() {
        // 11 groups: more than 64 bits.
        let mut too_big = vec![0x82; 10];
        too_big.push(0x00);
        assert_eq!(Reader::new(&too_big).vlu(), Err(Error::BadVlu));
        // Only zero groups, but eleven bytes of them.
        let mut padded = vec![0x80; 10];
        padded.push(0x01);
        assert_eq!(Reader::new(&padded).vlu(), Err(Error::BadVlu));
        assert_eq!(Reader::new(&[0x81]).vlu(), Err(Error::Truncated));
    }

    #[test]
    fn a_field_longer_than_what_is_left_is_refused_before_anything_is_read() {
        let mut r = Reader::new(&[0x05, 1, 2, 3]);
        assert_eq!(r.field(), Err(Error::Truncated));
        let mut huge = Vec::new();
        put_vlu(&mut huge, u64::MAX);
        assert_eq!(Reader::new(&huge).field(), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn vlus_round_trip(v in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            put_vlu(&mut out, v);
            prop_assert_eq!(out.len(), vlu_len(v));
            out.extend_from_slice(&tail);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.vlu(), Ok(v));
            prop_assert_eq!(r.remaining(), &tail[..]);
        }

        #[test]
        fn fields_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_field(&mut out, &bytes);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.field(), Ok(&bytes[..]));
            prop_assert!(r.is_empty());
        }
    }
}
