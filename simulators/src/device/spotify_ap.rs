//! A Spotify access point: the AP protocol (docs/protocols/spotify-ap.md) on one TCP port,
//! service `spotify-ap` (4070 on a real one), and apresolve over HTTP on a second port, service
//! `apresolve`, naming that AP by default. It publishes nothing over DNS-SD: clients find APs
//! through apresolve. Its ready entry carries the public half of its signing key, which a client
//! must be given to accept the fake.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Builder, Device, Kind, Parts, SpawnError};
use crate::spotify_ap::apresolve::{ApresolveCore, Lists};
use crate::spotify_ap::identity::Identity;
use crate::spotify_ap::session::{ApConfig, ApCore};
use crate::wire::dns_sd::ServiceRecord;

/// The name of the AP's framing in transcripts.
pub const PROTOCOL: &str = "SPOTIFY-AP";

/// The Spotify access point kind; [`SpotifyAp::builder`] starts one.
pub struct SpotifyAp;

/// What an access point is made of beyond the common settings.
#[derive(Default)]
pub struct SpotifyApConfig {
    /// Accounts, replies, key; an AP with a key drawn from the seed and no accounts when absent.
    pub ap: Option<ApConfig>,
    /// apresolve's lists; an empty `accesspoint` list names the device's own AP port.
    pub apresolve: Lists,
    /// Port of apresolve (HTTP; 0: a free one).
    pub apresolve_port: u16,
}

impl SpotifyAp {
    /// A builder of an access point named `spotify-ap`.
    pub fn builder() -> Builder<SpotifyApConfig> {
        Builder::new("spotify-ap")
    }
}

impl Builder<SpotifyApConfig> {
    /// The AP's configuration (signing key, accounts, Mercury replies, ping interval).
    pub fn ap(mut self, config: ApConfig) -> Self {
        self.config.ap = Some(config);
        self
    }

    /// apresolve's lists (an empty `accesspoint` list: the device's own AP).
    pub fn apresolve(mut self, lists: Lists) -> Self {
        self.config.apresolve = lists;
        self
    }

    /// Port of apresolve (default 0: a free one).
    pub fn apresolve_port(mut self, port: u16) -> Self {
        self.config.apresolve_port = port;
        self
    }

    /// Starts the device and waits until it listens.
    pub async fn spawn(self) -> Result<Device, SpawnError> {
        let s = &self.settings;
        let config = match self.config.ap {
            Some(c) => c,
            None => {
                let identity =
                    Identity::from_seed(s.seed).map_err(|source| SpawnError::Identity {
                        device: s.name.clone(),
                        source,
                    })?;
                ApConfig::new(Arc::new(identity), s.seed)
            }
        };
        let shell = s.shell();
        let core = Arc::new(ApCore::new(Arc::new(config)));
        let (port, task) = shell
            .serve_stream(core.clone(), "spotify-ap", PROTOCOL, s.port)
            .await?;
        let mut lists = self.config.apresolve;
        if lists.accesspoint.is_empty() {
            lists.accesspoint = vec![format!("{}:{port}", shell.address)];
        }
        let (resolve_port, resolve_task) = shell
            .serve(
                Arc::new(ApresolveCore { lists }),
                "apresolve",
                self.config.apresolve_port,
            )
            .await?;
        let parts = Parts {
            spotify_ap: Some(core),
            ..Parts::default()
        };
        Ok(shell.device(
            &SpotifyAp,
            BTreeMap::from([
                ("spotify-ap".to_string(), port),
                ("apresolve".to_string(), resolve_port),
            ]),
            parts,
            vec![task, resolve_task],
        ))
    }
}

impl Kind for SpotifyAp {
    fn as_str(&self) -> &'static str {
        "spotify-ap"
    }

    /// `public_key`: the PKCS#1 PEM of the key that signs the AP's DH value.
    fn identity(&self, parts: &Parts) -> BTreeMap<String, String> {
        parts
            .spotify_ap
            .as_ref()
            .and_then(|ap| ap.config.identity.public_pem().ok())
            .map(|pem| BTreeMap::from([("public_key".to_string(), pem)]))
            .unwrap_or_default()
    }

    /// None: a client learns AP addresses from apresolve, not DNS-SD.
    fn services(&self, _: &Parts, _: &BTreeMap<String, u16>, _: &str) -> Vec<ServiceRecord> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::tests::offline;
    use crate::spotify_ap::identity::tests::test_identity;

    #[test]
    fn ready_entry_has_the_public_key_pem_and_no_services() {
        let core = Arc::new(ApCore::new(Arc::new(ApConfig::new(
            Arc::new(test_identity().clone()),
            1,
        ))));
        let parts = Parts {
            spotify_ap: Some(core),
            ..Parts::default()
        };
        let d = offline(&SpotifyAp, "ap", parts, &[("spotify-ap", 4070)]);
        let r = d.ready();
        assert_eq!(r.kind, "spotify-ap");
        let pem = &r.identity["public_key"];
        assert!(pem.starts_with("-----BEGIN RSA PUBLIC KEY-----"), "{pem}");
        assert_eq!(pem, &test_identity().public_pem().unwrap());
        assert!(d
            .records("AP", &BTreeMap::new())
            .unwrap()
            .services
            .is_empty());
    }
}
