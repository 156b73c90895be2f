//! `airtwin client hap`: a HomeKit controller for an Apple TV 4K's AirPlay port
//! (docs/protocols/hap.md). It pairs (PIN or transient), pair-verifies, and sends one request on
//! the encrypted channel, checking what pyatv does not: the M4 proof and the M6 signature. Like a
//! real controller it keeps its credentials (pyatv's `ltpk:ltsk:atv_id:client_id` format) and
//! reuses them on the next run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use airtwin_simulators::hap::channel::Channel;
use airtwin_simulators::hap::identity::Credentials;
use airtwin_simulators::hap::pair_setup::SetupClient;
use airtwin_simulators::hap::pair_verify::VerifyClient;
use airtwin_simulators::wire::{self, Limits, Protocol, Request, Response};
use anyhow::{bail, Context as _, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Options {
    pub addr: SocketAddr,
    pub pin: String,
    pub transient: bool,
    /// Where credentials are kept: read when present (no pair-setup then), written after one.
    pub credentials: Option<PathBuf>,
    pub seed: u64,
    pub timeout: Duration,
}

/// One connection, in the clear until a pairing gives it a channel.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    channel: Option<Channel>,
    timeout: Duration,
}

impl Conn {
    pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            channel: None,
            timeout,
        })
    }

    pub async fn send(&mut self, req: &Request) -> Result<Response> {
        let bytes = req.encode();
        let bytes = match self.channel.as_mut() {
            Some(ch) => ch.seal(&bytes),
            None => bytes,
        };
        self.stream.write_all(&bytes).await?;
        loop {
            if let Some((resp, used)) = wire::parse_response(&self.buf, &Limits::default())? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .with_context(|| format!("no answer to {} {} in time", req.method, req.uri))??;
            if n == 0 {
                bail!(
                    "connection closed before the answer to {} {}",
                    req.method,
                    req.uri
                );
            }
            match self.channel.as_mut() {
                Some(ch) => {
                    let plain = ch.open(&chunk[..n]).context("encrypted answer")?;
                    self.buf.extend_from_slice(&plain);
                }
                None => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn post(&mut self, path: &str, hkp: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        let mut r = Request::new("POST", path, Protocol::Http11);
        r.headers.set("User-Agent", "AirPlay/320.20");
        r.headers.set("X-Apple-HKP", hkp);
        r.headers.set("Content-Type", "application/octet-stream");
        r.headers.set("Content-Length", body.len().to_string());
        r.body = body;
        let resp = self.send(&r).await?;
        if resp.status != 200 {
            bail!("POST {path}: status {}", resp.status);
        }
        Ok(resp.body)
    }
}

/// A controller's pairing identifier: a UUID-shaped text drawn from the seed, as pyatv's
/// controllers send (docs/protocols/hap.md).
pub(crate) fn controller_id(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let b: [u8; 16] = rng.gen();
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
    .into_bytes()
}

/// The credentials stored at `path` by an earlier pairing, if the file exists.
pub(crate) fn stored(path: &Option<PathBuf>) -> Result<Option<Credentials>> {
    match path {
        Some(p) if p.exists() => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Some(Credentials::parse(&text).with_context(|| {
                format!("credentials in {}", p.display())
            })?))
        }
        _ => Ok(None),
    }
}

/// Reports credentials that pair-setup just gave (its M4 proof and M6 signature checked) and
/// keeps them at `path`, as a controller stores them for its next pair-verify.
pub(crate) fn keep(
    creds: &Credentials,
    path: &Option<PathBuf>,
    say: &mut impl FnMut(String),
) -> Result<()> {
    say(format!(
        "OK pair-setup M1-M6 with accessory {}: M4 proof and M6 signature checked",
        String::from_utf8_lossy(&creds.accessory_id)
    ));
    say(format!("credentials {creds}"));
    if let Some(p) = path {
        std::fs::write(p, format!("{creds}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// PIN pair-setup M1-M6 on `conn`, checking the M4 proof and the M6 signature.
pub async fn pair_setup(
    conn: &mut Conn,
    pin: &str,
    secret: [u8; 32],
    id: Vec<u8>,
) -> Result<Credentials> {
    conn.post("/pair-pin-start", "3", Vec::new()).await?;
    let mut c = SetupClient::new(pin, false, secret, id);
    let m2 = conn.post("/pair-setup", "3", c.m1()).await?;
    let m4 = conn
        .post("/pair-setup", "3", c.m3(&m2).context("M2")?)
        .await?;
    c.m4(&m4).context("M4")?;
    let m6 = conn
        .post("/pair-setup", "3", c.m5(Some("airtwin")).context("M5")?)
        .await?;
    c.m6(&m6).context("M6")
}

/// Pair-verify M1-M4 on `conn`, checking the accessory's identifier and signature; the
/// connection is encrypted afterwards. Returns the shared secret, the root of the keys of the
/// session's other channels (docs/protocols/mrp.md, "Keys").
pub async fn pair_verify(
    conn: &mut Conn,
    creds: Credentials,
    ephemeral: [u8; 32],
) -> Result<Vec<u8>> {
    let mut v = VerifyClient::new(creds, ephemeral);
    let m2 = conn.post("/pair-verify", "3", v.m1()).await?;
    let m4 = conn
        .post("/pair-verify", "3", v.m3(&m2).context("pair-verify M2")?)
        .await?;
    let shared = v.m4(&m4).context("pair-verify M4")?;
    conn.channel = Some(Channel::controller(&shared));
    Ok(shared.to_vec())
}

/// Runs the client; every line it prints goes to `log` too.
pub async fn run(opts: &Options, log: &mut String) -> Result<()> {
    let mut say = |line: String| {
        println!("{line}");
        log.push_str(&line);
        log.push('\n');
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x4841_5043);
    let mut conn = Conn::open(opts.addr, opts.timeout).await?;
    if opts.transient {
        conn.post("/pair-pin-start", "4", Vec::new()).await?;
        let mut c = SetupClient::new("", true, rng.gen(), controller_id(&mut rng));
        let m2 = conn.post("/pair-setup", "4", c.m1()).await?;
        let m4 = conn
            .post("/pair-setup", "4", c.m3(&m2).context("M2")?)
            .await?;
        let key = c.m4(&m4).context("M4")?;
        say("OK transient pair-setup M1-M4: M4 proof checked".into());
        conn.channel = Some(Channel::controller(&key));
    } else {
        let stored = stored(&opts.credentials)?;
        let creds = match stored {
            Some(c) => {
                say(format!(
                    "OK reusing credentials for accessory {}",
                    String::from_utf8_lossy(&c.accessory_id)
                ));
                c
            }
            None => {
                let creds =
                    pair_setup(&mut conn, &opts.pin, rng.gen(), controller_id(&mut rng)).await?;
                keep(&creds, &opts.credentials, &mut say)?;
                creds
            }
        };
        conn = Conn::open(opts.addr, opts.timeout).await?;
        pair_verify(&mut conn, creds, rng.gen()).await?;
        say("OK pair-verify M1-M4: accessory identifier and signature checked".into());
    }
    let resp = conn
        .send(&Request::new("GET", "/info", Protocol::Http11))
        .await
        .context("encrypted GET /info")?;
    if resp.status != 200 {
        bail!("encrypted GET /info: status {}", resp.status);
    }
    say(format!(
        "OK encrypted GET /info: 200, {} bytes",
        resp.body.len()
    ));
    Ok(())
}
