//! `airtwin ctl`: the common actions of the control API (`crate::control`) from the shell.
//!
//! It finds the API through `--ready-file` (its `ports.control`) or `--control ADDR`, sends one
//! HTTP request, prints the JSON answer on stdout, and exits 1 with the API's reason on stderr
//! when the answer is an error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tokio::net::TcpStream;

#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The ready file `airtwin serve --ready-file` wrote.
    #[arg(long, global = true)]
    pub ready_file: Option<PathBuf>,
    /// The control API address instead, e.g. 127.0.0.1:7777 (with --token).
    #[arg(long, global = true, requires = "token")]
    pub control: Option<SocketAddr>,
    /// The control API's token (the ready file's `token`), with --control.
    #[arg(long, global = true, env = "AIRTWIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// List the devices with their ports, mDNS names and state.
    Devices,
    /// Show one device.
    Device { name: String },
    /// Change a device's state: KEY=VALUE… (`volume=-15`, `name=Den`).
    Set {
        name: String,
        #[arg(required = true)]
        assignments: Vec<String>,
    },
    /// List the faults (index, fault, active, matched, applied).
    Faults,
    /// Add a fault, written as in a scenario's `faults:` (YAML or JSON), e.g.
    /// '{when: {method: OPTIONS}, action: {respond: {status: 503}}}'.
    AddFault { fault: String },
    /// Remove the fault at INDEX.
    RemoveFault { index: usize },
    /// Print the exchange log from event SINCE on (waiting up to WAIT seconds for one).
    Events {
        #[arg(long, default_value_t = 0)]
        since: usize,
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
    },
    /// Save the audio a device received as a WAV file.
    Audio {
        name: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Scenario faults back, runtime faults gone, names and volumes back.
    Reset,
    /// Stop the serve process (goodbyes sent, transcripts written).
    Shutdown,
}

/// Where the control API of a running serve is, and the token it wants.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
}

impl Api {
    /// From the ready file serve wrote: `ports.control` on 127.0.0.1 and `token`.
    pub fn from_ready_file(path: &std::path::Path) -> Result<Api> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the ready file {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let port = v["ports"]["control"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("{} has no ports.control", path.display()))?;
        let token = v["token"]
            .as_str()
            .with_context(|| format!("{} has no token", path.display()))?;
        Ok(Api {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            token: token.to_string(),
        })
    }

    /// One exchange: status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>)> {
        request(self.addr, Some(&self.token), method, path, body).await
    }
}

/// Where the control API is, from the arguments.
fn api(args: &CtlArgs) -> Result<Api> {
    match (&args.control, &args.ready_file) {
        (Some(addr), _) => Ok(Api {
            addr: *addr,
            token: args
                .token
                .clone()
                .context("--control needs --token (the ready file's token)")?,
        }),
        (None, Some(path)) => Api::from_ready_file(path),
        (None, None) => {
            bail!("say where serve is: --ready-file FILE (from serve --ready-file) or --control ADDR --token T")
        }
    }
}

/// One HTTP/1.1 exchange with the control API over hyper's client: status and body.
pub async fn request(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, Vec<u8>)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .with_context(|| format!("no answer from the control API at {addr}"))?
        .with_context(|| format!("cannot reach the control API at {addr} (is serve running?)"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(|| format!("no HTTP from the control API at {addr}"))?;
    tokio::spawn(connection);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("the control API at {addr} sent no HTTP answer"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of the control API at {addr}"))?
        .to_bytes();
    Ok((status, bytes.to_vec()))
}

/// `KEY=VALUE` → a JSON field; the value is JSON when it parses as JSON, else a string.
fn assignment(text: &str) -> Result<(String, serde_json::Value)> {
    let (k, v) = text
        .split_once('=')
        .with_context(|| format!("{text:?} is not KEY=VALUE"))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
    Ok((k.to_string(), value))
}

pub async fn run(args: CtlArgs) -> Result<ExitCode> {
    let api = api(&args)?;
    let (method, path, body): (&str, String, Option<serde_json::Value>) = match &args.command {
        CtlCommand::Devices => ("GET", "/devices".into(), None),
        CtlCommand::Device { name } => ("GET", format!("/devices/{}", encode(name)), None),
        CtlCommand::Set { name, assignments } => {
            let mut fields = serde_json::Map::new();
            for a in assignments {
                let (k, v) = assignment(a)?;
                fields.insert(k, v);
            }
            (
                "POST",
                format!("/devices/{}/state", encode(name)),
                Some(serde_json::Value::Object(fields)),
            )
        }
        CtlCommand::Faults => ("GET", "/faults".into(), None),
        CtlCommand::AddFault { fault } => {
            let v: serde_json::Value = serde_yaml::from_str(fault)
                .with_context(|| format!("the fault {fault:?} is neither YAML nor JSON"))?;
            ("POST", "/faults".into(), Some(v))
        }
        CtlCommand::RemoveFault { index } => ("DELETE", format!("/faults/{index}"), None),
        CtlCommand::Events { since, wait } => {
            ("GET", format!("/events?since={since}&wait={wait}"), None)
        }
        CtlCommand::Audio { name, .. } => ("GET", format!("/devices/{}/audio", encode(name)), None),
        CtlCommand::Reset => ("POST", "/reset".into(), None),
        CtlCommand::Shutdown => ("POST", "/shutdown".into(), None),
    };
    let (status, bytes) = api.request(method, &path, body.as_ref()).await?;
    if !(200..300).contains(&status) {
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        eprintln!("airtwin ctl: {status}: {reason}");
        return Ok(ExitCode::FAILURE);
    }
    if let CtlCommand::Audio { output, .. } = &args.command {
        std::fs::write(output, &bytes)
            .with_context(|| format!("cannot write {}", output.display()))?;
        println!("{} bytes of WAV in {}", bytes.len(), output.display());
    } else {
        print!("{}", String::from_utf8_lossy(&bytes));
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a path segment (device names may hold spaces).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
