//! `airtwin bench raop`: how fast the fake AirPort Express answers, as ratios against the raw
//! RSA-2048 private-key rate of this machine, measured in the same run.
//!
//! Every RAOP handshake costs two private-key operations (the `Apple-Response` signature and the
//! `rsaaeskey` decryption), so the RSA rate bounds it (docs/performance.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::fault::FaultPlan;
use airtwin_simulators::raop::challenge::{self, encode_b64};
use airtwin_simulators::raop::{keys, RaopConfig, RaopService};
use airtwin_simulators::service::Service;
use airtwin_simulators::shell::Recorder;
use airtwin_simulators::shell::{self, ShellConfig};
use airtwin_simulators::wire::Limits;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::clients::rtsp::RtspClient;

/// Which implementation of the private-key operation to measure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RsaImpl {
    /// The one devices use ([`keys::DeviceKey::backend`]).
    Device,
    /// The `rsa` crate.
    RsaCrate,
}

/// Raw private-key operations per second, one thread per core, for `dur`.
pub fn rsa_ops_per_sec(threads: usize, dur: Duration, which: RsaImpl) -> f64 {
    let key = Arc::new(keys::airport_express());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (key, stop, count) = (key.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut buf = [t as u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    buf[0] = buf[0].wrapping_add(1);
                    let _ = match which {
                        RsaImpl::Device => key.sign_raw(&buf),
                        RsaImpl::RsaCrate => key.sign_raw_rsa_crate(&buf),
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Serves `service` on 127.0.0.1:0 with no faults until the returned sender flips.
pub(crate) async fn serve_on_loopback<S: Service>(
    service: Arc<S>,
    name: &str,
    service_name: &str,
) -> Result<(SocketAddr, watch::Sender<bool>)> {
    let listener = shell::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let cfg = ShellConfig {
        device: name.into(),
        // The bench measures the device, not transcript growth: events go to a recorder that is
        // dropped with the device.
        recorder: Recorder::shared(),
        plan: Arc::new(FaultPlan::empty()),
        limits: Limits::default(),
        idle_timeout: Duration::from_secs(30),
        shutdown: rx,
    };
    shell::spawn(listener, service, cfg, service_name);
    Ok((addr, tx))
}

async fn start_device() -> Result<(SocketAddr, watch::Sender<bool>)> {
    let mut config = RaopConfig::airport_express("bench");
    config.max_sessions = usize::MAX;
    serve_on_loopback(Arc::new(RaopService::new(config)), "bench", "raop").await
}

/// One full sender handshake on a new connection: OPTIONS+challenge, ANNOUNCE+rsaaeskey, SETUP,
/// RECORD, TEARDOWN.
async fn handshake(
    addr: SocketAddr,
    rng: &mut rand_chacha::ChaCha8Rng,
    wrapped_key: &str,
) -> Result<()> {
    let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
    let challenge = encode_b64(&rng.gen::<[u8; 16]>());
    let r = c
        .request("OPTIONS", "*", &[("Apple-Challenge", &challenge)], None)
        .await?;
    if r.status != 200 || !r.headers.contains("Apple-Response") {
        bail!("OPTIONS answered {}", r.status);
    }
    let sdp = format!(
        "v=0\r\no=bench 1 0 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 AppleLossless\r\na=fmtp:96 352 0 16 40 10 14 2 255 0 0 44100\r\na=rsaaeskey:{wrapped_key}\r\na=aesiv:{}\r\n",
        encode_b64(&[7u8; 16])
    );
    let r = c
        .request(
            "ANNOUNCE",
            "rtsp://127.0.0.1/1",
            &[],
            Some(("application/sdp", sdp.into_bytes())),
        )
        .await?;
    if r.status != 200 {
        bail!("ANNOUNCE answered {}", r.status);
    }
    let r = c
        .request(
            "SETUP",
            "rtsp://127.0.0.1/1",
            &[(
                "Transport",
                "RTP/AVP/UDP;unicast;mode=record;control_port=9;timing_port=9",
            )],
            None,
        )
        .await?;
    if r.status != 200 {
        bail!("SETUP answered {}", r.status);
    }
    c.session = r.headers.get("Session").map(str::to_string);
    let r = c.request("RECORD", "rtsp://127.0.0.1/1", &[], None).await?;
    if r.status != 200 {
        bail!("RECORD answered {}", r.status);
    }
    let r = c
        .request("TEARDOWN", "rtsp://127.0.0.1/1", &[], None)
        .await?;
    if r.status != 200 {
        bail!("TEARDOWN answered {}", r.status);
    }
    Ok(())
}

/// Runs `n` concurrent loops of `step` for `dur`; returns completed steps per second.
async fn rate<F, Fut>(n: usize, dur: Duration, step: F) -> Result<f64>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                done += step(i).await?;
            }
            Ok::<u64, anyhow::Error>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Prints the RAOP figures.
pub async fn raop(connections: usize, dur: Duration) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("airtwin bench raop: {connections} concurrent loopback connections, {:.1}s per figure, {cores} cores", dur.as_secs_f64());

    let backend = keys::DeviceKey::backend();
    let rsa =
        tokio::task::spawn_blocking(move || rsa_ops_per_sec(cores, dur, RsaImpl::Device)).await?;
    println!("reference  RSA-2048 private-key ops ({backend}, PKCS#1 v1.5 type 1, {cores} threads): {rsa:.0}/s ({:.0}/s per core)", rsa / cores as f64);
    if backend != "rsa crate" {
        let crate_rate =
            tokio::task::spawn_blocking(move || rsa_ops_per_sec(cores, dur, RsaImpl::RsaCrate))
                .await?;
        println!(
            "reference  same op on the rsa crate: {crate_rate:.0}/s ({:.0}/s per core), {:.1}x slower than {backend}",
            crate_rate / cores as f64,
            rsa / crate_rate
        );
    }

    let (addr, stop) = start_device().await?;
    let key = Arc::new(keys::airport_express().to_public_key());

    // Challenges only: OPTIONS + Apple-Challenge on keep-alive connections (what perf-notes.md
    // measured for shairport-sync).
    let challenges = rate(connections, dur, move |i| async move {
        let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let mut n = 0;
        for _ in 0..50 {
            let ch = encode_b64(&rng.gen::<[u8; 16]>());
            let r = c
                .request("OPTIONS", "*", &[("Apple-Challenge", &ch)], None)
                .await?;
            if !r.headers.contains("Apple-Response") {
                bail!("no Apple-Response");
            }
            n += 1;
        }
        Ok(n)
    })
    .await?;
    println!(
        "device     OPTIONS + Apple-Challenge replies: {challenges:.0}/s = {:.0}% of the raw RSA rate (1 op each)",
        100.0 * challenges / rsa
    );

    let handshakes = rate(connections, dur, move |i| {
        let key = key.clone();
        async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i as u64);
            let wrapped = challenge::encrypt_aes_key(&key, &rng.gen(), &mut rng)?;
            handshake(addr, &mut rng, &wrapped).await?;
            Ok(1)
        }
    })
    .await?;
    println!(
        "device     full handshakes (OPTIONS+challenge, ANNOUNCE+rsaaeskey, SETUP, RECORD, TEARDOWN): {handshakes:.0}/s = {:.0}% of the raw RSA rate (2 ops each)",
        100.0 * 2.0 * handshakes / rsa
    );
    let _ = stop.send(true);
    Ok(())
}

async fn start_apple_tv() -> Result<(SocketAddr, watch::Sender<bool>)> {
    use airtwin_simulators::airplay::{AirplayConfig, AirplayService};
    let config = AirplayConfig::apple_tv("bench-tv", 0);
    let mut raop = config.raop_config(0);
    raop.max_sessions = usize::MAX;
    serve_on_loopback(
        Arc::new(AirplayService::new(config, raop)),
        "bench-tv",
        "airplay",
    )
    .await
}

/// One AirPlay handshake on a new connection: GET /info, fp-setup phase 1 (`mode`), phase 3;
/// both replies are checked against the known bytes.
async fn airplay_handshake(addr: SocketAddr, mode: u8, payload: &[u8; 152]) -> Result<()> {
    use airtwin_simulators::airplay::fairplay;
    let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
    let r = c.request("GET", "/info", &[], None).await?;
    if r.status != 200 || !r.body.starts_with(b"bplist00") {
        bail!("GET /info answered {}", r.status);
    }
    let r = c
        .request(
            "POST",
            "/fp-setup",
            &[("X-Apple-ET", "32")],
            Some((
                "application/octet-stream",
                fairplay::phase1_request(mode).to_vec(),
            )),
        )
        .await?;
    if fairplay::phase1_reply(mode).is_none_or(|want| r.body[..] != want[..]) {
        bail!("fp-setup phase 1 reply is not the mode-{mode} one");
    }
    let body = fairplay::phase3_request(payload);
    let r = c
        .request(
            "POST",
            "/fp-setup",
            &[("X-Apple-ET", "32")],
            Some(("application/octet-stream", body.clone())),
        )
        .await?;
    if r.body.len() != 32 || r.body[12..] != body[144..] {
        bail!("fp-setup phase 3 echo is wrong");
    }
    Ok(())
}

/// Prints the AirPlay figures, with the RAOP handshake rates measured in the same run.
pub async fn airplay(connections: usize, dur: Duration) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "airtwin bench airplay: {connections} concurrent loopback connections, {:.1}s per figure, {cores} cores",
        dur.as_secs_f64()
    );
    let (tv, stop_tv) = start_apple_tv().await?;
    let airplay = rate(connections, dur, move |i| async move {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let payload: [u8; 152] = std::array::from_fn(|_| rng.gen());
        airplay_handshake(tv, (i % 4) as u8, &payload).await?;
        Ok(1)
    })
    .await?;
    println!(
        "apple-tv   /info + fp-setup handshakes (new connection, GET /info, phase 1, phase 3): {airplay:.0}/s"
    );

    let (apx, stop_apx) = start_device().await?;
    let key = Arc::new(keys::airport_express().to_public_key());
    let raop_rate = |addr: SocketAddr| {
        let key = key.clone();
        move |i: usize| {
            let key = key.clone();
            async move {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i as u64);
                let wrapped = challenge::encrypt_aes_key(&key, &rng.gen(), &mut rng)?;
                handshake(addr, &mut rng, &wrapped).await?;
                Ok(1)
            }
        }
    };
    let raop_apx = rate(connections, dur, raop_rate(apx)).await?;
    println!(
        "reference  RAOP handshakes on the AirPort Express (OPTIONS+challenge, ANNOUNCE+rsaaeskey, SETUP, RECORD, TEARDOWN): {raop_apx:.0}/s; AirPlay handshakes are {:.1}x that",
        airplay / raop_apx
    );
    let raop_tv = rate(connections, dur, raop_rate(tv)).await?;
    println!(
        "apple-tv   the same RAOP handshakes on the Apple TV's AirPlay port: {raop_tv:.0}/s ({:.0}% of the AirPort Express figure)",
        100.0 * raop_tv / raop_apx
    );
    let _ = stop_tv.send(true);
    let _ = stop_apx.send(true);
    Ok(())
}
