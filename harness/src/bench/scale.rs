//! `airtwin bench scale`: many AirPort Express devices in one process, on loopback.
//!
//! Starts one device first (the reference, measured in the same run), then `n` more, all through
//! the same path as a scenario's devices (`devices::start`), and prints for each: the time until
//! every device listens, and the resident memory (`VmRSS` of /proc/self/status) before and after.
//! Each device then answers one `OPTIONS` on a fresh connection, so "listening" is checked, not
//! assumed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::fault::FaultPlan;
use airtwin_simulators::shell::Recorder;
use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::devices::{self, Device, RunContext};
use crate::scenario::{DeviceKind, DeviceSpec, Identity};

/// Resident memory of this process in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises the soft limit of open files to the hard limit: every device holds a listening socket
/// and every client connection one more.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        let cur = lim.rlim_cur as u64;
        cur
    }
}

fn spec(i: usize) -> DeviceSpec {
    DeviceSpec {
        kind: DeviceKind::AirportExpress,
        name: format!("apx-{i:04}"),
        port: 0,
        identity: Identity::default(),
        max_sessions: None,
        idle_timeout: None,
        dacp: None,
        spotify: None,
        companion: None,
        address: None,
    }
}

/// Figures of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub devices: usize,
    pub time_to_listen: Duration,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// Starts `n` devices (names from `first`) and checks each answers OPTIONS.
pub async fn start_batch(
    ctx: &RunContext,
    first: usize,
    n: usize,
    keep: &mut Vec<Device>,
) -> Result<Batch> {
    let rss_before = rss_kib().unwrap_or(0);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(n);
    for i in first..first + n {
        batch.push(
            devices::start(&spec(i), ctx)
                .await
                .with_context(|| format!("device {i} did not start"))?,
        );
    }
    let time_to_listen = started.elapsed();
    let rss_after = rss_kib().unwrap_or(0);
    for d in &batch {
        options(std::net::SocketAddr::new(d.address, d.port()))
            .await
            .with_context(|| format!("device {} at port {}", d.name, d.port()))?;
    }
    keep.extend(batch);
    Ok(Batch {
        devices: n,
        time_to_listen,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
    })
}

async fn options(addr: std::net::SocketAddr) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await??;
    if !buf[..n].starts_with(b"RTSP/1.0 200") {
        bail!("OPTIONS answered {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    Ok(())
}

pub async fn run(n: usize) -> Result<()> {
    let limit = raise_fd_limit();
    if (limit as usize) < n + 64 {
        bail!("{n} devices need {n}+ open files, and the limit here is {limit} (ulimit -n)");
    }
    let (_stop_tx, stop_rx) = watch::channel(false);
    let ctx = RunContext {
        recorder: Recorder::shared(),
        plan: Arc::new(FaultPlan::empty()),
        seed: 0,
        shutdown: stop_rx,
        base_dir: std::path::PathBuf::from("."),
        capture: Default::default(),
        buffers: None,
    };
    let mut all = Vec::new();
    let baseline = rss_kib().unwrap_or(0);
    println!(
        "process before any device: RSS {:.1} MB",
        baseline as f64 / 1024.0
    );
    let one = start_batch(&ctx, 0, 1, &mut all).await?;
    print_batch("reference, 1 device", &one);
    let many = start_batch(&ctx, 1, n, &mut all).await?;
    print_batch(&format!("{n} devices"), &many);
    let per_device_ms = many.time_to_listen.as_secs_f64() * 1000.0 / n.max(1) as f64;
    let per_device_kib =
        many.rss_after_kib.saturating_sub(many.rss_before_kib) as f64 / n.max(1) as f64;
    println!(
        "per device: {per_device_ms:.3} ms to listen, {per_device_kib:.1} KiB resident; \
         total RSS {:.1} MB with {} devices listening (each answered OPTIONS)",
        many.rss_after_kib as f64 / 1024.0,
        all.len()
    );
    for d in &all {
        d.abort();
    }
    Ok(())
}

fn print_batch(label: &str, b: &Batch) {
    println!(
        "{label}: all listening after {:.1} ms; RSS {:.1} MB -> {:.1} MB (+{:.1} MB)",
        b.time_to_listen.as_secs_f64() * 1000.0,
        b.rss_before_kib as f64 / 1024.0,
        b.rss_after_kib as f64 / 1024.0,
        b.rss_after_kib.saturating_sub(b.rss_before_kib) as f64 / 1024.0
    );
}
