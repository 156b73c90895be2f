//! The RTSP `Transport` header of a RAOP SETUP (RFC 2326 §12.39).
//!
//! A sender offers `RTP/AVP/UDP;unicast;interleaved=0-1;mode=record;control_port=6001;timing_port=6002`;
//! the receiver answers with its own `server_port`, `control_port` and `timing_port`. pyatv needs
//! `server_port` and `control_port` in the answer (docs/peers.md).

use std::fmt;

/// Parameters of one Transport specification, in order, `key` or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transport {
    /// `RTP/AVP/UDP`, `RTP/AVP/TCP`, `RTP/AVP`.
    pub profile: String,
    pub params: Vec<(String, Option<String>)>,
}

impl Transport {
    /// Parses the first specification of a Transport header (alternatives are comma-separated).
    pub fn parse(header: &str) -> Option<Transport> {
        let first = header.split(',').next()?.trim();
        let mut parts = first.split(';');
        let profile = parts.next()?.trim();
        if profile.is_empty() || !profile.starts_with("RTP/") {
            return None;
        }
        let params = parts
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (p.trim().to_string(), None),
            })
            .collect();
        Some(Transport {
            profile: profile.to_string(),
            params,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_deref())
    }

    /// A port parameter; `6001` or the first of a range `6001-6002`.
    pub fn port(&self, key: &str) -> Option<u16> {
        self.get(key)?.split('-').next()?.trim().parse().ok()
    }

    pub fn is_tcp(&self) -> bool {
        self.profile.ends_with("/TCP")
    }

    pub fn set(&mut self, key: &str, value: impl ToString) {
        let value = Some(value.to_string());
        match self.params.iter_mut().find(|(k, _)| k == key) {
            Some(p) => p.1 = value,
            None => self.params.push((key.to_string(), value)),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.profile)?;
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sender_offer_parses() {
        let t = Transport::parse(
            "RTP/AVP/UDP;unicast;interleaved=0-1;mode=record;control_port=6001;timing_port=6002",
        )
        .unwrap();
        assert_eq!(t.profile, "RTP/AVP/UDP");
        assert_eq!(t.port("control_port"), Some(6001));
        assert_eq!(t.port("timing_port"), Some(6002));
        assert_eq!(t.get("mode"), Some("record"));
        assert_eq!(t.port("interleaved"), Some(0));
        assert!(!t.is_tcp());
    }

    #[test]
    fn display_round_trips() {
        let mut t = Transport::parse("RTP/AVP/UDP;unicast;mode=record").unwrap();
        t.set("server_port", 5000);
        assert_eq!(
            t.to_string(),
            "RTP/AVP/UDP;unicast;mode=record;server_port=5000"
        );
        assert_eq!(Transport::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(Transport::parse(""), None);
        assert_eq!(Transport::parse("foo;bar"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(s in "[ -~]{0,120}") {
            if let Some(t) = Transport::parse(&s) {
                let _ = t.port("control_port");
                let _ = t.to_string();
            }
        }
    }
}
