//! `airtwin bench …`: figures, each as a ratio against a reference measured in the same run.
//!
//! | bench | measures | reference |
//! |---|---|---|
//! | [`raop`] | RAOP challenge replies and full handshakes per second | the raw RSA-2048 private-key rate |
//! | [`airplay`] | AirPlay `/info` + fp-setup handshakes per second | RAOP handshakes in the same run |
//! | [`dacp`] | `playstatusupdate` requests per second | a raw loopback HTTP echo |
//! | [`hap`] | HomeKit pair-verify handshakes per second | the raw X25519 + Ed25519 rate |
//! | [`spotify`] | Spotify AP handshakes + logins per second | raw RSA-2048 sign and 768-bit modexp rates |
//! | [`memory`] | resident memory under N requests per device kind | the first 10% of the requests |
//! | [`soak`] | every device kind under mixed load with faults: no panic, answers, descriptors, memory, transcript | resident memory at a third of the run |
//! | [`scale`] | time until N devices listen, resident memory | one device |
//!
//! Every RAOP handshake costs two private-key operations (the `Apple-Response` signature and the
//! `rsaaeskey` decryption), so the RSA rate bounds it (docs/performance.md).

pub mod airplay;
pub mod dacp;
pub mod hap;
pub mod memory;
pub mod raop;
pub mod scale;
pub mod soak;
pub mod spotify;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::device::Settings;
use airtwin_simulators::protocol_core::ProtocolCore;
use airtwin_simulators::raop::keys;
use anyhow::Result;
use tokio::sync::watch;

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
    ops_per_sec(threads, dur, move |i| {
        // A different input each time: thread in the high bytes, count in the low ones.
        let mut buf = [0u8; 32];
        buf[..8].copy_from_slice(&i.to_be_bytes());
        let _ = match which {
            RsaImpl::Device => key.sign_raw(&buf),
            RsaImpl::RsaCrate => key.sign_raw_rsa_crate(&buf),
        };
    })
}

/// `op` repeated on `threads` threads for `dur`: operations per second.
pub(crate) fn ops_per_sec(
    threads: usize,
    dur: Duration,
    op: impl Fn(u64) + Send + Sync + 'static,
) -> f64 {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, stop, count) = (op.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut i = (t as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    op(i);
                    i += 1;
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
pub(crate) async fn serve_on_loopback<S: ProtocolCore>(
    service: Arc<S>,
    name: &str,
    service_name: &str,
) -> Result<(SocketAddr, watch::Sender<bool>)> {
    let (tx, rx) = watch::channel(false);
    // The bench measures the device, not transcript growth: events go to a recorder of its own
    // (no `recorder` given), dropped with the device.
    let shell = Settings {
        idle_timeout: Duration::from_secs(30),
        shutdown: Some(rx),
        ..Settings::new(name)
    }
    .shell();
    let (port, _accept) = shell.serve(service, service_name, 0).await?;
    Ok((SocketAddr::new(shell.address, port), tx))
}

/// Runs `n` concurrent loops of `step` for `dur`; returns completed steps per second.
pub(crate) async fn rate<F, Fut>(n: usize, dur: Duration, step: F) -> Result<f64>
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
