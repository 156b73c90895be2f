//! The `airtwin` command line: the clap definitions and one dispatcher per command family
//! (scenarios, serve, clients, benches). `main.rs` only parses the arguments and calls [`main`].

mod bench;
mod client;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
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
    Run {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write a transcript, captures and client logs per scenario under this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use this seed instead of each scenario's (replays a failure).
        #[arg(long)]
        seed: Option<u64>,
        /// Run only scenarios whose name or path contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Scenarios run at once.
        #[arg(short = 'j', long, default_value_t = 1)]
        jobs: usize,
        /// Discovery for every scenario: none, unicast, loopback or interfaces:NAME[,NAME…]
        /// (default: each scenario's `discovery`, itself `none` by default).
        #[arg(long, value_parser = parse_discovery)]
        discovery: Option<crate::discovery::DiscoveryMode>,
    },
    /// Keep devices listening until Ctrl-C or SIGTERM.
    Serve {
        /// A scenario whose devices (and faults) to serve.
        scenario: Option<PathBuf>,
        /// One device of a kind with built-in defaults: KIND or KIND=NAME.
        #[arg(long, conflicts_with = "scenario")]
        device: Option<String>,
        /// Port for --device (0: any free port).
        #[arg(long, default_value_t = 0, requires = "device")]
        port: u16,
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
    init_logging(cli.log_format);
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

fn parse_discovery(text: &str) -> Result<crate::discovery::DiscoveryMode, String> {
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
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
        Command::Run {
            paths,
            junit,
            out,
            seed,
            filter,
            jobs,
            discovery,
        } => scenarios::run(paths, junit, out, seed, filter, jobs, discovery).await,
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
        } => {
            let what = match (scenario, device) {
                (Some(file), _) => serve::What::Scenario(scenario::load_file(&file)?),
                (None, Some(d)) => {
                    let (kind, name) = serve::parse_device_arg(&d)?;
                    serve::What::Device { kind, name, port }
                }
                (None, None) => {
                    anyhow::bail!("serve needs a SCENARIO file or --device KIND[=NAME]")
                }
            };
            let opts = serve::ServeOptions {
                ready_file,
                out,
                seed,
                discovery,
                dns_sd_port,
                control: Some(control),
            };
            serve::serve(what, opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl(args) => crate::serve::ctl::run(args).await,
        Command::Client(command) => client::run(command).await,
        Command::Bench(command) => bench::run(command).await,
    }
}
