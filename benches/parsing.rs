//! Throughput of the ingest hot path on a realistic stream: a 720p30 H.264
//! High (B-frames) + AAC FLV at ~3 Mbps, made once by ffmpeg and cached in
//! `target/bench-fixtures/`. Measures the RTMP chunk decoder (at chunk sizes
//! 128 and 4096) and FLV tag parsing, in bytes per second. Also RTMPE's
//! costs: RC4 over a 64 KiB read (every byte of an RTMPE connection goes
//! through it, in bytes per second) and one side's DH-1024 handshake work
//! (a key pair and a shared secret).

mod common;

use bytes::{Bytes, BytesMut};
use castgate::media::flv;
use castgate::rtmp::chunk::{decode_all, ChunkDecoder, ChunkEncoder, ChunkLimits};
use castgate::rtmp::rtmpe::{KeyPair, Rc4};
use common::Tag;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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
    let tags = common::tags_720p();
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

    // 65 280 chunk stream ids, three empty messages each: once quadratic
    // (20 s of CPU), now linear (see chunk.rs many_chunk_streams_cost_linear_time).
    let mut g = c.benchmark_group("chunk");
    let mut wire = Vec::new();
    for round in 0..3u8 {
        for csid in 320u32..65600 {
            let v = csid - 64;
            wire.extend_from_slice(&[0x01, v as u8, (v >> 8) as u8]);
            wire.extend_from_slice(&[0, 0, round, 0, 0, 0, 9, 1, 0, 0, 0]);
        }
    }
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("many_streams", |b| {
        b.iter(|| {
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            let mut input = BytesMut::from(&wire[..]);
            assert_eq!(decode_all(&mut dec, &mut input).unwrap().len(), 3 * 65280);
        })
    });
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

    // RTMPE: RC4 over one 64 KiB socket read (the largest the loop does),
    // in place as the cipher layer applies it; and what a server spends on
    // the DH exchange per connection: its key pair, then the secret from
    // the client's public key.
    let mut g = c.benchmark_group("rtmpe");
    let mut buf: Vec<u8> = (0..64 * 1024).map(|i| (i * 7) as u8).collect();
    let mut rc4 = Rc4::new(b"0123456789abcdef");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("rc4_64k", |b| {
        b.iter(|| {
            rc4.apply(std::hint::black_box(&mut buf));
        })
    });
    g.throughput(Throughput::Elements(1));
    let peer = KeyPair::generate();
    g.bench_function("dh_handshake", |b| {
        b.iter(|| {
            let own = KeyPair::generate();
            own.shared_secret(std::hint::black_box(peer.public()))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(parsing, benches);
criterion_main!(parsing);
