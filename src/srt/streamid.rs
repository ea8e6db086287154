//! SRT stream ids: what a caller asks the listener for, in its handshake.
//!
//! SRT has no URL path: the caller's `streamid` option is all castgate
//! learns of the stream it wants. Users meet three spellings, and each is
//! read here:
//!
//! - the SRT access-control syntax (`srt/access_control.h`, "SRT Access
//!   Control"): `#!::r=live/cam1,m=publish,u=alice,s=abc`, comma-separated
//!   `key=value` pairs, `r` the resource, `m` the mode (`request`, the
//!   default, or `publish`), `u` a user and `s` a session id (both passed
//!   to the auth webhook), `t` the type (`stream` only), `h` a host
//!   (ignored); other keys are application-defined and ignored;
//! - MediaMTX's short form: `publish:live/cam1` and `read:live/cam1`;
//! - a bare `live/cam1`, which means publish (what an encoder with one
//!   text field for the stream id sends).
//!
//! The resource is `APP/NAME`, optionally with a query (`?key=…`) as in an
//! RTMP stream name: `APP` and `NAME` are checked as stream keys later (by
//! `StreamKey`), the query goes to the auth policy.

use std::fmt;

/// libsrt's limit on a stream id (`SRTO_STREAMID`).
pub const MAX_STREAM_ID: usize = 512;

/// What the caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send a stream (MPEG-TS) into castgate.
    Publish,
    /// Receive a stream (MPEG-TS) from castgate (`m=request`, `read:`).
    Request,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Publish => "publish",
            Mode::Request => "request",
        }
    }
}

/// A parsed stream id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamId {
    pub mode: Mode,
    /// The application: the resource up to its first `/`.
    pub app: String,
    /// The stream name after the application (may be a publish key).
    pub name: String,
    /// The resource's query, without its `?` (empty when none).
    pub query: String,
    /// `u=`: who the caller says it is.
    pub user: Option<String>,
    /// `s=`: the caller's session id.
    pub session: Option<String>,
}

/// Why a stream id is refused; each maps to an SRT reject reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamIdError {
    /// No stream id: castgate cannot know the stream.
    Empty,
    TooLong(usize),
    /// Not printable ASCII (a control character, or not UTF-8).
    NotText,
    /// `#!::` with no `r=`.
    NoResource,
    /// The resource is not `APP/NAME`.
    BadResource(String),
    /// `m=` other than `publish` and `request`.
    UnsupportedMode(String),
    /// `t=` other than `stream`.
    UnsupportedType(String),
    /// A pair without `=`, an empty key, or a key given twice.
    BadPair(String),
    /// The nested `#!:{…}` form, or a short form with more than `mode:path`.
    Unsupported(&'static str),
}

impl StreamIdError {
    /// The SRT reject reason sent to the caller (`srt/access_control.h`).
    pub fn reject_reason(&self) -> i32 {
        match self {
            StreamIdError::UnsupportedMode(_) => REJECT_BAD_MODE,
            StreamIdError::UnsupportedType(_) => REJECT_UNSUPPORTED_MEDIA,
            _ => REJECT_BAD_REQUEST,
        }
    }
}

/// SRT_REJX_BAD_REQUEST: a syntax error in the stream id.
pub const REJECT_BAD_REQUEST: i32 = 1400;
/// SRT_REJX_UNAUTHORIZED: the auth policy refused the caller.
pub const REJECT_UNAUTHORIZED: i32 = 1401;
/// SRT_REJX_OVERLOAD: too many connections (in all, or from the address).
pub const REJECT_OVERLOAD: i32 = 1402;
/// SRT_REJX_NOTFOUND: the stream to play is not live.
pub const REJECT_NOT_FOUND: i32 = 1404;
/// SRT_REJX_BAD_MODE: `m=` names a mode castgate does not serve.
pub const REJECT_BAD_MODE: i32 = 1405;
/// SRT_REJX_CONFLICT: the stream is being published by someone else.
pub const REJECT_CONFLICT: i32 = 1409;
/// SRT_REJX_NOTSUP_MEDIA: `t=` names a type other than `stream`.
pub const REJECT_UNSUPPORTED_MEDIA: i32 = 1415;

impl fmt::Display for StreamIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamIdError::Empty => write!(
                f,
                "no stream id: set streamid to #!::r=APP/NAME,m=publish (or request)"
            ),
            StreamIdError::TooLong(n) => {
                write!(f, "stream id of {n} bytes (at most {MAX_STREAM_ID})")
            }
            StreamIdError::NotText => write!(f, "the stream id is not printable text"),
            StreamIdError::NoResource => write!(f, "the stream id has no r= (resource)"),
            StreamIdError::BadResource(r) => {
                write!(f, "resource {r:?} is not APP/NAME")
            }
            StreamIdError::UnsupportedMode(m) => {
                write!(f, "mode m={m} (castgate takes publish and request)")
            }
            StreamIdError::UnsupportedType(t) => {
                write!(f, "type t={t} (castgate takes stream)")
            }
            StreamIdError::BadPair(p) => write!(f, "malformed key=value pair {p:?}"),
            StreamIdError::Unsupported(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for StreamIdError {}

/// Reads a stream id in any of the three forms (see the module docs).
pub fn parse(id: &str) -> Result<StreamId, StreamIdError> {
    if id.len() > MAX_STREAM_ID {
        return Err(StreamIdError::TooLong(id.len()));
    }
    if id.is_empty() {
        return Err(StreamIdError::Empty);
    }
    if !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(StreamIdError::NotText);
    }
    if let Some(pairs) = id.strip_prefix("#!::") {
        return access_control(pairs);
    }
    if id.starts_with("#!") {
        return Err(StreamIdError::Unsupported(
            "only the #!:: form of the access-control syntax is taken",
        ));
    }
    let short = match id.split_once(':') {
        Some(("publish", rest)) => Some((Mode::Publish, rest)),
        Some(("read", rest)) => Some((Mode::Request, rest)),
        // A colon elsewhere is part of a bare resource (and refused there
        // if the stream key rules say so).
        _ => None,
    };
    match short {
        // MediaMTX's `publish:path:user:pass` has no place for a user here.
        Some((_, rest)) if rest.contains(':') => Err(StreamIdError::Unsupported(
            "publish:/read: take a path only (put a key in its query: ?key=...)",
        )),
        Some((mode, rest)) => stream_id(mode, rest, None, None),
        None => stream_id(Mode::Publish, id, None, None),
    }
}

/// `#!::k=v,k=v`.
fn access_control(pairs: &str) -> Result<StreamId, StreamIdError> {
    let (mut resource, mut mode, mut user, mut session) = (None, None, None, None);
    let mut seen: Vec<&str> = Vec::new();
    for pair in pairs.split(',') {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(StreamIdError::BadPair(pair.to_string()));
        };
        if key.is_empty() || seen.contains(&key) {
            return Err(StreamIdError::BadPair(pair.to_string()));
        }
        seen.push(key);
        match key {
            "r" => resource = Some(value),
            "m" => {
                mode = Some(match value {
                    "publish" => Mode::Publish,
                    "request" => Mode::Request,
                    other => return Err(StreamIdError::UnsupportedMode(other.to_string())),
                })
            }
            "u" => user = Some(value.to_string()),
            "s" => session = Some(value.to_string()),
            "t" if value != "stream" => {
                return Err(StreamIdError::UnsupportedType(value.to_string()))
            }
            // `t=stream`, `h=` (a virtual host: castgate has one) and
            // application-defined keys.
            _ => {}
        }
    }
    let resource = resource.ok_or(StreamIdError::NoResource)?;
    // The spec's default mode is request.
    stream_id(mode.unwrap_or(Mode::Request), resource, user, session)
}

fn stream_id(
    mode: Mode,
    resource: &str,
    user: Option<String>,
    session: Option<String>,
) -> Result<StreamId, StreamIdError> {
    let (path, query) = resource.split_once('?').unwrap_or((resource, ""));
    let bad = || StreamIdError::BadResource(resource.to_string());
    let (app, name) = path.split_once('/').ok_or_else(bad)?;
    if app.is_empty() || name.is_empty() {
        return Err(bad());
    }
    Ok(StreamId {
        mode,
        app: app.to_string(),
        name: name.to_string(),
        query: query.to_string(),
        user,
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> StreamId {
        parse(id).unwrap_or_else(|e| panic!("{id:?}: {e}"))
    }

    #[test]
    fn the_three_forms() {
        let s = ok("#!::r=live/cam1,m=publish,u=alice,s=abc");
        assert_eq!(s.mode, Mode::Publish);
        assert_eq!((s.app.as_str(), s.name.as_str()), ("live", "cam1"));
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.session.as_deref(), Some("abc"));
        assert_eq!(ok("#!::m=request,r=live/cam1").mode, Mode::Request);
        // The access-control syntax defaults to request.
        assert_eq!(ok("#!::r=live/cam1").mode, Mode::Request);
        assert_eq!(ok("publish:live/cam1").mode, Mode::Publish);
        let r = ok("read:live/cam1");
        assert_eq!((r.mode, r.name.as_str()), (Mode::Request, "cam1"));
        let bare = ok("live/cam1");
        assert_eq!((bare.mode, bare.app.as_str()), (Mode::Publish, "live"));
    }

    #[test]
    fn queries_and_extra_keys() {
        let s = ok("#!::r=live/cam1?key=secret,m=publish,t=stream,h=example.org,x=1");
        assert_eq!(s.query, "key=secret");
        assert_eq!(s.name, "cam1");
        assert_eq!(ok("publish:live/cam1?key=k").query, "key=k");
        // A nested name is the stream key's business.
        assert_eq!(ok("live/a/b").name, "a/b");
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        let cases: &[(&str, i32)] = &[
            ("", REJECT_BAD_REQUEST),
            ("#!::", REJECT_BAD_REQUEST),
            ("#!::m=publish", REJECT_BAD_REQUEST),
            ("#!::r=live/x,m=bidirectional", REJECT_BAD_MODE),
            ("#!::r=live/x,t=file", REJECT_UNSUPPORTED_MEDIA),
            ("#!::r=live/x,r=live/y", REJECT_BAD_REQUEST),
            ("#!::r=live/x,,m=publish", REJECT_BAD_REQUEST),
            ("#!::=x,r=live/x", REJECT_BAD_REQUEST),
            ("#!:{r=live/x}", REJECT_BAD_REQUEST),
            ("live", REJECT_BAD_REQUEST),
            ("/x", REJECT_BAD_REQUEST),
            ("live/", REJECT_BAD_REQUEST),
            ("publish:live", REJECT_BAD_REQUEST),
            ("publish:live/x:user:pass", REJECT_BAD_REQUEST),
            ("live/x\n", REJECT_BAD_REQUEST),
        ];
        for (id, reason) in cases {
            let e = parse(id).expect_err(id);
            assert_eq!(e.reject_reason(), *reason, "{id:?}: {e}");
            assert!(!e.to_string().is_empty());
        }
        let long = format!("live/{}", "x".repeat(MAX_STREAM_ID));
        assert_eq!(parse(&long), Err(StreamIdError::TooLong(long.len())));
    }
}
