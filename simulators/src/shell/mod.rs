//! Tokio I/O only: the TCP and UDP socket loops every device shares, mDNS and DNS-SD, the recorder
//! and the revision watch. No protocol logic.

pub mod dns_sd;
pub mod mdns;
pub mod recorder;
pub mod revision;
pub mod tcp;
pub mod udp;

pub use recorder::Recorder;
pub use tcp::{bind, spawn, spawn_stream, Acceptor, ShellConfig};
