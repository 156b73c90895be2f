//! The TCP connection loop every device shares: read bytes, frame requests, ask the fault seam,
//! call the core, edit, write. No protocol logic lives here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use super::udp;
use super::Recorder;
use crate::event::EventKind;
use crate::fault::{self, Exchange, FaultPlan, Preempt};
use crate::service::{ConnInfo, Context, Note, Outcome, Service};
use crate::wire::{self, Limits, Request, Response};

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
pub fn spawn<S: Service>(
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
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(device = %cfg.device, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
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

/// The UDP ports a connection opened, and the signal that its connection ended.
struct UdpPorts {
    tasks: Vec<JoinHandle<()>>,
    closed: watch::Receiver<bool>,
}

enum End {
    Closed(String),
    Reset,
}

async fn connection<S: Service>(
    mut stream: TcpStream,
    info: ConnInfo,
    service: Arc<S>,
    cfg: ShellConfig,
    revision: Option<watch::Receiver<u64>>,
) {
    let _ = stream.set_nodelay(true);
    cfg.record(Some(&info), EventKind::Connected);
    debug!("connected");
    let mut state = service.open(&info);
    let (udp_close, udp_closed) = watch::channel(false);
    let mut udp_tasks = UdpPorts {
        tasks: Vec::new(),
        closed: udp_closed,
    };
    let end = serve_requests(
        &mut stream,
        &info,
        &*service,
        &mut state,
        &cfg,
        &mut udp_tasks,
        revision,
    )
    .await;
    // Datagrams sent just before the connection ended may still wait in the UDP sockets: each
    // port drains what is queued, then stops.
    let _ = udp_close.send(true);
    for t in udp_tasks.tasks {
        if tokio::time::timeout(Duration::from_millis(500), t)
            .await
            .is_err()
        {
            debug!("udp port did not drain in time");
        }
    }
    service.close(state);
    let reason = match end {
        End::Closed(reason) => reason,
        End::Reset => {
            // SO_LINGER 0 makes close() send RST instead of FIN (and not block).
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            "reset by fault".to_string()
        }
    };
    debug!(%reason, "closed");
    cfg.record(Some(&info), EventKind::Closed { reason });
}

async fn serve_requests<S: Service>(
    stream: &mut TcpStream,
    info: &ConnInfo,
    service: &S,
    state: &mut S::Conn,
    cfg: &ShellConfig,
    udp_tasks: &mut UdpPorts,
    mut revision: Option<watch::Receiver<u64>>,
) -> End {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut index: u64 = 0;
    let mut shutdown = cfg.shutdown.clone();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Answer every whole request already buffered.
        loop {
            let parsed = wire::parse_request(&buf, &cfg.limits);
            let (req, used) = match parsed {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    info!(error = %e, "bad request, answering {} and closing", e.status());
                    cfg.record(
                        Some(info),
                        EventKind::Warning {
                            message: format!("framing: {e}"),
                        },
                    );
                    let salvaged = wire::salvage(&buf);
                    let protocol = salvaged.protocol.unwrap_or(wire::Protocol::Rtsp10);
                    let mut resp =
                        Response::new(protocol, e.status()).with_reason_text(&e.to_string());
                    let now = SystemTime::now();
                    let params = Default::default();
                    let cx = Context::new(info, now, &params);
                    service.decorate(state, None, &mut resp, &cx);
                    if let Some(cseq) = salvaged.cseq {
                        resp.headers.set("CSeq", cseq);
                    }
                    record_response(cfg, info, None, &resp);
                    let _ = stream.write_all(&resp.encode()).await;
                    return End::Closed(format!("bad request: {e}"));
                }
            };
            buf.drain(..used);
            let this = index;
            index += 1;
            match exchange(
                stream,
                info,
                service,
                state,
                cfg,
                udp_tasks,
                req,
                this,
                &mut buf,
                revision.as_mut(),
            )
            .await
            {
                Ok(()) => {}
                Err(end) => return end,
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(cfg.idle_timeout, stream.read(&mut chunk)) => r,
            _ = shutdown.wait_for(|s| *s) => return End::Closed("device shutting down".into()),
        };
        match read {
            Err(_) => {
                info!(
                    timeout_ms = cfg.idle_timeout.as_millis() as u64,
                    "idle timeout, closing"
                );
                return End::Closed("idle timeout".into());
            }
            Ok(Err(e)) => return End::Closed(format!("read error: {e}")),
            Ok(Ok(0)) => return End::Closed("peer closed".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn exchange<S: Service>(
    stream: &mut TcpStream,
    info: &ConnInfo,
    service: &S,
    state: &mut S::Conn,
    cfg: &ShellConfig,
    udp_tasks: &mut UdpPorts,
    req: Request,
    index: u64,
    pending: &mut Vec<u8>,
    revision: Option<&mut watch::Receiver<u64>>,
) -> Result<(), End> {
    debug!(method = %req.method, uri = %req.uri, "request");
    cfg.record(
        Some(info),
        EventKind::Request {
            index,
            method: req.method.clone(),
            uri: req.uri.clone(),
            protocol: req.protocol.to_string(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            content_type: req.headers.get("Content-Type").map(str::to_string),
            body: req.body.clone(),
        },
    );
    let verdict = cfg.plan.on_request(&Exchange {
        device: &cfg.device,
        connection: info.index,
        request: index,
        method: &req.method,
        path: req.path(),
    });
    for a in &verdict.applied {
        info!(fault = a.fault, action = %a.action, "fault applied");
        cfg.record(
            Some(info),
            EventKind::Fault {
                request: Some(index),
                fault: a.fault,
                action: a.action.clone(),
            },
        );
    }
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    let now = SystemTime::now();
    let mut cx = Context::new(info, now, &verdict.params);
    let mut close_after = false;
    let mut resp = match verdict.preempt {
        Some(Preempt::Drop) => return Err(End::Closed("dropped by fault".into())),
        Some(Preempt::Reset) => return Err(End::Reset),
        Some(Preempt::Stall) => {
            stall(stream, cfg).await;
            return Err(End::Closed("stalled by fault".into()));
        }
        Some(Preempt::Respond(r)) => {
            let mut r = fault::preempt_response(r, &req);
            service.decorate(state, Some(&req), &mut r, &cx);
            r
        }
        None => match handle_and_wait(
            stream, service, state, cfg, &req, &mut cx, pending, revision,
        )
        .await?
        {
            Outcome::Respond(r) => r,
            Outcome::RespondAndClose(r) => {
                close_after = true;
                r
            }
            Outcome::OpenUdp(requests) => {
                let mut ports = Vec::with_capacity(requests.len());
                for r in requests {
                    match udp::open(info.local.ip(), r, cfg.clone(), udp_tasks.closed.clone()).await
                    {
                        Ok((port, task)) => {
                            ports.push(port);
                            udp_tasks.tasks.push(task);
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot open UDP port");
                            ports.push(0);
                        }
                    }
                }
                service.complete(state, &req, &ports, &mut cx)
            }
            Outcome::Wait { .. } => unreachable!("handle_and_wait never returns Wait"),
        },
    };
    for note in cx.notes.drain(..) {
        let kind = match note {
            Note::Warning(message) => {
                warn!(%message, "protocol warning");
                EventKind::Warning { message }
            }
            Note::Info(message) => EventKind::Note { message },
        };
        cfg.record(Some(info), kind);
    }
    fault::apply_edits(&mut resp, &verdict.edits);
    record_response(cfg, info, Some(index), &resp);
    if let Err(e) = stream.write_all(&resp.encode()).await {
        return Err(End::Closed(format!("write error: {e}")));
    }
    if close_after {
        return Err(End::Closed("closed by device".into()));
    }
    Ok(())
}

/// Calls the core, and as long as it answers [`Outcome::Wait`], waits as it asks and resumes it.
/// Reads on meanwhile: the peer closing ends the connection, bytes go to `pending`.
#[allow(clippy::too_many_arguments)]
async fn handle_and_wait<S: Service>(
    stream: &mut TcpStream,
    service: &S,
    state: &mut S::Conn,
    cfg: &ShellConfig,
    req: &Request,
    cx: &mut Context<'_>,
    pending: &mut Vec<u8>,
    mut revision: Option<&mut watch::Receiver<u64>>,
) -> Result<Outcome, End> {
    let mut outcome = service.handle(state, req, cx);
    let mut shutdown = cfg.shutdown.clone();
    let mut chunk = [0u8; 4096];
    while let Outcome::Wait {
        after_revision,
        until,
    } = outcome
    {
        let sleep = until.map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        let changes = service.changes();
        let woke = async {
            match (after_revision, changes, revision.as_deref_mut()) {
                (Some(after), Some(changes), Some(rx)) => loop {
                    rx.borrow_and_update();
                    if changes.revision() != after {
                        break;
                    }
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await
                    }
                },
                _ => std::future::pending::<()>().await,
            }
        };
        let timer = async {
            match sleep {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(woke, timer);
        loop {
            tokio::select! {
                _ = &mut woke => break,
                _ = &mut timer => break,
                _ = shutdown.wait_for(|s| *s) => return Err(End::Closed("device shutting down".into())),
                r = stream.read(&mut chunk) => match r {
                    Ok(0) => return Err(End::Closed("peer closed while the answer was deferred".into())),
                    Err(e) => return Err(End::Closed(format!("read error: {e}"))),
                    Ok(n) => {
                        pending.extend_from_slice(&chunk[..n]);
                        // Pipelined requests wait their turn; a flood is cut off at the limits.
                        if pending.len() > cfg.limits.max_head + cfg.limits.max_body {
                            return Err(End::Closed("peer sent too much while the answer was deferred".into()));
                        }
                    }
                },
            }
        }
        cx.now = SystemTime::now();
        outcome = service.resume(state, req, cx);
    }
    Ok(outcome)
}

fn record_response(cfg: &ShellConfig, info: &ConnInfo, index: Option<u64>, resp: &Response) {
    cfg.record(
        Some(info),
        EventKind::Response {
            index: index.unwrap_or(u64::MAX),
            status: resp.status,
            reason: resp.reason.clone(),
            // As sent: `Response::encode` always writes Content-Length last.
            headers: resp
                .headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"))
                .map(|(n, v)| (n.into(), v.into()))
                .chain([("Content-Length".to_string(), resp.body.len().to_string())])
                .collect(),
            content_type: resp.headers.get("Content-Type").map(str::to_string),
            body: resp.body.clone(),
        },
    );
}

/// Reads and discards until the peer goes away or the device stops.
async fn stall(stream: &mut TcpStream, cfg: &ShellConfig) {
    let mut shutdown = cfg.shutdown.clone();
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            r = stream.read(&mut sink) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
