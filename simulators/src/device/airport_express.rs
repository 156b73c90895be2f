//! AirPort Express: a RAOP (AirTunes v2) receiver on one port, service `raop` (5000 on a real
//! device; docs/protocols/raop.md). Identity defaults: [`RaopConfig::airport_express`] (the
//! well-known key, MAC 00:11:24:00:44:91, model AirPort10,115).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Builder, Device, Kind, Parts, SpawnError};
use crate::raop::{keys, RaopConfig, RaopCore};
use crate::wire::dns_sd::ServiceRecord;

/// The AirPort Express kind; [`AirportExpress::builder`] starts one.
pub struct AirportExpress;

/// What an AirPort Express is made of beyond the common settings.
#[derive(Default)]
pub struct AirportExpressConfig {
    /// The RAOP receiver; [`RaopConfig::airport_express`] with the device's name and seed when
    /// absent.
    pub raop: Option<RaopConfig>,
}

impl AirportExpress {
    /// A builder of an AirPort Express named `airport-express`.
    pub fn builder() -> Builder<AirportExpressConfig> {
        Builder::new("airport-express")
    }

    /// The identity defaults of an AirPort Express named `name`.
    pub fn config(name: &str, seed: u64) -> RaopConfig {
        let mut config = RaopConfig::airport_express(name);
        config.seed = seed;
        config
    }
}

impl Builder<AirportExpressConfig> {
    /// The RAOP receiver's configuration (identity, key, sessions).
    pub fn raop(mut self, config: RaopConfig) -> Self {
        self.config.raop = Some(config);
        self
    }

    /// Starts the device and waits until it listens.
    pub async fn spawn(self) -> Result<Device, SpawnError> {
        let s = &self.settings;
        let config = self
            .config
            .raop
            .unwrap_or_else(|| AirportExpress::config(&s.name, s.seed));
        let shell = s.shell();
        let service = Arc::new(RaopCore::new(config));
        let parts = Parts {
            raop: Some(service.clone()),
            ..Parts::default()
        };
        shell
            .one_core(&AirportExpress, service, "raop", s.port, parts)
            .await
    }
}

/// The ready-file identity of a RAOP receiver: `mac`, `model`, `public_key`.
pub(super) fn raop_identity(s: &RaopCore, identity: &mut BTreeMap<String, String>) {
    identity.insert("mac".into(), s.config.mac_string());
    identity.insert("model".into(), s.config.model.clone());
    identity.insert(
        "public_key".into(),
        keys::public_pem(&s.config.key.to_public_key()),
    );
}

impl Kind for AirportExpress {
    fn as_str(&self) -> &'static str {
        "airport-express"
    }

    fn identity(&self, parts: &Parts) -> BTreeMap<String, String> {
        let mut identity = BTreeMap::new();
        if let Some(s) = &parts.raop {
            raop_identity(s, &mut identity);
        }
        identity
    }

    /// `_raop._tcp` (docs/protocols/dns-sd.md).
    fn services(
        &self,
        parts: &Parts,
        ports: &BTreeMap<String, u16>,
        name: &str,
    ) -> Vec<ServiceRecord> {
        let port = ports.get("raop").copied().unwrap_or(0);
        parts
            .raop
            .as_ref()
            .map(|r| r.config.services(name, port))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::tests::airport;

    fn device() -> Device {
        airport("Kitchen")
    }

    #[test]
    fn ready_entry_has_the_receiver_identity() {
        let r = device().ready();
        assert_eq!(r.kind, "airport-express");
        assert_eq!(r.address, "127.0.0.1");
        assert_eq!(r.ports, BTreeMap::from([("raop".to_string(), 5000)]));
        let keys: Vec<&str> = r.identity.keys().map(String::as_str).collect();
        assert_eq!(keys, ["mac", "model", "public_key"]);
        assert_eq!(r.identity["mac"], "00:11:24:00:44:91");
        assert_eq!(r.identity["model"], "AirPort10,115");
        assert!(r.identity["public_key"].starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    }

    #[test]
    fn publishes_raop_only_named_by_its_mac() {
        let r = device().records("Kitchen", &BTreeMap::new()).unwrap();
        assert_eq!(r.services.len(), 1, "{r:?}");
        assert_eq!(r.services[0].service, "_raop._tcp");
        assert_eq!(r.services[0].instance, "001124004491@Kitchen");
        assert_eq!(r.services[0].port, 5000);
    }

    #[test]
    fn defaults_take_the_seed() {
        assert_eq!(AirportExpress::config("x", 9).seed, 9);
    }
}
