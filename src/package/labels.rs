//! What a publisher says about its audio tracks, for the alternative audio
//! renditions: a name and a language, read from `onMetaData`.
//!
//! Enhanced RTMP v2 describes track 0 by the top-level `onMetaData` fields
//! and tracks 1, 2, … by `audioTrackIdInfoMap` (an object keyed by track
//! id). The spec names no field for a label, so castgate reads the obvious
//! ones: `name` (or `title`) and `language` (or `lang`, a BCP 47 tag) in a
//! track's entry, and `language` at the top level for track 0 (a top-level
//! `title` names the stream, not its audio). What does not fit the
//! manifests (quotes, control characters, an overlong or malformed value)
//! is dropped, never passed on.

use crate::amf::amf0::{self, Amf0Value};
use crate::media::TrackId;

use super::model::TrackLabel;

/// Longest name kept, in characters.
const MAX_NAME: usize = 64;
/// Longest language tag kept (BCP 47 allows 35 for the common forms).
const MAX_LANGUAGE: usize = 35;

/// The labels `onMetaData` (its encoded AMF0 value) gives the audio
/// tracks, by track id; tracks it says nothing usable about are absent.
pub fn audio_labels(amf0: &[u8]) -> Vec<(TrackId, TrackLabel)> {
    let Ok(values) = amf0::decode_all(amf0) else {
        return Vec::new();
    };
    let Some(top) = values.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let default = TrackLabel {
        name: None,
        language: text(top, &["language"]).and_then(language),
    };
    if !default.is_empty() {
        out.push((0, default));
    }
    let entries = match top.get("audioTrackIdInfoMap") {
        Some(Amf0Value::Object(p) | Amf0Value::EcmaArray(p)) => p.as_slice(),
        _ => &[],
    };
    for (key, entry) in entries {
        let Some(id) = key.parse::<TrackId>().ok().filter(|id| *id > 0) else {
            continue;
        };
        let label = TrackLabel {
            name: text(entry, &["name", "title"]).and_then(name),
            language: text(entry, &["language", "lang"]).and_then(language),
        };
        if !label.is_empty() && !out.iter().any(|(i, _)| *i == id) {
            out.push((id, label));
        }
    }
    out
}

/// The first of `keys` that `v` has as a string.
fn text<'a>(v: &'a Amf0Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(k)?.as_str())
}

/// A name safe in an HLS quoted string and as XML text once escaped.
fn name(s: &str) -> Option<String> {
    let kept: String = s
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(MAX_NAME)
        .collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_string())
}

/// A BCP 47 shaped tag: a 2–8 letter primary subtag, then alphanumeric
/// subtags of 1–8, separated by `-`.
fn language(s: &str) -> Option<String> {
    let mut subtags = s.split('-');
    let primary = subtags.next()?;
    let primary_ok =
        (2..=8).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    let rest_ok =
        subtags.all(|t| (1..=8).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    (primary_ok && rest_ok && s.len() <= MAX_LANGUAGE).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Amf0Value) -> Vec<u8> {
        amf0::encode_all(&[value])
    }

    fn s(v: &str) -> Amf0Value {
        Amf0Value::string(v)
    }

    fn label(name: Option<&str>, language: Option<&str>) -> TrackLabel {
        TrackLabel {
            name: name.map(str::to_string),
            language: language.map(str::to_string),
        }
    }

    #[test]
    fn track_entries_and_the_default_language() {
        let m = metadata(Amf0Value::EcmaArray(vec![
            ("title".into(), s("My stream")),
            ("language".into(), s("en")),
            (
                "audioTrackIdInfoMap".into(),
                Amf0Value::object([
                    (
                        "1",
                        Amf0Value::object([("name", s("Commentaire")), ("language", s("fr-CA"))]),
                    ),
                    (
                        "2",
                        Amf0Value::object([("title", s("Director")), ("lang", s("de"))]),
                    ),
                    (
                        "3",
                        Amf0Value::object([("audiodatarate", Amf0Value::Number(96.0))]),
                    ),
                ]),
            ),
        ]));
        assert_eq!(
            audio_labels(&m),
            [
                (0, label(None, Some("en"))),
                (1, label(Some("Commentaire"), Some("fr-CA"))),
                (2, label(Some("Director"), Some("de"))),
            ]
        );
    }

    #[test]
    fn what_does_not_fit_a_manifest_is_dropped() {
        let long = "x".repeat(200);
        let m = metadata(Amf0Value::object([(
            "audioTrackIdInfoMap",
            Amf0Value::object([
                // Quotes and line breaks go; the rest of the name stays.
                (
                    "1",
                    Amf0Value::object([("name", s("a\"b\r\nc")), ("language", s("fr\"x"))]),
                ),
                (
                    "2",
                    Amf0Value::object([("name", s(&long)), ("language", s("e"))]),
                ),
                ("0", Amf0Value::object([("name", s("zero is top level"))])),
                ("256", Amf0Value::object([("name", s("no such id"))])),
                ("x", Amf0Value::object([("name", s("not an id"))])),
                ("4", Amf0Value::object([("name", s(" \t"))])),
            ]),
        )]));
        let labels = audio_labels(&m);
        assert_eq!(labels[0], (1, label(Some("abc"), None)));
        assert_eq!(labels[1].0, 2);
        assert_eq!(labels[1].1.name.as_ref().map(|n| n.len()), Some(MAX_NAME));
        assert_eq!(labels[1].1.language, None);
        assert_eq!(labels.len(), 2);
        assert!(audio_labels(&[0x03, 0x00]).is_empty());
        assert!(audio_labels(&[]).is_empty());
    }
}
