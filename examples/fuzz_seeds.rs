//! Writes `fuzz/seeds/`: inputs in each fuzz target's format, made from the
//! committed FLV files (`fuzz/seeds/flv_file/*.flv`, made by ffmpeg: H.264
//! High with B-frames + AAC-LC, and MP3) and the handshake vectors. Run by
//! hand after changing an input format: `cargo run --example fuzz_seeds`.
//! `tests/fuzz_regressions.rs` runs it into a temporary directory on every
//! `cargo test`, so it keeps building and making what is committed.

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    seeds::make(&dir);
    println!("wrote {}", dir.display());
}

pub mod seeds {
    use std::path::Path;

    use castgate::egress::ts::TsMuxer;
    use castgate::media::flv::Ingest;
    use castgate::media::MediaKind;
    use castgate::rtmp::client::{ClientConfig, ClientMode, ClientSession};
    use castgate::rtmp::session::{ServerEvent, ServerSession, SessionConfig};

    use bytes::{Bytes, BytesMut};
    use castgate::fuzzing::{encode_ingest_record, IngestRecord};
    use castgate::media::avc;
    use castgate::media::flv_file::{self, FileTag};
    use castgate::rtmp::amf0::{self, Amf0Value};
    use castgate::rtmp::amf3::{self, Amf3Value};
    use castgate::rtmp::chunk::ChunkEncoder;
    use castgate::rtmp::handshake::ClientHandshake;
    use castgate::rtmp::message::{self, UserControl};

    struct Writer<'a> {
        root: &'a Path,
    }

    impl Writer<'_> {
        fn put(&self, target: &str, name: &str, data: &[u8]) {
            let dir = self.root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), data).unwrap();
        }
    }

    fn read_flv(path: &Path) -> Vec<FileTag> {
        let data = Bytes::from(std::fs::read(path).unwrap());
        flv_file::read_tags(&data).unwrap()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    pub fn make(root: &Path) {
        let w = Writer { root };
        let av = read_flv(&root.join("flv_file/h264_aac.flv"));
        let mp3 = read_flv(&root.join("flv_file/mp3.flv"));
        let media = |tags: &[FileTag], kind: u8| -> Vec<FileTag> {
            tags.iter()
                .filter(|t| t.tag_type == kind)
                .cloned()
                .collect()
        };
        let video = media(&av, flv_file::TAG_VIDEO);
        let audio = media(&av, flv_file::TAG_AUDIO);
        let script = media(&av, flv_file::TAG_SCRIPT);
        let mp3_audio = media(&mp3, flv_file::TAG_AUDIO);
        let avc_seq = &video[0].body;
        let keyframe = video
            .iter()
            .find(|t| t.body[0] == 0x17 && t.body[1] == 1)
            .unwrap();
        let inter = video.iter().find(|t| t.body[0] == 0x27).unwrap();
        let aac_seq = &audio[0].body;
        let aac_raw = &audio[1].body;
        let config = avc::parse_decoder_config(avc_seq.slice(5..)).unwrap();
        let sps = config.sps[0].clone();
        let pps = config.pps[0].clone();

        // rtmp_client: selector (bit 0: play; the rest: read size) + what
        // castgate's own server session says to a publishing and to a
        // playing client, media included for the player.
        for (selector, mode, name) in [
            (0x00u8, ClientMode::Publish, "publish"),
            (0x21, ClientMode::Play, "play"),
        ] {
            let transcript = server_transcript(mode, &keyframe.body);
            w.put("rtmp_client", name, &cat(&[&[selector], &transcript]));
        }

        // flv_tags: selector (bit 0: audio; the rest seeds the time) + body.
        w.put("flv_tags", "avc_seq", &cat(&[&[0x10], avc_seq]));
        w.put("flv_tags", "avc_key", &cat(&[&[0x20], &keyframe.body]));
        w.put("flv_tags", "avc_inter", &cat(&[&[0x22], &inter.body]));
        w.put("flv_tags", "avc_eos", &[0x00, 0x17, 0x02, 0, 0, 0]);
        let mut ex = vec![0x24, 0x91];
        ex.extend_from_slice(b"avc1");
        ex.extend_from_slice(&keyframe.body[2..]);
        w.put("flv_tags", "ex_avc1_coded_frames", &ex);
        let mut ex = vec![0x24, 0x90];
        ex.extend_from_slice(b"avc1");
        ex.extend_from_slice(&avc_seq[5..]);
        w.put("flv_tags", "ex_avc1_seq", &ex);
        w.put("flv_tags", "aac_seq", &cat(&[&[0x11], aac_seq]));
        w.put("flv_tags", "aac_raw", &cat(&[&[0x13], aac_raw]));
        w.put("flv_tags", "mp3", &cat(&[&[0x15], &mp3_audio[0].body]));

        // avc_config: NAL length size selector + bytes.
        w.put("avc_config", "record", &cat(&[&[4], &avc_seq[5..]]));
        w.put("avc_config", "sps", &cat(&[&[4], &sps]));
        w.put(
            "avc_config",
            "avcc_keyframe",
            &cat(&[&[4], &keyframe.body[5..]]),
        );
        let mut annex_b = Vec::new();
        for unit in [&sps[..], &pps[..]] {
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(unit);
        }
        avc::to_annex_b(&keyframe.body[5..], 4, &mut annex_b).unwrap();
        w.put("avc_config", "annex_b_keyframe", &cat(&[&[4], &annex_b]));

        // aac_config: AudioSpecificConfigs (LC from ffmpeg; HE-AAC v1/v2
        // explicit, 960-sample frames, a PCE, an escaped object type).
        w.put("aac_config", "lc_ffmpeg", &aac_seq[2..]);
        for (name, asc) in [
            ("he_aac", &[0x2b, 0x92, 0x08, 0x00][..]),
            ("he_aac_v2", &[0xeb, 0x09, 0x88, 0x00]),
            ("lc_960", &[0x11, 0x94]),
            ("pce", &[0x11, 0x80, 0x04, 0xc8, 0x01, 0x00, 0x20, 0x10]),
            ("escape_explicit_rate", &[0xf8, 0x00, 0x00, 0x00]),
            ("ld", &[0xb9, 0x94]),
        ] {
            w.put("aac_config", name, asc);
        }

        // flv_file: the two files themselves are the seeds (already there).

        // ingest: the files as message sequences, the same stream with
        // Annex B video (in-band SPS/PPS), and a reconnect to MP3 audio.
        let setup = 0b0001_0101; // 1 s segments, 0.5 s parts, window 2
        let mut plain = vec![setup];
        let mut annex = vec![setup];
        let mut prev = 0u32;
        for t in av.iter().filter(|t| t.tag_type != flv_file::TAG_SCRIPT) {
            let audio = t.tag_type == flv_file::TAG_AUDIO;
            let step = t.timestamp.wrapping_sub(prev);
            prev = t.timestamp;
            let record = IngestRecord {
                audio,
                reconnect: false,
                step,
                repeat: 0,
                body: &t.body,
            };
            encode_ingest_record(&record, &mut plain);
            let body: Vec<u8> = if audio {
                t.body.to_vec()
            } else if t.body[1] == 0 {
                // The empty sequence header ffmpeg writes without extradata.
                vec![0x17, 0, 0, 0, 0]
            } else {
                let mut b = t.body[..5].to_vec();
                if t.body[0] >> 4 == 1 {
                    for unit in [&sps[..], &pps[..]] {
                        b.extend_from_slice(&[0, 0, 0, 1]);
                        b.extend_from_slice(unit);
                    }
                }
                avc::to_annex_b(&t.body[5..], 4, &mut b).unwrap();
                b
            };
            encode_ingest_record(
                &IngestRecord {
                    body: &body,
                    ..record
                },
                &mut annex,
            );
        }
        w.put("ingest", "h264_aac", &plain);
        w.put("ingest", "h264_annex_b_aac", &annex);

        // ts_demux: the same media through the SRT relays' muxer, in
        // chunks of 1313 bytes (selector 164); FFmpeg's own TS seeds
        // (HEVC, AC-3, E-AC-3, MP3, Opus) are committed beside it.
        let mut ingest = Ingest::new();
        let mut mux = TsMuxer::new();
        for t in &av {
            let kind = match t.tag_type {
                flv_file::TAG_AUDIO => MediaKind::Audio,
                flv_file::TAG_VIDEO => MediaKind::Video,
                _ => continue,
            };
            ingest
                .media(kind, t.timestamp, t.body.clone(), |e| mux.push(&e))
                .unwrap();
        }
        let mut ts = vec![164];
        for m in mux.take_messages(true) {
            ts.extend_from_slice(&m);
        }
        ts.truncate(1 + 100 * 188);
        w.put("ts_demux", "egress_h264_aac", &ts);
        let mut restart = vec![0b0100_0100]; // 0.5 s segments, 0.25 s parts, window 1, 1 extra
        let mut prev = 0u32;
        for (i, t) in av
            .iter()
            .filter(|t| t.tag_type == flv_file::TAG_VIDEO)
            .enumerate()
            .take(8)
        {
            let step = t.timestamp.wrapping_sub(prev);
            prev = t.timestamp;
            let record = IngestRecord {
                audio: false,
                reconnect: i == 0,
                step,
                repeat: 0,
                body: &t.body,
            };
            encode_ingest_record(&record, &mut restart);
        }
        for (i, t) in mp3
            .iter()
            .filter(|t| t.tag_type == flv_file::TAG_AUDIO)
            .enumerate()
        {
            let record = IngestRecord {
                audio: true,
                reconnect: i == 0,
                step: if i == 0 { 0 } else { 26 },
                repeat: 0,
                body: &t.body,
            };
            encode_ingest_record(&record, &mut restart);
        }
        // A long stream from a few tags: repeats with steps, so segments
        // are cut and evicted.
        for (audio, body, step, repeat) in [
            (false, avc_seq, 0, 0),
            (true, aac_seq, 0, 0),
            (false, &keyframe.body, 100, 0),
            (true, aac_raw, 21, 15),
            (false, &inter.body, 100, 3),
            (false, &keyframe.body, 100, 0),
            (true, aac_raw, 21, 15),
            (false, &inter.body, 100, 3),
            (false, &keyframe.body, 100, 0),
        ] {
            encode_ingest_record(
                &IngestRecord {
                    audio,
                    reconnect: false,
                    step,
                    repeat,
                    body,
                },
                &mut restart,
            );
        }
        w.put("ingest", "reconnect_mp3_repeats", &restart);

        // aggregate: 4-byte aggregate timestamp + FLV tags; user controls.
        let mut agg = 5000u32.to_be_bytes().to_vec();
        for t in av.iter().take(6) {
            let size = t.body.len() as u32;
            agg.push(t.tag_type);
            agg.extend_from_slice(&size.to_be_bytes()[1..]);
            let ts = t.timestamp.to_be_bytes();
            agg.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0], 0, 0, 0]);
            agg.extend_from_slice(&t.body);
            agg.extend_from_slice(&(size + 11).to_be_bytes());
        }
        w.put("aggregate", "flv_tags", &agg);
        for (name, uc) in [
            ("ping_request", UserControl::PingRequest(7)),
            (
                "set_buffer_length",
                UserControl::SetBufferLength {
                    stream_id: 1,
                    millis: 3000,
                },
            ),
            ("stream_begin", UserControl::StreamBegin(1)),
        ] {
            w.put("aggregate", name, &uc.encode());
        }

        // amf: commands and metadata as publishers send them, and AMF3.
        let connect = vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                ("type", Amf0Value::string("nonprivate")),
                (
                    "flashVer",
                    Amf0Value::string("FMLE/3.0 (compatible; FMSc/1.0)"),
                ),
                ("tcUrl", Amf0Value::string("rtmp://localhost/live")),
                ("objectEncoding", Amf0Value::Number(0.0)),
            ]),
        ];
        let create = vec![
            Amf0Value::string("createStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ];
        let publish = vec![
            Amf0Value::string("publish"),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
            Amf0Value::string("live"),
        ];
        let play = vec![
            Amf0Value::string("play"),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
            Amf0Value::Number(-2.0),
        ];
        w.put("amf", "connect", &amf0::encode_all(&connect));
        w.put("amf", "publish", &amf0::encode_all(&publish));
        w.put("amf", "onmetadata", &script[0].body);
        let mut a3 = Vec::new();
        amf3::encode(
            &Amf3Value::Object {
                class_name: String::new(),
                sealed: vec![],
                dynamic: vec![
                    ("app".into(), Amf3Value::String("live".into())),
                    ("n".into(), Amf3Value::Integer(-5)),
                    ("v".into(), Amf3Value::VectorDouble(vec![1.5, 2.0])),
                ],
                is_dynamic: true,
            },
            &mut a3,
        );
        amf3::encode(
            &Amf3Value::Array {
                assoc: vec![],
                dense: vec![Amf3Value::String("live".into()), Amf3Value::Null],
            },
            &mut a3,
        );
        w.put("amf", "amf3", &a3);
        let mut avmplus = vec![0x11];
        avmplus.extend_from_slice(&a3);
        w.put("amf", "avmplus", &avmplus);

        // chunk: a chunk stream as a publisher sends it (selector: pieces
        // of 1 + byte).
        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        enc.write(
            2,
            message::SET_CHUNK_SIZE,
            0,
            0,
            &[&4096u32.to_be_bytes()],
            &mut wire,
        );
        enc.set_chunk_size(4096);
        let cmd = |enc: &mut ChunkEncoder, wire: &mut BytesMut, sid: u32, v: &[Amf0Value]| {
            enc.write(
                3,
                message::COMMAND_AMF0,
                sid,
                0,
                &[&amf0::encode_all(v)],
                wire,
            );
        };
        cmd(&mut enc, &mut wire, 0, &connect);
        cmd(&mut enc, &mut wire, 0, &create);
        cmd(&mut enc, &mut wire, 1, &publish);
        enc.write(4, message::DATA_AMF0, 1, 0, &[&script[0].body], &mut wire);
        for t in av
            .iter()
            .filter(|t| t.tag_type != flv_file::TAG_SCRIPT)
            .take(12)
        {
            let (csid, type_id) = if t.tag_type == flv_file::TAG_VIDEO {
                (6, message::VIDEO)
            } else {
                (4, message::AUDIO)
            };
            enc.write(csid, type_id, 1, t.timestamp, &[&t.body], &mut wire);
        }
        w.put("chunk", "publish", &cat(&[&[0x3f], &wire]));
        w.put("chunk_session", "publish", &cat(&[&[0xff], &wire]));
        let mut small = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        cmd(&mut small, &mut wire, 0, &connect);
        small.write(
            2,
            message::USER_CONTROL,
            0,
            0,
            &[&UserControl::SetBufferLength {
                stream_id: 1,
                millis: 1000,
            }
            .encode()],
            &mut wire,
        );
        cmd(&mut small, &mut wire, 0, &create);
        cmd(&mut small, &mut wire, 1, &play);
        small.write(5, 0x16, 1, 0x0100_0000, &[&agg[4..]], &mut wire);
        small.write(2, message::ABORT, 0, 0, &[&6u32.to_be_bytes()], &mut wire);
        w.put("chunk", "play_128", &cat(&[&[0x00], &wire]));
        w.put("chunk_session", "play_128", &cat(&[&[0x21], &wire]));
        // On-demand play: play with start, length and reset, a buffer
        // length, getStreamLength, seek, pause and pauseRaw (both ways).
        let mut vod = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        cmd(&mut vod, &mut wire, 0, &connect);
        cmd(&mut vod, &mut wire, 0, &create);
        let n = Amf0Value::Number;
        let s = Amf0Value::string;
        for (sid, args) in [
            (
                1,
                vec![s("getStreamLength"), n(3.0), Amf0Value::Null, s("vod/clip")],
            ),
            (
                1,
                vec![
                    s("play"),
                    n(4.0),
                    Amf0Value::Null,
                    s("vod/clip"),
                    n(2500.0),
                    n(-1.0),
                    Amf0Value::Boolean(true),
                ],
            ),
        ] {
            cmd(&mut vod, &mut wire, sid, &args);
        }
        vod.write(
            2,
            message::USER_CONTROL,
            0,
            0,
            &[&UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            }
            .encode()],
            &mut wire,
        );
        for args in [
            vec![s("seek"), n(0.0), Amf0Value::Null, n(1200.0)],
            vec![
                s("pause"),
                n(0.0),
                Amf0Value::Null,
                Amf0Value::Boolean(true),
                n(1300.0),
            ],
            vec![
                s("pause"),
                n(0.0),
                Amf0Value::Null,
                Amf0Value::Boolean(false),
                n(1300.0),
            ],
            vec![s("pauseRaw"), n(0.0), Amf0Value::Null, n(1.0), n(1400.0)],
            vec![s("pauseRaw"), n(0.0), Amf0Value::Null, n(0.0), n(1400.0)],
            vec![
                s("play"),
                n(0.0),
                Amf0Value::Null,
                s("vod/other.mp4"),
                n(0.0),
                n(5000.0),
                Amf0Value::Boolean(false),
            ],
        ] {
            cmd(&mut vod, &mut wire, 1, &args);
        }
        w.put("chunk_session", "vod_commands", &cat(&[&[0x21], &wire]));
        // An even selector: the session sees the raw handshake too.
        let mut client = ClientHandshake::new_simple();
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut raw = vec![0x40];
        raw.extend_from_slice(&c0c1);
        raw.extend_from_slice(&c0c1[1..]); // a C2 that echoes nothing
        raw.extend_from_slice(&wire);
        w.put("chunk_session", "raw_handshake", &raw);

        // handshake: split selector + C0C1 (+ C2) from real clients.
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/handshake");
        for (i, name) in ["ffmpeg_c0c1", "rtmpdump_fp9_c0c1", "rtmpdump_simple_c0c1"]
            .iter()
            .enumerate()
        {
            let c0c1 = std::fs::read(vectors.join(format!("{name}.bin"))).unwrap();
            let selector = [0xff, 0x80, 0x55][i];
            let mut data = vec![selector];
            data.extend_from_slice(&c0c1);
            data.extend_from_slice(&c0c1[1..]);
            w.put("handshake", name, &data);
        }

        // http_path and stream_key.
        for (name, path) in [
            ("multivariant", "/live/key/index.m3u8"),
            ("mpd", "/app/a/b/manifest.mpd"),
            ("media_playlist", "/live/key/audio.m3u8"),
            ("init", "/live/key/video/init-1700000000.mp4"),
            ("segment", "/live/a/video/video/seg-1700000123.m4s"),
        ] {
            w.put("http_path", name, path.as_bytes());
        }
        for (name, text) in [
            ("token", "live\0key?token=abc&x=1"),
            ("nested", "app\0a/b.c/d-e_f~g@h+i=j:k"),
            ("dots", "live\0../x"),
        ] {
            w.put("stream_key", name, text.as_bytes());
        }
        // signed_url: a query, a 0 byte, a playlist or MPD.
        let valid = castgate::auth::signed::query("fuzz", "live/k", 1000);
        for (name, text) in [
            (
                "playlist",
                format!(
                    "{valid}\0#EXTM3U\n#EXT-X-MAP:URI=\"video/init-1.mp4\"\n#EXTINF:2.0,\nvideo/seg-1.m4s\n\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"video/seg-2.m4s?part=0\"\n"
                ),
            ),
            (
                "mpd",
                "exp=1&sig=00\0<SegmentTemplate media=\"video/seg-$Number$.m4s\" initialization=\"video/init-1.mp4\"/>".to_string(),
            ),
            ("expired", "exp=1&sig=zz&exp=2\0".to_string()),
        ] {
            w.put("signed_url", name, text.as_bytes());
        }
        rtmfp_seeds(&w);
    }

    /// rtmfp_packet: the plaintexts of a handshake between castgate's two
    /// ends (group 2, librtmfp's), and session chunks.
    fn rtmfp_seeds(w: &Writer<'_>) {
        use castgate::rtmfp::crypto::{DhGroup, PacketKey, HEADER_ROOM};
        use castgate::rtmfp::handshake::{open_startup, Initiator, Progress, Responder};
        use castgate::rtmfp::packet::{
            Builder, Chunk, DataFlags, Fragment, Header, Mode, UserData,
        };
        let plain = |mut p: Vec<u8>| PacketKey::default_key().open(&mut p).unwrap().to_vec();
        let from: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let responder = Responder::with_secret([1; 32], [2; 64]);
        let mut init = Initiator::new("rtmfp://127.0.0.1/live", 7, &[DhGroup::Modp1024]);
        let ihello = init.hello(1);
        w.put("rtmfp_packet", "ihello", &plain(ihello.clone()));
        let mut ih = ihello;
        let Chunk::IHello { epd, tag } = open_startup(&mut ih).unwrap() else {
            unreachable!()
        };
        let rhello = responder.hello(0, 2, &from, epd, tag).unwrap();
        w.put("rtmfp_packet", "rhello", &plain(rhello.clone()));
        let mut rh = rhello;
        let Progress::Send(iikeying) = init.on_chunk(3, &open_startup(&mut rh).unwrap()).unwrap()
        else {
            unreachable!()
        };
        w.put("rtmfp_packet", "iikeying", &plain(iikeying.clone()));
        let mut ik = iikeying;
        let Chunk::IIKeying {
            session_id,
            cookie,
            cert,
            skic,
            ..
        } = open_startup(&mut ik).unwrap()
        else {
            unreachable!()
        };
        let accepted = responder
            .keying(0, &from, session_id, cookie, cert, skic)
            .unwrap();
        w.put(
            "rtmfp_packet",
            "rikeying",
            &plain(Responder::rikeying_packet(4, &accepted, 9)),
        );
        // A session packet: user data with options, next user data, acks.
        let mut header = Header::new(Mode::Initiator);
        header.timestamp = Some(10);
        header.timestamp_echo = Some(5);
        let mut b = Builder::new(&header, 1200);
        let flags = DataFlags {
            fragment: Fragment::Begin,
            options: true,
            abandon: false,
            fin: false,
        };
        let options = [0x05, 0x00, 0x54, 0x43, 0x04, 0x00];
        b.push(&Chunk::UserData(UserData {
            flags,
            position: Some((2, 1, 1)),
            options: &options,
            data: b"\x14\x00\x00\x00\x00\x02\x00\x07connect",
        }));
        let flags = DataFlags {
            fragment: Fragment::End,
            options: false,
            abandon: false,
            fin: true,
        };
        b.push(&Chunk::UserData(UserData {
            flags,
            position: None,
            options: &[],
            data: b"rest",
        }));
        b.push(&Chunk::Ack {
            ranges: true,
            flow: 2,
            buffer_blocks: 64,
            cumulative: 1,
            rest: &[0, 0, 1, 2],
        });
        b.push(&Chunk::Ping(b"ping"));
        b.push(&Chunk::Close);
        w.put("rtmfp_packet", "session", &b.into_buf()[HEADER_ROOM..]);

        // rtmfp_session: records (length, plaintext) of a client's packets
        // under the fuzz session's key: a flow with metadata, a message in
        // one fragment, one in several (records over 255 bytes are cut, as
        // the fuzzer would), and a close.
        use castgate::rtmfp::crypto::SessionKeys;
        use castgate::rtmfp::session::{Session, SessionConfig};
        let key = PacketKey::new(&[7; 16]);
        let keys = SessionKeys::plain(key.clone(), key.clone());
        let mut client = Session::new(true, 1, keys, SessionConfig::default(), 0);
        let flow = client.open_flow(b"TC\x04\x00", None);
        client
            .send(
                flow,
                bytes::Bytes::from_static(b"\x14\x00\x00\x00\x00connect"),
                None,
            )
            .unwrap();
        client
            .send(flow, bytes::Bytes::from(vec![9u8; 600]), Some(50))
            .unwrap();
        let mut records = Vec::new();
        let record = |d: Vec<u8>, records: &mut Vec<u8>| {
            let mut d = d;
            let plain = key.open(&mut d).unwrap();
            let plain = &plain[..plain.len().min(255)];
            records.push(plain.len() as u8);
            records.extend_from_slice(plain);
        };
        while let Some(d) = client.poll_transmit(10) {
            record(d, &mut records);
        }
        records.push(0);
        client.close(20);
        while let Some(d) = client.poll_transmit(20) {
            record(d, &mut records);
        }
        w.put("rtmfp_session", "flow_and_close", &records);
    }

    /// Every byte a castgate server session sends to one of our clients,
    /// accepting its publish or play (and sending `media` to a player).
    fn server_transcript(mode: ClientMode, media: &[u8]) -> Vec<u8> {
        let mut client = ClientSession::new(ClientConfig {
            app: "live".into(),
            stream: "x".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            mode,
            ..ClientConfig::default()
        });
        let mut server = ServerSession::new(SessionConfig::default());
        let mut transcript = Vec::new();
        client.start();
        loop {
            let c = client.take_output();
            server.handle_input(&c).unwrap();
            while let Some(ev) = server.poll_event() {
                match ev {
                    ServerEvent::PublishRequested { stream_id, .. } => {
                        server.accept_publish(stream_id)
                    }
                    ServerEvent::PlayRequested { stream_id, .. } => {
                        server.accept_play(stream_id);
                        server.send_media(stream_id, MediaKind::Video, 0, &[media]);
                    }
                    _ => {}
                }
            }
            let s = server.take_output();
            if s.is_empty() {
                return transcript;
            }
            transcript.extend_from_slice(&s);
            client.handle_input(&s).unwrap();
        }
    }
}
