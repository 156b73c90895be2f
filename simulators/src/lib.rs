//! airtwin's simulated devices.
//!
//! Each protocol is a sans-IO core (`raop`, …) driven through the [`service::Service`] contract by
//! the sans-IO [`connection::Connection`], which frames requests and applies the fault seam
//! ([`fault`]); the tokio shell (`shell`) only moves its bytes and keeps its timers, and everything
//! that happens is recorded as [`event::Event`]s.
//!
//! The shell is the default `shell` feature: without it (`--no-default-features`) the crate builds
//! without tokio, so no core can reach a socket or a timer.

pub mod airplay;
pub mod connection;
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
