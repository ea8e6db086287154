//! Media bytes: FLV tag bodies, FLV files, H.264 parameters and framing,
//! AAC AudioSpecificConfig, and the Enhanced RTMP codec configurations
//! (HEVC, AV1, VP9, Opus, FLAC, AC-3/E-AC-3).

use bytes::Bytes;

use crate::media::flv::{self, AudioTag, VideoTag};
use crate::media::{
    aac, ac3, av1, avc, flac, flv_file, hevc, opus, vp9, AacConfig, Codec, CodecConfig,
};

/// FLV audio/video tag bodies from a hostile publisher. The first byte picks
/// audio or video (and seeds the decode time); the rest is the body.
/// Whatever parses is pushed through every consumer downstream, and what we
/// write for RTMP play-out (sequence header and frame tag headers) parses
/// back to the same configuration or frame.
pub fn flv_tags(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let dts = i64::from(selector >> 1);
    let body = Bytes::copy_from_slice(rest);
    // The Enhanced RTMP structure on its own, whatever the first byte says.
    let _ = flv::ex::parse_video(body.clone());
    let _ = flv::ex::parse_audio(body.clone());
    if selector & 1 == 0 {
        flv_video(dts, body);
    } else {
        flv_audio(dts, body);
    }
}

fn flv_video(dts: i64, body: Bytes) {
    match flv::parse_video(dts, body) {
        Ok(VideoTag::Config(config)) => {
            let _ = config.codec_string();
            if let CodecConfig::Avc(avc_config) = &config {
                for sps in &avc_config.sps {
                    let _ = avc::parse_sps(sps);
                }
            }
            if let Some(body) = flv::config_body(&config) {
                assert_eq!(
                    flv::parse_video(dts, body),
                    Ok(VideoTag::Config(config)),
                    "video sequence header round trip"
                );
            }
        }
        Ok(VideoTag::Frame(frame)) if frame.codec == Codec::H264 => {
            let _ = frame.pts();
            for size in 0..=5 {
                for nal in avc::nal_units(&frame.data, size).flatten() {
                    // Some encoders repeat the SPS in-band; any NAL will do.
                    let _ = avc::parse_sps(nal);
                }
                let _ = avc::contains_idr(&frame.data, size);
                let mut out = Vec::new();
                let _ = avc::to_annex_b(&frame.data, size, &mut out);
            }
            let mut tag = flv::video_header(&frame).to_vec();
            tag.extend_from_slice(&frame.data);
            assert_eq!(
                flv::parse_video(dts, tag.into()),
                Ok(VideoTag::Frame(frame)),
                "H.264 frame tag round trip"
            );
        }
        Ok(_) | Err(_) => {}
    }
}

fn flv_audio(dts: i64, body: Bytes) {
    match flv::parse_audio(dts, body) {
        Ok(AudioTag::Config(config)) => {
            if let CodecConfig::Aac(aac_config) = &config {
                let _ = aac::codec_string(aac_config);
                check_adts(aac_config);
            }
            if let Some(body) = flv::config_body(&config) {
                assert_eq!(
                    flv::parse_audio(dts, body),
                    Ok(AudioTag::Config(config)),
                    "audio sequence header round trip"
                );
            }
        }
        Ok(AudioTag::Frame(frame)) if frame.codec == Codec::Aac => {
            let header = flv::audio_header(&frame, None).expect("an AAC frame has a header");
            let mut tag = header.to_vec();
            tag.extend_from_slice(&frame.data);
            assert_eq!(
                flv::parse_audio(dts, tag.into()),
                Ok(AudioTag::Frame(frame)),
                "AAC frame tag round trip"
            );
        }
        Ok(AudioTag::Mp3 { config, frame }) => {
            assert!(config.sample_rate > 0 && config.channels > 0);
            assert_eq!(flv::config_body(&CodecConfig::Mp3(config.clone())), None);
            let header =
                flv::audio_header(&frame, Some(config.flv_flags)).expect("MP3 with its flags");
            let mut tag = header.to_vec();
            tag.extend_from_slice(&frame.data);
            assert_eq!(
                flv::parse_audio(dts, tag.into()),
                Ok(AudioTag::Mp3 { config, frame }),
                "MP3 frame tag round trip"
            );
        }
        Ok(_) | Err(_) => {}
    }
}

/// ADTS headers for a few frame sizes: when one can be written, it says
/// what the configuration says, and the AudioSpecificConfig rebuilt from its
/// fields parses to the same core parameters.
fn check_adts(config: &AacConfig) {
    let Ok(fields) = aac::parse_asc_fields(&config.asc) else {
        panic!("a parsed AacConfig's ASC does not parse again");
    };
    for len in [0, 1, 1000, 8184, 8185, usize::MAX - 6, usize::MAX] {
        let Ok(h) = aac::adts_header(config, len) else {
            continue;
        };
        assert_eq!((h[0], h[1] & 0xf6), (0xff, 0xf0), "ADTS sync word, layer 0");
        let frame_len =
            (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        assert_eq!(frame_len, len + 7, "ADTS frame length");
        let object_type = (h[2] >> 6) + 1;
        let index = (h[2] >> 2) & 0xf;
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        assert_eq!(object_type, fields.core_object_type);
        assert_eq!(channels, fields.channel_config);
        // The ASC an ADTS demuxer would rebuild.
        let asc = [
            (object_type << 3) | (index >> 1),
            ((index & 1) << 7) | (channels << 3),
        ];
        let rebuilt = aac::parse_asc_fields(&asc).expect("ASC rebuilt from ADTS parses");
        assert_eq!(rebuilt.sample_rate, fields.sample_rate, "ADTS sample rate");
        assert_eq!(rebuilt.channel_config, fields.channel_config);
        assert_eq!(rebuilt.core_object_type, fields.core_object_type);
        assert_eq!(rebuilt.frame_length, 1024);
    }
}

/// An `AudioSpecificConfig` from a sequence header. A configuration that
/// parses is sane (a positive rate, at least one channel, a frame length
/// AAC has), [`aac::parse_audio_specific_config`] agrees with the field
/// parser, and its ADTS headers describe it.
pub fn aac_config(data: &[u8]) {
    let fields = aac::parse_asc_fields(data);
    let config = aac::parse_audio_specific_config(Bytes::copy_from_slice(data));
    if data.len() > aac::MAX_ASC {
        // Refused for its size before it is read; the field parser has no
        // bound and may say anything.
        assert_eq!(config, Err(aac::AacError::TooLarge(data.len())));
        return;
    }
    match (&fields, &config) {
        (Ok(f), Ok(c)) => {
            assert!(f.sample_rate > 0 && f.output_sample_rate > 0);
            assert!(f.channels > 0);
            assert!([480, 512, 960, 1024].contains(&f.frame_length));
            assert!(!f.ps || f.sbr, "PS implies SBR");
            assert_eq!(
                (c.object_type, c.sample_rate, c.channels, c.frame_length),
                (f.object_type, f.sample_rate, f.channels, f.frame_length)
            );
            assert_eq!(&c.asc[..], data);
            let _ = aac::codec_string(c);
            check_adts(c);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("the two AudioSpecificConfig parsers disagree: {fields:?} vs {config:?}"),
    }
}

/// H.264 parameters and NAL framing: the decoder configuration record, the
/// SPS reader, AVCC iteration, Annex B detection and conversion.
///
/// The first byte picks an AVCC NAL length size for the framing checks;
/// the rest is read as each of a record, an SPS, an AVCC payload and an
/// Annex B access unit.
pub fn avc_config(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let record = Bytes::copy_from_slice(rest);
    if let Ok(c) = avc::parse_decoder_config(record.clone()) {
        assert!([1, 2, 4].contains(&c.nal_length_size));
        // Trailing bytes are dropped: the record kept is a bounded prefix.
        assert!(c.record.len() <= avc::MAX_RECORD);
        assert_eq!(c.record, record.slice(..c.record.len()));
        let range = record.as_ptr_range();
        for set in c.sps.iter().chain(&c.pps) {
            let p = set.as_ptr_range();
            assert!(
                set.is_empty() || (range.start <= p.start && p.end <= range.end),
                "parameter sets are slices of the record"
            );
        }
        match c.sps.first().map(|s| avc::parse_sps(s)) {
            Some(Ok(info)) => assert_eq!((c.width, c.height), (info.width, info.height)),
            _ => assert_eq!((c.width, c.height), (0, 0)),
        }
        let _ = avc::codec_string(&c);
        if let (Some(sps), Some(pps)) = (c.sps.first(), c.pps.first()) {
            if let Ok(built) = avc::build_decoder_config(sps, pps) {
                assert_eq!(built.sps, vec![sps.clone()]);
                assert_eq!(built.pps, vec![pps.clone()]);
                assert_eq!(built.nal_length_size, 4);
                assert_eq!((built.width, built.height), (c.width, c.height));
            }
        }
    }

    if let Ok(info) = avc::parse_sps(rest) {
        assert!(info.width > 0 && info.height > 0);
        if let Some((n, d)) = info.frame_rate {
            assert!(n > 0 && d > 0);
        }
    }

    let size = selector % 6;
    check_avcc(rest, size);
    check_annex_b(rest, size);
}

/// AVCC framing: units are non-empty and tile the payload with their
/// prefixes; an error ends the iteration; Annex B output is exactly the units
/// behind start codes, or nothing at all.
fn check_avcc(data: &[u8], size: u8) {
    let mut covered = 0;
    let mut units = Vec::new();
    let mut failed = false;
    for nal in avc::nal_units(data, size) {
        assert!(!failed, "NAL iteration goes on after an error");
        match nal {
            Ok(nal) => {
                assert!(!nal.is_empty(), "empty NAL unit yielded");
                covered += usize::from(size) + nal.len();
                units.push(nal);
            }
            Err(_) => failed = true,
        }
    }
    assert!(covered <= data.len());
    let mut out = vec![0xAA];
    match avc::to_annex_b(data, size, &mut out) {
        Ok(()) => {
            assert!(!failed);
            let mut expect = vec![0xAA];
            for u in &units {
                expect.extend_from_slice(&[0, 0, 0, 1]);
                expect.extend_from_slice(u);
            }
            assert_eq!(out, expect, "AVCC -> Annex B");
        }
        Err(_) => {
            assert!(failed);
            assert_eq!(out, [0xAA], "failed conversion left output behind");
        }
    }
    assert_eq!(
        avc::contains_idr(data, size),
        units.iter().any(|u| u[0] & 0x1f == 5)
    );
}

/// Annex B splitting: units are non-empty, contain no start code and no
/// trailing zero; joined with start codes again they split the same; the
/// AVCC conversion walks back to the same units and is not taken for
/// Annex B.
fn check_annex_b(data: &[u8], size: u8) {
    let _ = avc::looks_like_annex_b(data, size);
    let units = avc::annex_b_units(data);
    let mut joined = Vec::new();
    for u in &units {
        assert!(!u.is_empty());
        assert_ne!(u.last(), Some(&0), "trailing zero kept");
        assert!(
            !u.windows(3).any(|w| w == [0, 0, 1]),
            "start code inside a unit"
        );
        joined.extend_from_slice(&[0, 0, 0, 1]);
        joined.extend_from_slice(u);
    }
    assert_eq!(avc::annex_b_units(&joined), units, "Annex B re-split");
    let avcc = avc::annex_b_to_avcc(&units);
    let back: Vec<&[u8]> = avc::nal_units(&avcc, 4)
        .collect::<Result<_, _>>()
        .expect("converted AVCC walks");
    assert_eq!(back, units, "Annex B -> AVCC round trip");
    assert!(!avc::looks_like_annex_b(&avcc, 4), "AVCC taken for Annex B");
}

/// FLV files: every complete tag is read, bodies are slices of the file,
/// and the tags written back into a file read back the same.
pub fn flv_file(data: &[u8]) {
    let file = Bytes::copy_from_slice(data);
    let Ok(tags) = flv_file::read_tags(&file) else {
        return;
    };
    let range = file.as_ptr_range();
    let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for t in &tags {
        let p = t.body.as_ptr_range();
        assert!(
            t.body.is_empty() || (range.start <= p.start && p.end <= range.end),
            "tag body is not a slice of the file"
        );
        assert!(t.tag_type < 32);
        let size = u32::try_from(t.body.len()).expect("tag under 2^24 bytes");
        out.push(t.tag_type);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        let ts = t.timestamp.to_be_bytes();
        out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0], 0, 0, 0]);
        out.extend_from_slice(&t.body);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }
    let again = flv_file::read_tags(&Bytes::from(out)).expect("our FLV file reads");
    assert_eq!(again, tags, "FLV file round trip");
    // Tag bodies are what a publisher sends: the same parsers take them.
    for t in tags.iter().take(64) {
        let dts = i64::from(t.timestamp);
        match t.tag_type {
            flv_file::TAG_VIDEO => {
                let _ = flv::parse_video(dts, t.body.clone());
            }
            flv_file::TAG_AUDIO => {
                let _ = flv::parse_audio(dts, t.body.clone());
            }
            _ => {}
        }
    }
}

/// Bytes that are a slice of `outer` (or empty).
fn within(inner: &Bytes, outer: &Bytes) -> bool {
    let (i, o) = (inner.as_ptr_range(), outer.as_ptr_range());
    inner.is_empty() || (o.start <= i.start && i.end <= o.end)
}

/// A codec string is plain: ASCII letters, digits and dots.
fn check_codec_string(s: &str, prefix: &str) {
    assert!(s.starts_with(prefix), "codec string {s:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
        "codec string {s:?}"
    );
}

/// A whole MP4 file through `media::mp4` (what a dropped-in VOD file
/// meets), with a small sample cap so that inputs reach it. Besides never
/// panicking: every indexed sample lies within the file, the kept tracks
/// are of their slot's kind, the frames are exactly the samples (payload
/// bytes sliced from the file, none before time 0), and parsing is
/// deterministic.
pub fn mp4_file(data: &[u8]) {
    use crate::media::mp4::{Limits, Mp4File};
    use crate::media::MediaKind;
    let limits = Limits { max_samples: 4096 };
    let Ok(f) = Mp4File::parse_with(data, limits) else {
        return;
    };
    assert_eq!(Mp4File::parse_with(data, limits).as_ref(), Ok(&f));
    assert!(f.video.is_some() || f.audio.is_some());
    assert!(f.video.iter().all(|t| t.kind() == MediaKind::Video));
    assert!(f.audio.iter().all(|t| t.kind() == MediaKind::Audio));
    let mut samples = 0;
    for t in f.tracks() {
        assert!(t.timescale > 0);
        assert!(t.samples.len() <= limits.max_samples);
        for s in &t.samples {
            let end = s
                .offset
                .checked_add(u64::from(s.size))
                .expect("no overflow");
            assert!(end <= data.len() as u64, "sample within the file");
        }
        samples += t.samples.len();
    }
    let file = Bytes::copy_from_slice(data);
    let mut frames = 0;
    for frame in f.frames(&file) {
        assert!(frame.dts >= 0);
        frames += 1;
    }
    assert_eq!(frames, samples, "one frame per sample");
}

/// H.265 parameters: the decoder configuration record and the SPS reader.
/// The whole input is read as a record and as an SPS NAL unit.
pub fn hevc_config(data: &[u8]) {
    let record = Bytes::copy_from_slice(data);
    if let Ok(c) = hevc::parse_decoder_config(record.clone()) {
        assert!([1, 2, 4].contains(&c.nal_length_size));
        assert!(c.record.len() <= hevc::MAX_RECORD);
        assert_eq!(
            c.record,
            record.slice(..c.record.len()),
            "kept record is a prefix"
        );
        for u in c.arrays.iter().flat_map(|a| &a.units) {
            assert!(within(u, &c.record), "NAL units are slices of the record");
        }
        assert!((8..=15).contains(&c.bit_depth_luma) && (8..=15).contains(&c.bit_depth_chroma));
        match c.sps().next().map(|s| hevc::parse_sps(s)) {
            Some(Ok(info)) => assert_eq!((c.width, c.height), (info.width, info.height)),
            _ => assert_eq!((c.width, c.height), (0, 0)),
        }
        check_codec_string(&hevc::codec_string(&c), "hvc1.");
        // The record parses the same again from what was kept.
        let again = hevc::parse_decoder_config(c.record.clone()).expect("kept record parses");
        assert_eq!(again, c, "HEVC record re-parse");
    }
    if let Ok(info) = hevc::parse_sps(data) {
        assert!(info.width > 0 && info.height > 0);
        assert!(info.width <= info.coded_width && info.height <= info.coded_height);
        assert!((1..=7).contains(&info.max_sub_layers));
        assert!(
            (8..=16).contains(&info.bit_depth_luma) && (8..=16).contains(&info.bit_depth_chroma)
        );
        check_codec_string(&info.general.codec_string("hev1"), "hev1.");
    }
}

/// `data` holds `inner` (or `inner` is empty).
fn within_slice(inner: &[u8], data: &[u8]) -> bool {
    let (i, o) = (inner.as_ptr_range(), data.as_ptr_range());
    inner.is_empty() || (o.start <= i.start && i.end <= o.end)
}

/// AV1: the codec configuration record, OBU framing and the sequence
/// header. The whole input is read as a record, as a run of OBUs (a coded
/// frame) and as a sequence header payload.
pub fn av1_config(data: &[u8]) {
    let record = Bytes::copy_from_slice(data);
    if let Ok(c) = av1::parse_codec_config(record.clone()) {
        assert_eq!(c.record, record);
        assert!(c.record.len() <= av1::MAX_RECORD);
        assert!(within(&c.config_obus, &c.record));
        assert!([8, 10, 12].contains(&c.bit_depth()));
        match &c.sequence_header {
            Some(h) => assert_eq!((c.width, c.height), (h.max_frame_width, h.max_frame_height)),
            None => assert_eq!((c.width, c.height), (0, 0)),
        }
        check_codec_string(&av1::codec_string(&c), "av01.");
    }
    let mut failed = false;
    let mut payload_bytes = 0;
    for obu in av1::obus(data) {
        assert!(!failed, "OBU iteration goes on after an error");
        match obu {
            Ok(o) => {
                assert!(o.obu_type < 16);
                assert!(
                    within_slice(o.payload, data),
                    "OBU payload is a slice of the data"
                );
                payload_bytes += o.payload.len();
            }
            Err(_) => failed = true,
        }
    }
    assert!(payload_bytes <= data.len());
    for header in [
        av1::parse_sequence_header(data).ok(),
        av1::find_sequence_header(data).and_then(Result::ok),
    ]
    .into_iter()
    .flatten()
    {
        assert!(header.seq_profile <= 2);
        assert!((1..=65536).contains(&header.max_frame_width));
        assert!((1..=65536).contains(&header.max_frame_height));
        assert!([8, 10, 12].contains(&header.color.bit_depth));
        assert!((1..=32).contains(&header.operating_points));
        assert!(header.seq_level_idx_0 < 32);
    }
}

/// VP9: the `vpcC` body and a keyframe's uncompressed header. A
/// configuration that parses writes back to a body that parses the same;
/// one derived from a keyframe is a valid `vpcC` too.
pub fn vp9_config(data: &[u8]) {
    if let Ok(c) = vp9::parse_vpcc(data) {
        assert_eq!(vp9::parse_vpcc(&c.to_vpcc()), Ok(c), "vpcC round trip");
        // The flags are not checked (they must be 0); the fields come back.
        assert_eq!(&c.to_vpcc()[4..10], &data[4..10]);
        check_codec_string(&vp9::codec_string(&c), "vp09.");
        assert_eq!(vp9::codec_string(&c).len(), "vp09.00.00.08".len());
    }
    if let Ok(k) = vp9::parse_keyframe_header(data) {
        assert!(k.profile <= 3);
        assert!([8, 10, 12].contains(&k.bit_depth));
        assert!((1..=65536).contains(&k.width) && (1..=65536).contains(&k.height));
        for rate in [None, Some((30, 1)), Some((u32::MAX, 1)), Some((1, 0))] {
            if let Ok(c) = k.to_config(rate) {
                assert_eq!(
                    vp9::parse_vpcc(&c.to_vpcc()),
                    Ok(c),
                    "keyframe vpcC round trip"
                );
                assert_eq!((c.profile, c.bit_depth), (k.profile, k.bit_depth));
            }
        }
    }
}

/// Opus: the `OpusHead` identification header and its `dOps` form. The
/// input is read as both; what parses converts to a `dOps` that parses
/// back to the same fields. And as a packet: its TOC gives 2.5 ms to
/// 120 ms.
pub fn opus_config(data: &[u8]) {
    if let Some(n) = opus::packet_samples(data) {
        assert!((120..=opus::MAX_PACKET_SAMPLES).contains(&n), "{n} samples");
    }
    if let Ok(h) = opus::parse_opus_head(data) {
        assert!(h.channels >= 1);
        assert_eq!(h.mapping.is_none(), h.mapping_family == 0);
        if let Some(m) = &h.mapping {
            assert_eq!(m.table.len(), usize::from(h.channels));
            assert!(m.streams >= 1 && m.coupled_streams <= m.streams);
        }
        let dops = h.to_dops();
        let back = opus::parse_dops(&dops).expect("our dOps parses");
        assert_eq!(
            back,
            opus::OpusHead {
                version: 1,
                ..h.clone()
            },
            "dOps round trip"
        );
        assert_eq!(back.to_dops(), dops);
        assert_eq!(opus::codec_string(&h), "opus");
    }
    if let Ok(h) = opus::parse_dops(data) {
        assert_eq!(opus::parse_dops(&h.to_dops()), Ok(h), "dOps re-parse");
    }
}

/// FLAC: the sequence header (`fLaC` and metadata blocks, or a bare
/// STREAMINFO) and `dfLa`. What parses writes a `dfLa` that parses back to
/// the same blocks, the last one alone flagged last. And as a frame: its
/// header's block size is 1 to 65536 samples.
pub fn flac_config(data: &[u8]) {
    if let Some(n) = flac::frame_block_size(data) {
        assert!((1..=65_536).contains(&n), "{n} samples");
    }
    let header = Bytes::copy_from_slice(data);
    for parsed in [
        flac::parse_sequence_header(header.clone()),
        flac::parse_dfla(header.clone()),
    ] {
        let Ok(c) = parsed else { continue };
        assert_eq!(
            c.blocks.first().map(|b| b.block_type),
            Some(flac::BLOCK_STREAMINFO)
        );
        assert!(
            c.blocks.iter().all(|b| within(&b.data, &header)),
            "blocks are slices"
        );
        assert!(c
            .blocks
            .iter()
            .all(|b| !matches!(b.block_type, flac::BLOCK_PADDING | flac::BLOCK_PICTURE)));
        let s = c.stream_info;
        assert!(s.sample_rate > 0 && (1..=8).contains(&s.channels));
        assert!((4..=32).contains(&s.bits_per_sample) && s.max_block_size >= 16);
        let dfla = c.to_dfla();
        assert!(dfla.len() <= 4 + flac::MAX_HEADER);
        let back = flac::parse_dfla(Bytes::from(dfla.clone())).expect("our dfLa parses");
        assert_eq!(back.stream_info, c.stream_info);
        let types = |c: &flac::FlacConfig| {
            c.blocks
                .iter()
                .map(|b| (b.block_type, b.data.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(types(&back), types(&c), "dfLa round trip");
        // The last-metadata-block flag: on the final block only.
        let mut pos = 4;
        for i in 0..c.blocks.len() {
            assert_eq!(dfla[pos] & 0x80 != 0, i + 1 == c.blocks.len());
            pos += 4 + c.blocks[i].data.len();
        }
        assert_eq!(pos, dfla.len());
        assert_eq!(flac::codec_string(&c), "fLaC");
    }
}

/// AC-3 / E-AC-3: a sync frame header and an E-AC-3 access unit. A header
/// that parses has a sane size, rate and channel count and a `dac3` whose
/// fields read back; an access unit gives a `dec3` of the right length.
pub fn ac3_config(data: &[u8]) {
    if let Ok(frame) = ac3::parse_sync_frame(data) {
        assert!(frame.frame_size() >= 7 && frame.frame_size() <= 4096);
        assert!([48000, 44100, 32000, 24000, 22050, 16000].contains(&frame.sample_rate()));
        assert!((1..=6).contains(&frame.channels()));
        assert!([256, 512, 768, 1536].contains(&frame.samples()));
        match frame {
            ac3::SyncFrame::Ac3(h) => {
                let d = h.to_dac3();
                assert_eq!(d[0] >> 6, h.fscod);
                assert_eq!((d[0] >> 1) & 0x1f, h.bsid);
                assert_eq!((d[2] >> 5) | ((d[1] & 3) << 3), h.frmsizecod >> 1);
                assert_eq!(d[2] & 0x1f, 0, "dac3 reserved bits");
                check_codec_string(&ac3::codec_string(&frame), "ac-3");
            }
            ac3::SyncFrame::Eac3(h) => {
                assert!((11..=16).contains(&h.bsid) && h.strmtyp < 3);
                check_codec_string(&ac3::codec_string(&frame), "ec-3");
            }
        }
    }
    if let Ok(c) = ac3::parse_eac3_access_unit(data) {
        assert!((1..=8).contains(&c.substreams.len()));
        let dec3 = c.to_dec3();
        let bits: usize = 16
            + c.substreams
                .iter()
                .map(|s| if s.num_dep_sub > 0 { 32 } else { 24 })
                .sum::<usize>();
        assert_eq!(dec3.len() * 8, bits, "dec3 length");
        assert_eq!(usize::from(dec3[1] & 7) + 1, c.substreams.len());
        assert_eq!(u16::from_be_bytes([dec3[0], dec3[1]]) >> 3, c.data_rate);
        assert!(c.channels >= 1);
    }
}
