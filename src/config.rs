//! Settings: embedded defaults < TOML file < `CASTGATE__SECTION__KEY`
//! environment variables.
//!
//! Each section is owned, checked and answered for by its module (a
//! `Settings` type implementing [`Section`]); this module only composes
//! them, checks the few rules that span sections, and loads them. Every
//! section rejects unknown keys, so a typo in a config file is an error
//! that names the key instead of a silently ignored setting.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::settings::{check, Invalid, Reload, Section};
use crate::transport::TlsFiles;

/// The defaults, embedded in the binary and documented in one place.
pub const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rtmp: crate::server::Settings,
    pub rtmps: crate::transport::RtmpsSettings,
    pub http: crate::transport::HttpSettings,
    pub https: crate::transport::HttpsSettings,
    pub rtmpt: crate::transport::rtmpt::Settings,
    /// The RTMFP listener (UDP; publish and play).
    pub rtmfp: crate::transport::rtmfp::Settings,
    /// The SRT listener (publish and play over SRT).
    pub srt: crate::srt::Settings,
    pub hub: crate::hub::Settings,
    pub package: crate::package::Settings,
    pub api: crate::api::Settings,
    pub relay: crate::egress::Settings,
    /// What relays from the API may connect to (SSRF guard).
    pub egress: crate::egress_policy::Settings,
    /// Static relays: `[[relays]]` entries.
    #[serde(default)]
    pub relays: Vec<crate::egress::StaticRelay>,
    /// How pulled sources run.
    pub source: crate::sources::Settings,
    /// Pulled sources: `[[sources]]` entries.
    #[serde(default)]
    pub sources: Vec<crate::sources::StaticSource>,
    pub log: LogSettings,
    pub auth: crate::auth::Settings,
    pub webhooks: crate::webhooks::Settings,
    pub metrics: crate::metrics::Settings,
    pub lifecycle: crate::lifecycle::Settings,
    /// How transcode jobs run.
    pub transcoder: crate::transcode::Settings,
    /// `[[transcode]]` entries: stream pattern -> profile, first match wins.
    #[serde(default)]
    pub transcode: Vec<crate::transcode::Mapping>,
    /// Where recordings go (`[recorder]`; TOML cannot have a `[record]`
    /// table beside the `[[record]]` entries).
    pub recorder: crate::record::Settings,
    /// `[[record]]` entries: every matching stream is recorded.
    #[serde(default)]
    pub record: Vec<crate::record::RecordEntry>,
    /// Video on demand: the files under a directory.
    pub vod: crate::vod::Settings,
    /// Cluster mode: stream ownership across nodes in Redis (off by default).
    pub cluster: crate::cluster::Settings,
}

/// `[log]`, read by the binary when it sets up logging.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter, e.g. `info` or `castgate=debug`. `RUST_LOG` wins.
    pub level: String,
}

impl Section for LogSettings {
    const NAME: &'static str = "log";
    /// The filter is installed once, at start-up.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| Invalid::new("log.level", e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("config file {0} does not exist")]
    Missing(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// One section's answer to a reload, with what the README's table needs.
#[derive(Debug)]
pub struct Answer {
    pub section: &'static str,
    /// Every key of the section, as written in TOML.
    pub keys: Vec<String>,
    pub live: &'static [&'static str],
    pub reload: Reload,
}

fn answer<S: Section>(old: &S, new: &S) -> Answer {
    Answer {
        section: S::NAME,
        keys: crate::settings::keys(old),
        live: S::LIVE,
        reload: old.reload(new),
    }
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
        Ok(cfg)
    }

    /// Each section's own checks, then the rules that span sections.
    fn validate(&self) -> Result<(), Invalid> {
        self.rtmp.validate()?;
        self.http.validate()?;
        self.rtmps.validate()?;
        self.https.validate()?;
        self.rtmpt.validate()?;
        self.rtmfp.validate()?;
        self.srt.validate()?;
        self.hub.validate()?;
        self.package.validate()?;
        self.log.validate()?;
        self.api.validate()?;
        self.relay.validate()?;
        self.egress.validate()?;
        check(
            self.http.body_budget_bytes >= self.rtmpt.max_body_bytes.max(self.api.max_body_bytes),
            "http.body_budget_bytes",
            "must hold at least one body of rtmpt.max_body_bytes and of api.max_body_bytes",
        )?;
        crate::egress::static_rules(&self.relays)?;
        self.source.validate()?;
        crate::sources::check_static(&self.sources)?;
        self.auth.validate()?;
        self.webhooks.validate()?;
        self.metrics.validate()?;
        self.lifecycle.validate()?;
        self.transcoder.plan(&self.transcode)?;
        self.recorder.validate()?;
        crate::record::rules(&self.record)?;
        self.vod.validate()?;
        self.cluster.validate()?;
        Ok(())
    }

    /// Every section's answer to a reload from `self` to `new`.
    pub fn answers(&self, new: &Config) -> Vec<Answer> {
        vec![
            answer(&self.rtmp, &new.rtmp),
            answer(&self.rtmps, &new.rtmps),
            answer(&self.http, &new.http),
            answer(&self.https, &new.https),
            answer(&self.rtmpt, &new.rtmpt),
            answer(&self.rtmfp, &new.rtmfp),
            answer(&self.srt, &new.srt),
            answer(&self.hub, &new.hub),
            answer(&self.package, &new.package),
            answer(&self.api, &new.api),
            answer(&self.relay, &new.relay),
            answer(&self.egress, &new.egress),
            answer(&self.source, &new.source),
            answer(&self.log, &new.log),
            answer(&self.auth, &new.auth),
            answer(&self.webhooks, &new.webhooks),
            answer(&self.metrics, &new.metrics),
            answer(&self.lifecycle, &new.lifecycle),
            answer(&self.transcoder, &new.transcoder),
            answer(&self.recorder, &new.recorder),
            answer(&self.vod, &new.vod),
            answer(&self.cluster, &new.cluster),
        ]
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
        let mut warnings: Vec<String> = urls
            .filter_map(|(key, url)| {
                let ep = crate::webhooks::client::Endpoint::parse(url).ok()?;
                crate::egress_policy::is_metadata_host(&ep.host).then(|| {
                    format!(
                        "{key}: {} is a cloud metadata address; castgate will send it \
                         requests (URLs in the config are trusted, not checked by [egress])",
                        ep.redacted()
                    )
                })
            })
            .collect();
        if !std::path::Path::new(&self.recorder.dir).starts_with(&self.vod.dir) {
            warnings.push(format!(
                "recorder.dir {:?} is not under vod.dir {:?}: recordings will not play \
                 on demand at the URLs the API gives",
                self.recorder.dir, self.vod.dir
            ));
        }
        warnings
    }

    /// The RTMPS certificate and key, when RTMPS is on.
    pub fn rtmps_tls(&self) -> Option<TlsFiles> {
        self.rtmps.tls()
    }

    /// The HTTPS certificate and key: its own, else the RTMPS ones; `None`
    /// when HTTPS is off or there is no certificate.
    pub fn https_tls(&self) -> Option<TlsFiles> {
        self.https.tls(&self.rtmps)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hub::PublishConflict;
    use std::io::Write;
    use std::path::PathBuf;
    use std::time::Duration;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
            c.http.viewer_limits(),
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
        assert_eq!(c.http.viewer_limits().per_stream, 50);
    }

    #[test]
    fn egress_takes_lists_from_files_and_strings_from_the_environment() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert!(c.egress.allow.is_empty() && c.egress.srt_listen.is_empty());
        let p = c.egress.policy().unwrap();
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
        let p = c.egress.policy().unwrap();
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
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.body_timeout, Duration::from_secs(30));
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
        assert_eq!(crate::egress::static_rules(&c.relays).unwrap().len(), 2);
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

    /// The README's reload table, as the sections answer.
    fn reload_table() -> String {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        let mut t =
            String::from("| Section | Applied on SIGHUP | Needs a restart |\n|---|---|---|\n");
        let list = |keys: Vec<&String>| {
            if keys.is_empty() {
                "—".to_string()
            } else {
                let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                keys.join(", ")
            }
        };
        for a in c.answers(&c) {
            let (live, restart): (Vec<&String>, Vec<&String>) =
                a.keys.iter().partition(|k| a.live.contains(&k.as_str()));
            t += &format!(
                "| `[{}]` | {} | {} |\n",
                a.section,
                list(live),
                list(restart)
            );
        }
        t += "| `[[relays]]`, `[[sources]]`, `[[transcode]]`, `[[record]]` | every entry | — |\n";
        t
    }

    #[test]
    fn readme_lists_what_reload_applies() {
        let readme = include_str!("../README.md");
        let (begin, end) = ("<!-- reload-table -->\n", "<!-- /reload-table -->");
        let start = readme.find(begin).expect("README has a reload table") + begin.len();
        let stop = start + readme[start..].find(end).expect("the table ends");
        let want = reload_table();
        assert_eq!(
            &readme[start..stop],
            want,
            "README.md's reload table is out of date; put this between its markers:\n{want}"
        );
    }

    #[test]
    fn live_keys_are_keys() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        for a in c.answers(&c) {
            assert_eq!(a.reload, Reload::Applied, "{}", a.section);
            for k in a.live {
                assert!(
                    a.keys.iter().any(|x| x == k),
                    "[{}] has no key {k}",
                    a.section
                );
            }
        }
    }
}
