//! airtwin's simulated devices.
//!
//! Each protocol is a sans-IO core (`raop`, …) driven through the [`service::Service`] contract by
//! the sans-IO [`connection::Connection`], which frames requests and applies the fault seam
//! ([`fault`]); the tokio shell (`shell`) only moves its bytes and keeps its timers, and everything
//! that happens is recorded as [`event::Event`]s.
//!
//! The shell is the default `shell` feature: without it (`--no-default-features`) the crate builds
//! without tokio, so no core can reach a socket or a timer.
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
pub mod connection;
pub mod dacp;
#[cfg(feature = "shell")]
pub mod device;
pub mod discovery;
pub mod event;
pub mod fault;
pub mod hap;
pub mod raop;
pub mod service;
#[cfg(feature = "shell")]
pub mod shell;
pub mod wire;

#[cfg(feature = "shell")]
pub use device::{AirportExpress, AppleTv, Device, Itunes};

#[cfg(test)]
mod testkit;
