//! What an AirPort Express publishes over DNS-SD: one `_raop._tcp` service.
//!
//! The instance name is `<6-byte id in hex>@<name>`: the receiver's hardware id, the same bytes
//! it signs into `Apple-Response` (docs/protocols/raop.md, "AirPort Express RSA authentication"). TXT
//! keys as receivers publish them (docs/protocols/raop.md: txtvers, ch, cn, et, ek, sv, tp, md, ss, sr,
//! pw, vn, da, am, vs, sf, fv).

use super::RaopConfig;
use crate::wire::dns_sd::ServiceRecord;

/// `_raop._tcp`.
pub const RAOP_SERVICE: &str = "_raop._tcp";

impl RaopConfig {
    /// `001124004491`: the instance-name prefix, upper-case hex without separators.
    pub fn hw_addr_hex(&self) -> String {
        crate::wire::hex::encode_upper(&self.hw_addr)
    }

    /// The `_raop._tcp` record of this receiver, announced as `name` on `port`.
    pub fn services(&self, name: &str, port: u16) -> Vec<ServiceRecord> {
        let mut s =
            ServiceRecord::new(RAOP_SERVICE, format!("{}@{name}", self.hw_addr_hex()), port);
        for (k, v) in [
            ("txtvers", "1"),
            // Two channels, 16-bit samples at 44.1 kHz.
            ("ch", "2"),
            ("ss", "16"),
            ("sr", "44100"),
            // Codecs 0 (PCM) and 1 (ALAC): what this receiver decodes.
            ("cn", "0,1"),
            // Encryption 0 (none) and 1 (RSA): `rsaaeskey`/`aesiv`, Apple-Challenge.
            ("et", "0,1"),
            ("ek", "1"),
            // Metadata types 0 (text), 1 (artwork), 2 (progress) over SET_PARAMETER.
            ("md", "0,1,2"),
            ("tp", "UDP"),
            ("pw", "false"),
            ("sv", "false"),
            ("da", "true"),
            ("vn", "65537"),
            ("sf", "0x4"),
        ] {
            s.set(k, v);
        }
        s.set("am", self.model.clone());
        s.set("vs", self.source_version.clone());
        vec![s]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raop_instance_name_is_the_signed_hw_id_then_the_name() {
        let c = RaopConfig::airport_express("Kitchen");
        let s = &c.services("Kitchen", 5000)[0];
        assert_eq!(s.service, "_raop._tcp");
        assert_eq!(s.instance, "001124004491@Kitchen");
        assert_eq!(s.get("am"), Some("AirPort10,115"));
        assert_eq!(s.get("et"), Some("0,1"));
        assert_eq!(s.port, 5000);
    }
}
