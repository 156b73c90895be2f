//! `airtwin bench memory`: resident memory of devices started as `serve` starts them (through
//! `devices::start`, with a recorder bounded as `serve --events` bounds it), under N requests per
//! device kind on keep-alive loopback connections: `GET /info` on an Apple TV, `OPTIONS` with an
//! `Apple-Challenge` on an AirPort Express, `playstatusupdate` on iTunes.
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
use crate::devices::{self, RunContext};
use crate::scenario::{DeviceKind, DeviceSpec, Identity};

/// The device kinds measured, with the request each one answers.
const KINDS: [(DeviceKind, &str); 3] = [
    (DeviceKind::AppleTv, "GET /info"),
    (DeviceKind::AirportExpress, "OPTIONS + Apple-Challenge"),
    (DeviceKind::Itunes, "GET playstatusupdate"),
];

fn spec(kind: DeviceKind) -> DeviceSpec {
    DeviceSpec {
        kind,
        name: format!("bench-{}", kind.as_str()),
        port: 0,
        identity: Identity::default(),
        max_sessions: None,
        idle_timeout: None,
        dacp: None,
        address: None,
        spotify: None,
    }
}

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

/// One request of `kind` on `c` (`session`: the DACP session), its answer checked.
async fn request(
    kind: DeviceKind,
    c: &mut RtspClient,
    session: i128,
    rng: &mut impl Rng,
) -> Result<()> {
    let r = match kind {
        DeviceKind::AirportExpress => {
            let challenge = airtwin_simulators::raop::challenge::encode_b64(&rng.gen::<[u8; 16]>());
            let r = c
                .request("OPTIONS", "*", &[("Apple-Challenge", &challenge)], None)
                .await?;
            if !r.headers.contains("Apple-Response") {
                bail!("OPTIONS answered no Apple-Response");
            }
            r
        }
        DeviceKind::Itunes => {
            c.request_with(
                "GET",
                &format!("/ctrl-int/1/playstatusupdate?revision-number=0&session-id={session}"),
                Protocol::Http11,
                &[],
                None,
            )
            .await?
        }
        _ => {
            c.request_with("GET", "/info", Protocol::Http11, &[], None)
                .await?
        }
    };
    if r.status != 200 {
        bail!("{} answered {}", kind.as_str(), r.status);
    }
    Ok(())
}

/// `n` requests of `kind` to `addr` over `connections` keep-alive connections.
async fn load(addr: SocketAddr, kind: DeviceKind, n: u64, connections: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for i in 0..connections {
        let share = n / connections as u64 + u64::from((i as u64) < n % connections as u64);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
            let session = match kind {
                DeviceKind::Itunes => login(&mut c).await?,
                _ => 0,
            };
            for _ in 0..share {
                request(kind, &mut c, session, &mut rng).await?;
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

/// Prints the figures: `requests` per kind, `events` kept in memory (0: all).
pub async fn run(requests: u64, connections: usize, events: usize) -> Result<()> {
    super::scale::raise_fd_limit();
    let connections = connections.max(1);
    println!(
        "airtwin bench memory: {requests} requests per device kind on {connections} keep-alive loopback connections; events kept in memory: {}",
        if events == 0 { "all (as `airtwin run`)".to_string() } else { events.to_string() }
    );
    for (kind, what) in KINDS {
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
        };
        let device = devices::start(&spec(kind), &ctx)
            .await
            .with_context(|| format!("{} did not start", kind.as_str()))?;
        let addr = SocketAddr::new(device.address, device.port());
        let started = Instant::now();
        let before = rss_kib().unwrap_or(0);
        let first = (requests / 10).max(1);
        load(addr, kind, first, connections).await?;
        let reference = rss_kib().unwrap_or(0);
        load(addr, kind, requests.saturating_sub(first), connections).await?;
        let after = rss_kib().unwrap_or(0);
        println!(
            "{:<16} {what}: RSS {:.1} MB before, {:.1} MB after the first {first} (reference), {:.1} MB after {requests} = {:+.1} MB over the reference; {} events recorded, {} in memory; {:.1}s",
            kind.as_str(),
            mb(before),
            mb(reference),
            mb(after),
            mb(after) - mb(reference),
            recorder.len(),
            recorder.len() - recorder.first_kept() as usize,
            started.elapsed().as_secs_f64()
        );
        let _ = stop_tx.send(true);
        device.abort();
    }
    Ok(())
}
