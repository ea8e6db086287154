//! What every config section shares: the error that names a key, the
//! answer to a reload, and serde helpers. Each module owns its section (a
//! `Settings` type next to the code it configures); `config` only composes
//! them. A leaf module: it imports no other part of castgate.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A setting that does not check, named by its key (`rtmp.chunk_size`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{key}`: {why}")]
pub struct Invalid {
    pub key: String,
    pub why: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, why: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            why: why.into(),
        }
    }
}

/// `Err(Invalid)` for `key` unless `ok`.
pub fn check(ok: bool, key: &str, why: &str) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(key, why))
    }
}

/// What a reload did with a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Every change is in effect (or there was none).
    Applied,
    /// These keys (`section.key`) changed and apply after a restart.
    NeedsRestart(Vec<String>),
}

/// One config section (a TOML table) owned by a module.
pub trait Section: Serialize {
    /// The table's name, e.g. `rtmp`.
    const NAME: &'static str;
    /// The keys a reload applies without a restart; any other key that
    /// changes needs one.
    const LIVE: &'static [&'static str];

    /// Checks the values on their own (cross-section rules are `config`'s).
    fn validate(&self) -> Result<(), Invalid>;

    /// The answer to a reload from `self` to `new`: every changed key that
    /// is not in [`Section::LIVE`] needs a restart.
    fn reload(&self, new: &Self) -> Reload {
        let restart: Vec<String> = changed_keys(self, new)
            .into_iter()
            .filter(|k| !Self::LIVE.contains(&k.as_str()))
            .map(|k| format!("{}.{k}", Self::NAME))
            .collect();
        if restart.is_empty() {
            Reload::Applied
        } else {
            Reload::NeedsRestart(restart)
        }
    }
}

/// The top-level keys of a section, as written in TOML.
pub fn keys<T: Serialize + ?Sized>(section: &T) -> Vec<String> {
    match serde_json::to_value(section) {
        Ok(serde_json::Value::Object(m)) => {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort();
            keys
        }
        _ => Vec::new(),
    }
}

/// The top-level keys whose values differ between `old` and `new`.
pub fn changed_keys<T: Serialize + ?Sized>(old: &T, new: &T) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let mut changed: Vec<String> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.sort();
    changed
}

/// `*_secs` keys: a number of seconds (fractions allowed) read straight
/// into a [`Duration`]; use with `#[serde(with = "secs")]`.
pub mod secs {
    use super::*;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = f64::deserialize(d)?;
        Duration::try_from_secs_f64(s).map_err(|_| {
            serde::de::Error::custom(format!(
                "{s} is not a number of seconds (0 or more, finite)"
            ))
        })
    }

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// `*_ms` keys: whole milliseconds read into a [`Duration`].
pub mod millis {
    use super::*;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Whether `d` is within `[lo, hi]` seconds.
pub fn secs_within(d: Duration, lo: f64, hi: f64) -> bool {
    (lo..=hi).contains(&d.as_secs_f64())
}

/// A list, or one string of comma-separated items (as environment
/// variables give them); use with `#[serde(deserialize_with = ...)]`.
pub fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The embedded defaults as a tree, so that tests can build a
    /// section's `Settings` on its own.
    pub(crate) fn defaults() -> serde_json::Value {
        config::Config::builder()
            .add_source(config::File::from_str(
                include_str!("defaults.toml"),
                config::FileFormat::Toml,
            ))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the embedded defaults parse")
    }

    /// One section of the embedded defaults.
    pub(crate) fn default_section<T: serde::de::DeserializeOwned>(name: &str) -> T {
        T::deserialize(defaults()[name].clone()).expect("the embedded defaults deserialize")
    }

    #[derive(Serialize, Deserialize)]
    struct S {
        #[serde(with = "secs")]
        wait_secs: Duration,
        listen: String,
        size: u32,
    }

    impl Section for S {
        const NAME: &'static str = "s";
        const LIVE: &'static [&'static str] = &["wait_secs"];
        fn validate(&self) -> Result<(), Invalid> {
            check(self.size > 0, "s.size", "must be at least 1")
        }
    }

    fn s(wait: f64, listen: &str, size: u32) -> S {
        S {
            wait_secs: Duration::from_secs_f64(wait),
            listen: listen.into(),
            size,
        }
    }

    #[test]
    fn reload_names_changed_keys_that_are_not_live() {
        let a = s(1.0, "a", 1);
        assert_eq!(a.reload(&s(1.0, "a", 1)), Reload::Applied);
        assert_eq!(a.reload(&s(2.5, "a", 1)), Reload::Applied);
        assert_eq!(
            a.reload(&s(2.5, "b", 2)),
            Reload::NeedsRestart(vec!["s.listen".into(), "s.size".into()])
        );
        assert_eq!(keys(&a), ["listen", "size", "wait_secs"]);
    }

    #[test]
    fn seconds_read_into_durations() {
        let v: S = serde_json::from_str(r#"{"wait_secs": 0.25, "listen": "", "size": 0}"#).unwrap();
        assert_eq!(v.wait_secs, Duration::from_millis(250));
        let e = serde_json::from_str::<S>(r#"{"wait_secs": -1.0, "listen": "", "size": 0}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a number of seconds"), "{e}");
        assert_eq!(
            v.validate().unwrap_err().to_string(),
            "invalid setting `s.size`: must be at least 1"
        );
    }
}
