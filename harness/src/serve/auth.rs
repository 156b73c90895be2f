//! Who may drive the control API of `airtwin serve`: only its owner.
//!
//! The API can inject faults and stop serve, so a web page the developer happens to visit must not
//! reach it. Three checks, in this order, on every request:
//! - `Host` must name the API's own address (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`, or
//!   the address it was bound to): a page on another name that resolves to 127.0.0.1 (DNS
//!   rebinding) sends its own name and is refused with 403;
//! - an `Origin` header, which browsers add to cross-site requests, must be one of those
//!   addresses too (403 otherwise): a page cannot forge it;
//! - `Authorization: Bearer TOKEN` must carry the token written into the ready file (mode 0600,
//!   so only the user who started serve can read it); 401 otherwise.
//!
//! The token comes from the operating system's random source, not from the scenario seed: it is
//! a credential, not a simulated choice, and replaying a seed must not reveal it.

use std::net::SocketAddr;

use hyper::header::{AUTHORIZATION, HOST, ORIGIN};
use hyper::{HeaderMap, StatusCode};
use rand::RngCore as _;

/// The token and the host names the API answers to.
#[derive(Debug, Clone)]
pub struct Access {
    token: String,
    hosts: Vec<String>,
}

/// Why a request was refused: the status and a reason for the `{"error": …}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Access {
    /// A fresh random token for an API bound at `bound`.
    pub fn new(bound: SocketAddr) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::with_token(bound, token)
    }

    /// An API bound at `bound` that accepts `token`.
    pub fn with_token(bound: SocketAddr, token: String) -> Self {
        let port = bound.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let own = bound.to_string();
        if !hosts.contains(&own) {
            hosts.push(own);
        }
        Access { token, hosts }
    }

    /// The token clients send as `Authorization: Bearer TOKEN`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Admits a request by its headers, or says why not.
    pub fn admit(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let refuse = |status, reason: String| Err(Refusal { status, reason });
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not this API's address (expected one of {}): refused as a \
                     possible DNS rebinding",
                    self.hosts.join(", ")
                ),
            );
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let same = origin
                .strip_prefix("http://")
                .is_some_and(|o| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(o)));
            if !same {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!("cross-origin request from {origin:?} refused"),
                );
            }
        }
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        match presented {
            None => refuse(
                StatusCode::UNAUTHORIZED,
                "no Authorization: Bearer TOKEN (the token is in serve's ready file)".into(),
            ),
            Some(t) if !same_secret(t.trim().as_bytes(), self.token.as_bytes()) => refuse(
                StatusCode::UNAUTHORIZED,
                "wrong token (the token is in serve's ready file)".into(),
            ),
            Some(_) => Ok(()),
        }
    }
}

/// Compares without stopping at the first difference, so the answer time says nothing about how
/// much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn access() -> Access {
        Access::with_token("127.0.0.1:4000".parse().unwrap(), "secret".into())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_owner_is_admitted_on_every_loopback_name() {
        for host in [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST:4000",
            "[::1]:4000",
        ] {
            let h = headers(&[("host", host), ("authorization", "Bearer secret")]);
            assert_eq!(access().admit(&h), Ok(()), "{host}");
        }
        let h = headers(&[
            ("host", "127.0.0.1:4000"),
            ("origin", "http://localhost:4000"),
            ("authorization", "Bearer secret"),
        ]);
        assert_eq!(access().admit(&h), Ok(()));
    }

    #[test]
    fn each_refusal_has_its_status_and_reason() {
        type Case<'a> = (&'a [(&'static str, &'a str)], u16, &'a str);
        let cases: [Case; 6] = [
            (&[("host", "127.0.0.1:4000")], 401, "no Authorization"),
            (
                &[
                    ("host", "127.0.0.1:4000"),
                    ("authorization", "Bearer guess"),
                ],
                401,
                "wrong token",
            ),
            (
                &[("host", "127.0.0.1:4000"), ("authorization", "secret")],
                401,
                "no Authorization",
            ),
            (
                &[
                    ("host", "evil.example:4000"),
                    ("authorization", "Bearer secret"),
                ],
                403,
                "DNS rebinding",
            ),
            (&[("authorization", "Bearer secret")], 403, "DNS rebinding"),
            (
                &[
                    ("host", "127.0.0.1:4000"),
                    ("origin", "http://evil.example"),
                    ("authorization", "Bearer secret"),
                ],
                403,
                "cross-origin",
            ),
        ];
        for (h, status, reason) in cases {
            let refusal = access().admit(&headers(h)).unwrap_err();
            assert_eq!(refusal.status.as_u16(), status, "{h:?}");
            assert!(refusal.reason.contains(reason), "{h:?}: {}", refusal.reason);
        }
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let (a, b) = (Access::new(addr), Access::new(addr));
        assert_eq!(a.token().len(), 64);
        assert_ne!(a.token(), b.token());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
