//! The command line: check-config, --version, --help, start-up errors.

use std::process::Command;

use crate::harness::{tempdir, OutputWithin, RUN_LIMIT};

fn castgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_castgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output_within(RUN_LIMIT)
        .expect("cannot run castgate")
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempdir();
    let f = dir.path().join("good.toml");
    std::fs::write(
        &f,
        "[rtmp]\nlisten = \"127.0.0.1:1999\"\npublish_conflict = \"reject\"\n",
    )
    .unwrap();
    let out = castgate(&["check-config", f.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempdir();
    for (body, key) in [
        ("[rtmp]\nlisen = \"127.0.0.1:1999\"\n", "lisen"),
        ("[rtmp]\nlisten = \"nowhere\"\n", "listen"),
        ("[rtmp]\npublish_conflict = \"maybe\"\n", "publish_conflict"),
        ("[rtmp]\nchunk_size = 5\n", "rtmp.chunk_size"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        // A play policy that would leave HLS/DASH open.
        ("[auth]\nplay = \"keys\"\n", "HLS and DASH"),
        // The old list of names that were their own secret.
        (
            "[auth]\npublish = \"keys\"\n[auth.publish_keys]\nlive = [\"n\"]\n",
            "NAME = \"KEY\"",
        ),
    ] {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, body).unwrap();
        let out = castgate(&["check-config", f.to_str().unwrap()]);
        assert!(!out.status.success(), "{body:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "{body:?}: message {err:?} should name {key:?}"
        );
    }
    let out = castgate(&["check-config", "/nonexistent/castgate.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/castgate.toml"));
}

#[test]
fn version_and_help() {
    let out = castgate(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = castgate(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("serve") && help.contains("check-config"),
        "{help}"
    );
}

#[test]
fn serve_fails_clearly_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_castgate"))
        .arg("serve")
        .env("CASTGATE__RTMP__LISTEN", &addr)
        .output_within(RUN_LIMIT)
        .expect("cannot run castgate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
}

/// `castgate --config FILE` is `castgate serve --config FILE` (the README's
/// first form): a bad file is named the same way by both.
#[test]
fn config_without_serve_is_serve() {
    let dir = tempdir();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[rtmp]\nlisten = 12\n").unwrap();
    let f = file.to_str().unwrap();
    for args in [&["--config", f][..], &["serve", "--config", f][..]] {
        let out = castgate(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad configuration"), "{args:?}: {err}");
    }
}
