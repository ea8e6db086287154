//! Program-specific information (ISO/IEC 13818-1 2.4.4): PAT and PMT
//! sections reassembled across packets, bounded and CRC checked, and what
//! the PMT says each elementary stream is.

use crate::media::MediaKind;

/// The longest PAT or PMT section: `section_length` is at most 1021.
pub(super) const MAX_SECTION: usize = 1024;

/// Why a PSI section was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionError {
    /// A `section_length` past 1021.
    TooLong,
    /// The CRC_32 does not match.
    Crc,
    /// A header or a loop that runs past the section's end.
    Malformed,
    /// A `pointer_field` past the packet's end.
    BadPointer,
}

impl std::fmt::Display for SectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SectionError::TooLong => "section_length over 1021",
            SectionError::Crc => "CRC mismatch",
            SectionError::Malformed => "lengths run past the section",
            SectionError::BadPointer => "pointer_field past the packet",
        })
    }
}

/// Reassembles the sections of one PID. Holds at most one section plus
/// one packet's payload.
#[derive(Debug, Default)]
pub(super) struct Sections {
    buf: Vec<u8>,
    /// A section start was seen and nothing lost since.
    active: bool,
}

impl Sections {
    /// Forgets a section in progress (packets were lost).
    pub(super) fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    /// Feeds one packet's payload; `section` gets every section completed
    /// (whole, not yet checked).
    pub(super) fn push(
        &mut self,
        payload: &[u8],
        unit_start: bool,
        section: &mut dyn FnMut(&[u8]),
    ) -> Result<(), SectionError> {
        if unit_start {
            let Some((&pointer, rest)) = payload.split_first() else {
                self.reset();
                return Err(SectionError::BadPointer);
            };
            let Some((tail, starts)) = rest.split_at_checked(usize::from(pointer)) else {
                self.reset();
                return Err(SectionError::BadPointer);
            };
            if self.active {
                // The bytes before the pointer end the previous section.
                self.buf.extend_from_slice(tail);
                self.drain(section)?;
            }
            self.buf.clear();
            self.active = true;
            self.buf.extend_from_slice(starts);
        } else if self.active {
            self.buf.extend_from_slice(payload);
        } else {
            return Ok(());
        }
        self.drain(section)
    }

    fn drain(&mut self, section: &mut dyn FnMut(&[u8])) -> Result<(), SectionError> {
        while self.active {
            match self.buf.first() {
                None => break,
                // Stuffing: no more sections until the next unit start.
                Some(0xff) => self.reset(),
                Some(_) if self.buf.len() < 3 => break,
                Some(_) => {
                    let len = (usize::from(self.buf[1] & 0x0f) << 8) | usize::from(self.buf[2]);
                    if len > MAX_SECTION - 3 {
                        self.reset();
                        return Err(SectionError::TooLong);
                    }
                    if self.buf.len() < 3 + len {
                        break;
                    }
                    section(&self.buf[..3 + len]);
                    self.buf.drain(..3 + len);
                }
            }
        }
        Ok(())
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, MSB first, no final XOR).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Over a whole section, CRC_32 included, the result is 0.
pub(super) fn crc32(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// A long-form section that passed its CRC.
#[derive(Debug)]
pub(super) struct Section<'a> {
    pub table_id: u8,
    /// `transport_stream_id` (PAT) or `program_number` (PMT).
    pub id: u16,
    pub version: u8,
    /// `current_next_indicator`: a section not yet applicable is ignored.
    pub current: bool,
    /// `section_number` and `last_section_number` are both 0.
    pub only: bool,
    /// Between the 8-byte header and the CRC.
    pub body: &'a [u8],
}

pub(super) fn check(section: &[u8]) -> Result<Section<'_>, SectionError> {
    if section.len() < 12 || section[1] & 0x80 == 0 {
        return Err(SectionError::Malformed);
    }
    if crc32(section) != 0 {
        return Err(SectionError::Crc);
    }
    Ok(Section {
        table_id: section[0],
        id: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1f,
        current: section[5] & 1 == 1,
        only: section[6] == 0 && section[7] == 0,
        body: &section[8..section.len() - 4],
    })
}

pub(super) const TABLE_PAT: u8 = 0x00;
pub(super) const TABLE_PMT: u8 = 0x02;

/// A PAT's (program_number, PID) entries; program 0 names the network PID.
pub(super) fn pat_programs(body: &[u8]) -> impl Iterator<Item = (u16, u16)> + '_ {
    body.chunks_exact(4).map(|e| {
        (
            u16::from_be_bytes([e[0], e[1]]),
            u16::from_be_bytes([e[2], e[3]]) & 0x1fff,
        )
    })
}

/// One elementary stream of a PMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EsInfo<'a> {
    pub stream_type: u8,
    pub pid: u16,
    pub descriptors: &'a [u8],
}

/// A PMT's program descriptors and streams.
#[derive(Debug)]
pub(super) struct Pmt<'a> {
    pub program_info: &'a [u8],
    pub streams: Vec<EsInfo<'a>>,
}

/// Reads a PMT body; at most one entry per 5 bytes of a 1 KiB section.
pub(super) fn parse_pmt(body: &[u8]) -> Result<Pmt<'_>, SectionError> {
    let [_, _, i0, i1, rest @ ..] = body else {
        return Err(SectionError::Malformed);
    };
    let info_len = (usize::from(i0 & 0x0f) << 8) | usize::from(*i1);
    let (program_info, mut rest) = rest
        .split_at_checked(info_len)
        .ok_or(SectionError::Malformed)?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        let [stream_type, p0, p1, l0, l1, tail @ ..] = rest else {
            return Err(SectionError::Malformed);
        };
        let len = (usize::from(l0 & 0x0f) << 8) | usize::from(*l1);
        let (descriptors, tail) = tail.split_at_checked(len).ok_or(SectionError::Malformed)?;
        streams.push(EsInfo {
            stream_type: *stream_type,
            pid: u16::from_be_bytes([*p0, *p1]) & 0x1fff,
            descriptors,
        });
        rest = tail;
    }
    Ok(Pmt {
        program_info,
        streams,
    })
}

/// The (tag, body) descriptors of a loop; a descriptor running past the
/// end ends it.
pub(super) fn descriptors(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let [tag, len, rest @ ..] = data else {
            return None;
        };
        let (body, rest) = rest.split_at_checked(usize::from(*len))?;
        data = rest;
        Some((*tag, body))
    })
}

/// PMT descriptor tags (13818-1 2.6, ETSI EN 300 468 6.1).
const DESC_REGISTRATION: u8 = 0x05;
const DESC_AC3: u8 = 0x6a;
const DESC_EAC3: u8 = 0x7a;
const DESC_EXTENSION: u8 = 0x7f;
/// The DVB extension descriptor's tag for Opus (as `egress::ts` and FFmpeg
/// write it).
const EXT_OPUS: u8 = 0x80;

/// An elementary stream castgate can carry, as the PMT declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EsKind {
    H264,
    Hevc,
    /// AAC in ADTS frames.
    Adts,
    /// MPEG-1/2 audio (stream types 0x03, 0x04): Layer III is carried.
    MpegAudio,
    /// AC-3 or E-AC-3: the sync frames say which.
    Ac3,
    /// Opus with its channel configuration code (1 to 8 channels, 0 dual
    /// mono; others are refused when its configuration is made).
    Opus {
        channel_code: u8,
    },
}

impl EsKind {
    pub(super) fn media_kind(self) -> MediaKind {
        match self {
            EsKind::H264 | EsKind::Hevc => MediaKind::Video,
            _ => MediaKind::Audio,
        }
    }
}

/// What a PMT entry is: by stream type, and for private data (0x06) by
/// its descriptors (DVB AC-3/E-AC-3, an `Opus` registration, which may
/// also be the program's). `None`: not carried.
pub(super) fn classify(
    stream_type: u8,
    es_descriptors: &[u8],
    program_info: &[u8],
) -> Option<EsKind> {
    match stream_type {
        0x1b => return Some(EsKind::H264),
        0x24 => return Some(EsKind::Hevc),
        0x0f => return Some(EsKind::Adts),
        0x03 | 0x04 => return Some(EsKind::MpegAudio),
        // ATSC A/52 AC-3 and E-AC-3.
        0x81 | 0x87 => return Some(EsKind::Ac3),
        0x06 => {}
        _ => return None,
    }
    let registered = |d: &[u8], id: &[u8; 4]| {
        descriptors(d).any(|(tag, body)| tag == DESC_REGISTRATION && body.starts_with(id))
    };
    let mut opus = registered(es_descriptors, b"Opus") || registered(program_info, b"Opus");
    let mut channel_code = 2;
    for (tag, body) in descriptors(es_descriptors) {
        match (tag, body) {
            (DESC_AC3 | DESC_EAC3, _) => return Some(EsKind::Ac3),
            (DESC_REGISTRATION, [b'A', b'C', b'-', b'3', ..] | [b'E', b'A', b'C', b'3', ..]) => {
                return Some(EsKind::Ac3)
            }
            (DESC_EXTENSION, [EXT_OPUS, code, ..]) => {
                opus = true;
                channel_code = *code;
            }
            _ => {}
        }
    }
    opus.then_some(EsKind::Opus { channel_code })
}
