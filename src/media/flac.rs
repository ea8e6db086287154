//! FLAC: the stream header an Enhanced RTMP `fLaC` sequence start carries
//! (the `fLaC` marker and metadata blocks, STREAMINFO first; RFC 9639 8),
//! the STREAMINFO fields, and the `dfLa` box body (Encapsulation of FLAC in
//! ISO Base Media File Format, 3.3.2).
//!
//! FFmpeg's FLV muxer sends the bare 34-byte STREAMINFO instead of the
//! marker and blocks the E-RTMP text describes; both are read, and so are
//! blocks without the marker.
//!
//! Every block length is checked against what is left before use, and the
//! blocks kept (slices, not copies) are bounded by [`MAX_HEADER`].

use bytes::Bytes;

/// Why a FLAC header could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlacError {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("neither the fLaC marker nor a bare STREAMINFO")]
    BadMarker,
    #[error("first metadata block is of type {0}, not STREAMINFO")]
    FirstBlockNotStreamInfo(u8),
    #[error("more than one STREAMINFO block")]
    DuplicateStreamInfo,
    #[error("STREAMINFO block of {0} bytes, want 34")]
    BadStreamInfoLength(usize),
    #[error("metadata block type 127 is forbidden")]
    ForbiddenBlockType,
    #[error("STREAMINFO field {field} out of range: {value}")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("FLAC metadata of {0} bytes kept is larger than {MAX_HEADER} bytes")]
    HeaderTooLarge(usize),
    #[error("unsupported dfLa version {0}")]
    UnsupportedDflaVersion(u8),
}

/// The most metadata kept (block headers included). A STREAMINFO and a
/// Vorbis comment are a few hundred bytes; they are copied into every init
/// segment, so a publisher must not make them big.
pub const MAX_HEADER: usize = 16 * 1024;

/// Metadata block types (RFC 9639 8.1).
pub const BLOCK_STREAMINFO: u8 = 0;
pub const BLOCK_PADDING: u8 = 1;
pub const BLOCK_PICTURE: u8 = 6;

pub const STREAMINFO_LEN: usize = 34;

/// The STREAMINFO block (RFC 9639 8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub min_block_size: u16,
    pub max_block_size: u16,
    /// Bytes; 0 when unknown.
    pub min_frame_size: u32,
    pub max_frame_size: u32,
    pub sample_rate: u32,
    pub channels: u8,
    pub bits_per_sample: u8,
    /// 0 when unknown, as in a live stream.
    pub total_samples: u64,
    pub md5: [u8; 16],
}

/// Parses a STREAMINFO block body (34 bytes; more are ignored). What
/// decoders refuse is refused: a maximum block size under 16, a sample rate
/// of 0, fewer than 4 bits per sample.
pub fn parse_stream_info(data: &[u8]) -> Result<StreamInfo, FlacError> {
    let d: &[u8; STREAMINFO_LEN] = data
        .get(..STREAMINFO_LEN)
        .and_then(|d| d.try_into().ok())
        .ok_or(FlacError::Truncated {
            what: "STREAMINFO",
            need: STREAMINFO_LEN,
            have: data.len(),
        })?;
    let be24 = |i: usize| u32::from_be_bytes([0, d[i], d[i + 1], d[i + 2]]);
    // Bytes 10..18: sample rate (20 bits), channels - 1 (3), bits per
    // sample - 1 (5), total samples (36).
    let packed = u64::from_be_bytes([d[10], d[11], d[12], d[13], d[14], d[15], d[16], d[17]]);
    let info = StreamInfo {
        min_block_size: u16::from_be_bytes([d[0], d[1]]),
        max_block_size: u16::from_be_bytes([d[2], d[3]]),
        min_frame_size: be24(4),
        max_frame_size: be24(7),
        sample_rate: (packed >> 44) as u32,
        channels: ((packed >> 41) & 0b111) as u8 + 1,
        bits_per_sample: ((packed >> 36) & 0b1_1111) as u8 + 1,
        total_samples: packed & 0xf_ffff_ffff,
        md5: d[18..].try_into().unwrap_or_default(),
    };
    let bad = |field, value: u64| Err(FlacError::OutOfRange { field, value });
    if info.max_block_size < 16 {
        return bad("max_block_size", info.max_block_size.into());
    }
    if info.sample_rate == 0 {
        return bad("sample_rate", 0);
    }
    if info.bits_per_sample < 4 {
        return bad("bits_per_sample", info.bits_per_sample.into());
    }
    Ok(info)
}

/// One metadata block: its type and body (a slice of the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataBlock {
    pub block_type: u8,
    pub data: Bytes,
}

/// A FLAC stream's configuration: STREAMINFO and the metadata kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlacConfig {
    pub stream_info: StreamInfo,
    /// STREAMINFO first, then the other blocks in order, without padding
    /// and pictures (of no use to a player of a live stream, and pictures
    /// are big).
    pub blocks: Vec<MetadataBlock>,
}

impl FlacConfig {
    /// The `dfLa` box body: version 0, flags 0, the blocks kept, the last
    /// one (only) with its last-metadata-block flag set.
    pub fn to_dfla(&self) -> Vec<u8> {
        let len: usize = self.blocks.iter().map(|b| 4 + b.data.len()).sum();
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&[0, 0, 0, 0]);
        for (i, b) in self.blocks.iter().enumerate() {
            let last = if i + 1 == self.blocks.len() { 0x80 } else { 0 };
            out.push(last | b.block_type);
            // Blocks are bounded by MAX_HEADER, far under 2^24.
            out.extend_from_slice(&(b.data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(&b.data);
        }
        out
    }
}

/// Parses the body of a FLAC sequence start: `fLaC` and metadata blocks
/// (what the E-RTMP text describes), the bare 34-byte STREAMINFO (what
/// FFmpeg sends), or metadata blocks without the marker. Blocks end at the one flagged last, or at the end of the
/// data; anything after the last block (a first audio frame) is ignored.
pub fn parse_sequence_header(data: Bytes) -> Result<FlacConfig, FlacError> {
    if data.len() == STREAMINFO_LEN {
        let stream_info = parse_stream_info(&data)?;
        return Ok(FlacConfig {
            stream_info,
            blocks: vec![MetadataBlock {
                block_type: BLOCK_STREAMINFO,
                data,
            }],
        });
    }
    if data.starts_with(b"fLaC") {
        return parse_blocks(data, 4);
    }
    // Blocks without the marker (a STREAMINFO block header first), as in
    // `dfLa` and as some muxers send them.
    if data.len() > 4 && data[0] & 0x7f == BLOCK_STREAMINFO && data[1..4] == [0, 0, 34] {
        return parse_blocks(data, 0);
    }
    Err(FlacError::BadMarker)
}

/// Parses a `dfLa` box body (version 0; flags ignored) back.
pub fn parse_dfla(body: Bytes) -> Result<FlacConfig, FlacError> {
    match body.first() {
        None => Err(FlacError::Truncated {
            what: "dfLa",
            need: 4,
            have: 0,
        }),
        Some(&v) if v != 0 => Err(FlacError::UnsupportedDflaVersion(v)),
        Some(_) if body.len() < 4 => Err(FlacError::Truncated {
            what: "dfLa",
            need: 4,
            have: body.len(),
        }),
        Some(_) => parse_blocks(body, 4),
    }
}

fn parse_blocks(data: Bytes, mut pos: usize) -> Result<FlacConfig, FlacError> {
    let mut blocks = Vec::new();
    let mut kept = 0;
    let mut stream_info = None;
    loop {
        let header = data.get(pos..pos + 4).ok_or(FlacError::Truncated {
            what: "metadata block header",
            need: pos + 4,
            have: data.len(),
        })?;
        let (last, block_type) = (header[0] & 0x80 != 0, header[0] & 0x7f);
        let len =
            usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
        pos += 4;
        if block_type == 127 {
            return Err(FlacError::ForbiddenBlockType);
        }
        let end = pos + len;
        if end > data.len() {
            return Err(FlacError::Truncated {
                what: "metadata block",
                need: end,
                have: data.len(),
            });
        }
        match (block_type, stream_info.is_some()) {
            (BLOCK_STREAMINFO, false) => {
                if len != STREAMINFO_LEN {
                    return Err(FlacError::BadStreamInfoLength(len));
                }
                stream_info = Some(parse_stream_info(&data[pos..end])?);
            }
            (BLOCK_STREAMINFO, true) => return Err(FlacError::DuplicateStreamInfo),
            (t, false) => return Err(FlacError::FirstBlockNotStreamInfo(t)),
            _ => {}
        }
        if !matches!(block_type, BLOCK_PADDING | BLOCK_PICTURE) {
            kept += 4 + len;
            if kept > MAX_HEADER {
                return Err(FlacError::HeaderTooLarge(kept));
            }
            blocks.push(MetadataBlock {
                block_type,
                data: data.slice(pos..end),
            });
        }
        pos = end;
        if last || pos == data.len() {
            break;
        }
    }
    // The loop runs until a STREAMINFO was read or it returned an error.
    let stream_info = stream_info.ok_or(FlacError::BadMarker)?;
    Ok(FlacConfig {
        stream_info,
        blocks,
    })
}

/// `fLaC` (the sample entry's name, which is the MP4 codecs parameter).
pub fn codec_string(_: &FlacConfig) -> String {
    "fLaC".to_string()
}

/// How many samples per channel a FLAC frame holds, from its header
/// (RFC 9639 9.1): the block size code, with the 8- and 16-bit escapes
/// (codes 6 and 7) read after the coded number. The header's CRC-8 must
/// match, so bytes that merely start like a sync code are not taken for a
/// header. `None` for anything else (a reserved code, a truncated or
/// corrupt header): the caller falls back to the stream's clock.
pub fn frame_block_size(frame: &[u8]) -> Option<u32> {
    // Sync code (14 bits), a reserved 0, the blocking strategy bit.
    if frame.len() < 6 || frame[0] != 0xff || frame[1] & 0xfe != 0xf8 {
        return None;
    }
    let size_code = frame[2] >> 4;
    let rate_code = frame[2] & 0xf;
    if size_code == 0 || rate_code == 0xf || frame[3] & 1 != 0 {
        return None;
    }
    // The coded number: a UTF-8-like run of 1 to 7 bytes.
    let lead = frame[4].leading_ones() as usize;
    let coded_len = match lead {
        0 => 1,
        2..=7 => lead,
        _ => return None,
    };
    let mut at = 4 + coded_len;
    let continuation = frame.get(5..at)?;
    if continuation.iter().any(|b| b & 0xc0 != 0x80) {
        return None;
    }
    let size = match size_code {
        1 => 192,
        2..=5 => 576 << (size_code - 2),
        6 => {
            at += 1;
            u32::from(*frame.get(at - 1)?) + 1
        }
        7 => {
            at += 2;
            let b = frame.get(at - 2..at)?;
            u32::from(u16::from_be_bytes([b[0], b[1]])) + 1
        }
        _ => 256 << (size_code - 8),
    };
    // Sample rate escapes: 8 bits in kHz, 16 bits in Hz or tens of Hz.
    at += match rate_code {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    let crc = *frame.get(at)?;
    (crc8(&frame[..at]) == crc).then_some(size)
}

/// CRC-8, polynomial x^8 + x^2 + x + 1, initial 0 (RFC 9639 9.1.8).
fn crc8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |mut crc, &b| {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                crc << 1 ^ 0x07
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::hex;

    /// Frame headers FFmpeg 5.1's encoder wrote (`-frame_size N`), each
    /// with what follows it cut to two bytes.
    #[test]
    fn frame_block_sizes() {
        for (header, size) in [
            ("fff82908005b4c00", 576),    // code 2
            ("fff81908c3884c4c", 192),    // code 1, frame 200 (2-byte number)
            ("fff869080063334a", 100),    // code 6: 8-bit escape
            ("fff879080003e7e54e", 1000), // code 7: 16-bit escape
            ("fff879080011398c4e", 4410), // a short last frame
            ("fff8db0800e14e00", 8192),   // code 13, 96 kHz
        ] {
            let h = hex(header);
            assert_eq!(frame_block_size(&h), Some(size), "{header}");
            // Cut before the CRC: no answer (and no panic); after: the same.
            let whole = (0..=h.len())
                .find(|&cut| frame_block_size(&h[..cut]).is_some())
                .unwrap();
            assert!(whole >= 6, "{header}");
            for cut in whole..=h.len() {
                assert_eq!(frame_block_size(&h[..cut]), Some(size), "{header}");
            }
            // A corrupt header fails its CRC.
            let mut bad = h.clone();
            bad[4] ^= 0x01;
            assert_eq!(frame_block_size(&bad), None, "{header}");
        }
        // Sample rate escapes sit between the block size escape and the
        // CRC: 8 bits (code 12) or 16 (codes 13, 14). (The CRC function is
        // the one the real headers above check.)
        for (rate_code, extra) in [(12u8, 1usize), (13, 2), (14, 2)] {
            let mut h = vec![0xff, 0xf8, 0x60 | rate_code, 0x08, 0x00, 0x63];
            h.extend(std::iter::repeat_n(0x30, extra));
            h.push(crc8(&h));
            assert_eq!(frame_block_size(&h), Some(100), "rate code {rate_code}");
            assert_eq!(frame_block_size(&h[..h.len() - 1]), None);
        }
        // Not a frame: no sync, reserved block size code 0, bad coded number.
        assert_eq!(frame_block_size(&hex("fff0290800 5b")), None);
        assert_eq!(frame_block_size(&hex("fff809080000")), None);
        assert_eq!(frame_block_size(&hex("fff8290880 00")), None);
        assert_eq!(frame_block_size(&hex("fff82908ff 0000000000000000")), None);
        assert_eq!(frame_block_size(&hex("fff82908c2 0000")), None);
    }

    // Enhanced RTMP FLAC sequence starts written by FFmpeg 9.0.2 (`-f flv`,
    // native encoder, sine input), the 5-byte ExAudioTagHeader removed:
    // a bare STREAMINFO, totals and MD5 zero (the stream is live).
    /// 44.1 kHz stereo 16-bit.
    const FLV_STEREO: &str = "040004000000000010980ac442f00000000000000000000000000000000000000000";
    /// 96 kHz mono 24-bit (`-sample_fmt s32`).
    const FLV_96K_24: &str = "04000400000000000c16177001700000000000000000000000000000000000000000";
    // `ffmpeg -c:a flac out.flac` of the same 0.1 s input: the STREAMINFO
    // (4410 samples, MD5 set), the Vorbis comment, then 8192 bytes of
    // padding flagged last and the first frame.
    const FILE_STREAMINFO: &str =
        "040004000000aa00018f0ac442f00000113a90ec084843007b3e71c026b946423516";
    const FILE_VORBIS_COMMENT: &str =
        "0c0000004c61766636332e312e3130320100000014000000656e636f6465723d4c61766636332e312e313032";
    const FIRST_FRAME: &str = "fff8a98800e64e00";
    /// FFmpeg's MP4 muxer's `dfLa` for the same encode.
    const FILE_DFLA: &str =
        "0000000080000022040004000000aa00018f0ac442f00000113a90ec084843007b3e71c026b946423516";

    fn file_header() -> Vec<u8> {
        let mut v = b"fLaC".to_vec();
        v.extend_from_slice(&[0, 0, 0, 34]);
        v.extend(hex(FILE_STREAMINFO));
        v.extend_from_slice(&[4, 0, 0, 44]);
        v.extend(hex(FILE_VORBIS_COMMENT));
        v.extend_from_slice(&[0x81, 0, 0x20, 0]);
        v.extend(std::iter::repeat_n(0, 8192));
        v.extend(hex(FIRST_FRAME));
        v
    }

    fn parse(v: Vec<u8>) -> Result<FlacConfig, FlacError> {
        parse_sequence_header(Bytes::from(v))
    }

    #[test]
    fn ffmpeg_bare_stream_info() {
        let c = parse(hex(FLV_STEREO)).unwrap();
        let s = c.stream_info;
        assert_eq!((s.min_block_size, s.max_block_size), (1024, 1024));
        assert_eq!((s.min_frame_size, s.max_frame_size), (0, 0x1098));
        assert_eq!(
            (s.sample_rate, s.channels, s.bits_per_sample),
            (44100, 2, 16)
        );
        assert_eq!((s.total_samples, s.md5), (0, [0; 16]));
        assert_eq!(codec_string(&c), "fLaC");
        let s = parse(hex(FLV_96K_24)).unwrap().stream_info;
        assert_eq!(
            (s.sample_rate, s.channels, s.bits_per_sample),
            (96000, 1, 24)
        );
        // A bare STREAMINFO becomes exactly what FFmpeg puts in MP4.
        assert_eq!(
            parse(hex(FILE_STREAMINFO)).unwrap().to_dfla(),
            hex(FILE_DFLA)
        );
    }

    #[test]
    fn file_header_blocks() {
        let c = parse(file_header()).unwrap();
        let s = c.stream_info;
        assert_eq!(
            (s.sample_rate, s.channels, s.total_samples),
            (44100, 2, 4410)
        );
        assert_eq!(s.md5[..4], [0x90, 0xec, 0x08, 0x48]);
        // Padding dropped; the Vorbis comment kept and now flagged last.
        let types: Vec<u8> = c.blocks.iter().map(|b| b.block_type).collect();
        assert_eq!(types, [BLOCK_STREAMINFO, 4]);
        let dfla = c.to_dfla();
        let mut want = hex("00000000 00000022");
        want.extend(hex(FILE_STREAMINFO));
        want.extend_from_slice(&[0x84, 0, 0, 44]);
        want.extend(hex(FILE_VORBIS_COMMENT));
        assert_eq!(dfla, want);
        assert_eq!(parse_dfla(Bytes::from(dfla)), Ok(c.clone()));
        assert_eq!(
            parse_dfla(Bytes::from(hex(FILE_DFLA))).unwrap().stream_info,
            s
        );
        // The blocks are slices of the header, not copies.
        let header = Bytes::from(file_header());
        let c = parse_sequence_header(header.clone()).unwrap();
        let range = header.as_ptr_range();
        assert!(c.blocks.iter().all(|b| range.contains(&b.data.as_ptr())));
    }

    #[test]
    fn blocks_without_the_marker() {
        let mut v = hex("80000022");
        v.extend(hex(FILE_STREAMINFO));
        assert_eq!(parse(v).unwrap().to_dfla(), hex(FILE_DFLA));
        // A bare STREAMINFO is told apart by its length alone.
        let mut v = hex("00000022");
        v.extend(hex(FILE_STREAMINFO));
        v.extend_from_slice(&[0x81, 0, 0, 0]);
        assert_eq!(parse(v).unwrap().blocks.len(), 1);
    }

    #[test]
    fn blocks_end_at_the_data_without_a_last_flag() {
        let mut v = b"fLaC".to_vec();
        v.extend_from_slice(&[0, 0, 0, 34]);
        v.extend(hex(FILE_STREAMINFO));
        let c = parse(v).unwrap();
        assert_eq!(c.to_dfla(), hex(FILE_DFLA));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(vec![]), Err(FlacError::BadMarker));
        assert_eq!(parse(b"OggS".to_vec()), Err(FlacError::BadMarker));
        assert!(matches!(
            parse(b"fLaC".to_vec()),
            Err(FlacError::Truncated { .. })
        ));
        let header = file_header();
        // Cut inside the padding (which is skipped, but must be whole).
        assert!(matches!(
            parse(header[..200].to_vec()),
            Err(FlacError::Truncated {
                what: "metadata block",
                ..
            })
        ));
        let mut v = header.clone();
        v[4] = 4;
        assert_eq!(parse(v), Err(FlacError::FirstBlockNotStreamInfo(4)));
        let mut v = header.clone();
        v[7] = 33;
        assert_eq!(parse(v), Err(FlacError::BadStreamInfoLength(33)));
        let mut v = header.clone();
        v[42] = 0x7f;
        assert_eq!(parse(v), Err(FlacError::ForbiddenBlockType));
        let mut v = header.clone();
        v[42] = 0;
        assert_eq!(parse(v), Err(FlacError::DuplicateStreamInfo));
        // STREAMINFO fields decoders refuse.
        let mut v = hex(FLV_STEREO);
        v[2..4].copy_from_slice(&[0, 15]);
        assert!(matches!(
            parse(v),
            Err(FlacError::OutOfRange {
                field: "max_block_size",
                value: 15
            })
        ));
        let mut v = hex(FLV_STEREO);
        v[10..13].copy_from_slice(&[0, 0, 0x02]);
        assert!(matches!(
            parse(v),
            Err(FlacError::OutOfRange {
                field: "sample_rate",
                ..
            })
        ));
        let mut v = hex(FLV_STEREO);
        v[12] = 0x42 & 0xfe;
        v[13] = 0x20; // 3 bits per sample
        assert!(matches!(
            parse(v),
            Err(FlacError::OutOfRange {
                field: "bits_per_sample",
                value: 3
            })
        ));
        assert_eq!(
            parse_dfla(Bytes::from_static(&[1, 0, 0, 0])),
            Err(FlacError::UnsupportedDflaVersion(1))
        );
        assert!(matches!(
            parse_dfla(Bytes::from_static(&[0, 0])),
            Err(FlacError::Truncated { .. })
        ));
    }

    #[test]
    fn pictures_are_dropped_and_the_rest_is_bounded() {
        let mut v = b"fLaC".to_vec();
        v.extend_from_slice(&[0, 0, 0, 34]);
        v.extend(hex(FILE_STREAMINFO));
        // A 1 MiB picture, then a last application block of 8 bytes.
        v.extend_from_slice(&[6, 0x10, 0, 0]);
        v.extend(std::iter::repeat_n(0xab, 1 << 20));
        v.extend_from_slice(&[0x82, 0, 0, 8]);
        v.extend_from_slice(b"abcdefgh");
        let c = parse(v).unwrap();
        let types: Vec<u8> = c.blocks.iter().map(|b| b.block_type).collect();
        assert_eq!(types, [BLOCK_STREAMINFO, 2]);
        // A Vorbis comment larger than the bound is refused.
        let mut v = b"fLaC".to_vec();
        v.extend_from_slice(&[0, 0, 0, 34]);
        v.extend(hex(FILE_STREAMINFO));
        v.extend_from_slice(&[0x84, 0, 0x40, 0]);
        v.extend(std::iter::repeat_n(0, 0x4000));
        assert_eq!(parse(v), Err(FlacError::HeaderTooLarge(38 + 4 + 0x4000)));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
                let mut v = b"fLaC".to_vec();
                v.extend_from_slice(&tail);
                for data in [v, tail.clone()] {
                    if let Ok(c) = parse_sequence_header(Bytes::from(data)) {
                        let again = parse_dfla(Bytes::from(c.to_dfla())).unwrap();
                        prop_assert_eq!(again.stream_info, c.stream_info);
                        prop_assert_eq!(again.blocks.len(), c.blocks.len());
                    }
                }
            }

            #[test]
            fn frame_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..24)) {
                // After a sync code, so the parse gets past the first check.
                for start in [&[0xff, 0xf8][..], &[0xff, 0xf9], &[]] {
                    let mut v = start.to_vec();
                    v.extend_from_slice(&tail);
                    if let Some(n) = frame_block_size(&v) {
                        prop_assert!((1..=65536).contains(&n));
                    }
                }
            }
        }
    }
}
