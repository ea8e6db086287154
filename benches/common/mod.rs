//! The benchmarks' shared input: a 720p30 H.264 High (B-frames) + AAC FLV
//! at ~3 Mbps, made once by ffmpeg and cached in `target/bench-fixtures/`.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;

/// One FLV tag: (type, timestamp, body).
pub type Tag = (u8, u32, Bytes);

pub fn fixture() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-fixtures");
    let path = dir.join("720p30-3mbps-10s.flv");
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("create target/bench-fixtures");
    let tmp = dir.join("720p.tmp.flv");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:beep_factor=4:sample_rate=48000",
        ])
        .args(["-map", "0:v", "-map", "1:a", "-t", "10"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            "2",
        ])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k"])
        .args([
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2", "-f", "flv",
        ])
        .arg(&tmp)
        .status()
        .expect("the benchmark needs ffmpeg to make its 720p fixture (apt-get install ffmpeg)");
    assert!(
        status.success(),
        "ffmpeg failed to make the benchmark fixture"
    );
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The fixture's audio and video tags.
pub fn tags_720p() -> Vec<Tag> {
    let data = Bytes::from(std::fs::read(fixture()).expect("read the benchmark fixture"));
    castgate::media::flv_file::read_tags(&data)
        .expect("the benchmark fixture is FLV")
        .into_iter()
        .filter(|t| t.tag_type == 8 || t.tag_type == 9)
        .map(|t| (t.tag_type, t.timestamp, t.body))
        .collect()
}
