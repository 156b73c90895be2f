//! The TCP socket loop every device shares: it moves bytes between the socket and the sans-IO
//! [`Connection`], sleeps until the deadlines it gives, binds the UDP ports it asks for, and wakes
//! it when the core's revision moves. No protocol or fault logic lives here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info_span, warn, Instrument};

use super::udp;
use super::Recorder;
use crate::connection::{Connection, End};
use crate::event::EventKind;
use crate::fault::FaultPlan;
use crate::protocol_core::{Changes, ConnInfo, ProtocolCore, UdpRequest};
use crate::stream_connection::StreamConnection;
use crate::stream_core::StreamCore;
use crate::wire::Limits;

/// What every shell of a device shares.
#[derive(Clone)]
pub struct ShellConfig {
    pub device: Arc<str>,
    pub recorder: Arc<Recorder>,
    pub plan: Arc<FaultPlan>,
    pub limits: Limits,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Flips to `true` when the device must stop.
    pub shutdown: watch::Receiver<bool>,
}

impl ShellConfig {
    fn record(&self, conn: Option<&ConnInfo>, kind: EventKind) {
        self.recorder.record(
            &self.device,
            conn.map(|c| c.index),
            conn.map(|c| c.peer),
            kind,
        );
    }
}

/// Binds a TCP listener on `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until shutdown, each handled by `service` in its own task.
pub fn spawn<S: ProtocolCore>(
    listener: TcpListener,
    service: Arc<S>,
    cfg: ShellConfig,
    service_name: &str,
) -> JoinHandle<()> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    cfg.record(
        None,
        EventKind::Listening {
            service: service_name.to_string(),
            port,
        },
    );
    let counter = Arc::new(AtomicU64::new(0));
    let revision = service.changes().map(super::revision::watch);
    let mut shutdown = cfg.shutdown.clone();
    tokio::spawn(async move {
        // Accept errors in a row: EMFILE (out of descriptors) lasts until connections close.
        let mut failing = 0u64;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // The pending connection stays in the listen backlog: back off instead of
                    // spinning, say so once, and accept it when a descriptor is free again.
                    if failing == 0 {
                        warn!(device = %cfg.device, error = %e, "accept failed; retrying every 50 ms");
                    }
                    failing += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if failing > 0 {
                warn!(device = %cfg.device, retries = failing, "accepting again");
                failing = 0;
            }
            let local = stream.local_addr().unwrap_or(peer);
            let info = ConnInfo {
                device: cfg.device.clone(),
                index: counter.fetch_add(1, Ordering::Relaxed),
                peer,
                local,
            };
            let span = info_span!("conn", device = %cfg.device, peer = %peer, conn = info.index);
            let service = service.clone();
            let cfg = cfg.clone();
            let revision = revision.clone();
            tokio::spawn(connection(stream, info, service, cfg, revision).instrument(span));
        }
    })
}

async fn connection<S: ProtocolCore>(
    mut stream: TcpStream,
    info: ConnInfo,
    service: Arc<S>,
    cfg: ShellConfig,
    revision: Option<watch::Receiver<u64>>,
) {
    let _ = stream.set_nodelay(true);
    debug!("connected");
    let mut conn = Connection::new(
        service.clone(),
        info.clone(),
        cfg.plan.clone(),
        cfg.limits,
        cfg.idle_timeout,
        SystemTime::now(),
    );
    let (udp_close, udp_closed) = watch::channel(false);
    let mut udp_tasks = Vec::new();
    let changes = service.changes().zip(revision);
    serve(
        &mut stream,
        &mut conn,
        &cfg,
        changes,
        &udp_closed,
        &mut udp_tasks,
    )
    .await;
    // Datagrams sent just before the connection ended may still wait in the UDP sockets: each
    // port drains what is queued, then stops.
    let _ = udp_close.send(true);
    for t in udp_tasks {
        if tokio::time::timeout(Duration::from_millis(500), t)
            .await
            .is_err()
        {
            debug!("udp port did not drain in time");
        }
    }
    if conn.end_reason() == Some(&End::Reset) {
        // SO_LINGER 0 makes close() send RST instead of FIN (and not block).
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    let closed = conn.close();
    if let EventKind::Closed { reason } = &closed {
        debug!(%reason, "closed");
    }
    cfg.record(Some(&info), closed);
}

/// Runs the connection until it ends: records its events, writes its bytes, opens its UDP ports,
/// and waits for whichever comes first of the socket, its timer, its core's revision and the
/// device stopping.
async fn serve<D: Driven>(
    stream: &mut TcpStream,
    conn: &mut D,
    cfg: &ShellConfig,
    mut changes: Option<(&Changes, watch::Receiver<u64>)>,
    udp_closed: &watch::Receiver<bool>,
    udp_tasks: &mut Vec<JoinHandle<()>>,
) {
    let mut shutdown = cfg.shutdown.clone();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(kind) = conn.poll_event() {
            cfg.record(Some(conn.info()), kind);
        }
        if let Some(bytes) = conn.poll_transmit() {
            if let Err(e) = stream.write_all(&bytes).await {
                conn.abort(format!("write error: {e}"));
            }
            continue;
        }
        if let Some(requests) = conn.poll_udp() {
            let mut ports = Vec::with_capacity(requests.len());
            for r in requests {
                let ip = conn.info().local.ip();
                match udp::open(ip, r, cfg.clone(), udp_closed.clone()).await {
                    Ok((port, task)) => {
                        ports.push(port);
                        udp_tasks.push(task);
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot open UDP port");
                        ports.push(0);
                    }
                }
            }
            conn.ports_opened(&ports, SystemTime::now());
            continue;
        }
        if conn.end_reason().is_some() {
            return;
        }
        let timer = conn
            .poll_timeout()
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        let reading = conn.wants_read();
        let waits = conn.waits_for_change();
        tokio::select! {
            r = stream.read(&mut chunk), if reading => match r {
                Ok(0) => conn.receive_eof(),
                Ok(n) => conn.receive(&chunk[..n], SystemTime::now()),
                Err(e) => conn.abort(format!("read error: {e}")),
            },
            _ = shutdown.wait_for(|s| *s), if reading => conn.abort("device shutting down".into()),
            _ = sleep(timer) => conn.handle_timeout(SystemTime::now()),
            _ = revision_moves(changes.as_mut(), waits) => conn.handle_change(SystemTime::now()),
        }
    }
}

/// What [`serve`] drives: the request driver ([`Connection`]) or the byte-stream driver
/// ([`StreamConnection`]), through the same methods.
trait Driven {
    fn info(&self) -> &ConnInfo;
    fn poll_event(&mut self) -> Option<EventKind>;
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn poll_udp(&mut self) -> Option<Vec<UdpRequest>>;
    fn ports_opened(&mut self, ports: &[u16], now: SystemTime);
    fn end_reason(&self) -> Option<&End>;
    fn poll_timeout(&self) -> Option<SystemTime>;
    fn wants_read(&self) -> bool;
    fn waits_for_change(&self) -> Option<u64>;
    fn receive(&mut self, bytes: &[u8], now: SystemTime);
    fn receive_eof(&mut self);
    fn abort(&mut self, reason: String);
    fn handle_timeout(&mut self, now: SystemTime);
    fn handle_change(&mut self, now: SystemTime);
}

impl<S: ProtocolCore> Driven for Connection<S> {
    fn info(&self) -> &ConnInfo {
        Connection::info(self)
    }
    fn poll_event(&mut self) -> Option<EventKind> {
        Connection::poll_event(self)
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        Connection::poll_transmit(self)
    }
    fn poll_udp(&mut self) -> Option<Vec<UdpRequest>> {
        Connection::poll_udp(self)
    }
    fn ports_opened(&mut self, ports: &[u16], now: SystemTime) {
        Connection::ports_opened(self, ports, now)
    }
    fn end_reason(&self) -> Option<&End> {
        Connection::end_reason(self)
    }
    fn poll_timeout(&self) -> Option<SystemTime> {
        Connection::poll_timeout(self)
    }
    fn wants_read(&self) -> bool {
        Connection::wants_read(self)
    }
    fn waits_for_change(&self) -> Option<u64> {
        Connection::waits_for_change(self)
    }
    fn receive(&mut self, bytes: &[u8], now: SystemTime) {
        Connection::receive(self, bytes, now)
    }
    fn receive_eof(&mut self) {
        Connection::receive_eof(self)
    }
    fn abort(&mut self, reason: String) {
        Connection::abort(self, reason)
    }
    fn handle_timeout(&mut self, now: SystemTime) {
        Connection::handle_timeout(self, now)
    }
    fn handle_change(&mut self, now: SystemTime) {
        Connection::handle_change(self, now)
    }
}

impl<C: StreamCore> Driven for StreamConnection<C> {
    fn info(&self) -> &ConnInfo {
        StreamConnection::info(self)
    }
    fn poll_event(&mut self) -> Option<EventKind> {
        StreamConnection::poll_event(self)
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        StreamConnection::poll_transmit(self)
    }
    fn poll_udp(&mut self) -> Option<Vec<UdpRequest>> {
        None
    }
    fn ports_opened(&mut self, _: &[u16], _: SystemTime) {}
    fn end_reason(&self) -> Option<&End> {
        StreamConnection::end_reason(self)
    }
    fn poll_timeout(&self) -> Option<SystemTime> {
        StreamConnection::poll_timeout(self)
    }
    fn wants_read(&self) -> bool {
        StreamConnection::wants_read(self)
    }
    fn waits_for_change(&self) -> Option<u64> {
        None
    }
    fn receive(&mut self, bytes: &[u8], now: SystemTime) {
        StreamConnection::receive(self, bytes, now)
    }
    fn receive_eof(&mut self) {
        StreamConnection::receive_eof(self)
    }
    fn abort(&mut self, reason: String) {
        StreamConnection::abort(self, reason)
    }
    fn handle_timeout(&mut self, now: SystemTime) {
        StreamConnection::handle_timeout(self, now)
    }
    fn handle_change(&mut self, _: SystemTime) {}
}

/// Accepts connections until shutdown, each driven by a [`StreamConnection`] of `core`;
/// `protocol` names the framing in the transcript.
pub fn spawn_stream<C: StreamCore>(
    listener: TcpListener,
    core: Arc<C>,
    cfg: ShellConfig,
    service_name: &str,
    protocol: &'static str,
) -> JoinHandle<()> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    cfg.record(
        None,
        EventKind::Listening {
            service: service_name.to_string(),
            port,
        },
    );
    let counter = Arc::new(AtomicU64::new(0));
    let mut shutdown = cfg.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (mut stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!(device = %cfg.device, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let info = ConnInfo {
                device: cfg.device.clone(),
                index: counter.fetch_add(1, Ordering::Relaxed),
                peer,
                local: stream.local_addr().unwrap_or(peer),
            };
            let span = info_span!("conn", device = %cfg.device, peer = %peer, conn = info.index);
            let core = core.clone();
            let cfg = cfg.clone();
            tokio::spawn(
                async move {
                    let _ = stream.set_nodelay(true);
                    let mut conn = StreamConnection::new(
                        &*core,
                        info.clone(),
                        cfg.plan.clone(),
                        protocol,
                        cfg.idle_timeout,
                        SystemTime::now(),
                    );
                    let (_udp_close, udp_closed) = watch::channel(false);
                    serve(
                        &mut stream,
                        &mut conn,
                        &cfg,
                        None,
                        &udp_closed,
                        &mut Vec::new(),
                    )
                    .await;
                    if conn.end_reason() == Some(&End::Reset) {
                        // SO_LINGER 0 makes close() send RST instead of FIN.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    }
                    cfg.record(Some(&info), conn.close());
                }
                .instrument(span),
            );
        }
    })
}

/// Sleeps for `d`, or forever.
async fn sleep(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Returns once the core's revision differs from `after`; never without one.
async fn revision_moves(
    changes: Option<&mut (&Changes, watch::Receiver<u64>)>,
    after: Option<u64>,
) {
    let (Some((changes, rx)), Some(after)) = (changes, after) else {
        return std::future::pending().await;
    };
    loop {
        rx.borrow_and_update();
        if changes.revision() != after {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
