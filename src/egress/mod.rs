//! Relays: re-publishing live streams to RTMP, RTMPS and SRT destinations.

pub mod target;
pub mod ts;
