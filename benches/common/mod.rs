//! The benchmarks' shared input: a 720p30 H.264 High (B-frames) + AAC FLV
//! at ~3 Mbps, made once by ffmpeg and cached in `target/bench-fixtures/`.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;

/// One FLV tag: (type, timestamp, body).
pub type Tag = (u8, u32, Bytes);

/// The ffmpeg arguments that make the fixture (input and output aside).
fn fixture_args() -> Vec<&'static str> {
    vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:beep_factor=4:sample_rate=48000",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-threads",
        "1",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-bf",
        "2",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-b:v",
        "3000k",
        "-maxrate",
        "3000k",
        "-bufsize",
        "6000k",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-f",
        "flv",
    ]
}

/// The fixture, made once per set of parameters: its file name carries a
/// hash of the ffmpeg arguments and ffmpeg's version, so a changed recipe
/// or encoder never reuses a stale file.
pub fn fixture() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-fixtures");
    let version = Command::new("ffmpeg")
        .args(["-nostdin", "-version"])
        .output()
        .expect("the benchmark needs ffmpeg to make its 720p fixture (apt-get install ffmpeg)");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    fixture_args().hash(&mut h);
    version.stdout.hash(&mut h);
    let path = dir.join(format!("720p30-3mbps-10s-{:016x}.flv", h.finish()));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("create target/bench-fixtures");
    let tmp = dir.join(format!("720p.{}.tmp.flv", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(fixture_args())
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
