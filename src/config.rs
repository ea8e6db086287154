//! Settings: embedded defaults < TOML file < `CASTGATE__SECTION__KEY`
//! environment variables.
//!
//! Every section rejects unknown keys, so a typo in a config file is an
//! error that names the key instead of a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hub::{HubConfig, PublishConflict, QueueLimits};
use crate::package::segmenter::SegmenterConfig;
use crate::package::service::PackagerConfig;
use crate::rtmp::chunk::ChunkLimits;
use crate::rtmp::session::SessionConfig;

/// The defaults, embedded in the binary and documented in one place.
pub const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rtmp: RtmpConfig,
    pub rtmps: RtmpsConfig,
    pub http: HttpConfig,
    pub https: HttpsConfig,
    pub rtmpt: RtmptConfig,
    pub hub: HubSection,
    pub package: PackageSection,
    pub api: ApiSection,
    pub relay: RelaySection,
    /// What relays from the API may connect to (SSRF guard).
    pub egress: EgressSection,
    /// Static relays: `[[relays]]` entries.
    #[serde(default)]
    pub relays: Vec<StaticRelay>,
    pub log: LogConfig,
    pub auth: crate::auth::AuthSection,
    pub webhooks: crate::webhooks::WebhooksSection,
    pub metrics: crate::metrics::MetricsSection,
    pub lifecycle: crate::lifecycle::LifecycleSection,
    /// How transcode jobs run.
    pub transcoder: TranscoderSection,
    /// `[[transcode]]` entries: stream pattern -> profile, first match wins.
    #[serde(default)]
    pub transcode: Vec<TranscodeMapping>,
}

/// `[transcoder]`: where profiles and ffmpeg are, and how jobs are supervised.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscoderSection {
    /// A folder of `*.toml` profiles adding to (and overriding) the shipped
    /// ones; empty = the shipped ones only.
    pub profiles_dir: String,
    /// The ffmpeg program (a path, or a name looked up in PATH).
    pub ffmpeg: String,
    pub restart_backoff_initial_secs: f64,
    pub restart_backoff_max_secs: f64,
    /// ffmpeg stderr lines logged per minute and job; the rest are counted.
    pub stderr_lines_per_minute: u32,
}

/// One `[[transcode]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeMapping {
    pub stream: String,
    pub profile: String,
}

/// The REST API under `/api/v1`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub enabled: bool,
    /// Bearer token every call must carry; empty: loopback clients only.
    pub token: String,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
}

/// How relays behave.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    pub max_relays: usize,
    pub queue_soft_bytes: usize,
    pub queue_hard_bytes: usize,
    pub connect_timeout_secs: f64,
    pub write_timeout_secs: f64,
    pub backoff_initial_secs: f64,
    pub backoff_max_secs: f64,
    pub flush_interval_ms: u64,
    /// Relay threads; 0 = one per core.
    pub threads: usize,
}

/// `[egress]`: the policy for connections castgate opens for API clients
/// and auth-webhook answers (see `egress_policy`). Lists also take a
/// comma-separated string (for environment variables).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    #[serde(deserialize_with = "string_or_list")]
    pub allow: Vec<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub deny: Vec<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub srt_listen: Vec<String>,
    pub ca_dir: String,
}

impl EgressSection {
    pub fn policy(&self) -> Result<crate::egress_policy::EgressPolicy, String> {
        crate::egress_policy::EgressPolicy::new(
            &self.allow,
            &self.deny,
            &self.srt_listen,
            &self.ca_dir,
        )
    }
}

/// A list, or one string of comma-separated items.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Either::Many(v) => v,
    })
}

/// One `[[relays]]` entry: every stream matching `stream` is relayed to
/// `target` with its placeholders filled.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRelay {
    pub stream: String,
    pub target: String,
    #[serde(default)]
    pub tls_ca_file: String,
    #[serde(default = "yes")]
    pub tls_verify: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSection {
    /// Target segment duration; a segment closes at the first keyframe at or after it.
    pub segment_secs: f64,
    /// CMAF chunk (LL-HLS part) duration.
    pub part_secs: f64,
    /// Segments listed in playlists.
    pub window: usize,
    /// Extra segments kept for late clients.
    pub extra_segments: usize,
    /// A publisher returning within this time continues the playlist.
    pub grace_secs: f64,
    /// An ended stream stays in memory this long.
    pub retention_secs: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Connections one client address may hold at once (RTMP and RTMPS
    /// each); more are closed at accept (logged, naming the address).
    pub max_connections_per_ip: usize,
    /// Connection threads, each an event loop of its own; 0 = one per core.
    pub workers: usize,
    pub handshake_timeout_secs: f64,
    pub max_message_size: usize,
    /// Bytes of partially received messages all connections may hold.
    pub message_budget_bytes: usize,
    pub max_chunk_size: u32,
    pub chunk_size: u32,
    pub window_ack_size: u32,
    /// A publisher that sends no media for this long is disconnected.
    pub idle_timeout_secs: f64,
    /// A connected session that neither publishes nor plays (nor waits for
    /// its authorisation) for this long is closed.
    pub session_idle_secs: f64,
    /// How long a player of a stream that is not live waits for a publisher.
    pub play_wait_secs: f64,
    pub publish_conflict: PublishConflict,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Connections beyond this are closed at accept (logged); applies to
    /// the HTTP and the HTTPS listener each.
    pub max_connections: usize,
    /// Connections one client address may hold at once (HTTP and HTTPS
    /// each); more get a 503 (HTTP) or are closed (HTTPS), logged.
    pub max_connections_per_ip: usize,
    /// A connection with no byte moving either way for this long is closed.
    pub idle_timeout_secs: f64,
    /// HLS/DASH viewers tracked per stream (see `viewers`); past it the
    /// stream's counts saturate and say so.
    pub max_viewers_tracked_per_stream: usize,
    /// HLS/DASH viewers tracked over all streams.
    pub max_viewers_tracked: usize,
    /// A request head (and a connection's first request) must be complete
    /// within this, however slowly its bytes trickle in.
    pub header_timeout_secs: f64,
    /// A request body must be complete within this after its head: 408.
    pub body_timeout_secs: f64,
    /// Bytes of request bodies all connections may buffer at once; past
    /// this, requests get 503.
    pub body_budget_bytes: usize,
}

/// RTMP over TLS. Enabled when both `cert` and `key` are set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first); empty = RTMPS off.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); empty = RTMPS off.
    pub key: String,
}

/// The HTTP server over TLS (HTTP/1.1 and HTTP/2 by ALPN).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// Off switch; when on, HTTPS runs whenever a certificate is available.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Empty: the RTMPS certificate and key.
    pub cert: String,
    pub key: String,
}

/// RTMPT: RTMP tunnelled in HTTP POSTs, on the HTTP and HTTPS listeners.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmptConfig {
    pub enabled: bool,
    /// Open tunnel sessions at once; `/open` beyond this gets 503.
    pub max_sessions: usize,
    /// Sessions one client address may hold at once; `/open` beyond gets 503.
    pub max_sessions_per_ip: usize,
    /// A session with no request for this long is closed.
    pub session_timeout_secs: f64,
    /// Largest request body accepted (413 beyond), and the most server
    /// bytes held for a client that does not poll.
    pub max_body_bytes: usize,
}

/// A certificate chain and its key, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    pub gop_cache: bool,
    pub gop_cache_max_bytes: usize,
    pub queue_soft_bytes: usize,
    pub queue_hard_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `castgate=debug`. `RUST_LOG` wins.
    pub level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("config file {0} does not exist")]
    Missing(String),
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A transcode profile or mapping (the message names the file and key).
    #[error("{0}")]
    Transcode(String),
    #[error("invalid [[relays]] entry {index} (stream {stream:?}): {reason}")]
    InvalidRelay {
        index: usize,
        stream: String,
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment passed in (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Missing(path.display().to_string()));
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("CASTGATE__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("CASTGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let cfg: Config = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        cfg.transcode_plan()?;
        Ok(cfg)
    }

    /// The transcode profiles and the checked `[[transcode]]` mappings.
    /// Errors name the profile file and key, or the config key.
    pub fn transcode_plan(
        &self,
    ) -> Result<(crate::transcode::Profiles, Vec<crate::transcode::Rule>), ConfigError> {
        use crate::transcode::{find_program, Profiles, Rule};
        let t = &self.transcoder;
        let bad =
            |key: &str, reason: String| ConfigError::Transcode(format!("key `{key}`: {reason}"));
        if !(t.restart_backoff_initial_secs > 0.0 && t.restart_backoff_initial_secs <= 3600.0) {
            return Err(bad(
                "transcoder.restart_backoff_initial_secs",
                "must be in (0, 3600]".into(),
            ));
        }
        if !(t.restart_backoff_max_secs >= t.restart_backoff_initial_secs
            && t.restart_backoff_max_secs <= 3600.0)
        {
            return Err(bad(
                "transcoder.restart_backoff_max_secs",
                "must be at least restart_backoff_initial_secs and at most 3600".into(),
            ));
        }
        let dir = (!t.profiles_dir.is_empty()).then(|| Path::new(&t.profiles_dir));
        if let Some(d) = dir {
            if !d.is_dir() {
                return Err(bad(
                    "transcoder.profiles_dir",
                    format!("{} is not a directory", d.display()),
                ));
            }
        }
        let profiles = Profiles::load(dir).map_err(ConfigError::Transcode)?;
        let mut rules = Vec::new();
        for (i, m) in self.transcode.iter().enumerate() {
            let pattern = crate::egress::target::StreamPattern::parse(&m.stream)
                .map_err(|e| bad(&format!("transcode[{i}].stream"), e))?;
            let Some(p) = profiles.get(&m.profile) else {
                let known: Vec<&str> = profiles.names().collect();
                return Err(bad(
                    &format!("transcode[{i}].profile"),
                    format!("no profile {:?} (known: {})", m.profile, known.join(", ")),
                ));
            };
            if p.needs_ffmpeg() && find_program(&t.ffmpeg).is_none() {
                return Err(bad(
                    "transcoder.ffmpeg",
                    format!(
                        "{:?} not found, and transcode[{i}] maps {:?} to profile {:?} ({}), which needs it",
                        t.ffmpeg, m.stream, m.profile, p.origin
                    ),
                ));
            }
            rules.push(Rule {
                pattern,
                profile: m.profile.clone(),
            });
        }
        Ok((profiles, rules))
    }

    /// How transcode jobs run.
    pub fn transcode_settings(&self) -> crate::transcode::TranscodeSettings {
        let t = &self.transcoder;
        crate::transcode::TranscodeSettings {
            ffmpeg: crate::transcode::find_program(&t.ffmpeg)
                .unwrap_or_else(|| PathBuf::from(&t.ffmpeg)),
            backoff_initial: Duration::from_secs_f64(t.restart_backoff_initial_secs),
            backoff_max: Duration::from_secs_f64(t.restart_backoff_max_secs),
            stderr_lines_per_minute: t.stderr_lines_per_minute,
            grace: Duration::from_secs_f64(self.package.grace_secs),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let r = &self.rtmp;
        if r.max_connections == 0 {
            return invalid("rtmp.max_connections", "must be at least 1");
        }
        if !(r.handshake_timeout_secs > 0.0 && r.handshake_timeout_secs <= 3600.0) {
            return invalid("rtmp.handshake_timeout_secs", "must be in (0, 3600]");
        }
        if !(r.idle_timeout_secs > 0.0 && r.idle_timeout_secs <= 86_400.0) {
            return invalid("rtmp.idle_timeout_secs", "must be in (0, 86400]");
        }
        if !(r.session_idle_secs > 0.0 && r.session_idle_secs <= 86_400.0) {
            return invalid("rtmp.session_idle_secs", "must be in (0, 86400]");
        }
        if !(r.play_wait_secs >= 0.0 && r.play_wait_secs <= 86_400.0) {
            return invalid("rtmp.play_wait_secs", "must be in [0, 86400]");
        }
        if !(1024..=16 * 1024 * 1024).contains(&r.max_message_size) {
            return invalid("rtmp.max_message_size", "must be between 1024 and 16777216");
        }
        if r.message_budget_bytes < r.max_message_size * 2 {
            return invalid(
                "rtmp.message_budget_bytes",
                "must hold at least two messages of rtmp.max_message_size",
            );
        }
        if !(128..=0x7FFF_FFFF).contains(&r.max_chunk_size) {
            return invalid("rtmp.max_chunk_size", "must be between 128 and 2147483647");
        }
        if !(128..=65_536).contains(&r.chunk_size) {
            return invalid("rtmp.chunk_size", "must be between 128 and 65536");
        }
        if r.window_ack_size < 4096 {
            return invalid("rtmp.window_ack_size", "must be at least 4096");
        }
        if r.max_connections_per_ip == 0 {
            return invalid("rtmp.max_connections_per_ip", "must be at least 1");
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections", "must be at least 1");
        }
        if self.http.max_connections_per_ip == 0 {
            return invalid("http.max_connections_per_ip", "must be at least 1");
        }
        let idle = self.http.idle_timeout_secs;
        if !(1.0..=86_400.0).contains(&idle) {
            return invalid("http.idle_timeout_secs", "must be in [1, 86400]");
        }
        for (key, v) in [
            (
                "http.max_viewers_tracked_per_stream",
                self.http.max_viewers_tracked_per_stream,
            ),
            ("http.max_viewers_tracked", self.http.max_viewers_tracked),
        ] {
            if !(1..=10_000_000).contains(&v) {
                return invalid(key, "must be between 1 and 10000000");
            }
        }
        if !(0.5..=3600.0).contains(&self.http.header_timeout_secs) {
            return invalid("http.header_timeout_secs", "must be in [0.5, 3600]");
        }
        if !(0.5..=86_400.0).contains(&self.http.body_timeout_secs) {
            return invalid("http.body_timeout_secs", "must be in [0.5, 86400]");
        }
        if self.http.body_budget_bytes < self.rtmpt.max_body_bytes.max(self.api.max_body_bytes) {
            return invalid(
                "http.body_budget_bytes",
                "must hold at least one body of rtmpt.max_body_bytes and of api.max_body_bytes",
            );
        }
        if self.rtmps.cert.is_empty() != self.rtmps.key.is_empty() {
            return invalid(
                "rtmps.cert",
                "rtmps.cert and rtmps.key must be set together (or both left empty)",
            );
        }
        if self.https.cert.is_empty() != self.https.key.is_empty() {
            return invalid(
                "https.cert",
                "https.cert and https.key must be set together (or both left empty)",
            );
        }
        let t = &self.rtmpt;
        if !(1..=1_000_000).contains(&t.max_sessions) {
            return invalid("rtmpt.max_sessions", "must be between 1 and 1000000");
        }
        if t.max_sessions_per_ip == 0 {
            return invalid("rtmpt.max_sessions_per_ip", "must be at least 1");
        }
        if !(t.session_timeout_secs >= 0.1 && t.session_timeout_secs <= 3600.0) {
            return invalid("rtmpt.session_timeout_secs", "must be in [0.1, 3600]");
        }
        if !(1024..=64 * 1024 * 1024).contains(&t.max_body_bytes) {
            return invalid("rtmpt.max_body_bytes", "must be between 1024 and 67108864");
        }
        let h = &self.hub;
        if h.queue_soft_bytes == 0 || h.queue_hard_bytes < h.queue_soft_bytes {
            return invalid(
                "hub.queue_hard_bytes",
                "must be at least hub.queue_soft_bytes, which must be positive",
            );
        }
        let p = &self.package;
        if !(p.segment_secs >= 0.5 && p.segment_secs <= 60.0) {
            return invalid("package.segment_secs", "must be in [0.5, 60]");
        }
        if !(p.part_secs >= 0.05 && p.part_secs <= p.segment_secs) {
            return invalid(
                "package.part_secs",
                "must be in [0.05, package.segment_secs]",
            );
        }
        if !(1..=1000).contains(&p.window) {
            return invalid("package.window", "must be between 1 and 1000");
        }
        if p.extra_segments > 1000 {
            return invalid("package.extra_segments", "must be at most 1000");
        }
        if !(p.grace_secs >= 0.0 && p.grace_secs <= 3600.0) {
            return invalid("package.grace_secs", "must be in [0, 3600]");
        }
        if !(p.retention_secs >= 0.0 && p.retention_secs <= 86_400.0) {
            return invalid("package.retention_secs", "must be in [0, 86400]");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid("log.level", &e.to_string());
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            return invalid("api.max_body_bytes", "must be between 1024 and 16777216");
        }
        if self.api.token.len() > 4096 || self.api.token.bytes().any(|b| !(0x21..0x7f).contains(&b))
        {
            return invalid(
                "api.token",
                "must be printable ASCII without spaces, at most 4096 bytes",
            );
        }
        let r = &self.relay;
        if !(1..=100_000).contains(&r.max_relays) {
            return invalid("relay.max_relays", "must be between 1 and 100000");
        }
        if r.queue_soft_bytes < 65536 || r.queue_hard_bytes < r.queue_soft_bytes {
            return invalid(
                "relay.queue_hard_bytes",
                "must be at least relay.queue_soft_bytes, which must be at least 65536",
            );
        }
        for (key, v) in [
            ("relay.connect_timeout_secs", r.connect_timeout_secs),
            ("relay.write_timeout_secs", r.write_timeout_secs),
        ] {
            if !(0.1..=600.0).contains(&v) {
                return invalid(key, "must be in [0.1, 600]");
            }
        }
        if !(r.backoff_initial_secs >= 0.1 && r.backoff_initial_secs <= r.backoff_max_secs) {
            return invalid(
                "relay.backoff_initial_secs",
                "must be at least 0.1 and at most relay.backoff_max_secs",
            );
        }
        if r.backoff_max_secs > 3600.0 {
            return invalid("relay.backoff_max_secs", "must be at most 3600");
        }
        if !(1..=1000).contains(&r.flush_interval_ms) {
            return invalid("relay.flush_interval_ms", "must be between 1 and 1000");
        }
        if r.threads > 1024 {
            return invalid("relay.threads", "must be at most 1024");
        }
        if let Err(reason) = self.egress.policy() {
            return Err(ConfigError::Invalid {
                key: "egress",
                reason,
            });
        }
        self.static_relays()?;
        self.auth.validate()?;
        self.webhooks.validate()?;
        self.metrics.validate()?;
        self.lifecycle.validate()?;
        Ok(())
    }

    /// What is valid but probably a mistake, for `check-config` and the
    /// start-up log: operator webhook URLs are trusted (no egress check),
    /// so one that points at a cloud metadata service is named.
    pub fn warnings(&self) -> Vec<String> {
        let urls = self
            .webhooks
            .urls
            .iter()
            .map(|u| ("webhooks.urls", u))
            .chain(
                (!self.auth.webhook_url.is_empty())
                    .then_some(("auth.webhook_url", &self.auth.webhook_url)),
            );
        urls.filter_map(|(key, url)| {
            let ep = crate::webhooks::client::Endpoint::parse(url).ok()?;
            crate::egress_policy::is_metadata_host(&ep.host).then(|| {
                format!(
                    "{key}: {} is a cloud metadata address; castgate will send it \
                     requests (URLs in the config are trusted, not checked by [egress])",
                    ep.redacted()
                )
            })
        })
        .collect()
    }

    /// The `[[relays]]` entries, checked (a CA file is read now).
    pub fn static_relays(&self) -> Result<Vec<crate::egress::StaticRule>, ConfigError> {
        self.relays
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let tls = crate::transport::tls_client::TlsOptions {
                    ca_file: (!r.tls_ca_file.is_empty()).then(|| r.tls_ca_file.clone()),
                    no_verify: !r.tls_verify,
                };
                crate::egress::StaticRule::parse(&r.stream, &r.target, tls).map_err(|reason| {
                    ConfigError::InvalidRelay {
                        index,
                        stream: r.stream.clone(),
                        reason,
                    }
                })
            })
            .collect()
    }

    pub fn relay_settings(&self) -> crate::egress::RelaySettings {
        let r = &self.relay;
        crate::egress::RelaySettings {
            max_relays: r.max_relays,
            queue: QueueLimits {
                soft_bytes: r.queue_soft_bytes,
                hard_bytes: r.queue_hard_bytes,
            },
            connect_timeout: Duration::from_secs_f64(r.connect_timeout_secs),
            write_timeout: Duration::from_secs_f64(r.write_timeout_secs),
            backoff_initial: Duration::from_secs_f64(r.backoff_initial_secs),
            backoff_max: Duration::from_secs_f64(r.backoff_max_secs),
            flush_interval: Duration::from_millis(r.flush_interval_ms),
            grace: Duration::from_secs_f64(self.package.grace_secs),
            threads: if r.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                r.threads
            },
            // Checked by validate(); a policy that no longer builds
            // refuses everything rather than nothing.
            egress: std::sync::Arc::new(self.egress.policy().unwrap_or_else(|e| {
                tracing::warn!("{e}: API relays refused");
                crate::egress_policy::EgressPolicy::closed()
            })),
            ..crate::egress::RelaySettings::default()
        }
    }

    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            chunk_limits: ChunkLimits {
                max_message_size: self.rtmp.max_message_size,
                max_chunk_size: self.rtmp.max_chunk_size,
                max_buffered: self.rtmp.max_message_size * 2,
                ..ChunkLimits::default()
            },
            out_chunk_size: self.rtmp.chunk_size,
            window_ack_size: self.rtmp.window_ack_size,
            ..SessionConfig::default()
        }
    }

    pub fn packager_config(&self) -> PackagerConfig {
        let p = &self.package;
        PackagerConfig {
            segmenter: SegmenterConfig {
                target: p.segment_secs,
                part_target: p.part_secs,
                window: p.window,
                extra: p.extra_segments,
                aligned: false,
            },
            grace: Duration::from_secs_f64(p.grace_secs),
            retention: Duration::from_secs_f64(p.retention_secs),
        }
    }

    /// The HLS/DASH viewer tracker's caps.
    pub fn viewer_limits(&self) -> crate::viewers::ViewerLimits {
        crate::viewers::ViewerLimits {
            per_stream: self.http.max_viewers_tracked_per_stream,
            total: self.http.max_viewers_tracked,
        }
    }

    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            publish_conflict: self.rtmp.publish_conflict,
            gop_cache: self.hub.gop_cache,
            gop_cache_max_bytes: self.hub.gop_cache_max_bytes,
            queue: QueueLimits {
                soft_bytes: self.hub.queue_soft_bytes,
                hard_bytes: self.hub.queue_hard_bytes,
            },
        }
    }
}

impl Config {
    /// The RTMPS certificate and key, when RTMPS is on.
    pub fn rtmps_tls(&self) -> Option<TlsFiles> {
        tls_files(&self.rtmps.cert, &self.rtmps.key)
    }

    /// The HTTPS certificate and key: its own, else the RTMPS ones; `None`
    /// when HTTPS is off or there is no certificate.
    pub fn https_tls(&self) -> Option<TlsFiles> {
        if !self.https.enabled {
            return None;
        }
        tls_files(&self.https.cert, &self.https.key).or_else(|| self.rtmps_tls())
    }
}

fn tls_files(cert: &str, key: &str) -> Option<TlsFiles> {
    (!cert.is_empty() && !key.is_empty()).then(|| TlsFiles {
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
    })
}

impl HttpConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_secs)
    }
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout_secs)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_timeout_secs)
    }
}

impl RtmptConfig {
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.session_timeout_secs)
    }
}

impl RtmpConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.handshake_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_secs)
    }
    pub fn play_wait(&self) -> Duration {
        Duration::from_secs_f64(self.play_wait_secs)
    }
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs_f64(self.session_idle_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.rtmp.listen, "0.0.0.0:1935".parse().unwrap());
        assert_eq!(c.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.rtmp.publish_conflict, PublishConflict::Takeover);
        assert_eq!(c.rtmps.listen, "0.0.0.0:1936".parse().unwrap());
        assert_eq!(c.https.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.rtmps_tls(), None, "RTMPS is off without a certificate");
        assert_eq!(c.https_tls(), None);
        assert!(c.rtmpt.enabled);
        assert_eq!(
            c.viewer_limits(),
            crate::viewers::ViewerLimits {
                per_stream: 10_000,
                total: 100_000
            }
        );
    }

    #[test]
    fn viewer_caps_are_checked() {
        let e = Config::load_with_env(None, env(&[("CASTGATE__HTTP__MAX_VIEWERS_TRACKED", "0")]))
            .unwrap_err();
        assert!(e.to_string().contains("http.max_viewers_tracked"), "{e}");
        let c = Config::load_with_env(
            None,
            env(&[("CASTGATE__HTTP__MAX_VIEWERS_TRACKED_PER_STREAM", "50")]),
        )
        .unwrap();
        assert_eq!(c.viewer_limits().per_stream, 50);
    }

    #[test]
    fn egress_takes_lists_from_files_and_strings_from_the_environment() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert!(c.egress.allow.is_empty() && c.egress.srt_listen.is_empty());
        let p = c.relay_settings().egress;
        assert!(p.check_literal("127.0.0.1", 1935, false).is_err());
        let c = Config::load_with_env(
            None,
            env(&[
                (
                    "CASTGATE__EGRESS__ALLOW",
                    "127.0.0.1/32, ingest.corp.example",
                ),
                ("CASTGATE__EGRESS__SRT_LISTEN", "0.0.0.0:9000-9100"),
            ]),
        )
        .unwrap();
        assert_eq!(c.egress.allow, ["127.0.0.1/32", "ingest.corp.example"]);
        let p = c.relay_settings().egress;
        assert_eq!(p.check_literal("127.1", 1935, false), Ok(()));
        assert_eq!(p.check_srt_listen("0.0.0.0:9001".parse().unwrap()), Ok(()));
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[egress]\nallow = [\"10.0.0.0/33\"]").unwrap();
        let e = Config::load_with_env(Some(f.path()), env(&[])).unwrap_err();
        assert!(e.to_string().contains("egress.allow"), "{e}");
    }

    #[test]
    fn tls_files_are_shared_unless_set_apart() {
        let c = Config::load_with_env(
            None,
            env(&[
                ("CASTGATE__RTMPS__CERT", "/c.pem"),
                ("CASTGATE__RTMPS__KEY", "/k.pem"),
            ]),
        )
        .unwrap();
        let rtmps = c.rtmps_tls().unwrap();
        assert_eq!(rtmps.cert, PathBuf::from("/c.pem"));
        assert_eq!(c.https_tls(), Some(rtmps.clone()));
        let c = Config::load_with_env(
            None,
            env(&[
                ("CASTGATE__RTMPS__CERT", "/c.pem"),
                ("CASTGATE__RTMPS__KEY", "/k.pem"),
                ("CASTGATE__HTTPS__CERT", "/h.pem"),
                ("CASTGATE__HTTPS__KEY", "/hk.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(c.https_tls().unwrap().key, PathBuf::from("/hk.pem"));
        assert_eq!(c.rtmps_tls(), Some(rtmps));
        let c = Config::load_with_env(
            None,
            env(&[
                ("CASTGATE__RTMPS__CERT", "/c.pem"),
                ("CASTGATE__RTMPS__KEY", "/k.pem"),
                ("CASTGATE__HTTPS__ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.https_tls(), None);
        let e =
            Config::load_with_env(None, env(&[("CASTGATE__RTMPS__CERT", "/c.pem")])).unwrap_err();
        assert!(e.to_string().contains("rtmps.key"), "{e}");
    }

    #[test]
    fn file_then_env_override() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[rtmp]\nlisten = \"127.0.0.1:2000\"\nmax_connections = 7"
        )
        .unwrap();
        let c = Config::load_with_env(
            Some(f.path()),
            env(&[
                ("CASTGATE__RTMP__LISTEN", "127.0.0.1:19935"),
                ("CASTGATE__HTTP__LISTEN", "127.0.0.1:18080"),
                ("CASTGATE__RTMP__PUBLISH_CONFLICT", "reject"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rtmp.listen, "127.0.0.1:19935".parse().unwrap());
        assert_eq!(c.http.listen, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(c.rtmp.max_connections, 7);
        assert_eq!(c.rtmp.publish_conflict, PublishConflict::Reject);
    }

    #[test]
    fn unknown_key_is_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[rtmp]\nlisen = \"127.0.0.1:2000\"").unwrap();
        let e = Config::load_with_env(Some(f.path()), env(&[])).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[rtmp]\nlisten = \"not an address\"").unwrap();
        let e = Config::load_with_env(Some(f.path()), env(&[])).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[rtmp]\nchunk_size = 1").unwrap();
        let e = Config::load_with_env(Some(f.path()), env(&[])).unwrap_err();
        assert!(e.to_string().contains("rtmp.chunk_size"), "{e}");
    }

    #[test]
    fn client_limits_are_checked() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.rtmp.max_connections_per_ip, 64);
        assert_eq!(c.http.max_connections_per_ip, 256);
        assert_eq!(c.rtmpt.max_sessions_per_ip, 16);
        assert_eq!(c.http.header_timeout(), Duration::from_secs(10));
        assert_eq!(c.http.body_timeout(), Duration::from_secs(30));
        for (key, value, named) in [
            (
                "CASTGATE__RTMP__MAX_CONNECTIONS_PER_IP",
                "0",
                "rtmp.max_connections_per_ip",
            ),
            (
                "CASTGATE__HTTP__MAX_CONNECTIONS_PER_IP",
                "0",
                "http.max_connections_per_ip",
            ),
            (
                "CASTGATE__RTMPT__MAX_SESSIONS_PER_IP",
                "0",
                "rtmpt.max_sessions_per_ip",
            ),
            (
                "CASTGATE__HTTP__HEADER_TIMEOUT_SECS",
                "0",
                "http.header_timeout_secs",
            ),
            (
                "CASTGATE__HTTP__BODY_TIMEOUT_SECS",
                "-1",
                "http.body_timeout_secs",
            ),
            // Smaller than one RTMPT body.
            (
                "CASTGATE__HTTP__BODY_BUDGET_BYTES",
                "1000",
                "http.body_budget_bytes",
            ),
        ] {
            let e = Config::load_with_env(None, env(&[(key, value)])).unwrap_err();
            assert!(e.to_string().contains(named), "{key}={value}: {e}");
        }
    }

    #[test]
    fn static_relays_are_checked() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[[relays]]\nstream = \"live/*\"\ntarget = \"rtmp://a.example/app/{{key}}\"\n\
             [[relays]]\nstream = \"*\"\ntarget = \"srt://10.0.0.1:9000?streamid={{stream}}\""
        )
        .unwrap();
        let c = Config::load_with_env(Some(f.path()), env(&[])).unwrap();
        assert_eq!(c.static_relays().unwrap().len(), 2);
        for (body, want) in [
            ("stream = \"live\"\ntarget = \"rtmp://h/a/{key}\"", "names no application"),
            ("stream = \"live/*\"\ntarget = \"ftp://h/a/{key}\"", "unknown scheme"),
            ("stream = \"live/*\"\ntarget = \"rtmp://h/a/{name}\"", "placeholder"),
            (
                "stream = \"live/*\"\ntarget = \"rtmps://h/a/{key}\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
                "/nonexistent/ca.pem",
            ),
            (
                "stream = \"live/*\"\ntarget = \"rtmp://h/a/{key}\"\ntls_verify = false",
                "rtmps:// targets only",
            ),
            ("stream = \"live/*\"\ntarget = \"rtmp://h/a/k\"\nbogus = 1", "bogus"),
        ] {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            writeln!(f, "[[relays]]\n{body}").unwrap();
            let e = Config::load_with_env(Some(f.path()), env(&[])).unwrap_err();
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let e =
            Config::load_with_env(Some(Path::new("/nonexistent/c.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/c.toml"), "{e}");
    }
}
