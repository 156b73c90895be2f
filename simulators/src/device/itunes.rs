//! iTunes: a DACP/DMAP library that remote controls drive, on one port, service `dacp` (3689 on
//! a real one; docs/protocols/dacp.md). It publishes `_touch-able._tcp` with `DvTy=iTunes` and
//! shares its library as `_daap._tcp`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Builder, Device, Kind, Parts, SpawnError};
use crate::dacp::{DacpConfig, DacpCore};
use crate::wire::dns_sd::ServiceRecord;

/// The iTunes kind; [`Itunes::builder`] starts one.
pub struct Itunes;

/// What an iTunes is made of beyond the common settings.
#[derive(Default)]
pub struct ItunesConfig {
    /// The DACP library; [`Itunes::library`] with the device's name and seed when absent.
    pub dacp: Option<DacpConfig>,
}

impl Itunes {
    /// A builder of an iTunes named `itunes`.
    pub fn builder() -> Builder<ItunesConfig> {
        Builder::new("itunes")
    }

    /// The identity defaults of a DACP library named `name` that starts at `start`: the whole
    /// of an iTunes, the remote-control side of an Apple TV.
    pub fn library(name: &str, seed: u64, start: SystemTime) -> DacpConfig {
        let mut config = DacpConfig::itunes(name, start);
        config.seed = seed;
        // The library id, like the session ids, comes from the seed, mixed with the device name
        // (FNV-1a) so that two libraries of one run differ: the id is also the
        // `_touch-able._tcp` instance name, which must be unique (RFC 6763 §4.1).
        let name_hash = crate::seed::label_hash(name);
        config.library_id = (seed ^ name_hash).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        config
    }
}

impl Builder<ItunesConfig> {
    /// The DACP library's configuration (name, pairings, now playing, speakers).
    pub fn dacp(mut self, config: DacpConfig) -> Self {
        self.config.dacp = Some(config);
        self
    }

    /// Starts the device and waits until it listens.
    pub async fn spawn(self) -> Result<Device, SpawnError> {
        let s = &self.settings;
        let config = self
            .config
            .dacp
            .unwrap_or_else(|| Itunes::library(&s.name, s.seed, SystemTime::now()));
        let shell = s.shell();
        let service = Arc::new(DacpCore::new(config));
        let parts = Parts {
            dacp: Some(service.clone()),
            ..Parts::default()
        };
        shell
            .one_core(&Itunes, service, "dacp", s.port, parts)
            .await
    }
}

impl Kind for Itunes {
    fn as_str(&self) -> &'static str {
        "itunes"
    }

    fn identity(&self, _parts: &Parts) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// `_touch-able._tcp` (`DvTy=iTunes`) and `_daap._tcp` (docs/protocols/dns-sd.md).
    fn services(
        &self,
        parts: &Parts,
        ports: &BTreeMap<String, u16>,
        name: &str,
    ) -> Vec<ServiceRecord> {
        let port = ports.get("dacp").copied().unwrap_or(0);
        parts
            .dacp
            .as_ref()
            .map(|d| d.config.services(name, port, "iTunes", true))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::tests::itunes as device;

    #[test]
    fn ready_entry_has_no_identity() {
        let r = device("lib").ready();
        assert_eq!(r.kind, "itunes");
        assert_eq!(r.ports, BTreeMap::from([("dacp".to_string(), 3689)]));
        assert!(r.identity.is_empty(), "{:?}", r.identity);
    }

    #[test]
    fn publishes_touchable_as_itunes_and_shares_daap() {
        let r = device("lib").records("Library", &BTreeMap::new()).unwrap();
        let names: Vec<&str> = r.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["_touch-able._tcp", "_daap._tcp"]);
        assert_eq!(r.services[0].get("DvTy"), Some("iTunes"));
        assert!(r.services.iter().all(|s| s.port == 3689));
    }

    #[test]
    fn library_ids_come_from_seed_and_name() {
        let id = |name: &str, seed| Itunes::library(name, seed, SystemTime::UNIX_EPOCH).library_id;
        assert_eq!(id("a", 1), id("a", 1));
        assert_ne!(id("a", 1), id("b", 1));
        assert_ne!(id("a", 1), id("a", 2));
        assert_eq!(id("a", 1) & 1, 1);
        assert_eq!(Itunes::library("a", 3, SystemTime::UNIX_EPOCH).seed, 3);
        // Pinned: scenario outcomes (instance names, pairing) depend on these values.
        assert_eq!(id("a", 1), 18373959690682807185);
        assert_eq!(id("Kitchen", 42), 11462608334569015849);
    }
}
