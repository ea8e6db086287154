//! CMAF (ISO/IEC 23000-19) fragmented MP4: the init segment (CMAF header)
//! and fragments (`moof` + `mdat`), as pure functions of bytes.
//!
//! One track per init segment and per fragment: CMAF tracks are never
//! multiplexed, and HLS and DASH both address audio and video separately.
//!
//! The leaf boxes come from `mp4-atom`. Containers are written here so their
//! children follow the order of ISO/IEC 14496-12 table 1 (and of ffmpeg):
//! `mp4-atom` writes required children before optional ones, which would
//! put `mvex` before `trak` and `vmhd` after `stbl`. The sample entries and
//! `stsd` are also ours so that each configuration box is the publisher's
//! record byte for byte (`avcC`, `hvcC`, `av1C`), not a re-encoding of it.
//!
//! Sample entries: `avc1`, `hvc1` or `hev1` (see [`hevc_entry`]), `av01`,
//! `vp09`, `mp4a`, `Opus`, `fLaC`, `ac-3`, `ec-3`. Video entries carry a
//! `colr` (`nclx`) when the configuration states the colour (AV1 sequence
//! header, VP9 `vpcC`). Opus tracks also get what Opus-in-ISOBMFF 4.3.6.2
//! and 4.4 require: a `roll` sample group (80 ms of pre-roll) and an edit
//! list that trims `pre_skip`.
//!
//! Fragments never copy samples: [`fragment`] returns the `moof` and the
//! `mdat` header in one small buffer, and the caller sends the sample
//! [`Bytes`] after it.

use bytes::{Bytes, BytesMut};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, BufMut as _, Colr, Dinf, Dref, Encode, Esds, FourCC, Ftyp, Hdlr, Mdhd, Mfhd, Mp4a, Mvex,
    Mvhd, Smhd, Stco, Stsc, Stsz, Stts, Tfdt, Tfhd, Tkhd, Trex, Trun, TrunEntry, TrunSamples, Url,
    Visual, Vmhd,
};

use crate::media::color_info::ColorInfo;
use crate::media::{av1, hevc, opus, vp9, AacConfig, AvcConfig, CodecConfig, MediaKind};

/// Video media timescale: the MPEG clock, so millisecond RTMP timestamps
/// convert exactly (`ms * 90`) and HLS/TS tools see familiar numbers.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// `sample_depends_on = 2` (an I picture, or audio): a sync sample.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Opus needs 80 ms of decoded audio after a random access before its
/// output is right (Opus-in-ISOBMFF 4.3.6.2): 3840 samples at 48 kHz.
pub const OPUS_PRE_ROLL: u32 = 3_840;
/// The `roll_distance` of the init segment's `roll` group: 80 ms of the
/// 20 ms packets nearly every encoder sends. Fragments of other packet
/// sizes describe their own (see [`fragment_for`]).
const OPUS_DEFAULT_ROLL: i16 = -4;

/// Why an init segment or fragment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CmafError {
    #[error("a fragment needs at least one sample")]
    NoSamples,
    #[error("track id 0 is reserved in ISO BMFF")]
    ZeroTrackId,
    #[error("{0} is not supported in CMAF")]
    Unsupported(&'static str),
    #[error("{what} of {value} exceeds what the box can hold")]
    TooLarge { what: &'static str, value: u64 },
    #[error("mp4 encoding failed: {0}")]
    Encode(#[from] mp4_atom::Error),
}

/// What a video track's first keyframe tells that its configuration
/// record does not. The segmenter learns it before the first segment (and
/// so before any manifest names the init segment) and rebuilds the init
/// segment with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// HEVC: the keyframe carries VPS, SPS or PPS NAL units in band.
    pub in_band_parameter_sets: bool,
    /// VP9: the keyframe's frame size (`vpcC` has none).
    pub size: Option<(u32, u32)>,
}

impl Observed {
    /// What keyframe `data` of a track configured with `config` shows.
    /// Bounded: a malformed frame shows nothing.
    pub fn keyframe(config: &CodecConfig, data: &[u8]) -> Observed {
        match config {
            CodecConfig::Hevc(c) => Observed {
                in_band_parameter_sets: has_parameter_sets(data, c.nal_length_size),
                size: None,
            },
            CodecConfig::Vp9(_) => Observed {
                in_band_parameter_sets: false,
                size: vp9::parse_keyframe_header(data)
                    .ok()
                    .map(|k| (k.width, k.height)),
            },
            _ => Observed::default(),
        }
    }
}

/// Whether length-prefixed HEVC NAL units hold a VPS, SPS or PPS. Stops
/// at the first length that runs past the data.
fn has_parameter_sets(mut data: &[u8], nal_length_size: u8) -> bool {
    let n = usize::from(nal_length_size);
    if !(1..=4).contains(&n) {
        return false;
    }
    while data.len() > n {
        let len = data[..n]
            .iter()
            .fold(0usize, |l, &b| l << 8 | usize::from(b));
        let Some(nal) = data.get(n..n + len) else {
            return false;
        };
        if let Some(&h) = nal.first() {
            if (hevc::NAL_VPS..=hevc::NAL_PPS).contains(&(h >> 1 & 0x3f)) {
                return true;
            }
        }
        data = &data[n + len..];
    }
    false
}

/// `hvc1` or `hev1` for an HEVC track. ISO/IEC 14496-15 8.4.1: with
/// `hvc1` every parameter set is in the sample entry, so its arrays of
/// VPS, SPS and PPS must be marked complete and the samples carry none;
/// `hev1` allows them in band. `hvc1` when the record holds a VPS, an SPS
/// and a PPS and the first keyframe carries none: the `hvcC` written then
/// has its arrays marked complete ([`hevc::HevcConfig::record_complete`]),
/// which FFmpeg's FLV muxer leaves clear. Apple players take only `hvc1`.
pub fn hevc_entry(config: &hevc::HevcConfig, seen: &Observed) -> &'static [u8; 4] {
    if config.has_parameter_sets() && !seen.in_band_parameter_sets {
        b"hvc1"
    } else {
        b"hev1"
    }
}

/// The RFC 6381 codecs parameter of the track [`init_segment_with`]
/// writes: for HEVC its prefix is the sample entry's name, as 14496-15
/// E.3 requires.
pub fn codec_string(config: &CodecConfig, seen: &Observed) -> String {
    match config {
        CodecConfig::Hevc(c) => {
            let entry = std::str::from_utf8(hevc_entry(c, seen)).unwrap_or("hev1");
            c.general.codec_string(entry)
        }
        c => c.codec_string(),
    }
}

/// `OBU_TEMPORAL_DELIMITER` (AV1 6.2.2).
const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// A frame's bytes as a sample of `config`'s track: for AV1, without the
/// temporal delimiter a temporal unit starts with (the binding: samples
/// SHOULD NOT carry one; ISOBMFF delimits temporal units itself), as a
/// slice of the frame, not a copy. Other codecs' frames are their samples.
pub fn sample_data(config: &CodecConfig, data: &Bytes) -> Bytes {
    if let CodecConfig::Av1(_) = config {
        if let Some(Ok(obu)) = av1::obus(data).next() {
            if obu.obu_type == OBU_TEMPORAL_DELIMITER {
                // The payload is a slice of `data`: what follows it is the rest.
                let start = (obu.payload.as_ptr() as usize).checked_sub(data.as_ptr() as usize);
                if let Some(end) = start.map(|s| s + obu.payload.len()) {
                    if end <= data.len() {
                        return data.slice(end..);
                    }
                }
            }
        }
    }
    data.clone()
}

/// The media timescale [`init_segment`] declares for `config`: samples
/// passed to [`fragment`] are timed in it.
pub fn timescale(config: &CodecConfig) -> u32 {
    match config {
        CodecConfig::Avc(_) => VIDEO_TIMESCALE,
        // The AAC core rate: 1024 (or 960) ticks per frame, exactly.
        CodecConfig::Aac(c) => c.sample_rate,
        // Other audio: its sample rate (Opus: always 48 kHz, the clock of
        // its TOC durations and pre_skip).
        c => match c.kind() {
            MediaKind::Video => VIDEO_TIMESCALE,
            MediaKind::Audio => c.audio_format().0,
        },
    }
}

/// A colour description (ISO/IEC 23091-2 code points) for `colr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colour {
    pub primaries: u8,
    pub transfer: u8,
    pub matrix: u8,
    pub full_range: bool,
}

/// Transfer characteristics of HDR video: SMPTE ST 2084 (PQ) and ARIB
/// STD-B67 (HLG).
pub const TRANSFER_PQ: u8 = 16;
pub const TRANSFER_HLG: u8 = 18;

/// The colour a video configuration states, for `colr`: for AV1 always
/// (the binding asks for an `nclx` `colr`, and requires one when
/// `configOBUs` has no sequence header): the sequence header's colour (2,
/// unspecified, where it has no description), else all unspecified; for
/// VP9 the `vpcC`'s when it is not all unspecified; for HEVC and VP9
/// otherwise the publisher's Enhanced RTMP `colorInfo` (the HEVC SPS VUI
/// is not parsed, and H.264's colour stays in the SPS as before).
pub fn colour(config: &CodecConfig) -> Option<Colour> {
    stated_colour(config).or_else(|| {
        let c = config.color_info()?.colour?;
        Some(Colour {
            primaries: c.primaries,
            transfer: c.transfer,
            matrix: c.matrix,
            // colorInfo has no range: video range, as HDR10 and HLG are.
            full_range: false,
        })
    })
}

/// The colour the codec configuration itself states.
fn stated_colour(config: &CodecConfig) -> Option<Colour> {
    match config {
        CodecConfig::Av1(c) => Some(match &c.sequence_header {
            Some(h) => Colour {
                primaries: h.color.color_primaries,
                transfer: h.color.transfer_characteristics,
                matrix: h.color.matrix_coefficients,
                full_range: h.color.full_range,
            },
            None => Colour {
                primaries: 2,
                transfer: 2,
                matrix: 2,
                full_range: false,
            },
        }),
        CodecConfig::Vp9(r) => {
            let c = &r.config;
            let colour = Colour {
                primaries: c.colour_primaries,
                transfer: c.transfer_characteristics,
                matrix: c.matrix_coefficients,
                full_range: c.full_range,
            };
            (
                colour.primaries,
                colour.transfer,
                colour.matrix,
                colour.full_range,
            )
                .ne(&(2, 2, 2, false))
                .then_some(colour)
        }
        _ => None,
    }
}

/// The Dolby `audio_channel_configuration` of an AC-3 or E-AC-3 track
/// (ETSI TS 102 366 I.1.2; what DASH-IF IOP puts in
/// `AudioChannelConfiguration`): bit 15 L, 14 C, 13 R, 12 Ls, 11 Rs, then
/// the pairs and channels an E-AC-3 dependent substream adds, bit 0 LFE.
pub fn dolby_channels(config: &CodecConfig) -> Option<u16> {
    let (acmod, lfe, chan_loc) = match config {
        CodecConfig::Ac3(h) => (h.acmod, h.lfeon, 0),
        CodecConfig::Eac3(c) => {
            let s = c.substreams.first()?;
            let loc = if s.num_dep_sub > 0 { s.chan_loc } else { 0 };
            (s.acmod, s.lfeon, loc)
        }
        _ => return None,
    };
    // By acmod: 1+1 (as L, R), C, L R, L C R, L R Cs, L C R Cs, L R Ls Rs,
    // L C R Ls Rs.
    const ACMOD: [u16; 8] = [
        0xa000, 0x4000, 0xa000, 0xe000, 0xa100, 0xe100, 0xb800, 0xf800,
    ];
    let mut bits = ACMOD[usize::from(acmod & 7)] | u16::from(lfe);
    // chan_loc (TS 102 366 F.6.2.15) bits 0..=7 (Lc/Rc .. Vhc) are bits
    // 10..=3 here; bit 8 (LFE2) is bit 1.
    for i in 0..8 {
        if chan_loc & 1 << i != 0 {
            bits |= 1 << (10 - i);
        }
    }
    if chan_loc & 1 << 8 != 0 {
        bits |= 1 << 1;
    }
    Some(bits)
}

/// The CMAF header for one track: `ftyp` + `moov` with empty sample tables
/// and an `mvex`, so that every sample lives in the fragments.
///
/// Brands: major `iso6` (signed composition offsets in `trun` v1, `tfdt`,
/// sample groups), compatible `iso6`, `cmfc` (the CMAF structural brand),
/// `mp41` (as ffmpeg's CMAF output, for sniffers that predate `iso6`),
/// plus the codec binding's brand where it defines one: `avc1` (H.264),
/// `av01` (AV1 binding 2.1), `Opus` (Opus-in-ISOBMFF 4.1). No media
/// profile brand (`cfhd`, `caac`): castgate forwards what the publisher
/// sends and cannot vouch for the profile's constraints.
pub fn init_segment(track_id: u32, config: &CodecConfig) -> Result<Bytes, CmafError> {
    init_segment_with(track_id, config, &Observed::default())
}

/// [`init_segment`] with what the first keyframe showed (see [`Observed`]).
pub fn init_segment_with(
    track_id: u32,
    config: &CodecConfig,
    seen: &Observed,
) -> Result<Bytes, CmafError> {
    if track_id == 0 {
        return Err(CmafError::ZeroTrackId);
    }
    if let CodecConfig::Mp3(_) = config {
        return Err(CmafError::Unsupported(config.codec().name()));
    }
    let is_video = config.kind() == MediaKind::Video;
    let timescale = timescale(config);
    if timescale == 0 {
        return Err(CmafError::Unsupported("a zero sample rate"));
    }
    let (width, height) = if is_video {
        dimensions(picture_size(config, seen))?
    } else {
        (0, 0)
    };

    let mut buf = BytesMut::with_capacity(1024);
    let mut brands = vec![
        FourCC::new(b"iso6"),
        FourCC::new(b"cmfc"),
        FourCC::new(b"mp41"),
    ];
    match config {
        CodecConfig::Avc(_) => brands.push(FourCC::new(b"avc1")),
        CodecConfig::Av1(_) => brands.push(FourCC::new(b"av01")),
        CodecConfig::Opus(_) => brands.push(FourCC::new(b"Opus")),
        _ => {}
    }
    Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: brands,
    }
    .encode(&mut buf)?;

    buf.encode_atom(b"moov", |buf| {
        Mvhd {
            timescale: 1000,
            rate: 1u16.into(),
            volume: 1u8.into(),
            next_track_id: track_id.saturating_add(1),
            ..Default::default()
        }
        .encode(buf)?;
        write_trak(buf, track_id, config, seen, timescale, (width, height))?;
        Mvex {
            mehd: None,
            trex: vec![Trex {
                track_id,
                default_sample_description_index: 1,
                default_sample_duration: 0,
                default_sample_size: 0,
                // Only used if a trun ever omits flags: ours never do.
                default_sample_flags: if is_video {
                    NON_SYNC_SAMPLE_FLAGS
                } else {
                    SYNC_SAMPLE_FLAGS
                },
            }],
        }
        .encode(buf)
    })?;
    Ok(buf.freeze())
}

/// Display size: the configuration's, or (VP9) the first keyframe's.
pub fn picture_size(config: &CodecConfig, seen: &Observed) -> (u32, u32) {
    match (config.picture_size(), seen.size) {
        ((0, 0), Some(size)) => size,
        (size, _) => size,
    }
}

fn write_trak(
    buf: &mut BytesMut,
    track_id: u32,
    config: &CodecConfig,
    seen: &Observed,
    timescale: u32,
    (width, height): (u16, u16),
) -> mp4_atom::Result<()> {
    let is_video = config.kind() == MediaKind::Video;
    let volume: u8 = if is_video { 0 } else { 1 };
    buf.encode_atom(b"trak", |buf| {
        Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            volume: volume.into(),
            width: width.into(),
            height: height.into(),
            ..Default::default()
        }
        .encode(buf)?;
        if let CodecConfig::Opus(o) = config {
            write_pre_skip_edit(buf, o.head.pre_skip)?;
        }
        buf.encode_atom(b"mdia", |buf| {
            Mdhd {
                timescale,
                language: "und".into(),
                ..Default::default()
            }
            .encode(buf)?;
            let (handler, name) = if is_video {
                (b"vide", "VideoHandler")
            } else {
                (b"soun", "SoundHandler")
            };
            Hdlr {
                handler: FourCC::new(handler),
                name: name.into(),
            }
            .encode(buf)?;
            buf.encode_atom(b"minf", |buf| {
                if is_video {
                    Vmhd::default().encode(buf)?;
                } else {
                    Smhd::default().encode(buf)?;
                }
                Dinf {
                    dref: Dref {
                        // Empty location: the media is in this file.
                        entries: vec![Url::default().into()],
                    },
                }
                .encode(buf)?;
                buf.encode_atom(b"stbl", |buf| {
                    write_stsd(buf, config, seen, width, height)?;
                    Stts::default().encode(buf)?;
                    Stsc::default().encode(buf)?;
                    Stsz::default().encode(buf)?;
                    Stco::default().encode(buf)?;
                    if let CodecConfig::Opus(_) = config {
                        // 4.3.6.2: a `roll` sgpd and sbgp in the sample table
                        // (no samples here: the fragments map theirs).
                        write_roll_sgpd(buf, OPUS_DEFAULT_ROLL)?;
                        write_sbgp(buf, 0, 0)?;
                    }
                    Ok(())
                })
            })
        })
    })
}

/// Opus-in-ISOBMFF 4.4: an edit that starts presentation `pre_skip`
/// samples into the media (the decoder's priming output), for the whole
/// live track (`segment_duration` 0: as long as the media). CMAF allows
/// this one edit in a header; media times are in the 48 kHz timescale.
fn write_pre_skip_edit(buf: &mut BytesMut, pre_skip: u16) -> mp4_atom::Result<()> {
    if pre_skip == 0 {
        return Ok(());
    }
    buf.encode_atom(b"edts", |buf| {
        buf.encode_atom(b"elst", |buf| {
            0u32.encode(buf)?; // version 0, flags
            1u32.encode(buf)?; // entry_count
            0u32.encode(buf)?; // segment_duration
            u32::from(pre_skip).encode(buf)?; // media_time
            1u16.encode(buf)?; // media_rate_integer
            0u16.encode(buf) // media_rate_fraction
        })
    })
}

/// `sgpd` version 1 of grouping type `roll` with one
/// `AudioRollRecoveryEntry` (14496-12 10.1): its `roll_distance`.
fn write_roll_sgpd(buf: &mut BytesMut, roll_distance: i16) -> mp4_atom::Result<()> {
    buf.encode_atom(b"sgpd", |buf| {
        0x0100_0000u32.encode(buf)?; // version 1, flags 0
        FourCC::new(b"roll").encode(buf)?;
        2u32.encode(buf)?; // default_length
        1u32.encode(buf)?; // entry_count
        roll_distance.encode(buf)
    })
}

/// `sbgp` of grouping type `roll`: `count` samples (none: no entry) in
/// group description `index`.
fn write_sbgp(buf: &mut BytesMut, count: u32, index: u32) -> mp4_atom::Result<()> {
    buf.encode_atom(b"sbgp", |buf| {
        0u32.encode(buf)?; // version 0, flags 0
        FourCC::new(b"roll").encode(buf)?;
        if count == 0 {
            return 0u32.encode(buf);
        }
        1u32.encode(buf)?;
        count.encode(buf)?;
        index.encode(buf)
    })
}

/// Display size for `tkhd` and the sample entry. 0×0 when it is not
/// known: decoders read the real size from the bitstream anyway.
fn dimensions((width, height): (u32, u32)) -> Result<(u16, u16), CmafError> {
    let fit = |what, v: u32| {
        u16::try_from(v).map_err(|_| CmafError::TooLarge {
            what,
            value: u64::from(v),
        })
    };
    Ok((fit("width", width)?, fit("height", height)?))
}

/// `stsd` with its single sample entry (a full box: version and flags 0).
fn write_stsd(
    buf: &mut BytesMut,
    config: &CodecConfig,
    seen: &Observed,
    width: u16,
    height: u16,
) -> mp4_atom::Result<()> {
    buf.encode_atom(b"stsd", |buf| {
        0u32.encode(buf)?; // version, flags
        1u32.encode(buf)?; // entry_count
        let colr = colour(config);
        let hdr = config.color_info();
        match config {
            CodecConfig::Avc(c) => write_avc1(buf, c, width, height),
            CodecConfig::Hevc(c) => {
                let entry = hevc_entry(c, seen);
                let record = match entry {
                    b"hvc1" => c.record_complete(),
                    _ => c.record.clone(),
                };
                let boxes: [(&[u8; 4], &[u8]); 1] = [(b"hvcC", &record)];
                write_visual(buf, entry, width, height, &boxes, colr, hdr)
            }
            CodecConfig::Av1(c) => {
                let boxes: [(&[u8; 4], &[u8]); 1] = [(b"av1C", &c.record)];
                write_visual(buf, b"av01", width, height, &boxes, colr, hdr)
            }
            CodecConfig::Vp9(r) => {
                let vpcc = r.config.to_vpcc();
                let boxes: [(&[u8; 4], &[u8]); 1] = [(b"vpcC", &vpcc)];
                write_visual(buf, b"vp09", width, height, &boxes, colr, hdr)
            }
            CodecConfig::Aac(c) => mp4a(c).encode(buf),
            CodecConfig::Opus(o) => {
                // 4.3.1: channelcount is the output channel count,
                // samplesize 16, samplerate 48000.
                let dops = o.head.to_dops();
                write_audio(
                    buf,
                    b"Opus",
                    o.head.channels,
                    16,
                    opus::SAMPLE_RATE,
                    b"dOps",
                    &dops,
                )
            }
            CodecConfig::Flac(f) => {
                let si = &f.config.stream_info;
                let dfla = f.config.to_dfla();
                write_audio(
                    buf,
                    b"fLaC",
                    si.channels,
                    si.bits_per_sample,
                    si.sample_rate,
                    b"dfLa",
                    &dfla,
                )
            }
            CodecConfig::Ac3(h) => {
                let dac3 = h.to_dac3();
                write_audio(
                    buf,
                    b"ac-3",
                    h.channels(),
                    16,
                    h.sample_rate,
                    b"dac3",
                    &dac3,
                )
            }
            CodecConfig::Eac3(c) => {
                let dec3 = c.to_dec3();
                write_audio(buf, b"ec-3", c.channels, 16, c.sample_rate, b"dec3", &dec3)
            }
            c => Err(mp4_atom::Error::Unsupported(c.codec().name())),
        }
    })
}

/// `avc1` with the publisher's `AVCDecoderConfigurationRecord` as `avcC`,
/// verbatim: it was validated on ingest, and re-encoding could drop what
/// we do not model (the High-profile extension, extra parameter sets).
fn write_avc1(buf: &mut BytesMut, c: &AvcConfig, width: u16, height: u16) -> mp4_atom::Result<()> {
    let boxes: [(&[u8; 4], &[u8]); 1] = [(b"avcC", &c.record)];
    write_visual(buf, b"avc1", width, height, &boxes, None, None)
}

/// A visual sample entry: its fields, the configuration boxes (bodies as
/// given), then `colr` when the colour is known, then the HDR boxes the
/// publisher's `colorInfo` gave: `clli` (content light level) and `mdcv`
/// (mastering display).
fn write_visual(
    buf: &mut BytesMut,
    entry: &[u8; 4],
    width: u16,
    height: u16,
    boxes: &[(&[u8; 4], &[u8])],
    colr: Option<Colour>,
    hdr: Option<&ColorInfo>,
) -> mp4_atom::Result<()> {
    buf.encode_atom(entry, |buf| {
        Visual {
            data_reference_index: 1,
            width,
            height,
            ..Default::default()
        }
        .encode(buf)?;
        for (kind, body) in boxes {
            buf.encode_atom(*kind, |buf| {
                buf.extend_from_slice(body);
                Ok(())
            })?;
        }
        if let Some(c) = colr {
            Colr::Nclx {
                colour_primaries: c.primaries.into(),
                transfer_characteristics: c.transfer.into(),
                matrix_coefficients: c.matrix.into(),
                full_range_flag: c.full_range,
            }
            .encode(buf)?;
        }
        let light_level = hdr.and_then(|h| h.light_level).map(|l| l.to_clli());
        let mastering = hdr.and_then(|h| h.mastering).map(|m| m.to_mdcv());
        for (kind, body) in [(b"clli", light_level), (b"mdcv", mastering)] {
            if let Some(body) = body {
                buf.encode_atom(kind, |buf| {
                    buf.extend_from_slice(&body);
                    Ok(())
                })?;
            }
        }
        Ok(())
    })
}

/// An audio sample entry with one configuration box (body as given).
/// Rates above 65535 are written as 0 like ffmpeg does: decoders take the
/// rate from the configuration box.
fn write_audio(
    buf: &mut BytesMut,
    entry: &[u8; 4],
    channels: u8,
    sample_size: u8,
    sample_rate: u32,
    kind: &[u8; 4],
    body: &[u8],
) -> mp4_atom::Result<()> {
    buf.encode_atom(entry, |buf| {
        Audio {
            data_reference_index: 1,
            channel_count: u16::from(channels),
            sample_size: u16::from(sample_size),
            sample_rate: u16::try_from(sample_rate).unwrap_or(0).into(),
        }
        .encode(buf)?;
        buf.encode_atom(kind, |buf| {
            buf.extend_from_slice(body);
            Ok(())
        })
    })
}

fn mp4a(c: &AacConfig) -> Mp4a {
    Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(c.channels),
            sample_size: 16,
            // 16.16 fixed point; rates above 65535 are written as 0 like
            // ffmpeg does: decoders take the rate from the ASC.
            sample_rate: u16::try_from(c.sample_rate).unwrap_or(0).into(),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                // 14496-14 3.1.2: ES_ID is 0 when stored in a file.
                es_id: 0,
                dec_config: DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 Audio
                    stream_type: 5,               // AudioStream
                    // Raw is written verbatim; the parsed fields are unused.
                    dec_specific: Some(DecoderSpecific {
                        raw: c.asc.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig {},
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    }
}

/// One access unit, timed in its track's timescale (see [`timescale`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode time of the next sample minus this one's.
    pub duration: u32,
    /// `pts - dts`; negative offsets are valid (`trun` version 1).
    pub cts_offset: i32,
    /// A sync sample: an IDR picture, or any audio frame.
    pub keyframe: bool,
    pub data: Bytes,
}

/// Samples of a fragment whose payload is at most this many bytes are
/// copied into its header buffer instead of chained: a low-latency audio
/// chunk holds one or two frames of a few hundred bytes, and a chained
/// frame costs a 32-byte handle in the segment's list and keeps its own
/// allocation alive as long as the segment (~100 bytes a frame beyond its
/// data, 60 KB a stream over the window), more than copying it costs.
pub const INLINE_MAX: usize = 2048;

/// A CMAF fragment (or chunk): the boxes, then the samples they describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// `moof` and the `mdat` box header; for a fragment of at most
    /// [`INLINE_MAX`] payload bytes, the samples too (then `payloads` is
    /// empty).
    pub header: Bytes,
    /// The `mdat` payload: sample data, in order, shared with the frames
    /// (not copied). Send after `header`.
    pub payloads: Vec<Bytes>,
}

impl Fragment {
    /// Bytes on the wire: header plus payloads.
    pub fn len(&self) -> usize {
        self.header.len() + self.payloads.iter().map(Bytes::len).sum::<usize>()
    }

    /// Never true for a fragment [`fragment`] built; here for the `len` idiom.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fragment in one buffer: copies every sample, so for tests and
    /// small users only.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.extend_from_slice(&self.header);
        for p in &self.payloads {
            out.extend_from_slice(p);
        }
        out.freeze()
    }
}

/// Builds one fragment: `moof` (`mfhd`, `traf` with `tfhd`
/// default-base-is-moof, `tfdt` version 1 and one `trun`) and the `mdat`
/// header. Every sample gets its duration, size and flags in the `trun`, so
/// no defaults need agreeing on; composition offsets are written when any
/// is non-zero.
///
/// `base_decode_time` is the first sample's decode time in the track
/// timescale; `sequence_number` should increase by one per fragment.
pub fn fragment(
    track_id: u32,
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Result<Fragment, CmafError> {
    build_fragment(track_id, sequence_number, base_decode_time, samples, None)
}

/// [`fragment`] for a track of `config`, with what its codec needs in
/// every fragment: for Opus, the `roll` sample group (4.3.6.2), whose
/// distance is as many packets as 80 ms takes at the fragment's shortest
/// packet (the init segment's group, 4 packets of 20 ms, when it fits;
/// else one described in the fragment).
pub fn fragment_for(
    config: &CodecConfig,
    track_id: u32,
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Result<Fragment, CmafError> {
    let roll = match config {
        CodecConfig::Opus(_) => samples
            .iter()
            .map(|s| s.duration)
            .min()
            .filter(|&d| d > 0)
            .map(|d| -(OPUS_PRE_ROLL.div_ceil(d).min(i16::MAX as u32) as i16)),
        _ => None,
    };
    build_fragment(track_id, sequence_number, base_decode_time, samples, roll)
}

fn build_fragment(
    track_id: u32,
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
    roll: Option<i16>,
) -> Result<Fragment, CmafError> {
    if samples.is_empty() {
        return Err(CmafError::NoSamples);
    }
    if track_id == 0 {
        return Err(CmafError::ZeroTrackId);
    }
    let with_cts = samples.iter().any(|s| s.cts_offset != 0);
    let mut mdat_len = 0u64;
    let mut entries = Vec::with_capacity(samples.len());
    for s in samples {
        let size = sample_size(s.data.len())?;
        mdat_len += u64::from(size);
        entries.push(TrunEntry {
            duration: Some(s.duration),
            size: Some(size),
            flags: Some(if s.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            }),
            cts: with_cts.then_some(i64::from(s.cts_offset)),
        });
    }
    let trun = Trun {
        data_offset: Some(0), // patched below, once the moof size is known
        samples: TrunSamples::Explicit(entries),
    };

    let inline = mdat_len <= INLINE_MAX as u64;
    // moof 8 + mfhd 16 + traf 8 + tfhd 16 + tfdt 20 + trun 20 + 16/sample.
    let room = if inline { mdat_len as usize } else { 0 };
    let mut buf = BytesMut::with_capacity(104 + 16 * samples.len() + room);
    let mut trun_at = 0;
    buf.encode_atom(b"moof", |buf| {
        Mfhd { sequence_number }.encode(buf)?;
        buf.encode_atom(b"traf", |buf| {
            Tfhd {
                track_id,
                default_base_is_moof: true,
                ..Default::default()
            }
            .encode(buf)?;
            Tfdt {
                base_media_decode_time: base_decode_time,
            }
            .encode(buf)?;
            trun_at = buf.len();
            trun.encode(buf)?;
            let count = samples.len() as u32;
            match roll {
                None => Ok(()),
                Some(OPUS_DEFAULT_ROLL) => write_sbgp(buf, count, 1),
                Some(distance) => {
                    // 14496-12 8.9.4: 0x10001 is the traf's first sgpd entry.
                    write_roll_sgpd(buf, distance)?;
                    write_sbgp(buf, count, 0x1_0001)
                }
            }
        })
    })?;

    let mdat = mdat_header(mdat_len);
    let data_offset = buf.len() + mdat.len();
    let data_offset = i32::try_from(data_offset).map_err(|_| CmafError::TooLarge {
        what: "moof",
        value: data_offset as u64,
    })?;
    // trun: size, type, version+flags, sample_count, then data_offset.
    let at = trun_at + 16;
    buf[at..at + 4].copy_from_slice(&data_offset.to_be_bytes());
    buf.extend_from_slice(&mdat);
    let payloads = if inline {
        for s in samples {
            buf.extend_from_slice(&s.data);
        }
        Vec::new()
    } else {
        samples.iter().map(|s| s.data.clone()).collect()
    };
    Ok(Fragment {
        header: buf.freeze(),
        payloads,
    })
}

/// A `trun` sample size is 32 bits.
fn sample_size(len: usize) -> Result<u32, CmafError> {
    u32::try_from(len).map_err(|_| CmafError::TooLarge {
        what: "sample",
        value: len as u64,
    })
}

/// The `mdat` header for `payload_len` bytes: 8 bytes, or 16 with a 64-bit
/// `largesize` once the box would exceed 4 GiB.
fn mdat_header(payload_len: u64) -> MdatHeader {
    let mut h = MdatHeader {
        bytes: [0; 16],
        len: 8,
    };
    h.bytes[4..8].copy_from_slice(b"mdat");
    match u32::try_from(payload_len + 8) {
        Ok(size) => h.bytes[..4].copy_from_slice(&size.to_be_bytes()),
        Err(_) => {
            h.bytes[..4].copy_from_slice(&1u32.to_be_bytes());
            h.bytes[8..].copy_from_slice(&(payload_len + 16).to_be_bytes());
            h.len = 16;
        }
    }
    h
}

struct MdatHeader {
    bytes: [u8; 16],
    len: usize,
}

impl std::ops::Deref for MdatHeader {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{avc, flv, Frame};
    use mp4_atom::{Codec, Decode, Moof, Moov};
    use proptest::prelude::*;
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    fn avc_config() -> AvcConfig {
        let record = Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
        ]);
        AvcConfig {
            sps: vec![record.slice(8..12)],
            pps: vec![record.slice(15..17)],
            record,
            profile_idc: 0x64,
            constraint_flags: 0,
            level_idc: 0x1f,
            nal_length_size: 4,
            width: 640,
            height: 360,
        }
    }

    fn aac_config() -> AacConfig {
        AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]), // AAC-LC, 48 kHz, stereo
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
            frame_length: 1024,
        }
    }

    /// The direct children of a box body, by type (32-bit sizes only).
    fn children(mut b: &[u8]) -> Vec<(String, &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&b[4..8]).into_owned(), &b[8..size]));
            b = &b[size..];
        }
        out
    }

    fn child<'a>(b: &'a [u8], kind: &str) -> &'a [u8] {
        children(b)
            .into_iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .1
    }

    fn names(b: &[u8]) -> Vec<String> {
        children(b).into_iter().map(|(k, _)| k).collect()
    }

    fn split_init(init: &Bytes) -> (mp4_atom::Ftyp, Moov) {
        let mut b = &init[..];
        let ftyp = mp4_atom::Ftyp::decode(&mut b).unwrap();
        let moov = Moov::decode(&mut b).unwrap();
        assert!(b.is_empty());
        (ftyp, moov)
    }

    #[test]
    fn video_init_segment_parses_back() {
        let config = avc_config();
        let init = init_segment(1, &CodecConfig::Avc(config.clone())).unwrap();
        let (ftyp, moov) = split_init(&init);
        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        for brand in [b"iso6", b"cmfc", b"avc1"] {
            assert!(ftyp.compatible_brands.contains(&FourCC::new(brand)));
        }
        assert_eq!(moov.mvhd.next_track_id, 2);
        let trak = &moov.trak[0];
        assert_eq!(trak.tkhd.track_id, 1);
        assert_eq!(
            (trak.tkhd.width.integer(), trak.tkhd.height.integer()),
            (640, 360)
        );
        assert_eq!(trak.mdia.mdhd.timescale, VIDEO_TIMESCALE);
        assert_eq!(trak.mdia.mdhd.language, "und");
        assert_eq!(trak.mdia.hdlr.handler, FourCC::new(b"vide"));
        assert!(trak.mdia.minf.vmhd.is_some());
        let stbl = &trak.mdia.minf.stbl;
        assert!(stbl.stts.entries.is_empty() && stbl.stsc.entries.is_empty());
        assert_eq!(stbl.stco.as_ref().map(|s| s.entries.len()), Some(0));
        let [Codec::Avc1(avc1)] = &stbl.stsd.codecs[..] else {
            panic!("{:?}", stbl.stsd.codecs)
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
        assert_eq!(avc1.visual.data_reference_index, 1);
        let mut avcc = Vec::new();
        avc1.avcc.encode(&mut avcc).unwrap();
        assert_eq!(avcc[8..], config.record[..], "avcC is the record verbatim");
        let trex = &moov.mvex.as_ref().unwrap().trex[0];
        assert_eq!(trex.track_id, 1);
        assert_eq!(trex.default_sample_description_index, 1);
        assert_eq!(trex.default_sample_flags, NON_SYNC_SAMPLE_FLAGS);

        // Box order as in ISO/IEC 14496-12 table 1.
        let top = children(&init);
        assert_eq!(names(&init), ["ftyp", "moov"]);
        let moov = top[1].1;
        assert_eq!(names(moov), ["mvhd", "trak", "mvex"]);
        let mdia = child(child(moov, "trak"), "mdia");
        assert_eq!(names(child(moov, "trak")), ["tkhd", "mdia"]);
        assert_eq!(names(mdia), ["mdhd", "hdlr", "minf"]);
        assert_eq!(names(child(mdia, "minf")), ["vmhd", "dinf", "stbl"]);
        assert_eq!(
            names(child(child(mdia, "minf"), "stbl")),
            ["stsd", "stts", "stsc", "stsz", "stco"]
        );
    }

    #[test]
    fn audio_init_segment_parses_back() {
        let config = aac_config();
        let init = init_segment(2, &CodecConfig::Aac(config.clone())).unwrap();
        let (ftyp, moov) = split_init(&init);
        assert!(!ftyp.compatible_brands.contains(&FourCC::new(b"avc1")));
        let trak = &moov.trak[0];
        assert_eq!(trak.tkhd.track_id, 2);
        assert_eq!(trak.tkhd.volume.integer(), 1);
        assert_eq!(trak.mdia.mdhd.timescale, 48_000);
        assert_eq!(trak.mdia.hdlr.handler, FourCC::new(b"soun"));
        assert!(trak.mdia.minf.smhd.is_some() && trak.mdia.minf.vmhd.is_none());
        let [Codec::Mp4a(mp4a)] = &trak.mdia.minf.stbl.stsd.codecs[..] else {
            panic!()
        };
        assert_eq!(mp4a.audio.channel_count, 2);
        assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
        let dec = &mp4a.esds.es_desc.dec_config;
        assert_eq!((dec.object_type_indication, dec.stream_type), (0x40, 5));
        assert_eq!(dec.dec_specific.as_ref().unwrap().raw, config.asc[..]);
        let trex = &moov.mvex.as_ref().unwrap().trex[0];
        assert_eq!(trex.default_sample_flags, SYNC_SAMPLE_FLAGS);
        let mdia = child(child(child(&init, "moov"), "trak"), "mdia");
        assert_eq!(names(child(mdia, "minf")), ["smhd", "dinf", "stbl"]);
    }

    #[test]
    fn high_sample_rate_is_written_as_zero() {
        let config = AacConfig {
            sample_rate: 96_000,
            ..aac_config()
        };
        let init = init_segment(1, &CodecConfig::Aac(config)).unwrap();
        let (_, moov) = split_init(&init);
        assert_eq!(moov.trak[0].mdia.mdhd.timescale, 96_000);
        let Codec::Mp4a(mp4a) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!()
        };
        assert_eq!(mp4a.audio.sample_rate.integer(), 0);
    }

    #[test]
    fn unsupported_inputs_are_errors() {
        let mp3 = CodecConfig::Mp3(crate::media::Mp3Config {
            sample_rate: 44_100,
            channels: 2,
            flv_flags: 0x2f,
        });
        assert!(matches!(
            init_segment(1, &mp3),
            Err(CmafError::Unsupported("MP3"))
        ));
        let aac = CodecConfig::Aac(aac_config());
        assert!(matches!(init_segment(0, &aac), Err(CmafError::ZeroTrackId)));
        let huge = AvcConfig {
            width: 70_000,
            ..avc_config()
        };
        assert!(matches!(
            init_segment(1, &CodecConfig::Avc(huge)),
            Err(CmafError::TooLarge { what: "width", .. })
        ));
        assert!(matches!(fragment(1, 1, 0, &[]), Err(CmafError::NoSamples)));
        let s = Sample {
            duration: 1,
            cts_offset: 0,
            keyframe: true,
            data: Bytes::from_static(b"x"),
        };
        assert!(matches!(
            fragment(0, 1, 0, &[s]),
            Err(CmafError::ZeroTrackId)
        ));
    }

    fn opus_config(pre_skip: u16) -> CodecConfig {
        CodecConfig::Opus(crate::media::OpusRecord {
            record: Bytes::new(),
            head: crate::media::opus::OpusHead {
                version: 1,
                channels: 2,
                pre_skip,
                input_sample_rate: 48_000,
                output_gain: 0,
                mapping_family: 0,
                mapping: None,
            },
        })
    }

    fn opus_packets(samples: u32, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|_| Sample {
                duration: samples,
                cts_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"\xfc\xff"),
            })
            .collect()
    }

    #[test]
    fn opus_roll_groups_follow_the_packet_size() {
        let config = opus_config(312);
        // 20 ms packets: the init segment's group (index 1), no sgpd here.
        let f = fragment_for(&config, 2, 1, 0, &opus_packets(960, 3)).unwrap();
        let traf = &Moof::decode(&mut &f.header[..]).unwrap().traf[0];
        assert!(traf.sgpd.is_empty());
        let e = &traf.sbgp[0].entries[0];
        assert_eq!((e.sample_count, e.group_description_index), (3, 1));
        // 10 ms packets: 8 of them make 80 ms, described in the fragment.
        let f = fragment_for(&config, 2, 1, 0, &opus_packets(480, 5)).unwrap();
        let traf = &Moof::decode(&mut &f.header[..]).unwrap().traf[0];
        let e = &traf.sbgp[0].entries[0];
        assert_eq!((e.sample_count, e.group_description_index), (5, 0x1_0001));
        assert_eq!(
            traf.sgpd[0].entries[0].entry,
            mp4_atom::AnySampleGroupEntry::UnknownGroupingType(
                FourCC::new(b"roll"),
                (-8i16).to_be_bytes().to_vec()
            )
        );
        // The data offset still points at the samples, past the groups.
        let all = f.to_bytes();
        let off = traf.trun[0].data_offset.unwrap() as usize;
        assert_eq!(&all[off..off + 2], b"\xfc\xff");
        // Other codecs: no groups.
        let aac = CodecConfig::Aac(aac_config());
        let f = fragment_for(&aac, 2, 1, 0, &opus_packets(1024, 2)).unwrap();
        let traf = &Moof::decode(&mut &f.header[..]).unwrap().traf[0];
        assert!(traf.sbgp.is_empty() && traf.sgpd.is_empty());
    }

    #[test]
    fn opus_without_pre_skip_has_no_edit() {
        let (_, moov) = split_init(&init_segment(2, &opus_config(0)).unwrap());
        assert!(moov.trak[0].edts.is_none());
        let (_, moov) = split_init(&init_segment(2, &opus_config(312)).unwrap());
        assert!(moov.trak[0].edts.is_some());
        let init = init_segment(2, &opus_config(312)).unwrap();
        let trak = child(child(&init, "moov"), "trak");
        assert_eq!(names(trak), ["tkhd", "edts", "mdia"]);
        let stbl = child(child(child(trak, "mdia"), "minf"), "stbl");
        assert_eq!(
            names(stbl),
            ["stsd", "stts", "stsc", "stsz", "stco", "sgpd", "sbgp"]
        );
    }

    #[test]
    fn vp9_colour_and_hdr() {
        let vp9 = |transfer, full_range| {
            CodecConfig::Vp9(crate::media::Vp9Record {
                record: Bytes::new(),
                color_info: None,
                config: crate::media::vp9::Vp9Config {
                    profile: 2,
                    level: 31,
                    bit_depth: 10,
                    chroma_subsampling: 1,
                    full_range,
                    colour_primaries: if transfer == 2 { 2 } else { 9 },
                    transfer_characteristics: transfer,
                    matrix_coefficients: if transfer == 2 { 2 } else { 9 },
                },
            })
        };
        let pq = vp9(TRANSFER_PQ, false);
        assert_eq!(
            colour(&pq),
            Some(Colour {
                primaries: 9,
                transfer: 16,
                matrix: 9,
                full_range: false
            })
        );
        let (_, moov) = split_init(&init_segment(1, &pq).unwrap());
        let [Codec::Vp09(vp09)] = &moov.trak[0].mdia.minf.stbl.stsd.codecs[..] else {
            panic!()
        };
        assert!(matches!(
            vp09.colr,
            Some(mp4_atom::Colr::Nclx {
                transfer_characteristics: 16,
                ..
            })
        ));
        // Unspecified colour: no `colr`; full range alone is worth one.
        assert_eq!(colour(&vp9(2, false)), None);
        assert!(colour(&vp9(2, true)).is_some_and(|c| c.full_range));
        // No size in vpcC: 0x0 until a keyframe gives it.
        let seen = Observed {
            in_band_parameter_sets: false,
            size: Some((1920, 1080)),
        };
        let (_, moov) = split_init(&init_segment_with(1, &pq, &seen).unwrap());
        let tkhd = &moov.trak[0].tkhd;
        assert_eq!((tkhd.width.integer(), tkhd.height.integer()), (1920, 1080));
    }

    #[test]
    fn dolby_channel_configurations() {
        let ac3 = |acmod, lfeon| {
            CodecConfig::Ac3(crate::media::ac3::Ac3Header {
                fscod: 0,
                frmsizecod: 16,
                bsid: 8,
                bsmod: 0,
                acmod,
                lfeon,
                sample_rate: 48_000,
                frame_size: 768,
                bit_rate: 192_000,
            })
        };
        assert_eq!(dolby_channels(&ac3(7, true)), Some(0xf801)); // 5.1
        assert_eq!(dolby_channels(&ac3(2, false)), Some(0xa000)); // stereo
        assert_eq!(dolby_channels(&ac3(1, false)), Some(0x4000)); // mono
        assert_eq!(dolby_channels(&ac3(6, false)), Some(0xb800)); // 2/2
                                                                  // 7.1: 5.1 plus a dependent substream with the Lrs/Rrs pair.
        let sub = crate::media::ac3::Eac3Substream {
            fscod: 0,
            bsid: 16,
            bsmod: 0,
            acmod: 7,
            lfeon: true,
            num_dep_sub: 1,
            chan_loc: 1 << 1,
        };
        let eac3 = CodecConfig::Eac3(crate::media::ac3::Eac3Config {
            data_rate: 384,
            substreams: vec![sub],
            sample_rate: 48_000,
            channels: 8,
            samples: 1536,
        });
        assert_eq!(dolby_channels(&eac3), Some(0xfa01));
        assert_eq!(dolby_channels(&CodecConfig::Aac(aac_config())), None);
    }

    #[test]
    fn size_limits() {
        assert_eq!(sample_size(u32::MAX as usize).unwrap(), u32::MAX);
        assert!(matches!(
            sample_size(u32::MAX as usize + 1),
            Err(CmafError::TooLarge { what: "sample", .. })
        ));
        assert_eq!(&*mdat_header(0), b"\0\0\0\x08mdat");
        let max = u64::from(u32::MAX) - 8;
        assert_eq!(&*mdat_header(max), b"\xff\xff\xff\xffmdat");
        let h = mdat_header(max + 1);
        assert_eq!(h.len(), 16);
        assert_eq!(&h[..8], b"\0\0\0\x01mdat");
        assert_eq!(u64::from_be_bytes(h[8..].try_into().unwrap()), max + 17);
    }

    #[test]
    fn fragment_layout_and_zero_copy() {
        let samples: Vec<Sample> = (0..3u8)
            .map(|i| Sample {
                duration: 3000,
                cts_offset: 0,
                keyframe: i == 0,
                data: Bytes::from(vec![i + 1; INLINE_MAX / 2 + usize::from(i)]),
            })
            .collect();
        let f = fragment(7, 3, 90_000, &samples).unwrap();
        assert_eq!(f.payloads.len(), samples.len());
        for (p, s) in f.payloads.iter().zip(&samples) {
            assert_eq!(p.as_ptr(), s.data.as_ptr(), "payloads are not copied");
        }
        let all = f.to_bytes();
        assert_eq!(all.len(), f.len());
        assert_eq!(names(&all), ["moof", "mdat"]);
        let moof = child(&all, "moof");
        assert_eq!(names(moof), ["mfhd", "traf"]);
        assert_eq!(names(child(moof, "traf")), ["tfhd", "tfdt", "trun"]);
        let decoded = Moof::decode(&mut &f.header[..]).unwrap();
        let trun = &decoded.traf[0].trun[0];
        let off = trun.data_offset.unwrap() as usize;
        assert_eq!(off, f.header.len());
        let first = INLINE_MAX / 2;
        assert!(all[off..off + first].iter().all(|&b| b == 1));
        assert_eq!(all.len() - off, 3 * first + 1 + 2);
        // No composition offsets when all are 0.
        assert!(trun.samples.iter().all(|e| e.cts.is_none()));
    }

    #[test]
    fn a_small_fragment_carries_its_samples_in_one_buffer() {
        let samples: Vec<Sample> = (0..2u8)
            .map(|i| Sample {
                duration: 1024,
                cts_offset: 0,
                keyframe: true,
                data: Bytes::from(vec![i + 1; 300]),
            })
            .collect();
        let f = fragment(2, 1, 0, &samples).unwrap();
        assert!(f.payloads.is_empty(), "samples chained");
        assert_eq!(f.len(), f.header.len());
        let all = f.to_bytes();
        assert_eq!(names(&all), ["moof", "mdat"]);
        let decoded = Moof::decode(&mut &all[..]).unwrap();
        let off = decoded.traf[0].trun[0].data_offset.unwrap() as usize;
        assert_eq!(all.len() - off, 600);
        assert!(all[off..off + 300].iter().all(|&b| b == 1));
        assert!(all[off + 300..].iter().all(|&b| b == 2));
        // One byte more than INLINE_MAX: chained.
        let big = [Sample {
            data: Bytes::from(vec![0; INLINE_MAX + 1]),
            ..samples[0].clone()
        }];
        assert_eq!(fragment(2, 1, 0, &big).unwrap().payloads.len(), 1);
    }

    fn arb_sample() -> impl Strategy<Value = Sample> {
        (any::<u32>(), any::<i32>(), any::<bool>(), 0usize..160).prop_map(
            |(duration, cts_offset, keyframe, len)| Sample {
                duration,
                cts_offset,
                keyframe,
                data: Bytes::from(vec![0; len]),
            },
        )
    }

    proptest! {
        #[test]
        fn trun_round_trips(
            track_id in 1u32..,
            sequence_number in any::<u32>(),
            base in any::<u64>(),
            mut samples in prop::collection::vec(arb_sample(), 1..40),
        ) {
            for (i, s) in samples.iter_mut().enumerate() {
                s.data = Bytes::from(vec![i as u8; s.data.len()]);
            }
            let f = fragment(track_id, sequence_number, base, &samples).unwrap();
            let mut b = &f.header[..];
            let moof = Moof::decode(&mut b).unwrap();
            let total: usize = samples.iter().map(|s| s.data.len()).sum();
            // Left: the mdat header, and the samples of a small fragment.
            let inline = total <= INLINE_MAX;
            prop_assert_eq!(f.payloads.is_empty(), inline);
            prop_assert_eq!(b.len(), 8 + if inline { total } else { 0 });
            let data_offset = f.header.len() - b.len() + 8;
            prop_assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()) as usize, total + 8);
            prop_assert_eq!(moof.mfhd.sequence_number, sequence_number);
            let traf = &moof.traf[0];
            prop_assert_eq!(traf.tfhd.track_id, track_id);
            prop_assert!(traf.tfhd.default_base_is_moof);
            prop_assert_eq!(traf.tfhd.base_data_offset, None);
            prop_assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, base);
            let trun = &traf.trun[0];
            prop_assert_eq!(trun.data_offset, Some(data_offset as i32));
            prop_assert_eq!(trun.samples.len(), samples.len());
            for (e, s) in trun.samples.iter().zip(&samples) {
                prop_assert_eq!(e.duration, Some(s.duration));
                prop_assert_eq!(e.size, Some(s.data.len() as u32));
                // 14496-12 8.8.3.1: sample_depends_on 2 (sync) or 1 with
                // sample_is_non_sync_sample set. ffmpeg reads either bit as
                // "not a keyframe", so only this test pins the exact bits.
                let flags = if s.keyframe { 0x0200_0000 } else { 0x0101_0000 };
                prop_assert_eq!(e.flags, Some(flags));
                prop_assert_eq!(e.cts.unwrap_or(0), i64::from(s.cts_offset));
            }
            prop_assert_eq!(f.len(), data_offset + total);
            let all = f.to_bytes();
            let mut at = data_offset;
            for s in &samples {
                prop_assert_eq!(&all[at..at + s.data.len()], &s.data[..]);
                at += s.data.len();
            }
        }

        #[test]
        fn init_segment_never_panics(width in any::<u32>(), height in any::<u32>(),
                                     rate in any::<u32>(), channels in any::<u8>(),
                                     record in prop::collection::vec(any::<u8>(), 0..64)) {
            let v = AvcConfig { width, height, record: record.clone().into(), ..avc_config() };
            let _ = init_segment(1, &CodecConfig::Avc(v));
            let a = AacConfig { sample_rate: rate, channels, asc: record.into(), ..aac_config() };
            let _ = init_segment(u32::MAX, &CodecConfig::Aac(a));
        }
    }

    // ---- ffmpeg as the oracle ----

    /// One packet as ffprobe shows it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Packet {
        pts: i64,
        dts: i64,
        size: usize,
        key: bool,
    }

    struct Fixture {
        video_config: AvcConfig,
        audio_config: AacConfig,
        video: Vec<Frame>,
        audio: Vec<Frame>,
        /// `#extradata` line and (size, md5) per packet from framemd5.
        video_md5: (String, Vec<(String, String)>),
        audio_md5: (String, Vec<(String, String)>),
        /// (size, md5) per decoded frame.
        video_decoded: Vec<(String, String)>,
        audio_decoded: Vec<(String, String)>,
        video_packets: Vec<Packet>,
        audio_packets: Vec<Packet>,
    }

    fn run(program: &str, args: &[&str]) -> (String, String) {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (is ffmpeg installed?): {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{program} {args:?} failed: {stderr}");
        (stdout, stderr)
    }

    fn framemd5(path: &Path, map: &str) -> (String, Vec<(String, String)>) {
        let p = path.to_str().unwrap();
        let (out, err) = run(
            "ffmpeg",
            &[
                "-nostdin", "-v", "error", "-copyts", "-i", p, "-map", map, "-c", "copy", "-f",
                "framemd5", "-",
            ],
        );
        assert_eq!(err, "");
        let mut extradata = String::new();
        let mut packets = Vec::new();
        for line in out.lines() {
            if line.starts_with("#extradata") {
                extradata = line.split_whitespace().collect::<Vec<_>>().join(" ");
            } else if !line.starts_with('#') {
                let f: Vec<&str> = line.split(',').map(str::trim).collect();
                packets.push((f[4].to_owned(), f[5].to_owned()));
            }
        }
        (extradata, packets)
    }

    /// (size, md5) of every decoded frame: the picture or PCM itself.
    fn decoded_md5(path: &Path, map: &str) -> Vec<(String, String)> {
        let p = path.to_str().unwrap();
        let args = [
            "-nostdin",
            "-v",
            "error",
            "-i",
            p,
            "-map",
            map,
            "-fps_mode",
            "passthrough",
            "-f",
            "framemd5",
            "-",
        ];
        let (out, err) = run("ffmpeg", &args);
        assert_eq!(err, "");
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split(',').map(str::trim).collect();
                (f[4].to_owned(), f[5].to_owned())
            })
            .collect()
    }

    fn ffprobe_packets(path: &Path, stream: &str) -> Vec<Packet> {
        let (out, err) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_entries",
                "packet=pts,dts,size,flags",
                "-of",
                "compact=p=0",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(err, "");
        out.lines()
            .map(|line| {
                let get = |key: &str| {
                    line.split('|')
                        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                        .unwrap_or_else(|| panic!("no {key} in {line}"))
                };
                Packet {
                    pts: get("pts").parse().unwrap(),
                    dts: get("dts").parse().unwrap(),
                    size: get("size").parse().unwrap(),
                    key: get("flags").starts_with('K'),
                }
            })
            .collect()
    }

    fn ffprobe_stream(path: &Path) -> String {
        run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,profile,width,height,sample_rate,channels",
                "-of",
                "compact=p=0",
                path.to_str().unwrap(),
            ],
        )
        .0
    }

    /// Every tag of an FLV file through `media::flv`, as castgate would see
    /// them arrive over RTMP.
    fn read_flv(data: Bytes) -> (AvcConfig, AacConfig, Vec<Frame>, Vec<Frame>) {
        let (mut vc, mut ac, mut video, mut audio) = (None, None, Vec::new(), Vec::new());
        for tag in crate::media::flv_file::read_tags(&data).unwrap() {
            let ts = i64::from(tag.timestamp);
            match tag.tag_type {
                9 => match flv::parse_video(ts, tag.body).unwrap() {
                    flv::VideoTag::Config(CodecConfig::Avc(c)) => vc = Some(c),
                    flv::VideoTag::Frame(f) => video.push(f),
                    flv::VideoTag::EndOfSequence => {}
                    other => panic!("{other:?}"),
                },
                8 => match flv::parse_audio(ts, tag.body).unwrap() {
                    flv::AudioTag::Config(CodecConfig::Aac(c)) => ac = Some(c),
                    flv::AudioTag::Frame(f) => audio.push(f),
                    other => panic!("{other:?}"),
                },
                _ => {}
            }
        }
        (vc.unwrap(), ac.unwrap(), video, audio)
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let flv_path = dir.path().join("x.flv");
            run(
                "ffmpeg",
                &[
                    "-nostdin",
                    "-v",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=640x360:rate=30",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=1000:sample_rate=48000",
                    "-map",
                    "0:v",
                    "-map",
                    "1:a",
                    "-t",
                    "4",
                    "-c:v",
                    "libx264",
                    "-threads",
                    "1",
                    "-preset",
                    "veryfast",
                    "-profile:v",
                    "high",
                    "-bf",
                    "2",
                    "-g",
                    "30",
                    "-c:a",
                    "aac",
                    "-b:a",
                    "64k",
                    "-ar",
                    "48000",
                    "-ac",
                    "2",
                    "-f",
                    "flv",
                    flv_path.to_str().unwrap(),
                ],
            );
            let data = Bytes::from(std::fs::read(&flv_path).unwrap());
            let (video_config, audio_config, video, audio) = read_flv(data);
            Fixture {
                video_md5: framemd5(&flv_path, "0:v"),
                audio_md5: framemd5(&flv_path, "0:a"),
                video_decoded: decoded_md5(&flv_path, "0:v"),
                audio_decoded: decoded_md5(&flv_path, "0:a"),
                video_packets: ffprobe_packets(&flv_path, "v"),
                audio_packets: ffprobe_packets(&flv_path, "a"),
                video_config,
                audio_config,
                video,
                audio,
            }
        })
    }

    /// Writes init + fragments of about `target` ticks each; returns the
    /// fragment count.
    fn write_file(
        path: &Path,
        track_id: u32,
        config: &CodecConfig,
        samples: &[(u64, Sample)],
        target: u64,
    ) -> usize {
        let mut file = init_segment(track_id, config).unwrap().to_vec();
        let mut fragments = 0;
        let mut start = 0;
        while start < samples.len() {
            let mut end = start;
            let mut duration = 0u64;
            while end < samples.len() && (end == start || duration < target) {
                duration += u64::from(samples[end].1.duration);
                end += 1;
            }
            let run: Vec<Sample> = samples[start..end].iter().map(|(_, s)| s.clone()).collect();
            fragments += 1;
            let f = fragment(track_id, fragments as u32, samples[start].0, &run).unwrap();
            file.extend_from_slice(&f.header);
            for p in &f.payloads {
                file.extend_from_slice(p);
            }
            start = end;
        }
        std::fs::write(path, file).unwrap();
        fragments
    }

    fn assert_decodes_cleanly(path: &Path) {
        let (out, err) = run(
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "error",
                "-i",
                path.to_str().unwrap(),
                "-f",
                "null",
                "-",
            ],
        );
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    }

    #[test]
    fn ffmpeg_reads_video_frame_identical() {
        let fx = fixture();
        let dts: Vec<u64> = fx.video.iter().map(|f| f.dts as u64 * 90).collect();
        let samples: Vec<(u64, Sample)> = fx
            .video
            .iter()
            .enumerate()
            .map(|(i, f)| {
                // The last frame has no successor: repeat the previous duration.
                let duration = match dts.get(i + 1) {
                    Some(next) => next - dts[i],
                    None => dts[i] - dts[i - 1],
                };
                let s = Sample {
                    duration: duration as u32,
                    cts_offset: f.cts * 90,
                    keyframe: f.keyframe,
                    data: f.data.clone(),
                };
                (dts[i], s)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("video.mp4");
        let config = CodecConfig::Avc(fx.video_config.clone());
        let fragments = write_file(&path, 1, &config, &samples, 45_000);
        assert!(fragments >= 8, "{fragments} fragments");

        assert_eq!(framemd5(&path, "0:v"), fx.video_md5);
        assert_eq!(fx.video_md5.1.len(), 120);
        assert_eq!(decoded_md5(&path, "0:v"), fx.video_decoded);
        assert_eq!(fx.video_decoded.len(), 120);

        let got = ffprobe_packets(&path, "v");
        let want: Vec<Packet> = fx
            .video_packets
            .iter()
            .map(|p| Packet {
                pts: p.pts * 90,
                dts: p.dts * 90,
                ..p.clone()
            })
            .collect();
        assert_eq!(got, want);
        // B-frames: the first PTS is the FLV's, not the first DTS.
        assert_eq!(got[0].dts, 0);
        assert_eq!(got[0].pts, fx.video[0].pts() * 90);
        assert!(got[0].pts > 0);
        assert!(got
            .iter()
            .any(|p| p.pts < got[0].pts + 3000 && p.pts != p.dts));
        // K exactly on the IDR pictures.
        let nal = fx.video_config.nal_length_size;
        for (p, f) in got.iter().zip(&fx.video) {
            assert_eq!(p.key, avc::contains_idr(&f.data, nal), "{p:?}");
        }
        assert_eq!(got.iter().filter(|p| p.key).count(), 4);

        assert_decodes_cleanly(&path);
        assert_eq!(
            ffprobe_stream(&path).trim(),
            "codec_name=h264|profile=High|width=640|height=360"
        );
    }

    #[test]
    fn ffmpeg_reads_audio_frame_identical() {
        let fx = fixture();
        let rate = u64::from(fx.audio_config.sample_rate);
        let step = fx.audio_config.frame_length;
        let first = fx.audio[0].dts as u64 * rate / 1000;
        let samples: Vec<(u64, Sample)> = fx
            .audio
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let s = Sample {
                    duration: step,
                    cts_offset: 0,
                    keyframe: true,
                    data: f.data.clone(),
                };
                (first + i as u64 * u64::from(step), s)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audio.mp4");
        let config = CodecConfig::Aac(fx.audio_config.clone());
        let fragments = write_file(&path, 1, &config, &samples, rate / 2);
        assert!(fragments >= 8, "{fragments} fragments");

        assert_eq!(framemd5(&path, "0:a"), fx.audio_md5);
        assert_eq!(decoded_md5(&path, "0:a"), fx.audio_decoded);
        assert!(fx.audio_decoded.len() > 180);

        let got = ffprobe_packets(&path, "a");
        assert_eq!(got.len(), fx.audio_packets.len());
        for (i, (g, w)) in got.iter().zip(&fx.audio_packets).enumerate() {
            let exact = (first + i as u64 * u64::from(step)) as i64;
            assert_eq!((g.pts, g.dts), (exact, exact));
            // Sample-count time agrees with the FLV's millisecond clock.
            let ms = g.pts as f64 * 1000.0 / rate as f64;
            assert!((ms - w.pts as f64).abs() <= 1.0, "{g:?} vs {w:?}");
            assert_eq!((g.size, g.key), (w.size, true));
        }

        assert_decodes_cleanly(&path);
        assert_eq!(
            ffprobe_stream(&path).trim(),
            "codec_name=aac|profile=LC|sample_rate=48000|channels=2"
        );
    }
}
