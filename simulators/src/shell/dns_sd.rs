//! Unicast DNS-SD on a UDP port of 127.0.0.1: answers the queries that `shell::mdns` would answer
//! on the multicast group, to a client that asks one host directly (pyatv's `scan -s 127.0.0.1`
//! with `PYATV_UDNS_PORT`, docs/peers.md). Nothing here sends multicast: replies go back to the sender.
//! The answers themselves are [`crate::wire::dns_sd::answer`].

use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::wire::dns_sd::{answer, SharedRecords};

/// Binds the responder's socket (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Answers every query on `socket` from `records` until `shutdown` turns true. A datagram that
/// is not a DNS query is dropped (logged at debug), never answered with garbage.
pub fn spawn(
    socket: UdpSocket,
    records: SharedRecords,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // DNS over UDP: at most 9000 bytes in mDNS (RFC 6762 §17); more is cut by recv.
        let mut buf = vec![0u8; 9000];
        loop {
            let (n, from) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP port unreachable from an earlier reply surfaces here on Linux.
                        debug!(error = %e, "dns-sd recv");
                        continue;
                    }
                },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let reply = {
                let hosts = records.read().unwrap_or_else(|e| e.into_inner());
                answer(&buf[..n], &hosts)
            };
            match reply {
                Ok(bytes) => {
                    let _ = socket.send_to(&bytes, from).await;
                }
                Err(e) => debug!(%from, error = %e, "dns-sd: query dropped"),
            }
        }
    })
}
