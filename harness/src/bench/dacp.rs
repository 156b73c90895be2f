//! `airtwin bench dacp`: how many `playstatusupdate` requests per second the fake iTunes answers
//! on loopback, against a raw loopback HTTP echo (same client, same connections) measured in the
//! same run, so the figure reads as a fraction of what the machine's loopback HTTP allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use airtwin_simulators::dacp::{DacpConfig, DacpService};
use airtwin_simulators::wire::{dmap, Protocol};
use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::clients::rtsp::RtspClient;

async fn start_itunes(gzip: bool) -> Result<(SocketAddr, watch::Sender<bool>)> {
    let mut config = DacpConfig::itunes("bench", SystemTime::now());
    config.gzip = gzip;
    super::serve_on_loopback(Arc::new(DacpService::new(config)), "bench", "dacp").await
}

/// A loopback HTTP server that answers every request with a fixed 200 and a 120-byte body (about
/// the size of a `cmst` answer), parsing nothing but the end of the header block.
async fn start_echo() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-dmap-tagged\r\nContent-Length: 120\r\n\r\n".to_vec();
                answer.extend_from_slice(&[0u8; 120]);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Requests per second over `n` keep-alive connections for `dur`. `login` logs in first and puts
/// the session id in the path; `gzip` asks for gzip bodies and checks they come.
async fn rate(addr: SocketAddr, n: usize, dur: Duration, login: bool, gzip: bool) -> Result<f64> {
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let mut c = RtspClient::connect(addr, Duration::from_secs(10)).await?;
            let mut session = 0;
            if login {
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
                session = dmap::first(&items, &[b"mlog", b"mlid"])
                    .and_then(|v| v.as_int())
                    .context("no mlid")?;
            }
            if gzip {
                c.common.set("Accept-Encoding", "gzip");
            }
            let uri =
                format!("/ctrl-int/1/playstatusupdate?revision-number=0&session-id={session}");
            let mut done = 0u64;
            while Instant::now() < deadline {
                let r = c
                    .request_with("GET", &uri, Protocol::Http11, &[], None)
                    .await?;
                let gzipped = r.headers.get("Content-Encoding") == Some("gzip");
                if r.status != 200 || gzip != gzipped {
                    bail!("playstatusupdate answered {} (gzip {gzipped})", r.status);
                }
                done += 1;
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

/// Prints the figures.
pub async fn run(connections: usize, dur: Duration) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "airtwin bench dacp: {connections} concurrent keep-alive loopback connections, {:.1}s per figure, {cores} cores",
        dur.as_secs_f64()
    );
    let echo = start_echo().await?;
    let reference = rate(echo, connections, dur, false, false).await?;
    println!(
        "reference  raw loopback HTTP echo (fixed 200, same client): {reference:.0} requests/s"
    );
    let (addr, stop) = start_itunes(false).await?;
    let plain = rate(addr, connections, dur, true, false).await?;
    println!(
        "device     playstatusupdate (revision 0, answered at once, no gzip): {plain:.0} requests/s = {:.0}% of the echo",
        100.0 * plain / reference
    );
    let _ = stop.send(true);
    let (addr, stop) = start_itunes(true).await?;
    // The client must ask for gzip for the device to compress: a client that sends the header.
    let gz = rate(addr, connections, dur, true, true).await?;
    println!(
        "device     playstatusupdate with Accept-Encoding: gzip: {gz:.0} requests/s = {:.0}% of the echo",
        100.0 * gz / reference
    );
    let _ = stop.send(true);
    Ok(())
}
