//! What a DACP library publishes over DNS-SD: `_touch-able._tcp`, whose instance name is the
//! 16-hex library id and whose TXT names the library (`CtlN`), as remotes browse for it
//! (docs/protocols/dacp.md, "DACP pairing": txtvers=1, DbId, DvTy, DvSv, Ver=131073, OSsi, CtlN; pyatv
//! takes the name from `CtlN` and the identifier from the instance name). iTunes also shares its
//! library as `_daap._tcp` (instance: the library name).

use super::DacpConfig;
use crate::wire::dns_sd::ServiceRecord;

pub const TOUCHABLE_SERVICE: &str = "_touch-able._tcp";
pub const DAAP_SERVICE: &str = "_daap._tcp";

impl DacpConfig {
    /// `DbId`: the library id as 16 upper-case hex digits.
    pub fn library_id_hex(&self) -> String {
        format!("{:016X}", self.library_id)
    }

    /// `_touch-able._tcp` for a library named `name` on `port`, with `DvTy` (`iTunes`,
    /// `AppleTV`), plus `_daap._tcp` when `daap` (iTunes shares its library; an Apple TV does
    /// not).
    pub fn services(
        &self,
        name: &str,
        port: u16,
        device_type: &str,
        daap: bool,
    ) -> Vec<ServiceRecord> {
        let id = self.library_id_hex();
        let mut touch = ServiceRecord::new(TOUCHABLE_SERVICE, id.clone(), port);
        for (k, v) in [
            ("txtvers", "1"),
            ("Ver", "131073"),
            ("DvSv", "2305"),
            ("OSsi", "0x1F5"),
        ] {
            touch.set(k, v);
        }
        touch.set("DbId", id.clone());
        touch.set("DvTy", device_type);
        touch.set("CtlN", name);
        let mut out = vec![touch];
        if daap {
            let mut d = ServiceRecord::new(DAAP_SERVICE, name, port);
            d.set("txtvers", "1");
            d.set("Machine Name", name);
            d.set("Machine ID", id[4..].to_string());
            d.set("Database ID", id);
            d.set("Version", "196620");
            d.set("iTSh Version", "196618");
            d.set("Password", "false");
            out.push(d);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touchable_instance_is_the_library_id_and_ctln_the_name() {
        let c = DacpConfig::itunes("Library", std::time::SystemTime::UNIX_EPOCH);
        let s = c.services("Office iTunes", 3689, "iTunes", true);
        assert_eq!(s[0].service, "_touch-able._tcp");
        assert_eq!(s[0].instance, "A1B2C3D4E5F60718");
        assert_eq!(s[0].get("CtlN"), Some("Office iTunes"));
        assert_eq!(s[1].service, "_daap._tcp");
    }
}
