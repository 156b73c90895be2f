//! shairport-sync 3.3.8 (Debian) as a reference receiver (docs/peers.md, "shairport-sync").
//! It will not run without an mDNS advertisement (it exits when no avahi-daemon answers), so it
//! runs under `ci/references/mdns-session` inside `ci/netns`, with a configuration file of ours:
//! the scenario device's name, a free RTSP port, the `dummy` audio backend (no sound card),
//! metadata off. It signs Apple-Challenge with the well-known AirPort Express key, but with a
//! hardware address of its own: the first six bytes of the MD5 digest of its name (also the
//! prefix of its `_raop._tcp` instance name), not the MAC it would be given.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use md5::{Digest, Md5};

use super::reference::{self, Identity, Running};
use super::{Accepted, ReferenceKind};

/// The program, as Debian installs it.
pub const PROGRAM: &str = "shairport-sync";

/// The hardware address shairport-sync 3.3.8 uses for `name`: the first six bytes of MD5(name)
/// (docs/peers.md, "shairport-sync"; seen as the `XXXXXXXXXXXX@name` prefix of its mDNS name).
pub fn derived_mac(name: &str) -> String {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&Md5::digest(name.as_bytes())[..6]);
    airtwin_simulators::wire::hex::mac_text(&mac)
}

/// A libconfig string literal.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The configuration file shairport-sync is started with.
pub fn config(name: &str, port: u16) -> String {
    format!(
        "general = {{\n  name = {};\n  port = {port};\n  output_backend = \"dummy\";\n  mdns_backend = \"avahi\";\n}};\nmetadata = {{\n  enabled = \"no\";\n}};\n",
        quoted(name)
    )
}

/// Starts shairport-sync named after the scenario's device, and waits until it listens.
pub async fn start(peers: &Path, identity: &Identity, log: PathBuf) -> Result<Running> {
    let kind = ReferenceKind::ShairportSync;
    let program = reference::program(PROGRAM, None)?;
    let port = reference::free_port()?;
    let conf = log.with_extension("conf");
    std::fs::write(&conf, config(&identity.name, port))
        .with_context(|| format!("writing {}", conf.display()))?;
    let argv = [
        program.to_string_lossy().into_owned(),
        "-c".into(),
        conf.to_string_lossy().into_owned(),
        // Log to stderr (our log file), with each request and response.
        "-u".into(),
        "-v".into(),
    ];
    let child = reference::spawn_with_mdns(kind, peers, &argv, &log)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut running = Running::new(kind, addr, child, log);
    running.wait_listening(Duration::from_secs(20)).await?;
    running.identity = Some(Identity {
        name: identity.name.clone(),
        mac: derived_mac(&identity.name),
    });
    Ok(running)
}

/// Differences accepted against shairport-sync 3.3.8 (docs/differences.md, "shairport-sync"):
/// headers it leaves out or words differently from the AirPort Express the fake is, requests of
/// newer senders it does not serve, and its crash on pyatv's uncompressed stream.
pub const ACCEPTED: &[Accepted] = &[
    Accepted {
        exchange: "*",
        what: "header date",
        why: "shairport-sync sends no Date; the fake does, as an AirPort Express (docs/protocols/raop.md)",
    },
    Accepted {
        exchange: "*",
        what: "header session",
        why: "shairport-sync sends Session on SETUP only; the fake answers every request with one",
    },
    Accepted {
        exchange: "*",
        what: "header content-length",
        why: "shairport-sync omits Content-Length: 0 on empty answers (allowed, RFC 2326 §12.14)",
    },
    Accepted {
        exchange: "*",
        what: "header server",
        why: "shairport-sync names itself AirTunes/105.1; the fake answers as its firmware (AirTunes/220.68)",
    },
    Accepted {
        exchange: "*",
        what: "header audio-jack-status",
        why: "shairport-sync sends no Audio-Jack-Status; an AirPort Express reports its jack (docs/protocols/raop.md)",
    },
    Accepted {
        exchange: "OPTIONS",
        what: "header public",
        why: "the fake also lists POST and GET (/info, /feedback, /auth-setup), which shairport-sync 3.3.8 lacks",
    },
    Accepted {
        exchange: "SETUP",
        what: "header transport",
        why: "shairport-sync echoes the client's interleaved=0-1 in its UDP Transport",
    },
    Accepted {
        exchange: "GET /info",
        what: "status",
        why: "shairport-sync 3.3.8 has no GET /info (400); pyatv goes on without it",
    },
    Accepted {
        exchange: "GET /info",
        what: "header content-type",
        why: "shairport-sync 3.3.8 has no GET /info, so no plist",
    },
    Accepted {
        exchange: "GET /info",
        what: "body",
        why: "shairport-sync 3.3.8 has no GET /info, so no plist",
    },
    Accepted {
        exchange: "POST /feedback",
        what: "status",
        why: "shairport-sync 3.3.8 has no POST /feedback (400); pyatv ignores the status",
    },
    Accepted {
        exchange: "SET_PARAMETER",
        what: "missing exchange",
        why: "pyatv sends its progress and volume updates as timing allows: their number varies between runs",
    },
    Accepted {
        exchange: "client pyatv",
        what: "reference exit",
        why: "shairport-sync 3.3.8 segfaults while playing pyatv's (uncompressed L16) stream, after FLUSH (docs/peers.md): the exchanges it answered are compared, the rest is not",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_the_md5_prefix_of_the_name() {
        // Seen from shairport-sync 3.3.8 named "kitchen": instance `09228DAC1556@kitchen`.
        assert_eq!(derived_mac("kitchen"), "09:22:8D:AC:15:56");
    }

    #[test]
    fn the_config_quotes_the_name() {
        let c = config("a \"b\" \\ c", 5000);
        assert!(c.contains(r#"name = "a \"b\" \\ c";"#), "{c}");
        assert!(c.contains("port = 5000;"), "{c}");
        assert!(c.contains("output_backend = \"dummy\";"), "{c}");
    }
}
