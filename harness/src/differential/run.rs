//! One differential pass inside `engine::run`: proxies in front of the fake and the reference,
//! the clients run against each, the recordings compared.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rsa::RsaPublicKey;
use tokio::sync::watch;

use super::proxy::Proxy;
use super::reference::{Identity, Running};
use super::{compare, kodi, rust_receivers, Difference, ReferenceExit, ReferenceKind};
use crate::devices::Device;
use crate::engine::{Failure, RunOptions, ScenarioResult};
use crate::scenario::subst::Vars;
use crate::scenario::Loaded;

/// Where in-process clients aimed at `device` go instead.
pub struct Redirect {
    pub device: String,
    pub addr: SocketAddr,
    /// The key Apple-Response must verify under on this side, when it is not the fake's.
    pub verify_key: Option<Arc<RsaPublicKey>>,
    /// The hardware address Apple-Response must verify with on this side, when it is not the
    /// fake's (the reference took another identity).
    pub verify_mac: Option<[u8; 6]>,
}

/// A started differential pass: the reference is up, both proxies listen.
pub struct Pass {
    kind: ReferenceKind,
    device: String,
    fake: Proxy,
    reference_proxy: Proxy,
    reference: Running,
    out: Option<std::path::PathBuf>,
    /// Without `--out`, the folder of this pass's reference log and state (Kodi's HOME,
    /// shairport-sync's configuration), removed when the pass ends; declared last so that it
    /// goes after the reference has stopped.
    _scratch: Option<tempfile::TempDir>,
}

impl Pass {
    /// Starts the reference with the identity (name, MAC) of the scenario's first device.
    pub async fn start(
        kind: ReferenceKind,
        devices: &[Device],
        vars: &Vars,
        opts: &RunOptions,
        loaded: &Loaded,
        out: Option<&Path>,
    ) -> Result<Pass> {
        if kind.needs_namespace() && !crate::netns::inside() {
            bail!(
                "reference {} multicasts mDNS or binds every interface: it runs only inside ci/netns \
                 (airtwin run starts such a scenario there by itself)",
                kind.name()
            );
        }
        let device = devices
            .first()
            .context("a differential scenario needs a device")?;
        let ready = device.ready();
        let name = ready
            .identity
            .get("name")
            .cloned()
            .unwrap_or_else(|| device.name.clone());
        let mac = ready
            .identity
            .get("mac")
            .cloned()
            .context("the device has no MAC to give the reference")?;
        let peers = opts
            .peers
            .clone()
            .unwrap_or_else(|| crate::engine::default_peers_dir(&loaded.dir()));
        // Each pass has its own folder, so that two passes (`-j 2`, or two runs at once) never
        // share a log, a HOME or a configuration file.
        let scratch = match out {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix(&format!("airtwin-reference-{}-", kind.name()))
                    .tempdir()
                    .context("creating the reference's folder")?,
            ),
        };
        let log_dir = match (out, &scratch) {
            (Some(d), _) => d.to_path_buf(),
            (None, Some(t)) => t.path().to_path_buf(),
            (None, None) => std::env::temp_dir(),
        };
        let log = log_dir.join(format!(
            "reference-{}-{}.log",
            kind.name(),
            vars.apply("${seed}").unwrap_or_default()
        ));
        let identity = Identity { name, mac };
        let reference = match kind {
            ReferenceKind::Openairplay1 | ReferenceKind::Shairplay => {
                rust_receivers::start(kind, &peers, &identity, log).await?
            }
            ReferenceKind::ShairportSync => {
                super::shairport_sync::start(&peers, &identity, log).await?
            }
            ReferenceKind::Uxplay => super::uxplay::start(&peers, &identity, log).await?,
            // Kodi serves AirPlay video and AirTunes: the fake device's kind says which one the
            // clients are sent to (an Apple TV's first port is `airplay`).
            ReferenceKind::Kodi if device.port_of("airplay").is_some() => {
                kodi::start(&peers, &identity, log).await?
            }
            ReferenceKind::Kodi => {
                kodi::start_service(&peers, &identity, log, kodi::Service::Airtunes).await?
            }
        };
        let fake = Proxy::start(SocketAddr::new(device.address, device.port()))
            .await
            .context("starting the fake's recording proxy")?;
        let reference_proxy = Proxy::start(reference.addr)
            .await
            .context("starting the reference's recording proxy")?;
        Ok(Pass {
            kind,
            device: device.name.clone(),
            fake,
            reference_proxy,
            reference,
            out: out.map(Path::to_path_buf),
            _scratch: scratch,
        })
    }

    fn set_vars(&self, vars: &mut Vars, addr: SocketAddr) {
        vars.set(
            format!("device.{}.port", self.device),
            addr.port().to_string(),
        );
        vars.set(
            format!("device.{}.address", self.device),
            addr.ip().to_string(),
        );
    }

    /// Points `${device.NAME.port}`/`address` at the fake's proxy.
    pub fn redirect_to_fake(&self, vars: &mut Vars) {
        self.set_vars(vars, self.fake.addr);
    }

    pub fn fake_redirect(&self) -> Redirect {
        Redirect {
            device: self.device.clone(),
            addr: self.fake.addr,
            verify_key: None,
            verify_mac: None,
        }
    }

    /// Runs the clients again against the reference, compares, and records every difference
    /// not accepted as a failure (and all of them in `differences.json`).
    pub async fn run_reference(
        mut self,
        loaded: &Loaded,
        devices: &[Device],
        vars: &Vars,
        seed: u64,
        cancel: &watch::Receiver<bool>,
        result: &mut ScenarioResult,
    ) {
        let mut vars = vars.clone();
        self.set_vars(&mut vars, self.reference_proxy.addr);
        // The reference signs with the well-known AirPort Express key (docs/peers.md).
        let redirect = Redirect {
            device: self.device.clone(),
            addr: self.reference_proxy.addr,
            verify_key: crate::clients::raop::load_public("builtin").ok(),
            verify_mac: self
                .reference
                .identity
                .as_ref()
                .and_then(|i| airtwin_simulators::wire::hex::parse_mac(&i.mac)),
        };
        let mut differences: Vec<Difference> = Vec::new();
        let fake_outcomes = result.clients.clone();
        // The reference's exit and the client it was running for.
        let mut exited: Option<(String, ReferenceExit)> = None;
        for client in &loaded.scenario.clients {
            if *cancel.borrow() {
                result.interrupted = true;
                break;
            }
            let outcome = crate::engine::run_client(
                loaded,
                client,
                devices,
                &vars,
                seed,
                Some(&redirect),
                cancel.clone(),
            )
            .await;
            let mut differs = false;
            if let Some((_, fake)) = fake_outcomes.iter().find(|(n, _)| *n == client.name) {
                if fake.exit != outcome.exit {
                    differs = true;
                    differences.push(Difference {
                        exchange: format!("client {}", client.name),
                        what: "exit".into(),
                        fake: format!("{:?}", fake.exit),
                        reference: format!("{:?} {}", outcome.exit, last_line(&outcome.stderr)),
                        accepted: None,
                    });
                }
            }
            result
                .clients
                .push((format!("{}@{}", client.name, self.kind.name()), outcome));
            // A client that ended otherwise than against the fake may have lost the reference:
            // give a wrapper (ci/references/mdns-session) time to stop its helpers and exit.
            let grace = Duration::from_millis(if differs { 5000 } else { 150 });
            if let Some(exit) = self.exited_within(grace).await {
                exited = Some((client.name.clone(), exit));
                break;
            }
        }
        // A reference that crashed near the end of the last client may be seen only through
        // answers missing on its side while its wrapper (ci/references/mdns-session) is still
        // stopping its helpers: give it time to exit before those are judged as the fake's.
        if exited.is_none() && !result.interrupted {
            if let Some(last) = loaded.scenario.clients.last() {
                let probe = compare(
                    &self.fake.exchanges(),
                    &self.reference_proxy.exchanges(),
                    &self.kind.accepted(),
                );
                if probe
                    .iter()
                    .any(|d| d.accepted.is_none() && !answered_before_exit(d))
                {
                    if let Some(exit) = self.exited_within(LATE_EXIT_GRACE).await {
                        exited = Some((last.name.clone(), exit));
                    }
                }
            }
        }
        if let Some((client, exit)) = &exited {
            differences.push(Difference {
                exchange: format!("client {client}"),
                what: "reference exit".into(),
                fake: "the fake kept running".into(),
                reference: format!("{} ({})", exit.status, last_line(&exit.log_tail)),
                accepted: None,
            });
        }
        let fake = self.fake.exchanges();
        let reference = self.reference_proxy.exchanges();
        differences.extend(compare(&fake, &reference, &[]));
        super::mark_accepted(&mut differences, &self.kind.accepted());
        if let Some((_, exit)) = &exited {
            let accepted = differences
                .iter()
                .any(|d| d.what == "reference exit" && d.accepted.is_some());
            if !accepted {
                result.error = Some(format!(
                    "reference {} exited ({}) during the run; not a failure of the fake. Its log ends:\n{}",
                    exit.reference, exit.status, exit.log_tail
                ));
            }
        }
        // After the reference died, its missing answers (and the client's failure) say nothing
        // about the fake: only the exchanges it answered are judged.
        if exited.is_some() {
            for d in differences
                .iter_mut()
                .filter(|d| !answered_before_exit(d) && d.accepted.is_none())
            {
                d.accepted = Some(std::borrow::Cow::Borrowed(NOT_JUDGED));
            }
        }
        if let Some(dir) = &self.out {
            let doc = serde_json::json!({
                "reference": self.kind.name(),
                "differences": differences,
                "fake": fake,
                "reference_exchanges": reference,
            });
            if let Ok(text) = serde_json::to_string_pretty(&doc) {
                let _ = std::fs::write(dir.join("differences.json"), text);
            }
        }
        for d in &differences {
            tracing::info!(exchange = %d.exchange, what = %d.what, fake = %d.fake, reference = %d.reference, accepted = ?d.accepted, "difference");
        }
        // Differences not judged after an exit were marked accepted above.
        result.failures.extend(
            differences
                .iter()
                .filter(|d| d.accepted.is_none())
                .map(|d| Failure {
                    what: format!(
                        "difference vs {}: {} {}",
                        self.kind.name(),
                        d.exchange,
                        d.what
                    ),
                    expected: format!("the fake's {}", d.fake),
                    actual: format!("the reference's {}", d.reference),
                }),
        );
        result.differences = differences;
        self.stop().await;
    }

    async fn exited_within(&mut self, grace: Duration) -> Option<ReferenceExit> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if let Some(exit) = self.reference.exited() {
                return Some(exit);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.fake.stop();
        self.reference_proxy.stop();
        self.reference.stop().await;
    }
}

/// How long a reference whose answers are missing may take to be seen exiting.
const LATE_EXIT_GRACE: Duration = Duration::from_secs(3);

/// Why a difference is not judged once the reference has exited.
const NOT_JUDGED: &str = "not judged: the reference had exited";

/// Whether `d` compares two answers (not an answer the reference never gave once it was gone).
fn answered_before_exit(d: &Difference) -> bool {
    !(d.what == "missing exchange"
        || d.what == "exit"
        || d.what == "reference exit"
        || (d.what == "status" && d.reference == "None"))
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(what: &str, reference: &str) -> Difference {
        Difference {
            exchange: "X".into(),
            what: what.into(),
            fake: "f".into(),
            reference: reference.into(),
            accepted: None,
        }
    }

    #[test]
    fn after_an_exit_only_answers_the_reference_gave_are_judged() {
        assert!(answered_before_exit(&diff(
            "header server",
            "AirTunes/105.1"
        )));
        assert!(answered_before_exit(&diff("status", "Some(400)")));
        assert!(!answered_before_exit(&diff("status", "None")));
        assert!(!answered_before_exit(&diff(
            "missing exchange",
            "no such request"
        )));
        assert!(!answered_before_exit(&diff("exit", "Some(1)")));
        assert!(!answered_before_exit(&diff("reference exit", "signal 11")));
    }
}
