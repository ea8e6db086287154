//! Who may publish and play: `open`, `keys` (a secret key per stream
//! name) or `webhook` (an HTTP service decides), and signed URLs
//! ([`signed`]).
//!
//! A stream's name is public: it is in every HLS/DASH URL, log line and
//! metric. Its key is not: a publisher sends `NAME?key=KEY`, or the key
//! alone as the name (as platform stream keys work: the key maps to its
//! public name), and the key is never logged. Names that may be keys are
//! logged redacted ([`Auth::loggable_name`]).
//!
//! One play policy covers every play path: signed URLs (`url_secret`) are
//! required on RTMP, RTMPT and RTMPS play as on HLS/DASH, and a play mode
//! that guards RTMP only (`keys`, `webhook` without `url_secret`) is refused
//! at start-up, since HLS/DASH would still play every stream.
//!
//! A webhook decision runs in the asking connection's own task with a
//! bounded timeout, so a slow service delays that one client and nobody
//! else; allow and deny answers are cached for `auth.cache_secs`. The policy
//! is swapped whole on SIGHUP ([`Auth::set_policy`]).

pub mod signed;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::settings::{secs, secs_within, Invalid, Section};
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

impl AuthMode {
    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Open => "\"open\"",
            AuthMode::Keys => "\"keys\"",
            AuthMode::Webhook => "\"webhook\"",
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub publish: AuthMode,
    pub play: AuthMode,
    pub keys_file: String,
    pub webhook_url: String,
    #[serde(rename = "webhook_timeout_secs", with = "secs")]
    pub webhook_timeout: Duration,
    #[serde(rename = "cache_secs", with = "secs")]
    pub cache: Duration,
    pub url_secret: String,
    /// app → stream name → its keys.
    #[serde(default)]
    pub publish_keys: BTreeMap<String, AppKeys>,
    #[serde(default)]
    pub play_keys: BTreeMap<String, AppKeys>,
}

/// One application's keys as written: `NAME = "KEY"` or
/// `NAME = ["KEY", …]` entries.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AppKeys {
    Streams(BTreeMap<String, StreamKeys>),
    /// The old form, a list of stream names that were their own secret;
    /// refused with a reason.
    Names(Vec<String>),
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StreamKeys {
    One(String),
    Many(Vec<String>),
}

/// The keys file: `[publish.APP]` and `[play.APP]` tables of
/// `NAME = "KEY"` entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    publish: BTreeMap<String, AppKeys>,
    #[serde(default)]
    play: BTreeMap<String, AppKeys>,
}

/// Longest key accepted.
const MAX_KEY_LEN: usize = 256;

/// Checked keys: for each application, each stream name's keys, and each
/// key's stream name (a key used alone as the name publishes as its
/// stream).
#[derive(Debug, Default)]
struct KeyTable {
    apps: HashMap<String, AppTable>,
}

#[derive(Debug, Default)]
struct AppTable {
    keys_of: HashMap<String, Vec<String>>,
    name_of: HashMap<String, String>,
}

impl KeyTable {
    /// `what` is `publish` or `play`, for the messages.
    fn build(what: &str, apps: BTreeMap<String, AppKeys>) -> Result<KeyTable, String> {
        let mut table = KeyTable::default();
        for (app, keys) in apps {
            let streams = match keys {
                AppKeys::Streams(s) => s,
                AppKeys::Names(_) => {
                    return Err(format!(
                        "{what} keys for {app:?} are a list of stream names, the old form \
                         in which the public stream name was the secret; write \
                         NAME = \"KEY\" entries under [auth.{what}_keys.{app}] \
                         and {what} rtmp://HOST/{app}/NAME?key=KEY"
                    ))
                }
            };
            let t = table.apps.entry(app.clone()).or_default();
            for (name, keys) in streams {
                crate::stream_key::StreamKey::new(&app, &name)
                    .map_err(|why| format!("{what} keys: {app}/{name}: {why}"))?;
                let keys = match keys {
                    StreamKeys::One(k) => vec![k],
                    StreamKeys::Many(k) => k,
                };
                if keys.is_empty() {
                    return Err(format!("{what} keys: {app}/{name} has no key"));
                }
                for key in &keys {
                    // Keys travel in URLs and stream names: URL-safe only,
                    // so no encoding can make two spellings of one key.
                    let safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
                    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.chars().all(safe) {
                        return Err(format!(
                            "{what} keys: a key of {app}/{name} must be 1 to {MAX_KEY_LEN} \
                             of A-Z a-z 0-9 - . _ ~"
                        ));
                    }
                    if let Some(other) = t.name_of.insert(key.clone(), name.clone()) {
                        if other != name {
                            return Err(format!(
                                "{what} keys: one key is given to both {app}/{other} and {app}/{name}"
                            ));
                        }
                    }
                }
                t.keys_of.entry(name).or_default().extend(keys);
            }
        }
        Ok(table)
    }

    /// The stream `name?query` opens, if its key is right: `NAME?key=KEY`,
    /// or `KEY` alone as the name.
    fn authorise(&self, app: &str, name: &str, query: &str) -> Option<String> {
        let t = self.apps.get(app)?;
        match query_param(query, "key") {
            Some(given) => {
                let keys = t.keys_of.get(name)?;
                // Every key is compared, none with an early return.
                let right = keys.iter().fold(false, |ok, k| {
                    constant_time_eq(k.as_bytes(), given.as_bytes()) | ok
                });
                right.then(|| name.to_string())
            }
            None => t.name_of.get(name).cloned(),
        }
    }

    fn is_public_name(&self, app: &str, name: &str) -> bool {
        self.apps
            .get(app)
            .is_some_and(|t| t.keys_of.contains_key(name) && !t.name_of.contains_key(name))
    }
}

/// The first value of `param` in a `a=1&b=2` query.
fn query_param<'q>(query: &'q str, param: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == param)
        .map(|(_, v)| v)
}

/// Compares two secrets in time independent of where they differ and of
/// their lengths: both are hashed first (SHA-256), and the digests, of one
/// fixed length, are compared without an early return.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Keys files larger than this are refused.
const MAX_KEYS_FILE_BYTES: u64 = 16 * 1024 * 1024;

impl Section for Settings {
    const NAME: &'static str = "auth";
    /// A reload builds a new policy (re-reading the keys file) and swaps it in.
    const LIVE: &'static [&'static str] = &[
        "publish",
        "play",
        "keys_file",
        "webhook_url",
        "webhook_timeout_secs",
        "cache_secs",
        "url_secret",
        "publish_keys",
        "play_keys",
    ];

    fn validate(&self) -> Result<(), Invalid> {
        self.policy().map(|_| ())
    }
}

impl Settings {
    /// The policy this section describes; reads the keys file.
    pub fn policy(&self) -> Result<Policy, Invalid> {
        let invalid = |key: &str, reason: String| Invalid::new(key, reason);
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
        if !secs_within(self.webhook_timeout, 0.05, 60.0) {
            return Err(invalid(
                "auth.webhook_timeout_secs",
                "must be in [0.05, 60]".into(),
            ));
        }
        if !secs_within(self.cache, 0.0, 3600.0) {
            return Err(invalid("auth.cache_secs", "must be in [0, 3600]".into()));
        }
        if self.play != AuthMode::Open && self.url_secret.is_empty() {
            return Err(invalid(
                "auth.play",
                format!(
                    "{} guards RTMP play only: HLS and DASH on the HTTP listeners would \
                     still play every stream; set auth.url_secret as well (signed URLs, \
                     then required on every play path) or leave auth.play \"open\"",
                    self.play.name()
                ),
            ));
        }
        let mut publish = self.publish_keys.clone();
        let mut play = self.play_keys.clone();
        let from_file = |key| move |e| invalid(key, e);
        if !self.keys_file.is_empty() {
            let file = read_keys_file(&self.keys_file).map_err(from_file("auth.keys_file"))?;
            merge(&mut publish, file.publish);
            merge(&mut play, file.play);
        }
        Ok(Policy {
            publish: self.publish,
            play: self.play,
            publish_keys: KeyTable::build("publish", publish)
                .map_err(from_file("auth.publish_keys"))?,
            play_keys: KeyTable::build("play", play).map_err(from_file("auth.play_keys"))?,
            webhook,
            webhook_timeout: self.webhook_timeout,
            cache_ttl: self.cache,
            url_secret: (!self.url_secret.is_empty()).then(|| self.url_secret.clone()),
        })
    }
}

/// Adds the keys file's entries to the config's (a stream name in both
/// gets both sets of keys).
fn merge(into: &mut BTreeMap<String, AppKeys>, from: BTreeMap<String, AppKeys>) {
    for (app, keys) in from {
        match (into.entry(app), keys) {
            (std::collections::btree_map::Entry::Vacant(v), keys) => {
                v.insert(keys);
            }
            (std::collections::btree_map::Entry::Occupied(mut o), AppKeys::Streams(more)) => {
                match o.get_mut() {
                    AppKeys::Streams(have) => {
                        for (name, keys) in more {
                            let mut all = match have.remove(&name) {
                                Some(StreamKeys::One(k)) => vec![k],
                                Some(StreamKeys::Many(k)) => k,
                                None => Vec::new(),
                            };
                            match keys {
                                StreamKeys::One(k) => all.push(k),
                                StreamKeys::Many(k) => all.extend(k),
                            }
                            have.insert(name, StreamKeys::Many(all));
                        }
                    }
                    // Refused by KeyTable::build with its reason.
                    AppKeys::Names(_) => {}
                }
            }
            (std::collections::btree_map::Entry::Occupied(mut o), names) => {
                o.insert(names);
            }
        }
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
    publish_keys: KeyTable,
    play_keys: KeyTable,
    webhook: Option<Endpoint>,
    webhook_timeout: Duration,
    cache_ttl: Duration,
    /// Signed URLs are required on every play path when set.
    pub url_secret: Option<String>,
}

impl Policy {
    fn mode_and_keys(&self, action: Action) -> (AuthMode, &KeyTable) {
        match action {
            Action::Publish => (self.publish, &self.publish_keys),
            Action::Play => (self.play, &self.play_keys),
        }
    }
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
    /// The stream name as sent (the part after the app, without the
    /// query): with keys or a webhook it may be a secret.
    pub key: String,
    pub query: String,
    /// `rtmp`, `rtmps`, `rtmpt`, `rtmpts`, `srt`.
    pub protocol: String,
    pub client: String,
    /// SRT's `u=` (who the caller says it is), when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SRT's `s=` (the caller's session id), when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
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
            user: None,
            session: None,
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
        let mut m = crate::locks::lock(&self.profiles);
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
        let m = crate::locks::lock(&self.profiles);
        m.get(key).map(|(_, p)| p.clone())
    }

    /// Records the profile of a publish that starts; dropping the guard
    /// (the publish ends) forgets it.
    pub fn publish_profile(&self, key: &str, profile: Option<&str>) -> Option<ProfileGuard> {
        let profile = profile?;
        let id = self
            .next_profile
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::locks::lock(&self.profiles).insert(key.to_string(), (id, profile.to_string()));
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
        crate::locks::lock(&self.cache)
    }

    /// Decides at `now` (Unix seconds, for signed URLs). Only the webhook
    /// mode awaits (within its timeout).
    pub async fn check(&self, req: &Request, now: u64) -> Verdict {
        match self.check_without_waiting(req, now) {
            Some(verdict) => verdict,
            None => self.ask_webhook(&self.policy(), req).await,
        }
    }

    /// [`Self::check`] where it needs no webhook (`None`: ask the webhook),
    /// for callers that cannot wait (SRT's handshake callback).
    pub fn check_without_waiting(&self, req: &Request, now: u64) -> Option<Verdict> {
        let policy = self.policy();
        if let (Action::Play, Some(secret)) = (req.action, &policy.url_secret) {
            let stream = format!("{}/{}", req.app, req.key);
            if let Err(e) = signed::verify(secret, &stream, Some(&req.query), now) {
                return Some(Verdict::Deny(format!("signed URL required: {e}")));
            }
        }
        let (mode, keys) = policy.mode_and_keys(req.action);
        match mode {
            AuthMode::Open => Some(Verdict::Allow(Grant::default())),
            AuthMode::Keys => Some(match keys.authorise(&req.app, &req.key, &req.query) {
                Some(name) => Verdict::Allow(Grant {
                    name: (name != req.key).then_some(name),
                    ..Grant::default()
                }),
                None => Verdict::Deny(format!("no such key for app {:?}", req.app)),
            }),
            AuthMode::Webhook => None,
        }
    }

    /// `name` as logs may show it: as is when it cannot be a key (open
    /// mode, or a public name with keys), otherwise only its length.
    pub fn loggable_name(&self, action: Action, app: &str, name: &str) -> String {
        let policy = self.policy();
        match policy.mode_and_keys(action) {
            (AuthMode::Open, _) => name.to_string(),
            (AuthMode::Keys, keys) if keys.is_public_name(app, name) => name.to_string(),
            _ => format!("<{} bytes, not logged>", name.len()),
        }
    }

    async fn ask_webhook(&self, policy: &Policy, req: &Request) -> Verdict {
        let Some(ep) = &policy.webhook else {
            return Verdict::Deny("no auth.webhook_url".into());
        };
        let cache_key = format!(
            "{:?}\n{}\n{}\n{}\n{}\n{:?}\n{:?}",
            req.action, req.protocol, req.app, req.key, req.query, req.user, req.session
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
        // The name as sent is shown only when the answer makes it public.
        let shown = match &verdict {
            Verdict::Allow(Grant { name: None, .. }) => req.key.clone(),
            _ => format!("<{} bytes, not logged>", req.key.len()),
        };
        info!(
            action = ?req.action,
            app = req.app,
            name = shown,
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

    fn section() -> Settings {
        crate::settings::tests::default_section("auth")
    }

    fn req(action: Action, app: &str, key: &str) -> Request {
        Request::new(action, app, key, "", "rtmp")
    }

    fn keys(entries: &[(&str, &str)]) -> AppKeys {
        AppKeys::Streams(
            entries
                .iter()
                .map(|(n, k)| (n.to_string(), StreamKeys::One(k.to_string())))
                .collect(),
        )
    }

    fn allowed_as(v: &Verdict) -> Option<Option<&str>> {
        match v {
            Verdict::Allow(g) => Some(g.name.as_deref()),
            Verdict::Deny(_) => None,
        }
    }

    #[tokio::test]
    async fn open_and_keys() {
        let auth = Auth::new(section().policy().unwrap());
        assert_eq!(
            auth.check(&req(Action::Publish, "live", "x"), 0).await,
            Verdict::Allow(Grant::default())
        );
        let mut s = section();
        s.publish = AuthMode::Keys;
        s.publish_keys
            .insert("live".into(), keys(&[("studio", "k-studio-1")]));
        auth.set_policy(s.policy().unwrap());
        let publish =
            |name: &str, query: &str| Request::new(Action::Publish, "live", name, query, "rtmp");
        // NAME?key=KEY publishes as NAME.
        let v = auth.check(&publish("studio", "key=k-studio-1"), 0).await;
        assert_eq!(allowed_as(&v), Some(None), "{v:?}");
        // The key alone as the name publishes as its stream.
        let v = auth.check(&publish("k-studio-1", ""), 0).await;
        assert_eq!(allowed_as(&v), Some(Some("studio")), "{v:?}");
        // The public name alone, a wrong key, a key of another app, a key
        // for another name: refused.
        for (app, name, query) in [
            ("live", "studio", ""),
            ("live", "studio", "key=k-studio-2"),
            ("live", "studio", "key="),
            ("live", "other", "key=k-studio-1"),
            ("other", "studio", "key=k-studio-1"),
            ("other", "k-studio-1", ""),
        ] {
            let r = Request::new(Action::Publish, app, name, query, "rtmp");
            let v = auth.check(&r, 0).await;
            assert_eq!(allowed_as(&v), None, "{app}/{name}?{query}: {v:?}");
        }
        // Play stays open.
        assert!(matches!(
            auth.check(&req(Action::Play, "live", "bad"), 0).await,
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn the_old_list_of_names_is_refused_with_the_new_form() {
        let mut s = section();
        s.publish = AuthMode::Keys;
        s.publish_keys
            .insert("live".into(), AppKeys::Names(vec!["secret-name".into()]));
        let e = s.policy().unwrap_err().to_string();
        assert!(
            e.contains("auth.publish_keys")
                && e.contains("old form")
                && e.contains("rtmp://HOST/live/NAME?key=KEY"),
            "{e}"
        );
    }

    #[test]
    fn keys_are_url_safe_and_belong_to_one_name() {
        for (entries, wanted) in [
            (&[("a", "has space")][..], "A-Z a-z 0-9"),
            (&[("a", "")][..], "A-Z a-z 0-9"),
            (&[("a", "k&key=x")][..], "A-Z a-z 0-9"),
            (&[("a", "same-key"), ("b", "same-key")][..], "both"),
            (&[("../x", "k-1")][..], "dot path segment"),
        ] {
            let mut s = section();
            s.publish_keys.insert("live".into(), keys(entries));
            let e = s.policy().unwrap_err().to_string();
            assert!(e.contains(wanted), "{entries:?}: {e}");
        }
    }

    /// Signed URLs guard RTMP play as they guard HLS/DASH.
    #[tokio::test]
    async fn signed_play_is_required_on_rtmp_too() {
        let mut s = section();
        s.url_secret = "s3cret".into();
        let auth = Auth::new(s.policy().unwrap());
        let play = |query: &str| Request::new(Action::Play, "live", "cam", query, "rtmp");
        let good = signed::query("s3cret", "live/cam", 100);
        let other = signed::query("s3cret", "live/other", 100);
        assert!(matches!(
            auth.check(&play(&good), 50).await,
            Verdict::Allow(_)
        ));
        for (query, now) in [("", 50), (good.as_str(), 101), (other.as_str(), 50)] {
            let v = auth.check(&play(query), now).await;
            assert!(
                matches!(v, Verdict::Deny(ref why) if why.contains("signed URL required")),
                "{query} at {now}: {v:?}"
            );
        }
        // Publishing needs no signature.
        let publish = Request::new(Action::Publish, "live", "cam", "", "rtmp");
        assert!(matches!(auth.check(&publish, 50).await, Verdict::Allow(_)));
    }

    #[test]
    fn a_play_mode_that_leaves_hls_open_is_refused() {
        for mode in [AuthMode::Keys, AuthMode::Webhook] {
            let mut s = section();
            s.play = mode;
            s.webhook_url = "http://127.0.0.1:9/auth".into();
            let e = s.policy().unwrap_err().to_string();
            assert!(
                e.contains("auth.play") && e.contains("HLS and DASH") && e.contains(mode.name()),
                "{e}"
            );
            s.url_secret = "s3cret".into();
            s.policy().unwrap();
        }
    }

    #[test]
    fn names_that_may_be_keys_are_not_logged() {
        let mut s = section();
        s.publish = AuthMode::Keys;
        s.publish_keys
            .insert("live".into(), keys(&[("studio", "k-studio-1")]));
        let auth = Auth::new(s.policy().unwrap());
        assert_eq!(
            auth.loggable_name(Action::Publish, "live", "studio"),
            "studio"
        );
        for name in ["k-studio-1", "k-studio-2", "unknown"] {
            let shown = auth.loggable_name(Action::Publish, "live", name);
            assert!(!shown.contains(name), "{shown}");
        }
        // Play is open: names are public.
        assert_eq!(auth.loggable_name(Action::Play, "live", "x"), "x");
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
        std::fs::write(
            &f,
            "[publish.live]\ncam = \"k-file\"\n[play.live]\ncam = [\"p-1\", \"p-2\"]\n",
        )
        .unwrap();
        let mut s = section();
        s.keys_file = f.display().to_string();
        s.publish_keys
            .insert("live".into(), keys(&[("cam", "k-config")]));
        let p = s.policy().unwrap();
        assert_eq!(p.publish_keys.apps["live"].keys_of["cam"].len(), 2);
        assert_eq!(p.play_keys.apps["live"].name_of["p-2"], "cam");
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
        let v = auth.check(&req(Action::Publish, "live", "k"), 0).await;
        assert!(
            matches!(v, Verdict::Deny(ref why) if why.contains("webhook failed")),
            "{v:?}"
        );
        assert!(auth.cache().is_empty());
    }
}
