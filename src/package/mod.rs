//! CMAF packaging: the fMP4 writer, the per-stream segmenter with its
//! sliding window, the packaging service that runs it per stream, and the
//! manifests (HLS and DASH) rendered from one model, and the URL layout
//! both the manifests and the HTTP routes use.

pub mod cmaf;
#[cfg(test)]
mod codec_tests;
pub mod dash;
pub mod dvr;
pub mod hls;
pub mod labels;
#[cfg(test)]
mod ll_tests;
pub mod memory;
pub mod model;
pub mod segmenter;
pub mod serve;
pub mod service;
mod settings;
pub mod urls;

pub use settings::Settings;
