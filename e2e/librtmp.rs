//! librtmp's peers, shared by the tests of every variant they speak
//! (rtmpt://, rtmpe://, rtmpte://): rtmpdump as a player, GStreamer's
//! `rtmpsink` as a publisher (from the fixture, or a live test source that
//! runs until it is interrupted), and the checks of what castgate made of
//! a GStreamer publish.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::relay::Proc;

/// Generous: the suite runs many tests at once on 2 cores.
pub(crate) const T: Duration = Duration::from_secs(90);

/// librtmp's tunnel client (rtmpt://, rtmpte://) ends a publish by posting
/// its last commands (FCUnpublish, deleteStream) and `/close` and closing
/// the socket without reading the replies: castgate often never reads
/// those requests (its log says "HTTP connection ended: error writing a
/// body to connection"), and the publish then ends only when the RTMPT
/// session expires (`rtmpt.session_timeout_secs`, 30 s by default) or the
/// media timeout passes. A short session timeout keeps those tests quick;
/// a librtmp client sends or polls far more often than this while it runs.
pub(crate) const SHORT_RTMPT_SESSIONS: (&str, &str) =
    ("CASTGATE__RTMPT__SESSION_TIMEOUT_SECS", "5");

/// `gst-launch-1.0 -e`: the fixture's FLV demuxed and re-muxed by
/// GStreamer's flvmux into `sink` (its element and properties), with a
/// copy of exactly what flvmux produced written to `sent`.
pub(crate) fn gst_publish(src: &Path, sink: &[&str], sent: &Path) -> Child {
    require("gst-launch-1.0");
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let mut args = words("-q -e filesrc");
    args.push(format!("location={}", src.display()));
    args.extend(words("! flvdemux name=d d.video ! queue ! h264parse"));
    args.extend(words(
        "! flvmux name=m streamable=true ! tee name=t ! queue !",
    ));
    args.extend(sink.iter().map(|s| s.to_string()));
    args.extend(words("t. ! queue ! filesink"));
    args.push(format!("location={}", sent.display()));
    args.extend(words("d.audio ! queue ! aacparse ! m."));
    gst_launch(&args)
}

/// `gst-launch-1.0 ARGS` with its output piped (for the failure message).
fn gst_launch(args: &[String]) -> Child {
    Command::new("gst-launch-1.0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run gst-launch-1.0")
}

/// `gst-launch-1.0 -e`: a live test picture (H.264, 320x180 at 30 fps,
/// a keyframe a second) and tone (AAC) published by `rtmpsink` to
/// `location` until the process is interrupted ([`interrupt`]), when `-e`
/// ends the stream cleanly. For tests that look at castgate while a
/// publisher is certainly still live.
pub(crate) fn gst_live_publish(location: &str) -> Child {
    require("gst-launch-1.0");
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let mut args = words(
        "-q -e videotestsrc is-live=true ! video/x-raw,width=320,height=180,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 threads=1 \
         ! h264parse ! flvmux name=m streamable=true ! rtmpsink",
    );
    args.push(format!("location={location}"));
    args.extend(words(
        "audiotestsrc is-live=true ! audioconvert ! voaacenc ! aacparse ! m.",
    ));
    gst_launch(&args)
}

/// Sends SIGINT (what Ctrl-C sends): rtmpdump stops and keeps its file,
/// `gst-launch-1.0 -e` ends its stream.
pub(crate) fn interrupt(child: &Child) {
    // SAFETY: kill(2) with a valid pid and signal number has no memory effects.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(r, 0, "kill -INT failed");
}

/// Waits until `done` answers true (it may itself wait briefly for an
/// event, e.g. `server.find_log(parts, Duration::from_millis(200))`),
/// failing the test at once, with what it printed, if one of `peers` exits
/// meanwhile: a client that gave up (a refused handshake) is reported as
/// such instead of as a timeout.
pub(crate) fn await_with_peers(
    peers: &mut [(&mut Child, &str)],
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        if done() {
            return;
        }
        for (child, name) in peers.iter_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}) before {what}: {}",
                    output_of(child)
                );
            }
        }
        assert!(Instant::now() < deadline, "{what}: not within {T:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a log line with every one of `parts` while `peers` run (see
/// [`await_with_peers`]); returns the line.
pub(crate) fn wait_log_with_peers(
    server: &Castgate,
    peers: &mut [(&mut Child, &str)],
    parts: &[&str],
) -> String {
    let mut line = None;
    await_with_peers(peers, &format!("a log line with {parts:?}"), || {
        line = server.find_log(parts, Duration::from_millis(200));
        line.is_some()
    });
    line.unwrap()
}

/// A finished child's stdout and stderr, for failure messages.
pub(crate) fn output_of(child: &mut Child) -> String {
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    out + &stderr_of(child)
}

/// Waits for a GStreamer publish to finish cleanly, then for castgate to
/// log its end over `proto` with every frame, and its packaging to end.
pub(crate) fn expect_gst_publish(
    server: &Castgate,
    gst: &mut Child,
    key: &str,
    proto: &str,
    frames: usize,
) {
    let status = wait_child(gst, T, "gst-launch-1.0");
    assert!(
        status.success(),
        "GStreamer's {proto} publish failed ({status}): {}",
        output_of(gst)
    );
    let stream = format!("stream=\"{key}\"");
    let ended = server.wait_log_all(&["publish ended", &stream], T);
    assert!(
        ended.contains(&format!("proto=\"{proto}\""))
            && ended.contains(&format!("frames={frames} ")),
        "{proto}: {ended}"
    );
    server.wait_log_all(&["packaging ended", &stream], T);
}

/// `output` (HLS or DASH of a GStreamer publish) holds every frame of the
/// source fixture (same count and payloads, in order, per track) and
/// decodes cleanly. Timestamps: flvmux shifts the stream so the first
/// video frame presents at 0 and clamps what would go negative to 0 (with
/// B-frames, the first three video tags share DTS 0; the first audio frame
/// lands on the second's time). Video presentation times survive that and
/// are compared with what flvmux sent (`sent`); audio, whose first two
/// frames came with one timestamp, must play contiguously (1024 samples a
/// frame at 48 kHz) with no gap.
pub(crate) fn assert_holds_gst_publish(output: &str, src: &Path, sent: &Path, what: &str) {
    for map in ["0:v", "0:a"] {
        let got = framemd5_of(output, map);
        let payloads = |p: &[Packet]| p.iter().map(|p| p.md5.clone()).collect::<Vec<_>>();
        assert_eq!(
            payloads(&got),
            payloads(&framemd5_of(src, map)),
            "{what} ({map}): frames differ from the source fixture's"
        );
        if map == "0:v" {
            let sent = framemd5_of(sent, map);
            assert_eq!(got.len(), sent.len(), "{what}: video frames sent");
            for (i, (g, e)) in got.iter().zip(&sent).enumerate() {
                assert!(
                    (g.pts - e.pts).abs() <= 1,
                    "{what}: video frame {i} pts {} vs {} sent",
                    g.pts,
                    e.pts
                );
            }
        } else {
            for (i, w) in got.windows(2).enumerate() {
                let step = w[1].pts - w[0].pts;
                assert!(
                    (step - 21).abs() <= 1,
                    "{what}: audio frame {} starts {step} ms after the previous",
                    i + 1
                );
            }
        }
    }
    assert_eq!(decode_errors(output), "", "{what}: decoding");
}

/// [`assert_holds_gst_publish`] for the stream's HLS (`KEY/index.m3u8`).
pub(crate) fn assert_hls_holds_gst_publish(
    server: &Castgate,
    key: &str,
    src: &Path,
    sent: &Path,
    what: &str,
) {
    let hls = server.http_url(&format!("{key}/index.m3u8"));
    assert_holds_gst_publish(&hls, src, sent, what);
}

/// [`assert_holds_gst_publish`] for the stream's DASH (`KEY/manifest.mpd`).
pub(crate) fn assert_dash_holds_gst_publish(
    server: &Castgate,
    key: &str,
    src: &Path,
    sent: &Path,
    what: &str,
) {
    let dash = server.http_url(&format!("{key}/manifest.mpd"));
    assert_holds_gst_publish(&dash, src, sent, what);
}

/// `rtmpdump --live -r URL -o OUT`: librtmp's player recording what it
/// gets. It ends when the stream does (or on [`interrupt`]). Not `-q`:
/// that also silences its errors, which failure messages should show (its
/// progress lines for a few seconds of media are small).
pub(crate) fn rtmpdump(url: &str, out: &Path) -> Child {
    require("rtmpdump");
    Command::new("rtmpdump")
        .args(["--live", "-r", url, "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run rtmpdump")
}

/// rtmpdump plays `key` from `url` (over `proto`), started before the
/// publisher (ffmpeg over plain rtmp:// publishing `src`): castgate logs
/// the play request over `proto`; rtmpdump records every packet with the
/// publisher's timestamps and payloads, ends when the stream does, and
/// what it recorded decodes cleanly.
pub(crate) fn rtmpdump_plays(server: &Castgate, url: &str, key: &str, proto: &str, src: &Path) {
    let dir = tempdir();
    let out = dir.path().join(format!("{proto}.flv"));
    let mut player = Proc(rtmpdump(url, &out), "rtmpdump");
    wait_log_with_peers(
        server,
        &mut [(&mut player.0, "rtmpdump")],
        &[
            "play requested",
            &format!("stream=\"{key}\""),
            &format!("proto=\"{proto}\""),
        ],
    );
    let mut publisher = publish(src, &server.url(key), &[]);
    let status = wait_child(&mut publisher, T, "publisher");
    assert!(status.success(), "publisher: {}", stderr_of(&mut publisher));
    let status = wait_child(&mut player.0, T, &format!("rtmpdump over {proto}"));
    assert!(
        status.success(),
        "rtmpdump over {proto} failed ({status}): {}",
        stderr_of(&mut player.0)
    );
    let what = format!("rtmpdump over {proto}");
    assert_same_tracks(&framemd5(src), &framemd5(&out), &what);
    assert_eq!(decode_errors(&out), "", "decoding what {what} played");
}
