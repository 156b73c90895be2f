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
        /// Measure this external RAOP receiver (HOST:PORT) instead of a fake AirPort Express.
        #[arg(long)]
        target: Option<std::net::SocketAddr>,
    },
    /// Start many AirPort Express devices in one process on loopback; print the time until all
    /// listen and the resident memory, with one device measured first as the reference.
    Scale {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
    },
    /// Resident memory per device kind (Apple TV GET /info; Apple TV 4K GET /info and a HomeKit
    /// pair-verify per 1000; AirPort Express OPTIONS with a challenge; iTunes
    /// playstatusupdate; Spotify AP apresolve and a login per 1000) before, after the first 10%
    /// of the requests (the reference) and at the end, with events bounded as `serve` bounds
    /// them.
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
        /// Only this kind (repeatable): apple-tv, apple-tv-4k, airport-express, itunes,
        /// spotify-ap. Default: every kind.
        #[arg(long, value_parser = bench::memory::Load::parse)]
        kind: Vec<bench::memory::Load>,
    },
    /// Every device kind (Apple TV, Apple TV 4K, AirPort Express, iTunes, Spotify AP) under mixed
    /// load with a fault plan active for a set time; then checks no panic, every device answers,
    /// file descriptors back, resident memory flat, the transcript complete. Exit 1 if one fails.
    Soak {
        /// Seconds of load.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Keep-alive client connections per device kind.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Events kept in memory, as `serve --events`.
        #[arg(long, default_value_t = 2000)]
        events: usize,
        /// Allowed growth of resident memory after the first third of the run, MB.
        #[arg(long, default_value_t = 8.0)]
        rss_slack_mb: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep the transcript in this folder (default: a scratch folder, removed).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
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
    /// Spotify AP handshakes + logins per second (a new connection each, ClientHello to
    /// APWelcome) against a fake access point on loopback, with the raw RSA-2048 signature and
    /// 768-bit modexp rates measured in the same run.
    Spotify {
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
        /// Measure this external AirPlay receiver (HOST:PORT) instead of a fake Apple TV.
        #[arg(long)]
        target: Option<std::net::SocketAddr>,
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
        BenchCommand::Spotify {
            connections,
            seconds,
        } => {
            bench::spotify::run(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Airplay {
            connections,
            seconds,
            target,
        } => {
            bench::airplay::airplay(connections, Duration::from_secs_f64(seconds), target).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Soak {
            seconds,
            connections,
            events,
            rss_slack_mb,
            seed,
            out,
        } => {
            let report = bench::soak::run(bench::soak::Options {
                duration: Duration::from_secs_f64(seconds),
                connections,
                events,
                rss_slack_mb,
                seed,
                out,
            })
            .await?;
            report.print();
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BenchCommand::Memory {
            requests,
            connections,
            events,
            kind,
        } => {
            bench::memory::run(requests, connections, events, &kind).await?;
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
            target,
        } => {
            bench::raop::raop(connections, Duration::from_secs_f64(seconds), target).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
