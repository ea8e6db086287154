//! RTMP protocol core, sans-I/O: handshake, chunk stream, AMF, messages and
//! the server/client session state machines. No sockets, no tasks.

pub mod amf;
pub mod amf0;
pub mod amf3;
pub mod chunk;
pub mod client;
pub mod enhanced;
pub mod handshake;
pub mod message;
pub mod session;
pub mod status;
