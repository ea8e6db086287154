//! PES packet headers (ISO/IEC 13818-1 2.4.3.6): the length, the
//! timestamps and where the elementary stream data starts.

/// What castgate reads of a PES header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PesHeader {
    /// `PES_packet_length`: bytes after the field, 0 for "unbounded"
    /// (video only).
    pub packet_length: usize,
    /// 33-bit, 90 kHz.
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Where the elementary stream data starts in the PES.
    pub data_offset: usize,
}

/// Why a PES header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PesError {
    /// No `00 00 01` at the start of the unit.
    NoStartCode,
    /// A stream id with no optional header (padding, private stream 2…):
    /// nothing castgate carries comes that way.
    NoOptionalHeader(u8),
    /// MPEG-1 system syntax, or PTS_DTS_flags `01` (forbidden).
    BadFlags,
    /// The header data is too short for its timestamps, or longer than the
    /// packet.
    BadLength,
}

impl std::fmt::Display for PesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PesError::NoStartCode => f.write_str("no start code"),
            PesError::NoOptionalHeader(id) => write!(f, "stream id {id:#04x} has no header"),
            PesError::BadFlags => f.write_str("bad header flags"),
            PesError::BadLength => f.write_str("header lengths do not add up"),
        }
    }
}

/// The PES header at the start of `data`; `Ok(None)` until enough bytes
/// came.
pub(super) fn parse_header(data: &[u8]) -> Result<Option<PesHeader>, PesError> {
    if data.len() < 6 {
        return Ok(None);
    }
    if data[..3] != [0, 0, 1] {
        return Err(PesError::NoStartCode);
    }
    let stream_id = data[3];
    let packet_length = usize::from(u16::from_be_bytes([data[4], data[5]]));
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Err(PesError::NoOptionalHeader(stream_id));
    }
    let [_, _, _, _, _, _, marker, flags, header_len, ..] = *data else {
        return Ok(None);
    };
    if marker & 0xc0 != 0x80 {
        return Err(PesError::BadFlags);
    }
    let data_offset = 9 + usize::from(header_len);
    let timestamps = match flags >> 6 {
        0 => 0,
        2 => 5,
        3 => 10,
        _ => return Err(PesError::BadFlags),
    };
    if usize::from(header_len) < timestamps
        || (packet_length != 0 && 6 + packet_length < data_offset)
    {
        return Err(PesError::BadLength);
    }
    if data.len() < 9 + timestamps {
        return Ok(None);
    }
    Ok(Some(PesHeader {
        packet_length,
        pts: (timestamps >= 5).then(|| timestamp(&data[9..14])),
        dts: (timestamps == 10).then(|| timestamp(&data[14..19])),
        data_offset,
    }))
}

/// A 33-bit timestamp in its 5 bytes (marker bits ignored, as FFmpeg does).
fn timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}
