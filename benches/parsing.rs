//! Throughput of the ingest hot path on a realistic stream: a 720p30 H.264
//! High (B-frames) + AAC FLV at ~3 Mbps, made once by ffmpeg and cached in
//! `target/bench-fixtures/`. Measures the RTMP chunk decoder (at chunk sizes
//! 128 and 4096) and FLV tag parsing, in bytes per second.

use std::path::PathBuf;
use std::process::Command;

use bytes::{Bytes, BytesMut};
use castgate::media::flv;
use castgate::rtmp::chunk::{decode_all, ChunkDecoder, ChunkEncoder, ChunkLimits};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// One FLV tag: (type, timestamp, body).
type Tag = (u8, u32, Bytes);

fn fixture() -> PathBuf {
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

/// Reads the audio/video tags of an FLV file.
fn read_tags(data: &[u8]) -> Vec<Tag> {
    let mut pos = 9 + 4; // header + PreviousTagSize0
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let t = data[pos];
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body_start = pos + 11;
        if body_start + size > data.len() {
            break;
        }
        if t == 8 || t == 9 {
            tags.push((
                t,
                ts,
                Bytes::copy_from_slice(&data[body_start..body_start + size]),
            ));
        }
        pos = body_start + size + 4;
    }
    tags
}

fn chunked(tags: &[Tag], chunk_size: usize) -> Bytes {
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(chunk_size);
    let mut out = BytesMut::new();
    for (t, ts, body) in tags {
        let csid = if *t == 9 { 6 } else { 4 };
        enc.write(csid, *t, 1, *ts, &[body], &mut out);
    }
    out.freeze()
}

fn benches(c: &mut Criterion) {
    let data = std::fs::read(fixture()).unwrap();
    let tags = read_tags(&data);
    assert!(tags.len() > 500, "fixture has {} tags", tags.len());

    let mut g = c.benchmark_group("chunk_decode_720p");
    for chunk_size in [128usize, 4096] {
        let wire = chunked(&tags, chunk_size);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("chunk_size_{chunk_size}"), |b| {
            b.iter(|| {
                let mut dec = ChunkDecoder::new(ChunkLimits::default());
                dec.set_chunk_size(chunk_size as u32).unwrap();
                // Feed in 64 KiB reads, like the socket loop does.
                let mut input = BytesMut::new();
                let mut n = 0;
                for piece in wire.chunks(64 * 1024) {
                    input.extend_from_slice(piece);
                    n += decode_all(&mut dec, &mut input).unwrap().len();
                }
                assert_eq!(n, tags.len());
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("flv_parse_720p");
    let bytes: usize = tags.iter().map(|t| t.2.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parse_tags", |b| {
        b.iter(|| {
            let mut frames = 0;
            for (t, ts, body) in &tags {
                let ok = if *t == 9 {
                    flv::parse_video(i64::from(*ts), body.clone()).is_ok()
                } else {
                    flv::parse_audio(i64::from(*ts), body.clone()).is_ok()
                };
                frames += usize::from(ok);
            }
            assert_eq!(frames, tags.len());
        })
    });
    g.finish();
}

criterion_group!(parsing, benches);
criterion_main!(parsing);
