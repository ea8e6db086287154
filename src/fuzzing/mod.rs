//! The bodies of the fuzz targets under `fuzz/`: one `fn(&[u8])` per target.
//!
//! They live in the library, not in `fuzz/`, so that `tests/fuzz_regressions.rs`
//! replays every committed seed and crash input through exactly the code
//! libFuzzer ran, with a plain `cargo test`. Each must never panic on any
//! input; where a cheap invariant exists (an encoder/decoder round trip, a
//! consumption contract, a packager contract the manifests rely on) it is
//! asserted, so a panic here is a bug in castgate either way.
//!
//! Not an API: nothing outside the fuzz crate and the tests calls these.

mod http;
mod ingest;
mod media;
mod rtmp;

pub use http::{http_path, stream_key};
pub use ingest::{encode_ingest_record, ingest, IngestRecord};
pub use media::{
    aac_config, ac3_config, av1_config, avc_config, flac_config, flv_file, flv_tags, hevc_config,
    opus_config, vp9_config,
};
pub use rtmp::{aggregate, amf, chunk, chunk_session, handshake, rtmp_client};

/// A relay target URL: parse, redact, parse again (`egress::target`).
pub fn relay_target(data: &[u8]) {
    crate::egress::target::exercise(data);
}

/// Frames into the MPEG-TS muxer of the SRT relays (`egress::ts`).
pub fn ts_mux(data: &[u8]) {
    crate::egress::ts::exercise(data);
}

/// One rendition's output from ffmpeg back into the hub (`transcode`).
pub fn ffmpeg_output(data: &[u8]) {
    crate::transcode::exercise_output(data);
}

/// AMF metadata: an Enhanced RTMP video `Metadata` body (`colorInfo`,
/// which must survive being written back), and the same bytes as an
/// `onMetaData` object naming audio tracks (whose names and languages
/// must be safe in an HLS quoted string).
pub fn metadata(data: &[u8]) {
    use crate::media::color_info::{parse_video_metadata, VideoMetadata};
    if let Ok(VideoMetadata::ColorInfo(c)) = parse_video_metadata(data) {
        let again = parse_video_metadata(&c.to_amf0());
        assert_eq!(
            again,
            Ok(VideoMetadata::ColorInfo(c)),
            "colorInfo round trip"
        );
    }
    let labels = crate::package::labels::audio_labels(data);
    assert!(labels.len() <= 256);
    for (_, l) in labels {
        assert!(!l.is_empty());
        let safe = |s: &str| !s.is_empty() && !s.contains('"') && !s.chars().any(char::is_control);
        assert!(l
            .name
            .as_deref()
            .is_none_or(|n| safe(n) && n.chars().count() <= 64));
        assert!(l
            .language
            .as_deref()
            .is_none_or(|t| safe(t) && t.len() <= 35 && t.is_ascii()));
    }
}

/// A signed HLS/DASH URL query, and signing a playlist (`auth::signed`).
pub fn signed_url(data: &[u8]) {
    crate::auth::signed::exercise(data);
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary under `fuzz/fuzz_targets/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("aac_config", aac_config),
    ("ac3_config", ac3_config),
    ("aggregate", aggregate),
    ("amf", amf),
    ("av1_config", av1_config),
    ("avc_config", avc_config),
    ("chunk", chunk),
    ("chunk_session", chunk_session),
    ("ffmpeg_output", ffmpeg_output),
    ("flac_config", flac_config),
    ("flv_file", flv_file),
    ("flv_tags", flv_tags),
    ("handshake", handshake),
    ("hevc_config", hevc_config),
    ("http_path", http_path),
    ("ingest", ingest),
    ("metadata", metadata),
    ("opus_config", opus_config),
    ("relay_target", relay_target),
    ("rtmp_client", rtmp_client),
    ("signed_url", signed_url),
    ("stream_key", stream_key),
    ("ts_mux", ts_mux),
    ("vp9_config", vp9_config),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
