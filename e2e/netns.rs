//! A network namespace joined to this one by a veth pair, so that a test
//! can be a client from a non-loopback address without touching the
//! machine's own external address (and without castgate dialling out).
//!
//! Needs root (CAP_NET_ADMIN) and `ip` from iproute2; missing either is a
//! test failure with the reason, never a skip.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    name: String,
    host_if: String,
    /// This side of the pair: castgate listens here, and sees clients
    /// from the namespace's side (`host_ip` + 1).
    pub host_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("cannot run `ip` (iproute2): the network-namespace tests need it");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Netns {
    pub fn new() -> Netns {
        crate::harness::require("ip");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 of 10.201.0.0/16 per namespace (test processes and
        // namespaces in one run differ in pid or n).
        let slot = (pid.wrapping_mul(31).wrapping_add(n)) % 16384;
        let base = 0x0AC9_0000u32 | (slot << 2);
        let (host_ip, ns_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let name = format!("cg-{pid}-{n}");
        let host_if = format!("cgh{}", slot);
        let ns_if = format!("cgn{}", slot);
        // A leftover from a killed run with the same slot goes first.
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_if,
            host_ip,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it
        // this end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
