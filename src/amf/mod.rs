//! AMF, Flash's serialization: RTMP commands and data messages, FLV script
//! tags and Enhanced RTMP's video `Metadata` packets (`colorInfo`) use it,
//! so it is a leaf that `rtmp/` and `media/` both build on.
//!
//! This module holds what the AMF0 and AMF3 codecs share: the decode limits,
//! the budget one decode call spends (AMF3 values embedded in AMF0 spend the
//! same one) and the error type.

pub mod amf0;
pub mod amf3;

/// Nesting ceiling applied on top of [`DecodeLimits::max_depth`], so that a
/// careless limit cannot let hostile input overflow a 2 MiB task stack (a
/// debug build needs about 4 KiB per AMF3 level, release about 1.5 KiB).
pub const DEPTH_CEILING: usize = 128;

/// Bounds on what a single decode call may build from hostile input.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Maximum container nesting (objects, arrays, ...); capped at [`DEPTH_CEILING`].
    pub max_depth: usize,
    /// Maximum number of values decoded in total, including values duplicated
    /// by AMF3 references (which are also charged one item per 64 bytes copied).
    pub max_items: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: 32,
            max_items: 65_536,
        }
    }
}

/// Why a buffer could not be decoded as AMF0/AMF3.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AmfError {
    #[error("unexpected end of AMF input")]
    UnexpectedEof,
    #[error("unknown AMF type marker 0x{0:02x}")]
    UnknownMarker(u8),
    #[error("reserved AMF0 type marker 0x{0:02x} (movieclip/recordset) is not supported")]
    ReservedMarker(u8),
    #[error("AMF0 object-end marker outside of an object")]
    UnexpectedObjectEnd,
    #[error("AMF nesting exceeds the depth limit")]
    TooDeep,
    #[error("AMF input decodes to more values than the item limit")]
    TooManyItems,
    #[error("AMF length {declared} exceeds the {remaining} bytes of remaining input")]
    LengthExceedsInput { declared: u64, remaining: usize },
    #[error("AMF3 reference {0} is out of range or to an unfinished object")]
    BadReference(u32),
    #[error("AMF3 externalizable class {0:?} has a private format and cannot be decoded")]
    Externalizable(String),
}

/// Remaining depth and item allowance of one decode call, shared between the
/// AMF0 decoder and the AMF3 values embedded in it.
#[derive(Clone, Debug)]
pub struct Budget {
    max_depth: usize,
    depth: usize,
    items_left: usize,
}

impl Budget {
    pub fn new(limits: &DecodeLimits) -> Budget {
        Budget {
            max_depth: limits.max_depth.min(DEPTH_CEILING),
            depth: 0,
            items_left: limits.max_items,
        }
    }

    /// Items that may still be decoded.
    pub fn items_left(&self) -> usize {
        self.items_left
    }

    /// Charges `n` items.
    pub(crate) fn take(&mut self, n: usize) -> Result<(), AmfError> {
        self.items_left = self
            .items_left
            .checked_sub(n)
            .ok_or(AmfError::TooManyItems)?;
        Ok(())
    }

    /// Checks, before allocating for `count` values, that the input holds at
    /// least one byte for each and that the item budget could cover them.
    pub(crate) fn check_count(&self, count: u64, remaining: usize) -> Result<usize, AmfError> {
        let count = check_len(count, remaining)?;
        if count > self.items_left {
            return Err(AmfError::TooManyItems);
        }
        Ok(count)
    }

    /// Enters one container level.
    pub(crate) fn descend(&mut self) -> Result<(), AmfError> {
        if self.depth >= self.max_depth {
            return Err(AmfError::TooDeep);
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves a container level entered with [`Budget::descend`].
    pub(crate) fn ascend(&mut self) {
        self.depth -= 1;
    }
}

/// Checks a declared byte length against the remaining input.
pub(crate) fn check_len(declared: u64, remaining: usize) -> Result<usize, AmfError> {
    match usize::try_from(declared) {
        Ok(len) if len <= remaining => Ok(len),
        _ => Err(AmfError::LengthExceedsInput {
            declared,
            remaining,
        }),
    }
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
