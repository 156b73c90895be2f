//! Companion, the protocol an Apple TV (tvOS 13+) offers remote apps on `_companion-link._tcp`
//! for apps, power, HID buttons, volume and text input (docs/protocols/companion.md).
//!
//! - [`frame`]: the 4-byte header (type, 3-byte length) and the frame types;
//! - [`opack`]: OPACK, the message format, with back-references;
//! - [`message`]: requests, responses and events (`_i`, `_t`, `_c`, `_x`);
//! - [`session`]: the encryption after pair-verify (12-byte counter nonces);
//! - [`text_input`]: the keyed archives of `_tiStart` and `_tiC`;
//! - [`server`]: the device side, a sans-IO stream core with pairing through [`crate::hap`];
//! - [`client`]: the client side's message flow, for airtwin's own reference client.

pub mod client;
pub mod frame;
pub mod message;
pub mod opack;
pub mod server;
pub mod session;
pub mod text_input;

pub use server::{App, CompanionConfig, CompanionCore};
