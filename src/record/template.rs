//! Recording file names: the `path` template of a `[[record]]` entry,
//! checked once when the config is read and filled per file.
//!
//! A template is a relative path of `/`-separated segments made of
//! `[A-Za-z0-9-_.]` and the placeholders `{app}`, `{key}`, `{date}` and
//! `{time}`; no segment is empty, `.` or `..`, and it cannot start with
//! `/`. What fills it is made safe the same way: the stream key (the
//! stream's public name, never a publisher's secret key) keeps its `/`
//! segments as directories and has every other character outside
//! `[A-Za-z0-9-_.]` replaced by `_`, and a segment starting with `.` gets
//! a `_` in front, so no filled template leaves the record directory or
//! names a hidden file.

use std::time::SystemTime;

/// A checked path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate(String);

/// The default `path`.
pub const DEFAULT: &str = "{app}/{key}/{date}-{time}";

const PLACEHOLDERS: [&str; 4] = ["{app}", "{key}", "{date}", "{time}"];

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

impl PathTemplate {
    /// Checks a template as written in the config; the error is the reason.
    pub fn parse(s: &str) -> Result<PathTemplate, String> {
        if s.is_empty() || s.len() > 512 {
            return Err("a path template is 1 to 512 characters".into());
        }
        if s.starts_with('/') {
            return Err(format!(
                "path {s:?} is absolute: it is relative to recorder.dir"
            ));
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(format!("path {s:?} has an empty, `.` or `..` segment"));
            }
            let mut rest = seg;
            while !rest.is_empty() {
                if let Some(p) = PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)) {
                    rest = &rest[p.len()..];
                } else if rest.as_bytes()[0] == b'{' {
                    return Err(format!(
                        "path {s:?} has an unknown placeholder (known: {{app}}, {{key}}, {{date}}, {{time}})"
                    ));
                } else if plain(rest.as_bytes()[0]) {
                    rest = &rest[1..];
                } else {
                    return Err(format!(
                        "path {s:?} has characters outside [A-Za-z0-9-_./] and the placeholders"
                    ));
                }
            }
        }
        Ok(PathTemplate(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file path (relative to the record directory, without the
    /// extension) for stream `key` (`APP/NAME`) at `now` (UTC).
    pub fn fill(&self, key: &str, now: SystemTime) -> String {
        let (app, name) = key.split_once('/').unwrap_or(("_", key));
        let stamp = crate::timefmt::rfc3339_millis(now);
        let date = &stamp[..10];
        let time = stamp[11..19].replace(':', "-");
        let filled = self
            .0
            .replace("{app}", &sanitise(app))
            .replace("{key}", &sanitise(name))
            .replace("{date}", date)
            .replace("{time}", &time);
        // A placeholder may have filled a segment with nothing or a dot
        // name (it cannot: sanitise never returns one), checked anyway.
        filled
            .split('/')
            .map(|seg| {
                if seg.is_empty() || seg.starts_with('.') {
                    format!("_{seg}")
                } else {
                    seg.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A stream key or application made safe for a file path: `/` kept as a
/// directory separator, other characters outside `[A-Za-z0-9-_.]` as `_`,
/// each segment non-empty and not starting with `.`.
pub fn sanitise(s: &str) -> String {
    s.split('/')
        .map(|seg| {
            let mut out: String = seg
                .chars()
                .map(|c| {
                    if c.is_ascii() && plain(c as u8) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if out.is_empty() || out.starts_with('.') {
                out.insert(0, '_');
            }
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    // 2026-12-06T21:18:37Z
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_591_917)
    }

    #[test]
    fn the_default_fills_app_key_date_and_time() {
        let t = PathTemplate::parse(DEFAULT).unwrap();
        assert_eq!(
            t.fill("live/cam", at()),
            format!(
                "live/cam/{}-{}",
                &crate::timefmt::rfc3339_millis(at())[..10],
                crate::timefmt::rfc3339_millis(at())[11..19].replace(':', "-")
            )
        );
        assert!(t.fill("live/cam", at()).starts_with("live/cam/20"));
        assert!(!t.fill("live/cam", at()).contains(':'));
    }

    #[test]
    fn keys_are_made_safe_for_a_file_system() {
        let t = PathTemplate::parse("rec/{app}-{key}").unwrap();
        assert_eq!(t.fill("live/a:b@c~d", at()), "rec/live-a_b_c_d");
        // A multi-segment name keeps its segments as directories, each
        // safe (StreamKey already refuses `.`/`..` segments; a leading dot
        // would make a hidden file).
        assert_eq!(t.fill("live/show/.hidden", at()), "rec/live-show/_.hidden");
        assert_eq!(sanitise("../x"), "_../x");
        assert_eq!(sanitise("a//b"), "a/_/b");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", "1 to 512"),
            ("/abs/{key}", "absolute"),
            ("{app}/../{key}", "`..`"),
            ("a//{key}", "empty"),
            ("./{key}", "`.`"),
            ("{app}/{stream}", "unknown placeholder"),
            ("{app}/{key", "unknown placeholder"),
            ("{app}/k y", "characters outside"),
            ("{app}\\..\\x", "characters outside"),
        ] {
            let e = PathTemplate::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        for good in [
            DEFAULT,
            "{key}",
            "archive/{date}/{app}_{key}_{time}",
            "a.b-c_d/{key}",
        ] {
            PathTemplate::parse(good).unwrap();
        }
    }
}
