//! HMAC-signed, expiring HLS/DASH URLs.
//!
//! A signature grants one stream until a time: `sig = hex(HMAC-SHA256(
//! secret, "APP/KEY:EXP"))`, sent as `?exp=EXP&sig=SIG` (EXP in Unix
//! seconds). Because it names the stream, not the file, the one query a
//! player got for a playlist also opens every segment: playlists and MPDs
//! answered under a valid signature carry it on to the URLs they list.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signed URL is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("missing exp or sig")]
    Missing,
    #[error("bad exp")]
    BadExp,
    #[error("expired")]
    Expired,
    #[error("bad signature")]
    BadSignature,
}

/// The signature of `key` (`app/name`) until `exp`.
pub fn sign(secret: &str, key: &str, exp: u64) -> String {
    crate::webhooks::hex(&mac(secret, key, exp).finalize().into_bytes())
}

fn mac(secret: &str, key: &str, exp: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(key.as_bytes());
    mac.update(b":");
    mac.update(exp.to_string().as_bytes());
    mac
}

/// `exp=…&sig=…` for `key`, valid until `exp`.
pub fn query(secret: &str, key: &str, exp: u64) -> String {
    format!("exp={exp}&sig={}", sign(secret, key, exp))
}

/// Checks the `exp` and `sig` parameters of `query` for `key` at `now`
/// (Unix seconds); the comparison is constant-time. Returns the
/// `exp=…&sig=…` to carry on in playlists.
pub fn verify(secret: &str, key: &str, query: Option<&str>, now: u64) -> Result<String, SigError> {
    let (mut exp, mut sig) = (None, None);
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("exp", v)) => exp = Some(v),
            Some(("sig", v)) => sig = Some(v),
            _ => {}
        }
    }
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return Err(SigError::Missing);
    };
    let exp_n: u64 = exp.parse().map_err(|_| SigError::BadExp)?;
    let raw = unhex(sig).ok_or(SigError::BadSignature)?;
    mac(secret, key, exp_n)
        .verify_slice(&raw)
        .map_err(|_| SigError::BadSignature)?;
    if now > exp_n {
        return Err(SigError::Expired);
    }
    Ok(format!("exp={exp_n}&sig={sig}"))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Appends `q` to every URL an HLS playlist lists: URI lines and `URI="…"`
/// attributes.
pub fn sign_playlist(text: &str, q: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        if !line.starts_with('#') {
            out.push_str(&with_query(line, q));
        } else {
            out.push_str(&sign_attr(line, "URI=\"", q));
        }
        out.push('\n');
    }
    out
}

/// Appends `q` to the `media`, `initialization` and `BaseURL` URLs of a
/// DASH MPD.
pub fn sign_mpd(text: &str, q: &str) -> String {
    let t = sign_attr(text, "media=\"", q);
    sign_attr(&t, "initialization=\"", q)
}

fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

/// Adds `q` to every `attr…"` value in `text`; `&` is written `&amp;` in
/// XML (the MPD) and as is in playlists.
fn sign_attr(text: &str, attr: &str, q: &str) -> String {
    let xml = attr != "URI=\"";
    let q = if xml {
        q.replace('&', "&amp;")
    } else {
        q.into()
    };
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(i) = rest.find(attr) {
        let start = i + attr.len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let Some(end) = rest.find('"') else {
            break;
        };
        let url = &rest[..end];
        out.push_str(url);
        out.push(if url.contains('?') { '&' } else { '?' });
        if xml && url.contains('?') {
            out.pop();
            out.push_str("&amp;");
        }
        out.push_str(&q);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Fuzz target body (`signed_url`): a query, a 0 byte, then a playlist or
/// MPD. Verification never panics, an accepted query verifies again as
/// what it returned, a query castgate signs verifies, and signing a
/// playlist keeps its lines.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (query, doc) = text.split_once('\0').unwrap_or((&text, ""));
    let (secret, key) = ("fuzz", "live/k");
    if let Ok(q) = verify(secret, key, Some(query), 1000) {
        assert_eq!(verify(secret, key, Some(&q), 1000), Ok(q.clone()));
    }
    let exp = data
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let q = super::signed::query(secret, key, exp);
    assert_eq!(verify(secret, key, Some(&q), exp), Ok(q.clone()));
    let signed = sign_playlist(doc, &q);
    assert_eq!(signed.lines().count(), doc.lines().count(), "{doc:?}");
    for (a, b) in doc.lines().zip(signed.lines()) {
        // A line's own trailing CR reads as part of the CRLF once the
        // signed line gets its LF.
        let a = a.strip_suffix('\r').unwrap_or(a);
        assert!(
            b.starts_with(a.split("URI=\"").next().unwrap_or("")),
            "{a:?} -> {b:?}"
        );
    }
    let _ = sign_mpd(doc, &q);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // Python: hmac.new(b"secret", b"live/cam:1700000000", sha256).hexdigest()
        assert_eq!(
            sign("secret", "live/cam", 1_700_000_000),
            "59d1966bfff4cc525da2a5978e0f99226bf52eba3255f886694a3653ba7e3b29"
        );
    }

    #[test]
    fn valid_expired_tampered() {
        let q = query("s", "live/cam", 1000);
        assert_eq!(verify("s", "live/cam", Some(&q), 999), Ok(q.clone()));
        assert_eq!(verify("s", "live/cam", Some(&q), 1000), Ok(q.clone()));
        assert_eq!(
            verify("s", "live/cam", Some(&q), 1001),
            Err(SigError::Expired)
        );
        assert_eq!(
            verify("s", "live/other", Some(&q), 999),
            Err(SigError::BadSignature)
        );
        let later = q.replace("exp=1000", "exp=2000");
        assert_eq!(
            verify("s", "live/cam", Some(&later), 999),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify("t", "live/cam", Some(&q), 999),
            Err(SigError::BadSignature)
        );
        assert_eq!(verify("s", "live/cam", None, 1), Err(SigError::Missing));
        assert_eq!(
            verify("s", "live/cam", Some("exp=x&sig=00"), 1),
            Err(SigError::BadExp)
        );
    }

    #[test]
    fn playlists_carry_the_signature() {
        let p = "#EXTM3U\n#EXT-X-MAP:URI=\"video/init-1.mp4\"\n#EXTINF:2.0,\nvideo/seg-1.m4s\n\n";
        let s = sign_playlist(p, "exp=1&sig=ab");
        assert_eq!(
            s,
            "#EXTM3U\n#EXT-X-MAP:URI=\"video/init-1.mp4?exp=1&sig=ab\"\n#EXTINF:2.0,\nvideo/seg-1.m4s?exp=1&sig=ab\n\n"
        );
        let m = r#"<SegmentTemplate media="video/seg-$Number$.m4s" initialization="video/init-1.mp4"/>"#;
        assert_eq!(
            sign_mpd(m, "exp=1&sig=ab"),
            r#"<SegmentTemplate media="video/seg-$Number$.m4s?exp=1&amp;sig=ab" initialization="video/init-1.mp4?exp=1&amp;sig=ab"/>"#
        );
    }
}
