//! CMAF packaging: the fMP4 writer, the per-stream segmenter with its
//! sliding window, and the manifests (HLS and DASH) rendered from one model.

pub mod cmaf;
pub mod model;
pub mod segmenter;
