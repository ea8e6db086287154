//! Relay destinations: parsing and checking target URLs, redacting their
//! secrets for logs and API replies, stream patterns and target templates
//! for static relays.
//!
//! - `rtmp://host[:port]/app/key`, `rtmps://…`, `rtmpe://…` and `rtmfp://…`
//!   (ports 1935, 443, 1935 and 1935 (UDP) by default; RTMPE is obfuscation
//!   for servers that want it, not security). The first path segment is the application, everything after
//!   it (slashes and a `?query` included) the stream key, as platforms issue
//!   them and as ffmpeg and OBS split them.
//! - `srt://host:port?streamid=…&passphrase=…&latency=…` (caller) and
//!   `srt://[host]:port?mode=listener` (castgate listens, a receiver calls
//!   in). `latency` is in milliseconds, as in libsrt and srt-live-transmit
//!   (ffmpeg's is in microseconds); `pbkeylen` is 16, 24 or 32. Query values
//!   may be percent-encoded (a `#!::` stream id usually is).
//!
//! Everything here is hostile input (the API takes URLs from the network):
//! lengths are bounded before anything is built, and errors say what is
//! wrong without echoing secrets.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Longest target URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest SRT stream id (libsrt's limit).
pub const MAX_STREAM_ID_LEN: usize = 512;
/// What redacted parts of a URL are replaced with.
pub const REDACTED: &str = "***";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("target URL has spaces or control characters")]
    BadCharacters,
    #[error("not a URL (expected scheme://…)")]
    NotUrl,
    #[error("unknown scheme {0:?}: expected rtmp, rtmps, rtmpe or srt")]
    UnknownScheme(String),
    #[error("bad host or port: {0}")]
    BadAuthority(String),
    #[error("user credentials in the host part are not supported; RTMP servers take them in the stream key or its query")]
    UserInfo,
    #[error("no application in the path (expected {0}://host/app/key)")]
    NoApp(&'static str),
    #[error("no stream key after the application (expected {0}://host/app/key)")]
    NoStreamKey(&'static str),
    #[error("an SRT target has no path (expected srt://host:port?streamid=…)")]
    SrtPath,
    #[error("bad SRT option: {0}")]
    SrtOption(String),
    #[error("bad target template: {0}")]
    Template(String),
}

/// A parsed destination.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    Rtmp(RtmpTarget),
    Srt(SrtTarget),
}

#[derive(Clone, PartialEq, Eq)]
pub struct RtmpTarget {
    pub tls: bool,
    /// `rtmpe://`: the RTMPE handshake, then RC4 both ways.
    pub rtmpe: bool,
    /// `rtmfp://`: RTMP's messages over an RTMFP session (UDP).
    pub rtmfp: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL (what tcUrl carries).
    pub authority: String,
    pub app: String,
    /// The stream key: everything after the application, query included.
    pub key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtMode {
    /// castgate calls the receiver.
    Caller,
    /// castgate listens; the receiver calls in.
    Listener,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SrtTarget {
    pub mode: SrtMode,
    /// Caller: the host to call. Listener: the address to bind (empty: any).
    pub host: String,
    pub port: u16,
    pub stream_id: Option<String>,
    pub passphrase: Option<String>,
    /// AES key length in bytes: 16, 24 or 32.
    pub key_len: u16,
    pub latency: Duration,
}

impl fmt::Debug for RtmpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Target::Rtmp(self.clone()).redacted())
    }
}

impl fmt::Debug for SrtTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Target::Srt(self.clone()).redacted())
    }
}

/// Debug output is the redacted URL: a target never reaches a log whole.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        if url.len() > MAX_URL_LEN {
            return Err(TargetError::TooLong);
        }
        if url.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(TargetError::BadCharacters);
        }
        let (scheme, rest) = url.split_once("://").ok_or(TargetError::NotUrl)?;
        match scheme.to_ascii_lowercase().as_str() {
            "rtmp" => parse_rtmp("rtmp", rest),
            "rtmps" => parse_rtmp("rtmps", rest),
            "rtmpe" => parse_rtmp("rtmpe", rest),
            "rtmfp" => parse_rtmp("rtmfp", rest),
            "srt" => parse_srt(rest),
            _ => Err(TargetError::UnknownScheme(truncate(scheme, 32))),
        }
    }

    /// `rtmp`, `rtmps`, `rtmpe` or `srt`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Target::Rtmp(r) => r.scheme(),
            Target::Srt(_) => "srt",
        }
    }

    /// `msg` with this target's secrets replaced by `***` (a server may
    /// quote the stream key back in an error).
    pub fn scrub(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        let secrets: Vec<&str> = match self {
            Target::Rtmp(r) => vec![r.key.as_str(), r.key.split('?').next().unwrap_or("")],
            Target::Srt(s) => s
                .stream_id
                .iter()
                .chain(&s.passphrase)
                .map(String::as_str)
                .collect(),
        };
        for s in secrets {
            if s.len() >= 3 {
                out = out.replace(s, REDACTED);
            }
        }
        out
    }

    /// The URL with its secrets replaced by `***`: the RTMP stream key (and
    /// its query), the SRT stream id and passphrase.
    pub fn redacted(&self) -> String {
        match self {
            Target::Rtmp(r) => format!("{}://{}/{}/{REDACTED}", self.scheme(), r.authority, r.app),
            Target::Srt(s) => {
                let host = if s.host.contains(':') {
                    format!("[{}]", s.host)
                } else {
                    s.host.clone()
                };
                let mut q = Vec::new();
                if s.mode == SrtMode::Listener {
                    q.push("mode=listener".to_string());
                }
                if s.stream_id.is_some() {
                    q.push(format!("streamid={REDACTED}"));
                }
                if s.passphrase.is_some() {
                    q.push(format!("passphrase={REDACTED}"));
                    q.push(format!("pbkeylen={}", s.key_len));
                }
                q.push(format!("latency={}", s.latency.as_millis()));
                format!("srt://{host}:{}?{}", s.port, q.join("&"))
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Splits `host[:port]` (IPv6 in brackets).
fn split_authority(authority: &str) -> Result<(String, Option<u16>), TargetError> {
    let bad = |why: &str| TargetError::BadAuthority(why.to_string());
    if authority.contains('@') {
        return Err(TargetError::UserInfo);
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address in brackets"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
        };
        (ip.to_string(), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if !host.is_empty()
        && !host.contains(':')
        && (host.len() > 253
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    {
        return Err(bad("the host name has characters outside [A-Za-z0-9.-_]"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(bad("the port is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

impl RtmpTarget {
    /// `rtmp`, `rtmps`, `rtmpe` or `rtmfp`.
    pub fn scheme(&self) -> &'static str {
        match (self.tls, self.rtmpe, self.rtmfp) {
            (true, _, _) => "rtmps",
            (false, true, _) => "rtmpe",
            (false, false, true) => "rtmfp",
            (false, false, false) => "rtmp",
        }
    }
}

fn parse_rtmp(scheme: &'static str, rest: &str) -> Result<Target, TargetError> {
    let tls = scheme == "rtmps";
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_authority(authority)?;
    if host.is_empty() {
        return Err(TargetError::BadAuthority("no host".into()));
    }
    let (app, key) = path.split_once('/').unwrap_or((path, ""));
    if app.is_empty() || app.contains('?') {
        return Err(TargetError::NoApp(scheme));
    }
    if key.is_empty() || key.starts_with('?') {
        return Err(TargetError::NoStreamKey(scheme));
    }
    Ok(Target::Rtmp(RtmpTarget {
        tls,
        rtmpe: scheme == "rtmpe",
        rtmfp: scheme == "rtmfp",
        host,
        port: port.unwrap_or(if tls { 443 } else { 1935 }),
        authority: authority.to_string(),
        app: app.to_string(),
        key: key.to_string(),
    }))
}

fn parse_srt(rest: &str) -> Result<Target, TargetError> {
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains('/') {
        return Err(TargetError::SrtPath);
    }
    let (host, port) = split_authority(authority)?;
    let port =
        port.ok_or_else(|| TargetError::BadAuthority("an SRT target needs a port".into()))?;
    let opt = |why: String| TargetError::SrtOption(why);
    let mut t = SrtTarget {
        mode: SrtMode::Caller,
        host,
        port,
        stream_id: None,
        passphrase: None,
        key_len: 16,
        latency: Duration::from_millis(120),
    };
    let mut key_len = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| opt(format!("{k}: bad percent-encoding")))?;
        match k {
            "mode" => {
                t.mode = match v.as_str() {
                    "caller" | "client" => SrtMode::Caller,
                    "listener" | "server" => SrtMode::Listener,
                    _ => return Err(opt("mode must be caller or listener".into())),
                }
            }
            "streamid" => {
                if v.is_empty() || v.len() > MAX_STREAM_ID_LEN {
                    return Err(opt(format!(
                        "streamid must be 1 to {MAX_STREAM_ID_LEN} bytes"
                    )));
                }
                t.stream_id = Some(v);
            }
            "passphrase" => {
                if !(10..=79).contains(&v.len()) {
                    return Err(opt("passphrase must be 10 to 79 characters".into()));
                }
                t.passphrase = Some(v);
            }
            "pbkeylen" => match v.parse::<u16>() {
                Ok(n @ (16 | 24 | 32)) => key_len = Some(n),
                _ => return Err(opt("pbkeylen must be 16, 24 or 32".into())),
            },
            "latency" => match v.parse::<u64>() {
                Ok(ms) if ms <= 60_000 => t.latency = Duration::from_millis(ms),
                _ => return Err(opt("latency must be milliseconds from 0 to 60000".into())),
            },
            other => {
                return Err(opt(format!(
                    "unknown option {:?} (known: mode, streamid, passphrase, pbkeylen, latency)",
                    truncate(other, 32)
                )))
            }
        }
    }
    if key_len.is_some() && t.passphrase.is_none() {
        return Err(opt("pbkeylen without a passphrase".into()));
    }
    t.key_len = key_len.unwrap_or(16);
    match t.mode {
        SrtMode::Caller if t.host.is_empty() => {
            return Err(TargetError::BadAuthority(
                "an SRT caller needs a host to call (or add mode=listener)".into(),
            ))
        }
        SrtMode::Listener if !t.host.is_empty() && t.host.parse::<IpAddr>().is_err() => {
            return Err(TargetError::BadAuthority(
                "an SRT listener binds an IP address (or none: srt://:PORT?mode=listener)".into(),
            ))
        }
        _ => {}
    }
    Ok(Target::Srt(t))
}

impl SrtTarget {
    /// The local address a listener binds.
    pub fn bind_addr(&self) -> SocketAddr {
        let ip = self
            .host
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        SocketAddr::new(ip, self.port)
    }
}

/// Decodes `%XX` escapes (and `+` as a space, as form encoding does). `None`
/// on a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A stream pattern for static relays: a stream key in which `*` matches
/// any run of characters (slashes too), e.g. `live/*` or `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPattern(String);

impl StreamPattern {
    pub fn parse(s: &str) -> Result<StreamPattern, String> {
        if s.is_empty() || s.len() > 256 {
            return Err("a stream pattern is 1 to 256 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./~@+=:*".contains(&b))
        {
            return Err(format!(
                "stream pattern {s:?} has characters outside [A-Za-z0-9-_./~@+=:*]"
            ));
        }
        if s != "*" && !s.contains('/') {
            return Err(format!(
                "stream pattern {s:?} names no application (expected app/key, app/* or *)"
            ));
        }
        Ok(StreamPattern(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Glob match with `*` only (iterative, linear in practice).
    pub fn matches(&self, key: &str) -> bool {
        let (p, k) = (self.0.as_bytes(), key.as_bytes());
        let (mut pi, mut ki) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ki < k.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ki));
                pi += 1;
            } else if pi < p.len() && p[pi] == k[ki] {
                pi += 1;
                ki += 1;
            } else if let Some((sp, sk)) = star {
                pi = sp + 1;
                ki = sk + 1;
                star = Some((sp, sk + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

/// A target URL with placeholders filled per stream: `{app}` (the first
/// segment of the stream key), `{key}` (the rest) and `{stream}` (all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetTemplate(String);

impl TargetTemplate {
    /// Checks the template: known placeholders only, and a valid target
    /// once filled with a sample stream.
    pub fn parse(s: &str) -> Result<TargetTemplate, TargetError> {
        let t = TargetTemplate(s.to_string());
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| TargetError::Template("unclosed {".into()))?;
            match &rest[open + 1..open + close] {
                "app" | "key" | "stream" => {}
                other => {
                    return Err(TargetError::Template(format!(
                        "unknown placeholder {{{}}} (known: {{app}}, {{key}}, {{stream}})",
                        truncate(other, 32)
                    )))
                }
            }
            rest = &rest[open + close + 1..];
        }
        t.fill("app/key")?;
        Ok(t)
    }

    pub fn fill(&self, stream: &str) -> Result<Target, TargetError> {
        let (app, key) = stream.split_once('/').unwrap_or((stream, ""));
        let url = self
            .0
            .replace("{stream}", stream)
            .replace("{app}", app)
            .replace("{key}", key);
        Target::parse(&url)
    }

    /// The template with the stream key placeholder kept and any literal
    /// secret redacted, for logs.
    pub fn redacted(&self) -> String {
        match Target::parse(&self.0) {
            Ok(t) => t.redacted(),
            Err(_) => match self.0.split_once("://") {
                Some((scheme, rest)) => {
                    format!("{scheme}://{}/…", rest.split('/').next().unwrap_or(""))
                }
                None => REDACTED.into(),
            },
        }
    }
}

/// Parses, redacts and fills arbitrary strings: the fuzz target's driver
/// (also run by a property test). Nothing may panic, and the redacted URL
/// of a valid target parses again to the same destination with the secrets
/// replaced (an SRT passphrase placeholder is too short to be one, so such
/// a URL is only checked for not holding it).
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(t) = Target::parse(&s) {
        let r = t.redacted();
        match (&t, Target::parse(&r)) {
            (Target::Srt(a), Ok(Target::Srt(b))) => {
                assert_eq!((a.mode, a.port, &a.host), (b.mode, b.port, &b.host));
                assert!(b.passphrase.is_none());
                assert!(b.stream_id.as_deref().is_none_or(|id| id == REDACTED));
            }
            (Target::Srt(a), Err(_)) => assert!(a.passphrase.is_some(), "{r:?}"),
            (Target::Rtmp(a), Ok(Target::Rtmp(b))) => {
                assert_eq!(
                    (a.tls, &a.host, a.port, &a.app),
                    (b.tls, &b.host, b.port, &b.app)
                );
                assert_eq!(b.key, REDACTED);
            }
            (_, other) => panic!("{r:?} parsed as {other:?}"),
        }
    }
    let _ = StreamPattern::parse(&s).map(|p| p.matches("live/some/key"));
    if let Ok(t) = TargetTemplate::parse(&s) {
        let _ = t.fill("a/b/c");
        let _ = t.redacted();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtmp(url: &str) -> RtmpTarget {
        match Target::parse(url) {
            Ok(Target::Rtmp(r)) => r,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn srt(url: &str) -> SrtTarget {
        match Target::parse(url) {
            Ok(Target::Srt(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn rtmp_urls_as_platforms_issue_them() {
        let r = rtmp("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop");
        assert_eq!(
            (r.host.as_str(), r.port, r.app.as_str()),
            ("a.rtmp.youtube.com", 1935, "live2")
        );
        assert_eq!(r.key, "abcd-efgh-ijkl-mnop");
        let r = rtmp("rtmps://live-api-s.facebook.com:443/rtmp/FB-123-0-Ab?s_bl=1&s_sc=2&a=x");
        assert!(r.tls);
        assert_eq!(r.port, 443);
        assert_eq!(r.authority, "live-api-s.facebook.com:443");
        assert_eq!(r.key, "FB-123-0-Ab?s_bl=1&s_sc=2&a=x");
        let r = rtmp("rtmps://x.example/app/a/b/c");
        assert_eq!((r.port, r.key.as_str()), (443, "a/b/c"));
        let r = rtmp("rtmp://[::1]:1936/live/k");
        assert_eq!((r.host.as_str(), r.port), ("::1", 1936));
        assert_eq!(
            Target::parse("RTMP://h/app/k").unwrap().scheme(),
            "rtmp",
            "schemes are case-insensitive"
        );
    }

    #[test]
    fn rtmfp_urls_are_rtmp_urls_over_udp() {
        let r = rtmp("rtmfp://127.0.0.1/live/secret-key");
        assert!(r.rtmfp && !r.tls && !r.rtmpe);
        assert_eq!(
            (r.scheme(), r.port, r.app.as_str()),
            ("rtmfp", 1935, "live")
        );
        let t = Target::parse("RTMFP://h:1936/app/k").unwrap();
        assert_eq!(t.redacted(), "rtmfp://h:1936/app/***");
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, want) in [
            ("http://h/app/k", "unknown scheme"),
            ("h/app/k", "not a URL"),
            ("rtmp://h/app", "no stream key"),
            ("rtmp://h/app/", "no stream key"),
            ("rtmp://h/app/?x=1", "no stream key"),
            ("rtmp://h", "no application"),
            ("rtmp:///app/k", "no host"),
            ("rtmp://h:0/app/k", "port"),
            ("rtmp://h:99999/app/k", "port"),
            ("rtmp://h:x/app/k", "port"),
            ("rtmp://u:p@h/app/k", "credentials"),
            ("rtmp://h$/app/k", "host name"),
            ("rtmp://[zz]/app/k", "IPv6"),
            ("rtmp://h/app/k k", "spaces"),
            ("srt://h", "needs a port"),
            ("srt://h:9000/path", "no path"),
            ("srt://:9000", "needs a host"),
            ("srt://h:9000?mode=listener", "binds an IP"),
            ("srt://h:9000?latency=-1", "latency"),
            ("srt://h:9000?passphrase=short", "passphrase"),
            ("srt://h:9000?pbkeylen=20&passphrase=0123456789", "pbkeylen"),
            ("srt://h:9000?pbkeylen=16", "without a passphrase"),
            ("srt://h:9000?lantecy=20", "unknown option"),
            ("srt://h:9000?streamid=%zz", "percent"),
            ("srt://h:9000?mode=rendezvous", "mode"),
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
        }
        let long = format!("rtmp://h/app/{}", "k".repeat(MAX_URL_LEN));
        assert_eq!(Target::parse(&long).unwrap_err(), TargetError::TooLong);
    }

    #[test]
    fn srt_options() {
        let s = srt("srt://127.0.0.1:9000?streamid=%23%21%3A%3Ar%3Dlive%2Fx%2Cm%3Dpublish&passphrase=0123456789abc&pbkeylen=32&latency=200");
        assert_eq!(s.mode, SrtMode::Caller);
        assert_eq!(s.stream_id.as_deref(), Some("#!::r=live/x,m=publish"));
        assert_eq!(s.passphrase.as_deref(), Some("0123456789abc"));
        assert_eq!((s.key_len, s.latency), (32, Duration::from_millis(200)));
        let s = srt("srt://:9001?mode=listener");
        assert_eq!(s.mode, SrtMode::Listener);
        assert_eq!(s.bind_addr(), "0.0.0.0:9001".parse().unwrap());
        let s = srt("srt://127.0.0.1:9001/?mode=listener");
        assert_eq!(s.bind_addr(), "127.0.0.1:9001".parse().unwrap());
        assert_eq!(s.latency, Duration::from_millis(120));
    }

    #[test]
    fn secrets_are_redacted() {
        let t = Target::parse("rtmps://live.example:443/app/SECRET-KEY?token=TOK").unwrap();
        assert_eq!(t.redacted(), "rtmps://live.example:443/app/***");
        assert_eq!(format!("{t:?}"), t.redacted());
        let t = Target::parse(
            "srt://10.0.0.1:9000?streamid=SECRETID&passphrase=SECRETPASS1&latency=50",
        )
        .unwrap();
        let r = t.redacted();
        assert_eq!(
            r,
            "srt://10.0.0.1:9000?streamid=***&passphrase=***&pbkeylen=16&latency=50"
        );
        assert!(!format!("{t:?}").contains("SECRET"));
        exercise(b"srt://10.0.0.1:9000?streamid=SECRETID&passphrase=SECRETPASS1&latency=50");
        let t = Target::parse("srt://[::1]:9000?mode=listener").unwrap();
        assert_eq!(t.redacted(), "srt://[::1]:9000?mode=listener&latency=120");
    }

    #[test]
    fn patterns() {
        let p = StreamPattern::parse("live/*").unwrap();
        assert!(p.matches("live/a"));
        assert!(p.matches("live/a/b"));
        assert!(!p.matches("other/a"));
        assert!(!p.matches("live"));
        let p = StreamPattern::parse("*").unwrap();
        assert!(p.matches("x/y"));
        let p = StreamPattern::parse("*/cam-*").unwrap();
        assert!(p.matches("live/cam-1"));
        assert!(!p.matches("live/cam"));
        assert!(StreamPattern::parse("live/a").unwrap().matches("live/a"));
        assert!(StreamPattern::parse("nokey").is_err());
        assert!(StreamPattern::parse("live/a b").is_err());
        assert!(StreamPattern::parse("").is_err());
        // Pathological patterns stay fast.
        let p = StreamPattern::parse(&format!("{}/b", "*a".repeat(60))).unwrap();
        assert!(!p.matches(&"a".repeat(250)));
    }

    #[test]
    fn templates() {
        let t = TargetTemplate::parse("rtmp://a.example/{app}/{key}").unwrap();
        let Target::Rtmp(r) = t.fill("live/cam/1").unwrap() else {
            panic!()
        };
        assert_eq!((r.app.as_str(), r.key.as_str()), ("live", "cam/1"));
        let t = TargetTemplate::parse("srt://h:9000?streamid={stream}").unwrap();
        let Target::Srt(s) = t.fill("live/x").unwrap() else {
            panic!()
        };
        assert_eq!(s.stream_id.as_deref(), Some("live/x"));
        assert!(TargetTemplate::parse("rtmp://h/app/{name}").is_err());
        assert!(TargetTemplate::parse("rtmp://h/app/{key").is_err());
        assert!(TargetTemplate::parse("ftp://h/{key}").is_err());
        assert_eq!(
            TargetTemplate::parse("rtmp://h/app/{key}")
                .unwrap()
                .redacted(),
            "rtmp://h/app/***"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "[ -~]{0,80}") {
            exercise(s.as_bytes());
            exercise(format!("srt://{s}").as_bytes());
            exercise(format!("rtmp://{s}").as_bytes());
        }
    }
}
