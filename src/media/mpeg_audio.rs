//! MPEG-1/2/2.5 audio frame headers (ISO/IEC 11172-3 2.4.1.3, 13818-3):
//! the format of an MP3 track and where each frame ends, for the FLV flags
//! of an MP3 configuration and for cutting an MPEG-TS PES into frames.

/// An MPEG audio frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// 1 for MPEG-1, 2 for MPEG-2 (LSF), 25 for MPEG-2.5.
    pub version: u8,
    /// 1, 2 or 3.
    pub layer: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// Bytes in the frame, this header included; `None` for the free
    /// format (bit rate index 0) and the forbidden index 15, whose length
    /// the header does not give.
    pub frame_len: Option<usize>,
    /// Samples per channel in the frame.
    pub samples: u32,
}

/// Bit rates in kbit/s by bit rate index: MPEG-1 layers I, II, III, then
/// MPEG-2/2.5 layer I and layers II/III.
const BIT_RATES: [[u16; 15]; 5] = [
    [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

/// Reads the frame header `data` starts with, if it is a valid one (sync,
/// no reserved version, layer or sample rate).
pub fn parse_header(data: &[u8]) -> Option<FrameHeader> {
    let h = data.get(..4)?;
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version_bits = (h[1] >> 3) & 3; // 0 = 2.5, 1 reserved, 2 = MPEG-2, 3 = MPEG-1
    let layer_bits = (h[1] >> 1) & 3; // 3 = I, 2 = II, 1 = III, 0 reserved
    let rate_index = usize::from((h[2] >> 2) & 3);
    if version_bits == 1 || layer_bits == 0 || rate_index == 3 {
        return None;
    }
    let layer = 4 - layer_bits;
    let version = match version_bits {
        3 => 1,
        2 => 2,
        _ => 25,
    };
    let base = [44100, 48000, 32000][rate_index];
    let sample_rate = match version {
        1 => base,
        2 => base / 2,
        _ => base / 4,
    };
    let channels = if h[3] >> 6 == 3 { 1 } else { 2 };
    let samples = match (layer, version) {
        (1, _) => 384,
        (2, _) | (3, 1) => 1152,
        _ => 576,
    };
    let table = match (version, layer) {
        (1, l) => usize::from(l - 1),
        (_, 1) => 3,
        _ => 4,
    };
    let bit_rate = u32::from(
        BIT_RATES[table]
            .get(usize::from(h[2] >> 4))
            .copied()
            .unwrap_or(0),
    ) * 1000;
    let padding = u32::from((h[2] >> 1) & 1);
    let frame_len = (bit_rate > 0).then(|| {
        let len = match layer {
            1 => (12 * bit_rate / sample_rate + padding) * 4,
            // Layer III of MPEG-2/2.5 has half the samples, so half the bytes.
            3 if version != 1 => 72 * bit_rate / sample_rate + padding,
            _ => 144 * bit_rate / sample_rate + padding,
        };
        len as usize
    });
    Some(FrameHeader {
        version,
        layer,
        sample_rate,
        channels,
        frame_len,
        samples,
    })
}

/// The legacy FLV flags byte for MP3 of this format (for legacy players of
/// an MP3 track that came without one): FLV has no 48 kHz code, 44 kHz is
/// said.
pub fn flv_flags(sample_rate: u32, channels: u8) -> u8 {
    let (format, rate) = match sample_rate {
        8000 => (14, 0),
        r if r <= 5512 => (2, 0),
        r if r <= 11025 => (2, 1),
        r if r <= 22050 => (2, 2),
        _ => (2, 3),
    };
    (format << 4) | (rate << 2) | 2 | u8::from(channels > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_and_formats() {
        // (header, version, layer, rate, channels, length, samples)
        type Case = ([u8; 4], u8, u8, u32, u8, Option<usize>, u32);
        let cases: [Case; 6] = [
            // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, stereo: 417 bytes,
            // 418 with padding.
            ([0xff, 0xfb, 0x90, 0x64], 1, 3, 44100, 2, Some(417), 1152),
            ([0xff, 0xfb, 0x92, 0x64], 1, 3, 44100, 2, Some(418), 1152),
            // MPEG-1 layer III, 64 kbit/s, 48 kHz, mono.
            ([0xff, 0xfb, 0x54, 0xc4], 1, 3, 48000, 1, Some(192), 1152),
            // MPEG-2 layer III, 64 kbit/s, 24 kHz: 72 * 64000 / 24000.
            ([0xff, 0xf3, 0x84, 0x44], 2, 3, 24000, 2, Some(192), 576),
            // MPEG-1 layer II, 192 kbit/s, 48 kHz.
            ([0xff, 0xfd, 0xa4, 0x04], 1, 2, 48000, 2, Some(576), 1152),
            // Free format: no length.
            ([0xff, 0xfb, 0x04, 0x04], 1, 3, 48000, 2, None, 1152),
        ];
        for (h, version, layer, rate, channels, len, samples) in cases {
            let got = parse_header(&h).unwrap();
            assert_eq!(
                (got.version, got.layer, got.sample_rate, got.channels),
                (version, layer, rate, channels),
                "{h:02x?}"
            );
            assert_eq!((got.frame_len, got.samples), (len, samples), "{h:02x?}");
        }
        // Reserved version, layer and rate; no sync.
        for h in [
            [0xff, 0xeb, 0x90, 0x64],
            [0xff, 0xf9, 0x90, 0x64],
            [0xff, 0xfb, 0x9c, 0x64],
            [0xfe, 0xfb, 0x90, 0x64],
        ] {
            assert_eq!(parse_header(&h), None, "{h:02x?}");
        }
        assert_eq!(parse_header(&[0xff, 0xfb, 0x90]), None);
    }

    #[test]
    fn flv_flags_as_ffmpeg_writes_them() {
        assert_eq!(flv_flags(44100, 2), 0x2f);
        assert_eq!(flv_flags(22050, 1), 0x2a);
        assert_eq!(flv_flags(8000, 1), 0xe2);
    }
}
