//! Kodi 20.1 (Debian `kodi`) as a reference: a classic AirPlay video receiver (/server-info,
//! /play, /reverse events, /playback-info, /scrub, /rate, /stop) run headless under Xvfb
//! (docs/peers.md, "Kodi"). airtwin writes its HOME (guisettings.xml turns AirPlay and AirPlay
//! video on, advancedsettings.xml picks the AirPlay and AirTunes ports), then starts Xvfb on a
//! display it picks itself and `kodi.bin` in one process group (a shell starts Xvfb, waits for the
//! display number it reports and becomes Kodi), and waits until the AirPlay port answers. Kodi binds 0.0.0.0 and [::], so it
//! runs only inside the project's namespace (`ci/netns`). It takes a device name but no MAC: its
//! `deviceid` comes from the host's network interface.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use super::reference::{self, Identity, Running};
use super::{Accepted, ReferenceKind};

/// Where Debian installs Kodi's binary, under the architecture's library folder
/// (`/usr/lib/<multiarch triplet>/kodi/kodi.bin`; the `kodi` wrapper script only adds a
/// crash-restart loop around it). `ci/install-peers` looks for the same pattern.
pub const KODI_BIN: &str = "/usr/lib/*/kodi/kodi.bin";

/// Kodi's binary under `lib` (`lib/*/kodi/kodi.bin`, the first in name order).
pub fn kodi_bin_under(lib: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("kodi/kodi.bin"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// How long Kodi may take until its port answers (about 10 s on a cold start here, 1 s warm;
/// more on a busy 2-core runner).
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Differences accepted against Kodi (docs/differences.md, "Kodi 20.1").
pub const ACCEPTED: &[Accepted] = &[
    Accepted {
        exchange: "POST /reverse",
        what: "header content-length",
        why: "Kodi sends Content-Length: 0 on its 101, which RFC 9110 §8.6 forbids in a 1xx answer; the fake sends none",
    },
    Accepted {
        exchange: "*",
        what: "header content-length",
        why: "Kodi lays its XML plists out differently (bodies are compared by plist keys and types); an answer it never sent has none",
    },
    Accepted {
        exchange: "*",
        what: "header server",
        why: "Kodi sends no Server header; the fake names its AirTunes firmware like an Apple TV",
    },
    Accepted {
        exchange: "GET /scrub",
        what: "status",
        why: "Kodi answers GET /scrub 405 (Method Not Allowed) while loading and, headless, while it plays the WAV; an Apple TV answers duration and position (nto 4.1)",
    },
    Accepted {
        exchange: "GET /scrub",
        what: "header content-type",
        why: "Kodi's 405 to GET /scrub has no body",
    },
    Accepted {
        exchange: "GET /scrub",
        what: "body",
        why: "Kodi's 405 to GET /scrub has no body",
    },
    Accepted {
        exchange: "GET /server-info",
        what: "body key macAddress",
        why: "Kodi answers the five keys of nto's AppleTV2,1 example; the fake adds macAddress and vv, as its /info does for the AppleTV3,2 it models",
    },
    Accepted {
        exchange: "GET /server-info",
        what: "body key vv",
        why: "Kodi answers the five keys of nto's AppleTV2,1 example; the fake adds macAddress and vv, as its /info does for the AppleTV3,2 it models",
    },
    Accepted {
        exchange: "POST /getProperty",
        what: "status",
        why: "Kodi has no /getProperty (404); an Apple TV answers playbackAccessLog (docs/protocols/airplay.md, Properties)",
    },
    Accepted {
        exchange: "POST /getProperty",
        what: "header content-type",
        why: "Kodi has no /getProperty (404); an Apple TV answers playbackAccessLog (docs/protocols/airplay.md, Properties)",
    },
    Accepted {
        exchange: "POST /getProperty",
        what: "body",
        why: "Kodi has no /getProperty (404); an Apple TV answers playbackAccessLog (docs/protocols/airplay.md, Properties)",
    },
    Accepted {
        exchange: "GET /info",
        what: "status",
        why: "Kodi predates AirPlay 2's /info (501); the Apple TV the fake models answers it (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "GET /info",
        what: "header content-type",
        why: "Kodi predates AirPlay 2's /info (501); the Apple TV the fake models answers it (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "GET /info",
        what: "body",
        why: "Kodi predates AirPlay 2's /info (501); the Apple TV the fake models answers it (docs/protocols/airplay.md)",
    },
    Accepted {
        exchange: "POST /stop",
        what: "status",
        why: "Kodi does not answer POST /stop while it plays within the client's 5 s (its stopped event comes at once)",
    },
    Accepted {
        exchange: "POST /stop",
        what: "header date",
        why: "Kodi does not answer POST /stop while it plays within the client's 5 s (its stopped event comes at once)",
    },
    Accepted {
        exchange: "POST /event",
        what: "header host",
        why: "the fake's pushed request carries Host as every HTTP/1.1 request must (RFC 9112 §3.2; Node's server in airplay-protocol answers 400 without it); Kodi sends none",
    },
    Accepted {
        exchange: "*",
        what: "header apple-jack-status",
        why: "Kodi's AirTunes server (libshairplay) names the jack header Apple-Jack-Status",
    },
    Accepted {
        exchange: "*",
        what: "header audio-jack-status",
        why: "Kodi's AirTunes server (libshairplay) names the jack header Apple-Jack-Status",
    },
    Accepted {
        exchange: "*",
        what: "header date",
        why: "Kodi's AirTunes server (libshairplay) sends no Date; the fake does, as an AirPort Express (docs/protocols/raop.md)",
    },
    Accepted {
        exchange: "*",
        what: "header session",
        why: "Kodi's AirTunes server sends Session on SETUP only, as DEADBEEF (airtwin's sender goes on; pyatv could not parse it)",
    },
    Accepted {
        exchange: "OPTIONS",
        what: "header public",
        why: "the fake also lists POST and GET (/info, /feedback, /auth-setup), which Kodi's AirTunes server lacks",
    },
    Accepted {
        exchange: "SETUP",
        what: "header transport",
        why: "Kodi's AirTunes server adds an `events` parameter to its Transport",
    },
    Accepted {
        exchange: "RECORD",
        what: "header audio-latency",
        why: "Kodi's AirTunes server sends no Audio-Latency; the fake reports an AirPort Express's 11025 samples (docs/protocols/raop.md)",
    },
    Accepted {
        exchange: "POST /event",
        what: "header x-apple-session-id",
        why: "Kodi echoes the client's X-Apple-Session-ID, all zeros when the client sent none (python airplay sends none); the fake numbers its own sessions",
    },
];

/// Kodi's settings: AirPlay, AirPlay video and Zeroconf (Kodi starts its AirPlay server only
/// with Zeroconf on), no password, the device name; the ports (docs/peers.md, "Kodi"). With
/// `null_audio`, ALSA's `null` plugin as the default device.
pub fn write_home(
    home: &Path,
    name: &str,
    airplay_port: u16,
    airtunes_port: u16,
    null_audio: bool,
) -> Result<()> {
    let userdata = home.join(".kodi/userdata");
    std::fs::create_dir_all(&userdata)
        .with_context(|| format!("creating {}", userdata.display()))?;
    let name = quick_xml::escape::escape(name);
    let gui = format!(
        "<settings version=\"2\">\n\
         \x20 <setting id=\"services.devicename\">{name}</setting>\n\
         \x20 <setting id=\"services.zeroconf\">true</setting>\n\
         \x20 <setting id=\"services.airplay\">true</setting>\n\
         \x20 <setting id=\"services.airplayvideosupport\">true</setting>\n\
         \x20 <setting id=\"services.useairplaypassword\">false</setting>\n\
         </settings>\n"
    );
    std::fs::write(userdata.join("guisettings.xml"), gui)?;
    let advanced = format!(
        "<advancedsettings version=\"1.0\">\n\
         \x20 <airplayport>{airplay_port}</airplayport>\n\
         \x20 <airtunesport>{airtunes_port}</airtunesport>\n\
         </advancedsettings>\n"
    );
    std::fs::write(userdata.join("advancedsettings.xml"), advanced)?;
    // No sound card here. Without a sink Kodi answers TEARDOWN (and POST /stop) only after its
    // audio engine gives up; ALSA's `null` plugin as the default device (alsa-lib reads
    // ~/.asoundrc) is a sink, but an unpaced one: a video's audio then ends at once, so only the
    // AirTunes reference gets it (docs/peers.md, "Kodi").
    if null_audio {
        std::fs::write(
            home.join(".asoundrc"),
            "pcm.!default { type null }\nctl.!default { type hw card 0 }\n",
        )?;
    }
    Ok(())
}

/// Kodi publishes its services through avahi over the D-Bus system bus (with Zeroconf on, which
/// its AirPlay server needs). That bus is a file socket (`/run/dbus/system_bus_socket`), which a
/// network namespace does not isolate: an avahi-daemon of the host would announce Kodi on the
/// host's real network. Pointing the system bus at a socket that does not exist in Kodi's own HOME
/// keeps it from any bus (it logs that it found no avahi and serves AirPlay all the same;
/// docs/peers.md, "Kodi"). The session bus is removed from its environment too.
pub fn private_bus_env(home: &Path) -> [(&'static str, String); 1] {
    [(
        "DBUS_SYSTEM_BUS_ADDRESS",
        format!("unix:path={}", home.join("no-system-bus").display()),
    )]
}

/// The shell line that starts Xvfb on a display it picks itself (`-displayfd`: the X server
/// takes the first free display atomically and writes its number once it accepts clients, so two
/// runs never share one), waits up to 10 s for that number, and becomes Kodi (`exec`), so that Kodi
/// leads the process group and its exit is the reference's. `-terminate` ends Xvfb when its last
/// client (Kodi) goes, even when airtwin was killed and could not stop the group (Xorg(1),
/// Xserver(1)).
fn launch_line(kodi_bin: &Path) -> String {
    let kodi_bin = kodi_bin.display();
    format!(
        "Xvfb -displayfd 3 -screen 0 1280x720x24 -nolisten tcp -terminate 3>\"$HOME/display\" & \
         i=0; while [ ! -s \"$HOME/display\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
         [ -s \"$HOME/display\" ] || {{ echo 'Xvfb did not report a display within 10 s' >&2; exit 1; }}; \
         DISPLAY=\":$(cat \"$HOME/display\")\"; export DISPLAY; \
         exec '{kodi_bin}' --windowing=x11"
    )
}

/// Which of Kodi's servers the clients are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The AirPlay (video) server.
    Airplay,
    /// The AirTunes (RAOP) server, libshairplay.
    Airtunes,
}

/// Starts Xvfb and Kodi with the identity's name, HOME next to `log`, its AirPlay server as the
/// reference's address; see [`start_service`].
pub async fn start(peers: &Path, identity: &Identity, log: PathBuf) -> Result<Running> {
    start_service(peers, identity, log, Service::Airplay).await
}

/// How long Kodi may take to answer `GET /server-info` once its AirPlay port listens.
const SERVER_INFO_WITHIN: Duration = Duration::from_secs(10);

/// The `deviceid` of Kodi's `/server-info`: the MAC it signs Apple-Response with on its AirTunes
/// port (it takes the host interface's, not one it is given; docs/peers.md, "Kodi").
async fn device_id(airplay: std::net::SocketAddr) -> Result<String> {
    use airtwin_simulators::wire::Protocol;
    let mut client = crate::clients::rtsp::RtspClient::connect(airplay, SERVER_INFO_WITHIN).await?;
    let response = client
        .request_with("GET", "/server-info", Protocol::Http11, &[], None)
        .await?;
    let v = plist::Value::from_reader(std::io::Cursor::new(&response.body))?;
    v.as_dictionary()
        .and_then(|d| d.get("deviceid"))
        .and_then(|d| d.as_string())
        .map(str::to_string)
        .context("Kodi's /server-info has no deviceid")
}

/// Starts Xvfb and Kodi with the identity's name (Kodi takes no MAC: the identity it really has
/// is read back from /server-info), HOME next to `log`; returns once `service`'s port accepts
/// connections, or fails within [`READY_WITHIN`] naming Kodi's own log.
pub async fn start_service(
    _peers: &Path,
    identity: &Identity,
    log: PathBuf,
    service: Service,
) -> Result<Running> {
    let Some(kodi_bin) = kodi_bin_under(Path::new("/usr/lib")) else {
        bail!("reference kodi is not installed (no {KODI_BIN}): run ci/install-peers");
    };
    let home = log.with_extension("home");
    let _ = std::fs::remove_dir_all(&home);
    let (airplay_port, airtunes_port) = (reference::free_port()?, reference::free_port()?);
    write_home(
        &home,
        &identity.name,
        airplay_port,
        airtunes_port,
        service == Service::Airtunes,
    )?;
    let child = reference::spawn(
        ReferenceKind::Kodi,
        Command::new("sh")
            .args(["-c", &launch_line(&kodi_bin)])
            .env("HOME", &home)
            .envs(private_bus_env(&home))
            .env_remove("DBUS_SESSION_BUS_ADDRESS"),
        &log,
        None,
    )?;
    let airplay = std::net::SocketAddr::from(([127, 0, 0, 1], airplay_port));
    let airtunes = std::net::SocketAddr::from(([127, 0, 0, 1], airtunes_port));
    let mut running = Running::new(ReferenceKind::Kodi, airplay, child, log);
    let kodi_log = home.join(".kodi/temp/kodi.log");
    let see_log = || format!("reference kodi: see its own log {}", kodi_log.display());
    // The AirPlay port first: the AirTunes reference also reads /server-info there.
    running
        .wait_listening(READY_WITHIN)
        .await
        .with_context(see_log)?;
    if service == Service::Airtunes {
        running.addr = airtunes;
        running
            .wait_listening(READY_WITHIN)
            .await
            .with_context(see_log)?;
        let mac = device_id(airplay)
            .await
            .context("reading Kodi's deviceid from its /server-info")?;
        running.identity = Some(Identity {
            name: identity.name.clone(),
            mac,
        });
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_turns_airplay_video_on_with_the_chosen_ports_and_name() {
        let home = std::env::temp_dir().join(format!("airtwin-kodi-home-{}", std::process::id()));
        write_home(&home, "Living <Room>", 40001, 40002, false).unwrap();
        assert!(!home.join(".asoundrc").exists());
        let gui = std::fs::read_to_string(home.join(".kodi/userdata/guisettings.xml")).unwrap();
        for id in [
            "services.airplay",
            "services.airplayvideosupport",
            "services.zeroconf",
        ] {
            assert!(
                gui.contains(&format!("<setting id=\"{id}\">true</setting>")),
                "{gui}"
            );
        }
        assert!(gui.contains(">Living &lt;Room&gt;</setting>"), "{gui}");
        let adv =
            std::fs::read_to_string(home.join(".kodi/userdata/advancedsettings.xml")).unwrap();
        assert!(adv.contains("<airplayport>40001</airplayport>"), "{adv}");
        assert!(adv.contains("<airtunesport>40002</airtunesport>"), "{adv}");
        write_home(&home, "x", 40001, 40002, true).unwrap();
        let alsa = std::fs::read_to_string(home.join(".asoundrc")).unwrap();
        assert!(alsa.contains("pcm.!default { type null }"), "{alsa}");
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn kodi_gets_a_system_bus_that_does_not_exist_in_its_home() {
        let home = tempfile::tempdir().unwrap();
        let [(key, value)] = private_bus_env(home.path());
        assert_eq!(key, "DBUS_SYSTEM_BUS_ADDRESS");
        let path = value
            .strip_prefix("unix:path=")
            .expect("a unix socket address");
        assert!(Path::new(path).starts_with(home.path()), "{value}");
        assert!(!Path::new(path).exists(), "{value}");
    }

    #[test]
    fn xvfb_picks_its_display_and_ends_with_kodi_which_leads_the_group() {
        let line = launch_line(Path::new("/usr/lib/aarch64-linux-gnu/kodi/kodi.bin"));
        assert!(line.starts_with("Xvfb -displayfd 3 "), "{line}");
        assert!(line.contains(" -terminate "), "{line}");
        assert!(line.contains("3>\"$HOME/display\""), "{line}");
        assert!(line.contains("export DISPLAY"), "{line}");
        assert!(
            line.ends_with("exec '/usr/lib/aarch64-linux-gnu/kodi/kodi.bin' --windowing=x11"),
            "{line}"
        );
    }

    #[test]
    fn kodi_is_found_under_any_architecture_folder() {
        let lib = tempfile::tempdir().unwrap();
        assert_eq!(kodi_bin_under(lib.path()), None);
        let bin = lib.path().join("aarch64-linux-gnu/kodi/kodi.bin");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(&bin, "").unwrap();
        std::fs::create_dir_all(lib.path().join("python3/dist-packages")).unwrap();
        assert_eq!(kodi_bin_under(lib.path()), Some(bin));
    }

    #[tokio::test]
    async fn the_launch_line_exports_the_display_xvfb_reports() {
        // A stand-in Xvfb that reports display 77 on fd 3, as -displayfd does, and a stand-in
        // Kodi that prints DISPLAY.
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let xvfb = bin.join("Xvfb");
        std::fs::write(&xvfb, "#!/bin/sh\necho 77 >&3\n").unwrap();
        std::fs::set_permissions(&xvfb, std::fs::Permissions::from_mode(0o755)).unwrap();
        let line = launch_line(Path::new("/kodi.bin")).replace(
            "exec '/kodi.bin' --windowing=x11",
            "echo \"DISPLAY=$DISPLAY\"",
        );
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = Command::new("sh")
            .args(["-c", &line])
            .env("HOME", dir.path())
            .env("PATH", path)
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "DISPLAY=:77\n");
    }
}
