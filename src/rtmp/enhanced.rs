//! Enhanced RTMP capabilities in `connect` (veovera E-RTMP v2, "Enhancing
//! NetConnection connect Command"): what a client announces in its command
//! object (`fourCcList`, `videoFourCcInfoMap`, `audioFourCcInfoMap`,
//! `capsEx`), read bounded, and what castgate answers in `_result`.
//!
//! A client that announces none of them is a legacy client: it gets H.264,
//! AAC and MP3 in legacy tags only. The legacy codecs are taken by every
//! client whatever it announced (their tags are plain FLV).

use super::amf0::Amf0Value;
use crate::media::flv::ex::FourCc;
use crate::media::flv::CodecSet;
use crate::media::{Codec, MediaKind};

/// `FourCcInfoMask` bits.
pub const CAN_DECODE: u32 = 0x01;
pub const CAN_ENCODE: u32 = 0x02;
pub const CAN_FORWARD: u32 = 0x04;

/// `CapsExMask` bits.
pub const CAPS_RECONNECT: u32 = 0x01;
pub const CAPS_MULTITRACK: u32 = 0x02;
pub const CAPS_MOD_EX: u32 = 0x04;
pub const CAPS_TIMESTAMP_NANO_OFFSET: u32 = 0x08;

/// Most entries read from a list or a map: there are a dozen FourCCs, and
/// a connect object is untrusted (its size is bounded by the chunk limits
/// before authorisation, not its shape).
pub const MAX_ENTRIES: usize = 32;

/// A FourCC as announced, or the wildcard `"*"` (any codec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announced {
    Any,
    FourCc(FourCc),
}

impl Announced {
    /// `"*"` or exactly four bytes; anything else is ignored.
    fn parse(s: &str) -> Option<Announced> {
        if s == "*" {
            return Some(Announced::Any);
        }
        let b: [u8; 4] = s.as_bytes().try_into().ok()?;
        Some(Announced::FourCc(FourCc(b)))
    }
}

/// What a client announced in `connect`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `fourCcList` (E-RTMP v1), at most [`MAX_ENTRIES`].
    pub fourcc_list: Vec<Announced>,
    /// `videoFourCcInfoMap` and `audioFourCcInfoMap`: FourCC and its
    /// `FourCcInfoMask` bits, at most [`MAX_ENTRIES`] each.
    pub video_info: Vec<(Announced, u32)>,
    pub audio_info: Vec<(Announced, u32)>,
    /// `capsEx` (0 if absent).
    pub caps_ex: u32,
    /// Whether any of the four was present.
    pub enhanced: bool,
}

/// A number as a u32 bit set; anything else (or out of range) is none.
fn bits(v: &Amf0Value) -> u32 {
    match v.as_f64() {
        Some(n) if (0.0..=f64::from(u32::MAX)).contains(&n) => n as u32,
        _ => 0,
    }
}

fn info_map(v: Option<&Amf0Value>) -> Vec<(Announced, u32)> {
    let props = match v {
        Some(Amf0Value::Object(p) | Amf0Value::EcmaArray(p)) => p,
        _ => return Vec::new(),
    };
    props
        .iter()
        .take(MAX_ENTRIES)
        .filter_map(|(k, v)| Some((Announced::parse(k)?, bits(v))))
        .collect()
}

impl Capabilities {
    /// Reads a `connect` command object; missing or malformed properties
    /// are simply not announced.
    pub fn from_connect(obj: &Amf0Value) -> Capabilities {
        let list = obj.get("fourCcList");
        let fourcc_list = match list {
            Some(Amf0Value::StrictArray(items)) => items
                .iter()
                .take(MAX_ENTRIES)
                .filter_map(|v| Announced::parse(v.as_str()?))
                .collect(),
            _ => Vec::new(),
        };
        let (video, audio) = (obj.get("videoFourCcInfoMap"), obj.get("audioFourCcInfoMap"));
        let caps_ex = obj.get("capsEx");
        Capabilities {
            fourcc_list,
            video_info: info_map(video),
            audio_info: info_map(audio),
            caps_ex: caps_ex.map_or(0, bits),
            enhanced: list.is_some() || video.is_some() || audio.is_some() || caps_ex.is_some(),
        }
    }

    /// The codecs this client takes from castgate: the legacy ones, and
    /// those it listed or can decode or forward (`"*"` for any; in an info
    /// map a `"*"` entry decides for every codec of its kind, as the spec
    /// says it overrides the others).
    pub fn codecs(&self) -> CodecSet {
        let mut set = CodecSet::LEGACY;
        let mut add = |f: &FourCc| {
            if let Some(c) = f.codec() {
                set.insert(c);
            }
        };
        for a in &self.fourcc_list {
            match a {
                Announced::Any => return CodecSet::ALL,
                Announced::FourCc(f) => add(f),
            }
        }
        let takes = |flags: u32| flags & (CAN_DECODE | CAN_FORWARD) != 0;
        let mut any_of = Vec::new();
        for (kind, map) in [
            (MediaKind::Video, &self.video_info),
            (MediaKind::Audio, &self.audio_info),
        ] {
            if let Some((_, flags)) = map.iter().find(|(a, _)| *a == Announced::Any) {
                if takes(*flags) {
                    any_of.push(kind);
                }
                continue;
            }
            for (a, flags) in map {
                if let (Announced::FourCc(f), true) = (a, takes(*flags)) {
                    add(f);
                }
            }
        }
        for c in CodecSet::ALL.iter().filter(|c| any_of.contains(&c.kind())) {
            set.insert(c);
        }
        set
    }
}

/// The FourCCs of `codecs`, as AMF0 strings.
fn fourcc_strings(codecs: CodecSet) -> Vec<Amf0Value> {
    codecs
        .iter()
        .filter_map(|c| FourCc::of(c).as_str().map(Amf0Value::string))
        .collect()
}

/// An info map giving every codec of `codecs` the same `flags`.
fn info_map_of(codecs: impl Iterator<Item = Codec>, flags: u32) -> Amf0Value {
    Amf0Value::Object(
        codecs
            .filter_map(|c| {
                let name = FourCc::of(c).as_str()?.to_string();
                Some((name, Amf0Value::Number(f64::from(flags))))
            })
            .collect(),
    )
}

/// What castgate announces, as a server in its `connect` `_result` and as
/// a client in its own `connect` (a relay): `codecs` in `fourCcList` and in
/// the info maps with `flags`, and `capsEx`.
pub fn announce(codecs: CodecSet, flags: u32, caps_ex: u32) -> Vec<(&'static str, Amf0Value)> {
    let of_kind = move |kind| codecs.iter().filter(move |c: &Codec| c.kind() == kind);
    vec![
        ("fourCcList", Amf0Value::StrictArray(fourcc_strings(codecs))),
        (
            "videoFourCcInfoMap",
            info_map_of(of_kind(MediaKind::Video), flags),
        ),
        (
            "audioFourCcInfoMap",
            info_map_of(of_kind(MediaKind::Audio), flags),
        ),
        ("capsEx", Amf0Value::Number(f64::from(caps_ex))),
    ]
}

/// castgate as a server: it forwards every codec it carries (it neither
/// decodes nor encodes them; transcoding is a separate process), takes and
/// plays multitrack, and parses ModEx. It claims no reconnect request and
/// no nanosecond offsets (dropped below 1 ms).
pub fn server_announcement() -> Vec<(&'static str, Amf0Value)> {
    announce(CodecSet::ALL, CAN_FORWARD, SERVER_CAPS_EX)
}

/// The `capsEx` castgate states as a server.
pub const SERVER_CAPS_EX: u32 = CAPS_MULTITRACK | CAPS_MOD_EX;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf0;

    fn list(items: &[&str]) -> Amf0Value {
        Amf0Value::StrictArray(items.iter().map(|s| Amf0Value::string(*s)).collect())
    }

    /// FFmpeg 9's `-rtmp_enhanced_codecs hvc1,Opus` connect: a fourCcList.
    #[test]
    fn a_four_cc_list() {
        let obj = Amf0Value::object([
            ("app", Amf0Value::string("live")),
            (
                "fourCcList",
                list(&["hvc1", "Opus", "avc1", "mp4a", "vp08"]),
            ),
        ]);
        let caps = Capabilities::from_connect(&obj);
        assert!(caps.enhanced);
        assert_eq!(caps.fourcc_list.len(), 5);
        assert_eq!(
            caps.codecs(),
            CodecSet::LEGACY.with(Codec::Hevc).with(Codec::Opus)
        );
    }

    #[test]
    fn a_legacy_client_announces_nothing() {
        let obj = Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("audioCodecs", Amf0Value::Number(3575.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
        ]);
        let caps = Capabilities::from_connect(&obj);
        assert_eq!(caps, Capabilities::default());
        assert!(!caps.enhanced);
        assert_eq!(caps.codecs(), CodecSet::LEGACY);
        assert_eq!(
            Capabilities::from_connect(&Amf0Value::Null).codecs(),
            CodecSet::LEGACY
        );
    }

    #[test]
    fn wildcards() {
        let any = Amf0Value::object([("fourCcList", list(&["*"]))]);
        assert_eq!(Capabilities::from_connect(&any).codecs(), CodecSet::ALL);

        // Video: anything forwarded. Audio: Opus decoded, FLAC only encoded
        // (not taken), ac-3 as an ECMA array entry.
        let maps = Amf0Value::object([
            (
                "videoFourCcInfoMap",
                Amf0Value::object([
                    ("*", Amf0Value::Number(4.0)),
                    ("hvc1", Amf0Value::Number(0.0)),
                ]),
            ),
            (
                "audioFourCcInfoMap",
                Amf0Value::EcmaArray(vec![
                    ("Opus".into(), Amf0Value::Number(3.0)),
                    ("fLaC".into(), Amf0Value::Number(2.0)),
                    ("ac-3".into(), Amf0Value::Number(4.0)),
                ]),
            ),
            ("capsEx", Amf0Value::Number(6.0)),
        ]);
        let caps = Capabilities::from_connect(&maps);
        assert_eq!(caps.caps_ex, CAPS_MULTITRACK | CAPS_MOD_EX);
        assert_eq!(
            caps.codecs(),
            CodecSet::LEGACY
                .with(Codec::Hevc)
                .with(Codec::Av1)
                .with(Codec::Vp9)
                .with(Codec::Opus)
                .with(Codec::Ac3)
        );
        // A "*" without decode or forward takes nothing of its kind.
        let none = Amf0Value::object([(
            "videoFourCcInfoMap",
            Amf0Value::object([
                ("*", Amf0Value::Number(2.0)),
                ("hvc1", Amf0Value::Number(1.0)),
            ]),
        )]);
        assert_eq!(Capabilities::from_connect(&none).codecs(), CodecSet::LEGACY);
    }

    /// Hostile shapes: long lists and maps are cut, odd names and values
    /// ignored, wrong types read as absent.
    #[test]
    fn bounded_and_forgiving() {
        let long: Vec<String> = (0..1000).map(|i| format!("{i:04}")).collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        let mut map: Vec<(String, Amf0Value)> = long
            .iter()
            .map(|k| (k.clone(), Amf0Value::Number(7.0)))
            .collect();
        map.push(("hvc1".into(), Amf0Value::Number(4.0)));
        let obj = Amf0Value::object([
            ("fourCcList", list(&refs)),
            ("videoFourCcInfoMap", Amf0Value::Object(map)),
            ("audioFourCcInfoMap", Amf0Value::string("Opus")),
            ("capsEx", Amf0Value::Number(-1.0)),
        ]);
        let caps = Capabilities::from_connect(&obj);
        assert_eq!(caps.fourcc_list.len(), MAX_ENTRIES);
        assert_eq!(caps.video_info.len(), MAX_ENTRIES);
        assert!(caps.audio_info.is_empty());
        assert_eq!(caps.caps_ex, 0);
        // hvc1 came after the cut.
        assert_eq!(caps.codecs(), CodecSet::LEGACY);

        let odd = Amf0Value::object([(
            "fourCcList",
            Amf0Value::StrictArray(vec![
                Amf0Value::Number(1.0),
                Amf0Value::string("hvc"),
                Amf0Value::string("hvc1x"),
                Amf0Value::string("av01"),
            ]),
        )]);
        assert_eq!(
            Capabilities::from_connect(&odd).codecs(),
            CodecSet::LEGACY.with(Codec::Av1)
        );
    }

    /// castgate's answer names every codec it carries as forwardable, in
    /// both forms, with ModEx; it encodes as AMF0 and reads back.
    #[test]
    fn the_server_announcement() {
        let obj = Amf0Value::object(server_announcement());
        let bytes = amf0::encode_all(std::slice::from_ref(&obj));
        let back = amf0::decode_all(&bytes).unwrap();
        let caps = Capabilities::from_connect(&back[0]);
        assert_eq!(caps.codecs(), CodecSet::ALL);
        assert_eq!(caps.fourcc_list.len(), 10);
        assert_eq!(caps.video_info.len(), 4);
        assert_eq!(caps.audio_info.len(), 6);
        assert!(caps
            .video_info
            .iter()
            .chain(&caps.audio_info)
            .all(|(_, f)| *f == CAN_FORWARD));
        assert_eq!(caps.caps_ex, SERVER_CAPS_EX);
        assert_eq!(
            obj.get("videoFourCcInfoMap").unwrap().get("hvc1"),
            Some(&Amf0Value::Number(4.0))
        );
    }
}
