//! The listener sections `transport` serves: `[http]` (the HTTP listener's
//! limits and deadlines, and the viewer tracker's caps), `[rtmps]` and
//! `[https]` (TLS listeners and their certificates).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{check, secs, secs_within, Invalid, Section};

/// `[http]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Connections beyond this are closed at accept (logged); applies to
    /// the HTTP and the HTTPS listener each.
    pub max_connections: usize,
    /// Connections one client address may hold at once (HTTP and HTTPS
    /// each); more get a 503 (HTTP) or are closed (HTTPS), logged.
    pub max_connections_per_ip: usize,
    /// A connection with no byte moving either way for this long is closed.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// HLS/DASH viewers tracked per stream (see `viewers`); past it the
    /// stream's counts saturate and say so.
    pub max_viewers_tracked_per_stream: usize,
    /// HLS/DASH viewers tracked over all streams.
    pub max_viewers_tracked: usize,
    /// A request head (and a connection's first request) must be complete
    /// within this, however slowly its bytes trickle in.
    #[serde(rename = "header_timeout_secs", with = "secs")]
    pub header_timeout: Duration,
    /// A request body must be complete within this after its head: 408.
    #[serde(rename = "body_timeout_secs", with = "secs")]
    pub body_timeout: Duration,
    /// Bytes of request bodies all connections may buffer at once; past
    /// this, requests get 503.
    pub body_budget_bytes: usize,
}

impl Section for HttpSettings {
    const NAME: &'static str = "http";
    /// The listeners, the viewer tracker and the body budget are built once.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.max_connections > 0,
            "http.max_connections",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_ip > 0,
            "http.max_connections_per_ip",
            "must be at least 1",
        )?;
        check(
            secs_within(self.idle_timeout, 1.0, 86_400.0),
            "http.idle_timeout_secs",
            "must be in [1, 86400]",
        )?;
        for (key, v) in [
            (
                "http.max_viewers_tracked_per_stream",
                self.max_viewers_tracked_per_stream,
            ),
            ("http.max_viewers_tracked", self.max_viewers_tracked),
        ] {
            check(
                (1..=10_000_000).contains(&v),
                key,
                "must be between 1 and 10000000",
            )?;
        }
        check(
            secs_within(self.header_timeout, 0.5, 3600.0),
            "http.header_timeout_secs",
            "must be in [0.5, 3600]",
        )?;
        check(
            secs_within(self.body_timeout, 0.5, 86_400.0),
            "http.body_timeout_secs",
            "must be in [0.5, 86400]",
        )
    }
}

impl HttpSettings {
    /// The HLS/DASH viewer tracker's caps.
    pub fn viewer_limits(&self) -> crate::viewers::ViewerLimits {
        crate::viewers::ViewerLimits {
            per_stream: self.max_viewers_tracked_per_stream,
            total: self.max_viewers_tracked,
        }
    }

    /// The listeners' limits; `handshake` is `rtmp.handshake_timeout_secs`.
    pub fn limits(&self, handshake: Duration) -> super::http::HttpLimits {
        super::http::HttpLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header: self.header_timeout,
            body: self.body_timeout,
            idle: self.idle_timeout,
            handshake,
        }
    }
}

/// A certificate chain and its key, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both files, when both are set.
    fn of(cert: &str, key: &str) -> Option<TlsFiles> {
        (!cert.is_empty() && !key.is_empty()).then(|| TlsFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        })
    }
}

/// `[rtmps]`: RTMP over TLS, on when both `cert` and `key` are set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpsSettings {
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first); empty = RTMPS off.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); empty = RTMPS off.
    pub key: String,
}

impl Section for RtmpsSettings {
    const NAME: &'static str = "rtmps";
    /// A reload re-reads the files at the configured paths; other paths
    /// (and RTMPS turned on or off) take a restart.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.cert.is_empty() == self.key.is_empty(),
            "rtmps.cert",
            "rtmps.cert and rtmps.key must be set together (or both left empty)",
        )
    }
}

impl RtmpsSettings {
    /// The certificate and key, when RTMPS is on.
    pub fn tls(&self) -> Option<TlsFiles> {
        TlsFiles::of(&self.cert, &self.key)
    }
}

/// `[https]`: the HTTP server over TLS (HTTP/1.1 and HTTP/2 by ALPN).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSettings {
    /// Off switch; when on, HTTPS runs whenever a certificate is available.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Empty: the RTMPS certificate and key.
    pub cert: String,
    pub key: String,
}

impl Section for HttpsSettings {
    const NAME: &'static str = "https";
    /// As `[rtmps]`: the files are re-read, the paths are fixed.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        check(
            self.cert.is_empty() == self.key.is_empty(),
            "https.cert",
            "https.cert and https.key must be set together (or both left empty)",
        )
    }
}

impl HttpsSettings {
    /// The certificate and key: its own, else `rtmps`'; `None` when HTTPS
    /// is off or there is no certificate.
    pub fn tls(&self, rtmps: &RtmpsSettings) -> Option<TlsFiles> {
        if !self.enabled {
            return None;
        }
        TlsFiles::of(&self.cert, &self.key).or_else(|| rtmps.tls())
    }
}
