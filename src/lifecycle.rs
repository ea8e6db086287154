//! Reload (SIGHUP) and graceful shutdown (SIGTERM, SIGINT).
//!
//! What the rest of castgate sees of it (all handed out by `app`):
//! - [`Shutdown`](crate::shutdown::Shutdown): a cheap, cloneable token;
//!   `shutdown.cancelled().await` resolves when the process starts to stop
//!   (stop transcoders, flush, exit). `is_stopping()` polls it.
//! - `ServerContext::rtmp`: a `watch::Sender<Arc<server::Settings>>` that
//!   holds `[rtmp]` as last reloaded; `subscribe()` to wake on each.
//! - [`Reloadable`]: what a reload applies to (`app::reload` implements it
//!   for the config and the running services).
//!
//! A reload re-reads the config file (and the environment) with the same
//! checks as start-up; an invalid file is refused with the reason, logged,
//! and the running config stays. Each section answers what it did
//! ([`Reload`](crate::settings::Reload): applied, or the changed keys that
//! need a restart, from its [`Section::LIVE`](crate::settings::Section)
//! list); the log line names every key that needs a restart, and the
//! README's table is checked against the same lists.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::settings::{check, secs, Invalid, Section};
use crate::transport::tls::CertStore;

/// `[lifecycle]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "drain_secs", with = "secs")]
    pub drain: Duration,
    #[serde(rename = "shutdown_timeout_secs", with = "secs")]
    pub shutdown_timeout: Duration,
}

impl Section for Settings {
    const NAME: &'static str = "lifecycle";
    /// Read once, when `run` starts.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), Invalid> {
        let timeout = self.shutdown_timeout.as_secs_f64();
        check(
            (1.0..=3600.0).contains(&timeout),
            "lifecycle.shutdown_timeout_secs",
            "must be in [1, 3600]",
        )?;
        check(
            self.drain < self.shutdown_timeout,
            "lifecycle.drain_secs",
            "must be in [0, lifecycle.shutdown_timeout_secs)",
        )
    }
}

/// A configuration a reload re-reads and applies (`config::Config`).
pub trait Reloadable: Sized {
    type Error: std::fmt::Display;
    /// What a reload applies to (the running services).
    type Services;

    /// Reads the file (and the environment) with start-up's checks.
    fn load(path: Option<&Path>) -> Result<Self, Self::Error>;

    /// Applies `self` over `running` to the services; everything that can
    /// fail is checked first, so an error changes nothing.
    fn apply(&self, running: &Self, services: &Self::Services) -> Result<Report, Self::Error>;
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Changed keys (`section.key`) that apply after a restart.
    pub needs_restart: Vec<String>,
    /// Static relays stopped (entries removed or changed) and entries added.
    pub relays_stopped: usize,
    pub relay_rules_added: usize,
}

/// What a SIGHUP reload works on.
pub struct Reloader<C: Reloadable> {
    pub path: Option<PathBuf>,
    pub services: C::Services,
    pub certs: Vec<(&'static str, Arc<CertStore>)>,
    pub current: C,
}

impl<C: Reloadable> Reloader<C> {
    /// Re-reads the config and applies it; an invalid one changes nothing.
    pub fn reload(&mut self) -> Result<Report, String> {
        for (what, store) in &self.certs {
            store.reload_logged(what);
        }
        let new = match C::load(self.path.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                error!("SIGHUP: config rejected, the running one stays: {e}");
                return Err(e.to_string());
            }
        };
        self.apply(new)
    }

    /// Applies a checked config.
    pub fn apply(&mut self, new: C) -> Result<Report, String> {
        let report = match new.apply(&self.current, &self.services) {
            Ok(r) => r,
            Err(e) => {
                error!("SIGHUP: config rejected, the running one stays: {e}");
                return Err(e.to_string());
            }
        };
        if !report.needs_restart.is_empty() {
            warn!(
                needs_restart = ?report.needs_restart,
                "SIGHUP: these settings apply after a restart"
            );
        }
        info!(
            relays_stopped = report.relays_stopped,
            relay_rules_added = report.relay_rules_added,
            needs_restart = ?report.needs_restart,
            "SIGHUP: config reloaded"
        );
        self.current = new;
        Ok(report)
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
pub async fn reload_on_hangup<C: Reloadable>(mut hangup: Hangup, mut reloader: Reloader<C>) {
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

    #[test]
    fn timeouts_are_checked() {
        let mut s = Settings {
            drain: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(2),
        };
        assert_eq!(s.validate().unwrap_err().key, "lifecycle.drain_secs");
        s.shutdown_timeout = Duration::from_secs(10);
        assert_eq!(s.validate(), Ok(()));
        s.shutdown_timeout = Duration::from_millis(500);
        s.drain = Duration::ZERO;
        assert_eq!(
            s.validate().unwrap_err().key,
            "lifecycle.shutdown_timeout_secs"
        );
    }
}
