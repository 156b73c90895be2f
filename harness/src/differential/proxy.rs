//! The recording proxy between a client and a receiver: [`Tap`] frames the bytes each way with
//! the project's RTSP/HTTP framing (`wire::framing`) and pairs requests with responses in order
//! (RTSP answers in request order, RFC 2326 §12.17; so does HTTP/1.1 without pipelining
//! surprises, RFC 9112 §9.3.2); [`Proxy`] is the tokio shell that only moves bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use airtwin_simulators::wire::framing::{frame_request, parse_response, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::Exchange;

/// One connection's recording, sans IO: bytes in each direction, exchanges out.
///
/// After a `101 Switching Protocols` answer (`POST /reverse` with `Upgrade: PTTH/1.0`, the
/// classic AirPlay event channel, docs/protocols/airplay.md) the connection is reversed: the
/// receiver sends requests (`POST /event`) and the client answers them. Such a pushed exchange is
/// recorded with the pushed request's method, path, headers and body, and the client's status.
#[derive(Debug, Default)]
pub struct Tap {
    connection: usize,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    requests: Vec<(String, String)>,
    exchanges: Vec<Exchange>,
    /// The connection was upgraded (101): the receiver now sends the requests.
    reversed: bool,
    /// Requests the receiver pushed, not yet answered by the client.
    pushed: Vec<Exchange>,
    /// Framing failed one way: the rest is passed on unrecorded.
    lost: bool,
    /// Counts every request, response or pushed request framed: the snapshot changes only with it.
    version: u64,
}

impl Tap {
    pub fn new(connection: usize) -> Self {
        Tap {
            connection,
            ..Tap::default()
        }
    }

    /// Bytes the client sent.
    pub fn client_bytes(&mut self, bytes: &[u8]) {
        if self.lost {
            return;
        }
        self.to_server.extend_from_slice(bytes);
        if self.reversed {
            self.client_answers();
            return;
        }
        loop {
            match frame_request(&self.to_server, &Limits::default()) {
                Ok(Some(f)) => {
                    self.to_server.drain(..f.used);
                    self.requests.push((f.request.method, f.request.uri));
                    self.version += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    self.lost = true;
                    break;
                }
            }
        }
    }

    /// Bytes the receiver sent.
    pub fn server_bytes(&mut self, bytes: &[u8]) {
        if self.lost {
            return;
        }
        self.to_client.extend_from_slice(bytes);
        while !self.reversed {
            match parse_response(&self.to_client, &Limits::default()) {
                Ok(Some((response, used))) => {
                    self.to_client.drain(..used);
                    let answered = self.exchanges.len();
                    let (method, uri) = self
                        .requests
                        .get(answered)
                        .cloned()
                        .unwrap_or_else(|| ("(unrequested)".into(), String::new()));
                    self.reversed = response.status == 101;
                    self.exchanges.push(Exchange {
                        connection: self.connection,
                        method,
                        uri,
                        status: Some(response.status),
                        headers: lower_headers(&response.headers),
                        body: response.body,
                    });
                    self.version += 1;
                }
                Ok(None) => return,
                Err(_) => {
                    self.lost = true;
                    return;
                }
            }
        }
        self.server_pushes();
    }

    fn server_pushes(&mut self) {
        loop {
            match frame_request(&self.to_client, &Limits::default()) {
                Ok(Some(f)) => {
                    self.to_client.drain(..f.used);
                    self.pushed.push(Exchange {
                        connection: self.connection,
                        headers: lower_headers(&f.request.headers),
                        method: f.request.method,
                        uri: f.request.uri,
                        status: None,
                        body: f.request.body,
                    });
                    self.version += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    self.lost = true;
                    break;
                }
            }
        }
    }

    fn client_answers(&mut self) {
        loop {
            match parse_response(&self.to_server, &Limits::default()) {
                Ok(Some((response, used))) => {
                    self.to_server.drain(..used);
                    let mut exchange = if self.pushed.is_empty() {
                        Exchange {
                            connection: self.connection,
                            method: "(unrequested)".into(),
                            uri: String::new(),
                            status: None,
                            headers: Vec::new(),
                            body: Vec::new(),
                        }
                    } else {
                        self.pushed.remove(0)
                    };
                    exchange.status = Some(response.status);
                    self.exchanges.push(exchange);
                    self.version += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    self.lost = true;
                    break;
                }
            }
        }
    }

    /// Changes whenever [`Tap::snapshot`] would.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The exchanges so far, requests not answered (yet) included (status `None`).
    pub fn snapshot(&self) -> Vec<Exchange> {
        let mut out = self.exchanges.clone();
        let answered = out.len();
        if !self.reversed {
            for (method, uri) in self.requests.iter().skip(answered) {
                out.push(Exchange {
                    connection: self.connection,
                    method: method.clone(),
                    uri: uri.clone(),
                    status: None,
                    headers: Vec::new(),
                    body: Vec::new(),
                });
            }
        }
        out.extend(self.pushed.iter().cloned());
        out
    }

    /// The exchanges, requests never answered included (status `None`).
    pub fn finish(self) -> Vec<Exchange> {
        self.snapshot()
    }
}

fn lower_headers(headers: &airtwin_simulators::wire::message::Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// A listening recording proxy on 127.0.0.1 in front of `upstream`.
pub struct Proxy {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Vec<Exchange>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let recorded: Arc<Mutex<Vec<Vec<Exchange>>>> = Arc::default();
        let slots = recorded.clone();
        let accept = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((client, _)) = listener.accept().await {
                let index = next;
                next += 1;
                slots.lock().expect("recording lock").push(Vec::new());
                let slots = slots.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pipe(client, server, Tap::new(index), &slots, index).await;
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            recorded,
            accept,
        })
    }

    /// Every exchange so far, connection by connection.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.recorded
            .lock()
            .expect("recording lock")
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub fn stop(&self) {
        self.accept.abort();
    }
}

/// Moves bytes both ways until both sides closed, publishing the recording after every read that
/// framed a request or response: a receiver that keeps its side open (Kodi after the client left)
/// is still recorded.
async fn pipe(
    mut client: TcpStream,
    mut server: TcpStream,
    mut tap: Tap,
    slots: &Mutex<Vec<Vec<Exchange>>>,
    index: usize,
) {
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut sbuf = vec![0u8; 64 * 1024];
    let (mut client_open, mut server_open) = (true, true);
    let mut published = tap.version();
    let mut publish = |tap: &Tap| {
        if tap.version() != published {
            published = tap.version();
            slots.lock().expect("recording lock")[index] = tap.snapshot();
        }
    };
    while client_open || server_open {
        tokio::select! {
            n = cr.read(&mut cbuf), if client_open => match n {
                Ok(0) | Err(_) => { client_open = false; let _ = sw.shutdown().await; }
                Ok(n) => {
                    tap.client_bytes(&cbuf[..n]);
                    publish(&tap);
                    if sw.write_all(&cbuf[..n]).await.is_err() { break; }
                }
            },
            n = sr.read(&mut sbuf), if server_open => match n {
                Ok(0) | Err(_) => { server_open = false; let _ = cw.shutdown().await; }
                Ok(n) => {
                    tap.server_bytes(&sbuf[..n]);
                    publish(&tap);
                    if cw.write_all(&sbuf[..n]).await.is_err() { break; }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_requests_with_responses_in_order() {
        let mut tap = Tap::new(3);
        tap.client_bytes(
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\nANNOUNCE rtsp://a/1 RTSP/1.0\r\nCSe",
        );
        tap.client_bytes(b"q: 2\r\nContent-Length: 2\r\n\r\nv=");
        tap.server_bytes(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: ANNOUNCE\r\n\r\nRTSP/1.0 4");
        tap.server_bytes(b"53 Not Enough Bandwidth\r\nCSeq: 2\r\n\r\n");
        tap.client_bytes(b"TEARDOWN rtsp://a/1 RTSP/1.0\r\nCSeq: 3\r\n\r\n");
        let e = tap.finish();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].method.as_str(), e[0].status), ("OPTIONS", Some(200)));
        assert_eq!(
            e[0].headers[1],
            ("public".to_string(), "ANNOUNCE".to_string())
        );
        assert_eq!((e[1].method.as_str(), e[1].status), ("ANNOUNCE", Some(453)));
        assert_eq!((e[2].method.as_str(), e[2].status), ("TEARDOWN", None));
        assert_eq!(e[2].connection, 3);
        let mut tap = Tap::new(0);
        let v = tap.version();
        tap.client_bytes(b"OPTIONS * RTSP/1.0\r\nCS");
        assert_eq!(tap.version(), v, "no request framed yet");
        tap.client_bytes(b"eq: 1\r\n\r\n");
        let v = tap.version();
        assert_ne!(v, 0);
        tap.server_bytes(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n");
        assert_ne!(tap.version(), v, "the response changes the snapshot");
    }

    #[tokio::test]
    async fn an_exchange_is_recorded_while_both_sides_keep_the_connection_open() {
        let server = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let upstream = server.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let proxy = Proxy::start(upstream).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(b"POST /stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let e = proxy.exchanges();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].uri.as_str(), e[0].status), ("/stop", Some(200)));
        proxy.stop();
        held.abort();
    }

    #[test]
    fn after_a_ptth_upgrade_the_receivers_pushed_events_are_recorded() {
        let mut tap = Tap::new(1);
        tap.client_bytes(
            b"POST /reverse HTTP/1.1\r\nUpgrade: PTTH/1.0\r\nConnection: Upgrade\r\n\r\n",
        );
        // Kodi ends its status line in a bare LF (docs/peers.md, "Kodi").
        tap.server_bytes(b"HTTP/1.1 101 Switching Protocols\nUpgrade: PTTH/1.0\r\nConnection: Upgrade\r\n\r\nPOST /event HTTP/1.1\r\nContent-Type: text/x-apple-plist+xml\r\nContent-Length: 3\r\n\r\nab");
        tap.server_bytes(b"cPOST /event HTTP/1.1\r\nContent-Length: 2\r\n\r\nde");
        tap.client_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let e = tap.finish();
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!((e[0].uri.as_str(), e[0].status), ("/reverse", Some(101)));
        assert_eq!(
            (e[1].method.as_str(), e[1].uri.as_str()),
            ("POST", "/event")
        );
        assert_eq!(
            (e[1].status, e[1].body.as_slice()),
            (Some(200), &b"abc"[..])
        );
        assert_eq!(
            e[1].headers[0],
            (
                "content-type".to_string(),
                "text/x-apple-plist+xml".to_string()
            )
        );
        assert_eq!((e[2].status, e[2].body.as_slice()), (None, &b"de"[..]));
    }
}
