//! Who may publish and play: `open`, `keys` (allowed stream names per
//! application) or `webhook` (an HTTP service decides), and signed HLS/DASH
//! URLs ([`signed`]).
//!
//! A webhook decision runs in the asking connection's own task with a
//! bounded timeout, so a slow service delays that one client and nobody
//! else; allow and deny answers are cached for `auth.cache_secs`. The policy
//! is swapped whole on SIGHUP ([`Auth::set_policy`]).

pub mod signed;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::ConfigError;
use crate::webhooks::client::{self, Endpoint};

/// How publishers (or players) are authorised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Open,
    Keys,
    Webhook,
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub publish: AuthMode,
    pub play: AuthMode,
    pub keys_file: String,
    pub webhook_url: String,
    pub webhook_timeout_secs: f64,
    pub cache_secs: f64,
    pub url_secret: String,
    /// app → allowed stream names.
    #[serde(default)]
    pub publish_keys: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub play_keys: BTreeMap<String, Vec<String>>,
}

/// The keys file: `[publish]` and `[play]` tables of `app = ["key", …]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    publish: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    play: BTreeMap<String, Vec<String>>,
}

/// Keys files larger than this are refused.
const MAX_KEYS_FILE_BYTES: u64 = 16 * 1024 * 1024;

impl AuthSection {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.policy().map(|_| ())
    }

    /// The policy this section describes; reads the keys file.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let invalid = |key, reason: String| ConfigError::Invalid { key, reason };
        let uses = |m| self.publish == m || self.play == m;
        let webhook = if self.webhook_url.is_empty() {
            if uses(AuthMode::Webhook) {
                return Err(invalid(
                    "auth.webhook_url",
                    "must be set when auth.publish or auth.play is \"webhook\"".into(),
                ));
            }
            None
        } else {
            Some(Endpoint::parse(&self.webhook_url).map_err(|e| invalid("auth.webhook_url", e))?)
        };
        if !(0.05..=60.0).contains(&self.webhook_timeout_secs) {
            return Err(invalid(
                "auth.webhook_timeout_secs",
                "must be in [0.05, 60]".into(),
            ));
        }
        if !(0.0..=3600.0).contains(&self.cache_secs) {
            return Err(invalid("auth.cache_secs", "must be in [0, 3600]".into()));
        }
        let mut publish = self.publish_keys.clone();
        let mut play = self.play_keys.clone();
        if !self.keys_file.is_empty() {
            let file = read_keys_file(&self.keys_file).map_err(|e| invalid("auth.keys_file", e))?;
            for (app, keys) in file.publish {
                publish.entry(app).or_default().extend(keys);
            }
            for (app, keys) in file.play {
                play.entry(app).or_default().extend(keys);
            }
        }
        let set = |m: BTreeMap<String, Vec<String>>| -> HashMap<String, HashSet<String>> {
            m.into_iter()
                .map(|(app, keys)| (app, keys.into_iter().collect()))
                .collect()
        };
        Ok(Policy {
            publish: self.publish,
            play: self.play,
            publish_keys: set(publish),
            play_keys: set(play),
            webhook,
            webhook_timeout: Duration::from_secs_f64(self.webhook_timeout_secs),
            cache_ttl: Duration::from_secs_f64(self.cache_secs),
            url_secret: (!self.url_secret.is_empty()).then(|| self.url_secret.clone()),
        })
    }
}

fn read_keys_file(path: &str) -> Result<KeysFile, String> {
    use std::io::Read;
    let mut data = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEYS_FILE_BYTES + 1).read_to_string(&mut data))
        .map_err(|e| format!("{path}: {e}"))?;
    if data.len() as u64 > MAX_KEYS_FILE_BYTES {
        return Err(format!("{path}: larger than {MAX_KEYS_FILE_BYTES} bytes"));
    }
    config::Config::builder()
        .add_source(config::File::from_str(&data, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| format!("{path}: {e}"))
}

/// A checked `[auth]` section, ready to decide.
#[derive(Debug)]
pub struct Policy {
    pub publish: AuthMode,
    pub play: AuthMode,
    publish_keys: HashMap<String, HashSet<String>>,
    play_keys: HashMap<String, HashSet<String>>,
    webhook: Option<Endpoint>,
    webhook_timeout: Duration,
    cache_ttl: Duration,
    /// Signed HLS/DASH URLs are required when set.
    pub url_secret: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Play,
}

/// What a client asks for.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    pub action: Action,
    pub app: String,
    /// The stream name (the part after the app, without the query).
    pub key: String,
    pub query: String,
    /// `rtmp`, `rtmps`, `rtmpt`, `rtmpts`.
    pub protocol: String,
    pub client: String,
}

impl Request {
    pub fn new(action: Action, app: &str, key: &str, query: &str, protocol: &str) -> Request {
        Request {
            action,
            app: app.into(),
            key: key.into(),
            query: query.into(),
            protocol: protocol.into(),
            client: String::new(),
        }
    }

    pub fn from(mut self, client: SocketAddr) -> Request {
        self.client = client.to_string();
        self
    }
}

/// What an allowing webhook may add (all optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Grant {
    /// Publish under this name instead (same application).
    #[serde(default)]
    pub name: Option<String>,
    /// Relay targets to attach (like `POST /api/v1/relays`).
    #[serde(default)]
    pub relays: Vec<String>,
    /// A transcode profile for the stream (read by the transcode module).
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow(Grant),
    Deny(String),
}

/// The authoriser every connection shares.
pub struct Auth {
    policy: ArcSwap<Policy>,
    cache: Mutex<HashMap<String, (Instant, Verdict)>>,
    /// Transcode profiles named by the webhook, by live stream.
    profiles: Arc<Mutex<HashMap<String, (u64, String)>>>,
    next_profile: std::sync::atomic::AtomicU64,
}

/// Keeps a stream's webhook-named profile while its publish lasts.
pub struct ProfileGuard {
    profiles: Arc<Mutex<HashMap<String, (u64, String)>>>,
    key: String,
    id: u64,
}

impl Drop for ProfileGuard {
    fn drop(&mut self) {
        let mut m = self.profiles.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            m.remove(&self.key);
        }
    }
}

/// Cached answers at most (past this, expired ones are swept, then all).
const CACHE_MAX: usize = 10_000;

impl Auth {
    pub fn new(policy: Policy) -> Auth {
        Auth {
            policy: ArcSwap::from_pointee(policy),
            cache: Mutex::new(HashMap::new()),
            profiles: Arc::default(),
            next_profile: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The hook for the transcode module: the profile the auth webhook
    /// named for `key`'s current publish (`None`: none named).
    pub fn profile_of(&self, key: &str) -> Option<String> {
        let m = self.profiles.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).map(|(_, p)| p.clone())
    }

    /// Records the profile of a publish that starts; dropping the guard
    /// (the publish ends) forgets it.
    pub fn publish_profile(&self, key: &str, profile: Option<&str>) -> Option<ProfileGuard> {
        let profile = profile?;
        let id = self
            .next_profile
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), (id, profile.to_string()));
        Some(ProfileGuard {
            profiles: self.profiles.clone(),
            key: key.to_string(),
            id,
        })
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Replaces the policy (SIGHUP); cached webhook answers are forgotten.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
        self.cache().clear();
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, (Instant, Verdict)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides. Only the webhook mode awaits (within its timeout).
    pub async fn check(&self, req: &Request) -> Verdict {
        let policy = self.policy();
        let (mode, keys) = match req.action {
            Action::Publish => (policy.publish, &policy.publish_keys),
            Action::Play => (policy.play, &policy.play_keys),
        };
        match mode {
            AuthMode::Open => Verdict::Allow(Grant::default()),
            AuthMode::Keys => {
                if keys.get(&req.app).is_some_and(|k| k.contains(&req.key)) {
                    Verdict::Allow(Grant::default())
                } else {
                    Verdict::Deny(format!("stream key not allowed for app {:?}", req.app))
                }
            }
            AuthMode::Webhook => self.ask_webhook(&policy, req).await,
        }
    }

    async fn ask_webhook(&self, policy: &Policy, req: &Request) -> Verdict {
        let Some(ep) = &policy.webhook else {
            return Verdict::Deny("no auth.webhook_url".into());
        };
        let cache_key = format!(
            "{:?}\n{}\n{}\n{}\n{}",
            req.action, req.protocol, req.app, req.key, req.query
        );
        if !policy.cache_ttl.is_zero() {
            if let Some((at, v)) = self.cache().get(&cache_key) {
                if at.elapsed() < policy.cache_ttl {
                    return v.clone();
                }
            }
        }
        let body = match serde_json::to_vec(req) {
            Ok(b) => Bytes::from(b),
            Err(e) => return Verdict::Deny(format!("cannot encode the request: {e}")),
        };
        let started = Instant::now();
        let verdict = match client::post_json(ep, &[], body, policy.webhook_timeout).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                let grant = if reply.body.iter().all(u8::is_ascii_whitespace) {
                    Ok(Grant::default())
                } else {
                    serde_json::from_slice::<Grant>(&reply.body)
                };
                match grant {
                    Ok(g) => Verdict::Allow(g),
                    Err(e) => {
                        // An allow we cannot read is not an allow.
                        warn!(url = ep.redacted(), "auth webhook answer unreadable: {e}");
                        return Verdict::Deny(format!("webhook answer unreadable: {e}"));
                    }
                }
            }
            Ok(reply) => Verdict::Deny(format!("webhook answered {}", reply.status)),
            Err(e) => {
                // Not cached: the next attempt asks again.
                warn!(url = ep.redacted(), "auth webhook failed: {e}");
                crate::metrics::auth_webhook_call("error", started.elapsed());
                return Verdict::Deny(format!("webhook failed: {e}"));
            }
        };
        crate::metrics::auth_webhook_call(
            if matches!(verdict, Verdict::Allow(_)) {
                "allow"
            } else {
                "deny"
            },
            started.elapsed(),
        );
        info!(
            action = ?req.action,
            app = req.app,
            key = req.key,
            allowed = matches!(verdict, Verdict::Allow(_)),
            ms = started.elapsed().as_millis() as u64,
            "auth webhook answered"
        );
        if !policy.cache_ttl.is_zero() {
            let mut cache = self.cache();
            if cache.len() >= CACHE_MAX {
                let ttl = policy.cache_ttl;
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(cache_key, (Instant::now(), verdict.clone()));
        }
        verdict
    }
}

/// Whether `addr` only accepts local connections.
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> AuthSection {
        crate::config::Config::load_with_env(None, Vec::new())
            .unwrap()
            .auth
    }

    fn req(action: Action, app: &str, key: &str) -> Request {
        Request::new(action, app, key, "", "rtmp")
    }

    #[tokio::test]
    async fn open_and_keys() {
        let auth = Auth::new(section().policy().unwrap());
        assert_eq!(
            auth.check(&req(Action::Publish, "live", "x")).await,
            Verdict::Allow(Grant::default())
        );
        let mut s = section();
        s.publish = AuthMode::Keys;
        s.publish_keys.insert("live".into(), vec!["good".into()]);
        auth.set_policy(s.policy().unwrap());
        assert!(matches!(
            auth.check(&req(Action::Publish, "live", "good")).await,
            Verdict::Allow(_)
        ));
        assert!(matches!(
            auth.check(&req(Action::Publish, "live", "bad")).await,
            Verdict::Deny(_)
        ));
        assert!(matches!(
            auth.check(&req(Action::Publish, "other", "good")).await,
            Verdict::Deny(_)
        ));
        // Play stays open.
        assert!(matches!(
            auth.check(&req(Action::Play, "live", "bad")).await,
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn profiles_last_as_long_as_their_publish() {
        let auth = Auth::new(section().policy().unwrap());
        assert!(auth.publish_profile("live/a", None).is_none());
        let g = auth.publish_profile("live/a", Some("low"));
        assert_eq!(auth.profile_of("live/a").as_deref(), Some("low"));
        let g2 = auth.publish_profile("live/a", Some("high"));
        drop(g);
        assert_eq!(auth.profile_of("live/a").as_deref(), Some("high"));
        drop(g2);
        assert_eq!(auth.profile_of("live/a"), None);
    }

    #[test]
    fn keys_file_is_merged_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.toml");
        std::fs::write(&f, "[publish]\nlive = [\"a\"]\n[play]\nlive = [\"p\"]\n").unwrap();
        let mut s = section();
        s.keys_file = f.display().to_string();
        s.publish_keys.insert("live".into(), vec!["b".into()]);
        let p = s.policy().unwrap();
        assert_eq!(p.publish_keys["live"].len(), 2);
        assert!(p.play_keys["live"].contains("p"));
        std::fs::write(&f, "[publish]\nlive = 3\n").unwrap();
        let e = s.policy().unwrap_err().to_string();
        assert!(
            e.contains("auth.keys_file") && e.contains("keys.toml"),
            "{e}"
        );
        s.keys_file = "/nonexistent/keys.toml".into();
        assert!(s.policy().is_err());
    }

    #[test]
    fn webhook_mode_needs_a_url() {
        let mut s = section();
        s.publish = AuthMode::Webhook;
        let e = s.policy().unwrap_err().to_string();
        assert!(e.contains("auth.webhook_url"), "{e}");
        s.webhook_url = "ftp://x/".into();
        assert!(s.policy().is_err());
    }

    /// A webhook that is down denies, and the failure is not cached.
    #[tokio::test]
    async fn webhook_down_denies() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = section();
        s.publish = AuthMode::Webhook;
        s.webhook_url = format!("http://127.0.0.1:{port}/auth");
        let auth = Auth::new(s.policy().unwrap());
        let v = auth.check(&req(Action::Publish, "live", "k")).await;
        assert!(
            matches!(v, Verdict::Deny(ref why) if why.contains("webhook failed")),
            "{v:?}"
        );
        assert!(auth.cache().is_empty());
    }
}
