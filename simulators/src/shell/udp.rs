//! UDP ports a core asks for (RAOP audio, control and timing): receive, hand each datagram to the
//! sans-IO [`DatagramPort`] (the fault seam, then the core's handler), send back what it answers.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use super::tcp::ShellConfig;
use crate::connection::DatagramPort;
use crate::packet_log::{Transport, WirePacket};
use crate::protocol_core::UdpRequest;

/// Binds `ip:0` and serves it until the device stops, or until `closed` flips (the connection
/// that opened it ended): then it handles what is already queued and stops.
pub async fn open(
    ip: IpAddr,
    request: UdpRequest,
    cfg: ShellConfig,
    mut closed: watch::Receiver<bool>,
) -> std::io::Result<(u16, JoinHandle<()>)> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let local = socket.local_addr()?;
    let port = local.port();
    let mut shutdown = cfg.shutdown.clone();
    let mut datagrams = DatagramPort::new(request, cfg.plan.clone(), cfg.device.clone());
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut draining = false;
        loop {
            let (n, from) = if draining {
                match socket.try_recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => continue,
                }
            } else {
                tokio::select! {
                    r = socket.recv_from(&mut buf) => match r {
                        Ok(x) => x,
                        // ICMP port-unreachable from an earlier send shows up here on Linux.
                        Err(_) => continue,
                    },
                    _ = closed.wait_for(|c| *c) => { draining = true; continue }
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            };
            let datagram = datagrams.receive(&buf[..n], from, SystemTime::now());
            if let Some(kind) = datagram.event {
                cfg.recorder.record(&cfg.device, None, Some(from), kind);
            }
            let logging = cfg.recorder.logs_packets();
            if logging {
                let note = datagram.lost.then(|| {
                    format!(
                        "lost by a lose_packets fault on the {} port",
                        datagrams.name()
                    )
                });
                cfg.recorder.log_packet(WirePacket {
                    at: Duration::ZERO,
                    device: cfg.device.clone(),
                    transport: Transport::Udp,
                    from,
                    to: local,
                    wire: Some(buf[..n].to_vec()),
                    plain: datagrams.plaintext(&buf[..n]),
                    note,
                });
            }
            for reply in datagram.replies {
                match socket.send_to(&reply, from).await {
                    Ok(_) if logging => cfg.recorder.log_packet(WirePacket {
                        at: Duration::ZERO,
                        device: cfg.device.clone(),
                        transport: Transport::Udp,
                        from: local,
                        to: from,
                        wire: Some(reply),
                        plain: None,
                        note: None,
                    }),
                    Ok(_) => {}
                    Err(e) => debug!(error = %e, port = datagrams.name(), "udp send failed"),
                }
            }
        }
    });
    Ok((port, task))
}
