//! The Matroska feed castgate gives the transcoder for sources that legacy
//! FLV cannot carry, read by Debian's ffmpeg 5.1 (which cannot read these
//! codecs from FLV): what FFmpeg 9 published (HEVC + Opus, AV1 + AC-3,
//! VP9 + E-AC-3, H.264 + FLAC) is ingested, written as Matroska, and must
//! decode whole, every frame of both tracks, without an error.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use castgate::hub::StreamEvent;
use castgate::media::flv::Ingest;
use castgate::media::flv_file::{read_tags, TAG_AUDIO, TAG_VIDEO};
use castgate::media::mkv::MkvWriter;
use castgate::media::{CodecConfig, Frame, MediaKind};

/// The configurations and frames (track 0) of an FLV file.
fn ingest(file: &'static [u8]) -> (Vec<CodecConfig>, Vec<Frame>) {
    let mut ingest = Ingest::new();
    let (mut configs, mut frames) = (Vec::new(), Vec::new());
    for tag in read_tags(&Bytes::from_static(file)).unwrap() {
        let kind = match tag.tag_type {
            TAG_VIDEO => MediaKind::Video,
            TAG_AUDIO => MediaKind::Audio,
            _ => continue,
        };
        ingest
            .media(kind, tag.timestamp, tag.body, |e| match e {
                StreamEvent::Config(c) => configs.push((*c).clone()),
                StreamEvent::Frame(f) => frames.push(f),
                _ => {}
            })
            .unwrap();
    }
    (configs, frames)
}

/// Frames per stream index that ffmpeg decoded from `mkv`.
fn decode(mkv: &[u8]) -> [usize; 2] {
    let mut child = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-xerror", "-f", "matroska", "-i", "pipe:0",
        ])
        .args(["-map", "0", "-f", "framemd5", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is not installed: run ./scripts/test.sh, which installs it");
    let mut stdin = child.stdin.take().unwrap();
    let data = mkv.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg could not decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = [0; 2];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('#') {
            continue;
        }
        match line.split(',').next().map(str::trim) {
            Some("0") => counts[0] += 1,
            Some("1") => counts[1] += 1,
            other => panic!("unexpected stream {other:?} in {line}"),
        }
    }
    counts
}

#[test]
fn ffmpeg_5_1_decodes_every_frame_of_every_enhanced_codec() {
    for (name, file) in [
        (
            "hevc_opus",
            &include_bytes!("../src/media/flv/testdata/hevc_opus.flv")[..],
        ),
        (
            "av1_ac3",
            &include_bytes!("../src/media/flv/testdata/av1_ac3.flv")[..],
        ),
        (
            "vp9_eac3",
            &include_bytes!("../src/media/flv/testdata/vp9_eac3.flv")[..],
        ),
        (
            "h264_flac",
            &include_bytes!("../src/media/flv/testdata/h264_flac.flv")[..],
        ),
    ] {
        let (configs, frames) = ingest(file);
        let video = configs.iter().find(|c| c.kind() == MediaKind::Video);
        let audio = configs.iter().find(|c| c.kind() == MediaKind::Audio);
        assert!(video.is_some() && audio.is_some(), "{name}: {configs:?}");
        let writer = MkvWriter::new(video, audio, 0).unwrap();
        let mut mkv = writer.header().to_vec();
        for f in &frames {
            mkv.extend_from_slice(&writer.frame(f).unwrap());
        }
        let sent = [MediaKind::Video, MediaKind::Audio]
            .map(|k| frames.iter().filter(|f| f.kind() == k).count());
        let decoded = decode(&mkv);
        // Decoders may give a frame per packet; Opus and FLAC, exactly.
        assert_eq!(decoded, sent, "{name}: decoded vs sent frames");
    }
}
