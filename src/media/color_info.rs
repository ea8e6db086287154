//! Enhanced RTMP's `colorInfo`: the HDR description a publisher sends in a
//! video `Metadata` packet (AMF: the name `"colorInfo"`, then an object)
//! before the frames it applies to. HEVC carries its colour in the SPS VUI,
//! which castgate does not parse; this is how an HEVC publish's colour
//! (`colr`), mastering display (`mdcv`) and content light level (`clli`)
//! reach the init segment and HLS `VIDEO-RANGE`.
//!
//! ```text
//! colorInfo = {
//!   colorConfig: { bitDepth, colorPrimaries, transferCharacteristics, matrixCoefficients },
//!   hdrCll:  { maxFall, maxCLL },                         // cd/m²
//!   hdrMdcv: { redX, redY, greenX, greenY, blueX, blueY,  // CIE 1931 xy
//!              whitePointX, whitePointY,
//!              maxLuminance, minLuminance },              // cd/m²
//! }
//! ```
//!
//! The code points are ISO/IEC 23091-2 (H.273). Values out of range make
//! that part absent, never an error: the stream goes on without it.

use crate::amf::amf0::{self, Amf0Value};

/// Colour code points (ISO/IEC 23091-2), what an `nclx` `colr` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColourCodes {
    pub primaries: u8,
    pub transfer: u8,
    pub matrix: u8,
}

/// SMPTE ST 2086 mastering display colour volume, in the units of the
/// `mdcv` box (and HEVC's SEI): chromaticity in 0.00002, luminance in
/// 0.0001 cd/m².
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasteringDisplay {
    /// Green, blue, red (the order of the HEVC SEI and `mdcv`), as (x, y).
    pub primaries: [(u16, u16); 3],
    pub white_point: (u16, u16),
    pub max_luminance: u32,
    pub min_luminance: u32,
}

impl MasteringDisplay {
    /// The `mdcv` box body (ISO/IEC 23001-8 / 14496-12: a plain box).
    pub fn to_mdcv(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        for (x, y) in self.primaries {
            out.extend_from_slice(&x.to_be_bytes());
            out.extend_from_slice(&y.to_be_bytes());
        }
        out.extend_from_slice(&self.white_point.0.to_be_bytes());
        out.extend_from_slice(&self.white_point.1.to_be_bytes());
        out.extend_from_slice(&self.max_luminance.to_be_bytes());
        out.extend_from_slice(&self.min_luminance.to_be_bytes());
        out
    }
}

/// CTA-861.3 content light level, in cd/m².
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentLightLevel {
    pub max_cll: u16,
    pub max_fall: u16,
}

impl ContentLightLevel {
    /// The `clli` box body.
    pub fn to_clli(&self) -> Vec<u8> {
        [self.max_cll.to_be_bytes(), self.max_fall.to_be_bytes()].concat()
    }
}

/// What a `colorInfo` object said (each part only when complete and in
/// range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColorInfo {
    pub colour: Option<ColourCodes>,
    pub mastering: Option<MasteringDisplay>,
    pub light_level: Option<ContentLightLevel>,
}

impl ColorInfo {
    pub fn is_empty(&self) -> bool {
        *self == ColorInfo::default()
    }

    /// The video `Metadata` packet body that says this (what
    /// [`parse_video_metadata`] reads): `"colorInfo"`, then the object with
    /// the parts known, in the spec's units.
    pub fn to_amf0(&self) -> Vec<u8> {
        let n = |x: f64| Amf0Value::Number(x);
        let mut props = Vec::new();
        if let Some(c) = self.colour {
            let codes = [
                ("colorPrimaries", c.primaries),
                ("transferCharacteristics", c.transfer),
                ("matrixCoefficients", c.matrix),
            ];
            props.push((
                "colorConfig",
                Amf0Value::object(codes.map(|(k, v)| (k, n(f64::from(v))))),
            ));
        }
        if let Some(l) = self.light_level {
            props.push((
                "hdrCll",
                Amf0Value::object([
                    ("maxFall", n(f64::from(l.max_fall))),
                    ("maxCLL", n(f64::from(l.max_cll))),
                ]),
            ));
        }
        if let Some(m) = self.mastering {
            let xy = |v: u16| n(f64::from(v) / 50_000.0);
            let lum = |v: u32| n(f64::from(v) / 10_000.0);
            let [g, b, r] = m.primaries;
            props.push((
                "hdrMdcv",
                Amf0Value::object([
                    ("redX", xy(r.0)),
                    ("redY", xy(r.1)),
                    ("greenX", xy(g.0)),
                    ("greenY", xy(g.1)),
                    ("blueX", xy(b.0)),
                    ("blueY", xy(b.1)),
                    ("whitePointX", xy(m.white_point.0)),
                    ("whitePointY", xy(m.white_point.1)),
                    ("maxLuminance", lum(m.max_luminance)),
                    ("minLuminance", lum(m.min_luminance)),
                ]),
            ));
        }
        amf0::encode_all(&[Amf0Value::string("colorInfo"), Amf0Value::object(props)])
    }
}

/// Why a video `Metadata` packet could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ColorInfoError {
    #[error("bad AMF in video metadata: {0}")]
    Amf(String),
}

/// What a video `Metadata` packet body means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoMetadata {
    /// A new `colorInfo`: it replaces the current one. Empty when the
    /// publisher reset it (`Undefined`, `{}`), or when nothing in it was
    /// usable.
    ColorInfo(ColorInfo),
    /// A name the spec does not define (yet): ignored.
    Other,
}

/// Reads a video `Metadata` packet body: AMF0 `[name, value]` pairs, of
/// which the spec defines only `["colorInfo", Object]`. The AMF decoder's
/// default limits bound what it builds.
pub fn parse_video_metadata(body: &[u8]) -> Result<VideoMetadata, ColorInfoError> {
    let values = amf0::decode_all(body).map_err(|e| ColorInfoError::Amf(e.to_string()))?;
    let mut found = VideoMetadata::Other;
    for pair in values.chunks(2) {
        if pair[0].as_str() == Some("colorInfo") {
            found = VideoMetadata::ColorInfo(pair.get(1).map(color_info).unwrap_or_default());
        }
    }
    Ok(found)
}

fn color_info(v: &Amf0Value) -> ColorInfo {
    ColorInfo {
        colour: v.get("colorConfig").and_then(colour_codes),
        mastering: v.get("hdrMdcv").and_then(mastering_display),
        light_level: v.get("hdrCll").and_then(light_level),
    }
}

/// A number of `v`'s property `name`, when finite.
fn number(v: &Amf0Value, name: &str) -> Option<f64> {
    v.get(name)?.as_f64().filter(|n| n.is_finite())
}

/// `value × scale`, rounded, when it fits `0..=max`.
fn scaled(value: f64, scale: f64, max: f64) -> Option<f64> {
    let n = (value * scale).round();
    (0.0..=max).contains(&n).then_some(n)
}

/// The three code points; one not given (or out of range) is 2,
/// unspecified (FFmpeg 9 sends only the matrix when told only that).
fn colour_codes(v: &Amf0Value) -> Option<ColourCodes> {
    let code = |name| scaled(number(v, name)?, 1.0, 255.0).map(|n| n as u8);
    let codes = [
        code("colorPrimaries"),
        code("transferCharacteristics"),
        code("matrixCoefficients"),
    ];
    if codes.iter().all(Option::is_none) {
        return None;
    }
    let [primaries, transfer, matrix] = codes.map(|c| c.unwrap_or(2));
    Some(ColourCodes {
        primaries,
        transfer,
        matrix,
    })
}

fn mastering_display(v: &Amf0Value) -> Option<MasteringDisplay> {
    // Chromaticity in units of 0.00002 (so 1.0 is 50000).
    let xy = |x, y| -> Option<(u16, u16)> {
        let c = |name| scaled(number(v, name)?, 50_000.0, 50_000.0).map(|n| n as u16);
        Some((c(x)?, c(y)?))
    };
    let luminance =
        |name| scaled(number(v, name)?, 10_000.0, f64::from(u32::MAX)).map(|n| n as u32);
    Some(MasteringDisplay {
        primaries: [
            xy("greenX", "greenY")?,
            xy("blueX", "blueY")?,
            xy("redX", "redY")?,
        ],
        white_point: xy("whitePointX", "whitePointY")?,
        max_luminance: luminance("maxLuminance")?,
        min_luminance: luminance("minLuminance")?,
    })
}

fn light_level(v: &Amf0Value) -> Option<ContentLightLevel> {
    let level = |name| scaled(number(v, name)?, 1.0, 65_535.0).map(|n| n as u16);
    Some(ContentLightLevel {
        max_cll: level("maxCLL")?,
        max_fall: level("maxFall")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: f64) -> Amf0Value {
        Amf0Value::Number(x)
    }

    fn body(value: Amf0Value) -> Vec<u8> {
        amf0::encode_all(&[Amf0Value::string("colorInfo"), value])
    }

    /// What FFmpeg 9 sends for a BT.2020 PQ stream with mastering display
    /// and light level side data.
    fn hdr10() -> Amf0Value {
        Amf0Value::object([
            (
                "colorConfig",
                Amf0Value::object([
                    ("bitDepth", n(10.0)),
                    ("colorPrimaries", n(9.0)),
                    ("transferCharacteristics", n(16.0)),
                    ("matrixCoefficients", n(9.0)),
                ]),
            ),
            (
                "hdrCll",
                Amf0Value::object([("maxFall", n(400.0)), ("maxCLL", n(1000.0))]),
            ),
            (
                "hdrMdcv",
                Amf0Value::object([
                    ("redX", n(0.708)),
                    ("redY", n(0.292)),
                    ("greenX", n(0.17)),
                    ("greenY", n(0.797)),
                    ("blueX", n(0.131)),
                    ("blueY", n(0.046)),
                    ("whitePointX", n(0.3127)),
                    ("whitePointY", n(0.329)),
                    ("maxLuminance", n(1000.0)),
                    ("minLuminance", n(0.0001)),
                ]),
            ),
        ])
    }

    #[test]
    fn hdr10_color_info_becomes_colr_mdcv_and_clli_values() {
        let VideoMetadata::ColorInfo(c) = parse_video_metadata(&body(hdr10())).unwrap() else {
            panic!("not colorInfo");
        };
        assert_eq!(
            c.colour,
            Some(ColourCodes {
                primaries: 9,
                transfer: 16,
                matrix: 9
            })
        );
        let m = c.mastering.unwrap();
        // The HEVC SEI values of the same display (x265's --master-display
        // G(8500,39850)B(6550,2300)R(35400,14600)WP(15635,16450)L(10000000,1)).
        assert_eq!(m.primaries, [(8500, 39850), (6550, 2300), (35400, 14600)]);
        assert_eq!(m.white_point, (15635, 16450));
        assert_eq!((m.max_luminance, m.min_luminance), (10_000_000, 1));
        assert_eq!(m.to_mdcv().len(), 24);
        assert_eq!(&m.to_mdcv()[..4], &[0x21, 0x34, 0x9b, 0xaa]);
        let l = c.light_level.unwrap();
        assert_eq!((l.max_cll, l.max_fall), (1000, 400));
        assert_eq!(l.to_clli(), [0x03, 0xe8, 0x01, 0x90]);
        // Written back (RTMP out), it reads as the same.
        assert_eq!(
            parse_video_metadata(&c.to_amf0()),
            Ok(VideoMetadata::ColorInfo(c))
        );
    }

    #[test]
    fn a_reset_or_a_partial_object_keeps_only_what_is_complete() {
        let reset = amf0::encode_all(&[Amf0Value::string("colorInfo"), Amf0Value::Undefined]);
        assert_eq!(
            parse_video_metadata(&reset),
            Ok(VideoMetadata::ColorInfo(ColorInfo::default()))
        );
        let empty = body(Amf0Value::object([]));
        assert_eq!(
            parse_video_metadata(&empty),
            Ok(VideoMetadata::ColorInfo(ColorInfo::default()))
        );
        // Colour without matrix (unspecified), a light level out of range,
        // no mdcv.
        let partial = body(Amf0Value::object([
            (
                "colorConfig",
                Amf0Value::object([
                    ("colorPrimaries", n(9.0)),
                    ("transferCharacteristics", n(18.0)),
                ]),
            ),
            (
                "hdrCll",
                Amf0Value::object([("maxFall", n(400.0)), ("maxCLL", n(1e9))]),
            ),
        ]));
        let Ok(VideoMetadata::ColorInfo(c)) = parse_video_metadata(&partial) else {
            panic!("not colorInfo");
        };
        assert_eq!(
            c,
            ColorInfo {
                colour: Some(ColourCodes {
                    primaries: 9,
                    transfer: 18,
                    matrix: 2
                }),
                mastering: None,
                light_level: None
            }
        );
        let nan = body(Amf0Value::object([(
            "colorConfig",
            Amf0Value::object([
                ("colorPrimaries", n(f64::NAN)),
                ("transferCharacteristics", n(-1.0)),
                ("matrixCoefficients", n(256.0)),
            ]),
        )]));
        assert_eq!(
            parse_video_metadata(&nan),
            Ok(VideoMetadata::ColorInfo(ColorInfo::default()))
        );
    }

    #[test]
    fn other_names_and_bad_amf() {
        let other = amf0::encode_all(&[Amf0Value::string("cameraAngle"), n(3.0)]);
        assert_eq!(parse_video_metadata(&other), Ok(VideoMetadata::Other));
        assert!(parse_video_metadata(&[0x02, 0x00, 0x09, b'c']).is_err());
        assert_eq!(parse_video_metadata(&[]), Ok(VideoMetadata::Other));
    }
}
