//! VP9: the `vpcC` body (VP Codec ISO Media File Format Binding, version 1)
//! that an Enhanced RTMP `vp09` sequence start carries, the uncompressed
//! header of a keyframe (VP9 6.2) for a publisher that sends no
//! configuration, and the codec string.
//!
//! Everything here reads publisher bytes: lengths are checked before use
//! and the bit reader fails at the end of its data. Nothing is allocated.

use super::bits::{BitError, BitReader};

/// Why a VP9 configuration or frame header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Vp9Error {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unsupported vpcC version {0} (only version 1 is read)")]
    BadVersion(u8),
    #[error("VP9 field {field} out of range: {value}")]
    OutOfRange { field: &'static str, value: u32 },
    #[error("VP9 frame marker {0}, want 2")]
    BadFrameMarker(u8),
    #[error("not a keyframe")]
    NotKeyframe,
    #[error("keyframe without the VP9 sync code")]
    BadSyncCode,
    #[error("VP9 reserved bit set or reserved value used: {0}")]
    Reserved(&'static str),
    #[error("4:4:0 subsampling has no vpcC code")]
    Unrepresentable,
    #[error("frame header ends early")]
    HeaderTruncated,
}

impl From<BitError> for Vp9Error {
    fn from(e: BitError) -> Self {
        match e {
            BitError::OutOfRange { field, value } => Vp9Error::OutOfRange { field, value },
            // The header has no exp-Golomb codes: running out is all.
            BitError::End | BitError::ExpGolombTooLong => Vp9Error::HeaderTruncated,
        }
    }
}

/// `vpcC` chroma subsampling codes.
pub const CHROMA_420_VERTICAL: u8 = 0;
pub const CHROMA_420_COLOCATED: u8 = 1;
pub const CHROMA_422: u8 = 2;
pub const CHROMA_444: u8 = 3;

/// ISO/IEC 23091-4 "unspecified" for colour primaries, transfer and matrix.
const UNSPECIFIED: u8 = 2;

/// A `VPCodecConfigurationRecord`: what `vpcC` and the codec string say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vp9Config {
    pub profile: u8,
    /// Level times ten (31 = level 3.1), as `vpcC` codes it.
    pub level: u8,
    pub bit_depth: u8,
    /// One of the `CHROMA_*` codes.
    pub chroma_subsampling: u8,
    pub full_range: bool,
    pub colour_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
}

/// Length of a version 1 `vpcC` body with no initialization data.
pub const VPCC_LEN: usize = 12;

impl Vp9Config {
    /// The `vpcC` box body: version 1, flags 0, no initialization data
    /// (which VP9 must not have).
    pub fn to_vpcc(&self) -> [u8; VPCC_LEN] {
        [
            1,
            0,
            0,
            0,
            self.profile,
            self.level,
            (self.bit_depth << 4) | (self.chroma_subsampling << 1) | u8::from(self.full_range),
            self.colour_primaries,
            self.transfer_characteristics,
            self.matrix_coefficients,
            0,
            0,
        ]
    }
}

/// Parses the body of a `vpcC` box (version and flags first), as FFmpeg's
/// FLV muxer sends it in a VP9 sequence start. Version 0 (the draft with
/// another layout) is refused. `codecInitializationData` must lie within
/// the data; VP9 defines none, so it is skipped, and [`Vp9Config::to_vpcc`]
/// writes the record without it. Bytes after it are ignored.
pub fn parse_vpcc(body: &[u8]) -> Result<Vp9Config, Vp9Error> {
    if body.len() < VPCC_LEN {
        return Err(Vp9Error::Truncated {
            what: "vpcC",
            need: VPCC_LEN,
            have: body.len(),
        });
    }
    if body[0] != 1 {
        return Err(Vp9Error::BadVersion(body[0]));
    }
    let init_len = usize::from(u16::from_be_bytes([body[10], body[11]]));
    if body.len() < VPCC_LEN + init_len {
        return Err(Vp9Error::Truncated {
            what: "vpcC codecInitializationData",
            need: VPCC_LEN + init_len,
            have: body.len(),
        });
    }
    let config = Vp9Config {
        profile: body[4],
        level: body[5],
        bit_depth: body[6] >> 4,
        chroma_subsampling: (body[6] >> 1) & 0b111,
        full_range: body[6] & 1 != 0,
        colour_primaries: body[7],
        transfer_characteristics: body[8],
        matrix_coefficients: body[9],
    };
    check(&config)?;
    Ok(config)
}

/// What a codec string and `vpcC` can carry.
fn check(c: &Vp9Config) -> Result<(), Vp9Error> {
    let bad = |field, value: u8| {
        Err(Vp9Error::OutOfRange {
            field,
            value: u32::from(value),
        })
    };
    if c.profile > 3 {
        return bad("profile", c.profile);
    }
    if !matches!(c.bit_depth, 8 | 10 | 12) {
        return bad("bitDepth", c.bit_depth);
    }
    if c.chroma_subsampling > CHROMA_444 {
        return bad("chromaSubsampling", c.chroma_subsampling);
    }
    if c.level > 99 {
        return bad("level", c.level);
    }
    Ok(())
}

/// `vp09.PP.LL.DD` (the binding's Codecs Parameter String, short form).
pub fn codec_string(config: &Vp9Config) -> String {
    format!(
        "vp09.{:02}.{:02}.{:02}",
        config.profile, config.level, config.bit_depth
    )
}

/// What a keyframe's uncompressed header (VP9 6.2) says about the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyframeInfo {
    pub profile: u8,
    pub show_frame: bool,
    pub bit_depth: u8,
    /// VP9 `color_space`: 0 unknown, 1 BT.601, 2 BT.709, 3 SMPTE 170,
    /// 4 SMPTE 240, 5 BT.2020, 6 reserved, 7 sRGB.
    pub color_space: u8,
    pub full_range: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    pub width: u32,
    pub height: u32,
    /// The intended display size (the frame size unless signalled).
    pub render_width: u32,
    pub render_height: u32,
}

/// Parses the uncompressed header of a keyframe: the first frame of the
/// packet, which for a superframe is where the keyframe is. Anything else
/// (`show_existing_frame`, inter and intra-only frames) is
/// [`Vp9Error::NotKeyframe`].
pub fn parse_keyframe_header(frame: &[u8]) -> Result<KeyframeInfo, Vp9Error> {
    let mut r = BitReader::new(frame);
    let marker = r.bits(2)? as u8;
    if marker != 2 {
        return Err(Vp9Error::BadFrameMarker(marker));
    }
    let low = r.bit()?;
    let profile = ((r.bit()? << 1) | low) as u8;
    if profile == 3 && r.flag()? {
        return Err(Vp9Error::Reserved("reserved_zero after profile 3"));
    }
    if r.flag()? {
        return Err(Vp9Error::NotKeyframe); // show_existing_frame
    }
    if r.flag()? {
        return Err(Vp9Error::NotKeyframe); // frame_type: non-key
    }
    let show_frame = r.flag()?;
    r.skip(1)?; // error_resilient_mode
    if r.bits(24)? != 0x49_83_42 {
        return Err(Vp9Error::BadSyncCode);
    }
    // color_config() (6.2.2).
    let bit_depth = match profile {
        0 | 1 => 8,
        _ if r.flag()? => 12,
        _ => 10,
    };
    let color_space = r.bits(3)? as u8;
    let odd_profile = profile & 1 == 1;
    let (full_range, subsampling_x, subsampling_y) = if color_space != 7 {
        let full_range = r.flag()?;
        if odd_profile {
            let (x, y) = (r.flag()?, r.flag()?);
            if r.flag()? {
                return Err(Vp9Error::Reserved("reserved_zero in color_config"));
            }
            (full_range, x, y)
        } else {
            (full_range, true, true)
        }
    } else {
        // sRGB: 4:4:4 only, which profiles 0 and 2 cannot carry.
        if !odd_profile {
            return Err(Vp9Error::Reserved("sRGB in profile 0 or 2"));
        }
        if r.flag()? {
            return Err(Vp9Error::Reserved("reserved_zero in color_config"));
        }
        (true, false, false)
    };
    // frame_size(), render_size() (7.2.5, 7.2.6).
    let width = r.bits(16)? + 1;
    let height = r.bits(16)? + 1;
    let (render_width, render_height) = if r.flag()? {
        (r.bits(16)? + 1, r.bits(16)? + 1)
    } else {
        (width, height)
    };
    Ok(KeyframeInfo {
        profile,
        show_frame,
        bit_depth,
        color_space,
        full_range,
        subsampling_x,
        subsampling_y,
        width,
        height,
        render_width,
        render_height,
    })
}

impl KeyframeInfo {
    /// The configuration a `vpcC` for this stream would hold: chroma from
    /// the subsampling (4:2:0 taken as colocated, as FFmpeg does), matrix
    /// from `color_space`, primaries and transfer unspecified (VP9 does not
    /// signal them), and the lowest level whose picture size, dimension and
    /// (with a frame rate) sample rate fit.
    pub fn to_config(&self, frame_rate: Option<(u32, u32)>) -> Result<Vp9Config, Vp9Error> {
        let chroma_subsampling = match (self.subsampling_x, self.subsampling_y) {
            (true, true) => CHROMA_420_COLOCATED,
            (true, false) => CHROMA_422,
            (false, false) => CHROMA_444,
            (false, true) => return Err(Vp9Error::Unrepresentable),
        };
        // VP9 color_space to ISO/IEC 23091-4 MatrixCoefficients, as FFmpeg
        // maps it (BT.601 as BT.470BG).
        let matrix_coefficients =
            [UNSPECIFIED, 5, 1, 6, 7, 9, UNSPECIFIED, 0][usize::from(self.color_space & 7)];
        Ok(Vp9Config {
            profile: self.profile,
            level: level_for(self.width, self.height, frame_rate),
            bit_depth: self.bit_depth,
            chroma_subsampling,
            full_range: self.full_range,
            colour_primaries: UNSPECIFIED,
            transfer_characteristics: UNSPECIFIED,
            matrix_coefficients,
        })
    }
}

/// VP9 levels (the binding's level table): level, max luma sample rate,
/// max luma picture size, max picture dimension.
const LEVELS: [(u8, u64, u64, u32); 14] = [
    (10, 829_440, 36_864, 512),
    (11, 2_764_800, 73_728, 768),
    (20, 4_608_000, 122_880, 960),
    (21, 9_216_000, 245_760, 1344),
    (30, 20_736_000, 552_960, 2048),
    (31, 36_864_000, 983_040, 2752),
    (40, 83_558_400, 2_228_224, 4160),
    (41, 160_432_128, 2_228_224, 4160),
    (50, 311_951_360, 8_912_896, 8384),
    (51, 588_251_136, 8_912_896, 8384),
    (52, 1_176_502_272, 8_912_896, 8384),
    (60, 1_176_502_272, 35_651_584, 16832),
    (61, 2_353_004_544, 35_651_584, 16832),
    (62, 4_706_009_088, 35_651_584, 16832),
];

/// The lowest level a `width`x`height` stream at `frame_rate` (numerator,
/// denominator) fits; 62 when none does.
pub fn level_for(width: u32, height: u32, frame_rate: Option<(u32, u32)>) -> u8 {
    let size = u64::from(width) * u64::from(height);
    let rate = match frame_rate {
        Some((n, d)) if d > 0 => size.saturating_mul(u64::from(n)).div_ceil(u64::from(d)),
        _ => 0,
    };
    LEVELS
        .iter()
        .find(|&&(_, max_rate, max_size, max_dim)| {
            size <= max_size && width.max(height) <= max_dim && rate <= max_rate
        })
        .map_or(62, |l| l.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::hex;

    // vpcC bodies from Enhanced RTMP sequence starts written by FFmpeg
    // 9.0.2 (`-f flv`) + libvpx-vp9 (testsrc2, 30 fps), the 5-byte
    // ExVideoTagHeader removed; codec strings as FFmpeg's DASH muxer
    // writes them for the same streams in MP4.
    /// 426x240 profile 0 (4:2:0 8-bit).
    const P0_426X240: &str = "010000000014820202020000";
    /// 320x240 profile 1 (4:4:4 8-bit).
    const P1_320X240: &str = "010000000114860202020000";
    /// 640x360 profile 2 (4:2:0 10-bit).
    const P2_640X360: &str = "010000000215a20202020000";
    /// 352x288 profile 0, BT.709 everything, full range.
    const P0_709_FULL: &str = "010000000014830101010000";

    // The first 20 bytes of the first frame of the same encodes (IVF).
    const KEY_P0_426X240: &str = "82498342001a900ef60638241c184a000b205066";
    const KEY_P1_320X240: &str = "a249834200027e01dec0c7048383094001944fef";
    const KEY_P2_640X360: &str = "924983420013f80b3b031c120e0c2c0803885066";
    /// 352x288 profile 3, 4:4:4 12-bit.
    const KEY_P3_444_12: &str = "b124c1a14000af808fb031c120e0c2e00084004f";
    /// 352x288 profile 1, `-pix_fmt gbrp`: sRGB.
    const KEY_RGB: &str = "a2498342e015f011f60638241c184a000f504fed";
    /// 352x288 profile 1, `-pix_fmt yuv440p`.
    const KEY_440: &str = "a24983420402be023ec0c7048383094001a05061";
    /// 352x288 profile 0, BT.709, full range.
    const KEY_709_FULL: &str = "824983425015f011f60638241c184a000ca05066";
    /// The second frame of the profile 0 encode: an inter frame.
    const INTER_P0: &str = "86004092f121400000c87f1df46d67b88a302177";

    fn vpcc(s: &str) -> Vp9Config {
        parse_vpcc(&hex(s)).unwrap()
    }

    fn key(s: &str) -> KeyframeInfo {
        parse_keyframe_header(&hex(s)).unwrap()
    }

    #[test]
    fn ffmpeg_vpcc() {
        for (body, codec, chroma) in [
            (P0_426X240, "vp09.00.20.08", CHROMA_420_COLOCATED),
            (P1_320X240, "vp09.01.20.08", CHROMA_444),
            (P2_640X360, "vp09.02.21.10", CHROMA_420_COLOCATED),
            (P0_709_FULL, "vp09.00.20.08", CHROMA_420_COLOCATED),
        ] {
            let c = vpcc(body);
            assert_eq!(codec_string(&c), codec);
            assert_eq!(c.chroma_subsampling, chroma);
            assert_eq!(&c.to_vpcc()[..], &hex(body)[..], "round trip");
        }
        let c = vpcc(P0_709_FULL);
        assert!(c.full_range);
        assert_eq!(
            (
                c.colour_primaries,
                c.transfer_characteristics,
                c.matrix_coefficients
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn vpcc_errors() {
        let err = |v: &[u8]| parse_vpcc(v).unwrap_err();
        assert!(matches!(err(&[]), Vp9Error::Truncated { need: 12, .. }));
        let good = hex(P0_426X240);
        assert!(matches!(err(&good[..11]), Vp9Error::Truncated { .. }));
        let mut v = good.clone();
        v[0] = 0;
        assert_eq!(err(&v), Vp9Error::BadVersion(0));
        let mut v = good.clone();
        v[4] = 4;
        assert!(matches!(
            err(&v),
            Vp9Error::OutOfRange {
                field: "profile",
                ..
            }
        ));
        let mut v = good.clone();
        v[6] = 0x92; // 9 bits
        assert!(matches!(
            err(&v),
            Vp9Error::OutOfRange {
                field: "bitDepth",
                ..
            }
        ));
        let mut v = good.clone();
        v[6] = 0x88; // chroma 4
        assert!(matches!(
            err(&v),
            Vp9Error::OutOfRange {
                field: "chromaSubsampling",
                ..
            }
        ));
        // Initialization data past the end; within it, skipped.
        let mut v = good.clone();
        v[11] = 2;
        assert!(matches!(err(&v), Vp9Error::Truncated { need: 14, .. }));
        v.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
        assert_eq!(
            parse_vpcc(&v).unwrap().to_vpcc(),
            vpcc(P0_426X240).to_vpcc()
        );
    }

    #[test]
    fn libvpx_keyframes() {
        for (frame, profile, depth, size, sub) in [
            (KEY_P0_426X240, 0, 8, (426, 240), (true, true)),
            (KEY_P1_320X240, 1, 8, (320, 240), (false, false)),
            (KEY_P2_640X360, 2, 10, (640, 360), (true, true)),
            (KEY_P3_444_12, 3, 12, (352, 288), (false, false)),
            (KEY_RGB, 1, 8, (352, 288), (false, false)),
            (KEY_440, 1, 8, (352, 288), (false, true)),
            (KEY_709_FULL, 0, 8, (352, 288), (true, true)),
        ] {
            let k = key(frame);
            assert_eq!(
                (k.profile, k.bit_depth, (k.width, k.height)),
                (profile, depth, size),
                "{frame}"
            );
            assert_eq!((k.subsampling_x, k.subsampling_y), sub, "{frame}");
            assert_eq!((k.render_width, k.render_height), size);
            assert!(k.show_frame);
        }
        assert_eq!(key(KEY_RGB).color_space, 7);
        let k = key(KEY_709_FULL);
        assert_eq!((k.color_space, k.full_range), (2, true));
        assert_eq!(
            parse_keyframe_header(&hex(INTER_P0)),
            Err(Vp9Error::NotKeyframe)
        );
    }

    /// Without a `vpcC`, the keyframe gives the same configuration FFmpeg
    /// wrote for these streams (at their 30 fps).
    #[test]
    fn keyframe_configs_match_ffmpeg() {
        for (frame, body) in [
            (KEY_P0_426X240, P0_426X240),
            (KEY_P1_320X240, P1_320X240),
            (KEY_P2_640X360, P2_640X360),
        ] {
            assert_eq!(key(frame).to_config(Some((30, 1))), Ok(vpcc(body)));
        }
        let c = key(KEY_709_FULL).to_config(None).unwrap();
        assert_eq!((c.matrix_coefficients, c.full_range), (1, true));
        assert_eq!(codec_string(&c), "vp09.00.20.08");
        let c = key(KEY_P3_444_12).to_config(None).unwrap();
        assert_eq!(codec_string(&c), "vp09.03.20.12");
        assert_eq!(c.chroma_subsampling, CHROMA_444);
        assert_eq!(key(KEY_RGB).to_config(None).unwrap().matrix_coefficients, 0);
        assert_eq!(key(KEY_440).to_config(None), Err(Vp9Error::Unrepresentable));
    }

    #[test]
    fn levels() {
        assert_eq!(level_for(426, 240, Some((30, 1))), 20);
        assert_eq!(level_for(1280, 720, Some((30, 1))), 31);
        assert_eq!(level_for(1280, 720, Some((60, 1))), 40);
        assert_eq!(level_for(1920, 1080, Some((30, 1))), 40);
        assert_eq!(level_for(1920, 1080, Some((60, 1))), 41);
        assert_eq!(level_for(3840, 2160, Some((60000, 1001))), 51);
        // A 513-pixel-wide strip breaks level 1's dimension limit.
        assert_eq!(level_for(513, 16, None), 11);
        assert_eq!(level_for(20000, 16, None), 62);
        assert_eq!(level_for(u32::MAX, u32::MAX, Some((u32::MAX, 1))), 62);
        assert_eq!(level_for(64, 64, Some((30, 0))), 10);
    }

    #[test]
    fn frame_header_errors() {
        let err = |v: &[u8]| parse_keyframe_header(v).unwrap_err();
        assert_eq!(err(&[]), Vp9Error::HeaderTruncated);
        assert_eq!(err(&[0x42]), Vp9Error::BadFrameMarker(1));
        // show_existing_frame.
        assert_eq!(err(&[0x88]), Vp9Error::NotKeyframe);
        // Profile 3 with its reserved bit set.
        assert_eq!(
            err(&[0xb8]),
            Vp9Error::Reserved("reserved_zero after profile 3")
        );
        let mut v = hex(KEY_P0_426X240);
        v[2] = 0;
        assert_eq!(err(&v), Vp9Error::BadSyncCode);
        // sRGB signalled in profile 0.
        let mut v = hex(KEY_P0_426X240);
        v[4] = 0xe0;
        assert_eq!(err(&v), Vp9Error::Reserved("sRGB in profile 0 or 2"));
        let good = hex(KEY_P2_640X360);
        for cut in 0..9 {
            assert!(parse_keyframe_header(&good[..cut]).is_err(), "cut {cut}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
                if let Ok(c) = parse_vpcc(&data) {
                    prop_assert_eq!(parse_vpcc(&c.to_vpcc()), Ok(c));
                    let _ = codec_string(&c);
                }
                if let Ok(k) = parse_keyframe_header(&data) {
                    prop_assert!(k.width >= 1 && k.height >= 1);
                    if let Ok(c) = k.to_config(None) {
                        prop_assert_eq!(parse_vpcc(&c.to_vpcc()), Ok(c));
                    }
                }
            }
        }
    }
}
