//! Who may read `/metrics` and the API: a client from another address (a
//! network namespace of the test's own) and the bearer token.

use std::time::Duration;

use crate::harness::*;
use crate::netns::Netns;

const T: Duration = Duration::from_secs(30);

/// The status `curl` in `ns` gets for `url` (with `Authorization` headers
/// from `headers`).
fn status_from(ns: &Netns, url: &str, headers: &[&str]) -> u16 {
    let mut c = ns.command("curl");
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ]);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c
        .arg(url)
        .output_within(T)
        .expect("cannot run curl in a network namespace");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl {url}: {out:?}"))
}

/// Without `api.token`, `/metrics` (stream names and counts) answers
/// loopback clients only, like the API: a client from another address gets
/// 403 where `/healthz` answers it. With a token, `/metrics` needs it.
#[test]
fn metrics_are_behind_the_api_guard() {
    require("curl");
    let ns = Netns::new();
    let listen = format!("{}:0", ns.host_ip);
    let open = Castgate::start(&[("CASTGATE__HTTP__LISTEN", &listen)]);
    let base = format!("http://{}", open.http);
    assert_eq!(status_from(&ns, &format!("{base}/healthz"), &[]), 200);
    assert_eq!(status_from(&ns, &format!("{base}/metrics"), &[]), 403);
    assert_eq!(
        status_from(&ns, &format!("{base}/api/v1/streams"), &[]),
        403
    );
    open.assert_no_panic();

    let token = "metrics-token-1";
    let guarded = Castgate::start(&[("CASTGATE__API__TOKEN", token)]);
    let get = |auth: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"]);
        if let Some(a) = auth {
            c.args(["-H", a]);
        }
        let out = c
            .arg(guarded.http_url("/metrics"))
            .output_within(T)
            .expect("cannot run curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    assert_eq!(get(None).0, "401");
    assert_eq!(get(Some("Authorization: Bearer wrong")).0, "401");
    let (code, body) = get(Some(&format!("Authorization: bearer {token}")));
    assert_eq!(code, "200");
    assert!(body.contains("castgate_"), "{body}");
    guarded.assert_no_panic();
}
