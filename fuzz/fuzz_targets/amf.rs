//! AMF0 and AMF3 bodies from a hostile peer. Decoding must never panic, and
//! whatever decodes must survive re-encoding: the encoder's output decodes
//! again and re-encodes to the same bytes (a fixed point, which holds even for
//! NaN payloads), and where no normalisation applies the values are equal.

#![no_main]

use castgate::rtmp::amf0::{self, Amf0Value};
use castgate::rtmp::amf3::{self, Amf3Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_amf0(data);
    check_amf3(data);
});

fn check_amf0(data: &[u8]) {
    let Ok(values) = amf0::decode_all(data) else {
        return;
    };
    let bytes = amf0::encode_all(&values);
    let again = amf0::decode_all(&bytes).expect("re-encoded AMF0 decodes");
    assert_eq!(
        amf0::encode_all(&again),
        bytes,
        "AMF0 re-encoding is stable"
    );
    if values.iter().all(amf0_comparable) {
        assert_eq!(again, values, "AMF0 round trip");
    }
}

fn check_amf3(data: &[u8]) {
    let Ok(values) = amf3::decode_all(data) else {
        return;
    };
    let bytes = encode_amf3(&values);
    let again = amf3::decode_all(&bytes).expect("re-encoded AMF3 decodes");
    assert_eq!(encode_amf3(&again), bytes, "AMF3 re-encoding is stable");
    if values.iter().all(amf3_comparable) {
        assert_eq!(again, values, "AMF3 round trip");
    }
}

fn encode_amf3(values: &[Amf3Value]) -> Vec<u8> {
    let mut out = Vec::new();
    values.iter().for_each(|v| amf3::encode(v, &mut out));
    out
}

/// Whether a decoded AMF0 value must compare equal after a round trip: no NaN
/// (never equal to itself), and no string that lossy UTF-8 repair pushed past
/// 65535 bytes (re-encoded as a long string, or truncated when it is a name).
fn amf0_comparable(value: &Amf0Value) -> bool {
    const SHORT: usize = u16::MAX as usize;
    let props_ok = |props: &[(String, Amf0Value)]| {
        props
            .iter()
            .all(|(name, v)| name.len() <= SHORT && amf0_comparable(v))
    };
    match value {
        Amf0Value::Number(n) => !n.is_nan(),
        Amf0Value::Date { millis, .. } => !millis.is_nan(),
        Amf0Value::String(s) => s.len() <= SHORT,
        Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => props_ok(props),
        Amf0Value::StrictArray(items) => items.iter().all(amf0_comparable),
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => class_name.len() <= SHORT && props_ok(properties),
        Amf0Value::AvmPlus(inner) => amf3_comparable(inner),
        _ => true,
    }
}

/// Whether a decoded AMF3 value must compare equal after a round trip: only
/// NaN breaks it (fuzz inputs are far below the 2^28-byte length limit).
fn amf3_comparable(value: &Amf3Value) -> bool {
    let members_ok = |m: &[(String, Amf3Value)]| m.iter().all(|(_, v)| amf3_comparable(v));
    match value {
        Amf3Value::Double(d) | Amf3Value::Date(d) => !d.is_nan(),
        Amf3Value::VectorDouble(items) => !items.iter().any(|d| d.is_nan()),
        Amf3Value::Array { assoc, dense } => members_ok(assoc) && dense.iter().all(amf3_comparable),
        Amf3Value::Object {
            sealed, dynamic, ..
        } => members_ok(sealed) && members_ok(dynamic),
        Amf3Value::VectorObject { items, .. } => items.iter().all(amf3_comparable),
        Amf3Value::Dictionary(entries) => entries
            .iter()
            .all(|(k, v)| amf3_comparable(k) && amf3_comparable(v)),
        _ => true,
    }
}
