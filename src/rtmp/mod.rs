//! RTMP protocol core, sans-I/O: handshake, chunk stream, AMF, messages and
//! the server/client session state machines. No sockets, no tasks.

/// AMF lives in its own leaf module (`media` reads it too).
pub use crate::amf::{amf0, amf3};
pub mod chunk;
pub mod client;
pub mod enhanced;
pub mod handshake;
pub mod message;
pub mod rtmpe;
pub mod session;
pub mod status;
