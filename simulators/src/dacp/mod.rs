//! DACP (Digital Audio Control Protocol): remote controls (the iOS Remote app, pyatv) driving a
//! library (iTunes, an Apple TV) over HTTP with DMAP bodies.
//!
//! - [`pairing`]: the pairing code, the library calling a remote's `/pair`, and reading the
//!   remote's answer;
//! - [`remote`]: a fake remote control serving `/pair`, its answer faults ordinary faults;
//! - [`server`]: the library's DACP/DMAP server, as a [`crate::protocol_core::ProtocolCore`] (its
//!   `/ctrl-int` commands in `ctrl`, its settings in [`config`]);
//! - [`state`]: the now-playing state, scripted over time and changed by commands.

pub mod config;
mod ctrl;
pub mod pairing;
pub mod records;
pub mod remote;
pub mod server;
pub mod state;

pub use server::{DacpConfig, DacpCore};
pub use state::{NowPlaying, PlayState, Player};
