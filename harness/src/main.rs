//! The `airtwin` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use airtwin::engine::{self, RunOptions, ScenarioResult};
use airtwin::scenario::{self, ChallengeOn};
use airtwin::{bench, clients, report, serve};
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "airtwin",
    version,
    about = "Simulated AirPlay, RAOP and DACP devices for testing real clients"
)]
struct Cli {
    /// Log format on stderr (the level comes from RUST_LOG, default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
        discovery: Option<airtwin::discovery::DiscoveryMode>,
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
        discovery: Option<airtwin::discovery::DiscoveryMode>,
        /// UDP port of the unicast DNS-SD responder on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        dns_sd_port: u16,
        /// Address of the control API.
        #[arg(long, default_value = "127.0.0.1:0")]
        control: std::net::SocketAddr,
    },
    /// Drive a running `airtwin serve` through its control API.
    Ctl(airtwin::ctl::CtlArgs),
    /// airtwin's own reference clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Benchmarks that print figures, with a reference measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Stream a WAV to a RAOP receiver, verifying its Apple-Response.
    Raop {
        /// Receiver address, e.g. 127.0.0.1:5000.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// 16-bit PCM WAV.
        file: PathBuf,
        /// Which request carries Apple-Challenge.
        #[arg(long, value_enum, default_value_t = Challenge::Options)]
        challenge: Challenge,
        /// Send clear audio without RSA/AES.
        #[arg(long)]
        no_encrypt: bool,
        /// Key whose public half verifies Apple-Response: builtin, other, or a PEM path.
        #[arg(long, default_value = "builtin")]
        key: String,
        /// Hardware id expected in Apple-Response.
        #[arg(long, default_value = "00:11:24:00:44:91")]
        mac: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds for each response.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Check an Apple TV's AirPlay port: GET /info, fp-setup phases 1 and 3, then optionally
    /// stream a WAV over RAOP or play a URL with the video API.
    Airplay {
        /// AirPlay port, e.g. 127.0.0.1:7000.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// FairPlay mode of fp-setup phase 1 (0..3).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
        mode: u8,
        /// Then stream this 16-bit PCM WAV over RAOP.
        #[arg(long)]
        stream: Option<PathBuf>,
        /// Then play this URL with /play, /playback-info, /scrub, /rate, /stop.
        #[arg(long)]
        play_url: Option<String>,
        /// Skip the GET /info with the txtAirPlay qualifier.
        #[arg(long)]
        no_qualifier: bool,
        /// Key whose public half verifies Apple-Response when streaming: builtin, other, or a PEM.
        #[arg(long, default_value = "builtin")]
        key: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds for each response.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// A DACP remote control: log in with a pairing GUID and run steps (login, playstatus,
    /// wait-update, cmd:NAME, get:PROP, set:PROP=V, artwork[:FILE], speakers, sleep:S,
    /// raw:/PATH, expect:STATUS|closed|timeout …).
    Dacp {
        /// Library address, e.g. 127.0.0.1:3689.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Pairing GUID to log in with.
        #[arg(long, default_value = "0x0000000000000001")]
        guid: String,
        /// Do not send Accept-Encoding: gzip.
        #[arg(long)]
        no_gzip: bool,
        /// Seconds for each response.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Steps (default: login playstatus).
        steps: Vec<String>,
    },
    /// A fake remote control that serves /pair on 127.0.0.1 and checks the code for its PIN
    /// (prints "pairing web server at port N"; exits 0 when a pairing was accepted).
    RemotePair {
        /// The PIN the remote shows; without it every code is accepted.
        #[arg(long)]
        pin: Option<String>,
        /// Pairing GUID (the Pair TXT value and cmpg).
        #[arg(long, default_value = "0x0000000000000001")]
        guid: String,
        #[arg(long, default_value = "airtwin remote")]
        name: String,
        /// cmty of the answer.
        #[arg(long, default_value = "iPhone")]
        device_type: String,
        /// ok, 500, malformed or no-cmpg: faults of the remote's seam (respond 500, truncate,
        /// edit_dmap remove cmpg), like the scenario's faults for the client, which it also applies.
        #[arg(long, default_value = "ok")]
        answer: String,
        /// Milliseconds before answering.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Refuse (500) any other servicename.
        #[arg(long)]
        servicename: Option<String>,
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seconds to wait for the pairing request.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Challenge {
    Options,
    Announce,
    None,
}

#[derive(Subcommand)]
enum BenchCommand {
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

fn parse_discovery(text: &str) -> Result<airtwin::discovery::DiscoveryMode, String> {
    airtwin::discovery::DiscoveryMode::parse(text).map_err(|e| e.to_string())
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate { files } => validate(&files),
        Command::Schema => {
            let schema = schemars::schema_for!(scenario::Scenario);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::List { paths } => list(&paths),
        Command::Run {
            paths,
            junit,
            out,
            seed,
            filter,
            jobs,
            discovery,
        } => run(paths, junit, out, seed, filter, jobs, discovery).await,
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
        Command::Ctl(args) => airtwin::ctl::run(args).await,
        Command::Bench(BenchCommand::Scale { devices }) => {
            airtwin::bench_scale::run(devices).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::Raop {
            to,
            file,
            challenge,
            no_encrypt,
            key,
            mac,
            seed,
            timeout,
        }) => {
            let opts = clients::raop::Options {
                addr: to,
                wav: file,
                challenge: match challenge {
                    Challenge::Options => ChallengeOn::Options,
                    Challenge::Announce => ChallengeOn::Announce,
                    Challenge::None => ChallengeOn::None,
                },
                encrypt: !no_encrypt,
                verify_key: clients::raop::load_public(&key)?,
                mac: airtwin::devices::parse_mac(&mac)
                    .with_context(|| format!("bad --mac {mac:?}"))?,
                response_timeout: Duration::from_secs_f64(timeout),
                seed,
            };
            let (_tx, rx) = watch::channel(false);
            let outcome = clients::raop::run_with_timeout(opts, Duration::from_secs(600), rx).await;
            print!("{}", outcome.stdout);
            Ok(if outcome.exit == Some(0) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Client(ClientCommand::Airplay {
            to,
            mode,
            stream,
            play_url,
            no_qualifier,
            key,
            seed,
            timeout,
        }) => {
            let opts = clients::airplay::Options {
                addr: to,
                mode,
                qualifier: !no_qualifier,
                stream,
                play_url,
                expect_pk: None,
                verify_key: clients::raop::load_public(&key)?,
                response_timeout: Duration::from_secs_f64(timeout),
                seed,
            };
            let (_tx, rx) = watch::channel(false);
            let outcome =
                clients::airplay::run_with_timeout(opts, Duration::from_secs(600), rx).await;
            print!("{}", outcome.stdout);
            Ok(if outcome.exit == Some(0) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(BenchCommand::Airplay {
            connections,
            seconds,
        }) => {
            bench::airplay(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::Dacp {
            to,
            guid,
            no_gzip,
            timeout,
            steps,
        }) => {
            let steps = if steps.is_empty() {
                vec!["login".to_string(), "playstatus".to_string()]
            } else {
                steps
            };
            let steps = clients::dacp::parse_steps(&steps).map_err(anyhow::Error::msg)?;
            let opts = clients::dacp::Options {
                addr: to,
                guid,
                steps,
                gzip: !no_gzip,
                response_timeout: Duration::from_secs_f64(timeout),
                out: PathBuf::from("."),
            };
            let (_tx, rx) = watch::channel(false);
            let outcome =
                clients::dacp::run_with_timeout(opts, Duration::from_secs(3600), rx).await;
            print!("{}", outcome.stdout);
            Ok(if outcome.exit == Some(0) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Client(ClientCommand::RemotePair {
            pin,
            guid,
            name,
            device_type,
            answer,
            delay_ms,
            servicename,
            port,
            timeout,
        }) => {
            let guid = airtwin_simulators::dacp::pairing::parse_guid(&guid)
                .with_context(|| format!("--guid {guid:?} is not 16 hex digits"))?;
            let config = airtwin_simulators::dacp::remote::RemoteConfig {
                guid,
                pin,
                name,
                device_type,
                expect_service_name: servicename,
            };
            let mut faults =
                clients::pair::parse_answer(&answer)?.faults(Duration::from_millis(delay_ms));
            let mut seed = 0;
            if let Some(given) = clients::pair::remote_faults_from_env()? {
                seed = given.seed;
                faults.extend(given.faults);
            }
            let accepted = clients::pair::remote(clients::pair::RemoteOptions {
                config,
                faults,
                seed,
                port,
                timeout: Duration::from_secs_f64(timeout),
            })
            .await?;
            Ok(if accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(BenchCommand::Dacp {
            connections,
            seconds,
        }) => {
            airtwin::dacp_bench::run(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Raop {
            connections,
            seconds,
        }) => {
            bench::raop(connections, Duration::from_secs_f64(seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(files: &[PathBuf]) -> Result<ExitCode> {
    let files = scenario::collect_files(files).context("reading scenario paths")?;
    let mut bad = 0;
    for f in &files {
        match scenario::load_file(f) {
            Ok(_) => println!("ok  {}", f.display()),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} of {} scenario(s) invalid", files.len());
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn list(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = scenario::collect_files(paths).context("reading scenario paths")?;
    let mut ok = true;
    for f in &files {
        match scenario::load_file(f) {
            Ok(l) => {
                let desc = l
                    .scenario
                    .description
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:<40} {}\n{:<40} {}",
                    l.scenario.name,
                    f.display(),
                    "",
                    desc
                );
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run(
    paths: Vec<PathBuf>,
    junit: Option<PathBuf>,
    out: Option<PathBuf>,
    seed: Option<u64>,
    filter: Option<String>,
    jobs: usize,
    discovery: Option<airtwin::discovery::DiscoveryMode>,
) -> Result<ExitCode> {
    let files = scenario::collect_files(&paths).context("reading scenario paths")?;
    let mut loaded = Vec::new();
    let mut invalid = Vec::new();
    for f in files {
        match scenario::load_file(&f) {
            Ok(l) => loaded.push(l),
            Err(e) => invalid.push(e),
        }
    }
    for e in &invalid {
        eprintln!("{e}");
    }
    if let Some(text) = &filter {
        loaded.retain(|l| {
            l.scenario.name.contains(text.as_str())
                || l.file.to_string_lossy().contains(text.as_str())
        });
    }
    if loaded.is_empty() && invalid.is_empty() {
        eprintln!("airtwin: no scenarios to run");
        return Ok(ExitCode::FAILURE);
    }
    let opts = Arc::new(RunOptions {
        seed,
        out: out.clone(),
        peers: None,
        discovery,
    });
    let (cancel_tx, cancel_rx) = watch::channel(false);
    tokio::spawn(async move {
        serve::wait_for_signal().await;
        eprintln!("airtwin: interrupted; stopping clients and writing reports");
        let _ = cancel_tx.send(true);
    });
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut handles = Vec::new();
    for l in loaded {
        let opts = opts.clone();
        let cancel = cancel_rx.clone();
        let sem = semaphore.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = engine::run(&l, &opts, cancel).await;
            println!("{}", report::line(&r));
            r
        }));
    }
    let mut results: Vec<ScenarioResult> = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => eprintln!("airtwin: a scenario task failed: {e}"),
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    println!(
        "{passed} passed, {} failed{}",
        results.len() - passed,
        if invalid.is_empty() {
            String::new()
        } else {
            format!(", {} invalid", invalid.len())
        }
    );
    if let Some(path) = &junit {
        report::junit::write(path, &results)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(out) = &out {
        eprintln!("airtwin: transcripts in {}", out.display());
    }
    Ok(if passed == results.len() && invalid.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
