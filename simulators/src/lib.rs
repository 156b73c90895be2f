//! airtwin's simulated devices.
//!
//! Each protocol is a sans-IO core (`raop`, …) driven by the shared tokio shell (`shell`) through
//! the [`service::Service`] contract; faults are applied at one seam ([`fault`]) between the two,
//! and everything that happens is recorded as [`event::Event`]s. A device kind ([`device`])
//! combines cores on ports; its builder starts one inside any tokio runtime, without the harness:
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
pub mod dacp;
pub mod device;
pub mod discovery;
pub mod event;
pub mod fault;
pub mod hap;
pub mod raop;
pub mod service;
pub mod shell;
pub mod wire;

pub use device::{AirportExpress, AppleTv, Device, Itunes};

#[cfg(test)]
mod testkit;
