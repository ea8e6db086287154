//! MP4 files in (`media::mp4`) against FFmpeg's own MP4 demuxer: files
//! that FFmpeg writes (progressive with `moov` after `mdat` and with
//! `+faststart`, fragmented with `frag_keyframe+empty_moov`) are read, and
//! every sample of the first video and audio track matches what
//! `ffmpeg -c copy -f framemd5` reads from the same file: the same count
//! per track, payload MD5, size, decode and presentation time (in the
//! track's timescale, the edit list's start taken off as FFmpeg does) and
//! duration. The frames made from the index are the same samples, in
//! decode order per track, with keyframes where FFmpeg's packets have the
//! key flag.
//!
//! H.264 + AAC with Debian's FFmpeg 5.1; HEVC + AAC and AV1 + Opus with
//! FFmpeg 9 (the binary `CASTGATE_FFMPEG9` names; unset, the test fails
//! saying so). A missing ffmpeg or ffprobe fails the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use castgate::media::mp4::{Mp4File, Mp4Track};
use castgate::media::{Codec, MediaKind};

fn tool(name: &str) -> PathBuf {
    let ok = Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{name}` is not installed: these tests need it (apt-get install ffmpeg)"
    );
    PathBuf::from(name)
}

fn ffmpeg9() -> PathBuf {
    let fix = "set CASTGATE_FFMPEG9 to an FFmpeg 9 binary (./scripts/test.sh installs one from \
               PyPI's imageio-ffmpeg and sets it)";
    let path = std::env::var_os("CASTGATE_FFMPEG9")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| panic!("CASTGATE_FFMPEG9 is not set: {fix}"));
    let path = PathBuf::from(path);
    let ok = Command::new(&path)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ffmpeg version"));
    assert!(
        ok,
        "CASTGATE_FFMPEG9={} does not run: {fix}",
        path.display()
    );
    path
}

/// A directory removed when the process ends well (the test's files).
fn scratch(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .join(name)
}

/// Encodes two and a half seconds of test picture and tone into `name`.
fn encode(ffmpeg: &Path, name: &str, video: &[&str], audio: &[&str], movflags: &str) -> PathBuf {
    let out = scratch(name);
    let mut cmd = Command::new(ffmpeg);
    // SVT-AV1 logs its configuration unless told errors only.
    cmd.env("SVT_LOG", "1")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=192x108:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "2.5"])
        .args(video)
        .args(audio);
    if !movflags.is_empty() {
        cmd.args(["-movflags", movflags]);
    }
    let status = cmd.arg(&out).status().unwrap();
    assert!(
        status.success(),
        "{} could not write {name}",
        ffmpeg.display()
    );
    out
}

/// One packet as FFmpeg's framemd5 lists it.
#[derive(Debug, PartialEq, Eq)]
struct Packet {
    dts: i64,
    pts: i64,
    duration: i64,
    size: u32,
    md5: String,
}

/// FFmpeg's packets per kind (its first video and first audio stream).
fn framemd5(file: &Path) -> (Vec<Packet>, Vec<Packet>) {
    let out = Command::new(tool("ffmpeg"))
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0", "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "framemd5 of {}", file.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kinds = Vec::new();
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#media_type ") {
            let (i, kind) = rest.split_once(": ").unwrap();
            kinds.push((i.parse::<usize>().unwrap(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let stream: usize = f[0].parse().unwrap();
        let packet = Packet {
            dts: f[1].parse().unwrap(),
            pts: f[2].parse().unwrap(),
            duration: f[3].parse().unwrap(),
            size: f[4].parse().unwrap(),
            md5: f[5].to_string(),
        };
        let kind = kinds.iter().find(|(i, _)| *i == stream).unwrap();
        match kind.1.as_str() {
            "video" if kinds.iter().find(|(_, k)| k == "video").unwrap().0 == stream => {
                video.push(packet)
            }
            "audio" if kinds.iter().find(|(_, k)| k == "audio").unwrap().0 == stream => {
                audio.push(packet)
            }
            _ => {}
        }
    }
    (video, audio)
}

/// The key flags of FFmpeg's packets of the first stream of `kind`.
fn key_flags(file: &Path, kind: &str) -> Vec<bool> {
    let select = if kind == "video" { "v:0" } else { "a:0" };
    let out = Command::new(tool("ffprobe"))
        .args(["-v", "error", "-select_streams", select])
        .args(["-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Packet side data (AAC's skip samples) comes as empty lines.
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.starts_with('K'))
        .collect()
}

/// MD5 (RFC 1321) in hex, as framemd5 prints it: small enough to carry
/// here rather than a dependency for one test.
fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut h: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    for block in msg.chunks(64) {
        let m: Vec<u32> = block
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter()
        .flat_map(|x| x.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn md5_matches_rfc_1321() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
}

fn check_track(name: &str, file: &Bytes, track: &Mp4Track, packets: &[Packet], keys: &[bool]) {
    assert_eq!(
        track.samples.len(),
        packets.len(),
        "{name} {:?}: sample count",
        track.kind()
    );
    for (i, (s, p)) in track.samples.iter().zip(packets).enumerate() {
        let bytes = Mp4File::sample_bytes(file, s).unwrap();
        let dts = s.dts as i64 - track.media_start;
        // A sample lasts until the next one starts. FFmpeg's packet
        // durations are its own guess where that differs (FFmpeg 5.1
        // writes a first fragmented AAC sample lasting 3840 ticks and
        // reads it back as 1024; and its last packets' durations are
        // guesses), so the file's durations are checked against FFmpeg's
        // next decode time.
        if let Some(next) = packets.get(i + 1) {
            assert_eq!(
                i64::from(s.duration),
                next.dts - p.dts,
                "{name} {:?} sample {i}: duration",
                track.kind()
            );
        }
        let got = Packet {
            dts,
            pts: dts + i64::from(s.cts),
            duration: p.duration,
            size: s.size,
            md5: md5_hex(&bytes),
        };
        assert_eq!(&got, p, "{name} {:?} sample {i}", track.kind());
        assert_eq!(
            s.keyframe,
            keys[i],
            "{name} {:?} sample {i}: key flag",
            track.kind()
        );
        assert_eq!(s.dts_ms, track.ticks_to_ms(dts), "{name} sample {i}: ms");
    }
}

fn check(name: &str, path: &Path, video: Codec, audio: Codec, fragmented: bool) {
    let file = Bytes::from(std::fs::read(path).unwrap());
    let mp4 = Mp4File::parse(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(mp4.fragmented, fragmented, "{name}: fragmented");
    let v = mp4.video.as_ref().expect("a video track");
    let a = mp4.audio.as_ref().expect("an audio track");
    assert_eq!(v.config.codec(), video, "{name}");
    assert_eq!(a.config.codec(), audio, "{name}");
    assert_eq!(v.config.picture_size(), (192, 108), "{name}: picture size");
    assert_eq!(a.config.audio_format().0, 48_000, "{name}: sample rate");
    assert!(
        v.samples.len() > 50 && a.samples.len() > 50,
        "{name}: samples"
    );
    let (pv, pa) = framemd5(path);
    check_track(name, &file, v, &pv, &key_flags(path, "video"));
    check_track(name, &file, a, &pa, &key_flags(path, "audio"));

    // The frames: every sample once, in decode order per track, times
    // shifted alike so that the first is 0.
    let frames: Vec<_> = mp4.frames(&file).collect();
    assert_eq!(frames.len(), v.samples.len() + a.samples.len());
    assert_eq!(frames.iter().map(|f| f.dts).min(), Some(0));
    for w in frames.windows(2) {
        assert!(
            w[0].dts <= w[1].dts,
            "{name}: frames interleaved by decode time"
        );
    }
    let shift = frames
        .iter()
        .find(|f| f.kind() == MediaKind::Video)
        .map(|f| v.samples[0].dts_ms - f.dts)
        .unwrap();
    for (track, kind) in [(v, MediaKind::Video), (a, MediaKind::Audio)] {
        let mine: Vec<_> = frames.iter().filter(|f| f.kind() == kind).collect();
        assert_eq!(mine.len(), track.samples.len());
        for (f, s) in mine.iter().zip(&track.samples) {
            assert_eq!(f.dts, s.dts_ms - shift, "{name}: one shift for all tracks");
            assert_eq!(f.cts, s.cts_ms);
            assert_eq!(f.keyframe, s.keyframe);
            assert_eq!(f.data, Mp4File::sample_bytes(&file, s).unwrap());
        }
    }
    assert!(frames[0].keyframe || frames[0].kind() == MediaKind::Audio);
}

const H264: &[&str] = &[
    "-c:v", "libx264", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p",
];
const AAC: &[&str] = &["-c:a", "aac", "-b:a", "64k"];

#[test]
fn h264_aac_progressive() {
    let ffmpeg = tool("ffmpeg");
    let path = encode(&ffmpeg, "h264_aac.mp4", H264, AAC, "");
    let data = std::fs::read(&path).unwrap();
    // moov after mdat: FFmpeg's default.
    let mdat = data.windows(4).position(|w| w == b"mdat").unwrap();
    let moov = data.windows(4).position(|w| w == b"moov").unwrap();
    assert!(mdat < moov);
    check("h264_aac.mp4", &path, Codec::H264, Codec::Aac, false);
}

#[test]
fn h264_aac_faststart() {
    let ffmpeg = tool("ffmpeg");
    let path = encode(&ffmpeg, "h264_aac_fs.mp4", H264, AAC, "+faststart");
    let data = std::fs::read(&path).unwrap();
    let mdat = data.windows(4).position(|w| w == b"mdat").unwrap();
    let moov = data.windows(4).position(|w| w == b"moov").unwrap();
    assert!(moov < mdat);
    check("h264_aac_fs.mp4", &path, Codec::H264, Codec::Aac, false);
}

#[test]
fn h264_aac_fragmented() {
    let ffmpeg = tool("ffmpeg");
    let path = encode(
        &ffmpeg,
        "h264_aac_frag.mp4",
        H264,
        AAC,
        "frag_keyframe+empty_moov",
    );
    check("h264_aac_frag.mp4", &path, Codec::H264, Codec::Aac, true);
}

#[test]
fn hevc_aac_ffmpeg9() {
    let ffmpeg = ffmpeg9();
    let hevc = &[
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error:keyint=25",
        "-tag:v",
        "hvc1",
    ];
    let path = encode(&ffmpeg, "hevc_aac.mp4", hevc, AAC, "+faststart");
    check("hevc_aac.mp4", &path, Codec::Hevc, Codec::Aac, false);
    let path = encode(
        &ffmpeg,
        "hevc_aac_frag.mp4",
        hevc,
        AAC,
        "frag_keyframe+empty_moov",
    );
    check("hevc_aac_frag.mp4", &path, Codec::Hevc, Codec::Aac, true);
}

#[test]
fn av1_opus_ffmpeg9() {
    let ffmpeg = ffmpeg9();
    let av1 = &["-c:v", "libsvtav1", "-preset", "12", "-g", "25"];
    let opus = &["-c:a", "libopus", "-b:a", "64k"];
    let path = encode(&ffmpeg, "av1_opus.mp4", av1, opus, "");
    check("av1_opus.mp4", &path, Codec::Av1, Codec::Opus, false);
    let path = encode(
        &ffmpeg,
        "av1_opus_frag.mp4",
        av1,
        opus,
        "frag_keyframe+empty_moov",
    );
    check("av1_opus_frag.mp4", &path, Codec::Av1, Codec::Opus, true);
}

/// The fuzz seeds (small files FFmpeg 5.1 and 9 wrote) are real files
/// the reader reads whole, so the fuzzer starts from inside the format.
#[test]
fn fuzz_seeds_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/mp4_file");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let data = Bytes::from(std::fs::read(&path).unwrap());
        let f = Mp4File::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(f.video.is_some() && f.audio.is_some(), "{}", path.display());
        assert_eq!(
            f.frames(&data).count(),
            f.tracks().map(|t| t.samples.len()).sum::<usize>()
        );
        n += 1;
    }
    assert!(n >= 5);
}
