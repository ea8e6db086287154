//! Replays every committed fuzz input through the same target bodies the
//! fuzzers run (`castgate::fuzzing`): the seeds under `fuzz/seeds/<target>/`
//! and the crash inputs under `fuzz/regressions/<target>/`. A crash found
//! by `fuzz/run` is committed there once fixed, and stays fixed.
//!
//! The seeds are made by `cargo run --example fuzz_seeds` (run it by hand
//! after changing an input format).

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use castgate::fuzzing::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

#[test]
fn committed_inputs_replay_cleanly() {
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, target) in TARGETS {
        let inputs: Vec<PathBuf> = ["seeds", "regressions"]
            .iter()
            .flat_map(|kind| files(&fuzz_dir().join(kind).join(name)))
            .collect();
        assert!(
            !inputs.is_empty(),
            "no committed input for fuzz target {name} (fuzz/seeds/{name}/ is empty)"
        );
        for path in inputs {
            let data = std::fs::read(&path).expect("readable input");
            total += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {}: {why}", path.display()));
            }
        }
    }
    assert!(total >= TARGETS.len());
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn regression_directories_name_targets() {
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !path.is_dir() || fuzzing::target(&name).is_some(),
                "fuzz/{dir}/{name} is not a fuzz target"
            );
        }
    }
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let binaries: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    let targets: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(binaries, targets);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &targets {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a [[bin]] in fuzz/Cargo.toml"
        );
    }
}

#[allow(dead_code)] // its `main` is the example's own
#[path = "../examples/fuzz_seeds.rs"]
mod fuzz_seeds_example;

/// The seed maker (`cargo run --example fuzz_seeds`) still runs, everything
/// it makes is committed (some committed seeds come from elsewhere: real
/// ffmpeg output, hand-made targets), and its target takes each cleanly.
#[test]
fn the_seed_maker_makes_what_is_committed() {
    let out = tempfile::tempdir().unwrap();
    let flv = out.path().join("flv_file");
    std::fs::create_dir_all(&flv).unwrap();
    for f in files(&fuzz_dir().join("seeds/flv_file")) {
        std::fs::copy(&f, flv.join(f.file_name().unwrap())).unwrap();
    }
    fuzz_seeds_example::seeds::make(out.path());
    let names = |root: &Path| -> BTreeSet<String> {
        TARGETS
            .iter()
            .flat_map(|(t, _)| {
                files(&root.join(t))
                    .into_iter()
                    .map(move |p| format!("{t}/{}", p.file_name().unwrap().to_string_lossy()))
            })
            .collect()
    };
    let made = names(out.path());
    let committed = names(&fuzz_dir().join("seeds"));
    assert!(made.len() > 50, "the maker made only {made:?}");
    let uncommitted: Vec<_> = made.difference(&committed).collect();
    assert!(
        uncommitted.is_empty(),
        "the maker makes seeds that are not committed (run `cargo run --example fuzz_seeds`): \
         {uncommitted:?}"
    );
    for (name, target) in TARGETS {
        for path in files(&out.path().join(name)) {
            let data = std::fs::read(&path).unwrap();
            target(&data);
        }
    }
}

/// The `chunk_session` seed of on-demand play reaches the commands the
/// target answers: play with a start, a length and reset, getStreamLength,
/// SetBufferLength, seek, pause and pauseRaw (driven as
/// `rtmp::session::exercise` drives them). Its last play, on the stream
/// already playing, is the session's to turn down.
#[test]
fn the_session_seed_reaches_the_on_demand_commands() {
    use castgate::media::MediaKind;
    use castgate::rtmp::handshake::ClientHandshake;
    use castgate::rtmp::session::{ServerEvent, ServerSession, SessionConfig};
    let data = std::fs::read(fuzz_dir().join("seeds/chunk_session/vod_commands")).unwrap();
    let (&selector, rest) = data.split_first().unwrap();
    assert_eq!(selector & 1, 1, "starts with a valid handshake");
    let mut session = ServerSession::new(SessionConfig::default());
    let mut client = ClientHandshake::new_simple();
    let mut c0c1 = Vec::new();
    client.start(&mut c0c1);
    session.handle_input(&c0c1).unwrap();
    let mut c2 = Vec::new();
    client.process(&session.take_output(), &mut c2).unwrap();
    session.handle_input(&c2).unwrap();
    let mut seen = Vec::new();
    for part in rest.chunks(usize::from(selector >> 1).max(1)) {
        session.handle_input(part).unwrap();
        while let Some(ev) = session.poll_event() {
            match ev {
                ServerEvent::PlayRequested {
                    stream_id, range, ..
                } => {
                    seen.push(format!(
                        "play {} {} {}",
                        range.start, range.duration, range.reset
                    ));
                    session.accept_play(stream_id);
                    session.send_media(stream_id, MediaKind::Video, 0, &[&[0x17, 1, 0, 0, 0]]);
                }
                ServerEvent::Seek { stream_id, ms } => {
                    seen.push(format!("seek {ms}"));
                    session.seek_done(stream_id, ms as i64);
                }
                ServerEvent::Pause {
                    stream_id,
                    pause,
                    ms,
                } => {
                    seen.push(format!("pause {pause} {ms}"));
                    session.pause_done(stream_id, pause, 0);
                }
                ServerEvent::StreamLengthRequested {
                    stream_id,
                    transaction,
                    ..
                } => {
                    seen.push("getStreamLength".into());
                    session.answer_stream_length(stream_id, transaction, 1.5);
                }
                ServerEvent::BufferLength { millis, .. } => seen.push(format!("buffer {millis}")),
                _ => {}
            }
        }
        let _ = session.take_output();
    }
    for want in [
        "getStreamLength",
        "play 2500 -1 true",
        "buffer 3000",
        "seek 1200",
        "pause true 1300",
        "pause false 1300",
        "pause true 1400",
        "pause false 1400",
    ] {
        assert!(
            seen.iter().any(|s| s == want),
            "{want} not reached: {seen:?}"
        );
    }
}
