//! The AirPort Express: a RAOP (AirTunes v2) receiver.
//!
//! - [`challenge`]: `Apple-Challenge` → `Apple-Response`, `rsaaeskey` (RSA);
//! - [`session`]: the RTSP state machine, as a [`crate::protocol_core::ProtocolCore`];
//! - [`audio`] and [`rtp`]: RTP audio in, AES-CBC off, ALAC/L16 decoded to PCM;
//! - [`sender`]: the sending side of the same formats, for airtwin's own sender;
//! - [`state`]: what the device remembers (volume, metadata, captured audio);
//! - [`keys`]: the well-known AirPort Express key and user-supplied PEMs.

pub mod audio;
pub mod challenge;
pub mod keys;
pub mod records;
pub mod rtp;
pub mod sender;
pub mod session;
pub mod state;

pub use session::{RaopConfig, RaopCore};
pub use state::{CapturePolicy, RaopState};
