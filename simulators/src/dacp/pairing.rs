//! DACP pairing: a library (iTunes, an Apple TV) proves to a remote control that the user typed
//! the remote's PIN, and the remote answers with the GUID it will log in with.
//!
//! The remote publishes `_touch-remote._tcp` with TXT `Pair=<16 upper-case hex>`; the library sends
//! `GET /pair?pairingcode=<code>&servicename=<its id>` to that service's port; the remote answers
//! 200 with DMAP `cmpa{cmpg, cmnm, cmty}` when the code matches its PIN, else 500
//! (docs/protocols/dacp.md, "Pairing").
//!
//! The code is MD5(Pair ‖ each PIN digit followed by one 0x00 byte) as 32 upper-case hex
//! characters. The seeds' `md5(Pair + pin)` is a simplification; the notes' vectors pin this down.
//! Remotes compare without regard to case (pyatv lower-cases both sides: docs/peers.md).

use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};
use thiserror::Error;

use crate::service::{ConnInfo, Context, Outcome, Service};
use crate::wire::dmap::{self, Item};
use crate::wire::{Protocol, Request, Response};

/// The pairing code for a remote's `Pair` value and a PIN, as 32 upper-case hex characters.
pub fn pairing_code(pair: &str, pin: &str) -> String {
    let mut h = Md5::new();
    h.update(pair.as_bytes());
    for digit in pin.bytes() {
        h.update([digit, 0]);
    }
    h.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

/// A 16-hex-digit pairing GUID (`0x0000000000000001`, `0000000000000001`) as a number.
pub fn parse_guid(text: &str) -> Option<u64> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// `0x` and 16 upper-case hex digits, as `--dmap-credentials` and `/login` write a GUID.
pub fn format_guid(guid: u64) -> String {
    format!("0x{guid:016X}")
}

// ---------------------------------------------------------------------------------------------
// The caller's side (iTunes, Apple TV)
// ---------------------------------------------------------------------------------------------

/// How the caller writes the pairing code: the deliberate mistakes are faults a scenario sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CodeFormat {
    /// 32 upper-case hex characters, as iTunes sends it.
    #[default]
    Upper,
    /// 32 lower-case hex characters (remotes compare without case, so this still pairs).
    Lower,
    /// The code cut to 31 characters: a malformed code.
    Short,
    /// `md5(Pair + pin)` of the seeds, without the NUL bytes: a wrong code.
    Naive,
}

/// What the caller sends.
#[derive(Debug, Clone)]
pub struct PairCall {
    /// The remote's `Pair` TXT value (16 hex characters).
    pub pair: String,
    pub pin: String,
    /// The caller's id (`servicename`), e.g. its 16-hex library id.
    pub service_name: String,
    pub format: CodeFormat,
}

impl PairCall {
    pub fn code(&self) -> String {
        let code = pairing_code(&self.pair, &self.pin);
        match self.format {
            CodeFormat::Upper => code,
            CodeFormat::Lower => code.to_ascii_lowercase(),
            CodeFormat::Short => code[..31].to_string(),
            CodeFormat::Naive => {
                let mut h = Md5::new();
                h.update(self.pair.as_bytes());
                h.update(self.pin.as_bytes());
                h.finalize().iter().map(|b| format!("{b:02X}")).collect()
            }
        }
    }

    /// The request, sans-IO: the caller's shell sends it to the remote's address.
    pub fn request(&self, host: &str) -> Request {
        let uri = format!(
            "/pair?pairingcode={}&servicename={}",
            self.code(),
            self.service_name
        );
        let mut r = Request::new("GET", &uri, Protocol::Http11);
        r.headers.set("Host", host);
        // The User-Agent an Apple TV 3 sends (docs/protocols/dacp.md).
        r.headers.set(
            "User-Agent",
            "AppleTV/7.2.2 iOS/8.4.2 AppleTV/7.2.2 model/AppleTV3,1 build/12H606 (3; dt:12)",
        );
        r.headers.set("Connection", "close");
        r
    }
}

/// The remote's answer: who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairAnswer {
    /// `cmpg`: the GUID the remote will log in with.
    pub guid: u64,
    /// `cmnm`: the remote's name.
    pub name: String,
    /// `cmty`: the remote's device type.
    pub device_type: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PairError {
    #[error("the remote refused the pairing code: HTTP {0}")]
    Refused(u16),
    #[error("the pairing answer is not DMAP: {0}")]
    Malformed(String),
    #[error("the pairing answer has no cmpa container")]
    NoAnswer,
    #[error("the pairing answer has no cmpg (pairing GUID)")]
    NoGuid,
}

/// Reads the remote's answer. Any status but 200 is a failed pairing (a wrong PIN gets 500).
pub fn parse_answer(resp: &Response) -> Result<PairAnswer, PairError> {
    if resp.status != 200 {
        return Err(PairError::Refused(resp.status));
    }
    let items = dmap::decode(&resp.body).map_err(|e| PairError::Malformed(e.to_string()))?;
    let cmpa = dmap::first(&items, &[b"cmpa"])
        .and_then(|v| v.children())
        .ok_or(PairError::NoAnswer)?;
    let guid = match dmap::first(cmpa, &[b"cmpg"]) {
        Some(dmap::Value::Int(v)) => u64::try_from(*v).map_err(|_| PairError::NoGuid)?,
        Some(dmap::Value::Raw(r)) if r.len() == 8 => {
            u64::from_be_bytes(r.as_slice().try_into().expect("8 bytes"))
        }
        _ => return Err(PairError::NoGuid),
    };
    let text = |tag: &[u8; 4]| {
        dmap::first(cmpa, &[tag])
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(PairAnswer {
        guid,
        name: text(b"cmnm"),
        device_type: text(b"cmty"),
    })
}

// ---------------------------------------------------------------------------------------------
// The remote's side (what a remote app serves)
// ---------------------------------------------------------------------------------------------

/// How a fake remote answers a pairing request whose code matches; the other answers are
/// remote-side faults a scenario sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoteAnswer {
    /// 200 `cmpa{cmpg, cmnm, cmty}`.
    #[default]
    Ok,
    /// 500 whatever the code.
    Error500,
    /// 200 with a body that is not valid DMAP (a length that runs past the end).
    Malformed,
    /// 200 `cmpa{cmnm, cmty}` without `cmpg`.
    MissingGuid,
}

/// A remote control as the pairing sees it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `Pair` TXT value and the GUID answered in `cmpg`.
    pub guid: u64,
    /// The PIN the remote shows; `None` accepts any code.
    pub pin: Option<String>,
    pub name: String,
    /// `cmty`; pyatv answers `iPhone`.
    pub device_type: String,
    pub answer: RemoteAnswer,
    /// Time before the answer (a slow remote).
    pub delay: Duration,
    /// `servicename` the remote expects; another one is refused with 500.
    pub expect_service_name: Option<String>,
}

impl RemoteConfig {
    /// The `Pair` TXT value: 16 upper-case hex digits.
    pub fn pair(&self) -> String {
        format!("{:016X}", self.guid)
    }
}

/// What a `/pair` request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairOutcome {
    pub service_name: String,
    pub accepted: bool,
}

/// The remote's `/pair` handler: checks the code for the PIN, answers `cmpa` or 500.
pub fn handle_pair(req: &Request, cfg: &RemoteConfig) -> (Response, Option<PairOutcome>) {
    if req.path() != "/pair" {
        return (
            Response::new(req.protocol, 404).with_reason_text("only /pair is served"),
            None,
        );
    }
    let (Some(code), Some(service_name)) = (
        req.query_param("pairingcode"),
        req.query_param("servicename"),
    ) else {
        return (
            Response::new(req.protocol, 400)
                .with_reason_text("/pair needs pairingcode and servicename"),
            None,
        );
    };
    let code_ok = match &cfg.pin {
        None => true,
        Some(pin) => code.eq_ignore_ascii_case(&pairing_code(&cfg.pair(), pin)),
    };
    let name_ok = cfg
        .expect_service_name
        .as_deref()
        .is_none_or(|n| n == service_name);
    let accepted = code_ok && name_ok && cfg.answer != RemoteAnswer::Error500;
    let outcome = Some(PairOutcome {
        service_name: service_name.to_string(),
        accepted,
    });
    if !accepted {
        // A wrong code is answered 500 with an empty body (docs/peers.md).
        return (Response::new(req.protocol, 500), outcome);
    }
    let mut children = vec![
        Item::str(b"cmnm", cfg.name.clone()),
        Item::str(b"cmty", cfg.device_type.clone()),
    ];
    if cfg.answer != RemoteAnswer::MissingGuid {
        children.insert(0, Item::int(b"cmpg", cfg.guid));
    }
    let mut body = dmap::encode(&[Item::container(b"cmpa", children)]);
    if cfg.answer == RemoteAnswer::Malformed {
        // Claim 64 more bytes than there are.
        let len = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes")) + 64;
        body[4..8].copy_from_slice(&len.to_be_bytes());
    }
    let resp = Response::new(req.protocol, 200).with_body("application/x-dmap-tagged", body);
    (resp, outcome)
}

/// The fake remote's `/pair` server, as a [`Service`] the TCP shell carries.
pub struct RemoteService {
    pub config: RemoteConfig,
    /// Every `/pair` request, in order.
    pub outcomes: std::sync::Mutex<Vec<PairOutcome>>,
    /// Bumped on each `/pair` request.
    pub changes: crate::service::Changes,
}

impl RemoteService {
    pub fn new(config: RemoteConfig) -> Self {
        RemoteService {
            config,
            outcomes: Default::default(),
            changes: Default::default(),
        }
    }

    fn answer(&self, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let (resp, outcome) = handle_pair(req, &self.config);
        if let Some(o) = outcome {
            cx.info(format!(
                "pairing request from {:?}: {}",
                o.service_name,
                if o.accepted { "accepted" } else { "refused" }
            ));
            self.outcomes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(o);
            self.changes.bump();
        }
        Outcome::Respond(resp)
    }
}

/// Per-connection state of the remote: when a deferred answer is due.
#[derive(Default)]
pub struct RemoteConn {
    due: Option<SystemTime>,
}

impl Service for RemoteService {
    type Conn = RemoteConn;

    fn open(&self, _conn: &ConnInfo) -> RemoteConn {
        RemoteConn::default()
    }

    fn handle(&self, state: &mut RemoteConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        if self.config.delay.is_zero() {
            return self.answer(req, cx);
        }
        let due = cx.now + self.config.delay;
        state.due = Some(due);
        Outcome::Wait {
            after_revision: None,
            until: Some(due),
        }
    }

    fn resume(&self, state: &mut RemoteConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        match state.due {
            Some(due) if cx.now < due => Outcome::Wait {
                after_revision: None,
                until: Some(due),
            },
            _ => {
                state.due = None;
                self.answer(req, cx)
            }
        }
    }

    fn complete(
        &self,
        _: &mut RemoteConn,
        req: &Request,
        _: &[u16],
        _: &mut Context<'_>,
    ) -> Response {
        Response::new(req.protocol, 500)
    }

    fn decorate(&self, _: &RemoteConn, _: Option<&Request>, _: &mut Response, _: &Context<'_>) {}

    fn close(&self, _: RemoteConn) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_code_matches_both_known_vectors() {
        // docs/protocols/dacp.md, DACP pairing.
        assert_eq!(
            pairing_code("0000000000000001", "1234"),
            "690E6FF61E0D7C747654A42AED17047D"
        );
        // The request in docs/protocols/dacp.md.
        assert_eq!(
            pairing_code("0000000000000001", "1111"),
            "AAB15DF9F73AA252A7934E0AF9C86B13"
        );
    }

    fn remote(pin: &str) -> RemoteConfig {
        RemoteConfig {
            guid: 1,
            pin: Some(pin.into()),
            name: "pyatv remote".into(),
            device_type: "ipod".into(),
            answer: RemoteAnswer::Ok,
            delay: Duration::ZERO,
            expect_service_name: None,
        }
    }

    fn call(pin: &str, format: CodeFormat) -> PairCall {
        PairCall {
            pair: "0000000000000001".into(),
            pin: pin.into(),
            service_name: "AAAAAAAAAAAAAAAA".into(),
            format,
        }
    }

    #[test]
    fn caller_request_carries_the_code_and_service_name() {
        let r = call("1111", CodeFormat::Upper).request("127.0.0.1:5000");
        assert_eq!(
            r.uri,
            "/pair?pairingcode=AAB15DF9F73AA252A7934E0AF9C86B13&servicename=AAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn right_pin_pairs_and_the_answer_parses() {
        let req = call("1234", CodeFormat::Upper).request("h");
        let (resp, outcome) = handle_pair(&req, &remote("1234"));
        assert!(outcome.unwrap().accepted);
        let answer = parse_answer(&resp).unwrap();
        assert_eq!(
            answer,
            PairAnswer {
                guid: 1,
                name: "pyatv remote".into(),
                device_type: "ipod".into()
            }
        );
        // Lower case is the same code.
        let req = call("1234", CodeFormat::Lower).request("h");
        assert_eq!(handle_pair(&req, &remote("1234")).0.status, 200);
    }

    #[test]
    fn wrong_pin_or_malformed_code_gets_500() {
        for (pin, format) in [
            ("1111", CodeFormat::Upper),
            ("1234", CodeFormat::Short),
            ("1234", CodeFormat::Naive),
        ] {
            let req = call(pin, format).request("h");
            let (resp, outcome) = handle_pair(&req, &remote("1234"));
            assert_eq!(resp.status, 500, "{pin} {format:?}");
            assert!(resp.body.is_empty());
            assert!(!outcome.unwrap().accepted);
            assert_eq!(parse_answer(&resp), Err(PairError::Refused(500)));
        }
    }

    #[test]
    fn remote_faults_are_failed_pairings_for_the_caller() {
        let req = call("1234", CodeFormat::Upper).request("h");
        let mut cfg = remote("1234");
        cfg.answer = RemoteAnswer::MissingGuid;
        assert_eq!(
            parse_answer(&handle_pair(&req, &cfg).0),
            Err(PairError::NoGuid)
        );
        cfg.answer = RemoteAnswer::Malformed;
        assert!(matches!(
            parse_answer(&handle_pair(&req, &cfg).0),
            Err(PairError::Malformed(_))
        ));
        cfg.answer = RemoteAnswer::Ok;
        cfg.expect_service_name = Some("BBBBBBBBBBBBBBBB".into());
        assert_eq!(handle_pair(&req, &cfg).0.status, 500);
    }

    #[test]
    fn guids_parse_with_or_without_prefix() {
        assert_eq!(parse_guid("0x0000000000000001"), Some(1));
        assert_eq!(parse_guid("0123456789ABCDEF"), Some(0x0123456789ABCDEF));
        assert_eq!(parse_guid("0xZZ"), None);
        assert_eq!(parse_guid("0x00000000000000001"), None);
        assert_eq!(format_guid(1), "0x0000000000000001");
    }
}
