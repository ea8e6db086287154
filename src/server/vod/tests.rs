//! On-demand play driven by hand, time passed in: castgate's own client
//! session reads what is sent.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::media::flv::CodecSet;
use crate::media::MediaKind;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientSession};
use crate::rtmp::session::{ServerEvent, SessionConfig};

const HEVC_OPUS: &[u8] = include_bytes!("../../package/testdata/hevc_opus.flv");

fn title() -> Arc<Title> {
    Arc::new(Title::read(Bytes::from_static(HEVC_OPUS)).unwrap())
}

/// A player (announcing `fourccs`) that asked to play, and the server's
/// stream id for it (the play not answered yet).
fn player(fourccs: &[&str]) -> (ClientSession, ServerSession, u32) {
    let (_, mut config) =
        ClientConfig::from_url("rtmp://127.0.0.1/vod/clip.flv", ClientMode::Play).unwrap();
    config.fourcc_list = fourccs.iter().map(|s| s.to_string()).collect();
    let mut client = ClientSession::new(config);
    let mut server = ServerSession::new(SessionConfig::default());
    client.start();
    let mut stream_id = None;
    exchange(&mut client, &mut server, |ev| {
        if let ServerEvent::PlayRequested { stream_id: id, .. } = ev {
            stream_id = Some(id);
        }
    });
    while client.poll_event().is_some() {}
    (client, server, stream_id.expect("a play request"))
}

fn exchange(
    client: &mut ClientSession,
    server: &mut ServerSession,
    mut on: impl FnMut(ServerEvent),
) {
    loop {
        let (c, s) = (client.take_output(), server.take_output());
        if c.is_empty() && s.is_empty() {
            return;
        }
        server.handle_input(&c).unwrap();
        client.handle_input(&s).unwrap();
        while let Some(ev) = server.poll_event() {
            on(ev);
        }
    }
}

/// What the client read: media (kind, timestamp) and the status codes
/// (onStatus, onPlayStatus) in order.
#[derive(Default, Debug)]
struct Read {
    media: Vec<(MediaKind, u32)>,
    codes: Vec<String>,
}

fn read(client: &mut ClientSession, server: &mut ServerSession) -> Read {
    exchange(client, server, |_| {});
    let mut r = Read::default();
    while let Some(ev) = client.poll_event() {
        match ev {
            ClientEvent::Media {
                kind,
                timestamp,
                payload,
            } if is_frame(kind, &payload) => r.media.push((kind, timestamp)),
            ClientEvent::Playing { .. } => r.codes.push("NetStream.Play.Start".into()),
            ClientEvent::Status { code, .. } | ClientEvent::Failed { code, .. } => {
                r.codes.push(code)
            }
            ClientEvent::Data { values, .. } if values[0].as_str() == Some("onPlayStatus") => {
                let code = values[1].get("code").and_then(|v| v.as_str()).unwrap_or("");
                r.codes.push(format!("onPlayStatus {code}"));
            }
            _ => {}
        }
    }
    r
}

/// Whether an FLV tag body is a coded frame (not a sequence start or
/// other configuration): legacy AVC/AAC by their packet type byte,
/// Enhanced RTMP by the packet type in the first byte.
fn is_frame(kind: MediaKind, body: &[u8]) -> bool {
    let b0 = body.first().copied().unwrap_or(0);
    match kind {
        MediaKind::Video if b0 & 0x80 != 0 => matches!(b0 & 0x0f, 1 | 3),
        MediaKind::Audio if b0 >> 4 == 9 => b0 & 0x0f == 1,
        _ => body.get(1) == Some(&1),
    }
}

fn frame_times(t: &Title) -> Vec<i64> {
    t.events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Frame(f) => Some(f.dts),
            _ => None,
        })
        .collect()
}

fn vod(
    title: &Arc<Title>,
    server: &ServerSession,
    sid: u32,
    start: i64,
    len: Option<i64>,
    lead: Duration,
    now: Instant,
) -> VodPlay {
    let playout = Playout::new(sid, server.peer_capabilities().codecs(), true);
    VodPlay::new(
        "vod/clip".into(),
        Arc::clone(title),
        playout,
        start,
        len,
        lead,
        now,
    )
}

/// From the keyframe at or before the start, with the file's times; what
/// is within the lead at once, the rest when due; then Play.Complete and
/// Play.Stop.
#[test]
fn plays_from_the_keyframe_before_start_paced_by_the_lead() {
    let t = title();
    assert!(t.seek_points.len() >= 2, "{:?}", t.seek_points);
    let second = t.seek_points[1];
    let (mut client, mut server, sid) = player(&["hvc1", "Opus"]);
    let t0 = Instant::now();
    let lead = Duration::from_millis(500);
    let mut v = vod(&t, &server, sid, second.dts + 10, None, lead, t0);
    let Step::Wait(Some(wake)) = v.begin(&mut server, t0) else {
        panic!("a wake-up")
    };
    let r = read(&mut client, &mut server);
    assert_eq!(
        &r.codes[..],
        ["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let first_video = r.media.iter().find(|m| m.0 == MediaKind::Video).unwrap();
    assert_eq!(i64::from(first_video.1), second.dts);
    // Everything within the lead, nothing past it.
    let times: Vec<i64> = r.media.iter().map(|m| i64::from(m.1)).collect();
    assert!(times.iter().all(|&ts| ts <= second.dts + 500), "{times:?}");
    let next = frame_times(&t)
        .into_iter()
        .skip_while(|&d| d < second.dts)
        .find(|&d| d > second.dts + 500)
        .unwrap();
    assert_eq!(
        wake,
        t0 + Duration::from_millis((next - second.dts) as u64) - lead
    );

    // Early: nothing more. Then all of it, then the end.
    assert_eq!(
        v.pump(&mut server, wake - Duration::from_millis(1)),
        Step::Wait(Some(wake))
    );
    assert!(read(&mut client, &mut server).media.is_empty());
    let late = t0 + Duration::from_secs(3600);
    assert_eq!(v.pump(&mut server, late), Step::Wait(None));
    assert!(v.is_finished());
    let r = read(&mut client, &mut server);
    let last = frame_times(&t).into_iter().max().unwrap();
    assert_eq!(r.media.iter().map(|m| i64::from(m.1)).max(), Some(last));
    assert_eq!(
        r.codes,
        [
            "onPlayStatus NetStream.Play.Complete",
            "NetStream.Play.Stop"
        ]
    );
}

/// A range with a length stops after it.
#[test]
fn a_length_stops_the_play() {
    let t = title();
    let (mut client, mut server, sid) = player(&["*"]);
    let t0 = Instant::now();
    let mut v = vod(&t, &server, sid, 0, Some(300), Duration::from_secs(60), t0);
    assert_eq!(v.begin(&mut server, t0), Step::Wait(None));
    let r = read(&mut client, &mut server);
    let max = r.media.iter().map(|m| m.1).max().unwrap();
    assert!(max <= 300, "{max}");
    assert!(frame_times(&t).iter().any(|&d| d > 300 && d < 400));
    assert_eq!(
        &r.codes[r.codes.len() - 2..],
        [
            "onPlayStatus NetStream.Play.Complete",
            "NetStream.Play.Stop"
        ]
    );
}

/// Pause: Pause.Notify and nothing until unpause, which resumes where it
/// stopped at the same pace; seek: Seek.Notify, then the frames of the
/// keyframe at or before the target.
#[test]
fn pause_and_seek() {
    let t = title();
    let (mut client, mut server, sid) = player(&["hvc1", "Opus"]);
    let t0 = Instant::now();
    let lead = Duration::from_millis(200);
    let mut v = vod(&t, &server, sid, 0, None, lead, t0);
    v.begin(&mut server, t0);
    read(&mut client, &mut server);

    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(v.pause(&mut server, true, t1), Step::Wait(None));
    assert!(v.is_paused());
    let r = read(&mut client, &mut server);
    assert_eq!(r.codes, ["NetStream.Pause.Notify"]);
    let t2 = t1 + Duration::from_secs(30);
    assert_eq!(v.pump(&mut server, t2), Step::Wait(None));
    assert!(read(&mut client, &mut server).media.is_empty());

    // Unpaused 30 s later: the frames due 50 ms after the pause are due
    // 50 ms after the unpause.
    let sent_to = v.position_ms;
    v.pause(&mut server, false, t2);
    let r = read(&mut client, &mut server);
    assert_eq!(r.codes, ["NetStream.Unpause.Notify"]);
    assert!(
        r.media.iter().all(|m| i64::from(m.1) <= 300),
        "{:?}",
        r.media
    );
    v.pump(&mut server, t2 + Duration::from_millis(50));
    let r = read(&mut client, &mut server);
    assert!(r
        .media
        .iter()
        .all(|m| i64::from(m.1) > sent_to && m.1 <= 350));

    let target = t.seek_points.last().unwrap().dts + 1;
    let t3 = t2 + Duration::from_secs(1);
    v.seek(&mut server, target, t3);
    let r = read(&mut client, &mut server);
    assert_eq!(
        &r.codes[..3],
        [
            "NetStream.Seek.Notify",
            "NetStream.Play.Reset",
            "NetStream.Play.Start"
        ]
    );
    let first_video = r.media.iter().find(|m| m.0 == MediaKind::Video).unwrap();
    assert_eq!(i64::from(first_video.1), target - 1);
}

/// A legacy player of an HEVC and Opus file is refused, the codecs named.
#[test]
fn a_legacy_player_of_enhanced_codecs_is_refused() {
    let t = title();
    let (mut client, mut server, sid) = player(&[]);
    let t0 = Instant::now();
    let playout = Playout::new(sid, CodecSet::LEGACY, false);
    let mut v = VodPlay::new("vod/clip".into(), t, playout, 0, None, DEFAULT_LEAD, t0);
    let Step::Failed(why) = v.begin(&mut server, t0) else {
        panic!("refused")
    };
    assert!(why.contains("HEVC video and Opus audio"), "{why}");
    let r = read(&mut client, &mut server);
    assert_eq!(r.codes, ["NetStream.Play.Failed"]);
    assert!(r.media.is_empty());
}

#[test]
fn paths_in_the_vod_application() {
    assert_eq!(
        path_of("vod", "vod", "mp4:a/b.mp4").as_deref(),
        Some("a/b.mp4")
    );
    assert_eq!(path_of("vod", "vod", "clip").as_deref(), Some("clip"));
    assert_eq!(path_of("vod", "vod/dir", "flv:c").as_deref(), Some("dir/c"));
    assert_eq!(path_of("vod", "live", "clip"), None);
    assert_eq!(path_of("vod", "vodka", "clip"), None);
    assert_eq!(lead_of(36_000_000), MAX_LEAD);
    assert_eq!(lead_of(1500), Duration::from_millis(1500));
}

/// The metadata says the duration and what is known of the tracks.
#[test]
fn metadata_has_the_duration() {
    let t = title();
    let m = metadata(&t);
    let v = amf0::decode_all(m.amf0()).unwrap();
    let secs = v[0].get("duration").and_then(|d| d.as_f64()).unwrap();
    assert_eq!(secs, t.duration_ms as f64 / 1000.0);
}
