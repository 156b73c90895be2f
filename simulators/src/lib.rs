//! airtwin's simulated devices.
//!
//! Each protocol is a sans-IO core (`raop`, …) driven by the shared tokio shell (`shell`) through
//! the [`service::Service`] contract; faults are applied at one seam ([`fault`]) between the two,
//! and everything that happens is recorded as [`event::Event`]s.
//!
//! The shell is the default `shell` feature: without it (`--no-default-features`) the crate builds
//! without tokio, so no core can reach a socket or a timer.

pub mod airplay;
pub mod dacp;
pub mod discovery;
pub mod event;
pub mod fault;
pub mod raop;
pub mod service;
#[cfg(feature = "shell")]
pub mod shell;
pub mod wire;

#[cfg(test)]
mod testkit;
