//! H.264 and HEVC access units: Annex B in, 4-byte length prefixes out (as
//! FLV and MP4 carry them), the in-band parameter sets into the track's
//! decoder configuration record.
//!
//! A configuration is built from the first access unit that has a whole
//! set (SPS and PPS; VPS, SPS and PPS), and again from a keyframe whose
//! parameter sets differ from it. Parameter sets that the configuration
//! holds are dropped from the frames (they travel in the record, so the
//! packager can say `hvc1`); any other stays in band, where decoders take
//! it. Access unit delimiters are dropped (FLV and MP4 frames have none);
//! SEI and everything else are kept.

use crate::media::{avc, hevc, Codec, CodecConfig};

/// What a video codec's NAL unit headers say.
#[derive(Clone, Copy)]
struct Syntax {
    nal_type: fn(u8) -> u8,
    aud: u8,
    vps: Option<u8>,
    sps: u8,
    pps: u8,
    is_key: fn(u8) -> bool,
}

const H264: Syntax = Syntax {
    nal_type: |b| b & 0x1f,
    aud: 9,
    vps: None,
    sps: 7,
    pps: 8,
    // IDR.
    is_key: |t| t == 5,
};

const HEVC: Syntax = Syntax {
    nal_type: |b| (b >> 1) & 0x3f,
    aud: 35,
    vps: Some(hevc::NAL_VPS),
    sps: hevc::NAL_SPS,
    pps: hevc::NAL_PPS,
    // IRAP: BLA, IDR, CRA and the reserved IRAP types.
    is_key: |t| (16..=23).contains(&t),
};

/// Parameter sets of one kind kept from an access unit (more than any
/// record takes is an error, not an allocation).
const MAX_SETS: usize = 31;

/// One access unit, converted.
#[derive(Debug, Default)]
pub(super) struct AccessUnit {
    /// A configuration to send before the frame.
    pub new_config: Option<CodecConfig>,
    /// Why the access unit's parameter sets made no configuration.
    pub bad_parameter_sets: Option<&'static str>,
    /// Length-prefixed NAL units; empty when the unit held only what was
    /// dropped.
    pub data: Vec<u8>,
    pub keyframe: bool,
}

/// Converts the Annex B access unit `es` of `codec` (H.264 or HEVC), given
/// the track's configuration. `None`: no NAL unit in it.
pub(super) fn convert(
    codec: Codec,
    es: &[u8],
    current: Option<&CodecConfig>,
) -> Option<AccessUnit> {
    let syntax = match codec {
        Codec::Hevc => HEVC,
        _ => H264,
    };
    let nal_type = |u: &[u8]| (syntax.nal_type)(u[0]);
    annex_b(es).next()?;
    let mut au = AccessUnit {
        keyframe: annex_b(es).any(|u| (syntax.is_key)(nal_type(u))),
        ..AccessUnit::default()
    };
    let (mut vps, mut sps, mut pps) = (Vec::<&[u8]>::new(), Vec::new(), Vec::new());
    for u in annex_b(es) {
        let t = nal_type(u);
        let list = match t {
            _ if Some(t) == syntax.vps => &mut vps,
            _ if t == syntax.sps => &mut sps,
            _ if t == syntax.pps => &mut pps,
            _ => continue,
        };
        if !list.contains(&u) {
            if list.len() == MAX_SETS {
                au.bad_parameter_sets = Some("too many parameter sets");
                continue;
            }
            list.push(u);
        }
    }
    let held = |c: Option<&CodecConfig>, t: u8, u: &[u8]| match c {
        Some(CodecConfig::Avc(a)) => match t {
            7 => a.sps.iter().any(|s| s == u),
            8 => a.pps.iter().any(|s| s == u),
            _ => false,
        },
        Some(CodecConfig::Hevc(h)) => h.units(t).any(|s| s == u),
        _ => false,
    };
    let current = current.filter(|c| c.codec() == codec);
    let whole = !sps.is_empty() && !pps.is_empty() && (syntax.vps.is_none() || !vps.is_empty());
    let all_held = [
        (syntax.vps, &vps),
        (Some(syntax.sps), &sps),
        (Some(syntax.pps), &pps),
    ]
    .iter()
    .all(|(t, list)| list.iter().all(|u| t.is_some_and(|t| held(current, t, u))));
    if whole && (current.is_none() || (au.keyframe && !all_held)) {
        let built = match codec {
            Codec::Hevc => hevc::build_decoder_config(&vps, &sps, &pps)
                .map(CodecConfig::Hevc)
                .map_err(|_| "the VPS/SPS/PPS make no HEVC configuration record"),
            _ => avc::build_record(&sps, &pps)
                .map(CodecConfig::Avc)
                .map_err(|_| "the SPS/PPS make no AVC configuration record"),
        };
        match built {
            Ok(c) if Some(&c) != current => au.new_config = Some(c),
            Ok(_) => {}
            Err(why) => au.bad_parameter_sets = Some(why),
        }
    }
    let config = au.new_config.as_ref().or(current);
    let mut out = Vec::with_capacity(es.len() + 16);
    for u in annex_b(es) {
        let t = nal_type(u);
        let parameter_set = t == syntax.sps || t == syntax.pps || Some(t) == syntax.vps;
        if t == syntax.aud || (parameter_set && held(config, t, u)) {
            continue;
        }
        // Units are slices of a PES, itself bounded far below 4 GiB.
        out.extend_from_slice(&(u.len() as u32).to_be_bytes());
        out.extend_from_slice(u);
    }
    au.data = out;
    Some(au)
}

/// The NAL units of an Annex B byte stream: between start codes
/// (`00 00 01`, with any leading zeros), trailing zero bytes removed,
/// empty ones skipped. Borrows, never allocates.
fn annex_b(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = match find_start(data) {
        Some(i) => &data[i + 3..],
        None => &data[data.len()..],
    };
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (unit, next) = match find_start(rest) {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let end = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end > 0 {
            return Some(&unit[..end]);
        }
    })
}

/// Where the next `00 00 01` starts.
fn find_start(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}
