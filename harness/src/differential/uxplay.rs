//! UxPlay 1.62 (Debian `uxplay`, installed by `ci/install-peers`) as a reference: an AirPlay
//! receiver that answers `GET /info` and FairPlay `POST /fp-setup` like an Apple TV 3
//! (docs/peers.md, "UxPlay"). It publishes through avahi-daemon and binds every interface, so it
//! runs only inside `ci/netns`, under `ci/references/mdns-session` (a private dbus and avahi).
//! It is started as `uxplay -n NAME -nh -vs 0 -as 0 -p N`: no video window, no audio output, TCP
//! and UDP ports N, N+1, N+2, of which N+1 serves RTSP (/info, /fp-setup, pairing, RAOP). UxPlay
//! 1.62 has no option for a given MAC: it takes the first interface's (or a random one with
//! `-m`), which it logs as `using system MAC address …`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::reference::{self, Identity, Running};
use super::{Accepted, ReferenceKind};

/// Differences accepted against UxPlay 1.62 (docs/differences.md, "UxPlay 1.62"), found with
/// airtwin's own AirPlay client (`scenarios/differential/own-airplay-client-vs-uxplay.yaml`).
pub const UXPLAY_ACCEPTED: &[Accepted] = &[
    Accepted {
        exchange: "*",
        what: "header date",
        why: "UxPlay sends no Date; the fake does, as an Apple TV (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "*",
        what: "header session",
        why: "UxPlay sends no Session; the fake keeps one per connection, as an Apple TV (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "*",
        what: "header audio-jack-status",
        why: "UxPlay sends no Audio-Jack-Status; the fake does on every answer but RECORD and SET_PARAMETER, as an Apple TV (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "GET /info",
        what: "header content-length",
        why: "follows from the body: UxPlay's /info holds other keys and values",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key initialVolume",
        why: "UxPlay leaves initialVolume out (a sender then asks for the volume); the fake sends it with a CSeq, as pyatv reads it (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key txtAirPlay",
        why: "UxPlay puts the TXT record into every /info answer; the fake only into the one asked with the txtAirPlay qualifier (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key audioLatencies[0].inputLatencyMicros",
        why: "UxPlay writes the latencies as the boolean false; the fake as integers, as in the capture docs/protocols/airplay.md cites",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key audioLatencies[0].outputLatencyMicros",
        why: "UxPlay writes the latencies as the boolean false; the fake as integers, as in the capture docs/protocols/airplay.md cites",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key displays[0].widthPhysical",
        why: "UxPlay writes the physical size as the boolean false; the fake as the integer 0, as in the capture docs/protocols/airplay.md cites",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key displays[0].heightPhysical",
        why: "UxPlay writes the physical size as the boolean false; the fake as the integer 0, as in the capture docs/protocols/airplay.md cites",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key displays[0].refreshRate",
        why: "UxPlay writes refreshRate as an integer; the fake as a real, as in the capture docs/protocols/airplay.md cites (and airtwin's client checks)",
    },
    Accepted {
        exchange: "GET /info",
        what: "body key displays[0].maxFPS",
        why: "UxPlay adds maxFPS (its -fps limit, 30); the capture docs/protocols/airplay.md cites has none",
    },
];

/// How long UxPlay (and the dbus and avahi before it) may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A base port N such that TCP and UDP N, N+1, N+2 are free on 127.0.0.1 right now (UxPlay binds
/// them on every interface, which a socket on 127.0.0.1 would block).
fn free_port_triple() -> Result<u16> {
    for _ in 0..50 {
        let rtsp = reference::free_port()?;
        let Some(base) = rtsp.checked_sub(1) else {
            continue;
        };
        if base < 1024 || rtsp > 65533 {
            continue;
        }
        let free = (base..=base + 2).all(|p| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
                && UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no three consecutive free ports for uxplay -p")
}

/// The MAC UxPlay logged it took (`using system MAC address aa:bb:…`); the last one, should the
/// log hold more than one start.
pub fn logged_mac(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let mac = l.split("MAC address ").nth(1)?.trim();
        (mac.len() == 17 && mac.split(':').count() == 6).then(|| mac.to_string())
    })
}

/// Starts UxPlay named `identity.name` inside an mdns-session and waits until its RTSP port
/// listens; stdout and stderr (UxPlay's and mdns-session's) go to `log`.
pub async fn start(peers: &Path, identity: &Identity, log: PathBuf) -> Result<Running> {
    let exe = reference::program("uxplay", Some("AIRTWIN_UXPLAY"))?;
    let base = free_port_triple()?;
    let argv: Vec<String> = [
        "stdbuf",
        "-oL",
        "-eL",
        &exe.to_string_lossy(),
        "-n",
        &identity.name,
        "-nh",
        "-vs",
        "0",
        "-as",
        "0",
        "-p",
        &base.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let child = reference::spawn_with_mdns(ReferenceKind::Uxplay, peers, &argv, &log)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, base + 1));
    let mut running = Running::new(ReferenceKind::Uxplay, addr, child, log.clone());
    running.wait_listening(READY_TIMEOUT).await?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    running.identity = Some(Identity {
        name: identity.name.clone(),
        mac: logged_mac(&text).unwrap_or_else(|| identity.mac.clone()),
    });
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_uxplay_took_is_read_from_its_log() {
        let log = "UxPlay 1.62: An Open-Source AirPlay mirroring and audio-streaming server.\n\
                   video_disabled\naudio_disabled\nusing system MAC address 16:29:df:f5:18:70\n\
                   Initialized server socket(s)\n";
        assert_eq!(logged_mac(log).as_deref(), Some("16:29:df:f5:18:70"));
        assert_eq!(logged_mac("using system MAC address (none)\n"), None);
        let twice = format!("{log}using system MAC address 02:00:00:00:00:01\n");
        assert_eq!(logged_mac(&twice).as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn the_three_ports_are_free_and_consecutive() {
        let base = free_port_triple().unwrap();
        for p in base..=base + 2 {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }
}
