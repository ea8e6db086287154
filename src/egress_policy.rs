//! Egress policy: which addresses castgate may connect to on someone else's
//! behalf (SSRF guard).
//!
//! Targets the operator wrote in the config file (`[[relays]]`, webhook
//! URLs, the auth webhook) are trusted. Targets that arrive from the network
//! (`POST /api/v1/relays`, relays granted by an auth-webhook answer) are
//! untrusted: their host is resolved, every address is checked, and only a
//! checked address is connected to. So host names, the numeric spellings
//! `getaddrinfo` accepts (`2130706433`, `0x7f000001`, `0177.0.0.1`,
//! `127.1`) and DNS rebinding all end at the same check.
//!
//! By default loopback, private (RFC 1918), link-local, unique-local,
//! unspecified, CGNAT, multicast and broadcast addresses (and their
//! IPv4-mapped IPv6 forms) and the cloud metadata names are refused;
//! `egress.allow` (CIDRs and host names) opens holes, `egress.deny` adds to
//! the list. The decision functions here do no I/O; [`EgressPolicy::resolve`]
//! is the connect-time check around them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// A network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let a = a
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(a);
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An `egress.allow` / `egress.deny` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    Net(Cidr),
    /// A host name, lower case without a trailing dot; `*.example.com`
    /// matches every name under example.com.
    Host(String),
}

impl Rule {
    pub fn parse(s: &str) -> Result<Rule, String> {
        let s = s.trim();
        if let Some(c) = Cidr::parse(s) {
            return Ok(Rule::Net(c));
        }
        let name = normalize_name(s);
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !ok || s.contains('/') {
            return Err(format!(
                "{s:?} is neither a CIDR (10.0.0.0/8, fd00::/8, 192.0.2.7) nor a host name (ingest.example.com, *.example.com)"
            ));
        }
        Ok(Rule::Host(name))
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Rule::Net(c) if c.contains(ip))
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            Rule::Host(h) => match h.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.ends_with('.')),
                None => h == name,
            },
            Rule::Net(_) => false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Net(c) => c.fmt(f),
            Rule::Host(h) => f.write_str(h),
        }
    }
}

/// Refused by default, with the reason shown.
const DEFAULT_DENY: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified / this network"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("169.254.0.0/16", "link-local / cloud metadata"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved / broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fc00::/7", "unique-local / cloud metadata"),
    ("ff00::/8", "multicast"),
    ("64:ff9b:1::/48", "local-use NAT64"),
];

/// Cloud metadata host names refused by default.
const DEFAULT_DENY_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why a target was refused. Shown to API clients and in logs; it names
/// the address or host, never a stream key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// What was refused (an address, `host:port`, or a host name).
    pub target: String,
    pub reason: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress policy refuses {}: {}", self.target, self.reason)
    }
}

/// One `egress.srt_listen` entry: an address and a port range castgate may
/// listen on for API-created SRT listener relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenRange {
    pub ip: IpAddr,
    pub ports: (u16, u16),
}

impl ListenRange {
    /// `0.0.0.0:9000-9100`, `[::]:9000`, `127.0.0.1:9000-9010`.
    pub fn parse(s: &str) -> Result<ListenRange, String> {
        let bad =
            || format!("{s:?} is not ADDRESS:PORT or ADDRESS:FIRST-LAST (e.g. 0.0.0.0:9000-9100)");
        let (host, ports) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip: IpAddr = host.parse().map_err(|_| bad())?;
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (a, b),
            None => (ports, ports),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if lo == 0 || hi < lo {
            return Err(bad());
        }
        Ok(ListenRange {
            ip,
            ports: (lo, hi),
        })
    }

    fn contains(&self, addr: SocketAddr) -> bool {
        self.ip == addr.ip() && (self.ports.0..=self.ports.1).contains(&addr.port())
    }
}

/// The one answer for any unusable API `tls_ca_file`: the same for a file
/// that is missing, unreadable, outside `egress.ca_dir` or not a PEM
/// certificate, so the API is no oracle for the server's files.
pub const CA_FILE_REFUSED: &str =
    "tls_ca_file refused: it must name a readable PEM CA file inside egress.ca_dir";

/// The policy, from `[egress]`.
#[derive(Debug, Default)]
pub struct EgressPolicy {
    allow: Vec<Rule>,
    /// `egress.deny`, on top of the defaults.
    deny: Vec<Rule>,
    srt_listen: Vec<ListenRange>,
    /// Where API relays may take `tls_ca_file` from (None: nowhere).
    ca_dir: Option<PathBuf>,
    /// castgate's own listening sockets (known once bound): a relay from the
    /// API into castgate itself is refused.
    own: RwLock<Vec<SocketAddr>>,
}

impl EgressPolicy {
    /// Checks and builds the policy; the error names the entry.
    pub fn new(
        allow: &[String],
        deny: &[String],
        srt_listen: &[String],
        ca_dir: &str,
    ) -> Result<EgressPolicy, String> {
        let rules = |key: &str, list: &[String]| {
            list.iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| Rule::parse(s).map_err(|e| format!("egress.{key}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let srt_listen = srt_listen
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| ListenRange::parse(s).map_err(|e| format!("egress.srt_listen: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EgressPolicy {
            allow: rules("allow", allow)?,
            deny: rules("deny", deny)?,
            srt_listen,
            ca_dir: (!ca_dir.is_empty()).then(|| PathBuf::from(ca_dir)),
            own: RwLock::default(),
        })
    }

    /// Allows everything (tests of code that is not about the policy).
    pub fn open() -> EgressPolicy {
        EgressPolicy::new(&["0.0.0.0/0".into(), "::/0".into()], &[], &[], "").unwrap_or_default()
    }

    /// Refuses everything untrusted (a policy that failed to build).
    pub fn closed() -> EgressPolicy {
        EgressPolicy::new(&[], &["0.0.0.0/0".into(), "::/0".into()], &[], "").unwrap_or_default()
    }

    /// Records castgate's own listening addresses (after binding).
    pub fn set_own_listeners(&self, addrs: Vec<SocketAddr>) {
        *crate::locks::write(&self.own) = addrs;
    }

    /// Whether the policy allows connecting to this address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        let ip = canonical(ip);
        if self.allow.iter().any(|r| r.matches_ip(ip)) {
            return Ok(());
        }
        let denied = |reason: String| {
            Err(Denied {
                target: ip.to_string(),
                reason,
            })
        };
        if let Some(r) = self.deny.iter().find(|r| r.matches_ip(ip)) {
            return denied(format!("in egress.deny ({r})"));
        }
        for (net, why) in DEFAULT_DENY {
            if Cidr::parse(net).is_some_and(|c| c.contains(ip)) {
                return denied(format!("{why} address (egress.allow opens it)"));
            }
        }
        Ok(())
    }

    /// Whether a host name (not an address) may be resolved at all.
    pub fn check_name(&self, host: &str) -> Result<(), Denied> {
        let name = normalize_name(host);
        if self.name_allowed(&name) {
            return Ok(());
        }
        let denied = |reason: String| {
            Err(Denied {
                target: name.clone(),
                reason,
            })
        };
        if let Some(r) = self.deny.iter().find(|r| r.matches_name(&name)) {
            return denied(format!("in egress.deny ({r})"));
        }
        if DEFAULT_DENY_NAMES.contains(&name.as_str()) {
            return denied("a cloud metadata host name (egress.allow opens it)".into());
        }
        Ok(())
    }

    /// An `egress.allow` host entry names this host: its addresses are
    /// allowed whatever they are (the operator vouched for the name).
    fn name_allowed(&self, name: &str) -> bool {
        self.allow.iter().any(|r| r.matches_name(name))
    }

    /// A relay of a stream into castgate itself under the same name (one of
    /// its own listeners, on a loopback, unspecified or the listener's own
    /// address) would take the stream over from its publisher. The callers
    /// ask only for targets that name the relay's own stream.
    pub fn check_not_self(&self, addr: SocketAddr) -> Result<(), Denied> {
        let ip = canonical(addr.ip());
        let own = crate::locks::read(&self.own);
        let hit = own.iter().any(|l| {
            l.port() == addr.port()
                && (ip.is_loopback() || ip.is_unspecified() || ip == canonical(l.ip()))
        });
        if hit {
            return Err(Denied {
                target: SocketAddr::new(ip, addr.port()).to_string(),
                reason: "castgate's own listener (a relay into castgate itself)".into(),
            });
        }
        Ok(())
    }

    /// Everything decidable without DNS, for refusing a target when it is
    /// created: a host that is an address (in any spelling `getaddrinfo`
    /// takes) or a denied name. `own_stream`: the target names the stream
    /// being relayed.
    pub fn check_literal(&self, host: &str, port: u16, own_stream: bool) -> Result<(), Denied> {
        match parse_numeric_host(host) {
            Some(ip) => {
                if own_stream {
                    self.check_not_self(SocketAddr::new(ip, port))?;
                }
                self.check_ip(ip)
            }
            None => self.check_name(host),
        }
    }

    /// Whether an API relay may listen on this address (`egress.srt_listen`).
    pub fn check_srt_listen(&self, bind: SocketAddr) -> Result<(), Denied> {
        if self.srt_listen.iter().any(|r| r.contains(bind)) {
            return Ok(());
        }
        Err(Denied {
            target: bind.to_string(),
            reason: "SRT listener relays from the API may only bind the addresses and ports in egress.srt_listen".into(),
        })
    }

    /// The CA file an API relay asked for, if `egress.ca_dir` holds it;
    /// [`CA_FILE_REFUSED`] for anything else, whatever the cause.
    pub fn ca_file(&self, path: &str) -> Result<PathBuf, &'static str> {
        let dir = self.ca_dir.as_deref().ok_or(CA_FILE_REFUSED)?;
        let dir = dir.canonicalize().map_err(|_| CA_FILE_REFUSED)?;
        let p = Path::new(path);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        let p = p.canonicalize().map_err(|_| CA_FILE_REFUSED)?;
        if !p.starts_with(&dir) || !p.is_file() {
            return Err(CA_FILE_REFUSED);
        }
        Ok(p)
    }

    /// The connect-time check: resolves `host`, checks every address, and
    /// returns only the allowed ones (refused if none is). Trusted targets
    /// (the operator's config) are resolved unchecked, except that none may
    /// send a stream into castgate under its own name (`own_stream`).
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        trusted: bool,
        own_stream: bool,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        if !trusted {
            self.check_name(host).map_err(ResolveError::Denied)?;
        }
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| ResolveError::Lookup(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        if trusted && !own_stream {
            return Ok(addrs);
        }
        let vouched =
            parse_numeric_host(host).is_none() && self.name_allowed(&normalize_name(host));
        let mut first_denial = None;
        let mut ok = Vec::new();
        for a in addrs {
            let a = SocketAddr::new(canonical(a.ip()), a.port());
            let own = if own_stream {
                self.check_not_self(a)
            } else {
                Ok(())
            };
            let verdict = own.and_then(|()| {
                if vouched || trusted {
                    Ok(())
                } else {
                    self.check_ip(a.ip())
                }
            });
            match verdict {
                Ok(()) => ok.push(a),
                Err(mut d) => {
                    if d.target != host {
                        d.target = format!("{host} ({})", d.target);
                    }
                    first_denial.get_or_insert(d);
                }
            }
        }
        match (ok.is_empty(), first_denial) {
            (false, _) => Ok(ok),
            (true, Some(d)) => Err(ResolveError::Denied(d)),
            (true, None) => Err(ResolveError::Lookup(format!("no address for {host}"))),
        }
    }
}

/// Why no address came out of [`EgressPolicy::resolve`].
#[derive(Debug, Clone)]
pub enum ResolveError {
    Denied(Denied),
    Lookup(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Denied(d) => d.fmt(f),
            ResolveError::Lookup(e) => f.write_str(e),
        }
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`)
/// addresses are judged as the IPv4 address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0; 6] && !matches!(u128::from(v6), 0 | 1) {
                return IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Whether `host` (a name, or an address in any spelling) is a cloud
/// metadata service: a metadata host name, link-local IPv4
/// (169.254.169.254 and its neighbours) or AWS's `fd00:ec2::254`.
pub fn is_metadata_host(host: &str) -> bool {
    match parse_numeric_host(host) {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => {
            v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
        None => DEFAULT_DENY_NAMES.contains(&normalize_name(host).as_str()),
    }
}

fn normalize_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// A host that is an address in any spelling `inet_aton` (so
/// `getaddrinfo`) accepts: `127.0.0.1`, `127.1`, `2130706433`,
/// `0x7f000001`, `0177.0.0.1`, and IPv6 (with or without brackets).
pub fn parse_numeric_host(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(v6) = h.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    inet_aton(h.strip_suffix('.').unwrap_or(h)).map(IpAddr::V4)
}

fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let nums = parts
        .iter()
        .map(|p| {
            let lower = p.to_ascii_lowercase();
            if let Some(hex) = lower.strip_prefix("0x") {
                if hex.is_empty() {
                    return Some(0);
                }
                u32::from_str_radix(hex, 16).ok()
            } else if lower.len() > 1 && lower.starts_with('0') {
                u32::from_str_radix(&lower[1..], 8).ok()
            } else if !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_digit()) {
                lower.parse::<u32>().ok()
            } else {
                None
            }
        })
        .collect::<Option<Vec<u32>>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if last_bits < 32 && *last >= 1u32 << last_bits {
        return None;
    }
    let mut v: u32 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(v | last))
}

/// `[egress]`: what API relays and auth-webhook grants may connect to.
/// Lists also take a comma-separated string (environment variables).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(deserialize_with = "crate::settings::string_or_list")]
    pub allow: Vec<String>,
    #[serde(deserialize_with = "crate::settings::string_or_list")]
    pub deny: Vec<String>,
    #[serde(deserialize_with = "crate::settings::string_or_list")]
    pub srt_listen: Vec<String>,
    pub ca_dir: String,
}

impl crate::settings::Section for Settings {
    const NAME: &'static str = "egress";
    /// The relay service holds the policy it was built with.
    const LIVE: &'static [&'static str] = &[];

    fn validate(&self) -> Result<(), crate::settings::Invalid> {
        self.policy()
            .map(|_| ())
            .map_err(|why| crate::settings::Invalid::new("egress", why))
    }
}

impl Settings {
    pub fn policy(&self) -> Result<EgressPolicy, String> {
        EgressPolicy::new(&self.allow, &self.deny, &self.srt_listen, &self.ca_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> EgressPolicy {
        EgressPolicy::new(&[], &[], &[], "").unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        parse_numeric_host(s).unwrap()
    }

    #[test]
    fn metadata_hosts_in_any_spelling() {
        for h in [
            "169.254.169.254",
            "2852039166",
            "0xa9fea9fe",
            "[fd00:ec2::254]",
            "::ffff:169.254.169.254",
            "Metadata.Google.Internal.",
        ] {
            assert!(is_metadata_host(h), "{h}");
        }
        for h in ["127.0.0.1", "10.0.0.1", "example.com", "[fd00::1]"] {
            assert!(!is_metadata_host(h), "{h}");
        }
    }

    #[test]
    fn numeric_spellings_are_the_address_getaddrinfo_reaches() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "127.0.0.1.",
        ] {
            assert_eq!(parse_numeric_host(s), Some(lo), "{s}");
        }
        assert_eq!(ip("0"), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(ip("[::1]"), IpAddr::V6(Ipv6Addr::LOCALHOST));
        for s in [
            "example.com",
            "256.1.1.1",
            "1.2.3.4.5",
            "08.1.1.1",
            "",
            "1..2",
            "127.256.1",
        ] {
            assert_eq!(parse_numeric_host(s), None, "{s}");
        }
    }

    #[test]
    fn default_policy_denies_internal_addresses_in_every_form() {
        let p = default();
        for host in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0.0.0.0",
            "0",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "[::1]",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "ff02::1",
        ] {
            let e = p.check_literal(host, 1935, false).expect_err(host);
            assert!(e.to_string().contains("egress policy refuses"), "{e}");
        }
        for host in [
            "metadata.google.internal",
            "METADATA.google.internal.",
            "metadata",
        ] {
            let e = p.check_literal(host, 80, false).expect_err(host);
            assert!(e.reason.contains("metadata"), "{e}");
        }
        for host in [
            "8.8.8.8",
            "203.0.113.5",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "a.rtmp.youtube.com",
            "live.example.com",
        ] {
            assert_eq!(p.check_literal(host, 1935, false), Ok(()), "{host}");
        }
    }

    #[test]
    fn allow_overrides_deny_and_deny_adds() {
        let p = EgressPolicy::new(
            &[
                "127.0.0.1/32".into(),
                "fd00::/8".into(),
                "*.corp.example".into(),
            ],
            &["203.0.113.0/24".into(), "evil.example".into()],
            &[],
            "",
        )
        .unwrap();
        assert_eq!(p.check_literal("127.0.0.1", 1, false), Ok(()));
        assert_eq!(p.check_literal("2130706433", 1, false), Ok(()));
        assert_eq!(p.check_literal("::ffff:127.0.0.1", 1, false), Ok(()));
        assert!(p.check_literal("127.0.0.2", 1, false).is_err());
        assert_eq!(p.check_literal("fd00:ec2::254", 1, false), Ok(()));
        assert!(p
            .check_literal("203.0.113.9", 1, false)
            .unwrap_err()
            .reason
            .contains("egress.deny"));
        assert!(p.check_literal("EVIL.example", 1, false).is_err());
        assert_eq!(p.check_name("ingest.corp.example"), Ok(()));
        assert!(p.name_allowed("a.b.corp.example"));
        assert!(!p.name_allowed("corp.example"));
        assert!(!p.name_allowed("xcorp.example"));
    }

    #[test]
    fn bad_entries_are_named() {
        let e = EgressPolicy::new(&["10.0.0.0/33".into()], &[], &[], "").unwrap_err();
        assert!(e.contains("egress.allow"), "{e}");
        let e = EgressPolicy::new(&[], &[], &["0.0.0.0:9100-9000".into()], "").unwrap_err();
        assert!(e.contains("egress.srt_listen"), "{e}");
    }

    #[test]
    fn own_stream_into_own_listeners_is_refused_even_when_allowed() {
        let p = EgressPolicy::open();
        p.set_own_listeners(vec![
            "0.0.0.0:1935".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        ]);
        for host in ["127.0.0.1", "127.1", "0.0.0.0", "::1", "::ffff:127.0.0.1"] {
            let e = p.check_literal(host, 1935, true).expect_err(host);
            assert!(e.reason.contains("own listener"), "{e}");
            // Another stream name on castgate itself is no takeover.
            assert_eq!(p.check_literal(host, 1935, false), Ok(()), "{host}");
        }
        assert!(p.check_literal("127.0.0.1", 8080, true).is_err());
        assert_eq!(p.check_literal("127.0.0.1", 1936, true), Ok(()));
        assert_eq!(p.check_literal("203.0.113.5", 1935, true), Ok(()));
    }

    #[test]
    fn srt_listen_ranges() {
        let p = EgressPolicy::new(
            &[],
            &[],
            &["0.0.0.0:9000-9100".into(), "[::1]:7000".into()],
            "",
        )
        .unwrap();
        assert_eq!(p.check_srt_listen("0.0.0.0:9050".parse().unwrap()), Ok(()));
        assert_eq!(p.check_srt_listen("[::1]:7000".parse().unwrap()), Ok(()));
        assert!(p.check_srt_listen("0.0.0.0:22".parse().unwrap()).is_err());
        assert!(p
            .check_srt_listen("127.0.0.1:9050".parse().unwrap())
            .is_err());
        assert!(default()
            .check_srt_listen("0.0.0.0:9999".parse().unwrap())
            .is_err());
    }

    #[test]
    fn ca_file_answers_alike_for_every_unusable_path() {
        let dir = std::env::temp_dir().join(format!("castgate-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "x").unwrap();
        let p = EgressPolicy::new(&[], &[], &[], dir.to_str().unwrap()).unwrap();
        assert_eq!(
            p.ca_file("ca.pem"),
            Ok(dir.canonicalize().unwrap().join("ca.pem"))
        );
        for bad in [
            "/etc/shadow",
            "/nonexistent",
            "../../etc/passwd",
            "missing.pem",
            "/etc/passwd",
        ] {
            assert_eq!(p.ca_file(bad), Err(CA_FILE_REFUSED), "{bad}");
        }
        assert_eq!(
            default().ca_file(dir.join("ca.pem").to_str().unwrap()),
            Err(CA_FILE_REFUSED)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn resolve_checks_every_address_at_connect_time() {
        let p = default();
        for host in [
            "localhost",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0.0.0.0",
        ] {
            match p.resolve(host, 1935, false, false).await {
                Err(ResolveError::Denied(d)) => {
                    assert!(d.to_string().contains("egress policy"), "{d}")
                }
                other => panic!("{host}: {other:?}"),
            }
        }
        // Trusted (operator-written) targets are not checked.
        assert_eq!(
            p.resolve("127.0.0.1", 1935, true, false).await.unwrap(),
            vec!["127.0.0.1:1935".parse::<SocketAddr>().unwrap()]
        );
        let allowed = EgressPolicy::new(&["127.0.0.1/32".into()], &[], &[], "").unwrap();
        assert_eq!(
            allowed.resolve("127.1", 9, false, false).await.unwrap(),
            vec!["127.0.0.1:9".parse::<SocketAddr>().unwrap()]
        );
        // Not even the operator may relay a stream into itself.
        allowed.set_own_listeners(vec!["127.0.0.1:9".parse().unwrap()]);
        assert!(matches!(
            allowed.resolve("localhost", 9, true, true).await,
            Err(ResolveError::Denied(_))
        ));
    }
}
