//! Tokio I/O only: the TCP connection loop and UDP ports every device shares. No protocol logic.

pub mod dns_sd;
pub mod mdns;
pub mod recorder;
pub mod revision;
pub mod tcp;
pub mod udp;

pub use recorder::Recorder;
pub use tcp::{bind, spawn, ShellConfig};
