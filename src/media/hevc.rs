//! H.265: the `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 8.3.3)
//! that an Enhanced RTMP `hvc1` sequence start carries, the SPS fields
//! castgate needs, and the codec string (14496-15 Annex E.3).
//!
//! Everything here reads publisher bytes: every length is checked before
//! use, the SPS reader fails at the end of its data instead of inventing
//! zero bits, and every value that sizes a loop is range-checked first.

use std::fmt::Write as _;

use bytes::Bytes;

use super::bits::{BitError, BitReader};
use super::color_info::ColorInfo;

/// Why H.265 parameters could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HevcError {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unsupported HEVCDecoderConfigurationRecord version {0}")]
    BadVersion(u8),
    #[error("invalid NAL length size {0}")]
    BadNalLengthSize(u8),
    #[error("HEVC decoder configuration of {0} bytes is larger than {MAX_RECORD} bytes")]
    RecordTooLarge(usize),
    #[error("NAL unit type {0} is not a sequence parameter set")]
    NotSps(u8),
    #[error("SPS of layer {0}: only the base layer is read")]
    NotBaseLayer(u8),
    #[error("SPS ends early")]
    SpsTruncated,
    #[error("exp-Golomb code longer than 32 bits")]
    ExpGolombTooLong,
    #[error("SPS field {field} out of range: {value}")]
    SpsOutOfRange { field: &'static str, value: i64 },
}

impl From<BitError> for HevcError {
    fn from(e: BitError) -> Self {
        match e {
            BitError::End => HevcError::SpsTruncated,
            BitError::ExpGolombTooLong => HevcError::ExpGolombTooLong,
            BitError::OutOfRange { field, value } => HevcError::SpsOutOfRange {
                field,
                value: i64::from(value),
            },
        }
    }
}

/// The largest decoder configuration record kept. Real ones are a few
/// hundred bytes (x265's, with its settings in a prefix SEI, about 2.5 KiB).
/// It is copied into every init segment, so a publisher must not make it big.
pub const MAX_RECORD: usize = 16 * 1024;

/// NAL unit types of the parameter sets (H.265 Table 7-1).
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;

/// The general profile, tier and level (H.265 7.3.3), as both the record and
/// the SPS carry them; the codec string is made of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileTierLevel {
    pub profile_space: u8,
    /// `true` for the High tier.
    pub tier_flag: bool,
    pub profile_idc: u8,
    /// `general_profile_compatibility_flag[j]` is bit `31 - j`, as read.
    pub profile_compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` on.
    pub constraint_indicator_flags: [u8; 6],
    pub level_idc: u8,
}

impl ProfileTierLevel {
    /// `<sample_entry>.<space><idc>.<compat>.<tier><level>[.<constraint>]*`
    /// (ISO/IEC 14496-15 E.3): the compatibility flags in reverse bit order
    /// and hex, the constraint bytes in hex with trailing zero bytes dropped.
    pub fn codec_string(&self, sample_entry: &str) -> String {
        let space = ["", "A", "B", "C"][usize::from(self.profile_space & 3)];
        let tier = if self.tier_flag { 'H' } else { 'L' };
        let mut s = format!(
            "{sample_entry}.{space}{}.{:X}.{tier}{}",
            self.profile_idc,
            self.profile_compatibility_flags.reverse_bits(),
            self.level_idc
        );
        let flags = &self.constraint_indicator_flags;
        let kept = flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &flags[..kept] {
            let _ = write!(s, ".{b:X}");
        }
        s
    }
}

/// One array of the record: NAL units of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NalArray {
    /// All units of this type are here, none in-band (`hvc1` requires it).
    pub complete: bool,
    pub nal_unit_type: u8,
    /// The units without length prefixes: slices of the record.
    pub units: Vec<Bytes>,
}

/// An `HEVCDecoderConfigurationRecord` and what castgate learned from its
/// first SPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// The record as parsed (becomes `hvcC`); trailing bytes dropped.
    pub record: Bytes,
    pub general: ProfileTierLevel,
    pub min_spatial_segmentation_idc: u16,
    pub parallelism_type: u8,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Frames per 256 seconds, 0 when unspecified.
    pub avg_frame_rate: u16,
    pub constant_frame_rate: u8,
    pub num_temporal_layers: u8,
    pub temporal_id_nested: bool,
    /// Bytes per NAL length prefix in frames (1, 2 or 4).
    pub nal_length_size: u8,
    pub arrays: Vec<NalArray>,
    /// Display size from the first SPS (conformance window applied), or 0
    /// when it did not parse.
    pub width: u32,
    pub height: u32,
    /// The publisher's Enhanced RTMP `colorInfo` (not part of the record:
    /// the ingest attaches it), for `colr`, `mdcv` and `clli`.
    pub color_info: Option<ColorInfo>,
}

impl HevcConfig {
    /// The units of every array of `nal_unit_type`, in record order.
    pub fn units(&self, nal_unit_type: u8) -> impl Iterator<Item = &Bytes> {
        self.arrays
            .iter()
            .filter(move |a| a.nal_unit_type == nal_unit_type)
            .flat_map(|a| &a.units)
    }

    pub fn vps(&self) -> impl Iterator<Item = &Bytes> {
        self.units(NAL_VPS)
    }

    pub fn sps(&self) -> impl Iterator<Item = &Bytes> {
        self.units(NAL_SPS)
    }

    pub fn pps(&self) -> impl Iterator<Item = &Bytes> {
        self.units(NAL_PPS)
    }
}

/// The fixed part of the record, before the arrays.
const HEADER_LEN: usize = 23;

impl HevcConfig {
    /// Whether the record holds at least one VPS, SPS and PPS (whatever
    /// its `array_completeness` flags say).
    pub fn has_parameter_sets(&self) -> bool {
        [NAL_VPS, NAL_SPS, NAL_PPS]
            .iter()
            .all(|&t| self.units(t).next().is_some())
    }

    /// The record with `array_completeness` set on its VPS, SPS and PPS
    /// arrays: for an `hvc1` sample entry, when the stream carries no
    /// parameter sets in band. (FFmpeg's FLV muxer clears the flags even
    /// then; Apple players take only `hvc1`.) A copy of the record.
    pub fn record_complete(&self) -> Bytes {
        let mut r = self.record.to_vec();
        let mut pos = HEADER_LEN;
        for a in &self.arrays {
            if [NAL_VPS, NAL_SPS, NAL_PPS].contains(&a.nal_unit_type) {
                if let Some(head) = r.get_mut(pos) {
                    *head |= 0x80;
                }
            }
            pos += 3 + a.units.iter().map(|u| 2 + u.len()).sum::<usize>();
        }
        r.into()
    }
}

/// Parses the record an Enhanced RTMP HEVC sequence start carries. Profile,
/// tier, level, chroma format and bit depths come from the record, which is
/// what `hvcC` and the codec string repeat; the size comes from the first
/// SPS. A first SPS that does not parse leaves width and height at 0 rather
/// than rejecting a stream that decoders may well play.
///
/// The parameter sets are zero-copy slices of `record`. The record kept is
/// what was parsed: trailing bytes are dropped, and a record larger than
/// [`MAX_RECORD`] is refused as soon as its arrays run past the bound.
pub fn parse_decoder_config(record: Bytes) -> Result<HevcConfig, HevcError> {
    let r = &record[..];
    need("HEVC decoder configuration", HEADER_LEN, r.len())?;
    if r[0] != 1 {
        return Err(HevcError::BadVersion(r[0]));
    }
    // lengthSizeMinusOne = 2 is not allowed (14496-15 8.3.3.1.2).
    let nal_length_size = (r[21] & 0b11) + 1;
    if nal_length_size == 3 {
        return Err(HevcError::BadNalLengthSize(nal_length_size));
    }
    let general = ProfileTierLevel {
        profile_space: r[1] >> 6,
        tier_flag: r[1] & 0x20 != 0,
        profile_idc: r[1] & 0x1f,
        profile_compatibility_flags: u32::from_be_bytes([r[2], r[3], r[4], r[5]]),
        constraint_indicator_flags: [r[6], r[7], r[8], r[9], r[10], r[11]],
        level_idc: r[12],
    };
    let mut pos = HEADER_LEN;
    let mut arrays = Vec::with_capacity(usize::from(r[22]));
    for _ in 0..r[22] {
        need("NAL array header", pos + 3, r.len())?;
        let (head, count) = (r[pos], u16::from_be_bytes([r[pos + 1], r[pos + 2]]));
        pos += 3;
        let mut units = Vec::new();
        for _ in 0..count {
            need("NAL unit length", pos + 2, r.len())?;
            let len = usize::from(u16::from_be_bytes([r[pos], r[pos + 1]]));
            pos += 2;
            need("NAL unit", pos + len, r.len())?;
            // Bounded before the list grows: each unit costs 2 bytes at least.
            if pos + len > MAX_RECORD {
                return Err(HevcError::RecordTooLarge(pos + len));
            }
            units.push(record.slice(pos..pos + len));
            pos += len;
        }
        arrays.push(NalArray {
            complete: head & 0x80 != 0,
            nal_unit_type: head & 0x3f,
            units,
        });
    }
    if pos > MAX_RECORD {
        return Err(HevcError::RecordTooLarge(pos));
    }
    let mut config = HevcConfig {
        record: record.slice(..pos),
        general,
        min_spatial_segmentation_idc: u16::from_be_bytes([r[13], r[14]]) & 0x0fff,
        parallelism_type: r[15] & 0b11,
        chroma_format_idc: r[16] & 0b11,
        bit_depth_luma: (r[17] & 0b111) + 8,
        bit_depth_chroma: (r[18] & 0b111) + 8,
        avg_frame_rate: u16::from_be_bytes([r[19], r[20]]),
        constant_frame_rate: r[21] >> 6,
        num_temporal_layers: (r[21] >> 3) & 0b111,
        temporal_id_nested: r[21] & 0b100 != 0,
        nal_length_size,
        arrays,
        color_info: None,
        width: 0,
        height: 0,
    };
    let size = config.sps().next().and_then(|s| parse_sps(s).ok());
    if let Some(sps) = size {
        (config.width, config.height) = (sps.width, sps.height);
    }
    Ok(config)
}

/// Builds an `HEVCDecoderConfigurationRecord` (4-byte NAL lengths) from
/// in-band parameter sets (MPEG-TS), for streams that carry none out of
/// band. The fields come from the first SPS, as FFmpeg's `hvcC` writer
/// takes them (it also folds in the VPS's profile_tier_level, which
/// encoders write equal): general profile, tier and level, chroma format,
/// bit depths, temporal layers (the larger of the VPS's and the SPS's)
/// and nesting. Spatial segmentation, parallelism and frame rate are
/// written "unknown" (0), which the record allows. Arrays: VPS, SPS, PPS,
/// not marked complete (the packager decides `hvc1`).
pub fn build_decoder_config(
    vps: &[&[u8]],
    sps: &[&[u8]],
    pps: &[&[u8]],
) -> Result<HevcConfig, HevcError> {
    let first = *sps.first().ok_or(HevcError::SpsTruncated)?;
    let info = parse_sps(first)?;
    // The record has 3 bits for each bit depth minus 8.
    for depth in [info.bit_depth_luma, info.bit_depth_chroma] {
        if depth > 15 {
            return Err(HevcError::SpsOutOfRange {
                field: "bit depth",
                value: i64::from(depth),
            });
        }
    }
    // sps_temporal_id_nesting_flag: the last bit of the byte after the
    // NAL header (no emulation prevention can come before it).
    let nested = first.get(2).is_some_and(|b| b & 1 != 0);
    // vps_max_sub_layers_minus1: bits 4..7 of the VPS's fourth byte.
    let vps_layers = vps
        .first()
        .and_then(|v| v.get(3))
        .map_or(1, |b| ((b >> 1) & 7) + 1);
    let layers = info.max_sub_layers.max(vps_layers).min(7);
    let arrays = [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)];
    let mut size = HEADER_LEN;
    for (_, units) in &arrays {
        if units.is_empty() || units.len() > 0xFFFF {
            return Err(HevcError::Truncated {
                what: "in-band parameter sets",
                need: 1,
                have: units.len(),
            });
        }
        size += 3;
        for u in *units {
            if u.is_empty() || u.len() > 0xFFFF {
                return Err(HevcError::RecordTooLarge(u.len()));
            }
            size += 2 + u.len();
            if size > MAX_RECORD {
                return Err(HevcError::RecordTooLarge(size));
            }
        }
    }
    let g = &info.general;
    let mut r = Vec::with_capacity(size);
    r.push(1);
    r.push((g.profile_space << 6) | (u8::from(g.tier_flag) << 5) | g.profile_idc);
    r.extend_from_slice(&g.profile_compatibility_flags.to_be_bytes());
    r.extend_from_slice(&g.constraint_indicator_flags);
    r.push(g.level_idc);
    r.extend_from_slice(&[0xF0, 0x00]); // min_spatial_segmentation_idc 0
    r.push(0xFC); // parallelismType 0
    r.push(0xFC | info.chroma_format_idc);
    r.push(0xF8 | (info.bit_depth_luma - 8));
    r.push(0xF8 | (info.bit_depth_chroma - 8));
    r.extend_from_slice(&[0, 0]); // avgFrameRate
    r.push((layers << 3) | (u8::from(nested) << 2) | 3);
    r.push(arrays.len() as u8);
    for (nal_type, units) in arrays {
        r.push(nal_type);
        r.extend_from_slice(&(units.len() as u16).to_be_bytes());
        for u in units {
            r.extend_from_slice(&(u.len() as u16).to_be_bytes());
            r.extend_from_slice(u);
        }
    }
    parse_decoder_config(Bytes::from(r))
}

fn need(what: &'static str, need: usize, have: usize) -> Result<(), HevcError> {
    if have < need {
        return Err(HevcError::Truncated { what, need, have });
    }
    Ok(())
}

/// `hvc1.…` for a configuration carried in the sample entry (castgate puts
/// the record into every init segment); see [`ProfileTierLevel::codec_string`].
pub fn codec_string(config: &HevcConfig) -> String {
    config.general.codec_string("hvc1")
}

/// What castgate reads from a sequence parameter set (H.265 7.3.2.2.1):
/// everything up to the bit depths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub general: ProfileTierLevel,
    pub max_sub_layers: u8,
    pub chroma_format_idc: u8,
    pub separate_colour_plane: bool,
    /// `pic_width_in_luma_samples`, `pic_height_in_luma_samples`.
    pub coded_width: u32,
    pub coded_height: u32,
    /// Display size: coded size minus the conformance window.
    pub width: u32,
    pub height: u32,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
}

/// Parses an SPS NAL unit, its two header bytes included. Emulation-
/// prevention bytes are dropped by the bit reader as it reaches them, so
/// the unit is read in place and nothing is copied. Only base-layer SPSs
/// (`nuh_layer_id` 0) are read: the others have another syntax.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, HevcError> {
    let [h0, h1, ..] = *nal else {
        return Err(HevcError::SpsTruncated);
    };
    let nal_type = (h0 >> 1) & 0x3f;
    if nal_type != NAL_SPS {
        return Err(HevcError::NotSps(nal_type));
    }
    let layer = ((h0 & 1) << 5) | (h1 >> 3);
    if layer != 0 {
        return Err(HevcError::NotBaseLayer(layer));
    }
    let mut r = BitReader::rbsp(&nal[2..]);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits_max("sps_max_sub_layers_minus1", 3, 6)?;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    let general = profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue_max("sps_seq_parameter_set_id", 15)?;
    let chroma_format_idc = r.ue_max("chroma_format_idc", 3)? as u8;
    let separate_colour_plane = chroma_format_idc == 3 && r.flag()?;
    let coded_width = r.ue()?;
    let coded_height = r.ue()?;
    // Conformance window offsets count in chroma samples (7.4.3.2.1).
    let (unit_x, unit_y) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let (mut crop_w, mut crop_h) = (0u64, 0u64);
    if r.flag()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        crop_w = unit_x * (u64::from(left) + u64::from(right));
        crop_h = unit_y * (u64::from(top) + u64::from(bottom));
    }
    let width = dimension("width", coded_width, crop_w)?;
    let height = dimension("height", coded_height, crop_h)?;
    let bit_depth_luma = r.ue_max("bit_depth_luma_minus8", 8)? as u8 + 8;
    let bit_depth_chroma = r.ue_max("bit_depth_chroma_minus8", 8)? as u8 + 8;
    Ok(SpsInfo {
        general,
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        chroma_format_idc,
        separate_colour_plane,
        coded_width,
        coded_height,
        width,
        height,
        bit_depth_luma,
        bit_depth_chroma,
    })
}

/// `profile_tier_level(1, max_sub_layers_minus1)` (7.3.3): the general part
/// is kept, the sub-layer parts are skipped.
fn profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
) -> Result<ProfileTierLevel, HevcError> {
    let profile_space = r.bits(2)? as u8;
    let tier_flag = r.flag()?;
    let profile_idc = r.bits(5)? as u8;
    let profile_compatibility_flags = r.bits(32)?;
    let mut constraint_indicator_flags = [0u8; 6];
    for b in &mut constraint_indicator_flags {
        *b = r.u8()?;
    }
    let level_idc = r.u8()?;
    // At most 6 sub-layers (checked by the caller).
    let mut present = [(false, false); 7];
    let sub_layers = &mut present[..max_sub_layers_minus1.min(6) as usize];
    for p in sub_layers.iter_mut() {
        *p = (r.flag()?, r.flag()?);
    }
    if !sub_layers.is_empty() {
        r.skip(2 * (8 - sub_layers.len() as u32))?; // reserved_zero_2bits
    }
    for &(profile, level) in sub_layers.iter() {
        if profile {
            r.skip(88)?; // sub_layer profile space .. inbld/reserved flag
        }
        if level {
            r.skip(8)?; // sub_layer_level_idc
        }
    }
    Ok(ProfileTierLevel {
        profile_space,
        tier_flag,
        profile_idc,
        profile_compatibility_flags,
        constraint_indicator_flags,
        level_idc,
    })
}

fn dimension(field: &'static str, coded: u32, crop: u64) -> Result<u32, HevcError> {
    u64::from(coded)
        .checked_sub(crop)
        .filter(|&v| v > 0)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(HevcError::SpsOutOfRange {
            field,
            value: i64::from(coded) - i64::try_from(crop).unwrap_or(i64::MAX),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::{hex, BitWriter};

    // HEVCDecoderConfigurationRecords from Enhanced RTMP sequence starts
    // written by FFmpeg 9.0.2 (`-f flv`) + libx265 4.3 (testsrc2, 30 fps,
    // `-x265-params info=0` to leave out the settings SEI), the 5-byte
    // ExVideoTagHeader removed. Codec strings checked with GStreamer 1.22's
    // `codec_utils_caps_get_mime_codec` on the same streams in MP4.
    /// 426x240 Main: coded 432 wide, conformance window right offset 3.
    const MAIN_426X240: &str = "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002b42010101600000030090000003000003003ca00d880f1c9e5959a4932bc05a020000030002000003003c1022000100074401c172b46240";
    /// 1280x720 Main 10 (`-pix_fmt yuv420p10le`).
    const MAIN10_1280X720: &str = "0102200000009000000000005df000fcfdfafa00000f03200001001840010c01ffff02200000030090000003000003005d959809210001002b42010102200000030090000003000003005da00280802d1365959a4932bc05a020000003002000000303c122000100074401c172b46240";
    /// 352x288 Main 4:4:4 (RExt, `-pix_fmt yuv444p`).
    const MAIN444_352X288: &str = "0104080000009e08000000003cf000fcfff8f800000f03200001001740010c01ffff0408000003009e0800000300003c959809210001002a4201010408000003009e0800000300003c9001610090b2cacd24995e02d010000003001000000301e08022000100084401c172860c4624";
    /// 1920x1080 Main 4:2:2 10, High tier, level 4.1 (`-pix_fmt
    /// yuv422p10le`, `level-idc=4.1:high-tier=1`).
    const MAIN422_10_HIGH: &str = "0124080000009d08000000007bf000fcfefafa00000f03200001001740010c01ffff2408000003009d0800000300007b959809210001002b4201012408000003009d0800000300007bb003c08010e4d96566924caf016808000003000800000300f04022000100074401c172b46240";
    /// 640x360 Main with three temporal sub-layers (`temporal-layers=3`):
    /// the SPS has sub-layer profile/level flags to skip.
    const MAIN_TEMPORAL_LAYERS: &str = "0101600000009000000000003ff000fcfdf8f800001b03200001001e40010c04ffff01600000030090000003000003003f00009594aca5650240210001003042010401600000030090000003000003003f0000a005020169659594aca565924caf016808000003000800000300f04022000100074401c172b46240";

    fn config(s: &str) -> HevcConfig {
        parse_decoder_config(Bytes::from(hex(s))).unwrap()
    }

    /// The record built from in-band parameter sets (MPEG-TS) is the one
    /// FFmpeg writes for the same stream, byte for byte, and reads back
    /// with the same codec string.
    #[test]
    fn records_built_from_parameter_sets_are_ffmpegs() {
        for rec in [
            MAIN_426X240,
            MAIN10_1280X720,
            MAIN444_352X288,
            MAIN_TEMPORAL_LAYERS,
        ] {
            let c = config(rec);
            let units = |t| c.units(t).map(|u| &u[..]).collect::<Vec<_>>();
            let built =
                build_decoder_config(&units(NAL_VPS), &units(NAL_SPS), &units(NAL_PPS)).unwrap();
            assert_eq!(&built.record[..], &hex(rec)[..], "{}", codec_string(&c));
            assert_eq!(built, c);
        }
        let c = config(MAIN_426X240);
        let (vps, sps, pps) = (
            &c.vps().next().unwrap()[..],
            &c.sps().next().unwrap()[..],
            &c.pps().next().unwrap()[..],
        );
        assert!(build_decoder_config(&[vps], &[], &[pps]).is_err());
        assert!(build_decoder_config(&[], &[sps], &[pps]).is_err());
        assert!(
            build_decoder_config(&[vps], &[pps], &[pps]).is_err(),
            "a PPS is no SPS"
        );
        assert!(build_decoder_config(&[vps], &[&sps[..6]], &[pps]).is_err());
    }

    #[test]
    fn x265_records() {
        for (rec, size, chroma, depth, codec) in [
            (MAIN_426X240, (426, 240), 1, 8, "hvc1.1.6.L60.90"),
            (MAIN10_1280X720, (1280, 720), 1, 10, "hvc1.2.4.L93.90"),
            (MAIN444_352X288, (352, 288), 3, 8, "hvc1.4.10.L60.9E.8"),
            // GStreamer 1.22 writes L123 here although the tier flag is set
            // in both the record and the SPS.
            (MAIN422_10_HIGH, (1920, 1080), 2, 10, "hvc1.4.10.H123.9D.8"),
            (MAIN_TEMPORAL_LAYERS, (640, 360), 1, 8, "hvc1.1.6.L63.90"),
        ] {
            let c = config(rec);
            assert_eq!((c.width, c.height), size, "{codec}");
            assert_eq!(codec_string(&c), codec);
            assert_eq!(c.chroma_format_idc, chroma, "{codec}");
            assert_eq!((c.bit_depth_luma, c.bit_depth_chroma), (depth, depth));
            assert_eq!(c.nal_length_size, 4);
            assert_eq!(&c.record[..], &hex(rec)[..]);
            let types: Vec<u8> = c.arrays.iter().map(|a| a.nal_unit_type).collect();
            assert_eq!(types, [NAL_VPS, NAL_SPS, NAL_PPS], "{codec}");
            assert_eq!(
                (c.vps().count(), c.sps().count(), c.pps().count()),
                (1, 1, 1)
            );
            for a in &c.arrays {
                assert!(!a.complete, "FFmpeg's FLV muxer clears array_completeness");
                for u in &a.units {
                    assert_eq!((u[0] >> 1) & 0x3f, a.nal_unit_type);
                }
            }
            let sps = parse_sps(c.sps().next().unwrap()).unwrap();
            assert_eq!(sps.general, c.general, "{codec}");
            assert_eq!(sps.chroma_format_idc, c.chroma_format_idc);
            assert_eq!(sps.bit_depth_luma, c.bit_depth_luma);
            assert_eq!(sps.bit_depth_chroma, c.bit_depth_chroma);
        }
        let c = config(MAIN_426X240);
        let sps = parse_sps(c.sps().next().unwrap()).unwrap();
        assert_eq!((sps.coded_width, sps.coded_height), (432, 240));
        let tl = parse_sps(config(MAIN_TEMPORAL_LAYERS).sps().next().unwrap()).unwrap();
        assert_eq!(tl.max_sub_layers, 3);
        assert_eq!(config(MAIN_TEMPORAL_LAYERS).num_temporal_layers, 3);
    }

    #[test]
    fn units_are_slices_of_the_record() {
        let c = config(MAIN_426X240);
        let range = c.record.as_ptr_range();
        for u in c.arrays.iter().flat_map(|a| &a.units) {
            assert!(range.contains(&u.as_ptr()));
        }
        // The SPS of this record carries emulation-prevention bytes.
        assert!(c.sps().next().unwrap().windows(3).any(|w| w == [0, 0, 3]));
    }

    #[test]
    fn codec_string_forms() {
        let mut ptl = config(MAIN10_1280X720).general;
        ptl.constraint_indicator_flags = [0xb0, 0, 0, 0, 0, 0];
        assert_eq!(ptl.codec_string("hev1"), "hev1.2.4.L93.B0");
        ptl.constraint_indicator_flags = [0; 6];
        assert_eq!(ptl.codec_string("hvc1"), "hvc1.2.4.L93");
        ptl.constraint_indicator_flags = [0, 0, 0, 0, 0, 1];
        assert_eq!(ptl.codec_string("hvc1"), "hvc1.2.4.L93.0.0.0.0.0.1");
        ptl.profile_space = 1;
        ptl.tier_flag = true;
        ptl.profile_compatibility_flags = 0x0000_0001;
        assert_eq!(ptl.codec_string("hvc1"), "hvc1.A2.80000000.H93.0.0.0.0.0.1");
    }

    /// Trailing bytes after the arrays are dropped (they would be copied
    /// into every init segment); a record too large is refused.
    #[test]
    fn the_record_kept_is_what_was_parsed() {
        let mut junk = hex(MAIN_426X240);
        junk.extend(std::iter::repeat_n(0xEE, 1024 * 1024));
        let c = parse_decoder_config(Bytes::from(junk)).unwrap();
        assert_eq!(&c.record[..], &hex(MAIN_426X240)[..]);
        // One SEI array of 200 units of 100 bytes: larger than any real one.
        let mut big = hex(MAIN_426X240)[..HEADER_LEN].to_vec();
        big[22] = 1;
        big.extend_from_slice(&[0x27, 0, 200]);
        for _ in 0..200 {
            big.extend_from_slice(&[0, 100, 0x4e, 0x01]);
            big.extend(std::iter::repeat_n(0x55, 98));
        }
        assert!(matches!(
            parse_decoder_config(Bytes::from(big)),
            Err(HevcError::RecordTooLarge(n)) if n > MAX_RECORD
        ));
    }

    #[test]
    fn record_errors() {
        let err = |v: Vec<u8>| parse_decoder_config(Bytes::from(v)).unwrap_err();
        let good = hex(MAIN_426X240);
        assert!(matches!(err(vec![]), HevcError::Truncated { .. }));
        assert!(matches!(
            err(good[..22].to_vec()),
            HevcError::Truncated { need: 23, .. }
        ));
        let mut v = good.clone();
        v[0] = 0;
        assert_eq!(err(v), HevcError::BadVersion(0));
        let mut v = good.clone();
        v[21] = (v[21] & !3) | 2;
        assert_eq!(err(v), HevcError::BadNalLengthSize(3));
        // Every cut inside the arrays is a truncation, never a panic.
        for cut in HEADER_LEN..good.len() {
            assert!(
                matches!(err(good[..cut].to_vec()), HevcError::Truncated { .. }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_sps_keeps_the_stream() {
        // The record with its SPS replaced by two header bytes only.
        let mut v = hex(MAIN_426X240)[..HEADER_LEN].to_vec();
        v[22] = 1;
        v.extend_from_slice(&[0x21, 0, 1, 0, 2, 0x42, 0x01]);
        let c = parse_decoder_config(Bytes::from(v)).unwrap();
        assert_eq!((c.width, c.height), (0, 0));
        assert_eq!(codec_string(&c), "hvc1.1.6.L60.90");
    }

    #[test]
    fn sps_rejects_garbage() {
        assert_eq!(parse_sps(&[]), Err(HevcError::SpsTruncated));
        assert_eq!(parse_sps(&[0x42]), Err(HevcError::SpsTruncated));
        assert_eq!(parse_sps(&[0x40, 0x01, 0]), Err(HevcError::NotSps(32)));
        assert_eq!(parse_sps(&[0x42, 0x09, 0]), Err(HevcError::NotBaseLayer(1)));
        assert_eq!(parse_sps(&[0x42, 0x01, 0x01]), Err(HevcError::SpsTruncated));
        // sps_max_sub_layers_minus1 = 7 is reserved.
        assert_eq!(
            parse_sps(&[0x42, 0x01, 0x0e]),
            Err(HevcError::SpsOutOfRange {
                field: "sps_max_sub_layers_minus1",
                value: 7
            })
        );
    }

    /// A hand-made SPS: sub-layer profile and level present, 4:2:2 with a
    /// conformance window on all four sides.
    fn handmade_sps(crop: [u32; 4], chroma: u32, sps_id: u32) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(0x4201, 16);
        w.bits(0, 4); // vps id
        w.bits(2, 3); // max_sub_layers_minus1
        w.bits(1, 1);
        w.bits(1, 2); // profile space 1
        w.bits(1, 1); // High tier
        w.bits(4, 5); // profile 4
        w.bits(0x0800_0000, 32);
        w.bits(0x9d08_0000_0000, 48);
        w.bits(153, 8); // level 5.1
        w.bits(0b11, 2); // sub-layer 0: profile and level
        w.bits(0b01, 2); // sub-layer 1: level only
        w.bits(0, 12); // reserved_zero_2bits for 2..8
        w.bits(0, 24);
        w.bits(0x55, 64); // 88 bits of sub-layer profile
        w.bits(0x3c, 8);
        w.bits(0x3c, 8);
        w.ue(sps_id);
        w.ue(chroma);
        w.ue(1920);
        w.ue(1088);
        w.bits(1, 1);
        for c in crop {
            w.ue(c);
        }
        w.ue(2);
        w.ue(2);
        w.bits(1, 1);
        w.finish()
    }

    #[test]
    fn handmade_sps_with_sub_layers() {
        let sps = parse_sps(&handmade_sps([2, 4, 0, 8], 2, 0)).unwrap();
        assert_eq!((sps.coded_width, sps.coded_height), (1920, 1088));
        // 4:2:2: offsets count 2 luma columns, 1 luma row.
        assert_eq!((sps.width, sps.height), (1920 - 12, 1080));
        assert_eq!(sps.max_sub_layers, 3);
        assert_eq!(sps.general.codec_string("hvc1"), "hvc1.A4.10.H153.9D.8");
        assert_eq!((sps.bit_depth_luma, sps.chroma_format_idc), (10, 2));
        assert!(matches!(
            parse_sps(&handmade_sps([960, 0, 0, 0], 2, 0)),
            Err(HevcError::SpsOutOfRange { field: "width", .. })
        ));
        assert!(matches!(
            parse_sps(&handmade_sps([0, 0, 0, 0], 4, 0)),
            Err(HevcError::SpsOutOfRange {
                field: "chroma_format_idc",
                ..
            })
        ));
        assert!(matches!(
            parse_sps(&handmade_sps([0, 0, 0, 0], 1, 16)),
            Err(HevcError::SpsOutOfRange {
                field: "sps_seq_parameter_set_id",
                ..
            })
        ));
    }

    mod props {
        use super::*;
        use crate::media::bits::mutated;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = parse_sps(&data);
                let mut sps = data.clone();
                sps.splice(0..0, [0x42, 0x01]);
                let _ = parse_sps(&sps);
                if let Ok(c) = parse_decoder_config(Bytes::from(data)) {
                    prop_assert!(c.record.len() <= MAX_RECORD);
                    let _ = codec_string(&c);
                }
            }

            #[test]
            fn mutated_records_never_panic(
                rec in prop_oneof![mutated(MAIN_426X240), mutated(MAIN444_352X288), mutated(MAIN_TEMPORAL_LAYERS)]
            ) {
                if let Ok(c) = parse_decoder_config(Bytes::from(rec)) {
                    for s in c.sps() {
                        if let Ok(info) = parse_sps(s) {
                            prop_assert!(info.width > 0 && info.height > 0);
                        }
                    }
                }
            }
        }
    }
}
