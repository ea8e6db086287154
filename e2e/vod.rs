//! RTMP video on demand: files under `[vod] dir` played as
//! `rtmp://HOST/vod/NAME` by ffmpeg, rtmpdump and castgate's own client
//! session (seek, pause, getStreamLength, Play.Complete), with the
//! refusals (a missing name, `../x`, a publish into the application) and
//! the pacing.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use castgate::media::MediaKind;
use castgate::rtmp::amf0::Amf0Value;
use castgate::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientSession};

use crate::harness::*;

const T: Duration = Duration::from_secs(90);

/// A media directory with the fixture `variant` as `clip.flv`, and as
/// `fast.mp4` (`-movflags +faststart`) and `frag.mp4`
/// (`-movflags frag_keyframe+empty_moov`) made from it by ffmpeg.
fn media_dir(variant: u32) -> tempfile::TempDir {
    let dir = tempdir();
    let src = fixture(variant);
    std::fs::copy(&src, dir.path().join("clip.flv")).unwrap();
    for (name, flags) in [
        ("fast.mp4", "+faststart"),
        ("frag.mp4", "frag_keyframe+empty_moov"),
    ] {
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(&src)
            .args(["-c", "copy", "-movflags", flags])
            .arg(dir.path().join(name))
            .output_within(RUN_LIMIT)
            .expect("cannot run ffmpeg");
        assert!(
            out.status.success(),
            "ffmpeg could not make {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn start(dir: &Path) -> Castgate {
    Castgate::start(&[("CASTGATE__VOD__DIR", dir.to_str().unwrap())])
}

/// Asserts every track of `played` is a contiguous run of the same track
/// of `source` (matched by payload: same checksums and sizes in order),
/// each track moved in time by one constant (±1 ms of rounding), the
/// audio's run starting where the video's shift puts it: a title's times
/// start at its first frame's decode time, which an MP4 may put below 0.
/// Source track 0 is the video. Returns the shifts (ms) of tracks 0 and 1.
fn assert_same_frames(source: &[Packet], played: &[Packet], what: &str) -> [i64; 2] {
    let mut shifts = [0; 2];
    for s in 0..2 {
        let mut shift = None;
        let src = track(source, s);
        let p = (0..2)
            .find(|&p| {
                let t = track(played, p);
                !t.is_empty() && src.iter().any(|x| x.md5 == t[0].md5)
            })
            .unwrap_or_else(|| panic!("{what}: no played track matches source track {s}"));
        let got = track(played, p);
        // Audio frames of a sine repeat: once the video's shift is known,
        // the audio run starts at the frame that lines up with it.
        let lines_up = |x: &Packet| s == 0 || (got[0].dts - x.dts - shifts[0]).abs() <= 1;
        let first = src
            .iter()
            .position(|x| x.md5 == got[0].md5 && lines_up(x))
            .unwrap_or_else(|| panic!("{what}, track {s}: the first packet is not in the source"));
        assert_eq!(
            got.len(),
            src.len() - first,
            "{what}, track {s}: played {} packets, the source has {} from the first one played",
            got.len(),
            src.len() - first
        );
        for (i, (g, e)) in got.iter().zip(&src[first..]).enumerate() {
            assert_eq!(
                (g.size, &g.md5),
                (e.size, &e.md5),
                "{what}, track {s}: packet {i}"
            );
            let d = g.dts - e.dts;
            let k = *shift.get_or_insert(d);
            assert!(
                (d - k).abs() <= 1 && (g.pts - e.pts - k).abs() <= 1,
                "{what}, track {s}: packet {i} at dts {} pts {}, the source's at {} {} (shift {k} ms)",
                g.dts,
                g.pts,
                e.dts,
                e.pts
            );
        }
        shifts[s as usize] = shift.unwrap_or(0);
    }
    shifts
}

/// The dts (ms) of the video keyframe at or before `ms` in a source whose
/// video track is `video` (a 30-frame GOP: the fixtures' keyframes).
fn keyframe_at_or_before(video: &[Packet], ms: i64) -> &Packet {
    video
        .iter()
        .step_by(30)
        .rfind(|p| p.dts <= ms)
        .expect("a keyframe")
}

/// ffmpeg plays each file whole: every frame of the source, payload for
/// payload, at the file's times (an MP4's shifted to start at its first
/// frame's decode time), and it ends at Play.Complete.
#[test]
fn ffmpeg_plays_each_file_frame_for_frame() {
    let media = media_dir(11);
    let server = start(media.path());
    let out_dir = tempdir();
    for name in ["clip.flv", "fast.mp4", "frag.mp4"] {
        let out = out_dir.path().join(format!("{name}.flv"));
        let mut player = play(&server.url(&format!("vod/{name}")), &out);
        let status = wait_child(&mut player, T, "ffmpeg player");
        assert!(status.success(), "{name}: {}", stderr_of(&mut player));
        let source = media.path().join(name);
        let [video, audio] = assert_same_frames(&framemd5(&source), &framemd5(&out), name);
        if name == "clip.flv" {
            assert_eq!([video, audio], [0, 0], "an FLV plays at its own times");
        } else {
            // Both tracks moved together: A/V sync as ffmpeg reads the
            // file's edit lists.
            assert!(
                (video - audio).abs() <= 1,
                "{name}: video moved {video} ms, audio {audio} ms"
            );
        }
        assert_eq!(decode_errors(&out), "", "{name}: decoding");
    }
    server.wait_log_all(&["play complete", "stream=\"vod/frag.mp4\""], T);
}

/// ffmpeg with `-rtmp_playpath` and `-ss` (sent as a `seek` once playing):
/// what it writes starts at the keyframe at or before the time it asked
/// for, and runs to the end.
#[test]
fn ffmpeg_starts_at_an_offset() {
    let media = media_dir(12);
    let server = start(media.path());
    let dir = tempdir();
    let out = dir.path().join("ss.flv");
    let source = media.path().join("fast.mp4");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-ss", "2"])
        .args(["-rtmp_playpath", "fast.mp4", "-i"])
        .arg(server.url("vod"))
        .args(["-copyts", "-copypriorss", "1", "-c", "copy", "-f", "flv"])
        .arg(&out)
        .output_within(T)
        .expect("cannot run ffmpeg");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The seek as castgate read it: to_ms=T (ffmpeg's target), at_ms=K.
    let line = server.wait_log_all(&["seek", "stream=\"vod/fast.mp4\""], T);
    let field = |k: &str| -> i64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    let (target, at) = (field("to_ms="), field("at_ms="));
    assert!((1500..=2000).contains(&target), "{line}");
    let src = framemd5(&source);
    let played = framemd5(&out);
    let [shift, _] = assert_same_frames(&src, &played, "ffmpeg -ss 2");
    let src_video = track(&src, 0);
    let first_video = played
        .iter()
        .find(|p| src_video.iter().any(|s| s.md5 == p.md5))
        .expect("video");
    assert_eq!(first_video.dts, at, "the first video frame is the keyframe");
    let kf = keyframe_at_or_before(&src_video, target - shift);
    assert_eq!(
        first_video.md5, kf.md5,
        "the keyframe at or before {target} ms"
    );
}

/// rtmpdump `--start 2 --stop 3` (`-A`/`-B`): from the keyframe at or
/// before 2 s to 3 s, then a clean end. librtmp writes every timestamp
/// plus its `--start` (its `nResumeTS`), so the file's times are the
/// source's + 2000 ms.
#[test]
fn rtmpdump_plays_a_range() {
    require("rtmpdump");
    let media = media_dir(13);
    let server = start(media.path());
    let dir = tempdir();
    let out = dir.path().join("range.flv");
    let run = Command::new("rtmpdump")
        .args([
            "-r",
            &server.url("vod/clip.flv"),
            "-A",
            "2",
            "-B",
            "3",
            "-o",
        ])
        .arg(&out)
        .output_within(T)
        .expect("cannot run rtmpdump");
    assert!(
        run.status.success(),
        "rtmpdump: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let src = framemd5(&media.path().join("clip.flv"));
    let got = framemd5_of(&out, "0:v");
    let video = track(&src, 0);
    let kf = keyframe_at_or_before(&video, 2000);
    assert_eq!(
        got[0].md5, kf.md5,
        "starts at the keyframe at or before 2 s"
    );
    assert_eq!(got[0].dts, kf.dts + 2000, "librtmp adds its start");
    let first = video.iter().position(|p| p.md5 == kf.md5).unwrap();
    let expect: Vec<&Packet> = video[first..].iter().filter(|p| p.dts <= 3000).collect();
    assert_eq!(
        got.len(),
        expect.len(),
        "video frames from the keyframe to 3 s"
    );
    for (g, e) in got.iter().zip(expect) {
        assert_eq!((&g.md5, g.dts), (&e.md5, e.dts + 2000));
    }
    // librtmp asks for `clip` (it drops `.flv`).
    server.wait_log_all(&["play complete", "stream=\"vod/clip\""], T);
}

/// castgate's client session over TCP, its events stamped when read.
struct Player {
    s: TcpStream,
    session: ClientSession,
    events: VecDeque<(Instant, ClientEvent)>,
}

impl Player {
    fn connect(server: &Castgate, path: &str, mode: ClientMode, buffer_ms: u32) -> Player {
        let (_, mut config) = ClientConfig::from_url(&server.url(path), mode).unwrap();
        config.buffer_ms = buffer_ms;
        let s = TcpStream::connect(server.rtmp).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut session = ClientSession::new(config);
        session.start();
        Player {
            s,
            session,
            events: VecDeque::new(),
        }
    }

    /// Writes what the session has to say, reads what came (up to 20 ms).
    fn exchange(&mut self) {
        let out = self.session.take_output();
        if !out.is_empty() {
            self.s.write_all(&out).expect("write");
        }
        let mut buf = [0u8; 65536];
        match self.s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => self.session.handle_input(&buf[..n]).expect("server bytes"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        let now = Instant::now();
        while let Some(ev) = self.session.poll_event() {
            self.events.push_back((now, ev));
        }
        let out = self.session.take_output();
        if !out.is_empty() {
            self.s.write_all(&out).expect("write");
        }
    }

    /// Every event up to and including the first that `stop` matches.
    fn until(
        &mut self,
        what: &str,
        mut stop: impl FnMut(&ClientEvent) -> bool,
    ) -> Vec<(Instant, ClientEvent)> {
        let deadline = Instant::now() + T;
        let mut seen = Vec::new();
        loop {
            while let Some((at, ev)) = self.events.pop_front() {
                let done = stop(&ev);
                seen.push((at, ev));
                if done {
                    return seen;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {T:?}; saw {seen:?}"
            );
            self.exchange();
        }
    }

    /// Every event within `d`.
    fn during(&mut self, d: Duration) -> Vec<(Instant, ClientEvent)> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.exchange();
        }
        self.events.drain(..).collect()
    }
}

fn is_status(ev: &ClientEvent, want: &str) -> bool {
    matches!(ev, ClientEvent::Status { code, .. } | ClientEvent::Failed { code, .. } if code == want)
}

/// A coded frame (not a sequence header): AVC and AAC packet type 1.
fn frame_of(ev: &ClientEvent) -> Option<(MediaKind, u32)> {
    match ev {
        ClientEvent::Media {
            kind,
            timestamp,
            payload,
        } if payload.get(1) == Some(&1) => Some((*kind, *timestamp)),
        _ => None,
    }
}

/// A raw client: getStreamLength ≈ the duration, pause (Pause.Notify, no
/// media while paused), unpause (media resume where they stopped), seek
/// (Seek.Notify, then the keyframe at or before the target), and
/// NetStream.Play.Complete at the end.
#[test]
fn a_client_seeks_pauses_asks_the_length_and_completes() {
    let media = media_dir(14);
    let server = start(media.path());
    let file = std::fs::read(media.path().join("fast.mp4")).unwrap();
    let title = castgate::vod::Title::read(bytes::Bytes::from(file)).expect("the title");
    let mut p = Player::connect(&server, "vod/fast.mp4", ClientMode::Play, 500);
    p.until("Play.Start", |e| matches!(e, ClientEvent::Playing { .. }));
    p.session.call(
        "getStreamLength",
        10.0,
        &[Amf0Value::string("mp4:fast.mp4")],
    );
    let got = p.until("the stream length", |e| {
        matches!(e, ClientEvent::Result { .. })
    });
    let Some((_, ClientEvent::Result { value, .. })) = got.last() else {
        unreachable!()
    };
    let secs = value.as_f64().expect("a number");
    assert!(
        (secs - title.duration_ms as f64 / 1000.0).abs() < 0.001,
        "{secs}"
    );
    assert!((3.9..4.3).contains(&secs), "{secs}");

    // Some frames, then pause.
    let first = p.until("a frame", |e| frame_of(e).is_some_and(|(_, ts)| ts > 600));
    p.session.send_stream_command(
        "pause",
        0.0,
        &[Amf0Value::Boolean(true), Amf0Value::Number(600.0)],
    );
    let before = p.until("Pause.Notify", |e| is_status(e, "NetStream.Pause.Notify"));
    let last = first
        .iter()
        .chain(&before)
        .filter_map(|(_, e)| frame_of(e))
        .map(|(_, ts)| ts)
        .max()
        .unwrap();
    // Paused, with a 500 ms buffer: unpaused, a second would bring ~30
    // frames.
    let paused = p.during(Duration::from_millis(1200));
    assert!(
        paused.iter().all(|(_, e)| frame_of(e).is_none()),
        "media while paused: {paused:?}"
    );
    p.session.send_stream_command(
        "pause",
        0.0,
        &[Amf0Value::Boolean(false), Amf0Value::Number(600.0)],
    );
    p.until("Unpause.Notify", |e| {
        is_status(e, "NetStream.Unpause.Notify")
    });
    let resumed = p.until("a frame", |e| frame_of(e).is_some());
    let (_, ts) = frame_of(&resumed.last().unwrap().1).unwrap();
    assert!(
        ts >= last.saturating_sub(100) && ts <= last + 200,
        "resumed at {ts}, paused after {last}"
    );

    // Seek to 3.5 s: the keyframe at 3 s.
    p.session
        .send_stream_command("seek", 0.0, &[Amf0Value::Number(3500.0)]);
    p.until("Seek.Notify", |e| is_status(e, "NetStream.Seek.Notify"));
    let after = p.until("a video frame", |e| {
        frame_of(e).is_some_and(|(k, _)| k == MediaKind::Video)
    });
    let (_, ts) = frame_of(&after.last().unwrap().1).unwrap();
    let kf = title.seek(3500).unwrap();
    assert_eq!(i64::from(ts), kf.dts, "the keyframe at or before 3.5 s");
    assert!((2900..=3100).contains(&kf.dts), "{kf:?}");

    let end = p.until("Play.Complete", |e| {
        matches!(e, ClientEvent::Data { values, .. }
            if values[0].as_str() == Some("onPlayStatus")
                && values[1].get("code").and_then(|c| c.as_str()) == Some("NetStream.Play.Complete"))
    });
    assert!(end.iter().any(|(_, e)| frame_of(e).is_some()));
    p.until("Play.Stop", |e| is_status(e, "NetStream.Play.Stop"));
    server.wait_log_all(&["play complete", "stream=\"vod/fast.mp4\""], T);
}

/// A name that is not there: StreamNotFound; `../x`: refused; a file that
/// is not media: Play.Failed with the reason; a publish into the
/// on-demand application: Publish.BadName; each with a log line.
#[test]
fn missing_names_traversal_and_publishing_are_refused() {
    let media = media_dir(15);
    std::fs::write(media.path().join("bad.mp4"), b"<html>not a video</html>").unwrap();
    let server = start(media.path());
    for (path, code, log) in [
        (
            "vod/bad.mp4",
            "NetStream.Play.Failed",
            "neither an FLV nor an MP4",
        ),
        (
            "vod/missing.mp4",
            "NetStream.Play.StreamNotFound",
            "no such file",
        ),
        (
            "vod/../clip.flv",
            "NetStream.Play.StreamNotFound",
            "dot path segment",
        ),
    ] {
        let mut p = Player::connect(&server, path, ClientMode::Play, 3000);
        let seen = p.until(path, |e| {
            matches!(e, ClientEvent::Failed { .. } | ClientEvent::Playing { .. })
        });
        assert!(is_status(&seen.last().unwrap().1, code), "{path}: {seen:?}");
        server.wait_log_all(&["play refused", log], T);
    }
    let mut p = Player::connect(&server, "vod/new", ClientMode::Publish, 0);
    let seen = p.until("publish", |e| {
        matches!(
            e,
            ClientEvent::Failed { .. } | ClientEvent::Publishing { .. }
        )
    });
    assert!(
        is_status(&seen.last().unwrap().1, "NetStream.Publish.BadName"),
        "{seen:?}"
    );
    server.wait_log_all(&["publish refused", "on-demand application"], T);
    assert!(!media.path().join("new").exists());
}

/// With a 500 ms buffer a 4 s file takes about 4 s: its last frame comes
/// no sooner than its duration less the lead less 0.5 s after Play.Start,
/// and not much later than the duration.
#[test]
fn sending_is_paced_at_real_time_plus_the_buffer() {
    let media = media_dir(16);
    let server = start(media.path());
    let mut p = Player::connect(&server, "vod/clip.flv", ClientMode::Play, 500);
    let started = p.until("Play.Start", |e| matches!(e, ClientEvent::Playing { .. }));
    let t0 = started.last().unwrap().0;
    let seen = p.until("Play.Complete", |e| {
        matches!(e, ClientEvent::Data { values, .. } if values[0].as_str() == Some("onPlayStatus"))
    });
    let last_frame = seen
        .iter()
        .filter(|(_, e)| frame_of(e).is_some())
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    let took = last_frame - t0;
    assert!(
        took >= Duration::from_millis(4000 - 500 - 500),
        "sent in {took:?}"
    );
    assert!(took <= Duration::from_millis(6000), "sent in {took:?}");
}

/// The first event that answers a play: Play.Start, or the refusal.
fn play_answer(p: &mut Player, what: &str) -> ClientEvent {
    p.until(what, |e| {
        matches!(e, ClientEvent::Failed { .. } | ClientEvent::Playing { .. })
    })
    .pop()
    .unwrap()
    .1
}

/// Plays are authorised as live plays are: with signed URLs
/// (`auth.url_secret`), a file plays with its signature and is refused
/// without; getStreamLength answers 0 without it, the duration with it.
#[test]
fn plays_are_authorised_like_live_plays() {
    let media = media_dir(17);
    let secret = "vod-secret-1";
    let server = Castgate::start(&[
        ("CASTGATE__VOD__DIR", media.path().to_str().unwrap()),
        ("CASTGATE__AUTH__URL_SECRET", secret),
    ]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let signed = castgate::auth::signed::query(secret, "vod/clip.flv", exp);
    let length = |p: &mut Player, name: &str| -> f64 {
        p.session
            .call("getStreamLength", 10.0, &[Amf0Value::string(name)]);
        let got = p.until("a length", |e| matches!(e, ClientEvent::Result { .. }));
        match &got.last().unwrap().1 {
            ClientEvent::Result { value, .. } => value.as_f64().expect("a number"),
            _ => unreachable!(),
        }
    };

    let mut p = Player::connect(&server, "vod/clip.flv", ClientMode::Play, 3000);
    let answer = play_answer(&mut p, "a play without its signature");
    assert!(is_status(&answer, "NetStream.Play.Failed"), "{answer:?}");
    server.wait_log_all(&["play refused: unauthorised", "signed URL required"], T);
    assert_eq!(length(&mut p, "clip.flv"), 0.0);

    let path = format!("vod/clip.flv?{signed}");
    let mut p = Player::connect(&server, &path, ClientMode::Play, 3000);
    let answer = play_answer(&mut p, "a signed play");
    assert!(matches!(answer, ClientEvent::Playing { .. }), "{answer:?}");
    let secs = length(&mut p, &format!("clip.flv?{signed}"));
    assert!((3.9..4.3).contains(&secs), "{secs}");
    server.wait_log_all(&["play started", "stream=\"vod/clip.flv\""], T);
}

/// The live player's codec gating: a legacy client asking for an HEVC and
/// Opus file is refused with the codecs named; one that announced them in
/// `connect` (Enhanced RTMP) plays it.
#[test]
fn a_legacy_player_of_an_hevc_file_is_refused_naming_the_codecs() {
    let media = tempdir();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/package/testdata/hevc_opus.flv");
    std::fs::copy(testdata, media.path().join("hevc.flv")).unwrap();
    let server = start(media.path());
    let mut legacy = Player::connect(&server, "vod/hevc.flv", ClientMode::Play, 3000);
    match play_answer(&mut legacy, "the legacy player's answer") {
        ClientEvent::Failed { code, description } => {
            assert_eq!(code, "NetStream.Play.Failed");
            assert!(
                description.contains("HEVC video and Opus audio"),
                "{description}"
            );
        }
        other => panic!("{other:?}"),
    }
    let (_, mut config) =
        ClientConfig::from_url(&server.url("vod/hevc.flv"), ClientMode::Play).unwrap();
    config.fourcc_list = vec!["hvc1".into(), "Opus".into()];
    let s = TcpStream::connect(server.rtmp).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut session = ClientSession::new(config);
    session.start();
    let mut enhanced = Player {
        s,
        session,
        events: VecDeque::new(),
    };
    assert!(matches!(
        play_answer(&mut enhanced, "the enhanced player's answer"),
        ClientEvent::Playing { .. }
    ));
    enhanced.until("media", |e| matches!(e, ClientEvent::Media { .. }));
}

/// FFmpeg 9, announcing HEVC and Opus, plays an Enhanced RTMP file on
/// demand and gets every frame of it.
#[test]
fn ffmpeg9_plays_an_hevc_file_frame_for_frame() {
    let ff = ffmpeg9();
    let media = tempdir();
    let source = media.path().join("hevc.flv");
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/package/testdata/hevc_opus.flv");
    std::fs::copy(testdata, &source).unwrap();
    let server = start(media.path());
    let out = tempdir();
    let played = out.path().join("played.flv");
    let run = Command::new(&ff)
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-rtmp_enhanced_codecs", "hvc1,Opus", "-i"])
        .arg(server.url("vod/hevc.flv"))
        .args(["-copyts", "-c", "copy", "-f", "flv"])
        .arg(&played)
        .output_within(T)
        .expect("cannot run FFmpeg 9");
    assert!(
        run.status.success(),
        "FFmpeg 9: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for map in ["0:v", "0:a"] {
        let src = framemd5_by(&ff, &source, map);
        let got = framemd5_by(&ff, &played, map);
        assert!(src.len() > 10, "{map}: {} packets in the source", src.len());
        assert_eq!(got, src, "{map}: every frame at the file's times");
    }
}

/// A recording plays on demand by its path (`rtmp://HOST/vod/live/KEY/…`,
/// which ffmpeg and librtmp split as the application `vod/live`): ffmpeg
/// and rtmpdump get every frame of what was published.
#[test]
fn a_recording_plays_over_rtmp_by_its_path() {
    recording_plays_over_rtmp("flv", 18);
}

/// The same for a CMAF recording (the default format): its directory's
/// tracks are read back into one title.
#[test]
fn a_cmaf_recording_plays_over_rtmp_by_its_path() {
    recording_plays_over_rtmp("cmaf", 19);
}

fn recording_plays_over_rtmp(format: &str, variant: u32) {
    let dir = tempdir();
    let media = dir.path().join("media");
    let cfg = dir.path().join("castgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vod]\ndir = \"{m}\"\n[recorder]\ndir = \"{m}\"\n[[record]]\nstream = \"live/*\"\nformat = \"{format}\"\n",
            m = media.display()
        ),
    )
    .unwrap();
    let server = Castgate::start_with_args(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    let src = fixture(variant);
    let mut publisher = publish(&src, &server.url("live/show"), &[]);
    assert!(wait_child(&mut publisher, T, "publisher").success());
    let done = server.wait_log_all(&["recording completed", "stream=\"live/show\""], T);
    let path = done
        .split_whitespace()
        .find_map(|w| w.strip_prefix("path="))
        .map(|p| p.trim_matches('"').to_string())
        .expect("a path");
    let vod_path = path
        .strip_suffix(".flv")
        .or_else(|| path.strip_suffix("/index.m3u8"))
        .expect("an FLV or CMAF recording");
    let url = server.url(&format!("vod/{vod_path}"));
    let out = dir.path().join("ffmpeg.flv");
    let mut player = play(&url, &out);
    let status = wait_child(&mut player, T, "ffmpeg player");
    assert!(status.success(), "ffmpeg: {}", stderr_of(&mut player));
    let [video, audio] = assert_same_frames(&framemd5(&src), &framemd5(&out), "ffmpeg");
    assert!(
        (video - audio).abs() <= 1,
        "video moved {video} ms, audio {audio} ms"
    );

    require("rtmpdump");
    let dumped = dir.path().join("rtmpdump.flv");
    let run = Command::new("rtmpdump")
        .args(["-r", &url, "-o"])
        .arg(&dumped)
        .output_within(T)
        .expect("cannot run rtmpdump");
    // rtmpdump calls a download "incomplete" (exit 2) when its last
    // timestamp is under 99.9 % of onMetaData's duration, which runs to
    // the end of the last frame: 21 ms of a 4 s file is 0.5 %. Every frame
    // is checked below.
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success()
            || (run.status.code() == Some(2) && said.contains("downloaded about 99.")),
        "rtmpdump: {said}"
    );
    let src_video = framemd5_of(&src, "0:v");
    let got = framemd5_of(&dumped, "0:v");
    assert_eq!(
        got.iter().map(|p| &p.md5).collect::<Vec<_>>(),
        src_video.iter().map(|p| &p.md5).collect::<Vec<_>>(),
        "rtmpdump: every video frame"
    );
    let audio = framemd5_of(&dumped, "0:a");
    assert_eq!(
        audio.len(),
        framemd5_of(&src, "0:a").len(),
        "rtmpdump: every audio frame"
    );
    server.wait_log_all(&["play complete", &format!("stream=\"vod/{vod_path}\"")], T);
}
