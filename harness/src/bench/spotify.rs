//! `airtwin bench spotify`: Spotify AP handshakes + logins per second against a fake access
//! point, each on a new connection (ClientHello, APResponseMessage, the client's challenge, Login,
//! APWelcome), with the raw rates of the public-key work in the same run: the AP's RSA-2048
//! signature of `gs` and a 768-bit modular exponentiation of the DH group
//! (docs/protocols/spotify-ap.md, "Key exchange", "Server signature"). Per handshake the AP signs
//! once and exponentiates twice (its public value and the shared secret); the client, in the same
//! process, exponentiates twice and verifies once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airtwin_simulators::device::{Settings, SpotifyAp};
use airtwin_simulators::spotify_ap::client::{ClientConfig, Credentials};
use airtwin_simulators::spotify_ap::diffie_hellman::LocalKeys;
use airtwin_simulators::spotify_ap::identity::Identity;
use airtwin_simulators::spotify_ap::session::{Account, ApConfig};
use anyhow::{Context as _, Result};
use tokio::sync::watch;

use super::{ops_per_sec, rate};
use crate::clients::spotify::log_in;

/// Prints the handshake rate and its references.
pub async fn run(connections: usize, dur: Duration) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "airtwin bench spotify: {connections} concurrent loopback connections, {:.1}s per figure, {cores} cores",
        dur.as_secs_f64()
    );
    let identity = Arc::new(
        tokio::task::spawn_blocking(|| Identity::from_seed(1))
            .await?
            .context("drawing the AP key")?,
    );

    let id = identity.clone();
    let sign = tokio::task::spawn_blocking(move || {
        ops_per_sec(cores, dur, move |i| {
            let _ = id.sign_gs(&i.to_be_bytes());
        })
    })
    .await?;
    println!(
        "reference  RSA-2048 signatures of gs (PKCS#1 v1.5, SHA-1, {}, {cores} threads): {sign:.0}/s ({:.0}/s per core)",
        Identity::backend(),
        sign / cores as f64
    );
    let modexp = tokio::task::spawn_blocking(move || {
        let ours = LocalKeys::from_private(&[0x5a; 95]);
        ops_per_sec(cores, dur, move |i| {
            let mut peer = [0x3c; 96];
            peer[88..].copy_from_slice(&i.to_be_bytes());
            let _ = ours.shared_secret(&peer);
        })
    })
    .await?;
    println!(
        "reference  768-bit modexp (Oakley group 1, 95-byte exponent, {}, {cores} threads): {modexp:.0}/s ({:.0}/s per core)",
        Identity::backend(),
        modexp / cores as f64
    );

    let (tx, rx) = watch::channel(false);
    let mut config = ApConfig::new(identity.clone(), 1);
    config.accounts.push(Account {
        username: "bench".into(),
        password: Some("bench".into()),
        refuse: None,
    });
    let device = SpotifyAp::builder()
        .settings(Settings {
            idle_timeout: Duration::from_secs(30),
            shutdown: Some(rx),
            ..Settings::new("bench-ap")
        })
        .ap(config)
        .spawn()
        .await?;
    let addr = device
        .port_of("spotify-ap")
        .map(|p| std::net::SocketAddr::new(device.address, p))
        .context("the AP has no spotify-ap port")?;
    let server_key = identity.public();
    let attempts = Arc::new(AtomicU64::new(0));
    let handshakes = rate(connections, dur, move |_| {
        let config = ClientConfig {
            username: "bench".into(),
            credentials: Credentials::Password("bench".into()),
            server_key: server_key.clone(),
            seed: attempts.fetch_add(1, Ordering::Relaxed),
        };
        async move {
            log_in(addr, config, Duration::from_secs(10)).await?;
            Ok(1)
        }
    })
    .await?;
    // The CPU both sides spend per handshake on public-key work, if nothing else cost anything:
    // the AP's signature and 2 modexps, the client's 2 modexps (its verification is ~1/30 of a
    // signature and left out).
    let ceiling = 1.0 / (1.0 / sign + 4.0 / modexp);
    println!(
        "device     handshakes + logins (new connection, ClientHello to APWelcome, client in this process): {handshakes:.0}/s = {:.2}x the raw sign rate, {:.0}% of the public-key ceiling of both sides ({ceiling:.0}/s: 1 sign + 4 modexps each)",
        handshakes / sign,
        100.0 * handshakes / ceiling
    );
    let _ = tx.send(true);
    Ok(())
}
