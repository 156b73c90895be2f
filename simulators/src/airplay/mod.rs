//! The Apple TV, AirPlay side: one port (7000 on a real device) that carries RTSP/1.0 and
//! HTTP/1.1 alike (docs/protocols/airplay.md).
//!
//! - [`info`]: `GET /info`, the binary plist of who the device is, and its `txtAirPlay` record;
//! - [`fairplay`]: `POST /fp-setup`, the FPLY phases 1 and 3 with their fixed replies;
//! - [`pairing`]: HomeKit `/pair-pin-start`, `/pair-setup`, `/pair-verify` of an Apple TV 4K;
//! - [`video`]: the classic AirPlay video API (`/play`, `/playback-info`, `/scrub`, `/rate`,
//!   `/stop`, `/server-info`) on a simulated clock;
//! - [`server`]: the [`crate::protocol_core::ProtocolCore`] that routes those and hands every RAOP audio
//!   request to the AirPort Express core ([`crate::raop::RaopCore`]), which it wraps.

pub mod fairplay;
pub mod info;
pub mod pairing;
pub mod records;
pub mod server;
pub mod video;

pub use server::{AirplayConfig, AirplayCore, AirplayState};
