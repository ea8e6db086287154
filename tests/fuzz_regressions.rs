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
