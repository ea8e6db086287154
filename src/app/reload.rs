//! Applying a reloaded config to the running services: what `lifecycle`'s
//! SIGHUP reload calls. Everything that can fail is computed first, so a
//! refused config changes nothing.

use std::path::Path;
use std::sync::Arc;

use super::Services;
use crate::config::{Config, ConfigError};
use crate::lifecycle::{Reloadable, Report};
use crate::settings::Reload;

impl Reloadable for Config {
    type Error = ConfigError;
    type Services = Arc<Services>;

    fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(path)
    }

    fn apply(&self, running: &Config, services: &Arc<Services>) -> Result<Report, ConfigError> {
        // Everything that can fail is computed before anything changes.
        let policy = self.auth.policy()?;
        let rules = crate::egress::static_rules(&self.relays)?;
        crate::sources::check_static(&self.sources)?;
        let (profiles, transcode_rules) = self.transcoder.plan(&self.transcode)?;
        let record_rules = crate::record::rules(&self.record)?;
        services.auth.set_policy(policy);
        services.recorder.set_plan(&self.recorder, record_rules);
        services.transcoder.set_plan(transcode_rules, profiles);
        let (relays_stopped, relay_rules_added) = services.relays.set_rules(rules);
        let (sources_stopped, sources_started) = services.sources.set_static(&self.sources);
        if sources_stopped + sources_started > 0 {
            tracing::info!(sources_stopped, sources_started, "[[sources]] reloaded");
        }
        services.events.configure(&self.webhooks);
        services
            .hub
            .set_publish_conflict(self.rtmp.publish_conflict);
        services
            .connections
            .rtmp
            .send_replace(Arc::new(self.rtmp.clone()));
        *crate::locks::write(&services.srt_settings) = self.srt.clone();
        if self.package.memory_budget_bytes != running.package.memory_budget_bytes {
            let budget = self.package.memory_budget();
            services.packager.store().memory().set_budget(budget);
        }
        let needs_restart = running
            .answers(self)
            .into_iter()
            .flat_map(|a| match a.reload {
                Reload::Applied => Vec::new(),
                Reload::NeedsRestart(keys) => keys,
            })
            .collect();
        Ok(Report {
            needs_restart,
            relays_stopped,
            relay_rules_added,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;
    use std::time::Duration;

    fn services(config: &Config) -> Arc<Services> {
        Arc::new(Services::build(
            super::super::Sections::of(config),
            crate::shutdown::Shutdown::never(),
        ))
    }

    /// Reloads `body` over the defaults into a context built from them.
    fn reload(services: &Arc<Services>, body: &str) -> Result<Report, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, body).unwrap();
        let mut reloader = crate::lifecycle::Reloader {
            path: Some(file),
            services: services.clone(),
            certs: vec![],
            current: Config::load_with_env(None, env(&[])).unwrap(),
        };
        reloader.reload()
    }

    #[tokio::test]
    async fn reload_applies_live_keys_and_names_the_rest() {
        let base = Config::load_with_env(None, env(&[])).unwrap();
        let services = services(&base);
        let r = reload(
            &services,
            "[rtmp]\nlisten = \"127.0.0.1:1\"\nplay_wait_secs = 3.5\npublish_conflict = \"reject\"\n\
             [api]\ntoken = \"t\"\n[package]\ngrace_secs = 1.0\nretention_secs = 2.0\n\
             [rtmps]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[rtmpt]\nmax_sessions = 5\n",
        )
        .unwrap();
        assert_eq!(
            r.needs_restart,
            [
                "rtmp.listen",
                "rtmps.cert",
                "rtmps.key",
                "rtmpt.max_sessions",
                "package.grace_secs",
                "package.retention_secs",
                "api.token",
            ]
        );
        assert_eq!(
            services.connections.rtmp().play_wait,
            Duration::from_millis(3500)
        );
        // The hub took the conflict rule: a second publisher is refused.
        let _first = services
            .hub
            .publish(
                &crate::stream_key::StreamKey::parse("live/a").unwrap(),
                "one",
            )
            .unwrap();
        assert!(services
            .hub
            .publish(
                &crate::stream_key::StreamKey::parse("live/a").unwrap(),
                "two"
            )
            .is_err());
        // Nothing changed: nothing to restart.
        assert_eq!(
            reload(&services, "").unwrap().needs_restart,
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn reload_swaps_record_entries_for_new_publishes() {
        let base = Config::load_with_env(None, Vec::new()).unwrap();
        let services = services(&base);
        let r = &services.recorder;
        assert_eq!(r.matching("live/a"), 0);
        let entry =
            |format: &str| format!("[[record]]\nstream = \"live/*\"\nformat = \"{format}\"\n");
        let report = reload(&services, &entry("flv")).unwrap();
        assert_eq!(report.needs_restart, Vec::<String>::new());
        assert_eq!(r.matching("live/a"), 1);
        assert_eq!(r.matching("other/a"), 0);
        // An unknown format is refused, naming the key; the running
        // entries stay.
        let e = reload(&services, &entry("mkv")).unwrap_err();
        assert!(e.contains("record[0].format"), "{e}");
        assert_eq!(r.matching("live/a"), 1);
    }

    #[tokio::test]
    async fn reload_swaps_transcode_mappings_for_new_publishes() {
        let name = |p: Option<crate::transcode::Profile>| p.map(|p| p.name);
        let base = Config::load_with_env(None, Vec::new()).unwrap();
        let services = services(&base);
        let t = &services.transcoder;
        assert_eq!(name(t.profile_for("live/a", None)), None);
        // A profile the auth webhook names wins; an unknown one is ignored.
        assert_eq!(
            name(t.profile_for("live/a", Some("abr-720p"))).as_deref(),
            Some("abr-720p")
        );
        assert_eq!(name(t.profile_for("live/a", Some("nope"))), None);
        let mapping = |profile: &str| {
            format!("[[transcode]]\nstream = \"live/*\"\nprofile = \"{profile}\"\n")
        };
        reload(&services, &mapping("abr-720p")).unwrap();
        assert_eq!(
            name(t.profile_for("live/a", None)).as_deref(),
            Some("abr-720p")
        );
        assert_eq!(name(t.profile_for("other/a", None)), None);
        // A mapping to a missing profile is refused; the running plan stays.
        assert!(reload(&services, &mapping("missing")).is_err());
        assert_eq!(
            name(t.profile_for("live/a", None)).as_deref(),
            Some("abr-720p")
        );
    }
}
