//! Media types, FLV tags both ways and codec parameter parsing. Knows
//! nothing of the network: everything here is a pure function of bytes.

pub mod aac;
pub mod ac3;
pub mod av1;
pub mod avc;
mod bits;
pub mod color_info;
mod event;
pub mod flac;
pub mod flv;
pub mod flv_file;
pub mod frame;
pub mod hevc;
pub mod mkv;
pub mod mp4;
pub mod mpeg_audio;
pub mod opus;
pub mod timeline;
pub mod ts;
pub mod vp9;

pub use event::{Metadata, StreamEvent, TrackId};
pub use frame::*;
