//! DACP pairing: a library (iTunes, an Apple TV) proves to a remote control that the user typed
//! the remote's PIN, and the remote answers with the GUID it will log in with.
//!
//! The remote publishes `_touch-remote._tcp` with TXT `Pair=<16 upper-case hex>`; the library sends
//! `GET /pair?pairingcode=<code>&servicename=<its id>` to that service's port; the remote answers
//! 200 with DMAP `cmpa{cmpg, cmnm, cmty}` when the code matches its PIN, else 500
//! (docs/protocols/dacp.md, "Pairing").
//!
//! The code is MD5(Pair ‖ each PIN digit followed by one 0x00 byte) as 32 upper-case hex
//! characters. The `md5(Pair + pin)` some write-ups give is a simplification; the vectors in docs/protocols/dacp.md pin this down.
//! Remotes compare without regard to case (pyatv lower-cases both sides: docs/peers.md).
//!
//! The remote's side, a fake remote serving `/pair`, is [`super::remote`].

use md5::{Digest, Md5};
use thiserror::Error;

use crate::wire::dmap;
use crate::wire::{Protocol, Request, Response};

/// The pairing code for a remote's `Pair` value and a PIN, as 32 upper-case hex characters.
pub fn pairing_code(pair: &str, pin: &str) -> String {
    let mut h = Md5::new();
    h.update(pair.as_bytes());
    for digit in pin.bytes() {
        h.update([digit, 0]);
    }
    crate::wire::hex::encode_upper(&h.finalize())
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
    /// `md5(Pair + pin)` of some write-ups, without the NUL bytes: a wrong code.
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
                crate::wire::hex::encode_upper(&h.finalize())
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
    fn guids_parse_with_or_without_prefix() {
        assert_eq!(parse_guid("0x0000000000000001"), Some(1));
        assert_eq!(parse_guid("0123456789ABCDEF"), Some(0x0123456789ABCDEF));
        assert_eq!(parse_guid("0xZZ"), None);
        assert_eq!(parse_guid("0x00000000000000001"), None);
        assert_eq!(format_guid(1), "0x0000000000000001");
    }
}
