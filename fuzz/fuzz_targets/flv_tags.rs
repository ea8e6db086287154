//! FLV audio/video tag bodies from a hostile publisher. The first byte picks
//! audio or video (and seeds the decode time); the rest is the message body.
//! Whatever parses is pushed through every parser and writer that consumes
//! it downstream. Nothing may panic.

#![no_main]

use bytes::Bytes;
use castgate::media::flv::{self, AudioTag, VideoTag};
use castgate::media::{aac, avc, CodecConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let dts = i64::from(selector >> 1);
    let body = Bytes::copy_from_slice(rest);
    if selector & 1 == 0 {
        video(dts, body);
    } else {
        audio(dts, body);
    }
});

fn video(dts: i64, body: Bytes) {
    match flv::parse_video(dts, body) {
        Ok(VideoTag::Config(config)) => {
            let _ = avc::codec_string(&config);
            for sps in &config.sps {
                let _ = avc::parse_sps(sps);
            }
            let _ = flv::config_body(&CodecConfig::Avc(config));
        }
        Ok(VideoTag::Frame(frame)) => {
            let _ = flv::video_header(&frame);
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
        }
        Ok(VideoTag::EndOfSequence | VideoTag::Unsupported { .. }) | Err(_) => {}
    }
}

fn audio(dts: i64, body: Bytes) {
    match flv::parse_audio(dts, body) {
        Ok(AudioTag::Config(config)) => {
            if let CodecConfig::Aac(aac_config) = &config {
                let _ = aac::codec_string(aac_config);
                let _ = aac::parse_asc_fields(&aac_config.asc);
                for len in [0, 1, 1000, 8184, 8185, usize::MAX - 6] {
                    let _ = aac::adts_header(aac_config, len);
                }
            }
            let _ = flv::config_body(&config);
        }
        Ok(AudioTag::Frame(frame)) => {
            let _ = flv::audio_header(&frame, None);
        }
        Ok(AudioTag::Mp3 { config, frame }) => {
            let _ = flv::audio_header(&frame, Some(config.flv_flags));
            let _ = flv::config_body(&CodecConfig::Mp3(config));
        }
        Ok(AudioTag::Unsupported { .. }) | Err(_) => {}
    }
}
