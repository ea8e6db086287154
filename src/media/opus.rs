//! Opus: the identification header `OpusHead` (RFC 7845 5.1) that an
//! Enhanced RTMP `Opus` sequence start carries, and the `dOps` box body
//! (Encapsulation of Opus in ISO Base Media File Format, 4.3.2) it becomes.
//!
//! The header is little-endian, `dOps` big-endian; both hold the same
//! fields. Every length is checked before use; the channel mapping table,
//! the one allocation, is at most 255 bytes.

/// Why an Opus header could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpusError {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("no OpusHead magic signature")]
    BadMagic,
    #[error("unsupported OpusHead version {0} (major version must be 0)")]
    UnsupportedVersion(u8),
    #[error("unsupported dOps version {0}")]
    UnsupportedDopsVersion(u8),
    #[error("{channels} channels with channel mapping family {family}")]
    BadChannelCount { family: u8, channels: u8 },
    #[error("{streams} streams with {coupled} coupled")]
    BadStreamCount { streams: u8, coupled: u8 },
    #[error("channel {channel} mapped to stream {value}, past the decoded channels")]
    BadMapping { channel: usize, value: u8 },
    #[error("channel mapping family 3 (demixing matrix) is not supported")]
    UnsupportedFamily,
}

/// Opus always decodes at 48 kHz: timestamps, `pre_skip` and the ISOBMFF
/// timescale count at this rate, whatever the input rate was.
pub const SAMPLE_RATE: u32 = 48_000;

/// The channel mapping of a family other than 0 (RFC 7845 5.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelMapping {
    pub streams: u8,
    pub coupled_streams: u8,
    /// One entry per output channel: a decoded channel index, or 255 for
    /// silence.
    pub table: Vec<u8>,
}

/// The identification header's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusHead {
    pub version: u8,
    pub channels: u8,
    /// Samples (at 48 kHz) to drop from the start of the decoded output.
    pub pre_skip: u16,
    /// The encoder's input rate: informational only.
    pub input_sample_rate: u32,
    /// Gain in Q7.8 dB to apply to the decoded output.
    pub output_gain: i16,
    pub mapping_family: u8,
    /// `None` for family 0 (mono or stereo, one stream).
    pub mapping: Option<ChannelMapping>,
}

const MAGIC: &[u8; 8] = b"OpusHead";
const FIXED_LEN: usize = 19;

/// Parses an `OpusHead` packet. Versions with major version 0 (0 to 15)
/// are read as version 1, as RFC 7845 asks; bytes after the mapping table
/// (room a later minor version may use) are ignored. The channel counts and
/// the mapping are checked as RFC 7845 5.1.1 requires, so the result always
/// converts to a valid `dOps`.
pub fn parse_opus_head(data: &[u8]) -> Result<OpusHead, OpusError> {
    if data.len() < FIXED_LEN {
        return Err(OpusError::Truncated {
            what: "OpusHead",
            need: FIXED_LEN,
            have: data.len(),
        });
    }
    if &data[..8] != MAGIC {
        return Err(OpusError::BadMagic);
    }
    if data[8] > 15 {
        return Err(OpusError::UnsupportedVersion(data[8]));
    }
    let le16 = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let head = OpusHead {
        version: data[8],
        channels: data[9],
        pre_skip: le16(10),
        input_sample_rate: u32::from_le_bytes([data[12], data[13], data[14], data[15]]),
        output_gain: le16(16) as i16,
        mapping_family: data[18],
        mapping: None,
    };
    with_mapping(head, &data[FIXED_LEN..], "OpusHead channel mapping")
}

/// Reads the mapping of a non-zero family from `rest` (stream count,
/// coupled count, table) and checks the whole header.
fn with_mapping(
    mut head: OpusHead,
    rest: &[u8],
    what: &'static str,
) -> Result<OpusHead, OpusError> {
    let (family, channels) = (head.mapping_family, head.channels);
    let bad_count = Err(OpusError::BadChannelCount { family, channels });
    match family {
        _ if channels == 0 => return bad_count,
        0 if channels > 2 => return bad_count,
        0 => return Ok(head),
        1 if channels > 8 => return bad_count,
        3 => return Err(OpusError::UnsupportedFamily),
        _ => {}
    }
    let need = 2 + usize::from(channels);
    if rest.len() < need {
        return Err(OpusError::Truncated {
            what,
            need,
            have: rest.len(),
        });
    }
    let (streams, coupled) = (rest[0], rest[1]);
    if streams == 0 || coupled > streams || u16::from(streams) + u16::from(coupled) > 255 {
        return Err(OpusError::BadStreamCount { streams, coupled });
    }
    let decoded = streams + coupled;
    let table = &rest[2..need];
    if let Some(channel) = table.iter().position(|&v| v >= decoded && v != 255) {
        return Err(OpusError::BadMapping {
            channel,
            value: table[channel],
        });
    }
    head.mapping = Some(ChannelMapping {
        streams,
        coupled_streams: coupled,
        table: table.to_vec(),
    });
    Ok(head)
}

impl OpusHead {
    /// The `dOps` box body: version 0, then the header's fields big-endian.
    pub fn to_dops(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + 2 + usize::from(self.channels));
        out.push(0);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_be_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        out.extend_from_slice(&self.output_gain.to_be_bytes());
        out.push(self.mapping_family);
        if let Some(m) = &self.mapping {
            out.push(m.streams);
            out.push(m.coupled_streams);
            out.extend_from_slice(&m.table);
        }
        out
    }

    /// How many streams the packets hold (1 for family 0).
    pub fn streams(&self) -> u8 {
        self.mapping.as_ref().map_or(1, |m| m.streams)
    }
}

/// Parses a `dOps` box body back (version 0 only), with the same checks
/// as [`parse_opus_head`]; the header's version is reported as 1.
pub fn parse_dops(body: &[u8]) -> Result<OpusHead, OpusError> {
    const LEN: usize = 11;
    if body.len() < LEN {
        return Err(OpusError::Truncated {
            what: "dOps",
            need: LEN,
            have: body.len(),
        });
    }
    if body[0] != 0 {
        return Err(OpusError::UnsupportedDopsVersion(body[0]));
    }
    let head = OpusHead {
        version: 1,
        channels: body[1],
        pre_skip: u16::from_be_bytes([body[2], body[3]]),
        input_sample_rate: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        output_gain: i16::from_be_bytes([body[8], body[9]]),
        mapping_family: body[10],
        mapping: None,
    };
    with_mapping(head, &body[LEN..], "dOps channel mapping")
}

/// `opus` (the Opus-in-ISOBMFF codecs parameter; the sample entry is
/// `Opus`).
pub fn codec_string(_: &OpusHead) -> String {
    "opus".to_string()
}

/// The longest packet RFC 6716 3.2.5 allows: 120 ms at 48 kHz.
pub const MAX_PACKET_SAMPLES: u32 = 5_760;

/// How many 48 kHz samples an Opus packet decodes to, from its TOC byte
/// and frame count (RFC 6716 3.1): what an `Opus` sample's duration is in
/// ISOBMFF, which must not be guessed from the RTMP clock. `None` for an
/// empty packet, a code 3 packet without its count byte or with no frames,
/// or more than 120 ms. A multistream packet is timed by its first stream
/// (all streams of a packet last as long).
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in 48 kHz samples: SILK 10/20/40/60 ms, hybrid 10/20 ms,
    // CELT 2.5/5/10/20 ms.
    let per_frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        12..=15 => [480, 960][usize::from(config & 1)],
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = per_frame * frames;
    (frames > 0 && total <= MAX_PACKET_SAMPLES).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::hex;

    #[test]
    fn packet_durations_from_the_toc() {
        // (TOC, count byte) -> samples: every frame size of each mode.
        for (toc, samples) in [
            (0x00, 480),  // SILK NB 10 ms
            (0x08, 960),  // SILK NB 20 ms
            (0x10, 1920), // SILK NB 40 ms
            (0x18, 2880), // SILK NB 60 ms
            (0x58, 2880), // SILK WB 60 ms
            (0x60, 480),  // hybrid SWB 10 ms
            (0x78, 960),  // hybrid FB 20 ms
            (0x80, 120),  // CELT NB 2.5 ms
            (0x88, 240),  // CELT NB 5 ms
            (0xf0, 480),  // CELT FB 10 ms
            (0xf8, 960),  // CELT FB 20 ms (libopus' default)
            (0xfc, 960),  // stereo flag set: same duration
        ] {
            assert_eq!(packet_samples(&[toc, 0xaa]), Some(samples), "{toc:#x}");
            // Codes 1 and 2: two frames.
            assert_eq!(
                packet_samples(&[toc | 1, 0]),
                Some(samples * 2).filter(|&s| s <= 5760)
            );
            assert_eq!(
                packet_samples(&[toc | 2, 0]),
                Some(samples * 2).filter(|&s| s <= 5760)
            );
        }
        // Code 3: the count byte (low 6 bits; VBR and padding bits ignored).
        assert_eq!(packet_samples(&[0xfb, 0x03]), Some(2880));
        assert_eq!(packet_samples(&[0xfb, 0xc6]), Some(5760));
        assert_eq!(packet_samples(&[0x83, 48]), Some(5760)); // 48 x 2.5 ms
                                                             // Refused: empty, no count byte, zero frames, over 120 ms.
        assert_eq!(packet_samples(&[]), None);
        assert_eq!(packet_samples(&[0xfb]), None);
        assert_eq!(packet_samples(&[0xfb, 0x00]), None);
        assert_eq!(packet_samples(&[0xfb, 0x07]), None);
        assert_eq!(packet_samples(&[0x19, 0]), Some(5760)); // 2 x 60 ms: the most
        assert_eq!(packet_samples(&[0x1b, 3]), None); // 3 x 60 ms
        assert_eq!(packet_samples(&[0x83, 49]), None);
    }

    // Enhanced RTMP Opus sequence starts written by FFmpeg 9.0.2 (`-f flv`)
    // + libopus (48 kHz sine), the 5-byte ExAudioTagHeader removed; the
    // `dOps` bodies FFmpeg's MP4 muxer wrote for the same encodes.
    const STEREO: &str = "4f707573486561640102380180bb0000000000";
    const STEREO_DOPS: &str = "000201380000bb80000000";
    /// 5.1: family 1, 4 streams, 2 coupled.
    const SURROUND_51: &str = "4f707573486561640106380180bb00000000010402000401020305";
    const SURROUND_51_DOPS: &str = "000601380000bb800000010402000401020305";

    #[test]
    fn libopus_headers() {
        let h = parse_opus_head(&hex(STEREO)).unwrap();
        assert_eq!(
            (h.version, h.channels, h.pre_skip, h.input_sample_rate),
            (1, 2, 312, 48000)
        );
        assert_eq!((h.output_gain, h.mapping_family, h.streams()), (0, 0, 1));
        assert_eq!(h.to_dops(), hex(STEREO_DOPS));
        assert_eq!(codec_string(&h), "opus");

        let h = parse_opus_head(&hex(SURROUND_51)).unwrap();
        assert_eq!((h.channels, h.mapping_family, h.streams()), (6, 1, 4));
        let m = h.mapping.as_ref().unwrap();
        assert_eq!(m.coupled_streams, 2);
        assert_eq!(m.table, [0, 4, 1, 2, 3, 5]);
        assert_eq!(h.to_dops(), hex(SURROUND_51_DOPS));
    }

    #[test]
    fn dops_round_trip() {
        for (head, dops) in [(STEREO, STEREO_DOPS), (SURROUND_51, SURROUND_51_DOPS)] {
            let h = parse_opus_head(&hex(head)).unwrap();
            assert_eq!(parse_dops(&hex(dops)), Ok(h));
        }
        assert_eq!(
            parse_dops(&hex("010201380000bb80000000")),
            Err(OpusError::UnsupportedDopsVersion(1))
        );
        assert!(matches!(
            parse_dops(&hex("000601380000bb8000000104")),
            Err(OpusError::Truncated { .. })
        ));
    }

    #[test]
    fn fields_and_versions() {
        // Negative gain (-3 dB in Q7.8 = 0xfd00), 44.1 kHz input, version
        // 15 (the last compatible one), trailing bytes ignored.
        let mut v = hex("4f707573486561640f01380144ac000000fd00");
        v.extend_from_slice(&[1, 2, 3]);
        let h = parse_opus_head(&v).unwrap();
        assert_eq!(
            (h.output_gain, h.input_sample_rate, h.version),
            (-768, 44100, 15)
        );
        assert_eq!(&h.to_dops()[8..10], &[0xfd, 0x00]);
        v[8] = 16;
        assert_eq!(parse_opus_head(&v), Err(OpusError::UnsupportedVersion(16)));
    }

    #[test]
    fn errors() {
        let err = |v: Vec<u8>| parse_opus_head(&v).unwrap_err();
        assert!(matches!(err(vec![]), OpusError::Truncated { need: 19, .. }));
        let mut v = hex(STEREO);
        v[0] = b'o';
        assert_eq!(err(v), OpusError::BadMagic);
        // "OpusTags" is the other header, not this one.
        assert_eq!(
            err(b"OpusTags\x01\x02\x38\x01\x80\xbb\0\0\0\0\0".to_vec()),
            OpusError::BadMagic
        );
        for (channels, family) in [(0, 0), (3, 0), (9, 1), (0, 255)] {
            let mut v = hex(STEREO);
            (v[9], v[18]) = (channels, family);
            v.extend(std::iter::repeat_n(0, 2 + usize::from(channels)));
            assert_eq!(err(v), OpusError::BadChannelCount { family, channels });
        }
        let with_family = |family: u8, streams: u8, coupled: u8, table: &[u8]| {
            let mut v = hex(STEREO);
            (v[9], v[18]) = (table.len() as u8, family);
            v.extend_from_slice(&[streams, coupled]);
            v.extend_from_slice(table);
            parse_opus_head(&v)
        };
        let with_table = |streams, coupled, table: &[u8]| with_family(1, streams, coupled, table);
        assert!(with_table(1, 1, &[0, 1]).is_ok());
        assert!(with_table(1, 1, &[255, 255]).is_ok());
        assert_eq!(
            with_table(0, 0, &[0, 1]),
            Err(OpusError::BadStreamCount {
                streams: 0,
                coupled: 0
            })
        );
        assert_eq!(
            with_table(1, 2, &[0, 1]),
            Err(OpusError::BadStreamCount {
                streams: 1,
                coupled: 2
            })
        );
        assert_eq!(
            with_table(1, 1, &[0, 2]),
            Err(OpusError::BadMapping {
                channel: 1,
                value: 2
            })
        );
        let mut v = hex(SURROUND_51);
        v.truncate(v.len() - 1);
        assert!(matches!(
            err(v),
            OpusError::Truncated {
                need: 8,
                have: 7,
                ..
            }
        ));
        // Family 255: any channel count; 200 and 55 is the most.
        let table: Vec<u8> = (0..255).collect();
        assert!(with_family(255, 200, 55, &table).is_ok());
        assert!(with_family(2, 4, 0, &[0, 1, 2, 3]).is_ok());
        let mut v = hex(STEREO);
        (v[9], v[18]) = (1, 3);
        v.extend_from_slice(&[1, 0, 0]);
        assert_eq!(err(v), OpusError::UnsupportedFamily);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut v = b"OpusHead".to_vec();
                v.extend_from_slice(&tail);
                if let Ok(h) = parse_opus_head(&v) {
                    let dops = h.to_dops();
                    prop_assert_eq!(parse_dops(&dops), Ok(OpusHead { version: 1, ..h }));
                }
                let _ = parse_dops(&tail);
            }
        }
    }
}
