//! AV1: the `AV1CodecConfigurationRecord` (`av1C`, AV1 ISOBMFF binding
//! 2.3) that an Enhanced RTMP `av01` sequence start carries, the OBU
//! framing, the sequence header OBU (AV1 5.5) as far as size, bit depth and
//! colour, and the codec string (the binding's "Codecs Parameter String").
//!
//! Everything here reads publisher bytes: OBU sizes are checked against
//! what is left before use, the bit reader fails at the end of its data,
//! and every count read from the stream bounds its loop (at most 32
//! operating points).

use std::fmt::Write as _;

use bytes::Bytes;

use super::bits::{BitError, BitReader};
use super::color_info::ColorInfo;

/// Why AV1 parameters or OBU framing could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Av1Error {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("AV1CodecConfigurationRecord marker/version byte {0:#04x}, want 0x81")]
    BadMarker(u8),
    #[error("AV1 codec configuration of {0} bytes is larger than {MAX_RECORD} bytes")]
    RecordTooLarge(usize),
    #[error("OBU with its forbidden bit set")]
    ForbiddenBit,
    #[error("OBU size field is not a valid leb128 of at most 32 bits")]
    BadLeb128,
    #[error("OBU of {len} bytes exceeds the {remaining} bytes left")]
    ObuTooLong { len: u64, remaining: usize },
    #[error("OBU type {0} is not a sequence header")]
    NotSequenceHeader(u8),
    #[error("sequence header ends early")]
    SequenceHeaderTruncated,
    #[error("sequence header field {field} out of range: {value}")]
    OutOfRange { field: &'static str, value: i64 },
}

impl From<BitError> for Av1Error {
    fn from(e: BitError) -> Self {
        match e {
            BitError::End => Av1Error::SequenceHeaderTruncated,
            // Only uvlc() reads unbounded codes, and it reports its own.
            BitError::ExpGolombTooLong => Av1Error::OutOfRange {
                field: "uvlc",
                value: i64::from(u32::MAX),
            },
            BitError::OutOfRange { field, value } => Av1Error::OutOfRange {
                field,
                value: i64::from(value),
            },
        }
    }
}

/// The largest configuration record kept. Real ones are a sequence header
/// of a few tens of bytes, maybe with HDR metadata OBUs. It is copied into
/// every init segment, so a publisher must not make it big.
pub const MAX_RECORD: usize = 16 * 1024;

/// `OBU_SEQUENCE_HEADER` (AV1 6.2.2).
pub const OBU_SEQUENCE_HEADER: u8 = 1;

/// An `AV1CodecConfigurationRecord` and the sequence header in its
/// `configOBUs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// The record as sent (becomes `av1C`).
    pub record: Bytes,
    pub seq_profile: u8,
    pub seq_level_idx_0: u8,
    /// `true` for the High tier.
    pub seq_tier_0: bool,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub chroma_subsampling_x: bool,
    pub chroma_subsampling_y: bool,
    pub chroma_sample_position: u8,
    pub initial_presentation_delay_minus_one: Option<u8>,
    /// The OBUs after the four fixed bytes: a slice of `record`.
    pub config_obus: Bytes,
    /// The first sequence header in `config_obus`, if there is one and it
    /// parsed.
    pub sequence_header: Option<SequenceHeader>,
    /// The sequence header's maximum frame size, or 0 without one.
    pub width: u32,
    pub height: u32,
    /// The publisher's Enhanced RTMP `colorInfo`, for `mdcv` and `clli`
    /// (the sequence header states the colour).
    pub color_info: Option<ColorInfo>,
}

impl Av1Config {
    /// 8, 10 or 12, from the record's flags.
    pub fn bit_depth(&self) -> u8 {
        match (self.high_bitdepth, self.twelve_bit) {
            (false, _) => 8,
            (true, false) => 10,
            (true, true) => 12,
        }
    }
}

/// The fixed part of the record, before `configOBUs`.
const HEADER_LEN: usize = 4;

/// Parses the record an Enhanced RTMP AV1 sequence start carries. Profile,
/// level, tier and bit depth come from the record, which is what `av1C` and
/// the codec string repeat; the size and colour come from the sequence
/// header in `configOBUs`. OBU framing there must be sound; a sequence
/// header that does not parse leaves the size at 0 rather than rejecting a
/// stream that decoders may well play (they read the in-band one).
pub fn parse_codec_config(record: Bytes) -> Result<Av1Config, Av1Error> {
    let r = &record[..];
    if r.len() < HEADER_LEN {
        return Err(Av1Error::Truncated {
            what: "AV1 codec configuration",
            need: HEADER_LEN,
            have: r.len(),
        });
    }
    if r[0] != 0x81 {
        return Err(Av1Error::BadMarker(r[0]));
    }
    if r.len() > MAX_RECORD {
        return Err(Av1Error::RecordTooLarge(r.len()));
    }
    let config_obus = record.slice(HEADER_LEN..);
    let mut sequence_header = None;
    for obu in obus(&config_obus) {
        let obu = obu?;
        if obu.obu_type == OBU_SEQUENCE_HEADER && sequence_header.is_none() {
            sequence_header = Some(parse_sequence_header(obu.payload).ok());
        }
    }
    let sequence_header = sequence_header.flatten();
    let (width, height) = sequence_header
        .as_ref()
        .map_or((0, 0), |s| (s.max_frame_width, s.max_frame_height));
    Ok(Av1Config {
        color_info: None,
        seq_profile: r[1] >> 5,
        seq_level_idx_0: r[1] & 0x1f,
        seq_tier_0: r[2] & 0x80 != 0,
        high_bitdepth: r[2] & 0x40 != 0,
        twelve_bit: r[2] & 0x20 != 0,
        monochrome: r[2] & 0x10 != 0,
        chroma_subsampling_x: r[2] & 0x08 != 0,
        chroma_subsampling_y: r[2] & 0x04 != 0,
        chroma_sample_position: r[2] & 0b11,
        initial_presentation_delay_minus_one: (r[3] & 0x10 != 0).then_some(r[3] & 0x0f),
        config_obus,
        sequence_header,
        width,
        height,
        record,
    })
}

/// `av01.P.LLT.DD` (the binding's Codecs Parameter String), from the
/// record's profile, level, tier and bit depth. When the sequence header
/// signals colour that is not the string's default (a colour description
/// other than BT.709 primaries, transfer and matrix, or full range), the
/// long form follows: `.M.XYZ.CP.TC.MC.F`, every field from the sequence
/// header (2 for colour it leaves unspecified).
pub fn codec_string(config: &Av1Config) -> String {
    let tier = if config.seq_tier_0 { 'H' } else { 'M' };
    let mut s = format!(
        "av01.{}.{:02}{tier}.{:02}",
        config.seq_profile,
        config.seq_level_idx_0,
        config.bit_depth()
    );
    if let Some(c) = config.sequence_header.as_ref().map(|h| &h.color) {
        let bt709 = (
            c.color_primaries,
            c.transfer_characteristics,
            c.matrix_coefficients,
        ) == (1, 1, 1);
        if c.full_range || (c.color_description_present && !bt709) {
            let _ = write!(
                s,
                ".{}.{}{}{}.{:02}.{:02}.{:02}.{}",
                u8::from(c.mono_chrome),
                u8::from(c.subsampling_x),
                u8::from(c.subsampling_y),
                c.chroma_sample_position,
                c.color_primaries,
                c.transfer_characteristics,
                c.matrix_coefficients,
                u8::from(c.full_range)
            );
        }
    }
    s
}

/// One OBU (AV1 5.3): its type and payload (header and size field removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obu<'a> {
    pub obu_type: u8,
    /// `(temporal_id, spatial_id)` from the extension header, if present.
    pub extension: Option<(u8, u8)>,
    pub payload: &'a [u8],
}

/// Iterator over a sequence of OBUs; see [`obus`].
#[derive(Clone, Debug)]
pub struct Obus<'a> {
    rest: &'a [u8],
    done: bool,
}

/// Iterates the OBUs of `data` (low-overhead bitstream format, as in
/// `configOBUs` and Enhanced RTMP coded frames). An OBU without a size
/// field runs to the end of the data. A malformed header or a size past
/// the end yields one `Err` and ends the iteration.
pub fn obus(data: &[u8]) -> Obus<'_> {
    Obus {
        rest: data,
        done: false,
    }
}

impl<'a> Iterator for Obus<'a> {
    type Item = Result<Obu<'a>, Av1Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let item = next_obu(self.rest);
        match item {
            Ok((obu, rest)) => {
                self.rest = rest;
                Some(Ok(obu))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn next_obu(data: &[u8]) -> Result<(Obu<'_>, &[u8]), Av1Error> {
    let (&header, mut rest) = data.split_first().ok_or(Av1Error::Truncated {
        what: "OBU header",
        need: 1,
        have: 0,
    })?;
    if header & 0x80 != 0 {
        return Err(Av1Error::ForbiddenBit);
    }
    let obu_type = (header >> 3) & 0x0f;
    let mut extension = None;
    if header & 0x04 != 0 {
        let (&ext, after) = rest.split_first().ok_or(Av1Error::Truncated {
            what: "OBU extension header",
            need: 2,
            have: 1,
        })?;
        extension = Some((ext >> 5, (ext >> 3) & 0b11));
        rest = after;
    }
    let len = if header & 0x02 != 0 {
        let (len, after) = leb128(rest)?;
        rest = after;
        len
    } else {
        rest.len() as u64
    };
    let Some((payload, rest)) = usize::try_from(len)
        .ok()
        .and_then(|n| rest.split_at_checked(n))
    else {
        return Err(Av1Error::ObuTooLong {
            len,
            remaining: rest.len(),
        });
    };
    Ok((
        Obu {
            obu_type,
            extension,
            payload,
        },
        rest,
    ))
}

/// leb128() (AV1 4.10.5): at most 8 bytes, value at most 2^32 - 1.
fn leb128(data: &[u8]) -> Result<(u64, &[u8]), Av1Error> {
    let mut value = 0u64;
    for (i, &b) in data.iter().enumerate().take(8) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if value > u64::from(u32::MAX) {
                return Err(Av1Error::BadLeb128);
            }
            return Ok((value, &data[i + 1..]));
        }
    }
    if data.len() < 8 {
        return Err(Av1Error::Truncated {
            what: "OBU size",
            need: data.len() + 1,
            have: data.len(),
        });
    }
    Err(Av1Error::BadLeb128)
}

/// The first sequence header OBU in `data` (e.g. a keyframe's temporal
/// unit, for a publisher that sends no configuration record), parsed.
/// `None` when the OBUs before it do not walk or there is none.
pub fn find_sequence_header(data: &[u8]) -> Option<Result<SequenceHeader, Av1Error>> {
    obus(data)
        .map_while(Result::ok)
        .find(|o| o.obu_type == OBU_SEQUENCE_HEADER)
        .map(|o| parse_sequence_header(o.payload))
}

/// The colour configuration of a sequence header (AV1 5.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColorConfig {
    pub bit_depth: u8,
    pub mono_chrome: bool,
    pub color_description_present: bool,
    /// ISO/IEC 23091-4 code points; 2 (unspecified) without a description.
    pub color_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
    pub full_range: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    /// 0 unknown, 1 vertical, 2 colocated.
    pub chroma_sample_position: u8,
    pub separate_uv_delta_q: bool,
}

/// Timing info of a sequence header (AV1 5.5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingInfo {
    pub num_units_in_display_tick: u32,
    pub time_scale: u32,
    /// `num_ticks_per_picture_minus_1 + 1` with `equal_picture_interval`.
    pub num_ticks_per_picture: Option<u64>,
}

/// What castgate reads from a sequence header OBU (AV1 5.5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceHeader {
    pub seq_profile: u8,
    pub still_picture: bool,
    pub reduced_still_picture_header: bool,
    pub timing_info: Option<TimingInfo>,
    /// Level and tier of operating point 0 (what `av1C` repeats).
    pub seq_level_idx_0: u8,
    pub seq_tier_0: bool,
    pub operating_points: u8,
    /// The largest frame size of the sequence; frames may be smaller.
    pub max_frame_width: u32,
    pub max_frame_height: u32,
    pub color: ColorConfig,
    pub film_grain_params_present: bool,
}

const CP_BT_709: u8 = 1;
const TC_SRGB: u8 = 13;
const MC_IDENTITY: u8 = 0;
const UNSPECIFIED: u8 = 2;

/// Parses a sequence header OBU's payload (header and size removed, as
/// [`obus`] yields it), through `film_grain_params_present`.
pub fn parse_sequence_header(payload: &[u8]) -> Result<SequenceHeader, Av1Error> {
    let mut r = BitReader::new(payload);
    let seq_profile = r.bits_max("seq_profile", 3, 2)? as u8;
    let still_picture = r.flag()?;
    let reduced_still_picture_header = r.flag()?;
    let mut timing_info = None;
    let (seq_level_idx_0, seq_tier_0, operating_points);
    if reduced_still_picture_header {
        seq_level_idx_0 = r.bits(5)? as u8;
        seq_tier_0 = false;
        operating_points = 1;
    } else {
        let mut decoder_model_info = None;
        if r.flag()? {
            timing_info = Some(read_timing_info(&mut r)?);
            if r.flag()? {
                let buffer_delay_length = r.bits(5)? + 1;
                r.skip(32)?; // num_units_in_decoding_tick
                r.skip(5 + 5)?; // buffer_removal_time / frame_presentation_time lengths
                decoder_model_info = Some(buffer_delay_length);
            }
        }
        let initial_display_delay_present = r.flag()?;
        let count = r.bits(5)? + 1;
        let (mut level0, mut tier0) = (0, false);
        for i in 0..count {
            r.skip(12)?; // operating_point_idc
            let level = r.bits(5)? as u8;
            let tier = level > 7 && r.flag()?;
            if i == 0 {
                (level0, tier0) = (level, tier);
            }
            if let Some(n) = decoder_model_info {
                if r.flag()? {
                    // decoder_buffer_delay, encoder_buffer_delay, low_delay_mode_flag
                    r.skip(2 * n + 1)?;
                }
            }
            if initial_display_delay_present && r.flag()? {
                r.skip(4)?; // initial_display_delay_minus_1
            }
        }
        (seq_level_idx_0, seq_tier_0, operating_points) = (level0, tier0, count as u8);
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    // At most 16 bits each: the sizes fit.
    let max_frame_width = r.bits(width_bits)? + 1;
    let max_frame_height = r.bits(height_bits)? + 1;
    if !reduced_still_picture_header && r.flag()? {
        // frame_id_numbers_present_flag
        r.skip(4 + 3)?; // delta_frame_id_length_minus_2, additional_frame_id_length_minus_1
    }
    r.skip(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if !reduced_still_picture_header {
        r.skip(4)?; // interintra, masked compound, warped motion, dual filter
        let enable_order_hint = r.flag()?;
        if enable_order_hint {
            r.skip(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        // seq_choose_screen_content_tools, else seq_force_screen_content_tools
        let force_screen_content_tools = if r.flag()? { 2 } else { r.bit()? };
        if force_screen_content_tools > 0 && !r.flag()? {
            r.skip(1)?; // seq_force_integer_mv
        }
        if enable_order_hint {
            r.skip(3)?; // order_hint_bits_minus_1
        }
    }
    r.skip(3)?; // enable_superres, enable_cdef, enable_restoration
    let color = read_color_config(&mut r, seq_profile)?;
    let film_grain_params_present = r.flag()?;
    Ok(SequenceHeader {
        seq_profile,
        still_picture,
        reduced_still_picture_header,
        timing_info,
        seq_level_idx_0,
        seq_tier_0,
        operating_points,
        max_frame_width,
        max_frame_height,
        color,
        film_grain_params_present,
    })
}

/// timing_info() (5.5.3).
fn read_timing_info(r: &mut BitReader<'_>) -> Result<TimingInfo, Av1Error> {
    let num_units_in_display_tick = r.bits(32)?;
    let time_scale = r.bits(32)?;
    let num_ticks_per_picture = if r.flag()? { Some(uvlc(r)? + 1) } else { None };
    Ok(TimingInfo {
        num_units_in_display_tick,
        time_scale,
        num_ticks_per_picture,
    })
}

/// uvlc() (4.10.3). The spec caps the value at 2^32 - 1 after 32 leading
/// zeros; more zeros than that is refused rather than read on.
fn uvlc(r: &mut BitReader<'_>) -> Result<u64, Av1Error> {
    let mut zeros = 0u32;
    while !r.flag()? {
        zeros += 1;
        if zeros > 32 {
            return Err(Av1Error::OutOfRange {
                field: "uvlc leading zeros",
                value: i64::from(zeros),
            });
        }
    }
    if zeros >= 32 {
        return Ok(u64::from(u32::MAX));
    }
    Ok(u64::from(r.bits(zeros)?) + (1u64 << zeros) - 1)
}

/// color_config() (5.5.2).
fn read_color_config(r: &mut BitReader<'_>, seq_profile: u8) -> Result<ColorConfig, Av1Error> {
    let high_bitdepth = r.flag()?;
    let bit_depth = match (seq_profile, high_bitdepth) {
        (2, true) => {
            if r.flag()? {
                12
            } else {
                10
            }
        }
        (_, true) => 10,
        (_, false) => 8,
    };
    let mono_chrome = seq_profile != 1 && r.flag()?;
    let color_description_present = r.flag()?;
    let (cp, tc, mc) = if color_description_present {
        (r.u8()?, r.u8()?, r.u8()?)
    } else {
        (UNSPECIFIED, UNSPECIFIED, UNSPECIFIED)
    };
    let mut c = ColorConfig {
        bit_depth,
        mono_chrome,
        color_description_present,
        color_primaries: cp,
        transfer_characteristics: tc,
        matrix_coefficients: mc,
        full_range: false,
        subsampling_x: true,
        subsampling_y: true,
        chroma_sample_position: 0,
        separate_uv_delta_q: false,
    };
    if mono_chrome {
        c.full_range = r.flag()?;
        return Ok(c);
    }
    if (cp, tc, mc) == (CP_BT_709, TC_SRGB, MC_IDENTITY) {
        c.full_range = true;
        (c.subsampling_x, c.subsampling_y) = (false, false);
    } else {
        c.full_range = r.flag()?;
        (c.subsampling_x, c.subsampling_y) = match seq_profile {
            0 => (true, true),
            1 => (false, false),
            _ if bit_depth == 12 => {
                let x = r.flag()?;
                (x, x && r.flag()?)
            }
            _ => (true, false),
        };
        if c.subsampling_x && c.subsampling_y {
            c.chroma_sample_position = r.bits(2)? as u8;
        }
    }
    c.separate_uv_delta_q = r.flag()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::{hex, BitWriter};

    // AV1CodecConfigurationRecords from Enhanced RTMP sequence starts
    // written by FFmpeg 9.0.2 (`-f flv`), the 5-byte ExVideoTagHeader
    // removed. Short codec strings as FFmpeg's DASH muxer writes them for
    // the same streams in MP4.
    /// libsvtav1 4.2, 426x240 4:2:0 8-bit.
    const SVT_426X240: &str = "81000c000a0b0200000521f53de017c002";
    /// libsvtav1, 640x360 4:2:0 10-bit.
    const SVT_640X360_10: &str = "81014c000a0c0200000d2627fb3805f08080";
    /// libsvtav1, 640x360 10-bit, BT.2020 / PQ / BT.2020 NCL, full range
    /// (`-vf setparams=…`; ffprobe reads the same from the MP4).
    const SVT_HDR: &str = "81014c000a0f0200000d2627fb3805f0a122013080";
    /// libaom 3, 320x240 4:4:4 8-bit (profile 1).
    const AOM_444: &str = "812000000a0a200000043cffbcdaf982";
    /// libaom, 320x240 4:2:2 12-bit (profile 2).
    const AOM_422_12: &str = "814068000a0b400000043cffbcdaf9e220";
    /// libaom, 320x240 monochrome (`-pix_fmt gray`), full range.
    const AOM_MONO: &str = "81001c000a0a000000043cffbcdaf9aa";
    /// libaom `-still-picture 1`: reduced still picture header.
    const AOM_STILL: &str = "81000c000a071821e7fded8040";
    /// libaom `timing-info=constant`: timing info with equal intervals.
    const AOM_TIMING: &str = "81000c000a1404000000040000007b400000bc3cffbcdaf98040";
    /// libaom `timing-info=model`: timing and decoder model info.
    const AOM_MODEL: &str =
        "81000c000a1e040000000400000079780000000a530000035f915f90bc3cffbcdaf98040";

    fn config(s: &str) -> Av1Config {
        parse_codec_config(Bytes::from(hex(s))).unwrap()
    }

    #[test]
    fn encoder_records() {
        for (rec, size, depth, codec) in [
            (SVT_426X240, (426, 240), 8, "av01.0.00M.08"),
            (SVT_640X360_10, (640, 360), 10, "av01.0.01M.10"),
            (SVT_HDR, (640, 360), 10, "av01.0.01M.10.0.110.09.16.09.1"),
            (AOM_444, (320, 240), 8, "av01.1.00M.08"),
            (AOM_422_12, (320, 240), 12, "av01.2.00M.12"),
            // Full range (ffprobe agrees): the long form.
            (AOM_MONO, (320, 240), 8, "av01.0.00M.08.1.110.02.02.02.1"),
            (AOM_STILL, (320, 240), 8, "av01.0.00M.08"),
            (AOM_TIMING, (320, 240), 8, "av01.0.00M.08"),
            (AOM_MODEL, (320, 240), 8, "av01.0.00M.08"),
        ] {
            let c = config(rec);
            assert_eq!((c.width, c.height), size, "{rec}");
            assert_eq!(c.bit_depth(), depth, "{rec}");
            assert_eq!(codec_string(&c), codec, "{rec}");
            assert_eq!(&c.record[..], &hex(rec)[..]);
            let sh = c.sequence_header.clone().unwrap();
            // The record repeats the sequence header.
            assert_eq!(sh.seq_profile, c.seq_profile, "{rec}");
            assert_eq!(sh.seq_level_idx_0, c.seq_level_idx_0, "{rec}");
            assert_eq!(sh.seq_tier_0, c.seq_tier_0, "{rec}");
            assert_eq!(sh.color.bit_depth, depth, "{rec}");
            assert_eq!(sh.color.mono_chrome, c.monochrome, "{rec}");
            assert_eq!(sh.color.subsampling_x, c.chroma_subsampling_x, "{rec}");
            assert_eq!(sh.color.subsampling_y, c.chroma_subsampling_y, "{rec}");
            assert_eq!(sh.color.chroma_sample_position, c.chroma_sample_position);
            let found = find_sequence_header(&c.config_obus).unwrap().unwrap();
            assert_eq!(found, sh);
        }
        let sh = config(AOM_STILL).sequence_header.unwrap();
        assert!(sh.still_picture && sh.reduced_still_picture_header);
        let sh = config(AOM_TIMING).sequence_header.unwrap();
        let t = sh.timing_info.unwrap();
        assert_eq!((t.num_units_in_display_tick, t.time_scale), (1, 30));
        assert_eq!(t.num_ticks_per_picture, Some(1));
        let sh = config(AOM_MODEL).sequence_header.unwrap();
        assert!(sh.timing_info.is_some());
        let hdr = config(SVT_HDR).sequence_header.unwrap().color;
        assert!(hdr.color_description_present && hdr.full_range);
        assert_eq!(
            (
                hdr.color_primaries,
                hdr.transfer_characteristics,
                hdr.matrix_coefficients
            ),
            (9, 16, 9)
        );
        let mono = config(AOM_MONO).sequence_header.unwrap().color;
        assert!(mono.mono_chrome);
    }

    #[test]
    fn config_obus_are_a_slice_of_the_record() {
        let c = config(SVT_426X240);
        assert_eq!(c.config_obus.as_ptr(), c.record[4..].as_ptr());
        assert_eq!(c.initial_presentation_delay_minus_one, None);
        // An empty configOBUs is allowed: no size then.
        let c = parse_codec_config(Bytes::from(hex("81000c00"))).unwrap();
        assert_eq!((c.width, c.height, &c.sequence_header), (0, 0, &None));
        assert_eq!(codec_string(&c), "av01.0.00M.08");
        // initial_presentation_delay present, minus one = 5.
        let c = parse_codec_config(Bytes::from(hex("81000c15"))).unwrap();
        assert_eq!(c.initial_presentation_delay_minus_one, Some(5));
    }

    #[test]
    fn record_errors() {
        let err = |s: &str| parse_codec_config(Bytes::from(hex(s))).unwrap_err();
        assert!(matches!(err(""), Av1Error::Truncated { .. }));
        assert!(matches!(err("81000c"), Av1Error::Truncated { .. }));
        assert_eq!(err("01000c00"), Av1Error::BadMarker(1));
        assert_eq!(err("82000c00"), Av1Error::BadMarker(0x82));
        // A sequence header OBU whose size runs past the end.
        assert_eq!(
            err("81000c00 0a20 0000"),
            Av1Error::ObuTooLong {
                len: 32,
                remaining: 2
            }
        );
        assert_eq!(err("81000c00 8a00"), Av1Error::ForbiddenBit);
        let mut big = hex(SVT_426X240);
        big.resize(MAX_RECORD + 1, 0);
        assert_eq!(
            parse_codec_config(Bytes::from(big)).unwrap_err(),
            Av1Error::RecordTooLarge(MAX_RECORD + 1)
        );
        // A sequence header that does not parse keeps the stream.
        let c = parse_codec_config(Bytes::from(hex("81000c00 0a02 0000"))).unwrap();
        assert_eq!((c.width, c.height, &c.sequence_header), (0, 0, &None));
        // Cutting the real record anywhere inside its OBU is an error or a
        // shorter sequence header that fails; never a panic.
        let good = hex(SVT_HDR);
        for cut in 4..good.len() {
            let _ = parse_codec_config(Bytes::copy_from_slice(&good[..cut]));
        }
    }

    #[test]
    fn obu_framing() {
        // Temporal delimiter (type 2, size 0), then a padding OBU (15) with
        // an extension header and 2 bytes, then one without a size field.
        let data = hex("1200 7e28 02 aabb 78 01 02 03");
        let got: Vec<_> = obus(&data).collect();
        assert_eq!(
            got,
            vec![
                Ok(Obu {
                    obu_type: 2,
                    extension: None,
                    payload: &[]
                }),
                Ok(Obu {
                    obu_type: 15,
                    extension: Some((1, 1)),
                    payload: &[0xaa, 0xbb]
                }),
                Ok(Obu {
                    obu_type: 15,
                    extension: None,
                    payload: &[1, 2, 3]
                }),
            ]
        );
        // Truncated extension header, then nothing.
        let mut it = obus(&[0x16]);
        assert!(matches!(it.next(), Some(Err(Av1Error::Truncated { .. }))));
        assert_eq!(it.next(), None);
        assert_eq!(leb128(&hex("e507")), Ok((997, &[][..])));
        assert_eq!(
            leb128(&hex("8080808080808080 01")),
            Err(Av1Error::BadLeb128)
        );
        // 2^35: more than 32 bits.
        assert_eq!(leb128(&hex("8080808080 01")), Err(Av1Error::BadLeb128));
        assert!(matches!(
            leb128(&hex("8080")),
            Err(Av1Error::Truncated { .. })
        ));
        assert_eq!(find_sequence_header(&hex("1200")), None);
    }

    /// A hand-made sequence header: two operating points (the first at
    /// level 5.1, High tier), frame ids, screen content tools chosen per
    /// frame, 4:2:2 at 12 bits in profile 2.
    #[test]
    fn handmade_sequence_header() {
        let mut w = BitWriter::default();
        w.bits(2, 3); // seq_profile
        w.bits(0, 2); // still, reduced
        w.bits(0, 1); // no timing info
        w.bits(1, 1); // initial_display_delay_present
        w.bits(1, 5); // two operating points
        for (level, tier) in [(13, 1), (5, 0)] {
            w.bits(0x101, 12);
            w.bits(level, 5);
            if level > 7 {
                w.bits(tier, 1);
            }
            w.bits(1, 1);
            w.bits(9, 4);
        }
        w.bits(11, 4); // 12 width bits
        w.bits(11, 4); // 12 height bits
        w.bits(3839, 12);
        w.bits(2159, 12);
        w.bits(1, 1); // frame ids
        w.bits(0, 7);
        w.bits(0, 3);
        w.bits(0, 4);
        w.bits(1, 1); // order hint
        w.bits(0, 2);
        w.bits(1, 1); // seq_choose_screen_content_tools
        w.bits(0, 1); // seq_choose_integer_mv = 0
        w.bits(1, 1); // seq_force_integer_mv
        w.bits(6, 3);
        w.bits(0, 3);
        w.bits(1, 1); // high_bitdepth
        w.bits(1, 1); // twelve_bit
        w.bits(0, 1); // mono
        w.bits(0, 1); // no colour description
        w.bits(0, 1); // limited range
        w.bits(1, 1); // subsampling_x
        w.bits(0, 1); // subsampling_y
        w.bits(1, 1); // separate_uv_delta_q
        w.bits(1, 1); // film grain
        let sh = parse_sequence_header(&w.finish()).unwrap();
        assert_eq!((sh.max_frame_width, sh.max_frame_height), (3840, 2160));
        assert_eq!((sh.seq_level_idx_0, sh.seq_tier_0), (13, true));
        assert_eq!(sh.operating_points, 2);
        assert_eq!(sh.color.bit_depth, 12);
        assert!(sh.color.subsampling_x && !sh.color.subsampling_y);
        assert!(sh.color.separate_uv_delta_q && sh.film_grain_params_present);
        assert_eq!(
            parse_sequence_header(&[0xe0]),
            Err(Av1Error::OutOfRange {
                field: "seq_profile",
                value: 7
            })
        );
        assert_eq!(
            parse_sequence_header(&[]),
            Err(Av1Error::SequenceHeaderTruncated)
        );
    }

    #[test]
    fn uvlc_bounds() {
        // 32 leading zeros: the capped value, no bits after.
        let mut r = BitReader::new(&[0, 0, 0, 0, 0x80]);
        assert_eq!(uvlc(&mut r), Ok(u64::from(u32::MAX)));
        let mut r = BitReader::new(&[0, 0, 0, 0, 0, 0x80]);
        assert!(matches!(uvlc(&mut r), Err(Av1Error::OutOfRange { .. })));
        let mut r = BitReader::new(&[0b0010_1000]);
        assert_eq!(uvlc(&mut r), Ok(4));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_sequence_header(&data);
                let _ = find_sequence_header(&data);
                let n = obus(&data).count();
                prop_assert!(n <= data.len());
                let mut rec = hex("81000c00");
                rec.extend_from_slice(&data);
                if let Ok(c) = parse_codec_config(Bytes::from(rec)) {
                    let _ = codec_string(&c);
                }
            }

            #[test]
            fn mutated_records_never_panic(
                edits in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
                which in 0usize..3,
            ) {
                let mut v = hex([SVT_HDR, AOM_MODEL, AOM_422_12][which]);
                let len = v.len();
                for (i, b) in edits {
                    v[i % len] = b;
                }
                if let Ok(c) = parse_codec_config(Bytes::from(v)) {
                    let _ = codec_string(&c);
                }
            }
        }
    }
}
