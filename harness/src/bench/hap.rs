//! `airtwin bench hap`: HomeKit pair-verify handshakes per second against a fake Apple TV 4K,
//! with the raw rate of the handshake's public-key work (X25519 key and shared secret, one
//! Ed25519 signature and one verification, as the device does per pair-verify) measured in the
//! same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::airplay::{AirplayConfig, AirplayCore};
use airtwin_simulators::hap::identity::Credentials;
use airtwin_simulators::wire::{Protocol, Request};
use anyhow::{bail, Result};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use rand::{Rng, SeedableRng};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{rate, serve_on_loopback};
use crate::clients::hap::{pair_setup, pair_verify, Conn};

/// Device-side public-key work of one pair-verify, repeated on one thread for `dur`: a new
/// X25519 key and shared secret, an Ed25519 signature (M2) and a verification (M3).
fn raw_rate(dur: Duration) -> Result<f64> {
    let key = SigningKey::from_bytes(&[7; 32]);
    let peer = PublicKey::from(&StaticSecret::from([9; 32]));
    let mut n = 0u64;
    let start = Instant::now();
    let mut seed = [1u8; 32];
    while start.elapsed() < dur {
        seed[..8].copy_from_slice(&n.to_le_bytes());
        let secret = StaticSecret::from(seed);
        let ours = PublicKey::from(&secret);
        let shared = secret.diffie_hellman(&peer);
        let message = [&ours.as_bytes()[..], &shared.as_bytes()[..]].concat();
        let sig = key.sign(&message);
        if key.verifying_key().verify(&message, &sig).is_err() {
            bail!("Ed25519 verification failed");
        }
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Prints the pair-verify rate and the raw rate.
pub async fn run(connections: usize, dur: Duration) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "airtwin bench hap: {connections} concurrent loopback connections, {:.1}s per figure, {cores} cores",
        dur.as_secs_f64()
    );
    let mut config = AirplayConfig::apple_tv_4k("bench-tv", 0);
    let pin = config
        .pairing
        .as_ref()
        .map(|p| p.pin.clone())
        .unwrap_or_default();
    if let Some(p) = config.pairing.as_mut() {
        p.policy.max_tries = u32::MAX;
    }
    let raop = config.raop_config(0);
    let (tv, stop) = serve_on_loopback(
        Arc::new(AirplayCore::new(config, raop)),
        "bench-tv",
        "airplay",
    )
    .await?;
    let timeout = Duration::from_secs(10);
    let mut first = Conn::open(tv, timeout).await?;
    let creds: Credentials = pair_setup(&mut first, &pin, [0x42; 32], b"BENCH".to_vec()).await?;
    let creds = Arc::new(creds);
    let verify = rate(connections, dur, move |i| {
        let creds = creds.clone();
        async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let mut conn = Conn::open(tv, timeout).await?;
            pair_verify(&mut conn, (*creds).clone(), rng.gen()).await?;
            let r = conn
                .send(&Request::new("GET", "/info", Protocol::Http11))
                .await?;
            if r.status != 200 {
                bail!("encrypted GET /info answered {}", r.status);
            }
            Ok(1)
        }
    })
    .await?;
    println!(
        "apple-tv-4k pair-verify handshakes (new connection, M1-M4, one encrypted GET /info): {verify:.0}/s"
    );
    let raw = tokio::task::spawn_blocking(move || raw_rate(dur)).await??;
    println!(
        "reference   raw device-side pair-verify crypto on one thread (X25519 key + shared secret, Ed25519 sign + verify): {raw:.0}/s; handshakes are {:.2}x that",
        verify / raw
    );
    let _ = stop.send(true);
    Ok(())
}
