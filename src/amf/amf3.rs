//! AMF3 codec (Action Message Format version 3), reached from AMF0 through
//! the 0x11 "avmplus" marker.
//!
//! AMF3 shares strings, traits and complex values through reference tables,
//! which lets a few bytes stand for a huge tree. The decoder therefore never
//! stores decoded values in its tables: the string and trait tables hold byte
//! ranges of the input, and a reference to a complex value is resolved by
//! decoding that value again from its recorded offset. Every copy made this
//! way is charged to the shared item budget (one item per value, plus one per
//! 64 bytes of strings or arrays copied), so exponential "billion laughs"
//! inputs fail with [`AmfError::TooManyItems`] and memory stays bounded by
//! the input size plus the item budget. References to values still being
//! decoded (cycles) are rejected, since a tree cannot represent them.
//!
//! Each top-level value (and so each AMF0 0x11 switch) starts with empty
//! reference tables; a reference into an earlier top-level value is reported
//! as [`AmfError::BadReference`].
//!
//! The encoder writes everything inline and uses no reference tables.

use std::ops::Range;
use std::rc::Rc;

use bytes::BufMut;

use super::{check_len, truncate_str, AmfError, Budget, DecodeLimits};

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const INTEGER: u8 = 0x04;
const DOUBLE: u8 = 0x05;
const STRING: u8 = 0x06;
const XML_DOC: u8 = 0x07;
const DATE: u8 = 0x08;
const ARRAY: u8 = 0x09;
const OBJECT: u8 = 0x0A;
const XML: u8 = 0x0B;
const BYTE_ARRAY: u8 = 0x0C;
const VECTOR_INT: u8 = 0x0D;
const VECTOR_UINT: u8 = 0x0E;
const VECTOR_DOUBLE: u8 = 0x0F;
const VECTOR_OBJECT: u8 = 0x10;
const DICTIONARY: u8 = 0x11;

/// Largest value a U29 can carry.
const U29_MAX: u32 = (1 << 29) - 1;
/// Largest length or count that fits a U29 next to its inline flag bit.
const LEN_MAX: usize = (U29_MAX >> 1) as usize;
/// Largest sealed-member count that fits next to the four trait flag bits.
const SEALED_MAX: usize = (U29_MAX >> 4) as usize;
/// Range of `Integer` values that the integer type can carry.
const INT_MIN: i32 = -(1 << 28);
const INT_MAX: i32 = (1 << 28) - 1;
/// Bytes copied through references per item charged.
const BYTES_PER_ITEM: usize = 64;

/// A decoded AMF3 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf3Value {
    Undefined,
    Null,
    Boolean(bool),
    /// 29-bit signed integer on the wire; others are encoded as `Double`.
    Integer(i32),
    Double(f64),
    String(String),
    /// Legacy `flash.xml.XMLDocument`.
    XmlDoc(String),
    /// Milliseconds since the epoch, UTC.
    Date(f64),
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// `dynamic` is only written when `is_dynamic` is set.
    Object {
        class_name: String,
        sealed: Vec<(String, Amf3Value)>,
        dynamic: Vec<(String, Amf3Value)>,
        is_dynamic: bool,
    },
    /// E4X `XML`.
    Xml(String),
    ByteArray(Vec<u8>),
    VectorInt(Vec<i32>),
    VectorUInt(Vec<u32>),
    VectorDouble(Vec<f64>),
    VectorObject {
        type_name: String,
        items: Vec<Amf3Value>,
    },
    Dictionary(Vec<(Amf3Value, Amf3Value)>),
}

/// Decodes every value in `input` with the default limits.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf3Value>, AmfError> {
    decode_all_with(input, &DecodeLimits::default())
}

/// Decodes every value in `input`; the limits apply to the whole buffer.
pub fn decode_all_with(
    mut input: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<Amf3Value>, AmfError> {
    let mut budget = Budget::new(limits);
    let mut values = Vec::new();
    while !input.is_empty() {
        values.push(decode_one(&mut input, &mut budget)?);
    }
    Ok(values)
}

/// Decodes one value, with fresh reference tables, from the front of `input`
/// and advances it past the value. Depth and items are charged to `budget`,
/// which AMF0 shares so that 0x11 values count against the same limits.
pub fn decode_one(input: &mut &[u8], budget: &mut Budget) -> Result<Amf3Value, AmfError> {
    let data = *input;
    let mut decoder = Decoder::new(data, budget);
    let value = decoder.value()?;
    *input = &data[decoder.pos..];
    Ok(value)
}

/// A string as it appears on the wire: its bytes, and whether they were
/// written inline here (rather than reached through the string table).
#[derive(Clone, Debug)]
struct StrRef {
    range: Range<usize>,
    inline: bool,
}

/// A class description from the traits table.
#[derive(Debug)]
struct Traits {
    class_name: StrRef,
    sealed: Vec<StrRef>,
    dynamic: bool,
}

/// An object-table entry: where the value starts, and whether it is complete
/// (a reference to an incomplete value would be a cycle).
#[derive(Clone, Copy, Debug)]
struct Slot {
    start: usize,
    done: bool,
}

/// The U29 header of a value kept in the object table.
enum Header {
    /// A reference, already resolved.
    Ref(Amf3Value),
    /// An inline value: the header bits above the inline flag, and the table
    /// slot to complete once the value is decoded.
    Inline { bits: u32, slot: Option<usize> },
}

struct Decoder<'a, 'b> {
    data: &'a [u8],
    pos: usize,
    budget: &'b mut Budget,
    strings: Vec<Range<usize>>,
    traits: Vec<Rc<Traits>>,
    objects: Vec<Slot>,
    /// Re-decoding a referenced value: tables are left alone, and every byte
    /// copied is charged because it no longer corresponds to fresh input.
    replaying: bool,
}

impl<'a, 'b> Decoder<'a, 'b> {
    fn new(data: &'a [u8], budget: &'b mut Budget) -> Self {
        Decoder {
            data,
            pos: 0,
            budget,
            strings: Vec::new(),
            traits: Vec::new(),
            objects: Vec::new(),
            replaying: false,
        }
    }

    fn value(&mut self) -> Result<Amf3Value, AmfError> {
        self.budget.take(1)?;
        let start = self.pos;
        match self.u8()? {
            UNDEFINED => Ok(Amf3Value::Undefined),
            NULL => Ok(Amf3Value::Null),
            FALSE => Ok(Amf3Value::Boolean(false)),
            TRUE => Ok(Amf3Value::Boolean(true)),
            INTEGER => self.u29().map(|v| Amf3Value::Integer(sign_extend_u29(v))),
            DOUBLE => self.f64().map(Amf3Value::Double),
            STRING => self.string().map(Amf3Value::String),
            XML_DOC => self.xml(start, Amf3Value::XmlDoc),
            DATE => self.date(start),
            ARRAY => self.array(start),
            OBJECT => self.object(start),
            XML => self.xml(start, Amf3Value::Xml),
            BYTE_ARRAY => self.byte_array(start),
            VECTOR_INT => self.vector_fixed(start, 4, |b| Amf3Value::VectorInt(be_chunks(b))),
            VECTOR_UINT => self.vector_fixed(start, 4, |b| Amf3Value::VectorUInt(be_chunks(b))),
            VECTOR_DOUBLE => self.vector_fixed(start, 8, |b| Amf3Value::VectorDouble(be_chunks(b))),
            VECTOR_OBJECT => self.vector_object(start),
            DICTIONARY => self.dictionary(start),
            other => Err(AmfError::UnknownMarker(other)),
        }
    }

    // ---- primitive reads -------------------------------------------------

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Consumes exactly `n` bytes, which the caller has not validated.
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        if self.remaining() < n {
            return Err(AmfError::UnexpectedEof);
        }
        let data: &'a [u8] = self.data;
        let out = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Consumes a length read from the wire, checked against the input.
    fn declared(&mut self, len: u64) -> Result<Range<usize>, AmfError> {
        let len = check_len(len, self.remaining())?;
        let start = self.pos;
        self.pos += len;
        Ok(start..self.pos)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.bytes(1)?[0])
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        self.bytes(8).map(f64::from_be)
    }

    /// Variable-length 29-bit unsigned integer: 7 bits per byte for up to
    /// three bytes, then all 8 bits of a fourth.
    fn u29(&mut self) -> Result<u32, AmfError> {
        let mut value = 0u32;
        for _ in 0..3 {
            let byte = self.u8()?;
            value = (value << 7) | u32::from(byte & 0x7F);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Ok((value << 8) | u32::from(self.u8()?))
    }

    /// Charges bytes copied without consuming matching input.
    fn charge_copy(&mut self, len: usize) -> Result<(), AmfError> {
        self.budget.take(len / BYTES_PER_ITEM)
    }

    /// Checks, before allocating, that `count` values of at least one byte
    /// each could follow.
    fn check_count(&self, count: u64) -> Result<usize, AmfError> {
        self.budget.check_count(count, self.remaining())
    }

    // ---- strings -----------------------------------------------------------

    /// Reads a string header; non-empty inline strings join the string table.
    fn str_ref(&mut self) -> Result<StrRef, AmfError> {
        let header = self.u29()?;
        if header & 1 == 0 {
            let idx = header >> 1;
            let range = self.strings.get(idx as usize).cloned();
            let range = range.ok_or(AmfError::BadReference(idx))?;
            return Ok(StrRef {
                range,
                inline: false,
            });
        }
        let range = self.declared(u64::from(header >> 1))?;
        if !range.is_empty() && !self.replaying {
            self.strings.push(range.clone());
        }
        Ok(StrRef {
            range,
            inline: true,
        })
    }

    /// Materialises a string; `fresh` means its bytes were just consumed, so
    /// the copy is already paid for by the input.
    fn text(&mut self, s: &StrRef, fresh: bool) -> Result<String, AmfError> {
        if !fresh {
            self.charge_copy(s.range.len())?;
        }
        Ok(String::from_utf8_lossy(&self.data[s.range.clone()]).into_owned())
    }

    fn string(&mut self) -> Result<String, AmfError> {
        let s = self.str_ref()?;
        let fresh = s.inline && !self.replaying;
        self.text(&s, fresh)
    }

    /// Reads the key of an associative or dynamic member; `None` ends the list.
    fn member_name(&mut self) -> Result<Option<String>, AmfError> {
        let s = self.str_ref()?;
        if s.range.is_empty() {
            return Ok(None);
        }
        let fresh = s.inline && !self.replaying;
        self.text(&s, fresh).map(Some)
    }

    // ---- object table ------------------------------------------------------

    /// Reads the U29 header of an object-table value starting at `start`.
    fn header(&mut self, start: usize) -> Result<Header, AmfError> {
        let header = self.u29()?;
        if header & 1 == 0 {
            return self.replay(header >> 1).map(Header::Ref);
        }
        let slot = (!self.replaying).then(|| {
            self.objects.push(Slot { start, done: false });
            self.objects.len() - 1
        });
        Ok(Header::Inline {
            bits: header >> 1,
            slot,
        })
    }

    /// Marks an object-table slot complete, making it referenceable.
    fn finish(&mut self, slot: Option<usize>, value: Amf3Value) -> Amf3Value {
        if let Some(idx) = slot {
            self.objects[idx].done = true;
        }
        value
    }

    /// Resolves an object reference by decoding the referenced value again.
    /// It only ever refers to values completed earlier in the input, so this
    /// terminates; its cost is charged like any other decoding.
    fn replay(&mut self, idx: u32) -> Result<Amf3Value, AmfError> {
        let slot = match self.objects.get(idx as usize) {
            Some(slot) if slot.done => *slot,
            _ => return Err(AmfError::BadReference(idx)),
        };
        let (pos, replaying) = (self.pos, self.replaying);
        self.pos = slot.start;
        self.replaying = true;
        let value = self.value()?;
        self.pos = pos;
        self.replaying = replaying;
        Ok(value)
    }

    // ---- complex values ----------------------------------------------------

    fn xml(&mut self, start: usize, wrap: fn(String) -> Amf3Value) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        let s = StrRef {
            range: self.declared(bits.into())?,
            inline: true,
        };
        let text = self.text(&s, !self.replaying)?;
        Ok(self.finish(slot, wrap(text)))
    }

    fn date(&mut self, start: usize) -> Result<Amf3Value, AmfError> {
        let slot = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { slot, .. } => slot,
        };
        let millis = self.f64()?;
        Ok(self.finish(slot, Amf3Value::Date(millis)))
    }

    fn byte_array(&mut self, start: usize) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        let range = self.declared(bits.into())?;
        if self.replaying {
            self.charge_copy(range.len())?;
        }
        let bytes = self.data[range].to_vec();
        Ok(self.finish(slot, Amf3Value::ByteArray(bytes)))
    }

    fn array(&mut self, start: usize) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        self.budget.descend()?;
        let mut assoc = Vec::new();
        while let Some(name) = self.member_name()? {
            assoc.push((name, self.value()?));
        }
        let dense = self.values(bits.into())?;
        self.budget.ascend();
        Ok(self.finish(slot, Amf3Value::Array { assoc, dense }))
    }

    /// Reads `count` values into a vector sized only after checking the input.
    fn values(&mut self, count: u64) -> Result<Vec<Amf3Value>, AmfError> {
        let count = self.check_count(count)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.value()?);
        }
        Ok(items)
    }

    fn object(&mut self, start: usize) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        let (traits, traits_inline) = self.traits(bits)?;
        // Names are free only when their bytes were consumed just now.
        let fresh = |s: &StrRef, replaying: bool| traits_inline && s.inline && !replaying;
        let class_name = self.text(
            &traits.class_name,
            fresh(&traits.class_name, self.replaying),
        )?;
        let count = self.check_count(traits.sealed.len() as u64)?;
        let mut names = Vec::with_capacity(count);
        for name in &traits.sealed {
            names.push(self.text(name, fresh(name, self.replaying))?);
        }
        self.budget.descend()?;
        let mut sealed = Vec::with_capacity(count);
        for name in names {
            sealed.push((name, self.value()?));
        }
        let mut dynamic = Vec::new();
        if traits.dynamic {
            while let Some(name) = self.member_name()? {
                dynamic.push((name, self.value()?));
            }
        }
        self.budget.ascend();
        let value = Amf3Value::Object {
            class_name,
            sealed,
            dynamic,
            is_dynamic: traits.dynamic,
        };
        Ok(self.finish(slot, value))
    }

    /// Reads an object's traits (inline or by reference); the flag says
    /// whether they were inline.
    fn traits(&mut self, bits: u32) -> Result<(Rc<Traits>, bool), AmfError> {
        if bits & 1 == 0 {
            let idx = bits >> 1;
            let traits = self.traits.get(idx as usize).cloned();
            return Ok((traits.ok_or(AmfError::BadReference(idx))?, false));
        }
        let class_name = self.str_ref()?;
        if bits & 0b10 != 0 {
            let name = String::from_utf8_lossy(&self.data[class_name.range]).into_owned();
            return Err(AmfError::Externalizable(name));
        }
        let dynamic = bits & 0b100 != 0;
        // Each sealed name needs a value right after, so the count must also
        // fit the item budget.
        let count = self.check_count(u64::from(bits >> 3))?;
        let mut sealed = Vec::with_capacity(count);
        for _ in 0..count {
            sealed.push(self.str_ref()?);
        }
        let traits = Rc::new(Traits {
            class_name,
            sealed,
            dynamic,
        });
        if !self.replaying {
            self.traits.push(Rc::clone(&traits));
        }
        Ok((traits, true))
    }

    /// Vector of fixed-size numbers: a "fixed" flag byte, then `count` items.
    fn vector_fixed(
        &mut self,
        start: usize,
        width: u64,
        build: fn(&[u8]) -> Amf3Value,
    ) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        self.u8()?; // fixed-length flag: irrelevant to the contents
        let range = self.declared(u64::from(bits) * width)?;
        if self.replaying {
            self.charge_copy(range.len())?;
        }
        let value = build(&self.data[range]);
        Ok(self.finish(slot, value))
    }

    fn vector_object(&mut self, start: usize) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        self.u8()?; // fixed-length flag
        let type_name = self.string()?;
        self.budget.descend()?;
        let items = self.values(bits.into())?;
        self.budget.ascend();
        Ok(self.finish(slot, Amf3Value::VectorObject { type_name, items }))
    }

    fn dictionary(&mut self, start: usize) -> Result<Amf3Value, AmfError> {
        let (bits, slot) = match self.header(start)? {
            Header::Ref(value) => return Ok(value),
            Header::Inline { bits, slot } => (bits, slot),
        };
        self.u8()?; // weak-keys flag
        let count = self.check_count(u64::from(bits) * 2)? / 2;
        self.budget.descend()?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self.value()?;
            entries.push((key, self.value()?));
        }
        self.budget.ascend();
        Ok(self.finish(slot, Amf3Value::Dictionary(entries)))
    }
}

fn sign_extend_u29(value: u32) -> i32 {
    ((value << 3) as i32) >> 3
}

/// Fixed-width big-endian numbers, as read by the vector types.
trait BeNumber: Sized {
    const WIDTH: usize;
    fn from_be(bytes: &[u8]) -> Self;
}

macro_rules! be_number {
    ($($t:ty),*) => {$(
        impl BeNumber for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn from_be(bytes: &[u8]) -> Self {
                let mut buf = [0; std::mem::size_of::<$t>()];
                buf.copy_from_slice(bytes);
                <$t>::from_be_bytes(buf)
            }
        }
    )*};
}
be_number!(i32, u32, f64);

fn be_chunks<T: BeNumber>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::WIDTH).map(T::from_be).collect()
}

/// Appends the AMF3 encoding of `value` to `out`, always inline.
///
/// Encoding cannot fail, so limits of the wire format are handled here:
/// integers outside the 29-bit signed range are written as doubles; strings,
/// byte arrays and collections beyond 2^28-1 bytes or items are truncated;
/// associative and dynamic members with an empty name (which would end the
/// list) are skipped, as are `dynamic` members when `is_dynamic` is false.
pub fn encode(value: &Amf3Value, out: &mut Vec<u8>) {
    match value {
        Amf3Value::Undefined => out.put_u8(UNDEFINED),
        Amf3Value::Null => out.put_u8(NULL),
        Amf3Value::Boolean(false) => out.put_u8(FALSE),
        Amf3Value::Boolean(true) => out.put_u8(TRUE),
        Amf3Value::Integer(i) if (INT_MIN..=INT_MAX).contains(i) => {
            out.put_u8(INTEGER);
            write_u29(out, (*i as u32) & U29_MAX);
        }
        Amf3Value::Integer(i) => {
            out.put_u8(DOUBLE);
            out.put_f64(f64::from(*i));
        }
        Amf3Value::Double(d) => {
            out.put_u8(DOUBLE);
            out.put_f64(*d);
        }
        Amf3Value::String(s) => {
            out.put_u8(STRING);
            write_str(out, s);
        }
        Amf3Value::XmlDoc(s) => {
            out.put_u8(XML_DOC);
            write_str(out, s);
        }
        Amf3Value::Date(millis) => {
            out.put_u8(DATE);
            write_u29(out, 1);
            out.put_f64(*millis);
        }
        Amf3Value::Array { assoc, dense } => {
            out.put_u8(ARRAY);
            let dense = &dense[..dense.len().min(LEN_MAX)];
            write_inline_len(out, dense.len());
            write_members(out, assoc);
            dense.iter().for_each(|v| encode(v, out));
        }
        Amf3Value::Object {
            class_name,
            sealed,
            dynamic,
            is_dynamic,
        } => encode_object(out, class_name, sealed, dynamic, *is_dynamic),
        Amf3Value::Xml(s) => {
            out.put_u8(XML);
            write_str(out, s);
        }
        Amf3Value::ByteArray(bytes) => {
            out.put_u8(BYTE_ARRAY);
            let bytes = &bytes[..bytes.len().min(LEN_MAX)];
            write_inline_len(out, bytes.len());
            out.put_slice(bytes);
        }
        Amf3Value::VectorInt(items) => {
            write_vector_header(out, VECTOR_INT, items.len());
            items.iter().take(LEN_MAX).for_each(|i| out.put_i32(*i));
        }
        Amf3Value::VectorUInt(items) => {
            write_vector_header(out, VECTOR_UINT, items.len());
            items.iter().take(LEN_MAX).for_each(|i| out.put_u32(*i));
        }
        Amf3Value::VectorDouble(items) => {
            write_vector_header(out, VECTOR_DOUBLE, items.len());
            items.iter().take(LEN_MAX).for_each(|d| out.put_f64(*d));
        }
        Amf3Value::VectorObject { type_name, items } => {
            write_vector_header(out, VECTOR_OBJECT, items.len());
            write_str(out, type_name);
            items.iter().take(LEN_MAX).for_each(|v| encode(v, out));
        }
        Amf3Value::Dictionary(entries) => {
            out.put_u8(DICTIONARY);
            let entries = &entries[..entries.len().min(LEN_MAX)];
            write_inline_len(out, entries.len());
            out.put_u8(0); // strong keys
            for (key, value) in entries {
                encode(key, out);
                encode(value, out);
            }
        }
    }
}

fn encode_object(
    out: &mut Vec<u8>,
    class_name: &str,
    sealed: &[(String, Amf3Value)],
    dynamic: &[(String, Amf3Value)],
    is_dynamic: bool,
) {
    let sealed = &sealed[..sealed.len().min(SEALED_MAX)];
    // Inline object, inline traits, not externalizable.
    let mut header = ((sealed.len() as u32) << 4) | 0b011;
    if is_dynamic {
        header |= 0b1000;
    }
    out.put_u8(OBJECT);
    write_u29(out, header);
    write_str(out, class_name);
    sealed.iter().for_each(|(name, _)| write_str(out, name));
    sealed.iter().for_each(|(_, value)| encode(value, out));
    if is_dynamic {
        write_members(out, dynamic);
    }
}

/// Named members terminated by the empty string; empty names are skipped.
fn write_members(out: &mut Vec<u8>, members: &[(String, Amf3Value)]) {
    for (name, value) in members.iter().filter(|(name, _)| !name.is_empty()) {
        write_str(out, name);
        encode(value, out);
    }
    write_u29(out, 1);
}

fn write_vector_header(out: &mut Vec<u8>, marker: u8, len: usize) {
    out.put_u8(marker);
    write_inline_len(out, len.min(LEN_MAX));
    out.put_u8(0); // not fixed-length
}

fn write_inline_len(out: &mut Vec<u8>, len: usize) {
    write_u29(out, ((len.min(LEN_MAX) as u32) << 1) | 1);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, LEN_MAX);
    write_inline_len(out, s.len());
    out.put_slice(s.as_bytes());
}

/// Writes `value` (at most 2^29-1) in the variable-length U29 format.
pub(crate) fn write_u29(out: &mut Vec<u8>, value: u32) {
    let v = value & U29_MAX;
    if v < 0x80 {
        out.put_u8(v as u8);
    } else if v < 0x4000 {
        out.put_slice(&[(v >> 7) as u8 | 0x80, (v & 0x7F) as u8]);
    } else if v < 0x20_0000 {
        out.put_slice(&[
            (v >> 14) as u8 | 0x80,
            ((v >> 7) & 0x7F) as u8 | 0x80,
            (v & 0x7F) as u8,
        ]);
    } else {
        out.put_slice(&[
            (v >> 22) as u8 | 0x80,
            ((v >> 15) & 0x7F) as u8 | 0x80,
            ((v >> 8) & 0x7F) as u8 | 0x80,
            v as u8,
        ]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(value: &Amf3Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    fn round_trip(value: Amf3Value) {
        let bytes = enc(&value);
        assert_eq!(decode_all(&bytes), Ok(vec![value]), "bytes {bytes:02x?}");
    }

    fn decode_single(bytes: &[u8]) -> Result<Amf3Value, AmfError> {
        let mut values = decode_all(bytes)?;
        assert_eq!(values.len(), 1, "{values:?}");
        Ok(values.remove(0))
    }

    fn s(text: &str) -> Amf3Value {
        Amf3Value::String(text.into())
    }

    fn dense(items: Vec<Amf3Value>) -> Amf3Value {
        Amf3Value::Array {
            assoc: vec![],
            dense: items,
        }
    }

    #[test]
    fn u29_boundaries() {
        let cases: [(u32, &[u8]); 8] = [
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x81, 0x00]),
            (0x3FFF, &[0xFF, 0x7F]),
            (0x4000, &[0x81, 0x80, 0x00]),
            (0x1F_FFFF, &[0xFF, 0xFF, 0x7F]),
            (0x20_0000, &[0x80, 0xC0, 0x80, 0x00]),
            (U29_MAX, &[0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            write_u29(&mut out, value);
            assert_eq!(out, bytes, "{value:#x}");
            let mut budget = Budget::new(&DecodeLimits::default());
            let mut decoder = Decoder::new(bytes, &mut budget);
            assert_eq!(decoder.u29(), Ok(value));
            assert_eq!(decoder.pos, bytes.len());
        }
    }

    #[test]
    fn integer_encodings() {
        let cases: [(i32, &[u8]); 6] = [
            (0, &[0x04, 0x00]),
            (1, &[0x04, 0x01]),
            (-1, &[0x04, 0xFF, 0xFF, 0xFF, 0xFF]),
            (INT_MAX, &[0x04, 0xBF, 0xFF, 0xFF, 0xFF]),
            (INT_MIN, &[0x04, 0xC0, 0x80, 0x80, 0x00]),
            (300, &[0x04, 0x82, 0x2C]),
        ];
        for (i, bytes) in cases {
            assert_eq!(enc(&Amf3Value::Integer(i)), bytes, "{i}");
            assert_eq!(decode_single(bytes), Ok(Amf3Value::Integer(i)));
        }
        // Out of the 29-bit range: written as a double.
        for i in [INT_MAX + 1, INT_MIN - 1, i32::MAX, i32::MIN] {
            let bytes = enc(&Amf3Value::Integer(i));
            assert_eq!(bytes[0], DOUBLE);
            assert_eq!(decode_single(&bytes), Ok(Amf3Value::Double(f64::from(i))));
        }
    }

    #[test]
    fn exact_encodings() {
        let cases: Vec<(Amf3Value, Vec<u8>)> = vec![
            (Amf3Value::Undefined, vec![0x00]),
            (Amf3Value::Null, vec![0x01]),
            (Amf3Value::Boolean(false), vec![0x02]),
            (Amf3Value::Boolean(true), vec![0x03]),
            (
                Amf3Value::Double(1.0),
                vec![0x05, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],
            ),
            (s("hello"), vec![0x06, 0x0B, b'h', b'e', b'l', b'l', b'o']),
            (s(""), vec![0x06, 0x01]),
            (
                Amf3Value::Date(0.0),
                vec![0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                Amf3Value::Array {
                    assoc: vec![("k".into(), Amf3Value::Null)],
                    dense: vec![Amf3Value::Boolean(true)],
                },
                vec![0x09, 0x03, 0x03, b'k', 0x01, 0x01, 0x03],
            ),
            (
                Amf3Value::Object {
                    class_name: "C".into(),
                    sealed: vec![("x".into(), Amf3Value::Integer(1))],
                    dynamic: vec![],
                    is_dynamic: false,
                },
                vec![0x0A, 0x13, 0x03, b'C', 0x03, b'x', 0x04, 0x01],
            ),
            (
                Amf3Value::Object {
                    class_name: String::new(),
                    sealed: vec![],
                    dynamic: vec![("a".into(), Amf3Value::Null)],
                    is_dynamic: true,
                },
                vec![0x0A, 0x0B, 0x01, 0x03, b'a', 0x01, 0x01],
            ),
            (
                Amf3Value::ByteArray(vec![1, 2]),
                vec![0x0C, 0x05, 0x01, 0x02],
            ),
            (
                Amf3Value::VectorInt(vec![-1]),
                vec![0x0D, 0x03, 0x00, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
            (
                Amf3Value::VectorObject {
                    type_name: "*".into(),
                    items: vec![Amf3Value::Null],
                },
                vec![0x10, 0x03, 0x00, 0x03, b'*', 0x01],
            ),
            (
                Amf3Value::Dictionary(vec![(Amf3Value::Integer(1), s("v"))]),
                vec![0x11, 0x03, 0x00, 0x04, 0x01, 0x06, 0x03, b'v'],
            ),
        ];
        for (value, bytes) in cases {
            assert_eq!(enc(&value), bytes, "{value:?}");
            assert_eq!(decode_single(&bytes), Ok(value));
        }
    }

    #[test]
    fn every_type_round_trips() {
        let object = Amf3Value::Object {
            class_name: "com.example.Point".into(),
            sealed: vec![
                ("x".into(), Amf3Value::Double(1.5)),
                (String::new(), Amf3Value::Integer(-7)),
            ],
            dynamic: vec![("extra".into(), s("é✓"))],
            is_dynamic: true,
        };
        for value in [
            Amf3Value::Undefined,
            Amf3Value::Null,
            Amf3Value::Boolean(true),
            Amf3Value::Integer(123_456),
            Amf3Value::Double(-0.25),
            Amf3Value::Double(f64::NEG_INFINITY),
            s("text"),
            Amf3Value::XmlDoc("<doc/>".into()),
            Amf3Value::Date(1.7e12),
            Amf3Value::Array {
                assoc: vec![("name".into(), s("v"))],
                dense: vec![Amf3Value::Integer(1), object.clone()],
            },
            object.clone(),
            Amf3Value::Object {
                class_name: "Sealed".into(),
                sealed: vec![("a".into(), Amf3Value::Null)],
                dynamic: vec![],
                is_dynamic: false,
            },
            Amf3Value::Xml("<x/>".into()),
            Amf3Value::ByteArray((0..=255).collect()),
            Amf3Value::VectorInt(vec![i32::MIN, 0, i32::MAX]),
            Amf3Value::VectorUInt(vec![0, u32::MAX]),
            Amf3Value::VectorDouble(vec![0.5, -1e300]),
            Amf3Value::VectorObject {
                type_name: "com.example.Point".into(),
                items: vec![object.clone(), Amf3Value::Null],
            },
            Amf3Value::Dictionary(vec![(object.clone(), Amf3Value::Boolean(false))]),
        ] {
            round_trip(value);
        }
    }

    #[test]
    fn encoder_normalisations() {
        let array = Amf3Value::Array {
            assoc: vec![
                (String::new(), Amf3Value::Null),
                ("k".into(), Amf3Value::Null),
            ],
            dense: vec![],
        };
        assert_eq!(
            decode_single(&enc(&array)),
            Ok(Amf3Value::Array {
                assoc: vec![("k".into(), Amf3Value::Null)],
                dense: vec![],
            })
        );
        let sealed_only = Amf3Value::Object {
            class_name: "C".into(),
            sealed: vec![],
            dynamic: vec![("ignored".into(), Amf3Value::Null)],
            is_dynamic: false,
        };
        assert_eq!(
            decode_single(&enc(&sealed_only)),
            Ok(Amf3Value::Object {
                class_name: "C".into(),
                sealed: vec![],
                dynamic: vec![],
                is_dynamic: false,
            })
        );
    }

    #[test]
    fn string_references_skip_the_empty_string() {
        // ["", "b", ref 0]: "" is not in the table, so ref 0 is "b".
        let bytes = [0x09, 0x07, 0x01, 0x06, 0x01, 0x06, 0x03, b'b', 0x06, 0x00];
        assert_eq!(
            decode_single(&bytes),
            Ok(dense(vec![s(""), s("b"), s("b")]))
        );
        assert_eq!(
            decode_single(&[0x09, 0x03, 0x01, 0x06, 0x02]),
            Err(AmfError::BadReference(1))
        );
    }

    #[test]
    fn object_and_trait_references() {
        let point = |x: i32| Amf3Value::Object {
            class_name: "C".into(),
            sealed: vec![("x".into(), Amf3Value::Integer(x))],
            dynamic: vec![],
            is_dynamic: false,
        };
        // [C{x:1}, C{x:2} via trait ref 0, object ref 1]
        let bytes = [
            0x09, 0x07, 0x01, // outer array (object 0), 3 dense
            0x0A, 0x13, 0x03, b'C', 0x03, b'x', 0x04, 0x01, // object 1, traits 0
            0x0A, 0x01, 0x04, 0x02, // object 2, traits ref 0
            0x0A, 0x02, // object ref 1
        ];
        assert_eq!(
            decode_single(&bytes),
            Ok(dense(vec![point(1), point(2), point(1)]))
        );
        assert_eq!(
            decode_single(&[0x0A, 0x05, 0x01]),
            Err(AmfError::BadReference(1))
        );
        assert_eq!(decode_single(&[0x0A, 0x02]), Err(AmfError::BadReference(1)));
    }

    #[test]
    fn replays_leave_tables_untouched() {
        // [X=["p"], ref X, "q", string ref 1, Y=[], ref Y]
        let bytes = [
            0x09, 0x0D, 0x01, // outer: object 0, 6 dense
            0x09, 0x03, 0x01, 0x06, 0x03, b'p', // X: object 1, "p" is string 0
            0x09, 0x02, // ref object 1
            0x06, 0x03, b'q', // "q" is string 1
            0x06, 0x02, // string ref 1
            0x09, 0x01, 0x01, // Y: object 2
            0x09, 0x04, // ref object 2
        ];
        let x = dense(vec![s("p")]);
        let y = dense(vec![]);
        assert_eq!(
            decode_single(&bytes),
            Ok(dense(vec![x.clone(), x, s("q"), s("q"), y.clone(), y]))
        );
    }

    #[test]
    fn references_to_every_table_type() {
        let values = [
            Amf3Value::XmlDoc("<a/>".into()),
            Amf3Value::Date(5.0),
            Amf3Value::Xml("<b/>".into()),
            Amf3Value::ByteArray(vec![9; 100]),
            Amf3Value::VectorInt(vec![1, 2]),
            Amf3Value::VectorUInt(vec![3]),
            Amf3Value::VectorDouble(vec![4.0]),
            Amf3Value::VectorObject {
                type_name: "T".into(),
                items: vec![s("x")],
            },
            Amf3Value::Dictionary(vec![(Amf3Value::Null, Amf3Value::Null)]),
        ];
        for value in values {
            // [value, ref 1]
            let mut bytes = vec![0x09, 0x05, 0x01];
            let inline = enc(&value);
            bytes.extend_from_slice(&inline);
            bytes.extend_from_slice(&[inline[0], 0x02]);
            assert_eq!(decode_single(&bytes), Ok(dense(vec![value.clone(), value])));
        }
    }

    #[test]
    fn cycles_are_rejected() {
        // Object whose dynamic member refers to the object itself.
        let bytes = [0x0A, 0x0B, 0x01, 0x03, b'a', 0x0A, 0x00, 0x01];
        assert_eq!(decode_single(&bytes), Err(AmfError::BadReference(0)));
        // Dictionary containing itself as a key.
        assert_eq!(
            decode_single(&[0x11, 0x03, 0x00, 0x11, 0x00, 0x01]),
            Err(AmfError::BadReference(0))
        );
    }

    #[test]
    fn externalizable_is_a_clean_error() {
        let bytes = [0x0A, 0x07, 0x07, b'f', b'o', b'o', 0xDE, 0xAD];
        assert_eq!(
            decode_single(&bytes),
            Err(AmfError::Externalizable("foo".into()))
        );
    }

    #[test]
    fn tables_reset_between_top_level_values() {
        assert_eq!(
            decode_all(&[0x06, 0x03, b'a', 0x06, 0x00]),
            Err(AmfError::BadReference(0))
        );
        assert_eq!(
            decode_all(&[0x06, 0x03, b'a', 0x06, 0x03, b'a']),
            Ok(vec![s("a"), s("a")])
        );
    }

    #[test]
    fn reference_copies_are_charged() {
        // [s, ref s, ref s] where s is 640 bytes: each copy costs 1 + 10 items.
        let text = "z".repeat(640);
        let mut bytes = vec![0x09, 0x07, 0x01];
        bytes.extend(enc(&s(&text)));
        bytes.extend_from_slice(&[0x06, 0x00, 0x06, 0x00]);
        let limits = |max_items| DecodeLimits {
            max_depth: 4,
            max_items,
        };
        // 4 values + 2 copies of 10 items.
        assert!(decode_all_with(&bytes, &limits(24)).is_ok());
        assert_eq!(
            decode_all_with(&bytes, &limits(23)),
            Err(AmfError::TooManyItems)
        );
        // Inline, the same tree costs only its 4 values.
        let inline = enc(&dense(vec![s(&text), s(&text), s(&text)]));
        assert!(decode_all_with(&inline, &limits(4)).is_ok());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(decode_all(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
        assert_eq!(decode_all(&[0x04, 0x80]), Err(AmfError::UnexpectedEof));
        assert_eq!(decode_all(&[0x05, 0, 0]), Err(AmfError::UnexpectedEof));
        assert_eq!(
            decode_all(&[0x06, 0x05, b'a']),
            Err(AmfError::LengthExceedsInput {
                declared: 2,
                remaining: 1
            })
        );
        // Vector header without its fixed flag.
        assert_eq!(decode_all(&[0x0D, 0x01]), Err(AmfError::UnexpectedEof));
        // Array without the end of its associative part.
        assert_eq!(decode_all(&[0x09, 0x01]), Err(AmfError::UnexpectedEof));
        // Invalid UTF-8 is replaced, not rejected.
        assert_eq!(decode_all(&[0x06, 0x03, 0xFF]), Ok(vec![s("\u{FFFD}")]));
        // Every strict prefix of a rich value fails cleanly.
        let bytes = enc(&Amf3Value::Array {
            assoc: vec![("k".into(), Amf3Value::Date(1.0))],
            dense: vec![Amf3Value::VectorDouble(vec![1.0]), s("tail")],
        });
        for end in 1..bytes.len() {
            assert!(decode_all(&bytes[..end]).is_err(), "prefix {end}");
        }
    }

    fn arb_text() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            Just(String::new()),
            "[a-z]{1,6}",
            any::<String>().prop_map(|s| s.chars().take(10).collect()),
        ]
    }

    fn arb_key() -> impl Strategy<Value = String> + Clone {
        arb_text().prop_filter("empty names end member lists", |s| !s.is_empty())
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("NaN never compares equal", |f| !f.is_nan())
    }

    /// Arbitrary AMF3 trees that survive an encode/decode round trip.
    pub(crate) fn arb_amf3() -> impl Strategy<Value = Amf3Value> {
        let leaf = prop_oneof![
            Just(Amf3Value::Undefined),
            Just(Amf3Value::Null),
            any::<bool>().prop_map(Amf3Value::Boolean),
            (INT_MIN..=INT_MAX).prop_map(Amf3Value::Integer),
            arb_f64().prop_map(Amf3Value::Double),
            arb_text().prop_map(Amf3Value::String),
            arb_text().prop_map(Amf3Value::XmlDoc),
            arb_f64().prop_map(Amf3Value::Date),
            arb_text().prop_map(Amf3Value::Xml),
            prop::collection::vec(any::<u8>(), 0..16).prop_map(Amf3Value::ByteArray),
            prop::collection::vec(any::<i32>(), 0..4).prop_map(Amf3Value::VectorInt),
            prop::collection::vec(any::<u32>(), 0..4).prop_map(Amf3Value::VectorUInt),
            prop::collection::vec(arb_f64(), 0..4).prop_map(Amf3Value::VectorDouble),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            let members = prop::collection::vec((arb_key(), inner.clone()), 0..4);
            let items = prop::collection::vec(inner.clone(), 0..4);
            prop_oneof![
                (members.clone(), items.clone())
                    .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
                (
                    arb_text(),
                    prop::collection::vec((arb_text(), inner.clone()), 0..4),
                    members,
                    any::<bool>(),
                )
                    .prop_map(|(class_name, sealed, dynamic, is_dynamic)| {
                        Amf3Value::Object {
                            class_name,
                            sealed,
                            dynamic: if is_dynamic { dynamic } else { vec![] },
                            is_dynamic,
                        }
                    }),
                (arb_text(), items)
                    .prop_map(|(type_name, items)| Amf3Value::VectorObject { type_name, items }),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Amf3Value::Dictionary),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_round_trip(values in prop::collection::vec(arb_amf3(), 0..4)) {
            let mut bytes = Vec::new();
            values.iter().for_each(|v| encode(v, &mut bytes));
            prop_assert_eq!(decode_all(&bytes), Ok(values));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(values) = decode_all(&bytes) {
                // References are expanded inline; the result is a fixed point.
                let mut once = Vec::new();
                values.iter().for_each(|v| encode(v, &mut once));
                let again = decode_all(&once).expect("re-encoded output decodes");
                let mut twice = Vec::new();
                again.iter().for_each(|v| encode(v, &mut twice));
                prop_assert_eq!(twice, once);
            }
        }

        #[test]
        fn prop_reference_heavy_bytes_never_panic(
            body in prop::collection::vec(
                prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x04, 0x06, 0x09, 0x0A, 0x0B, 0x11, 0x7F, 0x80]),
                0..256,
            )
        ) {
            // Few distinct bytes make references, traits and arrays common.
            let mut bytes = vec![0x09, 0x81, 0x01, 0x01];
            bytes.extend(body);
            let _ = decode_all(&bytes);
        }
    }
}
