//! AAC: the `AudioSpecificConfig` (ISO/IEC 14496-3 1.6.2.1) and ADTS headers.
//!
//! [`AacConfig::sample_rate`] is the rate of the AAC core, the one at which
//! [`AacConfig::frame_length`] samples make one access unit. With SBR
//! (HE-AAC, object type 5 or 29) the decoder's output runs at twice that,
//! but frame durations, ADTS headers and timestamps all count core samples,
//! so the core rate is the one castgate times audio by.
//! [`AudioSpecificConfig::output_sample_rate`] has the other.

use bytes::Bytes;

use super::bits::{BitError, BitReader};
use super::AacConfig;

/// Why an `AudioSpecificConfig` could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AacError {
    #[error("AudioSpecificConfig ends early")]
    Truncated,
    #[error("reserved sampling frequency index {0}")]
    BadFrequencyIndex(u8),
    #[error("sampling frequency 0")]
    ZeroSampleRate,
    #[error("reserved channel configuration {0}")]
    BadChannelConfig(u8),
    #[error("unsupported audio object type {0}")]
    UnsupportedObjectType(u8),
    #[error("ADTS cannot signal {0}")]
    NotAdtsCompatible(&'static str),
    #[error("ADTS frame of {0} bytes exceeds 8191")]
    FrameTooLong(usize),
    #[error("AudioSpecificConfig of {0} bytes is larger than {MAX_ASC} bytes")]
    TooLarge(usize),
}

impl From<BitError> for AacError {
    /// The configuration is read with plain fixed-width reads, so running
    /// out of bits is the only failure the reader reports.
    fn from(_: BitError) -> Self {
        AacError::Truncated
    }
}

/// The largest `AudioSpecificConfig` kept: real ones are 2 to 5 bytes, and
/// a program config element with its comment stays well under this. It is
/// copied into every init segment, so a publisher must not make it big.
pub const MAX_ASC: usize = 512;

/// Every field castgate decodes from an `AudioSpecificConfig`; the subset
/// that matters downstream is [`AacConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The first object type: 5 or 29 for explicitly signalled SBR/PS.
    pub object_type: u8,
    /// The AAC core's object type (differs only with SBR/PS).
    pub core_object_type: u8,
    /// Core sampling frequency index, 0xF for an explicit rate.
    pub frequency_index: u8,
    /// Core sampling rate.
    pub sample_rate: u32,
    /// What an SBR decoder outputs (the extension rate); else `sample_rate`.
    pub output_sample_rate: u32,
    /// The raw channelConfiguration (0 = a program config element).
    pub channel_config: u8,
    /// Output channels: from the configuration or the PCE; 2 with PS.
    pub channels: u8,
    pub frame_length: u32,
    pub sbr: bool,
    pub ps: bool,
}

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Decodes an `AudioSpecificConfig` in full. Bits after the codec-specific
/// config (e.g. ffmpeg's backward-compatible SBR sync extension) are ignored:
/// they never change the core parameters.
pub fn parse_asc_fields(asc: &[u8]) -> Result<AudioSpecificConfig, AacError> {
    let mut r = BitReader::new(asc);
    let object_type = read_object_type(&mut r)?;
    let (frequency_index, sample_rate) = frequency(&mut r)?;
    let channel_config = r.bits(4)? as u8;
    let (mut core_object_type, mut output_sample_rate) = (object_type, sample_rate);
    let (sbr, ps) = (matches!(object_type, 5 | 29), object_type == 29);
    if sbr {
        output_sample_rate = frequency(&mut r)?.1;
        core_object_type = read_object_type(&mut r)?;
        if core_object_type == 22 {
            r.bits(4)?; // extensionChannelConfiguration
        }
    }
    // General Audio object types, the only ones GASpecificConfig covers.
    if !matches!(
        core_object_type,
        1 | 2 | 3 | 4 | 6 | 7 | 17 | 19 | 20 | 21 | 22 | 23
    ) {
        return Err(AacError::UnsupportedObjectType(core_object_type));
    }
    // GASpecificConfig, 4.4.1.
    let short_frames = r.bit()? == 1;
    let frame_length = match (core_object_type, short_frames) {
        (23, false) => 512,
        (23, true) => 480,
        (_, false) => 1024,
        (_, true) => 960,
    };
    if r.bit()? == 1 {
        r.bits(14)?; // coreCoderDelay
    }
    r.bit()?; // extensionFlag
    let mut channels = match channel_config {
        0 => program_config_channels(&mut r)?,
        1..=6 => channel_config,
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        c => return Err(AacError::BadChannelConfig(c)),
    };
    if ps {
        // Parametric stereo turns a mono core into stereo output.
        channels = channels.max(2);
    }
    Ok(AudioSpecificConfig {
        object_type,
        core_object_type,
        frequency_index,
        sample_rate,
        output_sample_rate,
        channel_config,
        channels,
        frame_length,
        sbr,
        ps,
    })
}

/// Channels described by a `program_config_element` (4.4.1.1).
fn program_config_channels(r: &mut BitReader<'_>) -> Result<u8, AacError> {
    r.bits(4 + 2 + 4)?; // element_instance_tag, object_type, sf index
    let front = r.bits(4)?;
    let side = r.bits(4)?;
    let back = r.bits(4)?;
    let lfe = r.bits(2)?;
    r.bits(3 + 4)?; // num_assoc_data_elements, num_valid_cc_elements
    for _ in 0..2 {
        // mono_mixdown, stereo_mixdown
        if r.bit()? == 1 {
            r.bits(4)?;
        }
    }
    if r.bit()? == 1 {
        r.bits(3)?; // matrix_mixdown_idx, pseudo_surround_enable
    }
    let mut channels = 0u32;
    for _ in 0..front + side + back {
        let is_cpe = r.bit()?;
        r.bits(4)?;
        channels += 1 + is_cpe;
    }
    r.bits(4 * lfe)?;
    channels += lfe;
    // At most 45 elements of two channels plus 3 LFE: fits.
    match channels {
        0 => Err(AacError::BadChannelConfig(0)),
        n => Ok(n as u8),
    }
}

/// Parses the AAC sequence header's `AudioSpecificConfig`; see the module
/// doc for what `sample_rate` means with SBR.
pub fn parse_audio_specific_config(asc: Bytes) -> Result<AacConfig, AacError> {
    if asc.len() > MAX_ASC {
        return Err(AacError::TooLarge(asc.len()));
    }
    let f = parse_asc_fields(&asc)?;
    Ok(AacConfig {
        asc,
        object_type: f.object_type,
        sample_rate: f.sample_rate,
        channels: f.channels,
        frame_length: f.frame_length,
    })
}

/// `mp4a.40.N` (RFC 6381 3.3) with the signalled object type, so HE-AAC
/// reads `mp4a.40.5` and HE-AACv2 `mp4a.40.29`.
pub fn codec_string(config: &AacConfig) -> String {
    format!("mp4a.40.{}", config.object_type)
}

/// The 7-byte ADTS header (no CRC) for one raw access unit of `payload_len`
/// bytes. SBR/PS streams get their core profile and rate: ADTS signals them
/// implicitly. Configurations ADTS cannot express are errors.
pub fn adts_header(config: &AacConfig, payload_len: usize) -> Result<[u8; 7], AacError> {
    let f = parse_asc_fields(&config.asc)?;
    if !(1..=4).contains(&f.core_object_type) {
        return Err(AacError::NotAdtsCompatible("this object type"));
    }
    if f.frame_length != 1024 {
        return Err(AacError::NotAdtsCompatible("960-sample frames"));
    }
    let index = match f.frequency_index {
        0xf => RATES.iter().position(|&r| r == f.sample_rate),
        i => Some(usize::from(i)),
    }
    .ok_or(AacError::NotAdtsCompatible("a non-standard sampling rate"))? as u8;
    if !(1..=7).contains(&f.channel_config) {
        return Err(AacError::NotAdtsCompatible("this channel configuration"));
    }
    let len = payload_len.saturating_add(7);
    if len > 0x1fff {
        return Err(AacError::FrameTooLong(len));
    }
    let profile = f.core_object_type - 1;
    let ch = f.channel_config;
    Ok([
        0xff,
        0xf1, // MPEG-4, layer 0, no CRC
        (profile << 6) | (index << 2) | (ch >> 2),
        ((ch & 3) << 6) | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len as u8 & 7) << 5) | 0x1f, // buffer fullness 0x7ff: VBR
        0xfc,
    ])
}

/// GetAudioObjectType(): 31 escapes to 32 + 6 more bits.
fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, AacError> {
    Ok(match r.bits(5)? as u8 {
        31 => 32 + r.bits(6)? as u8,
        t => t,
    })
}

fn frequency(r: &mut BitReader<'_>) -> Result<(u8, u32), AacError> {
    let index = r.bits(4)? as u8;
    let rate = match index {
        0xf => r.bits(24)?,
        i => *RATES
            .get(usize::from(i))
            .ok_or(AacError::BadFrequencyIndex(i))?,
    };
    if rate == 0 {
        return Err(AacError::ZeroSampleRate);
    }
    Ok((index, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(bytes: &[u8]) -> Result<AacConfig, AacError> {
        parse_audio_specific_config(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn lc_48k_stereo() {
        let c = cfg(&[0x11, 0x90]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
        assert_eq!(c.frame_length, 1024);
        assert_eq!(codec_string(&c), "mp4a.40.2");
        assert_eq!(&c.asc[..], &[0x11, 0x90]);
    }

    #[test]
    fn ffmpeg_sequence_headers() {
        // ffmpeg 5.1's native encoder appends a backward-compatible sync
        // extension (0x2b7, SBR absent) after the GASpecificConfig.
        let c = cfg(&[0x11, 0x90, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
        let c = cfg(&[0x12, 0x08, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 1));
    }

    #[test]
    fn he_aac_explicit() {
        // AOT 5, core 22050 Hz stereo, extension 44100 Hz, core AOT 2.
        let mut huge = vec![0x12, 0x10];
        huge.resize(MAX_ASC + 1, 0xEE);
        assert_eq!(
            parse_audio_specific_config(Bytes::from(huge)).unwrap_err(),
            AacError::TooLarge(MAX_ASC + 1)
        );
        let asc = [0x2b, 0x92, 0x08, 0x00];
        let c = cfg(&asc).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (5, 22050, 2));
        assert_eq!(codec_string(&c), "mp4a.40.5");
        let f = parse_asc_fields(&asc).unwrap();
        assert_eq!((f.core_object_type, f.output_sample_rate), (2, 44100));
        assert!(f.sbr && !f.ps);
        // ADTS carries the core: LC, 22050 Hz.
        let h = adts_header(&c, 100).unwrap();
        assert_eq!(h[2] >> 6, 1);
        assert_eq!((h[2] >> 2) & 0xf, 7);
    }

    #[test]
    fn he_aac_v2_explicit() {
        // AOT 29, core 24000 Hz mono, extension 48000 Hz, core AOT 2:
        // 11101 0110 0001 0011 00010 000 -> EB 09 88 00 (with padding)
        let asc = [0xeb, 0x09, 0x88, 0x00];
        let c = cfg(&asc).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (29, 24000, 2));
        assert_eq!(codec_string(&c), "mp4a.40.29");
        let f = parse_asc_fields(&asc).unwrap();
        assert_eq!((f.output_sample_rate, f.channel_config), (48000, 1));
        assert!(f.sbr && f.ps);
    }

    #[test]
    fn escape_and_explicit_rate() {
        // AOT 31 escape -> 32 + 0 = 32 (MPEG-1 Layer 1): not General Audio.
        assert_eq!(
            cfg(&[0xf8, 0x00, 0x00, 0x00]),
            Err(AacError::UnsupportedObjectType(32))
        );
        // AOT 2, explicit 24-bit rate 50000 (0x00c350), mono, GA 000.
        let asc = [0x17, 0x80, 0x61, 0xa8, 0x08];
        let c = cfg(&asc).unwrap();
        assert_eq!((c.sample_rate, c.channels), (50000, 1));
        assert_eq!(
            adts_header(&c, 1),
            Err(AacError::NotAdtsCompatible("a non-standard sampling rate"))
        );
        // Explicit 48000 maps back to index 3 in ADTS.
        let c = cfg(&[0x17, 0x80, 0x5d, 0xc0, 0x10]).unwrap();
        assert_eq!(c.sample_rate, 48000);
        assert_eq!((adts_header(&c, 1).unwrap()[2] >> 2) & 0xf, 3);
    }

    #[test]
    fn frame_length_flag_and_ld() {
        // AOT 2, 48k, stereo, frameLengthFlag 1.
        let c = cfg(&[0x11, 0x94]).unwrap();
        assert_eq!(c.frame_length, 960);
        assert!(adts_header(&c, 1).is_err());
        // AOT 23 (ER AAC LD), 48k, stereo: 10111 0011 0010 0 -> 480 with flag.
        let c = cfg(&[0xb9, 0x94]).unwrap();
        assert_eq!((c.object_type, c.frame_length), (23, 480));
    }

    #[test]
    fn channel_configurations() {
        // 5.1: AOT 2, 48k, config 6.
        assert_eq!(cfg(&[0x11, 0xb0]).unwrap().channels, 6);
        // 7.1: config 7.
        assert_eq!(cfg(&[0x11, 0xb8]).unwrap().channels, 8);
        // Reserved config 8.
        assert_eq!(cfg(&[0x11, 0xc0]), Err(AacError::BadChannelConfig(8)));
        // Config 0 with a PCE: one front CPE + one front SCE + one LFE = 4.
        // 00010 0011 0000 | GA 000 | tag 0000 ot 01 sf 0011 | front 0010
        // side 0000 back 0000 lfe 01 assoc 000 cc 0000 | mix 0 0 0 |
        // front: 1 0000, 0 0001 | lfe 0000
        let c = cfg(&[0x11, 0x80, 0x04, 0xc8, 0x01, 0x00, 0x20, 0x10]).unwrap();
        assert_eq!(c.channels, 4);
    }

    #[test]
    fn errors() {
        assert_eq!(cfg(&[]), Err(AacError::Truncated));
        assert_eq!(cfg(&[0x11]), Err(AacError::Truncated));
        // Frequency index 13 is reserved.
        assert_eq!(cfg(&[0x16, 0x90]), Err(AacError::BadFrequencyIndex(13)));
        // Explicit rate 0.
        assert_eq!(
            cfg(&[0x17, 0x80, 0x00, 0x00, 0x10]),
            Err(AacError::ZeroSampleRate)
        );
    }

    #[test]
    fn adts() {
        let c = cfg(&[0x11, 0x90]).unwrap();
        // Second frame of `ffmpeg -c:a aac -f adts`, 48 kHz stereo: 370 bytes.
        assert_eq!(
            adts_header(&c, 363).unwrap(),
            [0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x5f, 0xfc]
        );
        assert!(adts_header(&c, 8184).is_ok());
        assert_eq!(adts_header(&c, 8185), Err(AacError::FrameTooLong(8192)));
        assert!(adts_header(&c, usize::MAX).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), len in 0usize..10000) {
                if let Ok(c) = cfg(&data) {
                    prop_assert!(c.sample_rate > 0 && c.channels > 0);
                    let _ = codec_string(&c);
                    if let Ok(h) = adts_header(&c, len) {
                        prop_assert_eq!(&h[..2], &[0xff, 0xf1]);
                    }
                }
            }
        }
    }
}
