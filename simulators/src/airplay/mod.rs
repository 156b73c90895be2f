//! The Apple TV, AirPlay side: one port (7000 on a real device) that carries RTSP/1.0 and
//! HTTP/1.1 alike (docs/protocols/airplay.md).
//!
//! - [`info`]: `GET /info`, the binary plist of who the device is, and its `txtAirPlay` record;
//! - [`fairplay`]: `POST /fp-setup`, the FPLY phases 1 and 3 with their fixed replies;
//! - [`pairing`]: HomeKit `/pair-pin-start`, `/pair-setup`, `/pair-verify` of an Apple TV 4K;
//! - [`video`]: the classic AirPlay video API (`/play`, `/playback-info`, `/scrub`, `/rate`,
//!   `/stop`, `/server-info`, `/getProperty`, `/setProperty`) on a simulated clock;
//! - [`reverse`]: the video API's reverse event channel (`POST /reverse`, then `POST /event`
//!   pushes);
//! - [`session`]: AirPlay 2 SETUP with plist bodies (the session, its streams by type), RECORD,
//!   FLUSH and TEARDOWN of such a session;
//! - [`events`]: the AirPlay 2 event channel, an encrypted TCP connection of its own;
//! - [`server`]: the [`crate::protocol_core::ProtocolCore`] that routes those and hands every RAOP audio
//!   request to the AirPort Express core ([`crate::raop::RaopCore`]), which it wraps.

pub mod events;
pub mod fairplay;
pub mod info;
pub mod pairing;
pub mod records;
pub mod reverse;
pub mod server;
pub mod session;
pub mod video;

pub use server::{AirplayConfig, AirplayCore, AirplayState};
