//! `airtwin client spotify`: the sans-IO Spotify AP client ([`ApClient`]) over a TCP stream. It
//! sends the ClientHello, checks the AP's signature of its DH value with the key it is given,
//! derives the Shannon keys, logs in, and answers the AP's Ping; each step is a line on stdout,
//! and a failure names the step and what differed (docs/protocols/spotify-ap.md).

use std::net::SocketAddr;
use std::time::Duration;

use airtwin_simulators::spotify_ap::client::{ApClient, ClientConfig, ClientEvent, Credentials};
use airtwin_simulators::spotify_ap::identity::Identity;
use anyhow::{Context as _, Result};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one run needs.
pub struct Options {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    /// The key the AP's signature must verify with.
    pub server_key: RsaPublicKey,
    /// Seconds to wait for each answer.
    pub timeout: Duration,
    pub seed: u64,
}

/// The AP's public key: a PEM file (PKCS#1 or SubjectPublicKeyInfo), or without one the key an
/// AP draws from `seed` by default.
pub fn load_key(path: Option<&str>, seed: u64) -> Result<RsaPublicKey> {
    let Some(path) = path else {
        return Ok(Identity::from_seed(seed)
            .context("drawing the default AP key")?
            .public());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("--key {path}"))?;
    RsaPublicKey::from_pkcs1_pem(&text)
        .or_else(|_| RsaPublicKey::from_public_key_pem(&text))
        .with_context(|| format!("--key {path}: not an RSA public key PEM"))
}

/// Runs the client until it is logged in and has answered a Ping (true), or a step fails
/// (false); prints each step.
pub async fn run(opts: Options) -> Result<bool> {
    let mut client = ApClient::new(ClientConfig {
        username: opts.username.clone(),
        credentials: Credentials::Password(opts.password.clone()),
        server_key: opts.server_key.clone(),
        seed: opts.seed,
    });
    let mut stream = match tokio::time::timeout(opts.timeout, TcpStream::connect(opts.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ok(failed("connect", &e.to_string())),
        Err(_) => return Ok(failed("connect", "timed out")),
    };
    println!("ok connect: {}", opts.addr);
    let mut logged_in = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(bytes) = client.poll_transmit() {
            if let Err(e) = stream.write_all(&bytes).await {
                return Ok(failed("write", &e.to_string()));
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Step { step, detail } => println!("ok {step}: {detail}"),
                ClientEvent::LoggedIn { username, reusable } => {
                    logged_in = true;
                    println!(
                        "ok login: APWelcome for {username}, {} bytes of reusable credentials",
                        reusable.len()
                    );
                }
                ClientEvent::Pinged(server_time) => {
                    println!("ok ping: server time {server_time}, Pong sent");
                    if logged_in {
                        return Ok(true);
                    }
                }
                ClientEvent::Received { name, len } => println!("received {name} ({len} bytes)"),
                ClientEvent::Failed { step, detail } => return Ok(failed(step, &detail)),
            }
        }
        let step = if logged_in { "ping" } else { "answer" };
        match tokio::time::timeout(opts.timeout, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Ok(failed(step, "the AP closed the connection")),
            Ok(Ok(n)) => client.handle_input(&chunk[..n]),
            Ok(Err(e)) => return Ok(failed(step, &format!("read: {e}"))),
            Err(_) => {
                return Ok(failed(
                    step,
                    &format!("no answer in {:.1} s", opts.timeout.as_secs_f64()),
                ))
            }
        }
    }
}

fn failed(step: &str, detail: &str) -> bool {
    println!("FAILED at step {step}: {detail}");
    false
}
