//! `airtwin bench …`: benchmarks that print figures, each with a reference measured in the same
//! run.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use crate::bench;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// DACP playstatusupdate requests per second against a fake iTunes on loopback, with a raw
    /// loopback HTTP echo measured in the same run.
    Dacp {
        /// Concurrent client connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// RAOP handshakes per second against a fake AirPort Express on loopback, with the raw
    /// RSA-2048 private-key rate of this machine measured in the same run.
    Raop {
        /// Concurrent client connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Start many AirPort Express devices in one process on loopback; print the time until all
    /// listen and the resident memory, with one device measured first as the reference.
    Scale {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
    },
    /// Resident memory per device kind (Apple TV GET /info, AirPort Express OPTIONS with a
    /// challenge, iTunes playstatusupdate) before, after the first 10% of the requests (the
    /// reference) and at the end, with events bounded as `serve` bounds them.
    Memory {
        /// Requests per device kind.
        #[arg(long, default_value_t = 1_000_000)]
        requests: u64,
        /// Concurrent keep-alive client connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Events kept in memory, as `serve --events` (0: all of them, as `airtwin run`).
        #[arg(long, default_value_t = crate::serve::DEFAULT_EVENTS)]
        events: usize,
    },
    /// HomeKit pair-verify handshakes per second (new connection, M1-M4, one encrypted request)
    /// against a fake Apple TV 4K on loopback, with the raw X25519 + Ed25519 rate in the same run.
    Hap {
        /// Concurrent client connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// AirPlay handshakes per second (GET /info, fp-setup phases 1 and 3, each on a new
    /// connection) against a fake Apple TV on loopback, with the RAOP handshake rate of a fake
    /// AirPort Express measured in the same run.
    Airplay {
        /// Concurrent client connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

pub(super) async fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Scale { devices } => {
            crate::bench::scale::run(devices).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Hap {
            connections,
            seconds,
        } => {
            crate::bench::hap::run(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Airplay {
            connections,
            seconds,
        } => {
            bench::airplay::airplay(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Memory {
            requests,
            connections,
            events,
        } => {
            bench::memory::run(requests, connections, events).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Dacp {
            connections,
            seconds,
        } => {
            crate::bench::dacp::run(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Raop {
            connections,
            seconds,
        } => {
            bench::raop::raop(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
