//! castgate: an RTMP ingest gateway.
//!
//! Protocol cores (`rtmp`, `media`) are sans-I/O; `transport` owns
//! listeners; `server` runs sessions over byte streams and connects them to
//! the `hub`, which fans each live stream out to its consumers.

pub mod amf;
pub mod api;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod console;
pub mod edge;
pub mod egress;
pub mod egress_policy;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod lifecycle;
pub mod limits;
pub mod locks;
pub mod media;
pub mod metrics;
pub mod package;
pub mod record;
pub mod rtmfp;
pub mod rtmp;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod sources;
pub mod srt;
pub mod stream_key;
pub mod streams;
pub mod text;
pub mod timefmt;
pub mod transcode;
pub mod transport;
pub mod viewers;
pub mod vod;
pub mod webhooks;

pub use app::{run, run_from};
