//! Transcode profiles: named ladders of renditions, from `profiles/*.toml`.
//!
//! The shipped profiles are embedded in the binary (so `cargo run` has them
//! with no files around); a profiles directory adds profiles and overrides
//! shipped ones of the same name. Every problem is reported with the file
//! and the key, the way `castgate check-config` prints it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The profiles shipped in `profiles/`, embedded: (file name, text).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "passthrough.toml",
        include_str!("../../profiles/passthrough.toml"),
    ),
    (
        "abr-1080p.toml",
        include_str!("../../profiles/abr-1080p.toml"),
    ),
    (
        "abr-720p.toml",
        include_str!("../../profiles/abr-720p.toml"),
    ),
    (
        "gpu-nvenc-720p.toml",
        include_str!("../../profiles/gpu-nvenc-720p.toml"),
    ),
];

/// One profile file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    rendition: Vec<RenditionFile>,
}

/// One `[[rendition]]` as written; checked into a [`Rendition`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenditionFile {
    name: String,
    /// `"copy"`: the source itself (no encoding); else an H.264 encoder.
    codec: String,
    width: Option<u32>,
    height: Option<u32>,
    bitrate_kbps: Option<u32>,
    maxrate_kbps: Option<u32>,
    bufsize_kbps: Option<u32>,
    preset: Option<String>,
    tune: Option<String>,
    profile: Option<String>,
    fps: Option<f64>,
    audio_codec: Option<String>,
    audio_bitrate_kbps: Option<u32>,
    audio_channels: Option<u8>,
    audio_sample_rate: Option<u32>,
}

/// An encoded rendition's video settings.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoSettings {
    /// An ffmpeg H.264 encoder: `libx264`, `h264_nvenc`, `h264_vaapi`…
    pub codec: String,
    /// At least one is set; a missing one follows the source's aspect ratio.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bitrate_kbps: u32,
    pub maxrate_kbps: u32,
    pub bufsize_kbps: u32,
    pub preset: Option<String>,
    /// Encoder tuning, e.g. `zerolatency` (libx264: no B-frames, no
    /// lookahead; the rendition then lags its source by a frame or two
    /// instead of ~0.7 s).
    pub tune: Option<String>,
    pub profile: Option<String>,
    pub fps: Option<f64>,
}

/// An encoded rendition's audio settings.
#[derive(Clone, Debug, PartialEq)]
pub enum AudioSettings {
    /// The source's audio, as is.
    Copy,
    Encode {
        codec: String,
        bitrate_kbps: u32,
        channels: Option<u8>,
        sample_rate: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum RenditionKind {
    /// The source stream itself.
    Source,
    Encoded {
        video: VideoSettings,
        audio: AudioSettings,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rendition {
    /// Also the last segment of the rendition's stream key (`live/KEY/720p`).
    pub name: String,
    pub kind: RenditionKind,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Where it came from (a path, or `(shipped) NAME.toml`), for messages.
    pub origin: String,
    pub renditions: Vec<Rendition>,
}

impl Profile {
    /// The renditions ffmpeg encodes (everything but the source).
    pub fn encoded(&self) -> impl Iterator<Item = (&Rendition, &VideoSettings, &AudioSettings)> {
        self.renditions.iter().filter_map(|r| match &r.kind {
            RenditionKind::Encoded { video, audio } => Some((r, video, audio)),
            RenditionKind::Source => None,
        })
    }

    /// Whether this profile needs ffmpeg at all.
    pub fn needs_ffmpeg(&self) -> bool {
        self.encoded().next().is_some()
    }
}

/// Every known profile by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Profiles {
    /// The shipped profiles, then `dir`'s `*.toml` (if given), which add to
    /// and override them.
    pub fn load(dir: Option<&Path>) -> Result<Profiles, String> {
        let mut profiles = Profiles::default();
        for (file, text) in SHIPPED {
            let p = parse(&format!("(shipped) profiles/{file}"), file, text)?;
            profiles.by_name.insert(p.name.clone(), p);
        }
        let Some(dir) = dir else {
            return Ok(profiles);
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("transcoder.profiles_dir {}: {e}", dir.display()))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let p = parse(&path.display().to_string(), &file, &text)?;
            profiles.by_name.insert(p.name.clone(), p);
        }
        Ok(profiles)
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// A name usable as a stream key segment and in file names.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An ffmpeg option value we pass as one argument: a plain token.
fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parses and checks one profile. `origin` names the file in messages; the
/// profile's name is the file name without `.toml`.
pub fn parse(origin: &str, file_name: &str, text: &str) -> Result<Profile, String> {
    let name = file_name.strip_suffix(".toml").unwrap_or(file_name);
    if !valid_name(name) {
        return Err(format!(
            "{origin}: profile name {name:?} (the file name) must be 1-64 of [A-Za-z0-9_-]"
        ));
    }
    let raw: ProfileFile = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| format!("{origin}: {e}"))?;
    if raw.rendition.is_empty() {
        return Err(format!(
            "{origin}: key `rendition`: a profile needs at least one [[rendition]]"
        ));
    }
    let mut renditions: Vec<Rendition> = Vec::new();
    for (i, r) in raw.rendition.into_iter().enumerate() {
        let at = |key: &str| format!("{origin}: key `rendition[{i}].{key}`");
        if !valid_name(&r.name) {
            return Err(format!(
                "{}: {:?} must be 1-64 of [A-Za-z0-9_-]",
                at("name"),
                r.name
            ));
        }
        if renditions.iter().any(|x| x.name == r.name) {
            return Err(format!("{}: {:?} is used twice", at("name"), r.name));
        }
        let kind = if r.codec == "copy" {
            let set: Vec<&str> = [
                ("width", r.width.is_some()),
                ("height", r.height.is_some()),
                ("bitrate_kbps", r.bitrate_kbps.is_some()),
                ("maxrate_kbps", r.maxrate_kbps.is_some()),
                ("bufsize_kbps", r.bufsize_kbps.is_some()),
                ("preset", r.preset.is_some()),
                ("tune", r.tune.is_some()),
                ("profile", r.profile.is_some()),
                ("fps", r.fps.is_some()),
                ("audio_codec", r.audio_codec.is_some()),
                ("audio_bitrate_kbps", r.audio_bitrate_kbps.is_some()),
                ("audio_channels", r.audio_channels.is_some()),
                ("audio_sample_rate", r.audio_sample_rate.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            if let Some(k) = set.first() {
                return Err(format!(
                    "{}: a `codec = \"copy\"` rendition is the source as is; it takes no encoding settings",
                    at(k)
                ));
            }
            if renditions
                .iter()
                .any(|x| matches!(x.kind, RenditionKind::Source))
            {
                return Err(format!(
                    "{}: only one rendition can be the source (`copy`)",
                    at("codec")
                ));
            }
            RenditionKind::Source
        } else {
            RenditionKind::Encoded {
                video: video_settings(&r, &at)?,
                audio: audio_settings(&r, &at)?,
            }
        };
        renditions.push(Rendition { name: r.name, kind });
    }
    Ok(Profile {
        name: name.to_string(),
        description: raw.description,
        origin: origin.to_string(),
        renditions,
    })
}

fn video_settings(r: &RenditionFile, at: &dyn Fn(&str) -> String) -> Result<VideoSettings, String> {
    // Renditions come back to the hub as FLV, which castgate carries as
    // H.264: any H.264 encoder ffmpeg has, nothing else.
    if !(r.codec == "libx264" || r.codec.starts_with("h264_")) || !valid_token(&r.codec) {
        return Err(format!(
            "{}: {:?} is not an H.264 encoder (libx264, h264_nvenc, h264_vaapi, h264_qsv…) or \"copy\"",
            at("codec"),
            r.codec
        ));
    }
    for (key, v) in [("width", r.width), ("height", r.height)] {
        if let Some(v) = v {
            if !(16..=8192).contains(&v) || v % 2 != 0 {
                return Err(format!(
                    "{}: {v} must be an even number from 16 to 8192",
                    at(key)
                ));
            }
        }
    }
    if r.width.is_none() && r.height.is_none() {
        return Err(format!(
            "{}: an encoded rendition needs a height (or a width); the other follows the source's aspect ratio",
            at("height")
        ));
    }
    let bitrate = r.bitrate_kbps.ok_or_else(|| {
        format!(
            "{}: an encoded rendition needs a video bitrate",
            at("bitrate_kbps")
        )
    })?;
    if !(16..=200_000).contains(&bitrate) {
        return Err(format!(
            "{}: {bitrate} must be from 16 to 200000",
            at("bitrate_kbps")
        ));
    }
    let maxrate = r.maxrate_kbps.unwrap_or(bitrate);
    if maxrate < bitrate || maxrate > 400_000 {
        return Err(format!(
            "{}: {maxrate} must be at least bitrate_kbps ({bitrate}) and at most 400000",
            at("maxrate_kbps")
        ));
    }
    let bufsize = r.bufsize_kbps.unwrap_or(maxrate.saturating_mul(2));
    if !(16..=800_000).contains(&bufsize) {
        return Err(format!(
            "{}: {bufsize} must be from 16 to 800000",
            at("bufsize_kbps")
        ));
    }
    for (key, v) in [
        ("preset", &r.preset),
        ("tune", &r.tune),
        ("profile", &r.profile),
    ] {
        if let Some(v) = v {
            if !valid_token(v) {
                return Err(format!("{}: {v:?} is not a plain option value", at(key)));
            }
        }
    }
    if let Some(fps) = r.fps {
        if !(fps.is_finite() && (1.0..=240.0).contains(&fps)) {
            return Err(format!("{}: {fps} must be from 1 to 240", at("fps")));
        }
    }
    Ok(VideoSettings {
        codec: r.codec.clone(),
        width: r.width,
        height: r.height,
        bitrate_kbps: bitrate,
        maxrate_kbps: maxrate,
        bufsize_kbps: bufsize,
        preset: r.preset.clone(),
        tune: r.tune.clone(),
        profile: r.profile.clone(),
        fps: r.fps,
    })
}

fn audio_settings(r: &RenditionFile, at: &dyn Fn(&str) -> String) -> Result<AudioSettings, String> {
    let codec = r.audio_codec.as_deref().unwrap_or("copy");
    if codec == "copy" {
        if let Some(k) = [
            ("audio_bitrate_kbps", r.audio_bitrate_kbps.is_some()),
            ("audio_channels", r.audio_channels.is_some()),
            ("audio_sample_rate", r.audio_sample_rate.is_some()),
        ]
        .iter()
        .find_map(|(k, set)| set.then_some(*k))
        {
            return Err(format!(
                "{}: audio settings need an audio_codec (the audio is copied otherwise)",
                at(k)
            ));
        }
        return Ok(AudioSettings::Copy);
    }
    // FLV back into the hub: AAC (ffmpeg's own `aac`, or libfdk_aac).
    if !matches!(codec, "aac" | "libfdk_aac") {
        return Err(format!(
            "{}: {codec:?} is not an AAC encoder (aac, libfdk_aac) or \"copy\"",
            at("audio_codec")
        ));
    }
    let bitrate = r.audio_bitrate_kbps.unwrap_or(128);
    if !(8..=512).contains(&bitrate) {
        return Err(format!(
            "{}: {bitrate} must be from 8 to 512",
            at("audio_bitrate_kbps")
        ));
    }
    if let Some(c) = r.audio_channels {
        if !(1..=8).contains(&c) {
            return Err(format!("{}: {c} must be from 1 to 8", at("audio_channels")));
        }
    }
    if let Some(sr) = r.audio_sample_rate {
        const RATES: [u32; 9] = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000];
        if !RATES.contains(&sr) {
            return Err(format!(
                "{}: {sr} is not one of {RATES:?}",
                at("audio_sample_rate")
            ));
        }
    }
    Ok(AudioSettings::Encode {
        codec: codec.to_string(),
        bitrate_kbps: bitrate,
        channels: r.audio_channels,
        sample_rate: r.audio_sample_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load() {
        let p = Profiles::load(None).unwrap();
        let names: Vec<&str> = p.names().collect();
        for want in ["passthrough", "abr-1080p", "abr-720p", "gpu-nvenc-720p"] {
            assert!(names.contains(&want), "{names:?}");
        }
        assert!(!p.get("passthrough").unwrap().needs_ffmpeg());
        let ladder = p.get("abr-1080p").unwrap();
        let names: Vec<&str> = ladder.renditions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["source", "720p", "480p", "360p"]);
        assert!(ladder.needs_ffmpeg());
    }

    #[test]
    fn a_dir_adds_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("abr-720p.toml"),
            "[[rendition]]\nname = \"only\"\ncodec = \"libx264\"\nheight = 240\nbitrate_kbps = 300\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "[[rendition]]\nname = \"source\"\ncodec = \"copy\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let p = Profiles::load(Some(dir.path())).unwrap();
        assert_eq!(p.get("abr-720p").unwrap().renditions.len(), 1);
        assert!(p.get("mine").is_some());
        assert!(p.get("abr-1080p").is_some());
    }

    #[test]
    fn problems_name_the_file_and_key() {
        let base =
            "[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nheight = 360\nbitrate_kbps = 500\n";
        for (text, want) in [
            (format!("{base}bogus = 1\n"), "bogus"),
            (format!("{base}[[rendition]]\nname = \"a\"\ncodec = \"copy\"\n"), "rendition[1].name"),
            ("[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nheight = 361\nbitrate_kbps = 500\n".into(), "rendition[0].height"),
            ("[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nbitrate_kbps = 500\n".into(), "rendition[0].height"),
            ("[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nheight = 360\n".into(), "rendition[0].bitrate_kbps"),
            ("[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nheight = 360\nbitrate_kbps = 500\nmaxrate_kbps = 100\n".into(), "rendition[0].maxrate_kbps"),
            ("[[rendition]]\nname = \"a\"\ncodec = \"libvpx\"\nheight = 360\nbitrate_kbps = 500\n".into(), "rendition[0].codec"),
            ("[[rendition]]\nname = \"a b\"\ncodec = \"copy\"\n".into(), "rendition[0].name"),
            ("[[rendition]]\nname = \"s\"\ncodec = \"copy\"\nheight = 360\n".into(), "rendition[0].height"),
            (format!("{base}fps = 0\n"), "rendition[0].fps"),
            (format!("{base}audio_codec = \"mp3\"\n"), "rendition[0].audio_codec"),
            (format!("{base}audio_codec = \"aac\"\naudio_sample_rate = 12345\n"), "rendition[0].audio_sample_rate"),
            (format!("{base}audio_bitrate_kbps = 64\n"), "rendition[0].audio_bitrate_kbps"),
            (format!("{base}preset = \"fast; rm -rf\"\n"), "rendition[0].preset"),
            ("description = \"x\"\n".into(), "rendition"),
            ("[[rendition]]\nname = \"a\"\ncodec = \"libx264\"\nheight = \"tall\"\nbitrate_kbps = 5\n".into(), "height"),
        ] {
            let e = parse("/p/x.toml", "x.toml", &text).unwrap_err();
            assert!(e.starts_with("/p/x.toml: "), "{e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
