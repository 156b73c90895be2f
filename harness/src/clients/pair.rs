//! The caller side of DACP pairing, run from a scenario: a device (iTunes, an Apple TV) sends
//! `GET /pair?pairingcode=…&servicename=…` to a remote control and, on a 200 `cmpa` answer, trusts
//! the remote's GUID for `/login` (docs/protocols/dacp.md, DACP pairing). The remote is
//! either listening already (`address`) or a program to start (`command`: pyatv's `pair`,
//! `airtwin client remote-pair`) whose port is read from its output.
//!
//! Also `airtwin client remote-pair`: a fake remote that serves `/pair`, with its `--answer` and
//! `--delay-ms` and the scenario's faults for the client applied at its fault seam.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::dacp::pairing::{self, CodeFormat, PairCall};
use airtwin_simulators::dacp::remote::{RemoteAnswer, RemoteConfig, RemoteCore};
use airtwin_simulators::dacp::DacpCore;
use airtwin_simulators::event::{Event, EventKind};
use airtwin_simulators::fault::{Fault, FaultPlan, Scope};
use airtwin_simulators::shell::Recorder;
use airtwin_simulators::shell::{self, ShellConfig};
use airtwin_simulators::wire::{self, Limits};
use anyhow::{bail, Context as _, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::ClientOutcome;
use crate::scenario::{PairClientSpec, PairCodeFormat};

/// Matches pyatv's `--debug` line "Started pairing web server at port N" and
/// `airtwin client remote-pair`'s "pairing web server at port N".
pub const DEFAULT_PORT_FROM: &str = r"pairing web server at port (\d+)";

fn code_format(f: PairCodeFormat) -> CodeFormat {
    match f {
        PairCodeFormat::Upper => CodeFormat::Upper,
        PairCodeFormat::Lower => CodeFormat::Lower,
        PairCodeFormat::Short => CodeFormat::Short,
        PairCodeFormat::Naive => CodeFormat::Naive,
    }
}

/// Sends the pairing request to `addr` and reads the answer.
pub async fn call(addr: SocketAddr, pc: &PairCall, timeout: Duration) -> Result<wire::Response> {
    let req = pc.request(&addr.to_string());
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the remote at {addr}"))?;
        s.write_all(&req.encode()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((resp, _)) = wire::parse_response(&buf, &Limits::default())? {
                return Ok::<_, anyhow::Error>(resp);
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("the remote closed the connection without an answer");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow::anyhow!("the remote did not answer within {timeout:?}"))?
}

/// What a started remote printed, line by line, from stdout and stderr together.
struct Started {
    child: tokio::process::Child,
    pgid: Option<i32>,
    lines: mpsc::UnboundedReceiver<String>,
}

fn start(argv: &[String], env: &BTreeMap<String, String>, cwd: &Path) -> Result<Started> {
    let mut child = super::external::spawn(argv, env, cwd).map_err(anyhow::Error::msg)?;
    let pgid = child.id().map(|p| p as i32);
    let (tx, rx) = mpsc::unbounded_channel();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    for pipe in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
    }
    Ok(Started {
        child,
        pgid,
        lines: rx,
    })
}

/// Runs a `pair` client of a scenario. `argv`/`env` are already substituted.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    spec: &PairClientSpec,
    dacp: Option<Arc<DacpCore>>,
    argv: Option<Vec<String>>,
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Duration,
    mut cancel: watch::Receiver<bool>,
) -> ClientOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut log = String::new();
    let mut remote_out = String::new();
    let mut outcome = ClientOutcome::default();
    let Some(dacp) = dacp else {
        return ClientOutcome::failed_to_start(
            format!("device {} has no DACP library", spec.device),
            Duration::ZERO,
        );
    };
    let service_name = spec
        .servicename
        .clone()
        .unwrap_or_else(|| format!("{:016X}", dacp.config.library_id));
    let pc = PairCall {
        pair: spec.pair.clone(),
        pin: spec.pin.clone(),
        service_name,
        format: code_format(spec.code_format),
    };
    let mut remote: Option<Started> = None;
    let addr: Result<SocketAddr> = match (&spec.address, argv) {
        (Some(a), _) => a
            .parse()
            .with_context(|| format!("address {a:?} is not HOST:PORT")),
        (None, Some(argv)) => match start(&argv, env, cwd) {
            Err(e) => Err(e),
            Ok(mut s) => {
                let re = Regex::new(spec.port_from.as_deref().unwrap_or(DEFAULT_PORT_FROM))
                    .expect("checked when the scenario was loaded");
                let mut found = None;
                loop {
                    let line = tokio::select! {
                        l = s.lines.recv() => l,
                        _ = tokio::time::sleep_until(deadline) => None,
                        _ = cancel.wait_for(|c| *c) => None,
                    };
                    let Some(line) = line else { break };
                    let _ = writeln!(remote_out, "{line}");
                    if let Some(port) = re
                        .captures(&line)
                        .and_then(|c| c.get(1))
                        .and_then(|m| m.as_str().parse::<u16>().ok())
                    {
                        found = Some(port);
                        break;
                    }
                }
                if let (Some(_), Some(ready)) = (found, &spec.ready_from) {
                    let ready = Regex::new(ready).expect("checked when the scenario was loaded");
                    let mut seen = false;
                    while !seen {
                        let line = tokio::select! {
                            l = s.lines.recv() => l,
                            _ = tokio::time::sleep_until(deadline) => None,
                            _ = cancel.wait_for(|c| *c) => None,
                        };
                        let Some(line) = line else { break };
                        let _ = writeln!(remote_out, "{line}");
                        seen = ready.is_match(&line);
                    }
                    if !seen {
                        found = None;
                    }
                }
                remote = Some(s);
                found
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                    .context("the remote never printed its port")
            }
        },
        (None, None) => Err(anyhow::anyhow!("no remote: give address or command")),
    };
    let result: Result<()> = async {
        let mut addr = addr?;
        if spec.discover {
            addr = discover(spec, deadline, &mut log).await?;
        }
        let _ = writeln!(
            log,
            "pair: GET /pair?pairingcode={}&servicename={} to {addr}",
            pc.code(),
            pc.service_name
        );
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let resp = call(addr, &pc, left).await?;
        let _ = writeln!(log, "pair: answered {} {}", resp.status, resp.reason);
        let answer = pairing::parse_answer(&resp)?;
        dacp.add_pairing(answer.guid, &answer.name, &answer.device_type);
        let _ = writeln!(
            log,
            "paired: guid {} name {:?} type {:?}",
            pairing::format_guid(answer.guid),
            answer.name,
            answer.device_type
        );
        Ok(())
    }
    .await;
    match &result {
        Ok(()) => outcome.exit = Some(0),
        Err(e) => {
            let _ = writeln!(log, "FAIL pairing: {e:#}");
            outcome.exit = Some(1);
        }
    }
    if let Some(mut s) = remote {
        // Let the remote finish (pyatv prints its result when its stdin closes).
        let status = tokio::select! {
            st = s.child.wait() => st.ok(),
            _ = tokio::time::sleep_until(deadline) => { outcome.timed_out = true; None }
            _ = cancel.wait_for(|c| *c) => { outcome.interrupted = true; None }
        };
        super::external::kill_group(s.pgid);
        let _ = s.child.wait().await;
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(500), s.lines.recv()).await
        {
            let _ = writeln!(remote_out, "{line}");
        }
        let _ = writeln!(
            log,
            "remote: {}",
            match status {
                Some(st) => match (st.code(), st.signal()) {
                    (Some(c), _) => format!("exited {c}"),
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    _ => "ended".into(),
                },
                None => "killed at the timeout".into(),
            }
        );
        if outcome.timed_out || outcome.interrupted {
            outcome.exit = None;
        }
    }
    outcome.stdout = log;
    outcome.stderr = remote_out;
    outcome.duration = started.elapsed();
    outcome
}

/// The interface `ci/netns` gives its namespace (see that script).
const NETNS_INTERFACE: &str = "airtwin0";

/// Finds the remote as iTunes and an Apple TV do: browse `_touch-remote._tcp` and pick the
/// instance whose TXT `Pair` is the remote's (and `DvNm` its name, when given)
/// (docs/protocols/dacp.md).
async fn discover(
    spec: &PairClientSpec,
    deadline: tokio::time::Instant,
    log: &mut String,
) -> Result<SocketAddr> {
    if !crate::netns::inside() {
        bail!("discover browses mDNS, which airtwin does only inside ci/netns (netns: true)");
    }
    let interfaces = shell::mdns::Interfaces::Named(vec![NETNS_INTERFACE.to_string()]);
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let want_name = spec.remote_name.as_deref();
    let mut seen_lines = Vec::new();
    let found = shell::mdns::find(
        "_touch-remote._tcp.local.",
        &interfaces,
        left,
        |f| {
            !f.addresses.is_empty()
                && f.txt
                    .get("Pair")
                    .is_some_and(|p| p.eq_ignore_ascii_case(&spec.pair))
                && want_name.is_none_or(|n| f.txt.get("DvNm").map(String::as_str) == Some(n))
        },
        |f| {
            seen_lines.push(format!(
                "discover: {} at {:?}:{} Pair={} DvNm={}",
                f.fullname,
                f.addresses,
                f.port,
                f.txt.get("Pair").map(String::as_str).unwrap_or("-"),
                f.txt.get("DvNm").map(String::as_str).unwrap_or("-")
            ))
        },
    )
    .await?;
    for l in seen_lines {
        let _ = writeln!(log, "{l}");
    }
    let found = found.with_context(|| {
        format!(
            "no _touch-remote._tcp instance with Pair={}{} appeared",
            spec.pair,
            want_name
                .map(|n| format!(" and DvNm={n}"))
                .unwrap_or_default()
        )
    })?;
    let addr = SocketAddr::from((found.addresses[0], found.port));
    let _ = writeln!(log, "discover: pairing with {} at {addr}", found.fullname);
    Ok(addr)
}

/// The environment variable through which a `pair` client hands the remote it starts the
/// scenario's faults whose `when.device` is the client's name, as JSON `{"seed": N, "faults":
/// [...]}`: `airtwin client remote-pair` applies them at its fault seam; other remotes ignore it.
pub const REMOTE_FAULTS_ENV: &str = "AIRTWIN_REMOTE_FAULTS";

/// The value of [`REMOTE_FAULTS_ENV`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteFaults {
    pub seed: u64,
    pub faults: Vec<Fault>,
}

/// The scenario's faults for the remote that client `client` starts, as the value of
/// [`REMOTE_FAULTS_ENV`]; `None` when no fault names the client.
pub fn remote_faults_env(client: &str, faults: &[Fault], seed: u64) -> Option<String> {
    let faults: Vec<Fault> = faults
        .iter()
        .filter(|f| f.when.device.as_deref() == Some(client))
        .map(|f| {
            let mut f = f.clone();
            // The remote is the only device of its seam.
            f.when.device = None;
            f
        })
        .collect();
    if faults.is_empty() {
        return None;
    }
    serde_json::to_string(&RemoteFaults { seed, faults }).ok()
}

/// The faults [`REMOTE_FAULTS_ENV`] hands this remote, if any.
pub fn remote_faults_from_env() -> Result<Option<RemoteFaults>> {
    let Ok(text) = std::env::var(REMOTE_FAULTS_ENV) else {
        return Ok(None);
    };
    let given: RemoteFaults = serde_json::from_str(&text).with_context(|| {
        format!("{REMOTE_FAULTS_ENV} is not {{\"seed\": N, \"faults\": [...]}}")
    })?;
    for (i, f) in given.faults.iter().enumerate() {
        f.validate(&Scope::default())
            .with_context(|| format!("{REMOTE_FAULTS_ENV}: faults[{i}]"))?;
    }
    Ok(Some(given))
}

/// Options of `airtwin client remote-pair`.
pub struct RemoteOptions {
    pub config: RemoteConfig,
    /// The faults of the remote's seam: its `--answer` and `--delay-ms`, then the scenario's.
    pub faults: Vec<Fault>,
    pub seed: u64,
    pub port: u16,
    pub timeout: Duration,
}

/// `airtwin client remote-pair`: serves `/pair` on 127.0.0.1 until one request is answered or the
/// timeout passes. Exit status 0 when a pairing was answered 200.
pub async fn remote(opts: RemoteOptions) -> Result<bool> {
    let service = Arc::new(RemoteCore::new(opts.config.clone()));
    let listener = shell::bind(SocketAddr::from(([127, 0, 0, 1], opts.port))).await?;
    let port = listener.local_addr()?.port();
    let (stop_tx, stop_rx) = watch::channel(false);
    let recorder = Recorder::shared();
    let cfg = ShellConfig {
        device: "remote".into(),
        recorder: recorder.clone(),
        plan: Arc::new(FaultPlan::new(opts.seed, opts.faults)),
        limits: Limits::default(),
        idle_timeout: Duration::from_secs(30),
        shutdown: stop_rx,
        buffers: Default::default(),
    };
    shell::spawn(listener, service, cfg, "pair");
    println!(
        "remote-pair: Pair={} pairing web server at port {port}",
        opts.config.pair()
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + opts.timeout;
    let answered = loop {
        let answered = pair_requests(&recorder.snapshot());
        if !answered.is_empty() || Instant::now() >= deadline {
            break answered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The answer is written right after it is recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(true);
    if answered.is_empty() {
        println!("remote-pair: no pairing request within {:?}", opts.timeout);
        return Ok(false);
    }
    for (service_name, status) in &answered {
        let how = match status {
            Some(200) => "accepted".to_string(),
            Some(status) => format!("refused ({status})"),
            None => "closed without an answer".to_string(),
        };
        println!("remote-pair: request from servicename {service_name} {how}");
    }
    Ok(answered.iter().any(|(_, status)| *status == Some(200)))
}

/// Every finished `/pair` request among `events` (one with `pairingcode` and `servicename`): its
/// `servicename` and the status it was answered with, `None` when its connection closed first.
fn pair_requests(events: &[Event]) -> Vec<(String, Option<u16>)> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let EventKind::Request {
            index, method, uri, ..
        } = &e.kind
        else {
            continue;
        };
        let req = wire::Request::new(method, uri, wire::Protocol::Http11);
        let (true, Some(_), Some(service_name)) = (
            req.path() == "/pair",
            req.query_param("pairingcode"),
            req.query_param("servicename"),
        ) else {
            continue;
        };
        let answer = events[i + 1..]
            .iter()
            .filter(|later| later.connection == e.connection)
            .find_map(|later| match &later.kind {
                EventKind::Response {
                    index: n, status, ..
                } if n == index => Some(Some(*status)),
                EventKind::Closed { .. } => Some(None),
                _ => None,
            });
        if let Some(answer) = answer {
            out.push((service_name.to_string(), answer));
        }
    }
    out
}

/// Parses `--answer`.
pub fn parse_answer(s: &str) -> Result<RemoteAnswer> {
    Ok(match s {
        "ok" => RemoteAnswer::Ok,
        "500" | "error500" => RemoteAnswer::Error500,
        "malformed" => RemoteAnswer::Malformed,
        "no-cmpg" | "missing-guid" => RemoteAnswer::MissingGuid,
        other => bail!("--answer {other:?}: ok, 500, malformed or no-cmpg"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airtwin_simulators::fault::{Action, Match};

    fn fault(device: Option<&str>, action: Action) -> Fault {
        Fault {
            when: Match {
                device: device.map(str::to_string),
                ..Match::default()
            },
            action,
            times: None,
            after: 0,
            probability: 1.0,
        }
    }

    #[test]
    fn the_remote_gets_the_faults_that_name_its_client() {
        let faults = [
            fault(Some("lib"), Action::Drop),
            fault(Some("remote1"), Action::Delay(300)),
            fault(None, Action::Stall),
        ];
        let env = remote_faults_env("remote1", &faults, 9).unwrap();
        let given: RemoteFaults = serde_json::from_str(&env).unwrap();
        assert_eq!(given.seed, 9);
        assert_eq!(given.faults, [fault(None, Action::Delay(300))]);
        assert_eq!(remote_faults_env("remote2", &faults, 9), None);
    }

    fn event(connection: u64, kind: EventKind) -> Event {
        Event {
            at: Duration::ZERO,
            device: "remote".into(),
            connection: Some(connection),
            peer: None,
            kind,
        }
    }

    fn request(index: u64, uri: &str) -> EventKind {
        EventKind::Request {
            index,
            method: "GET".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            headers: Vec::new(),
            body: Vec::new(),
            content_type: None,
        }
    }

    fn response(index: u64, status: u16) -> EventKind {
        EventKind::Response {
            index,
            status,
            reason: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            content_type: None,
        }
    }

    #[test]
    fn finished_pair_requests_are_read_from_the_events() {
        let pair = "/pair?pairingcode=AB&servicename=CAFE";
        let events = [
            event(0, request(0, "/other")),
            event(0, response(0, 404)),
            event(1, request(0, pair)),
            event(2, request(0, pair)),
            event(
                2,
                EventKind::Closed {
                    reason: "dropped by fault".into(),
                },
            ),
            event(1, response(0, 503)),
            event(3, request(0, pair)),
        ];
        assert_eq!(
            pair_requests(&events),
            [("CAFE".to_string(), Some(503)), ("CAFE".to_string(), None)]
        );
    }
}
