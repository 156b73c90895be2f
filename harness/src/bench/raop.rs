//! `airtwin bench raop`: how fast the fake AirPort Express answers, as ratios against the raw
//! RSA-2048 private-key rate of this machine, measured in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airtwin_simulators::raop::challenge::{self, encode_b64};
use airtwin_simulators::raop::{keys, RaopConfig, RaopCore};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::clients::rtsp::RtspClient;

use super::{rate, rsa_ops_per_sec, serve_on_loopback, RsaImpl};

pub(super) async fn start_device() -> Result<(SocketAddr, watch::Sender<bool>)> {
    let mut config = RaopConfig::airport_express("bench");
    config.max_sessions = usize::MAX;
    serve_on_loopback(Arc::new(RaopCore::new(config)), "bench", "raop").await
}

/// One full sender handshake on a new connection: OPTIONS+challenge, ANNOUNCE+rsaaeskey, SETUP,
/// RECORD, TEARDOWN.
pub(super) async fn handshake(
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

/// Prints the RAOP figures; with `target`, of that external receiver instead of the fake
/// (no RSA baseline), ending with one `figures …` line `ci/bench-references` reads.
pub async fn raop(connections: usize, dur: Duration, target: Option<SocketAddr>) -> Result<()> {
    if let Some(addr) = target {
        return figures(addr, connections, dur, "target").await.map(|_| ());
    }
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

    // Challenges only: OPTIONS + Apple-Challenge on keep-alive connections (docs/performance.md).
    let challenges = challenge_rate(addr, connections, dur, 50, 0).await?;
    println!(
        "device     OPTIONS + Apple-Challenge replies: {challenges:.0}/s = {:.0}% of the raw RSA rate (1 op each)",
        100.0 * challenges / rsa
    );

    let handshakes = handshake_rate(addr, connections, dur).await?;
    println!(
        "device     full handshakes (OPTIONS+challenge, ANNOUNCE+rsaaeskey, SETUP, RECORD, TEARDOWN): {handshakes:.0}/s = {:.0}% of the raw RSA rate (2 ops each)",
        100.0 * 2.0 * handshakes / rsa
    );
    let _ = stop.send(true);
    Ok(())
}

/// Challenge replies/s on keep-alive and on new connections, full handshakes/s, against `addr`.
/// A receiver that streams one session at a time (docs/peers.md, Rust RAOP receivers) needs
/// `connections` 1 for the handshakes.
pub async fn figures(
    addr: SocketAddr,
    connections: usize,
    dur: Duration,
    label: &str,
) -> Result<(f64, f64, f64)> {
    let keep_alive = challenge_rate(addr, connections, dur, 50, 0).await?;
    let new_connection = challenge_rate(addr, connections, dur, 1, 500).await?;
    let handshakes = handshake_rate(addr, connections, dur).await?;
    println!(
        "figures {label} challenges_keep_alive={keep_alive:.0} challenges_new_connection={new_connection:.0} handshakes={handshakes:.0}"
    );
    Ok((keep_alive, new_connection, handshakes))
}

/// OPTIONS + Apple-Challenge replies per second, `per_connection` requests on each connection
/// (1: a new connection per challenge); challenges from seeds `seed_base + connection`.
async fn challenge_rate(
    addr: SocketAddr,
    connections: usize,
    dur: Duration,
    per_connection: u64,
    seed_base: u64,
) -> Result<f64> {
    rate(connections, dur, move |i| async move {
        let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed_base + i as u64);
        for _ in 0..per_connection {
            let ch = encode_b64(&rng.gen::<[u8; 16]>());
            let r = c
                .request("OPTIONS", "*", &[("Apple-Challenge", &ch)], None)
                .await?;
            if !r.headers.contains("Apple-Response") {
                bail!("no Apple-Response");
            }
        }
        Ok(per_connection)
    })
    .await
}

/// Full handshakes per second (OPTIONS + challenge, ANNOUNCE with an RSA-wrapped key, SETUP,
/// RECORD, TEARDOWN), each on a new connection.
async fn handshake_rate(addr: SocketAddr, connections: usize, dur: Duration) -> Result<f64> {
    let key = Arc::new(keys::airport_express().to_public_key());
    rate(connections, dur, move |i| {
        let key = key.clone();
        async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i as u64);
            let wrapped = challenge::encrypt_aes_key(&key, &rng.gen(), &mut rng)?;
            handshake(addr, &mut rng, &wrapped).await?;
            Ok(1)
        }
    })
    .await
}
