//! The demuxer against hand-built transport streams: every packet, section
//! and PES here is written by the helpers below, so each test says exactly
//! what it feeds (the muxer round trips and the FFmpeg oracle are in
//! `tests/ts_demux.rs`).

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::media::flv::hex;
use crate::media::{aac, avc, hevc, opus, AacConfig};

const PMT_PID: u16 = 0x1000;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;

// ---- writing transport streams ----

/// `unit` (a PES, or a section behind its pointer field) in packets on
/// `pid`: the first marked unit start, the last filled with adaptation
/// field stuffing.
fn packets(pid: u16, unit: &[u8], cc: &mut u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = unit;
    let mut first = true;
    while first || !rest.is_empty() {
        let take = rest.len().min(184);
        let mut p = vec![SYNC, u8::from(first) << 6 | (pid >> 8) as u8, pid as u8];
        if take < 184 {
            let af = 183 - take;
            p.extend_from_slice(&[0x30 | *cc, af as u8]);
            if af > 0 {
                p.push(0);
                p.extend(std::iter::repeat_n(0xff, af - 1));
            }
        } else {
            p.push(0x10 | *cc);
        }
        p.extend_from_slice(&rest[..take]);
        assert_eq!(p.len(), PACKET);
        out.extend(p);
        rest = &rest[take..];
        *cc = (*cc + 1) & 0xf;
        first = false;
    }
    out
}

/// A long-form section with its CRC.
fn section(table_id: u8, id: u16, version: u8, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut s = vec![
        table_id,
        0xb0 | (len >> 8) as u8,
        len as u8,
        (id >> 8) as u8,
        id as u8,
        0xc1 | (version << 1),
        0,
        0,
    ];
    s.extend_from_slice(body);
    let crc = psi::crc32(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// A section behind a zero pointer field.
fn psi_unit(section: &[u8]) -> Vec<u8> {
    let mut u = vec![0];
    u.extend_from_slice(section);
    u
}

fn pat(pmt_pid: u16) -> Vec<u8> {
    section(0, 1, 0, &[0, 1, 0xe0 | (pmt_pid >> 8) as u8, pmt_pid as u8])
}

/// (stream type, PID, descriptors)
type Es<'a> = (u8, u16, &'a [u8]);

fn pmt(version: u8, streams: &[Es]) -> Vec<u8> {
    let mut body = vec![0xe0 | (VIDEO >> 8) as u8, VIDEO as u8, 0xf0, 0];
    for (stream_type, pid, desc) in streams {
        body.extend_from_slice(&[
            *stream_type,
            0xe0 | (pid >> 8) as u8,
            *pid as u8,
            0xf0 | (desc.len() >> 8) as u8,
            desc.len() as u8,
        ]);
        body.extend_from_slice(desc);
    }
    section(2, 1, version, &body)
}

/// A 33-bit timestamp field with its 4-bit prefix and marker bits.
fn timestamp(prefix: u8, t: u64) -> [u8; 5] {
    [
        prefix << 4 | (((t >> 30) & 7) as u8) << 1 | 1,
        (t >> 22) as u8,
        (((t >> 15) & 0x7f) as u8) << 1 | 1,
        (t >> 7) as u8,
        ((t & 0x7f) as u8) << 1 | 1,
    ]
}

/// A PES; `bounded`: with its `PES_packet_length` (else 0, as video has).
fn pes(stream_id: u8, pts: u64, dts: Option<u64>, data: &[u8], bounded: bool) -> Vec<u8> {
    let header_len = if dts.is_some() { 10 } else { 5 };
    let len = if bounded {
        3 + header_len + data.len()
    } else {
        0
    };
    let flags = if dts.is_some() { 0xc0 } else { 0x80 };
    let mut p = vec![0, 0, 1, stream_id, (len >> 8) as u8, len as u8, 0x80, flags];
    p.push(header_len as u8);
    match dts {
        Some(d) => {
            p.extend_from_slice(&timestamp(3, pts));
            p.extend_from_slice(&timestamp(1, d));
        }
        None => p.extend_from_slice(&timestamp(2, pts)),
    }
    p.extend_from_slice(data);
    p
}

/// A transport stream being written, continuity counters per PID.
#[derive(Default)]
struct Mux {
    out: Vec<u8>,
    cc: HashMap<u16, u8>,
}

impl Mux {
    /// The packets of `unit` on `pid`, not yet added (to damage them).
    fn packets(&mut self, pid: u16, unit: &[u8]) -> Vec<u8> {
        packets(pid, unit, self.cc.entry(pid).or_default())
    }

    fn unit(&mut self, pid: u16, unit: &[u8]) {
        let p = self.packets(pid, unit);
        self.out.extend(p);
    }

    fn psi(&mut self, version: u8, streams: &[Es]) {
        self.unit(0, &psi_unit(&pat(PMT_PID)));
        self.unit(PMT_PID, &psi_unit(&pmt(version, streams)));
    }

    fn video(&mut self, pts: u64, dts: u64, au: &[u8]) {
        self.unit(VIDEO, &pes(0xe0, pts, Some(dts), au, false));
    }

    fn audio(&mut self, pid: u16, stream_id: u8, pts: u64, data: &[u8]) {
        self.unit(pid, &pes(stream_id, pts, None, data, true));
    }
}

const H264_AAC: &[Es] = &[(0x1b, VIDEO, &[]), (0x0f, AUDIO, &[])];

// ---- elementary streams ----

const SPS: &str = "6764001eacd940a02ff970110000030001000003003c0f162d96";
const PPS: &str = "68ebe3cb22c0";
const AUD: &[u8] = &[9, 0xf0];
const SEI: &[u8] = &[6, 5, 1, 0x11, 0x80];

fn annex_b(units: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, u) in units.iter().enumerate() {
        // Both start code lengths, as encoders mix them.
        out.extend_from_slice(if i % 2 == 0 {
            &[0, 0, 0, 1]
        } else {
            &[0, 0, 1]
        });
        out.extend_from_slice(u);
    }
    out
}

fn avcc(units: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for u in units {
        out.extend_from_slice(&(u.len() as u32).to_be_bytes());
        out.extend_from_slice(u);
    }
    out.into()
}

/// A slice NAL unit of `len` bytes with no start code or trailing zero
/// in it.
fn slice(header: &[u8], len: usize) -> Vec<u8> {
    let mut s = header.to_vec();
    s.extend((0..len).map(|i| (i % 251) as u8 + 1));
    s
}

fn key_au(idr: &[u8]) -> Vec<u8> {
    annex_b(&[AUD, &hex(SPS), &hex(PPS), SEI, idr])
}

fn aac_config() -> AacConfig {
    aac::parse_audio_specific_config(hex("1190")).unwrap()
}

fn adts(payload: &[u8]) -> Vec<u8> {
    let mut f = aac::adts_header(&aac_config(), payload.len())
        .unwrap()
        .to_vec();
    f.extend_from_slice(payload);
    f
}

// ---- reading ----

fn demux_with(limits: DemuxLimits, ts: &[u8]) -> (Vec<StreamEvent>, TsDemuxer) {
    let mut d = TsDemuxer::new(limits);
    let mut events = Vec::new();
    d.push(ts, |e| events.push(e));
    d.finish(|e| events.push(e));
    (events, d)
}

fn demux(ts: &[u8]) -> (Vec<StreamEvent>, TsDemuxer) {
    demux_with(DemuxLimits::default(), ts)
}

fn frames(events: &[StreamEvent], kind: MediaKind) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Frame(f) if f.kind() == kind => Some(f),
            _ => None,
        })
        .collect()
}

fn dts(events: &[StreamEvent], kind: MediaKind) -> Vec<i64> {
    frames(events, kind).iter().map(|f| f.dts).collect()
}

fn configs(events: &[StreamEvent]) -> Vec<&CodecConfig> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Config(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

/// An H.264 + AAC stream: a keyframe, an ADTS PES of two frames, a P
/// frame; 10 s into the source's clock, B-frame style composition.
fn h264_aac() -> Vec<u8> {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    let t0 = 900_000;
    m.video(t0 + 6006, t0, &key_au(&slice(&[0x65, 0x88], 1500)));
    let mut two = adts(&[0x21; 100]);
    two.extend(adts(&[0x22; 120]));
    m.audio(AUDIO, 0xc0, t0, &two);
    m.video(
        t0 + 3003,
        t0 + 3003,
        &annex_b(&[AUD, &slice(&[0x41, 0x9a], 40)]),
    );
    m.out
}

// ---- the tests ----

#[test]
fn crc32_is_mpeg2s() {
    assert_eq!(psi::crc32(b"123456789"), 0x0376_e6e7);
    assert_eq!(psi::crc32(&pat(PMT_PID)), 0);
}

#[test]
fn h264_and_aac_through_pat_pmt_and_pes() {
    let (events, d) = demux(&h264_aac());
    let avc = avc::build_record(&[&hex(SPS)], &[&hex(PPS)]).unwrap();
    // Audio completes first (its PES has a length); the video PES ends
    // where the next begins.
    let expected_configs = [CodecConfig::Aac(aac_config()), CodecConfig::Avc(avc)];
    assert_eq!(
        configs(&events),
        expected_configs.iter().collect::<Vec<_>>()
    );
    let video = frames(&events, MediaKind::Video);
    assert_eq!(video.len(), 2);
    assert_eq!(
        (video[0].dts, video[0].cts, video[0].keyframe),
        (0, 66, true),
        "6006 ticks of composition offset is 66.7 ms"
    );
    // AUD, SPS and PPS are gone (the parameter sets are in the record).
    assert_eq!(video[0].data, avcc(&[SEI, &slice(&[0x65, 0x88], 1500)]));
    assert_eq!(
        (video[1].dts, video[1].cts, video[1].keyframe),
        (33, 0, false)
    );
    assert_eq!(video[1].data, avcc(&[&slice(&[0x41, 0x9a], 40)]));
    let audio = frames(&events, MediaKind::Audio);
    // The second ADTS frame is 1024 samples at 48 kHz later: 21.3 ms.
    assert_eq!(dts(&events, MediaKind::Audio), [0, 21]);
    assert_eq!(audio[0].data, Bytes::from(vec![0x21; 100]));
    assert_eq!(audio[1].data, Bytes::from(vec![0x22; 120]));
    assert!(audio.iter().all(|f| f.codec == Codec::Aac && f.keyframe));
    let stats = *d.stats();
    assert_eq!(stats.frames, 4);
    assert_eq!(
        (
            stats.cc_errors,
            stats.dropped_pes,
            stats.dropped_frames,
            stats.resyncs
        ),
        (0, 0, 0, 0)
    );
    let mut d = d;
    assert_eq!(d.take_warnings(), []);
}

#[test]
fn the_base_is_where_the_first_timestamp_lands() {
    let mut d = TsDemuxer::new(DemuxLimits::default()).with_base_ms(5000);
    let mut events = Vec::new();
    d.push(&h264_aac(), |e| events.push(e));
    d.finish(|e| events.push(e));
    assert_eq!(dts(&events, MediaKind::Video), [5000, 5033]);
    assert_eq!(dts(&events, MediaKind::Audio), [5000, 5021]);
}

#[test]
fn chunks_of_any_size_give_the_same_events() {
    let ts = h264_aac();
    let (whole, _) = demux(&ts);
    for size in [1, 7, 187, 189, 1316] {
        let mut d = TsDemuxer::new(DemuxLimits::default());
        let mut events = Vec::new();
        for chunk in ts.chunks(size) {
            d.push(chunk, |e| events.push(e));
        }
        d.finish(|e| events.push(e));
        assert_eq!(events, whole, "chunks of {size}");
        assert_eq!(d.stats().resyncs, 0);
    }
}

#[test]
fn a_section_over_two_packets_is_reassembled() {
    // A PMT of 400 bytes: a private descriptor on the video stream.
    let mut desc = vec![0x80, 250];
    desc.extend([0x5a; 250]);
    desc.extend([0x81, 100]);
    desc.extend([0x5b; 100]);
    let mut m = Mux::default();
    m.psi(0, &[(0x1b, VIDEO, &desc), (0x0f, AUDIO, &[])]);
    assert!(
        m.out.len() >= 4 * PACKET,
        "the PMT takes more than one packet"
    );
    m.video(0, 0, &key_au(&slice(&[0x65], 10)));
    m.audio(AUDIO, 0xc0, 0, &adts(&[1; 10]));
    let (events, mut d) = demux(&m.out);
    assert_eq!(frames(&events, MediaKind::Video).len(), 1);
    assert_eq!(frames(&events, MediaKind::Audio).len(), 1);
    assert_eq!(d.take_warnings(), []);
}

#[test]
fn a_bad_crc_drops_the_section() {
    let mut bad = pat(PMT_PID);
    bad[9] ^= 0x01; // the PMT PID
    let mut m = Mux::default();
    m.unit(0, &psi_unit(&bad));
    m.unit(PMT_PID, &psi_unit(&pmt(0, H264_AAC)));
    m.video(0, 0, &key_au(&slice(&[0x65], 10)));
    let (events, mut d) = demux(&m.out);
    assert_eq!(events, []);
    assert_eq!(
        d.take_warnings(),
        [Warning::BadSection {
            pid: 0,
            why: SectionError::Crc
        }]
    );
    // The next good PAT and PMT bring the streams.
    m.psi(0, H264_AAC);
    m.video(3003, 3003, &key_au(&slice(&[0x65], 10)));
    let (events, _) = demux(&m.out);
    assert_eq!(frames(&events, MediaKind::Video).len(), 1);
}

#[test]
fn a_continuity_gap_drops_the_damaged_pes_and_a_duplicate_is_ignored() {
    let build = |damage: bool, duplicate: bool| {
        let mut m = Mux::default();
        m.psi(0, H264_AAC);
        m.video(0, 0, &key_au(&slice(&[0x65], 10)));
        // Three packets; the middle one lost.
        let p = annex_b(&[&slice(&[0x41], 400)]);
        let second = m.packets(VIDEO, &pes(0xe0, 3003, Some(3003), &p, false));
        assert_eq!(second.len(), 3 * PACKET);
        m.out.extend_from_slice(&second[..PACKET]);
        if !damage {
            m.out.extend_from_slice(&second[PACKET..2 * PACKET]);
        }
        m.out.extend_from_slice(&second[2 * PACKET..]);
        let p = annex_b(&[&slice(&[0x41], 20)]);
        let third = m.packets(VIDEO, &pes(0xe0, 6006, Some(6006), &p, false));
        m.out.extend_from_slice(&third);
        if duplicate {
            m.out.extend_from_slice(&third);
        }
        m.out
    };
    let (clean, d) = demux(&build(false, false));
    assert_eq!(dts(&clean, MediaKind::Video), [0, 33, 66]);
    assert_eq!(d.stats().cc_errors, 0);

    let (events, mut d) = demux(&build(true, false));
    assert_eq!(dts(&events, MediaKind::Video), [0, 66]);
    assert_eq!((d.stats().cc_errors, d.stats().dropped_pes), (1, 1));
    assert_eq!(d.take_warnings(), [Warning::ContinuityError { pid: VIDEO }]);

    // A packet sent twice (same counter) counts once.
    let (events, d) = demux(&build(false, true));
    assert_eq!(events, clean);
    assert_eq!(d.stats().cc_errors, 0);
}

#[test]
fn timestamps_unwrap_past_33_bits() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    let wrap = 1u64 << 33;
    for k in 0..6u64 {
        let t = (wrap - 7000 + k * 3003) % wrap;
        let au = if k == 0 {
            key_au(&slice(&[0x65], 10))
        } else {
            annex_b(&[&slice(&[0x41], 10)])
        };
        m.video(t, t, &au);
        m.audio(AUDIO, 0xc0, t, &adts(&[k as u8; 10]));
    }
    let (events, d) = demux(&m.out);
    let expected = [0, 33, 66, 100, 133, 166];
    assert_eq!(dts(&events, MediaKind::Video), expected);
    assert_eq!(dts(&events, MediaKind::Audio), expected);
    assert_eq!((d.stats().discontinuities, d.stats().repairs), (0, 0));
}

#[test]
fn a_jump_rebases_the_whole_program_in_sync() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    let hour = 3600 * 90_000;
    for (k, t) in [0u64, 3003, hour + 6006, hour + 9009]
        .into_iter()
        .enumerate()
    {
        let au = if k == 0 {
            key_au(&slice(&[0x65], 10))
        } else {
            annex_b(&[&slice(&[0x41], 10)])
        };
        m.video(t, t, &au);
        m.audio(AUDIO, 0xc0, t, &adts(&[k as u8; 10]));
    }
    let (events, mut d) = demux(&m.out);
    // The audio PES of the jump completes first: audio continues one
    // frame (1920 ticks) after its last, 4923 ticks; video lands on the
    // same shifted clock, so the two stay in sync with one re-base.
    let expected = [0, 33, 54, 88];
    assert_eq!(dts(&events, MediaKind::Audio), expected);
    assert_eq!(dts(&events, MediaKind::Video), expected);
    assert_eq!(d.stats().discontinuities, 1);
    assert_eq!(d.take_warnings(), [Warning::Discontinuity { pid: AUDIO }]);
}

#[test]
fn a_step_back_is_a_rebase_when_large_and_a_clamp_when_small() {
    let run = |times: &[u64]| {
        let mut m = Mux::default();
        m.psi(0, H264_AAC);
        for (k, &t) in times.iter().enumerate() {
            let au = if k == 0 {
                key_au(&slice(&[0x65], 10))
            } else {
                annex_b(&[&slice(&[0x41], 10)])
            };
            m.video(t, t, &au);
        }
        let (events, d) = demux(&m.out);
        (dts(&events, MediaKind::Video), *d.stats())
    };
    let t = 50 * 90_000;
    // 20 s back: the track goes on one frame after its last.
    let (got, stats) = run(&[t, t + 3003, 5000, 8003]);
    assert_eq!(got, [0, 33, 66, 100]);
    assert_eq!((stats.discontinuities, stats.repairs), (1, 0));
    // 10 ms back: jitter, placed a millisecond after the last time.
    let (got, stats) = run(&[t, t + 3003, t + 2103, t + 6006]);
    assert_eq!(got, [0, 33, 34, 66]);
    assert_eq!((stats.discontinuities, stats.repairs), (0, 1));
    // 11 s forward: a jump. 9 s forward: a pause, kept.
    let (got, _) = run(&[t, t + 3003, t + 3003 + 11 * 90_000]);
    assert_eq!(got, [0, 33, 66]);
    let (got, _) = run(&[t, t + 3003, t + 3003 + 9 * 90_000]);
    assert_eq!(got, [0, 33, 9033]);
}

#[test]
fn sync_is_found_again_after_garbage() {
    let clean = h264_aac();
    let (expected, _) = demux(&clean);
    let mut ts = vec![0x12, 0x47, 0x00]; // before the first packet
    let (head, tail) = clean.split_at(3 * PACKET);
    ts.extend_from_slice(head);
    ts.extend_from_slice(&[0x47, 0x13, 0x47, 0x00, 0x47]); // between two packets
    ts.extend_from_slice(tail);
    let (events, mut d) = demux(&ts);
    assert_eq!(events, expected);
    assert_eq!(d.stats().resyncs, 1, "the start is not a loss");
    assert_eq!(d.stats().skipped_bytes, 8);
    assert_eq!(d.stats().cc_errors, 0);
    assert_eq!(d.take_warnings(), [Warning::SyncLost]);
}

#[test]
fn a_pes_shorter_than_its_length_is_dropped() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    let mut short = pes(0xc0, 0, None, &adts(&[1; 50]), true);
    short[4..6].copy_from_slice(&1000u16.to_be_bytes()); // past what follows
    m.unit(AUDIO, &short);
    m.audio(AUDIO, 0xc0, 1920, &adts(&[2; 50]));
    let (events, mut d) = demux(&m.out);
    let audio = frames(&events, MediaKind::Audio);
    assert_eq!(audio.len(), 1);
    assert_eq!(audio[0].data, Bytes::from(vec![2; 50]));
    assert_eq!(d.stats().dropped_pes, 1);
    assert_eq!(d.take_warnings(), [Warning::PesTruncated { pid: AUDIO }]);
}

#[test]
fn a_pes_past_its_limit_is_dropped_before_it_is_stored() {
    let limits = DemuxLimits {
        video_pes: 1000,
        audio_pes: 100,
    };
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.video(0, 0, &key_au(&slice(&[0x65], 2000)));
    m.video(3003, 3003, &key_au(&slice(&[0x65], 10)));
    m.audio(AUDIO, 0xc0, 0, &adts(&[1; 200])); // its length says so at once
    let (events, mut d) = demux_with(limits, &m.out);
    assert_eq!(dts(&events, MediaKind::Video), [33]);
    assert_eq!(frames(&events, MediaKind::Audio).len(), 0);
    assert_eq!(d.stats().dropped_pes, 2);
    assert_eq!(
        d.take_warnings(),
        [
            Warning::PesTooLong {
                pid: VIDEO,
                limit: 1000
            },
            Warning::PesTooLong {
                pid: AUDIO,
                limit: 100
            }
        ]
    );
    assert!(d.tracks.iter().all(|t| t.pes.buf.capacity() <= 1000));
}

#[test]
fn hostile_sections_and_packets_are_warned_about() {
    // A PMT whose ES loop runs past the section; a PAT whose
    // section_length is over 1021; an adaptation field of 184 bytes.
    let mut m = Mux::default();
    m.unit(0, &psi_unit(&pat(PMT_PID)));
    let mut body = vec![0xe0, 0x00, 0xf0, 0x00];
    body.extend_from_slice(&[0x1b, 0xe1, 0x00, 0xf3, 0xff]);
    m.unit(PMT_PID, &psi_unit(&section(2, 1, 0, &body)));
    let mut long = pat(PMT_PID);
    long[1] = 0xb3;
    long[2] = 0xfe; // 1022
    m.unit(0, &psi_unit(&long));
    m.psi(1, H264_AAC);
    let mut bad_af = vec![SYNC, 0x41, 0x00, 0x30, 184];
    bad_af.resize(PACKET, 0xff);
    m.out.extend_from_slice(&bad_af);
    // A PMT listing itself, the PAT and one PID twice: ignored, no panic.
    m.video(0, 0, &key_au(&slice(&[0x65], 10)));
    let (events, mut d) = demux(&m.out);
    assert_eq!(frames(&events, MediaKind::Video).len(), 1);
    assert_eq!(
        d.take_warnings(),
        [
            Warning::BadSection {
                pid: PMT_PID,
                why: SectionError::Malformed
            },
            Warning::BadSection {
                pid: 0,
                why: SectionError::TooLong
            },
            Warning::BadAdaptationField { pid: VIDEO },
        ]
    );

    let mut m = Mux::default();
    m.psi(
        0,
        &[
            (0x1b, PMT_PID, &[]),
            (0x1b, 0, &[]),
            (0x0f, AUDIO, &[]),
            (0x1b, AUDIO, &[]),
        ],
    );
    m.audio(AUDIO, 0xc0, 0, &adts(&[1; 10]));
    let (events, _) = demux(&m.out);
    assert_eq!(frames(&events, MediaKind::Audio).len(), 1);
}

#[test]
fn truncated_streams_and_bad_pes_headers_do_not_panic() {
    let ts = h264_aac();
    for cut in [1, 100, 188, 189, 400, ts.len() - 1] {
        let (_, d) = demux(&ts[..cut]);
        assert!(d.stats().packets <= (cut / PACKET) as u64);
    }
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.unit(VIDEO, &[0, 0, 2, 0xe0, 0, 0]); // no start code
    m.unit(VIDEO, &[0, 0, 1, 0xbe, 0, 0]); // padding stream id
    m.unit(VIDEO, &[0, 0, 1, 0xe0, 0, 0, 0x80, 0x40, 0]); // flags 01
    m.unit(VIDEO, &[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 2, 0]); // PTS in 2 bytes
    m.unit(VIDEO, &[0, 0, 1]); // a unit shorter than a header
    m.unit(VIDEO, &pes(0xe0, 0, Some(0), &[], false)); // no NAL unit
    let (events, mut d) = demux(&m.out);
    assert_eq!(events, []);
    let warnings = d.take_warnings();
    for why in [
        PesError::NoStartCode,
        PesError::NoOptionalHeader(0xbe),
        PesError::BadFlags,
        PesError::BadLength,
    ] {
        assert!(
            warnings.contains(&Warning::BadPes { pid: VIDEO, why }),
            "{why:?}: {warnings:?}"
        );
    }
    assert_eq!(d.stats().dropped_pes, 5);
}

#[test]
fn a_new_pmt_version_remaps_the_streams() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.video(0, 0, &key_au(&slice(&[0x65], 10)));
    m.audio(AUDIO, 0xc0, 0, &adts(&[1; 10]));
    m.psi(0, H264_AAC); // a repeat: nothing changes
    m.psi(1, &[(0x1b, VIDEO, &[]), (0x03, 0x102, &[])]);
    let mut mp3 = vec![0xff, 0xfb, 0x90, 0x64];
    mp3.resize(417, 0x55);
    m.audio(0x102, 0xc0, 3003, &mp3);
    m.video(3003, 3003, &annex_b(&[&slice(&[0x41], 10)]));
    let (events, mut d) = demux(&m.out);
    let audio = frames(&events, MediaKind::Audio);
    assert_eq!(
        audio.iter().map(|f| (f.codec, f.dts)).collect::<Vec<_>>(),
        [(Codec::Aac, 0), (Codec::Mp3, 33)]
    );
    assert_eq!(audio[1].data, Bytes::from(mp3));
    assert!(
        configs(&events).contains(&&CodecConfig::Mp3(crate::media::Mp3Config {
            sample_rate: 44100,
            channels: 2,
            flv_flags: 0x2f
        }))
    );
    // The video track was kept as it was: its frames go on.
    assert_eq!(dts(&events, MediaKind::Video), [0, 33]);
    assert_eq!(
        d.take_warnings(),
        [Warning::ProgramChanged {
            program: 1,
            version: 1
        }]
    );
}

/// A stream re-mapped to another PID and codec goes on from where the
/// last one of its kind was: the hub's decode times never go back.
#[test]
fn a_remapped_stream_keeps_its_kind_monotonic() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    for k in 0..5u64 {
        m.audio(AUDIO, 0xc0, 90_000 + k * 1920, &adts(&[1; 10]));
    }
    m.psi(1, &[(0x03, 0x102, &[])]);
    let mut mp3 = vec![0xff, 0xfb, 0x90, 0x64];
    mp3.resize(417, 0x55);
    // Half a second back: jitter, not a jump; a millisecond after the last.
    m.audio(0x102, 0xc0, 90_000 - 45_000, &mp3);
    m.audio(0x102, 0xc0, 90_000 + 9000, &mp3);
    let (events, d) = demux(&m.out);
    assert_eq!(dts(&events, MediaKind::Audio), [0, 21, 42, 64, 85, 86, 100]);
    assert_eq!((d.stats().repairs, d.stats().discontinuities), (1, 0));
}

#[test]
fn unsupported_and_extra_streams_are_said_once() {
    let streams: &[Es] = &[
        (0x1b, VIDEO, &[]),
        (0x02, 0x200, &[]),
        (0x0f, AUDIO, &[]),
        (0x0f, 0x201, &[]),
    ];
    let mut m = Mux::default();
    for _ in 0..3 {
        m.psi(0, streams);
    }
    m.psi(1, streams);
    let (_, mut d) = demux(&m.out);
    assert_eq!(
        d.take_warnings(),
        [
            Warning::UnsupportedStream {
                pid: 0x200,
                stream_type: 2
            },
            Warning::ExtraStream {
                pid: 0x201,
                kind: MediaKind::Audio
            },
            Warning::ProgramChanged {
                program: 1,
                version: 1
            },
        ]
    );
    assert_eq!(d.take_warnings(), []);
}

#[test]
fn video_before_its_parameter_sets_is_dropped() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.video(0, 0, &annex_b(&[AUD, &slice(&[0x41], 10)]));
    m.video(3003, 3003, &annex_b(&[AUD, &slice(&[0x41], 10)]));
    m.video(6006, 6006, &key_au(&slice(&[0x65], 10)));
    let (events, mut d) = demux(&m.out);
    assert_eq!(dts(&events, MediaKind::Video), [66]);
    assert!(matches!(events[0], StreamEvent::Config(_)));
    assert_eq!(d.stats().dropped_frames, 2);
    assert_eq!(
        d.take_warnings(),
        [Warning::BeforeConfig { codec: Codec::H264 }]
    );
}

#[test]
fn parameter_sets_go_into_the_record_or_stay_in_band() {
    let sps = hex(SPS);
    let pps = hex(PPS);
    let other_pps: &[u8] = &[0x68, 0xee, 0x3c, 0x80];
    // The same SPS at level 4.0 instead of 3.0.
    let mut sps40 = sps.to_vec();
    sps40[3] = 40;
    let idr = slice(&[0x65], 10);
    let p = slice(&[0x41], 10);
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.video(0, 0, &key_au(&idr));
    // A P frame with a new PPS: no new configuration, the PPS stays.
    m.video(3003, 3003, &annex_b(&[other_pps, &p]));
    // The same sets again on a keyframe: nothing new, they go.
    m.video(6006, 6006, &key_au(&idr));
    // A new SPS on a keyframe: a new configuration first.
    m.video(9009, 9009, &annex_b(&[&sps40, &pps, &idr]));
    let (events, _) = demux(&m.out);
    let cs = configs(&events);
    assert_eq!(cs.len(), 2);
    let CodecConfig::Avc(second) = cs[1] else {
        panic!("{cs:?}")
    };
    assert_eq!((second.level_idc, &second.sps[0][..]), (40, &sps40[..]));
    assert!(matches!(events[events.len() - 2], StreamEvent::Config(_)));
    let v = frames(&events, MediaKind::Video);
    assert_eq!(v[0].data, avcc(&[SEI, &idr]));
    assert_eq!(v[1].data, avcc(&[other_pps, &p]));
    assert_eq!(v[2].data, avcc(&[SEI, &idr]));
    assert_eq!(v[3].data, avcc(&[&idr]));
    assert_eq!(
        v.iter().map(|f| f.keyframe).collect::<Vec<_>>(),
        [true, false, true, true]
    );
}

/// x265's parameter sets (426x240 Main), as FFmpeg's record holds them.
const HEVC_RECORD: &str = "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002b42010101600000030090000003000003003ca00d880f1c9e5959a4932bc05a020000030002000003003c1022000100074401c172b46240";

#[test]
fn hevc_access_units() {
    let record = hevc::parse_decoder_config(hex(HEVC_RECORD)).unwrap();
    let set = |t| record.units(t).next().unwrap().to_vec();
    let (vps, sps, pps) = (set(hevc::NAL_VPS), set(hevc::NAL_SPS), set(hevc::NAL_PPS));
    let aud: &[u8] = &[0x46, 0x01, 0x50];
    let idr = slice(&[0x26, 0x01], 30); // IDR_W_RADL
    let trail = slice(&[0x02, 0x01], 30); // TRAIL_R
    let cra = slice(&[0x2a, 0x01], 30); // CRA
    let mut m = Mux::default();
    m.psi(0, &[(0x24, VIDEO, &[])]);
    m.video(0, 0, &annex_b(&[aud, &vps, &sps, &pps, &idr]));
    m.video(3003, 3003, &annex_b(&[aud, &trail]));
    m.video(6006, 6006, &annex_b(&[aud, &vps, &sps, &pps, &cra]));
    let (events, _) = demux(&m.out);
    let cs = configs(&events);
    assert_eq!(
        cs,
        [&CodecConfig::Hevc(record.clone())],
        "FFmpeg's record, rebuilt"
    );
    assert_eq!(cs[0].codec_string(), "hvc1.1.6.L60.90");
    let v = frames(&events, MediaKind::Video);
    assert!(v.iter().all(|f| f.codec == Codec::Hevc));
    assert_eq!(
        v.iter()
            .map(|f| (f.keyframe, f.data.clone()))
            .collect::<Vec<_>>(),
        [
            (true, avcc(&[&idr])),
            (false, avcc(&[&trail])),
            (true, avcc(&[&cra]))
        ]
    );
}

#[test]
fn adts_with_crc_and_frames_split_across_pes_packets() {
    // A CRC-protected frame: a 9-byte header.
    let mut crc = aac::adts_header(&aac_config(), 12).unwrap().to_vec();
    crc[1] &= !1;
    crc.extend_from_slice(&[0xab, 0xcd]);
    crc.extend_from_slice(&[7; 10]);
    let (a, b, c) = (adts(&[1; 30]), adts(&[2; 40]), adts(&[3; 50]));
    let mut first = a.clone();
    first.extend_from_slice(&b[..20]);
    let mut second = b[20..].to_vec();
    second.extend_from_slice(&c);
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.audio(AUDIO, 0xc0, 0, &first);
    // The PES time is that of the first frame starting in it: C's.
    m.audio(AUDIO, 0xc0, 3840, &second);
    m.audio(AUDIO, 0xc0, 5760, &crc);
    let (events, mut d) = demux(&m.out);
    let audio = frames(&events, MediaKind::Audio);
    assert_eq!(
        audio
            .iter()
            .map(|f| (f.dts, f.data.clone()))
            .collect::<Vec<_>>(),
        [
            (0, Bytes::from(vec![1; 30])),
            (21, Bytes::from(vec![2; 40])),
            (42, Bytes::from(vec![3; 50])),
            (64, Bytes::from(vec![7; 10])),
        ]
    );
    assert_eq!(d.take_warnings(), []);
    assert_eq!(configs(&events).len(), 1);
}

#[test]
fn junk_between_adts_frames_is_skipped() {
    let mut data = vec![0x00, 0xff, 0x12];
    data.extend(adts(&[1; 30]));
    data.extend([0xee; 5]);
    data.extend(adts(&[2; 30]));
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    m.audio(AUDIO, 0xc0, 0, &data);
    let (events, mut d) = demux(&m.out);
    assert_eq!(dts(&events, MediaKind::Audio), [0, 21]);
    assert_eq!(
        d.take_warnings(),
        [Warning::BadFrame {
            codec: Codec::Aac,
            why: "no ADTS sync word"
        }]
    );
}

/// A sync frame whose header is `header` (hex), zero-filled to its size.
fn sync_frame(header: &str) -> Vec<u8> {
    let h = hex(header);
    let size = crate::media::ac3::parse_sync_frame(&h)
        .unwrap()
        .frame_size();
    let mut f = h.to_vec();
    f.resize(size, 0);
    f
}

#[test]
fn ac3_and_eac3_sync_frames() {
    // 48 kHz stereo AC-3 at 192 kbit/s (ATSC stream type 0x81), E-AC-3
    // stereo (DVB: private data with the enhanced AC-3 descriptor).
    let ac3 = sync_frame("0b77d112144043e106f46370");
    let eac3 = sync_frame("0b77017f3487c00020842108");
    let mut m = Mux::default();
    m.psi(0, &[(0x81, AUDIO, &[])]);
    m.audio(AUDIO, 0xbd, 0, &[ac3.clone(), ac3.clone()].concat());
    let (events, _) = demux(&m.out);
    assert_eq!(dts(&events, MediaKind::Audio), [0, 32]);
    assert!(
        matches!(configs(&events)[..], [CodecConfig::Ac3(h)] if h.sample_rate == 48000 && h.channels() == 2)
    );
    assert_eq!(frames(&events, MediaKind::Audio)[0].data, Bytes::from(ac3));

    let mut m = Mux::default();
    m.psi(0, &[(0x06, AUDIO, &[0x7a, 1, 0])]);
    m.audio(AUDIO, 0xbd, 0, &[eac3.clone(), eac3.clone()].concat());
    let (events, _) = demux(&m.out);
    assert_eq!(dts(&events, MediaKind::Audio), [0, 32]);
    let a = frames(&events, MediaKind::Audio);
    assert!(a
        .iter()
        .all(|f| f.codec == Codec::Eac3 && f.data.len() == eac3.len()));
    assert!(matches!(configs(&events)[..], [CodecConfig::Eac3(c)] if c.channels == 2));
}

#[test]
fn mpeg_audio_layer_3_is_carried_and_layer_2_is_not() {
    let mut l3 = vec![0xff, 0xfb, 0x90, 0x64]; // 128 kbit/s, 44.1 kHz
    l3.resize(417, 0x55);
    let mut l2 = vec![0xff, 0xfd, 0xa4, 0x04]; // Layer II, 48 kHz
    l2.resize(576, 0x55);
    let mut m = Mux::default();
    m.psi(0, &[(0x03, AUDIO, &[])]);
    m.audio(AUDIO, 0xc0, 0, &[l3.clone(), l3.clone()].concat());
    m.audio(AUDIO, 0xc0, 4702, &l2);
    let (events, mut d) = demux(&m.out);
    // 1152 samples at 44.1 kHz: 26.1 ms.
    assert_eq!(dts(&events, MediaKind::Audio), [0, 26]);
    assert!(frames(&events, MediaKind::Audio)
        .iter()
        .all(|f| f.data == l3 && f.codec == Codec::Mp3));
    assert_eq!(
        d.take_warnings(),
        [Warning::BadFrame {
            codec: Codec::Mp3,
            why: "MPEG audio Layer I or II (only Layer III is carried)"
        }]
    );
}

/// An Opus access unit: control header (with a start trim when given),
/// then the packet.
fn opus_unit(packet: &[u8], start_trim: Option<u16>) -> Vec<u8> {
    let mut u = vec![0x7f, if start_trim.is_some() { 0xf0 } else { 0xe0 }];
    u.extend(std::iter::repeat_n(0xff, packet.len() / 255));
    u.push((packet.len() % 255) as u8);
    if let Some(t) = start_trim {
        u.extend_from_slice(&t.to_be_bytes());
    }
    u.extend_from_slice(packet);
    u
}

#[test]
fn opus_packets_and_their_head() {
    let opus_desc: &[u8] = &[0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, 2];
    // TOC 0xfc: CELT fullband 20 ms, one frame. The second packet is long
    // enough for a 255-run in its size.
    let p1 = [0xfc, 1, 2, 3];
    let mut p2 = vec![0xfc];
    p2.resize(300, 9);
    let mut m = Mux::default();
    m.psi(0, &[(0x06, AUDIO, opus_desc)]);
    m.audio(
        AUDIO,
        0xbd,
        0,
        &[opus_unit(&p1, Some(312)), opus_unit(&p2, None)].concat(),
    );
    let (events, mut d) = demux(&m.out);
    assert_eq!(dts(&events, MediaKind::Audio), [0, 20]);
    let a = frames(&events, MediaKind::Audio);
    assert_eq!(
        (a[0].data.clone(), a[1].data.clone()),
        (Bytes::from(p1.to_vec()), Bytes::from(p2))
    );
    let [CodecConfig::Opus(o)] = configs(&events)[..] else {
        panic!("{events:?}")
    };
    // The first packet's start trim is the pre-skip.
    assert_eq!(
        &o.record[..],
        &hex("4f707573486561640102380180bb0000000000")[..]
    );
    assert_eq!((o.head.channels, o.head.pre_skip), (2, 312));
    assert_eq!(d.take_warnings(), []);

    // 5.1: family 1 in Vorbis order; a code that needs an explicit
    // mapping is not carried.
    let six = audio::opus_head(6, 0).unwrap();
    let mapping = six.head.mapping.as_ref().unwrap();
    assert_eq!(
        (
            six.head.mapping_family,
            mapping.streams,
            mapping.coupled_streams
        ),
        (1, 4, 2)
    );
    assert_eq!(mapping.table, [0, 4, 1, 2, 3, 5]);
    let dual = audio::opus_head(0, 0).unwrap();
    assert_eq!((dual.head.channels, dual.head.mapping_family), (2, 255));
    for code in 1..=8 {
        let h = audio::opus_head(code, 0).unwrap();
        assert_eq!(opus::parse_opus_head(&h.record).unwrap(), h.head);
    }
    let mut m = Mux::default();
    m.psi(
        0,
        &[(
            0x06,
            AUDIO,
            &[0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, 0x81],
        )],
    );
    m.audio(AUDIO, 0xbd, 0, &opus_unit(&p1, None));
    let (events, mut d) = demux(&m.out);
    assert_eq!(events, []);
    assert!(matches!(
        d.take_warnings()[..],
        [Warning::UnsupportedAudio {
            codec: Codec::Opus,
            ..
        }]
    ));
}

#[test]
fn scrambled_and_damaged_packets_are_dropped() {
    let mut m = Mux::default();
    m.psi(0, H264_AAC);
    let mut p = m.packets(AUDIO, &pes(0xc0, 0, None, &adts(&[1; 10]), true));
    p[3] |= 0x80; // scrambled with the even key
    m.out.extend(p);
    let mut p = m.packets(AUDIO, &pes(0xc0, 1920, None, &adts(&[2; 10]), true));
    p[1] |= 0x80; // transport error
    m.out.extend(p);
    m.audio(AUDIO, 0xc0, 3840, &adts(&[3; 10]));
    let (events, mut d) = demux(&m.out);
    assert_eq!(frames(&events, MediaKind::Audio).len(), 1);
    assert_eq!(d.stats().transport_errors, 1);
    let w = d.take_warnings();
    assert!(w.contains(&Warning::Scrambled { pid: AUDIO }), "{w:?}");
    assert!(w.contains(&Warning::TransportError), "{w:?}");
}

proptest! {
    /// Arbitrary bytes, and a real stream with bytes flipped, cut and
    /// chunked anywhere: no panic, and the counters add up.
    #[test]
    fn arbitrary_input_never_panics(
        garbage in proptest::collection::vec(any::<u8>(), 0..2000),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..20),
        chunk in 1usize..400,
    ) {
        let mut ts = h264_aac();
        for (at, x) in flips {
            let n = ts.len();
            ts[at % n] ^= x;
        }
        ts.extend_from_slice(&garbage);
        let mut d = TsDemuxer::new(DemuxLimits::default());
        let mut frames = 0u64;
        for c in ts.chunks(chunk) {
            d.push(c, |e| frames += u64::from(matches!(e, StreamEvent::Frame(_))));
        }
        d.finish(|e| frames += u64::from(matches!(e, StreamEvent::Frame(_))));
        prop_assert_eq!(frames, d.stats().frames);
        prop_assert!(d.stats().packets <= (ts.len() / PACKET) as u64);
        prop_assert!(d.take_warnings().len() <= MAX_TOLD);
    }
}
