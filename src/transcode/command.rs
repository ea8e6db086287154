//! The ffmpeg command line for a profile: a pure function, unit-tested.
//!
//! One ffmpeg decodes the source once (FLV on stdin), splits and scales it
//! in one filter graph, and writes each encoded rendition as FLV on its own
//! pipe: file descriptor [`FIRST_OUTPUT_FD`] + i for the i-th encoded
//! rendition. `-progress` goes to stdout, warnings to stderr.
//!
//! Keyframes: `-force_key_frames source` makes every rendition's keyframes
//! those of the source, and `-sc_threshold 0` with a long `-g` keeps the
//! encoder from adding its own, so every rendition (and the source) has
//! keyframes at the same presentation times and their segments line up.
//! `-copyts`, `-fps_mode passthrough` and the input's time base keep the
//! source's timestamps exactly.

use super::profile::{AudioSettings, Profile};

/// The first extra file descriptor: 0-2 are stdin, stdout and stderr.
pub const FIRST_OUTPUT_FD: i32 = 3;

/// What the source carries, known when ffmpeg starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceTracks {
    pub audio: bool,
    /// How it is fed to ffmpeg.
    pub feed: Feed,
    /// Whether its audio can go into a rendition's FLV as it is (AAC or
    /// MP3): other audio is encoded to AAC even by a `copy` profile.
    pub audio_fits_flv: bool,
}

/// The container ffmpeg reads the source from on stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Legacy FLV: H.264, AAC, MP3.
    Flv,
    /// Matroska ([`crate::media::mkv`]): any codec castgate carries; ffmpeg
    /// 5.1 cannot read HEVC, AV1, VP9, Opus, FLAC or AC-3 from FLV.
    Matroska,
}

impl Feed {
    fn format(self) -> &'static str {
        match self {
            Feed::Flv => "flv",
            Feed::Matroska => "matroska",
        }
    }
}

/// ffmpeg's arguments (without the program).
pub fn args(profile: &Profile, source: SourceTracks) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&[
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        "1",
        // Start as soon as the sequence headers are in: FLV announces its
        // tracks, and waiting 5 s to probe would be 5 s of added latency.
        "-analyzeduration",
        "1000000",
        "-probesize",
        "1000000",
        "-fflags",
        "+nobuffer",
        "-copyts",
        "-f",
        source.feed.format(),
        "-i",
        "pipe:0",
    ]);
    let encoded: Vec<_> = profile.encoded().collect();
    let n = encoded.len();
    let mut graph = if n == 1 {
        "[0:v:0]null[s0]".to_string()
    } else {
        let outs: String = (0..n).map(|i| format!("[s{i}]")).collect();
        format!("[0:v:0]split={n}{outs}")
    };
    for (i, (_, v, _)) in encoded.iter().enumerate() {
        let scale = match (v.width, v.height) {
            (Some(w), Some(h)) => format!(
                "scale=w={w}:h={h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
            ),
            (Some(w), None) => format!("scale=w={w}:h=-2"),
            (None, Some(h)) => format!("scale=w=-2:h={h}"),
            (None, None) => "null".to_string(),
        };
        let fps = v.fps.map(|f| format!(",fps={f}")).unwrap_or_default();
        graph.push_str(&format!(";[s{i}]{scale}{fps}[v{i}]"));
    }
    a.push("-filter_complex".into());
    a.push(graph);
    for (i, (_, v, audio)) in encoded.iter().enumerate() {
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&["-map", &format!("[v{i}]")]);
        push(&[
            "-c:v",
            &v.codec,
            "-b:v",
            &format!("{}k", v.bitrate_kbps),
            "-maxrate",
            &format!("{}k", v.maxrate_kbps),
            "-bufsize",
            &format!("{}k", v.bufsize_kbps),
            "-force_key_frames",
            "source",
            "-g",
            "100000",
            "-sc_threshold",
            "0",
            "-fps_mode",
            "passthrough",
            // Encode on the input's millisecond clock: the default (1/fps)
            // would round every timestamp by up to half a frame.
            "-enc_time_base:v",
            "-1",
        ]);
        if v.codec.ends_with("_nvenc") {
            // NVENC makes forced keyframes IDR only when told.
            push(&["-forced-idr", "1"]);
        }
        if let Some(p) = &v.preset {
            push(&["-preset", p]);
        }
        if let Some(t) = &v.tune {
            push(&["-tune", t]);
        }
        if let Some(p) = &v.profile {
            push(&["-profile:v", p]);
        }
        if source.audio {
            push(&["-map", "0:a:0"]);
            match audio {
                AudioSettings::Copy if source.audio_fits_flv => push(&["-c:a", "copy"]),
                // Opus, FLAC, AC-3 cannot go into the rendition's FLV.
                AudioSettings::Copy => push(&["-c:a", "aac", "-b:a", "128k"]),
                AudioSettings::Encode {
                    codec,
                    bitrate_kbps,
                    channels,
                    sample_rate,
                } => {
                    push(&["-c:a", codec, "-b:a", &format!("{bitrate_kbps}k")]);
                    if let Some(c) = channels {
                        push(&["-ac", &c.to_string()]);
                    }
                    if let Some(r) = sample_rate {
                        push(&["-ar", &r.to_string()]);
                    }
                }
            }
        }
        push(&[
            "-flvflags",
            "no_duration_filesize",
            "-f",
            "flv",
            &format!("pipe:{}", FIRST_OUTPUT_FD + i as i32),
        ]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::profile::Profiles;
    use super::*;

    /// H.264 and AAC.
    const SOURCE: SourceTracks = SourceTracks {
        audio: true,
        feed: Feed::Flv,
        audio_fits_flv: true,
    };

    #[test]
    fn one_decode_one_graph_one_pipe_per_rendition() {
        let profiles = Profiles::load(None).unwrap();
        let p = profiles.get("abr-1080p").unwrap();
        let a = args(p, SOURCE);
        let joined = a.join(" ");
        assert_eq!(a.iter().filter(|x| *x == "-i").count(), 1, "{joined}");
        let graph = &a[a.iter().position(|x| x == "-filter_complex").unwrap() + 1];
        assert!(graph.starts_with("[0:v:0]split=3[s0][s1][s2];"), "{graph}");
        assert!(graph.contains("[s0]scale=w=-2:h=720[v0]"), "{graph}");
        assert!(graph.contains("[s2]scale=w=-2:h=360[v2]"), "{graph}");
        for fd in 3..6 {
            assert!(joined.contains(&format!("pipe:{fd}")), "{joined}");
        }
        assert!(!joined.contains("pipe:6"), "{joined}");
        assert_eq!(
            a.iter().filter(|x| *x == "-force_key_frames").count(),
            3,
            "{joined}"
        );
        assert!(
            joined.contains("-c:a aac -b:a 128k -ac 2 -ar 48000"),
            "{joined}"
        );
        let mut tuned = p.clone();
        for r in &mut tuned.renditions {
            if let super::super::profile::RenditionKind::Encoded { video, .. } = &mut r.kind {
                video.tune = Some("zerolatency".into());
            }
        }
        let t = args(&tuned, SOURCE).join(" ");
        assert_eq!(t.matches("-tune zerolatency").count(), 3, "{t}");
        let no_audio = args(
            p,
            SourceTracks {
                audio: false,
                ..SOURCE
            },
        )
        .join(" ");
        assert!(!no_audio.contains("0:a"), "{no_audio}");
        assert!(!no_audio.contains("-c:a"), "{no_audio}");
    }

    /// A source FLV cannot carry is fed as Matroska; audio a rendition's
    /// FLV cannot carry is encoded to AAC even where the profile copies.
    #[test]
    fn enhanced_sources_are_fed_as_matroska() {
        let profiles = Profiles::load(None).unwrap();
        let mut p = profiles.get("abr-1080p").unwrap().clone();
        for r in &mut p.renditions {
            if let super::super::profile::RenditionKind::Encoded { audio, .. } = &mut r.kind {
                *audio = AudioSettings::Copy;
            }
        }
        let legacy = args(&p, SOURCE).join(" ");
        assert!(legacy.contains("-f flv -i pipe:0"), "{legacy}");
        assert_eq!(legacy.matches("-c:a copy").count(), 3, "{legacy}");
        let hevc_opus = SourceTracks {
            audio: true,
            feed: Feed::Matroska,
            audio_fits_flv: false,
        };
        let a = args(&p, hevc_opus).join(" ");
        assert!(a.contains("-f matroska -i pipe:0"), "{a}");
        assert!(!a.contains("-c:a copy"), "{a}");
        assert_eq!(a.matches("-c:a aac").count(), 3, "{a}");
    }
}
