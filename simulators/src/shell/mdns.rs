//! Multicast DNS announcements (RFC 6762) of the simulated devices, over the mdns-sd crate.
//!
//! Announcements go only to the interfaces named: the loopback interface, or a list the user
//! gave. mdns-sd's daemon starts with every interface (it joins 224.0.0.251 on each when its
//! thread starts), so the interface choice is made before any service is registered, and only
//! the chosen ones ever carry an announcement. Because of that join, airtwin's own tests and
//! scenarios run every announcer inside a private network namespace (`ci/netns`); on a shared
//! host use the unicast responder (`shell::dns_sd`) instead. [`Announcer::shutdown`] sends the
//! goodbye packets (the records again with TTL 0, RFC 6762 §10.1) before it returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};

use crate::wire::dns_sd::HostRecords;

/// Where announcements go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// The loopback interface only.
    Loopback,
    /// These interfaces (by name, e.g. `airtwin0`) only.
    Named(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("no network interface named {0:?} (see `ip link`)")]
    NoSuchInterface(String),
    #[error("mDNS: {0}")]
    Daemon(String),
    #[error("mDNS: device {device} has no IPv4 address to announce ({address})")]
    NotIpv4 { device: String, address: IpAddr },
}

fn daemon_err(e: mdns_sd::Error) -> MdnsError {
    MdnsError::Daemon(e.to_string())
}

/// A running mDNS responder announcing some hosts.
pub struct Announcer {
    daemon: ServiceDaemon,
    /// Host name → fullnames of its registered services.
    registered: std::sync::Mutex<HashMap<String, Vec<String>>>,
}

/// An mdns-sd daemon that sends and listens only on `interfaces`.
fn daemon_on(interfaces: &Interfaces) -> Result<ServiceDaemon, MdnsError> {
    if let Interfaces::Named(names) = interfaces {
        for n in names {
            if !Path::new("/sys/class/net").join(n).exists() {
                return Err(MdnsError::NoSuchInterface(n.clone()));
            }
        }
    }
    let daemon = ServiceDaemon::new().map_err(daemon_err)?;
    daemon.disable_interface(IfKind::All).map_err(daemon_err)?;
    match interfaces {
        Interfaces::Loopback => daemon
            .enable_interface(IfKind::LoopbackV4)
            .map_err(daemon_err)?,
        Interfaces::Named(names) => {
            let kinds: Vec<IfKind> = names.iter().map(|n| IfKind::Name(n.clone())).collect();
            daemon.enable_interface(kinds).map_err(daemon_err)?;
            // Announcements are IPv4 only: the devices listen on IPv4 addresses.
            daemon.disable_interface(IfKind::IPv6).map_err(daemon_err)?;
        }
    }
    Ok(daemon)
}

/// A service instance found by browsing, resolved to an address, a port and its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub fullname: String,
    pub addresses: Vec<std::net::Ipv4Addr>,
    pub port: u16,
    pub txt: std::collections::BTreeMap<String, String>,
}

/// Browses `service_type` (e.g. `_touch-remote._tcp.local.`) on `interfaces` until a resolved
/// instance satisfies `accept`, or `timeout` passes (`Ok(None)`). Every instance seen is passed
/// to `seen`, for the log.
pub async fn find(
    service_type: &str,
    interfaces: &Interfaces,
    timeout: Duration,
    accept: impl Fn(&Found) -> bool,
    mut seen: impl FnMut(&Found),
) -> Result<Option<Found>, MdnsError> {
    let daemon = daemon_on(interfaces)?;
    let events = daemon.browse(service_type).map_err(daemon_err)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut result = None;
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv_async()).await {
        let mdns_sd::ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        let mut addresses: Vec<_> = info.get_addresses_v4().into_iter().collect();
        addresses.sort();
        let found = Found {
            fullname: info.get_fullname().to_string(),
            addresses,
            port: info.get_port(),
            txt: info
                .get_properties()
                .iter()
                .map(|p| (p.key().to_string(), p.val_str().to_string()))
                .collect(),
        };
        seen(&found);
        if accept(&found) {
            result = Some(found);
            break;
        }
    }
    let _ = daemon.shutdown();
    Ok(result)
}

impl Announcer {
    /// Starts the daemon restricted to `interfaces`.
    pub fn start(interfaces: &Interfaces) -> Result<Self, MdnsError> {
        Ok(Announcer {
            daemon: daemon_on(interfaces)?,
            registered: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Registers every service of `host` (mdns-sd probes and announces them, RFC 6762 §8).
    pub fn announce(&self, host: &HostRecords) -> Result<(), MdnsError> {
        let host_name = format!("{}.local.", host.host);
        let mut names = Vec::new();
        for s in &host.services {
            let props: Vec<(&str, &str)> = s
                .txt
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let info = ServiceInfo::new(
                &format!("{}.local.", s.service),
                &s.instance,
                &host_name,
                IpAddr::V4(host.address),
                s.port,
                &props[..],
            )
            .map_err(daemon_err)?;
            names.push(info.get_fullname().to_string());
            self.daemon.register(info).map_err(daemon_err)?;
        }
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.host.clone())
            .or_default()
            .extend(names);
        Ok(())
    }

    /// Withdraws every service of the host named `host` (goodbye packets).
    pub fn withdraw(&self, host: &str) {
        let names = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host)
            .unwrap_or_default();
        self.unregister_all(names);
    }

    fn unregister_all(&self, names: Vec<String>) {
        let mut waits = Vec::new();
        for n in names {
            if let Ok(rx) = self.daemon.unregister(&n) {
                waits.push(rx);
            }
        }
        for rx in waits {
            // The daemon answers once the goodbye is sent.
            let _: Option<UnregisterStatus> = rx.recv_timeout(Duration::from_secs(2)).ok();
        }
    }

    /// Sends goodbyes for everything still announced, then stops the daemon.
    pub fn shutdown(self) {
        let all: Vec<String> = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        self.unregister_all(all);
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}
