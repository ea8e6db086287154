//! [`StreamKey`]: a stream's name, `APP/NAME`, checked once where it enters
//! (an RTMP publish or play, an HTTP path, an API call, a config pattern)
//! and carried as a type from there, so every module agrees on what a name
//! may hold and how it splits. A leaf module: it imports nothing of castgate.

use std::fmt;

/// The longest key, in bytes.
pub const MAX_LEN: usize = 256;

/// A checked stream key: `APP/NAME`, where the application is one path
/// segment and the name may have several (`live/show/720p`).
///
/// Every segment is non-empty and not `.` or `..`, and only
/// `[A-Za-z0-9-_./~@+=:]` appear, so a key is safe in a URL path, a file
/// name and a log line as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(String);

/// Why a name is not a stream key (the text is sent to clients as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the application name has a '/': it is one path segment \
         (rtmp://HOST/APP/NAME, where NAME may have '/')"
    )]
    AppHasSlash,
    #[error("stream name too long")]
    TooLong,
    #[error("stream name has an empty or dot path segment")]
    BadSegment,
    #[error("stream name has characters outside [A-Za-z0-9-_./~@+=:]")]
    BadCharacter,
}

impl StreamKey {
    /// The key of application `app` and stream name `name`.
    ///
    /// An application `a/b` with name `k` is refused rather than becoming
    /// `a` + `b/k`, the same stream under another application's policy
    /// (ffmpeg sends `rtmp://HOST/a/b/k` as app `a/b`: use
    /// `-rtmp_app a -rtmp_playpath b/k`).
    pub fn new(app: &str, name: &str) -> Result<StreamKey, KeyError> {
        if app.contains('/') {
            return Err(KeyError::AppHasSlash);
        }
        Self::parse(&format!("{app}/{name}"))
    }

    /// A whole key, `APP/NAME` (from a URL path or the API).
    pub fn parse(key: &str) -> Result<StreamKey, KeyError> {
        if key.len() > MAX_LEN {
            return Err(KeyError::TooLong);
        }
        // At least two segments: an application and a name.
        if !key.contains('/')
            || key
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(KeyError::BadSegment);
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./~@+=:".contains(&b))
        {
            return Err(KeyError::BadCharacter);
        }
        Ok(StreamKey(key.to_string()))
    }

    /// The key of rendition `name` of this stream (`APP/NAME/RENDITION`).
    pub fn rendition(&self, name: &str) -> Result<StreamKey, KeyError> {
        Self::parse(&format!("{}/{name}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The application: the first segment.
    pub fn app(&self) -> &str {
        self.0.split_once('/').map_or("", |(app, _)| app)
    }

    /// The name within the application (may hold `/`).
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, name)| name)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for StreamKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StreamKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StreamKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<StreamKey> for String {
    fn from(k: StreamKey) -> String {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_one_way() {
        let k = StreamKey::new("live", "abc").unwrap();
        assert_eq!((k.as_str(), k.app(), k.name()), ("live/abc", "live", "abc"));
        let k = StreamKey::new("a", "b/k").unwrap();
        assert_eq!((k.app(), k.name()), ("a", "b/k"));
        assert_eq!(StreamKey::new("a/b", "k"), Err(KeyError::AppHasSlash));
        assert_eq!(StreamKey::new("live/a", "b"), Err(KeyError::AppHasSlash));
        assert_eq!(
            StreamKey::parse("a/b/k").unwrap(),
            StreamKey::new("a", "b/k").unwrap()
        );
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert_eq!(StreamKey::new("live", "../x"), Err(KeyError::BadSegment));
        assert_eq!(StreamKey::new("live", "./x"), Err(KeyError::BadSegment));
        assert_eq!(StreamKey::new("live", "a//b"), Err(KeyError::BadSegment));
        assert_eq!(StreamKey::new("live", ""), Err(KeyError::BadSegment));
        assert_eq!(StreamKey::new("", "x"), Err(KeyError::BadSegment));
        assert_eq!(StreamKey::parse("live"), Err(KeyError::BadSegment));
        assert_eq!(StreamKey::new("live", "a b"), Err(KeyError::BadCharacter));
        assert_eq!(StreamKey::new("live", "a?b"), Err(KeyError::BadCharacter));
        assert_eq!(StreamKey::new("live", "é"), Err(KeyError::BadCharacter));
        let long = "x".repeat(MAX_LEN);
        assert_eq!(StreamKey::new("live", &long), Err(KeyError::TooLong));
        let fits = "x".repeat(MAX_LEN - "live/".len());
        assert!(StreamKey::new("live", &fits).is_ok());
    }

    #[test]
    fn renditions_are_keys_below_their_stream() {
        let k = StreamKey::new("live", "show").unwrap();
        assert_eq!(k.rendition("720p").unwrap().as_str(), "live/show/720p");
        assert_eq!(k.rendition(".."), Err(KeyError::BadSegment));
    }
}
