//! What an Apple TV publishes over DNS-SD: `_airplay._tcp` (instance: its name; TXT: the same
//! values as `/info`, see [`super::info::txt_entries`]) and `_raop._tcp` on the same port
//! (instance `<deviceid hex>@<name>`), as an Apple TV 3 does (docs/protocols/airplay.md; pyatv reads the
//! `_airplay._tcp` `deviceid`, `model` and `features`, and `am` of `_raop._tcp`). Its DACP
//! port publishes `_touch-able._tcp` (`crate::dacp::records`). `_appletv-v2._tcp` (Home
//! Sharing) is not published: this device does not simulate Home Sharing.

use super::info::{features_text, hex, txt_entries};
use super::AirplayConfig;
use crate::raop::records::RAOP_SERVICE;
use crate::wire::dns_sd::ServiceRecord;

/// `_airplay._tcp`.
pub const AIRPLAY_SERVICE: &str = "_airplay._tcp";

impl AirplayConfig {
    /// `_airplay._tcp` and `_raop._tcp` of this Apple TV, announced as `name` on `port`.
    pub fn services(&self, name: &str, port: u16) -> Vec<ServiceRecord> {
        let info = &self.info;
        let mut airplay = ServiceRecord::new(AIRPLAY_SERVICE, name, port);
        airplay.txt = txt_entries(info);
        let id_hex: String = info
            .device_id
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect::<String>()
            .to_ascii_uppercase();
        let mut raop = ServiceRecord::new(RAOP_SERVICE, format!("{id_hex}@{name}"), port);
        for (k, v) in [
            ("txtvers", "1"),
            ("ch", "2"),
            ("ss", "16"),
            ("sr", "44100"),
            // PCM, ALAC, AAC, AAC-ELD; encryption none, RSA, FairPlay, FairPlay SAPv2.5.
            ("cn", "0,1,2,3"),
            ("et", "0,3,5"),
            ("md", "0,1,2"),
            ("tp", "UDP"),
            ("da", "true"),
            ("vn", "65537"),
        ] {
            raop.set(k, v);
        }
        raop.set("am", info.model.clone());
        raop.set("vs", info.source_version.clone());
        raop.set("vv", info.vv.to_string());
        raop.set("ft", features_text(info.features));
        raop.set("sf", format!("0x{:X}", info.status_flags));
        raop.set("pk", hex(&info.pk));
        vec![airplay, raop]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_tv_publishes_airplay_and_raop_on_one_port() {
        let c = AirplayConfig::apple_tv("Living Room", 1);
        let s = c.services("Living Room", 7000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].service, "_airplay._tcp");
        assert_eq!(s[0].instance, "Living Room");
        assert_eq!(s[0].get("deviceid"), Some(c.info.device_id.as_str()));
        assert_eq!(s[1].service, "_raop._tcp");
        assert!(s[1].instance.ends_with("@Living Room"));
        assert!(s.iter().all(|r| r.port == 7000));
    }
}
