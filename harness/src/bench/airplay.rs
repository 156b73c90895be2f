//! `airtwin bench airplay`: AirPlay handshakes per second against a fake Apple TV, with the RAOP
//! handshake rate of a fake AirPort Express measured in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airtwin_simulators::raop::challenge::{self};
use airtwin_simulators::raop::keys;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::clients::rtsp::RtspClient;

use super::raop::{handshake, start_device};
use super::{rate, serve_on_loopback};
async fn start_apple_tv() -> Result<(SocketAddr, watch::Sender<bool>)> {
    use airtwin_simulators::airplay::{AirplayConfig, AirplayCore};
    let config = AirplayConfig::apple_tv("bench-tv", 0);
    let mut raop = config.raop_config(0);
    raop.max_sessions = usize::MAX;
    serve_on_loopback(
        Arc::new(AirplayCore::new(config, raop)),
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

/// `--target`: /info replies/s on keep-alive connections and /info + fp-setup handshakes/s (new
/// connection each) against an external AirPlay receiver, as one `figures …` line. A receiver
/// whose fp-setup replies differ from the known bytes gets `handshakes=failed`.
async fn target_figures(addr: SocketAddr, connections: usize, dur: Duration) -> Result<()> {
    let info = rate(connections, dur, move |_| async move {
        let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
        for _ in 0..50 {
            let r = c.request("GET", "/info", &[], None).await?;
            if r.status != 200 {
                bail!("GET /info answered {}", r.status);
            }
        }
        Ok(50)
    })
    .await?;
    let handshakes = rate(connections, dur, move |i| async move {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let payload: [u8; 152] = std::array::from_fn(|_| rng.gen());
        airplay_handshake(addr, (i % 4) as u8, &payload).await?;
        Ok(1)
    })
    .await
    .map_or_else(|e| format!("failed ({e:#})"), |r| format!("{r:.0}"));
    println!("figures target info_keep_alive={info:.0} handshakes={handshakes}");
    Ok(())
}

/// Prints the AirPlay figures, with the RAOP handshake rates measured in the same run; with
/// `target`, only that external receiver's figures.
pub async fn airplay(connections: usize, dur: Duration, target: Option<SocketAddr>) -> Result<()> {
    if let Some(addr) = target {
        return target_figures(addr, connections, dur).await;
    }
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
