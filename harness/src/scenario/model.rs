//! The scenario format: which devices exist, the clients that drive them, the faults, and the
//! expectations. `airtwin schema` prints the JSON Schema generated from these types.

use std::collections::BTreeMap;

use airtwin_simulators::fault::Fault;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One scenario file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, shown in reports.
    pub name: String,
    /// What the scenario shows and what the client must do.
    pub description: String,
    /// Seed of every random choice (faults, session ids, keys); `airtwin run --seed` overrides it.
    #[serde(default)]
    pub seed: u64,
    /// Devices to start, each on 127.0.0.1.
    pub devices: Vec<DeviceSpec>,
    /// Clients run one after another, in order.
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    /// Faults injected at the devices' fault seam.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// What must hold when the clients are done.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Runs only inside a private network namespace (its clients publish mDNS, e.g. pyatv's
    /// `pair`): `airtwin run` outside one runs this scenario through `ci/netns`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub netns: bool,
    /// How the devices are found: `none` (default: nothing is announced, clients get addresses
    /// from the scenario), `unicast` (DNS-SD answered on a UDP port of 127.0.0.1, no multicast:
    /// `${discovery.port}`), `loopback` (mDNS on the loopback interface only) or
    /// `{interfaces: [NAME, …]}` (mDNS on those interfaces only). The mDNS modes also answer
    /// unicast queries. `airtwin run --discovery` overrides it.
    #[serde(
        default,
        skip_serializing_if = "crate::discovery::DiscoveryMode::is_none"
    )]
    pub discovery: crate::discovery::DiscoveryMode,
    /// Differential mode: a real receiver (`openairplay1`, `shairplay`, `shairport-sync`,
    /// `uxplay`, `kodi`) that the clients also run against, with the first device's name and
    /// MAC; every exchange is compared with the fake's (docs/differences.md). `airtwin run
    /// --differential REF` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::differential::ReferenceKind>,
}

/// Device kinds airtwin simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// AirPort Express: a RAOP (AirTunes v2) receiver; ready-file service `raop`.
    AirportExpress,
    /// Apple TV: AirPlay (`/info`, `/fp-setup`, video API) and RAOP audio on one port; ready-file
    /// service `airplay`.
    AppleTv,
    /// iTunes: a DACP/DMAP library that remote controls drive; ready-file service `dacp`.
    Itunes,
    /// Spotify access point: the DH/Shannon handshake, login, Ping, Mercury; ready-file service
    /// `spotify-ap`, identity `public_key` (PEM).
    SpotifyAp,
}

impl DeviceKind {
    pub const NAMES: &'static [&'static str] =
        &["airport-express", "apple-tv", "itunes", "spotify-ap"];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::AirportExpress => "airport-express",
            DeviceKind::AppleTv => "apple-tv",
            DeviceKind::Itunes => "itunes",
            DeviceKind::SpotifyAp => "spotify-ap",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "airport-express" => Some(DeviceKind::AirportExpress),
            "apple-tv" => Some(DeviceKind::AppleTv),
            "itunes" => Some(DeviceKind::Itunes),
            "spotify-ap" => Some(DeviceKind::SpotifyAp),
            _ => None,
        }
    }
}

/// One simulated device.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub kind: DeviceKind,
    /// Unique within the scenario; used in `${device.<name>.port}` and expectations.
    pub name: String,
    /// TCP port on 127.0.0.1; 0 (the default) picks a free one.
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub identity: Identity,
    /// Sessions served at once; later ANNOUNCEs get 453 (default 1, like an AirPort Express).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    /// Seconds of silence after which a connection is closed (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
    /// DACP library settings (`itunes`, and the `dacp` port of an `apple-tv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dacp: Option<DacpSpec>,
    /// Spotify access point settings (`spotify-ap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotify: Option<SpotifySpec>,
    /// Companion settings of an `apple-tv` of `identity.generation: 4k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion: Option<CompanionSpec>,
    /// IPv4 address the device listens on and announces (default 127.0.0.1). Any 127.x.y.z works
    /// on Linux without set-up, so that each device of a scenario can have its own address, as
    /// discovery clients group services by address (pyatv does). Inside `ci/netns`, 10.213.0.1 to
    /// 10.213.0.4 are on the interface `airtwin0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
}

/// The Companion side of an Apple TV 4K (docs/protocols/companion.md): its port, its apps and
/// what it starts with. It pairs with the AirPlay side's PIN (`identity.pin`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanionSpec {
    /// TCP port (ready-file service `companion`; default 0: a free one, 49152 and up on a real
    /// device).
    #[serde(default)]
    pub port: u16,
    /// Launchable apps, `{bundle_id, name}` (default: the built-in apps, YouTube and Netflix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<airtwin_simulators::companion::App>>,
    /// Bundle id of the app in front at start (default `com.apple.TVWatchList`); must be one
    /// of `apps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_app: Option<String>,
    /// `on` (default) or `off` (asleep) at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Power>,
    /// A focused text field holding this text at start (default: none focused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_field: Option<String>,
}

/// Whether a device is awake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    On,
    Off,
}

/// How a Spotify access point behaves (docs/protocols/spotify-ap.md). Its signing key is the
/// entry's `identity.key`: a PEM path, or drawn from the seed when absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpotifySpec {
    /// Accounts that may log in: `username`, `password` (absent: any), `refuse` (an ErrorCode
    /// name such as `BadCredentials` or `PremiumAccountRequired` every login of it gets).
    #[serde(default)]
    pub accounts: Vec<airtwin_simulators::spotify_ap::session::Account>,
    /// Mercury replies by URI (body text, status 200); other URIs get 404.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mercury: BTreeMap<String, String>,
    /// Sign the DH value with another key: `other` (drawn from the seed) or a PEM path; a client
    /// that checks the signature must refuse the AP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_with: Option<String>,
    /// Seconds between the AP's Pings after login (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_interval: Option<f64>,
    /// ProductInfo `type` (default `premium`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_type: Option<String>,
    /// CountryCode (default `SE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Answer every login with AuthFailure TryAnotherAP.
    #[serde(default)]
    pub try_another_ap: bool,
    /// Judge every client challenge HMAC wrong (the plaintext login-failed reply).
    #[serde(default)]
    pub reject_hmac: bool,
    /// apresolve's lists (`accesspoint`, `dealer`, `spclient`: `host:port` strings); an absent
    /// or empty `accesspoint` names the device's own AP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apresolve: Option<airtwin_simulators::spotify_ap::apresolve::Lists>,
    /// Port of apresolve (HTTP, ready-file service `apresolve`; default 0: a free one).
    #[serde(default)]
    pub apresolve_port: u16,
}

/// How a device's DACP library behaves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DacpSpec {
    /// TCP port of the DACP server for an `apple-tv` (default 0: a free one; 3689 on a real
    /// device). An `itunes` device uses the device's `port`.
    #[serde(default)]
    pub port: u16,
    /// Pairing GUIDs allowed to log in (default `["0x0000000000000001"]`); remotes paired during
    /// the run are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_guids: Option<Vec<String>>,
    /// Status a login with an unknown GUID gets (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_status: Option<u16>,
    /// Seconds after which an unused session is gone (default 1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<f64>,
    /// Gzip bodies when the client accepts it (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<bool>,
    /// Library name (`minm` of `/server-info`; default the device name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What is playing, and the timeline of scripted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_playing: Option<airtwin_simulators::dacp::NowPlaying>,
    /// Speakers of `getspeakers` (default: the computer itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speakers: Option<Vec<airtwin_simulators::dacp::server::Speaker>>,
    /// The shared library (DAAP): tracks and playlists (default: the now-playing queue's tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<airtwin_simulators::daap::Library>,
    /// Whether `/login` without a pairing GUID opens a guest session, as iTunes' library sharing
    /// allows (default: true for an `itunes`, false for an `apple-tv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_login: Option<bool>,
}

/// Who the device says it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// MAC address `00:11:24:00:44:91` (also the 6 bytes signed into `Apple-Response`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// RSA private key: `builtin` (the well-known AirPort Express key, default), `other`, or a PEM
    /// path relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Model string, e.g. `AirPort10,115`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `sourceVersion` / `Server: AirTunes/<v>` (default 220.68).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Fixed RTSP `Session` value (default: derived from the seed, decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Extra or overriding `_raop._tcp` TXT properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub txt: BTreeMap<String, String>,
    /// Apple TV: the name `/info` reports (default: the device name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apple TV: `deviceID` of `/info` (default: the MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Apple TV: `features` of `/info`, a number or `0xLOW,0xHIGH` as in TXT records (default
    /// 0x5A7FFFF7; bits 38, 43 and 48 send pyatv to HomeKit pairing, which only
    /// `generation: 4k` serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    /// Apple TV: `pi` of `/info`, a UUID (default: derived from the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pi: Option<String>,
    /// Apple TV: `statusFlags` of `/info` (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_flags: Option<u64>,
    /// Apple TV: `initialVolume` of `/info` in dB (default -20.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_volume: Option<f64>,
    /// Apple TV: `/info` keys to set (any YAML value) or remove (`null`), applied last.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, serde_json::Value>,
    /// Apple TV: seconds every `POST /play` URL lasts on the simulated clock (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_duration: Option<f64>,
    /// Apple TV: `3` (default, AppleTV3,2, AirPlay 1) or `4k` (AppleTV11,1 with HomeKit
    /// pair-setup / pair-verify and the encrypted channel, docs/protocols/hap.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    /// Apple TV 4K: the 4-digit PIN shown at `/pair-pin-start` (default: drawn from the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// Apple TV 4K: controllers paired before the device starts, over AirPlay and Companion, as a
    /// real device remembers them. Each one's keys come from the seed, and the credentials it
    /// keeps (pyatv's `--airplay-credentials` / `--companion-credentials`) are the identity fact
    /// `credentials.NAME`: `${device.DEV.credentials.NAME}`, in the ready file and in
    /// `GET /devices/DEV`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
}

/// Which Apple TV an `apple-tv` device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Generation {
    /// Apple TV 3 (AirPlay 1, no pairing).
    #[serde(rename = "3")]
    Three,
    /// Apple TV 4K (HomeKit pairing).
    #[serde(rename = "4k")]
    FourK,
}

/// AirPlay `features`: a number, or text as TXT records write it (`0x5A7FFFF7,0x1E`: low then
/// high 32 bits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Features {
    Number(u64),
    Text(String),
}

impl Features {
    /// As written in the scenario.
    pub fn text(&self) -> String {
        match self {
            Features::Number(n) => n.to_string(),
            Features::Text(t) => t.clone(),
        }
    }

    /// The 64-bit value, or `None` when the text is not `0xLOW[,0xHIGH]` or a decimal number.
    pub fn value(&self) -> Option<u64> {
        match self {
            Features::Number(n) => Some(*n),
            Features::Text(t) => {
                let num = |s: &str| -> Option<u64> {
                    let s = s.trim();
                    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                        Some(h) => u64::from_str_radix(h, 16).ok(),
                        None => s.parse().ok(),
                    }
                };
                match t.split_once(',') {
                    Some((lo, hi)) => {
                        let (lo, hi) = (num(lo)?, num(hi)?);
                        (lo <= 0xFFFF_FFFF && hi <= 0xFFFF_FFFF).then_some(hi << 32 | lo)
                    }
                    None => num(t),
                }
            }
        }
    }
}

/// A client that drives the devices.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Unique within the scenario; used by `client` expectations.
    pub name: String,
    pub run: ClientKind,
    /// Seconds before the client (its whole process group) is killed (default 60).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Exit status the client must end with (default 0). A killed client has none.
    #[serde(default)]
    pub exit: i32,
    /// Extra environment variables for external commands (values are substituted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

fn default_timeout() -> f64 {
    60.0
}

/// What a client is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientKind {
    /// airtwin's own RAOP sender (`airtwin client raop`).
    Raop(RaopClientSpec),
    /// airtwin's own AirPlay client (`airtwin client airplay`): /info, fp-setup, then optionally
    /// audio over RAOP or a video URL.
    Airplay(AirplayClientSpec),
    /// An external program: argv, with `${device.<name>.port}`, `${device.<name>.address}`,
    /// `${device.<name>.ports.<service>}`, `${device.<name>.<identity fact>}` (`mac`,
    /// `public_key`…), `${peers}` (third-party peers folder), `${scenario_dir}` and `${out}`
    /// substituted.
    Command(Vec<String>),
    /// airtwin's own DACP remote control (`airtwin client dacp`): logs in and runs `steps`.
    Dacp(DacpClientSpec),
    /// A device (iTunes, Apple TV) pairs with a remote control by calling its `/pair`.
    Pair(PairClientSpec),
}

/// Options of airtwin's DACP remote control.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DacpClientSpec {
    /// Device whose `dacp` port to drive.
    pub to: String,
    /// Pairing GUID to log in with (default `0x0000000000000001`).
    #[serde(default = "default_guid")]
    pub guid: String,
    /// Steps, one after another: `login`, `logout`, `server-info`, `databases`, `ctrl-int`,
    /// `playstatus` (revision 0), `wait-update` (long poll on the last revision), `cmd:NAME`,
    /// `get:PROP[,PROP]`, `set:PROP=VALUE`, `artwork[:FILE]` (saves the PNG under `${out}` when
    /// FILE is relative), `speakers`, `setspeakers:ID[,ID]`, `sleep:SECONDS`, `raw:/PATH?QUERY`
    /// (session-id added, any status), `expect:STATUS` (the next request must get it).
    pub steps: Vec<String>,
    /// Send `Accept-Encoding: gzip` (default true).
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Seconds to wait for each response (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<f64>,
}

fn default_guid() -> String {
    "0x0000000000000001".into()
}

/// A device calling a remote control's `/pair` (the caller side of DACP pairing).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairClientSpec {
    /// The device that pairs (an `itunes` or `apple-tv`): it trusts the remote's GUID afterwards.
    pub device: String,
    /// The PIN typed on the device.
    pub pin: String,
    /// The remote's `Pair` TXT value, 16 hex digits (default `0000000000000001`).
    #[serde(default = "default_pair")]
    pub pair: String,
    /// `servicename` sent (default: the device's 16-hex library id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servicename: Option<String>,
    /// How the code is written: `upper` (default), `lower`, `short` (31 characters), `naive`
    /// (the naive md5(Pair + pin) some write-ups give, a wrong code: docs/protocols/dacp.md).
    #[serde(default)]
    pub code_format: PairCodeFormat,
    /// The remote's address (`127.0.0.1:PORT`), when it is already listening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Or a remote to start (substituted like `command`): its port is read from its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Regular expression whose first group is the remote's port in the command's output
    /// (default: pyatv's `--debug` line and `airtwin client remote-pair`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_from: Option<String>,
    /// Regular expression of a later output line to wait for before calling: pyatv's `pair`
    /// serves `/pair` before it sets its PIN, and accepts any code until it prints
    /// "Use pin N to pair" (pyatv 0.18 `atvremote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_from: Option<String>,
    /// Find the remote by browsing `_touch-remote._tcp` over mDNS, as iTunes and an Apple TV do,
    /// instead of calling 127.0.0.1: the instance whose TXT `Pair` is `pair` (and `DvNm` is
    /// `remote_name`, when given). Multicast: only in a scenario with `netns: true`.
    #[serde(default)]
    pub discover: bool,
    /// The remote's `DvNm` to pick when discovering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
}

fn default_pair() -> String {
    "0000000000000001".into()
}

/// How the caller writes the pairing code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PairCodeFormat {
    #[default]
    Upper,
    Lower,
    Short,
    Naive,
}

/// Options of airtwin's reference RAOP sender.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaopClientSpec {
    /// Device to stream to.
    pub to: String,
    /// WAV file (16-bit PCM), relative to the scenario file.
    pub file: String,
    /// Where `Apple-Challenge` goes: `options` (default), `announce` or `none`.
    #[serde(default)]
    pub challenge: ChallengeOn,
    /// Encrypt audio with RSA/AES (default true).
    #[serde(default = "yes")]
    pub encrypt: bool,
    /// Key whose public half verifies `Apple-Response`: `builtin` (default) or a PEM path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_key: Option<String>,
    /// MAC expected in `Apple-Response` (default: the device's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Seconds to wait for each response (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Options of airtwin's reference AirPlay client.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AirplayClientSpec {
    /// Device to talk to.
    pub to: String,
    /// FairPlay mode asked for in fp-setup phase 1 (0..3, default 0).
    #[serde(default)]
    pub mode: u8,
    /// Also ask `GET /info` with the `txtAirPlay` qualifier (default true).
    #[serde(default = "yes")]
    pub qualifier: bool,
    /// Then stream this WAV (16-bit PCM, relative to the scenario file) as the RAOP sender does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Then play this URL with the video API (`/play`, `/playback-info`, `/scrub`, `/rate`,
    /// `/stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_url: Option<String>,
    /// Seconds to wait for each response (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<f64>,
    /// Write the Apple TV checks (/info keys and types, `Date`, `Session`, `Server`,
    /// `Audio-Jack-Status`) as `note` lines instead of failing, so that a differential run
    /// reaches fp-setup on a receiver without them (default false). fp-setup bytes are always
    /// checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lenient: bool,
}

/// Which request carries `Apple-Challenge`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeOn {
    #[default]
    Options,
    Announce,
    None,
}

/// A condition checked after the clients ran.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// Requests a device saw, and what it answered.
    Exchanges(ExchangesExpect),
    /// A client's exit status and output.
    Client(ClientExpect),
    /// Every request a device saw is one of `allowed` (`METHOD` or `METHOD /path`).
    NoUnexpectedRequests {
        device: String,
        allowed: Vec<String>,
    },
    /// Audio a device received.
    Audio(AudioExpect),
    /// The device logged no protocol warning.
    NoWarnings { device: String },
    /// The device logged protocol warnings: at least `min` (default 1) whose text matches the
    /// regular expression `matches` (any text when absent).
    Warnings {
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        matches: Option<String>,
        #[serde(default = "one")]
        min: u64,
    },
    /// Faults that must have acted (by position in `faults`), at least once each.
    FaultsApplied(Vec<usize>),
    /// Values of the device's state after the run (e.g. `volume`, `active_sessions`).
    State {
        device: String,
        values: BTreeMap<String, serde_json::Value>,
    },
}

/// Request/response patterns at one device.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangesExpect {
    pub device: String,
    /// `in_order` (default): the patterns match requests in this order, others may come between;
    /// `any_order`: each pattern matches some request.
    #[serde(default)]
    pub order: Order,
    pub requests: Vec<ExchangePattern>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    InOrder,
    AnyOrder,
}

/// What one request and its response look like. Every field set must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangePattern {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Status the device sent; absent in the transcript when it sent none (drop, reset, stall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The device sent no response at all.
    #[serde(default)]
    pub no_response: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, HeaderCheck>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: BTreeMap<String, HeaderCheck>,
}

/// A check of one header.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeaderCheck {
    Present,
    Absent,
    Equals(String),
    /// A regular expression the value must match.
    Matches(String),
}

/// A client's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientExpect {
    pub name: String,
    /// Exit status; overrides the client's `exit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// Regular expression that stdout+stderr must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Regular expression that stdout+stderr must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_not: Option<String>,
    /// The client must have been killed at its timeout.
    #[serde(default)]
    pub timed_out: bool,
}

/// Audio received by a device, over all its sessions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudioExpect {
    pub device: String,
    /// At least this many RTP audio packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_packets: Option<u64>,
    /// At least this many PCM frames decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_frames: Option<u64>,
    /// At most this many packets missing from the sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing: Option<u64>,
    /// At least this many packets missing (to check a `lose_packets` fault acted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_missing: Option<u64>,
    /// The decoded audio equals this WAV sample for sample (relative to the scenario file).
    /// Silence that the sender adds before and after the file is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals_wav: Option<String>,
    /// Every session was AES-encrypted (true) or clear (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

fn one() -> u64 {
    1
}
