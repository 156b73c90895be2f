//! The `airtwin` command line: the clap definitions and one dispatcher per command family
//! (scenarios, serve, clients, benches). `main.rs` only parses the arguments and calls [`main`].

mod bench;
mod client;
pub mod partition;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::{scenario, serve};

#[derive(Parser)]
#[command(
    name = "airtwin",
    version,
    about = "Simulated AirPlay, RAOP and DACP devices for testing real clients"
)]
pub struct Cli {
    /// Log format on stderr (the level comes from RUST_LOG, default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum JunitCommand {
    /// Merge JUnit files into OUT: suites of the same name become one, counts and times add up.
    Merge {
        /// The merged report.
        out: PathBuf,
        /// The reports to merge, in this order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Check scenario files; errors carry file:line:column and the field path.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the scenario format.
    Schema,
    /// List the scenarios under folders (or files) with their descriptions.
    List {
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Run scenarios; exit 0 only if every one passes.
    Run(scenarios::RunArgs),
    /// JUnit reports: merge the reports of `run --partition` shards.
    #[command(subcommand)]
    Junit(JunitCommand),
    /// Keep devices listening until Ctrl-C or SIGTERM.
    Serve {
        /// A scenario whose devices (and faults) to serve.
        scenario: Option<PathBuf>,
        /// A device of a kind with built-in defaults: KIND or KIND=NAME; repeat it to serve
        /// several (names must differ).
        #[arg(long, conflicts_with = "scenario")]
        device: Vec<String>,
        /// Port of the device given by the --device in the same position (0 or absent: any free
        /// port); repeat it for several devices.
        #[arg(long, requires = "device")]
        port: Vec<u16>,
        /// Write {"devices":[…]} JSON here once every device listens.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Write the transcript here on shutdown.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        seed: Option<u64>,
        /// none, unicast, loopback or interfaces:NAME[,NAME…] (default: the scenario's, or
        /// unicast DNS-SD on 127.0.0.1 when it says none). mDNS modes multicast: use them
        /// inside ci/netns or on purpose.
        #[arg(long, value_parser = parse_discovery)]
        discovery: Option<crate::discovery::DiscoveryMode>,
        /// UDP port of the unicast DNS-SD responder on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        dns_sd_port: u16,
        /// Address of the control API.
        #[arg(long, default_value = "127.0.0.1:0")]
        control: std::net::SocketAddr,
        /// Events kept in memory for `GET /events`: the exchange log's ring, two events per
        /// exchange (older ones are only in `--out`'s events.jsonl). At least 1.
        #[arg(long, default_value_t = serve::DEFAULT_EVENTS, value_parser = serve::parse_ring_size)]
        events: usize,
        /// Audio packets of each session a receiver keeps in memory (about 8 ms each at 44.1 kHz);
        /// older ones go to `--out` as they leave. At least 1.
        #[arg(long, default_value_t = serve::CAPTURE_WINDOW, value_parser = serve::parse_ring_size)]
        capture_window: usize,
        /// Audio sessions a receiver keeps in memory, the latest; `GET /devices/NAME` still
        /// counts all of them. At least 1.
        #[arg(long, default_value_t = serve::CAPTURE_SESSIONS, value_parser = serve::parse_ring_size)]
        capture_sessions: usize,
        /// Bytes all connections of all devices may hold at once in their buffers (received and
        /// not yet answered, answered and not yet written): a connection that grows past it is
        /// answered 503 and closed. A number with an optional unit: 65536, 512KiB, 64MiB. At
        /// least 1KiB.
        #[arg(long, default_value = "64MiB", value_parser = serve::parse_buffer_budget)]
        buffer_budget: usize,
    },
    /// Drive a running `airtwin serve` through its control API.
    Ctl(crate::serve::ctl::CtlArgs),
    /// airtwin's own reference clients.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Benchmarks that print figures, with a reference measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs a parsed command line and turns its result into the exit status (2, with the error's
/// context chain on stderr, when the command could not run).
pub fn main(cli: Cli) -> ExitCode {
    // A scenario's protocol warnings are results (transcript, JUnit, `warnings`/`no_warnings`),
    // often expected on purpose: `run` does not repeat them as log lines unless RUST_LOG asks.
    let quiet_warnings = matches!(cli.command, Command::Run { .. });
    init_logging(cli.log_format, quiet_warnings);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airtwin: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airtwin: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn parse_discovery(text: &str) -> Result<crate::discovery::DiscoveryMode, String> {
    crate::discovery::DiscoveryMode::parse(text).map_err(|e| e.to_string())
}

/// 0 when the command's check held, 1 when it did not.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_logging(format: LogFormat, quiet_warnings: bool) {
    let default = if quiet_warnings {
        format!(
            "warn,{}=off",
            airtwin_simulators::connection::PROTOCOL_WARNING_TARGET
        )
    } else {
        "warn".to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate { files } => scenarios::validate(&files),
        Command::Schema => scenarios::schema(),
        Command::List { paths } => scenarios::list(&paths),
        Command::Run(args) => scenarios::run(args).await,
        Command::Junit(JunitCommand::Merge { out, inputs }) => {
            let xml = crate::report::junit::merge(&inputs)?;
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&out, xml).with_context(|| format!("writing {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            scenario,
            device,
            port,
            ready_file,
            out,
            seed,
            discovery,
            dns_sd_port,
            control,
            events,
            capture_window,
            capture_sessions,
            buffer_budget,
        } => {
            let what = match scenario {
                Some(file) => serve::What::Scenario(scenario::load_file(&file)?),
                None if device.is_empty() => {
                    anyhow::bail!("serve needs a SCENARIO file or --device KIND[=NAME]")
                }
                None => serve::What::Devices(serve::device_args(&device, &port)?),
            };
            let opts = serve::ServeOptions {
                ready_file,
                out,
                seed,
                discovery,
                dns_sd_port,
                control: Some(control),
                events: Some(events),
                capture_window: Some(capture_window),
                capture_sessions: Some(capture_sessions),
                buffer_budget: Some(buffer_budget),
            };
            serve::serve(what, opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl(args) => crate::serve::ctl::run(args).await,
        Command::Client(command) => client::run(command).await,
        Command::Bench(command) => bench::run(command).await,
    }
}
