//! The muxer's output read back with `mpeg2ts`'s own demuxer.

use std::collections::HashMap;

use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
use mpeg2ts::ts::{ReadTsPacket, TsPacketReader};

use super::*;
use crate::media::{aac, avc};

use crate::media::flv::hex;

// The AVCDecoderConfigurationRecord and frames of media::flv's tests
// (ffmpeg 5.1 + libx264, 64x64 High), and a 48 kHz stereo AAC-LC config.
const AVC_RECORD: &str =
    "01640009ffe1001867640009acd94426c044000003000400000300f03c48965801000468efbcb0fdf8f800";
const AVC_KEY: &str = "0000001b658884006ff76ef3f89f24d99d37a91cec657321108f122f433781";
const AVC_INTER: &str = "00000009419a23188ffff32714";

fn avc_config() -> Arc<CodecConfig> {
    Arc::new(CodecConfig::Avc(
        avc::parse_decoder_config(hex(AVC_RECORD)).unwrap(),
    ))
}

fn aac_config() -> Arc<CodecConfig> {
    Arc::new(CodecConfig::Aac(
        aac::parse_audio_specific_config(hex("1190")).unwrap(),
    ))
}

fn video(dts: i64, cts: i32, key: bool, data: &str) -> StreamEvent {
    StreamEvent::Frame(Frame {
        codec: Codec::H264,
        dts,
        cts,
        keyframe: key,
        data: hex(data),
    })
}

fn audio(dts: i64, len: usize) -> StreamEvent {
    StreamEvent::Frame(Frame {
        codec: Codec::Aac,
        dts,
        cts: 0,
        keyframe: true,
        data: Bytes::from(vec![0x21; len]),
    })
}

fn mux(events: &[StreamEvent]) -> (Vec<u8>, TsMuxer) {
    let mut m = TsMuxer::new();
    let mut out = Vec::new();
    for e in events {
        m.push(e);
        for msg in m.take_messages(false) {
            assert_eq!(msg.len(), MESSAGE, "full messages are 7 packets");
            out.extend_from_slice(&msg);
        }
    }
    for msg in m.take_messages(true) {
        assert!(msg.len() < MESSAGE && msg.len() % PACKET == 0);
        out.extend_from_slice(&msg);
    }
    (out, m)
}

fn packets(ts: &[u8]) -> Vec<TsPacket> {
    assert_eq!(ts.len() % PACKET, 0);
    let mut r = TsPacketReader::new(ts);
    let mut v = Vec::new();
    while let Some(p) = r.read_ts_packet().unwrap() {
        v.push(p);
    }
    v
}

/// Continuity counters advance by one per payload packet on every PID and
/// repeat on a packet without payload (ISO 13818-1 2.4.3.3).
fn check_continuity(pk: &[TsPacket]) {
    let mut cc: HashMap<u16, u8> = HashMap::new();
    for p in pk {
        let pid = p.header.pid.as_u16();
        let c = p.header.continuity_counter.as_u8();
        if let Some(prev) = cc.insert(pid, c) {
            let step = u8::from(p.payload.is_some());
            assert_eq!(c, (prev + step) & 0xf, "continuity on PID {pid:#x}");
        }
    }
}

fn pes(ts: &[u8]) -> Vec<mpeg2ts::pes::PesPacket<Vec<u8>>> {
    let mut r = PesPacketReader::new(TsPacketReader::new(ts));
    let mut v = Vec::new();
    while let Some(p) = r.read_pes_packet().unwrap() {
        v.push(p);
    }
    v
}

fn stream() -> Vec<StreamEvent> {
    let mut ev = vec![
        StreamEvent::PublisherStarted,
        StreamEvent::Config(avc_config()),
        StreamEvent::Config(aac_config()),
    ];
    for i in 0..60 {
        let key = i % 30 == 0;
        ev.push(video(
            i * 33,
            66,
            key,
            if key { AVC_KEY } else { AVC_INTER },
        ));
        ev.push(audio(i * 33, 300 + i as usize * 10));
    }
    // A large frame spanning many packets.
    let mut big = String::from("00001000");
    big.push_str("65");
    big.push_str(&"ab".repeat(4095));
    ev.push(video(60 * 33, 0, true, &big));
    ev
}

#[test]
fn psi_pes_and_counters() {
    let (ts, m) = mux(&stream());
    assert_eq!(m.stats.dropped, 0);
    assert_eq!(m.stats.frames, 121);
    let pk = packets(&ts);
    // PAT and PMT first.
    assert!(matches!(&pk[0].payload, Some(TsPayload::Pat(p))
        if p.table[0].program_map_pid.as_u16() == PID_PMT));
    let Some(TsPayload::Pmt(pmt)) = &pk[1].payload else {
        panic!("no PMT: {:?}", pk[1]);
    };
    assert_eq!(pmt.pcr_pid.map(|p| p.as_u16()), Some(PID_VIDEO));
    let types: Vec<_> = pmt
        .es_info
        .iter()
        .map(|e| (e.stream_type, e.elementary_pid.as_u16()))
        .collect();
    assert_eq!(
        types,
        [
            (StreamType::H264, PID_VIDEO),
            (StreamType::AdtsAac, PID_AUDIO)
        ]
    );
    // PAT/PMT again before each of the 3 keyframes.
    let pats = pk
        .iter()
        .filter(|p| matches!(p.payload, Some(TsPayload::Pat(_))))
        .count();
    assert_eq!(pats, 3);
    check_continuity(&pk);
    let mut pcrs = Vec::new();
    for p in &pk {
        let pid = p.header.pid.as_u16();
        if let Some(pcr) = p.adaptation_field.as_ref().and_then(|a| a.pcr) {
            assert_eq!(pid, PID_VIDEO);
            pcrs.push(pcr.as_u64());
        }
    }
    assert_eq!(pcrs.len(), 61, "a PCR with every video frame");
    assert!(pcrs.windows(2).all(|w| w[0] <= w[1]), "PCR never goes back");
    assert_eq!(pcrs[1], 33 * 90 * 300);
}

#[test]
fn pes_payloads_are_annex_b_and_adts() {
    let (ts, _) = mux(&stream());
    let pes = pes(&ts);
    let video: Vec<_> = pes
        .iter()
        .filter(|p| p.header.stream_id.as_u8() == 0xE0)
        .collect();
    let audio: Vec<_> = pes
        .iter()
        .filter(|p| p.header.stream_id.as_u8() == 0xC0)
        .collect();
    assert_eq!((video.len(), audio.len()), (61, 60));
    let CodecConfig::Avc(cfg) = avc_config().as_ref().clone() else {
        unreachable!()
    };
    // Keyframe: AUD, SPS, PPS, then the IDR slice.
    let mut expect = AUD.to_vec();
    for ps in [&cfg.sps[0], &cfg.pps[0]] {
        expect.extend_from_slice(&[0, 0, 0, 1]);
        expect.extend_from_slice(ps);
    }
    expect.extend_from_slice(&[0, 0, 0, 1]);
    expect.extend_from_slice(&hex(AVC_KEY)[4..]);
    assert_eq!(video[0].data, expect);
    // Inter frame: AUD and the slice only.
    let mut expect = AUD.to_vec();
    expect.extend_from_slice(&[0, 0, 0, 1]);
    expect.extend_from_slice(&hex(AVC_INTER)[4..]);
    assert_eq!(video[1].data, expect);
    // The big frame survives packetising whole.
    assert_eq!(
        video[60].data.len(),
        AUD.len() + 3 * 4 + 0x1000 + cfg.sps[0].len() + cfg.pps[0].len()
    );
    // PTS = DTS + cts, 700 ms ahead of the PCR, DTS only when different.
    let h = &video[1].header;
    assert_eq!(h.dts.unwrap().as_u64(), (33 + 700) * 90);
    assert_eq!(h.pts.unwrap().as_u64(), (33 + 66 + 700) * 90);
    let h = &video[60].header;
    assert!(h.dts.is_none());
    // ADTS: sync word, the length including the header, the raw frame.
    for (i, a) in audio.iter().enumerate() {
        let len = 300 + i * 10;
        assert_eq!(&a.data[..2], &[0xff, 0xf1]);
        let l = (usize::from(a.data[3] & 3) << 11)
            | (usize::from(a.data[4]) << 3)
            | usize::from(a.data[5] >> 5);
        assert_eq!(l, len + 7);
        assert!(a.data[7..].iter().all(|&b| b == 0x21));
        assert_eq!(a.header.pts.unwrap().as_u64(), (i as u64 * 33 + 700) * 90);
    }
}

#[test]
fn bad_frames_are_dropped_whole() {
    let (ts, m) = mux(&[
        // Before any configuration.
        video(0, 0, true, AVC_KEY),
        audio(0, 10),
        StreamEvent::Config(avc_config()),
        // A NAL length past the end.
        video(33, 0, true, "000000ff6588"),
        video(66, 0, true, AVC_KEY),
    ]);
    assert_eq!(m.stats.dropped, 3);
    assert_eq!(m.stats.frames, 1);
    assert_eq!(pes(&ts).len(), 1);
}

#[test]
fn audio_only_stream_clocks_on_audio_and_repeats_psi() {
    let mut ev = vec![StreamEvent::Config(aac_config())];
    for i in 0..100 {
        ev.push(audio(i * 21, 200));
    }
    let (ts, m) = mux(&ev);
    assert_eq!(m.stats.frames, 100);
    let pk = packets(&ts);
    let Some(TsPayload::Pmt(pmt)) = &pk[1].payload else {
        panic!("no PMT");
    };
    assert_eq!(pmt.pcr_pid.map(|p| p.as_u16()), Some(PID_AUDIO));
    assert_eq!(pmt.es_info.len(), 1);
    let pats = pk
        .iter()
        .filter(|p| matches!(p.payload, Some(TsPayload::Pat(_))))
        .count();
    // 2.1 s of audio: PSI at 0, then every 500 ms.
    assert_eq!(pats, 5);
}

#[test]
fn video_lagging_audio_still_gets_a_clock() {
    let mut ev = vec![
        StreamEvent::Config(avc_config()),
        StreamEvent::Config(aac_config()),
        video(0, 0, true, AVC_KEY),
    ];
    for i in 0..50 {
        ev.push(audio(i * 21, 100));
    }
    let (ts, _) = mux(&ev);
    check_continuity(&packets(&ts));
    let pcr_only = packets(&ts)
        .iter()
        .filter(|p| {
            p.payload.is_none() && p.adaptation_field.as_ref().is_some_and(|a| a.pcr.is_some())
        })
        .count();
    // 1029 ms of audio past the video frame: a PCR at least every 80 ms.
    assert!(pcr_only >= 12, "{pcr_only}");
}

#[test]
fn track_change_bumps_the_pmt_version() {
    let (ts, _) = mux(&[
        StreamEvent::Config(avc_config()),
        video(0, 0, true, AVC_KEY),
        StreamEvent::Config(aac_config()),
        audio(10, 100),
    ]);
    let versions: Vec<(u8, usize)> = packets(&ts)
        .iter()
        .filter_map(|p| match &p.payload {
            Some(TsPayload::Pmt(pmt)) => Some((pmt.version_number.as_u8(), pmt.es_info.len())),
            _ => None,
        })
        .collect();
    assert_eq!(versions, [(1, 1), (2, 2)]);
}

/// An Enhanced RTMP stream's events, as the reader makes them from FFmpeg
/// 9's FLV tags.
fn enhanced(file: &'static [u8]) -> Vec<StreamEvent> {
    let mut back = crate::media::flv::samples::ReadBack::default();
    for tag in crate::media::flv_file::read_tags(&Bytes::from_static(file)).unwrap() {
        match tag.tag_type {
            8 => back.media(MediaKind::Audio, tag.timestamp, tag.body),
            9 => back.media(MediaKind::Video, tag.timestamp, tag.body),
            _ => {}
        }
    }
    back.events
}

/// A PMT entry: stream type, and each descriptor's tag and data.
type EsEntry = (u8, Vec<(u8, Vec<u8>)>);

/// The PMT's entries.
fn program(ts: &[u8]) -> Vec<EsEntry> {
    let pk = packets(ts);
    let Some(TsPayload::Pmt(pmt)) = &pk[1].payload else {
        panic!("no PMT second")
    };
    pmt.es_info
        .iter()
        .map(|e| {
            let d = e
                .descriptors
                .iter()
                .map(|d| (d.tag, d.data.clone()))
                .collect();
            (e.stream_type as u8, d)
        })
        .collect()
}

/// HEVC is stream type 0x24; Opus is private data with its registration
/// and DVB extension descriptors (channel configuration 1: mono).
#[test]
fn hevc_and_opus_in_the_pmt_and_pes() {
    let events = enhanced(include_bytes!("../../media/flv/testdata/hevc_opus.flv"));
    let (ts, m) = mux(&events);
    assert_eq!(m.stats.dropped, 0);
    check_continuity(&packets(&ts));
    assert_eq!(
        program(&ts),
        [
            (0x24, vec![]),
            (0x06, vec![(0x05, b"Opus".to_vec()), (0x7f, vec![0x80, 1])]),
        ]
    );
    let pes = pes(&ts);
    // Video: HEVC AUD, then VPS, SPS and PPS before the first keyframe.
    let first_video = pes
        .iter()
        .find(|p| p.header.stream_id.as_u8() == 0xe0)
        .unwrap();
    assert!(first_video.data.starts_with(&HEVC_AUD));
    let types: Vec<u8> = first_video.data[HEVC_AUD.len()..]
        .windows(5)
        .filter(|w| w[..4] == [0, 0, 0, 1])
        .map(|w| (w[4] >> 1) & 0x3f)
        .collect();
    assert_eq!(&types[..3], [32, 33, 34], "{types:?}");
    // Audio: private stream 1, each packet led by its control header.
    let StreamEvent::Frame(opus) = events
        .iter()
        .find(|e| matches!(e, StreamEvent::Frame(f) if f.codec == Codec::Opus))
        .unwrap()
    else {
        unreachable!()
    };
    let first_audio = pes
        .iter()
        .find(|p| p.header.stream_id.as_u8() == 0xbd)
        .unwrap();
    let mut want = vec![0x7f, 0xe0];
    want.extend(std::iter::repeat_n(0xff, opus.data.len() / 255));
    want.push((opus.data.len() % 255) as u8);
    want.extend_from_slice(&opus.data);
    assert_eq!(first_audio.data, want);
}

#[test]
fn opus_control_headers() {
    for (size, want) in [
        (0, &[0x7f, 0xe0, 0][..]),
        (254, &[0x7f, 0xe0, 254]),
        (255, &[0x7f, 0xe0, 255, 0]),
        (300, &[0x7f, 0xe0, 255, 45]),
        (510, &[0x7f, 0xe0, 255, 255, 0]),
    ] {
        let mut out = Vec::new();
        opus_control_header(size, &mut out);
        assert_eq!(out, want, "{size}");
    }
}

/// AC-3 and E-AC-3 are private data with the DVB descriptor of each, in
/// private stream 1, as sent; AV1 and VP9 have no carriage: the program
/// has the audio alone, and the muxer says so once.
#[test]
fn ac3_and_eac3_dvb_style_and_no_av1_or_vp9() {
    for (file, desc, left_out) in [
        (
            &include_bytes!("../../media/flv/testdata/ffmpeg9_av1_ac3.flv")[..],
            0x6a,
            Codec::Av1,
        ),
        (
            include_bytes!("../../media/flv/testdata/ffmpeg9_vp9_eac3.flv"),
            0x7a,
            Codec::Vp9,
        ),
    ] {
        let events = enhanced(file);
        let (ts, mut m) = mux(&events);
        assert_eq!(program(&ts), [(0x06, vec![(desc, vec![0])])]);
        assert_eq!(m.take_uncarried(), Some(left_out));
        assert_eq!(m.take_uncarried(), None);
        let audio: Vec<Bytes> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) if f.kind() == MediaKind::Audio => Some(f.data.clone()),
                _ => None,
            })
            .collect();
        let got: Vec<Vec<u8>> = pes(&ts)
            .into_iter()
            .filter(|p| p.header.stream_id.as_u8() == 0xbd)
            .map(|p| p.data)
            .collect();
        assert_eq!(got.len(), audio.len());
        assert!(got.iter().zip(&audio).all(|(g, a)| g[..] == a[..]));
    }
}

#[test]
fn timestamps_wrap_at_33_bits() {
    let wrap_ms = (1i64 << 33) / 90;
    let (ts, _) = mux(&[
        StreamEvent::Config(aac_config()),
        audio(wrap_ms - 700 - 10, 100),
        audio(wrap_ms - 700 + 11, 100),
    ]);
    let p = pes(&ts);
    assert!(p[0].header.pts.unwrap().as_u64() > (1 << 33) - 90 * 20);
    assert!(p[1].header.pts.unwrap().as_u64() < 90 * 20);
}

proptest::proptest! {
    #[test]
    fn arbitrary_events_never_break_framing(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        exercise(&data);
    }
}
