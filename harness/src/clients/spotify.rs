//! `airtwin client spotify`: the sans-IO Spotify AP client ([`ApClient`]) over a TCP stream. It
//! asks apresolve for an AP (or is given one), sends the ClientHello, checks the AP's signature of
//! its DH value with the key it is given, derives the Shannon keys, logs in, answers the AP's Ping
//! and sends the Mercury GETs it is asked for; each step is a line on stdout, and a failure names
//! the step and what differed (docs/protocols/spotify-ap.md).

use std::net::SocketAddr;
use std::time::Duration;

use airtwin_simulators::spotify_ap::apresolve;
use airtwin_simulators::spotify_ap::client::{ApClient, ClientConfig, ClientEvent, Credentials};
use airtwin_simulators::spotify_ap::identity::Identity;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the access point is.
pub enum Target {
    /// This address.
    Ap(SocketAddr),
    /// The first `accesspoint` of this apresolve URL's answer (`http://host:port[/path?query]`;
    /// without a query, the one librespot sends).
    Apresolve(String),
}

/// What one run needs.
pub struct Options {
    pub target: Target,
    pub username: String,
    pub password: String,
    /// The key the AP's signature must verify with.
    pub server_key: RsaPublicKey,
    /// Seconds to wait for each answer.
    pub timeout: Duration,
    pub seed: u64,
    /// Mercury URIs to GET once logged in.
    pub mercury: Vec<String>,
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

/// The query librespot sends to apresolve (docs/protocols/spotify-ap.md, "apresolve").
const QUERY: &str = "type=accesspoint&type=dealer&type=spclient";

/// GET `url` and the first `accesspoint` of its answer, or the step's failure text.
async fn resolve(url: &str, timeout: Duration) -> Result<(String, u16), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host:port"))?
        .clone();
    let path = match uri.path_and_query() {
        Some(pq) if pq.query().is_some() => pq.to_string(),
        Some(pq) => format!("{}?{QUERY}", pq.path()),
        None => format!("/?{QUERY}"),
    };
    let host = authority.host().to_string();
    let port = authority.port_u16().unwrap_or(80);
    let exchange = async {
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(connection);
        let req = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("no HTTP answer: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        apresolve::first_accesspoint(&body).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer in {:.1} s", timeout.as_secs_f64())),
    }
}

/// Runs the client until it is logged in, has answered a Ping and has every Mercury answer
/// (true), or a step fails (false); prints each step.
pub async fn run(opts: Options) -> Result<bool> {
    let mut client = ApClient::new(ClientConfig {
        username: opts.username.clone(),
        credentials: Credentials::Password(opts.password.clone()),
        server_key: opts.server_key.clone(),
        seed: opts.seed,
    });
    for uri in &opts.mercury {
        client.mercury_get(uri.clone());
    }
    let (host, port) = match &opts.target {
        Target::Ap(addr) => (addr.ip().to_string(), addr.port()),
        Target::Apresolve(url) => match resolve(url, opts.timeout).await {
            Ok((host, port)) => {
                println!("ok resolve: accesspoint {host}:{port}");
                (host, port)
            }
            Err(e) => return Ok(failed("resolve", &e)),
        },
    };
    let connect = TcpStream::connect((host.as_str(), port));
    let mut stream = match tokio::time::timeout(opts.timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ok(failed("connect", &e.to_string())),
        Err(_) => return Ok(failed("connect", "timed out")),
    };
    // ClientResponsePlaintext and Login go out back to back, with no answer between them:
    // without TCP_NODELAY, Nagle's algorithm holds Login until the AP's delayed ACK (~40 ms).
    let _ = stream.set_nodelay(true);
    println!("ok connect: {host}:{port}");
    let mut logged_in = false;
    let mut pinged = false;
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
                    pinged = true;
                }
                ClientEvent::Mercury { uri, status, body } => {
                    let body: Vec<String> = body
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect();
                    println!("ok mercury: {uri} status {status} body {body:?}");
                }
                ClientEvent::Received { name, len } => println!("received {name} ({len} bytes)"),
                ClientEvent::Failed { step, detail } => return Ok(failed(step, &detail)),
            }
        }
        if logged_in && pinged && client.mercury_pending() == 0 {
            return Ok(true);
        }
        let step = match (logged_in, pinged) {
            (false, _) => "answer",
            (true, false) => "ping",
            (true, true) => "mercury",
        };
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

/// One connection to `addr` until APWelcome, without output (the bench's step): the handshake
/// and login of [`run`], an error naming the step otherwise.
pub(crate) async fn log_in(
    addr: SocketAddr,
    config: ClientConfig,
    timeout: Duration,
) -> Result<()> {
    let mut client = ApClient::new(config);
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .context("connect: timed out")?
        .context("connect")?;
    // As in `run`: Login follows ClientResponsePlaintext without an answer between them.
    let _ = stream.set_nodelay(true);
    let mut chunk = vec![0u8; 4096];
    loop {
        while let Some(bytes) = client.poll_transmit() {
            stream.write_all(&bytes).await.context("write")?;
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::LoggedIn { .. } => return Ok(()),
                ClientEvent::Failed { step, detail } => anyhow::bail!("step {step}: {detail}"),
                _ => {}
            }
        }
        let n = tokio::time::timeout(timeout, stream.read(&mut chunk))
            .await
            .context("no answer in time")?
            .context("read")?;
        if n == 0 {
            anyhow::bail!("the AP closed the connection");
        }
        client.handle_input(&chunk[..n]);
    }
}
