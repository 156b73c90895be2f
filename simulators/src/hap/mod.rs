//! HomeKit pairing as a modern Apple TV does it on its AirPlay port (docs/protocols/hap.md):
//! `POST /pair-setup` (SRP with a PIN, `X-Apple-HKP: 3`, or transient, `X-Apple-HKP: 4`),
//! `POST /pair-verify`, then an encrypted control channel.
//!
//! Every part is sans-IO: message bytes (and randomness from the caller's seeded generator) in,
//! message bytes and outcomes out.
//!
//! - [`tlv8`]: the item format of every pairing message;
//! - [`srp`]: SRP-6a, 3072-bit, SHA-512, byte for byte as pyatv's srptools computes it;
//! - [`keys`]: HKDF-SHA512 keys and ChaCha20-Poly1305 sealing with HAP nonces;
//! - [`identity`]: the accessory's long-term Ed25519 identity and the controllers it paired;
//! - [`pair_setup`] and [`pair_verify`]: both sides of each exchange;
//! - [`channel`]: the encrypted framing of the connection after pairing.

pub mod channel;
pub mod identity;
pub mod keys;
pub mod pair_setup;
pub mod pair_verify;
pub mod srp;
pub mod tlv8;

pub use identity::{Controller, Identity, KnownController};
pub use tlv8::{ErrorCode, Tlv8};
