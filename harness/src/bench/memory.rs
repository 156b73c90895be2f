//! `airtwin bench memory`: resident memory of devices started as `serve` starts them (through
//! `devices::start`, with a recorder bounded as `serve --events` bounds it), under N requests per
//! device kind on keep-alive loopback connections: `GET /info` on an Apple TV and on an Apple TV
//! 4K (with a HomeKit pair-verify on a new connection per 1000), `OPTIONS` with an
//! `Apple-Challenge` on an AirPort Express, `playstatusupdate` on iTunes, apresolve and AP logins
//! on a Spotify AP ([`Load`]).
//!
//! For each kind it prints `VmRSS` before any request, after the first 10% of the requests (the
//! reference, measured in the same run) and at the end: a device whose memory is bounded grows
//! by about nothing between the last two. `--events 0` keeps every event, as `airtwin run` does,
//! for comparison.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::fault::FaultPlan;
use airtwin_simulators::shell::Recorder;
use airtwin_simulators::wire::Protocol;
use anyhow::{bail, Context as _, Result};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use super::scale::rss_kib;
use crate::clients::rtsp::RtspClient;
use crate::devices::{self, Device, RunContext};
use crate::scenario::model::{Generation, SpotifySpec};
use crate::scenario::{DeviceKind, DeviceSpec, Identity};
use airtwin_simulators::spotify_ap::session::Account;

/// What the bench (and `bench soak`) drives on each device kind: the device and its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// `GET /info` on an Apple TV (3).
    AppleTv,
    /// `GET /info` on an Apple TV with the 4K identity (HomeKit pairing), and a HomeKit
    /// pair-verify with one encrypted `GET /info` on a new connection every
    /// [`SPOTIFY_LOGIN_EVERY`] requests ([`HapTarget`]).
    AppleTv4k,
    /// `OPTIONS` with an `Apple-Challenge` on an AirPort Express.
    AirportExpress,
    /// `GET playstatusupdate` on iTunes, after a DACP login.
    Itunes,
    /// `GET /?type=accesspoint` on the Spotify AP's apresolve, and an AP login (hello, DH,
    /// Login, APWelcome on a new connection) every [`SPOTIFY_LOGIN_EVERY`] requests.
    SpotifyAp,
}

/// One Spotify AP login per this many apresolve requests: a login costs an RSA signature and
/// a Diffie-Hellman exchange, about a thousand times a request.
pub const SPOTIFY_LOGIN_EVERY: u64 = 1000;

impl Load {
    pub const ALL: [Load; 5] = [
        Load::AppleTv,
        Load::AppleTv4k,
        Load::AirportExpress,
        Load::Itunes,
        Load::SpotifyAp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Load::AppleTv => "apple-tv",
            Load::AppleTv4k => "apple-tv-4k",
            Load::AirportExpress => "airport-express",
            Load::Itunes => "itunes",
            Load::SpotifyAp => "spotify-ap",
        }
    }

    /// The load named `name` (as [`Load::name`] writes it).
    pub fn parse(name: &str) -> Result<Load, String> {
        Load::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Load::ALL.iter().map(|l| l.name()).collect();
                format!("unknown kind {name:?}; one of {}", names.join(", "))
            })
    }

    pub fn what(self) -> &'static str {
        match self {
            Load::AppleTv => "GET /info",
            Load::AppleTv4k => "GET /info + a pair-verify per 1000",
            Load::AirportExpress => "OPTIONS + Apple-Challenge",
            Load::Itunes => "GET playstatusupdate",
            Load::SpotifyAp => "apresolve GET + a login per 1000",
        }
    }

    /// The scenario entry of the device, named `name`.
    pub fn spec(self, name: &str) -> DeviceSpec {
        let kind = match self {
            Load::AppleTv | Load::AppleTv4k => DeviceKind::AppleTv,
            Load::AirportExpress => DeviceKind::AirportExpress,
            Load::Itunes => DeviceKind::Itunes,
            Load::SpotifyAp => DeviceKind::SpotifyAp,
        };
        let mut identity = Identity::default();
        if self == Load::AppleTv4k {
            identity.generation = Some(Generation::FourK);
        }
        let spotify = (self == Load::SpotifyAp).then(|| SpotifySpec {
            accounts: vec![Account {
                username: SPOTIFY_USER.into(),
                password: Some(SPOTIFY_USER.into()),
                refuse: None,
            }],
            ..Default::default()
        });
        DeviceSpec {
            kind,
            name: name.to_string(),
            port: 0,
            identity,
            max_sessions: None,
            idle_timeout: None,
            dacp: None,
            address: None,
            spotify,
            companion: None,
        }
    }

    /// Where the requests go: the device's main port, apresolve for the Spotify AP.
    pub fn addr(self, device: &Device) -> SocketAddr {
        let port = match self {
            Load::SpotifyAp => device.ports.get("apresolve").copied().unwrap_or(0),
            _ => device.port(),
        };
        SocketAddr::new(device.address, port)
    }
}

/// The account the Spotify AP of the benches accepts (password: the same).
const SPOTIFY_USER: &str = "bench";

/// Logs in to a DACP library with the GUID it trusts by default (README, "iTunes and Apple TV
/// remote control"); answers the session id.
async fn login(c: &mut RtspClient) -> Result<i128> {
    use airtwin_simulators::wire::dmap;
    let r = c
        .request_with(
            "GET",
            "/login?pairing-guid=0x0000000000000001&hasFP=1",
            Protocol::Http11,
            &[],
            None,
        )
        .await?;
    let items = dmap::decode(&r.body).context("login answer")?;
    dmap::first(&items, &[b"mlog", b"mlid"])
        .and_then(|v| v.as_int())
        .context("login answered no mlid")
}

/// A Spotify AP to log in to: its address and the key its signature verifies with.
#[derive(Clone)]
pub struct ApTarget {
    addr: SocketAddr,
    key: rsa::RsaPublicKey,
}

impl ApTarget {
    /// The AP of a `spotify-ap` device.
    pub fn of(device: &Device) -> Result<Self> {
        let ap = device
            .parts
            .spotify_ap
            .as_ref()
            .context("a spotify-ap device without its AP")?;
        let port = device.ports.get("spotify-ap").copied().unwrap_or(0);
        Ok(ApTarget {
            addr: SocketAddr::new(device.address, port),
            key: ap.config.identity.public(),
        })
    }

    /// One login on a new connection, until APWelcome (docs/protocols/spotify-ap.md, "Session").
    pub async fn login(&self, seed: u64) -> Result<()> {
        use airtwin_simulators::spotify_ap::client::{ClientConfig, Credentials};
        let config = ClientConfig {
            username: SPOTIFY_USER.into(),
            credentials: Credentials::Password(SPOTIFY_USER.into()),
            server_key: self.key.clone(),
            seed,
        };
        crate::clients::spotify::log_in(self.addr, config, Duration::from_secs(10))
            .await
            .context("spotify login")
    }
}

/// An Apple TV 4K to open HomeKit sessions on: paired once with its PIN (pair-setup M1-M6),
/// then each [`HapTarget::verify`] is a new connection, pair-verify M1-M4 and one encrypted
/// `GET /info` (docs/protocols/hap.md).
#[derive(Clone)]
pub struct HapTarget {
    addr: SocketAddr,
    creds: airtwin_simulators::hap::identity::Credentials,
}

impl HapTarget {
    /// Pairs with the AirPlay port of an `apple-tv` device of the 4K generation.
    pub async fn pair(device: &Device) -> Result<Self> {
        use crate::clients::hap::{pair_setup, Conn};
        let addr = SocketAddr::new(device.address, device.port());
        let pin = device
            .ready()
            .identity
            .get("pin")
            .cloned()
            .context("an Apple TV 4K without a PIN")?;
        let mut conn = Conn::open(addr, Duration::from_secs(10)).await?;
        let creds = pair_setup(&mut conn, &pin, [0x42; 32], b"BENCH".to_vec())
            .await
            .context("pair-setup")?;
        Ok(HapTarget { addr, creds })
    }

    /// One HomeKit session on a new connection, closed after its encrypted request.
    pub async fn verify(&self, seed: u64) -> Result<()> {
        use crate::clients::hap::{pair_verify, Conn};
        use airtwin_simulators::wire::Request;
        let mut ephemeral = [0u8; 32];
        ephemeral[..8].copy_from_slice(&seed.to_le_bytes());
        ephemeral[8] = 1;
        let mut conn = Conn::open(self.addr, Duration::from_secs(10)).await?;
        pair_verify(&mut conn, self.creds.clone(), ephemeral)
            .await
            .context("pair-verify")?;
        let r = conn
            .send(&Request::new("GET", "/info", Protocol::Http11))
            .await?;
        if r.status != 200 {
            bail!("encrypted GET /info answered {}", r.status);
        }
        Ok(())
    }
}

/// A keep-alive connection of one [`Load`], logged in where the kind needs it.
pub struct LoadClient {
    load: Load,
    addr: SocketAddr,
    conn: RtspClient,
    session: i128,
    rng: rand_chacha::ChaCha8Rng,
}

impl LoadClient {
    pub async fn connect(load: Load, device: &Device, seed: u64) -> Result<Self> {
        let addr = load.addr(device);
        let (conn, session) = Self::open(load, addr).await?;
        Ok(LoadClient {
            load,
            addr,
            conn,
            session,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        })
    }

    async fn open(load: Load, addr: SocketAddr) -> Result<(RtspClient, i128)> {
        let mut conn = RtspClient::connect(addr, Duration::from_secs(10)).await?;
        let session = match load {
            Load::Itunes => login(&mut conn).await?,
            _ => 0,
        };
        Ok((conn, session))
    }

    /// A new connection in place of this one (after the device dropped it), logged in again.
    pub async fn reconnect(&mut self) -> Result<()> {
        let (conn, session) = Self::open(self.load, self.addr).await?;
        self.conn = conn;
        self.session = session;
        Ok(())
    }

    /// One request; answers its status (its answer checked when 200).
    pub async fn request(&mut self) -> Result<u16> {
        let c = &mut self.conn;
        let r = match self.load {
            Load::AirportExpress => {
                let challenge =
                    airtwin_simulators::raop::challenge::encode_b64(&self.rng.gen::<[u8; 16]>());
                let r = c
                    .request("OPTIONS", "*", &[("Apple-Challenge", &challenge)], None)
                    .await?;
                if r.status == 200 && !r.headers.contains("Apple-Response") {
                    bail!("OPTIONS answered no Apple-Response");
                }
                r
            }
            Load::Itunes => {
                c.request_with(
                    "GET",
                    &format!(
                        "/ctrl-int/1/playstatusupdate?revision-number=0&session-id={}",
                        self.session
                    ),
                    Protocol::Http11,
                    &[],
                    None,
                )
                .await?
            }
            Load::SpotifyAp => {
                c.request_with("GET", "/?type=accesspoint", Protocol::Http11, &[], None)
                    .await?
            }
            Load::AppleTv | Load::AppleTv4k => {
                c.request_with("GET", "/info", Protocol::Http11, &[], None)
                    .await?
            }
        };
        Ok(r.status)
    }
}

/// `n` requests of `load` to `device` over `connections` keep-alive connections.
async fn load(device: &Device, load: Load, n: u64, connections: usize) -> Result<()> {
    let mut tasks = Vec::new();
    let hap = match load {
        Load::AppleTv4k => Some(HapTarget::pair(device).await?),
        _ => None,
    };
    for i in 0..connections {
        let share = n / connections as u64 + u64::from((i as u64) < n % connections as u64);
        let mut client = LoadClient::connect(load, device, i as u64).await?;
        let ap = match load {
            Load::SpotifyAp => Some(ApTarget::of(device)?),
            _ => None,
        };
        let hap = hap.clone();
        tasks.push(tokio::spawn(async move {
            // Requests until the next AP login or HomeKit session (the first comes at once).
            let mut to_login = 0u64;
            for k in 0..share {
                let status = client.request().await?;
                if status != 200 {
                    bail!("{} answered {status}", load.name());
                }
                if ap.is_some() || hap.is_some() {
                    if to_login == 0 {
                        let seed = k ^ ((i as u64) << 32);
                        if let Some(ap) = &ap {
                            ap.login(seed).await?;
                        }
                        if let Some(hap) = &hap {
                            hap.verify(seed).await?;
                        }
                        to_login = SPOTIFY_LOGIN_EVERY;
                    }
                    to_login -= 1;
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints the figures: `requests` per kind of `kinds` (empty: every kind), `events` kept in
/// memory (0: all).
pub async fn run(requests: u64, connections: usize, events: usize, kinds: &[Load]) -> Result<()> {
    super::scale::raise_fd_limit();
    let connections = connections.max(1);
    println!(
        "airtwin bench memory: {requests} requests per device kind on {connections} keep-alive loopback connections; events kept in memory: {}",
        if events == 0 { "all (as `airtwin run`)".to_string() } else { events.to_string() }
    );
    for kind in Load::ALL {
        if !kinds.is_empty() && !kinds.contains(&kind) {
            continue;
        }
        let what = kind.what();
        let recorder = if events == 0 {
            Recorder::shared()
        } else {
            Arc::new(Recorder::bounded(events))
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = RunContext {
            recorder: recorder.clone(),
            plan: Arc::new(FaultPlan::empty()),
            seed: 0,
            shutdown: stop_rx,
            base_dir: std::path::PathBuf::from("."),
            capture: airtwin_simulators::raop::CapturePolicy {
                window: Some(crate::serve::CAPTURE_WINDOW),
                sessions: Some(crate::serve::CAPTURE_SESSIONS),
                sink: None,
            },
            buffers: None,
        };
        let device = devices::start(&kind.spec(&format!("bench-{}", kind.name())), &ctx)
            .await
            .with_context(|| format!("{} did not start", kind.name()))?;
        let started = Instant::now();
        let before = rss_kib().unwrap_or(0);
        let first = (requests / 10).max(1);
        load(&device, kind, first, connections).await?;
        let reference = rss_kib().unwrap_or(0);
        // The rest in nine steps, RSS after each: flat memory shows as a flat row, not only as
        // equal ends.
        let rest = requests.saturating_sub(first);
        let mut trend = Vec::new();
        for step in 0..9u64 {
            let n = rest / 9 + u64::from(step < rest % 9);
            load(&device, kind, n, connections).await?;
            trend.push(format!("{:.1}", mb(rss_kib().unwrap_or(0))));
        }
        let after = rss_kib().unwrap_or(0);
        println!(
            "{:<16} {what}: RSS {:.1} MB before, {:.1} MB after the first {first} (reference), {:.1} MB after {requests} = {:+.1} MB over the reference; {} events recorded, {} in memory; {:.1}s",
            kind.name(),
            mb(before),
            mb(reference),
            mb(after),
            mb(after) - mb(reference),
            recorder.len(),
            recorder.len() - recorder.first_kept() as usize,
            started.elapsed().as_secs_f64()
        );
        println!(
            "{:<16} RSS after each further tenth, MB: {}",
            "",
            trend.join(" ")
        );
        let _ = stop_tx.send(true);
        device.abort();
    }
    Ok(())
}
