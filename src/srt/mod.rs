//! SRT in and out: castgate's SRT listener (`[srt]`, UDP 8890 by default).
//!
//! A caller's stream id ([`streamid`]) says what it wants: to publish
//! MPEG-TS into a stream (`m=publish`), or to receive a live stream as
//! MPEG-TS (`m=request`). Publishing is an ordinary publish through the
//! stream registry, so every output castgate has (HLS, DASH, RTMP play,
//! relays, transcode) works for it; the TS is read by `media::ts`.
//! Receiving is a hub subscriber whose events go through the relays'
//! MPEG-TS muxer and SRT link (`egress::srt`), with the hub's bounded queue
//! and drop policy.
//!
//! Callers are admitted in SRT's handshake ([`admission`]): a malformed
//! stream id, a full listener or address, and a refusal by the auth policy
//! (keys; a webhook is asked once the caller is accepted) are answered with
//! an SRT reject reason the caller sees, and logged naming the peer. The
//! passphrase (global or per stream) is set per caller there too.
//!
//! `listener` is the I/O: libsrt's blocking calls on threads of their own
//! (`transport::libsrt`), the rest on tokio tasks.

pub mod admission;
mod listener;
mod settings;
pub mod streamid;

pub(crate) use listener::{receive_ts, PublishEnd, ReceiveLimits};
pub use listener::{start, Deps, SrtListener, SrtSession, SrtSessions};
pub use settings::Settings;
