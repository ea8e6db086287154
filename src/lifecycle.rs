//! Reload (SIGHUP) and graceful shutdown (SIGTERM, SIGINT).
//!
//! Hooks for other modules (the transcode supervisor among them):
//! - [`Shutdown`](crate::shutdown::Shutdown) (`ServerContext::shutdown`): a cheap, cloneable token;
//!   `shutdown.cancelled().await` resolves when the process starts to stop
//!   (stop transcoders, flush, exit). `is_stopping()` polls it.
//! - [`ServerContext::config_updates`](crate::server::ServerContext): a
//!   `watch::Receiver<Arc<Config>>` that sees every accepted reload
//!   (transcode profiles, limits); `changed().await` wakes on each.
//! - `crate::webhooks::emit` for events (`transcode.failed`), and
//!   `crate::metrics::transcode_restart()`.
//! - `ServerContext::auth.profile_of(key)`: the transcode profile the auth
//!   webhook named for a live stream.
//!
//! A reload re-reads the config file (and the environment) with the same
//! checks as start-up; an invalid file is refused with the reason, logged,
//! and the running config stays. What it applies: auth (modes, keys, keys
//! file, webhook, URL secret), `[[relays]]` (changed entries only),
//! webhooks, TLS certificates, `[[transcode]]` mappings and profiles (for
//! new publishes), and whatever subscribes to the config watch.
//! Listen addresses and thread counts need a restart (logged when changed).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};

use crate::server::ServerContext;
use crate::transport::tls::CertStore;

/// `[lifecycle]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSection {
    pub drain_secs: f64,
    pub shutdown_timeout_secs: f64,
}

impl LifecycleSection {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1.0..=3600.0).contains(&self.shutdown_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "lifecycle.shutdown_timeout_secs",
                reason: "must be in [1, 3600]".into(),
            });
        }
        if !(self.drain_secs >= 0.0 && self.drain_secs < self.shutdown_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "lifecycle.drain_secs",
                reason: "must be in [0, lifecycle.shutdown_timeout_secs)".into(),
            });
        }
        Ok(())
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_timeout_secs)
    }
}

/// What a SIGHUP reload works on.
pub struct Reloader {
    pub path: Option<PathBuf>,
    pub ctx: Arc<ServerContext>,
    pub certs: Vec<(&'static str, Arc<CertStore>)>,
    pub current: Config,
}

impl Reloader {
    /// Re-reads the config and applies it; an invalid one changes nothing.
    pub fn reload(&mut self) -> Result<(), ConfigError> {
        for (what, store) in &self.certs {
            store.reload_logged(what);
        }
        let new = match Config::load(self.path.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                error!("SIGHUP: config rejected, the running one stays: {e}");
                return Err(e);
            }
        };
        self.apply(new)
    }

    /// Applies a checked config.
    pub fn apply(&mut self, new: Config) -> Result<(), ConfigError> {
        // Everything that can fail is computed before anything changes.
        let policy = new.auth.policy()?;
        let rules = new.static_relays()?;
        let (profiles, transcode_rules) = new.transcode_plan()?;
        self.ctx.auth.set_policy(policy);
        self.ctx.transcoder.set_plan(transcode_rules, profiles);
        let (stopped, added) = self.ctx.relays.set_rules(rules);
        crate::webhooks::configure(&new.webhooks);
        let needs_restart: Vec<&str> = [
            ("rtmp.listen", self.current.rtmp.listen != new.rtmp.listen),
            ("http.listen", self.current.http.listen != new.http.listen),
            (
                "rtmp.workers",
                self.current.rtmp.workers != new.rtmp.workers,
            ),
            (
                "relay.threads",
                self.current.relay.threads != new.relay.threads,
            ),
            (
                "rtmp.max_connections",
                self.current.rtmp.max_connections != new.rtmp.max_connections,
            ),
            (
                "rtmp.message_budget_bytes",
                self.current.rtmp.message_budget_bytes != new.rtmp.message_budget_bytes,
            ),
            (
                "rtmps.listen",
                self.current.rtmps.listen != new.rtmps.listen,
            ),
            (
                "https.listen",
                self.current.https.listen != new.https.listen,
            ),
            (
                "http.max_connections",
                self.current.http.max_connections != new.http.max_connections,
            ),
            (
                "http.max_viewers_tracked",
                self.current.http.max_viewers_tracked != new.http.max_viewers_tracked
                    || self.current.http.max_viewers_tracked_per_stream
                        != new.http.max_viewers_tracked_per_stream,
            ),
            (
                "rtmp.max_connections_per_ip",
                self.current.rtmp.max_connections_per_ip != new.rtmp.max_connections_per_ip,
            ),
            (
                "http.max_connections_per_ip",
                self.current.http.max_connections_per_ip != new.http.max_connections_per_ip,
            ),
            (
                "http.header_timeout_secs",
                self.current.http.header_timeout_secs != new.http.header_timeout_secs,
            ),
            (
                "http.body_timeout_secs",
                self.current.http.body_timeout_secs != new.http.body_timeout_secs,
            ),
            (
                "http.body_budget_bytes",
                self.current.http.body_budget_bytes != new.http.body_budget_bytes,
            ),
            (
                "rtmpt.max_sessions_per_ip",
                self.current.rtmpt.max_sessions_per_ip != new.rtmpt.max_sessions_per_ip,
            ),
            (
                "hub",
                self.current.hub.queue_soft_bytes != new.hub.queue_soft_bytes
                    || self.current.hub.queue_hard_bytes != new.hub.queue_hard_bytes
                    || self.current.hub.gop_cache != new.hub.gop_cache
                    || self.current.hub.gop_cache_max_bytes != new.hub.gop_cache_max_bytes,
            ),
            (
                "package",
                self.current.package.segment_secs != new.package.segment_secs
                    || self.current.package.part_secs != new.package.part_secs
                    || self.current.package.window != new.package.window,
            ),
            (
                "relay",
                self.current.relay.queue_hard_bytes != new.relay.queue_hard_bytes
                    || self.current.relay.max_relays != new.relay.max_relays,
            ),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(k, _)| k)
        .collect();
        if !needs_restart.is_empty() {
            warn!(
                ?needs_restart,
                "SIGHUP: these settings apply after a restart"
            );
        }
        info!(
            publish = ?new.auth.publish,
            play = ?new.auth.play,
            relays_stopped = stopped,
            relay_rules_added = added,
            "SIGHUP: config reloaded"
        );
        self.ctx.config_tx.send_replace(Arc::new(new.clone()));
        self.current = new;
        Ok(())
    }
}

/// SIGHUP, registered early: a SIGHUP that arrives while castgate starts
/// must not kill it (the default action).
pub struct Hangup {
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

/// SIGTERM and SIGINT, registered early for the same reason.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

/// Registers the handlers (call on the runtime, before the listeners log
/// that they listen).
pub fn signals() -> (Hangup, StopSignals) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let get = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot handle {name}: {e}");
                None
            }
        };
        (
            Hangup {
                hup: get(SignalKind::hangup(), "SIGHUP"),
            },
            StopSignals {
                term: get(SignalKind::terminate(), "SIGTERM"),
                int: get(SignalKind::interrupt(), "SIGINT"),
            },
        )
    }
    #[cfg(not(unix))]
    (Hangup {}, StopSignals {})
}

/// Waits for SIGHUP forever, reloading on each. Without SIGHUP support it
/// never finishes.
pub async fn reload_on_hangup(mut hangup: Hangup, mut reloader: Reloader) {
    #[cfg(unix)]
    if let Some(hup) = hangup.hup.as_mut() {
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading the config and TLS certificates");
            let _ = reloader.reload();
        }
    }
    let _ = (&mut hangup, &mut reloader);
    std::future::pending().await
}

/// Resolves on SIGTERM or SIGINT; says which.
pub async fn stop_signal(mut s: StopSignals) -> &'static str {
    #[cfg(unix)]
    {
        async fn recv(sig: Option<&mut tokio::signal::unix::Signal>) {
            match sig {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(s.term.as_mut()) => "SIGTERM",
            _ = recv(s.int.as_mut()) => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = &mut s;
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::Shutdown;

    #[tokio::test]
    async fn reload_swaps_transcode_mappings_for_new_publishes() {
        let name = |p: Option<crate::transcode::Profile>| p.map(|p| p.name);
        let base = Config::load_with_env(None, Vec::new()).unwrap();
        let ctx = ServerContext::new_with(base.clone(), Shutdown::never());
        let t = &ctx.transcoder;
        assert_eq!(name(t.profile_for("live/a", None)), None);
        // A profile the auth webhook names wins; an unknown one is ignored.
        assert_eq!(
            name(t.profile_for("live/a", Some("abr-720p"))).as_deref(),
            Some("abr-720p")
        );
        assert_eq!(name(t.profile_for("live/a", Some("nope"))), None);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let mapping = |profile: &str| {
            std::fs::write(
                &file,
                format!("[[transcode]]\nstream = \"live/*\"\nprofile = \"{profile}\"\n"),
            )
            .unwrap()
        };
        let mut reloader = Reloader {
            path: Some(file.clone()),
            ctx: ctx.clone(),
            certs: vec![],
            current: base,
        };
        mapping("abr-720p");
        reloader.reload().unwrap();
        assert_eq!(
            name(t.profile_for("live/a", None)).as_deref(),
            Some("abr-720p")
        );
        assert_eq!(name(t.profile_for("other/a", None)), None);
        // A mapping to a missing profile is refused; the running plan stays.
        mapping("missing");
        assert!(reloader.reload().is_err());
        assert_eq!(
            name(t.profile_for("live/a", None)).as_deref(),
            Some("abr-720p")
        );
    }

    #[test]
    fn timeouts_are_checked() {
        let mut s = LifecycleSection {
            drain_secs: 5.0,
            shutdown_timeout_secs: 2.0,
        };
        assert!(s.validate().is_err());
        s.shutdown_timeout_secs = 10.0;
        assert!(s.validate().is_ok());
    }
}
