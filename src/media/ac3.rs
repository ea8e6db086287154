//! AC-3 and E-AC-3: sync frame headers (ATSC A/52 5.3 and Annex E.1.2) and
//! the `dac3` and `dec3` box bodies (ETSI TS 102 366 Annex F) built from
//! them.
//!
//! Enhanced RTMP sends no sequence start for `ac-3` and `ec-3`: the
//! configuration is in every sync frame, so it is read from the first coded
//! frame. Headers are read with the bounded bit reader; an E-AC-3 access
//! unit is walked frame by frame, each frame's size checked against what is
//! left. Nothing is allocated but the substream list (at most 8).

use super::bits::{BitError, BitReader};

/// Why a sync frame could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Ac3Error {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("no AC-3 sync word")]
    NoSyncWord,
    #[error("reserved sample rate code")]
    ReservedSampleRate,
    #[error("frame size code {0} out of range")]
    BadFrameSizeCode(u8),
    #[error("unsupported bit stream id {0}")]
    UnsupportedBsid(u8),
    #[error("reserved E-AC-3 stream type")]
    ReservedStreamType,
    #[error("E-AC-3 frame of {0} bytes is shorter than its header")]
    FrameTooShort(usize),
    #[error("E-AC-3 access unit without an independent substream first")]
    NoIndependentSubstream,
    #[error("E-AC-3 substreams out of order: {0}")]
    BadSubstreams(&'static str),
    #[error("sync frame header ends early")]
    HeaderTruncated,
}

impl From<BitError> for Ac3Error {
    /// Headers are read with fixed-width reads: running out is all.
    fn from(_: BitError) -> Self {
        Ac3Error::HeaderTruncated
    }
}

const SYNC_WORD: u32 = 0x0b77;

/// Sample rates by `fscod`, and by `fscod2` for E-AC-3's reduced rates.
const RATES: [u32; 3] = [48_000, 44_100, 32_000];
const REDUCED_RATES: [u32; 3] = [24_000, 22_050, 16_000];

/// Nominal bit rates (kbit/s) by `frmsizecod / 2` (A/52 Table 5.18).
const BIT_RATES: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

/// Full-bandwidth channels by `acmod` (1+1 dual mono counts two).
const ACMOD_CHANNELS: [u8; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

/// The smallest E-AC-3 frame a header fits in (what FFmpeg requires).
const MIN_FRAME: usize = 7;

/// An AC-3 sync frame header (`bsid` up to 8): syncinfo and the start of
/// the bit stream information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ac3Header {
    pub fscod: u8,
    pub frmsizecod: u8,
    pub bsid: u8,
    /// Bit stream mode: 0 main, 1 music and effects, 2 visually impaired,
    /// 3 hearing impaired, 4 dialogue, 5 commentary, 6 emergency, 7 voice
    /// over / karaoke.
    pub bsmod: u8,
    pub acmod: u8,
    pub lfeon: bool,
    pub sample_rate: u32,
    /// Bytes, this header included.
    pub frame_size: usize,
    /// kbit/s.
    pub bit_rate: u32,
}

impl Ac3Header {
    pub fn channels(&self) -> u8 {
        ACMOD_CHANNELS[usize::from(self.acmod & 7)] + u8::from(self.lfeon)
    }

    /// The `dac3` box body (TS 102 366 F.4): fscod, bsid, bsmod, acmod,
    /// lfeon, bit_rate_code, 5 reserved bits.
    pub fn to_dac3(&self) -> [u8; 3] {
        let v = u32::from(self.fscod & 3) << 22
            | u32::from(self.bsid & 0x1f) << 17
            | u32::from(self.bsmod & 7) << 14
            | u32::from(self.acmod & 7) << 11
            | u32::from(self.lfeon) << 10
            | u32::from((self.frmsizecod >> 1) & 0x1f) << 5;
        let [_, a, b, c] = v.to_be_bytes();
        [a, b, c]
    }
}

/// An E-AC-3 sync frame header (`bsid` 11 to 16), through `bsmod` when the
/// frame carries informational metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eac3Header {
    /// 0 independent, 1 dependent, 2 independent converted from AC-3.
    pub strmtyp: u8,
    pub substreamid: u8,
    /// Bytes, this header included.
    pub frame_size: usize,
    /// 3 means a reduced rate, given by `fscod2`.
    pub fscod: u8,
    pub fscod2: Option<u8>,
    /// Audio blocks of 256 samples in this frame: 1, 2, 3 or 6.
    pub blocks: u8,
    pub acmod: u8,
    pub lfeon: bool,
    pub bsid: u8,
    /// 0 (main) unless the frame's informational metadata says otherwise.
    pub bsmod: u8,
    /// A dependent substream's custom channel map, if it has one.
    pub chanmap: Option<u16>,
    pub sample_rate: u32,
}

impl Eac3Header {
    pub fn channels(&self) -> u8 {
        ACMOD_CHANNELS[usize::from(self.acmod & 7)] + u8::from(self.lfeon)
    }

    /// This frame's bit rate, bits per second.
    pub fn bit_rate(&self) -> u64 {
        let blocks = u64::from(self.blocks).max(1);
        self.frame_size as u64 * 8 * u64::from(self.sample_rate) / (blocks * 256)
    }
}

/// One sync frame's header, AC-3 or E-AC-3 by its `bsid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncFrame {
    Ac3(Ac3Header),
    Eac3(Eac3Header),
}

impl SyncFrame {
    pub fn frame_size(&self) -> usize {
        match self {
            SyncFrame::Ac3(h) => h.frame_size,
            SyncFrame::Eac3(h) => h.frame_size,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            SyncFrame::Ac3(h) => h.sample_rate,
            SyncFrame::Eac3(h) => h.sample_rate,
        }
    }

    pub fn channels(&self) -> u8 {
        match self {
            SyncFrame::Ac3(h) => h.channels(),
            SyncFrame::Eac3(h) => h.channels(),
        }
    }

    /// Samples per channel in this frame: 1536 for AC-3.
    pub fn samples(&self) -> u32 {
        match self {
            SyncFrame::Ac3(_) => 1536,
            SyncFrame::Eac3(h) => u32::from(h.blocks) * 256,
        }
    }
}

/// Reads the header of the sync frame at the start of `data` (the frame
/// need not be whole). `bsid` sits at the same place in both syntaxes and
/// picks the one to read; 9 and 10 (AC-3 at half and quarter rates) are
/// refused.
pub fn parse_sync_frame(data: &[u8]) -> Result<SyncFrame, Ac3Error> {
    if data.len() < 6 {
        return Err(Ac3Error::Truncated {
            what: "sync frame header",
            need: 6,
            have: data.len(),
        });
    }
    if u32::from(u16::from_be_bytes([data[0], data[1]])) != SYNC_WORD {
        return Err(Ac3Error::NoSyncWord);
    }
    match data[5] >> 3 {
        0..=8 => parse_ac3(data).map(SyncFrame::Ac3),
        11..=16 => parse_eac3(data).map(SyncFrame::Eac3),
        bsid => Err(Ac3Error::UnsupportedBsid(bsid)),
    }
}

/// syncinfo() and bsi() up to `lfeon` (A/52 5.3.1, 5.3.2).
fn parse_ac3(data: &[u8]) -> Result<Ac3Header, Ac3Error> {
    let mut r = BitReader::new(data);
    r.skip(32)?; // syncword, crc1
    let fscod = r.bits(2)? as u8;
    let sample_rate = *RATES
        .get(usize::from(fscod))
        .ok_or(Ac3Error::ReservedSampleRate)?;
    let frmsizecod = r.bits(6)? as u8;
    let bit_rate = *BIT_RATES
        .get(usize::from(frmsizecod >> 1))
        .ok_or(Ac3Error::BadFrameSizeCode(frmsizecod))?;
    // Words of 16 bits: 2 per kbit/s at 48 kHz, 3 at 32 kHz; at 44.1 kHz
    // the exact rate rounded down, odd codes one word more (Table 5.18).
    let words = match fscod {
        0 => 2 * bit_rate,
        1 => bit_rate * 96_000 / 44_100 + u32::from(frmsizecod & 1),
        _ => 3 * bit_rate,
    };
    let bsid = r.bits(5)? as u8;
    let bsmod = r.bits(3)? as u8;
    let acmod = r.bits(3)? as u8;
    if acmod & 1 != 0 && acmod != 1 {
        r.skip(2)?; // cmixlev
    }
    if acmod & 4 != 0 {
        r.skip(2)?; // surmixlev
    }
    if acmod == 2 {
        r.skip(2)?; // dsurmod
    }
    let lfeon = r.flag()?;
    Ok(Ac3Header {
        fscod,
        frmsizecod,
        bsid,
        bsmod,
        acmod,
        lfeon,
        sample_rate,
        frame_size: words as usize * 2,
        bit_rate,
    })
}

/// syncinfo() and bsi() through `bsmod` (A/52 E.1.2.1, E.1.2.2).
fn parse_eac3(data: &[u8]) -> Result<Eac3Header, Ac3Error> {
    let mut r = BitReader::new(data);
    r.skip(16)?; // syncword
    let strmtyp = r.bits(2)? as u8;
    if strmtyp == 3 {
        return Err(Ac3Error::ReservedStreamType);
    }
    let substreamid = r.bits(3)? as u8;
    let frame_size = (r.bits(11)? as usize + 1) * 2;
    if frame_size < MIN_FRAME {
        return Err(Ac3Error::FrameTooShort(frame_size));
    }
    let fscod = r.bits(2)? as u8;
    let (fscod2, numblkscod, sample_rate) = if fscod == 3 {
        let fscod2 = r.bits(2)? as u8;
        let rate = *REDUCED_RATES
            .get(usize::from(fscod2))
            .ok_or(Ac3Error::ReservedSampleRate)?;
        (Some(fscod2), 3, rate)
    } else {
        (None, r.bits(2)? as u8, RATES[usize::from(fscod)])
    };
    let blocks = [1, 2, 3, 6][usize::from(numblkscod)];
    let acmod = r.bits(3)? as u8;
    let lfeon = r.flag()?;
    let bsid = r.bits(5)? as u8;
    r.skip(5)?; // dialnorm
    if r.flag()? {
        r.skip(8)?; // compr
    }
    if acmod == 0 {
        r.skip(5)?; // dialnorm2
        if r.flag()? {
            r.skip(8)?; // compr2
        }
    }
    let mut chanmap = None;
    if strmtyp == 1 && r.flag()? {
        chanmap = Some(r.bits(16)? as u16);
    }
    if r.flag()? {
        skip_mixing_metadata(&mut r, strmtyp, acmod, lfeon, numblkscod, blocks)?;
    }
    let bsmod = if r.flag()? { r.bits(3)? as u8 } else { 0 };
    Ok(Eac3Header {
        strmtyp,
        substreamid,
        frame_size,
        fscod,
        fscod2,
        blocks,
        acmod,
        lfeon,
        bsid,
        bsmod,
        chanmap,
        sample_rate,
    })
}

/// The mixing metadata of an E-AC-3 bsi (`mixmdate` set), skipped: it
/// stands between the header and `bsmod`.
fn skip_mixing_metadata(
    r: &mut BitReader<'_>,
    strmtyp: u8,
    acmod: u8,
    lfeon: bool,
    numblkscod: u8,
    blocks: u8,
) -> Result<(), Ac3Error> {
    if acmod > 2 {
        r.skip(2)?; // dmixmod
    }
    if acmod & 1 != 0 && acmod > 2 {
        r.skip(6)?; // ltrtcmixlev, lorocmixlev
    }
    if acmod & 4 != 0 {
        r.skip(6)?; // ltrtsurmixlev, lorosurmixlev
    }
    if lfeon && r.flag()? {
        r.skip(5)?; // lfemixlevcod
    }
    if strmtyp != 0 {
        return Ok(());
    }
    if r.flag()? {
        r.skip(6)?; // pgmscl
    }
    if acmod == 0 && r.flag()? {
        r.skip(6)?; // pgmscl2
    }
    if r.flag()? {
        r.skip(6)?; // extpgmscl
    }
    match r.bits(2)? {
        1 => r.skip(5)?, // premixcmpsel, drcsrc, premixcmpscl
        2 => r.skip(12)?,
        3 => {
            let len = r.bits(5)? + 2; // mixdeflen: bytes of mixdata
            r.skip(8 * len)?;
        }
        _ => {}
    }
    if acmod < 2 {
        if r.flag()? {
            r.skip(14)?; // panmean, paninfo
        }
        if acmod == 0 && r.flag()? {
            r.skip(14)?; // panmean2, paninfo2
        }
    }
    if r.flag()? {
        // frmmixcfginfoe
        if numblkscod == 0 {
            r.skip(5)?;
        } else {
            for _ in 0..blocks {
                if r.flag()? {
                    r.skip(5)?;
                }
            }
        }
    }
    Ok(())
}

/// One independent substream of an E-AC-3 stream, as `dec3` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eac3Substream {
    pub fscod: u8,
    pub bsid: u8,
    pub bsmod: u8,
    pub acmod: u8,
    pub lfeon: bool,
    pub num_dep_sub: u8,
    /// Channel locations the dependent substreams add (TS 102 366 Table
    /// F.6, bit 0 = Lc/Rc pair … bit 8 = LFE2).
    pub chan_loc: u16,
}

/// What an E-AC-3 access unit says about the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eac3Config {
    /// kbit/s of all the substreams, rounded.
    pub data_rate: u16,
    /// One to eight, in substream id order.
    pub substreams: Vec<Eac3Substream>,
    pub sample_rate: u32,
    /// Output channels: substream 0's, plus those its dependents add.
    pub channels: u8,
    /// Samples per channel in one frame of substream 0.
    pub samples: u32,
}

/// Channels each `chan_loc` bit adds (pairs are two).
const CHAN_LOC_CHANNELS: [u8; 9] = [2, 2, 1, 1, 2, 2, 2, 1, 1];

/// Reads the sync frames of one E-AC-3 access unit (an Enhanced RTMP coded
/// frame): independent substreams in id order, each followed by its
/// dependent substreams, until the data ends or substream 0 comes round
/// again. An AC-3 frame may stand as independent substream 0 (an AC-3 core
/// with E-AC-3 extensions). Every frame must be whole.
pub fn parse_eac3_access_unit(data: &[u8]) -> Result<Eac3Config, Ac3Error> {
    let mut substreams: Vec<Eac3Substream> = Vec::new();
    let mut pos = 0;
    let mut bits_per_second = 0u64;
    let mut first: Option<SyncFrame> = None;
    while pos < data.len() {
        let rest = &data[pos..];
        let size = parse_sync_frame(rest)?.frame_size();
        let Some(frame) = rest.get(..size) else {
            return Err(Ac3Error::Truncated {
                what: "sync frame",
                need: size,
                have: rest.len(),
            });
        };
        // Read again within the frame's own bytes.
        let header = parse_sync_frame(frame)?;
        let (independent, id) = match header {
            SyncFrame::Ac3(_) => (true, 0),
            SyncFrame::Eac3(h) => (h.strmtyp != 1, h.substreamid),
        };
        if independent {
            if usize::from(id) < substreams.len() {
                break; // the next audio blocks of the same program
            }
            if usize::from(id) != substreams.len() {
                return Err(Ac3Error::BadSubstreams("independent substream ids skip"));
            }
            substreams.push(match header {
                SyncFrame::Ac3(h) => Eac3Substream {
                    fscod: h.fscod,
                    bsid: h.bsid,
                    bsmod: h.bsmod,
                    acmod: h.acmod,
                    lfeon: h.lfeon,
                    num_dep_sub: 0,
                    chan_loc: 0,
                },
                SyncFrame::Eac3(h) => Eac3Substream {
                    fscod: h.fscod,
                    bsid: h.bsid,
                    bsmod: h.bsmod,
                    acmod: h.acmod,
                    lfeon: h.lfeon,
                    num_dep_sub: 0,
                    chan_loc: 0,
                },
            });
        } else {
            let parent = substreams
                .last_mut()
                .ok_or(Ac3Error::NoIndependentSubstream)?;
            if parent.num_dep_sub == 15 {
                return Err(Ac3Error::BadSubstreams("more than 15 dependent substreams"));
            }
            parent.num_dep_sub += 1;
            if let SyncFrame::Eac3(Eac3Header {
                chanmap: Some(map), ..
            }) = header
            {
                parent.chan_loc |= chan_loc(map);
            }
        }
        bits_per_second += match header {
            SyncFrame::Ac3(h) => u64::from(h.bit_rate) * 1000,
            SyncFrame::Eac3(h) => h.bit_rate(),
        };
        first.get_or_insert(header);
        pos += size;
    }
    let (Some(first), Some(main)) = (first, substreams.first()) else {
        return Err(Ac3Error::NoIndependentSubstream);
    };
    let added: u8 = (0..9)
        .filter(|bit| main.chan_loc & (1 << bit) != 0)
        .map(|bit| CHAN_LOC_CHANNELS[bit])
        .sum();
    Ok(Eac3Config {
        // 13 bits in dec3; over 8 Gbit/s is not a real stream.
        data_rate: (bits_per_second.saturating_add(500) / 1000).min(0x1fff) as u16,
        substreams,
        sample_rate: first.sample_rate(),
        channels: first.channels().saturating_add(added),
        samples: first.samples(),
    })
}

/// `chanmap` bits (A/52 Table E.1.4: the most significant bit is location
/// 0, Left) and the `chan_loc` bits (TS 102 366 Table F.6, bit 0 = Lc/Rc
/// pair) of the same channel locations. Locations that the independent
/// substream already has (L, C, R, Ls, Rs, LFE) and Lts/Rts have none.
const CHANMAP_TO_CHAN_LOC: [(u16, u16); 9] = [
    (1 << (15 - 5), 1 << 0),  // Lc/Rc pair
    (1 << (15 - 6), 1 << 1),  // Lrs/Rrs pair
    (1 << (15 - 7), 1 << 2),  // Cs
    (1 << (15 - 8), 1 << 3),  // Ts
    (1 << (15 - 9), 1 << 4),  // Lsd/Rsd pair
    (1 << (15 - 10), 1 << 5), // Lw/Rw pair
    (1 << (15 - 11), 1 << 6), // Lvh/Rvh pair
    (1 << (15 - 12), 1 << 7), // Cvh
    (1 << (15 - 14), 1 << 8), // LFE2
];

/// A dependent substream's `chanmap` as `chan_loc` bits.
fn chan_loc(chanmap: u16) -> u16 {
    CHANMAP_TO_CHAN_LOC
        .iter()
        .filter(|(map, _)| chanmap & map != 0)
        .fold(0, |loc, (_, bit)| loc | bit)
}

impl Eac3Config {
    /// The `dec3` box body (TS 102 366 F.6).
    pub fn to_dec3(&self) -> Vec<u8> {
        let mut bits = BitSink::default();
        bits.put(u32::from(self.data_rate), 13);
        bits.put(self.substreams.len().saturating_sub(1) as u32, 3);
        for s in &self.substreams {
            bits.put(u32::from(s.fscod), 2);
            bits.put(u32::from(s.bsid), 5);
            bits.put(0, 1); // reserved
            bits.put(0, 1); // asvc: castgate marks no associated service
            bits.put(u32::from(s.bsmod), 3);
            bits.put(u32::from(s.acmod), 3);
            bits.put(u32::from(s.lfeon), 1);
            bits.put(0, 3); // reserved
            bits.put(u32::from(s.num_dep_sub), 4);
            if s.num_dep_sub > 0 {
                bits.put(u32::from(s.chan_loc), 9);
            } else {
                bits.put(0, 1); // reserved
            }
        }
        bits.out
    }
}

/// MSB-first writer for the `dec3` fields (whole bytes by construction).
#[derive(Default)]
struct BitSink {
    out: Vec<u8>,
    used: u32,
}

impl BitSink {
    fn put(&mut self, value: u32, n: u32) {
        for i in (0..n).rev() {
            if self.used.is_multiple_of(8) {
                self.out.push(0);
            }
            if (value >> i) & 1 == 1 {
                if let Some(last) = self.out.last_mut() {
                    *last |= 0x80 >> (self.used % 8);
                }
            }
            self.used += 1;
        }
    }
}

/// `ac-3` or `ec-3`, the sample entry names that are the codecs parameter.
pub fn codec_string(frame: &SyncFrame) -> String {
    match frame {
        SyncFrame::Ac3(_) => "ac-3",
        SyncFrame::Eac3(_) => "ec-3",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bits::hex;

    // Sync frame starts from FFmpeg 9.0.2's native encoders (`-c:a ac3` /
    // `-c:a eac3`, sine input, raw `.ac3`/`.eac3` output), with the `dac3`
    // / `dec3` bodies its MP4 muxer wrote for the same frames (`-c copy`).
    /// AC-3 48 kHz stereo 192 kbit/s; dac3 101140.
    const AC3_STEREO: &str = "0b77d112144043e106f46370";
    /// AC-3 48 kHz 5.1 448 kbit/s; dac3 103de0.
    const AC3_51: &str = "0b77e60f1e40ebf8403eff99";
    /// AC-3 48 kHz 3/0 320 kbit/s; dac3 1019a0.
    const AC3_30: &str = "0b776fba1a406be103bf99c4";
    /// AC-3 48 kHz mono commentary (`-audio_service_type co`); dac3 1148c0.
    const AC3_COMMENTARY: &str = "0b7755b80c452f842bc21bfb";
    /// AC-3 44.1 kHz mono 96 kbit/s: frames of 208 and 209 words.
    const AC3_44K_EVEN: &str = "0b77909b4c402f842be21be2";
    const AC3_44K_ODD: &str = "0b7755c34d402f8429e3fc00";
    /// E-AC-3 48 kHz stereo 192 kbit/s; dec3 0600200400.
    const EAC3_STEREO: &str = "0b77017f3487c00020842108";
    /// E-AC-3 48 kHz 5.1 448 kbit/s; dec3 0e00200f00.
    const EAC3_51: &str = "0b77037f3f87c00020842108";
    /// E-AC-3 32 kHz stereo 96 kbit/s; dec3 0300a00400.
    const EAC3_32K: &str = "0b77011fb487c00020842108";
    /// E-AC-3 5.1 with Lt/Rt downmix levels (mixing metadata) and visually
    /// impaired service (`-audio_service_type vi`): bsmod 2 after it;
    /// dec3 0e00202f00.
    const EAC3_51_MIX_VI: &str = "0b77037f3f87d6dd80a4000104210842104210841820fe60";
    /// E-AC-3 44.1 kHz mono commentary: 416-byte frames; dec3 0300605200.
    const EAC3_44K_COMMENTARY: &str = "0b7700cf7287cd4000420c98e21be2b90df577cfdf3e7cfd";

    fn ac3(s: &str) -> Ac3Header {
        match parse_sync_frame(&hex(s)).unwrap() {
            SyncFrame::Ac3(h) => h,
            f => panic!("not AC-3: {f:?}"),
        }
    }

    /// A whole frame: the real header padded to its frame size (the rest
    /// of the frame is audio data the parser does not read).
    fn whole(s: &str) -> Vec<u8> {
        let mut v = hex(s);
        let size = parse_sync_frame(&v).unwrap().frame_size();
        v.resize(size, 0);
        v
    }

    fn dec3(frames: &[&str]) -> Eac3Config {
        let au: Vec<u8> = frames.iter().flat_map(|f| whole(f)).collect();
        parse_eac3_access_unit(&au).unwrap()
    }

    #[test]
    fn ac3_headers_and_dac3() {
        for (frame, dac3, rate, channels, size, bsmod) in [
            (AC3_STEREO, "101140", 48000, 2, 768, 0),
            (AC3_51, "103de0", 48000, 6, 1792, 0),
            (AC3_30, "1019a0", 48000, 3, 1280, 0),
            (AC3_COMMENTARY, "1148c0", 48000, 1, 384, 5),
            // (No MP4 of these: the dac3 is worked out from the fields.)
            (AC3_44K_EVEN, "5008c0", 44100, 1, 416, 0),
            (AC3_44K_ODD, "5008c0", 44100, 1, 418, 0),
        ] {
            let h = ac3(frame);
            assert_eq!(h.to_dac3()[..], hex(dac3)[..], "{frame}");
            assert_eq!((h.sample_rate, h.channels()), (rate, channels), "{frame}");
            assert_eq!((h.frame_size, h.bsmod, h.bsid), (size, bsmod, 8), "{frame}");
            let f = SyncFrame::Ac3(h);
            assert_eq!((codec_string(&f), f.samples()), ("ac-3".to_string(), 1536));
        }
        assert_eq!(ac3(AC3_51).bit_rate, 448);
        assert!(ac3(AC3_51).lfeon);
    }

    #[test]
    fn eac3_headers_and_dec3() {
        for (frame, dec3_body, rate, channels, bsmod) in [
            (EAC3_STEREO, "0600200400", 48000, 2, 0),
            (EAC3_51, "0e00200f00", 48000, 6, 0),
            (EAC3_32K, "0300a00400", 32000, 2, 0),
            (EAC3_51_MIX_VI, "0e00202f00", 48000, 6, 2),
            (EAC3_44K_COMMENTARY, "0300605200", 44100, 1, 5),
        ] {
            let SyncFrame::Eac3(h) = parse_sync_frame(&hex(frame)).unwrap() else {
                panic!("not E-AC-3");
            };
            assert_eq!((h.strmtyp, h.substreamid, h.bsid, h.blocks), (0, 0, 16, 6));
            assert_eq!(h.bsmod, bsmod, "{frame}");
            let c = dec3(&[frame]);
            assert_eq!(c.to_dec3(), hex(dec3_body), "{frame}");
            assert_eq!(
                (c.sample_rate, c.channels, c.samples),
                (rate, channels, 1536)
            );
            assert_eq!(codec_string(&SyncFrame::Eac3(h)), "ec-3");
        }
    }

    /// Frame sizes at 44.1 kHz alternate: the data rate is rounded, so
    /// both give FFmpeg's 96 kbit/s.
    #[test]
    fn data_rate_rounding() {
        let mut odd = hex(EAC3_44K_COMMENTARY);
        odd[3] = 0xd0; // 418 bytes
        assert_eq!(dec3(&[EAC3_44K_COMMENTARY]).data_rate, 96);
        let mut v = odd.clone();
        v.resize(418, 0);
        assert_eq!(parse_eac3_access_unit(&v).unwrap().data_rate, 96);
    }

    /// No encoder here makes dependent substreams (7.1): a 5.1 independent
    /// frame followed by a hand-made dependent one with a channel map of
    /// Lrs/Rrs (map location 6) and LFE2 (14).
    #[test]
    fn dependent_substreams() {
        // strmtyp 1, substream 0, 64 words, 48 kHz, 6 blocks, acmod 2,
        // lfeon 0, bsid 16, dialnorm, compre 0, chanmape 1, chanmap.
        let map: u16 = (1 << (15 - 6)) | (1 << (15 - 14));
        let mut w = crate::media::bits::BitWriter::default();
        w.bits(0x0b77, 16);
        w.bits(1, 2);
        w.bits(0, 3);
        w.bits(63, 11);
        w.bits(0, 2);
        w.bits(3, 2);
        w.bits(2, 3);
        w.bits(0, 1);
        w.bits(16, 5);
        w.bits(31, 5);
        w.bits(0, 1);
        w.bits(1, 1);
        w.bits(u64::from(map), 16);
        w.bits(0, 2); // mixmdate, infomdate
        let mut dependent = w.finish();
        dependent.resize(128, 0);
        let mut au = whole(EAC3_51);
        au.extend_from_slice(&dependent);
        let c = parse_eac3_access_unit(&au).unwrap();
        assert_eq!(c.substreams.len(), 1);
        let s = c.substreams[0];
        assert_eq!((s.num_dep_sub, s.chan_loc), (1, 0b1_0000_0010));
        assert_eq!(c.channels, 6 + 2 + 1);
        // 448 kbit/s + 128 bytes every 32 ms.
        assert_eq!(c.data_rate, 480);
        let body = c.to_dec3();
        assert_eq!(body.len(), 2 + 4);
        assert_eq!(body[4] & 0x1e, 1 << 1, "num_dep_sub 1");
        assert_eq!(
            u16::from_be_bytes([body[4], body[5]]) & 0x1ff,
            0b1_0000_0010
        );
        // A dependent substream first has no parent.
        assert_eq!(
            parse_eac3_access_unit(&dependent),
            Err(Ac3Error::NoIndependentSubstream)
        );
    }

    #[test]
    fn access_unit_walking() {
        // Two frames of substream 0: the second starts the next blocks.
        let mut au = whole(EAC3_STEREO);
        au.extend(whole(EAC3_STEREO));
        assert_eq!(parse_eac3_access_unit(&au).unwrap().substreams.len(), 1);
        // Independent substream 1 after 0.
        let mut second = whole(EAC3_STEREO);
        second[2] |= 0b0000_1000; // substreamid 1
        let mut au = whole(EAC3_STEREO);
        au.extend_from_slice(&second);
        let c = parse_eac3_access_unit(&au).unwrap();
        assert_eq!(c.substreams.len(), 2);
        assert_eq!(c.to_dec3()[1] & 7, 1, "num_ind_sub is the count minus one");
        assert_eq!(c.data_rate, 384);
        // Substream 1 alone: the ids skip 0.
        assert_eq!(
            parse_eac3_access_unit(&second),
            Err(Ac3Error::BadSubstreams("independent substream ids skip"))
        );
        // An AC-3 core as substream 0.
        let c = parse_eac3_access_unit(&whole(AC3_51)).unwrap();
        assert_eq!((c.substreams[0].bsid, c.data_rate, c.channels), (8, 448, 6));
        // A frame cut short, and garbage after a frame.
        let cut = &whole(EAC3_STEREO)[..700];
        assert!(matches!(
            parse_eac3_access_unit(cut),
            Err(Ac3Error::Truncated { need: 768, .. })
        ));
        let mut au = whole(EAC3_STEREO);
        au.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(parse_eac3_access_unit(&au), Err(Ac3Error::NoSyncWord));
        assert_eq!(
            parse_eac3_access_unit(&[]),
            Err(Ac3Error::NoIndependentSubstream)
        );
    }

    #[test]
    fn header_errors() {
        let err = |v: Vec<u8>| parse_sync_frame(&v).unwrap_err();
        assert!(matches!(err(vec![0x0b, 0x77]), Ac3Error::Truncated { .. }));
        assert_eq!(err(hex("0b78d1121440")), Ac3Error::NoSyncWord);
        let mut v = hex(AC3_STEREO);
        v[4] = 0xd4; // fscod 3
        assert_eq!(err(v), Ac3Error::ReservedSampleRate);
        let mut v = hex(AC3_STEREO);
        v[4] = 0x26; // frmsizecod 38
        assert_eq!(err(v), Ac3Error::BadFrameSizeCode(38));
        for bsid in [9u8, 10, 17, 31] {
            let mut v = hex(AC3_STEREO);
            v[5] = (bsid << 3) | (v[5] & 7);
            assert_eq!(err(v), Ac3Error::UnsupportedBsid(bsid));
        }
        let mut v = hex(EAC3_STEREO);
        v[2] |= 0xc0;
        assert_eq!(err(v), Ac3Error::ReservedStreamType);
        let mut v = hex(EAC3_STEREO);
        (v[2], v[3]) = (0, 1); // 2 words
        assert_eq!(err(v), Ac3Error::FrameTooShort(4));
        let mut v = hex(EAC3_STEREO);
        v[4] = 0xf4; // fscod 3, fscod2 3
        assert_eq!(err(v), Ac3Error::ReservedSampleRate);
        // Reduced rate: fscod 3, fscod2 0 = 24 kHz, six blocks implied.
        let mut v = hex(EAC3_STEREO);
        v[4] = 0xc4;
        let SyncFrame::Eac3(h) = parse_sync_frame(&v).unwrap() else {
            panic!()
        };
        assert_eq!((h.sample_rate, h.fscod2, h.blocks), (24000, Some(0), 6));
        // Headers cut anywhere fail cleanly.
        for frame in [AC3_51, EAC3_51_MIX_VI, EAC3_44K_COMMENTARY] {
            let v = hex(frame);
            for cut in 0..v.len() {
                let _ = parse_sync_frame(&v[..cut]);
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_frames_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
                let mut v = vec![0x0b, 0x77];
                v.extend_from_slice(&tail);
                if let Ok(f) = parse_sync_frame(&v) {
                    prop_assert!(f.frame_size() >= MIN_FRAME);
                    prop_assert!(f.channels() >= 1 && f.channels() <= 6);
                    if let SyncFrame::Ac3(h) = f {
                        let d = h.to_dac3();
                        prop_assert_eq!(d[2] & 0x1f, 0);
                    }
                }
                if let Ok(c) = parse_eac3_access_unit(&v) {
                    prop_assert!(!c.substreams.is_empty() && c.substreams.len() <= 8);
                    let _ = c.to_dec3();
                }
            }
        }
    }
}
