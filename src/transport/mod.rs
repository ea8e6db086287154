//! Listeners that hand a byte stream to a connection driver. They know
//! nothing of RTMP; they own accepting, connection limits and socket options.

pub mod budget;
pub mod http;
pub mod per_ip;
pub mod pool;
pub mod rtmpt;
pub mod settings;
pub mod tcp;
pub mod tls;

pub use settings::{HttpSettings, HttpsSettings, RtmpsSettings, TlsFiles};
