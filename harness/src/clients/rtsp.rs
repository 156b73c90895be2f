//! The client end of an RTSP/HTTP connection, as airtwin's own clients and benchmarks use it:
//! numbered CSeq, one request at a time, responses framed by the shared codec.

use std::net::SocketAddr;
use std::time::Duration;

use airtwin_simulators::wire::{self, Headers, Limits, Protocol, Request, Response};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Error)]
pub enum RtspError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("connection closed by the device before a response")]
    Closed,
    #[error("connection reset or broken: {0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable response: {0}")]
    Framing(#[from] wire::FramingError),
    #[error("response CSeq {got:?} does not echo the request's {want}")]
    CSeq { want: u32, got: Option<String> },
}

/// One connection to a device.
pub struct RtspClient {
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    pub timeout: Duration,
    /// Headers sent with every request (User-Agent, DACP-ID, …).
    pub common: Headers,
    /// `Session` learned from SETUP, sent on later requests.
    pub session: Option<String>,
}

impl RtspClient {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, RtspError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RtspError::Timeout(timeout))?
            .map_err(|e| RtspError::Connect { addr, source: e })?;
        let _ = stream.set_nodelay(true);
        Ok(RtspClient {
            stream,
            buf: Vec::with_capacity(4096),
            cseq: 0,
            timeout,
            common: Headers::new(),
            session: None,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Sends one request (CSeq, common headers and Session added) and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response, RtspError> {
        self.request_with(method, uri, Protocol::Rtsp10, headers, body)
            .await
    }

    pub async fn request_with(
        &mut self,
        method: &str,
        uri: &str,
        protocol: Protocol,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response, RtspError> {
        self.cseq += 1;
        let mut req = Request::new(method, uri, protocol);
        req.headers.set("CSeq", self.cseq.to_string());
        for (n, v) in self.common.iter() {
            req.headers.append(n, v);
        }
        if let Some(s) = &self.session {
            req.headers.set("Session", s.clone());
        }
        for (n, v) in headers {
            req.headers.set(n, *v);
        }
        if let Some((ctype, bytes)) = body {
            req.headers.set("Content-Type", ctype);
            req.body = bytes;
        }
        self.stream.write_all(&req.encode()).await?;
        let resp = tokio::time::timeout(self.timeout, self.read_response())
            .await
            .map_err(|_| RtspError::Timeout(self.timeout))??;
        if protocol == Protocol::Rtsp10 {
            let got = resp.headers.get("CSeq");
            if got.map(str::trim) != Some(self.cseq.to_string().as_str()) {
                return Err(RtspError::CSeq {
                    want: self.cseq,
                    got: got.map(str::to_string),
                });
            }
        }
        Ok(resp)
    }

    async fn read_response(&mut self) -> Result<Response, RtspError> {
        let limits = Limits::default();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some((resp, used)) = wire::parse_response(&self.buf, &limits)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(RtspError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
