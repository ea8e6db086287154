//! Whether an SRT caller gets in, decided in its handshake from what is
//! known then: its stream id, how many connections the listener and the
//! caller's address hold, the auth policy's answer where it needs no
//! webhook, and (to play) whether the stream is live. No I/O: the listener
//! gathers those and applies the decision.

use super::settings::Settings;
use super::streamid::{self, Mode, StreamId, StreamIdError};
use crate::auth::Verdict;

/// Connections held when a caller arrives.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub total: usize,
    pub from_address: usize,
}

/// What the handshake answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept {
        request: StreamId,
        passphrase: Option<String>,
    },
    Reject {
        /// The SRT reject reason the caller sees.
        reason: i32,
        /// For the log line.
        why: Refusal,
    },
}

/// Why a caller was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadStreamId(StreamIdError),
    ListenerFull(usize),
    AddressFull(usize),
    /// The auth policy said no (its reason, for the log only).
    Unauthorised(String),
    NotLive,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadStreamId(e) => write!(f, "bad stream id: {e}"),
            Refusal::ListenerFull(n) => write!(f, "the SRT listener holds {n} connections"),
            Refusal::AddressFull(n) => {
                write!(f, "this address holds {n} SRT connections already")
            }
            Refusal::Unauthorised(why) => write!(f, "unauthorised: {why}"),
            Refusal::NotLive => write!(f, "the stream is not live"),
        }
    }
}

/// Decides for a caller sending `stream_id`. `authorise` is the auth
/// policy's answer if it has one without a webhook (`None`: accept now and
/// ask the webhook after); `is_live` tells whether a stream
/// (`app/name`) is being published.
pub fn decide(
    settings: &Settings,
    stream_id: &str,
    load: Load,
    authorise: impl FnOnce(&StreamId) -> Option<Verdict>,
    is_live: impl FnOnce(&str) -> bool,
) -> Decision {
    let reject = |reason, why| Decision::Reject { reason, why };
    let request = match streamid::parse(stream_id) {
        Ok(r) => r,
        Err(e) => return reject(e.reject_reason(), Refusal::BadStreamId(e)),
    };
    if load.total >= settings.max_connections {
        return reject(streamid::REJECT_OVERLOAD, Refusal::ListenerFull(load.total));
    }
    if load.from_address >= settings.max_connections_per_ip {
        return reject(
            streamid::REJECT_OVERLOAD,
            Refusal::AddressFull(load.from_address),
        );
    }
    let mut public_name = request.name.clone();
    match authorise(&request) {
        Some(Verdict::Deny(why)) => {
            return reject(streamid::REJECT_UNAUTHORIZED, Refusal::Unauthorised(why))
        }
        Some(Verdict::Allow(grant)) => {
            if let Some(name) = grant.name {
                public_name = name;
            }
        }
        None => {}
    }
    let stream = format!("{}/{}", request.app, public_name);
    if request.mode == Mode::Request && !is_live(&stream) {
        return reject(streamid::REJECT_NOT_FOUND, Refusal::NotLive);
    }
    Decision::Accept {
        passphrase: settings.passphrase_for(&stream).map(str::to_string),
        request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grant;

    fn settings() -> Settings {
        crate::config::Config::load_with_env(None, std::iter::empty())
            .unwrap()
            .srt
    }

    fn allow(_: &StreamId) -> Option<Verdict> {
        Some(Verdict::Allow(Grant::default()))
    }

    fn reason(d: &Decision) -> Option<i32> {
        match d {
            Decision::Reject { reason, .. } => Some(*reason),
            Decision::Accept { .. } => None,
        }
    }

    #[test]
    fn publishers_and_players_get_in() {
        let s = settings();
        let d = decide(&s, "#!::r=live/a,m=publish", Load::default(), allow, |_| {
            false
        });
        assert!(
            matches!(
                d,
                Decision::Accept {
                    passphrase: None,
                    ..
                }
            ),
            "{d:?}"
        );
        let d = decide(&s, "read:live/a", Load::default(), allow, |k| k == "live/a");
        assert!(matches!(d, Decision::Accept { .. }), "{d:?}");
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let mut s = settings();
        s.max_connections = 2;
        s.max_connections_per_ip = 1;
        let bad = decide(&s, "#!::m=publish", Load::default(), allow, |_| true);
        assert_eq!(reason(&bad), Some(1400));
        let full = Load {
            total: 2,
            from_address: 0,
        };
        assert_eq!(
            reason(&decide(&s, "live/a", full, allow, |_| true)),
            Some(1402)
        );
        let busy_address = Load {
            total: 1,
            from_address: 1,
        };
        assert_eq!(
            reason(&decide(&s, "live/a", busy_address, allow, |_| true)),
            Some(1402)
        );
        let deny = |_: &StreamId| Some(Verdict::Deny("no such key".into()));
        let d = decide(&s, "live/a", Load::default(), deny, |_| true);
        assert_eq!(reason(&d), Some(1401));
        let d = decide(&s, "read:live/a", Load::default(), allow, |_| false);
        assert_eq!(reason(&d), Some(1404));
    }

    #[test]
    fn passphrases_follow_the_public_name() {
        let mut s = settings();
        s.passphrase = "global-passphrase".into();
        s.passphrases
            .insert("live/cam1".into(), "cam1-passphrase".into());
        let pass = |d: Decision| match d {
            Decision::Accept { passphrase, .. } => passphrase,
            d => panic!("{d:?}"),
        };
        let renamed = |_: &StreamId| {
            Some(Verdict::Allow(Grant {
                name: Some("cam1".into()),
                ..Grant::default()
            }))
        };
        assert_eq!(
            pass(decide(&s, "live/SECRET", Load::default(), renamed, |_| {
                true
            }))
            .as_deref(),
            Some("cam1-passphrase")
        );
        assert_eq!(
            pass(decide(&s, "live/other", Load::default(), allow, |_| true)).as_deref(),
            Some("global-passphrase")
        );
        // A webhook decides later: the passphrase is the name's as sent.
        assert_eq!(
            pass(decide(&s, "live/cam1", Load::default(), |_| None, |_| true)).as_deref(),
            Some("cam1-passphrase")
        );
    }
}
