//! airtwin's simulated devices.
//!
//! Each protocol is a sans-IO core (`raop`, …) driven through the [`protocol_core::ProtocolCore`] contract by
//! the sans-IO [`connection::Connection`], which frames requests and applies the fault seam
//! ([`fault`]); the tokio shell (`shell`) only moves its bytes and keeps its timers, and everything
//! that happens is recorded as [`event::Event`]s.
//!
//! The shell is the default `shell` feature: without it (`--no-default-features`) the crate builds
//! without tokio, so no core can reach a socket or a timer.
//!
//! ```text
//!  socket ─▶ shell (tokio) ─▶ connection::Connection ─▶ fault::FaultPlan ─▶ ProtocolCore
//!  socket ◀─ shell (tokio) ◀─ connection::Connection ◀─ fault edits      ◀─ Outcome
//!                                     └──▶ event::EventKind ─▶ shell::Recorder
//! ```
//!
//! | module | concept |
//! |---|---|
//! | [`wire`] | codecs: RTSP/HTTP framing and messages, SDP, `Transport`, DMAP, plists, DNS-SD answers |
//! | [`raop`] | the AirTunes v2 receiver (RSA challenge, ANNOUNCE keys, RTP audio) and the sending half |
//! | [`airplay`] | the Apple TV's AirPlay port: `/info`, FairPlay `fp-setup`, the video API |
//! | [`companion`] | Companion on an Apple TV 4K: frames, OPACK, pairing through HAP, apps, power, HID |
//! | [`dacp`] | the DACP/DMAP library server, now-playing state, pairing, a fake remote |
//! | [`daap`] | the shared library (DAAP): tracks, playlists, artwork, queries, playing from it |
//! | [`spotify_ap`] | a Spotify access point and its client: apresolve, the DH/Shannon handshake, login, Ping, Mercury |
//! | [`fault`] | the one fault table, its validation, the seeded plan, response edits |
//! | [`connection`] | the sans-IO connection driver: framing, the fault seam, events |
//! | [`protocol_core`] | the contract between a core and the driver |
//! | [`stream_core`], [`stream_connection`] | the same for byte-stream cores (own framing, named transmits) |
//! | [`event`] | what happened, as the transcript and expectations read it |
//! | [`seed`] | values derived from the scenario's seed and a label |
//! | `device` | device kinds combining cores on ports, their builders, the `Device` handle (feature `shell`) |
//! | `shell` | tokio sockets and timers, the recorder, mDNS and unicast DNS-SD (feature `shell`) |
//!
//! Protocol facts and their public sources: `docs/protocols/`; the whole design:
//! `docs/architecture.md`.
//!
//! A device kind ([`device`]) combines cores on ports; its builder starts one inside any tokio
//! runtime, without the harness:
//!
//! ```
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tv = airtwin_simulators::AppleTv::builder().name("tv").seed(7).spawn().await?;
//! let mut conn = tokio::net::TcpStream::connect(tv.addr()).await?;
//! conn.write_all(b"GET /info HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await?;
//! let mut status = [0u8; 15];
//! conn.read_exact(&mut status).await?;
//! assert_eq!(&status, b"HTTP/1.1 200 OK");
//! tv.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod airplay;
pub mod buffer_budget;
pub mod companion;
pub mod connection;
pub mod daap;
pub mod dacp;
#[cfg(feature = "shell")]
pub mod device;
pub mod event;
pub mod fault;
pub mod hap;
pub mod mrp;
pub mod now_playing;
pub mod packet_log;
pub mod protocol_core;
pub mod raop;
pub mod seed;
#[cfg(feature = "shell")]
pub mod shell;
pub mod spotify_ap;
pub mod stream_connection;
pub mod stream_core;
pub mod wire;

#[cfg(feature = "shell")]
pub use device::{AirportExpress, AppleTv, Device, Itunes};

#[cfg(test)]
mod testkit;
