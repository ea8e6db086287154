//! Media types, FLV tag bodies and codec parameter parsing. Knows nothing of
//! the network: everything here is a pure function of bytes.

pub mod aac;
pub mod avc;
pub mod flv;
pub mod flv_file;
pub mod frame;
pub mod timeline;

pub use frame::*;
