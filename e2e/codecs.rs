//! Enhanced RTMP codecs from publish to player: FFmpeg 9 publishes HEVC +
//! Opus, AV1 + AC-3 and VP9 + FLAC over RTMP; Debian's ffmpeg 5.1 reads
//! the HLS and DASH castgate makes of them and decodes every track without
//! a complaint, every frame the publisher sent in the window.
//!
//! FFmpeg 9 is the static build of PyPI `imageio-ffmpeg`
//! ([`ffmpeg9`]: `CASTGATE_FFMPEG9`, which `scripts/test.sh` installs and
//! sets).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(90);

/// FFmpeg 9 publishing four seconds of test pattern and tone with `codecs`
/// (encoder arguments) to `url`, in real time, keyframes every second.
fn publish(url: &str, codecs: &[&str]) -> Child {
    Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25")
        .args(["-re", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=48000")
        .args(["-map", "0:v", "-map", "1:a", "-t", "4", "-g", "25"])
        .args(codecs)
        .args(["-f", "flv", url])
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run FFmpeg 9")
}

#[test]
fn enhanced_rtmp_codecs_play_over_hls_and_dash() {
    require("ffmpeg");
    let server = Castgate::start(&[("CASTGATE__PACKAGE__GRACE_SECS", "1")]);
    let streams: [(&str, &[&str], &str, &str); 3] = [
        (
            "live/hevc",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error",
                // HDR10's colour: FFmpeg 9 sends it as Enhanced RTMP
                // colorInfo, which is how castgate learns HEVC's colour.
                // (As output options, FFmpeg 9 passes on only the matrix.)
                "-vf",
                "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc",
                "-c:a",
                "libopus",
                "-b:a",
                "32k",
            ],
            "hvc1.",
            "opus",
        ),
        (
            "live/av1",
            &[
                "-c:v",
                "libsvtav1",
                "-preset",
                "12",
                "-svtav1-params",
                "lp=1",
                "-c:a",
                "ac3",
                "-b:a",
                "96k",
            ],
            "av01.",
            "ac-3",
        ),
        (
            "live/vp9",
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-b:v",
                "300k",
                "-c:a",
                "flac",
            ],
            "vp09.",
            "fLaC",
        ),
    ];
    let mut publishers: Vec<(Child, &str)> = streams
        .iter()
        .map(|(key, codecs, _, _)| (publish(&server.url(key), codecs), *key))
        .collect();
    for (p, key) in &mut publishers {
        let status = wait_child(p, T, key);
        assert!(status.success(), "{key}: {}", stderr_of(p));
    }
    for (key, _, video, audio) in streams {
        server.wait_log_all(&["packaging ended", key], T);
        let master = http_get(server.http, &format!("/{key}/index.m3u8")).text();
        let codecs = master
            .lines()
            .find_map(|l| l.split("CODECS=\"").nth(1))
            .and_then(|c| c.split('"').next())
            .unwrap_or_else(|| panic!("{key}: no CODECS in\n{master}"));
        assert!(
            codecs.starts_with(video) && codecs.ends_with(&format!(",{audio}")),
            "{key}: {codecs}"
        );
        // Only the HEVC publish says PQ (AV1 and VP9 here are SDR).
        let pq = key == "live/hevc";
        assert_eq!(master.contains("VIDEO-RANGE=PQ"), pq, "{key}:\n{master}");
        let mpd = http_get(server.http, &format!("/{key}/manifest.mpd")).text();
        let cicp = "urn:mpeg:mpegB:cicp:TransferCharacteristics\" value=\"16\"";
        assert_eq!(mpd.contains(cicp), pq, "{key}:\n{mpd}");
        for manifest in ["index.m3u8", "manifest.mpd"] {
            let url = server.http_url(&format!("{key}/{manifest}"));
            assert_eq!(decode_errors(&url), "", "decoding {url}");
            let v = framemd5_of(&url, "0:v");
            let a = framemd5_of(&url, "0:a");
            // Four seconds at 25 fps, segments cut at keyframes: the window
            // holds them all.
            assert!(v.len() >= 95, "{url}: {} video frames", v.len());
            assert!(a.len() >= 40, "{url}: {} audio frames", a.len());
        }
    }
}
