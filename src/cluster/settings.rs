//! `[cluster]`: ownership of streams across nodes, in Redis.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{check, secs, Invalid, Section};

/// `[cluster]`. Off while `redis_url` is empty (the default).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `redis://HOST:PORT[/DB]`; empty: no cluster, no Redis.
    pub redis_url: String,
    /// This node's name in Redis; empty: the host name.
    pub node_id: String,
    /// How other nodes reach this one over HTTP (`http://10.0.0.5:8080`).
    pub advertise_http: String,
    /// How other nodes reach this one over RTMP (`rtmp://10.0.0.5:1935`).
    pub advertise_rtmp: String,
    /// A lease not renewed for this long expires in Redis.
    #[serde(rename = "lease_secs", with = "secs")]
    pub lease: Duration,
    /// The edge's cache of other nodes' HLS/DASH answers, in bytes.
    pub cache_bytes: u64,
}

impl Section for Settings {
    const NAME: &'static str = "cluster";
    /// The connection and the node's identity are set up once.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        if !self.redis_url.is_empty() {
            check(
                self.redis_url.starts_with("redis://") || self.redis_url.starts_with("unix://"),
                "cluster.redis_url",
                "must be redis://HOST:PORT[/DB] (or unix://PATH), or empty for no cluster",
            )?;
            redis::Client::open(self.redis_url.as_str())
                .map_err(|e| Invalid::new("cluster.redis_url", e.to_string()))?;
        }
        check(
            self.node_id.len() <= 64
                && self
                    .node_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "cluster.node_id",
            "at most 64 letters, digits, '-', '_' or '.'",
        )?;
        for (key, url, scheme) in [
            ("cluster.advertise_http", &self.advertise_http, "http"),
            ("cluster.advertise_rtmp", &self.advertise_rtmp, "rtmp"),
        ] {
            check(
                url.is_empty() || url.starts_with(&format!("{scheme}://")),
                key,
                &format!("must start with {scheme}:// (or be empty)"),
            )?;
        }
        check(
            self.cache_bytes >= 1 << 20 && self.cache_bytes <= 1 << 40,
            "cluster.cache_bytes",
            "must be between 1 MiB and 1 TiB",
        )?;
        check(
            self.lease >= Duration::from_secs(1) && self.lease <= Duration::from_secs(300),
            "cluster.lease_secs",
            "must be between 1 and 300",
        )
    }
}

impl Settings {
    /// Whether castgate runs as a cluster node.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// `node_id`, or the host name when it is empty.
    pub fn node(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        hostname().unwrap_or_else(|| "castgate".to_string())
    }
}

/// The host name (the kernel's), cut to what a node id may hold.
fn hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Settings {
        Settings {
            redis_url: "redis://127.0.0.1:6379".into(),
            node_id: "edge-a".into(),
            advertise_http: "http://10.0.0.5:8080".into(),
            advertise_rtmp: "rtmp://10.0.0.5:1935".into(),
            lease: Duration::from_secs(5),
            cache_bytes: 1 << 28,
        }
    }

    #[test]
    fn each_key_is_checked_by_name() {
        assert_eq!(on().validate(), Ok(()));
        let off = Settings {
            redis_url: String::new(),
            ..on()
        };
        assert_eq!(off.validate(), Ok(()));
        assert!(!off.enabled() && on().enabled());
        for (bad, key) in [
            (
                Settings {
                    redis_url: "http://127.0.0.1:6379".into(),
                    ..on()
                },
                "cluster.redis_url",
            ),
            (
                Settings {
                    node_id: "a b".into(),
                    ..on()
                },
                "cluster.node_id",
            ),
            (
                Settings {
                    advertise_http: "10.0.0.5:8080".into(),
                    ..on()
                },
                "cluster.advertise_http",
            ),
            (
                Settings {
                    advertise_rtmp: "http://10.0.0.5".into(),
                    ..on()
                },
                "cluster.advertise_rtmp",
            ),
            (
                Settings {
                    lease: Duration::from_millis(500),
                    ..on()
                },
                "cluster.lease_secs",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn the_node_id_defaults_to_the_host_name() {
        assert_eq!(on().node(), "edge-a");
        let unnamed = Settings {
            node_id: String::new(),
            ..on()
        };
        let node = unnamed.node();
        assert!(!node.is_empty() && node.len() <= 64, "{node}");
    }

    #[test]
    fn a_change_needs_a_restart() {
        let new = Settings {
            lease: Duration::from_secs(9),
            ..on()
        };
        assert_eq!(
            on().reload(&new),
            crate::settings::Reload::NeedsRestart(vec!["cluster.lease_secs".into()])
        );
    }
}
