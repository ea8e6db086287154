//! Audio elementary streams: the frames of a PES, one hub frame each.
//!
//! - AAC in ADTS: each frame's raw data block (the header, and its CRC
//!   when protected, removed), configured by an `AudioSpecificConfig`
//!   made from the header.
//! - MPEG audio: Layer III frames as they are (FLV's MP3), configured from
//!   the header; Layers I and II are not carried.
//! - AC-3: one sync frame; E-AC-3: one access unit (independent substream
//!   0 and what follows it until the next one), configured from the sync
//!   frames as the Enhanced RTMP ingest does.
//! - Opus: each packet behind its control header (0x7FE0 prefix, size,
//!   optional trims and extension, all stripped), configured by an
//!   `OpusHead` made from the PMT's channel configuration code.

use std::ops::Range;

use bytes::Bytes;

use super::psi::EsKind;
use crate::media::{aac, ac3, mpeg_audio, opus, Codec, CodecConfig, Mp3Config, OpusRecord};

/// The most bytes of a frame carried from one PES into the next: an ADTS
/// frame is at most 8191 bytes, an E-AC-3 access unit of 8 substreams of
/// 4 KiB 32 KiB, an MP3 frame under 3 KiB.
pub(super) const MAX_CARRY: usize = 64 * 1024;

/// What a frame's header says about the track's configuration.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Format {
    /// The 2-byte AudioSpecificConfig ADTS implies.
    Aac([u8; 2]),
    Mp3 {
        sample_rate: u32,
        channels: u8,
    },
    Ac3(ac3::Ac3Header),
    Eac3(ac3::Eac3Config),
    /// The Opus packet's start trim, if it has one.
    Opus {
        start_trim: Option<u16>,
    },
}

/// One frame found at the start of the data.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Found {
    /// Bytes the frame takes, headers included.
    pub len: usize,
    /// What the hub frame carries, within those bytes.
    pub payload: Range<usize>,
    pub samples: u32,
    pub sample_rate: u32,
    pub format: Format,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Next {
    Frame(Found),
    /// The frame runs past the end of the data.
    NeedMore,
    /// No frame here: skip this many bytes (to the next sync word).
    Skip(usize, &'static str),
}

/// The codec a stream's frames carry (AC-3 streams may hold E-AC-3).
pub(super) fn codec(kind: EsKind, format: &Format) -> Codec {
    match (kind, format) {
        (_, Format::Eac3(_)) => Codec::Eac3,
        (_, Format::Ac3(_)) => Codec::Ac3,
        (EsKind::Adts, _) => Codec::Aac,
        (EsKind::MpegAudio, _) => Codec::Mp3,
        (EsKind::Opus { .. }, _) => Codec::Opus,
        _ => Codec::Ac3,
    }
}

/// The codec a stream is, before any frame says more (for warnings).
pub(super) fn stream_codec(kind: EsKind) -> Codec {
    match kind {
        EsKind::Adts => Codec::Aac,
        EsKind::MpegAudio => Codec::Mp3,
        EsKind::Opus { .. } => Codec::Opus,
        _ => Codec::Ac3,
    }
}

/// The frame `data` starts with.
pub(super) fn next_frame(kind: EsKind, data: &[u8]) -> Next {
    match kind {
        EsKind::Adts => adts(data),
        EsKind::MpegAudio => mpeg(data),
        EsKind::Ac3 => ac3_family(data),
        EsKind::Opus { .. } => opus_packet(data),
        EsKind::H264 | EsKind::Hevc => Next::Skip(data.len(), "not audio"),
    }
}

/// Bytes up to the next place `sync` matches after the first byte.
fn skip_to(data: &[u8], sync: impl Fn(&[u8]) -> bool, why: &'static str) -> Next {
    let n = (1..data.len())
        .find(|&i| sync(&data[i..]))
        .unwrap_or(data.len());
    Next::Skip(n, why)
}

fn adts_sync(d: &[u8]) -> bool {
    // 12 sync bits, layer 0.
    matches!(d, [0xff, b, ..] if b & 0xf6 == 0xf0)
}

fn adts(d: &[u8]) -> Next {
    if d.len() >= 2 && !adts_sync(d) {
        return skip_to(d, adts_sync, "no ADTS sync word");
    }
    let [_, b1, b2, b3, b4, b5, b6, ..] = *d else {
        return Next::NeedMore;
    };
    let protection_absent = b1 & 1 == 1;
    let profile = b2 >> 6;
    let frequency_index = (b2 >> 2) & 0xf;
    let channels = ((b2 & 1) << 2) | (b3 >> 6);
    let len = (usize::from(b3 & 3) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
    let blocks = (b6 & 3) + 1;
    let header = if protection_absent { 7 } else { 9 };
    if len <= header {
        return skip_to(d, adts_sync, "ADTS frame shorter than its header");
    }
    if frequency_index > 12 {
        return skip_to(d, adts_sync, "reserved ADTS sampling frequency");
    }
    if channels == 0 {
        return skip_to(d, adts_sync, "ADTS with an in-band channel configuration");
    }
    if blocks > 1 {
        return skip_to(d, adts_sync, "ADTS frame of several raw data blocks");
    }
    if d.len() < len {
        return Next::NeedMore;
    }
    let object_type = profile + 1;
    let asc = [
        (object_type << 3) | (frequency_index >> 1),
        ((frequency_index & 1) << 7) | (channels << 3),
    ];
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    Next::Frame(Found {
        len,
        payload: header..len,
        samples: 1024,
        sample_rate: RATES[usize::from(frequency_index)],
        format: Format::Aac(asc),
    })
}

fn mpeg_sync(d: &[u8]) -> bool {
    mpeg_audio::parse_header(d).is_some()
}

fn mpeg(d: &[u8]) -> Next {
    if d.len() < 4 {
        return Next::NeedMore;
    }
    let Some(h) = mpeg_audio::parse_header(d) else {
        return skip_to(d, mpeg_sync, "no MPEG audio frame header");
    };
    let Some(len) = h.frame_len.filter(|&l| l > 4) else {
        return skip_to(d, mpeg_sync, "free-format MPEG audio");
    };
    if h.layer != 3 {
        // Skip the whole frame: a PES of Layer II is one warning, not one
        // per byte.
        return Next::Skip(
            len.min(d.len()),
            "MPEG audio Layer I or II (only Layer III is carried)",
        );
    }
    if d.len() < len {
        return Next::NeedMore;
    }
    Next::Frame(Found {
        len,
        payload: 0..len,
        samples: h.samples,
        sample_rate: h.sample_rate,
        format: Format::Mp3 {
            sample_rate: h.sample_rate,
            channels: h.channels,
        },
    })
}

fn ac3_sync(d: &[u8]) -> bool {
    d.starts_with(&[0x0b, 0x77])
}

fn ac3_family(d: &[u8]) -> Next {
    if d.len() >= 2 && !ac3_sync(d) {
        return skip_to(d, ac3_sync, "no AC-3 sync word");
    }
    let first = match ac3::parse_sync_frame(d) {
        Ok(f) => f,
        Err(ac3::Ac3Error::Truncated { .. } | ac3::Ac3Error::HeaderTruncated) => {
            return Next::NeedMore
        }
        Err(_) => return skip_to(d, ac3_sync, "bad AC-3 sync frame header"),
    };
    let size = first.frame_size();
    if d.len() < size {
        return Next::NeedMore;
    }
    match first {
        ac3::SyncFrame::Ac3(h) => Next::Frame(Found {
            len: size,
            payload: 0..size,
            samples: 1536,
            sample_rate: h.sample_rate,
            format: Format::Ac3(h),
        }),
        ac3::SyncFrame::Eac3(_) => {
            // The access unit: frames until the next independent substream
            // 0 (or AC-3 frame), or the end of the data.
            let mut end = size;
            while end < d.len() {
                let next = match ac3::parse_sync_frame(&d[end..]) {
                    Ok(next) => next,
                    Err(ac3::Ac3Error::Truncated { .. } | ac3::Ac3Error::HeaderTruncated) => {
                        return Next::NeedMore
                    }
                    Err(_) => break,
                };
                let starts_unit = match next {
                    ac3::SyncFrame::Ac3(_) => true,
                    ac3::SyncFrame::Eac3(h) => h.strmtyp != 1 && h.substreamid == 0,
                };
                if starts_unit {
                    break;
                }
                if d.len() - end < next.frame_size() {
                    return Next::NeedMore;
                }
                end += next.frame_size();
            }
            match ac3::parse_eac3_access_unit(&d[..end]) {
                Ok(c) => Next::Frame(Found {
                    len: end,
                    payload: 0..end,
                    samples: c.samples,
                    sample_rate: c.sample_rate,
                    format: Format::Eac3(c),
                }),
                Err(_) => Next::Skip(end, "bad E-AC-3 access unit"),
            }
        }
    }
}

fn opus_sync(d: &[u8]) -> bool {
    matches!(d, [0x7f, b, ..] if b & 0xe0 == 0xe0)
}

/// An Opus access unit (the "Opus in MPEG-TS" draft, 6.1): control header
/// (prefix, flags, size in 255-runs, trims, extension), then the packet.
fn opus_packet(d: &[u8]) -> Next {
    if d.len() >= 2 && !opus_sync(d) {
        return skip_to(d, opus_sync, "no Opus control header");
    }
    let [_, flags, ..] = *d else {
        return Next::NeedMore;
    };
    let mut pos = 2;
    let mut size = 0usize;
    loop {
        let Some(&b) = d.get(pos) else {
            return Next::NeedMore;
        };
        pos += 1;
        size += usize::from(b);
        if b != 0xff {
            break;
        }
    }
    let mut start_trim = None;
    if flags & 0x10 != 0 {
        let Some(t) = d.get(pos..pos + 2) else {
            return Next::NeedMore;
        };
        start_trim = Some(u16::from_be_bytes([t[0], t[1]]) & 0x1fff);
        pos += 2;
    }
    if flags & 0x08 != 0 {
        pos += 2; // end trim: not carried by FLV or the hub
    }
    if flags & 0x04 != 0 {
        let Some(&ext) = d.get(pos) else {
            return Next::NeedMore;
        };
        pos += 1 + usize::from(ext);
    }
    let end = pos + size;
    if d.len() < end {
        return Next::NeedMore;
    }
    let Some(samples) = opus::packet_samples(&d[pos..end]) else {
        return Next::Skip(end, "bad Opus packet");
    };
    Next::Frame(Found {
        len: end,
        payload: pos..end,
        samples,
        sample_rate: opus::SAMPLE_RATE,
        format: Format::Opus { start_trim },
    })
}

/// Stream counts and channel orders for the Opus channel configuration
/// codes 1 to 8 (Vorbis order, RFC 7845 5.1.1.2), as the draft and FFmpeg
/// have them.
const OPUS_STREAMS: [(u8, u8); 8] = [
    (1, 0),
    (1, 1),
    (2, 1),
    (2, 2),
    (3, 2),
    (4, 2),
    (4, 3),
    (5, 3),
];
const OPUS_MAPS: [&[u8]; 8] = [
    &[0],
    &[0, 1],
    &[0, 2, 1],
    &[0, 1, 2, 3],
    &[0, 4, 1, 2, 3],
    &[0, 4, 1, 2, 3, 5],
    &[0, 4, 1, 2, 3, 5, 6],
    &[0, 6, 1, 2, 3, 4, 5, 7],
];

/// The `OpusHead` for a channel configuration code: 1 or 2 channels in
/// family 0, 3 to 8 in family 1, code 0 dual mono (two mono streams,
/// family 255). MPEG-TS carries no pre-skip: the first packet's start
/// trim stands for it (0 without one, as FFmpeg has it). `None` for the
/// codes that need a mapping the descriptor spells out (not carried).
pub(super) fn opus_head(channel_code: u8, pre_skip: u16) -> Option<OpusRecord> {
    let mut r = b"OpusHead".to_vec();
    // (streams, coupled streams, channel order) of a mapped family.
    type Mapping = Option<(u8, u8, &'static [u8])>;
    let (channels, family, mapping): (u8, u8, Mapping) = match channel_code {
        0 => (2, 255, Some((2, 0, &[0, 1]))),
        1 | 2 => (channel_code, 0, None),
        3..=8 => {
            let i = usize::from(channel_code - 1);
            let (streams, coupled) = OPUS_STREAMS[i];
            (channel_code, 1, Some((streams, coupled, OPUS_MAPS[i])))
        }
        _ => return None,
    };
    r.extend_from_slice(&[1, channels]);
    r.extend_from_slice(&pre_skip.to_le_bytes());
    r.extend_from_slice(&opus::SAMPLE_RATE.to_le_bytes());
    r.extend_from_slice(&[0, 0, family]);
    if let Some((streams, coupled, map)) = mapping {
        r.extend_from_slice(&[streams, coupled]);
        r.extend_from_slice(map);
    }
    let head = opus::parse_opus_head(&r).ok()?;
    Some(OpusRecord {
        record: Bytes::from(r),
        head,
    })
}

/// The configuration a frame's format calls for, when it is not `current`
/// (`Err`: the format cannot be carried).
pub(super) fn config_for(
    kind: EsKind,
    format: &Format,
    current: Option<&CodecConfig>,
) -> Result<Option<CodecConfig>, &'static str> {
    let config = match (format, current) {
        (Format::Aac(asc), Some(CodecConfig::Aac(c))) if c.asc[..] == asc[..] => return Ok(None),
        (Format::Aac(asc), _) => CodecConfig::Aac(
            aac::parse_audio_specific_config(Bytes::copy_from_slice(asc))
                .map_err(|_| "an ADTS header that makes no AudioSpecificConfig")?,
        ),
        (
            Format::Mp3 {
                sample_rate,
                channels,
            },
            Some(CodecConfig::Mp3(c)),
        ) if (c.sample_rate, c.channels) == (*sample_rate, *channels) => return Ok(None),
        (
            Format::Mp3 {
                sample_rate,
                channels,
            },
            _,
        ) => CodecConfig::Mp3(Mp3Config {
            sample_rate: *sample_rate,
            channels: *channels,
            flv_flags: mpeg_audio::flv_flags(*sample_rate, *channels),
        }),
        // What `dac3` says; the frame size code's padding bit may
        // alternate at 44.1 kHz without making a new configuration.
        (Format::Ac3(h), Some(CodecConfig::Ac3(c))) if c.to_dac3() == h.to_dac3() => {
            return Ok(None)
        }
        (Format::Ac3(h), _) => CodecConfig::Ac3(*h),
        (Format::Eac3(e), Some(CodecConfig::Eac3(c))) if c.to_dec3() == e.to_dec3() => {
            return Ok(None)
        }
        (Format::Eac3(e), _) => CodecConfig::Eac3(e.clone()),
        (Format::Opus { .. }, Some(CodecConfig::Opus(_))) => return Ok(None),
        (Format::Opus { start_trim }, _) => {
            let EsKind::Opus { channel_code } = kind else {
                return Err("Opus frames in another stream");
            };
            CodecConfig::Opus(
                opus_head(channel_code, start_trim.unwrap_or(0))
                    .ok_or("an Opus channel configuration code other than 0 to 8")?,
            )
        }
    };
    Ok(Some(config))
}
