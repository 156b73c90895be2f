//! How a run's devices are found: nothing (the default), unicast DNS-SD on 127.0.0.1, or mDNS
//! on the loopback interface or on named interfaces. The records come from each device
//! (`Device::records`, by its kind, from `services()` beside every protocol core); the I/O is
//! `airtwin_simulators::shell::{dns_sd, mdns}`.
//!
//! The house rule: nothing multicasts outside a private network namespace unless the user asked
//! for it by naming the mode. `none` opens no socket at all; `unicast` one UDP socket on
//! 127.0.0.1; only `loopback` and `interfaces` start the mDNS daemon.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use airtwin_simulators::shell::{dns_sd, mdns};
use airtwin_simulators::wire::dns_sd::{host_label, HostRecords, SharedRecords};
use anyhow::{bail, Context as _, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::devices::Device;
use crate::scenario::DeviceSpec;

/// Discovery mode of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DiscoveryMode {
    /// Nothing is announced and no discovery socket is opened.
    #[default]
    None,
    /// DNS-SD answered on a UDP port of 127.0.0.1 (the ready file's `dns-sd`), no multicast.
    Unicast,
    /// mDNS on the loopback interface only (plus unicast DNS-SD).
    Loopback,
    /// mDNS on these interfaces only, e.g. `[airtwin0]` inside `ci/netns` (plus unicast DNS-SD).
    Interfaces(Vec<String>),
}

impl DiscoveryMode {
    pub fn is_none(&self) -> bool {
        *self == DiscoveryMode::None
    }

    /// `none`, `unicast`, `loopback` or `interfaces:NAME[,NAME…]` (the `--discovery` flag).
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "none" => DiscoveryMode::None,
            "unicast" => DiscoveryMode::Unicast,
            "loopback" => DiscoveryMode::Loopback,
            other => match other.strip_prefix("interfaces:") {
                Some(list) => {
                    let names: Vec<String> = list
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect();
                    if names.is_empty() {
                        bail!("--discovery interfaces: needs at least one interface name");
                    }
                    DiscoveryMode::Interfaces(names)
                }
                None => bail!(
                    "unknown discovery mode {other:?}: use none, unicast, loopback or \
                     interfaces:NAME[,NAME…]"
                ),
            },
        })
    }

    fn mdns(&self) -> Option<mdns::Interfaces> {
        match self {
            DiscoveryMode::None | DiscoveryMode::Unicast => None,
            DiscoveryMode::Loopback => Some(mdns::Interfaces::Loopback),
            DiscoveryMode::Interfaces(n) => Some(mdns::Interfaces::Named(n.clone())),
        }
    }
}

/// The name a device is announced under and its scenario TXT entries.
type Announced = (String, BTreeMap<String, String>);

/// A running discovery: the records, the unicast responder and the mDNS announcer.
pub struct Discovery {
    pub mode: DiscoveryMode,
    records: SharedRecords,
    /// Device name → (announced name, scenario TXT entries).
    names: Mutex<BTreeMap<String, Announced>>,
    /// Port of the unicast DNS-SD responder on 127.0.0.1.
    pub dns_sd_port: Option<u16>,
    responder: Mutex<Option<JoinHandle<()>>>,
    announcer: Mutex<Option<mdns::Announcer>>,
}

impl Discovery {
    /// A discovery that does nothing (mode `none`).
    pub fn none() -> Self {
        Discovery {
            mode: DiscoveryMode::None,
            records: Arc::new(RwLock::new(Vec::new())),
            names: Mutex::new(BTreeMap::new()),
            dns_sd_port: None,
            responder: Mutex::new(None),
            announcer: Mutex::new(None),
        }
    }

    /// Starts `mode` for `devices` (with their scenario entries, for `identity.txt`). The unicast
    /// responder listens on 127.0.0.1:`dns_sd_port` (0: a free port).
    pub async fn start(
        mode: &DiscoveryMode,
        devices: &[Device],
        specs: &[DeviceSpec],
        dns_sd_port: u16,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        let mut d = Discovery::none();
        d.mode = mode.clone();
        if mode.is_none() {
            return Ok(d);
        }
        let mut hosts = Vec::new();
        {
            let mut names = d.names.lock().unwrap_or_else(|e| e.into_inner());
            for dev in devices {
                let spec = specs.iter().find(|s| s.name == dev.name);
                let txt = spec.map(|s| s.identity.txt.clone()).unwrap_or_default();
                // The announced name: `identity.name` (free text, e.g. "Living Room"), else the
                // scenario name of the device.
                let name = spec
                    .and_then(|s| s.identity.name.clone())
                    .unwrap_or_else(|| dev.name.clone());
                hosts.push(dev.records(&name, &txt)?);
                names.insert(dev.name.clone(), (name, txt));
            }
        }
        *d.records.write().unwrap_or_else(|e| e.into_inner()) = hosts.clone();
        let socket = dns_sd::bind(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), dns_sd_port))
            .await
            .with_context(|| format!("cannot listen for DNS-SD on 127.0.0.1:{dns_sd_port}/udp"))?;
        d.dns_sd_port = Some(socket.local_addr()?.port());
        *d.responder.get_mut().unwrap_or_else(|e| e.into_inner()) =
            Some(dns_sd::spawn(socket, d.records.clone(), shutdown));
        if let Some(ifaces) = mode.mdns() {
            let announcer = mdns::Announcer::start(&ifaces)?;
            for h in &hosts {
                announcer.announce(h)?;
            }
            *d.announcer.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(announcer);
        }
        Ok(d)
    }

    /// The records as announced now.
    pub fn records(&self) -> Vec<HostRecords> {
        self.records
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The records of one device.
    pub fn records_of(&self, device: &str) -> Option<HostRecords> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let (announced, _) = names.get(device)?;
        let label = host_label(announced);
        self.records().into_iter().find(|h| h.host == label)
    }

    /// The name `device` is announced under.
    pub fn announced_name(&self, device: &str) -> Option<String> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.get(device).map(|(n, _)| n.clone())
    }

    /// Announces `device` under a new name: goodbyes for the old records, then the new ones.
    pub fn rename(&self, device: &Device, name: &str) -> Result<()> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let Some((old, txt)) = names.get(&device.name).cloned() else {
            // Discovery is off: nothing is announced, nothing to change.
            return Ok(());
        };
        let new = device.records(name, &txt)?;
        let old_host = host_label(&old);
        {
            let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
            match records.iter_mut().find(|h| h.host == old_host) {
                Some(slot) => *slot = new.clone(),
                None => records.push(new.clone()),
            }
        }
        if let Some(a) = self
            .announcer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            a.withdraw(&old_host);
            a.announce(&new)?;
        }
        names.insert(device.name.clone(), (name.to_string(), txt));
        Ok(())
    }

    /// Sends the mDNS goodbyes and stops answering, off the async threads (the goodbyes block
    /// until mdns-sd has sent them).
    pub async fn shutdown(&self) {
        let announcer = self
            .announcer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = self
            .responder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
        if let Some(a) = announcer {
            let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
        }
    }

    /// Whether the mDNS daemon runs (only in modes `loopback` and `interfaces`).
    pub fn multicast(&self) -> bool {
        self.announcer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Sends the mDNS goodbyes and stops answering (blocking).
    pub fn stop(&mut self) {
        if let Some(a) = self
            .announcer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            a.shutdown();
        }
        if let Some(t) = self
            .responder
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_the_flag() {
        assert_eq!(DiscoveryMode::parse("none").unwrap(), DiscoveryMode::None);
        assert_eq!(
            DiscoveryMode::parse("interfaces:airtwin0, lo").unwrap(),
            DiscoveryMode::Interfaces(vec!["airtwin0".into(), "lo".into()])
        );
        assert!(DiscoveryMode::parse("interfaces:").is_err());
        let e = DiscoveryMode::parse("everywhere").unwrap_err().to_string();
        assert!(e.contains("unicast"), "{e}");
    }

    #[test]
    fn modes_read_from_yaml() {
        let m: DiscoveryMode = serde_yaml::with::singleton_map_recursive::deserialize(
            serde_yaml::Deserializer::from_str("interfaces: [airtwin0]"),
        )
        .unwrap();
        assert_eq!(m, DiscoveryMode::Interfaces(vec!["airtwin0".into()]));
        let m: DiscoveryMode = serde_yaml::from_str("unicast").unwrap();
        assert_eq!(m, DiscoveryMode::Unicast);
    }
}
