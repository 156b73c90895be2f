//! DACP (Digital Audio Control Protocol): remote controls (the iOS Remote app, pyatv) driving a
//! library (iTunes, an Apple TV) over HTTP with DMAP bodies.
//!
//! - [`pairing`]: the pairing code, the library calling a remote's `/pair`, and reading the
//!   remote's answer;
//! - [`remote`]: a fake remote control serving `/pair`, its answer faults ordinary faults;
//! - [`server`]: the library's DACP/DMAP server, as a [`crate::service::Service`] (its
//!   `/ctrl-int` commands in `ctrl`, its settings in [`config`]);
//! - [`state`]: the now-playing state, scripted over time and changed by commands.

pub mod config;
mod ctrl;
pub mod discovery;
pub mod pairing;
pub mod remote;
pub mod server;
pub mod state;

pub use server::{DacpConfig, DacpService};
pub use state::{NowPlaying, PlayState, Player};
