//! H.264: the `AVCDecoderConfigurationRecord`, the SPS fields castgate needs,
//! and AVCC NAL unit framing.
//!
//! Everything here reads publisher bytes, so every length is checked before
//! use and the SPS reader fails with an error at the end of its data instead
//! of inventing zero bits. Exp-Golomb codes are limited to 32 bits and every
//! loop count read from the stream is range-checked first.

use bytes::Bytes;

use super::bits::{BitError, BitReader};
use super::AvcConfig;

/// Why H.264 parameters or NAL framing could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvcError {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unsupported AVCDecoderConfigurationRecord version {0}")]
    BadVersion(u8),
    #[error("invalid NAL length size {0}")]
    BadNalLengthSize(u8),
    #[error("NAL unit of {len} bytes exceeds the {remaining} bytes left")]
    NalTooLong { len: usize, remaining: usize },
    #[error("NAL unit type {0} is not a sequence parameter set")]
    NotSps(u8),
    #[error("SPS ends early")]
    SpsTruncated,
    #[error("exp-Golomb code longer than 32 bits")]
    ExpGolombTooLong,
    #[error("SPS field {field} out of range: {value}")]
    SpsOutOfRange { field: &'static str, value: i64 },
    #[error("AVC decoder configuration of {0} bytes is larger than {MAX_RECORD} bytes")]
    RecordTooLarge(usize),
}

impl From<BitError> for AvcError {
    fn from(e: BitError) -> Self {
        match e {
            BitError::End => AvcError::SpsTruncated,
            BitError::ExpGolombTooLong => AvcError::ExpGolombTooLong,
            BitError::OutOfRange { field, value } => AvcError::SpsOutOfRange {
                field,
                value: i64::from(value),
            },
        }
    }
}

/// The largest decoder configuration record kept (real ones are well under
/// 1 KiB: an SPS and a PPS of tens of bytes). It is copied into every init
/// segment, so a publisher must not make it big.
pub const MAX_RECORD: usize = 16 * 1024;

/// Parses the record an FLV AVC sequence header carries (ISO/IEC 14496-15
/// 5.3.3.1). Profile and level come from the record, which is what `avcC`
/// and the codec string repeat; the size comes from the first SPS. A first
/// SPS that does not parse leaves width and height at 0 rather than
/// rejecting a stream that decoders may well play.
///
/// The SPS and PPS are zero-copy slices of `record`. The record kept is
/// what was parsed: the parameter sets and, for the High profiles, the
/// chroma/bit-depth extension when it is whole; any other trailing bytes
/// are dropped (they would be copied into every init segment), and a
/// record larger than [`MAX_RECORD`] is refused.
pub fn parse_decoder_config(record: Bytes) -> Result<AvcConfig, AvcError> {
    let r = &record[..];
    need("AVC decoder configuration", 6, r.len())?;
    if r[0] != 1 {
        return Err(AvcError::BadVersion(r[0]));
    }
    // lengthSizeMinusOne = 2 is forbidden by 14496-15.
    let nal_length_size = (r[4] & 0b11) + 1;
    if nal_length_size == 3 {
        return Err(AvcError::BadNalLengthSize(nal_length_size));
    }
    let mut pos = 6;
    let sps = read_parameter_sets(&record, &mut pos, usize::from(r[5] & 0x1f), "SPS")?;
    need("PPS count", pos + 1, r.len())?;
    let num_pps = usize::from(r[pos]);
    pos += 1;
    let pps = read_parameter_sets(&record, &mut pos, num_pps, "PPS")?;
    if matches!(r[1], 100 | 110 | 122 | 144) {
        pos = high_profile_extension_end(&record, pos);
    }
    if pos > MAX_RECORD {
        return Err(AvcError::RecordTooLarge(pos));
    }
    let record = record.slice(..pos);
    let (width, height) = sps
        .first()
        .and_then(|s| parse_sps(s).ok())
        .map_or((0, 0), |i| (i.width, i.height));
    Ok(AvcConfig {
        profile_idc: r[1],
        constraint_flags: r[2],
        level_idc: r[3],
        nal_length_size,
        sps,
        pps,
        width,
        height,
        record,
    })
}

/// Where the High-profile extension after the PPS ends (14496-15 5.3.3.1.2:
/// chroma_format, bit depths, then SPS extensions), or `pos` when it is
/// absent or not whole (encoders often omit it; decoders do without it).
fn high_profile_extension_end(record: &Bytes, pos: usize) -> usize {
    let r = &record[..];
    if r.len() < pos + 4 {
        return pos;
    }
    let mut end = pos + 4;
    for _ in 0..r[pos + 3] {
        let Some(len) = r.get(end..end + 2) else {
            return pos;
        };
        end += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        if end > r.len() {
            return pos;
        }
    }
    end
}

fn need(what: &'static str, need: usize, have: usize) -> Result<(), AvcError> {
    if have < need {
        return Err(AvcError::Truncated { what, need, have });
    }
    Ok(())
}

/// `count` u16-length-prefixed units starting at `*pos`. `count` is at most
/// 255, so the vector is never an abusive allocation.
fn read_parameter_sets(
    record: &Bytes,
    pos: &mut usize,
    count: usize,
    what: &'static str,
) -> Result<Vec<Bytes>, AvcError> {
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        need(what, *pos + 2, record.len())?;
        let len = usize::from(u16::from_be_bytes([record[*pos], record[*pos + 1]]));
        *pos += 2;
        need(what, *pos + len, record.len())?;
        sets.push(record.slice(*pos..*pos + len));
        *pos += len;
    }
    Ok(sets)
}

/// What castgate reads from a sequence parameter set (H.264 7.3.2.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Display size: coded size minus the frame cropping rectangle.
    pub width: u32,
    pub height: u32,
    /// Frames per second as `(numerator, denominator)`, from VUI timing:
    /// `time_scale / (2 * num_units_in_tick)`, i.e. two ticks per frame, as
    /// x264 and ffmpeg write it. `None` without (or with unusable) timing.
    pub frame_rate: Option<(u32, u32)>,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4 (1 unless a High profile
    /// says otherwise).
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
}

/// Parses an SPS NAL unit, header byte included. Emulation-prevention bytes
/// are skipped while reading, so nothing is copied.
///
/// Garbage yields an error, never a panic. VUI is read only as far as the
/// timing info; a VUI that breaks off early just leaves `frame_rate` `None`,
/// since the size was already known.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, AvcError> {
    let (&header, _) = nal.split_first().ok_or(AvcError::SpsTruncated)?;
    let nal_type = header & 0x1f;
    if nal_type != 7 {
        return Err(AvcError::NotSps(nal_type));
    }
    let mut r = BitReader::rbsp(&nal[1..]);
    let profile_idc = r.u8()?;
    let constraint_flags = r.u8()?;
    let level_idc = r.u8()?;
    r.ue_max("seq_parameter_set_id", 31)?;

    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let (mut bit_depth_luma, mut bit_depth_chroma) = (8, 8);
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue_max("chroma_format_idc", 3)?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        bit_depth_luma = 8 + r.ue_max("bit_depth_luma_minus8", 6)? as u8;
        bit_depth_chroma = 8 + r.ue_max("bit_depth_chroma_minus8", 6)? as u8;
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue_max("log2_max_frame_num_minus4", 12)?;
    match r.ue_max("pic_order_cnt_type", 2)? {
        0 => {
            r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)?;
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let n = r.ue_max("num_ref_frames_in_pic_order_cnt_cycle", 255)?;
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let coded_w = width_mbs * 16;
    let coded_h = field_factor * height_map_units * 16;
    let (mut crop_w, mut crop_h) = (0u64, 0u64);
    if r.flag()? {
        // 7.4.2.1.1: crop offsets count in chroma sample units.
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (unit_x, unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        crop_w = unit_x * (u64::from(l) + u64::from(rt));
        crop_h = unit_y * (u64::from(t) + u64::from(b));
    }
    let width = dimension("width", coded_w, crop_w)?;
    let height = dimension("height", coded_h, crop_h)?;
    let frame_rate = if r.flag()? {
        read_vui_frame_rate(&mut r).ok().flatten()
    } else {
        None
    };
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        width,
        height,
        frame_rate,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma,
        bit_depth_chroma,
    })
}

fn dimension(field: &'static str, coded: u64, crop: u64) -> Result<u32, AvcError> {
    coded
        .checked_sub(crop)
        .filter(|&v| v > 0)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(AvcError::SpsOutOfRange {
            field,
            value: i64::try_from(coded).unwrap_or(i64::MAX) - i64::try_from(crop).unwrap_or(0),
        })
}

/// 7.3.2.1.1.1; only the bits are consumed, the values are of no use here.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), AvcError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            if !(-128..=127).contains(&delta) {
                return Err(AvcError::SpsOutOfRange {
                    field: "delta_scale",
                    value: i64::from(delta),
                });
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Annex E.1.1, up to and including `timing_info`.
fn read_vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, AvcError> {
    if r.flag()? {
        // aspect_ratio_info_present_flag
        if r.u8()? == 255 {
            r.bits(32)?; // sar_width, sar_height
        }
    }
    if r.flag()? {
        r.flag()?; // overscan_appropriate_flag
    }
    if r.flag()? {
        // video_signal_type_present_flag
        r.bits(4)?; // video_format, video_full_range_flag
        if r.flag()? {
            r.bits(24)?; // colour primaries, transfer, matrix
        }
    }
    if r.flag()? {
        r.ue()?; // chroma_sample_loc_type_top_field
        r.ue()?; // chroma_sample_loc_type_bottom_field
    }
    if !r.flag()? {
        return Ok(None);
    }
    let num_units_in_tick = u64::from(r.bits(32)?);
    let time_scale = u64::from(r.bits(32)?);
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    let (num, den) = (time_scale, 2 * num_units_in_tick);
    let g = gcd(num, den);
    Ok(match (u32::try_from(num / g), u32::try_from(den / g)) {
        (Ok(n), Ok(d)) => Some((n, d)),
        _ => None,
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `avc1.PPCCLL` (RFC 6381 3.3), from the record's profile, constraint and
/// level bytes.
pub fn codec_string(config: &AvcConfig) -> String {
    format!(
        "avc1.{:02x}{:02x}{:02x}",
        config.profile_idc, config.constraint_flags, config.level_idc
    )
}

/// Iterator over the NAL units of an AVCC payload; see [`nal_units`].
#[derive(Clone, Debug)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
    length_size: u8,
    done: bool,
}

/// Iterates the NAL units of an AVCC (length-prefixed) payload. A bad length
/// size, a short prefix or a length past the end yields one `Err` and ends
/// the iteration. Zero-length units are skipped: they carry nothing, and
/// some H.264 parsers panic on them, so consumers never see one.
pub fn nal_units(data: &[u8], nal_length_size: u8) -> NalUnits<'_> {
    NalUnits {
        rest: data,
        length_size: nal_length_size,
        done: false,
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], AvcError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && !self.rest.is_empty() {
            let n = usize::from(self.length_size);
            if !(1..=4).contains(&n) {
                self.done = true;
                return Some(Err(AvcError::BadNalLengthSize(self.length_size)));
            }
            let Some((prefix, body)) = self.rest.split_at_checked(n) else {
                self.done = true;
                return Some(Err(AvcError::Truncated {
                    what: "NAL length prefix",
                    need: n,
                    have: self.rest.len(),
                }));
            };
            let len = prefix
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            let Some((nal, rest)) = body.split_at_checked(len) else {
                self.done = true;
                return Some(Err(AvcError::NalTooLong {
                    len,
                    remaining: body.len(),
                }));
            };
            self.rest = rest;
            if !nal.is_empty() {
                return Some(Ok(nal));
            }
        }
        None
    }
}

/// Whether the payload holds an IDR slice (NAL type 5). Stops at the first
/// framing error. FLV's frame type is what castgate trusts for keyframes;
/// this is for checking and for streams whose tags lie.
pub fn contains_idr(data: &[u8], nal_length_size: u8) -> bool {
    nal_units(data, nal_length_size)
        .map_while(Result::ok)
        .any(|nal| nal[0] & 0x1f == 5)
}

/// Appends the payload to `out` in Annex B form (each unit behind a
/// `00 00 00 01` start code), as MPEG-TS wants it. On error `out` is left as
/// it was, so a half-converted frame never reaches a muxer.
pub fn to_annex_b(data: &[u8], nal_length_size: u8, out: &mut Vec<u8>) -> Result<(), AvcError> {
    let start = out.len();
    for nal in nal_units(data, nal_length_size) {
        match nal {
            Ok(nal) => {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether a frame payload is Annex B (start codes) rather than AVCC.
///
/// Some encoders (and ffmpeg's FLV muxer when it had no global header) put
/// Annex B access units in FLV tags, after an empty sequence header, with
/// SPS/PPS in-band. A start code alone proves nothing: an AVCC NAL of 256 to
/// 511 bytes also begins `00 00 01`. So a payload is Annex B only when it
/// starts with a start code *and* does not walk as AVCC with
/// `nal_length_size`-byte lengths.
pub fn looks_like_annex_b(data: &[u8], nal_length_size: u8) -> bool {
    let start_code = data.starts_with(&[0, 0, 0, 1]) || data.starts_with(&[0, 0, 1]);
    start_code && nal_units(data, nal_length_size).any(|n| n.is_err())
}

/// Splits an Annex B access unit into its NAL units (start codes and
/// trailing zero bytes removed). Never allocates beyond the output list.
pub fn annex_b_units(data: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                units.push(trim_trailing_zeros(&data[s..i]));
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        units.push(trim_trailing_zeros(&data[s..]));
    }
    units.retain(|u| !u.is_empty());
    units
}

fn trim_trailing_zeros(mut nal: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = nal {
        nal = rest;
    }
    nal
}

/// Annex B -> AVCC with 4-byte lengths (the payload is rebuilt: this is the
/// one path where castgate copies a frame, and only for such encoders).
pub fn annex_b_to_avcc(units: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.iter().map(|u| u.len() + 4).sum());
    for u in units {
        out.extend_from_slice(&(u.len() as u32).to_be_bytes());
        out.extend_from_slice(u);
    }
    out
}

/// Builds an `AVCDecoderConfigurationRecord` (4-byte NAL lengths) from an
/// SPS and a PPS, for streams that carry them only in-band.
pub fn build_decoder_config(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, AvcError> {
    build_record(&[sps], &[pps])
}

/// Builds an `AVCDecoderConfigurationRecord` (4-byte NAL lengths) from
/// in-band parameter sets (Annex B FLV frames, MPEG-TS), as FFmpeg writes
/// it: profile, constraints and level from the first SPS, and for the High
/// profiles the chroma format and bit depths after the PPS when that SPS
/// parses (the record stays valid without them).
pub fn build_record(sps: &[&[u8]], pps: &[&[u8]]) -> Result<AvcConfig, AvcError> {
    let bad = |have| AvcError::Truncated {
        what: "in-band SPS/PPS",
        need: 4,
        have,
    };
    let first = *sps.first().ok_or(bad(0))?;
    let too_long = |s: &&[u8]| s.is_empty() || s.len() > 0xFFFF;
    if first.len() < 4 || sps.iter().any(too_long) || pps.is_empty() || pps.iter().any(too_long) {
        return Err(bad(first.len().min(pps.first().map_or(0, |p| p.len()))));
    }
    // 5 bits of SPS count, 8 of PPS count.
    if sps.len() > 31 || pps.len() > 255 {
        return Err(AvcError::RecordTooLarge(sps.len() + pps.len()));
    }
    let size = 7 + 4 + sps.iter().chain(pps).map(|s| 2 + s.len()).sum::<usize>();
    if size > MAX_RECORD {
        return Err(AvcError::RecordTooLarge(size));
    }
    let mut r = Vec::with_capacity(size);
    r.extend_from_slice(&[
        1,
        first[1],
        first[2],
        first[3],
        0xFF,
        0xE0 | sps.len() as u8,
    ]);
    for s in sps {
        r.extend_from_slice(&(s.len() as u16).to_be_bytes());
        r.extend_from_slice(s);
    }
    r.push(pps.len() as u8);
    for p in pps {
        r.extend_from_slice(&(p.len() as u16).to_be_bytes());
        r.extend_from_slice(p);
    }
    if matches!(first[1], 100 | 110 | 122 | 144) {
        if let Ok(info) = parse_sps(first) {
            r.extend_from_slice(&[
                0xFC | info.chroma_format_idc,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0, // no SPS extensions
            ]);
        }
    }
    parse_decoder_config(Bytes::from(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::{hex, BitWriter};

    // AVCDecoderConfigurationRecords from ffmpeg 5.1 + libx264 (testsrc2,
    // 30 fps, FLV), sequence header prefix `17 00 00 00 00` removed.
    pub(crate) const HIGH_640X360: &str = "0164001effe1001a6764001eacd940a02ff970110000030001000003003c0f162d9601000668ebe3cb22c0fdf8f800";
    const MAIN_1280X720: &str =
        "014d401fffe10019674d401feca02802dd8088000003000800000301e078c18cb001000568ebe3cb20";
    const BASELINE_640X360: &str =
        "0142c01effe100196742c01ed900a02ff970110000030001000003003c0f162e4801000568cb83cb20";
    const HIGH_1920X1080: &str = "01640028ffe1001b67640028acd940780227e5c044000003000400000300f03c60c65801000668ebe3cb22c0fdf8f800";

    fn config(s: &str) -> AvcConfig {
        parse_decoder_config(Bytes::from(hex(s))).unwrap()
    }

    #[test]
    fn x264_records() {
        for (rec, w, h, profile, codec) in [
            (HIGH_640X360, 640, 360, 100, "avc1.64001e"),
            (MAIN_1280X720, 1280, 720, 77, "avc1.4d401f"),
            (BASELINE_640X360, 640, 360, 66, "avc1.42c01e"),
            (HIGH_1920X1080, 1920, 1080, 100, "avc1.640028"),
        ] {
            let c = config(rec);
            assert_eq!((c.width, c.height), (w, h), "{codec}");
            assert_eq!(c.profile_idc, profile);
            assert_eq!(c.nal_length_size, 4);
            assert_eq!(codec_string(&c), codec);
            assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
            assert_eq!(c.sps[0][0] & 0x1f, 7);
            assert_eq!(c.pps[0][0] & 0x1f, 8);
            assert_eq!(&c.record[..], &hex(rec)[..]);
            let sps = parse_sps(&c.sps[0]).unwrap();
            assert_eq!(sps.profile_idc, profile);
            assert_eq!(sps.level_idc, c.level_idc);
            assert_eq!(sps.constraint_flags, c.constraint_flags);
            assert_eq!(sps.frame_rate, Some((30, 1)));
        }
    }

    #[test]
    fn sps_and_pps_are_slices_of_the_record() {
        let c = config(HIGH_640X360);
        let range = c.record.as_ptr_range();
        assert!(range.contains(&c.sps[0].as_ptr()));
        assert!(range.contains(&c.pps[0].as_ptr()));
    }

    #[test]
    fn cropping_1080p() {
        // 1920x1088 coded, frame_crop_bottom_offset 4 (x 2 lines for 4:2:0).
        let c = config(HIGH_1920X1080);
        assert_eq!((c.width, c.height), (1920, 1080));
    }

    #[test]
    fn bad_sps_keeps_the_stream() {
        // Same record, SPS replaced by a truncated one.
        let rec = hex("0164001effe10003676400 00");
        let c = parse_decoder_config(Bytes::from(rec)).unwrap();
        assert_eq!((c.width, c.height), (0, 0));
        assert_eq!(c.profile_idc, 100);
        assert_eq!(c.pps.len(), 0);
    }

    /// Trailing bytes after what the record defines are dropped (they would
    /// otherwise be copied into every init segment); the High-profile
    /// extension is kept; a record too large is refused.
    #[test]
    fn the_record_kept_is_what_was_parsed() {
        for rec in [HIGH_640X360, MAIN_1280X720, HIGH_1920X1080] {
            let mut junk = hex(rec);
            junk.extend(std::iter::repeat_n(0xEE, 8 * 1024 * 1024));
            let c = parse_decoder_config(Bytes::from(junk)).unwrap();
            assert_eq!(&c.record[..], &hex(rec)[..], "{rec}");
        }
        // A High record whose extension is cut short keeps up to the PPS.
        let cut = &hex(HIGH_1920X1080)[..hex(HIGH_1920X1080).len() - 2];
        let c = parse_decoder_config(Bytes::copy_from_slice(cut)).unwrap();
        assert_eq!(c.record.len(), hex(HIGH_1920X1080).len() - 4);
        // 31 SPS of 1000 bytes each: larger than any real record.
        let mut big = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe0 | 31];
        for _ in 0..31 {
            big.extend_from_slice(&1000u16.to_be_bytes());
            big.push(0x67);
            big.extend(std::iter::repeat_n(0, 999));
        }
        big.push(0);
        assert_eq!(
            parse_decoder_config(Bytes::from(big)).unwrap_err(),
            AvcError::RecordTooLarge(6 + 31 * 1002 + 1)
        );
    }

    #[test]
    fn record_errors() {
        let err = |s: &str| parse_decoder_config(Bytes::from(hex(s))).unwrap_err();
        assert!(matches!(err(""), AvcError::Truncated { .. }));
        assert_eq!(err("02640028ffe1"), AvcError::BadVersion(2));
        assert_eq!(err("01640028fee1"), AvcError::BadNalLengthSize(3));
        // SPS length runs past the end.
        assert!(matches!(
            err("01640028ffe10010676400"),
            AvcError::Truncated { what: "SPS", .. }
        ));
        assert!(matches!(
            err("01640028ffe1000167"),
            AvcError::Truncated {
                what: "PPS count",
                ..
            }
        ));
    }

    #[test]
    fn sps_rejects_garbage() {
        assert_eq!(parse_sps(&[]), Err(AvcError::SpsTruncated));
        assert_eq!(parse_sps(&[0x68, 1, 2, 3]), Err(AvcError::NotSps(8)));
        assert_eq!(parse_sps(&[0x67, 100, 0, 30]), Err(AvcError::SpsTruncated));
        // Exp-Golomb code of 40 zero bits.
        assert_eq!(
            parse_sps(&[0x67, 66, 0, 30, 0, 0, 0, 0, 0, 0x80]),
            Err(AvcError::ExpGolombTooLong)
        );
        // seq_parameter_set_id 32 (ue: 00000100001).
        assert!(matches!(
            parse_sps(&[0x67, 66, 0, 30, 0b0000_0100, 0b0010_0000]),
            Err(AvcError::SpsOutOfRange {
                field: "seq_parameter_set_id",
                ..
            })
        ));
    }

    #[test]
    fn emulation_prevention_is_skipped() {
        // The 720p SPS contains `00 00 03` twice; stripping them by hand and
        // re-inserting must not change the result.
        let c = config(MAIN_1280X720);
        let sps = &c.sps[0];
        assert!(sps.windows(3).any(|w| w == [0, 0, 3]));
        let info = parse_sps(sps).unwrap();
        assert_eq!((info.width, info.height), (1280, 720));
    }

    #[test]
    fn nal_iteration() {
        let data = hex("00000002 6588 00000000 00000001 41");
        let nals: Vec<_> = nal_units(&data, 4).collect();
        assert_eq!(nals, vec![Ok(&[0x65, 0x88][..]), Ok(&[0x41][..])]);
        assert!(contains_idr(&data, 4));
        assert!(!contains_idr(&hex("000141"), 2));

        // Length past the end: one error, then nothing.
        let bad = hex("0001 41 0565 88");
        let mut it = nal_units(&bad, 2);
        assert_eq!(it.next(), Some(Ok(&[0x41][..])));
        assert_eq!(
            it.next(),
            Some(Err(AvcError::NalTooLong {
                len: 0x0565,
                remaining: 1
            }))
        );
        assert_eq!(it.next(), None);

        let mut it = nal_units(&[0, 0], 4);
        assert!(matches!(it.next(), Some(Err(AvcError::Truncated { .. }))));
        assert_eq!(it.next(), None);
        let mut it = nal_units(&[1, 0x41], 0);
        assert_eq!(it.next(), Some(Err(AvcError::BadNalLengthSize(0))));
        assert_eq!(it.next(), None);
        assert_eq!(nal_units(&[], 4).count(), 0);
    }

    #[test]
    fn annex_b() {
        let mut out = vec![0xaa];
        to_annex_b(&hex("0002 6588 0001 41"), 2, &mut out).unwrap();
        assert_eq!(out, hex("aa 00000001 6588 00000001 41"));
        let mut out = vec![0xaa];
        assert!(to_annex_b(&hex("0002 6588 0009 41"), 2, &mut out).is_err());
        assert_eq!(out, vec![0xaa]);
        let mut out = Vec::new();
        to_annex_b(&hex("01 09 00 01 41"), 1, &mut out).unwrap();
        assert_eq!(out, hex("00000001 09 00000001 41"));
    }

    #[test]
    fn high_profile_with_scaling_lists_and_4_4_4() {
        // Hand-assembled High 4:4:4 SPS exercising chroma_format_idc 3,
        // seq_scaling_matrix_present with one explicit list, POC type 1,
        // field coding and cropping; built with the bit writer below.
        let mut w = BitWriter::default();
        w.bits(0x67, 8);
        w.bits(244, 8); // profile_idc
        w.bits(0, 8);
        w.bits(40, 8);
        w.ue(0); // sps id
        w.ue(3); // chroma_format_idc
        w.bits(0, 1); // separate_colour_plane
        w.ue(2);
        w.ue(2); // bit depths
        w.bits(0, 1);
        w.bits(1, 1); // seq_scaling_matrix_present
        for i in 0..12 {
            if i == 0 {
                w.bits(1, 1);
                for _ in 0..16 {
                    w.se(1);
                }
            } else {
                w.bits(0, 1);
            }
        }
        w.ue(0); // log2_max_frame_num
        w.ue(1); // poc type 1
        w.bits(0, 1);
        w.se(-3);
        w.se(4);
        w.ue(2);
        w.se(5);
        w.se(-5);
        w.ue(4); // max_num_ref_frames
        w.bits(0, 1);
        w.ue(44); // 720 wide
        w.ue(17); // 18 map units * 2 * 16 = 576
        w.bits(0, 1); // frame_mbs_only = 0
        w.bits(1, 1); // mb_adaptive
        w.bits(1, 1); // direct_8x8
        w.bits(1, 1); // cropping
        w.ue(2);
        w.ue(2);
        w.ue(1);
        w.ue(2); // 4:4:4 interlaced: x unit 1, y unit 2
        w.bits(0, 1); // no VUI
        w.bits(1, 1); // rbsp stop bit
        let info = parse_sps(&w.finish()).unwrap();
        assert_eq!((info.width, info.height), (716, 570));
        assert_eq!(info.profile_idc, 244);
        assert_eq!(info.frame_rate, None);
    }

    #[test]
    fn crop_larger_than_picture_is_an_error() {
        let mut w = BitWriter::default();
        w.bits(0x67, 8);
        w.bits(66, 8);
        w.bits(0, 8);
        w.bits(30, 8);
        w.ue(0); // sps id
        w.ue(0); // log2_max_frame_num
        w.ue(0); // poc type 0
        w.ue(0); // log2_max_poc_lsb
        w.ue(1); // max_num_ref_frames
        w.bits(0, 1);
        w.ue(0); // 16 wide
        w.ue(0);
        w.bits(1, 1);
        w.bits(1, 1);
        w.bits(1, 1); // cropping
        w.ue(8); // 16 px left crop
        w.ue(0);
        w.ue(0);
        w.ue(0);
        assert!(matches!(
            parse_sps(&w.finish()),
            Err(AvcError::SpsOutOfRange { field: "width", .. })
        ));
    }

    mod props {
        use super::*;
        use crate::media::bits::mutated;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), size in 0u8..6) {
                let _ = parse_sps(&data);
                let mut sps = data.clone();
                sps.insert(0, 0x67);
                let _ = parse_sps(&sps);
                if let Ok(c) = parse_decoder_config(Bytes::from(data.clone())) {
                    prop_assert!(c.sps.len() <= 31 && c.pps.len() <= 255);
                    let _ = codec_string(&c);
                }
                let n = nal_units(&data, size).count();
                prop_assert!(n <= data.len() + 1);
                let _ = contains_idr(&data, size);
                let mut out = Vec::new();
                if to_annex_b(&data, size, &mut out).is_ok() {
                    prop_assert!(out.len() <= 4 * data.len());
                } else {
                    prop_assert!(out.is_empty());
                }
            }

            #[test]
            fn mutated_records_never_panic(
                rec in prop_oneof![mutated(HIGH_640X360), mutated(HIGH_1920X1080), mutated(MAIN_1280X720)]
            ) {
                if let Ok(c) = parse_decoder_config(Bytes::from(rec)) {
                    for s in &c.sps {
                        let _ = parse_sps(s);
                    }
                }
            }

            #[test]
            fn nal_units_cover_the_payload(nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..8)) {
                let mut data = Vec::new();
                for n in &nals {
                    data.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    data.extend_from_slice(n);
                }
                let got: Vec<&[u8]> = nal_units(&data, 2).map(Result::unwrap).collect();
                prop_assert_eq!(got, nals.iter().map(Vec::as_slice).collect::<Vec<_>>());
            }
        }
    }

    /// Records built from in-band SPS/PPS are what FFmpeg wrote for the
    /// same streams, the High profile's chroma and bit depth bytes included.
    #[test]
    fn records_built_from_parameter_sets_are_ffmpegs() {
        for rec in [
            HIGH_640X360,
            MAIN_1280X720,
            BASELINE_640X360,
            HIGH_1920X1080,
        ] {
            let c = config(rec);
            let sps: Vec<&[u8]> = c.sps.iter().map(|s| &s[..]).collect();
            let pps: Vec<&[u8]> = c.pps.iter().map(|s| &s[..]).collect();
            let built = build_record(&sps, &pps).unwrap();
            assert_eq!(built, c, "{rec}");
        }
        let c = config(HIGH_640X360);
        let (sps, pps) = (&c.sps[0][..], &c.pps[0][..]);
        let two = build_record(&[sps], &[pps, &[0x68, 0xee, 0x3c, 0x80]]).unwrap();
        assert_eq!(two.pps.len(), 2);
        assert!(build_record(&[], &[pps]).is_err());
        assert!(build_record(&[sps], &[]).is_err());
        assert!(build_record(&[sps; 32], &[pps]).is_err());
        // An SPS that does not parse: a record without the extension.
        let short = build_record(&[&sps[..5]], &[pps]).unwrap();
        assert_eq!(short.record.len(), 6 + 2 + 5 + 1 + 2 + pps.len());
    }

    #[test]
    fn annex_b_round_trip_and_record() {
        let sps: &[u8] = &[
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
        ];
        let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut annexb = vec![0, 0, 0, 1];
        annexb.extend_from_slice(sps);
        annexb.extend_from_slice(&[0, 0, 1]);
        annexb.extend_from_slice(pps);
        annexb.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00]);
        assert!(looks_like_annex_b(&annexb, 4));
        // An AVCC frame whose first NAL is 256..=511 bytes starts 00 00 01.
        let mut avcc = vec![0, 0, 1, 0xFD, 0x41];
        avcc.extend(std::iter::repeat_n(0x9A, 0x1FC));
        assert!(!looks_like_annex_b(&avcc, 4));
        let units = annex_b_units(&annexb);
        assert_eq!(units, vec![sps, pps, &[0x65, 0x88, 0x84][..]]);
        let avcc = annex_b_to_avcc(&units);
        let back: Vec<&[u8]> = nal_units(&avcc, 4).map(|n| n.unwrap()).collect();
        assert_eq!(back, units);
        let cfg = build_decoder_config(sps, pps).unwrap();
        assert_eq!(
            (cfg.profile_idc, cfg.level_idc, cfg.nal_length_size),
            (100, 30, 4)
        );
        assert!(build_decoder_config(&[0x67], pps).is_err());
        assert!(annex_b_units(&[0, 0, 1]).is_empty());
    }
}
