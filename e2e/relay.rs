//! Relays against real receivers: nginx-rtmp, ffmpeg as an RTMP listener,
//! srt-live-transmit and ffmpeg as SRT peers, castgate's own RTMPS listener;
//! and the MPEG-TS muxer's output checked by ffprobe and ffmpeg.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use castgate::egress::ts::{TsMuxer, MESSAGE, PACKET};
use castgate::hub::StreamEvent;
use castgate::media::MediaKind;
use castgate::server::ingest::Ingest;

use crate::harness::*;

/// Packets per stream type as ffprobe counts them: (video, audio).
fn count_packets(input: &Path) -> (u64, u64) {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=index,codec_type,nb_read_packets", "-of", "csv=p=0"])
        .arg(input)
        .output()
        .expect("cannot run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // MPEG-TS streams are listed twice (under their program too).
    let mut seen = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.trim().split(',').collect();
        if let [index, kind, n] = f[..] {
            seen.insert(
                index.to_string(),
                (kind.to_string(), n.parse::<u64>().unwrap_or(0)),
            );
        }
    }
    let count = |k: &str| {
        seen.values()
            .filter(|(kind, _)| kind == k)
            .map(|(_, n)| n)
            .sum()
    };
    (count("video"), count("audio"))
}

/// The MD5 of every decoded frame (pictures or audio frames) of one
/// stream: equal lists mean the same pictures and sound, whatever the
/// container and bitstream format.
fn decoded_md5(input: &Path, map: &str) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-map", map, "-f", "framemd5", "-"])
        .output()
        .expect("cannot run ffmpeg");
    assert!(
        out.status.success(),
        "decoding {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .collect()
}

/// The hub events a live publish of `flv` produces (castgate's own ingest).
fn events_of(flv: &Path) -> Vec<StreamEvent> {
    let data = Bytes::from(std::fs::read(flv).unwrap());
    let mut ingest = Ingest::new();
    let mut events = vec![StreamEvent::PublisherStarted];
    for t in castgate::media::flv_file::read_tags(&data).unwrap() {
        let kind = match t.tag_type {
            9 => MediaKind::Video,
            8 => MediaKind::Audio,
            _ => continue,
        };
        ingest
            .media(kind, t.timestamp, t.body, |e| events.push(e))
            .unwrap();
    }
    events
}

/// The muxer's output of a real encode (H.264 High with B-frames, AAC):
/// ffprobe finds every frame, ffmpeg decodes it without an error, and the
/// decoded pictures and sound are those of the source.
#[test]
fn ts_muxer_output_decodes_like_the_source() {
    let src = fixture(0);
    let events = events_of(&src);
    let mut mux = TsMuxer::new();
    let mut ts = Vec::new();
    for e in &events {
        mux.push(e);
        for m in mux.take_messages(false) {
            assert_eq!(m.len(), MESSAGE);
            ts.extend_from_slice(&m);
        }
    }
    for m in mux.take_messages(true) {
        assert_eq!(m.len() % PACKET, 0);
        ts.extend_from_slice(&m);
    }
    assert_eq!(mux.stats.dropped, 0);
    let dir = tempdir();
    let out = dir.path().join("out.ts");
    std::fs::write(&out, &ts).unwrap();
    let frames = |kind| {
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Frame(f) if f.kind() == kind))
            .count() as u64
    };
    assert_eq!(
        count_packets(&out),
        (frames(MediaKind::Video), frames(MediaKind::Audio))
    );
    assert_eq!(count_packets(&src), count_packets(&out));
    assert_eq!(decode_errors(&out), "", "decoding the TS");
    for map in ["0:v", "0:a"] {
        let want = decoded_md5(&src, map);
        assert!(!want.is_empty());
        assert_eq!(decoded_md5(&out, map), want, "decoded {map} differs");
    }
}
