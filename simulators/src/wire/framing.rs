//! Splitting a byte stream into requests (device side) and responses (client side).
//!
//! Hand-written request line, because neither kept crate takes what AirPlay senders send:
//! rtsp-types 0.1.3 rejects relative request URIs (`GET /info RTSP/1.0`, `POST /fp-setup RTSP/1.0`,
//! docs/protocols/airplay.md) and httparse's request parser rejects the `RTSP/1.0` version.
//! The header block is parsed by `httparse::parse_headers`; the body is sized by `Content-Length`
//! (RFC 2326 §12.14: absent means no body).
//!
//! Two departures from the grammar are accepted, as real receivers accept them, and reported in
//! [`Framed`] so the device can warn: lines ended by a bare LF instead of CRLF (RFC 9112 §2.2
//! allows a recipient to; npm `airplay-js` writes every request so, docs/protocols/raop.md,
//! "Line endings"), and an empty request URI (`TEARDOWN  RTSP/1.0`, npm `node-airtunes2`;
//! docs/protocols/raop.md, "An empty request URI").

use super::message::{Headers, Protocol, Request, Response};
use thiserror::Error;

/// Size caps a device applies to what it reads. Exceeding one is answered with a 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header block, in bytes.
    pub max_head: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Body bytes (`Content-Length`).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 4 * 1024 * 1024,
        }
    }
}

/// Why bytes could not be read as a message. Each maps to the status a device answers with before
/// it closes the connection.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("malformed request line: {0}")]
    RequestLine(String),
    #[error("malformed status line: {0}")]
    StatusLine(String),
    #[error("unsupported protocol version {0:?}")]
    Version(String),
    #[error("malformed header block: {0}")]
    Headers(String),
    #[error("header block longer than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("Content-Length {0:?} is not a number")]
    ContentLength(String),
    #[error("body of {got} bytes exceeds the {max}-byte limit")]
    BodyTooLarge { got: usize, max: usize },
}

impl FramingError {
    /// The status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            FramingError::Version(_) => 505,
            FramingError::HeadTooLarge(_) | FramingError::TooManyHeaders(_) => 431,
            FramingError::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// Where the header block ends (index just past the empty line that closes it), if it has
/// arrived, and whether some line of it ends in a bare LF. A line ends at LF, with or without the
/// CR before it (RFC 9112 §2.2).
fn head_end(buf: &[u8]) -> Option<(usize, bool)> {
    let mut bare_lf = false;
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let crlf = i > 0 && buf[i - 1] == b'\r';
        bare_lf |= !crlf;
        let content_end = if crlf { i - 1 } else { i };
        if content_end == line_start {
            return Some((i + 1, bare_lf));
        }
        line_start = i + 1;
    }
    None
}

/// A request read from the front of a buffer, with what it did that the grammar does not allow
/// but receivers accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub request: Request,
    /// Bytes of the buffer it took.
    pub used: usize,
    /// Some line of its head ends in a bare LF instead of CRLF.
    pub bare_lf: bool,
    /// Its request URI is empty (`TEARDOWN  RTSP/1.0`).
    pub empty_uri: bool,
}

/// Parses the header block (`Name: value\r\n`… `\r\n`) with httparse.
fn parse_header_block(block: &[u8], limits: &Limits) -> Result<Headers, FramingError> {
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(block, &mut storage) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let mut headers = Headers::new();
            for h in parsed {
                let value = std::str::from_utf8(h.value)
                    .map_err(|_| FramingError::Headers(format!("{} is not UTF-8", h.name)))?;
                headers.append(h.name, value.trim());
            }
            Ok(headers)
        }
        Ok(httparse::Status::Partial) => Err(FramingError::Headers("incomplete".into())),
        Err(httparse::Error::TooManyHeaders) => {
            Err(FramingError::TooManyHeaders(limits.max_headers))
        }
        Err(e) => Err(FramingError::Headers(e.to_string())),
    }
}

/// `Content-Length`: digits only (RFC 9110 §8.6); several values must agree (RFC 9112 §6.3).
fn content_length(headers: &Headers, limits: &Limits) -> Result<usize, FramingError> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.trim());
    match values.next() {
        None => Ok(0),
        Some(v) => {
            if let Some(other) = values.find(|o| *o != v) {
                return Err(FramingError::ContentLength(format!("{v}, {other}")));
            }
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FramingError::ContentLength(v.to_string()));
            }
            let n: usize = v
                .parse()
                .map_err(|_| FramingError::ContentLength(v.to_string()))?;
            if n > limits.max_body {
                Err(FramingError::BodyTooLarge {
                    got: n,
                    max: limits.max_body,
                })
            } else {
                Ok(n)
            }
        }
    }
}

/// A request line: `METHOD SP URI SP VERSION`.
fn parse_request_line(line: &str) -> Result<(String, String, Protocol), FramingError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(FramingError::RequestLine(truncate(line)));
    };
    let method_ok = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    // An empty URI (two spaces) is let through: node-airtunes2's TEARDOWN (docs/protocols/raop.md).
    if !method_ok || uri.bytes().any(|b| b.is_ascii_control()) {
        return Err(FramingError::RequestLine(truncate(line)));
    }
    let protocol = Protocol::parse(version).ok_or_else(|| {
        if version.starts_with("RTSP/") || version.starts_with("HTTP/") {
            FramingError::Version(version.to_string())
        } else {
            FramingError::RequestLine(truncate(line))
        }
    })?;
    Ok((method.to_string(), uri.to_string(), protocol))
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What can still be read from the head of a request that failed to frame, so that the error
/// answer speaks the request's protocol and echoes its CSeq.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvage {
    pub protocol: Option<Protocol>,
    pub cseq: Option<String>,
}

/// Best effort: the protocol of the request line and the CSeq header, if legible.
pub fn salvage(buf: &[u8]) -> Salvage {
    let head = &buf[..buf.len().min(16 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let protocol = lines
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(Protocol::parse);
    let cseq = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("CSeq")
                .then(|| v.trim().to_string())
        })
        .filter(|v| !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_digit()));
    Salvage { protocol, cseq }
}

/// Reads one request from the front of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((request, used)))`: a whole request, `used` bytes
/// long. `Err`: the bytes can never become a valid request; the caller answers `err.status()`.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Request, usize)>, FramingError> {
    Ok(frame_request(buf, limits)?.map(|f| (f.request, f.used)))
}

/// [`parse_request`], telling also whether the request used bare LF line ends or an empty URI.
pub fn frame_request(buf: &[u8], limits: &Limits) -> Result<Option<Framed>, FramingError> {
    // Empty lines between messages are tolerated (RFC 9112 §2.2).
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let buf_from = &buf[skip..];
    let Some((end, bare_lf)) = head_end(buf_from) else {
        if buf_from.len() > limits.max_head {
            return Err(FramingError::HeadTooLarge(limits.max_head));
        }
        // A request line that is already complete and wrong need not wait for the rest.
        if let Some(nl) = buf_from.iter().position(|&b| b == b'\n') {
            let line = std::str::from_utf8(&buf_from[..nl])
                .map_err(|_| FramingError::RequestLine("not UTF-8".into()))?;
            parse_request_line(line.trim_end_matches('\r'))?;
        }
        return Ok(None);
    };
    if end > limits.max_head {
        return Err(FramingError::HeadTooLarge(limits.max_head));
    }
    let line_end = buf_from
        .iter()
        .position(|&b| b == b'\n')
        .expect("head contains LF");
    let line = std::str::from_utf8(&buf_from[..line_end])
        .map_err(|_| FramingError::RequestLine("not UTF-8".into()))?
        .trim_end_matches('\r');
    let (method, uri, protocol) = parse_request_line(line)?;
    let empty_uri = uri.is_empty();
    let headers = parse_header_block(&buf_from[line_end + 1..end], limits)?;
    let len = content_length(&headers, limits)?;
    if buf_from.len() < end + len {
        return Ok(None);
    }
    let body = buf_from[end..end + len].to_vec();
    Ok(Some(Framed {
        request: Request {
            method,
            uri,
            protocol,
            headers,
            body,
        },
        used: skip + end + len,
        bare_lf,
        empty_uri,
    }))
}

/// Reads one response from the front of `buf` (client side), same contract as [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Response, usize)>, FramingError> {
    let Some((end, _)) = head_end(buf) else {
        if buf.len() > limits.max_head {
            return Err(FramingError::HeadTooLarge(limits.max_head));
        }
        return Ok(None);
    };
    let line_end = buf.iter().position(|&b| b == b'\n').expect("head has LF");
    let line = std::str::from_utf8(&buf[..line_end])
        .map_err(|_| FramingError::StatusLine("not UTF-8".into()))?
        .trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let protocol =
        Protocol::parse(version).ok_or_else(|| FramingError::StatusLine(truncate(line)))?;
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| FramingError::StatusLine(truncate(line)))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let headers = parse_header_block(&buf[line_end + 1..end], limits)?;
    // A 1xx, 204 or 304 response ends at the empty line whatever its headers say (RFC 9112
    // §6.3): a `Content-Length` there announces no body.
    let len = if (100..200).contains(&status) || status == 204 || status == 304 {
        0
    } else {
        content_length(&headers, limits)?
    };
    if buf.len() < end + len {
        return Ok(None);
    }
    Ok(Some((
        Response {
            protocol,
            status,
            reason,
            headers,
            body: buf[end..end + len].to_vec(),
        },
        end + len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn informational_responses_have_no_body_whatever_content_length_says() {
        // Found by the framing_response fuzz target: a 1xx re-encoded without its
        // Content-Length must frame to the same (empty) body.
        let bytes = b"RTSP/1.0 120 OK\r\nContent-Length: 4\r\n\r\nabcdRTSP/1.0 200 OK\r\n\r\n";
        let (resp, used) = parse_response(bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.len()), (120, 0));
        assert_eq!(&bytes[used..used + 4], b"abcd");
        let (no_content, _) = parse_response(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert!(no_content.body.is_empty());
    }

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn relative_rtsp_uri_with_body_is_one_request() {
        let raw = b"GET /info RTSP/1.0\r\nCSeq: 0\r\nContent-Length: 3\r\n\r\nabcOPTIONS";
        let (req, used) = parse_request(raw, &lim()).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path(), "/info");
        assert_eq!(req.protocol, Protocol::Rtsp10);
        assert_eq!(req.body, b"abc");
        assert_eq!(used, raw.len() - "OPTIONS".len());
    }

    #[test]
    fn bare_lf_line_ends_frame_a_request_and_are_reported() {
        // As npm airplay-js writes it (docs/protocols/raop.md, "Line endings").
        let raw = b"POST /scrub?position=1.5 HTTP/1.1\nUser-Agent: MediaControl/1.0\nContent-Length: 2\n\nabGET";
        let f = frame_request(raw, &lim()).unwrap().unwrap();
        assert!(f.bare_lf && !f.empty_uri);
        assert_eq!(f.request.path(), "/scrub");
        assert_eq!(
            f.request.headers.get("User-Agent"),
            Some("MediaControl/1.0")
        );
        assert_eq!(f.request.body, b"ab");
        assert_eq!(f.used, raw.len() - 3);
        let mixed = b"GET /x HTTP/1.1\r\nA: 1\n\r\n";
        let f = frame_request(mixed, &lim()).unwrap().unwrap();
        assert!(f.bare_lf);
        assert_eq!(f.request.headers.get("A"), Some("1"));
        let clean = b"GET /x HTTP/1.1\r\nA: 1\r\n\r\n";
        assert!(!frame_request(clean, &lim()).unwrap().unwrap().bare_lf);
        let partial = b"GET /x HTTP/1.1\nA: 1\n";
        assert_eq!(frame_request(partial, &lim()), Ok(None));
        let resp = b"HTTP/1.1 200 OK\nContent-Length: 1\n\nz";
        let (r, used) = parse_response(resp, &lim()).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), used),
            (200, &b"z"[..], resp.len())
        );
    }

    #[test]
    fn an_empty_request_uri_frames_and_is_reported() {
        // node-airtunes2's TEARDOWN (docs/protocols/raop.md, "An empty request URI").
        let raw = b"TEARDOWN  RTSP/1.0\r\nCSeq: 9\r\n\r\n";
        let f = frame_request(raw, &lim()).unwrap().unwrap();
        assert!(f.empty_uri && !f.bare_lf);
        assert_eq!(
            (f.request.method.as_str(), f.request.uri.as_str()),
            ("TEARDOWN", "")
        );
        assert_eq!(f.request.cseq(), Some("9"));
        assert!(parse_request(b"TEARDOWN   RTSP/1.0\r\n\r\n", &lim()).is_err());
    }

    #[test]
    fn partial_input_asks_for_more() {
        let raw = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 4\r\n\r\nab";
        for cut in 0..raw.len() {
            assert_eq!(parse_request(&raw[..cut], &lim()), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn bad_request_line_is_rejected_before_headers_end() {
        let err = parse_request(b"NOT A REQUEST LINE\r\n", &lim()).unwrap_err();
        assert_eq!(err.status(), 400);
        let err = parse_request(b"OPTIONS * RTSP/2.0\r\n\r\n", &lim()).unwrap_err();
        assert_eq!(err.status(), 505);
    }

    #[test]
    fn limits_give_431_and_413() {
        let big = vec![b'a'; 20_000];
        assert_eq!(parse_request(&big, &lim()).unwrap_err().status(), 431);
        let raw = b"POST /x RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(parse_request(raw, &lim()).unwrap_err().status(), 413);
        let raw = b"POST /x RTSP/1.0\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(parse_request(raw, &lim()).unwrap_err().status(), 400);
    }

    #[test]
    fn content_length_is_digits_and_must_agree() {
        let raw = b"POST /x RTSP/1.0\r\nContent-Length: +5\r\n\r\nabcde";
        assert_eq!(parse_request(raw, &lim()).unwrap_err().status(), 400);
        let raw = b"POST /x RTSP/1.0\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nabcde";
        assert_eq!(parse_request(raw, &lim()).unwrap_err().status(), 400);
        let raw = b"POST /x RTSP/1.0\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nabcde";
        assert!(parse_request(raw, &lim()).unwrap().is_some());
    }

    #[test]
    fn salvage_reads_protocol_and_cseq_of_a_bad_request() {
        let s = salvage(b"OPTIONS * HTTP/1.1\r\nCSeq: 12\r\nContent-Length: x\r\n\r\n");
        assert_eq!(s.protocol, Some(Protocol::Http11));
        assert_eq!(s.cseq.as_deref(), Some("12"));
        assert_eq!(salvage(b"\xff\xfe"), Salvage::default());
    }

    #[test]
    fn response_round_trips() {
        let mut r = Response::new(Protocol::Rtsp10, 453);
        r.headers.set("CSeq", "7");
        r.body = b"busy".to_vec();
        let bytes = r.encode();
        let (back, used) = parse_response(&bytes, &lim()).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back.status, 453);
        assert_eq!(back.headers.get("cseq"), Some("7"));
        assert_eq!(back.body, b"busy");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&bytes, &lim());
            let _ = parse_response(&bytes, &lim());
            let _ = salvage(&bytes);
        }

        #[test]
        fn encoded_requests_parse_back(
            method in "[A-Z_]{1,12}",
            path in "/[a-z0-9/-]{0,20}",
            hdrs in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,30}"), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut req = Request::new(&method, &path, Protocol::Rtsp10);
            for (n, v) in &hdrs {
                if !n.eq_ignore_ascii_case("content-length") {
                    req.headers.append(n, v.trim());
                }
            }
            req.body = body;
            let bytes = req.encode();
            let (back, used) = parse_request(&bytes, &lim()).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(&back.method, &req.method);
            prop_assert_eq!(&back.body, &req.body);
            for (n, v) in req.headers.iter() {
                prop_assert!(back.headers.iter().any(|(bn, bv)| bn == n && bv == v));
            }
        }
    }
}
