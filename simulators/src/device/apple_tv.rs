//! Apple TV: one port, `airplay` (7000 on a real device), carrying `/info`, fp-setup, the video
//! API and RAOP audio (docs/protocols/airplay.md), plus a DACP server on a port of its own,
//! `dacp`, for remote controls (docs/protocols/dacp.md); an Apple TV 4K also serves Companion on
//! a port of its own, `companion` (docs/protocols/companion.md). Identity defaults:
//! [`AirplayConfig::apple_tv`]; the RAOP core takes MAC, model and source version from it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::airport_express::raop_identity;
use super::{Builder, Device, Itunes, Kind, Parts, SpawnError};
use crate::airplay::{info, AirplayConfig, AirplayCore};
use crate::companion::{server::PROTOCOL as COMPANION, CompanionConfig, CompanionCore};
use crate::dacp::{DacpConfig, DacpCore};
use crate::hap::Identity;
use crate::mrp::{MrpConfig, MrpCore};
use crate::now_playing::{Model, Player};
use crate::raop::RaopConfig;
use crate::wire::dns_sd::ServiceRecord;

/// The Apple TV kind; [`AppleTv::builder`] starts one.
pub struct AppleTv;

/// What an Apple TV is made of beyond the common settings.
#[derive(Default)]
pub struct AppleTvConfig {
    /// The AirPlay side; [`AppleTv::config`] with the device's name and seed when absent.
    pub airplay: Option<AirplayConfig>,
    /// The RAOP core; [`AirplayConfig::raop_config`] of the AirPlay side when absent.
    pub raop: Option<RaopConfig>,
    /// The remote-control library; [`Itunes::library`] with the device's name and seed when
    /// absent.
    pub dacp: Option<DacpConfig>,
    /// Port of the DACP server (0: a free one).
    pub dacp_port: u16,
    /// The Companion side of a 4K ([`AppleTv::companion`] of its AirPlay side when absent and
    /// the AirPlay side pairs the HomeKit way).
    pub companion: Option<CompanionConfig>,
    /// Port of the Companion server (0: a free one; 49152 and up on a real device).
    pub companion_port: u16,
}

impl AppleTv {
    /// A builder of an Apple TV named `apple-tv`.
    pub fn builder() -> Builder<AppleTvConfig> {
        Builder::new("apple-tv")
    }

    /// The identity defaults of an Apple TV named `name`.
    pub fn config(name: &str, seed: u64) -> AirplayConfig {
        AirplayConfig::apple_tv(name, seed)
    }

    /// The Companion side of an Apple TV whose AirPlay side is `airplay`: the same long-term
    /// identity and PIN as its HomeKit pairing; `None` when the AirPlay side does not pair (an
    /// Apple TV 3 has no Companion).
    pub fn companion(airplay: &AirplayConfig, seed: u64) -> Option<CompanionConfig> {
        let pairing = airplay.pairing.as_ref()?;
        let identity = Identity::new(airplay.info.pi.clone(), airplay.signing_key.clone());
        let mut c = CompanionConfig::apple_tv_4k(&airplay.info.name, identity, &pairing.pin, seed);
        c.model = airplay.info.model.clone();
        c.known = pairing.known.iter().map(|k| k.controller.clone()).collect();
        Some(c)
    }
}

impl AppleTv {
    /// The MRP side of an Apple TV whose AirPlay side is `airplay`, on the device's now-playing
    /// `model`; awake as its Companion side says. `None` when the AirPlay side does not pair (an
    /// Apple TV 3 has no MRP tunnel).
    pub fn mrp(
        airplay: &AirplayConfig,
        model: Arc<Model>,
        companion: Option<Arc<CompanionCore>>,
    ) -> Option<Arc<MrpCore>> {
        airplay.pairing.as_ref()?;
        let i = &airplay.info;
        let mut core = MrpCore::new(MrpConfig::apple_tv_4k(&i.name, &i.pi, &i.model), model);
        if let Some(c) = companion {
            core = core.with_power(Arc::new(move || c.tv().awake));
        }
        Some(Arc::new(core))
    }
}

impl Builder<AppleTvConfig> {
    /// The AirPlay side's configuration (`/info` identity, video).
    pub fn airplay(mut self, config: AirplayConfig) -> Self {
        self.config.airplay = Some(config);
        self
    }

    /// The RAOP core's configuration (key, sessions).
    pub fn raop(mut self, config: RaopConfig) -> Self {
        self.config.raop = Some(config);
        self
    }

    /// The remote-control library's configuration.
    pub fn dacp(mut self, config: DacpConfig) -> Self {
        self.config.dacp = Some(config);
        self
    }

    /// Port of the DACP server (default 0: a free one).
    pub fn dacp_port(mut self, port: u16) -> Self {
        self.config.dacp_port = port;
        self
    }

    /// The Companion side's configuration (a 4K's apps, power, PIN).
    pub fn companion(mut self, config: CompanionConfig) -> Self {
        self.config.companion = Some(config);
        self
    }

    /// Port of the Companion server (default 0: a free one).
    pub fn companion_port(mut self, port: u16) -> Self {
        self.config.companion_port = port;
        self
    }

    /// Starts the device and waits until all its ports listen.
    pub async fn spawn(self) -> Result<Device, SpawnError> {
        let s = &self.settings;
        let c = self.config;
        let airplay = c
            .airplay
            .unwrap_or_else(|| AppleTv::config(&s.name, s.seed));
        let raop = c.raop.unwrap_or_else(|| airplay.raop_config(s.seed));
        let dacp = c.dacp.unwrap_or_else(|| {
            // An Apple TV shares no library: only paired remotes log in.
            let mut d = Itunes::library(&s.name, s.seed, SystemTime::now());
            d.guest_login = false;
            d
        });
        // One now-playing model for DACP, MRP and Companion (docs/protocols/mrp.md, "One
        // now-playing model").
        let model = Arc::new(Model::new(Player::new(
            &dacp.now_playing,
            dacp.artwork.clone(),
            dacp.start,
        )));
        let companion = c
            .companion
            .or_else(|| AppleTv::companion(&airplay, s.seed))
            .map(|config| Arc::new(CompanionCore::with_now_playing(config, model.clone())));
        let mrp = AppleTv::mrp(&airplay, model.clone(), companion.clone());
        let shell = s.shell();
        let mut airplay = AirplayCore::new(airplay, raop);
        if let Some(m) = &mrp {
            airplay = airplay.with_mrp(m.clone());
        }
        let airplay = Arc::new(airplay);
        let mut ports = BTreeMap::new();
        let mut tasks = Vec::new();
        let (port, task) = shell.serve(airplay.clone(), "airplay", s.port).await?;
        ports.insert("airplay".to_string(), port);
        tasks.push(task);
        let dacp = Arc::new(DacpCore::with_model(dacp, model));
        let (port, task) = shell.serve(dacp.clone(), "dacp", c.dacp_port).await?;
        ports.insert("dacp".to_string(), port);
        tasks.push(task);
        if let Some(core) = &companion {
            let (port, task) = shell
                .serve_stream(core.clone(), "companion", COMPANION, c.companion_port)
                .await?;
            ports.insert("companion".to_string(), port);
            tasks.push(task);
        }
        let parts = Parts {
            raop: Some(airplay.raop.clone()),
            airplay: Some(airplay),
            dacp: Some(dacp),
            companion,
            mrp,
            ..Parts::default()
        };
        Ok(shell.device(&AppleTv, ports, parts, tasks))
    }
}

impl Kind for AppleTv {
    fn as_str(&self) -> &'static str {
        "apple-tv"
    }

    /// The RAOP core's facts, then the AirPlay side's (its `model` wins).
    fn identity(&self, parts: &Parts) -> BTreeMap<String, String> {
        let mut identity = BTreeMap::new();
        if let Some(s) = &parts.raop {
            raop_identity(s, &mut identity);
        }
        if let Some(a) = &parts.airplay {
            let i = &a.config.info;
            identity.insert("device_id".into(), i.device_id.clone());
            identity.insert("model".into(), i.model.clone());
            identity.insert("features".into(), info::features_text(i.features));
            identity.insert("pi".into(), i.pi.clone());
            identity.insert("pk".into(), info::hex(&i.pk));
            if let Some(p) = &a.pairing {
                identity.insert("pin".into(), p.pin().to_string());
                // pyatv's `--airplay-credentials` and `--companion-credentials` for each
                // controller paired before the start (`${device.NAME.credentials.CONTROLLER}`).
                for k in p.known() {
                    identity.insert(format!("credentials.{}", k.name), k.credentials.to_string());
                }
            }
        }
        identity
    }

    /// `_airplay._tcp` and `_raop._tcp` on the AirPlay port, `_touch-able._tcp`
    /// (`DvTy=AppleTV`, no `_daap._tcp`) on the DACP port (docs/protocols/dns-sd.md); a 4K
    /// announces `_companion-link._tcp` on the Companion port instead of `_touch-able._tcp`
    /// (docs/protocols/companion.md).
    fn services(
        &self,
        parts: &Parts,
        ports: &BTreeMap<String, u16>,
        name: &str,
    ) -> Vec<ServiceRecord> {
        let mut services = Vec::new();
        if let Some(a) = &parts.airplay {
            let port = ports.get("airplay").copied().unwrap_or(0);
            services.extend(a.config.services(name, port));
        }
        // tvOS 15+ (an Apple TV 4K) announces AirPlay, RAOP and Companion but no
        // `_touch-able._tcp` (docs/protocols/companion.md, "Discovery"; docs/protocols/hap.md,
        // "airtwin's Apple TV 4K"): pyatv would try a DMAP login on it without credentials.
        let modern = parts.companion.is_some()
            || parts.airplay.as_ref().is_some_and(|a| a.pairing.is_some());
        if let Some(d) = parts.dacp.as_ref().filter(|_| !modern) {
            let port = ports.get("dacp").copied().unwrap_or(0);
            services.extend(d.config.services(name, port, "AppleTV", false));
        }
        if let Some(c) = &parts.companion {
            let port = ports.get("companion").copied().unwrap_or(0);
            services.extend(c.config().services(name, port));
        }
        services
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::tests::offline;

    fn device() -> Device {
        device_of(AppleTv::config("Living Room", 7), "Living Room")
    }

    fn device_of(config: AirplayConfig, name: &str) -> Device {
        let raop = config.raop_config(7);
        let airplay = Arc::new(AirplayCore::new(config, raop));
        let dacp = Arc::new(DacpCore::new(Itunes::library(
            name,
            7,
            SystemTime::UNIX_EPOCH,
        )));
        let parts = Parts {
            raop: Some(airplay.raop.clone()),
            airplay: Some(airplay),
            dacp: Some(dacp),
            ..Parts::default()
        };
        offline(&AppleTv, name, parts, &[("airplay", 7000), ("dacp", 3689)])
    }

    #[test]
    fn ready_entry_has_the_airplay_identity_over_the_raop_one() {
        let r = device().ready();
        assert_eq!(r.kind, "apple-tv");
        let keys: Vec<&str> = r.identity.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "device_id",
                "features",
                "mac",
                "model",
                "pi",
                "pk",
                "public_key"
            ]
        );
        assert_eq!(r.identity["model"], "AppleTV3,2");
        assert_eq!(r.identity["mac"], "AA:BB:CC:DD:EE:FF");
        assert_eq!(r.identity["device_id"], "AA:BB:CC:DD:EE:FF");
        assert_eq!(r.identity["pk"].len(), 64);
    }

    #[test]
    fn publishes_airplay_and_raop_on_its_port_and_touchable_as_apple_tv() {
        let r = device().records("Living Room", &BTreeMap::new()).unwrap();
        let found: Vec<(&str, u16)> = r
            .services
            .iter()
            .map(|s| (s.service.as_str(), s.port))
            .collect();
        assert_eq!(
            found,
            [
                ("_airplay._tcp", 7000),
                ("_raop._tcp", 7000),
                ("_touch-able._tcp", 3689)
            ]
        );
        assert_eq!(r.services[2].get("DvTy"), Some("AppleTV"));
    }

    #[test]
    fn an_apple_tv_4k_publishes_no_touchable() {
        let d = device_of(AirplayConfig::apple_tv_4k("Den", 7), "Den");
        let r = d.records("Den", &BTreeMap::new()).unwrap();
        let found: Vec<&str> = r.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(found, ["_airplay._tcp", "_raop._tcp"]);
    }

    #[test]
    fn state_has_raop_airplay_and_dacp_keys() {
        let s = device().state_json();
        for key in [
            "volume",
            "active_sessions",
            "video",
            "event_channel",
            "info_requests",
            "dacp",
        ] {
            assert!(s.get(key).is_some(), "{key} missing from {s}");
        }
    }
}
