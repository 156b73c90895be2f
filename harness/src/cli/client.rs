//! `airtwin client …`: airtwin's own reference clients, run once from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};
use tokio::sync::watch;

use crate::clients;
use crate::scenario::ChallengeOn;

#[derive(Subcommand)]
pub enum ClientCommand {
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
        /// Report the Apple TV checks (/info keys, Date, Session, Server, Audio-Jack-Status) as
        /// `note` lines and go on; fp-setup bytes are still checked.
        #[arg(long)]
        lenient: bool,
    },
    /// A HomeKit controller for an Apple TV 4K: pair-setup (PIN, or transient), pair-verify,
    /// and one encrypted request, checking the M4 proof and the M6 signature.
    Hap {
        /// AirPlay port, e.g. 127.0.0.1:7000.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// The PIN the device shows.
        #[arg(long, default_value = "")]
        pin: String,
        /// Transient pair-setup (PIN 3939, M1-M4) instead of PIN pairing and pair-verify.
        #[arg(long)]
        transient: bool,
        /// Credentials file: reused when present (no pair-setup), written after a pair-setup.
        #[arg(long)]
        credentials: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds for each response.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// MRP over AirPlay for an Apple TV 4K with stored HomeKit credentials: pair-verify, the
    /// remote-control session, the type-130 data stream, MRP's start and the calls given,
    /// checking frame headers, seqno echoes and every answer.
    Mrp {
        /// AirPlay port, e.g. 127.0.0.1:7000.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Credentials file written by `airtwin client hap --credentials`.
        #[arg(long)]
        credentials: PathBuf,
        /// Calls after the start, in order: play, pause, play_pause, stop, next, previous, a key
        /// (up, down, left, right, select, menu, home, volume_up, volume_down), or volume=0..1.
        #[arg(long = "call")]
        calls: Vec<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds for each answer.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// A Companion client for an Apple TV 4K: pair-setup (unless credentials are stored),
    /// pair-verify, then the app list, a launch and power, checking every tag, response ids and
    /// the SystemStatus push that pyatv does not.
    Companion {
        /// Companion port, e.g. 127.0.0.1:49153.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// The PIN the device shows.
        #[arg(long, default_value = "")]
        pin: String,
        /// Credentials file: reused when present (no pair-setup), written after a pair-setup.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// Fetch and print the app list.
        #[arg(long)]
        apps: bool,
        /// Launch this bundle id.
        #[arg(long)]
        launch: Option<String>,
        /// Turn the device off (the Sleep button) or on (Wake) and check the pushed state.
        #[arg(long, value_enum)]
        power: Option<clients::companion::PowerCommand>,
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
    /// A Spotify client: apresolve (or --to), ClientHello, the AP's signature checked with
    /// --key, keys derived, Login, the AP's Ping answered, then the --mercury GETs (exit 1 with
    /// the failing step otherwise).
    #[command(group(clap::ArgGroup::new("ap").required(true).args(["to", "apresolve"])))]
    Spotify {
        /// Access point address, e.g. 127.0.0.1:4070.
        #[arg(long)]
        to: Option<std::net::SocketAddr>,
        /// Ask this apresolve for the AP and use the first `accesspoint`, e.g.
        /// http://127.0.0.1:8080/ (without a query: `?type=accesspoint&type=dealer&type=spclient`).
        #[arg(long)]
        apresolve: Option<String>,
        /// Mercury URI to GET after login and print the answer of (repeatable); an unscripted
        /// URI gets status 404.
        #[arg(long)]
        mercury: Vec<String>,
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
        /// The AP's public key PEM (the ready file's `public_key`); default: the key an AP draws
        /// from --seed.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds for each answer.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
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
pub enum Challenge {
    Options,
    Announce,
    None,
}

pub(super) async fn run(command: ClientCommand) -> Result<ExitCode> {
    match command {
        ClientCommand::Raop {
            to,
            file,
            challenge,
            no_encrypt,
            key,
            mac,
            seed,
            timeout,
        } => {
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
                mac: crate::devices::parse_mac(&mac)
                    .with_context(|| format!("bad --mac {mac:?}"))?,
                response_timeout: Duration::from_secs_f64(timeout),
                seed,
            };
            run_once(opts, Duration::from_secs(600)).await
        }
        ClientCommand::Airplay {
            to,
            mode,
            stream,
            play_url,
            no_qualifier,
            key,
            seed,
            timeout,
            lenient,
        } => {
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
                lenient,
            };
            run_once(opts, Duration::from_secs(600)).await
        }
        ClientCommand::Hap {
            to,
            pin,
            transient,
            credentials,
            seed,
            timeout,
        } => {
            let opts = clients::hap::Options {
                addr: to,
                pin,
                transient,
                credentials,
                seed,
                timeout: Duration::from_secs_f64(timeout),
            };
            let mut log = String::new();
            Ok(failed_on_error(clients::hap::run(&opts, &mut log).await))
        }
        ClientCommand::Mrp {
            to,
            credentials,
            calls,
            seed,
            timeout,
        } => {
            let opts = clients::mrp::Options {
                addr: to,
                credentials,
                calls,
                seed,
                timeout: Duration::from_secs_f64(timeout),
            };
            let mut log = String::new();
            Ok(failed_on_error(clients::mrp::run(&opts, &mut log).await))
        }
        ClientCommand::Companion {
            to,
            pin,
            credentials,
            apps,
            launch,
            power,
            seed,
            timeout,
        } => {
            let opts = clients::companion::Options {
                addr: to,
                pin,
                credentials,
                apps,
                launch,
                power,
                seed,
                timeout: Duration::from_secs_f64(timeout),
            };
            let mut log = String::new();
            Ok(failed_on_error(
                clients::companion::run(&opts, &mut log).await,
            ))
        }
        ClientCommand::Dacp {
            to,
            guid,
            no_gzip,
            timeout,
            steps,
        } => {
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
            run_once(opts, Duration::from_secs(3600)).await
        }
        ClientCommand::Spotify {
            to,
            apresolve,
            mercury,
            user,
            password,
            key,
            seed,
            timeout,
        } => {
            let target = match (to, apresolve) {
                (Some(addr), _) => clients::spotify::Target::Ap(addr),
                (None, Some(url)) => clients::spotify::Target::Apresolve(url),
                (None, None) => anyhow::bail!("say where the AP is: --to ADDR or --apresolve URL"),
            };
            let ok = clients::spotify::run(clients::spotify::Options {
                target,
                username: user,
                password,
                server_key: clients::spotify::load_key(key.as_deref(), seed)?,
                timeout: Duration::from_secs_f64(timeout),
                seed,
                mercury,
            })
            .await?;
            Ok(super::exit_code(ok))
        }
        ClientCommand::RemotePair {
            pin,
            guid,
            name,
            device_type,
            answer,
            delay_ms,
            servicename,
            port,
            timeout,
        } => {
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
            Ok(super::exit_code(accepted))
        }
    }
}

/// Runs one of airtwin's own clients to its end (or `limit`), prints its log, and exits 0 only if
/// it succeeded.
async fn run_once<C: clients::InProcess>(client: C, limit: Duration) -> Result<ExitCode> {
    let (_tx, rx) = watch::channel(false);
    let outcome = clients::run_in_process(client, limit, rx).await;
    print!("{}", outcome.stdout);
    Ok(super::exit_code(outcome.exit == Some(0)))
}

/// The exit status of a client run that reports its steps as it goes: on an error, one
/// `FAIL` line with its context, and failure.
fn failed_on_error(result: anyhow::Result<()>) -> ExitCode {
    if let Err(e) = &result {
        println!("FAIL {e:#}");
    }
    super::exit_code(result.is_ok())
}
