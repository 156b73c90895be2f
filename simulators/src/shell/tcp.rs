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
use crate::buffer_budget::{BufferBudget, Verdict};
use crate::connection::{Connection, End, LoggedFrame};
use crate::event::EventKind;
use crate::fault::FaultPlan;
use crate::packet_log::{Transport, WirePacket};
use crate::protocol_core::{Changes, ConnInfo, PortRequest, ProtocolCore};
use crate::stream_connection::StreamConnection;
use crate::stream_core::{Plaintext, StreamCore};
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
    /// Bytes all connections of the device may hold at once.
    pub buffers: Arc<BufferBudget>,
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

/// An accept loop's memory of failures. Out of descriptors (EMFILE, ENFILE), `accept` fails until
/// connections close while the pending connection stays in the listen backlog: the loop backs off
/// instead of spinning, says so once, and says when it accepts again.
pub struct Acceptor {
    who: String,
    /// Accept errors in a row.
    failing: u64,
}

impl Acceptor {
    /// How long to wait after a failed accept.
    pub const BACK_OFF: Duration = Duration::from_millis(50);

    /// `who` names the listener in the log (a device, "control API").
    pub fn new(who: &str) -> Self {
        Acceptor {
            who: who.to_string(),
            failing: 0,
        }
    }

    /// The next connection, or `None` once `shutdown` turns true.
    pub async fn accept(
        &mut self,
        listener: &TcpListener,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => return None,
            };
            match accepted {
                Ok(x) => {
                    if self.failing > 0 {
                        warn!(device = %self.who, retries = self.failing, "accepting again");
                        self.failing = 0;
                    }
                    return Some(x);
                }
                Err(e) => {
                    if self.failing == 0 {
                        warn!(device = %self.who, error = %e, "accept failed; retrying every 50 ms");
                    }
                    self.failing += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(Self::BACK_OFF) => {}
                        _ = shutdown.wait_for(|s| *s) => return None,
                    }
                }
            }
        }
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
        let mut acceptor = Acceptor::new(&cfg.device);
        while let Some((stream, peer)) = acceptor.accept(&listener, &mut shutdown).await {
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
    let mut port_tasks = Vec::new();
    let changes = service.changes().zip(revision);
    serve(
        &mut stream,
        &mut conn,
        &cfg,
        changes,
        &udp_closed,
        &mut port_tasks,
    )
    .await;
    // Datagrams sent just before the connection ended may still wait in the UDP sockets: each
    // port drains what is queued, then stops. A TCP port's accepting task has nothing to drain.
    let _ = udp_close.send(true);
    for (t, drains) in port_tasks {
        if !drains {
            t.abort();
            continue;
        }
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_millis(500), t)
            .await
            .is_err()
        {
            abort.abort();
            debug!("port did not drain in time; stopped");
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
    port_tasks: &mut Vec<(JoinHandle<()>, bool)>,
) {
    let mut shutdown = cfg.shutdown.clone();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut share = Share {
        budget: &cfg.buffers,
        bytes: 0,
    };
    let logging = conn.events_lack_bytes() && cfg.recorder.logs_packets();
    if logging {
        conn.log_plaintext();
    }
    if cfg.recorder.logs_packets() {
        conn.log_frames();
    }
    let (peer, local) = (conn.info().peer, conn.info().local);
    let log = |from_peer: bool, wire: Option<Vec<u8>>, plain: Option<Vec<u8>>| {
        let (from, to) = if from_peer {
            (peer, local)
        } else {
            (local, peer)
        };
        cfg.recorder.log_packet(WirePacket {
            at: Duration::ZERO,
            device: cfg.device.clone(),
            transport: Transport::Tcp,
            from,
            to,
            wire,
            plain,
            note: None,
        });
    };
    loop {
        share.account(conn, &cfg.device);
        while let Some(kind) = conn.poll_event() {
            cfg.record(Some(conn.info()), kind);
        }
        while let Some(plain) = conn.poll_plaintext() {
            log(plain.from_peer, None, Some(plain.bytes));
        }
        while let Some(frame) = conn.poll_frame() {
            log(true, Some(frame.wire), frame.plain);
        }
        if let Some(bytes) = conn.poll_transmit() {
            match stream.write_all(&bytes).await {
                Ok(()) if logging => log(false, Some(bytes), None),
                Ok(()) => {}
                Err(e) => conn.abort(format!("write error: {e}")),
            }
            continue;
        }
        if let Some(requests) = conn.poll_ports() {
            let mut ports = Vec::with_capacity(requests.len());
            let ip = conn.info().local.ip();
            for r in requests {
                let drains = matches!(r, PortRequest::Udp(_));
                let opened = match r {
                    PortRequest::Udp(r) => udp::open(ip, r, cfg.clone(), udp_closed.clone()).await,
                    PortRequest::Tcp(r) => open_tcp(ip, r, cfg, conn.info().index).await,
                };
                match opened {
                    Ok((port, task)) => {
                        ports.push(port);
                        port_tasks.push((task, drains));
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot open a port");
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
                Ok(n) => {
                    if logging {
                        log(true, Some(chunk[..n].to_vec()), None);
                    }
                    conn.receive(&chunk[..n], SystemTime::now())
                }
                Err(e) => conn.abort(format!("read error: {e}")),
            },
            _ = shutdown.wait_for(|s| *s), if reading => conn.abort("device shutting down".into()),
            _ = sleep(timer) => conn.handle_timeout(SystemTime::now()),
            _ = revision_moves(changes.as_mut(), waits) => conn.handle_change(SystemTime::now()),
        }
    }
}

/// Connections accepted on a port that connection `n` opened are numbered from
/// `(n + 1) * OPENED_PORT_INDEX`, so the transcript tells them from the device's own.
const OPENED_PORT_INDEX: u64 = 1000;

/// Listens on `ip:0` for a port the core of connection `owner` asked for at run time; the
/// accepting task is aborted when that connection ends.
async fn open_tcp(
    ip: std::net::IpAddr,
    request: crate::protocol_core::TcpRequest,
    cfg: &ShellConfig,
    owner: u64,
) -> std::io::Result<(u16, JoinHandle<()>)> {
    let listener = bind(SocketAddr::new(ip, 0)).await?;
    let port = listener.local_addr()?.port();
    let task = spawn_stream_from(
        listener,
        Arc::new(request.accept),
        cfg.clone(),
        request.name,
        request.protocol,
        owner.saturating_add(1).saturating_mul(OPENED_PORT_INDEX),
    );
    Ok((port, task))
}

/// What one connection holds of its device's [`BufferBudget`]; given back when it ends.
struct Share<'a> {
    budget: &'a BufferBudget,
    bytes: usize,
}

impl Share<'_> {
    /// Brings the connection's share up to date; a connection whose growth takes the device over
    /// its budget is answered and closed ([`Connection::overloaded`]), with one log line each time
    /// the device runs full.
    fn account<D: Driven>(&mut self, conn: &mut D, device: &str) {
        let held = conn.buffered();
        if let Verdict::Over { first } = self.budget.account(self.bytes, held) {
            if first {
                warn!(
                    device,
                    limit = self.budget.limit(),
                    "device buffers full: connections that grow are answered 503 and closed until they drain"
                );
            }
            conn.overloaded(SystemTime::now());
            let after = conn.buffered();
            self.budget.account(held, after);
            self.bytes = after;
        } else {
            self.bytes = held;
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.budget.account(self.bytes, 0);
    }
}

/// What [`serve`] drives: the request driver ([`Connection`]) or the byte-stream driver
/// ([`StreamConnection`]), through the same methods.
trait Driven {
    fn info(&self) -> &ConnInfo;
    fn poll_event(&mut self) -> Option<EventKind>;
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn poll_ports(&mut self) -> Option<Vec<PortRequest>>;
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
    fn buffered(&self) -> usize;
    fn overloaded(&mut self, now: SystemTime);
    /// Whether captures need the bytes this connection moves: its events summarise frames
    /// instead of holding them (a byte stream), unlike requests and responses.
    fn events_lack_bytes(&self) -> bool {
        false
    }
    fn log_plaintext(&mut self) {}
    fn poll_plaintext(&mut self) -> Option<Plaintext> {
        None
    }
    /// Keep the interleaved RTP frames (RFC 2326 §10.12) the connection takes, which its
    /// events count but do not hold.
    fn log_frames(&mut self) {}
    fn poll_frame(&mut self) -> Option<LoggedFrame> {
        None
    }
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
    fn poll_ports(&mut self) -> Option<Vec<PortRequest>> {
        Connection::poll_ports(self)
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
    fn buffered(&self) -> usize {
        Connection::buffered(self)
    }
    fn overloaded(&mut self, now: SystemTime) {
        Connection::overloaded(self, now)
    }
    fn log_frames(&mut self) {
        Connection::log_frames(self)
    }
    fn poll_frame(&mut self) -> Option<LoggedFrame> {
        Connection::poll_frame(self)
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
    fn poll_ports(&mut self) -> Option<Vec<PortRequest>> {
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
    fn buffered(&self) -> usize {
        StreamConnection::buffered(self)
    }
    fn overloaded(&mut self, _: SystemTime) {
        StreamConnection::overloaded(self)
    }
    fn events_lack_bytes(&self) -> bool {
        true
    }
    fn log_plaintext(&mut self) {
        StreamConnection::log_plaintext(self)
    }
    fn poll_plaintext(&mut self) -> Option<Plaintext> {
        StreamConnection::poll_plaintext(self)
    }
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
    spawn_stream_from(listener, core, cfg, service_name, protocol, 0)
}

/// [`spawn_stream`] whose connections are numbered from `first_index`.
fn spawn_stream_from<C: StreamCore>(
    listener: TcpListener,
    core: Arc<C>,
    cfg: ShellConfig,
    service_name: &str,
    protocol: &'static str,
    first_index: u64,
) -> JoinHandle<()> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    cfg.record(
        None,
        EventKind::Listening {
            service: service_name.to_string(),
            port,
        },
    );
    let counter = Arc::new(AtomicU64::new(first_index));
    let mut shutdown = cfg.shutdown.clone();
    tokio::spawn(async move {
        let mut acceptor = Acceptor::new(&cfg.device);
        while let Some((mut stream, peer)) = acceptor.accept(&listener, &mut shutdown).await {
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
