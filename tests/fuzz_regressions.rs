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
