//! `airtwin client companion`: a Companion client for an Apple TV 4K (docs/protocols/companion.md).
//! It pairs over Companion (PS_Start/PS_Next, checking the M4 proof and the M6 signature) unless
//! it has stored credentials, pair-verifies on a new connection (checking the accessory's
//! identifier and signature), then runs pyatv's connect sequence and the calls asked for: the app
//! list, a launch, power state, turning the device off or on. It checks what pyatv lets pass:
//! every frame's tag, that each response is a response (`_t` 3) echoing its request's `_x`, that
//! `_sessionStart` answers a `_sid`, that the app list is a dictionary of strings, that
//! `FetchAttentionState` is a known state, and that turning the device off pushes `SystemStatus`
//! asleep to a client that registered for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use airtwin_simulators::companion::client::{Client, Incoming};
use airtwin_simulators::companion::frame::FrameType;
use airtwin_simulators::companion::message::{Message, MessageType};
use airtwin_simulators::companion::opack::Value;
use airtwin_simulators::hap::pair_setup::SetupClient;
use airtwin_simulators::hap::pair_verify::VerifyClient;
use anyhow::{bail, Context as _, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::hap::{controller_id, keep, stored};

/// What to do to the device's power after the other calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PowerCommand {
    On,
    Off,
}

pub struct Options {
    pub addr: SocketAddr,
    pub pin: String,
    /// Read when present (no pair-setup then), written after a pair-setup.
    pub credentials: Option<PathBuf>,
    pub apps: bool,
    pub launch: Option<String>,
    pub power: Option<PowerCommand>,
    pub seed: u64,
    pub timeout: Duration,
}

struct Conn {
    stream: TcpStream,
    client: Client,
    /// Events that arrived while waiting for a response.
    events: Vec<Message>,
    timeout: Duration,
}

impl Conn {
    async fn open(addr: SocketAddr, first_xid: i64, timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Conn {
            stream,
            client: Client::new(first_xid),
            events: Vec::new(),
            timeout,
        })
    }

    /// The next thing the device sends.
    async fn receive(&mut self, waiting_for: &str) -> Result<Incoming> {
        loop {
            if let Some(i) = self.client.next_incoming()? {
                return Ok(i);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .with_context(|| format!("no answer to {waiting_for} in time"))??;
            if n == 0 {
                bail!("connection closed before the answer to {waiting_for}");
            }
            self.client.push(&chunk[..n]);
        }
    }

    async fn pairing(&mut self, kind: FrameType, tlv: &[u8], what: &str) -> Result<Vec<u8>> {
        let bytes = self.client.pairing(kind, tlv)?;
        self.stream.write_all(&bytes).await?;
        let want = match kind {
            FrameType::PsStart | FrameType::PsNext => FrameType::PsNext,
            _ => FrameType::PvNext,
        };
        match self.receive(what).await? {
            Incoming::Pairing { kind, tlv } if kind == want => Ok(tlv),
            other => bail!("{what}: expected a {} frame, got {other:?}", want.name()),
        }
    }

    /// Sends request `name` and gives its response's content, checking `_t` and `_x`.
    async fn request(&mut self, name: &str, content: Value) -> Result<Value> {
        let (xid, bytes) = self.client.request(name, content)?;
        self.stream.write_all(&bytes).await?;
        loop {
            match self.receive(name).await? {
                Incoming::Message(m) if m.kind == MessageType::Event => self.events.push(m),
                Incoming::Message(m) => {
                    if m.kind != MessageType::Response {
                        bail!("{name}: answered by a message of type {:?}", m.kind);
                    }
                    if m.xid != Some(xid) {
                        bail!("{name}: response carries _x {:?}, the request {xid}", m.xid);
                    }
                    if let Some(e) = m.error {
                        bail!("{name}: device answered error {}: {e}", m.content);
                    }
                    return Ok(m.content);
                }
                Incoming::NoOp => {}
                other => bail!("{name}: expected a response, got {other:?}"),
            }
        }
    }

    async fn event(&mut self, name: &str, content: Value) -> Result<()> {
        let bytes = self.client.event(name, content)?;
        self.stream.write_all(&bytes).await?;
        Ok(())
    }
}

fn power_state(content: &Value) -> Result<&'static str> {
    match content.get("state").and_then(Value::as_int) {
        Some(1) => Ok("off (asleep)"),
        Some(2) => Ok("on (screensaver)"),
        Some(3) => Ok("on (awake)"),
        Some(4) => Ok("on (idle)"),
        other => bail!("FetchAttentionState: state {other:?} is none of 1..4"),
    }
}

fn interest(name: &str) -> Value {
    Value::dict([("_regEvents", Value::Array(vec![Value::str(name)]))])
}

/// Runs the client; every line it prints goes to `log` too.
pub async fn run(opts: &Options, log: &mut String) -> Result<()> {
    let mut say = |line: String| {
        println!("{line}");
        log.push_str(&line);
        log.push('\n');
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x4350_4E43);
    let creds = match stored(&opts.credentials)? {
        Some(c) => {
            say(format!(
                "OK reusing credentials for accessory {}",
                String::from_utf8_lossy(&c.accessory_id)
            ));
            c
        }
        None => {
            let mut conn = Conn::open(opts.addr, 0, opts.timeout).await?;
            let mut setup = SetupClient::new(&opts.pin, false, rng.gen(), controller_id(&mut rng));
            let m2 = conn
                .pairing(FrameType::PsStart, &setup.m1(), "pair-setup M1")
                .await?;
            let m3 = setup.m3(&m2).context("pair-setup M2")?;
            let m4 = conn
                .pairing(FrameType::PsNext, &m3, "pair-setup M3")
                .await?;
            setup.m4(&m4).context("pair-setup M4")?;
            let m5 = setup.m5(Some("airtwin")).context("pair-setup M5")?;
            let m6 = conn
                .pairing(FrameType::PsNext, &m5, "pair-setup M5")
                .await?;
            let creds = setup.m6(&m6).context("pair-setup M6")?;
            keep(&creds, &opts.credentials, &mut say)?;
            creds
        }
    };
    let mut conn = Conn::open(opts.addr, rng.gen_range(0..1 << 16), opts.timeout).await?;
    let mut verify = VerifyClient::new(creds, rng.gen());
    let m2 = conn
        .pairing(FrameType::PvStart, &verify.m1(), "pair-verify M1")
        .await?;
    let m3 = verify.m3(&m2).context("pair-verify M2")?;
    let m4 = conn
        .pairing(FrameType::PvNext, &m3, "pair-verify M3")
        .await?;
    let shared = verify.m4(&m4).context("pair-verify M4")?;
    conn.client.encrypt(&shared);
    say("OK pair-verify M1-M4: accessory identifier and signature checked".into());

    let info = conn
        .request(
            "_systemInfo",
            Value::dict([
                ("name", Value::str("airtwin")),
                ("model", Value::str("iPhone10,6")),
            ]),
        )
        .await?;
    let sid = conn
        .request(
            "_sessionStart",
            Value::dict([
                ("_srvT", Value::str("com.apple.tvremoteservices")),
                ("_sid", Value::Int(i64::from(rng.gen::<u32>()))),
            ]),
        )
        .await?;
    if sid.get("_sid").and_then(Value::as_int).is_none() {
        bail!("_sessionStart: no _sid in {sid}");
    }
    conn.event("_interest", interest("SystemStatus")).await?;
    let state = conn
        .request("FetchAttentionState", Value::Dict(vec![]))
        .await?;
    say(format!(
        "OK encrypted session with {}: {}",
        info.get("name").and_then(Value::as_str).unwrap_or("?"),
        power_state(&state)?
    ));
    if opts.apps {
        let apps = conn
            .request("FetchLaunchableApplicationsEvent", Value::Dict(vec![]))
            .await?;
        let Value::Dict(pairs) = &apps else {
            bail!("FetchLaunchableApplicationsEvent: content {apps} is no dictionary");
        };
        let mut names = Vec::new();
        for (k, v) in pairs {
            let (Some(id), Some(name)) = (k.as_str(), v.as_str()) else {
                bail!("FetchLaunchableApplicationsEvent: {k}: {v} is not bundle id: name");
            };
            names.push(format!("{name} ({id})"));
        }
        say(format!(
            "OK app list: {} apps: {}",
            names.len(),
            names.join(", ")
        ));
    }
    if let Some(bundle) = &opts.launch {
        conn.request(
            "_launchApp",
            Value::dict([("_bundleID", Value::str(bundle.clone()))]),
        )
        .await?;
        say(format!("OK launched {bundle}"));
    }
    if let Some(p) = opts.power {
        let (button, want) = match p {
            PowerCommand::Off => (12, 1),
            PowerCommand::On => (13, 3),
        };
        let awake_before = state.get("state").and_then(Value::as_int) != Some(1);
        conn.events.clear();
        conn.request(
            "_hidC",
            Value::dict([("_hBtS", Value::Int(2)), ("_hidC", Value::Int(button))]),
        )
        .await?;
        let state = conn
            .request("FetchAttentionState", Value::Dict(vec![]))
            .await?;
        if state.get("state").and_then(Value::as_int) != Some(want) {
            bail!(
                "after turning {p:?} the device says {}",
                power_state(&state)?
            );
        }
        let changed = awake_before != (want == 3);
        let pushed = conn
            .events
            .iter()
            .any(|e| e.name.as_deref() == Some("SystemStatus"));
        if changed && !pushed {
            bail!("turning {p:?} changed the power state but pushed no SystemStatus event");
        }
        say(format!(
            "OK turned {}: {}{}",
            if want == 1 { "off" } else { "on" },
            power_state(&state)?,
            if pushed { ", SystemStatus pushed" } else { "" }
        ));
    }
    Ok(())
}
