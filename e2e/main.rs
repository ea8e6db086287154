//! End-to-end tests: castgate against real ffmpeg publishers and players,
//! and hostile clients on raw sockets. Run with `cargo test --test e2e`.

mod access;
mod browser;
mod cli;
mod codecs;
mod console;
mod corpus;
mod docker;
mod docker_run;
mod egress;
mod enhanced;
mod enhanced_cmaf;
mod faults;
mod harness;
mod hls_dash;
mod latency;
mod librtmp;
mod limits;
mod ll;
mod load;
mod malformed;
mod multitrack;
mod netns;
mod ops;
mod raw;
mod record;
mod relay;
mod rtmp_play;
mod rtmpe;
mod sources;
mod srt;
mod srt_in;
mod tls_rtmpt;
mod transcode;
mod viewers;
mod vod_http;
