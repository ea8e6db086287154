//! AMF0 codec (Action Message Format version 0), as used by RTMP command and
//! data messages.
//!
//! The decoder treats its input as hostile: every length or count read from
//! the wire is checked against the bytes that remain before anything is
//! allocated, nesting depth is bounded (the decoder recurses), and the total
//! number of decoded values is bounded by [`DecodeLimits::max_items`]. Invalid
//! UTF-8 is replaced, never rejected, because real encoders emit it.
//!
//! Encoding never fails: a value that the wire format cannot express is
//! written in the closest form that can (see [`encode`]).

use bytes::BufMut;

use super::amf3::{self, Amf3Value};
use super::{check_len, truncate_str};
pub use super::{AmfError, Budget, DecodeLimits, DEPTH_CEILING};

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const MOVIE_CLIP: u8 = 0x04;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const RECORD_SET: u8 = 0x0E;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// A decoded AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// Anonymous object; properties keep their wire order.
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Index into the sender's object table; deliberately left unresolved.
    Reference(u16),
    /// Associative array; the wire count is only a hint and is not kept.
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    Date {
        millis: f64,
        timezone: i16,
    },
    LongString(String),
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
    /// Marker 0x11: the value that follows is AMF3.
    AvmPlus(Amf3Value),
}

impl Amf0Value {
    /// Text content of any string-like value, so callers need not care which
    /// encoding the peer picked.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            Amf0Value::AvmPlus(Amf3Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Numeric content; AMF3 integers and doubles count too.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::AvmPlus(Amf3Value::Double(n)) => Some(*n),
            Amf0Value::AvmPlus(Amf3Value::Integer(i)) => Some(f64::from(*i)),
            _ => None,
        }
    }

    /// Boolean content (AMF0 or AMF3).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) | Amf0Value::AvmPlus(Amf3Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// First property called `name` of an object, ECMA array or typed object.
    pub fn get(&self, name: &str) -> Option<&Amf0Value> {
        let props = match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => p,
            Amf0Value::TypedObject { properties, .. } => properties,
            _ => return None,
        };
        props.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Builds an anonymous object, keeping the given property order.
    pub fn object<'a>(props: impl IntoIterator<Item = (&'a str, Amf0Value)>) -> Amf0Value {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// Builds a string value.
    pub fn string(s: impl Into<String>) -> Amf0Value {
        Amf0Value::String(s.into())
    }
}

/// Decodes every value in `input` with the default limits.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    decode_all_with(input, &DecodeLimits::default())
}

/// Decodes every value in `input`; the limits apply to the whole buffer.
pub fn decode_all_with(
    mut input: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<Amf0Value>, AmfError> {
    let mut budget = Budget::new(limits);
    let mut values = Vec::new();
    while !input.is_empty() {
        values.push(decode_one(&mut input, &mut budget)?);
    }
    Ok(values)
}

/// Decodes one value from the front of `input`, advancing it past the value.
pub fn decode_one(input: &mut &[u8], budget: &mut Budget) -> Result<Amf0Value, AmfError> {
    budget.take(1)?;
    let marker = read_u8(input)?;
    Ok(match marker {
        NUMBER => Amf0Value::Number(read_f64(input)?),
        BOOLEAN => Amf0Value::Boolean(read_u8(input)? != 0),
        STRING => Amf0Value::String(read_short_str(input)?),
        OBJECT => Amf0Value::Object(read_props(input, budget)?),
        NULL => Amf0Value::Null,
        UNDEFINED => Amf0Value::Undefined,
        REFERENCE => Amf0Value::Reference(read_u16(input)?),
        ECMA_ARRAY => {
            read_u32(input)?; // count is a hint only; the end marker decides
            Amf0Value::EcmaArray(read_props(input, budget)?)
        }
        OBJECT_END => return Err(AmfError::UnexpectedObjectEnd),
        STRICT_ARRAY => Amf0Value::StrictArray(read_strict_array(input, budget)?),
        DATE => Amf0Value::Date {
            millis: read_f64(input)?,
            timezone: read_u16(input)? as i16,
        },
        LONG_STRING => Amf0Value::LongString(read_long_str(input)?),
        UNSUPPORTED => Amf0Value::Unsupported,
        XML_DOCUMENT => Amf0Value::XmlDocument(read_long_str(input)?),
        TYPED_OBJECT => Amf0Value::TypedObject {
            class_name: read_short_str(input)?,
            properties: read_props(input, budget)?,
        },
        AVMPLUS => Amf0Value::AvmPlus(amf3::decode_one(input, budget)?),
        MOVIE_CLIP | RECORD_SET => return Err(AmfError::ReservedMarker(marker)),
        other => return Err(AmfError::UnknownMarker(other)),
    })
}

/// Reads `name, value` pairs up to the `00 00 09` end marker. An empty name
/// not followed by 0x09 is an ordinary property, which keeps such objects
/// round-trippable.
fn read_props(
    input: &mut &[u8],
    budget: &mut Budget,
) -> Result<Vec<(String, Amf0Value)>, AmfError> {
    budget.descend()?;
    let mut props = Vec::new();
    loop {
        let name = read_short_str(input)?;
        if name.is_empty() && input.first() == Some(&OBJECT_END) {
            *input = &input[1..];
            break;
        }
        props.push((name, decode_one(input, budget)?));
    }
    budget.ascend();
    Ok(props)
}

fn read_strict_array(input: &mut &[u8], budget: &mut Budget) -> Result<Vec<Amf0Value>, AmfError> {
    let count = budget.check_count(read_u32(input)?.into(), input.len())?;
    budget.descend()?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(decode_one(input, budget)?);
    }
    budget.ascend();
    Ok(items)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], AmfError> {
    if input.len() < n {
        return Err(AmfError::UnexpectedEof);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], AmfError> {
    let mut out = [0; N];
    out.copy_from_slice(take(input, N)?);
    Ok(out)
}

fn read_u8(input: &mut &[u8]) -> Result<u8, AmfError> {
    Ok(take_array::<1>(input)?[0])
}

fn read_u16(input: &mut &[u8]) -> Result<u16, AmfError> {
    take_array(input).map(u16::from_be_bytes)
}

fn read_u32(input: &mut &[u8]) -> Result<u32, AmfError> {
    take_array(input).map(u32::from_be_bytes)
}

fn read_f64(input: &mut &[u8]) -> Result<f64, AmfError> {
    take_array(input).map(f64::from_be_bytes)
}

/// Reads `len` bytes of text; the length is validated before copying.
fn read_text(input: &mut &[u8], len: u64) -> Result<String, AmfError> {
    let len = check_len(len, input.len())?;
    Ok(String::from_utf8_lossy(take(input, len)?).into_owned())
}

fn read_short_str(input: &mut &[u8]) -> Result<String, AmfError> {
    let len = read_u16(input)?;
    read_text(input, len.into())
}

fn read_long_str(input: &mut &[u8]) -> Result<String, AmfError> {
    let len = read_u32(input)?;
    read_text(input, len.into())
}

/// Appends the AMF0 encoding of `value` to `out`.
///
/// Encoding cannot fail, so limits of the wire format are handled here:
/// a `String` longer than 65535 bytes is written as a long string, property
/// and class names longer than 65535 bytes and long strings or arrays beyond
/// `u32::MAX` are truncated (at a character boundary).
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) if s.len() <= usize::from(u16::MAX) => {
            out.put_u8(STRING);
            write_short_str(s, out);
        }
        Amf0Value::String(s) | Amf0Value::LongString(s) => {
            out.put_u8(LONG_STRING);
            write_long_str(s, out);
        }
        Amf0Value::Object(props) => {
            out.put_u8(OBJECT);
            write_props(props, out);
        }
        Amf0Value::Null => out.put_u8(NULL),
        Amf0Value::Undefined => out.put_u8(UNDEFINED),
        Amf0Value::Reference(idx) => {
            out.put_u8(REFERENCE);
            out.put_u16(*idx);
        }
        Amf0Value::EcmaArray(props) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            write_props(props, out);
        }
        Amf0Value::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u8(STRICT_ARRAY);
            out.put_u32(count);
            for item in &items[..count as usize] {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Amf0Value::Unsupported => out.put_u8(UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.put_u8(XML_DOCUMENT);
            write_long_str(s, out);
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(TYPED_OBJECT);
            write_short_str(class_name, out);
            write_props(properties, out);
        }
        Amf0Value::AvmPlus(inner) => {
            out.put_u8(AVMPLUS);
            amf3::encode(inner, out);
        }
    }
}

/// Encodes a sequence of values, e.g. the body of a command message.
pub fn encode_all(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode(value, &mut out);
    }
    out
}

fn write_props(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (name, value) in props {
        write_short_str(name, out);
        encode(value, out);
    }
    out.put_slice(&[0, 0, OBJECT_END]);
}

fn write_short_str(s: &str, out: &mut Vec<u8>) {
    let s = truncate_str(s, usize::from(u16::MAX));
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn write_long_str(s: &str, out: &mut Vec<u8>) {
    let s = truncate_str(s, u32::MAX as usize);
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(value: Amf0Value) {
        let mut bytes = Vec::new();
        encode(&value, &mut bytes);
        assert_eq!(decode_all(&bytes), Ok(vec![value]), "bytes {bytes:02x?}");
    }

    fn decode_err(bytes: &[u8]) -> AmfError {
        decode_all(bytes).expect_err("hostile input must be rejected")
    }

    /// Bytes of a short AMF0 string body (length + UTF-8).
    fn short(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn scalars_round_trip() {
        for value in [
            Amf0Value::Number(0.0),
            Amf0Value::Number(-1.5e300),
            Amf0Value::Number(f64::INFINITY),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(false),
            Amf0Value::string(""),
            Amf0Value::string("héllo ✓"),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Reference(0xBEEF),
            Amf0Value::Date {
                millis: 1.7e12,
                timezone: -120,
            },
            Amf0Value::LongString("long".into()),
            Amf0Value::Unsupported,
            Amf0Value::XmlDocument("<a b='c'/>".into()),
        ] {
            round_trip(value);
        }
    }

    #[test]
    fn containers_round_trip() {
        let inner = Amf0Value::object([("a", Amf0Value::Number(1.0)), ("", Amf0Value::Null)]);
        for value in [
            Amf0Value::Object(vec![]),
            inner.clone(),
            Amf0Value::EcmaArray(vec![]),
            Amf0Value::EcmaArray(vec![("duration".into(), Amf0Value::Number(0.0))]),
            Amf0Value::StrictArray(vec![]),
            Amf0Value::StrictArray(vec![inner.clone(), Amf0Value::Boolean(true)]),
            Amf0Value::TypedObject {
                class_name: "com.example.Thing".into(),
                properties: vec![("x".into(), inner.clone())],
            },
            Amf0Value::AvmPlus(Amf3Value::Integer(-5)),
            Amf0Value::AvmPlus(Amf3Value::Array {
                assoc: vec![("k".into(), Amf3Value::String("v".into()))],
                dense: vec![Amf3Value::Null],
            }),
        ] {
            round_trip(value);
        }
    }

    #[test]
    fn connect_command_matches_ffmpeg_bytes() {
        let values = vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                ("type", Amf0Value::string("nonprivate")),
                (
                    "flashVer",
                    Amf0Value::string("FMLE/3.0 (compatible; FMSc/1.0)"),
                ),
                ("tcUrl", Amf0Value::string("rtmp://127.0.0.1:1935/live")),
            ]),
        ];
        let mut expected = vec![0x02, 0x00, 0x07];
        expected.extend_from_slice(b"connect");
        expected.push(0x00);
        expected.extend_from_slice(&[0x3F, 0xF0, 0, 0, 0, 0, 0, 0]); // 1.0
        expected.push(0x03);
        for (key, val) in [
            ("app", "live"),
            ("type", "nonprivate"),
            ("flashVer", "FMLE/3.0 (compatible; FMSc/1.0)"),
            ("tcUrl", "rtmp://127.0.0.1:1935/live"),
        ] {
            expected.extend(short(key));
            expected.push(0x02);
            expected.extend(short(val));
        }
        expected.extend_from_slice(&[0x00, 0x00, 0x09]);

        let bytes = encode_all(&values);
        assert_eq!(bytes, expected);
        let decoded = decode_all(&expected).unwrap();
        assert_eq!(decoded, values);
        assert_eq!(decoded[0].as_str(), Some("connect"));
        assert_eq!(decoded[1].as_f64(), Some(1.0));
        assert_eq!(
            decoded[2].get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        // Every prefix that cuts a value short is a clean error.
        let boundaries = [10, 19];
        for end in (1..expected.len()).filter(|end| !boundaries.contains(end)) {
            let result = decode_all(&expected[..end]);
            assert!(
                matches!(
                    result,
                    Err(AmfError::UnexpectedEof | AmfError::LengthExceedsInput { .. })
                ),
                "prefix {end}: {result:?}"
            );
        }
    }

    #[test]
    fn exact_encodings() {
        let cases: Vec<(Amf0Value, Vec<u8>)> = vec![
            (Amf0Value::Boolean(true), vec![0x01, 0x01]),
            (Amf0Value::Null, vec![0x05]),
            (Amf0Value::Undefined, vec![0x06]),
            (Amf0Value::Reference(0x0102), vec![0x07, 0x01, 0x02]),
            (
                Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)]),
                vec![0x08, 0, 0, 0, 1, 0, 1, b'a', 0x05, 0, 0, 0x09],
            ),
            (
                Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Undefined]),
                vec![0x0A, 0, 0, 0, 2, 0x05, 0x06],
            ),
            (
                Amf0Value::Date {
                    millis: 0.0,
                    timezone: -1,
                },
                vec![0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
            ),
            (
                Amf0Value::LongString("ab".into()),
                vec![0x0C, 0, 0, 0, 2, b'a', b'b'],
            ),
            (Amf0Value::Unsupported, vec![0x0D]),
            (
                Amf0Value::XmlDocument("x".into()),
                vec![0x0F, 0, 0, 0, 1, b'x'],
            ),
            (
                Amf0Value::TypedObject {
                    class_name: "C".into(),
                    properties: vec![],
                },
                vec![0x10, 0, 1, b'C', 0, 0, 0x09],
            ),
            (
                Amf0Value::AvmPlus(Amf3Value::Integer(1)),
                vec![0x11, 0x04, 0x01],
            ),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode_all(std::slice::from_ref(&value)), bytes);
            assert_eq!(decode_all(&bytes), Ok(vec![value]));
        }
    }

    #[test]
    fn long_string_threshold() {
        let at_limit = "x".repeat(65_535);
        let bytes = encode_all(&[Amf0Value::string(at_limit.clone())]);
        assert_eq!(&bytes[..3], &[0x02, 0xFF, 0xFF]);
        assert_eq!(decode_all(&bytes), Ok(vec![Amf0Value::String(at_limit)]));

        let over = "x".repeat(65_536);
        let bytes = encode_all(&[Amf0Value::string(over.clone())]);
        assert_eq!(&bytes[..5], &[0x0C, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(decode_all(&bytes), Ok(vec![Amf0Value::LongString(over)]));
    }

    #[test]
    fn overlong_names_are_truncated_at_char_boundary() {
        let name = "é".repeat(40_000); // 80,000 bytes
        let bytes = encode_all(&[Amf0Value::object([(name.as_str(), Amf0Value::Null)])]);
        let decoded = decode_all(&bytes).unwrap();
        let Amf0Value::Object(props) = &decoded[0] else {
            panic!("{decoded:?}")
        };
        assert_eq!(props[0].0, "é".repeat(32_767));
    }

    #[test]
    fn ecma_count_is_only_a_hint() {
        // Count says 0 but two properties follow.
        let mut bytes = vec![0x08, 0, 0, 0, 0];
        bytes.extend(short("a"));
        bytes.extend_from_slice(&[0x01, 0x01]);
        bytes.extend(short("b"));
        bytes.push(0x05);
        bytes.extend_from_slice(&[0, 0, 9]);
        let expected = Amf0Value::EcmaArray(vec![
            ("a".into(), Amf0Value::Boolean(true)),
            ("b".into(), Amf0Value::Null),
        ]);
        assert_eq!(decode_all(&bytes), Ok(vec![expected]));
        // Count says 1000 but the array ends at once.
        assert_eq!(
            decode_all(&[0x08, 0, 0, 0x03, 0xE8, 0, 0, 9]),
            Ok(vec![Amf0Value::EcmaArray(vec![])])
        );
        // Missing end marker is an error, not a silent truncation.
        assert_eq!(
            decode_err(&[0x08, 0, 0, 0, 1, 0, 1, b'a', 0x05]),
            AmfError::UnexpectedEof
        );
    }

    #[test]
    fn object_end_handling() {
        assert_eq!(decode_err(&[0x09]), AmfError::UnexpectedObjectEnd);
        // A named property whose value is the end marker is malformed.
        assert_eq!(
            decode_err(&[0x03, 0, 1, b'a', 0x09]),
            AmfError::UnexpectedObjectEnd
        );
        // Empty name with a real value is a property, not the end.
        assert_eq!(
            decode_all(&[0x03, 0, 0, 0x05, 0, 0, 0x09]),
            Ok(vec![Amf0Value::Object(vec![(
                String::new(),
                Amf0Value::Null
            )])])
        );
        assert_eq!(decode_err(&[0x03, 0, 0]), AmfError::UnexpectedEof);
    }

    #[test]
    fn bad_markers_are_errors() {
        assert_eq!(decode_err(&[0x04]), AmfError::ReservedMarker(0x04));
        assert_eq!(decode_err(&[0x0E]), AmfError::ReservedMarker(0x0E));
        for marker in 0x12..=0xFF {
            assert_eq!(decode_err(&[marker]), AmfError::UnknownMarker(marker));
        }
        assert_eq!(decode_err(&[0x11]), AmfError::UnexpectedEof);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let bytes = [0x02, 0x00, 0x03, b'a', 0xFF, b'b'];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![Amf0Value::string("a\u{FFFD}b")])
        );
        let bytes = [0x03, 0x00, 0x01, 0xC0, 0x05, 0, 0, 9];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![Amf0Value::object([("\u{FFFD}", Amf0Value::Null)])])
        );
    }

    #[test]
    fn accessors() {
        let obj = Amf0Value::TypedObject {
            class_name: "C".into(),
            properties: vec![("n".into(), Amf0Value::Number(2.0))],
        };
        assert_eq!(obj.get("n"), Some(&Amf0Value::Number(2.0)));
        assert_eq!(obj.get("missing"), None);
        assert_eq!(Amf0Value::Null.get("n"), None);
        let ecma = Amf0Value::EcmaArray(vec![("k".into(), Amf0Value::Boolean(true))]);
        assert_eq!(ecma.get("k").and_then(Amf0Value::as_bool), Some(true));
        assert_eq!(Amf0Value::LongString("l".into()).as_str(), Some("l"));
        assert_eq!(
            Amf0Value::AvmPlus(Amf3Value::String("s".into())).as_str(),
            Some("s")
        );
        assert_eq!(
            Amf0Value::AvmPlus(Amf3Value::Integer(7)).as_f64(),
            Some(7.0)
        );
        assert_eq!(
            Amf0Value::AvmPlus(Amf3Value::Double(0.5)).as_f64(),
            Some(0.5)
        );
        assert_eq!(
            Amf0Value::AvmPlus(Amf3Value::Boolean(false)).as_bool(),
            Some(false)
        );
        assert_eq!(Amf0Value::Null.as_str(), None);
        assert_eq!(Amf0Value::string("1").as_f64(), None);
        assert_eq!(Amf0Value::Number(1.0).as_bool(), None);
    }

    /// `depth` nested objects `{a: {a: ... null}}`.
    fn nested_objects(depth: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..depth {
            bytes.push(0x03);
            bytes.extend(short("a"));
        }
        bytes.push(0x05);
        for _ in 0..depth {
            bytes.extend_from_slice(&[0, 0, 9]);
        }
        bytes
    }

    #[test]
    fn depth_limit_is_exact() {
        assert!(decode_all(&nested_objects(32)).is_ok());
        assert_eq!(decode_err(&nested_objects(33)), AmfError::TooDeep);
        let shallow = DecodeLimits {
            max_depth: 2,
            max_items: 100,
        };
        assert!(decode_all_with(&nested_objects(2), &shallow).is_ok());
        assert_eq!(
            decode_all_with(&nested_objects(3), &shallow),
            Err(AmfError::TooDeep)
        );
    }

    /// AMF3 objects `{a: {a: ... null}}` nested `depth` deep, behind 0x11.
    fn nested_amf3_objects(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x11];
        for _ in 0..depth {
            bytes.extend_from_slice(&[0x0A, 0x0B, 0x01, 0x03, b'a']);
        }
        bytes.push(0x01);
        bytes.extend(std::iter::repeat_n(0x01, depth));
        bytes
    }

    #[test]
    fn depth_is_capped_to_protect_the_stack() {
        let limits = DecodeLimits {
            max_depth: usize::MAX,
            max_items: usize::MAX,
        };
        // The deepest AMF3 tree again, through a reference (replayed).
        let mut replayed = vec![0x11, 0x09, 0x05, 0x01];
        replayed.extend_from_slice(&nested_amf3_objects(DEPTH_CEILING - 1)[1..]);
        replayed.extend_from_slice(&[0x09, 0x02]);
        let at_ceiling = [
            nested_objects(DEPTH_CEILING),
            nested_amf3_objects(DEPTH_CEILING),
            replayed,
        ];
        let run = move || {
            for bytes in &at_ceiling {
                let values = decode_all_with(bytes, &limits).expect("at the ceiling");
                let again = decode_all_with(&encode_all(&values), &limits);
                assert_eq!(again.as_ref(), Ok(&values));
            }
            let over = [
                nested_objects(DEPTH_CEILING + 1),
                nested_amf3_objects(DEPTH_CEILING + 1),
            ];
            for bytes in &over {
                assert_eq!(decode_all_with(bytes, &limits), Err(AmfError::TooDeep));
            }
        };
        // Half of tokio's default worker stack, in a debug build.
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn item_limit_is_exact() {
        let limits = DecodeLimits {
            max_depth: 32,
            max_items: 3,
        };
        // Array + two elements = 3 items.
        let bytes = [0x0A, 0, 0, 0, 2, 0x05, 0x05];
        assert!(decode_all_with(&bytes, &limits).is_ok());
        let bytes = [0x0A, 0, 0, 0, 3, 0x05, 0x05, 0x05];
        assert_eq!(
            decode_all_with(&bytes, &limits),
            Err(AmfError::TooManyItems)
        );
        // Top-level values share the budget.
        assert!(decode_all_with(&[0x05; 3], &limits).is_ok());
        assert_eq!(
            decode_all_with(&[0x05; 4], &limits),
            Err(AmfError::TooManyItems)
        );
    }

    /// The bomb is refused with the expected error (before allocating what
    /// it claims: the lengths are checked against the input and the item
    /// budget; how fast is measured in benches/parsing.rs).
    fn assert_clean_error(name: &str, bytes: &[u8], check: impl Fn(&AmfError) -> bool) {
        match &decode_all(bytes) {
            Err(e) if check(e) => {}
            other => panic!("{name}: unexpected {other:?}"),
        }
    }

    /// AMF3 array of `n` dense references to object-table entry `idx`.
    fn amf3_ref_array(n: u32, idx: u32) -> Vec<u8> {
        let mut out = vec![0x09];
        push_u29(&mut out, (n << 1) | 1);
        out.push(0x01); // no associative part
        for _ in 0..n {
            out.push(0x09);
            push_u29(&mut out, idx << 1);
        }
        out
    }

    fn push_u29(out: &mut Vec<u8>, v: u32) {
        amf3::write_u29(out, v);
    }

    #[test]
    fn amf_bomb_is_a_clean_error() {
        use AmfError::*;
        let too_long = |e: &AmfError| matches!(e, LengthExceedsInput { .. });

        // The classic: a tiny command declaring a 4-billion-element strict array.
        let mut bomb = vec![0x02, 0, 7];
        bomb.extend_from_slice(b"connect");
        bomb.extend_from_slice(&[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
        bomb.extend_from_slice(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]);
        assert!(bomb.len() < 32);
        assert_clean_error("strict array count", &bomb, too_long);
        // Count fits the input but not the item budget.
        let mut many = vec![0x0A, 0x00, 0x02, 0x00, 0x00];
        many.extend(std::iter::repeat_n(0x05, 0x20000));
        assert_clean_error("strict array items", &many, |e| *e == TooManyItems);
        // ECMA count is never trusted: huge hint, no end marker.
        assert_clean_error(
            "ecma count",
            &[0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1, b'a', 0x05],
            |e| *e == UnexpectedEof,
        );
        // Endless ECMA properties run into the item budget.
        let mut ecma = vec![0x08, 0xFF, 0xFF, 0xFF, 0xFF];
        for _ in 0..70_000 {
            ecma.extend_from_slice(&[0, 0, 0x05]);
        }
        assert_clean_error("ecma items", &ecma, |e| *e == TooManyItems);
        assert_clean_error(
            "long string",
            &[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'x'],
            too_long,
        );
        assert_clean_error("xml document", &[0x0F, 0xFF, 0xFF, 0xFF, 0xFF], too_long);
        assert_clean_error("short string", &[0x02, 0xFF, 0xFF, b'x'], too_long);
        assert_clean_error("nested objects", &nested_objects(10_000), |e| *e == TooDeep);
        let mut arrays = Vec::new();
        for _ in 0..10_000 {
            arrays.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        assert_clean_error("nested strict arrays", &arrays, |e| *e == TooDeep);

        // AMF3, both bare and behind the AMF0 0x11 switch.
        let amf3_cases: Vec<(&str, Vec<u8>)> = vec![
            ("amf3 byte array", vec![0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
            ("amf3 string", vec![0x06, 0xFF, 0xFF, 0xFF, 0xFF]),
            ("amf3 vector int", vec![0x0D, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]),
            (
                "amf3 vector double",
                vec![0x0F, 0x81, 0x80, 0x80, 0x01, 0x00],
            ),
            (
                "amf3 vector object",
                vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01],
            ),
            ("amf3 dense array", vec![0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            ("amf3 dictionary", vec![0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]),
            (
                "amf3 sealed traits",
                vec![0x0A, 0xFF, 0xFF, 0xFF, 0xF3, 0x01],
            ),
        ];
        for (name, bytes) in &amf3_cases {
            let bare = amf3::decode_all(bytes);
            assert!(
                matches!(bare, Err(LengthExceedsInput { .. })),
                "{name}: {bare:?}"
            );
            let mut wrapped = vec![0x11];
            wrapped.extend_from_slice(bytes);
            assert_clean_error(name, &wrapped, too_long);
        }

        // AMF3 self reference: an array whose element is the array itself.
        let looped = [0x11, 0x09, 0x03, 0x01, 0x09, 0x00];
        assert_clean_error("amf3 reference loop", &looped, |e| *e == BadReference(0));

        // Billion laughs: table entry k+1 is [ref k, ref k], nested inside an
        // outer array so every level stays within the depth limit.
        let levels = 30u32;
        let mut laughs = vec![0x11, 0x09];
        push_u29(&mut laughs, (levels << 1) | 1);
        laughs.push(0x01);
        laughs.extend_from_slice(&[0x09, 0x01, 0x01]); // entry 1: []
        for k in 1..levels {
            laughs.extend(amf3_ref_array(2, k));
        }
        assert!(laughs.len() < 256);
        assert_clean_error("amf3 exponential references", &laughs, |e| {
            *e == TooManyItems
        });

        // Many references to one large byte array: bytes copied are charged.
        let mut copies = vec![0x11, 0x09];
        push_u29(&mut copies, (10_001 << 1) | 1);
        copies.push(0x01);
        copies.push(0x0C);
        push_u29(&mut copies, (1 << 21) | 1); // 1 MiB byte array, entry 1
        copies.extend(std::iter::repeat_n(0xAB, 1 << 20));
        for _ in 0..10_000 {
            copies.extend_from_slice(&[0x0C, 0x02]); // reference to entry 1
        }
        assert_clean_error("amf3 byte array copies", &copies, |e| *e == TooManyItems);

        // Deep AMF3 nesting.
        let mut deep = vec![0x11];
        for _ in 0..10_000 {
            deep.extend_from_slice(&[0x09, 0x03, 0x01]);
        }
        assert_clean_error("amf3 nested arrays", &deep, |e| *e == TooDeep);
    }

    fn arb_name() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z]{1,8}",
            any::<String>().prop_map(|s| s.chars().take(12).collect()),
        ]
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("NaN never compares equal", |f| !f.is_nan())
    }

    fn arb_amf0() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            arb_f64().prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            arb_name().prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            any::<u16>().prop_map(Amf0Value::Reference),
            (arb_f64(), any::<i16>())
                .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
            arb_name().prop_map(Amf0Value::LongString),
            Just(Amf0Value::Unsupported),
            arb_name().prop_map(Amf0Value::XmlDocument),
            amf3::tests::arb_amf3().prop_map(Amf0Value::AvmPlus),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let props = prop::collection::vec((arb_name(), inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.clone().prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
                (arb_name(), props).prop_map(|(class_name, properties)| {
                    Amf0Value::TypedObject {
                        class_name,
                        properties,
                    }
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_round_trip(values in prop::collection::vec(arb_amf0(), 0..4)) {
            let bytes = encode_all(&values);
            prop_assert_eq!(decode_all(&bytes), Ok(values));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(values) = decode_all(&bytes) {
                // Re-encoding is a fixed point after one normalisation.
                let once = encode_all(&values);
                let again = decode_all(&once).expect("re-encoded output decodes");
                prop_assert_eq!(encode_all(&again), once);
            }
        }

        #[test]
        fn prop_mutated_valid_input_never_panics(
            values in prop::collection::vec(arb_amf0(), 1..3),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode_all(&values);
            for (idx, byte) in flips {
                let i = idx.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(values) = decode_all(&bytes) {
                let once = encode_all(&values);
                let again = decode_all(&once).expect("re-encoded output decodes");
                prop_assert_eq!(encode_all(&again), once);
            }
        }
    }
}
