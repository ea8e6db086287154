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
mod rtmfp;
mod rtmp;
mod vod;

pub use http::{http_path, stream_key};
pub use ingest::{encode_ingest_record, ingest, IngestRecord};
pub use media::{
    aac_config, ac3_config, av1_config, avc_config, flac_config, flv_file, flv_tags, hevc_config,
    mp4_file, opus_config, vp9_config,
};
pub use rtmfp::{rtmfp_packet, rtmfp_session};
pub use rtmp::{aggregate, amf, chunk, chunk_session, handshake, rtmp_client, rtmpe_handshake};
pub use vod::vod_title;

/// A relay target URL: parse, redact, parse again (`egress::target`).
pub fn relay_target(data: &[u8]) {
    crate::egress::target::exercise(data);
}

/// Frames into the MPEG-TS muxer of the SRT relays (`egress::ts`).
pub fn ts_mux(data: &[u8]) {
    crate::egress::ts::exercise(data);
}

/// A publisher's transport stream through the SRT ingest's demuxer
/// (`media::ts`): the first byte picks the chunk size, the rest is the
/// stream. Besides never panicking: every frame follows a configuration of
/// its codec, decode times never go back (nor below 0), video frames are
/// whole 4-byte-length NAL units, the counters match what came out, each
/// warning comes once; and when no byte had to be skipped, cutting the
/// stream into other chunks changes nothing.
pub fn ts_demux(data: &[u8]) {
    use crate::media::ts::{DemuxLimits, TsDemuxer, PACKET};
    use crate::media::{avc, MediaKind, StreamEvent};
    let Some((&selector, ts)) = data.split_first() else {
        return;
    };
    // Small caps, so that inputs reach them.
    let limits = DemuxLimits {
        video_pes: 64 << 10,
        audio_pes: 16 << 10,
    };
    let run = |chunk: usize| {
        let mut d = TsDemuxer::new(limits);
        let mut events = Vec::new();
        for c in ts.chunks(chunk.max(1)) {
            d.push(c, |e| events.push(e));
        }
        d.finish(|e| events.push(e));
        let warnings = d.take_warnings();
        (events, *d.stats(), warnings)
    };
    let (events, stats, warnings) = run(usize::from(selector) * 8 + 1);
    let mut config = [None, None];
    let mut last_dts = [0i64, 0];
    let mut frames = 0;
    for e in &events {
        match e {
            StreamEvent::Config(c) => {
                config[usize::from(c.kind() == MediaKind::Audio)] = Some(c.codec());
            }
            StreamEvent::Frame(f) => {
                let k = usize::from(f.kind() == MediaKind::Audio);
                assert_eq!(config[k], Some(f.codec), "a frame after its configuration");
                assert!(f.dts >= last_dts[k], "decode times never go back");
                last_dts[k] = f.dts;
                assert!(!f.data.is_empty());
                assert!(f.cts.abs() <= 10_000);
                if k == 0 {
                    assert!(avc::nal_units(&f.data, 4).all(|n| n.is_ok()));
                }
                frames += 1;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(frames, stats.frames);
    assert!(stats.packets <= (ts.len() / PACKET) as u64);
    for (i, w) in warnings.iter().enumerate() {
        assert!(!warnings[..i].contains(w), "said twice: {w}");
    }
    let (whole, whole_stats, _) = run(ts.len());
    if stats.skipped_bytes == 0 && whole_stats.skipped_bytes == 0 {
        assert_eq!(events, whole, "chunking changed the events");
    }
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

/// An SRT caller's stream id (`srt::streamid`), as libsrt hands it over
/// (lossy UTF-8): never a panic; what it accepts names an application and
/// a name, and written back in the access-control syntax reads the same.
pub fn srt_streamid(data: &[u8]) {
    use crate::srt::streamid::{self, Mode};
    let id = String::from_utf8_lossy(data);
    let s = match streamid::parse(&id) {
        Ok(s) => s,
        Err(e) => {
            assert!((1400..1500).contains(&e.reject_reason()), "{e}");
            return;
        }
    };
    assert!(id.len() <= streamid::MAX_STREAM_ID);
    assert!(!s.app.is_empty() && !s.name.is_empty() && !s.app.contains('/'));
    assert!(!s.name.contains('?'));
    let fields = [&s.app, &s.name, &s.query]
        .into_iter()
        .chain(s.user.as_ref())
        .chain(s.session.as_ref());
    if fields.clone().any(|f| f.contains(',')) {
        return;
    }
    let mut again = format!("#!::r={}/{}", s.app, s.name);
    if !s.query.is_empty() {
        again += &format!("?{}", s.query);
    }
    again += match s.mode {
        Mode::Publish => ",m=publish",
        Mode::Request => ",m=request",
    };
    if let Some(u) = &s.user {
        again += &format!(",u={u}");
    }
    if let Some(x) = &s.session {
        again += &format!(",s={x}");
    }
    if again.len() <= streamid::MAX_STREAM_ID {
        assert_eq!(streamid::parse(&again).as_ref(), Ok(&s), "{again}");
    }
}

/// A signed HLS/DASH URL query, and signing a playlist (`auth::signed`).
pub fn signed_url(data: &[u8]) {
    crate::auth::signed::exercise(data);
}

/// An edge's cache: `Cache-Control` values, lease values from Redis, and
/// cache operations (`edge::cache`).
pub fn edge_cache(data: &[u8]) {
    crate::edge::cache::exercise(data);
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
    ("edge_cache", edge_cache),
    ("ffmpeg_output", ffmpeg_output),
    ("flac_config", flac_config),
    ("flv_file", flv_file),
    ("flv_tags", flv_tags),
    ("handshake", handshake),
    ("hevc_config", hevc_config),
    ("http_path", http_path),
    ("ingest", ingest),
    ("metadata", metadata),
    ("mp4_file", mp4_file),
    ("opus_config", opus_config),
    ("relay_target", relay_target),
    ("rtmfp_packet", rtmfp_packet),
    ("rtmfp_session", rtmfp_session),
    ("rtmp_client", rtmp_client),
    ("rtmpe_handshake", rtmpe_handshake),
    ("signed_url", signed_url),
    ("srt_streamid", srt_streamid),
    ("stream_key", stream_key),
    ("ts_demux", ts_demux),
    ("ts_mux", ts_mux),
    ("vod_title", vod_title),
    ("vp9_config", vp9_config),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
