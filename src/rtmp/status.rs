//! The NetConnection / NetStream status codes castgate sends and reads, in
//! `onStatus` and `_result` info objects, with their level.
//!
//! Codes and levels are Adobe's (`NetStatusEvent.info`); BadConnection and
//! Unauthorized are the error codes FMS-compatible servers send for a busy
//! stream and a refused publish.

/// The `level` field of an info object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Status,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Status => "status",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    /// Reads a peer's `level` field; `None` for anything else.
    pub fn parse(s: &str) -> Option<Level> {
        [Level::Status, Level::Warning, Level::Error]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// Defines [`NetStatus`] from one table, so code, level and description
/// cannot drift apart.
macro_rules! net_status {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $level:ident, $description:literal;)*) => {
        /// A status code, as the `code` field of an info object.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum NetStatus {
            $($(#[$doc])* $variant,)*
        }

        impl NetStatus {
            /// Every code, in table order.
            pub const ALL: &'static [NetStatus] = &[$(NetStatus::$variant,)*];

            /// The code string sent on the wire.
            pub fn code(self) -> &'static str {
                match self {
                    $(NetStatus::$variant => $code,)*
                }
            }

            /// The level this code is sent at.
            pub fn level(self) -> Level {
                match self {
                    $(NetStatus::$variant => Level::$level,)*
                }
            }

            /// A description for when the sender has nothing more specific.
            pub fn description(self) -> &'static str {
                match self {
                    $(NetStatus::$variant => $description,)*
                }
            }
        }
    };
}

net_status! {
    ConnectSuccess = "NetConnection.Connect.Success", Status, "Connection succeeded.";
    PublishStart = "NetStream.Publish.Start", Status, "Publishing started.";
    /// The name is invalid or already published (or the publisher was replaced).
    PublishBadName = "NetStream.Publish.BadName", Error, "The stream name is invalid or in use.";
    /// The NetStream or connection cannot publish now.
    PublishBadConnection = "NetStream.Publish.BadConnection", Error, "The stream is busy.";
    PublishUnauthorized = "NetStream.Publish.Unauthorized", Error, "Not authorised to publish this stream.";
    /// The server cannot take a publish now (the cluster store is unreachable).
    PublishFailed = "NetStream.Publish.Failed", Error, "Publishing failed.";
    PublishIdle = "NetStream.Publish.Idle", Status, "The publisher has been idle for too long.";
    UnpublishSuccess = "NetStream.Unpublish.Success", Status, "Publishing stopped.";
    PlayStart = "NetStream.Play.Start", Status, "Playing started.";
    PlayReset = "NetStream.Play.Reset", Status, "The playlist was reset.";
    PlayStop = "NetStream.Play.Stop", Status, "Playing stopped.";
    PlayFailed = "NetStream.Play.Failed", Error, "Playing failed.";
    PlayStreamNotFound = "NetStream.Play.StreamNotFound", Error, "The stream was not found.";
    /// To a player: the stream's publisher started.
    PlayPublishNotify = "NetStream.Play.PublishNotify", Status, "The stream is published.";
    /// To a player: the stream's publisher stopped.
    PlayUnpublishNotify = "NetStream.Play.UnpublishNotify", Status, "The stream is unpublished.";
    /// On demand: the server sent the whole of a recorded stream (sent
    /// with `onPlayStatus`, a data message, as FMS does).
    PlayComplete = "NetStream.Play.Complete", Status, "Playing completed.";
    /// On demand: a `seek` was done; media from the new position follow.
    SeekNotify = "NetStream.Seek.Notify", Status, "Seeking.";
    /// A `seek` on a stream that cannot seek (a live one).
    SeekFailed = "NetStream.Seek.Failed", Error, "The stream cannot seek.";
    /// On demand: `pause` (no media until unpaused).
    PauseNotify = "NetStream.Pause.Notify", Status, "Paused.";
    /// On demand: unpaused; media resume where they stopped.
    UnpauseNotify = "NetStream.Unpause.Notify", Status, "Unpaused.";
}

impl NetStatus {
    /// Reads a peer's `code` field; `None` for a code castgate does not know.
    pub fn parse(code: &str) -> Option<NetStatus> {
        NetStatus::ALL.iter().copied().find(|s| s.code() == code)
    }
}

impl std::fmt::Display for NetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::{Level, NetStatus};

    /// Every code and level against the strings the protocol uses.
    #[test]
    fn codes_and_levels_are_the_spec_strings() {
        use Level::*;
        use NetStatus::*;
        let spec = [
            (ConnectSuccess, "NetConnection.Connect.Success", Status),
            (PublishStart, "NetStream.Publish.Start", Status),
            (PublishBadName, "NetStream.Publish.BadName", Error),
            (
                PublishBadConnection,
                "NetStream.Publish.BadConnection",
                Error,
            ),
            (PublishUnauthorized, "NetStream.Publish.Unauthorized", Error),
            (PublishFailed, "NetStream.Publish.Failed", Error),
            (PublishIdle, "NetStream.Publish.Idle", Status),
            (UnpublishSuccess, "NetStream.Unpublish.Success", Status),
            (PlayStart, "NetStream.Play.Start", Status),
            (PlayReset, "NetStream.Play.Reset", Status),
            (PlayStop, "NetStream.Play.Stop", Status),
            (PlayFailed, "NetStream.Play.Failed", Error),
            (PlayStreamNotFound, "NetStream.Play.StreamNotFound", Error),
            (PlayPublishNotify, "NetStream.Play.PublishNotify", Status),
            (
                PlayUnpublishNotify,
                "NetStream.Play.UnpublishNotify",
                Status,
            ),
            (PlayComplete, "NetStream.Play.Complete", Status),
            (SeekNotify, "NetStream.Seek.Notify", Status),
            (SeekFailed, "NetStream.Seek.Failed", Error),
            (PauseNotify, "NetStream.Pause.Notify", Status),
            (UnpauseNotify, "NetStream.Unpause.Notify", Status),
        ];
        let got: Vec<_> = NetStatus::ALL
            .iter()
            .map(|s| (*s, s.code(), s.level()))
            .collect();
        assert_eq!(got, spec);
        for (s, code, _) in spec {
            assert_eq!(s.to_string(), code);
            assert!(!s.description().is_empty(), "{code}");
        }
    }

    #[test]
    fn parse_round_trips() {
        for s in NetStatus::ALL {
            assert_eq!(NetStatus::parse(s.code()), Some(*s));
        }
        assert_eq!(NetStatus::parse("NetStream.Play.InsufficientBW"), None);
        assert_eq!(NetStatus::parse("netstream.publish.start"), None);
        assert_eq!(NetStatus::parse(""), None);
        for l in [Level::Status, Level::Warning, Level::Error] {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert_eq!(Level::parse("Error"), None);
    }
}
