//! RTSP/1.0 and HTTP/1.1 messages as AirPlay devices see them.
//!
//! AirPlay senders speak RTSP/1.0 and HTTP/1.1 on the same port (a real Apple TV takes both on port
//! 7000; docs/protocols/airplay.md shows `GET /info RTSP/1.0` with a body). Both share one
//! shape: a request line, a header block, and a body sized by `Content-Length`.

use std::fmt;

/// An ordered, case-insensitive header list. Order is kept because transcripts show headers as
/// they were sent, and duplicates are kept because HTTP allows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`, compared without regard to case (RFC 2326 §4.2, RFC 9110 §5.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Replaces every value of `name` with one value, keeping the position of the first.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(pos) = self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            self.0[pos].1 = value;
            let mut i = pos + 1;
            while i < self.0.len() {
                if self.0[i].0.eq_ignore_ascii_case(name) {
                    self.0.remove(i);
                } else {
                    i += 1;
                }
            }
        } else {
            self.0.push((name.to_string(), value));
        }
    }

    /// Adds a value without touching existing ones.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }

    /// Removes every value of `name`; true when one was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut String)> {
        self.0.iter_mut().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Headers {
    fn from(list: [(&str, &str); N]) -> Self {
        Headers(
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }
}

/// Which protocol a message is framed in. The same codec reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtsp10,
    Http10,
    Http11,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RTSP/1.0" => Some(Protocol::Rtsp10),
            "HTTP/1.1" => Some(Protocol::Http11),
            "HTTP/1.0" => Some(Protocol::Http10),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtsp10 => "RTSP/1.0",
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request: `METHOD URI PROTOCOL`, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// As sent: absolute (`rtsp://10.0.1.101/3172942895`) or relative (`/info`).
    pub uri: String,
    pub protocol: Protocol,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, uri: &str, protocol: Protocol) -> Self {
        Request {
            method: method.to_string(),
            uri: uri.to_string(),
            protocol,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// The path part of the URI: `rtsp://host/123?x` → `/123`, `/info?a=b` → `/info`, `*` → `*`.
    pub fn path(&self) -> &str {
        let rest = match self.uri.find("://") {
            Some(i) => {
                let after = &self.uri[i + 3..];
                match after.find('/') {
                    Some(j) => &after[j..],
                    None => "/",
                }
            }
            None => self.uri.as_str(),
        };
        rest.split(['?', '#']).next().unwrap_or(rest)
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.uri
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(q))
    }

    /// The value of one query parameter (not percent-decoded; DACP values are plain).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    pub fn cseq(&self) -> Option<&str> {
        self.headers.get("CSeq")
    }

    /// Serialises the request (used by airtwin's own clients).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.uri, self.protocol).into_bytes();
        encode_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

/// A response: `PROTOCOL STATUS REASON`, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub protocol: Protocol,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(protocol: Protocol, status: u16) -> Self {
        Response {
            protocol,
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response with a body and its content type.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.set("Content-Type", content_type);
        self.body = body;
        self
    }

    /// A response carrying a human-readable reason in the body (for 4xx/5xx answers).
    pub fn with_reason_text(self, text: &str) -> Self {
        self.with_body("text/plain", format!("{text}\r\n").into_bytes())
    }

    /// Serialises the response. `Content-Length` is always written (pyatv needs it even for empty
    /// bodies: docs/peers.md) and always matches the body, except in a 1xx response, which has no
    /// body and must not carry it (RFC 9110 §8.6, §15.2).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.protocol, self.status, self.reason).into_bytes();
        if (100..200).contains(&self.status) {
            for (name, value) in self.headers.iter() {
                if !name.eq_ignore_ascii_case("Content-Length") {
                    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
            return out;
        }
        encode_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

fn encode_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

/// Reason phrases of RFC 2326 §7.1.1 and RFC 9110 §15 for the codes devices send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        451 => "Parameter Not Understood",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        456 => "Header Field Not Valid for Resource",
        461 => "Unsupported Transport",
        470 => "Connection Authorization Required",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Unknown",
    }
}

/// Decodes the `%XX` escapes of a URI component (RFC 3986 §2.1), and nothing else: a `+` stays a
/// `+` (DAAP reads it as "and", docs/protocols/daap.md). Invalid escapes stay as they are; invalid
/// UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_takes_escapes_only() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b+c%2");
        assert_eq!(percent_decode("%zz%27"), "%zz'");
        assert_eq!(percent_decode("Living%20Room"), "Living Room");
    }

    #[test]
    fn path_strips_scheme_host_and_query() {
        let mut r = Request::new("ANNOUNCE", "rtsp://10.0.1.101/3172942895", Protocol::Rtsp10);
        assert_eq!(r.path(), "/3172942895");
        r.uri = "/ctrl-int/1/playstatusupdate?revision-number=1&session-id=7".into();
        assert_eq!(r.path(), "/ctrl-int/1/playstatusupdate");
        assert_eq!(r.query_param("session-id"), Some("7"));
        assert_eq!(r.query_param("nope"), None);
        r.uri = "*".into();
        assert_eq!(r.path(), "*");
    }

    #[test]
    fn headers_are_case_insensitive_and_set_replaces_all() {
        let mut h = Headers::from([("CSeq", "1"), ("cseq", "2"), ("X", "y")]);
        assert_eq!(h.get("CSEQ"), Some("1"));
        h.set("Cseq", "3");
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("cseq"), Some("3"));
        assert!(h.remove("x"));
        assert!(!h.contains("X"));
    }

    #[test]
    fn encode_always_writes_matching_content_length() {
        let mut r = Response::new(Protocol::Rtsp10, 200);
        r.headers.set("Content-Length", "999");
        r.body = b"abc".to_vec();
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(text.starts_with("RTSP/1.0 200 OK\r\n"));
        assert!(text.ends_with("Content-Length: 3\r\n\r\nabc"));
        assert!(!text.contains("999"));
    }
}
