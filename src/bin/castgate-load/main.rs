//! `castgate-load`: drives an RTMP server with N real-time publishers (an FLV
//! file replayed tag by tag, like `ffmpeg -re -c copy`) and M HLS players
//! from one process, and reports what the publishers and the HTTP side saw.
//!
//! ffmpeg costs ~0.6 % of a core per publisher; this costs a small fraction
//! of that, so one process can drive a thousand streams. Works against any
//! RTMP server (castgate, nginx-rtmp, SRS…): the playlist URLs are templates.
//!
//! ```text
//! castgate-load --rtmp rtmp://127.0.0.1:1935/live --file f.flv --publishers 50 \
//!     --playlist 'http://127.0.0.1:8080/live/{name}/video.m3u8' --duration 60 --json out.json
//! ```
//!
//! Players (`--players N`, spread round-robin over the streams) come in two
//! modes. `--player-mode hls` (the default) reloads each media playlist
//! every second and fetches every new segment, like a classic player.
//! `--player-mode ll` plays low-latency HLS: blocking playlist reloads
//! (`?_HLS_msn=M&_HLS_part=P` for the next part), every new part fetched and
//! the preload-hinted part requested alongside the reload. It reports, per
//! video part, the delay from the part's completion at the server (when the
//! publisher sent the frame after the part's last) to the reload answer
//! listing it, and to the part's bytes in hand (see `ll`). For example, 5
//! LL players on each of 200 streams:
//!
//! ```text
//! castgate-load --file f.flv --publishers 200 --players 1000 --player-mode ll \
//!     --player-url 'http://127.0.0.1:8080/live/{name}/index.m3u8' --json out.json
//! ```

mod http;
mod ll;
mod publish;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use castgate::rtmp::client::{ClientConfig, ClientMode};
use clap::{Parser, ValueEnum};
use tokio::sync::oneshot;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(version, about = "RTMP publish and HLS poll load generator")]
struct Args {
    /// Publish URL prefix; stream names `{prefix}{i}` are appended.
    /// `rtmfp://` publishes over RTMFP (castgate's client, every frame
    /// delivered).
    #[arg(long, default_value = "rtmp://127.0.0.1:1935/live")]
    rtmp: String,
    /// FLV file to replay (H.264/AAC), looped with rising timestamps.
    #[arg(long)]
    file: PathBuf,
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Seconds to run (from the first publisher's start).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds over which publisher starts are spread (default: 20 ms apart).
    #[arg(long)]
    ramp: Option<f64>,
    /// Milliseconds: each publisher writes every tag due within a tick in
    /// one write at its end (0: each tag at its own time, as `ffmpeg -re`).
    #[arg(long, default_value_t = 0)]
    tick_ms: u64,
    /// Chunk size the publishers send with.
    #[arg(long, default_value_t = 4096)]
    chunk_size: u32,
    /// Media playlist URL template with `{name}`: watched per stream for
    /// publish → first playlist time and for advancing.
    #[arg(long)]
    playlist: Option<String>,
    /// Seconds between playlist checks once the first one is there.
    #[arg(long, default_value_t = 1.0)]
    watch_interval: f64,
    /// A playlist unchanged for longer than this (seconds) is a stall.
    #[arg(long, default_value_t = 8.0)]
    stall: f64,
    /// HLS players, spread round-robin over the streams.
    #[arg(long, default_value_t = 0)]
    players: usize,
    /// How the players play: `hls` reloads playlists every second and
    /// fetches segments; `ll` does LL-HLS blocking reloads, fetches parts
    /// and reports part delays.
    #[arg(long, value_enum, default_value_t = PlayerMode::Hls)]
    player_mode: PlayerMode,
    /// Playlist URL template (`{name}`) the players open; master or media.
    #[arg(long)]
    player_url: Option<String>,
    /// Worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum PlayerMode {
    /// Classic HLS: periodic reloads, whole segments.
    Hls,
    /// Low-latency HLS: blocking reloads, parts, preload hints.
    Ll,
}

#[derive(serde::Serialize)]
struct Report {
    publishers: usize,
    duration_s: f64,
    publish_ok: usize,
    publish_failed: usize,
    first_errors: Vec<String>,
    publish_ms_median: Option<f64>,
    publish_ms_max: Option<f64>,
    max_late_ms: f64,
    bytes_sent: u64,
    watched: usize,
    first_playlist_ms_median: Option<f64>,
    first_playlist_ms_max: Option<f64>,
    streams_without_playlist: usize,
    stalled_streams: usize,
    longest_unchanged_s: f64,
    players: usize,
    player_mode: PlayerMode,
    player_segments: u64,
    player_bytes: u64,
    player_errors: u64,
    /// The LL players' figures (`--player-mode ll`).
    ll: Option<ll::LlReport>,
    load_cpu_s: f64,
    per_publisher: Vec<publish::PublisherReport>,
    per_stream: Vec<watch::WatchReport>,
}

fn main() {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("castgate-load: {e}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let data = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let tags = castgate::media::flv_file::read_tags(&Bytes::from(data))
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let replay = Arc::new(publish::Replay::new(tags)?);
    let probe = format!("{}/x", args.rtmp.trim_end_matches('/'));
    let (addr, mut base) = ClientConfig::from_url(&probe, ClientMode::Publish)?;
    let transport = if probe.starts_with("rtmfp://") {
        publish::Transport::Rtmfp
    } else {
        publish::Transport::Tcp
    };
    base.out_chunk_size = args.chunk_size;

    let n = args.publishers;
    let ramp = Duration::from_secs_f64(args.ramp.unwrap_or(n as f64 * 0.02));
    let t0 = Instant::now() + Duration::from_millis(100);
    let end = t0 + ramp + Duration::from_secs_f64(args.duration);
    let cpu0 = cpu_seconds();

    let mut publishers = Vec::with_capacity(n);
    let mut watchers = Vec::new();
    let logs: Vec<Arc<ll::SendLog>> = (0..n).map(|_| Arc::default()).collect();
    for (i, log) in logs.iter().enumerate() {
        let name = format!("{}{i}", args.prefix);
        let start = t0 + ramp.mul_f64(i as f64 / n.max(1) as f64);
        let (tx, rx) = oneshot::channel::<Instant>();
        let config = ClientConfig {
            stream: name.clone(),
            ..base.clone()
        };
        publishers.push(tokio::spawn(publish::run(
            config,
            publish::Dest {
                addr: addr.clone(),
                transport,
            },
            replay.clone(),
            publish::Schedule {
                start,
                end,
                tick: Duration::from_millis(args.tick_ms),
            },
            log.clone(),
            move |at| {
                let _ = tx.send(at);
            },
        )));
        if let Some(template) = &args.playlist {
            let url = template.replace("{name}", &name);
            let interval = Duration::from_secs_f64(args.watch_interval);
            let stall = Duration::from_secs_f64(args.stall);
            watchers.push(tokio::spawn(async move {
                match rx.await {
                    Ok(started) => {
                        Some(watch::watch(name, url, started, end, interval, stall).await)
                    }
                    Err(_) => None,
                }
            }));
        }
    }
    let mut players = Vec::new();
    let mut ll_players = Vec::new();
    if args.players > 0 {
        let template = args
            .player_url
            .clone()
            .ok_or("--players needs --player-url")?;
        for j in 0..args.players {
            let name = format!("{}{}", args.prefix, j % n.max(1));
            let url = template.replace("{name}", &name);
            // Players join once their stream has had time to start.
            let start =
                t0 + ramp.mul_f64((j % n.max(1)) as f64 / n.max(1) as f64) + Duration::from_secs(3);
            match args.player_mode {
                PlayerMode::Hls => players.push(tokio::spawn(async move {
                    tokio::time::sleep_until(start).await;
                    watch::play_hls(url, end, Duration::from_secs(1)).await
                })),
                PlayerMode::Ll => {
                    let log = logs[j % n.max(1)].clone();
                    ll_players.push(tokio::spawn(async move {
                        tokio::time::sleep_until(start).await;
                        ll::play(url, log, end).await
                    }));
                }
            }
        }
    }

    let mut per_publisher = Vec::new();
    for p in publishers {
        per_publisher.push(p.await.map_err(|e| e.to_string())?);
    }
    let mut per_stream = Vec::new();
    for w in watchers {
        if let Some(r) = w.await.map_err(|e| e.to_string())? {
            per_stream.push(r);
        }
    }
    let mut per_player = Vec::new();
    for p in players {
        per_player.push(p.await.map_err(|e| e.to_string())?);
    }
    let mut per_ll_player = Vec::new();
    for p in ll_players {
        per_ll_player.push(p.await.map_err(|e| e.to_string())?);
    }
    let ll = (args.player_mode == PlayerMode::Ll).then(|| ll::LlReport::merge(per_ll_player));

    let ok: Vec<_> = per_publisher.iter().filter(|p| p.error.is_none()).collect();
    let mut publish_ms: Vec<f64> = ok.iter().filter_map(|p| p.publish_ms).collect();
    let mut first: Vec<f64> = per_stream
        .iter()
        .filter_map(|w| w.first_playlist_ms)
        .collect();
    let report = Report {
        publishers: n,
        duration_s: args.duration,
        publish_ok: ok.len(),
        publish_failed: n - ok.len(),
        first_errors: per_publisher
            .iter()
            .filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.name)))
            .take(5)
            .collect(),
        publish_ms_median: median(&mut publish_ms),
        publish_ms_max: publish_ms.last().copied(),
        max_late_ms: per_publisher
            .iter()
            .map(|p| p.max_late_ms)
            .fold(0.0, f64::max),
        bytes_sent: per_publisher.iter().map(|p| p.bytes_sent).sum(),
        watched: per_stream.len(),
        first_playlist_ms_median: median(&mut first),
        first_playlist_ms_max: first.last().copied(),
        streams_without_playlist: per_stream
            .iter()
            .filter(|w| w.first_playlist_ms.is_none())
            .count(),
        stalled_streams: per_stream.iter().filter(|w| w.stalled).count(),
        longest_unchanged_s: per_stream
            .iter()
            .map(|w| w.longest_unchanged_s)
            .fold(0.0, f64::max),
        players: args.players,
        player_mode: args.player_mode,
        player_segments: per_player.iter().map(|p| p.segments).sum(),
        player_bytes: per_player.iter().map(|p| p.bytes).sum(),
        player_errors: per_player.iter().map(|p| p.errors).sum::<u64>()
            + ll.as_ref().map_or(0, |l| l.errors),
        ll,
        load_cpu_s: cpu_seconds() - cpu0,
        per_publisher,
        per_stream,
    };
    print_summary(&report);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // LL players that got no part at all were not played low-latency.
    let ll_played = report
        .ll
        .as_ref()
        .is_none_or(|l| l.players == 0 || l.parts > 0);
    Ok(report.publish_failed == 0
        && report.stalled_streams == 0
        && report.player_errors == 0
        && ll_played)
}

fn print_summary(r: &Report) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    println!(
        "publishers: {} ok, {} failed; publish median {}, max {}; max lateness {:.0} ms; {:.1} MB sent",
        r.publish_ok,
        r.publish_failed,
        ms(r.publish_ms_median),
        ms(r.publish_ms_max),
        r.max_late_ms,
        r.bytes_sent as f64 / 1e6
    );
    for e in &r.first_errors {
        println!("  error: {e}");
    }
    if r.watched > 0 {
        println!(
            "playlists: {} watched; first playlist median {}, max {}; {} never appeared, {} stalled (longest unchanged {:.1} s)",
            r.watched,
            ms(r.first_playlist_ms_median),
            ms(r.first_playlist_ms_max),
            r.streams_without_playlist,
            r.stalled_streams,
            r.longest_unchanged_s
        );
    }
    if let Some(l) = &r.ll {
        let d = |d: &ll::Distribution| {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            format!(
                "p50 {} ms, p99 {} ms, max {} ms ({} parts)",
                ms(d.p50_ms),
                ms(d.p99_ms),
                ms(d.max_ms),
                d.count
            )
        };
        println!(
            "LL players: {}; {} parts, {:.1} MB, {} blocking reloads, {} hinted parts asked ({} unused); {} errors ({} HTTP 400, {} other status, {} I/O)",
            l.players,
            l.parts,
            l.part_bytes as f64 / 1e6,
            l.blocking_reloads,
            l.hinted_fetches,
            l.hints_unused,
            l.errors,
            l.status_400,
            l.bad_status,
            l.io_errors
        );
        println!("  part complete -> reload answered: {}", d(&l.listed_delay));
        println!(
            "  part complete -> part received:   {}",
            d(&l.part_fetch_delay)
        );
        if l.not_held + l.end_mismatch + l.unmapped > 0 {
            println!(
                "  {} timed parts asked for only after they completed; {} ends matched no sent frame, {} frames not in the send log",
                l.not_held, l.end_mismatch, l.unmapped
            );
        }
    } else if r.players > 0 {
        println!(
            "players: {}; {} segments, {:.1} MB, {} errors",
            r.players,
            r.player_segments,
            r.player_bytes as f64 / 1e6,
            r.player_errors
        );
    }
    println!("load generator CPU: {:.2} s", r.load_cpu_s);
}

/// Sorts `v` and returns its median.
fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// This process's user + system CPU seconds (from /proc; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}
